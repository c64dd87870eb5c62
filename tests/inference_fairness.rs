//! One inference service shared by several cameras serves them fairly: two cameras that both
//! want more than their share get about the same number of frames analysed.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use pantau_analytics::camera::{analyse, Analysed};
use pantau_analytics::detect::onnx::{DetectError, Detector};
use pantau_analytics::detect::service::InferenceService;
use pantau_analytics::scene::Scene;
use pantau_config::{Config, DetectorConfig, TrackerConfig};
use pantau_ingest::Ingest;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_saturating_cameras_share_the_detector_evenly() {
    let detector = Detector::load(
        &DetectorConfig {
            threads: 1,
            ..DetectorConfig::default()
        },
        &repo(),
        TrackerConfig::default().low_score,
    )
    .expect("model loads");
    let (service, _guard) = InferenceService::start(detector);
    let ingest = Ingest::new().expect("gstreamer");
    let mut counters = Vec::new();
    let mut tasks = Vec::new();
    // Files decoded as fast as possible: each camera alone would use the detector fully.
    for (id, clip) in [
        ("a", "demo/videos/traffic.mp4"),
        ("b", "demo/videos/vtest.avi"),
    ] {
        let text = format!(
            "[[cameras]]\nid = \"{id}\"\nurl = \"file://{}\"\nloop = true\nrealtime = false\nanalysis_fps = 120\n",
            repo().join(clip).display()
        );
        let valid = Config::parse(&text)
            .expect("parses")
            .validate(Path::new("/"), &|_| None)
            .expect("valid");
        let frames = ingest.add(valid.cameras[0].clone()).expect("add");
        let n = Arc::new(AtomicU64::new(0));
        counters.push(n.clone());
        let scene = Scene::new(&[], &[], &TrackerConfig::default());
        tasks.push(tokio::spawn(analyse(
            frames,
            service.clone(),
            scene,
            None,
            move |_: Analysed<'_>| {
                n.fetch_add(1, Ordering::Relaxed);
                Ok::<(), DetectError>(())
            },
        )));
    }
    // Wait for a fixed amount of work rather than a fixed time: a loaded machine is slower, not
    // less fair.
    let count = |i: usize| counters[i].load(Ordering::Relaxed);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    while count(0) + count(1) < 120 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "only {} frames analysed in 90 s",
            count(0) + count(1)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (a, b) = (count(0), count(1));
    ingest.shutdown().await;
    for t in tasks {
        let _ = t.await;
    }
    let ratio = a.min(b) as f64 / a.max(b) as f64;
    assert!(ratio > 0.85, "uneven service: a {a}, b {b}");
}
