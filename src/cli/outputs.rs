//! Where `run` sends facts: the durable outbox, drained by the MQTT sink (configured broker or
//! the embedded one) and, when configured, the store sink.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use pantau_core::config::ValidConfig;
use pantau_core::outputs::WhenFull;
use pantau_events::{Event, EventKind, IdGenerator, Lifecycle, Severity, SCHEMA_VERSION};
use pantau_ingest::StatusChange;
use pantau_sinks::mqtt::{self, MqttSettings};
use pantau_sinks::outbox::{FullPolicy, Outbox, Record};
use pantau_sinks::{broker, store};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Topic names (docs/mqtt.md).
#[derive(Debug, Clone)]
pub struct Topics {
    pub prefix: String,
    pub site: String,
    pub node: String,
}

impl Topics {
    pub fn event(&self, camera: &str, rule: &str) -> String {
        format!("{}/{}/{camera}/events/{rule}", self.prefix, self.site)
    }
    pub fn counts(&self, camera: &str) -> String {
        format!("{}/{}/{camera}/counts", self.prefix, self.site)
    }
    pub fn tracks(&self, camera: &str) -> String {
        format!("{}/{}/{camera}/tracks", self.prefix, self.site)
    }
    pub fn status(&self, camera: &str) -> String {
        format!("{}/{}/{camera}/status", self.prefix, self.site)
    }
    pub fn available(&self) -> String {
        format!("{}/{}/available", self.prefix, self.node)
    }
}

/// The running outputs.
pub struct Outputs {
    pub outbox: Arc<Outbox>,
    /// The broker the MQTT sink talks to (configured or embedded).
    pub broker: Option<std::net::SocketAddr>,
    pub topics: Topics,
    pub ids: Arc<IdGenerator>,
    sinks: Vec<(&'static str, JoinHandle<()>)>,
    stop: CancellationToken,
}

impl Outputs {
    pub async fn start(valid: &ValidConfig, base: &Path) -> anyhow::Result<Self> {
        let c = &valid.config;
        // `join` keeps an absolute path as it is.
        let path = base.join(&c.outbox.path);
        let mut names = vec!["mqtt"];
        if c.store.is_some() {
            names.push("store");
        }
        let policy = match c.outbox.when_full {
            WhenFull::DropOldest => FullPolicy::DropOldest,
            WhenFull::RejectNew => FullPolicy::RejectNew,
        };
        let outbox = Arc::new(
            Outbox::open(&path, &names, c.outbox.max_mb << 20, policy)
                .with_context(|| "set outbox.path to a writable file")?,
        );
        let stop = CancellationToken::new();
        let (host, port, prefix, credentials, client_id, keep_alive) = match &c.mqtt {
            Some(m) => {
                let password = m
                    .password_env
                    .as_ref()
                    .and_then(|v| std::env::var(v).ok())
                    .unwrap_or_default();
                (
                    m.host.clone(),
                    m.port,
                    m.prefix.clone(),
                    m.username.clone().map(|u| (u, password)),
                    m.client_id.clone(),
                    Duration::from_secs(m.keep_alive_s),
                )
            }
            None => {
                let addr = c
                    .embedded
                    .mqtt_listen
                    .parse()
                    .context("embedded.mqtt_listen")?;
                broker::start(addr)?;
                tracing::info!(
                    listen = %addr,
                    "no [mqtt] configured: started the embedded MQTT broker; watch with `mosquitto_sub -h {} -p {} -t 'pantau/#' -v`",
                    addr.ip(),
                    addr.port()
                );
                (
                    addr.ip().to_string(),
                    addr.port(),
                    "pantau".to_string(),
                    None,
                    None,
                    Duration::from_secs(15),
                )
            }
        };
        let tls = match &c.mqtt {
            Some(m) if m.tls => {
                let read = |p: &std::path::PathBuf| {
                    std::fs::read(base.join(p))
                        .with_context(|| format!("cannot read {}", p.display()))
                };
                let ca = read(m.ca_file.as_ref().context("mqtt.ca_file")?)?;
                let client = match (&m.client_cert, &m.client_key) {
                    (Some(cert), Some(key)) => Some((read(cert)?, read(key)?)),
                    _ => None,
                };
                Some(mqtt::TlsFiles { ca, client })
            }
            _ => None,
        };
        let broker = std::net::ToSocketAddrs::to_socket_addrs(&(host.as_str(), port))
            .ok()
            .and_then(|mut a| a.next());
        let topics = Topics {
            prefix,
            site: c.node.site.clone(),
            node: c.node.name.clone(),
        };
        let settings = MqttSettings {
            host,
            port,
            client_id: client_id.unwrap_or_else(|| format!("pantau-{}", c.node.name)),
            credentials,
            availability_topic: topics.available(),
            keep_alive,
            batch: 256,
            tls,
        };
        let mut sinks = vec![(
            "mqtt",
            tokio::spawn(mqtt::run(
                outbox.clone(),
                "mqtt".into(),
                settings,
                stop.clone(),
            )),
        )];
        if let Some((url, schema)) = store_target(valid) {
            sinks.push((
                "store",
                tokio::spawn(store::run_sink(
                    outbox.clone(),
                    "store".into(),
                    url,
                    schema,
                    stop.clone(),
                )),
            ));
        } else {
            tracing::warn!("no [store] configured: events are published over MQTT but not stored");
        }
        Ok(Self {
            outbox,
            broker,
            topics,
            ids: Arc::new(IdGenerator::new()),
            sinks,
            stop,
        })
    }

    /// Hands records to the outbox (durable when this returns).
    pub fn append(&self, records: &[Record]) {
        if records.is_empty() {
            return;
        }
        if let Err(e) = self.outbox.append(records) {
            tracing::error!(records = records.len(), "events not accepted: {e}");
        }
    }

    pub fn event_record(&self, e: &Event) -> Record {
        let topic = self.topics.event(&e.camera, &e.rule);
        mqtt::record(&topic, false, serde_json::to_vec(e).unwrap_or_default())
    }

    /// A camera state change as a retained status message.
    pub fn status_record(&self, site: &str, change: &StatusChange) -> Record {
        let mut e = Event {
            id: self.ids.at(change.at),
            schema: SCHEMA_VERSION,
            site: site.to_string(),
            camera: change.camera_id.clone(),
            rule: "camera".into(),
            kind: EventKind::CameraStatus,
            lifecycle: Lifecycle::Single,
            incident: None,
            captured_at: change.at,
            severity: match change.state {
                pantau_ingest::CameraState::Failed => Severity::Critical,
                pantau_ingest::CameraState::Stalled | pantau_ingest::CameraState::BackingOff => {
                    Severity::Warning
                }
                _ => Severity::Info,
            },
            object: None,
            direction: None,
            snapshot: None,
            details: Default::default(),
        };
        e.details
            .insert("state".into(), change.state.as_str().into());
        if let Some(p) = &change.problem {
            e.details.insert("problem".into(), p.code.into());
            e.details.insert("message".into(), p.message.clone().into());
        }
        let topic = self.topics.status(&change.camera_id);
        mqtt::record(&topic, true, serde_json::to_vec(&e).unwrap_or_default())
    }

    /// Lets the sinks deliver what is queued (up to `grace`), then stops them.
    pub async fn stop(self, grace: Duration) {
        let deadline = tokio::time::Instant::now() + grace;
        while tokio::time::Instant::now() < deadline
            && self
                .sinks
                .iter()
                .any(|(name, _)| self.outbox.depth(name) > 0)
        {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        for (name, _) in &self.sinks {
            let left = self.outbox.depth(name);
            if left > 0 {
                tracing::warn!(
                    sink = name,
                    left,
                    "undelivered records stay in the outbox for the next start"
                );
            }
        }
        self.stop.cancel();
        for (_, task) in self.sinks {
            let _ = task.await;
        }
    }
}

/// The store's connection string and schema, when a store is configured.
pub fn store_target(valid: &ValidConfig) -> Option<(String, String)> {
    valid.config.store.as_ref().map(|s| {
        let url = match (&s.url, &s.url_env) {
            (Some(u), _) => u.clone(),
            (None, Some(var)) => std::env::var(var).unwrap_or_default(),
            (None, None) => String::new(),
        };
        (url, s.schema.clone())
    })
}
