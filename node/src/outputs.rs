//! The publish and sink stages: typed messages go into the durable outbox (never dropped
//! silently), and the MQTT sink (configured broker or the embedded one) and, when configured,
//! the store sink deliver from it at their own pace.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use pantau_config::config::ValidConfig;
use pantau_config::outputs::WhenFull;
use pantau_events::{IdGenerator, Message, Topics};
use pantau_sinks::mqtt::{self, MqttSettings};
use pantau_sinks::outbox::{Answer, FullPolicy, OnTheirWay, Outbox};
use pantau_sinks::{broker, store};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::NodeError;

/// Batches of messages waiting for the outbox. Analysis waits when this is full (events are
/// not perishable); the outbox writer commits what arrives together.
const PUBLISH_QUEUE: usize = 256;

/// The running outputs.
#[derive(Debug)]
pub struct Outputs {
    pub outbox: Arc<Outbox>,
    /// The broker the MQTT sink talks to (configured or embedded).
    pub broker: Option<std::net::SocketAddr>,
    pub topics: Topics,
    pub ids: Arc<IdGenerator>,
    /// How the MQTT sink reaches the broker (the fleet's live relay subscribes the same way).
    pub mqtt: MqttSettings,
    sinks: Vec<(&'static str, JoinHandle<()>)>,
    stop: CancellationToken,
}

/// Where analysis and the status watcher hand their messages: a bounded queue in front of the
/// outbox.
#[derive(Debug, Clone)]
pub struct Publisher {
    tx: mpsc::Sender<Vec<Message>>,
}

impl Publisher {
    /// Queues messages; waits while the queue is full. From async code.
    pub async fn send(&self, messages: Vec<Message>) {
        if messages.is_empty() {
            return;
        }
        if self.tx.send(messages).await.is_err() {
            tracing::error!("the publish stage has stopped; messages not queued");
        }
    }

    /// Queues messages from analysis (a synchronous callback on the runtime): returns at once
    /// when there is room, otherwise waits on this worker without holding up the others.
    pub fn send_from_analysis(&self, messages: Vec<Message>) {
        if messages.is_empty() {
            return;
        }
        match self.tx.try_send(messages) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(messages)) => {
                let sent = tokio::task::block_in_place(|| self.tx.blocking_send(messages));
                if sent.is_err() {
                    tracing::error!("the publish stage has stopped; messages not queued");
                }
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {
                tracing::error!("the publish stage has stopped; messages not queued")
            }
        }
    }
}

/// Appends accepted by the outbox and not yet on disk; past this many the publish stage waits
/// for the oldest (a disk that stalls for good holds analysis back instead of memory growing).
const COMMITS_IN_FLIGHT: usize = 64;

/// The publish stage: hands every queued batch to the outbox; once `closing` is cancelled
/// (every producer has stopped) it appends what is still queued, waits until all of it is on
/// disk and ends. It does not wait for each batch's commit before taking the next: the outbox
/// shows a record to the sinks as soon as it accepts it, so events that arrive while the disk
/// is busy (a commit can stall for 100-200 ms) go out at once instead of queueing behind it.
fn publish_stage(outbox: Arc<Outbox>, closing: CancellationToken) -> (Publisher, JoinHandle<()>) {
    let (tx, mut rx) = mpsc::channel::<Vec<Message>>(PUBLISH_QUEUE);
    let task = tokio::spawn(async move {
        let mut on_disk = OnTheirWay::new(COMMITS_IN_FLIGHT);
        let report = |(records, answer): Answer<usize, u64>| {
            if let Err(e) = answer {
                tracing::error!(records, "events not accepted by the outbox: {e}");
            }
        };
        while let Some(mut batch) = crate::next_until_closed(&mut rx, &closing).await {
            // Whatever else is queued goes in the same append.
            while let Ok(more) = rx.try_recv() {
                batch.extend(more);
                if batch.len() >= 4096 {
                    break;
                }
            }
            match outbox.append_later(&batch).await {
                Ok(pending) => on_disk
                    .push(batch.len(), pending)
                    .await
                    .into_iter()
                    .for_each(report),
                Err(e) => report((batch.len(), Err(e))),
            }
        }
        while let Some(answer) = on_disk.oldest().await {
            report(answer);
        }
    });
    (Publisher { tx }, task)
}

impl Outputs {
    /// Opens the outbox, starts the sinks and the publish stage.
    pub async fn start(
        valid: &ValidConfig,
        base: &Path,
        closing: CancellationToken,
    ) -> Result<(Self, Publisher, JoinHandle<()>), NodeError> {
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
            Outbox::open(&path, &names, c.outbox.max_mb << 20, policy).map_err(|e| {
                NodeError::Start(format!("{e}; set outbox.path to a writable file"))
            })?,
        );
        let stop = CancellationToken::new();
        let (host, port, prefix, credentials, client_id, keep_alive, max_packet_kb) = match &c.mqtt
        {
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
                    m.max_packet_kb,
                )
            }
            None => {
                let addr: std::net::SocketAddr = c.embedded.mqtt_listen.parse().map_err(|_| {
                    NodeError::Start(format!(
                        "embedded.mqtt_listen \"{}\" is not an address:port",
                        c.embedded.mqtt_listen
                    ))
                })?;
                let credentials = c.embedded.mqtt_username.clone().map(|u| {
                    let password = std::env::var(&c.embedded.mqtt_password_env).unwrap_or_default();
                    (u, password)
                });
                broker::start(broker::BrokerOptions {
                    addr,
                    credentials: credentials.clone(),
                    memory_mb: c.embedded.mqtt_memory_mb,
                })
                .map_err(|e| NodeError::Start(e.to_string()))?;
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
                    credentials,
                    None,
                    Duration::from_secs(15),
                    // The embedded broker's own limit (sinks::broker).
                    1024,
                )
            }
        };
        let tls = match &c.mqtt {
            Some(m) if m.tls => {
                let read = |p: &std::path::PathBuf| {
                    std::fs::read(base.join(p))
                        .map_err(|e| NodeError::Start(format!("cannot read {}: {e}", p.display())))
                };
                let ca = read(
                    m.ca_file
                        .as_ref()
                        .ok_or_else(|| NodeError::Start("mqtt.tls needs mqtt.ca_file".into()))?,
                )?;
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
            max_packet_bytes: max_packet_kb as usize * 1024,
            // Checked by the config (outputs::check); the embedded broker has none.
            fallbacks: c
                .mqtt
                .iter()
                .flat_map(|m| m.fallbacks.iter())
                .filter_map(|f| pantau_config::outputs::parse_host_port(f))
                .collect(),
        };
        let mut sinks = vec![(
            "mqtt",
            tokio::spawn(mqtt::run(
                outbox.clone(),
                "mqtt".into(),
                settings.clone(),
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
                    c.fleet.enabled.then(|| c.node.name.clone()),
                    stop.clone(),
                )),
            ));
        } else {
            tracing::warn!("no [store] configured: events are published over MQTT but not stored");
        }
        let (publisher, publish_task) = publish_stage(outbox.clone(), closing);
        Ok((
            Self {
                outbox,
                broker,
                topics,
                ids: Arc::new(IdGenerator::new()),
                mqtt: settings,
                sinks,
                stop,
            },
            publisher,
            publish_task,
        ))
    }

    /// Lets the sinks deliver what the outbox holds (up to `grace`), then stops them. Returns
    /// what each sink left for the next start.
    pub async fn stop(self, grace: Duration) -> Vec<(&'static str, u64)> {
        let deadline = tokio::time::Instant::now() + grace;
        while tokio::time::Instant::now() < deadline
            && self
                .sinks
                .iter()
                .any(|(name, _)| self.outbox.depth(name) > 0)
        {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let mut left = Vec::new();
        for (name, _) in &self.sinks {
            let n = self.outbox.depth(name);
            if n > 0 {
                tracing::warn!(
                    sink = name,
                    left = n,
                    "undelivered records stay in the outbox for the next start"
                );
            }
            left.push((*name, n));
        }
        self.stop.cancel();
        for (_, task) in self.sinks {
            let _ = task.await;
        }
        left
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
