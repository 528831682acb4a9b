//! The money invariants of a payment (and the one of a statement day's
//! stream, and the one of the ledger's environment mark), written once. `evolve` checks every
//! event against them before applying it (so the production path refuses an
//! event that breaks one), the property tests assert them after every
//! step, and `paycode verify` reports them for every stored event.
//!
//! Checked in this order, the first broken one reported:
//! 1. a stream starts with `Submitted`, and has only one;
//! 2. after a terminal status (closed, reversed, refunded) only statement
//!    matches and late channel answers (`AnswerNoted`) are recorded;
//! 3. refund facts belong to a paid order and to a refund it has (a new
//!    refund number for `RefundRequested`), and `Refunded` returns exactly
//!    the amount requested;
//! 4. the refunds holding the balance (every refund but a failed one) never
//!    add up to more than the payment.
//!
//! An event that passes these but has no transition in its state (a
//! second `Paid`, a revoke answer on a paid order) is refused by `evolve`
//! itself as [`Violation::DoesNotFit`].

use chrono::NaiveDate;

use crate::ids::RefundNo;
use crate::money::{Money, Total};
use crate::payment::{Event, Fact, PaidOrder, PaymentState, PaymentStatus, Resolution};

/// A broken invariant: the event cannot be part of a payment's history.
/// `evolve` refuses it; `paycode verify` reports it at its stream and version.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Violation {
    /// A payment stream does not start with `Submitted`.
    #[error("{event_type} before Submitted")]
    NotSubmittedFirst { event_type: &'static str },
    /// `Submitted` again on an order that exists.
    #[error("Submitted on an order that exists")]
    SubmittedAgain,
    /// An event after a terminal status other than a statement match or a noted answer.
    #[error("{event_type} after the terminal status {}", status.as_str())]
    AfterTerminal {
        status: PaymentStatus,
        event_type: &'static str,
    },
    /// A refund fact on an order that is not paid.
    #[error("{event_type} on an order that is {}, not paid", status.map_or("not submitted", PaymentStatus::as_str))]
    RefundWithoutPayment {
        status: Option<PaymentStatus>,
        event_type: &'static str,
    },
    /// A refund fact for a refund number the order does not have.
    #[error("refund {refund_no} was never requested")]
    UnknownRefund { refund_no: RefundNo },
    /// `RefundRequested` for a refund number already in use.
    #[error("refund {refund_no} requested twice")]
    RefundNoReused { refund_no: RefundNo },
    /// `Refunded` for another amount than the refund requested.
    #[error("refund {refund_no} refunded {refunded}, but {requested} was requested")]
    RefundedAmountDiffers {
        refund_no: RefundNo,
        requested: Money,
        refunded: Money,
    },
    /// The refunds holding the balance would add up to more than the payment.
    #[error("refunds of {refunds} exceed the payment of {paid}")]
    RefundsExceedPayment { refunds: Total, paid: Money },
    /// A statement day's stream records a report of another channel or day.
    #[error("a report of {report_day} on the stream of {stream_day}")]
    ReportOfAnotherDay {
        stream_day: NaiveDate,
        report_day: NaiveDate,
    },
    /// The ledger's environment mark contradicts an earlier one (another
    /// environment, or another channel account for a merchant): a mark
    /// binds once and never changes.
    #[error("the environment mark contradicts an earlier one: {what}")]
    EnvironmentContradicted { what: String },
    /// The event has no transition from the order's status.
    #[error("{event_type} does not fit an order that is {}", status.map_or("not submitted", PaymentStatus::as_str))]
    DoesNotFit {
        status: Option<PaymentStatus>,
        event_type: &'static str,
    },
}

impl Violation {
    /// A stable snake_case name of the invariant, for machine-readable
    /// reports (`paycode verify --format json`).
    pub fn code(&self) -> &'static str {
        match self {
            Violation::NotSubmittedFirst { .. } => "not_submitted_first",
            Violation::SubmittedAgain => "submitted_again",
            Violation::AfterTerminal { .. } => "after_terminal",
            Violation::RefundWithoutPayment { .. } => "refund_without_payment",
            Violation::UnknownRefund { .. } => "unknown_refund",
            Violation::RefundNoReused { .. } => "refund_no_reused",
            Violation::RefundedAmountDiffers { .. } => "refunded_amount_differs",
            Violation::RefundsExceedPayment { .. } => "refunds_exceed_payment",
            Violation::ReportOfAnotherDay { .. } => "report_of_another_day",
            Violation::EnvironmentContradicted { .. } => "environment_contradicted",
            Violation::DoesNotFit { .. } => "does_not_fit",
        }
    }
}

/// The invariants that recording `event` on an order in `before` must keep.
pub fn check_event(before: &PaymentState, event: &Event) -> Result<(), Violation> {
    let event_type = event.fact.stored_name();
    match (before, &event.fact) {
        (PaymentState::Initial, Fact::Submitted(_)) => return Ok(()),
        (PaymentState::Initial, _) => return Err(Violation::NotSubmittedFirst { event_type }),
        (_, Fact::Submitted(_)) => return Err(Violation::SubmittedAgain),
        _ => {}
    }
    let status = before.status();
    if let Some(status) = status.filter(|status| status.is_terminal())
        && !matches!(
            event.fact,
            Fact::StatementLineMatched(_) | Fact::AnswerNoted(_)
        )
    {
        return Err(Violation::AfterTerminal { status, event_type });
    }
    let Some(refund_no) = refund_of(&event.fact) else {
        return Ok(());
    };
    let PaymentState::Paid(paid) = before else {
        return Err(Violation::RefundWithoutPayment { status, event_type });
    };
    match (&event.fact, paid.refund(refund_no)) {
        (Fact::RefundRequested(_), Some(_)) => Err(Violation::RefundNoReused {
            refund_no: refund_no.clone(),
        }),
        (Fact::RefundRequested(requested), None) => {
            let reserved =
                reserved_total(paid).and_then(|total| total.checked_plus(requested.amount));
            match reserved {
                Some(total) if total.remaining_of(paid.order.amount).is_some() => Ok(()),
                _ => Err(Violation::RefundsExceedPayment {
                    refunds: reserved.unwrap_or(Total::from(requested.amount)),
                    paid: paid.order.amount,
                }),
            }
        }
        (_, None) => Err(Violation::UnknownRefund {
            refund_no: refund_no.clone(),
        }),
        (Fact::Refunded(refunded), Some(refund)) if refunded.amount != refund.amount => {
            Err(Violation::RefundedAmountDiffers {
                refund_no: refund_no.clone(),
                requested: refund.amount,
                refunded: refunded.amount,
            })
        }
        (_, Some(_)) => Ok(()),
    }
}

/// The invariants every state must hold: the refunds holding the balance,
/// and so the refunds that succeeded, stay within the payment.
pub fn check_state(state: &PaymentState) -> Result<(), Violation> {
    let PaymentState::Paid(paid) = state else {
        return Ok(());
    };
    match reserved_total(paid) {
        Some(total) if total.remaining_of(paid.order.amount).is_some() => Ok(()),
        reserved => Err(Violation::RefundsExceedPayment {
            refunds: reserved.unwrap_or(Total::from(paid.order.amount)),
            paid: paid.order.amount,
        }),
    }
}

/// The sum of the refunds holding the balance (every one but a failed one).
fn reserved_total(paid: &PaidOrder) -> Option<Total> {
    Total::sum(
        paid.refunds
            .iter()
            .filter(|refund| refund.reserves_balance())
            .map(|refund| refund.amount),
    )
}

/// The refund a fact is about, if it is a refund fact (as `evolve` files them).
pub fn refund_of(fact: &Fact) -> Option<&RefundNo> {
    match fact {
        Fact::RefundRequested(requested) => Some(&requested.refund_no),
        Fact::RefundPending(pending) => Some(&pending.refund_no),
        Fact::Refunded(refunded) => Some(&refunded.refund_no),
        Fact::RefundFailed(failed) => Some(&failed.refund_no),
        Fact::ManualReviewRequired(review) => review.refund_no.as_ref(),
        Fact::OperatorResolved(resolved) => match &resolved.resolution {
            Resolution::RefundSucceeded { refund_no, .. }
            | Resolution::RefundFailed { refund_no } => Some(refund_no),
            _ => None,
        },
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    //! Each invariant, shown by the event `evolve` refuses and the state it
    //! hands back unchanged.

    use uuid::Uuid;

    use super::*;
    use crate::auth_code::AuthCode;
    use crate::channel::ChannelCodes;
    use crate::decider::Decider;
    use crate::ids::{CommandId, MerchantId, OrderNo};
    use crate::payment::specification::{money, refund_no, t as at};
    use crate::payment::{
        ChannelAnswer, Command, CommandKind, PayOutcome, PaymentDecider, RefundFailed,
        RefundRequested, Refunded, RequestRefund, SubmitPayment, evolve,
    };

    /// The state after each command, decided by the real decider.
    fn decided(commands: Vec<CommandKind>) -> (PaymentState, Vec<Event>) {
        let decider = PaymentDecider::default();
        let mut state = PaymentState::Initial;
        let mut history = Vec::new();
        for (index, kind) in commands.into_iter().enumerate() {
            let command = Command::new(CommandId(Uuid::from_u128(index as u128 + 1)), kind);
            for event in decider
                .decide(&state, &command, at(i64::try_from(index).unwrap()))
                .unwrap()
            {
                state = evolve(state, &event).unwrap();
                history.push(event);
            }
        }
        (state, history)
    }

    fn submit() -> CommandKind {
        CommandKind::SubmitPayment(SubmitPayment {
            merchant_id: MerchantId::parse("demo").unwrap(),
            order_no: OrderNo::parse("A1").unwrap(),
            auth_code: AuthCode::parse("134567890123456789").unwrap(),
            auth_code_fingerprint: None,
            amount: money("10.00"),
            subject: "Coffee".into(),
        })
    }

    fn paid() -> CommandKind {
        CommandKind::RecordPayAnswer(ChannelAnswer::new(PayOutcome::Paid {
            channel_trade_no: "4200000001".into(),
            paid_at: Some(at(1)),
        }))
    }

    fn refund(no: &str, amount: &str) -> CommandKind {
        CommandKind::RequestRefund(RequestRefund {
            refund_no: refund_no(no),
            amount: money(amount),
            reason: "returned".into(),
        })
    }

    fn forged(fact: Fact) -> Event {
        Event {
            at: at(100),
            command_id: CommandId(Uuid::from_u128(999)),
            key_name: None,
            fact,
        }
    }

    fn refused(state: &PaymentState, fact: Fact) -> Violation {
        let refused = evolve(state.clone(), &forged(fact)).unwrap_err();
        assert_eq!(
            &refused.state, state,
            "a refused event leaves the state as it was"
        );
        refused.violation
    }

    #[test]
    fn refunds_may_never_add_up_to_more_than_the_payment() {
        // 4.00 then 7.00 of a 10.00 payment: the second is refused, naming the sum.
        let (state, _) = decided(vec![submit(), paid(), refund("R1", "4.00")]);
        let violation = refused(
            &state,
            Fact::RefundRequested(RefundRequested {
                refund_no: refund_no("R2"),
                amount: money("7.00"),
                reason: "forged".into(),
                first_query_at: at(101),
                settle_by: at(200),
            }),
        );
        assert_eq!(
            violation,
            Violation::RefundsExceedPayment {
                refunds: Total::sum([money("4.00"), money("7.00")]).unwrap(),
                paid: money("10.00"),
            }
        );
        assert_eq!(
            violation.to_string(),
            "refunds of 11.00 exceed the payment of 10.00"
        );
        assert_eq!(check_state(&state), Ok(()));
    }

    #[test]
    fn a_refund_returns_exactly_what_was_requested_of_a_refund_the_order_has() {
        // Refunded 3.00 of a 2.00 refund, and a failure of a refund never requested.
        let (state, _) = decided(vec![submit(), paid(), refund("R1", "2.00")]);
        let refunded = |no: &str, amount: &str| {
            Fact::Refunded(Refunded {
                refund_no: refund_no(no),
                amount: money(amount),
                channel_refund_no: None,
                refunded_at: at(100),
                codes: ChannelCodes::new(),
            })
        };
        assert_eq!(
            refused(&state, refunded("R1", "3.00")),
            Violation::RefundedAmountDiffers {
                refund_no: refund_no("R1"),
                requested: money("2.00"),
                refunded: money("3.00"),
            }
        );
        assert_eq!(
            refused(
                &state,
                Fact::RefundFailed(RefundFailed {
                    refund_no: refund_no("R9"),
                    code: "FAIL".into(),
                    codes: ChannelCodes::new(),
                })
            ),
            Violation::UnknownRefund {
                refund_no: refund_no("R9")
            }
        );
        assert!(evolve(state, &forged(refunded("R1", "2.00"))).is_ok());
    }

    #[test]
    fn nothing_but_a_statement_match_follows_a_terminal_status() {
        // A fully refunded order takes no second payment.
        let (state, _) = decided(vec![submit(), paid(), refund("R1", "10.00")]);
        let refund_succeeded = forged(Fact::Refunded(Refunded {
            refund_no: refund_no("R1"),
            amount: money("10.00"),
            channel_refund_no: None,
            refunded_at: at(50),
            codes: ChannelCodes::new(),
        }));
        let state = evolve(state, &refund_succeeded).unwrap();
        assert_eq!(state.status(), Some(PaymentStatus::Refunded));
        let again = refused(
            &state,
            Fact::Paid(crate::payment::Paid {
                channel_trade_no: "4200000002".into(),
                paid_at: at(60),
                paid_at_stated: true,
                source: crate::payment::PaidSource::Query,
                codes: ChannelCodes::new(),
            }),
        );
        assert_eq!(
            again,
            Violation::AfterTerminal {
                status: PaymentStatus::Refunded,
                event_type: "Paid"
            }
        );
    }

    #[test]
    fn an_event_with_no_transition_is_refused_rather_than_ignored() {
        // A second Paid on a paid order does not fit; nor does any event before Submitted.
        let (state, history) = decided(vec![submit(), paid()]);
        let paid_again = history[1].fact.clone();
        assert_eq!(
            refused(&state, paid_again.clone()),
            Violation::DoesNotFit {
                status: Some(PaymentStatus::Paid),
                event_type: "Paid"
            }
        );
        assert_eq!(
            refused(&PaymentState::Initial, paid_again),
            Violation::NotSubmittedFirst { event_type: "Paid" }
        );
        assert_eq!(
            refused(&state, history[0].fact.clone()),
            Violation::SubmittedAgain
        );
        assert!(PaymentDecider::default().replay(&history).is_ok());
    }
}
