//! Helpers shared by the benchmarks and the end-to-end tests (included with `#[path]`).

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use gstreamer as gst;
use gstreamer::prelude::*;
use pantau_config::{CameraSettings, Config};

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The bundled clips, plus a 1280x720 30 fps H.264 one made from `traffic.mp4` (the size most
/// street cameras send), so the benchmarks need nothing outside the repository.
pub fn clips() -> Vec<PathBuf> {
    let mut clips: Vec<PathBuf> = ["traffic.mp4", "stadtmitte.mp4", "vtest.avi"]
        .iter()
        .map(|c| root().join("demo/videos").join(c))
        .collect();
    clips.push(clip_720p());
    clips
}

/// `target/bench-clips/traffic_1280x720.mp4`, made once (scaled, re-timed to 30 fps and
/// encoded with x264, as `serve-rtsp` does) and reused.
pub fn clip_720p() -> PathBuf {
    let out = root().join("target/bench-clips/traffic_1280x720.mp4");
    if out.exists() {
        return out;
    }
    std::fs::create_dir_all(out.parent().expect("a folder")).expect("bench clip folder");
    let partial = out.with_extension("part.mp4");
    let (frames, _) = count_to_eos(&format!(
        "filesrc location=\"{}\" ! decodebin ! videoconvert ! videoscale ! videorate \
         ! video/x-raw,width=1280,height=720,framerate=30/1 ! x264enc speed-preset=veryfast key-int-max=30 \
         ! h264parse ! mp4mux ! filesink name=sink location=\"{}\"",
        root().join("demo/videos/traffic.mp4").display(),
        partial.display()
    ));
    assert!(frames > 0, "no 720p bench clip was made");
    std::fs::rename(&partial, &out).expect("bench clip in place");
    out
}

/// The clips a benchmark runs: all of them, or those whose name contains the first non-flag
/// argument (`cargo bench --bench ingest -- traffic`).
pub fn selected_clips() -> Vec<(String, PathBuf)> {
    let filter: Option<String> = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    clips()
        .into_iter()
        .map(|c| {
            let name = c
                .file_name()
                .map(|n| n.to_string_lossy().to_string())
                .unwrap_or_default();
            (name, c)
        })
        .filter(|(name, _)| filter.as_ref().is_none_or(|f| name.contains(f.as_str())))
        .collect()
}

/// The runtime benchmarks use: two workers, like the machine.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

/// A file camera decoded as fast as possible, every frame handed over at `width` pixels.
pub fn file_camera(clip: &Path, width: u32) -> CameraSettings {
    let text = format!(
        "[[cameras]]\nid = \"bench\"\nurl = \"file://{}\"\nloop = false\nrealtime = false\n\
         analysis_fps = 120\nanalysis_width = {width}\n",
        clip.display()
    );
    Config::parse(&text)
        .expect("parses")
        .validate(Path::new("/"), &|_| None)
        .expect("valid")
        .cameras
        .remove(0)
}

/// Runs a gst-launch style pipeline whose sink is named `sink` until EOS; returns the buffers
/// that reached the sink and the seconds it took.
pub fn count_to_eos(description: &str) -> (u64, f64) {
    gst::init().expect("gstreamer");
    let pipeline = gst::parse::launch(description)
        .expect("valid pipeline")
        .downcast::<gst::Pipeline>()
        .expect("a pipeline");
    let count = Arc::new(AtomicU64::new(0));
    let c = count.clone();
    pipeline
        .by_name("sink")
        .and_then(|s| s.static_pad("sink"))
        .expect("a sink named 'sink'")
        .add_probe(gst::PadProbeType::BUFFER, move |_, _| {
            c.fetch_add(1, Ordering::Relaxed);
            gst::PadProbeReturn::Ok
        });
    let start = Instant::now();
    pipeline.set_state(gst::State::Playing).expect("plays");
    let bus = pipeline.bus().expect("bus");
    for msg in bus.iter_timed(gst::ClockTime::from_seconds(120)) {
        match msg.view() {
            gst::MessageView::Eos(_) => break,
            gst::MessageView::Error(e) => panic!("{description}: {}", e.error()),
            _ => {}
        }
    }
    let secs = start.elapsed().as_secs_f64();
    pipeline.set_state(gst::State::Null).expect("stops");
    (count.load(Ordering::Relaxed), secs)
}
