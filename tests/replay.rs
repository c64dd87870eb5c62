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

/// All classes counted on `line` in direction `dir` of a replay report.
fn line_total(report: &serde_json::Value, line: &str, dir: &str) -> u64 {
    report["lines"][line][dir]
        .as_object()
        .map(|m| m.values().filter_map(|v| v.as_u64()).sum())
        .unwrap_or(0)
}

/// Runs `pantau replay ARGS`, expects it to fail, returns what it said.
fn replay_fails(args: &[&str]) -> String {
    let out = pantau().arg("replay").args(args).output().expect("runs");
    assert!(!out.status.success(), "replay {args:?} should fail");
    String::from_utf8_lossy(&out.stderr).into_owned()
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
    // Cars pass the middle both ways (counted by hand: 9 right-to-left, 17 left-to-right).
    let count = |dir: &str| line_total(&r, "mid", dir);
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

/// Tracking quality on the MOT ground truth, at every frame and at 5 fps (the rate a live camera
/// is analysed), stays where it was measured (README), and so do the line counts against the
/// crossings the ground truth makes: a regression guard with a margin, not a tuning target.
#[test]
fn tracking_and_counting_quality_on_pets09_and_tud_stadtmitte() {
    // (video, ground truth, line, fps, min MOTA, min IDF1, max line-count error)
    let cases = [
        (
            "demo/videos/vtest.avi",
            "tests/data/mot/PETS09-S2L1/gt.txt",
            "walk=0,330,768,330",
            None,
            0.73,
            0.69,
            0.05,
        ),
        (
            "demo/videos/vtest.avi",
            "tests/data/mot/PETS09-S2L1/gt.txt",
            "walk=0,330,768,330",
            Some(5),
            0.74,
            0.76,
            0.10,
        ),
        (
            "demo/videos/stadtmitte.mp4",
            "tests/data/mot/TUD-Stadtmitte/gt.txt",
            "centre=320,120,320,480",
            None,
            0.75,
            0.83,
            0.05,
        ),
        (
            "demo/videos/stadtmitte.mp4",
            "tests/data/mot/TUD-Stadtmitte/gt.txt",
            "centre=320,120,320,480",
            Some(5),
            0.70,
            0.82,
            0.10,
        ),
    ];
    for (video, gt, line, fps, min_mota, min_idf1, max_error) in cases {
        let mut cmd = pantau();
        cmd.args(["mot-eval", "--json", "--gt"])
            .arg(repo(gt))
            .arg("--video")
            .arg(repo(video))
            .args(["--line", line]);
        if let Some(fps) = fps {
            cmd.args(["--analysis-fps", &fps.to_string()]);
        }
        let m = json(&cmd.output().expect("runs"));
        let (mota, idf1) = (
            m["mota"].as_f64().unwrap_or(0.0),
            m["idf1"].as_f64().unwrap_or(0.0),
        );
        eprintln!("{video} at {fps:?} fps: {m}");
        assert!(
            mota >= min_mota,
            "{video} {fps:?}: MOTA {mota} < {min_mota}: {m}"
        );
        assert!(
            idf1 >= min_idf1,
            "{video} {fps:?}: IDF1 {idf1} < {min_idf1}: {m}"
        );
        let name = line.split('=').next().expect("named");
        let error = m["lines"][name]["error"].as_f64().unwrap_or(1.0);
        assert!(
            error <= max_error,
            "{video} {fps:?}: line error {error}: {m}"
        );
        // At 5 fps only the analysed frames are scored: 1 in 2 of PETS (10 fps), 1 in 5 of TUD.
        let analysed = m["analysed_frames"].as_u64().unwrap_or(0);
        let expected = match (video.contains("vtest"), fps) {
            (true, None) => 795,
            (true, Some(_)) => 398,
            (false, None) => 179,
            (false, Some(_)) => 36,
        };
        assert!(
            analysed.abs_diff(expected) <= 1,
            "{video} {fps:?}: {analysed} frames analysed"
        );
    }
}

/// A street camera at the rate it is analysed live: `pantau replay --analysis-fps 5` of the
/// demo's traffic clip counts the vehicles crossing its line within 10% of a count made by hand
/// (tests/data/handcounts.toml), and within 5% when every frame is analysed.
#[test]
fn traffic_counts_match_the_hand_count_at_5_fps_and_every_frame() {
    let hand: toml::Value = std::fs::read_to_string(repo("tests/data/handcounts.toml"))
        .expect("hand counts")
        .parse()
        .expect("toml");
    let clip = &hand["clips"][0];
    assert_eq!(clip["file"].as_str(), Some("demo/videos/traffic.mp4"));
    let truth = |dir: &str| {
        clip["crossings"]
            .as_array()
            .expect("crossings")
            .iter()
            .filter(|c| c["direction"].as_str() == Some(dir))
            .count() as u64
    };
    let (truth_in, truth_out) = (truth("in"), truth("out"));
    assert_eq!((truth_in, truth_out), (9, 17));
    for (fps, max_error) in [(Some(5), 0.10), (None, 0.05)] {
        let mut cmd = pantau();
        cmd.arg("replay")
            .arg(repo("demo/videos/traffic.mp4"))
            .args(["--line", "mid=320,0,320,360", "--json"]);
        if let Some(fps) = fps {
            cmd.args(["--analysis-fps", &fps.to_string()]);
        }
        let r = json(&cmd.output().expect("runs"));
        let count = |dir: &str| line_total(&r, "mid", dir);
        let off = count("in").abs_diff(truth_in) + count("out").abs_diff(truth_out);
        let error = off as f64 / (truth_in + truth_out) as f64;
        assert!(error <= max_error, "{fps:?} fps: error {error}: {r}");
        // Every counted crossing is listed with its source frame.
        let listed = r["crossings"].as_array().map_or(0, Vec::len) as u64;
        assert_eq!(listed, count("in") + count("out"), "{r}");
        match fps {
            Some(fps) => {
                assert_eq!(r["analysis_fps"], serde_json::json!(fps as f64), "{r}");
                let rate = r["analysed_fps"].as_f64().unwrap_or(0.0);
                assert!((rate - 5.0).abs() < 0.25, "analysed {rate} fps: {r}");
                assert_eq!(r["source_frames"], 480, "{r}");
                let frames = r["frames"].as_u64().unwrap_or(0);
                assert!((98..=102).contains(&frames), "{frames} frames: {r}");
            }
            None => assert!(r["analysis_fps"].is_null(), "{r}"),
        }
    }
}

/// With a config camera, a replay analyses at that camera's rate with its lines, as the camera
/// would live; `--analysis-fps` overrides it.
#[test]
fn replay_takes_the_rate_and_lines_of_the_config_camera() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("pantau.toml");
    std::fs::write(
        &config,
        format!(
            "[[cameras]]\nid = \"other\"\nurl = \"test://ball\"\n\n\
             [[cameras]]\nid = \"street\"\nurl = \"file://{}\"\nanalysis_fps = 2\n\
             [[cameras.lines]]\nname = \"mid\"\npoints = [[320, 0], [320, 360]]\n",
            repo("demo/videos/traffic.mp4").display()
        ),
    )
    .expect("config");
    let run = |extra: &[&str]| {
        json(
            &pantau()
                .arg("replay")
                .arg(repo("demo/videos/traffic.mp4"))
                .arg("--config")
                .arg(&config)
                .args(["--camera", "street", "--json"])
                .args(extra)
                .output()
                .expect("runs"),
        )
    };
    let r = run(&[]);
    assert_eq!(r["analysis_fps"], serde_json::json!(2.0), "{r}");
    let frames = r["frames"].as_u64().unwrap_or(0);
    // 20 s of video at 2 fps.
    assert!((39..=42).contains(&frames), "{frames} frames: {r}");
    assert!(r["lines"]["mid"].is_object(), "the camera's line: {r}");
    let r = run(&["--analysis-fps", "10"]);
    assert_eq!(r["analysis_fps"], serde_json::json!(10.0), "{r}");
    let frames = r["frames"].as_u64().unwrap_or(0);
    assert!((198..=202).contains(&frames), "{frames} frames: {r}");
}

#[test]
fn bad_replay_arguments_are_explained() {
    let traffic = repo("demo/videos/traffic.mp4");
    let traffic = traffic.to_str().expect("utf-8 path");
    let err = replay_fails(&["/no/such/video.mp4"]);
    assert!(err.contains("cannot read /no/such/video.mp4"), "{err}");

    let err = replay_fails(&[traffic, "--line", "mid=320,0"]);
    assert!(
        err.contains("replay.lines[0].points: a line needs at least two points"),
        "{err}"
    );

    let err = replay_fails(&[traffic, "--analysis-fps", "0"]);
    assert!(
        err.contains("--analysis-fps 0: use a rate above 0"),
        "{err}"
    );

    let err = replay_fails(&[traffic, "--classes", "tuk-tuk"]);
    assert!(err.contains("tuk-tuk") && err.contains("labels"), "{err}");
}

/// The traffic clip with its two carriageways as lanes, one drawn the wrong way round on
/// purpose, and a calibration from the dashed lane markings (3.05 m dashes every 12.19 m, the
/// US standard; rows 6.8 m apart): wrong-way events come for the vehicles in the reversed lane
/// only, and speeds at the counting line are those of city traffic.
#[test]
fn traffic_rules_on_the_bundled_clip_wrong_way_and_speeds() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("pantau.toml");
    std::fs::write(
        &config,
        format!(
            "[[cameras]]\nid = \"street\"\nurl = \"file://{}\"\nanalysis_fps = 5\n\
             [[cameras.lines]]\nname = \"mid\"\npoints = [[320, 0], [320, 360]]\n\
             [cameras.calibration]\n\
             image = [[58, 218], [498, 218], [565, 40], [203, 40]]\n\
             ground = [[-9.07, 0], [6.16, 0], [10.29, 6.8], [-4.92, 6.8]]\n\
             [[cameras.lanes]]\nname = \"westbound\"\n\
             polygon = [[0, 0], [640, 0], [640, 148], [0, 148]]\ndirection = [[600, 80], [40, 80]]\n\
             # Vehicles below the centre line drive east; this arrow points west.\n\
             [[cameras.lanes]]\nname = \"eastbound-reversed\"\n\
             polygon = [[0, 152], [640, 152], [640, 360], [0, 360]]\ndirection = [[600, 250], [40, 250]]\n\
             [cameras.rules]\nwrong_way_s = 1.5\n",
            repo("demo/videos/traffic.mp4").display()
        ),
    )
    .expect("config");
    let events_out = dir.path().join("events.jsonl");
    let r = json(
        &pantau()
            .arg("replay")
            .arg(repo("demo/videos/traffic.mp4"))
            .arg("--config")
            .arg(&config)
            .args(["--camera", "street", "--json", "--events-out"])
            .arg(&events_out)
            .output()
            .expect("runs"),
    );
    let events: Vec<serde_json::Value> = std::fs::read_to_string(&events_out)
        .expect("events file")
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect();
    let wrong: Vec<&serde_json::Value> =
        events.iter().filter(|e| e["kind"] == "wrong_way").collect();
    assert!(
        wrong.iter().all(|e| e["rule"] == "eastbound-reversed"),
        "wrong way in the right lane: {wrong:?}"
    );
    // About 15 vehicles drive east in the clip; most are seen long enough to judge.
    assert!(
        (8..=20).contains(&wrong.len()),
        "{} wrong-way events: {wrong:?}",
        wrong.len()
    );
    let tracks: std::collections::HashSet<u64> = wrong
        .iter()
        .filter_map(|e| e["object"]["track_id"].as_u64())
        .collect();
    assert_eq!(tracks.len(), wrong.len(), "one event per vehicle");
    assert_eq!(
        r["events"]["wrong_way"],
        serde_json::json!(wrong.len()),
        "{r}"
    );
    // Speeds at the line: city traffic (measured here: a median near 30 km/h).
    let mut speeds: Vec<f64> = events
        .iter()
        .filter(|e| e["kind"] == "line_crossing")
        .filter_map(|e| e["details"]["speed_kmh"].as_f64())
        .collect();
    assert!(speeds.len() >= 15, "{speeds:?}");
    speeds.sort_by(f64::total_cmp);
    let median = speeds[speeds.len() / 2];
    assert!(
        (15.0..=60.0).contains(&median),
        "median {median} km/h: {speeds:?}"
    );
    assert!(
        speeds.iter().all(|s| (3.0..=120.0).contains(s)),
        "{speeds:?}"
    );
    // Every line is one event in the MQTT payload schema.
    for e in &events {
        for key in [
            "id",
            "site",
            "camera",
            "rule",
            "kind",
            "lifecycle",
            "captured_at",
            "severity",
        ] {
            assert!(e.get(key).is_some(), "{key} missing: {e}");
        }
    }
}
