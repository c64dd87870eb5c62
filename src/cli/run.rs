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
use pantau_analytics::snapshot::render;
use pantau_dashboard_api::ApiState;
use pantau_ingest::FrameReceiver;
use pantau_sinks::store::Store;

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
        let detector = {
            let base = base.clone();
            tokio::task::spawn_blocking(move || Detector::load(&detector_config, &base))
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
            let dir = if valid.config.snapshots.dir.is_absolute() {
                valid.config.snapshots.dir.clone()
            } else {
                base.join(&valid.config.snapshots.dir)
            };
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
        let mut analysers = Vec::new();
        for camera in valid.cameras.iter().filter(|c| c.enabled) {
            let frames = ingest.add(camera.clone())?;
            let scene = Scene::new(&camera.lines, &camera.zones, &valid.config.tracker);
            let events = EventFacts::new(
                &valid.config.node.site,
                &camera.id,
                camera.lines.iter().map(|l| l.name.clone()).collect(),
                labels.clone(),
                outputs.ids.clone(),
                Duration::from_secs(u64::from(valid.config.outbox.count_period_s)),
            );
            analysers.push(tokio::spawn(analyse_camera(
                camera.id.clone(),
                frames,
                service.clone(),
                scene,
                facts.clone(),
                labels.clone(),
                CameraOutputs {
                    events,
                    outputs: outputs.clone(),
                    ingest: ingest.clone(),
                    snapshots: snapshots.clone(),
                },
            )));
        }
        tracing::info!(
            node = %valid.config.node.name,
            site = %valid.config.node.site,
            cameras = analysers.len(),
            "pantau running"
        );
        let api_stop = tokio_util::sync::CancellationToken::new();
        let api_task = if valid.config.api.enabled {
            let addr: std::net::SocketAddr = valid.config.api.listen.parse()?;
            let listener = tokio::net::TcpListener::bind(addr).await.with_context(|| {
                format!("cannot listen on {addr} for the HTTP API; set api.listen to a free address")
            })?;
            let store = match super::outputs::store_target(&valid) {
                Some((url, schema)) => match Store::connect(&url, &schema).await {
                    Ok(s) => Some(Arc::new(s)),
                    Err(e) => {
                        tracing::warn!("the API serves no history until the store is reachable at start-up: {e}");
                        None
                    }
                },
                None => None,
            };
            let state = ApiState {
                ingest: ingest.clone(),
                store,
                outbox: Some(outputs.outbox.clone()),
                broker: outputs.broker,
            };
            let local = listener.local_addr()?;
            tracing::info!(url = %format!("http://{local}"), "HTTP API listening (/api/v1/cameras, /api/v1/history, /metrics, /readyz)");
            let stop = api_stop.clone();
            Some(tokio::spawn(pantau_dashboard_api::serve(listener, state, async move {
                stop.cancelled().await
            })))
        } else {
            None
        };
        let mut view = StatusView::new(ingest.clone(), facts.clone(), table);
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
        for a in analysers {
            let _ = a.await;
        }
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
        if let (Some((dir, quality)), Some(first)) = (&out.snapshots, new_events.first()) {
            let name = format!(
                "{id}/{}/{}.jpg",
                &pantau_events::time::format(first.captured_at)[..10],
                first.id
            );
            // A snapshot is a few tens of ms of conversion and encoding: keep it off the
            // other cameras' async workers.
            let taken = tokio::task::block_in_place(|| -> Result<(), String> {
                let (bgr, w, h) = out.ingest.latest_bgr(&id).map_err(|e| e.to_string())?;
                let jpeg = render(&bgr, w, h, a.scene, a.update, &labels, *quality)
                    .map_err(|e| e.to_string())?;
                let path = dir.join(&name);
                if let Some(parent) = path.parent() {
                    std::fs::create_dir_all(parent).map_err(|e| e.to_string())?;
                }
                std::fs::write(&path, jpeg).map_err(|e| format!("{}: {e}", path.display()))
            });
            match taken {
                Ok(()) => {
                    for e in &mut new_events {
                        e.snapshot = Some(name.clone());
                    }
                }
                Err(e) => tracing::warn!(camera = %id, "no snapshot for this event: {e}"),
            }
        }
        let outputs = &out.outputs;
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
}

/// Where one camera's facts go.
struct CameraOutputs {
    events: EventFacts,
    outputs: Arc<Outputs>,
    ingest: Arc<Ingest>,
    /// Snapshot folder and JPEG quality, when snapshots are on.
    snapshots: Option<(std::path::PathBuf, u8)>,
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
