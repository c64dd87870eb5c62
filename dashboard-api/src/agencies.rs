//! Agencies: what a user sees when several command centers share one fleet.
//!
//! `[agencies]` names the agencies and the camera groups each owns; a camera belongs to one
//! group (`cameras[].group`); a user belongs to agencies (none: every camera, as before
//! agencies, e.g. the fleet's own administrators). A user of agencies sees the cameras of their
//! groups, the events, incidents, clips, snapshots and history of those cameras, incidents
//! handed over to one of its agencies, and citizen reports no camera sees. Everything else is
//! answered as if it did not exist (404), so ids of other agencies' cameras and events leak
//! nothing.

use std::collections::HashSet;

use axum::extract::State;
use axum::Json;
use serde::Serialize;

use crate::auth::{Permission, Session};
use crate::error::ApiError;
use crate::ApiState;

/// The pseudo-camera of citizen reports no camera sees: every agency sees them.
pub const REPORTS_CAMERA: &str = "reports";

/// What one session may see, resolved at the time of the request.
#[derive(Debug, Clone)]
pub struct Scope {
    /// `None`: everything. Otherwise the cameras of the user's agencies' groups.
    cameras: Option<HashSet<String>>,
    /// The user's agencies (incidents handed over to one of them are seen too).
    agencies: Vec<String>,
}

impl Scope {
    /// Everything: no agencies configured, or a user of none.
    pub fn all() -> Self {
        Self {
            cameras: None,
            agencies: Vec::new(),
        }
    }

    /// True when the user sees every camera.
    pub fn is_all(&self) -> bool {
        self.cameras.is_none()
    }

    pub fn sees_camera(&self, id: &str) -> bool {
        self.cameras
            .as_ref()
            .is_none_or(|c| c.contains(id) || id == REPORTS_CAMERA)
    }

    /// An event of `camera` whose incident was handed over to `handed_to`.
    pub fn sees_event(&self, camera: &str, handed_to: &[String]) -> bool {
        self.sees_camera(camera) || handed_to.iter().any(|a| self.agencies.contains(a))
    }

    /// The cameras seen, sorted (with the reports pseudo-camera); `None`: all.
    pub fn cameras(&self) -> Option<Vec<String>> {
        self.cameras.as_ref().map(|c| {
            let mut v: Vec<String> = c.iter().cloned().collect();
            v.push(REPORTS_CAMERA.to_string());
            v.sort();
            v
        })
    }

    /// The store's form, for searches; `None`: everything.
    pub fn visible(&self) -> Option<pantau_store::Visible> {
        self.cameras().map(|cameras| pantau_store::Visible {
            cameras,
            agencies: self.agencies.clone(),
        })
    }

    /// May the user put a camera into `group` (a group one of its agencies owns)?
    pub fn owns_group(&self, s: &ApiState, group: &str) -> bool {
        self.is_all()
            || self.agencies.iter().any(|a| {
                s.settings
                    .agencies
                    .get(a)
                    .is_some_and(|c| c.groups.iter().any(|g| g == group))
            })
    }
}

impl ApiState {
    /// What `session` sees now. The cameras come from the camera registry (in a fleet, the
    /// fleet's cameras in the database); without one an agency's user sees no camera.
    pub async fn scope(&self, session: &Session) -> Scope {
        if self.settings.agencies.is_empty() || session.agencies.is_empty() {
            return Scope::all();
        }
        let groups: HashSet<&str> = session
            .agencies
            .iter()
            .filter_map(|a| self.settings.agencies.get(a))
            .flat_map(|a| a.groups.iter().map(String::as_str))
            .collect();
        let all = match &self.cameras {
            Some(r) => r.all().await,
            None => Vec::new(),
        };
        Scope {
            cameras: Some(
                all.into_iter()
                    .filter(|c| c.group.as_deref().is_some_and(|g| groups.contains(g)))
                    .map(|c| c.id)
                    .collect(),
            ),
            agencies: session.agencies.clone(),
        }
    }
}

/// The answer for a camera the user does not see: the same as for one that does not exist.
pub fn camera_not_found(id: &str) -> ApiError {
    ApiError::not_found("camera_not_found", format!("no camera \"{id}\""))
}

/// Checks that every agency named exists in `[agencies]` (422 naming the ones there are).
pub fn check_agencies(s: &ApiState, field: &str, agencies: &[String]) -> Result<(), ApiError> {
    if let Some(bad) = agencies
        .iter()
        .find(|a| !s.settings.agencies.contains_key(a.as_str()))
    {
        let known: Vec<&str> = s.settings.agencies.keys().map(String::as_str).collect();
        return Err(ApiError::new(
            axum::http::StatusCode::UNPROCESSABLE_ENTITY,
            "unknown_agency",
            if known.is_empty() {
                format!(
                    "{field}: no agencies are configured ([agencies]), so \"{bad}\" cannot be one"
                )
            } else {
                format!(
                    "{field}: \"{bad}\" is not an agency; use one of: {}",
                    known.join(", ")
                )
            },
        ));
    }
    Ok(())
}

/// One agency as the console shows it (for handing incidents over).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AgencyView {
    pub id: String,
    /// Shown to operators; the id when the config gives none.
    pub name: String,
    /// The camera groups it owns.
    pub groups: Vec<String>,
    /// True when the logged-in user belongs to it.
    pub mine: bool,
}

/// The agencies of the fleet (`[agencies]`); empty when there are none.
#[utoipa::path(get, path = "/api/v1/agencies", tag = "users",
    responses((status = 200, body = [AgencyView]), (status = 401, body = ApiError)))]
pub async fn list(
    State(s): State<ApiState>,
    session: Session,
) -> Result<Json<Vec<AgencyView>>, ApiError> {
    session.allow(Permission::View)?;
    Ok(Json(
        s.settings
            .agencies
            .iter()
            .map(|(id, a)| AgencyView {
                id: id.clone(),
                name: a.name.clone().unwrap_or_else(|| id.clone()),
                groups: a.groups.clone(),
                mine: session.agencies.contains(id),
            })
            .collect(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_scope_sees_its_cameras_reports_and_what_was_handed_to_it() {
        let s = Scope {
            cameras: Some(["simpang".to_string()].into_iter().collect()),
            agencies: vec!["polres".into()],
        };
        assert!(s.sees_camera("simpang"));
        assert!(s.sees_camera(REPORTS_CAMERA));
        assert!(!s.sees_camera("balai-kota"));
        assert!(s.sees_event("balai-kota", &["pemkot".into(), "polres".into()]));
        assert!(!s.sees_event("balai-kota", &["pemkot".into()]));
        assert_eq!(
            s.cameras(),
            Some(vec!["reports".to_string(), "simpang".to_string()])
        );
        assert!(Scope::all().sees_camera("anything"));
        assert!(Scope::all().visible().is_none());
    }
}
