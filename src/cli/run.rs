//! `pantau run` and `pantau demo`: the binary's side of a running node (`pantau-node`): the
//! config file, the demo's RTSP server and login, the status view and the signals. SIGINT or
//! SIGTERM stops the node cleanly; a second signal exits at once.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use pantau_config::{Config, ConfigError};
use pantau_ingest::serve::{Mount, RtspServer, ServeOptions};
use pantau_node::{Node, NodeConfig};

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
        let listener = if valid.config.api.enabled {
            let addr: std::net::SocketAddr = valid.config.api.listen.parse()?;
            Some(tokio::net::TcpListener::bind(addr).await.with_context(|| {
                format!(
                    "cannot listen on {addr} for the HTTP API; set api.listen to a free address"
                )
            })?)
        } else {
            None
        };
        let node = Node::start(NodeConfig { valid, base }, listener).await?;
        let banner = match (&login, node.api_addr()) {
            (Some(login), Some(local)) => {
                let line = format!("Console: http://{local}/   log in as {login}");
                println!("\n  {line}\n");
                Some(line)
            }
            _ => None,
        };
        let mut view = StatusView::new(node.ingest().clone(), node.figures().clone(), table)
            .with_banner(banner);
        let stop = async {
            match opts.duration_s {
                Some(s) => tokio::time::sleep(Duration::from_secs(s)).await,
                None => first_signal().await,
            }
        };
        view.run_until(stop).await;
        // A second signal while stopping exits at once.
        tokio::spawn(async {
            first_signal().await;
            eprintln!("second signal: exiting now; undelivered records stay in the outbox");
            std::process::exit(130);
        });
        let stopped = node.stop().await;
        view.print_final(&stopped.cameras);
        anyhow::Ok(())
    });
    if let Some(server) = server {
        server.stop();
    }
    result.map(|_| ExitCode::SUCCESS)
}

/// SIGINT (Ctrl-C) or SIGTERM (service managers, `docker stop`).
async fn first_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
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

/// 16 characters from an alphabet without look-alikes.
fn random_password() -> String {
    use rand::Rng;
    const ALPHABET: &[u8] = b"abcdefghjkmnpqrstuvwxyzACDEFGHJKLMNPQRSTUVWXYZ23456789";
    let mut rng = rand::rng();
    (0..16)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect()
}
