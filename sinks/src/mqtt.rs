//! MQTT sink: publishes what the outbox holds, QoS 1, in order, and acknowledges the outbox
//! only when the broker has acknowledged (PUBACK) every message of a batch.
//!
//! Each connection is its own generation: when it fails, the client is dropped, a new one
//! connects after a back-off, and delivery resumes from the outbox cursor. Messages whose
//! PUBACK was lost may be delivered twice (subscribers deduplicate by event id); none is lost.
//! A record that can never be delivered goes to the outbox's dead letters and delivery goes on:
//! one over the packet limit is caught before it is sent; one the broker refuses some other way
//! (it closes the connection) is found by sending the failed batch one message at a time, and
//! given up after the broker closed the connection [`STRIKES`] times on it alone.
//!
//! The node's availability topic is retained: `online` once connected, `offline` through the
//! last will when the connection dies.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use rumqttc::{AsyncClient, Event, LastWill, MqttOptions, Outgoing, Packet, QoS};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::outbox::{Answer, OnTheirWay, Outbox};

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
    /// The largest packet the broker takes (and pantau reads); bigger records go to the dead
    /// letters instead of killing the connection.
    pub max_packet_bytes: usize,
    /// Other brokers (host, port) tried in turn when the one in use cannot be reached.
    pub fallbacks: Vec<(String, u16)>,
}

impl MqttSettings {
    /// The `n`-th broker to try: `host:port` first, then each fallback, round and round.
    fn broker(&self, n: usize) -> MqttSettings {
        let mut s = self.clone();
        let all = 1 + self.fallbacks.len();
        if let Some((h, p)) = (n % all).checked_sub(1).and_then(|i| self.fallbacks.get(i)) {
            s.host = h.clone();
            s.port = *p;
        }
        s
    }
}

/// Times the broker may close the connection while one message alone is in flight before
/// that message is taken to be refused for good.
const STRIKES: u32 = 3;

/// What survives a connection: the batch that was in flight when one died, so the next
/// connections send one message at a time until the one the broker refuses is found.
#[derive(Debug, Default)]
struct Suspects {
    /// Send one at a time up to this sequence number.
    careful_until: u64,
    /// The message that was alone in flight when connections died, and how often.
    strikes: Option<(u64, u32)>,
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

/// Publishes from `outbox` (as sink `sink`) until `shutdown`.
pub async fn run(
    outbox: Arc<Outbox>,
    sink: String,
    settings: MqttSettings,
    shutdown: CancellationToken,
) {
    let mut failures = 0u32;
    let mut suspects = Suspects::default();
    // Which broker (of `host:port` and the fallbacks) is in use; the next one is tried as
    // soon as it fails, so a cluster or bridge keeps events flowing when one broker goes.
    let mut turn = 0usize;
    while !shutdown.is_cancelled() {
        let broker = settings.broker(turn);
        match connection(&outbox, &sink, &broker, &shutdown, &mut suspects).await {
            Ok(()) => return,
            Err(e) => {
                turn += 1;
                if !settings.fallbacks.is_empty() {
                    let next = settings.broker(turn);
                    warn!(
                        broker = %format!("{}:{}", broker.host, broker.port),
                        next = %format!("{}:{}", next.host, next.port),
                        depth = outbox.depth(&sink),
                        "MQTT broker lost or unreachable, trying the next one: {e}"
                    );
                    if !turn.is_multiple_of(1 + settings.fallbacks.len()) {
                        // Straight to the next broker; wait only after a full round.
                        continue;
                    }
                }
                if failures == 0 {
                    warn!(
                        broker = %format!("{}:{}", broker.host, broker.port),
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

/// Receives what other nodes publish on `filter` (QoS 0: live views want the newest, the
/// store has everything) and hands (topic, payload) to `tx` until `shutdown`; reconnects with
/// back-off. Payloads over the packet limit are refused by the client. A full `tx` drops the
/// message (live views are perishable).
pub async fn subscribe(
    settings: MqttSettings,
    filter: String,
    tx: tokio::sync::mpsc::Sender<(String, Vec<u8>)>,
    shutdown: CancellationToken,
) {
    let mut failures = 0u32;
    let all = settings;
    let mut turn = 0usize;
    while !shutdown.is_cancelled() {
        let settings = all.broker(turn);
        let mut opts = MqttOptions::new(&settings.client_id, &settings.host, settings.port);
        opts.set_keep_alive(settings.keep_alive);
        opts.set_clean_session(true);
        opts.set_max_packet_size(settings.max_packet_bytes, settings.max_packet_bytes);
        if let Some((u, p)) = &settings.credentials {
            opts.set_credentials(u, p);
        }
        if let Some(tls) = &settings.tls {
            let _ = rustls::crypto::ring::default_provider().install_default();
            opts.set_transport(rumqttc::Transport::tls_with_config(
                rumqttc::TlsConfiguration::Simple {
                    ca: tls.ca.clone(),
                    alpn: None,
                    client_auth: tls.client.clone(),
                },
            ));
        }
        let (client, mut events) = AsyncClient::new(opts, 64);
        let result: Result<(), String> = async {
            loop {
                let event = tokio::select! {
                    _ = shutdown.cancelled() => return Ok(()),
                    e = events.poll() => e.map_err(|e| e.to_string())?,
                };
                match event {
                    Event::Incoming(Packet::ConnAck(_)) => {
                        failures = 0;
                        client
                            .subscribe(&filter, QoS::AtMostOnce)
                            .await
                            .map_err(|e| e.to_string())?;
                        debug!(filter = %filter, "MQTT subscribed");
                    }
                    Event::Incoming(Packet::Publish(p)) => {
                        let _ = tx.try_send((p.topic, p.payload.to_vec()));
                    }
                    _ => {}
                }
            }
        }
        .await;
        match result {
            Ok(()) => return,
            Err(e) => {
                turn += 1;
                if failures == 0 {
                    warn!(filter = %filter, "MQTT subscription lost, reconnecting: {e}");
                }
                failures = failures.saturating_add(1);
                let base = (250u64 << failures.min(5)).min(5_000);
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_millis(base)) => {}
                }
            }
        }
    }
}

/// Acks on their way to disk at most; past this the sink waits for the oldest.
const ACKS_IN_FLIGHT: usize = 32;

/// The sink's acks on their way to disk. The sink never waits for one while it has something
/// to send or a connection to keep alive: a commit stalled on a busy disk delays no message.
/// With `ACKS_IN_FLIGHT` on their way the newest delivered batch waits as the one ack due
/// (acks are cumulative: it covers every batch before it) and is queued when one lands. Any
/// ack's error ends the connection (the next one starts again from the cursor on disk).
type AcksOnDisk = OnTheirWay<(), ()>;

/// The first error among acks' answers.
fn acks_ok(answers: impl IntoIterator<Item = Answer<(), ()>>) -> Result<(), String> {
    answers
        .into_iter()
        .try_for_each(|(_, answer)| answer.map_err(|e| e.to_string()))
}

/// Queues the ack still due when a connection ends, without waiting for the disk (the writer
/// commits it before the outbox closes).
async fn queue_last_ack(outbox: &Outbox, sink: &str, due: Option<u64>) {
    if let Some(last) = due {
        if let Err(e) = outbox.ack_later(sink, last).await {
            debug!(sink, "ack of delivered records not queued: {e}");
        }
    }
}

/// One connection's life. Returns Ok on shutdown, Err when the connection fails.
async fn connection(
    outbox: &Outbox,
    sink: &str,
    s: &MqttSettings,
    shutdown: &CancellationToken,
    suspects: &mut Suspects,
) -> Result<(), String> {
    let mut opts = MqttOptions::new(&s.client_id, &s.host, s.port);
    opts.set_keep_alive(s.keep_alive);
    opts.set_clean_session(true);
    opts.set_inflight(u16::try_from(s.batch.max(1)).unwrap_or(u16::MAX));
    opts.set_max_packet_size(s.max_packet_bytes, s.max_packet_bytes);
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
    let mut acked = 0usize;
    let mut batch_last: Option<u64> = None;
    let mut batch_len = 0usize;
    // The newest record sent and acknowledged by the broker, and the acks on their way to
    // disk: the next batch is read past it without waiting for the disk.
    let mut sent_through = 0u64;
    let mut acks = AcksOnDisk::new(ACKS_IN_FLIGHT);
    // Delivered through here, ack not queued yet (`ACKS_IN_FLIGHT` are on their way).
    let mut ack_due: Option<u64> = None;
    // The first Outgoing::Publish is the availability message, not from the outbox.
    let mut skip_publishes = 1usize;

    let result = loop {
        if let Some(last) = ack_due.filter(|_| !acks.is_full()) {
            let ack = outbox
                .ack_later(sink, last)
                .await
                .map_err(|e| e.to_string())?;
            acks_ok(acks.push((), ack).await)?;
            ack_due = None;
        }
        if batch_last.is_none() {
            let careful = outbox
                .read_after(sink, sent_through, 1)
                .map_err(|e| e.to_string())?
                .first()
                .is_some_and(|(seq, _)| *seq <= suspects.careful_until);
            let batch = outbox
                .read_after(sink, sent_through, if careful { 1 } else { s.batch })
                .map_err(|e| e.to_string())?;
            if let Some((last, _)) = batch.last() {
                let mut publish = Vec::new();
                for (seq, rec) in &batch {
                    // Fixed header (at most 5 bytes) + variable header + payload.
                    let size = rec.wire_len() + 5;
                    if size > s.max_packet_bytes {
                        let reason = format!(
                            "{size} bytes is over the MQTT packet limit of {} bytes (mqtt.max_packet_kb; the broker's limit must be at least as large)",
                            s.max_packet_bytes
                        );
                        outbox
                            .dead_letter(sink, *seq, rec, &reason)
                            .await
                            .map_err(|e| e.to_string())?;
                    } else if suspects
                        .strikes
                        .is_some_and(|(q, n)| q == *seq && n >= STRIKES)
                    {
                        let reason = format!(
                            "the broker closed the connection {STRIKES} times while this message alone was in flight (refused: check the broker's message size limit and topic permissions)"
                        );
                        outbox
                            .dead_letter(sink, *seq, rec, &reason)
                            .await
                            .map_err(|e| e.to_string())?;
                        suspects.strikes = None;
                    } else {
                        publish.push((*seq, rec));
                    }
                }
                if publish.is_empty() {
                    while let Some(answer) = acks.oldest().await {
                        acks_ok([answer])?;
                    }
                    outbox.ack(sink, *last).await.map_err(|e| e.to_string())?;
                    sent_through = *last;
                    ack_due = None;
                    continue;
                }
                batch_last = Some(*last);
                batch_len = publish.len();
                for (seq, rec) in publish {
                    client
                        .publish(
                            &rec.topic,
                            QoS::AtLeastOnce,
                            rec.retain,
                            rec.payload.clone(),
                        )
                        .await
                        .map_err(|e| e.to_string())?;
                    unsent.push_back(seq);
                }
            } else {
                // Nothing to send: the acks that reached the disk are done with; the others
                // are waited for below, alongside new records.
                acks_ok(std::iter::from_fn(|| acks.ready()))?;
            }
        }
        let event = tokio::select! {
            _ = shutdown.cancelled() => {
                let _ = client.disconnect().await;
                queue_last_ack(outbox, sink, ack_due).await;
                return Ok(());
            }
            _ = outbox.wait_after(sink, sent_through), if batch_last.is_none() => continue,
            done = acks.oldest(), if !acks.is_empty() => {
                acks_ok(done)?;
                continue;
            }
            ev = events.poll() => match ev {
                Ok(ev) => ev,
                Err(e) => break Err(e.to_string()),
            },
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
                if sent.remove(&ack.pkid).is_some() {
                    acked += 1;
                }
                if acked == batch_len && unsent.is_empty() {
                    if let Some(last) = batch_last.take() {
                        // Queued at the top of the loop, or once an ack lands.
                        ack_due = Some(last);
                        sent_through = last;
                        if suspects.strikes.is_some_and(|(q, _)| q <= last) {
                            suspects.strikes = None;
                        }
                    }
                    acked = 0;
                    batch_len = 0;
                }
            }
            _ => {}
        }
    };
    // What the broker took is not sent again by the next connection.
    queue_last_ack(outbox, sink, ack_due).await;
    // The connection died with a batch in flight: the next ones send it one by one, and a
    // message alone in flight each time collects a strike.
    if let Some(last) = batch_last {
        suspects.careful_until = suspects.careful_until.max(last);
        let alone: Vec<u64> = sent.values().chain(unsent.iter()).copied().collect();
        if batch_len == 1 && alone.len() == 1 {
            let seq = alone[0];
            suspects.strikes = match suspects.strikes {
                Some((q, n)) if q == seq => Some((q, n + 1)),
                _ => Some((seq, 1)),
            };
        }
    }
    result
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::outbox::{FullPolicy, Outbox, Record};
    use pantau_events::Kind;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_stalled_disk_never_stops_delivery_once_acks_pile_up() {
        let prefix = format!("pantau_test_stalled_acks_{}", std::process::id());
        let topic = format!("{prefix}/site/cam/crossings");
        // The broker on this machine; a subscriber counts what reaches it.
        let mut opts = MqttOptions::new(format!("{prefix}-sub"), "127.0.0.1", 1883);
        opts.set_keep_alive(Duration::from_secs(5));
        let (sub, mut sub_events) = AsyncClient::new(opts, 64);
        sub.subscribe(&topic, QoS::AtLeastOnce)
            .await
            .expect("subscribe");
        let (got_tx, mut got) = tokio::sync::mpsc::unbounded_channel();
        let listener = tokio::spawn(async move {
            while let Ok(ev) = sub_events.poll().await {
                match ev {
                    Event::Incoming(Packet::SubAck(_)) => {
                        let _ = got_tx.send(None);
                    }
                    Event::Incoming(Packet::Publish(p)) => {
                        let _ = got_tx.send(Some(p.payload.to_vec()));
                    }
                    _ => {}
                }
            }
        });
        assert_eq!(got.recv().await, Some(None), "subscribed");

        let dir = tempfile::tempdir().expect("tempdir");
        let outbox = Arc::new(
            Outbox::open(
                &dir.path().join("o.redb"),
                &["mqtt"],
                1 << 20,
                FullPolicy::DropOldest,
            )
            .expect("outbox"),
        );
        // The disk stalls: nothing commits, neither these records nor the sink's acks.
        let stalled = outbox.stall_writer().await;
        let records = 3 * ACKS_IN_FLIGHT;
        for i in 0..records {
            let record = Record {
                kind: Kind::Incident,
                topic: topic.clone(),
                retain: false,
                payload: i.to_string().into_bytes(),
            };
            // Shown to the sink at once; on disk once the writer commits.
            drop(outbox.append_later(&[record]).await.expect("accepted"));
        }
        let settings = MqttSettings {
            host: "127.0.0.1".into(),
            port: 1883,
            client_id: format!("{prefix}-pub"),
            credentials: None,
            availability_topic: format!("{prefix}/node/available"),
            keep_alive: Duration::from_secs(5),
            // One message a batch: one ack to the outbox for each.
            batch: 1,
            tls: None,
            max_packet_bytes: 64 * 1024,
            fallbacks: Vec::new(),
        };
        let stop = CancellationToken::new();
        let sink = tokio::spawn(run(outbox.clone(), "mqtt".into(), settings, stop.clone()));
        // Every record reaches the broker while the disk is stalled. Before, the sink waited
        // for the oldest of 32 acks inside its PUBACK handling: delivery stopped after 33
        // messages and the connection was no longer polled (no pings either).
        let mut received = Vec::new();
        while received.len() < records {
            match tokio::time::timeout(Duration::from_secs(5), got.recv()).await {
                Ok(Some(Some(payload))) => received.push(payload),
                Ok(_) => panic!("the subscriber stopped"),
                Err(_) => panic!(
                    "{} of {records} messages delivered while the disk stalls",
                    received.len()
                ),
            }
        }
        assert_eq!(
            received.last(),
            Some(&(records - 1).to_string().into_bytes())
        );
        // Once the disk is back the cursor reaches the end: the ack still due was queued.
        drop(stalled);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while outbox.depth("mqtt") > 0 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "{} records left unacknowledged",
                outbox.depth("mqtt")
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        stop.cancel();
        sink.await.expect("sink");
        listener.abort();
    }
}
