//! One inference service shared by several cameras serves them fairly: two cameras that both
//! want more than their share get about the same number of frames analysed. One camera keeps
//! two workers busy (its next frame is detected while this one is tracked) and its tracks stay
//! exactly what one frame at a time gives.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

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

/// One analysed frame: its index, the confirmed tracks (id and box), and when it was received
/// and its detections came back.
struct Seen {
    index: u64,
    tracks: Vec<(u64, [i32; 4])>,
    received_at: SystemTime,
    detected_at: SystemTime,
}

/// Every frame of TUD-Stadtmitte through `analyse` with a service of `workers` detectors.
async fn replay_tud(workers: usize) -> Vec<Seen> {
    let config = DetectorConfig {
        threads: 1,
        workers,
        ..DetectorConfig::default()
    };
    let detectors = Detector::load_workers(&config, &repo(), TrackerConfig::default().low_score)
        .expect("model loads");
    let (service, _guard) = InferenceService::start_pool(detectors);
    let ingest = Ingest::new().expect("gstreamer");
    let text = format!(
        "[[cameras]]\nid = \"tud\"\nurl = \"file://{}\"\nloop = false\nrealtime = false\nanalysis_fps = 120\n",
        repo().join("demo/videos/stadtmitte.mp4").display()
    );
    let valid = Config::parse(&text)
        .expect("parses")
        .validate(Path::new("/"), &|_| None)
        .expect("valid");
    let frames = ingest.add(valid.cameras[0].clone()).expect("add");
    let scene = Scene::new(&[], &[], &TrackerConfig::default());
    let mut seen = Vec::new();
    analyse(frames, service, scene, None, |a: Analysed<'_>| {
        let tracks = a
            .update
            .tracks
            .iter()
            .map(|t| {
                let b = &t.bbox;
                (t.id, [b.x1, b.y1, b.x2, b.y2].map(|v| v.round() as i32))
            })
            .collect();
        seen.push(Seen {
            index: a.frame.source_index.unwrap_or(a.frame.seq),
            tracks,
            received_at: a.received_at,
            detected_at: a.detected_at,
        });
        Ok::<(), DetectError>(())
    })
    .await
    .expect("replays");
    ingest.shutdown().await;
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cameras_next_frame_is_detected_while_this_one_is_tracked_and_nothing_changes() {
    let one = replay_tud(1).await;
    let two = replay_tud(2).await;
    assert_eq!(one.len(), 179, "every frame of the clip");
    // The same frames, in order, with the same tracks: detecting ahead changes nothing the
    // tracker sees.
    let strip = |v: &[Seen]| {
        v.iter()
            .map(|f| (f.index, f.tracks.clone()))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        strip(&one),
        strip(&two),
        "tracks differ with two frames in flight"
    );
    let indices: Vec<u64> = two.iter().map(|f| f.index).collect();
    assert!(
        indices.windows(2).all(|w| w[0] < w[1]),
        "frames out of order: {indices:?}"
    );
    // Decoding is far quicker than detection here, so the next frame is nearly always waiting:
    // with two workers it is taken (and sent to the detector) before this one's answer is
    // back, for every frame, or every other one when both answers come back together. With
    // one frame at a time that never happens.
    let ahead = |v: &[Seen]| {
        v.windows(2)
            .filter(|w| w[1].received_at < w[0].detected_at)
            .count()
    };
    assert_eq!(ahead(&one), 0, "one worker: one frame at a time");
    let overlapped = ahead(&two);
    assert!(
        overlapped * 4 > two.len(),
        "only {overlapped} of {} frames were taken while the one before was detected",
        two.len()
    );
}
