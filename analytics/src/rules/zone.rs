//! Zones: which tracks are inside a polygon, with entries and exits. A track's inside/outside
//! state only changes once its anchor is more than `hysteresis_px` from the edge.

use std::collections::{BTreeMap, HashMap, HashSet};

use pantau_config::ZoneConfig;
use serde::Serialize;

use crate::geometry::{polygon_contains, polygon_edge_distance, Point};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ZoneEventKind {
    /// The object is now inside (first seen inside, or came in from outside).
    Enter,
    /// The object left, or its track ended while inside.
    Exit,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ZoneEvent {
    pub zone: String,
    pub track_id: u64,
    pub class: u16,
    pub kind: ZoneEventKind,
    /// For `Enter`: it was seen outside before (a real entry, not an appearance).
    pub crossed_edge: bool,
}

#[derive(Debug)]
pub struct ZoneMonitor {
    pub config: ZoneConfig,
    polygon: Vec<Point>,
    /// Track -> (inside, class).
    state: HashMap<u64, (bool, u16)>,
    entries: BTreeMap<u16, u64>,
    exits: BTreeMap<u16, u64>,
}

impl ZoneMonitor {
    pub fn new(config: ZoneConfig) -> Self {
        let polygon = config
            .polygon
            .iter()
            .map(|[x, y]| Point::new(*x, *y))
            .collect();
        Self {
            config,
            polygon,
            state: HashMap::new(),
            entries: BTreeMap::new(),
            exits: BTreeMap::new(),
        }
    }

    pub fn polygon(&self) -> &[Point] {
        &self.polygon
    }

    pub fn observe(&mut self, track_id: u64, class: u16, anchor: Point) -> Option<ZoneEvent> {
        if polygon_edge_distance(&self.polygon, anchor) <= self.config.hysteresis_px {
            return None; // on the edge: keep the previous state
        }
        let inside = polygon_contains(&self.polygon, anchor);
        let before = self.state.insert(track_id, (inside, class)).map(|s| s.0);
        let event = |kind, crossed_edge| ZoneEvent {
            zone: self.config.name.clone(),
            track_id,
            class,
            kind,
            crossed_edge,
        };
        match (before, inside) {
            (None, true) => Some(event(ZoneEventKind::Enter, false)),
            (Some(false), true) => {
                *self.entries.entry(class).or_insert(0) += 1;
                Some(event(ZoneEventKind::Enter, true))
            }
            (Some(true), false) => {
                *self.exits.entry(class).or_insert(0) += 1;
                Some(event(ZoneEventKind::Exit, true))
            }
            _ => None,
        }
    }

    /// Ends tracks that no longer exist; those inside produce an exit.
    pub fn retain(&mut self, live: &HashSet<u64>) -> Vec<ZoneEvent> {
        let gone: Vec<(u64, bool, u16)> = self
            .state
            .iter()
            .filter(|(id, _)| !live.contains(id))
            .map(|(id, (inside, class))| (*id, *inside, *class))
            .collect();
        let mut events = Vec::new();
        for (id, inside, class) in gone {
            self.state.remove(&id);
            if inside {
                events.push(ZoneEvent {
                    zone: self.config.name.clone(),
                    track_id: id,
                    class,
                    kind: ZoneEventKind::Exit,
                    crossed_edge: false,
                });
            }
        }
        events
    }

    /// Objects inside now, by class.
    pub fn occupancy(&self) -> BTreeMap<u16, u64> {
        let mut occ = BTreeMap::new();
        for (inside, class) in self.state.values() {
            if *inside {
                *occ.entry(*class).or_insert(0) += 1;
            }
        }
        occ
    }

    pub fn entries(&self) -> &BTreeMap<u16, u64> {
        &self.entries
    }

    pub fn exits(&self) -> &BTreeMap<u16, u64> {
        &self.exits
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn square() -> ZoneMonitor {
        ZoneMonitor::new(ZoneConfig {
            name: "crossing".into(),
            polygon: vec![
                [100.0, 100.0],
                [300.0, 100.0],
                [300.0, 300.0],
                [100.0, 300.0],
            ],
            hysteresis_px: 4.0,
            severity: Default::default(),
            kind: Default::default(),
            max_persons: None,
            max_density: None,
            loitering_s: None,
        })
    }

    #[test]
    fn entry_occupancy_and_exit() {
        let mut z = square();
        assert_eq!(z.observe(1, 0, Point::new(50.0, 200.0)), None);
        let e = z.observe(1, 0, Point::new(150.0, 200.0)).expect("enter");
        assert!(e.crossed_edge && e.kind == ZoneEventKind::Enter);
        assert_eq!(z.occupancy()[&0], 1);
        // Jitter on the edge changes nothing.
        assert_eq!(z.observe(1, 0, Point::new(298.0, 200.0)), None);
        assert_eq!(z.observe(1, 0, Point::new(302.0, 200.0)), None);
        let e = z.observe(1, 0, Point::new(350.0, 200.0)).expect("exit");
        assert_eq!(e.kind, ZoneEventKind::Exit);
        assert!(z.occupancy().is_empty());
        assert_eq!(z.entries()[&0], 1);
        assert_eq!(z.exits()[&0], 1);
    }

    #[test]
    fn appearing_inside_and_vanishing_inside() {
        let mut z = square();
        let e = z.observe(5, 2, Point::new(200.0, 200.0)).expect("appears");
        assert!(!e.crossed_edge);
        assert!(z.entries().is_empty(), "an appearance is not an entry");
        let events = z.retain(&HashSet::new());
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].kind, ZoneEventKind::Exit);
        assert!(z.occupancy().is_empty());
    }
}
