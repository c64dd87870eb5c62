//! An alert as CAP 1.2 XML (`GET /api/v1/events/{id}/cap`): the same message the node
//! publishes on MQTT `<prefix>/<site>/<camera>/cap` ([`pantau_events::cap`]), built from the
//! stored event, so a system that missed it can fetch it.

use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use pantau_events::cap::{self, Context, Place, Reference};
use pantau_events::{Event, Lifecycle};

use crate::auth::{Permission, Session};
use crate::error::ApiError;
use crate::ApiState;

/// One alert as CAP 1.2 XML: `Alert` for a `new` or `single` event, `Update` for an `update`
/// and `Cancel` for the `end` of an alerted incident (updates and cancels name the incident's
/// first alert in `references`). Scope `Restricted`; the area is a circle of 0.2 km around the
/// camera when its calibration gives its position.
#[utoipa::path(get, path = "/api/v1/events/{id}/cap", tag = "events",
    params(("id" = String, Path, description = "Event id")),
    responses((status = 200, description = "CAP 1.2 alert (OASIS schema, events/schema/cap-1.2.xsd)",
               content_type = "application/cap+xml", body = String),
              (status = 401, body = ApiError), (status = 403, body = ApiError),
              (status = 404, body = ApiError),
              (status = 422, description = "The event is information, not an alert", body = ApiError)))]
pub async fn alert(
    State(s): State<ApiState>,
    session: Session,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    session.allow(Permission::View)?;
    let store = s.store().await?;
    let row = crate::incidents::visible_event(&s, &store, &session, &id).await?;
    let event: Event = serde_json::from_value(row.payload.clone()).map_err(|e| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "unreadable_event",
            format!("event \"{id}\" is stored in a form this pantau cannot read: {e}"),
        )
    })?;
    // Updates and ends refer to the incident's first alert.
    let first = match (&event.incident, event.lifecycle) {
        (Some(key), Lifecycle::Update | Lifecycle::End) => store
            .incident_events(&event.camera, key, row.at, &id)
            .await?
            .into_iter()
            .filter_map(|v| serde_json::from_value::<Event>(v).ok())
            .find(|e| {
                cap::is_alert(e) && matches!(e.lifecycle, Lifecycle::New | Lifecycle::Single)
            }),
        _ => None,
    };
    let Some(msg) = cap::msg_type(&event, first.is_some()) else {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "not_an_alert",
            format!(
                "event \"{id}\" is information (severity {}), not an alert: CAP covers warning \
                 and critical events and the end of an incident that was alerted",
                row.severity
            ),
        ));
    };
    let config = match &s.cameras {
        Some(r) => r.get(&event.camera).await,
        None => None,
    };
    let name = config
        .as_ref()
        .and_then(|c| c.name.clone())
        .or_else(|| s.feed.status(&event.camera).map(|st| st.name));
    let place = config
        .as_ref()
        .and_then(|c| c.calibration.as_ref())
        .and_then(|c| {
            Some(Place {
                latitude: c.latitude?,
                longitude: c.longitude?,
            })
        });
    let reference = first.map(|f| Reference {
        identifier: f.id.to_string(),
        sent: f.captured_at,
    });
    let xml = cap::alert(
        &event,
        msg,
        &Context {
            node: &s.settings.topics.node,
            camera_name: name.as_deref(),
            place,
            reference: reference.as_ref(),
        },
    );
    Ok(([(header::CONTENT_TYPE, cap::CONTENT_TYPE)], xml).into_response())
}
