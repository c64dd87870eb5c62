//! Constant-velocity Kalman filter on (centre x, centre y, aspect ratio, height), as in SORT
//! and ByteTrack. Time steps are frames of analysis.

// Matrix code reads best with explicit indices.
#![allow(clippy::needless_range_loop)]

use crate::geometry::BBox;

type V8 = [f64; 8];
type M8 = [[f64; 8]; 8];
type M4 = [[f64; 4]; 4];

const STD_POSITION: f64 = 1.0 / 20.0;
const STD_VELOCITY: f64 = 1.0 / 160.0;

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
    pub fn new(b: &BBox) -> Self {
        let z = to_xyah(b);
        let h = z[3];
        let std = [
            2.0 * STD_POSITION * h,
            2.0 * STD_POSITION * h,
            1e-2,
            2.0 * STD_POSITION * h,
            10.0 * STD_VELOCITY * h,
            10.0 * STD_VELOCITY * h,
            1e-5,
            10.0 * STD_VELOCITY * h,
        ];
        let mut cov = [[0.0; 8]; 8];
        for i in 0..8 {
            cov[i][i] = std[i] * std[i];
        }
        let mut mean = [0.0; 8];
        mean[..4].copy_from_slice(&z);
        Self { mean, cov }
    }

    /// One frame ahead.
    pub fn predict(&mut self) {
        let h = self.mean[3];
        let std = [
            STD_POSITION * h,
            STD_POSITION * h,
            1e-2,
            STD_POSITION * h,
            STD_VELOCITY * h,
            STD_VELOCITY * h,
            1e-5,
            STD_VELOCITY * h,
        ];
        for i in 0..4 {
            self.mean[i] += self.mean[i + 4];
        }
        // P = F P F^T + Q with F = [[I, I], [0, I]].
        let p = self.cov;
        let mut fp = p;
        for i in 0..4 {
            for j in 0..8 {
                fp[i][j] = p[i][j] + p[i + 4][j];
            }
        }
        let mut out = fp;
        for i in 0..8 {
            for j in 0..4 {
                out[i][j] = fp[i][j] + fp[i][j + 4];
            }
        }
        for i in 0..8 {
            out[i][i] += std[i] * std[i];
        }
        self.cov = out;
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

    /// Velocity of the box centre in pixels per frame.
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

    #[test]
    fn follows_constant_motion() {
        let mut k = Kalman::new(&BBox::new(0.0, 0.0, 20.0, 40.0));
        for step in 1..=20 {
            k.predict();
            let dx = 5.0 * step as f32;
            k.update(&BBox::new(dx, 0.0, dx + 20.0, 40.0));
        }
        let (vx, vy) = k.velocity();
        assert!((vx - 5.0).abs() < 0.3, "vx {vx}");
        assert!(vy.abs() < 0.3);
        k.predict();
        let b = k.bbox();
        assert!((b.x1 - 105.0).abs() < 2.0, "predicted x1 {}", b.x1);
        assert!((b.height() - 40.0).abs() < 1.0);
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
