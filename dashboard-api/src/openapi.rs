//! The OpenAPI 3.1 document, generated from the handlers' annotations (utoipa), with the event
//! JSON Schema of `events/schema/event-v1.json` added as component `Event`.

use axum::Json;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::{
    agencies, auth, cameras, cap, evidence, fleet, health, history, incidents, live, map, reports,
    snooze,
};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "pantau",
        description = "Camera streams to traffic and incident facts for city command centers. \
            Log in with POST /api/v1/auth/login; browsers then carry the session cookie, programs \
            send `Authorization: Bearer <token>`. Roles: operator (view, acknowledge), dispatcher \
            (plus assign, note, escalate, close), planner (history and export only), admin (all, \
            cameras and users). Citizen apps send reports to POST /api/v1/reports with their \
            integration key instead. Every error is `{code, message, issues?}`."
    ),
    paths(
        health::healthz, health::readyz, health::metrics,
        auth::login, auth::logout, auth::me,
        auth::list_users, auth::create_user, auth::change_user, auth::delete_user,
        cameras::list, cameras::one, cameras::create, cameras::update, cameras::remove,
        fleet::fleet,
        agencies::list,
        snooze::start, snooze::end, snooze::list,
        live::stream, live::frame, live::snapshot,
        incidents::search, incidents::detail, incidents::act, cap::alert, map::geojson,
        history::history_json, history::history_csv, history::speeds_json,
        evidence::key, evidence::status, evidence::video, evidence::export, evidence::keep,
        evidence::save,
        reports::submit, reports::photo, reports::link,
        reports::list_integrations, reports::create_integration, reports::change_integration,
        json,
    ),
    modifiers(&Security),
    security(("session" = []), ("bearer" = [])),
    tags(
        (name = "auth", description = "Log in and out"),
        (name = "users", description = "Users and roles (admin)"),
        (name = "cameras", description = "Cameras, live status, add/change/remove while running"),
        (name = "live", description = "Live events and status (SSE), frames and snapshots"),
        (name = "events", description = "Events search and the dispatch workflow"),
        (name = "history", description = "Traffic history for planners"),
        (name = "evidence", description = "Signed evidence clips of incidents: play, export, keep, save"),
        (name = "reports", description = "Citizen reports from integrations (their own key), \
            their photos, and integrations (admin)"),
        (name = "health", description = "Probes and Prometheus metrics (no login)"),
    )
)]
#[derive(Debug)]
pub struct ApiDoc;

struct Security;

impl Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "session",
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::new(auth::COOKIE))),
        );
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
        components.add_security_scheme(
            "integration_key",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "An integration's key (pantau_ik_...), for POST /api/v1/reports only",
                    ))
                    .build(),
            ),
        );
    }
}

/// The document as JSON, with the event schema added.
pub fn document() -> serde_json::Value {
    let mut doc = serde_json::to_value(ApiDoc::openapi()).unwrap_or_default();
    if let Ok(mut event) =
        serde_json::from_str::<serde_json::Value>(include_str!("../../events/schema/event-v1.json"))
    {
        if let Some(o) = event.as_object_mut() {
            o.remove("$schema");
            o.remove("$id");
        }
        if let Some(schemas) = doc
            .pointer_mut("/components/schemas")
            .and_then(|v| v.as_object_mut())
        {
            schemas.insert("Event".into(), event);
        }
    }
    doc
}

/// This document (no login needed).
#[utoipa::path(get, path = "/api/v1/openapi.json", tag = "health", security(()),
    responses((status = 200, description = "OpenAPI 3.1 JSON")))]
pub async fn json() -> Json<serde_json::Value> {
    Json(document())
}
