//! One camera's analysis after detection: tracker plus scene rules.

use std::collections::HashSet;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use pantau_config::{LineConfig, TrackerConfig, ZoneConfig};
use serde::Serialize;

use crate::detect::Detection;
use crate::rules::{
    Crossing, LineCounter, TrafficEvent, TrafficRules, TrafficSetup, ZoneEvent, ZoneMonitor,
};
use crate::track::{Appearance, TrackedObject, Tracker};

/// What one analysed frame produced.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SceneUpdate {
    /// Confirmed tracks (matched or coasting), boxes in full-resolution pixels.
    pub tracks: Vec<TrackedObject>,
    pub crossings: Vec<Crossing>,
    pub zone_events: Vec<ZoneEvent>,
    /// Speeding, wrong way, stopped vehicles, persons on the road, loitering, crowds.
    pub traffic: Vec<TrafficEvent>,
    pub tracking_ms: f64,
    pub rules_ms: f64,
}

#[derive(Debug)]
pub struct Scene {
    tracker: Tracker,
    pub lines: Vec<LineCounter>,
    pub zones: Vec<ZoneMonitor>,
    /// The traffic and incident rules, when the camera has lanes or zones that ask for them.
    pub traffic: Option<TrafficRules>,
}

impl Scene {
    pub fn new(lines: &[LineConfig], zones: &[ZoneConfig], tracker: &TrackerConfig) -> Self {
        Self {
            tracker: Tracker::new(tracker.clone()),
            lines: lines.iter().cloned().map(LineCounter::new).collect(),
            zones: zones.iter().cloned().map(ZoneMonitor::new).collect(),
            traffic: None,
        }
    }

    /// Adds the traffic and incident rules of the camera (none when nothing asks for them),
    /// and tells the tracker which class is people (they are told apart by their clothes).
    pub fn with_traffic(mut self, setup: TrafficSetup) -> Self {
        self.tracker.set_person_class(setup.person);
        self.traffic = TrafficRules::new(setup);
        self
    }

    /// The size of the full-resolution frames (for objects leaving the picture).
    pub fn set_frame_size(&mut self, width: u32, height: u32) {
        self.tracker.set_frame_size(width as f32, height as f32);
    }

    /// Feeds one frame's detections (full-resolution pixels) with their appearance (or an
    /// empty slice), captured at `at`.
    pub fn update(
        &mut self,
        detections: &[Detection],
        looks: &[Option<Appearance>],
        at: SystemTime,
    ) -> SceneUpdate {
        let t0 = Instant::now();
        let seconds = at
            .duration_since(UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        let tracks = self.tracker.update(detections, looks, seconds);
        let t1 = Instant::now();
        let mut crossings = Vec::new();
        let mut zone_events = Vec::new();
        let mut traffic = Vec::new();
        if let Some(rules) = &mut self.traffic {
            for t in tracks.iter().filter(|t| t.matched) {
                let b = &t.bbox;
                traffic.extend(rules.observe(
                    t.id,
                    t.class,
                    b.bottom_center(),
                    b.height(),
                    seconds,
                ));
            }
        }
        // Rules look at tracks matched this frame: a coasting prediction never counts. A track
        // confirmed now also replays its tentative sightings, so a crossing made before it was
        // confirmed counts.
        for t in tracks.iter().filter(|t| t.matched) {
            for b in t.earlier.iter().chain([&t.bbox]) {
                let anchor = b.bottom_center();
                for line in &mut self.lines {
                    crossings.extend(line.observe(t.id, t.class, anchor, b.height()).map(
                        |mut c| {
                            c.speed_kmh = self.traffic.as_ref().and_then(|r| r.speed_kmh(t.id));
                            c
                        },
                    ));
                }
                for zone in &mut self.zones {
                    zone_events.extend(zone.observe(t.id, t.class, anchor));
                }
            }
        }
        let live: HashSet<u64> = self.tracker.live_ids().collect();
        for line in &mut self.lines {
            line.retain(&live);
        }
        for zone in &mut self.zones {
            zone_events.extend(zone.retain(&live));
        }
        if let Some(rules) = &mut self.traffic {
            traffic.extend(rules.frame_done(&live, seconds));
        }
        let t2 = Instant::now();
        SceneUpdate {
            tracks,
            crossings,
            zone_events,
            traffic,
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
            kind: Default::default(),
            max_persons: None,
            max_density: None,
            loitering_s: None,
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
                confident: true,
            };
            let u = scene.update(&[d], &[], at(i, 25.0));
            crossings.extend(u.crossings);
            events.extend(u.zone_events);
        }
        assert_eq!(crossings.len(), 1);
        assert_eq!(crossings[0].direction, crate::rules::Direction::In);
        assert_eq!(events.len(), 1, "entered the plaza: {events:?}");
        assert_eq!(scene.zones[0].occupancy()[&0], 1);
    }

    fn at(frame: usize, fps: f64) -> SystemTime {
        UNIX_EPOCH + std::time::Duration::from_secs_f64(1.7e9 + frame as f64 / fps)
    }

    fn gate() -> LineConfig {
        LineConfig {
            name: "gate".into(),
            points: vec![[300.0, 0.0], [300.0, 400.0]],
            directions: None,
            hysteresis_px: 6.0,
        }
    }

    fn car(x: f32, score: f32, class: u16) -> Detection {
        Detection {
            bbox: BBox::new(x, 100.0, x + 80.0, 140.0),
            score,
            class,
            confident: true,
        }
    }

    #[test]
    fn a_crossing_made_while_the_track_was_tentative_counts() {
        // 5 fps, a car 80 px long doing 80 px a frame (about 100 km/h for a real car): its
        // first sighting is left of the line, the second (which confirms the track) already
        // right of it. The line points down, so left to right on screen is "out".
        let mut scene = Scene::new(&[gate()], &[], &TrackerConfig::default());
        // The camera was running before the car came (on the tracker's first frame a sure
        // detection is confirmed at once).
        scene.update(&[], &[], at(0, 5.0) - std::time::Duration::from_millis(200));
        let mut crossings = Vec::new();
        for i in 0..5 {
            let u = scene.update(&[car(200.0 + 80.0 * i as f32, 0.9, 2)], &[], at(i, 5.0));
            crossings.extend(u.crossings.into_iter().map(|c| (i, c)));
        }
        assert_eq!(crossings.len(), 1, "{crossings:?}");
        assert_eq!(crossings[0].0, 1, "counted when the track was confirmed");
        assert_eq!(crossings[0].1.direction, crate::rules::Direction::Out);
    }

    #[test]
    fn an_object_hidden_while_it_crosses_is_counted_when_found_again() {
        // 5 fps, a car doing 30 px a frame; a bus hides it for 1.2 s while it passes the line.
        let mut scene = Scene::new(&[gate()], &[], &TrackerConfig::default());
        let mut crossings = Vec::new();
        let mut ids = std::collections::BTreeSet::new();
        for i in 0..16 {
            let x = 100.0 + 30.0 * i as f32;
            let dets = if (5..11).contains(&i) {
                vec![]
            } else {
                vec![car(x, 0.85, 2)]
            };
            let u = scene.update(&dets, &[], at(i, 5.0));
            ids.extend(u.tracks.iter().map(|t| t.id));
            crossings.extend(u.crossings);
        }
        assert_eq!(ids.len(), 1, "one id through the occlusion: {ids:?}");
        assert_eq!(crossings.len(), 1, "{crossings:?}");
        assert_eq!(crossings[0].direction, crate::rules::Direction::Out);
    }

    #[test]
    fn a_vehicle_seen_as_car_and_truck_is_counted_once_as_its_majority_class() {
        let mut scene = Scene::new(&[gate()], &[], &TrackerConfig::default());
        let mut crossings = Vec::new();
        for i in 0..12 {
            let x = 100.0 + 30.0 * i as f32;
            // Car most frames, sometimes a (weaker) second truck box on the same vehicle.
            let mut dets = vec![car(x, 0.8, 2)];
            if i % 2 == 0 {
                dets.push(car(x + 4.0, 0.65, 7));
            }
            crossings.extend(scene.update(&dets, &[], at(i, 5.0)).crossings);
        }
        assert_eq!(crossings.len(), 1, "{crossings:?}");
        assert_eq!(crossings[0].class, 2);
    }
}
