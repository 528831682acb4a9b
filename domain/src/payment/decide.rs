//! `decide`: the Payment aggregate's business rules. Given the current state,
//! a command and the time, it returns the events to record, or the first
//! rule the command breaks. Pure: no IO, no clock; the policy is a value.

use chrono::{DateTime, NaiveDate, Utc};

use crate::channel::ChannelCodes;
use crate::decider::{Decider, Refused};
use crate::ids::CommandId;
use crate::money::Currency;
use crate::policy::Policy;

use super::command::{Command, CommandKind, RequestRefund, SubmitPayment};
use super::event::{
    AnswerNoted, Event, Fact, ManualReviewReason, ManualReviewRequired, NotedAnswer,
    OperatorResolved, Paid, PaidSource, PayAnswerUnknown, PayNotSent, PaymentFailed, QueryResult,
    RefundFailed, RefundPending, RefundRequested, Refunded, Resolution, RevokeReason,
    RevokeRejected, RevokeRequested, RevokeRetryScheduled, RevokeSettled, Revoked, SettledBy,
    StatementLine, StatementLineKind, StatementLineMatched, Submitted, UserPaying,
};
use super::next_action::{Action, next_action};
use super::outcome::{
    ChannelAnswer, PayOutcome, QueryOutcome, RefundOutcome, RevokeOutcome, RevokeResult,
};
use super::rejection::Rejection;
use super::state::{
    Order, PaidOrder, PaymentState, PaymentStatus, RefundStage, RevokeNext, Revoking, evolve,
};

/// The Payment decider: the policy in force plus the pure functions.
#[derive(Debug, Clone, Default)]
pub struct PaymentDecider {
    pub policy: Policy,
}

impl PaymentDecider {
    pub fn new(policy: Policy) -> Self {
        PaymentDecider { policy }
    }

    fn decide_facts(
        &self,
        state: &PaymentState,
        command: &CommandKind,
        now: DateTime<Utc>,
    ) -> Result<Vec<Fact>, Rejection> {
        match command {
            CommandKind::SubmitPayment(submit) => self.submit(state, submit, now),
            CommandKind::RecordPayAnswer(answer) => self.record_pay_answer(state, answer, now),
            CommandKind::RecordQueryResult(answer) => self.record_query_result(state, answer, now),
            CommandKind::RequestRevoke { reason } => self.request_revoke(state, *reason, now),
            CommandKind::RecordRevokeAnswer(answer) => {
                self.record_revoke_answer(state, answer, now)
            }
            CommandKind::RequestRefund(request) => self.request_refund(state, request, now),
            CommandKind::RecordRefundAnswer { refund_no, answer } => {
                self.record_refund_answer(state, refund_no, answer, now)
            }
            CommandKind::EscalateToManualReview { refund_no } => {
                escalate(state, refund_no.as_ref(), now)
            }
            CommandKind::Resolve {
                resolution,
                note,
                resolved_by,
            } => resolve(state, resolution, note, resolved_by),
            CommandKind::MatchStatementLine(line) => match_statement_line(state, line),
            CommandKind::SettleRevoke {
                money_moved,
                statement_date,
            } => settle_revoke(state, *money_moved, *statement_date),
        }
    }

    fn submit(
        &self,
        state: &PaymentState,
        submit: &SubmitPayment,
        now: DateTime<Utc>,
    ) -> Result<Vec<Fact>, Rejection> {
        if !matches!(state, PaymentState::Initial) {
            return Err(Rejection::AlreadySubmitted);
        }
        let policy = &self.policy;
        Ok(vec![Fact::Submitted(Submitted {
            merchant_id: submit.merchant_id.clone(),
            order_no: submit.order_no.clone(),
            channel: submit.auth_code.channel(),
            amount: submit.amount,
            currency: Currency::Cny,
            subject: submit.subject.clone(),
            auth_code: submit.auth_code.masked(),
            auth_code_fingerprint: submit.auth_code_fingerprint.clone(),
            deadline_at: now + policy.pay_deadline(),
            first_query_at: now + policy.poll_interval(),
            revoke_not_before: now + policy.revoke_earliest_after_submit(),
        })])
    }

    fn record_pay_answer(
        &self,
        state: &PaymentState,
        answer: &ChannelAnswer<PayOutcome>,
        now: DateTime<Utc>,
    ) -> Result<Vec<Fact>, Rejection> {
        let paying = match state {
            PaymentState::Initial => return Err(Rejection::OrderNotFound),
            PaymentState::Paying(paying) if !paying.pay_answered => paying,
            other => {
                let proof = answer.outcome.proof_of_payment();
                let noted = NotedAnswer::Pay {
                    outcome: answer.outcome.clone(),
                };
                return Ok(late_answer(
                    other,
                    noted,
                    &answer.codes,
                    proof,
                    PaidSource::PayAnswer,
                    now,
                ));
            }
        };
        let codes = answer.codes.clone();
        let next_query_at = now + self.policy.poll_interval();
        Ok(match &answer.outcome {
            PayOutcome::Paid {
                channel_trade_no,
                paid_at,
            } => vec![paid(
                channel_trade_no,
                *paid_at,
                PaidSource::PayAnswer,
                codes,
                now,
            )],
            PayOutcome::WaitingForPassword => vec![Fact::UserPaying(UserPaying {
                codes,
                next_query_at,
            })],
            PayOutcome::Failed { code } => vec![
                Fact::PaymentFailed(PaymentFailed {
                    code: code.clone(),
                    codes,
                }),
                revoke_requested(
                    RevokeReason::PaymentFailed,
                    paying.order.revoke_not_before,
                    now,
                ),
            ],
            // Certainly not made: the channel never saw the order, nothing
            // moved, and there is nothing to revoke.
            PayOutcome::NotSent { reason } => vec![Fact::PayNotSent(PayNotSent {
                reason: reason.clone(),
            })],
            PayOutcome::Unknown { reason } => vec![Fact::PayAnswerUnknown(PayAnswerUnknown {
                reason: reason.clone(),
                codes,
                next_query_at,
            })],
        })
    }

    fn record_query_result(
        &self,
        state: &PaymentState,
        answer: &ChannelAnswer<QueryOutcome>,
        now: DateTime<Utc>,
    ) -> Result<Vec<Fact>, Rejection> {
        let result = |next_query_at| {
            Fact::QueryResult(QueryResult {
                outcome: answer.outcome.clone(),
                codes: answer.codes.clone(),
                next_query_at,
            })
        };
        let paying = match state {
            PaymentState::Initial => return Err(Rejection::OrderNotFound),
            PaymentState::Paying(paying) => paying,
            PaymentState::Revoking(Revoking {
                order,
                next: RevokeNext::QueryAfterWindowClosed { code, queries, .. },
                ..
            }) => {
                return Ok(self.after_window_closed(order, code, *queries, answer, now));
            }
            other => {
                let proof = answer.outcome.proof_of_payment();
                let noted = NotedAnswer::Query {
                    outcome: answer.outcome.clone(),
                };
                return Ok(late_answer(
                    other,
                    noted,
                    &answer.codes,
                    proof,
                    PaidSource::Query,
                    now,
                ));
            }
        };
        let failed_then_revoke = |code: &str| {
            vec![
                result(None),
                Fact::PaymentFailed(PaymentFailed {
                    code: code.to_owned(),
                    codes: answer.codes.clone(),
                }),
                revoke_requested(
                    RevokeReason::PaymentFailed,
                    paying.order.revoke_not_before,
                    now,
                ),
            ]
        };
        Ok(match &answer.outcome {
            QueryOutcome::Paid {
                channel_trade_no,
                paid_at,
            } => vec![
                result(None),
                paid(
                    channel_trade_no,
                    *paid_at,
                    PaidSource::Query,
                    answer.codes.clone(),
                    now,
                ),
            ],
            QueryOutcome::WaitingForPassword
            | QueryOutcome::NotPaid
            | QueryOutcome::NotFound
            | QueryOutcome::Unknown { .. } => {
                // Keep polling; next_action turns to a revoke once no query fits before the deadline.
                vec![result(Some(now + self.policy.poll_interval()))]
            }
            // Closed by the channel (WeChat revokes unpaid orders after 45 s): still
            // close the loop with our own revoke, which is idempotent.
            QueryOutcome::Closed => failed_then_revoke("CLOSED"),
            QueryOutcome::Failed { code } => failed_then_revoke(code),
            QueryOutcome::RefundedElsewhere => vec![
                result(None),
                Fact::ManualReviewRequired(ManualReviewRequired {
                    refund_no: None,
                    reason: ManualReviewReason::RefundedOutsideLedger,
                    codes: answer.codes.clone(),
                }),
            ],
            // Never paid, and never revoked: the revoke would hit the other trade.
            QueryOutcome::OtherTrade { .. } => vec![
                result(None),
                Fact::ManualReviewRequired(ManualReviewRequired {
                    refund_no: None,
                    reason: ManualReviewReason::OrderNoUsedByAnotherTrade,
                    codes: answer.codes.clone(),
                }),
            ],
        })
    }

    /// A query after the channel refused a revoke because its window closed
    /// (`ACQ.TRADE_CANCEL_TIME_OUT`, `REVERSE_EXPIRE`): paid means a refund
    /// in full instead (as the channels' documentation says); a closed or
    /// unknown order means no money moved; still waiting is queried again,
    /// a bounded number of times, before an operator takes over.
    fn after_window_closed(
        &self,
        order: &Order,
        code: &str,
        queries: u32,
        answer: &ChannelAnswer<QueryOutcome>,
        now: DateTime<Utc>,
    ) -> Vec<Fact> {
        let result = |next_query_at| {
            Fact::QueryResult(QueryResult {
                outcome: answer.outcome.clone(),
                codes: answer.codes.clone(),
                next_query_at,
            })
        };
        match &answer.outcome {
            QueryOutcome::Paid {
                channel_trade_no,
                paid_at,
            } => vec![
                result(None),
                paid(
                    channel_trade_no,
                    *paid_at,
                    PaidSource::Query,
                    answer.codes.clone(),
                    now,
                ),
                self.window_refund(order, code, now),
            ],
            QueryOutcome::Closed | QueryOutcome::NotFound | QueryOutcome::Failed { .. } => vec![
                result(None),
                Fact::RevokeSettled(RevokeSettled {
                    money_moved: false,
                    by: SettledBy::Query,
                }),
            ],
            QueryOutcome::RefundedElsewhere => vec![
                result(None),
                Fact::ManualReviewRequired(ManualReviewRequired {
                    refund_no: None,
                    reason: ManualReviewReason::RefundedOutsideLedger,
                    codes: answer.codes.clone(),
                }),
            ],
            QueryOutcome::OtherTrade { .. } => vec![
                result(None),
                Fact::ManualReviewRequired(ManualReviewRequired {
                    refund_no: None,
                    reason: ManualReviewReason::OrderNoUsedByAnotherTrade,
                    codes: answer.codes.clone(),
                }),
            ],
            QueryOutcome::WaitingForPassword
            | QueryOutcome::NotPaid
            | QueryOutcome::Unknown { .. }
                if queries + 1 < self.policy.revoke_attempts_max =>
            {
                vec![result(Some(
                    now + self.policy.revoke_retry_delay(queries + 1),
                ))]
            }
            QueryOutcome::WaitingForPassword
            | QueryOutcome::NotPaid
            | QueryOutcome::Unknown { .. } => vec![
                result(None),
                Fact::ManualReviewRequired(ManualReviewRequired {
                    refund_no: None,
                    reason: ManualReviewReason::RevokeWindowClosedUndecided {
                        code: code.to_owned(),
                    },
                    codes: answer.codes.clone(),
                }),
            ],
        }
    }

    /// The refund in full that replaces a revoke the channel refused
    /// because its window closed, on an order that is paid.
    fn window_refund(&self, order: &Order, code: &str, now: DateTime<Utc>) -> Fact {
        Fact::RefundRequested(RefundRequested {
            refund_no: window_refund_no(&order.order_no),
            amount: order.amount,
            reason: format!("revoke refused ({code}): refunded in full instead"),
            first_query_at: now + self.policy.refund_query_delay(0),
            settle_by: self.policy.refund_settle_by(now),
        })
    }

    fn request_revoke(
        &self,
        state: &PaymentState,
        reason: RevokeReason,
        now: DateTime<Utc>,
    ) -> Result<Vec<Fact>, Rejection> {
        match state {
            PaymentState::Initial => Err(Rejection::OrderNotFound),
            // Already being revoked: the request is carried out (idempotent).
            PaymentState::Revoking(_) => Ok(vec![]),
            PaymentState::Paying(paying) => Ok(vec![revoke_requested(
                reason,
                paying.order.revoke_not_before,
                now,
            )]),
            PaymentState::Paid(paid) => {
                if !paid.refunds.is_empty() {
                    return Err(Rejection::RevokeAfterRefund);
                }
                let rules = self.policy.rules(paid.order.channel);
                if !rules.revoke_window.allows(paid.order.submitted_at, now) {
                    return Err(Rejection::RevokeWindowClosed);
                }
                Ok(vec![revoke_requested(
                    reason,
                    paid.order.revoke_not_before,
                    now,
                )])
            }
            other => Err(Rejection::NotRevocable {
                status: status_of(other),
            }),
        }
    }

    fn record_revoke_answer(
        &self,
        state: &PaymentState,
        answer: &ChannelAnswer<RevokeOutcome>,
        now: DateTime<Utc>,
    ) -> Result<Vec<Fact>, Rejection> {
        let (revoking, attempt) = match state {
            PaymentState::Initial => return Err(Rejection::OrderNotFound),
            PaymentState::Revoking(
                revoking @ Revoking {
                    next: RevokeNext::Call { attempt, .. },
                    ..
                },
            ) => (revoking, *attempt),
            // A revoke answer the order no longer waits for (a duplicate, a
            // late one after another process moved on): kept, nothing else.
            _ => {
                let noted = NotedAnswer::Revoke {
                    outcome: answer.outcome.clone(),
                };
                return Ok(vec![noted_fact(noted, &answer.codes)]);
            }
        };
        let codes = answer.codes.clone();
        let retry = |reason: &str| {
            let retry_at = (attempt < self.policy.revoke_attempts_max)
                .then(|| now + self.policy.revoke_retry_delay(attempt));
            vec![Fact::RevokeRetryScheduled(RevokeRetryScheduled {
                attempt,
                reason: reason.to_owned(),
                codes: codes.clone(),
                retry_at,
            })]
        };
        Ok(match &answer.outcome {
            RevokeOutcome::Done { result } => {
                let revoked = Fact::Revoked(Revoked {
                    result: *result,
                    attempt,
                    codes: codes.clone(),
                });
                if *result == RevokeResult::Closed && revoking.paid.is_some() {
                    vec![
                        revoked,
                        Fact::ManualReviewRequired(ManualReviewRequired {
                            refund_no: None,
                            reason: ManualReviewReason::RevokeContradictsPayment,
                            codes,
                        }),
                    ]
                } else {
                    vec![revoked]
                }
            }
            RevokeOutcome::MustRetry { reason } => retry(reason),
            RevokeOutcome::Unknown { reason } => retry(reason),
            RevokeOutcome::WindowClosed { code } => {
                let rejected = Fact::RevokeRejected(RevokeRejected {
                    attempt,
                    code: code.clone(),
                    codes,
                });
                if revoking.paid.is_some() {
                    // Known paid: the payment stands, refunded in full instead.
                    vec![rejected, self.window_refund(&revoking.order, code, now)]
                } else {
                    // Whether the customer paid is for a query to say.
                    vec![rejected]
                }
            }
        })
    }

    fn request_refund(
        &self,
        state: &PaymentState,
        request: &RequestRefund,
        now: DateTime<Utc>,
    ) -> Result<Vec<Fact>, Rejection> {
        let paid = match state {
            PaymentState::Initial => return Err(Rejection::OrderNotFound),
            PaymentState::Paid(paid) => paid,
            other => {
                return Err(Rejection::NotRefundable {
                    status: status_of(other),
                });
            }
        };
        if paid.refund(&request.refund_no).is_some() {
            return Err(Rejection::RefundNoInUse);
        }
        let rules = self.policy.rules(paid.order.channel);
        if !rules.refund_window_allows(paid.paid.paid_at, now) {
            return Err(Rejection::RefundWindowClosed);
        }
        if paid.refunds.len() >= rules.refunds_per_order_max as usize {
            return Err(Rejection::RefundLimitReached {
                max: rules.refunds_per_order_max,
            });
        }
        let refundable = paid.refundable();
        if request.amount.fen() > refundable.fen() {
            return Err(Rejection::RefundExceedsBalance {
                requested: request.amount,
                refundable,
            });
        }
        Ok(vec![Fact::RefundRequested(RefundRequested {
            refund_no: request.refund_no.clone(),
            amount: request.amount,
            reason: request.reason.clone(),
            first_query_at: now + self.policy.refund_query_delay(0),
            settle_by: self.policy.refund_settle_by(now),
        })])
    }

    fn record_refund_answer(
        &self,
        state: &PaymentState,
        refund_no: &crate::ids::RefundNo,
        answer: &ChannelAnswer<RefundOutcome>,
        now: DateTime<Utc>,
    ) -> Result<Vec<Fact>, Rejection> {
        let noted = || {
            let noted = NotedAnswer::Refund {
                refund_no: refund_no.clone(),
                outcome: answer.outcome.clone(),
            };
            vec![noted_fact(noted, &answer.codes)]
        };
        let paid: &PaidOrder = match state {
            PaymentState::Initial => return Err(Rejection::OrderNotFound),
            PaymentState::Paid(paid) => paid,
            // Refunds live on paid orders; an answer after the order moved on is kept.
            _ => return Ok(noted()),
        };
        let refund = paid.refund(refund_no).ok_or(Rejection::RefundNotFound)?;
        let calls_made = match refund.stage {
            RefundStage::Pending { .. } => refund.calls,
            // This answers a resend.
            RefundStage::Resend { .. } => refund.calls + 1,
            // The refund is final (or with an operator): a late answer, kept.
            _ => return Ok(noted()),
        };
        let codes = answer.codes.clone();
        let pending = |next_query_at| {
            Fact::RefundPending(RefundPending {
                refund_no: refund_no.clone(),
                outcome: answer.outcome.clone(),
                codes: codes.clone(),
                next_query_at,
            })
        };
        let review = |reason| {
            Fact::ManualReviewRequired(ManualReviewRequired {
                refund_no: Some(refund_no.clone()),
                reason,
                codes: codes.clone(),
            })
        };
        Ok(match &answer.outcome {
            RefundOutcome::Accepted { .. }
            | RefundOutcome::Processing
            | RefundOutcome::Unknown { .. } => {
                vec![pending(Some(
                    now + self.policy.refund_query_delay(refund.answers + 1),
                ))]
            }
            RefundOutcome::NotFound if calls_made >= self.policy.refund_attempts_max => vec![
                pending(None),
                review(ManualReviewReason::RefundAttemptsExhausted {
                    attempts: calls_made,
                }),
            ],
            RefundOutcome::NotFound => vec![pending(None)],
            RefundOutcome::Succeeded {
                channel_refund_no,
                refunded_at,
            } => {
                vec![Fact::Refunded(Refunded {
                    refund_no: refund_no.clone(),
                    amount: refund.amount,
                    channel_refund_no: channel_refund_no.clone(),
                    refunded_at: *refunded_at,
                    codes,
                })]
            }
            RefundOutcome::Failed { code } => vec![Fact::RefundFailed(RefundFailed {
                refund_no: refund_no.clone(),
                code: code.clone(),
                codes,
            })],
            RefundOutcome::Abnormal { code } => {
                vec![review(ManualReviewReason::RefundAbnormal {
                    code: code.clone(),
                })]
            }
        })
    }
}

impl Decider for PaymentDecider {
    type State = PaymentState;
    type Command = Command;
    type Event = Event;
    type Rejection = Rejection;

    fn initial_state(&self) -> PaymentState {
        PaymentState::Initial
    }

    /// The events `command` produces in `state` at `now`, or why it is refused.
    /// An empty list means the command was already carried out (idempotent).
    fn decide(
        &self,
        state: &PaymentState,
        command: &Command,
        now: DateTime<Utc>,
    ) -> Result<Vec<Event>, Rejection> {
        let facts = self.decide_facts(state, &command.kind, now)?;
        Ok(stamp(facts, command, now))
    }

    fn evolve(
        &self,
        state: PaymentState,
        event: &Event,
    ) -> Result<PaymentState, Refused<PaymentState>> {
        evolve(state, event)
    }

    fn is_terminal(&self, state: &PaymentState) -> bool {
        state.status().is_some_and(PaymentStatus::is_terminal)
    }

    fn command_id(command: &Command) -> CommandId {
        command.id
    }
}

fn escalate(
    state: &PaymentState,
    refund_no: Option<&crate::ids::RefundNo>,
    now: DateTime<Utc>,
) -> Result<Vec<Fact>, Rejection> {
    // Escalation is exactly what next_action asks for, once it is due.
    match next_action(state) {
        Some((
            Action::EscalateToManualReview {
                refund_no: due_refund,
                reason,
            },
            due_at,
        )) if due_refund.as_ref() == refund_no && due_at <= now => {
            Ok(vec![Fact::ManualReviewRequired(ManualReviewRequired {
                refund_no: due_refund,
                reason,
                codes: ChannelCodes::new(),
            })])
        }
        _ if matches!(state, PaymentState::Initial) => Err(Rejection::OrderNotFound),
        _ => Err(Rejection::NothingToEscalate),
    }
}

/// An operator's verdict, recorded as it is given, once the order (or the
/// refund) is in manual review. A verdict may add what the ledger does not
/// know, never deny what it recorded from the channel: an order recorded as
/// paid is not "closed" (no money moved), and a payment is confirmed only
/// with the recorded trade number and time.
fn resolve(
    state: &PaymentState,
    resolution: &Resolution,
    note: &str,
    resolved_by: &str,
) -> Result<Vec<Fact>, Rejection> {
    match (state, resolution) {
        (PaymentState::Initial, _) => return Err(Rejection::OrderNotFound),
        (
            PaymentState::ManualReview(review),
            Resolution::Paid {
                channel_trade_no,
                paid_at,
            },
        ) => {
            if review.paid.as_ref().is_some_and(|recorded| {
                recorded.channel_trade_no != *channel_trade_no || recorded.paid_at != *paid_at
            }) {
                return Err(Rejection::ResolutionContradictsLedger);
            }
        }
        (PaymentState::ManualReview(review), Resolution::Closed) => {
            if review.paid.is_some() {
                return Err(Rejection::ResolutionContradictsLedger);
            }
        }
        (PaymentState::ManualReview(_), Resolution::Reversed) => {}
        (
            PaymentState::Paid(paid),
            Resolution::RefundSucceeded { refund_no, .. } | Resolution::RefundFailed { refund_no },
        ) => match paid.refund(refund_no) {
            None => return Err(Rejection::RefundNotFound),
            Some(refund) if !matches!(refund.stage, RefundStage::ManualReview { .. }) => {
                return Err(Rejection::NotInManualReview);
            }
            Some(_) => {}
        },
        // Only a paid order has refunds.
        (_, Resolution::RefundSucceeded { .. } | Resolution::RefundFailed { .. }) => {
            return Err(Rejection::RefundNotFound);
        }
        _ => return Err(Rejection::NotInManualReview),
    }
    Ok(vec![Fact::OperatorResolved(OperatorResolved {
        resolution: resolution.clone(),
        note: note.to_owned(),
        resolved_by: resolved_by.to_owned(),
    })])
}

fn match_statement_line(
    state: &PaymentState,
    line: &StatementLine,
) -> Result<Vec<Fact>, Rejection> {
    let order = state.order().ok_or(Rejection::OrderNotFound)?;
    if order.matched_lines.contains(line) {
        return Ok(vec![]);
    }
    let agrees = line.channel == order.channel
        && match line.kind {
            StatementLineKind::Payment => {
                line.amount == order.amount
                    && match state.paid_facts() {
                        Some(paid) => paid.channel_trade_no == line.channel_trade_no,
                        // Paid between the last query and the revoke: only the revoke saw it.
                        None => matches!(state, PaymentState::Reversed(_)),
                    }
            }
            StatementLineKind::Reversal => {
                line.amount == order.amount && matches!(state, PaymentState::Reversed(_))
            }
            StatementLineKind::Refund => match (state, &line.refund_no) {
                (PaymentState::Paid(paid), Some(refund_no)) => {
                    paid.refund(refund_no).is_some_and(|refund| {
                        refund.amount == line.amount
                            && refund.status() == super::state::RefundStatus::Succeeded
                    })
                }
                _ => false,
            },
        };
    if !agrees {
        return Err(Rejection::StatementLineDisagrees);
    }
    Ok(vec![Fact::StatementLineMatched(StatementLineMatched {
        line: line.clone(),
    })])
}

fn settle_revoke(
    state: &PaymentState,
    money_moved: bool,
    statement_date: NaiveDate,
) -> Result<Vec<Fact>, Rejection> {
    match state {
        PaymentState::Initial => Err(Rejection::OrderNotFound),
        PaymentState::RevokedUnconfirmed(_) => Ok(vec![Fact::RevokeSettled(RevokeSettled {
            money_moved,
            by: SettledBy::Statement {
                date: statement_date,
            },
        })]),
        _ => Err(Rejection::NothingToSettle),
    }
}

fn revoke_requested(
    reason: RevokeReason,
    revoke_not_before: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Fact {
    Fact::RevokeRequested(RevokeRequested {
        reason,
        not_before: revoke_not_before.max(now),
    })
}

/// A payment fact from an answer; when the channel did not state the
/// payment's time, the time the answer was recorded, and says so.
fn paid(
    channel_trade_no: &str,
    paid_at: Option<DateTime<Utc>>,
    source: PaidSource,
    codes: ChannelCodes,
    now: DateTime<Utc>,
) -> Fact {
    Fact::Paid(Paid {
        channel_trade_no: channel_trade_no.to_owned(),
        paid_at: paid_at.unwrap_or(now),
        paid_at_stated: paid_at.is_some(),
        source,
        codes,
    })
}

fn noted_fact(answer: NotedAnswer, codes: &ChannelCodes) -> Fact {
    Fact::AnswerNoted(AnswerNoted {
        answer,
        codes: codes.clone(),
    })
}

/// An answer the order was no longer waiting for: it is kept, and when it
/// proves a payment the ledger had not seen, the payment is recorded where
/// it still changes the outcome: during a revoke (which then returns it),
/// after a revoke whose money movement was unconfirmed (reversed), or
/// while the order is still paying.
fn late_answer(
    state: &PaymentState,
    noted: NotedAnswer,
    codes: &ChannelCodes,
    proof_of_payment: super::outcome::ProofOfPayment<'_>,
    source: PaidSource,
    now: DateTime<Utc>,
) -> Vec<Fact> {
    let mut facts = vec![noted_fact(noted, codes)];
    let unseen_payment_matters = match state {
        PaymentState::Revoking(revoking) => {
            revoking.paid.is_none()
                && !matches!(revoking.next, RevokeNext::QueryAfterWindowClosed { .. })
        }
        PaymentState::RevokedUnconfirmed(_) => true,
        // A second answer to the pay call (never expected) that proves the payment.
        PaymentState::Paying(_) => true,
        _ => false,
    };
    if let (Some((channel_trade_no, paid_at)), true) = (proof_of_payment, unseen_payment_matters) {
        facts.push(paid(channel_trade_no, paid_at, source, codes.clone(), now));
    }
    facts
}

/// The refund number of the refund in full that replaces a revoke the
/// channel refused (its window closed): derived from the order number, so
/// deciding it again gives the same number (the channel's idempotency key).
fn window_refund_no(order_no: &crate::ids::OrderNo) -> crate::ids::RefundNo {
    let text = order_no.as_str();
    let tail = &text[text.len().saturating_sub(30)..];
    crate::ids::RefundNo::parse(&format!("RV{tail}")).unwrap_or_else(|_| {
        unreachable!("RV and an order number's characters make a refund number")
    })
}

fn status_of(state: &PaymentState) -> PaymentStatus {
    state.status().unwrap_or(PaymentStatus::Paying)
}

/// The facts as events: at `at`, caused by `command` (its id and key name).
fn stamp(facts: Vec<Fact>, command: &Command, at: DateTime<Utc>) -> Vec<Event> {
    facts
        .into_iter()
        .map(|fact| Event {
            at,
            command_id: command.id,
            key_name: command.key_name.clone(),
            fact,
        })
        .collect()
}
