//! The event-store contract suite: what every `EventStore` must do, written
//! once and run against every implementation (memory and SQLite in
//! `adapters/tests/it/store_contract.rs`, EventStoreDB in
//! `adapters/tests/it/store_contract_eventstoredb.rs` when a server is given).
//!
//! Each check is an async function taking a factory of fresh, empty stores;
//! it panics with a message naming the broken rule. They are test code that
//! lives in the library so that other crates' tests can run it too.
//!
//! `chains_every_stream` holds every store to the per-stream hash chain
//! (ADR 0004), links kept byte for byte.
//!
//! The checks every store runs rely only on what the port promises about
//! positions: from 1, strictly increasing in commit order. Two checks hold
//! the embedded stores to more than that, and are run for them only:
//! `dense_positions` (positions are exactly 1..=N) and
//! `rejects_reused_event_ids` (an event id is refused anywhere but in a retry;
//! EventStoreDB de-duplicates only retries, see `eventstoredb.rs`).

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use uuid::Uuid;

use crate::store::chain::{GENESIS, recompute};
use crate::store::{
    AppendOutcome, EventStore, ExpectedVersion, Follower, NewEvent, RecordedEvent, StoreError,
};

/// A store bundled with what must live as long as it (a temporary
/// directory, a server handle). It forwards every call to `store`.
#[derive(Debug)]
pub struct Guarded<S, G> {
    /// The store under test.
    pub store: S,
    /// Kept alive, never used.
    pub guard: G,
}

#[async_trait]
impl<S: EventStore, G: Send + Sync + std::fmt::Debug + 'static> EventStore for Guarded<S, G> {
    async fn append(
        &self,
        stream: &str,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<AppendOutcome, StoreError> {
        self.store.append(stream, expected, events).await
    }

    async fn read_stream(&self, stream: &str) -> Result<Vec<RecordedEvent>, StoreError> {
        self.store.read_stream(stream).await
    }

    async fn read_all(
        &self,
        from_position: u64,
        max_count: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        self.store.read_all(from_position, max_count).await
    }

    async fn head_position(&self) -> Result<u64, StoreError> {
        self.store.head_position().await
    }

    async fn wait_for_head_past(&self, position: u64) -> Result<(), StoreError> {
        self.store.wait_for_head_past(position).await
    }
}

/// A test event whose payload names its origin, so reads can be checked.
pub fn event(event_type: &str, payload: &str) -> NewEvent {
    NewEvent {
        event_id: Uuid::new_v4(),
        event_type: event_type.to_owned(),
        schema_version: 1,
        data: format!("{{\"p\":\"{payload}\"}}").into_bytes(),
    }
}

/// A liveness bound for the concurrent checks: a store that deadlocks fails
/// the test instead of hanging it. Never used to decide correctness.
const LIVENESS_TIMEOUT_SECS: u64 = 120;

async fn read_everything<S: EventStore + ?Sized>(store: &S) -> Vec<RecordedEvent> {
    store.read_all(1, usize::MAX).await.expect("read_all")
}

/// The position of `stream`'s event at `version`, as the store reads it back.
async fn position_of<S: EventStore + ?Sized>(store: &S, stream: &str, version: u64) -> u64 {
    store
        .read_stream(stream)
        .await
        .expect("read_stream")
        .iter()
        .find(|event| event.version == version)
        .map_or_else(
            || panic!("{stream} has no version {version}"),
            |event| event.position,
        )
}

fn assert_strictly_increasing(positions: &[u64], what: &str) {
    assert!(
        positions.first().is_none_or(|&first| first >= 1),
        "{what}: positions start at 1: {positions:?}"
    );
    assert!(
        positions.windows(2).all(|pair| pair[0] < pair[1]),
        "{what}: positions must strictly increase in commit order: {positions:?}"
    );
}

fn is_conflict(result: &Result<AppendOutcome, StoreError>) -> bool {
    matches!(result, Err(StoreError::Conflict { .. }))
}

fn is_invalid(result: &Result<AppendOutcome, StoreError>) -> bool {
    matches!(result, Err(StoreError::InvalidAppend { .. }))
}

/// Empty batches and batches naming an id twice are refused, and write nothing.
pub async fn rejects_malformed_batches<S, F, Fut>(fresh: F)
where
    S: EventStore,
    F: Fn() -> Fut,
    Fut: Future<Output = S>,
{
    let store = fresh().await;
    let empty = store
        .append("s", ExpectedVersion::NoStream, Vec::new())
        .await;
    assert!(
        is_invalid(&empty),
        "an empty batch must be InvalidAppend: {empty:?}"
    );

    let one = event("A", "a");
    let twice = store
        .append(
            "s",
            ExpectedVersion::NoStream,
            vec![one.clone(), one.clone()],
        )
        .await;
    assert!(
        is_invalid(&twice),
        "a duplicate id in a batch must be InvalidAppend: {twice:?}"
    );

    assert_eq!(
        store.head_position().await.expect("head"),
        0,
        "a refused batch wrote something"
    );
    assert!(store.read_stream("s").await.expect("read").is_empty());
    // The refused id is still free.
    let outcome = store
        .append("s", ExpectedVersion::NoStream, vec![one])
        .await
        .expect("append");
    assert_eq!(outcome.last_version, 0);
    assert!(outcome.last_position >= 1);
    assert_eq!(outcome.last_position, position_of(&store, "s", 0).await);
}

/// Appends name the exact version they expect; any other state is a
/// `Conflict` that reports the stream's actual version and writes nothing.
pub async fn expected_version_conflicts<S, F, Fut>(fresh: F)
where
    S: EventStore,
    F: Fn() -> Fut,
    Fut: Future<Output = S>,
{
    let store = fresh().await;
    let first = store
        .append(
            "order-1",
            ExpectedVersion::NoStream,
            vec![event("Submitted", "1")],
        )
        .await
        .expect("first append");
    assert_eq!(first.last_version, 0);
    assert!(first.last_position >= 1);

    let again = store
        .append(
            "order-1",
            ExpectedVersion::NoStream,
            vec![event("Submitted", "dup")],
        )
        .await;
    match again {
        Err(StoreError::Conflict {
            stream,
            expected,
            actual,
        }) => {
            assert_eq!(stream, "order-1");
            assert_eq!(expected, ExpectedVersion::NoStream);
            assert_eq!(actual, Some(0));
        }
        other => panic!("NoStream on an existing stream must conflict: {other:?}"),
    }

    let ahead = store
        .append(
            "order-1",
            ExpectedVersion::Exact(3),
            vec![event("UserPaying", "x")],
        )
        .await;
    match ahead {
        Err(StoreError::Conflict {
            actual, expected, ..
        }) => {
            assert_eq!(actual, Some(0));
            assert_eq!(expected, ExpectedVersion::Exact(3));
        }
        other => panic!("Exact(3) on a stream at 0 must conflict: {other:?}"),
    }

    let second = store
        .append(
            "order-1",
            ExpectedVersion::Exact(0),
            vec![event("UserPaying", "2")],
        )
        .await
        .expect("append at the right version");
    assert_eq!(second.last_version, 1);
    assert!(second.last_position > first.last_position);

    let behind = store
        .append(
            "order-1",
            ExpectedVersion::Exact(0),
            vec![event("QueryResult", "x")],
        )
        .await;
    match behind {
        Err(StoreError::Conflict { actual, .. }) => assert_eq!(actual, Some(1)),
        other => panic!("Exact(0) on a stream at 1 must conflict: {other:?}"),
    }

    let missing = store
        .append(
            "order-2",
            ExpectedVersion::Exact(0),
            vec![event("Submitted", "x")],
        )
        .await;
    match missing {
        Err(StoreError::Conflict { actual, stream, .. }) => {
            assert_eq!(actual, None);
            assert_eq!(stream, "order-2");
        }
        other => panic!("Exact(0) on a missing stream must conflict: {other:?}"),
    }

    let stored = store.read_stream("order-1").await.expect("read");
    let payloads: Vec<&[u8]> = stored.iter().map(|event| event.data.as_slice()).collect();
    assert_eq!(payloads, vec![&b"{\"p\":\"1\"}"[..], &b"{\"p\":\"2\"}"[..]]);
    assert!(store.read_stream("order-2").await.expect("read").is_empty());
    assert_eq!(
        store.head_position().await.expect("head"),
        second.last_position,
        "a conflict wrote something"
    );
}

/// Retrying the same ids at the same expected version returns the original
/// outcome (even after the stream moved on) and writes nothing.
pub async fn idempotent_retry<S, F, Fut>(fresh: F)
where
    S: EventStore,
    F: Fn() -> Fut,
    Fut: Future<Output = S>,
{
    let store = fresh().await;
    let unrelated = store
        .append("other", ExpectedVersion::NoStream, vec![event("A", "0")])
        .await
        .expect("unrelated append");
    let batch = vec![event("Submitted", "1"), event("UserPaying", "2")];
    let original = store
        .append("order", ExpectedVersion::NoStream, batch.clone())
        .await
        .expect("append");
    assert_eq!(original.last_version, 1);
    assert!(original.last_position > unrelated.last_position);
    assert_eq!(
        original.last_position,
        position_of(&store, "order", 1).await
    );

    let retried = store
        .append("order", ExpectedVersion::NoStream, batch.clone())
        .await
        .expect("a retry must succeed");
    assert_eq!(
        retried, original,
        "a retry must return the original outcome"
    );
    assert_eq!(
        store.head_position().await.expect("head"),
        original.last_position,
        "a retry wrote again"
    );

    let after = store
        .append(
            "order",
            ExpectedVersion::Exact(1),
            vec![event("QueryResult", "3")],
        )
        .await
        .expect("append after");
    let late = store
        .append("order", ExpectedVersion::NoStream, batch.clone())
        .await
        .expect("a late retry must succeed");
    assert_eq!(
        late, original,
        "a late retry must return the original outcome"
    );
    assert_eq!(
        store.head_position().await.expect("head"),
        after.last_position,
        "a retry wrote again"
    );
    let versions: Vec<u64> = store
        .read_stream("order")
        .await
        .expect("read")
        .iter()
        .map(|event| event.version)
        .collect();
    assert_eq!(versions, vec![0, 1, 2]);
    assert_eq!(
        read_everything(&store).await.len(),
        4,
        "a retry wrote again"
    );
}

/// Every stream is a hash chain the store computed and keeps byte for byte:
/// version 0 links to `GENESIS`, every event to its predecessor's hash, and
/// each hash is `chain::recompute` of the event's own fields. Batches chain
/// inside themselves, streams never chain to each other, reads by stream and
/// in global order agree, and neither a retry nor a refused append changes a
/// link.
pub async fn chains_every_stream<S, F, Fut>(fresh: F)
where
    S: EventStore,
    F: Fn() -> Fut,
    Fut: Future<Output = S>,
{
    let store = fresh().await;
    let first = vec![event("Submitted", "a0"), event("UserPaying", "a1")];
    store
        .append("chain-a", ExpectedVersion::NoStream, first.clone())
        .await
        .expect("append");
    // The same payloads in another stream: the stream name is in the link.
    let twin: Vec<NewEvent> = first
        .iter()
        .map(|original| NewEvent {
            event_id: Uuid::new_v4(),
            ..original.clone()
        })
        .collect();
    store
        .append("chain-b", ExpectedVersion::NoStream, twin)
        .await
        .expect("append");
    store
        .append(
            "chain-a",
            ExpectedVersion::Exact(1),
            vec![event("QueryResult", "a2")],
        )
        .await
        .expect("append");
    store
        .append(
            "chain-b",
            ExpectedVersion::Exact(1),
            vec![
                event("QueryResult", "b2"),
                event("Paid", "b3"),
                event("RefundRequested", "b4"),
            ],
        )
        .await
        .expect("append");

    let check = |stream: &str, events: &[RecordedEvent]| {
        let mut previous = GENESIS;
        for (expected_version, recorded) in (0u64..).zip(events) {
            assert_eq!(recorded.version, expected_version, "{stream}: versions");
            assert_eq!(
                recorded.previous_hash, previous,
                "{stream}@{}: previous_hash must be the hash of the event before \
                 (GENESIS at version 0)",
                recorded.version
            );
            assert_eq!(
                recorded.hash,
                recompute(recorded),
                "{stream}@{}: hash must be chain_hash of the event's fields",
                recorded.version
            );
            previous = recorded.hash;
        }
    };
    let chain_a = store.read_stream("chain-a").await.expect("read");
    let chain_b = store.read_stream("chain-b").await.expect("read");
    assert_eq!(chain_a.len(), 3);
    assert_eq!(chain_b.len(), 5);
    check("chain-a", &chain_a);
    check("chain-b", &chain_b);
    assert_ne!(
        chain_a[0].hash, chain_b[0].hash,
        "the same payload in two streams must get two links"
    );

    // Global order carries the same links, byte for byte.
    let all = read_everything(&store).await;
    for stream_events in [&chain_a, &chain_b] {
        for recorded in stream_events {
            let in_order = all
                .iter()
                .find(|other| other.event_id == recorded.event_id)
                .expect("every event is in the global order");
            assert_eq!(
                (in_order.previous_hash, in_order.hash),
                (recorded.previous_hash, recorded.hash),
                "read_all and read_stream disagree on {}@{}",
                recorded.stream,
                recorded.version
            );
        }
    }

    // A retry and a refused append change no link.
    store
        .append("chain-a", ExpectedVersion::NoStream, first)
        .await
        .expect("a retry must succeed");
    let conflict = store
        .append(
            "chain-a",
            ExpectedVersion::Exact(1),
            vec![event("QueryResult", "late")],
        )
        .await;
    assert!(is_conflict(&conflict), "{conflict:?}");
    assert_eq!(
        store.read_stream("chain-a").await.expect("read"),
        chain_a,
        "a retry or a refused append changed the stream"
    );
    let next = store
        .append(
            "chain-a",
            ExpectedVersion::Exact(2),
            vec![event("Paid", "a3")],
        )
        .await
        .expect("append after the retry");
    assert_eq!(next.last_version, 3);
    let chain_a = store.read_stream("chain-a").await.expect("read");
    check("chain-a", &chain_a);
    assert_eq!(chain_a[3].previous_hash, chain_a[2].hash);
}

/// Using a stored event id in anything but a retry is `InvalidAppend` and
/// writes nothing, whole batch included: at another version, in another
/// stream, or mixed with fresh ids. The embedded stores promise this; an
/// EventStoreDB cluster de-duplicates retries only.
pub async fn rejects_reused_event_ids<S, F, Fut>(fresh: F)
where
    S: EventStore,
    F: Fn() -> Fut,
    Fut: Future<Output = S>,
{
    let store = fresh().await;
    let batch = vec![event("Submitted", "1"), event("UserPaying", "2")];
    store
        .append("order", ExpectedVersion::NoStream, batch.clone())
        .await
        .expect("append");
    let head = store
        .append(
            "order",
            ExpectedVersion::Exact(1),
            vec![event("QueryResult", "3")],
        )
        .await
        .expect("append after");

    let moved = store
        .append("order", ExpectedVersion::Exact(2), batch.clone())
        .await;
    assert!(
        is_invalid(&moved),
        "stored ids at another version must be InvalidAppend: {moved:?}"
    );

    let elsewhere = store
        .append("order-b", ExpectedVersion::NoStream, vec![batch[0].clone()])
        .await;
    assert!(
        is_invalid(&elsewhere),
        "a stored id in another stream must be InvalidAppend: {elsewhere:?}"
    );

    let mixed = store
        .append(
            "order",
            ExpectedVersion::Exact(2),
            vec![event("Revoked", "4"), batch[1].clone()],
        )
        .await;
    assert!(
        is_invalid(&mixed),
        "a batch reusing one stored id must be InvalidAppend: {mixed:?}"
    );

    // A batch whose last event reuses a stored id: its first events must not
    // land either (a store that inserts one by one has to undo them).
    let fresh_ids = vec![event("D", "y"), event("E", "y"), batch[0].clone()];
    let partial = store
        .append("order", ExpectedVersion::Exact(2), fresh_ids.clone())
        .await;
    assert!(is_invalid(&partial), "{partial:?}");
    let partial_new_stream = store
        .append(
            "t",
            ExpectedVersion::NoStream,
            vec![event("D", "z"), batch[1].clone()],
        )
        .await;
    assert!(is_invalid(&partial_new_stream), "{partial_new_stream:?}");

    assert_eq!(
        store.head_position().await.expect("head"),
        head.last_position
    );
    assert_eq!(
        store.read_stream("order").await.expect("read").len(),
        3,
        "part of a refused batch landed"
    );
    assert!(store.read_stream("order-b").await.expect("read").is_empty());
    assert!(
        store.read_stream("t").await.expect("read").is_empty(),
        "part of a refused batch landed"
    );

    // The refused ids that were fresh are still free.
    store
        .append("order", ExpectedVersion::Exact(2), fresh_ids[..2].to_vec())
        .await
        .expect("the fresh ids of a refused batch are still free");
}

/// The embedded stores' stronger promise: positions are exactly 1..=N, the
/// first event is at 1, and a refused batch leaves no gap.
pub async fn dense_positions<S, F, Fut>(fresh: F)
where
    S: EventStore,
    F: Fn() -> Fut,
    Fut: Future<Output = S>,
{
    let store = fresh().await;
    let batch = vec![event("A", "0"), event("B", "1"), event("C", "2")];
    let outcome = store
        .append("s", ExpectedVersion::NoStream, batch.clone())
        .await
        .expect("append");
    assert_eq!(
        outcome,
        AppendOutcome {
            last_version: 2,
            last_position: 3
        }
    );
    let conflicting = store
        .append("s", ExpectedVersion::Exact(1), vec![event("D", "x")])
        .await;
    assert!(is_conflict(&conflicting), "{conflicting:?}");
    let reused = store
        .append(
            "s",
            ExpectedVersion::Exact(2),
            vec![event("D", "y"), batch[0].clone()],
        )
        .await;
    assert!(is_invalid(&reused), "{reused:?}");
    let next = store
        .append(
            "s",
            ExpectedVersion::Exact(2),
            vec![event("D", "z"), event("E", "z")],
        )
        .await
        .expect("append");
    assert_eq!(
        next,
        AppendOutcome {
            last_version: 4,
            last_position: 5
        }
    );
    let other = store
        .append("t", ExpectedVersion::NoStream, vec![event("F", "0")])
        .await
        .expect("append");
    assert_eq!(other.last_position, 6);
    let positions: Vec<u64> = read_everything(&store)
        .await
        .iter()
        .map(|e| e.position)
        .collect();
    assert_eq!(positions, vec![1, 2, 3, 4, 5, 6]);
    let window: Vec<u64> = store
        .read_all(4, 2)
        .await
        .expect("read_all")
        .iter()
        .map(|e| e.position)
        .collect();
    assert_eq!(window, vec![4, 5]);
    assert_eq!(store.head_position().await.expect("head"), 6);
}

/// A batch lands whole, with consecutive versions and increasing positions,
/// or not at all.
pub async fn atomic_multi_event_appends<S, F, Fut>(fresh: F)
where
    S: EventStore,
    F: Fn() -> Fut,
    Fut: Future<Output = S>,
{
    let store = fresh().await;
    let batch = vec![event("A", "0"), event("B", "1"), event("C", "2")];
    let outcome = store
        .append("s", ExpectedVersion::NoStream, batch.clone())
        .await
        .expect("append");
    assert_eq!(outcome.last_version, 2);
    let stored = store.read_stream("s").await.expect("read");
    assert_eq!(stored.len(), 3);
    for (index, (recorded, sent)) in stored.iter().zip(&batch).enumerate() {
        assert_eq!(recorded.version, index as u64);
        assert_eq!(recorded.event_id, sent.event_id);
        assert_eq!(recorded.event_type, sent.event_type);
        assert_eq!(recorded.data, sent.data);
        assert_eq!(recorded.stream, "s");
    }
    let positions: Vec<u64> = stored.iter().map(|e| e.position).collect();
    assert_strictly_increasing(&positions, "one batch");
    assert_eq!(outcome.last_position, positions[2]);

    // Conflicting batch: nothing of it lands.
    let conflicting = store
        .append(
            "s",
            ExpectedVersion::Exact(1),
            vec![event("D", "x"), event("E", "x")],
        )
        .await;
    assert!(is_conflict(&conflicting), "{conflicting:?}");
    assert_eq!(
        store.read_stream("s").await.expect("read").len(),
        3,
        "part of a refused batch landed"
    );
    assert_eq!(
        store.head_position().await.expect("head"),
        outcome.last_position
    );

    // The refused batch's ids are still free, and positions go on.
    let next = store
        .append(
            "s",
            ExpectedVersion::Exact(2),
            vec![event("D", "y"), event("E", "y")],
        )
        .await
        .expect("append");
    assert_eq!(next.last_version, 4);
    assert!(next.last_position > outcome.last_position);
    let positions: Vec<u64> = read_everything(&store)
        .await
        .iter()
        .map(|e| e.position)
        .collect();
    assert_eq!(positions.len(), 5);
    assert_strictly_increasing(&positions, "read_all");
    assert_eq!(positions.last(), Some(&next.last_position));
}

/// One global order across streams: positions from 1, strictly increasing in
/// commit order; `read_all` starts at any returned position (or one past it)
/// and honours `max_count`.
pub async fn global_order_across_streams<S, F, Fut>(fresh: F)
where
    S: EventStore,
    F: Fn() -> Fut,
    Fut: Future<Output = S>,
{
    let store = fresh().await;
    assert_eq!(store.head_position().await.expect("head"), 0);
    assert!(read_everything(&store).await.is_empty());

    let streams = ["a", "b", "c"];
    let mut heads: HashMap<&str, Option<u64>> = HashMap::new();
    let mut sent: Vec<(String, Uuid)> = Vec::new();
    let mut last_position = 0;
    for round in 0..7u64 {
        for (index, stream) in streams.iter().enumerate() {
            let count = 1 + (usize::try_from(round).unwrap() + index) % 3;
            let batch: Vec<NewEvent> = (0..count)
                .map(|k| event("E", &format!("{stream}-{round}-{k}")))
                .collect();
            let head = heads.entry(stream).or_default();
            let outcome = store
                .append(stream, ExpectedVersion::after(*head), batch.clone())
                .await
                .expect("append");
            sent.extend(batch.iter().map(|e| (stream.to_string(), e.event_id)));
            assert!(
                outcome.last_position > last_position,
                "positions must increase in commit order"
            );
            last_position = outcome.last_position;
            *head = Some(outcome.last_version);
        }
    }
    let total = sent.len() as u64;
    assert_eq!(store.head_position().await.expect("head"), last_position);

    let all = read_everything(&store).await;
    let got: Vec<(String, Uuid)> = all.iter().map(|e| (e.stream.clone(), e.event_id)).collect();
    assert_eq!(got, sent, "read_all must return commit order");
    let positions: Vec<u64> = all.iter().map(|e| e.position).collect();
    assert_strictly_increasing(&positions, "read_all");
    assert_eq!(positions.last(), Some(&last_position));
    assert!(
        all.windows(2)
            .all(|pair| pair[0].recorded_at <= pair[1].recorded_at),
        "recorded_at must not go backwards in commit order"
    );

    let middle = store
        .read_all(positions[9], usize::MAX)
        .await
        .expect("read_all");
    assert_eq!(middle.first().map(|e| e.position), Some(positions[9]));
    assert_eq!(middle.len() as u64, total - 9);
    let after = store
        .read_all(positions[9] + 1, usize::MAX)
        .await
        .expect("read_all");
    assert_eq!(
        after.first().map(|e| e.position),
        Some(positions[10]),
        "a position + 1 reads from the next event"
    );
    let window = store.read_all(positions[4], 4).await.expect("read_all");
    let got: Vec<u64> = window.iter().map(|e| e.position).collect();
    assert_eq!(got, positions[4..8].to_vec());
    for from in [0, 1] {
        let start = store.read_all(from, 2).await.expect("read_all");
        let got: Vec<u64> = start.iter().map(|e| e.position).collect();
        assert_eq!(got, positions[..2].to_vec(), "{from} reads from the start");
    }
    assert!(
        store
            .read_all(last_position + 1, 10)
            .await
            .expect("read_all")
            .is_empty()
    );
    assert!(store.read_all(1, 0).await.expect("read_all").is_empty());

    for stream in streams {
        let events = store.read_stream(stream).await.expect("read");
        let versions: Vec<u64> = events.iter().map(|e| e.version).collect();
        let expected: Vec<u64> = (0..events.len() as u64).collect();
        assert_eq!(versions, expected, "stream {stream} versions");
        assert!(
            events
                .windows(2)
                .all(|pair| pair[0].position < pair[1].position)
        );
        assert!(
            events
                .iter()
                .all(|e| e.stream == stream && e.schema_version == 1)
        );
    }
}

/// A follower started at a position sees every later event exactly once and
/// in order while other tasks append, waking up when the head moves.
pub async fn follow_while_appending<S, F, Fut>(fresh: F)
where
    S: EventStore,
    F: Fn() -> Fut,
    Fut: Future<Output = S>,
{
    const WRITERS: u64 = 4;
    const APPENDS_PER_WRITER: u64 = 50;
    const BEFORE: u64 = 5;
    let total = BEFORE + WRITERS * APPENDS_PER_WRITER;

    let store = Arc::new(fresh().await);
    for index in 0..BEFORE {
        store
            .append(
                &format!("early-{index}"),
                ExpectedVersion::NoStream,
                vec![event("E", "early")],
            )
            .await
            .expect("early append");
    }

    // One follower from the start, one from the fourth early event.
    let early = read_everything(store.as_ref()).await;
    assert_eq!(early.len() as u64, BEFORE);
    let middle = early[3].position;
    let from_start = follow_until(Arc::clone(&store), 1, total);
    let from_middle = follow_until(Arc::clone(&store), middle, total - 3);
    let from_start = tokio::spawn(from_start);
    let from_middle = tokio::spawn(from_middle);

    let mut writers = Vec::new();
    for writer in 0..WRITERS {
        let store = Arc::clone(&store);
        writers.push(tokio::spawn(async move {
            let stream = format!("writer-{writer}");
            let mut ids = Vec::new();
            for version in 0..APPENDS_PER_WRITER {
                let new = event("E", &format!("{writer}-{version}"));
                ids.push(new.event_id);
                let expected = ExpectedVersion::after(version.checked_sub(1));
                store
                    .append(&stream, expected, vec![new])
                    .await
                    .expect("append");
                tokio::task::yield_now().await;
            }
            ids
        }));
    }
    let mut appended = HashSet::new();
    for writer in writers {
        appended.extend(writer.await.expect("writer task"));
    }

    let all: Vec<u64> = read_everything(store.as_ref())
        .await
        .iter()
        .map(|e| e.position)
        .collect();
    assert_eq!(all.len() as u64, total);
    let seen = from_start.await.expect("follower task");
    let positions: Vec<u64> = seen.iter().map(|e| e.position).collect();
    assert_eq!(
        positions, all,
        "follower must see each event once, in order"
    );
    let seen_ids: HashSet<Uuid> = seen
        .iter()
        .skip(usize::try_from(BEFORE).unwrap())
        .map(|e| e.event_id)
        .collect();
    assert_eq!(
        seen_ids, appended,
        "follower must see exactly the appended events"
    );

    let seen = from_middle.await.expect("follower task");
    let positions: Vec<u64> = seen.iter().map(|e| e.position).collect();
    assert_eq!(positions, all[3..].to_vec());
}

/// Follows `store` from `from` until `count` events were returned.
async fn follow_until<S: EventStore>(store: Arc<S>, from: u64, count: u64) -> Vec<RecordedEvent> {
    let mut follower = Follower::new(store, from);
    let mut seen: Vec<RecordedEvent> = Vec::new();
    let timeout = Duration::from_secs(LIVENESS_TIMEOUT_SECS);
    while (seen.len() as u64) < count {
        // Small batches, so the follower really waits between appends.
        let batch = tokio::time::timeout(timeout, follower.next_batch(7))
            .await
            .expect("follower stalled: wait_for_head_past never woke it")
            .expect("next_batch");
        assert!(
            !batch.is_empty() && batch.len() <= 7,
            "next_batch returned {} events",
            batch.len()
        );
        seen.extend(batch);
    }
    assert_eq!(
        seen.len() as u64,
        count,
        "the follower returned too many events"
    );
    let last = seen.last().map_or(0, |e| e.position);
    assert_eq!(follower.next_position(), last + 1);
    seen
}

/// Many tasks appending at once, to shared and to their own streams, with
/// retry on conflict: nothing lost, nothing duplicated, every stream's
/// versions are 0..n, positions strictly increase, and no append to a stream
/// with a single writer ever conflicts.
pub async fn concurrent_appenders<S, F, Fut>(fresh: F)
where
    S: EventStore,
    F: Fn() -> Fut,
    Fut: Future<Output = S>,
{
    const TASKS: usize = 16;
    const APPENDS_PER_TASK: usize = 200;
    const SHARED_STREAMS: usize = 3;

    let store = Arc::new(fresh().await);
    let mut tasks = Vec::new();
    for task in 0..TASKS {
        let store = Arc::clone(&store);
        tasks.push(tokio::spawn(async move {
            let own = format!("own-{task}");
            let mut own_head: Option<u64> = None;
            let mut shared_heads: HashMap<String, Option<u64>> = HashMap::new();
            let mut conflicts = 0u64;
            let mut sent: Vec<(String, Uuid)> = Vec::new();
            for append in 0..APPENDS_PER_TASK {
                let new = event("E", &format!("{task}-{append}"));
                sent.push((String::new(), new.event_id));
                if append % 2 == 0 {
                    let outcome = store
                        .append(&own, ExpectedVersion::after(own_head), vec![new])
                        .await
                        .expect("an append to a task's own stream must not fail");
                    own_head = Some(outcome.last_version);
                    if let Some(last) = sent.last_mut() {
                        last.0.clone_from(&own);
                    }
                    continue;
                }
                let stream = format!("shared-{}", (task + append) % SHARED_STREAMS);
                let head = shared_heads.entry(stream.clone()).or_default();
                loop {
                    match store
                        .append(&stream, ExpectedVersion::after(*head), vec![new.clone()])
                        .await
                    {
                        Ok(outcome) => {
                            *head = Some(outcome.last_version);
                            break;
                        }
                        Err(StoreError::Conflict { actual, .. }) => {
                            conflicts += 1;
                            *head = actual;
                        }
                        Err(other) => panic!("append to {stream} failed: {other}"),
                    }
                }
                if let Some(last) = sent.last_mut() {
                    last.0 = stream;
                }
            }
            (sent, conflicts)
        }));
    }
    let mut sent: HashMap<Uuid, String> = HashMap::new();
    let mut own_order: HashMap<String, Vec<Uuid>> = HashMap::new();
    for task in tasks {
        let (task_sent, _conflicts) =
            tokio::time::timeout(Duration::from_secs(LIVENESS_TIMEOUT_SECS), task)
                .await
                .expect("appenders stalled")
                .expect("appender task");
        for (stream, id) in task_sent {
            if stream.starts_with("own-") {
                own_order.entry(stream.clone()).or_default().push(id);
            }
            assert!(sent.insert(id, stream).is_none());
        }
    }
    let total = (TASKS * APPENDS_PER_TASK) as u64;
    assert_eq!(sent.len() as u64, total);

    let all = read_everything(store.as_ref()).await;
    let positions: Vec<u64> = all.iter().map(|e| e.position).collect();
    assert_eq!(positions.len() as u64, total);
    assert_strictly_increasing(&positions, "concurrent appends");
    let mut seen = HashSet::new();
    for recorded in &all {
        assert!(
            seen.insert(recorded.event_id),
            "event {} stored twice",
            recorded.event_id
        );
        assert_eq!(
            sent.get(&recorded.event_id),
            Some(&recorded.stream),
            "event in the wrong stream"
        );
    }
    assert_eq!(seen.len() as u64, total, "events lost");

    let mut streams: Vec<String> = sent
        .values()
        .cloned()
        .collect::<HashSet<_>>()
        .into_iter()
        .collect();
    streams.sort();
    let mut counted = 0;
    for stream in &streams {
        let events = store.read_stream(stream).await.expect("read");
        let versions: Vec<u64> = events.iter().map(|e| e.version).collect();
        assert_eq!(
            versions,
            (0..events.len() as u64).collect::<Vec<_>>(),
            "{stream} versions"
        );
        if let Some(order) = own_order.get(stream) {
            let ids: Vec<Uuid> = events.iter().map(|e| e.event_id).collect();
            assert_eq!(&ids, order, "{stream} must keep its writer's order");
        }
        counted += events.len();
    }
    assert_eq!(counted as u64, total);
    assert_eq!(
        store.head_position().await.expect("head"),
        positions.last().copied().unwrap_or(0)
    );
}
