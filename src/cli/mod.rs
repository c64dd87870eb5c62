//! Command-line front end. Each subcommand lives in its own module.

mod annotate;
mod bench;
mod check_config;
mod evidence;
mod integration;
mod mot_eval;
mod replay;
mod run;
mod serve_rtsp;
mod status_view;
mod user;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "pantau",
    version,
    about = "Camera streams to traffic and incident facts for city command centers"
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run pantau with a configuration file.
    Run {
        /// Configuration file (TOML). See config/example.toml.
        #[arg(short, long, default_value = "config/pantau.toml")]
        config: PathBuf,
        /// Show a live status table even when stdout is not a terminal (or never: --view=log).
        #[arg(long, value_enum, default_value_t = run::View::Auto)]
        view: run::View,
        /// Stop after this many seconds (for scripted checks); runs until Ctrl-C otherwise.
        #[arg(long)]
        duration_s: Option<u64>,
    },
    /// Serve the bundled clips as RTSP cameras and run pantau on them.
    Demo {
        #[arg(short, long, default_value = "config/demo.toml")]
        config: PathBuf,
        /// Folder of clips to serve, one mount per file (named after the file).
        #[arg(long, default_value = "demo/videos")]
        videos: PathBuf,
        /// RTSP port for the clips (the demo config points its cameras here).
        #[arg(long, default_value_t = 8554)]
        rtsp_port: u16,
        #[arg(long, value_enum, default_value_t = run::View::Auto)]
        view: run::View,
        #[arg(long)]
        duration_s: Option<u64>,
    },
    /// Check a configuration file: lists every problem, or a summary when it is valid.
    CheckConfig {
        /// Configuration file (TOML).
        file: PathBuf,
    },
    /// Serve video files as looping live RTSP H.264 streams (transcoding what is not H.264).
    ServeRtsp(serve_rtsp::Args),
    /// Run the analytics of a live camera on a video file: counts, tracks, annotated video.
    Replay(replay::Args),
    /// Score a MOTChallenge track file against ground truth (MOTA, IDF1, ID switches).
    MotEval(mot_eval::Args),
    /// Benchmarks of a running node: how many cameras it holds (`cameras`), and a long run with
    /// an outage (`soak`).
    #[command(subcommand)]
    Bench(bench::BenchCommand),
    /// Manage console users (stored in the configured database).
    #[command(subcommand)]
    User(user::Command),
    /// Evidence clips: check a clip or an exported zip (`verify`), print the node's key (`key`).
    #[command(subcommand)]
    Evidence(evidence::Command),
    /// Manage integrations: citizen apps that send reports (stored in the configured database).
    #[command(subcommand)]
    Integration(integration::Command),
}

pub fn dispatch(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::CheckConfig { file } => Ok(check_config::run(&file)),
        Command::ServeRtsp(args) => serve_rtsp::run(args),
        Command::Replay(args) => replay::run(args),
        Command::MotEval(args) => mot_eval::run(args),
        Command::User(cmd) => user::run(cmd),
        Command::Evidence(cmd) => evidence::run(cmd),
        Command::Integration(cmd) => integration::run(cmd),
        Command::Bench(cmd) => bench::run(cmd),
        Command::Run {
            config,
            view,
            duration_s,
        } => run::run(run::Options {
            config,
            view,
            duration_s,
            serve: None,
            announce_login: false,
        }),
        Command::Demo {
            config,
            videos,
            rtsp_port,
            view,
            duration_s,
        } => run::run(run::Options {
            config,
            view,
            duration_s,
            serve: Some((videos, rtsp_port)),
            announce_login: true,
        }),
    }
}

/// Logs to stderr; `RUST_LOG` overrides `default`.
pub(crate) fn init_logging(default: &str) {
    // The embedded broker logs every connection at info; keep its warnings.
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(format!("{default},rumqttd=warn")));
    // Colour only on a terminal: log files and journald get plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr)
        .try_init();
}
