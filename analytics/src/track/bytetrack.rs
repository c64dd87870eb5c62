//! A ByteTrack-class multi-object tracker.
//!
//! Each frame: predict every track with its Kalman filter; match confirmed and lost tracks to
//! high-confidence detections (IoU, Hungarian); match the tracks still unmatched to
//! low-confidence detections (the "byte" step that keeps objects through occlusion and blur);
//! match tentative tracks to what is left of the high ones; start tentative tracks from the
//! remaining confident detections. A track is
//!
//! ```text
//!  tentative --matched next frame--> confirmed <--re-found-- lost --older than lost_ttl--> removed
//!      `--not matched----------------------------------------> removed
//! ```
//!
//! Ids are given when a track is confirmed, so they count real objects without gaps.

use std::collections::HashMap;

use pantau_core::TrackerConfig;
use serde::Serialize;

use super::assignment::assign;
use super::kalman::Kalman;
use crate::detect::Detection;
use crate::geometry::BBox;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TrackState {
    Tentative,
    Confirmed,
    Lost,
}

#[derive(Debug, Clone)]
struct Track {
    /// 0 until confirmed.
    id: u64,
    state: TrackState,
    kalman: Kalman,
    score: f32,
    /// Score-weighted class votes.
    votes: HashMap<u16, f32>,
    /// Frames since the last match.
    missed: u32,
    /// Frames with a match.
    hits: u32,
    matched_now: bool,
    last_box: BBox,
}

impl Track {
    fn new(d: &Detection) -> Self {
        let mut votes = HashMap::new();
        votes.insert(d.class, d.score);
        Self {
            id: 0,
            state: TrackState::Tentative,
            kalman: Kalman::new(&d.bbox),
            score: d.score,
            votes,
            missed: 0,
            hits: 1,
            matched_now: true,
            last_box: d.bbox,
        }
    }

    fn update(&mut self, d: &Detection) {
        self.kalman.update(&d.bbox);
        self.score = d.score;
        *self.votes.entry(d.class).or_insert(0.0) += d.score;
        self.missed = 0;
        self.hits += 1;
        self.matched_now = true;
        self.last_box = d.bbox;
    }

    fn class(&self) -> u16 {
        self.votes
            .iter()
            .max_by(|a, b| a.1.total_cmp(b.1).then(b.0.cmp(a.0)))
            .map(|(c, _)| *c)
            .unwrap_or(0)
    }
}

/// A confirmed track as the rest of pantau sees it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TrackedObject {
    pub id: u64,
    pub class: u16,
    /// The matched detection's box this frame (the filter's estimate when only predicted).
    pub bbox: BBox,
    pub score: f32,
    /// Matched to a detection in this frame (false: coasting on prediction).
    pub matched: bool,
    /// Centre velocity in pixels per analysed frame.
    pub velocity: (f32, f32),
    pub hits: u32,
}

/// One camera's tracker.
#[derive(Debug)]
pub struct Tracker {
    config: TrackerConfig,
    tracks: Vec<Track>,
    next_id: u64,
}

impl Tracker {
    pub fn new(config: TrackerConfig) -> Self {
        Self {
            config,
            tracks: Vec::new(),
            next_id: 1,
        }
    }

    /// Feeds one frame's detections; returns the confirmed tracks seen in this frame.
    pub fn update(&mut self, detections: &[Detection]) -> Vec<TrackedObject> {
        let cfg = self.config.clone();
        let (high, low): (Vec<&Detection>, Vec<&Detection>) = detections
            .iter()
            .filter(|d| d.score >= cfg.low_score)
            .partition(|d| d.score >= cfg.high_score);

        for t in &mut self.tracks {
            t.kalman.predict();
            t.matched_now = false;
        }

        // 1. Confirmed and lost tracks against high detections.
        let pool: Vec<usize> = self
            .tracks
            .iter()
            .enumerate()
            .filter(|(_, t)| t.state != TrackState::Tentative)
            .map(|(i, _)| i)
            .collect();
        let (matched, rest_tracks, rest_high) = self.associate(&pool, &high, cfg.match_iou);
        for (ti, d) in matched {
            let t = &mut self.tracks[ti];
            t.update(d);
            t.state = TrackState::Confirmed;
        }

        // 2. Tracks that were being followed until now against low detections.
        let still_tracked: Vec<usize> = rest_tracks
            .iter()
            .copied()
            .filter(|&i| self.tracks[i].state == TrackState::Confirmed)
            .collect();
        let (matched, unmatched, _) = self.associate(&still_tracked, &low, cfg.low_match_iou);
        for (ti, d) in matched {
            self.tracks[ti].update(d);
        }
        for ti in unmatched {
            self.tracks[ti].state = TrackState::Lost;
        }

        // 3. Tentative tracks against the remaining high detections.
        let tentative: Vec<usize> = self
            .tracks
            .iter()
            .enumerate()
            .filter(|(_, t)| t.state == TrackState::Tentative)
            .map(|(i, _)| i)
            .collect();
        let (matched, unmatched_tentative, left) =
            self.associate(&tentative, &rest_high, cfg.tentative_match_iou);
        for (ti, d) in matched {
            let t = &mut self.tracks[ti];
            t.update(d);
            t.state = TrackState::Confirmed;
        }

        // 4. Remove what did not make it; start new tentative tracks.
        let mut remove = vec![false; self.tracks.len()];
        for ti in unmatched_tentative {
            remove[ti] = true;
        }
        for (i, t) in self.tracks.iter_mut().enumerate() {
            if !t.matched_now {
                t.missed += 1;
                if t.state == TrackState::Lost && t.missed > cfg.lost_frames {
                    remove[i] = true;
                }
            }
        }
        let mut i = 0;
        self.tracks.retain(|_| {
            let keep = !remove[i];
            i += 1;
            keep
        });
        for d in left {
            if d.score >= cfg.new_track_score {
                self.tracks.push(Track::new(d));
            }
        }

        // Ids for newly confirmed tracks, in a stable order.
        for t in &mut self.tracks {
            if t.state == TrackState::Confirmed && t.id == 0 {
                t.id = self.next_id;
                self.next_id += 1;
            }
        }
        self.tracks
            .iter()
            .filter(|t| t.state == TrackState::Confirmed)
            .map(|t| TrackedObject {
                id: t.id,
                class: t.class(),
                bbox: if t.matched_now {
                    t.last_box
                } else {
                    t.kalman.bbox()
                },
                score: t.score,
                matched: t.matched_now,
                velocity: t.kalman.velocity(),
                hits: t.hits,
            })
            .collect()
    }

    /// Ids of tracks that still exist (confirmed or lost).
    pub fn live_ids(&self) -> impl Iterator<Item = u64> + '_ {
        self.tracks.iter().filter(|t| t.id != 0).map(|t| t.id)
    }

    /// Matches `tracks` (indices) to `dets` by IoU. Returns matches, unmatched track indices
    /// and unmatched detections.
    fn associate<'d>(
        &self,
        tracks: &[usize],
        dets: &[&'d Detection],
        min_iou: f32,
    ) -> (Vec<(usize, &'d Detection)>, Vec<usize>, Vec<&'d Detection>) {
        if tracks.is_empty() || dets.is_empty() {
            return (Vec::new(), tracks.to_vec(), dets.to_vec());
        }
        let cost: Vec<Vec<f32>> = tracks
            .iter()
            .map(|&ti| {
                let predicted = self.tracks[ti].kalman.bbox();
                dets.iter().map(|d| 1.0 - predicted.iou(&d.bbox)).collect()
            })
            .collect();
        let pairs = assign(&cost, 1.0 - min_iou);
        let mut track_used = vec![false; tracks.len()];
        let mut det_used = vec![false; dets.len()];
        let mut matched = Vec::with_capacity(pairs.len());
        for (r, c) in pairs {
            track_used[r] = true;
            det_used[c] = true;
            matched.push((tracks[r], dets[c]));
        }
        let rest_tracks = tracks
            .iter()
            .zip(&track_used)
            .filter(|(_, u)| !**u)
            .map(|(t, _)| *t)
            .collect();
        let rest_dets = dets
            .iter()
            .zip(&det_used)
            .filter(|(_, u)| !**u)
            .map(|(d, _)| *d)
            .collect();
        (matched, rest_tracks, rest_dets)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn det(x: f32, y: f32, score: f32, class: u16) -> Detection {
        Detection {
            bbox: BBox::new(x, y, x + 40.0, y + 80.0),
            score,
            class,
        }
    }

    #[test]
    fn a_track_is_confirmed_on_its_second_frame_and_keeps_its_id() {
        let mut t = Tracker::new(TrackerConfig::default());
        assert!(
            t.update(&[det(0.0, 0.0, 0.9, 0)]).is_empty(),
            "tentative first"
        );
        let out = t.update(&[det(5.0, 0.0, 0.9, 0)]);
        assert_eq!(out.len(), 1);
        let id = out[0].id;
        for i in 2..20 {
            let out = t.update(&[det(5.0 * i as f32, 0.0, 0.9, 0)]);
            assert_eq!(out.len(), 1);
            assert_eq!(out[0].id, id);
        }
    }

    #[test]
    fn low_confidence_detections_keep_a_track_alive() {
        let mut t = Tracker::new(TrackerConfig::default());
        t.update(&[det(0.0, 0.0, 0.9, 0)]);
        let id = t.update(&[det(4.0, 0.0, 0.9, 0)])[0].id;
        // Partly occluded: scores drop to 0.3 (below high, above low).
        for i in 2..6 {
            let out = t.update(&[det(4.0 * i as f32, 0.0, 0.3, 0)]);
            assert_eq!(out.len(), 1);
            assert!(out[0].matched);
            assert_eq!(out[0].id, id);
        }
    }

    #[test]
    fn an_occluded_object_gets_its_id_back() {
        let mut t = Tracker::new(TrackerConfig::default());
        let mut id = 0;
        for i in 0..10 {
            let out = t.update(&[det(10.0 * i as f32, 0.0, 0.9, 2)]);
            if let Some(o) = out.first() {
                id = o.id;
            }
        }
        // Hidden for 5 frames, moving on.
        for _ in 10..15 {
            let out = t.update(&[]);
            assert!(out.iter().all(|o| !o.matched));
        }
        let out = t.update(&[det(150.0, 0.0, 0.9, 2)]);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].id, id, "same id after occlusion");
    }

    #[test]
    fn lost_tracks_expire_and_one_off_detections_never_confirm() {
        let cfg = TrackerConfig {
            lost_frames: 3,
            ..TrackerConfig::default()
        };
        let mut t = Tracker::new(cfg);
        t.update(&[det(0.0, 0.0, 0.9, 0)]);
        t.update(&[det(0.0, 0.0, 0.9, 0)]);
        for _ in 0..4 {
            t.update(&[]);
        }
        assert_eq!(t.live_ids().count(), 0);
        // A single flash never becomes a track.
        assert!(t.update(&[det(300.0, 300.0, 0.95, 0)]).is_empty());
        assert!(t.update(&[]).is_empty());
        assert_eq!(t.live_ids().count(), 0);
    }

    #[test]
    fn class_follows_the_majority_of_votes() {
        let mut t = Tracker::new(TrackerConfig::default());
        let classes = [2, 2, 7, 2, 2, 7, 2];
        let mut last = None;
        for (i, c) in classes.iter().enumerate() {
            last = t
                .update(&[det(2.0 * i as f32, 0.0, 0.8, *c)])
                .first()
                .cloned();
        }
        assert_eq!(last.expect("tracked").class, 2);
    }

    proptest! {
        /// Objects far apart moving steadily keep distinct, stable ids every frame.
        #[test]
        fn separated_objects_never_swap_ids(
            starts in proptest::collection::vec((0u32..10, 0u32..10), 1..6),
            speed in -6f32..6.0,
            frames in 5usize..40,
        ) {
            let mut t = Tracker::new(TrackerConfig::default());
            let mut uniq = starts.clone();
            uniq.sort_unstable();
            uniq.dedup();
            let mut ids: HashMap<usize, u64> = HashMap::new();
            for f in 0..frames {
                let dets: Vec<Detection> = uniq
                    .iter()
                    .map(|(gx, gy)| det(*gx as f32 * 200.0 + speed * f as f32, *gy as f32 * 200.0, 0.9, 0))
                    .collect();
                let out = t.update(&dets);
                if f >= 1 {
                    prop_assert_eq!(out.len(), uniq.len());
                    for o in &out {
                        let k = dets.iter().position(|d| d.bbox == o.bbox).expect("matched box");
                        let id = *ids.entry(k).or_insert(o.id);
                        prop_assert_eq!(id, o.id);
                    }
                }
            }
            let mut all: Vec<u64> = ids.values().copied().collect();
            all.sort_unstable();
            all.dedup();
            prop_assert_eq!(all.len(), uniq.len());
        }
    }
}
