//! `pantau run` and `pantau demo`: sources -> (analysis) -> status.
//!
//! Every camera: ingest -> shared detector -> tracker -> lines and zones. Crossings and zone
//! changes are logged; the status view shows ingest state and live counts.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use pantau_core::{Config, ConfigError};
use pantau_ingest::serve::{Mount, RtspServer, ServeOptions};
use pantau_ingest::Ingest;

use super::outputs::Outputs;
use super::status_view::{Facts, StatusView};
use pantau_analytics::camera::{analyse, Analysed};
use pantau_analytics::detect::onnx::{DetectError, Detector};
use pantau_analytics::detect::service::InferenceService;
use pantau_analytics::facts::Facts as EventFacts;
use pantau_analytics::rules::Direction;
use pantau_analytics::scene::Scene;
use pantau_analytics::snapshot::{render, render_analysed};
use pantau_core::config::CameraSettings;
use pantau_core::TrackerConfig;
use pantau_dashboard_api::cameras::BoxFuture;
use pantau_dashboard_api::{
    ApiSettings, ApiState, CameraControl, CameraRegistry, Db, Live, LiveMessage,
};
use pantau_ingest::FrameReceiver;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum View {
    /// A live table on a terminal, log lines otherwise.
    Auto,
    /// Always the live table.
    Table,
    /// Always log lines.
    Log,
}

#[derive(Debug)]
pub struct Options {
    pub config: PathBuf,
    pub view: View,
    pub duration_s: Option<u64>,
    /// Serve every clip in this folder over RTSP on this port first (the demo).
    pub serve: Option<(PathBuf, u16)>,
    /// Print the console URL and the admin login once the API listens (the demo).
    pub announce_login: bool,
}

pub fn run(opts: Options) -> anyhow::Result<ExitCode> {
    let table = match opts.view {
        View::Auto => std::io::stdout().is_terminal(),
        View::Table => true,
        View::Log => false,
    };
    super::init_logging(if table { "warn" } else { "info" });

    let valid = match Config::load(&opts.config) {
        Ok(v) => v,
        Err(ConfigError::Invalid { path, issues }) => {
            eprintln!("{}: {issues}", path.display());
            return Ok(ExitCode::FAILURE);
        }
        Err(e) => return Err(e.into()),
    };

    // The demo logs in as the first admin: with no password given in the environment, it
    // makes a fresh random one for this run and prints it with the console's address.
    let login = opts.announce_login.then(|| {
        let api = &valid.config.api;
        let password = match std::env::var(&api.admin_password_env) {
            Ok(p) => p,
            Err(_) => {
                let p = random_password();
                // Before any thread starts (the RTSP server and runtime come next).
                std::env::set_var(&api.admin_password_env, &p);
                p
            }
        };
        format!("{} / {password}", api.admin_user)
    });

    let server = match &opts.serve {
        Some((folder, port)) => Some(serve_folder(folder, *port)?),
        None => None,
    };

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let base = opts
        .config
        .parent()
        .unwrap_or(std::path::Path::new("."))
        .to_path_buf();
    let result = rt.block_on(async move {
        let detector_config = valid.config.detector.clone();
        let floor = valid.config.tracker.low_score;
        let detector = {
            let base = base.clone();
            tokio::task::spawn_blocking(move || Detector::load(&detector_config, &base, floor))
        }
        .await??;
        tracing::info!(model = detector.model_name(), "detector loaded");
        let labels = Arc::new(detector.labels().to_vec());
        let (service, _guard) = InferenceService::start(detector);
        let outputs = Arc::new(Outputs::start(&valid, &base).await?);
        let ingest = Arc::new(Ingest::new()?);
        let status_task = {
            let mut changes = ingest.subscribe();
            let outputs = outputs.clone();
            let site = valid.config.node.site.clone();
            tokio::spawn(async move {
                loop {
                    match changes.recv().await {
                        Ok(change) => outputs.append(&[outputs.status_record(&site, &change)]),
                        Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                            tracing::warn!(missed = n, "camera status changes were published late")
                        }
                        Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                    }
                }
            })
        };
        for problem in pantau_ingest::check_elements() {
            tracing::warn!("{problem}");
        }
        let facts: Facts = Arc::default();
        let snapshots = valid.config.snapshots.enabled.then(|| {
            // `join` keeps an absolute path as it is.
            let dir = base.join(&valid.config.snapshots.dir);
            (dir, valid.config.snapshots.quality)
        });
        let retention = snapshots.as_ref().map(|(dir, _)| {
            let dir = dir.clone();
            let keep =
                Duration::from_secs(86_400 * u64::from(valid.config.snapshots.retention_days));
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
        let live = Arc::new(Live::default());
        let node = Node {
            ingest: ingest.clone(),
            service: service.clone(),
            labels: labels.clone(),
            outputs: outputs.clone(),
            facts: facts.clone(),
            snapshots: snapshots.clone(),
            live: live.clone(),
            site: valid.config.node.site.clone(),
            tracker: valid.config.tracker.clone(),
            count_period: Duration::from_secs(u64::from(valid.config.outbox.count_period_s)),
            analysers: Arc::default(),
        };
        let cameras_file = base.join(&valid.config.api.cameras_file);
        let loaded = CameraRegistry::load(
            &cameras_file,
            &valid.config.cameras,
            valid.config.ingest.clone(),
            &base,
            Arc::new(node.clone()),
        )
        .map_err(anyhow::Error::msg)?;
        if !loaded.overridden.is_empty() {
            tracing::info!(
                file = %cameras_file.display(),
                cameras = %loaded.overridden.join(", "),
                "cameras changed from the console override the config file"
            );
        }
        let registry = Arc::new(loaded.registry);
        let mut started = 0;
        for camera in &loaded.cameras {
            // One bad camera (e.g. a password variable missing now) never stops the others.
            match registry.validate(camera) {
                Ok(settings) if settings.enabled => match node.start(settings).await {
                    Ok(()) => started += 1,
                    Err(e) => tracing::error!(camera = %camera.id, "camera not started: {e}"),
                },
                Ok(_) => {}
                Err(e) => tracing::error!(camera = %camera.id, "camera not started: {}", e.message),
            }
        }
        tracing::info!(
            node = %valid.config.node.name,
            site = %valid.config.node.site,
            cameras = started,
            "pantau running"
        );
        let api_stop = tokio_util::sync::CancellationToken::new();
        let mut banner = None;
        let api_task = if valid.config.api.enabled {
            let addr: std::net::SocketAddr = valid.config.api.listen.parse()?;
            let listener = tokio::net::TcpListener::bind(addr).await.with_context(|| {
                format!("cannot listen on {addr} for the HTTP API; set api.listen to a free address")
            })?;
            let api = &valid.config.api;
            let db = super::outputs::store_target(&valid)
                .map(|(url, schema)| Arc::new(Db::new(url, schema)));
            let mut state = ApiState::new(
                ingest.clone(),
                ApiSettings {
                    session_hours: api.session_hours,
                    login_attempts: api.login_attempts,
                    cors_origins: api.cors_origins.clone(),
                    mqtt_prefix: outputs.topics.prefix.clone(),
                    snapshots_dir: snapshots.as_ref().map(|(d, _)| d.clone()),
                },
            );
            state.db = db.clone();
            state.outbox = Some(outputs.outbox.clone());
            state.broker = outputs.broker;
            state.cameras = Some(registry.clone());
            state.live = live.clone();
            match (&db, std::env::var(&api.admin_password_env)) {
                (Some(db), Ok(password)) => {
                    tokio::spawn(first_admin(db.clone(), api.admin_user.clone(), password));
                }
                (None, _) => tracing::warn!("no [store]: the console cannot log anyone in (users live in the database)"),
                (Some(_), Err(_)) => {}
            }
            let local = listener.local_addr()?;
            tracing::info!(url = %format!("http://{local}/"), docs = %format!("http://{local}/api/docs"), "web console and HTTP API listening");
            if let Some(login) = &login {
                let line = format!("Console: http://{local}/   log in as {login}");
                println!("\n  {line}\n");
                banner = Some(line);
            }
            let stop = api_stop.clone();
            Some(tokio::spawn(pantau_dashboard_api::serve(listener, state, async move {
                stop.cancelled().await
            })))
        } else {
            None
        };
        let mut view = StatusView::new(ingest.clone(), facts.clone(), table).with_banner(banner);
        let stop = async {
            match opts.duration_s {
                Some(s) => tokio::time::sleep(Duration::from_secs(s)).await,
                None => {
                    let _ = tokio::signal::ctrl_c().await;
                }
            }
        };
        view.run_until(stop).await;
        tracing::info!("shutting down");
        let last = ingest.statuses();
        ingest.shutdown().await;
        node.join().await;
        status_task.abort();
        api_stop.cancel();
        if let Some(api) = api_task {
            let _ = api.await;
        }
        if let Some(r) = retention {
            r.abort();
        }
        let _ = status_task.await;
        view.print_final(&last);
        match Arc::try_unwrap(outputs) {
            Ok(outputs) => outputs.stop(Duration::from_secs(5)).await,
            Err(_) => tracing::warn!(
                "outputs still in use at shutdown; undelivered records stay in the outbox"
            ),
        }
        anyhow::Ok(())
    });
    if let Some(server) = server {
        server.stop();
    }
    result.map(|_| ExitCode::SUCCESS)
}

fn serve_folder(folder: &std::path::Path, port: u16) -> anyhow::Result<RtspServer> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(folder)
        .with_context(|| format!("cannot read the clip folder {}", folder.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            matches!(
                p.extension().and_then(|e| e.to_str()),
                Some("mp4" | "avi" | "mkv" | "mov" | "ts")
            )
        })
        .collect();
    files.sort();
    let mounts: Vec<Mount> = files.iter().map(|f| Mount::for_file(f)).collect();
    let server = RtspServer::start(ServeOptions {
        address: "127.0.0.1".into(),
        port,
        mounts,
        credentials: None,
    })
    .context("cannot start the demo RTSP server")?;
    for m in server.mounts() {
        tracing::info!(url = %server.url(&m.path), file = %m.file.display(), "serving clip as a camera");
    }
    Ok(server)
}

/// One camera's analysis; ends when the camera is removed.
async fn analyse_camera(
    id: String,
    frames: FrameReceiver,
    service: InferenceService,
    scene: Scene,
    facts: Facts,
    labels: Arc<Vec<String>>,
    mut out: CameraOutputs,
) {
    let name = |c: u16| {
        labels
            .get(c as usize)
            .cloned()
            .unwrap_or_else(|| c.to_string())
    };
    let result = analyse(frames, service, scene, |a: Analysed<'_>| -> Result<(), DetectError> {
        let (mut new_events, aggregates) = out.events.frame(
            a.frame.capture_time,
            &a.update.tracks,
            &a.update.crossings,
            &a.update.zone_events,
        );
        let mut snapshot = None;
        if let (Some((dir, quality)), Some(first)) = (&out.snapshots, new_events.first()) {
            let name = format!(
                "{id}/{}/{}.jpg",
                &pantau_events::time::format(first.captured_at)[..10],
                first.id
            );
            // A snapshot is a few tens of ms of conversion and encoding: keep it off the
            // other cameras' async workers.
            let taken = tokio::task::block_in_place(|| -> Result<Vec<u8>, String> {
                let jpeg = annotated_jpeg(&out.ingest, &id, &a, &labels, *quality)?;
                let path = dir.join(&name);
                if let Some(parent) = path.parent() {
                    std::fs::create_dir_all(parent).map_err(|e| e.to_string())?;
                }
                std::fs::write(&path, &jpeg).map_err(|e| format!("{}: {e}", path.display()))?;
                Ok(jpeg)
            });
            match taken {
                Ok(jpeg) => {
                    for e in &mut new_events {
                        e.snapshot = Some(name.clone());
                    }
                    snapshot = Some(jpeg);
                }
                Err(e) => tracing::warn!(camera = %id, "no snapshot for this event: {e}"),
            }
        }
        let outputs = &out.outputs;
        out.live.record_inference(&id, a.timings.inference_ms);
        let now = std::time::SystemTime::now();
        for e in &new_events {
            out.live.record_event(&id, now.duration_since(e.captured_at).unwrap_or_default());
            out.live.publish(LiveMessage::new("event", &id, Some(&e.rule), serde_json::to_string(e).unwrap_or_default()));
        }
        // The wall's annotated frame, a few times a second while someone watches (the
        // snapshot just taken of this frame when there is one).
        if out.live.frame_due(&id, Duration::from_millis(300)) {
            let drawn = match snapshot {
                Some(jpeg) => Ok(jpeg),
                None => tokio::task::block_in_place(|| {
                    annotated_jpeg(&out.ingest, &id, &a, &labels, 70)
                }),
            };
            match drawn {
                Ok(jpeg) => out.live.put_frame(&id, jpeg),
                Err(e) => tracing::debug!(camera = %id, "no annotated frame: {e}"),
            }
        }
        let mut records: Vec<_> = new_events.iter().map(|e| outputs.event_record(e)).collect();
        for t in out.events.track_summaries(a.frame.capture_time, &a.update.tracks) {
            let topic = outputs.topics.tracks(&t.camera);
            records.push(pantau_sinks::mqtt::record(&topic, false, serde_json::to_vec(&t).unwrap_or_default()));
        }
        for agg in &aggregates {
            let topic = outputs.topics.counts(&agg.camera);
            records.push(pantau_sinks::mqtt::record(&topic, false, serde_json::to_vec(agg).unwrap_or_default()));
        }
        outputs.append(&records);
        for c in &a.update.crossings {
            tracing::info!(camera = %id, line = %c.line, direction = c.direction.as_str(), class = %name(c.class), track = c.track_id, "line crossing");
        }
        for z in &a.update.zone_events {
            tracing::info!(camera = %id, zone = %z.zone, kind = ?z.kind, class = %name(z.class), track = z.track_id, "zone");
        }
        let mut all = facts.lock().unwrap_or_else(|p| p.into_inner());
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
    // The camera stopped or restarts with new settings: keep the counts of the open period.
    let records: Vec<_> = out
        .events
        .finish()
        .iter()
        .map(|agg| {
            let topic = out.outputs.topics.counts(&agg.camera);
            pantau_sinks::mqtt::record(&topic, false, serde_json::to_vec(agg).unwrap_or_default())
        })
        .collect();
    out.outputs.append(&records);
}

/// The analysed frame's boxes, lines and zones drawn on the newest full-resolution frame, as
/// JPEG; on the analysed frame itself once the full-resolution one is gone (the camera is
/// stopping while its last frames are analysed).
fn annotated_jpeg(
    ingest: &Ingest,
    id: &str,
    a: &Analysed<'_>,
    labels: &[String],
    quality: u8,
) -> Result<Vec<u8>, String> {
    match ingest.latest_bgr(id) {
        Ok((bgr, w, h)) => render(&bgr, w, h, a.scene, a.update, labels, quality),
        Err(e) => {
            tracing::debug!(camera = %id, "drawing on the analysed frame: {e}");
            render_analysed(a.frame, a.scene, a.update, labels, quality)
        }
    }
    .map_err(|e| e.to_string())
}

/// Where one camera's facts go.
struct CameraOutputs {
    events: EventFacts,
    outputs: Arc<Outputs>,
    ingest: Arc<Ingest>,
    live: Arc<Live>,
    /// Snapshot folder and JPEG quality, when snapshots are on.
    snapshots: Option<(std::path::PathBuf, u8)>,
}

/// What every camera's analysis shares; starts, restarts and stops cameras (also for the API).
#[derive(Clone)]
struct Node {
    ingest: Arc<Ingest>,
    service: InferenceService,
    labels: Arc<Vec<String>>,
    outputs: Arc<Outputs>,
    facts: Facts,
    snapshots: Option<(PathBuf, u8)>,
    live: Arc<Live>,
    site: String,
    tracker: TrackerConfig,
    count_period: Duration,
    analysers:
        Arc<tokio::sync::Mutex<std::collections::HashMap<String, tokio::task::JoinHandle<()>>>>,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("site", &self.site)
            .finish_non_exhaustive()
    }
}

impl Node {
    /// Starts `camera` (ingest and analysis), replacing it when it runs; a disabled camera is
    /// stopped.
    async fn start(&self, camera: CameraSettings) -> Result<(), String> {
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
        // The old analysis ends with its frame queue.
        if let Some(task) = analysers.remove(&camera.id) {
            let _ = task.await;
        }
        let scene = Scene::new(&camera.lines, &camera.zones, &self.tracker);
        let events = EventFacts::new(
            &self.site,
            &camera.id,
            camera.lines.iter().map(|l| l.name.clone()).collect(),
            self.labels.clone(),
            self.outputs.ids.clone(),
            self.count_period,
        )
        .with_zones(&camera.zones);
        let task = tokio::spawn(analyse_camera(
            camera.id.clone(),
            frames,
            self.service.clone(),
            scene,
            self.facts.clone(),
            self.labels.clone(),
            CameraOutputs {
                events,
                outputs: self.outputs.clone(),
                ingest: self.ingest.clone(),
                live: self.live.clone(),
                snapshots: self.snapshots.clone(),
            },
        ));
        analysers.insert(camera.id, task);
        Ok(())
    }

    async fn stop(&self, id: &str) -> Result<(), String> {
        let mut analysers = self.analysers.lock().await;
        if self.ingest.status(id).is_some() {
            self.ingest.remove(id).await.map_err(|e| e.to_string())?;
        }
        if let Some(task) = analysers.remove(id) {
            let _ = task.await;
        }
        self.live.forget(id);
        self.facts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(id);
        Ok(())
    }

    /// Waits for every analysis to end (after ingest shut down).
    async fn join(&self) {
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

impl CameraControl for Node {
    fn apply(&self, settings: CameraSettings) -> BoxFuture<'_, Result<(), String>> {
        Box::pin(self.start(settings))
    }

    fn remove(&self, id: String) -> BoxFuture<'_, Result<(), String>> {
        Box::pin(async move { self.stop(&id).await })
    }
}

/// Creates the first admin (or sets its password) once the database answers.
async fn first_admin(db: Arc<Db>, user: String, password: String) {
    let mut warned = false;
    loop {
        match db.store().await {
            Ok(store) => {
                match pantau_dashboard_api::auth::upsert_user(
                    &store,
                    &user,
                    pantau_dashboard_api::auth::Role::Admin,
                    &password,
                )
                .await
                {
                    Ok(true) => tracing::info!(user = %user, "admin user created"),
                    Ok(false) => {
                        tracing::info!(user = %user, "admin user's password set from the environment")
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

/// 16 characters from an alphabet without look-alikes.
fn random_password() -> String {
    use rand::Rng;
    const ALPHABET: &[u8] = b"abcdefghjkmnpqrstuvwxyzACDEFGHJKLMNPQRSTUVWXYZ23456789";
    let mut rng = rand::rng();
    (0..16)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect()
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
