//! The outcome of setting one statement against the ledger: the lines that
//! agree (to record on their orders' streams) and the findings an operator
//! must look at. The serialized form is the report JSON of docs/api.md.

use chrono::NaiveDate;
use serde::{Deserialize, Serialize, Serializer};

use crate::channel::Channel;
use crate::ids::OrderNo;
use crate::money::Money;
use crate::payment::StatementLine;

/// One statement reconciled. Serializes as docs/api.md's report, where
/// `matched` is the number of matched lines (the lines themselves go to the
/// orders' streams, not into the report).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Report {
    pub channel: Channel,
    /// The statement's day, China time.
    pub date: NaiveDate,
    /// Rows the statement holds, duplicates included.
    pub statement_lines: u64,
    /// The lines that agree with the ledger, in file order.
    #[serde(serialize_with = "count")]
    pub matched: Vec<Match>,
    /// Every difference, sorted (by kind, then order and refund number), so
    /// that the same inputs give byte-identical reports.
    pub findings: Vec<Finding>,
    /// Revokes whose money movement this statement settled, in ledger
    /// order (serialized as their number, `revokes_settled`).
    #[serde(rename = "revokes_settled", serialize_with = "count")]
    pub settled: Vec<RevokeSettlement>,
}

/// What the statement says of a revoke the channel did not describe (see
/// [`super::LedgerRevoke::Unconfirmed`]): record it on the order's stream
/// (`SettleRevoke`) before the order's matched lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevokeSettlement {
    pub order_no: OrderNo,
    /// The statement lists the payment or its reversal: money moved and
    /// came back. Otherwise none moved.
    pub money_moved: bool,
}

/// A statement line that agrees with the ledger: record it on the order's
/// stream (`MatchStatementLine`), which is idempotent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Match {
    pub order_no: OrderNo,
    pub line: StatementLine,
    /// The order's stream already holds this line (a re-import): nothing to append.
    pub already_recorded: bool,
}

/// The kinds of difference, by the names of docs/api.md.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FindingKind {
    /// The channel moved money the ledger does not know: an unknown order or
    /// an unknown refund.
    MissingInLedger,
    /// The ledger believes money moved on the statement's day, and the
    /// statement does not show it.
    MissingInStatement,
    /// Both know the movement, with different amounts.
    AmountMismatch,
    /// Both know the order, but not in the same state (the ledger closed,
    /// failed or still pending what the channel shows as done).
    StatusMismatch,
    /// The same movement is listed twice (in this statement, or already on
    /// another day's).
    DuplicateLine,
}

impl FindingKind {
    /// The name in the report JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            FindingKind::MissingInLedger => "missing_in_ledger",
            FindingKind::MissingInStatement => "missing_in_statement",
            FindingKind::AmountMismatch => "amount_mismatch",
            FindingKind::StatusMismatch => "status_mismatch",
            FindingKind::DuplicateLine => "duplicate_line",
        }
    }
}

/// One difference between the statement and the ledger. Field order is the
/// sort order and docs/api.md's JSON order.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Finding {
    pub kind: FindingKind,
    /// The merchant order number (as the statement prints it, for a line the
    /// ledger does not know).
    pub order_no: Option<String>,
    /// The refund number, for a refund; `None` for payments and reversals.
    pub refund_no: Option<String>,
    pub ledger_amount: Option<Money>,
    pub statement_amount: Option<Money>,
    /// What differs, for a person: statement line numbers, statuses, times.
    pub detail: String,
}

fn count<S: Serializer, T>(items: &[T], serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_u64(items.len() as u64)
}
