//! CLEAR-MOT and identity metrics against MOTChallenge ground truth, so tracking quality is
//! measured, not assumed.
//!
//! Files are MOTChallenge CSV: `frame,id,left,top,width,height,conf,...` (1-based frames). Per
//! frame, ground truth and tracks are matched by IoU >= 0.5 (Hungarian), keeping last frame's
//! pairs when still valid (as in the CLEAR-MOT definition). MOTA = 1 - (FN + FP + IDSW) / GT.
//! IDF1 uses the global one-to-one assignment of track ids to ground-truth ids that maximises
//! frames in agreement.

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;

use crate::geometry::BBox;
use crate::track::assignment::assign;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MotBox {
    pub id: u64,
    pub bbox: BBox,
}

/// Frame (1-based) -> boxes.
pub type MotFile = BTreeMap<u64, Vec<MotBox>>;

/// Parses MOTChallenge CSV. Rows with `conf` 0 in ground truth are "ignore" rows and skipped.
/// An id twice in one frame is refused: the scores count each (frame, id) once, and a repeat
/// would push IDF1 above 1.
pub fn parse(text: &str) -> Result<MotFile, String> {
    let mut out: MotFile = BTreeMap::new();
    let mut seen = std::collections::HashSet::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let f: Vec<&str> = line.split(',').map(str::trim).collect();
        let num = |i: usize| -> Result<f64, String> {
            f.get(i)
                .ok_or_else(|| format!("line {}: expected at least 6 columns", n + 1))?
                .parse::<f64>()
                .map_err(|_| format!("line {}: column {} is not a number", n + 1, i + 1))
        };
        let (frame, id) = (num(0)? as u64, num(1)? as u64);
        let (l, t, w, h) = (num(2)?, num(3)?, num(4)?, num(5)?);
        if f.len() > 6 && num(6)? == 0.0 {
            continue;
        }
        if !seen.insert((frame, id)) {
            return Err(format!(
                "line {}: id {id} appears twice in frame {frame}",
                n + 1
            ));
        }
        out.entry(frame).or_default().push(MotBox {
            id,
            bbox: BBox::new(l as f32, t as f32, (l + w) as f32, (t + h) as f32),
        });
    }
    Ok(out)
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct MotMetrics {
    pub frames: u64,
    pub gt: u64,
    pub tp: u64,
    pub fp: u64,
    pub fn_: u64,
    pub id_switches: u64,
    pub mota: f64,
    pub idf1: f64,
    pub precision: f64,
    pub recall: f64,
    pub gt_ids: usize,
    pub track_ids: usize,
}

pub fn evaluate(gt: &MotFile, tracks: &MotFile, min_iou: f32) -> MotMetrics {
    let mut m = MotMetrics::default();
    let empty = Vec::new();
    let mut last_match: HashMap<u64, u64> = HashMap::new(); // gt id -> track id
    let mut pair_frames: HashMap<(u64, u64), u64> = HashMap::new();
    let mut gt_count: HashMap<u64, u64> = HashMap::new();
    let mut tr_count: HashMap<u64, u64> = HashMap::new();
    let frames: std::collections::BTreeSet<u64> = gt.keys().chain(tracks.keys()).copied().collect();
    for frame in frames {
        let g = gt.get(&frame).unwrap_or(&empty);
        let t = tracks.get(&frame).unwrap_or(&empty);
        m.frames += 1;
        m.gt += g.len() as u64;
        for b in g {
            *gt_count.entry(b.id).or_insert(0) += 1;
        }
        for b in t {
            *tr_count.entry(b.id).or_insert(0) += 1;
        }
        // Identity pairs for IDF1: any overlap >= threshold this frame.
        if !g.is_empty() && !t.is_empty() {
            let cost: Vec<Vec<f32>> = g
                .iter()
                .map(|a| t.iter().map(|b| 1.0 - a.bbox.iou(&b.bbox)).collect())
                .collect();
            // CLEAR-MOT: keep last frame's correspondences that still overlap enough.
            let mut matched_g = vec![false; g.len()];
            let mut matched_t = vec![false; t.len()];
            let mut pairs = Vec::new();
            for (gi, gb) in g.iter().enumerate() {
                if let Some(tid) = last_match.get(&gb.id) {
                    if let Some(ti) = t.iter().position(|b| b.id == *tid) {
                        if !matched_t[ti] && cost[gi][ti] <= 1.0 - min_iou {
                            matched_g[gi] = true;
                            matched_t[ti] = true;
                            pairs.push((gi, ti));
                        }
                    }
                }
            }
            let rest_g: Vec<usize> = (0..g.len()).filter(|i| !matched_g[*i]).collect();
            let rest_t: Vec<usize> = (0..t.len()).filter(|i| !matched_t[*i]).collect();
            let sub: Vec<Vec<f32>> = rest_g
                .iter()
                .map(|gi| rest_t.iter().map(|ti| cost[*gi][*ti]).collect())
                .collect();
            for (r, c) in assign(&sub, 1.0 - min_iou) {
                pairs.push((rest_g[r], rest_t[c]));
            }
            for (gi, ti) in &pairs {
                let (gid, tid) = (g[*gi].id, t[*ti].id);
                if last_match.get(&gid).is_some_and(|prev| *prev != tid) {
                    m.id_switches += 1;
                }
                last_match.insert(gid, tid);
            }
            m.tp += pairs.len() as u64;
            m.fp += (t.len() - pairs.len()) as u64;
            m.fn_ += (g.len() - pairs.len()) as u64;
            for (gi, ti) in g.iter().enumerate().flat_map(|(gi, gb)| {
                t.iter()
                    .enumerate()
                    .filter(move |(_, tb)| gb.bbox.iou(&tb.bbox) >= min_iou)
                    .map(move |(ti, _)| (gi, ti))
            }) {
                *pair_frames.entry((g[gi].id, t[ti].id)).or_insert(0) += 1;
            }
        } else {
            m.fp += t.len() as u64;
            m.fn_ += g.len() as u64;
        }
    }
    m.mota = if m.gt == 0 {
        0.0
    } else {
        1.0 - (m.fn_ + m.fp + m.id_switches) as f64 / m.gt as f64
    };
    m.precision = ratio(m.tp, m.tp + m.fp);
    m.recall = ratio(m.tp, m.gt);

    // IDF1: best one-to-one mapping of ids, maximising frames in agreement.
    let gids: Vec<u64> = gt_count.keys().copied().collect();
    let tids: Vec<u64> = tr_count.keys().copied().collect();
    m.gt_ids = gids.len();
    m.track_ids = tids.len();
    let idtp: u64 = if gids.is_empty() || tids.is_empty() {
        0
    } else {
        let max = pair_frames.values().copied().max().unwrap_or(1) as f32;
        let cost: Vec<Vec<f32>> = gids
            .iter()
            .map(|g| {
                tids.iter()
                    .map(|t| max - *pair_frames.get(&(*g, *t)).unwrap_or(&0) as f32)
                    .collect()
            })
            .collect();
        assign(&cost, f32::INFINITY)
            .into_iter()
            .map(|(r, c)| *pair_frames.get(&(gids[r], tids[c])).unwrap_or(&0))
            .sum()
    };
    let total_gt: u64 = gt_count.values().sum();
    let total_tr: u64 = tr_count.values().sum();
    m.idf1 = ratio(2 * idtp, total_gt + total_tr);
    m
}

/// Keeps only the frames in `frames` (e.g. the frames a replay at 5 fps analysed), so a
/// tracker that looked at every 5th frame is scored on those frames only.
pub fn only_frames(file: &MotFile, frames: &std::collections::BTreeSet<u64>) -> MotFile {
    file.iter()
        .filter(|(f, _)| frames.contains(f))
        .map(|(f, b)| (*f, b.clone()))
        .collect()
}

/// Crossings of the line `points` (a polyline, as configured for a camera) made by the
/// ground-truth tracks: a track whose bottom centre goes from one side of a segment to the
/// other, within the segment's extent, crosses it. `(into, out_of)` with `in` being left to
/// right of the line's direction as seen on screen, as for counting lines. Each track counts
/// at most once per direction, as pantau counts. Written independently of the counting rules
/// on purpose: it is what they are checked against.
pub fn crossings(file: &MotFile, points: &[[f32; 2]]) -> (u64, u64) {
    // id -> bottom centres in frame order.
    let mut paths: BTreeMap<u64, Vec<(f32, f32)>> = BTreeMap::new();
    for boxes in file.values() {
        for b in boxes {
            paths
                .entry(b.id)
                .or_default()
                .push(((b.bbox.x1 + b.bbox.x2) / 2.0, b.bbox.y2));
        }
    }
    let (mut into, mut out_of) = (0, 0);
    for path in paths.values() {
        let (mut went_in, mut went_out) = (false, false);
        for seg in points.windows(2) {
            let (a, b) = (seg[0], seg[1]);
            let (dx, dy) = (b[0] - a[0], b[1] - a[1]);
            let len2 = dx * dx + dy * dy;
            if len2 == 0.0 {
                continue;
            }
            // Side (cross product sign) of each point within the segment's extent.
            let mut last_side: Option<bool> = None;
            for (x, y) in path {
                let t = ((x - a[0]) * dx + (y - a[1]) * dy) / len2;
                if !(0.0..=1.0).contains(&t) {
                    last_side = None;
                    continue;
                }
                let cross = dx * (y - a[1]) - dy * (x - a[0]);
                if cross == 0.0 {
                    continue;
                }
                let right = cross > 0.0;
                match last_side {
                    Some(false) if right => went_in = true,
                    Some(true) if !right => went_out = true,
                    _ => {}
                }
                last_side = Some(right);
            }
        }
        into += u64::from(went_in);
        out_of += u64::from(went_out);
    }
    (into, out_of)
}

fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 {
        0.0
    } else {
        a as f64 / b as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(rows: &[(u64, u64, f32)]) -> MotFile {
        let text: String = rows
            .iter()
            .map(|(f, id, x)| format!("{f},{id},{x},10,20,40,1,-1,-1,-1\n"))
            .collect();
        parse(&text).expect("parses")
    }

    #[test]
    fn perfect_tracking_scores_one() {
        let gt = file(&[(1, 1, 0.0), (2, 1, 5.0), (1, 2, 100.0), (2, 2, 105.0)]);
        let tr = file(&[(1, 7, 0.0), (2, 7, 5.0), (1, 8, 100.0), (2, 8, 105.0)]);
        let m = evaluate(&gt, &tr, 0.5);
        assert_eq!((m.tp, m.fp, m.fn_, m.id_switches), (4, 0, 0, 0));
        assert_eq!(m.mota, 1.0);
        assert_eq!(m.idf1, 1.0);
    }

    #[test]
    fn an_id_switch_and_a_miss_are_counted() {
        // Object 1 tracked as 7 then as 9 (switch); frame 3 missed; one false positive.
        let gt = file(&[(1, 1, 0.0), (2, 1, 2.0), (3, 1, 4.0), (4, 1, 6.0)]);
        let tr = file(&[(1, 7, 0.0), (2, 9, 2.0), (4, 9, 6.0), (4, 3, 300.0)]);
        let m = evaluate(&gt, &tr, 0.5);
        assert_eq!(m.id_switches, 1);
        assert_eq!(m.fn_, 1);
        assert_eq!(m.fp, 1);
        assert!((m.mota - (1.0 - 3.0 / 4.0)).abs() < 1e-9);
        // Best mapping 1<->9 agrees on 2 frames: IDF1 = 2*2 / (4 + 4).
        assert!((m.idf1 - 0.5).abs() < 1e-9);
    }

    #[test]
    fn ground_truth_crossings_by_side_changes() {
        // Line from (50, 0) to (50, 100) pointing down: "in" is right to left on screen.
        let line = [[50.0, 0.0], [50.0, 100.0]];
        // Boxes 20 wide, 40 tall starting at y 10 (bottom 50): x is the left edge.
        let gt = file(&[
            // id 1 walks right to left across: in.
            (1, 1, 80.0),
            (2, 1, 60.0),
            (3, 1, 20.0),
            // id 2 walks left to right: out.
            (1, 2, 0.0),
            (2, 2, 70.0),
            // id 3 stays right.
            (1, 3, 90.0),
            (3, 3, 95.0),
        ]);
        assert_eq!(crossings(&gt, &line), (1, 1));
        // Scored on frames 1 and 3 only.
        let kept = only_frames(&gt, &[1, 3].into_iter().collect());
        assert_eq!(kept.len(), 2);
        assert_eq!(crossings(&kept, &line), (1, 0));
    }

    #[test]
    fn malformed_rows_name_the_line() {
        let err = parse("1,1,0,0,10,10\n2,x,0,0,10,10\n").expect_err("bad id");
        assert!(err.contains("line 2"), "{err}");
        let err = parse("1,1,0,0,10,10\n1,1,5,5,10,10\n").expect_err("repeated id");
        assert!(
            err.contains("line 2: id 1 appears twice in frame 1"),
            "{err}"
        );
    }
}
