//! pantau's HTTP API (first part): camera status, traffic history for planners (JSON and CSV),
//! health, readiness and Prometheus metrics.
//!
//! [`app`] builds the router from an [`ApiState`], so tests drive it with
//! `tower::ServiceExt::oneshot` without a socket; [`serve`] runs it on a listener until a
//! shutdown future completes. Every error is one JSON shape, [`ApiError`].

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use pantau_ingest::{CameraStatus, Ingest};
use pantau_sinks::outbox::Outbox;
use pantau_sinks::store::{Bucket, HistoryQuery, HistoryRow, Store};
use serde::{Deserialize, Serialize};

/// What the handlers need.
#[derive(Debug, Clone)]
pub struct ApiState {
    pub ingest: Arc<Ingest>,
    /// The store, for history; `None` when pantau runs without one.
    pub store: Option<Arc<Store>>,
    pub outbox: Option<Arc<Outbox>>,
    /// The MQTT broker address, checked by `/readyz`.
    pub broker: Option<SocketAddr>,
}

/// The one error shape: a stable `code` for programs and a `message` for people.
#[derive(Debug, Serialize)]
pub struct ApiError {
    #[serde(skip)]
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }

    fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(&self)).into_response()
    }
}

/// The router.
pub fn app(state: ApiState) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/api/v1/cameras", get(cameras))
        .route("/api/v1/cameras/{id}", get(camera))
        .route("/api/v1/history", get(history_json))
        .route("/api/v1/history.csv", get(history_csv))
        .fallback(|| async {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "not_found",
                "no such endpoint; see /api/v1",
            )
        })
        .with_state(state)
}

/// Serves `app` on `listener` until `shutdown` completes.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: ApiState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, app(state))
        .with_graceful_shutdown(shutdown)
        .await
}

async fn cameras(State(s): State<ApiState>) -> Json<Vec<CameraStatus>> {
    Json(s.ingest.statuses())
}

async fn camera(
    State(s): State<ApiState>,
    Path(id): Path<String>,
) -> Result<Json<CameraStatus>, ApiError> {
    s.ingest.status(&id).map(Json).ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "camera_not_found",
            format!("no camera \"{id}\"; GET /api/v1/cameras lists them"),
        )
    })
}

#[derive(Debug, Serialize)]
struct Readiness {
    ready: bool,
    store: &'static str,
    broker: &'static str,
}

async fn readyz(State(s): State<ApiState>) -> Response {
    let store = match &s.store {
        None => "not_configured",
        Some(store) => match tokio::time::timeout(Duration::from_secs(2), store.ping()).await {
            Ok(Ok(())) => "ok",
            _ => "unreachable",
        },
    };
    let broker = match s.broker {
        None => "not_configured",
        Some(addr) => {
            match tokio::time::timeout(Duration::from_secs(2), tokio::net::TcpStream::connect(addr))
                .await
            {
                Ok(Ok(_)) => "ok",
                _ => "unreachable",
            }
        }
    };
    let ready = store != "unreachable" && broker != "unreachable";
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        Json(Readiness {
            ready,
            store,
            broker,
        }),
    )
        .into_response()
}

/// A per-camera metric: name, type, help, value.
type Family = (
    &'static str,
    &'static str,
    &'static str,
    fn(&CameraStatus) -> f64,
);

/// Prometheus text format.
async fn metrics(State(s): State<ApiState>) -> Response {
    let mut out = String::new();
    let statuses = s.ingest.statuses();
    let families: [Family; 6] = [
        (
            "pantau_camera_fps",
            "gauge",
            "Decoded frames per second",
            |c| c.fps,
        ),
        (
            "pantau_camera_frames_decoded_total",
            "counter",
            "Frames decoded",
            |c| c.frames_decoded as f64,
        ),
        (
            "pantau_camera_frames_analysed_total",
            "counter",
            "Frames taken by analysis",
            |c| c.frames_analysed as f64,
        ),
        (
            "pantau_camera_frames_dropped_total",
            "counter",
            "Frames dropped because analysis fell behind",
            |c| c.frames_dropped as f64,
        ),
        (
            "pantau_camera_reconnects_total",
            "counter",
            "Reconnects after the first connection",
            |c| c.reconnects as f64,
        ),
        (
            "pantau_camera_streaming",
            "gauge",
            "1 while the camera streams",
            |c| f64::from(u8::from(c.state == pantau_ingest::CameraState::Streaming)),
        ),
    ];
    for (name, kind, help, value) in families {
        header_lines(&mut out, name, kind, help);
        for c in &statuses {
            let _ = writeln!(out, "{name}{{camera=\"{}\"}} {}", escape(&c.id), value(c));
        }
    }
    if let Some(outbox) = &s.outbox {
        for (name, kind, help, value) in [
            (
                "pantau_outbox_bytes",
                "gauge",
                "Bytes of undelivered records",
                outbox.bytes(),
            ),
            (
                "pantau_outbox_dropped_total",
                "counter",
                "Records dropped because the outbox was full",
                outbox.dropped(),
            ),
            (
                "pantau_outbox_refused_total",
                "counter",
                "Records refused because the outbox was full",
                outbox.refused(),
            ),
        ] {
            header_lines(&mut out, name, kind, help);
            let _ = writeln!(out, "{name} {value}");
        }
        header_lines(
            &mut out,
            "pantau_outbox_depth",
            "gauge",
            "Records a sink has not delivered yet",
        );
        for sink in ["mqtt", "store"] {
            let _ = writeln!(
                out,
                "pantau_outbox_depth{{sink=\"{sink}\"}} {}",
                outbox.depth(sink)
            );
        }
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out).into_response()
}

/// The `# HELP` and `# TYPE` lines of one metric family.
fn header_lines(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"")
}

/// History query parameters: `from` and `to` RFC 3339, `bucket` 5m|15m|1h|1d, filters optional.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct HistoryParams {
    from: String,
    to: String,
    #[serde(default = "default_bucket")]
    bucket: String,
    camera: Option<String>,
    line: Option<String>,
    class: Option<String>,
    direction: Option<String>,
}

fn default_bucket() -> String {
    "1h".into()
}

async fn history(s: &ApiState, p: HistoryParams) -> Result<Vec<HistoryRow>, ApiError> {
    let store = s.store.as_ref().ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "no_store",
            "history needs a store: configure [store] in pantau's config",
        )
    })?;
    let time = |name: &str, v: &str| -> Result<SystemTime, ApiError> {
        pantau_events::time::parse(v).ok_or_else(|| {
            ApiError::bad_request(format!(
                "{name} \"{v}\" is not a UTC time; write e.g. 2026-11-24T08:00:00Z"
            ))
        })
    };
    let (from, to) = (time("from", &p.from)?, time("to", &p.to)?);
    if to <= from {
        return Err(ApiError::bad_request("to must be after from"));
    }
    let bucket = Bucket::parse(&p.bucket).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let buckets = to.duration_since(from).unwrap_or_default().as_secs() / bucket.seconds() as u64;
    if buckets > 100_000 {
        return Err(ApiError::bad_request(format!(
            "{buckets} buckets of {} is too many; pick a larger bucket or a shorter range",
            p.bucket
        )));
    }
    if let Some(d) = &p.direction {
        if d != "in" && d != "out" {
            return Err(ApiError::bad_request("direction is in or out"));
        }
    }
    store
        .history(&HistoryQuery {
            from,
            to,
            bucket,
            camera: p.camera,
            line: p.line,
            class: p.class,
            direction: p.direction,
        })
        .await
        .map_err(|e| {
            tracing::warn!("history query failed: {e}");
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "store_unavailable",
                "the store did not answer; try again",
            )
        })
}

async fn history_json(
    State(s): State<ApiState>,
    q: Result<Query<HistoryParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Vec<HistoryRow>>, ApiError> {
    let Query(p) = q.map_err(|e| ApiError::bad_request(e.body_text()))?;
    Ok(Json(history(&s, p).await?))
}

async fn history_csv(
    State(s): State<ApiState>,
    q: Result<Query<HistoryParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(p) = q.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let rows = history(&s, p).await?;
    let mut csv = String::from("bucket_start,camera,line,class,direction,count\n");
    for r in rows {
        let _ = writeln!(
            csv,
            "{},{},{},{},{},{}",
            pantau_events::time::format(r.bucket_start),
            csv_field(&r.camera),
            csv_field(&r.line),
            csv_field(&r.class),
            r.direction,
            r.count
        );
    }
    Ok((
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
            (
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"pantau-history.csv\"",
            ),
        ],
        csv,
    )
        .into_response())
}

fn csv_field(v: &str) -> String {
    if v.contains([',', '"', '\n']) {
        format!("\"{}\"", v.replace('"', "\"\""))
    } else {
        v.to_string()
    }
}
