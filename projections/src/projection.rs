//! The `Projection` trait and `Table`, the rows one projection holds.
//!
//! A projection says which rows one source gives (`rows_of`, pure): an
//! order's fold, or a statement day's latest report. A `Table` keeps those
//! rows and, when a source moves, replaces that source's rows and reports
//! which keys changed. Rows are serializable so the app can store them; a
//! key serializes to the stored key.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::hash::Hash;

use foldhash::HashMap;
use serde::Serialize;

/// What a projection derives its rows from: one stream's fold.
pub trait Source {
    /// Which source it is (an order, a statement day).
    type Id: Clone + Eq + Hash + Debug;
    fn id(&self) -> &Self::Id;
}

/// One read model of the log, as a pure function of each source's fold.
pub trait Projection {
    /// The stored name (a SQL table name: lower case, `_`). A contract:
    /// renaming it orphans the stored rows.
    const NAME: &'static str;
    /// What identifies a row; its JSON form is the stored key.
    type Key: Clone + Ord + Debug + Serialize;
    /// One row; its JSON form is what is stored and compared.
    type Row: Clone + PartialEq + Debug + Serialize;
    /// The fold the rows come from.
    type Source: Source;

    /// Pushes every row this read model holds for `source` now, in any
    /// order, each key at most once. Pure: the same fold always gives the
    /// same rows.
    fn rows_of(source: &Self::Source, rows: &mut Vec<(Self::Key, Self::Row)>);
}

/// The id of a projection's sources.
type SourceId<P> = <<P as Projection>::Source as Source>::Id;

/// A change to one stored row: the new row, or `None` when it is gone.
#[derive(Debug, Clone, PartialEq)]
pub struct Change<P: Projection> {
    pub key: P::Key,
    pub row: Option<P::Row>,
}

/// The rows of one projection, with the keys each source contributed.
#[derive(Debug)]
pub struct Table<P: Projection> {
    rows: BTreeMap<P::Key, P::Row>,
    keys_by_source: HashMap<SourceId<P>, Vec<P::Key>>,
    /// Scratch space reused across refreshes (no allocation per event).
    scratch: Vec<(P::Key, P::Row)>,
    /// `false` for a lean table ([`Table::lean`]).
    keeps_rows: bool,
}

impl<P: Projection> Default for Table<P> {
    fn default() -> Self {
        Table {
            rows: BTreeMap::new(),
            keys_by_source: HashMap::default(),
            scratch: Vec::new(),
            keeps_rows: true,
        }
    }
}

impl<P: Projection> PartialEq for Table<P> {
    /// Two tables are equal when they hold the same rows.
    fn eq(&self, other: &Self) -> bool {
        self.rows == other.rows
    }
}

impl<P: Projection> Table<P> {
    /// A table that keeps only which keys each source has, not the rows:
    /// all a follower that stores every change needs (the rows are in the
    /// store). It reports every row of a refreshed source, changed or not
    /// (storing a row again is harmless), and each row gone; `rows` is
    /// always empty. Memory per source: its keys, not its rows.
    pub fn lean() -> Self {
        Table {
            keeps_rows: false,
            ..Table::default()
        }
    }

    /// Every row, in key order.
    pub fn rows(&self) -> &BTreeMap<P::Key, P::Row> {
        &self.rows
    }

    pub fn get(&self, key: &P::Key) -> Option<&P::Row> {
        self.rows.get(key)
    }

    pub fn len(&self) -> usize {
        self.rows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Replaces `source`'s rows with what its fold gives now; pushes the
    /// changes (rows added, altered or gone) onto `changes` when given.
    pub fn refresh(&mut self, source: &P::Source, changes: Option<&mut Vec<Change<P>>>) {
        let mut scratch = std::mem::take(&mut self.scratch);
        scratch.clear();
        P::rows_of(source, &mut scratch);
        let old_keys = self.keys_by_source.remove(source.id()).unwrap_or_default();
        let mut new_keys = Vec::with_capacity(scratch.len());
        let mut changes = changes;
        for key in old_keys {
            if !scratch.iter().any(|(new_key, _)| *new_key == key) {
                self.rows.remove(&key);
                if let Some(changes) = changes.as_deref_mut() {
                    changes.push(Change { key, row: None });
                }
            }
        }
        for (key, row) in scratch.drain(..) {
            new_keys.push(key.clone());
            if !self.keeps_rows {
                if let Some(changes) = changes.as_deref_mut() {
                    changes.push(Change {
                        key,
                        row: Some(row),
                    });
                }
                continue;
            }
            if self.rows.get(&key) == Some(&row) {
                continue;
            }
            if let Some(changes) = changes.as_deref_mut() {
                changes.push(Change {
                    key: key.clone(),
                    row: Some(row.clone()),
                });
            }
            self.rows.insert(key, row);
        }
        if !new_keys.is_empty() {
            self.keys_by_source.insert(source.id().clone(), new_keys);
        }
        self.scratch = scratch;
    }

    /// Forgets `source`'s rows without reporting a change (they stay stored).
    pub fn forget(&mut self, source: &SourceId<P>) {
        for key in self.keys_by_source.remove(source).unwrap_or_default() {
            self.rows.remove(&key);
        }
    }
}
