//! Where the read models are stored: a SQLite file beside the ledger
//! (`paycode-views.db` for `paycode.db`), one table per projection
//! (`key` JSON → `row` JSON) and one checkpoint, the global position the
//! rows reflect. Every batch writes its changed rows and the new checkpoint
//! in one transaction, so a crash leaves either the whole batch or none of
//! it: no event is skipped or applied twice.
//!
//! The file is rebuildable: when its layout differs from this program's
//! read models, or its checkpoint is past the log's head (another ledger),
//! it is emptied and rebuilt from position 0.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use paycode_projections::{PROJECTION_NAMES, StoredChange};
use rusqlite::{Connection, OptionalExtension, params};

/// The stored layout: the read models and the version of their row forms.
/// Bump the version when a row's JSON form changes; stored rows are then rebuilt.
const LAYOUT_VERSION: u32 = 1;

fn layout() -> String {
    format!("v{LAYOUT_VERSION}:{}", PROJECTION_NAMES.join(","))
}

/// The views file of a ledger file: `paycode.db` → `paycode-views.db`, same directory.
pub fn views_path_beside(ledger: &Path) -> PathBuf {
    let stem = ledger
        .file_stem()
        .map(|stem| stem.to_string_lossy().into_owned())
        .unwrap_or_else(|| "paycode".to_owned());
    ledger.with_file_name(format!("{stem}-views.db"))
}

/// A failure of the read-model storage. The runner stops; the read models
/// are rebuildable, so the operator may delete the file and restart.
#[derive(Debug, thiserror::Error)]
pub enum ViewStoreError {
    #[error("read-model storage {path}: {source}")]
    Sqlite {
        path: String,
        #[source]
        source: rusqlite::Error,
    },
    /// Not a read model this program knows (a bug in the caller).
    #[error("unknown read model {0:?}")]
    UnknownProjection(String),
    /// A simulated crash between writing rows and committing (tests only).
    #[error("simulated crash before the commit")]
    SimulatedCrash,
}

/// The stored read models. Cheap to clone (one shared connection).
#[derive(Debug, Clone)]
pub struct ViewStore {
    conn: Arc<Mutex<Connection>>,
    /// For messages: the file, or `:memory:`.
    label: String,
    /// Tests set it to make the next write fail after the rows, before the commit.
    crash_before_commit: Arc<std::sync::atomic::AtomicBool>,
}

impl ViewStore {
    /// Opens (or creates) the views file at `path`.
    pub fn open(path: &Path) -> Result<ViewStore, ViewStoreError> {
        let label = path.display().to_string();
        let error = |source| ViewStoreError::Sqlite {
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
        ViewStore::init(conn, label)
    }

    /// Read models in memory (a store that keeps nothing across restarts).
    pub fn in_memory() -> Result<ViewStore, ViewStoreError> {
        let conn = Connection::open_in_memory().map_err(|source| ViewStoreError::Sqlite {
            path: ":memory:".into(),
            source,
        })?;
        ViewStore::init(conn, ":memory:".into())
    }

    fn init(conn: Connection, label: String) -> Result<ViewStore, ViewStoreError> {
        let store = ViewStore {
            conn: Arc::new(Mutex::new(conn)),
            label,
            crash_before_commit: Arc::default(),
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
            if stored.as_deref() != Some(layout().as_str()) {
                reset(conn)?;
            }
            Ok(())
        })?;
        Ok(store)
    }

    fn with<T>(
        &self,
        f: impl FnOnce(&mut Connection) -> rusqlite::Result<T>,
    ) -> Result<T, ViewStoreError> {
        let mut conn = self.conn.lock().expect("views connection lock");
        f(&mut conn).map_err(|source| ViewStoreError::Sqlite {
            path: self.label.clone(),
            source,
        })
    }

    /// The file (or `:memory:`), for messages.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// The global position the stored rows reflect (0: none).
    pub fn checkpoint(&self) -> Result<u64, ViewStoreError> {
        self.with(|conn| {
            let position: i64 =
                conn.query_row("SELECT position FROM views_meta WHERE id = 1", [], |row| {
                    row.get(0)
                })?;
            Ok(u64::try_from(position).unwrap_or(0))
        })
    }

    /// Empties every read model and sets the checkpoint to 0 (rebuild from the start).
    pub fn reset(&self) -> Result<(), ViewStoreError> {
        self.with(reset)
    }

    /// Stores one batch: the changed rows and the new checkpoint, in one transaction.
    pub fn write(&self, changes: &[StoredChange], position: u64) -> Result<(), ViewStoreError> {
        if let Some(change) = changes
            .iter()
            .find(|change| !PROJECTION_NAMES.contains(&change.projection))
        {
            return Err(ViewStoreError::UnknownProjection(change.projection.into()));
        }
        let crash = self
            .crash_before_commit
            .swap(false, std::sync::atomic::Ordering::SeqCst);
        let mut crashed = false;
        self.with(|conn| {
            let tx = conn.transaction()?;
            for change in changes {
                // The name is one of PROJECTION_NAMES (checked above): safe in SQL.
                let table = change.projection;
                match &change.row {
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
            tx.execute(
                "UPDATE views_meta SET position = ?1 WHERE id = 1",
                params![i64::try_from(position).unwrap_or(i64::MAX)],
            )?;
            if crash {
                // Dropping the transaction rolls it back, as a crash would.
                crashed = true;
                return Ok(());
            }
            tx.commit()
        })?;
        if crashed {
            return Err(ViewStoreError::SimulatedCrash);
        }
        Ok(())
    }

    /// Every stored row of one read model: key JSON → row JSON.
    pub fn rows(&self, projection: &str) -> Result<BTreeMap<String, String>, ViewStoreError> {
        let Some(table) = PROJECTION_NAMES.iter().find(|name| **name == projection) else {
            return Err(ViewStoreError::UnknownProjection(projection.into()));
        };
        self.with(|conn| {
            let mut statement = conn.prepare(&format!("SELECT key, row FROM {table}"))?;
            let rows = statement
                .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))?
                .collect::<rusqlite::Result<BTreeMap<String, String>>>()?;
            Ok(rows)
        })
    }

    /// One stored row, if any.
    pub fn row(&self, projection: &str, key: &str) -> Result<Option<String>, ViewStoreError> {
        let Some(table) = PROJECTION_NAMES.iter().find(|name| **name == projection) else {
            return Err(ViewStoreError::UnknownProjection(projection.into()));
        };
        self.with(|conn| {
            conn.query_row(
                &format!("SELECT row FROM {table} WHERE key = ?1"),
                [key],
                |row| row.get(0),
            )
            .optional()
        })
    }

    /// Makes the next `write` fail after writing its rows, before the commit
    /// (the transaction rolls back): what a crash mid-batch leaves behind.
    #[doc(hidden)]
    pub fn crash_before_next_commit(&self) {
        self.crash_before_commit
            .store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

/// Drops every read-model table, creates this layout's, checkpoint 0.
fn reset(conn: &mut Connection) -> rusqlite::Result<()> {
    let tx = conn.transaction()?;
    let existing: Vec<String> = tx
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name != 'views_meta'")?
        .query_map([], |row| row.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    for table in existing {
        tx.execute_batch(&format!("DROP TABLE \"{}\"", table.replace('"', "\"\"")))?;
    }
    for table in PROJECTION_NAMES {
        tx.execute_batch(&format!(
            "CREATE TABLE {table} (key TEXT PRIMARY KEY, row TEXT NOT NULL) WITHOUT ROWID"
        ))?;
    }
    tx.execute(
        "INSERT INTO views_meta (id, layout, position) VALUES (1, ?1, 0) \
         ON CONFLICT (id) DO UPDATE SET layout = excluded.layout, position = 0",
        [layout()],
    )?;
    tx.commit()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(projection: &'static str, key: &str, row: Option<&str>) -> StoredChange {
        StoredChange {
            projection,
            key: key.into(),
            row: row.map(Into::into),
        }
    }

    #[test]
    fn a_batch_stores_its_rows_and_checkpoint_together_or_not_at_all() {
        // A committed batch moves rows and checkpoint; a crash before the commit moves neither.
        let dir = tempfile::tempdir().unwrap();
        let path = views_path_beside(&dir.path().join("paycode.db"));
        assert!(path.ends_with("paycode-views.db"));
        let views = ViewStore::open(&path).unwrap();
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
        assert!(matches!(crashed, Err(ViewStoreError::SimulatedCrash)));
        drop(views);
        let views = ViewStore::open(&path).unwrap();
        assert_eq!(views.checkpoint().unwrap(), 3);
        assert_eq!(
            views.row("order_status", "k1").unwrap().as_deref(),
            Some("{\"a\":1}")
        );
        assert!(views.rows("in_flight").unwrap().is_empty());
        assert!(matches!(
            views.rows("nope"),
            Err(ViewStoreError::UnknownProjection(_))
        ));
    }

    #[test]
    fn a_file_of_another_layout_is_emptied_for_a_rebuild() {
        // Stored rows of an older layout are dropped and the checkpoint returns to 0.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v.db");
        let views = ViewStore::open(&path).unwrap();
        views
            .write(&[change("refunds", "k", Some("{}"))], 9)
            .unwrap();
        views
            .with(|conn| conn.execute("UPDATE views_meta SET layout = 'v0:old'", []))
            .unwrap();
        drop(views);
        let views = ViewStore::open(&path).unwrap();
        assert_eq!(views.checkpoint().unwrap(), 0);
        assert!(views.rows("refunds").unwrap().is_empty());
    }
}
