//! Event throughput and latency:
//! 0. appends per second into the outbox from 8 cameras, one fsync per append vs group commit;
//! 1. rows per second into PostgreSQL (batched, idempotent writes, rollups included);
//! 2. events per second through the outbox to MQTT (QoS 1, acknowledged on PUBACK), and how
//!    fast events reach MQTT while another writer keeps the disk busy;
//! 3. capture-to-MQTT latency (p50/p99) of real events: `pantau run` on two RTSP cameras served
//!    by this benchmark, 5 analysed fps each, measured at an MQTT subscriber on the same machine.
//!
//! Needs the local Mosquitto (1883) and PostgreSQL (5432) that `make setup` starts.
//! Run: `cargo bench --bench events` (only the outbox: `cargo bench --bench events -- outbox`;
//! only delivery with the disk busy: `-- delivery`).

mod common;

use std::collections::BTreeMap;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use pantau_events::{
    Event, EventKind, IdGenerator, Lifecycle, ObjectRef, Severity, SCHEMA_VERSION,
};
use pantau_ingest::serve::{Mount, RtspServer, ServeOptions};
use pantau_sinks::mqtt::{run, MqttSettings};
use pantau_sinks::outbox::{FullPolicy, Outbox};
use pantau_store::Store;
use rumqttc::{AsyncClient, Event as MqttEvent, MqttOptions, Packet, QoS};
use tokio_util::sync::CancellationToken;

/// A message as the node would queue it.
fn record(topic: &str, retain: bool, payload: Vec<u8>) -> pantau_events::Message {
    pantau_events::Message {
        kind: if retain {
            pantau_events::Kind::Status
        } else {
            pantau_events::Kind::Event
        },
        topic: topic.to_string(),
        retain,
        payload,
    }
}

const DB: &str = "host=127.0.0.1 port=5432 user=postgres dbname=test";

fn event(ids: &IdGenerator, i: u64) -> Event {
    let at = UNIX_EPOCH + Duration::from_millis(1_795_507_200_000 + i * 37);
    Event {
        id: ids.at(at),
        schema: SCHEMA_VERSION,
        site: "kota".into(),
        camera: format!("cam-{}", i % 8),
        rule: "stop-line".into(),
        kind: EventKind::LineCrossing,
        lifecycle: Lifecycle::Single,
        incident: None,
        captured_at: at,
        severity: Severity::Info,
        object: Some(ObjectRef {
            class: "car".into(),
            track_id: i,
            bbox: [1.0, 2.0, 30.0, 40.0],
            confidence: 0.8,
        }),
        direction: Some("in".into()),
        snapshot: None,
        details: BTreeMap::new(),
    }
}

async fn rows_per_second() -> f64 {
    let schema = format!("pantau_bench_{}", std::process::id());
    let store = Store::connect(DB, &schema)
        .await
        .expect("PostgreSQL (make setup)");
    let ids = IdGenerator::new();
    let total = 100_000u64;
    let events: Vec<Event> = (0..total).map(|i| event(&ids, i)).collect();
    let start = Instant::now();
    for batch in events.chunks(2000) {
        store.write(batch, &[]).await.expect("write");
    }
    let secs = start.elapsed().as_secs_f64();
    let (client, conn) = tokio_postgres::connect(DB, tokio_postgres::NoTls)
        .await
        .expect("db");
    tokio::spawn(conn);
    client
        .batch_execute(&format!("drop schema {schema} cascade"))
        .await
        .expect("clean up");
    total as f64 / secs
}

/// A 1 GiB outbox in `dir` with one sink, "mqtt".
fn mqtt_outbox(dir: &tempfile::TempDir) -> Arc<Outbox> {
    Arc::new(
        Outbox::open(
            &dir.path().join("o.redb"),
            &["mqtt"],
            1 << 30,
            FullPolicy::DropOldest,
        )
        .expect("outbox"),
    )
}

/// The MQTT sink's settings for the local Mosquitto, client and topics under `prefix`.
fn local_mqtt(prefix: &str) -> MqttSettings {
    MqttSettings {
        host: "127.0.0.1".into(),
        port: 1883,
        client_id: format!("{prefix}-pub"),
        credentials: None,
        availability_topic: format!("{prefix}/bench/available"),
        keep_alive: Duration::from_secs(15),
        batch: 256,
        tls: None,
        max_packet_bytes: 256 * 1024,
        fallbacks: Vec::new(),
    }
}

async fn mqtt_events_per_second() -> f64 {
    let dir = tempfile::tempdir().expect("tempdir");
    let outbox = mqtt_outbox(&dir);
    let ids = IdGenerator::new();
    let total = 20_000u64;
    let prefix = format!("pantau-bench-{}", std::process::id());
    let records: Vec<_> = (0..total)
        .map(|i| {
            let e = event(&ids, i);
            record(
                &format!("{prefix}/kota/{}/events/stop-line", e.camera),
                false,
                serde_json::to_vec(&e).expect("json"),
            )
        })
        .collect();
    for chunk in records.chunks(1000) {
        outbox.append(chunk).await.expect("append");
    }
    let stop = CancellationToken::new();
    let settings = local_mqtt(&prefix);
    let start = Instant::now();
    let task = tokio::spawn(run(outbox.clone(), "mqtt".into(), settings, stop.clone()));
    while outbox.depth("mqtt") > 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let secs = start.elapsed().as_secs_f64();
    stop.cancel();
    let _ = task.await;
    total as f64 / secs
}

/// Appends per second into the outbox from 8 cameras at once (each append: one analysed
/// frame's 2 events, as the publish stage hands them over), with one fsync per append
/// (`max_group` 1, how every append was written before group commit) and with group commit.
async fn outbox_appends_per_second(max_group: usize) -> (f64, f64) {
    use pantau_sinks::outbox::OutboxOptions;
    let dir = tempfile::tempdir().expect("tempdir");
    let outbox = Arc::new(
        Outbox::open_with(
            &dir.path().join("o.redb"),
            &["mqtt"],
            1 << 30,
            FullPolicy::DropOldest,
            OutboxOptions { max_group },
        )
        .expect("outbox"),
    );
    let ids = IdGenerator::new();
    let per_camera = 300u64;
    let start = Instant::now();
    let mut tasks = Vec::new();
    for cam in 0..8u64 {
        let outbox = outbox.clone();
        let pair: Vec<_> = (0..2)
            .map(|i| {
                let e = event(&ids, cam * 10 + i);
                record(
                    &format!("bench/kota/cam-{cam}/events/stop-line"),
                    false,
                    serde_json::to_vec(&e).expect("json"),
                )
            })
            .collect();
        tasks.push(tokio::spawn(async move {
            for _ in 0..per_camera {
                outbox.append(&pair).await.expect("append");
            }
        }));
    }
    for t in tasks {
        t.await.expect("producer");
    }
    let secs = start.elapsed().as_secs_f64();
    let appends = 8.0 * per_camera as f64;
    (appends / secs, appends / outbox.commits().max(1) as f64)
}

/// Milliseconds since the Unix epoch, as a float (stamps carried in the bench's payloads).
fn now_ms() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
}

fn percentiles(mut v: Vec<f64>) -> (usize, f64, f64) {
    v.sort_by(|a, b| a.total_cmp(b));
    let pct = |p: f64| {
        v.get(((v.len() as f64 - 1.0) * p).round() as usize)
            .copied()
            .unwrap_or(f64::NAN)
    };
    (v.len(), pct(0.5), pct(0.99))
}

/// Delivery while the disk is busy: events of 8 cameras (2 every 25 ms) go through a
/// publish stage like the node's into the outbox and out to Mosquitto, while another writer
/// rewrites and fsyncs a 256 MiB file beside the outbox (snapshots and PostgreSQL share the
/// node's disk), for 15 s. `wait_each`: the stage waits for each append's commit before it
/// takes the next batch (the node did so before 2026-12-07); otherwise it hands batches over
/// and goes on. Returns (commit times, production-to-MQTT times) in ms.
async fn delivery_while_disk_busy(wait_each: bool) -> (Vec<f64>, Vec<f64>) {
    use std::sync::atomic::{AtomicBool, Ordering};
    let dir = tempfile::tempdir().expect("tempdir");
    let outbox = mqtt_outbox(&dir);
    let busy = Arc::new(AtomicBool::new(true));
    let stressor = {
        let busy = busy.clone();
        let path = dir.path().join("other-writes.bin");
        std::thread::spawn(move || {
            use std::io::Write;
            let chunk = vec![7u8; 256 << 20];
            while busy.load(Ordering::Relaxed) {
                let mut f = std::fs::File::create(&path).expect("file");
                f.write_all(&chunk).expect("write");
                f.sync_all().expect("fsync");
            }
        })
    };
    let prefix = format!("pantau-bench-busy-{}-{wait_each}", std::process::id());
    let delivered: Arc<Mutex<Vec<f64>>> = Arc::default();
    let (client, mut events) = AsyncClient::new(
        MqttOptions::new(format!("{prefix}-sub"), "127.0.0.1", 1883),
        100,
    );
    client
        .subscribe(format!("{prefix}/#"), QoS::AtLeastOnce)
        .await
        .expect("subscribe");
    let sub = {
        let delivered = delivered.clone();
        tokio::spawn(async move {
            let _client = client;
            while let Ok(ev) = events.poll().await {
                if let MqttEvent::Incoming(Packet::Publish(p)) = ev {
                    let now = now_ms();
                    if let Some(sent) = std::str::from_utf8(&p.payload)
                        .ok()
                        .and_then(|t| t.parse::<f64>().ok())
                    {
                        delivered.lock().expect("lock").push(now - sent);
                    }
                }
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let stop = CancellationToken::new();
    let settings = local_mqtt(&prefix);
    let sink = tokio::spawn(run(outbox.clone(), "mqtt".into(), settings, stop.clone()));
    // Analysis hands its messages to the stage through a queue, on its own schedule.
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<pantau_events::Message>>(256);
    let topic = format!("{prefix}/kota/cam/events/line");
    let producer = tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(25));
        for _ in 0..600 {
            tick.tick().await;
            let stamp = format!("{:.3}", now_ms()).into_bytes();
            let pair = vec![
                record(&topic, false, stamp.clone()),
                record(&topic, false, stamp),
            ];
            tx.send(pair).await.expect("stage");
        }
    });
    let commits: Arc<Mutex<Vec<f64>>> = Arc::default();
    let stage = {
        let outbox = outbox.clone();
        let commits = commits.clone();
        tokio::spawn(async move {
            let mut on_disk = Vec::new();
            while let Some(mut batch) = rx.recv().await {
                while let Ok(more) = rx.try_recv() {
                    batch.extend(more);
                }
                let t = Instant::now();
                let pending = outbox.append_later(&batch).await.expect("accepted");
                let commits = commits.clone();
                let waited = async move {
                    pending.done().await.expect("on disk");
                    commits
                        .lock()
                        .expect("lock")
                        .push(t.elapsed().as_secs_f64() * 1000.0);
                };
                if wait_each {
                    waited.await;
                } else {
                    on_disk.push(tokio::spawn(waited));
                }
            }
            for w in on_disk {
                w.await.expect("commit");
            }
        })
    };
    producer.await.expect("producer");
    stage.await.expect("stage");
    let deadline = Instant::now() + Duration::from_secs(10);
    while delivered.lock().expect("lock").len() < 1200 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    busy.store(false, Ordering::Relaxed);
    stressor.join().expect("stressor");
    stop.cancel();
    let _ = sink.await;
    sub.abort();
    let commits = commits.lock().expect("lock").clone();
    let delivered = delivered.lock().expect("lock").clone();
    (commits, delivered)
}

async fn capture_to_mqtt_latency() -> (usize, f64, f64) {
    let clip = common::root().join("demo/videos/traffic.mp4");
    let server = RtspServer::start(ServeOptions {
        address: "127.0.0.1".into(),
        port: 0,
        mounts: vec![Mount::for_file(&clip)],
        credentials: None,
    })
    .expect("RTSP server");
    let prefix = format!("pantau-bench-lat-{}", std::process::id());
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("bench.toml");
    let mut text = format!(
        "[node]\nname = \"bench\"\nsite = \"kota\"\n[mqtt]\nhost = \"127.0.0.1\"\nport = 1883\nprefix = \"{prefix}\"\n\
         [ingest]\nanalysis_fps = 5.0\n[api]\nlisten = \"127.0.0.1:0\"\n"
    );
    for cam in ["a", "b"] {
        text.push_str(&format!(
            "[[cameras]]\nid = \"{cam}\"\nurl = \"{}\"\n[[cameras.lines]]\nname = \"mid\"\npoints = [[320, 0], [320, 360]]\n",
            server.url("/traffic")
        ));
    }
    std::fs::write(&config, text).expect("config");

    let latencies: Arc<Mutex<Vec<f64>>> = Arc::default();
    let (client, mut events) = AsyncClient::new(
        MqttOptions::new(format!("{prefix}-sub"), "127.0.0.1", 1883),
        100,
    );
    client
        .subscribe(format!("{prefix}/+/+/events/#"), QoS::AtLeastOnce)
        .await
        .expect("subscribe");
    let sink = latencies.clone();
    let sub = tokio::spawn(async move {
        let _client = client;
        while let Ok(ev) = events.poll().await {
            if let MqttEvent::Incoming(Packet::Publish(p)) = ev {
                let now = SystemTime::now();
                if let Ok(e) = serde_json::from_slice::<Event>(&p.payload) {
                    if let Ok(d) = now.duration_since(e.captured_at) {
                        sink.lock().expect("lock").push(d.as_secs_f64() * 1000.0);
                    }
                }
            }
        }
    });
    let bin = common::root().join("target/release/pantau");
    let status = tokio::task::spawn_blocking(move || {
        Command::new(bin)
            .args(["run", "--view", "log", "--duration-s", "40", "--config"])
            .arg(&config)
            .env("RUST_LOG", "warn")
            .status()
            .expect("pantau runs (cargo build --release first)")
    })
    .await
    .expect("join");
    assert!(status.success());
    sub.abort();
    server.stop();
    let v = latencies.lock().expect("lock").clone();
    percentiles(v)
}

async fn delivery_while_busy() {
    for (wait_each, how) in [
        (true, "waiting for each commit"),
        (false, "handing batches on (the node)"),
    ] {
        let (commits, delivered) = delivery_while_disk_busy(wait_each).await;
        let (n, c50, c99) = percentiles(commits);
        let (d, p50, p99) = percentiles(delivered);
        println!(
            "delivery with the disk busy, {how}: {d} of 1200 events, production to MQTT p50 {p50:.0} ms, p99 {p99:.0} ms; commits ({n}) p50 {c50:.0} ms, p99 {c99:.0} ms"
        );
    }
}

fn main() {
    let rt = common::runtime();
    rt.block_on(async {
        if std::env::args().any(|a| a == "delivery") {
            delivery_while_busy().await;
            return;
        }
        let (before, _) = outbox_appends_per_second(1).await;
        let (after, per_commit) = outbox_appends_per_second(512).await;
        println!(
            "outbox: {after:.0} appends/s from 8 cameras with group commit ({per_commit:.1} appends per fsync), {before:.0} appends/s with one fsync per append (before): {:.1}x; 8 cameras at 5 analysed fps need 40",
            after / before
        );
        // `cargo bench --bench events -- outbox` stops here.
        if std::env::args().any(|a| a == "outbox") {
            return;
        }
        let rows = rows_per_second().await;
        println!("PostgreSQL: {rows:.0} event rows/s (100000 rows, batches of 2000, idempotent insert)  goal >= 50000");
        let mqtt = mqtt_events_per_second().await;
        println!("MQTT: {mqtt:.0} events/s through the outbox to Mosquitto (20000 events, QoS 1, PUBACK-acknowledged)");
        delivery_while_busy().await;
        let (n, p50, p99) = capture_to_mqtt_latency().await;
        println!(
            "capture -> MQTT latency over {n} events (2 RTSP cameras, 5 analysed fps each, 40 s): p50 {p50:.0} ms, p99 {p99:.0} ms  goal p99 < 150 ms"
        );
    });
}
