//! Fleet leases and the write fence against the real PostgreSQL on 127.0.0.1:5432: one holder
//! per camera, generations that never overlap, and a stale node's rows refused by the database.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use pantau_events::{Event, EventKind, IdGenerator, Lifecycle, Severity, SCHEMA_VERSION};
use pantau_store::Store;

const URL: &str = "host=127.0.0.1 port=5432 user=postgres dbname=test";

async fn fresh(name: &str) -> (Store, String) {
    let schema = format!("pantau_test_{name}_{}", std::process::id());
    let (client, conn) = tokio_postgres::connect(URL, tokio_postgres::NoTls)
        .await
        .expect("connect");
    tokio::spawn(conn);
    client
        .batch_execute(&format!("drop schema if exists {schema} cascade"))
        .await
        .expect("drop");
    (Store::connect(URL, &schema).await.expect("migrate"), schema)
}

fn event(ids: &IdGenerator, camera: &str, at: SystemTime) -> Event {
    Event {
        id: ids.at(at),
        schema: SCHEMA_VERSION,
        site: "kota".into(),
        camera: camera.into(),
        rule: "stop-line".into(),
        kind: EventKind::LineCrossing,
        lifecycle: Lifecycle::Single,
        incident: None,
        captured_at: at,
        severity: Severity::Info,
        object: None,
        direction: Some("in".into()),
        snapshot: None,
        details: BTreeMap::new(),
    }
}

#[tokio::test]
async fn one_holder_per_camera_and_generations_never_overlap() {
    let (store, schema) = fresh("fleet_lease").await;
    let lease = Duration::from_secs(1);
    assert_eq!(
        store
            .fleet_acquire("a", "gate", lease)
            .await
            .expect("store"),
        Some(1)
    );
    // Held: nobody else takes it, however often they try.
    assert_eq!(
        store
            .fleet_acquire("b", "gate", lease)
            .await
            .expect("store"),
        None
    );
    assert_eq!(
        store.fleet_renew("a", lease, &[]).await.expect("store"),
        vec![("gate".to_string(), 1)]
    );
    assert_eq!(
        store.fleet_renew("b", lease, &[]).await.expect("store"),
        vec![]
    );
    // a stops renewing (dead, hung or cut off): after the lease, b takes it.
    tokio::time::sleep(Duration::from_millis(1300)).await;
    assert_eq!(
        store.fleet_renew("a", lease, &[]).await.expect("store"),
        vec![],
        "an expired lease is not renewed"
    );
    assert_eq!(
        store
            .fleet_acquire("b", "gate", lease)
            .await
            .expect("store"),
        Some(2)
    );
    // b hands it back: a may take it at once.
    store.fleet_release("b", "gate", 2).await.expect("store");
    assert_eq!(
        store
            .fleet_acquire("a", "gate", lease)
            .await
            .expect("store"),
        Some(3)
    );
    // A release of an old generation changes nothing.
    store.fleet_release("b", "gate", 2).await.expect("store");
    assert_eq!(
        store
            .fleet_acquire("b", "gate", lease)
            .await
            .expect("store"),
        None
    );

    let log = store.fleet_lease_log(Some("gate")).await.expect("store");
    let who: Vec<(&str, i64, Option<&str>)> = log
        .iter()
        .map(|g| (g.node.as_str(), g.generation, g.ended.as_deref()))
        .collect();
    assert_eq!(
        who,
        vec![
            ("a", 1, Some("expired")),
            ("b", 2, Some("released")),
            ("a", 3, None)
        ]
    );
    for w in log.windows(2) {
        assert!(
            w[0].valid_until <= w[1].acquired_at,
            "generation {} ends before {} starts: {log:?}",
            w[0].generation,
            w[1].generation
        );
    }
    let state = store.fleet_state().await.expect("store");
    assert_eq!(state.held().count(), 1);
    drop(store);
    let _ = schema;
}

#[tokio::test]
async fn the_database_refuses_a_stale_nodes_rows() {
    let (store, _schema) = fresh("fleet_fence").await;
    let lease = Duration::from_secs(1);
    let ids = IdGenerator::new();
    let stale = Store::connect(URL, store.schema()).await.expect("store");
    stale.fence_writes_as("a");
    let current = Store::connect(URL, store.schema()).await.expect("store");
    current.fence_writes_as("b");

    // A camera never leased (a single node, citizen reports) is not fenced.
    stale
        .write(&[event(&ids, "solo", SystemTime::now())], &[])
        .await
        .expect("no lease, no fence");

    assert_eq!(
        store
            .fleet_acquire("a", "gate", lease)
            .await
            .expect("store"),
        Some(1)
    );
    let while_held = SystemTime::now();
    stale
        .write(&[event(&ids, "gate", while_held)], &[])
        .await
        .expect("a writes while it holds the lease");
    tokio::time::sleep(Duration::from_millis(1300)).await;
    let long = Duration::from_secs(30);
    assert_eq!(
        store.fleet_acquire("b", "gate", long).await.expect("store"),
        Some(2)
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after = SystemTime::now();
    // a wakes up from a hang and writes what it saw after its lease ended: refused.
    let e = stale
        .write(&[event(&ids, "gate", after)], &[])
        .await
        .expect_err("a stale node's row is refused");
    assert!(e.is_refusal(), "a refusal goes to the dead letters: {e}");
    assert!(e.to_string().contains("not leased to node a"), "{e}");
    // Late delivery of what a saw while it held the lease is still taken.
    stale
        .write(
            &[event(&ids, "gate", while_held + Duration::from_millis(10))],
            &[],
        )
        .await
        .expect("a's rows from its own lease arrive late but are taken");
    current
        .write(&[event(&ids, "gate", after)], &[])
        .await
        .expect("the holder writes");
    // Without a fence (a single node, the API) nothing is checked.
    store
        .write(
            &[event(&ids, "gate", after + Duration::from_millis(5))],
            &[],
        )
        .await
        .expect("unfenced");
    assert_eq!(store.event_count().await.expect("store"), 5);
}
