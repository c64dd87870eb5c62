//! A running pantau node, one way through:
//!
//! ```text
//! ingest (one pipeline per camera; frames are perishable: bounded queue, oldest dropped)
//!   -> analysis (one task per camera: detect, track, rules -> typed events and counts)
//!   -> publish (bounded queue; analysis waits when it is full, nothing is dropped)
//!   -> outbox (durable, group commit on its own thread)
//!   -> sinks (MQTT, store; each at its own pace, dead letters for what can never go)
//! the HTTP API and console read ingest status, live messages and the store beside it.
//! ```
//!
//! [`run`] is the testable entry point: it runs until `shutdown` is cancelled, then stops in
//! order: sources first; analysis drains and hands over the open count window of every line;
//! the outbox is flushed to every sink within `outbox.drain_timeout_s` (what is left stays for
//! the next start); live (SSE) streams end; HTTP stops.

mod analysis;
pub mod capacity;
mod evidence;
mod fleet;
mod images;
mod outputs;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use pantau_analytics::detect::onnx::Detector;
use pantau_analytics::detect::service::{InferenceService, ServiceGuard};
use pantau_config::config::ValidConfig;
use pantau_dashboard_api::{ApiSettings, ApiState, CameraRegistry, Db, Live};
use pantau_events::{camera_status, Message, Severity, StatusFacts};
use pantau_ingest::{CameraState, CameraStatus, Ingest, StatusChange};
use pantau_sinks::outbox::Outbox;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use analysis::{CameraFigures, Figures, StageSample, StageTimes};
pub use outputs::store_target;

/// Why a node could not start.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("{0}")]
    Start(String),
}

/// What a node runs: the validated configuration and the folder relative paths in it start
/// from (the config file's folder).
#[derive(Debug, Clone)]
pub struct NodeConfig {
    pub valid: ValidConfig,
    pub base: PathBuf,
}

/// How a node stopped.
#[derive(Debug, Clone)]
pub struct Stopped {
    /// Every camera's status just before the sources stopped.
    pub cameras: Vec<CameraStatus>,
    /// Records each sink did not deliver within the drain timeout (they stay in the outbox).
    pub undelivered: Vec<(&'static str, u64)>,
}

/// Runs a node until `shutdown` is cancelled, then stops it cleanly.
pub async fn run(
    config: NodeConfig,
    api_listener: Option<tokio::net::TcpListener>,
    shutdown: CancellationToken,
) -> Result<Stopped, NodeError> {
    let node = Node::start(config, api_listener).await?;
    shutdown.cancelled().await;
    Ok(node.stop().await)
}

/// A started node (for callers that show it while it runs, such as the binary's status view).
#[derive(Debug)]
pub struct Node {
    ingest: Arc<Ingest>,
    figures: Figures,
    cameras: analysis::Cameras,
    outputs: outputs::Outputs,
    publish_task: JoinHandle<()>,
    status_task: JoinHandle<()>,
    retention: Option<JoinHandle<()>>,
    /// Deletes old evidence clips, hourly.
    evidence_retention: Option<JoinHandle<()>>,
    api: Option<(std::net::SocketAddr, JoinHandle<()>)>,
    /// Ends live streams, then the HTTP server.
    api_stop: CancellationToken,
    /// Tells the status watcher that the cameras have stopped.
    closing: CancellationToken,
    /// Tells the publish stage that every producer has stopped.
    publish_closing: CancellationToken,
    images_task: JoinHandle<()>,
    images_closing: CancellationToken,
    /// The fleet loop (fleet mode): stopped first, its leases handed back once the cameras
    /// stopped.
    fleet: Option<(JoinHandle<fleet::Leases>, CancellationToken)>,
    drain_timeout: Duration,
    _inference: ServiceGuard,
}

impl Node {
    /// Loads the detector, opens the outbox and sinks, starts every enabled camera and serves
    /// the API on `api_listener` (when given and `api.enabled`).
    pub async fn start(
        config: NodeConfig,
        api_listener: Option<tokio::net::TcpListener>,
    ) -> Result<Self, NodeError> {
        let NodeConfig { valid, base } = config;
        let c = &valid.config;
        let detector = {
            let config = c.detector.clone();
            let floor = c.tracker.low_score;
            let base = base.clone();
            tokio::task::spawn_blocking(move || Detector::load_workers(&config, &base, floor))
                .await
                .map_err(|e| NodeError::Start(e.to_string()))?
                .map_err(|e| NodeError::Start(e.to_string()))?
        };
        tracing::info!(
            model = detector[0].model_name(),
            workers = detector.len(),
            threads = c.detector.threads,
            "detector loaded"
        );
        let labels = Arc::new(detector[0].labels().to_vec());
        let (service, guard) = InferenceService::start_pool(detector);
        let load = service.load().clone();
        let closing = CancellationToken::new();
        let publish_closing = CancellationToken::new();
        let (outputs, publisher, publish_task) =
            outputs::Outputs::start(&valid, &base, publish_closing.clone()).await?;
        let ingest = Arc::new(Ingest::new().map_err(|e| NodeError::Start(e.to_string()))?);
        let (model_w, model_h) = service.input_size();
        ingest.set_analysis_fit(model_w, model_h);
        if c.ingest.fair_degradation {
            tokio::spawn(capacity::govern(
                ingest.clone(),
                load,
                service.workers(),
                closing.clone(),
            ));
        }
        for problem in pantau_ingest::check_elements() {
            tracing::warn!("{problem}");
        }
        let cap = Arc::new(pantau_events::cap::Feed::new(&c.node.name));
        let snoozes: Arc<pantau_dashboard_api::snooze::Snoozes> = Arc::default();
        // In a fleet, a camera's messages go out only while this node surely holds its lease.
        let fence = Arc::new(if c.fleet.enabled {
            fleet::Fence::fleet()
        } else {
            fleet::Fence::default()
        });
        let status_task = {
            let fence = fence.clone();
            let cap = cap.clone();
            let mut changes = ingest.subscribe();
            let publisher = publisher.clone();
            let topics = outputs.topics.clone();
            let ids = outputs.ids.clone();
            let site = c.node.site.clone();
            let stop = closing.clone();
            tokio::spawn(async move {
                use tokio::sync::broadcast::error::{RecvError, TryRecvError};
                loop {
                    let change = tokio::select! {
                        biased;
                        next = changes.recv() => match next {
                            Ok(change) => change,
                            Err(RecvError::Lagged(n)) => {
                                tracing::warn!(missed = n, "camera status changes were published late");
                                continue;
                            }
                            Err(RecvError::Closed) => return,
                        },
                        // Stopping: what the cameras said while they stopped goes out too.
                        _ = stop.cancelled() => match changes.try_recv() {
                            Ok(change) => change,
                            Err(TryRecvError::Lagged(_)) => continue,
                            Err(_) => return,
                        },
                    };
                    // A stale node (after a hang) says nothing about a camera another node
                    // runs now: its retained status stays that node's.
                    if !fence.allows(&change.camera_id, 1) {
                        continue;
                    }
                    let e = status_event(&ids, &site, &change);
                    let mut messages = vec![Message::event(&topics, &e)];
                    messages.extend(cap.message(&topics, &e));
                    publisher.send(messages).await;
                }
            })
        };
        let snapshots = c.snapshots.enabled.then(|| {
            // `join` keeps an absolute path as it is.
            (base.join(&c.snapshots.dir), c.snapshots.quality)
        });
        let retention = snapshots.as_ref().map(|(dir, _)| {
            let dir = dir.clone();
            let keep = Duration::from_secs(86_400 * u64::from(c.snapshots.retention_days));
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_secs(3600));
                loop {
                    tick.tick().await;
                    let dir = dir.clone();
                    let removed = tokio::task::spawn_blocking(move || prune(&dir, keep))
                        .await
                        .unwrap_or(0);
                    if removed > 0 {
                        tracing::info!(removed, "old snapshots deleted");
                    }
                }
            })
        });
        let evidence = if c.evidence.enabled {
            let e = &c.evidence;
            let key_file = base.join(&e.key_file);
            let (key, created) = {
                let key_file = key_file.clone();
                tokio::task::spawn_blocking(move || {
                    pantau_evidence::NodeKey::load_or_create(&key_file)
                })
                .await
                .map_err(|e| NodeError::Start(e.to_string()))?
                .map_err(|e| {
                    NodeError::Start(format!("evidence signing key (evidence.key_file): {e}"))
                })?
            };
            if created {
                tracing::info!(key = %key.id(), file = %key_file.display(), "evidence signing key created; back it up with the node's config");
            }
            let budget = Arc::new(pantau_ingest::RingBudget::new(
                e.total_mb as usize * (1 << 20),
            ));
            ingest.keep_evidence(
                pantau_ingest::RingLimits {
                    // The pre-roll, the post-rolls of the events that share a clip (up to
                    // two) and the wait before the clip is cut.
                    keep: Duration::from_secs_f64(e.pre_s + 2.0 * e.post_s + 5.0),
                    camera_bytes: e.camera_mb as usize * (1 << 20),
                },
                budget,
            );
            let dir = base.join(&e.dir);
            let db = store_target(&valid).map(|(url, schema)| Arc::new(Db::new(url, schema)));
            let sweeper = tokio::spawn(evidence::retention(dir.clone(), e.clone(), db));
            Some((
                Arc::new(evidence::Recorder::new(
                    e,
                    dir.clone(),
                    Arc::new(key),
                    ingest.clone(),
                    publisher.clone(),
                    outputs.topics.clone(),
                    &c.node.name,
                    &c.node.site,
                )),
                dir,
                sweeper,
            ))
        } else {
            None
        };
        let live = Arc::new(Live::default());
        let images_closing = CancellationToken::new();
        let (images, images_task) =
            images::Images::start(live.clone(), labels.clone(), images_closing.clone());
        let figures: Figures = Arc::default();
        let cameras = analysis::Cameras {
            ingest: ingest.clone(),
            service,
            labels,
            publisher,
            images,
            topics: outputs.topics.clone(),
            ids: outputs.ids.clone(),
            figures: figures.clone(),
            snapshots: snapshots.clone(),
            live: live.clone(),
            snoozes: snoozes.clone(),
            cap: cap.clone(),
            site: c.node.site.clone(),
            tracker: c.tracker.clone(),
            count_period: Duration::from_secs(u64::from(c.outbox.count_period_s)),
            evidence: evidence.as_ref().map(|(r, _, _)| r.clone()),
            analysers: Arc::default(),
            fence,
            stages: Arc::default(),
        };
        let cameras_file = base.join(&c.api.cameras_file);
        let loaded = CameraRegistry::load(
            &cameras_file,
            &c.cameras,
            c.ingest.clone(),
            &base,
            Arc::new(cameras.clone()),
        )
        .map_err(NodeError::Start)?;
        if !loaded.overridden.is_empty() {
            tracing::info!(
                file = %cameras_file.display(),
                cameras = %loaded.overridden.join(", "),
                "cameras changed from the console override the config file"
            );
        }
        let fleet_wake = Arc::new(tokio::sync::Notify::new());
        let fleet_db = match (c.fleet.enabled, store_target(&valid)) {
            (true, Some((url, schema))) => Some((url, schema)),
            _ => None,
        };
        let registry = Arc::new(match &fleet_db {
            Some((url, schema)) => {
                loaded
                    .registry
                    .in_fleet(pantau_dashboard_api::cameras::FleetLink {
                        db: Arc::new(Db::new(url.clone(), schema.clone())),
                        node: c.node.name.clone(),
                        lease: Duration::from_secs_f64(c.fleet.lease_s),
                        wake: fleet_wake.clone(),
                    })
            }
            None => loaded.registry,
        });
        let mut started = 0;
        let fleet = fleet_db.map(|(url, schema)| {
            let stop = CancellationToken::new();
            let validate = {
                let registry = registry.clone();
                Arc::new(move |cam: &pantau_config::CameraConfig| {
                    registry.validate(cam).map_err(|e| e.message)
                })
            };
            let task = tokio::spawn(fleet::run(fleet::FleetParts {
                config: c.fleet.clone(),
                node: c.node.name.clone(),
                url,
                schema,
                seed: loaded.cameras.clone(),
                cameras: cameras.clone(),
                validate,
                fence: cameras.fence.clone(),
                wake: fleet_wake.clone(),
                stop: stop.clone(),
            }));
            (task, stop)
        });
        if fleet.is_some() {
            // The fleet loop starts the cameras this node takes a lease on.
            tokio::spawn(fleet::relay(
                outputs.mqtt.clone(),
                outputs.topics.clone(),
                ingest.clone(),
                live.clone(),
                closing.clone(),
            ));
        }
        for camera in loaded.cameras.iter().filter(|_| fleet.is_none()) {
            // One bad camera (e.g. a password variable missing now) never stops the others.
            match registry.validate(camera) {
                Ok(settings) if settings.enabled => match cameras.start(settings).await {
                    Ok(()) => started += 1,
                    Err(e) => tracing::error!(camera = %camera.id, "camera not started: {e}"),
                },
                Ok(_) => {}
                Err(e) => {
                    tracing::error!(camera = %camera.id, "camera not started: {}", e.message)
                }
            }
        }
        tracing::info!(
            node = %c.node.name,
            site = %c.node.site,
            cameras = started,
            "pantau running"
        );
        let api_stop = CancellationToken::new();
        let api = match api_listener {
            Some(listener) if c.api.enabled => {
                let a = &c.api;
                let db = store_target(&valid).map(|(url, schema)| Arc::new(Db::new(url, schema)));
                let mut state = ApiState::new(
                    Arc::new(IngestFeed(ingest.clone())),
                    ApiSettings {
                        session_hours: a.session_hours,
                        login_attempts: a.login_attempts,
                        cors_origins: a.cors_origins.clone(),
                        topics: outputs.topics.clone(),
                        snapshots_dir: snapshots.as_ref().map(|(d, _)| d.clone()),
                        trusted_proxies: a
                            .trusted_proxies
                            .iter()
                            .filter_map(|p| pantau_config::outputs::parse_network(p))
                            .collect(),
                        camera_env_prefix: a.camera_env_prefix.clone(),
                        media_dirs: a
                            .media_dirs
                            .iter()
                            .filter_map(|d| base.join(d).canonicalize().ok())
                            .collect(),
                        metrics: a.metrics,
                        metrics_token: std::env::var(&a.metrics_token_env).ok(),
                        limits: a.limits.clone(),
                        map_tiles: a.map_tiles.clone(),
                        agencies: c.agencies.clone(),
                    },
                );
                state.db = db.clone();
                state.outbox = Some(outputs.outbox.clone());
                state.broker = outputs.broker;
                state.cameras = Some(registry.clone());
                state.live = live.clone();
                state.snoozes = snoozes.clone();
                state.reports = Arc::new(pantau_dashboard_api::reports::Reports::new(
                    pantau_dashboard_api::reports::ReportSettings::from_config(&c.reports, &base),
                ));
                if let (Some(db), true) = (&db, c.reports.enabled) {
                    // Citizen apps learn their reports' progress; stops with the API.
                    tokio::spawn(pantau_dashboard_api::reports::deliver_callbacks(
                        db.clone(),
                        pantau_dashboard_api::reports::CallbackSettings::from_config(&c.reports),
                        api_stop.clone(),
                    ));
                }
                state.evidence = evidence.as_ref().map(|(recorder, dir, _)| {
                    Arc::new(pantau_dashboard_api::evidence::EvidenceAccess {
                        dir: dir.clone(),
                        key: recorder.key().clone(),
                        node: c.node.name.clone(),
                        post_s: c.evidence.post_s,
                        clips: Some(Arc::new(cameras.clone())),
                    })
                });
                if let Some(db) = &db {
                    tokio::spawn(load_snoozes(db.clone(), snoozes.clone()));
                }
                state.shutdown = api_stop.clone();
                if let Some(db) = &db {
                    tokio::spawn(relay_dispatch(
                        db.clone(),
                        outputs.outbox.clone(),
                        outputs.topics.clone(),
                    ));
                }
                match (&db, std::env::var(&a.admin_password_env)) {
                    (Some(db), Ok(password)) => {
                        tokio::spawn(first_admin(db.clone(), a.admin_user.clone(), password));
                    }
                    (None, _) => tracing::warn!(
                        "no [store]: the console cannot log anyone in (users live in the database)"
                    ),
                    (Some(_), Err(_)) => {}
                }
                let local = listener
                    .local_addr()
                    .map_err(|e| NodeError::Start(e.to_string()))?;
                tracing::info!(url = %format!("http://{local}/"), docs = %format!("http://{local}/api/docs"), "web console and HTTP API listening");
                let stop = api_stop.clone();
                let task = tokio::spawn(async move {
                    if let Err(e) =
                        pantau_dashboard_api::serve(listener, state, stop.cancelled_owned()).await
                    {
                        tracing::error!("HTTP API stopped: {e}");
                    }
                });
                Some((local, task))
            }
            _ => None,
        };
        Ok(Self {
            ingest,
            figures,
            cameras,
            outputs,
            publish_task,
            status_task,
            retention,
            evidence_retention: evidence.map(|(_, _, sweeper)| sweeper),
            api,
            api_stop,
            closing,
            publish_closing,
            images_task,
            images_closing,
            fleet,
            drain_timeout: Duration::from_secs(u64::from(c.outbox.drain_timeout_s)),
            _inference: guard,
        })
    }

    pub fn ingest(&self) -> &Arc<Ingest> {
        &self.ingest
    }

    /// The shared inference service (its load: what fair degradation watches).
    pub fn inference(&self) -> &InferenceService {
        &self.cameras.service
    }

    pub fn figures(&self) -> &Figures {
        &self.figures
    }

    /// How long after capture analysed frames reached each stage (newest frames).
    pub fn stage_times(&self) -> &analysis::StageTimes {
        &self.cameras.stages
    }

    /// Where the HTTP API listens, when it runs.
    pub fn api_addr(&self) -> Option<std::net::SocketAddr> {
        self.api.as_ref().map(|(a, _)| *a)
    }

    pub fn outbox(&self) -> &Arc<Outbox> {
        &self.outputs.outbox
    }

    /// Stops in order: sources, analysis (open count windows handed over), publish, sinks
    /// (within the drain timeout), live streams and HTTP.
    pub async fn stop(mut self) -> Stopped {
        tracing::info!("shutting down");
        // The fleet loop first, so it takes no camera while the others stop.
        let mut leases = None;
        if let Some((task, stop)) = &mut self.fleet {
            stop.cancel();
            leases = task.await.ok();
        }
        // The leases stay renewed until the cameras have stopped, so what they hand over as
        // they stop passes the fence.
        let stopping = CancellationToken::new();
        let keeper = leases
            .as_ref()
            .map(|l: &fleet::Leases| l.keep_while_stopping(stopping.clone()));
        let cameras = self.ingest.statuses();
        // Clips waiting for their post-roll are cut now, while the cameras' rings still exist.
        if let Some(recorder) = &self.cameras.evidence {
            recorder
                .flush(self.drain_timeout.max(Duration::from_secs(5)))
                .await;
        }
        self.ingest.shutdown().await;
        self.cameras.join().await;
        stopping.cancel();
        if let Some(k) = keeper {
            let _ = k.await;
        }
        // Stopped (open counts handed over): the other nodes may take the cameras now.
        if let Some(leases) = leases {
            leases.release().await;
        }
        if let Some(r) = &self.retention {
            r.abort();
        }
        if let Some(r) = &self.evidence_retention {
            r.abort();
        }
        // Every producer has stopped: the status watcher publishes the changes of the stop
        // itself, then the publish stage appends what is queued and ends.
        self.closing.cancel();
        let _ = self.status_task.await;
        self.publish_closing.cancel();
        // Snapshots of the last events are written before the node reports it has stopped.
        self.images_closing.cancel();
        let drain = self.drain_timeout.max(Duration::from_secs(1));
        if tokio::time::timeout(drain, self.images_task).await.is_err() {
            tracing::warn!("snapshots still being written at the drain timeout were left");
        }
        let Self {
            outputs,
            publish_task,
            api,
            api_stop,
            drain_timeout,
            _inference,
            ..
        } = self;
        // Appending is local (the outbox on disk), so it is not cut short by the drain
        // timeout, which is for the sinks' remote deliveries; 30 s only guards a broken disk.
        if tokio::time::timeout(Duration::from_secs(30), publish_task)
            .await
            .is_err()
        {
            tracing::error!("the outbox did not take the last events within 30 s; they are lost");
        }
        let undelivered = outputs.stop(drain_timeout).await;
        api_stop.cancel();
        if let Some((_, task)) = api {
            if tokio::time::timeout(Duration::from_secs(5), task)
                .await
                .is_err()
            {
                tracing::warn!("HTTP requests still open after 5 s were cut off");
            }
        }
        drop(_inference);
        tracing::info!("pantau stopped");
        Stopped {
            cameras,
            undelivered,
        }
    }
}

/// Locks a mutex whose data stays valid even if a holder panicked.
pub(crate) fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The next item of a stage's queue; once `closing` is cancelled (its producers have stopped),
/// only what is already queued, then `None`.
pub(crate) async fn next_until_closed<T>(
    rx: &mut tokio::sync::mpsc::Receiver<T>,
    closing: &CancellationToken,
) -> Option<T> {
    tokio::select! {
        biased;
        next = rx.recv() => next,
        _ = closing.cancelled() => rx.try_recv().ok(),
    }
}

/// The API's view of the cameras: this node's ingest.
#[derive(Debug)]
struct IngestFeed(Arc<Ingest>);

impl pantau_dashboard_api::CameraFeed for IngestFeed {
    fn statuses(&self) -> Vec<CameraStatus> {
        self.0.statuses()
    }

    fn status(&self, id: &str) -> Option<CameraStatus> {
        self.0.status(id)
    }

    fn subscribe(&self) -> tokio::sync::broadcast::Receiver<StatusChange> {
        self.0.subscribe()
    }

    fn frame_jpeg(
        &self,
        id: &str,
    ) -> pantau_dashboard_api::cameras::BoxFuture<'_, Result<Vec<u8>, String>> {
        let id = id.to_string();
        Box::pin(async move { self.0.snapshot_jpeg(&id).await.map_err(|e| e.to_string()) })
    }
}

/// A camera state change as a status event.
fn status_event(
    ids: &pantau_events::IdGenerator,
    site: &str,
    change: &StatusChange,
) -> pantau_events::Event {
    let severity = match change.state {
        CameraState::Failed => Severity::Critical,
        CameraState::Stalled | CameraState::BackingOff => Severity::Warning,
        _ if change.problem.is_some() => Severity::Warning,
        _ => Severity::Info,
    };
    camera_status(
        ids,
        site,
        StatusFacts {
            camera: &change.camera_id,
            at: change.at,
            state: change.state.as_str(),
            severity,
            problem: change
                .problem
                .as_ref()
                .map(|p| (p.code, p.message.as_str())),
        },
    )
}

/// Moves dispatch messages a crash left in the database into the outbox, once the database
/// answers.
async fn relay_dispatch(db: Arc<Db>, outbox: Arc<Outbox>, topics: pantau_events::Topics) {
    loop {
        if let Ok(store) = db.store().await {
            match pantau_dashboard_api::incidents::relay_messages(&store, &outbox, &topics).await {
                Ok(0) => {}
                Ok(n) => tracing::warn!(
                    messages = n,
                    "dispatch messages stored before a crash were queued for MQTT"
                ),
                Err(e) => tracing::error!("dispatch messages not relayed: {}", e.message),
            }
            return;
        }
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
}

/// Takes the snoozes still running from the database once it answers.
async fn load_snoozes(db: Arc<Db>, snoozes: Arc<pantau_dashboard_api::snooze::Snoozes>) {
    loop {
        if let Ok(store) = db.store().await {
            match store.snoozes().await {
                Ok(rows) => {
                    if !rows.is_empty() {
                        tracing::info!(snoozes = rows.len(), "snoozed rules taken up again");
                    }
                    snoozes.load(rows);
                    return;
                }
                Err(e) => tracing::warn!("snoozes not read yet: {e}"),
            }
        }
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
}

/// Creates the first admin (or sets its password) once the database answers.
async fn first_admin(db: Arc<Db>, user: String, password: String) {
    let mut warned = false;
    loop {
        match db.store().await {
            Ok(store) => {
                use pantau_dashboard_api::auth::{first_admin, FirstAdmin, Role};
                match first_admin(&store, &user, &password).await {
                    Ok((done, role, disabled)) => {
                        match done {
                            FirstAdmin::Created => {
                                tracing::info!(user = %user, "admin user created")
                            }
                            FirstAdmin::Unchanged => {}
                            FirstAdmin::PasswordSet => tracing::info!(
                                user = %user,
                                "admin user's password set from the environment; its sessions ended"
                            ),
                        }
                        if disabled || role != Some(Role::Admin) {
                            tracing::warn!(
                                user = %user,
                                "the start-up admin was disabled or demoted in the console and stays so; \
                                 `pantau user add {user} --role admin` restores it"
                            );
                        }
                    }
                    Err(e) => tracing::error!(user = %user, "admin user not set up: {}", e.message),
                }
                return;
            }
            Err(e) => {
                if !warned {
                    tracing::warn!("admin user waits for the database: {}", e.message);
                    warned = true;
                }
                tokio::time::sleep(Duration::from_secs(5)).await;
            }
        }
    }
}

/// Deletes snapshots older than `keep` (and folders left empty); returns how many.
fn prune(dir: &std::path::Path, keep: Duration) -> usize {
    let mut removed = 0;
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            removed += prune(&path, keep);
            let _ = std::fs::remove_dir(&path); // only succeeds when empty
        } else if entry
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age > keep)
            && std::fs::remove_file(&path).is_ok()
        {
            removed += 1;
        }
    }
    removed
}
