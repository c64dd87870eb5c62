//! Citizen reports from citizen apps (integrations), beside what the cameras see.
//!
//! `POST /api/v1/reports` takes a report from an integration, authenticated only by its key
//! (`Authorization: Bearer <key>`; a console session does not work there, and the key works
//! nowhere else), rate limited per key. The report is checked field by field (every problem
//! named with its field), its photos are checked to be JPEG or PNG images and stripped of
//! their metadata ([`photos`]), and it is matched to the cameras that may see it
//! ([`matching`]). It becomes a `citizen_report` event (severity warning), kept with the report
//! in one transaction, appended to the outbox (MQTT and the store sink) and sent to live
//! clients; from there it goes through the dispatch workflow like any alert. The same
//! (source, external id) twice is one report: the second answer is the first report.
//!
//! Dispatch changes of a report queue a callback in the same statement
//! ([`pantau_store::DispatchChange::callback`]); [`deliver_callbacks`] sends them, signed.
//! Admins manage integrations (the key and the callback secret are shown once); dispatchers
//! link a report to the alert of the same incident.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::{Path as FsPath, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use axum::extract::{FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::Engine as _;
use pantau_config::config::ReportsConfig;
use pantau_events::{IdGenerator, Origin, REPORTS_CAMERA};
use rand::RngCore;
use serde::{Deserialize, Serialize};

use crate::auth::{audit, hex, sha256_hex, Permission, Session};
use crate::error::{json_body, ApiError, Issue};
use crate::live::LiveMessage;
use crate::ApiState;

pub mod callbacks;
pub mod matching;
pub mod photos;

pub use callbacks::{deliver_callbacks, CallbackSettings};
pub use matching::{match_cameras, CameraMatch, CameraPlace};

/// Every integration key starts with this, so a key is told from a session token at a glance
/// (and by secret scanners).
pub const KEY_PREFIX: &str = "pantau_ik_";
/// Characters of a key shown in lists to tell keys apart.
const KEY_SHOWN: usize = KEY_PREFIX.len() + 6;

/// Settings of citizen reports taken from `[reports]`.
#[derive(Debug, Clone)]
pub struct ReportSettings {
    /// Where photos are kept (absolute, or relative to the working folder).
    pub dir: PathBuf,
    pub match_radius_m: f64,
    pub max_photos: usize,
    pub photo_max_bytes: usize,
    pub rate_per_minute: u32,
    pub max_text_chars: usize,
    pub max_future: Duration,
    pub max_age: Duration,
    /// The request body limit of `POST /api/v1/reports`.
    pub max_body_bytes: usize,
}

impl ReportSettings {
    /// `None` when reports are off. `base` is the config file's folder.
    pub fn from_config(c: &ReportsConfig, base: &FsPath) -> Option<Self> {
        c.enabled.then(|| Self {
            dir: base.join(&c.dir),
            match_radius_m: c.match_radius_m,
            max_photos: c.max_photos as usize,
            photo_max_bytes: c.photo_max_kb as usize * 1024,
            rate_per_minute: c.rate_per_minute,
            max_text_chars: c.max_text_chars as usize,
            max_future: Duration::from_secs(c.max_future_s.into()),
            max_age: Duration::from_secs(u64::from(c.max_age_days) * 86_400),
            max_body_bytes: c.max_body_bytes(),
        })
    }
}

/// Citizen reports on this node: their settings, each key's recent reports (rate limit), and
/// turns to decode photos. [`Reports::default`] is off: the report route answers 404.
#[derive(Debug)]
pub struct Reports {
    pub settings: Option<ReportSettings>,
    recent: Mutex<HashMap<String, VecDeque<Instant>>>,
    /// Photo decoding runs for [`DECODING_AT_ONCE`] reports at a time (a large photo takes
    /// tens of MiB).
    decoding: Arc<tokio::sync::Semaphore>,
}

/// Reports decoding their photos at once.
pub const DECODING_AT_ONCE: usize = 2;

impl Default for Reports {
    fn default() -> Self {
        Self::new(None)
    }
}

impl Reports {
    /// Reports with these settings (`None`: off).
    pub fn new(settings: Option<ReportSettings>) -> Self {
        Self {
            settings,
            recent: Mutex::new(HashMap::new()),
            decoding: Arc::new(tokio::sync::Semaphore::new(DECODING_AT_ONCE)),
        }
    }

    /// Takes one report of `integration` in a sliding minute; the seconds to wait when its
    /// minute is full. Keys are integration names, which the database bounds.
    pub fn take(&self, integration: &str) -> Result<(), u64> {
        let per_minute = self
            .settings
            .as_ref()
            .map_or(1, |s| s.rate_per_minute.max(1) as usize);
        let mut all = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        let minute = Duration::from_secs(60);
        let q = all.entry(integration.to_string()).or_default();
        while q.front().is_some_and(|t| now.duration_since(*t) >= minute) {
            q.pop_front();
        }
        if q.len() >= per_minute {
            let oldest = q.front().copied().unwrap_or(now);
            let left = minute.saturating_sub(now.duration_since(oldest));
            return Err(left.as_secs_f64().ceil().max(1.0) as u64);
        }
        q.push_back(now);
        Ok(())
    }
}

/// The integration whose key the request carries: only `Authorization: Bearer <key>`, never
/// a session cookie or token.
#[derive(Debug, Clone)]
pub struct IntegrationKey {
    /// The integration's name, which reports must give as `source`.
    pub name: String,
}

fn key_refused(message: &str) -> ApiError {
    ApiError::new(StatusCode::UNAUTHORIZED, "invalid_key", message)
}

impl FromRequestParts<ApiState> for IntegrationKey {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, s: &ApiState) -> Result<Self, ApiError> {
        let key = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .ok_or_else(|| {
                key_refused(
                    "send the integration's key as `Authorization: Bearer <key>`; a console \
                     session does not work here",
                )
            })?;
        if !key.starts_with(KEY_PREFIX) || key.len() > 128 {
            return Err(key_refused(
                "this is not an integration key (they start with pantau_ik_); an admin makes \
                 one in the console or with `pantau integration add`",
            ));
        }
        let store = s.store().await?;
        let row = store
            .integration_by_key(&sha256_hex(key))
            .await?
            .ok_or_else(|| key_refused("unknown integration key"))?;
        if row.disabled {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "integration_disabled",
                format!(
                    "integration \"{}\" is disabled; an admin can enable it again",
                    row.name
                ),
            ));
        }
        Ok(IntegrationKey { name: row.name })
    }
}

/// A citizen's report, as an integration sends it.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReportRequest {
    /// The integration's name: must be the key's.
    pub source: String,
    /// The report's id in the source app (1 to 128 characters). The same id again is the
    /// same report: the answer is the first one, and nothing new is made.
    pub external_id: String,
    /// What it is about, e.g. `jalan_rusak` (1 to 64 characters).
    pub category: String,
    /// The citizen's words (up to `reports.max_text_chars`).
    pub text: String,
    /// When the citizen reported it: RFC 3339 with `Z` or an offset (`2026-11-24T16:05:00+07:00`),
    /// not in the future and not older than `reports.max_age_days`.
    pub time: String,
    /// WGS84 degrees, -90 to 90.
    pub latitude: f64,
    /// WGS84 degrees, -180 to 180.
    pub longitude: f64,
    /// JPEG or PNG files, base64 (standard alphabet); at most `reports.max_photos`, each at
    /// most `reports.photo_max_kb` KiB. Their metadata (EXIF, GPS, XMP, comments) is removed.
    #[serde(default)]
    pub photos: Vec<String>,
}

/// A report as received.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ReportReceipt {
    /// The report's id: the id of its `citizen_report` event, `report_id` in callbacks.
    pub id: String,
    pub source: String,
    pub external_id: String,
    /// Cameras that may see the place, nearest first.
    pub cameras: Vec<CameraMatch>,
    /// Photos kept.
    pub photos: usize,
    /// RFC 3339.
    pub received_at: String,
}

impl ReportReceipt {
    fn of(r: &pantau_store::ReportRow) -> Self {
        Self {
            id: r.id.clone(),
            source: r.source.clone(),
            external_id: r.external_id.clone(),
            cameras: serde_json::from_value(r.cameras.clone()).unwrap_or_default(),
            photos: r.photos.len(),
            received_at: pantau_events::time::format(r.received_at),
        }
    }
}

fn reports_off() -> ApiError {
    ApiError::not_found(
        "reports_off",
        "citizen reports are off on this node: [reports] enabled = false",
    )
}

/// A time with `Z`, `+00:00` or another offset (`+07:00`), as UTC.
pub fn parse_time_with_offset(s: &str) -> Option<SystemTime> {
    if let Some(t) = pantau_events::time::parse(s) {
        return Some(t);
    }
    let split = s.len().checked_sub(6).filter(|&k| s.is_char_boundary(k))?;
    let (local, offset) = s.split_at(split);
    let sign = match offset.as_bytes() {
        [b'+', _, _, b':', _, _] => 1,
        [b'-', _, _, b':', _, _] => -1,
        _ => return None,
    };
    let hours: u64 = offset.get(1..3)?.parse().ok()?;
    let minutes: u64 = offset.get(4..6)?.parse().ok()?;
    if hours > 23 || minutes > 59 {
        return None;
    }
    let t = pantau_events::time::parse(&format!("{local}Z"))?;
    // The local time minus its offset is UTC.
    let offset = Duration::from_secs(hours * 3600 + minutes * 60);
    if sign > 0 {
        t.checked_sub(offset)
    } else {
        t.checked_add(offset)
    }
}

/// Text fields: length in characters, and nothing PostgreSQL or a log line cannot hold.
fn check_text(
    issues: &mut Vec<Issue>,
    field: &str,
    value: &str,
    min: usize,
    max: usize,
    allow_newlines: bool,
) {
    let n = value.chars().count();
    if n < min || n > max {
        issues.push(Issue {
            path: field.into(),
            message: format!("{n} characters; use {min} to {max}"),
        });
    }
    if value
        .chars()
        .any(|c| c.is_control() && !(allow_newlines && matches!(c, '\n' | '\r' | '\t')))
    {
        issues.push(Issue {
            path: field.into(),
            message: "holds control characters (NUL, escape, ...); remove them".into(),
        });
    }
}

/// Checks everything but the photos; the report's time when it is valid.
fn check_report(
    r: &ReportRequest,
    settings: &ReportSettings,
    issues: &mut Vec<Issue>,
) -> Option<SystemTime> {
    check_text(issues, "external_id", &r.external_id, 1, 128, false);
    check_text(issues, "category", &r.category, 1, 64, false);
    check_text(issues, "text", &r.text, 0, settings.max_text_chars, true);
    let mut at = None;
    match parse_time_with_offset(&r.time) {
        None => issues.push(Issue {
            path: "time".into(),
            message: format!(
                "\"{}\" is not an RFC 3339 time; write e.g. 2026-11-24T16:05:00+07:00",
                r.time.chars().take(40).collect::<String>()
            ),
        }),
        Some(t) => {
            let now = SystemTime::now();
            if t > now + settings.max_future {
                issues.push(Issue {
                    path: "time".into(),
                    message: "is in the future; send the time the citizen reported it, with \
                              its offset"
                        .into(),
                });
            } else if t + settings.max_age < now {
                issues.push(Issue {
                    path: "time".into(),
                    message: format!(
                        "is more than {} days ago; this node takes reports up to then",
                        settings.max_age.as_secs() / 86_400
                    ),
                });
            } else {
                at = Some(t);
            }
        }
    }
    for (field, value, limit) in [
        ("latitude", r.latitude, 90.0),
        ("longitude", r.longitude, 180.0),
    ] {
        #[allow(clippy::neg_cmp_op_on_partial_ord)]
        if !(value.abs() <= limit) {
            issues.push(Issue {
                path: field.into(),
                message: format!(
                    "{value} is out of range: use -{limit} to {limit} degrees (WGS84)"
                ),
            });
        }
    }
    if r.photos.len() > settings.max_photos {
        issues.push(Issue {
            path: "photos".into(),
            message: format!(
                "{} photos; a report may carry at most {}",
                r.photos.len(),
                settings.max_photos
            ),
        });
    }
    at
}

/// Decodes, cleans and checks each photo: `(kind, bytes)` in order, or an issue per bad one.
fn clean_photos(
    photos: &[String],
    max_bytes: usize,
) -> (Vec<(photos::PhotoKind, Vec<u8>)>, Vec<Issue>) {
    let engine = base64::engine::GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        base64::engine::GeneralPurposeConfig::new()
            .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
    );
    let mut good = Vec::new();
    let mut issues = Vec::new();
    for (i, text) in photos.iter().enumerate() {
        let path = format!("photos[{i}]");
        // A data URL's header is tolerated: apps send what their image picker gives.
        let text = text
            .split_once(";base64,")
            .filter(|(head, _)| head.starts_with("data:"))
            .map_or(text.as_str(), |(_, b)| b);
        if text.len() / 4 * 3 > max_bytes + 3 {
            issues.push(Issue {
                path,
                message: format!("is larger than {} KiB", max_bytes / 1024),
            });
            continue;
        }
        let bytes = match engine.decode(text.trim()) {
            Ok(b) => b,
            Err(e) => {
                issues.push(Issue {
                    path,
                    message: format!("is not base64 ({e})"),
                });
                continue;
            }
        };
        if bytes.len() > max_bytes {
            issues.push(Issue {
                path,
                message: format!("is larger than {} KiB", max_bytes / 1024),
            });
            continue;
        }
        match photos::clean(&bytes) {
            Ok(p) => good.push(p),
            Err(why) => issues.push(Issue { path, message: why }),
        }
    }
    (good, issues)
}

fn invalid_report(issues: Vec<Issue>) -> ApiError {
    let list: Vec<String> = issues
        .iter()
        .map(|i| format!("{}: {}", i.path, i.message))
        .collect();
    let mut e = ApiError::new(
        StatusCode::BAD_REQUEST,
        "invalid_report",
        format!("the report is not valid: {}", list.join("; ")),
    );
    e.issues = issues;
    e
}

fn ids() -> &'static IdGenerator {
    static IDS: OnceLock<IdGenerator> = OnceLock::new();
    IDS.get_or_init(IdGenerator::new)
}

/// The places of the cameras this node has (from their calibrations).
async fn camera_places(s: &ApiState) -> Vec<CameraPlace> {
    match &s.cameras {
        Some(r) => r.all().await.iter().filter_map(CameraPlace::of).collect(),
        None => Vec::new(),
    }
}

/// Send a citizen's report (integrations only: `Authorization: Bearer <integration key>`).
/// The same `external_id` again answers 200 with the first report and makes nothing new.
#[utoipa::path(post, path = "/api/v1/reports", tag = "reports",
    security(("integration_key" = [])),
    request_body = ReportRequest,
    responses(
        (status = 201, description = "Received: a citizen_report event", body = ReportReceipt),
        (status = 200, description = "Sent before: the first report", body = ReportReceipt),
        (status = 400, description = "Not valid; `issues` names each field", body = ApiError),
        (status = 401, description = "No key, or not an integration's key", body = ApiError),
        (status = 403, description = "Disabled integration, or `source` is not the key's", body = ApiError),
        (status = 413, description = "Body larger than the photos allow", body = ApiError),
        (status = 429, description = "Over `reports.rate_per_minute`; see Retry-After", body = ApiError)))]
pub async fn submit(
    State(s): State<ApiState>,
    key: IntegrationKey,
    body: Result<Json<ReportRequest>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, ApiError> {
    let settings = s.reports.settings.clone().ok_or_else(reports_off)?;
    if let Err(wait) = s.reports.take(&key.name) {
        let mut e = ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "too_many_reports",
            format!(
                "integration \"{}\" sent {} reports in the last minute; try again in {wait} s",
                key.name, settings.rate_per_minute
            ),
        );
        e.retry_after = Some(wait);
        return Err(e);
    }
    let r = json_body(body)?;
    if r.source != key.name {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "wrong_source",
            format!(
                "source: this key belongs to integration \"{}\"; send that as source",
                key.name
            ),
        ));
    }
    let mut issues = Vec::new();
    let at = check_report(&r, &settings, &mut issues);
    let store = s.store().await?;
    if issues.is_empty() {
        if let Some(first) = store
            .report_by_external_id(&key.name, &r.external_id)
            .await?
        {
            return Ok((StatusCode::OK, Json(ReportReceipt::of(&first))).into_response());
        }
    }
    let cleaned = {
        // Decoding is bounded in memory per photo; bounded in reports at once here.
        let _turn = s
            .reports
            .decoding
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| ApiError::store("photo decoding stopped"))?;
        let photos = r.photos.clone();
        let max = settings.photo_max_bytes;
        tokio::task::spawn_blocking(move || clean_photos(&photos, max))
            .await
            .map_err(|e| ApiError::store(format!("photo check: {e}")))?
    };
    let (photos, photo_issues) = cleaned;
    issues.extend(photo_issues);
    let Some(at) = at.filter(|_| issues.is_empty()) else {
        return Err(invalid_report(issues));
    };

    let cameras = match_cameras(
        r.latitude,
        r.longitude,
        &camera_places(&s).await,
        settings.match_radius_m,
    );
    let camera = cameras
        .first()
        .map_or(REPORTS_CAMERA, |c| c.id.as_str())
        .to_string();
    let id = ids().at(at);
    let names: Vec<String> = photos
        .iter()
        .enumerate()
        .map(|(n, (kind, _))| format!("{id}-{n}.{}", kind.extension()))
        .collect();
    let urls: Vec<String> = (0..photos.len())
        .map(|n| format!("/api/v1/reports/{id}/photos/{n}"))
        .collect();
    let cameras_json = serde_json::to_value(&cameras).unwrap_or_default();
    let details = BTreeMap::from([
        ("source".to_string(), key.name.clone().into()),
        ("external_id".to_string(), r.external_id.clone().into()),
        ("category".to_string(), r.category.clone().into()),
        ("text".to_string(), r.text.clone().into()),
        ("latitude".to_string(), r.latitude.into()),
        ("longitude".to_string(), r.longitude.into()),
        ("photos".to_string(), urls.into()),
        ("cameras".to_string(), cameras_json.clone()),
    ]);
    let mut event =
        Origin::new(&s.settings.topics.site, &camera).citizen_report(ids(), at, details);
    event.id = id;
    // A recent report gets a clip from each matched camera's kept video around its time.
    let clips = report_clips(&s, &cameras, at, &id.to_string());
    if let Some((_, first)) = clips.first() {
        event
            .details
            .insert("evidence".into(), first.clone().into());
        event.details.insert(
            "evidence_clips".into(),
            serde_json::to_value(
                clips
                    .iter()
                    .map(|(camera, clip)| serde_json::json!({ "camera": camera, "clip": clip }))
                    .collect::<Vec<_>>(),
            )
            .unwrap_or_default(),
        );
    }

    // Photos first, under names only this report has; removed again if the report turns out
    // to be a repeat that came in at the same moment.
    write_photos(&settings.dir, &names, &photos).await?;
    let fresh = store
        .insert_report(
            &pantau_store::NewReport {
                source: &key.name,
                external_id: &r.external_id,
                category: &r.category,
                text: &r.text,
                latitude: r.latitude,
                longitude: r.longitude,
                photos: &names,
                cameras: &cameras_json,
            },
            &event,
        )
        .await;
    if !matches!(fresh, Ok(true)) {
        for name in &names {
            let _ = tokio::fs::remove_file(settings.dir.join(name)).await;
        }
    }
    let fresh = fresh?;
    let row = store
        .report_by_external_id(&key.name, &r.external_id)
        .await?
        .ok_or_else(|| ApiError::store("a report just written is not there"))?;
    if !fresh {
        return Ok((StatusCode::OK, Json(ReportReceipt::of(&row))).into_response());
    }
    audit(
        &store,
        &format!("integration:{}", key.name),
        "report.receive",
        &format!("event:{id}"),
        serde_json::json!({
            "external_id": r.external_id, "photos": names.len(), "cameras": cameras.len(),
        }),
    )
    .await?;
    tracing::info!(integration = %key.name, report = %id, camera = %camera, cameras = cameras.len(), photos = names.len(), "citizen report received");
    // The event is in the store already; the outbox takes it to MQTT (and to the store sink,
    // which finds it there and adds nothing).
    if let Some(outbox) = &s.outbox {
        let m = pantau_events::Message::event(&s.settings.topics, &event);
        if let Err(e) = outbox.append(&[m]).await {
            tracing::error!(report = %id, "citizen report stored but not queued for MQTT: {e}");
        }
    }
    let json = serde_json::to_string(&event).unwrap_or_default();
    s.live.publish(LiveMessage::new(
        "event",
        &event.camera,
        Some(&event.rule),
        json,
    ));
    Ok((StatusCode::CREATED, Json(ReportReceipt::of(&row))).into_response())
}

/// Evidence clips of the matched cameras around the report's time, nearest camera first:
/// (camera, clip folder) of each camera that still keeps that video.
fn report_clips(
    s: &ApiState,
    cameras: &[CameraMatch],
    at: SystemTime,
    id: &str,
) -> Vec<(String, String)> {
    let Some(control) = s.evidence.as_ref().and_then(|e| e.clips.clone()) else {
        return Vec::new();
    };
    cameras
        .iter()
        .filter_map(|c| {
            control
                .clip_at(&c.id, at, id, "citizen_report", "citizen_report")
                .map(|clip| (c.id.clone(), clip))
        })
        .collect()
}

/// Writes each photo (temporary file, then rename), creating the folder.
async fn write_photos(
    dir: &FsPath,
    names: &[String],
    photos: &[(photos::PhotoKind, Vec<u8>)],
) -> Result<(), ApiError> {
    if names.is_empty() {
        return Ok(());
    }
    let failed = |e: std::io::Error| {
        tracing::error!(dir = %dir.display(), "cannot write report photos: {e}");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "photos_not_kept",
            "the photos could not be kept on this node; try again later",
        )
    };
    tokio::fs::create_dir_all(dir).await.map_err(failed)?;
    for (name, (_, bytes)) in names.iter().zip(photos) {
        let tmp = dir.join(format!(".{name}.tmp"));
        tokio::fs::write(&tmp, bytes).await.map_err(failed)?;
        tokio::fs::rename(&tmp, dir.join(name))
            .await
            .map_err(failed)?;
    }
    Ok(())
}

/// A report's photo, as kept (metadata removed).
#[utoipa::path(get, path = "/api/v1/reports/{id}/photos/{n}", tag = "reports",
    params(("id" = String, Path, description = "Report (event) id"),
           ("n" = usize, Path, description = "Photo number, from 0")),
    responses((status = 200, description = "JPEG or PNG", content_type = "image/jpeg"),
              (status = 401, body = ApiError), (status = 403, body = ApiError),
              (status = 404, body = ApiError)))]
pub async fn photo(
    State(s): State<ApiState>,
    session: Session,
    Path((id, n)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    session.allow(Permission::View)?;
    let settings = s.reports.settings.clone().ok_or_else(reports_off)?;
    let missing = || {
        ApiError::not_found(
            "photo_not_found",
            format!("report \"{id}\" has no photo {n}"),
        )
    };
    if id.len() != 26 || !id.chars().all(|c| c.is_ascii_alphanumeric()) {
        return Err(missing());
    }
    let n: usize = n.parse().map_err(|_| missing())?;
    let store = s.store().await?;
    // The report's event decides who sees its photos (its camera, or a handover).
    crate::incidents::visible_event(&s, &store, &session, &id)
        .await
        .map_err(|_| missing())?;
    let report = store.report(&id).await?.ok_or_else(missing)?;
    let name = report.photos.get(n).ok_or_else(missing)?;
    let kind = photos::PhotoKind::of_file(name).ok_or_else(missing)?;
    let bytes = tokio::fs::read(settings.dir.join(name))
        .await
        .map_err(|e| {
            tracing::warn!(report = %id, photo = %name, "report photo unreadable: {e}");
            missing()
        })?;
    Ok((
        [
            (header::CONTENT_TYPE, kind.content_type()),
            (header::CACHE_CONTROL, "private, max-age=3600"),
        ],
        bytes,
    )
        .into_response())
}

/// Integrations serve the whole city: only an admin of no agency manages them.
fn city_wide(s: &ApiState, session: &Session) -> Result<(), ApiError> {
    if s.settings.agencies.is_empty() || session.agencies.is_empty() {
        return Ok(());
    }
    Err(ApiError::new(
        StatusCode::FORBIDDEN,
        "forbidden",
        format!(
            "integrations serve every agency; admin \"{}\" of {} cannot manage them, an admin \
             of no agency can",
            session.user,
            session.agencies.join(", ")
        ),
    ))
}

/// An integration as listed (never its key or secret).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct IntegrationView {
    pub name: String,
    /// The key's first characters, to tell keys apart.
    pub key_prefix: String,
    pub callback_url: Option<String>,
    pub created_by: String,
    /// RFC 3339.
    pub created_at: String,
    pub disabled: bool,
}

/// A new integration.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewIntegrationRequest {
    /// 1 to 64 lowercase letters, digits, '-' or '_': the reports' `source`.
    pub name: String,
    /// Where dispatch changes of its reports are POSTed (http or https).
    pub callback_url: Option<String>,
}

/// A new integration with its key and callback secret, shown this once.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CreatedIntegration {
    pub name: String,
    /// Send as `Authorization: Bearer <key>` to `POST /api/v1/reports`. Only its SHA-256 is
    /// kept: it cannot be shown again.
    pub key: String,
    pub key_prefix: String,
    pub callback_url: Option<String>,
    /// Keys the HMAC-SHA256 of `X-Pantau-Signature` on callbacks.
    pub callback_secret: String,
}

/// Changes to an integration.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct IntegrationChange {
    /// True: its key is refused from now on; false: accepted again.
    pub disabled: bool,
}

fn random_hex(bytes: usize) -> String {
    let mut raw = vec![0u8; bytes];
    rand::rng().fill_bytes(&mut raw);
    hex(&raw)
}

/// Checks a callback URL: http or https, a host, no user or password, at most 2000
/// characters.
pub fn check_callback_url(url: &str) -> Result<(), String> {
    let uri: axum::http::Uri = url.parse().map_err(|_| format!("\"{url}\" is not a URL"))?;
    let ok_scheme = matches!(uri.scheme_str(), Some("http" | "https"));
    let authority = uri.authority().map(|a| a.as_str()).unwrap_or("");
    if !ok_scheme || uri.host().is_none_or(str::is_empty) || url.len() > 2000 {
        return Err(format!(
            "\"{url}\" is not an http(s) URL with a host, e.g. https://app.example.org/pantau"
        ));
    }
    if authority.contains('@') {
        return Err(
            "the URL holds a user name or password; the signature authenticates \
                    pantau, leave them out"
                .into(),
        );
    }
    Ok(())
}

/// Makes an integration: a new key and callback secret (shown once; the store keeps the key's
/// SHA-256 and the secret), audited as `integration.create` by `actor`. Used by the API and
/// `pantau integration add`.
pub async fn add_integration(
    store: &pantau_store::Store,
    name: &str,
    callback_url: Option<&str>,
    actor: &str,
) -> Result<CreatedIntegration, ApiError> {
    let mut issues = Vec::new();
    let name_ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
        && !name.starts_with(['-', '_']);
    if !name_ok {
        issues.push(Issue {
            path: "name".into(),
            message: format!(
                "\"{name}\" is not a valid name: use 1 to 64 lowercase letters, digits, '-' or \
                 '_', starting with a letter or digit"
            ),
        });
    }
    if let Some(Err(why)) = callback_url.map(check_callback_url) {
        issues.push(Issue {
            path: "callback_url".into(),
            message: why,
        });
    }
    if !issues.is_empty() {
        let list: Vec<String> = issues
            .iter()
            .map(|i| format!("{}: {}", i.path, i.message))
            .collect();
        let mut e = ApiError::bad_request(list.join("; "));
        e.issues = issues;
        return Err(e);
    }
    let key = format!("{KEY_PREFIX}{}", random_hex(32));
    let secret = random_hex(32);
    let key_prefix = key[..KEY_SHOWN].to_string();
    let created = store
        .create_integration(&pantau_store::NewIntegration {
            name,
            key_sha256: &sha256_hex(&key),
            key_prefix: &key_prefix,
            callback_url,
            callback_secret: &secret,
            created_by: actor,
        })
        .await?;
    if !created {
        return Err(ApiError::conflict(format!(
            "integration \"{name}\" exists; disable it and make one with another name to \
             change its key"
        )));
    }
    audit(
        store,
        actor,
        "integration.create",
        &format!("integration:{name}"),
        serde_json::json!({ "callback_url": callback_url, "key_prefix": key_prefix }),
    )
    .await?;
    tracing::info!(integration = %name, by = %actor, "integration created");
    Ok(CreatedIntegration {
        name: name.to_string(),
        key,
        key_prefix,
        callback_url: callback_url.map(str::to_string),
        callback_secret: secret,
    })
}

/// List integrations (admin).
#[utoipa::path(get, path = "/api/v1/integrations", tag = "reports",
    responses((status = 200, body = [IntegrationView]), (status = 401, body = ApiError),
              (status = 403, body = ApiError)))]
pub async fn list_integrations(
    State(s): State<ApiState>,
    session: Session,
) -> Result<Json<Vec<IntegrationView>>, ApiError> {
    session.allow(Permission::Admin)?;
    city_wide(&s, &session)?;
    let rows = s.store().await?.integrations().await?;
    Ok(Json(
        rows.into_iter()
            .map(|r| IntegrationView {
                name: r.name,
                key_prefix: r.key_prefix,
                callback_url: r.callback_url,
                created_by: r.created_by,
                created_at: pantau_events::time::format(r.created_at),
                disabled: r.disabled,
            })
            .collect(),
    ))
}

/// Create an integration (admin); the answer holds its key and callback secret, shown once.
#[utoipa::path(post, path = "/api/v1/integrations", tag = "reports",
    request_body = NewIntegrationRequest,
    responses((status = 201, body = CreatedIntegration), (status = 400, body = ApiError),
              (status = 401, body = ApiError), (status = 403, body = ApiError),
              (status = 409, body = ApiError)))]
pub async fn create_integration(
    State(s): State<ApiState>,
    session: Session,
    body: Result<Json<NewIntegrationRequest>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, ApiError> {
    session.allow(Permission::Admin)?;
    city_wide(&s, &session)?;
    let req = json_body(body)?;
    let store = s.store().await?;
    let created = add_integration(
        &store,
        &req.name,
        req.callback_url.as_deref(),
        &session.user,
    )
    .await?;
    Ok((StatusCode::CREATED, Json(created)).into_response())
}

/// Disable or enable an integration's key (admin).
#[utoipa::path(patch, path = "/api/v1/integrations/{name}", tag = "reports",
    params(("name" = String, Path, description = "Integration name")),
    request_body = IntegrationChange,
    responses((status = 204), (status = 400, body = ApiError), (status = 401, body = ApiError),
              (status = 403, body = ApiError), (status = 404, body = ApiError)))]
pub async fn change_integration(
    State(s): State<ApiState>,
    session: Session,
    Path(name): Path<String>,
    body: Result<Json<IntegrationChange>, axum::extract::rejection::JsonRejection>,
) -> Result<StatusCode, ApiError> {
    session.allow(Permission::Admin)?;
    city_wide(&s, &session)?;
    let change = json_body(body)?;
    let store = s.store().await?;
    if !store
        .set_integration_disabled(&name, change.disabled)
        .await?
    {
        return Err(ApiError::not_found(
            "integration_not_found",
            format!("no integration \"{name}\""),
        ));
    }
    let action = if change.disabled {
        "integration.disable"
    } else {
        "integration.enable"
    };
    audit(
        &store,
        &session.user,
        action,
        &format!("integration:{name}"),
        serde_json::json!({}),
    )
    .await?;
    tracing::info!(integration = %name, by = %session.user, action, "integration changed");
    Ok(StatusCode::NO_CONTENT)
}

/// A link from one event to another of the same incident.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LinkRequest {
    /// The other event's id.
    pub event_id: String,
    /// Why, for the record (up to 2000 characters).
    pub note: Option<String>,
}

/// Two events linked as one incident.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Link {
    /// The other event.
    pub event_id: String,
    pub linked_by: String,
    /// RFC 3339.
    pub linked_at: String,
}

impl Link {
    pub fn of(r: pantau_store::LinkRow) -> Self {
        Self {
            event_id: r.event_id,
            linked_by: r.linked_by,
            linked_at: pantau_events::time::format(r.linked_at),
        }
    }
}

/// Link a citizen report and an alert as one incident (dispatcher, admin); audited on both,
/// shown in the detail of both.
#[utoipa::path(post, path = "/api/v1/events/{id}/links", tag = "events",
    params(("id" = String, Path, description = "Event id")),
    request_body = LinkRequest,
    responses((status = 201, description = "Linked", body = Link),
              (status = 200, description = "Linked before", body = Link),
              (status = 400, body = ApiError), (status = 401, body = ApiError),
              (status = 403, body = ApiError), (status = 404, body = ApiError),
              (status = 409, description = "Not a report and an alert", body = ApiError)))]
pub async fn link(
    State(s): State<ApiState>,
    session: Session,
    Path(id): Path<String>,
    body: Result<Json<LinkRequest>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, ApiError> {
    session.allow(Permission::Dispatch)?;
    let req = json_body(body)?;
    if let Some(n) = &req.note {
        if n.chars().count() > 2000 || n.contains('\0') {
            return Err(ApiError::bad_request(
                "note: write up to 2000 characters (no NUL)",
            ));
        }
    }
    if req.event_id == id {
        return Err(ApiError::bad_request(
            "event_id: an event cannot be linked to itself",
        ));
    }
    let store = s.store().await?;
    let mut events = Vec::new();
    for e in [&id, &req.event_id] {
        let row = crate::incidents::visible_event(&s, &store, &session, e).await?;
        events.push(row);
    }
    let is_report = |r: &pantau_store::EventRow| {
        r.payload.get("kind").and_then(|k| k.as_str()) == Some("citizen_report")
    };
    if events.iter().any(|r| r.severity == "info") || !events.iter().any(is_report) {
        return Err(ApiError::conflict(
            "a link joins a citizen report and an alert (or two reports) of one incident; \
             these are not",
        ));
    }
    let fresh = store
        .link_events(&id, &req.event_id, &session.user, req.note.as_deref())
        .await?;
    let link = store
        .links_of(&id)
        .await?
        .into_iter()
        .find(|l| l.event_id == req.event_id)
        .map(Link::of)
        .ok_or_else(|| ApiError::store("a link just written is not there"))?;
    if fresh {
        tracing::info!(user = %session.user, event = %id, with = %req.event_id, "incident link");
        let camera = events[0]
            .payload
            .get("camera")
            .and_then(|c| c.as_str())
            .unwrap_or_default()
            .to_string();
        let data = serde_json::json!({
            "event_id": id, "linked_to": req.event_id, "linked_by": link.linked_by,
            "linked_at": link.linked_at,
        });
        s.live
            .publish(LiveMessage::new("link", &camera, None, data.to_string()));
    }
    let status = if fresh {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(link)).into_response())
}

/// What the source of a citizen report hears of a dispatch action: state changes
/// (acknowledged, assigned, escalated, closed), with the note only on close (how it ended, for
/// the citizen); operators' other notes and the unit's name stay inside. `None` for actions
/// that say nothing to the source.
pub fn callback_for(
    action: &str,
    state: &str,
    note: Option<&str>,
    at: &str,
) -> Option<serde_json::Value> {
    // Notes and handovers between agencies are the command centers' own business.
    if action == "note" || action == "handover" {
        return None;
    }
    Some(serde_json::json!({
        "state": state,
        "note": if action == "close" { note } else { None },
        "at": at,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_with_offsets_are_utc() {
        let utc = parse_time_with_offset("2026-11-24T09:05:00Z").expect("utc");
        assert_eq!(
            parse_time_with_offset("2026-11-24T16:05:00+07:00"),
            Some(utc)
        );
        assert_eq!(
            parse_time_with_offset("2026-11-24T04:05:00-05:00"),
            Some(utc)
        );
        assert_eq!(
            parse_time_with_offset("2026-11-24T16:05:00.250+07:00"),
            Some(utc + Duration::from_millis(250))
        );
        for bad in [
            "",
            "yesterday",
            "2026-11-24T16:05:00+7",
            "2026-11-24T16:05:00+24:00",
            "2026-11-24 16:05",
            "éééééé",
        ] {
            assert_eq!(parse_time_with_offset(bad), None, "{bad}");
        }
    }

    #[test]
    fn the_rate_is_per_integration_and_says_how_long_to_wait() {
        let config = ReportsConfig {
            rate_per_minute: 2,
            ..ReportsConfig::default()
        };
        let intake = Reports::new(ReportSettings::from_config(&config, FsPath::new("/")));
        assert!(intake.take("sipokat").is_ok());
        assert!(intake.take("sipokat").is_ok());
        let wait = intake.take("sipokat").expect_err("over");
        assert!((1..=60).contains(&wait), "{wait}");
        assert!(
            intake.take("jaki").is_ok(),
            "another key has its own minute"
        );
    }

    #[test]
    fn callbacks_carry_state_changes_and_only_the_closing_note() {
        assert_eq!(callback_for("note", "acknowledged", Some("x"), "t"), None);
        let ack = callback_for("acknowledge", "acknowledged", Some("internal"), "t").expect("ack");
        assert_eq!(ack["note"], serde_json::Value::Null);
        let close = callback_for("close", "closed", Some("fixed"), "t").expect("close");
        assert_eq!(close["note"], "fixed");
        assert_eq!(close["state"], "closed");
    }

    #[test]
    fn callback_urls_are_http_with_a_host_and_no_password() {
        assert!(check_callback_url("https://app.example.org/pantau?x=1").is_ok());
        assert!(check_callback_url("http://10.0.0.5:8080/cb").is_ok());
        for bad in [
            "ftp://h/x",
            "https://",
            "/relative",
            "https://u:p@h/x",
            "not a url",
        ] {
            assert!(check_callback_url(bad).is_err(), "{bad}");
        }
    }
}
