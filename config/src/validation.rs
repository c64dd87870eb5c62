//! Checking a configuration: every problem at once, each with its path and what to do; the
//! result is a [`ValidConfig`] with every camera's settings resolved.

#![allow(unused_imports)]
use std::collections::HashSet;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use url::Url;

use crate::cameras::*;
#[allow(unused_imports)]
use crate::config::*;
#[allow(unused_imports)]
use crate::secret::Secret;
use crate::sources::*;

/// One problem in a configuration: where, and what to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigIssue {
    /// Path of the offending value, e.g. `cameras[1].url`.
    pub path: String,
    /// What is wrong and how to fix it.
    pub message: String,
}

impl fmt::Display for ConfigIssue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// All problems found in one configuration.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConfigIssues(pub Vec<ConfigIssue>);

impl ConfigIssues {
    pub(crate) fn push(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.0.push(ConfigIssue {
            path: path.into(),
            message: message.into(),
        });
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &ConfigIssue> {
        self.0.iter()
    }
}

impl fmt::Display for ConfigIssues {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0.len();
        writeln!(
            f,
            "{n} problem{} in the configuration:",
            if n == 1 { "" } else { "s" }
        )?;
        for issue in &self.0 {
            writeln!(f, "  - {issue}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigIssues {}

/// Why a configuration could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("config file {path} is not valid TOML for pantau: {message} (see config/example.toml for every option)")]
    Parse { path: PathBuf, message: String },
    #[error("config file {path}: {issues}")]
    Invalid { path: PathBuf, issues: ConfigIssues },
}

/// A configuration that passed validation, with its resolved camera settings.
#[derive(Debug, Clone)]
pub struct ValidConfig {
    pub config: Config,
    pub cameras: Vec<CameraSettings>,
}

impl Config {
    /// Reads, parses and validates a config file. Relative `file://` paths resolve against the
    /// file's folder.
    pub fn load(path: &Path) -> Result<ValidConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let config = Self::parse(&text).map_err(|message| ConfigError::Parse {
            path: path.to_path_buf(),
            message,
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        let env = |name: &str| std::env::var(name).ok();
        config
            .validate(base, &env)
            .map_err(|issues| ConfigError::Invalid {
                path: path.to_path_buf(),
                issues,
            })
    }

    /// Parses TOML. The error names the key and line but never echoes the source line, which
    /// could hold a password.
    pub fn parse(text: &str) -> Result<Self, String> {
        toml::from_str::<Config>(text).map_err(|e| {
            let location = e
                .span()
                .map(|span| {
                    let line = text[..span.start.min(text.len())].matches('\n').count() + 1;
                    format!(" (line {line})")
                })
                .unwrap_or_default();
            format!("{}{location}", e.message().trim_end())
        })
    }

    /// Checks everything and resolves camera settings; returns every problem at once.
    /// `base` resolves relative file paths; `env` looks up `password_env` variables.
    pub fn validate(
        self,
        base: &Path,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<ValidConfig, ConfigIssues> {
        let mut issues = ConfigIssues::default();
        check_name(&mut issues, "node.name", &self.node.name);
        check_name(&mut issues, "node.site", &self.node.site);
        self.ingest.check(&mut issues);
        self.detector.check(&mut issues);
        self.tracker.check(&mut issues);
        crate::outputs::check(&mut issues, &self, base, env);
        crate::evidence::check(&mut issues, &self.evidence);
        self.reports.check(&mut issues);
        self.fleet
            .check(&mut issues, self.store.is_some(), self.mqtt.is_some());
        crate::agencies::check(&mut issues, &self.agencies, &self.cameras);

        let mut seen = HashSet::new();
        let mut cameras = Vec::with_capacity(self.cameras.len());
        for (i, camera) in self.cameras.iter().enumerate() {
            let prefix = format!("cameras[{i}]");
            if !seen.insert(camera.id.clone()) {
                issues.push(
                    format!("{prefix}.id"),
                    format!(
                        "camera id \"{}\" is used twice; give every camera its own id",
                        camera.id
                    ),
                );
            }
            if let Some(settings) = camera.resolve(&self.ingest, &prefix, base, env, &mut issues) {
                cameras.push(settings);
            }
        }
        if issues.is_empty() {
            Ok(ValidConfig {
                config: self,
                cameras,
            })
        } else {
            Err(issues)
        }
    }
}

/// Ids and names that end up in MQTT topics and URLs.
pub(crate) fn check_name(issues: &mut ConfigIssues, path: &str, value: &str) {
    let ok = !value.is_empty()
        && value.len() <= 64
        && value
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
        && !value.starts_with(['-', '_']);
    if !ok {
        issues.push(
            path,
            format!(
                "\"{value}\" is not a valid id: use 1 to 64 lowercase letters, digits, '-' or '_', \
                 starting with a letter or digit (it is used in MQTT topics and URLs)"
            ),
        );
    }
}

pub(crate) fn check_range<T: PartialOrd + fmt::Display + Copy>(
    issues: &mut ConfigIssues,
    path: &str,
    value: T,
    min: T,
    max: T,
    unit: &str,
) {
    // `!(a <= b)` also catches NaN for floats.
    #[allow(clippy::neg_cmp_op_on_partial_ord)]
    let bad = !(min <= value && value <= max);
    if bad {
        issues.push(
            path,
            format!("{value}{unit} is out of range: use a value from {min}{unit} to {max}{unit}"),
        );
    }
}

impl IngestConfig {
    fn check(&self, issues: &mut ConfigIssues) {
        check_fps(issues, "ingest.analysis_fps", self.analysis_fps);
        if self.analysis_width != 0 {
            check_width(issues, "ingest.analysis_width", self.analysis_width);
        }
        check_range(
            issues,
            "ingest.decoder_threads",
            self.decoder_threads,
            0,
            16,
            "",
        );
        check_range(issues, "ingest.decoder_nice", self.decoder_nice, 0, 19, "");
        check_fps(issues, "ingest.min_analysis_fps", self.min_analysis_fps);
        check_range(
            issues,
            "ingest.motion_refresh_s",
            self.motion_refresh_s,
            0.2,
            60.0,
            " s",
        );
        check_range(
            issues,
            "ingest.motion_threshold",
            self.motion_threshold,
            1,
            255,
            "",
        );
        check_range(
            issues,
            "ingest.queue_capacity",
            self.queue_capacity,
            1,
            64,
            "",
        );
        check_range(
            issues,
            "ingest.stall_timeout_s",
            self.stall_timeout_s,
            0.5,
            600.0,
            " s",
        );
        check_range(
            issues,
            "ingest.max_clock_skew_s",
            self.max_clock_skew_s,
            1.0,
            86_400.0,
            " s",
        );
        check_range(
            issues,
            "ingest.connect_timeout_s",
            self.connect_timeout_s,
            1.0,
            600.0,
            " s",
        );
        let r = &self.reconnect;
        check_range(
            issues,
            "ingest.reconnect.initial_ms",
            r.initial_ms,
            10,
            60_000,
            " ms",
        );
        check_range(
            issues,
            "ingest.reconnect.max_ms",
            r.max_ms,
            r.initial_ms.max(10),
            600_000,
            " ms",
        );
        check_range(
            issues,
            "ingest.reconnect.multiplier",
            r.multiplier,
            1.0,
            10.0,
            "",
        );
        check_range(issues, "ingest.reconnect.jitter", r.jitter, 0.0, 1.0, "");
    }

    pub(crate) fn reconnect_settings(&self) -> ReconnectSettings {
        let r = &self.reconnect;
        ReconnectSettings {
            initial: Duration::from_millis(r.initial_ms),
            max: Duration::from_millis(r.max_ms.max(r.initial_ms)),
            multiplier: r.multiplier,
            jitter: r.jitter,
        }
    }
}

pub(crate) fn check_fps(issues: &mut ConfigIssues, path: &str, fps: f64) {
    #[allow(clippy::neg_cmp_op_on_partial_ord)]
    if !(fps > 0.0 && fps <= 120.0) {
        issues.push(
            path,
            format!("{fps} fps is out of range: use more than 0 and at most 120 frames per second"),
        );
    }
}

pub(crate) fn check_width(issues: &mut ConfigIssues, path: &str, width: u32) {
    if !(64..=3840).contains(&width) || !width.is_multiple_of(2) {
        issues.push(
            path,
            format!("{width} px is not usable: use an even width from 64 to 3840 pixels"),
        );
    }
}
