//! A cheap appearance cue for the tracker: colour histograms of the upper and lower part of a
//! box (for a person, clothes above and below the waist). Two people who pass each other, or
//! one who is found again after an occlusion, are told apart by what they wear when motion
//! alone cannot. About 1,000 sampled pixels a box, no model, well under a millisecond a frame.

use crate::detect::ImageRef;
use crate::geometry::BBox;

/// Bins per colour channel (of 256 levels).
const LEVELS: usize = 8;
const BINS: usize = LEVELS * LEVELS * LEVELS;
/// Pixels sampled per stripe, along each axis at most.
const SAMPLES: usize = 24;

/// Normalised colour histograms of a box's upper and lower stripe, kept as square roots of
/// the bin shares so that comparing two is one dot product.
#[derive(Debug, Clone, PartialEq)]
pub struct Appearance {
    roots: [[f32; BINS]; 2],
}

impl Appearance {
    /// Describes the part of `img` inside `bbox` (pixels of `img`). The central part of the box
    /// is used: its edges are mostly background.
    pub fn of(img: ImageRef<'_>, bbox: &BBox) -> Option<Appearance> {
        let (w, h) = (img.width as f32, img.height as f32);
        let x1 = (bbox.x1 + 0.2 * bbox.width()).clamp(0.0, w - 1.0);
        let x2 = (bbox.x2 - 0.2 * bbox.width()).clamp(0.0, w - 1.0);
        let y_top = (bbox.y1 + 0.1 * bbox.height()).clamp(0.0, h - 1.0);
        let y_mid = (bbox.y1 + 0.5 * bbox.height()).clamp(0.0, h - 1.0);
        let y_bottom = (bbox.y1 + 0.9 * bbox.height()).clamp(0.0, h - 1.0);
        if x2 - x1 < 2.0 || y_bottom - y_top < 4.0 {
            return None;
        }
        let mut stripes = [[0f32; BINS]; 2];
        for (stripe, (ya, yb)) in stripes.iter_mut().zip([(y_top, y_mid), (y_mid, y_bottom)]) {
            let mut n = 0f32;
            for sy in 0..SAMPLES {
                let y = (ya + (yb - ya) * (sy as f32 + 0.5) / SAMPLES as f32) as usize;
                let row = y * img.stride;
                for sx in 0..SAMPLES {
                    let x = (x1 + (x2 - x1) * (sx as f32 + 0.5) / SAMPLES as f32) as usize;
                    let Some(px) = img.data.get(row + 3 * x..row + 3 * x + 3) else {
                        continue;
                    };
                    let bin = |v: u8| usize::from(v) * LEVELS / 256;
                    stripe[(bin(px[0]) * LEVELS + bin(px[1])) * LEVELS + bin(px[2])] += 1.0;
                    n += 1.0;
                }
            }
            if n == 0.0 {
                return None;
            }
            stripe.iter_mut().for_each(|v| *v = (*v / n).sqrt());
        }
        Some(Appearance { roots: stripes })
    }

    /// How alike two appearances are: the Bhattacharyya coefficient of the histograms, averaged
    /// over the stripes; 1 for identical colours, 0 for nothing in common.
    pub fn similarity(&self, other: &Appearance) -> f32 {
        self.roots
            .iter()
            .zip(&other.roots)
            .map(|(a, b)| a.iter().zip(b).map(|(p, q)| p * q).sum::<f32>())
            .sum::<f32>()
            / 2.0
    }

    /// Moves this appearance towards `new` by `weight` (a running average of the histograms
    /// over sightings).
    pub fn blend(&mut self, new: &Appearance, weight: f32) {
        for (a, b) in self.roots.iter_mut().zip(&new.roots) {
            for (p, q) in a.iter_mut().zip(b) {
                *p = ((1.0 - weight) * *p * *p + weight * q * q).sqrt();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 100x100 image: the top half `top`, the bottom half `bottom` (BGR).
    fn image(top: [u8; 3], bottom: [u8; 3]) -> Vec<u8> {
        (0..100 * 100)
            .flat_map(|i| if i < 50 * 100 { top } else { bottom })
            .collect()
    }

    fn describe(data: &[u8]) -> Appearance {
        let img = ImageRef {
            data,
            width: 100,
            height: 100,
            stride: 300,
        };
        Appearance::of(img, &BBox::new(20.0, 0.0, 80.0, 100.0)).expect("a box inside")
    }

    #[test]
    fn same_clothes_are_alike_and_different_clothes_are_not() {
        let red_over_blue = describe(&image([0, 0, 200], [200, 0, 0]));
        let again = describe(&image([10, 10, 210], [205, 20, 5]));
        let blue_over_red = describe(&image([200, 0, 0], [0, 0, 200]));
        assert!(red_over_blue.similarity(&again) > 0.99);
        assert!(red_over_blue.similarity(&blue_over_red) < 0.01);
        let mut blended = red_over_blue.clone();
        blended.blend(&blue_over_red, 0.5);
        let s = blended.similarity(&red_over_blue);
        assert!(s > 0.6 && s < 0.8, "{s}");
    }

    #[test]
    fn boxes_off_the_image_have_no_appearance() {
        let data = image([0, 0, 0], [0, 0, 0]);
        let img = ImageRef {
            data: &data,
            width: 100,
            height: 100,
            stride: 300,
        };
        assert!(Appearance::of(img, &BBox::new(200.0, 200.0, 260.0, 300.0)).is_none());
        assert!(Appearance::of(img, &BBox::new(10.0, 10.0, 11.0, 12.0)).is_none());
    }
}
