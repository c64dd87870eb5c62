//! `pantau serve-rtsp`: video files as looping RTSP cameras.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use pantau_ingest::serve::{Mount, RtspServer, ServeOptions};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Files to serve; each becomes rtsp://ADDRESS:PORT/<file stem>, or /NAME with NAME=FILE.
    #[arg(required = true)]
    files: Vec<String>,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    address: String,
    /// Port to listen on.
    #[arg(long, default_value_t = 8554)]
    port: u16,
    /// Require this user name (with --password).
    #[arg(long, requires = "password")]
    user: Option<String>,
    /// Require this password (with --user). Prefer the PANTAU_RTSP_PASSWORD variable.
    #[arg(long, env = "PANTAU_RTSP_PASSWORD", hide_env_values = true)]
    password: Option<String>,
}

pub fn mounts_for(files: &[String]) -> Vec<Mount> {
    files
        .iter()
        .map(|f| match f.split_once('=') {
            Some((name, file)) if !name.contains('/') => Mount {
                path: format!("/{name}"),
                file: PathBuf::from(file),
            },
            _ => Mount::for_file(&PathBuf::from(f)),
        })
        .collect()
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    super::init_logging("info");
    let credentials = match (args.user, args.password) {
        (Some(u), Some(p)) => Some((u, p)),
        _ => None,
    };
    let server = RtspServer::start(ServeOptions {
        address: args.address,
        port: args.port,
        mounts: mounts_for(&args.files),
        credentials,
    })
    .context("cannot start the RTSP server")?;
    for m in server.mounts() {
        println!("{}  <-  {}", server.url(&m.path), m.file.display());
    }
    println!("serving; Ctrl-C stops");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async { tokio::signal::ctrl_c().await })?;
    server.stop();
    Ok(ExitCode::SUCCESS)
}
