//! The map: every camera with a position and its lanes as GeoJSON (`GET /api/v1/map.geojson`),
//! for the console's Map page and for GIS tools.
//!
//! A camera is a `Point` at its calibration's latitude and longitude. A lane is a `Polygon`:
//! its corners (image pixels) go through the calibration's homography to metres on the ground,
//! and from there to latitude and longitude around the camera. The calibration's ground frame
//! has any origin and orientation, so the camera is first found in it: with the lens's focal
//! length (from `fov_deg` and the frame width) and the principal point in the middle of the
//! frame, the homography splits into the camera's rotation and position (a pinhole camera over
//! a flat road). The camera's foot is then placed at its latitude and longitude, the direction
//! it looks along the ground at `heading_deg`, and the image's right-hand side to the right of
//! it. Distances are then good to a few percent when `fov_deg` is right; a wrong `fov_deg`
//! scales the lanes' distance from the camera. Until a camera has streamed, its frame size is
//! taken as the smallest common size (640x360 up to 3840x2160) that holds every calibration
//! and lane point.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use pantau_config::traffic::{mat3_mul, normalise_points, CalibrationConfig, LaneConfig, Mat3};
use serde_json::{json, Value};

use crate::auth::{Permission, Session};
use crate::error::ApiError;
use crate::ApiState;

/// Lanes with a corner farther than this from the camera are left off the map (a polygon
/// drawn up to the horizon reaches kilometres on the ground).
pub const MAX_LANE_DISTANCE_M: f64 = 1000.0;

/// Metres per degree of latitude (mean Earth radius 6371.0088 km).
const M_PER_DEG: f64 = 6_371_008.8 * std::f64::consts::PI / 180.0;

/// Frame sizes tried, in order, when a camera's own is not known yet.
const COMMON_SIZES: [(f64, f64); 6] = [
    (640.0, 360.0),
    (640.0, 480.0),
    (1280.0, 720.0),
    (1920.0, 1080.0),
    (2560.0, 1440.0),
    (3840.0, 2160.0),
];

fn apply(h: &Mat3, x: f64, y: f64) -> [f64; 3] {
    [
        h[0] * x + h[1] * y + h[2],
        h[3] * x + h[4] * y + h[5],
        h[6] * x + h[7] * y + h[8],
    ]
}

fn inverse(m: &Mat3) -> Option<Mat3> {
    let det = m[0] * (m[4] * m[8] - m[5] * m[7]) - m[1] * (m[3] * m[8] - m[5] * m[6])
        + m[2] * (m[3] * m[7] - m[4] * m[6]);
    if !det.is_finite() || det.abs() < 1e-15 {
        return None;
    }
    let adj = [
        m[4] * m[8] - m[5] * m[7],
        m[2] * m[7] - m[1] * m[8],
        m[1] * m[5] - m[2] * m[4],
        m[5] * m[6] - m[3] * m[8],
        m[0] * m[8] - m[2] * m[6],
        m[2] * m[3] - m[0] * m[5],
        m[3] * m[7] - m[4] * m[6],
        m[1] * m[6] - m[0] * m[7],
        m[0] * m[4] - m[1] * m[3],
    ];
    Some(adj.map(|v| v / det))
}

/// Solves the square system `a x = b` (Gaussian elimination with partial pivoting).
fn solve<const N: usize>(mut a: [[f64; N]; N], mut b: [f64; N]) -> Option<[f64; N]> {
    for col in 0..N {
        let pivot = (col..N).max_by(|&i, &j| a[i][col].abs().total_cmp(&a[j][col].abs()))?;
        if a[pivot][col].abs() < 1e-12 {
            return None;
        }
        a.swap(col, pivot);
        b.swap(col, pivot);
        let (top, below) = a.split_at_mut(col + 1);
        let p = &top[col];
        for (i, row) in below.iter_mut().enumerate() {
            let f = row[col] / p[col];
            for (x, y) in row[col..].iter_mut().zip(&p[col..]) {
                *x -= f * y;
            }
            b[col + 1 + i] -= f * b[col];
        }
    }
    let mut x = [0.0; N];
    for row in (0..N).rev() {
        let s: f64 = (row + 1..N).map(|k| a[row][k] * x[k]).sum();
        x[row] = (b[row] - s) / a[row][row];
    }
    Some(x)
}

/// The homography from image pixels to ground metres that fits the calibration's point pairs
/// best (least squares over all of them; exact for four).
pub fn fit_homography(image: &[[f64; 2]], ground: &[[f64; 2]]) -> Option<Mat3> {
    if image.len() < 4 || image.len() != ground.len() {
        return None;
    }
    let (ti, im) = normalise_points(image);
    let (tg, gr) = normalise_points(ground);
    // Normal equations of the 2n x 8 system with h33 = 1.
    let mut ata = [[0.0; 8]; 8];
    let mut atb = [0.0; 8];
    for (p, q) in im.iter().zip(&gr) {
        let (x, y, u, v) = (p[0], p[1], q[0], q[1]);
        for (row, rhs) in [
            ([x, y, 1.0, 0.0, 0.0, 0.0, -u * x, -u * y], u),
            ([0.0, 0.0, 0.0, x, y, 1.0, -v * x, -v * y], v),
        ] {
            for i in 0..8 {
                for j in 0..8 {
                    ata[i][j] += row[i] * row[j];
                }
                atb[i] += row[i] * rhs;
            }
        }
    }
    let h = solve(ata, atb)?;
    let hn = [h[0], h[1], h[2], h[3], h[4], h[5], h[6], h[7], 1.0];
    let full = mat3_mul(&mat3_mul(&inverse(&tg)?, &hn), &ti);
    (full.iter().all(|v| v.is_finite()) && full[8].abs() > 1e-15).then(|| full.map(|v| v / full[8]))
}

/// A lane on the map, `[longitude, latitude]` points.
#[derive(Debug, Clone, PartialEq)]
pub struct LaneShape {
    /// Closed (first = last) and counter-clockwise, as GeoJSON wants.
    pub ring: Vec<[f64; 2]>,
    /// The direction of travel, tail and head; empty when it cannot be placed.
    pub arrow: Vec<[f64; 2]>,
}

/// How one camera's image maps onto the map.
#[derive(Debug, Clone)]
pub struct Placement {
    latitude: f64,
    longitude: f64,
    /// Heading in radians, clockwise from north.
    heading: f64,
    /// Image pixels -> ground metres.
    to_ground: Mat3,
    /// The sign of the homogeneous coordinate of points on the ground in front of the camera.
    front: f64,
    /// The camera's foot in ground metres, and unit vectors along the ground: where it looks
    /// and its right-hand side.
    foot: [f64; 2],
    forward: [f64; 2],
    right: [f64; 2],
}

fn unit(v: [f64; 2]) -> Option<[f64; 2]> {
    let n = v[0].hypot(v[1]);
    (n > 1e-9 && n.is_finite()).then(|| [v[0] / n, v[1] / n])
}

impl Placement {
    /// The placement of a camera with a calibration, a position and a heading, whose frames
    /// are `frame` pixels wide and high; why not, otherwise.
    pub fn new(c: &CalibrationConfig, frame: (f64, f64)) -> Result<Self, &'static str> {
        let (Some(latitude), Some(longitude)) = (c.latitude, c.longitude) else {
            return Err("no latitude and longitude in its calibration");
        };
        let Some(heading) = c.heading_deg else {
            return Err("no heading_deg in its calibration");
        };
        let to_ground =
            fit_homography(&c.image, &c.ground).ok_or("its calibration points give no mapping")?;
        let to_image = inverse(&to_ground).ok_or("its calibration points give no mapping")?;
        // K^-1 * (ground -> image) = s [r1 r2 t] for a pinhole camera.
        let f = frame.0 / 2.0 / (c.fov_deg.to_radians() / 2.0).tan();
        let (cx, cy) = (frame.0 / 2.0, frame.1 / 2.0);
        let col = |j: usize| {
            let (gx, gy, gz) = (to_image[j], to_image[3 + j], to_image[6 + j]);
            [(gx - cx * gz) / f, (gy - cy * gz) / f, gz]
        };
        let (m1, m2, m3) = (col(0), col(1), col(2));
        let norm = |v: [f64; 3]| (v[0] * v[0] + v[1] * v[1] + v[2] * v[2]).sqrt();
        let mut s = (norm(m1) + norm(m2)) / 2.0;
        // The calibration points are in front of the camera: positive depth.
        let n = c.ground.len() as f64;
        let (gx, gy) = c
            .ground
            .iter()
            .fold((0.0, 0.0), |(x, y), g| (x + g[0] / n, y + g[1] / n));
        if m1[2] * gx + m2[2] * gy + m3[2] < 0.0 {
            s = -s;
        }
        if s.abs() < 1e-15 || !s.is_finite() {
            return Err("its calibration points give no mapping");
        }
        let (r1, r2, t) = (m1.map(|v| v / s), m2.map(|v| v / s), m3.map(|v| v / s));
        let dot = |a: [f64; 3], b: [f64; 3]| a[0] * b[0] + a[1] * b[1] + a[2] * b[2];
        // The camera's centre is -R^T t; its foot is that on the ground.
        let foot = [-dot(r1, t), -dot(r2, t)];
        // The optical axis along the ground (R^T e3), or "up in the image" when the camera
        // looks straight down.
        let axis = [r1[2], r2[2]];
        let forward = if axis[0].hypot(axis[1]) > 1e-3 {
            unit(axis)
        } else {
            unit([-r1[1], -r2[1]])
        }
        .ok_or("its calibration gives no direction of view")?;
        // The image's x axis (R^T e1) along the ground, square to `forward`.
        let x_axis = [r1[0], r2[0]];
        let along = x_axis[0] * forward[0] + x_axis[1] * forward[1];
        let right = unit([
            x_axis[0] - along * forward[0],
            x_axis[1] - along * forward[1],
        ])
        .ok_or("its calibration gives no direction of view")?;
        let front = apply(&to_ground, c.image[0][0], c.image[0][1])[2].signum();
        if !foot.iter().all(|v| v.is_finite()) {
            return Err("its calibration points give no mapping");
        }
        Ok(Self {
            latitude,
            longitude,
            heading: heading.to_radians(),
            to_ground,
            front,
            foot,
            forward,
            right,
        })
    }

    /// Ground metres -> `[longitude, latitude]`, and the distance from the camera in metres.
    pub fn ground_to_map(&self, g: [f64; 2]) -> ([f64; 2], f64) {
        let v = [g[0] - self.foot[0], g[1] - self.foot[1]];
        let ahead = v[0] * self.forward[0] + v[1] * self.forward[1];
        let side = v[0] * self.right[0] + v[1] * self.right[1];
        let (sin, cos) = self.heading.sin_cos();
        // Forward is the heading's bearing, right is 90 degrees clockwise from it.
        let east = ahead * sin + side * cos;
        let north = ahead * cos - side * sin;
        let lat = self.latitude + north / M_PER_DEG;
        let lon = self.longitude + east / (M_PER_DEG * self.latitude.to_radians().cos().max(1e-6));
        ([lon, lat], ahead.hypot(side))
    }

    /// An image point (full-resolution pixels) -> `[longitude, latitude]`; `None` at or beyond
    /// the horizon or farther than [`MAX_LANE_DISTANCE_M`].
    pub fn image_to_map(&self, p: [f64; 2]) -> Option<[f64; 2]> {
        let [x, y, w] = apply(&self.to_ground, p[0], p[1]);
        if w * self.front <= 1e-12 {
            return None;
        }
        let (lonlat, distance) = self.ground_to_map([x / w, y / w]);
        (distance <= MAX_LANE_DISTANCE_M && lonlat.iter().all(|v| v.is_finite())).then_some(lonlat)
    }

    /// A lane as a closed, counter-clockwise ring of `[longitude, latitude]`, and its arrow.
    pub fn lane(&self, lane: &LaneConfig) -> Option<LaneShape> {
        let mut ring: Vec<[f64; 2]> = lane
            .polygon
            .iter()
            .map(|p| self.image_to_map([f64::from(p[0]), f64::from(p[1])]))
            .collect::<Option<_>>()?;
        let twice_area: f64 = (0..ring.len())
            .map(|i| {
                let (a, b) = (ring[i], ring[(i + 1) % ring.len()]);
                a[0] * b[1] - b[0] * a[1]
            })
            .sum();
        if twice_area < 0.0 {
            ring.reverse();
        }
        ring.push(ring[0]);
        let arrow = lane
            .direction
            .iter()
            .map(|p| self.image_to_map([f64::from(p[0]), f64::from(p[1])]))
            .collect::<Option<Vec<_>>>()
            .unwrap_or_default();
        Some(LaneShape { ring, arrow })
    }
}

/// The frame size to use for a camera: its own when known, else the smallest common size that
/// holds every point given.
pub fn frame_size(known: Option<(u32, u32)>, points: &[[f64; 2]]) -> (f64, f64) {
    if let Some((w, h)) = known.filter(|(w, h)| *w > 0 && *h > 0) {
        return (f64::from(w), f64::from(h));
    }
    let (mx, my) = points
        .iter()
        .fold((0.0f64, 0.0f64), |(x, y), p| (x.max(p[0]), y.max(p[1])));
    COMMON_SIZES
        .iter()
        .copied()
        .find(|(w, h)| mx <= *w && my <= *h)
        .unwrap_or((mx.max(1.0), my.max(1.0)))
}

/// Open incidents per camera: alerts of the last day whose dispatch is not closed, one per
/// incident (the newest alert of each), newest first.
async fn open_incidents(
    s: &ApiState,
    visible: Option<pantau_store::Visible>,
) -> Result<Option<BTreeMap<String, Vec<String>>>, ApiError> {
    if s.db.is_none() {
        return Ok(None);
    }
    let now = SystemTime::now();
    let rows = s
        .store()
        .await?
        .search_events(&pantau_store::EventSearch {
            from: Some(now - Duration::from_secs(86_400)),
            to: Some(now + Duration::from_secs(60)),
            camera: None,
            rule: None,
            kind: None,
            severity: Some(vec!["warning".into(), "critical".into()]),
            state: Some(
                ["new", "acknowledged", "assigned", "escalated"]
                    .map(String::from)
                    .to_vec(),
            ),
            before: None,
            limit: 2000,
            visible,
        })
        .await?;
    let mut seen = std::collections::HashSet::new();
    let mut open: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for row in rows {
        let text = |k: &str| {
            row.payload
                .get(k)
                .and_then(Value::as_str)
                .map(str::to_string)
        };
        let Some(camera) = text("camera") else {
            continue;
        };
        let incident = text("incident").unwrap_or_else(|| row.id.clone());
        if seen.insert((camera.clone(), incident)) {
            open.entry(camera).or_default().push(row.id.clone());
        }
    }
    Ok(Some(open))
}

/// Cameras and their lanes on the map, as GeoJSON. A camera with a position is a `Point` (with
/// `state`, `heading_deg`, `fov_deg`, `open_incidents` and `incident_ids`), each of its lanes a
/// `Polygon` (with the lane's `direction` as two `[longitude, latitude]` points). Cameras
/// without a position are listed in `unplaced`; lanes that cannot be placed are named in their
/// camera's `lanes_unplaced`. `tiles` is `api.map_tiles` (or null). Open incidents are alerts
/// of the last 24 hours not closed by dispatch, one per incident; `open_incidents` is null
/// without a database.
#[utoipa::path(get, path = "/api/v1/map.geojson", tag = "cameras",
    responses((status = 200, description = "GeoJSON FeatureCollection (RFC 7946) with the members `unplaced` and `tiles`",
               content_type = "application/geo+json", body = Object),
              (status = 401, body = ApiError), (status = 403, body = ApiError)))]
pub async fn geojson(State(s): State<ApiState>, session: Session) -> Result<Response, ApiError> {
    session.allow(Permission::View)?;
    let mut configs: BTreeMap<String, _> = match &s.cameras {
        Some(r) => r
            .all()
            .await
            .into_iter()
            .map(|c| (c.id.clone(), Some(c)))
            .collect(),
        None => BTreeMap::new(),
    };
    let statuses: BTreeMap<String, _> = s
        .feed
        .statuses()
        .into_iter()
        .map(|st| (st.id.clone(), st))
        .collect();
    for id in statuses.keys() {
        configs.entry(id.clone()).or_insert(None);
    }
    let scope = s.scope(&session).await;
    configs.retain(|id, _| scope.sees_camera(id));
    let open = open_incidents(&s, scope.visible()).await?;
    let mut features = Vec::new();
    let mut unplaced = Vec::new();
    for (id, config) in configs {
        let status = statuses.get(&id);
        let name = config
            .as_ref()
            .and_then(|c| c.name.clone())
            .or_else(|| status.map(|st| st.name.clone()))
            .unwrap_or_else(|| id.clone());
        let state = match (status, &config) {
            (Some(st), _) => st.state.as_str(),
            (None, Some(c)) if !c.enabled => "disabled",
            (None, _) => "stopped",
        };
        let ids = open
            .as_ref()
            .map(|o| o.get(&id).cloned().unwrap_or_default());
        let calibration = config.as_ref().and_then(|c| c.calibration.as_ref());
        let position = calibration.and_then(|c| Some((c.longitude?, c.latitude?)));
        let mut props = json!({
            "kind": "camera",
            "id": id,
            "name": name,
            "state": state,
            "heading_deg": calibration.and_then(|c| c.heading_deg),
            "fov_deg": calibration.map(|c| c.fov_deg),
            "open_incidents": ids.as_ref().map(Vec::len),
            "incident_ids": ids,
        });
        let Some((lon, lat)) = position else {
            unplaced.push(props);
            continue;
        };
        let lanes = config.as_ref().map(|c| c.lanes.as_slice()).unwrap_or(&[]);
        let mut lanes_unplaced = Vec::new();
        if let Some(c) = calibration.filter(|_| !lanes.is_empty()) {
            let mut points: Vec<[f64; 2]> = c.image.clone();
            for l in lanes {
                points.extend(l.polygon.iter().map(|p| [f64::from(p[0]), f64::from(p[1])]));
            }
            let size = frame_size(status.and_then(|st| Some((st.width?, st.height?))), &points);
            match Placement::new(c, size) {
                Ok(place) => {
                    for lane in lanes {
                        match place.lane(lane) {
                            Some(LaneShape { ring, arrow }) => features.push(json!({
                                "type": "Feature",
                                "geometry": {"type": "Polygon", "coordinates": [ring]},
                                "properties": {
                                    "kind": "lane",
                                    "camera": id,
                                    "name": lane.name,
                                    "speed_limit_kmh": lane.speed_limit_kmh,
                                    "stopping": lane.stopping,
                                    "direction": arrow,
                                },
                            })),
                            None => lanes_unplaced.push(lane.name.clone()),
                        }
                    }
                }
                Err(why) => {
                    tracing::debug!(camera = %id, "lanes not on the map: {why}");
                    lanes_unplaced.extend(lanes.iter().map(|l| l.name.clone()));
                }
            }
        }
        props["lanes_unplaced"] = json!(lanes_unplaced);
        features.push(json!({
            "type": "Feature",
            "geometry": {"type": "Point", "coordinates": [lon, lat]},
            "properties": props,
        }));
    }
    let body = json!({
        "type": "FeatureCollection",
        "features": features,
        "unplaced": unplaced,
        "tiles": s.settings.map_tiles,
    });
    Ok((
        [(header::CONTENT_TYPE, "application/geo+json")],
        body.to_string(),
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A pinhole camera over flat ground: foot at `foot` (ground metres), `height` m up,
    /// looking along `dir` on the ground, tilted down by `tilt` degrees; frame 1280x720,
    /// horizontal field of view 60 degrees. Returns the projection ground -> pixels.
    fn camera(
        foot: [f64; 2],
        height: f64,
        dir: [f64; 2],
        tilt: f64,
    ) -> impl Fn([f64; 2]) -> [f64; 2] {
        let d = unit(dir).expect("direction");
        let (st, ct) = tilt.to_radians().sin_cos();
        let z = [d[0] * ct, d[1] * ct, -st];
        let x = [d[1], -d[0], 0.0];
        let y = [
            z[1] * x[2] - z[2] * x[1],
            z[2] * x[0] - z[0] * x[2],
            z[0] * x[1] - z[1] * x[0],
        ];
        let f = 640.0 / (30f64).to_radians().tan();
        move |g: [f64; 2]| {
            let p = [g[0] - foot[0], g[1] - foot[1], -height];
            let c = |a: [f64; 3]| a[0] * p[0] + a[1] * p[1] + a[2] * p[2];
            let (xc, yc, zc) = (c(x), c(y), c(z));
            [f * xc / zc + 640.0, f * yc / zc + 360.0]
        }
    }

    fn calibration(
        project: &impl Fn([f64; 2]) -> [f64; 2],
        ground: Vec<[f64; 2]>,
    ) -> CalibrationConfig {
        CalibrationConfig {
            image: ground.iter().map(|g| project(*g)).collect(),
            ground,
            latitude: Some(-3.2946),
            longitude: Some(102.8617),
            heading_deg: Some(90.0),
            fov_deg: 60.0,
        }
    }

    /// Metres east and north of the camera's position.
    fn offset(lonlat: [f64; 2]) -> [f64; 2] {
        [
            (lonlat[0] - 102.8617) * M_PER_DEG * (-3.2946f64).to_radians().cos(),
            (lonlat[1] + 3.2946) * M_PER_DEG,
        ]
    }

    #[test]
    fn the_homography_maps_the_calibration_points() {
        let image = [
            [412.0, 300.0],
            [866.0, 300.0],
            [1010.0, 700.0],
            [260.0, 700.0],
            [640.0, 500.0],
        ];
        let ground = [[0.0, 0.0], [7.0, 0.0], [7.0, 30.0], [0.0, 30.0]];
        let h = fit_homography(&image[..4], &ground).expect("fit");
        for (p, g) in image.iter().zip(&ground) {
            let [x, y, w] = apply(&h, p[0], p[1]);
            assert!(
                (x / w - g[0]).abs() < 1e-6 && (y / w - g[1]).abs() < 1e-6,
                "{p:?}"
            );
        }
        assert!(fit_homography(&image[..3], &ground[..3]).is_none());
    }

    #[test]
    fn lanes_land_where_they_are_on_the_ground() {
        // The camera stands at (5, -10) in the calibration's frame, 8 m up, looking along +x,
        // which is east (heading 90): x metres ahead are east, -y is its right-hand side, south.
        let project = camera([5.0, -10.0], 8.0, [1.0, 0.0], 20.0);
        let cal = calibration(
            &project,
            vec![
                [15.0, -13.0],
                [45.0, -13.0],
                [45.0, -7.0],
                [15.0, -7.0],
                [30.0, -10.0],
            ],
        );
        let place = Placement::new(&cal, (1280.0, 720.0)).expect("placed");
        for g in [[20.0, -12.0], [40.0, -9.0], [25.0, -20.0], [60.0, 0.0]] {
            let p = place.image_to_map(project(g)).expect("on the map");
            let [east, north] = offset(p);
            let want = [g[0] - 5.0, g[1] + 10.0];
            assert!(
                (east - want[0]).abs() < 0.05 && (north - want[1]).abs() < 0.05,
                "{g:?}: {east:.2} m east, {north:.2} m north; want {want:?}"
            );
        }
        // A ground frame turned and mirrored gives the same map.
        let mirrored = |g: [f64; 2]| project([g[1], g[0]]);
        let cal = calibration(
            &mirrored,
            vec![[-13.0, 15.0], [-13.0, 45.0], [-7.0, 45.0], [-7.0, 15.0]],
        );
        let place = Placement::new(&cal, (1280.0, 720.0)).expect("placed");
        let [east, north] = offset(
            place
                .image_to_map(project([40.0, -9.0]))
                .expect("on the map"),
        );
        assert!(
            (east - 35.0).abs() < 0.05 && (north - 1.0).abs() < 0.05,
            "{east} {north}"
        );
        // The top of the frame is 2 degrees below the horizon, about 230 m away; just under
        // the horizon is farther than a lane can be, and above it is not on the ground.
        let [east, _] = offset(place.image_to_map([640.0, 0.0]).expect("on the map"));
        assert!((200.0..260.0).contains(&east), "{east}");
        assert!(place.image_to_map([640.0, -36.0]).is_none());
        assert!(place.image_to_map([640.0, -200.0]).is_none());
    }

    #[test]
    fn a_lane_is_a_closed_counter_clockwise_ring() {
        let project = camera([0.0, 0.0], 6.0, [0.0, 1.0], 25.0);
        let cal = calibration(
            &project,
            vec![[-3.0, 10.0], [3.0, 10.0], [3.0, 30.0], [-3.0, 30.0]],
        );
        let place = Placement::new(&cal, (1280.0, 720.0)).expect("placed");
        let corners = [[-3.0, 12.0], [0.0, 12.0], [0.0, 25.0], [-3.0, 25.0]].map(|g| {
            let p = project(g);
            [p[0] as f32, p[1] as f32]
        });
        let lane = LaneConfig {
            name: "east".into(),
            polygon: corners.to_vec(),
            direction: vec![corners[0], corners[3]],
            speed_limit_kmh: None,
            stopping: false,
        };
        let LaneShape { ring, arrow } = place.lane(&lane).expect("placed");
        assert_eq!(ring.len(), 5);
        assert_eq!(ring[0], ring[4]);
        let twice: f64 = ring
            .windows(2)
            .map(|w| w[0][0] * w[1][1] - w[1][0] * w[0][1])
            .sum();
        assert!(twice > 0.0, "counter-clockwise");
        assert_eq!(arrow.len(), 2);
    }

    #[test]
    fn an_unknown_frame_size_is_the_smallest_common_one_that_fits() {
        assert_eq!(frame_size(Some((1920, 1080)), &[]), (1920.0, 1080.0));
        assert_eq!(frame_size(None, &[[600.0, 400.0]]), (640.0, 480.0));
        assert_eq!(frame_size(None, &[[1010.0, 700.0]]), (1280.0, 720.0));
        assert_eq!(frame_size(None, &[[5000.0, 100.0]]), (5000.0, 100.0));
    }
}
