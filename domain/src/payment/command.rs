//! Commands: what a caller (the HTTP API, the runtime, an operator) asks the
//! Payment aggregate to do. Each carries the id that the resulting events record.

use chrono::NaiveDate;

use crate::auth_code::{AuthCode, AuthCodeFingerprint};
use crate::ids::{CommandId, MerchantId, OrderNo, RefundNo};
use crate::money::Money;

use super::event::{Resolution, RevokeReason, StatementLine};
use super::outcome::{ChannelAnswer, PayOutcome, QueryOutcome, RefundOutcome, RevokeOutcome};

/// A command with the id of the request or step that issued it, and the
/// name of the API key whose request it is.
#[derive(Debug, Clone)]
pub struct Command {
    pub id: CommandId,
    /// The name of the API key whose request this is (its configured
    /// `name`, or `api_keys[N]`; never the key): every event the command
    /// causes records it ([`super::Event::key_name`]). `None` for the
    /// runtime's own steps and the command line.
    pub key_name: Option<String>,
    pub kind: CommandKind,
}

#[derive(Debug, Clone)]
pub enum CommandKind {
    /// Take a payment. The runtime makes the pay call right after the
    /// resulting `Submitted` is durable, exactly once.
    SubmitPayment(SubmitPayment),
    /// Record what the single pay call answered.
    RecordPayAnswer(ChannelAnswer<PayOutcome>),
    /// Record what a query of the order answered.
    RecordQueryResult(ChannelAnswer<QueryOutcome>),
    /// Decide to revoke (the deadline passed, or the merchant asked).
    RequestRevoke { reason: RevokeReason },
    /// Record what a revoke call answered.
    RecordRevokeAnswer(ChannelAnswer<RevokeOutcome>),
    /// Refund part or all of a paid order.
    RequestRefund(RequestRefund),
    /// Record what a refund call or refund query answered.
    RecordRefundAnswer {
        refund_no: RefundNo,
        answer: ChannelAnswer<RefundOutcome>,
    },
    /// Hand the order (or one refund) to an operator; only when `next_action` says so.
    EscalateToManualReview { refund_no: Option<RefundNo> },
    /// An operator's verdict on an order or refund in manual review.
    Resolve {
        resolution: Resolution,
        /// Why, in the operator's words.
        note: String,
        /// Who resolved it: a non-secret name (an API key's name, never the
        /// key; `cli` from the command line).
        resolved_by: String,
    },
    /// A reconciliation found this order's line in a channel statement.
    MatchStatementLine(StatementLine),
    /// A reconciliation settled a revoke whose money movement was
    /// unconfirmed: the statement of `statement_date` lists the payment (and
    /// its reversal), so money moved and came back; or lists nothing, so
    /// none moved.
    SettleRevoke {
        money_moved: bool,
        statement_date: NaiveDate,
    },
}

#[derive(Debug, Clone)]
pub struct SubmitPayment {
    pub merchant_id: MerchantId,
    pub order_no: OrderNo,
    pub auth_code: AuthCode,
    /// The keyed fingerprint of the full code, computed by the application
    /// (the domain holds no key); recorded in `Submitted`.
    pub auth_code_fingerprint: Option<AuthCodeFingerprint>,
    pub amount: Money,
    pub subject: String,
}

#[derive(Debug, Clone)]
pub struct RequestRefund {
    pub refund_no: RefundNo,
    pub amount: Money,
    pub reason: String,
}

impl Command {
    pub fn new(id: CommandId, kind: CommandKind) -> Self {
        Command {
            id,
            key_name: None,
            kind,
        }
    }

    /// The same command, as the request of the API key named `name`.
    #[must_use]
    pub fn by_key(mut self, name: impl Into<String>) -> Self {
        self.key_name = Some(name.into());
        self
    }
}
