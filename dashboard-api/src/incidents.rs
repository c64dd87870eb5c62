//! Events search and the dispatch workflow on alerts.
//!
//! Alerts are events of severity warning or critical. Their dispatch state starts at `new`; an
//! action moves it (acknowledge, assign to a unit, escalate, close) or adds a note, and every
//! action lands in the audit trail with who and when, goes out on MQTT
//! (`{prefix}/{site}/{camera}/incidents`, through the durable outbox) and to live clients.
//! Citizen reports are alerts too; their changes also queue a callback to the report's source
//! ([`crate::reports`]).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::{Path, State};
use axum::Json;
use serde::{Deserialize, Serialize};

use crate::auth::{Permission, Session};
use crate::error::{json_body, query, ApiError};
use crate::live::LiveMessage;
use crate::ApiState;

/// Query parameters of the events search.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct EventQuery {
    /// Start (RFC 3339, inclusive). Default: 24 hours before `to`.
    pub from: Option<String>,
    /// End (RFC 3339, exclusive). Default: now.
    pub to: Option<String>,
    pub camera: Option<String>,
    /// Rule name (line or zone).
    pub rule: Option<String>,
    /// `line_crossing`, `zone_presence` or `camera_status`.
    pub kind: Option<String>,
    /// Comma-separated: `info`, `warning`, `critical`.
    pub severity: Option<String>,
    /// Comma-separated dispatch states (`new`, `acknowledged`, `assigned`, `escalated`,
    /// `closed`); only alerts have one.
    pub state: Option<String>,
    /// Page size, 1 to 500. Default 50.
    pub limit: Option<u32>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// Dispatch state of an alert.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Dispatch {
    /// `new`, `acknowledged`, `assigned`, `escalated` or `closed`.
    pub state: String,
    pub assignee: Option<String>,
    pub escalations: i32,
    /// RFC 3339; absent while `new`.
    pub updated_at: Option<String>,
    pub updated_by: Option<String>,
    /// Agencies the incident was handed over to, in order.
    pub handed_to: Vec<String>,
}

/// One event with its dispatch state (alerts only).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct EventItem {
    /// The event as published on MQTT (schema `events/schema/event-v1.json`).
    #[schema(value_type = Object)]
    pub event: serde_json::Value,
    pub dispatch: Option<Dispatch>,
}

/// A page of events, newest first.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct EventPage {
    pub items: Vec<EventItem>,
    /// Pass as `cursor` for the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

/// Selects event rows with their dispatch columns (read by [`dispatch_of`] from column 4)
/// from schema `sc`.
const SEVERITIES: [&str; 3] = ["info", "warning", "critical"];
const STATES: [&str; 5] = ["new", "acknowledged", "assigned", "escalated", "closed"];

fn list_param(
    name: &str,
    v: &Option<String>,
    allowed: &[&str],
) -> Result<Option<Vec<String>>, ApiError> {
    let Some(v) = v else { return Ok(None) };
    let items: Vec<String> = v.split(',').map(|x| x.trim().to_string()).collect();
    if let Some(bad) = items.iter().find(|x| !allowed.contains(&x.as_str())) {
        return Err(ApiError::bad_request(format!(
            "{name} \"{bad}\" is not one of {}",
            allowed.join(", ")
        )));
    }
    Ok(Some(items))
}

pub(crate) fn parse_time(name: &str, v: &str) -> Result<SystemTime, ApiError> {
    pantau_events::time::parse(v).ok_or_else(|| {
        ApiError::bad_request(format!(
            "{name} \"{v}\" is not a UTC time; write e.g. 2026-11-24T08:00:00Z"
        ))
    })
}

fn encode_cursor(at: SystemTime, id: &str) -> String {
    let micros = at
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros())
        .unwrap_or(0);
    format!("{micros}.{id}")
}

fn decode_cursor(c: &str) -> Result<(SystemTime, String), ApiError> {
    let bad =
        || ApiError::bad_request("cursor is not one this API gave out; start again without it");
    let (micros, id) = c.split_once('.').ok_or_else(bad)?;
    let micros: u64 = micros.parse().map_err(|_| bad())?;
    if id.is_empty() || id.len() > 64 || !id.chars().all(|c| c.is_ascii_alphanumeric()) {
        return Err(bad());
    }
    Ok((UNIX_EPOCH + Duration::from_micros(micros), id.to_string()))
}

fn dispatch_of(row: &pantau_store::EventRow) -> Option<Dispatch> {
    if row.severity == "info" {
        return None;
    }
    Some(match &row.dispatch {
        None => Dispatch {
            state: "new".into(),
            assignee: None,
            escalations: 0,
            updated_at: None,
            updated_by: None,
            handed_to: Vec::new(),
        },
        Some(d) => Dispatch {
            state: d.state.clone(),
            assignee: d.assignee.clone(),
            escalations: d.escalations,
            updated_at: Some(pantau_events::time::format(d.updated_at)),
            updated_by: Some(d.updated_by.clone()),
            handed_to: row.handed_to.clone(),
        },
    })
}

/// Search events by time, camera, rule, kind, severity and dispatch state, newest first, a page
/// at a time (keyset pagination: pages stay stable while new events arrive).
#[utoipa::path(get, path = "/api/v1/events", tag = "events", params(EventQuery),
    responses((status = 200, body = EventPage), (status = 400, body = ApiError),
              (status = 401, body = ApiError), (status = 403, body = ApiError)))]
pub async fn search(
    State(s): State<ApiState>,
    session: Session,
    q: Result<axum::extract::Query<EventQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<EventPage>, ApiError> {
    session.allow(Permission::View)?;
    let q = query(q)?;
    let to = match &q.to {
        Some(v) => parse_time("to", v)?,
        None => SystemTime::now() + Duration::from_secs(60),
    };
    let from = match &q.from {
        Some(v) => parse_time("from", v)?,
        None => to - Duration::from_secs(86_400),
    };
    if to <= from {
        return Err(ApiError::bad_request("to must be after from"));
    }
    let limit = q.limit.unwrap_or(50);
    if !(1..=500).contains(&limit) {
        return Err(ApiError::bad_request("limit: use 1 to 500"));
    }
    let severity = list_param("severity", &q.severity, &SEVERITIES)?;
    let state = list_param("state", &q.state, &STATES)?;
    if let Some(k) = &q.kind {
        if serde_json::from_value::<pantau_events::EventKind>(k.as_str().into()).is_err() {
            return Err(ApiError::bad_request(format!(
                "kind \"{k}\" is not an event kind; use one of the `kind` values of the event \
                 schema, e.g. line_crossing, zone_presence, camera_status, speeding, wrong_way, \
                 stopped_vehicle, camera_health"
            )));
        }
    }
    let before = match &q.cursor {
        Some(c) => Some(decode_cursor(c)?),
        None => None,
    };
    let rows = s
        .store()
        .await?
        .search_events(&pantau_store::EventSearch {
            from: Some(from),
            to: Some(to),
            camera: q.camera.clone(),
            rule: q.rule.clone(),
            kind: q.kind.clone(),
            severity,
            state,
            before,
            limit: i64::from(limit) + 1,
            visible: s.scope(&session).await.visible(),
        })
        .await?;
    let more = rows.len() > limit as usize;
    let mut items = Vec::with_capacity(rows.len().min(limit as usize));
    let mut last = None;
    for row in rows.into_iter().take(limit as usize) {
        last = Some(encode_cursor(row.at, &row.id));
        items.push(EventItem {
            dispatch: dispatch_of(&row),
            event: row.payload,
        });
    }
    Ok(Json(EventPage {
        items,
        next_cursor: if more { last } else { None },
    }))
}

/// One entry of the audit trail.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AuditEntry {
    /// RFC 3339.
    pub at: String,
    pub actor: String,
    pub action: String,
    #[schema(value_type = Object)]
    pub detail: serde_json::Value,
}

/// An event with its dispatch state and audit trail.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct EventDetail {
    #[schema(value_type = Object)]
    pub event: serde_json::Value,
    pub dispatch: Option<Dispatch>,
    pub audit: Vec<AuditEntry>,
    /// Other events of the same incident (e.g. the zone `end`), oldest first.
    #[schema(value_type = Vec<Object>)]
    pub related: Vec<serde_json::Value>,
    /// Events an operator linked to this one as the same incident (a citizen report and the
    /// camera alert), oldest link first.
    pub links: Vec<crate::reports::Link>,
}

/// One event, its dispatch state, audit trail and related events.
#[utoipa::path(get, path = "/api/v1/events/{id}", tag = "events",
    params(("id" = String, Path, description = "Event id")),
    responses((status = 200, body = EventDetail), (status = 404, body = ApiError)))]
pub async fn detail(
    State(s): State<ApiState>,
    session: Session,
    Path(id): Path<String>,
) -> Result<Json<EventDetail>, ApiError> {
    session.allow(Permission::View)?;
    let store = s.store().await?;
    let row = visible_event(&s, &store, &session, &id).await?;
    let audit = store
        .audit_trail(&format!("event:{id}"))
        .await?
        .into_iter()
        .map(|r| AuditEntry {
            at: pantau_events::time::format(r.at),
            actor: r.actor,
            action: r.action,
            detail: r.detail,
        })
        .collect();
    let event = &row.payload;
    let related = match event.get("incident").and_then(|v| v.as_str()) {
        Some(key) => {
            let camera = event
                .get("camera")
                .and_then(|v| v.as_str())
                .unwrap_or_default();
            store.incident_events(camera, key, row.at, &id).await?
        }
        None => Vec::new(),
    };
    let links = store
        .links_of(&id)
        .await?
        .into_iter()
        .map(crate::reports::Link::of)
        .collect();
    Ok(Json(EventDetail {
        dispatch: dispatch_of(&row),
        event: row.payload.clone(),
        audit,
        related,
        links,
    }))
}

/// The event `id` if `session` sees it; another agency's event is answered as if there were
/// none (404), so its id tells nothing.
pub(crate) async fn visible_event(
    s: &ApiState,
    store: &pantau_store::Store,
    session: &Session,
    id: &str,
) -> Result<pantau_store::EventRow, ApiError> {
    let row = store.event(id).await?.ok_or_else(|| event_not_found(id))?;
    let camera = row
        .payload
        .get("camera")
        .and_then(|v| v.as_str())
        .unwrap_or_default();
    if !s.scope(session).await.sees_event(camera, &row.handed_to) {
        return Err(event_not_found(id));
    }
    Ok(row)
}

pub(crate) fn event_not_found(id: &str) -> ApiError {
    ApiError::not_found(
        "event_not_found",
        format!(
            "no event \"{id}\" (events reach the database within a second or two of being seen)"
        ),
    )
}

/// A dispatch action.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(tag = "action", rename_all = "snake_case", deny_unknown_fields)]
pub enum Action {
    /// Seen; someone is on it (operator, dispatcher, admin).
    Acknowledge { note: Option<String> },
    /// Send a unit (dispatcher, admin).
    Assign { unit: String, note: Option<String> },
    /// A note for the record (dispatcher, admin).
    Note { note: String },
    /// Needs more attention or a higher level (dispatcher, admin).
    Escalate { note: Option<String> },
    /// Done (dispatcher, admin); `note` says how it ended.
    Close { note: Option<String> },
    /// Hand it over to another agency of `[agencies]` (police <-> city hall; dispatcher,
    /// admin) with a note for them: it appears in that agency's feed, its state stays.
    Handover { agency: String, note: String },
}

impl Action {
    fn name(&self) -> &'static str {
        match self {
            Action::Acknowledge { .. } => "acknowledge",
            Action::Assign { .. } => "assign",
            Action::Note { .. } => "note",
            Action::Escalate { .. } => "escalate",
            Action::Close { .. } => "close",
            Action::Handover { .. } => "handover",
        }
    }

    fn note(&self) -> Option<&str> {
        match self {
            Action::Acknowledge { note }
            | Action::Assign { note, .. }
            | Action::Escalate { note }
            | Action::Close { note } => note.as_deref(),
            Action::Note { note } | Action::Handover { note, .. } => Some(note),
        }
    }
}

pub use pantau_events::IncidentChange;

/// Act on an alert: acknowledge, assign, note, escalate or close.
#[utoipa::path(post, path = "/api/v1/events/{id}/actions", tag = "events",
    params(("id" = String, Path, description = "Event id of the alert")),
    request_body(content = Action, description = "e.g. {\"action\": \"assign\", \"unit\": \"Patrol 7\"}"),
    responses((status = 200, body = IncidentChange), (status = 400, body = ApiError),
              (status = 403, body = ApiError), (status = 404, body = ApiError),
              (status = 409, description = "Not an alert, or not possible in its state", body = ApiError)))]
pub async fn act(
    State(s): State<ApiState>,
    session: Session,
    Path(id): Path<String>,
    body: Result<Json<Action>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<IncidentChange>, ApiError> {
    let action = json_body(body)?;
    session.allow(match action {
        Action::Acknowledge { .. } => Permission::Acknowledge,
        _ => Permission::Dispatch,
    })?;
    // PostgreSQL text cannot hold NUL: refused here, not by the database as a 503.
    if let Some(n) = action.note() {
        if n.trim().is_empty() || n.chars().count() > 2000 || n.contains('\0') {
            return Err(ApiError::bad_request(
                "note: write 1 to 2000 characters (no NUL)",
            ));
        }
    }
    if let Action::Assign { unit, .. } = &action {
        if unit.trim().is_empty() || unit.chars().count() > 100 || unit.contains('\0') {
            return Err(ApiError::bad_request(
                "unit: name the unit in 1 to 100 characters",
            ));
        }
    }
    let handover = match &action {
        Action::Handover { agency, .. } => {
            crate::agencies::check_agencies(&s, "agency", std::slice::from_ref(agency))?;
            Some(agency.as_str())
        }
        _ => None,
    };
    let store = s.store().await?;
    let ev = visible_event(&s, &store, &session, &id).await?;
    if ev.severity == "info" {
        return Err(ApiError::conflict(format!(
            "event \"{id}\" is information, not an alert; dispatch works on warning and critical events"
        )));
    }
    let text = |k: &str| {
        ev.payload
            .get(k)
            .and_then(|v| v.as_str())
            .unwrap_or_default()
            .to_string()
    };
    let (camera, site) = (text("camera"), text("site"));
    // The row is created if missing, then changed by one statement that also writes the audit
    // entry and the MQTT message, and only applies if nobody changed the incident in between
    // (optimistic concurrency).
    let (state, assignee, escalations) = store
        .open_incident(&id, &camera, ev.at, &session.user)
        .await?;
    let (new_state, new_assignee, new_escalations) = match &action {
        Action::Note { .. } => (state.clone(), assignee.clone(), escalations),
        _ if state == "closed" => {
            return Err(ApiError::conflict(format!(
                "incident \"{id}\" is closed; only notes can be added"
            )))
        }
        Action::Acknowledge { .. } if state != "new" && state != "escalated" => {
            return Err(ApiError::conflict(format!(
                "incident \"{id}\" is already {state}"
            )))
        }
        Action::Acknowledge { .. } => ("acknowledged".to_string(), assignee.clone(), escalations),
        Action::Assign { unit, .. } => (
            "assigned".to_string(),
            Some(unit.trim().to_string()),
            escalations,
        ),
        Action::Escalate { .. } => ("escalated".to_string(), assignee.clone(), escalations + 1),
        Action::Close { .. } => ("closed".to_string(), assignee.clone(), escalations),
        Action::Handover { .. } => (state.clone(), assignee.clone(), escalations),
    };
    let detail = serde_json::json!({
        "from": state, "to": new_state, "assignee": new_assignee, "note": action.note(),
        "agency": handover,
    });
    let change = IncidentChange {
        event_id: id.clone(),
        camera,
        site,
        action: action.name().to_string(),
        state: new_state.clone(),
        assignee: new_assignee.clone(),
        escalations: new_escalations,
        note: action.note().map(str::to_string),
        agency: handover.map(str::to_string),
        node: Some(s.settings.topics.node.clone()),
        actor: session.user.clone(),
        at: pantau_events::time::format(SystemTime::now()),
    };
    let message = serde_json::to_value(&change).unwrap_or_default();
    // A citizen report's source hears of it (queued in the same statement as the change).
    let callback = (ev.payload.get("kind").and_then(|k| k.as_str()) == Some("citizen_report"))
        .then(|| crate::reports::callback_for(action.name(), &new_state, action.note(), &change.at))
        .flatten();
    // The change, its audit entry and its MQTT message in one statement: all or nothing. The
    // message moves to the outbox below; after a crash in between, the node's next start
    // moves it ([`relay_messages`]).
    let action_name = format!("incident.{}", action.name());
    let pending = store
        .apply_dispatch(&pantau_store::DispatchChange {
            event_id: &id,
            actor: &session.user,
            from: (&state, escalations),
            state: &new_state,
            assignee: new_assignee.as_deref(),
            escalations: new_escalations,
            action: &action_name,
            detail: &detail,
            message: &message,
            callback: callback.as_ref(),
            handover,
        })
        .await?;
    let Some(pending) = pending else {
        return Err(ApiError::conflict(format!(
            "incident \"{id}\" was changed by someone else just now; reload and try again"
        )));
    };
    tracing::info!(user = %session.user, event = %change.event_id, action = %change.action, state = %change.state, "incident action");
    let json = serde_json::to_string(&change).unwrap_or_default();
    if let Some(outbox) = &s.outbox {
        let m = pantau_events::Message::incident(&s.settings.topics, &change);
        match outbox.append(&[m]).await {
            Ok(_) => store.message_sent(pending).await?,
            Err(e) => tracing::error!(
                event = %change.event_id,
                "incident change kept in the database for the next start, not queued for MQTT: {e}"
            ),
        }
    }
    let mut live = LiveMessage::new("incident", &change.camera, None, json);
    live.handed_to = ev.handed_to.clone();
    live.handed_to.extend(handover.map(str::to_string));
    s.live.publish(live);
    Ok(Json(change))
}

/// Moves dispatch messages left in the database by a crash (stored with their action, never
/// appended to the outbox) into the outbox; returns how many.
pub async fn relay_messages(
    store: &pantau_store::Store,
    outbox: &pantau_sinks::outbox::Outbox,
    topics: &pantau_events::Topics,
) -> Result<usize, ApiError> {
    let rows = store.pending_messages().await?;
    let mut moved = 0;
    for (id, payload) in rows {
        match serde_json::from_value::<IncidentChange>(payload) {
            Ok(change) => {
                let m = pantau_events::Message::incident(topics, &change);
                outbox
                    .append(&[m])
                    .await
                    .map_err(|e| ApiError::store(format!("outbox: {e}")))?;
                moved += 1;
            }
            Err(e) => tracing::error!(
                id,
                "a stored dispatch message is unreadable and was removed: {e}"
            ),
        }
        store.message_sent(id).await?;
    }
    Ok(moved)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_reject_garbage() {
        let at = UNIX_EPOCH + Duration::from_micros(1_764_000_000_123_456);
        let c = encode_cursor(at, "01KABC");
        assert_eq!(
            decode_cursor(&c).expect("valid"),
            (at, "01KABC".to_string())
        );
        for bad in ["", "x.y", "12", "12.", "12.a'b", "-1.abc"] {
            assert!(decode_cursor(bad).is_err(), "{bad}");
        }
    }
}
