//! MQTT sink: publishes what the outbox holds, QoS 1, in order, and acknowledges the outbox
//! only when the broker has acknowledged (PUBACK) every message of a batch.
//!
//! Each connection is its own generation: when it fails, the client is dropped, a new one
//! connects after a back-off, and delivery resumes from the outbox cursor. Messages whose
//! PUBACK was lost may be delivered twice (subscribers deduplicate by event id); none is lost.
//! The node's availability topic is retained: `online` once connected, `offline` through the
//! last will when the connection dies.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use rumqttc::{AsyncClient, Event, LastWill, MqttOptions, Outgoing, Packet, QoS};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::outbox::{Outbox, Record};

/// Where and how to publish.
#[derive(Debug, Clone)]
pub struct MqttSettings {
    pub host: String,
    pub port: u16,
    pub client_id: String,
    /// User name and password.
    pub credentials: Option<(String, String)>,
    /// Retained `online` / `offline` (last will) topic, e.g. `pantau/<node>/available`.
    pub availability_topic: String,
    pub keep_alive: Duration,
    /// Messages per batch (and the most in flight).
    pub batch: usize,
    /// TLS: the broker's CA (PEM) and optionally a client certificate and key (PEM).
    pub tls: Option<TlsFiles>,
}

/// PEM contents for a TLS connection to the broker.
#[derive(Clone)]
pub struct TlsFiles {
    pub ca: Vec<u8>,
    pub client: Option<(Vec<u8>, Vec<u8>)>,
}

impl std::fmt::Debug for TlsFiles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print key material.
        f.debug_struct("TlsFiles")
            .field("client_auth", &self.client.is_some())
            .finish()
    }
}

/// A message as stored in the outbox: topic, retain flag and payload.
pub fn record(topic: &str, retain: bool, payload: Vec<u8>) -> Record {
    Record {
        key: format!("{}{topic}", if retain { 'R' } else { 'N' }),
        payload,
    }
}

fn topic_of(r: &Record) -> (&str, bool) {
    match r.key.split_at_checked(1) {
        Some(("R", t)) => (t, true),
        Some((_, t)) => (t, false),
        None => ("", false),
    }
}

/// Publishes from `outbox` (as sink `sink`) until `shutdown`.
pub async fn run(
    outbox: Arc<Outbox>,
    sink: String,
    settings: MqttSettings,
    shutdown: CancellationToken,
) {
    let mut failures = 0u32;
    while !shutdown.is_cancelled() {
        match connection(&outbox, &sink, &settings, &shutdown).await {
            Ok(()) => return,
            Err(e) => {
                if failures == 0 {
                    warn!(
                        broker = %format!("{}:{}", settings.host, settings.port),
                        depth = outbox.depth(&sink),
                        "MQTT broker unreachable, events wait in the outbox: {e}"
                    );
                } else {
                    debug!("MQTT reconnect failed: {e}");
                }
                failures = failures.saturating_add(1);
                let base = (250u64 << failures.min(5)).min(5_000);
                let jitter = rand::rng().random_range(0..=base / 5);
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_millis(base + jitter)) => {}
                }
            }
        }
    }
}

/// One connection's life. Returns Ok on shutdown, Err when the connection fails.
async fn connection(
    outbox: &Outbox,
    sink: &str,
    s: &MqttSettings,
    shutdown: &CancellationToken,
) -> Result<(), String> {
    let mut opts = MqttOptions::new(&s.client_id, &s.host, s.port);
    opts.set_keep_alive(s.keep_alive);
    opts.set_clean_session(true);
    opts.set_inflight(u16::try_from(s.batch.max(1)).unwrap_or(u16::MAX));
    opts.set_last_will(LastWill::new(
        &s.availability_topic,
        "offline",
        QoS::AtLeastOnce,
        true,
    ));
    if let Some((u, p)) = &s.credentials {
        opts.set_credentials(u, p);
    }
    if let Some(tls) = &s.tls {
        // rustls needs a process-wide crypto provider; ring, installed once.
        let _ = rustls::crypto::ring::default_provider().install_default();
        opts.set_transport(rumqttc::Transport::tls_with_config(
            rumqttc::TlsConfiguration::Simple {
                ca: tls.ca.clone(),
                alpn: None,
                client_auth: tls.client.clone(),
            },
        ));
    }
    let (client, mut events) = AsyncClient::new(opts, s.batch * 2 + 16);
    // Wait for the broker to accept the connection.
    loop {
        match events.poll().await.map_err(|e| e.to_string())? {
            Event::Incoming(Packet::ConnAck(_)) => break,
            _ => continue,
        }
    }
    info!(broker = %format!("{}:{}", s.host, s.port), "MQTT connected");
    client
        .publish(&s.availability_topic, QoS::AtLeastOnce, true, "online")
        .await
        .map_err(|e| e.to_string())?;

    // In flight: sequence numbers in publish order, pkid -> seq once sent, acked count.
    let mut unsent: VecDeque<u64> = VecDeque::new();
    let mut sent: HashMap<u16, u64> = HashMap::new();
    let mut acked: Vec<u64> = Vec::new();
    let mut batch_last: Option<u64> = None;
    let mut batch_len = 0usize;
    // The first Outgoing::Publish is the availability message, not from the outbox.
    let mut skip_publishes = 1usize;

    loop {
        if batch_last.is_none() {
            let batch = outbox.read(sink, s.batch).map_err(|e| e.to_string())?;
            if let Some((last, _)) = batch.last() {
                batch_last = Some(*last);
                batch_len = batch.len();
                for (seq, rec) in &batch {
                    let (topic, retain) = topic_of(rec);
                    client
                        .publish(topic, QoS::AtLeastOnce, retain, rec.payload.clone())
                        .await
                        .map_err(|e| e.to_string())?;
                    unsent.push_back(*seq);
                }
            }
        }
        let event = tokio::select! {
            _ = shutdown.cancelled() => {
                let _ = client.disconnect().await;
                return Ok(());
            }
            _ = outbox.wait(sink), if batch_last.is_none() => continue,
            ev = events.poll() => ev.map_err(|e| e.to_string())?,
        };
        match event {
            Event::Outgoing(Outgoing::Publish(pkid)) => {
                if skip_publishes > 0 {
                    skip_publishes -= 1;
                } else if let std::collections::hash_map::Entry::Vacant(slot) = sent.entry(pkid) {
                    // A retransmission keeps its pkid; a new pkid is the next message sent.
                    if let Some(seq) = unsent.pop_front() {
                        slot.insert(seq);
                    }
                }
            }
            Event::Incoming(Packet::PubAck(ack)) => {
                if let Some(seq) = sent.remove(&ack.pkid) {
                    acked.push(seq);
                }
                if acked.len() == batch_len && unsent.is_empty() {
                    if let Some(last) = batch_last.take() {
                        outbox.ack(sink, last).map_err(|e| e.to_string())?;
                    }
                    acked.clear();
                    batch_len = 0;
                }
            }
            _ => {}
        }
    }
}
