//! The store sink: writes what the outbox holds into the time-series store
//! ([`pantau_store::Store`]), parsing each record by its kind.

use std::time::Duration;

use pantau_events::{CountAggregate, Event, Kind, TrackSummary};
use pantau_store::{Store, StoreError};

use crate::outbox::Record;

/// A record read for the store: a row, why it cannot be one, or nothing for the store.
type Parsed = Option<Result<Row, String>>;

/// One record as the store takes it.
#[derive(Debug)]
enum Row {
    Event(Box<Event>),
    Counts(CountAggregate),
    Track(TrackSummary),
}

impl Row {
    /// What the record's kind says it is; `None` for what the store does not keep (dispatch
    /// actions are stored by the API itself; a CAP alert is its event, stored as such).
    fn parse(record: &Record) -> Option<Result<Row, String>> {
        let bad =
            |e: serde_json::Error| format!("not a valid {} record: {e}", record.kind.as_str());
        Some(match record.kind {
            Kind::Event | Kind::Status => serde_json::from_slice(&record.payload)
                .map(|e| Row::Event(Box::new(e)))
                .map_err(bad),
            Kind::Counts => serde_json::from_slice(&record.payload)
                .map(Row::Counts)
                .map_err(bad),
            Kind::Track => serde_json::from_slice(&record.payload)
                .map(Row::Track)
                .map_err(bad),
            Kind::Incident | Kind::Cap | Kind::Evidence => return None,
        })
    }
}

/// Writes rows of any kind (events and counts in one transaction, then tracks).
async fn write_rows(store: &Store, rows: &[&Row]) -> Result<(), StoreError> {
    let mut events = Vec::new();
    let mut counts = Vec::new();
    let mut tracks = Vec::new();
    for r in rows {
        match r {
            Row::Event(e) => events.push((**e).clone()),
            Row::Counts(c) => counts.push(c.clone()),
            Row::Track(t) => tracks.push(t.clone()),
        }
    }
    store.write(&events, &counts).await?;
    store.write_tracks(&tracks).await
}

/// Writes `rows`; when the database refuses the batch, splits it to find the rows it
/// refuses and returns them with the reason (the others are written). A lost connection is
/// an error: the caller reconnects and tries again.
async fn write_finding_refused<'a>(
    store: &Store,
    rows: &[(u64, &'a Record, &'a Row)],
) -> Result<Vec<(u64, &'a Record, String)>, StoreError> {
    let mut refused = Vec::new();
    let mut pending = vec![rows];
    while let Some(part) = pending.pop() {
        let only: Vec<&Row> = part.iter().map(|(_, _, r)| *r).collect();
        match write_rows(store, &only).await {
            Ok(()) => {}
            Err(e) if !e.is_refusal() => return Err(e),
            Err(e) => match part {
                [(seq, record, _)] => refused.push((*seq, *record, e.to_string())),
                _ => {
                    let (a, b) = part.split_at(part.len() / 2);
                    pending.push(b);
                    pending.push(a);
                }
            },
        }
    }
    Ok(refused)
}

/// Writes what the outbox holds into the store (as sink `sink`) until `shutdown`; reconnects
/// with back-off while the database is away, and acknowledges only committed batches. A record
/// the database refuses goes to the dead letters; the rest of its batch is written. With
/// `fence` (a fleet node's name) the database also refuses rows of cameras that node did not
/// hold at their time.
pub async fn run_sink(
    outbox: std::sync::Arc<crate::outbox::Outbox>,
    sink: String,
    url: String,
    schema: String,
    fence: Option<String>,
    shutdown: tokio_util::sync::CancellationToken,
) {
    let mut failures = 0u32;
    'connect: while !shutdown.is_cancelled() {
        let store = match Store::connect_with(&url, &schema, 2).await {
            Ok(s) => {
                if let Some(node) = &fence {
                    s.fence_writes_as(node);
                }
                if failures > 0 {
                    tracing::info!(depth = outbox.depth(&sink), "database reachable again");
                }
                failures = 0;
                s
            }
            Err(e) => {
                if failures == 0 {
                    tracing::warn!(
                        depth = outbox.depth(&sink),
                        "database unreachable, rows wait in the outbox: {e}"
                    );
                }
                failures = failures.saturating_add(1);
                let delay = Duration::from_millis((250u64 << failures.min(5)).min(5_000));
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(delay) => continue 'connect,
                }
            }
        };
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = outbox.wait(&sink) => {}
            }
            let batch = match outbox.read(&sink, 2000) {
                Ok(b) => b,
                Err(e) => {
                    tracing::error!("outbox: {e}");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            };
            let Some((last, _)) = batch.last() else {
                continue;
            };
            let last = *last;
            let parsed: Vec<(u64, &Record, Parsed)> = batch
                .iter()
                .map(|(seq, r)| (*seq, r, Row::parse(r)))
                .collect();
            let mut rows = Vec::new();
            let mut dead = Vec::new();
            for (seq, record, row) in &parsed {
                match row {
                    Some(Ok(row)) => rows.push((*seq, *record, row)),
                    Some(Err(why)) => dead.push((*seq, *record, why.clone())),
                    None => {}
                }
            }
            match write_finding_refused(&store, &rows).await {
                Ok(refused) => {
                    dead.extend(refused.into_iter().map(|(seq, r, why)| {
                        (seq, r, format!("the database refused the row: {why}"))
                    }))
                }
                Err(e) => {
                    tracing::warn!(
                        depth = outbox.depth(&sink),
                        "database write failed, will retry: {e}"
                    );
                    continue 'connect;
                }
            }
            for (seq, record, why) in dead {
                if let Err(e) = outbox.dead_letter(&sink, seq, record, &why).await {
                    tracing::error!("outbox: {e}");
                    continue 'connect;
                }
            }
            if let Err(e) = outbox.ack(&sink, last).await {
                // The rows are in the database (written again, they add nothing); the disk
                // refuses the cursor (full, failing). Tried again after a pause, not at once:
                // rewriting the batch in a tight loop would load the database and flood the log.
                tracing::error!(
                    "outbox: {e}; the store sink tries again in {} s",
                    ACK_RETRY.as_secs()
                );
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(ACK_RETRY) => {}
                }
            }
        }
    }
}

/// Pause after the outbox refused an ack.
const ACK_RETRY: Duration = Duration::from_secs(1);

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::outbox::{FullPolicy, Outbox};

    const URL: &str = "host=127.0.0.1 port=5432 user=postgres dbname=test connect_timeout=5";

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_refused_ack_is_tried_again_after_a_pause_not_in_a_tight_loop() {
        let schema = format!("pantau_test_ackretry_{}", std::process::id());
        let dir = tempfile::tempdir().expect("tempdir");
        let outbox = Arc::new(
            Outbox::open(
                &dir.path().join("o.redb"),
                &["store"],
                1 << 20,
                FullPolicy::DropOldest,
            )
            .expect("outbox"),
        );
        // A record the store keeps no row for: the sink has nothing to write, only to ack.
        let record = Record {
            kind: Kind::Incident,
            topic: "p/site/cam/incidents".into(),
            retain: false,
            payload: b"{}".to_vec(),
        };
        outbox.append(&[record]).await.expect("append");
        outbox.refuse_acks(true);
        let stop = tokio_util::sync::CancellationToken::new();
        let sink = tokio::spawn(run_sink(
            outbox.clone(),
            "store".into(),
            URL.into(),
            schema.clone(),
            None,
            stop.clone(),
        ));
        tokio::time::sleep(Duration::from_millis(2500)).await;
        let refused = outbox.refuse_acks(false);
        // One try a second: 2 or 3 in 2.5 s (the first once connected). Without the pause the
        // sink read, wrote and acked again at once: hundreds.
        assert!(
            (1..=4).contains(&refused),
            "{refused} acks refused in 2.5 s"
        );
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while outbox.depth("store") > 0 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "acked once the disk takes it"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        stop.cancel();
        sink.await.expect("sink");
        let (client, conn) = tokio_postgres::connect(URL, tokio_postgres::NoTls)
            .await
            .expect("connect");
        tokio::spawn(conn);
        client
            .batch_execute(&format!("drop schema if exists {schema} cascade"))
            .await
            .expect("drop");
    }
}
