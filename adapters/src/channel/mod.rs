//! The channel port: what the runtime asks of WeChat Pay or Alipay, with
//! every answer normalised into the domain's outcomes.
//!
//! A client never returns an error for pay, query, revoke, refund or refund
//! query: anything it cannot prove (a transport error, a timeout, an HTTP
//! error status, an unparsable body, a missing or wrong signature, an answer
//! whose merchant, app, order number or amount differs from the request, an
//! unlisted code) is an `Unknown` outcome with a reason. The raw codes an
//! auditor needs travel in `ChannelAnswer::codes`.

pub mod endpoint;
pub mod rate_limit;

use async_trait::async_trait;
use chrono::NaiveDate;
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
    async fn query(&self, order_no: &OrderNo) -> ChannelAnswer<QueryOutcome>;

    /// WeChat `/secapi/pay/reverse`, Alipay `alipay.trade.cancel`.
    async fn revoke(&self, order_no: &OrderNo) -> ChannelAnswer<RevokeOutcome>;

    /// WeChat `/secapi/pay/refund`, Alipay `alipay.trade.refund`.
    async fn refund(&self, request: RefundRequest<'_>) -> ChannelAnswer<RefundOutcome>;

    /// WeChat `/pay/refundquery`, Alipay `alipay.trade.fastpay.refund.query`.
    async fn refund_query(
        &self,
        order_no: &OrderNo,
        refund_no: &RefundNo,
    ) -> ChannelAnswer<RefundOutcome>;

    /// WeChat `/pay/downloadbill` (type ALL), Alipay bill download URL then the zip.
    /// `date` is the statement's China-time day.
    async fn download_statement(&self, date: NaiveDate) -> Result<StatementFile, StatementError>;

    /// How many calls of each API have waited for a rate-limit token so far
    /// (for metrics). Clients without a limiter report none.
    fn rate_limit_waits(&self) -> Vec<(rate_limit::Api, u64)> {
        Vec::new()
    }
}
