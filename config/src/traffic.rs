//! Ground truth of a camera's scene for the traffic and incident rules: the calibration from
//! image pixels to metres on the ground (and where the camera is on the map), lanes with their
//! direction of travel, and the rules' parameters. Validated with the rest of the file: a rule
//! that needs metres is refused without a calibration, with a message that says so.

use serde::{Deserialize, Serialize};

use crate::config::ConfigIssues;

/// Image points with their positions on the ground, and the camera's place on the map.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CalibrationConfig {
    /// Four or more `[x, y]` points in full-resolution pixels.
    pub image: Vec<[f64; 2]>,
    /// The same points on the ground, `[x, y]` in metres (any origin, a flat road).
    pub ground: Vec<[f64; 2]>,
    /// The camera's position (WGS84 degrees), for the map and citizen reports.
    #[serde(default)]
    pub latitude: Option<f64>,
    #[serde(default)]
    pub longitude: Option<f64>,
    /// Where the camera looks, degrees clockwise from north.
    #[serde(default)]
    pub heading_deg: Option<f64>,
    /// Horizontal field of view in degrees. Default 60.
    #[serde(default = "default_fov")]
    pub fov_deg: f64,
}

fn default_fov() -> f64 {
    60.0
}

/// A lane: where vehicles drive one way.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LaneConfig {
    /// Unique per camera (with lines and zones).
    pub name: String,
    /// Three or more `[x, y]` corners in full-resolution pixels.
    pub polygon: Vec<[f32; 2]>,
    /// An arrow along the direction of travel: `[[x1, y1], [x2, y2]]`, from tail to head.
    pub direction: Vec<[f32; 2]>,
    /// Vehicles above this are `speeding` (needs a calibration).
    #[serde(default)]
    pub speed_limit_kmh: Option<f64>,
    /// Vehicles may stop here (a parking lane, a bus stop). Default false: a vehicle stopped
    /// here longer than `rules.stopped_s` is a `stopped_vehicle` incident.
    #[serde(default)]
    pub stopping: bool,
}

/// What a zone is for, beyond its entries and exits.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ZoneKind {
    /// Entries and exits (alerts when its severity is warning or critical).
    #[default]
    Watch,
    /// Vehicles may stand here: never a stopped vehicle.
    Parking,
    /// A pedestrian crossing: a person here is not on the carriageway.
    Crossing,
    /// A box junction: a vehicle standing in it is `box_blocked`.
    BoxJunction,
    /// No stopping: a vehicle standing in it is a `stopped_vehicle` even outside a lane.
    NoStopping,
}

/// Parameters of the rules of one camera. Every duration is seconds, every distance metres;
/// every rule that applies runs with these defaults.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RulesConfig {
    /// Speed is averaged over this much of the track's latest history. Default 1.0.
    #[serde(default = "default_speed_window")]
    pub speed_window_s: f64,
    /// Tolerance over a lane's limit before `speeding`, km/h. Default 5.
    #[serde(default = "default_speeding_margin")]
    pub speeding_margin_kmh: f64,
    /// A vehicle must move against its lane for this long... Default 2.
    #[serde(default = "default_wrong_way_s")]
    pub wrong_way_s: f64,
    /// ...and this far (metres with a calibration, else box heights). Default 6.
    #[serde(default = "default_wrong_way_distance")]
    pub wrong_way_distance: f64,
    /// A vehicle slower than this is stationary (km/h with a calibration, else box heights per
    /// second / 10). Default 3.
    #[serde(default = "default_stationary_kmh")]
    pub stationary_kmh: f64,
    /// A vehicle stationary in a no-stopping place longer than this is `stopped_vehicle`.
    /// Default 30.
    #[serde(default = "default_stopped_s")]
    pub stopped_s: f64,
    /// A vehicle stationary in a box junction longer than this is `box_blocked`. Default 10.
    #[serde(default = "default_box_s")]
    pub box_blocked_s: f64,
    /// A person in a lane (outside crossings) longer than this is `person_on_carriageway`.
    /// Default 2.
    #[serde(default = "default_person_s")]
    pub person_on_carriageway_s: f64,
    /// Events of one rule on one camera within this gap join one open incident. Default 30.
    #[serde(default = "default_incident_gap")]
    pub incident_gap_s: f64,
    /// Each lane's queue length is published this often (cameras with a calibration).
    /// Default 30.
    #[serde(default = "default_queue_period")]
    pub queue_period_s: f64,
    /// A lane's traffic is `heavy` below this mean speed, km/h. Default 30.
    #[serde(default = "default_heavy_kmh")]
    pub heavy_kmh: f64,
    /// ... and `congested` (or `stop_and_go` when it keeps stopping and starting) below this.
    /// Default 12.
    #[serde(default = "default_congested_kmh")]
    pub congested_kmh: f64,
    /// `crowd_surge` when a crowd zone gains persons faster than this per minute. Default 30.
    #[serde(default = "default_surge")]
    pub crowd_surge_per_min: f64,
    /// `sudden_stop` when this many vehicles... Default 3.
    #[serde(default = "default_sudden_vehicles")]
    pub sudden_stop_vehicles: u32,
    /// ...moving faster than this (km/h)... Default 20.
    #[serde(default = "default_sudden_from")]
    pub sudden_stop_from_kmh: f64,
    /// ...stop within this many seconds of each other... Default 5.
    #[serde(default = "default_sudden_s")]
    pub sudden_stop_s: f64,
    /// ...within this many metres of each other. Default 30.
    #[serde(default = "default_sudden_radius")]
    pub sudden_stop_radius_m: f64,
}

impl Default for RulesConfig {
    fn default() -> Self {
        Self {
            speed_window_s: default_speed_window(),
            speeding_margin_kmh: default_speeding_margin(),
            wrong_way_s: default_wrong_way_s(),
            wrong_way_distance: default_wrong_way_distance(),
            stationary_kmh: default_stationary_kmh(),
            stopped_s: default_stopped_s(),
            box_blocked_s: default_box_s(),
            person_on_carriageway_s: default_person_s(),
            incident_gap_s: default_incident_gap(),
            queue_period_s: default_queue_period(),
            heavy_kmh: default_heavy_kmh(),
            congested_kmh: default_congested_kmh(),
            crowd_surge_per_min: default_surge(),
            sudden_stop_vehicles: default_sudden_vehicles(),
            sudden_stop_from_kmh: default_sudden_from(),
            sudden_stop_s: default_sudden_s(),
            sudden_stop_radius_m: default_sudden_radius(),
        }
    }
}

fn default_speed_window() -> f64 {
    1.0
}
fn default_speeding_margin() -> f64 {
    5.0
}
fn default_wrong_way_s() -> f64 {
    2.0
}
fn default_wrong_way_distance() -> f64 {
    6.0
}
fn default_stationary_kmh() -> f64 {
    3.0
}
fn default_stopped_s() -> f64 {
    30.0
}
fn default_box_s() -> f64 {
    10.0
}
fn default_person_s() -> f64 {
    2.0
}
fn default_incident_gap() -> f64 {
    30.0
}
fn default_queue_period() -> f64 {
    30.0
}
fn default_heavy_kmh() -> f64 {
    30.0
}
fn default_congested_kmh() -> f64 {
    12.0
}
fn default_surge() -> f64 {
    30.0
}
fn default_sudden_vehicles() -> u32 {
    3
}
fn default_sudden_from() -> f64 {
    20.0
}
fn default_sudden_s() -> f64 {
    5.0
}
fn default_sudden_radius() -> f64 {
    30.0
}

/// Checks calibration, lanes and rule parameters of one camera (lanes share one namespace with
/// lines and zones).
pub(crate) fn check_traffic(
    issues: &mut ConfigIssues,
    prefix: &str,
    calibration: Option<&CalibrationConfig>,
    lanes: &[LaneConfig],
    rules: &RulesConfig,
    zones: &[crate::analytics::ZoneConfig],
    lines: &[crate::analytics::LineConfig],
) {
    if let Some(c) = calibration {
        let p = format!("{prefix}.calibration");
        if c.image.len() < 4 {
            issues.push(
                format!("{p}.image"),
                "give four or more image points, e.g. the corners of lane markings",
            );
        }
        if c.ground.len() != c.image.len() {
            issues.push(
                format!("{p}.ground"),
                format!(
                    "{} ground points for {} image points: give each image point its place on \
                     the ground in metres",
                    c.ground.len(),
                    c.image.len()
                ),
            );
        }
        for (k, [x, y]) in c.image.iter().enumerate() {
            if !(0.0..=16384.0).contains(x) || !(0.0..=16384.0).contains(y) {
                issues.push(
                    format!("{p}.image[{k}]"),
                    format!("[{x}, {y}] is off the frame: coordinates are pixels from 0 to 16384"),
                );
            }
        }
        for (k, [x, y]) in c.ground.iter().enumerate() {
            if !x.is_finite() || !y.is_finite() || x.abs() > 10_000.0 || y.abs() > 10_000.0 {
                issues.push(
                    format!("{p}.ground[{k}]"),
                    "use metres within 10 km of the origin",
                );
            }
        }
        if c.image.len() >= 4 && c.ground.len() == c.image.len() {
            if let Some(why) = degenerate(&c.image).or_else(|| degenerate(&c.ground)) {
                issues.push(p.clone(), why);
            }
        }
        match (c.latitude, c.longitude) {
            (Some(lat), Some(lon)) => {
                if !(-90.0..=90.0).contains(&lat) {
                    issues.push(format!("{p}.latitude"), "use -90 to 90 degrees");
                }
                if !(-180.0..=180.0).contains(&lon) {
                    issues.push(format!("{p}.longitude"), "use -180 to 180 degrees");
                }
            }
            (None, None) => {}
            _ => issues.push(
                format!("{p}.longitude"),
                "give latitude and longitude together",
            ),
        }
        if let Some(h) = c.heading_deg {
            if !(0.0..360.0).contains(&h) {
                issues.push(
                    format!("{p}.heading_deg"),
                    "use 0 (north) to less than 360 degrees, clockwise",
                );
            }
        }
        if !(1.0..=180.0).contains(&c.fov_deg) {
            issues.push(format!("{p}.fov_deg"), "use 1 to 180 degrees");
        }
    }
    let mut names: std::collections::HashSet<String> = zones
        .iter()
        .map(|z| z.name.clone())
        .chain(lines.iter().map(|l| l.name.clone()))
        .collect();
    for (i, lane) in lanes.iter().enumerate() {
        let p = format!("{prefix}.lanes[{i}]");
        crate::analytics::check_rule_name(issues, &format!("{p}.name"), &lane.name, &mut names);
        crate::analytics::check_polygon(issues, &format!("{p}.polygon"), &lane.polygon, "lane");
        if lane.direction.len() != 2 || lane.direction[0] == lane.direction[1] {
            issues.push(
                format!("{p}.direction"),
                "draw the direction of travel as an arrow of two different points, \
                 [[tail x, tail y], [head x, head y]]",
            );
        }
        if let Some(limit) = lane.speed_limit_kmh {
            if !(5.0..=200.0).contains(&limit) {
                issues.push(format!("{p}.speed_limit_kmh"), "use 5 to 200 km/h");
            }
            if calibration.is_none() {
                issues.push(
                    format!("{p}.speed_limit_kmh"),
                    "speeding needs metres: add [cameras.calibration] with four or more image \
                     points and their ground positions, or remove the limit",
                );
            }
        }
    }
    for (i, zone) in zones.iter().enumerate() {
        let p = format!("{prefix}.zones[{i}]");
        if let Some(d) = zone.max_density {
            if calibration.is_none() {
                issues.push(
                    format!("{p}.max_density"),
                    "a density per square metre needs metres: add [cameras.calibration], or use \
                     max_persons",
                );
            }
            if !(0.01..=10.0).contains(&d) {
                issues.push(format!("{p}.max_density"), "use 0.01 to 10 persons per m²");
            }
        }
        if let Some(n) = zone.max_persons {
            if !(1..=10_000).contains(&n) {
                issues.push(format!("{p}.max_persons"), "use 1 to 10000 persons");
            }
        }
        if let Some(s) = zone.loitering_s {
            if !(1.0..=86_400.0).contains(&s) {
                issues.push(format!("{p}.loitering_s"), "use 1 to 86400 seconds");
            }
        }
    }
    let r = rules;
    if r.congested_kmh >= r.heavy_kmh {
        issues.push(
            format!("{prefix}.rules.congested_kmh"),
            format!(
                "{} km/h is not below heavy_kmh {} km/h: congested traffic is slower than heavy",
                r.congested_kmh, r.heavy_kmh
            ),
        );
    }
    for (field, v, min, max) in [
        ("speed_window_s", r.speed_window_s, 0.2, 10.0),
        ("speeding_margin_kmh", r.speeding_margin_kmh, 0.0, 50.0),
        ("wrong_way_s", r.wrong_way_s, 0.5, 60.0),
        ("wrong_way_distance", r.wrong_way_distance, 0.5, 500.0),
        ("stationary_kmh", r.stationary_kmh, 0.5, 20.0),
        ("stopped_s", r.stopped_s, 1.0, 3600.0),
        ("box_blocked_s", r.box_blocked_s, 1.0, 3600.0),
        (
            "person_on_carriageway_s",
            r.person_on_carriageway_s,
            0.0,
            600.0,
        ),
        ("incident_gap_s", r.incident_gap_s, 0.0, 3600.0),
        ("queue_period_s", r.queue_period_s, 1.0, 3600.0),
        ("heavy_kmh", r.heavy_kmh, 1.0, 200.0),
        ("congested_kmh", r.congested_kmh, 0.5, 200.0),
        ("crowd_surge_per_min", r.crowd_surge_per_min, 1.0, 10_000.0),
        (
            "sudden_stop_vehicles",
            f64::from(r.sudden_stop_vehicles),
            2.0,
            50.0,
        ),
        ("sudden_stop_from_kmh", r.sudden_stop_from_kmh, 5.0, 200.0),
        ("sudden_stop_s", r.sudden_stop_s, 0.5, 60.0),
        ("sudden_stop_radius_m", r.sudden_stop_radius_m, 1.0, 500.0),
    ] {
        #[allow(clippy::neg_cmp_op_on_partial_ord)]
        if !(min <= v && v <= max) {
            issues.push(
                format!("{prefix}.rules.{field}"),
                format!("{v} is out of range: use {min} to {max}"),
            );
        }
    }
}

/// Why a set of four or more points cannot define a homography: all (nearly) on one line.
fn degenerate(points: &[[f64; 2]]) -> Option<String> {
    let n = points.len() as f64;
    let (mx, my) = points
        .iter()
        .fold((0.0, 0.0), |(x, y), p| (x + p[0] / n, y + p[1] / n));
    let (mut sxx, mut syy, mut sxy) = (0.0, 0.0, 0.0);
    for p in points {
        let (dx, dy) = (p[0] - mx, p[1] - my);
        sxx += dx * dx;
        syy += dy * dy;
        sxy += dx * dy;
    }
    // The smaller eigenvalue of the scatter: zero when the points are on one line.
    let tr = sxx + syy;
    let det = sxx * syy - sxy * sxy;
    let small = tr / 2.0 - ((tr / 2.0).powi(2) - det).max(0.0).sqrt();
    (small <= 1e-6 * tr.max(1e-9)).then(|| {
        "the points lie on one line: pick four or more spread over the road, no three in a row"
            .to_string()
    })
}

/// A 3x3 matrix, row-major: the homographies between image and ground.
pub type Mat3 = [f64; 9];

/// `a * b`.
pub fn mat3_mul(a: &Mat3, b: &Mat3) -> Mat3 {
    let mut m = [0.0; 9];
    for r in 0..3 {
        for c in 0..3 {
            m[3 * r + c] = (0..3).map(|k| a[3 * r + k] * b[3 * k + c]).sum();
        }
    }
    m
}

/// Moves points to their centroid and scales them to a mean distance of sqrt(2) (Hartley's
/// normalisation, so a homography fit is well conditioned); returns the transform and the
/// moved points. Shared by the analysis (OpenCV fit) and the map (its own fit).
pub fn normalise_points(points: &[[f64; 2]]) -> (Mat3, Vec<[f64; 2]>) {
    let n = points.len() as f64;
    let (mx, my) = points
        .iter()
        .fold((0.0, 0.0), |(x, y), p| (x + p[0] / n, y + p[1] / n));
    let mean = points
        .iter()
        .map(|p| (p[0] - mx).hypot(p[1] - my))
        .sum::<f64>()
        / n;
    let s = if mean > 1e-12 {
        std::f64::consts::SQRT_2 / mean
    } else {
        1.0
    };
    let t = [s, 0.0, -s * mx, 0.0, s, -s * my, 0.0, 0.0, 1.0];
    let moved = points
        .iter()
        .map(|p| [s * (p[0] - mx), s * (p[1] - my)])
        .collect();
    (t, moved)
}
