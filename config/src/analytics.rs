//! Configuration of analysis: the detector, the tracker and each camera's scene (counting
//! lines and zones). Validated with the rest of the file.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::config::ConfigIssues;

/// The object detector shared by all cameras.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DetectorConfig {
    /// Model manifest (TOML) describing the ONNX file, its input, output and labels. Relative
    /// paths start at the config file's folder. Default `models/yolox_nano.toml` beside the
    /// working directory.
    #[serde(default = "default_model")]
    pub model: PathBuf,
    /// ONNX Runtime shared library. Default: `$ORT_DYLIB_PATH`, else
    /// `.deps/onnxruntime/libonnxruntime.so.1.32.0` (installed by `make setup`).
    #[serde(default)]
    pub onnxruntime: Option<PathBuf>,
    /// Threads for one inference. Default 1: with several cameras, inferences side by side
    /// (see `workers`) do more per core than one inference split over threads (measured on the
    /// bundled model: 17 core-ms on one thread, 24 on two). Range 1..=64.
    #[serde(default = "default_threads")]
    pub threads: usize,
    /// Inferences run at once, each with its own copy of the model (a few MB). Default 0: one
    /// per core, divided by `threads`. Range 0..=64.
    #[serde(default)]
    pub workers: usize,
    /// Classes to keep, by label. Default: person, bicycle, car, motorcycle, bus, truck.
    #[serde(default = "default_classes")]
    pub classes: Vec<String>,
    /// Minimum score for a detection to be reported. Default 0.35. Range 0.01..=1.
    #[serde(default = "default_min_score")]
    pub min_score: f32,
    /// Per-class minimum scores overriding `min_score`, e.g. `{ truck = 0.5 }`.
    #[serde(default)]
    pub thresholds: BTreeMap<String, f32>,
    /// IoU above which overlapping boxes of one class are merged. Default 0.45. Range 0.05..=0.95.
    #[serde(default = "default_nms_iou")]
    pub nms_iou: f32,
}

impl Default for DetectorConfig {
    fn default() -> Self {
        Self {
            model: default_model(),
            onnxruntime: None,
            threads: default_threads(),
            workers: 0,
            classes: default_classes(),
            min_score: default_min_score(),
            thresholds: BTreeMap::new(),
            nms_iou: default_nms_iou(),
        }
    }
}

fn default_model() -> PathBuf {
    PathBuf::from("models/yolox_nano.toml")
}
fn default_threads() -> usize {
    1
}
fn default_classes() -> Vec<String> {
    ["person", "bicycle", "car", "motorcycle", "bus", "truck"]
        .map(String::from)
        .to_vec()
}
fn default_min_score() -> f32 {
    0.35
}
fn default_nms_iou() -> f32 {
    0.45
}

impl DetectorConfig {
    /// How many inferences run at once: `workers`, or one per core divided by `threads`.
    pub fn worker_count(&self) -> usize {
        if self.workers > 0 {
            return self.workers;
        }
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        (cores / self.threads.max(1)).max(1)
    }

    /// The score a detection of `class` needs.
    pub fn threshold(&self, class: &str) -> f32 {
        self.thresholds
            .get(class)
            .copied()
            .unwrap_or(self.min_score)
    }

    pub(crate) fn check(&self, issues: &mut ConfigIssues) {
        if !(1..=64).contains(&self.threads) {
            issues.push(
                "detector.threads",
                format!("{} is out of range: use 1 to 64 threads", self.threads),
            );
        }
        if self.workers > 64 {
            issues.push(
                "detector.workers",
                format!(
                    "{} is out of range: use 1 to 64 workers, or 0 for one per core",
                    self.workers
                ),
            );
        }
        check_unit(issues, "detector.min_score", self.min_score, 0.01, 1.0);
        check_unit(issues, "detector.nms_iou", self.nms_iou, 0.05, 0.95);
        for (class, score) in &self.thresholds {
            check_unit(
                issues,
                &format!("detector.thresholds.{class}"),
                *score,
                0.01,
                1.0,
            );
        }
        if self.classes.is_empty() {
            issues.push(
                "detector.classes",
                "list at least one class, e.g. [\"person\", \"car\"]",
            );
        }
    }
}

fn check_unit(issues: &mut ConfigIssues, path: &str, v: f32, min: f32, max: f32) {
    #[allow(clippy::neg_cmp_op_on_partial_ord)]
    if !(min <= v && v <= max) {
        issues.push(
            path,
            format!("{v} is out of range: use a value from {min} to {max}"),
        );
    }
}

/// Multi-object tracker thresholds (ByteTrack's defaults). Durations are seconds, so the same
/// settings hold at any analysis rate.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrackerConfig {
    /// Detections at or above this score (and their class's `detector.min_score`) are "high"
    /// and may start tracks. Default 0.5.
    pub high_score: f32,
    /// Detections below this score are ignored by the tracker; between it and `high_score`
    /// they only keep existing tracks going (ByteTrack's second pass). The detector keeps boxes
    /// down to this score for that. Default 0.1.
    pub low_score: f32,
    /// A new track needs a detection at least this confident. Default 0.6.
    pub new_track_score: f32,
    /// Minimum IoU to match a track to a high detection. Default 0.2.
    pub match_iou: f32,
    /// Minimum IoU to match a track to a low detection. Default 0.5.
    pub low_match_iou: f32,
    /// Minimum IoU to confirm a tentative track by overlap; a new object that moved further
    /// than its box between analysed frames is matched by distance instead. Default 0.3.
    pub tentative_match_iou: f32,
    /// Seconds a lost track is kept to be found again (after an occlusion). Default 2.
    pub lost_s: f32,
    /// Replaced by `lost_s`; kept only to explain the change.
    #[serde(skip_serializing)]
    pub lost_frames: Option<u32>,
}

impl Default for TrackerConfig {
    fn default() -> Self {
        Self {
            high_score: 0.5,
            low_score: 0.1,
            new_track_score: 0.6,
            match_iou: 0.2,
            low_match_iou: 0.5,
            tentative_match_iou: 0.3,
            lost_s: 2.0,
            lost_frames: None,
        }
    }
}

impl TrackerConfig {
    pub(crate) fn check(&self, issues: &mut ConfigIssues) {
        for (name, v) in [
            ("high_score", self.high_score),
            ("low_score", self.low_score),
            ("new_track_score", self.new_track_score),
            ("match_iou", self.match_iou),
            ("low_match_iou", self.low_match_iou),
            ("tentative_match_iou", self.tentative_match_iou),
        ] {
            check_unit(issues, &format!("tracker.{name}"), v, 0.0, 1.0);
        }
        if self.low_score > self.high_score {
            issues.push(
                "tracker.low_score",
                format!(
                    "{} is above high_score {}; low_score must not exceed high_score",
                    self.low_score, self.high_score
                ),
            );
        }
        #[allow(clippy::neg_cmp_op_on_partial_ord)]
        if !(0.1 <= self.lost_s && self.lost_s <= 600.0) {
            issues.push(
                "tracker.lost_s",
                format!("{} is out of range: use 0.1 to 600 seconds", self.lost_s),
            );
        }
        if let Some(frames) = self.lost_frames {
            issues.push(
                "tracker.lost_frames",
                format!(
                    "no longer supported: the tracker works in seconds, so it behaves the same at \
                     any analysis rate; replace `lost_frames = {frames}` with `lost_s = <seconds>` \
                     (default 2; {frames} frames at 5 fps would be {:.1})",
                    f64::from(frames) / 5.0
                ),
            );
        }
    }
}

/// A counting line: two or more points (a polyline) in full-resolution pixels. For a line
/// from A to B, `in` is a crossing from the left-hand side of A->B to its right-hand side as
/// seen on the screen (x right, y down), `out` the reverse.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LineConfig {
    /// Unique per camera; used in topics and reports.
    pub name: String,
    /// `[[x, y], [x, y], ...]` in pixels of the full-resolution frame.
    pub points: Vec<[f32; 2]>,
    /// Optional names shown for the two directions, e.g. `{ in = "northbound", out = "southbound" }`.
    #[serde(default)]
    pub directions: Option<DirectionNames>,
    /// Dead band in pixels either side of the line; an object must leave it on the other side
    /// to count, so boxes jittering on the line count once. Default 6.
    #[serde(default = "default_hysteresis")]
    pub hysteresis_px: f32,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DirectionNames {
    #[serde(rename = "in")]
    pub in_name: String,
    #[serde(rename = "out")]
    pub out_name: String,
}

fn default_hysteresis() -> f32 {
    6.0
}

/// A zone: a polygon in full-resolution pixels, with occupancy and entries/exits.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ZoneConfig {
    pub name: String,
    /// Three or more `[x, y]` corners.
    pub polygon: Vec<[f32; 2]>,
    /// Dead band in pixels at the edge, as for lines. Default 4.
    #[serde(default = "default_zone_hysteresis")]
    pub hysteresis_px: f32,
    /// Severity of an object entering the zone: `info` (default), `warning` or `critical`.
    /// Warning and critical entries are alerts: they ring on the operators' wall and can be
    /// dispatched.
    #[serde(default)]
    pub severity: Severity,
    /// What the zone is for: `watch` (default: entries and exits), `parking`, `crossing`,
    /// `box_junction` or `no_stopping` (see the traffic rules).
    #[serde(default)]
    pub kind: crate::traffic::ZoneKind,
    /// `crowding` when more persons than this are in the zone.
    #[serde(default)]
    pub max_persons: Option<u32>,
    /// `crowding` when persons per square metre exceed this (needs a calibration).
    #[serde(default)]
    pub max_density: Option<f64>,
    /// `loitering` when a person stays in the zone longer than this many seconds.
    #[serde(default)]
    pub loitering_s: Option<f64>,
}

impl ZoneConfig {
    /// A watch zone with default settings.
    pub fn watch(name: &str, polygon: Vec<[f32; 2]>, severity: Severity) -> Self {
        Self {
            name: name.to_string(),
            polygon,
            hysteresis_px: default_zone_hysteresis(),
            severity,
            kind: crate::traffic::ZoneKind::Watch,
            max_persons: None,
            max_density: None,
            loitering_s: None,
        }
    }
}

/// How urgent an event is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    #[default]
    Info,
    Warning,
    Critical,
}

fn default_zone_hysteresis() -> f32 {
    4.0
}

/// Why a `NAME=x1,y1,x2,y2,...` argument (`pantau replay --line` or `--zone`) could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PointsArgError {
    #[error("write NAME=x1,y1,x2,y2...")]
    NoName,
    #[error("coordinates must be numbers")]
    NotNumbers,
    #[error("coordinates come in x,y pairs")]
    OddCount,
}

/// Reads `NAME=x1,y1,x2,y2,...` (a line or zone given on the command line) into its name and
/// points. Only the syntax: [`validate_scene`] checks the name and the points.
pub fn parse_named_points(text: &str) -> Result<(String, Vec<[f32; 2]>), PointsArgError> {
    let (name, coords) = text.split_once('=').ok_or(PointsArgError::NoName)?;
    let nums: Vec<f32> = coords
        .split(',')
        .map(|n| n.trim().parse::<f32>())
        .collect::<Result<_, _>>()
        .map_err(|_| PointsArgError::NotNumbers)?;
    if !nums.len().is_multiple_of(2) {
        return Err(PointsArgError::OddCount);
    }
    Ok((
        name.to_string(),
        nums.chunks(2).map(|c| [c[0], c[1]]).collect(),
    ))
}

/// Checks lines and zones given outside a config file (e.g. on the command line); returns
/// every problem, with paths under `prefix`.
pub fn validate_scene(prefix: &str, lines: &[LineConfig], zones: &[ZoneConfig]) -> ConfigIssues {
    let mut issues = ConfigIssues::default();
    check_scene(&mut issues, prefix, lines, zones);
    issues
}

/// Checks one camera's lines and zones.
pub(crate) fn check_scene(
    issues: &mut ConfigIssues,
    prefix: &str,
    lines: &[LineConfig],
    zones: &[ZoneConfig],
) {
    let mut names = std::collections::HashSet::new();
    for (i, line) in lines.iter().enumerate() {
        let p = format!("{prefix}.lines[{i}]");
        check_rule_name(issues, &format!("{p}.name"), &line.name, &mut names);
        if line.points.len() < 2 {
            issues.push(
                format!("{p}.points"),
                "a line needs at least two points, e.g. [[100, 400], [900, 420]]",
            );
        }
        for (k, w) in line.points.windows(2).enumerate() {
            if w[0] == w[1] {
                issues.push(
                    format!("{p}.points[{}]", k + 1),
                    "repeats the previous point; a line segment needs two different points",
                );
            }
        }
        check_points(issues, &format!("{p}.points"), &line.points);
        if !(0.0..=200.0).contains(&line.hysteresis_px) {
            issues.push(format!("{p}.hysteresis_px"), "use 0 to 200 pixels");
        }
    }
    for (i, zone) in zones.iter().enumerate() {
        let p = format!("{prefix}.zones[{i}]");
        check_rule_name(issues, &format!("{p}.name"), &zone.name, &mut names);
        check_polygon(issues, &format!("{p}.polygon"), &zone.polygon, "zone");
        if !(0.0..=200.0).contains(&zone.hysteresis_px) {
            issues.push(format!("{p}.hysteresis_px"), "use 0 to 200 pixels");
        }
    }
}

/// A polygon of three or more corners that encloses an area, on the frame.
pub(crate) fn check_polygon(
    issues: &mut ConfigIssues,
    path: &str,
    polygon: &[[f32; 2]],
    what: &str,
) {
    if polygon.len() < 3 {
        issues.push(
            path,
            format!("a {what} needs at least three corners, e.g. [[0, 0], [100, 0], [100, 100]]"),
        );
    } else if polygon_area(polygon).abs() < 1.0 {
        issues.push(path, "the corners enclose no area; check their order");
    }
    check_points(issues, path, polygon);
}

pub(crate) fn check_rule_name(
    issues: &mut ConfigIssues,
    path: &str,
    name: &str,
    seen: &mut std::collections::HashSet<String>,
) {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    if !ok {
        issues.push(
            path,
            format!(
                "\"{name}\" is not a valid name: use 1 to 64 lowercase letters, digits, '-' or '_'"
            ),
        );
    }
    if !seen.insert(name.to_string()) {
        issues.push(
            path,
            format!("\"{name}\" is used twice on this camera; lines and zones need distinct names"),
        );
    }
}

fn check_points(issues: &mut ConfigIssues, path: &str, points: &[[f32; 2]]) {
    for (k, [x, y]) in points.iter().enumerate() {
        if !(0.0..=16384.0).contains(x) || !(0.0..=16384.0).contains(y) {
            issues.push(
                format!("{path}[{k}]"),
                format!("[{x}, {y}] is off the frame: coordinates are pixels from 0 to 16384"),
            );
        }
    }
}

fn polygon_area(points: &[[f32; 2]]) -> f32 {
    let n = points.len();
    (0..n)
        .map(|i| {
            let (a, b) = (points[i], points[(i + 1) % n]);
            a[0] * b[1] - b[0] * a[1]
        })
        .sum::<f32>()
        / 2.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn named_points_read_pairs_and_say_what_is_wrong() {
        assert_eq!(
            parse_named_points("mid=320,0, 320 ,360"),
            Ok(("mid".to_string(), vec![[320.0, 0.0], [320.0, 360.0]]))
        );
        assert_eq!(
            parse_named_points("320,0,320,360"),
            Err(PointsArgError::NoName)
        );
        assert_eq!(
            parse_named_points("mid=320,x"),
            Err(PointsArgError::NotNumbers)
        );
        assert_eq!(
            parse_named_points("mid=1,2,3"),
            Err(PointsArgError::OddCount)
        );
    }
}
