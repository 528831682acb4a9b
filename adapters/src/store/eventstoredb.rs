//! `EventStoreDbStore`: the event-store port on an EventStoreDB (KurrentDB)
//! cluster, through the `eventstore` crate, so that several `paycode serve`
//! instances can share one log.
//!
//! Everything the crate offers is used through this file only, and only
//! through a handful of calls (append with an exact expected revision, read a
//! stream, read `$all`, subscribe to `$all`), so that moving to its renamed
//! successor `kurrentdb` is a change of imports (ADR 0003). The pure mappings
//! (expected versions, event data and metadata, positions, checkpoints,
//! errors) are plain functions, unit-tested without a server; the contract
//! suite runs against a real cluster only when `PAYCODE_EVENTSTORE_URL` is set
//! (`adapters/tests/it/store_contract_eventstoredb.rs`).
//!
//! How the port's promises are kept:
//! - Appends name `ExpectedRevision::NoStream` or `Exact(n)`, never `Any` or
//!   `StreamExists`: only an exact revision makes EventStoreDB de-duplicate a
//!   retry. Event ids are our event ids. After `WrongExpectedVersion` the
//!   stream is read and our ids looked for before anything is decided.
//! - Hash chain: the metadata of each event holds `previous_hash` and `hash`
//!   (hex). An append at `Exact(n)` first reads the stream's event `n` (which
//!   cannot change) for its hash and links the batch to it; if the append
//!   then meets `WrongExpectedVersion`, the links were never stored. No lock
//!   beyond the expected revision. An event without links (written before
//!   the chain existed) reads as `Corrupt`.
//! - Positions: EventStoreDB's `$all` position of an event written by a gRPC
//!   append is one log offset (commit = prepare). The port's position is
//!   **twice the commit position**: strictly increasing in commit order, never
//!   0, but not contiguous. Doubling leaves room for `position + 1` (what
//!   `Follower` and the runtime pass to `read_all` after the last event they
//!   saw) to decode unambiguously as "after that event": the server refuses
//!   reads that start inside a record. `read_all(from)` therefore accepts 0, 1,
//!   any position this store returned, and one more than such a position.
//! - Id reuse: EventStoreDB de-duplicates by (event id, stream) only for an
//!   append whose expected revision is behind the stream. Reusing a stored id
//!   at the stream's current revision, or in another stream, is not detected
//!   here (the embedded stores detect it): paycode never does either, its
//!   event ids are fresh UUIDs per decision.

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use eventstore::{
    AppendToStreamOptions, Client, ClientSettings, CurrentRevision, EventData, ExpectedRevision,
    Position, ReadAllOptions, ReadStreamOptions, StreamPosition, SubscribeToAllOptions,
    Subscription, SubscriptionFilter,
};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::chain::{ChainHash, GENESIS, from_hex, link_new, to_hex};
use super::{
    AppendOutcome, EventStore, ExpectedVersion, NewEvent, RecordedEvent, StoreError, StoredId,
    check_batch, retry_outcome,
};

/// How many `$all` events one read asks the server for.
const READ_ALL_PAGE_EVENTS: usize = 512;

/// How long one request to the cluster may take before its outcome is
/// treated as unknown (`Unavailable`; an append is then retried by the caller).
const REQUEST_TIMEOUT_SECS: u64 = 10;

/// Which streams of the cluster belong to this ledger. The whole cluster
/// minus system streams in production; a unique prefix per test, so that
/// contract tests on a shared server each see an empty store.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Namespace {
    prefix: String,
}

impl Namespace {
    /// Every non-system stream (`$`-prefixed streams and event types are
    /// EventStoreDB's own and are skipped).
    pub fn whole_cluster() -> Self {
        Namespace::default()
    }

    /// Only streams whose server-side name starts with `prefix`, which is
    /// removed from the names the port reports.
    pub fn prefixed(prefix: impl Into<String>) -> Self {
        Namespace {
            prefix: prefix.into(),
        }
    }

    /// The name of `stream` on the server.
    pub fn server_stream(&self, stream: &str) -> String {
        format!("{}{stream}", self.prefix)
    }

    /// Our name for a server-side stream, or `None` when the event is not
    /// this ledger's (a system stream or event type, or another prefix).
    pub fn our_stream<'a>(&self, server_stream: &'a str, event_type: &str) -> Option<&'a str> {
        if server_stream.starts_with('$') || event_type.starts_with('$') {
            return None;
        }
        server_stream.strip_prefix(self.prefix.as_str())
    }

    /// The server-side filter for `$all` subscriptions (the client-side check
    /// in `our_stream` still applies).
    fn subscription_filter(&self) -> SubscriptionFilter {
        if self.prefix.is_empty() {
            SubscriptionFilter::on_event_type().exclude_system_events()
        } else {
            SubscriptionFilter::on_stream_name().add_prefix(&self.prefix)
        }
    }
}

/// The expected revision for an expected version. There is no mapping to
/// `Any` or `StreamExists`: with those EventStoreDB does not reliably
/// de-duplicate a retried append.
pub fn expected_revision(expected: ExpectedVersion) -> ExpectedRevision {
    match expected {
        ExpectedVersion::NoStream => ExpectedRevision::NoStream,
        ExpectedVersion::Exact(version) => ExpectedRevision::Exact(version),
    }
}

/// Our view of a stream's revision in a `WrongExpectedVersion`.
pub fn actual_version(current: CurrentRevision) -> Option<u64> {
    match current {
        CurrentRevision::Current(revision) => Some(revision),
        CurrentRevision::NoStream => None,
    }
}

/// The metadata stored beside each event (the event's custom metadata, JSON).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventMetadata {
    /// The payload's schema version (`NewEvent::schema_version`).
    pub schema_version: u32,
    /// The command or request that caused the event. Reserved: `NewEvent`
    /// does not carry it yet, so it is written absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub causation_id: Option<Uuid>,
    /// Hash-chain fields (lower-case hex of 32 bytes): the previous event's
    /// hash and this event's (`chain.rs`). Always written; optional in the
    /// format only because it was reserved before the chain existed, and an
    /// event without them is refused as `Corrupt` when read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_hash: Option<String>,
    /// See `previous_hash`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hash: Option<String>,
}

/// What one `NewEvent` becomes on the server, before the crate wraps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventParts {
    /// Our event id, used as EventStoreDB's event id (the retry key).
    pub event_id: Uuid,
    /// Our stored event name.
    pub event_type: String,
    /// The payload, byte for byte (stored as binary so that nothing
    /// re-serialises it).
    pub payload: Bytes,
    /// `EventMetadata` as JSON.
    pub metadata: Bytes,
}

/// The server-side form of `event`, with its chain link.
pub fn event_parts(
    event: &NewEvent,
    previous_hash: &ChainHash,
    hash: &ChainHash,
) -> Result<EventParts, StoreError> {
    let metadata = EventMetadata {
        schema_version: event.schema_version,
        causation_id: None,
        previous_hash: Some(to_hex(previous_hash)),
        hash: Some(to_hex(hash)),
    };
    let metadata = serde_json::to_vec(&metadata).map_err(|error| StoreError::InvalidAppend {
        stream: String::new(),
        reason: format!("event metadata cannot be encoded: {error}"),
    })?;
    Ok(EventParts {
        event_id: event.event_id,
        event_type: event.event_type.clone(),
        payload: Bytes::from(event.data.clone()),
        metadata: Bytes::from(metadata),
    })
}

fn event_data(parts: EventParts) -> EventData {
    EventData::binary(parts.event_type, parts.payload)
        .id(parts.event_id)
        .metadata(parts.metadata)
}

/// The port's position for an EventStoreDB `$all` position: twice the commit
/// position (see the module doc). `Corrupt` if it does not fit.
pub fn port_position(position: Position) -> Result<u64, StoreError> {
    position
        .commit
        .checked_mul(2)
        .filter(|&doubled| doubled > 0)
        .ok_or_else(|| {
            StoreError::Corrupt(format!(
                "EventStoreDB position {position} cannot be a paycode event's position"
            ))
        })
}

/// Where to start reading `$all` for `read_all(from)`: `None` for the start
/// of the log, else the position of the event `from` names (or of the event
/// just before `from`, for `position + 1`). Reads then keep only events at
/// `from` or later.
pub fn read_start(from_position: u64) -> Option<Position> {
    let commit = from_position / 2;
    (commit > 0).then_some(Position {
        commit,
        prepare: commit,
    })
}

/// A catch-up checkpoint: the position of the last event handled. Positions
/// are not contiguous, so the checkpoint is the last seen position, never a
/// count; an event at or before it is a re-delivery and is skipped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Checkpoint {
    last_position: u64,
}

impl Checkpoint {
    /// A checkpoint after `last_position` (0: nothing handled yet).
    pub fn after(last_position: u64) -> Self {
        Checkpoint { last_position }
    }

    /// The position of the last event handled (0 when none).
    pub fn last_position(self) -> u64 {
        self.last_position
    }

    /// Whether the event at `position` is new; if so the checkpoint moves to it.
    pub fn accept(&mut self, position: u64) -> bool {
        if position > self.last_position {
            self.last_position = position;
            true
        } else {
            false
        }
    }

    /// Where an EventStoreDB subscription (whose start is exclusive) resumes.
    pub fn subscription_start(self) -> StreamPosition<Position> {
        match read_start(self.last_position) {
            None => StreamPosition::Start,
            Some(position) => StreamPosition::Position(position),
        }
    }
}

/// Our `RecordedEvent` for a server event, or `None` when it is not this
/// ledger's. `Corrupt` when it is ours by name but not in our format.
pub fn recorded_event(
    namespace: &Namespace,
    event: &eventstore::RecordedEvent,
) -> Result<Option<RecordedEvent>, StoreError> {
    let Some(stream) = namespace.our_stream(&event.stream_id, &event.event_type) else {
        return Ok(None);
    };
    let metadata: EventMetadata =
        serde_json::from_slice(&event.custom_metadata).map_err(|error| {
            StoreError::Corrupt(format!(
                "event {} in {} (revision {}) has no paycode metadata: {error}",
                event.id, event.stream_id, event.revision
            ))
        })?;
    let link = |value: &Option<String>, name: &str| {
        value.as_deref().and_then(from_hex).ok_or_else(|| {
            StoreError::Corrupt(format!(
                "event {} in {} (revision {}) has no valid {name} in its metadata \
                 (written before the hash chain, or changed)",
                event.id, event.stream_id, event.revision
            ))
        })
    };
    let previous_hash = link(&metadata.previous_hash, "previous_hash")?;
    let hash = link(&metadata.hash, "hash")?;
    Ok(Some(RecordedEvent {
        stream: stream.to_owned(),
        version: event.revision,
        position: port_position(event.position)?,
        event_id: event.id,
        event_type: event.event_type.clone(),
        schema_version: metadata.schema_version,
        data: event.data.to_vec(),
        recorded_at: event.created,
        previous_hash,
        hash,
    }))
}

/// The answer to an append, given the events found in the stream (all of
/// them after `WrongExpectedVersion`, or the range the append should have
/// filled after a success): the original outcome when every id of the batch
/// is stored at `expected.next_version()` onwards, `Conflict` when none of
/// them is in the stream, `InvalidAppend` otherwise.
pub fn decide_append(
    stream: &str,
    expected: ExpectedVersion,
    batch: &[NewEvent],
    found: &[RecordedEvent],
) -> Result<AppendOutcome, StoreError> {
    let stored: Vec<Option<StoredId<'_>>> = batch
        .iter()
        .map(|event| {
            found
                .iter()
                .find(|recorded| recorded.event_id == event.event_id)
                .map(|recorded| StoredId {
                    stream: &recorded.stream,
                    version: recorded.version,
                    position: recorded.position,
                })
        })
        .collect();
    if stored.iter().all(Option::is_none) {
        return Err(StoreError::Conflict {
            stream: stream.to_owned(),
            expected,
            actual: found.last().map(|recorded| recorded.version),
        });
    }
    retry_outcome(stream, expected, &stored)
}

/// The port's error for a client error. Transport trouble, timeouts, a
/// follower answering and the like are `Unavailable` (the outcome of an
/// append is unknown; retry with the same ids); data the client cannot parse
/// or a deleted stream is `Corrupt`. The source is kept.
pub fn store_error(stream: &str, error: eventstore::Error) -> StoreError {
    use eventstore::Error as E;
    match error {
        E::WrongExpectedVersion { expected, current } => StoreError::Conflict {
            stream: stream.to_owned(),
            expected: match expected {
                ExpectedRevision::Exact(version) => ExpectedVersion::Exact(version),
                _ => ExpectedVersion::NoStream,
            },
            actual: actual_version(current),
        },
        E::ResourceDeleted => StoreError::Corrupt(format!(
            "stream {stream} was deleted in EventStoreDB: paycode never deletes a stream"
        )),
        E::InternalParsingError(message) => StoreError::Corrupt(format!(
            "the EventStoreDB client could not parse an answer about {stream}: {message}"
        )),
        other => StoreError::Unavailable(Box::new(other)),
    }
}

/// A timeout on one request: the outcome is unknown.
#[derive(Debug, thiserror::Error)]
#[error("no answer from EventStoreDB within {0:?}")]
pub struct RequestTimedOut(pub Duration);

/// A TLS file named in the connection string cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("TLS file in the EventStoreDB connection string: {0}")]
pub struct TlsFileError(pub String);

/// The event store on an EventStoreDB cluster. Cheap to clone the client it
/// wraps; share the store behind an `Arc` like the others.
#[derive(Clone)]
pub struct EventStoreDbStore {
    client: Client,
    namespace: Namespace,
    request_timeout: Duration,
}

impl fmt::Debug for EventStoreDbStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The settings hold credentials: never print them.
        f.debug_struct("EventStoreDbStore")
            .field("namespace", &self.namespace)
            .field("request_timeout", &self.request_timeout)
            .finish_non_exhaustive()
    }
}

impl EventStoreDbStore {
    /// A store on the cluster of `url` (an `esdb://` or `esdb+discover://`
    /// connection string: hosts, `tls`, `tlsVerifyCert`, `tlsCaFile`,
    /// `nodePreference`, credentials). No request is sent yet; must be called
    /// inside a tokio runtime, on which the client runs.
    pub fn connect_lazy(url: &str, namespace: Namespace) -> Result<Self, StoreError> {
        let settings: ClientSettings = url
            .parse()
            .map_err(|error| StoreError::Unavailable(Box::new(error)))?;
        // The client unwraps these files' contents inside its connection
        // task: check them here so a wrong path is an error, not a hang.
        let mut files: Vec<&String> = settings.tls_ca_file().into_iter().collect();
        if let Some((certificate, key)) = settings.user_certificate() {
            files.extend([certificate, key]);
        }
        for file in files {
            let text = std::fs::read_to_string(file).map_err(|error| {
                StoreError::Unavailable(Box::new(TlsFileError(format!("{file}: {error}"))))
            })?;
            if !text.contains("-----BEGIN ") {
                return Err(StoreError::Unavailable(Box::new(TlsFileError(format!(
                    "{file}: not a PEM file"
                )))));
            }
        }
        let client =
            Client::new(settings).map_err(|error| StoreError::Unavailable(Box::new(error)))?;
        Ok(EventStoreDbStore {
            client,
            namespace,
            request_timeout: Duration::from_secs(REQUEST_TIMEOUT_SECS),
        })
    }

    /// Like `connect_lazy`, then checks within `timeout` that the cluster
    /// answers a read of `$all` (which the store needs anyway).
    pub async fn connect(
        url: &str,
        namespace: Namespace,
        timeout: Duration,
    ) -> Result<Self, StoreError> {
        let mut store = Self::connect_lazy(url, namespace)?;
        store.request_timeout = timeout;
        store.head_position().await?;
        store.request_timeout = Duration::from_secs(REQUEST_TIMEOUT_SECS);
        Ok(store)
    }

    /// `connect` for synchronous start-up code that runs inside a tokio
    /// runtime (of any flavour): the reachability check runs on a thread and
    /// runtime of its own, the returned store on the caller's runtime.
    pub fn open_blocking(
        url: &str,
        namespace: Namespace,
        timeout: Duration,
    ) -> Result<Self, StoreError> {
        let handle = tokio::runtime::Handle::try_current()
            .map_err(|error| StoreError::Unavailable(Box::new(error)))?;
        let check_url = url.to_owned();
        let check_namespace = namespace.clone();
        let checked = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|error| StoreError::Unavailable(Box::new(error)))?;
            runtime
                .block_on(Self::connect(&check_url, check_namespace, timeout))
                .map(drop)
        })
        .join();
        match checked {
            Ok(result) => result?,
            Err(panic) => std::panic::resume_unwind(panic),
        }
        let _entered = handle.enter();
        Self::connect_lazy(url, namespace)
    }

    /// The ledger's streams on this cluster.
    pub fn namespace(&self) -> &Namespace {
        &self.namespace
    }

    async fn timed<T>(
        &self,
        stream: &str,
        request: impl Future<Output = eventstore::Result<T>>,
    ) -> Result<T, StoreError> {
        match tokio::time::timeout(self.request_timeout, request).await {
            Ok(result) => result.map_err(|error| store_error(stream, error)),
            Err(_) => Err(StoreError::Unavailable(Box::new(RequestTimedOut(
                self.request_timeout,
            )))),
        }
    }

    /// Up to `max_count` events of `stream` from `revision` on.
    async fn read_stream_from(
        &self,
        stream: &str,
        revision: u64,
        max_count: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let server_stream = self.namespace.server_stream(stream);
        let options = ReadStreamOptions::default()
            .forwards()
            .position(StreamPosition::Position(revision))
            .max_count(max_count);
        let read = async {
            let mut read = self.client.read_stream(server_stream, &options).await?;
            let mut events = Vec::new();
            loop {
                match read.next().await {
                    Ok(Some(resolved)) => events.extend(resolved.event),
                    Ok(None) | Err(eventstore::Error::ResourceNotFound) => break,
                    Err(error) => return Err(error),
                }
            }
            Ok(events)
        };
        let events = self.timed(stream, read).await?;
        let mut recorded = Vec::with_capacity(events.len());
        for event in &events {
            match recorded_event(&self.namespace, event)? {
                Some(event) => recorded.push(event),
                None => {
                    return Err(StoreError::Corrupt(format!(
                        "stream {stream} holds an event that is not paycode's ({})",
                        event.event_type
                    )));
                }
            }
        }
        Ok(recorded)
    }

    /// One page of `$all` from `start`: the raw position of the last event
    /// the server returned (to continue from) and how many it returned.
    async fn read_all_page(
        &self,
        start: StreamPosition<Position>,
        backwards: bool,
    ) -> Result<Vec<eventstore::RecordedEvent>, StoreError> {
        let options = ReadAllOptions::default()
            .position(start)
            .max_count(READ_ALL_PAGE_EVENTS);
        let options = if backwards {
            options.backwards()
        } else {
            options.forwards()
        };
        let read = async {
            let mut read = self.client.read_all(&options).await?;
            let mut events = Vec::new();
            while let Some(resolved) = read.next().await? {
                events.extend(resolved.event);
            }
            Ok(events)
        };
        self.timed("$all", read).await
    }

    /// A catch-up subscription to this ledger's events after `checkpoint`:
    /// it replays what is stored, then follows live appends. Re-delivered
    /// events (after the client reconnects) are skipped by position.
    pub async fn subscribe(&self, checkpoint: Checkpoint) -> CatchUp {
        let options = SubscribeToAllOptions::default()
            .position(checkpoint.subscription_start())
            .filter(self.namespace.subscription_filter());
        CatchUp {
            subscription: self.client.subscribe_to_all(&options).await,
            namespace: self.namespace.clone(),
            checkpoint,
        }
    }
}

/// A catch-up subscription over `$all`, yielding each of the ledger's events
/// after its checkpoint once, in commit order.
pub struct CatchUp {
    subscription: Subscription,
    namespace: Namespace,
    checkpoint: Checkpoint,
}

impl fmt::Debug for CatchUp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CatchUp")
            .field("namespace", &self.namespace)
            .field("checkpoint", &self.checkpoint)
            .finish_non_exhaustive()
    }
}

impl CatchUp {
    /// The next new event. Store it with `checkpoint()` to resume after it.
    pub async fn next(&mut self) -> Result<RecordedEvent, StoreError> {
        loop {
            let resolved = self
                .subscription
                .next()
                .await
                .map_err(|error| store_error("$all", error))?;
            let Some(event) = resolved.event.as_ref() else {
                continue;
            };
            let Some(event) = recorded_event(&self.namespace, event)? else {
                continue;
            };
            if self.checkpoint.accept(event.position) {
                return Ok(event);
            }
        }
    }

    /// The position of the last event `next` returned.
    pub fn checkpoint(&self) -> Checkpoint {
        self.checkpoint
    }
}

fn raw_order(position: Position) -> (u64, u64) {
    (position.commit, position.prepare)
}

#[async_trait]
impl EventStore for EventStoreDbStore {
    async fn append(
        &self,
        stream: &str,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<AppendOutcome, StoreError> {
        check_batch(stream, &events)?;
        let mut previous_hash = match expected {
            ExpectedVersion::NoStream => GENESIS,
            ExpectedVersion::Exact(version) => {
                match self.read_stream_from(stream, version, 1).await?.first() {
                    Some(head) if head.version == version => head.hash,
                    // The stream has no event `version`: the append cannot
                    // succeed now. Decide as after `WrongExpectedVersion`.
                    _ => {
                        let found = self.read_stream_from(stream, 0, usize::MAX).await?;
                        return decide_append(stream, expected, &events, &found);
                    }
                }
            }
        };
        let mut data = Vec::with_capacity(events.len());
        for (version, event) in (expected.next_version()..).zip(&events) {
            let hash = link_new(&previous_hash, stream, version, event);
            let parts = event_parts(event, &previous_hash, &hash);
            previous_hash = hash;
            let parts = parts.map_err(|error| match error {
                StoreError::InvalidAppend { reason, .. } => StoreError::InvalidAppend {
                    stream: stream.to_owned(),
                    reason,
                },
                other => other,
            })?;
            data.push(event_data(parts));
        }
        let options =
            AppendToStreamOptions::default().expected_revision(expected_revision(expected));
        let server_stream = self.namespace.server_stream(stream);
        let written = self
            .timed(
                stream,
                self.client.append_to_stream(server_stream, &options, data),
            )
            .await;
        match written {
            // Acknowledged: either written now or recognised as a retry.
            // Read the range back for the outcome (the write result's
            // position is not the last event's for every server version).
            Ok(_) => {
                let found = self
                    .read_stream_from(stream, expected.next_version(), events.len())
                    .await?;
                match decide_append(stream, expected, &events, &found) {
                    Err(StoreError::Conflict { .. }) => Err(StoreError::Corrupt(format!(
                        "EventStoreDB acknowledged an append to {stream} at {expected:?} but its events are not there"
                    ))),
                    decided => decided,
                }
            }
            // Never decide on the error alone: the append may be a retry of
            // one that succeeded. Look for our ids first.
            Err(StoreError::Conflict { .. }) => {
                let found = self.read_stream_from(stream, 0, usize::MAX).await?;
                decide_append(stream, expected, &events, &found)
            }
            Err(other) => Err(other),
        }
    }

    async fn read_stream(&self, stream: &str) -> Result<Vec<RecordedEvent>, StoreError> {
        self.read_stream_from(stream, 0, usize::MAX).await
    }

    async fn read_all(
        &self,
        from_position: u64,
        max_count: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let mut found: Vec<RecordedEvent> = Vec::new();
        if max_count == 0 {
            return Ok(found);
        }
        let mut start = match read_start(from_position) {
            None => StreamPosition::Start,
            Some(position) => StreamPosition::Position(position),
        };
        let mut seen_through: Option<(u64, u64)> = None;
        loop {
            let page = self.read_all_page(start, false).await?;
            let full = page.len() >= READ_ALL_PAGE_EVENTS;
            for event in &page {
                if seen_through.is_some_and(|seen| raw_order(event.position) <= seen) {
                    continue;
                }
                let Some(recorded) = recorded_event(&self.namespace, event)? else {
                    continue;
                };
                if recorded.position < from_position {
                    continue;
                }
                if let Some(previous) = found.last()
                    && previous.position >= recorded.position
                {
                    return Err(StoreError::Corrupt(format!(
                        "$all positions do not increase: {} then {} (events written outside paycode's appends?)",
                        previous.position, recorded.position
                    )));
                }
                found.push(recorded);
                if found.len() == max_count {
                    return Ok(found);
                }
            }
            match page.last() {
                Some(last) if full => {
                    start = StreamPosition::Position(last.position);
                    seen_through = Some(raw_order(last.position));
                }
                _ => return Ok(found),
            }
        }
    }

    async fn head_position(&self) -> Result<u64, StoreError> {
        let mut start = StreamPosition::End;
        let mut seen_through: Option<(u64, u64)> = None;
        loop {
            let page = self.read_all_page(start, true).await?;
            let full = page.len() >= READ_ALL_PAGE_EVENTS;
            for event in &page {
                if seen_through.is_some_and(|seen| raw_order(event.position) >= seen) {
                    continue;
                }
                if let Some(recorded) = recorded_event(&self.namespace, event)? {
                    return Ok(recorded.position);
                }
            }
            match page.last() {
                Some(last) if full => {
                    start = StreamPosition::Position(last.position);
                    seen_through = Some(raw_order(last.position));
                }
                _ => return Ok(0),
            }
        }
    }

    async fn wait_for_head_past(&self, position: u64) -> Result<(), StoreError> {
        // The catch-up subscription starts after `position`, so an event
        // committed between the caller's last read and this call is seen too.
        let mut subscription = self.subscribe(Checkpoint::after(position)).await;
        subscription.next().await.map(|_| ())
    }

    /// Positions are twice the commit position: sparse, and a gap is never filled.
    fn dense_positions(&self) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use chrono::{TimeZone, Utc};

    use super::*;

    fn new_event(event_type: &str, payload: &str) -> NewEvent {
        NewEvent {
            event_id: Uuid::new_v4(),
            event_type: event_type.to_owned(),
            schema_version: 3,
            data: payload.as_bytes().to_vec(),
        }
    }

    /// `event_parts` with an arbitrary link, for tests of the mappings.
    fn parts_of(event: &NewEvent) -> EventParts {
        event_parts(event, &[1; 32], &[2; 32]).expect("parts")
    }

    /// What the server would hand back for `parts` stored at `revision` in
    /// `server_stream` at commit position `commit`.
    fn stored(
        parts: &EventParts,
        server_stream: &str,
        revision: u64,
        commit: u64,
    ) -> eventstore::RecordedEvent {
        eventstore::RecordedEvent {
            stream_id: server_stream.to_owned(),
            id: parts.event_id,
            revision,
            event_type: parts.event_type.clone(),
            data: parts.payload.clone(),
            metadata: HashMap::new(),
            custom_metadata: parts.metadata.clone(),
            is_json: false,
            position: Position {
                commit,
                prepare: commit,
            },
            created: Utc
                .with_ymd_and_hms(2025, 3, 1, 8, 0, 0)
                .single()
                .expect("valid time"),
        }
    }

    fn recorded(stream: &str, version: u64, position: u64, event_id: Uuid) -> RecordedEvent {
        RecordedEvent {
            stream: stream.to_owned(),
            version,
            position,
            event_id,
            event_type: "E".to_owned(),
            schema_version: 1,
            data: Vec::new(),
            recorded_at: Utc
                .with_ymd_and_hms(2025, 3, 1, 8, 0, 0)
                .single()
                .expect("valid time"),
            previous_hash: GENESIS,
            hash: GENESIS,
        }
    }

    #[test]
    fn expected_versions_map_to_exact_revisions_only() {
        // Shows that NoStream and Exact(n) keep their meaning, and that no
        // expected version becomes Any or StreamExists.
        assert_eq!(
            expected_revision(ExpectedVersion::NoStream),
            ExpectedRevision::NoStream
        );
        for version in [0, 1, 41, u64::MAX - 1] {
            assert_eq!(
                expected_revision(ExpectedVersion::Exact(version)),
                ExpectedRevision::Exact(version)
            );
        }
        assert_eq!(actual_version(CurrentRevision::NoStream), None);
        assert_eq!(actual_version(CurrentRevision::Current(7)), Some(7));
    }

    #[test]
    fn event_data_round_trips_with_its_id_type_payload_and_metadata() {
        // Shows that an event comes back from the server form exactly as it
        // went in: our id, our stored name, the payload byte for byte, and
        // the schema version from the metadata.
        let event = new_event("Submitted", "{\"b\":1,  \"a\":\"\u{4e2d}\"}");
        let previous_hash = [0xab; 32];
        let hash = link_new(&previous_hash, "payment-m-1", 4, &event);
        let parts = event_parts(&event, &previous_hash, &hash).expect("parts");
        assert_eq!(parts.event_id, event.event_id);
        assert_eq!(parts.event_type, "Submitted");
        assert_eq!(parts.payload.as_ref(), event.data.as_slice());
        assert_eq!(
            std::str::from_utf8(&parts.metadata).expect("utf-8"),
            format!(
                "{{\"schema_version\":3,\"previous_hash\":\"{}\",\"hash\":\"{}\"}}",
                "ab".repeat(32),
                to_hex(&hash)
            )
        );

        let namespace = Namespace::prefixed("t1-");
        let server = stored(&parts, "t1-payment-m-1", 4, 1000);
        let back = recorded_event(&namespace, &server)
            .expect("ours")
            .expect("in the namespace");
        assert_eq!(back.stream, "payment-m-1");
        assert_eq!(back.version, 4);
        assert_eq!(back.position, 2000);
        assert_eq!(back.event_id, event.event_id);
        assert_eq!(back.event_type, event.event_type);
        assert_eq!(back.schema_version, 3);
        assert_eq!(back.data, event.data);
        assert_eq!(back.previous_hash, previous_hash);
        assert_eq!(back.hash, hash);
        assert_eq!(crate::store::chain::recompute(&back), hash);
    }

    #[test]
    fn metadata_reads_causation_and_requires_hash_chain_fields() {
        // Shows that the reserved fields are read when present, that an
        // event without valid chain links is Corrupt (never a link of zeros),
        // and that unknown keys are Corrupt.
        let full: EventMetadata = serde_json::from_str(
            "{\"schema_version\":2,\"causation_id\":\"0190f5a0-0000-7000-8000-000000000001\",\
             \"previous_hash\":\"ab\",\"hash\":\"cd\"}",
        )
        .expect("parse");
        assert_eq!(full.schema_version, 2);
        assert!(full.causation_id.is_some());
        assert_eq!(full.hash.as_deref(), Some("cd"));

        let namespace = Namespace::whole_cluster();
        let mut parts = parts_of(&new_event("Submitted", "{}"));
        parts.metadata = Bytes::from_static(b"{\"schema\":1}");
        let foreign = stored(&parts, "payment-m-1", 0, 10);
        assert!(matches!(
            recorded_event(&namespace, &foreign),
            Err(StoreError::Corrupt(_))
        ));
        let unchained_metadata: [&'static [u8]; 3] = [
            b"{\"schema_version\":1}",
            b"{\"schema_version\":1,\"previous_hash\":\"ab\",\"hash\":\"cd\"}",
            b"{\"schema_version\":1,\"hash\":\"0000000000000000000000000000000000000000000000000000000000000000\"}",
        ];
        for metadata in unchained_metadata {
            parts.metadata = Bytes::from_static(metadata);
            let unchained = stored(&parts, "payment-m-1", 0, 10);
            assert!(
                matches!(
                    recorded_event(&namespace, &unchained),
                    Err(StoreError::Corrupt(_))
                ),
                "{}",
                String::from_utf8_lossy(metadata)
            );
        }
    }

    #[test]
    fn system_events_and_other_namespaces_are_skipped() {
        // Shows the $all filter: system streams and event types, and streams
        // outside the prefix, are not the ledger's.
        let parts = parts_of(&new_event("Submitted", "{}"));
        let whole = Namespace::whole_cluster();
        let prefixed = Namespace::prefixed("t1-");
        let mut system_type = stored(&parts, "payment-m-1", 0, 10);
        system_type.event_type = "$metadata".to_owned();
        assert_eq!(recorded_event(&whole, &system_type).expect("skip"), None);
        let system_stream = stored(&parts, "$stats-127.0.0.1:2113", 0, 10);
        assert_eq!(recorded_event(&whole, &system_stream).expect("skip"), None);
        let other = stored(&parts, "t2-payment-m-1", 0, 10);
        assert_eq!(recorded_event(&prefixed, &other).expect("skip"), None);
        assert!(recorded_event(&whole, &other).expect("ours").is_some());
        assert_eq!(prefixed.server_stream("order"), "t1-order");
    }

    #[test]
    fn positions_are_doubled_commit_positions_and_decode_with_their_successor() {
        // Shows the position mapping: strictly increasing, never 0, and both a
        // returned position and that position + 1 start a read at a real record.
        let at = |commit| Position {
            commit,
            prepare: commit,
        };
        assert_eq!(port_position(at(1234)).expect("fits"), 2468);
        assert!(port_position(at(100)).expect("fits") < port_position(at(101)).expect("fits"));
        assert!(matches!(port_position(at(0)), Err(StoreError::Corrupt(_))));
        assert!(matches!(
            port_position(at(u64::MAX / 2 + 1)),
            Err(StoreError::Corrupt(_))
        ));

        assert_eq!(read_start(0), None);
        assert_eq!(read_start(1), None);
        assert_eq!(read_start(2468), Some(at(1234)));
        assert_eq!(read_start(2469), Some(at(1234)));
    }

    #[test]
    fn checkpoints_skip_redelivered_events_and_resume_after_the_last_seen() {
        // Shows that a checkpoint is the last seen position, that events at
        // or before it are re-deliveries, and where a subscription resumes.
        let mut checkpoint = Checkpoint::default();
        assert_eq!(checkpoint.subscription_start(), StreamPosition::Start);
        assert!(checkpoint.accept(2468));
        assert!(!checkpoint.accept(2468), "re-delivery of the same event");
        assert!(!checkpoint.accept(2000), "re-delivery of an older event");
        assert!(checkpoint.accept(9000), "positions are not contiguous");
        assert_eq!(checkpoint.last_position(), 9000);
        assert_eq!(
            Checkpoint::after(2468).subscription_start(),
            StreamPosition::Position(Position {
                commit: 1234,
                prepare: 1234
            })
        );
    }

    #[test]
    fn wrong_expected_version_is_decided_by_looking_for_our_ids() {
        // Shows the retry rule: our ids at the expected revisions are the
        // original outcome; none of them is a conflict naming the actual
        // version; some of them, or at other revisions, is InvalidAppend.
        let batch = vec![new_event("A", "{}"), new_event("B", "{}")];
        let other = Uuid::new_v4();
        let stream_after_retry = vec![
            recorded("s", 0, 20, batch[0].event_id),
            recorded("s", 1, 24, batch[1].event_id),
            recorded("s", 2, 90, other),
        ];
        let outcome = decide_append("s", ExpectedVersion::NoStream, &batch, &stream_after_retry)
            .expect("a retry");
        assert_eq!(
            outcome,
            AppendOutcome {
                last_version: 1,
                last_position: 24
            }
        );

        let moved = vec![
            recorded("s", 0, 20, other),
            recorded("s", 1, 22, Uuid::new_v4()),
        ];
        match decide_append("s", ExpectedVersion::NoStream, &batch, &moved) {
            Err(StoreError::Conflict {
                stream,
                expected,
                actual,
            }) => {
                assert_eq!(stream, "s");
                assert_eq!(expected, ExpectedVersion::NoStream);
                assert_eq!(actual, Some(1));
            }
            answer => panic!("expected a conflict: {answer:?}"),
        }
        match decide_append("s", ExpectedVersion::Exact(0), &batch, &[]) {
            Err(StoreError::Conflict { actual, .. }) => assert_eq!(actual, None),
            answer => panic!("expected a conflict: {answer:?}"),
        }

        let half = vec![recorded("s", 0, 20, batch[0].event_id)];
        assert!(matches!(
            decide_append("s", ExpectedVersion::NoStream, &batch, &half),
            Err(StoreError::InvalidAppend { .. })
        ));
        assert!(matches!(
            decide_append("s", ExpectedVersion::Exact(1), &batch, &stream_after_retry),
            Err(StoreError::InvalidAppend { .. })
        ));
    }

    #[test]
    fn client_errors_map_to_the_ports_small_error_with_the_source_kept() {
        // Shows the error mapping: a version mismatch is a conflict, transport
        // trouble is Unavailable (source kept), deleted or unparsable data is Corrupt.
        match store_error(
            "s",
            eventstore::Error::WrongExpectedVersion {
                expected: ExpectedRevision::Exact(3),
                current: CurrentRevision::Current(5),
            },
        ) {
            StoreError::Conflict {
                stream,
                expected,
                actual,
            } => {
                assert_eq!(stream, "s");
                assert_eq!(expected, ExpectedVersion::Exact(3));
                assert_eq!(actual, Some(5));
            }
            other => panic!("expected a conflict: {other:?}"),
        }
        for transient in [
            eventstore::Error::DeadlineExceeded,
            eventstore::Error::ConnectionClosed,
            eventstore::Error::ServerError("leader lost".to_owned()),
            eventstore::Error::AccessDenied,
        ] {
            let shown = transient.to_string();
            match store_error("s", transient) {
                StoreError::Unavailable(source) => assert_eq!(source.to_string(), shown),
                other => panic!("expected Unavailable: {other:?}"),
            }
        }
        assert!(matches!(
            store_error("s", eventstore::Error::ResourceDeleted),
            StoreError::Corrupt(_)
        ));
        assert!(matches!(
            store_error("s", eventstore::Error::InternalParsingError("x".to_owned())),
            StoreError::Corrupt(_)
        ));
    }

    #[tokio::test]
    async fn a_malformed_url_is_refused_before_any_request() {
        // Shows that a connection string the client cannot parse is an error
        // at start-up, not a hang.
        let refused =
            EventStoreDbStore::connect_lazy("http://not-esdb", Namespace::whole_cluster());
        assert!(
            matches!(refused, Err(StoreError::Unavailable(_))),
            "{refused:?}"
        );
    }
}
