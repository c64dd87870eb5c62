//! `pantau check-config FILE`.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use pantau_config::{Config, ConfigError};

pub fn run(file: &Path) -> ExitCode {
    match Config::load(file) {
        Ok(valid) => {
            // Writes ignore a closed pipe (`pantau check-config x | head`).
            let mut out = std::io::stdout().lock();
            let c = &valid.config;
            let _ = writeln!(
                out,
                "{}: OK. node \"{}\" at site \"{}\", {} camera{}:",
                file.display(),
                c.node.name,
                c.node.site,
                valid.cameras.len(),
                if valid.cameras.len() == 1 { "" } else { "s" }
            );
            let base = file.parent().unwrap_or(Path::new("."));
            match pantau_analytics::detect::onnx::check(&c.detector, base) {
                Ok(model) => drop(writeln!(
                    out,
                    "  detector: {} ({} labels), classes {}",
                    model.manifest.name,
                    model.labels.len(),
                    c.detector.classes.join(", ")
                )),
                Err(e) => {
                    eprintln!("{}: detector: {e}", file.display());
                    return ExitCode::FAILURE;
                }
            }
            for cam in &valid.cameras {
                let _ = writeln!(
                    out,
                    "  {:<20} {:<6} {}{} (analysis {} fps at {}; {} lines, {} zones)",
                    cam.id,
                    cam.source.kind(),
                    cam.source.redacted(),
                    if cam.enabled { "" } else { " [disabled]" },
                    cam.analysis_fps,
                    cam.analysis_width
                        .map_or("the detector's input size".to_string(), |w| format!(
                            "{w} px wide"
                        )),
                    cam.lines.len(),
                    cam.zones.len()
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
