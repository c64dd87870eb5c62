//! The web console: static files compiled into the binary (no separate server, nothing fetched
//! from elsewhere but the map tiles of `api.map_tiles`, when configured). A single page
//! (`console/index.html`, `app.js`, `app.css`) with the pages login, wall, incidents, map,
//! planner and admin, in Indonesian and English; `/api/docs` browses the OpenAPI document.

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::Router;

use crate::ApiState;

const INDEX: &str = include_str!("../console/index.html");
const APP_JS: &str = include_str!("../console/app.js");
const APP_CSS: &str = include_str!("../console/app.css");
const DOCS: &str = include_str!("../console/docs.html");
const DOCS_JS: &str = include_str!("../console/docs.js");
const ICON: &str = include_str!("../console/icon.svg");

/// Pages may load only what pantau serves, and images from the map tiles' origin when
/// `api.map_tiles` is set.
fn csp(s: &ApiState) -> String {
    let tiles = s
        .settings
        .map_tiles
        .as_deref()
        .and_then(|t| pantau_config::outputs::tile_origin(t).ok())
        .map(|origin| format!(" {origin}"))
        .unwrap_or_default();
    format!(
        "default-src 'self'; img-src 'self' data: blob:{tiles}; style-src 'self'; \
         script-src 'self'; connect-src 'self'; frame-ancestors 'none'"
    )
}

fn asset(s: &ApiState, body: &'static str, content_type: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type.to_string()),
            (header::CONTENT_SECURITY_POLICY, csp(s)),
            (header::CACHE_CONTROL, "no-cache".to_string()),
        ],
        body,
    )
        .into_response()
}

pub fn routes() -> Router<ApiState> {
    Router::new()
        .route("/", get(|| async { Redirect::to("/console/") }))
        .route(
            "/console/",
            get(|State(s): State<ApiState>| async move { asset(&s, INDEX, "text/html; charset=utf-8") }),
        )
        .route(
            "/console/app.js",
            get(|State(s): State<ApiState>| async move { asset(&s, APP_JS, "text/javascript; charset=utf-8") }),
        )
        .route(
            "/console/app.css",
            get(|State(s): State<ApiState>| async move { asset(&s, APP_CSS, "text/css; charset=utf-8") }),
        )
        .route(
            "/console/icon.svg",
            get(|State(s): State<ApiState>| async move { asset(&s, ICON, "image/svg+xml") }),
        )
        .route(
            "/favicon.ico",
            get(|| async { Redirect::permanent("/console/icon.svg") }),
        )
        .route(
            "/console/docs.js",
            get(|State(s): State<ApiState>| async move { asset(&s, DOCS_JS, "text/javascript; charset=utf-8") }),
        )
        .route(
            "/api/docs",
            get(|State(s): State<ApiState>| async move { asset(&s, DOCS, "text/html; charset=utf-8") }),
        )
}
