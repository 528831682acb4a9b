//! Opening a SQLite file (the ledger, or its read models) so that nothing is
//! ever written beside it or into it: not the file, not its `-wal`, not its
//! `-shm`, not a new file in its folder. For `paycode verify`, `replay`,
//! `history` and `reconcile --file --ledger` on a copy an auditor was handed,
//! which may sit on read-only media, in a read-only folder, or be owned by
//! someone else, and must come back byte for byte as it was.
//!
//! Permissions are not what keeps a file unchanged (a process running as
//! root writes through them); the way the file is opened is. SQLite's WAL
//! mode writes even for readers: a plain read-only connection creates the
//! `-wal` and `-shm` files when they are missing and records its read mark
//! in the `-shm`. So, by what lies beside the file:
//!
//! - **No `-wal`, or an empty one**: every commit is in the file itself
//!   (a clean shutdown, `VACUUM INTO`, the backup API, a plain copy of a
//!   stopped ledger). The file is opened `immutable=1`: no lock, no journal,
//!   no `-wal`/`-shm` looked at or made.
//! - **A non-empty `-wal` and a `-shm`**: commits may be in the WAL only
//!   (a live ledger, or a copy of all three files). The file is opened
//!   read-only with `readonly_shm=1`: SQLite opens the `-shm` read-only and,
//!   when no process holds it (a copy), rebuilds the WAL index in private
//!   memory from the WAL itself (checksums and all); when the service holds
//!   it (a live ledger), reads through it under shared locks without writing
//!   a read mark. Either way the reader sees every commit and writes nothing.
//! - **A non-empty `-wal` without a `-shm`**: SQLite would have to create
//!   the `-shm` to read the WAL. Refused, naming the way out: take a
//!   consistent copy (`VACUUM INTO` or the backup API), which is one file.
//!
//! An `immutable` file must not change while it is open: a service started
//! on it mid-read would not be noticed. Check copies, or stop the service.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::config::DbConfig;
use rusqlite::{Connection, OpenFlags};

/// How long a reader of a live ledger waits for a lock before giving up.
const BUSY_TIMEOUT_MS: u64 = 5000;

/// How a file is read without writing, as chosen from what lies beside it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadOnlyMode {
    /// Every commit is in the file: opened `immutable=1`.
    Immutable,
    /// Commits may be in the `-wal`: read through a read-only `-shm`.
    WithWal,
}

/// Why a file cannot be opened without writing to it.
#[derive(Debug, thiserror::Error)]
pub enum ReadOnlyError {
    /// Nothing at that path (it is never created).
    #[error("no SQLite file at {}", path.display())]
    Missing { path: PathBuf },
    /// A path SQLite cannot be handed (not UTF-8).
    #[error("{}: the path is not UTF-8", path.display())]
    PathNotUtf8 { path: PathBuf },
    /// Commits in the `-wal` that only a new `-shm` would let SQLite read.
    #[error(
        "{} is not empty: it holds commits not yet copied into {}, and there is no {} \
         beside it to read them without writing one. Take a consistent copy of the ledger \
         (`VACUUM INTO` or SQLite's backup API, see docs/auditing.md) and check the copy",
        wal.display(),
        path.display(),
        shm.display()
    )]
    WalWithoutShm {
        path: PathBuf,
        wal: PathBuf,
        shm: PathBuf,
    },
    /// SQLite refused the file.
    #[error("{}: {source}", path.display())]
    Sqlite {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
}

/// A SQLite file to be read without writing: where it is, and how every
/// connection to it is opened (decided once, when it was looked at).
#[derive(Debug, Clone)]
pub struct ReadOnlyFile {
    path: PathBuf,
    uri: String,
    mode: ReadOnlyMode,
}

impl ReadOnlyFile {
    /// Looks at `path` and what lies beside it, and chooses how to read it
    /// (see the module's doc). Touches nothing.
    pub fn at(path: &Path) -> Result<ReadOnlyFile, ReadOnlyError> {
        if !path.is_file() {
            return Err(ReadOnlyError::Missing {
                path: path.to_owned(),
            });
        }
        let wal = beside(path, "-wal");
        let shm = beside(path, "-shm");
        let wal_bytes = std::fs::metadata(&wal).map_or(0, |metadata| metadata.len());
        let mode = if wal_bytes == 0 {
            ReadOnlyMode::Immutable
        } else if shm.is_file() {
            ReadOnlyMode::WithWal
        } else {
            return Err(ReadOnlyError::WalWithoutShm {
                path: path.to_owned(),
                wal,
                shm,
            });
        };
        let file = path.to_str().ok_or_else(|| ReadOnlyError::PathNotUtf8 {
            path: path.to_owned(),
        })?;
        let query = match mode {
            ReadOnlyMode::Immutable => "mode=ro&immutable=1",
            ReadOnlyMode::WithWal => "mode=ro&readonly_shm=1",
        };
        Ok(ReadOnlyFile {
            path: path.to_owned(),
            uri: format!("file:{}?{query}", uri_path(file)),
            mode,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn mode(&self) -> ReadOnlyMode {
        self.mode
    }

    /// A new connection that cannot write: opened read-only, `query_only`,
    /// never checkpointing on close, temporary tables in memory.
    ///
    /// A live ledger's service may stop between [`ReadOnlyFile::at`] and
    /// this open: its last connection copies the WAL into the file and
    /// removes the `-wal` and `-shm`, and the read-only `-shm` can no longer
    /// be opened. Then the file is looked at again and, if every commit is
    /// now in it, opened `immutable=1`. (SQLite's failed first open may
    /// leave an empty `-wal` behind, which no reader takes for commits.)
    pub fn connect(&self) -> Result<Connection, ReadOnlyError> {
        match self.open() {
            Err(error) if self.mode == ReadOnlyMode::WithWal => {
                let again = ReadOnlyFile::at(&self.path)?;
                if again.mode == ReadOnlyMode::Immutable {
                    again.open()
                } else {
                    Err(error)
                }
            }
            result => result,
        }
    }

    fn open(&self) -> Result<Connection, ReadOnlyError> {
        let error = |source| ReadOnlyError::Sqlite {
            path: self.path.clone(),
            source,
        };
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY
            | OpenFlags::SQLITE_OPEN_URI
            | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(&self.uri, flags).map_err(error)?;
        let configure = || -> rusqlite::Result<()> {
            conn.set_db_config(DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, true)?;
            conn.pragma_update(None, "query_only", true)?;
            conn.pragma_update(None, "temp_store", "MEMORY")?;
            conn.busy_timeout(Duration::from_millis(BUSY_TIMEOUT_MS))?;
            // SQLite opens the file (and the `-shm`) at the first read:
            // read now, so that an open that cannot succeed fails here.
            conn.query_row("SELECT count(*) FROM sqlite_schema", [], |_| Ok(()))
        };
        configure().map_err(error)?;
        Ok(conn)
    }
}

/// `paycode.db` → `paycode.db-wal` (SQLite's own naming).
pub(crate) fn beside(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// A path as the path part of a SQLite `file:` URI: `%`, `?` and `#` (and
/// anything not printable ASCII) percent-encoded, the rest as it is.
fn uri_path(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for byte in path.bytes() {
        if byte.is_ascii_graphic() && !matches!(byte, b'%' | b'?' | b'#') {
            out.push(char::from(byte));
        } else {
            let _ = write!(out, "%{byte:02X}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ledger_closed_between_the_look_and_the_open_is_read_from_its_file() {
        // A live WAL ledger is looked at (WithWal); its last connection then closes,
        // checkpointing and removing the -wal and -shm; the read-only open still succeeds.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ledger.db");
        let writer = Connection::open(&path).unwrap();
        writer
            .execute_batch(
                "PRAGMA journal_mode = WAL; PRAGMA wal_autocheckpoint = 0;
                 CREATE TABLE t (x INTEGER); INSERT INTO t VALUES (7);",
            )
            .unwrap();
        let file = ReadOnlyFile::at(&path).unwrap();
        assert_eq!(file.mode(), ReadOnlyMode::WithWal);
        drop(writer);
        assert!(!beside(&path, "-wal").exists(), "the close removed the WAL");
        let conn = file.connect().unwrap();
        let x: i64 = conn
            .query_row("SELECT x FROM t", [], |row| row.get(0))
            .unwrap();
        assert_eq!(x, 7);
        // The failed first open may leave an empty -wal (nothing SQLite reads).
        let wal_bytes = std::fs::metadata(beside(&path, "-wal")).map_or(0, |m| m.len());
        assert_eq!(wal_bytes, 0);
        assert!(!beside(&path, "-shm").exists(), "no -shm made");
    }

    #[test]
    fn uri_paths_escape_what_sqlite_would_read_as_a_query() {
        // A folder named with ?, # or % or a space must not end the path early.
        assert_eq!(uri_path("/a b/c?d#e%f.db"), "/a%20b/c%3Fd%23e%25f.db");
        assert_eq!(uri_path("rel/paycode.db"), "rel/paycode.db");
    }
}
