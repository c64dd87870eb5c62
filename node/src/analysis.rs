//! The analysis stage: one task per camera takes frames from ingest (perishable: the queue
//! drops the oldest), runs detection (the shared inference service), tracking and the scene's
//! rules, and turns the results into typed facts for the publish stage. Nothing here calls
//! back into ingest except to read the newest full-resolution frame for a snapshot.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use pantau_analytics::camera::{analyse, Analysed};
use pantau_analytics::detect::onnx::DetectError;
use pantau_analytics::detect::service::InferenceService;
use pantau_analytics::draw::Overlay;
use pantau_analytics::facts::Facts as EventFacts;
use pantau_analytics::health::{HealthMonitor, HealthSettings};
use pantau_analytics::motion::MotionCheck;
use pantau_analytics::rules::Direction;
use pantau_analytics::scene::Scene;
use pantau_analytics::snapshot::packed_bgr;
use pantau_config::config::CameraSettings;
use pantau_config::TrackerConfig;
use pantau_dashboard_api::cameras::BoxFuture;
use pantau_dashboard_api::evidence::{ClipControl, SavedClip};
use pantau_dashboard_api::{ApiError, CameraControl, Live, LiveMessage};
use pantau_events::{IdGenerator, Message, Topics};
use pantau_ingest::{FrameReceiver, Ingest};

use crate::images::{ImageJob, Images, Picture};
use crate::lock;
use crate::outputs::Publisher;

/// What analysis knows per camera, for the status view.
#[derive(Debug, Default, Clone)]
pub struct CameraFigures {
    /// Objects tracked in the newest analysed frame.
    pub objects: usize,
    /// Line name -> (in, out) totals.
    pub lines: Vec<(String, (u64, u64))>,
    pub inference_ms: f64,
}

/// Every camera's figures.
pub type Figures = Arc<Mutex<BTreeMap<String, CameraFigures>>>;

/// How long after its capture an analysed frame reached each stage, in ms.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StageSample {
    /// When the frame's analysis ended.
    pub at: Instant,
    /// Taken by analysis: received over the network, decoded, scaled and converted.
    pub received_ms: f64,
    /// The detector's answer back (waiting for the detector included).
    pub detected_ms: f64,
    /// Tracked, rules applied and its messages queued for the outbox.
    pub analysed_ms: f64,
}

/// The stage times of the newest analysed frames of every camera together, so a benchmark
/// can tell where capture-to-MQTT latency goes.
#[derive(Debug, Default)]
pub struct StageTimes {
    samples: Mutex<VecDeque<StageSample>>,
}

impl StageTimes {
    /// Enough for a minute of 30 cameras at 5 fps.
    const KEEP: usize = 9000;

    fn record(&self, a: &Analysed<'_>) {
        let capture = a.frame.capture_time;
        let ms = |t: SystemTime| {
            t.duration_since(capture)
                .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
        };
        let mut samples = lock(&self.samples);
        if samples.len() == Self::KEEP {
            samples.pop_front();
        }
        samples.push_back(StageSample {
            at: Instant::now(),
            received_ms: ms(a.received_at),
            detected_ms: ms(a.detected_at),
            analysed_ms: ms(SystemTime::now()),
        });
    }

    /// The samples of frames whose analysis ended at or after `from`.
    pub fn since(&self, from: Instant) -> Vec<StageSample> {
        lock(&self.samples)
            .iter()
            .filter(|s| s.at >= from)
            .copied()
            .collect()
    }
}

/// What every camera's analysis shares; starts, restarts and stops cameras (also for the API).
#[derive(Clone)]
pub(crate) struct Cameras {
    pub ingest: Arc<Ingest>,
    pub service: InferenceService,
    pub labels: Arc<Vec<String>>,
    pub publisher: Publisher,
    pub images: Images,
    pub topics: Topics,
    pub ids: Arc<IdGenerator>,
    pub figures: Figures,
    /// Snapshot folder and JPEG quality, when snapshots are on.
    pub snapshots: Option<(PathBuf, u8)>,
    pub live: Arc<Live>,
    /// Rules operators snoozed: their alerts are marked `snoozed_until`.
    pub snoozes: Arc<pantau_dashboard_api::snooze::Snoozes>,
    /// Alerts as CAP 1.2 on `.../cap` (knows each camera's position and open incidents).
    pub cap: Arc<pantau_events::cap::Feed>,
    pub site: String,
    pub tracker: TrackerConfig,
    pub count_period: Duration,
    /// Evidence clips of alerts, when evidence is on.
    pub evidence: Option<Arc<crate::evidence::Recorder>>,
    pub analysers: Arc<tokio::sync::Mutex<HashMap<String, tokio::task::JoinHandle<()>>>>,
    /// In a fleet, until when each camera may publish (its lease).
    pub fence: Arc<crate::fleet::Fence>,
    pub stages: Arc<StageTimes>,
}

impl std::fmt::Debug for Cameras {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cameras")
            .field("site", &self.site)
            .finish_non_exhaustive()
    }
}

impl Cameras {
    /// Starts `camera` (ingest and analysis), replacing it when it runs; a disabled camera is
    /// stopped.
    pub async fn start(&self, camera: CameraSettings) -> Result<(), String> {
        let mut analysers = self.analysers.lock().await;
        let running = self.ingest.status(&camera.id).is_some();
        if !camera.enabled {
            if running {
                self.ingest
                    .remove(&camera.id)
                    .await
                    .map_err(|e| e.to_string())?;
            }
            if let Some(task) = analysers.remove(&camera.id) {
                let _ = task.await;
            }
            return Ok(());
        }
        let frames = if running {
            self.ingest.replace(camera.clone()).await
        } else {
            self.ingest.add(camera.clone())
        }
        .map_err(|e| e.to_string())?;
        // The old analysis ends with its frame queue (and hands over its open counts).
        if let Some(task) = analysers.remove(&camera.id) {
            let _ = task.await;
        }
        let place = camera.calibration.as_ref().and_then(|c| {
            Some(pantau_events::cap::Place {
                latitude: c.latitude?,
                longitude: c.longitude?,
            })
        });
        self.cap.camera(&camera.id, Some(&camera.name), place);
        let scene = Scene::new(&camera.lines, &camera.zones, &self.tracker).with_traffic(
            pantau_analytics::rules::TrafficSetup::for_camera(&camera, &self.labels),
        );
        let events = EventFacts::new(
            &self.site,
            &camera.id,
            camera.lines.iter().map(|l| l.name.clone()).collect(),
            self.labels.clone(),
            self.ids.clone(),
            self.count_period,
        )
        .with_zones(&camera.zones)
        .with_alert_gap(Duration::from_secs_f64(camera.rules.incident_gap_s));
        // The picture's health, against the rate the camera was asked for.
        let health = HealthMonitor::new(HealthSettings {
            expected_fps: Some(camera.analysis_fps),
            ..HealthSettings::default()
        });
        let task = tokio::spawn(analyse_camera(
            camera.clone(),
            frames,
            self.service.clone(),
            scene,
            self.clone(),
            events,
            health,
        ));
        analysers.insert(camera.id, task);
        Ok(())
    }

    pub async fn stop(&self, id: &str) -> Result<(), String> {
        let mut analysers = self.analysers.lock().await;
        if self.ingest.status(id).is_some() {
            self.ingest.remove(id).await.map_err(|e| e.to_string())?;
        }
        if let Some(task) = analysers.remove(id) {
            let _ = task.await;
        }
        self.live.forget(id);
        self.cap.forget(id);
        lock(&self.figures).remove(id);
        Ok(())
    }

    /// Waits for every analysis to end (after ingest shut down).
    pub async fn join(&self) {
        let tasks: Vec<_> = self
            .analysers
            .lock()
            .await
            .drain()
            .map(|(_, t)| t)
            .collect();
        for t in tasks {
            let _ = t.await;
        }
    }
}

impl ClipControl for Cameras {
    fn clip_at(
        &self,
        camera: &str,
        at: std::time::SystemTime,
        event_id: &str,
        kind: &str,
        rule: &str,
    ) -> Option<String> {
        self.evidence
            .as_ref()?
            .clip(camera, at, event_id, kind, rule)
    }

    fn save_clip(
        &self,
        camera: String,
        by: String,
        note: Option<String>,
    ) -> BoxFuture<'_, Result<SavedClip, ApiError>> {
        Box::pin(async move {
            let recorder = self.evidence.as_ref().ok_or_else(|| {
                ApiError::not_found("evidence_off", "evidence clips are off on this node")
            })?;
            if self.ingest.status(&camera).is_none() {
                return Err(ApiError::not_found(
                    "camera_not_found",
                    format!("no camera \"{camera}\" runs on this node"),
                ));
            }
            // "Now" on the camera's clock (the newest video it sent): the picture the operator
            // saw, whatever the camera's clock says.
            let Some(seen) = self.ingest.evidence_now(&camera) else {
                return Err(ApiError::conflict(format!(
                    "camera \"{camera}\" keeps no video for clips: its stream is not H.264 or \
                     H.265, or it has not sent a keyframe yet (try again in a few seconds)"
                )));
            };
            let now = std::time::SystemTime::now();
            let mut e = pantau_events::Origin::new(&self.site, &camera).operator_clip(
                &self.ids,
                seen,
                &by,
                note.as_deref(),
            );
            recorder.record(&mut e);
            let clip = e
                .details
                .get("evidence")
                .and_then(|v| v.as_str())
                .unwrap_or_default()
                .to_string();
            let m = Message::event(&self.topics, &e);
            let json = String::from_utf8_lossy(&m.payload).into_owned();
            self.live
                .publish(LiveMessage::new("event", &camera, Some(&e.rule), json));
            let mut messages = vec![m];
            messages.extend(self.cap.message(&self.topics, &e));
            self.publisher.send(messages).await;
            Ok(SavedClip {
                event_id: e.id.to_string(),
                clip,
                ready_at: pantau_events::time::format(
                    now + recorder.post() + Duration::from_secs(2),
                ),
            })
        })
    }
}

impl CameraControl for Cameras {
    fn apply(&self, settings: CameraSettings) -> BoxFuture<'_, Result<(), String>> {
        Box::pin(self.start(settings))
    }

    fn remove(&self, id: String) -> BoxFuture<'_, Result<(), String>> {
        Box::pin(async move { self.stop(&id).await })
    }
}

/// One camera's analysis; ends when the camera's frame queue closes (removed, replaced or the
/// node stopping), after handing over the counts of the open period and ending the open
/// health conditions.
async fn analyse_camera(
    camera: CameraSettings,
    frames: FrameReceiver,
    service: InferenceService,
    scene: Scene,
    node: Cameras,
    mut events: EventFacts,
    mut health: HealthMonitor,
) {
    let id = camera.id.clone();
    let mut last_capture = None;
    let labels = node.labels.clone();
    let motion = camera.motion_gate.map(MotionCheck::new);
    let name = |c: u16| {
        labels
            .get(c as usize)
            .cloned()
            .unwrap_or_else(|| c.to_string())
    };
    let result = analyse(frames, service, scene, motion, |a: Analysed<'_>| -> Result<(), DetectError> {
        let (mut new_events, aggregates) = events.frame(
            a.frame.capture_time,
            &a.update.tracks,
            &a.update.crossings,
            &a.update.zone_events,
        );
        let at_s = a
            .frame
            .capture_time
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs_f64();
        // Judged against the rate the camera is analysed at now (lower while the node sheds
        // load), so fair degradation is not reported as the camera's fault.
        health.set_expected_fps(Some(node.ingest.rate().fps_for(&camera)));
        let changes = health.frame(pantau_analytics::ImageRef::from(a.frame), at_s, a.frame.seq);
        new_events.extend(events.camera_health(a.frame.capture_time, &changes));
        last_capture = Some(a.frame.capture_time);
        new_events.extend(events.traffic(
            a.frame.capture_time,
            &a.update.tracks,
            &a.update.traffic,
        ));
        for e in &mut new_events {
            if e.severity >= pantau_events::Severity::Warning {
                if let Some(until) = node.snoozes.until(&e.camera, &e.rule, e.captured_at) {
                    e.details.insert(
                        "snoozed_until".into(),
                        pantau_events::time::format(until).into(),
                    );
                }
            }
        }
        // Alerts name their evidence clip now; it is written when the post-roll has passed.
        if let Some(recorder) = &node.evidence {
            for e in &mut new_events {
                recorder.alert(e);
            }
        }
        // Pictures are made by the image stage: a snapshot for the frame's events (named
        // now, so the events carry it) and the wall's frame while someone watches.
        let live = &node.live;
        let mut snapshot = None;
        if let (Some((dir, quality)), Some(first)) = (&node.snapshots, new_events.first()) {
            let name = format!(
                "{id}/{}/{}.jpg",
                &pantau_events::time::format(first.captured_at)[..10],
                first.id
            );
            for e in &mut new_events {
                e.snapshot = Some(name.clone());
            }
            snapshot = Some((dir.join(&name), *quality));
        }
        let wall = live.frame_due(&id, Duration::from_millis(300));
        if snapshot.is_some() || wall {
            let picture = match node.ingest.latest_frame(&id) {
                Ok(full) => Picture::Full(full),
                // The camera is stopping while its last frames are analysed.
                Err(_) => {
                    let (bgr, w, h, scale) = packed_bgr(a.frame);
                    Picture::Analysed(bgr, w, h, scale)
                }
            };
            node.images.submit(ImageJob {
                camera: id.clone(),
                picture,
                overlay: Overlay::of(a.scene, a.update),
                quality: snapshot.as_ref().map_or(70, |(_, q)| *q),
                snapshot: snapshot.map(|(path, _)| path),
                wall,
            });
        }
        if a.inferred {
            live.record_inference(&id, a.timings.inference_ms);
        }
        let now = std::time::SystemTime::now();
        let mut messages: Vec<Message> = Vec::with_capacity(new_events.len() + aggregates.len());
        if !node.fence.allows(&id, new_events.len() + aggregates.len()) {
            // This node's lease of the camera is not sure: another node may run it now.
            return Ok(());
        }
        for e in &new_events {
            live.record_event(&id, now.duration_since(e.captured_at).unwrap_or_default());
            let m = Message::event(&node.topics, e);
            let json = String::from_utf8_lossy(&m.payload).into_owned();
            live.publish(LiveMessage::new("event", &id, Some(&e.rule), json));
            messages.push(m);
            messages.extend(node.cap.message(&node.topics, e));
        }
        for t in events.track_summaries(a.frame.capture_time, &a.update.tracks) {
            messages.push(Message::track(&node.topics, &t));
        }
        for agg in &aggregates {
            messages.push(Message::counts(&node.topics, agg));
        }
        node.publisher.send_from_analysis(messages);
        node.stages.record(&a);
        for c in &a.update.crossings {
            tracing::info!(camera = %id, line = %c.line, direction = c.direction.as_str(), class = %name(c.class), track = c.track_id, "line crossing");
        }
        for z in &a.update.zone_events {
            tracing::info!(camera = %id, zone = %z.zone, kind = ?z.kind, class = %name(z.class), track = z.track_id, "zone");
        }
        let mut all = lock(&node.figures);
        let f = all.entry(id.clone()).or_default();
        f.objects = a.update.tracks.iter().filter(|t| t.matched).count();
        f.inference_ms = a.timings.inference_ms;
        f.lines = a
            .scene
            .lines
            .iter()
            .map(|l| {
                let total = |d| l.counts().get(&d).map(|m| m.values().sum()).unwrap_or(0);
                (l.name().to_string(), (total(Direction::In), total(Direction::Out)))
            })
            .collect();
        Ok(())
    })
    .await;
    if let Err(e) = result {
        tracing::error!(camera = %id, "analysis stopped: {e}");
    }
    // The camera stopped or restarts with new settings: hand over the counts of the open
    // period, so a restart or shutdown loses none, and end its open health conditions.
    let mut open: Vec<Message> = events
        .finish()
        .iter()
        .map(|agg| Message::counts(&node.topics, agg))
        .collect();
    if let Some(at) = last_capture {
        for e in events.camera_health(at, &health.finish()) {
            open.push(Message::event(&node.topics, &e));
            open.extend(node.cap.message(&node.topics, &e));
        }
    }
    if node.fence.allows(&id, open.len()) {
        node.publisher.send(open).await;
    }
}
