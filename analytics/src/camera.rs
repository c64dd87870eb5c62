//! The analysis loop of one camera: frames in, detection on the shared service, boxes back to
//! full-resolution pixels, tracking and rules. `pantau run` and `pantau replay` both use it, so
//! a replay analyses exactly like a live camera.

use std::time::Instant;

use pantau_ingest::{Frame, FrameReceiver};

use crate::detect::onnx::DetectError;
use crate::detect::service::InferenceService;
use crate::detect::{DetectTimings, Detection, ImageRef};
use crate::geometry::BBox;
use crate::scene::{Scene, SceneUpdate};
use crate::track::Appearance;

/// Everything known about one analysed frame.
#[derive(Debug)]
pub struct Analysed<'a> {
    pub frame: &'a Frame,
    /// Detections in full-resolution pixels.
    pub detections: &'a [Detection],
    pub update: &'a SceneUpdate,
    pub scene: &'a Scene,
    pub timings: DetectTimings,
    /// Time spent waiting for the next decoded frame, ms.
    pub decode_wait_ms: f64,
    /// Time waiting for the shared detector (other cameras ahead), ms.
    pub queued_ms: f64,
}

/// Runs until the frames end (camera removed, file finished) or `on_frame` returns an error.
pub async fn analyse<E: From<DetectError>>(
    mut frames: FrameReceiver,
    service: InferenceService,
    mut scene: Scene,
    mut on_frame: impl FnMut(Analysed<'_>) -> Result<(), E>,
) -> Result<Scene, E> {
    loop {
        let waited = Instant::now();
        let Some(frame) = frames.recv().await else {
            return Ok(scene);
        };
        let decode_wait_ms = waited.elapsed().as_secs_f64() * 1000.0;
        let sx = frame.source_width as f32 / frame.width.max(1) as f32;
        let sy = frame.source_height as f32 / frame.height.max(1) as f32;
        let detected = service.detect(frame).await?;
        let detections: Vec<Detection> = detected
            .detections
            .iter()
            .map(|d| Detection {
                bbox: BBox::new(
                    d.bbox.x1 * sx,
                    d.bbox.y1 * sy,
                    d.bbox.x2 * sx,
                    d.bbox.y2 * sy,
                ),
                ..d.clone()
            })
            .collect();
        // Colours of each box on the analysed image, so the tracker can tell people apart.
        let f = &detected.frame;
        let image = ImageRef::from(f);
        let looks: Vec<Option<Appearance>> = detected
            .detections
            .iter()
            .map(|d| Appearance::of(image, &d.bbox))
            .collect();
        scene.set_frame_size(f.source_width, f.source_height);
        let update = scene.update(&detections, &looks, f.capture_time);
        on_frame(Analysed {
            frame: &detected.frame,
            detections: &detections,
            update: &update,
            scene: &scene,
            timings: detected.timings,
            decode_wait_ms,
            queued_ms: detected.queued_ms,
        })?;
    }
}
