//! The analysis loop of one camera: frames in, detection on the shared service, boxes back to
//! full-resolution pixels, tracking and rules. `pantau run` and `pantau replay` both use it, so
//! a replay analyses exactly like a live camera.
//!
//! With a motion gate, a frame that did not change since the detector's last run keeps that
//! run's detections (and their looks) instead of running the detector again; the tracker and
//! rules still see every frame at its own capture time.

use std::collections::VecDeque;
use std::time::{Instant, SystemTime};

use pantau_ingest::{Frame, FrameReceiver};

use crate::detect::onnx::DetectError;
use crate::detect::service::{Detected, InferenceService};
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
    /// Time spent waiting for the next decoded frame with no detection in flight, ms.
    pub decode_wait_ms: f64,
    /// Time waiting for a detector worker (other frames ahead, this camera's too), ms.
    pub queued_ms: f64,
    /// The detector ran on this frame (false: the motion gate kept the last detections).
    pub inferred: bool,
    /// When analysis took the frame from its queue (decoded, scaled, converted).
    pub received_at: SystemTime,
    /// When the detector's answer came back; when it did not run, when the frames before it had
    /// their answers.
    pub detected_at: SystemTime,
}

/// Detections one camera may have in flight at once (never more than the service's workers).
/// Tracking needs the frames in order, detection does not: with two, the detector works on a
/// camera's next frame while this one is tracked, and a replay or a fast camera keeps both
/// workers busy. A second frame goes only to an idle worker, never into the queue behind other
/// cameras' frames: on a loaded node it stays in the camera's frame queue, where a newer frame
/// replaces it, so running ahead never makes an analysed frame older.
pub const MAX_IN_FLIGHT: usize = 2;

/// Frames one camera may have with a service of `workers` detectors.
pub fn frames_in_flight(workers: usize) -> usize {
    workers.clamp(1, MAX_IN_FLIGHT)
}

/// A frame on its way through analysis, in arrival order.
enum InFlight {
    /// Sent to the detector.
    Detecting {
        /// The answer and when it came back.
        task: tokio::task::JoinHandle<Result<(Detected, SystemTime), DetectError>>,
        received_at: SystemTime,
        decode_wait_ms: f64,
    },
    /// The motion gate kept the last detections.
    Unchanged {
        frame: Box<Frame>,
        received_at: SystemTime,
        decode_wait_ms: f64,
    },
}

/// Cancels the detections still in flight when analysis ends early (an error, or the task
/// that runs it is dropped).
struct Pipeline(VecDeque<InFlight>);

impl Drop for Pipeline {
    fn drop(&mut self) {
        for f in &self.0 {
            if let InFlight::Detecting { task, .. } = f {
                task.abort();
            }
        }
    }
}

/// Runs until the frames end (camera removed, file finished) or `on_frame` returns an error.
///
/// Up to [`MAX_IN_FLIGHT`] frames are detected at once (fewer when the service has fewer
/// workers, and only while a worker is idle); tracking, rules and `on_frame` see every frame in
/// capture order, each as soon as its detections are back.
pub async fn analyse<E: From<DetectError>>(
    mut frames: FrameReceiver,
    service: InferenceService,
    mut scene: Scene,
    mut motion: Option<MotionCheck>,
    mut on_frame: impl FnMut(Analysed<'_>) -> Result<(), E>,
) -> Result<Scene, E> {
    let depth = frames_in_flight(service.workers());
    // The detector's last answer, in full-resolution pixels, with the looks of its boxes.
    let mut last: (Vec<Detection>, Vec<Option<Appearance>>) = (Vec::new(), Vec::new());
    let mut pipeline = Pipeline(VecDeque::with_capacity(depth));
    let mut ended = false;
    loop {
        if pipeline.0.is_empty() && ended {
            return Ok(scene);
        }
        let (detecting, front_ready) = match pipeline.0.front() {
            Some(InFlight::Detecting { .. }) => (true, false),
            Some(InFlight::Unchanged { .. }) => (false, true),
            None => (false, false),
        };
        let idle = pipeline.0.is_empty();
        // A frame runs ahead only onto an idle worker (requests of every camera count).
        let spare = idle || service.load().sample().pending < service.workers() as u64;
        let room = !ended && pipeline.0.len() < depth && !front_ready && spare;
        let waited = Instant::now();
        tokio::select! {
            // The oldest frame first: its answer is what the tracker waits for.
            biased;
            answer = async {
                match pipeline.0.front_mut() {
                    Some(InFlight::Detecting { task, .. }) => task.await,
                    _ => unreachable!("polled only when the oldest frame is detecting"),
                }
            }, if detecting => {
                let Some(InFlight::Detecting { received_at, decode_wait_ms, .. }) =
                    pipeline.0.pop_front()
                else {
                    unreachable!("the oldest frame was detecting");
                };
                let (detected, detected_at) = answer
                    .map_err(|e| DetectError::Inference(format!("the detection task failed: {e}")))??;
                let frame = &detected.frame;
                let sx = frame.source_width as f32 / frame.width.max(1) as f32;
                let sy = frame.source_height as f32 / frame.height.max(1) as f32;
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
                // Colours of each box on the analysed image, so the tracker can tell people
                // apart.
                let image = ImageRef::from(frame);
                let looks = detected
                    .detections
                    .iter()
                    .map(|d| Appearance::of(image, &d.bbox))
                    .collect();
                last = (detections, looks);
                let Detected { frame, timings, queued_ms, .. } = detected;
                let at = Moment { received_at, detected_at, decode_wait_ms, timings, queued_ms };
                track(&mut scene, &frame, &last, at, true, &mut on_frame)?;
            }
            _ = std::future::ready(()), if front_ready => {
                let Some(InFlight::Unchanged { frame, received_at, decode_wait_ms }) =
                    pipeline.0.pop_front()
                else {
                    unreachable!("the oldest frame was unchanged");
                };
                let at = Moment {
                    received_at,
                    // Its turn came when the frames before it were answered.
                    detected_at: SystemTime::now(),
                    decode_wait_ms,
                    timings: DetectTimings::default(),
                    queued_ms: 0.0,
                };
                track(&mut scene, &frame, &last, at, false, &mut on_frame)?;
            }
            next = frames.recv(), if room => {
                let Some(frame) = next else {
                    ended = true;
                    continue;
                };
                // Waiting counts as decoding only when nothing else was in flight.
                let decode_wait_ms = if idle { waited.elapsed().as_secs_f64() * 1000.0 } else { 0.0 };
                let received_at = SystemTime::now();
                let needed = motion
                    .as_mut()
                    .is_none_or(|m| m.needs_detector(ImageRef::from(&frame), frame.capture_time));
                pipeline.0.push_back(if needed {
                    // Queued now (the service counts it at once), answered in the task.
                    let answer = service.detect(frame);
                    InFlight::Detecting {
                        task: tokio::spawn(async move {
                            answer.await.map(|d| (d, SystemTime::now()))
                        }),
                        received_at,
                        decode_wait_ms,
                    }
                } else {
                    InFlight::Unchanged { frame: Box::new(frame), received_at, decode_wait_ms }
                });
            }
        }
    }
}

/// When a frame reached each step, for [`Analysed`].
struct Moment {
    received_at: SystemTime,
    detected_at: SystemTime,
    decode_wait_ms: f64,
    timings: DetectTimings,
    queued_ms: f64,
}

/// Tracks `frame` with the detector's last answer and hands the result to `on_frame`.
fn track<E>(
    scene: &mut Scene,
    frame: &Frame,
    last: &(Vec<Detection>, Vec<Option<Appearance>>),
    at: Moment,
    inferred: bool,
    on_frame: &mut impl FnMut(Analysed<'_>) -> Result<(), E>,
) -> Result<(), E> {
    scene.set_frame_size(frame.source_width, frame.source_height);
    let update = scene.update(&last.0, &last.1, frame.capture_time);
    on_frame(Analysed {
        frame,
        detections: &last.0,
        update: &update,
        scene: &*scene,
        timings: at.timings,
        decode_wait_ms: at.decode_wait_ms,
        queued_ms: at.queued_ms,
        inferred,
        received_at: at.received_at,
        detected_at: at.detected_at,
    })
}
