//! Events: the past-tense facts of a payment's life, one stream per merchant
//! order (refunds in the same stream). Stored names are set explicitly with
//! `#[serde(rename)]` and are a contract: never derive them from the Rust name.
//! Every event carries when it happened and the command that caused it;
//! every channel answer keeps its raw codes.

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use crate::auth_code::{AuthCodeFingerprint, MaskedAuthCode};
use crate::channel::{Channel, ChannelCodes};
use crate::ids::{CommandId, MerchantId, OrderNo, RefundNo};
use crate::money::{Currency, Money};

use super::outcome::{PayOutcome, QueryOutcome, RefundOutcome, RevokeOutcome, RevokeResult};

/// One recorded fact with its time and cause.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// When it happened (the clock of the decision, not of the store).
    #[serde(deserialize_with = "crate::utc::deserialize")]
    pub at: DateTime<Utc>,
    /// The command (API request or runtime step) that caused it.
    pub command_id: CommandId,
    /// The name of the API key whose request caused it (its configured
    /// `name`, or `api_keys[N]`; never the key). Absent for the runtime's
    /// own steps, the command line, and events written before keys were
    /// named.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_name: Option<String>,
    #[serde(flatten)]
    pub fact: Fact,
}

/// Every fact a payment's history can hold. The `rename` is the stored name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum Fact {
    /// The intent to pay, durable before the pay call.
    #[serde(rename = "Submitted")]
    Submitted(Submitted),
    /// The pay call answered: the customer must type a password.
    #[serde(rename = "UserPaying")]
    UserPaying(UserPaying),
    /// The pay call's answer proved nothing (timeout, system error, bad signature).
    #[serde(rename = "PayAnswerUnknown")]
    PayAnswerUnknown(PayAnswerUnknown),
    /// A query of the order answered.
    #[serde(rename = "QueryResult")]
    QueryResult(QueryResult),
    /// Money moved: the payment succeeded.
    #[serde(rename = "Paid")]
    Paid(Paid),
    /// The payment failed definitively (the order is still closed with a revoke).
    #[serde(rename = "PaymentFailed")]
    PaymentFailed(PaymentFailed),
    /// The intent to revoke, durable before the first revoke call.
    #[serde(rename = "RevokeRequested")]
    RevokeRequested(RevokeRequested),
    /// A revoke call must be made again (or, with no `retry_at`, attempts are exhausted).
    #[serde(rename = "RevokeRetryScheduled")]
    RevokeRetryScheduled(RevokeRetryScheduled),
    /// The revoke is done: closed (no money moved) or refunded (money returned).
    #[serde(rename = "Revoked")]
    Revoked(Revoked),
    /// The channel refused the revoke for good (its window closed).
    #[serde(rename = "RevokeRejected")]
    RevokeRejected(RevokeRejected),
    /// Automatic handling gave up; an operator must act.
    #[serde(rename = "ManualReviewRequired")]
    ManualReviewRequired(ManualReviewRequired),
    /// An operator resolved a manual review.
    #[serde(rename = "OperatorResolved")]
    OperatorResolved(OperatorResolved),
    /// The intent to refund, durable before the refund call.
    #[serde(rename = "RefundRequested")]
    RefundRequested(RefundRequested),
    /// A refund call or query answered with no final result yet.
    #[serde(rename = "RefundPending")]
    RefundPending(RefundPending),
    /// A refund succeeded: money went back to the customer.
    #[serde(rename = "Refunded")]
    Refunded(Refunded),
    /// A refund failed definitively; its amount is refundable again.
    #[serde(rename = "RefundFailed")]
    RefundFailed(RefundFailed),
    /// A line of a channel statement agreed with this order.
    #[serde(rename = "StatementLineMatched")]
    StatementLineMatched(StatementLineMatched),
    /// The pay call could not be made in time and was not made.
    #[serde(rename = "PayNotSent")]
    PayNotSent(PayNotSent),
    /// A channel answer the order was no longer waiting for.
    #[serde(rename = "AnswerNoted")]
    AnswerNoted(AnswerNoted),
    /// Whether money moved in a revoke the channel did not say, settled.
    #[serde(rename = "RevokeSettled")]
    RevokeSettled(RevokeSettled),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Submitted {
    pub merchant_id: MerchantId,
    pub order_no: OrderNo,
    pub channel: Channel,
    pub amount: Money,
    pub currency: Currency,
    pub subject: String,
    /// Masked: the full code is never stored.
    pub auth_code: MaskedAuthCode,
    /// The keyed fingerprint of the full code, which idempotent creation
    /// compares. `None` in events written before schema version 2: those
    /// compare the masked code.
    pub auth_code_fingerprint: Option<AuthCodeFingerprint>,
    /// Revoke if the outcome is not certain by then.
    #[serde(deserialize_with = "crate::utc::deserialize")]
    pub deadline_at: DateTime<Utc>,
    /// Query at this time if the pay call's answer never got recorded (a crash).
    #[serde(deserialize_with = "crate::utc::deserialize")]
    pub first_query_at: DateTime<Utc>,
    /// No revoke before this (WeChat wants 15 s between pay and revoke).
    #[serde(deserialize_with = "crate::utc::deserialize")]
    pub revoke_not_before: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserPaying {
    pub codes: ChannelCodes,
    #[serde(deserialize_with = "crate::utc::deserialize")]
    pub next_query_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PayAnswerUnknown {
    pub reason: String,
    pub codes: ChannelCodes,
    #[serde(deserialize_with = "crate::utc::deserialize")]
    pub next_query_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueryResult {
    pub outcome: QueryOutcome,
    pub codes: ChannelCodes,
    /// The next query, when polling goes on.
    #[serde(default, deserialize_with = "crate::utc::deserialize_option")]
    pub next_query_at: Option<DateTime<Utc>>,
}

/// Where the certainty of a payment came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PaidSource {
    PayAnswer,
    Query,
}

/// The pay call was never made (it had no turn under the channel's rate
/// limit before the payment code would expire): the channel never saw the
/// order, so nothing moved and nothing needs revoking. The order is closed
/// with the failure code [`PAY_NOT_SENT`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PayNotSent {
    pub reason: String,
}

/// The failure code of an order whose pay call was never made.
pub const PAY_NOT_SENT: &str = "PAY_NOT_SENT";

/// A channel answer the order was no longer waiting for (a late answer, a
/// duplicate, an answer to a step another process already took), kept as
/// it was judged: every answer the channel gives is an event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "call", rename_all = "snake_case")]
pub enum NotedAnswer {
    Pay {
        outcome: PayOutcome,
    },
    Query {
        outcome: QueryOutcome,
    },
    Revoke {
        outcome: RevokeOutcome,
    },
    Refund {
        refund_no: RefundNo,
        outcome: RefundOutcome,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AnswerNoted {
    #[serde(flatten)]
    pub answer: NotedAnswer,
    pub codes: ChannelCodes,
}

/// Where a revoke's unconfirmed money movement was settled from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "by", rename_all = "snake_case")]
pub enum SettledBy {
    /// The day's statement: a reversal line, or no line at all.
    Statement { date: NaiveDate },
    /// A query answer (after the channel refused a revoke whose window had closed).
    Query,
}

/// Whether money moved, for a revoke whose answer did not say.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevokeSettled {
    /// `true`: the customer paid and the revoke returned it (reversed);
    /// `false`: no money moved (closed).
    pub money_moved: bool,
    #[serde(flatten)]
    pub by: SettledBy,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Paid {
    pub channel_trade_no: String,
    #[serde(deserialize_with = "crate::utc::deserialize")]
    pub paid_at: DateTime<Utc>,
    /// Whether the channel stated `paid_at`; when it did not, `paid_at` is
    /// when the ledger recorded the answer. (Events written before this
    /// field existed always had the channel's time.)
    #[serde(default = "stated")]
    pub paid_at_stated: bool,
    pub source: PaidSource,
    pub codes: ChannelCodes,
}

fn stated() -> bool {
    true
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentFailed {
    /// The channel's definitive failure code (`NOTENOUGH`, `PAYERROR`, `CLOSED`, ...).
    pub code: String,
    pub codes: ChannelCodes,
}

/// Why a revoke was decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RevokeReason {
    /// The payment was not certain at the deadline.
    DeadlineReached,
    /// The payment failed definitively: close the loop.
    PaymentFailed,
    /// The merchant asked (`POST /v1/payments/{order_no}/revoke`).
    MerchantRequested,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevokeRequested {
    pub reason: RevokeReason,
    /// The first revoke call happens at or after this time.
    #[serde(deserialize_with = "crate::utc::deserialize")]
    pub not_before: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevokeRetryScheduled {
    /// The attempt that asked for a retry (from 1).
    pub attempt: u32,
    pub reason: String,
    pub codes: ChannelCodes,
    /// `None` when this was the last allowed attempt: an operator takes over.
    #[serde(default, deserialize_with = "crate::utc::deserialize_option")]
    pub retry_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Revoked {
    pub result: RevokeResult,
    pub attempt: u32,
    pub codes: ChannelCodes,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevokeRejected {
    pub attempt: u32,
    pub code: String,
    pub codes: ChannelCodes,
}

/// Why automatic handling gave up.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ManualReviewReason {
    /// Every allowed revoke attempt asked to be retried or went unanswered.
    RevokeAttemptsExhausted { attempts: u32 },
    /// The channel no longer revokes the order; a refund may be needed.
    RevokeRejected { code: String },
    /// The revoke closed an order this ledger had recorded as paid.
    RevokeContradictsPayment,
    /// The channel says the order was refunded, but not through this ledger.
    RefundedOutsideLedger,
    /// The channel holds another trade under this order number (another
    /// amount, or paid before this order was submitted).
    OrderNoUsedByAnotherTrade,
    /// A refund was not final by its settle-by time.
    RefundNotSettled,
    /// The refund's money went astray (`CHANGE`).
    RefundAbnormal { code: String },
    /// The channel kept not knowing the refund after every resend.
    RefundAttemptsExhausted { attempts: u32 },
    /// The statement lists the payment of an order whose revoke succeeded,
    /// but not the reversal that revoke should have made.
    StatementContradictsRevoke,
    /// The revoke window closed and a query could not tell whether the
    /// customer paid (so neither a refund nor closing is safe).
    RevokeWindowClosedUndecided { code: String },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManualReviewRequired {
    /// The refund under review, or `None` for the payment itself.
    pub refund_no: Option<RefundNo>,
    pub reason: ManualReviewReason,
    /// The raw codes of the answer that caused it, if an answer did.
    pub codes: ChannelCodes,
}

/// What an operator found out and decided, after checking with the channel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "verdict", rename_all = "snake_case")]
pub enum Resolution {
    /// The payment is in fact paid (and stays so).
    Paid {
        channel_trade_no: String,
        #[serde(deserialize_with = "crate::utc::deserialize")]
        paid_at: DateTime<Utc>,
    },
    /// No money moved; the order is closed.
    Closed,
    /// Money moved and was returned to the customer.
    Reversed,
    /// A refund in manual review did succeed.
    RefundSucceeded {
        refund_no: RefundNo,
        #[serde(deserialize_with = "crate::utc::deserialize")]
        refunded_at: DateTime<Utc>,
    },
    /// A refund in manual review did not happen; its amount is refundable again.
    RefundFailed { refund_no: RefundNo },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OperatorResolved {
    pub resolution: Resolution,
    /// Why, in the operator's words.
    pub note: String,
    /// Who resolved it: the API key's name (never the key itself), or `cli`.
    /// Added after the first schema: an older event decodes with `""`.
    #[serde(default)]
    pub resolved_by: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefundRequested {
    pub refund_no: RefundNo,
    pub amount: Money,
    pub reason: String,
    /// Query at this time if the refund call's answer never got recorded.
    #[serde(deserialize_with = "crate::utc::deserialize")]
    pub first_query_at: DateTime<Utc>,
    /// An operator takes over if the refund is not final by then.
    #[serde(deserialize_with = "crate::utc::deserialize")]
    pub settle_by: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefundPending {
    pub refund_no: RefundNo,
    /// Accepted, processing, unknown, or not found (then the refund is sent again).
    pub outcome: RefundOutcome,
    pub codes: ChannelCodes,
    #[serde(default, deserialize_with = "crate::utc::deserialize_option")]
    pub next_query_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refunded {
    pub refund_no: RefundNo,
    pub amount: Money,
    pub channel_refund_no: Option<String>,
    #[serde(deserialize_with = "crate::utc::deserialize")]
    pub refunded_at: DateTime<Utc>,
    pub codes: ChannelCodes,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefundFailed {
    pub refund_no: RefundNo,
    pub code: String,
    pub codes: ChannelCodes,
}

/// What a statement line records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StatementLineKind {
    /// The successful payment.
    Payment,
    /// A refund made through the refund API.
    Refund,
    /// The refund a revoke made of a paid order.
    Reversal,
}

/// One line of a channel's daily statement, as reconciliation matched it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct StatementLine {
    pub channel: Channel,
    /// The statement's day, China time.
    pub statement_date: NaiveDate,
    pub kind: StatementLineKind,
    pub refund_no: Option<RefundNo>,
    pub amount: Money,
    pub channel_trade_no: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatementLineMatched {
    pub line: StatementLine,
}

impl Fact {
    /// The stored event name: `Submitted`, `UserPaying`, ...
    pub fn stored_name(&self) -> &'static str {
        match self {
            Fact::Submitted(_) => "Submitted",
            Fact::UserPaying(_) => "UserPaying",
            Fact::PayAnswerUnknown(_) => "PayAnswerUnknown",
            Fact::QueryResult(_) => "QueryResult",
            Fact::Paid(_) => "Paid",
            Fact::PaymentFailed(_) => "PaymentFailed",
            Fact::RevokeRequested(_) => "RevokeRequested",
            Fact::RevokeRetryScheduled(_) => "RevokeRetryScheduled",
            Fact::Revoked(_) => "Revoked",
            Fact::RevokeRejected(_) => "RevokeRejected",
            Fact::ManualReviewRequired(_) => "ManualReviewRequired",
            Fact::OperatorResolved(_) => "OperatorResolved",
            Fact::RefundRequested(_) => "RefundRequested",
            Fact::RefundPending(_) => "RefundPending",
            Fact::Refunded(_) => "Refunded",
            Fact::RefundFailed(_) => "RefundFailed",
            Fact::StatementLineMatched(_) => "StatementLineMatched",
            Fact::PayNotSent(_) => "PayNotSent",
            Fact::AnswerNoted(_) => "AnswerNoted",
            Fact::RevokeSettled(_) => "RevokeSettled",
        }
    }
}
