//! What leaves the node: every MQTT topic ([`Topics`]) and every message ([`Message`]), built
//! here and nowhere else. A message carries its [`Kind`], so the outbox and each sink know what
//! it is without reading its JSON.

use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use crate::{CountAggregate, Event, EventKind, IdGenerator, Severity, TrackSummary};

/// Topic names (docs/mqtt.md): `<prefix>/<site>/<camera>/...` and `<prefix>/<node>/available`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topics {
    pub prefix: String,
    pub site: String,
    pub node: String,
}

impl Topics {
    pub fn event(&self, camera: &str, rule: &str) -> String {
        format!("{}/{}/{camera}/events/{rule}", self.prefix, self.site)
    }
    pub fn counts(&self, camera: &str) -> String {
        format!("{}/{}/{camera}/counts", self.prefix, self.site)
    }
    pub fn tracks(&self, camera: &str) -> String {
        format!("{}/{}/{camera}/tracks", self.prefix, self.site)
    }
    pub fn status(&self, camera: &str) -> String {
        format!("{}/{}/{camera}/status", self.prefix, self.site)
    }
    /// Dispatch actions. The site is the event's own (an event stored by another node keeps
    /// its site).
    pub fn incidents(&self, site: &str, camera: &str) -> String {
        format!("{}/{site}/{camera}/incidents", self.prefix)
    }
    /// Alerts as CAP 1.2 XML ([`crate::cap`]).
    pub fn cap(&self, camera: &str) -> String {
        format!("{}/{}/{camera}/cap", self.prefix, self.site)
    }
    /// Evidence clips: each one's signed manifest when it is written.
    pub fn evidence(&self, camera: &str) -> String {
        format!("{}/{}/{camera}/evidence", self.prefix, self.site)
    }
    pub fn available(&self) -> String {
        format!("{}/{}/available", self.prefix, self.node)
    }
}

/// What a message is; decides which sinks take it and how.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// An [`Event`] from a rule (line crossing, zone presence).
    Event,
    /// A camera status [`Event`] (retained on MQTT, kept as history in the store).
    Status,
    /// A [`CountAggregate`].
    Counts,
    /// A [`TrackSummary`].
    Track,
    /// An [`IncidentChange`] (stored by the API in the same step; MQTT only).
    Incident,
    /// An alert as CAP 1.2 XML ([`crate::cap`]; MQTT only: the store has the event).
    Cap,
    /// An evidence clip's signed manifest, once the clip is written (MQTT only: the clip and
    /// its manifest are files on the node).
    Evidence,
}

impl Kind {
    /// One byte in the outbox.
    pub fn code(self) -> u8 {
        match self {
            Kind::Event => 1,
            Kind::Status => 2,
            Kind::Counts => 3,
            Kind::Track => 4,
            Kind::Incident => 5,
            Kind::Cap => 6,
            Kind::Evidence => 7,
        }
    }

    pub fn from_code(code: u8) -> Option<Self> {
        Some(match code {
            1 => Kind::Event,
            2 => Kind::Status,
            3 => Kind::Counts,
            4 => Kind::Track,
            5 => Kind::Incident,
            6 => Kind::Cap,
            7 => Kind::Evidence,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Event => "event",
            Kind::Status => "status",
            Kind::Counts => "counts",
            Kind::Track => "track",
            Kind::Incident => "incident",
            Kind::Cap => "cap",
            Kind::Evidence => "evidence",
        }
    }
}

/// One outgoing message: what it is, where it goes on MQTT and its JSON.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub kind: Kind,
    pub topic: String,
    pub retain: bool,
    pub payload: Vec<u8>,
}

fn json(value: &impl Serialize) -> Vec<u8> {
    // These types hold strings, numbers and maps of them: serialising cannot fail.
    serde_json::to_vec(value).expect("events serialise to JSON")
}

impl Message {
    pub fn event(topics: &Topics, e: &Event) -> Self {
        let kind = if e.kind == EventKind::CameraStatus {
            Kind::Status
        } else {
            Kind::Event
        };
        let (topic, retain) = match kind {
            Kind::Status => (topics.status(&e.camera), true),
            _ => (topics.event(&e.camera, &e.rule), false),
        };
        Self {
            kind,
            topic,
            retain,
            payload: json(e),
        }
    }

    pub fn counts(topics: &Topics, c: &CountAggregate) -> Self {
        Self {
            kind: Kind::Counts,
            topic: topics.counts(&c.camera),
            retain: false,
            payload: json(c),
        }
    }

    pub fn track(topics: &Topics, t: &TrackSummary) -> Self {
        Self {
            kind: Kind::Track,
            topic: topics.tracks(&t.camera),
            retain: false,
            payload: json(t),
        }
    }

    pub fn incident(topics: &Topics, c: &IncidentChange) -> Self {
        Self {
            kind: Kind::Incident,
            topic: topics.incidents(&c.site, &c.camera),
            retain: false,
            payload: json(c),
        }
    }

    /// An evidence clip's manifest (`manifest.json` as written, with its signature beside it:
    /// `{"manifest": {...}, "signature": "<base64>"}`).
    pub fn evidence(topics: &Topics, camera: &str, payload: Vec<u8>) -> Self {
        Self {
            kind: Kind::Evidence,
            topic: topics.evidence(camera),
            retain: false,
            payload,
        }
    }

    /// Bytes on the wire without the fixed header: topic length, topic, packet id, payload.
    pub fn wire_len(&self) -> usize {
        2 + self.topic.len() + 2 + self.payload.len()
    }
}

/// A dispatch action on an alert, as the `.../incidents` topic and live clients get it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct IncidentChange {
    pub event_id: String,
    pub camera: String,
    pub site: String,
    pub action: String,
    pub state: String,
    pub assignee: Option<String>,
    pub escalations: i32,
    pub note: Option<String>,
    /// Action `handover`: the agency (`[agencies]`) the incident was handed over to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agency: Option<String>,
    /// The node whose API took the action (`node.name`); in a fleet the other nodes pass it to
    /// their live clients.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    pub actor: String,
    /// RFC 3339.
    pub at: String,
}

/// What a camera's state change says, for [`camera_status`].
#[derive(Debug, Clone, Copy)]
pub struct StatusFacts<'a> {
    pub camera: &'a str,
    pub at: SystemTime,
    /// `connecting`, `streaming`, `stalled`, `backing_off`, `failed`, ...
    pub state: &'a str,
    pub severity: Severity,
    /// Problem code and the operator's message.
    pub problem: Option<(&'a str, &'a str)>,
}

/// A camera status event.
pub fn camera_status(ids: &IdGenerator, site: &str, s: StatusFacts<'_>) -> Event {
    crate::Origin::new(site, s.camera).camera_status(ids, s.at, s.state, s.severity, s.problem)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topics() -> Topics {
        Topics {
            prefix: "pantau".into(),
            site: "kota".into(),
            node: "n1".into(),
        }
    }

    #[test]
    fn status_events_are_retained_on_the_status_topic() {
        let ids = IdGenerator::new();
        let e = camera_status(
            &ids,
            "kota",
            StatusFacts {
                camera: "cam",
                at: SystemTime::UNIX_EPOCH,
                state: "stalled",
                severity: Severity::Warning,
                problem: Some(("no_data", "no frames for 5 s")),
            },
        );
        let m = Message::event(&topics(), &e);
        assert_eq!(m.kind, Kind::Status);
        assert_eq!(m.topic, "pantau/kota/cam/status");
        assert!(m.retain);
        let back: Event = serde_json::from_slice(&m.payload).expect("json");
        assert_eq!(back.details["problem"], "no_data");
    }

    #[test]
    fn kinds_round_trip_their_codes() {
        for k in [
            Kind::Event,
            Kind::Status,
            Kind::Counts,
            Kind::Track,
            Kind::Incident,
            Kind::Cap,
            Kind::Evidence,
        ] {
            assert_eq!(Kind::from_code(k.code()), Some(k));
        }
        assert_eq!(Kind::from_code(0), None);
    }

    #[test]
    fn incidents_go_to_the_events_site() {
        assert_eq!(
            topics().incidents("other", "cam"),
            "pantau/other/cam/incidents"
        );
        assert_eq!(topics().available(), "pantau/n1/available");
    }
}
