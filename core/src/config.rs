//! The TOML configuration: what the user wrote ([`Config`]), its validation, and the resolved
//! settings each stage runs on ([`CameraSettings`]).
//!
//! Every struct denies unknown fields so a misspelt key is an error, not a silently ignored
//! option. [`Config::validate`] collects all problems at once, each with its path
//! (`cameras[1].url`) and what to do about it.

use std::collections::HashSet;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use url::Url;

pub use crate::analytics::{DetectorConfig, LineConfig, TrackerConfig, ZoneConfig};
pub use crate::outputs::{
    ApiConfig, EmbeddedConfig, MqttConfig, OutboxConfig, SnapshotConfig, StoreConfig, WhenFull,
};
use crate::secret::Secret;

/// The whole configuration file.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Who this pantau node is.
    #[serde(default)]
    pub node: NodeConfig,
    /// Defaults for every camera's ingest; each camera may override some of them.
    #[serde(default)]
    pub ingest: IngestConfig,
    /// The object detector shared by all cameras.
    #[serde(default)]
    pub detector: DetectorConfig,
    /// Multi-object tracking.
    #[serde(default)]
    pub tracker: TrackerConfig,
    /// The cameras this node watches.
    #[serde(default)]
    pub cameras: Vec<CameraConfig>,
    /// MQTT broker; without it an embedded broker is started.
    #[serde(default)]
    pub mqtt: Option<MqttConfig>,
    /// PostgreSQL / TimescaleDB store; without it events are published but not stored.
    #[serde(default)]
    pub store: Option<StoreConfig>,
    /// The durable outbox between analytics and the sinks.
    #[serde(default)]
    pub outbox: OutboxConfig,
    /// Embedded services started when none is configured.
    #[serde(default)]
    pub embedded: EmbeddedConfig,
    /// Event snapshots.
    #[serde(default)]
    pub snapshots: SnapshotConfig,
    /// The HTTP API.
    #[serde(default)]
    pub api: ApiConfig,
}

/// Identity of this node, used in logs and (later) MQTT topics.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    /// Node name, unique within a site. Default: `pantau`.
    #[serde(default = "default_node_name")]
    pub name: String,
    /// Site (city, command center) the cameras belong to. Default: `default`.
    #[serde(default = "default_site")]
    pub site: String,
}

impl Default for NodeConfig {
    fn default() -> Self {
        Self {
            name: default_node_name(),
            site: default_site(),
        }
    }
}

fn default_node_name() -> String {
    "pantau".into()
}
fn default_site() -> String {
    "default".into()
}

/// Ingest defaults for all cameras.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct IngestConfig {
    /// Frames per second handed to analysis; the rest are skipped right after decoding.
    /// Default 5. Range (0, 120].
    #[serde(default = "default_analysis_fps")]
    pub analysis_fps: f64,
    /// Width in pixels of the frames handed to analysis (height keeps the aspect ratio).
    /// Default 640. Range 64..=3840, even.
    #[serde(default = "default_analysis_width")]
    pub analysis_width: u32,
    /// Frames waiting for analysis per camera; when full the oldest is dropped and counted.
    /// Default 2. Range 1..=64.
    #[serde(default = "default_queue_capacity")]
    pub queue_capacity: usize,
    /// A streaming camera with no frame for this long is stalled and reconnected. Default 5 s.
    /// Range 0.5..=600.
    #[serde(default = "default_stall_timeout")]
    pub stall_timeout_s: f64,
    /// A connecting camera that has not produced its first frame after this long is retried.
    /// Default 10 s. Range 1..=600.
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout_s: f64,
    /// Reconnect back-off.
    #[serde(default)]
    pub reconnect: ReconnectConfig,
}

impl Default for IngestConfig {
    fn default() -> Self {
        Self {
            analysis_fps: default_analysis_fps(),
            analysis_width: default_analysis_width(),
            queue_capacity: default_queue_capacity(),
            stall_timeout_s: default_stall_timeout(),
            connect_timeout_s: default_connect_timeout(),
            reconnect: ReconnectConfig::default(),
        }
    }
}

fn default_analysis_fps() -> f64 {
    5.0
}
fn default_analysis_width() -> u32 {
    640
}
fn default_queue_capacity() -> usize {
    2
}
fn default_stall_timeout() -> f64 {
    5.0
}
fn default_connect_timeout() -> f64 {
    10.0
}

/// Exponential back-off between reconnect attempts: `initial_ms * multiplier^n`, capped at
/// `max_ms`, each delay spread by +/- `jitter` so cameras on one switch do not retry in lockstep.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ReconnectConfig {
    /// First delay. Default 500 ms. Range 10..=60000.
    #[serde(default = "default_initial_ms")]
    pub initial_ms: u64,
    /// Largest delay. Default 30000 ms. Range initial_ms..=600000.
    #[serde(default = "default_max_ms")]
    pub max_ms: u64,
    /// Growth per failed attempt. Default 2.0. Range 1.0..=10.0.
    #[serde(default = "default_multiplier")]
    pub multiplier: f64,
    /// Relative random spread of each delay. Default 0.2. Range 0.0..=1.0.
    #[serde(default = "default_jitter")]
    pub jitter: f64,
}

impl Default for ReconnectConfig {
    fn default() -> Self {
        Self {
            initial_ms: default_initial_ms(),
            max_ms: default_max_ms(),
            multiplier: default_multiplier(),
            jitter: default_jitter(),
        }
    }
}

fn default_initial_ms() -> u64 {
    500
}
fn default_max_ms() -> u64 {
    30_000
}
fn default_multiplier() -> f64 {
    2.0
}
fn default_jitter() -> f64 {
    0.2
}

/// RTSP lower transport.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    /// RTP interleaved in the RTSP TCP connection: works through NAT and firewalls (default).
    #[default]
    Tcp,
    /// RTP over UDP: lower latency on a clean LAN, loses packets on a congested one.
    Udp,
    /// Try UDP, fall back to TCP.
    Auto,
}

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
    /// Overrides `ingest.analysis_width`.
    #[serde(default)]
    pub analysis_width: Option<u32>,
    /// Overrides `ingest.stall_timeout_s`.
    #[serde(default)]
    pub stall_timeout_s: Option<f64>,
    /// Counting lines.
    #[serde(default)]
    pub lines: Vec<LineConfig>,
    /// Zones with occupancy and entries/exits.
    #[serde(default)]
    pub zones: Vec<ZoneConfig>,
}

fn default_true() -> bool {
    true
}
fn default_latency_ms() -> u32 {
    200
}

/// A `videotestsrc` pattern usable in `test://` URLs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum TestPattern {
    Smpte,
    Ball,
    Snow,
    Black,
    Gradient,
}

impl TestPattern {
    const ALL: [(&'static str, TestPattern); 5] = [
        ("smpte", TestPattern::Smpte),
        ("ball", TestPattern::Ball),
        ("snow", TestPattern::Snow),
        ("black", TestPattern::Black),
        ("gradient", TestPattern::Gradient),
    ];

    /// The name `videotestsrc` knows the pattern by.
    pub fn gst_name(self) -> &'static str {
        match self {
            TestPattern::Smpte => "smpte",
            TestPattern::Ball => "ball",
            TestPattern::Snow => "snow",
            TestPattern::Black => "black",
            TestPattern::Gradient => "gradient",
        }
    }
}

/// RTSP credentials, kept out of the URL so GStreamer never echoes them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: Secret,
}

/// Where a camera's frames come from, resolved and checked.
#[derive(Debug, Clone, PartialEq)]
pub enum SourceSpec {
    /// A network camera. `url` carries no credentials.
    Rtsp {
        url: Url,
        transport: Transport,
        latency_ms: u32,
        credentials: Option<Credentials>,
    },
    /// A recorded file, for replays and demos.
    File {
        path: PathBuf,
        looping: bool,
        realtime: bool,
    },
    /// A synthetic pattern, for trying pantau without a camera.
    Test {
        pattern: TestPattern,
        width: u32,
        height: u32,
        fps: u32,
    },
}

impl SourceSpec {
    /// The source as safe to print: credentials replaced by `***`.
    pub fn redacted(&self) -> String {
        match self {
            SourceSpec::Rtsp {
                url, credentials, ..
            } => match credentials {
                Some(c) => {
                    let mut shown = url.clone();
                    // Setting userinfo on an rtsp URL with a host cannot fail.
                    let _ = shown.set_username(&c.username);
                    let _ = shown.set_password(Some("***"));
                    shown.to_string()
                }
                None => url.to_string(),
            },
            SourceSpec::File { path, .. } => format!("file://{}", path.display()),
            SourceSpec::Test {
                pattern,
                width,
                height,
                fps,
            } => format!(
                "test://{}?width={width}&height={height}&fps={fps}",
                pattern.gst_name()
            ),
        }
    }

    /// Short kind name: `rtsp`, `rtsps`, `file` or `test`.
    pub fn kind(&self) -> &'static str {
        match self {
            SourceSpec::Rtsp { url, .. } if url.scheme() == "rtsps" => "rtsps",
            SourceSpec::Rtsp { .. } => "rtsp",
            SourceSpec::File { .. } => "file",
            SourceSpec::Test { .. } => "test",
        }
    }

    /// Live sources keep running in real time whether or not anyone keeps up.
    pub fn is_live(&self) -> bool {
        match self {
            SourceSpec::Rtsp { .. } | SourceSpec::Test { .. } => true,
            SourceSpec::File { realtime, .. } => *realtime,
        }
    }
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
    pub analysis_width: u32,
    pub queue_capacity: usize,
    pub stall_timeout: Duration,
    pub connect_timeout: Duration,
    pub reconnect: ReconnectSettings,
    pub lines: Vec<LineConfig>,
    pub zones: Vec<ZoneConfig>,
}

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
fn check_name(issues: &mut ConfigIssues, path: &str, value: &str) {
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

fn check_range<T: PartialOrd + fmt::Display + Copy>(
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
        check_width(issues, "ingest.analysis_width", self.analysis_width);
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

    fn reconnect_settings(&self) -> ReconnectSettings {
        let r = &self.reconnect;
        ReconnectSettings {
            initial: Duration::from_millis(r.initial_ms),
            max: Duration::from_millis(r.max_ms.max(r.initial_ms)),
            multiplier: r.multiplier,
            jitter: r.jitter,
        }
    }
}

fn check_fps(issues: &mut ConfigIssues, path: &str, fps: f64) {
    #[allow(clippy::neg_cmp_op_on_partial_ord)]
    if !(fps > 0.0 && fps <= 120.0) {
        issues.push(
            path,
            format!("{fps} fps is out of range: use more than 0 and at most 120 frames per second"),
        );
    }
}

fn check_width(issues: &mut ConfigIssues, path: &str, width: u32) {
    if !(64..=3840).contains(&width) || !width.is_multiple_of(2) {
        issues.push(
            path,
            format!("{width} px is not usable: use an even width from 64 to 3840 pixels"),
        );
    }
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
        let analysis_width = self.analysis_width.unwrap_or(defaults.analysis_width);
        if self.analysis_width.is_some() {
            check_width(issues, &format!("{prefix}.analysis_width"), analysis_width);
        }
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
        let source = self.resolve_source(prefix, base, env, issues);
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
            queue_capacity: defaults.queue_capacity,
            stall_timeout: Duration::from_secs_f64(stall.clamp(0.5, 600.0)),
            connect_timeout: Duration::from_secs_f64(defaults.connect_timeout_s.clamp(1.0, 600.0)),
            reconnect: defaults.reconnect_settings(),
            lines: self.lines.clone(),
            zones: self.zones.clone(),
        })
    }

    fn resolve_source(
        &self,
        prefix: &str,
        base: &Path,
        env: &dyn Fn(&str) -> Option<String>,
        issues: &mut ConfigIssues,
    ) -> Option<SourceSpec> {
        let path = format!("{prefix}.url");
        let scheme = self.url.split_once("://").map(|(s, _)| s);
        let Some(scheme) = scheme else {
            issues.push(
                path,
                format!(
                    "\"{}\" is not a URL: write rtsp://host/path, rtsps://host/path, \
                     file:///path/to/video.mp4 or test://smpte",
                    redact_url_text(&self.url)
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
            "rtsp" | "rtsps" => self.resolve_rtsp(&path, prefix, env, issues),
            "file" => {
                rtsp_only(issues, "username", self.username.is_some());
                rtsp_only(issues, "password", self.password.is_some());
                rtsp_only(issues, "password_env", self.password_env.is_some());
                let rest = &self.url["file://".len()..];
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
                match std::fs::File::open(&file) {
                    Ok(f) => {
                        if f.metadata().map(|m| m.is_dir()).unwrap_or(false) {
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
                resolve_test(&path, &self.url, issues)
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
        path: &str,
        prefix: &str,
        env: &dyn Fn(&str) -> Option<String>,
        issues: &mut ConfigIssues,
    ) -> Option<SourceSpec> {
        let mut url = match Url::parse(&self.url) {
            Ok(u) => u,
            Err(e) => {
                issues.push(
                    path,
                    format!(
                        "\"{}\" is not a valid URL ({e}); write rtsp://host[:port]/path",
                        redact_url_text(&self.url)
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

fn resolve_test(path: &str, text: &str, issues: &mut ConfigIssues) -> Option<SourceSpec> {
    let url = match Url::parse(text) {
        Ok(u) => u,
        Err(e) => {
            issues.push(path, format!("\"{text}\" is not a valid URL ({e}); write test://smpte?width=640&height=480&fps=25"));
            return None;
        }
    };
    let name = url.host_str().unwrap_or("smpte");
    let pattern = TestPattern::ALL
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, p)| *p);
    let Some(pattern) = pattern else {
        let names: Vec<_> = TestPattern::ALL.iter().map(|(n, _)| *n).collect();
        issues.push(
            path,
            format!(
                "test pattern \"{name}\" is unknown; use one of {}",
                names.join(", ")
            ),
        );
        return None;
    };
    let (mut width, mut height, mut fps) = (640u32, 480u32, 25u32);
    for (key, value) in url.query_pairs() {
        let slot = match key.as_ref() {
            "width" => &mut width,
            "height" => &mut height,
            "fps" => &mut fps,
            other => {
                issues.push(
                    path,
                    format!("test URL parameter \"{other}\" is unknown; use width, height and fps"),
                );
                continue;
            }
        };
        match value.parse::<u32>() {
            Ok(v) => *slot = v,
            Err(_) => issues.push(
                path,
                format!("test URL parameter {key}={value} is not a whole number"),
            ),
        }
    }
    let before = issues.0.len();
    check_range(issues, path, width, 16, 7680, " px wide");
    check_range(issues, path, height, 16, 4320, " px high");
    check_range(issues, path, fps, 1, 120, " fps");
    (issues.0.len() == before).then_some(SourceSpec::Test {
        pattern,
        width,
        height,
        fps,
    })
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
            if let Ok(v) = u8::from_str_radix(hex, 16) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Hides a password in URL-like text that failed to parse, so the error can be shown.
fn redact_url_text(text: &str) -> String {
    let Some((scheme, rest)) = text.split_once("://") else {
        return text.to_string();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => {
            let userinfo = &rest[..at];
            let user = userinfo.split(':').next().unwrap_or("");
            format!("{scheme}://{user}:***@{}", &rest[at + 1..])
        }
        None => text.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    fn validate(text: &str) -> Result<ValidConfig, Vec<String>> {
        let config = Config::parse(text).map_err(|e| vec![e])?;
        config
            .validate(Path::new("/"), &no_env)
            .map_err(|i| i.iter().map(|i| i.to_string()).collect())
    }

    #[test]
    fn minimal_config_gets_defaults() {
        let valid = validate("[[cameras]]\nid = \"cam-1\"\nurl = \"rtsp://10.0.0.5/stream1\"\n")
            .expect("valid");
        let cam = &valid.cameras[0];
        assert_eq!(cam.name, "cam-1");
        assert_eq!(cam.analysis_fps, 5.0);
        assert_eq!(cam.analysis_width, 640);
        assert_eq!(cam.queue_capacity, 2);
        assert_eq!(cam.stall_timeout, Duration::from_secs(5));
        assert!(matches!(
            cam.source,
            SourceSpec::Rtsp {
                transport: Transport::Tcp,
                latency_ms: 200,
                credentials: None,
                ..
            }
        ));
    }

    /// A table of bad configs, each with the message it must produce.
    #[test]
    fn bad_configs_are_reported_with_path_and_fix() {
        let cases: &[(&str, &str)] = &[
            (
                "[[cameras]]\nid = \"a\"\nurl = \"rtsp://h/x\"\n[[cameras]]\nid = \"b\"\nurl = \"rtps://h/x\"\n",
                "cameras[1].url: scheme \"rtps\" is not rtsp, rtsps, file or test",
            ),
            (
                "[[cameras]]\nid = \"a\"\nurl = \"rtsp://h/x\"\n[[cameras]]\nid = \"a\"\nurl = \"rtsp://h/y\"\n",
                "cameras[1].id: camera id \"a\" is used twice; give every camera its own id",
            ),
            (
                "[[cameras]]\nid = \"a\"\nurl = \"file:///nonexistent/clip.mp4\"\n",
                "cameras[0].url: cannot read /nonexistent/clip.mp4: No such file or directory",
            ),
            (
                "[ingest]\nanalysis_fps = 0\n",
                "ingest.analysis_fps: 0 fps is out of range: use more than 0 and at most 120 frames per second",
            ),
            (
                "[ingest]\nqueue_capacity = 0\n",
                "ingest.queue_capacity: 0 is out of range: use a value from 1 to 64",
            ),
            (
                "[ingest.reconnect]\ninitial_ms = 5000\nmax_ms = 1000\n",
                "ingest.reconnect.max_ms: 1000 ms is out of range: use a value from 5000 ms to 600000 ms",
            ),
            (
                "[[cameras]]\nid = \"Cam 1\"\nurl = \"rtsp://h/x\"\n",
                "cameras[0].id: \"Cam 1\" is not a valid id",
            ),
            (
                "[[cameras]]\nid = \"a\"\nurl = \"rtsp://h/x\"\nanalysis_width = 641\n",
                "cameras[0].analysis_width: 641 px is not usable: use an even width from 64 to 3840 pixels",
            ),
            (
                "[[cameras]]\nid = \"a\"\nurl = \"rtsp://h/x\"\nlatency_ms = 20000\n",
                "cameras[0].latency_ms: 20000 ms is out of range",
            ),
            (
                "[[cameras]]\nid = \"a\"\nurl = \"rtsp://u:p@h/x\"\npassword = \"q\"\n",
                "cameras[0].password: the password is given more than once",
            ),
            (
                "[[cameras]]\nid = \"a\"\nurl = \"rtsp://h/x\"\npassword_env = \"PANTAU_NOPE\"\nusername = \"u\"\n",
                "cameras[0].password_env: environment variable PANTAU_NOPE is not set",
            ),
            (
                "[[cameras]]\nid = \"a\"\nurl = \"test://plaid\"\n",
                "cameras[0].url: test pattern \"plaid\" is unknown; use one of smpte, ball, snow, black, gradient",
            ),
            (
                "[[cameras]]\nid = \"a\"\nurl = \"test://smpte?fps=0\"\n",
                "cameras[0].url: 0 fps is out of range",
            ),
            (
                "[[cameras]]\nid = \"a\"\nurl = \"file:///etc/hosts\"\nusername = \"u\"\n",
                "cameras[0].username: only rtsp:// and rtsps:// cameras take username; remove it",
            ),
            (
                "[[cameras]]\nid = \"a\"\nurl = \"rtsp:///x\"\n",
                "cameras[0].url: the URL has no host",
            ),
            (
                "[[cameras]]\nid = \"a\"\nurl = \"10.0.0.5/stream\"\n",
                "cameras[0].url: \"10.0.0.5/stream\" is not a URL",
            ),
            (
                "[[cameras]]\nid = \"a\"\nurl = \"rtsp://h/x\"\nfps = 5\n",
                "unknown field `fps`",
            ),
            (
                "[[cameras]]\nid = \"a\"\nurl = \"test://ball\"\n[[cameras.lines]]\nname = \"stop-line\"\npoints = [[10, 10]]\n",
                "cameras[0].lines[0].points: a line needs at least two points",
            ),
            (
                "[[cameras]]\nid = \"a\"\nurl = \"test://ball\"\n[[cameras.zones]]\nname = \"box\"\npolygon = [[0, 0], [10, 0], [20, 0]]\n",
                "cameras[0].zones[0].polygon: the corners enclose no area",
            ),
            (
                "[[cameras]]\nid = \"a\"\nurl = \"test://ball\"\n[[cameras.lines]]\nname = \"x\"\npoints = [[0, 0], [5, 5]]\n[[cameras.zones]]\nname = \"x\"\npolygon = [[0, 0], [10, 0], [10, 10]]\n",
                "cameras[0].zones[0].name: \"x\" is used twice on this camera",
            ),
            (
                "[detector]\nmin_score = 0\n",
                "detector.min_score: 0 is out of range: use a value from 0.01 to 1",
            ),
            (
                "[tracker]\nlow_score = 0.7\nhigh_score = 0.5\n",
                "tracker.low_score: 0.7 is above high_score 0.5",
            ),
            (
                "[tracker]\nlost_frames = 30\n",
                "tracker.lost_frames: no longer supported: the tracker works in seconds",
            ),
            (
                "[tracker]\nlost_frames = 30\n",
                "replace `lost_frames = 30` with `lost_s = <seconds>`",
            ),
            (
                "[tracker]\nlost_s = 0\n",
                "tracker.lost_s: 0 is out of range: use 0.1 to 600 seconds",
            ),
            (
                "[ingest]\nstall_timeout_s = \"5\"\n",
                "invalid type: string \"5\", expected f64 (line 2)",
            ),
        ];
        for (text, expected) in cases {
            let errors = validate(text).expect_err(text);
            assert!(
                errors.iter().any(|e| e.contains(expected)),
                "config:\n{text}\nexpected an error containing:\n  {expected}\ngot:\n  {errors:?}"
            );
        }
    }

    #[test]
    fn all_problems_are_listed_at_once() {
        let errors = validate(
            "[ingest]\nanalysis_fps = -1\n[[cameras]]\nid = \"x y\"\nurl = \"http://h/\"\n[[cameras]]\nid = \"b\"\nurl = \"rtsp://h/\"\nlatency_ms = 99999\n",
        )
        .expect_err("invalid");
        assert_eq!(errors.len(), 4, "{errors:?}");
    }

    #[test]
    fn credentials_leave_the_url_and_are_redacted() {
        let valid = validate(
            "[[cameras]]\nid = \"a\"\nurl = \"rtsp://admin:s%40cret@10.1.2.3:554/live\"\n",
        )
        .expect("valid");
        let SourceSpec::Rtsp {
            url, credentials, ..
        } = &valid.cameras[0].source
        else {
            panic!("not rtsp")
        };
        assert_eq!(url.as_str(), "rtsp://10.1.2.3:554/live");
        let c = credentials.as_ref().expect("credentials");
        assert_eq!(c.username, "admin");
        assert_eq!(c.password.expose(), "s@cret");
        let shown = valid.cameras[0].source.redacted();
        assert_eq!(shown, "rtsp://admin:***@10.1.2.3:554/live");
        assert!(!format!("{:?}", valid.cameras[0]).contains("s@cret"));
    }

    #[test]
    fn errors_never_echo_passwords() {
        let text =
            "[[cameras]]\nid = \"a\"\nurl = \"rtsp://u:topsecret@h/x\"\npasword = \"topsecret\"\n";
        let err = Config::parse(text).expect_err("unknown field");
        assert!(!err.contains("topsecret"), "{err}");
        let errors = validate("[[cameras]]\nid = \"a\"\nurl = \"rtsp://u:topsecret@[bad/x\"\n")
            .expect_err("bad url");
        assert!(
            errors.iter().all(|e| !e.contains("topsecret")),
            "{errors:?}"
        );
    }

    #[test]
    fn password_env_is_read() {
        let config = Config::parse(
            "[[cameras]]\nid = \"a\"\nurl = \"rtsps://h/x\"\nusername = \"op\"\npassword_env = \"CAM_PW\"\n",
        )
        .expect("parse");
        let env = |k: &str| (k == "CAM_PW").then(|| "pw".to_string());
        let valid = config.validate(Path::new("/"), &env).expect("valid");
        assert_eq!(valid.cameras[0].source.kind(), "rtsps");
    }

    #[test]
    fn relative_file_paths_resolve_against_the_config_folder() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("clip.mp4"), b"x").expect("write");
        let config =
            Config::parse("[[cameras]]\nid = \"a\"\nurl = \"file://clip.mp4\"\nloop = false\n")
                .expect("parse");
        let valid = config.validate(dir.path(), &no_env).expect("valid");
        assert_eq!(
            valid.cameras[0].source,
            SourceSpec::File {
                path: dir.path().join("clip.mp4"),
                looping: false,
                realtime: true
            }
        );
    }

    mod backoff {
        use super::*;
        use proptest::prelude::*;

        fn settings(initial: u64, max: u64, multiplier: f64, jitter: f64) -> ReconnectSettings {
            ReconnectSettings {
                initial: Duration::from_millis(initial),
                max: Duration::from_millis(max),
                multiplier,
                jitter,
            }
        }

        #[test]
        fn grows_then_caps() {
            let s = settings(500, 4000, 2.0, 0.0);
            let delays: Vec<u128> = (0..6).map(|a| s.delay(a, 0.0).as_millis()).collect();
            assert_eq!(delays, vec![500, 1000, 2000, 4000, 4000, 4000]);
        }

        proptest! {
            #[test]
            fn never_exceeds_cap_and_never_negative(
                initial in 10u64..60_000, extra in 0u64..600_000, mult in 1.0f64..10.0,
                jitter in 0.0f64..1.0, attempt in 0u32..1000, unit in -1.0f64..1.0
            ) {
                let s = settings(initial, initial + extra, mult, jitter);
                let d = s.delay(attempt, unit);
                prop_assert!(d <= s.max);
                let base = s.base_delay(attempt).as_secs_f64();
                prop_assert!(d.as_secs_f64() >= base * (1.0 - jitter) - 1e-9);
            }

            #[test]
            fn base_delay_is_monotonic(initial in 10u64..60_000, mult in 1.0f64..10.0, attempt in 0u32..100) {
                let s = settings(initial, 600_000, mult, 0.0);
                prop_assert!(s.base_delay(attempt) <= s.base_delay(attempt + 1));
            }
        }
    }
}
