//! Rewrites a stopped ledger in the layout this program creates: today,
//! pages of `PAGE_SIZE_BYTES` (ledgers made before ADR 0008 have 1 KiB
//! pages, which SQLite cannot change in place in WAL mode).
//!
//! The rewrite is SQLite's `VACUUM INTO` a file beside the ledger, so every
//! row (events with their positions, ids, timestamps and chain hashes,
//! streams, step leases, `meta`) is copied as it is: `paycode verify`
//! proves the same chain afterwards. It runs only while no other
//! connection has the file open, and holds the file's exclusive lock from
//! its first read until the new file has taken the ledger's name, so no
//! process can write in between and be lost. The new file is checked
//! (the same events, the same last hash) and synced before it replaces the
//! old one, which stays beside it under another name (its WAL folded in, in
//! rollback-journal mode; `SqliteStore::open` turns WAL back on). A crash at any point
//! leaves the ledger's name on one whole file, the old or the new.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, ErrorCode, OpenFlags, OptionalExtension};

use crate::read_only::beside;

use super::{APPLICATION_ID, PAGE_SIZE_BYTES, SqliteStore, StoreError, check_meta, sqlite_error};

/// What `relayout` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Relayout {
    /// The ledger already has the current layout; nothing was written.
    AlreadyCurrent { page_size: u32 },
    /// The ledger was rewritten; the file as it was is kept at `kept`.
    Rewritten {
        page_size_before: u32,
        page_size: u32,
        events: u64,
        bytes_before: u64,
        bytes: u64,
        kept: PathBuf,
    },
}

/// Where the rewrite is built, beside the ledger (a leftover of a rewrite
/// that stopped half-way is removed: the ledger itself was not touched).
fn building_path(path: &Path) -> PathBuf {
    beside(path, ".relayout")
}

/// Where the ledger as it was is kept after a rewrite.
pub fn kept_path(path: &Path) -> PathBuf {
    beside(path, ".before-relayout")
}

/// How long to wait for another process's lock before saying the ledger
/// is in use.
const LOCK_WAIT_MS: u64 = 2000;

/// Rewrites the stopped ledger at `path` in the current layout; see the
/// module's documentation. A ledger of schema 1 is first upgraded (as
/// `SqliteStore::open` does). Refuses, writing nothing, when the file is
/// not a paycode ledger, when another process has it open, or when the
/// place for the kept copy is taken (unless there is nothing to do). Blocking.
pub fn relayout(path: &Path) -> Result<Relayout, StoreError> {
    if !path.is_file() {
        return Err(StoreError::Unavailable(
            format!("no SQLite ledger at {}", path.display()).into(),
        ));
    }
    // Checks the file is a paycode ledger and upgrades an old schema; the
    // store's threads are gone when it is dropped.
    drop(SqliteStore::open(path)?);

    let conn = lock_exclusively(path)?;
    let page_size_before = page_size(&conn).map_err(|error| sqlite_error(path, error))?;
    if page_size_before == PAGE_SIZE_BYTES {
        return Ok(Relayout::AlreadyCurrent {
            page_size: page_size_before,
        });
    }
    let kept = kept_path(path);
    if kept.exists() {
        return Err(StoreError::Unavailable(
            format!(
                "{} exists (the copy kept by an earlier rewrite): move it away first",
                kept.display()
            )
            .into(),
        ));
    }
    let before = Summary::of(&conn).map_err(|error| sqlite_error(path, error))?;
    let bytes_before = file_len(path);

    let building = building_path(path);
    remove_if_present(&building)?;
    let written = write_copy(&conn, &building).and_then(|()| {
        check_copy(&building, &before)?;
        sync_file(&building)
    });
    if let Err(error) = written {
        // The ledger is as it was; the half-built copy is of no use.
        let _ = std::fs::remove_file(&building);
        return Err(error);
    }

    // Fold the WAL into the file and leave WAL mode while the lock is held,
    // so that closing this connection later deletes no `-wal` by name: by
    // then the name belongs to the new file.
    conn.pragma_update_and_check(None, "journal_mode", "DELETE", |_| Ok(()))
        .map_err(|error| sqlite_error(path, error))?;
    std::fs::hard_link(path, &kept).map_err(io_error(&kept))?;
    std::fs::rename(&building, path).map_err(io_error(path))?;
    sync_parent(path)?;
    // A `-shm` left by a service that stopped uncleanly describes the old
    // file's WAL; nothing uses it now (the lock is ours).
    remove_if_present(&beside(path, "-shm"))?;
    drop(conn);
    Ok(Relayout::Rewritten {
        page_size_before,
        page_size: PAGE_SIZE_BYTES,
        events: before.events,
        bytes_before,
        bytes: file_len(path),
        kept,
    })
}

/// A connection that holds the file's exclusive lock until it is closed,
/// or `Unavailable` naming the file when another connection has it open.
fn lock_exclusively(path: &Path) -> Result<Connection, StoreError> {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn =
        Connection::open_with_flags(path, flags).map_err(|error| sqlite_error(path, error))?;
    let locked = (|| -> rusqlite::Result<()> {
        conn.busy_timeout(Duration::from_millis(LOCK_WAIT_MS))?;
        // In exclusive locking mode the lock a write transaction takes is
        // kept after it ends, and no shared memory is used.
        conn.pragma_update(None, "locking_mode", "EXCLUSIVE")?;
        conn.execute_batch("BEGIN EXCLUSIVE; COMMIT")
    })();
    match locked {
        Ok(()) => Ok(conn),
        Err(error)
            if matches!(
                error.sqlite_error_code(),
                Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked)
            ) =>
        {
            Err(StoreError::Unavailable(
                format!(
                    "{} is in use by another process (a running service?): stop it first",
                    path.display()
                )
                .into(),
            ))
        }
        Err(error) => Err(sqlite_error(path, error)),
    }
}

fn page_size(conn: &Connection) -> rusqlite::Result<u32> {
    conn.pragma_query_value(None, "page_size", |row| row.get(0))
}

/// What must be the same in the copy: the events, and the last of them.
#[derive(Debug, PartialEq, Eq)]
struct Summary {
    events: u64,
    streams: u64,
    head_position: Option<i64>,
    head_hash: Option<Vec<u8>>,
}

impl Summary {
    fn of(conn: &Connection) -> rusqlite::Result<Summary> {
        let (events, streams): (i64, i64) = conn.query_row(
            "SELECT (SELECT count(*) FROM events), (SELECT count(*) FROM streams)",
            [],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )?;
        let head: Option<(i64, Vec<u8>)> = conn
            .query_row(
                "SELECT position, hash FROM events ORDER BY position DESC LIMIT 1",
                [],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )
            .optional()?;
        Ok(Summary {
            events: u64::try_from(events).unwrap_or(0),
            streams: u64::try_from(streams).unwrap_or(0),
            head_position: head.as_ref().map(|(position, _)| *position),
            head_hash: head.map(|(_, hash)| hash),
        })
    }
}

/// Copies every row of the locked ledger into a new file at `building`,
/// with the current page size.
fn write_copy(conn: &Connection, building: &Path) -> Result<(), StoreError> {
    let target = building.to_str().ok_or_else(|| {
        StoreError::Unavailable(format!("{} is not a UTF-8 path", building.display()).into())
    })?;
    (|| -> rusqlite::Result<()> {
        conn.pragma_update(None, "page_size", PAGE_SIZE_BYTES)?;
        conn.execute("VACUUM INTO ?1", [target])?;
        Ok(())
    })()
    .map_err(|error| sqlite_error(building, error))
}

/// Opens the copy on its own and checks it is the ledger: our application
/// id and meta, the current page size, SQLite's own structure check, and
/// the same events up to the same last hash. Leaves it in WAL mode, as the
/// store opens it.
fn check_copy(building: &Path, expected: &Summary) -> Result<(), StoreError> {
    let conn = Connection::open_with_flags(
        building,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|error| sqlite_error(building, error))?;
    let failed = |what: String| {
        StoreError::Unavailable(
            format!(
                "the rewritten ledger {} {what}; the ledger was left as it was",
                building.display()
            )
            .into(),
        )
    };
    let application_id: i32 = conn
        .pragma_query_value(None, "application_id", |row| row.get(0))
        .map_err(|error| sqlite_error(building, error))?;
    if application_id != APPLICATION_ID {
        return Err(failed(format!("has application id {application_id:#x}")));
    }
    check_meta(&conn, building)?;
    let size = page_size(&conn).map_err(|error| sqlite_error(building, error))?;
    if size != PAGE_SIZE_BYTES {
        return Err(failed(format!("has pages of {size} bytes")));
    }
    let check: String = conn
        .query_row("PRAGMA quick_check", [], |row| row.get(0))
        .map_err(|error| sqlite_error(building, error))?;
    if check != "ok" {
        return Err(failed(format!("fails SQLite's check: {check}")));
    }
    let copied = Summary::of(&conn).map_err(|error| sqlite_error(building, error))?;
    if &copied != expected {
        return Err(failed(format!(
            "holds {} events in {} streams, not {} in {}, or another last event",
            copied.events, copied.streams, expected.events, expected.streams
        )));
    }
    conn.pragma_update_and_check(None, "journal_mode", "WAL", |_| Ok(()))
        .map_err(|error| sqlite_error(building, error))?;
    Ok(())
}

fn file_len(path: &Path) -> u64 {
    std::fs::metadata(path).map_or(0, |meta| meta.len())
}

fn io_error(path: &Path) -> impl Fn(std::io::Error) -> StoreError + '_ {
    move |error| StoreError::Unavailable(format!("{}: {error}", path.display()).into())
}

fn remove_if_present(path: &Path) -> Result<(), StoreError> {
    match std::fs::remove_file(path) {
        Err(error) if error.kind() != std::io::ErrorKind::NotFound => Err(io_error(path)(error)),
        _ => Ok(()),
    }
}

fn sync_file(path: &Path) -> Result<(), StoreError> {
    std::fs::File::open(path)
        .and_then(|file| file.sync_all())
        .map_err(io_error(path))
}

/// Makes the rename durable: the directory entry, not only the file.
fn sync_parent(path: &Path) -> Result<(), StoreError> {
    let parent = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    sync_file(parent)
}
