//! Alerts as CAP 1.2 (OASIS Common Alerting Protocol) XML, for command-centre systems that
//! take alerts in the standard rather than in pantau's JSON.
//!
//! One CAP message per alert event (severity warning or critical), with the event's id as
//! its `identifier`: `new` and `single` are `Alert`, `update` is `Update`, and the `end` of an
//! incident that was alerted is `Cancel` (updates and cancels name the first alert in
//! `references`). Scope is `Restricted`: the alerts come from cameras watching the public
//! (people's positions, snapshots) and are meant for the command centre and its responders; the
//! command centre decides what goes on to the public. The mapping of each kind to CAP's
//! category, urgency, severity and certainty is [`profile`] (tabled in docs/mqtt.md).
//!
//! The XML is written by hand (a few elements in a fixed order); every text is escaped and
//! characters XML 1.0 cannot hold are dropped. The test validates an alert of every kind
//! against the OASIS schema (`events/schema/cap-1.2.xsd`) with `xmllint`.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::SystemTime;

use crate::{Event, EventKind, Kind, Lifecycle, Message, Severity, Topics};

/// The media type of a CAP message.
pub const CONTENT_TYPE: &str = "application/cap+xml";

/// The CAP 1.2 XML namespace.
pub const NAMESPACE: &str = "urn:oasis:names:tc:emergency:cap:1.2";

/// Radius of the area around a camera, km: about how far a city camera sees.
pub const CIRCLE_RADIUS_KM: f64 = 0.2;

/// What a CAP message does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MsgType {
    /// A new alert (`new` or `single` event).
    Alert,
    /// More about an alert that is still on (`update` event).
    Update,
    /// The alerted situation is over (`end` event).
    Cancel,
}

impl MsgType {
    pub fn as_str(self) -> &'static str {
        match self {
            MsgType::Alert => "Alert",
            MsgType::Update => "Update",
            MsgType::Cancel => "Cancel",
        }
    }
}

/// Where a camera is (WGS84 degrees).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Place {
    pub latitude: f64,
    pub longitude: f64,
}

/// The first alert of an incident, which its updates and cancel refer to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    /// Its identifier (the `new` event's id).
    pub identifier: String,
    pub sent: SystemTime,
}

/// What a CAP message needs beside its event.
#[derive(Debug, Clone, Copy)]
pub struct Context<'a> {
    /// The node's name (`node.name`); the sender is `<node>@<site>`.
    pub node: &'a str,
    /// The camera's display name.
    pub camera_name: Option<&'a str>,
    /// The camera's position, for the area's circle.
    pub place: Option<Place>,
    /// The incident's first alert (updates and cancels).
    pub reference: Option<&'a Reference>,
}

/// An event is an alert when its severity is warning or critical.
pub fn is_alert(e: &Event) -> bool {
    e.severity != Severity::Info
}

/// The CAP message type of `e`, or `None` when it makes none: alerts make one, and so does
/// the `end` of an incident that was alerted (`alerted`; ends themselves are information).
pub fn msg_type(e: &Event, alerted: bool) -> Option<MsgType> {
    match e.lifecycle {
        Lifecycle::End if is_alert(e) || alerted => Some(MsgType::Cancel),
        Lifecycle::End => None,
        _ if !is_alert(e) => None,
        Lifecycle::Single | Lifecycle::New => Some(MsgType::Alert),
        Lifecycle::Update => Some(MsgType::Update),
    }
}

/// CAP's view of one alert: `info`'s category, event name, response, urgency, severity and
/// certainty.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Profile {
    pub categories: &'static [&'static str],
    /// The `event` text: what happened, in a few words.
    pub event: &'static str,
    pub response: &'static str,
    pub urgency: &'static str,
    pub severity: &'static str,
    pub certainty: &'static str,
}

/// The mapping from pantau's kind and severity to CAP. Everything a camera reports was seen,
/// so certainty is `Observed`. Severity follows pantau's (warning -> `Moderate`, critical ->
/// `Severe`), one step higher for a danger to life (wrong-way driver, person on the
/// carriageway) and one lower for what endangers nobody at once (speeding after the fact,
/// loitering, a blocked box junction, a camera fault). Urgency is `Immediate` for situations
/// that need someone now and `Expected` for the rest. A cancel is `Past`, `Minor` and
/// `AllClear`.
pub fn profile(kind: EventKind, severity: Severity, msg: MsgType) -> Profile {
    use EventKind as K;
    // (categories, event, urgency, severity step)
    let (categories, event, urgency, step): (&'static [&'static str], _, _, i8) = match kind {
        K::Speeding => (&["Transport"], "Speeding vehicle", "Expected", -1),
        K::WrongWay => (
            &["Transport", "Safety"],
            "Wrong-way vehicle",
            "Immediate",
            1,
        ),
        K::StoppedVehicle => (&["Transport"], "Stopped vehicle", "Immediate", 0),
        K::BoxBlocked => (&["Transport"], "Blocked box junction", "Expected", -1),
        K::PersonOnCarriageway => (
            &["Safety", "Transport"],
            "Person on the carriageway",
            "Immediate",
            1,
        ),
        K::Loitering => (&["Security"], "Loitering", "Expected", -1),
        K::Crowding => (&["Safety"], "Crowding", "Immediate", 0),
        K::ZonePresence => (&["Safety"], "Entry into a watched zone", "Immediate", 0),
        K::LineCrossing => (&["Transport"], "Line crossing", "Expected", 0),
        K::CrowdSurge => (&["Safety"], "Crowd surge", "Immediate", 0),
        K::Queue => (&["Transport"], "Traffic queue", "Expected", -1),
        K::Congestion => (&["Transport"], "Traffic congestion", "Expected", -1),
        K::SuddenStop => (
            &["Transport", "Safety"],
            "Sudden stop of traffic",
            "Immediate",
            0,
        ),
        K::CameraStatus => (&["Infra"], "Camera fault", "Expected", -1),
        K::CameraHealth => (&["Infra"], "Camera picture fault", "Expected", -1),
        K::OperatorClip => (
            &["Security"],
            "Incident seen by an operator",
            "Immediate",
            0,
        ),
        K::CitizenReport => (&["Other"], "Citizen report", "Expected", 0),
    };
    if msg == MsgType::Cancel {
        return Profile {
            categories,
            event,
            response: "AllClear",
            urgency: "Past",
            severity: "Minor",
            certainty: "Observed",
        };
    }
    let base: i8 = match severity {
        Severity::Info => 0,
        Severity::Warning => 1,
        Severity::Critical => 2,
    };
    let severity = match base + step {
        i8::MIN..=0 => "Minor",
        1 => "Moderate",
        2 => "Severe",
        _ => "Extreme",
    };
    let response = match kind {
        K::WrongWay | K::PersonOnCarriageway | K::Crowding | K::CrowdSurge | K::SuddenStop => {
            "Avoid"
        }
        _ => "Monitor",
    };
    Profile {
        categories,
        event,
        response,
        urgency,
        severity,
        certainty: "Observed",
    }
}

/// The sender of a node's alerts: `<node>@<site>` (names are lowercase letters, digits, '-'
/// and '_', so never a space, comma, '<' or '&', which CAP forbids here).
pub fn sender(node: &str, site: &str) -> String {
    format!("{node}@{site}")
}

/// CAP time: `2026-11-24T10:34:43+00:00` (whole seconds, an offset, never `Z`).
pub fn time(t: SystemTime) -> String {
    let rfc = crate::time::format(t);
    format!("{}+00:00", rfc.get(..19).unwrap_or(&rfc))
}

/// The CAP 1.2 XML of event `e` as a message of type `msg`.
pub fn alert(e: &Event, msg: MsgType, ctx: &Context<'_>) -> String {
    let p = profile(e.kind, e.severity, msg);
    let camera = ctx.camera_name.unwrap_or(&e.camera);
    let sent = time(e.captured_at);
    let mut x = Xml::default();
    x.out
        .push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    x.out.push_str(&format!("<alert xmlns=\"{NAMESPACE}\">\n"));
    x.leaf(1, "identifier", &e.id.to_string());
    x.leaf(1, "sender", &sender(ctx.node, &e.site));
    x.leaf(1, "sent", &sent);
    x.leaf(1, "status", "Actual");
    x.leaf(1, "msgType", msg.as_str());
    x.leaf(
        1,
        "source",
        &format!("pantau video analytics, camera {}", e.camera),
    );
    x.leaf(1, "scope", "Restricted");
    x.leaf(
        1,
        "restriction",
        "For the command centre and its responders; review before passing it to the public",
    );
    if let (Some(r), MsgType::Update | MsgType::Cancel) = (ctx.reference, msg) {
        x.leaf(
            1,
            "references",
            &format!(
                "{},{},{}",
                sender(ctx.node, &e.site),
                r.identifier,
                time(r.sent)
            ),
        );
    }
    if let Some(incident) = e
        .incident
        .as_deref()
        .filter(|i| !i.contains(char::is_whitespace))
    {
        x.leaf(1, "incidents", incident);
    }
    x.open(1, "info");
    x.leaf(2, "language", "en");
    for c in p.categories {
        x.leaf(2, "category", c);
    }
    x.leaf(2, "event", p.event);
    x.leaf(2, "responseType", p.response);
    x.leaf(2, "urgency", p.urgency);
    x.leaf(2, "severity", p.severity);
    x.leaf(2, "certainty", p.certainty);
    if msg == MsgType::Alert {
        x.leaf(2, "onset", &sent);
    }
    x.leaf(
        2,
        "senderName",
        &format!("pantau node {}, site {}", ctx.node, e.site),
    );
    let place = if e.rule == "camera" {
        format!("camera {camera}")
    } else {
        format!("{} on camera {camera}", e.rule)
    };
    let headline = match msg {
        MsgType::Cancel => format!("Over: {} at {place}", p.event.to_lowercase()),
        _ => format!("{} at {place}", p.event),
    };
    x.leaf(2, "headline", &headline);
    x.leaf(2, "description", &description(e, msg, camera));
    x.leaf(
        2,
        "instruction",
        match msg {
            MsgType::Cancel => "Nothing more to do for this alert.",
            _ => "Check the camera's live view in the pantau console and send a unit if needed.",
        },
    );
    let mut params: Vec<(String, String)> = vec![
        ("site".into(), e.site.clone()),
        ("camera".into(), e.camera.clone()),
        ("rule".into(), e.rule.clone()),
        ("kind".into(), e.kind.as_str().into()),
        ("lifecycle".into(), lifecycle(e.lifecycle).into()),
        ("pantau_severity".into(), severity_name(e.severity).into()),
    ];
    if let Some(i) = &e.incident {
        params.push(("incident".into(), i.clone()));
    }
    if let Some(o) = &e.object {
        params.push(("class".into(), o.class.clone()));
        params.push(("track_id".into(), o.track_id.to_string()));
    }
    if let Some(d) = &e.direction {
        params.push(("direction".into(), d.clone()));
    }
    if let Some(s) = &e.snapshot {
        params.push(("snapshot".into(), s.clone()));
    }
    for (k, v) in &e.details {
        params.push((k.clone(), plain(v)));
    }
    for (name, value) in &params {
        x.open(2, "parameter");
        x.leaf(3, "valueName", name);
        x.leaf(3, "value", value);
        x.close(2, "parameter");
    }
    x.open(2, "area");
    x.leaf(3, "areaDesc", &format!("Camera {camera}, site {}", e.site));
    if let Some(pl) = ctx.place {
        x.leaf(
            3,
            "circle",
            &format!("{:.6},{:.6} {CIRCLE_RADIUS_KM}", pl.latitude, pl.longitude),
        );
    }
    x.close(2, "area");
    x.close(1, "info");
    x.out.push_str("</alert>\n");
    x.out
}

fn lifecycle(l: Lifecycle) -> &'static str {
    match l {
        Lifecycle::Single => "single",
        Lifecycle::New => "new",
        Lifecycle::Update => "update",
        Lifecycle::End => "end",
    }
}

fn severity_name(s: Severity) -> &'static str {
    match s {
        Severity::Info => "info",
        Severity::Warning => "warning",
        Severity::Critical => "critical",
    }
}

/// A detail value as text: strings as they are, anything else as JSON.
fn plain(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// What happened, in plain words, with the figures the rule measured.
fn description(e: &Event, msg: MsgType, camera: &str) -> String {
    let num = |k: &str| e.details.get(k).and_then(|v| v.as_f64());
    let text = |k: &str| e.details.get(k).and_then(|v| v.as_str());
    let what = match (&e.object, text("class")) {
        (Some(o), _) => format!("A {} (track {})", o.class, o.track_id),
        (None, Some(class)) => format!("A {class}"),
        (None, None) => "An object".to_string(),
    };
    let rule = &e.rule;
    let held = num("duration_s").map_or(String::new(), |s| format!(" for {s} s"));
    let mut s = match (e.kind, msg) {
        (_, MsgType::Cancel) => {
            let p = profile(e.kind, e.severity, msg);
            format!(
                "{} at {rule} is over{}.",
                p.event,
                num("duration_s").map_or(String::new(), |s| format!(" after {s} s"))
            )
        }
        (EventKind::Speeding, _) => format!(
            "{what} drove at {} km/h in lane {rule}, where the limit is {} km/h.",
            num("speed_kmh").map_or("?".into(), |v| v.to_string()),
            num("limit_kmh").map_or("?".into(), |v| v.to_string()),
        ),
        (EventKind::WrongWay, _) => {
            let how_far = match (num("distance_m"), num("distance_box_heights")) {
                (Some(m), _) => format!(" {m} m"),
                (None, Some(h)) => format!(" {h} vehicle lengths"),
                (None, None) => String::new(),
            };
            format!("{what} moved{how_far} against the direction of travel of lane {rule}.")
        }
        (EventKind::StoppedVehicle, _) => {
            format!("{what} has been standing{held} in {rule}, where stopping is not allowed.")
        }
        (EventKind::BoxBlocked, _) => {
            format!("{what} has been standing{held} in box junction {rule}, blocking it.")
        }
        (EventKind::PersonOnCarriageway, _) => {
            format!("{what} has been on the carriageway in lane {rule}{held}, outside a crossing.")
        }
        (EventKind::Loitering, _) => format!("{what} has stayed in zone {rule}{held}."),
        (EventKind::Crowding, _) => {
            let persons = num("persons").map_or("Many".into(), |n| n.to_string());
            let density =
                num("persons_per_m2").map_or(String::new(), |d| format!(" ({d} per square metre)"));
            format!("{persons} persons are in zone {rule}{density}, more than it should hold.")
        }
        (EventKind::ZonePresence, _) => format!("{what} entered watched zone {rule}."),
        (EventKind::LineCrossing, _) => format!(
            "{what} crossed line {rule}{}.",
            e.direction
                .as_deref()
                .map_or(String::new(), |d| format!(" ({d})"))
        ),
        (EventKind::CameraHealth, _) => format!(
            "The camera's picture shows {}{held}.",
            text("condition").unwrap_or("a fault").replace('_', " ")
        ),
        (EventKind::OperatorClip, _) => format!(
            "Operator {} saved a clip of the camera{}.",
            text("by").unwrap_or("?"),
            text("note").map_or(String::new(), |n| format!(": {n}"))
        ),
        (EventKind::CitizenReport, _) => format!(
            "A citizen reported {}: {}",
            text("category").unwrap_or("something"),
            text("text").unwrap_or_default()
        ),
        (EventKind::CameraStatus, _) => format!(
            "The camera is {}{}.",
            text("state").unwrap_or("not streaming").replace('_', " "),
            text("message").map_or(String::new(), |m| format!(": {m}"))
        ),
        (
            EventKind::CrowdSurge
            | EventKind::Queue
            | EventKind::Congestion
            | EventKind::SuddenStop,
            _,
        ) => {
            let figures: Vec<String> = e
                .details
                .iter()
                .map(|(k, v)| format!("{} {}", k.replace('_', " "), plain(v)))
                .collect();
            let p = profile(e.kind, e.severity, msg);
            if figures.is_empty() {
                format!("{} at {rule}.", p.event)
            } else {
                format!("{} at {rule}: {}.", p.event, figures.join(", "))
            }
        }
    };
    let when = time(e.captured_at)[..19].replace('T', " ");
    if e.kind == EventKind::CitizenReport {
        // A citizen saw it, not a camera; the camera is only the nearest that may show it.
        let near = if e.camera == crate::REPORTS_CAMERA {
            String::new()
        } else {
            format!(", near camera {camera}")
        };
        s.push_str(&format!(" Reported at {when} UTC (site {}{near}).", e.site));
    } else {
        s.push_str(&format!(
            " Seen by camera {camera} (site {}) at {when} UTC.",
            e.site
        ));
    }
    s
}

/// A tiny XML writer: elements on their own lines, text escaped.
#[derive(Default)]
struct Xml {
    out: String,
}

impl Xml {
    fn indent(&mut self, depth: usize) {
        for _ in 0..depth {
            self.out.push_str("  ");
        }
    }

    fn open(&mut self, depth: usize, tag: &str) {
        self.indent(depth);
        self.out.push('<');
        self.out.push_str(tag);
        self.out.push_str(">\n");
    }

    fn close(&mut self, depth: usize, tag: &str) {
        self.indent(depth);
        self.out.push_str("</");
        self.out.push_str(tag);
        self.out.push_str(">\n");
    }

    fn leaf(&mut self, depth: usize, tag: &str, text: &str) {
        self.indent(depth);
        self.out.push('<');
        self.out.push_str(tag);
        self.out.push('>');
        escape_into(&mut self.out, text);
        self.out.push_str("</");
        self.out.push_str(tag);
        self.out.push_str(">\n");
    }
}

/// Escapes text for an element's content (quotes may stay: no attributes are written); drops
/// what XML 1.0 cannot hold (control characters other than tab, newline and carriage return;
/// U+FFFE and U+FFFF).
pub fn escape_into(out: &mut String, text: &str) {
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            // Kept as a reference so a reader's line-end normalisation cannot change it.
            '\r' => out.push_str("&#13;"),
            '\t' | '\n' => out.push(c),
            c if (c as u32) < 0x20 || c == '\u{FFFE}' || c == '\u{FFFF}' => {}
            c => out.push(c),
        }
    }
}

/// The node's CAP feed: turns alert events into CAP messages on `<prefix>/<site>/<camera>/cap`.
/// It remembers the first alert of each open incident per camera, so updates and the end
/// refer to it and an end becomes a `Cancel` only when its incident was alerted; and where each
/// camera is. Shared by every camera's analysis and the status watcher.
#[derive(Debug)]
pub struct Feed {
    node: String,
    state: Mutex<FeedState>,
}

#[derive(Debug, Default)]
struct FeedState {
    /// Camera id -> (display name, position).
    cameras: HashMap<String, (Option<String>, Option<Place>)>,
    /// (camera, incident) -> its first alert.
    open: HashMap<(String, String), Reference>,
}

impl Feed {
    pub fn new(node: &str) -> Self {
        Self {
            node: node.to_string(),
            state: Mutex::default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, FeedState> {
        // The state is plain maps, consistent after any panic: keep using it.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A camera (re)starts: its name and position; its rules start over, so do its incidents.
    pub fn camera(&self, id: &str, name: Option<&str>, place: Option<Place>) {
        let mut s = self.lock();
        s.cameras
            .insert(id.to_string(), (name.map(str::to_string), place));
        s.open.retain(|(camera, _), _| camera != id);
    }

    /// A camera is removed.
    pub fn forget(&self, id: &str) {
        let mut s = self.lock();
        s.cameras.remove(id);
        s.open.retain(|(camera, _), _| camera != id);
    }

    /// The CAP message of `e`, when it makes one ([`msg_type`]).
    pub fn message(&self, topics: &Topics, e: &Event) -> Option<Message> {
        if !is_alert(e) && e.lifecycle != Lifecycle::End {
            return None;
        }
        let mut s = self.lock();
        let key = e.incident.clone().map(|i| (e.camera.clone(), i));
        let first = key.as_ref().and_then(|k| s.open.get(k).cloned());
        let msg = msg_type(e, first.is_some())?;
        match (&key, msg) {
            (Some(k), MsgType::Alert) => {
                s.open.insert(
                    k.clone(),
                    Reference {
                        identifier: e.id.to_string(),
                        sent: e.captured_at,
                    },
                );
            }
            (Some(k), MsgType::Cancel) => {
                s.open.remove(k);
            }
            _ => {}
        }
        let (name, place) = s.cameras.get(&e.camera).cloned().unwrap_or_default();
        drop(s);
        let xml = alert(
            e,
            msg,
            &Context {
                node: &self.node,
                camera_name: name.as_deref(),
                place,
                reference: first.as_ref(),
            },
        );
        Some(Message {
            kind: Kind::Cap,
            topic: topics.cap(&e.camera),
            retain: false,
            payload: xml.into_bytes(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{IdGenerator, ObjectRef, Origin};
    use std::collections::BTreeMap;
    use std::io::Write;
    use std::process::{Command, Stdio};
    use std::time::{Duration, UNIX_EPOCH};

    /// Every kind; a new kind fails to compile here until it is listed (and has a profile).
    fn all_kinds() -> Vec<EventKind> {
        use EventKind as K;
        let all = vec![
            K::LineCrossing,
            K::ZonePresence,
            K::CameraStatus,
            K::Speeding,
            K::WrongWay,
            K::StoppedVehicle,
            K::BoxBlocked,
            K::PersonOnCarriageway,
            K::Loitering,
            K::Crowding,
            K::CrowdSurge,
            K::Queue,
            K::Congestion,
            K::SuddenStop,
            K::CameraHealth,
            K::OperatorClip,
            K::CitizenReport,
        ];
        for k in &all {
            match k {
                K::LineCrossing
                | K::ZonePresence
                | K::CameraStatus
                | K::Speeding
                | K::WrongWay
                | K::StoppedVehicle
                | K::BoxBlocked
                | K::PersonOnCarriageway
                | K::Loitering
                | K::Crowding
                | K::CrowdSurge
                | K::Queue
                | K::Congestion
                | K::SuddenStop
                | K::CameraHealth
                | K::OperatorClip => {}
                K::CitizenReport => {}
            }
        }
        all
    }

    fn at() -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(1_795_512_642_123)
    }

    fn car() -> ObjectRef {
        ObjectRef {
            class: "car".into(),
            track_id: 12,
            bbox: [1.0, 2.0, 3.0, 4.0],
            confidence: 0.8,
        }
    }

    /// An event of `kind` in `lifecycle` with the details its rule gives, and some hostile
    /// text.
    fn event(ids: &IdGenerator, kind: EventKind, lifecycle: Lifecycle, sev: Severity) -> Event {
        let origin = Origin::new("lubuklinggau", "simpang-lima");
        let mut details: BTreeMap<String, serde_json::Value> = BTreeMap::new();
        match kind {
            EventKind::Speeding => {
                details.insert("speed_kmh".into(), 72.5.into());
                details.insert("limit_kmh".into(), 50.into());
            }
            EventKind::WrongWay => {
                details.insert("distance_m".into(), 12.3.into());
                details.insert("seconds".into(), 2.into());
            }
            EventKind::Crowding => {
                details.insert("persons".into(), 14.into());
                details.insert("persons_per_m2".into(), 0.81.into());
            }
            EventKind::CameraStatus => {
                details.insert("state".into(), "backing_off".into());
                details.insert(
                    "message".into(),
                    "refused: <html> & \"quotes\" 'too' \u{1}\u{7f}\r\n".into(),
                );
            }
            _ => {
                details.insert("duration_s".into(), 45.5.into());
            }
        }
        let mut e = origin.traffic(
            ids,
            at(),
            kind,
            lifecycle,
            "east<&>",
            sev,
            Some(car()),
            details,
        );
        e.snapshot = Some("simpang-lima/2026-11-24/x.jpg".into());
        e
    }

    /// `xmllint --schema cap-1.2.xsd` on `xml`: its complaints when it is not valid.
    fn xmllint(xml: &str) -> Result<(), String> {
        let schema = concat!(env!("CARGO_MANIFEST_DIR"), "/schema/cap-1.2.xsd");
        let child = Command::new("xmllint")
            .args(["--noout", "--schema", schema, "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn();
        let mut child = match child {
            Ok(c) => c,
            Err(e) => panic!(
                "cannot run xmllint ({e}): install it (Debian package libxml2-utils; \
                 scripts/setup.sh does) to check CAP alerts against the OASIS schema"
            ),
        };
        child
            .stdin
            .take()
            .expect("piped stdin")
            .write_all(xml.as_bytes())
            .expect("xmllint reads the alert");
        let out = child.wait_with_output().expect("xmllint runs");
        if out.status.success() {
            Ok(())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }

    #[test]
    fn every_alert_kind_is_valid_cap() {
        let ids = IdGenerator::new();
        // The check can fail: a time in `Z` form is not CAP.
        let e = event(&ids, EventKind::Crowding, Lifecycle::New, Severity::Warning);
        let ctx = Context {
            node: "n1",
            camera_name: None,
            place: None,
            reference: None,
        };
        let xml = alert(&e, MsgType::Alert, &ctx);
        assert!(xmllint(&xml).is_ok());
        let z = xml.replace("+00:00</sent>", "Z</sent>");
        assert!(xmllint(&z).is_err_and(|why| why.contains("sent")));
        let reference = Reference {
            identifier: "01KAW0Z5R3X9M4T7B2C6D8F0GH".into(),
            sent: at() - Duration::from_secs(60),
        };
        let mut checked = 0;
        for kind in all_kinds() {
            for (lifecycle, sev, msg) in [
                (Lifecycle::New, Severity::Warning, MsgType::Alert),
                (Lifecycle::Single, Severity::Critical, MsgType::Alert),
                (Lifecycle::Update, Severity::Warning, MsgType::Update),
                (Lifecycle::End, Severity::Info, MsgType::Cancel),
            ] {
                let e = event(&ids, kind, lifecycle, sev);
                assert_eq!(msg_type(&e, true), Some(msg));
                for place in [
                    None,
                    Some(Place {
                        latitude: -3.2946,
                        longitude: 102.8617,
                    }),
                ] {
                    let ctx = Context {
                        node: "pantau-1",
                        camera_name: Some("Simpang Lima <north> & co"),
                        place,
                        reference: Some(&reference),
                    };
                    let xml = alert(&e, msg, &ctx);
                    if let Err(why) = xmllint(&xml) {
                        panic!(
                            "{kind:?} {lifecycle:?} {place:?}: not valid CAP 1.2:\n{why}\n{xml}"
                        );
                    }
                    checked += 1;
                }
            }
        }
        assert_eq!(checked, all_kinds().len() * 8);
    }

    #[test]
    fn an_alert_says_what_where_and_how_bad() {
        let ids = IdGenerator::new();
        let e = event(
            &ids,
            EventKind::WrongWay,
            Lifecycle::Single,
            Severity::Warning,
        );
        let xml = alert(
            &e,
            MsgType::Alert,
            &Context {
                node: "pantau-1",
                camera_name: None,
                place: Some(Place {
                    latitude: -3.2946,
                    longitude: 102.8617,
                }),
                reference: None,
            },
        );
        for part in [
            &format!("<identifier>{}</identifier>", e.id),
            "<sender>pantau-1@lubuklinggau</sender>",
            "<sent>2026-11-24T09:30:42+00:00</sent>",
            "<status>Actual</status>",
            "<msgType>Alert</msgType>",
            "<scope>Restricted</scope>",
            "<category>Transport</category>",
            "<category>Safety</category>",
            "<event>Wrong-way vehicle</event>",
            "<urgency>Immediate</urgency>",
            "<severity>Severe</severity>",
            "<certainty>Observed</certainty>",
            "<headline>Wrong-way vehicle at east&lt;&amp;&gt; on camera simpang-lima</headline>",
            "A car (track 12) moved 12.3 m against the direction of travel of lane east&lt;&amp;&gt;.",
            "<valueName>kind</valueName>\n      <value>wrong_way</value>",
            "<circle>-3.294600,102.861700 0.2</circle>",
        ] {
            assert!(xml.contains(part), "{part} missing in\n{xml}");
        }
        assert!(
            !xml.contains("<references>"),
            "a new alert refers to nothing"
        );
    }

    #[test]
    fn severity_follows_pantau_and_the_kind() {
        let p = |k, s| profile(k, s, MsgType::Alert).severity;
        assert_eq!(p(EventKind::StoppedVehicle, Severity::Warning), "Moderate");
        assert_eq!(p(EventKind::StoppedVehicle, Severity::Critical), "Severe");
        assert_eq!(
            p(EventKind::PersonOnCarriageway, Severity::Critical),
            "Extreme"
        );
        assert_eq!(p(EventKind::Speeding, Severity::Warning), "Minor");
        assert_eq!(p(EventKind::CameraStatus, Severity::Critical), "Moderate");
        let c = profile(EventKind::WrongWay, Severity::Critical, MsgType::Cancel);
        assert_eq!(
            (c.urgency, c.severity, c.response),
            ("Past", "Minor", "AllClear")
        );
    }

    #[test]
    fn escaping_keeps_text_and_drops_what_xml_cannot_hold() {
        let mut s = String::new();
        escape_into(&mut s, "a<b>&\"c'\u{0}\u{1b}\r\tä\u{FFFF}");
        assert_eq!(s, "a&lt;b&gt;&amp;\"c'&#13;\tä");
    }

    fn topics() -> Topics {
        Topics {
            prefix: "pantau".into(),
            site: "lubuklinggau".into(),
            node: "n1".into(),
        }
    }

    #[test]
    fn the_feed_alerts_updates_and_cancels_an_incident() {
        let ids = IdGenerator::new();
        let feed = Feed::new("n1");
        feed.camera(
            "simpang-lima",
            Some("Simpang Lima"),
            Some(Place {
                latitude: 1.0,
                longitude: 2.0,
            }),
        );
        let new = event(
            &ids,
            EventKind::StoppedVehicle,
            Lifecycle::New,
            Severity::Warning,
        );
        let m = feed.message(&topics(), &new).expect("an alert");
        assert_eq!(m.kind, Kind::Cap);
        assert_eq!(m.topic, "pantau/lubuklinggau/simpang-lima/cap");
        assert!(!m.retain);
        let text = String::from_utf8(m.payload).expect("utf-8");
        assert!(text.contains("<msgType>Alert</msgType>") && text.contains("<circle>"));
        let update = event(
            &ids,
            EventKind::StoppedVehicle,
            Lifecycle::Update,
            Severity::Warning,
        );
        let text = String::from_utf8(feed.message(&topics(), &update).expect("update").payload)
            .expect("utf-8");
        let reference = format!(
            "<references>n1@lubuklinggau,{},2026-11-24T09:30:42+00:00</references>",
            new.id
        );
        assert!(text.contains("<msgType>Update</msgType>") && text.contains(&reference));
        let end = event(
            &ids,
            EventKind::StoppedVehicle,
            Lifecycle::End,
            Severity::Info,
        );
        let text = String::from_utf8(feed.message(&topics(), &end).expect("cancel").payload)
            .expect("utf-8");
        assert!(text.contains("<msgType>Cancel</msgType>") && text.contains(&reference));
        // Once cancelled, a second end (or an end never alerted) makes nothing; nor does
        // information.
        assert!(feed.message(&topics(), &end).is_none());
        let crossing = Origin::new("lubuklinggau", "simpang-lima").line_crossing(
            &ids,
            "stop",
            at(),
            car(),
            "in",
        );
        assert!(feed.message(&topics(), &crossing).is_none());
    }

    #[test]
    fn a_restarted_camera_forgets_its_open_incidents() {
        let ids = IdGenerator::new();
        let feed = Feed::new("n1");
        let new = event(
            &ids,
            EventKind::Loitering,
            Lifecycle::New,
            Severity::Warning,
        );
        assert!(feed.message(&topics(), &new).is_some());
        feed.camera("simpang-lima", None, None);
        let end = event(&ids, EventKind::Loitering, Lifecycle::End, Severity::Info);
        assert!(feed.message(&topics(), &end).is_none());
    }
}
