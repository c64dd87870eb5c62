//! Fair degradation through a running node: cameras that together ask for more analysis than
//! the machine has all get the same lowered rate, say so in their status, and keep getting
//! frames analysed; none starves.

use std::time::{Duration, Instant};

use pantau_node::{Node, NodeConfig};

fn repo(path: &str) -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(path)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_overloaded_node_lowers_every_camera_evenly() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Four moving test patterns analysed at 30 fps each: 120 detections a second, far more
    // than two cores give (about 60 at 17 core-ms each, before decoding).
    let mut text = format!(
        r#"
[node]
name = "overload"
site = "kota"

[ingest]
min_analysis_fps = 1.0

[mqtt]
host = "127.0.0.1"
port = 1883
prefix = "pantau-test-overload-{pid}"

[outbox]
path = "var/outbox.redb"

[snapshots]
enabled = false

[api]
enabled = false

[detector]
model = "{model}"
"#,
        model = repo("models/yolox_nano.toml").display(),
        pid = std::process::id(),
    );
    for id in ["a", "b", "c", "d"] {
        text.push_str(&format!(
            "[[cameras]]\nid = \"{id}\"\nurl = \"test://ball?width=640&height=360&fps=30\"\nanalysis_fps = 30\n"
        ));
    }
    let valid = pantau_config::Config::parse(&text)
        .expect("parses")
        .validate(dir.path(), &|v| std::env::var(v).ok())
        .unwrap_or_else(|e| panic!("valid config: {e}"));
    let node = Node::start(
        NodeConfig {
            valid,
            base: dir.path().to_path_buf(),
        },
        None,
    )
    .await
    .expect("node starts");

    // The governor looks every 2 s and lowers by at most a quarter a step.
    let started = Instant::now();
    let degraded = loop {
        let s = node.ingest().statuses();
        if s.len() == 4 && s.iter().all(|c| c.degraded) {
            break s;
        }
        assert!(
            started.elapsed() < Duration::from_secs(40),
            "not every camera degraded: {:?}",
            s.iter()
                .map(|c| (&c.id, c.degraded, c.analysis_fps_now))
                .collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    // One factor for all: the same lowered rate everywhere, and never below the floor.
    let rate = degraded[0].analysis_fps_now;
    assert!((1.0..30.0).contains(&rate), "{rate}");
    for c in &degraded {
        assert_eq!(c.analysis_fps_now, rate, "{}", c.id);
        assert_eq!(c.analysis_fps, 30.0);
    }

    // Let it settle, then every camera gets its share of analysis: none starves.
    tokio::time::sleep(Duration::from_secs(6)).await;
    let before = node.ingest().statuses();
    tokio::time::sleep(Duration::from_secs(6)).await;
    let after = node.ingest().statuses();
    let analysed: Vec<u64> = after
        .iter()
        .zip(&before)
        .map(|(a, b)| a.frames_analysed - b.frames_analysed)
        .collect();
    let (lo, hi) = (
        *analysed.iter().min().expect("cameras"),
        *analysed.iter().max().expect("cameras"),
    );
    assert!(
        lo >= 6,
        "a camera got {lo} frames analysed in 6 s: {analysed:?}"
    );
    assert!(
        lo as f64 >= 0.6 * hi as f64,
        "uneven shares: {analysed:?} frames in 6 s"
    );
    let stopped = node.stop().await;
    for c in &stopped.cameras {
        // Every decoded frame is accounted for: analysed, skipped by the gate, or dropped.
        let accounted = c.frames_analysed + c.frames_skipped + c.frames_dropped;
        assert!(
            c.frames_decoded.abs_diff(accounted) <= 2,
            "{}: decoded {} vs analysed {} + skipped {} + dropped {}",
            c.id,
            c.frames_decoded,
            c.frames_analysed,
            c.frames_skipped,
            c.frames_dropped
        );
    }
}
