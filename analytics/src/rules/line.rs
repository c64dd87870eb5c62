//! Line counting with hysteresis.
//!
//! For a line from A to B, `in` is a crossing from the left-hand side of A->B to its right-hand
//! side as seen on the screen (x right, y down), `out` the reverse. An object is counted once
//! per direction: its side only changes once it is past the line by more than a dead band
//! (`hysteresis_px`, widened to a tenth of the object's height for large boxes), so a box
//! jittering on the line cannot count twice; going back across the line after a count (in, then
//! out) must hold on the new side for two sightings, so an object standing on the line never
//! yields both; and an object that walks around the end of the line is not counted.

use std::collections::{BTreeMap, HashMap, HashSet};

use pantau_config::LineConfig;
use serde::Serialize;

use crate::geometry::{projection, segment_distance, signed_distance, Point};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    In,
    Out,
}

impl Direction {
    pub fn opposite(self) -> Direction {
        match self {
            Direction::In => Direction::Out,
            Direction::Out => Direction::In,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Direction::In => "in",
            Direction::Out => "out",
        }
    }
}

/// A counted crossing.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Crossing {
    pub line: String,
    pub track_id: u64,
    pub class: u16,
    pub direction: Direction,
    /// Where the anchor was when the crossing was confirmed.
    pub at: Point,
    /// The object's smoothed ground speed then, km/h (cameras with a calibration).
    pub speed_kmh: Option<f64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Left,
    Right,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Where {
    Side(Side),
    Band,
    Beyond,
}

/// The dead band grows with the object: a tenth of its box height.
const BAND_PER_HEIGHT: f32 = 0.1;
/// Sightings on the new side needed before a crossing back (after a count) is believed.
const REVERSAL_SIGHTINGS: u8 = 2;

/// What a line knows of one track.
#[derive(Debug, Clone, Copy, Default)]
struct TrackLine {
    /// Last committed side (none yet, or lost by going around an end).
    side: Option<Side>,
    /// Counted in / out already.
    counted: [bool; 2],
    /// Sightings in a row on the far side of a possible reversal.
    pending: u8,
}

#[derive(Debug)]
pub struct LineCounter {
    pub config: LineConfig,
    points: Vec<Point>,
    tracks: HashMap<u64, TrackLine>,
    /// direction -> class -> count
    counts: BTreeMap<Direction, BTreeMap<u16, u64>>,
}

impl LineCounter {
    pub fn new(config: LineConfig) -> Self {
        let points = config
            .points
            .iter()
            .map(|[x, y]| Point::new(*x, *y))
            .collect();
        Self {
            config,
            points,
            tracks: HashMap::new(),
            counts: BTreeMap::new(),
        }
    }

    pub fn name(&self) -> &str {
        &self.config.name
    }

    pub fn points(&self) -> &[Point] {
        &self.points
    }

    /// Where `p` is: clearly on a side, in the dead band (`band` px), or beyond the line's
    /// ends.
    fn locate(&self, p: Point, band: f32) -> Where {
        let h = band;
        let Some((a, b)) =
            self.points.windows(2).map(|w| (w[0], w[1])).min_by(|x, y| {
                segment_distance(x.0, x.1, p).total_cmp(&segment_distance(y.0, y.1, p))
            })
        else {
            return Where::Band;
        };
        let len = ((b.x - a.x).powi(2) + (b.y - a.y).powi(2)).sqrt().max(1e-3);
        let t = projection(a, b, p);
        let slack = h / len;
        let first = self.points.first().copied() == Some(a);
        let last = self.points.last().copied() == Some(b);
        // Beyond the line's ends, there is no side (walking around does not count).
        if (first && t < -slack) || (last && t > 1.0 + slack) {
            return Where::Beyond;
        }
        let d = signed_distance(a, b, p);
        if d > h {
            Where::Side(Side::Right)
        } else if d < -h {
            Where::Side(Side::Left)
        } else {
            Where::Band
        }
    }

    /// Observes a track's anchor (bottom centre of a box `height` px tall); returns a crossing
    /// the first time it is confirmed per direction. `class` is the track's majority class.
    pub fn observe(
        &mut self,
        track_id: u64,
        class: u16,
        anchor: Point,
        height: f32,
    ) -> Option<Crossing> {
        let band = self.config.hysteresis_px.max(BAND_PER_HEIGHT * height);
        let place = self.locate(anchor, band);
        let track = self.tracks.entry(track_id).or_default();
        let now = match place {
            Where::Side(side) => side,
            Where::Band => return None,
            // Going around the end: what side it was on no longer matters.
            Where::Beyond => {
                track.side = None;
                track.pending = 0;
                return None;
            }
        };
        let before = track.side.replace(now)?;
        let direction = match (before, now) {
            (Side::Left, Side::Right) => Direction::In,
            (Side::Right, Side::Left) => Direction::Out,
            _ => {
                track.pending = 0;
                return None;
            }
        };
        let reversal = track.counted[direction.opposite() as usize];
        if reversal {
            track.pending += 1;
            if track.pending < REVERSAL_SIGHTINGS {
                track.side = Some(before);
                return None;
            }
        }
        track.pending = 0;
        if std::mem::replace(&mut track.counted[direction as usize], true) {
            return None;
        }
        *self
            .counts
            .entry(direction)
            .or_default()
            .entry(class)
            .or_insert(0) += 1;
        Some(Crossing {
            line: self.config.name.clone(),
            track_id,
            class,
            direction,
            at: anchor,
            speed_kmh: None,
        })
    }

    /// Forgets tracks that no longer exist.
    pub fn retain(&mut self, live: &HashSet<u64>) {
        self.tracks.retain(|id, _| live.contains(id));
    }

    /// Totals: direction -> class id -> crossings.
    pub fn counts(&self) -> &BTreeMap<Direction, BTreeMap<u16, u64>> {
        &self.counts
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn horizontal() -> LineCounter {
        // From (100, 300) to (500, 300): pointing right, so "in" is downwards on screen.
        LineCounter::new(LineConfig {
            name: "stop".into(),
            points: vec![[100.0, 300.0], [500.0, 300.0]],
            directions: None,
            hysteresis_px: 6.0,
        })
    }

    #[test]
    fn downward_crossing_of_a_rightward_line_is_in() {
        let mut l = horizontal();
        let mut got = Vec::new();
        for y in (250..350).step_by(10) {
            got.extend(l.observe(1, 2, Point::new(300.0, y as f32), 40.0));
        }
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].direction, Direction::In);
        for y in (250..350).rev().step_by(10) {
            got.extend(l.observe(2, 0, Point::new(300.0, y as f32), 40.0));
        }
        assert_eq!(got[1].direction, Direction::Out);
        assert_eq!(l.counts()[&Direction::In][&2], 1);
        assert_eq!(l.counts()[&Direction::Out][&0], 1);
    }

    #[test]
    fn jitter_on_the_line_counts_once() {
        let mut l = horizontal();
        let mut n = 0;
        let ys = [
            280.0, 297.0, 303.0, 299.0, 304.0, 310.0, 302.0, 307.0, 296.0, 312.0, 330.0,
        ];
        for y in ys {
            n += l
                .observe(7, 2, Point::new(300.0, y), 40.0)
                .into_iter()
                .count();
        }
        assert_eq!(n, 1);
    }

    #[test]
    fn going_around_the_end_does_not_count() {
        let mut l = horizontal();
        let path = [
            (300.0, 250.0),
            (450.0, 250.0),
            (600.0, 250.0),
            (600.0, 350.0),
            (450.0, 350.0),
        ];
        let n: usize = path
            .iter()
            .map(|(x, y)| {
                l.observe(3, 0, Point::new(*x, *y), 40.0)
                    .into_iter()
                    .count()
            })
            .sum();
        assert_eq!(n, 0);
    }

    #[test]
    fn polyline_counts_on_each_segment() {
        let mut l = LineCounter::new(LineConfig {
            name: "bend".into(),
            points: vec![[0.0, 100.0], [200.0, 100.0], [300.0, 200.0]],
            directions: None,
            hysteresis_px: 4.0,
        });
        // Crossing the second (diagonal) segment from its left to its right.
        let a = l.observe(1, 2, Point::new(270.0, 140.0), 40.0);
        let b = l.observe(1, 2, Point::new(230.0, 180.0), 40.0);
        assert!(a.is_none());
        assert_eq!(b.map(|c| c.direction), Some(Direction::In));
    }

    #[test]
    fn standing_on_the_line_never_gives_in_and_out() {
        // A car waiting on the stop line, 120 px tall: its box bottom jumps +-14 px as the
        // detector's box changes (past the 6 px band, within a tenth of its height)...
        let mut l = horizontal();
        let mut got = Vec::new();
        for (i, y) in [
            250.0, 280.0, 296.0, 313.0, 288.0, 311.0, 289.0, 314.0, 287.0, 312.0,
        ]
        .into_iter()
        .enumerate()
        {
            got.extend(
                l.observe(4, 2, Point::new(300.0, y), 120.0)
                    .map(|c| (i, c.direction)),
            );
        }
        // ...and once it drives on, it is one crossing, in.
        for y in [330.0, 360.0, 400.0] {
            got.extend(
                l.observe(4, 2, Point::new(300.0, y), 120.0)
                    .map(|c| (0, c.direction)),
            );
        }
        assert_eq!(
            got.iter().map(|g| g.1).collect::<Vec<_>>(),
            vec![Direction::In]
        );

        // A small box flickering across the band once each way: the way back is one sighting
        // only, so it is not believed.
        let mut l = horizontal();
        let mut dirs = Vec::new();
        for y in [280.0, 320.0, 280.0, 320.0, 280.0, 320.0] {
            dirs.extend(
                l.observe(5, 0, Point::new(300.0, y), 40.0)
                    .map(|c| c.direction),
            );
        }
        assert_eq!(dirs, vec![Direction::In]);
    }

    #[test]
    fn walking_back_is_counted_out_once_it_holds() {
        let mut l = horizontal();
        let mut dirs = Vec::new();
        for y in [250.0, 350.0, 360.0, 250.0, 240.0, 230.0] {
            dirs.extend(
                l.observe(6, 0, Point::new(300.0, y), 40.0)
                    .map(|c| c.direction),
            );
        }
        assert_eq!(dirs, vec![Direction::In, Direction::Out]);
    }

    proptest! {
        /// However a track wanders, it is counted at most once per direction, and the in/out
        /// counts alternate with its net side changes.
        #[test]
        fn at_most_once_per_direction(ys in proptest::collection::vec(200f32..400.0, 1..80)) {
            let mut l = horizontal();
            let mut ins = 0;
            let mut outs = 0;
            for y in ys {
                if let Some(c) = l.observe(1, 0, Point::new(300.0, y), 40.0) {
                    match c.direction {
                        Direction::In => ins += 1,
                        Direction::Out => outs += 1,
                    }
                }
            }
            prop_assert!(ins <= 1 && outs <= 1);
        }
    }
}
