//! Why the Payment aggregate refuses a command. Variants are listed, and
//! checked, in precedence order: the first broken rule is the one reported.

use crate::money::{Money, Total};

use super::state::PaymentStatus;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    /// The order does not exist. HTTP 404.
    #[error("no payment with this order_no")]
    OrderNotFound,
    /// The order number is taken. The HTTP layer answers 200 for an identical
    /// body and 409 `order_no_conflict` otherwise.
    #[error("a payment with this order_no already exists")]
    AlreadySubmitted,
    /// The order's status does not allow a revoke.
    #[error("a {status:?} payment cannot be revoked")]
    NotRevocable { status: PaymentStatus },
    /// Revoke returns everything; after a refund only refunds may follow.
    #[error("the payment has refunds; refund the rest instead of revoking")]
    RevokeAfterRefund,
    /// The channel's revoke window has passed. HTTP 409; refund instead.
    #[error("the revoke window has closed; refund the payment instead")]
    RevokeWindowClosed,
    /// Only paid orders can be refunded.
    #[error("a {status:?} payment cannot be refunded")]
    NotRefundable { status: PaymentStatus },
    /// The refund number is taken. The HTTP layer answers 200 for an
    /// identical body and 409 `refund_no_conflict` otherwise.
    #[error("a refund with this refund_no already exists")]
    RefundNoInUse,
    /// The channel's refund window has passed.
    #[error("the refund window of this payment has closed")]
    RefundWindowClosed,
    /// The channel allows no more refunds on this order.
    #[error("this payment already has the most refunds allowed ({max})")]
    RefundLimitReached { max: u32 },
    /// Refunds may never exceed what was paid (pending refunds count).
    #[error("refund of {requested} exceeds the refundable balance of {refundable}")]
    RefundExceedsBalance { requested: Money, refundable: Total },
    /// The refund number does not exist on this order. HTTP 404.
    #[error("no refund with this refund_no")]
    RefundNotFound,
    /// Escalation is only for what `next_action` says must be escalated.
    #[error("nothing on this payment is due for manual review")]
    NothingToEscalate,
    /// An operator's resolution needs an order (or refund) in manual review.
    #[error("this payment (or refund) is not in manual review")]
    NotInManualReview,
    /// An operator's resolution denies what the ledger recorded from the
    /// channel: "no money moved" (`Closed`) for an order recorded as paid, or
    /// another trade number or payment time than the recorded payment's.
    #[error("the resolution contradicts the payment this ledger recorded")]
    ResolutionContradictsLedger,
    /// The statement line does not agree with the ledger; record a finding instead.
    #[error("the statement line does not agree with this payment")]
    StatementLineDisagrees,
    /// Only a revoke whose money movement is unconfirmed is settled by a statement.
    #[error("this payment has no revoke waiting for the statement")]
    NothingToSettle,
}

impl Rejection {
    /// The stable code the HTTP API answers with.
    pub fn code(&self) -> &'static str {
        match self {
            Rejection::OrderNotFound => "order_not_found",
            Rejection::AlreadySubmitted => "order_no_conflict",
            Rejection::NotRevocable { .. } | Rejection::RevokeAfterRefund => "not_revocable",
            Rejection::RevokeWindowClosed => "revoke_window_closed",
            Rejection::NotRefundable { .. } => "not_refundable",
            Rejection::RefundNoInUse => "refund_no_conflict",
            Rejection::RefundWindowClosed => "refund_window_closed",
            Rejection::RefundLimitReached { .. } => "refund_limit_reached",
            Rejection::RefundExceedsBalance { .. } => "refund_exceeds_balance",
            Rejection::RefundNotFound => "refund_not_found",
            Rejection::NothingToEscalate => "nothing_to_escalate",
            Rejection::NotInManualReview => "not_in_review",
            Rejection::ResolutionContradictsLedger => "resolution_contradicts_ledger",
            Rejection::StatementLineDisagrees => "statement_line_disagrees",
            Rejection::NothingToSettle => "nothing_to_settle",
        }
    }
}
