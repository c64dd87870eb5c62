//! Event snapshots: the full-resolution frame with boxes, lines and zones drawn, as JPEG.

use opencv::core::{Mat, Vector};
use opencv::prelude::*;

use crate::draw::{draw, Trails};
use crate::scene::{Scene, SceneUpdate};

/// Draws `update` and `scene` on packed BGR pixels (`width` x `height`, full resolution) and
/// encodes JPEG at `quality`.
pub fn render(
    bgr: &[u8],
    width: u32,
    height: u32,
    scene: &Scene,
    update: &SceneUpdate,
    labels: &[String],
    quality: u8,
) -> opencv::Result<Vec<u8>> {
    let flat = Mat::new_rows_cols_with_data(height as i32, (width * 3) as i32, bgr)?;
    let mut img = flat.reshape(3, height as i32)?.try_clone()?;
    draw(&mut img, 1.0, scene, update, &Trails::default(), labels)?;
    let mut out = Vector::<u8>::new();
    let params =
        Vector::<i32>::from_slice(&[opencv::imgcodecs::IMWRITE_JPEG_QUALITY, i32::from(quality)]);
    opencv::imgcodecs::imencode(".jpg", &img, &mut out, &params)?;
    Ok(out.to_vec())
}
