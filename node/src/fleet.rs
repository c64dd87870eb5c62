//! One node of a fleet (`[fleet] enabled`): the cameras live in the database, and this node
//! runs the ones it holds a lease on.
//!
//! Every tick (a fifth of the lease, give or take a tenth) the node says it is alive, renews
//! its leases (with its cameras' statuses) and reads the fleet in one snapshot. It then stops what it no longer
//! holds or what was removed, restarts what changed, takes free cameras up to its fair share
//! (cameras it may run, shared among the live nodes that may run them, within `capacity`),
//! and hands one camera back, one per tick, when it holds more than its share and at least two
//! more than a node that has been up for two leases (the hysteresis: a node that comes and
//! goes pulls nothing, and an odd camera never moves back and forth between two nodes); it
//! leaves the camera it handed back for a few ticks, for the node it was meant for.
//!
//! Fencing, three times over: each camera may publish only until its local deadline (the start
//! of the last successful renewal plus the lease, less a margin) — after a hang (SIGSTOP) or
//! while the database is away its messages are dropped; a node that cannot renew stops its
//! cameras before that deadline; and the database refuses the rows a node writes for a camera
//! at a time its lease did not cover (`store/src/sql/0007_fleet.sql`).

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use pantau_config::config::{CameraConfig, CameraSettings, FleetConfig};
use pantau_store::fleet::{FleetState, Heartbeat};
use pantau_store::Store;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::lock;

/// How long after a camera stopped here its last words may still go out.
const STOP_GRACE: Duration = Duration::from_millis(500);

/// Until when each camera may publish (fleet mode); without a fleet every camera may.
#[derive(Debug, Default)]
pub(crate) struct Fence {
    on: bool,
    deadlines: Mutex<HashMap<String, Instant>>,
    /// Messages dropped because their camera's lease was not sure any more.
    pub dropped: AtomicU64,
}

impl Fence {
    pub fn fleet() -> Self {
        Self {
            on: true,
            ..Self::default()
        }
    }

    /// True when `camera`'s messages may go out now; counts the ones that may not.
    pub fn allows(&self, camera: &str, messages: usize) -> bool {
        if !self.on {
            return true;
        }
        let ok = lock(&self.deadlines)
            .get(camera)
            .is_some_and(|d| Instant::now() < *d);
        if !ok && messages > 0 {
            self.dropped.fetch_add(messages as u64, Ordering::Relaxed);
            tracing::warn!(camera, messages, "messages dropped: this node's lease of the camera is not sure (it hung or lost the database)");
        }
        ok
    }

    fn hold(&self, camera: &str, until: Instant) {
        lock(&self.deadlines).insert(camera.to_string(), until);
    }

    /// The camera stopped here: what it said as it stopped (its last status, which the status
    /// watcher publishes a moment later) still goes out within `STOP_GRACE`, nothing after.
    fn let_go(&self, camera: &str) {
        let mut deadlines = lock(&self.deadlines);
        if let Some(d) = deadlines.get_mut(camera) {
            *d = (*d).min(Instant::now() + STOP_GRACE);
        }
    }
}

/// Resolves a camera like the config file does (this node's environment and folder).
pub(crate) type Validate =
    Arc<dyn Fn(&CameraConfig) -> Result<CameraSettings, String> + Send + Sync>;

/// What the fleet loop needs from the node.
pub(crate) struct FleetParts {
    pub config: FleetConfig,
    pub node: String,
    pub url: String,
    pub schema: String,
    /// The node's config-file cameras (with the cameras file applied), put into the fleet at
    /// start.
    pub seed: Vec<CameraConfig>,
    pub cameras: crate::analysis::Cameras,
    pub validate: Validate,
    pub fence: Arc<Fence>,
    /// Rung by the API when it changed a camera, so the change applies at once.
    pub wake: Arc<Notify>,
    pub stop: CancellationToken,
}

/// A camera this node runs.
#[derive(Debug, Clone)]
struct Held {
    generation: i64,
    /// The fleet camera's version it runs.
    version: i64,
}

/// What the loop hands back when it ends: the leases to hand back once the cameras stopped.
#[derive(Debug)]
pub(crate) struct Leases {
    store: Option<Arc<Store>>,
    node: String,
    held: Vec<(String, i64)>,
    fence: Arc<Fence>,
    lease: Duration,
    tick: Duration,
    margin: Duration,
}

impl Leases {
    /// Keeps renewing the leases while the node stops its cameras (which hand over the counts
    /// of their open periods and their last status as they stop, and may take longer than a
    /// lease on a busy machine), so the fence lets those out; ends when `done` is cancelled.
    /// A renewal that fails extends nothing: the fence then drops as it would after a hang.
    pub fn keep_while_stopping(&self, done: CancellationToken) -> tokio::task::JoinHandle<()> {
        let (store, node, fence) = (self.store.clone(), self.node.clone(), self.fence.clone());
        let held: HashMap<String, i64> = self.held.iter().cloned().collect();
        let (lease, tick, margin) = (self.lease, self.tick, self.margin);
        tokio::spawn(async move {
            let Some(store) = store else { return };
            if held.is_empty() {
                return;
            }
            loop {
                let started = Instant::now();
                let renew = store.fleet_renew(&node, lease, &[]);
                if let Ok(Ok(renewed)) = tokio::time::timeout(lease / 2, renew).await {
                    for (camera, generation) in renewed {
                        if held.get(&camera) == Some(&generation) {
                            fence.hold(&camera, started + lease - margin);
                        }
                    }
                }
                tokio::select! {
                    () = done.cancelled() => return,
                    () = tokio::time::sleep_until((started + tick).into()) => {}
                }
            }
        })
    }

    /// Hands every lease back, so the other nodes take the cameras at once rather than after
    /// the lease runs out.
    pub async fn release(self) {
        let Some(store) = self.store else { return };
        for (camera, generation) in &self.held {
            let r = tokio::time::timeout(
                Duration::from_secs(2),
                store.fleet_release(&self.node, camera, *generation),
            )
            .await;
            if !matches!(r, Ok(Ok(()))) {
                tracing::warn!(camera = %camera, "lease not handed back; it runs out by itself");
            }
        }
        if !self.held.is_empty() {
            tracing::info!(cameras = self.held.len(), "leases handed back to the fleet");
        }
    }
}

struct Loop {
    p: FleetParts,
    lease: Duration,
    tick: Duration,
    /// Cameras must stop publishing this long before their lease could expire.
    margin: Duration,
    store: Option<Arc<Store>>,
    held: BTreeMap<String, Held>,
    /// Until when the leases are sure (start of the last successful renewal + lease - margin).
    sure_until: Option<Instant>,
    started_at: SystemTime,
    last_release: Instant,
    /// The camera this node last handed back to even out the fleet (at `last_release`): not
    /// taken again by this node for [`HANDED_BACK_TICKS`] ticks, so the node it was meant for
    /// gets it.
    handed_back: Option<String>,
    /// Cameras this node could not start, with the version that failed and when to retry.
    failed: HashMap<String, (i64, Instant)>,
    seeded: bool,
    db_down_logged: bool,
}

/// Runs the fleet loop until `stop`; answers the leases still held.
pub(crate) async fn run(p: FleetParts) -> Leases {
    let lease = Duration::from_secs_f64(p.config.lease_s);
    let tick = p.config.tick();
    let mut l = Loop {
        margin: (lease * 3 / 10)
            .max(Duration::from_millis(1500))
            .min(lease / 2),
        lease,
        tick,
        store: None,
        held: BTreeMap::new(),
        sure_until: None,
        started_at: SystemTime::now(),
        last_release: Instant::now(),
        handed_back: None,
        failed: HashMap::new(),
        seeded: false,
        db_down_logged: false,
        p,
    };
    tracing::info!(node = %l.p.node, lease_s = lease.as_secs_f64(), groups = ?l.p.config.groups, capacity = l.p.config.capacity, "fleet: sharing cameras through the database");
    if let Some(why) = pantau_dashboard_api::fleet::clear_text_api(l.p.config.api_url.as_deref()) {
        tracing::warn!("{why}");
    }
    loop {
        let started = Instant::now();
        l.step(started).await;
        let next = started + jittered(l.tick);
        tokio::select! {
            _ = l.p.stop.cancelled() => break,
            _ = tokio::time::sleep_until(next.into()) => {}
            _ = l.p.wake.notified() => {}
        }
    }
    Leases {
        store: l.store.clone(),
        node: l.p.node.clone(),
        held: l
            .held
            .iter()
            .map(|(c, h)| (c.clone(), h.generation))
            .collect(),
        fence: l.p.fence.clone(),
        lease: l.lease,
        tick: l.tick,
        margin: l.margin,
    }
}

impl Loop {
    async fn connect(&mut self) -> Option<Arc<Store>> {
        if let Some(s) = &self.store {
            return Some(s.clone());
        }
        let connect = Store::connect_with(&self.p.url, &self.p.schema, 2);
        match tokio::time::timeout(self.lease / 2, connect).await {
            Ok(Ok(s)) => {
                let s = Arc::new(s);
                self.store = Some(s.clone());
                Some(s)
            }
            Ok(Err(e)) => {
                self.db_down(&e.to_string());
                None
            }
            Err(_) => {
                self.db_down("connecting took too long");
                None
            }
        }
    }

    fn db_down(&mut self, why: &str) {
        if !self.db_down_logged {
            tracing::error!(
                "fleet: database unreachable ({why}); cameras stop before their leases run out"
            );
            self.db_down_logged = true;
        }
    }

    async fn step(&mut self, started: Instant) {
        if let Some(store) = self.connect().await {
            let statuses: Vec<(String, serde_json::Value)> = self
                .held
                .keys()
                .filter_map(|c| {
                    let st = self.p.cameras.ingest.status(c)?;
                    Some((c.clone(), serde_json::to_value(st).ok()?))
                })
                .collect();
            let health = serde_json::json!({
                "cameras": self.held.len(),
                "version": env!("CARGO_PKG_VERSION"),
                "messages_fenced": self.p.fence.dropped.load(Ordering::Relaxed),
            });
            let groups = self.p.config.groups.clone();
            let hb = Heartbeat {
                id: &self.p.node,
                groups: &groups,
                capacity: self.p.config.capacity as i32,
                api_url: self.p.config.api_url.as_deref(),
                started_at: self.started_at,
                health,
            };
            let round = async {
                store.fleet_heartbeat(&hb).await?;
                let renewed = store
                    .fleet_renew(&self.p.node, self.lease, &statuses)
                    .await?;
                let state = store.fleet_state().await?;
                Ok::<_, pantau_store::StoreError>((renewed, state))
            };
            match tokio::time::timeout(self.lease / 2, round).await {
                Ok(Ok((renewed, state))) => {
                    if self.db_down_logged {
                        tracing::info!("fleet: database reachable again");
                        self.db_down_logged = false;
                    }
                    self.renewed(started, renewed).await;
                    self.seed(&store).await;
                    self.plan(&store, &state).await;
                    return;
                }
                Ok(Err(e)) => self.db_down(&e.to_string()),
                Err(_) => self.db_down("no answer within half a lease"),
            }
            // A connection that failed or hung is not used again.
            self.store = None;
        }
        // No renewal this time: stop everything before the leases could run out.
        if let Some(until) = self.sure_until {
            if Instant::now() + self.tick >= until && !self.held.is_empty() {
                tracing::error!(
                    cameras = self.held.len(),
                    "fleet: leases could not be renewed; cameras stopped so that no two nodes run one camera"
                );
                let ids: Vec<String> = self.held.keys().cloned().collect();
                for id in ids {
                    self.stop_camera(&id).await;
                }
            }
        }
    }

    /// After a successful renewal: the leases are sure for another lease (less the margin);
    /// cameras whose lease is gone (another node took it after we hung) stop.
    async fn renewed(&mut self, started: Instant, renewed: Vec<(String, i64)>) {
        let until = started + self.lease - self.margin;
        self.sure_until = Some(until);
        let now_held: HashMap<String, i64> = renewed.into_iter().collect();
        let ids: Vec<String> = self.held.keys().cloned().collect();
        for id in ids {
            match now_held.get(&id) {
                Some(g) if *g == self.held[&id].generation => self.p.fence.hold(&id, until),
                _ => {
                    tracing::warn!(camera = %id, "fleet: lease lost (another node runs the camera now); stopped");
                    self.stop_camera(&id).await;
                }
            }
        }
        // Leases of an earlier run of this node (restarted within a lease) are taken up.
        for (id, generation) in now_held {
            if !self.held.contains_key(&id) {
                self.held.insert(
                    id.clone(),
                    Held {
                        generation,
                        version: -1,
                    },
                );
                self.p.fence.hold(&id, until);
            }
        }
    }

    async fn seed(&mut self, store: &Store) {
        if self.seeded {
            return;
        }
        let cameras: Vec<(String, serde_json::Value)> = self
            .p
            .seed
            .iter()
            .filter_map(|c| Some((c.id.clone(), serde_json::to_value(c).ok()?)))
            .collect();
        match store.fleet_seed(&cameras).await {
            Ok(n) => {
                self.seeded = true;
                if n > 0 {
                    tracing::info!(
                        cameras = n,
                        "fleet: cameras of the config file added to (or updated in) the fleet"
                    );
                }
            }
            Err(e) => tracing::warn!("fleet: config cameras not put into the fleet yet: {e}"),
        }
    }

    fn eligible(&self, c: &CameraConfig, groups: &[String]) -> bool {
        c.run_on.is_empty() || c.run_on.iter().any(|g| groups.contains(g))
    }

    async fn plan(&mut self, store: &Store, state: &FleetState) {
        let until = self.sure_until.expect("set by renewed");
        let me = self.p.node.clone();
        // Cameras that should run: not removed, enabled, readable.
        let mut wanted: BTreeMap<&str, (CameraConfig, i64)> = BTreeMap::new();
        for c in &state.cameras {
            if c.removed {
                continue;
            }
            match serde_json::from_value::<CameraConfig>(c.config.clone()) {
                Ok(cfg) if cfg.enabled => {
                    wanted.insert(&c.id, (cfg, c.version));
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(camera = %c.id, "fleet: camera definition not readable: {e}")
                }
            }
        }
        let live: Vec<_> = state.live_nodes(self.lease).collect();
        let groups_of: HashMap<&str, &[String]> = live
            .iter()
            .map(|n| (n.id.as_str(), n.groups.as_slice()))
            .collect();
        // Stop what was removed, disabled or may no longer run here; restart what changed.
        let ids: Vec<String> = self.held.keys().cloned().collect();
        for id in ids {
            let Some((cfg, version)) = wanted.get(id.as_str()) else {
                tracing::info!(camera = %id, "fleet: camera removed or disabled; stopped");
                self.stop_and_release(store, &id).await;
                continue;
            };
            if !self.eligible(cfg, &self.p.config.groups) {
                tracing::info!(camera = %id, "fleet: camera may no longer run on this node; handed back");
                self.stop_and_release(store, &id).await;
                continue;
            }
            if self.held[&id].version != *version {
                match (self.p.validate)(cfg) {
                    Ok(settings) => match self.p.cameras.start(settings).await {
                        Ok(()) => {
                            if self.held[&id].version >= 0 {
                                tracing::info!(camera = %id, version, "fleet: camera changed; restarted");
                            } else {
                                tracing::info!(camera = %id, "fleet: camera taken up again");
                            }
                            self.held.get_mut(&id).expect("held").version = *version;
                        }
                        Err(e) => {
                            tracing::error!(camera = %id, "fleet: camera not started: {e}; handed back");
                            self.failed.insert(id.clone(), (*version, Instant::now()));
                            self.stop_and_release(store, &id).await;
                        }
                    },
                    Err(e) => {
                        tracing::error!(camera = %id, "fleet: camera not valid on this node: {e}; handed back");
                        self.failed.insert(id.clone(), (*version, Instant::now()));
                        self.stop_and_release(store, &id).await;
                    }
                }
            }
        }
        // Fair shares: each camera is shared among the live nodes that may run it.
        let mut share: HashMap<&str, f64> = HashMap::new();
        for (cfg, _) in wanted.values() {
            let able: Vec<&str> = live
                .iter()
                .filter(|n| self.eligible(cfg, &n.groups))
                .map(|n| n.id.as_str())
                .collect();
            for n in &able {
                *share.entry(n).or_default() += 1.0 / able.len() as f64;
            }
        }
        let cap = |n: &str| {
            live.iter()
                .find(|x| x.id == n)
                .map(|x| x.capacity)
                .filter(|c| *c > 0)
                .map_or(usize::MAX, |c| c as usize)
        };
        let share_of = |n: &str| {
            let fair = (share.get(n).copied().unwrap_or(0.0) - 1e-9)
                .ceil()
                .max(0.0) as usize;
            fair.min(cap(n))
        };
        let mut count: HashMap<&str, usize> = HashMap::new();
        let mut holder: HashMap<&str, &str> = HashMap::new();
        for l in state.held() {
            *count.entry(l.node.as_str()).or_default() += 1;
            holder.insert(l.camera.as_str(), l.node.as_str());
        }
        let mine = self.held.len();
        let my_share = share_of(&me);
        // Take free cameras up to the share, in an order of this node's own so that nodes
        // starting together reach for different cameras first.
        if mine < my_share {
            let mut free: Vec<(&str, &CameraConfig, i64)> = wanted
                .iter()
                .filter(|(id, (cfg, _))| {
                    !holder.contains_key(*id)
                        && !self.held.contains_key(**id)
                        && self.eligible(cfg, &self.p.config.groups)
                })
                .map(|(id, (cfg, v))| (*id, cfg, *v))
                .collect();
            free.retain(|(id, _, v)| match self.failed.get(*id) {
                Some((fv, at)) => fv != v || at.elapsed() > Duration::from_secs(30),
                None => true,
            });
            if let Some(given) = &self.handed_back {
                if self.last_release.elapsed() < self.tick * HANDED_BACK_TICKS {
                    free.retain(|(id, _, _)| id != given);
                }
            }
            free.sort_by_key(|(id, _, _)| mix(&me, id));
            let mut room = my_share - mine;
            for (id, cfg, version) in free {
                if room == 0 {
                    break;
                }
                let settings = match (self.p.validate)(cfg) {
                    Ok(s) => s,
                    Err(e) => {
                        tracing::error!(camera = %id, "fleet: camera not valid on this node: {e}");
                        self.failed
                            .insert(id.to_string(), (version, Instant::now()));
                        continue;
                    }
                };
                let generation = match store.fleet_acquire(&me, id, self.lease).await {
                    Ok(Some(g)) => g,
                    Ok(None) => continue, // another node was quicker
                    Err(e) => {
                        tracing::warn!(camera = %id, "fleet: lease not taken: {e}");
                        break;
                    }
                };
                self.p.fence.hold(id, until);
                self.held.insert(
                    id.to_string(),
                    Held {
                        generation,
                        version,
                    },
                );
                match self.p.cameras.start(settings).await {
                    Ok(()) => {
                        tracing::info!(camera = %id, generation, "fleet: camera taken");
                        room -= 1;
                    }
                    Err(e) => {
                        tracing::error!(camera = %id, "fleet: camera not started: {e}; handed back");
                        self.failed
                            .insert(id.to_string(), (version, Instant::now()));
                        self.stop_and_release(store, id).await;
                    }
                }
            }
        } else if mine >= 2 && self.last_release.elapsed() >= self.lease {
            // Hand one camera back when a node that has been up a while holds at least two
            // fewer and is below its share (one fewer is as even as it gets: no flapping).
            let settled = |n: &&pantau_store::fleet::NodeRow| {
                state.now.duration_since(n.started_at).unwrap_or_default() >= 2 * self.lease
            };
            let wanting: Vec<&str> = live
                .iter()
                .filter(|n| n.id != me && settled(n))
                .filter(|n| {
                    let theirs = count.get(n.id.as_str()).copied().unwrap_or(0);
                    theirs < share_of(&n.id) && theirs + 2 <= mine
                })
                .map(|n| n.id.as_str())
                .collect();
            let give = self.held.keys().find(|id| {
                wanted.get(id.as_str()).is_some_and(|(cfg, _)| {
                    wanting
                        .iter()
                        .any(|n| groups_of.get(n).is_some_and(|g| self.eligible(cfg, g)))
                })
            });
            if let Some(id) = give.cloned() {
                tracing::info!(camera = %id, to = ?wanting, "fleet: handing a camera back to even out the fleet");
                self.stop_and_release(store, &id).await;
                self.last_release = Instant::now();
                self.handed_back = Some(id);
            }
        }
    }

    async fn stop_camera(&mut self, id: &str) -> Option<Held> {
        // Stopped while its lease still holds, so what it hands over as it stops (the counts of
        // the open period, its last status) goes out; the fence closes after. When the lease is
        // no longer sure (a hang), the fence's own deadline has passed and drops them.
        if let Err(e) = self.p.cameras.stop(id).await {
            tracing::error!(camera = %id, "fleet: camera did not stop cleanly: {e}");
        }
        self.p.fence.let_go(id);
        self.held.remove(id)
    }

    async fn stop_and_release(&mut self, store: &Store, id: &str) {
        // Stopped first (its open counts handed over), then the lease goes back.
        if let Some(h) = self.stop_camera(id).await {
            if let Err(e) = store.fleet_release(&self.p.node, id, h.generation).await {
                tracing::warn!(camera = %id, "fleet: lease not handed back ({e}); it runs out by itself");
            }
        }
    }
}

/// Ticks a node leaves a camera it handed back to the others before it may take it again.
const HANDED_BACK_TICKS: u32 = 3;

/// The wait until the next tick: `tick` give or take a tenth, drawn anew each time. Nodes that
/// start together would otherwise step at the same instants for as long as they run, and the
/// node a camera is handed back to could lose the race for it to the node that handed it, at
/// every tick (seen in the fleet test: the third node, whose database is a proxy further away,
/// never got a camera in 90 s).
fn jittered(tick: Duration) -> Duration {
    use std::hash::{BuildHasher, Hasher};
    // Every RandomState has keys of its own: a fresh draw without a random-number crate.
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u8(0);
    let r = h.finish() as f64 / u64::MAX as f64;
    tick.mul_f64(0.9 + 0.2 * r)
}

/// A per-node order of camera ids (FNV-1a of node and camera).
fn mix(node: &str, camera: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in node.bytes().chain([0]).chain(camera.bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// Events of the fleet's cameras that run on other nodes, and dispatch actions taken on other
/// nodes, from the broker into this node's live streams, so every node's wall shows the whole
/// fleet and every console sees an incident acknowledged or assigned anywhere. What this node
/// produced reaches its live streams directly and is skipped here.
pub(crate) async fn relay(
    mut mqtt: pantau_sinks::mqtt::MqttSettings,
    topics: pantau_events::Topics,
    ingest: Arc<pantau_ingest::Ingest>,
    live: Arc<pantau_dashboard_api::Live>,
    stop: CancellationToken,
) {
    let (tx, mut rx) = tokio::sync::mpsc::channel(256);
    mqtt.client_id = format!("{}-live", mqtt.client_id);
    let prefix = format!("{}/{}/", topics.prefix, topics.site);
    let filter = format!("{prefix}#");
    tokio::spawn(pantau_sinks::mqtt::subscribe(mqtt, filter, tx, stop));
    while let Some((topic, payload)) = rx.recv().await {
        let Some(rest) = topic.strip_prefix(&prefix) else {
            continue;
        };
        let Ok(json) = String::from_utf8(payload) else {
            continue;
        };
        if let Some((camera, rule)) = rest.split_once("/events/") {
            if ingest.status(camera).is_some() {
                continue;
            }
            live.publish(pantau_dashboard_api::LiveMessage::new(
                "event",
                camera,
                Some(rule),
                json,
            ));
        } else if let Some(camera) = rest.strip_suffix("/incidents") {
            let Ok(change) = serde_json::from_str::<pantau_events::IncidentChange>(&json) else {
                continue;
            };
            if change.node.as_deref() == Some(topics.node.as_str()) {
                continue;
            }
            let mut m = pantau_dashboard_api::LiveMessage::new("incident", camera, None, json);
            m.handed_to.extend(change.agency);
            live.publish(m);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_jittered_by_a_tenth_and_drawn_anew() {
        let tick = Duration::from_secs(1);
        let draws: Vec<Duration> = (0..200).map(|_| jittered(tick)).collect();
        assert!(draws
            .iter()
            .all(|d| *d >= Duration::from_millis(900) && *d <= Duration::from_millis(1100)));
        // Spread over the range, not one value: two nodes started together drift apart.
        let (lo, hi) = (
            draws.iter().min().expect("draws"),
            draws.iter().max().expect("draws"),
        );
        assert!(*hi - *lo > Duration::from_millis(150), "{lo:?}..{hi:?}");
    }
}
