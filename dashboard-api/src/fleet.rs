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

/// Marks a request one node forwarded to another, which never forwards it again (a lease that
/// moved in between cannot make two nodes bounce it).
const FORWARDED: &str = "x-pantau-forwarded";

/// How long the other node has to start answering (its body then streams).
const FORWARD_TIME: std::time::Duration = std::time::Duration::from_secs(5);

/// The API address (`fleet.api_url`) of the node that runs `camera` now, when that is another
/// node of the fleet; `None` when it runs here, nowhere, on a node that gave no address, or
/// when the request was already forwarded once.
pub(crate) async fn runs_elsewhere(
    s: &ApiState,
    headers: &axum::http::HeaderMap,
    camera: &str,
) -> Option<String> {
    if headers.contains_key(FORWARDED) {
        return None;
    }
    let link = s.cameras.as_ref()?.fleet()?.clone();
    let state = link.db.store().await.ok()?.fleet_state().await.ok()?;
    let node = state.held().find(|l| l.camera == camera)?.node.clone();
    if node == link.node {
        return None;
    }
    state.nodes.into_iter().find(|n| n.id == node)?.api_url
}

/// The API address of the node that recorded `camera`'s video at `at` (held its lease then),
/// when that is another node of the fleet; `None` otherwise or when already forwarded.
pub(crate) async fn recorded_elsewhere(
    s: &ApiState,
    headers: &axum::http::HeaderMap,
    camera: &str,
    at: std::time::SystemTime,
) -> Option<String> {
    if headers.contains_key(FORWARDED) {
        return None;
    }
    let link = s.cameras.as_ref()?.fleet()?.clone();
    let (node, api) = match link
        .db
        .store()
        .await
        .ok()?
        .fleet_holder_at(camera, at)
        .await
    {
        Ok(holder) => holder?,
        Err(e) => {
            tracing::warn!(camera, "which node recorded the camera is unknown: {e}");
            return None;
        }
    };
    (node != link.node).then_some(api).flatten()
}

/// Sends a request for a camera on to the node that runs it (or recorded its clip), as the
/// same user: sessions live in the fleet's database, so the other node knows the caller's
/// token and checks its role and agencies itself. The answer is streamed back as it comes
/// (frames, clips with byte ranges, zips), so nothing is held here.
pub(crate) async fn forward(
    api_url: &str,
    method: axum::http::Method,
    path: &str,
    query: Option<&str>,
    headers: &axum::http::HeaderMap,
    body: Option<Vec<u8>>,
) -> Result<axum::response::Response, ApiError> {
    use axum::http::{header, StatusCode};
    use http_body_util::Full;
    use hyper::body::Bytes;

    let unavailable = |why: String| {
        ApiError::new(
            StatusCode::BAD_GATEWAY,
            "node_unreachable",
            format!("the camera runs on the node at {api_url}, which did not answer: {why}"),
        )
    };
    let query = query.map(|q| format!("?{q}")).unwrap_or_default();
    let uri: axum::http::Uri = format!("{}{path}{query}", api_url.trim_end_matches('/'))
        .parse()
        .map_err(|e| unavailable(format!("not a URL: {e}")))?;
    let https = uri.scheme_str() == Some("https");
    let authority = uri
        .authority()
        .ok_or_else(|| unavailable("no host".into()))?
        .clone();
    let host = authority
        .host()
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let port = authority.port_u16().unwrap_or(if https { 443 } else { 80 });
    let mut request = axum::http::Request::builder()
        .method(method)
        .uri(uri.path_and_query().map_or("/", |p| p.as_str()))
        .header(header::HOST, authority.as_str())
        .header(header::USER_AGENT, "pantau")
        .header(FORWARDED, "1");
    if let Some(token) = crate::auth::token_from(headers) {
        request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
    }
    for name in PASSED_ON {
        if let Some(v) = headers.get(name) {
            request = request.header(name, v.clone());
        }
    }
    if body.is_some() {
        request = request.header(header::CONTENT_TYPE, "application/json");
    }
    let request = request
        .body(Full::new(Bytes::from(body.unwrap_or_default())))
        .map_err(|e| unavailable(e.to_string()))?;
    let exchange = crate::client::send(&host, port, https, request);
    let answer = tokio::time::timeout(FORWARD_TIME, exchange)
        .await
        .map_err(|_| unavailable(format!("no answer within {} s", FORWARD_TIME.as_secs())))?
        .map_err(unavailable)?;
    let (parts, body) = answer.into_parts();
    let mut out = axum::response::Response::new(axum::body::Body::new(body));
    *out.status_mut() = parts.status;
    for name in PASSED_BACK {
        if let Some(v) = parts.headers.get(name) {
            out.headers_mut().insert(name, v.clone());
        }
    }
    Ok(out)
}

/// Headers of the other node's answer passed back to the caller.
const PASSED_BACK: [&str; 10] = [
    "content-type",
    "content-length",
    "content-range",
    "content-disposition",
    "accept-ranges",
    "cache-control",
    "etag",
    "last-modified",
    "retry-after",
    "x-pantau-overlay",
];

/// Headers of the caller's request passed on (byte ranges of a clip).
const PASSED_ON: [&str; 3] = ["range", "if-range", "if-none-match"];
