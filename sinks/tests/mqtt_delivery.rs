//! The MQTT sink against the real Mosquitto on 127.0.0.1:1883, through a TCP proxy the test
//! cuts to simulate a broker outage.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pantau_sinks::mqtt::{run, MqttSettings};
use pantau_sinks::outbox::{FullPolicy, Outbox};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use tokio::task::JoinHandle;
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

mod common;
use common::Proxy;

/// Subscribes to `prefix/#` on the local Mosquitto and collects (topic, payload) in arrival
/// order.
async fn subscriber(prefix: &str) -> (Arc<Mutex<Vec<(String, String)>>>, JoinHandle<()>) {
    subscriber_on(1883, prefix).await
}

/// [`subscriber`] on the broker at `port`.
async fn subscriber_on(
    port: u16,
    prefix: &str,
) -> (Arc<Mutex<Vec<(String, String)>>>, JoinHandle<()>) {
    let mut opts = MqttOptions::new(format!("sub-{prefix}"), "127.0.0.1", port);
    opts.set_keep_alive(Duration::from_secs(5));
    opts.set_max_packet_size(1 << 20, 1 << 20);
    let (client, mut events) = AsyncClient::new(opts, 100);
    client
        .subscribe(format!("{prefix}/#"), QoS::AtLeastOnce)
        .await
        .expect("subscribe");
    let got: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
    let sink = got.clone();
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    let mut ready = Some(ready_tx);
    let task = tokio::spawn(async move {
        let _client = client;
        while let Ok(ev) = events.poll().await {
            match ev {
                Event::Incoming(Packet::SubAck(_)) => {
                    if let Some(r) = ready.take() {
                        let _ = r.send(());
                    }
                }
                Event::Incoming(Packet::Publish(p)) => sink.lock().expect("lock").push((
                    p.topic.clone(),
                    String::from_utf8_lossy(&p.payload).into_owned(),
                )),
                _ => {}
            }
        }
    });
    tokio::time::timeout(Duration::from_secs(5), ready_rx)
        .await
        .expect("subscribed in time")
        .expect("subscribed");
    (got, task)
}

/// An outbox in `dir` and the MQTT sink publishing from it.
fn publish(
    dir: &std::path::Path,
    settings: MqttSettings,
) -> (Arc<Outbox>, CancellationToken, JoinHandle<()>) {
    let outbox = Arc::new(
        Outbox::open(
            &dir.join("o.redb"),
            &["mqtt"],
            1 << 26,
            FullPolicy::DropOldest,
        )
        .expect("outbox"),
    );
    let stop = CancellationToken::new();
    let publisher = tokio::spawn(run(outbox.clone(), "mqtt".into(), settings, stop.clone()));
    (outbox, stop, publisher)
}

fn settings(port: u16, prefix: &str) -> MqttSettings {
    MqttSettings {
        host: "127.0.0.1".into(),
        port,
        client_id: format!("pub-{prefix}"),
        credentials: None,
        availability_topic: format!("{prefix}/node/available"),
        keep_alive: Duration::from_secs(5),
        batch: 64,
        tls: None,
        max_packet_bytes: 256 * 1024,
        fallbacks: Vec::new(),
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// A Mosquitto of the test's own with `conf` (in `dir`), once it accepts connections on
/// `port`.
async fn start_mosquitto(dir: &std::path::Path, conf: &str, port: u16) -> std::process::Child {
    std::fs::write(dir.join("mosquitto.conf"), conf).expect("conf");
    let broker = std::process::Command::new("mosquitto")
        .arg("-c")
        .arg(dir.join("mosquitto.conf"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("mosquitto starts");
    wait_until("the test's broker", 10, || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    })
    .await;
    broker
}

fn unique(name: &str) -> String {
    format!(
        "pantau-test-{name}-{}-{}",
        std::process::id(),
        rand_suffix()
    )
}

fn rand_suffix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

async fn wait_until(what: &str, secs: u64, mut ok: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    while !ok() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn events_only(got: &[(String, String)]) -> Vec<(String, String)> {
    got.iter()
        .filter(|(t, _)| !t.ends_with("/available"))
        .cloned()
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_record_arrives_in_order_and_the_outbox_drains() {
    let prefix = unique("order");
    let (got, _sub) = subscriber(&prefix).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let (outbox, stop, publisher) = publish(dir.path(), settings(1883, &prefix));
    let records: Vec<_> = (0..300)
        .map(|i| {
            record(
                &format!("{prefix}/cam-{}/events/line", i % 3),
                false,
                format!("{i}").into_bytes(),
            )
        })
        .collect();
    for chunk in records.chunks(50) {
        outbox.append(chunk).await.expect("append");
    }
    wait_until("300 messages", 20, || {
        events_only(&got.lock().expect("lock")).len() >= 300
    })
    .await;
    wait_until("outbox drained", 10, || outbox.depth("mqtt") == 0).await;
    let msgs = events_only(&got.lock().expect("lock"));
    let numbers: Vec<u64> = msgs
        .iter()
        .map(|(_, p)| p.parse().expect("number"))
        .collect();
    assert_eq!(
        numbers,
        (0..300).collect::<Vec<_>>(),
        "in order, exactly once"
    );
    let availability: Vec<String> = got
        .lock()
        .expect("lock")
        .iter()
        .filter(|(t, _)| t.ends_with("/available"))
        .map(|(_, p)| p.clone())
        .collect();
    assert_eq!(availability.first().map(String::as_str), Some("online"));
    stop.cancel();
    publisher.await.expect("publisher ends");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_outage_loses_nothing() {
    let prefix = unique("outage");
    let (got, _sub) = subscriber(&prefix).await;
    let proxy = Proxy::start("127.0.0.1:1883").await;
    let dir = tempfile::tempdir().expect("tempdir");
    let (outbox, stop, publisher) = publish(dir.path(), settings(proxy.addr.port(), &prefix));
    // Events flow while the connection is cut for 30 s and restored.
    let total = 3000u64;
    let producer = produce(&outbox, &prefix, total, Duration::from_millis(12));
    tokio::time::sleep(Duration::from_secs(1)).await;
    proxy.cut();
    let during_cut = outbox.depth("mqtt");
    tokio::time::sleep(Duration::from_secs(30)).await;
    assert!(
        outbox.depth("mqtt") > during_cut,
        "events queue up while the broker is away"
    );
    proxy.restore().await;
    producer.await.expect("producer");
    wait_until("all messages after the outage", 30, || {
        let msgs = events_only(&got.lock().expect("lock"));
        let distinct: std::collections::HashSet<&str> =
            msgs.iter().map(|(_, p)| p.as_str()).collect();
        distinct.len() as u64 >= total
    })
    .await;
    wait_until("outbox drained", 10, || outbox.depth("mqtt") == 0).await;
    // Every event at least once; per camera, first arrivals in order.
    let msgs = events_only(&got.lock().expect("lock"));
    let mut first_seen: HashMap<String, Vec<u64>> = HashMap::new();
    let mut seen = std::collections::HashSet::new();
    for (topic, p) in &msgs {
        let n: u64 = p.parse().expect("number");
        if seen.insert(n) {
            first_seen.entry(topic.clone()).or_default().push(n);
        }
    }
    assert_eq!(seen.len() as u64, total);
    for (topic, ns) in first_seen {
        assert!(
            ns.windows(2).all(|w| w[0] < w[1]),
            "{topic} out of order: {ns:?}"
        );
    }
    eprintln!(
        "{} messages for {total} events ({} redelivered)",
        msgs.len(),
        msgs.len() as u64 - total
    );
    stop.cancel();
    publisher.await.expect("publisher ends");
}

/// Appends `total` events (numbered payloads, round robin over three cameras) one every
/// `every`.
fn produce(outbox: &Arc<Outbox>, prefix: &str, total: u64, every: Duration) -> JoinHandle<()> {
    let (outbox, prefix) = (outbox.clone(), prefix.to_string());
    tokio::spawn(async move {
        for i in 0..total {
            let r = record(
                &format!("{prefix}/cam-{}/events/line", i % 3),
                false,
                format!("{i}").into_bytes(),
            );
            outbox.append(&[r]).await.expect("append");
            tokio::time::sleep(every).await;
        }
    })
}

/// A broker of a cluster goes: delivery moves to the next configured broker at once, nothing
/// waits for the lost one to come back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_the_broker_goes_delivery_moves_to_the_next_one() {
    let prefix = unique("fallback");
    let (got, _sub) = subscriber(&prefix).await;
    let proxy = Proxy::start("127.0.0.1:1883").await;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut s = settings(proxy.addr.port(), &prefix);
    s.fallbacks = vec![("127.0.0.1".to_string(), 1883)];
    let (outbox, stop, publisher) = publish(dir.path(), s);
    let total = 600u64;
    let producer = produce(&outbox, &prefix, total, Duration::from_millis(10));
    tokio::time::sleep(Duration::from_secs(1)).await;
    // The first broker is gone for good.
    proxy.cut();
    producer.await.expect("producer");
    wait_until("every message through the second broker", 20, || {
        let msgs = events_only(&got.lock().expect("lock"));
        let distinct: std::collections::HashSet<&str> =
            msgs.iter().map(|(_, p)| p.as_str()).collect();
        distinct.len() as u64 >= total
    })
    .await;
    wait_until("outbox drained", 10, || outbox.depth("mqtt") == 0).await;
    stop.cancel();
    publisher.await.expect("publisher ends");
}

/// A TLS connection to the broker: a Mosquitto started here with a certificate from a CA made
/// here; pantau trusts that CA. A subscriber on a plain listener of the same broker checks
/// delivery.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishes_over_tls() {
    use std::process::{Command, Stdio};
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let openssl = |args: &[&str]| {
        let ok = Command::new("openssl")
            .args(args)
            .current_dir(d)
            .stderr(Stdio::null())
            .status()
            .expect("openssl runs")
            .success();
        assert!(ok, "openssl {args:?}");
    };
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=pantau-test-ca",
    ]);
    openssl(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=127.0.0.1",
    ]);
    std::fs::write(d.join("san.ext"), "subjectAltName=IP:127.0.0.1\n").expect("ext");
    openssl(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.pem",
        "-days",
        "2",
        "-extfile",
        "san.ext",
    ]);
    // Mosquitto started as root drops to its own user, which must be able to read these.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755)).expect("chmod dir");
    for f in ["ca.pem", "server.pem", "server.key"] {
        std::fs::set_permissions(d.join(f), std::fs::Permissions::from_mode(0o644)).expect("chmod");
    }
    let (tls_port, plain_port) = (free_port(), free_port());
    let conf = format!(
        "per_listener_settings false\nallow_anonymous true\n\
         listener {tls_port} 127.0.0.1\ncafile {0}/ca.pem\ncertfile {0}/server.pem\nkeyfile {0}/server.key\n\
         listener {plain_port} 127.0.0.1\n",
        d.display()
    );
    let mut broker = start_mosquitto(d, &conf, plain_port).await;
    let prefix = unique("tls");
    let (got, sub) = subscriber_on(plain_port, &prefix).await;

    let mut s = settings(tls_port, &prefix);
    s.tls = Some(pantau_sinks::mqtt::TlsFiles {
        ca: std::fs::read(d.join("ca.pem")).expect("ca"),
        client: None,
    });
    let (outbox, stop, publisher) = publish(d, s);
    let records: Vec<_> = (0..20)
        .map(|i| {
            record(
                &format!("{prefix}/cam/events/line"),
                false,
                format!("{i}").into_bytes(),
            )
        })
        .collect();
    outbox.append(&records).await.expect("append");
    wait_until("delivery over TLS", 15, || outbox.depth("mqtt") == 0).await;
    wait_until("20 messages", 5, || {
        got.lock()
            .expect("lock")
            .iter()
            .filter(|(_, p)| p.parse::<u32>().is_ok())
            .count()
            >= 20
    })
    .await;
    stop.cancel();
    publisher.await.expect("publisher");
    sub.abort();
    let _ = broker.kill();
    let _ = broker.wait();
}

/// A record over the packet limit goes to the dead letters with its reason; a 12 KB dispatch
/// note (2000 escaped control characters, over rumqttc's old 10 KiB default) and everything
/// after the bad record are delivered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_undeliverable_record_is_set_aside_and_delivery_goes_on() {
    let prefix = unique("dead");
    let (got, _sub) = subscriber(&prefix).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let (outbox, stop, publisher) = publish(dir.path(), settings(1883, &prefix));
    let note: String = (0..2000).map(|i| char::from((i % 31 + 1) as u8)).collect();
    let change = pantau_events::IncidentChange {
        event_id: "01KAW0Z5R3X9M4T7B2C6D8F0GH".into(),
        camera: "cam".into(),
        site: "kota".into(),
        action: "note".into(),
        state: "assigned".into(),
        assignee: None,
        escalations: 0,
        note: Some(note.clone()),
        agency: None,
        node: None,
        actor: "dina".into(),
        at: "2026-11-30T10:00:00.000Z".into(),
    };
    let topics = pantau_events::Topics {
        prefix: prefix.clone(),
        site: "kota".into(),
        node: "n".into(),
    };
    let big_note = pantau_events::Message::incident(&topics, &change);
    assert!(
        big_note.payload.len() > 10 * 1024,
        "{}",
        big_note.payload.len()
    );
    let huge = record(
        &format!("{prefix}/cam/events/line"),
        false,
        vec![b'x'; 300 * 1024],
    );
    outbox
        .append(&[record(
            &format!("{prefix}/cam/events/line"),
            false,
            b"1".to_vec(),
        )])
        .await
        .expect("append");
    outbox
        .append(std::slice::from_ref(&huge))
        .await
        .expect("append");
    outbox.append(&[big_note]).await.expect("append");
    outbox
        .append(&[record(
            &format!("{prefix}/cam/events/line"),
            false,
            b"2".to_vec(),
        )])
        .await
        .expect("append");
    wait_until("delivery past the bad record", 15, || {
        outbox.depth("mqtt") == 0
    })
    .await;
    wait_until("three messages", 5, || {
        events_only(&got.lock().expect("lock")).len() >= 3
    })
    .await;
    let delivered = events_only(&got.lock().expect("lock"));
    assert_eq!(delivered[0].1, "1");
    let incident: serde_json::Value = serde_json::from_str(&delivered[1].1).expect("json");
    assert_eq!(incident["note"].as_str(), Some(note.as_str()));
    assert_eq!(delivered[2].1, "2");
    let dead = outbox.dead_letters(10).expect("dead letters");
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].record, huge);
    assert!(
        dead[0].reason.contains("over the MQTT packet limit"),
        "{}",
        dead[0].reason
    );
    assert_eq!(outbox.dead_counts().get("mqtt"), Some(&1));
    stop.cancel();
    publisher.await.expect("publisher ends");
}

/// A broker whose limit is below pantau's (`message_size_limit` smaller than
/// `mqtt.max_packet_kb`): the message it refuses never holds up the ones after it. Whether the
/// broker drops it quietly or closes the connection each time, delivery goes on; in the second
/// case the message ends in the dead letters with the reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_the_broker_refuses_does_not_stall_delivery() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755)).expect("chmod dir");
    let port = free_port();
    let conf =
        format!("allow_anonymous true\nmessage_size_limit 20000\nlistener {port} 127.0.0.1\n");
    let mut broker = start_mosquitto(d, &conf, port).await;
    let prefix = unique("refused");
    let (got, sub) = subscriber_on(port, &prefix).await;
    let store = tempfile::tempdir().expect("tempdir");
    let (outbox, stop, publisher) = publish(store.path(), settings(port, &prefix));
    let topic = format!("{prefix}/cam/events/line");
    let big = record(&topic, false, vec![b'x'; 30_000]);
    outbox
        .append(&[record(&topic, false, b"1".to_vec())])
        .await
        .expect("append");
    outbox
        .append(std::slice::from_ref(&big))
        .await
        .expect("append");
    outbox
        .append(&[record(&topic, false, b"2".to_vec())])
        .await
        .expect("append");
    wait_until("delivery past the refused message", 40, || {
        outbox.depth("mqtt") == 0
    })
    .await;
    wait_until("both small messages", 5, || {
        let g = got.lock().expect("lock");
        ["1", "2"]
            .iter()
            .all(|want| g.iter().any(|(_, p)| p == want))
    })
    .await;
    for d in outbox.dead_letters(10).expect("dead letters") {
        assert_eq!(d.record, big);
        assert!(d.reason.contains("closed the connection"), "{}", d.reason);
    }
    stop.cancel();
    publisher.await.expect("publisher");
    sub.abort();
    let _ = broker.kill();
    let _ = broker.wait();
}
