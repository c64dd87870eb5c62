//! Fuzz targets of every API request body: login, users (POST, PATCH), cameras (POST, PUT),
//! event actions and citizen reports (with an integration's key), each driven through the router (`oneshot`) as a logged-in admin on the real
//! database, with random and mutated JSON. Whatever the body, the answer is a success or an
//! error in the API's one shape (`code`, `message`), never a 5xx, a panic or a hang. Seeds are
//! in `fuzz/corpus/api/<route>`; the long run is in `fuzz/README.md`.

#[path = "../../fuzz/mutate.rs"]
mod mutate;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use http_body_util::BodyExt;
use pantau_config::config::{CameraConfig, CameraSettings, IngestConfig};
use pantau_dashboard_api::auth::{upsert_user, Role};
use pantau_dashboard_api::cameras::BoxFuture;
use pantau_dashboard_api::reports::{add_integration, ReportSettings, Reports};
use pantau_dashboard_api::{
    app, ApiSettings, ApiState, CameraControl, CameraFeed, CameraRegistry, CameraStatus, Db,
    StatusChange,
};
use pantau_events::{Event, EventKind, IdGenerator, Lifecycle, Severity, SCHEMA_VERSION};
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::TestRunner;
use serde_json::Value;
use tower::ServiceExt;

const DB: &str = "host=127.0.0.1 port=5432 user=postgres dbname=test";
const PASSWORD: &str = "correct horse battery";

/// Bodies above this are cut (the router refuses more than 1 MiB before any handler runs).
const MAX_BODY: usize = 4 << 10;

/// Cases per route in `make test`: a body that passes validation costs a few database
/// statements, or a password hash (tens of milliseconds on purpose).
const CASES: u32 = 256;
/// Nearly every well-formed login verifies a password, even for a user that does not exist.
const LOGIN_CASES: u32 = 128;

/// No running cameras: the feed is not what these targets are about.
#[derive(Debug)]
struct NoCameras(tokio::sync::broadcast::Sender<StatusChange>);

impl CameraFeed for NoCameras {
    fn statuses(&self) -> Vec<CameraStatus> {
        Vec::new()
    }
    fn status(&self, _: &str) -> Option<CameraStatus> {
        None
    }
    fn subscribe(&self) -> tokio::sync::broadcast::Receiver<StatusChange> {
        self.0.subscribe()
    }
    fn frame_jpeg(&self, _: &str) -> BoxFuture<'_, Result<Vec<u8>, String>> {
        Box::pin(async { Err("no frames here".to_string()) })
    }
}

/// A node that starts and stops whatever camera the API validated.
#[derive(Debug)]
struct Accept;

impl CameraControl for Accept {
    fn apply(&self, _: CameraSettings) -> BoxFuture<'_, Result<(), String>> {
        Box::pin(async { Ok(()) })
    }
    fn remove(&self, _: String) -> BoxFuture<'_, Result<(), String>> {
        Box::pin(async { Ok(()) })
    }
}

/// A route that takes a body.
#[derive(Debug, Clone, Copy)]
struct Route {
    /// Its seeds are in `fuzz/corpus/api/<name>`.
    name: &'static str,
    method: &'static str,
    /// `{alert}` stands for the id of an alert in the database.
    uri: &'static str,
}

/// A fresh schema with an admin (logged in) and an operator, one camera (`gate`) and one alert.
struct Harness {
    rt: tokio::runtime::Runtime,
    state: ApiState,
    schema: String,
    token: String,
    /// The citizen reports route takes an integration's key, not a session.
    integration_key: String,
    alert: String,
    _dir: tempfile::TempDir,
}

fn camera(id: &str) -> CameraConfig {
    let text = format!("[[cameras]]\nid = \"{id}\"\nurl = \"test://ball?width=160&height=120\"\n");
    pantau_config::Config::parse(&text)
        .expect("parses")
        .cameras
        .remove(0)
}

fn alert(at: SystemTime) -> Event {
    let ids = IdGenerator::new();
    Event {
        id: ids.at(at),
        schema: SCHEMA_VERSION,
        site: "kota".into(),
        camera: "gate".into(),
        rule: "restricted".into(),
        kind: EventKind::ZonePresence,
        lifecycle: Lifecycle::New,
        incident: Some(format!("gate/restricted/{}", ids.at(at))),
        captured_at: at,
        severity: Severity::Warning,
        object: None,
        direction: None,
        snapshot: None,
        details: BTreeMap::new(),
    }
}

impl Harness {
    fn new(name: &str) -> Self {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let schema = format!("pantau_fuzz_{name}_{}", std::process::id());
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("clip.mp4"), b"not really a video").expect("clip");
        let (state, alert, integration_key) = rt.block_on(async {
            let (client, conn) = tokio_postgres::connect(DB, tokio_postgres::NoTls)
                .await
                .expect("database");
            tokio::spawn(conn);
            client
                .batch_execute(&format!("drop schema if exists {schema} cascade"))
                .await
                .expect("drop");
            let db = Arc::new(Db::new(DB, &schema));
            let store = db.store().await.expect("store");
            upsert_user(&store, "ana", Role::Admin, PASSWORD, &[])
                .await
                .expect("admin");
            upsert_user(&store, "oki", Role::Operator, PASSWORD, &[])
                .await
                .expect("operator");
            let alert = alert(SystemTime::now() - Duration::from_secs(60));
            store
                .write(std::slice::from_ref(&alert), &[])
                .await
                .expect("alert");
            let loaded = CameraRegistry::load(
                &dir.path().join("cameras.toml"),
                &[camera("gate")],
                IngestConfig::default(),
                dir.path(),
                Arc::new(Accept),
            )
            .expect("cameras");
            let mut state = ApiState::new(
                Arc::new(NoCameras(tokio::sync::broadcast::channel(8).0)),
                ApiSettings::default(),
            );
            state.db = Some(db);
            state.cameras = Some(Arc::new(loaded.registry));
            // The rate limit would answer most cases with 429 before validation.
            state.reports = Arc::new(Reports::new(ReportSettings::from_config(
                &pantau_config::config::ReportsConfig {
                    rate_per_minute: 1_000_000,
                    ..Default::default()
                },
                dir.path(),
            )));
            let integration = add_integration(&store, "sipokat", None, "ana")
                .await
                .expect("integration");
            (state, alert.id.to_string(), integration.key)
        });
        let mut h = Harness {
            rt,
            state,
            schema,
            token: String::new(),
            integration_key,
            alert,
            _dir: dir,
        };
        let login = format!("{{\"user\": \"ana\", \"password\": \"{PASSWORD}\"}}");
        let (status, body) = h.send(
            Method::POST,
            "/api/v1/auth/login",
            false,
            login.into_bytes(),
            Some("application/json"),
        );
        assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
        let body: Value = serde_json::from_slice(&body).expect("login answer");
        h.token = body["token"].as_str().expect("token").to_string();
        h
    }

    /// Sends one request; the status and the body of the answer.
    fn send(
        &self,
        method: Method,
        uri: &str,
        session: bool,
        body: Vec<u8>,
        content_type: Option<&str>,
    ) -> (StatusCode, Vec<u8>) {
        let mut req = Request::builder().method(method).uri(uri);
        if session {
            let key = if uri == "/api/v1/reports" {
                &self.integration_key
            } else {
                &self.token
            };
            req = req.header(header::AUTHORIZATION, format!("Bearer {key}"));
        }
        if let Some(ct) = content_type {
            req = req.header(header::CONTENT_TYPE, ct);
        }
        let req = req.body(Body::from(body)).expect("request");
        let app = app(self.state.clone());
        // On a worker thread, so a handler that blocks its thread still meets the deadline
        // here; a panic in it is resumed here, where proptest sees it.
        let answer = self.rt.spawn(async move {
            let res = app.oneshot(req).await.expect("answer");
            let status = res.status();
            let bytes = res.into_body().collect().await.expect("body").to_bytes();
            (status, bytes.to_vec())
        });
        match self
            .rt
            .block_on(async { tokio::time::timeout(mutate::DEADLINE, answer).await })
        {
            Ok(Ok(answer)) => answer,
            Ok(Err(e)) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Ok(Err(e)) => panic!("{uri}: the request task ended: {e}"),
            Err(_) => panic!("{uri}: no answer within {:?}: a hang", mutate::DEADLINE),
        }
    }

    fn finish(self) {
        let schema = self.schema.clone();
        self.rt.block_on(async {
            let (client, conn) = tokio_postgres::connect(DB, tokio_postgres::NoTls)
                .await
                .expect("database");
            tokio::spawn(conn);
            client
                .batch_execute(&format!("drop schema {schema} cascade"))
                .await
                .expect("clean up");
        });
    }
}

/// A success, or a client error in the API's shape; never a server error. `what` names the
/// request (`POST /api/v1/users`).
fn assert_well_formed(what: &str, status: StatusCode, body: &[u8]) {
    let text = String::from_utf8_lossy(body);
    assert!(
        !status.is_server_error(),
        "{what}: {status} caused by the body: {text}"
    );
    if status == StatusCode::NO_CONTENT {
        return;
    }
    let json: Value = serde_json::from_slice(body)
        .unwrap_or_else(|e| panic!("{what}: {status} with a body that is not JSON ({e}): {text}"));
    if !status.is_success() {
        assert!(
            json["code"].is_string() && json["message"].is_string(),
            "{what}: {status} without the error shape: {text}"
        );
        assert!(
            json.get("issues").is_none_or(Value::is_array),
            "{what}: issues is not a list: {text}"
        );
    }
}

/// Pieces of JSON and of the API's fields, for random bodies and insertions.
#[rustfmt::skip]
const JSON_WORDS: &[&str] = &[
    "{", "}", "[", "]", ":", ",", "\"", "\\", "\\u0000", "\\ud800", "\\n", "null", "true",
    "false", "0", "-0", "-1", "1e400", "1.5", "18446744073709551616", "\"user\"",
    "\"password\"", "\"name\"", "\"role\"", "\"disabled\"", "\"id\"", "\"url\"", "\"lines\"",
    "\"zones\"", "\"points\"", "\"polygon\"", "\"action\"", "\"note\"", "\"unit\"", "\"admin\"",
    "\"assign\"", "\"test://ball\"", "\"gate\"",
];

/// Field names of every request body, to add or replace.
#[rustfmt::skip]
const FIELDS: &[&str] = &[
    "user", "password", "name", "role", "disabled", "id", "url", "transport", "latency_ms",
    "username", "password_env", "loop", "realtime", "enabled", "analysis_fps", "analysis_width",
    "stall_timeout_s", "lines", "zones", "points", "polygon", "directions", "in", "out",
    "hysteresis_px", "severity", "action", "note", "unit",
];

/// Strings that mean something to the handlers or their validation.
#[rustfmt::skip]
const STRINGS: &[&str] = &[
    "", " ", "\u{0}", "a\u{0}b", "\n", "ana", "oki", "admin", "operator", "dispatcher",
    "planner", "Admin", "acknowledge", "assign", "note", "escalate", "close", "gate", "yard",
    "tcp", "udp", "auto", "info", "warning", "critical", "test://ball", "test://ball?fps=0",
    "test://smpte?width=16&height=16&fps=1", "rtsp://u:***@h:554/x", "rtsp://u:p@h/x",
    "rtsps://[::1]:554/x", "file://clip.mp4", "file:///dev/null", "file://", "file://..",
    "file://../../../etc/passwd", "../../etc/passwd", "PANTAU_FUZZ_PASSWORD", "PATH",
    "correct horse battery", "0123456789", "\u{1F980}", "\u{202E}gate",
];

fn json_value() -> BoxedStrategy<Value> {
    let leaf = prop_oneof![
        1 => Just(Value::Null),
        1 => any::<bool>().prop_map(Value::Bool),
        1 => any::<i64>().prop_map(Value::from),
        1 => any::<u64>().prop_map(Value::from),
        1 => any::<f64>().prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        3 => proptest::sample::select(STRINGS).prop_map(Value::from),
        1 => "\\PC{0,24}".prop_map(Value::from),
        1 => "[\\x00-\\x1f]{1,4}".prop_map(Value::from),
        // Past every length limit: names (64), units (100), passwords (200, 1024), notes (2000).
        1 => (60usize..3000).prop_map(|n| Value::from("x".repeat(n))),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            proptest::collection::vec((proptest::sample::select(FIELDS), inner), 0..4).prop_map(
                |fields| {
                    Value::Object(
                        fields
                            .into_iter()
                            .map(|(k, v)| (k.to_string(), v))
                            .collect(),
                    )
                }
            ),
        ]
    })
    .boxed()
}

/// One change to a JSON document, at the node a path of indices leads to.
#[derive(Debug, Clone)]
enum JsonEdit {
    Replace(Vec<Index>, Value),
    /// Sets a field of an object (a known field name or a random one).
    Set(Vec<Index>, String, Value),
    Remove(Vec<Index>, Index),
}

fn json_edit() -> BoxedStrategy<JsonEdit> {
    let path = proptest::collection::vec(any::<Index>(), 0..4);
    let field = prop_oneof![
        4 => proptest::sample::select(FIELDS).prop_map(String::from),
        1 => "[a-z_]{1,12}",
    ];
    prop_oneof![
        (path.clone(), json_value()).prop_map(|(p, v)| JsonEdit::Replace(p, v)),
        (path.clone(), field, json_value()).prop_map(|(p, k, v)| JsonEdit::Set(p, k, v)),
        (path, any::<Index>()).prop_map(|(p, i)| JsonEdit::Remove(p, i)),
    ]
    .boxed()
}

/// The node `path` leads to: each index picks a field or an element, until a leaf.
fn node<'a>(value: &'a mut Value, path: &[Index]) -> &'a mut Value {
    let Some((first, rest)) = path.split_first() else {
        return value;
    };
    let len = match &*value {
        Value::Object(map) => map.len(),
        Value::Array(items) => items.len(),
        _ => 0,
    };
    if len == 0 {
        return value;
    }
    let i = first.index(len);
    match value {
        Value::Object(map) => {
            let child = map.values_mut().nth(i).expect("an index below the length");
            node(child, rest)
        }
        Value::Array(items) => node(&mut items[i], rest),
        leaf => leaf,
    }
}

fn apply(value: &mut Value, edit: JsonEdit) {
    match edit {
        JsonEdit::Replace(path, v) => *node(value, &path) = v,
        JsonEdit::Set(path, key, v) => {
            if let Value::Object(map) = node(value, &path) {
                map.insert(key, v);
            }
        }
        JsonEdit::Remove(path, at) => match node(value, &path) {
            Value::Object(map) if !map.is_empty() => {
                let key = map.keys().nth(at.index(map.len())).cloned();
                if let Some(key) = key {
                    map.remove(&key);
                }
            }
            Value::Array(items) if !items.is_empty() => {
                items.remove(at.index(items.len()));
            }
            _ => {}
        },
    }
}

/// Seeds (JSON documents) with 1 to 4 structural edits.
fn json_spliced(seeds: Arc<Vec<Vec<u8>>>) -> BoxedStrategy<mutate::Input> {
    (any::<Index>(), proptest::collection::vec(json_edit(), 1..5))
        .prop_map(move |(seed, edits)| {
            let seed = &seeds[seed.index(seeds.len())];
            let mut value: Value = serde_json::from_slice(seed).expect("the seeds are JSON");
            for e in edits {
                apply(&mut value, e);
            }
            let mut out = value.to_string().into_bytes();
            out.truncate(MAX_BODY);
            mutate::Input(out)
        })
        .boxed()
}

fn content_type() -> BoxedStrategy<Option<&'static str>> {
    prop_oneof![
        20 => Just(Some("application/json")),
        1 => Just(Some("application/json; charset=utf-8")),
        1 => Just(Some("application/problem+json")),
        1 => Just(Some("text/plain")),
        1 => Just(Some("application/jsonx")),
        1 => Just(None),
    ]
    .boxed()
}

fn body(route: &Route) -> BoxedStrategy<mutate::Input> {
    let seeds = mutate::corpus(&format!("api/{}", route.name));
    prop_oneof![
        mutate::input(seeds.clone(), JSON_WORDS, MAX_BODY),
        json_spliced(Arc::new(seeds)),
    ]
    .boxed()
}

/// Runs the route's cases; the schema is dropped whatever the outcome.
fn fuzz(route: Route, session: bool, cases: u32) {
    let h = Harness::new(route.name);
    let uri = route.uri.replace("{alert}", &h.alert);
    let method: Method = route.method.parse().expect("method");
    let what = format!("{} {}", route.method, route.uri);
    let mut runner = TestRunner::new(ProptestConfig {
        source_file: Some(file!()),
        ..mutate::config(cases)
    });
    // How often each status came back: shows whether the cases get past the JSON parser.
    let seen = std::sync::Mutex::new(BTreeMap::<u16, u32>::new());
    let outcome = runner.run(&(body(&route), content_type()), |(body, ct)| {
        let (status, answer) = h.send(method.clone(), &uri, session, body.0, ct);
        *seen
            .lock()
            .expect("tally")
            .entry(status.as_u16())
            .or_default() += 1;
        assert_well_formed(&what, status, &answer);
        Ok(())
    });
    h.finish();
    eprintln!(
        "{what}: answers by status {:?}",
        seen.lock().expect("tally")
    );
    if let Err(e) = outcome {
        panic!("{what}: {e}");
    }
}

#[test]
fn login_body() {
    fuzz(
        Route {
            name: "login",
            method: "POST",
            uri: "/api/v1/auth/login",
        },
        false,
        LOGIN_CASES,
    );
}

#[test]
fn users_post_body() {
    fuzz(
        Route {
            name: "users_post",
            method: "POST",
            uri: "/api/v1/users",
        },
        true,
        CASES,
    );
}

#[test]
fn users_patch_body() {
    fuzz(
        Route {
            name: "users_patch",
            method: "PATCH",
            uri: "/api/v1/users/oki",
        },
        true,
        CASES,
    );
}

#[test]
fn cameras_post_body() {
    fuzz(
        Route {
            name: "cameras_post",
            method: "POST",
            uri: "/api/v1/cameras",
        },
        true,
        CASES,
    );
}

#[test]
fn cameras_put_body() {
    fuzz(
        Route {
            name: "cameras_put",
            method: "PUT",
            uri: "/api/v1/cameras/gate",
        },
        true,
        CASES,
    );
}

#[test]
fn event_action_body() {
    fuzz(
        Route {
            name: "event_action",
            method: "POST",
            uri: "/api/v1/events/{alert}/actions",
        },
        true,
        CASES,
    );
}

#[test]
fn report_body() {
    fuzz(
        Route {
            name: "report",
            method: "POST",
            uri: "/api/v1/reports",
        },
        true,
        CASES,
    );
}

/// Every seed of every route as it is, once, on one harness.
#[test]
fn every_seed_as_it_is() {
    let h = Harness::new("seeds");
    let mut failures = Vec::new();
    for (name, method, uri) in [
        ("login", Method::POST, "/api/v1/auth/login".to_string()),
        ("users_post", Method::POST, "/api/v1/users".to_string()),
        (
            "users_patch",
            Method::PATCH,
            "/api/v1/users/oki".to_string(),
        ),
        ("cameras_post", Method::POST, "/api/v1/cameras".to_string()),
        (
            "cameras_put",
            Method::PUT,
            "/api/v1/cameras/gate".to_string(),
        ),
        (
            "event_action",
            Method::POST,
            format!("/api/v1/events/{}/actions", h.alert),
        ),
        ("report", Method::POST, "/api/v1/reports".to_string()),
    ] {
        for seed in mutate::corpus(&format!("api/{name}")) {
            let (status, answer) = h.send(
                method.clone(),
                &uri,
                name != "login",
                seed.clone(),
                Some("application/json"),
            );
            let what = format!("{method} {uri}");
            if let Err(e) = std::panic::catch_unwind(|| assert_well_formed(&what, status, &answer))
            {
                failures.push(format!(
                    "{}: {:?}",
                    String::from_utf8_lossy(&seed),
                    e.downcast_ref::<String>()
                ));
            }
        }
    }
    h.finish();
    assert!(failures.is_empty(), "{failures:#?}");
}

/// The router's body limit (1 MiB) answers in the API's error shape too.
#[test]
fn an_oversized_body_gets_the_error_shape() {
    let h = Harness::new("oversized");
    let uri = "/api/v1/cameras";
    let mut big = br#"{"id": "big", "url": "test://ball", "name": ""#.to_vec();
    big.extend(std::iter::repeat_n(b'x', 2 << 20));
    big.extend(br#""}"#);
    let req = |with_length: bool| {
        let mut req = Request::builder()
            .method(Method::POST)
            .uri(uri)
            .header(header::AUTHORIZATION, format!("Bearer {}", h.token))
            .header(header::CONTENT_TYPE, "application/json");
        if with_length {
            req = req.header(header::CONTENT_LENGTH, big.len());
        }
        req.body(Body::from(big.clone())).expect("request")
    };
    let mut answers = Vec::new();
    for with_length in [false, true] {
        let (status, body) = h.rt.block_on(async {
            let res = app(h.state.clone())
                .oneshot(req(with_length))
                .await
                .expect("answer");
            let status = res.status();
            (
                status,
                res.into_body().collect().await.expect("body").to_bytes(),
            )
        });
        answers.push((status, body));
    }
    h.finish();
    for ((status, body), how) in answers.into_iter().zip(["streamed", "with Content-Length"]) {
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{how}");
        assert_well_formed(&format!("POST {uri} ({how})"), status, &body);
    }
}

/// A NUL character (which PostgreSQL text cannot hold) in a path or query is the client's
/// mistake: a 400, not the 503 of a database outage.
#[test]
fn nul_in_paths_and_queries_is_a_client_error() {
    let h = Harness::new("nul");
    let mut answers = Vec::new();
    for (method, uri, body) in [
        (
            Method::PATCH,
            "/api/v1/users/a%00b",
            &br#"{"disabled": false}"#[..],
        ),
        (Method::DELETE, "/api/v1/users/a%00b", b""),
        (Method::GET, "/api/v1/events/a%00b", b""),
        (Method::GET, "/api/v1/events?camera=a%00b", b""),
        (
            Method::POST,
            "/api/v1/events/a%00b/actions",
            br#"{"action": "note", "note": "x"}"#,
        ),
    ] {
        let (status, answer) = h.send(
            method.clone(),
            uri,
            true,
            body.to_vec(),
            Some("application/json"),
        );
        answers.push((format!("{method} {uri}"), status, answer));
    }
    h.finish();
    for (what, status, answer) in answers {
        assert_eq!(
            status,
            StatusCode::BAD_REQUEST,
            "{what}: {}",
            String::from_utf8_lossy(&answer)
        );
        assert_well_formed(&what, status, &answer);
    }
}
