//! Events of a reconciliation stream: one stream per channel, merchant and
//! statement day ([`crate::ids::reconciliation_stream`]). Each import of a
//! statement that differs from every earlier one records the report; the
//! same statement imported again records nothing ([`ReconciliationDecider`]). The matched lines
//! themselves go to the orders' streams (`StatementLineMatched`), which are
//! idempotent on their own. Stored names are set explicitly and are a contract.

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use std::convert::Infallible;

use super::report::{Finding, Report};
use crate::channel::Channel;
use crate::decider::{Decider, Refused};
use crate::ids::CommandId;
use crate::invariants::Violation;

/// One recorded fact of a reconciliation stream, with its time and cause.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReconciliationEvent {
    /// When it happened (the clock of the decision, not of the store).
    pub at: DateTime<Utc>,
    /// The command (API request, CLI run) that caused it.
    pub command_id: CommandId,
    /// The name of the API key whose import it records (never the key);
    /// absent for the command line. See `payment::Event::key_name`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_name: Option<String>,
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
    /// How many revokes this statement settled (absent in reports recorded
    /// before revokes could be unconfirmed).
    #[serde(default)]
    pub revokes_settled: u64,
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
            revokes_settled: report.settled.len() as u64,
        }
    }
}

/// A statement day's stream folded: every statement file it has recorded a
/// report of, and the latest report (the day's report).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DayState {
    /// SHA-256 of every statement file recorded, oldest first.
    pub imported: Vec<String>,
    /// The latest report recorded.
    pub latest: Option<ReconciliationRecorded>,
}

impl DayState {
    /// Whether the stream already holds the report of this very statement
    /// file. Check it before matching: a re-import then costs no matching.
    pub fn already_imported(&self, statement_sha256: &str) -> bool {
        self.imported
            .iter()
            .any(|sha256| sha256 == statement_sha256)
    }
}

/// Record the report of a statement file reconciled against the ledger.
#[derive(Debug, Clone)]
pub struct RecordReport {
    /// The request or run that imports it; the event id derives from it.
    pub id: CommandId,
    /// The name of the API key whose request it is; `None` for the command line.
    pub key_name: Option<String>,
    pub report: ReconciliationRecorded,
}

/// The decider of a statement day's stream
/// (`reconciliation-{merchant}-{channel}-{date}`).
#[derive(Debug, Clone, Copy, Default)]
pub struct ReconciliationDecider;

impl Decider for ReconciliationDecider {
    type State = DayState;
    type Command = RecordReport;
    type Event = ReconciliationEvent;
    /// Recording a report is never refused.
    type Rejection = Infallible;

    fn initial_state(&self) -> DayState {
        DayState::default()
    }

    /// Records the report, unless this statement file was imported before
    /// (then nothing, so importing twice changes nothing). A different file
    /// for the same day (a corrected statement) is recorded; the latest
    /// recorded report is the day's report.
    fn decide(
        &self,
        state: &DayState,
        command: &RecordReport,
        now: DateTime<Utc>,
    ) -> Result<Vec<ReconciliationEvent>, Infallible> {
        if state.already_imported(&command.report.statement_sha256) {
            return Ok(Vec::new());
        }
        Ok(vec![ReconciliationEvent {
            at: now,
            command_id: command.id,
            key_name: command.key_name.clone(),
            fact: ReconciliationFact::Recorded(command.report.clone()),
        }])
    }

    /// A day's stream holds the reports of one channel and one day.
    fn evolve(
        &self,
        mut state: DayState,
        event: &ReconciliationEvent,
    ) -> Result<DayState, Refused<DayState>> {
        let ReconciliationFact::Recorded(recorded) = &event.fact;
        if let Some(latest) = &state.latest
            && (latest.channel, latest.date) != (recorded.channel, recorded.date)
        {
            let violation = Violation::ReportOfAnotherDay {
                stream_day: latest.date,
                report_day: recorded.date,
            };
            return Err(Refused { state, violation });
        }
        state.imported.push(recorded.statement_sha256.clone());
        state.latest = Some(recorded.clone());
        Ok(state)
    }

    /// A corrected statement may always come.
    fn is_terminal(&self, _state: &DayState) -> bool {
        false
    }

    fn command_id(command: &RecordReport) -> CommandId {
        command.id
    }
}
