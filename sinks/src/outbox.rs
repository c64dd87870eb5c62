//! The durable outbox.
//!
//! Records are typed messages ([`Record`]: kind, MQTT topic, retain flag, JSON) and get
//! increasing sequence numbers. All writes go through one writer thread that commits many
//! appends and acknowledgements in one transaction (group commit: one fsync for everything that
//! arrived during the previous one), so producers never run fsync on an async worker; an append
//! returns once its records are on disk. Each sink has a cursor (the last sequence it has
//! delivered); it reads after its cursor in order and moves the cursor when its destination
//! has confirmed delivery. Records every sink has passed are deleted. Records are numbered and
//! shown to sinks the moment they are accepted, while they wait for the writer and while their
//! commit is in flight, so a slow fsync (a disk busy with other files' writes stalls one for
//! 100-200 ms) delays neither delivery nor the next batch: durability is unchanged (an append still
//! returns only once its records are on disk, a cursor moves only once its ack is), but should that
//! commit fail the appender hears so while the broker may already have the record. After a crash
//! (even SIGKILL) a sink resumes after its cursor: nothing accepted is lost, and what was delivered
//! but not yet acknowledged is delivered again (the destinations deduplicate by event id).
//!
//! Storage is [redb](https://docs.rs/redb): an embedded, pure-Rust, copy-on-write B-tree with
//! ACID transactions and fsync on commit. A segment log would be simpler to write but would
//! need its own crash recovery, checksums and compaction; redb gives all three, is maintained,
//! and needs no C toolchain.
//!
//! A record a sink can never deliver (too large for the broker, a row the database refuses) is
//! copied to the dead letters with the reason, counted per sink, and the sink moves past it:
//! one bad record never stalls what comes after it.
//!
//! The outbox has a size cap. When it is reached, [`FullPolicy`] decides: drop the oldest
//! records (operators keep seeing fresh events; every dropped record is counted and logged) or
//! refuse new ones (the producer sees [`OutboxError::Full`] and counts it).

use std::collections::BTreeMap;
use std::collections::BTreeMap as SeqMap;
use std::collections::VecDeque;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use pantau_events::Kind;
use redb::{Database, ReadableTable, ReadableTableMetadata, TableDefinition};
use tokio::sync::{mpsc, oneshot, Notify};

/// seq -> record (see [`encode`]).
const RECORDS: TableDefinition<'_, u64, &[u8]> = TableDefinition::new("messages");
/// The first format (routing key `N`/`R` + topic, payload), converted on open.
const LEGACY_RECORDS: TableDefinition<'_, u64, &[u8]> = TableDefinition::new("records");
/// sink name -> last delivered seq.
const CURSORS: TableDefinition<'_, &str, u64> = TableDefinition::new("cursors");
/// Dead letters: number -> (sink, seq, reason, record).
const DEAD: TableDefinition<'_, u64, &[u8]> = TableDefinition::new("dead_letters");

/// Dead letters kept; the oldest go first (each was logged when it died).
const DEAD_KEPT: u64 = 10_000;

/// An outbox record: an outgoing message.
pub type Record = pantau_events::Message;

#[derive(Debug, Clone, thiserror::Error)]
pub enum OutboxError {
    #[error("outbox {path}: {reason}")]
    Storage { path: String, reason: String },
    #[error("outbox is full ({bytes} of {cap} bytes); the record was refused")]
    Full { bytes: u64, cap: u64 },
    #[error("outbox has no sink named \"{0}\"")]
    UnknownSink(String),
    #[error("outbox {0} is closed")]
    Closed(String),
}

/// What happens when the outbox reaches its size cap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FullPolicy {
    /// Delete the oldest records, counted in [`Outbox::dropped`].
    DropOldest,
    /// Refuse new records, counted in [`Outbox::refused`].
    RejectNew,
}

/// `kind, retain, topic length (u16 LE), topic, payload`.
fn encode(r: &Record) -> Vec<u8> {
    let topic = r.topic.as_bytes();
    let len = u16::try_from(topic.len()).unwrap_or(u16::MAX);
    let mut out = Vec::with_capacity(4 + topic.len() + r.payload.len());
    out.push(r.kind.code());
    out.push(u8::from(r.retain));
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&topic[..len as usize]);
    out.extend_from_slice(&r.payload);
    out
}

fn decode(bytes: &[u8]) -> Option<Record> {
    let kind = Kind::from_code(*bytes.first()?)?;
    let retain = *bytes.get(1)? != 0;
    let len = u16::from_le_bytes([*bytes.get(2)?, *bytes.get(3)?]) as usize;
    let topic = bytes.get(4..4 + len)?;
    Some(Record {
        kind,
        topic: String::from_utf8_lossy(topic).into_owned(),
        retain,
        payload: bytes[4 + len..].to_vec(),
    })
}

/// A record of the first format: its kind was never written, so it is read off the topic's
/// last level (the only place pantau ever guesses, once, when an old outbox is opened).
fn decode_legacy(bytes: &[u8]) -> Option<Record> {
    let len = u16::from_le_bytes([*bytes.first()?, *bytes.get(1)?]) as usize;
    let key = String::from_utf8_lossy(bytes.get(2..2 + len)?).into_owned();
    let (flag, topic) = key.split_at_checked(1)?;
    let kind = if topic.contains("/events/") {
        Kind::Event
    } else {
        match topic.rsplit('/').next()? {
            "status" => Kind::Status,
            "counts" => Kind::Counts,
            "tracks" => Kind::Track,
            "incidents" => Kind::Incident,
            _ => return None,
        }
    };
    Some(Record {
        kind,
        topic: topic.to_string(),
        retain: flag == "R",
        payload: bytes[2 + len..].to_vec(),
    })
}

/// A record a sink gave up on, with why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    pub sink: String,
    /// Its sequence number in the outbox.
    pub seq: u64,
    pub reason: String,
    pub record: Record,
}

fn encode_dead(d: &DeadLetter) -> Vec<u8> {
    let sink = d.sink.as_bytes();
    let reason = d.reason.as_bytes();
    let reason = &reason[..reason.len().min(u16::MAX as usize)];
    let mut out = Vec::new();
    out.push(sink.len().min(255) as u8);
    out.extend_from_slice(&sink[..sink.len().min(255)]);
    out.extend_from_slice(&d.seq.to_le_bytes());
    out.extend_from_slice(&(reason.len() as u16).to_le_bytes());
    out.extend_from_slice(reason);
    out.extend_from_slice(&encode(&d.record));
    out
}

fn decode_dead(b: &[u8]) -> Option<DeadLetter> {
    let sl = *b.first()? as usize;
    let sink = String::from_utf8_lossy(b.get(1..1 + sl)?).into_owned();
    let mut at = 1 + sl;
    let seq = u64::from_le_bytes(b.get(at..at + 8)?.try_into().ok()?);
    at += 8;
    let rl = u16::from_le_bytes([*b.get(at)?, *b.get(at + 1)?]) as usize;
    at += 2;
    let reason = String::from_utf8_lossy(b.get(at..at + rl)?).into_owned();
    let record = decode(b.get(at + rl..)?)?;
    Some(DeadLetter {
        sink,
        seq,
        reason,
        record,
    })
}

#[derive(Debug, Clone)]
struct State {
    /// The newest sequence number committed.
    last: u64,
    bytes: u64,
    cursors: BTreeMap<String, u64>,
    next_dead: u64,
}

/// Work for the writer thread.
enum Op {
    /// Records numbered at intake (seq, encoded), their bytes, and who waits for the commit.
    Append(
        Vec<(u64, Vec<u8>)>,
        u64,
        oneshot::Sender<Result<u64, OutboxError>>,
    ),
    Ack(String, u64, oneshot::Sender<Result<(), OutboxError>>),
    Dead(Box<DeadLetter>, oneshot::Sender<Result<(), OutboxError>>),
}

#[derive(Debug)]
struct Inner {
    db: Database,
    path: String,
    cap_bytes: u64,
    policy: FullPolicy,
    /// What is committed (the writer's copy is ahead while a group is applied).
    state: Mutex<State>,
    /// Numbering at intake; taken before `pending` wherever both are.
    intake: Mutex<Intake>,
    /// Records accepted but not yet committed, queued or being committed (seq -> encoded
    /// record): sinks read them at once.
    pending: Mutex<SeqMap<u64, Vec<u8>>>,
    /// The newest sequence number sinks can read (committed, queued or being committed).
    visible: AtomicU64,
    appended: Notify,
    dropped: AtomicU64,
    refused: AtomicU64,
    dead: Mutex<BTreeMap<String, u64>>,
    commits: AtomicU64,
    /// Held by a test to keep the writer from committing (a stalled disk).
    #[cfg(test)]
    stall: tokio::sync::Mutex<()>,
    /// Set by a test: an append that has just shown its records to sinks says so on the
    /// first channel and waits for a word on the second.
    #[cfg(test)]
    on_shown: Mutex<Option<(std::sync::mpsc::Sender<()>, std::sync::mpsc::Receiver<()>)>>,
    /// Set by a test: the writer refuses every ack (a full disk), and counts them.
    #[cfg(test)]
    refuse_acks: std::sync::atomic::AtomicBool,
    #[cfg(test)]
    refused_acks: AtomicU64,
}

/// Records are numbered when they are accepted, in the order they reach the writer.
#[derive(Debug)]
struct Intake {
    next_seq: u64,
    /// Bytes of records accepted and not yet committed (or failed).
    queued_bytes: u64,
}

/// How the writer groups work.
#[derive(Debug, Clone, Copy)]
pub struct OutboxOptions {
    /// Appends and acks committed together at most (1: one fsync per call).
    pub max_group: usize,
}

impl Default for OutboxOptions {
    fn default() -> Self {
        Self { max_group: 512 }
    }
}

#[derive(Debug)]
pub struct Outbox {
    inner: Arc<Inner>,
    ops: Option<mpsc::Sender<Op>>,
    writer: Option<std::thread::JoinHandle<()>>,
}

impl Outbox {
    /// Opens (or creates) the outbox at `path` for the given sinks. A sink new to an existing
    /// outbox starts at the oldest record still kept.
    pub fn open(
        path: &Path,
        sinks: &[&str],
        cap_bytes: u64,
        policy: FullPolicy,
    ) -> Result<Self, OutboxError> {
        Self::open_with(path, sinks, cap_bytes, policy, OutboxOptions::default())
    }

    pub fn open_with(
        path: &Path,
        sinks: &[&str],
        cap_bytes: u64,
        policy: FullPolicy,
        options: OutboxOptions,
    ) -> Result<Self, OutboxError> {
        let shown = path.display().to_string();
        let err = |e: &dyn std::fmt::Display| OutboxError::Storage {
            path: shown.clone(),
            reason: e.to_string(),
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| err(&e))?;
        }
        let db = Database::create(path).map_err(|e| err(&e))?;
        let tx = db.begin_write().map_err(|e| err(&e))?;
        // `newest`: the newest record on disk, all sinks can read now. Numbers past it that a
        // cursor has passed (a commit that failed after a sink read its group) are never
        // given again, but there is nothing there to read or wait for.
        let (next_seq, newest, bytes, first, mut cursors, next_dead) = {
            let mut records = tx.open_table(RECORDS).map_err(|e| err(&e))?;
            // Records of the first format move to the typed table, keeping their numbers.
            let mut legacy = tx.open_table(LEGACY_RECORDS).map_err(|e| err(&e))?;
            let mut converted = 0u64;
            while let Some((k, v)) = legacy.pop_first().map_err(|e| err(&e))? {
                match decode_legacy(v.value()) {
                    Some(r) => {
                        records
                            .insert(k.value(), encode(&r).as_slice())
                            .map_err(|e| err(&e))?;
                        converted += 1;
                    }
                    None => tracing::warn!(
                        seq = k.value(),
                        "outbox: an old record of unknown kind was dropped"
                    ),
                }
            }
            if converted > 0 {
                tracing::info!(
                    records = converted,
                    "outbox: records of the first format converted"
                );
            }
            let mut cursor_table = tx.open_table(CURSORS).map_err(|e| err(&e))?;
            let last = records.last().map_err(|e| err(&e))?.map(|(k, _)| k.value());
            let first = records
                .first()
                .map_err(|e| err(&e))?
                .map(|(k, _)| k.value());
            let mut bytes = 0u64;
            for item in records.iter().map_err(|e| err(&e))? {
                let (_, v) = item.map_err(|e| err(&e))?;
                bytes += v.value().len() as u64;
            }
            let mut cursors = BTreeMap::new();
            for item in cursor_table.iter().map_err(|e| err(&e))? {
                let (k, v) = item.map_err(|e| err(&e))?;
                cursors.insert(k.value().to_string(), v.value());
            }
            let start = first.map(|f| f - 1).unwrap_or_else(|| last.unwrap_or(0));
            for sink in sinks {
                if !cursors.contains_key(*sink) {
                    cursor_table.insert(*sink, start).map_err(|e| err(&e))?;
                    cursors.insert((*sink).to_string(), start);
                }
            }
            let dead = tx.open_table(DEAD).map_err(|e| err(&e))?;
            let next_dead = dead
                .last()
                .map_err(|e| err(&e))?
                .map(|(k, _)| k.value() + 1)
                .unwrap_or(1);
            // A sequence number is never reused, even after everything was delivered.
            let next_seq = last
                .map(|l| l + 1)
                .unwrap_or(1)
                .max(cursors.values().copied().max().unwrap_or(0) + 1);
            (
                next_seq,
                last.unwrap_or(0),
                bytes,
                first,
                cursors,
                next_dead,
            )
        };
        tx.commit().map_err(|e| err(&e))?;
        cursors.retain(|k, _| sinks.contains(&k.as_str()));
        tracing::info!(
            path = %shown,
            records = next_seq.saturating_sub(first.unwrap_or(next_seq)),
            bytes,
            "outbox opened"
        );
        let inner = Arc::new(Inner {
            db,
            path: shown.clone(),
            cap_bytes,
            policy,
            state: Mutex::new(State {
                last: newest,
                bytes,
                cursors,
                next_dead,
            }),
            intake: Mutex::new(Intake {
                next_seq,
                queued_bytes: 0,
            }),
            pending: Mutex::new(SeqMap::new()),
            visible: AtomicU64::new(newest),
            appended: Notify::new(),
            dropped: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            dead: Mutex::new(BTreeMap::new()),
            commits: AtomicU64::new(0),
            #[cfg(test)]
            stall: tokio::sync::Mutex::new(()),
            #[cfg(test)]
            on_shown: Mutex::new(None),
            #[cfg(test)]
            refuse_acks: std::sync::atomic::AtomicBool::new(false),
            #[cfg(test)]
            refused_acks: AtomicU64::new(0),
        });
        let (tx, rx) = mpsc::channel(1024);
        let writer = {
            let inner = inner.clone();
            let max_group = options.max_group.max(1);
            std::thread::Builder::new()
                .name("outbox-writer".into())
                .spawn(move || writer(&inner, rx, max_group))
                .map_err(|e| err(&e))?
        };
        Ok(Self {
            inner,
            ops: Some(tx),
            writer: Some(writer),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.inner.lock()
    }

    fn storage(&self, e: impl std::fmt::Display) -> OutboxError {
        self.inner.storage(e)
    }

    /// Hands `op` to the writer; the answer comes once its group is committed.
    async fn queue<T>(
        &self,
        op: impl FnOnce(oneshot::Sender<Result<T, OutboxError>>) -> Op,
    ) -> Result<Pending<T>, OutboxError> {
        let permit = self.permit().await?;
        let (tx, rx) = oneshot::channel();
        permit.send(op(tx));
        Ok(self.pending_answer(rx))
    }

    async fn submit<T>(
        &self,
        op: impl FnOnce(oneshot::Sender<Result<T, OutboxError>>) -> Op,
    ) -> Result<T, OutboxError> {
        self.queue(op).await?.done().await
    }

    fn submit_blocking<T>(
        &self,
        op: impl FnOnce(oneshot::Sender<Result<T, OutboxError>>) -> Op,
    ) -> Result<T, OutboxError> {
        let permit = self.permit_blocking()?;
        let (tx, rx) = oneshot::channel();
        permit.send(op(tx));
        rx.blocking_recv().map_err(|_| self.closed())?
    }

    fn closed(&self) -> OutboxError {
        OutboxError::Closed(self.inner.path.clone())
    }

    fn pending_answer<T>(&self, rx: oneshot::Receiver<Result<T, OutboxError>>) -> Pending<T> {
        Pending {
            rx,
            path: self.inner.path.clone(),
        }
    }

    /// Room for one op in the writer's queue (bounded: a writer stalled on the disk holds
    /// its producers back rather than memory growing).
    async fn permit(&self) -> Result<mpsc::Permit<'_, Op>, OutboxError> {
        let ops = self.ops.as_ref().ok_or_else(|| self.closed())?;
        ops.reserve().await.map_err(|_| self.closed())
    }

    fn permit_blocking(&self) -> Result<mpsc::Permit<'_, Op>, OutboxError> {
        let ops = self.ops.as_ref().ok_or_else(|| self.closed())?;
        loop {
            match ops.try_reserve() {
                Ok(permit) => return Ok(permit),
                Err(mpsc::error::TrySendError::Full(())) => {
                    std::thread::sleep(std::time::Duration::from_millis(1));
                }
                Err(mpsc::error::TrySendError::Closed(())) => return Err(self.closed()),
            }
        }
    }

    /// Numbers `records`, shows them to sinks and hands them to the writer, all at once:
    /// sinks read a record from the moment it is accepted, even while the writer is still
    /// committing an earlier group (a stalled fsync then delays no delivery), and the
    /// writer receives groups in the order of their numbers.
    fn accept(
        &self,
        permit: mpsc::Permit<'_, Op>,
        records: &[Record],
    ) -> Result<Pending<u64>, OutboxError> {
        let encoded: Vec<Vec<u8>> = records.iter().map(encode).collect();
        let incoming: u64 = encoded.iter().map(|e| e.len() as u64).sum();
        let (tx, rx) = oneshot::channel();
        let mut intake = self.inner.intake();
        if self.inner.policy == FullPolicy::RejectNew {
            let bytes = self.lock().bytes + intake.queued_bytes;
            if bytes + incoming > self.inner.cap_bytes {
                self.inner
                    .refused
                    .fetch_add(encoded.len() as u64, Ordering::Relaxed);
                return Err(OutboxError::Full {
                    bytes,
                    cap: self.inner.cap_bytes,
                });
            }
        }
        let first = intake.next_seq;
        intake.next_seq += encoded.len() as u64;
        intake.queued_bytes += incoming;
        let numbered: Vec<(u64, Vec<u8>)> = (first..).zip(encoded).collect();
        let shown: Vec<(u64, Vec<u8>)> = numbered.clone();
        // Sent under the intake lock, so the writer sees groups in number order, and before
        // sinks can read these records, so a sink's ack of them reaches the writer after them
        // (never a cursor on disk past a record that is not). The writer's answer for this
        // group takes the intake lock too: it finds the records shown below.
        permit.send(Op::Append(numbered, incoming, tx));
        if !shown.is_empty() {
            self.inner.pending().extend(shown);
            self.inner
                .visible
                .fetch_max(intake.next_seq - 1, Ordering::AcqRel);
            #[cfg(test)]
            self.inner.shown_hook();
        }
        drop(intake);
        self.inner.appended.notify_waiters();
        Ok(self.pending_answer(rx))
    }

    /// Appends records durably (on disk when this returns). Returns the last sequence number.
    pub async fn append(&self, records: &[Record]) -> Result<u64, OutboxError> {
        self.append_later(records).await?.done().await
    }

    /// Accepts records and returns without waiting for their commit: sinks can read them
    /// at once; [`Pending::done`] says when they are on disk (or why not). Lets a producer
    /// go on with its next batch while the disk is busy.
    pub async fn append_later(&self, records: &[Record]) -> Result<Pending<u64>, OutboxError> {
        let permit = self.permit().await?;
        self.accept(permit, records)
    }

    /// [`Outbox::append`] for threads outside the async runtime.
    pub fn append_blocking(&self, records: &[Record]) -> Result<u64, OutboxError> {
        let permit = self.permit_blocking()?;
        let pending = self.accept(permit, records)?;
        pending.rx.blocking_recv().map_err(|_| self.closed())?
    }

    /// Up to `max` records after the sink's cursor, in order.
    pub fn read(&self, sink: &str, max: usize) -> Result<Vec<(u64, Record)>, OutboxError> {
        self.read_after(sink, 0, max)
    }

    /// Up to `max` records after the sink's cursor and after `after` (what the sink has sent
    /// and is waiting to have acknowledged), in order; records whose commit is in flight
    /// included.
    pub fn read_after(
        &self,
        sink: &str,
        after: u64,
        max: usize,
    ) -> Result<Vec<(u64, Record)>, OutboxError> {
        let after = self.cursor(sink)?.max(after);
        // Records not yet committed first: once its commit ends a record leaves `pending`,
        // and the table read below (begun later) has it. Groups commit in number order, so
        // every pending record comes after every committed one.
        let pending: Vec<(u64, Vec<u8>)> = self
            .inner
            .pending()
            .range(after + 1..)
            .take(max)
            .map(|(k, v)| (*k, v.clone()))
            .collect();
        let tx = self.inner.db.begin_read().map_err(|e| self.storage(e))?;
        let table = tx.open_table(RECORDS).map_err(|e| self.storage(e))?;
        let mut out = Vec::new();
        let mut last = after;
        let committed = table.range(after + 1..).map_err(|e| self.storage(e))?;
        for item in committed {
            if out.len() >= max {
                break;
            }
            let (k, v) = item.map_err(|e| self.storage(e))?;
            last = k.value();
            match decode(v.value()) {
                Some(r) => out.push((k.value(), r)),
                None => tracing::error!(seq = k.value(), "outbox: unreadable record skipped"),
            }
        }
        for (seq, bytes) in pending {
            if out.len() >= max {
                break;
            }
            if seq > last {
                match decode(&bytes) {
                    Some(r) => out.push((seq, r)),
                    None => tracing::error!(seq, "outbox: unreadable record skipped"),
                }
            }
        }
        Ok(out)
    }

    fn cursor(&self, sink: &str) -> Result<u64, OutboxError> {
        self.lock()
            .cursors
            .get(sink)
            .copied()
            .ok_or_else(|| OutboxError::UnknownSink(sink.to_string()))
    }

    /// Waits until records past the sink's cursor exist.
    pub async fn wait(&self, sink: &str) {
        self.wait_after(sink, 0).await;
    }

    /// Waits until records past the sink's cursor and past `after` can be read.
    pub async fn wait_after(&self, sink: &str, after: u64) {
        loop {
            let notified = self.inner.appended.notified();
            let from = self.cursor(sink).unwrap_or(u64::MAX).max(after);
            if self.inner.visible.load(Ordering::Acquire) > from {
                return;
            }
            notified.await;
        }
    }

    /// Marks everything up to `seq` as delivered by `sink` and deletes what every sink has
    /// delivered.
    pub async fn ack(&self, sink: &str, seq: u64) -> Result<(), OutboxError> {
        self.check_sink(sink)?;
        self.submit(|tx| Op::Ack(sink.to_string(), seq, tx)).await
    }

    /// Queues an ack and returns without waiting for its commit: a sink that goes on with
    /// [`Outbox::read_after`] is not held up by the disk. Acks are applied in the order they
    /// are queued; [`AckPending::done`] says whether this one reached the disk.
    pub async fn ack_later(&self, sink: &str, seq: u64) -> Result<AckPending, OutboxError> {
        self.check_sink(sink)?;
        self.queue(|tx| Op::Ack(sink.to_string(), seq, tx)).await
    }

    /// [`Outbox::ack`] for threads outside the async runtime.
    pub fn ack_blocking(&self, sink: &str, seq: u64) -> Result<(), OutboxError> {
        self.check_sink(sink)?;
        self.submit_blocking(|tx| Op::Ack(sink.to_string(), seq, tx))
    }

    fn check_sink(&self, sink: &str) -> Result<(), OutboxError> {
        self.cursor(sink).map(|_| ())
    }

    /// Keeps a record `sink` can never deliver, with why, and counts it; logged here, once.
    /// The sink then moves past it with [`Outbox::ack`].
    pub async fn dead_letter(
        &self,
        sink: &str,
        seq: u64,
        record: &Record,
        reason: &str,
    ) -> Result<(), OutboxError> {
        tracing::error!(
            sink,
            seq,
            kind = record.kind.as_str(),
            topic = %record.topic,
            bytes = record.payload.len(),
            "undeliverable record moved to the outbox's dead letters: {reason}"
        );
        let dead = DeadLetter {
            sink: sink.to_string(),
            seq,
            reason: reason.to_string(),
            record: record.clone(),
        };
        self.submit(|tx| Op::Dead(Box::new(dead), tx)).await?;
        *self
            .inner
            .dead
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(sink.to_string())
            .or_insert(0) += 1;
        Ok(())
    }

    /// The newest `max` dead letters, oldest first.
    pub fn dead_letters(&self, max: usize) -> Result<Vec<DeadLetter>, OutboxError> {
        let tx = self.inner.db.begin_read().map_err(|e| self.storage(e))?;
        let table = tx.open_table(DEAD).map_err(|e| self.storage(e))?;
        let mut out = Vec::new();
        for item in table.iter().map_err(|e| self.storage(e))?.rev() {
            let (_, v) = item.map_err(|e| self.storage(e))?;
            if let Some(d) = decode_dead(v.value()) {
                out.push(d);
            }
            if out.len() >= max {
                break;
            }
        }
        out.reverse();
        Ok(out)
    }

    /// Records moved to the dead letters by each sink since the outbox was opened.
    pub fn dead_counts(&self) -> BTreeMap<String, u64> {
        self.inner
            .dead
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Records the sink has not delivered yet.
    pub fn depth(&self, sink: &str) -> u64 {
        let cursor = self.lock().cursors.get(sink).copied().unwrap_or(0);
        self.inner
            .visible
            .load(Ordering::Acquire)
            .saturating_sub(cursor)
    }

    /// The sinks, with what each has not delivered yet.
    pub fn depths(&self) -> Vec<(String, u64)> {
        let visible = self.inner.visible.load(Ordering::Acquire);
        self.lock()
            .cursors
            .iter()
            .map(|(k, c)| (k.clone(), visible.saturating_sub(*c)))
            .collect()
    }

    /// Bytes on disk in undelivered records.
    pub fn bytes(&self) -> u64 {
        self.lock().bytes
    }

    /// Records deleted undelivered because the outbox was full.
    pub fn dropped(&self) -> u64 {
        self.inner.dropped.load(Ordering::Relaxed)
    }

    /// Records refused because the outbox was full.
    pub fn refused(&self) -> u64 {
        self.inner.refused.load(Ordering::Relaxed)
    }

    /// Write transactions committed (each one fsync).
    pub fn commits(&self) -> u64 {
        self.inner.commits.load(Ordering::Relaxed)
    }

    /// Tests of the sinks: the writer refuses every ack from now on (`true`, a full disk)
    /// or takes them again; returns how many it refused so far.
    #[cfg(test)]
    pub(crate) fn refuse_acks(&self, refuse: bool) -> u64 {
        self.inner.refuse_acks.store(refuse, Ordering::Relaxed);
        self.inner.refused_acks.load(Ordering::Relaxed)
    }

    /// Tests of the sinks: keeps the writer from committing (a stalled disk) while the guard
    /// is held.
    #[cfg(test)]
    pub(crate) async fn stall_writer(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.inner.stall.lock().await
    }

    /// Number of records stored (for tests and metrics).
    pub fn stored(&self) -> Result<u64, OutboxError> {
        let tx = self.inner.db.begin_read().map_err(|e| self.storage(e))?;
        let table = tx.open_table(RECORDS).map_err(|e| self.storage(e))?;
        table.len().map_err(|e| self.storage(e))
    }
}

/// Work handed to the writer, on its way to the disk.
#[derive(Debug)]
pub struct Pending<T> {
    rx: oneshot::Receiver<Result<T, OutboxError>>,
    path: String,
}

/// An ack on its way to the disk ([`Outbox::ack_later`]).
pub type AckPending = Pending<()>;

/// Appends or acks handed to the writer, each with the caller's `K`, answered in the order
/// they were queued (the writer commits them in that order): the caller goes on while they
/// are on their way and waits for the oldest only when `max` are.
#[derive(Debug)]
pub struct OnTheirWay<K, T> {
    queue: VecDeque<(K, Pending<T>)>,
    max: usize,
}

/// An answer from the writer, with the caller's key.
pub type Answer<K, T> = (K, Result<T, OutboxError>);

impl<K, T> OnTheirWay<K, T> {
    pub fn new(max: usize) -> Self {
        Self {
            queue: VecDeque::new(),
            max: max.max(1),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// `max` are on their way: [`OnTheirWay::push`] would wait for the oldest.
    pub fn is_full(&self) -> bool {
        self.queue.len() >= self.max
    }

    /// The oldest's answer if it has come; never waits.
    pub fn ready(&mut self) -> Option<Answer<K, T>> {
        let answer = self.queue.front_mut()?.1.try_done()?;
        self.queue.pop_front().map(|(key, _)| (key, answer))
    }

    /// Waits for the oldest's answer (`None` when nothing is on its way). Cancel-safe: a
    /// wait dropped in `select!` leaves it queued.
    pub async fn oldest(&mut self) -> Option<Answer<K, T>> {
        let answer = self.queue.front_mut()?.1.finished().await;
        self.queue.pop_front().map(|(key, _)| (key, answer))
    }

    /// Queues one more, first taking the answers that have come and, when `max` are on
    /// their way, waiting for the oldest; returns those answers, in order.
    pub async fn push(&mut self, key: K, pending: Pending<T>) -> Vec<Answer<K, T>> {
        let mut answers = Vec::new();
        while let Some(answer) = self.ready() {
            answers.push(answer);
        }
        while self.queue.len() >= self.max {
            answers.extend(self.oldest().await);
        }
        self.queue.push_back((key, pending));
        answers
    }
}

impl<T> Pending<T> {
    /// Waits for its commit.
    pub async fn done(self) -> Result<T, OutboxError> {
        self.rx.await.map_err(|_| OutboxError::Closed(self.path))?
    }

    /// Waits for its commit without giving it up (for `select!`); once this has answered,
    /// the value is spent: drop it.
    async fn finished(&mut self) -> Result<T, OutboxError> {
        (&mut self.rx)
            .await
            .map_err(|_| OutboxError::Closed(self.path.clone()))?
    }

    /// The answer if its commit has ended, without waiting.
    fn try_done(&mut self) -> Option<Result<T, OutboxError>> {
        match self.rx.try_recv() {
            Ok(answer) => Some(answer),
            Err(oneshot::error::TryRecvError::Empty) => None,
            Err(oneshot::error::TryRecvError::Closed) => {
                Some(Err(OutboxError::Closed(self.path.clone())))
            }
        }
    }
}

impl Drop for Outbox {
    fn drop(&mut self) {
        // The writer ends with its queue, after committing what it holds.
        self.ops = None;
        if let Some(w) = self.writer.take() {
            let _ = w.join();
        }
    }
}

impl Inner {
    /// A group has left the writer, `committed` (the state after it) or not: its records
    /// (`seqs`, `bytes`) are no longer pending; all at once under the intake lock, so a full
    /// outbox never counts them twice. When its commit failed, those records, which sinks may
    /// have read, are not on disk and their numbers are never given again; what sinks can
    /// read falls back to what is committed or still queued, so none waits for numbers that
    /// will not come.
    fn group_done(&self, seqs: &[u64], bytes: u64, committed: Option<State>) {
        let mut intake = self.intake();
        intake.queued_bytes = intake.queued_bytes.saturating_sub(bytes);
        let failed = committed.is_none();
        if let Some(state) = committed {
            *self.lock() = state;
        }
        let mut pending = self.pending();
        for seq in seqs {
            pending.remove(seq);
        }
        if failed {
            let last = self.lock().last;
            let queued = pending.last_key_value().map_or(0, |(k, _)| *k);
            self.visible.store(last.max(queued), Ordering::Release);
        }
    }

    /// The test's pause right after an append showed its records (see `on_shown`).
    #[cfg(test)]
    fn shown_hook(&self) {
        let hook = self
            .on_shown
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some((shown, go)) = hook {
            let _ = shown.send(());
            let _ = go.recv();
        }
    }

    fn intake(&self) -> std::sync::MutexGuard<'_, Intake> {
        self.intake.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn pending(&self) -> std::sync::MutexGuard<'_, SeqMap<u64, Vec<u8>>> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn storage(&self, e: impl std::fmt::Display) -> OutboxError {
        OutboxError::Storage {
            path: self.path.clone(),
            reason: e.to_string(),
        }
    }
}

/// What one op did to the state, answered once the transaction commits.
enum Reply {
    Append(
        oneshot::Sender<Result<u64, OutboxError>>,
        Result<u64, OutboxError>,
    ),
    Unit(
        oneshot::Sender<Result<(), OutboxError>>,
        Result<(), OutboxError>,
    ),
}

/// The writer thread: takes what is queued (up to `max_group`), applies it in one transaction,
/// commits once, then answers every caller.
fn writer(inner: &Inner, mut rx: mpsc::Receiver<Op>, max_group: usize) {
    while let Some(first) = rx.blocking_recv() {
        let mut ops = vec![first];
        while ops.len() < max_group {
            match rx.try_recv() {
                Ok(op) => ops.push(op),
                Err(_) => break,
            }
        }
        let mut state = inner.lock().clone();
        let mut replies = Vec::with_capacity(ops.len());
        let mut dropped = 0u64;
        // This group's records and their bytes, pending until it ends.
        let mut group: Vec<u64> = Vec::new();
        let mut group_bytes = 0u64;
        for op in &ops {
            if let Op::Append(numbered, incoming, _) = op {
                group.extend(numbered.iter().map(|(k, _)| *k));
                group_bytes += incoming;
            }
        }
        let outcome = (|| -> Result<(), OutboxError> {
            let tx = inner.db.begin_write().map_err(|e| inner.storage(e))?;
            {
                let mut table = tx.open_table(RECORDS).map_err(|e| inner.storage(e))?;
                let mut cursors = tx.open_table(CURSORS).map_err(|e| inner.storage(e))?;
                let mut dead = tx.open_table(DEAD).map_err(|e| inner.storage(e))?;
                for op in ops {
                    match op {
                        Op::Append(numbered, incoming, reply) => {
                            // A full outbox refuses at intake; dropping makes room here.
                            if inner.policy == FullPolicy::DropOldest {
                                while state.bytes + incoming > inner.cap_bytes {
                                    let Some((_, v)) =
                                        table.pop_first().map_err(|e| inner.storage(e))?
                                    else {
                                        break;
                                    };
                                    state.bytes -= v.value().len() as u64;
                                    dropped += 1;
                                }
                            }
                            let last = numbered.last().map_or(state.last, |(k, _)| *k);
                            for (seq, bytes) in &numbered {
                                table
                                    .insert(*seq, bytes.as_slice())
                                    .map_err(|e| inner.storage(e))?;
                            }
                            state.last = state.last.max(last);
                            state.bytes += incoming;
                            replies.push(Reply::Append(reply, Ok(last)));
                        }
                        Op::Ack(sink, seq, reply) => {
                            #[cfg(test)]
                            if inner.refuse_acks.load(Ordering::Relaxed) {
                                inner.refused_acks.fetch_add(1, Ordering::Relaxed);
                                let full = inner.storage("no space left on device (a test)");
                                replies.push(Reply::Unit(reply, Err(full)));
                                continue;
                            }
                            let current = state.cursors.get(&sink).copied().unwrap_or(0);
                            if seq > current {
                                state.cursors.insert(sink.clone(), seq);
                                cursors
                                    .insert(sink.as_str(), seq)
                                    .map_err(|e| inner.storage(e))?;
                                let low = state.cursors.values().copied().min().unwrap_or(seq);
                                let gone = table
                                    .extract_from_if(..=low, |_, _| true)
                                    .map_err(|e| inner.storage(e))?;
                                for item in gone {
                                    let (_, v) = item.map_err(|e| inner.storage(e))?;
                                    state.bytes =
                                        state.bytes.saturating_sub(v.value().len() as u64);
                                }
                            }
                            replies.push(Reply::Unit(reply, Ok(())));
                        }
                        Op::Dead(letter, reply) => {
                            dead.insert(state.next_dead, encode_dead(&letter).as_slice())
                                .map_err(|e| inner.storage(e))?;
                            state.next_dead += 1;
                            let keep_from = state.next_dead.saturating_sub(DEAD_KEPT);
                            if keep_from > 0 {
                                let old = dead
                                    .extract_from_if(..keep_from, |_, _| true)
                                    .map_err(|e| inner.storage(e))?;
                                for item in old {
                                    item.map_err(|e| inner.storage(e))?;
                                }
                            }
                            replies.push(Reply::Unit(reply, Ok(())));
                        }
                    }
                }
            }
            #[cfg(test)]
            let _stalled = inner.stall.blocking_lock();
            tx.commit().map_err(|e| inner.storage(e))?;
            Ok(())
        })();
        match outcome {
            Ok(()) => {
                inner.commits.fetch_add(1, Ordering::Relaxed);
                inner.group_done(&group, group_bytes, Some(state));
                if dropped > 0 {
                    inner.dropped.fetch_add(dropped, Ordering::Relaxed);
                    tracing::error!(
                        dropped,
                        cap_bytes = inner.cap_bytes,
                        "outbox full: dropped the oldest undelivered records"
                    );
                }
                for r in replies {
                    match r {
                        Reply::Append(tx, v) => {
                            let _ = tx.send(v);
                        }
                        Reply::Unit(tx, v) => {
                            let _ = tx.send(v);
                        }
                    }
                }
                inner.appended.notify_waiters();
            }
            Err(e) => {
                inner.group_done(&group, group_bytes, None);
                // Nothing of this group is on disk; every caller hears why (the ops whose
                // reply was not reached drop their sender and hear that the outbox closed).
                for r in replies {
                    match r {
                        Reply::Append(tx, _) => {
                            let _ = tx.send(Err(e.clone()));
                        }
                        Reply::Unit(tx, _) => {
                            let _ = tx.send(Err(e.clone()));
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn rec(i: u64) -> Record {
        Record {
            kind: Kind::Event,
            topic: format!("pantau/kota/cam-{}/events/gate", i % 3),
            retain: i.is_multiple_of(2),
            payload: format!("event {i}").into_bytes(),
        }
    }

    #[test]
    fn sinks_read_and_ack_independently_and_survive_reopening() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("outbox.redb");
        {
            let ob = Outbox::open(&path, &["mqtt", "store"], 1 << 20, FullPolicy::DropOldest)
                .expect("open");
            ob.append_blocking(&(1..=10).map(rec).collect::<Vec<_>>())
                .expect("append");
            let got = ob.read("mqtt", 4).expect("read");
            assert_eq!(got.len(), 4);
            assert_eq!(got[0], (1, rec(1)));
            ob.ack_blocking("mqtt", 4).expect("ack");
            assert_eq!(ob.depth("mqtt"), 6);
            assert_eq!(ob.depth("store"), 10);
            assert_eq!(ob.stored().expect("len"), 10, "store still needs them all");
            ob.ack_blocking("store", 7).expect("ack");
            assert_eq!(ob.stored().expect("len"), 6, "1..=4 delivered everywhere");
        }
        // Reopen as after a crash: cursors and records are where they were.
        let ob = Outbox::open(&path, &["mqtt", "store"], 1 << 20, FullPolicy::DropOldest)
            .expect("reopen");
        assert_eq!(ob.read("mqtt", 100).expect("read")[0].0, 5);
        assert_eq!(ob.read("store", 100).expect("read")[0].0, 8);
        let last = ob.append_blocking(&[rec(11)]).expect("append");
        assert_eq!(last, 11, "sequence continues");
    }

    #[test]
    fn full_outbox_drops_oldest_and_counts() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ob = Outbox::open(
            &dir.path().join("o.redb"),
            &["mqtt"],
            200,
            FullPolicy::DropOldest,
        )
        .expect("open");
        for i in 0..50 {
            ob.append_blocking(&[rec(i)]).expect("append");
        }
        assert!(ob.bytes() <= 200);
        assert!(ob.dropped() > 0);
        let kept = ob.read("mqtt", 1000).expect("read");
        assert_eq!(
            kept.last().map(|r| r.1.clone()),
            Some(rec(49)),
            "newest kept"
        );
        assert_eq!(
            kept.len() as u64 + ob.dropped(),
            50,
            "every record kept or counted"
        );
    }

    #[test]
    fn full_outbox_can_refuse_instead() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ob = Outbox::open(
            &dir.path().join("o.redb"),
            &["mqtt"],
            100,
            FullPolicy::RejectNew,
        )
        .expect("open");
        let mut refused = 0;
        for i in 0..20 {
            if ob.append_blocking(&[rec(i)]).is_err() {
                refused += 1;
            }
        }
        assert!(refused > 0);
        assert_eq!(ob.refused(), refused);
        assert_eq!(
            ob.read("mqtt", 100).expect("read")[0].1,
            rec(0),
            "oldest kept"
        );
    }

    /// A 1 MiB outbox for `sinks` in `dir`, dropping the oldest when full.
    fn small(dir: &tempfile::TempDir, sinks: &[&str]) -> std::sync::Arc<Outbox> {
        std::sync::Arc::new(
            Outbox::open(
                &dir.path().join("o.redb"),
                sinks,
                1 << 20,
                FullPolicy::DropOldest,
            )
            .expect("open"),
        )
    }

    /// Numbers records `seqs` and shows them to sinks as intake does, without handing them
    /// to the writer (a group whose commit is still running); returns their bytes.
    fn in_flight(ob: &Outbox, seqs: &[u64]) -> u64 {
        let mut intake = ob.inner.intake();
        let encoded: Vec<(u64, Vec<u8>)> = seqs.iter().map(|&i| (i, encode(&rec(i)))).collect();
        let bytes = encoded.iter().map(|(_, v)| v.len() as u64).sum();
        ob.inner.pending().extend(encoded);
        let last = seqs.iter().copied().max().unwrap_or(0);
        intake.next_seq = intake.next_seq.max(last + 1);
        intake.queued_bytes += bytes;
        ob.inner.visible.fetch_max(last, Ordering::AcqRel);
        bytes
    }

    fn seqs(read: Vec<(u64, Record)>) -> Vec<u64> {
        read.into_iter().map(|r| r.0).collect()
    }

    /// `waiter` is still waiting after 100 ms, and ends within 2 s once record `next` is
    /// appended; returns the number the append gave it.
    async fn waits_until_appended(
        ob: &Outbox,
        waiter: tokio::task::JoinHandle<()>,
        next: u64,
        why: &str,
    ) -> u64 {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        assert!(!waiter.is_finished(), "{why}");
        let last = ob.append(&[rec(next)]).await.expect("append");
        tokio::time::timeout(std::time::Duration::from_secs(2), waiter)
            .await
            .expect("woken")
            .expect("task");
        last
    }

    #[tokio::test]
    async fn a_sink_reads_past_what_it_sent_while_its_ack_goes_to_disk() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ob = small(&dir, &["mqtt", "store"]);
        ob.append(&(1..=6).map(rec).collect::<Vec<_>>())
            .await
            .expect("append");
        assert_eq!(seqs(ob.read_after("mqtt", 0, 3).expect("read")), [1, 2, 3]);
        let ack = ob.ack_later("mqtt", 3).await.expect("queued");
        assert_eq!(
            seqs(ob.read_after("mqtt", 3, 10).expect("read")),
            [4, 5, 6],
            "the next batch does not wait for the ack's commit"
        );
        ack.done().await.expect("on disk");
        assert_eq!(ob.depth("mqtt"), 3);
        assert_eq!(
            ob.read("mqtt", 10).expect("read")[0].0,
            4,
            "the cursor moved"
        );
        assert_eq!(ob.read_after("store", 2, 10).expect("read")[0].0, 3);
        // Nothing past 6 yet: waiting past it waits for the next append.
        let waiter = {
            let ob = ob.clone();
            tokio::spawn(async move { ob.wait_after("mqtt", 6).await })
        };
        waits_until_appended(&ob, waiter, 7, "nothing new to read").await;
    }

    #[test]
    fn records_being_committed_are_read_after_the_committed_ones_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ob = small(&dir, &["mqtt"]);
        ob.append_blocking(&(1..=3).map(rec).collect::<Vec<_>>())
            .expect("append");
        // A group in flight, as the writer shows it while its commit runs: 4 and 5, and a
        // stale copy of 3 (a reader that cloned the group just before its commit ended).
        let bytes = in_flight(&ob, &[3, 4, 5]);
        let got = ob.read_after("mqtt", 1, 10).expect("read");
        assert_eq!(
            got,
            vec![(2, rec(2)), (3, rec(3)), (4, rec(4)), (5, rec(5))],
            "committed first, then the group in flight, each once"
        );
        assert_eq!(
            ob.read_after("mqtt", 0, 2).expect("read").len(),
            2,
            "max holds"
        );
        ob.inner.group_done(&[3, 4, 5], bytes, None);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn records_queued_behind_a_stalled_commit_are_read_at_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ob = small(&dir, &["mqtt", "store"]);
        let stall = ob.inner.stall.lock().await;
        let first = ob.append_later(&[rec(1)]).await.expect("accepted");
        let second = ob.append_later(&[rec(2), rec(3)]).await.expect("accepted");
        // The writer is stuck in the first group's commit (or has not begun it): everything
        // accepted is readable all the same, in order, and counted as undelivered.
        assert_eq!(seqs(ob.read_after("mqtt", 0, 10).expect("read")), [1, 2, 3]);
        assert_eq!(seqs(ob.read_after("store", 1, 10).expect("read")), [2, 3]);
        assert_eq!(ob.depth("mqtt"), 3);
        let woken = {
            let ob = ob.clone();
            tokio::spawn(async move { ob.wait_after("mqtt", 2).await })
        };
        tokio::time::timeout(std::time::Duration::from_secs(2), woken)
            .await
            .expect("record 3 is there to read")
            .expect("task");
        // An ack of what was read, queued before the commits end, holds once they do.
        let ack = ob.ack_later("mqtt", 3).await.expect("queued");
        drop(stall);
        assert_eq!(first.done().await.expect("on disk"), 1);
        assert_eq!(second.done().await.expect("on disk"), 3);
        ack.done().await.expect("ack on disk");
        assert_eq!(ob.depth("mqtt"), 0);
        assert_eq!(ob.depth("store"), 3);
        assert_eq!(
            ob.stored().expect("stored"),
            3,
            "the store has not read them"
        );
        assert!(ob.inner.pending().is_empty());
        assert_eq!(ob.inner.intake().queued_bytes, 0);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_ack_of_a_record_read_at_once_reaches_the_writer_after_the_record() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ob = small(&dir, &["mqtt"]);
        let stall = ob.inner.stall.lock().await;
        let (shown_tx, shown_rx) = std::sync::mpsc::channel();
        let (go_tx, go_rx) = std::sync::mpsc::channel();
        *ob.inner.on_shown.lock().expect("hook") = Some((shown_tx, go_rx));
        let appending = {
            let ob = ob.clone();
            std::thread::spawn(move || ob.append_blocking(&[rec(1)]))
        };
        // The append has shown record 1 and stands still: the sink reads it, delivers it and
        // queues its ack at once, as the MQTT sink does when the broker answers quickly.
        tokio::task::spawn_blocking(move || shown_rx.recv())
            .await
            .expect("task")
            .expect("the append shows its record");
        assert_eq!(seqs(ob.read_after("mqtt", 0, 10).expect("read")), [1]);
        let ack = ob.ack_later("mqtt", 1).await.expect("queued");
        go_tx.send(()).expect("go on");
        drop(stall);
        let appended = tokio::task::spawn_blocking(move || appending.join())
            .await
            .expect("task")
            .expect("thread");
        assert_eq!(appended.expect("on disk"), 1);
        ack.done().await.expect("ack on disk");
        // Had the ack reached the writer first, the cursor would have been on disk before the
        // record (a crash between the two loses it for every other sink), and the record,
        // delivered to its only sink, would still be kept.
        assert_eq!(ob.stored().expect("stored"), 0, "delivered and swept");
        assert_eq!(ob.depth("mqtt"), 0);
        assert!(ob.inner.pending().is_empty());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn answers_on_their_way_come_in_order_with_their_keys() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ob = small(&dir, &["mqtt"]);
        let mut on_disk = OnTheirWay::new(2);
        let stall = ob.inner.stall.lock().await;
        for (key, i) in [("a", 1), ("b", 2)] {
            let pending = ob.append_later(&[rec(i)]).await.expect("accepted");
            assert!(on_disk.push(key, pending).await.is_empty());
        }
        assert!(on_disk.ready().is_none(), "nothing is on disk yet");
        drop(stall);
        let third = ob.append_later(&[rec(3)]).await.expect("accepted");
        // Two are on their way: queuing a third first takes the oldest's answer.
        let answers = on_disk.push("c", third).await;
        assert!(matches!(answers.first(), Some(("a", Ok(1)))), "{answers:?}");
        let mut rest: Vec<_> = answers.into_iter().skip(1).collect();
        while let Some(answer) = on_disk.oldest().await {
            rest.push(answer);
        }
        let keys: Vec<_> = rest.iter().map(|(k, r)| (*k, r.clone().ok())).collect();
        assert_eq!(keys, [("b", Some(2)), ("c", Some(3))]);
        assert!(on_disk.is_empty() && on_disk.ready().is_none());
    }

    #[tokio::test]
    async fn a_failed_commit_leaves_nothing_to_wait_for_and_its_numbers_unused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ob = small(&dir, &["mqtt"]);
        ob.append(&(1..=3).map(rec).collect::<Vec<_>>())
            .await
            .expect("append");
        ob.ack("mqtt", 3).await.expect("ack");
        // A group (4 and 5) shown to sinks while its commit ran, and the commit failed.
        let bytes = in_flight(&ob, &[4, 5]);
        assert_eq!(ob.depth("mqtt"), 2);
        ob.inner.group_done(&[4, 5], bytes, None);
        assert_eq!(
            ob.depth("mqtt"),
            0,
            "nothing left to deliver (a drain ends)"
        );
        assert!(ob.read("mqtt", 10).expect("read").is_empty());
        let waiter = {
            let ob = ob.clone();
            tokio::spawn(async move { ob.wait("mqtt").await })
        };
        let last = waits_until_appended(&ob, waiter, 6, "a sink waits rather than spin").await;
        assert_eq!(last, 6, "4 and 5 may have been read: never given again");
        assert_eq!(ob.read("mqtt", 10).expect("read"), vec![(6, rec(6))]);
    }

    #[tokio::test]
    async fn reopened_after_a_failed_commit_a_sink_waits_instead_of_spinning() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ob = small(&dir, &["mqtt", "store"]);
        ob.append(&(1..=3).map(rec).collect::<Vec<_>>())
            .await
            .expect("append");
        ob.ack("mqtt", 3).await.expect("ack");
        ob.ack("store", 3).await.expect("ack");
        // 4 and 5 were read by the store sink while their commit ran; the commit failed, and
        // the store's ack of them reached the disk.
        let bytes = in_flight(&ob, &[4, 5]);
        ob.inner.group_done(&[4, 5], bytes, None);
        ob.ack("store", 5).await.expect("ack");
        drop(ob);
        let ob = small(&dir, &["mqtt", "store"]);
        assert_eq!(ob.stored().expect("stored"), 0);
        assert_eq!(ob.depths(), [("mqtt".into(), 0), ("store".into(), 0)]);
        assert!(ob.read_after("mqtt", 3, 10).expect("read").is_empty());
        // Nothing to read: the MQTT sink (cursor 3) waits for the next append, which gets a
        // number no sink has passed.
        let waiter = {
            let ob = ob.clone();
            tokio::spawn(async move { ob.wait_after("mqtt", 3).await })
        };
        let last = waits_until_appended(&ob, waiter, 6, "a sink waits rather than spin").await;
        assert_eq!(last, 6);
        assert_eq!(seqs(ob.read_after("mqtt", 3, 10).expect("read")), [6]);
        assert_eq!(seqs(ob.read_after("store", 5, 10).expect("read")), [6]);
    }

    #[tokio::test]
    async fn wait_wakes_on_append() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ob = small(&dir, &["mqtt"]);
        let waiter = {
            let ob = ob.clone();
            tokio::spawn(async move { ob.wait("mqtt").await })
        };
        tokio::task::yield_now().await;
        ob.append(&[rec(1)]).await.expect("append");
        tokio::time::timeout(std::time::Duration::from_secs(2), waiter)
            .await
            .expect("woken")
            .expect("task");
    }

    #[test]
    fn concurrent_appends_share_commits_and_keep_every_record() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ob = Outbox::open(
            &dir.path().join("o.redb"),
            &["mqtt"],
            1 << 30,
            FullPolicy::DropOldest,
        )
        .expect("open");
        std::thread::scope(|s| {
            for t in 0..8 {
                let ob = &ob;
                s.spawn(move || {
                    for i in 0..25 {
                        ob.append_blocking(&[rec(t * 1000 + i)]).expect("append");
                    }
                });
            }
        });
        assert_eq!(ob.depth("mqtt"), 200);
        let mut got: Vec<Record> = ob
            .read("mqtt", 1000)
            .expect("read")
            .into_iter()
            .map(|(_, r)| r)
            .collect();
        got.sort_by(|a, b| a.payload.cmp(&b.payload));
        let mut want: Vec<Record> = (0..8)
            .flat_map(|t| (0..25).map(move |i| rec(t * 1000 + i)))
            .collect();
        want.sort_by(|a, b| a.payload.cmp(&b.payload));
        assert_eq!(got, want);
        assert!(ob.commits() <= 200, "at most one commit per append");
    }

    #[test]
    fn dead_letters_keep_the_record_and_its_reason_across_reopening() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("o.redb");
        {
            let ob = Outbox::open(&path, &["mqtt"], 1 << 20, FullPolicy::DropOldest).expect("open");
            ob.append_blocking(&[rec(1), rec(2)]).expect("append");
            let rt = tokio::runtime::Builder::new_current_thread()
                .build()
                .expect("runtime");
            rt.block_on(ob.dead_letter("mqtt", 1, &rec(1), "too large"))
                .expect("dead letter");
            ob.ack_blocking("mqtt", 2).expect("ack");
            assert_eq!(ob.dead_counts()["mqtt"], 1);
        }
        let ob = Outbox::open(&path, &["mqtt"], 1 << 20, FullPolicy::DropOldest).expect("open");
        let dead = ob.dead_letters(10).expect("read");
        assert_eq!(dead.len(), 1);
        assert_eq!(dead[0].reason, "too large");
        assert_eq!(dead[0].record, rec(1));
        assert_eq!(dead[0].seq, 1);
        assert_eq!(ob.depth("mqtt"), 0);
        assert_eq!(
            ob.append_blocking(&[rec(3)]).expect("append"),
            3,
            "numbers continue after everything was delivered"
        );
    }

    #[test]
    fn records_of_the_first_format_are_converted_with_their_kind() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("o.redb");
        {
            let db = Database::create(&path).expect("create");
            let tx = db.begin_write().expect("tx");
            {
                let mut t = tx.open_table(LEGACY_RECORDS).expect("table");
                for (seq, key) in [(5u64, "Rpantau/k/c/status"), (6, "Npantau/k/c/events/gate")] {
                    let mut b = (key.len() as u16).to_le_bytes().to_vec();
                    b.extend_from_slice(key.as_bytes());
                    b.extend_from_slice(b"{}");
                    t.insert(seq, b.as_slice()).expect("insert");
                }
            }
            tx.commit().expect("commit");
        }
        let ob = Outbox::open(&path, &["mqtt"], 1 << 20, FullPolicy::DropOldest).expect("open");
        let got = ob.read("mqtt", 10).expect("read");
        assert_eq!(got.len(), 2);
        assert_eq!(
            (got[0].0, got[0].1.kind, got[0].1.retain),
            (5, Kind::Status, true)
        );
        assert_eq!(got[1].1.kind, Kind::Event);
        assert_eq!(got[1].1.topic, "pantau/k/c/events/gate");
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]
        /// Any interleaving of appends and acks: each sink sees every record exactly once, in
        /// order, and nothing is stored that every sink has delivered.
        #[test]
        fn every_record_once_in_order(ops in proptest::collection::vec((0u8..3, 1usize..5), 1..40)) {
            let dir = tempfile::tempdir().expect("tempdir");
            let ob = Outbox::open(&dir.path().join("o.redb"), &["a", "b"], 1 << 30, FullPolicy::DropOldest).expect("open");
            let mut next = 0u64;
            let mut seen: BTreeMap<&str, Vec<u64>> = BTreeMap::new();
            for (op, n) in ops {
                match op {
                    0 => {
                        let batch: Vec<Record> = (0..n).map(|_| { next += 1; rec(next) }).collect();
                        ob.append_blocking(&batch).expect("append");
                    }
                    _ => {
                        let sink = if op == 1 { "a" } else { "b" };
                        let got = ob.read(sink, n).expect("read");
                        if let Some((last, _)) = got.last() {
                            ob.ack_blocking(sink, *last).expect("ack");
                        }
                        seen.entry(sink).or_default().extend(got.iter().map(|(s, _)| *s));
                    }
                }
            }
            for sink in ["a", "b"] {
                let got = ob.read(sink, usize::MAX).expect("read");
                seen.entry(sink).or_default().extend(got.iter().map(|(s, _)| *s));
                prop_assert_eq!(seen[sink].clone(), (1..=next).collect::<Vec<_>>());
            }
        }
    }
}
