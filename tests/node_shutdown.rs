//! The node in-process (`pantau_node::run`) against a real RTSP server, Mosquitto and
//! PostgreSQL: a clean stop with a console's live stream open publishes and stores the same
//! events, and the counts of the last open period are there.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use pantau_ingest::serve::{Mount, RtspServer, ServeOptions};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

#[path = "support/mqtt.rs"]
mod mqtt;

fn repo(path: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// One HTTP/1.1 request on a fresh connection; returns the stream after the request was sent.
async fn request(addr: std::net::SocketAddr, head: &str, body: &str) -> tokio::net::TcpStream {
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let text = format!(
        "{head}\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(text.as_bytes()).await.expect("write");
    s
}

/// Logs in as the admin (created by the node from the environment) and returns the token.
async fn login(addr: std::net::SocketAddr, password: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let mut s = request(
            addr,
            "POST /api/v1/auth/login HTTP/1.1\r\nConnection: close",
            &format!(r#"{{"user":"admin","password":"{password}"}}"#),
        )
        .await;
        let mut out = String::new();
        let _ = s.read_to_string(&mut out).await;
        if out.starts_with("HTTP/1.1 200") {
            let body = &out[out.find("\r\n\r\n").expect("body") + 4..];
            let v: serde_json::Value = serde_json::from_str(body).expect("json");
            return v["token"].as_str().expect("token").to_string();
        }
        assert!(Instant::now() < deadline, "no login within 30 s: {out}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clean_stop_delivers_everything_and_ends_live_streams() {
    let tag = format!("node{}", std::process::id());
    let prefix = format!("pantau-test-{tag}");
    let schema = format!("pantau_test_{tag}");
    let password = "node-test-password-1";
    std::env::set_var("PANTAU_TEST_NODE_ADMIN", password);
    let server = RtspServer::start(ServeOptions {
        address: "127.0.0.1".into(),
        port: 0,
        mounts: vec![Mount::for_file(&repo("demo/videos/traffic.mp4"))],
        credentials: None,
    })
    .expect("RTSP server");
    let dir = tempfile::tempdir().expect("tempdir");
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
count_period_s = 3600

[api]
listen = "127.0.0.1:0"
admin_password_env = "PANTAU_TEST_NODE_ADMIN"

[detector]
model = "{model}"

[[cameras]]
id = "traffic"
url = "{url}"
analysis_fps = 5

[[cameras.lines]]
name = "midblock"
points = [[320, 0], [320, 360]]
"#,
        url = server.url("/traffic"),
        model = repo("models/yolox_nano.toml").display(),
    );
    let valid = pantau_config::Config::parse(&text)
        .expect("parses")
        .validate(dir.path(), &|v| std::env::var(v).ok())
        .unwrap_or_else(|e| panic!("valid config: {e}"));
    let (got, subscriber) = mqtt::subscribe(&format!("sub-{tag}"), &format!("{prefix}/#")).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("listen");
    let addr = listener.local_addr().expect("addr");
    let shutdown = CancellationToken::new();
    let node = tokio::spawn(pantau_node::run(
        pantau_node::NodeConfig {
            valid,
            base: dir.path().to_path_buf(),
        },
        Some(listener),
        shutdown.clone(),
    ));

    // A console watching the live stream the whole time.
    let token = login(addr, password).await;
    let mut live = request(
        addr,
        &format!("GET /api/v1/live HTTP/1.1\r\nAuthorization: Bearer {token}"),
        "",
    )
    .await;
    let live_reader = tokio::spawn(async move {
        let mut seen = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            match live.read(&mut buf).await {
                Ok(0) | Err(_) => return seen,
                Ok(n) => seen.extend_from_slice(&buf[..n]),
            }
        }
    });

    // Crossings flow; the count period (an hour) is still open when the node stops.
    let deadline = Instant::now() + Duration::from_secs(60);
    let crossing_topic = format!("{prefix}/kota/traffic/events/midblock");
    while got
        .lock()
        .expect("lock")
        .iter()
        .filter(|(t, _)| *t == crossing_topic)
        .count()
        < 3
    {
        assert!(Instant::now() < deadline, "no crossings within 60 s");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let stopping = Instant::now();
    shutdown.cancel();
    let stopped = tokio::time::timeout(Duration::from_secs(30), node)
        .await
        .expect("the node stops within 30 s with a live stream open")
        .expect("task")
        .expect("node ran");
    let took = stopping.elapsed();
    assert!(
        stopped.undelivered.iter().all(|(_, n)| *n == 0),
        "everything delivered: {:?}",
        stopped.undelivered
    );
    let live_seen = tokio::time::timeout(Duration::from_secs(5), live_reader)
        .await
        .expect("the live stream ended with the node")
        .expect("reader");
    let live_text = String::from_utf8_lossy(&live_seen);
    assert!(live_text.starts_with("HTTP/1.1 200"), "{live_text}");
    assert!(
        live_text.contains("event: event"),
        "live events: {live_text}"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    subscriber.abort();
    server.stop();

    let msgs = got.lock().expect("lock").clone();
    let published: HashSet<String> = msgs
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
    let rows = db
        .query(
            &format!("select id from {schema}.events where kind = 'line_crossing'"),
            &[],
        )
        .await
        .expect("query");
    let stored: HashSet<String> = rows.iter().map(|r| r.get(0)).collect();
    assert_eq!(
        published, stored,
        "every published crossing is stored and every stored one was published"
    );
    // The hour was still open at the stop: its counts were handed over then, and they add up
    // to the crossings.
    let counted: i64 = db
        .query_one(
            &format!(
                "select coalesce(sum(n), 0)::bigint from {schema}.counts where line = 'midblock'"
            ),
            &[],
        )
        .await
        .expect("query")
        .get(0);
    assert_eq!(counted, stored.len() as i64, "counts of the open period");
    let on_mqtt: u64 = msgs
        .iter()
        .filter(|(t, _)| t.ends_with("/traffic/counts"))
        .map(|(_, v)| {
            v["counts"]
                .as_object()
                .map(|d| {
                    d.values()
                        .filter_map(|c| c.as_object())
                        .flat_map(|c| c.values().filter_map(|n| n.as_u64()))
                        .sum::<u64>()
                })
                .unwrap_or(0)
        })
        .sum();
    assert_eq!(on_mqtt, stored.len() as u64, "counts on MQTT");
    // The stop itself was published: the camera's last status.
    let last_state = msgs
        .iter()
        .rev()
        .find(|(t, _)| t.ends_with("/traffic/status"))
        .and_then(|(_, v)| v["details"]["state"].as_str().map(String::from));
    assert_eq!(last_state.as_deref(), Some("stopped"));
    eprintln!(
        "stopped in {:.1} s; {} crossings published and stored",
        took.as_secs_f64(),
        stored.len()
    );
    db.batch_execute(&format!("drop schema {schema} cascade"))
        .await
        .expect("clean up");
}
