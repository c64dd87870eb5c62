//! `pantau run` and `pantau demo`: sources -> (analysis) -> status.
//!
//! Today every camera's frames are taken by a consumer that stands where detection, tracking
//! and rules will be; the status view shows what ingest does.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use pantau_core::{Config, ConfigError};
use pantau_ingest::serve::{Mount, RtspServer, ServeOptions};
use pantau_ingest::Ingest;

use super::status_view::StatusView;

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
    let result = rt.block_on(async move {
        let ingest = Arc::new(Ingest::new()?);
        for problem in pantau_ingest::check_elements() {
            tracing::warn!("{problem}");
        }
        let mut consumers = Vec::new();
        for camera in valid.cameras.iter().filter(|c| c.enabled) {
            let mut frames = ingest.add(camera.clone())?;
            // Stand-in for analysis (detection, tracking, rules): takes every frame handed over.
            consumers.push(tokio::spawn(async move {
                while let Some(frame) = frames.recv().await {
                    drop(frame);
                }
            }));
        }
        tracing::info!(
            node = %valid.config.node.name,
            site = %valid.config.node.site,
            cameras = consumers.len(),
            "pantau running"
        );
        let mut view = StatusView::new(ingest.clone(), table);
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
        for c in consumers {
            let _ = c.await;
        }
        view.print_final(&last);
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
