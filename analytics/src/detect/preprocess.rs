//! Letterboxing into a reused canvas with OpenCV, then HWC bytes to the planar float tensor the
//! model wants, into a reused buffer. No allocation per frame once sizes are stable.
//!
//! Ingest normally hands over frames already scaled to fit the model's input (one resize, in
//! GStreamer's conversion), so the resize here is skipped and the pixels are copied as they
//! are. The padding's floats are written once per input size: each frame only converts the
//! rows of the picture itself.

use opencv::core::{Mat, Rect, Scalar, Size, CV_8UC3};
use opencv::imgproc;
use opencv::prelude::*;

use super::model::PixelOrder;
use super::ImageRef;

#[derive(Debug)]
pub struct Letterbox {
    width: i32,
    height: i32,
    pad: u8,
    canvas: Mat,
    /// Contiguous copy for images whose rows are padded.
    packed: Vec<u8>,
    /// Input size, pixel order and scale the tensor's padding was written for.
    last_input: Option<(u32, u32, PixelOrder, u32)>,
}

impl Letterbox {
    pub fn new(width: u32, height: u32, pad: u8) -> opencv::Result<Self> {
        let canvas = Mat::new_rows_cols_with_default(
            height as i32,
            width as i32,
            CV_8UC3,
            Scalar::all(f64::from(pad)),
        )?;
        Ok(Self {
            width: width as i32,
            height: height as i32,
            pad,
            canvas,
            packed: Vec::new(),
            last_input: None,
        })
    }

    /// Scale factor from the image to the canvas: `min(W / w, H / h)`.
    pub fn ratio(&self, width: u32, height: u32) -> f32 {
        (self.width as f32 / width as f32).min(self.height as f32 / height as f32)
    }

    /// Letterboxes `img` (BGR) into the canvas and writes the planar tensor into `out`
    /// (`3 * H * W` floats). Returns the ratio to divide model coordinates by.
    pub fn run(
        &mut self,
        img: ImageRef<'_>,
        order: PixelOrder,
        scale: f32,
        out: &mut Vec<f32>,
    ) -> opencv::Result<f32> {
        let r = self.ratio(img.width, img.height);
        let nw = ((img.width as f32 * r).round() as i32).clamp(1, self.width);
        let nh = ((img.height as f32 * r).round() as i32).clamp(1, self.height);
        let plane = (self.width * self.height) as usize;
        let key = (img.width, img.height, order, scale.to_bits());
        if self.last_input != Some(key) || out.len() != 3 * plane {
            // A new input size: the padding of the canvas and of the tensor, once.
            self.canvas
                .set_to(&Scalar::all(f64::from(self.pad)), &opencv::core::no_array())?;
            out.clear();
            out.resize(3 * plane, f32::from(self.pad) * scale);
            self.last_input = Some(key);
        }
        let row = img.width as usize * 3;
        let bytes: &[u8] = if img.stride == row {
            &img.data[..row * img.height as usize]
        } else {
            self.packed.clear();
            for y in 0..img.height as usize {
                self.packed
                    .extend_from_slice(&img.data[y * img.stride..y * img.stride + row]);
            }
            &self.packed
        };
        let (c0, c2) = match order {
            PixelOrder::Bgr => (0, 2),
            PixelOrder::Rgb => (2, 0),
        };
        let (p0, rest) = out.split_at_mut(plane);
        let (p1, p2) = rest.split_at_mut(plane);
        let canvas_row = self.width as usize;
        let (nw, nh) = (nw as usize, nh as usize);
        // The picture's rows only: the padding's floats stay as written for this size.
        let mut convert = |data: &[u8], src_row: usize| {
            for y in 0..nh {
                let line = &data[y * src_row..y * src_row + nw * 3];
                let at = y * canvas_row;
                for (x, px) in line.chunks_exact(3).enumerate() {
                    p0[at + x] = f32::from(px[c0]) * scale;
                    p1[at + x] = f32::from(px[1]) * scale;
                    p2[at + x] = f32::from(px[c2]) * scale;
                }
            }
        };
        if nw as u32 == img.width && nh as u32 == img.height {
            // Already the model's size (ingest scaled it): no resize, no copy.
            convert(bytes, row);
        } else {
            let flat = Mat::new_rows_cols_with_data(img.height as i32, row as i32, bytes)?;
            let src = flat.reshape(3, img.height as i32)?;
            {
                let mut dst = self.canvas.roi_mut(Rect::new(0, 0, nw as i32, nh as i32))?;
                imgproc::resize(
                    &src,
                    &mut dst,
                    Size::new(nw as i32, nh as i32),
                    0.0,
                    0.0,
                    imgproc::INTER_LINEAR,
                )?;
            }
            convert(self.canvas.data_bytes()?, canvas_row * 3);
        }
        Ok(r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn letterbox_puts_the_image_top_left_and_pads() {
        // 8x4 image, all (10, 20, 30) BGR, into a 4x4 canvas: scaled to 4x2 at the top.
        let data = [10u8, 20, 30].repeat(8 * 4);
        let img = ImageRef {
            data: &data,
            width: 8,
            height: 4,
            stride: 24,
        };
        let mut lb = Letterbox::new(4, 4, 114).expect("canvas");
        let mut out = Vec::new();
        let r = lb.run(img, PixelOrder::Bgr, 1.0, &mut out).expect("runs");
        assert_eq!(r, 0.5);
        assert_eq!(out.len(), 48);
        // Plane 0 (B): first two rows 10, last two rows padding.
        assert_eq!(&out[0..8], &[10.0; 8]);
        assert_eq!(&out[8..16], &[114.0; 8]);
        // Plane 2 (R) = 30; RGB order swaps planes 0 and 2.
        assert_eq!(out[32], 30.0);
        lb.run(img, PixelOrder::Rgb, 1.0, &mut out).expect("runs");
        assert_eq!(out[0], 30.0);
    }

    #[test]
    fn a_frame_of_the_model_size_is_copied_and_padding_survives_new_frames() {
        // 4x2 image into a 4x4 canvas: no resize, rows 2-3 are padding.
        let a = [1u8, 2, 3].repeat(4 * 2);
        let b = [7u8, 8, 9].repeat(4 * 2);
        let img = |data: &'static [u8]| ImageRef {
            data,
            width: 4,
            height: 2,
            stride: 12,
        };
        let a: &'static [u8] = Box::leak(a.into_boxed_slice());
        let b: &'static [u8] = Box::leak(b.into_boxed_slice());
        let mut lb = Letterbox::new(4, 4, 114).expect("canvas");
        let mut out = Vec::new();
        assert_eq!(
            lb.run(img(a), PixelOrder::Bgr, 1.0, &mut out)
                .expect("runs"),
            1.0
        );
        assert_eq!(&out[0..8], &[1.0; 8]);
        assert_eq!(&out[8..16], &[114.0; 8]);
        lb.run(img(b), PixelOrder::Bgr, 0.5, &mut out)
            .expect("runs");
        assert_eq!(&out[0..8], &[3.5; 8], "scaled by the new scale");
        assert_eq!(
            &out[8..16],
            &[57.0; 8],
            "padding rewritten for the new scale"
        );
        lb.run(img(a), PixelOrder::Bgr, 0.5, &mut out)
            .expect("runs");
        assert_eq!(&out[0..8], &[0.5; 8]);
        assert_eq!(&out[40..48], &[57.0; 8], "padding of plane 2 unchanged");
        assert_eq!(out[32], 1.5);
    }

    #[test]
    fn padded_rows_are_handled() {
        // 2x2 image with 8-byte rows (2 padding bytes).
        let data = [1u8, 2, 3, 1, 2, 3, 0, 0, 1, 2, 3, 1, 2, 3, 0, 0];
        let img = ImageRef {
            data: &data,
            width: 2,
            height: 2,
            stride: 8,
        };
        let mut lb = Letterbox::new(2, 2, 0).expect("canvas");
        let mut out = Vec::new();
        lb.run(img, PixelOrder::Bgr, 1.0, &mut out).expect("runs");
        assert_eq!(&out[0..4], &[1.0; 4]);
        assert_eq!(&out[8..12], &[3.0; 4]);
    }
}
