//! pantau ingest: camera streams in, decoded frames out.
//!
//! Each camera is a GStreamer pipeline ([`sources`] + the common tail in `pipeline`) run by
//! its own supervisor task (`supervisor`), which reconnects with back-off and reports a
//! [`CameraState`] with a [`Problem`]. Frames reach analysis through a small drop-oldest queue
//! ([`queue`]), each with its capture time and sequence number ([`Frame`]).
//!
//! [`Ingest`] owns the cameras and lets them be added and removed while running.

pub mod clock;
pub mod evidence;
pub mod frame;
mod pipeline;
pub mod queue;
pub mod serve;
mod sources;
pub mod status;
mod supervisor;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use gstreamer as gst;
use pantau_config::{CameraSettings, SourceSpec};
use tokio::sync::broadcast;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use clock::RateShare;
pub use evidence::{ClipError, EncodedClip, RingBudget, RingLimits};
pub use frame::{CaptureClock, Frame};
pub use queue::{FullPolicy, QueueReceiver};
pub use status::{CameraState, CameraStatus, Problem, StatusChange};

use pipeline::{lock, Shared};
use supervisor::Camera;

/// Frames of one camera, in order, newest kept when analysis falls behind.
pub type FrameReceiver = QueueReceiver<Frame>;

#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("GStreamer could not start: {0}; run `make setup` to install it")]
    GstInit(String),
    #[error("camera \"{0}\" already exists; remove it first or pick another id")]
    Duplicate(String),
    #[error("camera \"{0}\" does not exist")]
    Unknown(String),
    #[error("camera \"{0}\" has no decoded frame yet")]
    NoFrame(String),
    #[error("cannot encode a snapshot of camera \"{camera}\": {reason}")]
    Snapshot { camera: String, reason: String },
    #[error("no clip of camera \"{camera}\": {reason}")]
    Clip { camera: String, reason: ClipError },
}

/// Initialises GStreamer once per process.
pub fn init() -> Result<(), IngestError> {
    gst::init().map_err(|e| IngestError::GstInit(e.to_string()))
}

#[derive(Debug)]
struct Entry {
    camera: Arc<Camera>,
    cancel: CancellationToken,
    task: JoinHandle<()>,
    /// The newest frame's JPEG, with the frame it was made from: every request for the same
    /// frame gets it without encoding again, and requests that come together wait for one
    /// encoding.
    jpeg: Arc<tokio::sync::Mutex<Option<CachedJpeg>>>,
}

/// A frame and its JPEG.
type CachedJpeg = (gst::Sample, Vec<u8>);

/// All cameras of this node.
#[derive(Debug)]
pub struct Ingest {
    cameras: Mutex<BTreeMap<String, Entry>>,
    changes: broadcast::Sender<StatusChange>,
    jpeg_encodings: std::sync::atomic::AtomicU64,
    /// Every camera's analysis-rate factor (fair degradation).
    rate: Arc<RateShare>,
    /// The detector's input size, the analysis frame's box by default.
    fit: Mutex<Option<(u32, u32)>>,
    /// Live cameras added so far: the next one's analysis phase.
    live_added: std::sync::atomic::AtomicU64,
    /// What each camera keeps of its encoded stream for evidence, and the memory all share.
    evidence: Mutex<Option<(RingLimits, Arc<RingBudget>)>>,
}

impl Ingest {
    pub fn new() -> Result<Self, IngestError> {
        init()?;
        let (changes, _) = broadcast::channel(256);
        Ok(Self {
            cameras: Mutex::new(BTreeMap::new()),
            changes,
            jpeg_encodings: Default::default(),
            rate: Arc::default(),
            fit: Mutex::new(None),
            live_added: Default::default(),
            evidence: Mutex::new(None),
        })
    }

    /// Cameras added from now on keep their encoded stream (H.264/H.265) for evidence clips,
    /// each within `limits`, all within `budget`.
    pub fn keep_evidence(&self, limits: RingLimits, budget: Arc<RingBudget>) {
        *lock(&self.evidence) = Some((limits, budget));
    }

    /// The ring of camera `id` (`Ok(None)`: it keeps none).
    fn ring(&self, id: &str) -> Result<Option<Arc<Mutex<evidence::PacketRing>>>, IngestError> {
        lock(&self.cameras)
            .get(id)
            .map(|e| e.camera.shared.ring.clone())
            .ok_or_else(|| IngestError::Unknown(id.to_string()))
    }

    /// The encoded video of camera `id` from the keyframe at or before `from` to `to` (capture
    /// times), as the camera sent it. Cheap: the packets are shared, not copied.
    pub fn clip(
        &self,
        id: &str,
        from: std::time::SystemTime,
        to: std::time::SystemTime,
    ) -> Result<EncodedClip, IngestError> {
        let fail = |reason| IngestError::Clip {
            camera: id.to_string(),
            reason,
        };
        match self.ring(id)? {
            Some(ring) => lock(&ring).clip(from, to).map_err(fail),
            None => Err(fail(ClipError::Nothing)),
        }
    }

    /// Capture time of the newest encoded packet camera `id` kept: "now" on the camera's own
    /// clock, which may differ from this server's by up to `ingest.max_clock_skew_s`. `None`
    /// when it keeps no video a clip can be cut from (evidence off, a stream that is not
    /// H.264/H.265, no keyframe yet, or no such camera).
    pub fn evidence_now(&self, id: &str) -> Option<std::time::SystemTime> {
        self.ring(id).ok().flatten().and_then(|r| lock(&r).newest())
    }

    /// Bytes of encoded video all cameras keep for evidence now.
    pub fn evidence_bytes(&self) -> usize {
        lock(&self.evidence).as_ref().map_or(0, |(_, b)| b.used())
    }

    /// Cameras added from now on that set no `analysis_width` get frames that fit in
    /// `width` x `height` (the detector's input): the decoded frame is scaled once, straight
    /// to the size the model takes.
    pub fn set_analysis_fit(&self, width: u32, height: u32) {
        *lock(&self.fit) = Some((width, height));
    }

    /// The analysis-rate factor every camera shares (fair degradation).
    pub fn rate(&self) -> &Arc<RateShare> {
        &self.rate
    }

    /// Starts a camera and returns its frames. Live sources drop the oldest frame when
    /// analysis falls behind; files decoded as fast as possible (`realtime = false`) wait for
    /// analysis instead, so a replay sees every frame. Must be called inside a Tokio runtime.
    pub fn add(&self, settings: CameraSettings) -> Result<FrameReceiver, IngestError> {
        let mut cameras = lock(&self.cameras);
        if cameras.contains_key(&settings.id) {
            return Err(IngestError::Duplicate(settings.id));
        }
        let policy = match settings.source {
            SourceSpec::File {
                realtime: false, ..
            } => FullPolicy::Block,
            _ => FullPolicy::DropOldest,
        };
        let (tx, rx) = queue::bounded(settings.queue_capacity, policy);
        // Files decoded as fast as possible follow their own timeline; live sources are spread.
        let phase = (policy == FullPolicy::DropOldest).then(|| {
            clock::phase_of(
                self.live_added
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            )
        });
        let shared = Arc::new(
            // Only live sources keep evidence: a file decoded as fast as possible runs ahead
            // of the wall clock that cuts clips.
            Shared::new(&settings.id, tx, self.rate.clone(), *lock(&self.fit), phase).with_ring(
                lock(&self.evidence)
                    .as_ref()
                    .filter(|_| policy == FullPolicy::DropOldest)
                    .map(|(limits, budget)| {
                        evidence::PacketRing::new(&settings.id, *limits, budget.clone())
                    }),
            ),
        );
        let camera = Arc::new(Camera::new(settings.clone(), shared, self.changes.clone()));
        let cancel = CancellationToken::new();
        let task = tokio::spawn(supervisor::supervise(camera.clone(), cancel.clone()));
        cameras.insert(
            settings.id,
            Entry {
                camera,
                cancel,
                task,
                jpeg: Arc::default(),
            },
        );
        Ok(rx)
    }

    /// Stops a camera and waits for its pipeline to be torn down.
    pub async fn remove(&self, id: &str) -> Result<(), IngestError> {
        let entry = lock(&self.cameras)
            .remove(id)
            .ok_or_else(|| IngestError::Unknown(id.to_string()))?;
        entry.cancel.cancel();
        if tokio::time::timeout(Duration::from_secs(15), entry.task)
            .await
            .is_err()
        {
            tracing::warn!(camera = id, "camera did not stop within 15 s");
        }
        Ok(())
    }

    /// Replaces a camera's settings (stop, then start with the new ones).
    pub async fn replace(&self, settings: CameraSettings) -> Result<FrameReceiver, IngestError> {
        self.remove(&settings.id).await?;
        self.add(settings)
    }

    /// Stops every camera.
    /// Stops every camera, all at once (a camera whose network teardown hangs does not hold
    /// up the others).
    pub async fn shutdown(&self) {
        let ids: Vec<String> = lock(&self.cameras).keys().cloned().collect();
        futures_util::future::join_all(ids.iter().map(|id| self.remove(id))).await;
    }

    pub fn ids(&self) -> Vec<String> {
        lock(&self.cameras).keys().cloned().collect()
    }

    pub fn status(&self, id: &str) -> Option<CameraStatus> {
        lock(&self.cameras).get(id).map(|e| e.camera.status())
    }

    pub fn statuses(&self) -> Vec<CameraStatus> {
        lock(&self.cameras)
            .values()
            .map(|e| e.camera.status())
            .collect()
    }

    pub fn state(&self, id: &str) -> Option<CameraState> {
        lock(&self.cameras).get(id).map(|e| e.camera.state())
    }

    /// State changes of all cameras, as they happen.
    pub fn subscribe(&self) -> broadcast::Receiver<StatusChange> {
        self.changes.subscribe()
    }

    /// The newest full-resolution decoded frame of a camera, as GStreamer holds it.
    pub fn latest_sample(&self, id: &str) -> Result<gst::Sample, IngestError> {
        let cameras = lock(&self.cameras);
        let entry = cameras
            .get(id)
            .ok_or_else(|| IngestError::Unknown(id.to_string()))?;
        let sample = lock(&entry.camera.shared.latest).clone();
        sample.ok_or_else(|| IngestError::NoFrame(id.to_string()))
    }

    /// The newest full-resolution frame as packed BGR: (pixels, width, height). Blocks while
    /// converting; call from a blocking context.
    pub fn latest_bgr(&self, id: &str) -> Result<(Vec<u8>, u32, u32), IngestError> {
        self.latest_frame(id)?.to_bgr()
    }

    /// The newest full-resolution frame, held as decoded (cheap: a reference); convert it
    /// later, elsewhere, with [`FullFrame::to_bgr`].
    pub fn latest_frame(&self, id: &str) -> Result<FullFrame, IngestError> {
        Ok(FullFrame {
            camera: id.to_string(),
            sample: self.latest_sample(id)?,
        })
    }

    /// The newest full-resolution frame as JPEG, encoded once per frame however many ask.
    pub async fn snapshot_jpeg(&self, id: &str) -> Result<Vec<u8>, IngestError> {
        let cache = lock(&self.cameras)
            .get(id)
            .map(|e| e.jpeg.clone())
            .ok_or_else(|| IngestError::Unknown(id.to_string()))?;
        let mut cached = cache.lock().await;
        let sample = self.latest_sample(id)?;
        // The cache holds its frame, so a new frame can never be the same object.
        if let Some((frame, jpeg)) = cached.as_ref() {
            if frame.as_ptr() == sample.as_ptr() {
                return Ok(jpeg.clone());
            }
        }
        self.jpeg_encodings
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let jpeg = Self::encode_jpeg(id, sample.clone()).await?;
        *cached = Some((sample, jpeg.clone()));
        Ok(jpeg)
    }

    /// How many times a frame was encoded as JPEG for [`Ingest::snapshot_jpeg`] (for tests).
    pub fn jpeg_encodings(&self) -> u64 {
        self.jpeg_encodings
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    async fn encode_jpeg(id: &str, sample: gst::Sample) -> Result<Vec<u8>, IngestError> {
        let camera = id.to_string();
        let fail = |reason: String| IngestError::Snapshot {
            camera: camera.clone(),
            reason,
        };
        let jpeg = tokio::task::spawn_blocking(move || {
            let caps = gst::Caps::builder("image/jpeg").build();
            gstreamer_video::convert_sample(&sample, &caps, Some(gst::ClockTime::from_seconds(5)))
        })
        .await
        .map_err(|e| fail(e.to_string()))?
        .map_err(|e| fail(e.to_string()))?;
        let buffer = jpeg
            .buffer()
            .ok_or_else(|| fail("converter returned no buffer".into()))?;
        let map = buffer.map_readable().map_err(|e| fail(e.to_string()))?;
        Ok(map.to_vec())
    }
}

/// A decoded full-resolution frame as GStreamer holds it.
#[derive(Debug, Clone)]
pub struct FullFrame {
    camera: String,
    sample: gst::Sample,
}

impl FullFrame {
    /// Packed BGR: (pixels, width, height). Blocks while converting.
    pub fn to_bgr(&self) -> Result<(Vec<u8>, u32, u32), IngestError> {
        let fail = |reason: String| IngestError::Snapshot {
            camera: self.camera.clone(),
            reason,
        };
        let caps = gst::Caps::builder("video/x-raw")
            .field("format", "BGR")
            .build();
        let bgr = gstreamer_video::convert_sample(
            &self.sample,
            &caps,
            Some(gst::ClockTime::from_seconds(5)),
        )
        .map_err(|e| fail(e.to_string()))?;
        let info = bgr
            .caps()
            .and_then(|c| gstreamer_video::VideoInfo::from_caps(c).ok())
            .ok_or_else(|| fail("converted frame has no video caps".into()))?;
        let buffer = bgr
            .buffer()
            .ok_or_else(|| fail("converter returned no buffer".into()))?;
        let map = buffer.map_readable().map_err(|e| fail(e.to_string()))?;
        let (w, h) = (info.width(), info.height());
        let stride = info.stride()[0] as usize;
        let row = w as usize * 3;
        let mut packed = Vec::with_capacity(row * h as usize);
        for y in 0..h as usize {
            let start = info.offset()[0] + y * stride;
            packed.extend_from_slice(&map[start..start + row]);
        }
        Ok((packed, w, h))
    }
}

impl Drop for Ingest {
    fn drop(&mut self) {
        for entry in lock(&self.cameras).values() {
            entry.cancel.cancel();
        }
    }
}

/// GStreamer element that must exist for a source kind; `make setup` installs them all.
pub fn check_elements() -> Vec<String> {
    let needed = [
        ("rtspsrc", "gstreamer1.0-plugins-good"),
        ("decodebin", "gstreamer1.0-plugins-base"),
        (
            "videoconvertscale",
            "gstreamer1.0-plugins-base (1.22 or newer)",
        ),
        ("avdec_h264", "gstreamer1.0-libav"),
        ("x264enc", "gstreamer1.0-plugins-ugly"),
        ("appsink", "gstreamer1.0-plugins-base"),
    ];
    needed
        .iter()
        .filter(|(name, _)| gst::ElementFactory::find(name).is_none())
        .map(|(name, pkg)| format!("GStreamer element {name} is missing (Debian package {pkg})"))
        .collect()
}
