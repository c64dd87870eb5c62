//! The pantau event schema, version 1: what operators, dispatch and planners receive over MQTT
//! and find in the store. One JSON shape for every rule (`events/schema/event-v1.json`,
//! `docs/mqtt.md`), plus periodic count aggregates per line.
//!
//! Every event carries a time-ordered id unique across restarts ([`EventId`]), the schema
//! version, where it happened (site, camera, rule), what (kind, lifecycle, object), when (the
//! frame's capture time, not the processing time) and how much it matters (severity).

pub mod id;
pub mod time;

use std::collections::BTreeMap;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

pub use id::{EventId, IdGenerator};

/// The schema version written in every message.
pub const SCHEMA_VERSION: u32 = 1;

/// What kind of fact an event is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// An object crossed a counting line (single).
    LineCrossing,
    /// An object is in a zone (new when it enters, end when it leaves).
    ZonePresence,
    /// A camera changed state (connecting, streaming, stalled, ...).
    CameraStatus,
}

impl EventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::LineCrossing => "line_crossing",
            EventKind::ZonePresence => "zone_presence",
            EventKind::CameraStatus => "camera_status",
        }
    }
}

/// Where an event is in its life. Things that last (an object in a zone) have `new`, any number
/// of `update`s and one `end`, all with the same `incident` key; instant facts are `single`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Lifecycle {
    Single,
    New,
    Update,
    End,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Info,
    Warning,
    Critical,
}

/// The object an event is about.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ObjectRef {
    /// Class label, e.g. `car`.
    pub class: String,
    /// Track id, unique per camera while pantau runs.
    pub track_id: u64,
    /// `[x1, y1, x2, y2]` in pixels of the full-resolution frame.
    pub bbox: [f32; 4],
    /// Detector confidence, 0..1.
    pub confidence: f32,
}

/// One event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub id: EventId,
    pub schema: u32,
    pub site: String,
    pub camera: String,
    /// The rule (line or zone name) or `camera` for camera status.
    pub rule: String,
    pub kind: EventKind,
    pub lifecycle: Lifecycle,
    /// Groups the events of one lasting thing (`new` .. `end`); absent for `single`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub incident: Option<String>,
    /// When the camera captured the frame.
    #[serde(with = "time")]
    pub captured_at: SystemTime,
    pub severity: Severity,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object: Option<ObjectRef>,
    /// `in` or `out` for line crossings (see the README's direction convention).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub direction: Option<String>,
    /// Relative path of the snapshot JPEG, when one was taken.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<String>,
    /// Rule-specific details (e.g. camera state and problem).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub details: BTreeMap<String, serde_json::Value>,
}

/// Counts of one line over one period: `counts[direction][class]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CountAggregate {
    pub id: EventId,
    pub schema: u32,
    pub site: String,
    pub camera: String,
    pub line: String,
    #[serde(with = "time")]
    pub period_start: SystemTime,
    pub period_s: u32,
    pub counts: BTreeMap<String, BTreeMap<String, u64>>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    fn crossing() -> Event {
        Event {
            id: "01KAW0Z5R3X9M4T7B2C6D8F0GH".parse().expect("id"),
            schema: SCHEMA_VERSION,
            site: "lubuklinggau".into(),
            camera: "simpang-lima".into(),
            rule: "stop-line".into(),
            kind: EventKind::LineCrossing,
            lifecycle: Lifecycle::Single,
            incident: None,
            captured_at: UNIX_EPOCH + Duration::from_millis(1_795_512_642_123),
            severity: Severity::Info,
            object: Some(ObjectRef {
                class: "car".into(),
                track_id: 42,
                bbox: [100.0, 200.0, 180.0, 260.0],
                confidence: 0.87,
            }),
            direction: Some("in".into()),
            snapshot: None,
            details: BTreeMap::new(),
        }
    }

    #[test]
    fn wire_format_is_stable() {
        let json = serde_json::to_string(&crossing()).expect("serialises");
        assert_eq!(
            json,
            r#"{"id":"01KAW0Z5R3X9M4T7B2C6D8F0GH","schema":1,"site":"lubuklinggau","camera":"simpang-lima","rule":"stop-line","kind":"line_crossing","lifecycle":"single","captured_at":"2026-11-24T09:30:42.123Z","severity":"info","object":{"class":"car","track_id":42,"bbox":[100.0,200.0,180.0,260.0],"confidence":0.87},"direction":"in"}"#
        );
        let back: Event = serde_json::from_str(&json).expect("parses");
        assert_eq!(back, crossing());
    }
}
