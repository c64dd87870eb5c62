//! `pantau replay VIDEO`: the same analytics as a live camera, on a file.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use pantau_analytics::camera::{analyse, Analysed};
use pantau_analytics::detect::onnx::Detector;
use pantau_analytics::detect::service::InferenceService;
use pantau_analytics::rules::Direction;
use pantau_analytics::scene::Scene;
use pantau_core::config::ValidConfig;
use pantau_core::{
    CameraSettings, Config, DetectorConfig, LineConfig, ReconnectSettings, SourceSpec, ZoneConfig,
};
use pantau_ingest::Ingest;
use serde::Serialize;

use super::annotate::Annotator;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Video file to analyse.
    video: PathBuf,
    /// Configuration file: detector, tracker and (with --camera) lines and zones.
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// Take lines and zones from this camera of --config (default: the first camera).
    #[arg(long)]
    camera: Option<String>,
    /// Counting line NAME=x1,y1,x2,y2[,x3,y3...] in full-resolution pixels. Repeatable.
    #[arg(long = "line", value_name = "NAME=X1,Y1,X2,Y2")]
    lines: Vec<String>,
    /// Zone NAME=x1,y1,x2,y2,x3,y3[,...] in full-resolution pixels. Repeatable.
    #[arg(long = "zone", value_name = "NAME=X1,Y1,X2,Y2,X3,Y3")]
    zones: Vec<String>,
    /// Classes to detect, e.g. person,car (default: the config's, else road users).
    #[arg(long, value_delimiter = ',')]
    classes: Vec<String>,
    /// Print one JSON object with the results instead of a summary.
    #[arg(long)]
    json: bool,
    /// Write confirmed tracks in MOTChallenge CSV.
    #[arg(long, value_name = "FILE")]
    tracks_out: Option<PathBuf>,
    /// Write an annotated MP4 (boxes, ids, trails, lines, counts).
    #[arg(long, value_name = "OUT.mp4")]
    annotate: Option<PathBuf>,
    /// Play at the file's own frame rate, like a camera (frames may be dropped if analysis is
    /// slower). Default: as fast as possible, every frame.
    #[arg(long)]
    realtime: bool,
    /// Analysis frame width in pixels.
    #[arg(long, default_value_t = 640)]
    width: u32,
    /// Inference threads (default: the config's, else 2).
    #[arg(long)]
    threads: Option<usize>,
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
    pub frames: u64,
    pub seconds: f64,
    pub fps: f64,
    pub stages_ms: Stages,
    /// line -> direction -> class -> crossings
    pub lines: BTreeMap<String, BTreeMap<String, BTreeMap<String, u64>>>,
    /// zone -> {entries, exits, occupancy_end} -> class -> n
    pub zones: BTreeMap<String, BTreeMap<String, BTreeMap<String, u64>>>,
    pub tracks: u64,
}

fn parse_points(text: &str, what: &str) -> anyhow::Result<(String, Vec<[f32; 2]>)> {
    let (name, coords) = text
        .split_once('=')
        .with_context(|| format!("--{what} {text}: write NAME=x1,y1,x2,y2..."))?;
    let nums: Vec<f32> = coords
        .split(',')
        .map(|n| n.trim().parse::<f32>())
        .collect::<Result<_, _>>()
        .with_context(|| format!("--{what} {text}: coordinates must be numbers"))?;
    if !nums.len().is_multiple_of(2) {
        bail!("--{what} {text}: coordinates come in x,y pairs");
    }
    Ok((
        name.to_string(),
        nums.chunks(2).map(|c| [c[0], c[1]]).collect(),
    ))
}

pub fn run(args: Args) -> anyhow::Result<std::process::ExitCode> {
    super::init_logging("warn");
    let (valid, base) = match &args.config {
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
    let (mut lines, mut zones) = scene_from_config(&valid, args.camera.as_deref())?;
    for l in &args.lines {
        let (name, points) = parse_points(l, "line")?;
        lines.push(LineConfig {
            name,
            points,
            directions: None,
            hysteresis_px: 6.0,
        });
    }
    for z in &args.zones {
        let (name, polygon) = parse_points(z, "zone")?;
        zones.push(ZoneConfig {
            name,
            polygon,
            hysteresis_px: 4.0,
            severity: Default::default(),
        });
    }
    let issues = pantau_core::analytics::validate_scene("replay", &lines, &zones);
    if !issues.is_empty() {
        bail!("{issues}");
    }
    let mut detector_config: DetectorConfig = valid.config.detector.clone();
    if !args.classes.is_empty() {
        detector_config.classes = args.classes.clone();
    }
    if let Some(t) = args.threads {
        detector_config.threads = t;
    }
    std::fs::File::open(&args.video)
        .with_context(|| format!("cannot read {}", args.video.display()))?;

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let tracker = valid.config.tracker.clone();
    let report = rt.block_on(async move {
        let detector =
            tokio::task::spawn_blocking(move || Detector::load(&detector_config, &base)).await??;
        let labels = detector.labels().to_vec();
        let (service, _guard) = InferenceService::start(detector);
        let ingest = Ingest::new()?;
        let settings = CameraSettings {
            id: "replay".into(),
            name: "replay".into(),
            enabled: true,
            source: SourceSpec::File {
                path: args.video.clone(),
                looping: false,
                realtime: args.realtime,
            },
            analysis_fps: 120.0,
            analysis_width: args.width,
            queue_capacity: 4,
            stall_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(30),
            reconnect: ReconnectSettings {
                initial: Duration::from_millis(500),
                max: Duration::from_secs(5),
                multiplier: 2.0,
                jitter: 0.0,
            },
            lines: lines.clone(),
            zones: zones.clone(),
        };
        let frames_rx = ingest.add(settings)?;
        let scene = Scene::new(&lines, &zones, &tracker);
        let mut tracks_out = match &args.tracks_out {
            Some(p) => Some(std::io::BufWriter::new(
                std::fs::File::create(p)
                    .with_context(|| format!("cannot write {}", p.display()))?,
            )),
            None => None,
        };
        let mut annotator = match &args.annotate {
            Some(p) => Some(Annotator::new(p, labels.clone())?),
            None => None,
        };
        let progress = std::io::stderr().is_terminal() && !args.json;
        let mut stages = Stages::default();
        let mut frames = 0u64;
        let mut max_id = 0u64;
        let start = Instant::now();
        let mut last_progress = Instant::now();
        let scene = analyse(
            frames_rx,
            service,
            scene,
            |a: Analysed<'_>| -> anyhow::Result<()> {
                stages.decode += a.decode_wait_ms;
                stages.preprocess += a.timings.preprocess_ms;
                stages.inference += a.timings.inference_ms;
                stages.postprocess += a.timings.postprocess_ms;
                stages.tracking += a.update.tracking_ms;
                stages.rules += a.update.rules_ms;
                if let Some(out) = tracks_out.as_mut() {
                    for t in a.update.tracks.iter().filter(|t| t.matched) {
                        let b = t.bbox;
                        writeln!(
                            out,
                            "{},{},{:.2},{:.2},{:.2},{:.2},{:.3},-1,-1,-1",
                            a.frame.seq + 1,
                            t.id,
                            b.x1,
                            b.y1,
                            b.width(),
                            b.height(),
                            t.score
                        )?;
                    }
                }
                max_id = a.update.tracks.iter().map(|t| t.id).fold(max_id, u64::max);
                if let Some(ann) = annotator.as_mut() {
                    ann.push(a.frame, a.scene, a.update)?;
                }
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
        ingest.shutdown().await;
        if let Some(mut out) = tracks_out {
            out.flush()?;
        }
        if let Some(a) = annotator {
            a.finish()?;
        }
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
        anyhow::Ok(Report {
            video: args.video.display().to_string(),
            frames,
            seconds: (seconds * 1000.0).round() / 1000.0,
            fps: (frames as f64 / seconds * 10.0).round() / 10.0,
            stages_ms: stages,
            lines: line_report,
            zones: zone_report,
            tracks: max_id,
        })
    })?;
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        print_summary(&report);
    }
    Ok(std::process::ExitCode::SUCCESS)
}

fn scene_from_config(
    valid: &ValidConfig,
    camera: Option<&str>,
) -> anyhow::Result<(Vec<LineConfig>, Vec<ZoneConfig>)> {
    let chosen =
        match camera {
            Some(id) => {
                Some(valid.cameras.iter().find(|c| c.id == id).with_context(|| {
                    format!("--camera {id}: no camera with that id in the config")
                })?)
            }
            None => valid.cameras.first(),
        };
    Ok(chosen
        .map(|c| (c.lines.clone(), c.zones.clone()))
        .unwrap_or_default())
}

fn print_summary(r: &Report) {
    println!(
        "{}: {} frames in {:.2} s ({:.1} fps), {} tracks",
        r.video, r.frames, r.seconds, r.fps, r.tracks
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
