//! One inference service for all cameras.
//!
//! A single worker thread owns the ONNX session (with its own intra-op threads), so N cameras
//! never mean N sessions fighting over the cores. Requests are served in arrival order and each
//! camera has at most one request in flight (it waits for its answer before sending the next
//! frame), so the queue is round-robin across cameras: a busy camera cannot starve a quiet one.

use std::sync::mpsc;
use std::thread::JoinHandle;

use pantau_ingest::Frame;
use tokio::sync::oneshot;

use super::onnx::{DetectError, Detector};
use super::{DetectTimings, Detection, ImageRef};

/// What one detection returns: the frame back (for drawing, snapshots), boxes in the
/// *analysis* frame's pixels, and the time spent.
#[derive(Debug)]
pub struct Detected {
    pub frame: Frame,
    pub detections: Vec<Detection>,
    pub timings: DetectTimings,
    /// Time the request waited for the worker, in ms (other cameras ahead of it).
    pub queued_ms: f64,
}

struct Job {
    frame: Frame,
    submitted: std::time::Instant,
    reply: oneshot::Sender<Result<Detected, DetectError>>,
}

/// Handle to the shared detector; cheap to clone, one per camera.
#[derive(Debug, Clone)]
pub struct InferenceService {
    jobs: mpsc::SyncSender<Job>,
    labels: std::sync::Arc<Vec<String>>,
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Job")
            .field("camera", &self.frame.camera_id)
            .finish()
    }
}

/// Keeps the worker thread; the service stops when every handle and this guard are dropped.
#[derive(Debug)]
pub struct ServiceGuard {
    thread: Option<JoinHandle<()>>,
}

impl Drop for ServiceGuard {
    fn drop(&mut self) {
        // The worker ends when all senders are gone; do not wait on it here, a handle may
        // still live in a task that is shutting down.
        self.thread.take();
    }
}

impl InferenceService {
    /// Starts the worker with a loaded detector.
    pub fn start(detector: Detector) -> (Self, ServiceGuard) {
        let labels = std::sync::Arc::new(detector.labels().to_vec());
        // Room for one request per camera of a large node; callers wait for answers anyway.
        let (tx, rx) = mpsc::sync_channel::<Job>(256);
        let thread = std::thread::Builder::new()
            .name("inference".into())
            .spawn(move || worker(detector, rx))
            .expect("the OS can start a thread");
        (
            Self { jobs: tx, labels },
            ServiceGuard {
                thread: Some(thread),
            },
        )
    }

    pub fn labels(&self) -> &[String] {
        &self.labels
    }

    /// Detects objects in `frame`.
    pub async fn detect(&self, frame: Frame) -> Result<Detected, DetectError> {
        let (reply, answer) = oneshot::channel();
        let job = Job {
            frame,
            submitted: std::time::Instant::now(),
            reply,
        };
        let stopped = || DetectError::Inference("the inference worker has stopped".into());
        match self.jobs.try_send(job) {
            Ok(()) => {}
            // A full queue means the worker is far behind: wait off the async threads.
            Err(mpsc::TrySendError::Full(job)) => {
                let jobs = self.jobs.clone();
                tokio::task::spawn_blocking(move || jobs.send(job).map_err(|_| ()))
                    .await
                    .map_err(|e| DetectError::Inference(e.to_string()))?
                    .map_err(|_| stopped())?;
            }
            Err(mpsc::TrySendError::Disconnected(_)) => return Err(stopped()),
        }
        answer
            .await
            .map_err(|_| DetectError::Inference("the inference worker has stopped".into()))?
    }
}

fn worker(mut detector: Detector, jobs: mpsc::Receiver<Job>) {
    while let Ok(job) = jobs.recv() {
        let queued_ms = job.submitted.elapsed().as_secs_f64() * 1000.0;
        let image = ImageRef::from(&job.frame);
        let answer = detector
            .detect(image)
            .map(|(detections, timings)| Detected {
                frame: job.frame,
                detections,
                timings,
                queued_ms,
            });
        let _ = job.reply.send(answer);
    }
}
