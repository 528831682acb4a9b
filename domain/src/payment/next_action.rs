//! `next_action`: the pure answer to "what must happen to this order next,
//! and when". The runtime keeps a timer per order on `due_at` and executes.
//!
//! Two calls are not actions: the pay call and the first refund call. The
//! runtime makes each exactly once, right after the intent (`Submitted`,
//! `RefundRequested`) is durable. If the answer never gets recorded (a
//! crash), the action offered here is a query, never the call again: a
//! payment code is never resubmitted.

use chrono::{DateTime, Utc};

use crate::ids::RefundNo;

use super::event::{ManualReviewReason, RevokeReason};
use super::state::{PaymentState, RefundStage, RevokeNext};

/// What the runtime must do next for an order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Query the order; record the answer with `RecordQueryResult`.
    QueryPayment,
    /// Decide the revoke with `RequestRevoke` (no channel call yet).
    StartRevoke { reason: RevokeReason },
    /// Call revoke; record the answer with `RecordRevokeAnswer`.
    CallRevoke { attempt: u32 },
    /// Query a refund; record the answer with `RecordRefundAnswer`.
    QueryRefund { refund_no: RefundNo },
    /// Send a refund again with the same number (the channel did not know it).
    CallRefund { refund_no: RefundNo },
    /// Hand over to an operator with `EscalateToManualReview`.
    EscalateToManualReview {
        refund_no: Option<RefundNo>,
        reason: ManualReviewReason,
    },
}

/// The next action and the time it is due, or `None` when nothing automatic
/// remains (settled, or waiting for an operator).
pub fn next_action(state: &PaymentState) -> Option<(Action, DateTime<Utc>)> {
    match state {
        PaymentState::Paying(paying) => {
            let deadline = paying.order.deadline_at;
            if paying.queries == 0 {
                // Query before any revoke ("query first, revoke only without a clear
                // result"), even when the pay answer itself came after the deadline.
                Some((Action::QueryPayment, paying.next_query_at.min(deadline)))
            } else if paying.next_query_at >= deadline {
                // No query left before the deadline: revoke at the deadline.
                Some((
                    Action::StartRevoke {
                        reason: RevokeReason::DeadlineReached,
                    },
                    deadline,
                ))
            } else {
                Some((Action::QueryPayment, paying.next_query_at))
            }
        }
        PaymentState::Revoking(revoking) => match &revoking.next {
            RevokeNext::Call { attempt, at } => {
                Some((Action::CallRevoke { attempt: *attempt }, *at))
            }
            RevokeNext::Escalate { reason, since } => Some((
                Action::EscalateToManualReview {
                    refund_no: None,
                    reason: reason.clone(),
                },
                *since,
            )),
            RevokeNext::QueryAfterWindowClosed { at, .. } => Some((Action::QueryPayment, *at)),
        },
        PaymentState::Paid(paid) => paid
            .refunds
            .iter()
            .filter_map(|refund| {
                let escalate = |reason| Action::EscalateToManualReview {
                    refund_no: Some(refund.refund_no.clone()),
                    reason,
                };
                match refund.stage {
                    RefundStage::Pending { next_query_at } if next_query_at >= refund.settle_by => {
                        Some((
                            escalate(ManualReviewReason::RefundNotSettled),
                            refund.settle_by,
                        ))
                    }
                    RefundStage::Pending { next_query_at } => Some((
                        Action::QueryRefund {
                            refund_no: refund.refund_no.clone(),
                        },
                        next_query_at,
                    )),
                    RefundStage::Resend { since } => Some((
                        Action::CallRefund {
                            refund_no: refund.refund_no.clone(),
                        },
                        since,
                    )),
                    RefundStage::Succeeded { .. }
                    | RefundStage::Failed { .. }
                    | RefundStage::ManualReview { .. } => None,
                }
            })
            .min_by_key(|(_, due)| *due),
        PaymentState::Initial
        | PaymentState::Closed(_)
        | PaymentState::Reversed(_)
        // Settled by the day's statement, not by a timer.
        | PaymentState::RevokedUnconfirmed(_)
        | PaymentState::ManualReview(_) => None,
    }
}
