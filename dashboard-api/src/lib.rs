//! pantau's HTTP API and web console.
//!
//! [`app`] builds the router from an [`ApiState`], so tests drive it with
//! `tower::ServiceExt::oneshot` without a socket; [`serve`] runs it on a listener until a
//! shutdown future completes. Every error is one JSON shape, [`ApiError`]; every route under
//! `/api/v1` except login checks the caller's role ([`auth`]). The OpenAPI document is generated
//! from the handlers ([`openapi`]) and browsable at `/api/docs`.
//!
//! | module | owns |
//! |---|---|
//! | [`agencies`] | what a user of an agency sees (cameras of its groups, incidents handed to it) |
//! | [`auth`] | users, roles, sessions, login rate limit, audit helper |
//! | [`cameras`] | camera list/status and add/change/remove while running |
//! | [`incidents`] | events search and the dispatch workflow |
//! | [`cap`] | an alert as CAP 1.2 XML |
//! | [`evidence`] | evidence clips: key, state, video, signed zip export, keep, save clip |
//! | [`map`] | cameras and lanes as GeoJSON |
//! | [`live`] | SSE stream, latest annotated frame, snapshots, analysis metrics |
//! | [`history`] | planners' counts (JSON, CSV) and speeds |
//! | [`snooze`] | rules snoozed on a camera by operators |
//! | [`reports`] | citizen reports from integrations, their photos, camera matching, callbacks, integrations, incident links |
//! | [`health`] | `/healthz`, `/readyz`, `/metrics` |
//! | [`limits`] | the HTTP server, connection, request and live-stream limits |
//! | [`console`] | the embedded web console |

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::http::{header, HeaderValue, Method};
use axum::routing::{get, post};
use axum::Router;
use pantau_config::config::{ApiLimits, MetricsAccess};
use pantau_sinks::outbox::Outbox;
use pantau_store::Store;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::set_header::SetResponseHeaderLayer;

pub mod agencies;
pub mod auth;
pub mod cameras;
pub mod cap;
mod client;
pub mod console;
pub mod db;
pub mod error;
pub mod evidence;
pub mod fleet;
pub mod health;
pub mod history;
pub mod incidents;
pub mod limits;
pub mod live;
pub mod map;
pub mod openapi;
pub mod reports;
pub mod snooze;

pub use cameras::{CameraControl, CameraRegistry};
pub use db::Db;
pub use error::ApiError;
pub use live::{Live, LiveMessage};
pub use pantau_events::camera::{CameraState, CameraStatus, StatusChange};

/// What the API reads of the running cameras. The node gives it its ingest; a test can give it
/// anything that answers, so the router runs without the video stack.
pub trait CameraFeed: Send + Sync + std::fmt::Debug {
    /// Every camera's status.
    fn statuses(&self) -> Vec<CameraStatus>;
    /// One camera's status; `None` when no such camera runs.
    fn status(&self, id: &str) -> Option<CameraStatus>;
    /// State changes of all cameras, as they happen.
    fn subscribe(&self) -> tokio::sync::broadcast::Receiver<StatusChange>;
    /// The camera's newest full-resolution frame as JPEG.
    fn frame_jpeg(&self, id: &str) -> cameras::BoxFuture<'_, Result<Vec<u8>, String>>;
}

/// Settings of the API taken from the config.
#[derive(Debug, Clone)]
pub struct ApiSettings {
    pub session_hours: u32,
    pub login_attempts: u32,
    pub cors_origins: Vec<String>,
    /// MQTT topics (incident changes).
    pub topics: pantau_events::Topics,
    /// Where event snapshots are, when snapshots are on.
    pub snapshots_dir: Option<PathBuf>,
    /// Peers whose `X-Forwarded-For` names the client (`api.trusted_proxies`).
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// The only environment variables cameras from the API may take a password from start
    /// with this (`api.camera_env_prefix`).
    pub camera_env_prefix: String,
    /// The only folders `file://` cameras from the API may play from (`api.media_dirs`,
    /// absolute).
    pub media_dirs: Vec<PathBuf>,
    /// Who may read `/metrics`.
    pub metrics: MetricsAccess,
    /// The bearer token of `/metrics` when `metrics` is `token`.
    pub metrics_token: Option<String>,
    pub limits: ApiLimits,
    /// Map tile URL template for the console's map (`api.map_tiles`, validated); `None`: a
    /// plain background.
    pub map_tiles: Option<String>,
    /// `[agencies]`: the agencies and the camera groups each owns; empty: every user sees
    /// every camera.
    pub agencies: pantau_config::agencies::Agencies,
}

impl Default for ApiSettings {
    fn default() -> Self {
        Self {
            session_hours: 12,
            login_attempts: 5,
            cors_origins: Vec::new(),
            topics: pantau_events::Topics {
                prefix: "pantau".into(),
                site: "default".into(),
                node: "pantau".into(),
            },
            snapshots_dir: None,
            trusted_proxies: Vec::new(),
            camera_env_prefix: "PANTAU_CAM_".into(),
            media_dirs: Vec::new(),
            metrics: MetricsAccess::Open,
            metrics_token: None,
            limits: ApiLimits::default(),
            map_tiles: None,
            agencies: Default::default(),
        }
    }
}

/// What the handlers need.
#[derive(Debug, Clone)]
pub struct ApiState {
    /// The running cameras: status, changes and the newest frame.
    pub feed: Arc<dyn CameraFeed>,
    /// Users, sessions, events, dispatch and history; `None` when pantau runs without a store.
    pub db: Option<Arc<Db>>,
    pub outbox: Option<Arc<Outbox>>,
    /// The MQTT broker address, checked by `/readyz`.
    pub broker: Option<SocketAddr>,
    /// Cameras managed from the API; `None` makes them read-only.
    pub cameras: Option<Arc<CameraRegistry>>,
    pub live: Arc<Live>,
    pub settings: Arc<ApiSettings>,
    pub limiter: Arc<auth::LoginLimiter>,
    /// Turns for password hashing and verification ([`auth::HASHING_AT_ONCE`]).
    pub hashing: Arc<tokio::sync::Semaphore>,
    /// Cancelled when the node stops: live streams end, so the HTTP server can.
    pub shutdown: tokio_util::sync::CancellationToken,
    /// Live streams open now ([`limits::live_slot`]).
    pub streams: Arc<limits::StreamSlots>,
    /// Rules snoozed on cameras, shared with the node's analysis.
    pub snoozes: Arc<snooze::Snoozes>,
    /// Evidence clips; `None` when they are off.
    pub evidence: Option<Arc<evidence::EvidenceAccess>>,
    /// Citizen reports (`[reports]`): settings, each integration's rate, turns to decode
    /// photos. Off unless set ([`reports::Reports::new`]).
    pub reports: Arc<reports::Reports>,
}

impl ApiState {
    pub fn new(feed: Arc<dyn CameraFeed>, settings: ApiSettings) -> Self {
        Self {
            feed,
            db: None,
            outbox: None,
            broker: None,
            cameras: None,
            live: Arc::default(),
            limiter: Arc::new(auth::LoginLimiter::new(
                settings.login_attempts,
                Duration::from_secs(300),
            )),
            snoozes: Arc::default(),
            evidence: None,
            reports: Arc::default(),
            streams: Arc::new(limits::StreamSlots::new(
                settings.limits.max_streams,
                settings.limits.max_streams_per_user,
            )),
            settings: Arc::new(settings),
            hashing: Arc::new(tokio::sync::Semaphore::new(auth::HASHING_AT_ONCE)),
            shutdown: tokio_util::sync::CancellationToken::new(),
        }
    }

    /// The store, or why there is none.
    pub async fn store(&self) -> Result<Arc<Store>, ApiError> {
        self.db
            .as_ref()
            .ok_or_else(ApiError::no_store)?
            .store()
            .await
    }
}

/// The router: API, console and documentation.
pub fn app(state: ApiState) -> Router {
    let timeout = axum::middleware::from_fn_with_state(state.clone(), limits::request_timeout);
    // Citizen reports carry photos: their route takes what `[reports]` allows, the rest 1 MiB.
    let report_limit = state
        .reports
        .settings
        .as_ref()
        .map_or(1 << 20, |r| r.max_body_bytes);
    let submit_report = post(reports::submit)
        .route_layer(timeout.clone())
        .route_layer(axum::extract::DefaultBodyLimit::max(report_limit))
        .route_layer(RequestBodyLimitLayer::new(report_limit));
    let api = Router::new()
        .route("/auth/login", post(auth::login))
        .route("/auth/logout", post(auth::logout))
        .route("/auth/me", get(auth::me))
        .route("/users", get(auth::list_users).post(auth::create_user))
        .route(
            "/users/{name}",
            axum::routing::patch(auth::change_user).delete(auth::delete_user),
        )
        .route("/cameras", get(cameras::list).post(cameras::create))
        .route("/fleet", get(fleet::fleet))
        .route("/agencies", get(agencies::list))
        .route(
            "/cameras/{id}",
            get(cameras::one)
                .put(cameras::update)
                .delete(cameras::remove),
        )
        .route("/cameras/{id}/frame.jpg", get(live::frame))
        .route("/cameras/{id}/snoozes", post(snooze::start))
        .route(
            "/cameras/{id}/snoozes/{rule}",
            axum::routing::delete(snooze::end),
        )
        .route("/snoozes", get(snooze::list))
        .route("/snapshots/{*path}", get(live::snapshot))
        .route("/events", get(incidents::search))
        .route("/events/{id}", get(incidents::detail))
        .route("/events/{id}/actions", post(incidents::act))
        .route("/events/{id}/cap", get(cap::alert))
        .route("/events/{id}/evidence", get(evidence::status))
        .route("/events/{id}/evidence.mp4", get(evidence::video))
        .route("/events/{id}/evidence.zip", get(evidence::export))
        .route(
            "/events/{id}/evidence/keep",
            axum::routing::put(evidence::keep),
        )
        .route("/evidence/key", get(evidence::key))
        .route("/cameras/{id}/clips", post(evidence::save))
        .route("/events/{id}/links", post(reports::link))
        .route("/reports/{id}/photos/{n}", get(reports::photo))
        .route(
            "/integrations",
            get(reports::list_integrations).post(reports::create_integration),
        )
        .route(
            "/integrations/{name}",
            axum::routing::patch(reports::change_integration),
        )
        .route("/map.geojson", get(map::geojson))
        .route("/history", get(history::history_json))
        .route("/history.csv", get(history::history_csv))
        .route("/history/speeds", get(history::speeds_json))
        .route("/openapi.json", get(openapi::json))
        .layer(timeout.clone())
        // Streams last; they have their own limit instead of the request timeout.
        .route(
            "/live",
            get(live::stream).route_layer(axum::middleware::from_fn_with_state(
                state.clone(),
                limits::live_slot,
            )),
        );
    let mut router = Router::new()
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(health::metrics))
        .merge(console::routes())
        .fallback(|| async {
            ApiError::not_found("not_found", "no such endpoint; see /api/docs for the API")
        })
        .layer(timeout)
        .nest("/api/v1", api)
        .layer(RequestBodyLimitLayer::new(1 << 20))
        .route("/api/v1/reports", submit_report)
        .layer(axum::middleware::map_response(
            error::body_limit_in_api_shape,
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::X_FRAME_OPTIONS,
            HeaderValue::from_static("DENY"),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::REFERRER_POLICY,
            HeaderValue::from_static("same-origin"),
        ));
    let origins: Vec<HeaderValue> = state
        .settings
        .cors_origins
        .iter()
        .filter_map(|o| o.parse().ok())
        .collect();
    if !origins.is_empty() {
        router = router.layer(
            CorsLayer::new()
                .allow_origin(AllowOrigin::list(origins))
                .allow_methods([
                    Method::GET,
                    Method::POST,
                    Method::PUT,
                    Method::PATCH,
                    Method::DELETE,
                ])
                .allow_headers([header::CONTENT_TYPE, header::AUTHORIZATION])
                .allow_credentials(true)
                .max_age(Duration::from_secs(3600)),
        );
    }
    router.with_state(state)
}

/// Serves `app` on `listener` until `shutdown` completes, within the limits of
/// `[api.limits]` ([`limits::serve`]). Client addresses are passed to the handlers (login rate
/// limit per address).
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: ApiState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    limits::serve(listener, state, shutdown).await
}
