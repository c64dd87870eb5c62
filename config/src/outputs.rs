//! Configuration of where facts go: the durable outbox, MQTT and the time-series store.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::config::ConfigIssues;

/// The MQTT broker to publish to. Leave the section out and `pantau run` starts an embedded
/// broker instead (see `[embedded]`).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct MqttConfig {
    /// Broker host name or address.
    pub host: String,
    /// Default 1883.
    #[serde(default = "default_mqtt_port")]
    pub port: u16,
    /// Other brokers of the same cluster or bridge, `host:port`, tried in turn when the one in
    /// use cannot be reached (same credentials and TLS). Default: none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fallbacks: Vec<String>,
    #[serde(default)]
    pub username: Option<String>,
    /// Environment variable holding the broker password.
    #[serde(default)]
    pub password_env: Option<String>,
    /// Topic prefix. Default `pantau`.
    #[serde(default = "default_prefix")]
    pub prefix: String,
    /// Client id. Default `pantau-<node name>`.
    #[serde(default)]
    pub client_id: Option<String>,
    /// Keep-alive in seconds. Default 15. Range 5..=600.
    #[serde(default = "default_keep_alive")]
    pub keep_alive_s: u64,
    /// Connect with TLS (usually port 8883). Needs `ca_file`.
    #[serde(default)]
    pub tls: bool,
    /// PEM file of the CA that signed the broker's certificate.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate and key, for brokers that require client certificates.
    #[serde(default)]
    pub client_cert: Option<PathBuf>,
    #[serde(default)]
    pub client_key: Option<PathBuf>,
    /// The largest MQTT packet in KiB, sent or received; set it to the broker's limit
    /// (Mosquitto's `message_size_limit`). A record larger than this goes to the outbox's dead
    /// letters instead of being sent. Default 256. Range 1..=262144.
    #[serde(default = "default_max_packet_kb")]
    pub max_packet_kb: u32,
}

fn default_max_packet_kb() -> u32 {
    256
}

fn default_mqtt_port() -> u16 {
    1883
}
fn default_prefix() -> String {
    "pantau".into()
}
fn default_keep_alive() -> u64 {
    15
}

/// The PostgreSQL / TimescaleDB store.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    /// Connection string (`host=... user=... dbname=...` or `postgresql://...`). Prefer
    /// `url_env` when it holds a password.
    #[serde(default)]
    pub url: Option<String>,
    /// Environment variable holding the connection string.
    #[serde(default)]
    pub url_env: Option<String>,
    /// Schema for pantau's tables. Default `pantau`.
    #[serde(default = "default_schema")]
    pub schema: String,
}

fn default_schema() -> String {
    "pantau".into()
}

/// What happens when the outbox is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum WhenFull {
    /// Delete the oldest undelivered records (counted and logged): operators keep getting
    /// fresh events.
    #[default]
    DropOldest,
    /// Refuse new records (counted and logged): history keeps what happened first.
    RejectNew,
}

/// The durable outbox between analytics and the sinks.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct OutboxConfig {
    /// File of the outbox. Relative paths start at the config file's folder. Default
    /// `var/outbox.redb`.
    #[serde(default = "default_outbox_path")]
    pub path: PathBuf,
    /// Size cap in MiB. Default 512. Range 1..=1048576.
    #[serde(default = "default_max_mb")]
    pub max_mb: u64,
    /// `drop_oldest` (default) or `reject_new`.
    #[serde(default)]
    pub when_full: WhenFull,
    /// Period of the count aggregates in seconds. Default 60. Range 10..=3600.
    #[serde(default = "default_count_period")]
    pub count_period_s: u32,
    /// On shutdown, how long the sinks may take to deliver what the outbox holds; what is left
    /// stays in the outbox for the next start. Default 10. Range 0..=600.
    #[serde(default = "default_drain_timeout")]
    pub drain_timeout_s: u32,
}

fn default_drain_timeout() -> u32 {
    10
}

impl Default for OutboxConfig {
    fn default() -> Self {
        Self {
            path: default_outbox_path(),
            max_mb: default_max_mb(),
            when_full: WhenFull::default(),
            count_period_s: default_count_period(),
            drain_timeout_s: default_drain_timeout(),
        }
    }
}

fn default_outbox_path() -> PathBuf {
    PathBuf::from("var/outbox.redb")
}
fn default_max_mb() -> u64 {
    512
}
fn default_count_period() -> u32 {
    60
}

/// Event snapshots: the full-resolution frame with boxes and rule geometry, as JPEG.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SnapshotConfig {
    /// Take snapshots. Default true.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Folder, relative to the config file. Default `var/snapshots`.
    #[serde(default = "default_snapshot_dir")]
    pub dir: PathBuf,
    /// Days to keep snapshots. Default 7. Range 1..=3650.
    #[serde(default = "default_retention")]
    pub retention_days: u32,
    /// JPEG quality. Default 80. Range 10..=100.
    #[serde(default = "default_quality")]
    pub quality: u8,
}

impl Default for SnapshotConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            dir: default_snapshot_dir(),
            retention_days: default_retention(),
            quality: default_quality(),
        }
    }
}

fn yes() -> bool {
    true
}
fn default_snapshot_dir() -> PathBuf {
    PathBuf::from("var/snapshots")
}
fn default_retention() -> u32 {
    7
}
fn default_quality() -> u8 {
    80
}

/// The HTTP API and web console.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ApiConfig {
    /// Serve the API and console. Default true.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Address to listen on. Default `127.0.0.1:8080`.
    #[serde(default = "default_api_listen")]
    pub listen: String,
    /// The first administrator's user name. Default `admin`.
    #[serde(default = "default_admin_user")]
    pub admin_user: String,
    /// Environment variable holding the first administrator's password. When it is set at
    /// start, `admin_user` is created with role admin, or given this password if it exists.
    /// Default `PANTAU_ADMIN_PASSWORD`. `pantau user add` creates users too.
    #[serde(default = "default_admin_password_env")]
    pub admin_password_env: String,
    /// How long a login lasts, in hours. Default 12. Range 1..=720.
    #[serde(default = "default_session_hours")]
    pub session_hours: u32,
    /// Failed logins allowed per (user name, client address) within 5 minutes, and four times
    /// as many per client address; more are refused from there until the window passes (the
    /// name still logs in from elsewhere). Default 5. Range 1..=100.
    #[serde(default = "default_login_attempts")]
    pub login_attempts: u32,
    /// Origins (e.g. `https://wall.example.org`) whose pages may call the API from a browser
    /// (CORS). Default none: only the console served by pantau itself.
    #[serde(default)]
    pub cors_origins: Vec<String>,
    /// Where cameras added, changed or removed from the console or API are kept (TOML, read
    /// at start, overriding config cameras with the same id). Default `var/cameras.toml`.
    #[serde(default = "default_cameras_file")]
    pub cameras_file: PathBuf,
    /// Addresses (`10.0.0.5`) or networks (`10.0.0.0/24`) of reverse proxies whose
    /// `X-Forwarded-For` header names the real client. From any other peer the header is
    /// ignored. Default none: the connecting address is the client.
    #[serde(default)]
    pub trusted_proxies: Vec<String>,
    /// Cameras added or changed from the API may read their password only from environment
    /// variables whose names start with this. Default `PANTAU_CAM_`. The config file itself
    /// may name any variable.
    #[serde(default = "default_camera_env_prefix")]
    pub camera_env_prefix: String,
    /// Folders whose videos `file://` cameras added or changed from the API may play. Default
    /// none: from the API only network cameras. The config file itself may name any file.
    #[serde(default)]
    pub media_dirs: Vec<PathBuf>,
    /// Who may read `/metrics`: `open` (anyone who reaches the port, the Prometheus
    /// convention), `token` (`Authorization: Bearer` with the value of `metrics_token_env`) or
    /// `off`. Default `open`.
    #[serde(default)]
    pub metrics: MetricsAccess,
    /// Environment variable holding the `/metrics` token when `metrics = "token"`. Default
    /// `PANTAU_METRICS_TOKEN`.
    #[serde(default = "default_metrics_token_env")]
    pub metrics_token_env: String,
    /// Map tiles behind the console's map: a URL template with `{z}`, `{x}` and `{y}` (slippy
    /// map tiles, 256 pixels, Web Mercator), e.g. `https://tile.example.org/{z}/{x}/{y}.png` on
    /// the command centre's own tile server. The console's pages may then load images from
    /// that origin. Default none: the map draws cameras and lanes over a plain background and
    /// needs nothing from outside.
    #[serde(default)]
    pub map_tiles: Option<String>,
    /// Limits on what clients may hold and send.
    #[serde(default)]
    pub limits: ApiLimits,
}

/// Who may read `/metrics`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MetricsAccess {
    #[default]
    Open,
    Token,
    Off,
}

/// Limits on HTTP clients. Every one is on by default.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ApiLimits {
    /// Seconds a client has to send a request's headers; slower connections are closed.
    /// Default 10. Range 1..=300.
    #[serde(default = "default_header_timeout")]
    pub header_timeout_s: u32,
    /// Seconds a request (other than the live stream) may take, body included; then 408.
    /// Default 30. Range 1..=3600.
    #[serde(default = "default_request_timeout")]
    pub request_timeout_s: u32,
    /// Open connections at most; more are answered 503 and closed. Default 512.
    /// Range 1..=65536.
    #[serde(default = "default_max_connections")]
    pub max_connections: u32,
    /// Live event streams (`/api/v1/live`) open at once, in all. Default 64. Range 1..=10000.
    #[serde(default = "default_max_streams")]
    pub max_streams: u32,
    /// Live event streams one user may hold open. Default 8. Range 1..=1000.
    #[serde(default = "default_max_streams_per_user")]
    pub max_streams_per_user: u32,
    /// Rows one JSON `/history` answer may hold; a larger query gets 422 and should be
    /// narrowed or exported as CSV (streamed). Default 100000. Range 100..=10000000.
    #[serde(default = "default_history_rows")]
    pub history_rows: u32,
}

impl Default for ApiLimits {
    fn default() -> Self {
        Self {
            header_timeout_s: default_header_timeout(),
            request_timeout_s: default_request_timeout(),
            max_connections: default_max_connections(),
            max_streams: default_max_streams(),
            max_streams_per_user: default_max_streams_per_user(),
            history_rows: default_history_rows(),
        }
    }
}

fn default_header_timeout() -> u32 {
    10
}
fn default_request_timeout() -> u32 {
    30
}
fn default_max_connections() -> u32 {
    512
}
fn default_max_streams() -> u32 {
    64
}
fn default_max_streams_per_user() -> u32 {
    8
}
fn default_history_rows() -> u32 {
    100_000
}
fn default_camera_env_prefix() -> String {
    "PANTAU_CAM_".into()
}
fn default_metrics_token_env() -> String {
    "PANTAU_METRICS_TOKEN".into()
}

/// The origin (`https://tile.example.org`) of an `api.map_tiles` template, or why the template
/// is not one: http(s), a host, no user or password (browsers see it), `{z}`, `{x}` and `{y}`
/// and no other placeholder, nothing that would break a header (quotes, `;`, spaces).
pub fn tile_origin(template: &str) -> Result<String, String> {
    // Messages show the template with any password hidden.
    let shown = crate::redact_url(template);
    for p in ["{z}", "{x}", "{y}"] {
        if !template.contains(p) {
            return Err(format!(
                "\"{shown}\" has no {p}; write e.g. https://tile.example.org/{{z}}/{{x}}/{{y}}.png"
            ));
        }
    }
    let filled = template
        .replace("{z}", "0")
        .replace("{x}", "0")
        .replace("{y}", "0");
    if filled.contains(['{', '}', '"', '\'', ';', ',', '\\'])
        || filled.contains(char::is_whitespace)
    {
        return Err(format!(
            "\"{shown}\" holds a character or placeholder other than {{z}}, {{x}} and {{y}} \
             that a tile URL cannot have"
        ));
    }
    let url =
        url::Url::parse(&filled).map_err(|e| format!("\"{shown}\" is not a URL template ({e})"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
        return Err(format!("\"{shown}\" is not an http(s) URL with a host"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(
            "the tile URL holds a user name or password, which every browser would see; use a \
             tile server that needs none (e.g. on the command centre's network)"
                .into(),
        );
    }
    Ok(url.origin().ascii_serialization())
}

/// An address (`10.0.0.5`, `::1`) or a network (`10.0.0.0/24`) of `api.trusted_proxies`.
pub fn parse_network(s: &str) -> Option<ipnet::IpNet> {
    let s = s.trim();
    s.parse::<ipnet::IpNet>()
        .ok()
        .or_else(|| s.parse::<std::net::IpAddr>().ok().map(ipnet::IpNet::from))
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            listen: default_api_listen(),
            admin_user: default_admin_user(),
            admin_password_env: default_admin_password_env(),
            session_hours: default_session_hours(),
            login_attempts: default_login_attempts(),
            cors_origins: Vec::new(),
            cameras_file: default_cameras_file(),
            trusted_proxies: Vec::new(),
            camera_env_prefix: default_camera_env_prefix(),
            media_dirs: Vec::new(),
            metrics: MetricsAccess::Open,
            metrics_token_env: default_metrics_token_env(),
            map_tiles: None,
            limits: ApiLimits::default(),
        }
    }
}

fn default_api_listen() -> String {
    "127.0.0.1:8080".into()
}
fn default_admin_user() -> String {
    "admin".into()
}
fn default_admin_password_env() -> String {
    "PANTAU_ADMIN_PASSWORD".into()
}
fn default_session_hours() -> u32 {
    12
}
fn default_login_attempts() -> u32 {
    5
}
fn default_cameras_file() -> PathBuf {
    PathBuf::from("var/cameras.toml")
}

/// The embedded broker `pantau run` starts when there is no `[mqtt]` section.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct EmbeddedConfig {
    /// Address of the embedded MQTT broker. Default `127.0.0.1:1884` (1883 is usually taken
    /// by a system broker). An address other than loopback needs `mqtt_username`.
    #[serde(default = "default_embedded_mqtt")]
    pub mqtt_listen: String,
    /// User name clients of the embedded broker must give (with the password in
    /// `mqtt_password_env`). Default none: no login, so the broker listens on loopback only.
    #[serde(default)]
    pub mqtt_username: Option<String>,
    /// Environment variable holding the embedded broker's password. Default
    /// `PANTAU_MQTT_PASSWORD`.
    #[serde(default = "default_embedded_password_env")]
    pub mqtt_password_env: String,
    /// Memory the embedded broker may keep for messages not yet delivered, in MiB, per topic
    /// filter a client subscribes to. Default 16. Range 1..=1024.
    #[serde(default = "default_embedded_memory")]
    pub mqtt_memory_mb: u32,
}

impl Default for EmbeddedConfig {
    fn default() -> Self {
        Self {
            mqtt_listen: default_embedded_mqtt(),
            mqtt_username: None,
            mqtt_password_env: default_embedded_password_env(),
            mqtt_memory_mb: default_embedded_memory(),
        }
    }
}

fn default_embedded_password_env() -> String {
    "PANTAU_MQTT_PASSWORD".into()
}
fn default_embedded_memory() -> u32 {
    16
}

fn default_embedded_mqtt() -> String {
    "127.0.0.1:1884".into()
}

pub(crate) fn check(
    issues: &mut ConfigIssues,
    config: &crate::config::Config,
    base: &std::path::Path,
    env: &dyn Fn(&str) -> Option<String>,
) {
    let (mqtt, store, outbox, embedded, snapshots) = (
        config.mqtt.as_ref(),
        config.store.as_ref(),
        &config.outbox,
        &config.embedded,
        &config.snapshots,
    );
    if let Some(m) = mqtt {
        if m.host.trim().is_empty() {
            issues.push("mqtt.host", "give the broker's host name or address");
        }
        if !(5..=600).contains(&m.keep_alive_s) {
            issues.push("mqtt.keep_alive_s", "use 5 to 600 seconds");
        }
        if m.fallbacks.len() > 16 {
            issues.push("mqtt.fallbacks", "list at most 16 other brokers");
        }
        for (i, f) in m.fallbacks.iter().enumerate() {
            if parse_host_port(f).is_none() {
                issues.push(
                    format!("mqtt.fallbacks[{i}]"),
                    format!("\"{f}\" is not host:port (e.g. \"broker-2.kota.local:1883\")"),
                );
            }
        }
        if m.prefix.is_empty() || m.prefix.contains(['#', '+']) || m.prefix.ends_with('/') {
            issues.push(
                "mqtt.prefix",
                format!(
                    "\"{}\" cannot start topics: no '#', '+' or trailing '/'",
                    m.prefix
                ),
            );
        }
        if m.tls && m.ca_file.is_none() {
            issues.push(
                "mqtt.ca_file",
                "tls = true needs ca_file: the PEM file of the CA that signed the broker's certificate",
            );
        }
        if m.client_cert.is_some() != m.client_key.is_some() {
            issues.push(
                "mqtt.client_key",
                "give client_cert and client_key together",
            );
        }
        for (field, path) in [
            ("ca_file", &m.ca_file),
            ("client_cert", &m.client_cert),
            ("client_key", &m.client_key),
        ] {
            if let Some(p) = path {
                if std::fs::metadata(base.join(p)).is_err() {
                    issues.push(
                        format!("mqtt.{field}"),
                        format!("cannot read {}; check the path", p.display()),
                    );
                }
            }
        }
        if !(1..=262_144).contains(&m.max_packet_kb) {
            issues.push(
                "mqtt.max_packet_kb",
                format!("{} is out of range: use 1 to 262144 KiB", m.max_packet_kb),
            );
        }
        if let Some(var) = &m.password_env {
            if env(var).is_none() {
                issues.push(
                    "mqtt.password_env",
                    format!(
                        "environment variable {var} is not set; export it before starting pantau"
                    ),
                );
            }
        }
    }
    if let Some(s) = store {
        match (&s.url, &s.url_env) {
            (None, None) => issues.push(
                "store",
                "give url or url_env (a PostgreSQL connection string)",
            ),
            (Some(_), Some(_)) => issues.push("store.url_env", "give url or url_env, not both"),
            (None, Some(var)) if env(var).is_none() => issues.push(
                "store.url_env",
                format!("environment variable {var} is not set; export it before starting pantau"),
            ),
            _ => {}
        }
        if s.schema.is_empty()
            || !s
                .schema
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        {
            issues.push("store.schema", "use lowercase letters, digits and '_'");
        }
    }
    if !(1..=1_048_576).contains(&outbox.max_mb) {
        issues.push(
            "outbox.max_mb",
            format!("{} is out of range: use 1 to 1048576 MiB", outbox.max_mb),
        );
    }
    if !(10..=3600).contains(&outbox.count_period_s) {
        issues.push("outbox.count_period_s", "use 10 to 3600 seconds");
    }
    if outbox.drain_timeout_s > 600 {
        issues.push("outbox.drain_timeout_s", "use 0 to 600 seconds");
    }
    if config.api.listen.parse::<std::net::SocketAddr>().is_err() {
        issues.push(
            "api.listen",
            format!(
                "\"{}\" is not an address:port such as 127.0.0.1:8080",
                config.api.listen
            ),
        );
    }
    let api = &config.api;
    if !valid_user_name(&api.admin_user) {
        issues.push(
            "api.admin_user",
            "use 1 to 64 letters, digits, '.', '-' or '_'",
        );
    }
    if !(1..=720).contains(&api.session_hours) {
        issues.push("api.session_hours", "use 1 to 720 hours");
    }
    if !(1..=100).contains(&api.login_attempts) {
        issues.push("api.login_attempts", "use 1 to 100 attempts");
    }
    for (i, origin) in api.cors_origins.iter().enumerate() {
        let ok = url::Url::parse(origin).is_ok_and(|u| {
            matches!(u.scheme(), "http" | "https")
                && u.host().is_some()
                && u.path() == "/"
                && !origin.ends_with('/')
        });
        if !ok {
            issues.push(
                format!("api.cors_origins[{i}]"),
                format!("\"{origin}\" is not an origin; write scheme://host[:port] with no path, e.g. https://wall.example.org"),
            );
        }
    }
    for (i, p) in api.trusted_proxies.iter().enumerate() {
        if parse_network(p).is_none() {
            issues.push(
                format!("api.trusted_proxies[{i}]"),
                format!("\"{p}\" is not an address or network; write e.g. 10.0.0.5 or 10.0.0.0/24"),
            );
        }
    }
    if !api.camera_env_prefix.starts_with("PANTAU_")
        || api.camera_env_prefix.len() < "PANTAU_".len() + 2
        || !api
            .camera_env_prefix
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
    {
        issues.push(
            "api.camera_env_prefix",
            format!(
                "\"{}\" would let the API read pantau's own secrets; use PANTAU_ and a name of \
                 upper-case letters, digits and '_', e.g. PANTAU_CAM_",
                api.camera_env_prefix
            ),
        );
    }
    for (i, dir) in api.media_dirs.iter().enumerate() {
        if !base.join(dir).is_dir() {
            issues.push(
                format!("api.media_dirs[{i}]"),
                format!("{} is not a folder; check the path", dir.display()),
            );
        }
    }
    if api.metrics == MetricsAccess::Token
        && env(&api.metrics_token_env).is_none_or(|t| t.len() < 16)
    {
        issues.push(
            "api.metrics_token_env",
            format!(
                "metrics = \"token\" needs a token of 16 or more characters in {}; export it \
                 before starting pantau",
                api.metrics_token_env
            ),
        );
    }
    if let Some(t) = &api.map_tiles {
        if let Err(why) = tile_origin(t) {
            issues.push("api.map_tiles", why);
        }
    }
    let l = &api.limits;
    for (field, value, range) in [
        ("header_timeout_s", l.header_timeout_s, 1..=300),
        ("request_timeout_s", l.request_timeout_s, 1..=3600),
        ("max_connections", l.max_connections, 1..=65_536),
        ("max_streams", l.max_streams, 1..=10_000),
        ("max_streams_per_user", l.max_streams_per_user, 1..=1000),
        ("history_rows", l.history_rows, 100..=10_000_000),
    ] {
        if !range.contains(&value) {
            issues.push(
                format!("api.limits.{field}"),
                format!(
                    "{value} is out of range: use {} to {}",
                    range.start(),
                    range.end()
                ),
            );
        }
    }
    if !(1..=1024).contains(&embedded.mqtt_memory_mb) {
        issues.push("embedded.mqtt_memory_mb", "use 1 to 1024 MiB");
    }
    match (
        &embedded.mqtt_username,
        embedded.mqtt_listen.parse::<std::net::SocketAddr>(),
    ) {
        (Some(user), _) => {
            if user.is_empty() || user.len() > 64 {
                issues.push("embedded.mqtt_username", "use 1 to 64 characters");
            }
            if env(&embedded.mqtt_password_env).is_none_or(|p| p.is_empty()) {
                issues.push(
                    "embedded.mqtt_password_env",
                    format!(
                        "environment variable {} is not set; export the embedded broker's \
                         password before starting pantau",
                        embedded.mqtt_password_env
                    ),
                );
            }
        }
        (None, Ok(addr)) if !addr.ip().is_loopback() => issues.push(
            "embedded.mqtt_listen",
            format!(
                "{addr} would let anyone on the network publish and read events without a \
                 login; listen on 127.0.0.1, or set embedded.mqtt_username and \
                 embedded.mqtt_password_env"
            ),
        ),
        _ => {}
    }
    if !(1..=3650).contains(&snapshots.retention_days) {
        issues.push("snapshots.retention_days", "use 1 to 3650 days");
    }
    if !(10..=100).contains(&snapshots.quality) {
        issues.push("snapshots.quality", "use a JPEG quality from 10 to 100");
    }
    if embedded
        .mqtt_listen
        .parse::<std::net::SocketAddr>()
        .is_err()
    {
        issues.push(
            "embedded.mqtt_listen",
            format!(
                "\"{}\" is not an address:port such as 127.0.0.1:1884",
                embedded.mqtt_listen
            ),
        );
    }
}

/// User names for the console: 1 to 64 ASCII letters, digits, '.', '-' or '_'.
pub fn valid_user_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
}

/// `host:port` (a bracketed IPv6 address is fine), with a non-empty host and a port 1..=65535.
pub fn parse_host_port(text: &str) -> Option<(String, u16)> {
    let (host, port) = text.rsplit_once(':')?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let port: u16 = port.parse().ok().filter(|p| *p > 0)?;
    if host.is_empty() || host.len() > 253 || host.contains(char::is_whitespace) {
        return None;
    }
    Some((host.to_string(), port))
}
