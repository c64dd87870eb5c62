//! Drawing what analysis saw onto a BGR frame (OpenCV): boxes with ids and classes, trails,
//! counting lines with their direction, zones and live counts. Used for annotated replays and
//! snapshots.

use std::collections::{HashMap, VecDeque};

use opencv::core::{Mat, MatTraitConst, Point as CvPoint, Rect, Scalar, Vector};
use opencv::imgproc;

use crate::geometry::Point;
use crate::rules::Direction;
use crate::scene::{Scene, SceneUpdate};

fn color(id: u64) -> Scalar {
    // Distinct, bright colours per id.
    let palette = [
        (255.0, 99.0, 71.0),
        (60.0, 179.0, 113.0),
        (30.0, 144.0, 255.0),
        (238.0, 130.0, 238.0),
        (255.0, 215.0, 0.0),
        (0.0, 206.0, 209.0),
        (255.0, 140.0, 0.0),
        (154.0, 205.0, 50.0),
    ];
    let (r, g, b) = palette[(id as usize) % palette.len()];
    Scalar::new(b, g, r, 0.0)
}

fn pt(p: Point, s: f32) -> CvPoint {
    CvPoint::new((p.x * s).round() as i32, (p.y * s).round() as i32)
}

/// Keeps recent anchor points per track for trails.
#[derive(Debug, Default)]
pub struct Trails {
    points: HashMap<u64, VecDeque<Point>>,
}

impl Trails {
    pub fn push(&mut self, update: &SceneUpdate) {
        let live: std::collections::HashSet<u64> = update.tracks.iter().map(|t| t.id).collect();
        self.points.retain(|id, _| live.contains(id));
        for t in update.tracks.iter().filter(|t| t.matched) {
            let trail = self.points.entry(t.id).or_default();
            if trail.len() == 30 {
                trail.pop_front();
            }
            trail.push_back(t.bbox.bottom_center());
        }
    }
}

/// Draws onto `img`, whose size is the full-resolution size times `scale`.
/// A lane as drawn: its polygon, the arrow of travel (tail, head) and its speed limit.
#[derive(Debug, Clone)]
pub struct LaneShape {
    pub name: String,
    pub polygon: Vec<Point>,
    pub arrow: [Point; 2],
    pub limit_kmh: Option<f64>,
}

/// What is drawn over a frame, owned, so drawing can happen away from analysis: the zones
/// (with how many objects are in each), the lines (with their totals) and the tracks.
#[derive(Debug, Clone, Default)]
pub struct Overlay {
    pub zones: Vec<(String, Vec<Point>, u64)>,
    pub lines: Vec<(String, Vec<Point>, u64, u64)>,
    pub lanes: Vec<LaneShape>,
    pub tracks: Vec<crate::track::TrackedObject>,
    /// Ground speeds of tracks, km/h (calibrated cameras).
    pub speeds: std::collections::HashMap<u64, f64>,
}

impl Overlay {
    /// The scene's geometry and figures after `update`.
    pub fn of(scene: &Scene, update: &SceneUpdate) -> Self {
        let total = |counts: &std::collections::BTreeMap<
            Direction,
            std::collections::BTreeMap<u16, u64>,
        >,
                     d: Direction| {
            counts.get(&d).map(|m| m.values().sum::<u64>()).unwrap_or(0)
        };
        Self {
            zones: scene
                .zones
                .iter()
                .map(|z| {
                    (
                        z.config.name.clone(),
                        z.polygon().to_vec(),
                        z.occupancy().values().sum(),
                    )
                })
                .collect(),
            lines: scene
                .lines
                .iter()
                .map(|l| {
                    (
                        l.name().to_string(),
                        l.points().to_vec(),
                        total(l.counts(), Direction::In),
                        total(l.counts(), Direction::Out),
                    )
                })
                .collect(),
            lanes: scene
                .traffic
                .iter()
                .flat_map(|r| r.lanes())
                .map(|(l, polygon)| {
                    let [a, b] = [l.direction[0], l.direction[1]];
                    LaneShape {
                        name: l.name.clone(),
                        polygon: polygon.to_vec(),
                        arrow: [Point::new(a[0], a[1]), Point::new(b[0], b[1])],
                        limit_kmh: l.speed_limit_kmh,
                    }
                })
                .collect(),
            speeds: update
                .tracks
                .iter()
                .filter_map(|t| Some((t.id, scene.traffic.as_ref()?.speed_kmh(t.id)?)))
                .collect(),
            tracks: update.tracks.clone(),
        }
    }
}

/// Draws the scene and tracks of one analysed frame (see [`draw_overlay`]).
pub fn draw(
    img: &mut Mat,
    scale: f32,
    scene: &Scene,
    update: &SceneUpdate,
    trails: &Trails,
    labels: &[String],
) -> opencv::Result<()> {
    draw_overlay(img, scale, &Overlay::of(scene, update), trails, labels)
}

/// Draws zones, lines (with an arrow to the "in" side and the totals), trails and boxes.
pub fn draw_overlay(
    img: &mut Mat,
    scale: f32,
    overlay: &Overlay,
    trails: &Trails,
    labels: &[String],
) -> opencv::Result<()> {
    for (name, polygon, occ) in &overlay.zones {
        let pts: Vector<CvPoint> = polygon.iter().map(|p| pt(*p, scale)).collect();
        let polys: Vector<Vector<CvPoint>> = std::iter::once(pts).collect();
        imgproc::polylines(
            img,
            &polys,
            true,
            Scalar::new(0.0, 200.0, 255.0, 0.0),
            2,
            imgproc::LINE_AA,
            0,
        )?;
        if let Some(p) = polygon.first() {
            label(
                img,
                &format!("{name}: {occ}"),
                pt(*p, scale),
                Scalar::new(0.0, 200.0, 255.0, 0.0),
            )?;
        }
    }
    for LaneShape {
        name,
        polygon,
        arrow: [tail, head],
        limit_kmh: limit,
    } in &overlay.lanes
    {
        let green = Scalar::new(80.0, 200.0, 80.0, 0.0);
        let pts: Vector<CvPoint> = polygon.iter().map(|p| pt(*p, scale)).collect();
        let polys: Vector<Vector<CvPoint>> = std::iter::once(pts).collect();
        imgproc::polylines(img, &polys, true, green, 1, imgproc::LINE_AA, 0)?;
        imgproc::arrowed_line(
            img,
            pt(*tail, scale),
            pt(*head, scale),
            green,
            2,
            imgproc::LINE_AA,
            0,
            0.05,
        )?;
        let text = match limit {
            Some(l) => format!("{name} ({l:.0} km/h)"),
            None => name.clone(),
        };
        // Kept inside the picture (at most 10 px a character).
        let at = pt(*tail, scale);
        let x = at.x.min(img.cols() - 10 * text.len() as i32).max(0);
        label(img, &text, CvPoint::new(x, at.y), green)?;
    }
    for (name, points, total_in, total_out) in &overlay.lines {
        let pts: Vec<CvPoint> = points.iter().map(|p| pt(*p, scale)).collect();
        for w in pts.windows(2) {
            imgproc::line(
                img,
                w[0],
                w[1],
                Scalar::new(0.0, 0.0, 255.0, 0.0),
                2,
                imgproc::LINE_AA,
                0,
            )?;
        }
        // Arrow from the first segment's middle towards its right-hand side: the "in" direction.
        if let [a, b, ..] = points.as_slice() {
            let (mx, my) = ((a.x + b.x) / 2.0, (a.y + b.y) / 2.0);
            let (dx, dy) = (b.x - a.x, b.y - a.y);
            let len = (dx * dx + dy * dy).sqrt().max(1.0);
            let tip = Point::new(mx - dy / len * 25.0, my + dx / len * 25.0);
            imgproc::arrowed_line(
                img,
                pt(Point::new(mx, my), scale),
                pt(tip, scale),
                Scalar::new(0.0, 0.0, 255.0, 0.0),
                2,
                imgproc::LINE_AA,
                0,
                0.3,
            )?;
        }
        if let Some(a) = pts.first() {
            label(
                img,
                &format!("{name}  in {total_in}  out {total_out}"),
                CvPoint::new(a.x, (a.y - 8).max(14)),
                Scalar::new(0.0, 0.0, 255.0, 0.0),
            )?;
        }
    }
    for (id, trail) in &trails.points {
        let pts: Vec<CvPoint> = trail.iter().map(|p| pt(*p, scale)).collect();
        for w in pts.windows(2) {
            imgproc::line(img, w[0], w[1], color(*id), 2, imgproc::LINE_AA, 0)?;
        }
    }
    for t in &overlay.tracks {
        let b = t.bbox.scaled(scale, scale);
        let rect = Rect::new(
            b.x1 as i32,
            b.y1 as i32,
            b.width().max(1.0) as i32,
            b.height().max(1.0) as i32,
        );
        let c = if t.matched {
            color(t.id)
        } else {
            Scalar::new(128.0, 128.0, 128.0, 0.0)
        };
        imgproc::rectangle(img, rect, c, 2, imgproc::LINE_AA, 0)?;
        let name = labels
            .get(t.class as usize)
            .map(String::as_str)
            .unwrap_or("?");
        let text = match overlay.speeds.get(&t.id) {
            Some(kmh) => format!("#{} {name} {kmh:.0} km/h", t.id),
            None => format!("#{} {name}", t.id),
        };
        label(img, &text, CvPoint::new(rect.x, (rect.y - 4).max(12)), c)?;
    }
    Ok(())
}

fn label(img: &mut Mat, text: &str, at: CvPoint, bg: Scalar) -> opencv::Result<()> {
    let mut baseline = 0;
    let size = imgproc::get_text_size(text, imgproc::FONT_HERSHEY_SIMPLEX, 0.45, 1, &mut baseline)?;
    imgproc::rectangle(
        img,
        Rect::new(
            at.x,
            at.y - size.height - 3,
            size.width + 4,
            size.height + 6,
        ),
        bg,
        imgproc::FILLED,
        imgproc::LINE_8,
        0,
    )?;
    imgproc::put_text(
        img,
        text,
        CvPoint::new(at.x + 2, at.y),
        imgproc::FONT_HERSHEY_SIMPLEX,
        0.45,
        Scalar::new(255.0, 255.0, 255.0, 0.0),
        1,
        imgproc::LINE_AA,
        false,
    )
}
