//! The durable outbox.
//!
//! Records are appended in one transaction per batch and get increasing sequence numbers. Each
//! sink has a cursor (the last sequence it has delivered); it reads after its cursor in order
//! and moves the cursor when its destination has confirmed delivery. Records every sink has
//! passed are deleted. After a crash (even SIGKILL) a sink resumes after its cursor: nothing
//! accepted is lost, and what was delivered but not yet acknowledged is delivered again (the
//! destinations deduplicate by event id).
//!
//! Storage is [redb](https://docs.rs/redb): an embedded, pure-Rust, copy-on-write B-tree with
//! ACID transactions and fsync on commit. A segment log would be simpler to write but would
//! need its own crash recovery, checksums and compaction; redb gives all three, is maintained,
//! and needs no C toolchain.
//!
//! The outbox has a size cap. When it is reached, [`FullPolicy`] decides: drop the oldest
//! records (operators keep seeing fresh events; every dropped record is counted and logged) or
//! refuse new ones (the producer sees [`OutboxError::Full`] and counts it).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use redb::{Database, ReadableTable, ReadableTableMetadata, TableDefinition};
use tokio::sync::Notify;

/// seq -> record (key length u16 LE, key bytes, payload bytes).
const RECORDS: TableDefinition<'_, u64, &[u8]> = TableDefinition::new("records");
/// sink name -> last delivered seq.
const CURSORS: TableDefinition<'_, &str, u64> = TableDefinition::new("cursors");

#[derive(Debug, thiserror::Error)]
pub enum OutboxError {
    #[error("outbox {path}: {reason}")]
    Storage { path: String, reason: String },
    #[error("outbox is full ({bytes} of {cap} bytes); the record was refused")]
    Full { bytes: u64, cap: u64 },
    #[error("outbox has no sink named \"{0}\"")]
    UnknownSink(String),
}

/// What happens when the outbox reaches its size cap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FullPolicy {
    /// Delete the oldest records, counted in [`Outbox::dropped`].
    DropOldest,
    /// Refuse new records, counted in [`Outbox::refused`].
    RejectNew,
}

/// One record: a routing key (e.g. camera id, so order per camera can be kept) and a payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub key: String,
    pub payload: Vec<u8>,
}

fn encode(r: &Record) -> Vec<u8> {
    let key = r.key.as_bytes();
    let len = u16::try_from(key.len()).unwrap_or(u16::MAX);
    let mut out = Vec::with_capacity(2 + key.len() + r.payload.len());
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&key[..len as usize]);
    out.extend_from_slice(&r.payload);
    out
}

fn decode(bytes: &[u8]) -> Record {
    let len = bytes
        .get(..2)
        .map(|b| u16::from_le_bytes([b[0], b[1]]) as usize)
        .unwrap_or(0);
    let key_end = (2 + len).min(bytes.len());
    Record {
        key: String::from_utf8_lossy(&bytes[2.min(bytes.len())..key_end]).into_owned(),
        payload: bytes[key_end..].to_vec(),
    }
}

#[derive(Debug)]
struct State {
    next_seq: u64,
    bytes: u64,
    cursors: BTreeMap<String, u64>,
}

#[derive(Debug)]
pub struct Outbox {
    db: Database,
    path: String,
    cap_bytes: u64,
    policy: FullPolicy,
    state: Mutex<State>,
    appended: Notify,
    dropped: AtomicU64,
    refused: AtomicU64,
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
        let (next_seq, bytes, first, mut cursors) = {
            let records = tx.open_table(RECORDS).map_err(|e| err(&e))?;
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
            (last.map(|l| l + 1).unwrap_or(1), bytes, first, cursors)
        };
        tx.commit().map_err(|e| err(&e))?;
        cursors.retain(|k, _| sinks.contains(&k.as_str()));
        tracing::info!(
            path = %shown,
            records = next_seq.saturating_sub(first.unwrap_or(next_seq)),
            bytes,
            "outbox opened"
        );
        Ok(Self {
            db,
            path: shown,
            cap_bytes,
            policy,
            state: Mutex::new(State {
                next_seq,
                bytes,
                cursors,
            }),
            appended: Notify::new(),
            dropped: AtomicU64::new(0),
            refused: AtomicU64::new(0),
        })
    }

    fn storage(&self, e: impl std::fmt::Display) -> OutboxError {
        OutboxError::Storage {
            path: self.path.clone(),
            reason: e.to_string(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Appends records durably (on disk when this returns). Returns the last sequence number.
    pub fn append(&self, records: &[Record]) -> Result<u64, OutboxError> {
        let encoded: Vec<Vec<u8>> = records.iter().map(encode).collect();
        let incoming: u64 = encoded.iter().map(|e| e.len() as u64).sum();
        let mut state = self.lock();
        let tx = self.db.begin_write().map_err(|e| self.storage(e))?;
        {
            let mut table = tx.open_table(RECORDS).map_err(|e| self.storage(e))?;
            if state.bytes + incoming > self.cap_bytes {
                match self.policy {
                    FullPolicy::RejectNew => {
                        self.refused
                            .fetch_add(records.len() as u64, Ordering::Relaxed);
                        return Err(OutboxError::Full {
                            bytes: state.bytes,
                            cap: self.cap_bytes,
                        });
                    }
                    FullPolicy::DropOldest => {
                        let mut dropped = 0u64;
                        while state.bytes + incoming > self.cap_bytes {
                            let Some((_, v)) = table.pop_first().map_err(|e| self.storage(e))?
                            else {
                                break;
                            };
                            state.bytes -= v.value().len() as u64;
                            dropped += 1;
                        }
                        if dropped > 0 {
                            self.dropped.fetch_add(dropped, Ordering::Relaxed);
                            tracing::error!(
                                dropped,
                                cap_bytes = self.cap_bytes,
                                "outbox full: dropped the oldest undelivered records"
                            );
                        }
                    }
                }
            }
            for bytes in &encoded {
                let seq = state.next_seq;
                table
                    .insert(seq, bytes.as_slice())
                    .map_err(|e| self.storage(e))?;
                state.next_seq += 1;
            }
        }
        tx.commit().map_err(|e| self.storage(e))?;
        state.bytes += incoming;
        let last = state.next_seq - 1;
        drop(state);
        self.appended.notify_waiters();
        Ok(last)
    }

    /// Up to `max` records after the sink's cursor, in order.
    pub fn read(&self, sink: &str, max: usize) -> Result<Vec<(u64, Record)>, OutboxError> {
        let after = *self
            .lock()
            .cursors
            .get(sink)
            .ok_or_else(|| OutboxError::UnknownSink(sink.to_string()))?;
        let tx = self.db.begin_read().map_err(|e| self.storage(e))?;
        let table = tx.open_table(RECORDS).map_err(|e| self.storage(e))?;
        let mut out = Vec::new();
        for item in table.range(after + 1..).map_err(|e| self.storage(e))? {
            let (k, v) = item.map_err(|e| self.storage(e))?;
            out.push((k.value(), decode(v.value())));
            if out.len() >= max {
                break;
            }
        }
        Ok(out)
    }

    /// Waits until records past the sink's cursor exist.
    pub async fn wait(&self, sink: &str) {
        loop {
            let notified = self.appended.notified();
            if self.depth(sink) > 0 {
                return;
            }
            notified.await;
        }
    }

    /// Marks everything up to `seq` as delivered by `sink` and deletes what every sink has
    /// delivered.
    pub fn ack(&self, sink: &str, seq: u64) -> Result<(), OutboxError> {
        let mut state = self.lock();
        let current = *state
            .cursors
            .get(sink)
            .ok_or_else(|| OutboxError::UnknownSink(sink.to_string()))?;
        if seq <= current {
            return Ok(());
        }
        state.cursors.insert(sink.to_string(), seq);
        let low = state.cursors.values().copied().min().unwrap_or(seq);
        let tx = self.db.begin_write().map_err(|e| self.storage(e))?;
        let mut freed = 0u64;
        {
            let mut cursors = tx.open_table(CURSORS).map_err(|e| self.storage(e))?;
            cursors.insert(sink, seq).map_err(|e| self.storage(e))?;
            let mut table = tx.open_table(RECORDS).map_err(|e| self.storage(e))?;
            let gone = table
                .extract_from_if(..=low, |_, _| true)
                .map_err(|e| self.storage(e))?;
            for item in gone {
                let (_, v) = item.map_err(|e| self.storage(e))?;
                freed += v.value().len() as u64;
            }
        }
        tx.commit().map_err(|e| self.storage(e))?;
        state.bytes = state.bytes.saturating_sub(freed);
        Ok(())
    }

    /// Records the sink has not delivered yet.
    pub fn depth(&self, sink: &str) -> u64 {
        let state = self.lock();
        let cursor = state.cursors.get(sink).copied().unwrap_or(0);
        (state.next_seq - 1).saturating_sub(cursor)
    }

    /// Bytes on disk in undelivered records.
    pub fn bytes(&self) -> u64 {
        self.lock().bytes
    }

    /// Records deleted undelivered because the outbox was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Records refused because the outbox was full.
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }

    /// Number of records stored (for tests and metrics).
    pub fn stored(&self) -> Result<u64, OutboxError> {
        let tx = self.db.begin_read().map_err(|e| self.storage(e))?;
        let table = tx.open_table(RECORDS).map_err(|e| self.storage(e))?;
        table.len().map_err(|e| self.storage(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn rec(i: u64) -> Record {
        Record {
            key: format!("cam-{}", i % 3),
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
            ob.append(&(1..=10).map(rec).collect::<Vec<_>>())
                .expect("append");
            let got = ob.read("mqtt", 4).expect("read");
            assert_eq!(got.len(), 4);
            assert_eq!(got[0], (1, rec(1)));
            ob.ack("mqtt", 4).expect("ack");
            assert_eq!(ob.depth("mqtt"), 6);
            assert_eq!(ob.depth("store"), 10);
            assert_eq!(ob.stored().expect("len"), 10, "store still needs them all");
            ob.ack("store", 7).expect("ack");
            assert_eq!(ob.stored().expect("len"), 6, "1..=4 delivered everywhere");
        }
        // Reopen as after a crash: cursors and records are where they were.
        let ob = Outbox::open(&path, &["mqtt", "store"], 1 << 20, FullPolicy::DropOldest)
            .expect("reopen");
        assert_eq!(ob.read("mqtt", 100).expect("read")[0].0, 5);
        assert_eq!(ob.read("store", 100).expect("read")[0].0, 8);
        let last = ob.append(&[rec(11)]).expect("append");
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
            ob.append(&[rec(i)]).expect("append");
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
            if ob.append(&[rec(i)]).is_err() {
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

    #[tokio::test]
    async fn wait_wakes_on_append() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ob = std::sync::Arc::new(
            Outbox::open(
                &dir.path().join("o.redb"),
                &["mqtt"],
                1 << 20,
                FullPolicy::DropOldest,
            )
            .expect("open"),
        );
        let waiter = {
            let ob = ob.clone();
            tokio::spawn(async move { ob.wait("mqtt").await })
        };
        tokio::task::yield_now().await;
        ob.append(&[rec(1)]).expect("append");
        tokio::time::timeout(std::time::Duration::from_secs(2), waiter)
            .await
            .expect("woken")
            .expect("task");
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
                        ob.append(&batch).expect("append");
                    }
                    _ => {
                        let sink = if op == 1 { "a" } else { "b" };
                        let got = ob.read(sink, n).expect("read");
                        if let Some((last, _)) = got.last() {
                            ob.ack(sink, *last).expect("ack");
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
