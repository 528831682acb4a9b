//! Copies one event store into another over the port: every stream in
//! global order, keeping event ids, stored names, schema versions,
//! payloads and chain links (`paycode migrate` moves a SQLite ledger to
//! EventStoreDB with it). Each event is appended at the version it has in
//! the source, so the target's expected-version checks hold; a source event
//! whose link does not hold stops the copy (the target never re-chains a
//! changed event); rerunning copies only what is missing.

use std::collections::HashMap;

use super::chain::recompute;
use super::{ChainHash, EventStore, ExpectedVersion, GENESIS, NewEvent, RecordedEvent, StoreError};

/// How many source events are read at a time.
const READ_PAGE_EVENTS: usize = 1_000;

/// What a copy did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MigrationReport {
    /// Events read from the source.
    pub events_read: u64,
    /// Events appended to the target by this run.
    pub events_copied: u64,
    /// Events the target already held (an earlier, interrupted run).
    pub events_already_there: u64,
    /// Distinct streams seen.
    pub streams: u64,
}

/// Why a copy stopped.
#[derive(Debug, thiserror::Error)]
pub enum MigrationError {
    /// Reading the source or writing the target failed. Rerun: the copy
    /// resumes where it stopped.
    #[error("event store: {0}")]
    Store(#[from] StoreError),
    /// The target already holds a different event where the source's goes.
    /// It is another ledger's stream, or one that moved on since: an operator
    /// must look; nothing was written to that stream.
    #[error(
        "stream {stream} differs at version {version}: the target holds event {target}, the source {source_id}"
    )]
    Diverged {
        stream: String,
        version: u64,
        target: uuid::Uuid,
        source_id: uuid::Uuid,
    },
    /// The source's hash chain does not hold at this event: it was changed
    /// after it was appended. Nothing of it was copied; run `paycode verify`
    /// on the source and get an operator.
    #[error(
        "stream {stream} version {version}: the source's hash chain is broken here; run `paycode verify` on it"
    )]
    BrokenChain { stream: String, version: u64 },
    /// The target holds this event (same id) with another chain link: its
    /// contents, or those of an event before it, differ from the source's.
    #[error("stream {stream} version {version}: the target holds this event with another hash")]
    ChainDiffers { stream: String, version: u64 },
    /// The target stream is longer than the source's at the end of the copy
    /// (someone appended to it): the copy is complete but not exact.
    #[error("stream {stream} has {target} events in the target but {source_len} in the source")]
    TargetAhead {
        stream: String,
        target: u64,
        source_len: u64,
    },
}

/// What the copy knows of one target stream.
#[derive(Debug)]
struct TargetStream {
    /// The target's event ids and hashes, in version order, as read at first sight.
    existing: Vec<(uuid::Uuid, ChainHash)>,
    /// The number of events of this stream seen in the source so far.
    source_len: u64,
    /// The hash of the last source event of this stream (`GENESIS` before any).
    source_hash: ChainHash,
}

/// Copies every event of `source` to `target` in global order, appending
/// each run of consecutive events of one stream as one batch at the exact
/// version they have in the source. Idempotent: rerunning it copies only
/// what is missing. `progress` is called after each page.
pub async fn copy_ledger(
    source: &dyn EventStore,
    target: &dyn EventStore,
    mut progress: impl FnMut(&MigrationReport),
) -> Result<MigrationReport, MigrationError> {
    let mut report = MigrationReport::default();
    let mut streams: HashMap<String, TargetStream> = HashMap::new();
    let mut position = 1;
    loop {
        let page = source.read_all(position, READ_PAGE_EVENTS).await?;
        let Some(last) = page.last() else { break };
        position = last.position + 1;
        report.events_read += page.len() as u64;
        for run in page.chunk_by(|a, b| a.stream == b.stream) {
            copy_run(target, run, &mut streams, &mut report).await?;
        }
        progress(&report);
    }
    report.streams = streams.len() as u64;
    for (stream, known) in &streams {
        let target_len = known.existing.len() as u64;
        if target_len > known.source_len {
            return Err(MigrationError::TargetAhead {
                stream: stream.clone(),
                target: target_len,
                source_len: known.source_len,
            });
        }
    }
    Ok(report)
}

/// Copies consecutive source events of one stream.
async fn copy_run(
    target: &dyn EventStore,
    run: &[RecordedEvent],
    streams: &mut HashMap<String, TargetStream>,
    report: &mut MigrationReport,
) -> Result<(), MigrationError> {
    let Some(first) = run.first() else {
        return Ok(());
    };
    let stream = first.stream.as_str();
    if !streams.contains_key(stream) {
        let existing = target
            .read_stream(stream)
            .await?
            .iter()
            .map(|event| (event.event_id, event.hash))
            .collect();
        streams.insert(
            stream.to_owned(),
            TargetStream {
                existing,
                source_len: 0,
                source_hash: GENESIS,
            },
        );
    }
    let Some(known) = streams.get_mut(stream) else {
        return Ok(());
    };
    let mut missing: Vec<NewEvent> = Vec::new();
    for event in run {
        assert_eq!(
            event.version, known.source_len,
            "the source's stream versions are gapless"
        );
        if event.previous_hash != known.source_hash || recompute(event) != event.hash {
            return Err(MigrationError::BrokenChain {
                stream: stream.to_owned(),
                version: event.version,
            });
        }
        known.source_len += 1;
        known.source_hash = event.hash;
        match usize::try_from(event.version)
            .ok()
            .and_then(|index| known.existing.get(index))
        {
            Some(&(there, hash)) if there == event.event_id && hash == event.hash => {
                report.events_already_there += 1;
            }
            Some(&(there, _)) if there == event.event_id => {
                return Err(MigrationError::ChainDiffers {
                    stream: stream.to_owned(),
                    version: event.version,
                });
            }
            Some(&(there, _)) => {
                return Err(MigrationError::Diverged {
                    stream: stream.to_owned(),
                    version: event.version,
                    target: there,
                    source_id: event.event_id,
                });
            }
            None => missing.push(NewEvent {
                event_id: event.event_id,
                event_type: event.event_type.clone(),
                schema_version: event.schema_version,
                data: event.data.clone(),
            }),
        }
    }
    if missing.is_empty() {
        return Ok(());
    }
    let count = missing.len() as u64;
    let first_version = known.source_len - count;
    let expected = ExpectedVersion::after(first_version.checked_sub(1));
    target.append(stream, expected, missing).await?;
    report.events_copied += count;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use crate::store::{MemoryStore, SqliteStore};
    use crate::testing::FaultyStore;
    use crate::testing::store_contract::event;

    use super::*;

    async fn sqlite_ledger(dir: &tempfile::TempDir) -> SqliteStore {
        let store = SqliteStore::open(dir.path().join("ledger.db")).expect("open");
        store
            .append(
                "payment-m-1",
                ExpectedVersion::NoStream,
                vec![event("Submitted", "1"), event("UserPaying", "1")],
            )
            .await
            .expect("append");
        store
            .append(
                "payment-m-2",
                ExpectedVersion::NoStream,
                vec![event("Submitted", "2")],
            )
            .await
            .expect("append");
        store
            .append(
                "payment-m-1",
                ExpectedVersion::Exact(1),
                vec![event("QueryResult", "1")],
            )
            .await
            .expect("append");
        store
    }

    /// Everything a copy keeps: all but the store's own position and time.
    type Kept = (
        String,
        u64,
        uuid::Uuid,
        String,
        u32,
        Vec<u8>,
        ChainHash,
        ChainHash,
    );

    fn without_positions(events: Vec<RecordedEvent>) -> Vec<Kept> {
        events
            .into_iter()
            .map(|e| {
                (
                    e.stream,
                    e.version,
                    e.event_id,
                    e.event_type,
                    e.schema_version,
                    e.data,
                    e.previous_hash,
                    e.hash,
                )
            })
            .collect()
    }

    #[tokio::test]
    async fn copies_every_stream_in_order_with_its_event_ids() {
        // Shows that the target holds the source's events in the same global
        // order, with the same ids, names, versions, schema versions and bytes.
        let dir = tempfile::tempdir().expect("tempdir");
        let source = sqlite_ledger(&dir).await;
        let target = MemoryStore::new();
        let report = copy_ledger(&source, &target, |_| {}).await.expect("copy");
        assert_eq!(
            report,
            MigrationReport {
                events_read: 4,
                events_copied: 4,
                events_already_there: 0,
                streams: 2
            }
        );
        let source_events = source.read_all(1, usize::MAX).await.expect("read");
        let target_events = target.read_all(1, usize::MAX).await.expect("read");
        assert_eq!(
            without_positions(target_events),
            without_positions(source_events),
            "the copy keeps every field and every chain link"
        );
    }

    #[tokio::test]
    async fn a_source_whose_chain_is_broken_is_not_copied_past_the_break() {
        // Shows that an event changed after its append stops the copy at
        // that event: the target never re-chains a changed event.
        let source = FaultyStore::new(Arc::new(MemoryStore::new()));
        source.tamper_position(Some(3));
        source
            .append(
                "payment-m-1",
                ExpectedVersion::NoStream,
                vec![event("Submitted", "1"), event("UserPaying", "1")],
            )
            .await
            .expect("append");
        source
            .append(
                "payment-m-2",
                ExpectedVersion::NoStream,
                vec![event("Submitted", "2")],
            )
            .await
            .expect("append");
        let target = MemoryStore::new();
        let refused = copy_ledger(&source, &target, |_| {}).await;
        assert!(
            matches!(refused, Err(MigrationError::BrokenChain { ref stream, version: 0 }) if stream == "payment-m-2"),
            "{refused:?}"
        );
        assert!(
            target
                .read_stream("payment-m-2")
                .await
                .expect("read")
                .is_empty()
        );
        assert_eq!(
            target.read_stream("payment-m-1").await.expect("read").len(),
            2,
            "the intact stream before the break was copied"
        );
    }

    #[tokio::test]
    async fn a_rerun_copies_only_what_is_missing() {
        // Shows idempotence: a second run writes nothing, and a run after
        // new source events copies just those.
        let dir = tempfile::tempdir().expect("tempdir");
        let source = sqlite_ledger(&dir).await;
        let target = MemoryStore::new();
        copy_ledger(&source, &target, |_| {}).await.expect("copy");
        let again = copy_ledger(&source, &target, |_| {}).await.expect("rerun");
        assert_eq!((again.events_copied, again.events_already_there), (0, 4));
        assert_eq!(target.head_position().await.expect("head"), 4);

        source
            .append(
                "payment-m-2",
                ExpectedVersion::Exact(0),
                vec![event("QueryResult", "2")],
            )
            .await
            .expect("append");
        let more = copy_ledger(&source, &target, |_| {}).await.expect("rerun");
        assert_eq!((more.events_copied, more.events_already_there), (1, 4));
        assert_eq!(
            target.read_stream("payment-m-2").await.expect("read").len(),
            2
        );
    }

    #[tokio::test]
    async fn a_target_holding_another_ledger_is_refused() {
        // Shows that a target stream with different events stops the copy
        // without writing to it.
        let dir = tempfile::tempdir().expect("tempdir");
        let source = sqlite_ledger(&dir).await;
        let target = MemoryStore::new();
        target
            .append(
                "payment-m-2",
                ExpectedVersion::NoStream,
                vec![event("Submitted", "other")],
            )
            .await
            .expect("append");
        let refused = copy_ledger(&source, &target, |_| {}).await;
        assert!(
            matches!(refused, Err(MigrationError::Diverged { ref stream, version: 0, .. }) if stream == "payment-m-2"),
            "{refused:?}"
        );
        assert_eq!(
            target.read_stream("payment-m-2").await.expect("read").len(),
            1
        );
    }
}
