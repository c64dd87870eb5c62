//! One inference service for all cameras.
//!
//! A few worker threads (`detector.workers`, one per core by default) each own an ONNX session
//! (with `detector.threads` intra-op threads, 1 by default), so N cameras never mean N sessions
//! fighting over the cores, and inferences run side by side instead of one inference being
//! split over threads that wait for each other. Requests are served in arrival order from one
//! queue, and a camera sends a second frame before its first is answered only while a worker
//! is idle (`camera::analyse`), so a busy camera has at most one request waiting behind the
//! others and cannot starve a quiet one.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
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
    input_size: (u32, u32),
    load: Arc<Load>,
    workers: usize,
}

/// How busy the worker is: what the node's fair degradation watches.
#[derive(Debug, Default)]
pub struct Load {
    /// Nanoseconds the worker spent detecting.
    busy_ns: AtomicU64,
    /// Detections done.
    runs: AtomicU64,
    /// Requests sent and not yet answered.
    pending: AtomicU64,
    /// Nanoseconds requests waited before the worker took them.
    waited_ns: AtomicU64,
}

/// The worker's totals at one moment; two of them give the load in between.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct LoadSample {
    pub busy_ns: u64,
    pub runs: u64,
    pub pending: u64,
    pub waited_ns: u64,
}

impl Load {
    pub fn sample(&self) -> LoadSample {
        LoadSample {
            busy_ns: self.busy_ns.load(Ordering::Relaxed),
            runs: self.runs.load(Ordering::Relaxed),
            pending: self.pending.load(Ordering::Relaxed),
            waited_ns: self.waited_ns.load(Ordering::Relaxed),
        }
    }
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Job")
            .field("camera", &self.frame.camera_id)
            .finish()
    }
}

/// Keeps the worker threads; the service stops when every handle and this guard are dropped.
#[derive(Debug)]
pub struct ServiceGuard {
    threads: Vec<JoinHandle<()>>,
}

impl Drop for ServiceGuard {
    fn drop(&mut self) {
        // The workers end when all senders are gone; do not wait on them here, a handle may
        // still live in a task that is shutting down.
        self.threads.clear();
    }
}

impl InferenceService {
    /// Starts one worker with a loaded detector.
    pub fn start(detector: Detector) -> (Self, ServiceGuard) {
        Self::start_pool(vec![detector])
    }

    /// Starts one worker per detector (copies of one model), all taking from one queue.
    ///
    /// # Panics
    /// When `detectors` is empty.
    pub fn start_pool(detectors: Vec<Detector>) -> (Self, ServiceGuard) {
        let first = detectors.first().expect("at least one detector");
        let labels = std::sync::Arc::new(first.labels().to_vec());
        let input_size = first.input_size();
        let load = Arc::new(Load::default());
        let workers = detectors.len();
        // Room for a request per camera of a large node; callers wait for answers anyway.
        let (tx, rx) = mpsc::sync_channel::<Job>(256);
        let rx = Arc::new(std::sync::Mutex::new(rx));
        let threads = detectors
            .into_iter()
            .enumerate()
            .map(|(i, detector)| {
                let (rx, load) = (rx.clone(), load.clone());
                std::thread::Builder::new()
                    .name(format!("inference-{i}"))
                    .spawn(move || worker(detector, &rx, &load))
                    .expect("the OS can start a thread")
            })
            .collect();
        (
            Self {
                jobs: tx,
                labels,
                input_size,
                load,
                workers,
            },
            ServiceGuard { threads },
        )
    }

    /// Inferences that run at once.
    pub fn workers(&self) -> usize {
        self.workers
    }

    pub fn labels(&self) -> &[String] {
        &self.labels
    }

    /// The model's input size (width, height).
    pub fn input_size(&self) -> (u32, u32) {
        self.input_size
    }

    /// How busy the worker is.
    pub fn load(&self) -> &Arc<Load> {
        &self.load
    }

    /// Detects objects in `frame`. The request is counted and queued when this is called (so
    /// [`Load::sample`]'s `pending` includes it at once); the future waits for the answer.
    pub fn detect(
        &self,
        frame: Frame,
    ) -> impl std::future::Future<Output = Result<Detected, DetectError>> + Send + 'static {
        let (reply, answer) = oneshot::channel();
        let job = Job {
            frame,
            submitted: std::time::Instant::now(),
            reply,
        };
        self.load.pending.fetch_add(1, Ordering::Relaxed);
        let answered = Answered(self.load.clone());
        let sent = self.jobs.try_send(job);
        let jobs = self.jobs.clone();
        async move {
            let _answered = answered;
            let stopped = || DetectError::Inference("the inference worker has stopped".into());
            match sent {
                Ok(()) => {}
                // A full queue means the worker is far behind: wait off the async threads.
                Err(mpsc::TrySendError::Full(job)) => {
                    tokio::task::spawn_blocking(move || jobs.send(job).map_err(|_| ()))
                        .await
                        .map_err(|e| DetectError::Inference(e.to_string()))?
                        .map_err(|_| stopped())?;
                }
                Err(mpsc::TrySendError::Disconnected(_)) => return Err(stopped()),
            }
            answer.await.map_err(|_| stopped())?
        }
    }
}

/// Counts a request as answered however `detect` ends (answer, error or cancellation).
struct Answered(Arc<Load>);

impl Drop for Answered {
    fn drop(&mut self) {
        self.0.pending.fetch_sub(1, Ordering::Relaxed);
    }
}

fn worker(mut detector: Detector, jobs: &std::sync::Mutex<mpsc::Receiver<Job>>, load: &Load) {
    loop {
        // One worker waits on the queue at a time; the others wait for the lock.
        let next = jobs.lock().map(|rx| rx.recv());
        let Ok(Ok(job)) = next else {
            return;
        };
        let waited = job.submitted.elapsed();
        let queued_ms = waited.as_secs_f64() * 1000.0;
        let started = std::time::Instant::now();
        let image = ImageRef::from(&job.frame);
        let answer = detector
            .detect(image)
            .map(|(detections, timings)| Detected {
                frame: job.frame,
                detections,
                timings,
                queued_ms,
            });
        load.busy_ns
            .fetch_add(started.elapsed().as_nanos() as u64, Ordering::Relaxed);
        load.waited_ns
            .fetch_add(waited.as_nanos() as u64, Ordering::Relaxed);
        load.runs.fetch_add(1, Ordering::Relaxed);
        let _ = job.reply.send(answer);
    }
}
