//! The store against the real PostgreSQL on 127.0.0.1:5432 (plain PostgreSQL path).

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use pantau_events::{
    CountAggregate, Event, EventKind, IdGenerator, Lifecycle, ObjectRef, Severity, SCHEMA_VERSION,
};
use pantau_store::{Bucket, Flavour, HistoryQuery, Store};

const URL: &str = "host=127.0.0.1 port=5432 user=postgres dbname=test";

fn schema(name: &str) -> String {
    format!("pantau_test_{name}_{}", std::process::id())
}

async fn drop_schema(schema: &str) {
    let (client, conn) = tokio_postgres::connect(URL, tokio_postgres::NoTls)
        .await
        .expect("connect");
    tokio::spawn(conn);
    client
        .batch_execute(&format!("drop schema if exists {schema} cascade"))
        .await
        .expect("drop");
}

fn at(min: u64) -> SystemTime {
    // 2026-11-24T08:00:00Z plus minutes.
    UNIX_EPOCH + Duration::from_secs(1_795_507_200 + min * 60)
}

fn crossing(ids: &IdGenerator, minute: u64, class: &str) -> Event {
    Event {
        id: ids.at(at(minute)),
        schema: SCHEMA_VERSION,
        site: "lubuklinggau".into(),
        camera: "simpang-lima".into(),
        rule: "stop-line".into(),
        kind: EventKind::LineCrossing,
        lifecycle: Lifecycle::Single,
        incident: None,
        captured_at: at(minute),
        severity: Severity::Info,
        object: Some(ObjectRef {
            class: class.into(),
            track_id: minute,
            bbox: [0.0, 0.0, 10.0, 10.0],
            confidence: 0.9,
        }),
        direction: Some("in".into()),
        snapshot: None,
        details: BTreeMap::new(),
    }
}

fn minute_counts(ids: &IdGenerator, minute: u64, cars_in: u64, cars_out: u64) -> CountAggregate {
    let mut counts = BTreeMap::new();
    counts.insert(
        "in".to_string(),
        BTreeMap::from([("car".to_string(), cars_in)]),
    );
    counts.insert(
        "out".to_string(),
        BTreeMap::from([("car".to_string(), cars_out)]),
    );
    CountAggregate {
        id: ids.at(at(minute)),
        schema: SCHEMA_VERSION,
        site: "lubuklinggau".into(),
        camera: "simpang-lima".into(),
        line: "stop-line".into(),
        period_start: at(minute),
        period_s: 60,
        counts,
    }
}

#[tokio::test]
async fn writes_are_idempotent_and_history_rolls_up() {
    let schema = schema("history");
    drop_schema(&schema).await;
    let store = Store::connect(URL, &schema)
        .await
        .expect("connect and migrate");
    assert_eq!(store.flavour(), Flavour::Postgres);
    let ids = IdGenerator::new();
    let events: Vec<Event> = (0..50).map(|m| crossing(&ids, m, "car")).collect();
    // Two hours of minute counts: 3 in and 1 out every minute.
    let counts: Vec<CountAggregate> = (0..120).map(|m| minute_counts(&ids, m, 3, 1)).collect();
    store.write(&events, &counts).await.expect("write");
    // A replay of the same batch (after a crash) changes nothing.
    store.write(&events, &counts).await.expect("rewrite");
    assert_eq!(store.event_count().await.expect("count"), 50);

    let query = |bucket| HistoryQuery {
        from: at(0),
        to: at(120),
        bucket,
        camera: Some("simpang-lima".into()),
        line: None,
        class: None,
        direction: Some("in".into()),
        cameras: None,
    };
    let five = store.history(&query(Bucket::M5)).await.expect("5m");
    assert_eq!(five.len(), 24);
    assert!(five.iter().all(|r| r.count == 15), "{five:?}");
    let fifteen = store.history(&query(Bucket::M15)).await.expect("15m");
    assert_eq!(fifteen.len(), 8);
    assert!(fifteen.iter().all(|r| r.count == 45));
    let hour = store.history(&query(Bucket::H1)).await.expect("1h");
    assert_eq!(
        hour.iter().map(|r| r.count).collect::<Vec<_>>(),
        vec![180, 180]
    );
    let day = store
        .history(&HistoryQuery {
            from: at(0) - Duration::from_secs(8 * 3600),
            to: at(120),
            ..query(Bucket::D1)
        })
        .await
        .expect("1d");
    assert_eq!(day.len(), 1);
    assert_eq!(day[0].count, 360);
    assert_eq!(
        day[0].bucket_start,
        at(0) - Duration::from_secs(8 * 3600),
        "UTC day"
    );

    // Reconnecting does not re-run migrations.
    drop(store);
    let store = Store::connect(URL, &schema).await.expect("reconnect");
    assert_eq!(store.event_count().await.expect("count"), 50);
    drop_schema(&schema).await;
}

#[tokio::test]
async fn bad_schema_names_and_unreachable_databases_are_explained() {
    let err = Store::connect(URL, "Robert'); drop table")
        .await
        .expect_err("bad schema");
    assert!(err.to_string().contains("is not valid"), "{err}");
    let err = Store::connect("host=127.0.0.1 port=1 user=postgres dbname=test", "pantau")
        .await
        .expect_err("nothing listens on port 1");
    assert!(
        err.to_string()
            .to_lowercase()
            .contains("connection refused")
            || err.to_string().contains("error connecting"),
        "{err}"
    );
}

mod common;

/// Rows keep flowing into the outbox while the database connection is cut for 30 s; once it is
/// back every event is stored exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_outage_loses_and_duplicates_nothing() {
    use pantau_sinks::outbox::{FullPolicy, Outbox};
    use std::sync::Arc;

    let schema = schema("outage");
    drop_schema(&schema).await;
    let proxy = common::Proxy::start("127.0.0.1:5432").await;
    let dir = tempfile::tempdir().expect("tempdir");
    let outbox = Arc::new(
        Outbox::open(
            &dir.path().join("o.redb"),
            &["store"],
            1 << 26,
            FullPolicy::DropOldest,
        )
        .expect("outbox"),
    );
    let stop = tokio_util::sync::CancellationToken::new();
    let url = format!(
        "host=127.0.0.1 port={} user=postgres dbname=test connect_timeout=2",
        proxy.addr.port()
    );
    let sink = tokio::spawn(pantau_sinks::store::run_sink(
        outbox.clone(),
        "store".into(),
        url,
        schema.clone(),
        None,
        stop.clone(),
    ));
    let ids = IdGenerator::new();
    let total = 2400u64;
    let producer = {
        let outbox = outbox.clone();
        tokio::spawn(async move {
            for i in 0..total {
                let e = crossing(&ids, i % 240, "car");
                let payload = serde_json::to_vec(&e).expect("json");
                outbox
                    .append(&[pantau_events::Message {
                        kind: pantau_events::Kind::Event,
                        topic: "p/site/simpang-lima/events/stop-line".into(),
                        retain: false,
                        payload,
                    }])
                    .await
                    .expect("append");
                tokio::time::sleep(Duration::from_millis(15)).await;
            }
        })
    };
    tokio::time::sleep(Duration::from_secs(1)).await;
    proxy.cut();
    tokio::time::sleep(Duration::from_secs(30)).await;
    assert!(
        outbox.depth("store") > 50,
        "rows wait while the database is away"
    );
    proxy.restore().await;
    producer.await.expect("producer");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while outbox.depth("store") > 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "outbox did not drain"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop.cancel();
    sink.await.expect("sink ends");
    let store = Store::connect(URL, &schema).await.expect("connect");
    assert_eq!(
        store.event_count().await.expect("count"),
        total as i64,
        "exactly once"
    );
    drop_schema(&schema).await;
}

#[tokio::test]
async fn camera_status_changes_are_kept_as_history() {
    let schema = schema("status");
    drop_schema(&schema).await;
    let store = Store::connect(URL, &schema).await.expect("connect");
    let ids = IdGenerator::new();
    let mut events = Vec::new();
    for (minute, state, problem) in [
        (0, "streaming", None),
        (5, "backing_off", Some("connection_refused")),
        (6, "streaming", None),
    ] {
        let mut e = crossing(&ids, minute, "car");
        e.kind = EventKind::CameraStatus;
        e.rule = "camera".into();
        e.object = None;
        e.direction = None;
        e.details.insert("state".into(), state.into());
        if let Some(p) = problem {
            e.details.insert("problem".into(), p.into());
            e.details
                .insert("message".into(), "connection refused".into());
        }
        events.push(e);
    }
    store.write(&events, &[]).await.expect("write");
    store.write(&events, &[]).await.expect("rewrite");
    let (client, conn) = tokio_postgres::connect(URL, tokio_postgres::NoTls)
        .await
        .expect("connect");
    tokio::spawn(conn);
    let rows = client
        .query(
            &format!("select state, problem from {schema}.camera_status order by at"),
            &[],
        )
        .await
        .expect("query");
    let got: Vec<(String, Option<String>)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    assert_eq!(
        got,
        vec![
            ("streaming".to_string(), None),
            (
                "backing_off".to_string(),
                Some("connection_refused".to_string())
            ),
            ("streaming".to_string(), None)
        ]
    );
    drop_schema(&schema).await;
}

/// Rows the database refuses (a camera clock in 1970 or 2090: no partition holds them) go to
/// the dead letters with the reason; the rest of their batch and everything after is stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_rows_are_set_aside_and_the_rest_is_stored() {
    use pantau_sinks::outbox::{FullPolicy, Outbox};
    use std::sync::Arc;

    let schema = schema("dead");
    drop_schema(&schema).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let outbox = Arc::new(
        Outbox::open(
            &dir.path().join("o.redb"),
            &["store"],
            1 << 26,
            FullPolicy::DropOldest,
        )
        .expect("outbox"),
    );
    let ids = IdGenerator::new();
    let now = SystemTime::now();
    let mut events: Vec<Event> = (0..6).map(|i| crossing(&ids, i, "car")).collect();
    events[2].captured_at = UNIX_EPOCH + Duration::from_secs(86_400);
    events[2].id = ids.at(events[2].captured_at);
    events[4].captured_at = now + Duration::from_secs(64 * 365 * 86_400);
    events[4].id = ids.at(events[4].captured_at);
    let message = |e: &Event| pantau_events::Message {
        kind: pantau_events::Kind::Event,
        topic: "p/kota/simpang-lima/events/stop-line".into(),
        retain: false,
        payload: serde_json::to_vec(e).expect("json"),
    };
    let batch: Vec<_> = events.iter().map(message).collect();
    outbox.append(&batch).await.expect("append");
    let stop = tokio_util::sync::CancellationToken::new();
    let sink = tokio::spawn(pantau_sinks::store::run_sink(
        outbox.clone(),
        "store".into(),
        URL.into(),
        schema.clone(),
        None,
        stop.clone(),
    ));
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while outbox.depth("store") > 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the store sink is stuck"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Later events are stored too.
    let later = crossing(&ids, 30, "bus");
    outbox.append(&[message(&later)]).await.expect("append");
    while outbox.depth("store") > 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the store sink is stuck"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop.cancel();
    sink.await.expect("sink");
    let dead = outbox.dead_letters(10).expect("dead letters");
    let dead_ids: Vec<String> = dead
        .iter()
        .map(|d| {
            serde_json::from_slice::<Event>(&d.record.payload)
                .expect("event")
                .id
                .to_string()
        })
        .collect();
    assert_eq!(
        dead_ids,
        [events[2].id.to_string(), events[4].id.to_string()]
    );
    assert!(
        dead.iter().all(|d| d.reason.contains("no partition")),
        "{:?}",
        dead.iter().map(|d| &d.reason).collect::<Vec<_>>()
    );
    let store = Store::connect(URL, &schema).await.expect("connect");
    assert_eq!(store.event_count().await.expect("count"), 5);
    drop(store);
    drop_schema(&schema).await;
}
