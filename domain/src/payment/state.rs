//! The state of one payment: an enum of lifecycle stages, and `evolve`, the
//! pure fold that moves it by one recorded event.
//!
//! Impossible states cannot be written down: only `Paid` has refunds, only
//! `Revoking` has revoke attempts. `evolve` refuses an event that breaks an
//! invariant (`crate::invariants`) or has no transition from the state: the
//! ledger then writes nothing, and a reader of a stored history stops there.

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::auth_code::MaskedAuthCode;
use crate::channel::Channel;
use crate::decider::Refused;
use crate::ids::{MerchantId, OrderNo, RefundNo};
use crate::invariants::{self, Violation};
use crate::money::{Currency, Money, Total};

use super::event::{
    Event, Fact, ManualReviewReason, ManualReviewRequired, OperatorResolved, Resolution,
    RevokeReason, RevokeSettled, StatementLine,
};
use super::outcome::{RefundOutcome, RevokeResult};

/// What the API shows as `status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PaymentStatus {
    Paying,
    Paid,
    Revoking,
    Closed,
    Reversed,
    /// Revoked; whether money moved (and came back) is confirmed by the day's statement.
    Revoked,
    PartiallyRefunded,
    Refunded,
    ManualReview,
}

impl PaymentStatus {
    /// What `?wait` waits for: the outcome is certain or a human has it.
    pub fn is_settled(self) -> bool {
        !matches!(self, PaymentStatus::Paying | PaymentStatus::Revoking)
    }

    /// No event can change the status any more.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            PaymentStatus::Closed | PaymentStatus::Reversed | PaymentStatus::Refunded
        )
    }

    pub fn as_str(self) -> &'static str {
        match self {
            PaymentStatus::Paying => "paying",
            PaymentStatus::Paid => "paid",
            PaymentStatus::Revoking => "revoking",
            PaymentStatus::Closed => "closed",
            PaymentStatus::Reversed => "reversed",
            PaymentStatus::Revoked => "revoked",
            PaymentStatus::PartiallyRefunded => "partially_refunded",
            PaymentStatus::Refunded => "refunded",
            PaymentStatus::ManualReview => "manual_review",
        }
    }
}

/// The facts of the order itself, fixed at submission.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Order {
    pub merchant_id: MerchantId,
    pub order_no: OrderNo,
    pub channel: Channel,
    pub amount: Money,
    pub currency: Currency,
    pub subject: String,
    pub auth_code: MaskedAuthCode,
    pub submitted_at: DateTime<Utc>,
    pub deadline_at: DateTime<Utc>,
    pub revoke_not_before: DateTime<Utc>,
    /// Statement lines already matched (reconciliation is idempotent).
    pub matched_lines: Vec<StatementLine>,
}

/// The proof that money moved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaidFacts {
    pub channel_trade_no: String,
    pub paid_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PaymentState {
    /// Nothing recorded yet.
    Initial,
    /// Submitted; the outcome is not certain.
    Paying(Paying),
    /// A revoke is decided and being carried out.
    Revoking(Revoking),
    /// Money moved and stays (refunds may return some or all of it).
    Paid(PaidOrder),
    /// No money moved.
    Closed(ClosedOrder),
    /// Money moved and a revoke returned it.
    Reversed(ReversedOrder),
    /// A revoke succeeded without saying whether the customer had paid
    /// (WeChat's reverse never says): closed or reversed, as the day's
    /// statement will tell.
    RevokedUnconfirmed(RevokedOrder),
    /// Automatic handling gave up on the payment; an operator must act.
    ManualReview(ManualReviewOrder),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Paying {
    pub order: Order,
    /// Whether the pay call's answer has been recorded.
    pub pay_answered: bool,
    pub queries: u32,
    pub next_query_at: DateTime<Utc>,
    /// The definitive failure, once one is recorded (a revoke follows).
    pub failure_code: Option<String>,
}

/// What a revoke in progress waits for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RevokeNext {
    /// Call the channel (attempt number `attempt`, from 1) at `at`.
    Call { attempt: u32, at: DateTime<Utc> },
    /// Hand over to an operator, from `since`.
    Escalate {
        reason: ManualReviewReason,
        since: DateTime<Utc>,
    },
    /// The channel no longer revokes the order (its window closed): query
    /// it at `at`; paid means a refund in full instead, not paid means closed.
    /// `queries` counts the queries answered so far.
    QueryAfterWindowClosed {
        code: String,
        at: DateTime<Utc>,
        queries: u32,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revoking {
    pub order: Order,
    pub reason: RevokeReason,
    /// Set when the revoke returns a payment already recorded as paid.
    pub paid: Option<PaidFacts>,
    /// The definitive failure that led to the revoke, if any.
    pub failure_code: Option<String>,
    pub next: RevokeNext,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaidOrder {
    pub order: Order,
    pub paid: PaidFacts,
    pub refunds: Vec<Refund>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClosedOrder {
    pub order: Order,
    /// The definitive failure, when there was one.
    pub failure_code: Option<String>,
    pub closed_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReversedOrder {
    pub order: Order,
    /// Known when the payment was recorded before the revoke returned it.
    pub paid: Option<PaidFacts>,
    pub reversed_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevokedOrder {
    pub order: Order,
    /// The definitive failure that led to the revoke, if any.
    pub failure_code: Option<String>,
    pub revoked_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManualReviewOrder {
    pub order: Order,
    pub reason: ManualReviewReason,
    pub since: DateTime<Utc>,
    pub paid: Option<PaidFacts>,
}

/// One refund of a paid order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refund {
    pub refund_no: RefundNo,
    pub amount: Money,
    pub reason: String,
    pub requested_at: DateTime<Utc>,
    pub settle_by: DateTime<Utc>,
    /// Refund calls made: the first, plus resends after "not found".
    pub calls: u32,
    /// Answers recorded while pending (they space out the queries).
    pub answers: u32,
    pub stage: RefundStage,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefundStage {
    /// Not final; query at `next_query_at`.
    Pending {
        next_query_at: DateTime<Utc>,
    },
    /// The channel does not know it: send the refund again (same number) from `since`.
    Resend {
        since: DateTime<Utc>,
    },
    Succeeded {
        refunded_at: DateTime<Utc>,
        channel_refund_no: Option<String>,
    },
    Failed {
        code: String,
    },
    ManualReview {
        reason: ManualReviewReason,
        since: DateTime<Utc>,
    },
}

/// The API's refund status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RefundStatus {
    Pending,
    Succeeded,
    Failed,
    ManualReview,
}

impl Refund {
    pub fn status(&self) -> RefundStatus {
        match self.stage {
            RefundStage::Pending { .. } | RefundStage::Resend { .. } => RefundStatus::Pending,
            RefundStage::Succeeded { .. } => RefundStatus::Succeeded,
            RefundStage::Failed { .. } => RefundStatus::Failed,
            RefundStage::ManualReview { .. } => RefundStatus::ManualReview,
        }
    }

    /// Money this refund holds back from the refundable balance: everything
    /// but a definitive failure (a refund in doubt may still succeed).
    pub fn reserves_balance(&self) -> bool {
        !matches!(self.stage, RefundStage::Failed { .. })
    }
}

impl PaidOrder {
    /// The total of succeeded refunds.
    pub fn refunded_total(&self) -> Total {
        self.sum_of(|refund| refund.status() == RefundStatus::Succeeded)
    }

    /// What may still be refunded: the payment less every refund not failed.
    pub fn refundable(&self) -> Total {
        self.sum_of(Refund::reserves_balance)
            .remaining_of(self.order.amount)
            .unwrap_or_else(|| unreachable!("evolve refuses refunds above the payment"))
    }

    /// The sum of the refunds `which` picks. Never above the payment: `evolve`
    /// refuses a refund that would take the refunds holding the balance
    /// above it (`invariants::check_event`).
    fn sum_of(&self, which: impl Fn(&Refund) -> bool) -> Total {
        Total::sum(
            self.refunds
                .iter()
                .filter(|refund| which(refund))
                .map(|refund| refund.amount),
        )
        .unwrap_or_else(|| unreachable!("refunds within one payment fit in a u64 of fen"))
    }

    pub fn refund(&self, refund_no: &RefundNo) -> Option<&Refund> {
        self.refunds
            .iter()
            .find(|refund| &refund.refund_no == refund_no)
    }

    /// The refund a refund fact is about. `invariants::check_event` refuses
    /// a fact for a refund the order does not have, so it is there.
    fn refund_mut(&mut self, refund_no: &RefundNo) -> &mut Refund {
        self.refunds
            .iter_mut()
            .find(|refund| &refund.refund_no == refund_no)
            .unwrap_or_else(|| unreachable!("check_event refuses facts of unknown refunds"))
    }
}

impl PaymentState {
    pub fn order(&self) -> Option<&Order> {
        match self {
            PaymentState::Initial => None,
            PaymentState::Paying(s) => Some(&s.order),
            PaymentState::Revoking(s) => Some(&s.order),
            PaymentState::Paid(s) => Some(&s.order),
            PaymentState::Closed(s) => Some(&s.order),
            PaymentState::Reversed(s) => Some(&s.order),
            PaymentState::RevokedUnconfirmed(s) => Some(&s.order),
            PaymentState::ManualReview(s) => Some(&s.order),
        }
    }

    fn order_mut(&mut self) -> Option<&mut Order> {
        match self {
            PaymentState::Initial => None,
            PaymentState::Paying(s) => Some(&mut s.order),
            PaymentState::Revoking(s) => Some(&mut s.order),
            PaymentState::Paid(s) => Some(&mut s.order),
            PaymentState::Closed(s) => Some(&mut s.order),
            PaymentState::Reversed(s) => Some(&mut s.order),
            PaymentState::RevokedUnconfirmed(s) => Some(&mut s.order),
            PaymentState::ManualReview(s) => Some(&mut s.order),
        }
    }

    /// The API status; `None` before submission.
    pub fn status(&self) -> Option<PaymentStatus> {
        Some(match self {
            PaymentState::Initial => return None,
            PaymentState::Paying(_) => PaymentStatus::Paying,
            PaymentState::Revoking(_) => PaymentStatus::Revoking,
            PaymentState::Paid(paid) => {
                let refunded = paid.refunded_total();
                if refunded == Total::ZERO {
                    PaymentStatus::Paid
                } else if refunded.remaining_of(paid.order.amount) == Some(Total::ZERO) {
                    PaymentStatus::Refunded
                } else {
                    PaymentStatus::PartiallyRefunded
                }
            }
            PaymentState::Closed(_) => PaymentStatus::Closed,
            PaymentState::Reversed(_) => PaymentStatus::Reversed,
            PaymentState::RevokedUnconfirmed(_) => PaymentStatus::Revoked,
            PaymentState::ManualReview(_) => PaymentStatus::ManualReview,
        })
    }

    /// The proof of payment, where the state has one.
    pub fn paid_facts(&self) -> Option<&PaidFacts> {
        match self {
            PaymentState::Paid(s) => Some(&s.paid),
            PaymentState::Revoking(s) => s.paid.as_ref(),
            PaymentState::Reversed(s) => s.paid.as_ref(),
            PaymentState::ManualReview(s) => s.paid.as_ref(),
            _ => None,
        }
    }
}

/// Moves the state by one event, or refuses it: an event that breaks an
/// invariant or has no transition from this state is never applied.
#[expect(
    clippy::result_large_err,
    reason = "the refusal hands the state back by value, as success does; both are the same size"
)]
pub fn evolve(state: PaymentState, event: &Event) -> Result<PaymentState, Refused<PaymentState>> {
    if let Err(violation) = invariants::check_event(&state, event) {
        return Err(Refused { state, violation });
    }
    let after = transition(state, event)?;
    debug_assert_eq!(
        invariants::check_state(&after),
        Ok(()),
        "check_event let through a state that breaks an invariant"
    );
    Ok(after)
}

/// The transition table. `check_event` has already refused what breaks an
/// invariant; an event with no row here is refused as not fitting.
#[expect(
    clippy::result_large_err,
    reason = "the refusal hands the state back by value, as success does; both are the same size"
)]
fn transition(state: PaymentState, event: &Event) -> Result<PaymentState, Refused<PaymentState>> {
    let at = event.at;
    Ok(match (state, &event.fact) {
        // An answer the order was no longer waiting for: kept, changes nothing.
        (state, Fact::AnswerNoted(_)) => state,

        (PaymentState::Initial, Fact::Submitted(submitted)) => PaymentState::Paying(Paying {
            order: Order {
                merchant_id: submitted.merchant_id.clone(),
                order_no: submitted.order_no.clone(),
                channel: submitted.channel,
                amount: submitted.amount,
                currency: submitted.currency,
                subject: submitted.subject.clone(),
                auth_code: submitted.auth_code.clone(),
                submitted_at: at,
                deadline_at: submitted.deadline_at,
                revoke_not_before: submitted.revoke_not_before,
                matched_lines: Vec::new(),
            },
            pay_answered: false,
            queries: 0,
            next_query_at: submitted.first_query_at,
            failure_code: None,
        }),

        (PaymentState::Paying(mut paying), Fact::UserPaying(answer)) => {
            paying.pay_answered = true;
            paying.next_query_at = answer.next_query_at;
            PaymentState::Paying(paying)
        }
        (PaymentState::Paying(mut paying), Fact::PayAnswerUnknown(answer)) => {
            paying.pay_answered = true;
            paying.next_query_at = answer.next_query_at;
            PaymentState::Paying(paying)
        }
        (PaymentState::Paying(mut paying), Fact::QueryResult(result)) => {
            paying.queries += 1;
            if let Some(next) = result.next_query_at {
                paying.next_query_at = next;
            }
            PaymentState::Paying(paying)
        }
        (PaymentState::Paying(paying), Fact::Paid(paid)) => PaymentState::Paid(PaidOrder {
            order: paying.order,
            paid: PaidFacts {
                channel_trade_no: paid.channel_trade_no.clone(),
                paid_at: paid.paid_at,
            },
            refunds: Vec::new(),
        }),
        // A definitive failure is followed, in the same decision, by RevokeRequested.
        (PaymentState::Paying(mut paying), Fact::PaymentFailed(failed)) => {
            paying.pay_answered = true;
            paying.failure_code = Some(failed.code.clone());
            PaymentState::Paying(paying)
        }
        (PaymentState::Paying(paying), Fact::PayNotSent(_)) if !paying.pay_answered => {
            PaymentState::Closed(ClosedOrder {
                order: paying.order,
                failure_code: Some(super::event::PAY_NOT_SENT.to_owned()),
                closed_at: at,
            })
        }
        (PaymentState::Paying(paying), Fact::RevokeRequested(requested)) => {
            PaymentState::Revoking(Revoking {
                order: paying.order,
                reason: requested.reason,
                paid: None,
                failure_code: paying.failure_code,
                next: RevokeNext::Call {
                    attempt: 1,
                    at: requested.not_before,
                },
            })
        }
        (PaymentState::Paid(paid), Fact::RevokeRequested(requested)) => {
            PaymentState::Revoking(Revoking {
                order: paid.order,
                reason: requested.reason,
                paid: Some(paid.paid),
                failure_code: None,
                next: RevokeNext::Call {
                    attempt: 1,
                    at: requested.not_before,
                },
            })
        }
        (PaymentState::Paying(paying), Fact::ManualReviewRequired(review))
            if review.refund_no.is_none() =>
        {
            PaymentState::ManualReview(ManualReviewOrder {
                order: paying.order,
                reason: review.reason.clone(),
                since: at,
                paid: None,
            })
        }

        (PaymentState::Revoking(mut revoking), Fact::RevokeRetryScheduled(retry)) => {
            revoking.next = match retry.retry_at {
                Some(retry_at) => RevokeNext::Call {
                    attempt: retry.attempt + 1,
                    at: retry_at,
                },
                None => RevokeNext::Escalate {
                    reason: ManualReviewReason::RevokeAttemptsExhausted {
                        attempts: retry.attempt,
                    },
                    since: at,
                },
            };
            PaymentState::Revoking(revoking)
        }
        // The window closed on a payment the ledger knows: it stands (a
        // refund in full follows in the same decision).
        (
            PaymentState::Revoking(Revoking {
                order,
                paid: Some(paid),
                ..
            }),
            Fact::RevokeRejected(_),
        ) => PaymentState::Paid(PaidOrder {
            order,
            paid,
            refunds: Vec::new(),
        }),
        // The window closed: query; paid means a refund instead, not paid closed.
        (PaymentState::Revoking(mut revoking), Fact::RevokeRejected(rejected)) => {
            revoking.next = RevokeNext::QueryAfterWindowClosed {
                code: rejected.code.clone(),
                at,
                queries: 0,
            };
            PaymentState::Revoking(revoking)
        }
        // What a query after the closed window answered; the decision's next
        // fact (Paid, RevokeSettled or ManualReviewRequired) acts on it.
        (
            PaymentState::Revoking(
                mut revoking @ Revoking {
                    next: RevokeNext::QueryAfterWindowClosed { .. },
                    ..
                },
            ),
            Fact::QueryResult(result),
        ) => {
            if let RevokeNext::QueryAfterWindowClosed {
                at: next_at,
                queries,
                ..
            } = &mut revoking.next
            {
                *queries += 1;
                if let Some(next_query_at) = result.next_query_at {
                    *next_at = next_query_at;
                }
            }
            PaymentState::Revoking(revoking)
        }
        // Paid after all, and the channel will not revoke it: the payment
        // stands (a refund in full follows in the same decision).
        (
            PaymentState::Revoking(Revoking {
                order,
                next: RevokeNext::QueryAfterWindowClosed { .. },
                ..
            }),
            Fact::Paid(paid),
        ) => PaymentState::Paid(PaidOrder {
            order,
            paid: PaidFacts {
                channel_trade_no: paid.channel_trade_no.clone(),
                paid_at: paid.paid_at,
            },
            refunds: Vec::new(),
        }),
        // The customer paid while the revoke was under way: the revoke
        // returns the money (a revoke that later says `closed` contradicts it).
        (PaymentState::Revoking(mut revoking), Fact::Paid(paid)) => {
            revoking.paid = Some(PaidFacts {
                channel_trade_no: paid.channel_trade_no.clone(),
                paid_at: paid.paid_at,
            });
            PaymentState::Revoking(revoking)
        }
        (PaymentState::Revoking(revoking), Fact::RevokeSettled(settled)) => settle_revoke(
            revoking.order,
            revoking.failure_code,
            revoking.paid,
            settled,
            at,
        ),
        (PaymentState::RevokedUnconfirmed(revoked), Fact::RevokeSettled(settled)) => {
            settle_revoke(revoked.order, revoked.failure_code, None, settled, at)
        }
        // A late answer proved the payment: the revoke returned it.
        (PaymentState::RevokedUnconfirmed(revoked), Fact::Paid(paid)) => {
            PaymentState::Reversed(ReversedOrder {
                order: revoked.order,
                paid: Some(PaidFacts {
                    channel_trade_no: paid.channel_trade_no.clone(),
                    paid_at: paid.paid_at,
                }),
                reversed_at: revoked.revoked_at,
            })
        }
        (PaymentState::RevokedUnconfirmed(revoked), Fact::ManualReviewRequired(review))
            if review.refund_no.is_none() =>
        {
            PaymentState::ManualReview(ManualReviewOrder {
                order: revoked.order,
                reason: review.reason.clone(),
                since: at,
                paid: None,
            })
        }
        (PaymentState::Revoking(revoking), Fact::Revoked(revoked)) => match revoked.result {
            RevokeResult::Unspecified if revoking.paid.is_some() => {
                PaymentState::Reversed(ReversedOrder {
                    order: revoking.order,
                    paid: revoking.paid,
                    reversed_at: at,
                })
            }
            // The channel had already failed the payment definitively: no
            // money moved, whatever the revoke answer leaves unsaid.
            RevokeResult::Unspecified if revoking.failure_code.is_some() => {
                PaymentState::Closed(ClosedOrder {
                    order: revoking.order,
                    failure_code: revoking.failure_code,
                    closed_at: at,
                })
            }
            // Whether money moved is for the day's statement to say.
            RevokeResult::Unspecified => PaymentState::RevokedUnconfirmed(RevokedOrder {
                order: revoking.order,
                failure_code: revoking.failure_code,
                revoked_at: at,
            }),
            RevokeResult::Closed if revoking.paid.is_some() => {
                // Contradiction: followed in the same decision by ManualReviewRequired.
                PaymentState::Revoking(revoking)
            }
            RevokeResult::Closed => PaymentState::Closed(ClosedOrder {
                order: revoking.order,
                failure_code: revoking.failure_code,
                closed_at: at,
            }),
            RevokeResult::Refunded => PaymentState::Reversed(ReversedOrder {
                order: revoking.order,
                paid: revoking.paid,
                reversed_at: at,
            }),
        },
        (PaymentState::Revoking(revoking), Fact::ManualReviewRequired(review))
            if review.refund_no.is_none() =>
        {
            PaymentState::ManualReview(ManualReviewOrder {
                order: revoking.order,
                reason: review.reason.clone(),
                since: at,
                paid: revoking.paid,
            })
        }

        (PaymentState::ManualReview(review), Fact::OperatorResolved(resolved)) => {
            match &resolved.resolution {
                Resolution::Paid {
                    channel_trade_no,
                    paid_at,
                } => PaymentState::Paid(PaidOrder {
                    order: review.order,
                    paid: PaidFacts {
                        channel_trade_no: channel_trade_no.clone(),
                        paid_at: *paid_at,
                    },
                    refunds: Vec::new(),
                }),
                Resolution::Closed => PaymentState::Closed(ClosedOrder {
                    order: review.order,
                    failure_code: None,
                    closed_at: at,
                }),
                Resolution::Reversed => PaymentState::Reversed(ReversedOrder {
                    order: review.order,
                    paid: review.paid,
                    reversed_at: at,
                }),
                // A refund's resolution belongs to a paid order (and check_event
                // already refuses it here as a refund without payment).
                Resolution::RefundSucceeded { .. } | Resolution::RefundFailed { .. } => {
                    let violation = Violation::DoesNotFit {
                        status: Some(PaymentStatus::ManualReview),
                        event_type: event.fact.stored_name(),
                    };
                    let state = PaymentState::ManualReview(review);
                    return Err(Refused { state, violation });
                }
            }
        }

        (PaymentState::Paid(mut paid), fact) if is_refund_fact(fact) => {
            evolve_refund(&mut paid, fact, at);
            PaymentState::Paid(paid)
        }

        (mut state, Fact::StatementLineMatched(matched)) => {
            if let Some(order) = state.order_mut() {
                if !order.matched_lines.contains(&matched.line) {
                    order.matched_lines.push(matched.line.clone());
                }
            }
            state
        }

        (state, fact) => {
            let violation = Violation::DoesNotFit {
                status: state.status(),
                event_type: fact.stored_name(),
            };
            return Err(Refused { state, violation });
        }
    })
}

/// The end of a revoke whose money movement was unconfirmed: reversed when
/// money moved (and came back), closed when none did.
fn settle_revoke(
    order: Order,
    failure_code: Option<String>,
    paid: Option<PaidFacts>,
    settled: &RevokeSettled,
    at: DateTime<Utc>,
) -> PaymentState {
    if settled.money_moved {
        PaymentState::Reversed(ReversedOrder {
            order,
            paid,
            reversed_at: at,
        })
    } else {
        PaymentState::Closed(ClosedOrder {
            order,
            failure_code,
            closed_at: at,
        })
    }
}

fn is_refund_fact(fact: &Fact) -> bool {
    invariants::refund_of(fact).is_some()
}

fn evolve_refund(paid: &mut PaidOrder, fact: &Fact, at: DateTime<Utc>) {
    match fact {
        Fact::RefundRequested(requested) => paid.refunds.push(Refund {
            refund_no: requested.refund_no.clone(),
            amount: requested.amount,
            reason: requested.reason.clone(),
            requested_at: at,
            settle_by: requested.settle_by,
            calls: 1,
            answers: 0,
            stage: RefundStage::Pending {
                next_query_at: requested.first_query_at,
            },
        }),
        Fact::RefundPending(pending) => {
            let refund = paid.refund_mut(&pending.refund_no);
            if matches!(refund.stage, RefundStage::Resend { .. }) {
                // The answer to a resend: one more refund call was made.
                refund.calls += 1;
            }
            refund.answers += 1;
            refund.stage = match (&pending.outcome, pending.next_query_at) {
                (RefundOutcome::NotFound, _) | (_, None) => RefundStage::Resend { since: at },
                (_, Some(next_query_at)) => RefundStage::Pending { next_query_at },
            };
        }
        Fact::Refunded(refunded) => {
            paid.refund_mut(&refunded.refund_no).stage = RefundStage::Succeeded {
                refunded_at: refunded.refunded_at,
                channel_refund_no: refunded.channel_refund_no.clone(),
            };
        }
        Fact::RefundFailed(failed) => {
            paid.refund_mut(&failed.refund_no).stage = RefundStage::Failed {
                code: failed.code.clone(),
            };
        }
        Fact::ManualReviewRequired(ManualReviewRequired {
            refund_no: Some(refund_no),
            reason,
            ..
        }) => {
            paid.refund_mut(refund_no).stage = RefundStage::ManualReview {
                reason: reason.clone(),
                since: at,
            };
        }
        Fact::OperatorResolved(OperatorResolved {
            resolution:
                Resolution::RefundSucceeded {
                    refund_no,
                    refunded_at,
                },
            ..
        }) => {
            paid.refund_mut(refund_no).stage = RefundStage::Succeeded {
                refunded_at: *refunded_at,
                channel_refund_no: None,
            };
        }
        Fact::OperatorResolved(OperatorResolved {
            resolution: Resolution::RefundFailed { refund_no },
            ..
        }) => {
            paid.refund_mut(refund_no).stage = RefundStage::Failed {
                code: "OPERATOR_RESOLVED_FAILED".to_owned(),
            };
        }
        other => unreachable!("is_refund_fact let {} through", other.stored_name()),
    }
}
