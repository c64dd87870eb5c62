//! One camera: what the config file says ([`CameraConfig`]) and what ingest runs on once it is
//! checked and the defaults are applied ([`CameraSettings`]).

#![allow(unused_imports)]
use std::collections::HashSet;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use url::Url;

#[allow(unused_imports)]
use crate::config::*;
#[allow(unused_imports)]
use crate::secret::Secret;
use crate::sources::*;
use crate::validation::*;

/// One camera as written in the config file.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CameraConfig {
    /// Unique id: lowercase letters, digits, `-` and `_`, at most 64 characters. Used in topics
    /// and API paths.
    pub id: String,
    /// Human name shown to operators. Default: the id.
    #[serde(default)]
    pub name: Option<String>,
    /// `rtsp://host[:port]/path`, `rtsps://...`, `file:///abs/path.mp4` (or `file://relative`,
    /// resolved against the config file's folder) or `test://PATTERN?width=W&height=H&fps=F`.
    pub url: String,
    /// Ingest this camera. Default true.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// RTSP transport: `tcp` (default), `udp` or `auto`.
    #[serde(default)]
    pub transport: Transport,
    /// RTSP jitter buffer in milliseconds. Default 200. Range 0..=10000.
    #[serde(default = "default_latency_ms")]
    pub latency_ms: u32,
    /// RTSP user name (instead of putting it in the URL).
    #[serde(default)]
    pub username: Option<String>,
    /// RTSP password. Prefer `password_env`, which keeps it out of the file.
    #[serde(default)]
    pub password: Option<String>,
    /// Name of an environment variable holding the RTSP password.
    #[serde(default)]
    pub password_env: Option<String>,
    /// `file://` only: start again at the end. Default true.
    #[serde(default = "default_true", rename = "loop")]
    pub loop_file: bool,
    /// `file://` only: play at the file's own frame rate, like a camera. Default true; false
    /// decodes as fast as possible. Either way capture times follow the video's own timeline
    /// from the moment it starts, so time-based rules see the video's timing.
    #[serde(default = "default_true")]
    pub realtime: bool,
    /// Overrides `ingest.analysis_fps`.
    #[serde(default)]
    pub analysis_fps: Option<f64>,
    /// Overrides `ingest.analysis_width` (0: the detector's input size).
    #[serde(default)]
    pub analysis_width: Option<u32>,
    /// The camera's sub-stream (a second, smaller stream most IP cameras offer), e.g.
    /// `rtsp://host/Streaming/Channels/102`. Same scheme rules and credentials as `url`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sub_url: Option<String>,
    /// Which stream is decoded for analysis: `main` (`url`, default) or `sub` (`sub_url`, far
    /// cheaper to decode; lines and zones are then in the sub-stream's pixels).
    #[serde(default)]
    pub decode: Decode,
    /// Overrides `ingest.motion_gate`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub motion_gate: Option<bool>,
    /// Overrides `ingest.stall_timeout_s`.
    #[serde(default)]
    pub stall_timeout_s: Option<f64>,
    /// Counting lines.
    #[serde(default)]
    pub lines: Vec<LineConfig>,
    /// Zones with occupancy and entries/exits.
    #[serde(default)]
    pub zones: Vec<ZoneConfig>,
    /// Image points with their ground positions in metres, and the camera's map position.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub calibration: Option<crate::traffic::CalibrationConfig>,
    /// Lanes with their direction of travel.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub lanes: Vec<crate::traffic::LaneConfig>,
    /// Parameters of the traffic and incident rules.
    #[serde(default)]
    pub rules: crate::traffic::RulesConfig,
    /// In a fleet, the node groups (`fleet.groups`) this camera may run on, e.g. `["polres"]`;
    /// empty (default): any node.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub run_on: Vec<String>,
    /// The camera group it belongs to (`[agencies]`): users of the agencies owning the group
    /// see it. Needed when agencies are configured; an id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
}

/// Which of a camera's streams is decoded for analysis.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Decode {
    /// The main stream (`url`).
    #[default]
    Main,
    /// The sub-stream (`sub_url`).
    Sub,
}

pub(crate) fn default_true() -> bool {
    true
}
pub(crate) fn default_latency_ms() -> u32 {
    200
}

/// `value` seconds, kept within `min..=max`. A camera is resolved even when the `[ingest]`
/// default it takes is out of range (that problem is reported under `ingest.`), so NaN must not
/// reach `Duration::from_secs_f64`, which panics on it.
fn seconds(value: f64, min: f64, max: f64) -> Duration {
    Duration::from_secs_f64(if value.is_nan() {
        min
    } else {
        value.clamp(min, max)
    })
}

/// Reconnect back-off, resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct ReconnectSettings {
    pub initial: Duration,
    pub max: Duration,
    pub multiplier: f64,
    pub jitter: f64,
}

impl ReconnectSettings {
    /// The delay before attempt `attempt` (0-based) without jitter.
    pub fn base_delay(&self, attempt: u32) -> Duration {
        let factor = self.multiplier.powi(attempt.min(64) as i32);
        let ms =
            (self.initial.as_secs_f64() * 1000.0 * factor).min(self.max.as_secs_f64() * 1000.0);
        Duration::from_secs_f64(ms / 1000.0)
    }

    /// The delay before attempt `attempt`, spread by `unit` in [-1, 1] times the jitter and
    /// still capped at `max`.
    pub fn delay(&self, attempt: u32, unit: f64) -> Duration {
        let base = self.base_delay(attempt).as_secs_f64();
        let spread = base * self.jitter * unit.clamp(-1.0, 1.0);
        Duration::from_secs_f64((base + spread).clamp(0.0, self.max.as_secs_f64()))
    }
}

/// Everything ingest needs to run one camera, with defaults applied.
#[derive(Debug, Clone, PartialEq)]
pub struct CameraSettings {
    pub id: String,
    pub name: String,
    pub enabled: bool,
    pub source: SourceSpec,
    pub analysis_fps: f64,
    /// Width of the analysis frame; `None` (`analysis_width = 0`): the detector's input size
    /// (one resize).
    pub analysis_width: Option<u32>,
    /// Threads of the video decoder (0: the decoder picks).
    pub decoder_threads: u32,
    /// Nice steps the receiving and decoding threads run below the rest (`ingest.decoder_nice`).
    pub decoder_nice: u8,
    /// The lowest rate fair degradation lowers this camera to (`ingest.min_analysis_fps`).
    pub min_analysis_fps: f64,
    /// Skip inference on frames that did not change (see [`MotionGate`]).
    pub motion_gate: Option<MotionGate>,
    /// The main stream when analysis decodes the sub-stream (`decode = "sub"`): kept for
    /// snapshots and evidence.
    pub main_source: Option<SourceSpec>,
    pub queue_capacity: usize,
    pub stall_timeout: Duration,
    pub connect_timeout: Duration,
    pub reconnect: ReconnectSettings,
    /// The most the camera's clock may differ from the server's (`ingest.max_clock_skew_s`).
    pub max_clock_skew: Duration,
    pub lines: Vec<LineConfig>,
    pub zones: Vec<ZoneConfig>,
    pub calibration: Option<crate::traffic::CalibrationConfig>,
    pub lanes: Vec<crate::traffic::LaneConfig>,
    pub rules: crate::traffic::RulesConfig,
}

/// Motion gating: a frame whose small grey picture barely differs from the last analysed one
/// reuses that frame's detections instead of running the detector, at most for `refresh`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MotionGate {
    /// Longest time between two detector runs, so tracks of objects standing still stay alive.
    pub refresh: Duration,
    /// Grey levels (0-255) a cell of the small picture must change by to count as motion.
    pub threshold: u8,
}

impl CameraConfig {
    /// Validates this camera against the defaults and resolves its settings. Problems go into
    /// `issues` under `prefix` (e.g. `cameras[2]`); `None` when there were any.
    pub fn resolve(
        &self,
        defaults: &IngestConfig,
        prefix: &str,
        base: &Path,
        env: &dyn Fn(&str) -> Option<String>,
        issues: &mut ConfigIssues,
    ) -> Option<CameraSettings> {
        let before = issues.0.len();
        check_name(issues, &format!("{prefix}.id"), &self.id);
        for (i, g) in self.run_on.iter().enumerate() {
            check_name(issues, &format!("{prefix}.run_on[{i}]"), g);
        }
        if let Some(g) = &self.group {
            check_name(issues, &format!("{prefix}.group"), g);
        }
        if self.id == "reports" {
            // Citizen reports no camera sees are published as camera `reports`.
            issues.push(
                format!("{prefix}.id"),
                "\"reports\" is reserved for citizen reports no camera sees; pick another id",
            );
        }
        if let Some(name) = &self.name {
            if name.trim().is_empty() || name.len() > 200 {
                issues.push(
                    format!("{prefix}.name"),
                    "give a name of 1 to 200 characters, or leave it out to use the id",
                );
            }
        }
        let analysis_fps = self.analysis_fps.unwrap_or(defaults.analysis_fps);
        if self.analysis_fps.is_some() {
            check_fps(issues, &format!("{prefix}.analysis_fps"), analysis_fps);
        }
        let width = self.analysis_width.unwrap_or(defaults.analysis_width);
        if let Some(w) = self.analysis_width.filter(|w| *w != 0) {
            check_width(issues, &format!("{prefix}.analysis_width"), w);
        }
        let analysis_width = (width != 0).then_some(width);
        let stall = self.stall_timeout_s.unwrap_or(defaults.stall_timeout_s);
        if self.stall_timeout_s.is_some() {
            check_range(
                issues,
                &format!("{prefix}.stall_timeout_s"),
                stall,
                0.5,
                600.0,
                " s",
            );
        }
        check_range(
            issues,
            &format!("{prefix}.latency_ms"),
            self.latency_ms,
            0,
            10_000,
            " ms",
        );
        crate::analytics::check_scene(issues, prefix, &self.lines, &self.zones);
        crate::traffic::check_traffic(
            issues,
            prefix,
            self.calibration.as_ref(),
            &self.lanes,
            &self.rules,
            &self.zones,
            &self.lines,
        );
        let main = self.resolve_source(&self.url, "url", prefix, base, env, issues);
        let sub = self
            .sub_url
            .as_ref()
            .and_then(|u| self.resolve_source(u, "sub_url", prefix, base, env, issues));
        let (source, main_source) = match (self.decode, sub) {
            (Decode::Sub, Some(sub)) => (Some(sub), main),
            (Decode::Sub, None) => {
                if self.sub_url.is_none() {
                    issues.push(
                        format!("{prefix}.decode"),
                        "decode = \"sub\" needs the camera's sub_url; add it or use decode = \"main\"",
                    );
                }
                (None, None)
            }
            (Decode::Main, _) => (main, None),
        };
        let motion_gate = self
            .motion_gate
            .unwrap_or(defaults.motion_gate)
            .then(|| MotionGate {
                refresh: seconds(defaults.motion_refresh_s, 0.2, 60.0),
                threshold: defaults.motion_threshold,
            });
        if issues.0.len() > before {
            return None;
        }
        Some(CameraSettings {
            id: self.id.clone(),
            name: self.name.clone().unwrap_or_else(|| self.id.clone()),
            enabled: self.enabled,
            source: source?,
            analysis_fps,
            analysis_width,
            decoder_threads: defaults.decoder_threads,
            decoder_nice: defaults.decoder_nice,
            min_analysis_fps: defaults.min_analysis_fps,
            motion_gate,
            main_source,
            queue_capacity: defaults.queue_capacity,
            stall_timeout: seconds(stall, 0.5, 600.0),
            connect_timeout: seconds(defaults.connect_timeout_s, 1.0, 600.0),
            reconnect: defaults.reconnect_settings(),
            max_clock_skew: seconds(defaults.max_clock_skew_s, 1.0, 86_400.0),
            lines: self.lines.clone(),
            zones: self.zones.clone(),
            calibration: self.calibration.clone(),
            lanes: self.lanes.clone(),
            rules: self.rules.clone(),
        })
    }

    fn resolve_source(
        &self,
        text: &str,
        field: &str,
        prefix: &str,
        base: &Path,
        env: &dyn Fn(&str) -> Option<String>,
        issues: &mut ConfigIssues,
    ) -> Option<SourceSpec> {
        let path = format!("{prefix}.{field}");
        let scheme = text.split_once("://").map(|(s, _)| s);
        let Some(scheme) = scheme else {
            issues.push(
                path,
                format!(
                    "\"{}\" is not a URL: write rtsp://host/path, rtsps://host/path, \
                     file:///path/to/video.mp4 or test://smpte",
                    crate::secret::redact_url(text)
                ),
            );
            return None;
        };
        let rtsp_only = |issues: &mut ConfigIssues, field: &str, set: bool| {
            if set {
                issues.push(
                    format!("{prefix}.{field}"),
                    format!("only rtsp:// and rtsps:// cameras take {field}; remove it"),
                );
            }
        };
        match scheme {
            "rtsp" | "rtsps" => self.resolve_rtsp(text, &path, prefix, env, issues),
            "file" => {
                rtsp_only(issues, "username", self.username.is_some());
                rtsp_only(issues, "password", self.password.is_some());
                rtsp_only(issues, "password_env", self.password_env.is_some());
                let rest = &text["file://".len()..];
                if rest.is_empty() {
                    issues.push(
                        path,
                        "file:// needs a path, e.g. file:///var/lib/pantau/clip.mp4",
                    );
                    return None;
                }
                let file = if Path::new(rest).is_absolute() {
                    PathBuf::from(rest)
                } else {
                    base.join(rest)
                };
                // Looked at before it is opened: opening a FIFO would wait for a writer.
                let opened = std::fs::metadata(&file).and_then(|m| {
                    if m.is_file() {
                        std::fs::File::open(&file).map(|_| m)
                    } else {
                        Ok(m)
                    }
                });
                match opened {
                    Ok(m) => {
                        if m.is_dir() {
                            issues.push(
                                path,
                                format!("{} is a folder; name a video file", file.display()),
                            );
                            return None;
                        }
                    }
                    Err(e) => {
                        issues.push(
                            path,
                            format!(
                                "cannot read {}: {e}; check the path (relative paths start at the \
                                 config file's folder) and its permissions",
                                file.display()
                            ),
                        );
                        return None;
                    }
                }
                Some(SourceSpec::File {
                    path: file,
                    looping: self.loop_file,
                    realtime: self.realtime,
                })
            }
            "test" => {
                rtsp_only(issues, "username", self.username.is_some());
                rtsp_only(issues, "password", self.password.is_some());
                rtsp_only(issues, "password_env", self.password_env.is_some());
                resolve_test(&path, text, issues)
            }
            other => {
                issues.push(
                    path,
                    format!("scheme \"{other}\" is not rtsp, rtsps, file or test"),
                );
                None
            }
        }
    }

    fn resolve_rtsp(
        &self,
        text: &str,
        path: &str,
        prefix: &str,
        env: &dyn Fn(&str) -> Option<String>,
        issues: &mut ConfigIssues,
    ) -> Option<SourceSpec> {
        let mut url = match Url::parse(text) {
            Ok(u) => u,
            Err(e) => {
                issues.push(
                    path,
                    format!(
                        "\"{}\" is not a valid URL ({e}); write rtsp://host[:port]/path",
                        crate::secret::redact_url(text)
                    ),
                );
                return None;
            }
        };
        if url.host_str().is_none_or(str::is_empty) {
            issues.push(path, "the URL has no host; write rtsp://host[:port]/path");
            return None;
        }
        let url_user = (!url.username().is_empty()).then(|| percent_decode(url.username()));
        let url_password = url.password().map(percent_decode);
        // Credentials live outside the URL from here on, so nothing downstream can print them.
        let _ = url.set_username("");
        let _ = url.set_password(None);

        if url_user.is_some() && self.username.is_some() {
            issues.push(
                format!("{prefix}.username"),
                "the user name is given both in the URL and in username; keep one",
            );
        }
        let given = [
            url_password.is_some(),
            self.password.is_some(),
            self.password_env.is_some(),
        ]
        .iter()
        .filter(|b| **b)
        .count();
        if given > 1 {
            issues.push(
                format!("{prefix}.password"),
                "the password is given more than once (URL, password, password_env); keep one",
            );
        }
        let password = if let Some(var) = &self.password_env {
            match env(var) {
                Some(v) => Some(v),
                // A disabled camera does not need its secret yet.
                None if !self.enabled => Some(String::new()),
                None => {
                    issues.push(
                        format!("{prefix}.password_env"),
                        format!("environment variable {var} is not set; export it before starting pantau"),
                    );
                    None
                }
            }
        } else {
            url_password.or_else(|| self.password.clone())
        };
        let username = url_user.or_else(|| self.username.clone());
        let credentials = match (username, password) {
            (Some(username), Some(password)) => Some(Credentials {
                username,
                password: Secret::new(password),
            }),
            (Some(username), None) => Some(Credentials {
                username,
                password: Secret::new(""),
            }),
            (None, Some(_)) => {
                issues.push(
                    format!("{prefix}.username"),
                    "a password is set but no user name; add username",
                );
                None
            }
            (None, None) => None,
        };
        Some(SourceSpec::Rtsp {
            url,
            transport: self.transport,
            latency_ms: self.latency_ms,
            credentials,
        })
    }
}
