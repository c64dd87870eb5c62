//! The analysis loop of one camera: frames in, detection on the shared service, boxes back to
//! full-resolution pixels, tracking and rules. `pantau run` and `pantau replay` both use it, so
//! a replay analyses exactly like a live camera.
//!
//! With a motion gate, a frame that did not change since the detector's last run keeps that
//! run's detections (and their looks) instead of running the detector again; the tracker and
//! rules still see every frame at its own capture time.

use std::time::{Instant, SystemTime};

use pantau_ingest::{Frame, FrameReceiver};

use crate::detect::onnx::DetectError;
use crate::detect::service::InferenceService;
use crate::detect::{DetectTimings, Detection, ImageRef};
use crate::geometry::BBox;
use crate::motion::MotionCheck;
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
    /// The detector ran on this frame (false: the motion gate kept the last detections).
    pub inferred: bool,
    /// When analysis took the frame from its queue (decoded, scaled, converted).
    pub received_at: SystemTime,
    /// When the detector's answer came back (`received_at` when it did not run).
    pub detected_at: SystemTime,
}

/// Runs until the frames end (camera removed, file finished) or `on_frame` returns an error.
pub async fn analyse<E: From<DetectError>>(
    mut frames: FrameReceiver,
    service: InferenceService,
    mut scene: Scene,
    mut motion: Option<MotionCheck>,
    mut on_frame: impl FnMut(Analysed<'_>) -> Result<(), E>,
) -> Result<Scene, E> {
    // The detector's last answer, in full-resolution pixels, with the looks of its boxes.
    let mut last: (Vec<Detection>, Vec<Option<Appearance>>) = (Vec::new(), Vec::new());
    loop {
        let waited = Instant::now();
        let Some(frame) = frames.recv().await else {
            return Ok(scene);
        };
        let decode_wait_ms = waited.elapsed().as_secs_f64() * 1000.0;
        let received_at = SystemTime::now();
        let mut detected_at = received_at;
        let needed = motion
            .as_mut()
            .is_none_or(|m| m.needs_detector(ImageRef::from(&frame), frame.capture_time));
        let (frame, timings, queued_ms) = if needed {
            let sx = frame.source_width as f32 / frame.width.max(1) as f32;
            let sy = frame.source_height as f32 / frame.height.max(1) as f32;
            let detected = service.detect(frame).await?;
            detected_at = SystemTime::now();
            let detections = detected
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
            let image = ImageRef::from(&detected.frame);
            let looks = detected
                .detections
                .iter()
                .map(|d| Appearance::of(image, &d.bbox))
                .collect();
            last = (detections, looks);
            (detected.frame, detected.timings, detected.queued_ms)
        } else {
            (frame, DetectTimings::default(), 0.0)
        };
        scene.set_frame_size(frame.source_width, frame.source_height);
        let update = scene.update(&last.0, &last.1, frame.capture_time);
        on_frame(Analysed {
            frame: &frame,
            detections: &last.0,
            update: &update,
            scene: &scene,
            timings,
            decode_wait_ms,
            queued_ms,
            inferred: needed,
            received_at,
            detected_at,
        })?;
    }
}
