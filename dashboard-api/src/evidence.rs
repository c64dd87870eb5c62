//! Evidence clips over HTTP: the node's public key, a clip's state and manifest, the video for
//! the incident view, the signed zip for investigators (audited), "keep" for dispatch, and
//! "save clip" for operators.
//!
//! An event names its clip folder in `details.evidence` (`camera/date/clip`) the moment it is
//! raised; the node writes the folder when the post-roll has passed.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::extract::{OriginalUri, Path, Query, Request, State};
use axum::http::{header, HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Json;
use pantau_evidence::NodeKey;
use serde::{Deserialize, Serialize};

use crate::auth::{Permission, Session};
use crate::cameras::BoxFuture;
use crate::error::{json_body, query, ApiError};
use crate::ApiState;

/// A clip an operator asked for.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct SavedClip {
    /// The `operator_clip` event raised for it (an incident in dispatch).
    pub event_id: String,
    /// The clip folder, `camera/date/clip`.
    pub clip: String,
    /// When the clip will be written (RFC 3339): after the post-roll.
    pub ready_at: String,
}

/// What the API asks of the node's evidence recorder (the node implements it).
pub trait ClipControl: Send + Sync + std::fmt::Debug {
    /// Raises an `operator_clip` incident on `camera` for user `by` and records its clip.
    fn save_clip(
        &self,
        camera: String,
        by: String,
        note: Option<String>,
    ) -> BoxFuture<'_, Result<SavedClip, ApiError>>;

    /// A clip of `camera` around `at` for event `event_id` (of `kind`, `rule`), when the
    /// camera still keeps that video: its folder (`camera/date/clip`), written after the
    /// post-roll. A citizen report asks one of each matched camera.
    fn clip_at(
        &self,
        camera: &str,
        at: SystemTime,
        event_id: &str,
        kind: &str,
        rule: &str,
    ) -> Option<String>;
}

/// Evidence as the API serves it.
#[derive(Debug, Clone)]
pub struct EvidenceAccess {
    /// `evidence.dir`, absolute.
    pub dir: PathBuf,
    pub key: Arc<NodeKey>,
    pub node: String,
    /// Seconds after an event its clip is written (`evidence.post_s`).
    pub post_s: f64,
    pub clips: Option<Arc<dyn ClipControl>>,
}

/// The node's evidence signing key.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct EvidenceKey {
    /// `Ed25519`.
    pub algorithm: String,
    /// The public key, base64 of its 32 bytes (`pantau evidence verify --key`).
    pub public_key: String,
    /// First 16 hex digits of the SHA-256 of the public key, as manifests name it.
    pub key_id: String,
    pub node: String,
}

/// A clip's state.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct EvidenceStatus {
    /// `camera/date/clip`.
    pub clip: String,
    /// `recording` (post-roll not over yet), `ready`, `failed` or `deleted`.
    pub state: String,
    /// Why it failed or is gone.
    pub reason: Option<String>,
    /// When a recording clip will be ready (RFC 3339).
    pub ready_at: Option<String>,
    /// The signed manifest, once ready.
    #[schema(value_type = Object)]
    pub manifest: Option<serde_json::Value>,
    /// Who marked it "keep" and when (retention never deletes it).
    pub kept_by: Option<String>,
    pub kept_at: Option<String>,
}

/// "Keep" or release a clip.
#[derive(Debug, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct KeepRequest {
    pub keep: bool,
}

/// "Save clip" on a camera.
#[derive(Debug, Default, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SaveClipRequest {
    /// What the operator saw (up to 500 characters).
    pub note: Option<String>,
}

/// Which clip of an event: a citizen report has one per matched camera.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ClipQuery {
    /// The camera whose clip (a citizen report's `details.evidence_clips`); default: the
    /// event's own clip (`details.evidence`).
    pub camera: Option<String>,
}

fn access(s: &ApiState) -> Result<&EvidenceAccess, ApiError> {
    s.evidence.as_deref().ok_or_else(|| {
        ApiError::not_found(
            "evidence_off",
            "evidence clips are off on this node ([evidence] enabled = false)",
        )
    })
}

/// The node's public key for checking its clips.
#[utoipa::path(get, path = "/api/v1/evidence/key", tag = "evidence",
    responses((status = 200, body = EvidenceKey), (status = 404, body = ApiError)))]
pub async fn key(
    State(s): State<ApiState>,
    session: Session,
) -> Result<Json<EvidenceKey>, ApiError> {
    session.allow(Permission::View)?;
    let a = access(&s)?;
    Ok(Json(EvidenceKey {
        algorithm: "Ed25519".into(),
        public_key: a.key.public_base64(),
        key_id: a.key.id(),
        node: a.node.clone(),
    }))
}

/// The event's clip folder and capture time.
struct Located {
    rel: String,
    dir: PathBuf,
    at: SystemTime,
    event_id: String,
    camera: String,
}

/// Where an event's clip is: on this node, or on the node that held the camera when it was
/// recorded (its API address).
enum Clip {
    Here(Located),
    There(crate::fleet::Peer),
}

/// A request for an event's clip as it came (the original path and query, the caller's
/// headers and body), to hand on unchanged to the node that has the clip.
struct Incoming<'a> {
    method: Method,
    uri: &'a Uri,
    headers: &'a HeaderMap,
    body: Option<Vec<u8>>,
    /// How long the node that has the clip may take to start its answer.
    wait: std::time::Duration,
}

impl<'a> Incoming<'a> {
    /// A GET (no body) the other node must begin answering within
    /// [`crate::fleet::FORWARD_TIME`]; the other requests start from it.
    fn get(uri: &'a Uri, headers: &'a HeaderMap) -> Self {
        Self {
            method: Method::GET,
            uri,
            headers,
            body: None,
            wait: crate::fleet::FORWARD_TIME,
        }
    }
}

/// The event's clip here, or the answer of the node that has it to the same request.
async fn find(
    s: &ApiState,
    session: &Session,
    id: &str,
    which: &ClipQuery,
    incoming: Incoming<'_>,
) -> Result<Result<Located, Response>, ApiError> {
    match locate(s, session, incoming.headers, id, which).await? {
        Clip::Here(l) => Ok(Ok(l)),
        Clip::There(peer) => Ok(Err(crate::fleet::forward(
            &peer,
            incoming.method,
            incoming.uri.path(),
            incoming.uri.query(),
            incoming.headers,
            incoming.body,
            incoming.wait,
        )
        .await?)),
    }
}

async fn locate(
    s: &ApiState,
    session: &Session,
    headers: &HeaderMap,
    id: &str,
    which: &ClipQuery,
) -> Result<Clip, ApiError> {
    let store = s.store().await?;
    let row = crate::incidents::visible_event(s, &store, session, id).await?;
    // In a fleet the clip is on the node that ran the camera when the event was seen.
    let event_camera = row
        .payload
        .get("camera")
        .and_then(|v| v.as_str())
        .unwrap_or_default();
    let recorder = which.camera.as_deref().unwrap_or(event_camera);
    if let Some(peer) = crate::fleet::recorded_elsewhere(s, headers, recorder, row.at).await? {
        return Ok(Clip::There(peer));
    }
    let a = access(s)?;
    let named = match &which.camera {
        None => row
            .payload
            .pointer("/details/evidence")
            .and_then(|v| v.as_str()),
        Some(camera) => row
            .payload
            .pointer("/details/evidence_clips")
            .and_then(|v| v.as_array())
            .and_then(|clips| {
                clips
                    .iter()
                    .find(|c| c.get("camera").and_then(|v| v.as_str()) == Some(camera))
            })
            .and_then(|c| c.get("clip"))
            .and_then(|v| v.as_str()),
    };
    let rel = named
        .filter(|r| pantau_evidence::valid_clip_path(r))
        .ok_or_else(|| {
            ApiError::not_found(
                "no_evidence",
                format!(
                    "event \"{id}\" has no evidence clip: clips are recorded for warning and \
                     critical events (evidence.min_severity) and operators' \"save clip\", from \
                     H.264/H.265 cameras"
                ),
            )
        })?
        .to_string();
    let camera = rel.split('/').next().unwrap_or_default().to_string();
    // A clip of another camera (a citizen report's matched cameras) only for who sees that
    // camera; the event's own clip for whoever sees the event (an incident handed over).
    let own = row.payload.get("camera").and_then(|v| v.as_str()) == Some(camera.as_str());
    if !own && !s.scope(session).await.sees_camera(&camera) {
        return Err(ApiError::not_found(
            "no_evidence",
            format!("event \"{id}\" has no evidence clip of that camera"),
        ));
    }
    Ok(Clip::Here(Located {
        dir: a.dir.join(&rel),
        rel,
        at: row.at,
        event_id: id.to_string(),
        camera,
    }))
}

/// The clip is ready, else why not as an error.
fn ready(s: &ApiState, l: &Located) -> Result<(), ApiError> {
    let status = state_of(s, l)?;
    match status.0.as_str() {
        "ready" => Ok(()),
        "recording" => Err(ApiError::conflict(format!(
            "the clip of event \"{}\" is still being recorded; it is ready at {}",
            l.event_id,
            status.2.unwrap_or_default()
        ))),
        _ => Err(ApiError::not_found(
            "evidence_gone",
            format!(
                "the clip of event \"{}\" is not available: {}",
                l.event_id,
                status.1.unwrap_or_default()
            ),
        )),
    }
}

/// (state, reason, ready_at) of a clip from its folder.
fn state_of(
    s: &ApiState,
    l: &Located,
) -> Result<(String, Option<String>, Option<String>), ApiError> {
    let a = access(s)?;
    if l.dir.join(pantau_evidence::MANIFEST_FILE).exists() {
        return Ok(("ready".into(), None, None));
    }
    if let Ok(reason) = std::fs::read_to_string(l.dir.join(FAILED_FILE)) {
        return Ok(("failed".into(), Some(reason.trim().to_string()), None));
    }
    // Written a few seconds after the post-roll (the last packets arrive, then the muxer);
    // events that share the clip can move its end by one more post-roll.
    let ready_at = l.at + Duration::from_secs_f64(2.0 * a.post_s) + Duration::from_secs(5);
    if SystemTime::now() < ready_at + Duration::from_secs(120) {
        return Ok((
            "recording".into(),
            None,
            Some(pantau_events::time::format(ready_at)),
        ));
    }
    Ok((
        "deleted".into(),
        Some("deleted by retention (evidence.retention_days, evidence.max_gb) or never written; see the node's log".into()),
        None,
    ))
}

/// Exports built at once.
static EXPORTS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(2);

/// The file a node writes in a clip folder when the clip could not be made, with the reason.
pub const FAILED_FILE: &str = "failed.txt";

/// A clip's state, manifest and "keep" mark.
#[utoipa::path(get, path = "/api/v1/events/{id}/evidence", tag = "evidence",
    params(("id" = String, Path, description = "Event id"), ClipQuery),
    responses((status = 200, body = EvidenceStatus), (status = 404, body = ApiError)))]
pub async fn status(
    State(s): State<ApiState>,
    session: Session,
    Path(id): Path<String>,
    headers: HeaderMap,
    OriginalUri(uri): OriginalUri,
    which: Result<Query<ClipQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    session.allow(Permission::View)?;
    let which = query(which)?;
    let incoming = Incoming::get(&uri, &headers);
    match find(&s, &session, &id, &which, incoming).await? {
        Ok(l) => Ok(Json(clip_status(&s, l).await?).into_response()),
        Err(there) => Ok(there),
    }
}

/// What [`status`] answers for a clip of this node.
async fn clip_status(s: &ApiState, l: Located) -> Result<EvidenceStatus, ApiError> {
    let (state, reason, ready_at) = state_of(s, &l)?;
    let manifest = if state == "ready" {
        let dir = l.dir.clone();
        tokio::task::spawn_blocking(move || pantau_evidence::manifest::read(&dir))
            .await
            .ok()
            .and_then(Result::ok)
            .and_then(|m| serde_json::to_value(m).ok())
    } else {
        None
    };
    let kept = s.store().await?.clip_kept(&l.rel, &l.event_id).await?;
    Ok(EvidenceStatus {
        clip: l.rel,
        state,
        reason,
        ready_at,
        manifest,
        kept_by: kept.as_ref().map(|k| k.0.clone()),
        kept_at: kept.map(|k| pantau_events::time::format(k.1)),
    })
}

/// The clip's video, for playing in the incident view (byte ranges for seeking).
#[utoipa::path(get, path = "/api/v1/events/{id}/evidence.mp4", tag = "evidence",
    params(("id" = String, Path, description = "Event id"), ClipQuery),
    responses((status = 200, description = "video/mp4"), (status = 404, body = ApiError),
              (status = 409, description = "Still recording", body = ApiError)))]
pub async fn video(
    State(s): State<ApiState>,
    session: Session,
    Path(id): Path<String>,
    OriginalUri(uri): OriginalUri,
    which: Result<Query<ClipQuery>, axum::extract::rejection::QueryRejection>,
    request: Request,
) -> Result<Response, ApiError> {
    session.allow(Permission::View)?;
    let which = query(which)?;
    let headers = request.headers().clone();
    let incoming = Incoming::get(&uri, &headers);
    let l = match find(&s, &session, &id, &which, incoming).await? {
        Ok(l) => l,
        Err(there) => return Ok(there),
    };
    ready(&s, &l)?;
    let file = l.dir.join(pantau_evidence::CLIP_FILE);
    let response = tower_http::services::ServeFile::new(&file)
        .try_call(request)
        .await
        .map_err(|e| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "evidence_unreadable",
                format!("the clip of event \"{id}\" cannot be read: {e}"),
            )
        })?;
    let mut response = response.map(axum::body::Body::new);
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("private, max-age=3600"),
    );
    Ok(response)
}

/// The clip, its manifest and signature and the node's public key as one zip, for
/// investigators (dispatcher or admin). Every download is in the audit trail.
#[utoipa::path(get, path = "/api/v1/events/{id}/evidence.zip", tag = "evidence",
    params(("id" = String, Path, description = "Event id"), ClipQuery),
    responses((status = 200, description = "application/zip"), (status = 403, body = ApiError),
              (status = 404, body = ApiError), (status = 409, description = "Still recording", body = ApiError)))]
pub async fn export(
    State(s): State<ApiState>,
    session: Session,
    Path(id): Path<String>,
    headers: HeaderMap,
    OriginalUri(uri): OriginalUri,
    which: Result<Query<ClipQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    session.allow(Permission::Dispatch)?;
    let which = query(which)?;
    // The node that has the clip builds the zip and audits the download.
    // It builds the zip (up to `evidence.camera_mb`, two at a time) before its answer starts:
    // it may take as long as any request may here.
    let incoming = Incoming {
        wait: std::time::Duration::from_secs(s.settings.limits.request_timeout_s.into()),
        ..Incoming::get(&uri, &headers)
    };
    let l = match find(&s, &session, &id, &which, incoming).await? {
        Ok(l) => l,
        Err(there) => return Ok(there),
    };
    ready(&s, &l)?;
    // Each export is built in memory (a clip is at most `evidence.camera_mb`): two at a time.
    let _turn = EXPORTS.acquire().await.map_err(|_| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "evidence_export",
            "stopping",
        )
    })?;
    let key = access(&s)?.key.clone();
    let dir = l.dir.clone();
    let zip = tokio::task::spawn_blocking(move || {
        pantau_evidence::export::write_zip(&dir, &key, std::io::Cursor::new(Vec::new()))
            .map(std::io::Cursor::into_inner)
    })
    .await
    .map_err(|e| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "evidence_export",
            e.to_string(),
        )
    })?
    .map_err(|e| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "evidence_export",
            format!("the clip of event \"{id}\" cannot be exported: {e}"),
        )
    })?;
    let store = s.store().await?;
    crate::auth::audit(
        &store,
        &session.user,
        "evidence.export",
        &format!("event:{id}"),
        serde_json::json!({ "clip": l.rel, "bytes": zip.len() }),
    )
    .await?;
    tracing::info!(user = %session.user, event = %id, clip = %l.rel, "evidence exported");
    let name = format!(
        "attachment; filename=\"pantau-evidence-{}-{}.zip\"",
        l.camera, l.event_id
    );
    Ok((
        [
            (header::CONTENT_TYPE, "application/zip".to_string()),
            (header::CONTENT_DISPOSITION, name),
            (header::CACHE_CONTROL, "no-store".to_string()),
        ],
        zip,
    )
        .into_response())
}

/// Mark a clip "keep" (retention never deletes it) or release it (dispatcher or admin).
#[utoipa::path(put, path = "/api/v1/events/{id}/evidence/keep", tag = "evidence",
    params(("id" = String, Path, description = "Event id"), ClipQuery),
    request_body = KeepRequest,
    responses((status = 200, body = EvidenceStatus), (status = 404, body = ApiError)))]
pub async fn keep(
    State(s): State<ApiState>,
    session: Session,
    Path(id): Path<String>,
    headers: HeaderMap,
    OriginalUri(uri): OriginalUri,
    which: Result<Query<ClipQuery>, axum::extract::rejection::QueryRejection>,
    body: Result<Json<KeepRequest>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, ApiError> {
    session.allow(Permission::Dispatch)?;
    let request = json_body(body)?;
    let which = query(which)?;
    // The mark is in the fleet's database; the node that has the clip reads it.
    let incoming = Incoming {
        method: Method::PUT,
        body: Some(serde_json::to_vec(&request).unwrap_or_default()),
        ..Incoming::get(&uri, &headers)
    };
    let l = match find(&s, &session, &id, &which, incoming).await? {
        Ok(l) => l,
        Err(there) => return Ok(there),
    };
    let store = s.store().await?;
    store
        .keep_clip(&l.rel, &l.event_id, &session.user, request.keep)
        .await?;
    tracing::info!(user = %session.user, event = %id, clip = %l.rel, keep = request.keep, "evidence keep changed");
    Ok(Json(clip_status(&s, l).await?).into_response())
}

/// Save a clip of a camera now: raises an `operator_clip` incident with its evidence
/// (operator, dispatcher or admin).
#[utoipa::path(post, path = "/api/v1/cameras/{id}/clips", tag = "evidence",
    params(("id" = String, Path, description = "Camera id")),
    request_body = SaveClipRequest,
    responses((status = 202, body = SavedClip), (status = 400, body = ApiError),
              (status = 404, body = ApiError)))]
pub async fn save(
    State(s): State<ApiState>,
    session: Session,
    Path(camera): Path<String>,
    headers: HeaderMap,
    OriginalUri(uri): OriginalUri,
    body: Result<Json<SaveClipRequest>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, ApiError> {
    session.allow(Permission::Acknowledge)?;
    let request = json_body(body)?;
    if let Some(n) = &request.note {
        if n.trim().is_empty() || n.chars().count() > 500 || n.contains('\0') {
            return Err(ApiError::bad_request(
                "note: write 1 to 500 characters (no NUL), or leave it out",
            ));
        }
    }
    if !s.scope(&session).await.sees_camera(&camera) {
        return Err(crate::agencies::camera_not_found(&camera));
    }
    // In a fleet, a camera of another node: that node keeps its video and records the clip.
    if s.feed.status(&camera).is_none() {
        if let Some(peer) = crate::fleet::runs_elsewhere(&s, &headers, &camera).await? {
            // The request as it came (path and query), as the clip handlers forward theirs.
            let body = serde_json::to_vec(&request).unwrap_or_default();
            let post = axum::http::Method::POST;
            return crate::fleet::forward(
                &peer,
                post,
                uri.path(),
                uri.query(),
                &headers,
                Some(body),
                crate::fleet::FORWARD_TIME,
            )
            .await;
        }
    }
    let clips = access(&s)?
        .clips
        .clone()
        .ok_or_else(|| ApiError::not_found("evidence_off", "this node records no clips"))?;
    if s.feed.status(&camera).is_none() {
        return Err(ApiError::not_found(
            "camera_not_found",
            format!("no camera \"{camera}\" runs on this node"),
        ));
    }
    let saved = clips
        .save_clip(camera, session.user.clone(), request.note)
        .await?;
    tracing::info!(user = %session.user, event = %saved.event_id, clip = %saved.clip, "clip saved by an operator");
    Ok((StatusCode::ACCEPTED, Json(saved)).into_response())
}
