//! Snoozing a rule on a camera: an operator who has seen enough of one alert (a market day on
//! the crossing) quiets it for a while. The alerts are still stored and published, marked
//! `details.snoozed_until`, so nothing is lost and dispatch systems can decide for themselves;
//! the wall does not ring for them. A snooze ends by itself; starting and ending one is in the
//! audit trail.

use std::collections::HashMap;
use std::sync::RwLock;
use std::time::{Duration, SystemTime};

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};

use crate::auth::{audit, Permission, Session};
use crate::error::{json_body, ApiError};
use crate::ApiState;
use pantau_store::SnoozeRow;

/// Snoozes running now, shared by the API (which sets them) and the node's analysis (which
/// marks the alerts they cover).
#[derive(Debug, Default)]
pub struct Snoozes {
    running: RwLock<HashMap<(String, String), SnoozeRow>>,
}

impl Snoozes {
    /// Until when `rule` is snoozed on `camera` at `at`, if it is.
    pub fn until(&self, camera: &str, rule: &str, at: SystemTime) -> Option<SystemTime> {
        let running = self.running.read().unwrap_or_else(|p| p.into_inner());
        let s = running.get(&(camera.to_string(), rule.to_string()))?;
        (s.until > at).then_some(s.until)
    }

    /// The snoozes of one camera still running.
    pub fn of_camera(&self, camera: &str) -> Vec<SnoozeView> {
        let now = SystemTime::now();
        let running = self.running.read().unwrap_or_else(|p| p.into_inner());
        let mut v: Vec<SnoozeView> = running
            .values()
            .filter(|s| s.camera == camera && s.until > now)
            .map(SnoozeView::from)
            .collect();
        v.sort_by(|a, b| a.rule.cmp(&b.rule));
        v
    }

    fn all(&self) -> Vec<SnoozeView> {
        let now = SystemTime::now();
        let mut running = self.running.write().unwrap_or_else(|p| p.into_inner());
        running.retain(|_, s| s.until > now);
        let mut v: Vec<SnoozeView> = running.values().map(SnoozeView::from).collect();
        v.sort_by(|a, b| (&a.camera, &a.rule).cmp(&(&b.camera, &b.rule)));
        v
    }

    fn set(&self, s: SnoozeRow) {
        self.running
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert((s.camera.clone(), s.rule.clone()), s);
    }

    fn clear(&self, camera: &str, rule: &str) -> bool {
        self.running
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&(camera.to_string(), rule.to_string()))
            .is_some()
    }

    /// Takes the snoozes the store holds (at start).
    pub fn load(&self, rows: Vec<SnoozeRow>) {
        for r in rows {
            self.set(r);
        }
    }
}

impl From<&SnoozeRow> for SnoozeView {
    fn from(r: &SnoozeRow) -> Self {
        Self {
            camera: r.camera.clone(),
            rule: r.rule.clone(),
            until: pantau_events::time::format(r.until),
            by: r.by.clone(),
            note: r.note.clone(),
        }
    }
}

/// A rule snoozed on a camera.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct SnoozeView {
    pub camera: String,
    /// The line, zone or lane (or `camera` for camera-wide rules).
    pub rule: String,
    /// RFC 3339; the snooze ends by itself then.
    pub until: String,
    /// Who snoozed it.
    pub by: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// A snooze to start.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SnoozeRequest {
    /// The line, zone or lane whose alerts to quiet (`camera` for camera-wide rules).
    pub rule: String,
    /// For how long, 1 to 1440 minutes.
    pub minutes: u32,
    /// Why (shown on the wall and kept in the audit trail), at most 500 characters.
    #[serde(default)]
    pub note: Option<String>,
}

/// Snooze a rule's alerts on a camera for a while (operator, dispatcher, admin).
#[utoipa::path(post, path = "/api/v1/cameras/{id}/snoozes", tag = "cameras",
    params(("id" = String, Path, description = "Camera id")),
    request_body = SnoozeRequest,
    responses((status = 201, body = SnoozeView), (status = 400, body = ApiError),
              (status = 403, body = ApiError), (status = 404, body = ApiError)))]
pub async fn start(
    State(s): State<ApiState>,
    session: Session,
    Path(camera): Path<String>,
    body: Result<Json<SnoozeRequest>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, ApiError> {
    session.allow(Permission::Acknowledge)?;
    let req = json_body(body)?;
    if !(1..=1440).contains(&req.minutes) {
        return Err(ApiError::bad_request(
            "minutes: snooze for 1 to 1440 minutes (a day at most)",
        ));
    }
    if let Some(n) = &req.note {
        if n.chars().count() > 500 || n.contains('\0') {
            return Err(ApiError::bad_request(
                "note: at most 500 characters (no NUL)",
            ));
        }
    }
    if !s.scope(&session).await.sees_camera(&camera) {
        return Err(crate::agencies::camera_not_found(&camera));
    }
    let rules = rules_of(&s, &camera).await?;
    if req.rule != "camera" && !rules.contains(&req.rule) {
        return Err(ApiError::bad_request(format!(
            "rule \"{}\" is not one of camera \"{camera}\"'s lines, zones or lanes ({}); \
             `camera` snoozes the camera-wide rules",
            req.rule,
            rules.join(", ")
        )));
    }
    let until = SystemTime::now() + Duration::from_secs(60 * u64::from(req.minutes));
    let store = s.store().await?;
    store
        .snooze(
            &camera,
            &req.rule,
            until,
            &session.user,
            req.note.as_deref(),
        )
        .await?;
    audit(
        &store,
        &session.user,
        "snooze",
        &format!("camera:{camera}"),
        serde_json::json!({ "rule": req.rule, "minutes": req.minutes, "note": req.note }),
    )
    .await?;
    let row = SnoozeRow {
        camera,
        rule: req.rule,
        until,
        by: session.user,
        note: req.note,
    };
    let view = SnoozeView::from(&row);
    s.snoozes.set(row);
    Ok((StatusCode::CREATED, Json(view)).into_response())
}

/// End a snooze early (operator, dispatcher, admin).
#[utoipa::path(delete, path = "/api/v1/cameras/{id}/snoozes/{rule}", tag = "cameras",
    params(("id" = String, Path, description = "Camera id"), ("rule" = String, Path, description = "Rule")),
    responses((status = 204), (status = 403, body = ApiError), (status = 404, body = ApiError)))]
pub async fn end(
    State(s): State<ApiState>,
    session: Session,
    Path((camera, rule)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    session.allow(Permission::Acknowledge)?;
    if !s.scope(&session).await.sees_camera(&camera) {
        return Err(crate::agencies::camera_not_found(&camera));
    }
    let store = s.store().await?;
    let ended = store.unsnooze(&camera, &rule).await?;
    let cleared = s.snoozes.clear(&camera, &rule);
    if !ended && !cleared {
        return Err(ApiError::not_found(
            "snooze_not_found",
            format!("rule \"{rule}\" is not snoozed on camera \"{camera}\""),
        ));
    }
    audit(
        &store,
        &session.user,
        "snooze.end",
        &format!("camera:{camera}"),
        serde_json::json!({ "rule": rule }),
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Snoozes running now.
#[utoipa::path(get, path = "/api/v1/snoozes", tag = "cameras",
    responses((status = 200, body = [SnoozeView]), (status = 403, body = ApiError)))]
pub async fn list(
    State(s): State<ApiState>,
    session: Session,
) -> Result<Json<Vec<SnoozeView>>, ApiError> {
    session.allow(Permission::View)?;
    let scope = s.scope(&session).await;
    let mut all = s.snoozes.all();
    all.retain(|z| scope.sees_camera(&z.camera));
    Ok(Json(all))
}

/// The rule names of a camera (lines, zones, lanes), or 404.
async fn rules_of(s: &ApiState, camera: &str) -> Result<Vec<String>, ApiError> {
    let config = match &s.cameras {
        Some(r) => r.get(camera).await,
        None => None,
    };
    match config {
        Some(c) => Ok(c
            .lines
            .iter()
            .map(|l| l.name.clone())
            .chain(c.zones.iter().map(|z| z.name.clone()))
            .chain(c.lanes.iter().map(|l| l.name.clone()))
            .collect()),
        None if s.feed.status(camera).is_some() => Ok(Vec::new()),
        None => Err(ApiError::not_found(
            "camera_not_found",
            format!("no camera \"{camera}\"; GET /api/v1/cameras lists them"),
        )),
    }
}
