//! Motion gating through the real analysis loop (ingest, the shared detector, the tracker): a
//! camera watching a still picture runs the detector only at the refresh interval, one
//! watching motion runs it on nearly every frame, and both analyse every frame they are given.

use std::path::{Path, PathBuf};
use std::time::Duration;

use pantau_analytics::camera::{analyse, Analysed};
use pantau_analytics::detect::onnx::{DetectError, Detector};
use pantau_analytics::detect::service::InferenceService;
use pantau_analytics::motion::MotionCheck;
use pantau_analytics::scene::Scene;
use pantau_config::{Config, DetectorConfig, MotionGate, TrackerConfig};
use pantau_ingest::Ingest;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Analyses `url` at 5 fps for `seconds` with a 2 s motion gate; returns (frames, detector runs).
async fn gated(service: &InferenceService, ingest: &Ingest, id: &str, url: &str) -> (u64, u64) {
    let text = format!("[[cameras]]\nid = \"{id}\"\nurl = \"{url}\"\nanalysis_fps = 5.0\n");
    let camera = Config::parse(&text)
        .expect("parses")
        .validate(Path::new("/"), &|_| None)
        .expect("valid")
        .cameras
        .remove(0);
    let frames = ingest.add(camera).expect("add");
    let gate = MotionCheck::new(MotionGate {
        refresh: Duration::from_secs(2),
        threshold: 8,
    });
    let scene = Scene::new(&[], &[], &TrackerConfig::default());
    let (mut seen, mut runs) = (0u64, 0u64);
    let analysis = analyse(
        frames,
        service.clone(),
        scene,
        Some(gate),
        |a: Analysed<'_>| {
            seen += 1;
            runs += u64::from(a.inferred);
            if a.inferred {
                assert!(a.timings.inference_ms > 0.0);
            }
            Ok::<(), DetectError>(())
        },
    );
    // 6 s of the live test pattern, then the camera is removed and the analysis ends.
    let stop = async {
        tokio::time::sleep(Duration::from_secs(6)).await;
        ingest.remove(id).await.expect("removed");
    };
    let (result, ()) = tokio::join!(analysis, stop);
    result.expect("analysis runs");
    (seen, runs)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_still_picture_skips_the_detector_and_motion_runs_it() {
    let detector = Detector::load(
        &DetectorConfig::default(),
        &repo(),
        TrackerConfig::default().low_score,
    )
    .expect("model loads");
    let (service, _guard) = InferenceService::start(detector);
    let ingest = Ingest::new().expect("gstreamer");
    let (w, h) = service.input_size();
    ingest.set_analysis_fit(w, h);

    let (still_frames, still_runs) = gated(
        &service,
        &ingest,
        "still",
        "test://gradient?width=640&height=360&fps=25",
    )
    .await;
    let (moving_frames, moving_runs) = gated(
        &service,
        &ingest,
        "moving",
        "test://ball?width=640&height=360&fps=25",
    )
    .await;
    assert!(still_frames >= 20, "{still_frames} frames in 6 s at 5 fps");
    // A gradient never changes: the first frame, then once every 2 s. (Colour bars would
    // not do: GStreamer's SMPTE pattern has a patch of moving snow.)
    assert!(
        (2..=5).contains(&still_runs),
        "{still_runs} detector runs on {still_frames} frames of a still picture"
    );
    assert!(moving_frames >= 20, "{moving_frames} frames");
    assert!(
        moving_runs as f64 >= 0.8 * moving_frames as f64,
        "{moving_runs} detector runs on {moving_frames} frames of a moving ball"
    );
    ingest.shutdown().await;
}
