//! `pantau bench`: how many live cameras one node holds (`cameras`), and whether a loaded
//! node stays flat over time through a broker and database outage (`soak`).
//!
//! Both run the real node (ingest, the shared detector, tracking, rules, outbox, MQTT and
//! PostgreSQL) on 720p30 H.264 RTSP cameras served by `pantau serve-rtsp` in a child process
//! (the cameras' own cost is measured apart, as real cameras cost the node nothing), and
//! measure the bound the machine allows in the same run:
//!
//! ```text
//! N* = cores left to the node / (decode core-s per camera-s + analysed fps x inference core-s)
//! ```
//!
//! Decode and inference are timed in CPU seconds (not wall time) on the same clip and model,
//! each alone, so N* is what the work itself needs; N / N* is what the node makes of it.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::{SocketAddr, TcpListener as StdListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{bail, Context};
use pantau_analytics::detect::onnx::Detector;
use pantau_analytics::detect::ImageRef;
use pantau_config::Config;
use pantau_ingest::{CameraStatus, Ingest};
use pantau_node::{Node, NodeConfig};
use rumqttc::{AsyncClient, Event as MqttEvent, MqttOptions, Packet, QoS};
use serde::Serialize;
use tokio::io::AsyncWriteExt;
use tokio_util::sync::CancellationToken;

#[derive(Debug, clap::Subcommand)]
pub enum BenchCommand {
    /// Raise the number of live 720p30 cameras until one misses its analysis rate, frames back
    /// up or p99 capture-to-MQTT latency passes 150 ms; print the largest sustained count next
    /// to the bound measured in the same run.
    Cameras(CamerasArgs),
    /// Run cameras for a long time with a broker and database outage in the middle: memory,
    /// queues, latency and frame counters over time, and a plot of them.
    Soak(SoakArgs),
}

#[derive(Debug, Clone, clap::Args)]
pub struct Common {
    /// H.264 clip the cameras stream (default: a 1280x720 30 fps clip made once from the
    /// bundled traffic.mp4, kept in target/bench-clips/).
    #[arg(long)]
    clip: Option<PathBuf>,
    /// MQTT broker the node publishes to.
    #[arg(long, default_value = "127.0.0.1:1883")]
    mqtt: String,
    /// PostgreSQL the node stores events in (tables in schema `pantau_bench`).
    #[arg(
        long,
        default_value = "host=127.0.0.1 port=5432 user=postgres dbname=pantau connect_timeout=5"
    )]
    store: String,
    /// Analysed frames per second per camera.
    #[arg(long, default_value_t = 5.0)]
    analysis_fps: f64,
    /// Skip the detector on frames that did not change (`ingest.motion_gate`).
    #[arg(long)]
    motion_gate: bool,
}

#[derive(Debug, clap::Args)]
pub struct CamerasArgs {
    #[command(flatten)]
    common: Common,
    /// Print one JSON object instead of the table.
    #[arg(long)]
    json: bool,
    /// Stop raising the camera count after this long (the last step finishes).
    #[arg(long, default_value_t = 10.0)]
    max_minutes: f64,
    /// Seconds each camera count is measured for, after its warm-up.
    #[arg(long, default_value_t = 20)]
    window_s: u64,
    /// Camera count to start from (default: 60 % of the bound).
    #[arg(long)]
    start: Option<usize>,
}

#[derive(Debug, clap::Args)]
pub struct SoakArgs {
    #[command(flatten)]
    common: Common,
    /// How long to run.
    #[arg(long, default_value_t = 60.0)]
    minutes: f64,
    /// Cameras to run.
    #[arg(long, default_value_t = 8)]
    cameras: usize,
    /// Seconds between samples.
    #[arg(long, default_value_t = 60)]
    sample_s: u64,
    /// Where the plot (SVG) goes.
    #[arg(long, default_value = "target/bench/soak.svg")]
    plot: PathBuf,
    /// Print one JSON object instead of the table.
    #[arg(long)]
    json: bool,
}

pub fn run(cmd: BenchCommand) -> anyhow::Result<ExitCode> {
    super::init_logging("warn");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    match cmd {
        BenchCommand::Cameras(args) => rt.block_on(cameras(args)),
        BenchCommand::Soak(args) => rt.block_on(soak(args)),
    }
}

// ---------------------------------------------------------------------------------------------
// The machine and the process

/// Cores and CPU model, for the results table.
#[derive(Debug, Clone, Serialize)]
struct Machine {
    cores: usize,
    cpu: String,
}

fn machine() -> Machine {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into());
    Machine {
        cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
        cpu,
    }
}

/// CPU seconds (user + system) a process has used: this one, or `pid` (0 when unknown).
fn cpu_seconds(pid: Option<u32>) -> f64 {
    pantau_node::capacity::cpu_s_of(pid).unwrap_or(0.0)
}

/// Resident memory of this process in MiB.
fn rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

/// The repository (or install) folder: where `demo/videos` is, above the executable or here.
fn root() -> PathBuf {
    let here = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
    if here.join("demo/videos").is_dir() {
        return here;
    }
    std::env::current_exe()
        .ok()
        .and_then(|exe| {
            exe.ancestors()
                .find(|d| d.join("demo/videos").is_dir())
                .map(Path::to_path_buf)
        })
        .unwrap_or(here)
}

/// The cameras' clip: given, or 1280x720 30 fps H.264 made once from the bundled traffic clip.
fn bench_clip(given: Option<&Path>) -> anyhow::Result<PathBuf> {
    if let Some(c) = given {
        std::fs::File::open(c).with_context(|| format!("--clip {}", c.display()))?;
        return Ok(c.canonicalize()?);
    }
    let root = root();
    let out = root.join("target/bench-clips/traffic_1280x720.mp4");
    if out.exists() {
        return Ok(out);
    }
    let source = root.join("demo/videos/traffic.mp4");
    std::fs::File::open(&source).with_context(|| {
        format!(
            "cannot read {}: run from the repository or pass --clip",
            source.display()
        )
    })?;
    std::fs::create_dir_all(out.parent().unwrap_or(Path::new(".")))?;
    let partial = out.with_extension("part.mp4");
    eprintln!("making the 720p30 bench clip {} (once)", out.display());
    let line = format!(
        "filesrc location=\"{}\" ! decodebin ! videoconvert ! videoscale ! videorate \
         ! video/x-raw,width=1280,height=720,framerate=30/1 \
         ! x264enc speed-preset=veryfast key-int-max=30 ! h264parse ! mp4mux \
         ! filesink location=\"{}\"",
        source.display(),
        partial.display()
    );
    run_to_eos(&line).context("cannot make the bench clip")?;
    std::fs::rename(&partial, &out)?;
    Ok(out)
}

/// Runs a launch line to its end; returns the buffers its `fakesink name=sink` (if any) saw.
fn run_to_eos(line: &str) -> anyhow::Result<u64> {
    use gstreamer as gst;
    use gstreamer::prelude::*;
    gst::init()?;
    let pipeline = gst::parse::launch(line)?
        .downcast::<gst::Pipeline>()
        .map_err(|_| anyhow::anyhow!("not a pipeline"))?;
    let count = Arc::new(std::sync::atomic::AtomicU64::new(0));
    if let Some(sink) = pipeline.by_name("sink") {
        if let Some(pad) = sink.static_pad("sink") {
            let c = count.clone();
            pad.add_probe(gst::PadProbeType::BUFFER, move |_, _| {
                c.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                gst::PadProbeReturn::Ok
            });
        }
    }
    pipeline.set_state(gst::State::Playing)?;
    let bus = pipeline.bus().context("no bus")?;
    let result = loop {
        let Some(msg) = bus.timed_pop(gst::ClockTime::from_seconds(600)) else {
            break Err(anyhow::anyhow!("no end after 10 minutes"));
        };
        match msg.view() {
            gst::MessageView::Eos(_) => break Ok(()),
            gst::MessageView::Error(e) => break Err(anyhow::anyhow!("{}", e.error())),
            _ => {}
        }
    };
    pipeline.set_state(gst::State::Null)?;
    result.map(|()| count.load(std::sync::atomic::Ordering::Relaxed))
}

// ---------------------------------------------------------------------------------------------
// The cameras: `pantau serve-rtsp` in a child process

struct Simulator {
    child: Child,
    port: u16,
}

impl Simulator {
    /// Serves `clip` on `count` mounts `/cam0`.. (a mount costs nothing until a client plays).
    fn start(clip: &Path, count: usize) -> anyhow::Result<Self> {
        let port = free_port()?;
        let mut cmd = Command::new(std::env::current_exe()?);
        cmd.args(["serve-rtsp", "--port", &port.to_string()]);
        for i in 0..count {
            cmd.arg(format!("cam{i}={}", clip.display()));
        }
        let child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("cannot start `pantau serve-rtsp` for the cameras")?;
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if started.elapsed() > Duration::from_secs(20) {
                bail!("the camera simulator did not listen on port {port} within 20 s");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(Self { child, port })
    }

    fn cpu_seconds(&self) -> f64 {
        cpu_seconds(Some(self.child.id()))
    }
}

impl Drop for Simulator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> anyhow::Result<u16> {
    Ok(StdListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

// ---------------------------------------------------------------------------------------------
// The bound

#[derive(Debug, Clone, Serialize)]
struct Bound {
    /// Core-seconds to decode one second of one camera (all its frames).
    decode_core_s_per_camera_s: f64,
    /// Core-seconds of one detection (preprocessing, model, decoding the output).
    inference_core_s: f64,
    /// Frames per second of the clip.
    clip_fps: f64,
}

impl Bound {
    fn per_camera(&self, analysis_fps: f64) -> f64 {
        self.decode_core_s_per_camera_s + analysis_fps * self.inference_core_s
    }
}

/// The sample whose cost per camera is the median (the lower of the middle two).
fn median_bound(samples: &[Bound], analysis_fps: f64) -> Bound {
    let mut sorted = samples.to_vec();
    sorted.sort_by(|a, b| {
        a.per_camera(analysis_fps)
            .total_cmp(&b.per_camera(analysis_fps))
    });
    sorted[(sorted.len().max(1) - 1) / 2].clone()
}

fn clip_fps(clip: &Path) -> f64 {
    // The bench clip is 30 fps; for another clip ask GStreamer.
    let out = Command::new("gst-discoverer-1.0").arg(clip).output();
    out.ok()
        .and_then(|o| {
            let text = String::from_utf8_lossy(&o.stdout).to_string();
            text.lines()
                .find(|l| l.trim_start().starts_with("Frame rate:"))
                .and_then(|l| l.split_once(':'))
                .and_then(|(_, v)| {
                    let (n, d) = v.trim().split_once('/')?;
                    Some(n.trim().parse::<f64>().ok()? / d.trim().parse::<f64>().ok()?)
                })
        })
        .filter(|f| f.is_finite() && *f > 0.0)
        .unwrap_or(30.0)
}

/// Decode and inference cost, each alone, in CPU time.
async fn measure_bound(clip: &Path, config: &NodeConfig) -> anyhow::Result<Bound> {
    let fps = clip_fps(clip);
    // Decode as the node does: one decoder thread per stream.
    let line = format!(
        "filesrc location=\"{}\" ! qtdemux ! h264parse ! avdec_h264 max-threads=1 \
         ! fakesink name=sink sync=false",
        clip.display()
    );
    let cpu0 = cpu_seconds(None);
    let frames = tokio::task::spawn_blocking(move || run_to_eos(&line)).await??;
    let decode_s = (cpu_seconds(None) - cpu0) / frames.max(1) as f64;

    let detector_config = config.valid.config.detector.clone();
    let base = config.base.clone();
    let floor = config.valid.config.tracker.low_score;
    let mut detector =
        tokio::task::spawn_blocking(move || Detector::load(&detector_config, &base, floor))
            .await??;
    // One analysis frame of the clip, as ingest makes it for the node.
    let ingest = Ingest::new()?;
    let (w, h) = detector.input_size();
    ingest.set_analysis_fit(w, h);
    let settings = Config::parse(&format!(
        "[[cameras]]\nid = \"bound\"\nurl = \"file://{}\"\nloop = false\nrealtime = false\n\
         analysis_fps = 120\n",
        clip.display()
    ))
    .map_err(|e| anyhow::anyhow!("{e}"))?
    .validate(Path::new("/"), &|_| None)
    .map_err(|e| anyhow::anyhow!("{e}"))?
    .cameras
    .remove(0);
    let mut rx = ingest.add(settings)?;
    // A frame from a few seconds in, with traffic on it.
    let mut frame = None;
    for _ in 0..90 {
        frame = rx.recv().await;
    }
    let frame = frame.context("the clip gave no frame")?;
    let (data, fw, fh, stride) = (
        frame.data().to_vec(),
        frame.width,
        frame.height,
        frame.stride,
    );
    drop(frame);
    drop(rx);
    ingest.shutdown().await;
    let inference_s = tokio::task::spawn_blocking(move || {
        let img = ImageRef {
            data: &data,
            width: fw,
            height: fh,
            stride,
        };
        for _ in 0..5 {
            detector.detect(img)?;
        }
        let runs = 40;
        let cpu0 = cpu_seconds(None);
        for _ in 0..runs {
            detector.detect(img)?;
        }
        anyhow::Ok((cpu_seconds(None) - cpu0) / f64::from(runs))
    })
    .await??;
    Ok(Bound {
        decode_core_s_per_camera_s: decode_s * fps,
        inference_core_s: inference_s,
        clip_fps: fps,
    })
}

// ---------------------------------------------------------------------------------------------
// The node under test

/// The node's configuration for `n` cameras of the simulator.
fn node_config(
    common: &Common,
    n: usize,
    port: u16,
    dir: &Path,
    prefix: &str,
    mqtt: SocketAddr,
    store: &str,
) -> anyhow::Result<NodeConfig> {
    let mut text = format!(
        "[node]\nname = \"bench\"\nsite = \"bench\"\n\
         [ingest]\nanalysis_fps = {fps}\nmotion_gate = {gate}\n\
         [mqtt]\nhost = \"{mh}\"\nport = {mp}\nprefix = \"{prefix}\"\n\
         [store]\nurl = \"{store}\"\nschema = \"pantau_bench\"\n\
         [outbox]\npath = \"{outbox}\"\n\
         [snapshots]\ndir = \"{snaps}\"\n\
         [api]\nenabled = false\n\
         [detector]\nclasses = [\"person\", \"bicycle\", \"car\", \"motorcycle\", \"bus\", \"truck\"]\n",
        fps = common.analysis_fps,
        gate = common.motion_gate,
        mh = mqtt.ip(),
        mp = mqtt.port(),
        outbox = dir.join("outbox").display(),
        snaps = dir.join("snapshots").display(),
    );
    for i in 0..n {
        let _ = write!(
            text,
            "[[cameras]]\nid = \"cam{i}\"\nurl = \"rtsp://127.0.0.1:{port}/cam{i}\"\n\
             [[cameras.lines]]\nname = \"midblock\"\npoints = [[640, 0], [640, 720]]\n"
        );
    }
    let path = dir.join("bench.toml");
    std::fs::write(&path, text)?;
    let valid = Config::load(&path).map_err(|e| anyhow::anyhow!("{e}"))?;
    // Models and the like resolve from the repository, as for `pantau run` there.
    Ok(NodeConfig {
        valid,
        base: root(),
    })
}

fn socket(text: &str, what: &str) -> anyhow::Result<SocketAddr> {
    use std::net::ToSocketAddrs;
    text.to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .with_context(|| format!("{what} {text}: write HOST:PORT"))
}

/// Checks the broker and database answer before anything is measured.
async fn check_services(mqtt: SocketAddr, store: &str) -> anyhow::Result<()> {
    if tokio::time::timeout(Duration::from_secs(3), tokio::net::TcpStream::connect(mqtt))
        .await
        .map_or(true, |r| r.is_err())
    {
        bail!("no MQTT broker at {mqtt}: run `make setup` (it installs and starts Mosquitto) or pass --mqtt HOST:PORT");
    }
    let (client, conn) = tokio::time::timeout(
        Duration::from_secs(5),
        tokio_postgres::connect(store, tokio_postgres::NoTls),
    )
    .await
    .map_err(|_| anyhow::anyhow!("PostgreSQL did not answer within 5 s"))
    .and_then(|r| r.map_err(anyhow::Error::from))
    .with_context(|| format!("no PostgreSQL at \"{store}\": run `make setup` (it installs and starts PostgreSQL) or pass --store"))?;
    drop(client);
    drop(conn);
    Ok(())
}

/// Capture-to-MQTT latencies of the events the broker delivers, with when they arrived.
#[derive(Debug, Clone, Default)]
struct Latencies(Arc<Mutex<Vec<(Instant, f64)>>>);

impl Latencies {
    /// Subscribes to the events under `prefix`; ends with `stop`.
    ///
    /// The subscriber stands for an operator's client, another process with threads of its
    /// own: it runs on a thread and runtime of its own, so the time an event waits for it is
    /// not time waiting for the node's two runtime workers, which the node keeps busy.
    async fn subscribe(broker: SocketAddr, prefix: &str, stop: CancellationToken) -> Self {
        let me = Self::default();
        let (listener, prefix) = (me.clone(), prefix.to_string());
        let (ready, subscribed) = tokio::sync::oneshot::channel();
        // The runtime is built on its thread: one dropped here, in async code, would panic.
        let thread = std::thread::Builder::new()
            .name("bench-subscriber".into())
            .spawn(move || {
                match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt.block_on(listener.listen(broker, &prefix, stop, ready)),
                    Err(e) => tracing::warn!("the bench's MQTT subscriber did not start: {e}"),
                }
            });
        match thread {
            Err(e) => tracing::warn!("the bench's MQTT subscriber did not start: {e}"),
            // Until the broker has the subscription, events would go unseen (at most 5 s).
            Ok(_) => {
                let _ = tokio::time::timeout(Duration::from_secs(5), subscribed).await;
            }
        }
        me
    }

    /// Records the latency of every event until `stop`; says `ready` once subscribed.
    async fn listen(
        self,
        broker: SocketAddr,
        prefix: &str,
        stop: CancellationToken,
        ready: tokio::sync::oneshot::Sender<()>,
    ) {
        let mut options = MqttOptions::new(
            format!("{prefix}-latency"),
            broker.ip().to_string(),
            broker.port(),
        );
        options.set_max_packet_size(1 << 20, 1 << 20);
        let (client, mut events) = AsyncClient::new(options, 256);
        let _ = client
            .subscribe(format!("{prefix}/+/+/events/#"), QoS::AtLeastOnce)
            .await;
        let mut ready = Some(ready);
        loop {
            let ev = tokio::select! {
                _ = stop.cancelled() => return,
                ev = events.poll() => ev,
            };
            match ev {
                Ok(MqttEvent::Incoming(Packet::Publish(p))) => {
                    let now = SystemTime::now();
                    if let Ok(e) = serde_json::from_slice::<pantau_events::Event>(&p.payload) {
                        if let Ok(d) = now.duration_since(e.captured_at) {
                            lock(&self.0).push((Instant::now(), d.as_secs_f64() * 1000.0));
                        }
                    }
                }
                Ok(MqttEvent::Incoming(Packet::SubAck(_))) => {
                    if let Some(ready) = ready.take() {
                        let _ = ready.send(());
                    }
                }
                Ok(_) => {}
                Err(_) => tokio::time::sleep(Duration::from_millis(500)).await,
            }
        }
    }

    /// Latencies of events that arrived since `from`.
    fn since(&self, from: Instant) -> Vec<f64> {
        lock(&self.0)
            .iter()
            .filter(|(at, _)| *at >= from)
            .map(|(_, ms)| *ms)
            .collect()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn percentile(values: &[f64], p: f64) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    v.get(((v.len() - 1) as f64 * p).round() as usize).copied()
}

/// Per camera counters at one moment.
fn counters(statuses: &[CameraStatus]) -> BTreeMap<String, (u64, u64, u64, u64)> {
    statuses
        .iter()
        .map(|s| {
            (
                s.id.clone(),
                (
                    s.frames_decoded,
                    s.frames_analysed,
                    s.frames_dropped,
                    s.frames_skipped,
                ),
            )
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// `pantau bench cameras`

/// One camera count, measured.
#[derive(Debug, Clone, Serialize)]
struct Step {
    cameras: usize,
    sustained: bool,
    /// Why not, when not.
    reason: Option<String>,
    /// Cores the node used, and per camera.
    cpu_cores: f64,
    cpu_per_camera: f64,
    /// Cores the camera simulator used.
    simulator_cores: f64,
    analysed_fps_min: f64,
    analysed_fps_mean: f64,
    dropped_frames: u64,
    events: usize,
    p50_latency_ms: Option<f64>,
    p99_latency_ms: Option<f64>,
    rss_mb: f64,
    /// Lowest analysis-rate factor fair degradation set (1: never degraded).
    min_rate_factor: f64,
    /// Detector runs per analysed frame (below 1 with the motion gate).
    detector_share: f64,
    /// Mean time a frame waited for a free detector worker, ms.
    detector_wait_ms: f64,
    /// Where the latency goes, over every analysed frame of the window.
    stages: Option<StageLatency>,
}

/// p50 and p99 (ms) of the time from a frame's capture until analysis took it (network,
/// decode, scale, convert), the detector answered (waiting for it included) and its messages
/// were queued for the outbox (tracking and rules); the rest of capture-to-MQTT is the outbox,
/// the broker and the subscriber.
#[derive(Debug, Clone, Serialize)]
struct StageLatency {
    received_ms: [f64; 2],
    detected_ms: [f64; 2],
    analysed_ms: [f64; 2],
}

impl StageLatency {
    fn of(samples: &[pantau_node::StageSample]) -> Option<Self> {
        let pair = |f: fn(&pantau_node::StageSample) -> f64| -> Option<[f64; 2]> {
            let v: Vec<f64> = samples.iter().map(f).collect();
            Some([
                round(percentile(&v, 0.5)?, 1),
                round(percentile(&v, 0.99)?, 1),
            ])
        };
        Some(Self {
            received_ms: pair(|s| s.received_ms)?,
            detected_ms: pair(|s| s.detected_ms)?,
            analysed_ms: pair(|s| s.analysed_ms)?,
        })
    }
}

impl std::fmt::Display for StageLatency {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let [a, b] = self.received_ms;
        let [c, d] = self.detected_ms;
        let [e, g] = self.analysed_ms;
        write!(
            f,
            "after capture (p50/p99 ms): received {a:.0}/{b:.0}, detected {c:.0}/{d:.0}, analysed {e:.0}/{g:.0}"
        )
    }
}

const MAX_P99_MS: f64 = 150.0;

struct Env {
    clip: PathBuf,
    mqtt: SocketAddr,
    store: String,
    prefix: String,
}

async fn measure_step(
    common: &Common,
    env: &Env,
    n: usize,
    warmup: Duration,
    window: Duration,
) -> anyhow::Result<Step> {
    let sim = Simulator::start(&env.clip, n)?;
    let dir = tempfile::tempdir()?;
    let config = node_config(
        common,
        n,
        sim.port,
        dir.path(),
        &env.prefix,
        env.mqtt,
        &env.store,
    )?;
    let stop = CancellationToken::new();
    let latencies = Latencies::subscribe(env.mqtt, &env.prefix, stop.clone()).await;
    let node = Node::start(config, None)
        .await
        .map_err(|e| anyhow::anyhow!("the node did not start: {e}"))?;
    // Warm-up: every camera streaming, then `warmup` more.
    let started = Instant::now();
    loop {
        let s = node.ingest().statuses();
        if s.len() == n && s.iter().all(|s| s.frames_analysed > 0) {
            break;
        }
        if started.elapsed() > Duration::from_secs(60) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    tokio::time::sleep(warmup).await;
    // Fair degradation may have lowered the rates while the cameras connected; give it the
    // time it needs to settle (or not) before measuring.
    let settling = Instant::now();
    while node.ingest().rate().factor() < 1.0 && settling.elapsed() < Duration::from_secs(20) {
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let before = counters(&node.ingest().statuses());
    let load0 = node.inference().load().sample();
    let (cpu0, sim0, t0) = (cpu_seconds(None), sim.cpu_seconds(), Instant::now());
    let mut min_factor: f64 = node.ingest().rate().factor();
    while t0.elapsed() < window {
        tokio::time::sleep(Duration::from_millis(500)).await;
        min_factor = min_factor.min(node.ingest().rate().factor());
    }
    let wall = t0.elapsed().as_secs_f64();
    let cpu = (cpu_seconds(None) - cpu0) / wall;
    let sim_cpu = (sim.cpu_seconds() - sim0) / wall;
    let after_statuses = node.ingest().statuses();
    let after = counters(&after_statuses);
    let load1 = node.inference().load().sample();
    let rss = rss_mb();
    let lat = latencies.since(t0);
    let stages = StageLatency::of(&node.stage_times().since(t0));
    node.stop().await;
    stop.cancel();
    drop(sim);

    let mut fps = Vec::new();
    let mut dropped = 0;
    let mut analysed = 0;
    for (id, a) in &after {
        let b = before.get(id).copied().unwrap_or_default();
        fps.push(a.1.saturating_sub(b.1) as f64 / wall);
        analysed += a.1.saturating_sub(b.1);
        dropped += a.2.saturating_sub(b.2);
    }
    while fps.len() < n {
        fps.push(0.0);
    }
    let fps_min = fps.iter().copied().fold(f64::INFINITY, f64::min);
    let fps_mean = fps.iter().sum::<f64>() / n.max(1) as f64;
    let p99 = percentile(&lat, 0.99);
    let want = common.analysis_fps * 0.95;
    let reason = if fps_min < want {
        Some(format!(
            "a camera got {fps_min:.2} analysed fps (wants {:.1})",
            common.analysis_fps
        ))
    } else if dropped as f64 > 0.01 * analysed.max(1) as f64 {
        Some(format!("{dropped} frames dropped: analysis fell behind"))
    } else if min_factor < 0.999 {
        Some(format!(
            "fair degradation lowered every rate to {:.0} %",
            min_factor * 100.0
        ))
    } else if p99.is_some_and(|p| p > MAX_P99_MS) {
        Some(format!(
            "p99 capture-to-MQTT latency {:.0} ms > {MAX_P99_MS} ms",
            p99.unwrap_or_default()
        ))
    } else {
        None
    };
    let runs = load1.runs.saturating_sub(load0.runs);
    Ok(Step {
        cameras: n,
        sustained: reason.is_none(),
        reason,
        cpu_cores: round(cpu, 3),
        cpu_per_camera: round(cpu / n.max(1) as f64, 3),
        simulator_cores: round(sim_cpu, 3),
        analysed_fps_min: round(fps_min, 2),
        analysed_fps_mean: round(fps_mean, 2),
        dropped_frames: dropped,
        events: lat.len(),
        p50_latency_ms: percentile(&lat, 0.5).map(|v| round(v, 1)),
        p99_latency_ms: p99.map(|v| round(v, 1)),
        rss_mb: round(rss, 1),
        min_rate_factor: round(min_factor, 3),
        detector_share: round(runs as f64 / analysed.max(1) as f64, 3),
        detector_wait_ms: round(
            load1.waited_ns.saturating_sub(load0.waited_ns) as f64 / 1e6 / runs.max(1) as f64,
            1,
        ),
        stages,
    })
}

fn round(v: f64, places: i32) -> f64 {
    let f = 10f64.powi(places);
    (v * f).round() / f
}

/// One clip replayed at the demo camera's rate with and without the motion gate.
#[derive(Debug, Clone, Serialize)]
struct GateEffect {
    clip: String,
    frames: u64,
    detector_runs_off: u64,
    detector_runs_on: u64,
    cpu_s_off: f64,
    cpu_s_on: f64,
    /// Crossings (all lines, both directions) without and with the gate.
    crossings_off: u64,
    crossings_on: u64,
}

/// The motion gate's effect on CPU and counts: each bundled clip replayed as its demo camera
/// (its lines, 5 fps) without and with the gate, through the same analysis as a live camera.
async fn motion_gate_effect() -> anyhow::Result<Vec<GateEffect>> {
    let root = root();
    let mut out = Vec::new();
    for (camera, clip) in [
        ("traffic", "traffic.mp4"),
        ("campus", "vtest.avi"),
        ("stadtmitte", "stadtmitte.mp4"),
    ] {
        let video = root.join("demo/videos").join(clip);
        let mut runs = Vec::new();
        for gate in [false, true] {
            let args = super::replay::SceneArgs {
                config: Some(root.join("config/demo.toml")),
                camera: Some(camera.into()),
                lines: Vec::new(),
                zones: Vec::new(),
                classes: Vec::new(),
                analysis_fps: None,
                width: None,
                motion_gate: gate,
                threads: None,
            };
            let plan = args.plan(&video, false)?;
            let measured = tokio::task::spawn_blocking(move || {
                std::thread::spawn(move || {
                    let cpu0 = cpu_seconds(None);
                    let (report, _) = super::replay::execute(&plan, false, |_, _, _| Ok(()))?;
                    anyhow::Ok((report, cpu_seconds(None) - cpu0))
                })
                .join()
                .map_err(|_| anyhow::anyhow!("the replay panicked"))?
            })
            .await??;
            runs.push(measured);
        }
        let crossings = |r: &super::replay::Report| -> u64 {
            r.lines
                .values()
                .flat_map(|d| d.values())
                .flat_map(|c| c.values())
                .sum()
        };
        out.push(GateEffect {
            clip: clip.into(),
            frames: runs[0].0.frames,
            detector_runs_off: runs[0].0.detector_runs,
            detector_runs_on: runs[1].0.detector_runs,
            cpu_s_off: round(runs[0].1, 2),
            cpu_s_on: round(runs[1].1, 2),
            crossings_off: crossings(&runs[0].0),
            crossings_on: crossings(&runs[1].0),
        });
    }
    Ok(out)
}

#[derive(Debug, Serialize)]
struct CamerasReport {
    machine: Machine,
    clip: String,
    analysis_fps: f64,
    motion_gate: bool,
    /// The median of `bound_samples` by cost per camera.
    bound: Bound,
    /// The bound measured before every step and after the last: a VM's speed drifts over
    /// the minutes of a run (steal time, other tenants), and one sample taken at a slow or
    /// fast moment would move N* by a third.
    bound_samples: Vec<Bound>,
    /// Cores left to the node: the machine's less what the camera simulator took at the
    /// sustained count.
    cores_for_node: f64,
    sustained_cameras: usize,
    bound_cameras: f64,
    ratio: f64,
    p99_latency_ms: Option<f64>,
    cpu_per_camera: Option<f64>,
    rss_mb: Option<f64>,
    steps: Vec<Step>,
    /// The motion gate on the bundled clips (replayed as their demo cameras).
    motion_gate_effect: Vec<GateEffect>,
    seconds: f64,
}

async fn cameras(args: CamerasArgs) -> anyhow::Result<ExitCode> {
    let begun = Instant::now();
    let deadline = begun + Duration::from_secs_f64(args.max_minutes.max(0.5) * 60.0);
    let common = &args.common;
    let mqtt = socket(&common.mqtt, "--mqtt")?;
    check_services(mqtt, &common.store).await?;
    let clip = bench_clip(common.clip.as_deref())?;
    let env = Env {
        clip: clip.clone(),
        mqtt,
        store: common.store.clone(),
        prefix: format!("pantau-bench-{}", std::process::id()),
    };
    let m = machine();
    let scratch = tempfile::tempdir()?;
    let probe_config = node_config(common, 1, 9, scratch.path(), &env.prefix, mqtt, &env.store)?;
    if !args.json {
        eprintln!(
            "measuring the bound: decode and inference alone ({} cores, {})",
            m.cores, m.cpu
        );
    }
    let mut bound_samples = vec![measure_bound(&clip, &probe_config).await?];
    let bound = &bound_samples[0];
    let first_bound = m.cores as f64 / bound.per_camera(common.analysis_fps);
    let mut n = args
        .start
        .unwrap_or(((first_bound * 0.6).floor() as usize).max(1))
        .max(1);
    if !args.json {
        eprintln!(
            "decode {:.1} core-ms per frame ({:.3} cores per camera at {:.0} fps), inference {:.1} core-ms: N* about {first_bound:.1}; starting at {n} cameras",
            bound.decode_core_s_per_camera_s / bound.clip_fps * 1000.0,
            bound.decode_core_s_per_camera_s,
            bound.clip_fps,
            bound.inference_core_s * 1000.0
        );
    }
    let warmup = Duration::from_secs(8);
    let window = Duration::from_secs(args.window_s.max(5));
    let mut steps: Vec<Step> = Vec::new();
    let mut best: Option<Step> = None;
    let mut failed_at: Option<usize> = None;
    loop {
        if !steps.is_empty() {
            bound_samples.push(measure_bound(&clip, &probe_config).await?);
        }
        let step = measure_step(common, &env, n, warmup, window).await?;
        if !args.json {
            eprintln!(
                "{:>3} cameras: {}  cpu {:.2} cores ({:.3}/camera, simulator {:.2}), analysed fps min {:.2}, dropped {}, p99 {} ms over {} events, detector wait {:.1} ms, RSS {:.0} MiB",
                step.cameras,
                step.reason.as_deref().unwrap_or("sustained"),
                step.cpu_cores,
                step.cpu_per_camera,
                step.simulator_cores,
                step.analysed_fps_min,
                step.dropped_frames,
                step.p99_latency_ms.map_or("-".into(), |p| format!("{p:.0}")),
                step.events,
                step.detector_wait_ms,
                step.rss_mb
            );
            if let Some(stages) = &step.stages {
                eprintln!("      {stages}");
            }
        }
        let ok = step.sustained;
        if ok && best.as_ref().is_none_or(|b| b.cameras < step.cameras) {
            best = Some(step.clone());
        }
        if !ok {
            failed_at = Some(failed_at.map_or(n, |f| f.min(n)));
        }
        steps.push(step);
        let next = match (ok, &best, failed_at) {
            (true, _, Some(f)) if n + 1 >= f => None,
            (true, _, _) => Some(n + 1),
            (false, Some(b), _) if b.cameras + 1 >= n => None,
            (false, _, _) if n > 1 => Some(n - 1),
            (false, _, _) => None,
        };
        match next {
            Some(next) if Instant::now() + window * 2 < deadline => n = next,
            _ => break,
        }
    }
    bound_samples.push(measure_bound(&clip, &probe_config).await?);
    let bound = median_bound(&bound_samples, common.analysis_fps);
    let per_camera = bound.per_camera(common.analysis_fps);
    if !args.json {
        eprintln!("motion gate: replaying the bundled clips as their demo cameras, off and on");
    }
    let motion_gate_effect = motion_gate_effect().await?;
    let sustained = best.as_ref().map_or(0, |b| b.cameras);
    let sim_cores = best.as_ref().map_or(0.0, |b| b.simulator_cores);
    let cores_for_node = (m.cores as f64 - sim_cores).max(0.1);
    let bound_cameras = cores_for_node / per_camera;
    let report = CamerasReport {
        machine: m,
        clip: clip.display().to_string(),
        analysis_fps: common.analysis_fps,
        motion_gate: common.motion_gate,
        bound,
        bound_samples,
        cores_for_node: round(cores_for_node, 2),
        sustained_cameras: sustained,
        bound_cameras: round(bound_cameras, 2),
        ratio: round(sustained as f64 / bound_cameras, 3),
        p99_latency_ms: best.as_ref().and_then(|b| b.p99_latency_ms),
        cpu_per_camera: best.as_ref().map(|b| b.cpu_per_camera),
        rss_mb: best.as_ref().map(|b| b.rss_mb),
        steps,
        motion_gate_effect,
        seconds: round(begun.elapsed().as_secs_f64(), 1),
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_cameras(&report);
    }
    Ok(ExitCode::SUCCESS)
}

fn print_cameras(r: &CamerasReport) {
    println!(
        "machine: {} cores, {}\nclip: {} ({:.0} fps), analysed at {} fps per camera{}",
        r.machine.cores,
        r.machine.cpu,
        r.clip,
        r.bound.clip_fps,
        r.analysis_fps,
        if r.motion_gate {
            ", motion gate on"
        } else {
            ""
        }
    );
    println!(
        "{:>7} {:>9} {:>8} {:>7} {:>8} {:>8} {:>7} {:>7} {:>8} {:>7}  result",
        "cameras",
        "cpu",
        "cpu/cam",
        "sim",
        "fps min",
        "dropped",
        "p50 ms",
        "p99 ms",
        "RSS MiB",
        "det"
    );
    for s in &r.steps {
        let ms = |v: Option<f64>| v.map_or("-".into(), |v| format!("{v:.0}"));
        println!(
            "{:>7} {:>9.2} {:>8.3} {:>7.2} {:>8.2} {:>8} {:>7} {:>7} {:>8.0} {:>7.2}  {}",
            s.cameras,
            s.cpu_cores,
            s.cpu_per_camera,
            s.simulator_cores,
            s.analysed_fps_min,
            s.dropped_frames,
            ms(s.p50_latency_ms),
            ms(s.p99_latency_ms),
            s.rss_mb,
            s.detector_share,
            s.reason.as_deref().unwrap_or("sustained")
        );
    }
    let costs: Vec<f64> = r
        .bound_samples
        .iter()
        .map(|b| b.per_camera(r.analysis_fps))
        .collect();
    println!(
        "bound: decode {:.3} core-s per camera-s + {} x inference {:.1} core-ms = {:.3} cores per camera (the median of {} measurements between the steps, {:.3} to {:.3}); {:.2} cores left to the node",
        r.bound.decode_core_s_per_camera_s,
        r.analysis_fps,
        r.bound.inference_core_s * 1000.0,
        r.bound.per_camera(r.analysis_fps),
        costs.len(),
        costs.iter().copied().fold(f64::INFINITY, f64::min),
        costs.iter().copied().fold(0.0, f64::max),
        r.cores_for_node
    );
    println!("motion gate (each clip replayed as its demo camera, 5 fps):");
    println!(
        "  {:<16} {:>7} {:>12} {:>12} {:>10} {:>10} {:>10}",
        "clip", "frames", "runs off/on", "cpu s off", "cpu s on", "cross off", "cross on"
    );
    for g in &r.motion_gate_effect {
        println!(
            "  {:<16} {:>7} {:>5} / {:<5} {:>12.2} {:>10.2} {:>10} {:>10}",
            g.clip,
            g.frames,
            g.detector_runs_off,
            g.detector_runs_on,
            g.cpu_s_off,
            g.cpu_s_on,
            g.crossings_off,
            g.crossings_on
        );
    }
    println!(
        "sustained N = {}   bound N* = {:.1}   N / N* = {:.2}   (goal >= 0.8)   p99 {} ms",
        r.sustained_cameras,
        r.bound_cameras,
        r.ratio,
        r.p99_latency_ms.map_or("-".into(), |p| format!("{p:.0}"))
    );
}

// ---------------------------------------------------------------------------------------------
// `pantau bench soak`

/// A TCP relay that can be cut: every connection through it is closed and new ones are
/// refused until it is restored. Stands for the network between the node and a service.
#[derive(Debug, Clone)]
struct Relay {
    addr: SocketAddr,
    cut: Arc<tokio::sync::watch::Sender<bool>>,
}

impl Relay {
    async fn start(target: SocketAddr) -> anyhow::Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (cut, _) = tokio::sync::watch::channel(false);
        let cut = Arc::new(cut);
        let watch = cut.clone();
        tokio::spawn(async move {
            loop {
                let Ok((inbound, _)) = listener.accept().await else {
                    continue;
                };
                if *watch.borrow() {
                    drop(inbound);
                    continue;
                }
                let mut cut_rx = watch.subscribe();
                tokio::spawn(async move {
                    let Ok(outbound) = tokio::net::TcpStream::connect(target).await else {
                        return;
                    };
                    let (mut ri, mut wi) = inbound.into_split();
                    let (mut ro, mut wo) = outbound.into_split();
                    let up = async {
                        let _ = tokio::io::copy(&mut ri, &mut wo).await;
                        let _ = wo.shutdown().await;
                    };
                    let down = async {
                        let _ = tokio::io::copy(&mut ro, &mut wi).await;
                        let _ = wi.shutdown().await;
                    };
                    tokio::select! {
                        _ = async { tokio::join!(up, down) } => {}
                        _ = cut_rx.wait_for(|c| *c) => {}
                    }
                });
            }
        });
        Ok(Self { addr, cut })
    }

    fn set_cut(&self, cut: bool) {
        self.cut.send_replace(cut);
    }
}

#[derive(Debug, Clone, Serialize)]
struct Sample {
    minute: f64,
    rss_mb: f64,
    p50_latency_ms: Option<f64>,
    p99_latency_ms: Option<f64>,
    events: usize,
    cpu_cores: f64,
    analysed_fps_min: f64,
    outbox_backlog: u64,
    /// Requests waiting for or in the detector at the sample (at most one per camera).
    detector_pending: u64,
    outage: bool,
}

#[derive(Debug, Serialize)]
struct SoakReport {
    machine: Machine,
    cameras: usize,
    minutes: f64,
    outage_minutes: (f64, f64),
    samples: Vec<Sample>,
    /// RSS after warm-up: lowest and highest sample, and their spread relative to the lowest.
    rss_after_warmup_mb: (f64, f64),
    rss_spread: f64,
    /// Per camera: decoded, analysed, skipped, dropped; decoded - (analysed+skipped+dropped).
    frames: BTreeMap<String, (u64, u64, u64, u64, i64)>,
    reconciled: bool,
    /// Records each sink had not delivered when the node stopped.
    undelivered: Vec<(String, u64)>,
    plot: String,
    passed: bool,
}

async fn soak(args: SoakArgs) -> anyhow::Result<ExitCode> {
    let common = &args.common;
    let mqtt = socket(&common.mqtt, "--mqtt")?;
    check_services(mqtt, &common.store).await?;
    let clip = bench_clip(common.clip.as_deref())?;
    let pg = store_addr(&common.store)?;
    let broker_relay = Relay::start(mqtt).await?;
    let store_relay = Relay::start(pg).await?;
    let store = relay_store(&common.store, store_relay.addr);
    let prefix = format!("pantau-soak-{}", std::process::id());
    let sim = Simulator::start(&clip, args.cameras)?;
    let dir = tempfile::tempdir()?;
    let config = node_config(
        common,
        args.cameras,
        sim.port,
        dir.path(),
        &prefix,
        broker_relay.addr,
        &store,
    )?;
    let stop = CancellationToken::new();
    // The subscriber listens to the broker itself: what it misses during the outage, the
    // node delivers from its outbox afterwards.
    let latencies = Latencies::subscribe(mqtt, &prefix, stop.clone()).await;
    let node = Node::start(config, None)
        .await
        .map_err(|e| anyhow::anyhow!("the node did not start: {e}"))?;
    let total = Duration::from_secs_f64(args.minutes.max(1.0) * 60.0);
    let outage = (
        total.mul_f64(0.45),
        total.mul_f64(0.45)
            + total
                .mul_f64(0.1)
                .min(Duration::from_secs(120))
                .max(Duration::from_secs(20)),
    );
    let sample_every = Duration::from_secs(args.sample_s.max(5));
    let start = Instant::now();
    let mut samples = Vec::new();
    let mut last = (
        Instant::now(),
        cpu_seconds(None),
        counters(&node.ingest().statuses()),
    );
    let mut cut = false;
    if !args.json {
        eprintln!(
            "soak: {} cameras for {:.0} min, broker and database cut from {:.1} to {:.1} min",
            args.cameras,
            args.minutes,
            outage.0.as_secs_f64() / 60.0,
            outage.1.as_secs_f64() / 60.0
        );
    }
    while start.elapsed() < total {
        let next = (last.0 + sample_every).min(start + total);
        // Cut and restore on time, between samples.
        while Instant::now() < next {
            let now = start.elapsed();
            let want_cut = now >= outage.0 && now < outage.1;
            if want_cut != cut {
                cut = want_cut;
                broker_relay.set_cut(cut);
                store_relay.set_cut(cut);
                if !args.json {
                    eprintln!(
                        "{:.1} min: broker and database {}",
                        now.as_secs_f64() / 60.0,
                        if cut { "cut" } else { "back" }
                    );
                }
            }
            tokio::time::sleep(
                Duration::from_millis(250).min(next.saturating_duration_since(Instant::now())),
            )
            .await;
        }
        let now = (
            Instant::now(),
            cpu_seconds(None),
            counters(&node.ingest().statuses()),
        );
        let wall = now.0.duration_since(last.0).as_secs_f64().max(1e-3);
        let fps_min = now
            .2
            .iter()
            .map(|(id, a)| {
                let b = last.2.get(id).copied().unwrap_or_default();
                a.1.saturating_sub(b.1) as f64 / wall
            })
            .fold(f64::INFINITY, f64::min);
        let lat = latencies.since(last.0);
        let backlog = node
            .outbox()
            .depths()
            .iter()
            .map(|(_, d)| *d)
            .max()
            .unwrap_or(0);
        let s = Sample {
            minute: round(start.elapsed().as_secs_f64() / 60.0, 2),
            rss_mb: round(rss_mb(), 1),
            p50_latency_ms: percentile(&lat, 0.5).map(|v| round(v, 1)),
            p99_latency_ms: percentile(&lat, 0.99).map(|v| round(v, 1)),
            events: lat.len(),
            cpu_cores: round((now.1 - last.1) / wall, 2),
            analysed_fps_min: round(if fps_min.is_finite() { fps_min } else { 0.0 }, 2),
            outbox_backlog: backlog,
            detector_pending: node.inference().load().sample().pending,
            outage: cut,
        };
        if !args.json {
            eprintln!(
                "{:>6.1} min  RSS {:>6.1} MiB  cpu {:.2}  fps min {:.2}  events {:>4}  p99 {:>6} ms  outbox {:>5}  detector queue {}{}",
                s.minute,
                s.rss_mb,
                s.cpu_cores,
                s.analysed_fps_min,
                s.events,
                s.p99_latency_ms.map_or("-".into(), |v| format!("{v:.0}")),
                s.outbox_backlog,
                s.detector_pending,
                if s.outage { "  (outage)" } else { "" }
            );
        }
        samples.push(s);
        last = now;
    }
    broker_relay.set_cut(false);
    store_relay.set_cut(false);
    let stopped = node.stop().await;
    stop.cancel();
    drop(sim);

    let frames: BTreeMap<String, (u64, u64, u64, u64, i64)> = stopped
        .cameras
        .iter()
        .map(|s| {
            let accounted = s.frames_analysed + s.frames_skipped + s.frames_dropped;
            (
                s.id.clone(),
                (
                    s.frames_decoded,
                    s.frames_analysed,
                    s.frames_skipped,
                    s.frames_dropped,
                    s.frames_decoded as i64 - accounted as i64,
                ),
            )
        })
        .collect();
    // A frame decoded while the pipeline stopped may not reach the queue: allow two a camera.
    let reconciled = frames.values().all(|f| f.4.abs() <= 2);
    let warm = total.as_secs_f64() / 60.0 * 0.2;
    let after: Vec<f64> = samples
        .iter()
        .filter(|s| s.minute >= warm.max(2.0_f64.min(args.minutes / 3.0)))
        .map(|s| s.rss_mb)
        .collect();
    let lo = after.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = after.iter().copied().fold(0.0, f64::max);
    let spread = if lo.is_finite() && lo > 0.0 {
        (hi - lo) / lo
    } else {
        0.0
    };
    let undelivered: Vec<(String, u64)> = stopped
        .undelivered
        .iter()
        .map(|(s, n)| (s.to_string(), *n))
        .collect();
    std::fs::create_dir_all(args.plot.parent().unwrap_or(Path::new(".")))?;
    let outage_min = (outage.0.as_secs_f64() / 60.0, outage.1.as_secs_f64() / 60.0);
    std::fs::write(
        &args.plot,
        soak_svg(&samples, outage_min, args.cameras, &machine()),
    )?;
    let passed = reconciled && spread <= 0.05 && undelivered.iter().all(|(_, n)| *n == 0);
    let report = SoakReport {
        machine: machine(),
        cameras: args.cameras,
        minutes: args.minutes,
        outage_minutes: (round(outage_min.0, 2), round(outage_min.1, 2)),
        samples,
        rss_after_warmup_mb: (
            round(if lo.is_finite() { lo } else { 0.0 }, 1),
            round(hi, 1),
        ),
        rss_spread: round(spread, 4),
        frames,
        reconciled,
        undelivered,
        plot: args.plot.display().to_string(),
        passed,
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!(
            "RSS after warm-up {:.1}-{:.1} MiB (spread {:.1} %, goal <= 5 %); frames reconcile: {}; undelivered at stop: {:?}; plot: {}",
            report.rss_after_warmup_mb.0,
            report.rss_after_warmup_mb.1,
            report.rss_spread * 100.0,
            if report.reconciled { "yes" } else { "NO" },
            report.undelivered,
            report.plot
        );
        for (id, f) in &report.frames {
            println!(
                "  {id}: decoded {} = analysed {} + skipped {} + dropped {} (difference {})",
                f.0, f.1, f.2, f.3, f.4
            );
        }
        println!("{}", if passed { "soak passed" } else { "soak FAILED" });
    }
    Ok(if passed {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// The database's host and port from a connection string.
fn store_addr(store: &str) -> anyhow::Result<SocketAddr> {
    let config: tokio_postgres::Config = store.parse().context("--store")?;
    let host = match config.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
        _ => bail!("--store: the soak needs a TCP host (host=127.0.0.1 ...)"),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    socket(&format!("{host}:{port}"), "--store")
}

/// The connection string pointed at the relay.
fn relay_store(store: &str, relay: SocketAddr) -> String {
    let kept: Vec<&str> = store
        .split_whitespace()
        .filter(|kv| !kv.starts_with("host=") && !kv.starts_with("port="))
        .collect();
    format!(
        "host={} port={} {}",
        relay.ip(),
        relay.port(),
        kept.join(" ")
    )
}

/// What one panel of the plot shows of a sample.
type SampleValue = Box<dyn Fn(&Sample) -> Option<f64>>;

/// RSS and p99 latency over time, the outage shaded: a self-contained SVG.
fn soak_svg(samples: &[Sample], outage: (f64, f64), cameras: usize, m: &Machine) -> String {
    let (w, h) = (760.0, 420.0);
    let (left, right) = (70.0, 20.0);
    let panel_h = 140.0;
    let tops = [50.0, 240.0];
    let max_min = samples.last().map_or(1.0, |s| s.minute).max(1.0);
    let x = |min: f64| left + (w - left - right) * min / max_min;
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" font-family=\"sans-serif\" font-size=\"12\">\n\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
         <text x=\"{left}\" y=\"22\" font-size=\"14\">pantau bench soak: {cameras} cameras (720p30, 5 analysed fps), {:.0} min, {} cores ({})</text>\n",
        max_min,
        m.cores,
        escape(&m.cpu)
    );
    let series: [(&str, SampleValue, &str); 2] = [
        (
            "RSS (MiB)",
            Box::new(|s: &Sample| Some(s.rss_mb)),
            "#1f77b4",
        ),
        (
            "p99 capture-to-MQTT latency (ms, log)",
            Box::new(|s: &Sample| s.p99_latency_ms.map(|v| v.max(1.0).log10())),
            "#d62728",
        ),
    ];
    for (i, (label, value, colour)) in series.iter().enumerate() {
        let top = tops[i];
        let values: Vec<(f64, f64)> = samples
            .iter()
            .filter_map(|s| value(s).map(|v| (s.minute, v)))
            .collect();
        // Both panels start at 0 (1 ms on the log scale of latency).
        let top_value = values.iter().map(|(_, v)| *v).fold(0.0, f64::max);
        let lo = 0.0;
        let hi = if i == 0 {
            (top_value * 1.1).max(1.0)
        } else {
            top_value.max(3.0).ceil()
        };
        let y = |v: f64| top + panel_h - panel_h * (v - lo) / (hi - lo);
        let _ = writeln!(
            svg,
            "<rect x=\"{:.1}\" y=\"{top}\" width=\"{:.1}\" height=\"{panel_h}\" fill=\"#f2f2f2\"/>",
            x(outage.0),
            (x(outage.1) - x(outage.0)).max(1.0)
        );
        let _ = writeln!(
            svg,
            "<line x1=\"{left}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"black\"/><line x1=\"{left}\" y1=\"{top}\" x2=\"{left}\" y2=\"{}\" stroke=\"black\"/>",
            top + panel_h,
            w - right,
            top + panel_h,
            top + panel_h
        );
        let _ = writeln!(svg, "<text x=\"{left}\" y=\"{}\">{label}</text>", top - 6.0);
        for k in 0..=2 {
            let v = lo + (hi - lo) * f64::from(k) / 2.0;
            let shown = if i == 0 {
                format!("{v:.0}")
            } else {
                format!("{:.0}", 10f64.powf(v))
            };
            let _ = writeln!(
                svg,
                "<text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{shown}</text>",
                left - 6.0,
                y(v) + 4.0
            );
        }
        let points: Vec<String> = values
            .iter()
            .map(|(m, v)| format!("{:.1},{:.1}", x(*m), y(*v)))
            .collect();
        let _ = writeln!(
            svg,
            "<polyline fill=\"none\" stroke=\"{colour}\" stroke-width=\"2\" points=\"{}\"/>",
            points.join(" ")
        );
    }
    let _ = writeln!(
        svg,
        "<text x=\"{:.1}\" y=\"{}\">outage (broker and database cut)</text>",
        x(outage.0),
        tops[0] + 14.0
    );
    for k in 0..=4 {
        let m = max_min * f64::from(k) / 4.0;
        let _ = writeln!(
            svg,
            "<text x=\"{:.1}\" y=\"{}\" text-anchor=\"middle\">{m:.0} min</text>",
            x(m),
            tops[1] + panel_h + 18.0
        );
    }
    svg.push_str("</svg>\n");
    svg
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stage_latency_takes_each_stage_apart() {
        let at = Instant::now();
        let samples: Vec<pantau_node::StageSample> = (1..=100)
            .map(|i| pantau_node::StageSample {
                at,
                received_ms: f64::from(i),
                detected_ms: 10.0 * f64::from(i),
                analysed_ms: 10.0 * f64::from(i) + 1.0,
            })
            .collect();
        let s = StageLatency::of(&samples).expect("samples");
        assert_eq!(s.received_ms, [51.0, 99.0]);
        assert_eq!(s.detected_ms, [510.0, 990.0]);
        assert_eq!(s.analysed_ms, [511.0, 991.0]);
        assert!(s.to_string().contains("received 51/99"));
        assert!(StageLatency::of(&[]).is_none());
    }

    #[test]
    fn the_store_string_is_pointed_at_the_relay() {
        let s = relay_store(
            "host=127.0.0.1 port=5432 user=postgres dbname=pantau connect_timeout=5",
            "127.0.0.1:40000".parse().expect("addr"),
        );
        assert_eq!(
            s,
            "host=127.0.0.1 port=40000 user=postgres dbname=pantau connect_timeout=5"
        );
        assert_eq!(
            store_addr("host=127.0.0.1 port=5433 user=postgres").expect("parses"),
            "127.0.0.1:5433".parse().expect("addr")
        );
    }

    #[test]
    fn the_bound_is_the_median_sample_by_cost_per_camera() {
        let b = |decode: f64, inference_ms: f64| Bound {
            decode_core_s_per_camera_s: decode,
            inference_core_s: inference_ms / 1000.0,
            clip_fps: 30.0,
        };
        // Per camera at 5 fps: 0.115, 0.160, 0.121 and 0.130 cores.
        let samples = [
            b(0.065, 10.0),
            b(0.091, 13.8),
            b(0.066, 11.0),
            b(0.070, 12.0),
        ];
        let median = median_bound(&samples, 5.0);
        assert!((median.per_camera(5.0) - 0.121).abs() < 1e-9);
        let one = median_bound(&samples[1..2], 5.0);
        assert!((one.per_camera(5.0) - 0.160).abs() < 1e-9);
    }

    #[test]
    fn percentiles_and_the_plot() {
        assert_eq!(percentile(&[], 0.5), None);
        assert_eq!(percentile(&[3.0, 1.0, 2.0], 0.5), Some(2.0));
        assert_eq!(percentile(&[3.0, 1.0, 2.0], 0.99), Some(3.0));
        let samples: Vec<Sample> = (0..6)
            .map(|i| Sample {
                minute: f64::from(i),
                rss_mb: 300.0 + f64::from(i),
                p50_latency_ms: Some(20.0),
                p99_latency_ms: (i != 3).then_some(80.0),
                events: 10,
                cpu_cores: 1.5,
                analysed_fps_min: 5.0,
                outbox_backlog: 0,
                detector_pending: 1,
                outage: i == 3,
            })
            .collect();
        let svg = soak_svg(
            &samples,
            (2.5, 3.5),
            8,
            &Machine {
                cores: 2,
                cpu: "a <cpu>".into(),
            },
        );
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        assert_eq!(svg.matches("<polyline").count(), 2);
        assert!(svg.contains("a &lt;cpu&gt;"));
    }

    #[test]
    fn cpu_and_memory_of_this_process_are_read() {
        assert!(rss_mb() > 1.0);
        let a = cpu_seconds(None);
        let mut x = 0u64;
        for i in 0..20_000_000u64 {
            x = x.wrapping_add(i * i);
        }
        assert!(x > 0);
        assert!(cpu_seconds(None) >= a);
    }
}
