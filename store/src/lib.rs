//! The time-series store in PostgreSQL, with TimescaleDB when the extension is available.
//!
//! Tables (in their own schema, `pantau` by default): `events`, `counts` (per line, class,
//! direction and period), `camera_status` (history) and `track_summaries`; the console's
//! users, sessions, incidents and audit; citizen reports (`reports.rs`). Every row carries its
//! event id in the primary key, so writing the same batch twice (a replay after a crash) adds
//! nothing.
//!
//! On plain PostgreSQL the tables are range-partitioned by time (one partition a month,
//! created ahead by pantau) and pantau keeps the 5 min / 1 h / 1 day rollups of `counts` itself,
//! in the same transaction as the rows. With TimescaleDB the same tables become hypertables and
//! the rollups continuous aggregates, with compression and retention policies. [`Store::history`]
//! answers the same query on both.

use std::collections::BTreeSet;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, RecyclingMethod, Runtime};
use pantau_events::{CountAggregate, Event, TrackSummary};
use tokio_postgres::NoTls;

pub mod evidence;
pub mod fleet;
pub mod incidents;
pub mod reports;
pub mod users;
pub use incidents::{AuditRow, DispatchChange, DispatchRow, EventRow, EventSearch, Visible};
pub use reports::{
    CallbackDue, CallbackRow, IntegrationRow, LinkRow, NewIntegration, NewReport, ReportRow,
};
pub use users::{SnoozeRow, UserRow, UserUpdate};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database: {0}")]
    Db(String),
    /// The server answered and refused what was sent (SQLSTATE and message): sending it again
    /// gives the same answer.
    #[error("database: {code}: {message}")]
    Refused { code: String, message: String },
    #[error("schema name \"{0}\" is not valid: use lowercase letters, digits and '_'")]
    Schema(String),
    #[error("history bucket \"{0}\" is not one of 5m, 15m, 1h, 1d")]
    Bucket(String),
}

impl From<tokio_postgres::Error> for StoreError {
    fn from(e: tokio_postgres::Error) -> Self {
        // The driver's Display hides the server's message; include it.
        match e.as_db_error() {
            Some(d) => StoreError::Refused {
                code: d.code().code().to_string(),
                message: d.message().to_string(),
            },
            None => StoreError::Db(e.to_string()),
        }
    }
}

fn pool_error(e: deadpool_postgres::PoolError) -> StoreError {
    match e {
        deadpool_postgres::PoolError::Backend(e) => e.into(),
        other => StoreError::Db(other.to_string()),
    }
}

impl StoreError {
    /// True when the server refused the data itself (a data exception, a broken constraint, a
    /// row outside every partition): the same rows fail again, other rows may pass. Errors of
    /// the connection, resources or the server's state are not refusals.
    pub fn is_refusal(&self) -> bool {
        match self {
            StoreError::Refused { code, .. } => {
                // 22: data exception, 23: integrity constraint violation.
                code.starts_with("22") || code.starts_with("23")
            }
            _ => false,
        }
    }
}

/// Which engine features are in use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavour {
    /// Plain PostgreSQL: native partitions, rollups kept by pantau.
    Postgres,
    /// TimescaleDB: hypertables, continuous aggregates, compression, retention.
    Timescale,
}

/// History granularity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bucket {
    M5,
    M15,
    H1,
    D1,
}

impl Bucket {
    pub fn parse(s: &str) -> Result<Self, StoreError> {
        match s {
            "5m" => Ok(Bucket::M5),
            "15m" => Ok(Bucket::M15),
            "1h" => Ok(Bucket::H1),
            "1d" => Ok(Bucket::D1),
            other => Err(StoreError::Bucket(other.to_string())),
        }
    }

    pub fn seconds(self) -> i64 {
        match self {
            Bucket::M5 => 300,
            Bucket::M15 => 900,
            Bucket::H1 => 3600,
            Bucket::D1 => 86_400,
        }
    }

    /// The rollup it is computed from: pantau's own tables, or TimescaleDB's continuous
    /// aggregates.
    fn source(self, flavour: Flavour) -> &'static str {
        match (self, flavour) {
            (Bucket::M5 | Bucket::M15, Flavour::Postgres) => "counts_5m",
            (Bucket::H1, Flavour::Postgres) => "counts_1h",
            (Bucket::D1, Flavour::Postgres) => "counts_1d",
            (Bucket::M5 | Bucket::M15, Flavour::Timescale) => "counts_5m_agg",
            (Bucket::H1, Flavour::Timescale) => "counts_1h_agg",
            (Bucket::D1, Flavour::Timescale) => "counts_1d_agg",
        }
    }
}

/// One history row.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct HistoryRow {
    #[serde(with = "pantau_events::time")]
    pub bucket_start: SystemTime,
    pub camera: String,
    pub line: String,
    pub class: String,
    pub direction: String,
    pub count: i64,
}

/// Speed percentiles of one bucket, camera, line and direction.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct SpeedRow {
    #[serde(with = "pantau_events::time")]
    pub bucket_start: SystemTime,
    pub camera: String,
    pub line: String,
    pub direction: String,
    /// The class, when asked per class.
    pub class: Option<String>,
    /// Crossings with a measured speed.
    pub vehicles: i64,
    pub p15_kmh: f64,
    pub p50_kmh: f64,
    pub p85_kmh: f64,
}

/// What a history query asks for.
#[derive(Debug, Clone)]
pub struct HistoryQuery {
    pub from: SystemTime,
    pub to: SystemTime,
    pub bucket: Bucket,
    pub camera: Option<String>,
    pub line: Option<String>,
    pub class: Option<String>,
    pub direction: Option<String>,
    /// Only these cameras (what an agency's user sees); `None`: every camera.
    pub cameras: Option<Vec<String>>,
}

/// The store: a pool of connections, so one slow query or a dropped connection holds up only
/// its own caller; a lost connection is replaced on the next use.
#[derive(Debug)]
pub struct Store {
    pool: Pool,
    schema: String,
    flavour: Flavour,
    /// Months whose partitions exist (plain PostgreSQL), so writes do not repeat the DDL.
    partitioned: std::sync::Mutex<BTreeSet<(i64, u32)>>,
    /// The fleet node whose writes these are ([`Store::fence_writes_as`]).
    fence: std::sync::OnceLock<String>,
}

/// How far back rows are taken (the longest retention, events: 400 days).
const PAST_DAYS: u64 = 400;
/// How far ahead rows are taken.
const FUTURE_DAYS: u64 = 62;

/// Migration number recorded once the TimescaleDB features are set up.
const TIMESCALE_FEATURES: i32 = 1000;

const MIGRATIONS: &[(i32, &str, &str)] = &[
    (1, "initial tables", include_str!("sql/0001_init.sql")),
    (
        2,
        "users, sessions, incidents and audit",
        include_str!("sql/0002_console.sql"),
    ),
    (
        3,
        "dispatch messages written with their action",
        include_str!("sql/0003_incident_messages.sql"),
    ),
    (
        4,
        "rules snoozed on a camera",
        include_str!("sql/0004_snoozes.sql"),
    ),
    (
        5,
        "evidence clips kept by dispatch",
        include_str!("sql/0005_evidence.sql"),
    ),
    // Missing versions are applied by number whatever else is there.
    (
        6,
        "citizen reports, integrations, callbacks and incident links",
        include_str!("sql/0006_reports.sql"),
    ),
    (
        7,
        "fleet: nodes, cameras, leases and the write fence",
        include_str!("sql/0007_fleet.sql"),
    ),
    (
        8,
        "agencies of users and incidents handed over",
        include_str!("sql/0008_agencies.sql"),
    ),
];

impl Store {
    /// Connects (a pool of up to 8 connections), applies pending migrations and sets up
    /// partitions or hypertables.
    pub async fn connect(url: &str, schema: &str) -> Result<Self, StoreError> {
        Self::connect_with(url, schema, 8).await
    }

    /// [`Store::connect`] with a pool of up to `pool_size` connections.
    pub async fn connect_with(
        url: &str,
        schema: &str,
        pool_size: usize,
    ) -> Result<Self, StoreError> {
        if schema.is_empty()
            || !schema
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        {
            return Err(StoreError::Schema(schema.to_string()));
        }
        let mut config: tokio_postgres::Config = url
            .parse()
            .map_err(|e: tokio_postgres::Error| StoreError::Db(format!("store.url: {e}")))?;
        // "already exists, skipping" notices are expected; keep the log for warnings.
        config.options("-c client_min_messages=warning");
        let manager = Manager::from_config(
            config,
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(pool_size)
            .wait_timeout(Some(Duration::from_secs(10)))
            .create_timeout(Some(Duration::from_secs(10)))
            .runtime(Runtime::Tokio1)
            .build()
            .map_err(|e| StoreError::Db(e.to_string()))?;
        let client = pool.get().await.map_err(pool_error)?;
        let timescale = client
            .query_opt(
                "select 1 from pg_available_extensions where name = 'timescaledb'",
                &[],
            )
            .await?
            .is_some();
        let flavour = if timescale {
            client
                .batch_execute("create extension if not exists timescaledb")
                .await?;
            Flavour::Timescale
        } else {
            Flavour::Postgres
        };
        drop(client);
        let store = Self {
            pool,
            schema: schema.to_string(),
            flavour,
            partitioned: std::sync::Mutex::new(BTreeSet::new()),
            fence: std::sync::OnceLock::new(),
        };
        store.migrate().await?;
        Ok(store)
    }

    pub fn flavour(&self) -> Flavour {
        self.flavour
    }

    /// A connection from the pool, held until dropped (waits up to 10 s for a free one).
    pub async fn client(&self) -> Result<Object, StoreError> {
        self.pool.get().await.map_err(pool_error)
    }

    /// The schema the tables live in (validated: lowercase letters, digits and '_').
    pub fn schema(&self) -> &str {
        &self.schema
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        let client = self.client().await?;
        let s = &self.schema;
        // One connection migrates at a time (pantau's sinks and API connect concurrently, so
        // even `create schema if not exists` would race).
        client
            .execute("select pg_advisory_lock(hashtext($1))", &[&s])
            .await?;
        let result = match client
            .batch_execute(&format!(
                "create schema if not exists {s};
                 create table if not exists {s}.migrations (
                   version int primary key, name text not null,
                   applied_at timestamptz not null default now())"
            ))
            .await
        {
            Ok(()) => self.apply_migrations(&client).await,
            Err(e) => Err(e.into()),
        };
        client
            .execute("select pg_advisory_unlock(hashtext($1))", &[&s])
            .await?;
        result
    }

    async fn apply_migrations(&self, client: &Object) -> Result<(), StoreError> {
        let s = &self.schema;
        let applied: BTreeSet<i32> = client
            .query(&format!("select version from {s}.migrations"), &[])
            .await?
            .iter()
            .map(|r| r.get(0))
            .collect();
        for (version, name, sql) in MIGRATIONS {
            if applied.contains(version) {
                continue;
            }
            let partitioning = match self.flavour {
                Flavour::Postgres => "partition by range (at)",
                Flavour::Timescale => "",
            };
            let sql = sql
                .replace("{schema}", s)
                .replace("{partition}", partitioning);
            let mut script = format!("begin;\n{sql}\n");
            if self.flavour == Flavour::Timescale && *version == 1 {
                script.push_str(&hypertables(s));
            }
            script.push_str(&format!(
                "insert into {s}.migrations (version, name) values ({version}, '{name}');\ncommit;"
            ));
            if let Err(e) = client.batch_execute(&script).await {
                let _ = client.batch_execute("rollback").await;
                return Err(e.into());
            }
            tracing::info!(version, name, "database migration applied");
        }
        if self.flavour == Flavour::Timescale && !applied.contains(&TIMESCALE_FEATURES) {
            for statement in timescale_setup(s) {
                client.batch_execute(&statement).await?;
            }
            client
                .execute(
                    &format!("insert into {s}.migrations (version, name) values ($1, 'timescaledb aggregates and policies')"),
                    &[&TIMESCALE_FEATURES],
                )
                .await?;
            tracing::info!("TimescaleDB continuous aggregates, compression and retention set up");
        }
        if self.flavour == Flavour::Postgres {
            let now = SystemTime::now();
            self.ensure_partitions(
                now - Duration::from_secs(86_400 * 31),
                now + Duration::from_secs(86_400 * 62),
            )
            .await?;
        }
        Ok(())
    }

    /// Monthly partitions covering [from, to] for the partitioned tables, within what a
    /// sound clock can give: from [`PAST_DAYS`] ago to [`FUTURE_DAYS`] ahead. A row outside
    /// (a camera clock in 1970) has no partition; the database refuses it and it goes to the
    /// dead letters instead of creating partitions for decades.
    async fn ensure_partitions(&self, from: SystemTime, to: SystemTime) -> Result<(), StoreError> {
        let s = &self.schema;
        let now = SystemTime::now();
        let from = from.max(now - Duration::from_secs(86_400 * PAST_DAYS));
        let to = to.min(now + Duration::from_secs(86_400 * FUTURE_DAYS));
        if from > to {
            return Ok(());
        }
        let mut month = month_start(from);
        let end = month_start(to);
        let mut sql = String::new();
        let mut months = Vec::new();
        let known = self
            .partitioned
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        while month <= end {
            let next = next_month(month);
            if known.contains(&month) {
                month = next;
                continue;
            }
            months.push(month);
            let (y, m) = month;
            let (ny, nm) = next;
            for table in ["events", "counts", "camera_status", "track_summaries"] {
                sql.push_str(&format!(
                    "create table if not exists {s}.{table}_{y:04}{m:02} partition of {s}.{table} \
                     for values from ('{y:04}-{m:02}-01') to ('{ny:04}-{nm:02}-01');\n"
                ));
            }
            month = next;
        }
        if sql.is_empty() {
            return Ok(());
        }
        self.client().await?.batch_execute(&sql).await?;
        self.partitioned
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend(months);
        Ok(())
    }

    /// Writes events and count aggregates in one transaction; rows already stored (same id)
    /// are skipped.
    pub async fn write(
        &self,
        events: &[Event],
        counts: &[CountAggregate],
    ) -> Result<(), StoreError> {
        if self.flavour == Flavour::Postgres {
            let times = events
                .iter()
                .map(|e| e.captured_at)
                .chain(counts.iter().map(|c| c.period_start));
            if let (Some(lo), Some(hi)) = (times.clone().min(), times.max()) {
                self.ensure_partitions(lo, hi).await?;
            }
        }
        let s = self.schema.clone();
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        if let Some(node) = self.fence.get() {
            // The fleet's fence (migration 7) checks each row against this node's leases.
            tx.execute("select set_config('pantau.fleet_node', $1, true)", &[node])
                .await?;
        }
        if !events.is_empty() {
            let ids: Vec<String> = events.iter().map(|e| e.id.to_string()).collect();
            let at: Vec<SystemTime> = events.iter().map(|e| e.captured_at).collect();
            let camera: Vec<&str> = events.iter().map(|e| e.camera.as_str()).collect();
            let site: Vec<&str> = events.iter().map(|e| e.site.as_str()).collect();
            let rule: Vec<&str> = events.iter().map(|e| e.rule.as_str()).collect();
            let kind: Vec<&str> = events.iter().map(|e| e.kind.as_str()).collect();
            let class: Vec<Option<&str>> = events
                .iter()
                .map(|e| e.object.as_ref().map(|o| o.class.as_str()))
                .collect();
            let payload: Vec<serde_json::Value> = events
                .iter()
                .map(|e| serde_json::to_value(e).unwrap_or_default())
                .collect();
            let status: Vec<&Event> = events
                .iter()
                .filter(|e| e.kind == pantau_events::EventKind::CameraStatus)
                .collect();
            if !status.is_empty() {
                let detail = |e: &Event, k: &str| {
                    e.details.get(k).and_then(|v| v.as_str()).map(String::from)
                };
                let sid: Vec<String> = status.iter().map(|e| e.id.to_string()).collect();
                let sat: Vec<SystemTime> = status.iter().map(|e| e.captured_at).collect();
                let scam: Vec<&str> = status.iter().map(|e| e.camera.as_str()).collect();
                let state: Vec<String> = status
                    .iter()
                    .map(|e| detail(e, "state").unwrap_or_default())
                    .collect();
                let problem: Vec<Option<String>> =
                    status.iter().map(|e| detail(e, "problem")).collect();
                let message: Vec<Option<String>> =
                    status.iter().map(|e| detail(e, "message")).collect();
                tx.execute(
                    &format!(
                        "insert into {s}.camera_status (id, at, camera, state, problem, message)
                         select * from unnest($1::text[], $2::timestamptz[], $3::text[], $4::text[], $5::text[], $6::text[])
                         on conflict do nothing"
                    ),
                    &[&sid, &sat, &scam, &state, &problem, &message],
                )
                .await?;
            }
            tx.execute(
                &format!(
                    "insert into {s}.events (id, at, camera, site, rule, kind, class, payload)
                     select * from unnest($1::text[], $2::timestamptz[], $3::text[], $4::text[],
                                          $5::text[], $6::text[], $7::text[], $8::jsonb[])
                     on conflict do nothing"
                ),
                &[&ids, &at, &camera, &site, &rule, &kind, &class, &payload],
            )
            .await?;
        }
        if !counts.is_empty() {
            let mut id = Vec::new();
            let mut at = Vec::new();
            let mut camera = Vec::new();
            let mut line = Vec::new();
            let mut class = Vec::new();
            let mut direction = Vec::new();
            let mut period = Vec::new();
            let mut n = Vec::new();
            for c in counts {
                for (dir, classes) in &c.counts {
                    for (cls, count) in classes {
                        id.push(c.id.to_string());
                        at.push(c.period_start);
                        camera.push(c.camera.as_str());
                        line.push(c.line.as_str());
                        class.push(cls.as_str());
                        direction.push(dir.as_str());
                        period.push(c.period_s as i32);
                        n.push(*count as i64);
                    }
                }
            }
            // Only rows that are new feed the rollups, so a replayed batch adds nothing.
            // TimescaleDB keeps its continuous aggregates itself.
            let rollup = if self.flavour == Flavour::Timescale {
                String::new()
            } else {
                format!(
                    ", r5 as (insert into {s}.counts_5m as t select to_timestamp(floor(extract(epoch from at) / 300) * 300), camera, line, class, direction, sum(n) from new group by 1, 2, 3, 4, 5
                        on conflict (bucket, camera, line, class, direction) do update set n = t.n + excluded.n returning 1)
                     , r1h as (insert into {s}.counts_1h as t select date_trunc('hour', at), camera, line, class, direction, sum(n) from new group by 1, 2, 3, 4, 5
                        on conflict (bucket, camera, line, class, direction) do update set n = t.n + excluded.n returning 1)
                     , r1d as (insert into {s}.counts_1d as t select date_trunc('day', at at time zone 'UTC') at time zone 'UTC', camera, line, class, direction, sum(n) from new group by 1, 2, 3, 4, 5
                        on conflict (bucket, camera, line, class, direction) do update set n = t.n + excluded.n returning 1)"
            )
            };
            tx.execute(
                &format!(
                    "with new as (
                       insert into {s}.counts (id, at, camera, line, class, direction, period_s, n)
                       select * from unnest($1::text[], $2::timestamptz[], $3::text[], $4::text[],
                                            $5::text[], $6::text[], $7::int[], $8::bigint[])
                       on conflict do nothing
                       returning at, camera, line, class, direction, n)
                     {rollup}
                     select 1"
                ),
                &[&id, &at, &camera, &line, &class, &direction, &period, &n],
            )
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Writes ended tracks; a track already stored (same id) is skipped.
    pub async fn write_tracks(&self, tracks: &[TrackSummary]) -> Result<(), StoreError> {
        if tracks.is_empty() {
            return Ok(());
        }
        if self.flavour == Flavour::Postgres {
            let times = tracks.iter().map(|t| t.first_seen);
            if let (Some(lo), Some(hi)) = (times.clone().min(), times.max()) {
                self.ensure_partitions(lo, hi).await?;
            }
        }
        let s = &self.schema;
        let id: Vec<String> = tracks.iter().map(|t| t.id.to_string()).collect();
        let at: Vec<SystemTime> = tracks.iter().map(|t| t.first_seen).collect();
        let camera: Vec<&str> = tracks.iter().map(|t| t.camera.as_str()).collect();
        let track: Vec<i64> = tracks.iter().map(|t| t.track_id as i64).collect();
        let class: Vec<&str> = tracks.iter().map(|t| t.class.as_str()).collect();
        let last: Vec<SystemTime> = tracks.iter().map(|t| t.last_seen).collect();
        let frames: Vec<i32> = tracks.iter().map(|t| t.frames as i32).collect();
        self.client()
            .await?
            .execute(
                &format!(
                    "insert into {s}.track_summaries (id, at, camera, track_id, class, last_seen, frames)
                     select * from unnest($1::text[], $2::timestamptz[], $3::text[], $4::bigint[], $5::text[], $6::timestamptz[], $7::int[])
                     on conflict do nothing"
                ),
                &[&id, &at, &camera, &track, &class, &last, &frames],
            )
            .await?;
        Ok(())
    }

    /// Counts per bucket, camera, line, class and direction over [from, to).
    pub async fn history(&self, q: &HistoryQuery) -> Result<Vec<HistoryRow>, StoreError> {
        Ok(self.history_limited(q, u32::MAX).await?.0)
    }

    /// Like [`Store::history`], at most `max` rows; true when there were more.
    pub async fn history_limited(
        &self,
        q: &HistoryQuery,
        max: u32,
    ) -> Result<(Vec<HistoryRow>, bool), StoreError> {
        let limit = i64::from(max) + 1;
        let (sql, width) = self.history_sql(q);
        let rows = self
            .client()
            .await?
            .query(
                &format!("{sql} limit $9"),
                &[
                    &q.from,
                    &q.to,
                    &width,
                    &q.camera,
                    &q.line,
                    &q.class,
                    &q.direction,
                    &q.cameras,
                    &limit,
                ],
            )
            .await?;
        let more = rows.len() as i64 > i64::from(max);
        Ok((
            rows.iter().take(max as usize).map(history_row).collect(),
            more,
        ))
    }

    /// Sends the rows of `q` into `tx` as the database returns them: a slow reader slows the
    /// query down and nothing piles up in memory. Ends early, without error, when `tx` closes.
    pub async fn history_into(
        &self,
        q: &HistoryQuery,
        tx: tokio::sync::mpsc::Sender<HistoryRow>,
    ) -> Result<(), StoreError> {
        use futures_util::StreamExt as _;
        let (sql, width) = self.history_sql(q);
        let client = self.client().await?;
        let params: [&(dyn tokio_postgres::types::ToSql + Sync); 8] = [
            &q.from,
            &q.to,
            &width,
            &q.camera,
            &q.line,
            &q.class,
            &q.direction,
            &q.cameras,
        ];
        let rows = client.query_raw(&sql, params).await?;
        let mut rows = std::pin::pin!(rows);
        while let Some(row) = rows.next().await {
            if tx.send(history_row(&row?)).await.is_err() {
                break;
            }
        }
        Ok(())
    }

    /// Ground speeds of the vehicles that crossed each line (cameras with a calibration): the
    /// 15th, 50th and 85th percentiles per bucket, camera, line and direction, at most `max`
    /// rows; true when there were more. Made from the crossing events, so every bucket size
    /// and filter works on plain PostgreSQL and TimescaleDB alike.
    pub async fn speeds(
        &self,
        q: &HistoryQuery,
        max: u32,
        by_class: bool,
    ) -> Result<(Vec<SpeedRow>, bool), StoreError> {
        let s = &self.schema;
        // Per class too, or all classes together.
        let class = if by_class { "class" } else { "null::text" };
        let width = q.bucket.seconds() as f64;
        let limit = i64::from(max) + 1;
        let rows = self
            .client()
            .await?
            .query(
                &format!(
                    "select to_timestamp(floor(extract(epoch from at) / $3::float8) * $3::float8) as b,
                            camera, rule, payload->>'direction', {class}, count(*),
                            percentile_cont(0.15) within group (order by (payload->'details'->>'speed_kmh')::float8),
                            percentile_cont(0.5) within group (order by (payload->'details'->>'speed_kmh')::float8),
                            percentile_cont(0.85) within group (order by (payload->'details'->>'speed_kmh')::float8)
                     from {s}.events
                     where kind = 'line_crossing' and at >= $1 and at < $2
                       and payload->'details' ? 'speed_kmh'
                       and ($4::text is null or camera = $4) and ($5::text is null or rule = $5)
                       and ($6::text is null or class = $6)
                       and ($7::text is null or payload->>'direction' = $7)
                       and ($9::text[] is null or camera = any($9))
                     group by 1, 2, 3, 4, 5
                     order by 1, 2, 3, 4, 5
                     limit $8"
                ),
                &[
                    &q.from,
                    &q.to,
                    &width,
                    &q.camera,
                    &q.line,
                    &q.class,
                    &q.direction,
                    &limit,
                    &q.cameras,
                ],
            )
            .await?;
        let more = rows.len() as i64 > i64::from(max);
        Ok((
            rows.iter()
                .take(max as usize)
                .map(|r| SpeedRow {
                    bucket_start: r.get(0),
                    camera: r.get(1),
                    line: r.get(2),
                    direction: r.get::<_, Option<String>>(3).unwrap_or_default(),
                    class: r.get(4),
                    vehicles: r.get(5),
                    p15_kmh: r.get(6),
                    p50_kmh: r.get(7),
                    p85_kmh: r.get(8),
                })
                .collect(),
            more,
        ))
    }

    fn history_sql(&self, q: &HistoryQuery) -> (String, f64) {
        let s = &self.schema;
        let source = q.bucket.source(self.flavour);
        (
            format!(
                "select to_timestamp(floor(extract(epoch from bucket) / $3::float8) * $3::float8) as b,
                        camera, line, class, direction, sum(n)::bigint
                 from {s}.{source}
                 where bucket >= $1 and bucket < $2
                   and ($4::text is null or camera = $4) and ($5::text is null or line = $5)
                   and ($6::text is null or class = $6) and ($7::text is null or direction = $7)
                   and ($8::text[] is null or camera = any($8))
                 group by 1, 2, 3, 4, 5
                 order by 1, 2, 3, 4, 5"
            ),
            q.bucket.seconds() as f64,
        )
    }

    /// Checks the connection.
    pub async fn ping(&self) -> Result<(), StoreError> {
        self.client().await?.simple_query("select 1").await?;
        Ok(())
    }

    /// Number of stored events (for tests and metrics).
    pub async fn event_count(&self) -> Result<i64, StoreError> {
        let s = &self.schema;
        Ok(self
            .client()
            .await?
            .query_one(&format!("select count(*) from {s}.events"), &[])
            .await?
            .get(0))
    }
}

/// Hypertables, continuous aggregates of counts (real-time, so the newest minutes are
/// included), compression of older chunks and retention (TimescaleDB only).
fn hypertables(s: &str) -> String {
    let mut sql = String::new();
    for table in ["events", "counts", "camera_status", "track_summaries"] {
        sql.push_str(&format!(
            "select create_hypertable('{s}.{table}', 'at', chunk_time_interval => interval '1 day', if_not_exists => true);\n"
        ));
    }
    sql
}

/// Continuous aggregates and policies: one statement each, outside any transaction (TimescaleDB
/// does not create continuous aggregates inside one).
fn timescale_setup(s: &str) -> Vec<String> {
    let mut sql = Vec::new();
    for (name, width, start) in [
        ("5m", "5 minutes", "1 day"),
        ("1h", "1 hour", "7 days"),
        ("1d", "1 day", "60 days"),
    ] {
        sql.push(format!(
            "create materialized view if not exists {s}.counts_{name}_agg
               with (timescaledb.continuous, timescaledb.materialized_only = false) as
               select time_bucket(interval '{width}', at) as bucket, camera, line, class, direction, sum(n)::bigint as n
               from {s}.counts group by 1, 2, 3, 4, 5 with no data"
        ));
        sql.push(format!(
            "select add_continuous_aggregate_policy('{s}.counts_{name}_agg',
               start_offset => interval '{start}', end_offset => interval '{width}',
               schedule_interval => interval '{width}', if_not_exists => true)"
        ));
    }
    for (table, segment, compress_after, keep) in [
        ("events", "camera", "7 days", "400 days"),
        ("camera_status", "camera", "7 days", "400 days"),
        ("track_summaries", "camera", "7 days", "90 days"),
        ("counts", "camera, line", "30 days", "1825 days"),
    ] {
        sql.push(format!(
            "alter table {s}.{table} set (timescaledb.compress, timescaledb.compress_segmentby = '{segment}')"
        ));
        sql.push(format!(
            "select add_compression_policy('{s}.{table}', interval '{compress_after}', if_not_exists => true)"
        ));
        sql.push(format!(
            "select add_retention_policy('{s}.{table}', interval '{keep}', if_not_exists => true)"
        ));
    }
    sql
}

fn month_start(t: SystemTime) -> (i64, u32) {
    let days = t
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64 / 86_400)
        .unwrap_or(0);
    let text = pantau_events::time::format(UNIX_EPOCH + Duration::from_secs(days as u64 * 86_400));
    let y = text[0..4].parse().unwrap_or(1970);
    let m = text[5..7].parse().unwrap_or(1);
    (y, m)
}

fn next_month((y, m): (i64, u32)) -> (i64, u32) {
    if m == 12 {
        (y + 1, 1)
    } else {
        (y, m + 1)
    }
}

fn history_row(r: &tokio_postgres::Row) -> HistoryRow {
    HistoryRow {
        bucket_start: r.get(0),
        camera: r.get(1),
        line: r.get(2),
        class: r.get(3),
        direction: r.get(4),
        count: r.get(5),
    }
}
