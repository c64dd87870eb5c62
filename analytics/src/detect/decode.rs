//! Turning raw model output into boxes: YOLOX grid decoding and per-class non-maximum
//! suppression. Small pure functions, tested on known inputs.

use super::Detection;
use crate::geometry::BBox;

/// Grid cells of a YOLOX head: (grid x, grid y, stride) per output row.
pub fn yolox_grid(width: u32, height: u32, strides: &[u32]) -> Vec<(f32, f32, f32)> {
    let mut grid = Vec::new();
    for &s in strides {
        let (gw, gh) = (width / s, height / s);
        for y in 0..gh {
            for x in 0..gw {
                grid.push((x as f32, y as f32, s as f32));
            }
        }
    }
    grid
}

/// What the decoder keeps of each model output row.
#[derive(Debug, Clone, PartialEq)]
pub struct ClassFilter {
    /// Per class id: the score a detection of that class needs to be *confident* (reported,
    /// allowed to start a track), or `None` for classes not wanted at all.
    pub thresholds: Vec<Option<f32>>,
    /// Lowest score kept: weaker boxes of wanted classes still go to the tracker, which uses
    /// them only to follow objects it already has (ByteTrack's second pass).
    pub floor: f32,
}

impl ClassFilter {
    fn threshold(&self, class: usize) -> Option<f32> {
        self.thresholds.get(class).copied().flatten()
    }
}

/// Decodes YOLOX rows `[x, y, w, h, obj, cls...]` into candidate boxes in letterbox pixels
/// divided by `ratio` (i.e. source pixels). Each row becomes at most one box, of its best
/// *wanted* class (a bus that the model also scores as "train" stays a bus when trains are not
/// wanted), kept down to `filter.floor`.
pub fn decode_yolox(
    output: &[f32],
    grid: &[(f32, f32, f32)],
    num_classes: usize,
    ratio: f32,
    filter: &ClassFilter,
    out: &mut Vec<Detection>,
) {
    let row = 5 + num_classes;
    out.clear();
    for (i, cell) in output.chunks_exact(row).enumerate() {
        let Some(&(gx, gy, s)) = grid.get(i) else {
            break;
        };
        let obj = cell[4];
        // Cheap reject before scanning the classes: score = obj * cls <= obj.
        if obj < filter.floor {
            continue;
        }
        let best = cell[5..]
            .iter()
            .enumerate()
            .filter_map(|(c, &p)| filter.threshold(c).map(|t| (c, p, t)))
            .max_by(|a, b| a.1.total_cmp(&b.1));
        let Some((class, cls, threshold)) = best else {
            continue;
        };
        let score = obj * cls;
        if score < filter.floor {
            continue;
        }
        let cx = (cell[0] + gx) * s;
        let cy = (cell[1] + gy) * s;
        let w = cell[2].exp() * s;
        let h = cell[3].exp() * s;
        out.push(Detection {
            bbox: BBox::new(
                (cx - w / 2.0) / ratio,
                (cy - h / 2.0) / ratio,
                (cx + w / 2.0) / ratio,
                (cy + h / 2.0) / ratio,
            ),
            score,
            class: class as u16,
            confident: score >= threshold,
        });
    }
}

/// Non-maximum suppression: keeps the best box of each overlapping group (IoU above `iou`)
/// among boxes of the same *kind*. `kind(class)` is the class itself, except for classes that
/// the model confuses for one object (a car and a truck box on one vehicle): those share a
/// kind, so one vehicle stays one box. Output sorted by score, highest first.
pub fn nms(mut dets: Vec<Detection>, iou: f32, kind: &dyn Fn(u16) -> u16) -> Vec<Detection> {
    dets.sort_by(|a, b| b.score.total_cmp(&a.score));
    let mut keep: Vec<Detection> = Vec::with_capacity(dets.len());
    for d in dets {
        let k = kind(d.class);
        if keep
            .iter()
            .all(|other| kind(other.class) != k || other.bbox.iou(&d.bbox) <= iou)
        {
            keep.push(d);
        }
    }
    keep
}

/// Labels of classes that describe one road vehicle in different words; the detector merges
/// their overlapping boxes.
pub const VEHICLE_LABELS: [&str; 4] = ["car", "truck", "bus", "train"];

/// The NMS kind of each class id: vehicles share the id of the first vehicle label present.
pub fn nms_kinds(labels: &[String]) -> Vec<u16> {
    let first_vehicle = labels
        .iter()
        .position(|l| VEHICLE_LABELS.contains(&l.as_str()));
    labels
        .iter()
        .enumerate()
        .map(|(i, l)| match first_vehicle {
            Some(v) if VEHICLE_LABELS.contains(&l.as_str()) => v as u16,
            _ => i as u16,
        })
        .collect()
}

/// Clips boxes to the image and drops those left without area.
pub fn clip(dets: &mut Vec<Detection>, width: f32, height: f32) {
    for d in dets.iter_mut() {
        d.bbox = BBox::new(
            d.bbox.x1.clamp(0.0, width),
            d.bbox.y1.clamp(0.0, height),
            d.bbox.x2.clamp(0.0, width),
            d.bbox.y2.clamp(0.0, height),
        );
    }
    dets.retain(|d| d.bbox.area() > 1.0);
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn grid_matches_the_yolox_layout() {
        let g = yolox_grid(416, 416, &[8, 16, 32]);
        assert_eq!(g.len(), 52 * 52 + 26 * 26 + 13 * 13);
        assert_eq!(g[0], (0.0, 0.0, 8.0));
        assert_eq!(g[53], (1.0, 1.0, 8.0));
        assert_eq!(g[52 * 52], (0.0, 0.0, 16.0));
        assert_eq!(*g.last().expect("cells"), (12.0, 12.0, 32.0));
    }

    fn wanted(thresholds: &[Option<f32>], floor: f32) -> ClassFilter {
        ClassFilter {
            thresholds: thresholds.to_vec(),
            floor,
        }
    }

    #[test]
    fn decodes_a_known_cell() {
        // One cell at grid (2, 3), stride 8; box offset (0.5, 0.5), size exp(0)*8 = 8 px.
        let grid = vec![(0.0, 0.0, 8.0), (2.0, 3.0, 8.0)];
        let mut out = vec![0.0f32; 2 * 7];
        out[7..].copy_from_slice(&[0.5, 0.5, 0.0, 0.0, 0.9, 0.1, 0.8]);
        let mut dets = Vec::new();
        decode_yolox(
            &out,
            &grid,
            2,
            0.5,
            &wanted(&[Some(0.3); 2], 0.1),
            &mut dets,
        );
        assert_eq!(dets.len(), 1);
        let d = &dets[0];
        assert_eq!(d.class, 1);
        assert!((d.score - 0.72).abs() < 1e-6);
        assert!(d.confident);
        // centre (2.5*8, 3.5*8) = (20, 28), 8x8, divided by ratio 0.5.
        assert_eq!(d.bbox, BBox::new(32.0, 48.0, 48.0, 64.0));
    }

    #[test]
    fn the_best_wanted_class_wins_over_an_unwanted_better_one() {
        // Class 0 ("train", unwanted) scores 0.9, class 1 ("bus") 0.6: a bus it is.
        let grid = vec![(0.0, 0.0, 8.0)];
        let out = [0.0, 0.0, 0.0, 0.0, 0.9, 0.9, 0.6];
        let mut dets = Vec::new();
        decode_yolox(
            &out,
            &grid,
            2,
            1.0,
            &wanted(&[None, Some(0.3)], 0.1),
            &mut dets,
        );
        assert_eq!(dets.len(), 1);
        assert_eq!(dets[0].class, 1);
        assert!((dets[0].score - 0.54).abs() < 1e-6);
        decode_yolox(&out, &grid, 2, 1.0, &wanted(&[None, None], 0.1), &mut dets);
        assert!(dets.is_empty(), "nothing wanted");
    }

    #[test]
    fn weak_boxes_are_kept_for_the_tracker_but_not_confident() {
        let grid = vec![(0.0, 0.0, 8.0)];
        let out = [0.0, 0.0, 0.0, 0.0, 0.5, 0.4, 0.1];
        let mut dets = Vec::new();
        decode_yolox(
            &out,
            &grid,
            2,
            1.0,
            &wanted(&[Some(0.35); 2], 0.1),
            &mut dets,
        );
        assert_eq!(dets.len(), 1, "0.2 is above the tracker's floor");
        assert!(!dets[0].confident, "but below the class threshold");
        decode_yolox(
            &out,
            &grid,
            2,
            1.0,
            &wanted(&[Some(0.35); 2], 0.25),
            &mut dets,
        );
        assert!(dets.is_empty(), "below the floor");
    }

    fn boxed(x: f32, score: f32, class: u16) -> Detection {
        Detection {
            bbox: BBox::new(x, 0.0, x + 10.0, 10.0),
            score,
            class,
            confident: true,
        }
    }

    #[test]
    fn nms_keeps_the_best_of_each_class() {
        let kept = nms(
            vec![
                boxed(0.0, 0.8, 0),
                boxed(1.0, 0.9, 0),
                boxed(1.0, 0.7, 1),
                boxed(50.0, 0.5, 0),
            ],
            0.45,
            &|c| c,
        );
        assert_eq!(
            kept,
            vec![boxed(1.0, 0.9, 0), boxed(1.0, 0.7, 1), boxed(50.0, 0.5, 0)]
        );
    }

    #[test]
    fn a_car_box_and_a_truck_box_on_one_vehicle_become_one() {
        let labels: Vec<String> = [
            "person",
            "bicycle",
            "car",
            "motorcycle",
            "airplane",
            "bus",
            "train",
            "truck",
        ]
        .map(String::from)
        .to_vec();
        let kinds = nms_kinds(&labels);
        assert_eq!(kinds, vec![0, 1, 2, 3, 4, 2, 2, 2]);
        let kind = |c: u16| kinds[c as usize];
        let kept = nms(
            vec![boxed(0.0, 0.6, 2), boxed(1.0, 0.7, 7), boxed(1.0, 0.5, 0)],
            0.45,
            &kind,
        );
        // The truck box (better score) stands for the vehicle; the person stays.
        assert_eq!(kept, vec![boxed(1.0, 0.7, 7), boxed(1.0, 0.5, 0)]);
    }

    proptest! {
        #[test]
        fn nms_output_has_no_same_class_overlap(
            boxes in proptest::collection::vec((0f32..300.0, 0f32..300.0, 5f32..80.0, 0.1f32..1.0, 0u16..3), 0..40)
        ) {
            let dets: Vec<Detection> = boxes
                .iter()
                .map(|(x, y, s, score, class)| Detection { bbox: BBox::new(*x, *y, x + s, y + s), score: *score, class: *class, confident: true })
                .collect();
            let kept = nms(dets.clone(), 0.45, &|c| c);
            prop_assert!(kept.len() <= dets.len());
            for (i, a) in kept.iter().enumerate() {
                for b in &kept[i + 1..] {
                    prop_assert!(a.class != b.class || a.bbox.iou(&b.bbox) <= 0.45);
                }
            }
            // The best box always survives.
            if let Some(best) = dets.iter().max_by(|a, b| a.score.total_cmp(&b.score)) {
                prop_assert!(kept.iter().any(|k| k.score == best.score));
            }
        }
    }
}
