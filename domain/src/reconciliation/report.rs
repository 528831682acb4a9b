//! The outcome of setting one statement against the ledger: the lines that
//! agree (to record on their orders' streams) and the findings an operator
//! must look at. The serialized form is the report JSON of docs/api.md.

use std::fmt;

use chrono::NaiveDate;
use serde::{Deserialize, Serialize, Serializer};

use super::ledger::Ledger;
use crate::channel::Channel;
use crate::ids::OrderNo;
use crate::money::Money;
use crate::payment::{StatementLine, StatementLineKind};

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
    #[serde(serialize_with = "matches_count")]
    pub matched: Matches,
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

/// The lines of a statement that agree with the ledger, in file order, as
/// [`Match`]es made when read ([`Matches::iter`]).
///
/// A statement of a million lines matches about a million times; a `Match`
/// each (an order number, a trade number, a refund number) would be most of
/// the memory a reconciliation takes. A matched line agrees with its order
/// in the ledger on everything but, at times, the trade number, so each is
/// kept as its order's position in the ledger (shared, not copied) and the
/// few trade numbers the ledger does not hold.
#[derive(Clone)]
pub struct Matches {
    ledger: Ledger,
    channel: Channel,
    date: NaiveDate,
    entries: Vec<MatchEntry>,
    /// The trade numbers of the entries whose `own_trade_no` is set, in order.
    trade_nos: Vec<String>,
}

/// One matched line, as [`Matches`] keeps it.
#[derive(Debug, Clone, Copy)]
pub(super) struct MatchEntry {
    /// The order's position in the ledger.
    pub order: u32,
    /// For a refund, its index among the order's refunds.
    pub refund: u32,
    pub kind: StatementLineKind,
    pub already_recorded: bool,
    /// The line's trade number is not the order's in the ledger (or the
    /// ledger has none): it is kept beside the entries.
    pub own_trade_no: bool,
}

impl Matches {
    pub(super) fn new(
        ledger: Ledger,
        channel: Channel,
        date: NaiveDate,
        entries: Vec<MatchEntry>,
        trade_nos: Vec<String>,
    ) -> Matches {
        Matches {
            ledger,
            channel,
            date,
            entries,
            trade_nos,
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Each matched line, in file order.
    pub fn iter(&self) -> MatchesIter<'_> {
        MatchesIter {
            matches: self,
            next: 0,
            next_trade_no: 0,
        }
    }
}

impl PartialEq for Matches {
    fn eq(&self, other: &Matches) -> bool {
        self.len() == other.len() && self.iter().eq(other.iter())
    }
}

impl Eq for Matches {}

impl fmt::Debug for Matches {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl<'a> IntoIterator for &'a Matches {
    type Item = Match;
    type IntoIter = MatchesIter<'a>;

    fn into_iter(self) -> MatchesIter<'a> {
        self.iter()
    }
}

/// The [`Match`]es of [`Matches`], in file order.
#[derive(Debug)]
pub struct MatchesIter<'a> {
    matches: &'a Matches,
    next: usize,
    next_trade_no: usize,
}

impl Iterator for MatchesIter<'_> {
    type Item = Match;

    fn next(&mut self) -> Option<Match> {
        let matches = self.matches;
        let entry = matches.entries.get(self.next)?;
        self.next += 1;
        let order = matches.ledger.order(entry.order);
        let channel_trade_no = if entry.own_trade_no {
            self.next_trade_no += 1;
            matches.trade_nos.get(self.next_trade_no - 1)
        } else {
            None
        };
        let channel_trade_no = channel_trade_no
            .map(String::as_str)
            .or(order.channel_trade_no)
            .unwrap_or_default()
            .to_owned();
        let (refund_no, amount) = match entry.kind {
            StatementLineKind::Refund => order
                .refunds
                .get(entry.refund as usize)
                .map_or((None, order.amount), |refund| {
                    (Some(refund.refund_no.clone()), refund.amount)
                }),
            StatementLineKind::Payment | StatementLineKind::Reversal => (None, order.amount),
        };
        Some(Match {
            order_no: order.order_no(),
            line: StatementLine {
                channel: matches.channel,
                statement_date: matches.date,
                kind: entry.kind,
                refund_no,
                amount,
                channel_trade_no,
            },
            already_recorded: entry.already_recorded,
        })
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = self.matches.entries.len() - self.next;
        (left, Some(left))
    }
}

impl ExactSizeIterator for MatchesIter<'_> {}

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

fn matches_count<S: Serializer>(matches: &Matches, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_u64(matches.len() as u64)
}

#[cfg(test)]
mod tests {
    use chrono::{DateTime, TimeZone, Utc};

    use super::super::{
        LedgerOrder, LedgerRefund, ReconcilePolicy, Statement, StatementRow, reconcile,
    };
    use super::*;
    use crate::ids::RefundNo;
    use crate::payment::{PaymentStatus, RefundStatus};

    fn date() -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, 11, 21).unwrap()
    }

    fn at() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 21, 2, 0, 0).unwrap()
    }

    fn fen(fen: u64) -> Money {
        Money::from_fen(fen).unwrap()
    }

    fn paid(order_no: &str, trade_no: Option<&str>) -> LedgerOrder {
        LedgerOrder {
            order_no: OrderNo::parse(order_no).unwrap(),
            channel: Channel::Wechat,
            amount: fen(1000),
            status: PaymentStatus::Paid,
            channel_trade_no: trade_no.map(str::to_owned),
            paid_at: Some(at()),
            payment_on_statement: None,
            revoke: None,
            refunds: Vec::new(),
        }
    }

    fn row(
        line_no: u32,
        kind: StatementLineKind,
        order_no: &str,
        trade_no: &str,
        amount: Money,
    ) -> StatementRow {
        StatementRow {
            line_no,
            kind,
            order_no: order_no.to_owned(),
            channel_trade_no: trade_no.to_owned(),
            refund_no: None,
            channel_refund_no: None,
            amount,
            at: at(),
        }
    }

    fn line(
        order_no: &str,
        kind: StatementLineKind,
        refund_no: Option<&str>,
        amount: Money,
        trade_no: &str,
    ) -> Match {
        Match {
            order_no: OrderNo::parse(order_no).unwrap(),
            line: StatementLine {
                channel: Channel::Wechat,
                statement_date: date(),
                kind,
                refund_no: refund_no.map(|number| RefundNo::parse(number).unwrap()),
                amount,
                channel_trade_no: trade_no.to_owned(),
            },
            already_recorded: false,
        }
    }

    #[test]
    fn matches_read_back_with_the_trade_numbers_of_their_lines() {
        let mut refunded = paid("A2", Some("T2"));
        refunded.refunds.push(LedgerRefund {
            refund_no: RefundNo::parse("R2").unwrap(),
            amount: fen(300),
            status: RefundStatus::Succeeded,
            refunded_at: Some(at()),
            on_statement: None,
        });
        let ledger = super::super::Ledger::new([
            paid("A1", Some("T1")),
            refunded,
            // The ledger does not know this order's trade number.
            paid("A3", None),
        ]);
        let refund = StatementRow {
            refund_no: Some("R2".to_owned()),
            ..row(2, StatementLineKind::Refund, "A2", "X2", fen(300))
        };
        let statement = Statement {
            channel: Channel::Wechat,
            date: date(),
            rows: vec![
                row(1, StatementLineKind::Payment, "A1", "T1", fen(1000)),
                refund,
                row(3, StatementLineKind::Payment, "A2", "T2", fen(1000)),
                row(4, StatementLineKind::Payment, "A3", "T3", fen(1000)),
            ],
        };
        let report = reconcile(&statement, &ledger, &ReconcilePolicy::default());
        assert_eq!(report.findings, []);
        let expected = [
            line("A1", StatementLineKind::Payment, None, fen(1000), "T1"),
            line("A2", StatementLineKind::Refund, Some("R2"), fen(300), "X2"),
            line("A2", StatementLineKind::Payment, None, fen(1000), "T2"),
            line("A3", StatementLineKind::Payment, None, fen(1000), "T3"),
        ];
        assert_eq!(report.matched.iter().collect::<Vec<_>>(), expected);
        assert_eq!(report.matched.iter().len(), 4);
        assert_eq!(format!("{:?}", report.matched), format!("{expected:?}"));

        let again = reconcile(&statement, &ledger, &ReconcilePolicy::default());
        assert_eq!(again.matched, report.matched);
        let fewer = Statement {
            rows: statement.rows[..3].to_vec(),
            ..statement
        };
        let fewer = reconcile(&fewer, &ledger, &ReconcilePolicy::default());
        assert_ne!(fewer.matched, report.matched);
    }
}
