//! `GET /api/v1/fleet`: the nodes of the fleet, their health and the cameras each runs. On a
//! node outside a fleet, the node itself with its cameras.

use std::collections::BTreeMap;
use std::time::SystemTime;

use axum::extract::State;
use axum::Json;
use serde::Serialize;

use crate::auth::{Permission, Session};
use crate::error::ApiError;
use crate::ApiState;

/// One node of the fleet.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct FleetNode {
    /// `node.name` of the node.
    pub id: String,
    /// `fleet.groups`: cameras with `run_on` run only on nodes of one of them.
    pub groups: Vec<String>,
    /// `fleet.capacity`, the most cameras it takes (0: no limit).
    pub capacity: i32,
    /// Where its API is (`fleet.api_url`), when it said.
    pub api_url: Option<String>,
    /// RFC 3339.
    pub started_at: Option<String>,
    /// Its last heartbeat, RFC 3339 (the database's clock).
    pub last_seen: Option<String>,
    /// Heard from within a lease: it holds cameras. A node that is not is dead, hung or cut
    /// from the database, and its cameras run elsewhere.
    pub healthy: bool,
    /// What it said about itself at its last heartbeat (cameras, version, messages fenced).
    #[schema(value_type = Object)]
    pub health: serde_json::Value,
    /// The cameras it runs now.
    pub cameras: Vec<String>,
}

/// The whole fleet.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct FleetView {
    /// False when this node is not part of a fleet (`[fleet] enabled = false`): `nodes` is
    /// then this node alone.
    pub fleet: bool,
    /// The node that answered.
    pub node: String,
    /// `fleet.lease_s`.
    pub lease_s: Option<f64>,
    pub nodes: Vec<FleetNode>,
    /// Cameras of the fleet that run on no node now (being handed over, no node may run them,
    /// or every node is full).
    pub unassigned: Vec<String>,
}

fn rfc3339(t: SystemTime) -> String {
    pantau_events::time::format(t)
}

/// The fleet's nodes, their health and their cameras.
#[utoipa::path(get, path = "/api/v1/fleet", tag = "cameras",
    responses((status = 200, body = FleetView), (status = 401, body = ApiError),
              (status = 503, description = "The database does not answer", body = ApiError)))]
pub async fn fleet(
    State(s): State<ApiState>,
    session: Session,
) -> Result<Json<FleetView>, ApiError> {
    session.allow(Permission::View)?;
    // An agency's user sees every node and its health, and only its own cameras on them.
    let scope = s.scope(&session).await;
    let me = s.settings.topics.node.clone();
    let Some(link) = s.cameras.as_ref().and_then(|r| r.fleet().cloned()) else {
        let mut cameras: Vec<String> = s
            .feed
            .statuses()
            .into_iter()
            .map(|c| c.id)
            .filter(|id| scope.sees_camera(id))
            .collect();
        cameras.sort();
        return Ok(Json(FleetView {
            fleet: false,
            node: me.clone(),
            lease_s: None,
            nodes: vec![FleetNode {
                id: me,
                groups: Vec::new(),
                capacity: 0,
                api_url: None,
                started_at: None,
                last_seen: None,
                healthy: true,
                health: serde_json::json!({}),
                cameras,
            }],
            unassigned: Vec::new(),
        }));
    };
    let state = link
        .db
        .store()
        .await?
        .fleet_state()
        .await
        .map_err(ApiError::store)?;
    let mut runs: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for l in state.held().filter(|l| scope.sees_camera(&l.camera)) {
        runs.entry(l.node.as_str())
            .or_default()
            .push(l.camera.clone());
    }
    let since = state
        .now
        .checked_sub(link.lease)
        .unwrap_or(SystemTime::UNIX_EPOCH);
    let nodes = state
        .nodes
        .iter()
        .map(|n| FleetNode {
            id: n.id.clone(),
            groups: n.groups.clone(),
            capacity: n.capacity,
            api_url: n.api_url.clone(),
            started_at: Some(rfc3339(n.started_at)),
            last_seen: Some(rfc3339(n.last_seen)),
            healthy: n.last_seen >= since,
            health: n.health.clone(),
            cameras: runs.remove(n.id.as_str()).unwrap_or_default(),
        })
        .collect();
    let held: std::collections::HashSet<&str> = state.held().map(|l| l.camera.as_str()).collect();
    let unassigned = state
        .cameras
        .iter()
        .filter(|c| !c.removed && !held.contains(c.id.as_str()) && scope.sees_camera(&c.id))
        .filter(|c| c.config.get("enabled").and_then(|v| v.as_bool()) != Some(false))
        .map(|c| c.id.clone())
        .collect();
    Ok(Json(FleetView {
        fleet: true,
        node: me,
        lease_s: Some(link.lease.as_secs_f64()),
        nodes,
        unassigned,
    }))
}
