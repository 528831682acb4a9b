//! `paycode replay`: rebuilds every read model from position 0 of the log
//! into fresh memory, compares it row by row with the stored (live) read
//! models, and prints a summary. Any difference makes it exit non-zero.
//!
//! The rebuild stops at the stored checkpoint, so a live service that is
//! still catching up is compared at the position it claims, not at the head.
//! Without stored read models beside the ledger (an auditor's copy of
//! `paycode.db` alone), it rebuilds up to the head and prints what it built.
//! The ledger and the stored read models are opened read-only: nothing is
//! written to either file or beside them.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};
use paycode_adapters::store::{EventStore, RecordedEvent};
use paycode_projections::Projections;

use paycode_adapters::read_models::ReadModelStore;

use crate::config::store::{LedgerSource, open_ledger_read_only};
use crate::read::runner::{Decoded, RunnerError, apply_at, decode, open_read_models_read_only};

/// Events read per batch while rebuilding.
pub(crate) const REBUILD_BATCH_MAX: usize = 10_000;

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
    /// The views file compared; `None` when there was none: the read models
    /// were rebuilt up to the head and nothing was compared.
    pub views: Option<String>,
    /// The stored checkpoint (the head when nothing was compared): the
    /// rebuild covers positions 1..=checkpoint.
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
        i32::from(!self.is_clean())
    }
}

impl fmt::Display for ReplayReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Some(views) = &self.views else {
            writeln!(
                f,
                "replay: rebuilt {} read models from {} events (positions 1..={}, the log's head)",
                self.projections.len(),
                self.events,
                self.head,
            )?;
            writeln!(
                f,
                "no stored read models beside the ledger: nothing compared"
            )?;
            writeln!(f, "  {:<16} {:>12}", "read model", "rebuilt rows")?;
            for summary in &self.projections {
                writeln!(f, "  {:<16} {:>12}", summary.name, summary.rebuilt_rows)?;
            }
            return Ok(());
        };
        writeln!(
            f,
            "replay: rebuilt {} read models from {} events (positions 1..={}, the stored checkpoint; the log's head is {})",
            self.projections.len(),
            self.events,
            self.checkpoint,
            self.head,
        )?;
        writeln!(f, "stored read models: {views}")?;
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
///
/// Three stages overlap, one batch apart: reading batch k+2 (the SQLite
/// store reads on a blocking thread), decoding batch k+1 (in chunks on
/// blocking threads, one per core), and folding batch k on this task (the
/// fold is sequential: it follows the global order).
pub async fn rebuild(
    store: &dyn EventStore,
    up_to: u64,
    progress: &ProgressBar,
) -> Result<(Projections, u64), RunnerError> {
    rebuild_in_batches(store, up_to, REBUILD_BATCH_MAX, progress).await
}

async fn rebuild_in_batches(
    store: &dyn EventStore,
    up_to: u64,
    batch_max: usize,
    progress: &ProgressBar,
) -> Result<(Projections, u64), RunnerError> {
    let mut projections = Projections::new();
    let mut events = 0u64;
    // Reads the batch after position `after` (an empty one past `up_to`).
    let read_after = |after: u64| async move {
        if after < up_to {
            store.read_all(after + 1, batch_max).await
        } else {
            Ok(Vec::new())
        }
    };
    let mut raw = read_after(0).await?;
    let mut decoded: Vec<Ready> = Vec::new();
    while !raw.is_empty() || !decoded.is_empty() {
        let read_up_to = raw.last().map_or(up_to, |last| last.position);
        let fold = async {
            for ready in &decoded {
                apply_at(
                    &mut projections,
                    ready.position,
                    &ready.stream,
                    ready.version,
                    &ready.event,
                );
            }
            projections.flush();
            progress.set_position(projections.position().min(up_to));
        };
        let (next_raw, next_decoded, ()) = tokio::join!(
            read_after(read_up_to),
            decode_batch(std::mem::take(&mut raw), up_to),
            fold
        );
        events += decoded.len() as u64;
        raw = next_raw?;
        // Freeing a folded batch (millions of small allocations) is work the
        // fold need not wait for: it goes to a blocking thread.
        let folded = std::mem::replace(&mut decoded, next_decoded?);
        drop(tokio::task::spawn_blocking(move || drop(folded)));
    }
    Ok((projections, events))
}

/// One event ready to fold.
struct Ready {
    position: u64,
    stream: String,
    version: u64,
    event: Decoded,
}

/// Decodes the events of `batch` at positions up to `up_to`, in order,
/// spreading the work over the blocking threads.
async fn decode_batch(
    mut batch: Vec<RecordedEvent>,
    up_to: u64,
) -> Result<Vec<Ready>, RunnerError> {
    batch.retain(|record| record.position <= up_to);
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    let chunk_len = batch.len().div_ceil(cores).max(1);
    let mut chunks = Vec::new();
    while !batch.is_empty() {
        let rest = batch.split_off(chunk_len.min(batch.len()));
        let chunk = std::mem::replace(&mut batch, rest);
        chunks.push(tokio::task::spawn_blocking(move || {
            chunk
                .into_iter()
                .map(|record| {
                    let event = decode(&record)?;
                    Ok(Ready {
                        position: record.position,
                        stream: record.stream,
                        version: record.version,
                        event,
                    })
                })
                .collect::<Result<Vec<_>, RunnerError>>()
        }));
    }
    let mut decoded = Vec::new();
    for chunk in chunks {
        decoded.extend(
            chunk
                .await
                .map_err(|error| RunnerError::Task(error.to_string()))??,
        );
    }
    Ok(decoded)
}

/// Rebuilds up to `views`' checkpoint and compares row by row.
pub async fn compare(
    store: &dyn EventStore,
    views: &dyn ReadModelStore,
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
        views: Some(views.label().to_owned()),
        checkpoint,
        head,
        events,
        projections,
        differences,
    })
}

/// Rebuilds every read model up to the log's head, compares nothing, and
/// reports the rows built (no stored read models to compare with).
pub async fn rebuild_only(
    store: &dyn EventStore,
    progress: &ProgressBar,
) -> Result<ReplayReport, RunnerError> {
    let head = store.head_position().await.map_err(RunnerError::Store)?;
    progress.set_length(head);
    let (rebuilt, events) = rebuild(store, head, progress).await?;
    progress.finish_and_clear();
    let projections = rebuilt
        .stored_rows()
        .into_iter()
        .map(|(name, rows)| ProjectionSummary {
            name,
            rebuilt_rows: rows.len(),
            stored_rows: 0,
            differences: 0,
        })
        .collect();
    Ok(ReplayReport {
        views: None,
        checkpoint: head,
        head,
        events,
        projections,
        differences: Vec::new(),
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

/// `paycode replay [--ledger PATH | --config FILE]`: the ledger and the
/// views file beside it, both opened read-only; without a views file, the
/// rebuild alone.
pub async fn run(source: &LedgerSource, show_progress: bool) -> anyhow::Result<ReplayReport> {
    let Some(path) = source.read_models_path() else {
        anyhow::bail!(
            "store.kind = \"memory\": the log and its read models live only inside `paycode serve`; nothing to replay"
        );
    };
    let store = open_ledger_read_only(source)?.store();
    let progress = progress_bar(show_progress);
    let report = if path.exists() {
        let views = open_read_models_read_only(&path)
            .with_context(|| format!("opening the read models {} read-only", path.display()))?;
        compare(store.as_ref(), views.as_ref(), &progress).await
    } else {
        rebuild_only(store.as_ref(), &progress).await
    };
    report.context("rebuilding the read models from the log")
}

/// For tests and tools: the store behind an `Arc`.
pub async fn compare_arc(
    store: Arc<dyn EventStore>,
    views: &dyn ReadModelStore,
) -> Result<ReplayReport, RunnerError> {
    compare(store.as_ref(), views, &ProgressBar::hidden()).await
}

#[cfg(test)]
mod tests {
    use paycode_adapters::store::{ExpectedVersion, MemoryStore, NewEvent};
    use paycode_domain::reconciliation::{
        Finding, FindingKind, ReconciliationEvent, ReconciliationFact, ReconciliationRecorded,
    };
    use paycode_domain::stored;
    use paycode_domain::{Channel, CommandId};
    use paycode_projections::sample;
    use uuid::Uuid;

    use super::*;

    /// A log of interleaved sample payment histories with, after every
    /// tenth event, a new report of one statement day and an event of a
    /// stream no read model reads, in a memory store.
    async fn sample_store() -> MemoryStore {
        let store = MemoryStore::new();
        let mut report_version = None;
        for (index, sampled) in sample::log("m", 40, 7).into_iter().enumerate() {
            let encoded = stored::encode(&sampled.event);
            let expected = ExpectedVersion::after(sampled.version.checked_sub(1));
            let event = NewEvent::encoded(Uuid::new_v4(), encoded);
            store
                .append(&sampled.stream, expected, vec![event])
                .await
                .unwrap();
            if index % 10 == 9 {
                // A corrected statement each time: the day's findings change.
                let findings = (0..index % 4)
                    .map(|n| Finding {
                        kind: FindingKind::MissingInLedger,
                        order_no: Some(format!("X{n}")),
                        refund_no: None,
                        ledger_amount: None,
                        statement_amount: Some("2.00".parse().unwrap()),
                        detail: format!("import {index}"),
                    })
                    .collect();
                let report = ReconciliationEvent {
                    at: chrono::Utc::now(),
                    command_id: CommandId(Uuid::new_v4()),
                    key_name: None,
                    fact: ReconciliationFact::Recorded(ReconciliationRecorded {
                        channel: Channel::Wechat,
                        date: chrono::NaiveDate::from_ymd_opt(2026, 11, 22).unwrap(),
                        statement_sha256: format!("{index:064}"),
                        statement_lines: 10,
                        matched: 10,
                        revokes_settled: 0,
                        findings,
                    }),
                };
                let encoded = stored::encode(&report);
                let report = NewEvent::encoded(Uuid::new_v4(), encoded);
                let expected = ExpectedVersion::after(report_version);
                store
                    .append("reconciliation-m-wechat-2026-11-22", expected, vec![report])
                    .await
                    .unwrap();
                report_version = Some(report_version.map_or(0, |version| version + 1));
                let other = NewEvent {
                    event_id: Uuid::new_v4(),
                    event_type: "SomethingElse".into(),
                    schema_version: 1,
                    data: b"not an event the read models decode".to_vec(),
                };
                store
                    .append(
                        &format!("other-{index}"),
                        ExpectedVersion::NoStream,
                        vec![other],
                    )
                    .await
                    .unwrap();
            }
        }
        store
    }

    /// The read models folded one event at a time, up to `up_to`.
    async fn one_by_one(store: &MemoryStore, up_to: u64) -> Projections {
        let mut projections = Projections::new();
        for record in store.read_all(1, usize::MAX).await.unwrap() {
            if record.position > up_to {
                break;
            }
            let event = decode(&record).unwrap();
            crate::read::runner::apply(&mut projections, &record, &event);
            projections.flush();
        }
        projections
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_pipelined_rebuild_equals_folding_one_event_at_a_time() {
        let store = sample_store().await;
        let head = store.head_position().await.unwrap();
        assert!(head > 100, "{head}");
        for (up_to, batch_max) in [(head, 7), (head, 10_000), (head - 3, 7), (5, 2), (0, 7)] {
            let (rebuilt, events) =
                rebuild_in_batches(&store, up_to, batch_max, &ProgressBar::hidden())
                    .await
                    .unwrap();
            assert_eq!(events, up_to, "up to {up_to} in batches of {batch_max}");
            assert_eq!(rebuilt.position(), up_to);
            assert!(
                rebuilt == one_by_one(&store, up_to).await,
                "up to {up_to} in batches of {batch_max}"
            );
            if up_to == head {
                assert!(!rebuilt.reconciliation_diffs.is_empty());
            }
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_undecodable_payment_event_stops_the_rebuild_naming_its_position() {
        let store = sample_store().await;
        let bad = NewEvent {
            event_id: Uuid::new_v4(),
            event_type: "Paid".into(),
            schema_version: 1,
            data: b"{}".to_vec(),
        };
        store
            .append("payment-m-BROKEN", ExpectedVersion::NoStream, vec![bad])
            .await
            .unwrap();
        let head = store.head_position().await.unwrap();
        let error = rebuild_in_batches(&store, head, 7, &ProgressBar::hidden())
            .await
            .unwrap_err();
        assert!(
            matches!(error, RunnerError::Undecodable { position, .. } if position == head),
            "{error}"
        );
    }
}
