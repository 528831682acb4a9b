//! `SqliteStore`: the embedded, durable event store in one SQLite file.
//!
//! One dedicated writer thread owns the only write connection of the process
//! and commits by *group commit*: it takes every append queued while the
//! previous transaction was committing, checks each one on its own (expected
//! version, idempotent retry), writes them all in one `BEGIN IMMEDIATE`
//! transaction, commits durably (WAL, `synchronous=FULL`), and only then
//! answers each caller. A rejected append never fails its neighbours. A
//! second thread copies the WAL into the file (checkpoints) off that path. Reads
//! use a small pool of read-only connections on blocking threads. The file
//! carries an application id and a `meta` table, so a file that is not a
//! paycode store is refused as `Corrupt` and never modified. See
//! `docs/decisions/0002-sqlite-embedded-store.md` for why and for figures.
//!
//! The writer chains every stream (`chain.rs`): it knows each stream's head
//! (cached with its hash, re-read when another process committed) and links
//! each new event to it inside the transaction. A file of schema 1 (before
//! the chain) is upgraded in place when opened: one transaction adds the
//! link columns and chains the events it holds (ADR 0004).
//!
//! `open_read_only` is the auditor's open: no writer, no checkpointer, every
//! append refused, and the file (with its `-wal` and `-shm`) opened so that
//! nothing is ever written (`crate::read_only`). `scan_range` reads the
//! events of a range of streams in stream order, one stream after another,
//! through the `(stream_id, version)` index, borrowed from SQLite's rows:
//! what `paycode verify` needs to hold one stream in memory at a time, and
//! to check ranges on several cores at once.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, RwLock, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rusqlite::config::DbConfig;
use rusqlite::types::ValueRef;
use rusqlite::{Connection, ErrorCode, OpenFlags, OptionalExtension, params};
use tokio::sync::{oneshot, watch};
use uuid::Uuid;

use super::chain::{ChainHash, GENESIS, chain_hash, link_new};
use super::{
    AppendOutcome, EventRef, EventStore, ExpectedVersion, NewEvent, RecordedEvent, StoreError,
    StoredId, check_batch, retry_outcome,
};
use crate::read_only::{ReadOnlyError, ReadOnlyFile};

pub mod relayout;

/// `PRAGMA application_id` of a paycode store: "PAYC" in ASCII.
const APPLICATION_ID: i32 = 0x5041_5943;
/// The `meta` row that names the format.
const FORMAT_NAME: &str = "paycode-event-store";
/// The schema this code writes and reads. Schema 1 (no hash chain) is
/// upgraded in place on open; any other is refused as corrupt.
const SCHEMA_VERSION: u32 = 2;
/// The schema before the hash chain, which `open` upgrades.
const SCHEMA_VERSION_UNCHAINED: u32 = 1;
/// Events chained per statement batch while upgrading a schema 1 file.
const UPGRADE_PAGE_EVENTS: i64 = 1000;
/// Upper bound of events in one group-commit transaction: large enough to
/// amortise the commit's fsync, small enough to bound the callers' latency.
const GROUP_EVENTS_MAX: usize = 5000;
/// How long a connection waits for another process's lock before giving up
/// with `Unavailable`.
const BUSY_TIMEOUT_MS: u64 = 5000;
/// Above this many cached stream heads the writer forgets them all and
/// re-reads heads from the index on demand (bounds memory, not correctness).
const HEAD_CACHE_STREAMS_MAX: usize = 1_000_000;
/// Page size of a new file. SQLite's WAL logs whole pages, one write call
/// each, so a commit's cost follows the pages it dirties. Event ids are
/// time-ordered and new streams get the largest ids, so most of a group's
/// pages are new pages at the tails of the table and its indexes, where
/// larger pages mean fewer frames: 4 KiB measured 88–95k appends/s against
/// 73–78k at 1 KiB, and more than 8 and 16 KiB (ADR 0008). Ledgers made
/// with 1 KiB pages (before ADR 0008) keep working; `relayout` (`paycode
/// migrate --to sqlite`) rewrites one at this size.
pub const PAGE_SIZE_BYTES: u32 = 4096;
/// Checkpoints run on their own thread and connection, never in the
/// writer's commit path (SQLite's automatic checkpoint runs inside `COMMIT`
/// and stalled every caller of that group for the whole copy). After a
/// commit the checkpointer is woken, copies the WAL into the file with a
/// PASSIVE checkpoint (no lock the writer needs), then rests this long, so
/// that a hot page is copied once for many commits and the main file is
/// fsynced a few times a second at most.
const CHECKPOINT_INTERVAL_MS: u64 = 200;
/// A passive checkpoint that overlaps commits never catches up with the
/// writer, and SQLite restarts the WAL from its beginning only once every
/// frame was copied. When the checkpointer finds a WAL whose pages make
/// more than this many bytes it asks the writer to run one checkpoint itself
/// between two groups (after answering the callers): it then copies only
/// the frames of the last few commits, and the next transaction restarts
/// the WAL. This bounds the WAL's size under endless load.
const WAL_BYTES_WRITER_CHECKPOINT: i64 = 64 * 1024 * 1024;
/// The WAL is truncated back to this size when it restarts.
const JOURNAL_SIZE_LIMIT_BYTES: u64 = 64 * 1024 * 1024;
/// Page cache of each connection, in KiB (negative `cache_size` means KiB).
/// Enough for the indexes' hot pages; not larger, because SQLite walks the
/// cache's hash table at the end of every write transaction.
const CACHE_SIZE_KIB: i64 = 16 * 1024;
/// Bytes of the file each read connection of a read-only store maps into
/// memory: pages are read in place instead of copied by a `pread` each.
/// Address space only; the kernel's page cache holds the data either way.
/// Only where nothing writes: a connection drops its whole map at the
/// first read after any commit (SQLite unmaps it when the file changed), so
/// beside a live writer every small read paid an `munmap`, the TLB
/// shootdown of the other cores and page faults to map the pages again,
/// about a seventh of the CPU of `bench pending` (ADR 0008). The readers
/// beside the writer read with `pread` instead.
const READER_MMAP_BYTES: i64 = 1 << 30;
/// Read connections of a store, at most: reads beyond it wait for one to
/// be free (before taking a blocking thread). Every one stays open, so a
/// read never pays for opening a connection (the schema parsed, the file
/// stat'ed and mapped, the cached statements prepared again) nor for
/// closing one: under load, a pool that opened extra connections and
/// closed them after one read spent about a tenth of `bench e2e`'s CPU
/// doing that.
const READERS_MAX: usize = 4;
/// How often a waiting follower looks at the file, to notice commits made by
/// another process (commits of this process wake it at once).
const HEAD_POLL_INTERVAL_MS: u64 = 250;

/// Streams get a small integer id when their first event is written, so
/// that each event row and the per-stream index carry an integer, not the
/// name: new ids are the largest, so the `(stream_id, version)` index is
/// written at its tail, where the active streams are, instead of at one
/// random page per append.
pub const SCHEMA: &str = "
    CREATE TABLE streams (
        id             INTEGER PRIMARY KEY,
        name           TEXT    NOT NULL UNIQUE
    );
    CREATE TABLE events (
        position       INTEGER PRIMARY KEY,
        stream_id      INTEGER NOT NULL,
        version        INTEGER NOT NULL,
        event_id       BLOB    NOT NULL,
        event_type     TEXT    NOT NULL,
        schema_version INTEGER NOT NULL,
        data           BLOB    NOT NULL,
        recorded_at    INTEGER NOT NULL,
        previous_hash  BLOB    NOT NULL,
        hash           BLOB    NOT NULL
    );
    CREATE UNIQUE INDEX events_stream_version ON events (stream_id, version);
    CREATE UNIQUE INDEX events_event_id ON events (event_id);
    CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
";

/// The step leases (`crate::lease`): one row per order a process is acting
/// on, until `expires_at_micros`. Outside the event log: never chained,
/// never read by `paycode verify`, created by the first writable open.
const STEP_LEASES_SCHEMA: &str = "
    CREATE TABLE IF NOT EXISTS step_leases (
        stream            TEXT    PRIMARY KEY,
        owner             TEXT    NOT NULL,
        expires_at_micros INTEGER NOT NULL
    ) WITHOUT ROWID;
";

const INSERT_EVENT: &str = "INSERT INTO events \
    (position, stream_id, version, event_id, event_type, schema_version, data, recorded_at, \
    previous_hash, hash) \
    VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)";
/// The columns `raw_row` decodes, from `events e` and `streams s`.
const EVENT_COLUMNS: &str = "e.position, s.name, e.version, e.event_id, e.event_type, \
    e.schema_version, e.data, e.recorded_at, e.previous_hash, e.hash";

/// Counters of the writer, for benchmarks and for tests that check that
/// concurrent appends really share transactions.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SqliteStoreStats {
    /// Write transactions committed.
    pub commits: u64,
    /// Of `commits`, those that changed only step leases: committed without
    /// an fsync (`Writer::write_group` says why that is safe).
    pub lease_only_commits: u64,
    /// Append requests answered (accepted, retried or rejected).
    pub appends: u64,
    /// Events written by committed transactions.
    pub events: u64,
    /// Time the writer spent from `BEGIN` up to `COMMIT` (checks, inserts), µs.
    pub write_micros: u64,
    /// Time the writer spent in `COMMIT` (WAL write and fsync; checkpoints
    /// run on another thread), µs.
    pub commit_micros: u64,
    /// Read connections opened since the store was (at most `READERS_MAX`
    /// plus one while a synchronous read overlaps the async ones).
    pub reader_connections: u64,
}

#[derive(Debug, Default)]
struct Counters {
    commits: AtomicU64,
    lease_only_commits: AtomicU64,
    appends: AtomicU64,
    events: AtomicU64,
    write_micros: AtomicU64,
    commit_micros: AtomicU64,
}

/// The embedded event store. Open it once per file and share it (`Arc`);
/// `close` (or dropping it) flushes queued appends and stops the writer.
#[derive(Debug)]
pub struct SqliteStore {
    path: PathBuf,
    /// The writer's queue; `None` for a store opened read-only, and once
    /// closing. Shared with the store's step leases (`SqliteStore::leases`),
    /// so that closing the store stops the writer whoever holds them.
    requests: Arc<RwLock<Option<mpsc::Sender<Request>>>>,
    read_only: bool,
    writer: Option<JoinHandle<()>>,
    readers: Arc<Readers>,
    head: Arc<watch::Sender<u64>>,
    counters: Arc<Counters>,
}

/// What the writer is asked to do in its next transaction.
#[derive(Debug)]
enum Request {
    Append(WriteRequest),
    Lease(LeaseRequest),
}

/// A change of a step lease (`crate::lease`), written by the writer in its
/// next transaction, beside the appends of the same group.
#[derive(Debug)]
struct LeaseRequest {
    change: LeaseChange,
    /// Whether the lease is the caller's now (always `true` for a release).
    reply: oneshot::Sender<Result<bool, StoreError>>,
}

#[derive(Debug)]
enum LeaseChange {
    /// Take a free or expired lease, or renew one's own, until `until_micros`.
    Acquire {
        stream: String,
        owner: String,
        now_micros: i64,
        until_micros: i64,
    },
    /// Give one's own lease back.
    Release { stream: String, owner: String },
}

/// One append waiting for the writer.
#[derive(Debug)]
struct WriteRequest {
    stream: String,
    expected: ExpectedVersion,
    events: Vec<NewEvent>,
    reply: oneshot::Sender<Result<AppendOutcome, StoreError>>,
}

impl SqliteStore {
    /// Opens the store in `path`, creating it when the file does not exist or
    /// is empty. A file that is not a paycode store gives `Corrupt` naming
    /// the path and is left untouched. Blocks on file IO (call it at start,
    /// or within `spawn_blocking`).
    pub fn open(path: impl AsRef<Path>) -> Result<SqliteStore, StoreError> {
        let path = path.as_ref().to_path_buf();
        let conn = open_writer(&path)?;
        conn.execute_batch(STEP_LEASES_SCHEMA)
            .map_err(|error| sqlite_error(&path, error))?;
        let head_position = read_head(&conn).map_err(|error| sqlite_error(&path, error))?;
        let data_version = data_version(&conn).map_err(|error| sqlite_error(&path, error))?;

        let (requests, queue) = mpsc::channel();
        let head = Arc::new(watch::channel(head_position).0);
        let counters = Arc::new(Counters::default());
        let checkpoints = Arc::new(CheckpointSignal::default());
        let checkpointer = open_checkpointer(&path)?;
        let checkpointer = {
            let checkpoints = Arc::clone(&checkpoints);
            let path = path.clone();
            std::thread::Builder::new()
                .name("paycode-sqlite-checkpointer".to_owned())
                .spawn(move || run_checkpointer(&path, &checkpointer, &checkpoints))
                .map_err(|error| StoreError::Unavailable(Box::new(error)))?
        };
        let writer = Writer {
            path: path.clone(),
            conn,
            heads: HashMap::new(),
            next_position: head_position + 1,
            data_version,
            head: Arc::clone(&head),
            counters: Arc::clone(&counters),
            checkpoints,
            checkpointer: Some(checkpointer),
            syncing: true,
        };
        let writer = std::thread::Builder::new()
            .name("paycode-sqlite-writer".to_owned())
            .spawn(move || writer.run(queue))
            .map_err(|error| StoreError::Unavailable(Box::new(error)))?;
        Ok(SqliteStore {
            readers: Arc::new(Readers::new(ReaderSource::Shared(path.clone()), Vec::new())),
            path,
            requests: Arc::new(RwLock::new(Some(requests))),
            read_only: false,
            writer: Some(writer),
            head,
            counters,
        })
    }

    /// Opens the store in `path` for reading only, never writing a byte of
    /// it, its `-wal` or `-shm`, nor creating anything beside it (how is
    /// `crate::read_only`'s to choose). No writer thread; every append is
    /// refused. The file must exist and be a paycode store of the current
    /// schema (a schema 1 file would need its upgrade, which writes).
    pub fn open_read_only(path: impl AsRef<Path>) -> Result<SqliteStore, StoreError> {
        let path = path.as_ref().to_path_buf();
        let source = ReaderSource::Untouched(ReadOnlyFile::at(&path).map_err(read_only_error)?);
        let conn = source.connect()?;
        check_readable(&conn, &path)?;
        let head_position = read_head(&conn).map_err(|error| sqlite_error(&path, error))?;
        let readers = Readers::new(source, vec![conn]);
        Ok(SqliteStore {
            readers: Arc::new(readers),
            path,
            requests: Arc::new(RwLock::new(None)),
            read_only: true,
            writer: None,
            head: Arc::new(watch::channel(head_position).0),
            counters: Arc::new(Counters::default()),
        })
    }

    /// The store's streams as runs of about `streams_per_range` consecutive
    /// ids, in id order: streams are numbered by their first event, so the
    /// ranges one after the other are every stream in the order they began.
    /// Ranges can be scanned side by side (`scan_range`). Blocking.
    pub fn stream_ranges(&self, streams_per_range: u64) -> Result<Vec<StreamRange>, StoreError> {
        let (first, last): (Option<i64>, Option<i64>) = self.readers.run(|conn| {
            // Two subqueries: SQLite answers a lone min() or max() of the
            // key from the ends of the table, but both in one select by
            // reading every row.
            conn.query_row(
                "SELECT (SELECT min(id) FROM streams), (SELECT max(id) FROM streams)",
                [],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )
            .map_err(unavailable)
        })?;
        let (Some(first), Some(last)) = (first, last) else {
            return Ok(Vec::new());
        };
        let step = i64::try_from(streams_per_range.max(1)).unwrap_or(i64::MAX);
        let mut ranges = Vec::new();
        let mut start = first;
        while start <= last {
            let end = start.saturating_add(step - 1).min(last);
            ranges.push(StreamRange {
                first: start,
                last: end,
            });
            start = end.saturating_add(1);
            if end == i64::MAX {
                break;
            }
        }
        Ok(ranges)
    }

    /// Hands every event of the streams in `range` to `each`, one stream
    /// after another (by id), each stream's events by version, through the
    /// `(stream_id, version)` index, in one read transaction. The events are
    /// borrowed from SQLite's rows: nothing is copied, and each stream's
    /// name is read once. A row this program did not write (a hash that is
    /// not 32 bytes, an event of a stream without a name, ...) stops the
    /// scan as `Corrupt`, naming its position.
    ///
    /// Each call reads through a connection of its own, closed at the end:
    /// its page cache and memory map (the pages of the file it touched) go
    /// with it, so a walk of the whole ledger range after range holds about
    /// one range's pages at a time, not the file's. Blocking: run it on a
    /// thread of its own.
    pub fn scan_range(
        &self,
        range: StreamRange,
        mut each: impl FnMut(&EventRef<'_>),
    ) -> Result<(), StoreError> {
        let conn = self.readers.source.connect()?;
        // One snapshot for the names and the events.
        let snapshot = conn.unchecked_transaction().map_err(unavailable)?;
        let names: Vec<(i64, String)> = {
            let mut select = snapshot
                .prepare("SELECT id, name FROM streams WHERE id BETWEEN ?1 AND ?2 ORDER BY id")
                .map_err(unavailable)?;
            select
                .query_map(params![range.first, range.last], |row| {
                    Ok((row.get(0)?, row.get(1)?))
                })
                .map_err(unavailable)?
                .collect::<Result<_, _>>()
                .map_err(unavailable)?
        };
        let mut select = snapshot
            .prepare(
                "SELECT stream_id, position, version, event_id, event_type, schema_version, \
                 data, previous_hash, hash FROM events INDEXED BY events_stream_version \
                 WHERE stream_id BETWEEN ?1 AND ?2 ORDER BY stream_id, version",
            )
            .map_err(unavailable)?;
        let mut rows = select
            .query(params![range.first, range.last])
            .map_err(unavailable)?;
        // Both come by stream id: the name of a row's stream is the current
        // one or one further on.
        let mut names = names.iter().peekable();
        while let Some(row) = rows.next().map_err(unavailable)? {
            let stream_id: i64 = row.get(0).map_err(unavailable)?;
            while names.next_if(|(id, _)| *id < stream_id).is_some() {}
            let Some((_, stream)) = names.peek().filter(|(id, _)| *id == stream_id) else {
                let position: i64 = row.get(1).map_err(unavailable)?;
                return Err(StoreError::Corrupt(format!(
                    "event at position {position}: its stream (id {stream_id}) has no name"
                )));
            };
            each(&event_row(row, stream)?);
        }
        Ok(())
    }

    /// Whether this store was opened with `open_read_only`.
    pub fn is_read_only(&self) -> bool {
        self.read_only
    }
    /// The file this store lives in.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The writer's counters so far.
    /// The step leases kept in this file, changed by this store's writer
    /// (`StoreLeases`). Every process sharing the file takes its leases
    /// from its own store this way.
    pub fn leases(&self) -> StoreLeases {
        StoreLeases {
            requests: Arc::clone(&self.requests),
        }
    }

    pub fn stats(&self) -> SqliteStoreStats {
        SqliteStoreStats {
            commits: self.counters.commits.load(Ordering::Relaxed),
            lease_only_commits: self.counters.lease_only_commits.load(Ordering::Relaxed),
            appends: self.counters.appends.load(Ordering::Relaxed),
            events: self.counters.events.load(Ordering::Relaxed),
            write_micros: self.counters.write_micros.load(Ordering::Relaxed),
            commit_micros: self.counters.commit_micros.load(Ordering::Relaxed),
            reader_connections: self.readers.opened.load(Ordering::Relaxed),
        }
    }

    /// Stops accepting appends, lets the writer commit and answer everything
    /// already queued, and waits for it to finish. The idle readers are
    /// closed first, so that the writer's connection is the file's last
    /// in this process: closing, it folds the WAL into the file and removes
    /// the `-wal` and `-shm` (unless another process still has the file
    /// open), which leaves a stopped ledger one file that a plain copy takes
    /// whole (docs/auditing.md).
    pub async fn close(mut self) -> Result<(), StoreError> {
        self.readers.close_idle();
        drop(take_sender(&self.requests));
        let Some(writer) = self.writer.take() else {
            return Ok(());
        };
        tokio::task::spawn_blocking(move || writer.join())
            .await
            .map_err(|error| StoreError::Unavailable(Box::new(error)))?
            .map_err(|_| StoreError::Unavailable("the SQLite writer thread panicked".into()))
    }

    async fn read<T, F>(&self, query: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let readers = Arc::clone(&self.readers);
        // Waiting here, not on a blocking thread: a read takes a thread
        // only when a connection is free for it.
        let permit = Arc::clone(&readers.turns)
            .acquire_owned()
            .await
            .map_err(|error| StoreError::Unavailable(Box::new(error)))?;
        tokio::task::spawn_blocking(move || {
            let result = readers.run(query);
            drop(permit);
            result
        })
        .await
        .map_err(|error| StoreError::Unavailable(Box::new(error)))?
    }
}

impl Drop for SqliteStore {
    fn drop(&mut self) {
        // Closing the channel ends the writer once it has drained the queue;
        // the readers go first, as in `close`.
        if self.writer.is_some() {
            self.readers.close_idle();
        }
        drop(take_sender(&self.requests));
        if let Some(writer) = self.writer.take() {
            // A panicked writer has nothing left to flush; there is no one to tell.
            let _ = writer.join();
        }
    }
}

#[async_trait]
impl EventStore for SqliteStore {
    async fn append(
        &self,
        stream: &str,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<AppendOutcome, StoreError> {
        check_batch(stream, &events)?;
        if self.read_only {
            return Err(StoreError::Unavailable(
                format!(
                    "{} is opened read-only: appends are refused",
                    self.path.display()
                )
                .into(),
            ));
        }
        let (reply, answer) = oneshot::channel();
        let request = WriteRequest {
            stream: stream.to_owned(),
            expected,
            events,
            reply,
        };
        send(&self.requests, Request::Append(request))?;
        answer.await.map_err(|_| writer_stopped())?
    }

    async fn read_stream(&self, stream: &str) -> Result<Vec<RecordedEvent>, StoreError> {
        let stream = stream.to_owned();
        self.read(move |conn| {
            // CROSS JOIN fixes the loop order: the stream by name, then its events.
            let sql = format!(
                "SELECT {EVENT_COLUMNS} FROM streams s CROSS JOIN events e ON e.stream_id = s.id \
                 WHERE s.name = ?1 ORDER BY e.version"
            );
            let mut statement = conn.prepare_cached(&sql).map_err(unavailable)?;
            let rows = statement
                .query_map([&stream], raw_row)
                .map_err(unavailable)?;
            rows.map(|row| row.map_err(unavailable).and_then(RawRow::into_recorded))
                .collect()
        })
        .await
    }

    async fn read_all(
        &self,
        from_position: u64,
        max_count: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let from = i64::try_from(from_position).unwrap_or(i64::MAX);
        let limit = i64::try_from(max_count).unwrap_or(i64::MAX);
        self.read(move |conn| {
            // Events in position order, each one's stream name by its id.
            let sql = format!(
                "SELECT {EVENT_COLUMNS} FROM events e CROSS JOIN streams s ON s.id = e.stream_id \
                 WHERE e.position >= ?1 ORDER BY e.position LIMIT ?2"
            );
            let mut statement = conn.prepare_cached(&sql).map_err(unavailable)?;
            let rows = statement
                .query_map([from, limit], raw_row)
                .map_err(unavailable)?;
            rows.map(|row| row.map_err(unavailable).and_then(RawRow::into_recorded))
                .collect()
        })
        .await
    }

    async fn head_position(&self) -> Result<u64, StoreError> {
        self.read(|conn| read_head(conn).map_err(unavailable)).await
    }

    async fn wait_for_head_past(&self, position: u64) -> Result<(), StoreError> {
        let mut head = self.head.subscribe();
        tokio::select! {
            // The sender lives as long as `self`; an error would only be an
            // early (spurious) wake-up, which the port allows.
            _ = head.wait_for(|&head| head > position) => {}
            () = tokio::time::sleep(Duration::from_millis(HEAD_POLL_INTERVAL_MS)) => {}
        }
        Ok(())
    }
}

/// The answer when the writer is gone (the store closed or read-only).
fn writer_stopped() -> StoreError {
    StoreError::Unavailable("the SQLite writer has stopped".into())
}

/// Queues `request` for the writer.
fn send(
    requests: &RwLock<Option<mpsc::Sender<Request>>>,
    request: Request,
) -> Result<(), StoreError> {
    requests
        .read()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .as_ref()
        .ok_or_else(writer_stopped)?
        .send(request)
        .map_err(|_| writer_stopped())
}

/// Takes the writer's queue away (the writer stops once it is drained).
fn take_sender(requests: &RwLock<Option<mpsc::Sender<Request>>>) -> Option<mpsc::Sender<Request>> {
    requests
        .write()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .take()
}

/// The step leases of a SQLite ledger (`crate::lease`), in its
/// `step_leases` table, changed by the store's writer in the group commit
/// of the appends queued beside them: no transaction, lock or fsync of
/// their own. Other processes using the file see them as soon as the
/// group commits, as they see its events.
#[derive(Debug, Clone)]
pub struct StoreLeases {
    requests: Arc<RwLock<Option<mpsc::Sender<Request>>>>,
}

impl StoreLeases {
    async fn change(&self, change: LeaseChange) -> Result<bool, StoreError> {
        let (reply, answer) = oneshot::channel();
        send(
            &self.requests,
            Request::Lease(LeaseRequest { change, reply }),
        )?;
        answer.await.map_err(|_| writer_stopped())?
    }
}

#[async_trait]
impl crate::lease::StepLease for StoreLeases {
    async fn acquire(
        &self,
        stream: &str,
        owner: &str,
        now: DateTime<Utc>,
        ttl: chrono::Duration,
    ) -> Result<bool, StoreError> {
        self.change(LeaseChange::Acquire {
            stream: stream.to_owned(),
            owner: owner.to_owned(),
            now_micros: now.timestamp_micros(),
            until_micros: (now + ttl).timestamp_micros(),
        })
        .await
    }

    /// Queued for the writer's next group, not waited for: giving a lease
    /// back early only lets another process act sooner, and a release that
    /// never lands is undone by the lease's expiry.
    async fn release(&self, stream: &str, owner: &str) -> Result<(), StoreError> {
        let (reply, _) = oneshot::channel();
        let change = LeaseChange::Release {
            stream: stream.to_owned(),
            owner: owner.to_owned(),
        };
        send(
            &self.requests,
            Request::Lease(LeaseRequest { change, reply }),
        )
    }
}

/// A run of consecutive stream ids: a share of a walk in stream order
/// (`SqliteStore::stream_ranges`, `SqliteStore::scan_range`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamRange {
    /// The first stream id of the range.
    pub first: i64,
    /// The last stream id of the range (inclusive).
    pub last: i64,
}

/// One row of the stream-ordered scan (`stream_id, position, version,
/// event_id, event_type, schema_version, data, previous_hash, hash`) of
/// `stream`, checked for what `into_recorded` checks, without copying its
/// variable-length columns.
fn event_row<'a>(row: &'a rusqlite::Row<'_>, stream: &'a str) -> Result<EventRef<'a>, StoreError> {
    let position: i64 = row.get(1).map_err(unavailable)?;
    let corrupt = |what: &str| StoreError::Corrupt(format!("event at position {position}: {what}"));
    let event_type = match row.get_ref(4).map_err(unavailable)? {
        ValueRef::Text(bytes) => {
            std::str::from_utf8(bytes).map_err(|_| corrupt("event type is not text"))?
        }
        _ => return Err(corrupt("event type is not text")),
    };
    let (ValueRef::Blob(data) | ValueRef::Text(data)) = row.get_ref(6).map_err(unavailable)? else {
        return Err(corrupt("data is not a blob"));
    };
    let version: i64 = row.get(2).map_err(unavailable)?;
    let schema_version: i64 = row.get(5).map_err(unavailable)?;
    Ok(EventRef {
        stream,
        version: u64::try_from(version).map_err(|_| corrupt("negative version"))?,
        position: u64::try_from(position).map_err(|_| corrupt("negative position"))?,
        event_id: Uuid::from_bytes(
            fixed_blob(row, 3)
                .map_err(unavailable)?
                .ok_or_else(|| corrupt("event id is not 16 bytes"))?,
        ),
        event_type,
        schema_version: u32::try_from(schema_version)
            .map_err(|_| corrupt("schema version out of range"))?,
        data,
        previous_hash: fixed_blob(row, 7)
            .map_err(unavailable)?
            .ok_or_else(|| corrupt("previous_hash is not 32 bytes"))?,
        hash: fixed_blob(row, 8)
            .map_err(unavailable)?
            .ok_or_else(|| corrupt("hash is not 32 bytes"))?,
    })
}

/// The pool of read-only connections.
#[derive(Debug)]
struct Readers {
    source: ReaderSource,
    idle: Mutex<Vec<Connection>>,
    /// One permit per connection the pool may hold (`READERS_MAX`), taken
    /// by the async reads. The few synchronous reads (`scan_range`'s stream
    /// list, a read-only store's bounds) run beside them, so the pool may
    /// briefly hold one connection more; it keeps `READERS_MAX`.
    turns: Arc<tokio::sync::Semaphore>,
    /// Connections opened so far (`SqliteStoreStats::reader_connections`).
    opened: AtomicU64,
}

/// How the pool's connections are opened.
#[derive(Debug)]
enum ReaderSource {
    /// Beside this process's writer: ordinary WAL readers.
    Shared(PathBuf),
    /// A store opened read-only: connections that never write.
    Untouched(ReadOnlyFile),
}

impl ReaderSource {
    fn connect(&self) -> Result<Connection, StoreError> {
        match self {
            ReaderSource::Shared(path) => open_reader(path),
            ReaderSource::Untouched(file) => {
                let conn = file.connect().map_err(read_only_error)?;
                conn.pragma_update(None, "cache_size", -CACHE_SIZE_KIB / 4)
                    .and_then(|()| conn.pragma_update(None, "mmap_size", READER_MMAP_BYTES))
                    .map_err(|error| sqlite_error(file.path(), error))?;
                Ok(conn)
            }
        }
    }
}

impl Readers {
    fn new(source: ReaderSource, idle: Vec<Connection>) -> Readers {
        Readers {
            source,
            idle: Mutex::new(idle),
            turns: Arc::new(tokio::sync::Semaphore::new(READERS_MAX)),
            opened: AtomicU64::new(0),
        }
    }

    /// Closes the pooled connections (one in use goes back to the pool).
    fn close_idle(&self) {
        self.idle.lock().expect("reader pool lock poisoned").clear();
    }

    fn run<T>(
        &self,
        query: impl FnOnce(&Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let pooled = self.idle.lock().expect("reader pool lock poisoned").pop();
        let conn = if let Some(conn) = pooled {
            conn
        } else {
            let conn = self.source.connect()?;
            self.opened.fetch_add(1, Ordering::Relaxed);
            conn
        };
        let result = query(&conn);
        let mut idle = self.idle.lock().expect("reader pool lock poisoned");
        if idle.len() < READERS_MAX {
            idle.push(conn);
        }
        result
    }
}

/// The only write connection, and what it knows between transactions.
struct Writer {
    path: PathBuf,
    conn: Connection,
    /// Id and last version of recently written streams. Valid while
    /// `data_version` says no other connection committed.
    heads: HashMap<String, StreamHead>,
    /// The position the next event will get.
    next_position: u64,
    /// `PRAGMA data_version` after our last transaction: it changes when
    /// another connection (another process) committed to the file.
    data_version: i64,
    head: Arc<watch::Sender<u64>>,
    counters: Arc<Counters>,
    checkpoints: Arc<CheckpointSignal>,
    /// Stopped and joined before the writer's connection closes, so that
    /// the writer's is the last connection and checkpoints the WAL away.
    checkpointer: Option<JoinHandle<()>>,
    /// Whether the connection's commits fsync (`synchronous=FULL`), as
    /// they must for events; `false` while it commits lease changes alone.
    syncing: bool,
}

/// What the writer knows of one existing stream.
#[derive(Debug, Clone, Copy)]
struct StreamHead {
    id: i64,
    version: u64,
    /// The last event's hash; `None` when the stored value is not a hash
    /// (a row this program did not write): appending to it is refused.
    hash: Option<ChainHash>,
}

/// Why a request could not be written, decided inside the transaction.
enum Rejected {
    /// The answer for this request alone (conflict, invalid, or a retry's
    /// original outcome); the transaction goes on for the others.
    Answer(Result<AppendOutcome, StoreError>),
    /// The transaction itself failed: every request of the group fails.
    Group(rusqlite::Error),
}

impl From<rusqlite::Error> for Rejected {
    fn from(error: rusqlite::Error) -> Self {
        Rejected::Group(error)
    }
}

impl Writer {
    fn run(mut self, queue: mpsc::Receiver<Request>) {
        let mut group: Vec<WriteRequest> = Vec::new();
        let mut leases: Vec<LeaseRequest> = Vec::new();
        let mut answers: Vec<Result<AppendOutcome, StoreError>> = Vec::new();
        let mut lease_answers: Vec<Result<bool, StoreError>> = Vec::new();
        // `recv` keeps returning queued requests after the store was closed,
        // and fails only once the queue is empty: nothing is dropped.
        while let Ok(first) = queue.recv() {
            let mut events = 0;
            let mut next = Some(first);
            while let Some(request) = next.take() {
                match request {
                    Request::Append(append) => {
                        events += append.events.len();
                        group.push(append);
                    }
                    Request::Lease(lease) => leases.push(lease),
                }
                if events < GROUP_EVENTS_MAX {
                    next = queue.try_recv().ok();
                }
            }
            self.commit_group(&group, &leases, &mut answers, &mut lease_answers);
            self.counters
                .appends
                .fetch_add(group.len() as u64, Ordering::Relaxed);
            for (request, answer) in group.drain(..).zip(answers.drain(..)) {
                // A caller that stopped waiting has nobody to tell.
                let _ = request.reply.send(answer);
            }
            for (request, answer) in leases.drain(..).zip(lease_answers.drain(..)) {
                let _ = request.reply.send(answer);
            }
            self.checkpoints.committed();
            if self.checkpoints.writer_should_checkpoint() {
                self.checkpoint();
            }
        }
        self.checkpoints.stop();
        if let Some(checkpointer) = self.checkpointer.take() {
            // A panicked checkpointer copied nothing that the writer's
            // final checkpoint on close will not copy.
            let _ = checkpointer.join();
        }
        // The checkpoint on close must sync the file before it deletes the
        // WAL. If this fails, so will the close's checkpoint, and the WAL
        // stays for the next open to recover.
        if let Err(error) = self.set_syncing(true) {
            tracing::warn!(path = %self.path.display(), %error, "SQLite writer cannot sync on close");
        }
    }

    /// Makes the connection's commits and checkpoints fsync (`true`), or
    /// not. Only between transactions (SQLite refuses it inside one).
    fn set_syncing(&mut self, syncing: bool) -> rusqlite::Result<()> {
        if syncing != self.syncing {
            self.conn
                .prepare_cached(if syncing {
                    "PRAGMA synchronous = FULL"
                } else {
                    "PRAGMA synchronous = OFF"
                })?
                .execute([])?;
            self.syncing = syncing;
        }
        Ok(())
    }

    /// Copies the WAL's last frames into the file (the checkpointer copied
    /// the rest), so that the next transaction restarts the WAL. Runs
    /// between groups, after their callers were answered.
    fn checkpoint(&mut self) {
        // A checkpoint must sync the file before the WAL restarts over it.
        if let Err(error) = self.set_syncing(true) {
            tracing::warn!(path = %self.path.display(), %error, "SQLite checkpoint skipped");
            return;
        }
        match passive_checkpoint(&self.conn) {
            Ok(Some(_)) => self.checkpoints.writer_checkpointed(),
            // The checkpointer is copying right now: try after the next group.
            Ok(None) => {}
            Err(error) => {
                tracing::warn!(path = %self.path.display(), %error, "SQLite checkpoint failed");
            }
        }
    }

    /// Writes `group` and `leases` in one transaction and fills `answers`
    /// and `lease_answers` (one per request).
    fn commit_group(
        &mut self,
        group: &[WriteRequest],
        leases: &[LeaseRequest],
        answers: &mut Vec<Result<AppendOutcome, StoreError>>,
        lease_answers: &mut Vec<Result<bool, StoreError>>,
    ) {
        let start_position = self.next_position;
        match self.write_group(group, leases, answers, lease_answers) {
            Ok(()) => {
                let written = self.next_position - start_position;
                self.counters.commits.fetch_add(1, Ordering::Relaxed);
                if group.is_empty() {
                    self.counters
                        .lease_only_commits
                        .fetch_add(1, Ordering::Relaxed);
                }
                self.counters.events.fetch_add(written, Ordering::Relaxed);
                if written > 0 {
                    self.head.send_replace(self.next_position - 1);
                }
            }
            Err(error) => {
                tracing::warn!(path = %self.path.display(), %error, "SQLite group commit failed");
                if !self.conn.is_autocommit() {
                    // If even the rollback fails the connection is unusable;
                    // the next BEGIN will report it to the next callers.
                    let _ = self.conn.execute_batch("ROLLBACK");
                }
                // Nothing of this transaction is known to be durable: forget
                // what it taught us and reload from the file next time.
                self.heads.clear();
                self.data_version = -1;
                let shared = Arc::new(error);
                let failed = || StoreError::Unavailable(Box::new(SharedError(Arc::clone(&shared))));
                answers.clear();
                answers.extend(group.iter().map(|_| Err(failed())));
                lease_answers.clear();
                lease_answers.extend(leases.iter().map(|_| Err(failed())));
            }
        }
    }

    fn write_group(
        &mut self,
        group: &[WriteRequest],
        leases: &[LeaseRequest],
        answers: &mut Vec<Result<AppendOutcome, StoreError>>,
        lease_answers: &mut Vec<Result<bool, StoreError>>,
    ) -> rusqlite::Result<()> {
        answers.clear();
        lease_answers.clear();
        let began = Instant::now();
        // A group of lease changes alone is committed without an fsync: it
        // is visible to every process at once (the WAL and its index are
        // shared), and only a crash of the machine, which ends every
        // process holding a lease, could lose it; an unexpired lease of a
        // dead process only makes the others wait for its expiry. The next
        // group with events syncs the WAL, these frames with it. SQLite
        // keeps the file consistent either way (a torn tail of the WAL is
        // ignored at recovery). The setting can only change between
        // transactions.
        self.set_syncing(!group.is_empty())?;
        // Cached like the inserts: a group is parsed once per connection,
        // not once per commit.
        self.conn.prepare_cached("BEGIN IMMEDIATE")?.execute([])?;
        let data_version = data_version(&self.conn)?;
        if data_version != self.data_version {
            // Another process committed (or we never looked): cached heads
            // and the next position may be stale.
            self.heads.clear();
            self.next_position = read_head(&self.conn)? + 1;
            self.data_version = data_version;
        }
        if self.heads.len() > HEAD_CACHE_STREAMS_MAX {
            self.heads.clear();
        }
        let recorded_at = Utc::now().timestamp_micros();
        for request in group {
            let answer = match self.write_request(request, recorded_at) {
                Ok(outcome) => Ok(outcome),
                Err(Rejected::Answer(answer)) => answer,
                Err(Rejected::Group(error)) => return Err(error),
            };
            answers.push(answer);
        }
        for lease in leases {
            lease_answers.push(Ok(self.write_lease(&lease.change)?));
        }
        let committing = Instant::now();
        self.conn.prepare_cached("COMMIT")?.execute([])?;
        let committed = Instant::now();
        let micros = |duration: Duration| u64::try_from(duration.as_micros()).unwrap_or(u64::MAX);
        self.counters
            .write_micros
            .fetch_add(micros(committing - began), Ordering::Relaxed);
        self.counters
            .commit_micros
            .fetch_add(micros(committed - committing), Ordering::Relaxed);
        Ok(())
    }

    /// Changes one step lease inside the open transaction; whether the
    /// lease is the caller's now.
    fn write_lease(&self, change: &LeaseChange) -> rusqlite::Result<bool> {
        match change {
            LeaseChange::Acquire {
                stream,
                owner,
                now_micros,
                until_micros,
            } => {
                // One statement: take a free or expired lease, or renew our own.
                let changed = self
                    .conn
                    .prepare_cached(
                        "INSERT INTO step_leases (stream, owner, expires_at_micros) \
                         VALUES (?1, ?2, ?3) ON CONFLICT (stream) DO UPDATE \
                         SET owner = excluded.owner, expires_at_micros = excluded.expires_at_micros \
                         WHERE step_leases.expires_at_micros <= ?4 \
                         OR step_leases.owner = excluded.owner",
                    )?
                    .execute(params![stream, owner, until_micros, now_micros])?;
                Ok(changed == 1)
            }
            LeaseChange::Release { stream, owner } => {
                self.conn
                    .prepare_cached("DELETE FROM step_leases WHERE stream = ?1 AND owner = ?2")?
                    .execute(params![stream, owner])?;
                Ok(true)
            }
        }
    }

    /// Checks and inserts one request inside the open transaction.
    fn write_request(
        &mut self,
        request: &WriteRequest,
        recorded_at: i64,
    ) -> Result<AppendOutcome, Rejected> {
        let stream = request.stream.as_str();
        let expected = request.expected;
        if let Err(invalid) = check_batch(stream, &request.events) {
            return Err(Rejected::Answer(Err(invalid)));
        }
        let head = if let Some(head) = self.heads.get(stream) {
            Some(*head)
        } else {
            let head = stream_head(&self.conn, stream)?;
            if let Some(head) = head {
                self.heads.insert(stream.to_owned(), head);
            }
            head
        };
        if ExpectedVersion::after(head.map(|head| head.version)) != expected {
            return Err(self.resolve_rejection(request));
        }

        let first_position = self.next_position;
        let first_version = expected.next_version();
        let mut previous_hash = match head {
            None => GENESIS,
            Some(StreamHead {
                hash: Some(hash), ..
            }) => hash,
            Some(StreamHead { hash: None, .. }) => {
                return Err(Rejected::Answer(Err(StoreError::Corrupt(format!(
                    "{}: the last event of stream {stream} has no valid chain hash",
                    self.path.display()
                )))));
            }
        };
        let (stream_id, created) = if let Some(head) = head {
            (head.id, false)
        } else {
            let mut insert = self
                .conn
                .prepare_cached("INSERT INTO streams (name) VALUES (?1)")?;
            match insert.execute([stream]) {
                Ok(_) => (self.conn.last_insert_rowid(), true),
                // This program writes a stream row only with its first
                // event, so a row without events is not its doing.
                Err(error) if error.sqlite_error_code() == Some(ErrorCode::ConstraintViolation) => {
                    return Err(Rejected::Answer(Err(StoreError::Corrupt(format!(
                        "{}: stream {stream} is registered but has no event",
                        self.path.display()
                    )))));
                }
                Err(error) => return Err(Rejected::Group(error)),
            }
        };
        let inserted = {
            let mut insert = self.conn.prepare_cached(INSERT_EVENT)?;
            let mut result = Ok(());
            for ((position, version), event) in
                (first_position..).zip(first_version..).zip(&request.events)
            {
                let hash = link_new(&previous_hash, stream, version, event);
                result = insert
                    .execute(params![
                        to_sql_int(position),
                        stream_id,
                        to_sql_int(version),
                        event.event_id.as_bytes().as_slice(),
                        event.event_type,
                        event.schema_version,
                        event.data,
                        recorded_at,
                        previous_hash.as_slice(),
                        hash.as_slice(),
                    ])
                    .map(|_| ());
                previous_hash = hash;
                if result.is_err() {
                    break;
                }
            }
            result
        };
        match inserted {
            Ok(()) => {
                let count = request.events.len() as u64;
                let last_version = first_version + count - 1;
                self.next_position += count;
                let head = StreamHead {
                    id: stream_id,
                    version: last_version,
                    hash: Some(previous_hash),
                };
                match self.heads.get_mut(stream) {
                    Some(cached) => *cached = head,
                    None => {
                        self.heads.insert(stream.to_owned(), head);
                    }
                }
                Ok(AppendOutcome {
                    last_version,
                    last_position: self.next_position - 1,
                })
            }
            Err(error) if error.sqlite_error_code() == Some(ErrorCode::ConstraintViolation) => {
                // Undo this request's rows (a batch lands whole or not at
                // all); its positions are reused by the next request.
                self.conn.execute(
                    "DELETE FROM events WHERE position >= ?1",
                    [to_sql_int(first_position)],
                )?;
                if created {
                    self.conn
                        .execute("DELETE FROM streams WHERE id = ?1", [stream_id])?;
                }
                self.heads.remove(stream);
                Err(self.resolve_rejection(request))
            }
            Err(error) => Err(Rejected::Group(error)),
        }
    }

    /// The answer for a request that cannot be written as asked: the
    /// original outcome of a retry, `InvalidAppend` for reused ids, or
    /// `Conflict` with the stream's version read from the transaction.
    fn resolve_rejection(&mut self, request: &WriteRequest) -> Rejected {
        match self.rejection(request) {
            Ok(answer) => Rejected::Answer(answer),
            Err(error) => Rejected::Group(error),
        }
    }

    fn rejection(
        &mut self,
        request: &WriteRequest,
    ) -> rusqlite::Result<Result<AppendOutcome, StoreError>> {
        let mut found = Vec::with_capacity(request.events.len());
        {
            let mut lookup = self.conn.prepare_cached(
                "SELECT s.name, e.version, e.position FROM events e CROSS JOIN streams s \
                 ON s.id = e.stream_id WHERE e.event_id = ?1",
            )?;
            for event in &request.events {
                let row = lookup
                    .query_row([event.event_id.as_bytes().as_slice()], |row| {
                        Ok((
                            row.get::<_, String>(0)?,
                            row.get::<_, i64>(1)?,
                            row.get::<_, i64>(2)?,
                        ))
                    })
                    .optional()?;
                found.push(row);
            }
        }
        if found.iter().any(Option::is_some) {
            let stored: Vec<Option<StoredId<'_>>> = found
                .iter()
                .map(|row| {
                    row.as_ref().map(|(stream, version, position)| StoredId {
                        stream,
                        version: from_sql_int(*version),
                        position: from_sql_int(*position),
                    })
                })
                .collect();
            return Ok(retry_outcome(&request.stream, request.expected, &stored));
        }
        // Re-read rather than trust the cache: this is the answer the caller
        // will reload from.
        let head = stream_head(&self.conn, &request.stream)?;
        match head {
            Some(head) => {
                self.heads.insert(request.stream.clone(), head);
            }
            None => {
                self.heads.remove(&request.stream);
            }
        }
        Ok(Err(StoreError::Conflict {
            stream: request.stream.clone(),
            expected: request.expected,
            actual: head.map(|head| head.version),
        }))
    }
}

/// A rusqlite error shared by every request of a failed group.
#[derive(Debug)]
struct SharedError(Arc<rusqlite::Error>);

impl std::fmt::Display for SharedError {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(formatter, "group commit failed: {}", self.0)
    }
}

impl std::error::Error for SharedError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(self.0.as_ref())
    }
}

/// How the writer and the checkpointer thread talk.
#[derive(Debug, Default)]
struct CheckpointSignal {
    state: Mutex<CheckpointState>,
    wake: Condvar,
    /// Set by the checkpointer when the WAL's pages make more than
    /// `WAL_BYTES_WRITER_CHECKPOINT` bytes; read by the writer after each
    /// group (an atomic, so that the hot path takes no lock for it).
    writer_should: AtomicBool,
}

#[derive(Debug, Default)]
struct CheckpointState {
    /// Commits since the checkpointer last looked.
    pending: bool,
    stopped: bool,
}

impl CheckpointSignal {
    fn committed(&self) {
        let mut state = self.state.lock().expect("checkpoint lock poisoned");
        if !state.pending {
            state.pending = true;
            self.wake.notify_one();
        }
    }

    fn stop(&self) {
        self.state.lock().expect("checkpoint lock poisoned").stopped = true;
        self.wake.notify_one();
    }

    fn writer_should_checkpoint(&self) -> bool {
        self.writer_should.load(Ordering::Relaxed)
    }

    fn writer_checkpointed(&self) {
        self.writer_should.store(false, Ordering::Relaxed);
    }

    /// Sleeps for `pause`, or less if the store is closing.
    fn rest(&self, pause: Duration) {
        let state = self.state.lock().expect("checkpoint lock poisoned");
        let _ = self
            .wake
            .wait_timeout_while(state, pause, |state| !state.stopped)
            .expect("checkpoint lock poisoned");
    }

    /// Waits for commits to copy; `false` once the store is closing.
    fn wait_for_commits(&self) -> bool {
        let mut state = self.state.lock().expect("checkpoint lock poisoned");
        while !state.pending && !state.stopped {
            state = self.wake.wait(state).expect("checkpoint lock poisoned");
        }
        state.pending = false;
        !state.stopped
    }
}

/// The checkpointer thread: after commits, copies the WAL into the file
/// with passive checkpoints, at most once per `CHECKPOINT_INTERVAL_MS`.
/// The writer's own connection checkpoints everything when it closes.
fn run_checkpointer(path: &Path, conn: &Connection, signal: &CheckpointSignal) {
    // Ledgers made before ADR 0008 have 1 KiB pages, newer ones 4 KiB.
    let page_size: i64 = conn
        .pragma_query_value(None, "page_size", |row| row.get(0))
        .unwrap_or(i64::from(PAGE_SIZE_BYTES));
    let frames_max = WAL_BYTES_WRITER_CHECKPOINT / page_size.max(512);
    while signal.wait_for_commits() {
        match passive_checkpoint(conn) {
            Ok(Some(frames)) => {
                if frames > frames_max {
                    signal.writer_should.store(true, Ordering::Relaxed);
                }
            }
            Ok(None) => {}
            Err(error) => {
                tracing::warn!(path = %path.display(), %error, "SQLite checkpoint failed");
            }
        }
        signal.rest(Duration::from_millis(CHECKPOINT_INTERVAL_MS));
    }
}

/// Runs a PASSIVE checkpoint: it copies what it can without waiting for
/// any lock. Returns the WAL's frame count, `None` when another checkpoint
/// was running.
fn passive_checkpoint(conn: &Connection) -> rusqlite::Result<Option<i64>> {
    let (busy, frames): (i64, i64) =
        conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |row| {
            Ok((row.get(0)?, row.get(1)?))
        })?;
    Ok((busy == 0).then_some(frames))
}

/// The checkpointer's connection, opened once the writer has checked (or
/// created) the file. It never writes rows, and never checkpoints on close:
/// the writer does that last.
fn open_checkpointer(path: &Path) -> Result<Connection, StoreError> {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn =
        Connection::open_with_flags(path, flags).map_err(|error| sqlite_error(path, error))?;
    let configure = || -> rusqlite::Result<()> {
        conn.busy_timeout(Duration::from_millis(BUSY_TIMEOUT_MS))?;
        conn.set_db_config(DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, true)?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "wal_autocheckpoint", 0)?;
        conn.pragma_update(None, "cache_size", -CACHE_SIZE_KIB / 4)
    };
    configure().map_err(|error| sqlite_error(path, error))?;
    Ok(conn)
}

/// Opens (creating if needed) the write connection, after checking that the
/// file is a paycode store or a new one. Nothing is written to a file that
/// fails the check.
fn open_writer(path: &Path) -> Result<Connection, StoreError> {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
        | OpenFlags::SQLITE_OPEN_CREATE
        | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn =
        Connection::open_with_flags(path, flags).map_err(|error| sqlite_error(path, error))?;
    conn.busy_timeout(Duration::from_millis(BUSY_TIMEOUT_MS))
        .map_err(|error| sqlite_error(path, error))?;

    // Inspect first, unable to write: no statement may change the file, and
    // closing the connection must not checkpoint a foreign WAL into it.
    let guard = |on: bool| -> rusqlite::Result<()> {
        conn.set_db_config(DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, on)?;
        conn.pragma_update(None, "query_only", on)
    };
    guard(true).map_err(|error| sqlite_error(path, error))?;
    let application_id: i32 = conn
        .pragma_query_value(None, "application_id", |row| row.get(0))
        .map_err(|error| sqlite_error(path, error))?;
    let objects: i64 = conn
        .query_row("SELECT count(*) FROM sqlite_schema", [], |row| row.get(0))
        .map_err(|error| sqlite_error(path, error))?;
    let fresh = application_id == 0 && objects == 0;
    let mut schema = SCHEMA_VERSION;
    if !fresh {
        if application_id != APPLICATION_ID {
            return Err(StoreError::Corrupt(format!(
                "{} is not a paycode event store (SQLite application id {application_id:#x}, \
                 expected {APPLICATION_ID:#x}); refusing to use or modify it",
                path.display()
            )));
        }
        schema = check_meta(&conn, path)?;
    }
    guard(false).map_err(|error| sqlite_error(path, error))?;

    let configure = || -> rusqlite::Result<()> {
        if fresh {
            // Only settable before the first table exists.
            conn.pragma_update(None, "page_size", PAGE_SIZE_BYTES)?;
        }
        let mode: String =
            conn.pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(rusqlite::Error::InvalidParameterName(format!(
                "journal_mode stayed {mode}"
            )));
        }
        conn.pragma_update(None, "synchronous", "FULL")?;
        // The checkpointer thread does it (see `CHECKPOINT_INTERVAL_MS`).
        conn.pragma_update(None, "wal_autocheckpoint", 0)?;
        conn.pragma_update(None, "journal_size_limit", JOURNAL_SIZE_LIMIT_BYTES)?;
        conn.pragma_update(None, "cache_size", -CACHE_SIZE_KIB)?;
        conn.pragma_update(None, "temp_store", "MEMORY")?;
        if fresh {
            conn.execute_batch("BEGIN IMMEDIATE")?;
            conn.execute_batch(SCHEMA)?;
            conn.execute(
                "INSERT INTO meta (key, value) VALUES ('format', ?1), ('schema_version', ?2)",
                params![FORMAT_NAME, SCHEMA_VERSION.to_string()],
            )?;
            conn.pragma_update(None, "application_id", APPLICATION_ID)?;
            conn.pragma_update(None, "user_version", SCHEMA_VERSION)?;
            conn.execute_batch("COMMIT")?;
        }
        Ok(())
    };
    configure().map_err(|error| sqlite_error(path, error))?;
    if !fresh {
        let page_size: u32 = conn
            .pragma_query_value(None, "page_size", |row| row.get(0))
            .map_err(|error| sqlite_error(path, error))?;
        if page_size != PAGE_SIZE_BYTES {
            tracing::info!(
                path = %path.display(),
                page_size,
                "the ledger has pages of {page_size} bytes, from before ADR 0008; it works as it \
                 is, and `paycode migrate --to sqlite` (service stopped) rewrites it with pages of \
                 {PAGE_SIZE_BYTES} bytes, which append faster"
            );
        }
    }
    if schema == SCHEMA_VERSION_UNCHAINED {
        let chained = upgrade_to_chained(&conn).map_err(|error| {
            if !conn.is_autocommit() {
                // Nothing of the upgrade is kept: the file stays schema 1.
                let _ = conn.execute_batch("ROLLBACK");
            }
            sqlite_error(path, error)
        })?;
        tracing::info!(
            path = %path.display(),
            events = chained,
            "upgraded the event store to schema {SCHEMA_VERSION}: chained the events it held"
        );
    }
    conn.set_prepared_statement_cache_capacity(16);
    Ok(conn)
}

/// Checks the `meta` table of a file that carries our application id and
/// returns its schema: `SCHEMA_VERSION`, or `SCHEMA_VERSION_UNCHAINED` to upgrade.
fn check_meta(conn: &Connection, path: &Path) -> Result<u32, StoreError> {
    let value = |key: &str| -> Result<Option<String>, StoreError> {
        conn.query_row("SELECT value FROM meta WHERE key = ?1", [key], |row| {
            row.get(0)
        })
        .optional()
        .map_err(|error| {
            StoreError::Corrupt(format!(
                "{} carries the paycode application id but its meta table is unreadable: {error}",
                path.display()
            ))
        })
    };
    let format = value("format")?;
    if format.as_deref() != Some(FORMAT_NAME) {
        return Err(StoreError::Corrupt(format!(
            "{} is not a paycode event store (meta format {format:?})",
            path.display()
        )));
    }
    let schema = value("schema_version")?;
    match schema
        .as_deref()
        .and_then(|schema| schema.parse::<u32>().ok())
    {
        Some(known @ (SCHEMA_VERSION | SCHEMA_VERSION_UNCHAINED)) => Ok(known),
        _ => Err(StoreError::Corrupt(format!(
            "{} has event store schema {schema:?}, this program reads only schema \
             {SCHEMA_VERSION} (and upgrades schema {SCHEMA_VERSION_UNCHAINED})",
            path.display()
        ))),
    }
}

/// Checks that a file opened read-only is a paycode store of the current
/// schema: an empty file, a foreign one and one still needing its upgrade
/// are refused, naming why.
fn check_readable(conn: &Connection, path: &Path) -> Result<(), StoreError> {
    let application_id: i32 = conn
        .pragma_query_value(None, "application_id", |row| row.get(0))
        .map_err(|error| sqlite_error(path, error))?;
    if application_id != APPLICATION_ID {
        return Err(StoreError::Corrupt(format!(
            "{} is not a paycode event store (SQLite application id {application_id:#x}, \
             expected {APPLICATION_ID:#x})",
            path.display()
        )));
    }
    match check_meta(conn, path)? {
        SCHEMA_VERSION => Ok(()),
        _ => Err(StoreError::Corrupt(format!(
            "{} has event store schema {SCHEMA_VERSION_UNCHAINED}, from before the hash \
             chain: it is upgraded (and chained) the first time `paycode serve` opens it; \
             a read-only open cannot do that",
            path.display()
        ))),
    }
}

/// A file that cannot be opened without writing, as a store error.
fn read_only_error(error: ReadOnlyError) -> StoreError {
    match error {
        ReadOnlyError::Sqlite { path, source } => sqlite_error(&path, source),
        other => StoreError::Unavailable(Box::new(other)),
    }
}

/// Upgrades a schema 1 file in place, in one transaction: adds the link
/// columns, chains every stream's events in version order, and records
/// schema 2. The events a file held before its upgrade are vouched for by
/// the upgrade, not by their append (ADR 0004). Returns the events chained.
/// Rows written afterwards by a program that predates the chain get empty
/// links (the columns' default) and read as `Corrupt`, never as valid.
fn upgrade_to_chained(conn: &Connection) -> rusqlite::Result<u64> {
    /// One event of a schema 1 file, as the upgrade reads it.
    struct UnchainedRow {
        stream_id: i64,
        version: i64,
        position: i64,
        stream: String,
        event_id: Vec<u8>,
        event_type: String,
        schema_version: i64,
        data: Vec<u8>,
    }

    conn.execute_batch("BEGIN IMMEDIATE")?;
    // Another process may have upgraded the file since we looked.
    let schema: String = conn.query_row(
        "SELECT value FROM meta WHERE key = 'schema_version'",
        [],
        |row| row.get(0),
    )?;
    if schema != SCHEMA_VERSION_UNCHAINED.to_string() {
        conn.execute_batch("COMMIT")?;
        return Ok(0);
    }
    conn.execute_batch(
        "ALTER TABLE events ADD COLUMN previous_hash BLOB NOT NULL DEFAULT x'';
         ALTER TABLE events ADD COLUMN hash BLOB NOT NULL DEFAULT x'';",
    )?;
    let mut chained = 0u64;
    // Keyset pages in (stream_id, version) order: each stream's events are
    // consecutive, so one running hash per page boundary is enough.
    let mut after: (i64, i64) = (i64::MIN, i64::MIN);
    let mut previous: (i64, ChainHash) = (i64::MIN, GENESIS);
    loop {
        let page: Vec<UnchainedRow> = {
            let mut select = conn.prepare_cached(
                "SELECT e.stream_id, e.version, e.position, s.name, e.event_id, e.event_type, \
                 e.schema_version, e.data FROM events e CROSS JOIN streams s \
                 ON s.id = e.stream_id WHERE (e.stream_id, e.version) > (?1, ?2) \
                 ORDER BY e.stream_id, e.version LIMIT ?3",
            )?;
            let rows = select.query_map(params![after.0, after.1, UPGRADE_PAGE_EVENTS], |row| {
                Ok(UnchainedRow {
                    stream_id: row.get(0)?,
                    version: row.get(1)?,
                    position: row.get(2)?,
                    stream: row.get(3)?,
                    event_id: row.get(4)?,
                    event_type: row.get(5)?,
                    schema_version: row.get(6)?,
                    data: row.get(7)?,
                })
            })?;
            rows.collect::<rusqlite::Result<_>>()?
        };
        let Some(last) = page.last() else { break };
        after = (last.stream_id, last.version);
        let mut update = conn.prepare_cached(
            "UPDATE events SET previous_hash = ?1, hash = ?2 WHERE position = ?3",
        )?;
        for row in &page {
            let event_id = Uuid::from_slice(&row.event_id).map_err(|_| {
                rusqlite::Error::FromSqlConversionFailure(
                    4,
                    rusqlite::types::Type::Blob,
                    format!(
                        "event at position {}: event id is not 16 bytes",
                        row.position
                    )
                    .into(),
                )
            })?;
            let previous_hash = if previous.0 == row.stream_id {
                previous.1
            } else {
                GENESIS
            };
            let hash = chain_hash(
                &previous_hash,
                &row.stream,
                from_sql_int(row.version),
                event_id,
                &row.event_type,
                u32::try_from(row.schema_version).unwrap_or(u32::MAX),
                &row.data,
            );
            update.execute(params![
                previous_hash.as_slice(),
                hash.as_slice(),
                row.position
            ])?;
            previous = (row.stream_id, hash);
            chained += 1;
        }
    }
    conn.execute(
        "UPDATE meta SET value = ?1 WHERE key = 'schema_version'",
        [SCHEMA_VERSION.to_string()],
    )?;
    conn.pragma_update(None, "user_version", SCHEMA_VERSION)?;
    conn.execute_batch("COMMIT")?;
    Ok(chained)
}

fn open_reader(path: &Path) -> Result<Connection, StoreError> {
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn =
        Connection::open_with_flags(path, flags).map_err(|error| sqlite_error(path, error))?;
    conn.busy_timeout(Duration::from_millis(BUSY_TIMEOUT_MS))
        .map_err(|error| sqlite_error(path, error))?;
    conn.pragma_update(None, "cache_size", -CACHE_SIZE_KIB / 4)
        .map_err(|error| sqlite_error(path, error))?;
    // Explicitly: a build of SQLite may map by default.
    conn.pragma_update(None, "mmap_size", 0)
        .map_err(|error| sqlite_error(path, error))?;
    Ok(conn)
}

fn read_head(conn: &Connection) -> rusqlite::Result<u64> {
    let head: Option<i64> =
        conn.query_row("SELECT max(position) FROM events", [], |row| row.get(0))?;
    Ok(head.map_or(0, from_sql_int))
}

/// A stream's id, last version and last hash, `None` when it has no event.
fn stream_head(conn: &Connection, stream: &str) -> rusqlite::Result<Option<StreamHead>> {
    // CROSS JOIN fixes the loop order: the stream by name, then its last
    // event by the (stream_id, version) index.
    let mut statement = conn.prepare_cached(
        "SELECT s.id, e.version, e.hash FROM streams s CROSS JOIN events e \
         ON e.stream_id = s.id WHERE s.name = ?1 ORDER BY e.version DESC LIMIT 1",
    )?;
    let row: Option<(i64, i64, Vec<u8>)> = statement
        .query_row([stream], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))
        .optional()?;
    Ok(row.map(|(id, version, hash)| StreamHead {
        id,
        version: from_sql_int(version),
        hash: ChainHash::try_from(hash.as_slice()).ok(),
    }))
}

fn data_version(conn: &Connection) -> rusqlite::Result<i64> {
    conn.prepare_cached("PRAGMA data_version")?
        .query_row([], |row| row.get(0))
}

/// Positions and versions are stored as SQLite integers (i64). Neither can
/// reach 2^63 (that is 9e18 events), so the conversion saturates only in theory.
fn to_sql_int(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// The inverse of `to_sql_int`; this program never writes a negative value.
fn from_sql_int(value: i64) -> u64 {
    u64::try_from(value).unwrap_or(0)
}

/// Translates a rusqlite error met while opening or reading `path`.
fn sqlite_error(path: &Path, error: rusqlite::Error) -> StoreError {
    match error.sqlite_error_code() {
        Some(ErrorCode::NotADatabase | ErrorCode::DatabaseCorrupt) => StoreError::Corrupt(format!(
            "{} is not a usable paycode event store: {error}",
            path.display()
        )),
        _ => StoreError::Unavailable(Box::new(error)),
    }
}

fn unavailable(error: rusqlite::Error) -> StoreError {
    match error.sqlite_error_code() {
        Some(ErrorCode::NotADatabase | ErrorCode::DatabaseCorrupt) => {
            StoreError::Corrupt(error.to_string())
        }
        _ => StoreError::Unavailable(Box::new(error)),
    }
}

/// A row as SQLite returns it, decoded outside the rusqlite callback so that
/// bad values become `Corrupt` rather than a type error.
struct RawRow {
    position: i64,
    stream: String,
    version: i64,
    /// `None` when the stored blob is not 16 bytes (reported as corrupt).
    event_id: Option<[u8; 16]>,
    event_type: String,
    schema_version: i64,
    data: Vec<u8>,
    recorded_at: i64,
    /// `None` when the stored blob is not 32 bytes (reported as corrupt).
    previous_hash: Option<ChainHash>,
    hash: Option<ChainHash>,
}

/// A fixed-size blob column, read in place rather than through a `Vec`
/// (replay reads millions of rows): `None` for any other size or type.
fn fixed_blob<const N: usize>(
    row: &rusqlite::Row<'_>,
    index: usize,
) -> rusqlite::Result<Option<[u8; N]>> {
    Ok(match row.get_ref(index)? {
        ValueRef::Blob(bytes) => bytes.try_into().ok(),
        _ => None,
    })
}

fn raw_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<RawRow> {
    Ok(RawRow {
        position: row.get(0)?,
        stream: row.get(1)?,
        version: row.get(2)?,
        event_id: fixed_blob(row, 3)?,
        event_type: row.get(4)?,
        schema_version: row.get(5)?,
        data: row.get(6)?,
        recorded_at: row.get(7)?,
        previous_hash: fixed_blob(row, 8)?,
        hash: fixed_blob(row, 9)?,
    })
}

impl RawRow {
    fn into_recorded(self) -> Result<RecordedEvent, StoreError> {
        let corrupt = |what: &str| {
            StoreError::Corrupt(format!("event at position {}: {what}", self.position))
        };
        let event_id = Uuid::from_bytes(
            self.event_id
                .ok_or_else(|| corrupt("event id is not 16 bytes"))?,
        );
        let position = u64::try_from(self.position).map_err(|_| corrupt("negative position"))?;
        let version = u64::try_from(self.version).map_err(|_| corrupt("negative version"))?;
        let schema_version = u32::try_from(self.schema_version)
            .map_err(|_| corrupt("schema version out of range"))?;
        let recorded_at: DateTime<Utc> = DateTime::from_timestamp_micros(self.recorded_at)
            .ok_or_else(|| corrupt("recorded_at out of range"))?;
        let previous_hash = self
            .previous_hash
            .ok_or_else(|| corrupt("previous_hash is not 32 bytes"))?;
        let hash = self.hash.ok_or_else(|| corrupt("hash is not 32 bytes"))?;
        Ok(RecordedEvent {
            stream: self.stream,
            version,
            position,
            event_id,
            event_type: self.event_type,
            schema_version,
            data: self.data,
            recorded_at,
            previous_hash,
            hash,
        })
    }
}
