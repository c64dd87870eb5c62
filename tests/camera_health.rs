//! Camera health end to end (issue 17): cameras served by the test's own RTSP server, whose
//! picture goes wrong after the reference period and recovers, each raise their condition
//! (`new`) and clear it (`end`), and nothing else; a healthy camera beside them raises nothing.
//! The frames go from `pantau_ingest::Ingest` into a `HealthMonitor` exactly as the node feeds
//! it (analysis image, capture time, sequence number), with the monitor's times shortened.
//!
//! Each troubled camera plays a file made here with GStreamer from the bundled traffic clip
//! (a 320x180 window of it at its own 24 fps, H.264 in Matroska, served in a loop): 7 s of the
//! clip, 9 s of trouble, then the clip again. The reference is learned from the first 3 s.
//!
//! | camera      | the trouble                                                          | condition      |
//! |-------------|----------------------------------------------------------------------|----------------|
//! | `black`     | `videotestsrc pattern=black`                                         | `blackout`     |
//! | `dim`       | the clip through `videobalance` (dark and flat)                      | `low_light`    |
//! | `blurred`   | the clip scaled down to 32x18 and back up                            | `defocus`      |
//! | `frozen`    | `imagefreeze` of one frame                                           | `frozen`       |
//! | `shifted`   | the window moved by 80x45 pixels: the camera turned                  | `view_changed` |
//! | `throttled` | the clip through `videorate` at 1 fps (the camera is asked for 5)    | `fps_drop`     |
//!
//! The healthy camera plays `demo/videos/traffic.mp4` as it is (busy traffic: a test that the
//! view is not judged on passing vehicles).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, UNIX_EPOCH};

use gstreamer as gst;
use pantau_analytics::health::{
    Condition, HealthChange, HealthMonitor, HealthSettings, Hold, Transition,
};
use pantau_analytics::ImageRef;
use pantau_config::CameraSettings;
use pantau_ingest::serve::{Mount, RtspServer, ServeOptions};
use pantau_ingest::{FrameReceiver, Ingest};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

#[path = "support/media.rs"]
mod media;
use media::{missing, run_to_end};

/// A test camera with short timeouts, analysed at 5 fps and 320 pixels wide.
fn camera(id: &str, url: &str) -> CameraSettings {
    media::camera(
        "stall_timeout_s = 3.0\nconnect_timeout_s = 5.0\n\
         analysis_fps = 5.0\nanalysis_width = 320",
        id,
        url,
    )
}

/// Seconds of the clip before the trouble, of trouble, and of the clip after it.
const BEFORE_S: u32 = 7;
const TROUBLE_S: u32 = 9;
const AFTER_S: u32 = 10;
/// Frames a second of the material (the clip's own rate, near enough; no `videorate` on the
/// clip, which repeats frames where a segment ends).
const FPS: u32 = 24;

/// The clip as raw video at the material's size and rate, `seconds` long.
fn clip(seconds: u32) -> String {
    pan(seconds, "right=80 bottom=45")
}

/// The clip at 400x225 seen through a 320x180 window (`crop`: what `videocrop` cuts off).
fn pan(seconds: u32, crop: &str) -> String {
    format!(
        "filesrc location=\"{}\" ! decodebin ! videoconvert ! videoscale ! \
         video/x-raw,format=I420,width=400,height=225,pixel-aspect-ratio=1/1 ! \
         videocrop {crop} ! identity eos-after={}",
        repo().join("demo/videos/traffic.mp4").display(),
        seconds * FPS
    )
}

/// Writes `<dir>/<name>.mkv`: the clip, then `trouble` (raw I420 320x180 video), then the clip.
fn make(dir: &Path, name: &str, trouble: &str) -> PathBuf {
    let out = dir.join(format!("{name}.mkv"));
    // Every segment says "variable rate", so the throttled one can change the rate without
    // a caps change that Matroska refuses.
    let variable = "capssetter join=true replace=false caps=video/x-raw,framerate=0/1";
    run_to_end(&format!(
        "concat name=c ! x264enc speed-preset=ultrafast tune=zerolatency key-int-max={FPS} \
           threads=1 ! h264parse ! matroskamux ! filesink location=\"{}\" \
         {} ! {variable} ! c. \
         {trouble} ! {variable} ! c. \
         {} ! {variable} ! c.",
        out.display(),
        clip(BEFORE_S),
        clip(AFTER_S),
    ));
    out
}

/// The troubled cameras: name, what goes wrong, the condition it must raise.
fn troubles() -> Vec<(&'static str, String, Condition)> {
    let frames = TROUBLE_S * FPS;
    let raw = "video/x-raw,format=I420,width=320,height=180,pixel-aspect-ratio=1/1";
    vec![
        (
            "black",
            format!("videotestsrc pattern=black num-buffers={frames} ! {raw},framerate={FPS}/1"),
            Condition::Blackout,
        ),
        (
            "dim",
            format!(
                "{} ! videobalance contrast=0.5 ! videoconvert ! {raw}",
                clip(TROUBLE_S)
            ),
            Condition::LowLight,
        ),
        (
            "blurred",
            format!(
                "{} ! videoscale ! video/x-raw,width=32,height=18 ! videoscale ! {raw}",
                clip(TROUBLE_S)
            ),
            Condition::Defocus,
        ),
        (
            "frozen",
            format!(
                "{} ! imagefreeze num-buffers={frames} ! video/x-raw,framerate={FPS}/1",
                clip(1)
            ),
            Condition::Frozen,
        ),
        (
            "shifted",
            pan(TROUBLE_S, "left=80 top=45"),
            Condition::ViewChanged,
        ),
        (
            "throttled",
            format!(
                "{} ! videorate ! video/x-raw,framerate=1/1",
                clip(TROUBLE_S)
            ),
            Condition::FpsDrop,
        ),
    ]
}

/// The node's monitor with times short enough for a test: the reference from the first 3 s,
/// 2 s to start or clear a condition, the rate over 2 s against the 5 fps asked for.
fn settings() -> HealthSettings {
    let hold = Hold::new(2.0, 2.0);
    HealthSettings {
        reference_s: 3.0,
        fps_window_s: 2.0,
        expected_fps: Some(5.0),
        blackout: hold,
        low_light: hold,
        defocus: hold,
        frozen: hold,
        view_changed: hold,
        fps_drop: hold,
        ..HealthSettings::default()
    }
}

/// What one camera's monitor said, with times in seconds since its first frame.
#[derive(Debug, Default)]
struct Watched {
    frames: u64,
    changes: Vec<(f64, HealthChange)>,
}

/// Feeds a camera's frames to its monitor the way the node does, until the camera stops.
fn watch(mut rx: FrameReceiver) -> tokio::task::JoinHandle<Watched> {
    tokio::spawn(async move {
        let mut monitor = HealthMonitor::new(settings());
        let mut watched = Watched::default();
        let mut first = None;
        while let Some(frame) = rx.recv().await {
            let at_s = frame
                .capture_time
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default()
                .as_secs_f64();
            let t0 = *first.get_or_insert(at_s);
            watched.frames += 1;
            for c in monitor.frame(ImageRef::from(&frame), at_s, frame.seq) {
                watched.changes.push((c.at_s - t0, c));
            }
        }
        watched
    })
}

/// How long the cameras run: the trouble, its end and a margin.
const RUN_FOR: Duration = Duration::from_secs((BEFORE_S + TROUBLE_S + 8) as u64);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_troubled_picture_raises_its_condition_and_clears_it() {
    let started = Instant::now();
    gst::init().expect("gstreamer");
    let absent = missing(&[
        "x264enc",
        "matroskamux",
        "concat",
        "capssetter",
        "imagefreeze",
        "videobalance",
        "videocrop",
    ]);
    assert!(
        absent.is_empty(),
        "GStreamer elements missing: {absent:?}; run `make setup`"
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let troubles = troubles();
    let mut mounts = vec![Mount::for_file(&repo().join("demo/videos/traffic.mp4"))];
    for (name, trouble, _) in &troubles {
        mounts.push(Mount::for_file(&make(dir.path(), name, trouble)));
    }
    let made = started.elapsed();
    let server = RtspServer::start(ServeOptions {
        address: "127.0.0.1".into(),
        port: 0,
        mounts,
        credentials: None,
    })
    .expect("RTSP server starts");

    let ingest = Ingest::new().expect("gstreamer");
    let mut tasks = BTreeMap::new();
    let mut ids = vec!["healthy"];
    ids.extend(troubles.iter().map(|(name, ..)| *name));
    for id in &ids {
        let path = match *id {
            "healthy" => "/traffic".to_string(),
            other => format!("/{other}"),
        };
        let rx = ingest
            .add(camera(id, &server.url(&path)))
            .expect("add camera");
        tasks.insert(*id, watch(rx));
    }
    tokio::time::sleep(RUN_FOR).await;
    ingest.shutdown().await;
    let mut watched = BTreeMap::new();
    for (id, task) in tasks {
        watched.insert(id, task.await.expect("watch task"));
    }
    drop(server);

    let said = |w: &Watched| -> Vec<(Condition, Transition)> {
        w.changes
            .iter()
            .map(|(_, c)| (c.condition, c.transition))
            .collect()
    };
    for id in &ids {
        let w = &watched[id];
        eprintln!("{id}: {} frames", w.frames);
        for (t, c) in &w.changes {
            eprintln!(
                "  {t:5.1} s {} {:?} {:?}",
                c.condition.as_str(),
                c.transition,
                c.figures
            );
        }
    }

    // Everything that is wrong, not just the first thing.
    let mut failures = Vec::new();
    let healthy = &watched["healthy"];
    if !healthy.changes.is_empty() || healthy.frames < 50 {
        failures.push(format!(
            "healthy camera: {} frames, raised {:?}",
            healthy.frames,
            said(healthy)
        ));
    }
    for (name, _, condition) in &troubles {
        let w = &watched[name];
        let wanted = vec![(*condition, Transition::New), (*condition, Transition::End)];
        // Where a file switches between clip and trouble the server may send a few frames
        // late when the machine is busy (seen in CI: 2 fps for 3.6 s right after the frozen
        // segment began, and right after dim and blurred segments ended). That is a real,
        // brief drop in arrivals, so one short fps_drop from the start of the trouble to a few
        // seconds past its end is allowed beside the condition wanted (its end may come after
        // the condition's); nothing else is.
        let (begin, end) = (f64::from(BEFORE_S), f64::from(BEFORE_S + TROUBLE_S));
        // The first round of the looped file only: the changes up to the end of the
        // condition wanted (a file that loops sooner brings its trouble back, rightly raised
        // again, and not what this checks).
        let first_round = |w: &Watched| -> Vec<(f64, HealthChange)> {
            let cut = w
                .changes
                .iter()
                .position(|(_, c)| c.condition == *condition && c.transition == Transition::End)
                .map_or(w.changes.len(), |i| i + 1);
            w.changes[..cut].to_vec()
        };
        let brief_drop = |w: &Watched| -> Vec<(Condition, Transition)> {
            let changes = first_round(w);
            let drops: Vec<f64> = changes
                .iter()
                .filter(|(_, c)| c.condition == Condition::FpsDrop)
                .map(|(t, _)| *t)
                .collect();
            let brief = *condition != Condition::FpsDrop
                && (1..=2).contains(&drops.len())
                && drops.iter().all(|t| (begin..end + 6.0).contains(t))
                && drops.last().unwrap_or(&begin) - drops[0] < 6.0;
            changes
                .iter()
                .filter(|(_, c)| !(brief && c.condition == Condition::FpsDrop))
                .map(|(_, c)| (c.condition, c.transition))
                .collect()
        };
        if brief_drop(w) != wanted {
            failures.push(format!(
                "{name}: wanted {wanted:?}, got {:?} ({} frames)",
                said(w),
                w.frames
            ));
            continue;
        }
        // Raised after the trouble began (not during the reference) and cleared after it
        // ended; times from the first frame, which is the file's start.
        let own: Vec<f64> = w
            .changes
            .iter()
            .filter(|(_, c)| c.condition == *condition)
            .map(|(t, _)| *t)
            .collect();
        let (new_at, end_at) = (own[0], own[1]);
        if !(begin..end).contains(&new_at) || !(end..end + 8.0).contains(&end_at) {
            failures.push(format!(
                "{name}: new at {new_at:.1} s, end at {end_at:.1} s; the trouble lasts from \
                 {begin} s to {end} s"
            ));
        }
    }
    eprintln!(
        "material made in {:.1} s, whole test {:.1} s",
        made.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
