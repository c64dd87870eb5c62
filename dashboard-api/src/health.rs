//! `/healthz`, `/readyz` and Prometheus `/metrics` (no login: for probes and scrapers;
//! `/metrics` may need a token or be off, `api.metrics`).

use std::fmt::Write as _;
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use pantau_events::camera::CameraStatus;
use serde::Serialize;

use crate::error::ApiError;
use crate::live::{Analysis, LATENCY_BUCKETS};
use crate::ApiState;
use pantau_config::config::MetricsAccess;

/// Compares without stopping at the first difference, so the time taken tells nothing about
/// the token.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    use sha2::Digest;
    let (a, b) = (sha2::Sha256::digest(a), sha2::Sha256::digest(b));
    a.iter()
        .zip(b.iter())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y))
        == 0
}

/// Liveness: the process answers.
#[utoipa::path(get, path = "/healthz", tag = "health", responses((status = 200, body = String)))]
pub async fn healthz() -> &'static str {
    "ok"
}

/// Readiness of the store and the broker: `ok`, `unreachable` or `not_configured`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Readiness {
    pub ready: bool,
    #[schema(value_type = String)]
    pub store: &'static str,
    #[schema(value_type = String)]
    pub broker: &'static str,
}

/// Ready when the store and the broker (those configured) are reachable.
#[utoipa::path(get, path = "/readyz", tag = "health",
    responses((status = 200, body = Readiness), (status = 503, body = Readiness)))]
pub async fn readyz(State(s): State<ApiState>) -> Response {
    let store = match &s.db {
        None => "not_configured",
        Some(db) => match tokio::time::timeout(Duration::from_secs(3), async {
            db.store().await.ok()?.ping().await.ok()
        })
        .await
        {
            Ok(Some(())) => "ok",
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
type Family<T> = (&'static str, &'static str, &'static str, fn(&T) -> f64);

/// Writes each family's header and one sample per (camera, item).
fn per_camera<T>(out: &mut String, families: &[Family<T>], items: &[(&str, &T)]) {
    for (name, kind, help, value) in families {
        header_lines(out, name, kind, help);
        for (camera, item) in items {
            let _ = writeln!(
                out,
                "{name}{{camera=\"{}\"}} {}",
                escape(camera),
                value(item)
            );
        }
    }
}

/// Prometheus text format: per-camera fps, frames, drops, reconnects, inference time, events
/// and event latency; outbox depth and drops.
#[utoipa::path(get, path = "/metrics", tag = "health",
    responses((status = 200, content_type = "text/plain", description = "Prometheus text format 0.0.4"),
              (status = 401, description = "`api.metrics = \"token\"` and no or a wrong bearer token", body = ApiError),
              (status = 404, description = "`api.metrics = \"off\"`", body = ApiError)))]
pub async fn metrics(State(s): State<ApiState>, headers: axum::http::HeaderMap) -> Response {
    match s.settings.metrics {
        MetricsAccess::Open => {}
        MetricsAccess::Off => {
            return ApiError::not_found("not_found", "metrics are off on this pantau (api.metrics)")
                .into_response()
        }
        MetricsAccess::Token => {
            let given = headers
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "))
                .map(str::trim);
            let right = match (given, s.settings.metrics_token.as_deref()) {
                (Some(g), Some(t)) => constant_time_eq(g.as_bytes(), t.as_bytes()),
                _ => false,
            };
            if !right {
                let mut e = ApiError::unauthenticated();
                e.message = "metrics need `Authorization: Bearer <token>` with the token of \
                             api.metrics_token_env"
                    .into();
                return e.into_response();
            }
        }
    }
    let mut out = String::new();
    let statuses = s.feed.statuses();
    let families: [Family<CameraStatus>; 8] = [
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
            "pantau_camera_frames_skipped_total",
            "counter",
            "Frames the analysis rate let pass by",
            |c| c.frames_skipped as f64,
        ),
        (
            "pantau_camera_analysis_fps_now",
            "gauge",
            "Frames per second the camera is analysed at now (below its rate while the node is over capacity)",
            |c| c.analysis_fps_now,
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
            |c| {
                f64::from(u8::from(
                    c.state == pantau_events::camera::CameraState::Streaming,
                ))
            },
        ),
    ];
    let cameras: Vec<(&str, &CameraStatus)> = statuses.iter().map(|c| (c.id.as_str(), c)).collect();
    per_camera(&mut out, &families, &cameras);
    let analysis = s.live.analysis();
    let analysed: Vec<(&str, &Analysis)> = analysis.iter().map(|(c, a)| (c.as_str(), a)).collect();
    per_camera(
        &mut out,
        &[
            (
                "pantau_camera_inference_ms",
                "gauge",
                "Detector time of the last analysed frame in milliseconds",
                |a: &Analysis| a.inference_ms,
            ),
            (
                "pantau_camera_events_total",
                "counter",
                "Events produced by the camera's rules",
                |a: &Analysis| a.events as f64,
            ),
        ],
        &analysed,
    );
    header_lines(
        &mut out,
        "pantau_event_latency_seconds",
        "histogram",
        "From frame capture to the event queued for delivery",
    );
    for (camera, a) in &analysis {
        let camera = escape(camera);
        let mut cumulative = 0;
        for (i, n) in a.latency_buckets.iter().enumerate() {
            cumulative += n;
            let le = LATENCY_BUCKETS
                .get(i)
                .map(|b| b.to_string())
                .unwrap_or_else(|| "+Inf".into());
            let _ = writeln!(
                out,
                "pantau_event_latency_seconds_bucket{{camera=\"{camera}\",le=\"{le}\"}} {cumulative}"
            );
        }
        let _ = writeln!(
            out,
            "pantau_event_latency_seconds_sum{{camera=\"{camera}\"}} {}\npantau_event_latency_seconds_count{{camera=\"{camera}\"}} {cumulative}",
            a.latency_sum_s
        );
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
        let depths = outbox.depths();
        for (sink, depth) in &depths {
            let _ = writeln!(out, "pantau_outbox_depth{{sink=\"{sink}\"}} {depth}");
        }
        header_lines(
            &mut out,
            "pantau_outbox_dead_letters_total",
            "counter",
            "Records a sink could never deliver (too large, refused), kept in the outbox's dead letters since start",
        );
        let dead = outbox.dead_counts();
        for (sink, _) in &depths {
            let _ = writeln!(
                out,
                "pantau_outbox_dead_letters_total{{sink=\"{sink}\"}} {}",
                dead.get(sink).copied().unwrap_or(0)
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
