//! From image pixels to metres on the road: a homography fitted (with OpenCV) to a camera's
//! calibration points, so rules measure speeds, distances and areas on the ground.

use opencv::core::{Mat, MatTraitConst, DECOMP_SVD};
use pantau_config::traffic::{mat3_mul, normalise_points, CalibrationConfig};

use crate::geometry::Point;

/// The camera's view of a flat road.
#[derive(Debug, Clone, PartialEq)]
pub struct GroundPlane {
    /// Row-major 3x3, image -> ground.
    h: [f64; 9],
    /// How far (metres, root mean square) the calibration points land from where they should.
    pub residual_m: f64,
}

#[derive(Debug, thiserror::Error)]
pub enum CalibrationError {
    #[error("calibration needs four or more image points with their ground points")]
    TooFewPoints,
    #[error("the calibration points give no usable mapping (are three of them in a row?): {0}")]
    Degenerate(String),
}

impl GroundPlane {
    /// Fits the homography to every point pair (least squares over all of them, solved by
    /// OpenCV's SVD): exact for four points, the best fit for more.
    pub fn fit(c: &CalibrationConfig) -> Result<Self, CalibrationError> {
        let n = c.image.len();
        if n < 4 || c.ground.len() != n {
            return Err(CalibrationError::TooFewPoints);
        }
        // Normalise both point sets (Hartley): centred, mean distance sqrt(2).
        let (ti, image) = normalise_points(&c.image);
        let (tg, ground) = normalise_points(&c.ground);
        let mut rows = Vec::with_capacity(2 * n);
        let mut rhs = Vec::with_capacity(2 * n);
        for (p, q) in image.iter().zip(&ground) {
            let (x, y, u, v) = (p[0], p[1], q[0], q[1]);
            rows.push([x, y, 1.0, 0.0, 0.0, 0.0, -u * x, -u * y]);
            rhs.push(u);
            rows.push([0.0, 0.0, 0.0, x, y, 1.0, -v * x, -v * y]);
            rhs.push(v);
        }
        let fail = |e: opencv::Error| CalibrationError::Degenerate(e.message);
        let a = Mat::from_slice_2d(&rows).map_err(fail)?;
        let b = Mat::from_slice(&rhs).map_err(fail)?;
        let b = b.reshape(1, rhs.len() as i32).map_err(fail)?;
        let mut x = Mat::default();
        let solved = opencv::core::solve(&a, &b, &mut x, DECOMP_SVD).map_err(fail)?;
        if !solved {
            return Err(CalibrationError::Degenerate("no solution".into()));
        }
        let mut hn = [0.0; 9];
        for (i, h) in hn.iter_mut().take(8).enumerate() {
            *h = *x.at::<f64>(i as i32).map_err(fail)?;
        }
        hn[8] = 1.0;
        // Undo the normalisation: H = Tg^-1 * Hn * Ti.
        let h = mat3_mul(&mat3_mul(&inverse_similarity(&tg), &hn), &ti);
        if h.iter().any(|v| !v.is_finite()) || h[8].abs() < 1e-12 {
            return Err(CalibrationError::Degenerate("not finite".into()));
        }
        let h = h.map(|v| v / h[8]);
        let mut plane = Self { h, residual_m: 0.0 };
        let sq: f64 = c
            .image
            .iter()
            .zip(&c.ground)
            .map(|(p, g)| {
                let [u, v] = plane.to_ground_xy(p[0], p[1]);
                (u - g[0]).powi(2) + (v - g[1]).powi(2)
            })
            .sum();
        plane.residual_m = (sq / n as f64).sqrt();
        if !plane.residual_m.is_finite() {
            return Err(CalibrationError::Degenerate("the fit is not finite".into()));
        }
        Ok(plane)
    }

    fn to_ground_xy(&self, x: f64, y: f64) -> [f64; 2] {
        let h = &self.h;
        let w = h[6] * x + h[7] * y + h[8];
        [
            (h[0] * x + h[1] * y + h[2]) / w,
            (h[3] * x + h[4] * y + h[5]) / w,
        ]
    }

    /// Where an image point is on the ground, in metres. `None` beyond the horizon.
    pub fn to_ground(&self, p: Point) -> Option<[f64; 2]> {
        let (x, y) = (f64::from(p.x), f64::from(p.y));
        let h = &self.h;
        let w = h[6] * x + h[7] * y + h[8];
        (w > 1e-9).then(|| self.to_ground_xy(x, y))
    }

    /// Distance in metres between two image points on the road.
    pub fn distance(&self, a: Point, b: Point) -> Option<f64> {
        let (a, b) = (self.to_ground(a)?, self.to_ground(b)?);
        Some(((a[0] - b[0]).powi(2) + (a[1] - b[1]).powi(2)).sqrt())
    }

    /// Area in square metres of an image polygon on the road.
    pub fn area(&self, polygon: &[Point]) -> Option<f64> {
        let g: Option<Vec<[f64; 2]>> = polygon.iter().map(|p| self.to_ground(*p)).collect();
        let g = g?;
        let n = g.len();
        let twice: f64 = (0..n)
            .map(|i| {
                let (a, b) = (g[i], g[(i + 1) % n]);
                a[0] * b[1] - b[0] * a[1]
            })
            .sum();
        Some(twice.abs() / 2.0)
    }
}

fn inverse_similarity(t: &[f64; 9]) -> [f64; 9] {
    let s = t[0];
    [
        1.0 / s,
        0.0,
        -t[2] / s,
        0.0,
        1.0 / s,
        -t[5] / s,
        0.0,
        0.0,
        1.0,
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn issue_example() -> CalibrationConfig {
        CalibrationConfig {
            image: vec![
                [412.0, 300.0],
                [866.0, 300.0],
                [1010.0, 700.0],
                [260.0, 700.0],
            ],
            ground: vec![[0.0, 0.0], [7.0, 0.0], [7.0, 30.0], [0.0, 30.0]],
            latitude: None,
            longitude: None,
            heading_deg: None,
            fov_deg: 60.0,
        }
    }

    #[test]
    fn four_points_map_exactly() {
        let plane = GroundPlane::fit(&issue_example()).expect("fit");
        assert!(plane.residual_m < 1e-6, "{}", plane.residual_m);
        let g = plane.to_ground(Point::new(1010.0, 700.0)).expect("ground");
        assert!(
            (g[0] - 7.0).abs() < 1e-6 && (g[1] - 30.0).abs() < 1e-6,
            "{g:?}"
        );
        // The lane is 7 m wide at both ends although it looks narrower far away.
        let near = plane.distance(Point::new(260.0, 700.0), Point::new(1010.0, 700.0));
        let far = plane.distance(Point::new(412.0, 300.0), Point::new(866.0, 300.0));
        assert!((near.expect("near") - 7.0).abs() < 1e-6);
        assert!((far.expect("far") - 7.0).abs() < 1e-6);
        let area = plane
            .area(&[
                Point::new(412.0, 300.0),
                Point::new(866.0, 300.0),
                Point::new(1010.0, 700.0),
                Point::new(260.0, 700.0),
            ])
            .expect("area");
        assert!((area - 210.0).abs() < 1e-3, "{area}");
    }

    #[test]
    fn more_points_are_fitted_and_noise_stays_small() {
        let mut c = issue_example();
        // A fifth point consistent with the first four, a little off.
        let exact = GroundPlane::fit(&c).expect("fit");
        let mid = exact.to_ground(Point::new(636.0, 500.0)).expect("mid");
        c.image.push([636.0, 500.0]);
        c.ground.push([mid[0] + 0.05, mid[1] - 0.05]);
        let fitted = GroundPlane::fit(&c).expect("fit");
        assert!(fitted.residual_m < 0.1, "{}", fitted.residual_m);
    }

    #[test]
    fn points_in_a_row_are_refused() {
        let mut c = issue_example();
        c.image = vec![[0.0, 0.0], [10.0, 10.0], [20.0, 20.0], [30.0, 30.0]];
        assert!(
            GroundPlane::fit(&c).is_err() || {
                // Some solvers return a finite but meaningless fit: its residual shows it.
                GroundPlane::fit(&c)
                    .map(|p| p.residual_m > 0.5)
                    .unwrap_or(true)
            }
        );
    }
}
