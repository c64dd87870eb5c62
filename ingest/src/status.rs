//! What a camera is doing, why, and its counters: the supervisor writes it, everyone else
//! reads it (terminal demo, logs, later the API and MQTT status topic).

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;

pub use pantau_events::camera::{CameraState, CameraStatus, ProblemView, StatusChange};

/// Why a camera is not streaming. Each variant has a stable `code` for machines and a message
/// for people that says what to check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "code", content = "detail", rename_all = "snake_case")]
pub enum Problem {
    /// The camera rejected the credentials (RTSP 401).
    Unauthorized,
    /// The camera has no stream at this path (RTSP 404), or the file is gone.
    NotFound,
    /// Nothing listens at the camera's address and port.
    ConnectionRefused,
    /// The camera did not answer or sent no first frame in time.
    ConnectTimeout,
    /// The stream produced no frame for the stall timeout.
    Stalled,
    /// The server ended the stream.
    StreamEnded,
    /// The network connection failed (detail from GStreamer).
    Network(String),
    /// The stream could not be decoded (detail from GStreamer).
    Decode(String),
    /// The stream has no video track; the detail says what it carries instead (e.g.
    /// "audio (OPUS)"), empty when nothing pantau recognises.
    NoVideo(String),
    /// A GStreamer element is missing: retrying cannot help.
    MissingPlugin(String),
    /// The pipeline could not be built or started.
    Pipeline(String),
    /// The camera streams, but its clock is this many seconds off the server's.
    CameraClock(i64),
}

impl Problem {
    /// Retrying helps unless software is missing.
    pub fn is_retryable(&self) -> bool {
        !matches!(self, Problem::MissingPlugin(_))
    }

    pub fn code(&self) -> &'static str {
        match self {
            Problem::Unauthorized => "unauthorized",
            Problem::NotFound => "not_found",
            Problem::ConnectionRefused => "connection_refused",
            Problem::ConnectTimeout => "connect_timeout",
            Problem::Stalled => "stalled",
            Problem::StreamEnded => "stream_ended",
            Problem::Network(_) => "network",
            Problem::Decode(_) => "decode",
            Problem::NoVideo(_) => "no_video",
            Problem::MissingPlugin(_) => "missing_plugin",
            Problem::Pipeline(_) => "pipeline",
            Problem::CameraClock(_) => "camera_clock",
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::Unauthorized => f.write_str(
                "the camera rejected the user name or password; check username/password_env",
            ),
            Problem::NotFound => f.write_str(
                "no stream at this address (not found); check the URL path or file",
            ),
            Problem::ConnectionRefused => f.write_str(
                "connection refused: nothing listens at that host and port; check the camera is on and the port",
            ),
            Problem::ConnectTimeout => f.write_str(
                "no first frame before connect_timeout_s; check the network path to the camera",
            ),
            Problem::Stalled => f.write_str("no frame for stall_timeout_s; reconnecting"),
            Problem::StreamEnded => f.write_str("the camera ended the stream; reconnecting"),
            Problem::Network(d) => write!(f, "network error: {d}"),
            Problem::Decode(d) => write!(f, "cannot decode the stream: {d}"),
            Problem::NoVideo(carries) => {
                f.write_str("the stream has no video track")?;
                if !carries.is_empty() {
                    write!(f, ", only {carries}")?;
                }
                f.write_str(
                    "; point the camera URL at a video stream (check the path or the camera's stream profile)",
                )
            }
            Problem::MissingPlugin(d) => write!(
                f,
                "a GStreamer plugin is missing ({d}); run `make setup` to install gstreamer1.0-plugins-* and gstreamer1.0-libav"
            ),
            Problem::Pipeline(d) => write!(f, "cannot build the pipeline: {d}"),
            Problem::CameraClock(off) => write!(
                f,
                "the camera's clock is {off} s off the server's (more than ingest.max_clock_skew_s): its frames are timed on arrival; set the camera's time server (NTP)"
            ),
        }
    }
}

/// Counters updated from the streaming thread without locks.
#[derive(Debug)]
pub struct Counters {
    epoch: Instant,
    /// Frames that came out of the decoder.
    pub frames_decoded: AtomicU64,
    /// Frames handed to the analysis queue (after the analysis-rate gate).
    pub frames_queued: AtomicU64,
    /// Frames dropped because analysis did not keep up.
    pub frames_dropped: AtomicU64,
    /// Frames the analysis-rate gate let pass by.
    pub frames_skipped: AtomicU64,
    /// Successful connects after the first.
    pub reconnects: AtomicU64,
    /// Nanoseconds since `epoch` of the newest decoded frame, or 0 when none yet.
    last_frame_ns: AtomicU64,
    /// Frames whose camera clock was not used because it was too far off.
    pub clock_wrong_frames: AtomicU64,
    /// How far off it was last, in seconds (camera minus arrival).
    clock_off_s: std::sync::atomic::AtomicI64,
}

impl Default for Counters {
    fn default() -> Self {
        Self {
            epoch: Instant::now(),
            frames_decoded: AtomicU64::new(0),
            frames_queued: AtomicU64::new(0),
            frames_dropped: AtomicU64::new(0),
            frames_skipped: AtomicU64::new(0),
            reconnects: AtomicU64::new(0),
            last_frame_ns: AtomicU64::new(0),
            clock_wrong_frames: AtomicU64::new(0),
            clock_off_s: std::sync::atomic::AtomicI64::new(0),
        }
    }
}

impl Counters {
    /// Counts a decoded frame; returns its index among all frames decoded for this camera.
    pub fn frame_decoded(&self) -> u64 {
        let index = self.frames_decoded.fetch_add(1, Ordering::Relaxed);
        let ns = self.epoch.elapsed().as_nanos() as u64;
        self.last_frame_ns.store(ns.max(1), Ordering::Relaxed);
        index
    }

    /// Time since the newest decoded frame.
    pub fn last_frame_age(&self) -> Option<Duration> {
        let ns = self.last_frame_ns.load(Ordering::Relaxed);
        (ns != 0).then(|| {
            self.epoch
                .elapsed()
                .saturating_sub(Duration::from_nanos(ns))
        })
    }

    /// Counts a frame whose camera clock was `off_s` seconds off.
    pub fn clock_wrong(&self, off_s: f64) {
        self.clock_off_s.store(off_s as i64, Ordering::Relaxed);
        self.clock_wrong_frames.fetch_add(1, Ordering::Relaxed);
    }

    /// How far off the camera's clock was last.
    pub fn clock_off_s(&self) -> i64 {
        self.clock_off_s.load(Ordering::Relaxed)
    }

    pub fn get(&self, c: &AtomicU64) -> u64 {
        c.load(Ordering::Relaxed)
    }
}

impl From<&Problem> for ProblemView {
    fn from(p: &Problem) -> Self {
        Self {
            code: p.code(),
            message: p.to_string(),
        }
    }
}
