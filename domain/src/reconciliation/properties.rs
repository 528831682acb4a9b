//! Properties of the matcher over random ledgers: the statement a ledger's
//! own movements would produce reconciles with no finding, and planting
//! defects in it (a dropped line, a repeated line, a changed amount, a
//! foreign line) gives exactly the planted findings, no more, no fewer.

use std::collections::BTreeSet;

use chrono::{DateTime, Duration, NaiveDate, TimeZone, Utc};
use proptest::prelude::*;

use super::*;
use crate::channel::Channel;
use crate::ids::{OrderNo, RefundNo};
use crate::money::Money;
use crate::payment::{PaymentStatus, RefundStatus, StatementLineKind};

fn day() -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 11, 21).unwrap()
}

/// Minutes after 01:00 China time on the statement day (well inside it).
fn at(minutes: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 20, 17, 0, 0).unwrap() + Duration::minutes(i64::from(minutes))
}

/// One generated order: how its life went, its amount, its refunds' outcomes.
#[derive(Debug, Clone)]
struct OrderSpec {
    life: u8,
    amount_fen: u64,
    minutes: u32,
    /// Per refund: 0 succeeded, 1 pending, 2 failed.
    refunds: Vec<u8>,
}

fn order_spec() -> impl Strategy<Value = OrderSpec> {
    (
        0u8..6,
        100u64..1_000_000,
        0u32..1200,
        prop::collection::vec(0u8..3, 0..4),
    )
        .prop_map(|(life, amount_fen, minutes, refunds)| OrderSpec {
            life,
            amount_fen,
            minutes,
            refunds,
        })
}

/// One planted defect; `target` picks a line of the clean statement.
#[derive(Debug, Clone, Copy)]
struct Defect {
    kind: u8,
    target: usize,
}

fn defect() -> impl Strategy<Value = Defect> {
    (0u8..4, any::<usize>()).prop_map(|(kind, target)| Defect { kind, target })
}

type Expected = (FindingKind, Option<String>, Option<String>);

/// The ledger and the statement its movements produce, in the channel's own form.
fn ledger_and_statement(
    channel: Channel,
    specs: &[OrderSpec],
) -> (Vec<LedgerOrder>, Vec<StatementRow>) {
    let mut orders = Vec::new();
    let mut rows = Vec::new();
    for (index, spec) in specs.iter().enumerate() {
        let order_no = format!("A{index}");
        let trade_no = format!("T{index}");
        let amount = Money::from_fen(spec.amount_fen).unwrap();
        let paid_at = at(spec.minutes);
        let row = |kind, refund_no: Option<String>, amount| StatementRow {
            line_no: 0,
            kind,
            order_no: order_no.clone(),
            channel_trade_no: trade_no.clone(),
            refund_no,
            channel_refund_no: None,
            amount,
            at: paid_at,
        };
        let mut order = LedgerOrder {
            order_no: OrderNo::parse(&order_no).unwrap(),
            channel,
            amount,
            status: PaymentStatus::Paid,
            channel_trade_no: Some(trade_no.clone()),
            paid_at: Some(paid_at),
            payment_on_statement: None,
            revoke: None,
            refunds: Vec::new(),
        };
        match spec.life {
            // Paid, with refunds of one fen each (never more than was paid).
            0 | 1 => {
                rows.push(row(StatementLineKind::Payment, None, amount));
                for (refund_index, outcome) in spec.refunds.iter().enumerate() {
                    let refund_no = format!("R{index}x{refund_index}");
                    let refund_amount = Money::from_fen(1 + refund_index as u64).unwrap();
                    let status = match outcome {
                        0 => RefundStatus::Succeeded,
                        1 => RefundStatus::Pending,
                        _ => RefundStatus::Failed,
                    };
                    order.refunds.push(LedgerRefund {
                        refund_no: RefundNo::parse(&refund_no).unwrap(),
                        amount: refund_amount,
                        status,
                        refunded_at: (status == RefundStatus::Succeeded)
                            .then(|| paid_at + Duration::minutes(3)),
                        on_statement: None,
                    });
                    if status == RefundStatus::Succeeded {
                        rows.push(row(
                            StatementLineKind::Refund,
                            Some(refund_no),
                            refund_amount,
                        ));
                    }
                }
            }
            // Reversed: the payment seen (2) or seen only by the revoke (3).
            2 | 3 => {
                order.status = PaymentStatus::Reversed;
                order.revoke = Some(LedgerRevoke::Returned {
                    at: paid_at + Duration::seconds(31),
                    on_statement: None,
                });
                if spec.life == 3 {
                    order.paid_at = None;
                    order.channel_trade_no = None;
                }
                rows.push(row(StatementLineKind::Payment, None, amount));
                rows.push(match channel {
                    Channel::Wechat => row(StatementLineKind::Reversal, None, amount),
                    // Alipay: a refund whose batch number is the trade number.
                    Channel::Alipay => {
                        row(StatementLineKind::Refund, Some(trade_no.clone()), amount)
                    }
                });
            }
            // Closed, or still paying: no money moved, no line.
            4 => {
                order.status = PaymentStatus::Closed;
                order.paid_at = None;
                order.channel_trade_no = None;
                order.revoke = Some(LedgerRevoke::Closed {
                    at: paid_at + Duration::seconds(31),
                });
            }
            _ => {
                order.status = PaymentStatus::Paying;
                order.paid_at = None;
                order.channel_trade_no = None;
            }
        }
        orders.push(order);
    }
    (orders, rows)
}

/// The movement a clean line stands for, as findings name it.
fn names(row: &StatementRow) -> (Option<String>, Option<String>) {
    let refund_no = match row.kind {
        StatementLineKind::Refund if row.refund_no.as_deref() != Some(&row.channel_trade_no) => {
            row.refund_no.clone()
        }
        _ => None,
    };
    (Some(row.order_no.clone()), refund_no)
}

fn numbered(mut rows: Vec<StatementRow>) -> Vec<StatementRow> {
    for (index, row) in rows.iter_mut().enumerate() {
        row.line_no = u32::try_from(index).unwrap() + 1;
    }
    rows
}

fn channel() -> impl Strategy<Value = Channel> {
    prop_oneof![Just(Channel::Wechat), Just(Channel::Alipay)]
}

proptest! {
    #[test]
    fn a_ledgers_own_statement_reconciles_with_no_finding(
        channel in channel(),
        specs in prop::collection::vec(order_spec(), 0..40),
    ) {
        let (orders, rows) = ledger_and_statement(channel, &specs);
        let statement = Statement { channel, date: day(), rows: numbered(rows) };
        let report = reconcile(&statement, &Ledger::new(orders), &ReconcilePolicy::default());
        prop_assert_eq!(report.findings, vec![]);
        prop_assert_eq!(report.matched.len(), statement.rows.len());
    }

    #[test]
    fn planted_defects_are_found_exactly(
        channel in channel(),
        specs in prop::collection::vec(order_spec(), 1..40),
        defects in prop::collection::vec(defect(), 1..6),
    ) {
        let (orders, clean) = ledger_and_statement(channel, &specs);
        let mut expected: Vec<Expected> = Vec::new();
        let mut used = BTreeSet::new();
        let mut dropped = BTreeSet::new();
        let mut changed = BTreeSet::new();
        let mut appended = Vec::new();
        for (index, defect) in defects.iter().enumerate() {
            if defect.kind == 3 {
                // A foreign line: a payment of an order the ledger never made.
                let foreign = format!("F{index}");
                appended.push(StatementRow {
                    line_no: 0,
                    kind: StatementLineKind::Payment,
                    order_no: foreign.clone(),
                    channel_trade_no: format!("FT{index}"),
                    refund_no: None,
                    channel_refund_no: None,
                    amount: Money::from_fen(100).unwrap(),
                    at: at(0),
                });
                expected.push((FindingKind::MissingInLedger, Some(foreign), None));
                continue;
            }
            if clean.is_empty() {
                continue;
            }
            let target = defect.target % clean.len();
            if !used.insert(target) {
                continue;
            }
            let (order_no, refund_no) = names(&clean[target]);
            let kind = match defect.kind {
                0 => {
                    dropped.insert(target);
                    FindingKind::MissingInStatement
                }
                1 => {
                    appended.push(clean[target].clone());
                    FindingKind::DuplicateLine
                }
                _ => {
                    changed.insert(target);
                    FindingKind::AmountMismatch
                }
            };
            expected.push((kind, order_no, refund_no));
        }
        let mut rows = Vec::new();
        for (index, row) in clean.iter().enumerate() {
            if dropped.contains(&index) {
                continue;
            }
            let mut row = row.clone();
            if changed.contains(&index) {
                row.amount = Money::from_fen(row.amount.fen() + 1).unwrap();
            }
            rows.push(row);
        }
        rows.extend(appended);
        let statement = Statement { channel, date: day(), rows: numbered(rows) };
        let report = reconcile(&statement, &Ledger::new(orders), &ReconcilePolicy::default());

        let mut found: Vec<Expected> = report
            .findings
            .iter()
            .map(|finding| (finding.kind, finding.order_no.clone(), finding.refund_no.clone()))
            .collect();
        found.sort();
        expected.sort();
        prop_assert_eq!(found, expected);
        let defective_lines = dropped.len() + changed.len();
        prop_assert_eq!(report.matched.len(), clean.len() - defective_lines);
    }
}
