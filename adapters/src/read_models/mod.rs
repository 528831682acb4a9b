//! The read-model store port: where the read models' rows live, beside the
//! checkpoint (the global position of the log they reflect). The read
//! models themselves (`paycode-projections`) are pure; the app's runner
//! folds the log and hands each batch's changed rows here.
//!
//! A store keeps rows as JSON text keyed by JSON text, one table per read
//! model, and writes a batch's changes and its new checkpoint atomically, so
//! a crash leaves either the whole batch or none of it: no event is skipped
//! or applied twice. Everything stored is rebuildable from the log.

use std::collections::BTreeMap;
use std::fmt;

pub mod sqlite;

pub use sqlite::SqliteReadModelStore;

/// What the stored rows are made of: the read models' names (one table
/// each) and the version of their row forms. A store holding another
/// layout is emptied and rebuilt from position 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    pub names: &'static [&'static str],
    /// Bump it when a row's JSON form changes.
    pub version: u32,
}

impl Layout {
    /// The layout as the store records it, e.g. `v1:order_status,refunds`.
    pub fn marker(&self) -> String {
        format!("v{}:{}", self.version, self.names.join(","))
    }
}

/// One changed row of one read model: its JSON key and JSON row (`None`: deleted).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RowChange<'a> {
    pub projection: &'a str,
    pub key: &'a str,
    pub row: Option<&'a str>,
}

/// A failure of the read-model storage. The runner stops; the read models
/// are rebuildable, so an operator may delete the file and restart.
#[derive(Debug, thiserror::Error)]
pub enum ReadModelError {
    #[error("read-model storage {path}: {source}")]
    Sqlite {
        path: String,
        #[source]
        source: rusqlite::Error,
    },
    /// The file cannot be opened without writing to it.
    #[error("read-model storage: {0}")]
    ReadOnly(#[from] crate::read_only::ReadOnlyError),
    /// A file opened read-only holds read models of another layout.
    #[error(
        "read-model storage {path} holds layout {stored}, this program's is {expected} \
         (`paycode serve` rebuilds it on start)"
    )]
    OtherLayout {
        path: String,
        stored: String,
        expected: String,
    },
    /// Not a read model of the layout (a bug in the caller).
    #[error("unknown read model {0:?}")]
    UnknownProjection(String),
    /// A simulated crash between writing rows and committing (tests only).
    #[error("simulated crash before the commit")]
    SimulatedCrash,
}

/// Where the read models are stored.
pub trait ReadModelStore: Send + Sync + fmt::Debug {
    /// The file (or `:memory:`), for messages.
    fn label(&self) -> &str;

    /// The global position the stored rows reflect (0: none).
    fn checkpoint(&self) -> Result<u64, ReadModelError>;

    /// Empties every read model and sets the checkpoint to 0 (rebuild from the start).
    fn reset(&self) -> Result<(), ReadModelError>;

    /// Stores one batch: the changed rows and the new checkpoint, atomically.
    fn write(&self, changes: &[RowChange<'_>], position: u64) -> Result<(), ReadModelError>;

    /// Every stored row of one read model: key JSON → row JSON.
    fn rows(&self, projection: &str) -> Result<BTreeMap<String, String>, ReadModelError>;

    /// One stored row, if any.
    fn row(&self, projection: &str, key: &str) -> Result<Option<String>, ReadModelError>;

    /// Order numbers of `merchant` from the `order_status` rows, in byte
    /// order after `after` (from the first when `None`), at most `limit`,
    /// of one `status` (its stored name) or of any. Served by an index: the
    /// cost is the page's, not the number of orders.
    fn order_page(
        &self,
        merchant: &str,
        status: Option<&str>,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<String>, ReadModelError>;

    /// How many of `merchant`'s orders created at or after `since` are in
    /// each status (stored name → count), from the `order_status` rows.
    fn order_status_counts(
        &self,
        merchant: &str,
        since: chrono::DateTime<chrono::Utc>,
    ) -> Result<BTreeMap<String, u64>, ReadModelError>;

    /// The rows (key JSON, row JSON) of `projection` whose key names
    /// `merchant` (`merchant_id`), or of every merchant when `None`.
    fn merchant_rows(
        &self,
        projection: &str,
        merchant: Option<&str>,
    ) -> Result<Vec<(String, String)>, ReadModelError>;
}
