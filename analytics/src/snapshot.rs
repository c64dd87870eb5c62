//! Event snapshots: the full-resolution frame with boxes, lines and zones drawn, as JPEG.

use opencv::core::{Mat, Vector};
use opencv::prelude::*;

use pantau_ingest::Frame;

use crate::draw::{draw_overlay, Overlay, Trails};
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
    render_overlay(
        bgr,
        width,
        height,
        &Overlay::of(scene, update),
        labels,
        quality,
    )
}

/// [`render`] with an owned [`Overlay`] (for drawing away from analysis).
pub fn render_overlay(
    bgr: &[u8],
    width: u32,
    height: u32,
    overlay: &Overlay,
    labels: &[String],
    quality: u8,
) -> opencv::Result<Vec<u8>> {
    encode(bgr, width, height, 1.0, overlay, labels, quality)
}

/// The same on the analysed (scaled) frame, for when the full-resolution frame is no longer
/// available (e.g. the camera is stopping while its last frames are analysed).
pub fn render_analysed(
    frame: &Frame,
    scene: &Scene,
    update: &SceneUpdate,
    labels: &[String],
    quality: u8,
) -> opencv::Result<Vec<u8>> {
    let (packed, width, height, scale) = packed_bgr(frame);
    encode(
        &packed,
        width,
        height,
        scale,
        &Overlay::of(scene, update),
        labels,
        quality,
    )
}

/// The analysed frame as packed BGR, with its size and its scale from full-resolution pixels.
pub fn packed_bgr(frame: &Frame) -> (Vec<u8>, u32, u32, f32) {
    let row = frame.width as usize * 3;
    let data = frame.data();
    let mut packed = Vec::with_capacity(row * frame.height as usize);
    for y in 0..frame.height as usize {
        let start = y * frame.stride;
        packed.extend_from_slice(&data[start..start + row]);
    }
    let scale = frame.width as f32 / frame.source_width.max(1) as f32;
    (packed, frame.width, frame.height, scale)
}

/// Packed BGR at `width` x `height` (the overlay's coordinates times `scale`) as JPEG.
pub fn encode(
    bgr: &[u8],
    width: u32,
    height: u32,
    scale: f32,
    overlay: &Overlay,
    labels: &[String],
    quality: u8,
) -> opencv::Result<Vec<u8>> {
    let flat = Mat::new_rows_cols_with_data(height as i32, (width * 3) as i32, bgr)?;
    let mut img = flat.reshape(3, height as i32)?.try_clone()?;
    draw_overlay(&mut img, scale, overlay, &Trails::default(), labels)?;
    let mut out = Vector::<u8>::new();
    let params =
        Vector::<i32>::from_slice(&[opencv::imgcodecs::IMWRITE_JPEG_QUALITY, i32::from(quality)]);
    opencv::imgcodecs::imencode(".jpg", &img, &mut out, &params)?;
    Ok(out.to_vec())
}
