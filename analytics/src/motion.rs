//! Motion gating: tells whether a frame differs from the last one the detector saw, on a small
//! grey picture (one cell per 8 x 8 pixels, half of each cell's pixels sampled), so a camera
//! watching an empty or standing scene does not run the detector on every frame.
//!
//! A frame needs the detector when at least [`MIN_CELLS`] cells changed by the threshold or
//! more, when the last detector run is older than the refresh time (tracks of objects standing
//! still stay alive, slow changes are caught), or when the picture's size changed. Otherwise
//! the last detections stand for the frame.

use std::time::{Duration, SystemTime};

use pantau_config::MotionGate;

use crate::detect::ImageRef;

/// Side of a cell in pixels of the analysis frame.
const CELL: usize = 8;
/// Cells that must change for a frame to count as moving: one cell can be noise.
pub const MIN_CELLS: usize = 2;

/// The small grey picture of the frame the detector saw last, and when.
#[derive(Debug)]
pub struct MotionCheck {
    gate: MotionGate,
    reference: Vec<u8>,
    size: (u32, u32),
    last_run: Option<SystemTime>,
    scratch: Vec<u8>,
    /// Frames the detector was skipped for, and all frames checked.
    pub skipped: u64,
    pub checked: u64,
}

impl MotionCheck {
    pub fn new(gate: MotionGate) -> Self {
        Self {
            gate,
            reference: Vec::new(),
            size: (0, 0),
            last_run: None,
            scratch: Vec::new(),
            skipped: 0,
            checked: 0,
        }
    }

    /// Whether `img`, captured at `at`, needs the detector. When it does, it becomes the
    /// reference the next frames are compared with.
    pub fn needs_detector(&mut self, img: ImageRef<'_>, at: SystemTime) -> bool {
        self.checked += 1;
        grey_cells(img, &mut self.scratch);
        let due = match self.last_run {
            None => true,
            // A clock that went back (reconnect) also refreshes.
            Some(last) => at
                .duration_since(last)
                .map_or(true, |d| d >= self.gate.refresh),
        };
        let run = due
            || self.size != (img.width, img.height)
            || changed_cells(&self.reference, &self.scratch, self.gate.threshold) >= MIN_CELLS;
        if run {
            std::mem::swap(&mut self.reference, &mut self.scratch);
            self.size = (img.width, img.height);
            self.last_run = Some(at);
        } else {
            self.skipped += 1;
        }
        run
    }

    /// The longest time between detector runs.
    pub fn refresh(&self) -> Duration {
        self.gate.refresh
    }
}

/// One grey level per cell: the mean of every other pixel of every other row in the cell.
fn grey_cells(img: ImageRef<'_>, out: &mut Vec<u8>) {
    let (w, h) = (img.width as usize, img.height as usize);
    let (cw, ch) = (w.div_ceil(CELL), h.div_ceil(CELL));
    out.clear();
    out.resize(cw * ch, 0);
    let mut sums = vec![0u32; cw];
    let mut counts = vec![0u32; cw];
    for cy in 0..ch {
        sums.iter_mut().for_each(|s| *s = 0);
        counts.iter_mut().for_each(|c| *c = 0);
        let rows = (cy * CELL..((cy + 1) * CELL).min(h)).step_by(2);
        for y in rows {
            let Some(row) = img.data.get(y * img.stride..y * img.stride + w * 3) else {
                continue;
            };
            for x in (0..w).step_by(2) {
                let px = &row[x * 3..x * 3 + 3];
                // Green counts twice, as in the usual luma weights, without a multiply.
                let grey = (u32::from(px[0]) + 2 * u32::from(px[1]) + u32::from(px[2])) / 4;
                sums[x / CELL] += grey;
                counts[x / CELL] += 1;
            }
        }
        for cx in 0..cw {
            out[cy * cw + cx] = (sums[cx] / counts[cx].max(1)) as u8;
        }
    }
}

/// Cells whose grey level differs by `threshold` or more.
fn changed_cells(a: &[u8], b: &[u8], threshold: u8) -> usize {
    if a.len() != b.len() {
        return usize::MAX;
    }
    a.iter()
        .zip(b)
        .filter(|(x, y)| x.abs_diff(**y) >= threshold)
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(w: u32, h: u32, paint: impl Fn(u32, u32) -> u8) -> Vec<u8> {
        let mut v = Vec::with_capacity((w * h * 3) as usize);
        for y in 0..h {
            for x in 0..w {
                let g = paint(x, y);
                v.extend_from_slice(&[g, g, g]);
            }
        }
        v
    }

    fn img(data: &[u8], w: u32, h: u32) -> ImageRef<'_> {
        ImageRef {
            data,
            width: w,
            height: h,
            stride: w as usize * 3,
        }
    }

    fn gate() -> MotionCheck {
        MotionCheck::new(MotionGate {
            refresh: Duration::from_secs(2),
            threshold: 8,
        })
    }

    #[test]
    fn a_still_picture_skips_the_detector_until_the_refresh() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000);
        let still = frame(64, 48, |x, y| (20 + (x * 3 + y * 5) % 180) as u8);
        // Sensor noise of +-3 levels on every pixel is not motion.
        let noisy = frame(64, 48, |x, y| {
            ((20 + (x * 3 + y * 5) % 180) as i32 + ((x + y) % 7) as i32 - 3) as u8
        });
        let mut g = gate();
        assert!(g.needs_detector(img(&still, 64, 48), t0), "the first frame");
        for i in 1..10 {
            let at = t0 + Duration::from_millis(200 * i);
            assert!(!g.needs_detector(img(&noisy, 64, 48), at), "frame {i}");
        }
        assert!(
            g.needs_detector(img(&noisy, 64, 48), t0 + Duration::from_secs(2)),
            "refreshed after 2 s"
        );
        assert_eq!(g.skipped, 9);
        assert_eq!(g.checked, 11);
    }

    #[test]
    fn a_small_moving_object_runs_the_detector() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000);
        let empty = frame(416, 234, |_, _| 90);
        // A 12 x 8 px object (a far pedestrian) appears.
        let with = frame(416, 234, |x, y| {
            if (200..212).contains(&x) && (100..108).contains(&y) {
                30
            } else {
                90
            }
        });
        let mut g = gate();
        assert!(g.needs_detector(img(&empty, 416, 234), t0));
        assert!(!g.needs_detector(img(&empty, 416, 234), t0 + Duration::from_millis(200)));
        assert!(g.needs_detector(img(&with, 416, 234), t0 + Duration::from_millis(400)));
        // It stays: the new reference has it, so the next frame is still.
        assert!(!g.needs_detector(img(&with, 416, 234), t0 + Duration::from_millis(600)));
    }

    #[test]
    fn a_new_size_or_a_clock_going_back_runs_the_detector() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000);
        let a = frame(64, 48, |_, _| 50);
        let b = frame(32, 24, |_, _| 50);
        let mut g = gate();
        assert!(g.needs_detector(img(&a, 64, 48), t0));
        assert!(g.needs_detector(img(&b, 32, 24), t0 + Duration::from_millis(200)));
        assert!(g.needs_detector(img(&b, 32, 24), t0 - Duration::from_secs(5)));
    }

    #[test]
    fn short_or_odd_buffers_do_not_panic() {
        let data = vec![0u8; 10];
        let mut g = gate();
        let at = SystemTime::UNIX_EPOCH;
        g.needs_detector(
            ImageRef {
                data: &data,
                width: 13,
                height: 9,
                stride: 39,
            },
            at,
        );
    }
}
