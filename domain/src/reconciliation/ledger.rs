//! The ledger's side of reconciliation: what one order's history says about
//! the money that moved, in the compact form the matcher needs.
//!
//! A [`LedgerOrder`] is built from a payment's folded state
//! ([`LedgerOrder::from_state`]); a projection or the store adapter keeps one
//! per order so that a day's reconciliation does not replay a million streams.
//! The matcher reads a [`Ledger`]: the orders of one merchant, indexed by
//! order number.

use std::collections::HashMap;

use chrono::{DateTime, NaiveDate, Utc};

use crate::channel::Channel;
use crate::ids::{OrderNo, RefundNo};
use crate::money::Money;
use crate::payment::{PaymentState, PaymentStatus, RefundStage, RefundStatus, StatementLineKind};

/// One order as reconciliation sees it: the movements of money the ledger
/// believes in, each with the statement it was already matched on, if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerOrder {
    pub order_no: OrderNo,
    pub channel: Channel,
    pub amount: Money,
    pub status: PaymentStatus,
    /// The channel's trade number, once the payment is known.
    pub channel_trade_no: Option<String>,
    /// When the payment succeeded, once the ledger knows it did. A revoke that
    /// returned a payment the ledger never saw leaves this `None`: see
    /// [`LedgerOrder::payment_at`].
    pub paid_at: Option<DateTime<Utc>>,
    /// The day of the statement whose payment line was recorded as matched.
    pub payment_on_statement: Option<NaiveDate>,
    /// What a finished revoke did, if the order was revoked.
    pub revoke: Option<LedgerRevoke>,
    /// Refunds in request order (only a paid order has any).
    pub refunds: Vec<LedgerRefund>,
}

/// The end of a revoke.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LedgerRevoke {
    /// No money moved: the order is closed.
    Closed { at: DateTime<Utc> },
    /// The revoke succeeded without saying whether the customer had paid
    /// (WeChat's reverse never says; the ledger had not seen a payment):
    /// this day's statement settles it. A payment or `REVOKED` line means
    /// money moved and came back; no line on the revoke's day means none moved.
    Unconfirmed { at: DateTime<Utc> },
    /// The revoke returned a payment to the customer: the statement shows
    /// the payment and a reversal line.
    Returned {
        at: DateTime<Utc>,
        /// The day of the statement whose reversal line was recorded as matched.
        on_statement: Option<NaiveDate>,
    },
}

/// One refund of an order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerRefund {
    pub refund_no: RefundNo,
    pub amount: Money,
    /// `Pending` covers a refund in doubt; `ManualReview` one an operator holds.
    pub status: RefundStatus,
    /// When the money went back, for a succeeded refund.
    pub refunded_at: Option<DateTime<Utc>>,
    /// The day of the statement whose refund line was recorded as matched.
    pub on_statement: Option<NaiveDate>,
}

impl LedgerOrder {
    /// The compact form of a payment's state; `None` before submission.
    pub fn from_state(state: &PaymentState) -> Option<LedgerOrder> {
        let order = state.order()?;
        let status = state.status()?;
        let paid = state.paid_facts();
        let revoke = match state {
            PaymentState::Closed(closed) => Some(LedgerRevoke::Closed {
                at: closed.closed_at,
            }),
            PaymentState::Reversed(reversed) => Some(LedgerRevoke::Returned {
                at: reversed.reversed_at,
                on_statement: None,
            }),
            PaymentState::RevokedUnconfirmed(revoked) => Some(LedgerRevoke::Unconfirmed {
                at: revoked.revoked_at,
            }),
            _ => None,
        };
        let refunds = match state {
            PaymentState::Paid(paid) => paid
                .refunds
                .iter()
                .map(|refund| LedgerRefund {
                    refund_no: refund.refund_no.clone(),
                    amount: refund.amount,
                    status: refund.status(),
                    refunded_at: match refund.stage {
                        RefundStage::Succeeded { refunded_at, .. } => Some(refunded_at),
                        _ => None,
                    },
                    on_statement: None,
                })
                .collect(),
            _ => Vec::new(),
        };
        let mut ledger = LedgerOrder {
            order_no: order.order_no.clone(),
            channel: order.channel,
            amount: order.amount,
            status,
            channel_trade_no: paid.map(|paid| paid.channel_trade_no.clone()),
            paid_at: paid.map(|paid| paid.paid_at),
            payment_on_statement: None,
            revoke,
            refunds,
        };
        // The earliest statement wins, so the result does not depend on the
        // order lines were recorded in.
        let earliest = |slot: &mut Option<NaiveDate>, date: NaiveDate| {
            *slot = Some(slot.map_or(date, |known| known.min(date)));
        };
        for line in &order.matched_lines {
            match line.kind {
                StatementLineKind::Payment => {
                    earliest(&mut ledger.payment_on_statement, line.statement_date);
                }
                StatementLineKind::Reversal => {
                    if let Some(LedgerRevoke::Returned { on_statement, .. }) = &mut ledger.revoke {
                        earliest(on_statement, line.statement_date);
                    }
                }
                StatementLineKind::Refund => {
                    let refund = line.refund_no.as_ref().and_then(|refund_no| {
                        ledger
                            .refunds
                            .iter_mut()
                            .find(|refund| &refund.refund_no == refund_no)
                    });
                    if let Some(refund) = refund {
                        earliest(&mut refund.on_statement, line.statement_date);
                    }
                }
            }
        }
        Some(ledger)
    }

    /// When the ledger believes the payment's money moved: the payment time,
    /// or, for a payment only a revoke saw (it returned money), the revoke's
    /// time. `None` when the ledger does not believe the customer paid.
    pub fn payment_at(&self) -> Option<DateTime<Utc>> {
        match (self.paid_at, &self.revoke) {
            (Some(paid_at), _) => Some(paid_at),
            (None, Some(LedgerRevoke::Returned { at, .. })) => Some(*at),
            (None, _) => None,
        }
    }

    /// The refund with this number, if the ledger made it.
    pub fn refund(&self, refund_no: &str) -> Option<&LedgerRefund> {
        self.refunds
            .iter()
            .find(|refund| refund.refund_no.as_str() == refund_no)
    }
}

/// One merchant's orders, indexed by merchant order number: what the matcher
/// reads. Orders keep their positions, so the matcher tracks what the
/// statement listed in a flat vector instead of a second hash map.
#[derive(Debug, Clone, Default)]
pub struct Ledger {
    orders: Vec<LedgerOrder>,
    positions: HashMap<String, usize>,
}

impl Ledger {
    /// Indexes `orders`. Give every order whose movements may fall on the
    /// statement's day; more is fine (the matcher filters by time and
    /// channel). An order number given twice keeps the last one given.
    pub fn new(orders: impl IntoIterator<Item = LedgerOrder>) -> Ledger {
        let orders = orders.into_iter();
        let mut ledger = Ledger {
            orders: Vec::with_capacity(orders.size_hint().0),
            positions: HashMap::with_capacity(orders.size_hint().0),
        };
        for order in orders {
            if let Some(&position) = ledger.positions.get(order.order_no.as_str()) {
                ledger.orders[position] = order;
            } else {
                ledger
                    .positions
                    .insert(order.order_no.as_str().to_owned(), ledger.orders.len());
                ledger.orders.push(order);
            }
        }
        ledger
    }

    /// The order with this merchant order number.
    pub fn get(&self, order_no: &str) -> Option<&LedgerOrder> {
        self.position(order_no)
            .map(|position| &self.orders[position])
    }

    /// Every order, each once.
    pub fn orders(&self) -> &[LedgerOrder] {
        &self.orders
    }

    pub fn len(&self) -> usize {
        self.orders.len()
    }

    pub fn is_empty(&self) -> bool {
        self.orders.is_empty()
    }

    /// Where the order is in [`Ledger::orders`].
    pub(super) fn position(&self, order_no: &str) -> Option<usize> {
        self.positions.get(order_no).copied()
    }
}

impl FromIterator<LedgerOrder> for Ledger {
    fn from_iter<I: IntoIterator<Item = LedgerOrder>>(orders: I) -> Ledger {
        Ledger::new(orders)
    }
}
