//! Ingest throughput per clip, next to bare GStreamer decoding of the same clip in the same run.
//!
//! For every clip: frames per second through pantau's ingest path (file source -> decode ->
//! analysis-rate gate -> scale/convert to BGR -> appsink -> frame queue -> consumer), against
//! (a) a bare decode (`decodebin ! fakesink`) and (b) decode plus the same scale/convert in a
//! plain pipeline. Rounds are interleaved and the median kept, so the ratios are comparable
//! even on a noisy machine.
//!
//! Run: `cargo bench --bench ingest` (or `make bench`).

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use gstreamer as gst;
use pantau_ingest::{CameraState, Ingest};

const ROUNDS: usize = 3;
const ANALYSIS_WIDTH: u32 = 640;

/// The ingest path, as fast as the file decodes, every frame to the consumer.
fn ingest(rt: &tokio::runtime::Runtime, clip: &Path) -> (u64, f64) {
    rt.block_on(async {
        let ingest = Ingest::new().expect("gstreamer");
        let start = Instant::now();
        let mut rx = ingest
            .add(common::file_camera(clip, ANALYSIS_WIDTH))
            .expect("add");
        let mut n = 0u64;
        let mut checksum = 0u64;
        loop {
            match tokio::time::timeout(Duration::from_millis(200), rx.recv()).await {
                Ok(Some(frame)) => {
                    n += 1;
                    // Touch the pixels like analysis would.
                    checksum =
                        checksum.wrapping_add(u64::from(frame.data()[frame.data().len() / 2]));
                }
                Ok(None) => break,
                Err(_) if ingest.state("bench") == Some(CameraState::Finished) => break,
                Err(_) => {}
            }
        }
        let secs = start.elapsed().as_secs_f64();
        std::hint::black_box(checksum);
        ingest.shutdown().await;
        (n, secs)
    })
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn main() {
    gst::init().expect("gstreamer");
    let rt = common::runtime();
    println!(
        "ingest throughput, median of {ROUNDS} interleaved rounds; analysis frames {ANALYSIS_WIDTH} px wide BGR\n"
    );
    println!(
        "{:<26} {:>7} {:>12} {:>14} {:>12} {:>10} {:>12}",
        "clip", "frames", "decode fps", "dec+conv fps", "ingest fps", "ingest/dec", "ingest/d+c"
    );
    for (name, clip) in common::selected_clips() {
        let location = clip.display().to_string();
        let bare =
            format!("filesrc location=\"{location}\" ! decodebin ! fakesink name=sink sync=false");
        let convert = format!(
            "filesrc location=\"{location}\" ! decodebin ! videoconvertscale ! \
             video/x-raw,format=BGR,width={ANALYSIS_WIDTH},pixel-aspect-ratio=1/1 ! fakesink name=sink sync=false"
        );
        let (mut d, mut c, mut i) = (Vec::new(), Vec::new(), Vec::new());
        let mut frames = 0;
        for _ in 0..ROUNDS {
            let (n, s) = common::count_to_eos(&bare);
            d.push(n as f64 / s);
            frames = n;
            let (n, s) = common::count_to_eos(&convert);
            c.push(n as f64 / s);
            let (n, s) = ingest(&rt, &clip);
            assert_eq!(n, frames, "{name}: ingest delivered {n} of {frames} frames");
            i.push(n as f64 / s);
        }
        let (d, c, i) = (median(d), median(c), median(i));
        println!(
            "{name:<26} {frames:>7} {d:>12.0} {c:>14.0} {i:>12.0} {:>10.2} {:>12.2}",
            i / d,
            i / c
        );
    }
}
