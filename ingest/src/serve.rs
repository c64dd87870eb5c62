//! A small RTSP server that serves video files as looping live H.264 streams, one mount per
//! file. `pantau serve-rtsp` and the demo use it to stand in for street cameras; tests run it
//! in-process so they can stop and restart it to simulate an outage.
//!
//! Every client gets its own media (like a camera's unicast stream) fed by a *player*: a
//! separate pipeline that reads the file in real time, passes H.264 through untouched (or
//! transcodes anything else with x264), and on reaching the end seeks back to the start while
//! keeping timestamps increasing. The RTSP side only sees a live `appsrc`.
//!
//! A [`LaunchMount`] serves a gst-rtsp-server launch line instead of a file, for streams a
//! file cannot describe: tests use them for hostile cameras (audio only, H.265, a recording
//! that ends mid-frame).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;

use gstreamer as gst;
use gstreamer::glib;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use gstreamer_rtsp_server as rtsp;
use gstreamer_rtsp_server::prelude::*;

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("GStreamer could not start: {0}")]
    Init(String),
    #[error("cannot serve {path}: {reason}")]
    File { path: PathBuf, reason: String },
    #[error(
        "mount path \"{0}\" must start with '/' and contain only letters, digits, '-', '_' and '/'"
    )]
    Mount(String),
    #[error("cannot serve {path}: the launch line does not parse: {reason}")]
    Launch { path: String, reason: String },
    #[error(
        "cannot listen on {address}:{port}: {reason}; pick another --port or stop what uses it"
    )]
    Listen {
        address: String,
        port: u16,
        reason: String,
    },
}

/// One stream: `rtsp://address:port{path}` plays `file` in a loop.
#[derive(Debug, Clone)]
pub struct Mount {
    pub path: String,
    pub file: PathBuf,
}

impl Mount {
    /// A mount named after the file stem: `/vtest` for `vtest.avi`.
    pub fn for_file(file: &Path) -> Self {
        let stem = file
            .file_stem()
            .map(|s| s.to_string_lossy().to_string())
            .unwrap_or_else(|| "stream".into());
        let clean: String = stem
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        Self {
            path: format!("/{clean}"),
            file: file.to_path_buf(),
        }
    }
}

/// One stream described by a gst-rtsp-server launch line, e.g.
/// `( audiotestsrc is-live=true ! opusenc ! rtpopuspay name=pay0 pt=97 )`: its payloaders are
/// named `pay0`, `pay1`, ... Every client gets its own media built from it.
#[derive(Debug, Clone)]
pub struct LaunchMount {
    pub path: String,
    pub launch: String,
}

/// What to serve and where.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// Address to listen on. Default 127.0.0.1.
    pub address: String,
    /// Port; 0 picks a free one (see [`RtspServer::port`]).
    pub port: u16,
    pub mounts: Vec<Mount>,
    /// Require this user name and password (HTTP basic auth over RTSP).
    pub credentials: Option<(String, String)>,
}

/// A running server; stops when dropped.
#[derive(Debug)]
pub struct RtspServer {
    address: String,
    port: u16,
    mounts: Vec<Mount>,
    main_loop: glib::MainLoop,
    thread: Option<JoinHandle<()>>,
}

impl RtspServer {
    /// Starts serving on a thread of its own.
    pub fn start(options: ServeOptions) -> Result<Self, ServeError> {
        Self::start_with(options, Vec::new())
    }

    /// Starts serving the file mounts of `options` and `launched` besides them.
    pub fn start_with(
        options: ServeOptions,
        launched: Vec<LaunchMount>,
    ) -> Result<Self, ServeError> {
        gst::init().map_err(|e| ServeError::Init(e.to_string()))?;
        for m in &options.mounts {
            check_mount_path(&m.path)?;
            std::fs::File::open(&m.file).map_err(|e| ServeError::File {
                path: m.file.clone(),
                reason: e.to_string(),
            })?;
        }
        for m in &launched {
            check_mount_path(&m.path)?;
            // gst-rtsp-server parses the line only when a client asks; say now what is wrong.
            gst::parse::launch(&m.launch).map_err(|e| ServeError::Launch {
                path: m.path.clone(),
                reason: e.to_string(),
            })?;
        }
        let context = glib::MainContext::new();
        let main_loop = glib::MainLoop::new(Some(&context), false);
        let (ready_tx, ready_rx) = mpsc::channel();
        let opts = options.clone();
        let loop_for_thread = main_loop.clone();
        let thread = std::thread::Builder::new()
            .name("rtsp-server".into())
            .spawn(move || serve_thread(opts, launched, context, loop_for_thread, ready_tx))
            .map_err(|e| ServeError::Init(e.to_string()))?;
        match ready_rx.recv() {
            Ok(Ok(port)) => Ok(Self {
                address: options.address,
                port,
                mounts: options.mounts,
                main_loop,
                thread: Some(thread),
            }),
            Ok(Err(e)) => {
                let _ = thread.join();
                Err(e)
            }
            Err(_) => Err(ServeError::Init("RTSP server thread ended early".into())),
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn mounts(&self) -> &[Mount] {
        &self.mounts
    }

    /// The URL of a mount, e.g. `rtsp://127.0.0.1:8554/vtest`.
    pub fn url(&self, mount_path: &str) -> String {
        format!("rtsp://{}:{}{}", self.address, self.port, mount_path)
    }

    /// Disconnects every client, closes the listening socket and waits for the thread.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        self.main_loop.quit();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for RtspServer {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn check_mount_path(path: &str) -> Result<(), ServeError> {
    let ok = path.starts_with('/')
        && path.len() > 1
        && path[1..]
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '/'));
    if ok {
        Ok(())
    } else {
        Err(ServeError::Mount(path.to_string()))
    }
}

/// A factory for `launch`: one media per client, like a camera's unicast stream (each starts
/// at a key frame), open to the `viewer` role when the server asks for credentials.
fn media_factory(launch: &str, with_credentials: bool) -> rtsp::RTSPMediaFactory {
    let factory = rtsp::RTSPMediaFactory::new();
    factory.set_launch(launch);
    factory.set_shared(false);
    if with_credentials {
        factory.add_role_from_structure(
            &gst::Structure::builder("viewer")
                .field(rtsp::RTSP_PERM_MEDIA_FACTORY_ACCESS, true)
                .field(rtsp::RTSP_PERM_MEDIA_FACTORY_CONSTRUCT, true)
                .build(),
        );
    }
    factory
}

fn serve_thread(
    options: ServeOptions,
    launched: Vec<LaunchMount>,
    context: glib::MainContext,
    main_loop: glib::MainLoop,
    ready: mpsc::Sender<Result<u16, ServeError>>,
) {
    let server = rtsp::RTSPServer::new();
    server.set_address(&options.address);
    server.set_service(&options.port.to_string());
    let mounts = server
        .mount_points()
        .expect("a new RTSPServer always has mount points");
    if let Some((user, pass)) = &options.credentials {
        let auth = rtsp::RTSPAuth::new();
        let token = rtsp::RTSPToken::builder()
            .field(rtsp::RTSP_TOKEN_MEDIA_FACTORY_ROLE, "viewer")
            .build();
        auth.add_basic(&rtsp::RTSPAuth::make_basic(user, pass), &token);
        server.set_auth(Some(&auth));
    }
    for m in &options.mounts {
        let factory = media_factory(
            "( appsrc name=src is-live=true format=time do-timestamp=false \
               ! rtph264pay name=pay0 pt=96 config-interval=-1 )",
            options.credentials.is_some(),
        );
        let file = m.file.clone();
        factory.connect_media_configure(move |_, media| {
            let element = media.element();
            let Some(appsrc) = element
                .downcast_ref::<gst::Bin>()
                .and_then(|b| b.by_name_recurse_up("src"))
                .and_then(|e| e.downcast::<gst_app::AppSrc>().ok())
            else {
                tracing::error!("RTSP media has no appsrc");
                return;
            };
            match Player::start(&file, &appsrc) {
                Ok(player) => {
                    let player = Mutex::new(Some(player));
                    media.connect_unprepared(move |_| {
                        if let Some(p) = player.lock().ok().and_then(|mut p| p.take()) {
                            p.stop();
                        }
                    });
                }
                Err(e) => {
                    tracing::error!(file = %file.display(), "cannot play: {e}");
                    // Fail this client's request instead of leaving it waiting for data.
                    gst::element_error!(
                        appsrc,
                        gst::ResourceError::Read,
                        ["cannot play {}: {}", file.display(), e]
                    );
                }
            }
        });
        mounts.add_factory(&m.path, factory);
    }
    for m in &launched {
        let factory = media_factory(&m.launch, options.credentials.is_some());
        mounts.add_factory(&m.path, factory);
    }
    let source = match server.attach(Some(&context)) {
        Ok(id) => id,
        Err(e) => {
            let _ = ready.send(Err(ServeError::Listen {
                address: options.address.clone(),
                port: options.port,
                reason: e.to_string(),
            }));
            return;
        }
    };
    // Each client in its own thread, so one slow or broken media cannot hold up the others.
    if let Some(pool) = server.thread_pool() {
        pool.set_max_threads(32);
    }
    let port = u16::try_from(server.bound_port()).unwrap_or(options.port);
    let _ = ready.send(Ok(port));
    main_loop.run();

    // Outage for clients: close every connection and the listening socket.
    server.client_filter(Some(&mut |_, _| rtsp::RTSPFilterResult::Remove));
    if let Some(s) = context.find_source_by_id(&source) {
        s.destroy();
    }
    while context.iteration(false) {}
    drop(server);
}

/// Reads one file in real time and feeds a media's appsrc with H.264 access units.
#[derive(Debug)]
struct Player {
    pipeline: gst::Pipeline,
    running: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Player {
    fn start(file: &Path, appsrc: &gst_app::AppSrc) -> Result<Self, String> {
        appsrc.set_property_from_str("leaky-type", "downstream");
        appsrc.set_max_bytes(4_000_000);
        let pipeline = gst::Pipeline::new();
        let src = make("filesrc")?;
        src.set_property("location", file.to_string_lossy().as_ref());
        let parse = make("parsebin")?;
        let sink = gst_app::AppSink::builder()
            .sync(true)
            .max_buffers(8)
            .build();
        sink.set_property("wait-on-eos", false);
        pipeline
            .add_many([&src, &parse, sink.upcast_ref()])
            .map_err(|e| e.to_string())?;
        src.link(&parse).map_err(|e| e.to_string())?;

        let pipeline_weak = pipeline.downgrade();
        let sink_pad = sink.static_pad("sink").ok_or("appsink has no sink pad")?;
        stamp_missing_times(&sink_pad);
        parse.connect_pad_added(move |_, pad| {
            let Some(pipeline) = pipeline_weak.upgrade() else {
                return;
            };
            // parsebin may expose a pad before its caps event; ask for what it can produce.
            let caps = pad.current_caps().or_else(|| Some(pad.query_caps(None)));
            let name = caps
                .as_ref()
                .and_then(|c| c.structure(0).map(|s| s.name().to_string()))
                .unwrap_or_default();
            if !name.starts_with("video/") || sink_pad.is_linked() {
                // Audio and extra tracks go nowhere.
                if let Ok(fake) = make("fakesink") {
                    fake.set_property("sync", false);
                    fake.set_property("async", false);
                    let _ = pipeline.add(&fake);
                    let _ = fake.sync_state_with_parent();
                    if let Some(p) = fake.static_pad("sink") {
                        let _ = pad.link(&p);
                    }
                }
                return;
            }
            tracing::debug!(caps = %name, "file video track");
            if let Err(e) = link_video(&pipeline, pad, &name, &sink_pad) {
                tracing::error!("cannot prepare the stream: {e}");
            }
        });

        // Rewrite timestamps onto the media's clock, increasing across loops.
        let appsrc_weak = appsrc.downgrade();
        let running = Arc::new(AtomicBool::new(true));
        let mut base: Option<gst::ClockTime> = None;
        let mut offset = gst::ClockTime::ZERO;
        let mut last_end = gst::ClockTime::ZERO;
        let mut last_pts: Option<gst::ClockTime> = None;
        let mut caps_set = false;
        let running_cb = running.clone();
        sink.set_callbacks(
            gst_app::AppSinkCallbacks::builder()
                .new_sample(move |sink| {
                    let sample = sink.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                    let Some(appsrc) = appsrc_weak.upgrade() else {
                        running_cb.store(false, Ordering::SeqCst);
                        return Err(gst::FlowError::Flushing);
                    };
                    if !caps_set {
                        appsrc.set_caps(sample.caps_owned().as_ref());
                        caps_set = true;
                    }
                    let Some(buffer) = sample.buffer() else {
                        return Ok(gst::FlowSuccess::Ok);
                    };
                    // Stream time to running time: encoders such as x264enc start their
                    // timestamps far from zero.
                    let raw_pts = buffer.pts().unwrap_or(gst::ClockTime::ZERO);
                    let pts = sample
                        .segment()
                        .and_then(|s| s.downcast_ref::<gst::ClockTime>())
                        .and_then(|s| s.to_running_time(raw_pts))
                        .unwrap_or(raw_pts);
                    let dts_behind = buffer.dts().map(|d| raw_pts.saturating_sub(d));
                    if last_pts.is_some_and(|l| pts + gst::ClockTime::from_mseconds(500) < l) {
                        // Looped: continue after the last frame.
                        offset = last_end;
                    }
                    last_pts = Some(pts);
                    let base = *base.get_or_insert_with(|| {
                        appsrc
                            .current_running_time()
                            .unwrap_or(gst::ClockTime::ZERO)
                    });
                    let duration = buffer
                        .duration()
                        .unwrap_or(gst::ClockTime::from_mseconds(33));
                    let mut out = buffer.copy();
                    {
                        let out = out.make_mut();
                        out.set_pts(base + offset + pts);
                        out.set_dts(dts_behind.map(|b| (base + offset + pts).saturating_sub(b)));
                    }
                    last_end = last_end.max(offset + pts + duration);
                    match appsrc.push_buffer(out) {
                        Ok(_) => Ok(gst::FlowSuccess::Ok),
                        Err(e) => {
                            running_cb.store(false, Ordering::SeqCst);
                            Err(e)
                        }
                    }
                })
                .build(),
        );

        pipeline
            .set_state(gst::State::Playing)
            .map_err(|e| format!("cannot start playing: {e}"))?;
        let bus = pipeline.bus().ok_or("pipeline has no bus")?;
        let pipeline_loop = pipeline.clone();
        let running_loop = running.clone();
        let appsrc_loop = appsrc.downgrade();
        let thread = std::thread::Builder::new()
            .name("rtsp-player".into())
            .spawn(move || {
                while running_loop.load(Ordering::SeqCst) {
                    let Some(msg) = bus.timed_pop_filtered(
                        gst::ClockTime::from_mseconds(100),
                        &[gst::MessageType::Eos, gst::MessageType::Error],
                    ) else {
                        continue;
                    };
                    match msg.view() {
                        gst::MessageView::Eos(_)
                            if pipeline_loop
                                .seek_simple(
                                    gst::SeekFlags::FLUSH | gst::SeekFlags::KEY_UNIT,
                                    gst::ClockTime::ZERO,
                                )
                                .is_err() =>
                        {
                            tracing::warn!("cannot loop the file");
                            break;
                        }
                        gst::MessageView::Error(e) => {
                            tracing::warn!(error = %e.error(), "player stopped");
                            if let Some(appsrc) = appsrc_loop.upgrade() {
                                let _ = appsrc.end_of_stream();
                            }
                            break;
                        }
                        _ => {}
                    }
                }
                let _ = pipeline_loop.set_state(gst::State::Null);
            })
            .map_err(|e| e.to_string())?;
        Ok(Self {
            pipeline,
            running,
            thread: Some(thread),
        })
    }

    fn stop(mut self) {
        self.halt();
    }

    fn halt(&mut self) {
        self.running.store(false, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let _ = self.pipeline.set_state(gst::State::Null);
    }
}

impl Drop for Player {
    fn drop(&mut self) {
        self.halt();
    }
}

/// Gives every buffer reaching `pad` a presentation time, so the appsink plays it in real
/// time. Elementary H.264 files (`.h264`) carry decode times only (without B-frames those are
/// the presentation times), and lose even those after damaged data; such buffers continue
/// from the previous one.
fn stamp_missing_times(pad: &gst::Pad) {
    let next: Mutex<Option<gst::ClockTime>> = Mutex::new(None);
    let mask = gst::PadProbeType::BUFFER | gst::PadProbeType::EVENT_DOWNSTREAM;
    pad.add_probe(mask, move |_, info| {
        match &mut info.data {
            Some(gst::PadProbeData::Buffer(buffer)) => {
                let mut next = next.lock().unwrap_or_else(|p| p.into_inner());
                let pts = buffer.pts().or(buffer.dts()).or(*next);
                if buffer.pts().is_none() {
                    buffer.make_mut().set_pts(pts);
                }
                let duration = buffer
                    .duration()
                    .unwrap_or(gst::ClockTime::from_mseconds(40));
                *next = pts.map(|p| p + duration);
            }
            Some(gst::PadProbeData::Event(e)) if e.type_() == gst::EventType::FlushStop => {
                // Looped: the file starts again from its own times.
                *next.lock().unwrap_or_else(|p| p.into_inner()) = None;
            }
            _ => {}
        }
        gst::PadProbeReturn::Ok
    });
}

fn make(factory: &str) -> Result<gst::Element, String> {
    gst::ElementFactory::make(factory)
        .build()
        .map_err(|_| format!("GStreamer element '{factory}' is missing; run `make setup`"))
}

/// H.264 passes through a parser; anything else is decoded and encoded with x264 (one key
/// frame a second so clients start quickly). Everything downstream is linked before `pad`, so
/// no data arrives at an unlinked element.
fn link_video(
    pipeline: &gst::Pipeline,
    pad: &gst::Pad,
    caps_name: &str,
    sink_pad: &gst::Pad,
) -> Result<(), String> {
    let parse = make("h264parse")?;
    parse.set_property("config-interval", -1i32);
    let filter = make("capsfilter")?;
    filter.set_property(
        "caps",
        gst::Caps::builder("video/x-h264")
            .field("stream-format", "byte-stream")
            .field("alignment", "au")
            .build(),
    );
    pipeline
        .add_many([&parse, &filter])
        .map_err(|e| e.to_string())?;
    parse.link(&filter).map_err(|e| e.to_string())?;
    let filter_src = filter.static_pad("src").ok_or("capsfilter has no src")?;
    filter_src.link(sink_pad).map_err(|e| format!("{e:?}"))?;
    for e in [&parse, &filter] {
        e.sync_state_with_parent().map_err(|e| e.to_string())?;
    }
    if caps_name == "video/x-h264" {
        let parse_sink = parse.static_pad("sink").ok_or("h264parse has no sink")?;
        return pad
            .link(&parse_sink)
            .map(|_| ())
            .map_err(|e| format!("{e:?}"));
    }
    let decode = make("decodebin")?;
    let convert = make("videoconvert")?;
    let raw = make("capsfilter")?;
    raw.set_property(
        "caps",
        gst::Caps::builder("video/x-raw")
            .field("format", "I420")
            .build(),
    );
    let enc = make("x264enc")?;
    enc.set_property_from_str("tune", "zerolatency");
    enc.set_property_from_str("speed-preset", "ultrafast");
    enc.set_property("key-int-max", 25u32);
    enc.set_property("threads", 1u32);
    pipeline
        .add_many([&decode, &convert, &raw, &enc])
        .map_err(|e| e.to_string())?;
    gst::Element::link_many([&convert, &raw, &enc, &parse]).map_err(|e| e.to_string())?;
    let convert_sink = convert
        .static_pad("sink")
        .ok_or("videoconvert has no sink")?;
    decode.connect_pad_added(move |_, p| {
        if !convert_sink.is_linked() {
            let r = p.link(&convert_sink);
            tracing::debug!(result = ?r, "decoded track linked");
        }
    });
    for e in [&enc, &raw, &convert, &decode] {
        e.sync_state_with_parent().map_err(|e| e.to_string())?;
    }
    let decode_sink = decode.static_pad("sink").ok_or("decodebin has no sink")?;
    pad.link(&decode_sink)
        .map(|_| ())
        .map_err(|e| format!("{e:?}"))
}
