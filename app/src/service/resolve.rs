//! Operator resolutions: a person settles an order (or one refund) that
//! automatic handling gave up on. One path for `POST
//! /v1/payments/{order_no}/resolve`, `POST
//! /v1/payments/{order_no}/refunds/{refund_no}/resolve` and `paycode
//! resolve`: [`Verdict::parse`] checks the operator's words, [`resolution`]
//! turns them into the domain's `Resolution` against the order's state (a
//! pure function), and [`resolve`] records it through the ledger as
//! `OperatorResolved`, naming who resolved it and why.
//!
//! The rules (docs/rules.md, "Operator resolution"):
//! - `paid` confirms the payment with the operator's `channel_trade_no` and
//!   `paid_at` (by default the time of the resolution). When the ledger
//!   already recorded the payment, the trade number must be the recorded
//!   one and the time is the recorded one.
//! - `not_paid` closes an order when no money is known to have moved
//!   (`Closed`). When money is known to have moved (the ledger recorded the
//!   payment; an answer it noted without acting on it showed a payment, a
//!   refund or a revoke that returned money; the channel reported the trade
//!   refunded outside the ledger; or the statement listed the payment of a
//!   revoked order), "not paid" can only mean it came back: `Reversed`.
//!   Except when the ledger recorded the payment and the channel refused its
//!   revoke for good: then nothing has returned the money, and the verdict
//!   is refused (`resolution_contradicts_ledger`; resolve `paid` and refund).
//! - A refund is `succeeded` (at `refunded_at`, by default the time of the
//!   resolution) or `failed` (its amount is refundable again).

use chrono::{DateTime, SecondsFormat, Utc};
use paycode_adapters::ids::{IdSource, RandomIds};
use paycode_domain::payment::{
    Command, CommandKind, Fact, ManualReviewReason, NotedAnswer, PayOutcome, PaymentDecider,
    PaymentState, QueryOutcome, RefundStage, Rejection, Resolution, RevokeOutcome, RevokeResult,
};
use paycode_domain::{MerchantId, OrderNo, RefundNo};

use crate::service::ledger::{Ledger, OrderHistory, PaymentLedgerError};
use crate::service::runtime::Runtime;

/// Longest reason accepted, in characters.
pub const REASON_MAX_CHARS: usize = 500;
/// Longest channel trade number accepted (Alipay's `trade_no` is at most 64).
pub const CHANNEL_TRADE_NO_MAX_CHARS: usize = 64;
/// The name `paycode resolve` records as `resolved_by`.
pub const CLI_NAME: &str = "cli";

/// What is being resolved: the order itself, or one of its refunds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subject {
    Order,
    Refund(RefundNo),
}

impl Subject {
    /// The name of the field that says when the money moved.
    pub fn time_field(&self) -> &'static str {
        match self {
            Subject::Order => "paid_at",
            Subject::Refund(_) => "refunded_at",
        }
    }
}

/// The operator's finding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The customer paid; the merchant keeps the money.
    Paid,
    /// The merchant does not hold the customer's money for this order.
    NotPaid,
    /// The refund reached the customer.
    Succeeded,
    /// The refund did not happen.
    Failed,
}

impl Outcome {
    /// The words the operator may use for `subject`.
    pub fn words(subject: &Subject) -> [&'static str; 2] {
        match subject {
            Subject::Order => ["paid", "not_paid"],
            Subject::Refund(_) => ["succeeded", "failed"],
        }
    }

    fn parse(subject: &Subject, word: &str) -> Option<Outcome> {
        Some(match (subject, word) {
            (Subject::Order, "paid") => Outcome::Paid,
            (Subject::Order, "not_paid") => Outcome::NotPaid,
            (Subject::Refund(_), "succeeded") => Outcome::Succeeded,
            (Subject::Refund(_), "failed") => Outcome::Failed,
            _ => return None,
        })
    }
}

/// The operator's words as given (a request body's fields, or the command
/// line's options), before they are checked.
#[derive(Debug, Clone, Copy, Default)]
pub struct Words<'a> {
    pub outcome: Option<&'a str>,
    pub channel_trade_no: Option<&'a str>,
    /// `paid_at` for an order, `refunded_at` for a refund (RFC 3339).
    pub at: Option<&'a str>,
    pub reason: Option<&'a str>,
}

/// A checked verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub subject: Subject,
    pub outcome: Outcome,
    /// Only with `paid`, and then always.
    pub channel_trade_no: Option<String>,
    /// When the money moved, if the operator says; only with `paid` and `succeeded`.
    pub at: Option<DateTime<Utc>>,
    /// Why: recorded as the event's `note`.
    pub reason: String,
}

/// Why a resolution was refused. Nothing was written.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    /// A word of the verdict is missing or invalid, or, for `paid_at` and
    /// `refunded_at`, outside the order's life. HTTP 422.
    #[error("{field}: {message}")]
    Invalid {
        field: &'static str,
        code: String,
        message: String,
    },
    /// The verdict denies what the ledger recorded from the channel. HTTP 409
    /// `resolution_contradicts_ledger`.
    #[error("{field}: {message}")]
    Contradicts {
        field: &'static str,
        message: String,
    },
    /// The ledger refused (no such order or refund, not in review) or failed.
    #[error(transparent)]
    Ledger(#[from] PaymentLedgerError),
}

impl ResolveError {
    fn invalid(field: &'static str, message: impl Into<String>) -> Self {
        ResolveError::Invalid {
            field,
            code: format!("invalid_{field}"),
            message: message.into(),
        }
    }

    fn missing(field: &'static str) -> Self {
        ResolveError::Invalid {
            field,
            code: format!("missing_{field}"),
            message: format!("{field} is required"),
        }
    }

    fn contradicts(field: &'static str, message: impl Into<String>) -> Self {
        ResolveError::Contradicts {
            field,
            message: message.into(),
        }
    }

    fn rejected(rejection: Rejection) -> Self {
        ResolveError::Ledger(PaymentLedgerError::Rejected(rejection))
    }
}

impl Verdict {
    /// Checks the operator's words for `subject`, field by field in the
    /// order `outcome`, `channel_trade_no`, the time, `reason`.
    pub fn parse(subject: Subject, words: Words<'_>) -> Result<Verdict, ResolveError> {
        let word = words.outcome.ok_or(ResolveError::missing("outcome"))?;
        let outcome = Outcome::parse(&subject, word).ok_or_else(|| {
            let [yes, no] = Outcome::words(&subject);
            ResolveError::invalid("outcome", format!("outcome must be {yes:?} or {no:?}"))
        })?;
        let channel_trade_no = match (outcome, words.channel_trade_no) {
            (Outcome::Paid, None) => return Err(ResolveError::missing("channel_trade_no")),
            (Outcome::Paid, Some(number)) => {
                let fits = (1..=CHANNEL_TRADE_NO_MAX_CHARS).contains(&number.len())
                    && number
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
                if !fits {
                    return Err(ResolveError::invalid(
                        "channel_trade_no",
                        format!(
                            "channel_trade_no must be 1-{CHANNEL_TRADE_NO_MAX_CHARS} characters of A-Z a-z 0-9 _ -"
                        ),
                    ));
                }
                Some(number.to_owned())
            }
            (_, None) => None,
            (_, Some(_)) => {
                return Err(ResolveError::invalid(
                    "channel_trade_no",
                    "channel_trade_no goes only with outcome \"paid\"",
                ));
            }
        };
        let time_field = subject.time_field();
        let at = match (outcome, words.at) {
            (_, None) => None,
            (Outcome::Paid | Outcome::Succeeded, Some(text)) => Some(
                DateTime::parse_from_rfc3339(text)
                    .map_err(|_| {
                        ResolveError::invalid(
                            time_field,
                            format!(
                                "{time_field} must be an RFC 3339 time, such as 2026-11-22T10:00:01Z"
                            ),
                        )
                    })?
                    .with_timezone(&Utc),
            ),
            (Outcome::NotPaid | Outcome::Failed, Some(_)) => {
                let [moved, _] = Outcome::words(&subject);
                return Err(ResolveError::invalid(
                    time_field,
                    format!("{time_field} goes only with outcome {moved:?}"),
                ));
            }
        };
        let reason = words.reason.ok_or(ResolveError::missing("reason"))?;
        if reason.trim().is_empty()
            || reason.chars().count() > REASON_MAX_CHARS
            || reason.chars().any(char::is_control)
        {
            return Err(ResolveError::invalid(
                "reason",
                format!(
                    "reason must be 1-{REASON_MAX_CHARS} characters of text, not only spaces, on one line"
                ),
            ));
        }
        Ok(Verdict {
            subject,
            outcome,
            channel_trade_no,
            at,
            reason: reason.to_owned(),
        })
    }
}

/// Whether the order's history shows that money moved beyond what its state
/// holds: a payment the ledger recorded, or an answer it noted without
/// acting on it (one it was no longer waiting for) that showed a payment,
/// a trade refunded, or a revoke that returned money. Such an answer may
/// come while an order is in review, or during a revoke whose window had
/// closed; the order's state does not keep it, its history does.
pub fn money_moved_in<'a>(facts: impl IntoIterator<Item = &'a Fact>) -> bool {
    facts.into_iter().any(|fact| match fact {
        Fact::Paid(_) => true,
        Fact::AnswerNoted(noted) => matches!(
            &noted.answer,
            NotedAnswer::Pay {
                outcome: PayOutcome::Paid { .. }
            } | NotedAnswer::Query {
                outcome: QueryOutcome::Paid { .. } | QueryOutcome::RefundedElsewhere
            } | NotedAnswer::Revoke {
                outcome: RevokeOutcome::Done {
                    result: RevokeResult::Refunded
                }
            }
        ),
        _ => false,
    })
}

/// The `Resolution` the verdict means for the order in `state`, resolved at
/// `now` (see the module's rules), or why it cannot be given. `money_moved`
/// says whether the order's history showed money moving
/// ([`money_moved_in`]).
pub fn resolution(
    state: &PaymentState,
    money_moved: bool,
    verdict: &Verdict,
    now: DateTime<Utc>,
) -> Result<Resolution, ResolveError> {
    let order = state
        .order()
        .ok_or(ResolveError::rejected(Rejection::OrderNotFound))?;
    let time_field = verdict.subject.time_field();
    // When the money moved: not before it could have, not after the verdict.
    let moved_at = |earliest: DateTime<Utc>| -> Result<DateTime<Utc>, ResolveError> {
        match verdict.at {
            None => Ok(now),
            Some(at) if earliest <= at && at <= now => Ok(at),
            Some(_) => Err(ResolveError::invalid(
                time_field,
                format!(
                    "{time_field} must lie between {} and now",
                    earliest.to_rfc3339_opts(SecondsFormat::AutoSi, true)
                ),
            )),
        }
    };
    match &verdict.subject {
        Subject::Order => {
            let PaymentState::ManualReview(review) = state else {
                return Err(ResolveError::rejected(Rejection::NotInManualReview));
            };
            match verdict.outcome {
                Outcome::Paid => {
                    let channel_trade_no = verdict.channel_trade_no.clone().unwrap_or_default();
                    match &review.paid {
                        None => Ok(Resolution::Paid {
                            paid_at: moved_at(order.submitted_at)?,
                            channel_trade_no,
                        }),
                        Some(recorded) if recorded.channel_trade_no != channel_trade_no => {
                            Err(ResolveError::contradicts(
                                "channel_trade_no",
                                format!(
                                    "the ledger recorded this payment as channel trade {}",
                                    recorded.channel_trade_no
                                ),
                            ))
                        }
                        Some(recorded) if verdict.at.is_some_and(|at| at != recorded.paid_at) => {
                            Err(ResolveError::contradicts(
                                "paid_at",
                                format!(
                                    "the ledger recorded this payment at {}",
                                    recorded
                                        .paid_at
                                        .to_rfc3339_opts(SecondsFormat::AutoSi, true)
                                ),
                            ))
                        }
                        Some(recorded) => Ok(Resolution::Paid {
                            channel_trade_no,
                            paid_at: recorded.paid_at,
                        }),
                    }
                }
                Outcome::NotPaid => match (&review.paid, &review.reason) {
                    (Some(_), ManualReviewReason::RevokeRejected { code }) => {
                        Err(ResolveError::contradicts(
                            "outcome",
                            format!(
                                "the ledger recorded this payment and the channel refused its revoke for good ({code}); resolve it \"paid\" and refund it"
                            ),
                        ))
                    }
                    (Some(_), _)
                    | (
                        None,
                        ManualReviewReason::RefundedOutsideLedger
                        | ManualReviewReason::StatementContradictsRevoke,
                    ) => Ok(Resolution::Reversed),
                    (None, _) if money_moved => Ok(Resolution::Reversed),
                    (None, _) => Ok(Resolution::Closed),
                },
                Outcome::Succeeded | Outcome::Failed => {
                    unreachable!("Verdict::parse takes refund words for refunds only")
                }
            }
        }
        Subject::Refund(refund_no) => {
            let refund = match state {
                PaymentState::Paid(paid) => paid.refund(refund_no),
                _ => None,
            }
            .ok_or(ResolveError::rejected(Rejection::RefundNotFound))?;
            if !matches!(refund.stage, RefundStage::ManualReview { .. }) {
                return Err(ResolveError::rejected(Rejection::NotInManualReview));
            }
            match verdict.outcome {
                Outcome::Succeeded => Ok(Resolution::RefundSucceeded {
                    refund_no: refund_no.clone(),
                    refunded_at: moved_at(refund.requested_at)?,
                }),
                Outcome::Failed => Ok(Resolution::RefundFailed {
                    refund_no: refund_no.clone(),
                }),
                Outcome::Paid | Outcome::NotPaid => {
                    unreachable!("Verdict::parse takes order words for orders only")
                }
            }
        }
    }
}

/// Where a resolution is recorded.
#[derive(Debug, Clone, Copy)]
pub enum Via<'a> {
    /// The running service: the runtime records it (metrics, waiters, timers).
    Runtime(&'a Runtime),
    /// The ledger alone (the command line, beside or without a service).
    Ledger(&'a Ledger<PaymentDecider>),
}

/// Resolves the order `order_no` of `merchant` (or its refund) as `verdict`
/// says, recording `resolved_by` (a name, never a secret). Returns the
/// order's history after it.
pub async fn resolve(
    via: Via<'_>,
    merchant: &MerchantId,
    order_no: &OrderNo,
    verdict: &Verdict,
    resolved_by: &str,
) -> Result<OrderHistory, ResolveError> {
    let ledger = match via {
        Via::Runtime(runtime) => runtime.ledger(),
        Via::Ledger(ledger) => ledger,
    };
    let history = ledger.history(merchant, order_no).await?;
    // A state in review changes only by a verdict: if another lands first,
    // the decider refuses this one as not in review.
    let money_moved = money_moved_in(history.events.iter().map(|e| &e.event.fact));
    let resolution = resolution(&history.state, money_moved, verdict, ledger.clock().now())?;
    let kind = CommandKind::Resolve {
        resolution,
        note: verdict.reason.clone(),
        resolved_by: resolved_by.to_owned(),
    };
    Ok(match via {
        Via::Runtime(runtime) => {
            // Through the API: the event names the key in its envelope too.
            let command = Command::new(runtime.new_command_id(), kind).by_key(resolved_by);
            runtime.command(merchant, order_no, command).await?
        }
        Via::Ledger(ledger) => {
            let command = Command::new(RandomIds.command_id(), kind);
            ledger
                .execute_on_order(merchant, order_no, &command)
                .await?
                .history
        }
    })
}

#[cfg(test)]
mod tests {
    use chrono::{Duration, TimeZone};
    use paycode_domain::payment::{
        ChannelAnswer, CommandKind, PayOutcome, RequestRefund, RevokeOutcome, RevokeReason,
        SubmitPayment, evolve,
    };
    use paycode_domain::{AuthCode, CommandId, Decider};

    use super::*;

    fn t(secs: i64) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 22, 2, 0, 0).unwrap() + Duration::seconds(secs)
    }

    /// The state after `commands`, each decided one second after the one before.
    fn state_after(commands: Vec<CommandKind>) -> PaymentState {
        let decider = PaymentDecider::default();
        let mut state = PaymentState::Initial;
        for (n, kind) in commands.into_iter().enumerate() {
            let now = t(i64::try_from(n).unwrap());
            let command = Command::new(CommandId(uuid::Uuid::from_u128(n as u128)), kind);
            for event in decider.decide(&state, &command, now).unwrap() {
                state = evolve(state, &event).unwrap();
            }
        }
        state
    }

    fn submit() -> CommandKind {
        CommandKind::SubmitPayment(SubmitPayment {
            merchant_id: MerchantId::parse("demo").unwrap(),
            order_no: OrderNo::parse("A1").unwrap(),
            auth_code: AuthCode::parse("134567890123456789").unwrap(),
            auth_code_fingerprint: None,
            amount: "10.00".parse().unwrap(),
            subject: "Coffee".into(),
        })
    }

    fn paid() -> CommandKind {
        CommandKind::RecordPayAnswer(ChannelAnswer::new(PayOutcome::Paid {
            channel_trade_no: "4200000001".into(),
            paid_at: Some(t(1)),
        }))
    }

    fn revoke_answer(outcome: RevokeOutcome) -> CommandKind {
        CommandKind::RecordRevokeAnswer(ChannelAnswer::new(outcome))
    }

    /// A paid order the merchant revoked; the revoke is answered `answer`
    /// (once for a definitive answer, five times for "retry").
    fn paid_then_revoke_stuck(answer: &RevokeOutcome) -> PaymentState {
        let mut commands = vec![
            submit(),
            paid(),
            CommandKind::RequestRevoke {
                reason: RevokeReason::MerchantRequested,
            },
        ];
        let calls = if matches!(answer, RevokeOutcome::MustRetry { .. }) {
            5
        } else {
            1
        };
        commands.extend((0..calls).map(|_| revoke_answer(answer.clone())));
        let mut state = state_after(commands);
        if !matches!(state, PaymentState::ManualReview(_)) {
            // Escalation is a runtime step once next_action says so.
            let escalate = Command::new(
                CommandId(uuid::Uuid::from_u128(99)),
                CommandKind::EscalateToManualReview { refund_no: None },
            );
            for event in PaymentDecider::default()
                .decide(&state, &escalate, t(10_000))
                .unwrap()
            {
                state = evolve(state, &event).unwrap();
            }
        }
        assert!(matches!(state, PaymentState::ManualReview(_)), "{state:?}");
        state
    }

    /// An unpaid order whose revoke kept asking for a retry.
    fn unpaid_in_review() -> PaymentState {
        let mut commands = vec![
            submit(),
            CommandKind::RecordPayAnswer(ChannelAnswer::new(PayOutcome::Failed {
                code: "NOTENOUGH".into(),
            })),
        ];
        commands.extend((0..5).map(|_| {
            revoke_answer(RevokeOutcome::MustRetry {
                reason: "recall=Y".into(),
            })
        }));
        let state = state_after(commands);
        let escalate = Command::new(
            CommandId(uuid::Uuid::from_u128(99)),
            CommandKind::EscalateToManualReview { refund_no: None },
        );
        let events = PaymentDecider::default()
            .decide(&state, &escalate, t(10_000))
            .unwrap();
        events
            .iter()
            .fold(state, |state, event| evolve(state, event).unwrap())
    }

    fn order_verdict(outcome: &str, trade: Option<&str>, at: Option<&str>) -> Verdict {
        Verdict::parse(
            Subject::Order,
            Words {
                outcome: Some(outcome),
                channel_trade_no: trade,
                at,
                reason: Some("checked with the channel"),
            },
        )
        .unwrap()
    }

    fn field_and_code(error: ResolveError) -> (&'static str, String) {
        match error {
            ResolveError::Invalid { field, code, .. } => (field, code),
            ResolveError::Contradicts { field, .. } => (field, "contradicts".to_owned()),
            ResolveError::Ledger(PaymentLedgerError::Rejected(rejection)) => {
                ("", rejection.code().to_owned())
            }
            ResolveError::Ledger(other) => panic!("{other}"),
        }
    }

    #[test]
    fn the_words_are_checked_field_by_field() {
        // Each bad word names its field; refund words are not order words.
        fn words<'a>(
            outcome: Option<&'a str>,
            trade: Option<&'a str>,
            at: Option<&'a str>,
            reason: Option<&'a str>,
        ) -> Words<'a> {
            Words {
                outcome,
                channel_trade_no: trade,
                at,
                reason,
            }
        }
        let (long_trade, long_reason) = ("4".repeat(65), "x".repeat(501));
        let refund = Subject::Refund(RefundNo::parse("R1").unwrap());
        let cases: Vec<(Subject, Words<'_>, &str, &str)> = vec![
            (
                Subject::Order,
                words(None, None, None, Some("x")),
                "outcome",
                "missing_outcome",
            ),
            (
                Subject::Order,
                words(Some("succeeded"), None, None, Some("x")),
                "outcome",
                "invalid_outcome",
            ),
            (
                refund.clone(),
                words(Some("paid"), None, None, Some("x")),
                "outcome",
                "invalid_outcome",
            ),
            (
                Subject::Order,
                words(Some("paid"), None, None, Some("x")),
                "channel_trade_no",
                "missing_channel_trade_no",
            ),
            (
                Subject::Order,
                words(Some("paid"), Some("42 00"), None, Some("x")),
                "channel_trade_no",
                "invalid_channel_trade_no",
            ),
            (
                Subject::Order,
                words(Some("paid"), Some(&long_trade), None, Some("x")),
                "channel_trade_no",
                "invalid_channel_trade_no",
            ),
            (
                Subject::Order,
                words(Some("not_paid"), Some("42"), None, Some("x")),
                "channel_trade_no",
                "invalid_channel_trade_no",
            ),
            (
                Subject::Order,
                words(Some("paid"), Some("42"), Some("yesterday"), Some("x")),
                "paid_at",
                "invalid_paid_at",
            ),
            (
                Subject::Order,
                words(
                    Some("not_paid"),
                    None,
                    Some("2026-11-22T02:00:00Z"),
                    Some("x"),
                ),
                "paid_at",
                "invalid_paid_at",
            ),
            (
                refund.clone(),
                words(
                    Some("failed"),
                    None,
                    Some("2026-11-22T02:00:00Z"),
                    Some("x"),
                ),
                "refunded_at",
                "invalid_refunded_at",
            ),
            (
                refund.clone(),
                words(Some("failed"), Some("42"), None, Some("x")),
                "channel_trade_no",
                "invalid_channel_trade_no",
            ),
            (
                Subject::Order,
                words(Some("not_paid"), None, None, None),
                "reason",
                "missing_reason",
            ),
            (
                Subject::Order,
                words(Some("not_paid"), None, None, Some("  ")),
                "reason",
                "invalid_reason",
            ),
            (
                Subject::Order,
                words(Some("not_paid"), None, None, Some("a\nb")),
                "reason",
                "invalid_reason",
            ),
            (
                Subject::Order,
                words(Some("not_paid"), None, None, Some(&long_reason)),
                "reason",
                "invalid_reason",
            ),
        ];
        for (subject, words, field, code) in cases {
            let error = Verdict::parse(subject, words).unwrap_err();
            assert_eq!(field_and_code(error), (field, code.to_owned()), "{words:?}");
        }
        let verdict = Verdict::parse(
            refund.clone(),
            words(
                Some("succeeded"),
                None,
                Some("2026-11-22T10:00:01+08:00"),
                Some("seen"),
            ),
        )
        .unwrap();
        assert_eq!(verdict.outcome, Outcome::Succeeded);
        assert_eq!(verdict.at, Some(t(1)), "any offset, kept as UTC");
    }

    #[test]
    fn not_paid_closes_an_order_no_money_is_known_to_have_left_the_customer_for() {
        // Unpaid, revoke stuck: closed. Paid, revoke stuck or contradicted: the money came back, reversed.
        let not_paid = order_verdict("not_paid", None, None);
        assert_eq!(
            resolution(&unpaid_in_review(), false, &not_paid, t(20_000)).unwrap(),
            Resolution::Closed
        );
        for answer in [
            RevokeOutcome::MustRetry {
                reason: "recall=Y".into(),
            },
            RevokeOutcome::Done {
                result: paycode_domain::payment::RevokeResult::Closed,
            },
        ] {
            let state = paid_then_revoke_stuck(&answer);
            assert_eq!(
                resolution(&state, false, &not_paid, t(20_000)).unwrap(),
                Resolution::Reversed,
                "{answer:?}"
            );
        }
    }

    /// `state`, in review for `reason` instead.
    fn in_review_for(state: PaymentState, reason: ManualReviewReason) -> PaymentState {
        let PaymentState::ManualReview(mut review) = state else {
            panic!("not in review: {state:?}");
        };
        review.reason = reason;
        PaymentState::ManualReview(review)
    }

    #[test]
    fn not_paid_reverses_an_order_whose_money_the_channel_or_the_history_showed_moving() {
        // Refunded outside the ledger, or a statement listing the payment of a revoke: reversed.
        // Another trade under the order number, or a closed window undecided: closed, unless a noted answer showed money.
        let not_paid = order_verdict("not_paid", None, None);
        let cases = [
            (
                ManualReviewReason::RefundedOutsideLedger,
                false,
                Resolution::Reversed,
            ),
            (
                ManualReviewReason::StatementContradictsRevoke,
                false,
                Resolution::Reversed,
            ),
            (
                ManualReviewReason::OrderNoUsedByAnotherTrade,
                false,
                Resolution::Closed,
            ),
            (
                ManualReviewReason::RevokeWindowClosedUndecided {
                    code: "REVERSE_EXPIRE".into(),
                },
                false,
                Resolution::Closed,
            ),
            (
                ManualReviewReason::RevokeWindowClosedUndecided {
                    code: "REVERSE_EXPIRE".into(),
                },
                true,
                Resolution::Reversed,
            ),
            (
                ManualReviewReason::RevokeAttemptsExhausted { attempts: 5 },
                true,
                Resolution::Reversed,
            ),
        ];
        for (reason, money_moved, expected) in cases {
            let state = in_review_for(unpaid_in_review(), reason.clone());
            assert_eq!(
                resolution(&state, money_moved, &not_paid, t(20_000)).unwrap(),
                expected,
                "{reason:?}, money moved: {money_moved}"
            );
        }
    }

    #[test]
    fn money_moved_is_read_from_payments_and_noted_answers() {
        // Paid, a noted paid pay or query answer, a noted refunded-elsewhere, a noted refunding revoke; nothing else.
        use paycode_domain::ChannelCodes;
        use paycode_domain::payment::AnswerNoted;
        let noted = |answer: NotedAnswer| {
            Fact::AnswerNoted(AnswerNoted {
                answer,
                codes: ChannelCodes::default(),
            })
        };
        let paid_answer = PayOutcome::Paid {
            channel_trade_no: "4200000001".into(),
            paid_at: None,
        };
        let moved = [
            noted(NotedAnswer::Pay {
                outcome: paid_answer,
            }),
            noted(NotedAnswer::Query {
                outcome: QueryOutcome::Paid {
                    channel_trade_no: "4200000001".into(),
                    paid_at: Some(t(3)),
                },
            }),
            noted(NotedAnswer::Query {
                outcome: QueryOutcome::RefundedElsewhere,
            }),
            noted(NotedAnswer::Revoke {
                outcome: RevokeOutcome::Done {
                    result: RevokeResult::Refunded,
                },
            }),
        ];
        for fact in &moved {
            assert!(money_moved_in([fact]), "{fact:?}");
        }
        let not_moved = [
            noted(NotedAnswer::Pay {
                outcome: PayOutcome::WaitingForPassword,
            }),
            noted(NotedAnswer::Query {
                outcome: QueryOutcome::NotPaid,
            }),
            noted(NotedAnswer::Revoke {
                outcome: RevokeOutcome::Done {
                    result: RevokeResult::Closed,
                },
            }),
        ];
        assert!(!money_moved_in(&not_moved));
        let decider = PaymentDecider::default();
        let submitted = decider
            .decide(
                &PaymentState::Initial,
                &Command::new(CommandId(uuid::Uuid::from_u128(1)), submit()),
                t(0),
            )
            .unwrap();
        assert!(!money_moved_in(submitted.iter().map(|e| &e.fact)));
        let recorded_paid = decider
            .decide(
                &state_after(vec![submit()]),
                &Command::new(CommandId(uuid::Uuid::from_u128(2)), paid()),
                t(1),
            )
            .unwrap();
        assert!(money_moved_in(recorded_paid.iter().map(|e| &e.fact)));
    }

    #[test]
    fn not_paid_is_refused_when_the_channel_refused_the_revoke_of_a_recorded_payment() {
        // The ledger saw the money move and nothing returned it: resolve paid, then refund.
        // (Ledgers written before a closed window turned into a refund in full hold such reviews.)
        let state = in_review_for(
            paid_then_revoke_stuck(&RevokeOutcome::MustRetry {
                reason: "recall=Y".into(),
            }),
            ManualReviewReason::RevokeRejected {
                code: "REVERSE_EXPIRE".into(),
            },
        );
        let error = resolution(
            &state,
            false,
            &order_verdict("not_paid", None, None),
            t(20_000),
        )
        .unwrap_err();
        assert!(error.to_string().contains("REVERSE_EXPIRE"), "{error}");
        assert_eq!(field_and_code(error), ("outcome", "contradicts".to_owned()));
        assert_eq!(
            resolution(
                &state,
                false,
                &order_verdict("paid", Some("4200000001"), None),
                t(20_000)
            )
            .unwrap(),
            Resolution::Paid {
                channel_trade_no: "4200000001".into(),
                paid_at: t(1),
            },
            "paid keeps the recorded payment time"
        );
    }

    #[test]
    fn paid_takes_the_operators_time_or_the_time_of_the_resolution() {
        // paid_at: as given, within the order's life; else now. A recorded payment is not rewritten.
        let state = unpaid_in_review();
        let now = t(20_000);
        assert_eq!(
            resolution(&state, false, &order_verdict("paid", Some("T1"), None), now).unwrap(),
            Resolution::Paid {
                channel_trade_no: "T1".into(),
                paid_at: now,
            }
        );
        let given = order_verdict("paid", Some("T1"), Some("2026-11-22T02:00:03Z"));
        assert_eq!(
            resolution(&state, false, &given, now).unwrap(),
            Resolution::Paid {
                channel_trade_no: "T1".into(),
                paid_at: t(3),
            }
        );
        for outside in ["2026-11-22T01:59:59Z", "2026-11-22T07:33:21Z"] {
            let verdict = order_verdict("paid", Some("T1"), Some(outside));
            assert_eq!(
                field_and_code(resolution(&state, false, &verdict, now).unwrap_err()),
                ("paid_at", "invalid_paid_at".to_owned()),
                "{outside}"
            );
        }
        let recorded = paid_then_revoke_stuck(&RevokeOutcome::MustRetry {
            reason: "recall=Y".into(),
        });
        for verdict in [
            order_verdict("paid", Some("4200000002"), None),
            order_verdict("paid", Some("4200000001"), Some("2026-11-22T02:00:02Z")),
        ] {
            let (field, code) =
                field_and_code(resolution(&recorded, false, &verdict, now).unwrap_err());
            assert_eq!(code, "contradicts");
            assert!(["channel_trade_no", "paid_at"].contains(&field));
        }
    }

    #[test]
    fn a_refund_verdict_needs_its_refund_in_review() {
        // Unknown refund: refund_not_found; a pending one: not_in_review; an order verdict on a paid order: not_in_review.
        let state = state_after(vec![
            submit(),
            paid(),
            CommandKind::RequestRefund(RequestRefund {
                refund_no: RefundNo::parse("R1").unwrap(),
                amount: "1.00".parse().unwrap(),
                reason: String::new(),
            }),
        ]);
        let refund = |no: &str| {
            Verdict::parse(
                Subject::Refund(RefundNo::parse(no).unwrap()),
                Words {
                    outcome: Some("succeeded"),
                    reason: Some("seen"),
                    ..Words::default()
                },
            )
            .unwrap()
        };
        let code = |verdict: &Verdict| {
            field_and_code(resolution(&state, false, verdict, t(100)).unwrap_err()).1
        };
        assert_eq!(code(&refund("R9")), "refund_not_found");
        assert_eq!(code(&refund("R1")), "not_in_review");
        assert_eq!(
            code(&order_verdict("not_paid", None, None)),
            "not_in_review"
        );
        assert_eq!(
            field_and_code(
                resolution(&PaymentState::Initial, false, &refund("R1"), t(100)).unwrap_err()
            )
            .1,
            "order_not_found"
        );
    }
}
