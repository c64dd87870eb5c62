//! The router without a socket (`oneshot`): every route, success and bad input.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use pantau_dashboard_api::{app, ApiState};
use pantau_events::{CountAggregate, IdGenerator, SCHEMA_VERSION};
use pantau_ingest::Ingest;
use pantau_sinks::store::Store;
use tower::ServiceExt;

const DB: &str = "host=127.0.0.1 port=5432 user=postgres dbname=test";

async fn get(state: &ApiState, uri: &str) -> (StatusCode, String) {
    let res = app(state.clone())
        .oneshot(Request::get(uri).body(Body::empty()).expect("request"))
        .await
        .expect("response");
    let status = res.status();
    let body = res.into_body().collect().await.expect("body").to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

fn camera(id: &str) -> pantau_core::CameraSettings {
    let text =
        format!("[[cameras]]\nid = \"{id}\"\nurl = \"test://ball?width=160&height=120&fps=10\"\n");
    pantau_core::Config::parse(&text)
        .expect("parses")
        .validate(Path::new("/"), &|_| None)
        .expect("valid")
        .cameras
        .remove(0)
}

async fn state_with_camera() -> (ApiState, pantau_ingest::FrameReceiver) {
    let ingest = Arc::new(Ingest::new().expect("gstreamer"));
    let rx = ingest.add(camera("gate")).expect("add");
    let state = ApiState {
        ingest,
        store: None,
        outbox: None,
        broker: None,
    };
    (state, rx)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_cameras_metrics_and_errors() {
    let (state, _rx) = state_with_camera().await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(get(&state, "/healthz").await, (StatusCode::OK, "ok".into()));

    let (status, body) = get(&state, "/api/v1/cameras").await;
    assert_eq!(status, StatusCode::OK);
    let list: serde_json::Value = serde_json::from_str(&body).expect("json");
    assert_eq!(list[0]["id"], "gate");
    assert!(list[0]["state"].is_string());

    let (status, body) = get(&state, "/api/v1/cameras/gate").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = get(&state, "/api/v1/cameras/nope").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let err: serde_json::Value = serde_json::from_str(&body).expect("json");
    assert_eq!(err["code"], "camera_not_found");
    assert!(err["message"].as_str().unwrap_or("").contains("nope"));

    let (status, body) = get(&state, "/metrics").await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains("# TYPE pantau_camera_fps gauge"), "{body}");
    assert!(
        body.contains("pantau_camera_frames_decoded_total{camera=\"gate\"}"),
        "{body}"
    );

    let (status, body) = get(&state, "/api/v1/nothing").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(body.contains("\"code\":\"not_found\""));

    // No store configured: history says so.
    let (status, body) = get(
        &state,
        "/api/v1/history?from=2026-11-24T08:00:00Z&to=2026-11-24T10:00:00Z",
    )
    .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(body.contains("no_store"), "{body}");
    state.ingest.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_as_json_and_csv_with_validated_parameters() {
    let schema = format!("pantau_api_test_{}", std::process::id());
    let (db, conn) = tokio_postgres_connect().await;
    tokio::spawn(conn);
    db.batch_execute(&format!("drop schema if exists {schema} cascade"))
        .await
        .expect("drop");
    let mut store = Store::connect(DB, &schema).await.expect("store");
    let ids = IdGenerator::new();
    let at = |m: u64| UNIX_EPOCH + Duration::from_secs(1_795_507_200 + m * 60);
    let counts: Vec<CountAggregate> = (0..120)
        .map(|m| CountAggregate {
            id: ids.at(at(m)),
            schema: SCHEMA_VERSION,
            site: "kota".into(),
            camera: "simpang-lima".into(),
            line: "stop-line".into(),
            period_start: at(m),
            period_s: 60,
            counts: BTreeMap::from([(
                "in".to_string(),
                BTreeMap::from([("car".to_string(), 2u64)]),
            )]),
        })
        .collect();
    store.write(&[], &counts).await.expect("write");
    let ingest = Arc::new(Ingest::new().expect("gstreamer"));
    let state = ApiState {
        ingest,
        store: Some(Arc::new(store)),
        outbox: None,
        broker: Some("127.0.0.1:1883".parse().expect("addr")),
    };

    let range = "from=2026-11-24T08:00:00Z&to=2026-11-24T10:00:00Z";
    let (status, body) = get(
        &state,
        &format!("/api/v1/history?{range}&bucket=1h&camera=simpang-lima"),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let rows: serde_json::Value = serde_json::from_str(&body).expect("json");
    assert_eq!(rows.as_array().map(Vec::len), Some(2));
    assert_eq!(rows[0]["count"], 120);
    assert_eq!(rows[0]["bucket_start"], "2026-11-24T08:00:00.000Z");

    let (status, csv) = get(&state, &format!("/api/v1/history.csv?{range}&bucket=15m")).await;
    assert_eq!(status, StatusCode::OK);
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines[0], "bucket_start,camera,line,class,direction,count");
    assert_eq!(lines.len(), 1 + 8);
    assert_eq!(
        lines[1],
        "2026-11-24T08:00:00.000Z,simpang-lima,stop-line,car,in,30"
    );

    for (query, expected) in [
        (
            "from=yesterday&to=2026-11-24T10:00:00Z",
            "from \"yesterday\" is not a UTC time",
        ),
        (
            &format!("{range}&bucket=2m") as &str,
            "history bucket \"2m\" is not one of 5m, 15m, 1h, 1d",
        ),
        (&format!("{range}&direction=up"), "direction is in or out"),
        (
            "from=2026-11-24T10:00:00Z&to=2026-11-24T08:00:00Z",
            "to must be after from",
        ),
        (&format!("{range}&camra=x"), "unknown field `camra`"),
        ("to=2026-11-24T10:00:00Z", "missing field `from`"),
    ] {
        let (status, body) = get(&state, &format!("/api/v1/history?{query}")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}: {body}");
        let err: serde_json::Value = serde_json::from_str(&body).expect("json error");
        assert_eq!(err["code"], "bad_request");
        assert!(
            err["message"].as_str().unwrap_or("").contains(expected),
            "{query}: {body}"
        );
    }

    // Ready: store and broker reachable; a dead broker makes it not ready.
    let (status, body) = get(&state, "/readyz").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let dead = ApiState {
        broker: Some("127.0.0.1:1".parse().expect("addr")),
        ..state.clone()
    };
    let (status, body) = get(&dead, "/readyz").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(body.contains("\"broker\":\"unreachable\""), "{body}");
    db.batch_execute(&format!("drop schema {schema} cascade"))
        .await
        .expect("clean up");
}

async fn tokio_postgres_connect() -> (
    tokio_postgres::Client,
    tokio_postgres::Connection<tokio_postgres::Socket, tokio_postgres::tls::NoTlsStream>,
) {
    tokio_postgres::connect(DB, tokio_postgres::NoTls)
        .await
        .expect("database")
}
