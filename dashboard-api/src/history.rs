//! Traffic history for planners: counts per 5 min / 15 min / 1 h / 1 day bucket, by camera,
//! line, class and direction, from the store's rollups; JSON and CSV.

use std::fmt::Write as _;

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Json;
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
        }
    }
}

fn default_bucket() -> String {
    "1h".into()
}

async fn history(s: &ApiState, p: HistoryParams) -> Result<Vec<HistoryRow>, ApiError> {
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
    let store = s.store().await?;
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
        .map_err(ApiError::store)
}

/// Counts per bucket, camera, line, class and direction (planner, admin).
#[utoipa::path(get, path = "/api/v1/history", tag = "history", params(HistoryParams),
    responses((status = 200, body = [HistoryRowView]), (status = 400, body = ApiError),
              (status = 403, body = ApiError)))]
pub async fn history_json(
    State(s): State<ApiState>,
    session: Session,
    q: Result<axum::extract::Query<HistoryParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Vec<HistoryRowView>>, ApiError> {
    session.allow(Permission::History)?;
    let p = query(q)?;
    Ok(Json(
        history(&s, p).await?.into_iter().map(Into::into).collect(),
    ))
}

/// The same as CSV, for spreadsheets (planner, admin).
#[utoipa::path(get, path = "/api/v1/history.csv", tag = "history", params(HistoryParams),
    responses((status = 200, content_type = "text/csv", description = "bucket_start,camera,line,class,direction,count"),
              (status = 400, body = ApiError), (status = 403, body = ApiError)))]
pub async fn history_csv(
    State(s): State<ApiState>,
    session: Session,
    q: Result<axum::extract::Query<HistoryParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    session.allow(Permission::History)?;
    let p = query(q)?;
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
