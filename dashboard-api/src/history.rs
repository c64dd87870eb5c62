//! Traffic history for planners: counts per 5 min / 15 min / 1 h / 1 day bucket, by camera,
//! line, class and direction, from the store's rollups; JSON and CSV.

use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures_util::StreamExt as _;
use pantau_store::{Bucket, HistoryQuery, HistoryRow};
use serde::{Deserialize, Serialize};

use crate::auth::{Permission, Session};
use crate::error::{query, ApiError};
use crate::incidents::parse_time;
use crate::ApiState;

/// History query parameters.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct HistoryParams {
    /// Start, RFC 3339 (inclusive).
    from: String,
    /// End, RFC 3339 (exclusive).
    to: String,
    /// `5m`, `15m`, `1h` (default) or `1d`.
    #[serde(default = "default_bucket")]
    bucket: String,
    camera: Option<String>,
    line: Option<String>,
    /// e.g. `car`, `person`.
    class: Option<String>,
    /// `in` or `out`.
    direction: Option<String>,
}

/// One bucket of counts.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct HistoryRowView {
    /// RFC 3339.
    pub bucket_start: String,
    pub camera: String,
    pub line: String,
    pub class: String,
    /// `in` or `out`.
    pub direction: String,
    pub count: i64,
    /// Ground speed of these crossings, km/h: 15th, 50th and 85th percentile (calibrated
    /// cameras; absent when none was measured).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub speed_p15_kmh: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub speed_p50_kmh: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub speed_p85_kmh: Option<f64>,
}

impl From<HistoryRow> for HistoryRowView {
    fn from(r: HistoryRow) -> Self {
        Self {
            bucket_start: pantau_events::time::format(r.bucket_start),
            camera: r.camera,
            line: r.line,
            class: r.class,
            direction: r.direction,
            count: r.count,
            speed_p15_kmh: None,
            speed_p50_kmh: None,
            speed_p85_kmh: None,
        }
    }
}

fn default_bucket() -> String {
    "1h".into()
}

/// The query the parameters ask for, checked.
fn history_query(p: HistoryParams) -> Result<HistoryQuery, ApiError> {
    let (from, to) = (parse_time("from", &p.from)?, parse_time("to", &p.to)?);
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
    Ok(HistoryQuery {
        from,
        to,
        bucket,
        camera: p.camera,
        line: p.line,
        class: p.class,
        direction: p.direction,
        cameras: None,
    })
}

/// Counts per bucket, camera, line, class and direction, with the crossings' speed
/// percentiles on calibrated cameras (planner, admin). At most
/// `api.limits.history_rows` rows; a larger answer is refused with 422 (narrow the query or
/// use the CSV export, which streams).
#[utoipa::path(get, path = "/api/v1/history", tag = "history", params(HistoryParams),
    responses((status = 200, body = [HistoryRowView]), (status = 400, body = ApiError),
              (status = 403, body = ApiError),
              (status = 422, description = "More rows than `api.limits.history_rows`", body = ApiError)))]
pub async fn history_json(
    State(s): State<ApiState>,
    session: Session,
    q: Result<axum::extract::Query<HistoryParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Vec<HistoryRowView>>, ApiError> {
    session.allow(Permission::History)?;
    let mut q = history_query(query(q)?)?;
    q.cameras = s.scope(&session).await.cameras();
    let max = s.settings.limits.history_rows;
    let store = s.store().await?;
    let (rows, more) = store
        .history_limited(&q, max)
        .await
        .map_err(ApiError::store)?;
    if more {
        return Err(too_many_rows(max));
    }
    // Speeds of the same crossings, per bucket, line, class and direction.
    let (speeds, _) = store.speeds(&q, max, true).await.map_err(ApiError::store)?;
    let speed: std::collections::HashMap<_, _> = speeds
        .into_iter()
        .map(|r| {
            let key = (
                r.bucket_start,
                r.camera,
                r.line,
                r.class.unwrap_or_default(),
                r.direction,
            );
            (key, (kmh(r.p15_kmh), kmh(r.p50_kmh), kmh(r.p85_kmh)))
        })
        .collect();
    Ok(Json(
        rows.into_iter()
            .map(|r| {
                let key = (
                    r.bucket_start,
                    r.camera.clone(),
                    r.line.clone(),
                    r.class.clone(),
                    r.direction.clone(),
                );
                let found = speed.get(&key).copied();
                let mut v = HistoryRowView::from(r);
                if let Some((p15, p50, p85)) = found {
                    v.speed_p15_kmh = Some(p15);
                    v.speed_p50_kmh = Some(p50);
                    v.speed_p85_kmh = Some(p85);
                }
                v
            })
            .collect(),
    ))
}

/// Speed percentiles of one bucket, camera, line and direction.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SpeedRowView {
    /// RFC 3339.
    pub bucket_start: String,
    pub camera: String,
    pub line: String,
    /// `in` or `out`.
    pub direction: String,
    /// Crossings with a measured speed in the bucket.
    pub vehicles: i64,
    /// 15th, 50th and 85th percentile of ground speed, km/h.
    pub p15_kmh: f64,
    pub p50_kmh: f64,
    pub p85_kmh: f64,
}

/// Ground speeds at each counting line: the 15th, 50th and 85th percentiles per bucket, camera,
/// line and direction (planner, admin). Only cameras with a calibration measure speeds.
#[utoipa::path(get, path = "/api/v1/history/speeds", tag = "history", params(HistoryParams),
    responses((status = 200, body = [SpeedRowView]), (status = 400, body = ApiError),
              (status = 403, body = ApiError),
              (status = 422, description = "More rows than `api.limits.history_rows`", body = ApiError)))]
pub async fn speeds_json(
    State(s): State<ApiState>,
    session: Session,
    q: Result<axum::extract::Query<HistoryParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Vec<SpeedRowView>>, ApiError> {
    session.allow(Permission::History)?;
    let mut q = history_query(query(q)?)?;
    q.cameras = s.scope(&session).await.cameras();
    let max = s.settings.limits.history_rows;
    let (rows, more) = s
        .store()
        .await?
        .speeds(&q, max, false)
        .await
        .map_err(ApiError::store)?;
    if more {
        return Err(too_many_rows(max));
    }
    Ok(Json(
        rows.into_iter()
            .map(|r| SpeedRowView {
                bucket_start: pantau_events::time::format(r.bucket_start),
                camera: r.camera,
                line: r.line,
                direction: r.direction,
                vehicles: r.vehicles,
                p15_kmh: kmh(r.p15_kmh),
                p50_kmh: kmh(r.p50_kmh),
                p85_kmh: kmh(r.p85_kmh),
            })
            .collect(),
    ))
}

/// A speed as served: km/h to one decimal.
fn kmh(v: f64) -> f64 {
    (v * 10.0).round() / 10.0
}

fn too_many_rows(max: u32) -> ApiError {
    ApiError::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        "too_many_rows",
        format!(
            "the answer has more than {max} rows (api.limits.history_rows); narrow it with \
             camera, line, class or direction, a shorter from..to or a larger bucket, or \
             download /api/v1/history.csv, which streams any size"
        ),
    )
}

/// Rows sent to a CSV download ahead of the client, at most.
const CSV_AHEAD: usize = 256;

/// How long a CSV download may take, at most (it holds a database connection).
const CSV_TIME: Duration = Duration::from_secs(600);

/// The same as CSV, for spreadsheets (planner, admin). Streamed as the database returns rows,
/// so any size is fine; a download ends after 10 minutes.
#[utoipa::path(get, path = "/api/v1/history.csv", tag = "history", params(HistoryParams),
    responses((status = 200, content_type = "text/csv", description = "bucket_start,camera,line,class,direction,count"),
              (status = 400, body = ApiError), (status = 403, body = ApiError)))]
pub async fn history_csv(
    State(s): State<ApiState>,
    session: Session,
    q: Result<axum::extract::Query<HistoryParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    session.allow(Permission::History)?;
    let mut q = history_query(query(q)?)?;
    q.cameras = s.scope(&session).await.cameras();
    let store = s.store().await?;
    let (tx, rx) = tokio::sync::mpsc::channel(CSV_AHEAD);
    let shutdown = s.shutdown.clone();
    tokio::spawn(async move {
        let run = tokio::time::timeout(CSV_TIME, store.history_into(&q, tx));
        tokio::select! {
            r = run => match r {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::warn!("history CSV ended early: {e}"),
                Err(_) => tracing::warn!("history CSV ended after {} s", CSV_TIME.as_secs()),
            },
            () = shutdown.cancelled() => {}
        }
    });
    let header = futures_util::stream::once(async {
        Ok::<_, std::convert::Infallible>(String::from(
            "bucket_start,camera,line,class,direction,count\n",
        ))
    });
    let rows = tokio_stream_of(rx).map(|r| {
        Ok(format!(
            "{},{},{},{},{},{}\n",
            pantau_events::time::format(r.bucket_start),
            csv_field(&r.camera),
            csv_field(&r.line),
            csv_field(&r.class),
            r.direction,
            r.count
        ))
    });
    Ok((
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
            (
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"pantau-history.csv\"",
            ),
        ],
        Body::from_stream(header.chain(rows)),
    )
        .into_response())
}

/// The receiver as a stream of what it receives.
fn tokio_stream_of<T: Send + 'static>(
    rx: tokio::sync::mpsc::Receiver<T>,
) -> impl futures_util::Stream<Item = T> + Send {
    futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|v| (v, rx)) })
}

/// A field that may hold a comma, quote or line break, quoted; one that starts with `=`, `+`,
/// `-` or `@` gets a leading `'` so that a spreadsheet never runs it as a formula.
fn csv_field(v: &str) -> String {
    let v = if v.starts_with(['=', '+', '-', '@']) {
        format!("'{v}")
    } else {
        v.to_string()
    };
    if v.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", v.replace('"', "\"\""))
    } else {
        v
    }
}
