//! A camera's state as ingest reports it: the supervision state machine, a point-in-time
//! status and the state changes. Plain data, so the API and the events read them without the
//! video stack.

use std::fmt;
use std::time::SystemTime;

use serde::Serialize;

/// The supervision state machine of one camera.
///
/// ```text
///  Connecting --first frame--> Streaming --no frame for stall_timeout--> Stalled
///      |                          |                                          |
///      +--error/timeout--+        +--error/end of stream--+                  |
///                        v                                v                  v
///                     BackingOff <----------------------------------------- (teardown)
///                        |  (delay with exponential growth and jitter)
///                        +--> Connecting
///  Failed: retrying cannot help (missing GStreamer plugin, unusable pipeline).
///  Finished: a file that does not loop reached its end.  Stopped: removed or shut down.
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CameraState {
    Connecting,
    Streaming,
    Stalled,
    BackingOff,
    Failed,
    Finished,
    Stopped,
}

impl CameraState {
    pub fn as_str(self) -> &'static str {
        match self {
            CameraState::Connecting => "connecting",
            CameraState::Streaming => "streaming",
            CameraState::Stalled => "stalled",
            CameraState::BackingOff => "backing_off",
            CameraState::Failed => "failed",
            CameraState::Finished => "finished",
            CameraState::Stopped => "stopped",
        }
    }
}

impl fmt::Display for CameraState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A point-in-time view of one camera, for people and APIs.
#[derive(Debug, Clone, Serialize)]
pub struct CameraStatus {
    pub id: String,
    pub name: String,
    /// The source with credentials redacted.
    pub source: String,
    pub state: CameraState,
    /// Why the camera is not streaming, when it is not.
    pub problem: Option<ProblemView>,
    /// When the camera entered this state.
    #[serde(with = "unix_ms")]
    pub since: SystemTime,
    /// Consecutive failed attempts (resets once frames flow).
    pub attempt: u32,
    /// Delay before the next attempt while backing off.
    pub retry_in_ms: Option<u64>,
    pub frames_decoded: u64,
    pub frames_queued: u64,
    pub frames_analysed: u64,
    pub frames_dropped: u64,
    /// Frames the analysis-rate gate let pass by (decoded = queued + skipped).
    pub frames_skipped: u64,
    pub reconnects: u64,
    /// The analysis rate the camera is configured for, frames per second.
    pub analysis_fps: f64,
    /// The rate it is analysed at now: lower than `analysis_fps` while the node is over its
    /// capacity and lowers every camera's rate by the same factor (`degraded`).
    pub analysis_fps_now: f64,
    /// The node is over its capacity and analyses this camera at `analysis_fps_now`.
    pub degraded: bool,
    pub last_frame_age_ms: Option<u64>,
    /// Decoded frames per second over the last few seconds.
    pub fps: f64,
    /// Source size, once known.
    pub width: Option<u32>,
    pub height: Option<u32>,
}

/// A problem as shown in status output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProblemView {
    pub code: &'static str,
    pub message: String,
}

/// A state transition, broadcast to whoever listens (logs, MQTT status, API).
#[derive(Debug, Clone, Serialize)]
pub struct StatusChange {
    pub camera_id: String,
    pub state: CameraState,
    pub problem: Option<ProblemView>,
    #[serde(with = "unix_ms")]
    pub at: SystemTime,
}

mod unix_ms {
    use serde::Serializer;
    use std::time::{SystemTime, UNIX_EPOCH};

    pub fn serialize<S: Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
        let ms = t
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or(0);
        s.serialize_u64(ms as u64)
    }
}
