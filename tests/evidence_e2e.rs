//! Evidence clips through the running node: an alert on a camera of the test's RTSP server
//! yields an MP4 of the encoded stream that GStreamer decodes with the expected duration
//! (within one GOP), sealed with a manifest whose signature `pantau evidence verify` accepts,
//! and rejects after one byte of the MP4 or the manifest changes. An operator's "save clip"
//! exports as a signed zip (audited, dispatcher only), and retention deletes old clips but not
//! one dispatch marked "keep".

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use gstreamer as gst;
use gstreamer::prelude::*;
use pantau_ingest::serve::{Mount, RtspServer, ServeOptions};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

#[path = "support/mqtt.rs"]
mod mqtt;

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// One HTTP/1.1 request; returns (status, body).
async fn http(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: &str,
) -> (u16, Vec<u8>) {
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    let text = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n{auth}\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(text.as_bytes()).await.expect("write");
    let mut out = Vec::new();
    s.read_to_end(&mut out).await.expect("read");
    let split = out
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("headers end");
    let head = String::from_utf8_lossy(&out[..split]).into_owned();
    let status = head[9..12].parse().expect("status");
    (status, out[split + 4..].to_vec())
}

fn json(body: &[u8]) -> serde_json::Value {
    serde_json::from_slice(body)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(body)))
}

async fn login(addr: std::net::SocketAddr, user: &str, password: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, body) = http(
            addr,
            "POST",
            "/api/v1/auth/login",
            None,
            &format!(r#"{{"user":"{user}","password":"{password}"}}"#),
        )
        .await;
        if status == 200 {
            return json(&body)["token"].as_str().expect("token").to_string();
        }
        assert!(Instant::now() < deadline, "no login within 30 s: {status}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// Decodes an MP4 with GStreamer: (frames decoded, seconds from the first frame to the end of
/// the last).
fn decode(mp4: &Path) -> (u64, f64) {
    gst::init().expect("gstreamer");
    let pipeline = gst::parse::launch(&format!(
        "filesrc location={} ! qtdemux ! h264parse ! avdec_h264 ! fakesink name=sink",
        mp4.display()
    ))
    .expect("pipeline")
    .downcast::<gst::Pipeline>()
    .expect("a pipeline");
    let sink = pipeline.by_name("sink").expect("sink");
    let seen = std::sync::Arc::new(std::sync::Mutex::new((0u64, None::<u64>, 0u64)));
    let s = seen.clone();
    sink.static_pad("sink")
        .expect("pad")
        .add_probe(gst::PadProbeType::BUFFER, move |_, info| {
            if let Some(gst::PadProbeData::Buffer(b)) = &info.data {
                let mut s = s.lock().expect("lock");
                s.0 += 1;
                if let Some(pts) = b.pts() {
                    let end = pts.nseconds() + b.duration().map_or(0, |d| d.nseconds());
                    s.1 = Some(s.1.map_or(pts.nseconds(), |f: u64| f.min(pts.nseconds())));
                    s.2 = s.2.max(end);
                }
            }
            gst::PadProbeReturn::Ok
        });
    pipeline.set_state(gst::State::Playing).expect("play");
    let bus = pipeline.bus().expect("bus");
    let msg = bus
        .timed_pop_filtered(
            gst::ClockTime::from_seconds(30),
            &[gst::MessageType::Eos, gst::MessageType::Error],
        )
        .expect("decoded within 30 s");
    if let gst::MessageView::Error(e) = msg.view() {
        panic!("{} does not decode: {}", mp4.display(), e.error());
    }
    pipeline.set_state(gst::State::Null).expect("stop");
    let (frames, first, end) = *seen.lock().expect("lock");
    (frames, (end - first.unwrap_or(0)) as f64 / 1e9)
}

fn flip_byte(path: &Path, at: usize) {
    let mut bytes = std::fs::read(path).expect("read");
    let i = at.min(bytes.len() - 1);
    bytes[i] ^= 0x01;
    std::fs::write(path, bytes).expect("write");
}

fn verified(path: &Path, key: Option<&str>) -> bool {
    pantau_evidence::verify(path, key)
        .expect("readable")
        .passed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alerts_and_saved_clips_become_signed_mp4s_that_verify() {
    let tag = format!("evidence{}", std::process::id());
    let prefix = format!("pantau-test-{tag}");
    let schema = format!("pantau_test_{tag}");
    let password = "evidence-test-password-1";
    std::env::set_var("PANTAU_TEST_EVIDENCE_ADMIN", password);
    // PETS09 walkers transcoded to H.264 by the test server: one keyframe a second.
    let server = RtspServer::start(ServeOptions {
        address: "127.0.0.1".into(),
        port: 0,
        mounts: vec![Mount::for_file(&repo("demo/videos/vtest.avi"))],
        credentials: None,
    })
    .expect("RTSP server");
    let dir = tempfile::tempdir().expect("tempdir");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("listen");
    let addr = listener.local_addr().expect("addr");
    let text = format!(
        r#"
[node]
name = "{tag}"
site = "kota"

[mqtt]
host = "127.0.0.1"
port = 1883
prefix = "{prefix}"

[store]
url = "host=127.0.0.1 port=5432 user=postgres dbname=test"
schema = "{schema}"

[outbox]
path = "var/outbox.redb"

[api]
admin_password_env = "PANTAU_TEST_EVIDENCE_ADMIN"

[evidence]
pre_s = 4
post_s = 2

[detector]
model = "{model}"

[[cameras]]
id = "walk"
url = "{url}"
analysis_fps = 5

[cameras.calibration]
image = [[100, 500], [700, 500], [600, 200], [200, 200]]
ground = [[0, 0], [20, 0], [20, 30], [0, 30]]
latitude = -3.2946
longitude = 102.8617
heading_deg = 0

[[cameras.zones]]
name = "square"
polygon = [[0, 0], [768, 0], [768, 576], [0, 576]]
severity = "warning"
"#,
        url = server.url("/vtest"),
        model = repo("models/yolox_nano.toml").display(),
    );
    let valid = pantau_config::Config::parse(&text)
        .expect("parses")
        .validate(dir.path(), &|v| std::env::var(v).ok())
        .unwrap_or_else(|e| panic!("valid config: {e}"));
    let (got, subscriber) = mqtt::subscribe_raw(
        &format!("sub-{tag}"),
        &format!("{prefix}/kota/walk/evidence"),
    )
    .await;
    let shutdown = CancellationToken::new();
    let started = Instant::now();
    let node = tokio::spawn(pantau_node::run(
        pantau_node::NodeConfig {
            valid,
            base: dir.path().to_path_buf(),
        },
        Some(listener),
        shutdown.clone(),
    ));

    // The first alert's clip: pre-roll from the ring, post-roll waited for.
    let deadline = Instant::now() + Duration::from_secs(90);
    while got.lock().expect("lock").is_empty() {
        assert!(Instant::now() < deadline, "no evidence clip within 90 s");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let announced: serde_json::Value =
        serde_json::from_slice(&got.lock().expect("lock")[0].1).expect("json");
    let clip_dir = dir
        .path()
        .join("var/evidence")
        .join(announced["clip"].as_str().expect("clip"));
    let manifest = pantau_evidence::manifest::read(&clip_dir).expect("manifest");
    assert_eq!(manifest.camera, "walk");
    assert_eq!(manifest.site, "kota");
    assert_eq!(manifest.node, tag);
    assert_eq!(manifest.codec, "H.264");
    assert_eq!(manifest.event_kind, "zone_presence");
    assert_eq!(manifest.events[0], manifest.event_id);
    assert_eq!(announced["manifest"]["sha256"], manifest.sha256.as_str());

    // It decodes, with the frames and duration the manifest states. The clip starts at the
    // keyframe before the pre-roll (one a second here) and ends at the post-roll.
    let mp4 = clip_dir.join("clip.mp4");
    let (frames, seconds) = decode(&mp4);
    assert_eq!(frames, manifest.frames, "decoded frames");
    assert!(
        (seconds - manifest.duration_s).abs() < 0.5,
        "decoded {seconds} s, manifest {} s",
        manifest.duration_s
    );
    // The first alert may come before 4 s of video were kept (the camera just connected); a
    // clip never covers more than asked plus one GOP.
    assert!(
        manifest.duration_s > 1.5 && manifest.duration_s < 4.0 + 2.0 + 1.2,
        "{} s",
        manifest.duration_s
    );

    // Verified as written; not after one byte of the video or the manifest changed.
    assert!(verified(&clip_dir, None));
    let size = std::fs::metadata(&mp4).expect("meta").len() as usize;
    let original = std::fs::read(&mp4).expect("read");
    flip_byte(&mp4, size / 2);
    let v = pantau_evidence::verify(&clip_dir, None).expect("readable");
    assert!(!v.passed(), "{}", pantau_evidence::verify::report(&v));
    std::fs::write(&mp4, &original).expect("restore");
    assert!(verified(&clip_dir, None));
    let manifest_file = clip_dir.join("manifest.json");
    let original_manifest = std::fs::read(&manifest_file).expect("read");
    let at = String::from_utf8_lossy(&original_manifest)
        .find("\"frames\"")
        .expect("frames")
        + 12;
    flip_byte(&manifest_file, at);
    assert!(!verified(&clip_dir, None), "a changed manifest fails");
    std::fs::write(&manifest_file, &original_manifest).expect("restore");

    // An operator saves a clip; a dispatcher exports it; the export verifies with the node's key.
    let admin = login(addr, "admin", password).await;
    for (user, role) in [("oki", "operator"), ("dina", "dispatcher")] {
        let (status, body) = http(
            addr,
            "POST",
            "/api/v1/users",
            Some(&admin),
            &format!(r#"{{"name":"{user}","role":"{role}","password":"{password}"}}"#),
        )
        .await;
        assert_eq!(status, 201, "{}", String::from_utf8_lossy(&body));
    }
    let operator = login(addr, "oki", password).await;
    let dispatcher = login(addr, "dina", password).await;
    // The ring holds the whole pre-roll once the camera has streamed for longer than it.
    let warm = Duration::from_secs(12);
    if started.elapsed() < warm {
        tokio::time::sleep(warm - started.elapsed()).await;
    }
    let (status, body) = http(
        addr,
        "POST",
        "/api/v1/cameras/walk/clips",
        Some(&operator),
        r#"{"note":"a fight near the fountain"}"#,
    )
    .await;
    assert_eq!(status, 202, "{}", String::from_utf8_lossy(&body));
    let saved = json(&body);
    let event = saved["event_id"].as_str().expect("event").to_string();
    let (status, body) = http(addr, "GET", "/api/v1/evidence/key", Some(&operator), "").await;
    assert_eq!(status, 200);
    let key = json(&body)["public_key"].as_str().expect("key").to_string();
    let deadline = Instant::now() + Duration::from_secs(30);
    let zip = loop {
        let (status, body) = http(
            addr,
            "GET",
            &format!("/api/v1/events/{event}/evidence.zip"),
            Some(&dispatcher),
            "",
        )
        .await;
        if status == 200 {
            break body;
        }
        // 404 until the event is stored, 409 while the post-roll is recorded.
        assert!(
            [404, 409].contains(&status) && Instant::now() < deadline,
            "{status}: {}",
            String::from_utf8_lossy(&body)
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let zip_file = dir.path().join("export.zip");
    std::fs::write(&zip_file, &zip).expect("write");
    let verdict = pantau_evidence::verify(&zip_file, Some(&key)).expect("readable");
    assert!(
        verdict.passed(),
        "{}",
        pantau_evidence::verify::report(&verdict)
    );
    // The saved clip covers the time asked (4 s before, 2 s after; up to 2 s more when it
    // shares an alert's clip, which then runs on to its last event's post-roll), from the
    // keyframe before it: at most one GOP (25 frames of the test server's x264, under 4 s
    // here) more.
    let m = verdict.manifest.expect("manifest");
    let t = |s: &str| pantau_events::time::parse(s).expect("time");
    let asked = t(&m.requested_to)
        .duration_since(t(&m.requested_from))
        .expect("order");
    assert!(
        asked.as_secs_f64() > 5.9 && asked.as_secs_f64() < 8.1,
        "{asked:?}"
    );
    let lead = t(&m.requested_from)
        .duration_since(t(&m.start))
        .unwrap_or_else(|e| panic!("the clip starts {:?} late", e.duration()));
    assert!(lead < Duration::from_secs(4), "starts {lead:?} early");
    let short = t(&m.requested_to)
        .duration_since(t(&m.end))
        .unwrap_or_default();
    assert!(short < Duration::from_millis(500), "ends {short:?} early");
    assert!(
        m.duration_s > 5.5 && m.duration_s < asked.as_secs_f64() + 4.0,
        "{} s",
        m.duration_s
    );
    let saved_dir = dir
        .path()
        .join("var/evidence")
        .join(saved["clip"].as_str().expect("clip"));
    let (frames, seconds) = decode(&saved_dir.join("clip.mp4"));
    assert_eq!(frames, m.frames);
    assert!(
        (seconds - m.duration_s).abs() < 0.5,
        "decoded {seconds} s, manifest {} s",
        m.duration_s
    );
    // Another key does not verify it.
    let other = pantau_evidence::NodeKey::load_or_create(&dir.path().join("other.key"))
        .expect("key")
        .0
        .public_base64();
    assert!(
        !verified(&zip_file, Some(&other)),
        "another node's key fails"
    );
    let (status, _) = http(
        addr,
        "GET",
        &format!("/api/v1/events/{event}/evidence.zip"),
        Some(&operator),
        "",
    )
    .await;
    assert_eq!(status, 403, "operators cannot export");
    let (status, body) = http(
        addr,
        "GET",
        &format!("/api/v1/events/{event}"),
        Some(&dispatcher),
        "",
    )
    .await;
    assert_eq!(status, 200);
    let detail = json(&body);
    assert_eq!(detail["event"]["kind"], "operator_clip");
    // Whether its own clip or an alert's it shares, the clip covers the saved moment's pre-
    // and post-roll and names the event.
    let saved_at = t(detail["event"]["captured_at"].as_str().expect("time"));
    assert!(
        t(&m.requested_from) <= saved_at - Duration::from_secs(4)
            && t(&m.requested_to) >= saved_at + Duration::from_secs(2),
        "asked {} to {} for {saved_at:?}",
        m.requested_from,
        m.requested_to
    );
    assert!(m.events.contains(&event), "{:?}", m.events);
    assert_eq!(
        detail["dispatch"]["state"], "new",
        "a saved clip is an incident"
    );
    let audit: Vec<&str> = detail["audit"]
        .as_array()
        .expect("audit")
        .iter()
        .filter_map(|a| a["action"].as_str())
        .collect();
    assert!(audit.contains(&"evidence.export"), "{audit:?}");
    // The incident view plays it (byte ranges for seeking).
    let (status, body) = http(
        addr,
        "GET",
        &format!("/api/v1/events/{event}/evidence.mp4"),
        Some(&operator),
        "",
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(&body[4..8], b"ftyp", "an MP4");

    // A citizen's report seen by the camera (30 m north, the way it looks) a moment ago gets a
    // clip of it from the camera's kept video.
    let (status, body) = http(
        addr,
        "POST",
        "/api/v1/integrations",
        Some(&admin),
        r#"{"name":"sipokat"}"#,
    )
    .await;
    assert_eq!(status, 201, "{}", String::from_utf8_lossy(&body));
    let integration_key = json(&body)["key"].as_str().expect("key").to_string();
    let when = pantau_events::time::format(SystemTime::now() - Duration::from_secs(1));
    let (status, body) = http(
        addr,
        "POST",
        "/api/v1/reports",
        Some(&integration_key),
        &format!(
            r#"{{"source":"sipokat","external_id":"rt-07/331","category":"perkelahian","text":"orang berkelahi dekat air mancur","time":"{when}","latitude":-3.2943,"longitude":102.8617}}"#
        ),
    )
    .await;
    assert_eq!(status, 201, "{}", String::from_utf8_lossy(&body));
    let receipt = json(&body);
    assert_eq!(receipt["cameras"][0]["id"], "walk", "{receipt}");
    let report = receipt["id"].as_str().expect("id").to_string();
    let deadline = Instant::now() + Duration::from_secs(30);
    let report_clip = loop {
        let (status, body) = http(
            addr,
            "GET",
            &format!("/api/v1/events/{report}/evidence?camera=walk"),
            Some(&operator),
            "",
        )
        .await;
        let st = if status == 200 {
            json(&body)
        } else {
            serde_json::Value::Null
        };
        if st["state"] == "ready" {
            break st;
        }
        assert!(
            Instant::now() < deadline && (status == 200 || status == 404),
            "{status}: {}",
            String::from_utf8_lossy(&body)
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    // Its own clip, or the camera's open clip of an alert when the report's time falls in it:
    // the manifest lists every event the clip is for.
    let listed: Vec<&str> = report_clip["manifest"]["events"]
        .as_array()
        .expect("events")
        .iter()
        .filter_map(|v| v.as_str())
        .collect();
    assert!(listed.contains(&report.as_str()), "{report_clip}");
    let report_dir = dir
        .path()
        .join("var/evidence")
        .join(report_clip["clip"].as_str().expect("clip"));
    assert!(verified(&report_dir, Some(&key)));

    // Dispatch keeps the saved clip; retention then deletes the alert's clip but not it.
    let (status, body) = http(
        addr,
        "PUT",
        &format!("/api/v1/events/{event}/evidence/keep"),
        Some(&dispatcher),
        r#"{"keep":true}"#,
    )
    .await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let kept_clip = json(&body)["clip"].as_str().expect("clip").to_string();
    assert_eq!(json(&body)["kept_by"], "dina");

    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(30), node)
        .await
        .expect("the node stops within 30 s")
        .expect("task")
        .expect("node ran");
    subscriber.abort();
    server.stop();

    let (db, conn) = tokio_postgres::connect(
        "host=127.0.0.1 user=postgres dbname=test",
        tokio_postgres::NoTls,
    )
    .await
    .expect("database");
    tokio::spawn(conn);
    let store = pantau_store::Store::connect(
        "host=127.0.0.1 port=5432 user=postgres dbname=test",
        &schema,
    )
    .await
    .expect("store");
    let kept: HashSet<String> = store.kept_clips().await.expect("kept");
    assert_eq!(kept, HashSet::from([kept_clip.clone()]));
    let swept = pantau_evidence::retention::sweep(
        &dir.path().join("var/evidence"),
        pantau_evidence::retention::Policy {
            max_age: Duration::from_secs(3600),
            max_bytes: u64::MAX,
        },
        &kept,
        SystemTime::now() + Duration::from_secs(2 * 3600),
    );
    assert!(
        swept
            .removed
            .contains(&announced["clip"].as_str().expect("clip").to_string()),
        "{swept:?}"
    );
    assert!(dir
        .path()
        .join("var/evidence")
        .join(&kept_clip)
        .join("clip.mp4")
        .exists());
    assert_eq!(swept.kept_by_dispatch, 1);
    db.batch_execute(&format!("drop schema {schema} cascade"))
        .await
        .expect("clean up");
}
