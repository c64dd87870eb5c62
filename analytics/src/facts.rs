//! Turns what a camera's scene produced into events (schema v1) and per-minute count
//! aggregates. Times are the frame's capture time, never the processing time.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use pantau_events::{
    CountAggregate, Event, EventKind, IdGenerator, Lifecycle, ObjectRef, Origin, Severity,
    TrackSummary, ZoneChange,
};

use crate::health::{HealthChange, Transition};
use crate::rules::{Crossing, Phase, TrafficEvent, TrafficKind, ZoneEvent, ZoneEventKind};
use crate::track::TrackedObject;

/// Builds one camera's events.
#[derive(Debug)]
pub struct Facts {
    origin: Origin,
    labels: Arc<Vec<String>>,
    ids: Arc<IdGenerator>,
    period: Duration,
    /// Line -> direction -> class -> count, for the open period.
    window: BTreeMap<String, BTreeMap<String, BTreeMap<String, u64>>>,
    window_start: Option<SystemTime>,
    lines: Vec<String>,
    /// Live tracks: id -> (class, first seen, last seen, frames matched).
    tracks: BTreeMap<u64, (u16, SystemTime, SystemTime, u32)>,
    /// Severity of entries per zone (info when absent).
    zone_severity: BTreeMap<String, Severity>,
    /// Alerts of one rule within this gap join one group (one incident for the operators).
    gap: Duration,
    /// Open alert groups by (kind, rule): the first event's id, the last alert's time, size.
    groups: std::collections::HashMap<(EventKind, String), (String, SystemTime, u32)>,
    /// The group of each lasting thing (incident key), so its update and end join it too.
    group_of: BTreeMap<String, String>,
}

impl Facts {
    pub fn new(
        site: &str,
        camera: &str,
        lines: Vec<String>,
        labels: Arc<Vec<String>>,
        ids: Arc<IdGenerator>,
        period: Duration,
    ) -> Self {
        Self {
            origin: Origin::new(site, camera),
            labels,
            ids,
            period,
            window: BTreeMap::new(),
            window_start: None,
            lines,
            tracks: BTreeMap::new(),
            zone_severity: BTreeMap::new(),
            gap: Duration::from_secs(30),
            groups: Default::default(),
            group_of: BTreeMap::new(),
        }
    }

    /// Alerts of one rule within `gap` of the previous one join its group (`rules.incident_gap_s`).
    pub fn with_alert_gap(mut self, gap: Duration) -> Self {
        self.gap = gap;
        self
    }

    /// Puts each alert (warning or critical) into a group: the alerts of one rule on this camera
    /// that follow each other within the gap are one situation. `details.group` is the id of
    /// the group's first alert and `details.group_size` how many alerts (objects) it has so
    /// far; the `update` and `end` of a lasting alert carry its group too.
    fn group(&mut self, events: &mut [Event]) {
        for e in events.iter_mut() {
            let lasting = e.incident.clone();
            let joined = match e.lifecycle {
                Lifecycle::New | Lifecycle::Single if e.severity >= Severity::Warning => {
                    let key = (e.kind, e.rule.clone());
                    let at = e.captured_at;
                    let open = self.groups.get_mut(&key).filter(|(_, last, _)| {
                        at.duration_since(*last).unwrap_or_default() <= self.gap
                    });
                    let (id, size) = match open {
                        Some((id, last, size)) => {
                            *last = at;
                            *size += 1;
                            (id.clone(), *size)
                        }
                        None => {
                            let id = e.id.to_string();
                            self.groups.insert(key, (id.clone(), at, 1));
                            (id, 1)
                        }
                    };
                    if let Some(incident) = &lasting {
                        self.group_of.insert(incident.clone(), id.clone());
                    }
                    Some((id, Some(size)))
                }
                Lifecycle::Update | Lifecycle::End => {
                    let group = lasting.as_ref().and_then(|i| self.group_of.get(i).cloned());
                    if e.lifecycle == Lifecycle::End {
                        if let Some(i) = &lasting {
                            self.group_of.remove(i);
                        }
                    }
                    group.map(|g| (g, None))
                }
                _ => None,
            };
            if let Some((group, size)) = joined {
                e.details.insert("group".into(), group.into());
                if let Some(n) = size {
                    e.details.insert("group_size".into(), n.into());
                }
            }
        }
        // Groups quiet for longer than the gap are over.
        if let Some(now) = events.iter().map(|e| e.captured_at).max() {
            let gap = self.gap;
            self.groups
                .retain(|_, (_, last, _)| now.duration_since(*last).unwrap_or_default() <= gap);
        }
    }

    /// Entries into these zones get this severity (alerts when warning or critical).
    pub fn with_zones(mut self, zones: &[pantau_config::ZoneConfig]) -> Self {
        self.zone_severity = zones.iter().map(|z| (z.name.clone(), z.severity)).collect();
        self
    }

    fn label(&self, class: u16) -> String {
        self.labels
            .get(class as usize)
            .cloned()
            .unwrap_or_else(|| class.to_string())
    }

    fn object(&self, track: Option<&TrackedObject>, track_id: u64, class: u16) -> ObjectRef {
        let (bbox, confidence) = track
            .map(|t| ([t.bbox.x1, t.bbox.y1, t.bbox.x2, t.bbox.y2], t.score))
            .unwrap_or(([0.0; 4], 0.0));
        ObjectRef {
            class: self.label(class),
            track_id,
            bbox,
            confidence,
        }
    }

    /// Events for one analysed frame captured at `at`, plus the count aggregates of any period
    /// that ended before it.
    pub fn frame(
        &mut self,
        at: SystemTime,
        tracks: &[TrackedObject],
        crossings: &[Crossing],
        zone_events: &[ZoneEvent],
    ) -> (Vec<Event>, Vec<CountAggregate>) {
        let aggregates = self.roll(at);
        let find = |id: u64| tracks.iter().find(|t| t.id == id);
        let mut events = Vec::new();
        for c in crossings {
            let object = self.object(find(c.track_id), c.track_id, c.class);
            let mut crossing =
                self.origin
                    .line_crossing(&self.ids, &c.line, at, object, c.direction.as_str());
            if let Some(kmh) = c.speed_kmh {
                crossing
                    .details
                    .insert("speed_kmh".into(), ((kmh * 10.0).round() / 10.0).into());
            }
            events.push(crossing);
            let class = self.label(c.class);
            *self
                .window
                .entry(c.line.clone())
                .or_default()
                .entry(c.direction.as_str().to_string())
                .or_default()
                .entry(class)
                .or_insert(0) += 1;
        }
        for z in zone_events {
            let object = self.object(find(z.track_id), z.track_id, z.class);
            let severity = self
                .zone_severity
                .get(&z.zone)
                .copied()
                .unwrap_or(Severity::Info);
            events.push(self.origin.zone_presence(
                &self.ids,
                at,
                ZoneChange {
                    zone: &z.zone,
                    entered: z.kind == ZoneEventKind::Enter,
                    crossed_edge: z.crossed_edge,
                    severity,
                },
                object,
            ));
        }
        self.group(&mut events);
        (events, aggregates)
    }

    /// Events of the traffic and incident rules for one analysed frame captured at `at`.
    pub fn traffic(
        &mut self,
        at: SystemTime,
        tracks: &[TrackedObject],
        facts: &[TrafficEvent],
    ) -> Vec<Event> {
        let mut events: Vec<Event> = facts
            .iter()
            .map(|f| {
                let object = f.track_id.map(|id| {
                    let track = tracks.iter().find(|t| t.id == id);
                    self.object(track, id, f.class.unwrap_or_default())
                });
                let lifecycle = match f.phase {
                    Phase::Single => Lifecycle::Single,
                    Phase::New => Lifecycle::New,
                    Phase::Update => Lifecycle::Update,
                    Phase::End => Lifecycle::End,
                };
                // The end of a situation is news, not an alert.
                let severity = if f.alert && lifecycle != Lifecycle::End {
                    Severity::Warning
                } else {
                    Severity::Info
                };
                let kind = match f.kind {
                    TrafficKind::Speeding => EventKind::Speeding,
                    TrafficKind::WrongWay => EventKind::WrongWay,
                    TrafficKind::StoppedVehicle => EventKind::StoppedVehicle,
                    TrafficKind::BoxBlocked => EventKind::BoxBlocked,
                    TrafficKind::PersonOnCarriageway => EventKind::PersonOnCarriageway,
                    TrafficKind::Loitering => EventKind::Loitering,
                    TrafficKind::Crowding => EventKind::Crowding,
                    TrafficKind::CrowdSurge => EventKind::CrowdSurge,
                    TrafficKind::Queue => EventKind::Queue,
                    TrafficKind::Congestion => EventKind::Congestion,
                    TrafficKind::SuddenStop => EventKind::SuddenStop,
                };
                // A sudden stop may be a crash: for dispatch at once.
                let severity = if f.kind == TrafficKind::SuddenStop {
                    Severity::Critical
                } else {
                    severity
                };
                let mut details = f.details.clone();
                if object.is_none() {
                    if let Some(class) = f.class {
                        details.insert("class".into(), self.label(class).into());
                    }
                }
                self.origin.traffic(
                    &self.ids, at, kind, lifecycle, &f.rule, severity, object, details,
                )
            })
            .collect();
        self.group(&mut events);
        events
    }

    /// Events of the camera's health monitor (`health.rs`) for the frame captured at `at`, or
    /// the camera's last frame when it stopped. Warnings join the camera's alert groups like
    /// any rule's.
    pub fn camera_health(&mut self, at: SystemTime, changes: &[HealthChange]) -> Vec<Event> {
        let mut events: Vec<Event> = changes
            .iter()
            .map(|c| {
                let lifecycle = match c.transition {
                    Transition::New => Lifecycle::New,
                    Transition::End => Lifecycle::End,
                };
                let mut details: BTreeMap<String, serde_json::Value> = c
                    .figures
                    .iter()
                    .map(|(k, v)| (k.to_string(), (*v).into()))
                    .collect();
                if c.stopped {
                    details.insert("camera_stopped".into(), true.into());
                }
                self.origin
                    .camera_health(&self.ids, at, c.condition.as_str(), lifecycle, details)
            })
            .collect();
        self.group(&mut events);
        events
    }

    /// Follows tracks; returns a summary for each track that ended (no longer reported by the
    /// tracker).
    pub fn track_summaries(
        &mut self,
        at: SystemTime,
        tracks: &[TrackedObject],
    ) -> Vec<TrackSummary> {
        for t in tracks {
            let entry = self.tracks.entry(t.id).or_insert((t.class, at, at, 0));
            entry.0 = t.class;
            if t.matched {
                entry.2 = at;
                entry.3 += 1;
            }
        }
        let alive: std::collections::HashSet<u64> = tracks.iter().map(|t| t.id).collect();
        let ended: Vec<u64> = self
            .tracks
            .keys()
            .filter(|id| !alive.contains(id))
            .copied()
            .collect();
        let finished: Vec<(u64, (u16, SystemTime, SystemTime, u32))> = ended
            .into_iter()
            .filter_map(|id| self.tracks.remove(&id).map(|v| (id, v)))
            .collect();
        finished
            .into_iter()
            .map(|(track_id, (class, first_seen, last_seen, frames))| {
                self.origin.track_summary(
                    &self.ids,
                    track_id,
                    self.label(class),
                    first_seen,
                    last_seen,
                    frames,
                )
            })
            .collect()
    }

    /// The open period's counts so far, when the camera stops or restarts (e.g. its lines
    /// changed): nothing counted is lost. A later restart in the same period emits another
    /// aggregate with its own id for the same `period_start`; stores add them up.
    pub fn finish(&mut self) -> Vec<CountAggregate> {
        match self.window_start.take() {
            Some(open) => {
                // Any time after the open period closes it.
                self.window_start = Some(open);
                self.roll(open + self.period)
            }
            None => Vec::new(),
        }
    }

    /// Closes the open period when `at` is past it; one aggregate per line (zero counts
    /// included, so a quiet minute is a 0 and not a gap).
    fn roll(&mut self, at: SystemTime) -> Vec<CountAggregate> {
        let start = period_start(at, self.period);
        let Some(open) = self.window_start else {
            self.window_start = Some(start);
            return Vec::new();
        };
        if start <= open {
            return Vec::new();
        }
        self.window_start = Some(start);
        let window = std::mem::take(&mut self.window);
        self.lines
            .iter()
            .map(|line| {
                let mut counts = window.get(line).cloned().unwrap_or_default();
                for dir in ["in", "out"] {
                    counts.entry(dir.to_string()).or_default();
                }
                self.origin
                    .counts(&self.ids, line, open, self.period.as_secs() as u32, counts)
            })
            .collect()
    }
}

fn period_start(at: SystemTime, period: Duration) -> SystemTime {
    let p = period.as_millis().max(1);
    let ms = at
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0);
    UNIX_EPOCH + Duration::from_millis((ms - ms % p) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::geometry::{BBox, Point};
    use crate::rules::Direction;

    #[test]
    fn alerts_of_one_rule_within_the_gap_are_one_group() {
        let labels = Arc::new(vec!["person".to_string()]);
        let mut f = Facts::new(
            "kota",
            "cam",
            vec![],
            labels,
            Arc::new(IdGenerator::new()),
            Duration::from_secs(60),
        )
        .with_zones(&[pantau_config::ZoneConfig::watch(
            "road",
            vec![[0.0, 0.0], [10.0, 0.0], [10.0, 10.0]],
            Severity::Warning,
        )])
        .with_alert_gap(Duration::from_secs(30));
        let t0 = UNIX_EPOCH + Duration::from_secs(1_795_507_230);
        let enter = |id: u64| ZoneEvent {
            zone: "road".into(),
            track_id: id,
            class: 0,
            kind: ZoneEventKind::Enter,
            crossed_edge: true,
        };
        let leave = |id: u64| ZoneEvent {
            kind: ZoneEventKind::Exit,
            ..enter(id)
        };
        // Seven people step onto the road within 12 s: one group of seven.
        let mut all = Vec::new();
        for k in 0..7u64 {
            let (events, _) = f.frame(t0 + Duration::from_secs(2 * k), &[], &[], &[enter(k)]);
            all.extend(events);
        }
        let first = all[0].id.to_string();
        assert!(all.iter().all(|e| e.details["group"] == first.as_str()));
        assert_eq!(all[6].details["group_size"], 7);
        // The end of one of them belongs to the group too (without a size).
        let (ends, _) = f.frame(t0 + Duration::from_secs(20), &[], &[], &[leave(3)]);
        assert_eq!(ends[0].details["group"], first.as_str());
        assert!(!ends[0].details.contains_key("group_size"));
        // A minute of quiet later, a new group begins.
        let (later, _) = f.frame(t0 + Duration::from_secs(120), &[], &[], &[enter(9)]);
        assert_eq!(later[0].details["group"], later[0].id.to_string().as_str());
        assert_eq!(later[0].details["group_size"], 1);
    }

    #[test]
    fn camera_health_changes_become_events_per_camera_and_condition() {
        use crate::health::Condition;
        let mut f = Facts::new(
            "kota",
            "cam",
            vec![],
            Arc::default(),
            Arc::default(),
            Duration::from_secs(60),
        );
        let t0 = UNIX_EPOCH + Duration::from_millis(1_795_507_230_125);
        let change = |transition, figures: &[(&'static str, f64)]| HealthChange {
            condition: Condition::Blackout,
            transition,
            at_s: 0.0,
            figures: figures.iter().copied().collect(),
            stopped: false,
        };
        let new = f.camera_health(
            t0,
            &[change(
                Transition::New,
                &[("mean_luma", 3.5), ("contrast", 1.25)],
            )],
        );
        let end = f.camera_health(
            t0 + Duration::from_secs(40),
            &[change(
                Transition::End,
                &[
                    ("mean_luma", 96.0),
                    ("contrast", 41.0),
                    ("duration_s", 40.0),
                ],
            )],
        );
        let (new, end) = (&new[0], &end[0]);
        assert_eq!(
            (new.kind, new.lifecycle),
            (EventKind::CameraHealth, Lifecycle::New)
        );
        assert_eq!(
            (new.severity, end.severity),
            (Severity::Warning, Severity::Info)
        );
        assert_eq!(new.rule, "camera");
        assert_eq!(new.captured_at, t0);
        assert_eq!(new.incident.as_deref(), Some("cam/camera_health/blackout"));
        assert_eq!(end.incident, new.incident);
        let json = serde_json::to_value(new).expect("serialises");
        assert_eq!(json["kind"], "camera_health");
        assert_eq!(
            json["details"],
            serde_json::json!({"condition": "blackout", "mean_luma": 3.5, "contrast": 1.25,
                "group": new.id.to_string(), "group_size": 1})
        );
        assert_eq!(end.details["duration_s"], 40.0);
        assert_eq!(end.details["group"], new.id.to_string());
    }

    #[test]
    fn finishing_emits_the_open_period_once() {
        let labels = Arc::new(vec!["person".to_string()]);
        let mut f = Facts::new(
            "kota",
            "cam",
            vec!["gate".into()],
            labels,
            Arc::new(IdGenerator::new()),
            Duration::from_secs(60),
        );
        assert!(f.finish().is_empty(), "nothing seen, nothing to emit");
        let t0 = UNIX_EPOCH + Duration::from_secs(1_795_507_230);
        let crossing = Crossing {
            line: "gate".into(),
            track_id: 1,
            class: 0,
            direction: Direction::In,
            at: Point { x: 1.0, y: 1.0 },
            speed_kmh: None,
        };
        let _ = f.frame(t0, &[], std::slice::from_ref(&crossing), &[]);
        let aggs = f.finish();
        assert_eq!(aggs.len(), 1);
        assert_eq!(aggs[0].counts["in"]["person"], 1);
        assert_eq!(
            aggs[0].period_start,
            UNIX_EPOCH + Duration::from_secs(1_795_507_200)
        );
        assert!(
            f.finish().iter().all(|a| a.counts["in"].is_empty()),
            "counted once"
        );
    }

    #[test]
    fn ended_tracks_are_summarised_once() {
        let labels = Arc::new(vec!["person".to_string()]);
        let mut f = Facts::new(
            "kota",
            "cam",
            vec![],
            labels,
            Arc::default(),
            Duration::from_secs(60),
        );
        let t0 = UNIX_EPOCH + Duration::from_secs(1_795_507_200);
        let obj = |matched| TrackedObject {
            id: 4,
            class: 0,
            bbox: BBox::new(0.0, 0.0, 1.0, 1.0),
            score: 0.9,
            matched,
            velocity: (0.0, 0.0),
            earlier: Vec::new(),
            hits: 1,
        };
        for s in 0..5 {
            assert!(f
                .track_summaries(t0 + Duration::from_secs(s), &[obj(s != 3)])
                .is_empty());
        }
        let ended = f.track_summaries(t0 + Duration::from_secs(9), &[]);
        assert_eq!(ended.len(), 1);
        assert_eq!((ended[0].track_id, ended[0].frames), (4, 4));
        assert_eq!(ended[0].first_seen, t0);
        assert_eq!(ended[0].last_seen, t0 + Duration::from_secs(4));
        assert!(f
            .track_summaries(t0 + Duration::from_secs(10), &[])
            .is_empty());
    }

    #[test]
    fn crossings_become_events_and_minute_counts() {
        let labels = Arc::new(vec!["person".to_string(), "bicycle".into(), "car".into()]);
        let mut f = Facts::new(
            "kota",
            "cam",
            vec!["gate".into()],
            labels,
            Arc::default(),
            Duration::from_secs(60),
        );
        let t0 = UNIX_EPOCH + Duration::from_secs(1_795_507_200);
        let track = TrackedObject {
            id: 7,
            class: 2,
            bbox: BBox::new(1.0, 2.0, 3.0, 4.0),
            score: 0.8,
            matched: true,
            velocity: (0.0, 0.0),
            earlier: Vec::new(),
            hits: 5,
        };
        let crossing = Crossing {
            line: "gate".into(),
            track_id: 7,
            class: 2,
            direction: Direction::In,
            at: Point::new(2.0, 4.0),
            speed_kmh: None,
        };
        let (events, aggs) = f.frame(
            t0 + Duration::from_secs(5),
            std::slice::from_ref(&track),
            std::slice::from_ref(&crossing),
            &[],
        );
        assert!(aggs.is_empty());
        assert_eq!(events.len(), 1);
        let e = &events[0];
        assert_eq!(e.captured_at, t0 + Duration::from_secs(5));
        assert_eq!(e.direction.as_deref(), Some("in"));
        let obj = e.object.as_ref().expect("object");
        assert_eq!(
            (obj.class.as_str(), obj.track_id, obj.bbox),
            ("car", 7, [1.0, 2.0, 3.0, 4.0])
        );
        f.frame(
            t0 + Duration::from_secs(30),
            std::slice::from_ref(&track),
            &[crossing],
            &[],
        );
        // The next minute closes the first one.
        let (_, aggs) = f.frame(t0 + Duration::from_secs(61), &[], &[], &[]);
        assert_eq!(aggs.len(), 1);
        assert_eq!(aggs[0].period_start, t0);
        assert_eq!(aggs[0].counts["in"]["car"], 2);
        assert!(aggs[0].counts["out"].is_empty());
        // A quiet minute is reported as zero.
        let (_, aggs) = f.frame(t0 + Duration::from_secs(125), &[], &[], &[]);
        assert_eq!(aggs.len(), 1);
        assert!(aggs[0].counts["in"].is_empty());
    }
}
