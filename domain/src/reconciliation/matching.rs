//! The matcher: one day's statement set against the ledger, purely.
//!
//! # Rules, in the order they are applied
//!
//! **Which movement a line is.** A payment line is matched by merchant order
//! number; a refund line by order number and refund number; a reversal (the
//! refund a revoke made of a paid order) by order number, to the order's
//! revoke. A reversal is a WeChat `REVOKED` line (the parser marks it), or an
//! Alipay-style refund line whose refund number is the channel's trade number
//! (on Alipay also: the merchant order number) and is not a refund number the
//! ledger made. A reversal is never an unknown refund.
//!
//! **Each line, in file order**, gives at most one finding, checked in this
//! order:
//! 1. `duplicate_line`: the same movement was already listed on this statement.
//! 2. `missing_in_ledger`: the ledger has no such order, or (for a refund) no
//!    such refund of it.
//! 3. `status_mismatch`: the ledger took the order on the other channel; or it
//!    does not believe the customer paid (closed, failed, still paying, in
//!    review) while the line shows a payment or reversal; or it has no revoke
//!    that returned money while the line shows a reversal; or its refund is
//!    pending or failed while the line shows it done; or the trade numbers
//!    differ. An order the ledger *closed* gets one finding for all its lines:
//!    WeChat's reverse never says whether it closed or refunded, so a ledger
//!    that never saw the payment records `closed` while the channel lists the
//!    payment and a `REVOKED` line the same day.
//! 4. `amount_mismatch`: both know the movement, with different amounts.
//! 5. `duplicate_line`: the ledger already matched this movement on another
//!    day's statement.
//!
//! Otherwise the line is a [`Match`], to record on the order's stream.
//!
//! **A revoke whose money movement is unconfirmed** (WeChat's reverse, on
//! an order whose payment the ledger never saw) is settled here: a payment
//! or reversal line of the order means money moved and the revoke returned
//! it (the lines match, and the order is then expected to show both, like
//! any reversed order); no line of it on the statement of the revoke's day
//! means no money moved. Each is a [`RevokeSettlement`] to record before
//! the order's matches.
//!
//! **Then each movement the ledger believes in** (a payment, a revoke that
//! returned money, a succeeded refund) that no line of this statement lists is
//! `missing_in_statement` if it belongs to the statement's day. Channels cut
//! their days by their own clock, so a payment at 23:59:58 may land on the
//! next day's statement. A movement belongs to day `D` when its time is in
//! `[D 00:00 − grace, D+1 00:00 − grace)`, China time (UTC+8), with
//! `grace = policy.midnight_grace_secs`: a movement in the last `grace` of the
//! day is *deferred* to the next day's statement, not missing; and a line on
//! `D`'s statement matches by number whatever its ledger time, so a movement
//! listed a day early or late still matches. A movement already matched on
//! another day's statement is not expected again. So reconcile days in order:
//! the deferred movement is checked against the next day's statement.
//!
//! One pass over the rows as a parser reads them ([`Reconciler`], a
//! [`StatementSink`]: no row is held), each a lookup of the order in the
//! ledger's index; what was listed is kept by order position (a line number
//! per payment, a small map for reversals and refunds, a map of owned
//! numbers only for what the ledger does not know); then one sequential
//! pass over the ledger. Linear in both, and a matched line costs its
//! report a few bytes, not a copy of its numbers.

use std::collections::HashMap;
use std::collections::hash_map::Entry;

use chrono::{DateTime, Duration, NaiveDate, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};

use super::ledger::{Ledger, LedgerRefund, LedgerRevoke, OrderRef};
use super::report::{Finding, FindingKind, MatchEntry, Matches, Report, RevokeSettlement};
use super::{Statement, StatementRowRef, StatementSink};
use crate::calendar::{china_midnight, china_time};
use crate::channel::Channel;
use crate::money::Money;
use crate::payment::{PaymentStatus, RefundStatus, StatementLineKind};

/// The rules of reconciliation that are a matter of configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReconcilePolicy {
    /// A movement this close before midnight (China time) that the day's
    /// statement does not list is expected on the next day's instead.
    pub midnight_grace_secs: u32,
}

impl ReconcilePolicy {
    pub const MIDNIGHT_GRACE_SECS_DEFAULT: u32 = 300;
}

impl Default for ReconcilePolicy {
    fn default() -> Self {
        ReconcilePolicy {
            midnight_grace_secs: Self::MIDNIGHT_GRACE_SECS_DEFAULT,
        }
    }
}

/// Sets `statement` against `ledger` (one merchant's orders). Pure; see the
/// module documentation for the rules. The same as handing each row to a
/// [`Reconciler`].
pub fn reconcile(statement: &Statement, ledger: &Ledger, policy: &ReconcilePolicy) -> Report {
    let mut reconciler = Reconciler::new(statement.channel, statement.date, ledger, policy);
    for row in &statement.rows {
        reconciler.row(row.as_row_ref());
    }
    reconciler.finish()
}

/// The matcher, fed one row at a time (it is a [`StatementSink`]), so that
/// a statement is matched as it is read and never held. Hand it to a parser,
/// which hands it back only for a whole statement; then [`Reconciler::finish`]
/// gives the report. The rows must be those of one statement, in file order.
#[derive(Debug)]
pub struct Reconciler<'l> {
    ledger: &'l Ledger,
    channel: Channel,
    date: NaiveDate,
    day: DayWindow,
    lines: u64,
    /// Per order position: the line that first listed its payment.
    payment_lines: Vec<Option<u32>>,
    /// The reversals and refunds of known orders listed: (position, slot)
    /// to the first line, the slot [`REVERSAL_SLOT`] or a refund's.
    listed: HashMap<(u32, u32), u32>,
    /// Movements of orders or refunds the ledger does not know, to the
    /// first line that listed them.
    listed_unknown: HashMap<(StatementLineKind, String, Option<String>), u32>,
    matched: Vec<MatchEntry>,
    /// The trade numbers of matches whose trade number the ledger does not hold.
    trade_nos: Vec<String>,
    findings: Vec<Finding>,
    /// Lines of orders the ledger closed, by position: one finding per order, at the end.
    closed: HashMap<u32, ClosedOrderLines>,
}

/// The slot of an order's reversal in [`Reconciler::listed`].
const REVERSAL_SLOT: u32 = 0;

/// The slot of an order's `index`-th refund in [`Reconciler::listed`].
fn refund_slot(index: u32) -> u32 {
    index.saturating_add(1)
}

impl StatementSink for Reconciler<'_> {
    fn channel(&self) -> Channel {
        self.channel
    }

    fn row(&mut self, row: StatementRowRef<'_>) {
        self.lines += 1;
        let order = self
            .ledger
            .position(row.order_no)
            .map(|position| self.ledger.order(position));
        let kind = movement_kind(self.channel, &row, order.as_ref());
        let refund_no = match kind {
            StatementLineKind::Refund => row.refund_no,
            StatementLineKind::Payment | StatementLineKind::Reversal => None,
        };
        let refund = order
            .as_ref()
            .zip(refund_no)
            .and_then(|(order, refund_no)| order.refund(refund_no));
        if let Some(first) = self.first_listed(&row, kind, refund_no, order.as_ref(), refund) {
            self.findings.push(Finding {
                kind: FindingKind::DuplicateLine,
                order_no: Some(row.order_no.to_owned()),
                refund_no: refund_no.map(str::to_owned),
                ledger_amount: None,
                statement_amount: Some(row.amount),
                detail: format!(
                    "line {}: repeats the {} on line {first}",
                    row.line_no,
                    kind_name(kind)
                ),
            });
            return;
        }
        let movement = Movement {
            kind,
            order_no: row.order_no,
            refund_no,
        };
        match judge(self.channel, self.date, &row, movement, order, refund) {
            Verdict::Agrees(agreed) => {
                if agreed.own_trade_no {
                    self.trade_nos.push(row.channel_trade_no.to_owned());
                }
                self.matched.push(agreed);
            }
            Verdict::Differs(finding) => self.findings.push(finding),
            Verdict::LedgerClosed(position) => {
                let lines = self.closed.entry(position).or_default();
                let line = Some((row.line_no, row.amount));
                match kind {
                    StatementLineKind::Payment => lines.payment = line,
                    _ => lines.reversal = line,
                }
            }
        }
    }

    fn entries_held(&self) -> usize {
        self.findings.len() + self.listed_unknown.len() + self.trade_nos.len() + self.closed.len()
    }
}

impl<'l> Reconciler<'l> {
    pub fn new(
        channel: Channel,
        date: NaiveDate,
        ledger: &'l Ledger,
        policy: &ReconcilePolicy,
    ) -> Reconciler<'l> {
        Reconciler {
            ledger,
            channel,
            date,
            day: DayWindow::new(date, policy),
            lines: 0,
            payment_lines: vec![None; ledger.len()],
            listed: HashMap::new(),
            listed_unknown: HashMap::new(),
            matched: Vec::with_capacity(ledger.len()),
            trade_nos: Vec::new(),
            findings: Vec::new(),
            closed: HashMap::new(),
        }
    }

    /// Notes that `row` lists its movement, unless an earlier line did:
    /// then that line's number.
    fn first_listed(
        &mut self,
        row: &StatementRowRef<'_>,
        kind: StatementLineKind,
        refund_no: Option<&str>,
        order: Option<&OrderRef<'_>>,
        refund: Option<(u32, &LedgerRefund)>,
    ) -> Option<u32> {
        let line_no = row.line_no;
        let slot = match (order, kind, refund) {
            (Some(order), StatementLineKind::Payment, _) => {
                let first = &mut self.payment_lines[order.position as usize];
                if first.is_none() {
                    *first = Some(line_no);
                    return None;
                }
                return *first;
            }
            (Some(order), StatementLineKind::Reversal, _) => (order.position, REVERSAL_SLOT),
            (Some(order), StatementLineKind::Refund, Some((index, _))) => {
                (order.position, refund_slot(index))
            }
            _ => {
                let key = (kind, row.order_no.to_owned(), refund_no.map(str::to_owned));
                return first_of(self.listed_unknown.entry(key), line_no);
            }
        };
        first_of(self.listed.entry(slot), line_no)
    }

    /// The report: the lines matched, and every finding, with the movements
    /// the ledger believes in that no line listed.
    pub fn finish(mut self) -> Report {
        let statement_date = self.date;
        let mut findings = std::mem::take(&mut self.findings);
        let ledger = self.ledger;
        findings.extend(
            self.closed
                .iter()
                .map(|(&position, lines)| lines.finding(&ledger.order(position))),
        );

        let mut settled = Vec::new();
        for order in ledger.orders() {
            if order.channel != self.channel {
                continue;
            }
            let position = order.position;
            let payment_listed = self.payment_lines[position as usize].is_some();
            let reversal_listed = self.listed.contains_key(&(position, REVERSAL_SLOT));
            // An unconfirmed revoke this statement settles is expected like the
            // revoke it turns out to be.
            let mut revoke = order.revoke;
            let mut payment_at = order.payment_at();
            if let Some(LedgerRevoke::Unconfirmed { at }) = order.revoke {
                let money_moved = payment_listed || reversal_listed;
                if money_moved || self.day.expects(at) {
                    settled.push(RevokeSettlement {
                        order_no: order.order_no(),
                        money_moved,
                    });
                }
                if money_moved {
                    revoke = Some(LedgerRevoke::Returned {
                        at,
                        on_statement: None,
                    });
                    payment_at = Some(at);
                }
            }
            let mut expect = |kind: StatementLineKind,
                              refund_no: Option<&str>,
                              was_listed: bool,
                              at: DateTime<Utc>,
                              on_statement: Option<NaiveDate>,
                              amount: Money| {
                let elsewhere = on_statement.is_some_and(|date| date != statement_date);
                if elsewhere || !self.day.expects(at) || was_listed {
                    return;
                }
                let movement = Movement {
                    kind,
                    order_no: order.order_no,
                    refund_no,
                };
                findings.push(missing_in_statement(movement, at, amount));
            };
            if let Some(at) = payment_at {
                expect(
                    StatementLineKind::Payment,
                    None,
                    payment_listed,
                    at,
                    order.payment_on_statement,
                    order.amount,
                );
            }
            if let Some(LedgerRevoke::Returned { at, on_statement }) = revoke {
                expect(
                    StatementLineKind::Reversal,
                    None,
                    reversal_listed,
                    at,
                    on_statement,
                    order.amount,
                );
            }
            for (refund, index) in order.refunds.iter().zip(0..) {
                if let (RefundStatus::Succeeded, Some(at)) = (refund.status, refund.refunded_at) {
                    let slot = (position, refund_slot(index));
                    expect(
                        StatementLineKind::Refund,
                        Some(refund.refund_no.as_str()),
                        self.listed.contains_key(&slot),
                        at,
                        refund.on_statement,
                        refund.amount,
                    );
                }
            }
        }

        findings.sort_unstable();
        Report {
            channel: self.channel,
            date: self.date,
            statement_lines: self.lines,
            matched: Matches::new(
                ledger.clone(),
                self.channel,
                self.date,
                self.matched,
                self.trade_nos,
            ),
            findings,
            settled,
        }
    }
}

/// The first line of a movement, or `None` after noting `line_no` as it.
fn first_of<K>(entry: Entry<'_, K, u32>, line_no: u32) -> Option<u32> {
    match entry {
        Entry::Occupied(first) => Some(*first.get()),
        Entry::Vacant(vacant) => {
            vacant.insert(line_no);
            None
        }
    }
}

/// One movement of money, as both sides name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Movement<'a> {
    kind: StatementLineKind,
    order_no: &'a str,
    /// For a refund only.
    refund_no: Option<&'a str>,
}

/// The China-time day a statement covers, shifted back by the grace.
#[derive(Debug, Clone, Copy)]
struct DayWindow {
    from: DateTime<Utc>,
    until: DateTime<Utc>,
}

impl DayWindow {
    fn new(date: NaiveDate, policy: &ReconcilePolicy) -> Self {
        let grace = Duration::seconds(i64::from(policy.midnight_grace_secs));
        let midnight = china_midnight(date);
        DayWindow {
            from: midnight - grace,
            until: midnight + Duration::days(1) - grace,
        }
    }

    fn expects(self, at: DateTime<Utc>) -> bool {
        self.from <= at && at < self.until
    }
}

enum Verdict {
    Agrees(MatchEntry),
    Differs(Finding),
    /// A payment or reversal line of the order at this position, which the ledger closed.
    LedgerClosed(u32),
}

/// Which movement a line is. A refund number the ledger made is a refund,
/// whatever it looks like; otherwise a refund "numbered" with the trade
/// number (Alipay's reversal lines) is the revoke's reversal.
fn movement_kind(
    channel: Channel,
    row: &StatementRowRef<'_>,
    order: Option<&OrderRef<'_>>,
) -> StatementLineKind {
    let refund_no = match (row.kind, row.refund_no) {
        (StatementLineKind::Refund, Some(refund_no)) => refund_no,
        (kind, _) => return kind,
    };
    if order.is_some_and(|order| order.refund(refund_no).is_some()) {
        return StatementLineKind::Refund;
    }
    let is_reversal = refund_no == row.channel_trade_no
        || (channel == Channel::Alipay && refund_no == row.order_no);
    if is_reversal {
        StatementLineKind::Reversal
    } else {
        StatementLineKind::Refund
    }
}

/// The verdict on a line not listed before; `refund` is the ledger's refund
/// of `movement.refund_no`, if it made one.
fn judge(
    channel: Channel,
    date: NaiveDate,
    row: &StatementRowRef<'_>,
    movement: Movement<'_>,
    order: Option<OrderRef<'_>>,
    refund: Option<(u32, &LedgerRefund)>,
) -> Verdict {
    let line_no = row.line_no;
    let what = kind_name(movement.kind);
    let finding = |kind, ledger_amount, detail| {
        Verdict::Differs(Finding {
            kind,
            order_no: Some(row.order_no.to_owned()),
            refund_no: movement.refund_no.map(str::to_owned),
            ledger_amount,
            statement_amount: Some(row.amount),
            detail,
        })
    };
    let Some(order) = order else {
        return finding(
            FindingKind::MissingInLedger,
            None,
            format!("line {line_no}: a {what} of an order the ledger does not know"),
        );
    };
    if order.channel != channel {
        return finding(
            FindingKind::StatusMismatch,
            Some(order.amount),
            format!(
                "line {line_no}: the ledger took this order on {}",
                order.channel
            ),
        );
    }
    // Each arm yields the ledger's amount and the statement it was matched on.
    let (ledger_amount, on_statement) = match movement.kind {
        StatementLineKind::Payment => {
            let unconfirmed = matches!(order.revoke, Some(LedgerRevoke::Unconfirmed { .. }));
            if order.payment_at().is_none() && !unconfirmed {
                if order.status == PaymentStatus::Closed {
                    return Verdict::LedgerClosed(order.position);
                }
                return finding(
                    FindingKind::StatusMismatch,
                    Some(order.amount),
                    format!(
                        "line {line_no}: the statement shows the order paid; the ledger has it {}",
                        order.status.as_str()
                    ),
                );
            }
            if let Some(trade_no) = order.channel_trade_no {
                if trade_no != row.channel_trade_no {
                    return finding(
                        FindingKind::StatusMismatch,
                        Some(order.amount),
                        format!(
                            "line {line_no}: the statement's trade number {} is not the ledger's {trade_no}",
                            row.channel_trade_no
                        ),
                    );
                }
            }
            (order.amount, order.payment_on_statement)
        }
        StatementLineKind::Reversal => match order.revoke {
            Some(LedgerRevoke::Returned { on_statement, .. }) => (order.amount, on_statement),
            // The line settles the revoke: money moved and came back.
            Some(LedgerRevoke::Unconfirmed { .. }) => (order.amount, None),
            Some(LedgerRevoke::Closed { .. }) => return Verdict::LedgerClosed(order.position),
            None => {
                return finding(
                    FindingKind::StatusMismatch,
                    Some(order.amount),
                    format!(
                        "line {line_no}: the statement shows the order reversed by a revoke; the ledger has it {}",
                        order.status.as_str()
                    ),
                );
            }
        },
        StatementLineKind::Refund => {
            let Some((_, refund)) = refund else {
                return finding(
                    FindingKind::MissingInLedger,
                    None,
                    format!("line {line_no}: a refund the ledger did not make"),
                );
            };
            if refund.status != RefundStatus::Succeeded {
                let status = match refund.status {
                    RefundStatus::Failed => "failed",
                    RefundStatus::ManualReview => "in manual review",
                    RefundStatus::Pending | RefundStatus::Succeeded => "pending",
                };
                return finding(
                    FindingKind::StatusMismatch,
                    Some(refund.amount),
                    format!(
                        "line {line_no}: the statement shows the refund done; the ledger has it {status}"
                    ),
                );
            }
            (refund.amount, refund.on_statement)
        }
    };
    if ledger_amount != row.amount {
        return finding(
            FindingKind::AmountMismatch,
            Some(ledger_amount),
            format!(
                "line {line_no}: the {what} is {} on the statement, {ledger_amount} in the ledger",
                row.amount
            ),
        );
    }
    match on_statement {
        Some(on) if on != date => finding(
            FindingKind::DuplicateLine,
            Some(ledger_amount),
            format!("line {line_no}: the {what} was already on the statement of {on}"),
        ),
        _ => Verdict::Agrees(MatchEntry {
            order: order.position,
            refund: refund.map_or(0, |(index, _)| index),
            kind: movement.kind,
            already_recorded: on_statement == Some(date),
            own_trade_no: order.channel_trade_no != Some(row.channel_trade_no),
        }),
    }
}

/// The lines of one order the ledger closed (no money moved, as it
/// believes): (line number, amount) of its payment and its reversal.
#[derive(Debug, Default)]
struct ClosedOrderLines {
    payment: Option<(u32, Money)>,
    reversal: Option<(u32, Money)>,
}

impl ClosedOrderLines {
    fn finding(&self, order: &OrderRef<'_>) -> Finding {
        let (shows, lines, amount) = match (self.payment, self.reversal) {
            (Some((payment, amount)), Some((reversal, _))) => (
                "paid and reversed",
                format!("lines {payment} and {reversal}"),
                amount,
            ),
            (Some((payment, amount)), None) => ("paid", format!("line {payment}"), amount),
            (None, Some((reversal, amount))) => ("reversed", format!("line {reversal}"), amount),
            (None, None) => unreachable!("an order is noted closed by one of its lines"),
        };
        Finding {
            kind: FindingKind::StatusMismatch,
            order_no: Some(order.order_no.to_owned()),
            refund_no: None,
            ledger_amount: Some(order.amount),
            statement_amount: Some(amount),
            detail: format!(
                "{lines}: the statement shows the order {shows}; the ledger closed it without seeing a payment"
            ),
        }
    }
}

fn missing_in_statement(movement: Movement<'_>, at: DateTime<Utc>, amount: Money) -> Finding {
    let verb = match movement.kind {
        StatementLineKind::Payment => "was paid",
        StatementLineKind::Refund => "refunded",
        StatementLineKind::Reversal => "returned the payment by a revoke",
    };
    Finding {
        kind: FindingKind::MissingInStatement,
        order_no: Some(movement.order_no.to_owned()),
        refund_no: movement.refund_no.map(str::to_owned),
        ledger_amount: Some(amount),
        statement_amount: None,
        detail: format!(
            "the ledger {verb} at {}; the statement does not list it",
            at.with_timezone(&china_time())
                .to_rfc3339_opts(SecondsFormat::Secs, true)
        ),
    }
}

fn kind_name(kind: StatementLineKind) -> &'static str {
    match kind {
        StatementLineKind::Payment => "payment",
        StatementLineKind::Refund => "refund",
        StatementLineKind::Reversal => "reversal",
    }
}
