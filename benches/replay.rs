//! Replay throughput per clip next to its lower bound, measured in the same run.
//!
//! Bound: one frame's bare decode (decode + scale/convert to the analysis size in a plain
//! GStreamer pipeline) plus one bare inference (the detector on one frame of the clip,
//! letterbox to NMS), done back to back: `1 / (t_decode + t_inference)` frames per second.
//! Replay runs the full path as `pantau replay` does (ingest, the inference service with
//! `detector.workers` sessions, tracker, rules) and may beat the bound: decoding overlaps
//! inference, and a camera's next frame is detected while this one is tracked
//! (`camera::frames_in_flight`). The same replay with one worker (one frame at a time) is
//! printed beside it.
//!
//! Run: `cargo bench --bench replay` (or `make bench`). ORT_DYLIB_PATH is set by the Makefile.

mod common;

use std::path::Path;
use std::time::Instant;

use gstreamer as gst;
use pantau_analytics::camera::{analyse, frames_in_flight, Analysed};
use pantau_analytics::detect::onnx::{DetectError, Detector};
use pantau_analytics::detect::service::InferenceService;
use pantau_analytics::detect::{DetectTimings, ImageRef};
use pantau_analytics::scene::Scene;
use pantau_config::{DetectorConfig, LineConfig, TrackerConfig};
use pantau_ingest::Ingest;

/// The analysis width a live camera gets by default.
const WIDTH: u32 = 640;
const INFER_RUNS: usize = 40;

/// Seconds per frame to decode and convert to the analysis size.
fn bare_decode(clip: &Path) -> f64 {
    let (frames, secs) = common::count_to_eos(&format!(
        "filesrc location=\"{}\" ! decodebin ! videoconvertscale ! \
         video/x-raw,format=BGR,width={WIDTH},pixel-aspect-ratio=1/1 ! fakesink name=sink sync=false",
        clip.display()
    ));
    secs / frames.max(1) as f64
}

/// Seconds per inference on the clip's first analysis frame, and the step breakdown.
fn bare_inference(
    rt: &tokio::runtime::Runtime,
    detector: &mut Detector,
    clip: &Path,
) -> (f64, DetectTimings) {
    let (data, w, h, stride) = rt.block_on(async {
        let ingest = Ingest::new().expect("gstreamer");
        let mut rx = ingest.add(common::file_camera(clip, WIDTH)).expect("add");
        let f = rx.recv().await.expect("a frame");
        let out = (f.data().to_vec(), f.width, f.height, f.stride);
        drop(f);
        drop(rx);
        ingest.shutdown().await;
        out
    });
    let img = ImageRef {
        data: &data,
        width: w,
        height: h,
        stride,
    };
    detector.detect(img).expect("warm-up");
    let mut sum = DetectTimings::default();
    let start = Instant::now();
    for _ in 0..INFER_RUNS {
        let (_, t) = detector.detect(img).expect("detects");
        sum.preprocess_ms += t.preprocess_ms / INFER_RUNS as f64;
        sum.inference_ms += t.inference_ms / INFER_RUNS as f64;
        sum.postprocess_ms += t.postprocess_ms / INFER_RUNS as f64;
    }
    (start.elapsed().as_secs_f64() / INFER_RUNS as f64, sum)
}

/// Frames per second of the full replay path.
fn replay(rt: &tokio::runtime::Runtime, clip: &Path, detectors: Vec<Detector>) -> (u64, f64) {
    rt.block_on(async {
        let (service, _guard) = InferenceService::start_pool(detectors);
        let ingest = Ingest::new().expect("gstreamer");
        let line = LineConfig {
            name: "mid".into(),
            points: vec![[320.0, 0.0], [320.0, 2000.0]],
            directions: None,
            hysteresis_px: 6.0,
        };
        let scene = Scene::new(&[line], &[], &TrackerConfig::default());
        let start = Instant::now();
        let frames = ingest.add(common::file_camera(clip, WIDTH)).expect("add");
        let mut n = 0u64;
        analyse(frames, service, scene, None, |_: Analysed<'_>| {
            n += 1;
            Ok::<(), DetectError>(())
        })
        .await
        .expect("replays");
        let secs = start.elapsed().as_secs_f64();
        ingest.shutdown().await;
        (n, secs)
    })
}

fn main() {
    gst::init().expect("gstreamer");
    let rt = common::runtime();
    let config = DetectorConfig::default();
    let load = || {
        Detector::load(&config, &common::root(), TrackerConfig::default().low_score)
            .expect("model loads (run `make setup`)")
    };
    let mut detector = load();
    let workers = || {
        Detector::load_workers(&config, &common::root(), TrackerConfig::default().low_score)
            .expect("model loads (run `make setup`)")
    };
    println!(
        "replay vs lower bound (bare decode + bare inference per frame), {WIDTH} px analysis, {} inference thread(s); replay with {} detector worker(s), up to {} frames in flight\n",
        config.threads,
        config.worker_count(),
        frames_in_flight(config.worker_count())
    );
    println!(
        "{:<24} {:>6} {:>9} {:>9} {:>9} {:>10} {:>10} {:>7} {:>9} {:>7}   per-frame ms: pre / infer / post",
        "clip", "frames", "dec ms", "inf ms", "bound fps", "replay fps", "replay s", "ratio", "1-at-once", "ratio"
    );
    let clips = common::selected_clips();
    // GStreamer loads its plugins on the first pipeline: decode once before measuring, so the
    // first clip's bound does not carry the bench's start-up.
    if let Some((_, first)) = clips.first() {
        bare_decode(first);
    }
    for (name, clip) in clips {
        let decode = bare_decode(&clip);
        let (infer, steps) = bare_inference(&rt, &mut detector, &clip);
        let bound = 1.0 / (decode + infer);
        let (frames, secs) = replay(&rt, &clip, workers());
        let fps = frames as f64 / secs;
        // The same path with one worker, so one frame at a time: what detecting ahead gains.
        let (single_frames, single_secs) = replay(&rt, &clip, vec![load()]);
        let single = single_frames as f64 / single_secs;
        println!(
            "{name:<24} {frames:>6} {:>9.2} {:>9.2} {bound:>9.1} {fps:>10.1} {secs:>10.2} {:>7.2} {single:>9.1} {:>7.2}   {:.2} / {:.2} / {:.2}",
            decode * 1000.0,
            infer * 1000.0,
            fps / bound,
            single / bound,
            steps.preprocess_ms,
            steps.inference_ms,
            steps.postprocess_ms
        );
    }
}
