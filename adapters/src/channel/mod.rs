//! The channel port: what the runtime asks of WeChat Pay or Alipay, with
//! every answer normalised into the domain's outcomes.
//!
//! A client never returns an error for pay, query, revoke, refund or refund
//! query: anything it cannot prove (a transport error, a timeout, an HTTP
//! error status, an unparsable body, a missing or wrong signature, an answer
//! whose merchant, app, order number or amount differs from the request, a
//! payment dated before the order was submitted, an unlisted code) is an
//! `Unknown` outcome with a reason. The raw codes an
//! auditor needs travel in `ChannelAnswer::codes`.

pub mod endpoint;
pub mod rate_limit;
pub mod transport;

use async_trait::async_trait;
use std::time::Duration;

use chrono::{DateTime, NaiveDate, Utc};
use paycode_domain::payment::{
    ChannelAnswer, PayOutcome, QueryOutcome, RefundOutcome, RevokeOutcome,
};
use paycode_domain::{AuthCode, Channel, Money, OrderNo, RefundNo};

/// The single pay call of an order.
#[derive(Debug, Clone)]
pub struct PayRequest<'a> {
    pub order_no: &'a OrderNo,
    /// The full code; it goes into the request body and nowhere else.
    pub auth_code: &'a AuthCode,
    pub amount: Money,
    pub subject: &'a str,
    /// When the order was submitted: a payment the answer dates before it
    /// (less [`CLOCK_SKEW_SECS`]) is another trade under a reused number.
    pub submitted_at: DateTime<Utc>,
    /// The longest the call may wait for its turn under the rate limit. A
    /// call that cannot be made within it is not made at all
    /// ([`PayOutcome::NotSent`]): the payment code would expire meanwhile.
    pub wait_max: Duration,
}

/// A query of an order, with what a paid answer must match.
#[derive(Debug, Clone, Copy)]
pub struct QueryRequest<'a> {
    pub order_no: &'a OrderNo,
    /// The order's amount: a paid answer for another amount is not this order's.
    pub amount: Money,
    /// See [`PayRequest::submitted_at`].
    pub submitted_at: DateTime<Utc>,
}

/// A query of one refund, with what a refunded answer must match.
#[derive(Debug, Clone, Copy)]
pub struct RefundQueryRequest<'a> {
    pub order_no: &'a OrderNo,
    pub refund_no: &'a RefundNo,
    /// What this refund returns.
    pub refund_amount: Money,
    /// What the order was paid.
    pub total_amount: Money,
}

/// How far a channel's clock may be ahead of ours before a payment it
/// dates before the order's submission is taken for another trade's.
pub const CLOCK_SKEW_SECS: i64 = 60;

/// Whether a payment the channel dates at `paid_at` happened before the
/// order was submitted (allowing [`CLOCK_SKEW_SECS`]): then it is not this
/// order's payment (the order number was used before).
pub fn paid_before_submission(paid_at: DateTime<Utc>, submitted_at: DateTime<Utc>) -> bool {
    paid_at < submitted_at - chrono::Duration::seconds(CLOCK_SKEW_SECS)
}

/// A refund call (or a resend with the same refund number).
#[derive(Debug, Clone)]
pub struct RefundRequest<'a> {
    pub order_no: &'a OrderNo,
    pub refund_no: &'a RefundNo,
    /// What this refund returns.
    pub refund_amount: Money,
    /// What the order was paid (WeChat wants both).
    pub total_amount: Money,
    pub reason: &'a str,
}

/// A day's statement as the channel delivered it, not yet parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StatementFile {
    /// WeChat's text bill (UTF-8, backtick-prefixed CSV).
    WechatText(String),
    /// Alipay's zip of GBK CSV files.
    AlipayZip(Vec<u8>),
    /// The channel has no statement for that day (no trade, or not yet generated).
    NoStatement { code: String },
}

/// Why a statement could not be downloaded. Statements are not money
/// movements, so an error is allowed here: reconciliation retries later.
#[derive(Debug, thiserror::Error)]
pub enum StatementError {
    #[error("statement download failed: {0}")]
    Transport(String),
    #[error("statement download was refused by the channel: {code} {message}")]
    Refused { code: String, message: String },
    #[error("statement answer could not be trusted: {0}")]
    Untrusted(String),
}

/// One channel, for one merchant's credentials.
#[async_trait]
pub trait ChannelClient: Send + Sync + std::fmt::Debug {
    fn channel(&self) -> Channel;

    /// WeChat `/pay/micropay`, Alipay `alipay.trade.pay` (scene `bar_code`).
    async fn pay(&self, request: PayRequest<'_>) -> ChannelAnswer<PayOutcome>;

    /// WeChat `/pay/orderquery`, Alipay `alipay.trade.query`.
    async fn query(&self, request: QueryRequest<'_>) -> ChannelAnswer<QueryOutcome>;

    /// WeChat `/secapi/pay/reverse`, Alipay `alipay.trade.cancel`.
    async fn revoke(&self, order_no: &OrderNo) -> ChannelAnswer<RevokeOutcome>;

    /// WeChat `/secapi/pay/refund`, Alipay `alipay.trade.refund`.
    async fn refund(&self, request: RefundRequest<'_>) -> ChannelAnswer<RefundOutcome>;

    /// WeChat `/pay/refundquery`, Alipay `alipay.trade.fastpay.refund.query`.
    async fn refund_query(&self, request: RefundQueryRequest<'_>) -> ChannelAnswer<RefundOutcome>;

    /// WeChat `/pay/downloadbill` (type ALL), Alipay bill download URL then the zip.
    /// `date` is the statement's China-time day.
    async fn download_statement(&self, date: NaiveDate) -> Result<StatementFile, StatementError>;

    /// How many calls of each API have waited for a rate-limit token so far
    /// (for metrics). Clients without a limiter report none.
    fn rate_limit_waits(&self) -> Vec<(rate_limit::Api, u64)> {
        Vec::new()
    }
}
