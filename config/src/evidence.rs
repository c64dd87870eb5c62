//! Evidence clips: the encoded video around an incident, kept per camera in a ring buffer and
//! written as a signed MP4 when an alert is raised or an operator saves a clip.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::analytics::Severity;
use crate::validation::ConfigIssues;

/// `[evidence]`: what is kept of each camera's stream and for how long.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct EvidenceConfig {
    /// Keep each camera's encoded stream in memory and write clips of incidents. Default true.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Folder of the clips, relative to the config file. Default `var/evidence`.
    #[serde(default = "default_dir")]
    pub dir: PathBuf,
    /// The node's Ed25519 signing key (created at first start, readable by the owner only),
    /// relative to the config file. Default `var/keys/evidence.key`. Its public half is served
    /// at `/api/v1/evidence/key`; losing the key means new clips carry a new key.
    #[serde(default = "default_key")]
    pub key_file: PathBuf,
    /// Seconds of video before the incident. Default 20. Range 0..=120.
    #[serde(default = "default_pre")]
    pub pre_s: f64,
    /// Seconds of video after the incident. Default 10. Range 0..=120.
    #[serde(default = "default_post")]
    pub post_s: f64,
    /// Events of this severity and above get a clip (`warning` or `critical`). Default
    /// `warning`. Operators can save a clip of any camera at any time.
    #[serde(default = "default_severity")]
    pub min_severity: Severity,
    /// The most memory one camera's ring buffer holds, MiB. Default 32 (about 2 minutes of a
    /// 2 Mbit/s camera). Range 1..=1024. A camera whose pre- and post-roll need more keeps
    /// less (the clip's manifest states what it covers).
    #[serde(default = "default_camera_mb")]
    pub camera_mb: u32,
    /// The most memory all ring buffers hold together, MiB. Default 512. Range 1..=65536.
    #[serde(default = "default_total_mb")]
    pub total_mb: u32,
    /// Days a clip is kept. Default 30. Range 1..=3650. Clips a dispatcher marked "keep" are
    /// never deleted automatically.
    #[serde(default = "default_retention_days")]
    pub retention_days: u32,
    /// The most disk space clips take, GiB; beyond it the oldest clips not marked "keep" are
    /// deleted. Default 50. Range 0.01..=100000.
    #[serde(default = "default_max_gb")]
    pub max_gb: f64,
}

impl Default for EvidenceConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            dir: default_dir(),
            key_file: default_key(),
            pre_s: default_pre(),
            post_s: default_post(),
            min_severity: default_severity(),
            camera_mb: default_camera_mb(),
            total_mb: default_total_mb(),
            retention_days: default_retention_days(),
            max_gb: default_max_gb(),
        }
    }
}

fn yes() -> bool {
    true
}
fn default_dir() -> PathBuf {
    PathBuf::from("var/evidence")
}
fn default_key() -> PathBuf {
    PathBuf::from("var/keys/evidence.key")
}
fn default_pre() -> f64 {
    20.0
}
fn default_post() -> f64 {
    10.0
}
fn default_severity() -> Severity {
    Severity::Warning
}
fn default_camera_mb() -> u32 {
    32
}
fn default_total_mb() -> u32 {
    512
}
fn default_retention_days() -> u32 {
    30
}
fn default_max_gb() -> f64 {
    50.0
}

pub(crate) fn check(issues: &mut ConfigIssues, e: &EvidenceConfig) {
    for (name, v) in [("evidence.pre_s", e.pre_s), ("evidence.post_s", e.post_s)] {
        if !(0.0..=120.0).contains(&v) {
            issues.push(name, "use 0 to 120 seconds");
        }
    }
    if e.pre_s + e.post_s < 1.0 && e.pre_s.is_finite() && e.post_s.is_finite() {
        issues.push(
            "evidence.post_s",
            "a clip needs at least 1 s: raise pre_s or post_s, or set evidence.enabled = false",
        );
    }
    if e.min_severity == Severity::Info {
        issues.push(
            "evidence.min_severity",
            "a clip of every info event (each count) would fill the disk; use warning or critical",
        );
    }
    if !(1..=1024).contains(&e.camera_mb) {
        issues.push("evidence.camera_mb", "use 1 to 1024 MiB");
    }
    if !(1..=65536).contains(&e.total_mb) {
        issues.push("evidence.total_mb", "use 1 to 65536 MiB");
    } else if e.total_mb < e.camera_mb {
        issues.push(
            "evidence.total_mb",
            format!(
                "{} MiB in all is less than one camera's {} MiB (evidence.camera_mb)",
                e.total_mb, e.camera_mb
            ),
        );
    }
    if !(1..=3650).contains(&e.retention_days) {
        issues.push("evidence.retention_days", "use 1 to 3650 days");
    }
    if !(0.01..=100_000.0).contains(&e.max_gb) {
        issues.push("evidence.max_gb", "use 0.01 to 100000 GiB");
    }
    if e.dir.as_os_str().is_empty() {
        issues.push("evidence.dir", "give a folder for the clips");
    }
    if e.key_file.as_os_str().is_empty() {
        issues.push(
            "evidence.key_file",
            "give a file for the node's signing key",
        );
    } else if e.key_file.starts_with(&e.dir) {
        issues.push(
            "evidence.key_file",
            "keep the signing key outside evidence.dir, where clips are deleted and exported",
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems(e: &EvidenceConfig) -> Vec<String> {
        let mut issues = ConfigIssues::default();
        check(&mut issues, e);
        issues.iter().map(|i| i.path.clone()).collect()
    }

    #[test]
    fn defaults_are_valid() {
        assert!(problems(&EvidenceConfig::default()).is_empty());
    }

    #[test]
    fn every_bad_value_is_named() {
        let e = EvidenceConfig {
            pre_s: -1.0,
            post_s: 500.0,
            min_severity: Severity::Info,
            camera_mb: 64,
            total_mb: 32,
            retention_days: 0,
            max_gb: 0.0,
            key_file: PathBuf::from("var/evidence/key"),
            ..EvidenceConfig::default()
        };
        assert_eq!(
            problems(&e),
            [
                "evidence.pre_s",
                "evidence.post_s",
                "evidence.min_severity",
                "evidence.total_mb",
                "evidence.retention_days",
                "evidence.max_gb",
                "evidence.key_file"
            ]
        );
    }
}
