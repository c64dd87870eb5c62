//! Live: a Server-Sent Events stream of events, camera status and incident changes; the latest
//! frame of a camera with overlays; event snapshots; and the per-camera analysis figures the
//! node reports for `/metrics`.

use std::collections::HashMap;
use std::convert::Infallible;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::stream::{self, Stream, StreamExt};
use serde::Deserialize;
use tokio::sync::broadcast;

use crate::auth::{Permission, Session};
use crate::error::{query, ApiError};
use crate::ApiState;

/// One message for live clients.
#[derive(Debug, Clone)]
pub struct LiveMessage {
    /// `event`, `status` or `incident` (the SSE event name).
    pub kind: &'static str,
    pub camera: String,
    /// The rule of an event.
    pub rule: Option<String>,
    /// JSON.
    pub data: Arc<str>,
    /// Agencies an incident was handed over to: their users see its changes too.
    pub handed_to: Vec<String>,
}

impl LiveMessage {
    pub fn new(kind: &'static str, camera: &str, rule: Option<&str>, data: String) -> Self {
        Self {
            kind,
            camera: camera.to_string(),
            rule: rule.map(str::to_string),
            data: data.into(),
            handed_to: Vec::new(),
        }
    }
}

/// Fan-out to live clients, plus the latest annotated frames and analysis figures.
#[derive(Debug)]
pub struct Live {
    tx: broadcast::Sender<LiveMessage>,
    frames: Mutex<HashMap<String, Frame>>,
    analysis: Mutex<HashMap<String, Analysis>>,
}

#[derive(Debug)]
struct Frame {
    jpeg: Option<(Arc<Vec<u8>>, Instant)>,
    wanted_at: Instant,
}

/// Per-camera analysis figures for `/metrics`.
#[derive(Debug, Default, Clone)]
pub struct Analysis {
    pub inference_ms: f64,
    pub events: u64,
    /// Capture-to-queued latency histogram: counts per bucket of [`LATENCY_BUCKETS`] (+Inf
    /// last), sum in seconds.
    pub latency_buckets: [u64; LATENCY_BUCKETS.len() + 1],
    pub latency_sum_s: f64,
}

/// Upper bounds in seconds.
pub const LATENCY_BUCKETS: [f64; 8] = [0.025, 0.05, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5];

impl Default for Live {
    fn default() -> Self {
        Self {
            tx: broadcast::channel(1024).0,
            frames: Mutex::new(HashMap::new()),
            analysis: Mutex::new(HashMap::new()),
        }
    }
}

impl Live {
    /// Sends to every connected client (none connected is fine).
    pub fn publish(&self, m: LiveMessage) {
        let _ = self.tx.send(m);
    }

    fn subscribe(&self) -> broadcast::Receiver<LiveMessage> {
        self.tx.subscribe()
    }

    /// True when someone looked at this camera's frame in the last 15 s and the annotated
    /// frame put last is older than `every` (or there is none): only then does the node spend
    /// time drawing overlays.
    pub fn frame_due(&self, camera: &str, every: Duration) -> bool {
        self.frames
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(camera)
            .is_some_and(|f| {
                f.wanted_at.elapsed() < Duration::from_secs(15)
                    && f.jpeg.as_ref().is_none_or(|(_, at)| at.elapsed() > every)
            })
    }

    /// The node's newest annotated frame of `camera`.
    pub fn put_frame(&self, camera: &str, jpeg: Vec<u8>) {
        let mut frames = self.frames.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(f) = frames.get_mut(camera) {
            f.jpeg = Some((Arc::new(jpeg), Instant::now()));
        }
    }

    fn take_frame(&self, camera: &str) -> Option<Arc<Vec<u8>>> {
        let mut frames = self.frames.lock().unwrap_or_else(|p| p.into_inner());
        let f = frames.entry(camera.to_string()).or_insert(Frame {
            jpeg: None,
            wanted_at: Instant::now(),
        });
        f.wanted_at = Instant::now();
        f.jpeg
            .as_ref()
            .filter(|(_, at)| at.elapsed() < Duration::from_secs(3))
            .map(|(j, _)| j.clone())
    }

    /// Records one analysed frame's inference time.
    pub fn record_inference(&self, camera: &str, ms: f64) {
        let mut a = self.analysis.lock().unwrap_or_else(|p| p.into_inner());
        a.entry(camera.to_string()).or_default().inference_ms = ms;
    }

    /// Records an event and how long after capture it was queued for delivery.
    pub fn record_event(&self, camera: &str, latency: Duration) {
        let mut a = self.analysis.lock().unwrap_or_else(|p| p.into_inner());
        let e = a.entry(camera.to_string()).or_default();
        e.events += 1;
        let s = latency.as_secs_f64();
        e.latency_sum_s += s;
        let i = LATENCY_BUCKETS
            .iter()
            .position(|b| s <= *b)
            .unwrap_or(LATENCY_BUCKETS.len());
        e.latency_buckets[i] += 1;
    }

    pub fn analysis(&self) -> Vec<(String, Analysis)> {
        let a = self.analysis.lock().unwrap_or_else(|p| p.into_inner());
        let mut v: Vec<_> = a.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        v.sort_by(|x, y| x.0.cmp(&y.0));
        v
    }

    pub fn forget(&self, camera: &str) {
        self.frames
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(camera);
        self.analysis
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(camera);
    }
}

/// Filters of the live stream.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct LiveQuery {
    /// Comma-separated camera ids. Default: all.
    pub camera: Option<String>,
    /// Comma-separated rule names (events only). Default: all.
    pub rule: Option<String>,
    /// Comma-separated message types: `event`, `status`, `incident`. Default: all.
    pub types: Option<String>,
}

fn split(v: &Option<String>) -> Option<Vec<String>> {
    v.as_ref().map(|v| {
        v.split(',')
            .map(|x| x.trim().to_string())
            .filter(|x| !x.is_empty())
            .collect()
    })
}

/// Server-Sent Events: `event` (an event as on MQTT), `status` (a camera state change) and
/// `incident` (a dispatch action), filtered by camera, rule and type.
#[utoipa::path(get, path = "/api/v1/live", tag = "live", params(LiveQuery),
    responses((status = 200, description = "text/event-stream; each message's `event:` is event, status or incident and its data JSON"),
              (status = 400, body = ApiError), (status = 401, body = ApiError)))]
pub async fn stream(
    State(s): State<ApiState>,
    session: Session,
    headers: axum::http::HeaderMap,
    q: Result<axum::extract::Query<LiveQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>, ApiError> {
    session.allow(Permission::View)?;
    // What the user sees (an agency's cameras), kept current while the stream is open: a
    // camera added to or moved out of its groups shows or stops within a recheck.
    let scope = Arc::new(Mutex::new(s.scope(&session).await));
    // The session is checked again every 2 s: a logout, an expired session, a disabled user or
    // a changed password ends the stream (the store unreachable does not).
    let revoked = {
        let db = s.db.clone();
        let token = crate::auth::token_sha256(&headers);
        let (state, session, scope) = (s.clone(), session.clone(), scope.clone());
        async move {
            let (Some(db), Some(token)) = (db, token) else {
                return std::future::pending().await;
            };
            let mut tick = tokio::time::interval(SESSION_RECHECK);
            tick.tick().await;
            loop {
                tick.tick().await;
                if let Ok(store) = db.store().await {
                    if let Ok(None) = store.session_user(&token).await {
                        return;
                    }
                }
                if !state.settings.agencies.is_empty() && !session.agencies.is_empty() {
                    let now = state.scope(&session).await;
                    *scope.lock().unwrap_or_else(|p| p.into_inner()) = now;
                }
            }
        }
    };
    let q = query(q)?;
    let cameras = split(&q.camera);
    let rules = split(&q.rule);
    let types = split(&q.types);
    if let Some(bad) = types
        .iter()
        .flatten()
        .find(|t| !["event", "status", "incident"].contains(&t.as_str()))
    {
        return Err(ApiError::bad_request(format!(
            "types \"{bad}\" is not one of event, status, incident"
        )));
    }
    let keep = move |m: &LiveMessage| {
        scope
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .sees_event(&m.camera, &m.handed_to)
            && cameras.as_ref().is_none_or(|c| c.contains(&m.camera))
            && types.as_ref().is_none_or(|t| t.iter().any(|t| t == m.kind))
            && (m.kind != "event"
                || rules
                    .as_ref()
                    .is_none_or(|r| m.rule.as_ref().is_some_and(|x| r.contains(x))))
    };
    let hub = stream::unfold(s.live.subscribe(), |mut rx| async move {
        loop {
            match rx.recv().await {
                Ok(m) => return Some((m, rx)),
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    tracing::warn!(missed = n, "a live client fell behind; messages skipped");
                }
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    });
    let statuses = stream::unfold(s.feed.subscribe(), |mut rx| async move {
        loop {
            match rx.recv().await {
                Ok(c) => {
                    let data = serde_json::to_string(&c).unwrap_or_default();
                    return Some((LiveMessage::new("status", &c.camera_id, None, data), rx));
                }
                Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    });
    // The stream ends when the node stops, so the server's graceful shutdown does not wait
    // on open consoles.
    let events = stream::select(hub, statuses)
        .take_until(s.shutdown.clone().cancelled_owned())
        .take_until(revoked)
        .filter(move |m| std::future::ready(keep(m)))
        .map(|m| Ok(SseEvent::default().event(m.kind).data(&*m.data)));
    Ok(Sse::new(events).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}

/// How often an open live stream checks that its session still holds.
const SESSION_RECHECK: Duration = Duration::from_secs(2);

/// Options of the frame endpoint.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct FrameQuery {
    /// `drawn` (default): boxes, lines and zones when available; `none`: the plain frame
    /// (e.g. to draw new lines on).
    pub overlay: Option<String>,
    /// Ignored; lets browsers bypass their cache.
    #[allow(dead_code)]
    pub t: Option<String>,
}

/// The latest frame of a camera as JPEG, with boxes, lines and zones drawn while the camera is
/// analysed (header `X-Pantau-Overlay: drawn`); the plain frame otherwise (`none`). Poll it:
/// overlays are drawn while someone asks, a few times a second.
#[utoipa::path(get, path = "/api/v1/cameras/{id}/frame.jpg", tag = "live",
    params(("id" = String, Path, description = "Camera id"), FrameQuery),
    responses((status = 200, content_type = "image/jpeg", description = "JPEG"),
              (status = 404, body = ApiError), (status = 503, description = "No frame yet", body = ApiError)))]
pub async fn frame(
    State(s): State<ApiState>,
    session: Session,
    Path(id): Path<String>,
    headers: axum::http::HeaderMap,
    uri: axum::http::Uri,
    q: Result<axum::extract::Query<FrameQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    session.allow(Permission::View)?;
    let plain = match query(q)?.overlay.as_deref() {
        None | Some("drawn") => false,
        Some("none") => true,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "overlay \"{other}\" is not one of drawn, none"
            )))
        }
    };
    if !s.scope(&session).await.sees_camera(&id) {
        return Err(crate::agencies::camera_not_found(&id));
    }
    // In a fleet, a camera of another node: that node draws it.
    if s.feed.status(&id).is_none() {
        if let Some(peer) = crate::fleet::runs_elsewhere(&s, &headers, &id).await? {
            let path = format!("/api/v1/cameras/{id}/frame.jpg");
            let (get, query) = (axum::http::Method::GET, uri.query());
            let wait = crate::fleet::FORWARD_TIME;
            return crate::fleet::forward(&peer, get, &path, query, &headers, None, wait).await;
        }
    }
    if s.feed.status(&id).is_none() {
        // A camera of the fleet between two nodes (handed over, or no node may run it now).
        let known = match &s.cameras {
            Some(r) if r.fleet().is_some() => r.get(&id).await.is_some_and(|c| c.enabled),
            _ => false,
        };
        if known {
            let mut e = ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "camera_not_running",
                format!(
                    "camera \"{id}\" runs on no node at the moment (being handed over, or no \
                     node may take it: see GET /api/v1/fleet); try again in a few seconds"
                ),
            );
            e.retry_after = Some(2);
            return Err(e);
        }
        return Err(ApiError::not_found(
            "camera_not_found",
            format!("no camera \"{id}\" is running"),
        ));
    }
    let drawn = if plain { None } else { s.live.take_frame(&id) };
    let (jpeg, overlay) = match drawn {
        Some(j) => (j.as_ref().clone(), "drawn"),
        None => (
            s.feed.frame_jpeg(&id).await.map_err(|e| {
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "no_frame",
                    format!("no frame yet: {e}"),
                )
            })?,
            "none",
        ),
    };
    Ok((
        [
            (header::CONTENT_TYPE, "image/jpeg"),
            (header::CACHE_CONTROL, "no-store"),
            (header::HeaderName::from_static("x-pantau-overlay"), overlay),
        ],
        jpeg,
    )
        .into_response())
}

/// An event's snapshot (the `snapshot` field of the event).
#[utoipa::path(get, path = "/api/v1/snapshots/{path}", tag = "live",
    params(("path" = String, Path, description = "The event's `snapshot`, e.g. campus/2026-11-24/01K....jpg")),
    responses((status = 200, content_type = "image/jpeg", description = "JPEG"),
              (status = 400, body = ApiError), (status = 404, body = ApiError)))]
pub async fn snapshot(
    State(s): State<ApiState>,
    session: Session,
    Path(path): Path<String>,
    headers: axum::http::HeaderMap,
) -> Result<Response, ApiError> {
    session.allow(Permission::View)?;
    let dir: &PathBuf = s.settings.snapshots_dir.as_ref().ok_or_else(|| {
        ApiError::not_found(
            "no_snapshots",
            "snapshots are off ([snapshots] enabled = false)",
        )
    })?;
    let parts: Vec<&str> = path.split('/').collect();
    let safe = parts.len() == 3
        && parts.iter().all(|p| {
            !p.is_empty()
                && !p.starts_with('.')
                && p.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        })
        && path.ends_with(".jpg");
    if !safe {
        return Err(ApiError::bad_request(
            "snapshot path is camera/date/id.jpg as given in the event",
        ));
    }
    // Snapshots are camera/date/id.jpg: the camera's, or the event's when it was handed over.
    if !s.scope(&session).await.sees_camera(parts[0]) {
        let id = parts[2].trim_end_matches(".jpg");
        let store = s.store().await?;
        crate::incidents::visible_event(&s, &store, &session, id)
            .await
            .map_err(|_| {
                ApiError::not_found("snapshot_not_found", format!("no snapshot {path}"))
            })?;
    }
    let taken = parts[2]
        .trim_end_matches(".jpg")
        .parse::<pantau_events::EventId>()
        .ok()
        .map(|id| std::time::UNIX_EPOCH + Duration::from_millis(id.millis()));
    // In a fleet, the node that ran the camera then wrote the snapshot.
    if let Some(at) = taken {
        if let Some(peer) = crate::fleet::recorded_elsewhere(&s, &headers, parts[0], at).await? {
            let path = format!("/api/v1/snapshots/{path}");
            let get = axum::http::Method::GET;
            let wait = crate::fleet::FORWARD_TIME;
            return crate::fleet::forward(&peer, get, &path, None, &headers, None, wait).await;
        }
    }
    let file = dir.join(&path);
    // A live event names its snapshot before the image stage has written it (a few hundred
    // milliseconds later): for an event of the last 10 s, wait up to 3 s for the file.
    let fresh = taken
        .and_then(|at| SystemTime::now().duration_since(at).ok())
        .is_some_and(|age| age < Duration::from_secs(10));
    if fresh {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
        while tokio::fs::metadata(&file).await.is_err() && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    match tokio::fs::read(&file).await {
        Ok(jpeg) => Ok((
            [
                (header::CONTENT_TYPE, "image/jpeg"),
                (header::CACHE_CONTROL, "private, max-age=86400"),
            ],
            jpeg,
        )
            .into_response()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(ApiError::not_found(
            "snapshot_not_found",
            format!("no snapshot {path} (snapshots are deleted after snapshots.retention_days)"),
        )),
        Err(e) => Err(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "snapshot_unreadable",
            format!("snapshot {path} cannot be read: {e}"),
        )),
    }
}
