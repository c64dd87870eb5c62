//! `pantau mot-eval`: tracking quality of a MOTChallenge track file against ground truth.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use pantau_analytics::mot::{evaluate, parse};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Ground truth (MOTChallenge gt.txt).
    #[arg(long)]
    gt: PathBuf,
    /// Tracks, e.g. from `pantau replay --tracks-out`.
    #[arg(long)]
    tracks: PathBuf,
    /// Minimum IoU for a match.
    #[arg(long, default_value_t = 0.5)]
    iou: f32,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let read = |p: &PathBuf| -> anyhow::Result<_> {
        let text =
            std::fs::read_to_string(p).with_context(|| format!("cannot read {}", p.display()))?;
        parse(&text).map_err(|e| anyhow::anyhow!("{}: {e}", p.display()))
    };
    let m = evaluate(&read(&args.gt)?, &read(&args.tracks)?, args.iou);
    if args.json {
        println!("{}", serde_json::to_string(&m)?);
    } else {
        println!(
            "MOTA {:.3}  IDF1 {:.3}  ID switches {}  precision {:.3}  recall {:.3}  (GT boxes {}, TP {}, FP {}, FN {}; GT ids {}, track ids {})",
            m.mota, m.idf1, m.id_switches, m.precision, m.recall, m.gt, m.tp, m.fp, m.fn_, m.gt_ids, m.track_ids
        );
    }
    Ok(ExitCode::SUCCESS)
}
