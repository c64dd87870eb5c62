//! `pantau check-config FILE`.

use std::path::Path;
use std::process::ExitCode;

use pantau_core::{Config, ConfigError};

pub fn run(file: &Path) -> ExitCode {
    match Config::load(file) {
        Ok(valid) => {
            let c = &valid.config;
            println!(
                "{}: OK. node \"{}\" at site \"{}\", {} camera{}:",
                file.display(),
                c.node.name,
                c.node.site,
                valid.cameras.len(),
                if valid.cameras.len() == 1 { "" } else { "s" }
            );
            for cam in &valid.cameras {
                println!(
                    "  {:<20} {:<6} {}{} (analysis {} fps at {} px wide)",
                    cam.id,
                    cam.source.kind(),
                    cam.source.redacted(),
                    if cam.enabled { "" } else { " [disabled]" },
                    cam.analysis_fps,
                    cam.analysis_width
                );
            }
            ExitCode::SUCCESS
        }
        Err(ConfigError::Invalid { path, issues }) => {
            eprintln!("{}: {issues}", path.display());
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}
