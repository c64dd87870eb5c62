//! Builds one camera's GStreamer pipeline.
//!
//! ```text
//!  source (rtspsrc | filesrc | videotestsrc) -> decodebin            (sources/)
//!      -> [probe: count, keep newest full-res frame, analysis-rate gate]
//!      -> videoconvertscale -> BGR, analysis_width -> appsink -> FrameQueue
//! ```
//!
//! The newest full-resolution decoded frame is kept by reference (no conversion) so a snapshot
//! costs nothing until someone asks for one. Frames skipped by the rate gate are dropped right
//! after decoding, before any scaling or conversion.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use gstreamer_video as gst_video;
use pantau_config::{CameraSettings, SourceSpec};

use crate::clock::{
    node_clock_ns, CaptureTimeline, MediaTimeline, Placed, RateGate, RateShare, RtpPtsMap,
    SenderReport,
};
use crate::evidence::{tap_parser, PacketRing};
use crate::frame::{CaptureClock, Frame};
use crate::queue::{Pushed, QueueSender};
use crate::sources;
use crate::status::{Counters, Problem};

/// State shared between the streaming threads of one pipeline and its supervisor. It outlives
/// single pipelines: counters and the frame sequence continue across reconnects.
#[derive(Debug)]
pub(crate) struct Shared {
    pub camera_id: Arc<str>,
    pub counters: Counters,
    pub frames: QueueSender<Frame>,
    pub seq: AtomicU64,
    /// Newest decoded full-resolution frame, for snapshots.
    pub latest: Mutex<Option<gst::Sample>>,
    /// Source size once known.
    pub source_size: Mutex<Option<(u32, u32)>>,
    /// Frames let through the rate gate and not yet converted: (PTS, index among all decoded
    /// frames), so each analysed frame knows its place in the source.
    pub admitted: Mutex<std::collections::VecDeque<(u64, u64)>>,
    /// The node's analysis-rate factor (fair degradation).
    pub rate: Arc<RateShare>,
    /// This camera's phase within the analysis interval (live sources), see [`RateGate`].
    pub phase: Option<f64>,
    /// The box the analysis frame is fitted into when the camera's `analysis_width` is 0: the
    /// detector's input, so the decoded frame is scaled once.
    pub fit: Option<(u32, u32)>,
    /// The encoded stream kept for evidence clips, when evidence is on.
    pub ring: Option<Arc<Mutex<PacketRing>>>,
    /// The newest analysed frame's (PTS, capture time): places encoded packets in time.
    pub anchor: Arc<Mutex<Option<(u64, SystemTime)>>>,
}

impl Shared {
    pub fn new(
        camera_id: &str,
        frames: QueueSender<Frame>,
        rate: Arc<RateShare>,
        fit: Option<(u32, u32)>,
        phase: Option<f64>,
    ) -> Self {
        Self {
            camera_id: Arc::from(camera_id),
            counters: Counters::default(),
            frames,
            seq: AtomicU64::new(0),
            latest: Mutex::new(None),
            source_size: Mutex::new(None),
            admitted: Mutex::new(std::collections::VecDeque::new()),
            rate,
            fit,
            phase,
            ring: None,
            anchor: Arc::default(),
        }
    }

    /// Keeps the camera's encoded stream for evidence clips.
    pub fn with_ring(mut self, ring: Option<PacketRing>) -> Self {
        self.ring = ring.map(|r| Arc::new(Mutex::new(r)));
        self
    }
}

/// Per-pipeline clock state: RTCP mapping and the PTS -> RTP timestamp memory; the stream
/// timeline of sources without a camera clock.
#[derive(Debug, Default)]
pub(crate) struct PipelineClock {
    pub report: Option<SenderReport>,
    pub pts_map: RtpPtsMap,
    pub timeline: CaptureTimeline,
    pub media: MediaTimeline,
}

/// Admitted frames remembered for their source index; more would mean frames that never
/// reached the appsink.
const ADMITTED_KEEP: usize = 64;

/// A built (not yet started) pipeline.
#[derive(Debug)]
pub(crate) struct CameraPipeline {
    pub pipeline: gst::Pipeline,
}

fn make(factory: &str, name: &str) -> Result<gst::Element, Problem> {
    gst::ElementFactory::make(factory)
        .name(name)
        .build()
        .map_err(|_| Problem::MissingPlugin(format!("GStreamer element '{factory}'")))
}

/// Builds the pipeline for `settings`; frames go to `shared.frames`.
pub(crate) fn build(
    settings: &CameraSettings,
    shared: &Arc<Shared>,
) -> Result<CameraPipeline, Problem> {
    let pipeline = gst::Pipeline::with_name(&format!("camera-{}", settings.id));
    let rtp_clock = Arc::new(Mutex::new(PipelineClock {
        timeline: CaptureTimeline::new(settings.max_clock_skew),
        ..PipelineClock::default()
    }));

    // The tail: convert+scale to BGR at analysis width, then the appsink.
    let convert = make("videoconvertscale", "convert")?;
    let filter = make("capsfilter", "analysis-caps")?;
    let sink = gst_app::AppSink::builder()
        .name("frames")
        .max_buffers(1)
        .drop(false)
        .sync(matches!(
            settings.source,
            SourceSpec::File { realtime: true, .. }
        ))
        .build();
    sink.set_property("wait-on-eos", false);
    pipeline
        .add_many([&convert, &filter, sink.upcast_ref()])
        .map_err(|e| Problem::Pipeline(e.to_string()))?;
    gst::Element::link_many([&convert, &filter, sink.upcast_ref()])
        .map_err(|e| Problem::Pipeline(e.to_string()))?;

    let tail_sink = convert
        .static_pad("sink")
        .ok_or_else(|| Problem::Pipeline("videoconvertscale has no sink pad".into()))?;
    install_gate(&tail_sink, settings, shared, &filter);
    limit_decoder_threads(&pipeline, settings.decoder_threads);
    if let Some(ring) = &shared.ring {
        // A new pipeline's timestamps start again: a new run, placed anew.
        lock(ring).new_pipeline();
        *lock(&shared.anchor) = None;
        tap_parser(&pipeline, ring.clone(), shared.anchor.clone());
    }
    install_appsink(&sink, settings, shared, &pipeline, &rtp_clock);

    sources::add(&pipeline, &settings.source, &tail_sink, &rtp_clock)?;
    Ok(CameraPipeline { pipeline })
}

/// Gives every software decoder the pipeline creates (inside `decodebin`) `threads` threads
/// (0: the decoder's own choice, one per core). One thread per stream serves many cameras
/// best: a pool per stream only adds switching and, with frame threads, frames of delay.
fn limit_decoder_threads(pipeline: &gst::Pipeline, threads: u32) {
    if threads == 0 {
        return;
    }
    pipeline.connect_deep_element_added(move |_, _, element| {
        let is_decoder = element
            .factory()
            .is_some_and(|f| f.name().starts_with("avdec_"));
        if is_decoder && element.find_property("max-threads").is_some() {
            element.set_property("max-threads", threads as i32);
        }
    });
}

/// Lowers the calling streaming thread (the one that depayloads and decodes this camera's
/// video; the network is read on another) by `nice` steps, once per thread.
fn lower_this_thread(nice: u8) {
    thread_local!(static LOWERED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) });
    if nice == 0 || LOWERED.get() {
        return;
    }
    LOWERED.set(true);
    let tid = rustix::thread::gettid();
    if let Ok(now) = rustix::process::getpriority_process(Some(tid)) {
        let lower = (now + i32::from(nice)).min(19);
        if let Err(e) = rustix::process::setpriority_process(Some(tid), lower) {
            tracing::debug!("cannot lower the decoding thread's priority: {e}");
        }
    }
}

/// The probe right after decoding: counts frames, keeps the newest full-resolution one and
/// drops what the analysis rate does not need. Also sets the analysis caps once the source
/// size is known (never upscale).
fn install_gate(
    pad: &gst::Pad,
    settings: &CameraSettings,
    shared: &Arc<Shared>,
    filter: &gst::Element,
) {
    let shared = shared.clone();
    let size = match settings.analysis_width {
        Some(width) => AnalysisSize::Width(width),
        None => match shared.fit {
            Some((w, h)) => AnalysisSize::Fit(w, h),
            None => AnalysisSize::Width(DEFAULT_WIDTH),
        },
    };
    let filter = filter.clone();
    let gate = Mutex::new(match shared.phase {
        Some(phase) => RateGate::new(settings.analysis_fps).with_phase(phase),
        None => RateGate::new(settings.analysis_fps),
    });
    let camera = settings.clone();
    let nice = settings.decoder_nice;
    let caps_now: Mutex<Option<gst::Caps>> = Mutex::new(None);
    let mask = gst::PadProbeType::BUFFER | gst::PadProbeType::EVENT_DOWNSTREAM;
    pad.add_probe(mask, move |_pad, info| match &info.data {
        Some(gst::PadProbeData::Event(ev)) => {
            if let gst::EventView::Caps(c) = ev.view() {
                *lock(&caps_now) = Some(c.caps_owned());
                if let Ok(vi) = gst_video::VideoInfo::from_caps(c.caps()) {
                    *lock(&shared.source_size) = Some((vi.width(), vi.height()));
                    filter.set_property("caps", analysis_caps(&vi, size));
                }
            }
            gst::PadProbeReturn::Ok
        }
        Some(gst::PadProbeData::Buffer(buffer)) => {
            lower_this_thread(nice);
            let index = shared.counters.frame_decoded();
            let caps = lock(&caps_now).clone();
            *lock(&shared.latest) = Some(
                gst::Sample::builder()
                    .buffer(buffer)
                    .caps_if_some(caps.as_ref())
                    .build(),
            );
            let pts = buffer.pts().map(|t| t.nseconds()).unwrap_or(0);
            let admit = {
                let mut gate = lock(&gate);
                gate.set_fps(shared.rate.fps_for(&camera));
                gate.admit_at(pts, node_clock_ns())
            };
            if admit {
                let mut admitted = lock(&shared.admitted);
                if admitted.len() == ADMITTED_KEEP {
                    admitted.pop_front();
                }
                admitted.push_back((pts, index));
                gst::PadProbeReturn::Ok
            } else {
                shared
                    .counters
                    .frames_skipped
                    .fetch_add(1, Ordering::Relaxed);
                // `Handled` lets the binding release the buffer. `Drop` would make GStreamer
                // 1.22 unref it a second time, as NULL (fixed upstream in 1.24.8).
                gst::PadProbeReturn::Handled
            }
        }
        _ => gst::PadProbeReturn::Ok,
    });
}

/// The analysis width when neither the camera nor the detector gives one.
const DEFAULT_WIDTH: u32 = 640;

/// How big the analysis frame is.
#[derive(Debug, Clone, Copy)]
enum AnalysisSize {
    /// This wide (`analysis_width`), height from the aspect ratio.
    Width(u32),
    /// As large as fits in this box (the detector's input), aspect ratio kept.
    Fit(u32, u32),
}

/// BGR at the analysis size (never larger than the source), height from the display aspect
/// ratio, both even.
fn analysis_caps(vi: &gst_video::VideoInfo, size: AnalysisSize) -> gst::Caps {
    let (w, h) = (vi.width(), vi.height());
    let par = vi.par();
    // The picture's height in square pixels per pixel of width.
    let aspect =
        f64::from(h) / f64::from(w.max(1)) * f64::from(par.denom()) / f64::from(par.numer().max(1));
    let max_width = match size {
        AnalysisSize::Width(width) => width,
        AnalysisSize::Fit(bw, bh) => {
            // The widest frame whose height still fits the box.
            let by_height = (f64::from(bh) / aspect.max(1e-6)).floor() as u32;
            bw.min(by_height.max(2))
        }
    };
    let mut width = max_width.min(w).max(2);
    width -= width % 2;
    let mut height = (aspect * f64::from(width)).round().max(2.0) as i32;
    height -= height % 2;
    gst_video::VideoCapsBuilder::new()
        .format(gst_video::VideoFormat::Bgr)
        .width(width as i32)
        .height(height)
        .pixel_aspect_ratio(gst::Fraction::new(1, 1))
        .build()
}

fn install_appsink(
    sink: &gst_app::AppSink,
    settings: &CameraSettings,
    shared: &Arc<Shared>,
    pipeline: &gst::Pipeline,
    rtp_clock: &Arc<Mutex<PipelineClock>>,
) {
    let shared = shared.clone();
    let rtp_clock = rtp_clock.clone();
    let pipeline = pipeline.downgrade();
    let is_rtsp = matches!(settings.source, SourceSpec::Rtsp { .. });
    let mut info_cache: Option<(gst::Caps, gst_video::VideoInfo)> = None;
    sink.set_callbacks(
        gst_app::AppSinkCallbacks::builder()
            .new_sample(move |sink| {
                let sample = sink.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                let (Some(buffer), Some(caps)) = (sample.buffer_owned(), sample.caps_owned())
                else {
                    return Ok(gst::FlowSuccess::Ok);
                };
                if info_cache.as_ref().is_none_or(|(c, _)| *c != caps) {
                    let info = gst_video::VideoInfo::from_caps(&caps)
                        .map_err(|_| gst::FlowError::NotNegotiated)?;
                    info_cache = Some((caps.clone(), info));
                }
                let Some((_, info)) = info_cache.as_ref() else {
                    return Ok(gst::FlowSuccess::Ok);
                };
                let pts = buffer.pts();
                let running = pts.and_then(|p| {
                    sample
                        .segment()
                        .and_then(|s| s.downcast_ref::<gst::ClockTime>())
                        .and_then(|s| s.to_running_time(p))
                });
                let (capture_time, clock, clock_off) = capture_time(
                    &rtp_clock,
                    is_rtsp,
                    pts,
                    running,
                    pipeline.upgrade().as_ref(),
                );
                if let Some(off) = clock_off {
                    shared.counters.clock_wrong(off);
                }
                if let Some(p) = pts {
                    *lock(&shared.anchor) = Some((p.nseconds(), capture_time));
                }
                let source_index = {
                    let key = pts.map(|p| p.nseconds()).unwrap_or(0);
                    let mut admitted = lock(&shared.admitted);
                    let found = admitted.iter().position(|(p, _)| *p == key);
                    found.map(|i| {
                        let index = admitted[i].1;
                        admitted.drain(..=i);
                        index
                    })
                };
                let (sw, sh) = lock(&shared.source_size).unwrap_or((info.width(), info.height()));
                let geometry = (
                    info.width(),
                    info.height(),
                    info.stride()[0] as usize,
                    info.offset()[0],
                );
                let mapped = buffer
                    .into_mapped_buffer_readable()
                    .map_err(|_| gst::FlowError::Error)?;
                let seq = shared.seq.fetch_add(1, Ordering::Relaxed);
                let frame = Frame::new(
                    shared.camera_id.clone(),
                    seq,
                    capture_time,
                    clock,
                    pts.map(|p| p.nseconds()),
                    source_index,
                    geometry,
                    (sw, sh),
                    mapped,
                );
                shared
                    .counters
                    .frames_queued
                    .fetch_add(1, Ordering::Relaxed);
                match shared.frames.push(frame) {
                    Pushed::Queued => {}
                    Pushed::DroppedOldest => {
                        shared
                            .counters
                            .frames_dropped
                            .fetch_add(1, Ordering::Relaxed);
                    }
                    // Nobody reads this camera any more; the supervisor is shutting it down.
                    Pushed::Closed => return Err(gst::FlowError::Flushing),
                }
                Ok(gst::FlowSuccess::Ok)
            })
            .build(),
    );
}

/// The capture time of a frame: the camera's clock (RTCP sender report) when known, otherwise
/// the arrival time derived from the pipeline clock (the moment the source received it, not the
/// moment analysis gets it). Sources without a camera (files, test patterns) are placed on
/// their own stream timeline, so a file decoded faster than real time keeps the video's timing.
fn capture_time(
    rtp_clock: &Arc<Mutex<PipelineClock>>,
    is_rtsp: bool,
    pts: Option<gst::ClockTime>,
    running: Option<gst::ClockTime>,
    pipeline: Option<&gst::Pipeline>,
) -> (SystemTime, CaptureClock, Option<f64>) {
    let mut clock = lock(rtp_clock);
    if !is_rtsp {
        let t = match running {
            Some(r) => clock
                .media
                .place(Duration::from_nanos(r.nseconds()), SystemTime::now()),
            None => arrival_time(running, pipeline),
        };
        return (t, CaptureClock::Arrival, None);
    }
    let arrival = arrival_time(running, pipeline);
    let camera = match (
        clock.report,
        pts.and_then(|p| clock.pts_map.lookup(p.nseconds())),
    ) {
        (Some(report), Some(rtp)) => Some(report.wall_time(rtp)),
        _ => None,
    };
    match clock.timeline.place(camera, arrival) {
        (t, Placed::Camera) => (t, CaptureClock::RtcpSenderReport, None),
        (t, Placed::Arrival) => (t, CaptureClock::Arrival, None),
        (t, Placed::ClockWrong(off)) => (t, CaptureClock::Arrival, Some(off)),
    }
}

fn arrival_time(running: Option<gst::ClockTime>, pipeline: Option<&gst::Pipeline>) -> SystemTime {
    let now = SystemTime::now();
    let (Some(running), Some(pipeline)) = (running, pipeline) else {
        return now;
    };
    let (Some(clock), Some(base)) = (pipeline.clock(), pipeline.base_time()) else {
        return now;
    };
    let at = base + running;
    let clock_now = clock.time();
    if clock_now < at {
        return now;
    }
    let age = Duration::from_nanos((clock_now - at).nseconds());
    // Ages beyond a minute mean a non-live source decoded ahead of time; use now.
    if age < Duration::from_secs(60) {
        now - age
    } else {
        now
    }
}

/// Locks a mutex whose data stays valid even if a holder panicked.
pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
