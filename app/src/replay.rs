//! `paycode replay`: rebuilds every read model from position 0 of the log
//! into fresh memory, compares it row by row with the stored (live) read
//! models, and prints a summary. Any difference makes it exit non-zero.
//!
//! The rebuild stops at the stored checkpoint, so a live service that is
//! still catching up is compared at the position it claims, not at the head.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};
use paycode_adapters::store::EventStore;
use paycode_domain::payment::stored;
use paycode_projections::{PositionedEvent, Projections, is_payment_stream};

use crate::config::{Config, StoreKind};
use crate::projection_runner::RunnerError;
use crate::views::{ViewStore, views_path_beside};

/// Events read per batch while rebuilding.
const REBUILD_BATCH_MAX: usize = 10_000;

/// What is wrong with one stored row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DifferenceKind {
    /// The rebuild has the row; the stored read model does not.
    Missing,
    /// The stored read model has a row the rebuild does not.
    Unexpected,
    /// Both have it, with different contents.
    Different,
}

/// One stored row that does not match the rebuild.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Difference {
    pub projection: &'static str,
    /// The row's key, as stored (JSON).
    pub key: String,
    pub kind: DifferenceKind,
}

/// One read model's counts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProjectionSummary {
    pub name: &'static str,
    pub rebuilt_rows: usize,
    pub stored_rows: usize,
    pub differences: usize,
}

/// The outcome of a replay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplayReport {
    /// The views file compared.
    pub views: String,
    /// The stored checkpoint: the rebuild covers positions 1..=checkpoint.
    pub checkpoint: u64,
    /// The log's head when the replay started.
    pub head: u64,
    /// Events read by the rebuild.
    pub events: u64,
    pub projections: Vec<ProjectionSummary>,
    pub differences: Vec<Difference>,
}

impl ReplayReport {
    pub fn is_clean(&self) -> bool {
        self.differences.is_empty()
    }

    /// The process exit code: 0 when the stored read models equal the rebuild.
    pub fn exit_code(&self) -> i32 {
        if self.is_clean() { 0 } else { 1 }
    }
}

impl fmt::Display for ReplayReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "replay: rebuilt {} read models from {} events (positions 1..={}, the stored checkpoint; the log's head is {})",
            self.projections.len(),
            self.events,
            self.checkpoint,
            self.head,
        )?;
        writeln!(f, "stored read models: {}", self.views)?;
        writeln!(
            f,
            "  {:<16} {:>12} {:>12} {:>12}",
            "read model", "rebuilt rows", "stored rows", "differences"
        )?;
        for summary in &self.projections {
            writeln!(
                f,
                "  {:<16} {:>12} {:>12} {:>12}",
                summary.name, summary.rebuilt_rows, summary.stored_rows, summary.differences
            )?;
        }
        if self.is_clean() {
            writeln!(f, "no differences")?;
        } else {
            writeln!(f, "{} difference(s):", self.differences.len())?;
            for difference in &self.differences {
                let what = match difference.kind {
                    DifferenceKind::Missing => "missing from the stored read model",
                    DifferenceKind::Unexpected => "stored, but not in the rebuild",
                    DifferenceKind::Different => "stored row differs from the rebuild",
                };
                writeln!(f, "  {} {}: {what}", difference.projection, difference.key)?;
            }
        }
        if self.head > self.checkpoint {
            writeln!(
                f,
                "note: the stored read models lag the log by {} position(s); not a difference",
                self.head - self.checkpoint
            )?;
        }
        Ok(())
    }
}

/// Folds every event at positions `1..=up_to` into fresh read models,
/// ticking `progress` by position. Holes are not waited for: the log is
/// taken as it stands.
pub async fn rebuild(
    store: &dyn EventStore,
    up_to: u64,
    progress: &ProgressBar,
) -> Result<(Projections, u64), RunnerError> {
    let mut projections = Projections::new();
    let mut events = 0u64;
    let mut from = 1;
    while from <= up_to {
        let batch = store.read_all(from, REBUILD_BATCH_MAX).await?;
        let Some(last) = batch.last() else {
            break;
        };
        from = last.position + 1;
        for record in batch.iter().take_while(|record| record.position <= up_to) {
            events += 1;
            if !is_payment_stream(&record.stream) {
                projections.pass(record.position);
                continue;
            }
            let event = stored::decode(&record.event_type, record.schema_version, &record.data)
                .map_err(|source| RunnerError::Undecodable {
                    position: record.position,
                    source,
                })?;
            projections.apply(PositionedEvent {
                position: record.position,
                stream: &record.stream,
                version: record.version,
                event: &event,
            });
        }
        projections.flush();
        progress.set_position(projections.position().min(up_to));
    }
    Ok((projections, events))
}

/// Rebuilds up to `views`' checkpoint and compares row by row.
pub async fn compare(
    store: &dyn EventStore,
    views: &ViewStore,
    progress: &ProgressBar,
) -> Result<ReplayReport, RunnerError> {
    let checkpoint = views.checkpoint()?;
    let head = store.head_position().await.map_err(RunnerError::Store)?;
    progress.set_length(checkpoint);
    let (rebuilt, events) = rebuild(store, checkpoint, progress).await?;
    progress.finish_and_clear();
    let mut projections = Vec::new();
    let mut differences = Vec::new();
    for (name, rows) in rebuilt.stored_rows() {
        let rebuilt_rows: BTreeMap<String, String> = rows.into_iter().collect();
        let stored_rows = views.rows(name)?;
        let before = differences.len();
        for (key, row) in &rebuilt_rows {
            match stored_rows.get(key) {
                None => differences.push(Difference {
                    projection: name,
                    key: key.clone(),
                    kind: DifferenceKind::Missing,
                }),
                Some(stored) if !same_json(stored, row) => differences.push(Difference {
                    projection: name,
                    key: key.clone(),
                    kind: DifferenceKind::Different,
                }),
                Some(_) => {}
            }
        }
        for key in stored_rows.keys() {
            if !rebuilt_rows.contains_key(key) {
                differences.push(Difference {
                    projection: name,
                    key: key.clone(),
                    kind: DifferenceKind::Unexpected,
                });
            }
        }
        projections.push(ProjectionSummary {
            name,
            rebuilt_rows: rebuilt_rows.len(),
            stored_rows: stored_rows.len(),
            differences: differences.len() - before,
        });
    }
    if checkpoint > head {
        // The views claim events the log does not have.
        differences.push(Difference {
            projection: "checkpoint",
            key: checkpoint.to_string(),
            kind: DifferenceKind::Unexpected,
        });
    }
    Ok(ReplayReport {
        views: views.label().to_owned(),
        checkpoint,
        head,
        events,
        projections,
        differences,
    })
}

/// Equal as JSON values (formatting aside); the same text is the fast path.
fn same_json(stored: &str, rebuilt: &str) -> bool {
    stored == rebuilt
        || matches!(
            (
                serde_json::from_str::<serde_json::Value>(stored),
                serde_json::from_str::<serde_json::Value>(rebuilt),
            ),
            (Ok(a), Ok(b)) if a == b
        )
}

/// The views file of a configuration: beside the SQLite ledger, or beside
/// `store.path` for EventStoreDB; `None` for the memory store (nothing kept).
pub fn views_path(config: &Config) -> Option<PathBuf> {
    match config.store.kind {
        StoreKind::Memory => None,
        StoreKind::Sqlite | StoreKind::Eventstoredb => {
            Some(views_path_beside(&config.resolve(&config.store.path)))
        }
    }
}

/// A progress bar on standard error (hidden when it is not a terminal).
pub fn progress_bar(show: bool) -> ProgressBar {
    if !show {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(0);
    if let Ok(style) = ProgressStyle::with_template(
        "rebuilding {bar:40} {pos}/{len} positions ({per_sec}, eta {eta})",
    ) {
        bar.set_style(style);
    }
    bar
}

/// `paycode replay [--config FILE]`: the configured store and its views file.
pub async fn run(config: Option<Config>, show_progress: bool) -> anyhow::Result<ReplayReport> {
    let config = config.unwrap_or_else(|| {
        Config::parse("", PathBuf::new()).expect("the empty configuration parses")
    });
    let Some(path) = views_path(&config) else {
        anyhow::bail!(
            "store.kind = \"memory\": the log and its read models live only inside `paycode serve`; nothing to compare"
        );
    };
    if !path.exists() {
        anyhow::bail!(
            "no stored read models at {}: `paycode serve` writes them beside the ledger",
            path.display()
        );
    }
    let store = crate::cli::open_store(&config)?;
    let views = ViewStore::open(&path)
        .with_context(|| format!("opening the read models {}", path.display()))?;
    let report = compare(store.as_ref(), &views, &progress_bar(show_progress))
        .await
        .context("rebuilding the read models from the log")?;
    Ok(report)
}

/// For tests and tools: the store behind an `Arc`.
pub async fn compare_arc(
    store: Arc<dyn EventStore>,
    views: &ViewStore,
) -> Result<ReplayReport, RunnerError> {
    compare(store.as_ref(), views, &ProgressBar::hidden()).await
}
