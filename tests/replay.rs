//! `pantau replay` and `pantau mot-eval` end to end: real decoding, the real model, the
//! tracker and the rules, as a user runs them.

#[path = "../benches/common/mod.rs"]
mod common;

use std::path::PathBuf;
use std::process::Command;

fn pantau() -> Command {
    Command::new(env!("CARGO_BIN_EXE_pantau"))
}

fn repo(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(path)
}

fn shared(path: &str) -> PathBuf {
    repo("../shared/assets").join(path)
}

fn json(out: &std::process::Output) -> serde_json::Value {
    assert!(
        out.status.success(),
        "pantau failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&out.stdout)))
}

#[test]
fn traffic_is_counted_in_both_directions_and_written_out() {
    let dir = tempfile::tempdir().expect("tempdir");
    let tracks = dir.path().join("tracks.txt");
    let video = dir.path().join("annotated.mp4");
    let out = pantau()
        .arg("replay")
        .arg(repo("demo/videos/traffic.mp4"))
        .args([
            "--line",
            "mid=320,0,320,360",
            "--json",
            "--classes",
            "car,truck,bus",
        ])
        .arg("--tracks-out")
        .arg(&tracks)
        .arg("--annotate")
        .arg(&video)
        .output()
        .expect("runs");
    let r = json(&out);
    assert_eq!(r["frames"], 480, "every frame of the clip: {r}");
    for stage in [
        "decode",
        "preprocess",
        "inference",
        "postprocess",
        "tracking",
        "rules",
    ] {
        assert!(r["stages_ms"][stage].is_number(), "stage {stage} in {r}");
    }
    assert!(r["stages_ms"]["inference"].as_f64().unwrap_or(0.0) > 0.5);
    // Cars pass the middle both ways (reference run: 8 right-to-left, 12+2 left-to-right).
    let count = |dir: &str| -> u64 {
        r["lines"]["mid"][dir]
            .as_object()
            .map(|m| m.values().filter_map(|v| v.as_u64()).sum())
            .unwrap_or(0)
    };
    assert!((5..=12).contains(&count("in")), "in: {r}");
    assert!((8..=18).contains(&count("out")), "out: {r}");
    assert!(r["lines"]["mid"]["in"]["car"].as_u64().unwrap_or(0) >= 5);

    // MOTChallenge CSV: frame,id,left,top,width,height,conf,-1,-1,-1 with 1-based frames.
    let text = std::fs::read_to_string(&tracks).expect("tracks file");
    let rows: Vec<Vec<&str>> = text.lines().map(|l| l.split(',').collect()).collect();
    assert!(rows.len() > 500, "{} rows", rows.len());
    for row in &rows {
        assert_eq!(row.len(), 10);
        let frame: u64 = row[0].parse().expect("frame");
        assert!((1..=480).contains(&frame));
        assert_eq!(&row[7..], &["-1", "-1", "-1"]);
    }

    // The annotated video decodes with the analysed frames (the MP4 writer currently loses at
    // most one, the last; noted in the README).
    let frames = decoded_frames(&video);
    assert!(
        (479..=480).contains(&frames),
        "annotated video frames: {frames}"
    );
}

fn decoded_frames(path: &std::path::Path) -> u64 {
    common::count_to_eos(&format!(
        "filesrc location=\"{}\" ! decodebin ! fakesink name=sink sync=false",
        path.display()
    ))
    .0
}

/// Tracking quality on the MOT ground truth stays where it was measured (README): a
/// regression guard with a margin, not a tuning target.
#[test]
fn tracking_quality_on_pets09_and_tud_stadtmitte() {
    let cases = [
        ("video/vtest.avi", "video/PETS09-S2L1/gt/gt.txt", 0.72, 0.60),
        (
            "video/TUD-Stadtmitte/TUD-Stadtmitte.mp4",
            "video/TUD-Stadtmitte/gt/gt.txt",
            0.70,
            0.55,
        ),
    ];
    for (video, gt, min_mota, min_idf1) in cases {
        let dir = tempfile::tempdir().expect("tempdir");
        let tracks = dir.path().join("tracks.txt");
        let out = pantau()
            .arg("replay")
            .arg(shared(video))
            .args(["--classes", "person", "--json", "--tracks-out"])
            .arg(&tracks)
            .output()
            .expect("runs");
        json(&out);
        let out = pantau()
            .args(["mot-eval", "--json", "--gt"])
            .arg(shared(gt))
            .arg("--tracks")
            .arg(&tracks)
            .output()
            .expect("runs");
        let m = json(&out);
        let (mota, idf1) = (
            m["mota"].as_f64().unwrap_or(0.0),
            m["idf1"].as_f64().unwrap_or(0.0),
        );
        eprintln!("{video}: {m}");
        assert!(mota >= min_mota, "{video}: MOTA {mota} < {min_mota}: {m}");
        assert!(idf1 >= min_idf1, "{video}: IDF1 {idf1} < {min_idf1}: {m}");
    }
}

#[test]
fn bad_replay_arguments_are_explained() {
    let out = pantau()
        .args(["replay", "/no/such/video.mp4"])
        .output()
        .expect("runs");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read /no/such/video.mp4"));

    let out = pantau()
        .arg("replay")
        .arg(repo("demo/videos/traffic.mp4"))
        .args(["--line", "mid=320,0"])
        .output()
        .expect("runs");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("replay.lines[0].points: a line needs at least two points"),
        "{err}"
    );

    let out = pantau()
        .arg("replay")
        .arg(repo("demo/videos/traffic.mp4"))
        .args(["--classes", "tuk-tuk"])
        .output()
        .expect("runs");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("tuk-tuk") && err.contains("labels"), "{err}");
}
