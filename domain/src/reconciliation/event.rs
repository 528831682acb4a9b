//! Events of a reconciliation stream: one stream per channel, merchant and
//! statement day ([`crate::ids::reconciliation_stream`]). Each import of a
//! statement that differs from every earlier one records the report; the
//! same statement imported again records nothing. The matched lines
//! themselves go to the orders' streams (`StatementLineMatched`), which are
//! idempotent on their own. Stored names are set explicitly and are a contract.

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use super::report::{Finding, Report};
use crate::channel::Channel;
use crate::ids::CommandId;

/// One recorded fact of a reconciliation stream, with its time and cause.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReconciliationEvent {
    /// When it happened (the clock of the decision, not of the store).
    pub at: DateTime<Utc>,
    /// The command (API request, CLI run) that caused it.
    pub command_id: CommandId,
    #[serde(flatten)]
    pub fact: ReconciliationFact,
}

/// Every fact a reconciliation stream can hold. The `rename` is the stored name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum ReconciliationFact {
    /// A statement was reconciled; this is its report.
    #[serde(rename = "ReconciliationRecorded")]
    Recorded(ReconciliationRecorded),
}

impl ReconciliationFact {
    /// The stored event name.
    pub fn stored_name(&self) -> &'static str {
        match self {
            ReconciliationFact::Recorded(_) => "ReconciliationRecorded",
        }
    }
}

/// A statement reconciled. Without `statement_sha256` its JSON is
/// the report of docs/api.md.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReconciliationRecorded {
    pub channel: Channel,
    /// The statement's day, China time.
    pub date: NaiveDate,
    /// SHA-256 of the statement file as downloaded or uploaded, lowercase hex:
    /// what tells a re-import from a new statement.
    pub statement_sha256: String,
    pub statement_lines: u64,
    /// How many lines matched.
    pub matched: u64,
    /// Sorted, as in the [`Report`].
    pub findings: Vec<Finding>,
}

impl ReconciliationRecorded {
    pub fn from_report(report: &Report, statement_sha256: &str) -> Self {
        ReconciliationRecorded {
            channel: report.channel,
            date: report.date,
            statement_sha256: statement_sha256.to_owned(),
            statement_lines: report.statement_lines,
            matched: report.matched.len() as u64,
            findings: report.findings.clone(),
        }
    }
}

/// Whether the stream already holds the report of this very statement file.
/// Check it before matching: a re-import then costs no matching at all.
pub fn already_imported(history: &[ReconciliationEvent], statement_sha256: &str) -> bool {
    history.iter().any(|event| match &event.fact {
        ReconciliationFact::Recorded(recorded) => recorded.statement_sha256 == statement_sha256,
    })
}

/// The decision of an import: record the report, unless this statement file
/// was imported before (then nothing, so importing twice changes nothing).
/// A different file for the same day (a corrected statement) is recorded;
/// the latest recorded report is the day's report.
pub fn decide_import(
    history: &[ReconciliationEvent],
    report: &Report,
    statement_sha256: &str,
) -> Vec<ReconciliationFact> {
    if already_imported(history, statement_sha256) {
        return Vec::new();
    }
    vec![ReconciliationFact::Recorded(
        ReconciliationRecorded::from_report(report, statement_sha256),
    )]
}

/// The day's report: the latest one recorded. (Every fact of the stream is
/// a report today; a new kind of fact must be skipped here.)
pub fn latest_report(history: &[ReconciliationEvent]) -> Option<&ReconciliationRecorded> {
    history.last().map(|event| match &event.fact {
        ReconciliationFact::Recorded(recorded) => recorded,
    })
}
