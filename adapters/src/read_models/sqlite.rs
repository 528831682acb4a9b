//! The read models in SQLite: a file beside the ledger (`paycode-views.db`
//! for `paycode.db`), one table per read model (`key` JSON → `row` JSON)
//! and one checkpoint. Every batch writes its changed rows and the new
//! checkpoint in one transaction.
//!
//! A separate file, not tables in the ledger: the ledger's single writer
//! group-commits payments and must not queue behind read-model writes, and
//! the file is disposable. When its layout differs from the one asked for,
//! it is emptied and rebuilt from position 0.
//!
//! `open_read_only` is `paycode replay`'s open: nothing is written to the
//! file or beside it (`crate::read_only`), and a file of another layout is
//! an error, not emptied.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use rusqlite::{Connection, OptionalExtension, params};

use super::{Layout, ReadModelError, ReadModelStore, RowChange};
use crate::read_only::ReadOnlyFile;

/// The read models in one SQLite connection (a file, or memory).
#[derive(Debug)]
pub struct SqliteReadModelStore {
    conn: Mutex<Connection>,
    layout: Layout,
    /// For messages: the file, or `:memory:`.
    label: String,
    /// Tests set it to make the next write fail after the rows, before the commit.
    crash_before_commit: AtomicBool,
}

impl SqliteReadModelStore {
    /// The read-model file of a ledger file: `paycode.db` → `paycode-views.db`, same directory.
    pub fn path_beside(ledger: &Path) -> PathBuf {
        let stem = ledger.file_stem().map_or_else(
            || "paycode".to_owned(),
            |stem| stem.to_string_lossy().into_owned(),
        );
        ledger.with_file_name(format!("{stem}-views.db"))
    }

    /// Opens (or creates) the read-model file at `path` for `layout`.
    pub fn open(path: &Path, layout: Layout) -> Result<Arc<Self>, ReadModelError> {
        let label = path.display().to_string();
        let error = |source| ReadModelError::Sqlite {
            path: label.clone(),
            source,
        };
        let conn = Connection::open(path).map_err(error)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(error)?;
        // WAL with NORMAL: a power cut may lose the last batches, never tear
        // one; the checkpoint goes back with its rows and they are redone.
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(error)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(error)?;
        Self::init(conn, layout, label)
    }

    /// Opens the read-model file at `path` to read it, writing nothing to it
    /// or beside it. A file of another layout is `OtherLayout`: `paycode
    /// serve` rebuilds such a file when it starts; there is nothing to compare.
    pub fn open_read_only(path: &Path, layout: Layout) -> Result<Arc<Self>, ReadModelError> {
        let label = path.display().to_string();
        let conn = ReadOnlyFile::at(path)?.connect()?;
        let stored: Option<String> = conn
            .query_row("SELECT layout FROM views_meta WHERE id = 1", [], |row| {
                row.get(0)
            })
            .optional()
            .map_err(|source| ReadModelError::Sqlite {
                path: label.clone(),
                source,
            })?;
        if stored.as_deref() != Some(layout.marker().as_str()) {
            return Err(ReadModelError::OtherLayout {
                path: label,
                stored: stored.unwrap_or_else(|| "none".to_owned()),
                expected: layout.marker(),
            });
        }
        Ok(Arc::new(SqliteReadModelStore {
            conn: Mutex::new(conn),
            layout,
            label,
            crash_before_commit: AtomicBool::new(false),
        }))
    }

    /// Read models in memory (for a store that keeps nothing across restarts).
    pub fn in_memory(layout: Layout) -> Result<Arc<Self>, ReadModelError> {
        let conn = Connection::open_in_memory().map_err(|source| ReadModelError::Sqlite {
            path: ":memory:".into(),
            source,
        })?;
        Self::init(conn, layout, ":memory:".into())
    }

    fn init(conn: Connection, layout: Layout, label: String) -> Result<Arc<Self>, ReadModelError> {
        let store = SqliteReadModelStore {
            conn: Mutex::new(conn),
            layout,
            label,
            crash_before_commit: AtomicBool::new(false),
        };
        store.with(|conn| {
            conn.execute_batch(
                "CREATE TABLE IF NOT EXISTS views_meta (
                    id         INTEGER PRIMARY KEY CHECK (id = 1),
                    layout     TEXT NOT NULL,
                    position   INTEGER NOT NULL
                 );",
            )?;
            let stored: Option<String> = conn
                .query_row("SELECT layout FROM views_meta WHERE id = 1", [], |row| {
                    row.get(0)
                })
                .optional()?;
            if stored.as_deref() != Some(layout.marker().as_str()) {
                reset(conn, layout)?;
            }
            Ok(())
        })?;
        Ok(Arc::new(store))
    }

    fn with<T>(
        &self,
        f: impl FnOnce(&mut Connection) -> rusqlite::Result<T>,
    ) -> Result<T, ReadModelError> {
        let mut conn = self
            .conn
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        f(&mut conn).map_err(|source| ReadModelError::Sqlite {
            path: self.label.clone(),
            source,
        })
    }

    /// The table of `projection`, if the layout has it. Only a layout name
    /// ever reaches SQL text.
    fn table(&self, projection: &str) -> Result<&'static str, ReadModelError> {
        self.layout
            .names
            .iter()
            .copied()
            .find(|name| *name == projection)
            .ok_or_else(|| ReadModelError::UnknownProjection(projection.into()))
    }

    /// Makes the next `write` fail after writing its rows, before the commit
    /// (the transaction rolls back): what a crash mid-batch leaves behind.
    pub fn crash_before_next_commit(&self) {
        self.crash_before_commit.store(true, Ordering::SeqCst);
    }
}

impl ReadModelStore for SqliteReadModelStore {
    fn label(&self) -> &str {
        &self.label
    }

    fn checkpoint(&self) -> Result<u64, ReadModelError> {
        self.with(|conn| {
            let position: i64 =
                conn.query_row("SELECT position FROM views_meta WHERE id = 1", [], |row| {
                    row.get(0)
                })?;
            Ok(u64::try_from(position).unwrap_or(0))
        })
    }

    fn reset(&self) -> Result<(), ReadModelError> {
        self.with(|conn| reset(conn, self.layout))
    }

    fn write(&self, changes: &[RowChange<'_>], position: u64) -> Result<(), ReadModelError> {
        let tables = changes
            .iter()
            .map(|change| self.table(change.projection))
            .collect::<Result<Vec<_>, _>>()?;
        let crash = self.crash_before_commit.swap(false, Ordering::SeqCst);
        let mut crashed = false;
        self.with(|conn| {
            let tx = conn.transaction()?;
            for (change, table) in changes.iter().zip(tables) {
                match change.row {
                    Some(row) => tx
                        .prepare_cached(&format!(
                            "INSERT INTO {table} (key, row) VALUES (?1, ?2) \
                             ON CONFLICT (key) DO UPDATE SET row = excluded.row"
                        ))?
                        .execute(params![change.key, row])?,
                    None => tx
                        .prepare_cached(&format!("DELETE FROM {table} WHERE key = ?1"))?
                        .execute(params![change.key])?,
                };
            }
            tx.prepare_cached("UPDATE views_meta SET position = ?1 WHERE id = 1")?
                .execute(params![i64::try_from(position).unwrap_or(i64::MAX)])?;
            if crash {
                // Dropping the transaction rolls it back, as a crash would.
                crashed = true;
                return Ok(());
            }
            tx.commit()
        })?;
        if crashed {
            return Err(ReadModelError::SimulatedCrash);
        }
        Ok(())
    }

    fn rows(&self, projection: &str) -> Result<BTreeMap<String, String>, ReadModelError> {
        let table = self.table(projection)?;
        self.with(|conn| {
            let mut statement = conn.prepare(&format!("SELECT key, row FROM {table}"))?;
            let rows = statement
                .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))?
                .collect::<rusqlite::Result<BTreeMap<String, String>>>()?;
            Ok(rows)
        })
    }

    fn row(&self, projection: &str, key: &str) -> Result<Option<String>, ReadModelError> {
        let table = self.table(projection)?;
        self.with(|conn| {
            conn.query_row(
                &format!("SELECT row FROM {table} WHERE key = ?1"),
                [key],
                |row| row.get(0),
            )
            .optional()
        })
    }
}

/// Drops every read-model table, creates this layout's, checkpoint 0.
fn reset(conn: &mut Connection, layout: Layout) -> rusqlite::Result<()> {
    let tx = conn.transaction()?;
    let existing: Vec<String> = tx
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name != 'views_meta'")?
        .query_map([], |row| row.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    for table in existing {
        tx.execute_batch(&format!("DROP TABLE \"{}\"", table.replace('"', "\"\"")))?;
    }
    for table in layout.names {
        tx.execute_batch(&format!(
            "CREATE TABLE {table} (key TEXT PRIMARY KEY, row TEXT NOT NULL) WITHOUT ROWID"
        ))?;
    }
    tx.execute(
        "INSERT INTO views_meta (id, layout, position) VALUES (1, ?1, 0) \
         ON CONFLICT (id) DO UPDATE SET layout = excluded.layout, position = 0",
        [layout.marker()],
    )?;
    tx.commit()
}

#[cfg(test)]
mod tests {
    use super::*;

    const LAYOUT: Layout = Layout {
        names: &["order_status", "refunds", "in_flight"],
        version: 1,
    };

    fn change<'a>(projection: &'a str, key: &'a str, row: Option<&'a str>) -> RowChange<'a> {
        RowChange {
            projection,
            key,
            row,
        }
    }

    #[test]
    fn a_batch_stores_its_rows_and_checkpoint_together_or_not_at_all() {
        // A committed batch moves rows and checkpoint; a crash before the commit moves neither.
        let dir = tempfile::tempdir().unwrap();
        let path = SqliteReadModelStore::path_beside(&dir.path().join("paycode.db"));
        assert!(path.ends_with("paycode-views.db"));
        let views = SqliteReadModelStore::open(&path, LAYOUT).unwrap();
        assert_eq!(views.checkpoint().unwrap(), 0);
        views
            .write(&[change("order_status", "k1", Some("{\"a\":1}"))], 3)
            .unwrap();
        views.crash_before_next_commit();
        let crashed = views.write(
            &[
                change("order_status", "k1", None),
                change("in_flight", "k2", Some("{}")),
            ],
            7,
        );
        assert!(matches!(crashed, Err(ReadModelError::SimulatedCrash)));
        drop(views);
        let views = SqliteReadModelStore::open(&path, LAYOUT).unwrap();
        assert_eq!(views.checkpoint().unwrap(), 3);
        assert_eq!(
            views.row("order_status", "k1").unwrap().as_deref(),
            Some("{\"a\":1}")
        );
        assert!(views.rows("in_flight").unwrap().is_empty());
        assert!(matches!(
            views.rows("nope"),
            Err(ReadModelError::UnknownProjection(_))
        ));
    }

    #[test]
    fn a_file_of_another_layout_is_emptied_for_a_rebuild() {
        // Stored rows of an older layout are dropped and the checkpoint returns to 0.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v.db");
        let views = SqliteReadModelStore::open(&path, LAYOUT).unwrap();
        views
            .write(&[change("refunds", "k", Some("{}"))], 9)
            .unwrap();
        drop(views);
        let newer = Layout {
            version: 2,
            ..LAYOUT
        };
        let views = SqliteReadModelStore::open(&path, newer).unwrap();
        assert_eq!(views.checkpoint().unwrap(), 0);
        assert!(views.rows("refunds").unwrap().is_empty());
    }
}
