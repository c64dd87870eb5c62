//! The image stage: event snapshots and the wall's annotated frames are converted, drawn,
//! encoded and written here, off the analysis path. Images are perishable: when this stage is
//! behind, a new job is dropped and counted (the event keeps its place in the flow; only its
//! picture is missing).

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use pantau_analytics::draw::Overlay;
use pantau_analytics::snapshot::encode;
use pantau_dashboard_api::Live;
use pantau_ingest::FullFrame;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Jobs waiting; more are dropped.
const QUEUE: usize = 16;

/// The picture to draw on.
#[derive(Debug)]
pub(crate) enum Picture {
    /// The newest full-resolution frame.
    Full(FullFrame),
    /// The analysed frame (packed BGR, width, height, scale from full resolution), when the
    /// full-resolution one is gone (a camera stopping).
    Analysed(Vec<u8>, u32, u32, f32),
}

/// One image to make.
#[derive(Debug)]
pub(crate) struct ImageJob {
    pub camera: String,
    pub picture: Picture,
    pub overlay: Overlay,
    pub quality: u8,
    /// Write it here (an event snapshot).
    pub snapshot: Option<PathBuf>,
    /// Show it on the wall.
    pub wall: bool,
}

#[derive(Debug, Clone)]
pub(crate) struct Images {
    tx: mpsc::Sender<ImageJob>,
    dropped: Arc<AtomicU64>,
}

impl Images {
    /// Starts the stage; it ends when `closing` is cancelled, after the jobs already queued.
    pub fn start(
        live: Arc<Live>,
        labels: Arc<Vec<String>>,
        closing: CancellationToken,
    ) -> (Self, JoinHandle<()>) {
        let (tx, mut rx) = mpsc::channel::<ImageJob>(QUEUE);
        let task = tokio::spawn(async move {
            while let Some(job) = crate::next_until_closed(&mut rx, &closing).await {
                let labels = labels.clone();
                let camera = job.camera.clone();
                let wall = job.wall;
                let made = tokio::task::spawn_blocking(move || make(job, &labels)).await;
                match made {
                    Ok(Ok(jpeg)) if wall => live.put_frame(&camera, jpeg),
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => tracing::warn!(camera = %camera, "image not made: {e}"),
                    Err(e) => tracing::warn!(camera = %camera, "image not made: {e}"),
                }
            }
        });
        (
            Self {
                tx,
                dropped: Arc::default(),
            },
            task,
        )
    }

    /// Queues a job, or drops it (counted) when the stage is behind.
    pub fn submit(&self, job: ImageJob) {
        if let Err(mpsc::error::TrySendError::Full(job)) = self.tx.try_send(job) {
            let n = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            if n == 1 || n.is_multiple_of(100) {
                tracing::warn!(
                    camera = %job.camera,
                    dropped = n,
                    "images are made slower than asked for; this one was dropped"
                );
            }
        }
    }
}

/// Converts, draws, encodes and (for a snapshot) writes one image; returns the JPEG.
fn make(job: ImageJob, labels: &[String]) -> Result<Vec<u8>, String> {
    let (bgr, width, height, scale) = match job.picture {
        Picture::Full(frame) => {
            let (bgr, w, h) = frame.to_bgr().map_err(|e| e.to_string())?;
            (bgr, w, h, 1.0)
        }
        Picture::Analysed(bgr, w, h, scale) => (bgr, w, h, scale),
    };
    let jpeg = encode(
        &bgr,
        width,
        height,
        scale,
        &job.overlay,
        labels,
        job.quality,
    )
    .map_err(|e| e.to_string())?;
    if let Some(path) = &job.snapshot {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
        }
        // Whole or not at all: the API serves a snapshot as soon as its name exists.
        let part = path.with_extension("jpg.part");
        std::fs::write(&part, &jpeg)
            .and_then(|()| std::fs::rename(&part, path))
            .map_err(|e| format!("{}: {e}", path.display()))?;
    }
    Ok(jpeg)
}
