//! A fleet of nodes on one database: the nodes and their heartbeats, the cameras (the fleet's
//! single source of truth), the lease of each camera and the log of every lease generation.
//!
//! Times that decide who holds a lease are the database's (`now()`), never a node's clock.

use std::time::{Duration, SystemTime};

use crate::{Store, StoreError};

/// A node as the fleet sees it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct NodeRow {
    pub id: String,
    pub groups: Vec<String>,
    /// The most cameras it takes; 0: no limit.
    pub capacity: i32,
    pub api_url: Option<String>,
    #[serde(with = "pantau_events::time")]
    pub started_at: SystemTime,
    #[serde(with = "pantau_events::time")]
    pub last_seen: SystemTime,
    /// What the node said about itself at its last heartbeat (load, cameras, version).
    pub health: serde_json::Value,
}

/// What a node says at each heartbeat.
#[derive(Debug, Clone)]
pub struct Heartbeat<'a> {
    pub id: &'a str,
    pub groups: &'a [String],
    pub capacity: i32,
    pub api_url: Option<&'a str>,
    pub started_at: SystemTime,
    pub health: serde_json::Value,
}

/// A camera of the fleet.
#[derive(Debug, Clone, PartialEq)]
pub struct FleetCamera {
    pub id: String,
    /// The camera as in a `[[cameras]]` entry (JSON).
    pub config: serde_json::Value,
    /// `config` (a node's config file) or `api` (the console).
    pub source: String,
    pub removed: bool,
    /// Raised by every change: a node restarts a camera whose version moved.
    pub version: i64,
}

/// Who holds a camera now.
#[derive(Debug, Clone, PartialEq)]
pub struct LeaseRow {
    pub camera: String,
    pub node: String,
    pub generation: i64,
    pub expires_at: SystemTime,
    /// The camera's ingest status, as its node last reported it.
    pub status: Option<serde_json::Value>,
}

/// One generation of a camera's lease: who held it and when.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct LeaseLogRow {
    pub camera: String,
    pub generation: i64,
    pub node: String,
    #[serde(with = "pantau_events::time")]
    pub acquired_at: SystemTime,
    /// The end of the lease: its last expiry while held, or when it was handed back.
    #[serde(with = "pantau_events::time")]
    pub valid_until: SystemTime,
    /// `released`, `expired`, or none while held.
    pub ended: Option<String>,
}

/// The whole fleet at one moment of the database's clock.
#[derive(Debug, Clone)]
pub struct FleetState {
    pub now: SystemTime,
    pub nodes: Vec<NodeRow>,
    pub cameras: Vec<FleetCamera>,
    pub leases: Vec<LeaseRow>,
}

impl FleetState {
    /// Nodes heard from within `lease`.
    pub fn live_nodes(&self, lease: Duration) -> impl Iterator<Item = &NodeRow> {
        let since = self
            .now
            .checked_sub(lease)
            .unwrap_or(SystemTime::UNIX_EPOCH);
        self.nodes.iter().filter(move |n| n.last_seen >= since)
    }

    /// Leases not yet expired.
    pub fn held(&self) -> impl Iterator<Item = &LeaseRow> {
        self.leases.iter().filter(|l| l.expires_at > self.now)
    }
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

impl Store {
    /// Makes every [`Store::write`] of this store checked against `node`'s leases (the
    /// database refuses rows of a camera `node` did not hold at their time). Set once.
    pub fn fence_writes_as(&self, node: &str) {
        let _ = self.fence.set(node.to_string());
    }

    /// Records that `hb.id` is alive (and what it says about itself).
    pub async fn fleet_heartbeat(&self, hb: &Heartbeat<'_>) -> Result<(), StoreError> {
        let s = self.schema();
        self.client()
            .await?
            .execute(
                &format!(
                    "insert into {s}.fleet_nodes (id, groups, capacity, api_url, started_at, last_seen, health)
                     values ($1, $2, $3, $4, $5, now(), $6)
                     on conflict (id) do update set groups = $2, capacity = $3, api_url = $4,
                       started_at = $5, last_seen = now(), health = $6"
                ),
                &[&hb.id, &hb.groups, &hb.capacity, &hb.api_url, &hb.started_at, &hb.health],
            )
            .await?;
        Ok(())
    }

    /// Renews every lease `node` holds that has not expired, for `lease` from now, with the
    /// cameras' statuses; answers the cameras (and generations) still held.
    pub async fn fleet_renew(
        &self,
        node: &str,
        lease: Duration,
        statuses: &[(String, serde_json::Value)],
    ) -> Result<Vec<(String, i64)>, StoreError> {
        let s = self.schema();
        let cams: Vec<&str> = statuses.iter().map(|(c, _)| c.as_str()).collect();
        let status: Vec<&serde_json::Value> = statuses.iter().map(|(_, v)| v).collect();
        let rows = self
            .client()
            .await?
            .query(
                &format!(
                    "with st as (select * from unnest($3::text[], $4::jsonb[]) as t(camera, status)),
                     r as (update {s}.fleet_leases l
                           set expires_at = now() + make_interval(secs => $2),
                               status = coalesce((select st.status from st where st.camera = l.camera), l.status)
                           where l.node = $1 and l.expires_at > now()
                           returning l.camera, l.generation, l.expires_at),
                     g as (update {s}.fleet_lease_log g set valid_until = r.expires_at
                           from r where g.camera = r.camera and g.generation = r.generation)
                     select camera, generation from r"
                ),
                &[&node, &secs(lease), &cams, &status],
            )
            .await?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
    }

    /// Takes camera `camera` for `node` when no one holds it (never leased, handed back or
    /// expired); answers the new generation, or `None` when another node holds it.
    pub async fn fleet_acquire(
        &self,
        node: &str,
        camera: &str,
        lease: Duration,
    ) -> Result<Option<i64>, StoreError> {
        let s = self.schema();
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let row = tx
            .query_opt(
                &format!(
                    "insert into {s}.fleet_leases as l (camera, node, generation, expires_at)
                     values ($1, $2, 1, now() + make_interval(secs => $3))
                     on conflict (camera) do update set node = $2, generation = l.generation + 1,
                       expires_at = excluded.expires_at, status = null
                     where l.expires_at <= now()
                     returning generation, expires_at"
                ),
                &[&camera, &node, &secs(lease)],
            )
            .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let generation: i64 = row.get(0);
        let expires: SystemTime = row.get(1);
        tx.execute(
            &format!(
                "update {s}.fleet_lease_log set ended = 'expired'
                 where camera = $1 and generation < $2 and ended is null"
            ),
            &[&camera, &generation],
        )
        .await?;
        tx.execute(
            &format!(
                "insert into {s}.fleet_lease_log (camera, generation, node, acquired_at, valid_until)
                 values ($1, $2, $3, now(), $4)"
            ),
            &[&camera, &generation, &node, &expires],
        )
        .await?;
        tx.commit().await?;
        Ok(Some(generation))
    }

    /// Hands camera `camera` back (its node stopped it): others may take it at once. Its log
    /// entry ends now.
    pub async fn fleet_release(
        &self,
        node: &str,
        camera: &str,
        generation: i64,
    ) -> Result<(), StoreError> {
        let s = self.schema();
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let n = tx
            .execute(
                &format!(
                    "update {s}.fleet_leases set expires_at = now(), status = null
                     where camera = $1 and node = $2 and generation = $3 and expires_at > now()"
                ),
                &[&camera, &node, &generation],
            )
            .await?;
        if n > 0 {
            tx.execute(
                &format!(
                    "update {s}.fleet_lease_log set valid_until = least(valid_until, now()),
                       ended = 'released'
                     where camera = $1 and generation = $2 and node = $3"
                ),
                &[&camera, &generation, &node],
            )
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Nodes, cameras and leases in one snapshot.
    pub async fn fleet_state(&self) -> Result<FleetState, StoreError> {
        let s = self.schema();
        let mut client = self.client().await?;
        let tx = client
            .build_transaction()
            .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()
            .await?;
        let now: SystemTime = tx.query_one("select now()", &[]).await?.get(0);
        let nodes = tx
            .query(
                &format!(
                    "select id, groups, capacity, api_url, started_at, last_seen, health
                     from {s}.fleet_nodes order by id"
                ),
                &[],
            )
            .await?
            .iter()
            .map(|r| NodeRow {
                id: r.get(0),
                groups: r.get(1),
                capacity: r.get(2),
                api_url: r.get(3),
                started_at: r.get(4),
                last_seen: r.get(5),
                health: r.get(6),
            })
            .collect();
        let cameras = tx
            .query(
                &format!(
                    "select id, config, source, removed, version from {s}.fleet_cameras order by id"
                ),
                &[],
            )
            .await?
            .iter()
            .map(|r| FleetCamera {
                id: r.get(0),
                config: r.get(1),
                source: r.get(2),
                removed: r.get(3),
                version: r.get(4),
            })
            .collect();
        let leases = tx
            .query(
                &format!(
                    "select camera, node, generation, expires_at, status from {s}.fleet_leases
                     order by camera"
                ),
                &[],
            )
            .await?
            .iter()
            .map(|r| LeaseRow {
                camera: r.get(0),
                node: r.get(1),
                generation: r.get(2),
                expires_at: r.get(3),
                status: r.get(4),
            })
            .collect();
        tx.commit().await?;
        Ok(FleetState {
            now,
            nodes,
            cameras,
            leases,
        })
    }

    /// Puts the cameras of a node's config file into the fleet: new ones are added, ones that
    /// still come from config files are updated when they differ; cameras changed or removed
    /// from the console are left as the console made them. Answers how many changed.
    pub async fn fleet_seed(
        &self,
        cameras: &[(String, serde_json::Value)],
    ) -> Result<u64, StoreError> {
        let s = self.schema();
        let ids: Vec<&str> = cameras.iter().map(|(c, _)| c.as_str()).collect();
        let configs: Vec<&serde_json::Value> = cameras.iter().map(|(_, v)| v).collect();
        let n = self
            .client()
            .await?
            .execute(
                &format!(
                    "insert into {s}.fleet_cameras as c (id, config, source)
                     select * , 'config' from unnest($1::text[], $2::jsonb[])
                     on conflict (id) do update set config = excluded.config,
                       version = c.version + 1, updated_at = now()
                     where c.source = 'config' and c.config <> excluded.config"
                ),
                &[&ids, &configs],
            )
            .await?;
        Ok(n)
    }

    /// Adds or replaces a camera from the console (`source = api`); answers its version.
    pub async fn fleet_put_camera(
        &self,
        id: &str,
        config: &serde_json::Value,
    ) -> Result<i64, StoreError> {
        let s = self.schema();
        let version: i64 = self
            .client()
            .await?
            .query_one(
                &format!(
                    "insert into {s}.fleet_cameras as c (id, config, source) values ($1, $2, 'api')
                     on conflict (id) do update set config = $2, source = 'api', removed = false,
                       version = c.version + 1, updated_at = now()
                     returning version"
                ),
                &[&id, config],
            )
            .await?
            .get(0);
        Ok(version)
    }

    /// Removes a camera from the fleet (kept as removed, so config files do not bring it
    /// back); false when there is no such camera.
    pub async fn fleet_remove_camera(&self, id: &str) -> Result<bool, StoreError> {
        let s = self.schema();
        let n = self
            .client()
            .await?
            .execute(
                &format!(
                    "update {s}.fleet_cameras set removed = true, source = 'api',
                       version = version + 1, updated_at = now()
                     where id = $1 and not removed"
                ),
                &[&id],
            )
            .await?;
        Ok(n > 0)
    }

    /// The lease log, oldest first (of one camera, or all).
    pub async fn fleet_lease_log(
        &self,
        camera: Option<&str>,
    ) -> Result<Vec<LeaseLogRow>, StoreError> {
        let s = self.schema();
        let rows = self
            .client()
            .await?
            .query(
                &format!(
                    "select camera, generation, node, acquired_at, valid_until, ended
                     from {s}.fleet_lease_log where $1::text is null or camera = $1
                     order by camera, generation"
                ),
                &[&camera],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| LeaseLogRow {
                camera: r.get(0),
                generation: r.get(1),
                node: r.get(2),
                acquired_at: r.get(3),
                valid_until: r.get(4),
                ended: r.get(5),
            })
            .collect())
    }

    /// The node and its API address (`fleet.api_url`) that held `camera` at `at` (the one that
    /// recorded its video then), from the lease log; `None` when no lease covered that time.
    pub async fn fleet_holder_at(
        &self,
        camera: &str,
        at: SystemTime,
    ) -> Result<Option<(String, Option<String>)>, StoreError> {
        let s = self.schema();
        Ok(self
            .client()
            .await?
            .query_opt(
                &format!(
                    "select g.node, n.api_url from {s}.fleet_lease_log g
                       left join {s}.fleet_nodes n on n.id = g.node
                     -- camera clocks: as the fence, 30 s of slack before the lease
                     where g.camera = $1 and g.acquired_at <= $2::timestamptz + interval '30 seconds'
                       and g.valid_until >= $2
                     order by g.generation desc limit 1"
                ),
                &[&camera, &at],
            )
            .await?
            .map(|r| (r.get(0), r.get(1))))
    }
}
