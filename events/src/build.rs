//! Every event, count aggregate and track summary is built here, from what a stage knows, so
//! the wire format has one owner.

use std::collections::BTreeMap;
use std::time::SystemTime;

use crate::{
    CountAggregate, Event, EventKind, IdGenerator, Lifecycle, ObjectRef, Severity, TrackSummary,
    SCHEMA_VERSION,
};

/// The camera of a citizen report that no camera sees: its topic is
/// `<prefix>/<site>/reports/events/citizen_report`.
pub const REPORTS_CAMERA: &str = "reports";

/// An object entering or leaving a zone.
#[derive(Debug, Clone, Copy)]
pub struct ZoneChange<'a> {
    pub zone: &'a str,
    /// Entered (else left).
    pub entered: bool,
    /// It came in or went out across the picture's edge.
    pub crossed_edge: bool,
    /// The zone's severity (for entries).
    pub severity: Severity,
}

/// Where facts come from: one camera of one site.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    pub site: String,
    pub camera: String,
}

impl Origin {
    pub fn new(site: &str, camera: &str) -> Self {
        Self {
            site: site.to_string(),
            camera: camera.to_string(),
        }
    }

    fn event(
        &self,
        ids: &IdGenerator,
        rule: &str,
        kind: EventKind,
        lifecycle: Lifecycle,
        at: SystemTime,
    ) -> Event {
        Event {
            id: ids.at(at),
            schema: SCHEMA_VERSION,
            site: self.site.clone(),
            camera: self.camera.clone(),
            rule: rule.to_string(),
            kind,
            lifecycle,
            incident: None,
            captured_at: at,
            severity: Severity::Info,
            object: None,
            direction: None,
            snapshot: None,
            details: BTreeMap::new(),
        }
    }

    /// An operator (`by`) saved a clip of this camera at `at`, with an optional note: an
    /// incident like an alert, so it reaches dispatch with its evidence.
    pub fn operator_clip(
        &self,
        ids: &IdGenerator,
        at: SystemTime,
        by: &str,
        note: Option<&str>,
    ) -> Event {
        let mut e = self.event(
            ids,
            "save_clip",
            EventKind::OperatorClip,
            Lifecycle::Single,
            at,
        );
        e.severity = Severity::Warning;
        e.details.insert("by".into(), by.into());
        if let Some(note) = note {
            e.details.insert("note".into(), note.into());
        }
        e
    }

    /// An object crossed `line` in `direction` (`in` or `out`) in the frame captured at `at`.
    pub fn line_crossing(
        &self,
        ids: &IdGenerator,
        line: &str,
        at: SystemTime,
        object: ObjectRef,
        direction: &str,
    ) -> Event {
        let mut e = self.event(ids, line, EventKind::LineCrossing, Lifecycle::Single, at);
        e.object = Some(object);
        e.direction = Some(direction.to_string());
        e
    }

    /// An object entered (`new`, with the zone's severity) or left (`end`) a zone; both carry
    /// the same incident key.
    pub fn zone_presence(
        &self,
        ids: &IdGenerator,
        at: SystemTime,
        change: ZoneChange<'_>,
        object: ObjectRef,
    ) -> Event {
        let lifecycle = if change.entered {
            Lifecycle::New
        } else {
            Lifecycle::End
        };
        let zone = change.zone;
        let mut e = self.event(ids, zone, EventKind::ZonePresence, lifecycle, at);
        e.incident = Some(format!("{}/{zone}/{}", self.camera, object.track_id));
        e.object = Some(object);
        e.details
            .insert("crossed_edge".into(), change.crossed_edge.into());
        if change.entered {
            e.severity = change.severity;
        }
        e
    }

    /// A fact of the traffic and incident rules about `rule` (a lane or zone). Lasting ones
    /// (`new`, `update`, `end`) share an incident key per rule, place and object.
    #[allow(clippy::too_many_arguments)]
    pub fn traffic(
        &self,
        ids: &IdGenerator,
        at: SystemTime,
        kind: EventKind,
        lifecycle: Lifecycle,
        rule: &str,
        severity: Severity,
        object: Option<ObjectRef>,
        details: BTreeMap<String, serde_json::Value>,
    ) -> Event {
        let mut e = self.event(ids, rule, kind, lifecycle, at);
        if lifecycle != Lifecycle::Single {
            let who = object
                .as_ref()
                .map_or_else(|| "all".to_string(), |o| o.track_id.to_string());
            e.incident = Some(format!("{}/{}/{rule}/{who}", self.camera, kind.as_str()));
        }
        e.severity = severity;
        e.object = object;
        e.details = details;
        e
    }

    /// A camera's picture started (`new`, warning) or stopped (`end`, info) showing
    /// `condition` (`blackout`, `low_light`, `defocus`, `frozen`, `view_changed`, `fps_drop`);
    /// `details` are the figures that decided it. One incident per camera and condition.
    pub fn camera_health(
        &self,
        ids: &IdGenerator,
        at: SystemTime,
        condition: &str,
        lifecycle: Lifecycle,
        mut details: BTreeMap<String, serde_json::Value>,
    ) -> Event {
        let mut e = self.event(ids, "camera", EventKind::CameraHealth, lifecycle, at);
        e.incident = Some(format!(
            "{}/{}/{condition}",
            self.camera,
            EventKind::CameraHealth.as_str()
        ));
        e.severity = if lifecycle == Lifecycle::New {
            Severity::Warning
        } else {
            Severity::Info
        };
        details.insert("condition".into(), condition.into());
        e.details = details;
        e
    }

    /// A camera's state change; `problem` is its code and the operator's message.
    pub fn camera_status(
        &self,
        ids: &IdGenerator,
        at: SystemTime,
        state: &str,
        severity: Severity,
        problem: Option<(&str, &str)>,
    ) -> Event {
        let mut e = self.event(
            ids,
            "camera",
            EventKind::CameraStatus,
            Lifecycle::Single,
            at,
        );
        e.severity = severity;
        e.details.insert("state".into(), state.into());
        if let Some((code, message)) = problem {
            e.details.insert("problem".into(), code.into());
            e.details.insert("message".into(), message.into());
        }
        e
    }

    /// A citizen's report, reported at `at`: `single`, severity warning (an alert, so it goes
    /// through dispatch), rule `citizen_report`. The origin's camera is the nearest matched
    /// camera, or [`REPORTS_CAMERA`] when none matched. `details`: source, external_id,
    /// category, text, latitude, longitude, photos, cameras.
    pub fn citizen_report(
        &self,
        ids: &IdGenerator,
        at: SystemTime,
        details: BTreeMap<String, serde_json::Value>,
    ) -> Event {
        let rule = EventKind::CitizenReport.as_str();
        let mut e = self.event(ids, rule, EventKind::CitizenReport, Lifecycle::Single, at);
        e.severity = Severity::Warning;
        e.details = details;
        e
    }

    /// The counts of `line` over the period starting at `start`: `counts[direction][class]`.
    pub fn counts(
        &self,
        ids: &IdGenerator,
        line: &str,
        start: SystemTime,
        period_s: u32,
        counts: BTreeMap<String, BTreeMap<String, u64>>,
    ) -> CountAggregate {
        CountAggregate {
            id: ids.at(start),
            schema: SCHEMA_VERSION,
            site: self.site.clone(),
            camera: self.camera.clone(),
            line: line.to_string(),
            period_start: start,
            period_s,
            counts,
        }
    }

    /// One object's track after it ended.
    pub fn track_summary(
        &self,
        ids: &IdGenerator,
        track_id: u64,
        class: String,
        first_seen: SystemTime,
        last_seen: SystemTime,
        frames: u32,
    ) -> TrackSummary {
        TrackSummary {
            id: ids.at(first_seen),
            schema: SCHEMA_VERSION,
            site: self.site.clone(),
            camera: self.camera.clone(),
            track_id,
            class,
            first_seen,
            last_seen,
            frames,
        }
    }
}
