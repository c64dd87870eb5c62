//! Cameras: live status, and add / change / remove while running.
//!
//! A change is validated exactly like a `[[cameras]]` entry of the config file, handed to the
//! running node through [`CameraControl`] (which restarts ingest and analysis for that camera
//! only) and then written to the cameras file (`api.cameras_file`), which pantau reads at start
//! on top of the config file. So a restart keeps what operators changed, and the config file is
//! never rewritten.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::path::{Path as FsPath, PathBuf};
use std::pin::Pin;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use pantau_config::config::{CameraConfig, CameraSettings, ConfigIssues, IngestConfig};
use pantau_events::camera::CameraStatus;
use serde::{Deserialize, Serialize};

use crate::agencies::{camera_not_found, Scope};
use crate::auth::{audit, Permission, Session};
use crate::error::{json_body, ApiError, Issue};
use crate::ApiState;

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// How the API starts, restarts and stops a camera in the running node.
pub trait CameraControl: Send + Sync + std::fmt::Debug {
    /// Starts `settings`, replacing the camera with the same id if it runs.
    fn apply(&self, settings: CameraSettings) -> BoxFuture<'_, Result<(), String>>;
    /// Stops and forgets camera `id`.
    fn remove(&self, id: String) -> BoxFuture<'_, Result<(), String>>;
}

/// What the cameras file holds.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct CamerasFile {
    /// Config-file cameras removed from the console.
    #[serde(default)]
    removed: BTreeSet<String>,
    /// Cameras added or changed from the console (they replace config cameras with the same id).
    #[serde(default)]
    cameras: Vec<CameraConfig>,
}

#[derive(Debug)]
struct Cameras {
    /// Every camera as it runs now, by id.
    current: BTreeMap<String, CameraConfig>,
    file: CamerasFile,
}

/// The cameras of this node as the API manages them.
#[derive(Debug)]
pub struct CameraRegistry {
    defaults: IngestConfig,
    base: PathBuf,
    path: PathBuf,
    control: Arc<dyn CameraControl>,
    state: tokio::sync::Mutex<Cameras>,
    /// In a fleet the cameras live in the database, not in the cameras file.
    fleet: Option<FleetLink>,
}

/// A fleet node's way to the fleet's cameras.
#[derive(Debug, Clone)]
pub struct FleetLink {
    pub db: Arc<crate::Db>,
    /// This node's name (`node.name`).
    pub node: String,
    /// `fleet.lease_s`: nodes not heard from for this long are down.
    pub lease: std::time::Duration,
    /// Wakes the node's fleet loop so a change applies at once.
    pub wake: Arc<tokio::sync::Notify>,
}

/// The result of reading the cameras file at start.
#[derive(Debug)]
pub struct Loaded {
    pub registry: CameraRegistry,
    /// What should run: the config file's cameras with the file's changes applied.
    pub cameras: Vec<CameraConfig>,
    /// Cameras the file added, changed or removed (for the log).
    pub overridden: Vec<String>,
}

impl CameraRegistry {
    /// Reads `path` (absent is fine) and merges it over `from_config`.
    pub fn load(
        path: &FsPath,
        from_config: &[CameraConfig],
        defaults: IngestConfig,
        base: &FsPath,
        control: Arc<dyn CameraControl>,
    ) -> Result<Loaded, String> {
        let file: CamerasFile = match std::fs::read_to_string(path) {
            Ok(text) => toml::from_str(&text).map_err(|e| {
                format!(
                    "{}: {} (fix or delete the file; it holds cameras changed from the console)",
                    path.display(),
                    e.message()
                )
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => CamerasFile::default(),
            Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
        };
        let mut current: BTreeMap<String, CameraConfig> = from_config
            .iter()
            .map(|c| (c.id.clone(), c.clone()))
            .collect();
        let mut overridden = Vec::new();
        for id in &file.removed {
            if current.remove(id).is_some() {
                overridden.push(format!("{id} (removed)"));
            }
        }
        for c in &file.cameras {
            overridden.push(c.id.clone());
            current.insert(c.id.clone(), c.clone());
        }
        let cameras = current.values().cloned().collect();
        Ok(Loaded {
            registry: CameraRegistry {
                defaults,
                base: base.to_path_buf(),
                path: path.to_path_buf(),
                control,
                state: tokio::sync::Mutex::new(Cameras { current, file }),
                fleet: None,
            },
            cameras,
            overridden,
        })
    }

    /// Validates like the config file; problems are listed under `camera.`.
    pub fn validate(&self, c: &CameraConfig) -> Result<CameraSettings, ApiError> {
        let mut issues = ConfigIssues::default();
        let env = |name: &str| std::env::var(name).ok();
        let settings = c.resolve(&self.defaults, "camera", &self.base, &env, &mut issues);
        match settings {
            Some(s) if issues.is_empty() => Ok(s),
            _ => {
                let mut e = ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "invalid_camera",
                    format!("camera \"{}\" is not valid: {issues}", c.id),
                );
                e.issues = issues
                    .iter()
                    .map(|i| Issue {
                        path: i.path.clone(),
                        message: i.message.clone(),
                    })
                    .collect();
                Err(e)
            }
        }
    }

    /// Makes this registry the fleet's: cameras are read from and written to the database,
    /// and the node's fleet loop runs them wherever their lease is.
    pub fn in_fleet(mut self, link: FleetLink) -> Self {
        self.fleet = Some(link);
        self
    }

    /// The fleet link, when this node is part of one.
    pub fn fleet(&self) -> Option<&FleetLink> {
        self.fleet.as_ref()
    }

    pub async fn get(&self, id: &str) -> Option<CameraConfig> {
        if self.fleet.is_some() {
            return self.all().await.into_iter().find(|c| c.id == id);
        }
        self.state.lock().await.current.get(id).cloned()
    }

    pub async fn all(&self) -> Vec<CameraConfig> {
        if let Some(f) = &self.fleet {
            match self.fleet_cameras(f).await {
                Ok(all) => return all,
                Err(e) => {
                    tracing::warn!("fleet cameras not read, showing this node's: {}", e.message)
                }
            }
        }
        self.state.lock().await.current.values().cloned().collect()
    }

    async fn fleet_cameras(&self, f: &FleetLink) -> Result<Vec<CameraConfig>, ApiError> {
        let state =
            f.db.store()
                .await?
                .fleet_state()
                .await
                .map_err(ApiError::store)?;
        Ok(state
            .cameras
            .into_iter()
            .filter(|c| !c.removed)
            .filter_map(|c| serde_json::from_value(c.config).ok())
            .collect())
    }

    /// Which node runs each camera (and the status it last reported, for cameras of other
    /// nodes); `None` when this node is not part of a fleet.
    pub async fn placement(&self) -> Option<BTreeMap<String, (String, Option<serde_json::Value>)>> {
        let f = self.fleet.as_ref()?;
        let store = f.db.store().await.ok()?;
        let state = store.fleet_state().await.ok()?;
        Some(
            state
                .held()
                .map(|l| (l.camera.clone(), (l.node.clone(), l.status.clone())))
                .collect(),
        )
    }

    /// Adds (`create`) or replaces a camera: validate, check what the API may reach, start,
    /// persist.
    async fn put(
        &self,
        mut c: CameraConfig,
        create: bool,
        reach: &crate::ApiSettings,
    ) -> Result<(), ApiError> {
        let mut st = self.state.lock().await;
        let existing = match &self.fleet {
            Some(f) => self
                .fleet_cameras(f)
                .await?
                .into_iter()
                .find(|x| x.id == c.id),
            None => st.current.get(&c.id).cloned(),
        };
        match (&existing, create) {
            (Some(_), true) => {
                return Err(ApiError::conflict(format!(
                    "camera \"{}\" exists; PUT /api/v1/cameras/{} changes it",
                    c.id, c.id
                )))
            }
            (None, false) => {
                return Err(ApiError::not_found(
                    "camera_not_found",
                    format!("no camera \"{}\"; POST /api/v1/cameras adds one", c.id),
                ))
            }
            _ => {}
        }
        if let Some(old) = &existing {
            keep_secrets(&mut c, old);
        }
        // Checked before validation reads the variable or opens the file: whether a variable
        // outside the prefix is set, or a file outside the media folders exists, is none of
        // the API's business.
        within_reach(&c, existing.as_ref(), &self.base, reach)?;
        let settings = self.validate(&c)?;
        if let Some(f) = &self.fleet {
            // The node holding the camera's lease (re)starts it; this one may not be it.
            let json = serde_json::to_value(&c).map_err(|e| ApiError::store(e.to_string()))?;
            f.db.store()
                .await?
                .fleet_put_camera(&c.id, &json)
                .await
                .map_err(ApiError::store)?;
            f.wake.notify_one();
            return Ok(());
        }
        self.control.apply(settings).await.map_err(|e| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "camera_start_failed",
                format!("camera \"{}\" could not start: {e}", c.id),
            )
        })?;
        st.current.insert(c.id.clone(), c.clone());
        st.file.removed.remove(&c.id);
        st.file.cameras.retain(|x| x.id != c.id);
        st.file.cameras.push(c);
        self.save(&st.file)
    }

    async fn delete(&self, id: &str) -> Result<(), ApiError> {
        if let Some(f) = &self.fleet {
            let removed =
                f.db.store()
                    .await?
                    .fleet_remove_camera(id)
                    .await
                    .map_err(ApiError::store)?;
            if !removed {
                return Err(ApiError::not_found(
                    "camera_not_found",
                    format!("no camera \"{id}\""),
                ));
            }
            f.wake.notify_one();
            return Ok(());
        }
        let mut st = self.state.lock().await;
        if !st.current.contains_key(id) {
            return Err(ApiError::not_found(
                "camera_not_found",
                format!("no camera \"{id}\""),
            ));
        }
        self.control.remove(id.to_string()).await.map_err(|e| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "camera_stop_failed",
                format!("camera \"{id}\" could not be stopped: {e}"),
            )
        })?;
        st.current.remove(id);
        st.file.cameras.retain(|x| x.id != id);
        st.file.removed.insert(id.to_string());
        self.save(&st.file)
    }

    /// Writes the file atomically and readable by pantau's user only ([`write_private`]).
    fn save(&self, file: &CamerasFile) -> Result<(), ApiError> {
        let fail = |e: String| {
            tracing::error!("{e}");
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "cameras_file",
                format!(
                    "the change runs but was not saved: {e}; fix the file's folder permissions"
                ),
            )
        };
        let text = toml::to_string_pretty(file).map_err(|e| fail(e.to_string()))?;
        let text = format!(
            "# Written by pantau: cameras added, changed (`cameras`) or removed (`removed`) from the\n\
             # console or API. Read at start on top of the config file. Edit with care.\n\n{text}"
        );
        write_private(&self.path, text.as_bytes()).map_err(fail)
    }
}

/// Replaces `path` with `bytes` so that a crash leaves the old file or the new one, never a
/// part: a temporary file (mode 0600: it may hold camera passwords) is written, flushed to
/// disk, renamed over `path`, and the folder is flushed too.
pub fn write_private(path: &FsPath, bytes: &[u8]) -> Result<(), String> {
    use std::io::Write as _;
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
    if let Some(dir) = dir {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    }
    let tmp = path.with_extension("toml.tmp");
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let write = || -> std::io::Result<()> {
        let mut f = options.open(&tmp)?;
        // An existing temporary file keeps its mode; make sure.
        #[cfg(unix)]
        f.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
        f.write_all(bytes)?;
        f.sync_all()
    };
    write().map_err(|e| format!("cannot write {}: {e}", tmp.display()))?;
    std::fs::rename(&tmp, path).map_err(|e| format!("cannot replace {}: {e}", path.display()))?;
    if let Some(dir) = dir {
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
    }
    Ok(())
}

/// What a camera from the API may read on this machine: password variables with
/// `api.camera_env_prefix` only, and `file://` videos under `api.media_dirs` only (regular
/// files: a FIFO would block ingest). What the camera already had (from the config file) stays
/// allowed, so its lines and zones can still be edited.
fn within_reach(
    c: &CameraConfig,
    existing: Option<&CameraConfig>,
    base: &FsPath,
    reach: &crate::ApiSettings,
) -> Result<(), ApiError> {
    let refuse = |path: &str, message: String| {
        let mut e = ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_camera",
            format!("camera \"{}\" is not valid: {path}: {message}", c.id),
        );
        e.issues = vec![Issue {
            path: path.into(),
            message,
        }];
        e
    };
    if let Some(var) = &c.password_env {
        let kept = existing.is_some_and(|old| old.password_env.as_ref() == Some(var));
        if !kept && !var.starts_with(&reach.camera_env_prefix) {
            return Err(refuse(
                "camera.password_env",
                format!(
                    "cameras from the API may only read variables whose names start with {} \
                     (api.camera_env_prefix); export the password as {}<NAME> and name that",
                    reach.camera_env_prefix, reach.camera_env_prefix
                ),
            ));
        }
    }
    if let Some(rest) = c.url.strip_prefix("file://") {
        let kept = existing.is_some_and(|old| old.url == c.url);
        if !kept {
            let path = base.join(rest);
            let inside = std::fs::canonicalize(&path).ok().filter(|real| {
                reach.media_dirs.iter().any(|dir| real.starts_with(dir))
                    && std::fs::metadata(real).is_ok_and(|m| m.is_file())
            });
            if inside.is_none() {
                let dirs = if reach.media_dirs.is_empty() {
                    "none are configured, so only network cameras can be added from the API"
                        .to_string()
                } else {
                    reach
                        .media_dirs
                        .iter()
                        .map(|d| d.display().to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                };
                return Err(refuse(
                    "camera.url",
                    format!(
                        "file:// cameras from the API may only play regular files under \
                         api.media_dirs ({dirs}); add the folder there or the camera to the \
                         config file"
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// A PUT without a password keeps the stored one; a URL whose password was shown redacted
/// keeps the stored URL.
fn keep_secrets(c: &mut CameraConfig, old: &CameraConfig) {
    if c.password.is_none() && c.password_env.is_none() {
        c.password = old.password.clone();
        c.password_env = old.password_env.clone();
    }
    if c.url.contains(":***@") && redact_url(&old.url) == c.url {
        c.url = old.url.clone();
    }
}

use pantau_config::redact_url;

/// A camera's definition as the API shows it: secrets redacted.
fn shown(mut c: CameraConfig) -> CameraConfig {
    c.url = redact_url(&c.url);
    c.password = None;
    c
}

/// A camera in the list: its live status and its definition.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CameraView {
    /// Live ingest status and counters (state, fps, frames decoded/analysed/dropped,
    /// reconnects, problem); absent while the camera is disabled or runs nowhere. In a fleet,
    /// a camera of another node shows the status that node last reported (within a lease).
    #[schema(value_type = Object)]
    pub status: Option<serde_json::Value>,
    /// The definition, as in a `[[cameras]]` entry (passwords left out).
    #[schema(value_type = Object)]
    pub config: Option<CameraConfig>,
    /// Rules snoozed on this camera now.
    pub snoozes: Vec<crate::snooze::SnoozeView>,
    /// The node that runs the camera (`node.name`); absent when it runs nowhere now.
    pub node: Option<String>,
}

fn local(st: CameraStatus) -> Option<serde_json::Value> {
    serde_json::to_value(st).ok()
}

/// Where cameras run: in a fleet from the leases, else this node runs what its ingest has.
async fn placement(s: &ApiState) -> Option<BTreeMap<String, (String, Option<serde_json::Value>)>> {
    match &s.cameras {
        Some(r) => r.placement().await,
        None => None,
    }
}

/// List cameras with live status and counters.
#[utoipa::path(get, path = "/api/v1/cameras", tag = "cameras",
    responses((status = 200, body = [CameraView]), (status = 401, body = ApiError)))]
pub async fn list(
    State(s): State<ApiState>,
    session: Session,
) -> Result<Json<Vec<CameraView>>, ApiError> {
    session.allow(Permission::View)?;
    let scope = s.scope(&session).await;
    let mut configs: BTreeMap<String, CameraConfig> = match &s.cameras {
        Some(r) => r
            .all()
            .await
            .into_iter()
            .filter(|c| scope.sees_camera(&c.id))
            .map(|c| (c.id.clone(), c))
            .collect(),
        None => BTreeMap::new(),
    };
    let mut placed = placement(&s).await;
    let me = &s.settings.topics.node;
    let mut out: Vec<CameraView> = s
        .feed
        .statuses()
        .into_iter()
        .filter(|st| scope.sees_camera(&st.id))
        .map(|st| {
            if let Some(p) = placed.as_mut() {
                p.remove(&st.id);
            }
            CameraView {
                config: configs.remove(&st.id).map(shown),
                snoozes: s.snoozes.of_camera(&st.id),
                node: Some(me.clone()),
                status: local(st),
            }
        })
        .collect();
    out.extend(configs.into_values().map(|c| {
        let (node, status) = placed
            .as_mut()
            .and_then(|p| p.remove(&c.id))
            .map_or((None, None), |(n, st)| (Some(n), st));
        CameraView {
            status,
            node,
            snoozes: s.snoozes.of_camera(&c.id),
            config: Some(shown(c)),
        }
    }));
    Ok(Json(out))
}

/// One camera.
#[utoipa::path(get, path = "/api/v1/cameras/{id}", tag = "cameras",
    params(("id" = String, Path, description = "Camera id")),
    responses((status = 200, body = CameraView), (status = 404, body = ApiError)))]
pub async fn one(
    State(s): State<ApiState>,
    session: Session,
    Path(id): Path<String>,
) -> Result<Json<CameraView>, ApiError> {
    session.allow(Permission::View)?;
    if !s.scope(&session).await.sees_camera(&id) {
        return Err(camera_not_found(&id));
    }
    let config = match &s.cameras {
        Some(r) => r.get(&id).await,
        None => None,
    };
    let (node, status) = match s.feed.status(&id) {
        Some(st) => (Some(s.settings.topics.node.clone()), local(st)),
        None => placement(&s)
            .await
            .and_then(|mut p| p.remove(&id))
            .map_or((None, None), |(n, st)| (Some(n), st)),
    };
    if status.is_none() && config.is_none() {
        return Err(ApiError::not_found(
            "camera_not_found",
            format!("no camera \"{id}\"; GET /api/v1/cameras lists them"),
        ));
    }
    Ok(Json(CameraView {
        status,
        node,
        snoozes: s.snoozes.of_camera(&id),
        config: config.map(shown),
    }))
}

fn registry(s: &ApiState) -> Result<&CameraRegistry, ApiError> {
    s.cameras.as_deref().ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "cameras_read_only",
            "this pantau does not manage cameras from the API",
        )
    })
}

/// Add a camera; it starts at once and is kept across restarts.
#[utoipa::path(post, path = "/api/v1/cameras", tag = "cameras",
    request_body(content = Object, description = "A camera as in a `[[cameras]]` entry of the config file (id, url, lines, zones, analysis_fps, ...)"),
    responses((status = 201, body = CameraView), (status = 400, body = ApiError),
              (status = 403, body = ApiError), (status = 409, body = ApiError),
              (status = 422, description = "Not valid; `issues` lists every problem", body = ApiError)))]
pub async fn create(
    State(s): State<ApiState>,
    session: Session,
    body: Result<Json<CameraConfig>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, ApiError> {
    session.allow(Permission::Admin)?;
    let c = json_body(body)?;
    let id = c.id.clone();
    let scope = s.scope(&session).await;
    check_group(&s, &session, &scope, &c)?;
    registry(&s)?.put(c.clone(), true, &s.settings).await?;
    changed(&s, &session, "camera.create", &id).await;
    Ok((
        StatusCode::CREATED,
        Json(CameraView {
            status: s.feed.status(&id).and_then(local),
            node: s.feed.status(&id).map(|_| s.settings.topics.node.clone()),
            snoozes: s.snoozes.of_camera(&id),
            config: Some(shown(c)),
        }),
    )
        .into_response())
}

/// Change a camera (lines, zones, analysis rate, source, ...); it restarts with the change.
#[utoipa::path(put, path = "/api/v1/cameras/{id}", tag = "cameras",
    params(("id" = String, Path, description = "Camera id")),
    request_body(content = Object, description = "The whole camera as in a `[[cameras]]` entry; `id` must match the path. A missing password keeps the stored one."),
    responses((status = 200, body = CameraView), (status = 400, body = ApiError),
              (status = 403, body = ApiError), (status = 404, body = ApiError),
              (status = 422, body = ApiError)))]
pub async fn update(
    State(s): State<ApiState>,
    session: Session,
    Path(id): Path<String>,
    body: Result<Json<CameraConfig>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<CameraView>, ApiError> {
    session.allow(Permission::Admin)?;
    let c = json_body(body)?;
    if c.id != id {
        return Err(ApiError::bad_request(format!(
            "id \"{}\" in the body differs from \"{id}\" in the path; cameras cannot be renamed, \
             add a new one and remove this one instead",
            c.id
        )));
    }
    let scope = s.scope(&session).await;
    if !scope.sees_camera(&id) {
        return Err(camera_not_found(&id));
    }
    check_group(&s, &session, &scope, &c)?;
    let r = registry(&s)?;
    r.put(c, false, &s.settings).await?;
    changed(&s, &session, "camera.update", &id).await;
    Ok(Json(CameraView {
        status: s.feed.status(&id).and_then(local),
        node: s.feed.status(&id).map(|_| s.settings.topics.node.clone()),
        snoozes: s.snoozes.of_camera(&id),
        config: r.get(&id).await.map(shown),
    }))
}

/// Remove a camera; it stops at once and stays removed across restarts.
#[utoipa::path(delete, path = "/api/v1/cameras/{id}", tag = "cameras",
    params(("id" = String, Path, description = "Camera id")),
    responses((status = 204), (status = 403, body = ApiError), (status = 404, body = ApiError)))]
pub async fn remove(
    State(s): State<ApiState>,
    session: Session,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    session.allow(Permission::Admin)?;
    if !s.scope(&session).await.sees_camera(&id) {
        return Err(camera_not_found(&id));
    }
    registry(&s)?.delete(&id).await?;
    changed(&s, &session, "camera.delete", &id).await;
    Ok(StatusCode::NO_CONTENT)
}

/// A camera's `group` must be one an agency owns (when there are agencies), and one of the
/// admin's own agencies when the admin belongs to some.
fn check_group(
    s: &ApiState,
    session: &Session,
    scope: &Scope,
    c: &CameraConfig,
) -> Result<(), ApiError> {
    if let Some(problem) =
        pantau_config::agencies::camera_group_problem(&s.settings.agencies, c.group.as_deref())
    {
        let mut e = ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_camera",
            format!("camera \"{}\" is not valid: camera.group: {problem}", c.id),
        );
        e.issues = vec![Issue {
            path: "camera.group".into(),
            message: problem,
        }];
        return Err(e);
    }
    match c.group.as_deref() {
        Some(g) if !scope.owns_group(s, g) => Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!(
                "admin \"{}\" of {} may put cameras only in its agencies' groups, not \"{g}\"",
                session.user,
                session.agencies.join(", ")
            ),
        )),
        _ => Ok(()),
    }
}

/// Audit and log a camera change (the change itself already happened).
async fn changed(s: &ApiState, session: &Session, action: &str, id: &str) {
    tracing::info!(user = %session.user, camera = id, action, "camera changed from the API");
    if let Ok(store) = s.store().await {
        if let Err(e) = audit(
            &store,
            &session.user,
            action,
            &format!("camera:{id}"),
            serde_json::json!({}),
        )
        .await
        {
            tracing::warn!(camera = id, "camera change not audited: {}", e.message);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_passwords_are_redacted() {
        assert_eq!(redact_url("rtsp://u:p@h:554/x"), "rtsp://u:***@h:554/x");
        assert_eq!(redact_url("rtsp://u:p@ss@h/"), "rtsp://u:***@h/");
        assert_eq!(redact_url("rtsp://h/x@y"), "rtsp://h/x@y");
        assert_eq!(redact_url("rtsp://u@h/x"), "rtsp://u@h/x");
        assert_eq!(redact_url("file:///a.mp4"), "file:///a.mp4");
    }
}
