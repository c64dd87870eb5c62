//! One task per camera runs its pipeline and keeps it alive: it watches the bus and the frame
//! counters, detects stalls, classifies errors and reconnects with capped exponential back-off
//! and jitter. Nothing here touches another camera.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use futures_util::StreamExt;
use gstreamer as gst;
use gstreamer::prelude::*;
use pantau_config::{CameraSettings, SourceSpec};
use rand::Rng;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn, Instrument};

use crate::pipeline::{self, lock, CameraPipeline, Shared};
use crate::sources;
use crate::status::{CameraState, CameraStatus, Problem, ProblemView, StatusChange};

/// The mutable part of a camera's status.
#[derive(Debug, Clone)]
struct StateInner {
    state: CameraState,
    problem: Option<Problem>,
    since: SystemTime,
    attempt: u32,
    retry_in: Option<Duration>,
    fps: f64,
}

/// A running camera: its settings, what its pipeline shares, and its state.
#[derive(Debug)]
pub(crate) struct Camera {
    pub settings: CameraSettings,
    pub shared: Arc<Shared>,
    state: Mutex<StateInner>,
    changes: broadcast::Sender<StatusChange>,
}

impl Camera {
    pub fn new(
        settings: CameraSettings,
        shared: Arc<Shared>,
        changes: broadcast::Sender<StatusChange>,
    ) -> Self {
        Self {
            settings,
            shared,
            state: Mutex::new(StateInner {
                state: CameraState::Connecting,
                problem: None,
                since: SystemTime::now(),
                attempt: 0,
                retry_in: None,
                fps: 0.0,
            }),
            changes,
        }
    }

    /// The one place a state change happens: it logs, records and broadcasts.
    fn set_state(&self, state: CameraState, problem: Option<Problem>, retry_in: Option<Duration>) {
        let mut inner = lock(&self.state);
        let changed = inner.state != state || inner.problem != problem;
        inner.retry_in = retry_in;
        if !changed {
            return;
        }
        inner.state = state;
        inner.problem = problem.clone();
        inner.since = SystemTime::now();
        if state != CameraState::Streaming {
            inner.fps = 0.0;
        }
        let attempt = inner.attempt;
        drop(inner);
        match (&problem, state) {
            (Some(p), CameraState::Failed) => {
                warn!(state = %state, problem = p.code(), "camera failed: {p}")
            }
            (Some(p), _) => info!(
                state = %state,
                problem = p.code(),
                attempt,
                retry_in_ms = retry_in.map(|d| d.as_millis() as u64),
                "{p}"
            ),
            (None, _) => info!(state = %state, "camera {state}"),
        }
        let _ = self.changes.send(StatusChange {
            camera_id: self.settings.id.clone(),
            state,
            problem: problem.as_ref().map(ProblemView::from),
            at: SystemTime::now(),
        });
    }

    pub fn state(&self) -> CameraState {
        lock(&self.state).state
    }

    pub fn status(&self) -> CameraStatus {
        let inner = lock(&self.state).clone();
        let c = &self.shared.counters;
        let size = *lock(&self.shared.source_size);
        CameraStatus {
            id: self.settings.id.clone(),
            name: self.settings.name.clone(),
            source: self.settings.source.redacted(),
            state: inner.state,
            problem: inner.problem.as_ref().map(ProblemView::from),
            since: inner.since,
            attempt: inner.attempt,
            retry_in_ms: inner.retry_in.map(|d| d.as_millis() as u64),
            frames_decoded: c.get(&c.frames_decoded),
            frames_queued: c.get(&c.frames_queued),
            frames_analysed: self.shared.frames.taken(),
            frames_dropped: c.get(&c.frames_dropped),
            frames_skipped: c.get(&c.frames_skipped),
            reconnects: c.get(&c.reconnects),
            analysis_fps: self.settings.analysis_fps,
            analysis_fps_now: (self.shared.rate.fps_for(&self.settings) * 100.0).round() / 100.0,
            degraded: self.shared.rate.fps_for(&self.settings) < self.settings.analysis_fps,
            last_frame_age_ms: c.last_frame_age().map(|d| d.as_millis() as u64),
            fps: (inner.fps * 10.0).round() / 10.0,
            width: size.map(|s| s.0),
            height: size.map(|s| s.1),
        }
    }
}

/// How one pipeline run ended.
#[derive(Debug)]
enum RunEnd {
    Cancelled,
    /// A file that does not loop reached its end.
    Finished,
    Problem(Problem),
}

/// Runs `camera` until `cancel` fires.
pub(crate) async fn supervise(camera: Arc<Camera>, cancel: CancellationToken) {
    let span = tracing::info_span!("camera", id = %camera.settings.id);
    run(camera.clone(), cancel).instrument(span).await;
    camera.shared.frames.close();
    camera.set_state(CameraState::Stopped, None, None);
}

async fn run(camera: Arc<Camera>, cancel: CancellationToken) {
    let settings = camera.settings.clone();
    info!(source = %settings.source.redacted(), "starting camera");
    let mut streamed_before = false;
    loop {
        camera.set_state(CameraState::Connecting, None, None);
        let end = match pipeline::build(&settings, &camera.shared) {
            Ok(p) => {
                let (end, streamed) = drive(&camera, &p, &cancel, streamed_before).await;
                streamed_before |= streamed;
                if streamed {
                    lock(&camera.state).attempt = 0;
                }
                teardown(p).await;
                end
            }
            Err(problem) => RunEnd::Problem(problem),
        };
        match end {
            RunEnd::Cancelled => return,
            RunEnd::Finished => {
                // The consumer gets what is queued, then the end of the stream.
                camera.shared.frames.close();
                camera.set_state(CameraState::Finished, None, None);
                cancel.cancelled().await;
                return;
            }
            RunEnd::Problem(problem) if !problem.is_retryable() => {
                camera.set_state(CameraState::Failed, Some(problem), None);
                cancel.cancelled().await;
                return;
            }
            RunEnd::Problem(problem) => {
                let attempt = {
                    let mut inner = lock(&camera.state);
                    let a = inner.attempt;
                    inner.attempt = a.saturating_add(1);
                    a
                };
                let unit = rand::rng().random_range(-1.0..=1.0);
                let delay = settings.reconnect.delay(attempt, unit);
                camera.set_state(CameraState::BackingOff, Some(problem), Some(delay));
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    _ = tokio::time::sleep(delay) => {}
                }
            }
        }
    }
}

/// Plays one pipeline until it fails, stalls, ends or is cancelled. Returns how it ended and
/// whether frames flowed.
async fn drive(
    camera: &Camera,
    p: &CameraPipeline,
    cancel: &CancellationToken,
    reconnecting: bool,
) -> (RunEnd, bool) {
    let settings = &camera.settings;
    let counters = &camera.shared.counters;
    let Some(bus) = p.pipeline.bus() else {
        return (
            RunEnd::Problem(Problem::Pipeline("pipeline has no bus".into())),
            false,
        );
    };
    let mut messages = bus.stream();
    // State changes may wait on the network (rtspsrc); keep them off the async workers.
    let pipeline = p.pipeline.clone();
    let started = tokio::task::spawn_blocking(move || pipeline.set_state(gst::State::Playing))
        .await
        .unwrap_or(Err(gst::StateChangeError));
    if let Err(e) = started {
        // The bus usually says why; give it a moment.
        let reason = tokio::time::timeout(Duration::from_millis(200), async {
            while let Some(msg) = messages.next().await {
                if let gst::MessageView::Error(err) = msg.view() {
                    return Some(classify(err));
                }
            }
            None
        })
        .await
        .ok()
        .flatten();
        return (
            RunEnd::Problem(reason.unwrap_or_else(|| Problem::Pipeline(e.to_string()))),
            false,
        );
    }

    let started = Instant::now();
    let start_frames = counters.get(&counters.frames_decoded);
    let mut streaming = false;
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut fps_mark = (Instant::now(), start_frames);
    let mut clock_wrong_seen = counters.get(&counters.clock_wrong_frames);
    let mut clock_right_ticks = 0u32;
    let looping = matches!(settings.source, SourceSpec::File { looping: true, .. });

    loop {
        tokio::select! {
            _ = cancel.cancelled() => return (RunEnd::Cancelled, streaming),
            msg = messages.next() => {
                let Some(msg) = msg else {
                    return (RunEnd::Problem(Problem::Pipeline("bus closed".into())), streaming);
                };
                match msg.view() {
                    gst::MessageView::Error(err) => {
                        debug!(error = %err.error(), debug = ?err.debug(), "pipeline error");
                        let mut problem = classify(err);
                        if let (Problem::Network(_), SourceSpec::Rtsp { url, .. }) = (&problem, &settings.source) {
                            problem = diagnose(url).await.unwrap_or(problem);
                        }
                        return (RunEnd::Problem(problem), streaming);
                    }
                    gst::MessageView::Warning(w) => {
                        debug!(warning = %w.error(), "pipeline warning");
                    }
                    gst::MessageView::Eos(_) => {
                        if looping {
                            debug!("end of file; looping");
                            if p.pipeline
                                .seek_simple(gst::SeekFlags::FLUSH | gst::SeekFlags::KEY_UNIT, gst::ClockTime::ZERO)
                                .is_err()
                            {
                                return (RunEnd::Problem(Problem::Pipeline("cannot seek to the start of the file to loop it".into())), streaming);
                            }
                        } else if matches!(settings.source, SourceSpec::File { .. }) {
                            return (RunEnd::Finished, streaming);
                        } else {
                            return (RunEnd::Problem(Problem::StreamEnded), streaming);
                        }
                    }
                    _ => {}
                }
            }
            _ = tick.tick() => {
                let decoded = counters.get(&counters.frames_decoded);
                if !streaming && decoded > start_frames {
                    streaming = true;
                    if reconnecting {
                        counters.reconnects.fetch_add(1, Ordering::Relaxed);
                    }
                    camera.set_state(CameraState::Streaming, None, None);
                }
                let now = Instant::now();
                let dt = now.duration_since(fps_mark.0);
                if dt >= Duration::from_secs(1) {
                    let rate = (decoded - fps_mark.1) as f64 / dt.as_secs_f64();
                    let mut inner = lock(&camera.state);
                    inner.fps = if inner.fps == 0.0 { rate } else { 0.5 * inner.fps + 0.5 * rate };
                    fps_mark = (now, decoded);
                }
                if streaming {
                    // A camera clock too far off: still streaming, with the problem named
                    // (and cleared once its sender reports are right again).
                    let wrong = counters.get(&counters.clock_wrong_frames);
                    if wrong > clock_wrong_seen {
                        let off = counters.clock_off_s();
                        let shown = lock(&camera.state).problem.clone();
                        if !matches!(shown, Some(Problem::CameraClock(o)) if (o - off).abs() < 60) {
                            camera.set_state(CameraState::Streaming, Some(Problem::CameraClock(off)), None);
                        }
                        clock_wrong_seen = wrong;
                        clock_right_ticks = 0;
                    } else if matches!(lock(&camera.state).problem, Some(Problem::CameraClock(_))) {
                        clock_right_ticks += 1;
                        if clock_right_ticks >= 50 {
                            camera.set_state(CameraState::Streaming, None, None);
                        }
                    }
                    if counters.last_frame_age().is_some_and(|age| age > settings.stall_timeout) {
                        camera.set_state(CameraState::Stalled, Some(Problem::Stalled), None);
                        return (RunEnd::Problem(Problem::Stalled), true);
                    }
                } else if started.elapsed() > settings.connect_timeout {
                    return (RunEnd::Problem(Problem::ConnectTimeout), false);
                }
            }
        }
    }
}

/// Stops a pipeline off the async threads: `rtspsrc` may wait on the network while tearing
/// down, and that must not hold up other cameras.
async fn teardown(p: CameraPipeline) {
    let pipeline = p.pipeline;
    let stopped = tokio::task::spawn_blocking(move || {
        let _ = pipeline.set_state(gst::State::Null);
    });
    if tokio::time::timeout(Duration::from_secs(10), stopped)
        .await
        .is_err()
    {
        warn!("pipeline took more than 10 s to stop; continuing without it");
    }
}

/// Maps a GStreamer error to what the operator should know.
pub(crate) fn classify(err: &gst::message::Error) -> Problem {
    let e = err.error();
    let message = e.message().to_string();
    let debug = err.debug().map(|d| d.to_string()).unwrap_or_default();
    let text = format!("{message} {debug}").to_lowercase();
    if let Some(details) = err.details().filter(|d| d.name() == sources::NO_VIDEO) {
        let carries = details.get::<String>("carries").unwrap_or_default();
        return Problem::NoVideo(carries);
    }
    if let Some(kind) = e.kind::<gst::ResourceError>() {
        return match kind {
            gst::ResourceError::NotAuthorized => Problem::Unauthorized,
            gst::ResourceError::NotFound => Problem::NotFound,
            _ if text.contains("unauthorized") || text.contains("401") => Problem::Unauthorized,
            _ if text.contains("not found") || text.contains("404") => Problem::NotFound,
            _ if text.contains("connection refused") => Problem::ConnectionRefused,
            _ if text.contains("timeout") || text.contains("timed out") => Problem::ConnectTimeout,
            _ => Problem::Network(message),
        };
    }
    if e.matches(gst::CoreError::MissingPlugin) || e.matches(gst::StreamError::CodecNotFound) {
        return Problem::MissingPlugin(message);
    }
    if text.contains("not-linked") {
        // Data on a track nothing consumes: the stream had no video track pantau could use.
        return Problem::NoVideo(String::new());
    }
    if e.kind::<gst::StreamError>().is_some() {
        return Problem::Decode(message);
    }
    Problem::Network(message)
}

/// GStreamer reports most connection failures as "could not open resource"; a plain TCP
/// connect tells the operator which one it is.
async fn diagnose(url: &url::Url) -> Option<Problem> {
    let host = url
        .host_str()?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let port = url
        .port()
        .unwrap_or(if url.scheme() == "rtsps" { 322 } else { 554 });
    let attempt = tokio::net::TcpStream::connect((host.as_str(), port));
    match tokio::time::timeout(Duration::from_secs(3), attempt).await {
        Err(_) => Some(Problem::ConnectTimeout),
        Ok(Ok(_)) => None,
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
            Some(Problem::ConnectionRefused)
        }
        Ok(Err(e)) => Some(Problem::Network(format!("cannot reach {host}:{port}: {e}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The error a source posts for a stream without video becomes `no_video`, naming what
    /// the stream carries.
    #[test]
    fn a_stream_without_video_is_named_as_such() {
        gst::init().expect("gstreamer");
        let element = gst::ElementFactory::make("identity")
            .build()
            .expect("identity");
        let bus = gst::Bus::new();
        element.set_bus(Some(&bus));
        sources::post_no_video(&element, &["audio (OPUS)".to_string()]);
        let msg = bus
            .pop_filtered(&[gst::MessageType::Error])
            .expect("an error was posted");
        let gst::MessageView::Error(err) = msg.view() else {
            unreachable!("filtered for errors")
        };
        let problem = classify(err);
        assert_eq!(problem, Problem::NoVideo("audio (OPUS)".into()));
        assert_eq!(problem.code(), "no_video");
        assert!(problem
            .to_string()
            .starts_with("the stream has no video track, only audio (OPUS); "));
    }
}
