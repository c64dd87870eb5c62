//! `pantau run` end to end: a camera's line crossings reach the real Mosquitto and the real
//! PostgreSQL, each event exactly once in the store and with the same id on MQTT.

use std::collections::{BTreeMap, HashSet};
use std::process::Command;

use std::time::Duration;

#[path = "support/mqtt.rs"]
mod mqtt;
use mqtt::subscribe;

fn repo(path: &str) -> String {
    format!("{}/{path}", env!("CARGO_MANIFEST_DIR"))
}

/// Runs `pantau run --config CONFIG --duration-s SECS` to the end; panics with its log if it fails.
async fn run_pantau(config: std::path::PathBuf, secs: u64) -> String {
    let out = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_pantau"))
            .args([
                "run",
                "--view",
                "log",
                "--duration-s",
                &secs.to_string(),
                "--config",
            ])
            .arg(&config)
            .output()
            .expect("pantau runs")
    })
    .await
    .expect("join");
    let log = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "pantau failed:\n{log}");
    log
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crossings_are_published_and_stored_once() {
    let tag = format!("e2e{}", std::process::id());
    let prefix = format!("pantau-test-{tag}");
    let schema = format!("pantau_test_{tag}");
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("pantau.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[node]
name = "e2e"
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
listen = "127.0.0.1:0"

[[cameras]]
id = "traffic"
url = "file://{clip}"
loop = false
realtime = false
analysis_fps = 30

[[cameras.lines]]
name = "mid"
points = [[320, 0], [320, 360]]
"#,
            clip = repo("demo/videos/traffic.mp4")
        ),
    )
    .expect("config");

    // Subscribe before pantau starts.
    let (got, subscriber) = subscribe(&format!("sub-{tag}"), &format!("{prefix}/#")).await;

    // Long enough for the whole clip even on a loaded machine (it does not loop).
    let log = run_pantau(config, 25).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    subscriber.abort();

    let msgs = got.lock().expect("lock").clone();
    let crossings: Vec<&serde_json::Value> = msgs
        .iter()
        .filter(|(t, _)| t == &format!("{prefix}/kota/traffic/events/mid"))
        .map(|(_, v)| v)
        .collect();
    assert!(
        crossings.len() >= 10,
        "crossings on MQTT: {}\n{log}",
        crossings.len()
    );
    // Each crossing points at a JPEG of the full-resolution frame with the boxes drawn.
    let snapshot = crossings[0]["snapshot"]
        .as_str()
        .expect("snapshot reference");
    let file = dir.path().join("var/snapshots").join(snapshot);
    let img = opencv::imgcodecs::imread(
        file.to_str().expect("utf-8"),
        opencv::imgcodecs::IMREAD_COLOR,
    )
    .expect("imread");
    use opencv::prelude::MatTraitConst;
    assert_eq!((img.cols(), img.rows()), (640, 360), "{}", file.display());
    for c in &crossings {
        assert!(c["snapshot"].is_string(), "{c}");
        assert_eq!(c["schema"], 1);
        assert_eq!(c["kind"], "line_crossing");
        assert!(c["direction"] == "in" || c["direction"] == "out");
        assert!(c["object"]["track_id"].is_u64());
    }
    let mqtt_ids: HashSet<String> = crossings
        .iter()
        .filter_map(|c| c["id"].as_str().map(String::from))
        .collect();
    let statuses: Vec<&str> = msgs
        .iter()
        .filter(|(t, _)| t.ends_with("/traffic/status"))
        .filter_map(|(_, v)| v["details"]["state"].as_str())
        .collect();
    assert!(
        statuses.contains(&"streaming"),
        "status messages: {statuses:?}"
    );

    let (db, conn) = tokio_postgres::connect(
        "host=127.0.0.1 user=postgres dbname=test",
        tokio_postgres::NoTls,
    )
    .await
    .expect("database");
    tokio::spawn(conn);
    let rows = db
        .query(
            &format!(
                "select id, count(*) from {schema}.events where kind = 'line_crossing' group by id"
            ),
            &[],
        )
        .await
        .expect("query");
    let stored: BTreeMap<String, i64> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    assert!(stored.values().all(|n| *n == 1), "stored once each");
    let stored_ids: HashSet<String> = stored.keys().cloned().collect();
    assert_eq!(
        stored_ids, mqtt_ids,
        "the same events on MQTT and in the store"
    );
    // Tracks that ended were summarised, on MQTT and in the store: the same summaries (MQTT
    // is at-least-once, so a redelivered message counts once), each with frames.
    let rows = db
        .query(
            &format!("select id, frames from {schema}.track_summaries"),
            &[],
        )
        .await
        .expect("query");
    let stored: BTreeMap<String, i32> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    assert_eq!(stored.len(), rows.len(), "each summary stored once");
    assert!(stored.values().all(|f| *f > 0), "{stored:?}");
    let mqtt_tracks: Vec<String> = msgs
        .iter()
        .filter(|(t, _)| t.ends_with("/traffic/tracks"))
        .filter_map(|(_, v)| v["id"].as_str().map(String::from))
        .collect();
    let mqtt_unique: HashSet<String> = mqtt_tracks.iter().cloned().collect();
    let stored_ids: HashSet<String> = stored.keys().cloned().collect();
    assert!(
        stored.len() >= 10,
        "track summaries stored: {}",
        stored.len()
    );
    assert_eq!(
        stored_ids,
        mqtt_unique,
        "the same track summaries on MQTT ({} messages) and in the store",
        mqtt_tracks.len()
    );
    db.batch_execute(&format!("drop schema {schema} cascade"))
        .await
        .expect("clean up");
}

/// pantau killed with SIGKILL while events flow, then started again: every event that was
/// accepted reaches MQTT and the store, and the store holds each exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_and_restart_lose_and_duplicate_nothing() {
    let tag = format!("kill{}", std::process::id());
    let prefix = format!("pantau-test-{tag}");
    let schema = format!("pantau_test_{tag}");
    let dir = tempfile::tempdir().expect("tempdir");
    let common = format!(
        "[node]\nname = \"kill\"\nsite = \"kota\"\n[mqtt]\nhost = \"127.0.0.1\"\nport = 1883\nprefix = \"{prefix}\"\n\
         [store]\nurl = \"host=127.0.0.1 port=5432 user=postgres dbname=test\"\nschema = \"{schema}\"\n\
         [outbox]\npath = \"var/outbox.redb\"\n[api]\nlisten = \"127.0.0.1:0\"\n"
    );
    let busy = dir.path().join("busy.toml");
    std::fs::write(
        &busy,
        format!(
            "{common}[[cameras]]\nid = \"traffic\"\nurl = \"file://{}\"\nloop = true\nrealtime = false\nanalysis_fps = 30\n\
             [[cameras.lines]]\nname = \"mid\"\npoints = [[320, 0], [320, 360]]\n",
            repo("demo/videos/traffic.mp4")
        ),
    )
    .expect("config");
    let idle = dir.path().join("idle.toml");
    std::fs::write(&idle, &common).expect("config");

    let (got, subscriber) = subscribe(
        &format!("sub-{tag}"),
        &format!("{prefix}/kota/traffic/events/#"),
    )
    .await;

    // Run busy, then SIGKILL mid-stream.
    let mut child = Command::new(env!("CARGO_BIN_EXE_pantau"))
        .args(["run", "--view", "log", "--config"])
        .arg(&busy)
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("pantau starts");
    // Kill once events flow (at least 5 published), not after a fixed time: a loaded
    // machine analyses slower.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while got.lock().expect("lock").len() < 5 {
        assert!(
            std::time::Instant::now() < deadline,
            "no events within 60 s"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    child.kill().expect("SIGKILL");
    let _ = child.wait();
    let before = got.lock().expect("lock").len();

    // Start again without cameras: what was accepted but not delivered drains.
    run_pantau(idle, 6).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    subscriber.abort();

    let mqtt_ids: HashSet<String> = got
        .lock()
        .expect("lock")
        .iter()
        .filter_map(|(_, v)| v["id"].as_str().map(String::from))
        .collect();
    assert!(before >= 5, "events flowed before the kill: {before}");
    let (db, conn) = tokio_postgres::connect(
        "host=127.0.0.1 user=postgres dbname=test",
        tokio_postgres::NoTls,
    )
    .await
    .expect("database");
    tokio::spawn(conn);
    let rows = db
        .query(
            &format!("select id, count(*) from {schema}.events where camera = 'traffic' and kind = 'line_crossing' group by id"),
            &[],
        )
        .await
        .expect("query");
    let stored: BTreeMap<String, i64> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    assert!(
        stored.values().all(|n| *n == 1),
        "no duplicates in the store"
    );
    let stored_ids: HashSet<String> = stored.keys().cloned().collect();
    assert_eq!(
        stored_ids,
        mqtt_ids,
        "store and MQTT hold the same accepted events ({} stored, {} on MQTT, {} before the kill)",
        stored_ids.len(),
        mqtt_ids.len(),
        before
    );
    db.batch_execute(&format!("drop schema {schema} cascade"))
        .await
        .expect("clean up");
}

/// `pantau run` as a service manager stops it: SIGTERM ends it cleanly and promptly, with the
/// counts of the open period stored and everything published also stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_cleanly_and_keeps_the_open_counts() {
    let tag = format!("term{}", std::process::id());
    let prefix = format!("pantau-test-{tag}");
    let schema = format!("pantau_test_{tag}");
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("pantau.toml");
    std::fs::write(
        &config,
        format!(
            "[node]\nname = \"term\"\nsite = \"kota\"\n[mqtt]\nhost = \"127.0.0.1\"\nport = 1883\nprefix = \"{prefix}\"\n\
             [store]\nurl = \"host=127.0.0.1 port=5432 user=postgres dbname=test\"\nschema = \"{schema}\"\n\
             [outbox]\npath = \"var/outbox.redb\"\ncount_period_s = 3600\n[api]\nlisten = \"127.0.0.1:0\"\n\
             [[cameras]]\nid = \"traffic\"\nurl = \"file://{}\"\nloop = true\nrealtime = true\nanalysis_fps = 5\n\
             [[cameras.lines]]\nname = \"midblock\"\npoints = [[320, 0], [320, 360]]\n",
            repo("demo/videos/traffic.mp4")
        ),
    )
    .expect("config");
    let (got, subscriber) = subscribe(&format!("sub-{tag}"), &format!("{prefix}/#")).await;
    // The log goes to a file: a pipe nobody reads while pantau runs would fill and block it.
    let log_path = dir.path().join("pantau.log");
    let log_file = std::fs::File::create(&log_path).expect("log file");
    let mut child = Command::new(env!("CARGO_BIN_EXE_pantau"))
        .args(["run", "--view", "log", "--config"])
        .arg(&config)
        .stderr(log_file)
        .spawn()
        .expect("pantau starts");
    let crossing_topic = format!("{prefix}/kota/traffic/events/midblock");
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while got
        .lock()
        .expect("lock")
        .iter()
        .filter(|(t, _)| *t == crossing_topic)
        .count()
        < 3
    {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!(
                "no crossings within 60 s\n{}",
                std::fs::read_to_string(&log_path).unwrap_or_default()
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let term = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(term.success());
    let stopping = std::time::Instant::now();
    let status = tokio::task::spawn_blocking(move || child.wait())
        .await
        .expect("join")
        .expect("wait");
    let log = std::fs::read_to_string(&log_path).unwrap_or_default();
    assert!(status.success(), "exit status {status:?}\n{log}");
    assert!(
        stopping.elapsed() < Duration::from_secs(15),
        "stopped in {:?}\n{log}",
        stopping.elapsed()
    );
    assert!(log.contains("pantau stopped"), "{log}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    subscriber.abort();
    let published: HashSet<String> = got
        .lock()
        .expect("lock")
        .iter()
        .filter(|(t, _)| *t == crossing_topic)
        .filter_map(|(_, v)| v["id"].as_str().map(String::from))
        .collect();
    let (db, conn) = tokio_postgres::connect(
        "host=127.0.0.1 user=postgres dbname=test",
        tokio_postgres::NoTls,
    )
    .await
    .expect("database");
    tokio::spawn(conn);
    let stored: HashSet<String> = db
        .query(
            &format!("select id from {schema}.events where kind = 'line_crossing'"),
            &[],
        )
        .await
        .expect("query")
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(published, stored);
    let counted: i64 = db
        .query_one(
            &format!("select coalesce(sum(n), 0)::bigint from {schema}.counts"),
            &[],
        )
        .await
        .expect("query")
        .get(0);
    assert_eq!(
        counted,
        stored.len() as i64,
        "the open hour's counts were stored at the stop"
    );
    db.batch_execute(&format!("drop schema {schema} cascade"))
        .await
        .expect("clean up");
}
