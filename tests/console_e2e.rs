//! The web console end to end in headless Chromium (Debian `chromium`, driven by
//! playwright-core from `.deps/console-test`, installed by scripts/setup.sh): pantau runs on a
//! replayed clip with Mosquitto and PostgreSQL; the browser logs in, sees an alert from the
//! clip on the wall, acknowledges and assigns it, takes a citizen report on the wall, links it
//! to the alert and closes it, opens the planner chart, downloads the CSV,
//! draws a counting line, switches to Indonesian and opens the API docs
//! (tests/console/e2e.mjs). The dispatch changes must also arrive on MQTT.
//!
//! Screenshots go to `target/console-shots`, or to `$PANTAU_SCREENSHOTS` (`make screenshots`
//! writes the ones in docs/).

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[path = "support/mqtt.rs"]
mod mqtt;
use mqtt::subscribe;

const DB: &str = "host=127.0.0.1 port=5432 user=postgres dbname=test";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_in_chromium_shows_alerts_dispatch_history_and_admin() {
    let playwright = root().join(".deps/console-test/node_modules/playwright-core");
    assert!(
        playwright.is_dir() && std::path::Path::new("/usr/bin/chromium").exists(),
        "the browser test needs Debian's chromium and playwright-core: run scripts/setup.sh"
    );
    let pid = std::process::id();
    let schema = format!("pantau_console_{pid}");
    let prefix = format!("pantau-console-{pid}");
    let (db, conn) = tokio_postgres::connect(DB, tokio_postgres::NoTls)
        .await
        .expect("database");
    tokio::spawn(conn);
    db.batch_execute(&format!("drop schema if exists {schema} cascade"))
        .await
        .expect("drop");

    // Dispatch changes on MQTT.
    let (got, subscriber) = subscribe(
        &format!("console-e2e-{pid}"),
        &format!("{prefix}/+/+/incidents"),
    )
    .await;

    let dir = tempfile::tempdir().expect("tempdir");
    let clip = root().join("demo/videos/vtest.avi");
    let config = dir.path().join("pantau.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[node]
name = "console-test"
site = "kota"

[ingest]
analysis_fps = 5.0

[mqtt]
host = "127.0.0.1"
port = 1883
prefix = "{prefix}"

[store]
url = "{DB}"
schema = "{schema}"

[outbox]
count_period_s = 10

[api]
listen = "127.0.0.1:0"

[detector]
classes = ["person"]

[agencies.polres]
name = "Polres"
groups = ["polres", "shared"]

[agencies.pemkot]
name = "Pemkot"
groups = ["pemkot", "shared"]

[[cameras]]
id = "campus"
name = "Campus (replayed clip)"
url = "file://{clip}"
group = "pemkot"

[[cameras.lines]]
name = "walkway"
points = [[0, 330], [768, 330]]

[[cameras.zones]]
name = "road"
polygon = [[0, 150], [768, 150], [768, 300], [0, 300]]
severity = "warning"
"#,
            clip = clip.display()
        ),
    )
    .expect("config");

    let password = format!("console-test-{pid}-pw");
    let mut pantau = Command::new(env!("CARGO_BIN_EXE_pantau"))
        .args(["run", "--view", "log", "--duration-s", "240", "--config"])
        .arg(&config)
        .env("PANTAU_ADMIN_PASSWORD", &password)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("pantau starts");
    let stderr = pantau.stderr.take().expect("stderr");
    let (url_tx, url_rx) = std::sync::mpsc::channel();
    let log: Arc<Mutex<Vec<String>>> = Arc::default();
    let log_lines = log.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(rest) = line
                .contains("API listening")
                .then(|| line.split("http://").nth(1))
                .flatten()
            {
                let addr = rest
                    .split(['/', ' '])
                    .next()
                    .unwrap_or_default()
                    .to_string();
                let _ = url_tx.send(format!("http://{addr}"));
            }
            log_lines.lock().expect("lock").push(line);
        }
    });
    let base = url_rx
        .recv_timeout(Duration::from_secs(60))
        .unwrap_or_else(|_| {
            panic!(
                "pantau did not start its API:\n{}",
                log.lock().expect("lock").join("\n")
            )
        });

    let shots = std::env::var("PANTAU_SCREENSHOTS")
        .map(PathBuf::from)
        .unwrap_or_else(|_| root().join("target/console-shots"));
    let browser = {
        let shots = shots.clone();
        let playwright = playwright
            .parent()
            .expect("node_modules")
            .parent()
            .expect("dir")
            .to_path_buf();
        tokio::task::spawn_blocking(move || {
            Command::new("node")
                .arg(root().join("tests/console/e2e.mjs"))
                .env("PANTAU_URL", &base)
                .env("PANTAU_USER", "admin")
                .env("PANTAU_PASSWORD", &password)
                .env("SHOTS_DIR", &shots)
                .env("PLAYWRIGHT_DIR", playwright)
                .output()
                .expect("node runs")
        })
        .await
        .expect("join")
    };
    let _ = pantau.kill();
    let _ = pantau.wait();
    let out = String::from_utf8_lossy(&browser.stdout);
    let err = String::from_utf8_lossy(&browser.stderr);
    assert!(
        browser.status.success() && out.contains("console e2e ok"),
        "browser test failed:\n{out}\n{err}\npantau log (last 40 lines):\n{}",
        log.lock()
            .expect("lock")
            .iter()
            .rev()
            .take(40)
            .rev()
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
    println!("{out}");
    for page in [
        "login", "wall", "incident", "report", "planner", "admin", "wall-id", "api-docs",
    ] {
        let f = shots.join(format!("console-{page}.png"));
        assert!(
            f.metadata().map(|m| m.len() > 10_000).unwrap_or(false),
            "{} missing",
            f.display()
        );
    }

    // The acknowledge and the assignment went out on MQTT.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let actions: Vec<String> = got
            .lock()
            .expect("lock")
            .iter()
            .filter_map(|(_, v)| v["action"].as_str().map(str::to_string))
            .collect();
        if actions.contains(&"acknowledge".to_string()) && actions.contains(&"assign".to_string()) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "incident changes on MQTT: {actions:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    subscriber.abort();
    db.batch_execute(&format!("drop schema {schema} cascade"))
        .await
        .expect("clean up");
}
