//! Users, roles, sessions and login.
//!
//! Passwords are stored as argon2id hashes; a login creates a random session token whose
//! SHA-256 is stored with an expiry. Browsers get it as an `HttpOnly`, `SameSite=Strict`
//! cookie; programs send `Authorization: Bearer <token>`. Every route names the permission it
//! needs ([`Permission`]) and [`Session::allow`] checks it. Failed logins are counted per
//! (user name, client address) and per client address ([`LoginLimiter`]; an address may fail
//! four times as often, as a whole control room can sit behind one); behind a reverse proxy the
//! client address comes from `X-Forwarded-For` when the proxy is trusted ([`client_ip`]).
//! Password hashing runs a few at a time ([`HASHING_AT_ONCE`]). Passwords and tokens are never
//! logged.

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use argon2::password_hash::{rand_core::OsRng, PasswordHash, SaltString};
use argon2::{Argon2, PasswordHasher, PasswordVerifier};
use axum::extract::{ConnectInfo, FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{json_body, ApiError};
use crate::ApiState;

/// The cookie that carries a browser's session token.
pub const COOKIE: &str = "pantau_session";

/// What a user may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Watches the wall and acknowledges alerts.
    Operator,
    /// An operator who also assigns, escalates and closes incidents.
    Dispatcher,
    /// Traffic history and export only.
    Planner,
    /// Everything, including cameras and users.
    Admin,
}

impl Role {
    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "operator" => Some(Role::Operator),
            "dispatcher" => Some(Role::Dispatcher),
            "planner" => Some(Role::Planner),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Operator => "operator",
            Role::Dispatcher => "dispatcher",
            Role::Planner => "planner",
            Role::Admin => "admin",
        }
    }

    pub fn can(self, p: Permission) -> bool {
        use Permission::*;
        match self {
            Role::Admin => true,
            Role::Operator => matches!(p, View | Acknowledge),
            Role::Dispatcher => matches!(p, View | Acknowledge | Dispatch),
            Role::Planner => matches!(p, History),
        }
    }
}

/// What a route needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permission {
    /// Cameras, live stream, frames, events and snapshots.
    View,
    /// Acknowledge an alert.
    Acknowledge,
    /// Assign, note, escalate and close incidents.
    Dispatch,
    /// Traffic history and CSV export.
    History,
    /// Cameras and users.
    Admin,
}

impl Permission {
    fn roles(self) -> &'static str {
        match self {
            Permission::View => "operator, dispatcher or admin",
            Permission::Acknowledge => "operator, dispatcher or admin",
            Permission::Dispatch => "dispatcher or admin",
            Permission::History => "planner or admin",
            Permission::Admin => "admin",
        }
    }
}

/// The logged-in user of a request.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Session {
    pub user: String,
    pub role: Role,
    /// The agencies the user belongs to (`[agencies]`); empty: every camera.
    pub agencies: Vec<String>,
}

impl Session {
    /// `Ok` when the role may do `p`; a 403 that names the roles that may otherwise.
    pub fn allow(&self, p: Permission) -> Result<(), ApiError> {
        if self.role.can(p) {
            Ok(())
        } else {
            Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                format!(
                    "user \"{}\" has role {}; this needs {}",
                    self.user,
                    self.role.as_str(),
                    p.roles()
                ),
            ))
        }
    }
}

impl Session {
    /// Does this admin manage a user of `agencies`? An admin of no agency manages everyone;
    /// an admin of agencies only users all of whose agencies are its own.
    pub fn manages(&self, agencies: &[String]) -> bool {
        self.agencies.is_empty()
            || (!agencies.is_empty() && agencies.iter().all(|a| self.agencies.contains(a)))
    }

    /// May this admin give a user `agencies`? They must exist, and an admin of agencies gives
    /// only its own (and never none, which would see every camera).
    fn may_give(&self, s: &ApiState, agencies: &[String]) -> Result<(), ApiError> {
        crate::agencies::check_agencies(s, "agencies", agencies)?;
        if self.manages(agencies) {
            return Ok(());
        }
        Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!(
                "admin \"{}\" of {} gives users only its own agencies (at least one)",
                self.user,
                self.agencies.join(", ")
            ),
        ))
    }
}

/// The SHA-256 of the request's session token, as the store keeps it.
pub(crate) fn token_sha256(headers: &HeaderMap) -> Option<String> {
    token_from(headers).map(|t| sha256_hex(&t))
}

pub(crate) fn token_from(headers: &HeaderMap) -> Option<String> {
    if let Some(v) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        if let Some(t) = v.strip_prefix("Bearer ") {
            return Some(t.trim().to_string());
        }
    }
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|kv| {
            let (k, v) = kv.trim().split_once('=')?;
            (k == COOKIE).then(|| v.to_string())
        })
}

pub(crate) fn sha256_hex(token: &str) -> String {
    hex(&Sha256::digest(token.as_bytes()))
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl FromRequestParts<ApiState> for Session {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, s: &ApiState) -> Result<Self, ApiError> {
        let token = token_from(&parts.headers).ok_or_else(ApiError::unauthenticated)?;
        let store = s.store().await?;
        let row = store.session_user(&sha256_hex(&token)).await?;
        let (user, role, agencies) = row.ok_or_else(|| {
            let mut e = ApiError::unauthenticated();
            e.message = "the session has expired or was ended; log in again".into();
            e
        })?;
        Ok(Session {
            user,
            role: Role::parse(&role).ok_or_else(|| ApiError::store("unknown role in users"))?,
            agencies,
        })
    }
}

/// Counts failed logins in a sliding window, per (user name, client address) and per client
/// address, so that wrong passwords from one place never lock a user out everywhere. A name
/// that fails from many places gets a growing delay instead of a lock ([`LoginLimiter::delay`]).
#[derive(Debug)]
pub struct LoginLimiter {
    window: Duration,
    limit: usize,
    failures: Mutex<HashMap<String, VecDeque<Instant>>>,
}

/// The keys one login attempt counts against.
#[derive(Debug, Clone)]
pub struct AttemptKeys {
    /// `pair:<name>|<address>`: blocks at the limit.
    pair: String,
    /// `addr:<address>`: blocks at four times the limit (a control room may share one).
    addr: String,
    /// `user:<name>`: never blocks; slows every attempt on the name down once it fails often.
    user: String,
}

impl AttemptKeys {
    /// `name` is already checked ([`pantau_config::outputs::valid_user_name`]).
    pub fn new(name: &str, client: Option<IpAddr>) -> Self {
        let name = name.to_lowercase();
        let addr = client.map_or_else(|| "unknown".to_string(), |a| a.to_string());
        Self {
            pair: format!("pair:{name}|{addr}"),
            addr: format!("addr:{addr}"),
            user: format!("user:{name}"),
        }
    }
}

/// Keys the limiter holds at most; past that, attempts with new keys are refused until old
/// ones expire (an attacker rotating addresses cannot grow the map without bound).
const LIMITER_KEYS: usize = 100_000;

impl LoginLimiter {
    pub fn new(limit: u32, window: Duration) -> Self {
        Self {
            window,
            limit: limit.max(1) as usize,
            failures: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one attempt before the password is checked, in one step: refused (with the
    /// seconds to wait) when the pair or the address is over its limit, otherwise counted as
    /// a failure until [`LoginLimiter::succeed`] takes it back. Checking first and counting
    /// after the (slow) verification would let parallel attempts all pass the check.
    pub fn begin(&self, keys: &AttemptKeys) -> Result<(), u64> {
        let mut all = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        let mut wait = None;
        for (key, limit) in [(&keys.pair, self.limit), (&keys.addr, self.limit * 4)] {
            if let Some(q) = all.get_mut(key) {
                self.expire(q, now);
                if q.len() >= limit {
                    let oldest = q.front().copied().unwrap_or(now);
                    let left = self.window.saturating_sub(now.duration_since(oldest));
                    wait = wait.max(Some(left.as_secs().max(1)));
                }
            }
        }
        if let Some(wait) = wait {
            return Err(wait);
        }
        if all.len() >= LIMITER_KEYS {
            all.retain(|_, q| {
                q.back()
                    .is_some_and(|t| now.duration_since(*t) <= self.window)
            });
            if all.len() >= LIMITER_KEYS {
                return Err(self.window.as_secs().max(1));
            }
        }
        for k in [&keys.pair, &keys.addr, &keys.user] {
            all.entry(k.clone()).or_default().push_back(now);
        }
        Ok(())
    }

    fn expire(&self, q: &mut VecDeque<Instant>, now: Instant) {
        while q
            .front()
            .is_some_and(|t| now.duration_since(*t) > self.window)
        {
            q.pop_front();
        }
    }

    /// How long to wait before checking a password for this name: nothing while the name's
    /// failures (from every address, this attempt included) are within the limit, then 250 ms
    /// doubling with each further failure, at most 4 s. A right password still works, only
    /// slower; guessing from many addresses at once gets slow.
    pub fn delay(&self, keys: &AttemptKeys) -> Duration {
        let mut all = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        let Some(q) = all.get_mut(&keys.user) else {
            return Duration::ZERO;
        };
        self.expire(q, Instant::now());
        let over = q.len().saturating_sub(self.limit) as u32;
        if over == 0 {
            Duration::ZERO
        } else {
            Duration::from_millis(250u64 << (over - 1).min(4))
        }
    }

    /// The keys it holds failures for (`pair:<name>|<address>`, `addr:<address>`,
    /// `user:<name>`).
    pub fn keys(&self) -> Vec<String> {
        self.failures
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .keys()
            .cloned()
            .collect()
    }

    /// A right password: the name's failures from this address are forgotten, and this
    /// attempt no longer counts against the address or the name.
    pub fn succeed(&self, keys: &AttemptKeys) {
        let mut all = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        all.remove(&keys.pair);
        for k in [&keys.addr, &keys.user] {
            if let Some(q) = all.get_mut(k) {
                q.pop_back();
                if q.is_empty() {
                    all.remove(k);
                }
            }
        }
    }
}

/// The client's address: the peer's, or, when the peer is a trusted proxy, the last address in
/// `X-Forwarded-For` that is not itself a trusted proxy. A malformed header from a trusted
/// proxy counts as no header.
pub fn client_ip(
    extensions: &axum::http::Extensions,
    headers: &HeaderMap,
    trusted: &[ipnet::IpNet],
) -> Option<IpAddr> {
    let peer = extensions.get::<ConnectInfo<SocketAddr>>()?.0.ip();
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|n| n.contains(ip));
    if !is_trusted(&peer) {
        return Some(peer);
    }
    let mut hops = Vec::new();
    for value in headers.get_all("x-forwarded-for") {
        let Ok(text) = value.to_str() else {
            return Some(peer);
        };
        for hop in text.split(',') {
            match hop.trim().parse::<IpAddr>() {
                Ok(ip) => hops.push(ip),
                Err(_) => return Some(peer),
            }
            if hops.len() > 32 {
                return Some(peer);
            }
        }
    }
    Some(
        hops.iter()
            .rev()
            .find(|ip| !is_trusted(ip))
            .or(hops.first())
            .copied()
            .unwrap_or(peer),
    )
}

/// Hashes a password with argon2id (a random salt each time).
pub fn hash_password(password: &str) -> Result<String, ApiError> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                format!("password hashing failed: {e}"),
            )
        })
}

/// Password hashing and verification running at once, at most.
pub const HASHING_AT_ONCE: usize = 2;

/// A turn to hash or verify a password (login, user create and change): waits up to 2 s, then
/// answers 503 with Retry-After.
async fn hashing_permit(
    hashing: &Arc<tokio::sync::Semaphore>,
) -> Result<tokio::sync::OwnedSemaphorePermit, ApiError> {
    match tokio::time::timeout(Duration::from_secs(2), hashing.clone().acquire_owned()).await {
        Ok(Ok(permit)) => Ok(permit),
        _ => {
            let mut e = ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "busy",
                "too many logins at once; try again in a second",
            );
            e.retry_after = Some(1);
            Err(e)
        }
    }
}

/// [`hash_password`] on a blocking thread (argon2 takes tens of milliseconds on purpose).
async fn hash_off_thread(password: String) -> Result<String, ApiError> {
    tokio::task::spawn_blocking(move || hash_password(&password))
        .await
        .map_err(|e| ApiError::store(e.to_string()))?
}

fn verify_password(password: &str, hash: &str) -> bool {
    PasswordHash::new(hash).is_ok_and(|h| {
        Argon2::default()
            .verify_password(password.as_bytes(), &h)
            .is_ok()
    })
}

/// Passwords: at least 10 characters, at most 200.
pub fn check_password(password: &str) -> Result<(), ApiError> {
    let n = password.chars().count();
    if !(10..=200).contains(&n) {
        return Err(ApiError::bad_request(
            "password: use 10 to 200 characters (a passphrase of a few words is good)",
        ));
    }
    Ok(())
}

fn check_user_name(name: &str) -> Result<(), ApiError> {
    if pantau_config::outputs::valid_user_name(name) {
        Ok(())
    } else {
        Err(ApiError::bad_request(
            "name: use 1 to 64 letters, digits, '.', '-' or '_'",
        ))
    }
}

/// Creates `name` with `role` and `password`, or sets role and password (and enables it) when
/// it exists, ending its sessions. Used by `pantau user add`.
pub async fn upsert_user(
    store: &pantau_store::Store,
    name: &str,
    role: Role,
    password: &str,
    agencies: &[String],
) -> Result<bool, ApiError> {
    check_user_name(name)?;
    check_password(password)?;
    let hash = hash_off_thread(password.to_string()).await?;
    let created = store
        .upsert_user(name, role.as_str(), &hash, agencies)
        .await?;
    audit(
        store,
        "pantau",
        if created {
            "user.create"
        } else {
            "user.update"
        },
        &format!("user:{name}"),
        serde_json::json!({ "role": role.as_str(), "password_changed": !created, "agencies": agencies }),
    )
    .await?;
    Ok(created)
}

/// What [`first_admin`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FirstAdmin {
    /// There was no such user: it was created as admin.
    Created,
    /// The user has this password already: nothing changed.
    Unchanged,
    /// The password differed: it was set, and the user's sessions ended.
    PasswordSet,
}

/// The start-up admin from `api.admin_user` and its password variable: created as admin when
/// missing; otherwise only its password is set, when it differs (ending its sessions). A user
/// that an admin disabled or demoted stays so: restarting pantau never undoes that.
pub async fn first_admin(
    store: &pantau_store::Store,
    name: &str,
    password: &str,
) -> Result<(FirstAdmin, Option<Role>, bool), ApiError> {
    check_user_name(name)?;
    check_password(password)?;
    if let Some((role, hash, disabled)) = store.user_secret(name).await? {
        let role = Role::parse(&role);
        let given = password.to_string();
        let same = tokio::task::spawn_blocking(move || verify_password(&given, &hash))
            .await
            .unwrap_or(false);
        if same {
            return Ok((FirstAdmin::Unchanged, role, disabled));
        }
        let hash = hash_off_thread(password.to_string()).await?;
        store
            .update_user(
                name,
                pantau_store::UserUpdate {
                    password_hash: Some(&hash),
                    ..Default::default()
                },
            )
            .await?;
        audit(
            store,
            "pantau",
            "user.update",
            &format!("user:{name}"),
            serde_json::json!({ "password_changed": true, "from": "environment" }),
        )
        .await?;
        return Ok((FirstAdmin::PasswordSet, role, disabled));
    }
    let hash = hash_off_thread(password.to_string()).await?;
    if store
        .create_user(name, Role::Admin.as_str(), &hash, &[])
        .await?
    {
        audit(
            store,
            "pantau",
            "user.create",
            &format!("user:{name}"),
            serde_json::json!({ "role": "admin", "from": "environment" }),
        )
        .await?;
    }
    Ok((FirstAdmin::Created, Some(Role::Admin), false))
}

/// Appends to the audit trail.
pub async fn audit(
    store: &pantau_store::Store,
    actor: &str,
    action: &str,
    target: &str,
    detail: serde_json::Value,
) -> Result<(), ApiError> {
    store.audit(actor, action, target, &detail).await?;
    Ok(())
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    pub user: String,
    pub password: String,
}

impl std::fmt::Display for LoginRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "login of {}", self.user) // never the password
    }
}

/// A new session.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct LoginResponse {
    pub user: String,
    pub role: Role,
    /// Send as `Authorization: Bearer <token>` (browsers also get it as a cookie).
    pub token: String,
    /// RFC 3339.
    pub expires_at: String,
}

/// Log in with user name and password.
#[utoipa::path(post, path = "/api/v1/auth/login", tag = "auth",
    request_body = LoginRequest,
    responses(
        (status = 200, description = "Logged in; also sets the session cookie", body = LoginResponse),
        (status = 401, description = "Wrong user name or password", body = ApiError),
        (status = 429, description = "Too many failed attempts; see Retry-After", body = ApiError)))]
pub async fn login(
    State(s): State<ApiState>,
    extensions: axum::http::Extensions,
    headers: HeaderMap,
    body: Result<Json<LoginRequest>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, ApiError> {
    let req = json_body(body)?;
    // Bounded before anything is kept or logged: a long or odd name never reaches the
    // limiter's map or the log.
    if !pantau_config::outputs::valid_user_name(&req.user) || req.password.len() > 1024 {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "invalid_credentials",
            "wrong user name or password",
        ));
    }
    let https = headers
        .get("x-forwarded-proto")
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"https"));
    let client = client_ip(&extensions, &headers, &s.settings.trusted_proxies);
    let keys = AttemptKeys::new(&req.user, client);
    if let Err(wait) = s.limiter.begin(&keys) {
        tracing::info!(user = %req.user, client = ?client, "login refused: too many failures");
        let mut e = ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "too_many_attempts",
            format!("too many failed logins; try again in {wait} s"),
        );
        e.retry_after = Some(wait);
        return Err(e);
    }
    let delay = s.limiter.delay(&keys);
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let store = s.store().await?;
    let row = store.login_user(&req.user).await?;
    let role = row.as_ref().map(|r| r.0.clone()).unwrap_or_default();
    let hash: Option<String> = row.map(|r| r.1);
    let password = req.password.clone();
    // Without such a user, still spend the time of a verification. At most a few run at once
    // (each takes ~19 MiB and a core for tens of ms); the rest are told to come back.
    let _permit = hashing_permit(&s.hashing).await?;
    let ok = tokio::task::spawn_blocking(move || {
        let known = hash.is_some();
        verify_password(&password, &hash.unwrap_or_else(dummy_hash)) && known
    })
    .await
    .unwrap_or(false);
    let Some(role) = ok.then(|| Role::parse(&role)).flatten() else {
        tracing::info!(user = %req.user, client = ?client, "failed login");
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "invalid_credentials",
            "wrong user name or password",
        ));
    };
    s.limiter.succeed(&keys);
    let mut raw = [0u8; 32];
    rand::rng().fill_bytes(&mut raw);
    let token = hex(&raw);
    let hours = s.settings.session_hours;
    let expires = SystemTime::now() + Duration::from_secs(3600 * u64::from(hours));
    store
        .create_session(&sha256_hex(&token), &req.user, expires)
        .await?;
    audit(
        &store,
        &req.user,
        "login",
        &format!("user:{}", req.user),
        serde_json::json!({ "client": client.map(|c| c.to_string()) }),
    )
    .await?;
    tracing::info!(user = %req.user, role = role.as_str(), client = ?client, "login");
    // Behind a TLS proxy the cookie is only ever sent over TLS.
    let secure = if https { "; Secure" } else { "" };
    let cookie = format!(
        "{COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{secure}",
        3600 * hours
    );
    let body = LoginResponse {
        user: req.user,
        role,
        token,
        expires_at: pantau_events::time::format(expires),
    };
    Ok(([(header::SET_COOKIE, cookie)], Json(body)).into_response())
}

/// A hash of a random string, verified against when the user does not exist so that an
/// unknown name takes as long as a wrong password.
fn dummy_hash() -> String {
    static HASH: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    HASH.get_or_init(|| {
        let mut raw = [0u8; 16];
        rand::rng().fill_bytes(&mut raw);
        hash_password(&hex(&raw)).unwrap_or_default()
    })
    .clone()
}

/// End this session.
#[utoipa::path(post, path = "/api/v1/auth/logout", tag = "auth",
    responses((status = 204, description = "Logged out; the cookie is cleared")))]
pub async fn logout(State(s): State<ApiState>, headers: HeaderMap) -> Result<Response, ApiError> {
    if let (Some(token), Some(db)) = (token_from(&headers), s.db.as_ref()) {
        let store = db.store().await?;
        store.delete_session(&sha256_hex(&token)).await?;
    }
    let clear = format!("{COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0");
    Ok((StatusCode::NO_CONTENT, [(header::SET_COOKIE, clear)]).into_response())
}

/// Who is logged in.
#[utoipa::path(get, path = "/api/v1/auth/me", tag = "auth",
    responses((status = 200, body = Session), (status = 401, body = ApiError)))]
pub async fn me(session: Session) -> Json<Session> {
    Json(session)
}

/// A user as the API shows it (never the hash).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct UserView {
    pub name: String,
    pub role: Role,
    /// Its agencies; empty: every camera.
    pub agencies: Vec<String>,
    pub disabled: bool,
    /// RFC 3339.
    pub created_at: String,
}

/// A new user.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewUser {
    pub name: String,
    pub role: Role,
    /// 10 to 200 characters.
    pub password: String,
    /// Agencies of `[agencies]` it belongs to; empty (default): every camera. An admin of
    /// agencies creates users of its own agencies only.
    #[serde(default)]
    pub agencies: Vec<String>,
}

/// Changes to a user; fields left out stay.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UserChange {
    pub role: Option<Role>,
    pub password: Option<String>,
    pub disabled: Option<bool>,
    pub agencies: Option<Vec<String>>,
}

/// List users (admin).
#[utoipa::path(get, path = "/api/v1/users", tag = "users",
    responses((status = 200, body = [UserView]), (status = 403, body = ApiError)))]
pub async fn list_users(
    State(s): State<ApiState>,
    session: Session,
) -> Result<Json<Vec<UserView>>, ApiError> {
    session.allow(Permission::Admin)?;
    let rows = s.store().await?.users().await?;
    Ok(Json(
        rows.into_iter()
            .filter(|r| session.manages(&r.agencies))
            .map(|r| UserView {
                role: Role::parse(&r.role).unwrap_or(Role::Operator),
                agencies: r.agencies,
                name: r.name,
                disabled: r.disabled,
                created_at: pantau_events::time::format(r.created_at),
            })
            .collect(),
    ))
}

/// Create a user (admin).
#[utoipa::path(post, path = "/api/v1/users", tag = "users", request_body = NewUser,
    responses((status = 201, body = UserView), (status = 400, body = ApiError),
              (status = 403, body = ApiError), (status = 409, body = ApiError)))]
pub async fn create_user(
    State(s): State<ApiState>,
    session: Session,
    body: Result<Json<NewUser>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, ApiError> {
    session.allow(Permission::Admin)?;
    let u = json_body(body)?;
    check_user_name(&u.name)?;
    check_password(&u.password)?;
    session.may_give(&s, &u.agencies)?;
    let store = s.store().await?;
    let hash = {
        let _permit = hashing_permit(&s.hashing).await?;
        hash_off_thread(u.password.clone()).await?
    };
    if !store
        .create_user(&u.name, u.role.as_str(), &hash, &u.agencies)
        .await?
    {
        return Err(ApiError::conflict(format!(
            "user \"{}\" exists; PATCH /api/v1/users/{} changes it",
            u.name, u.name
        )));
    }
    audit(
        &store,
        &session.user,
        "user.create",
        &format!("user:{}", u.name),
        serde_json::json!({ "role": u.role.as_str(), "agencies": u.agencies }),
    )
    .await?;
    Ok((
        StatusCode::CREATED,
        Json(UserView {
            name: u.name,
            role: u.role,
            agencies: u.agencies,
            disabled: false,
            created_at: pantau_events::time::format(SystemTime::now()),
        }),
    )
        .into_response())
}

/// Change a user's role, password or disabled flag (admin).
#[utoipa::path(patch, path = "/api/v1/users/{name}", tag = "users", request_body = UserChange,
    params(("name" = String, Path, description = "User name")),
    responses((status = 204), (status = 400, body = ApiError), (status = 403, body = ApiError),
              (status = 404, body = ApiError), (status = 409, body = ApiError)))]
pub async fn change_user(
    State(s): State<ApiState>,
    session: Session,
    Path(name): Path<String>,
    body: Result<Json<UserChange>, axum::extract::rejection::JsonRejection>,
) -> Result<StatusCode, ApiError> {
    session.allow(Permission::Admin)?;
    let c = json_body(body)?;
    if let Some(p) = &c.password {
        check_password(p)?;
    }
    if let Some(a) = &c.agencies {
        session.may_give(&s, a)?;
    }
    let store = s.store().await?;
    managed_user(&store, &session, &name).await?;
    let demotes = c.role.is_some_and(|r| r != Role::Admin) || c.disabled == Some(true);
    if demotes {
        last_admin_guard(&store, &name).await?;
    }
    let hash = match c.password.clone() {
        Some(p) => {
            let _permit = hashing_permit(&s.hashing).await?;
            Some(hash_off_thread(p).await?)
        }
        None => None,
    };
    // A new password or a disabled account ends its sessions (in the same transaction).
    let found = store
        .update_user(
            &name,
            pantau_store::UserUpdate {
                role: c.role.map(Role::as_str),
                password_hash: hash.as_deref(),
                disabled: c.disabled,
                agencies: c.agencies.as_deref(),
            },
        )
        .await?;
    if !found {
        return Err(ApiError::not_found(
            "user_not_found",
            format!("no user \"{name}\""),
        ));
    }
    audit(&store, &session.user, "user.update", &format!("user:{name}"), serde_json::json!({
        "role": c.role.map(Role::as_str), "password_changed": c.password.is_some(), "disabled": c.disabled,
        "agencies": c.agencies,
    })).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Delete a user (admin).
#[utoipa::path(delete, path = "/api/v1/users/{name}", tag = "users",
    params(("name" = String, Path, description = "User name")),
    responses((status = 204), (status = 403, body = ApiError), (status = 404, body = ApiError),
              (status = 409, body = ApiError)))]
pub async fn delete_user(
    State(s): State<ApiState>,
    session: Session,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    session.allow(Permission::Admin)?;
    let store = s.store().await?;
    managed_user(&store, &session, &name).await?;
    last_admin_guard(&store, &name).await?;
    if !store.delete_user(&name).await? {
        return Err(ApiError::not_found(
            "user_not_found",
            format!("no user \"{name}\""),
        ));
    }
    audit(
        &store,
        &session.user,
        "user.delete",
        &format!("user:{name}"),
        serde_json::json!({}),
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// 404 for a user the admin does not manage (one outside its agencies), as for no user.
async fn managed_user(
    store: &pantau_store::Store,
    session: &Session,
    name: &str,
) -> Result<(), ApiError> {
    check_user_name(name)?;
    let found = store.users().await?.into_iter().find(|u| u.name == name);
    match found {
        Some(u) if session.manages(&u.agencies) => Ok(()),
        _ => Err(ApiError::not_found(
            "user_not_found",
            format!("no user \"{name}\""),
        )),
    }
}

/// Refuses to remove or demote the last enabled admin.
async fn last_admin_guard(store: &pantau_store::Store, name: &str) -> Result<(), ApiError> {
    let (is_admin, others) = store.admin_standing(name).await?;
    if is_admin && others == 0 {
        return Err(ApiError::conflict(format!(
            "\"{name}\" is the last admin; make another user admin first"
        )));
    }
    Ok(())
}
