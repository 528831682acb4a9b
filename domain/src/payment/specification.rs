//! The specification of a payment's life, as given/when/then scenarios on
//! values: given the events of a history, when a command at a time, then
//! exactly the events it records or exactly the rejection. One scenario per
//! rule of docs/rules.md; each test's first line says which rule it shows.
//!
//! The events are written with the builders below (`submitted`, `paid`,
//! `refund_requested`, ...), for the given history and, restamped by
//! `decided`, for the expected events; where a scenario is about a field the
//! builders leave out (channel codes, a channel's refund number), it writes
//! the whole `Event`. The reconciliation specification builds its payment
//! histories with the same builders.

use chrono::{DateTime, Duration, NaiveDate, TimeZone, Utc};

use super::*;
use crate::auth_code::AuthCode;
use crate::channel::{Channel, ChannelCodes};
use crate::ids::{CommandId, MerchantId, OrderNo, RefundNo};
use crate::money::{Currency, Money, Total};
use crate::policy::Policy;
use crate::specification::{Commands, GIVEN, Spec, WHEN};

pub(crate) const WECHAT_CODE: &str = "134567890123456789";
pub(crate) const ALIPAY_CODE: &str = "284567890123456789";
const ORDER_NO: &str = "A20261122-0001";
const DAY: i64 = 24 * 3600;
/// When a refund requested on the day of `t(0)` must be final: `t(0)` is
/// Sunday 22 November 2026, 10:00 in China, so its three working days are
/// Monday to Wednesday, and it has until Wednesday's end (China time).
const REFUND_SETTLE_BY: i64 = 3 * DAY + 14 * 3600;

/// Second `secs` of a scenario. It starts at 02:00 UTC, 10:00 in China:
/// the Alipay day has room on both sides.
pub(crate) fn t(secs: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 22, 2, 0, 0).unwrap() + Duration::seconds(secs)
}

pub(crate) fn money(text: &str) -> Money {
    text.parse().unwrap()
}

pub(crate) fn refund_no(text: &str) -> RefundNo {
    RefundNo::parse(text).unwrap()
}

impl Commands for PaymentDecider {
    type Request = CommandKind;

    fn command(id: CommandId, kind: CommandKind) -> Command {
        Command::new(id, kind)
    }
}

/// A payment stream under the default policy.
fn payment() -> Spec<PaymentDecider> {
    Spec::of(PaymentDecider::new(Policy::default()))
}

impl Spec<PaymentDecider> {
    fn status(&self) -> PaymentStatus {
        self.state().status().unwrap()
    }

    /// The next action and the second it is due.
    fn next(&self) -> Option<(Action, i64)> {
        next_action(self.state()).map(|(action, due)| (action, (due - t(0)).num_seconds()))
    }

    fn refund_status(&self, refund: &str) -> RefundStatus {
        match self.state() {
            PaymentState::Paid(paid) => paid.refund(&refund_no(refund)).unwrap().status(),
            other => panic!("not paid: {other:?}"),
        }
    }
}

/// `event` as the command under test decides it: with that command's id.
fn decided(event: Event) -> Event {
    Event {
        command_id: WHEN,
        ..event
    }
}

/// An event of a given history: `fact`, recorded at `at` by an earlier command.
fn earlier(at: DateTime<Utc>, fact: Fact) -> Event {
    Event {
        at,
        command_id: GIVEN,
        key_name: None,
        fact,
    }
}

// The events, recorded at `at`. Their channel codes are empty.

/// Order A20261122-0001 submitted at `at`, with the default policy's times.
fn submitted(at: DateTime<Utc>, amount: &str, code: &str) -> Event {
    order_submitted(at, ORDER_NO, amount, code)
}

/// Order `order_no` of merchant demo ("Coffee") submitted at `at`: first
/// query 5 s later, no revoke before 15 s, deadline at 30 s.
pub(crate) fn order_submitted(
    at: DateTime<Utc>,
    order_no: &str,
    amount: &str,
    code: &str,
) -> Event {
    let code = AuthCode::parse(code).unwrap();
    earlier(
        at,
        Fact::Submitted(Submitted {
            merchant_id: MerchantId::parse("demo").unwrap(),
            order_no: OrderNo::parse(order_no).unwrap(),
            channel: code.channel(),
            amount: money(amount),
            currency: Currency::Cny,
            subject: "Coffee".into(),
            auth_code: code.masked(),
            auth_code_fingerprint: None,
            deadline_at: at + Duration::seconds(30),
            first_query_at: at + Duration::seconds(5),
            revoke_not_before: at + Duration::seconds(15),
        }),
    )
}

fn user_paying(at: DateTime<Utc>, next_query_at: DateTime<Utc>) -> Event {
    earlier(
        at,
        Fact::UserPaying(UserPaying {
            codes: ChannelCodes::new(),
            next_query_at,
        }),
    )
}

fn query_result(
    at: DateTime<Utc>,
    outcome: QueryOutcome,
    next_query_at: Option<DateTime<Utc>>,
) -> Event {
    earlier(
        at,
        Fact::QueryResult(QueryResult {
            outcome,
            codes: ChannelCodes::new(),
            next_query_at,
        }),
    )
}

/// Queried at seconds 5 to 25, each answer `outcome` planning the next
/// query 5 s later; at the 30 s deadline a revoke is requested.
fn polled_to_the_deadline(outcome: QueryOutcome) -> Vec<Event> {
    let queries =
        [5, 10, 15, 20, 25].map(|secs| query_result(t(secs), outcome.clone(), Some(t(secs + 5))));
    let revoke = revoke_requested(t(30), RevokeReason::DeadlineReached, t(30));
    queries.into_iter().chain([revoke]).collect()
}

/// Paid, as the pay call answered at `at`, with the channel's trade number.
pub(crate) fn paid(at: DateTime<Utc>, trade_no: &str) -> Event {
    earlier(
        at,
        Fact::Paid(Paid {
            channel_trade_no: trade_no.into(),
            paid_at: at,
            paid_at_stated: true,
            source: PaidSource::PayAnswer,
            codes: ChannelCodes::new(),
        }),
    )
}

/// A query at `at` finds the order paid at `paid_at`: its result, and the payment.
fn found_paid(at: DateTime<Utc>, trade_no: &str, paid_at: DateTime<Utc>) -> [Event; 2] {
    let outcome = QueryOutcome::Paid {
        channel_trade_no: trade_no.into(),
        paid_at: Some(paid_at),
    };
    let paid = Paid {
        channel_trade_no: trade_no.into(),
        paid_at,
        paid_at_stated: true,
        source: PaidSource::Query,
        codes: ChannelCodes::new(),
    };
    [
        query_result(at, outcome, None),
        earlier(at, Fact::Paid(paid)),
    ]
}

fn payment_failed(at: DateTime<Utc>, code: &str) -> Event {
    earlier(
        at,
        Fact::PaymentFailed(PaymentFailed {
            code: code.into(),
            codes: ChannelCodes::new(),
        }),
    )
}

pub(crate) fn revoke_requested(
    at: DateTime<Utc>,
    reason: RevokeReason,
    not_before: DateTime<Utc>,
) -> Event {
    earlier(
        at,
        Fact::RevokeRequested(RevokeRequested { reason, not_before }),
    )
}

/// A payment of `amount` that failed with `failure` at second 0: a revoke
/// is requested, no sooner than second 15.
fn failed_then_revoking(amount: &str, code: &str, failure: &str) -> [Event; 3] {
    [
        submitted(t(0), amount, code),
        payment_failed(t(0), failure),
        revoke_requested(t(0), RevokeReason::PaymentFailed, t(15)),
    ]
}

fn revoke_retry(
    at: DateTime<Utc>,
    attempt: u32,
    reason: &str,
    retry_at: Option<DateTime<Utc>>,
) -> Event {
    earlier(
        at,
        Fact::RevokeRetryScheduled(RevokeRetryScheduled {
            attempt,
            reason: reason.into(),
            codes: ChannelCodes::new(),
            retry_at,
        }),
    )
}

pub(crate) fn revoked(at: DateTime<Utc>, result: RevokeResult, attempt: u32) -> Event {
    earlier(
        at,
        Fact::Revoked(Revoked {
            result,
            attempt,
            codes: ChannelCodes::new(),
        }),
    )
}

/// The order (no refund number) or one refund goes to an operator.
fn manual_review(at: DateTime<Utc>, refund: Option<&str>, reason: ManualReviewReason) -> Event {
    earlier(
        at,
        Fact::ManualReviewRequired(ManualReviewRequired {
            refund_no: refund.map(refund_no),
            reason,
            codes: ChannelCodes::new(),
        }),
    )
}

/// An operator's verdict, resolved by the key named `api_keys[0]`.
fn operator_resolved(at: DateTime<Utc>, resolution: Resolution, note: &str) -> Event {
    earlier(
        at,
        Fact::OperatorResolved(OperatorResolved {
            resolution,
            note: note.into(),
            resolved_by: OPERATOR.into(),
        }),
    )
}

/// Refund `refund` ("returned goods") requested at `at`, with the default
/// policy's times: first query 10 s later, an operator after 3 days.
pub(crate) fn refund_requested(at: DateTime<Utc>, refund: &str, amount: &str) -> Event {
    earlier(
        at,
        Fact::RefundRequested(RefundRequested {
            refund_no: refund_no(refund),
            amount: money(amount),
            reason: "returned goods".into(),
            first_query_at: at + Duration::seconds(10),
            // The default policy's three working days (China calendar).
            settle_by: Policy::default().refund_settle_by(at),
        }),
    )
}

fn refund_pending(
    at: DateTime<Utc>,
    refund: &str,
    outcome: RefundOutcome,
    next_query_at: Option<DateTime<Utc>>,
) -> Event {
    earlier(
        at,
        Fact::RefundPending(RefundPending {
            refund_no: refund_no(refund),
            outcome,
            codes: ChannelCodes::new(),
            next_query_at,
        }),
    )
}

/// Refund `refund` succeeded at `at`; the channel gave no refund number.
pub(crate) fn refunded(at: DateTime<Utc>, refund: &str, amount: &str) -> Event {
    earlier(
        at,
        Fact::Refunded(Refunded {
            refund_no: refund_no(refund),
            amount: money(amount),
            channel_refund_no: None,
            refunded_at: at,
            codes: ChannelCodes::new(),
        }),
    )
}

pub(crate) fn refund_failed(at: DateTime<Utc>, refund: &str, code: &str) -> Event {
    earlier(
        at,
        Fact::RefundFailed(RefundFailed {
            refund_no: refund_no(refund),
            code: code.into(),
            codes: ChannelCodes::new(),
        }),
    )
}

pub(crate) fn line_matched(at: DateTime<Utc>, line: StatementLine) -> Event {
    earlier(
        at,
        Fact::StatementLineMatched(StatementLineMatched { line }),
    )
}

// The commands, without their id.

fn submit(amount: &str, code: &str) -> CommandKind {
    CommandKind::SubmitPayment(SubmitPayment {
        merchant_id: MerchantId::parse("demo").unwrap(),
        order_no: OrderNo::parse(ORDER_NO).unwrap(),
        auth_code: AuthCode::parse(code).unwrap(),
        auth_code_fingerprint: None,
        amount: money(amount),
        subject: "Coffee".into(),
    })
}

fn pay_answer(outcome: PayOutcome) -> CommandKind {
    CommandKind::RecordPayAnswer(ChannelAnswer::new(outcome))
}

fn query_answer(outcome: QueryOutcome) -> CommandKind {
    CommandKind::RecordQueryResult(ChannelAnswer::new(outcome))
}

fn revoke(reason: RevokeReason) -> CommandKind {
    CommandKind::RequestRevoke { reason }
}

fn revoke_answer(outcome: RevokeOutcome) -> CommandKind {
    CommandKind::RecordRevokeAnswer(ChannelAnswer::new(outcome))
}

fn revoke_done(result: RevokeResult) -> CommandKind {
    revoke_answer(RevokeOutcome::Done { result })
}

/// A refund of `amount` for "returned goods".
fn refund(refund: &str, amount: &str) -> CommandKind {
    CommandKind::RequestRefund(RequestRefund {
        refund_no: refund_no(refund),
        amount: money(amount),
        reason: "returned goods".into(),
    })
}

/// The name every operator of these scenarios acts under.
const OPERATOR: &str = "api_keys[0]";

/// An operator's verdict with a note, as [`OPERATOR`].
fn resolve(resolution: Resolution, note: &str) -> CommandKind {
    CommandKind::Resolve {
        resolution,
        note: note.into(),
        resolved_by: OPERATOR.into(),
    }
}

fn refund_answer(refund: &str, outcome: RefundOutcome) -> CommandKind {
    CommandKind::RecordRefundAnswer {
        refund_no: refund_no(refund),
        answer: ChannelAnswer::new(outcome),
    }
}

/// Revoke attempts of a payment that failed at second 0, as (attempt, its
/// second, the retry it schedules): 15 s at the earliest, then 5, 10, 20 and
/// 40 s of back-off; none after the fifth.
const REVOKE_ATTEMPTS: [(u32, i64, Option<i64>); 5] = [
    (1, 15, Some(20)),
    (2, 20, Some(30)),
    (3, 30, Some(50)),
    (4, 50, Some(90)),
    (5, 90, None),
];

#[test]
fn paid_at_once_settles_without_further_action() {
    // Rule: a pay answer of success is final; nothing else is called.
    let spec = payment()
        .given([submitted(t(0), "12.34", WECHAT_CODE)])
        .when_at(
            t(1),
            pay_answer(PayOutcome::Paid {
                channel_trade_no: "4200000001".into(),
                paid_at: Some(t(1)),
            }),
        )
        .then([Event {
            at: t(1),
            command_id: WHEN,
            key_name: None,
            fact: Fact::Paid(Paid {
                channel_trade_no: "4200000001".into(),
                paid_at: t(1),
                paid_at_stated: true,
                source: PaidSource::PayAnswer,
                codes: ChannelCodes::new(),
            }),
        }]);
    assert_eq!(spec.status(), PaymentStatus::Paid);
    assert_eq!(spec.next(), None);
}

#[test]
fn password_wait_then_paid() {
    // Rule: USERPAYING means poll the query API every 5 s; the query's trade state decides.
    let spec = payment()
        .given([submitted(t(0), "2500.00", WECHAT_CODE)])
        .when_at(t(0), pay_answer(PayOutcome::WaitingForPassword))
        .then([decided(user_paying(t(0), t(5)))]);
    assert_eq!(spec.status(), PaymentStatus::Paying);
    assert_eq!(spec.next(), Some((Action::QueryPayment, 5)));

    let spec = spec
        .when_at(t(5), query_answer(QueryOutcome::WaitingForPassword))
        .then([decided(query_result(
            t(5),
            QueryOutcome::WaitingForPassword,
            Some(t(10)),
        ))]);
    assert_eq!(spec.next(), Some((Action::QueryPayment, 10)));

    let paid = QueryOutcome::Paid {
        channel_trade_no: "4200000002".into(),
        paid_at: Some(t(9)),
    };
    let spec = spec
        .when_at(t(10), query_answer(paid))
        .then(found_paid(t(10), "4200000002", t(9)).map(decided));
    assert_eq!(spec.status(), PaymentStatus::Paid);
    assert_eq!(spec.next(), None);
}

#[test]
fn password_wait_then_deadline_then_revoke() {
    // Rule: still waiting after 30 s of polling means revoke; an unpaid order revoked is closed.
    let mut spec = payment().given([
        submitted(t(0), "2500.00", WECHAT_CODE),
        user_paying(t(0), t(5)),
    ]);
    for secs in [5, 10, 15, 20, 25] {
        assert_eq!(spec.next(), Some((Action::QueryPayment, secs)));
        spec = spec
            .when_at(t(secs), query_answer(QueryOutcome::WaitingForPassword))
            .then([decided(query_result(
                t(secs),
                QueryOutcome::WaitingForPassword,
                Some(t(secs + 5)),
            ))]);
    }
    // The next query would be at 30 s, the deadline: revoke instead.
    let start_revoke = Action::StartRevoke {
        reason: RevokeReason::DeadlineReached,
    };
    assert_eq!(spec.next(), Some((start_revoke, 30)));

    let spec = spec
        .when_at(t(30), revoke(RevokeReason::DeadlineReached))
        .then([decided(revoke_requested(
            t(30),
            RevokeReason::DeadlineReached,
            t(30),
        ))]);
    assert_eq!(spec.status(), PaymentStatus::Revoking);
    assert_eq!(spec.next(), Some((Action::CallRevoke { attempt: 1 }, 30)));

    let spec = spec
        .when_at(t(30), revoke_done(RevokeResult::Closed))
        .then([decided(revoked(t(30), RevokeResult::Closed, 1))]);
    assert_eq!(spec.status(), PaymentStatus::Closed);
    assert_eq!(spec.next(), None);
}

#[test]
fn a_system_error_on_pay_is_not_a_failure() {
    // Rule: result_code=FAIL with SYSTEMERROR (or a timeout) proves nothing: query, never fail.
    let codes = ChannelCodes::new()
        .with("result_code", "FAIL")
        .with("err_code", "SYSTEMERROR");
    let answer = ChannelAnswer::with_codes(
        PayOutcome::Unknown {
            reason: "SYSTEMERROR".into(),
        },
        codes.clone(),
    );
    let spec = payment()
        .given([submitted(t(0), "10.00", WECHAT_CODE)])
        .when_at(t(1), CommandKind::RecordPayAnswer(answer))
        // The raw codes are kept for the auditor.
        .then([Event {
            at: t(1),
            command_id: WHEN,
            key_name: None,
            fact: Fact::PayAnswerUnknown(PayAnswerUnknown {
                reason: "SYSTEMERROR".into(),
                codes,
                next_query_at: t(6),
            }),
        }]);
    assert_eq!(spec.status(), PaymentStatus::Paying);
    assert_eq!(spec.next(), Some((Action::QueryPayment, 6)));

    // And the query finds it paid.
    let paid = QueryOutcome::Paid {
        channel_trade_no: "42".into(),
        paid_at: Some(t(1)),
    };
    let spec = spec
        .when_at(t(6), query_answer(paid))
        .then(found_paid(t(6), "42", t(1)).map(decided));
    assert_eq!(spec.status(), PaymentStatus::Paid);
}

#[test]
fn a_definitive_failure_still_closes_with_a_revoke_no_sooner_than_15_seconds() {
    // Rule: after NOTENOUGH the order is closed with a revoke (closed loop), 15 s after pay at the earliest.
    let spec = payment()
        .given([submitted(t(0), "10.00", WECHAT_CODE)])
        .when_at(
            t(1),
            pay_answer(PayOutcome::Failed {
                code: "NOTENOUGH".into(),
            }),
        )
        .then(
            [
                payment_failed(t(1), "NOTENOUGH"),
                revoke_requested(t(1), RevokeReason::PaymentFailed, t(15)),
            ]
            .map(decided),
        );
    assert_eq!(spec.status(), PaymentStatus::Revoking);
    assert_eq!(spec.next(), Some((Action::CallRevoke { attempt: 1 }, 15)));

    let spec = spec
        .when_at(t(15), revoke_done(RevokeResult::Closed))
        .then([decided(revoked(t(15), RevokeResult::Closed, 1))]);
    assert_eq!(spec.status(), PaymentStatus::Closed);
    match spec.state() {
        PaymentState::Closed(closed) => {
            assert_eq!(closed.failure_code.as_deref(), Some("NOTENOUGH"));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn recall_y_is_retried_with_back_off_then_given_to_an_operator() {
    // Rule: recall=Y means call again; after repeated failures a human takes over, never a loop.
    let retry = || {
        revoke_answer(RevokeOutcome::MustRetry {
            reason: "recall=Y".into(),
        })
    };
    let mut spec = payment().given(failed_then_revoking("10.00", WECHAT_CODE, "AUTHCODEEXPIRE"));
    for (attempt, secs, retry_at) in REVOKE_ATTEMPTS {
        assert_eq!(spec.next(), Some((Action::CallRevoke { attempt }, secs)));
        spec = spec.when_at(t(secs), retry()).then([decided(revoke_retry(
            t(secs),
            attempt,
            "recall=Y",
            retry_at.map(t),
        ))]);
    }
    let exhausted = ManualReviewReason::RevokeAttemptsExhausted { attempts: 5 };
    assert_eq!(
        spec.next(),
        Some((
            Action::EscalateToManualReview {
                refund_no: None,
                reason: exhausted.clone(),
            },
            90
        ))
    );

    let spec = spec
        .when_at(
            t(90),
            CommandKind::EscalateToManualReview { refund_no: None },
        )
        .then([decided(manual_review(t(90), None, exhausted))]);
    assert_eq!(spec.status(), PaymentStatus::ManualReview);
    assert_eq!(spec.next(), None, "waits for an operator");

    // A late answer is kept (every channel answer is an event) and changes nothing.
    let spec = spec.when_at(t(91), retry()).then([decided(earlier(
        t(91),
        Fact::AnswerNoted(AnswerNoted {
            answer: NotedAnswer::Revoke {
                outcome: RevokeOutcome::MustRetry {
                    reason: "recall=Y".into(),
                },
            },
            codes: ChannelCodes::new(),
        }),
    ))]);
    assert_eq!(spec.status(), PaymentStatus::ManualReview);
}

#[test]
fn an_operator_resolves_a_manual_review() {
    // Rule: the operator's verdict is recorded as a fact naming who gave it, and settles the order.
    let resolve = || resolve(Resolution::Closed, "checked with WeChat");
    let spec = payment()
        .given(failed_then_revoking("10.00", WECHAT_CODE, "AUTHCODEEXPIRE"))
        .given(REVOKE_ATTEMPTS.map(|(attempt, secs, retry_at)| {
            revoke_retry(t(secs), attempt, "timeout", retry_at.map(t))
        }))
        .given([manual_review(
            t(200),
            None,
            ManualReviewReason::RevokeAttemptsExhausted { attempts: 5 },
        )])
        .when_at(t(300), resolve())
        .then([decided(operator_resolved(
            t(300),
            Resolution::Closed,
            "checked with WeChat",
        ))]);
    assert_eq!(spec.status(), PaymentStatus::Closed);
    assert_eq!(spec.next(), None, "nothing automatic follows a verdict");
    assert_eq!(Rejection::NotInManualReview.code(), "not_in_review");
    spec.when_at(t(301), resolve())
        .then_rejected(Rejection::NotInManualReview);
}

/// A paid order the merchant revoked, whose revoke the channel answered
/// "closed" at second 20: an operator must look (the ledger saw it paid).
fn paid_then_contradicted() -> Spec<PaymentDecider> {
    payment().given([
        submitted(t(0), "10.00", WECHAT_CODE),
        paid(t(0), "4200000001"),
        revoke_requested(t(20), RevokeReason::MerchantRequested, t(20)),
        revoked(t(20), RevokeResult::Closed, 1),
        manual_review(t(20), None, ManualReviewReason::RevokeContradictsPayment),
    ])
}

#[test]
fn an_operator_may_confirm_a_recorded_payment_but_never_deny_it() {
    // Rule: a verdict adds what the ledger does not know; it never says "no money moved" of money it saw move.
    let confirmed = Resolution::Paid {
        channel_trade_no: "4200000001".into(),
        paid_at: t(0),
    };
    let other_trade = Resolution::Paid {
        channel_trade_no: "4200000002".into(),
        paid_at: t(0),
    };
    let other_time = Resolution::Paid {
        channel_trade_no: "4200000001".into(),
        paid_at: t(5),
    };
    let contradicts = Rejection::ResolutionContradictsLedger;
    assert_eq!(contradicts.code(), "resolution_contradicts_ledger");
    let spec = paid_then_contradicted()
        .when_at(t(60), resolve(Resolution::Closed, "never paid"))
        .then_rejected(contradicts.clone())
        .when_at(t(60), resolve(other_trade, "another trade"))
        .then_rejected(contradicts.clone())
        .when_at(t(60), resolve(other_time, "paid later"))
        .then_rejected(contradicts)
        .when_at(
            t(60),
            resolve(confirmed.clone(), "the revoke did not happen"),
        )
        .then([decided(operator_resolved(
            t(60),
            confirmed,
            "the revoke did not happen",
        ))]);
    assert_eq!(spec.status(), PaymentStatus::Paid);
    assert_eq!(spec.next(), None, "a confirmed payment needs nothing");
    // Paid again, as recorded: refunds are possible, counted from the recorded payment time.
    spec.when_at(t(120), refund("R1", "10.00"))
        .then([decided(refund_requested(t(120), "R1", "10.00"))]);

    // Or the money came back: reversed, keeping the recorded payment.
    let spec = paid_then_contradicted()
        .when_at(
            t(60),
            resolve(Resolution::Reversed, "refunded by the revoke"),
        )
        .then([decided(operator_resolved(
            t(60),
            Resolution::Reversed,
            "refunded by the revoke",
        ))]);
    assert_eq!(spec.status(), PaymentStatus::Reversed);
    assert_eq!(spec.next(), None);
    assert_eq!(
        spec.state()
            .paid_facts()
            .map(|p| p.channel_trade_no.as_str()),
        Some("4200000001")
    );
}

#[test]
fn an_operator_confirms_a_payment_the_ledger_never_saw() {
    // Rule: an order in review without a recorded payment takes the operator's trade number and time.
    let spec = payment()
        .given(failed_then_revoking("10.00", WECHAT_CODE, "SYSTEMERROR"))
        .given([
            revoke_retry(t(15), 1, "timeout", None),
            manual_review(
                t(15),
                None,
                ManualReviewReason::RevokeAttemptsExhausted { attempts: 1 },
            ),
        ]);
    let paid_late = Resolution::Paid {
        channel_trade_no: "4200000009".into(),
        paid_at: t(3),
    };
    let spec = spec
        .when_at(
            t(600),
            resolve(paid_late.clone(), "paid per the merchant platform"),
        )
        .then([decided(operator_resolved(
            t(600),
            paid_late,
            "paid per the merchant platform",
        ))]);
    assert_eq!(spec.status(), PaymentStatus::Paid);
    assert_eq!(spec.next(), None);
    let paid = spec.state().paid_facts().unwrap();
    assert_eq!(
        (paid.channel_trade_no.as_str(), paid.paid_at),
        ("4200000009", t(3))
    );
}

#[test]
fn a_refund_verdict_needs_that_refund_in_review() {
    // Rule: a refund is resolved only once it is in manual review; an unknown refund is not found.
    let succeeded = |refund: &str| Resolution::RefundSucceeded {
        refund_no: refund_no(refund),
        refunded_at: t(70),
    };
    let spec = payment()
        .given([
            submitted(t(0), "10.00", WECHAT_CODE),
            paid(t(0), "4200000001"),
            refund_requested(t(0), "R1", "4.00"),
        ])
        .when_at(t(5), resolve(succeeded("R1"), "seen in the platform"))
        .then_rejected(Rejection::NotInManualReview)
        .when_at(t(5), resolve(succeeded("R9"), "which refund?"))
        .then_rejected(Rejection::RefundNotFound)
        // An order-level verdict on a paid order is not in review either.
        .when_at(t(5), resolve(Resolution::Reversed, "reversed"))
        .then_rejected(Rejection::NotInManualReview)
        .given([manual_review(
            t(3 * DAY),
            Some("R1"),
            ManualReviewReason::RefundNotSettled,
        )])
        .when_at(
            t(3 * DAY + 60),
            resolve(succeeded("R1"), "seen in the platform"),
        )
        .then([decided(operator_resolved(
            t(3 * DAY + 60),
            succeeded("R1"),
            "seen in the platform",
        ))]);
    assert_eq!(spec.refund_status("R1"), RefundStatus::Succeeded);
    assert_eq!(spec.status(), PaymentStatus::PartiallyRefunded);
    assert_eq!(
        spec.next(),
        None,
        "the resolved refund is not queried again"
    );

    // An order in review has no refunds at all.
    paid_then_contradicted()
        .when_at(t(60), resolve(succeeded("R1"), "which refund?"))
        .then_rejected(Rejection::RefundNotFound);
}

#[test]
fn a_payment_landing_between_the_last_query_and_the_revoke_ends_reversed() {
    // Rule: the revoke then refunds the payment, and the ledger shows both.
    let spec = payment()
        .given([
            submitted(t(0), "2500.00", ALIPAY_CODE),
            user_paying(t(0), t(5)),
        ])
        .given(polled_to_the_deadline(QueryOutcome::WaitingForPassword))
        .when_at(t(30), revoke_done(RevokeResult::Refunded))
        .then([decided(revoked(t(30), RevokeResult::Refunded, 1))]);
    assert_eq!(spec.status(), PaymentStatus::Reversed);
    assert_eq!(spec.next(), None);
    // Money moved and came back: refunds are impossible, the statement's two lines both match.
    spec.when_at(t(60), refund("R1", "1.00"))
        .then_rejected(Rejection::NotRefundable {
            status: PaymentStatus::Reversed,
        });
}

#[test]
fn a_revoke_that_finds_the_order_unknown_to_the_channel_closes_it() {
    // Rule: revoking an order the channel does not know succeeds (a crash before the pay call).
    let spec = payment().given([submitted(t(0), "10.00", WECHAT_CODE)]);
    // No pay answer was ever recorded: recovery is by query, never by paying again.
    assert_eq!(spec.next(), Some((Action::QueryPayment, 5)));
    let spec = spec
        .given(polled_to_the_deadline(QueryOutcome::NotFound))
        .when_at(t(30), revoke_done(RevokeResult::Closed))
        .then([decided(revoked(t(30), RevokeResult::Closed, 1))]);
    assert_eq!(spec.status(), PaymentStatus::Closed);
}

#[test]
fn an_order_the_channel_closed_by_itself_is_still_closed_with_our_revoke() {
    // Rule: WeChat revokes unpaid orders after 45 s; a query saying REVOKED/CLOSED closes the loop.
    let spec = payment()
        .given([
            submitted(t(0), "10.00", WECHAT_CODE),
            user_paying(t(0), t(5)),
        ])
        .when_at(t(5), query_answer(QueryOutcome::Closed))
        .then(
            [
                query_result(t(5), QueryOutcome::Closed, None),
                payment_failed(t(5), "CLOSED"),
                revoke_requested(t(5), RevokeReason::PaymentFailed, t(15)),
            ]
            .map(decided),
        );
    assert_eq!(spec.next(), Some((Action::CallRevoke { attempt: 1 }, 15)));
}

#[test]
fn a_revoke_that_closes_an_order_recorded_as_paid_goes_to_an_operator() {
    // Rule: a channel answer that contradicts recorded money movement never silently wins.
    let spec = payment()
        .given([
            submitted(t(0), "10.00", WECHAT_CODE),
            paid(t(0), "4200000001"),
            revoke_requested(t(20), RevokeReason::MerchantRequested, t(20)),
        ])
        .when_at(t(20), revoke_done(RevokeResult::Closed))
        .then(
            [
                revoked(t(20), RevokeResult::Closed, 1),
                manual_review(t(20), None, ManualReviewReason::RevokeContradictsPayment),
            ]
            .map(decided),
        );
    assert_eq!(spec.status(), PaymentStatus::ManualReview);
}

#[test]
fn the_merchant_revokes_a_paid_order_and_it_is_reversed() {
    // Rule: revoke refunds a paid order in full; a second revoke request changes nothing.
    let spec = payment()
        .given([
            submitted(t(0), "10.00", WECHAT_CODE),
            paid(t(0), "4200000001"),
        ])
        .when_at(t(60), revoke(RevokeReason::MerchantRequested))
        .then([decided(revoke_requested(
            t(60),
            RevokeReason::MerchantRequested,
            t(60),
        ))])
        .when_at(t(61), revoke(RevokeReason::MerchantRequested))
        .then([])
        .when_at(t(62), revoke_done(RevokeResult::Refunded))
        .then([decided(revoked(t(62), RevokeResult::Refunded, 1))]);
    assert_eq!(spec.status(), PaymentStatus::Reversed);
}

#[test]
fn a_revoke_outside_its_window_is_rejected_with_a_hint_to_refund() {
    // Rule: WeChat revokes within 7 days, Alipay the same China-time day; after that, refund.
    let rejection = Rejection::RevokeWindowClosed;
    assert_eq!(rejection.code(), "revoke_window_closed");
    assert!(rejection.to_string().contains("refund"), "{rejection}");
    payment()
        .given([
            submitted(t(0), "10.00", WECHAT_CODE),
            paid(t(0), "4200000001"),
        ])
        .when_at(t(8 * DAY), revoke(RevokeReason::MerchantRequested))
        .then_rejected(rejection)
        // A refund is still possible.
        .when_at(t(8 * DAY), refund("R1", "10.00"))
        .then([decided(refund_requested(t(8 * DAY), "R1", "10.00"))]);

    payment()
        .given([submitted(t(0), "10.00", ALIPAY_CODE), paid(t(0), "2026")])
        // Submitted at 10:00 China time; 14 h later it is the next China day.
        .when_at(t(14 * 3600), revoke(RevokeReason::MerchantRequested))
        .then_rejected(Rejection::RevokeWindowClosed)
        // 23:00 China time is still the same day.
        .when_at(t(13 * 3600), revoke(RevokeReason::MerchantRequested))
        .then([decided(revoke_requested(
            t(13 * 3600),
            RevokeReason::MerchantRequested,
            t(13 * 3600),
        ))]);
}

#[test]
fn a_revoke_refused_after_its_window_closed_is_settled_by_a_query() {
    // Rule: ACQ.TRADE_CANCEL_TIME_OUT / REVERSE_EXPIRE: query the order;
    // paid means a refund in full instead, not paid means closed.
    let window_closed = || {
        revoke_answer(RevokeOutcome::WindowClosed {
            code: "ACQ.TRADE_CANCEL_TIME_OUT".into(),
        })
    };
    let refused = payment()
        .given(failed_then_revoking(
            "10.00",
            ALIPAY_CODE,
            "ACQ.PAYMENT_AUTH_CODE_INVALID",
        ))
        .when_at(t(15), window_closed())
        .then([Event {
            at: t(15),
            command_id: WHEN,
            key_name: None,
            fact: Fact::RevokeRejected(RevokeRejected {
                attempt: 1,
                code: "ACQ.TRADE_CANCEL_TIME_OUT".into(),
                codes: ChannelCodes::new(),
            }),
        }]);
    assert_eq!(refused.status(), PaymentStatus::Revoking);
    assert_eq!(refused.next(), Some((Action::QueryPayment, 15)));

    // The customer paid after all: the payment stands and is refunded in full.
    let paid = QueryOutcome::Paid {
        channel_trade_no: "2026112222001".into(),
        paid_at: Some(t(3)),
    };
    let [result, paid_event] = found_paid(t(16), "2026112222001", t(3));
    let refunded = refused.clone().when_at(t(16), query_answer(paid)).then([
        decided(result),
        decided(paid_event),
        decided(earlier(
            t(16),
            Fact::RefundRequested(RefundRequested {
                refund_no: refund_no(&format!("RV{ORDER_NO}")),
                amount: money("10.00"),
                reason: "revoke refused (ACQ.TRADE_CANCEL_TIME_OUT): refunded in full instead"
                    .into(),
                first_query_at: t(26),
                settle_by: Policy::default().refund_settle_by(t(16)),
            }),
        )),
    ]);
    assert_eq!(refunded.status(), PaymentStatus::Paid);
    assert_eq!(
        refunded.refund_status(&format!("RV{ORDER_NO}")),
        RefundStatus::Pending
    );

    // Not paid: no money moved, closed.
    let closed = refused
        .clone()
        .when_at(t(16), query_answer(QueryOutcome::Closed))
        .then([
            decided(query_result(t(16), QueryOutcome::Closed, None)),
            decided(earlier(
                t(16),
                Fact::RevokeSettled(RevokeSettled {
                    money_moved: false,
                    by: SettledBy::Query,
                }),
            )),
        ]);
    assert_eq!(closed.status(), PaymentStatus::Closed);

    // Still undecided: queried again with back-off, then an operator decides.
    let unknown = || QueryOutcome::Unknown {
        reason: "SYSTEMERROR".into(),
    };
    let mut spec = refused;
    let mut at = 16;
    for queries in 1..Policy::default().revoke_attempts_max {
        let next = at + Policy::default().revoke_retry_delay(queries).num_seconds();
        spec = spec
            .when_at(t(at), query_answer(unknown()))
            .then([decided(query_result(t(at), unknown(), Some(t(next))))]);
        assert_eq!(spec.next(), Some((Action::QueryPayment, next)));
        at = next;
    }
    let spec = spec.when_at(t(at), query_answer(unknown())).then([
        decided(query_result(t(at), unknown(), None)),
        decided(manual_review(
            t(at),
            None,
            ManualReviewReason::RevokeWindowClosedUndecided {
                code: "ACQ.TRADE_CANCEL_TIME_OUT".into(),
            },
        )),
    ]);
    assert_eq!(spec.status(), PaymentStatus::ManualReview);
}

#[test]
fn refunds_never_exceed_the_paid_amount() {
    // Rule: the sum of refunds (pending ones included) never exceeds what was paid.
    let too_much = Rejection::RefundExceedsBalance {
        requested: money("4.01"),
        refundable: money("4.00").into(),
    };
    assert_eq!(too_much.code(), "refund_exceeds_balance");
    let spec = payment()
        .given([
            submitted(t(0), "10.00", WECHAT_CODE),
            paid(t(0), "4200000001"),
        ])
        .when_at(t(60), refund("R1", "6.00"))
        .then([Event {
            at: t(60),
            command_id: WHEN,
            key_name: None,
            fact: Fact::RefundRequested(RefundRequested {
                refund_no: refund_no("R1"),
                amount: money("6.00"),
                reason: "returned goods".into(),
                // The policy's times, fixed in the event.
                first_query_at: t(70),
                settle_by: t(REFUND_SETTLE_BY),
            }),
        }])
        .when_at(t(61), refund("R2", "4.01"))
        .then_rejected(too_much)
        // A failed refund gives its amount back to the balance.
        .when_at(
            t(70),
            refund_answer(
                "R1",
                RefundOutcome::Failed {
                    code: "NOTENOUGH".into(),
                },
            ),
        )
        .then([decided(refund_failed(t(70), "R1", "NOTENOUGH"))]);
    assert_eq!(spec.refund_status("R1"), RefundStatus::Failed);
    spec.when_at(t(80), refund("R2", "10.00"))
        .then([decided(refund_requested(t(80), "R2", "10.00"))])
        .when_at(t(81), refund("R3", "0.01"))
        .then_rejected(Rejection::RefundExceedsBalance {
            requested: money("0.01"),
            refundable: Total::ZERO,
        });
}

#[test]
fn a_refund_accepted_is_not_a_refund_succeeded() {
    // Rule: acceptance is not success; query the refund until it is final.
    let query_r1 = || Action::QueryRefund {
        refund_no: refund_no("R1"),
    };
    let accepted = RefundOutcome::Accepted {
        channel_refund_no: Some("5000".into()),
    };
    let spec = payment()
        .given([
            submitted(t(0), "10.00", WECHAT_CODE),
            paid(t(0), "4200000001"),
            refund_requested(t(100), "R1", "4.00"),
        ])
        .when_at(t(100), refund_answer("R1", accepted.clone()))
        .then([decided(refund_pending(
            t(100),
            "R1",
            accepted,
            Some(t(120)),
        ))]);
    assert_eq!(spec.refund_status("R1"), RefundStatus::Pending);
    assert_eq!(
        spec.status(),
        PaymentStatus::Paid,
        "no money has gone back yet"
    );
    assert_eq!(spec.next(), Some((query_r1(), 120)));

    let spec = spec
        .when_at(t(120), refund_answer("R1", RefundOutcome::Processing))
        .then([decided(refund_pending(
            t(120),
            "R1",
            RefundOutcome::Processing,
            Some(t(160)),
        ))]);
    assert_eq!(spec.next(), Some((query_r1(), 160)));

    let spec = spec
        .when_at(
            t(160),
            refund_answer(
                "R1",
                RefundOutcome::Succeeded {
                    channel_refund_no: Some("5000".into()),
                    refunded_at: t(158),
                },
            ),
        )
        .then([Event {
            at: t(160),
            command_id: WHEN,
            key_name: None,
            fact: Fact::Refunded(Refunded {
                refund_no: refund_no("R1"),
                amount: money("4.00"),
                channel_refund_no: Some("5000".into()),
                refunded_at: t(158),
                codes: ChannelCodes::new(),
            }),
        }]);
    assert_eq!(spec.status(), PaymentStatus::PartiallyRefunded);

    let spec = spec
        .when_at(t(200), refund("R2", "6.00"))
        .then([decided(refund_requested(t(200), "R2", "6.00"))])
        .when_at(
            t(201),
            refund_answer(
                "R2",
                RefundOutcome::Succeeded {
                    channel_refund_no: None,
                    refunded_at: t(201),
                },
            ),
        )
        .then([decided(refunded(t(201), "R2", "6.00"))]);
    assert_eq!(spec.status(), PaymentStatus::Refunded);
    assert!(spec.status().is_terminal());
    assert_eq!(spec.next(), None);
}

#[test]
fn a_refund_lost_in_a_crash_is_found_by_query_and_resent_with_the_same_number() {
    // Rule: the refund number is the idempotency key; an unknown refund is resent, never renumbered.
    let mut spec = payment().given([
        submitted(t(0), "10.00", WECHAT_CODE),
        paid(t(0), "4200000001"),
        refund_requested(t(0), "R1", "1.00"),
    ]);
    assert_eq!(
        spec.next(),
        Some((
            Action::QueryRefund {
                refund_no: refund_no("R1")
            },
            10
        ))
    );
    // The query and every resend meet "not found": after 5 calls in all, an operator takes over.
    for secs in [10, 11, 12, 13] {
        spec = spec
            .when_at(t(secs), refund_answer("R1", RefundOutcome::NotFound))
            .then([decided(refund_pending(
                t(secs),
                "R1",
                RefundOutcome::NotFound,
                None,
            ))]);
        let resend = Action::CallRefund {
            refund_no: refund_no("R1"),
        };
        assert_eq!(spec.next(), Some((resend, secs)));
    }
    let spec = spec
        .when_at(t(14), refund_answer("R1", RefundOutcome::NotFound))
        .then(
            [
                refund_pending(t(14), "R1", RefundOutcome::NotFound, None),
                manual_review(
                    t(14),
                    Some("R1"),
                    ManualReviewReason::RefundAttemptsExhausted { attempts: 5 },
                ),
            ]
            .map(decided),
        );
    assert_eq!(spec.refund_status("R1"), RefundStatus::ManualReview);

    let resolution = Resolution::RefundFailed {
        refund_no: refund_no("R1"),
    };
    let spec = spec
        .when_at(
            t(100),
            resolve(resolution.clone(), "never reached the channel"),
        )
        .then([decided(operator_resolved(
            t(100),
            resolution,
            "never reached the channel",
        ))]);
    assert_eq!(spec.refund_status("R1"), RefundStatus::Failed);
    assert_eq!(spec.next(), None, "a failed refund is not sent again");
}

#[test]
fn a_refund_not_final_by_its_settle_by_time_goes_to_an_operator() {
    // Rule: a refund is followed until final, but not forever.
    let mut spec = payment().given([
        submitted(t(0), "10.00", WECHAT_CODE),
        paid(t(0), "4200000001"),
        refund_requested(t(0), "R1", "1.00"),
    ]);
    // Queried 10 s after the request, then 20, 40, 80 s... apart, an hour at the most.
    let (mut due, mut gap, mut queries) = (10, 20, 0);
    while due < REFUND_SETTLE_BY {
        let query = Action::QueryRefund {
            refund_no: refund_no("R1"),
        };
        assert_eq!(spec.next(), Some((query, due)));
        spec = spec
            .when_at(t(due), refund_answer("R1", RefundOutcome::Processing))
            .then([decided(refund_pending(
                t(due),
                "R1",
                RefundOutcome::Processing,
                Some(t(due + gap)),
            ))]);
        due += gap;
        gap = (gap * 2).min(3600);
        queries += 1;
    }
    assert_eq!(queries, 93, "polling ends");
    let not_settled = ManualReviewReason::RefundNotSettled;
    let escalate = Action::EscalateToManualReview {
        refund_no: Some(refund_no("R1")),
        reason: not_settled.clone(),
    };
    assert_eq!(spec.next(), Some((escalate, REFUND_SETTLE_BY)));
    let escalate = || CommandKind::EscalateToManualReview {
        refund_no: Some(refund_no("R1")),
    };
    spec.when_at(t(REFUND_SETTLE_BY - 1), escalate())
        // Not before it is due.
        .then_rejected(Rejection::NothingToEscalate)
        .when_at(t(REFUND_SETTLE_BY), escalate())
        .then([decided(manual_review(
            t(REFUND_SETTLE_BY),
            Some("R1"),
            not_settled,
        ))]);
}

#[test]
fn an_abnormal_refund_goes_to_an_operator() {
    // Rule: WeChat's CHANGE (refund to a closed bank card) needs a human.
    let abnormal = ManualReviewReason::RefundAbnormal {
        code: "CHANGE".into(),
    };
    let spec = payment()
        .given([
            submitted(t(0), "10.00", WECHAT_CODE),
            paid(t(0), "4200000001"),
            refund_requested(t(0), "R1", "1.00"),
        ])
        .when_at(
            t(10),
            refund_answer(
                "R1",
                RefundOutcome::Abnormal {
                    code: "CHANGE".into(),
                },
            ),
        )
        .then([decided(manual_review(t(10), Some("R1"), abnormal))]);
    assert_eq!(spec.refund_status("R1"), RefundStatus::ManualReview);
    assert_eq!(spec.status(), PaymentStatus::Paid);
}

#[test]
fn a_refund_outside_its_window_is_rejected() {
    // Rule: refunds within 1 year (WeChat) or 3 months (Alipay) of payment.
    let utc = |y, m, d, h, min, s| Utc.with_ymd_and_hms(y, m, d, h, min, s).unwrap();
    // Paid 2026-11-22 02:00 UTC.
    assert_eq!(t(0), utc(2026, 11, 22, 2, 0, 0));
    payment()
        .given([
            submitted(t(0), "10.00", WECHAT_CODE),
            paid(t(0), "4200000001"),
        ])
        .when_at(utc(2027, 11, 22, 2, 0, 0), refund("R1", "1.00"))
        .then_rejected(Rejection::RefundWindowClosed)
        .when_at(utc(2027, 11, 22, 1, 59, 59), refund("R1", "1.00"))
        .then([decided(refund_requested(
            utc(2027, 11, 22, 1, 59, 59),
            "R1",
            "1.00",
        ))]);

    payment()
        .given([submitted(t(0), "10.00", ALIPAY_CODE), paid(t(0), "2026")])
        .when_at(utc(2027, 2, 22, 2, 0, 0), refund("R1", "1.00"))
        .then_rejected(Rejection::RefundWindowClosed);
}

#[test]
fn at_most_50_refunds_per_order() {
    // Rule: WeChat allows at most 50 refunds on one order; failed ones count.
    payment()
        .given([
            submitted(t(0), "100.00", WECHAT_CODE),
            paid(t(0), "4200000001"),
        ])
        .given((0..49).map(|n| refund_requested(t(60), &format!("R{n}"), "0.01")))
        .given([refund_failed(t(70), "R0", "FAIL")])
        .when_at(t(80), refund("R49", "0.01"))
        .then([decided(refund_requested(t(80), "R49", "0.01"))])
        .when_at(t(81), refund("R50", "0.01"))
        .then_rejected(Rejection::RefundLimitReached { max: 50 });
}

#[test]
fn a_paid_order_with_refunds_cannot_be_revoked() {
    // Rule: revoke returns everything; once refunds exist only refunds may follow.
    payment()
        .given([
            submitted(t(0), "10.00", WECHAT_CODE),
            paid(t(0), "4200000001"),
            refund_requested(t(0), "R1", "1.00"),
        ])
        .when_at(t(1), revoke(RevokeReason::MerchantRequested))
        .then_rejected(Rejection::RevokeAfterRefund);
}

#[test]
fn rejections_come_in_precedence_order() {
    // Rule: the first broken rule is reported: state before window before limit before balance.
    payment()
        .given(failed_then_revoking("10.00", WECHAT_CODE, "NOTENOUGH"))
        .given([revoked(t(15), RevokeResult::Closed, 1)])
        .when_at(t(400 * DAY), refund("R1", "99.00"))
        .then_rejected(Rejection::NotRefundable {
            status: PaymentStatus::Closed,
        });

    payment()
        .given([
            submitted(t(0), "10.00", WECHAT_CODE),
            paid(t(0), "4200000001"),
            refund_requested(t(0), "R1", "1.00"),
        ])
        .when_at(t(400 * DAY), refund("R1", "99.00"))
        .then_rejected(Rejection::RefundNoInUse)
        .when_at(t(400 * DAY), refund("R2", "99.00"))
        .then_rejected(Rejection::RefundWindowClosed);

    payment()
        .given([])
        .when_at(t(0), refund("R1", "1.00"))
        .then_rejected(Rejection::OrderNotFound)
        .when_at(t(0), revoke(RevokeReason::MerchantRequested))
        .then_rejected(Rejection::OrderNotFound);
}

#[test]
fn a_second_submission_of_the_same_order_is_refused() {
    // Rule: never resubmit a payment code; the order number is taken.
    assert_eq!(Rejection::AlreadySubmitted.code(), "order_no_conflict");
    payment()
        .given([submitted(t(0), "10.00", WECHAT_CODE)])
        .when_at(t(1), submit("10.00", WECHAT_CODE))
        .then_rejected(Rejection::AlreadySubmitted);
}

#[test]
fn the_submitted_event_never_holds_the_full_payment_code() {
    // Rule: the full auth_code is never stored, not even encrypted.
    let masked = AuthCode::parse(WECHAT_CODE).unwrap().masked();
    assert_eq!(masked.as_str(), "13**************89");
    let recorded = Event {
        at: t(0),
        command_id: WHEN,
        key_name: None,
        fact: Fact::Submitted(Submitted {
            merchant_id: MerchantId::parse("demo").unwrap(),
            order_no: OrderNo::parse("A20261122-0001").unwrap(),
            channel: Channel::Wechat,
            amount: money("10.00"),
            currency: Currency::Cny,
            subject: "Coffee".into(),
            auth_code: masked,
            auth_code_fingerprint: None,
            // The policy's times, fixed in the event.
            deadline_at: t(30),
            first_query_at: t(5),
            revoke_not_before: t(15),
        }),
    };
    let spec = payment()
        .given([])
        .when_at(t(0), submit("10.00", WECHAT_CODE))
        .then([recorded.clone()]);
    let stored = crate::stored::encode(&recorded);
    let text = String::from_utf8(stored.data).unwrap();
    assert!(!text.contains(WECHAT_CODE));
    assert!(text.contains("13**************89"));
    match spec.state() {
        PaymentState::Paying(paying) => assert_eq!(paying.order.channel, Channel::Wechat),
        other => panic!("{other:?}"),
    }
    // The builder of given histories writes what the decider records.
    assert_eq!(decided(submitted(t(0), "10.00", WECHAT_CODE)), recorded);
}

#[test]
fn statement_lines_match_once_and_disagreeing_lines_are_refused() {
    // Rule: reconciliation records a matched line once; a line that disagrees is a finding, not a match.
    let line = StatementLine {
        channel: Channel::Wechat,
        statement_date: NaiveDate::from_ymd_opt(2026, 11, 22).unwrap(),
        kind: StatementLineKind::Payment,
        refund_no: None,
        amount: money("10.00"),
        channel_trade_no: "4200000001".into(),
    };
    let wrong_amount = StatementLine {
        amount: money("9.99"),
        ..line.clone()
    };
    let refund_line = StatementLine {
        kind: StatementLineKind::Refund,
        refund_no: Some(refund_no("R1")),
        ..line.clone()
    };
    let matching = CommandKind::MatchStatementLine;
    let spec = payment()
        .given([
            submitted(t(0), "10.00", WECHAT_CODE),
            paid(t(0), "4200000001"),
        ])
        .when_at(t(DAY), matching(line.clone()))
        .then([decided(line_matched(t(DAY), line.clone()))])
        .when_at(t(DAY + 1), matching(line))
        .then([])
        .when_at(t(DAY + 2), matching(wrong_amount))
        .then_rejected(Rejection::StatementLineDisagrees)
        .when_at(t(DAY + 3), matching(refund_line))
        .then_rejected(Rejection::StatementLineDisagrees);
    assert_eq!(
        spec.status(),
        PaymentStatus::Paid,
        "matching never changes the status"
    );
}

#[test]
fn a_revoke_that_does_not_say_what_it_did_is_read_from_what_the_ledger_knows() {
    // Rule: WeChat's reverse never says closed or refunded. A payment the
    // ledger recorded ends reversed; otherwise the customer may have paid
    // while the revoke was in flight, so the order is `revoked` until the
    // day's statement (or a late answer) says whether money moved.
    let paid_order = payment()
        .given([
            submitted(t(0), "10.00", WECHAT_CODE),
            paid(t(0), "4200000001"),
            revoke_requested(t(20), RevokeReason::MerchantRequested, t(20)),
        ])
        .when_at(t(20), revoke_done(RevokeResult::Unspecified))
        .then([decided(revoked(t(20), RevokeResult::Unspecified, 1))]);
    assert_eq!(paid_order.status(), PaymentStatus::Reversed);

    // A payment the channel had already failed definitively moved no money.
    let failed = payment()
        .given(failed_then_revoking("10.00", WECHAT_CODE, "NOTENOUGH"))
        .when_at(t(15), revoke_done(RevokeResult::Unspecified))
        .then([decided(revoked(t(15), RevokeResult::Unspecified, 1))]);
    assert_eq!(failed.status(), PaymentStatus::Closed);

    let mut waited = vec![submitted(t(0), "10.00", WECHAT_CODE)];
    waited.extend(polled_to_the_deadline(QueryOutcome::WaitingForPassword));
    let unconfirmed = payment()
        .given(waited)
        .when_at(t(30), revoke_done(RevokeResult::Unspecified))
        .then([decided(revoked(t(30), RevokeResult::Unspecified, 1))]);
    assert_eq!(unconfirmed.status(), PaymentStatus::Revoked);
    assert_eq!(
        unconfirmed.next(),
        None,
        "the statement settles it, not a timer"
    );
    assert_ne!(unconfirmed.status(), PaymentStatus::Closed);

    let day = NaiveDate::from_ymd_opt(2026, 11, 22).unwrap();
    let settle = |money_moved| CommandKind::SettleRevoke {
        money_moved,
        statement_date: day,
    };
    let settled = |money_moved| {
        decided(earlier(
            t(DAY),
            Fact::RevokeSettled(RevokeSettled {
                money_moved,
                by: SettledBy::Statement { date: day },
            }),
        ))
    };
    // The statement lists nothing of the order: no money moved.
    let closed = unconfirmed
        .clone()
        .when_at(t(DAY), settle(false))
        .then([settled(false)]);
    assert_eq!(closed.status(), PaymentStatus::Closed);
    closed
        .when_at(t(DAY + 1), settle(false))
        .then_rejected(Rejection::NothingToSettle);
    // It lists the payment and its REVOKED line: money moved and came back.
    let reversed = unconfirmed
        .clone()
        .when_at(t(DAY), settle(true))
        .then([settled(true)]);
    assert_eq!(reversed.status(), PaymentStatus::Reversed);

    // A late pay answer proving the payment settles it too: reversed.
    let late_paid = PayOutcome::Paid {
        channel_trade_no: "4200000009".into(),
        paid_at: None,
    };
    let late = unconfirmed
        .when_at(t(16), pay_answer(late_paid.clone()))
        .then([
            decided(earlier(
                t(16),
                Fact::AnswerNoted(AnswerNoted {
                    answer: NotedAnswer::Pay { outcome: late_paid },
                    codes: ChannelCodes::new(),
                }),
            )),
            decided(earlier(
                t(16),
                Fact::Paid(Paid {
                    channel_trade_no: "4200000009".into(),
                    // The answer gave no time: the time it was recorded, said so.
                    paid_at: t(16),
                    paid_at_stated: false,
                    source: PaidSource::PayAnswer,
                    codes: ChannelCodes::new(),
                }),
            )),
        ]);
    assert_eq!(late.status(), PaymentStatus::Reversed);
}

#[test]
fn an_answer_that_arrives_after_the_order_moved_on_is_kept() {
    // Rule: every channel answer is an event; one that proves a payment
    // during a revoke means the revoke returns that payment.
    let paid_outcome = QueryOutcome::Paid {
        channel_trade_no: "4200000001".into(),
        paid_at: Some(t(14)),
    };
    let noted = |at, outcome: QueryOutcome| {
        decided(earlier(
            at,
            Fact::AnswerNoted(AnswerNoted {
                answer: NotedAnswer::Query { outcome },
                codes: ChannelCodes::new(),
            }),
        ))
    };
    // A query in flight while the merchant's revoke was decided answers paid.
    let revoking = payment()
        .given([
            submitted(t(0), "10.00", WECHAT_CODE),
            user_paying(t(1), t(6)),
            revoke_requested(t(10), RevokeReason::MerchantRequested, t(15)),
        ])
        .when_at(t(14), query_answer(paid_outcome.clone()))
        .then([
            noted(t(14), paid_outcome.clone()),
            decided(earlier(
                t(14),
                Fact::Paid(Paid {
                    channel_trade_no: "4200000001".into(),
                    paid_at: t(14),
                    paid_at_stated: true,
                    source: PaidSource::Query,
                    codes: ChannelCodes::new(),
                }),
            )),
        ]);
    assert_eq!(revoking.status(), PaymentStatus::Revoking);
    // The revoke then says nothing of what it did: the payment it returned is known.
    let reversed = revoking
        .when_at(t(15), revoke_done(RevokeResult::Unspecified))
        .then([decided(revoked(t(15), RevokeResult::Unspecified, 1))]);
    assert_eq!(reversed.status(), PaymentStatus::Reversed);
    // After the end, an answer is still kept and changes nothing.
    let after = reversed
        .when_at(t(30), query_answer(QueryOutcome::Closed))
        .then([noted(t(30), QueryOutcome::Closed)]);
    assert_eq!(after.status(), PaymentStatus::Reversed);
}

#[test]
fn a_pay_answer_that_comes_after_the_deadline_is_still_followed_by_a_query() {
    // Rule: query first; revoke only when the query gives no clear result.
    let spec = payment()
        .given([submitted(t(0), "10.00", WECHAT_CODE)])
        .when_at(
            t(40),
            pay_answer(PayOutcome::Unknown {
                reason: "timeout".into(),
            }),
        )
        .then([Event {
            at: t(40),
            command_id: WHEN,
            key_name: None,
            fact: Fact::PayAnswerUnknown(PayAnswerUnknown {
                reason: "timeout".into(),
                codes: ChannelCodes::new(),
                next_query_at: t(45),
            }),
        }]);
    assert_eq!(
        spec.next(),
        Some((Action::QueryPayment, 30)),
        "due at once: the deadline has passed"
    );
    let paid = QueryOutcome::Paid {
        channel_trade_no: "42".into(),
        paid_at: Some(t(35)),
    };
    let spec = spec
        .when_at(t(40), query_answer(paid))
        .then(found_paid(t(40), "42", t(35)).map(decided));
    assert_eq!(spec.status(), PaymentStatus::Paid);

    let waiting = payment()
        .given([
            submitted(t(0), "10.00", WECHAT_CODE),
            user_paying(t(40), t(45)),
        ])
        .when_at(t(40), query_answer(QueryOutcome::WaitingForPassword))
        .then([decided(query_result(
            t(40),
            QueryOutcome::WaitingForPassword,
            Some(t(45)),
        ))]);
    assert_eq!(
        waiting.next(),
        Some((
            Action::StartRevoke {
                reason: RevokeReason::DeadlineReached
            },
            30
        ))
    );
}

#[test]
fn another_trade_under_the_order_number_goes_to_an_operator_not_to_a_revoke() {
    // Rule: a query showing a paid trade with another amount (or paid before
    // the order existed) is not this order's payment, and a revoke would
    // return the other trade's money: an operator decides.
    let other = QueryOutcome::OtherTrade {
        reason: "total_fee differs".into(),
    };
    let spec = payment()
        .given([
            submitted(t(0), "10.00", WECHAT_CODE),
            user_paying(t(1), t(6)),
        ])
        .when_at(t(6), query_answer(other.clone()))
        .then([
            decided(query_result(t(6), other, None)),
            decided(manual_review(
                t(6),
                None,
                ManualReviewReason::OrderNoUsedByAnotherTrade,
            )),
        ]);
    assert_eq!(spec.status(), PaymentStatus::ManualReview);
    assert_eq!(
        spec.next(),
        None,
        "no revoke, no query: an operator decides"
    );
}

#[test]
fn a_pay_call_that_could_not_be_made_in_time_closes_the_order_without_a_revoke() {
    // Rule: a call the rate limit held past its bound was never made: the
    // channel never saw the order, so it is closed, with nothing to revoke.
    let not_sent = PayOutcome::NotSent {
        reason: "no turn under the pay rate limit".into(),
    };
    let spec = payment()
        .given([submitted(t(0), "10.00", WECHAT_CODE)])
        .when_at(t(15), pay_answer(not_sent))
        .then([decided(earlier(
            t(15),
            Fact::PayNotSent(PayNotSent {
                reason: "no turn under the pay rate limit".into(),
            }),
        ))]);
    assert_eq!(spec.status(), PaymentStatus::Closed);
    assert_eq!(spec.next(), None);
    match spec.state() {
        PaymentState::Closed(closed) => {
            assert_eq!(closed.failure_code.as_deref(), Some(PAY_NOT_SENT));
        }
        other => panic!("{other:?}"),
    }
}
