//! `pantau`: camera streams in, traffic and incident facts out.
//!
//! Subcommands: `run` (the server), `demo` (bundled clips served as RTSP cameras and ingested),
//! `check-config`, `serve-rtsp`.

mod cli;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let args = cli::Cli::parse();
    match cli::dispatch(args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
