//! Reconciliation: a channel's daily statement set against the ledger.
//!
//! The statement parsers (in `adapters`) read a WeChat bill or an Alipay zip
//! as channel-neutral rows, handed one at a time to a [`StatementSink`]: a
//! [`Statement`] that keeps them, or the matcher itself ([`Reconciler`]),
//! which decides, purely, which rows agree with the ledger and which are
//! findings, without a million rows held in between. Rows keep the channel's
//! raw order and refund numbers as text: a statement may list orders this
//! ledger never made, and those are findings, not errors.

use chrono::{DateTime, NaiveDate, Utc};

mod event;
mod ledger;
mod matching;
mod report;
pub mod stored;

#[cfg(test)]
mod properties;
#[cfg(test)]
mod specification;

pub use event::{
    DayState, ReconciliationDecider, ReconciliationEvent, ReconciliationFact,
    ReconciliationRecorded, RecordReport,
};
pub use ledger::{Ledger, LedgerOrder, LedgerRefund, LedgerRevoke};
pub use matching::{ReconcilePolicy, Reconciler, reconcile};
pub use report::{Finding, FindingKind, Match, Matches, MatchesIter, Report, RevokeSettlement};

use crate::channel::Channel;
use crate::money::Money;
use crate::payment::StatementLineKind;

/// One day's statement of one merchant on one channel, parsed and checked
/// (the parser has already verified its summary against its rows).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Statement {
    pub channel: Channel,
    /// The statement's day, China time.
    pub date: NaiveDate,
    /// The rows in file order.
    pub rows: Vec<StatementRow>,
}

impl Statement {
    /// A statement without rows yet, to hand to a parser as its sink.
    pub fn new(channel: Channel, date: NaiveDate) -> Statement {
        Statement {
            channel,
            date,
            rows: Vec::new(),
        }
    }
}

/// Where a parser hands a statement's rows, in file order, as it reads them.
///
/// A parser takes the sink by value and hands it back only for a whole
/// statement that agrees with its own totals; on any defect it drops it, so
/// what a sink gathered from a rejected file is never seen.
pub trait StatementSink {
    /// The channel whose statement this sink takes.
    fn channel(&self) -> Channel;

    /// The next row of the statement.
    fn row(&mut self, row: StatementRowRef<'_>);

    /// How many entries of its own (copied numbers, findings) the sink
    /// holds so far: what a rejected file would have cost it. A caller
    /// that matches while the file is still being checked pauses the
    /// matching past a bound of these until the check is done.
    fn entries_held(&self) -> usize {
        0
    }
}

impl StatementSink for Statement {
    fn channel(&self) -> Channel {
        self.channel
    }

    fn row(&mut self, row: StatementRowRef<'_>) {
        self.rows.push(row.to_row());
    }
}

/// One money movement the channel lists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatementRow {
    /// The row's line number in its file (from 1), for reports.
    pub line_no: u32,
    pub kind: StatementLineKind,
    /// The merchant's order number (`out_trade_no`, 商户订单号).
    pub order_no: String,
    /// The channel's trade number (`transaction_id`, 支付宝交易号).
    pub channel_trade_no: String,
    /// The merchant's refund number for a refund (`out_refund_no`, 退款批次号);
    /// for a reversal, whatever the channel prints there (Alipay: the trade number).
    pub refund_no: Option<String>,
    /// The channel's refund id, when it prints one.
    pub channel_refund_no: Option<String>,
    /// Always positive: the amount paid, or the amount returned.
    pub amount: Money,
    /// When the money moved (paid, refunded), as the channel prints it.
    pub at: DateTime<Utc>,
}

impl StatementRow {
    pub fn as_row_ref(&self) -> StatementRowRef<'_> {
        StatementRowRef {
            line_no: self.line_no,
            kind: self.kind,
            order_no: &self.order_no,
            channel_trade_no: &self.channel_trade_no,
            refund_no: self.refund_no.as_deref(),
            channel_refund_no: self.channel_refund_no.as_deref(),
            amount: self.amount,
            at: self.at,
        }
    }
}

/// A [`StatementRow`] whose text is borrowed from the line it was read
/// from: what a parser hands a [`StatementSink`], so that a row costs no
/// allocation unless the sink keeps it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatementRowRef<'a> {
    pub line_no: u32,
    pub kind: StatementLineKind,
    pub order_no: &'a str,
    pub channel_trade_no: &'a str,
    pub refund_no: Option<&'a str>,
    pub channel_refund_no: Option<&'a str>,
    pub amount: Money,
    pub at: DateTime<Utc>,
}

impl StatementRowRef<'_> {
    pub fn to_row(&self) -> StatementRow {
        StatementRow {
            line_no: self.line_no,
            kind: self.kind,
            order_no: self.order_no.to_owned(),
            channel_trade_no: self.channel_trade_no.to_owned(),
            refund_no: self.refund_no.map(str::to_owned),
            channel_refund_no: self.channel_refund_no.map(str::to_owned),
            amount: self.amount,
            at: self.at,
        }
    }
}
