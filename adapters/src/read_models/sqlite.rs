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
            if stored.as_deref() == Some(layout.marker().as_str()) {
                create_list_indexes(conn, layout)?;
            } else {
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

    fn order_page(
        &self,
        merchant: &str,
        status: Option<&str>,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<String>, ReadModelError> {
        self.table(ORDER_STATUS)?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        // Every order number is longer than "": no cursor starts at the first.
        let after = after.unwrap_or("");
        self.with(|conn| match status {
            Some(status) => conn
                .prepare_cached(&page_by_status_sql())?
                .query_map(params![merchant, status, after, limit], |row| row.get(0))?
                .collect(),
            None => conn
                .prepare_cached(&page_by_merchant_sql())?
                .query_map(params![merchant, after, limit], |row| row.get(0))?
                .collect(),
        })
    }

    fn order_status_counts(
        &self,
        merchant: &str,
        since: chrono::DateTime<chrono::Utc>,
    ) -> Result<BTreeMap<String, u64>, ReadModelError> {
        self.table(ORDER_STATUS)?;
        let since = since.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        self.with(|conn| {
            let mut statement = conn.prepare_cached(&format!(
                "SELECT {ROW_STATUS}, count(*) FROM {ORDER_STATUS} \
                 WHERE {KEY_MERCHANT} = ?1 \
                 AND julianday(json_extract(row, '$.created_at')) >= julianday(?2) \
                 GROUP BY 1"
            ))?;
            let counts = statement
                .query_map(params![merchant, since], |row| {
                    Ok((row.get::<_, String>(0)?, row.get::<_, i64>(1)?))
                })?
                .map(|row| row.map(|(status, count)| (status, u64::try_from(count).unwrap_or(0))))
                .collect::<rusqlite::Result<BTreeMap<String, u64>>>()?;
            Ok(counts)
        })
    }

    fn merchant_rows(
        &self,
        projection: &str,
        merchant: Option<&str>,
    ) -> Result<Vec<(String, String)>, ReadModelError> {
        let table = self.table(projection)?;
        self.with(|conn| {
            let mut statement = conn.prepare_cached(&format!(
                "SELECT key, row FROM {table} WHERE ?1 IS NULL OR {KEY_MERCHANT} = ?1 ORDER BY key"
            ))?;
            let rows = statement
                .query_map([merchant], |row| Ok((row.get(0)?, row.get(1)?)))?
                .collect::<rusqlite::Result<Vec<(String, String)>>>()?;
            Ok(rows)
        })
    }
}

/// The read model whose rows the order lists come from, and the parts of
/// its JSON they are ordered and filtered by. The indexes below are on the
/// same expressions, character for character, so SQLite uses them.
const ORDER_STATUS: &str = "order_status";
const KEY_MERCHANT: &str = "json_extract(key, '$.merchant_id')";
const KEY_ORDER_NO: &str = "json_extract(key, '$.order_no')";
const ROW_STATUS: &str = "json_extract(row, '$.status')";

/// The indexes the order lists need, created with the `order_status`
/// table, and on opening a file made before them (once; from its rows).
fn create_list_indexes(conn: &Connection, layout: Layout) -> rusqlite::Result<()> {
    if !layout.names.contains(&ORDER_STATUS) {
        return Ok(());
    }
    conn.execute_batch(&format!(
        "CREATE INDEX IF NOT EXISTS {ORDER_STATUS}_by_merchant \
             ON {ORDER_STATUS} ({KEY_MERCHANT}, {KEY_ORDER_NO});
         CREATE INDEX IF NOT EXISTS {ORDER_STATUS}_by_status \
             ON {ORDER_STATUS} ({KEY_MERCHANT}, {ROW_STATUS}, {KEY_ORDER_NO});"
    ))
}

/// A page of one merchant's orders of one status: `?1` merchant, `?2`
/// status, `?3` the number to start after, `?4` the page's size.
fn page_by_status_sql() -> String {
    format!(
        "SELECT {KEY_ORDER_NO} FROM {ORDER_STATUS} \
         WHERE {KEY_MERCHANT} = ?1 AND {ROW_STATUS} = ?2 AND {KEY_ORDER_NO} > ?3 \
         ORDER BY {KEY_ORDER_NO} LIMIT ?4"
    )
}

/// A page of one merchant's orders: `?1` merchant, `?2` the number to
/// start after, `?3` the page's size.
fn page_by_merchant_sql() -> String {
    format!(
        "SELECT {KEY_ORDER_NO} FROM {ORDER_STATUS} \
         WHERE {KEY_MERCHANT} = ?1 AND {KEY_ORDER_NO} > ?2 \
         ORDER BY {KEY_ORDER_NO} LIMIT ?3"
    )
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
    create_list_indexes(&tx, layout)?;
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

    /// A stored key as the read models write them: JSON (the list indexes read it).
    const K1: &str = r#"{"merchant_id":"m1","order_no":"A1"}"#;

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
            .write(&[change("order_status", K1, Some("{\"a\":1}"))], 3)
            .unwrap();
        views.crash_before_next_commit();
        let crashed = views.write(
            &[
                change("order_status", K1, None),
                change("in_flight", "k2", Some("{}")),
            ],
            7,
        );
        assert!(matches!(crashed, Err(ReadModelError::SimulatedCrash)));
        drop(views);
        let views = SqliteReadModelStore::open(&path, LAYOUT).unwrap();
        assert_eq!(views.checkpoint().unwrap(), 3);
        assert_eq!(
            views.row("order_status", K1).unwrap().as_deref(),
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

    fn order_row(
        merchant: &str,
        order_no: &str,
        status: &str,
        created_at: &str,
    ) -> (String, String) {
        (
            format!(r#"{{"merchant_id":"{merchant}","order_no":"{order_no}"}}"#),
            format!(r#"{{"status":"{status}","created_at":"{created_at}"}}"#),
        )
    }

    fn store_orders(views: &SqliteReadModelStore, orders: &[(String, String)]) {
        let changes: Vec<RowChange<'_>> = orders
            .iter()
            .map(|(key, row)| change("order_status", key, Some(row)))
            .collect();
        views.write(&changes, 1).unwrap();
    }

    #[test]
    fn order_lists_page_by_number_within_a_merchant_and_a_status() {
        let views = SqliteReadModelStore::in_memory(LAYOUT).unwrap();
        let day = "2026-11-22T02:00:00Z";
        store_orders(
            &views,
            &[
                order_row("m1", "A10", "paid", day),
                order_row("m1", "A1", "paying", day),
                order_row("m1", "A2", "paid", day),
                order_row("m10", "A0", "paid", day),
                order_row("m", "A3", "paid", day),
            ],
        );
        // Byte order of the numbers, one merchant only ("m" and "m10" are others).
        assert_eq!(
            views.order_page("m1", None, None, 10).unwrap(),
            ["A1", "A10", "A2"]
        );
        assert_eq!(
            views.order_page("m1", None, None, 2).unwrap(),
            ["A1", "A10"]
        );
        assert_eq!(
            views.order_page("m1", None, Some("A10"), 2).unwrap(),
            ["A2"]
        );
        assert_eq!(
            views.order_page("m1", Some("paid"), None, 10).unwrap(),
            ["A10", "A2"]
        );
        assert_eq!(
            views
                .order_page("m1", Some("paid"), Some("A10"), 10)
                .unwrap(),
            ["A2"]
        );
        assert!(
            views
                .order_page("m1", Some("closed"), None, 10)
                .unwrap()
                .is_empty()
        );
        // An order that moves leaves its old status's list.
        store_orders(&views, &[order_row("m1", "A1", "paid", day)]);
        assert_eq!(
            views.order_page("m1", Some("paid"), None, 10).unwrap(),
            ["A1", "A10", "A2"]
        );
        assert!(
            views
                .order_page("m1", Some("paying"), None, 10)
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn order_lists_are_read_through_their_indexes_not_by_scanning_every_order() {
        let views = SqliteReadModelStore::in_memory(LAYOUT).unwrap();
        let plan = |sql: &str, parameters: &[&dyn rusqlite::ToSql]| -> String {
            views
                .with(|conn| {
                    let mut statement = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}"))?;
                    let details = statement
                        .query_map(parameters, |row| row.get::<_, String>(3))?
                        .collect::<rusqlite::Result<Vec<String>>>()?;
                    Ok(details.join("; "))
                })
                .unwrap()
        };
        let by_status = plan(&page_by_status_sql(), params!["m1", "paid", "", 10]);
        assert!(
            by_status.contains("INDEX order_status_by_status"),
            "{by_status}"
        );
        assert!(!by_status.contains("TEMP B-TREE"), "{by_status}");
        let by_merchant = plan(&page_by_merchant_sql(), params!["m1", "", 10]);
        assert!(
            by_merchant.contains("INDEX order_status_by_merchant"),
            "{by_merchant}"
        );
        assert!(!by_merchant.contains("TEMP B-TREE"), "{by_merchant}");
    }

    #[test]
    fn a_file_of_the_same_layout_made_before_the_list_indexes_gets_them_on_opening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("paycode-views.db");
        drop(SqliteReadModelStore::open(&path, LAYOUT).unwrap());
        {
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch(
                "DROP INDEX order_status_by_merchant; DROP INDEX order_status_by_status;",
            )
            .unwrap();
        }
        let views = SqliteReadModelStore::open(&path, LAYOUT).unwrap();
        let indexes: i64 = views
            .with(|conn| {
                conn.query_row(
                    "SELECT count(*) FROM sqlite_master WHERE type = 'index' \
                     AND name IN ('order_status_by_merchant', 'order_status_by_status')",
                    [],
                    |row| row.get(0),
                )
            })
            .unwrap();
        assert_eq!(indexes, 2);
    }

    #[test]
    fn status_counts_take_the_orders_created_since_an_instant_to_the_millisecond() {
        let views = SqliteReadModelStore::in_memory(LAYOUT).unwrap();
        store_orders(
            &views,
            &[
                order_row("m1", "A1", "paid", "2026-11-21T15:59:59.999Z"),
                order_row("m1", "A2", "paid", "2026-11-21T16:00:00Z"),
                order_row("m1", "A3", "paid", "2026-11-21T16:00:00.250Z"),
                order_row("m1", "A4", "paying", "2026-11-22T01:00:00.123456789Z"),
                order_row("m2", "A5", "paid", "2026-11-22T01:00:00Z"),
            ],
        );
        let since = chrono::DateTime::parse_from_rfc3339("2026-11-21T16:00:00Z")
            .unwrap()
            .to_utc();
        let counts = views.order_status_counts("m1", since).unwrap();
        assert_eq!(
            counts.into_iter().collect::<Vec<_>>(),
            [("paid".to_owned(), 2), ("paying".to_owned(), 1)]
        );
    }

    #[test]
    fn merchant_rows_are_one_merchants_or_everyones() {
        let views = SqliteReadModelStore::in_memory(LAYOUT).unwrap();
        let day = "2026-11-22T02:00:00Z";
        store_orders(
            &views,
            &[
                order_row("m1", "A1", "paid", day),
                order_row("m2", "A1", "paid", day),
            ],
        );
        assert_eq!(
            views
                .merchant_rows("order_status", Some("m1"))
                .unwrap()
                .len(),
            1
        );
        assert_eq!(views.merchant_rows("order_status", None).unwrap().len(), 2);
        assert!(
            views
                .merchant_rows("in_flight", Some("m1"))
                .unwrap()
                .is_empty()
        );
        assert!(views.merchant_rows("no_such_model", None).is_err());
    }
}
