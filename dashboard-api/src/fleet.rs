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
pub(crate) const FORWARD_TIME: std::time::Duration = std::time::Duration::from_secs(5);

/// Another node of the fleet that runs a camera (or recorded its video then).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Peer {
    /// Its `node.name`.
    pub node: String,
    /// Its `fleet.api_url`.
    pub api_url: String,
}

/// The node `holder` as somewhere to forward to: `None` when it is this node (`me`); an error
/// naming it when it gave no API address, which only its own config can mend.
fn peer(me: &str, holder: String, api_url: Option<String>) -> Result<Option<Peer>, ApiError> {
    if holder == me {
        return Ok(None);
    }
    match api_url {
        Some(api_url) => Ok(Some(Peer {
            node: holder,
            api_url,
        })),
        None => Err(ApiError::new(
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            "node_without_api_url",
            format!(
                "this is on node \"{holder}\", which gives no API address, so no other node can \
                 reach it: set [fleet] api_url in that node's config (an address the other nodes \
                 reach) and restart it; a node that was retired took its clips and snapshots \
                 with it"
            ),
        )),
    }
}

/// The node that runs `camera` now, when that is another node of the fleet; `None` when it
/// runs here or nowhere, outside a fleet, or when the request was already forwarded once.
pub(crate) async fn runs_elsewhere(
    s: &ApiState,
    headers: &axum::http::HeaderMap,
    camera: &str,
) -> Result<Option<Peer>, ApiError> {
    if headers.contains_key(FORWARDED) {
        return Ok(None);
    }
    let Some(link) = s.cameras.as_ref().and_then(|c| c.fleet()).cloned() else {
        return Ok(None);
    };
    // Without the database nobody knows: this node answers for what it has.
    let Ok(store) = link.db.store().await else {
        return Ok(None);
    };
    let state = match store.fleet_state().await {
        Ok(state) => state,
        Err(e) => {
            tracing::warn!(camera, "which node runs the camera is unknown: {e}");
            return Ok(None);
        }
    };
    let Some(node) = state
        .held()
        .find(|l| l.camera == camera)
        .map(|l| l.node.clone())
    else {
        return Ok(None);
    };
    let api_url = state
        .nodes
        .into_iter()
        .find(|n| n.id == node)
        .and_then(|n| n.api_url);
    peer(&link.node, node, api_url)
}

/// The node that recorded `camera`'s video at `at` (held its lease then), when that is
/// another node of the fleet; `None` otherwise or when already forwarded.
pub(crate) async fn recorded_elsewhere(
    s: &ApiState,
    headers: &axum::http::HeaderMap,
    camera: &str,
    at: std::time::SystemTime,
) -> Result<Option<Peer>, ApiError> {
    if headers.contains_key(FORWARDED) {
        return Ok(None);
    }
    let Some(link) = s.cameras.as_ref().and_then(|c| c.fleet()).cloned() else {
        return Ok(None);
    };
    let Ok(store) = link.db.store().await else {
        return Ok(None);
    };
    match store.fleet_holder_at(camera, at).await {
        Ok(Some((node, api_url))) => peer(&link.node, node, api_url),
        Ok(None) => Ok(None),
        Err(e) => {
            tracing::warn!(camera, "which node recorded the camera is unknown: {e}");
            Ok(None)
        }
    }
}

/// Sends a request for a camera on to the node that runs it (or recorded its clip), as the
/// same user: sessions live in the fleet's database, so the other node knows the caller's
/// token and checks its role and agencies itself. The answer is streamed back as it comes
/// (frames, clips with byte ranges, zips), so nothing is held here.
/// `wait`: how long the other node has to start its answer (one that builds it first, as an
/// evidence export does, needs longer than [`FORWARD_TIME`]), and then to send each next piece
/// of it: a node that stalls halfway is cut off (the caller sees its download end unfinished)
/// rather than holding the caller and a connection for good.
pub(crate) async fn forward(
    peer: &Peer,
    method: axum::http::Method,
    path: &str,
    query: Option<&str>,
    headers: &axum::http::HeaderMap,
    body: Option<Vec<u8>>,
    wait: std::time::Duration,
) -> Result<axum::response::Response, ApiError> {
    use axum::http::{header, StatusCode};
    use http_body_util::Full;
    use hyper::body::Bytes;

    let api_url = peer.api_url.as_str();
    let failed = |status: StatusCode, why: String| {
        ApiError::new(
            status,
            "node_unreachable",
            format!(
                "this is on node \"{}\" ({api_url}), which {why}; check that node (GET \
                 /api/v1/fleet shows each node's health) and try again",
                peer.node
            ),
        )
    };
    let unavailable =
        |why: String| failed(StatusCode::BAD_GATEWAY, format!("did not answer: {why}"));
    let query = query.map(|q| format!("?{q}")).unwrap_or_default();
    let uri: axum::http::Uri = format!("{}{path}{query}", api_url.trim_end_matches('/'))
        .parse()
        .map_err(|e| unavailable(format!("not a URL: {e}")))?;
    let https = uri.scheme_str() == Some("https");
    let authority = uri
        .authority()
        .ok_or_else(|| unavailable("no host".into()))?
        .clone();
    let host = host_of(&authority).to_string();
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
    let answer = tokio::time::timeout(wait, exchange)
        .await
        .map_err(|_| {
            failed(
                StatusCode::GATEWAY_TIMEOUT,
                format!("did not answer within {} s", wait.as_secs_f64()),
            )
        })?
        .map_err(unavailable)?;
    let (parts, body) = answer.into_parts();
    let body = Stalls {
        inner: body,
        idle: wait,
        deadline: Box::pin(tokio::time::sleep(wait)),
        waiting: false,
        node: peer.node.clone(),
    };
    let mut out = axum::response::Response::new(axum::body::Body::new(body));
    *out.status_mut() = parts.status;
    for name in PASSED_BACK {
        if let Some(v) = parts.headers.get(name) {
            out.headers_mut().insert(name, v.clone());
        }
    }
    Ok(out)
}

/// The host of an address as a connection takes it (an IPv6 address without its brackets).
fn host_of(authority: &axum::http::uri::Authority) -> &str {
    authority
        .host()
        .trim_start_matches('[')
        .trim_end_matches(']')
}

/// Why a node's `fleet.api_url` would carry operators' session tokens across the network in
/// clear text (an `http://` address that is not that machine itself), or `None`: the other
/// nodes [`forward`] requests to it with the caller's token.
pub fn clear_text_api(api_url: Option<&str>) -> Option<String> {
    let url = api_url?;
    let uri: axum::http::Uri = url.parse().ok()?;
    if uri.scheme_str() != Some("http") {
        return None;
    }
    let host = host_of(uri.authority()?);
    let this_machine = host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    (!this_machine).then(|| {
        format!(
            "fleet.api_url \"{url}\" is plain http: other nodes forward operators' requests for \
             this node's cameras and clips to it with their session tokens in clear text; put \
             this node's API behind TLS and give its https:// address"
        )
    })
}

/// The other node's answer body, ended with an error when no piece of it comes for `idle`.
struct Stalls<B> {
    inner: B,
    idle: std::time::Duration,
    deadline: std::pin::Pin<Box<tokio::time::Sleep>>,
    /// Polled since the last piece: the deadline runs. It starts again at the first poll after
    /// a piece, so a caller that reads slowly is not taken for a stalled node.
    waiting: bool,
    node: String,
}

impl<B> hyper::body::Body for Stalls<B>
where
    B: hyper::body::Body<Data = hyper::body::Bytes> + Unpin,
    B::Error: Into<axum::BoxError>,
{
    type Data = hyper::body::Bytes;
    type Error = axum::BoxError;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Self::Data>, Self::Error>>> {
        use std::task::Poll;
        let this = &mut *self;
        if !this.waiting {
            this.waiting = true;
            let next = tokio::time::Instant::now() + this.idle;
            this.deadline.as_mut().reset(next);
        }
        match std::pin::Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(frame) => {
                this.waiting = false;
                Poll::Ready(frame.map(|f| f.map_err(Into::into)))
            }
            Poll::Pending => match std::future::Future::poll(this.deadline.as_mut(), cx) {
                Poll::Ready(()) => {
                    tracing::warn!(
                        node = %this.node,
                        "a forwarded answer stalled for {} s; cut off",
                        this.idle.as_secs_f64()
                    );
                    Poll::Ready(Some(Err(format!(
                        "node \"{}\" sent nothing more for {} s",
                        this.node,
                        this.idle.as_secs_f64()
                    )
                    .into())))
                }
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use axum::http::{HeaderMap, Method, StatusCode};

    use super::*;

    #[test]
    fn a_plain_http_api_address_between_machines_is_warned_about() {
        for url in [
            "http://10.20.0.12:8080",
            "http://node2.pemkot.example/",
            "http://user@10.0.0.5",
            "http://[fd00::12]:8080/api",
        ] {
            let why = clear_text_api(Some(url)).unwrap_or_else(|| panic!("{url}"));
            assert!(why.contains(url) && why.contains("https://"), "{why}");
        }
        for quiet in [
            None,
            Some("https://10.20.0.12:8443"),
            Some("http://127.0.0.1:8080"),
            Some("http://localhost:8080"),
            Some("http://[::1]:8080"),
        ] {
            assert_eq!(clear_text_api(quiet), None, "{quiet:?}");
        }
    }

    #[test]
    fn a_holder_without_an_api_address_is_named_with_the_fix() {
        assert_eq!(peer("n1", "n1".into(), None).expect("here"), None);
        assert_eq!(
            peer("n1", "n2".into(), Some("http://10.0.0.2:8080".into())).expect("there"),
            Some(Peer {
                node: "n2".into(),
                api_url: "http://10.0.0.2:8080".into()
            })
        );
        let e = peer("n1", "n2".into(), None).expect_err("no address");
        assert_eq!(e.status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(e.code, "node_without_api_url");
        assert!(
            e.message.contains("\"n2\"") && e.message.contains("[fleet] api_url"),
            "{}",
            e.message
        );
    }

    #[tokio::test]
    async fn a_node_that_does_not_answer_is_named_with_a_gateway_status() {
        let get = |peer: Peer, wait: Duration| async move {
            forward(
                &peer,
                Method::GET,
                "/api/v1/x",
                None,
                &HeaderMap::new(),
                None,
                wait,
            )
            .await
            .expect_err("no answer")
        };
        // Takes the connection and says nothing: 504 after the wait, not a hang.
        let silent = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = silent.local_addr().expect("addr").port();
        let held = tokio::spawn(async move {
            let mut open = Vec::new();
            while let Ok((c, _)) = silent.accept().await {
                open.push(c);
            }
        });
        let n2 = Peer {
            node: "n2".into(),
            api_url: format!("http://127.0.0.1:{port}"),
        };
        let started = std::time::Instant::now();
        let e = get(n2, Duration::from_millis(300)).await;
        assert!(started.elapsed() < Duration::from_secs(3));
        assert_eq!(e.status, StatusCode::GATEWAY_TIMEOUT);
        assert!(
            e.message.contains("\"n2\"") && e.message.contains("within 0.3 s"),
            "{}",
            e.message
        );
        held.abort();
        // Refuses the connection: 502, naming the node and where to look.
        let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = closed.local_addr().expect("addr").port();
        drop(closed);
        let n3 = Peer {
            node: "n3".into(),
            api_url: format!("http://127.0.0.1:{port}"),
        };
        let e = get(n3, FORWARD_TIME).await;
        assert_eq!(e.status, StatusCode::BAD_GATEWAY);
        assert!(
            e.message.contains("\"n3\"") && e.message.contains("GET /api/v1/fleet"),
            "{}",
            e.message
        );
    }

    #[tokio::test]
    async fn a_node_that_stalls_halfway_through_its_answer_is_cut_off() {
        use http_body_util::BodyExt;
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        // Answers at once, sends 10 of the 100 bytes it announced, then nothing.
        let stalling = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = stalling.local_addr().expect("addr").port();
        let held = tokio::spawn(async move {
            let (mut c, _) = stalling.accept().await.expect("accept");
            let mut request = [0u8; 1024];
            let _ = c.read(&mut request).await;
            c.write_all(b"HTTP/1.1 200 OK\r\ncontent-type: video/mp4\r\ncontent-length: 100\r\n\r\n0123456789")
                .await
                .expect("write");
            tokio::time::sleep(Duration::from_secs(60)).await;
            drop(c);
        });
        let n2 = Peer {
            node: "n2".into(),
            api_url: format!("http://127.0.0.1:{port}"),
        };
        let answer = forward(
            &n2,
            Method::GET,
            "/api/v1/clip",
            None,
            &HeaderMap::new(),
            None,
            Duration::from_millis(300),
        )
        .await
        .expect("the answer began");
        assert_eq!(answer.status(), StatusCode::OK);
        let started = std::time::Instant::now();
        let mut body = answer.into_body();
        let mut got = Vec::new();
        let end = loop {
            match body.frame().await {
                Some(Ok(frame)) => got.extend(frame.into_data().unwrap_or_default()),
                Some(Err(e)) => break e.to_string(),
                None => panic!("the body ended without its 100 bytes"),
            }
        };
        assert_eq!(got, b"0123456789");
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "cut off after the wait"
        );
        assert!(end.contains("\"n2\"") && end.contains("0.3 s"), "{end}");
        held.abort();
    }
}
