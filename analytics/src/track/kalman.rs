//! Constant-velocity Kalman filter on (centre x, centre y, aspect ratio, height), as in SORT
//! and ByteTrack, but in *time*: velocities are per second and every prediction takes the real
//! gap since the last frame, so 5 fps, 25 fps and a stream that drops frames unevenly are all
//! one model.
//!
//! The noise levels are ByteTrack's (tuned for 30 fps) expressed per reference frame of
//! 1/30 s: process noise grows linearly with the gap (a random walk), so two predictions of
//! 0.1 s equal one of 0.2 s.

// Matrix code reads best with explicit indices.
#![allow(clippy::needless_range_loop)]

use crate::geometry::BBox;

type V8 = [f64; 8];
type M8 = [[f64; 8]; 8];
type M4 = [[f64; 4]; 4];

/// Position noise per reference frame, as a fraction of the box height.
const STD_POSITION: f64 = 1.0 / 20.0;
/// Velocity noise per reference frame, as a fraction of the box height per frame.
const STD_VELOCITY: f64 = 1.0 / 160.0;
/// The frame period ByteTrack's noise levels were tuned at.
const REFERENCE_DT: f64 = 1.0 / 30.0;

#[derive(Debug, Clone)]
pub struct Kalman {
    pub mean: V8,
    pub cov: M8,
}

fn to_xyah(b: &BBox) -> [f64; 4] {
    let w = f64::from(b.width()).max(1e-3);
    let h = f64::from(b.height()).max(1e-3);
    [
        f64::from(b.x1) + w / 2.0,
        f64::from(b.y1) + h / 2.0,
        w / h,
        h,
    ]
}

impl Kalman {
    /// A filter at `b`, standing still, with a wide velocity uncertainty.
    pub fn new(b: &BBox) -> Self {
        Self::moving(b, [0.0; 4], 10.0)
    }

    /// A filter at `b` moving at `velocity` (x, y, aspect, height per second), its velocity
    /// known to `velocity_spread` times the per-frame velocity noise.
    pub fn moving(b: &BBox, velocity: [f64; 4], velocity_spread: f64) -> Self {
        let z = to_xyah(b);
        let h = z[3];
        let v = velocity_spread * STD_VELOCITY * h / REFERENCE_DT;
        let std = [
            2.0 * STD_POSITION * h,
            2.0 * STD_POSITION * h,
            1e-2,
            2.0 * STD_POSITION * h,
            v,
            v,
            1e-5 / REFERENCE_DT,
            v,
        ];
        let mut cov = [[0.0; 8]; 8];
        for i in 0..8 {
            cov[i][i] = std[i] * std[i];
        }
        let mut mean = [0.0; 8];
        mean[..4].copy_from_slice(&z);
        mean[4..].copy_from_slice(&velocity);
        Self { mean, cov }
    }

    /// `dt` seconds ahead (at least 1 ms).
    pub fn predict(&mut self, dt: f64) {
        let dt = dt.max(1e-3);
        let h = self.mean[3];
        // Variance of a random walk grows with time: scale the per-frame variances by the
        // number of reference frames in the gap.
        let frames = dt / REFERENCE_DT;
        let pos = STD_POSITION * h;
        let vel = STD_VELOCITY * h / REFERENCE_DT;
        let var = [
            pos * pos,
            pos * pos,
            1e-4,
            pos * pos,
            vel * vel,
            vel * vel,
            (1e-5 / REFERENCE_DT).powi(2),
            vel * vel,
        ];
        for i in 0..4 {
            self.mean[i] += dt * self.mean[i + 4];
        }
        // P = F P F^T + Q with F = [[I, dt I], [0, I]].
        let p = self.cov;
        let mut fp = p;
        for i in 0..4 {
            for j in 0..8 {
                fp[i][j] = p[i][j] + dt * p[i + 4][j];
            }
        }
        let mut out = fp;
        for i in 0..8 {
            for j in 0..4 {
                out[i][j] = fp[i][j] + dt * fp[i][j + 4];
            }
        }
        for i in 0..8 {
            out[i][i] += var[i] * frames;
        }
        self.cov = out;
        // A box never shrinks to nothing on prediction alone.
        self.mean[3] = self.mean[3].max(1.0);
    }

    /// Corrects with a measured box.
    pub fn update(&mut self, b: &BBox) {
        let z = to_xyah(b);
        let h = self.mean[3];
        let r = [STD_POSITION * h, STD_POSITION * h, 1e-1, STD_POSITION * h];
        // S = H P H^T + R, H selects the first four state entries.
        let mut s: M4 = [[0.0; 4]; 4];
        for i in 0..4 {
            for j in 0..4 {
                s[i][j] = self.cov[i][j];
            }
            s[i][i] += r[i] * r[i];
        }
        let Some(s_inv) = invert4(&s) else {
            return;
        };
        // K = P H^T S^-1 (8x4).
        let mut k = [[0.0; 4]; 8];
        for i in 0..8 {
            for j in 0..4 {
                k[i][j] = (0..4).map(|m| self.cov[i][m] * s_inv[m][j]).sum();
            }
        }
        let innovation: Vec<f64> = (0..4).map(|i| z[i] - self.mean[i]).collect();
        for i in 0..8 {
            self.mean[i] += (0..4).map(|j| k[i][j] * innovation[j]).sum::<f64>();
        }
        // P = P - K H P
        let p = self.cov;
        for i in 0..8 {
            for j in 0..8 {
                self.cov[i][j] = p[i][j] - (0..4).map(|m| k[i][m] * p[m][j]).sum::<f64>();
            }
        }
    }

    /// Stops the box growing or shrinking (ByteTrack does this for tracks that lost their
    /// object: a height trend extrapolated over seconds makes absurd boxes).
    pub fn freeze_height(&mut self) {
        self.mean[7] = 0.0;
    }

    pub fn bbox(&self) -> BBox {
        let [cx, cy, a, h] = [self.mean[0], self.mean[1], self.mean[2], self.mean[3]];
        let w = a * h;
        BBox::new(
            (cx - w / 2.0) as f32,
            (cy - h / 2.0) as f32,
            (cx + w / 2.0) as f32,
            (cy + h / 2.0) as f32,
        )
    }

    /// Velocity of the box centre in pixels per second.
    pub fn velocity(&self) -> (f32, f32) {
        (self.mean[4] as f32, self.mean[5] as f32)
    }
}

fn invert4(m: &M4) -> Option<M4> {
    let mut a = *m;
    let mut inv = [[0.0; 4]; 4];
    for (i, row) in inv.iter_mut().enumerate() {
        row[i] = 1.0;
    }
    for col in 0..4 {
        let pivot = (col..4).max_by(|&x, &y| a[x][col].abs().total_cmp(&a[y][col].abs()))?;
        if a[pivot][col].abs() < 1e-12 {
            return None;
        }
        a.swap(col, pivot);
        inv.swap(col, pivot);
        let d = a[col][col];
        for j in 0..4 {
            a[col][j] /= d;
            inv[col][j] /= d;
        }
        for r in 0..4 {
            if r != col {
                let f = a[r][col];
                for j in 0..4 {
                    a[r][j] -= f * a[col][j];
                    inv[r][j] -= f * inv[col][j];
                }
            }
        }
    }
    Some(inv)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds a box moving `speed` px/s right at frame times `times`; returns the filter.
    fn follow(times: &[f64], speed: f32) -> Kalman {
        let at = |t: f64| {
            let x = speed * t as f32;
            BBox::new(x, 0.0, x + 20.0, 40.0)
        };
        let mut k = Kalman::new(&at(times[0]));
        for w in times.windows(2) {
            k.predict(w[1] - w[0]);
            k.update(&at(w[1]));
        }
        k
    }

    #[test]
    fn follows_constant_motion_in_pixels_per_second() {
        let times: Vec<f64> = (0..30).map(|i| f64::from(i) * 0.04).collect();
        let k = follow(&times, 125.0);
        let (vx, vy) = k.velocity();
        assert!((vx - 125.0).abs() < 8.0, "vx {vx}");
        assert!(vy.abs() < 5.0);
        let mut ahead = k.clone();
        ahead.predict(0.2);
        let b = ahead.bbox();
        let expected = 125.0 * (times[29] + 0.2) as f32;
        assert!(
            (b.x1 - expected).abs() < 3.0,
            "predicted x1 {} vs {expected}",
            b.x1
        );
        assert!((b.height() - 40.0).abs() < 1.0);
    }

    #[test]
    fn the_same_motion_at_5_and_25_fps_and_with_uneven_gaps_gives_the_same_velocity() {
        let at_25: Vec<f64> = (0..50).map(|i| f64::from(i) * 0.04).collect();
        let at_5: Vec<f64> = (0..10).map(|i| f64::from(i) * 0.2).collect();
        // Dropped frames: gaps of 0.04 to 0.36 s.
        let uneven = [
            0.0, 0.04, 0.2, 0.24, 0.6, 0.64, 0.68, 1.0, 1.12, 1.48, 1.52, 1.88, 2.0,
        ];
        for times in [&at_25[..], &at_5[..], &uneven[..]] {
            let (vx, _) = follow(times, 300.0).velocity();
            assert!(
                (vx - 300.0).abs() < 30.0,
                "vx {vx} for {} frames",
                times.len()
            );
        }
    }

    #[test]
    fn uncertainty_grows_with_the_gap_not_the_number_of_predictions() {
        let b = BBox::new(0.0, 0.0, 20.0, 40.0);
        let mut once = Kalman::new(&b);
        once.predict(0.4);
        let mut in_steps = Kalman::new(&b);
        for _ in 0..10 {
            in_steps.predict(0.04);
        }
        let (a, c) = (once.cov[0][0], in_steps.cov[0][0]);
        assert!((a - c).abs() / a < 0.05, "one step {a}, ten steps {c}");
        let mut longer = Kalman::new(&b);
        longer.predict(2.0);
        assert!(longer.cov[0][0] > 2.0 * a);
    }

    #[test]
    fn a_filter_started_moving_predicts_the_motion() {
        let mut k = Kalman::moving(
            &BBox::new(100.0, 0.0, 120.0, 40.0),
            [50.0, 0.0, 0.0, 0.0],
            2.0,
        );
        k.predict(0.2);
        assert!((k.bbox().x1 - 110.0).abs() < 1e-3);
    }

    #[test]
    fn inverse_of_identity_and_known_matrix() {
        let m = [
            [4.0, 0.0, 0.0, 0.0],
            [0.0, 2.0, 0.0, 0.0],
            [0.0, 0.0, 1.0, 0.0],
            [0.0, 0.0, 0.0, 0.5],
        ];
        let inv = invert4(&m).expect("invertible");
        assert_eq!(inv[0][0], 0.25);
        assert_eq!(inv[3][3], 2.0);
        assert!(invert4(&[[0.0; 4]; 4]).is_none());
    }
}
