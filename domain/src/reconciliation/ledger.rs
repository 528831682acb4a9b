//! The ledger's side of reconciliation: what one order's history says about
//! the money that moved, in the compact form the matcher needs.
//!
//! A [`LedgerOrder`] is built from a payment's folded state
//! ([`LedgerOrder::from_state`]); a projection or the store adapter keeps one
//! per order so that a day's reconciliation does not replay a million streams.
//! The matcher reads a [`Ledger`]: the orders of one merchant, indexed by
//! order number, held compactly (a merchant's day may be a million orders).

use std::fmt;
use std::hash::{BuildHasher, RandomState};
use std::sync::Arc;

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
    /// returned a payment the ledger never saw leaves this `None`: the
    /// matcher then takes the revoke's time as the payment's.
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

    /// When the ledger believes the payment's money moved: see [`payment_at`].
    pub fn payment_at(&self) -> Option<DateTime<Utc>> {
        payment_at(self.paid_at, self.revoke)
    }
}

/// When the ledger believes a payment's money moved: the payment time, or,
/// for a payment only a revoke saw (it returned money), the revoke's time.
/// `None` when the ledger does not believe the customer paid.
fn payment_at(
    paid_at: Option<DateTime<Utc>>,
    revoke: Option<LedgerRevoke>,
) -> Option<DateTime<Utc>> {
    match (paid_at, revoke) {
        (Some(paid_at), _) => Some(paid_at),
        (None, Some(LedgerRevoke::Returned { at, .. })) => Some(at),
        (None, _) => None,
    }
}

/// One merchant's orders, indexed by merchant order number: what the matcher
/// reads.
///
/// A day of a busy merchant is a million orders, so they are not kept as
/// `LedgerOrder`s (three heap strings and a vector each, and a map of a
/// million more strings to find them): every order and trade number is in
/// one string, each order's other fields in a flat record, the few refunds
/// in one vector, and the index is a table of positions keyed by a hash of
/// the order number, checked against the number itself. Orders keep their
/// positions, so the matcher tracks what a statement listed in flat vectors.
/// The book is shared (`Arc`): a report's matches name their orders by
/// position rather than copy a million numbers, and cloning a `Ledger` is cheap.
#[derive(Clone, Default)]
pub struct Ledger {
    book: Arc<Book>,
}

impl Ledger {
    /// Indexes `orders`, one at a time (an iterator that folds each order
    /// when asked is never held whole). Give every order whose movements may
    /// fall on the statement's day; more is fine (the matcher filters by
    /// time and channel). An order number given twice keeps the last one
    /// given, at the position of the first.
    pub fn new(orders: impl IntoIterator<Item = LedgerOrder>) -> Ledger {
        let orders = orders.into_iter();
        let mut book = Book::with_capacity(orders.size_hint().0);
        for order in orders {
            book.add(order);
        }
        Ledger {
            book: Arc::new(book),
        }
    }

    /// The order with this merchant order number.
    pub fn get(&self, order_no: &str) -> Option<LedgerOrder> {
        self.position(order_no)
            .map(|position| self.order(position).to_order())
    }

    pub fn len(&self) -> usize {
        self.book.orders.len()
    }

    pub fn is_empty(&self) -> bool {
        self.book.orders.is_empty()
    }

    /// Where the order is: its position, from 0 to `len()`.
    pub(super) fn position(&self, order_no: &str) -> Option<u32> {
        self.book.find(order_no)
    }

    /// The order at `position` (from [`Ledger::position`] or [`Ledger::orders`]).
    pub(super) fn order(&self, position: u32) -> OrderRef<'_> {
        self.book.order(position as usize)
    }

    /// Every order, each once, by position.
    pub(super) fn orders(&self) -> impl Iterator<Item = OrderRef<'_>> {
        (0..self.book.orders.len()).map(|position| self.book.order(position))
    }
}

impl fmt::Debug for Ledger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.orders().map(OrderRef::to_order))
            .finish()
    }
}

impl FromIterator<LedgerOrder> for Ledger {
    fn from_iter<I: IntoIterator<Item = LedgerOrder>>(orders: I) -> Ledger {
        Ledger::new(orders)
    }
}

/// One order of a [`Ledger`], borrowed from it: what the matcher reads.
#[derive(Debug, Clone, Copy)]
pub(super) struct OrderRef<'l> {
    pub position: u32,
    pub order_no: &'l str,
    pub channel: Channel,
    pub amount: Money,
    pub status: PaymentStatus,
    pub channel_trade_no: Option<&'l str>,
    pub paid_at: Option<DateTime<Utc>>,
    pub payment_on_statement: Option<NaiveDate>,
    pub revoke: Option<LedgerRevoke>,
    pub refunds: &'l [LedgerRefund],
}

impl OrderRef<'_> {
    /// When the ledger believes the payment's money moved: see [`payment_at`].
    pub fn payment_at(&self) -> Option<DateTime<Utc>> {
        payment_at(self.paid_at, self.revoke)
    }

    /// The refund with this number, if the ledger made it, and its index
    /// among the order's refunds.
    pub fn refund(&self, refund_no: &str) -> Option<(u32, &LedgerRefund)> {
        self.refunds
            .iter()
            .zip(0..)
            .find(|(refund, _)| refund.refund_no.as_str() == refund_no)
            .map(|(refund, index)| (index, refund))
    }

    /// The order number as the type the ledger was given it in.
    pub fn order_no(&self) -> OrderNo {
        OrderNo::from_checked(self.order_no)
    }

    fn to_order(self) -> LedgerOrder {
        LedgerOrder {
            order_no: self.order_no(),
            channel: self.channel,
            amount: self.amount,
            status: self.status,
            channel_trade_no: self.channel_trade_no.map(str::to_owned),
            paid_at: self.paid_at,
            payment_on_statement: self.payment_on_statement,
            revoke: self.revoke,
            refunds: self.refunds.to_vec(),
        }
    }
}

/// The orders of a [`Ledger`].
#[derive(Default)]
struct Book {
    /// Each order's number, followed by its trade number if it has one.
    text: String,
    orders: Vec<Entry>,
    /// Every order's refunds, an order's together (an order given again
    /// leaves its old ones here, unreferenced).
    refunds: Vec<LedgerRefund>,
    index: Index,
}

/// A [`LedgerOrder`] without its heap parts: its numbers are a range of
/// [`Book::text`], its refunds one of [`Book::refunds`].
#[derive(Debug, Clone, Copy)]
struct Entry {
    /// Where the order number starts in the text; the trade number follows.
    text: usize,
    /// Where the trade number ends.
    text_end: usize,
    refunds: u32,
    refund_count: u32,
    amount: Money,
    paid_at: Option<DateTime<Utc>>,
    revoke: Option<LedgerRevoke>,
    payment_on_statement: Option<NaiveDate>,
    /// At most 32 (an `OrderNo`).
    order_no_len: u8,
    has_trade_no: bool,
    channel: Channel,
    status: PaymentStatus,
}

/// A count or position the book keeps in 32 bits: orders and refunds are
/// fewer than 2^32 (memory runs out long before, at tens of bytes each).
fn small(count: usize) -> u32 {
    u32::try_from(count).expect("fewer than 2^32 orders and refunds in one ledger")
}

impl Book {
    fn with_capacity(orders: usize) -> Book {
        Book {
            // An order number and a trade number are about 40 bytes.
            text: String::with_capacity(orders * 40),
            orders: Vec::with_capacity(orders),
            refunds: Vec::new(),
            index: Index::with_capacity(orders),
        }
    }

    fn add(&mut self, order: LedgerOrder) {
        let text = self.text.len();
        self.text.push_str(order.order_no.as_str());
        if let Some(trade_no) = &order.channel_trade_no {
            self.text.push_str(trade_no);
        }
        let refunds = small(self.refunds.len());
        let refund_count = small(order.refunds.len());
        self.refunds.extend(order.refunds);
        let entry = Entry {
            text,
            text_end: self.text.len(),
            refunds,
            refund_count,
            amount: order.amount,
            paid_at: order.paid_at,
            revoke: order.revoke,
            payment_on_statement: order.payment_on_statement,
            order_no_len: u8::try_from(order.order_no.as_str().len())
                .expect("an order number has at most 32 bytes"),
            has_trade_no: order.channel_trade_no.is_some(),
            channel: order.channel,
            status: order.status,
        };
        if let Some(position) = self.find(order.order_no.as_str()) {
            self.orders[position as usize] = entry;
            return;
        }
        let position = small(self.orders.len());
        self.orders.push(entry);
        if self.index.is_full(self.orders.len()) {
            self.index = Index::with_capacity(self.orders.len());
            for position in 0..self.orders.len() {
                let hash = self.index.hash(self.order_no(position));
                self.index.insert(hash, small(position));
            }
        } else {
            let hash = self.index.hash(order.order_no.as_str());
            self.index.insert(hash, position);
        }
    }

    fn order_no(&self, position: usize) -> &str {
        let entry = &self.orders[position];
        &self.text[entry.text..entry.text + usize::from(entry.order_no_len)]
    }

    fn find(&self, order_no: &str) -> Option<u32> {
        let hash = self.index.hash(order_no);
        self.index
            .candidates(hash)
            .find(|&position| self.order_no(position as usize) == order_no)
    }

    fn order(&self, position: usize) -> OrderRef<'_> {
        let entry = &self.orders[position];
        let trade_no_at = entry.text + usize::from(entry.order_no_len);
        let refunds = entry.refunds as usize;
        OrderRef {
            position: small(position),
            order_no: &self.text[entry.text..trade_no_at],
            channel: entry.channel,
            amount: entry.amount,
            status: entry.status,
            channel_trade_no: entry
                .has_trade_no
                .then(|| &self.text[trade_no_at..entry.text_end]),
            paid_at: entry.paid_at,
            payment_on_statement: entry.payment_on_statement,
            revoke: entry.revoke,
            refunds: &self.refunds[refunds..refunds + entry.refund_count as usize],
        }
    }
}

/// Positions of orders by the hash of their number: open addressing with
/// linear probing, never more than half full. A slot holds the hash's high
/// 32 bits and the position + 1 (0: empty), so a probe reads an order's
/// number only when the hashes agree. The caller checks the number.
#[derive(Default)]
struct Index {
    /// A power of two of them, or none.
    slots: Vec<u64>,
    hasher: RandomState,
}

impl Index {
    /// An index for `orders` orders before it grows.
    fn with_capacity(orders: usize) -> Index {
        Index {
            slots: vec![0; (orders * 2).max(16).next_power_of_two()],
            hasher: RandomState::new(),
        }
    }

    /// Whether `orders` orders need more slots than this index has.
    fn is_full(&self, orders: usize) -> bool {
        orders * 2 > self.slots.len()
    }

    fn hash(&self, order_no: &str) -> u64 {
        self.hasher.hash_one(order_no)
    }

    #[expect(
        clippy::cast_possible_truncation,
        reason = "the low bits of the hash pick the first slot"
    )]
    fn first_slot(&self, hash: u64) -> usize {
        hash as usize & (self.slots.len() - 1)
    }

    /// Adds a position; the index has room (see [`Index::is_full`]).
    fn insert(&mut self, hash: u64, position: u32) {
        let mask = self.slots.len() - 1;
        let mut slot = self.first_slot(hash);
        while self.slots[slot] != 0 {
            slot = (slot + 1) & mask;
        }
        self.slots[slot] = (hash & !u64::from(u32::MAX)) | (u64::from(position) + 1);
    }

    /// The positions whose hash has the same high bits as `hash`, in probe order.
    fn candidates(&self, hash: u64) -> impl Iterator<Item = u32> + '_ {
        let mask = self.slots.len().wrapping_sub(1);
        let start = if self.slots.is_empty() {
            0
        } else {
            self.first_slot(hash)
        };
        let tag = hash >> 32;
        (0..self.slots.len())
            .map(move |step| self.slots[(start + step) & mask])
            .take_while(|&slot| slot != 0)
            .filter(move |&slot| slot >> 32 == tag)
            .map(position_of)
    }
}

/// The position a used slot holds.
#[expect(
    clippy::cast_possible_truncation,
    reason = "the low 32 bits of a slot are its position + 1"
)]
fn position_of(slot: u64) -> u32 {
    slot as u32 - 1
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn at(second: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 21, 2, 0, second).unwrap()
    }

    /// Order `index`, of a shape that depends on it: with or without a trade
    /// number, refunds, a revoke, a statement it was matched on.
    fn order(index: u32) -> LedgerOrder {
        let refund = |number: u32| LedgerRefund {
            refund_no: RefundNo::parse(&format!("R{index}-{number}")).unwrap(),
            amount: Money::from_fen(u64::from(number) + 1).unwrap(),
            status: RefundStatus::Succeeded,
            refunded_at: Some(at(number)),
            on_statement: None,
        };
        LedgerOrder {
            order_no: OrderNo::parse(&format!("A{index}")).unwrap(),
            channel: if index % 2 == 0 {
                Channel::Wechat
            } else {
                Channel::Alipay
            },
            amount: Money::from_fen(u64::from(index) + 100).unwrap(),
            status: PaymentStatus::Paid,
            channel_trade_no: (index % 3 != 0).then(|| format!("T{index}")),
            paid_at: Some(at(index % 60)),
            payment_on_statement: (index % 5 == 0)
                .then(|| NaiveDate::from_ymd_opt(2026, 11, 20).unwrap()),
            revoke: (index % 7 == 0).then_some(LedgerRevoke::Returned {
                at: at(1),
                on_statement: None,
            }),
            refunds: (0..index % 4).map(refund).collect(),
        }
    }

    #[test]
    fn every_order_given_is_found_as_given_while_the_index_grows() {
        // No size hint: the index starts small and grows many times.
        let orders = (0..5_000).map(order).filter(|_| true);
        let ledger = Ledger::new(orders);
        assert_eq!(ledger.len(), 5_000);
        for index in 0..5_000 {
            let number = format!("A{index}");
            assert_eq!(ledger.get(&number), Some(order(index)), "{number}");
            assert_eq!(ledger.position(&number), Some(index));
        }
        for unknown in ["A5000", "A", "", "a1", "A01"] {
            assert_eq!(ledger.get(unknown), None, "{unknown}");
        }
        let numbers: Vec<&str> = ledger.orders().map(|order| order.order_no).collect();
        assert_eq!(numbers.len(), 5_000);
        assert_eq!(numbers[4_321], "A4321");
    }

    #[test]
    fn an_order_given_again_replaces_the_first_with_its_refunds_at_its_position() {
        let mut again = order(3);
        again.amount = Money::from_fen(1).unwrap();
        again.channel_trade_no = None;
        again.refunds = Vec::new();
        let ledger = Ledger::new([order(1), order(3), order(2), again.clone()]);
        assert_eq!(ledger.len(), 3);
        assert_eq!(ledger.position("A3"), Some(1));
        assert_eq!(ledger.get("A3"), Some(again));
        let view = ledger.order(1);
        assert_eq!(view.refunds, []);
        assert_eq!(view.channel_trade_no, None);
        assert_eq!(ledger.get("A2"), Some(order(2)));
    }

    #[test]
    fn a_refund_is_found_by_number_with_its_index() {
        let ledger = Ledger::new([order(3)]);
        let view = ledger.order(0);
        assert_eq!(view.refund("R3-2").map(|(index, _)| index), Some(2));
        assert_eq!(
            view.refund("R3-2").unwrap().1.amount,
            Money::from_fen(3).unwrap()
        );
        assert!(view.refund("R3-3").is_none());
        assert_eq!(view.order_no(), OrderNo::parse("A3").unwrap());
    }

    #[test]
    fn the_index_probes_past_other_hashes_and_wraps_around() {
        let mut index = Index::with_capacity(4);
        assert_eq!(index.slots.len(), 16);
        let last = 15;
        let other_tag = (7 << 32) | last;
        index.insert(last, 0);
        index.insert(other_tag, 1);
        index.insert(last, 2);
        // Slot 15, then 0 and 1 after the wrap.
        assert_ne!(index.slots[0], 0);
        assert_ne!(index.slots[1], 0);
        assert_eq!(index.candidates(last).collect::<Vec<_>>(), [0, 2]);
        assert_eq!(index.candidates(other_tag).collect::<Vec<_>>(), [1]);
        // An empty first slot ends the probe.
        assert_eq!(index.candidates(14).count(), 0);
        assert_eq!(Index::default().candidates(last).count(), 0);
        assert!(!index.is_full(8) && index.is_full(9));
    }
}
