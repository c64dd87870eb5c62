//! The web console: static files compiled into the binary (no separate server, nothing fetched
//! from elsewhere). A single page (`console/index.html`, `app.js`, `app.css`) with the pages
//! login, wall, incident, planner and admin, in Indonesian and English; `/api/docs` browses the
//! OpenAPI document.

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

/// Pages may load only what pantau serves.
const CSP: &str = "default-src 'self'; img-src 'self' data: blob:; style-src 'self'; \
                   script-src 'self'; connect-src 'self'; frame-ancestors 'none'";

fn asset(body: &'static str, content_type: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CONTENT_SECURITY_POLICY, CSP),
            (header::CACHE_CONTROL, "no-cache"),
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
            get(|| async { asset(INDEX, "text/html; charset=utf-8") }),
        )
        .route(
            "/console/app.js",
            get(|| async { asset(APP_JS, "text/javascript; charset=utf-8") }),
        )
        .route(
            "/console/app.css",
            get(|| async { asset(APP_CSS, "text/css; charset=utf-8") }),
        )
        .route(
            "/console/icon.svg",
            get(|| async { asset(ICON, "image/svg+xml") }),
        )
        .route(
            "/favicon.ico",
            get(|| async { Redirect::permanent("/console/icon.svg") }),
        )
        .route(
            "/console/docs.js",
            get(|| async { asset(DOCS_JS, "text/javascript; charset=utf-8") }),
        )
        .route(
            "/api/docs",
            get(|| async { asset(DOCS, "text/html; charset=utf-8") }),
        )
}
