//! The event-store port: streams of events with optimistic concurrency, one
//! global order across all streams, and a way to follow new events.
//!
//! The store knows nothing of payments: an event is a stored name, a schema
//! version and JSON bytes. Each store also chains every stream: a recorded
//! event carries the hash of the event before it and its own (`chain.rs`),
//! computed by the store inside the append. Every implementation runs the same contract suite
//! (`contract.rs`), so callers may rely on exactly what this file promises.

use std::collections::HashSet;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use paycode_domain::stored::{self, DecodeError, EventSchema, StoredEvent};
use uuid::Uuid;

pub mod chain;
pub mod copy;
pub mod eventstoredb;
pub mod follow;
pub mod memory;
pub mod sqlite;

pub use chain::{ChainHash, GENESIS};
pub use eventstoredb::EventStoreDbStore;
pub use follow::Follower;
pub use memory::MemoryStore;
pub use sqlite::{SqliteStore, SqliteStoreStats, StoreLeases, StreamRange};

/// The version a writer believes the stream is at. There is deliberately no
/// "any": every append says what it expects (docs/rules.md, "Money safety").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ExpectedVersion {
    /// The stream must not exist yet (it has no event).
    NoStream,
    /// The stream's last event must have exactly this version (first event is 0).
    Exact(u64),
}

impl ExpectedVersion {
    /// The expectation that holds for a stream whose last version is `last`.
    pub fn after(last: Option<u64>) -> Self {
        match last {
            None => ExpectedVersion::NoStream,
            Some(version) => ExpectedVersion::Exact(version),
        }
    }

    /// The version the first appended event will get.
    pub fn next_version(self) -> u64 {
        match self {
            ExpectedVersion::NoStream => 0,
            ExpectedVersion::Exact(version) => version + 1,
        }
    }
}

/// An event to append. `event_id` makes the append idempotent: retrying the
/// same ids with the same expected version is answered as the first success.
/// It carries no chain link: the store computes it from the stream's head
/// (ADR 0004), so no caller can append a link that does not fit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEvent {
    pub event_id: Uuid,
    /// The stored event name (a contract, e.g. `Submitted`).
    pub event_type: String,
    /// The payload's schema version, stored beside it for upcasting.
    pub schema_version: u32,
    /// The JSON payload.
    pub data: Vec<u8>,
}

impl NewEvent {
    /// An encoded event with its id: the one mapping from the domain's stored
    /// form to what the store appends.
    pub fn encoded(event_id: Uuid, stored: StoredEvent) -> NewEvent {
        NewEvent {
            event_id,
            event_type: stored.name.to_owned(),
            schema_version: stored.schema_version,
            data: stored.data,
        }
    }
}

/// An event as the store recorded it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedEvent {
    pub stream: String,
    /// Position within the stream, from 0.
    pub version: u64,
    /// Position in the store's global order, from 1, strictly increasing in
    /// commit order. Positions of committed events have no gaps visible to
    /// readers that would later be filled.
    pub position: u64,
    pub event_id: Uuid,
    pub event_type: String,
    pub schema_version: u32,
    pub data: Vec<u8>,
    /// When the store durably recorded it.
    pub recorded_at: DateTime<Utc>,
    /// The `hash` of this stream's event at `version - 1`; `GENESIS` (32
    /// zero bytes) at version 0. Kept byte for byte as the store computed it.
    pub previous_hash: ChainHash,
    /// `chain::chain_hash(previous_hash, stream, version, event_id,
    /// event_type, schema_version, data)`, computed by the store when it
    /// appended the event and kept byte for byte. `paycode verify`
    /// recomputes it: a difference means the stored event was changed.
    pub hash: ChainHash,
}

impl RecordedEvent {
    /// The domain event it holds, upcast from older schemas if need be.
    pub fn decode<E: EventSchema>(&self) -> Result<E, DecodeError> {
        stored::decode(&self.event_type, self.schema_version, &self.data)
    }

    /// The event's fields, borrowed.
    pub fn borrowed(&self) -> EventRef<'_> {
        EventRef {
            stream: &self.stream,
            version: self.version,
            position: self.position,
            event_id: self.event_id,
            event_type: &self.event_type,
            schema_version: self.schema_version,
            data: &self.data,
            previous_hash: self.previous_hash,
            hash: self.hash,
        }
    }
}

/// A recorded event's fields, borrowed (from a `RecordedEvent`, or straight
/// from a SQLite row: `SqliteStore::scan_range` copies nothing). Without
/// `recorded_at`, which nothing that walks the whole log needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventRef<'a> {
    pub stream: &'a str,
    pub version: u64,
    pub position: u64,
    pub event_id: Uuid,
    pub event_type: &'a str,
    pub schema_version: u32,
    pub data: &'a [u8],
    pub previous_hash: ChainHash,
    pub hash: ChainHash,
}

impl EventRef<'_> {
    /// The domain event it holds, upcast from older schemas if need be.
    pub fn decode<E: EventSchema>(&self) -> Result<E, DecodeError> {
        stored::decode(self.event_type, self.schema_version, self.data)
    }

    /// The hash this event should carry: `chain::chain_hash` of its own
    /// fields and the `previous_hash` it carries.
    pub fn recompute(&self) -> ChainHash {
        chain::chain_hash(
            &self.previous_hash,
            self.stream,
            self.version,
            self.event_id,
            self.event_type,
            self.schema_version,
            self.data,
        )
    }
}

/// What a successful append tells the writer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendOutcome {
    /// The version of the last event appended.
    pub last_version: u64,
    /// The global position of the last event appended.
    pub last_position: u64,
}

/// The small set of store failures a caller can branch on.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Another writer moved the stream. Handle by reloading the stream,
    /// deciding again and appending with the new expected version.
    #[error("stream {stream} is at version {actual:?}, the append expected {expected:?}")]
    Conflict {
        stream: String,
        expected: ExpectedVersion,
        actual: Option<u64>,
    },
    /// The append or read was malformed (empty batch, duplicate event id in
    /// the batch, an id already used elsewhere; the embedded stores detect
    /// every reuse, EventStoreDB only a reuse behind the stream's head). A bug
    /// in the caller: do not retry.
    #[error("invalid append to {stream}: {reason}")]
    InvalidAppend { stream: String, reason: String },
    /// The store cannot be reached or did not confirm durability. The append
    /// may or may not have happened: retry with the same event ids and the
    /// same expected version, which is idempotent. HTTP answers 503.
    #[error("event store unavailable: {0}")]
    Unavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The stored data is not what this program wrote (a foreign or damaged
    /// file, an unknown schema). Stop and get an operator: never overwrite.
    #[error("event store corrupt: {0}")]
    Corrupt(String),
}

/// The port every event store implements (memory, SQLite, EventStoreDB).
#[async_trait]
pub trait EventStore: Send + Sync + std::fmt::Debug + 'static {
    /// Appends `events` atomically at `expected`. Acknowledged only once durable.
    /// Retrying the same event ids at the same expected version after a
    /// success returns the original outcome instead of a conflict.
    /// Each event is chained to the one before it: the first to the stream's
    /// event at `expected` (which cannot change under an exact expected
    /// version), the rest to their predecessor in the batch.
    async fn append(
        &self,
        stream: &str,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<AppendOutcome, StoreError>;

    /// Every event of one stream, oldest first (empty when it does not exist).
    async fn read_stream(&self, stream: &str) -> Result<Vec<RecordedEvent>, StoreError>;

    /// Up to `max_count` events in global order with `position >= from_position`.
    async fn read_all(
        &self,
        from_position: u64,
        max_count: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError>;

    /// The global position of the last committed event (0 when empty).
    async fn head_position(&self) -> Result<u64, StoreError>;

    /// Resolves once the head position may have moved past `position`
    /// (spurious wake-ups are allowed). Followers call it between reads.
    async fn wait_for_head_past(&self, position: u64) -> Result<(), StoreError>;

    /// Whether committed positions are dense (1, 2, 3, ... with no number
    /// unused). Then a follower that reads `p + 2` right after `p` has met a
    /// commit not yet visible and waits for `p + 1` instead of moving past it.
    /// EventStoreDB's positions are log offsets, sparse by design: `false`.
    /// A store answering `true` runs `contract::dense_positions`.
    fn dense_positions(&self) -> bool {
        true
    }
}

/// Rejects the appends no store may accept whatever its contents: an empty
/// batch, and a batch that names the same event id twice. Every store calls
/// it first, so all of them answer these bugs the same way.
pub fn check_batch(stream: &str, events: &[NewEvent]) -> Result<(), StoreError> {
    if events.is_empty() {
        return Err(StoreError::InvalidAppend {
            stream: stream.to_owned(),
            reason: "empty batch: an append carries at least one event".to_owned(),
        });
    }
    if events.len() > 1 {
        let mut seen = HashSet::with_capacity(events.len());
        for event in events {
            if !seen.insert(event.event_id) {
                return Err(StoreError::InvalidAppend {
                    stream: stream.to_owned(),
                    reason: format!("event id {} appears twice in the batch", event.event_id),
                });
            }
        }
    }
    Ok(())
}

/// The answer to a batch some of whose event ids are already stored, given
/// what the store holds under those ids (`None` for an id it does not know).
///
/// It is the original outcome when the batch is a retry (every id stored in
/// `stream` at `expected.next_version()`, `+1`, ... in batch order), and
/// `InvalidAppend` otherwise: an id may be used by one event only.
pub fn retry_outcome(
    stream: &str,
    expected: ExpectedVersion,
    stored: &[Option<StoredId<'_>>],
) -> Result<AppendOutcome, StoreError> {
    let first_version = expected.next_version();
    let mut last = None;
    for (offset, found) in (0u64..).zip(stored) {
        match found {
            Some(id) if id.stream == stream && id.version == first_version + offset => {
                last = Some(AppendOutcome {
                    last_version: id.version,
                    last_position: id.position,
                });
            }
            _ => {
                return Err(StoreError::InvalidAppend {
                    stream: stream.to_owned(),
                    reason: format!(
                        "event ids already used: the batch is not a retry of an append at {expected:?}"
                    ),
                });
            }
        }
    }
    last.ok_or_else(|| StoreError::InvalidAppend {
        stream: stream.to_owned(),
        reason: "empty batch: an append carries at least one event".to_owned(),
    })
}

/// Where a store holds an event id: what `retry_outcome` compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoredId<'a> {
    /// The stream the id was appended to.
    pub stream: &'a str,
    /// The version it got there.
    pub version: u64,
    /// Its global position.
    pub position: u64,
}
