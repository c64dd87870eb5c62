//! Which cameras may see a citizen report: those within the radius whose field of view covers
//! the reported point, nearest first. A pure function of positions, so it is tested on a small
//! table of geometry.
//!
//! A camera with a position but no heading (a dome or a PTZ camera that turns) counts when it
//! is within the radius: it may be turned to the place, and an operator sees from the list
//! which cameras to look at. A point within [`NEAR_M`] of a camera counts whatever its
//! heading: so close, the bearing says little and the camera's mast is the landmark.

use pantau_config::CameraConfig;
use serde::{Deserialize, Serialize};

/// Mean Earth radius (IUGG), metres.
const EARTH_RADIUS_M: f64 = 6_371_008.8;

/// Points this close to a camera count as seen by it, whichever way it looks.
pub const NEAR_M: f64 = 10.0;

/// A camera's place on the map, from its calibration.
#[derive(Debug, Clone, PartialEq)]
pub struct CameraPlace {
    pub id: String,
    pub latitude: f64,
    pub longitude: f64,
    /// Degrees clockwise from north; `None`: it may look anywhere.
    pub heading_deg: Option<f64>,
    /// Horizontal field of view, degrees.
    pub fov_deg: f64,
}

impl CameraPlace {
    /// The place of an enabled camera whose calibration has a latitude and longitude.
    pub fn of(c: &CameraConfig) -> Option<Self> {
        let cal = c.calibration.as_ref().filter(|_| c.enabled)?;
        Some(Self {
            id: c.id.clone(),
            latitude: cal.latitude?,
            longitude: cal.longitude?,
            heading_deg: cal.heading_deg,
            fov_deg: cal.fov_deg,
        })
    }
}

/// A camera matched to a report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CameraMatch {
    /// Camera id.
    pub id: String,
    /// From the camera to the reported point, metres (to 0.1 m).
    pub distance_m: f64,
}

/// Great-circle distance (metres) and initial bearing (degrees clockwise from north, 0..360)
/// from `a` to `b`, both `(latitude, longitude)` in degrees.
pub fn distance_and_bearing(a: (f64, f64), b: (f64, f64)) -> (f64, f64) {
    let (p1, p2) = (a.0.to_radians(), b.0.to_radians());
    let dp = p2 - p1;
    let dl = (b.1 - a.1).to_radians();
    let h = (dp / 2.0).sin().powi(2) + p1.cos() * p2.cos() * (dl / 2.0).sin().powi(2);
    let distance = 2.0 * EARTH_RADIUS_M * h.sqrt().min(1.0).asin();
    let y = dl.sin() * p2.cos();
    let x = p1.cos() * p2.sin() - p1.sin() * p2.cos() * dl.cos();
    let bearing = y.atan2(x).to_degrees().rem_euclid(360.0);
    (distance, bearing)
}

/// The smallest angle between two directions, degrees (0..=180).
fn angle_between(a: f64, b: f64) -> f64 {
    let d = (a - b).rem_euclid(360.0);
    d.min(360.0 - d)
}

/// The cameras within `radius_m` of `(latitude, longitude)` whose view covers it, nearest
/// first (ties by id).
pub fn match_cameras(
    latitude: f64,
    longitude: f64,
    cameras: &[CameraPlace],
    radius_m: f64,
) -> Vec<CameraMatch> {
    let mut found: Vec<CameraMatch> = cameras
        .iter()
        .filter_map(|c| {
            let (d, bearing) =
                distance_and_bearing((c.latitude, c.longitude), (latitude, longitude));
            if d > radius_m {
                return None;
            }
            let covered = match c.heading_deg {
                None => true,
                Some(h) => d <= NEAR_M || angle_between(bearing, h) <= c.fov_deg / 2.0,
            };
            covered.then(|| CameraMatch {
                id: c.id.clone(),
                distance_m: (d * 10.0).round() / 10.0,
            })
        })
        .collect();
    found.sort_by(|a, b| {
        a.distance_m
            .total_cmp(&b.distance_m)
            .then_with(|| a.id.cmp(&b.id))
    });
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Simpang Lima, Lubuklinggau (about): where the test cameras stand.
    const ORIGIN: (f64, f64) = (-3.2945, 102.8614);

    /// The point `north` and `east` metres from the origin (small offsets: flat enough).
    fn at(north: f64, east: f64) -> (f64, f64) {
        let m_per_deg = EARTH_RADIUS_M * std::f64::consts::PI / 180.0;
        (
            ORIGIN.0 + north / m_per_deg,
            ORIGIN.1 + east / (m_per_deg * ORIGIN.0.to_radians().cos()),
        )
    }

    fn camera(id: &str, north: f64, east: f64, heading: Option<f64>, fov: f64) -> CameraPlace {
        let (latitude, longitude) = at(north, east);
        CameraPlace {
            id: id.into(),
            latitude,
            longitude,
            heading_deg: heading,
            fov_deg: fov,
        }
    }

    #[test]
    fn distances_and_bearings_are_right_on_known_offsets() {
        for (north, east, bearing) in [
            (100.0, 0.0, 0.0),
            (0.0, 100.0, 90.0),
            (-100.0, 0.0, 180.0),
            (0.0, -100.0, 270.0),
        ] {
            let (d, b) = distance_and_bearing(ORIGIN, at(north, east));
            assert!((d - 100.0).abs() < 0.05, "{north},{east}: {d} m");
            assert!(angle_between(b, bearing) < 0.01, "{north},{east}: {b} deg");
        }
        assert_eq!(angle_between(350.0, 10.0), 20.0);
        assert_eq!(angle_between(10.0, 350.0), 20.0);
        assert_eq!(angle_between(0.0, 180.0), 180.0);
    }

    /// One table: each camera, and for each reported point the cameras that must match, in
    /// order.
    #[test]
    fn cameras_in_range_that_look_at_the_point_match_nearest_first() {
        let cameras = [
            // At the origin, looks east, 60 degrees wide.
            camera("east", 0.0, 0.0, Some(90.0), 60.0),
            // 50 m north of the origin, looks south, 90 degrees wide.
            camera("south", 50.0, 0.0, Some(180.0), 90.0),
            // 200 m west, no heading: a dome.
            camera("dome", 0.0, -200.0, None, 60.0),
            // At the origin, looks at 350 degrees, 40 wide: its view spans north (330..10).
            camera("wrap", 0.0, 0.0, Some(350.0), 40.0),
        ];
        let radius = 150.0;
        let cases: &[((f64, f64), &[&str])] = &[
            // 100 m east: ahead of `east`; from `south` 112 m at 117 degrees, 63 off its
            // heading (more than 45); 100 degrees off `wrap`; the dome is 300 m away.
            ((0.0, 100.0), &["east"]),
            // 10 m north, 20 m east: `east` (22 m, 27 degrees off), `south` (45 m, 27 off).
            ((10.0, 20.0), &["east", "south"]),
            // 100 m north: only `wrap` (10 degrees off) looks that way; `south` looks away.
            ((100.0, 0.0), &["wrap"]),
            // 5 m north of the origin: near `east` and `wrap`, whatever they look at (tie:
            // by id); `south` sees it straight ahead, 45 m away.
            ((5.0, 0.0), &["east", "wrap", "south"]),
            // 30 m south of the dome: the dome, which has no heading, and nothing else.
            ((-30.0, -200.0), &["dome"]),
            // 160 m east: beyond the radius of every camera.
            ((0.0, 160.0), &[]),
        ];
        for ((north, east), want) in cases {
            let (lat, lon) = at(*north, *east);
            let got = match_cameras(lat, lon, &cameras, radius);
            let ids: Vec<&str> = got.iter().map(|m| m.id.as_str()).collect();
            assert_eq!(
                &ids, want,
                "report at {north} m north, {east} m east: {got:?}"
            );
            assert!(got.windows(2).all(|w| w[0].distance_m <= w[1].distance_m));
        }
        let near = match_cameras(at(0.0, 100.0).0, at(0.0, 100.0).1, &cameras, radius);
        assert!((near[0].distance_m - 100.0).abs() <= 0.1, "{near:?}");
    }
}
