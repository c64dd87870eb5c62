//! One camera's analysis after detection: tracker plus scene rules.

use std::collections::HashSet;
use std::time::Instant;

use pantau_core::{LineConfig, TrackerConfig, ZoneConfig};
use serde::Serialize;

use crate::detect::Detection;
use crate::rules::{Crossing, LineCounter, ZoneEvent, ZoneMonitor};
use crate::track::{TrackedObject, Tracker};

/// What one analysed frame produced.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SceneUpdate {
    /// Confirmed tracks (matched or coasting), boxes in full-resolution pixels.
    pub tracks: Vec<TrackedObject>,
    pub crossings: Vec<Crossing>,
    pub zone_events: Vec<ZoneEvent>,
    pub tracking_ms: f64,
    pub rules_ms: f64,
}

#[derive(Debug)]
pub struct Scene {
    tracker: Tracker,
    pub lines: Vec<LineCounter>,
    pub zones: Vec<ZoneMonitor>,
}

impl Scene {
    pub fn new(lines: &[LineConfig], zones: &[ZoneConfig], tracker: &TrackerConfig) -> Self {
        Self {
            tracker: Tracker::new(tracker.clone()),
            lines: lines.iter().cloned().map(LineCounter::new).collect(),
            zones: zones.iter().cloned().map(ZoneMonitor::new).collect(),
        }
    }

    /// Feeds one frame's detections (full-resolution pixels).
    pub fn update(&mut self, detections: &[Detection]) -> SceneUpdate {
        let t0 = Instant::now();
        let tracks = self.tracker.update(detections);
        let t1 = Instant::now();
        let mut crossings = Vec::new();
        let mut zone_events = Vec::new();
        // Rules look at tracks matched this frame: a coasting prediction never counts.
        for t in tracks.iter().filter(|t| t.matched) {
            let anchor = t.bbox.bottom_center();
            for line in &mut self.lines {
                crossings.extend(line.observe(t.id, t.class, anchor));
            }
            for zone in &mut self.zones {
                zone_events.extend(zone.observe(t.id, t.class, anchor));
            }
        }
        let live: HashSet<u64> = self.tracker.live_ids().collect();
        for line in &mut self.lines {
            line.retain(&live);
        }
        for zone in &mut self.zones {
            zone_events.extend(zone.retain(&live));
        }
        let t2 = Instant::now();
        SceneUpdate {
            tracks,
            crossings,
            zone_events,
            tracking_ms: (t1 - t0).as_secs_f64() * 1000.0,
            rules_ms: (t2 - t1).as_secs_f64() * 1000.0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::geometry::BBox;

    #[test]
    fn a_walker_crossing_a_line_and_a_zone() {
        let line = LineConfig {
            name: "gate".into(),
            points: vec![[0.0, 300.0], [640.0, 300.0]],
            directions: None,
            hysteresis_px: 6.0,
        };
        let zone = ZoneConfig {
            name: "plaza".into(),
            polygon: vec![[0.0, 320.0], [640.0, 320.0], [640.0, 480.0], [0.0, 480.0]],
            hysteresis_px: 4.0,
            severity: Default::default(),
        };
        let mut scene = Scene::new(&[line], &[zone], &TrackerConfig::default());
        let mut crossings = Vec::new();
        let mut events = Vec::new();
        for i in 0..40 {
            let y2 = 200.0 + 6.0 * i as f32;
            let d = Detection {
                bbox: BBox::new(300.0, y2 - 80.0, 340.0, y2),
                score: 0.9,
                class: 0,
            };
            let u = scene.update(&[d]);
            crossings.extend(u.crossings);
            events.extend(u.zone_events);
        }
        assert_eq!(crossings.len(), 1);
        assert_eq!(crossings[0].direction, crate::rules::Direction::In);
        assert_eq!(events.len(), 1, "entered the plaza: {events:?}");
        assert_eq!(scene.zones[0].occupancy()[&0], 1);
    }
}
