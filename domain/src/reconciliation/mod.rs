//! Reconciliation: a channel's daily statement set against the ledger.
//!
//! The statement parsers (in `adapters`) turn a WeChat bill or an Alipay zip
//! into a [`Statement`] of channel-neutral [`StatementRow`]s; the matcher
//! decides, purely, which rows agree with the ledger and which are findings.
//! Rows keep the channel's raw order and refund numbers as text: a statement
//! may list orders this ledger never made, and those are findings, not errors.

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
pub use matching::{ReconcilePolicy, reconcile};
pub use report::{Finding, FindingKind, Match, Report, RevokeSettlement};

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
