//! Screen geometry for scene rules. Coordinates are pixels of the camera's full-resolution
//! frame, x to the right and y down.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Point {
    pub x: f32,
    pub y: f32,
}

impl Point {
    pub const fn new(x: f32, y: f32) -> Self {
        Self { x, y }
    }
}

/// An axis-aligned box.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct BBox {
    pub x1: f32,
    pub y1: f32,
    pub x2: f32,
    pub y2: f32,
}

impl BBox {
    pub fn new(x1: f32, y1: f32, x2: f32, y2: f32) -> Self {
        Self { x1, y1, x2, y2 }
    }

    pub fn width(&self) -> f32 {
        (self.x2 - self.x1).max(0.0)
    }

    pub fn height(&self) -> f32 {
        (self.y2 - self.y1).max(0.0)
    }

    pub fn area(&self) -> f32 {
        self.width() * self.height()
    }

    /// Where a road user touches the ground: the stable point for lines and zones.
    pub fn bottom_center(&self) -> Point {
        Point::new((self.x1 + self.x2) / 2.0, self.y2)
    }

    pub fn center(&self) -> Point {
        Point::new((self.x1 + self.x2) / 2.0, (self.y1 + self.y2) / 2.0)
    }

    pub fn iou(&self, other: &BBox) -> f32 {
        let ix = (self.x2.min(other.x2) - self.x1.max(other.x1)).max(0.0);
        let iy = (self.y2.min(other.y2) - self.y1.max(other.y1)).max(0.0);
        let inter = ix * iy;
        let union = self.area() + other.area() - inter;
        if union <= 0.0 {
            0.0
        } else {
            inter / union
        }
    }

    pub fn scaled(&self, sx: f32, sy: f32) -> BBox {
        BBox::new(self.x1 * sx, self.y1 * sy, self.x2 * sx, self.y2 * sy)
    }
}

/// Signed side of `p` relative to the directed segment a->b, as a distance in pixels.
/// Positive is the right-hand side of a->b *as seen on the screen* (x right, y down): for a
/// segment pointing right, points below it are positive.
pub fn signed_distance(a: Point, b: Point, p: Point) -> f32 {
    let (dx, dy) = (b.x - a.x, b.y - a.y);
    let len = (dx * dx + dy * dy).sqrt();
    if len == 0.0 {
        return 0.0;
    }
    (dx * (p.y - a.y) - dy * (p.x - a.x)) / len
}

/// Position of the projection of `p` on segment a->b: 0 at a, 1 at b.
pub fn projection(a: Point, b: Point, p: Point) -> f32 {
    let (dx, dy) = (b.x - a.x, b.y - a.y);
    let len2 = dx * dx + dy * dy;
    if len2 == 0.0 {
        return 0.0;
    }
    ((p.x - a.x) * dx + (p.y - a.y) * dy) / len2
}

/// Distance from `p` to the segment a-b.
pub fn segment_distance(a: Point, b: Point, p: Point) -> f32 {
    let t = projection(a, b, p).clamp(0.0, 1.0);
    let q = Point::new(a.x + t * (b.x - a.x), a.y + t * (b.y - a.y));
    ((p.x - q.x).powi(2) + (p.y - q.y).powi(2)).sqrt()
}

/// Whether `p` lies inside `polygon` (even-odd rule).
pub fn polygon_contains(polygon: &[Point], p: Point) -> bool {
    let mut inside = false;
    let n = polygon.len();
    let mut j = n.wrapping_sub(1);
    for i in 0..n {
        let (a, b) = (polygon[i], polygon[j]);
        if (a.y > p.y) != (b.y > p.y) {
            let x = (b.x - a.x) * (p.y - a.y) / (b.y - a.y) + a.x;
            if p.x < x {
                inside = !inside;
            }
        }
        j = i;
    }
    inside
}

/// Distance from `p` to the polygon's outline.
pub fn polygon_edge_distance(polygon: &[Point], p: Point) -> f32 {
    let n = polygon.len();
    (0..n)
        .map(|i| segment_distance(polygon[i], polygon[(i + 1) % n], p))
        .fold(f32::INFINITY, f32::min)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn right_hand_side_on_screen_is_positive() {
        let (a, b) = (Point::new(0.0, 100.0), Point::new(200.0, 100.0)); // pointing right
        assert!(
            signed_distance(a, b, Point::new(50.0, 150.0)) > 0.0,
            "below = right-hand"
        );
        assert!(signed_distance(a, b, Point::new(50.0, 50.0)) < 0.0);
        assert_eq!(signed_distance(a, b, Point::new(50.0, 130.0)), 30.0);
    }

    #[test]
    fn iou_of_known_boxes() {
        let a = BBox::new(0.0, 0.0, 10.0, 10.0);
        assert_eq!(a.iou(&a), 1.0);
        assert_eq!(a.iou(&BBox::new(5.0, 0.0, 15.0, 10.0)), 50.0 / 150.0);
        assert_eq!(a.iou(&BBox::new(20.0, 20.0, 30.0, 30.0)), 0.0);
    }

    #[test]
    fn square_contains() {
        let sq = [
            Point::new(0.0, 0.0),
            Point::new(10.0, 0.0),
            Point::new(10.0, 10.0),
            Point::new(0.0, 10.0),
        ];
        assert!(polygon_contains(&sq, Point::new(5.0, 5.0)));
        assert!(!polygon_contains(&sq, Point::new(15.0, 5.0)));
        assert_eq!(polygon_edge_distance(&sq, Point::new(5.0, 2.0)), 2.0);
    }

    proptest! {
        #[test]
        fn iou_is_symmetric_and_bounded(
            a in (0f32..500.0, 0f32..500.0, 1f32..200.0, 1f32..200.0),
            b in (0f32..500.0, 0f32..500.0, 1f32..200.0, 1f32..200.0),
        ) {
            let a = BBox::new(a.0, a.1, a.0 + a.2, a.1 + a.3);
            let b = BBox::new(b.0, b.1, b.0 + b.2, b.1 + b.3);
            let (x, y) = (a.iou(&b), b.iou(&a));
            prop_assert!((x - y).abs() < 1e-5);
            prop_assert!((0.0..=1.0 + 1e-6).contains(&x));
        }

        #[test]
        fn swapping_the_segment_flips_the_side(
            ax in -500f32..500.0, ay in -500f32..500.0, bx in -500f32..500.0, by in -500f32..500.0,
            px in -500f32..500.0, py in -500f32..500.0,
        ) {
            let (a, b, p) = (Point::new(ax, ay), Point::new(bx, by), Point::new(px, py));
            let d1 = signed_distance(a, b, p);
            let d2 = signed_distance(b, a, p);
            prop_assert!((d1 + d2).abs() < 1e-2);
        }

        #[test]
        fn convex_polygon_contains_its_centroid(
            cx in -100f32..100.0, cy in -100f32..100.0, r in 1f32..100.0, n in 3usize..12
        ) {
            let poly: Vec<Point> = (0..n)
                .map(|i| {
                    let t = i as f32 / n as f32 * std::f32::consts::TAU;
                    Point::new(cx + r * t.cos(), cy + r * t.sin())
                })
                .collect();
            prop_assert!(polygon_contains(&poly, Point::new(cx, cy)));
            prop_assert!(!polygon_contains(&poly, Point::new(cx + 2.0 * r, cy)));
        }
    }
}
