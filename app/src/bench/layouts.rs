//! `paycode bench layouts`: candidate on-disk layouts of the event store,
//! measured side by side under one workload, so that the choice of a layout
//! rests on figures (ADR 0002 and 0007 found the store's one row per event
//! spending most of its writer's time committing pages). A measuring
//! prototype: the product's store (`adapters/src/store`) is not changed.
//!
//! The workload is `bench append`'s without the runtime: one thread, no
//! tokio, to measure the writer alone. `--events` events of the same ~300
//! byte payloads and lifecycle types, `--events-per-stream` to each stream,
//! the streams of `--tasks` appenders interleaved round-robin (each task's
//! events in order, its streams named as `append_task` names them), with
//! time-ordered (v7) ids. They are committed in groups of `--group-events`
//! (the average group `bench append` measures), each group durable before
//! the next, as the store's writer answers only after its commit. Every
//! event gets its chain link (`chain::link_new`) from its stream's head,
//! cached as the store's writer caches it, inside the timed writes.
//!
//! The layouts, each in a fresh temporary directory:
//!
//! - `rows-1k`, `rows-4k`: the store's schema (one row per event, unique
//!   `(stream_id, version)` and `event_id` indexes) at 1 KiB and 4 KiB
//!   pages, WAL, `synchronous=FULL`, one `BEGIN IMMEDIATE`..`COMMIT` per
//!   group.
//! - `groups-4k`: one row per commit group holding its events in a binary
//!   framing, beside lean integer indexes in `WITHOUT ROWID` tables
//!   (`(stream_id, version) -> position`, `event_id -> position`), 4 KiB
//!   pages, WAL, `synchronous=FULL`.
//! - `log`: a segment file of paycode's own, one `write` and one
//!   `fdatasync` per group (each event a frame: length, CRC32, position,
//!   the same encoding), and its index in SQLite (`(stream_id, version) ->
//!   offset`, `event_id -> position`, and the log offset it covers),
//!   committed once per group with `synchronous=OFF`: durability is the
//!   log's. After a crash the index would be brought back from the log: the
//!   frames past the offset it covers read and indexed again (stopping at
//!   the first torn frame, where the log would be truncated), or, if the
//!   index file itself was damaged, all of it rebuilt from the log. That
//!   recovery is not written here.
//! - `log-batched`: the same log, its index rows held in memory and
//!   written to SQLite once per `LOG_BATCHED_INDEX_GROUPS` groups, sorted,
//!   in one transaction: the index off the commit path, as a store would
//!   keep it with an in-memory map of the streams not yet indexed (and
//!   rebuild it from the log's tail after a crash, as above).
//! - `fjall`: the `fjall` crate, an LSM-tree engine: its journal is the
//!   only write on the commit path (one atomic batch per group,
//!   `fdatasync`ed), its sorted tables are flushed and compacted by its
//!   own threads, and it recovers the journal itself after a crash. Four
//!   keyspaces: events by position (`encode_event`'s bytes), stream ids by
//!   name and names by id, `(stream_id, version) -> position`, and
//!   `event_id -> position`, integer keys big-endian so they sort. Its
//!   memtables are flushed before the reads (untimed), so those read its
//!   tables, as the others read their files.
//! - `redb`: the `redb` crate, a copy-on-write B-tree engine in one file:
//!   the same tables as `fjall`'s, each group one write transaction
//!   committed with its default durability (`Immediate`: durable when the
//!   commit returns).
//!
//! No checkpoint runs while a layout is written (the store runs them on a
//! thread of its own), so the files at the end (WAL included, `-shm` not)
//! hold every byte the writes put on disk: divided by the events, the bytes
//! written per event. Then the WAL is checkpointed, untimed, and two reads
//! are timed through a read-only connection set up as the store's readers
//! are: every event in position order, decoded into the store's `EventRef`
//! (stream names loaded once, by id, inside the timing), and 10,000 streams
//! picked at random, each read by name in version order. Both reads check
//! what they get (positions in order, every event, each stream whole), so
//! the figures are those of layouts that give back what was written; the
//! tests below check it field by field.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;
use chrono::Utc;
use paycode_adapters::store::chain::{self, ChainHash, GENESIS};
use paycode_adapters::store::sqlite::SCHEMA as ROWS_SCHEMA;
use paycode_adapters::store::{EventRef, NewEvent};
use rand::{Rng, SeedableRng};
use rusqlite::{Connection, OpenFlags, params};
use uuid::Uuid;

use super::{BenchArgs, LIFECYCLE, baseline_fsync_rate, payload, round3, service_event_id};

/// The layouts measured, in the order they run and print.
const LAYOUTS: [&str; 7] = [
    "rows-1k",
    "rows-4k",
    "groups-4k",
    "log",
    "log-batched",
    "fjall",
    "redb",
];

/// Groups whose index rows `log-batched` holds in memory before it writes
/// them to its index in one transaction (about 16k events at the default
/// group size).
const LOG_BATCHED_INDEX_GROUPS: u32 = 64;

/// Streams read by name in the second read.
const READ_STREAMS: usize = 10_000;

/// The writer's page cache, as the store's (KiB).
const WRITER_CACHE_KIB: i64 = 16 * 1024;
/// A reader's page cache and memory map, as the store's readers'.
const READER_CACHE_KIB: i64 = 4 * 1024;
const READER_MMAP_BYTES: i64 = 1 << 30;

/// One row per commit group; `body` is its events, each behind its length.
const GROUPS_SCHEMA: &str = "
    CREATE TABLE streams (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE);
    CREATE TABLE groups (first_position INTEGER PRIMARY KEY, body BLOB NOT NULL);
    CREATE TABLE stream_versions (
        stream_id INTEGER NOT NULL,
        version   INTEGER NOT NULL,
        position  INTEGER NOT NULL,
        PRIMARY KEY (stream_id, version)
    ) WITHOUT ROWID;
    CREATE TABLE event_ids (event_id BLOB PRIMARY KEY, position INTEGER NOT NULL) WITHOUT ROWID;
";

/// The log's index; `log_state` is the log offset it covers, where a
/// recovery would start reading the log again.
const LOG_INDEX_SCHEMA: &str = "
    CREATE TABLE streams (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE);
    CREATE TABLE stream_versions (
        stream_id  INTEGER NOT NULL,
        version    INTEGER NOT NULL,
        log_offset INTEGER NOT NULL,
        PRIMARY KEY (stream_id, version)
    ) WITHOUT ROWID;
    CREATE TABLE event_ids (event_id BLOB PRIMARY KEY, position INTEGER NOT NULL) WITHOUT ROWID;
    CREATE TABLE log_state (indexed_end INTEGER NOT NULL);
    INSERT INTO log_state (indexed_end) VALUES (0);
";

/// The store's insert (`INSERT_EVENT`).
const INSERT_EVENT: &str = "INSERT INTO events \
    (position, stream_id, version, event_id, event_type, schema_version, data, recorded_at, \
    previous_hash, hash) \
    VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)";

/// The last line of `bench layouts`' output.
#[derive(Debug, serde::Serialize)]
struct Summary {
    bench: &'static str,
    events: u64,
    layouts: Vec<Figures>,
    baseline_events_per_sec: f64,
}

/// What one layout measured.
#[derive(Debug, serde::Serialize)]
struct Figures {
    name: &'static str,
    write_events_per_sec: f64,
    bytes_per_event: f64,
    read_all_events_per_sec: f64,
    read_stream_per_sec: f64,
}

pub fn run(args: &BenchArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.events > 0, "--events must be at least 1");
    anyhow::ensure!(args.tasks > 0, "--tasks must be at least 1");
    anyhow::ensure!(
        args.events_per_stream > 0,
        "--events-per-stream must be at least 1"
    );
    anyhow::ensure!(args.group_events > 0, "--group-events must be at least 1");
    let chosen = chosen_layouts(&args.layouts)?;
    let workload = Workload::new(args.events, args.tasks, args.events_per_stream);
    println!(
        "bench layouts: {} events on {} streams ({} tasks, {} events per stream), \
         groups of {} events, each made durable before the next",
        args.events,
        workload.streams.len(),
        args.tasks,
        args.events_per_stream,
        args.group_events
    );
    let mut layouts = Vec::with_capacity(chosen.len());
    for name in chosen {
        let dir = temp_dir(args.dir.as_deref())?;
        let figures = measure(name, dir.path(), &workload, args.group_events)?;
        println!(
            "{name:>9}: writes {:>7.0} events/s, {:>6.0} bytes/event on disk; \
             read all {:>8.0} events/s, read stream {:>7.0} streams/s",
            figures.write_events_per_sec,
            figures.bytes_per_event,
            figures.read_all_events_per_sec,
            figures.read_stream_per_sec
        );
        layouts.push(figures);
    }
    let dir = temp_dir(args.dir.as_deref())?;
    let baseline =
        baseline_fsync_rate(&dir.path().join("baseline"), args.events, args.group_events)?;
    println!(
        " baseline: {baseline:.0} events/s, the same payload bytes appended to a plain file \
         and fdatasync'ed every {} events",
        args.group_events
    );
    super::write_summary(&Summary {
        bench: "layouts",
        events: args.events,
        layouts,
        baseline_events_per_sec: baseline.round(),
    })
}

/// The layouts `--layout` names, in their order in `LAYOUTS`; all of them
/// when it names none.
fn chosen_layouts(named: &[String]) -> anyhow::Result<Vec<&'static str>> {
    if let Some(unknown) = named.iter().find(|name| !LAYOUTS.contains(&name.as_str())) {
        anyhow::bail!(
            "--layout: no layout {unknown:?}; the layouts are {}",
            LAYOUTS.join(", ")
        );
    }
    Ok(LAYOUTS
        .into_iter()
        .filter(|layout| named.is_empty() || named.iter().any(|name| name == layout))
        .collect())
}

/// A new temporary directory, inside `--dir` when it is given.
fn temp_dir(inside: Option<&Path>) -> anyhow::Result<tempfile::TempDir> {
    match inside {
        Some(dir) => {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
            tempfile::tempdir_in(dir)
        }
        None => tempfile::tempdir(),
    }
    .context("creating a temporary directory")
}

/// Writes the workload in layout `name` in `dir`, then reads it back, checking it.
fn measure(
    name: &'static str,
    dir: &Path,
    workload: &Workload,
    group_events: u64,
) -> anyhow::Result<Figures> {
    let events = workload.events.len() as u64;
    let mut layout = open(name, dir)?;
    let started = Instant::now();
    write(layout.as_mut(), workload, group_events)?;
    let write_secs = seconds(started.elapsed());
    let bytes = dir_bytes(dir)?;
    layout.settle()?;

    let started = Instant::now();
    let (mut read, mut in_order) = (0, true);
    layout.read_all(&mut |event| {
        read += 1;
        in_order &= event.position == read;
    })?;
    let read_all_secs = seconds(started.elapsed());
    anyhow::ensure!(
        in_order && read == events,
        "{name}: read all gave {read} events of {events}, in order: {in_order}"
    );

    let mut rng = rand::rngs::StdRng::seed_from_u64(0x1a70_u64);
    let picked: Vec<usize> = (0..READ_STREAMS)
        .map(|_| rng.gen_range(0..workload.streams.len()))
        .collect();
    let started = Instant::now();
    for &stream in &picked {
        let (mut read, mut in_order) = (0, true);
        layout.read_stream(&workload.streams[stream], &mut |event| {
            in_order &= event.version == read;
            read += 1;
        })?;
        anyhow::ensure!(
            in_order && read == workload.stream_events[stream],
            "{name}: stream {} gave {read} events of {}, in order: {in_order}",
            workload.streams[stream],
            workload.stream_events[stream]
        );
    }
    let read_stream_secs = seconds(started.elapsed());

    Ok(Figures {
        name,
        write_events_per_sec: (events as f64 / write_secs).round(),
        bytes_per_event: round3(bytes as f64 / events as f64),
        read_all_events_per_sec: (events as f64 / read_all_secs).round(),
        read_stream_per_sec: (READ_STREAMS as f64 / read_stream_secs).round(),
    })
}

fn seconds(elapsed: Duration) -> f64 {
    elapsed.max(Duration::from_micros(1)).as_secs_f64()
}

/// Bytes of the files in `dir` and its folders, but SQLite's `-shm` (shared memory,
/// not the ledger).
fn dir_bytes(dir: &Path) -> anyhow::Result<u64> {
    let mut bytes = 0;
    for entry in std::fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))? {
        let entry = entry?;
        let metadata = entry.metadata()?;
        if metadata.is_dir() {
            bytes += dir_bytes(&entry.path())?;
        } else if !entry.file_name().to_string_lossy().ends_with("-shm") {
            bytes += metadata.len();
        }
    }
    Ok(bytes)
}

/// The events to write, in the order the appenders would hand them over.
#[derive(Debug)]
struct Workload {
    /// Stream names, by index in the order the streams begin.
    streams: Vec<String>,
    /// Events each stream gets.
    stream_events: Vec<u64>,
    events: Vec<Planned>,
}

/// One event of the workload: its stream (an index into `streams`) and version.
#[derive(Debug)]
struct Planned {
    stream: usize,
    version: u64,
    event: NewEvent,
}

impl Workload {
    /// `events` spread over `tasks` as `bench append` spreads them (the first
    /// `events % tasks` do one more), taken round-robin, one from each task
    /// in turn: the order in which appenders waiting for each commit queue.
    fn new(events: u64, tasks: u64, per_stream: u64) -> Workload {
        let tasks = tasks.min(events);
        let share = |task: u64| events / tasks + u64::from(task < events % tasks);
        let mut written = vec![0; tasks as usize];
        let mut current = vec![0; tasks as usize];
        let mut workload = Workload {
            streams: Vec::new(),
            stream_events: Vec::new(),
            events: Vec::with_capacity(events as usize),
        };
        while (workload.events.len() as u64) < events {
            for task in 0..tasks {
                let index = written[task as usize];
                if index == share(task) {
                    continue;
                }
                written[task as usize] += 1;
                let order = index / per_stream;
                let version = index % per_stream;
                if version == 0 {
                    current[task as usize] = workload.streams.len();
                    workload
                        .streams
                        .push(format!("payment-m{:04}-{task:05}{order:07}", task % 97));
                    workload.stream_events.push(0);
                }
                let stream = current[task as usize];
                workload.stream_events[stream] += 1;
                let event_type = LIFECYCLE[(version as usize) % LIFECYCLE.len()];
                workload.events.push(Planned {
                    stream,
                    version,
                    event: NewEvent {
                        event_id: service_event_id(),
                        event_type: event_type.to_owned(),
                        schema_version: 1,
                        data: payload(event_type, task, order, version),
                    },
                });
            }
        }
        workload
    }
}

/// An event as a layout stores it: placed, chained, timed.
#[derive(Debug)]
struct Record<'a> {
    position: u64,
    stream_id: i64,
    version: u64,
    event: &'a NewEvent,
    recorded_at: i64,
    previous_hash: ChainHash,
    hash: ChainHash,
}

/// A stream's head as the writer caches it.
#[derive(Debug, Clone, Copy)]
struct Head {
    id: i64,
    version: u64,
    hash: ChainHash,
}

/// Writes the workload in groups of `group_events`, each committed before
/// the next, chaining every event to its stream's head as the store does.
fn write(layout: &mut dyn Layout, workload: &Workload, group_events: u64) -> anyhow::Result<()> {
    let mut heads: HashMap<&str, Head> = HashMap::new();
    let mut position = 1;
    for group in workload.events.chunks(group_events as usize) {
        layout.begin_group()?;
        let recorded_at = Utc::now().timestamp_micros();
        for planned in group {
            let stream = workload.streams[planned.stream].as_str();
            let (stream_id, previous_hash) = if let Some(head) = heads.get(stream) {
                anyhow::ensure!(head.version + 1 == planned.version, "{stream}: a gap");
                (head.id, head.hash)
            } else {
                anyhow::ensure!(planned.version == 0, "{stream}: no first event");
                (layout.add_stream(stream)?, GENESIS)
            };
            let hash = chain::link_new(&previous_hash, stream, planned.version, &planned.event);
            layout.add_event(&Record {
                position,
                stream_id,
                version: planned.version,
                event: &planned.event,
                recorded_at,
                previous_hash,
                hash,
            })?;
            heads.insert(
                stream,
                Head {
                    id: stream_id,
                    version: planned.version,
                    hash,
                },
            );
            position += 1;
        }
        layout.commit_group()?;
    }
    Ok(())
}

/// One candidate layout: written a group at a time, then read back.
trait Layout {
    /// Opens the transaction of a commit group.
    fn begin_group(&mut self) -> anyhow::Result<()>;
    /// Registers a new stream in the open group; its id.
    fn add_stream(&mut self, name: &str) -> anyhow::Result<i64>;
    fn add_event(&mut self, record: &Record<'_>) -> anyhow::Result<()>;
    /// Makes the group durable.
    fn commit_group(&mut self) -> anyhow::Result<()>;
    /// Ends the writes (untimed): copies the WAL into the file and opens
    /// the reading side.
    fn settle(&mut self) -> anyhow::Result<()>;
    /// Every event, in position order.
    fn read_all(&mut self, each: &mut dyn FnMut(&EventRef<'_>)) -> anyhow::Result<()>;
    /// The events of stream `name`, in version order.
    fn read_stream(
        &mut self,
        name: &str,
        each: &mut dyn FnMut(&EventRef<'_>),
    ) -> anyhow::Result<()>;
}

fn open(name: &str, dir: &Path) -> anyhow::Result<Box<dyn Layout>> {
    Ok(match name {
        "rows-1k" => Box::new(Rows::open(dir, 1024)?),
        "rows-4k" => Box::new(Rows::open(dir, 4096)?),
        "groups-4k" => Box::new(Groups::open(dir)?),
        "log" => Box::new(Log::open(dir, 1)?),
        "log-batched" => Box::new(Log::open(dir, LOG_BATCHED_INDEX_GROUPS)?),
        "fjall" => Box::new(Fjall::open(dir)?),
        "redb" => Box::new(Redb::open(dir)?),
        other => anyhow::bail!("unknown layout {other:?}"),
    })
}

/// A new SQLite file at `path`, WAL, no automatic checkpoint, with `schema`.
fn create_sqlite(
    path: &Path,
    page_size: u32,
    synchronous: &str,
    schema: &str,
) -> anyhow::Result<Connection> {
    let conn = Connection::open(path).with_context(|| format!("creating {}", path.display()))?;
    conn.pragma_update(None, "page_size", page_size)?;
    let mode: String =
        conn.pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))?;
    anyhow::ensure!(
        mode.eq_ignore_ascii_case("wal"),
        "journal_mode stayed {mode}"
    );
    conn.pragma_update(None, "synchronous", synchronous)?;
    conn.pragma_update(None, "wal_autocheckpoint", 0)?;
    conn.pragma_update(None, "cache_size", -WRITER_CACHE_KIB)?;
    conn.pragma_update(None, "temp_store", "MEMORY")?;
    conn.execute_batch(schema)?;
    Ok(conn)
}

/// Copies the WAL into the file and empties it.
fn checkpoint(conn: &Connection) -> anyhow::Result<()> {
    conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
    Ok(())
}

/// A read-only connection set up as the store's readers are.
fn open_reader(path: &Path) -> anyhow::Result<Connection> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .with_context(|| format!("opening {}", path.display()))?;
    conn.pragma_update(None, "cache_size", -READER_CACHE_KIB)?;
    conn.pragma_update(None, "mmap_size", READER_MMAP_BYTES)?;
    Ok(conn)
}

/// The reading side, once `settle` opened it.
fn reading(reader: Option<&Connection>) -> anyhow::Result<&Connection> {
    reader.context("read before the writes were settled")
}

/// Every stream's name, by id (ids are 1, 2, 3, ... in the order streams began).
fn stream_names(conn: &Connection) -> anyhow::Result<Vec<String>> {
    let mut select = conn.prepare_cached("SELECT id, name FROM streams ORDER BY id")?;
    let mut rows = select.query([])?;
    let mut names = Vec::new();
    while let Some(row) = rows.next()? {
        anyhow::ensure!(
            row.get::<_, i64>(0)? == names.len() as i64 + 1,
            "a gap in stream ids"
        );
        names.push(row.get(1)?);
    }
    Ok(names)
}

/// The name of stream `id` in `names` (from `stream_names`).
fn name_of(names: &[String], id: u64) -> anyhow::Result<&str> {
    let index = usize::try_from(id)?.checked_sub(1).context("stream id 0")?;
    names
        .get(index)
        .map(String::as_str)
        .with_context(|| format!("no stream {id}"))
}

/// The id of stream `name`, if it has one.
fn stream_id(conn: &Connection, name: &str) -> anyhow::Result<Option<i64>> {
    let mut select = conn.prepare_cached("SELECT id FROM streams WHERE name = ?1")?;
    let mut rows = select.query([name])?;
    Ok(match rows.next()? {
        Some(row) => Some(row.get(0)?),
        None => None,
    })
}

fn to_sql(value: u64) -> anyhow::Result<i64> {
    Ok(i64::try_from(value)?)
}

fn from_sql(value: i64) -> anyhow::Result<u64> {
    Ok(u64::try_from(value)?)
}

/// The store's layout: one row per event.
#[derive(Debug)]
struct Rows {
    conn: Connection,
    reader: Option<Connection>,
    path: PathBuf,
}

impl Rows {
    fn open(dir: &Path, page_size: u32) -> anyhow::Result<Rows> {
        let path = dir.join("rows.db");
        Ok(Rows {
            conn: create_sqlite(&path, page_size, "FULL", ROWS_SCHEMA)?,
            reader: None,
            path,
        })
    }
}

/// The event of a row whose first columns are `position, version, event_id,
/// event_type, schema_version, data, previous_hash, hash`.
fn event_of_row<'a>(row: &'a rusqlite::Row<'_>, stream: &'a str) -> anyhow::Result<EventRef<'a>> {
    Ok(EventRef {
        stream,
        position: from_sql(row.get_ref(0)?.as_i64()?)?,
        version: from_sql(row.get_ref(1)?.as_i64()?)?,
        event_id: Uuid::from_slice(row.get_ref(2)?.as_blob()?)?,
        event_type: row.get_ref(3)?.as_str()?,
        schema_version: u32::try_from(row.get_ref(4)?.as_i64()?)?,
        data: row.get_ref(5)?.as_blob()?,
        previous_hash: row.get_ref(6)?.as_blob()?.try_into()?,
        hash: row.get_ref(7)?.as_blob()?.try_into()?,
    })
}

impl Layout for Rows {
    fn begin_group(&mut self) -> anyhow::Result<()> {
        self.conn.prepare_cached("BEGIN IMMEDIATE")?.execute([])?;
        Ok(())
    }

    fn add_stream(&mut self, name: &str) -> anyhow::Result<i64> {
        self.conn
            .prepare_cached("INSERT INTO streams (name) VALUES (?1)")?
            .execute([name])?;
        Ok(self.conn.last_insert_rowid())
    }

    fn add_event(&mut self, record: &Record<'_>) -> anyhow::Result<()> {
        self.conn.prepare_cached(INSERT_EVENT)?.execute(params![
            to_sql(record.position)?,
            record.stream_id,
            to_sql(record.version)?,
            record.event.event_id.as_bytes().as_slice(),
            record.event.event_type,
            record.event.schema_version,
            record.event.data,
            record.recorded_at,
            record.previous_hash.as_slice(),
            record.hash.as_slice(),
        ])?;
        Ok(())
    }

    fn commit_group(&mut self) -> anyhow::Result<()> {
        self.conn.prepare_cached("COMMIT")?.execute([])?;
        Ok(())
    }

    fn settle(&mut self) -> anyhow::Result<()> {
        checkpoint(&self.conn)?;
        self.reader = Some(open_reader(&self.path)?);
        Ok(())
    }

    fn read_all(&mut self, each: &mut dyn FnMut(&EventRef<'_>)) -> anyhow::Result<()> {
        let conn = reading(self.reader.as_ref())?;
        let names = stream_names(conn)?;
        let mut select = conn.prepare_cached(
            "SELECT position, version, event_id, event_type, schema_version, data, \
             previous_hash, hash, stream_id FROM events ORDER BY position",
        )?;
        let mut rows = select.query([])?;
        while let Some(row) = rows.next()? {
            let stream = name_of(&names, from_sql(row.get_ref(8)?.as_i64()?)?)?;
            each(&event_of_row(row, stream)?);
        }
        Ok(())
    }

    fn read_stream(
        &mut self,
        name: &str,
        each: &mut dyn FnMut(&EventRef<'_>),
    ) -> anyhow::Result<()> {
        // The store's `read_stream`: the stream by name, then its events.
        let mut select = reading(self.reader.as_ref())?.prepare_cached(
            "SELECT e.position, e.version, e.event_id, e.event_type, e.schema_version, e.data, \
             e.previous_hash, e.hash FROM streams s CROSS JOIN events e \
             ON e.stream_id = s.id WHERE s.name = ?1 ORDER BY e.version",
        )?;
        let mut rows = select.query([name])?;
        while let Some(row) = rows.next()? {
            each(&event_of_row(row, name)?);
        }
        Ok(())
    }
}

/// Appends `record`'s binary encoding to `out`, the one of `groups-4k`'s
/// bodies and of the log's frames (integers little-endian): stream id
/// (u64), version (u64), event id (16 bytes), schema version (u32),
/// recorded_at (i64 µs), previous hash and hash (32 bytes each), then the
/// type and the data, each behind its length (u16, u32).
fn encode_event(out: &mut Vec<u8>, record: &Record<'_>) -> anyhow::Result<()> {
    let event = record.event;
    out.extend_from_slice(&from_sql(record.stream_id)?.to_le_bytes());
    out.extend_from_slice(&record.version.to_le_bytes());
    out.extend_from_slice(event.event_id.as_bytes());
    out.extend_from_slice(&event.schema_version.to_le_bytes());
    out.extend_from_slice(&record.recorded_at.to_le_bytes());
    out.extend_from_slice(&record.previous_hash);
    out.extend_from_slice(&record.hash);
    out.extend_from_slice(&u16::try_from(event.event_type.len())?.to_le_bytes());
    out.extend_from_slice(event.event_type.as_bytes());
    out.extend_from_slice(&u32::try_from(event.data.len())?.to_le_bytes());
    out.extend_from_slice(&event.data);
    Ok(())
}

/// `encode_event`'s bytes of `record`, on their own.
fn encoded(record: &Record<'_>) -> anyhow::Result<Vec<u8>> {
    let mut bytes = Vec::with_capacity(128 + record.event.data.len());
    encode_event(&mut bytes, record)?;
    Ok(bytes)
}

/// Streams new since the index was last written, with the ids the layout
/// gave them (from 1, in the order they came).
#[derive(Debug)]
struct NewStreams {
    next_id: u64,
    added: Vec<(u64, String)>,
}

impl Default for NewStreams {
    fn default() -> Self {
        NewStreams {
            next_id: 1,
            added: Vec::new(),
        }
    }
}

impl NewStreams {
    /// Gives stream `name` the next id and keeps it until the next write.
    fn add(&mut self, name: &str) -> anyhow::Result<i64> {
        let id = self.next_id;
        self.next_id += 1;
        self.added.push((id, name.to_owned()));
        to_sql(id)
    }
}

/// The event `bytes` encodes (exactly, `encode_event`), at `position`;
/// `name_of` names its stream from its id. Borrowed from `bytes`.
fn decode_event<'a>(
    bytes: &'a [u8],
    position: u64,
    name_of: impl FnOnce(u64) -> anyhow::Result<&'a str>,
) -> anyhow::Result<EventRef<'a>> {
    let mut cursor = Cursor(bytes);
    let stream_id = cursor.u64()?;
    let version = cursor.u64()?;
    let event_id = Uuid::from_bytes(cursor.array()?);
    let schema_version = cursor.u32()?;
    // recorded_at: kept, but not an `EventRef`'s (nothing that walks the log needs it).
    cursor.take(8)?;
    let previous_hash = cursor.array()?;
    let hash = cursor.array()?;
    let type_len = u16::from_le_bytes(cursor.array()?);
    let event_type = std::str::from_utf8(cursor.take(type_len.into())?)?;
    let data_len = cursor.u32()?;
    let data = cursor.take(usize::try_from(data_len)?)?;
    anyhow::ensure!(cursor.0.is_empty(), "bytes after the event at {position}");
    Ok(EventRef {
        stream: name_of(stream_id)?,
        version,
        position,
        event_id,
        event_type,
        schema_version,
        data,
        previous_hash,
        hash,
    })
}

/// The event `bytes` encodes at `position`, read as one of stream `name`
/// (id `id`): an error if it is another stream's.
fn decode_own_event<'a>(
    bytes: &'a [u8],
    position: u64,
    name: &'a str,
    id: u64,
) -> anyhow::Result<EventRef<'a>> {
    decode_event(bytes, position, |found| {
        anyhow::ensure!(found == id, "{name}: another stream's event");
        Ok(name)
    })
}

/// Adds stream `name`, id `id`, to the names read in id order (as
/// `name_of` finds them): an error if an id was skipped.
fn push_name(names: &mut Vec<String>, id: u64, name: &str) -> anyhow::Result<()> {
    anyhow::ensure!(id == names.len() as u64 + 1, "a gap in stream ids");
    names.push(name.to_owned());
    Ok(())
}

/// Appends a frame to `out`: the length of what follows (u32), then what
/// `fill` writes.
fn framed(
    out: &mut Vec<u8>,
    fill: impl FnOnce(&mut Vec<u8>) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let start = out.len();
    out.extend_from_slice(&[0; 4]);
    fill(out)?;
    let len = u32::try_from(out.len() - start - 4)?;
    out[start..start + 4].copy_from_slice(&len.to_le_bytes());
    Ok(())
}

/// Reads encoded bytes front to back.
#[derive(Debug)]
struct Cursor<'a>(&'a [u8]);

impl<'a> Cursor<'a> {
    fn take(&mut self, len: usize) -> anyhow::Result<&'a [u8]> {
        anyhow::ensure!(self.0.len() >= len, "encoded bytes end early");
        let (taken, rest) = self.0.split_at(len);
        self.0 = rest;
        Ok(taken)
    }

    fn array<const N: usize>(&mut self) -> anyhow::Result<[u8; N]> {
        Ok(self.take(N)?.try_into()?)
    }

    fn u32(&mut self) -> anyhow::Result<u32> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    fn u64(&mut self) -> anyhow::Result<u64> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    /// The next frame's bytes (after its length).
    fn frame(&mut self) -> anyhow::Result<&'a [u8]> {
        let len = self.u32()?;
        self.take(usize::try_from(len)?)
    }
}

/// One row per commit group, and lean integer indexes to find an event.
#[derive(Debug)]
struct Groups {
    conn: Connection,
    reader: Option<Connection>,
    path: PathBuf,
    /// The open group's events, each framed, and its first position.
    body: Vec<u8>,
    first_position: u64,
}

impl Groups {
    fn open(dir: &Path) -> anyhow::Result<Groups> {
        let path = dir.join("groups.db");
        Ok(Groups {
            conn: create_sqlite(&path, 4096, "FULL", GROUPS_SCHEMA)?,
            reader: None,
            path,
            body: Vec::new(),
            first_position: 0,
        })
    }
}

impl Layout for Groups {
    fn begin_group(&mut self) -> anyhow::Result<()> {
        self.conn.prepare_cached("BEGIN IMMEDIATE")?.execute([])?;
        self.body.clear();
        Ok(())
    }

    fn add_stream(&mut self, name: &str) -> anyhow::Result<i64> {
        self.conn
            .prepare_cached("INSERT INTO streams (name) VALUES (?1)")?
            .execute([name])?;
        Ok(self.conn.last_insert_rowid())
    }

    fn add_event(&mut self, record: &Record<'_>) -> anyhow::Result<()> {
        if self.body.is_empty() {
            self.first_position = record.position;
        }
        framed(&mut self.body, |out| encode_event(out, record))?;
        let position = to_sql(record.position)?;
        self.conn
            .prepare_cached(
                "INSERT INTO stream_versions (stream_id, version, position) VALUES (?1, ?2, ?3)",
            )?
            .execute(params![record.stream_id, to_sql(record.version)?, position])?;
        self.conn
            .prepare_cached("INSERT INTO event_ids (event_id, position) VALUES (?1, ?2)")?
            .execute(params![
                record.event.event_id.as_bytes().as_slice(),
                position
            ])?;
        Ok(())
    }

    fn commit_group(&mut self) -> anyhow::Result<()> {
        self.conn
            .prepare_cached("INSERT INTO groups (first_position, body) VALUES (?1, ?2)")?
            .execute(params![to_sql(self.first_position)?, self.body])?;
        self.conn.prepare_cached("COMMIT")?.execute([])?;
        Ok(())
    }

    fn settle(&mut self) -> anyhow::Result<()> {
        checkpoint(&self.conn)?;
        self.reader = Some(open_reader(&self.path)?);
        Ok(())
    }

    fn read_all(&mut self, each: &mut dyn FnMut(&EventRef<'_>)) -> anyhow::Result<()> {
        let conn = reading(self.reader.as_ref())?;
        let names = stream_names(conn)?;
        let mut select =
            conn.prepare_cached("SELECT first_position, body FROM groups ORDER BY first_position")?;
        let mut rows = select.query([])?;
        while let Some(row) = rows.next()? {
            let mut position = from_sql(row.get_ref(0)?.as_i64()?)?;
            let mut body = Cursor(row.get_ref(1)?.as_blob()?);
            while !body.0.is_empty() {
                each(&decode_event(body.frame()?, position, |id| {
                    name_of(&names, id)
                })?);
                position += 1;
            }
        }
        Ok(())
    }

    fn read_stream(
        &mut self,
        name: &str,
        each: &mut dyn FnMut(&EventRef<'_>),
    ) -> anyhow::Result<()> {
        let conn = reading(self.reader.as_ref())?;
        let Some(id) = stream_id(conn, name)? else {
            return Ok(());
        };
        let mut positions = conn.prepare_cached(
            "SELECT position FROM stream_versions WHERE stream_id = ?1 ORDER BY version",
        )?;
        let mut group = conn.prepare_cached(
            "SELECT first_position, body FROM groups WHERE first_position <= ?1 \
             ORDER BY first_position DESC LIMIT 1",
        )?;
        let mut rows = positions.query([id])?;
        while let Some(row) = rows.next()? {
            let position = row.get_ref(0)?.as_i64()?;
            let mut groups = group.query([position])?;
            let row = groups.next()?.context("an event outside every group")?;
            let mut body = Cursor(row.get_ref(1)?.as_blob()?);
            for _ in row.get_ref(0)?.as_i64()?..position {
                body.frame()?;
            }
            each(&decode_own_event(
                body.frame()?,
                from_sql(position)?,
                name,
                from_sql(id)?,
            )?);
        }
        Ok(())
    }
}

/// Bytes of a log frame before its payload: its length and its CRC32.
const LOG_FRAME_HEAD: usize = 8;

/// A log of paycode's own, `fdatasync`ed per group, and its index in SQLite,
/// written after every `index_every` groups (the rows held in memory until
/// then; ids of new streams are given by the log). Each event is a frame: the payload's length (u32), its CRC32 (u32), and
/// the payload: the event's position (u64), then `encode_event`'s bytes.
#[derive(Debug)]
struct Log {
    /// The log, written at its end and read at the frames' offsets.
    file: File,
    path: PathBuf,
    /// The log's length once the last group was made durable.
    end: u64,
    /// The open group's frames, written in one call at its commit.
    frames: Vec<u8>,
    index: Connection,
    index_path: PathBuf,
    reader: Option<Connection>,
    /// Groups whose index rows are written together (1: each group's
    /// with it).
    index_every: u32,
    /// Groups made durable since the index was last written.
    unindexed_groups: u32,
    /// Index rows of the groups not yet indexed.
    new_streams: NewStreams,
    new_versions: Vec<(i64, u64, u64)>,
    new_ids: Vec<([u8; 16], u64)>,
}

impl Log {
    fn open(dir: &Path, index_every: u32) -> anyhow::Result<Log> {
        let log_path = dir.join("events.log");
        let index_path = dir.join("index.db");
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&log_path)
            .with_context(|| format!("creating {}", log_path.display()))?;
        Ok(Log {
            file,
            path: log_path,
            end: 0,
            frames: Vec::new(),
            index: create_sqlite(&index_path, 4096, "OFF", LOG_INDEX_SCHEMA)?,
            index_path,
            reader: None,
            index_every: index_every.max(1),
            unindexed_groups: 0,
            new_streams: NewStreams::default(),
            new_versions: Vec::new(),
            new_ids: Vec::new(),
        })
    }

    /// Writes the index rows held so far, in key order, in one transaction
    /// (no fsync: the log is what is durable), with the log's length they
    /// cover.
    fn write_index(&mut self) -> anyhow::Result<()> {
        self.new_streams
            .added
            .sort_unstable_by(|a, b| a.1.cmp(&b.1));
        self.new_versions.sort_unstable();
        self.new_ids.sort_unstable();
        let index = &self.index;
        index.prepare_cached("BEGIN IMMEDIATE")?.execute([])?;
        let mut streams = index.prepare_cached("INSERT INTO streams (id, name) VALUES (?1, ?2)")?;
        for (id, name) in &self.new_streams.added {
            streams.execute(params![to_sql(*id)?, name])?;
        }
        let mut versions = index.prepare_cached(
            "INSERT INTO stream_versions (stream_id, version, log_offset) VALUES (?1, ?2, ?3)",
        )?;
        for &(stream_id, version, offset) in &self.new_versions {
            versions.execute(params![stream_id, to_sql(version)?, to_sql(offset)?])?;
        }
        let mut ids =
            index.prepare_cached("INSERT INTO event_ids (event_id, position) VALUES (?1, ?2)")?;
        for (event_id, position) in &self.new_ids {
            ids.execute(params![event_id.as_slice(), to_sql(*position)?])?;
        }
        index
            .prepare_cached("UPDATE log_state SET indexed_end = ?1")?
            .execute([to_sql(self.end)?])?;
        index.prepare_cached("COMMIT")?.execute([])?;
        self.new_streams.added.clear();
        self.new_versions.clear();
        self.new_ids.clear();
        self.unindexed_groups = 0;
        Ok(())
    }

    /// The position and the event's bytes of a frame's payload, once its
    /// CRC32 (`crc`) matches.
    fn payload(crc: u32, payload: &[u8]) -> anyhow::Result<(u64, &[u8])> {
        anyhow::ensure!(crc32fast::hash(payload) == crc, "a log frame fails its CRC");
        let mut cursor = Cursor(payload);
        Ok((cursor.u64()?, cursor.0))
    }
}

impl Layout for Log {
    fn begin_group(&mut self) -> anyhow::Result<()> {
        self.frames.clear();
        Ok(())
    }

    fn add_stream(&mut self, name: &str) -> anyhow::Result<i64> {
        self.new_streams.add(name)
    }

    fn add_event(&mut self, record: &Record<'_>) -> anyhow::Result<()> {
        let offset = self.end + self.frames.len() as u64;
        let start = self.frames.len();
        self.frames.extend_from_slice(&[0; LOG_FRAME_HEAD]);
        self.frames
            .extend_from_slice(&record.position.to_le_bytes());
        encode_event(&mut self.frames, record)?;
        let payload = &self.frames[start + LOG_FRAME_HEAD..];
        let len = u32::try_from(payload.len())?.to_le_bytes();
        let crc = crc32fast::hash(payload).to_le_bytes();
        self.frames[start..start + 4].copy_from_slice(&len);
        self.frames[start + 4..start + LOG_FRAME_HEAD].copy_from_slice(&crc);
        self.new_versions
            .push((record.stream_id, record.version, offset));
        self.new_ids
            .push((*record.event.event_id.as_bytes(), record.position));
        Ok(())
    }

    fn commit_group(&mut self) -> anyhow::Result<()> {
        // Durable in the log first: the index only follows it.
        self.file.write_all(&self.frames)?;
        self.file.sync_data()?;
        self.end += self.frames.len() as u64;
        self.unindexed_groups += 1;
        if self.unindexed_groups >= self.index_every {
            self.write_index()?;
        }
        Ok(())
    }

    fn settle(&mut self) -> anyhow::Result<()> {
        if !self.new_versions.is_empty() {
            self.write_index()?;
        }
        checkpoint(&self.index)?;
        self.reader = Some(open_reader(&self.index_path)?);
        Ok(())
    }

    fn read_all(&mut self, each: &mut dyn FnMut(&EventRef<'_>)) -> anyhow::Result<()> {
        let names = stream_names(reading(self.reader.as_ref())?)?;
        let file =
            File::open(&self.path).with_context(|| format!("opening {}", self.path.display()))?;
        let mut log = BufReader::with_capacity(1 << 20, file);
        let mut frame = Vec::new();
        let mut head = [0; LOG_FRAME_HEAD];
        while !log.fill_buf()?.is_empty() {
            log.read_exact(&mut head)?;
            let mut head = Cursor(&head);
            let (len, crc) = (head.u32()?, head.u32()?);
            frame.resize(usize::try_from(len)?, 0);
            log.read_exact(&mut frame)?;
            let (position, event) = Log::payload(crc, &frame)?;
            each(&decode_event(event, position, |id| name_of(&names, id))?);
        }
        Ok(())
    }

    fn read_stream(
        &mut self,
        name: &str,
        each: &mut dyn FnMut(&EventRef<'_>),
    ) -> anyhow::Result<()> {
        let conn = reading(self.reader.as_ref())?;
        let Some(id) = stream_id(conn, name)? else {
            return Ok(());
        };
        let mut offsets = conn.prepare_cached(
            "SELECT log_offset FROM stream_versions WHERE stream_id = ?1 ORDER BY version",
        )?;
        let mut rows = offsets.query([id])?;
        let mut frame = Vec::new();
        let mut head = [0; LOG_FRAME_HEAD];
        while let Some(row) = rows.next()? {
            let offset = from_sql(row.get_ref(0)?.as_i64()?)?;
            self.file.read_exact_at(&mut head, offset)?;
            let mut head = Cursor(&head);
            let (len, crc) = (head.u32()?, head.u32()?);
            frame.resize(usize::try_from(len)?, 0);
            self.file
                .read_exact_at(&mut frame, offset + LOG_FRAME_HEAD as u64)?;
            let (position, event) = Log::payload(crc, &frame)?;
            each(&decode_own_event(event, position, name, from_sql(id)?)?);
        }
        Ok(())
    }
}

/// The `fjall` engine's keyspace names, in `Fjall`'s field order.
const FJALL_KEYSPACES: [&str; 5] = [
    "events",
    "stream_ids",
    "stream_names",
    "stream_versions",
    "event_ids",
];

/// The cache of the `fjall` engine, as the store's writer's page cache.
const FJALL_CACHE_BYTES: u64 = 16 << 20;

/// The events and their indexes in the `fjall` engine, each group one
/// atomic batch made durable (`fdatasync` of its journal) at its commit.
struct Fjall {
    db: fjall::Database,
    /// Events by position (big-endian), `encode_event`'s bytes.
    events: fjall::Keyspace,
    /// Stream ids (big-endian) by name.
    stream_ids: fjall::Keyspace,
    /// Stream names by id (big-endian).
    stream_names: fjall::Keyspace,
    /// Positions by stream id and version (both big-endian).
    stream_versions: fjall::Keyspace,
    /// Positions by event id.
    event_ids: fjall::Keyspace,
    /// The open group.
    batch: Option<fjall::OwnedWriteBatch>,
    /// The id the next new stream gets.
    next_stream_id: u64,
}

impl Fjall {
    fn open(dir: &Path) -> anyhow::Result<Fjall> {
        let db = fjall::Database::builder(dir.join("fjall"))
            .cache_size(FJALL_CACHE_BYTES)
            .open()
            .context("opening the fjall database")?;
        let [events, stream_ids, stream_names, stream_versions, event_ids] =
            FJALL_KEYSPACES.map(|name| db.keyspace(name, fjall::KeyspaceCreateOptions::default));
        Ok(Fjall {
            events: events?,
            stream_ids: stream_ids?,
            stream_names: stream_names?,
            stream_versions: stream_versions?,
            event_ids: event_ids?,
            db,
            batch: None,
            next_stream_id: 1,
        })
    }

    /// The key of a stream's event: its id, then its version.
    fn version_key(stream_id: u64, version: u64) -> [u8; 16] {
        let mut key = [0; 16];
        key[..8].copy_from_slice(&stream_id.to_be_bytes());
        key[8..].copy_from_slice(&version.to_be_bytes());
        key
    }

    fn u64_of(bytes: &[u8]) -> anyhow::Result<u64> {
        Ok(u64::from_be_bytes(bytes.try_into()?))
    }
}

impl Layout for Fjall {
    fn begin_group(&mut self) -> anyhow::Result<()> {
        self.batch = Some(
            self.db
                .batch()
                .durability(Some(fjall::PersistMode::SyncData)),
        );
        Ok(())
    }

    fn add_stream(&mut self, name: &str) -> anyhow::Result<i64> {
        let id = self.next_stream_id;
        self.next_stream_id += 1;
        let batch = self.batch.as_mut().context("no group is open")?;
        batch.insert(&self.stream_ids, name, id.to_be_bytes().to_vec());
        batch.insert(&self.stream_names, id.to_be_bytes().to_vec(), name);
        to_sql(id)
    }

    fn add_event(&mut self, record: &Record<'_>) -> anyhow::Result<()> {
        let bytes = encoded(record)?;
        let position = record.position.to_be_bytes().to_vec();
        let version_key = Fjall::version_key(from_sql(record.stream_id)?, record.version);
        let batch = self.batch.as_mut().context("no group is open")?;
        batch.insert(&self.events, position.clone(), bytes);
        batch.insert(
            &self.stream_versions,
            version_key.to_vec(),
            position.clone(),
        );
        batch.insert(
            &self.event_ids,
            record.event.event_id.as_bytes().to_vec(),
            position,
        );
        Ok(())
    }

    fn commit_group(&mut self) -> anyhow::Result<()> {
        self.batch
            .take()
            .context("no group is open")?
            .commit()
            .context("committing a group to fjall")?;
        Ok(())
    }

    fn settle(&mut self) -> anyhow::Result<()> {
        for keyspace in [
            &self.events,
            &self.stream_ids,
            &self.stream_names,
            &self.stream_versions,
            &self.event_ids,
        ] {
            keyspace.rotate_memtable_and_wait()?;
        }
        Ok(())
    }

    fn read_all(&mut self, each: &mut dyn FnMut(&EventRef<'_>)) -> anyhow::Result<()> {
        let mut names = Vec::new();
        for entry in self.stream_names.iter() {
            let (id, name) = entry.into_inner()?;
            push_name(&mut names, Fjall::u64_of(&id)?, std::str::from_utf8(&name)?)?;
        }
        for entry in self.events.iter() {
            let (position, bytes) = entry.into_inner()?;
            each(&decode_event(&bytes, Fjall::u64_of(&position)?, |id| {
                name_of(&names, id)
            })?);
        }
        Ok(())
    }

    fn read_stream(
        &mut self,
        name: &str,
        each: &mut dyn FnMut(&EventRef<'_>),
    ) -> anyhow::Result<()> {
        let Some(id) = self.stream_ids.get(name)? else {
            return Ok(());
        };
        let id = Fjall::u64_of(&id)?;
        for entry in self.stream_versions.prefix(id.to_be_bytes()) {
            let position = entry.value()?;
            let bytes = self
                .events
                .get(&position)?
                .context("an indexed event is missing")?;
            each(&decode_own_event(
                &bytes,
                Fjall::u64_of(&position)?,
                name,
                id,
            )?);
        }
        Ok(())
    }
}

/// Events by position, `encode_event`'s bytes.
const REDB_EVENTS: redb::TableDefinition<u64, &[u8]> = redb::TableDefinition::new("events");
/// Stream ids by name.
const REDB_STREAM_IDS: redb::TableDefinition<&str, u64> = redb::TableDefinition::new("stream_ids");
/// Stream names by id.
const REDB_STREAM_NAMES: redb::TableDefinition<u64, &str> =
    redb::TableDefinition::new("stream_names");
/// Positions by stream id and version.
const REDB_STREAM_VERSIONS: redb::TableDefinition<(u64, u64), u64> =
    redb::TableDefinition::new("stream_versions");
/// Positions by event id.
const REDB_EVENT_IDS: redb::TableDefinition<u128, u64> = redb::TableDefinition::new("event_ids");

/// The events and their indexes in the `redb` engine: a group's rows are
/// gathered as it is built, then written in one write transaction, durable
/// when its commit returns.
struct Redb {
    db: redb::Database,
    /// The open group's rows.
    new_streams: NewStreams,
    new_events: Vec<(u64, Vec<u8>)>,
    new_versions: Vec<((u64, u64), u64)>,
    new_ids: Vec<(u128, u64)>,
}

impl Redb {
    fn open(dir: &Path) -> anyhow::Result<Redb> {
        let db = redb::Builder::new()
            .set_cache_size(usize::try_from(WRITER_CACHE_KIB * 1024)?)
            .create(dir.join("events.redb"))
            .context("creating the redb database")?;
        Ok(Redb {
            db,
            new_streams: NewStreams::default(),
            new_events: Vec::new(),
            new_versions: Vec::new(),
            new_ids: Vec::new(),
        })
    }

    /// Writes the open group's rows in one transaction and commits it.
    fn write_group(&self) -> anyhow::Result<()> {
        let txn = self.db.begin_write()?;
        {
            let mut stream_ids = txn.open_table(REDB_STREAM_IDS)?;
            let mut stream_names = txn.open_table(REDB_STREAM_NAMES)?;
            for (id, name) in &self.new_streams.added {
                stream_ids.insert(name.as_str(), id)?;
                stream_names.insert(id, name.as_str())?;
            }
            let mut events = txn.open_table(REDB_EVENTS)?;
            for (position, bytes) in &self.new_events {
                events.insert(position, bytes.as_slice())?;
            }
            let mut versions = txn.open_table(REDB_STREAM_VERSIONS)?;
            for (key, position) in &self.new_versions {
                versions.insert(key, position)?;
            }
            let mut ids = txn.open_table(REDB_EVENT_IDS)?;
            for (id, position) in &self.new_ids {
                ids.insert(id, position)?;
            }
        }
        txn.commit()?;
        Ok(())
    }
}

impl Layout for Redb {
    fn begin_group(&mut self) -> anyhow::Result<()> {
        self.new_streams.added.clear();
        self.new_events.clear();
        self.new_versions.clear();
        self.new_ids.clear();
        Ok(())
    }

    fn add_stream(&mut self, name: &str) -> anyhow::Result<i64> {
        self.new_streams.add(name)
    }

    fn add_event(&mut self, record: &Record<'_>) -> anyhow::Result<()> {
        self.new_events.push((record.position, encoded(record)?));
        self.new_versions.push((
            (from_sql(record.stream_id)?, record.version),
            record.position,
        ));
        self.new_ids
            .push((record.event.event_id.as_u128(), record.position));
        Ok(())
    }

    fn commit_group(&mut self) -> anyhow::Result<()> {
        self.write_group().context("committing a group to redb")
    }

    fn settle(&mut self) -> anyhow::Result<()> {
        Ok(())
    }

    fn read_all(&mut self, each: &mut dyn FnMut(&EventRef<'_>)) -> anyhow::Result<()> {
        use redb::{ReadableDatabase, ReadableTable};
        let txn = self.db.begin_read()?;
        let mut names = Vec::new();
        for entry in txn.open_table(REDB_STREAM_NAMES)?.iter()? {
            let (id, name) = entry?;
            push_name(&mut names, id.value(), name.value())?;
        }
        for entry in txn.open_table(REDB_EVENTS)?.iter()? {
            let (position, bytes) = entry?;
            each(&decode_event(bytes.value(), position.value(), |id| {
                name_of(&names, id)
            })?);
        }
        Ok(())
    }

    fn read_stream(
        &mut self,
        name: &str,
        each: &mut dyn FnMut(&EventRef<'_>),
    ) -> anyhow::Result<()> {
        use redb::{ReadableDatabase, ReadableTable};
        let txn = self.db.begin_read()?;
        let Some(id) = txn
            .open_table(REDB_STREAM_IDS)?
            .get(name)?
            .map(|id| id.value())
        else {
            return Ok(());
        };
        let events = txn.open_table(REDB_EVENTS)?;
        for entry in txn
            .open_table(REDB_STREAM_VERSIONS)?
            .range((id, 0)..=(id, u64::MAX))?
        {
            let position = entry?.1.value();
            let bytes = events
                .get(position)?
                .context("an indexed event is missing")?;
            each(&decode_own_event(bytes.value(), position, name, id)?);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An event as a layout gave it back, owned.
    #[derive(Debug, Clone, PartialEq, Eq)]
    struct Got {
        stream: String,
        version: u64,
        position: u64,
        event_id: Uuid,
        event_type: String,
        schema_version: u32,
        data: Vec<u8>,
        previous_hash: ChainHash,
        hash: ChainHash,
    }

    impl Got {
        fn of(event: &EventRef<'_>) -> Got {
            Got {
                stream: event.stream.to_owned(),
                version: event.version,
                position: event.position,
                event_id: event.event_id,
                event_type: event.event_type.to_owned(),
                schema_version: event.schema_version,
                data: event.data.to_vec(),
                previous_hash: event.previous_hash,
                hash: event.hash,
            }
        }
    }

    /// The workload as every layout must give it back: in its order from
    /// position 1, each event chained to its stream's previous one.
    fn expected(workload: &Workload) -> Vec<Got> {
        let mut heads: HashMap<usize, ChainHash> = HashMap::new();
        (1..)
            .zip(&workload.events)
            .map(|(position, planned)| {
                let stream = &workload.streams[planned.stream];
                let event = &planned.event;
                let previous_hash = heads.get(&planned.stream).copied().unwrap_or(GENESIS);
                let hash = chain::chain_hash(
                    &previous_hash,
                    stream,
                    planned.version,
                    event.event_id,
                    &event.event_type,
                    event.schema_version,
                    &event.data,
                );
                heads.insert(planned.stream, hash);
                Got {
                    stream: stream.clone(),
                    version: planned.version,
                    position,
                    event_id: event.event_id,
                    event_type: event.event_type.clone(),
                    schema_version: event.schema_version,
                    data: event.data.clone(),
                    previous_hash,
                    hash,
                }
            })
            .collect()
    }

    /// A small workload written in `name`, settled for reading.
    fn written(name: &str, workload: &Workload, dir: &Path) -> Box<dyn Layout> {
        let mut layout = open(name, dir).expect("opening the layout");
        write(layout.as_mut(), workload, 262).expect("writing the workload");
        layout.settle().expect("settling the writes");
        layout
    }

    #[test]
    fn the_workload_interleaves_the_tasks_streams_in_order() {
        // Shows the order the writes come in: one event of each task in
        // turn, each task's streams named as `append_task` names them and
        // written version after version, every event a distinct id.
        let workload = Workload::new(10, 4, 2);
        let order: Vec<(&str, u64)> = workload
            .events
            .iter()
            .map(|planned| (workload.streams[planned.stream].as_str(), planned.version))
            .collect();
        assert_eq!(
            order,
            [
                ("payment-m0000-000000000000", 0),
                ("payment-m0001-000010000000", 0),
                ("payment-m0002-000020000000", 0),
                ("payment-m0003-000030000000", 0),
                ("payment-m0000-000000000000", 1),
                ("payment-m0001-000010000000", 1),
                ("payment-m0002-000020000000", 1),
                ("payment-m0003-000030000000", 1),
                ("payment-m0000-000000000001", 0),
                ("payment-m0001-000010000001", 0),
            ]
        );
        assert_eq!(workload.stream_events, [2, 2, 2, 2, 1, 1]);
        let ids: std::collections::HashSet<Uuid> = workload
            .events
            .iter()
            .map(|planned| planned.event.event_id)
            .collect();
        assert_eq!(ids.len(), 10);
    }

    #[test]
    fn every_layout_gives_back_exactly_what_was_written() {
        // Shows that the figures are those of correct layouts: reading all
        // gives every event written, field by field, chain links included,
        // in position order; reading a stream gives its events (and only
        // its own) in version order; an unknown stream reads empty. The
        // workload ends with streams cut short and a group not full.
        let workload = Workload::new(2_000, 48, 4);
        let expected = expected(&workload);
        for name in LAYOUTS {
            let dir = tempfile::tempdir().expect("a temporary directory");
            let mut layout = written(name, &workload, dir.path());
            let mut all = Vec::new();
            layout
                .read_all(&mut |event| all.push(Got::of(event)))
                .expect("reading all");
            assert_eq!(all, expected, "{name}: read all");
            for stream in &workload.streams {
                let mut got = Vec::new();
                layout
                    .read_stream(stream, &mut |event| got.push(Got::of(event)))
                    .expect("reading a stream");
                let mut own: Vec<Got> = expected
                    .iter()
                    .filter(|event| &event.stream == stream)
                    .cloned()
                    .collect();
                own.sort_by_key(|event| event.version);
                assert!(!own.is_empty());
                assert_eq!(got, own, "{name}: read stream {stream}");
            }
            let mut unknown = 0;
            layout
                .read_stream("payment-nobody", &mut |_| unknown += 1)
                .expect("reading an unknown stream");
            assert_eq!(unknown, 0, "{name}");
        }
    }

    #[test]
    fn layout_names_choose_layouts_in_their_order() {
        // Shows what `--layout` picks: all without a name, the named ones in
        // the bench's order, and an unknown name refused with the list.
        assert_eq!(chosen_layouts(&[]).expect("all"), LAYOUTS);
        let named = ["fjall".to_owned(), "rows-4k".to_owned()];
        assert_eq!(chosen_layouts(&named).expect("two"), ["rows-4k", "fjall"]);
        let error = chosen_layouts(&["rows-2k".to_owned()]).expect_err("unknown");
        assert!(error.to_string().contains("\"rows-2k\""), "{error}");
        assert!(error.to_string().contains("log-batched"), "{error}");
    }

    #[test]
    fn a_damaged_log_frame_is_refused() {
        // Shows that the log's reads check each frame's CRC: one byte of a
        // payload changed fails both reads instead of giving a wrong event.
        let workload = Workload::new(100, 8, 4);
        let dir = tempfile::tempdir().expect("a temporary directory");
        let mut layout = written("log", &workload, dir.path());
        let path = dir.path().join("events.log");
        let mut bytes = std::fs::read(&path).expect("reading the log");
        bytes[LOG_FRAME_HEAD + 20] ^= 1;
        std::fs::write(&path, bytes).expect("writing the log");
        assert!(layout.read_all(&mut |_| ()).is_err());
        let first = &workload.streams[workload.events[0].stream];
        assert!(layout.read_stream(first, &mut |_| ()).is_err());
    }
}
