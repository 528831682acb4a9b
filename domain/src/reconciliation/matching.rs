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
//! One pass over the rows (a hash lookup of the order, a hash map of the
//! movements listed, keyed by borrowed numbers) and one sequential pass over
//! the ledger (what was listed is a bit per movement, by order position):
//! linear in both, and no copies but what the report keeps.

use std::collections::HashMap;
use std::collections::hash_map::Entry;

use chrono::{DateTime, Duration, NaiveDate, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};

use super::ledger::{Ledger, LedgerOrder, LedgerRevoke};
use super::report::{Finding, FindingKind, Match, Report, RevokeSettlement};
use super::{Statement, StatementRow};
use crate::calendar::{china_midnight, china_time};
use crate::channel::Channel;
use crate::money::Money;
use crate::payment::{PaymentStatus, RefundStatus, StatementLine, StatementLineKind};

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
/// module documentation for the rules.
pub fn reconcile(statement: &Statement, ledger: &Ledger, policy: &ReconcilePolicy) -> Report {
    let day = DayWindow::new(statement.date, policy);
    // Movement -> the line number that first listed it.
    let mut listed: HashMap<Movement<'_>, u32> = HashMap::with_capacity(statement.rows.len());
    // Per order position: the movements of it the statement listed (see `listed_bit`).
    let mut listed_bits: Vec<u64> = vec![0; ledger.len()];
    let mut matched = Vec::with_capacity(statement.rows.len());
    let mut findings = Vec::new();
    // Lines of orders the ledger closed: one finding per order, after the pass.
    let mut closed: HashMap<&str, ClosedOrderLines<'_>> = HashMap::new();

    for row in &statement.rows {
        let position = ledger.position(&row.order_no);
        let order = position.map(|position| &ledger.orders()[position]);
        let kind = movement_kind(statement.channel, row, order);
        let movement = Movement {
            kind,
            order_no: &row.order_no,
            refund_no: match kind {
                StatementLineKind::Refund => row.refund_no.as_deref(),
                StatementLineKind::Payment | StatementLineKind::Reversal => None,
            },
        };
        match listed.entry(movement) {
            Entry::Occupied(first) => {
                findings.push(Finding {
                    kind: FindingKind::DuplicateLine,
                    order_no: Some(row.order_no.clone()),
                    refund_no: movement.refund_no.map(str::to_owned),
                    ledger_amount: None,
                    statement_amount: Some(row.amount),
                    detail: format!(
                        "line {}: repeats the {} on line {}",
                        row.line_no,
                        kind_name(kind),
                        first.get()
                    ),
                });
                continue;
            }
            Entry::Vacant(vacant) => {
                vacant.insert(row.line_no);
            }
        }
        if let (Some(position), Some(order)) = (position, order) {
            listed_bits[position] |= listed_bit(order, kind, movement.refund_no);
        }
        match judge(statement, row, movement, order) {
            Verdict::Agrees(agreed) => matched.push(agreed),
            Verdict::Differs(finding) => findings.push(finding),
            Verdict::LedgerClosed(order) => {
                let lines = closed.entry(&row.order_no).or_insert(ClosedOrderLines {
                    order,
                    payment: None,
                    reversal: None,
                });
                match kind {
                    StatementLineKind::Payment => lines.payment = Some(row),
                    _ => lines.reversal = Some(row),
                }
            }
        }
    }
    findings.extend(closed.into_values().map(ClosedOrderLines::finding));

    let mut settled = Vec::new();
    for (order, &bits) in ledger.orders().iter().zip(&listed_bits) {
        if order.channel != statement.channel {
            continue;
        }
        // An unconfirmed revoke this statement settles is expected like the
        // revoke it turns out to be.
        let mut revoke = order.revoke;
        let mut payment_at = order.payment_at();
        if let Some(LedgerRevoke::Unconfirmed { at }) = order.revoke {
            let money_moved = bits & (PAYMENT_BIT | REVERSAL_BIT) != 0;
            if money_moved || day.expects(at) {
                settled.push(RevokeSettlement {
                    order_no: order.order_no.clone(),
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
                          bit: u64,
                          at: DateTime<Utc>,
                          on_statement: Option<NaiveDate>,
                          amount: Money| {
            let elsewhere = on_statement.is_some_and(|date| date != statement.date);
            if elsewhere || !day.expects(at) {
                return;
            }
            let movement = Movement {
                kind,
                order_no: order.order_no.as_str(),
                refund_no,
            };
            let was_listed = match bit {
                0 => listed.contains_key(&movement),
                bit => bits & bit != 0,
            };
            if !was_listed {
                findings.push(missing_in_statement(movement, at, amount));
            }
        };
        if let Some(at) = payment_at {
            expect(
                StatementLineKind::Payment,
                None,
                PAYMENT_BIT,
                at,
                order.payment_on_statement,
                order.amount,
            );
        }
        if let Some(LedgerRevoke::Returned { at, on_statement }) = revoke {
            expect(
                StatementLineKind::Reversal,
                None,
                REVERSAL_BIT,
                at,
                on_statement,
                order.amount,
            );
        }
        for (index, refund) in order.refunds.iter().enumerate() {
            if let (RefundStatus::Succeeded, Some(at)) = (refund.status, refund.refunded_at) {
                expect(
                    StatementLineKind::Refund,
                    Some(refund.refund_no.as_str()),
                    refund_bit(index),
                    at,
                    refund.on_statement,
                    refund.amount,
                );
            }
        }
    }

    findings.sort_unstable();
    Report {
        channel: statement.channel,
        date: statement.date,
        statement_lines: statement.rows.len() as u64,
        matched,
        findings,
        settled,
    }
}

const PAYMENT_BIT: u64 = 1;
const REVERSAL_BIT: u64 = 1 << 1;
/// Refunds after the first `REFUND_BITS` of an order have no bit: they are
/// looked up in the map of listed movements instead.
const REFUND_BITS: usize = 62;

/// The bit of the `index`-th refund of an order, or 0 if it has none.
fn refund_bit(index: usize) -> u64 {
    if index < REFUND_BITS {
        1 << (2 + index)
    } else {
        0
    }
}

/// The bit that records a line listing this movement of a known order; 0
/// for a refund the ledger does not have (no ledger movement to account for).
fn listed_bit(order: &LedgerOrder, kind: StatementLineKind, refund_no: Option<&str>) -> u64 {
    match kind {
        StatementLineKind::Payment => PAYMENT_BIT,
        StatementLineKind::Reversal => REVERSAL_BIT,
        StatementLineKind::Refund => refund_no
            .and_then(|refund_no| {
                order
                    .refunds
                    .iter()
                    .position(|refund| refund.refund_no.as_str() == refund_no)
            })
            .map_or(0, refund_bit),
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

enum Verdict<'l> {
    Agrees(Match),
    Differs(Finding),
    /// A payment or reversal line of an order the ledger closed.
    LedgerClosed(&'l LedgerOrder),
}

/// Which movement a line is. A refund number the ledger made is a refund,
/// whatever it looks like; otherwise a refund "numbered" with the trade
/// number (Alipay's reversal lines) is the revoke's reversal.
fn movement_kind(
    channel: Channel,
    row: &StatementRow,
    order: Option<&LedgerOrder>,
) -> StatementLineKind {
    let refund_no = match (row.kind, row.refund_no.as_deref()) {
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

fn judge<'l>(
    statement: &Statement,
    row: &StatementRow,
    movement: Movement<'_>,
    order: Option<&'l LedgerOrder>,
) -> Verdict<'l> {
    let line_no = row.line_no;
    let what = kind_name(movement.kind);
    let finding = |kind, ledger_amount, detail| {
        Verdict::Differs(Finding {
            kind,
            order_no: Some(row.order_no.clone()),
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
    if order.channel != statement.channel {
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
    let (ledger_amount, on_statement, refund_no) = match movement.kind {
        StatementLineKind::Payment => {
            let unconfirmed = matches!(order.revoke, Some(LedgerRevoke::Unconfirmed { .. }));
            if order.payment_at().is_none() && !unconfirmed {
                if order.status == PaymentStatus::Closed {
                    return Verdict::LedgerClosed(order);
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
            if let Some(trade_no) = &order.channel_trade_no {
                if *trade_no != row.channel_trade_no {
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
            (order.amount, order.payment_on_statement, None)
        }
        StatementLineKind::Reversal => match order.revoke {
            Some(LedgerRevoke::Returned { on_statement, .. }) => (order.amount, on_statement, None),
            // The line settles the revoke: money moved and came back.
            Some(LedgerRevoke::Unconfirmed { .. }) => (order.amount, None, None),
            Some(LedgerRevoke::Closed { .. }) => return Verdict::LedgerClosed(order),
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
            let refund = movement
                .refund_no
                .and_then(|refund_no| order.refund(refund_no));
            let Some(refund) = refund else {
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
            (
                refund.amount,
                refund.on_statement,
                Some(refund.refund_no.clone()),
            )
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
        Some(date) if date != statement.date => finding(
            FindingKind::DuplicateLine,
            Some(ledger_amount),
            format!("line {line_no}: the {what} was already on the statement of {date}"),
        ),
        _ => Verdict::Agrees(Match {
            order_no: order.order_no.clone(),
            line: StatementLine {
                channel: statement.channel,
                statement_date: statement.date,
                kind: movement.kind,
                refund_no,
                amount: row.amount,
                channel_trade_no: row.channel_trade_no.clone(),
            },
            already_recorded: on_statement == Some(statement.date),
        }),
    }
}

/// The lines of one order the ledger closed (no money moved, as it believes).
struct ClosedOrderLines<'a> {
    order: &'a LedgerOrder,
    payment: Option<&'a StatementRow>,
    reversal: Option<&'a StatementRow>,
}

impl ClosedOrderLines<'_> {
    fn finding(self) -> Finding {
        let (shows, lines, amount) = match (self.payment, self.reversal) {
            (Some(payment), Some(reversal)) => (
                "paid and reversed",
                format!("lines {} and {}", payment.line_no, reversal.line_no),
                payment.amount,
            ),
            (Some(payment), None) => ("paid", format!("line {}", payment.line_no), payment.amount),
            (None, Some(reversal)) => (
                "reversed",
                format!("line {}", reversal.line_no),
                reversal.amount,
            ),
            (None, None) => unreachable!("an order is noted closed by one of its lines"),
        };
        Finding {
            kind: FindingKind::StatusMismatch,
            order_no: Some(self.order.order_no.as_str().to_owned()),
            refund_no: None,
            ledger_amount: Some(self.order.amount),
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
