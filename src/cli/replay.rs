//! `pantau replay VIDEO`: the same analytics as a live camera, on a file: the same ingest
//! (decoding, the analysis-rate gate that skips frames, capture times on the video's own
//! timeline), detection, tracking and rules. `pantau mot-eval --video` runs it too.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{bail, Context};
use pantau_analytics::camera::{analyse, Analysed};
use pantau_analytics::detect::onnx::Detector;
use pantau_analytics::detect::service::InferenceService;
use pantau_analytics::facts::Facts as EventFacts;
use pantau_analytics::health::{HealthMonitor, HealthSettings};
use pantau_analytics::rules::{Direction, TrafficSetup};
use pantau_analytics::scene::Scene;
use pantau_analytics::ImageRef;
use pantau_config::config::ValidConfig;
use pantau_config::{
    CameraSettings, Config, DetectorConfig, LineConfig, ReconnectSettings, SourceSpec,
    TrackerConfig, ZoneConfig,
};
use pantau_ingest::Ingest;
use serde::Serialize;

use super::annotate::Annotator;

/// What a replay analyses and how: shared by `pantau replay` and `pantau mot-eval --video`.
#[derive(Debug, Clone, clap::Args)]
pub struct SceneArgs {
    /// Configuration file: detector, tracker and (with --camera) lines and zones.
    #[arg(long, short)]
    pub config: Option<PathBuf>,
    /// Take lines, zones and the analysis rate from this camera of --config (default: the
    /// first camera).
    #[arg(long)]
    pub camera: Option<String>,
    /// Counting line NAME=x1,y1,x2,y2[,x3,y3...] in full-resolution pixels. Repeatable.
    #[arg(long = "line", value_name = "NAME=X1,Y1,X2,Y2")]
    pub lines: Vec<String>,
    /// Zone NAME=x1,y1,x2,y2,x3,y3[,...] in full-resolution pixels. Repeatable.
    #[arg(long = "zone", value_name = "NAME=X1,Y1,X2,Y2,X3,Y3")]
    pub zones: Vec<String>,
    /// Classes to detect, e.g. person,car (default: the config's, else road users).
    #[arg(long, value_delimiter = ',')]
    pub classes: Vec<String>,
    /// Frames per second to analyse, skipping frames exactly as a live camera's ingest does.
    /// Default: the rate of the config camera the scene comes from (--camera, else the first);
    /// without a config camera, every frame.
    #[arg(long, value_name = "FPS")]
    pub analysis_fps: Option<f64>,
    /// Analysis frame width in pixels (0: the detector's input size, one resize). Default: the
    /// config camera's `analysis_width`, else the config's (640), as a live camera.
    #[arg(long)]
    pub width: Option<u32>,
    /// Skip the detector on frames that did not change, as `motion_gate` does for a live
    /// camera (default: the config camera's setting).
    #[arg(long)]
    pub motion_gate: bool,
    /// Threads per inference (default: the config's, else 1).
    #[arg(long)]
    pub threads: Option<usize>,
}

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Video file to analyse.
    video: PathBuf,
    #[command(flatten)]
    scene: SceneArgs,
    /// Print one JSON object with the results instead of a summary.
    #[arg(long)]
    json: bool,
    /// Write confirmed tracks in MOTChallenge CSV (frame numbers of the source video).
    #[arg(long, value_name = "FILE")]
    tracks_out: Option<PathBuf>,
    /// Write every event (crossings, zones, traffic and incident rules) as a JSON line in the
    /// MQTT payload schema.
    #[arg(long, value_name = "FILE")]
    events_out: Option<PathBuf>,
    /// Write an annotated MP4 (boxes, ids, trails, lines, counts).
    #[arg(long, value_name = "OUT.mp4")]
    annotate: Option<PathBuf>,
    /// Play at the file's own frame rate, like a camera (frames may be dropped if analysis is
    /// slower). Default: as fast as possible, every admitted frame analysed.
    #[arg(long)]
    realtime: bool,
}

/// A replay, resolved and checked.
#[derive(Debug, Clone)]
pub struct Plan {
    pub video: PathBuf,
    base: PathBuf,
    detector: DetectorConfig,
    tracker: TrackerConfig,
    pub lines: Vec<LineConfig>,
    pub zones: Vec<ZoneConfig>,
    /// The config camera's calibration, lanes and rule parameters (defaults without one).
    pub calibration: Option<pantau_config::traffic::CalibrationConfig>,
    pub lanes: Vec<pantau_config::traffic::LaneConfig>,
    pub rules: pantau_config::traffic::RulesConfig,
    /// `None`: every frame.
    pub analysis_fps: Option<f64>,
    width: Option<u32>,
    motion_gate: Option<pantau_config::MotionGate>,
    realtime: bool,
}

impl SceneArgs {
    /// Resolves the config, scene, classes and rate for replaying `video`.
    pub fn plan(&self, video: &Path, realtime: bool) -> anyhow::Result<Plan> {
        let (valid, base) = match &self.config {
            Some(path) => (
                Config::load(path)?,
                path.parent().unwrap_or(Path::new(".")).to_path_buf(),
            ),
            None => (
                Config::default()
                    .validate(Path::new("."), &|_| None)
                    .map_err(|e| anyhow::anyhow!("{e}"))?,
                PathBuf::from("."),
            ),
        };
        let camera = config_camera(&valid, self.camera.as_deref())?;
        let (mut lines, mut zones) = camera
            .map(|c| (c.lines.clone(), c.zones.clone()))
            .unwrap_or_default();
        for l in &self.lines {
            let (name, points) = parse_points(l, "line")?;
            lines.push(LineConfig {
                name,
                points,
                directions: None,
                hysteresis_px: 6.0,
            });
        }
        for z in &self.zones {
            let (name, polygon) = parse_points(z, "zone")?;
            zones.push(ZoneConfig {
                name,
                polygon,
                hysteresis_px: 4.0,
                severity: Default::default(),
                kind: Default::default(),
                max_persons: None,
                max_density: None,
                loitering_s: None,
            });
        }
        let issues = pantau_config::analytics::validate_scene("replay", &lines, &zones);
        if !issues.is_empty() {
            bail!("{issues}");
        }
        let analysis_fps = match self.analysis_fps {
            Some(fps) if fps > 0.0 && fps <= 120.0 => Some(fps),
            Some(fps) => bail!("--analysis-fps {fps}: use a rate above 0 and up to 120 frames per second (or leave it out for every frame)"),
            None => camera.map(|c| c.analysis_fps),
        };
        let mut detector = valid.config.detector.clone();
        if !self.classes.is_empty() {
            detector.classes = self.classes.clone();
        }
        if let Some(t) = self.threads {
            detector.threads = t;
        }
        std::fs::File::open(video).with_context(|| format!("cannot read {}", video.display()))?;
        Ok(Plan {
            video: video.to_path_buf(),
            base,
            detector,
            tracker: valid.config.tracker.clone(),
            lines,
            zones,
            calibration: camera.and_then(|c| c.calibration.clone()),
            lanes: camera.map(|c| c.lanes.clone()).unwrap_or_default(),
            rules: camera.map(|c| c.rules.clone()).unwrap_or_default(),
            analysis_fps,
            width: match self.width {
                Some(0) => None,
                Some(w) if (64..=3840).contains(&w) && w % 2 == 0 => Some(w),
                Some(w) => bail!("--width {w}: use an even width from 64 to 3840 pixels, or 0 for the detector's input size"),
                None => match camera {
                    Some(c) => c.analysis_width,
                    None => Some(valid.config.ingest.analysis_width).filter(|w| *w != 0),
                },
            },
            motion_gate: if self.motion_gate {
                let i = &valid.config.ingest;
                Some(pantau_config::MotionGate {
                    refresh: Duration::from_secs_f64(i.motion_refresh_s),
                    threshold: i.motion_threshold,
                })
            } else {
                camera.and_then(|c| c.motion_gate)
            },
            realtime,
        })
    }
}

/// A high enough rate lets every frame of any video through the gate.
const EVERY_FRAME_FPS: f64 = 1000.0;

/// Replays `plan.video` through ingest, detection, tracking and rules; `observe` sees every
/// analysed frame (with the model's labels). Returns the report and the scene as it ended.
pub fn execute(
    plan: &Plan,
    progress: bool,
    mut observe: impl FnMut(&Analysed<'_>, &[String], &[pantau_events::Event]) -> anyhow::Result<()>,
) -> anyhow::Result<(Report, Scene)> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let (detector_config, base) = (plan.detector.clone(), plan.base.clone());
        let floor = plan.tracker.low_score;
        let detectors = tokio::task::spawn_blocking(move || {
            Detector::load_workers(&detector_config, &base, floor)
        })
        .await??;
        let labels = detectors[0].labels().to_vec();
        // The same inference service as a live node's.
        let (service, _guard) = InferenceService::start_pool(detectors);
        let ingest = Ingest::new()?;
        let (model_w, model_h) = service.input_size();
        ingest.set_analysis_fit(model_w, model_h);
        let settings = CameraSettings {
            id: "replay".into(),
            name: "replay".into(),
            enabled: true,
            source: SourceSpec::File {
                path: plan.video.clone(),
                looping: false,
                realtime: plan.realtime,
            },
            analysis_fps: plan.analysis_fps.unwrap_or(EVERY_FRAME_FPS),
            analysis_width: plan.width,
            decoder_threads: 0,
            decoder_nice: 0,
            min_analysis_fps: plan.analysis_fps.unwrap_or(EVERY_FRAME_FPS),
            motion_gate: plan.motion_gate,
            main_source: None,
            queue_capacity: 4,
            stall_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(30),
            reconnect: ReconnectSettings {
                initial: Duration::from_millis(500),
                max: Duration::from_secs(5),
                multiplier: 2.0,
                jitter: 0.0,
            },
            max_clock_skew: Duration::from_secs(300),
            lines: plan.lines.clone(),
            zones: plan.zones.clone(),
            calibration: plan.calibration.clone(),
            lanes: plan.lanes.clone(),
            rules: plan.rules.clone(),
        };
        let frames_rx = ingest.add(settings)?;
        let scene =
            Scene::new(&plan.lines, &plan.zones, &plan.tracker).with_traffic(TrafficSetup::new(
                plan.calibration.clone(),
                plan.lanes.clone(),
                plan.zones.clone(),
                plan.rules.clone(),
                &labels,
            ));
        // The same events a live camera publishes, from the same code.
        let mut facts = EventFacts::new(
            "replay",
            "replay",
            plan.lines.iter().map(|l| l.name.clone()).collect(),
            std::sync::Arc::new(labels.clone()),
            std::sync::Arc::new(pantau_events::IdGenerator::new()),
            Duration::from_secs(60),
        )
        .with_zones(&plan.zones)
        .with_alert_gap(Duration::from_secs_f64(plan.rules.incident_gap_s));
        // The picture's health, as a live camera's: against the rate asked for (every frame:
        // the file's own rate, learned).
        let mut health = HealthMonitor::new(HealthSettings {
            expected_fps: plan.analysis_fps,
            ..HealthSettings::default()
        });
        let mut event_counts: BTreeMap<String, u64> = BTreeMap::new();
        let mut stages = Stages::default();
        let mut frames = 0u64;
        let mut max_id = 0u64;
        let mut source_frames = 0u64;
        let mut crossings = Vec::new();
        let mut span: Option<(SystemTime, SystemTime)> = None;
        let start = Instant::now();
        let mut last_progress = Instant::now();
        let mut detector_runs = 0u64;
        let scene = analyse(
            frames_rx,
            service,
            scene,
            plan.motion_gate
                .map(pantau_analytics::motion::MotionCheck::new),
            |a: Analysed<'_>| -> anyhow::Result<()> {
                detector_runs += u64::from(a.inferred);
                stages.decode += a.decode_wait_ms;
                stages.preprocess += a.timings.preprocess_ms;
                stages.inference += a.timings.inference_ms;
                stages.postprocess += a.timings.postprocess_ms;
                stages.tracking += a.update.tracking_ms;
                stages.rules += a.update.rules_ms;
                let t = a.frame.capture_time;
                span = Some(span.map_or((t, t), |(first, _)| (first, t)));
                max_id = a.update.tracks.iter().map(|t| t.id).fold(max_id, u64::max);
                for c in &a.update.crossings {
                    crossings.push(CrossingRow {
                        frame: source_frame(&a),
                        line: c.line.clone(),
                        direction: c.direction.as_str(),
                        class: labels
                            .get(c.class as usize)
                            .cloned()
                            .unwrap_or_else(|| c.class.to_string()),
                        track: c.track_id,
                    });
                }
                let (mut events, _) = facts.frame(
                    t,
                    &a.update.tracks,
                    &a.update.crossings,
                    &a.update.zone_events,
                );
                events.extend(facts.traffic(t, &a.update.tracks, &a.update.traffic));
                let at_s = t
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap_or_default()
                    .as_secs_f64();
                let changes = health.frame(ImageRef::from(a.frame), at_s, a.frame.seq);
                events.extend(facts.camera_health(t, &changes));
                for e in &events {
                    *event_counts.entry(e.kind.as_str().to_string()).or_default() += 1;
                }
                observe(&a, &labels, &events)?;
                frames += 1;
                if progress && last_progress.elapsed() > Duration::from_millis(250) {
                    last_progress = Instant::now();
                    eprint!(
                        "\r{frames} frames, {:.1} fps, {} tracks  ",
                        frames as f64 / start.elapsed().as_secs_f64(),
                        max_id
                    );
                }
                Ok(())
            },
        )
        .await?;
        let seconds = start.elapsed().as_secs_f64();
        if progress {
            eprintln!();
        }
        if let Some(status) = ingest.status("replay") {
            source_frames = status.frames_decoded;
        }
        ingest.shutdown().await;
        let n = frames.max(1) as f64;
        for v in [
            &mut stages.decode,
            &mut stages.preprocess,
            &mut stages.inference,
            &mut stages.postprocess,
            &mut stages.tracking,
            &mut stages.rules,
        ] {
            *v = (*v / n * 1000.0).round() / 1000.0;
        }
        let name = |c: &u16| {
            labels
                .get(*c as usize)
                .cloned()
                .unwrap_or_else(|| c.to_string())
        };
        let mut line_report = BTreeMap::new();
        for line in &scene.lines {
            let mut dirs = BTreeMap::new();
            for d in [Direction::In, Direction::Out] {
                let per_class: BTreeMap<String, u64> = line
                    .counts()
                    .get(&d)
                    .map(|m| m.iter().map(|(c, n)| (name(c), *n)).collect())
                    .unwrap_or_default();
                dirs.insert(d.as_str().to_string(), per_class);
            }
            line_report.insert(line.name().to_string(), dirs);
        }
        let mut zone_report = BTreeMap::new();
        for zone in &scene.zones {
            let conv = |m: &BTreeMap<u16, u64>| m.iter().map(|(c, n)| (name(c), *n)).collect();
            let mut z = BTreeMap::new();
            z.insert("entries".to_string(), conv(zone.entries()));
            z.insert("exits".to_string(), conv(zone.exits()));
            z.insert("occupancy_end".to_string(), conv(&zone.occupancy()));
            zone_report.insert(zone.config.name.clone(), z);
        }
        // Analysed frames per second of video: frames - 1 gaps over the first-to-last span.
        let video_seconds = span
            .and_then(|(a, b)| b.duration_since(a).ok())
            .map_or(0.0, |d| d.as_secs_f64());
        let analysed_fps = if frames > 1 && video_seconds > 0.0 {
            (frames - 1) as f64 / video_seconds
        } else {
            0.0
        };
        let report = Report {
            video: plan.video.display().to_string(),
            analysis_fps: plan.analysis_fps,
            source_frames: source_frames.max(frames),
            frames,
            detector_runs,
            analysed_fps: (analysed_fps * 100.0).round() / 100.0,
            seconds: (seconds * 1000.0).round() / 1000.0,
            fps: (frames as f64 / seconds * 10.0).round() / 10.0,
            stages_ms: stages,
            crossings,
            lines: line_report,
            zones: zone_report,
            events: event_counts,
            tracks: max_id,
        };
        anyhow::Ok((report, scene))
    })
}

pub fn run(args: Args) -> anyhow::Result<std::process::ExitCode> {
    super::init_logging("warn");
    let plan = args.scene.plan(&args.video, args.realtime)?;
    let mut tracks_out = match &args.tracks_out {
        Some(p) => Some(std::io::BufWriter::new(
            std::fs::File::create(p).with_context(|| format!("cannot write {}", p.display()))?,
        )),
        None => None,
    };
    let mut annotator: Option<Annotator> = None;
    let progress = std::io::stderr().is_terminal() && !args.json;
    let mut events_out = match &args.events_out {
        Some(p) => Some(std::io::BufWriter::new(
            std::fs::File::create(p).with_context(|| format!("cannot write {}", p.display()))?,
        )),
        None => None,
    };
    let (report, _) = execute(&plan, progress, |a, labels, events| {
        if let Some(out) = tracks_out.as_mut() {
            write_mot_rows(out, a)?;
        }
        if let Some(out) = events_out.as_mut() {
            for e in events {
                serde_json::to_writer(&mut *out, e)?;
                out.write_all(b"\n")?;
            }
        }
        if let Some(path) = &args.annotate {
            if annotator.is_none() {
                annotator = Some(Annotator::new(path, labels.to_vec())?);
            }
            if let Some(ann) = annotator.as_mut() {
                ann.push(a.frame, a.scene, a.update)?;
            }
        }
        Ok(())
    })?;
    for out in [tracks_out.as_mut(), events_out.as_mut()]
        .into_iter()
        .flatten()
    {
        out.flush()?;
    }
    if let Some(a) = annotator {
        a.finish()?;
    }
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        print_summary(&report);
    }
    Ok(std::process::ExitCode::SUCCESS)
}

/// The source video's frame number (1-based, skipped frames included) of an analysed frame.
pub fn source_frame(a: &Analysed<'_>) -> u64 {
    a.frame.source_index.unwrap_or(a.frame.seq) + 1
}

/// Confirmed tracks matched in this frame as MOTChallenge rows.
fn write_mot_rows(out: &mut impl Write, a: &Analysed<'_>) -> std::io::Result<()> {
    for t in a.update.tracks.iter().filter(|t| t.matched) {
        let b = t.bbox;
        writeln!(
            out,
            "{},{},{:.2},{:.2},{:.2},{:.2},{:.3},-1,-1,-1",
            source_frame(a),
            t.id,
            b.x1,
            b.y1,
            b.width(),
            b.height(),
            t.score
        )?;
    }
    Ok(())
}

/// Mean milliseconds per analysed frame for each stage.
#[derive(Debug, Default, Serialize)]
pub struct Stages {
    pub decode: f64,
    pub preprocess: f64,
    pub inference: f64,
    pub postprocess: f64,
    pub tracking: f64,
    pub rules: f64,
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub video: String,
    /// The analysis rate asked for; `null`: every frame.
    pub analysis_fps: Option<f64>,
    /// Frames decoded from the video, analysed or not.
    pub source_frames: u64,
    /// Frames analysed.
    pub frames: u64,
    /// Frames the detector ran on (fewer than `frames` with a motion gate).
    pub detector_runs: u64,
    /// Analysed frames per second of video (the rate operators get from a live camera).
    pub analysed_fps: f64,
    /// Seconds the replay took, and analysed frames per second of that (processing speed).
    pub seconds: f64,
    pub fps: f64,
    pub stages_ms: Stages,
    /// Every counted crossing, in order, with the source frame it was counted at (to check
    /// counts against a count made by hand).
    pub crossings: Vec<CrossingRow>,
    /// line -> direction -> class -> crossings
    pub lines: BTreeMap<String, BTreeMap<String, BTreeMap<String, u64>>>,
    /// zone -> {entries, exits, occupancy_end} -> class -> n
    pub zones: BTreeMap<String, BTreeMap<String, BTreeMap<String, u64>>>,
    /// Events by kind, as a live camera would have published them.
    pub events: BTreeMap<String, u64>,
    pub tracks: u64,
}

#[derive(Debug, Serialize)]
pub struct CrossingRow {
    /// Source frame number (1-based) of the analysed frame that counted it.
    pub frame: u64,
    pub line: String,
    pub direction: &'static str,
    pub class: String,
    pub track: u64,
}

fn parse_points(text: &str, what: &str) -> anyhow::Result<(String, Vec<[f32; 2]>)> {
    pantau_config::analytics::parse_named_points(text)
        .map_err(|e| anyhow::anyhow!("--{what} {text}: {e}"))
}

/// The config camera a replay takes its scene and rate from: `--camera`, else the first.
fn config_camera<'a>(
    valid: &'a ValidConfig,
    camera: Option<&str>,
) -> anyhow::Result<Option<&'a CameraSettings>> {
    match camera {
        Some(id) => {
            Ok(Some(
                valid.cameras.iter().find(|c| c.id == id).with_context(|| {
                    format!("--camera {id}: no camera with that id in the config")
                })?,
            ))
        }
        None => Ok(valid.cameras.first()),
    }
}

fn print_summary(r: &Report) {
    let rate = match r.analysis_fps {
        Some(fps) => format!("analysis at {fps} fps"),
        None => "every frame".to_string(),
    };
    println!(
        "{}: {} of {} frames analysed ({rate}: {:.2} per second of video) in {:.2} s ({:.1} fps), {} tracks",
        r.video, r.frames, r.source_frames, r.analysed_fps, r.seconds, r.fps, r.tracks
    );
    let s = &r.stages_ms;
    println!(
        "ms per frame: decode wait {:.2}, preprocess {:.2}, inference {:.2}, postprocess {:.2}, tracking {:.3}, rules {:.3}",
        s.decode, s.preprocess, s.inference, s.postprocess, s.tracking, s.rules
    );
    for (line, dirs) in &r.lines {
        for (dir, classes) in dirs {
            let list: Vec<String> = classes.iter().map(|(c, n)| format!("{c} {n}")).collect();
            println!(
                "line {line} {dir}: {}",
                if list.is_empty() {
                    "-".into()
                } else {
                    list.join(", ")
                }
            );
        }
    }
    for (zone, parts) in &r.zones {
        for (part, classes) in parts {
            let list: Vec<String> = classes.iter().map(|(c, n)| format!("{c} {n}")).collect();
            println!(
                "zone {zone} {part}: {}",
                if list.is_empty() {
                    "-".into()
                } else {
                    list.join(", ")
                }
            );
        }
    }
}
