//! The router without a socket (`oneshot`), on the real database and real GStreamer test
//! cameras: every route with success, the wrong role and bad input.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use http_body_util::BodyExt;
use pantau_config::config::{CameraConfig, CameraSettings, IngestConfig};
use pantau_dashboard_api::auth::{upsert_user, Role};
use pantau_dashboard_api::cameras::BoxFuture;
use pantau_dashboard_api::{app, ApiSettings, ApiState, CameraControl, CameraRegistry, Db};
use pantau_events::{
    CountAggregate, Event, EventKind, IdGenerator, Lifecycle, ObjectRef, Severity, SCHEMA_VERSION,
};
use pantau_ingest::{FrameReceiver, Ingest};
use pantau_sinks::outbox::{FullPolicy, Outbox};
use serde_json::{json, Value};
use tower::ServiceExt;

const DB: &str = "host=127.0.0.1 port=5432 user=postgres dbname=test";
const PASSWORD: &str = "correct horse battery";

/// The API's view of real test cameras (what the node gives it).
#[derive(Debug)]
struct Feed(Arc<Ingest>);

impl pantau_dashboard_api::CameraFeed for Feed {
    fn statuses(&self) -> Vec<pantau_dashboard_api::CameraStatus> {
        self.0.statuses()
    }
    fn status(&self, id: &str) -> Option<pantau_dashboard_api::CameraStatus> {
        self.0.status(id)
    }
    fn subscribe(&self) -> tokio::sync::broadcast::Receiver<pantau_dashboard_api::StatusChange> {
        self.0.subscribe()
    }
    fn frame_jpeg(&self, id: &str) -> BoxFuture<'_, Result<Vec<u8>, String>> {
        let id = id.to_string();
        Box::pin(async move { self.0.snapshot_jpeg(&id).await.map_err(|e| e.to_string()) })
    }
}

/// Starts and stops cameras in ingest only (no detector): what the API asks of the node.
#[derive(Debug)]
struct IngestControl {
    ingest: Arc<Ingest>,
    frames: Mutex<HashMap<String, FrameReceiver>>,
}

impl CameraControl for IngestControl {
    fn apply(&self, settings: CameraSettings) -> BoxFuture<'_, Result<(), String>> {
        Box::pin(async move {
            let id = settings.id.clone();
            let rx = if self.ingest.status(&id).is_some() {
                self.ingest.replace(settings).await
            } else {
                self.ingest.add(settings)
            }
            .map_err(|e| e.to_string())?;
            self.frames.lock().expect("lock").insert(id, rx);
            Ok(())
        })
    }

    fn remove(&self, id: String) -> BoxFuture<'_, Result<(), String>> {
        Box::pin(async move {
            self.ingest.remove(&id).await.map_err(|e| e.to_string())?;
            self.frames.lock().expect("lock").remove(&id);
            Ok(())
        })
    }
}

struct Harness {
    state: ApiState,
    /// The real cameras behind `state.feed`.
    ingest: Arc<Ingest>,
    schema: String,
    tokens: HashMap<&'static str, String>,
    dir: tempfile::TempDir,
}

fn camera_config(id: &str) -> CameraConfig {
    let text =
        format!("[[cameras]]\nid = \"{id}\"\nurl = \"test://ball?width=160&height=120&fps=10\"\n");
    pantau_config::Config::parse(&text)
        .expect("parses")
        .cameras
        .remove(0)
}

fn registry(
    dir: &Path,
    ingest: &Arc<Ingest>,
) -> (pantau_dashboard_api::cameras::Loaded, Arc<IngestControl>) {
    let control = Arc::new(IngestControl {
        ingest: ingest.clone(),
        frames: Mutex::default(),
    });
    let loaded = CameraRegistry::load(
        &dir.join("cameras.toml"),
        &[camera_config("gate")],
        IngestConfig::default(),
        Path::new("/"),
        control.clone(),
    )
    .expect("load");
    (loaded, control)
}

/// A fresh schema with four users (one per role) logged in, one camera running, an outbox and
/// a snapshot folder.
async fn harness(name: &str) -> Harness {
    let schema = format!("pantau_api_{name}_{}", std::process::id());
    let (client, conn) = tokio_postgres::connect(DB, tokio_postgres::NoTls)
        .await
        .expect("database");
    tokio::spawn(conn);
    client
        .batch_execute(&format!("drop schema if exists {schema} cascade"))
        .await
        .expect("drop");
    let dir = tempfile::tempdir().expect("tempdir");
    let ingest = Arc::new(Ingest::new().expect("gstreamer"));
    let (loaded, control) = registry(dir.path(), &ingest);
    for c in &loaded.cameras {
        let settings = loaded.registry.validate(c).expect("valid");
        control.apply(settings).await.expect("start");
    }
    let db = Arc::new(Db::new(DB, &schema));
    let store = db.store().await.expect("store");
    for (user, role) in [
        ("ana", Role::Admin),
        ("oki", Role::Operator),
        ("dina", Role::Dispatcher),
        ("pak-budi", Role::Planner),
    ] {
        upsert_user(&store, user, role, PASSWORD, &[])
            .await
            .expect("user");
    }
    std::fs::create_dir_all(dir.path().join("snapshots/gate/2026-11-24")).expect("mkdir");
    let mut state = ApiState::new(
        Arc::new(Feed(ingest.clone())),
        ApiSettings {
            snapshots_dir: Some(dir.path().join("snapshots")),
            ..ApiSettings::default()
        },
    );
    state.db = Some(db);
    state.cameras = Some(Arc::new(loaded.registry));
    state.outbox = Some(Arc::new(
        Outbox::open(
            &dir.path().join("outbox.redb"),
            &["mqtt"],
            64 << 20,
            FullPolicy::RejectNew,
        )
        .expect("outbox"),
    ));
    let mut h = Harness {
        state,
        ingest,
        schema,
        tokens: HashMap::new(),
        dir,
    };
    for (key, user) in [
        ("admin", "ana"),
        ("operator", "oki"),
        ("dispatcher", "dina"),
        ("planner", "pak-budi"),
    ] {
        let token = login(&h, user).await;
        h.tokens.insert(key, token);
    }
    h
}

impl Harness {
    async fn raw(
        &self,
        method: Method,
        uri: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> axum::response::Response {
        let mut req = Request::builder().method(method).uri(uri);
        if let Some(t) = token {
            req = req.header(header::AUTHORIZATION, format!("Bearer {t}"));
        }
        let body = match body {
            Some(v) => {
                req = req.header(header::CONTENT_TYPE, "application/json");
                Body::from(v.to_string())
            }
            None => Body::empty(),
        };
        app(self.state.clone())
            .oneshot(req.body(body).expect("request"))
            .await
            .expect("response")
    }

    /// Status and JSON body (a JSON string for non-JSON bodies).
    async fn call(
        &self,
        method: Method,
        uri: &str,
        role: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let token = role.map(|r| self.tokens.get(r).map_or(r, String::as_str).to_string());
        let res = self.raw(method, uri, token.as_deref(), body).await;
        let status = res.status();
        let bytes = res.into_body().collect().await.expect("body").to_bytes();
        let text = String::from_utf8_lossy(&bytes).into_owned();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    async fn get(&self, uri: &str, role: &str) -> (StatusCode, Value) {
        self.call(Method::GET, uri, Some(role), None).await
    }

    /// Asserts a 403 that names the roles allowed.
    async fn forbidden(&self, method: Method, uri: &str, role: &str, body: Option<Value>) {
        let (status, body) = self.call(method, uri, Some(role), body).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{role} {uri}: {body}");
        assert_eq!(body["code"], "forbidden");
        assert!(
            body["message"]
                .as_str()
                .unwrap_or("")
                .contains("this needs"),
            "{body}"
        );
    }

    async fn finish(self) {
        self.ingest.shutdown().await;
        let (client, conn) = tokio_postgres::connect(DB, tokio_postgres::NoTls)
            .await
            .expect("database");
        tokio::spawn(conn);
        client
            .batch_execute(&format!("drop schema {} cascade", self.schema))
            .await
            .expect("clean up");
    }
}

fn assert_error(status: StatusCode, body: &Value, want: StatusCode, code: &str, text: &str) {
    assert_eq!(status, want, "{body}");
    assert_eq!(body["code"], code, "{body}");
    assert!(
        body["message"].as_str().unwrap_or("").contains(text),
        "expected \"{text}\" in {body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_sessions_rate_limit_and_users() {
    let h = harness("auth").await;
    let login = |user: &str, password: &str| json!({"user": user, "password": password});

    // Wrong password, unknown user, bad body.
    let (s, b) = h
        .call(
            Method::POST,
            "/api/v1/auth/login",
            None,
            Some(login("oki", "wrong password")),
        )
        .await;
    assert_error(
        s,
        &b,
        StatusCode::UNAUTHORIZED,
        "invalid_credentials",
        "wrong user name or password",
    );
    let (s, b) = h
        .call(
            Method::POST,
            "/api/v1/auth/login",
            None,
            Some(login("nobody", PASSWORD)),
        )
        .await;
    assert_error(
        s,
        &b,
        StatusCode::UNAUTHORIZED,
        "invalid_credentials",
        "wrong user name",
    );
    let (s, b) = h
        .call(
            Method::POST,
            "/api/v1/auth/login",
            None,
            Some(json!({"user": "oki"})),
        )
        .await;
    assert_error(
        s,
        &b,
        StatusCode::UNPROCESSABLE_ENTITY,
        "bad_request",
        "missing field `password`",
    );

    // A browser login sets an HttpOnly cookie that works like the bearer token.
    let res = h
        .raw(
            Method::POST,
            "/api/v1/auth/login",
            None,
            Some(login("oki", PASSWORD)),
        )
        .await;
    let cookie = res
        .headers()
        .get(header::SET_COOKIE)
        .and_then(|v| v.to_str().ok())
        .expect("cookie")
        .to_string();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    assert!(!cookie.contains("Secure"), "plain HTTP: {cookie}");
    let behind_tls = Request::post("/api/v1/auth/login")
        .header(header::CONTENT_TYPE, "application/json")
        .header("x-forwarded-proto", "https")
        .body(Body::from(login("oki", PASSWORD).to_string()))
        .expect("request");
    let res = app(h.state.clone())
        .oneshot(behind_tls)
        .await
        .expect("response");
    assert!(
        res.headers()[header::SET_COOKIE]
            .to_str()
            .is_ok_and(|c| c.ends_with("; Secure")),
        "{:?}",
        res.headers()
    );
    let pair = cookie.split(';').next().expect("pair").to_string();
    let req = Request::get("/api/v1/auth/me")
        .header(header::COOKIE, &pair)
        .body(Body::empty())
        .expect("request");
    let res = app(h.state.clone()).oneshot(req).await.expect("response");
    assert_eq!(res.status(), StatusCode::OK);

    let (s, b) = h.get("/api/v1/auth/me", "dispatcher").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        b,
        json!({"user": "dina", "role": "dispatcher", "agencies": []})
    );
    let (s, b) = h.call(Method::GET, "/api/v1/auth/me", None, None).await;
    assert_error(
        s,
        &b,
        StatusCode::UNAUTHORIZED,
        "unauthenticated",
        "log in first",
    );
    let (s, b) = h.get("/api/v1/auth/me", "not-a-token").await;
    assert_error(
        s,
        &b,
        StatusCode::UNAUTHORIZED,
        "unauthenticated",
        "log in again",
    );

    // Five failures for one name: even the right password waits now.
    for _ in 0..5 {
        let (s, _) = h
            .call(
                Method::POST,
                "/api/v1/auth/login",
                None,
                Some(login("pak-budi", "guess guess guess")),
            )
            .await;
        assert_eq!(s, StatusCode::UNAUTHORIZED);
    }
    let res = h
        .raw(
            Method::POST,
            "/api/v1/auth/login",
            None,
            Some(login("pak-budi", PASSWORD)),
        )
        .await;
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    let wait: u64 = res.headers()[header::RETRY_AFTER]
        .to_str()
        .expect("ascii")
        .parse()
        .expect("seconds");
    assert!((1..=300).contains(&wait), "{wait}");

    // Parallel wrong logins for one name: the attempt is counted before the password is
    // checked, so no more than the limit (5) ever reach the check; the rest wait (429) or are
    // told the server is busy (503), each with Retry-After.
    let app = app(h.state.clone());
    let tries: Vec<_> = (0..40)
        .map(|_| {
            let app = app.clone();
            let body = login("dina", "guess guess guess").to_string();
            tokio::spawn(async move {
                let req = Request::builder()
                    .method(Method::POST)
                    .uri("/api/v1/auth/login")
                    .header(header::CONTENT_TYPE, "application/json")
                    .body(Body::from(body))
                    .expect("request");
                let res = app.oneshot(req).await.expect("response");
                (
                    res.status(),
                    res.headers().contains_key(header::RETRY_AFTER),
                )
            })
        })
        .collect();
    let mut seen: HashMap<StatusCode, usize> = HashMap::new();
    for t in tries {
        let (status, retry_after) = t.await.expect("task");
        if status != StatusCode::UNAUTHORIZED {
            assert!(retry_after, "{status} without Retry-After");
        }
        *seen.entry(status).or_default() += 1;
    }
    let checked = seen.get(&StatusCode::UNAUTHORIZED).copied().unwrap_or(0);
    assert!(
        checked <= 5,
        "{checked} wrong passwords were checked: {seen:?}"
    );
    assert_eq!(
        seen.values().sum::<usize>() - checked,
        seen.get(&StatusCode::TOO_MANY_REQUESTS)
            .copied()
            .unwrap_or(0)
            + seen
                .get(&StatusCode::SERVICE_UNAVAILABLE)
                .copied()
                .unwrap_or(0),
        "{seen:?}"
    );
    // A 100 KB name, or a name with a newline, is refused before it is kept or logged.
    for bad in ["x".repeat(100_000), "ana\nforged log line".to_string()] {
        let (s, b) = h
            .call(
                Method::POST,
                "/api/v1/auth/login",
                None,
                Some(login(&bad, "guess guess guess")),
            )
            .await;
        assert_eq!(s, StatusCode::UNAUTHORIZED, "{b}");
    }
    assert!(
        h.state
            .limiter
            .keys()
            .iter()
            .all(|k| k.len() <= 80 && !k.contains('\n')),
        "the limiter keeps only valid names"
    );

    // A live stream ends within seconds of its session's logout.
    let (s, b) = h
        .call(
            Method::POST,
            "/api/v1/auth/login",
            None,
            Some(login("oki", PASSWORD)),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let token = b["token"].as_str().expect("token").to_string();
    let res = h.raw(Method::GET, "/api/v1/live", Some(&token), None).await;
    assert_eq!(res.status(), StatusCode::OK);
    let mut live = res.into_body();
    let res = h
        .raw(Method::POST, "/api/v1/auth/logout", Some(&token), None)
        .await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    let ended = tokio::time::timeout(Duration::from_secs(6), async {
        while let Some(frame) = live.frame().await {
            frame.expect("frame");
        }
    })
    .await;
    assert!(ended.is_ok(), "the live stream outlived its session by 6 s");

    // Users: admin only.
    for role in ["operator", "dispatcher", "planner"] {
        h.forbidden(Method::GET, "/api/v1/users", role, None).await;
        h.forbidden(
            Method::POST,
            "/api/v1/users",
            role,
            Some(json!({"name": "x", "role": "admin", "password": PASSWORD})),
        )
        .await;
    }
    let (s, b) = h.get("/api/v1/users", "admin").await;
    assert_eq!(s, StatusCode::OK);
    let names: Vec<&str> = b
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|u| u["name"].as_str())
        .collect();
    assert_eq!(names, ["ana", "dina", "oki", "pak-budi"]);
    assert!(b[0].get("password_hash").is_none());

    for (body, want, text) in [
        (
            json!({"name": "rina", "role": "operator", "password": "short"}),
            StatusCode::BAD_REQUEST,
            "10 to 200 characters",
        ),
        (
            json!({"name": "ri na", "role": "operator", "password": PASSWORD}),
            StatusCode::BAD_REQUEST,
            "name: use 1 to 64",
        ),
        (
            json!({"name": "rina", "role": "chief", "password": PASSWORD}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "unknown variant `chief`",
        ),
        (
            json!({"name": "oki", "role": "operator", "password": PASSWORD}),
            StatusCode::CONFLICT,
            "exists",
        ),
    ] {
        let (s, b) = h
            .call(Method::POST, "/api/v1/users", Some("admin"), Some(body))
            .await;
        assert_eq!(s, want, "{b}");
        assert!(b["message"].as_str().unwrap_or("").contains(text), "{b}");
    }
    let (s, b) = h
        .call(
            Method::POST,
            "/api/v1/users",
            Some("admin"),
            Some(json!({"name": "rina", "role": "operator", "password": PASSWORD})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let (s, b) = h
        .call(
            Method::PATCH,
            "/api/v1/users/rina",
            Some("admin"),
            Some(json!({"role": "dispatcher", "password": "another long password"})),
        )
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT, "{b}");
    let (s, b) = h
        .call(
            Method::POST,
            "/api/v1/auth/login",
            None,
            Some(login("rina", "another long password")),
        )
        .await;
    assert_eq!((s, &b["role"]), (StatusCode::OK, &json!("dispatcher")));
    let (s, b) = h
        .call(
            Method::PATCH,
            "/api/v1/users/rina",
            Some("admin"),
            Some(json!({"colour": "red"})),
        )
        .await;
    assert_error(
        s,
        &b,
        StatusCode::UNPROCESSABLE_ENTITY,
        "bad_request",
        "unknown field `colour`",
    );
    let (s, b) = h
        .call(Method::DELETE, "/api/v1/users/ana", Some("admin"), None)
        .await;
    assert_error(s, &b, StatusCode::CONFLICT, "conflict", "last admin");
    let (s, _) = h
        .call(Method::DELETE, "/api/v1/users/rina", Some("admin"), None)
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, b) = h
        .call(Method::DELETE, "/api/v1/users/rina", Some("admin"), None)
        .await;
    assert_error(s, &b, StatusCode::NOT_FOUND, "user_not_found", "rina");

    // Disabling a user ends their sessions.
    let (s, _) = h
        .call(
            Method::PATCH,
            "/api/v1/users/oki",
            Some("admin"),
            Some(json!({"disabled": true})),
        )
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, _) = h.get("/api/v1/auth/me", "operator").await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);

    // Logout ends the session.
    let (s, _) = h
        .call(
            Method::POST,
            "/api/v1/auth/logout",
            Some("dispatcher"),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, _) = h.get("/api/v1/auth/me", "dispatcher").await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    h.finish().await;
}

/// A login as it arrives over the network: from `peer`, maybe through a proxy.
async fn login_from(
    state: &ApiState,
    peer: &str,
    forwarded_for: Option<&str>,
    user: &str,
    password: &str,
) -> StatusCode {
    let mut req = Request::post("/api/v1/auth/login")
        .header(header::CONTENT_TYPE, "application/json")
        .extension(axum::extract::ConnectInfo(
            format!("{peer}:40000")
                .parse::<std::net::SocketAddr>()
                .expect("peer"),
        ));
    if let Some(f) = forwarded_for {
        req = req.header("x-forwarded-for", f);
    }
    let req = req
        .body(Body::from(
            json!({"user": user, "password": password}).to_string(),
        ))
        .expect("request");
    app(state.clone())
        .oneshot(req)
        .await
        .expect("response")
        .status()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lockout_is_per_address_proxies_are_trusted_only_when_configured() {
    let h = harness("lockout").await;
    let mut state = ApiState::new(
        h.state.feed.clone(),
        ApiSettings {
            login_attempts: 3,
            trusted_proxies: vec!["10.0.0.0/24".parse().expect("net")],
            ..ApiSettings::default()
        },
    );
    state.db = h.state.db.clone();
    let (ok, no, wait) = (
        StatusCode::OK,
        StatusCode::UNAUTHORIZED,
        StatusCode::TOO_MANY_REQUESTS,
    );

    // Three wrong passwords for ana from one address lock ana there only: the right password
    // from another address still logs in (before, the name was locked for everyone).
    for _ in 0..3 {
        assert_eq!(
            login_from(&state, "192.0.2.7", None, "ana", "guess guess guess").await,
            no
        );
    }
    assert_eq!(
        login_from(&state, "192.0.2.7", None, "ana", PASSWORD).await,
        wait
    );
    assert_eq!(
        login_from(&state, "192.0.2.8", None, "ana", PASSWORD).await,
        ok
    );

    // One address trying many names is stopped at four times the limit.
    for i in 0..12 {
        let name = format!("guess{i}");
        assert_eq!(
            login_from(&state, "192.0.2.9", None, &name, "guess guess guess").await,
            no
        );
    }
    assert_eq!(
        login_from(&state, "192.0.2.9", None, "oki", PASSWORD).await,
        wait
    );
    assert_eq!(
        login_from(&state, "192.0.2.10", None, "oki", PASSWORD).await,
        ok
    );

    // Behind a trusted proxy the client is the address the proxy forwards: one client's
    // failures do not lock out another behind the same proxy.
    for _ in 0..3 {
        let s = login_from(
            &state,
            "10.0.0.1",
            Some("198.51.100.1"),
            "dina",
            "guess guess guess",
        )
        .await;
        assert_eq!(s, no);
    }
    assert_eq!(
        login_from(&state, "10.0.0.1", Some("198.51.100.1"), "dina", PASSWORD).await,
        wait
    );
    assert_eq!(
        login_from(
            &state,
            "10.0.0.1",
            Some("203.0.113.5, 198.51.100.2"),
            "dina",
            PASSWORD
        )
        .await,
        ok
    );
    // From anyone else the header is ignored: changing it does not escape the lock.
    for i in 0..3 {
        let spoof = format!("198.51.100.{}", 50 + i);
        let s = login_from(
            &state,
            "192.0.2.20",
            Some(&spoof),
            "pak-budi",
            "guess guess guess",
        )
        .await;
        assert_eq!(s, no);
    }
    assert_eq!(
        login_from(
            &state,
            "192.0.2.20",
            Some("198.51.100.99"),
            "pak-budi",
            PASSWORD
        )
        .await,
        wait
    );
    let keys = state.limiter.keys();
    assert!(keys.contains(&"addr:192.0.2.20".to_string()), "{keys:?}");
    assert!(keys.contains(&"addr:198.51.100.1".to_string()), "{keys:?}");
    assert!(!keys.iter().any(|k| k.contains("198.51.100.5")), "{keys:?}");

    // A name failing from many addresses is slowed down for everyone, never locked.
    for i in 0..5 {
        let peer = format!("192.0.2.{}", 100 + i);
        assert_eq!(
            login_from(&state, &peer, None, "oki", "guess guess guess").await,
            no
        );
    }
    let keys = pantau_dashboard_api::auth::AttemptKeys::new(
        "oki",
        Some("192.0.2.200".parse().expect("ip")),
    );
    assert!(state.limiter.delay(&keys) >= Duration::from_millis(250));
    assert_eq!(
        login_from(&state, "192.0.2.200", None, "oki", PASSWORD).await,
        ok
    );
    h.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn password_changes_end_sessions_and_start_up_admin_keeps_console_changes() {
    use pantau_dashboard_api::auth::{first_admin, FirstAdmin};
    let h = harness("sessions").await;
    let store = h.state.store().await.expect("store");

    // `pantau user add` on an existing user: new password, old sessions end.
    let (s, _) = h.get("/api/v1/auth/me", "operator").await;
    assert_eq!(s, StatusCode::OK);
    upsert_user(&store, "oki", Role::Operator, "a brand new passphrase", &[])
        .await
        .expect("upsert");
    let (s, _) = h.get("/api/v1/auth/me", "operator").await;
    assert_eq!(
        s,
        StatusCode::UNAUTHORIZED,
        "the old session outlived a new password"
    );

    // The start-up admin: created once; the same password changes nothing.
    let made = first_admin(&store, "boss", PASSWORD).await.expect("first");
    assert_eq!(made.0, FirstAdmin::Created);
    let again = first_admin(&store, "boss", PASSWORD).await.expect("again");
    assert_eq!(again, (FirstAdmin::Unchanged, Some(Role::Admin), false));
    let (s, b) = h
        .call(
            Method::POST,
            "/api/v1/auth/login",
            None,
            Some(json!({"user": "boss", "password": PASSWORD})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let boss = b["token"].as_str().expect("token").to_string();
    // Disabled and demoted in the console, it stays so across restarts.
    let (s, b) = h
        .call(
            Method::PATCH,
            "/api/v1/users/boss",
            Some("admin"),
            Some(json!({"role": "operator", "disabled": true})),
        )
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT, "{b}");
    let restart = first_admin(&store, "boss", PASSWORD)
        .await
        .expect("restart");
    assert_eq!(restart, (FirstAdmin::Unchanged, Some(Role::Operator), true));
    let changed = first_admin(&store, "boss", "the variable changed")
        .await
        .expect("changed");
    assert_eq!(
        changed,
        (FirstAdmin::PasswordSet, Some(Role::Operator), true)
    );
    let (s, _) = h
        .call(
            Method::POST,
            "/api/v1/auth/login",
            None,
            Some(json!({"user": "boss", "password": "the variable changed"})),
        )
        .await;
    assert_eq!(
        s,
        StatusCode::UNAUTHORIZED,
        "a disabled admin came back on restart"
    );
    let (s, _) = h.get("/api/v1/auth/me", &boss).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    h.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_streams_are_limited_per_user_and_in_all() {
    let h = harness("streams").await;
    let mut state = ApiState::new(
        h.state.feed.clone(),
        ApiSettings {
            limits: pantau_config::config::ApiLimits {
                max_streams: 2,
                max_streams_per_user: 1,
                ..Default::default()
            },
            ..ApiSettings::default()
        },
    );
    state.db = h.state.db.clone();
    let open = |role: &str| {
        let req = Request::get("/api/v1/live")
            .header(header::AUTHORIZATION, format!("Bearer {}", h.tokens[role]))
            .body(Body::empty())
            .expect("request");
        app(state.clone()).oneshot(req)
    };
    let first = open("operator").await.expect("response");
    assert_eq!(first.status(), StatusCode::OK);
    let second = open("operator").await.expect("response");
    assert_eq!(second.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(second.headers().contains_key(header::RETRY_AFTER));
    let other = open("dispatcher").await.expect("response");
    assert_eq!(other.status(), StatusCode::OK);
    let third = open("admin").await.expect("response");
    assert_eq!(third.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(state.streams.open(), 2);
    // A closed stream gives its slot back.
    drop(first);
    assert_eq!(state.streams.open(), 1);
    let again = open("operator").await.expect("response");
    assert_eq!(again.status(), StatusCode::OK);
    // Without a session the stream is refused before it takes a slot.
    let res = app(state.clone())
        .oneshot(
            Request::get("/api/v1/live")
                .body(Body::empty())
                .expect("request"),
        )
        .await
        .expect("response");
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(state.streams.open(), 2);
    drop((other, again));
    h.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_limits_hold_on_a_real_socket() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let h = harness("http_limits").await;
    let serve = |limits: pantau_config::config::ApiLimits| {
        let mut state = ApiState::new(
            h.state.feed.clone(),
            ApiSettings {
                limits,
                ..ApiSettings::default()
            },
        );
        state.db = h.state.db.clone();
        async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind");
            let addr = listener.local_addr().expect("addr");
            let stop = tokio_util::sync::CancellationToken::new();
            let task = tokio::spawn(pantau_dashboard_api::serve(
                listener,
                state,
                stop.clone().cancelled_owned(),
            ));
            (addr, stop, task)
        }
    };
    /// Everything the server sends until it closes, or what came within `within`.
    async fn read_all(stream: &mut tokio::net::TcpStream, within: Duration) -> (String, bool) {
        let mut buf = Vec::new();
        let closed = tokio::time::timeout(within, stream.read_to_end(&mut buf))
            .await
            .is_ok();
        (String::from_utf8_lossy(&buf).into_owned(), closed)
    }

    // Headers sent too slowly: the connection is closed (before, it stayed open for good).
    let (addr, stop, task) = serve(pantau_config::config::ApiLimits {
        header_timeout_s: 1,
        request_timeout_s: 1,
        ..Default::default()
    })
    .await;
    let mut slow = tokio::net::TcpStream::connect(addr).await.expect("connect");
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: pantau\r\n")
        .await
        .expect("write");
    let (_, closed) = read_all(&mut slow, Duration::from_secs(5)).await;
    assert!(
        closed,
        "a connection that never finished its headers stayed open"
    );

    // A body that never arrives: 408 after the request timeout.
    let mut stuck = tokio::net::TcpStream::connect(addr).await.expect("connect");
    stuck
        .write_all(
            b"POST /api/v1/auth/login HTTP/1.1\r\nHost: pantau\r\ncontent-type: application/json\r\n\
              content-length: 100\r\n\r\n{\"user\":",
        )
        .await
        .expect("write");
    let (answer, _) = read_all(&mut stuck, Duration::from_secs(5)).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("request_timeout"), "{answer}");
    stop.cancel();
    task.await.expect("task").expect("served");

    // Connections over the limit: 503 with Retry-After, then closed.
    let (addr, stop, task) = serve(pantau_config::config::ApiLimits {
        max_connections: 2,
        ..Default::default()
    })
    .await;
    let idle = [
        tokio::net::TcpStream::connect(addr).await.expect("connect"),
        tokio::net::TcpStream::connect(addr).await.expect("connect"),
    ];
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut extra = tokio::net::TcpStream::connect(addr).await.expect("connect");
    extra
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: pantau\r\n\r\n")
        .await
        .expect("write");
    let (answer, closed) = read_all(&mut extra, Duration::from_secs(5)).await;
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(
        answer.contains("retry-after: 1") && answer.contains("max_connections"),
        "{answer}"
    );
    assert!(closed);
    // Once one goes, a new client is served.
    drop(idle);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut next = tokio::net::TcpStream::connect(addr).await.expect("connect");
    next.write_all(b"GET /healthz HTTP/1.1\r\nHost: pantau\r\nconnection: close\r\n\r\n")
        .await
        .expect("write");
    let (answer, _) = read_all(&mut next, Duration::from_secs(5)).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    stop.cancel();
    task.await.expect("task").expect("served");
    h.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cameras_from_the_api_reach_only_allowed_secrets_and_files() {
    use std::os::unix::fs::PermissionsExt;
    let h = harness("reach").await;
    let media = h.dir.path().join("media");
    std::fs::create_dir_all(&media).expect("mkdir");
    let mut state = h.state.clone();
    state.settings = Arc::new(ApiSettings {
        media_dirs: vec![media.canonicalize().expect("media")],
        ..ApiSettings::default()
    });
    let post = |body: Value| {
        let req = Request::post("/api/v1/cameras")
            .header(
                header::AUTHORIZATION,
                format!("Bearer {}", h.tokens["admin"]),
            )
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(body.to_string()))
            .expect("request");
        let app = app(state.clone());
        async move {
            let res = app.oneshot(req).await.expect("response");
            let status = res.status();
            let bytes = res.into_body().collect().await.expect("body").to_bytes();
            (
                status,
                serde_json::from_slice::<Value>(&bytes).unwrap_or(Value::Null),
            )
        }
    };
    // pantau's own secrets are out of reach, whether or not the variable is set.
    // nextest runs each test in its own process, so this reaches no other test.
    std::env::set_var("PANTAU_ADMIN_PASSWORD", "the admin's secret");
    for var in ["PANTAU_ADMIN_PASSWORD", "HOME", "PANTAU_NOT_SET"] {
        let (s, b) = post(json!({
            "id": "thief", "url": "rtsp://192.0.2.1/stream", "username": "u", "password_env": var
        }))
        .await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{var}: {b}");
        assert_eq!(b["issues"][0]["path"], "camera.password_env", "{b}");
        assert!(
            b["message"].as_str().unwrap_or("").contains("PANTAU_CAM_"),
            "{b}"
        );
    }
    std::env::set_var("PANTAU_CAM_GATE2", "camera secret");
    let (s, b) = post(json!({
        "id": "gate2", "url": "rtsp://127.0.0.1:9/stream", "username": "u",
        "password_env": "PANTAU_CAM_GATE2", "enabled": false
    }))
    .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    // The cameras file may hold passwords: only pantau's user reads it.
    let mode = std::fs::metadata(h.dir.path().join("cameras.toml"))
        .expect("cameras file")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "{mode:o}");

    // Files: only regular files under api.media_dirs.
    let fifo = media.join("pipe.mp4");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .expect("mkfifo");
    assert!(made.success());
    std::os::unix::fs::symlink("/etc/hosts", media.join("hosts.mp4")).expect("symlink");
    std::fs::write(media.join("clip.mp4"), b"not really a video").expect("write");
    for (url, ok) in [
        ("file:///etc/hosts".to_string(), false),
        (format!("file://{}", fifo.display()), false),
        (
            format!("file://{}", media.join("hosts.mp4").display()),
            false,
        ),
        (format!("file://{}/../cameras.toml", media.display()), false),
        (format!("file://{}", media.join("clip.mp4").display()), true),
    ] {
        let (s, b) = post(json!({"id": "f", "url": url, "enabled": false})).await;
        if ok {
            assert_eq!(s, StatusCode::CREATED, "{url}: {b}");
        } else {
            assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{url}: {b}");
            assert_eq!(b["issues"][0]["path"], "camera.url", "{url}: {b}");
            assert!(
                b["message"]
                    .as_str()
                    .unwrap_or("")
                    .contains("api.media_dirs"),
                "{b}"
            );
        }
    }
    // Without media folders (the default) no file camera comes from the API at all.
    let (s, b) = h
        .call(
            Method::POST,
            "/api/v1/cameras",
            Some("admin"),
            Some(json!({"id": "g", "url": format!("file://{}", media.join("clip.mp4").display())})),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
    assert!(
        b["message"]
            .as_str()
            .unwrap_or("")
            .contains("none are configured"),
        "{b}"
    );
    h.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_access_and_history_row_limits() {
    use pantau_config::config::MetricsAccess;
    let h = harness("metrics_history").await;
    let with = |settings: ApiSettings| {
        let mut state = h.state.clone();
        state.settings = Arc::new(settings);
        state
    };
    let scrape = |state: ApiState, token: Option<&str>| {
        let mut req = Request::get("/metrics");
        if let Some(t) = token {
            req = req.header(header::AUTHORIZATION, format!("Bearer {t}"));
        }
        let req = req.body(Body::empty()).expect("request");
        async move { app(state).oneshot(req).await.expect("response").status() }
    };
    let token = "a-long-scrape-token-0123456789";
    let locked = with(ApiSettings {
        metrics: MetricsAccess::Token,
        metrics_token: Some(token.into()),
        ..ApiSettings::default()
    });
    assert_eq!(scrape(locked.clone(), None).await, StatusCode::UNAUTHORIZED);
    assert_eq!(
        scrape(locked.clone(), Some("a-long-scrape-token-0123456780")).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(scrape(locked, Some(token)).await, StatusCode::OK);
    let off = with(ApiSettings {
        metrics: MetricsAccess::Off,
        ..ApiSettings::default()
    });
    assert_eq!(scrape(off, None).await, StatusCode::NOT_FOUND);
    assert_eq!(scrape(h.state.clone(), None).await, StatusCode::OK);

    // History: 2 h of 5-minute buckets for 3 classes and 2 directions is 144 rows.
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
            counts: ["in", "out"]
                .into_iter()
                .map(|d| {
                    let classes = ["car", "motorcycle", "=cmd|' /C calc'!A0"]
                        .into_iter()
                        .map(|c| (c.to_string(), 1u64))
                        .collect();
                    (d.to_string(), classes)
                })
                .collect(),
        })
        .collect();
    pantau_store::Store::connect(DB, &h.schema)
        .await
        .expect("store")
        .write(&[], &counts)
        .await
        .expect("write");
    let small = with(ApiSettings {
        limits: pantau_config::config::ApiLimits {
            history_rows: 100,
            ..Default::default()
        },
        ..ApiSettings::default()
    });
    let get = |state: ApiState, uri: String| {
        let req = Request::get(uri)
            .header(
                header::AUTHORIZATION,
                format!("Bearer {}", h.tokens["planner"]),
            )
            .body(Body::empty())
            .expect("request");
        async move {
            let res = app(state).oneshot(req).await.expect("response");
            let status = res.status();
            let bytes = res.into_body().collect().await.expect("body").to_bytes();
            (status, String::from_utf8_lossy(&bytes).into_owned())
        }
    };
    let range = "from=2026-11-24T08:00:00Z&to=2026-11-24T10:00:00Z&bucket=5m";
    let (s, b) = get(small.clone(), format!("/api/v1/history?{range}")).await;
    let b: Value = serde_json::from_str(&b).expect("json");
    assert_error(
        s,
        &b,
        StatusCode::UNPROCESSABLE_ENTITY,
        "too_many_rows",
        "more than 100 rows",
    );
    assert!(
        b["message"].as_str().unwrap_or("").contains("history.csv"),
        "{b}"
    );
    let (s, b) = get(small.clone(), format!("/api/v1/history?{range}&class=car")).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let rows: Value = serde_json::from_str(&b).expect("json");
    assert_eq!(rows.as_array().map(Vec::len), Some(48));
    // The CSV streams whatever the size, and never hands a spreadsheet a formula.
    let (s, csv) = get(small, format!("/api/v1/history.csv?{range}")).await;
    assert_eq!(s, StatusCode::OK);
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.len(), 1 + 144, "{csv}");
    assert!(
        lines.iter().skip(1).all(|l| !l.contains(",=")),
        "a formula reached the CSV: {csv}"
    );
    assert!(csv.contains(",'=cmd|' /C calc'!A0,"), "{csv}");

    // Speeds at the line: percentiles of the crossings' ground speeds per bucket and direction.
    let crossings: Vec<Event> = (0..=20)
        .map(|k| {
            let mut e = event(
                &ids,
                at(k) + Duration::from_secs(1),
                "stop-line",
                Severity::Info,
                EventKind::LineCrossing,
            );
            e.direction = Some("in".into());
            e.details
                .insert("speed_kmh".into(), json!(10.0 + f64::from(k as u32)));
            e
        })
        .collect();
    let mut slow_out = event(
        &ids,
        at(3),
        "stop-line",
        Severity::Info,
        EventKind::LineCrossing,
    );
    slow_out.direction = Some("out".into());
    slow_out.details.insert("speed_kmh".into(), json!(5.0));
    let mut unmeasured = slow_out.clone();
    unmeasured.id = ids.at(at(4));
    unmeasured.details.clear();
    pantau_store::Store::connect(DB, &h.schema)
        .await
        .expect("store")
        .write(
            &crossings
                .into_iter()
                .chain([slow_out, unmeasured])
                .collect::<Vec<_>>(),
            &[],
        )
        .await
        .expect("write");
    let (s, b) = get(
        h.state.clone(),
        "/api/v1/history/speeds?from=2026-11-24T08:00:00Z&to=2026-11-24T10:00:00Z&bucket=1h"
            .to_string(),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let rows: Value = serde_json::from_str(&b).expect("json");
    assert_eq!(
        rows,
        json!([
            {"bucket_start": "2026-11-24T08:00:00.000Z", "camera": "gate", "line": "stop-line",
             "direction": "in", "vehicles": 21, "p15_kmh": 13.0, "p50_kmh": 20.0, "p85_kmh": 27.0},
            {"bucket_start": "2026-11-24T08:00:00.000Z", "camera": "gate", "line": "stop-line",
             "direction": "out", "vehicles": 1, "p15_kmh": 5.0, "p50_kmh": 5.0, "p85_kmh": 5.0}
        ])
    );
    // The same speeds beside the counts of /history, per class and direction.
    pantau_store::Store::connect(DB, &h.schema)
        .await
        .expect("store")
        .write(
            &[],
            &[CountAggregate {
                id: ids.at(at(0)),
                schema: SCHEMA_VERSION,
                site: "kota".into(),
                camera: "gate".into(),
                line: "stop-line".into(),
                period_start: at(0),
                period_s: 60,
                counts: BTreeMap::from([(
                    "in".to_string(),
                    BTreeMap::from([("person".to_string(), 21u64)]),
                )]),
            }],
        )
        .await
        .expect("write");
    let (s, b) = get(
        h.state.clone(),
        "/api/v1/history?from=2026-11-24T08:00:00Z&to=2026-11-24T10:00:00Z&bucket=1h&camera=gate"
            .to_string(),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let rows: Value = serde_json::from_str(&b).expect("json");
    assert_eq!(
        rows,
        json!([{"bucket_start": "2026-11-24T08:00:00.000Z", "camera": "gate", "line": "stop-line",
                "class": "person", "direction": "in", "count": 21,
                "speed_p15_kmh": 13.0, "speed_p50_kmh": 20.0, "speed_p85_kmh": 27.0}])
    );
    let (s, _) = get(
        h.state.clone(),
        format!("/api/v1/history/speeds?{range}&direction=out&camera=elsewhere"),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    h.forbidden(
        Method::GET,
        &format!("/api/v1/history/speeds?{range}"),
        "operator",
        None,
    )
    .await;
    h.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snoozes_quiet_a_rule_for_a_while_and_are_audited() {
    let h = harness("snooze").await;
    let snooze = |body: Value| {
        h.call(
            Method::POST,
            "/api/v1/cameras/gate/snoozes",
            Some("operator"),
            Some(body),
        )
    };
    let (s, b) = snooze(json!({"rule": "camera", "minutes": 0})).await;
    assert_error(
        s,
        &b,
        StatusCode::BAD_REQUEST,
        "bad_request",
        "1 to 1440 minutes",
    );
    let (s, b) = snooze(json!({"rule": "road", "minutes": 5})).await;
    assert_error(
        s,
        &b,
        StatusCode::BAD_REQUEST,
        "bad_request",
        "not one of camera \"gate\"'s",
    );
    h.forbidden(
        Method::POST,
        "/api/v1/cameras/gate/snoozes",
        "planner",
        Some(json!({"rule": "camera", "minutes": 5})),
    )
    .await;
    let (s, b) = h
        .call(
            Method::POST,
            "/api/v1/cameras/nope/snoozes",
            Some("operator"),
            Some(json!({"rule": "camera", "minutes": 5})),
        )
        .await;
    assert_error(s, &b, StatusCode::NOT_FOUND, "camera_not_found", "nope");

    let (s, b) = snooze(json!({"rule": "camera", "minutes": 30, "note": "pasar malam"})).await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    assert_eq!(
        (&b["by"], &b["note"]),
        (&json!("oki"), &json!("pasar malam"))
    );
    let until = pantau_events::time::parse(b["until"].as_str().expect("until")).expect("time");
    let left = until.duration_since(SystemTime::now()).expect("future");
    assert!((1790..=1800).contains(&left.as_secs()), "{left:?}");
    // The node's analysis sees it (and marks the rule's alerts until then).
    assert!(h
        .state
        .snoozes
        .until("gate", "camera", SystemTime::now())
        .is_some());
    assert!(h
        .state
        .snoozes
        .until("gate", "camera", until + Duration::from_secs(1))
        .is_none());
    let (s, b) = h.get("/api/v1/snoozes", "dispatcher").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(b[0]["rule"], "camera", "{b}");
    let (_, b) = h.get("/api/v1/cameras/gate", "operator").await;
    assert_eq!(b["snoozes"][0]["note"], "pasar malam", "{b}");
    // Ended early; a second end finds nothing.
    let (s, _) = h
        .call(
            Method::DELETE,
            "/api/v1/cameras/gate/snoozes/camera",
            Some("operator"),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, b) = h
        .call(
            Method::DELETE,
            "/api/v1/cameras/gate/snoozes/camera",
            Some("operator"),
            None,
        )
        .await;
    assert_error(
        s,
        &b,
        StatusCode::NOT_FOUND,
        "snooze_not_found",
        "not snoozed",
    );
    assert!(h
        .state
        .snoozes
        .until("gate", "camera", SystemTime::now())
        .is_none());
    // Both are in the audit trail, with who.
    let (client, conn) = tokio_postgres::connect(DB, tokio_postgres::NoTls)
        .await
        .expect("database");
    tokio::spawn(conn);
    let rows = client
        .query(
            &format!(
                "select actor, action from {}.audit where target = 'camera:gate' and action like 'snooze%' order by seq",
                h.schema
            ),
            &[],
        )
        .await
        .expect("audit");
    let trail: Vec<(String, String)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    assert_eq!(
        trail,
        [
            ("oki".to_string(), "snooze".to_string()),
            ("oki".into(), "snooze.end".into())
        ]
    );
    h.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cameras_are_validated_applied_persisted_and_role_checked() {
    let h = harness("cameras").await;
    tokio::time::sleep(Duration::from_millis(500)).await;

    let (s, b) = h.get("/api/v1/cameras", "operator").await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b[0]["status"]["id"], "gate");
    assert!(b[0]["status"]["frames_decoded"].is_u64());
    assert_eq!(
        b[0]["config"]["url"],
        "test://ball?width=160&height=120&fps=10"
    );
    h.forbidden(Method::GET, "/api/v1/cameras", "planner", None)
        .await;
    let (s, _) = h.call(Method::GET, "/api/v1/cameras", None, None).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let (s, b) = h.get("/api/v1/cameras/gate", "dispatcher").await;
    assert_eq!((s, &b["config"]["id"]), (StatusCode::OK, &json!("gate")));
    let (s, b) = h.get("/api/v1/cameras/nope", "operator").await;
    assert_error(s, &b, StatusCode::NOT_FOUND, "camera_not_found", "nope");

    // The latest frame, as JPEG.
    let mut jpeg = None;
    for _ in 0..40 {
        let res = h
            .raw(
                Method::GET,
                "/api/v1/cameras/gate/frame.jpg",
                Some(&h.tokens["operator"]),
                None,
            )
            .await;
        if res.status() == StatusCode::OK {
            assert_eq!(res.headers()[header::CONTENT_TYPE], "image/jpeg");
            jpeg = Some(res.into_body().collect().await.expect("body").to_bytes());
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let jpeg = jpeg.expect("a frame within 10 s");
    assert_eq!(&jpeg[..3], &[0xFF, 0xD8, 0xFF]);
    // Many viewers of one frame: encoded once, not once per request.
    let before = h.ingest.jpeg_encodings();
    let viewers: Vec<_> = (0..8)
        .map(|_| {
            h.raw(
                Method::GET,
                "/api/v1/cameras/gate/frame.jpg?overlay=none",
                Some(&h.tokens["operator"]),
                None,
            )
        })
        .collect();
    for res in futures_util::future::join_all(viewers).await {
        assert_eq!(res.status(), StatusCode::OK);
    }
    let encoded = h.ingest.jpeg_encodings() - before;
    // At most a new frame arriving meanwhile adds one; without the cache this is 8.
    assert!(
        encoded <= 2,
        "8 requests for the newest frame encoded {encoded} JPEGs"
    );
    h.forbidden(
        Method::GET,
        "/api/v1/cameras/gate/frame.jpg",
        "planner",
        None,
    )
    .await;
    let (s, b) = h.get("/api/v1/cameras/nope/frame.jpg", "operator").await;
    assert_error(s, &b, StatusCode::NOT_FOUND, "camera_not_found", "nope");

    // Add: admin only, validated like the config file, every problem listed with its path.
    let new = json!({
        "id": "simpang-lima", "name": "Simpang Lima",
        "url": "test://smpte?width=160&height=120&fps=10",
        "analysis_fps": 2.0,
        "lines": [{"name": "stop-line", "points": [[0, 60], [160, 60]]}],
        "zones": [{"name": "box", "polygon": [[10, 10], [100, 10], [100, 100]], "severity": "warning"}]
    });
    h.forbidden(
        Method::POST,
        "/api/v1/cameras",
        "operator",
        Some(new.clone()),
    )
    .await;
    h.forbidden(
        Method::POST,
        "/api/v1/cameras",
        "dispatcher",
        Some(new.clone()),
    )
    .await;
    let bad = json!({
        "id": "Simpang Lima", "url": "ftp://x",
        "analysis_fps": 0,
        "lines": [{"name": "l", "points": [[0, 60]]}]
    });
    let (s, b) = h
        .call(Method::POST, "/api/v1/cameras", Some("admin"), Some(bad))
        .await;
    assert_error(
        s,
        &b,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_camera",
        "is not valid",
    );
    let paths: HashSet<&str> = b["issues"]
        .as_array()
        .expect("issues")
        .iter()
        .filter_map(|i| i["path"].as_str())
        .collect();
    for p in [
        "camera.id",
        "camera.url",
        "camera.analysis_fps",
        "camera.lines[0].points",
    ] {
        assert!(paths.contains(p), "{p} missing in {b}");
    }
    let (s, b) = h
        .call(
            Method::POST,
            "/api/v1/cameras",
            Some("admin"),
            Some(json!({"id": "x", "url": "test://ball", "fps": 3})),
        )
        .await;
    assert_error(
        s,
        &b,
        StatusCode::UNPROCESSABLE_ENTITY,
        "bad_request",
        "unknown field `fps`",
    );
    let (s, b) = h
        .call(
            Method::POST,
            "/api/v1/cameras",
            Some("admin"),
            Some(new.clone()),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    assert!(h.ingest.status("simpang-lima").is_some(), "runs at once");
    let (s, b) = h
        .call(
            Method::POST,
            "/api/v1/cameras",
            Some("admin"),
            Some(new.clone()),
        )
        .await;
    assert_error(s, &b, StatusCode::CONFLICT, "conflict", "exists");

    // Change: the whole camera, id must match.
    let mut changed = new.clone();
    changed["lines"] = json!([{"name": "stop-line", "points": [[0, 80], [160, 80]]}, {"name": "exit", "points": [[80, 0], [80, 120]]}]);
    h.forbidden(
        Method::PUT,
        "/api/v1/cameras/simpang-lima",
        "operator",
        Some(changed.clone()),
    )
    .await;
    let (s, b) = h
        .call(
            Method::PUT,
            "/api/v1/cameras/gate",
            Some("admin"),
            Some(changed.clone()),
        )
        .await;
    assert_error(
        s,
        &b,
        StatusCode::BAD_REQUEST,
        "bad_request",
        "cannot be renamed",
    );
    let (s, b) = h
        .call(
            Method::PUT,
            "/api/v1/cameras/simpang-lima",
            Some("admin"),
            Some(changed),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["config"]["lines"][1]["name"], "exit");
    let mut invalid = new.clone();
    invalid["zones"][0]["polygon"] = json!([[0, 0], [1, 1]]);
    let (s, b) = h
        .call(
            Method::PUT,
            "/api/v1/cameras/simpang-lima",
            Some("admin"),
            Some(invalid),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
    assert_eq!(b["issues"][0]["path"], "camera.zones[0].polygon");
    let (s, b) = h
        .call(
            Method::PUT,
            "/api/v1/cameras/nope",
            Some("admin"),
            Some(json!({"id": "nope", "url": "test://ball"})),
        )
        .await;
    assert_error(
        s,
        &b,
        StatusCode::NOT_FOUND,
        "camera_not_found",
        "POST /api/v1/cameras",
    );

    // Remove a config-file camera.
    h.forbidden(Method::DELETE, "/api/v1/cameras/gate", "dispatcher", None)
        .await;
    let (s, _) = h
        .call(Method::DELETE, "/api/v1/cameras/gate", Some("admin"), None)
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    assert!(h.ingest.status("gate").is_none(), "stopped at once");
    let (s, b) = h
        .call(Method::DELETE, "/api/v1/cameras/gate", Some("admin"), None)
        .await;
    assert_error(s, &b, StatusCode::NOT_FOUND, "camera_not_found", "gate");

    // A restart reads the file: the change and the removal stay.
    let (reloaded, _) = registry(h.dir.path(), &h.ingest);
    let ids: Vec<&str> = reloaded.cameras.iter().map(|c| c.id.as_str()).collect();
    assert_eq!(ids, ["simpang-lima"]);
    assert_eq!(reloaded.cameras[0].lines.len(), 2);
    assert!(
        reloaded.overridden.contains(&"gate (removed)".to_string()),
        "{:?}",
        reloaded.overridden
    );

    // Audit trail of camera changes.
    let store = h.state.store().await.expect("store");
    let n: i64 = store
        .client()
        .await
        .expect("connection")
        .query_one(
            &format!(
                "select count(*) from {}.audit where action like 'camera.%' and actor = 'ana'",
                h.schema
            ),
            &[],
        )
        .await
        .expect("audit")
        .get(0);
    assert_eq!(n, 3);
    h.finish().await;
}

fn event(
    ids: &IdGenerator,
    at: SystemTime,
    rule: &str,
    severity: Severity,
    kind: EventKind,
) -> Event {
    Event {
        id: ids.at(at),
        schema: SCHEMA_VERSION,
        site: "kota".into(),
        camera: "gate".into(),
        rule: rule.into(),
        kind,
        lifecycle: if kind == EventKind::ZonePresence {
            Lifecycle::New
        } else {
            Lifecycle::Single
        },
        incident: (kind == EventKind::ZonePresence).then(|| format!("gate/{rule}/{}", ids.at(at))),
        captured_at: at,
        severity,
        object: Some(ObjectRef {
            class: "person".into(),
            track_id: 7,
            bbox: [1.0, 2.0, 3.0, 4.0],
            confidence: 0.9,
        }),
        direction: None,
        snapshot: None,
        details: BTreeMap::new(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_search_dispatch_audit_mqtt_and_live() {
    let h = harness("events").await;
    let ids = IdGenerator::new();
    let now = SystemTime::now();
    let mut events = Vec::new();
    for i in 0..23u64 {
        let at = now - Duration::from_secs(600 - i * 20);
        events.push(if i % 3 == 0 {
            event(
                &ids,
                at,
                "restricted",
                Severity::Warning,
                EventKind::ZonePresence,
            )
        } else {
            event(
                &ids,
                at,
                "stop-line",
                Severity::Info,
                EventKind::LineCrossing,
            )
        });
    }
    let alerts: Vec<&Event> = events
        .iter()
        .filter(|e| e.severity == Severity::Warning)
        .collect();
    assert_eq!(alerts.len(), 8);
    {
        let sink = pantau_store::Store::connect(DB, &h.schema)
            .await
            .expect("store");
        sink.write(&events, &[]).await.expect("write");
    }

    // Keyset pages: newest first, no gaps, no repeats.
    let mut seen = Vec::new();
    let mut uri = "/api/v1/events?limit=5".to_string();
    loop {
        let (s, b) = h.get(&uri, "operator").await;
        assert_eq!(s, StatusCode::OK, "{b}");
        for it in b["items"].as_array().expect("items") {
            seen.push(it["event"]["id"].as_str().expect("id").to_string());
        }
        match b["next_cursor"].as_str() {
            Some(c) => uri = format!("/api/v1/events?limit=5&cursor={c}"),
            None => break,
        }
    }
    let mut want: Vec<String> = events.iter().map(|e| e.id.to_string()).collect();
    want.reverse();
    assert_eq!(seen, want);

    let (s, b) = h
        .get(
            "/api/v1/events?severity=warning,critical&rule=restricted",
            "dispatcher",
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(b["items"].as_array().map(Vec::len), Some(8));
    assert_eq!(b["items"][0]["dispatch"]["state"], "new");
    let (_, b) = h
        .get("/api/v1/events?kind=line_crossing&limit=500", "operator")
        .await;
    assert_eq!(b["items"].as_array().map(Vec::len), Some(15));
    assert!(
        b["items"][0]["dispatch"].is_null(),
        "info events have no dispatch state"
    );
    h.forbidden(Method::GET, "/api/v1/events", "planner", None)
        .await;
    for (q, text) in [
        ("severity=urgent", "severity \"urgent\" is not one of"),
        ("state=open", "state \"open\" is not one of"),
        ("limit=0", "limit: use 1 to 500"),
        ("cursor=abc", "cursor is not one this API gave out"),
        ("from=today", "from \"today\" is not a UTC time"),
        ("kind=crash", "is not an event kind"),
        ("camra=gate", "unknown field `camra`"),
    ] {
        let (s, b) = h.get(&format!("/api/v1/events?{q}"), "operator").await;
        assert_error(s, &b, StatusCode::BAD_REQUEST, "bad_request", text);
    }

    // Live stream: open it before acting.
    let res = h
        .raw(
            Method::GET,
            "/api/v1/live?types=incident&camera=gate",
            Some(&h.tokens["operator"]),
            None,
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()[header::CONTENT_TYPE], "text/event-stream");
    let mut live = res.into_body();
    h.forbidden(Method::GET, "/api/v1/live", "planner", None)
        .await;
    let (s, b) = h.get("/api/v1/live?types=video", "operator").await;
    assert_error(
        s,
        &b,
        StatusCode::BAD_REQUEST,
        "bad_request",
        "types \"video\"",
    );

    // Dispatch: operator acknowledges; only dispatchers assign, note, escalate, close.
    let alert = alerts[0].id.to_string();
    let actions = format!("/api/v1/events/{alert}/actions");
    let post = |role: &'static str, body: Value| {
        let actions = actions.clone();
        let h = &h;
        async move { h.call(Method::POST, &actions, Some(role), Some(body)).await }
    };
    let (s, b) = post("planner", json!({"action": "acknowledge"})).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{b}");
    let (s, b) = post("operator", json!({"action": "acknowledge"})).await;
    assert_eq!(
        (s, &b["state"]),
        (StatusCode::OK, &json!("acknowledged")),
        "{b}"
    );
    let (s, b) = post("operator", json!({"action": "acknowledge"})).await;
    assert_error(
        s,
        &b,
        StatusCode::CONFLICT,
        "conflict",
        "already acknowledged",
    );
    for body in [
        json!({"action": "assign", "unit": "Patroli 7"}),
        json!({"action": "escalate"}),
        json!({"action": "close"}),
        json!({"action": "note", "note": "x"}),
    ] {
        h.forbidden(Method::POST, &actions, "operator", Some(body))
            .await;
    }
    let (s, b) = post("dispatcher", json!({"action": "assign"})).await;
    assert_error(
        s,
        &b,
        StatusCode::UNPROCESSABLE_ENTITY,
        "bad_request",
        "missing field `unit`",
    );
    let (s, b) = post("dispatcher", json!({"action": "assign", "unit": "  "})).await;
    assert_error(
        s,
        &b,
        StatusCode::BAD_REQUEST,
        "bad_request",
        "unit: name the unit",
    );
    let (s, b) = post("dispatcher", json!({"action": "teleport"})).await;
    assert_error(
        s,
        &b,
        StatusCode::UNPROCESSABLE_ENTITY,
        "bad_request",
        "unknown variant `teleport`",
    );
    let (s, b) = post(
        "dispatcher",
        json!({"action": "assign", "unit": "Patroli 7", "note": "dekat pasar"}),
    )
    .await;
    assert_eq!(
        (s, &b["assignee"]),
        (StatusCode::OK, &json!("Patroli 7")),
        "{b}"
    );
    let (s, b) = post(
        "dispatcher",
        json!({"action": "escalate", "note": "butuh ambulans"}),
    )
    .await;
    assert_eq!(
        (&b["state"], &b["escalations"]),
        (&json!("escalated"), &json!(1)),
        "{s} {b}"
    );
    let (s, b) = post("admin", json!({"action": "close", "note": "selesai"})).await;
    assert_eq!((s, &b["state"]), (StatusCode::OK, &json!("closed")));
    let (s, b) = post("dispatcher", json!({"action": "escalate"})).await;
    assert_error(s, &b, StatusCode::CONFLICT, "conflict", "is closed");
    let (s, _) = post(
        "dispatcher",
        json!({"action": "note", "note": "laporan dikirim"}),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let info = events
        .iter()
        .find(|e| e.severity == Severity::Info)
        .expect("info")
        .id
        .to_string();
    let (s, b) = h
        .call(
            Method::POST,
            &format!("/api/v1/events/{info}/actions"),
            Some("dispatcher"),
            Some(json!({"action": "acknowledge"})),
        )
        .await;
    assert_error(s, &b, StatusCode::CONFLICT, "conflict", "not an alert");
    let (s, b) = h
        .call(
            Method::POST,
            "/api/v1/events/01NOPE/actions",
            Some("dispatcher"),
            Some(json!({"action": "acknowledge"})),
        )
        .await;
    assert_error(s, &b, StatusCode::NOT_FOUND, "event_not_found", "01NOPE");

    // The audit trail has every action with who and when; the state filter sees it.
    let (s, b) = h.get(&format!("/api/v1/events/{alert}"), "operator").await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["dispatch"]["state"], "closed");
    assert_eq!(b["dispatch"]["assignee"], "Patroli 7");
    let trail: Vec<(String, String)> = b["audit"]
        .as_array()
        .expect("audit")
        .iter()
        .map(|a| {
            (
                a["actor"].as_str().unwrap_or("").into(),
                a["action"].as_str().unwrap_or("").into(),
            )
        })
        .collect();
    let expect: Vec<(String, String)> = [
        ("oki", "acknowledge"),
        ("dina", "assign"),
        ("dina", "escalate"),
        ("ana", "close"),
        ("dina", "note"),
    ]
    .iter()
    .map(|(u, a)| (u.to_string(), format!("incident.{a}")))
    .collect();
    assert_eq!(trail, expect);
    assert!(b["audit"][0]["at"]
        .as_str()
        .is_some_and(|t| t.ends_with('Z')));
    let (_, b) = h.get("/api/v1/events?state=closed", "operator").await;
    assert_eq!(b["items"].as_array().map(Vec::len), Some(1));
    let (_, b) = h.get("/api/v1/events?state=new", "operator").await;
    assert_eq!(b["items"].as_array().map(Vec::len), Some(7));
    let (s, b) = h.get("/api/v1/events/01NOPE", "operator").await;
    assert_error(s, &b, StatusCode::NOT_FOUND, "event_not_found", "01NOPE");
    h.forbidden(
        Method::GET,
        &format!("/api/v1/events/{alert}"),
        "planner",
        None,
    )
    .await;

    // Each state change went to the outbox for MQTT ...
    let outbox = h.state.outbox.as_ref().expect("outbox");
    let records = outbox.read("mqtt", 100).expect("read");
    let changes: Vec<Value> = records
        .iter()
        .filter(|(_, r)| {
            r.topic == "pantau/kota/gate/incidents" && r.kind == pantau_events::Kind::Incident
        })
        .map(|(_, r)| serde_json::from_slice(&r.payload).expect("json"))
        .collect();
    let states: Vec<&str> = changes.iter().filter_map(|c| c["state"].as_str()).collect();
    assert_eq!(
        states,
        ["acknowledged", "assigned", "escalated", "closed", "closed"]
    );
    assert_eq!(changes[1]["actor"], "dina");
    // Each message was written with its action and removed once in the outbox.
    let store = h.state.store().await.expect("store");
    let pending_sql = format!("select count(*) from {}.incident_messages", h.schema);
    let pending: i64 = store
        .client()
        .await
        .expect("connection")
        .query_one(&pending_sql, &[])
        .await
        .expect("query")
        .get(0);
    assert_eq!(pending, 0);
    // A message a crash left behind (stored, never in the outbox) is moved at the next start.
    let mut left = changes[0].clone();
    left["note"] = json!("left by a crash");
    store
        .client()
        .await
        .expect("connection")
        .execute(
            &format!(
                "insert into {}.incident_messages (payload) values ($1)",
                h.schema
            ),
            &[&left],
        )
        .await
        .expect("insert");
    let moved =
        pantau_dashboard_api::incidents::relay_messages(&store, outbox, &h.state.settings.topics)
            .await
            .expect("relay");
    assert_eq!(moved, 1);
    let relayed = outbox.read("mqtt", 100).expect("read");
    let last = relayed.last().expect("a record");
    assert_eq!(last.1.kind, pantau_events::Kind::Incident);
    let last: Value = serde_json::from_slice(&last.1.payload).expect("json");
    assert_eq!(last["note"], "left by a crash");
    let pending: i64 = store
        .client()
        .await
        .expect("connection")
        .query_one(&pending_sql, &[])
        .await
        .expect("query")
        .get(0);
    assert_eq!(pending, 0);

    // ... and to live clients.
    let mut text = String::new();
    while text.matches("event: incident").count() < 5 {
        let frame = tokio::time::timeout(Duration::from_secs(5), live.frame())
            .await
            .expect("live message within 5 s")
            .expect("stream open")
            .expect("frame");
        if let Ok(data) = frame.into_data() {
            text.push_str(&String::from_utf8_lossy(&data));
        }
    }
    assert!(text.contains("\"action\":\"acknowledge\""), "{text}");
    h.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_json_csv_snapshots_health_metrics_docs_and_console() {
    let h = harness("history").await;
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
    {
        let sink = pantau_store::Store::connect(DB, &h.schema)
            .await
            .expect("store");
        sink.write(&[], &counts).await.expect("write");
    }
    let range = "from=2026-11-24T08:00:00Z&to=2026-11-24T10:00:00Z";
    let (s, rows) = h
        .get(
            &format!("/api/v1/history?{range}&bucket=1h&camera=simpang-lima"),
            "planner",
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{rows}");
    assert_eq!(rows.as_array().map(Vec::len), Some(2));
    assert_eq!(rows[0]["count"], 120);
    assert_eq!(rows[0]["bucket_start"], "2026-11-24T08:00:00.000Z");
    for role in ["operator", "dispatcher"] {
        h.forbidden(Method::GET, &format!("/api/v1/history?{range}"), role, None)
            .await;
        h.forbidden(
            Method::GET,
            &format!("/api/v1/history.csv?{range}"),
            role,
            None,
        )
        .await;
    }
    let (s, csv) = h
        .get(&format!("/api/v1/history.csv?{range}&bucket=15m"), "admin")
        .await;
    assert_eq!(s, StatusCode::OK);
    let csv = csv.as_str().expect("text").to_string();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines[0], "bucket_start,camera,line,class,direction,count");
    assert_eq!(lines.len(), 1 + 8);
    assert_eq!(
        lines[1],
        "2026-11-24T08:00:00.000Z,simpang-lima,stop-line,car,in,30"
    );
    for (q, expected) in [
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
        let (s, b) = h.get(&format!("/api/v1/history?{q}"), "planner").await;
        assert_error(s, &b, StatusCode::BAD_REQUEST, "bad_request", expected);
    }

    // Snapshots: served from the snapshot folder, paths checked.
    std::fs::write(
        h.dir.path().join("snapshots/gate/2026-11-24/01ABC.jpg"),
        b"\xFF\xD8\xFFjpeg",
    )
    .expect("write");
    let res = h
        .raw(
            Method::GET,
            "/api/v1/snapshots/gate/2026-11-24/01ABC.jpg",
            Some(&h.tokens["operator"]),
            None,
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()[header::CONTENT_TYPE], "image/jpeg");
    h.forbidden(
        Method::GET,
        "/api/v1/snapshots/gate/2026-11-24/01ABC.jpg",
        "planner",
        None,
    )
    .await;
    let (s, b) = h
        .get("/api/v1/snapshots/gate/2026-11-24/01XYZ.jpg", "operator")
        .await;
    assert_error(s, &b, StatusCode::NOT_FOUND, "snapshot_not_found", "01XYZ");
    // A live event's snapshot is written just after the event: asked for at once, it comes
    // (the API waits briefly for an event of the last seconds).
    let fresh = IdGenerator::new().now();
    let name = format!("gate/2026-11-24/{fresh}.jpg");
    let file = h.dir.path().join("snapshots").join(&name);
    let writer = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(600)).await;
        std::fs::write(file, b"\xFF\xD8\xFFlate").expect("write");
    });
    let res = h
        .raw(
            Method::GET,
            &format!("/api/v1/snapshots/{name}"),
            Some(&h.tokens["operator"]),
            None,
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    writer.await.expect("writer");
    let (s, b) = h
        .get("/api/v1/snapshots/gate/..%2F..%2Fetc/passwd", "operator")
        .await;
    assert_error(
        s,
        &b,
        StatusCode::BAD_REQUEST,
        "bad_request",
        "camera/date/id.jpg",
    );

    // Probes and metrics need no login.
    let (s, b) = h.call(Method::GET, "/healthz", None, None).await;
    assert_eq!((s, b), (StatusCode::OK, json!("ok")));
    let (s, b) = h.call(Method::GET, "/readyz", None, None).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(
        b,
        json!({"ready": true, "store": "ok", "broker": "not_configured"})
    );
    let mut dead = h.state.clone();
    dead.broker = Some("127.0.0.1:1".parse().expect("addr"));
    let res = app(dead)
        .oneshot(Request::get("/readyz").body(Body::empty()).expect("req"))
        .await
        .expect("res");
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    h.state.live.record_inference("gate", 7.5);
    h.state.live.record_event("gate", Duration::from_millis(40));
    let (s, metrics) = h.call(Method::GET, "/metrics", None, None).await;
    assert_eq!(s, StatusCode::OK);
    let metrics = metrics.as_str().expect("text").to_string();
    for needle in [
        "# TYPE pantau_camera_fps gauge",
        "pantau_camera_frames_decoded_total{camera=\"gate\"}",
        "pantau_camera_frames_dropped_total{camera=\"gate\"}",
        "pantau_camera_reconnects_total{camera=\"gate\"}",
        "pantau_camera_inference_ms{camera=\"gate\"} 7.5",
        "pantau_event_latency_seconds_bucket{camera=\"gate\",le=\"0.05\"} 1",
        "pantau_event_latency_seconds_bucket{camera=\"gate\",le=\"0.025\"} 0",
        "pantau_event_latency_seconds_count{camera=\"gate\"} 1",
        "pantau_outbox_depth{sink=\"mqtt\"} 0",
    ] {
        assert!(metrics.contains(needle), "{needle} missing:\n{metrics}");
    }

    // OpenAPI: every route documented; the browsable page and the console are served.
    let (s, doc) = h
        .call(Method::GET, "/api/v1/openapi.json", None, None)
        .await;
    assert_eq!(s, StatusCode::OK);
    for path in [
        "/api/v1/auth/login",
        "/api/v1/users/{name}",
        "/api/v1/cameras/{id}",
        "/api/v1/cameras/{id}/frame.jpg",
        "/api/v1/live",
        "/api/v1/events",
        "/api/v1/events/{id}/actions",
        "/api/v1/history.csv",
        "/metrics",
    ] {
        assert!(
            doc["paths"].get(path).is_some(),
            "{path} not in the OpenAPI document"
        );
    }
    assert!(doc["components"]["schemas"]["Event"]["properties"]["severity"].is_object());
    assert!(doc["components"]["securitySchemes"]["session"].is_object());
    for (uri, needle) in [
        ("/api/docs", "/console/docs.js"),
        ("/console/", "/console/app.js"),
        ("/console/app.js", "LABELS"),
    ] {
        let (s, body) = h.call(Method::GET, uri, None, None).await;
        assert_eq!(s, StatusCode::OK, "{uri}");
        assert!(body.as_str().unwrap_or("").contains(needle), "{uri}");
    }
    let (s, b) = h.call(Method::GET, "/api/v1/nothing", None, None).await;
    assert_error(s, &b, StatusCode::NOT_FOUND, "not_found", "/api/docs");

    // CORS: only configured origins may call from their pages; none by default.
    let preflight = |origin: &str| {
        Request::builder()
            .method(Method::OPTIONS)
            .uri("/api/v1/events")
            .header(header::ORIGIN, origin)
            .header(header::ACCESS_CONTROL_REQUEST_METHOD, "GET")
            .body(Body::empty())
            .expect("request")
    };
    let mut with_cors = ApiState::new(
        h.state.feed.clone(),
        ApiSettings {
            cors_origins: vec!["https://wall.example.org".into()],
            ..ApiSettings::default()
        },
    );
    with_cors.db = h.state.db.clone();
    let res = app(with_cors.clone())
        .oneshot(preflight("https://wall.example.org"))
        .await
        .expect("res");
    assert_eq!(
        res.headers()[header::ACCESS_CONTROL_ALLOW_ORIGIN],
        "https://wall.example.org"
    );
    assert_eq!(
        res.headers()[header::ACCESS_CONTROL_ALLOW_CREDENTIALS],
        "true"
    );
    let res = app(with_cors)
        .oneshot(preflight("https://evil.example.com"))
        .await
        .expect("res");
    assert!(res
        .headers()
        .get(header::ACCESS_CONTROL_ALLOW_ORIGIN)
        .is_none());
    let res = app(h.state.clone())
        .oneshot(preflight("https://wall.example.org"))
        .await
        .expect("res");
    assert!(res
        .headers()
        .get(header::ACCESS_CONTROL_ALLOW_ORIGIN)
        .is_none());
    h.finish().await;
}

/// `docs/security.md` lists every route with who may call it. The table is made here, by
/// calling each route of the OpenAPI document without a login and with each role, so it
/// cannot drift from the router. `PANTAU_BLESS=1` rewrites it.
/// Cameras with a calibration (position, heading) and lanes, one with a position but no
/// heading, and the harness's `gate` without either.
const MAP_CAMERAS: &str = r#"
[[cameras]]
id = "junction"
name = "Simpang <Lima> & Pasar"
url = "test://ball?width=1280&height=720&fps=1"
enabled = false
[cameras.calibration]
# A camera 8 m up, tilted 18 degrees down, 1280x720, 60 degrees wide, looking along +y of
# this ground frame from (3.5, 0): these image points are where it sees the ground points.
image = [[394, 590], [886, 590], [736, 230], [544, 230]]
ground = [[0, 14], [7, 14], [7, 40], [0, 40]]
latitude = -3.2946
longitude = 102.8617
heading_deg = 90
fov_deg = 60
[[cameras.lanes]]
name = "eastbound"
polygon = [[408, 557], [640, 557], [640, 241], [540, 241]]
direction = [[530, 527], [587, 254]]
speed_limit_kmh = 50
[[cameras.lanes]]
name = "westbound"
polygon = [[640, 557], [872, 557], [740, 241], [640, 241]]
direction = [[700, 254], [760, 527]]

[[cameras]]
id = "plaza"
url = "test://ball"
enabled = false
[cameras.calibration]
image = [[394, 590], [886, 590], [736, 230], [544, 230]]
ground = [[0, 14], [7, 14], [7, 40], [0, 40]]
latitude = -3.2950
longitude = 102.8620
[[cameras.lanes]]
name = "kerb"
polygon = [[408, 557], [640, 557], [640, 241], [540, 241]]
direction = [[530, 527], [587, 254]]
"#;

/// A traffic event of camera `junction`.
fn junction_event(
    ids: &IdGenerator,
    at: SystemTime,
    kind: EventKind,
    lifecycle: Lifecycle,
    rule: &str,
    severity: Severity,
) -> Event {
    pantau_events::Origin::new("kota", "junction").traffic(
        ids,
        at,
        kind,
        lifecycle,
        rule,
        severity,
        Some(ObjectRef {
            class: "car".into(),
            track_id: 4,
            bbox: [1.0, 2.0, 3.0, 4.0],
            confidence: 0.9,
        }),
        BTreeMap::from([("duration_s".to_string(), json!(31.5))]),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alerts_as_cap_and_cameras_and_lanes_on_the_map() {
    let mut h = harness("capmap").await;
    let mut cameras = vec![camera_config("gate")];
    cameras.extend(
        pantau_config::Config::parse(MAP_CAMERAS)
            .expect("parses")
            .cameras,
    );
    let control = Arc::new(IngestControl {
        ingest: h.ingest.clone(),
        frames: Mutex::default(),
    });
    let loaded = CameraRegistry::load(
        &h.dir.path().join("map-cameras.toml"),
        &cameras,
        IngestConfig::default(),
        Path::new("/"),
        control,
    )
    .expect("load");
    for c in &loaded.cameras {
        loaded.registry.validate(c).expect("valid camera");
    }
    h.state.cameras = Some(Arc::new(loaded.registry));

    // A stopped vehicle (new, update, end), a zone entry alert and a line crossing.
    let ids = IdGenerator::new();
    let now = SystemTime::now();
    let at = |s: u64| now - Duration::from_secs(300 - s);
    let (sv, ln) = (EventKind::StoppedVehicle, "eastbound");
    let new = junction_event(&ids, at(0), sv, Lifecycle::New, ln, Severity::Warning);
    let update = junction_event(&ids, at(10), sv, Lifecycle::Update, ln, Severity::Warning);
    let end = junction_event(&ids, at(20), sv, Lifecycle::End, ln, Severity::Info);
    let zone = junction_event(
        &ids,
        at(30),
        EventKind::ZonePresence,
        Lifecycle::Single,
        "bus-lane",
        Severity::Critical,
    );
    let crossing = junction_event(
        &ids,
        at(40),
        EventKind::LineCrossing,
        Lifecycle::Single,
        "stop-line",
        Severity::Info,
    );
    pantau_store::Store::connect(DB, &h.schema)
        .await
        .expect("store")
        .write(
            &[
                new.clone(),
                update.clone(),
                end.clone(),
                zone.clone(),
                crossing.clone(),
            ],
            &[],
        )
        .await
        .expect("write");

    // CAP: the alert, its update and its cancel, each the same roles as the event itself.
    let cap = |id: String, role: &'static str| {
        let h = &h;
        async move {
            let res = h
                .raw(
                    Method::GET,
                    &format!("/api/v1/events/{id}/cap"),
                    Some(&h.tokens[role]),
                    None,
                )
                .await;
            let status = res.status();
            let ct = res
                .headers()
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string();
            let bytes = res.into_body().collect().await.expect("body").to_bytes();
            (status, ct, String::from_utf8_lossy(&bytes).into_owned())
        }
    };
    let (s, ct, xml) = cap(new.id.to_string(), "operator").await;
    assert_eq!(s, StatusCode::OK, "{xml}");
    assert_eq!(ct, "application/cap+xml");
    for part in [
        "<alert xmlns=\"urn:oasis:names:tc:emergency:cap:1.2\">".to_string(),
        format!("<identifier>{}</identifier>", new.id),
        "<sender>pantau@kota</sender>".into(),
        "<msgType>Alert</msgType>".into(),
        "<scope>Restricted</scope>".into(),
        "<event>Stopped vehicle</event>".into(),
        "<severity>Moderate</severity>".into(),
        "<areaDesc>Camera Simpang &lt;Lima&gt; &amp; Pasar, site kota</areaDesc>".into(),
        "<circle>-3.294600,102.861700 0.2</circle>".into(),
    ] {
        assert!(xml.contains(&part), "{part} missing in\n{xml}");
    }
    let reference = format!(
        "<references>pantau@kota,{},{}</references>",
        new.id,
        pantau_events::cap::time(new.captured_at)
    );
    let (s, _, xml) = cap(update.id.to_string(), "dispatcher").await;
    assert_eq!(s, StatusCode::OK, "{xml}");
    assert!(
        xml.contains("<msgType>Update</msgType>") && xml.contains(&reference),
        "{xml}"
    );
    let (s, _, xml) = cap(end.id.to_string(), "admin").await;
    assert_eq!(s, StatusCode::OK, "{xml}");
    assert!(
        xml.contains("<msgType>Cancel</msgType>") && xml.contains(&reference),
        "{xml}"
    );
    assert!(xml.contains("<urgency>Past</urgency>"), "{xml}");
    let (s, b) = h
        .get(&format!("/api/v1/events/{}/cap", crossing.id), "operator")
        .await;
    assert_error(
        s,
        &b,
        StatusCode::UNPROCESSABLE_ENTITY,
        "not_an_alert",
        "not an alert",
    );
    let (s, b) = h
        .get("/api/v1/events/01KAW0Z5R3X9M4T7B2C6D8F0GH/cap", "operator")
        .await;
    assert_error(s, &b, StatusCode::NOT_FOUND, "event_not_found", "no event");
    h.forbidden(
        Method::GET,
        &format!("/api/v1/events/{}/cap", new.id),
        "planner",
        None,
    )
    .await;
    let (s, _) = h
        .call(
            Method::GET,
            &format!("/api/v1/events/{}/cap", new.id),
            None,
            None,
        )
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);

    // The zone alert is closed by dispatch: one open incident is left (the stopped vehicle,
    // whose new and update are one incident).
    let (s, b) = h
        .call(
            Method::POST,
            &format!("/api/v1/events/{}/actions", zone.id),
            Some("dispatcher"),
            Some(json!({"action": "close"})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");

    // The map.
    let res = h
        .raw(
            Method::GET,
            "/api/v1/map.geojson",
            Some(&h.tokens["operator"]),
            None,
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(
        res.headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok()),
        Some("application/geo+json")
    );
    let bytes = res.into_body().collect().await.expect("body").to_bytes();
    let map: Value = serde_json::from_slice(&bytes).expect("JSON");
    assert_eq!(map["type"], "FeatureCollection");
    assert!(map["tiles"].is_null());
    let features = map["features"].as_array().expect("features");
    let valid = |c: &Value| {
        let (lon, lat) = (c[0].as_f64().expect("lon"), c[1].as_f64().expect("lat"));
        assert!(
            (-180.0..=180.0).contains(&lon) && (-90.0..=90.0).contains(&lat),
            "{c}"
        );
        (lon, lat)
    };
    let points: Vec<&Value> = features
        .iter()
        .filter(|f| f["geometry"]["type"] == "Point")
        .collect();
    assert_eq!(points.len(), 2, "{map}");
    let junction = points
        .iter()
        .find(|f| f["properties"]["id"] == "junction")
        .expect("junction on the map");
    assert_eq!(
        valid(&junction["geometry"]["coordinates"]),
        (102.8617, -3.2946)
    );
    let p = &junction["properties"];
    assert_eq!(p["kind"], "camera");
    assert_eq!(p["name"], "Simpang <Lima> & Pasar");
    assert_eq!(p["state"], "disabled");
    assert_eq!(
        (p["heading_deg"].as_f64(), p["fov_deg"].as_f64()),
        (Some(90.0), Some(60.0))
    );
    assert_eq!(p["open_incidents"], 1, "{p}");
    assert_eq!(p["incident_ids"], json!([update.id.to_string()]));
    assert_eq!(p["lanes_unplaced"], json!([]));
    let plaza = points
        .iter()
        .find(|f| f["properties"]["id"] == "plaza")
        .expect("plaza on the map");
    assert_eq!(
        plaza["properties"]["lanes_unplaced"],
        json!(["kerb"]),
        "no heading: its lanes cannot be turned onto the map"
    );
    assert!(plaza["properties"]["heading_deg"].is_null());
    let unplaced = map["unplaced"].as_array().expect("unplaced");
    assert_eq!(unplaced.len(), 1);
    assert_eq!(unplaced[0]["id"], "gate");
    assert_eq!(unplaced[0]["open_incidents"], 0);
    // Lanes: closed rings of valid coordinates, 14 to 40 m east of the camera (it looks east)
    // and within 5 m of its line of sight: where the calibration says they are.
    let lanes: Vec<&Value> = features
        .iter()
        .filter(|f| f["geometry"]["type"] == "Polygon")
        .collect();
    assert_eq!(lanes.len(), 2, "{map}");
    let m_per_deg = 6_371_008.8 * std::f64::consts::PI / 180.0;
    for lane in &lanes {
        assert_eq!(lane["properties"]["kind"], "lane");
        assert_eq!(lane["properties"]["camera"], "junction");
        let ring = lane["geometry"]["coordinates"][0].as_array().expect("ring");
        assert!(ring.len() >= 4 && ring.first() == ring.last(), "{lane}");
        for c in ring
            .iter()
            .chain(lane["properties"]["direction"].as_array().expect("arrow"))
        {
            let (lon, lat) = valid(c);
            let east = (lon - 102.8617) * m_per_deg * (-3.2946f64).to_radians().cos();
            let north = (lat + 3.2946) * m_per_deg;
            assert!(
                (13.0..=41.0).contains(&east) && north.abs() <= 5.0,
                "{}: {east:.1} m east, {north:.1} m north",
                lane["properties"]["name"]
            );
        }
    }
    let eastbound = lanes
        .iter()
        .find(|l| l["properties"]["name"] == "eastbound")
        .expect("eastbound");
    assert_eq!(eastbound["properties"]["speed_limit_kmh"], 50.0);
    // Its arrow points east, as the lane's traffic goes.
    let arrow = &eastbound["properties"]["direction"];
    assert!(arrow[1][0].as_f64() > arrow[0][0].as_f64(), "{arrow}");
    h.forbidden(Method::GET, "/api/v1/map.geojson", "planner", None)
        .await;

    // With map tiles, the map names them and the console may load images from their origin.
    h.state.settings = Arc::new(ApiSettings {
        map_tiles: Some("https://tile.example.org/{z}/{x}/{y}.png".into()),
        ..ApiSettings::default()
    });
    let (_, map) = h.get("/api/v1/map.geojson", "admin").await;
    assert_eq!(map["tiles"], "https://tile.example.org/{z}/{x}/{y}.png");
    let res = h.raw(Method::GET, "/console/", None, None).await;
    let csp = res
        .headers()
        .get(header::CONTENT_SECURITY_POLICY)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    assert!(
        csp.contains("img-src 'self' data: blob: https://tile.example.org;"),
        "{csp}"
    );
    h.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn security_doc_lists_every_route_with_the_roles_the_router_allows() {
    let h = harness("routes").await;
    let doc = pantau_dashboard_api::openapi::document();
    let mut rows = Vec::new();
    let paths = doc["paths"].as_object().expect("paths");
    for (path, item) in paths {
        for (method, _) in item.as_object().expect("methods") {
            let m: Method = method.to_uppercase().parse().expect("method");
            // Placeholders that exist nowhere: nothing is changed, only permissions show.
            let uri = path
                .replace("{id}", "nobody")
                .replace("{name}", "nobody")
                .replace("{path}", "nobody/2026-01-01/nothing.jpg")
                .replace("{n}", "0");
            // The permission of an action depends on the action: ask with each kind.
            let bodies: Vec<(&str, Option<Value>)> = if path.ends_with("/actions") {
                vec![
                    ("acknowledge: ", Some(json!({"action": "acknowledge"}))),
                    ("other actions: ", Some(json!({"action": "close"}))),
                ]
            } else if matches!(m, Method::POST | Method::PUT | Method::PATCH) {
                vec![("", Some(json!({})))]
            } else {
                vec![("", None)]
            };
            let mut whos = Vec::new();
            for (label, body) in bodies {
                let status_for = |role: Option<&'static str>| {
                    let (m, uri, body) = (m.clone(), uri.clone(), body.clone());
                    let h = &h;
                    async move {
                        let token = role.map(|r| h.tokens[r].clone());
                        let res = h.raw(m, &uri, token.as_deref(), body).await;
                        res.status()
                    }
                };
                let anonymous = status_for(None).await;
                let who = if uri == "/api/v1/auth/logout" {
                    // Calling it would end the sessions this test uses.
                    "any logged-in user (ends that session)".to_string()
                } else if uri == "/api/v1/reports" {
                    // Integration keys only (`tests/reports.rs` sends one): no role's session
                    // may pass.
                    let mut refused = true;
                    for role in ["operator", "dispatcher", "planner", "admin"] {
                        refused &= status_for(Some(role)).await == StatusCode::UNAUTHORIZED;
                    }
                    assert!(refused, "a session passed the reports route");
                    "an integration's key (`Authorization: Bearer pantau_ik_...`), no session"
                        .to_string()
                } else if anonymous != StatusCode::UNAUTHORIZED {
                    "anyone, no login".to_string()
                } else {
                    let mut allowed = Vec::new();
                    for role in ["operator", "dispatcher", "planner", "admin"] {
                        let s = status_for(Some(role)).await;
                        if s != StatusCode::FORBIDDEN && s != StatusCode::UNAUTHORIZED {
                            allowed.push(role);
                        }
                    }
                    if allowed.len() == 4 {
                        "any logged-in user".to_string()
                    } else {
                        allowed.join(", ")
                    }
                };
                whos.push(format!("{label}{who}"));
            }
            let who = whos.join("; ");
            let text = item[method]["summary"]
                .as_str()
                .or(item[method]["description"].as_str())
                .unwrap_or("")
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ");
            let summary = match text.find(". ") {
                Some(end) => text[..=end].to_string(),
                None => text,
            };
            rows.push(format!(
                "| `{}` | `{path}` | {who} | {summary} |",
                method.to_uppercase()
            ));
        }
    }
    rows.sort();
    let table = format!(
        "| method | route | who may call it | what it does |\n|---|---|---|---|\n{}\n",
        rows.join("\n")
    );
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/security.md");
    let text = std::fs::read_to_string(&file).expect("docs/security.md");
    let (begin, end) = ("<!-- routes:begin -->\n", "<!-- routes:end -->");
    let start = text.find(begin).expect("routes:begin marker") + begin.len();
    let stop = text.find(end).expect("routes:end marker");
    if std::env::var_os("PANTAU_BLESS").is_some() {
        let new = format!("{}{table}{}", &text[..start], &text[stop..]);
        std::fs::write(&file, new).expect("write docs/security.md");
    } else {
        assert_eq!(
            &text[start..stop],
            table,
            "docs/security.md's route table differs from the router; rerun this test with \
             PANTAU_BLESS=1 to rewrite it, and read the difference"
        );
    }
    h.finish().await;
}

/// Logs `user` in; its token.
async fn login(h: &Harness, user: &str) -> String {
    let (s, b) = h
        .call(
            Method::POST,
            "/api/v1/auth/login",
            None,
            Some(json!({"user": user, "password": PASSWORD})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    b["token"].as_str().expect("token").to_string()
}

/// Reads a live stream into `text` until it holds `want` (5 s at most per message).
async fn read_until(live: &mut Body, text: &mut String, want: &str) {
    while !text.contains(want) {
        let frame = tokio::time::timeout(Duration::from_secs(5), live.frame())
            .await
            .unwrap_or_else(|_| panic!("{want} within 5 s; got {text}"))
            .expect("stream open")
            .expect("frame");
        if let Ok(data) = frame.into_data() {
            text.push_str(&String::from_utf8_lossy(&data));
        }
    }
}

/// The ids of a camera list.
fn camera_ids(b: &Value) -> Vec<String> {
    let mut ids: Vec<String> = b
        .as_array()
        .expect("list")
        .iter()
        .map(|c| {
            c["config"]["id"]
                .as_str()
                .or(c["status"]["id"].as_str())
                .unwrap_or_default()
                .to_string()
        })
        .collect();
    ids.sort();
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agencies_see_only_their_groups_and_hand_incidents_over() {
    let mut h = harness("agencies").await;
    // Police (polres) and city hall (pemkot) share the `shared` group.
    let agencies = pantau_config::Config::parse(
        "[agencies.polres]\nname = \"Polres Lubuklinggau\"\ngroups = [\"police\", \"shared\"]\n\
         [agencies.pemkot]\nname = \"Pemkot Lubuklinggau\"\ngroups = [\"city\", \"shared\"]\n",
    )
    .expect("agencies")
    .agencies;
    let mut settings = (*h.state.settings).clone();
    settings.agencies = agencies;
    h.state.settings = Arc::new(settings);

    // Cameras of each group, added by the city-wide admin (no agency). Agencies configured, a
    // camera names its group.
    let cam = |id: &str, group: Option<&str>| {
        let mut c = json!({"id": id, "url": "test://ball?width=160&height=120&fps=10"});
        if let Some(g) = group {
            c["group"] = json!(g);
        }
        c
    };
    let (s, b) = h
        .call(
            Method::POST,
            "/api/v1/cameras",
            Some("admin"),
            Some(cam("x", None)),
        )
        .await;
    assert_error(
        s,
        &b,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_camera",
        "names the group",
    );
    let (s, b) = h
        .call(
            Method::POST,
            "/api/v1/cameras",
            Some("admin"),
            Some(cam("x", Some("pasar"))),
        )
        .await;
    assert_error(
        s,
        &b,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_camera",
        "no agency owns group \"pasar\"",
    );
    for (id, group) in [
        ("polsek", "police"),
        ("balai", "city"),
        ("simpang", "shared"),
    ] {
        let (s, b) = h
            .call(
                Method::POST,
                "/api/v1/cameras",
                Some("admin"),
                Some(cam(id, Some(group))),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{b}");
    }

    // Users of each agency, made by the city-wide admin; an agency's admin makes only its own.
    for (name, role, agency) in [
        ("andi", "dispatcher", "polres"),
        ("sari", "dispatcher", "pemkot"),
        ("rina", "planner", "pemkot"),
        ("kepala", "admin", "pemkot"),
    ] {
        let (s, b) = h
            .call(
                Method::POST,
                "/api/v1/users",
                Some("admin"),
                Some(
                    json!({"name": name, "role": role, "password": PASSWORD, "agencies": [agency]}),
                ),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{b}");
        assert_eq!(b["agencies"], json!([agency]));
    }
    let (s, b) = h
        .call(
            Method::POST,
            "/api/v1/users",
            Some("admin"),
            Some(json!({"name": "y", "role": "operator", "password": PASSWORD, "agencies": ["dishub"]})),
        )
        .await;
    assert_error(
        s,
        &b,
        StatusCode::UNPROCESSABLE_ENTITY,
        "unknown_agency",
        "use one of: pemkot, polres",
    );
    let police = login(&h, "andi").await;
    let city = login(&h, "sari").await;
    let planner = login(&h, "rina").await;
    let city_admin = login(&h, "kepala").await;
    let (_, me) = h.get("/api/v1/auth/me", &police).await;
    assert_eq!(me["agencies"], json!(["polres"]));
    let (s, b) = h.get("/api/v1/agencies", &police).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b[1]["id"], "polres");
    assert_eq!(b[1]["mine"], true);
    assert_eq!(b[0]["mine"], false);

    for (name, agencies) in [
        ("z1", json!([])),
        ("z2", json!(["polres"])),
        ("z3", json!(["pemkot", "polres"])),
    ] {
        let (s, b) = h
            .call(
                Method::POST,
                "/api/v1/users",
                Some(&city_admin),
                Some(json!({"name": name, "role": "operator", "password": PASSWORD, "agencies": agencies})),
            )
            .await;
        assert_error(
            s,
            &b,
            StatusCode::FORBIDDEN,
            "forbidden",
            "only its own agencies",
        );
    }
    let (_, b) = h.get("/api/v1/users", &city_admin).await;
    let names: Vec<&str> = b
        .as_array()
        .expect("users")
        .iter()
        .filter_map(|u| u["name"].as_str())
        .collect();
    assert_eq!(names, ["kepala", "rina", "sari"]);
    let (s, b) = h
        .call(
            Method::PATCH,
            "/api/v1/users/andi",
            Some(&city_admin),
            Some(json!({"disabled": true})),
        )
        .await;
    assert_error(s, &b, StatusCode::NOT_FOUND, "user_not_found", "andi");
    let (s, b) = h
        .call(Method::DELETE, "/api/v1/users/ana", Some(&city_admin), None)
        .await;
    assert_error(s, &b, StatusCode::NOT_FOUND, "user_not_found", "ana");
    let (s, b) = h.get("/api/v1/integrations", &city_admin).await;
    assert_error(
        s,
        &b,
        StatusCode::FORBIDDEN,
        "forbidden",
        "integrations serve every agency",
    );

    // Cameras: each agency its own groups and the shared one; the city-wide users all.
    let (_, b) = h.get("/api/v1/cameras", &police).await;
    assert_eq!(camera_ids(&b), ["polsek", "simpang"]);
    let (_, b) = h.get("/api/v1/cameras", &city).await;
    assert_eq!(camera_ids(&b), ["balai", "simpang"]);
    let (_, b) = h.get("/api/v1/cameras", "operator").await;
    assert_eq!(camera_ids(&b), ["balai", "gate", "polsek", "simpang"]);
    for uri in ["/api/v1/cameras/balai", "/api/v1/cameras/balai/frame.jpg"] {
        let (s, b) = h.get(uri, &police).await;
        assert_error(s, &b, StatusCode::NOT_FOUND, "camera_not_found", "balai");
    }
    let (s, b) = h
        .call(
            Method::POST,
            "/api/v1/cameras/balai/snoozes",
            Some(&police),
            Some(json!({"rule": "camera", "minutes": 5})),
        )
        .await;
    assert_error(s, &b, StatusCode::NOT_FOUND, "camera_not_found", "balai");
    let (s, b) = h
        .call(
            Method::DELETE,
            "/api/v1/cameras/polsek",
            Some(&city_admin),
            None,
        )
        .await;
    assert_error(s, &b, StatusCode::NOT_FOUND, "camera_not_found", "polsek");
    let (s, b) = h
        .call(
            Method::POST,
            "/api/v1/cameras",
            Some(&city_admin),
            Some(cam("pospol", Some("police"))),
        )
        .await;
    assert_error(
        s,
        &b,
        StatusCode::FORBIDDEN,
        "forbidden",
        "only in its agencies' groups",
    );
    let (s, b) = h
        .call(
            Method::POST,
            "/api/v1/cameras",
            Some(&city_admin),
            Some(cam("taman", Some("city"))),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let (_, b) = h.get("/api/v1/fleet", &police).await;
    let mut on_node: Vec<&str> = b["nodes"][0]["cameras"]
        .as_array()
        .expect("cameras")
        .iter()
        .filter_map(|c| c.as_str())
        .collect();
    on_node.sort();
    assert_eq!(on_node, ["polsek", "simpang"]);
    let (_, b) = h.get("/api/v1/map.geojson", &police).await;
    let text = b.to_string();
    assert!(
        text.contains("polsek") && !text.contains("balai") && !text.contains("taman"),
        "{text}"
    );

    // Events, incidents and history of each camera.
    let ids = IdGenerator::new();
    let now = SystemTime::now();
    let mut events = Vec::new();
    for (i, camera) in ["polsek", "balai", "simpang"].iter().enumerate() {
        let mut e = event(
            &ids,
            now - Duration::from_secs(300 - i as u64),
            "restricted",
            Severity::Warning,
            EventKind::ZonePresence,
        );
        e.camera = camera.to_string();
        events.push(e);
    }
    let at = |m: u64| UNIX_EPOCH + Duration::from_secs(1_795_507_200 + m * 60);
    let counts: Vec<CountAggregate> = ["polsek", "balai"]
        .iter()
        .map(|camera| CountAggregate {
            id: ids.at(at(0)),
            schema: SCHEMA_VERSION,
            site: "kota".into(),
            camera: camera.to_string(),
            line: "stop-line".into(),
            period_start: at(0),
            period_s: 60,
            counts: BTreeMap::from([(
                "in".to_string(),
                BTreeMap::from([("car".to_string(), 3u64)]),
            )]),
        })
        .collect();
    pantau_store::Store::connect(DB, &h.schema)
        .await
        .expect("store")
        .write(&events, &counts)
        .await
        .expect("write");
    let (polsek_alert, balai_alert) = (events[0].id.to_string(), events[1].id.to_string());
    let seen = |b: &Value| -> Vec<String> {
        let mut c: Vec<String> = b["items"]
            .as_array()
            .expect("items")
            .iter()
            .filter_map(|i| i["event"]["camera"].as_str().map(str::to_string))
            .collect();
        c.sort();
        c
    };
    let (_, b) = h.get("/api/v1/events", &police).await;
    assert_eq!(seen(&b), ["polsek", "simpang"]);
    let (_, b) = h.get("/api/v1/events?camera=balai", &police).await;
    assert_eq!(seen(&b), Vec::<String>::new());
    let (_, b) = h.get("/api/v1/events", "operator").await;
    assert_eq!(seen(&b), ["balai", "polsek", "simpang"]);
    for uri in [
        format!("/api/v1/events/{balai_alert}"),
        format!("/api/v1/events/{balai_alert}/cap"),
    ] {
        let (s, b) = h.get(&uri, &police).await;
        assert_error(
            s,
            &b,
            StatusCode::NOT_FOUND,
            "event_not_found",
            &balai_alert,
        );
    }
    let (s, b) = h
        .call(
            Method::POST,
            &format!("/api/v1/events/{balai_alert}/actions"),
            Some(&police),
            Some(json!({"action": "acknowledge"})),
        )
        .await;
    assert_error(
        s,
        &b,
        StatusCode::NOT_FOUND,
        "event_not_found",
        &balai_alert,
    );
    let (s, _) = h
        .get(&format!("/api/v1/events/{polsek_alert}"), &police)
        .await;
    assert_eq!(s, StatusCode::OK);
    let range = "from=2026-11-24T08:00:00Z&to=2026-11-24T10:00:00Z";
    let (s, b) = h.get(&format!("/api/v1/history?{range}"), &planner).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let cams: HashSet<&str> = b
        .as_array()
        .expect("rows")
        .iter()
        .filter_map(|r| r["camera"].as_str())
        .collect();
    assert_eq!(cams, HashSet::from(["balai"]));
    let (_, csv) = h
        .get(&format!("/api/v1/history.csv?{range}"), &planner)
        .await;
    let csv = csv.as_str().expect("csv").to_string();
    assert!(csv.contains(",balai,") && !csv.contains("polsek"), "{csv}");

    // Live: the police stream gets its cameras' messages, not city hall's ...
    let res = h
        .raw(
            Method::GET,
            "/api/v1/live?types=event,incident",
            Some(&police),
            None,
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let mut live = res.into_body();
    for camera in ["balai", "polsek"] {
        h.state.live.publish(pantau_dashboard_api::LiveMessage::new(
            "event",
            camera,
            Some("restricted"),
            json!({"camera": camera}).to_string(),
        ));
    }
    let mut text = String::new();
    read_until(&mut live, &mut text, "polsek").await;

    // ... until city hall hands its incident over to the police, with a note.
    let actions = format!("/api/v1/events/{balai_alert}/actions");
    let (s, b) = h
        .call(
            Method::POST,
            &actions,
            Some(&city),
            Some(json!({"action": "handover", "agency": "dishub", "note": "x"})),
        )
        .await;
    assert_error(
        s,
        &b,
        StatusCode::UNPROCESSABLE_ENTITY,
        "unknown_agency",
        "\"dishub\" is not an agency",
    );
    let (s, b) = h
        .call(
            Method::POST,
            &actions,
            Some(&city),
            Some(json!({"action": "handover", "agency": "polres"})),
        )
        .await;
    assert_error(
        s,
        &b,
        StatusCode::UNPROCESSABLE_ENTITY,
        "bad_request",
        "missing field `note`",
    );
    let (s, b) = h
        .call(
            Method::POST,
            &actions,
            Some(&city),
            Some(json!({"action": "handover", "agency": "polres", "note": "perkelahian di depan balai kota"})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(
        (&b["action"], &b["agency"], &b["state"]),
        (&json!("handover"), &json!("polres"), &json!("new"))
    );
    read_until(&mut live, &mut text, "perkelahian").await;
    assert!(
        !text.contains("\"camera\":\"balai\"}"),
        "a city-hall event reached the police: {text}"
    );
    let (s, b) = h
        .get(&format!("/api/v1/events/{balai_alert}"), &police)
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["dispatch"]["handed_to"], json!(["polres"]));
    let handover = &b["audit"][0];
    assert_eq!(
        (&handover["actor"], &handover["action"]),
        (&json!("sari"), &json!("incident.handover"))
    );
    assert_eq!(handover["detail"]["agency"], "polres");
    assert_eq!(
        handover["detail"]["note"],
        "perkelahian di depan balai kota"
    );
    let (_, b) = h.get("/api/v1/events?state=new", &police).await;
    assert_eq!(seen(&b), ["balai", "polsek", "simpang"]);
    // The police act on it; city hall still sees it, its camera stays city hall's.
    let (s, b) = h
        .call(
            Method::POST,
            &actions,
            Some(&police),
            Some(json!({"action": "acknowledge"})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let (s, _) = h.get(&format!("/api/v1/events/{balai_alert}"), &city).await;
    assert_eq!(s, StatusCode::OK);
    let (s, _) = h.get("/api/v1/cameras/balai", &police).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    h.finish().await;
}
