//! The pantau event schema, version 1: what operators, dispatch and planners receive over MQTT
//! and find in the store. One JSON shape for every rule (`events/schema/event-v1.json`,
//! `docs/mqtt.md`), plus periodic count aggregates per line.
//!
//! Every event carries a time-ordered id unique across restarts ([`EventId`]), the schema
//! version, where it happened (site, camera, rule), what (kind, lifecycle, object), when (the
//! frame's capture time, not the processing time) and how much it matters (severity).

pub mod build;
pub mod camera;
pub mod cap;
pub mod id;
pub mod outgoing;
pub mod time;

use std::collections::BTreeMap;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

pub use build::{Origin, ZoneChange, REPORTS_CAMERA};
pub use id::{EventId, IdGenerator};
pub use outgoing::{camera_status, IncidentChange, Kind, Message, StatusFacts, Topics};

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
    /// A vehicle faster than its lane's limit (single, once per track).
    Speeding,
    /// A vehicle moving against its lane's direction (single, once per track).
    WrongWay,
    /// A vehicle standing where stopping is not allowed (new, update, end).
    StoppedVehicle,
    /// A vehicle standing in a box junction (new, update, end).
    BoxBlocked,
    /// A person in a lane outside a crossing (new, update, end).
    PersonOnCarriageway,
    /// A person dwelling in a zone (new, update, end).
    Loitering,
    /// More persons in a zone than its limit (new, update, end).
    Crowding,
    /// Persons arriving in a crowd zone faster than its rate (single).
    CrowdSurge,
    /// A lane's queue length from its stop line, every period (single).
    Queue,
    /// A lane's congestion level changed: free, heavy, congested, stop_and_go (single).
    Congestion,
    /// Several vehicles near each other stopped from speed within seconds (single, critical).
    SuddenStop,
    /// A camera's picture is blind, blurred, frozen, moved or slow: `details.condition` (new,
    /// end).
    CameraHealth,
    /// An operator saved a clip of a camera (`save clip` on the wall): an incident with an
    /// evidence clip, `details.by` and `details.note` (single, warning).
    OperatorClip,
    /// A citizen's report from a citizen app (single, warning): camera is the nearest matched
    /// camera, or `reports` when none matched; rule `citizen_report`.
    CitizenReport,
}

impl EventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::LineCrossing => "line_crossing",
            EventKind::ZonePresence => "zone_presence",
            EventKind::CameraStatus => "camera_status",
            EventKind::Speeding => "speeding",
            EventKind::WrongWay => "wrong_way",
            EventKind::StoppedVehicle => "stopped_vehicle",
            EventKind::BoxBlocked => "box_blocked",
            EventKind::PersonOnCarriageway => "person_on_carriageway",
            EventKind::Loitering => "loitering",
            EventKind::Crowding => "crowding",
            EventKind::CrowdSurge => "crowd_surge",
            EventKind::Queue => "queue",
            EventKind::Congestion => "congestion",
            EventKind::SuddenStop => "sudden_stop",
            EventKind::CameraHealth => "camera_health",
            EventKind::OperatorClip => "operator_clip",
            EventKind::CitizenReport => "citizen_report",
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

/// How urgent an event is: one type, shared with the configuration (a zone's `severity`).
pub use pantau_config::analytics::Severity;

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

/// One object's track after it ended: how long it was seen and as what.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrackSummary {
    pub id: EventId,
    pub schema: u32,
    pub site: String,
    pub camera: String,
    pub track_id: u64,
    /// The class most votes went to.
    pub class: String,
    #[serde(with = "time")]
    pub first_seen: SystemTime,
    #[serde(with = "time")]
    pub last_seen: SystemTime,
    /// Analysed frames in which the object was detected.
    pub frames: u32,
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

#[cfg(test)]
mod schema_files {
    //! The JSON Schema files in `events/schema/` describe what the types serialise to.

    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    fn schema(name: &str) -> serde_json::Value {
        let path = format!("{}/schema/{name}", env!("CARGO_MANIFEST_DIR"));
        serde_json::from_str(&std::fs::read_to_string(&path).expect("schema file")).expect("JSON")
    }

    /// Required keys present, no key outside `properties`, enum values allowed.
    fn conforms(value: &serde_json::Value, schema: &serde_json::Value) {
        let obj = value.as_object().expect("object");
        let props = schema["properties"].as_object().expect("properties");
        for req in schema["required"].as_array().expect("required") {
            assert!(
                obj.contains_key(req.as_str().expect("name")),
                "missing {req} in {value}"
            );
        }
        for (k, v) in obj {
            let p = props
                .get(k)
                .unwrap_or_else(|| panic!("{k} not in the schema"));
            if let Some(allowed) = p.get("enum").and_then(|e| e.as_array()) {
                assert!(allowed.contains(v), "{k} = {v} not in {allowed:?}");
            }
            if let Some(c) = p.get("const") {
                assert_eq!(c, v);
            }
            if let Some(pattern) = p.get("pattern") {
                assert_eq!(pattern, "^[0-7][0-9A-HJKMNP-TV-Z]{25}$");
                let s = v.as_str().expect("string");
                assert!(s.len() == 26 && s.parse::<EventId>().is_ok(), "{k} = {s}");
            }
        }
    }

    #[test]
    fn events_and_counts_match_their_schema() {
        let ids = IdGenerator::new();
        let at = UNIX_EPOCH + Duration::from_secs(1_795_507_200);
        let mut status = Event {
            id: ids.at(at),
            schema: SCHEMA_VERSION,
            site: "kota".into(),
            camera: "cam".into(),
            rule: "camera".into(),
            kind: EventKind::CameraStatus,
            lifecycle: Lifecycle::Single,
            incident: None,
            captured_at: at,
            severity: Severity::Warning,
            object: None,
            direction: None,
            snapshot: None,
            details: BTreeMap::new(),
        };
        status.details.insert("state".into(), "stalled".into());
        let zone = Event {
            kind: EventKind::ZonePresence,
            lifecycle: Lifecycle::End,
            incident: Some("cam/box/3".into()),
            object: Some(ObjectRef {
                class: "car".into(),
                track_id: 3,
                bbox: [1.0, 2.0, 3.0, 4.0],
                confidence: 0.5,
            }),
            ..status.clone()
        };
        let report = Origin::new("kota", REPORTS_CAMERA).citizen_report(
            &ids,
            at,
            BTreeMap::from([
                ("source".to_string(), "sipokat".into()),
                ("category".to_string(), "jalan_rusak".into()),
            ]),
        );
        assert_eq!(report.severity, Severity::Warning, "reports are alerts");
        assert_eq!(report.rule, "citizen_report");
        let event_schema = schema("event-v1.json");
        for e in [&status, &zone, &report] {
            conforms(&serde_json::to_value(e).expect("json"), &event_schema);
        }
        let counts = CountAggregate {
            id: ids.at(at),
            schema: SCHEMA_VERSION,
            site: "kota".into(),
            camera: "cam".into(),
            line: "gate".into(),
            period_start: at,
            period_s: 60,
            counts: BTreeMap::from([("in".to_string(), BTreeMap::from([("car".to_string(), 3)]))]),
        };
        conforms(
            &serde_json::to_value(&counts).expect("json"),
            &schema("counts-v1.json"),
        );
    }
}
