//! The specification of the matcher, one scenario per rule of docs/rules.md
//! ("Reconciliation") and the module documentation of `matching`. Ledgers
//! are built from payment histories where the rule is about the payment
//! state, and as `LedgerOrder`s directly where it is about the matching.
//! Each test's first line says which rule it shows.

use chrono::{DateTime, Duration, NaiveDate, TimeZone, Utc};

use super::*;
use crate::channel::Channel;
use crate::ids::{CommandId, OrderNo, RefundNo};
use crate::payment::specification::{self as given, WECHAT_CODE, money};
use crate::payment::{
    CommandKind, Event, Fact, PaymentDecider, PaymentState, PaymentStatus, RefundStatus,
    RevokeReason, RevokeResult, StatementLine, StatementLineKind, StatementLineMatched,
};
use crate::specification::{Commands, Spec, WHEN};

const TRADE_NO: &str = "4200000001";

/// The statement day of every scenario.
fn day() -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 11, 21).unwrap()
}

/// An instant of the statement day, China time.
fn china(hour: u32, minute: u32, second: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 21, hour, minute, second)
        .unwrap()
        - Duration::hours(8)
}

fn row(line_no: u32, kind: StatementLineKind, order_no: &str, amount: &str) -> StatementRow {
    StatementRow {
        line_no,
        kind,
        order_no: order_no.to_owned(),
        channel_trade_no: format!("{TRADE_NO}{order_no}"),
        refund_no: None,
        channel_refund_no: None,
        amount: money(amount),
        at: china(10, 0, 0),
    }
}

fn payment(line_no: u32, order_no: &str, amount: &str) -> StatementRow {
    row(line_no, StatementLineKind::Payment, order_no, amount)
}

fn refund(line_no: u32, order_no: &str, refund_no: &str, amount: &str) -> StatementRow {
    StatementRow {
        refund_no: Some(refund_no.to_owned()),
        ..row(line_no, StatementLineKind::Refund, order_no, amount)
    }
}

fn statement(channel: Channel, rows: Vec<StatementRow>) -> Statement {
    Statement {
        channel,
        date: day(),
        rows,
    }
}

/// A WeChat order paid at `paid_at`, with the trade number its statement lines print.
fn paid(order_no: &str, amount: &str, paid_at: DateTime<Utc>) -> LedgerOrder {
    LedgerOrder {
        order_no: OrderNo::parse(order_no).unwrap(),
        channel: Channel::Wechat,
        amount: money(amount),
        status: PaymentStatus::Paid,
        channel_trade_no: Some(format!("{TRADE_NO}{order_no}")),
        paid_at: Some(paid_at),
        payment_on_statement: None,
        revoke: None,
        refunds: Vec::new(),
    }
}

fn with_refund(
    mut order: LedgerOrder,
    refund_no: &str,
    amount: &str,
    status: RefundStatus,
) -> LedgerOrder {
    order.refunds.push(LedgerRefund {
        refund_no: RefundNo::parse(refund_no).unwrap(),
        amount: money(amount),
        status,
        refunded_at: (status == RefundStatus::Succeeded).then(|| china(11, 0, 0)),
        on_statement: None,
    });
    order
}

fn ledger(orders: impl IntoIterator<Item = LedgerOrder>) -> Ledger {
    Ledger::new(orders)
}

fn run(statement: &Statement, ledger: &Ledger) -> Report {
    reconcile(statement, ledger, &ReconcilePolicy::default())
}

/// The findings as (kind, order number, refund number), for short assertions.
fn kinds(report: &Report) -> Vec<(FindingKind, Option<&str>, Option<&str>)> {
    report
        .findings
        .iter()
        .map(|finding| {
            (
                finding.kind,
                finding.order_no.as_deref(),
                finding.refund_no.as_deref(),
            )
        })
        .collect()
}

/// The state of a payment after these events (built with the payment
/// specification's builders, `given::...`).
fn state_of(history: impl IntoIterator<Item = Event>) -> PaymentState {
    Spec::of(PaymentDecider::default())
        .given(history)
        .state()
        .clone()
}

/// WeChat order `order_no` of 10.00, submitted at 10:00 and revoked at its
/// deadline with `result`: no query saw it paid.
fn revoked_unseen(order_no: &str, result: RevokeResult) -> Vec<Event> {
    vec![
        given::order_submitted(china(10, 0, 0), order_no, "10.00", WECHAT_CODE),
        given::revoke_requested(
            china(10, 0, 30),
            RevokeReason::DeadlineReached,
            china(10, 0, 30),
        ),
        given::revoked(china(10, 0, 31), result, 1),
    ]
}

impl Commands for ReconciliationDecider {
    type Request = ReconciliationRecorded;

    fn command(id: CommandId, report: ReconciliationRecorded) -> RecordReport {
        RecordReport {
            id,
            key_name: None,
            report,
        }
    }
}

#[test]
fn a_payment_line_matches_the_paid_order_by_order_number() {
    // Rule: payments are matched by merchant order number; the match is the line to record.
    let ledger = ledger([paid("A1", "10.00", china(10, 0, 0))]);
    let statement = statement(Channel::Wechat, vec![payment(1, "A1", "10.00")]);
    let report = run(&statement, &ledger);
    assert_eq!(kinds(&report), []);
    assert_eq!(
        report.matched.iter().collect::<Vec<_>>(),
        [Match {
            order_no: OrderNo::parse("A1").unwrap(),
            line: StatementLine {
                channel: Channel::Wechat,
                statement_date: day(),
                kind: StatementLineKind::Payment,
                refund_no: None,
                amount: money("10.00"),
                channel_trade_no: "4200000001A1".into(),
            },
            already_recorded: false,
        }]
    );
    assert_eq!(report.statement_lines, 1);
}

#[test]
fn a_refund_line_matches_the_succeeded_refund_by_refund_number() {
    // Rule: refunds are matched by order number and refund number.
    let order = with_refund(
        paid("A1", "10.00", china(10, 0, 0)),
        "R1",
        "3.00",
        RefundStatus::Succeeded,
    );
    let ledger = ledger([order]);
    let statement = statement(
        Channel::Wechat,
        vec![payment(1, "A1", "10.00"), refund(2, "A1", "R1", "3.00")],
    );
    let report = run(&statement, &ledger);
    assert_eq!(kinds(&report), []);
    assert_eq!(report.matched.len(), 2);
    let refund_line = &report.matched.iter().nth(1).unwrap().line;
    assert_eq!(refund_line.kind, StatementLineKind::Refund);
    assert_eq!(refund_line.refund_no, Some(RefundNo::parse("R1").unwrap()));
    assert_eq!(refund_line.amount, money("3.00"));
}

#[test]
fn a_wechat_revoked_line_matches_the_reversed_order() {
    // Rule: a paid-then-revoked order shows twice; WeChat's REVOKED line is the order's reversal.
    let state = state_of([
        given::order_submitted(china(10, 0, 0), "A1", "10.00", WECHAT_CODE),
        given::paid(china(10, 0, 2), "4200000001A1"),
        given::revoke_requested(
            china(10, 0, 30),
            RevokeReason::MerchantRequested,
            china(10, 0, 30),
        ),
        given::revoked(china(10, 0, 31), RevokeResult::Unspecified, 1),
    ]);
    assert_eq!(state.status(), Some(PaymentStatus::Reversed));
    let ledger = ledger(LedgerOrder::from_state(&state));
    let statement = statement(
        Channel::Wechat,
        vec![
            payment(1, "A1", "10.00"),
            row(2, StatementLineKind::Reversal, "A1", "10.00"),
        ],
    );
    let report = run(&statement, &ledger);
    assert_eq!(kinds(&report), []);
    let matched: Vec<StatementLineKind> = report.matched.iter().map(|m| m.line.kind).collect();
    assert_eq!(
        matched,
        [StatementLineKind::Payment, StatementLineKind::Reversal]
    );
}

#[test]
fn an_alipay_refund_numbered_with_the_trade_number_is_the_revokes_reversal() {
    // Rule: Alipay's reversal looks like a refund whose batch number is the trade number; never an unknown refund.
    let mut order = paid("A1", "10.00", china(10, 0, 0));
    order.channel = Channel::Alipay;
    order.status = PaymentStatus::Reversed;
    order.revoke = Some(LedgerRevoke::Returned {
        at: china(10, 0, 31),
        on_statement: None,
    });
    let ledger = ledger([order]);
    let reversal = refund(2, "A1", "4200000001A1", "10.00");
    let statement = statement(Channel::Alipay, vec![payment(1, "A1", "10.00"), reversal]);
    let report = run(&statement, &ledger);
    assert_eq!(kinds(&report), []);
    assert_eq!(
        report.matched.iter().nth(1).unwrap().line.kind,
        StatementLineKind::Reversal
    );
    assert_eq!(report.matched.iter().nth(1).unwrap().line.refund_no, None);
}

#[test]
fn a_line_of_an_order_the_ledger_does_not_know_is_missing_in_ledger() {
    // Rule: the channel has money the ledger does not know: an unknown order.
    let ledger = ledger([]);
    let statement = statement(Channel::Wechat, vec![payment(7, "X1", "5.00")]);
    let report = run(&statement, &ledger);
    assert_eq!(
        report.findings,
        [Finding {
            kind: FindingKind::MissingInLedger,
            order_no: Some("X1".into()),
            refund_no: None,
            ledger_amount: None,
            statement_amount: Some(money("5.00")),
            detail: "line 7: a payment of an order the ledger does not know".into(),
        }]
    );
    assert!(report.matched.is_empty());
}

#[test]
fn a_refund_the_ledger_did_not_make_is_missing_in_ledger() {
    // Rule: the channel has money the ledger does not know: an unknown refund of a known order.
    let ledger = ledger([paid("A1", "10.00", china(10, 0, 0))]);
    let statement = statement(
        Channel::Wechat,
        vec![payment(1, "A1", "10.00"), refund(2, "A1", "R9", "1.00")],
    );
    let report = run(&statement, &ledger);
    assert_eq!(
        kinds(&report),
        [(FindingKind::MissingInLedger, Some("A1"), Some("R9"))]
    );
    assert_eq!(report.matched.len(), 1, "the payment still matches");
}

#[test]
fn a_payment_the_statement_does_not_list_is_missing_in_statement() {
    // Rule: the ledger believes money moved that day and the statement does not show it.
    let ledger = ledger([
        paid("A1", "10.00", china(10, 0, 0)),
        paid("A2", "20.00", china(0, 0, 0)),
    ]);
    let statement = statement(Channel::Wechat, vec![payment(1, "A1", "10.00")]);
    let report = run(&statement, &ledger);
    assert_eq!(
        report.findings,
        [Finding {
            kind: FindingKind::MissingInStatement,
            order_no: Some("A2".into()),
            refund_no: None,
            ledger_amount: Some(money("20.00")),
            statement_amount: None,
            detail:
                "the ledger was paid at 2026-11-21T00:00:00+08:00; the statement does not list it"
                    .into(),
        }]
    );
}

#[test]
fn succeeded_refunds_and_returned_revokes_are_expected_on_the_statement_too() {
    // Rule: every movement the ledger believes in that day (payment, refund, reversal) must be listed.
    let refunded = with_refund(
        paid("A1", "10.00", china(10, 0, 0)),
        "R1",
        "3.00",
        RefundStatus::Succeeded,
    );
    let pending = with_refund(
        paid("A3", "10.00", china(10, 0, 0)),
        "R3",
        "3.00",
        RefundStatus::Pending,
    );
    let mut reversed = paid("A2", "10.00", china(10, 0, 0));
    reversed.status = PaymentStatus::Reversed;
    reversed.revoke = Some(LedgerRevoke::Returned {
        at: china(10, 0, 31),
        on_statement: None,
    });
    let ledger = ledger([refunded, reversed, pending]);
    let statement = statement(
        Channel::Wechat,
        vec![
            payment(1, "A1", "10.00"),
            payment(2, "A2", "10.00"),
            payment(3, "A3", "10.00"),
        ],
    );
    let report = run(&statement, &ledger);
    assert_eq!(
        kinds(&report),
        [
            (FindingKind::MissingInStatement, Some("A1"), Some("R1")),
            (FindingKind::MissingInStatement, Some("A2"), None),
        ],
        "a pending refund moved no money yet"
    );
}

#[test]
fn different_amounts_are_an_amount_mismatch() {
    // Rule: both know the movement with different amounts; the line is not recorded as matched.
    let order = with_refund(
        paid("A1", "10.00", china(10, 0, 0)),
        "R1",
        "3.00",
        RefundStatus::Succeeded,
    );
    let ledger = ledger([order]);
    let statement = statement(
        Channel::Wechat,
        vec![payment(1, "A1", "9.99"), refund(2, "A1", "R1", "3.01")],
    );
    let report = run(&statement, &ledger);
    assert_eq!(
        kinds(&report),
        [
            (FindingKind::AmountMismatch, Some("A1"), None),
            (FindingKind::AmountMismatch, Some("A1"), Some("R1")),
        ]
    );
    assert_eq!(report.findings[0].ledger_amount, Some(money("10.00")));
    assert_eq!(report.findings[0].statement_amount, Some(money("9.99")));
    assert!(report.matched.is_empty());
}

#[test]
fn a_ledger_closed_order_the_channel_paid_and_reversed_is_one_status_mismatch() {
    // Rule: a revoke the channel said closed the order (no money moved), while
    // the statement lists the payment and a reversal: one status mismatch.
    let state = state_of(revoked_unseen("A1", RevokeResult::Closed));
    assert_eq!(state.status(), Some(PaymentStatus::Closed));
    let ledger = ledger(LedgerOrder::from_state(&state));
    let statement = statement(
        Channel::Wechat,
        vec![
            payment(1, "A1", "10.00"),
            row(2, StatementLineKind::Reversal, "A1", "10.00"),
        ],
    );
    let report = run(&statement, &ledger);
    assert_eq!(
        report.findings,
        [Finding {
            kind: FindingKind::StatusMismatch,
            order_no: Some("A1".into()),
            refund_no: None,
            ledger_amount: Some(money("10.00")),
            statement_amount: Some(money("10.00")),
            detail: "lines 1 and 2: the statement shows the order paid and reversed; \
                     the ledger closed it without seeing a payment"
                .into(),
        }]
    );
    assert!(report.matched.is_empty());
    assert!(report.settled.is_empty());
}

#[test]
fn a_revoke_that_did_not_say_whether_money_moved_is_settled_by_the_statement() {
    // Rule: WeChat's reverse does not say what it did; the payment and its
    // REVOKED line on the statement mean money moved and came back.
    let state = state_of(revoked_unseen("A1", RevokeResult::Unspecified));
    assert_eq!(state.status(), Some(PaymentStatus::Revoked));
    let unconfirmed = ledger(LedgerOrder::from_state(&state));
    let both = statement(
        Channel::Wechat,
        vec![
            payment(1, "A1", "10.00"),
            row(2, StatementLineKind::Reversal, "A1", "10.00"),
        ],
    );
    let report = run(&both, &unconfirmed);
    assert_eq!(kinds(&report), []);
    assert_eq!(report.matched.len(), 2);
    assert_eq!(
        report.settled,
        [RevokeSettlement {
            order_no: OrderNo::parse("A1").unwrap(),
            money_moved: true,
        }]
    );

    // No line of the order on the statement of the revoke's day: none moved.
    let report = run(&statement(Channel::Wechat, vec![]), &unconfirmed);
    assert_eq!(kinds(&report), []);
    assert_eq!(
        report.settled,
        [RevokeSettlement {
            order_no: OrderNo::parse("A1").unwrap(),
            money_moved: false,
        }]
    );

    // Another day's statement without it says nothing about it.
    let other_day = Statement {
        date: day().succ_opt().unwrap(),
        ..statement(Channel::Wechat, vec![])
    };
    assert!(run(&other_day, &unconfirmed).settled.is_empty());

    // The payment without its reversal on the revoke's day: money moved, and
    // the reversal the revoke made is missing from the statement.
    let report = run(
        &statement(Channel::Wechat, vec![payment(1, "A1", "10.00")]),
        &unconfirmed,
    );
    assert_eq!(report.settled.len(), 1);
    assert!(report.settled[0].money_moved);
    assert_eq!(
        kinds(&report),
        [(FindingKind::MissingInStatement, Some("A1"), None)]
    );
    assert!(
        report.findings[0]
            .detail
            .contains("returned the payment by a revoke"),
        "{}",
        report.findings[0].detail
    );
}

#[test]
fn a_ledger_that_failed_or_still_waits_on_a_paid_order_is_a_status_mismatch() {
    // Rule: the ledger closed, failed or pending the order but the channel shows it paid.
    let mut paying = paid("A1", "10.00", china(10, 0, 0));
    paying.status = PaymentStatus::Paying;
    paying.paid_at = None;
    paying.channel_trade_no = None;
    let mut closed = paying.clone();
    closed.order_no = OrderNo::parse("A2").unwrap();
    closed.status = PaymentStatus::Closed;
    closed.revoke = Some(LedgerRevoke::Closed {
        at: china(10, 0, 31),
    });
    let ledger = ledger([paying, closed]);
    let statement = statement(
        Channel::Wechat,
        vec![payment(1, "A1", "10.00"), payment(2, "A2", "10.00")],
    );
    let report = run(&statement, &ledger);
    assert_eq!(
        kinds(&report),
        [
            (FindingKind::StatusMismatch, Some("A1"), None),
            (FindingKind::StatusMismatch, Some("A2"), None),
        ]
    );
    assert_eq!(
        report.findings[0].detail,
        "line 1: the statement shows the order paid; the ledger has it paying"
    );
    assert!(report.findings[1].detail.contains("shows the order paid;"));
}

#[test]
fn a_reversal_of_an_order_the_ledger_holds_paid_is_a_status_mismatch() {
    // Rule: a reversal line needs a revoke that returned money in the ledger.
    let ledger = ledger([paid("A1", "10.00", china(10, 0, 0))]);
    let statement = statement(
        Channel::Wechat,
        vec![
            payment(1, "A1", "10.00"),
            row(2, StatementLineKind::Reversal, "A1", "10.00"),
        ],
    );
    let report = run(&statement, &ledger);
    assert_eq!(
        kinds(&report),
        [(FindingKind::StatusMismatch, Some("A1"), None)]
    );
    assert!(report.findings[0].detail.contains("reversed by a revoke"));
}

#[test]
fn a_refund_pending_or_failed_in_the_ledger_but_done_on_the_statement_is_a_status_mismatch() {
    // Rule: the ledger's refund is pending (or failed) but the channel shows it refunded.
    let order = with_refund(
        with_refund(
            paid("A1", "10.00", china(10, 0, 0)),
            "R1",
            "3.00",
            RefundStatus::Pending,
        ),
        "R2",
        "2.00",
        RefundStatus::Failed,
    );
    let ledger = ledger([order]);
    let statement = statement(
        Channel::Wechat,
        vec![
            payment(1, "A1", "10.00"),
            refund(2, "A1", "R1", "3.00"),
            refund(3, "A1", "R2", "2.00"),
        ],
    );
    let report = run(&statement, &ledger);
    assert_eq!(
        kinds(&report),
        [
            (FindingKind::StatusMismatch, Some("A1"), Some("R1")),
            (FindingKind::StatusMismatch, Some("A1"), Some("R2")),
        ]
    );
    assert_eq!(
        report.findings[0].detail,
        "line 2: the statement shows the refund done; the ledger has it pending"
    );
    assert!(
        report.findings[1]
            .detail
            .ends_with("the ledger has it failed")
    );
}

#[test]
fn a_different_trade_number_or_channel_is_a_status_mismatch() {
    // Rule: the same order number on another trade or another channel is not the ledger's payment.
    let mut alipay = paid("A2", "10.00", china(10, 0, 0));
    alipay.channel = Channel::Alipay;
    let ledger = ledger([paid("A1", "10.00", china(10, 0, 0)), alipay]);
    let other_trade = StatementRow {
        channel_trade_no: "4200000999".into(),
        ..payment(1, "A1", "10.00")
    };
    let statement = statement(
        Channel::Wechat,
        vec![other_trade, payment(2, "A2", "10.00")],
    );
    let report = run(&statement, &ledger);
    assert_eq!(
        kinds(&report),
        [
            (FindingKind::StatusMismatch, Some("A1"), None),
            (FindingKind::StatusMismatch, Some("A2"), None),
        ],
        "and the Alipay order is not expected on the WeChat statement"
    );
}

#[test]
fn the_same_movement_listed_twice_is_a_duplicate_line() {
    // Rule: a duplicate line is reported once per repeat; the first occurrence still matches.
    let order = with_refund(
        paid("A1", "10.00", china(10, 0, 0)),
        "R1",
        "3.00",
        RefundStatus::Succeeded,
    );
    let ledger = ledger([order]);
    let statement = statement(
        Channel::Wechat,
        vec![
            payment(1, "A1", "10.00"),
            refund(2, "A1", "R1", "3.00"),
            payment(3, "A1", "10.00"),
            refund(4, "A1", "R1", "3.00"),
        ],
    );
    let report = run(&statement, &ledger);
    assert_eq!(
        kinds(&report),
        [
            (FindingKind::DuplicateLine, Some("A1"), None),
            (FindingKind::DuplicateLine, Some("A1"), Some("R1")),
        ]
    );
    assert_eq!(
        report.findings[0].detail,
        "line 3: repeats the payment on line 1"
    );
    assert_eq!(report.matched.len(), 2);
    assert_eq!(report.statement_lines, 4);
}

#[test]
fn a_movement_matched_on_another_days_statement_is_a_duplicate_not_expected_again() {
    // Rule: a movement already matched on another day's statement is not expected again, and listed again is a duplicate.
    let mut listed_again = paid("A1", "10.00", china(0, 2, 0));
    listed_again.payment_on_statement = Some(day().pred_opt().unwrap());
    let mut not_listed = paid("A2", "10.00", china(0, 2, 0));
    not_listed.payment_on_statement = Some(day().pred_opt().unwrap());
    let mut reimported = paid("A3", "10.00", china(10, 0, 0));
    reimported.payment_on_statement = Some(day());
    let ledger = ledger([listed_again, not_listed, reimported]);
    let statement = statement(
        Channel::Wechat,
        vec![payment(1, "A1", "10.00"), payment(2, "A3", "10.00")],
    );
    let report = run(&statement, &ledger);
    assert_eq!(
        kinds(&report),
        [(FindingKind::DuplicateLine, Some("A1"), None)]
    );
    assert_eq!(
        report.findings[0].detail,
        "line 1: the payment was already on the statement of 2026-11-20"
    );
    assert_eq!(report.matched.len(), 1);
    assert!(
        report.matched.iter().next().unwrap().already_recorded,
        "a re-import appends nothing"
    );
}

#[test]
fn a_payment_just_before_midnight_is_deferred_to_the_next_days_statement() {
    // Rule: a movement within the midnight grace before the end of the day, absent from the
    // statement, is deferred, not missing; the next day expects it and matches it by number.
    let late = paid("A1", "10.00", china(23, 58, 0));
    let too_early_to_defer = paid("A2", "10.00", china(23, 54, 59));
    let ledger = ledger([late, too_early_to_defer]);
    let today = statement(Channel::Wechat, vec![]);
    assert_eq!(
        kinds(&run(&today, &ledger)),
        [(FindingKind::MissingInStatement, Some("A2"), None)],
        "only the one outside the 5-minute grace is missing"
    );

    let next_day = |rows| Statement {
        channel: Channel::Wechat,
        date: day().succ_opt().unwrap(),
        rows,
    };
    let listed = run(&next_day(vec![payment(1, "A1", "10.00")]), &ledger);
    assert_eq!(kinds(&listed), []);
    assert_eq!(
        listed.matched.iter().next().unwrap().line.statement_date,
        day().succ_opt().unwrap()
    );
    assert_eq!(
        kinds(&run(&next_day(vec![]), &ledger)),
        [(FindingKind::MissingInStatement, Some("A1"), None)],
        "absent from the next day too: now it is missing"
    );
}

#[test]
fn a_payment_listed_on_its_own_day_just_before_midnight_is_not_expected_the_next_day() {
    // Rule: when the channel does list the late payment on its own day, the match recorded there
    // keeps the next day from expecting it.
    let history = [
        given::order_submitted(china(23, 58, 0), "A1", "10.00", WECHAT_CODE),
        given::paid(china(23, 58, 1), "4200000001A1"),
    ];
    let today = statement(Channel::Wechat, vec![payment(1, "A1", "10.00")]);
    let report = run(
        &today,
        &ledger(LedgerOrder::from_state(&state_of(history.clone()))),
    );
    assert_eq!(kinds(&report), []);

    let recorded = state_of(history.into_iter().chain([given::line_matched(
        china(23, 59, 0),
        report.matched.iter().next().unwrap().line.clone(),
    )]));
    let next_day = Statement {
        channel: Channel::Wechat,
        date: day().succ_opt().unwrap(),
        rows: vec![],
    };
    assert_eq!(
        kinds(&run(&next_day, &ledger(LedgerOrder::from_state(&recorded)))),
        []
    );
}

#[test]
fn the_grace_is_a_policy() {
    // Rule: the midnight grace comes from the policy; zero grace expects every movement of the day.
    let ledger = ledger([paid("A1", "10.00", china(23, 58, 0))]);
    let today = statement(Channel::Wechat, vec![]);
    let strict = ReconcilePolicy {
        midnight_grace_secs: 0,
    };
    assert_eq!(
        kinds(&reconcile(&today, &ledger, &strict)),
        [(FindingKind::MissingInStatement, Some("A1"), None)]
    );
}

#[test]
fn movements_of_other_days_are_not_expected() {
    // Rule: only movements of the statement's China-time day are expected (UTC+8, not UTC).
    let ledger = ledger([
        paid("A1", "10.00", china(0, 0, 0) - Duration::minutes(10)),
        paid("A2", "10.00", china(0, 0, 0) + Duration::days(1)),
        // 20:00 UTC on the 20th is 04:00 on the 21st in China: expected.
        paid(
            "A3",
            "10.00",
            Utc.with_ymd_and_hms(2026, 11, 20, 20, 0, 0).unwrap(),
        ),
    ]);
    let report = run(&statement(Channel::Wechat, vec![]), &ledger);
    assert_eq!(
        kinds(&report),
        [(FindingKind::MissingInStatement, Some("A3"), None)]
    );
}

#[test]
fn from_state_keeps_the_movements_and_the_statements_they_were_matched_on() {
    // Rule: the ledger side is read from the payment state: payment, refunds, revoke and matched lines.
    let refund_no = RefundNo::parse("R1").unwrap();
    let line = |kind, refund_no, date| StatementLine {
        channel: Channel::Wechat,
        statement_date: date,
        kind,
        refund_no,
        amount: money("3.00"),
        channel_trade_no: "4200000001A1".into(),
    };
    let state = state_of([
        given::order_submitted(china(10, 0, 0), "A1", "10.00", WECHAT_CODE),
        given::paid(china(10, 0, 1), "4200000001A1"),
        given::refund_requested(china(10, 1, 0), "R1", "3.00"),
        given::refunded(china(10, 1, 2), "R1", "3.00"),
        given::refund_requested(china(10, 2, 0), "R2", "1.00"),
        given::refund_failed(china(10, 2, 1), "R2", "FAIL"),
        given::line_matched(
            china(23, 0, 0),
            line(StatementLineKind::Refund, Some(refund_no.clone()), day()),
        ),
        given::line_matched(
            china(23, 0, 1),
            line(StatementLineKind::Payment, None, day().succ_opt().unwrap()),
        ),
        given::line_matched(
            china(23, 0, 2),
            line(StatementLineKind::Payment, None, day()),
        ),
    ]);
    let order = LedgerOrder::from_state(&state).unwrap();
    assert_eq!(order.status, PaymentStatus::PartiallyRefunded);
    assert_eq!(order.paid_at, Some(china(10, 0, 1)));
    assert_eq!(order.channel_trade_no.as_deref(), Some("4200000001A1"));
    assert_eq!(
        order.payment_on_statement,
        Some(day()),
        "the earliest statement"
    );
    assert_eq!(order.revoke, None);
    assert_eq!(
        order.refunds,
        [
            LedgerRefund {
                refund_no,
                amount: money("3.00"),
                status: RefundStatus::Succeeded,
                refunded_at: Some(china(10, 1, 2)),
                on_statement: Some(day()),
            },
            LedgerRefund {
                refund_no: RefundNo::parse("R2").unwrap(),
                amount: money("1.00"),
                status: RefundStatus::Failed,
                refunded_at: None,
                on_statement: None,
            },
        ]
    );
    assert_eq!(LedgerOrder::from_state(&PaymentState::Initial), None);
}

#[test]
fn a_revoke_that_returned_an_unseen_payment_expects_both_lines_at_the_revoke_time() {
    // Rule: a payment only the revoke saw (it refunded) moved money: payment and reversal are expected.
    let state = state_of(revoked_unseen("A1", RevokeResult::Refunded));
    let order = LedgerOrder::from_state(&state).unwrap();
    assert_eq!(order.status, PaymentStatus::Reversed);
    assert_eq!(order.paid_at, None);
    assert_eq!(order.payment_at(), Some(china(10, 0, 31)));
    let ledger = ledger([order]);
    assert_eq!(
        kinds(&run(&statement(Channel::Wechat, vec![]), &ledger)),
        [
            (FindingKind::MissingInStatement, Some("A1"), None),
            (FindingKind::MissingInStatement, Some("A1"), None),
        ]
    );
    let unseen_trade = StatementRow {
        channel_trade_no: "4200000777".into(),
        ..payment(1, "A1", "10.00")
    };
    let full = statement(
        Channel::Wechat,
        vec![
            unseen_trade,
            row(2, StatementLineKind::Reversal, "A1", "10.00"),
        ],
    );
    let report = run(&full, &ledger);
    assert_eq!(kinds(&report), []);
    assert_eq!(report.matched.len(), 2);
}

#[test]
fn every_match_is_accepted_by_the_payment_decider_once() {
    // Rule: the matcher and the Payment decider agree: each match records once, a re-import records nothing.
    let paid_a1 = vec![
        given::order_submitted(china(10, 0, 0), "A1", "10.00", WECHAT_CODE),
        given::paid(china(10, 0, 1), "4200000001A1"),
    ];
    let reversed_a2 = revoked_unseen("A2", RevokeResult::Refunded);
    let ledger = ledger(
        [&paid_a1, &reversed_a2]
            .into_iter()
            .filter_map(|history| LedgerOrder::from_state(&state_of(history.clone()))),
    );
    let statement = statement(
        Channel::Wechat,
        vec![
            payment(1, "A1", "10.00"),
            payment(2, "A2", "10.00"),
            row(3, StatementLineKind::Reversal, "A2", "10.00"),
        ],
    );
    let report = run(&statement, &ledger);
    assert_eq!(kinds(&report), []);
    let matched = |order_no: &str, kind, trade_no: &str| Match {
        order_no: OrderNo::parse(order_no).unwrap(),
        line: StatementLine {
            channel: Channel::Wechat,
            statement_date: day(),
            kind,
            refund_no: None,
            amount: money("10.00"),
            channel_trade_no: trade_no.into(),
        },
        already_recorded: false,
    };
    assert_eq!(
        report.matched.iter().collect::<Vec<_>>(),
        [
            matched("A1", StatementLineKind::Payment, "4200000001A1"),
            matched("A2", StatementLineKind::Payment, "4200000001A2"),
            matched("A2", StatementLineKind::Reversal, "4200000001A2"),
        ]
    );
    let histories = [&paid_a1, &reversed_a2, &reversed_a2];
    for (history, Match { line, .. }) in histories.into_iter().zip(&report.matched) {
        let record = || CommandKind::MatchStatementLine(line.clone());
        Spec::of(PaymentDecider::default())
            .given(history.clone())
            .when_at(china(12, 0, 0), record())
            .then([Event {
                at: china(12, 0, 0),
                command_id: WHEN,
                key_name: None,
                fact: Fact::StatementLineMatched(StatementLineMatched { line: line.clone() }),
            }])
            .when_at(china(12, 0, 1), record())
            .then([]);
    }
}

#[test]
fn the_report_serializes_as_the_contract_says_and_is_byte_identical_across_runs() {
    // Rule: docs/api.md's report shape, snake_case kinds, findings sorted whatever the map order.
    let orders: Vec<LedgerOrder> = (0..50)
        .map(|index| paid(&format!("A{index}"), "10.00", china(10, 0, 0)))
        .collect();
    let statement = statement(
        Channel::Wechat,
        vec![payment(1, "A0", "10.00"), payment(2, "X1", "1.00")],
    );
    let first = serde_json::to_string(&run(&statement, &ledger(orders.clone()))).unwrap();
    for _ in 0..5 {
        let reversed_ledger = ledger(orders.iter().rev().cloned());
        assert_eq!(
            serde_json::to_string(&run(&statement, &reversed_ledger)).unwrap(),
            first
        );
    }
    let value: serde_json::Value = serde_json::from_str(&first).unwrap();
    assert_eq!(value["channel"], "wechat");
    assert_eq!(value["date"], "2026-11-21");
    assert_eq!(value["statement_lines"], 2);
    assert_eq!(value["matched"], 1);
    let findings = value["findings"].as_array().unwrap();
    assert_eq!(findings.len(), 50);
    assert_eq!(
        findings[0],
        serde_json::json!({
            "kind": "missing_in_ledger",
            "order_no": "X1",
            "refund_no": null,
            "ledger_amount": null,
            "statement_amount": "1.00",
            "detail": "line 2: a payment of an order the ledger does not know",
        })
    );
    assert_eq!(findings[1]["kind"], "missing_in_statement");
    assert_eq!(findings[1]["order_no"], "A1");
    assert_eq!(findings[2]["order_no"], "A10", "sorted by order number");
    let names: Vec<&str> = [
        FindingKind::MissingInLedger,
        FindingKind::MissingInStatement,
        FindingKind::AmountMismatch,
        FindingKind::StatusMismatch,
        FindingKind::DuplicateLine,
    ]
    .iter()
    .map(|kind| kind.as_str())
    .collect();
    for (kind, name) in names.iter().enumerate() {
        let serialized = serde_json::to_value(
            [
                FindingKind::MissingInLedger,
                FindingKind::MissingInStatement,
                FindingKind::AmountMismatch,
                FindingKind::StatusMismatch,
                FindingKind::DuplicateLine,
            ][kind],
        )
        .unwrap();
        assert_eq!(serialized, *name);
    }
    assert_eq!(
        names,
        [
            "missing_in_ledger",
            "missing_in_statement",
            "amount_mismatch",
            "status_mismatch",
            "duplicate_line"
        ]
    );
}

#[test]
fn importing_the_same_statement_twice_records_nothing_the_second_time() {
    // Rule: importing the same statement twice changes nothing; a different file is recorded.
    let ledger = ledger([paid("A1", "10.00", china(10, 0, 0))]);
    let report = run(
        &statement(Channel::Wechat, vec![payment(1, "A1", "10.00")]),
        &ledger,
    );
    let import = |sha256: &str| ReconciliationRecorded::from_report(&report, sha256);
    let report_of = |sha256: &str| ReconciliationRecorded {
        channel: Channel::Wechat,
        date: day(),
        statement_sha256: sha256.into(),
        statement_lines: 1,
        matched: 1,
        findings: vec![],
        revokes_settled: 0,
    };
    let recorded = |at, sha256| ReconciliationEvent {
        at,
        command_id: WHEN,
        key_name: None,
        fact: ReconciliationFact::Recorded(report_of(sha256)),
    };
    let spec = Spec::of(ReconciliationDecider);
    assert_eq!(spec.state().latest, None);
    let spec = spec
        .when_at(china(12, 0, 0), import("aa11"))
        .then([recorded(china(12, 0, 0), "aa11")]);
    assert!(spec.state().already_imported("aa11"));
    assert!(!spec.state().already_imported("bb22"));
    let spec = spec
        .when_at(china(12, 30, 0), import("aa11"))
        .then([])
        .when_at(china(13, 0, 0), import("bb22"))
        .then([recorded(china(13, 0, 0), "bb22")]);
    assert_eq!(
        spec.state(),
        &DayState {
            imported: vec!["aa11".into(), "bb22".into()],
            latest: Some(report_of("bb22")),
        }
    );
}

#[test]
fn on_alipay_a_refund_numbered_with_the_order_number_is_a_reversal_unless_the_ledger_made_it() {
    // Rule: a refund number the ledger made is a refund; otherwise Alipay's trade or order
    // number in the refund column marks the revoke's reversal.
    let alipay = |mut order: LedgerOrder| {
        order.channel = Channel::Alipay;
        order
    };
    let mut reversed = alipay(paid("A1", "10.00", china(10, 0, 0)));
    reversed.status = PaymentStatus::Reversed;
    reversed.revoke = Some(LedgerRevoke::Returned {
        at: china(10, 0, 31),
        on_statement: None,
    });
    let refunded = alipay(with_refund(
        paid("A2", "10.00", china(10, 0, 0)),
        "A2",
        "10.00",
        RefundStatus::Succeeded,
    ));
    let ledger = ledger([reversed, refunded]);
    let statement = statement(
        Channel::Alipay,
        vec![
            payment(1, "A1", "10.00"),
            refund(2, "A1", "A1", "10.00"),
            payment(3, "A2", "10.00"),
            refund(4, "A2", "A2", "10.00"),
        ],
    );
    let report = run(&statement, &ledger);
    assert_eq!(kinds(&report), []);
    let lines: Vec<Match> = report.matched.iter().collect();
    let matched: Vec<(&str, StatementLineKind)> = lines
        .iter()
        .map(|m| (m.order_no.as_str(), m.line.kind))
        .collect();
    assert_eq!(
        matched,
        [
            ("A1", StatementLineKind::Payment),
            ("A1", StatementLineKind::Reversal),
            ("A2", StatementLineKind::Payment),
            ("A2", StatementLineKind::Refund),
        ]
    );
}

#[test]
fn orders_of_the_other_channel_are_not_expected_on_this_statement() {
    // Rule: a statement is one channel's; the ledger's orders on the other channel are not missing from it.
    let mut alipay = paid("B1", "10.00", china(10, 0, 0));
    alipay.channel = Channel::Alipay;
    let ledger = ledger([alipay]);
    assert_eq!(
        kinds(&run(&statement(Channel::Wechat, vec![]), &ledger)),
        []
    );
    assert_eq!(
        kinds(&run(&statement(Channel::Alipay, vec![]), &ledger)),
        [(FindingKind::MissingInStatement, Some("B1"), None)]
    );
}

#[test]
fn an_order_with_more_refunds_than_bits_is_still_accounted_for() {
    // Rule: every succeeded refund is expected, however many an order has (past the 62 tracked by bits).
    let mut order = paid("A1", "100.00", china(10, 0, 0));
    for index in 0..64 {
        order = with_refund(order, &format!("R{index}"), "0.01", RefundStatus::Succeeded);
    }
    let ledger = ledger([order]);
    let mut rows = vec![payment(1, "A1", "100.00")];
    // Every refund listed but R1 and R63.
    for index in (0..64).filter(|index| ![1, 63].contains(index)) {
        rows.push(refund(index + 2, "A1", &format!("R{index}"), "0.01"));
    }
    let report = run(&statement(Channel::Wechat, rows), &ledger);
    assert_eq!(
        kinds(&report),
        [
            (FindingKind::MissingInStatement, Some("A1"), Some("R1")),
            (FindingKind::MissingInStatement, Some("A1"), Some("R63")),
        ]
    );
    assert_eq!(report.matched.len(), 63);
}

#[test]
fn a_ledger_keeps_the_last_order_given_for_a_number() {
    // Rule: one order per number; the latest state given wins.
    let ledger = ledger([
        paid("A1", "10.00", china(10, 0, 0)),
        paid("A1", "12.00", china(10, 0, 0)),
        paid("A2", "10.00", china(10, 0, 0)),
    ]);
    assert_eq!(ledger.len(), 2);
    assert_eq!(ledger.get("A1").unwrap().amount, money("12.00"));
    assert_eq!(ledger.get("A3"), None);
    let numbers: Vec<&str> = ledger.orders().map(|o| o.order_no).collect();
    assert_eq!(numbers, ["A1", "A2"]);
}
