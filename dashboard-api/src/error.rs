//! The one error shape of the API.

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;

/// Every error: a stable `code` for programs, a `message` for people and, for validation
/// errors, every problem with the path of the field it concerns.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ApiError {
    #[serde(skip)]
    pub status: StatusCode,
    /// Stable identifier, e.g. `bad_request`, `unauthenticated`, `forbidden`, `not_found`,
    /// `conflict`, `invalid_camera`, `too_many_attempts`, `store_unavailable`.
    #[schema(value_type = String)]
    pub code: &'static str,
    /// What went wrong and what to do about it.
    pub message: String,
    /// Validation problems, one per field.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub issues: Vec<Issue>,
    /// Seconds to wait before trying again (sent as `Retry-After`).
    #[serde(skip)]
    pub retry_after: Option<u64>,
}

/// One validation problem.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Issue {
    /// Where, e.g. `camera.lines[0].points`.
    pub path: String,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            issues: Vec::new(),
            retry_after: None,
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    pub fn not_found(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, code, message)
    }

    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, "conflict", message)
    }

    pub fn unauthenticated() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "unauthenticated",
            "log in first: POST /api/v1/auth/login, then send the session cookie or \
             `Authorization: Bearer <token>`",
        )
    }

    pub fn no_store() -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "no_store",
            "this needs a database: configure [store] in pantau's config",
        )
    }

    /// The database failed; the details go to the log, not to the client.
    pub fn store(e: impl std::fmt::Display) -> Self {
        tracing::warn!("database request failed: {e}");
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "store_unavailable",
            "the database did not answer; try again shortly",
        )
    }
}

impl From<pantau_store::StoreError> for ApiError {
    fn from(e: pantau_store::StoreError) -> Self {
        match &e {
            // Text PostgreSQL cannot hold (a NUL character, in text or JSON) can only have come
            // from the request's path, query or body: the client's mistake, not an outage.
            pantau_store::StoreError::Refused { code, .. }
                if code == "22021" || code == "22P05" =>
            {
                ApiError::bad_request("text in the request holds a NUL character; remove it")
            }
            _ => ApiError::store(e),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let retry = self.retry_after;
        let mut res = (self.status, Json(&self)).into_response();
        if let Some(s) = retry {
            if let Ok(v) = s.to_string().parse() {
                res.headers_mut().insert(header::RETRY_AFTER, v);
            }
        }
        res
    }
}

/// The body limit layer refuses a request whose `Content-Length` is too large with a plain-text
/// 413 before any handler runs; this gives that answer the API's shape too.
pub async fn body_limit_in_api_shape(res: Response) -> Response {
    let json = res
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if res.status() == StatusCode::PAYLOAD_TOO_LARGE && !json {
        return ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            "the request body is larger than this route takes: 1 MiB, or for a citizen report \
             what the photo limits of [reports] allow",
        )
        .into_response();
    }
    res
}

/// Turns axum's JSON body rejection into our shape, keeping its precise message.
pub fn json_body<T>(
    body: Result<Json<T>, axum::extract::rejection::JsonRejection>,
) -> Result<T, ApiError> {
    body.map(|Json(v)| v).map_err(|e| {
        let mut err = ApiError::bad_request(e.body_text());
        err.status = e.status();
        err
    })
}

/// The same for query strings.
pub fn query<T>(
    q: Result<axum::extract::Query<T>, axum::extract::rejection::QueryRejection>,
) -> Result<T, ApiError> {
    q.map(|axum::extract::Query(v)| v)
        .map_err(|e| ApiError::bad_request(e.body_text()))
}
