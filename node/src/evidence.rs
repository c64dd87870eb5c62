//! The evidence recorder: an alert (or an operator's "save clip") names its clip folder at
//! once (`details.evidence`), and when the post-roll has passed the clip is cut from the
//! camera's ring of encoded video (ingest), written as MP4, sealed with the signed manifest
//! (`pantau-evidence`) and announced on MQTT (`.../evidence`). Alerts of one camera within an
//! open clip's window share it. Off the analysis path: analysis only names the folder.
//!
//! On shutdown every clip still waiting is cut at once (before the cameras stop), so what was
//! recorded is kept.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use pantau_config::config::EvidenceConfig;
use pantau_dashboard_api::evidence::FAILED_FILE;
use pantau_events::{Event, Lifecycle, Message, Severity, Topics};
use pantau_evidence::{ClipFacts, NodeKey};
use pantau_ingest::Ingest;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::lock;
use crate::outputs::Publisher;

/// The clip a camera is collecting now.
#[derive(Debug, Clone)]
struct Open {
    rel: String,
    /// The first event's time: later events join until `first + post`.
    first: SystemTime,
    /// The end of the clip, moved on by each event that joins (its own post-roll).
    to: Arc<Mutex<SystemTime>>,
    events: Arc<Mutex<Vec<String>>>,
}

/// Clips waiting for their post-roll at most; beyond, an alert gets no clip (logged).
const MAX_PENDING: usize = 256;

#[derive(Debug)]
pub(crate) struct Recorder {
    ingest: Arc<Ingest>,
    key: Arc<NodeKey>,
    dir: PathBuf,
    pre: Duration,
    post: Duration,
    min_severity: Severity,
    node: String,
    site: String,
    publisher: Publisher,
    topics: Topics,
    open: Mutex<HashMap<String, Open>>,
    tasks: TaskTracker,
    /// Cancelled on shutdown: clips are cut without waiting for the rest of their post-roll.
    now: CancellationToken,
    /// Two clips are written at once at most (disk, not CPU).
    writers: Arc<tokio::sync::Semaphore>,
}

impl Recorder {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        config: &EvidenceConfig,
        dir: PathBuf,
        key: Arc<NodeKey>,
        ingest: Arc<Ingest>,
        publisher: Publisher,
        topics: Topics,
        node: &str,
        site: &str,
    ) -> Self {
        Self {
            ingest,
            key,
            dir,
            pre: Duration::from_secs_f64(config.pre_s),
            post: Duration::from_secs_f64(config.post_s),
            min_severity: config.min_severity,
            node: node.to_string(),
            site: site.to_string(),
            publisher,
            topics,
            open: Mutex::default(),
            tasks: TaskTracker::new(),
            now: CancellationToken::new(),
            writers: Arc::new(tokio::sync::Semaphore::new(2)),
        }
    }

    pub fn key(&self) -> &Arc<NodeKey> {
        &self.key
    }

    pub fn post(&self) -> Duration {
        self.post
    }

    /// Gives an alert its clip (a new one, or the camera's open one when the alert falls in its
    /// window) and names it in `details.evidence`. Ends of incidents, updates and information
    /// get none, nor alerts of snoozed rules.
    pub fn alert(self: &Arc<Self>, e: &mut Event) {
        let wanted = e.severity >= self.min_severity
            && matches!(e.lifecycle, Lifecycle::New | Lifecycle::Single)
            && !e.details.contains_key("snoozed_until");
        if wanted {
            self.record(e);
        }
    }

    /// Records a clip around `e` whatever it is (an operator's "save clip") and names it in
    /// `details.evidence`.
    pub fn record(self: &Arc<Self>, e: &mut Event) {
        let id = e.id.to_string();
        if let Some(rel) = self.clip(&e.camera, e.captured_at, &id, e.kind.as_str(), &e.rule) {
            e.details.insert("evidence".into(), rel.into());
        }
    }

    /// A clip of `camera` around `at` for event `event_id`: the camera's open clip when `at`
    /// falls in its window, else a new one. Returns its folder (`camera/date/clip`), or `None`
    /// when the camera keeps no video for it (not H.264/H.265, no keyframe yet, or `at` is
    /// older than what its ring holds).
    pub fn clip(
        self: &Arc<Self>,
        camera: &str,
        at: SystemTime,
        event_id: &str,
        kind: &str,
        rule: &str,
    ) -> Option<String> {
        if self.now.is_cancelled() {
            return None; // stopping: no clip could be cut any more
        }
        // Times are the camera's (RTCP), which may be off this server's by minutes: "now" is
        // the newest video the camera sent, and nothing is asked of the future.
        let Some(camera_now) = self.ingest.evidence_now(camera) else {
            // Not H.264/H.265 (or a test pattern), or no keyframe yet: no clip to promise.
            tracing::debug!(camera, event = event_id, "no encoded video kept; no clip");
            return None;
        };
        let at = at.min(camera_now);
        let age = camera_now.duration_since(at).unwrap_or_default();
        if age > self.pre + self.post + Duration::from_secs(5) {
            tracing::debug!(
                camera,
                event = event_id,
                "older than the video kept; no clip"
            );
            return None;
        }
        let mut open = lock(&self.open);
        if let Some(o) = open.get(camera) {
            // A later event within the first one's post-roll shares its clip, which then runs
            // on to this event's own post-roll; an earlier one needs earlier video.
            if at >= o.first && at <= o.first + self.post {
                lock(&o.events).push(event_id.to_string());
                let mut to = lock(&o.to);
                *to = (*to).max(at + self.post);
                return Some(o.rel.clone());
            }
        }
        if self.tasks.len() >= MAX_PENDING {
            tracing::warn!(
                camera,
                event = event_id,
                "too many clips waiting to be written; this one gets none"
            );
            return None;
        }
        let date: String = pantau_events::time::format(at).chars().take(10).collect();
        let rel = format!("{camera}/{date}/{event_id}");
        let from = at.checked_sub(self.pre).unwrap_or(at);
        let o = Open {
            rel: rel.clone(),
            first: at,
            to: Arc::new(Mutex::new(at + self.post)),
            events: Arc::new(Mutex::new(vec![event_id.to_string()])),
        };
        open.insert(camera.to_string(), o.clone());
        drop(open);
        let job = Job {
            camera: camera.to_string(),
            event_id: event_id.to_string(),
            kind: kind.to_string(),
            rule: rule.to_string(),
            rel: rel.clone(),
            from,
            to: o.to,
            events: o.events,
        };
        let me = self.clone();
        self.tasks.spawn(async move { me.run(job).await });
        Some(rel)
    }

    /// Cuts every waiting clip now and waits for them to be written (at most `limit`).
    pub async fn flush(&self, limit: Duration) {
        self.now.cancel();
        self.tasks.close();
        if tokio::time::timeout(limit, self.tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                clips = self.tasks.len(),
                "evidence clips still being written at shutdown were left"
            );
        }
    }

    async fn run(self: Arc<Self>, job: Job) {
        // Wait until the camera's own clock has passed the clip's end (the last packets are
        // in), at most the post-rolls plus 10 s of wall time (a camera that went silent).
        let deadline = tokio::time::Instant::now() + self.post * 2 + Duration::from_secs(10);
        let mut joinable = true;
        loop {
            let to = *lock(&job.to);
            let passed = self
                .ingest
                .evidence_now(&job.camera)
                .is_none_or(|now| now >= to + Duration::from_millis(500));
            if passed || self.now.is_cancelled() || tokio::time::Instant::now() >= deadline {
                if !joinable {
                    break;
                }
                // No event joins from here; one that joined just now may have moved the end.
                joinable = false;
                let mut open = lock(&self.open);
                if open.get(&job.camera).is_some_and(|o| o.rel == job.rel) {
                    open.remove(&job.camera);
                }
                drop(open);
                if *lock(&job.to) == to {
                    break;
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(250)) => {}
                _ = self.now.cancelled() => {}
            }
        }
        // Cut at once (the packets are shared, not copied), before waiting for a writer: the
        // ring moves on meanwhile.
        let to = *lock(&job.to);
        let cut = self.ingest.clip(&job.camera, job.from, to);
        let rel = job.rel.clone();
        let camera = job.camera.clone();
        let done = match cut {
            Ok(clip) => {
                let _turn = self.writers.clone().acquire_owned().await;
                let me = self.clone();
                tokio::task::spawn_blocking(move || me.write(&job, clip, to)).await
            }
            Err(e) => Ok(Err(e.to_string())),
        };
        match done {
            Ok(Ok(payload)) => {
                tracing::info!(camera = %camera, clip = %rel, "evidence clip written");
                self.publisher
                    .send(vec![Message::evidence(&self.topics, &camera, payload)])
                    .await;
            }
            Ok(Err(reason)) => {
                tracing::warn!(camera = %camera, clip = %rel, "evidence clip not written: {reason}");
                let dir = self.dir.join(&rel);
                let _ = std::fs::create_dir_all(&dir)
                    .and_then(|()| std::fs::write(dir.join(FAILED_FILE), format!("{reason}\n")));
            }
            Err(e) => {
                tracing::error!(camera = %camera, clip = %rel, "evidence clip writer failed: {e}")
            }
        }
    }

    /// Cuts, writes and seals one clip; returns its MQTT payload.
    fn write(
        &self,
        job: &Job,
        clip: pantau_ingest::EncodedClip,
        to: SystemTime,
    ) -> Result<Vec<u8>, String> {
        let dir = self.dir.join(&job.rel);
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        clip.write_mp4(&dir.join(pantau_evidence::CLIP_FILE))
            .map_err(|e| e.to_string())?;
        let camera_name = self
            .ingest
            .status(&job.camera)
            .map(|s| s.name)
            .unwrap_or_else(|| job.camera.clone());
        let facts = ClipFacts {
            clip_id: job.event_id.clone(),
            event_id: job.event_id.clone(),
            events: lock(&job.events).clone(),
            event_kind: job.kind.clone(),
            rule: job.rule.clone(),
            camera: job.camera.clone(),
            camera_name,
            site: self.site.clone(),
            node: self.node.clone(),
            requested: (job.from, to),
            start: clip.start(),
            end: clip.end(),
            codec: clip.codec().to_string(),
            size: clip.size(),
            frames: clip.frames() as u64,
        };
        let (_, manifest, signature) =
            pantau_evidence::seal(&dir, &facts, &self.key).map_err(|e| e.to_string())?;
        let manifest: serde_json::Value =
            serde_json::from_slice(&manifest).map_err(|e| e.to_string())?;
        serde_json::to_vec(&serde_json::json!({
            "clip": job.rel,
            "event_id": job.event_id,
            "camera": job.camera,
            "site": self.site,
            "manifest": manifest,
            "signature": signature,
        }))
        .map_err(|e| e.to_string())
    }
}

#[derive(Debug)]
struct Job {
    camera: String,
    event_id: String,
    kind: String,
    rule: String,
    rel: String,
    from: SystemTime,
    to: Arc<Mutex<SystemTime>>,
    events: Arc<Mutex<Vec<String>>>,
}

/// Applies the retention policy once an hour: clips older than `evidence.retention_days` or
/// beyond `evidence.max_gb` go, oldest first, except those dispatch marked "keep". Without a
/// database there are no marks; with one that does not answer, nothing is deleted.
pub(crate) async fn retention(
    dir: PathBuf,
    config: EvidenceConfig,
    db: Option<Arc<pantau_dashboard_api::Db>>,
) {
    let policy = pantau_evidence::retention::Policy {
        max_age: Duration::from_secs(86_400 * u64::from(config.retention_days)),
        max_bytes: (config.max_gb * (1u64 << 30) as f64) as u64,
    };
    let mut tick = tokio::time::interval(Duration::from_secs(3600));
    loop {
        tick.tick().await;
        let kept = match &db {
            None => Default::default(),
            Some(db) => match db.store().await {
                Ok(store) => match store.kept_clips().await {
                    Ok(k) => k,
                    Err(e) => {
                        tracing::warn!("evidence retention skipped: kept clips unknown: {e}");
                        continue;
                    }
                },
                Err(e) => {
                    tracing::warn!(
                        "evidence retention skipped: kept clips unknown: {}",
                        e.message
                    );
                    continue;
                }
            },
        };
        let dir = dir.clone();
        let swept = tokio::task::spawn_blocking(move || {
            pantau_evidence::retention::sweep(&dir, policy, &kept, SystemTime::now())
        })
        .await
        .unwrap_or_default();
        if !swept.removed.is_empty() {
            tracing::info!(
                removed = swept.removed.len(),
                kept = swept.kept_by_dispatch,
                bytes_left = swept.bytes_left,
                "old evidence clips deleted"
            );
        }
    }
}
