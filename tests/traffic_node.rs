//! The traffic rules through the running node (`pantau_node::run`), not only replay: a camera of
//! the test's RTSP server with a calibration and a lane drawn the wrong way round publishes
//! `wrong_way` events on MQTT, each with its CAP alert on `.../cap`, stores the same events,
//! and its crossing events carry the vehicle's speed.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use pantau_ingest::serve::{Mount, RtspServer, ServeOptions};
use tokio_util::sync::CancellationToken;

#[path = "support/mqtt.rs"]
mod mqtt;

fn repo(path: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_way_and_speeds_flow_through_the_node_to_mqtt_cap_and_the_store() {
    let tag = format!("traffic{}", std::process::id());
    let prefix = format!("pantau-test-{tag}");
    let schema = format!("pantau_test_{tag}");
    let server = RtspServer::start(ServeOptions {
        address: "127.0.0.1".into(),
        port: 0,
        mounts: vec![Mount::for_file(&repo("demo/videos/traffic.mp4"))],
        credentials: None,
    })
    .expect("RTSP server");
    let dir = tempfile::tempdir().expect("tempdir");
    // The scene of docs/rules.md, with the eastbound lane's arrow pointing west on purpose.
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
enabled = false

[detector]
model = "{model}"

[[cameras]]
id = "traffic"
url = "{url}"
analysis_fps = 5

[[cameras.lines]]
name = "midblock"
points = [[320, 0], [320, 360]]

[cameras.calibration]
image = [[58, 218], [498, 218], [565, 40], [203, 40]]
ground = [[-9.07, 0], [6.16, 0], [10.29, 6.8], [-4.92, 6.8]]
latitude = -3.2946
longitude = 102.8617
heading_deg = 0

[[cameras.lanes]]
name = "westbound"
polygon = [[0, 0], [640, 0], [640, 148], [0, 148]]
direction = [[600, 80], [40, 80]]

[[cameras.lanes]]
name = "eastbound-reversed"
polygon = [[0, 152], [640, 152], [640, 360], [0, 360]]
direction = [[600, 250], [40, 250]]

[cameras.rules]
wrong_way_s = 1.5
"#,
        url = server.url("/traffic"),
        model = repo("models/yolox_nano.toml").display(),
    );
    let valid = pantau_config::Config::parse(&text)
        .expect("parses")
        .validate(dir.path(), &|v| std::env::var(v).ok())
        .unwrap_or_else(|e| panic!("valid config: {e}"));
    let (got, subscriber) =
        mqtt::subscribe_raw(&format!("sub-{tag}"), &format!("{prefix}/#")).await;
    let shutdown = CancellationToken::new();
    let node = tokio::spawn(pantau_node::run(
        pantau_node::NodeConfig {
            valid,
            base: dir.path().to_path_buf(),
        },
        None,
        shutdown.clone(),
    ));

    let wrong_topic = format!("{prefix}/kota/traffic/events/eastbound-reversed");
    let cap_topic = format!("{prefix}/kota/traffic/cap");
    let count = |topic: &str| {
        got.lock()
            .expect("lock")
            .iter()
            .filter(|(t, _)| t == topic)
            .count()
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while count(&wrong_topic) < 3 || count(&cap_topic) < 3 {
        assert!(
            Instant::now() < deadline,
            "within 60 s: {} wrong-way events, {} CAP alerts",
            count(&wrong_topic),
            count(&cap_topic)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(30), node)
        .await
        .expect("the node stops within 30 s")
        .expect("task")
        .expect("node ran");
    tokio::time::sleep(Duration::from_millis(300)).await;
    subscriber.abort();
    server.stop();

    let msgs = got.lock().expect("lock").clone();
    let json = |payload: &[u8]| serde_json::from_slice::<serde_json::Value>(payload).ok();
    let wrong: Vec<serde_json::Value> = msgs
        .iter()
        .filter(|(t, _)| *t == wrong_topic)
        .filter_map(|(_, p)| json(p))
        .collect();
    assert!(
        wrong
            .iter()
            .all(|e| e["kind"] == "wrong_way" && e["severity"] == "warning"),
        "{wrong:?}"
    );
    assert!(
        wrong.iter().all(|e| e["snapshot"].is_string()),
        "every alert has a snapshot: {wrong:?}"
    );
    // Nothing wrong in the lane drawn the right way.
    assert_eq!(count(&format!("{prefix}/kota/traffic/events/westbound")), 0);
    // Each wrong-way alert has its CAP alert, naming the event.
    let caps: Vec<String> = msgs
        .iter()
        .filter(|(t, _)| *t == cap_topic)
        .map(|(_, p)| String::from_utf8_lossy(p).into_owned())
        .collect();
    for e in &wrong {
        let id = e["id"].as_str().expect("id");
        assert!(
            caps.iter()
                .any(|c| c.contains(&format!("<identifier>{id}</identifier>"))),
            "no CAP alert for {id}"
        );
    }
    assert!(caps
        .iter()
        .all(|c| c.contains("urn:oasis:names:tc:emergency:cap:1.2")));
    // Crossings carry the speed.
    let speeds: Vec<f64> = msgs
        .iter()
        .filter(|(t, _)| t.ends_with("/events/midblock"))
        .filter_map(|(_, p)| json(p))
        .filter_map(|e| e["details"]["speed_kmh"].as_f64())
        .collect();
    assert!(!speeds.is_empty(), "crossings with a speed");
    assert!(
        speeds.iter().all(|s| (3.0..=120.0).contains(s)),
        "{speeds:?}"
    );

    // The same wrong-way events are stored.
    let (db, conn) = tokio_postgres::connect(
        "host=127.0.0.1 user=postgres dbname=test",
        tokio_postgres::NoTls,
    )
    .await
    .expect("database");
    tokio::spawn(conn);
    let rows = db
        .query(
            &format!("select id from {schema}.events where kind = 'wrong_way'"),
            &[],
        )
        .await
        .expect("query");
    let stored: HashSet<String> = rows.iter().map(|r| r.get(0)).collect();
    let published: HashSet<String> = wrong
        .iter()
        .filter_map(|e| e["id"].as_str().map(String::from))
        .collect();
    assert_eq!(
        published, stored,
        "every published wrong-way event is stored"
    );
    db.batch_execute(&format!("drop schema {schema} cascade"))
        .await
        .expect("clean up");
}
