//! Runs the read models (`paycode-projections`) from the store's global
//! order and stores each batch's changed rows with the checkpoint in one
//! transaction (`views.rs`). On start it continues after the stored
//! checkpoint; an order first met again after a restart is seeded from its
//! stream (the events at or before the checkpoint), so the pure fold goes on
//! where it stopped.
//!
//! The gap rule: when the store's positions are dense
//! (`EventStore::dense_positions`, the memory and SQLite stores), the runner
//! never moves past a missing position. A read that returns `p + 2` after
//! `p` is a commit not yet visible: the runner applies nothing beyond `p`
//! and re-reads every `hole_poll` until `p + 1` appears. Only one rule
//! declares a hole permanent: it is still missing after `hole_wait_max`;
//! the runner then logs it, counts it (`holes_skipped`) and goes on, and
//! `paycode replay` shows any event that fills it later as a difference.
//! With sparse positions (EventStoreDB) every event read is final and the
//! runner never waits.

use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use paycode_adapters::read_models::{
    Layout, ReadModelError, ReadModelStore, RowChange, SqliteReadModelStore,
};
use paycode_adapters::store::{EventStore, RecordedEvent, StoreError};
use paycode_domain::payment::{self, PaymentStatus};
use paycode_domain::reconciliation::ReconciliationEvent;
use paycode_projections::{
    PROJECTION_NAMES, PositionedEvent, PositionedReconciliation, Projections, is_payment_stream,
    is_reconciliation_stream,
};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tracing::{info, warn};

/// The default of [`RunnerOptions::orders_in_memory_max`]: ample for the
/// orders a busy service moves within seconds (`bench e2e` has a few
/// hundred unsettled at once), so that only orders that wait longer (for a
/// password, a revoke, an operator) are read again when they move.
pub const ORDERS_IN_MEMORY_MAX: usize = 4_096;

/// Streams read at once to seed the orders of one batch.
const SEED_READS_IN_PARALLEL: usize = 8;

/// How the runner reads and waits.
#[derive(Debug, Clone, Copy)]
pub struct RunnerOptions {
    /// Events read and stored per batch (one transaction).
    pub batch_max: usize,
    /// How long a missing position of a dense store is waited for before
    /// it is declared permanent.
    pub hole_wait_max: Duration,
    /// How often a missing position is re-read while waiting.
    pub hole_poll: Duration,
    /// Unsettled orders whose fold is kept in memory, at most (plus a
    /// quarter between trims). Beyond it the least recently moved are
    /// dropped and seeded again from their stream when they next move: the
    /// runner's memory is this bound, not the number of orders waiting.
    pub orders_in_memory_max: usize,
}

impl Default for RunnerOptions {
    fn default() -> Self {
        RunnerOptions {
            batch_max: 1_000,
            hole_wait_max: Duration::from_secs(30),
            hole_poll: Duration::from_millis(20),
            orders_in_memory_max: ORDERS_IN_MEMORY_MAX,
        }
    }
}

/// Why the runner stopped. Every variant stops it; a restart resumes from
/// the stored checkpoint.
#[derive(Debug, thiserror::Error)]
pub enum RunnerError {
    /// The store failed: retry later (the checkpoint did not move).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The read-model storage failed: fix or delete the views file, restart.
    #[error(transparent)]
    Views(#[from] ReadModelError),
    /// An event of a payment stream does not decode: an operator must look
    /// (a newer program's schema, or a damaged log). Never skipped.
    #[error("event at position {position} does not decode: {source}")]
    Undecodable {
        position: u64,
        #[source]
        source: paycode_domain::stored::DecodeError,
    },
    /// The storage task panicked or was cancelled.
    #[error("the read-model storage task failed: {0}")]
    Task(String),
}

/// The stored form of the read models: one table per projection.
pub const LAYOUT: Layout = Layout {
    names: &PROJECTION_NAMES,
    // Bump it when a row's JSON form changes; stored rows are then rebuilt.
    version: 1,
};

/// The read models stored in `path` (created if need be).
pub fn open_read_models(path: &Path) -> Result<Arc<dyn ReadModelStore>, ReadModelError> {
    Ok(SqliteReadModelStore::open(path, LAYOUT)?)
}

/// The read models stored in `path`, to compare only: nothing is written to
/// the file or beside it, and a file of another layout is an error.
pub fn open_read_models_read_only(path: &Path) -> Result<Arc<dyn ReadModelStore>, ReadModelError> {
    Ok(SqliteReadModelStore::open_read_only(path, LAYOUT)?)
}

/// The read models in memory, for a store that keeps nothing across restarts.
pub fn in_memory_read_models() -> Result<Arc<dyn ReadModelStore>, ReadModelError> {
    Ok(SqliteReadModelStore::in_memory(LAYOUT)?)
}

/// What one step did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// A batch was applied and stored; the checkpoint is now `position`.
    Applied { events: usize, position: u64 },
    /// Nothing after the checkpoint yet.
    CaughtUp,
    /// The next position is missing (a slow commit); nothing was applied.
    WaitingForHole { position: u64 },
}

/// The read models, following one store.
#[derive(Debug)]
pub struct ProjectionRunner {
    store: Arc<dyn EventStore>,
    views: Arc<dyn ReadModelStore>,
    projections: Projections,
    options: RunnerOptions,
    /// The missing position being waited for, and since when.
    hole: Option<(u64, Instant)>,
    /// Holes declared permanent since the start.
    pub holes_skipped: u64,
}

impl ProjectionRunner {
    /// A runner that continues after `views`' checkpoint. A checkpoint past
    /// the store's head means the views belong to another log (a memory
    /// store restarted, a ledger replaced): they are emptied and rebuilt.
    pub async fn open(
        store: Arc<dyn EventStore>,
        views: Arc<dyn ReadModelStore>,
        options: RunnerOptions,
    ) -> Result<ProjectionRunner, RunnerError> {
        let mut checkpoint = views.checkpoint()?;
        let head = store.head_position().await?;
        if checkpoint > head {
            warn!(
                checkpoint,
                head,
                views = views.label(),
                "the stored read models are ahead of the log: rebuilding them from the start"
            );
            views.reset()?;
            checkpoint = 0;
        }
        info!(
            checkpoint,
            head,
            views = views.label(),
            "read models resume"
        );
        Ok(ProjectionRunner {
            store,
            views,
            projections: Projections::lean_starting_after(checkpoint),
            options,
            hole: None,
            holes_skipped: 0,
        })
    }

    /// The position the stored read models reflect.
    pub fn checkpoint(&self) -> u64 {
        self.projections.position()
    }

    pub fn views(&self) -> &Arc<dyn ReadModelStore> {
        &self.views
    }

    /// Reads, applies and stores one batch.
    pub async fn step(&mut self) -> Result<Step, RunnerError> {
        let checkpoint = self.projections.position();
        let from = checkpoint + 1;
        let batch = self.store.read_all(from, self.options.batch_max).await?;
        let Some(first) = batch.first() else {
            self.hole = None;
            return Ok(Step::CaughtUp);
        };
        let usable = if self.store.dense_positions() {
            let contiguous_from = |start: u64| {
                batch
                    .iter()
                    .zip(start..)
                    .take_while(|(event, expected)| event.position == *expected)
                    .count()
            };
            match contiguous_from(from) {
                0 => {
                    let since = match self.hole {
                        Some((position, since)) if position == from => since,
                        _ => {
                            let now = Instant::now();
                            self.hole = Some((from, now));
                            now
                        }
                    };
                    if since.elapsed() < self.options.hole_wait_max {
                        return Ok(Step::WaitingForHole { position: from });
                    }
                    warn!(
                        missing_from = from,
                        next_present = first.position,
                        waited_ms = u64::try_from(since.elapsed().as_millis()).unwrap_or(u64::MAX),
                        "positions still missing after the wait: declared permanent, moving on"
                    );
                    self.holes_skipped += 1;
                    self.hole = None;
                    contiguous_from(first.position)
                }
                usable => {
                    self.hole = None;
                    usable
                }
            }
        } else {
            batch.len()
        };
        let result = self.apply_and_store(&batch[..usable]).await;
        if result.is_err() {
            // The stored checkpoint did not move: start over from it, so the
            // next step re-applies exactly what was not stored.
            self.projections = Projections::lean_starting_after(checkpoint);
        }
        result?;
        Ok(Step::Applied {
            events: usable,
            position: self.projections.position(),
        })
    }

    async fn apply_and_store(&mut self, events: &[RecordedEvent]) -> Result<(), RunnerError> {
        let decoded = events.iter().map(decode).collect::<Result<Vec<_>, _>>()?;
        self.seed_unknown(events, &decoded).await?;
        for (record, event) in events.iter().zip(&decoded) {
            apply(&mut self.projections, record, event);
        }
        let changes = self.projections.take_changes();
        let stored = changes.to_stored();
        let views = self.views.clone();
        let position = changes.position;
        tokio::task::spawn_blocking(move || {
            let rows: Vec<RowChange<'_>> = stored
                .iter()
                .map(|change| RowChange {
                    projection: change.projection,
                    key: &change.key,
                    row: change.row.as_deref(),
                })
                .collect();
            views.write(&rows, position)
        })
        .await
        .map_err(|error| RunnerError::Task(error.to_string()))??;
        // Settled orders need no fold in memory; a late event seeds them again.
        self.projections
            .forget(|fold| fold.state.status().is_some_and(PaymentStatus::is_terminal));
        self.projections
            .forget_least_recent(self.options.orders_in_memory_max);
        Ok(())
    }

    /// Seeds every order of the batch whose fold is not in memory (met
    /// again after a restart, or dropped as settled or least recently
    /// moved) from the events before its first one in the batch. The
    /// streams are read [`SEED_READS_IN_PARALLEL`] at a time: with many
    /// orders waiting, most events of a batch can be of such orders.
    async fn seed_unknown(
        &mut self,
        events: &[RecordedEvent],
        decoded: &[Decoded],
    ) -> Result<(), RunnerError> {
        let mut firsts: Vec<&RecordedEvent> = Vec::new();
        let mut met: HashSet<&str> = HashSet::new();
        for (record, event) in events.iter().zip(decoded) {
            if !matches!(event, Decoded::Ignored)
                && met.insert(record.stream.as_str())
                && record.version > 0
                && !self.projections.knows(&record.stream)
            {
                firsts.push(record);
            }
        }
        for wave in firsts.chunks(SEED_READS_IN_PARALLEL) {
            let mut reads = JoinSet::new();
            for (index, record) in wave.iter().enumerate() {
                let (store, stream) = (self.store.clone(), record.stream.clone());
                reads.spawn(async move { (index, store.read_stream(&stream).await) });
            }
            let mut histories: Vec<Option<Vec<RecordedEvent>>> = vec![None; wave.len()];
            while let Some(read) = reads.join_next().await {
                let (index, history) =
                    read.map_err(|error| RunnerError::Task(error.to_string()))?;
                histories[index] = Some(history?);
            }
            for (record, history) in wave.iter().zip(histories) {
                // Every task answered above, or the batch already failed.
                let history = history.ok_or_else(|| {
                    RunnerError::Task(format!("the read of {} gave no answer", record.stream))
                })?;
                self.seed(record, &history)?;
            }
        }
        Ok(())
    }

    /// Folds the events of `record`'s stream (`history`) that came before
    /// it: those the stored rows already reflect.
    fn seed(
        &mut self,
        record: &RecordedEvent,
        history: &[RecordedEvent],
    ) -> Result<(), RunnerError> {
        let earlier: Vec<(u64, Decoded)> = history
            .iter()
            .filter(|earlier| earlier.position < record.position)
            .map(|earlier| decode(earlier).map(|event| (earlier.version, event)))
            .collect::<Result<_, RunnerError>>()?;
        if is_reconciliation_stream(&record.stream) {
            let events = earlier.iter().filter_map(|(version, event)| match event {
                Decoded::Reconciliation(event) => Some((*version, event)),
                _ => None,
            });
            self.projections.seed_reconciliation(&record.stream, events);
        } else {
            let events = earlier.iter().filter_map(|(version, event)| match event {
                Decoded::Payment(event) => Some((*version, event)),
                _ => None,
            });
            self.projections.seed(&record.stream, events);
        }
        Ok(())
    }

    /// Applies until nothing is left after the checkpoint (waiting out holes).
    pub async fn catch_up(&mut self) -> Result<u64, RunnerError> {
        loop {
            match self.step().await? {
                Step::Applied { .. } => {}
                Step::CaughtUp => return Ok(self.checkpoint()),
                Step::WaitingForHole { .. } => tokio::time::sleep(self.options.hole_poll).await,
            }
        }
    }

    /// Follows the store until the future is dropped or a step fails.
    /// Cancel-safe between batches: a dropped future loses nothing stored.
    pub async fn follow(mut self) -> Result<(), RunnerError> {
        loop {
            match self.step().await? {
                Step::Applied { .. } => {}
                Step::CaughtUp => self.store.wait_for_head_past(self.checkpoint()).await?,
                Step::WaitingForHole { .. } => tokio::time::sleep(self.options.hole_poll).await,
            }
        }
    }
}

/// A stored event as the read models see it.
#[derive(Debug)]
pub(crate) enum Decoded {
    Payment(payment::Event),
    Reconciliation(ReconciliationEvent),
    /// An event of a stream no read model reads: it only moves the position.
    Ignored,
}

/// Decodes `record` by the kind of its stream.
pub(crate) fn decode(record: &RecordedEvent) -> Result<Decoded, RunnerError> {
    let decoded = if is_payment_stream(&record.stream) {
        record.decode().map(Decoded::Payment)
    } else if is_reconciliation_stream(&record.stream) {
        record.decode().map(Decoded::Reconciliation)
    } else {
        Ok(Decoded::Ignored)
    };
    decoded.map_err(|source| RunnerError::Undecodable {
        position: record.position,
        source,
    })
}

/// Applies a decoded event at `record`'s place in the log (idempotent by position).
pub(crate) fn apply(projections: &mut Projections, record: &RecordedEvent, event: &Decoded) {
    apply_at(
        projections,
        record.position,
        &record.stream,
        record.version,
        event,
    );
}

/// [`apply`] for an event whose record was taken apart.
pub(crate) fn apply_at(
    projections: &mut Projections,
    position: u64,
    stream: &str,
    version: u64,
    event: &Decoded,
) {
    match event {
        Decoded::Payment(event) => {
            projections.apply(PositionedEvent {
                position,
                stream,
                version,
                event,
            });
        }
        Decoded::Reconciliation(event) => {
            projections.apply_reconciliation(PositionedReconciliation {
                position,
                stream,
                version,
                event,
            });
        }
        Decoded::Ignored => projections.pass(position),
    }
}

#[cfg(test)]
mod tests;
