//! Citizen reports through the router (`oneshot`) on the real database: integration keys kept
//! apart from sessions, idempotency, validation that names each field, the rate per key, photo
//! metadata removed from the stored file, reports in dispatch with their callbacks (to a real
//! HTTP server that is down, then failing, then answering; signatures checked), and links.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use axum::body::Body;
use axum::http::{header, HeaderMap, Method, Request, StatusCode};
use base64::Engine as _;
use hmac::{Hmac, Mac};
use http_body_util::BodyExt;
use pantau_config::config::{CameraConfig, CameraSettings, IngestConfig};
use pantau_dashboard_api::auth::{upsert_user, Role};
use pantau_dashboard_api::cameras::BoxFuture;
use pantau_dashboard_api::reports::{CallbackSettings, ReportSettings, Reports};
use pantau_dashboard_api::{
    app, ApiSettings, ApiState, CameraControl, CameraFeed, CameraRegistry, CameraStatus, Db,
    StatusChange,
};
use pantau_events::{Event, EventKind, IdGenerator, Lifecycle, Severity, SCHEMA_VERSION};
use pantau_sinks::outbox::{FullPolicy, Outbox};
use serde_json::{json, Value};
use sha2::Sha256;
use tower::ServiceExt;

const DB: &str = "host=127.0.0.1 port=5432 user=postgres dbname=test";
const PASSWORD: &str = "correct horse battery";

/// No running cameras: matching reads the cameras' calibrations, not their streams.
#[derive(Debug)]
struct NoFeed(tokio::sync::broadcast::Sender<StatusChange>);

impl CameraFeed for NoFeed {
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

/// Simpang Lima: a camera at the junction looking east, and one 400 m north looking north.
const LAT: f64 = -3.2945;
const LON: f64 = 102.8614;
/// Metres per degree of latitude.
const M_PER_DEG: f64 = 111_195.0;

fn cameras() -> Vec<CameraConfig> {
    let text = format!(
        "[[cameras]]\nid = \"simpang-lima\"\nurl = \"test://ball\"\n\
         [cameras.calibration]\nimage = [[0, 0], [100, 0], [100, 100], [0, 100]]\n\
         ground = [[0, 0], [10, 0], [10, 10], [0, 10]]\nlatitude = {LAT}\nlongitude = {LON}\n\
         heading_deg = 90.0\nfov_deg = 70.0\n\
         [[cameras]]\nid = \"pasar\"\nurl = \"test://ball\"\n\
         [cameras.calibration]\nimage = [[0, 0], [100, 0], [100, 100], [0, 100]]\n\
         ground = [[0, 0], [10, 0], [10, 10], [0, 10]]\nlatitude = {}\nlongitude = {LON}\n\
         heading_deg = 0.0\n",
        LAT + 400.0 / M_PER_DEG
    );
    pantau_config::Config::parse(&text).expect("parses").cameras
}

struct Harness {
    state: ApiState,
    db: Arc<Db>,
    schema: String,
    tokens: HashMap<&'static str, String>,
    dir: tempfile::TempDir,
}

fn report_settings(dir: &Path, rate: u32) -> ReportSettings {
    let config = pantau_config::config::ReportsConfig {
        rate_per_minute: rate,
        max_photos: 2,
        photo_max_kb: 256,
        ..Default::default()
    };
    ReportSettings::from_config(&config, dir).expect("enabled")
}

async fn harness(name: &str, rate: u32) -> Harness {
    let schema = format!("pantau_reports_{name}_{}", std::process::id());
    let (client, conn) = tokio_postgres::connect(DB, tokio_postgres::NoTls)
        .await
        .expect("database");
    tokio::spawn(conn);
    client
        .batch_execute(&format!("drop schema if exists {schema} cascade"))
        .await
        .expect("drop");
    let dir = tempfile::tempdir().expect("tempdir");
    let loaded = CameraRegistry::load(
        &dir.path().join("cameras.toml"),
        &cameras(),
        IngestConfig::default(),
        Path::new("/"),
        Arc::new(Accept),
    )
    .expect("cameras");
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
    let mut state = ApiState::new(
        Arc::new(NoFeed(tokio::sync::broadcast::channel(4).0)),
        ApiSettings::default(),
    );
    state.reports = Arc::new(Reports::new(Some(report_settings(dir.path(), rate))));
    state.db = Some(db.clone());
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
        db,
        schema,
        tokens: HashMap::new(),
        dir,
    };
    for (role, user) in [
        ("admin", "ana"),
        ("operator", "oki"),
        ("dispatcher", "dina"),
        ("planner", "pak-budi"),
    ] {
        let (status, body) = h
            .call(
                Method::POST,
                "/api/v1/auth/login",
                None,
                Some(json!({"user": user, "password": PASSWORD})),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        h.tokens
            .insert(role, body["token"].as_str().expect("token").to_string());
    }
    h
}

impl Harness {
    /// Status, headers and JSON body (a JSON string for other bodies). `auth` is a role, or a
    /// raw `Authorization` value when it holds a space.
    async fn request(
        &self,
        method: Method,
        uri: &str,
        auth: Option<&str>,
        extra: &[(header::HeaderName, String)],
        body: Option<Value>,
    ) -> (StatusCode, HeaderMap, Value, Vec<u8>) {
        let mut req = Request::builder().method(method).uri(uri);
        if let Some(a) = auth {
            let value = match self.tokens.get(a) {
                Some(t) => format!("Bearer {t}"),
                None => a.to_string(),
            };
            req = req.header(header::AUTHORIZATION, value);
        }
        for (k, v) in extra {
            req = req.header(k, v);
        }
        let body = match body {
            Some(v) => {
                req = req.header(header::CONTENT_TYPE, "application/json");
                Body::from(v.to_string())
            }
            None => Body::empty(),
        };
        let res = app(self.state.clone())
            .oneshot(req.body(body).expect("request"))
            .await
            .expect("response");
        let status = res.status();
        let headers = res.headers().clone();
        let bytes = res
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes()
            .to_vec();
        let text = String::from_utf8_lossy(&bytes).into_owned();
        let json = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (status, headers, json, bytes)
    }

    async fn call(
        &self,
        method: Method,
        uri: &str,
        auth: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let (status, _, json, _) = self.request(method, uri, auth, &[], body).await;
        (status, json)
    }

    /// An integration made by the admin: (key, callback secret).
    async fn integration(&self, name: &str, callback_url: Option<&str>) -> (String, String) {
        let (status, body) = self
            .call(
                Method::POST,
                "/api/v1/integrations",
                Some("admin"),
                Some(json!({"name": name, "callback_url": callback_url})),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        let key = body["key"].as_str().expect("key").to_string();
        assert!(key.starts_with("pantau_ik_"), "{key}");
        assert!(key.starts_with(body["key_prefix"].as_str().expect("prefix")));
        (
            key,
            body["callback_secret"]
                .as_str()
                .expect("secret")
                .to_string(),
        )
    }

    async fn report(&self, key: &str, report: Value) -> (StatusCode, HeaderMap, Value) {
        let (status, headers, json, _) = self
            .request(
                Method::POST,
                "/api/v1/reports",
                Some(&format!("Bearer {key}")),
                &[],
                Some(report),
            )
            .await;
        (status, headers, json)
    }

    async fn finish(self) {
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

/// A report of a pothole `east` metres east of the junction, just now.
fn pothole(source: &str, external_id: &str, east: f64) -> Value {
    json!({
        "source": source,
        "external_id": external_id,
        "category": "jalan_rusak",
        "text": "Lubang besar di depan toko, motor hampir jatuh.",
        "time": pantau_events::time::format(SystemTime::now() - Duration::from_secs(60)),
        "latitude": LAT,
        "longitude": LON + east / (M_PER_DEG * LAT.to_radians().cos()),
    })
}

fn jpeg() -> Vec<u8> {
    let picture =
        image::RgbImage::from_fn(64, 48, |x, y| image::Rgb([x as u8 * 4, y as u8 * 5, 120]));
    let mut out = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 85)
        .encode_image(&picture)
        .expect("encode");
    out
}

/// A phone's JPEG: an APP1 EXIF segment with GPS right after SOI.
fn jpeg_with_gps() -> Vec<u8> {
    let plain = jpeg();
    let mut exif = b"Exif\0\0II*\0GPSLatitude S 3 17 40.2 GPSLongitude E 102 51 41.0".to_vec();
    exif.resize(512, 0);
    let mut out = plain[..2].to_vec();
    out.extend_from_slice(&[0xFF, 0xE1]);
    out.extend_from_slice(&((exif.len() + 2) as u16).to_be_bytes());
    out.extend_from_slice(&exif);
    out.extend_from_slice(&plain[2..]);
    out
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn paths(body: &Value) -> Vec<String> {
    body["issues"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|i| i["path"].as_str().unwrap_or_default().to_string())
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reports_take_only_their_key_are_idempotent_and_name_every_bad_field() {
    let h = harness("intake", 100).await;
    let (key, _) = h.integration("sipokat", None).await;

    // Only admins manage integrations; the list never shows a key.
    let (status, _) = h
        .call(
            Method::GET,
            "/api/v1/integrations",
            Some("dispatcher"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, list) = h
        .call(Method::GET, "/api/v1/integrations", Some("admin"), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(list[0]["name"], "sipokat");
    assert!(!list.to_string().contains(&key), "{list}");
    let (status, body) = h
        .call(
            Method::POST,
            "/api/v1/integrations",
            Some("admin"),
            Some(json!({"name": "sipokat"})),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");

    // A report 60 m east: the junction's camera looks that way; `pasar` is 400 m off.
    let (status, _, first) = h.report(&key, pothole("sipokat", "SPK-1", 60.0)).await;
    assert_eq!(status, StatusCode::CREATED, "{first}");
    let id = first["id"].as_str().expect("id").to_string();
    assert_eq!(first["cameras"][0]["id"], "simpang-lima");
    assert!((first["cameras"][0]["distance_m"].as_f64().expect("m") - 60.0).abs() < 0.5);
    assert_eq!(first["cameras"].as_array().map(Vec::len), Some(1));

    // The same report again (a retry): the first answer, nothing new.
    let (status, _, again) = h.report(&key, pothole("sipokat", "SPK-1", 60.0)).await;
    assert_eq!(status, StatusCode::OK, "{again}");
    assert_eq!(again, first);
    let store = h.db.store().await.expect("store");
    let n: i64 = store
        .client()
        .await
        .expect("client")
        .query_one(&format!("select count(*) from {}.reports", h.schema), &[])
        .await
        .expect("count")
        .get(0);
    assert_eq!(n, 1);

    // It is an alert in the events, with the report's details, ready for dispatch.
    let (status, detail) = h
        .call(
            Method::GET,
            &format!("/api/v1/events/{id}"),
            Some("operator"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{detail}");
    let event = &detail["event"];
    assert_eq!(event["kind"], "citizen_report");
    assert_eq!(event["camera"], "simpang-lima");
    assert_eq!(event["severity"], "warning");
    assert_eq!(event["details"]["external_id"], "SPK-1");
    assert_eq!(event["details"]["cameras"][0]["id"], "simpang-lima");
    assert_eq!(detail["dispatch"]["state"], "new");
    assert_eq!(detail["audit"][0]["action"], "report.receive");
    assert_eq!(detail["audit"][0]["actor"], "integration:sipokat");
    // ... and on its way to MQTT, once.
    let outbox = h.state.outbox.as_ref().expect("outbox");
    let records = outbox.read("mqtt", 100).expect("read");
    assert_eq!(records.len(), 1);
    assert_eq!(
        records[0].1.topic,
        "pantau/default/simpang-lima/events/citizen_report"
    );
    // A report no camera sees goes to the site's reports topic.
    let (status, _, far) = h.report(&key, pothole("sipokat", "SPK-2", 2000.0)).await;
    assert_eq!(status, StatusCode::CREATED, "{far}");
    assert_eq!(far["cameras"], json!([]));
    let records = outbox.read("mqtt", 100).expect("read");
    assert_eq!(
        records[1].1.topic,
        "pantau/default/reports/events/citizen_report"
    );

    // The key works only here, and only the key works here.
    let session = h.tokens["operator"].clone();
    for (auth, cookie) in [
        (None, None),
        (Some(format!("Bearer {session}")), None),
        (None, Some(format!("pantau_session={session}"))),
        (Some("Bearer pantau_ik_0123456789abcdef".to_string()), None),
        (Some(format!("Basic {key}")), None),
    ] {
        let extra: Vec<_> = cookie.into_iter().map(|c| (header::COOKIE, c)).collect();
        let (status, _, body, _) = h
            .request(
                Method::POST,
                "/api/v1/reports",
                auth.as_deref(),
                &extra,
                Some(pothole("sipokat", "SPK-3", 10.0)),
            )
            .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{auth:?} {body}");
        assert_eq!(body["code"], "invalid_key", "{body}");
    }
    for uri in [
        "/api/v1/auth/me",
        "/api/v1/events",
        format!("/api/v1/events/{id}").as_str(),
    ] {
        let (status, _) = h
            .call(Method::GET, uri, Some(&format!("Bearer {key}")), None)
            .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{uri}");
    }

    // Another integration's name as source.
    let (status, _, body) = h.report(&key, pothole("jaki", "J-1", 10.0)).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body["code"], "wrong_source");

    // Every bad field named, all at once.
    let mut bad = pothole("sipokat", "SPK-4", 10.0);
    bad["latitude"] = json!(91.5);
    bad["longitude"] = json!(-181);
    bad["time"] = json!("kemarin sore");
    bad["category"] = json!("");
    bad["photos"] = json!([b64(b"hello, not a picture"), "@@@", b64(&jpeg())]);
    let (status, _, body) = h.report(&key, bad).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["code"], "invalid_report");
    assert_eq!(
        paths(&body),
        [
            "category",
            "time",
            "latitude",
            "longitude",
            "photos",
            "photos[0]",
            "photos[1]"
        ],
        "{body}"
    );
    let message = body["message"].as_str().expect("message");
    assert!(
        message.contains("latitude: 91.5 is out of range"),
        "{message}"
    );
    assert!(
        message.contains("photos[0]: is not a JPEG or PNG file"),
        "{message}"
    );
    // A time far ahead, and a field the API does not know.
    let mut ahead = pothole("sipokat", "SPK-5", 10.0);
    ahead["time"] = json!(pantau_events::time::format(
        SystemTime::now() + Duration::from_secs(3600)
    ));
    let (status, _, body) = h.report(&key, ahead).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(paths(&body), ["time"]);
    let mut unknown = pothole("sipokat", "SPK-6", 10.0);
    unknown["lat"] = json!(1.0);
    let (status, _, body) = h.report(&key, unknown).await;
    assert!(status.is_client_error(), "{body}");
    assert!(
        body["message"].as_str().unwrap_or("").contains("lat"),
        "{body}"
    );
    // Nothing of the refused reports was kept.
    assert!(store
        .report_by_external_id("sipokat", "SPK-4")
        .await
        .expect("query")
        .is_none());

    // A disabled key is refused until enabled again; both are audited.
    for (disabled, want) in [(true, StatusCode::FORBIDDEN), (false, StatusCode::CREATED)] {
        let (status, body) = h
            .call(
                Method::PATCH,
                "/api/v1/integrations/sipokat",
                Some("admin"),
                Some(json!({"disabled": disabled})),
            )
            .await;
        assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
        let (status, _, body) = h
            .report(&key, pothole("sipokat", &format!("SPK-7-{disabled}"), 10.0))
            .await;
        assert_eq!(status, want, "{body}");
        if disabled {
            assert_eq!(body["code"], "integration_disabled");
        }
    }
    let trail: Vec<String> = store
        .audit_trail("integration:sipokat")
        .await
        .expect("audit")
        .into_iter()
        .map(|a| format!("{} {}", a.actor, a.action))
        .collect();
    assert_eq!(
        trail,
        [
            "ana integration.create",
            "ana integration.disable",
            "ana integration.enable"
        ]
    );
    h.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_the_rate_a_key_waits_and_others_do_not() {
    let h = harness("rate", 3).await;
    let (key, _) = h.integration("sipokat", None).await;
    let (other, _) = h.integration("jaki", None).await;
    for i in 0..3 {
        let (status, _, body) = h
            .report(&key, pothole("sipokat", &format!("R-{i}"), 10.0))
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }
    let (status, headers, body) = h.report(&key, pothole("sipokat", "R-3", 10.0)).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert_eq!(body["code"], "too_many_reports");
    let wait: u64 = headers[header::RETRY_AFTER]
        .to_str()
        .expect("ascii")
        .parse()
        .expect("seconds");
    assert!((1..=60).contains(&wait), "{wait}");
    let (status, _, body) = h.report(&other, pothole("jaki", "J-1", 10.0)).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    h.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn photos_are_kept_without_their_exif_and_served_to_operators() {
    let h = harness("photos", 100).await;
    let (key, _) = h.integration("sipokat", None).await;
    let phone = jpeg_with_gps();
    assert!(phone.windows(4).any(|w| w == b"Exif"));
    let mut report = pothole("sipokat", "P-1", 30.0);
    report["photos"] = json!([b64(&phone)]);
    let (status, _, body) = h.report(&key, report).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["photos"], 1);
    let id = body["id"].as_str().expect("id");

    // The file on disk: no APP1 segment, no EXIF or GPS bytes, and still a picture.
    let store = h.db.store().await.expect("store");
    let row = store.report(id).await.expect("query").expect("report");
    let file = h.dir.path().join("var/reports").join(&row.photos[0]);
    let kept = std::fs::read(&file).expect("photo file");
    assert!(!kept.windows(4).any(|w| w == b"Exif"));
    assert!(!kept.windows(3).any(|w| w == b"GPS"));
    assert!(
        !kept.windows(2).any(|w| w == [0xFF, 0xE1]),
        "an APP1 marker is left"
    );
    let decoded =
        image::load_from_memory_with_format(&kept, image::ImageFormat::Jpeg).expect("decodes");
    assert_eq!((decoded.width(), decoded.height()), (64, 48));

    // The event names it by URL; operators get the cleaned bytes, planners nothing.
    let (_, detail) = h
        .call(
            Method::GET,
            &format!("/api/v1/events/{id}"),
            Some("operator"),
            None,
        )
        .await;
    let url = detail["event"]["details"]["photos"][0]
        .as_str()
        .expect("url")
        .to_string();
    assert_eq!(url, format!("/api/v1/reports/{id}/photos/0"));
    let (status, headers, _, bytes) = h
        .request(Method::GET, &url, Some("operator"), &[], None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers[header::CONTENT_TYPE], "image/jpeg");
    assert_eq!(bytes, kept);
    let (status, _) = h.call(Method::GET, &url, Some("planner"), None).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = h
        .call(
            Method::GET,
            &format!("/api/v1/reports/{id}/photos/1"),
            Some("operator"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    h.finish().await;
}

/// What the callback server received: headers and body of each request, in order.
type Received = Arc<Mutex<Vec<(HeaderMap, Vec<u8>)>>>;

/// A callback server that answers 503 to its first request and 200 after.
async fn callback_server(listener: tokio::net::TcpListener, received: Received) {
    let app = axum::Router::new().route(
        "/pantau/callback",
        axum::routing::post(move |headers: HeaderMap, body: axum::body::Bytes| {
            let received = received.clone();
            async move {
                let mut all = received.lock().expect("lock");
                all.push((headers, body.to_vec()));
                if all.len() == 1 {
                    StatusCode::SERVICE_UNAVAILABLE
                } else {
                    StatusCode::OK
                }
            }
        }),
    );
    axum::serve(listener, app).await.expect("serve");
}

/// Waits up to 20 s for `done` to hold on the report's callbacks.
async fn wait_callbacks(
    store: &pantau_store::Store,
    id: &str,
    what: &str,
    done: impl Fn(&[pantau_store::CallbackRow]) -> bool,
) -> Vec<pantau_store::CallbackRow> {
    for _ in 0..200 {
        let rows = store.callbacks_of(id).await.expect("callbacks");
        if done(&rows) {
            return rows;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{what}: {:?}", store.callbacks_of(id).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dispatch_changes_reach_the_source_signed_in_order_across_an_outage() {
    let h = harness("callbacks", 100).await;
    // Reserve a port, then close it: the source is down at first.
    let addr = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind")
        .local_addr()
        .expect("addr");
    let url = format!("http://{addr}/pantau/callback");
    let (key, secret) = h.integration("sipokat", Some(&url)).await;
    let (status, _, body) = h.report(&key, pothole("sipokat", "CB-1", 40.0)).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let id = body["id"].as_str().expect("id").to_string();

    let stop = tokio_util::sync::CancellationToken::new();
    let settings = CallbackSettings {
        timeout: Duration::from_secs(2),
        retry_initial: Duration::from_millis(100),
        retry_max: Duration::from_millis(300),
        max_age: Duration::from_secs(3600),
        poll: Duration::from_millis(50),
    };
    let loop_task = tokio::spawn(pantau_dashboard_api::reports::deliver_callbacks(
        h.db.clone(),
        settings,
        stop.clone(),
    ));

    let act = |action: Value| {
        let uri = format!("/api/v1/events/{id}/actions");
        let h = &h;
        async move {
            let (status, body) = h
                .call(Method::POST, &uri, Some("dispatcher"), Some(action))
                .await;
            assert_eq!(status, StatusCode::OK, "{body}");
        }
    };
    act(json!({"action": "acknowledge", "note": "for the record only"})).await;
    // A note says nothing to the source.
    act(json!({"action": "note", "note": "unit on its way"})).await;
    let store = h.db.store().await.expect("store");
    let rows = wait_callbacks(&store, &id, "refused while the source is down", |r| {
        r.len() == 1 && r[0].attempts >= 2
    })
    .await;
    assert!(rows[0].delivered_at.is_none());
    assert!(
        rows[0]
            .last_error
            .as_deref()
            .unwrap_or("")
            .contains("connect"),
        "{rows:?}"
    );
    // Closed while the first is still owed: the second waits for the first.
    act(json!({"action": "close", "note": "Lubang sudah ditambal."})).await;
    let received: Received = Arc::default();
    let listener = tokio::net::TcpListener::bind(addr).await.expect("rebind");
    let server = tokio::spawn(callback_server(listener, received.clone()));
    let rows = wait_callbacks(&store, &id, "both delivered", |r| {
        r.len() == 2 && r.iter().all(|c| c.delivered_at.is_some())
    })
    .await;
    stop.cancel();
    loop_task.await.expect("loop ends");
    server.abort();
    assert!(rows[0].delivered_at <= rows[1].delivered_at, "in sequence");

    // The server saw: the first callback refused once (503), then it, then the second.
    let received = received.lock().expect("lock").clone();
    let bodies: Vec<Value> = received
        .iter()
        .map(|(_, b)| serde_json::from_slice(b).expect("json"))
        .collect();
    let seqs: Vec<i64> = bodies
        .iter()
        .map(|b| b["sequence"].as_i64().expect("seq"))
        .collect();
    assert_eq!(seqs, [1, 1, 2], "{bodies:?}");
    assert_eq!(bodies[1]["state"], "acknowledged");
    assert_eq!(bodies[1]["note"], Value::Null, "internal notes stay inside");
    assert_eq!(bodies[2]["state"], "closed");
    assert_eq!(bodies[2]["note"], "Lubang sudah ditambal.");
    for b in &bodies {
        assert_eq!(b["report_id"], id.as_str());
        assert_eq!(b["external_id"], "CB-1");
        assert_eq!(b["source"], "sipokat");
        assert!(pantau_events::time::parse(b["at"].as_str().expect("at")).is_some());
    }
    // Each signed with the secret over the timestamp and the exact body.
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    for (headers, body) in &received {
        let ts = headers["x-pantau-timestamp"].to_str().expect("ascii");
        let t: u64 = ts.parse().expect("seconds");
        assert!(now.abs_diff(t) < 60, "{t}");
        let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("key");
        mac.update(format!("{ts}.").as_bytes());
        mac.update(body);
        let want: String = mac
            .finalize()
            .into_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(
            headers["x-pantau-signature"].to_str().expect("ascii"),
            format!("sha256={want}")
        );
        assert_eq!(headers[header::CONTENT_TYPE], "application/json");
    }
    h.finish().await;
}

fn alert(ids: &IdGenerator, severity: Severity) -> Event {
    let at = SystemTime::now() - Duration::from_secs(120);
    Event {
        id: ids.at(at),
        schema: SCHEMA_VERSION,
        site: "default".into(),
        camera: "simpang-lima".into(),
        rule: "lane-1".into(),
        kind: EventKind::StoppedVehicle,
        lifecycle: Lifecycle::New,
        incident: Some("simpang-lima/stopped_vehicle/lane-1/4".into()),
        captured_at: at,
        severity,
        object: None,
        direction: None,
        snapshot: None,
        details: Default::default(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_report_is_linked_to_the_cameras_alert_and_both_show_it() {
    let h = harness("links", 100).await;
    let (key, _) = h.integration("sipokat", None).await;
    let (_, _, body) = h.report(&key, pothole("sipokat", "L-1", 40.0)).await;
    let report = body["id"].as_str().expect("id").to_string();
    let ids = IdGenerator::new();
    let (alarm, info) = (alert(&ids, Severity::Warning), alert(&ids, Severity::Info));
    let store = h.db.store().await.expect("store");
    store
        .write(&[alarm.clone(), info.clone()], &[])
        .await
        .expect("write");
    let alarm = alarm.id.to_string();
    let uri = format!("/api/v1/events/{report}/links");

    let (status, _) = h
        .call(
            Method::POST,
            &uri,
            Some("operator"),
            Some(json!({"event_id": alarm})),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, body) = h
        .call(
            Method::POST,
            &uri,
            Some("dispatcher"),
            Some(json!({"event_id": info.id.to_string()})),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    let (status, body) = h
        .call(
            Method::POST,
            &uri,
            Some("dispatcher"),
            Some(json!({"event_id": "nope"})),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    let (status, body) = h
        .call(
            Method::POST,
            &uri,
            Some("dispatcher"),
            Some(json!({"event_id": alarm, "note": "same pothole, seen by the camera"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["event_id"], alarm.as_str());
    assert_eq!(body["linked_by"], "dina");
    // From the other side: linked already.
    let (status, _) = h
        .call(
            Method::POST,
            &format!("/api/v1/events/{alarm}/links"),
            Some("dispatcher"),
            Some(json!({"event_id": report})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    for (id, other) in [(&report, &alarm), (&alarm, &report)] {
        let (status, detail) = h
            .call(
                Method::GET,
                &format!("/api/v1/events/{id}"),
                Some("operator"),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{detail}");
        assert_eq!(
            detail["links"].as_array().map(Vec::len),
            Some(1),
            "{detail}"
        );
        assert_eq!(detail["links"][0]["event_id"], other.as_str());
        let linked = detail["audit"]
            .as_array()
            .expect("audit")
            .iter()
            .find(|a| a["action"] == "incident.link")
            .expect("link audited");
        assert_eq!(linked["actor"], "dina");
        assert_eq!(linked["detail"]["with"], other.as_str());
    }
    h.finish().await;
}
