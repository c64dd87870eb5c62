//! The TOML configuration's schema: what the user wrote ([`Config`]) and its defaults. Its
//! validation is in `validation.rs`, cameras in `cameras.rs`, sources in `sources.rs`; this
//! module re-exports them so every type is found at `pantau_config::config`.
//!
//! Every struct denies unknown fields so a misspelt key is an error, not a silently ignored
//! option. [`Config::validate`] collects all problems at once, each with its path
//! (`cameras[1].url`) and what to do about it.

use serde::{Deserialize, Serialize};

pub use crate::analytics::{DetectorConfig, LineConfig, TrackerConfig, ZoneConfig};
pub use crate::cameras::{CameraConfig, CameraSettings, Decode, MotionGate, ReconnectSettings};
pub use crate::evidence::EvidenceConfig;
pub use crate::fleet::FleetConfig;
pub use crate::outputs::{
    ApiConfig, ApiLimits, EmbeddedConfig, MetricsAccess, MqttConfig, OutboxConfig, SnapshotConfig,
    StoreConfig, WhenFull,
};
pub use crate::reports::ReportsConfig;
pub use crate::sources::{Credentials, SourceSpec, TestPattern, Transport};
pub use crate::validation::{ConfigError, ConfigIssue, ConfigIssues, ValidConfig};

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
    /// Evidence clips of incidents.
    #[serde(default)]
    pub evidence: EvidenceConfig,
    /// The HTTP API.
    #[serde(default)]
    pub api: ApiConfig,
    /// Citizen reports sent by integrations (citizen apps) to the API.
    #[serde(default)]
    pub reports: ReportsConfig,
    /// Sharing cameras with other nodes on the same database and broker.
    #[serde(default)]
    pub fleet: FleetConfig,
    /// Agencies (command centers) and the camera groups each owns; their users see only those
    /// cameras. Empty (default): every user sees every camera.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub agencies: crate::agencies::Agencies,
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
    /// Default 640. Range 64..=3840, even; or 0: the decoded frame is scaled once, straight to
    /// the detector's input size (416 px for the bundled model), which saves about 5 % of a
    /// camera's CPU but gives the tracker's appearance cue fewer pixels (IDF1 0.77 -> 0.75 on
    /// PETS09 at 5 fps).
    #[serde(default = "default_analysis_width")]
    pub analysis_width: u32,
    /// Threads of each camera's video decoder. Default 1: with many cameras, one thread per
    /// stream uses the cores best (a pool per stream only adds switching and frame delay);
    /// 0 lets the decoder pick (one per core). Range 0..=16.
    #[serde(default = "default_decoder_threads")]
    pub decoder_threads: u32,
    /// How much lower than the rest of pantau the threads that receive and decode video run
    /// (Unix nice steps). Default 5: a decoder has a frame's time for each frame, the detector
    /// shares the cores between cameras, so it goes first and its latency stays low; the rate
    /// governor sheds analysis before decoding can fall behind. 0 keeps them equal. Range 0..=19.
    #[serde(default = "default_decoder_nice")]
    pub decoder_nice: u8,
    /// When the node cannot keep up, every camera lowers its analysis rate by the same factor
    /// (never below `min_analysis_fps`) and says so in its status, instead of some cameras
    /// losing frames. Default true.
    #[serde(default = "crate::cameras::default_true")]
    pub fair_degradation: bool,
    /// The lowest rate fair degradation lowers a camera to. Default 1 fps. Range (0, 120].
    #[serde(default = "default_min_analysis_fps")]
    pub min_analysis_fps: f64,
    /// Skip the detector on frames that did not change (the last frame's objects are kept).
    /// Default false; cameras may override it.
    #[serde(default)]
    pub motion_gate: bool,
    /// With `motion_gate`: the detector runs at least this often. Default 2 s. Range 0.2..=60.
    #[serde(default = "default_motion_refresh")]
    pub motion_refresh_s: f64,
    /// With `motion_gate`: grey levels (0-255) a cell of the small picture must change by to
    /// count as motion. Default 8. Range 1..=255.
    #[serde(default = "default_motion_threshold")]
    pub motion_threshold: u8,
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
    /// A camera whose clock (RTCP sender reports) is further than this from the server's is
    /// not trusted: its frames are timed on arrival and its status says the clock is wrong.
    /// Default 300 s. Range 1..=86400.
    #[serde(default = "default_max_clock_skew")]
    pub max_clock_skew_s: f64,
}

fn default_max_clock_skew() -> f64 {
    300.0
}

impl Default for IngestConfig {
    fn default() -> Self {
        Self {
            analysis_fps: default_analysis_fps(),
            analysis_width: default_analysis_width(),
            decoder_threads: default_decoder_threads(),
            decoder_nice: default_decoder_nice(),
            fair_degradation: true,
            min_analysis_fps: default_min_analysis_fps(),
            motion_gate: false,
            motion_refresh_s: default_motion_refresh(),
            motion_threshold: default_motion_threshold(),
            queue_capacity: default_queue_capacity(),
            stall_timeout_s: default_stall_timeout(),
            connect_timeout_s: default_connect_timeout(),
            reconnect: ReconnectConfig::default(),
            max_clock_skew_s: default_max_clock_skew(),
        }
    }
}

fn default_analysis_fps() -> f64 {
    5.0
}
fn default_analysis_width() -> u32 {
    640
}
fn default_decoder_threads() -> u32 {
    1
}
fn default_decoder_nice() -> u8 {
    5
}
fn default_min_analysis_fps() -> f64 {
    1.0
}
fn default_motion_refresh() -> f64 {
    2.0
}
fn default_motion_threshold() -> u8 {
    8
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sources::*;
    use crate::validation::*;
    use std::path::Path;
    use std::time::Duration;

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
    fn a_sub_stream_is_decoded_and_the_main_stream_kept() {
        let valid = validate(
            "[ingest]\nmotion_gate = true\n[[cameras]]\nid = \"a\"\nurl = \"rtsp://u:p@h/main\"\n\
             sub_url = \"rtsp://h/sub\"\ndecode = \"sub\"\n[[cameras]]\nid = \"b\"\n\
             url = \"rtsp://h/main\"\nsub_url = \"rtsp://h/sub\"\nmotion_gate = false\n",
        )
        .expect("valid");
        let url = |s: &SourceSpec| match s {
            SourceSpec::Rtsp { url, .. } => url.path().to_string(),
            other => panic!("not RTSP: {other:?}"),
        };
        let a = &valid.cameras[0];
        assert_eq!(url(&a.source), "/sub");
        assert_eq!(a.main_source.as_ref().map(url).as_deref(), Some("/main"));
        assert_eq!(
            a.motion_gate,
            Some(MotionGate {
                refresh: Duration::from_secs(2),
                threshold: 8
            })
        );
        let b = &valid.cameras[1];
        assert_eq!(
            url(&b.source),
            "/main",
            "decode defaults to the main stream"
        );
        assert_eq!(b.main_source, None);
        assert_eq!(b.motion_gate, None, "the camera turned the gate off");
    }

    #[test]
    fn minimal_config_gets_defaults() {
        let valid = validate("[[cameras]]\nid = \"cam-1\"\nurl = \"rtsp://10.0.0.5/stream1\"\n")
            .expect("valid");
        let cam = &valid.cameras[0];
        assert_eq!(cam.name, "cam-1");
        assert_eq!(cam.analysis_fps, 5.0);
        assert_eq!(cam.analysis_width, Some(640));
        assert_eq!(cam.decoder_threads, 1);
        assert_eq!(cam.motion_gate, None);
        assert_eq!(cam.main_source, None);
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
                "[[cameras]]\nid = \"reports\"\nurl = \"rtsp://h/x\"\n",
                "cameras[0].id: \"reports\" is reserved for citizen reports no camera sees; pick another id",
            ),
            (
                "[evidence]\npre_s = 500\n",
                "evidence.pre_s: use 0 to 120 seconds",
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
                "[[cameras]]\nid = \"a\"\nurl = \"rtsp://h/x\"\ndecode = \"sub\"\n",
                "cameras[0].decode: decode = \"sub\" needs the camera's sub_url",
            ),
            (
                "[[cameras]]\nid = \"a\"\nurl = \"rtsp://h/x\"\nsub_url = \"rtsp:///y\"\n",
                "cameras[0].sub_url: the URL has no host",
            ),
            (
                "[ingest]\ndecoder_threads = 17\n[[cameras]]\nid = \"a\"\nurl = \"rtsp://h/x\"\n",
                "ingest.decoder_threads: 17 is out of range: use a value from 0 to 16",
            ),
            (
                "[ingest]\nmotion_refresh_s = 0\n[[cameras]]\nid = \"a\"\nurl = \"rtsp://h/x\"\n",
                "ingest.motion_refresh_s: 0 s is out of range",
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
                "[[cameras]]\nid = \"a\"\nurl = \"test://ball\"\n[[cameras.lanes]]\nname = \"east\"\npolygon = [[0, 0], [100, 0], [100, 50], [0, 50]]\ndirection = [[90, 25], [10, 25]]\nspeed_limit_kmh = 50\n",
                "cameras[0].lanes[0].speed_limit_kmh: speeding needs metres: add [cameras.calibration]",
            ),
            (
                "[[cameras]]\nid = \"a\"\nurl = \"test://ball\"\n[[cameras.lanes]]\nname = \"east\"\npolygon = [[0, 0], [100, 0], [100, 50], [0, 50]]\ndirection = [[10, 25], [10, 25]]\n",
                "cameras[0].lanes[0].direction: draw the direction of travel as an arrow of two different points",
            ),
            (
                "[[cameras]]\nid = \"a\"\nurl = \"test://ball\"\n[[cameras.zones]]\nname = \"plaza\"\npolygon = [[0, 0], [100, 0], [100, 50]]\nmax_density = 2.0\n",
                "cameras[0].zones[0].max_density: a density per square metre needs metres",
            ),
            (
                "[[cameras]]\nid = \"a\"\nurl = \"test://ball\"\n[cameras.calibration]\nimage = [[0, 0], [10, 10], [20, 20], [30, 30]]\nground = [[0, 0], [1, 0], [1, 1], [0, 1]]\n",
                "cameras[0].calibration: the points lie on one line",
            ),
            (
                "[[cameras]]\nid = \"a\"\nurl = \"test://ball\"\n[cameras.calibration]\nimage = [[0, 0], [100, 0], [100, 100], [0, 100]]\nground = [[0, 0], [1, 0], [1, 1]]\nlatitude = -3.29\n",
                "cameras[0].calibration.ground: 3 ground points for 4 image points",
            ),
            (
                "[[cameras]]\nid = \"a\"\nurl = \"test://ball\"\n[cameras.calibration]\nimage = [[0, 0], [100, 0], [100, 100], [0, 100]]\nground = [[0, 0], [1, 0], [1, 1], [0, 1]]\nlatitude = -3.29\n",
                "cameras[0].calibration.longitude: give latitude and longitude together",
            ),
            (
                "[[cameras]]\nid = \"a\"\nurl = \"test://ball\"\n[cameras.rules]\nstopped_s = 0\n",
                "cameras[0].rules.stopped_s: 0 is out of range: use 1 to 3600",
            ),
            (
                "[[cameras]]\nid = \"a\"\nurl = \"test://ball\"\n[[cameras.lines]]\nname = \"x\"\npoints = [[0, 0], [5, 5]]\n[[cameras.lanes]]\nname = \"x\"\npolygon = [[0, 0], [100, 0], [100, 50], [0, 50]]\ndirection = [[90, 25], [10, 25]]\n",
                "cameras[0].lanes[0].name: \"x\" is used twice on this camera",
            ),
            (
                "[embedded]\nmqtt_listen = \"0.0.0.0:1884\"\n",
                "embedded.mqtt_listen: 0.0.0.0:1884 would let anyone on the network publish and read events without a login",
            ),
            (
                "[embedded]\nmqtt_username = \"pantau\"\nmqtt_password_env = \"PANTAU_NOPE\"\n",
                "embedded.mqtt_password_env: environment variable PANTAU_NOPE is not set",
            ),
            (
                "[embedded]\nmqtt_memory_mb = 0\n",
                "embedded.mqtt_memory_mb: use 1 to 1024 MiB",
            ),
            (
                "[api]\ntrusted_proxies = [\"10.0.0.0/33\"]\n",
                "api.trusted_proxies[0]: \"10.0.0.0/33\" is not an address or network",
            ),
            (
                "[api]\ncamera_env_prefix = \"PANTAU_\"\n",
                "api.camera_env_prefix: \"PANTAU_\" would let the API read pantau's own secrets",
            ),
            (
                "[api]\nmap_tiles = \"https://tile.example.org/{z}/{x}.png\"\n",
                "api.map_tiles: \"https://tile.example.org/{z}/{x}.png\" has no {y}",
            ),
            (
                "[api]\nmap_tiles = \"https://me:secret@tile.example.org/{z}/{x}/{y}.png\"\n",
                "api.map_tiles: the tile URL holds a user name or password",
            ),
            (
                "[api]\nmap_tiles = \"ftp://tile.example.org/{z}/{x}/{y}.png\"\n",
                "api.map_tiles: \"ftp://tile.example.org/{z}/{x}/{y}.png\" is not an http(s) URL",
            ),
            (
                "[api]\ncamera_env_prefix = \"\"\n",
                "api.camera_env_prefix: \"\" would let the API read pantau's own secrets",
            ),
            (
                "[api]\nmedia_dirs = [\"/nonexistent/media\"]\n",
                "api.media_dirs[0]: /nonexistent/media is not a folder",
            ),
            (
                "[api]\nmetrics = \"token\"\nmetrics_token_env = \"PANTAU_NOPE\"\n",
                "api.metrics_token_env: metrics = \"token\" needs a token of 16 or more characters in PANTAU_NOPE",
            ),
            (
                "[api]\nmetrics = \"sometimes\"\n",
                "unknown variant `sometimes`, expected one of `open`, `token`, `off`",
            ),
            (
                "[api.limits]\nmax_connections = 0\n",
                "api.limits.max_connections: 0 is out of range: use 1 to 65536",
            ),
            (
                "[api.limits]\nheader_timeout_s = 1000\n",
                "api.limits.header_timeout_s: 1000 is out of range: use 1 to 300",
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
    fn the_traffic_example_of_the_issue_is_valid() {
        let valid = validate(
            "[[cameras]]\nid = \"a\"\nurl = \"test://ball\"\n\
             [cameras.calibration]\nimage = [[412, 300], [866, 300], [1010, 700], [260, 700]]\n\
             ground = [[0, 0], [7, 0], [7, 30], [0, 30]]\nlatitude = -3.2946\nlongitude = 102.8617\n\
             heading_deg = 90\nfov_deg = 60\n\
             [[cameras.lanes]]\nname = \"eastbound\"\npolygon = [[0, 180], [640, 180], [640, 260], [0, 260]]\n\
             direction = [[600, 220], [40, 220]]\nspeed_limit_kmh = 50\nstopping = false\n\
             [[cameras.zones]]\nname = \"bus-stop\"\npolygon = [[0, 0], [100, 0], [100, 50]]\nkind = \"parking\"\n\
             [cameras.rules]\nstopped_s = 45\n",
        )
        .expect("valid");
        let cam = &valid.cameras[0];
        assert_eq!(cam.lanes[0].speed_limit_kmh, Some(50.0));
        assert_eq!(cam.rules.stopped_s, 45.0);
        assert_eq!(cam.rules.wrong_way_s, 2.0, "defaults for the rest");
        assert_eq!(cam.zones[0].kind, crate::traffic::ZoneKind::Parking);
        assert_eq!(cam.calibration.as_ref().map(|c| c.image.len()), Some(4));
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
