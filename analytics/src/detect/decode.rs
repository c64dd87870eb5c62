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

/// Decodes YOLOX rows `[x, y, w, h, obj, cls...]` into candidate boxes in letterbox pixels
/// divided by `ratio` (i.e. source pixels). `min_score(class)` gives the threshold for a class,
/// or `None` to skip the class entirely.
pub fn decode_yolox(
    output: &[f32],
    grid: &[(f32, f32, f32)],
    num_classes: usize,
    ratio: f32,
    min_score: &dyn Fn(usize) -> Option<f32>,
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
        if obj < 0.01 {
            continue;
        }
        let (class, cls) =
            cell[5..]
                .iter()
                .enumerate()
                .fold(
                    (0usize, f32::MIN),
                    |best, (c, &p)| if p > best.1 { (c, p) } else { best },
                );
        let score = obj * cls;
        match min_score(class) {
            Some(t) if score >= t => {}
            _ => continue,
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
        });
    }
}

/// Per-class non-maximum suppression: keeps the best box of each overlapping group (IoU above
/// `iou`) within one class. Output sorted by score, highest first.
pub fn nms(mut dets: Vec<Detection>, iou: f32) -> Vec<Detection> {
    dets.sort_by(|a, b| b.score.total_cmp(&a.score));
    let mut keep: Vec<Detection> = Vec::with_capacity(dets.len());
    for d in dets {
        if keep
            .iter()
            .all(|k| k.class != d.class || k.bbox.iou(&d.bbox) <= iou)
        {
            keep.push(d);
        }
    }
    keep
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

    #[test]
    fn decodes_a_known_cell() {
        // One cell at grid (2, 3), stride 8; box offset (0.5, 0.5), size exp(0)*8 = 8 px.
        let grid = vec![(0.0, 0.0, 8.0), (2.0, 3.0, 8.0)];
        let mut out = vec![0.0f32; 2 * 7];
        out[7..].copy_from_slice(&[0.5, 0.5, 0.0, 0.0, 0.9, 0.1, 0.8]);
        let mut dets = Vec::new();
        decode_yolox(&out, &grid, 2, 0.5, &|_| Some(0.3), &mut dets);
        assert_eq!(dets.len(), 1);
        let d = &dets[0];
        assert_eq!(d.class, 1);
        assert!((d.score - 0.72).abs() < 1e-6);
        // centre (2.5*8, 3.5*8) = (20, 28), 8x8, divided by ratio 0.5.
        assert_eq!(d.bbox, BBox::new(32.0, 48.0, 48.0, 64.0));
    }

    #[test]
    fn skipped_classes_and_low_scores_are_dropped() {
        let grid = vec![(0.0, 0.0, 8.0)];
        let out = [0.0, 0.0, 0.0, 0.0, 0.9, 0.9, 0.1];
        let mut dets = Vec::new();
        decode_yolox(&out, &grid, 2, 1.0, &|c| (c == 1).then_some(0.3), &mut dets);
        assert!(dets.is_empty(), "best class 0 is not wanted");
        decode_yolox(&out, &grid, 2, 1.0, &|_| Some(0.95), &mut dets);
        assert!(dets.is_empty(), "below threshold");
    }

    #[test]
    fn nms_keeps_the_best_of_each_class() {
        let d = |x: f32, score: f32, class: u16| Detection {
            bbox: BBox::new(x, 0.0, x + 10.0, 10.0),
            score,
            class,
        };
        let kept = nms(
            vec![
                d(0.0, 0.8, 0),
                d(1.0, 0.9, 0),
                d(1.0, 0.7, 1),
                d(50.0, 0.5, 0),
            ],
            0.45,
        );
        assert_eq!(kept, vec![d(1.0, 0.9, 0), d(1.0, 0.7, 1), d(50.0, 0.5, 0)]);
    }

    proptest! {
        #[test]
        fn nms_output_has_no_same_class_overlap(
            boxes in proptest::collection::vec((0f32..300.0, 0f32..300.0, 5f32..80.0, 0.1f32..1.0, 0u16..3), 0..40)
        ) {
            let dets: Vec<Detection> = boxes
                .iter()
                .map(|(x, y, s, score, class)| Detection { bbox: BBox::new(*x, *y, x + s, y + s), score: *score, class: *class })
                .collect();
            let kept = nms(dets.clone(), 0.45);
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
