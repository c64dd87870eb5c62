//! `pantau mot-eval`: tracking quality against MOTChallenge ground truth, of a track file or of
//! a replay that this command runs itself (at the rate a live camera is analysed, scored on the
//! frames it analysed), and line counts against the crossings the ground truth makes.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context};
use pantau_analytics::mot::{crossings, evaluate, only_frames, parse, MotBox, MotFile, MotMetrics};
use serde::Serialize;

use super::replay::{execute, source_frame, SceneArgs};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Ground truth (MOTChallenge gt.txt).
    #[arg(long)]
    gt: PathBuf,
    /// Tracks to score, e.g. from `pantau replay --tracks-out`.
    #[arg(long, conflicts_with = "video")]
    tracks: Option<PathBuf>,
    /// Replay this video (as `pantau replay` does) and score its tracks on the frames it
    /// analysed. Classes default to person (MOTChallenge ground truth is pedestrians).
    #[arg(long)]
    video: Option<PathBuf>,
    #[command(flatten)]
    scene: SceneArgs,
    /// Minimum IoU for a match.
    #[arg(long, default_value_t = 0.5)]
    iou: f32,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// Counts of one line: what the ground truth's tracks did and what pantau counted.
#[derive(Debug, Serialize)]
pub struct LineScore {
    pub truth_in: u64,
    pub truth_out: u64,
    pub counted_in: u64,
    pub counted_out: u64,
    /// (|counted in - truth in| + |counted out - truth out|) / (truth in + truth out).
    pub error: f64,
}

#[derive(Debug, Serialize)]
pub struct Evaluation {
    #[serde(flatten)]
    pub metrics: MotMetrics,
    /// With --video: the analysis rate (`null`: every frame) and the frames analysed.
    pub analysis_fps: Option<f64>,
    pub analysed_frames: Option<u64>,
    pub lines: BTreeMap<String, LineScore>,
}

pub fn run(mut args: Args) -> anyhow::Result<ExitCode> {
    super::init_logging("warn");
    let read = |p: &PathBuf| -> anyhow::Result<MotFile> {
        let text =
            std::fs::read_to_string(p).with_context(|| format!("cannot read {}", p.display()))?;
        parse(&text).map_err(|e| anyhow::anyhow!("{}: {e}", p.display()))
    };
    let gt = read(&args.gt)?;
    let evaluation = match (&args.tracks, &args.video) {
        (Some(tracks), None) => {
            if !args.scene.lines.is_empty() {
                bail!("--line needs --video: line counts come from a replay");
            }
            Evaluation {
                metrics: evaluate(&gt, &read(tracks)?, args.iou),
                analysis_fps: None,
                analysed_frames: None,
                lines: BTreeMap::new(),
            }
        }
        (None, Some(video)) => {
            if args.scene.classes.is_empty() && args.scene.config.is_none() {
                args.scene.classes = vec!["person".into()];
            }
            let plan = args.scene.plan(video, false)?;
            let mut tracks = MotFile::new();
            let mut analysed = BTreeSet::new();
            let (report, scene) = execute(&plan, false, |a, _, _| {
                let frame = source_frame(a);
                analysed.insert(frame);
                let boxes: Vec<MotBox> = a
                    .update
                    .tracks
                    .iter()
                    .filter(|t| t.matched)
                    .map(|t| MotBox {
                        id: t.id,
                        bbox: t.bbox,
                    })
                    .collect();
                tracks.insert(frame, boxes);
                Ok(())
            })?;
            let scored_gt = only_frames(&gt, &analysed);
            let mut lines = BTreeMap::new();
            for line in &scene.lines {
                // The truth is every ground-truth frame: what really crossed.
                let (truth_in, truth_out) = crossings(&gt, &line.config.points);
                let total = |d| {
                    line.counts()
                        .get(&d)
                        .map_or(0, |m: &BTreeMap<u16, u64>| m.values().sum::<u64>())
                };
                let counted_in = total(pantau_analytics::rules::Direction::In);
                let counted_out = total(pantau_analytics::rules::Direction::Out);
                let truth = truth_in + truth_out;
                let off = counted_in.abs_diff(truth_in) + counted_out.abs_diff(truth_out);
                lines.insert(
                    line.name().to_string(),
                    LineScore {
                        truth_in,
                        truth_out,
                        counted_in,
                        counted_out,
                        error: if truth == 0 {
                            off as f64
                        } else {
                            off as f64 / truth as f64
                        },
                    },
                );
            }
            Evaluation {
                metrics: evaluate(&scored_gt, &tracks, args.iou),
                analysis_fps: report.analysis_fps,
                analysed_frames: Some(report.frames),
                lines,
            }
        }
        _ => bail!("give either --tracks FILE (a track file to score) or --video FILE (replay and score it)"),
    };
    if args.json {
        println!("{}", serde_json::to_string(&evaluation)?);
    } else {
        let m = &evaluation.metrics;
        if let Some(frames) = evaluation.analysed_frames {
            let rate = evaluation
                .analysis_fps
                .map_or("every frame".to_string(), |f| format!("{f} fps"));
            println!("replay at {rate}: {frames} frames analysed and scored");
        }
        println!(
            "MOTA {:.3}  IDF1 {:.3}  ID switches {}  precision {:.3}  recall {:.3}  (GT boxes {}, TP {}, FP {}, FN {}; GT ids {}, track ids {})",
            m.mota, m.idf1, m.id_switches, m.precision, m.recall, m.gt, m.tp, m.fp, m.fn_, m.gt_ids, m.track_ids
        );
        for (name, l) in &evaluation.lines {
            println!(
                "line {name}: counted in {} out {}, ground truth in {} out {}, error {:.1}%",
                l.counted_in,
                l.counted_out,
                l.truth_in,
                l.truth_out,
                l.error * 100.0
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
