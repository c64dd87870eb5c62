//! End-to-end ingest tests: real GStreamer pipelines against a real RTSP server that the test
//! starts (and stops, to simulate an outage) in-process.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use pantau_config::{CameraSettings, Config};
use pantau_ingest::serve::{Mount, RtspServer, ServeOptions};
use pantau_ingest::{CameraState, CaptureClock, FrameReceiver, Ingest};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn traffic_clip() -> PathBuf {
    repo().join("demo/videos/traffic.mp4")
}

fn server(port: u16, files: &[&Path], credentials: Option<(&str, &str)>) -> RtspServer {
    RtspServer::start(ServeOptions {
        address: "127.0.0.1".into(),
        port,
        mounts: files.iter().map(|f| Mount::for_file(f)).collect(),
        credentials: credentials.map(|(u, p)| (u.to_string(), p.to_string())),
    })
    .expect("RTSP server starts")
}

/// Camera settings through the same parser and validation as a config file.
fn camera(id: &str, url: &str, extra: &str) -> CameraSettings {
    let text = format!(
        "[ingest]\nstall_timeout_s = 1.0\nconnect_timeout_s = 3.0\n\
         [ingest.reconnect]\ninitial_ms = 200\nmax_ms = 1000\n\
         [[cameras]]\nid = \"{id}\"\nurl = \"{url}\"\n{extra}\n"
    );
    let config = Config::parse(&text).expect("test config parses");
    let valid = config
        .validate(Path::new("/"), &|_| None)
        .expect("test config is valid");
    valid.cameras.into_iter().next().expect("one camera")
}

/// Waits until `id` reaches `state`, recording every state seen on the way.
async fn wait_for(
    ingest: &Ingest,
    id: &str,
    state: CameraState,
    within: Duration,
    seen: &mut Vec<CameraState>,
) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        let now = ingest.state(id).expect("camera exists");
        if seen.last() != Some(&now) {
            seen.push(now);
        }
        if now == state {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

/// Drains frames in the background so the queue never fills; returns their capture times.
fn drain(mut rx: FrameReceiver) -> tokio::task::JoinHandle<Vec<(SystemTime, Instant)>> {
    tokio::spawn(async move {
        let mut got = Vec::new();
        while let Some(f) = rx.recv().await {
            got.push((f.capture_time, Instant::now()));
        }
        got
    })
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rtsp_frames_arrive_with_the_right_size_rate_and_clock() {
    let srv = server(0, &[&traffic_clip()], None);
    let ingest = Ingest::new().expect("gstreamer");
    let url = srv.url("/traffic");
    let mut rx = ingest
        .add(camera(
            "cam",
            &url,
            "analysis_fps = 5.0\nanalysis_width = 320",
        ))
        .expect("add");

    let first = tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .expect("a frame within 10 s")
        .expect("stream open");
    assert_eq!(
        (first.width, first.height),
        (320, 180),
        "scaled to analysis width"
    );
    assert_eq!((first.source_width, first.source_height), (640, 360));
    assert!(first.stride >= 320 * 3);
    assert_eq!(first.data().len(), first.stride * 180);
    let distinct: std::collections::HashSet<_> = (0..180)
        .step_by(9)
        .filter_map(|y| first.pixel(160, y))
        .collect();
    assert!(
        distinct.len() > 3,
        "a real picture, not a flat colour: {distinct:?}"
    );

    // Count for 4 s: about 5 analysed fps out of about 24 decoded.
    let start = Instant::now();
    let decoded_before = ingest.status("cam").expect("status").frames_decoded;
    let mut frames = Vec::new();
    while start.elapsed() < Duration::from_secs(4) {
        if let Ok(Some(f)) = tokio::time::timeout(Duration::from_millis(500), rx.recv()).await {
            frames.push(f);
        }
    }
    let secs = start.elapsed().as_secs_f64();
    let analysed_fps = frames.len() as f64 / secs;
    let status = ingest.status("cam").expect("status");
    let decoded_fps = (status.frames_decoded - decoded_before) as f64 / secs;
    assert!(
        (4.0..=6.0).contains(&analysed_fps),
        "analysed {analysed_fps:.2} fps"
    );
    assert!(
        (20.0..=28.0).contains(&decoded_fps),
        "decoded {decoded_fps:.2} fps"
    );
    assert!(
        frames.windows(2).all(|w| w[1].seq > w[0].seq),
        "sequence increases"
    );
    assert!(frames
        .windows(2)
        .all(|w| w[1].capture_time > w[0].capture_time));
    assert_eq!(status.state, CameraState::Streaming);
    assert!(status.fps > 15.0, "measured fps {}", status.fps);

    // Capture times are close to now (same machine) and switch to the camera's RTCP clock once
    // a sender report has arrived (gst-rtsp-server sends the first within a few seconds).
    let now = SystemTime::now();
    for f in &frames {
        let age = now.duration_since(f.capture_time).unwrap_or_default();
        assert!(age < Duration::from_secs(6), "capture time {age:?} old");
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut clock = frames.last().map(|f| f.clock);
    while clock != Some(CaptureClock::RtcpSenderReport) && Instant::now() < deadline {
        clock = rx.recv().await.map(|f| f.clock);
    }
    assert_eq!(clock, Some(CaptureClock::RtcpSenderReport));

    // Full-resolution snapshot of the newest frame.
    let jpeg = ingest.snapshot_jpeg("cam").await.expect("snapshot");
    assert_eq!(&jpeg[..2], &[0xFF, 0xD8], "JPEG start marker");
    assert!(jpeg.len() > 5_000);

    ingest.shutdown().await;
    srv.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn camera_recovers_after_a_server_outage_and_the_other_never_stops() {
    let port = free_port();
    let clip = traffic_clip();
    let flaky = server(port, &[&clip], None);
    let steady = server(0, &[&clip], None);
    let ingest = Ingest::new().expect("gstreamer");
    let flaky_rx = ingest
        .add(camera("flaky", &flaky.url("/traffic"), ""))
        .expect("add flaky");
    let steady_rx = ingest
        .add(camera("steady", &steady.url("/traffic"), ""))
        .expect("add steady");
    let steady_frames = drain(steady_rx);
    let _flaky_frames = drain(flaky_rx);

    let mut seen = Vec::new();
    assert!(
        wait_for(
            &ingest,
            "flaky",
            CameraState::Streaming,
            Duration::from_secs(10),
            &mut seen
        )
        .await
    );
    assert!(
        wait_for(
            &ingest,
            "steady",
            CameraState::Streaming,
            Duration::from_secs(10),
            &mut Vec::new()
        )
        .await
    );
    tokio::time::sleep(Duration::from_secs(1)).await;

    // Outage: 5 s without the server.
    let outage_start = Instant::now();
    tokio::task::spawn_blocking(move || flaky.stop())
        .await
        .expect("stop server");
    let mut during = vec![CameraState::Streaming];
    let mut went_down = false;
    while outage_start.elapsed() < Duration::from_secs(5) {
        let s = ingest.state("flaky").expect("exists");
        if during.last() != Some(&s) {
            during.push(s);
        }
        went_down |= matches!(s, CameraState::Stalled | CameraState::BackingOff);
        assert_eq!(
            ingest.state("steady"),
            Some(CameraState::Streaming),
            "steady camera disturbed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        went_down,
        "flaky camera never reported the outage: {during:?}"
    );
    let status = ingest.status("flaky").expect("status");
    assert!(status.problem.is_some(), "a reason is given while down");

    // Back: the camera tries again at least every `max_ms` (1 s) and an attempt that hangs
    // gives up after `connect_timeout_s` (3 s), so it streams again within 4 s of the server's
    // return whatever the moment (typically under 1 s; a loaded machine where the test
    // server prepares its media slowly took over 2 s once).
    let back = server(port, &[&clip], None);
    let returned = Instant::now();
    let mut after = Vec::new();
    assert!(
        wait_for(
            &ingest,
            "flaky",
            CameraState::Streaming,
            Duration::from_secs(4),
            &mut after
        )
        .await,
        "not streaming 4 s (the longest back-off plus the connect timeout) after the server \
         returned; states during outage {during:?}, after {after:?}"
    );
    let recovery = returned.elapsed();
    assert!(ingest.status("flaky").expect("status").reconnects >= 1);
    eprintln!("recovered {recovery:?} after the server returned; states {during:?} then {after:?}");

    ingest.shutdown().await;
    let steady_times = steady_frames.await.expect("steady frames");
    let max_gap = steady_times
        .windows(2)
        .map(|w| w[1].1.duration_since(w[0].1))
        .max()
        .unwrap_or_default();
    assert!(
        steady_times.len() > 30,
        "steady camera delivered {} frames",
        steady_times.len()
    );
    assert!(
        max_gap < Duration::from_millis(1500),
        "steady camera paused for {max_gap:?}"
    );
    back.stop();
    steady.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_path_refused_connection_and_bad_credentials_each_have_their_own_status() {
    let clip = traffic_clip();
    let open = server(0, &[&clip], None);
    let locked = server(0, &[&clip], Some(("operator", "right-password")));
    let closed_port = free_port();
    let ingest = Ingest::new().expect("gstreamer");

    let cases = [
        ("wrong-path", open.url("/no-such-camera"), "", "not_found"),
        (
            "refused",
            format!("rtsp://127.0.0.1:{closed_port}/traffic"),
            "",
            "connection_refused",
        ),
        (
            "bad-login",
            locked.url("/traffic"),
            "username = \"operator\"\npassword = \"wrong-password\"",
            "unauthorized",
        ),
        ("no-login", locked.url("/traffic"), "", "unauthorized"),
    ];
    let mut receivers = Vec::new();
    for (id, url, extra, _) in &cases {
        receivers.push(ingest.add(camera(id, url, extra)).expect("add"));
    }
    let good = ingest
        .add(camera(
            "good-login",
            &locked.url("/traffic"),
            "username = \"operator\"\npassword = \"right-password\"",
        ))
        .expect("add");
    let _good = drain(good);

    for (id, _, _, code) in &cases {
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut last = None;
        while Instant::now() < deadline {
            last = ingest.status(id);
            if last
                .as_ref()
                .and_then(|s| s.problem.as_ref())
                .is_some_and(|p| p.code == *code)
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let status = last.expect("status");
        let problem = status.problem.expect("a problem is reported");
        assert_eq!(problem.code, *code, "camera {id}: {}", problem.message);
        assert_eq!(
            status.state,
            CameraState::BackingOff,
            "camera {id} keeps retrying"
        );
        assert!(!problem.message.contains("wrong-password"));
    }
    let messages: Vec<String> = cases
        .iter()
        .filter_map(|(id, ..)| ingest.status(id)?.problem.map(|p| p.message))
        .collect();
    assert!(messages[0].contains("not found"), "{}", messages[0]);
    assert!(
        messages[1].contains("connection refused"),
        "{}",
        messages[1]
    );
    assert!(
        messages[2].contains("user name or password"),
        "{}",
        messages[2]
    );

    let mut seen = Vec::new();
    assert!(
        wait_for(
            &ingest,
            "good-login",
            CameraState::Streaming,
            Duration::from_secs(10),
            &mut seen
        )
        .await,
        "right credentials stream: {seen:?}"
    );
    let shown = ingest.status("good-login").expect("status").source;
    assert!(!shown.contains("right-password"), "{shown}");
    drop(receivers);
    ingest.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cameras_are_added_and_removed_while_running() {
    let ingest = Ingest::new().expect("gstreamer");
    let a = drain(
        ingest
            .add(camera(
                "a",
                "test://ball?width=320&height=240&fps=25",
                "analysis_fps = 25.0",
            ))
            .expect("add a"),
    );
    assert!(
        wait_for(
            &ingest,
            "a",
            CameraState::Streaming,
            Duration::from_secs(5),
            &mut Vec::new()
        )
        .await
    );
    let b_rx = ingest
        .add(camera("b", "test://smpte?width=320&height=240&fps=25", ""))
        .expect("add b");
    assert!(matches!(
        ingest.add(camera("b", "test://snow", "")),
        Err(pantau_ingest::IngestError::Duplicate(_))
    ));
    let b = drain(b_rx);
    assert!(
        wait_for(
            &ingest,
            "b",
            CameraState::Streaming,
            Duration::from_secs(5),
            &mut Vec::new()
        )
        .await
    );
    // Streaming means decoding; the first frame through b's rate gate (its phase of the
    // 200 ms interval) follows within a moment.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while ingest.status("b").is_some_and(|s| s.frames_queued == 0) {
        assert!(
            std::time::Instant::now() < deadline,
            "b queued no frame within 5 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    ingest.remove("b").await.expect("remove b");
    assert_eq!(ingest.ids(), vec!["a".to_string()]);
    assert!(ingest.status("b").is_none());
    let b_frames = b.await.expect("b drained");
    assert!(!b_frames.is_empty(), "b delivered frames before removal");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(ingest.state("a"), Some(CameraState::Streaming));
    ingest.shutdown().await;
    let a_frames = a.await.expect("a drained");
    // About a second at 25 analysed fps; frames kept coming while b was removed.
    assert!(
        a_frames.len() >= 10,
        "a delivered {} frames",
        a_frames.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_file_delivers_every_frame_then_finishes() {
    let clip = repo().join("demo/videos/vtest.avi");
    let url = format!("file://{}", clip.display());
    let ingest = Ingest::new().expect("gstreamer");
    let mut rx = ingest
        .add(camera(
            "replay",
            &url,
            "loop = false\nrealtime = false\nanalysis_fps = 120\nanalysis_width = 384",
        ))
        .expect("add");
    let mut n = 0u64;
    let mut last_seq = None;
    while let Ok(Some(f)) = tokio::time::timeout(Duration::from_secs(20), rx.recv()).await {
        assert_eq!((f.width, f.height), (384, 288));
        assert!(last_seq.is_none_or(|s| f.seq == s + 1), "no gaps");
        last_seq = Some(f.seq);
        n += 1;
        // A slow consumer must not lose frames of a replay.
        if n.is_multiple_of(100) {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        if n == 795 {
            break;
        }
    }
    assert_eq!(n, 795, "vtest.avi has 795 frames");
    assert!(
        wait_for(
            &ingest,
            "replay",
            CameraState::Finished,
            Duration::from_secs(10),
            &mut Vec::new()
        )
        .await
    );
    let status = ingest.status("replay").expect("status");
    assert_eq!(status.frames_dropped, 0);
    ingest.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_consumer_gets_the_newest_frames_and_drops_are_counted() {
    let srv = server(0, &[&traffic_clip()], None);
    let ingest = Ingest::new().expect("gstreamer");
    let mut rx = ingest
        .add(camera("slow", &srv.url("/traffic"), "analysis_fps = 25.0"))
        .expect("add");
    let first = tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .expect("a frame")
        .expect("open");
    let mut last_seq = first.seq;
    drop(first);
    // Analysis that takes 700 ms a frame, far slower than the 24 fps stream.
    for _ in 0..4 {
        tokio::time::sleep(Duration::from_millis(700)).await;
        let f = rx.recv().await.expect("frame");
        let age = SystemTime::now()
            .duration_since(f.capture_time)
            .unwrap_or_default();
        assert!(
            f.seq > last_seq + 5,
            "skipped ahead to a new frame: {} after {last_seq}",
            f.seq
        );
        assert!(
            age < Duration::from_millis(900),
            "frame is {age:?} old: latency built up"
        );
        last_seq = f.seq;
    }
    let status = ingest.status("slow").expect("status");
    assert!(
        status.frames_dropped > 30,
        "drops counted: {}",
        status.frames_dropped
    );
    assert_eq!(
        status.frames_queued,
        status.frames_analysed + status.frames_dropped + rx.len() as u64,
        "every queued frame is analysed, dropped or waiting"
    );
    ingest.shutdown().await;
}

/// H.265 decodes like H.264: a clip encoded here with x265 is ingested frame by frame.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h265_files_are_decoded() {
    use gstreamer as gst;
    use gstreamer::prelude::*;
    gst::init().expect("gstreamer");
    let dir = tempfile::tempdir().expect("tempdir");
    let clip = dir.path().join("hevc.mp4");
    let pipeline = gst::parse::launch(&format!(
        "videotestsrc num-buffers=50 pattern=ball ! video/x-raw,width=320,height=240,framerate=25/1 ! \
         x265enc speed-preset=ultrafast ! h265parse ! mp4mux ! filesink location=\"{}\"",
        clip.display()
    ))
    .expect("encoder pipeline");
    pipeline.set_state(gst::State::Playing).expect("encode");
    let bus = pipeline.bus().expect("bus");
    for msg in bus.iter_timed(gst::ClockTime::from_seconds(30)) {
        match msg.view() {
            gst::MessageView::Eos(_) => break,
            gst::MessageView::Error(e) => panic!("cannot encode H.265: {}", e.error()),
            _ => {}
        }
    }
    pipeline.set_state(gst::State::Null).expect("stop");

    let ingest = Ingest::new().expect("gstreamer");
    let url = format!("file://{}", clip.display());
    let mut rx = ingest
        .add(camera(
            "hevc",
            &url,
            "loop = false\nrealtime = false\nanalysis_fps = 120",
        ))
        .expect("add");
    let mut n = 0;
    while let Ok(Some(f)) = tokio::time::timeout(Duration::from_secs(10), rx.recv()).await {
        assert_eq!((f.width, f.height), (320, 240));
        n += 1;
    }
    assert_eq!(n, 50);
    ingest.shutdown().await;
}
