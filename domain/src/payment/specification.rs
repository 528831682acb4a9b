//! The specification of a payment's life, as given/when/then scenarios: one
//! per rule of docs/rules.md. Each test's first line says
//! which rule it shows.

use chrono::{DateTime, Duration, TimeZone, Utc};
use uuid::Uuid;

use super::*;
use crate::auth_code::AuthCode;
use crate::channel::{Channel, ChannelCodes};
use crate::decider::Decider;
use crate::ids::{CommandId, MerchantId, OrderNo, RefundNo};
use crate::money::Money;
use crate::policy::Policy;

const WECHAT_CODE: &str = "134567890123456789";
const ALIPAY_CODE: &str = "284567890123456789";

/// A payment under test: its history, its state, and a clock in seconds after submission.
struct Scenario {
    decider: PaymentDecider,
    history: Vec<Event>,
    state: PaymentState,
    start: DateTime<Utc>,
    now: DateTime<Utc>,
    commands: u128,
}

impl Scenario {
    fn new() -> Self {
        // 02:00 UTC is 10:00 in China: the Alipay day has room on both sides.
        let start = Utc.with_ymd_and_hms(2026, 11, 22, 2, 0, 0).unwrap();
        Scenario {
            decider: PaymentDecider::new(Policy::default()),
            history: Vec::new(),
            state: PaymentState::Initial,
            start,
            now: start,
            commands: 0,
        }
    }

    /// Given a payment of `amount` submitted at second 0 with `code`.
    fn submitted(code: &str, amount: &str) -> Self {
        let mut scenario = Scenario::new();
        scenario
            .when(CommandKind::SubmitPayment(SubmitPayment {
                merchant_id: MerchantId::parse("demo").unwrap(),
                order_no: OrderNo::parse("A20261122-0001").unwrap(),
                auth_code: AuthCode::parse(code).unwrap(),
                amount: amount.parse().unwrap(),
                subject: "Coffee".to_owned(),
            }))
            .unwrap();
        scenario
    }

    fn paid_wechat(amount: &str) -> Self {
        let mut scenario = Scenario::submitted(WECHAT_CODE, amount);
        scenario.pay_answer(PayOutcome::Paid {
            channel_trade_no: "4200000001".into(),
            paid_at: scenario.now,
        });
        scenario
    }

    fn at(&mut self, secs: i64) -> &mut Self {
        self.now = self.start + Duration::seconds(secs);
        self
    }

    fn at_time(&mut self, now: DateTime<Utc>) -> &mut Self {
        self.now = now;
        self
    }

    /// When `command` is decided now; its events are recorded. Returns their stored names.
    fn when(&mut self, kind: CommandKind) -> Result<Vec<&'static str>, Rejection> {
        self.commands += 1;
        let command = Command::new(CommandId(Uuid::from_u128(self.commands)), kind);
        let events = self.decider.decide(&self.state, &command, self.now)?;
        let names = events.iter().map(|e| e.fact.stored_name()).collect();
        for event in events {
            self.state = evolve(self.state.clone(), &event).unwrap_or_else(|refused| {
                panic!("decided {event:?}, refused: {}", refused.violation)
            });
            self.history.push(event);
        }
        Ok(names)
    }

    fn pay_answer(&mut self, outcome: PayOutcome) -> Vec<&'static str> {
        self.when(CommandKind::RecordPayAnswer(ChannelAnswer::new(outcome)))
            .unwrap()
    }

    fn query_answer(&mut self, outcome: QueryOutcome) -> Vec<&'static str> {
        self.when(CommandKind::RecordQueryResult(ChannelAnswer::new(outcome)))
            .unwrap()
    }

    fn revoke_answer(&mut self, outcome: RevokeOutcome) -> Vec<&'static str> {
        self.when(CommandKind::RecordRevokeAnswer(ChannelAnswer::new(outcome)))
            .unwrap()
    }

    fn refund(&mut self, refund_no: &str, amount: &str) -> Result<Vec<&'static str>, Rejection> {
        self.when(CommandKind::RequestRefund(RequestRefund {
            refund_no: RefundNo::parse(refund_no).unwrap(),
            amount: amount.parse().unwrap(),
            reason: "returned goods".into(),
        }))
    }

    fn refund_answer(&mut self, refund_no: &str, outcome: RefundOutcome) -> Vec<&'static str> {
        self.when(CommandKind::RecordRefundAnswer {
            refund_no: RefundNo::parse(refund_no).unwrap(),
            answer: ChannelAnswer::new(outcome),
        })
        .unwrap()
    }

    fn status(&self) -> PaymentStatus {
        self.state.status().unwrap()
    }

    fn next(&self) -> Option<(Action, i64)> {
        next_action(&self.state).map(|(action, due)| (action, (due - self.start).num_seconds()))
    }

    /// Carries out the next action at its due time with the given channel outcome.
    fn run_next_revoke(&mut self, outcome: RevokeOutcome) -> Vec<&'static str> {
        let (action, due) = self.next().expect("an action is due");
        assert!(
            matches!(action, Action::CallRevoke { .. }),
            "expected a revoke, got {action:?}"
        );
        self.at(due);
        self.revoke_answer(outcome)
    }

    fn refund_status(&self, refund_no: &str) -> RefundStatus {
        match &self.state {
            PaymentState::Paid(paid) => paid
                .refund(&RefundNo::parse(refund_no).unwrap())
                .unwrap()
                .status(),
            other => panic!("not paid: {other:?}"),
        }
    }
}

fn unknown(reason: &str) -> String {
    reason.to_owned()
}

#[test]
fn paid_at_once_settles_without_further_action() {
    // Rule: a pay answer of success is final; nothing else is called.
    let scenario = Scenario::paid_wechat("12.34");
    assert_eq!(scenario.status(), PaymentStatus::Paid);
    assert_eq!(scenario.next(), None);
    assert_eq!(scenario.history.len(), 2);
}

#[test]
fn password_wait_then_paid() {
    // Rule: USERPAYING means poll the query API every 5 s; the query's trade state decides.
    let mut s = Scenario::submitted(WECHAT_CODE, "2500.00");
    assert_eq!(s.pay_answer(PayOutcome::WaitingForPassword), ["UserPaying"]);
    assert_eq!(s.status(), PaymentStatus::Paying);
    assert_eq!(s.next(), Some((Action::QueryPayment, 5)));

    s.at(5);
    assert_eq!(
        s.query_answer(QueryOutcome::WaitingForPassword),
        ["QueryResult"]
    );
    assert_eq!(s.next(), Some((Action::QueryPayment, 10)));

    s.at(10);
    let paid = QueryOutcome::Paid {
        channel_trade_no: "4200000002".into(),
        paid_at: s.now,
    };
    assert_eq!(s.query_answer(paid), ["QueryResult", "Paid"]);
    assert_eq!(s.status(), PaymentStatus::Paid);
    assert_eq!(s.next(), None);
}

#[test]
fn password_wait_then_deadline_then_revoke() {
    // Rule: still waiting after 30 s of polling means revoke; an unpaid order revoked is closed.
    let mut s = Scenario::submitted(WECHAT_CODE, "2500.00");
    s.pay_answer(PayOutcome::WaitingForPassword);
    for secs in [5, 10, 15, 20, 25] {
        assert_eq!(s.next(), Some((Action::QueryPayment, secs)));
        s.at(secs).query_answer(QueryOutcome::WaitingForPassword);
    }
    // The next query would be at 30 s, the deadline: revoke instead.
    let start_revoke = Action::StartRevoke {
        reason: RevokeReason::DeadlineReached,
    };
    assert_eq!(s.next(), Some((start_revoke, 30)));
    s.at(30);
    assert_eq!(
        s.when(CommandKind::RequestRevoke {
            reason: RevokeReason::DeadlineReached
        })
        .unwrap(),
        ["RevokeRequested"]
    );
    assert_eq!(s.status(), PaymentStatus::Revoking);
    assert_eq!(s.next(), Some((Action::CallRevoke { attempt: 1 }, 30)));
    assert_eq!(
        s.run_next_revoke(RevokeOutcome::Done {
            result: RevokeResult::Closed
        }),
        ["Revoked"]
    );
    assert_eq!(s.status(), PaymentStatus::Closed);
    assert_eq!(s.next(), None);
}

#[test]
fn a_system_error_on_pay_is_not_a_failure() {
    // Rule: result_code=FAIL with SYSTEMERROR (or a timeout) proves nothing: query, never fail.
    let mut s = Scenario::submitted(WECHAT_CODE, "10.00");
    let answer = ChannelAnswer::with_codes(
        PayOutcome::Unknown {
            reason: unknown("SYSTEMERROR"),
        },
        ChannelCodes::new()
            .with("result_code", "FAIL")
            .with("err_code", "SYSTEMERROR"),
    );
    assert_eq!(
        s.when(CommandKind::RecordPayAnswer(answer)).unwrap(),
        ["PayAnswerUnknown"]
    );
    assert_eq!(s.status(), PaymentStatus::Paying);
    assert_eq!(s.next(), Some((Action::QueryPayment, 5)));
    // The raw codes are kept for the auditor.
    match &s.history[1].fact {
        Fact::PayAnswerUnknown(unknown) => {
            assert_eq!(unknown.codes.get("err_code"), Some("SYSTEMERROR"))
        }
        other => panic!("{other:?}"),
    }
    // And the query finds it paid.
    s.at(5);
    s.query_answer(QueryOutcome::Paid {
        channel_trade_no: "42".into(),
        paid_at: s.now,
    });
    assert_eq!(s.status(), PaymentStatus::Paid);
}

#[test]
fn a_definitive_failure_still_closes_with_a_revoke_no_sooner_than_15_seconds() {
    // Rule: after NOTENOUGH the order is closed with a revoke (closed loop), 15 s after pay at the earliest.
    let mut s = Scenario::submitted(WECHAT_CODE, "10.00");
    s.at(1);
    assert_eq!(
        s.pay_answer(PayOutcome::Failed {
            code: "NOTENOUGH".into()
        }),
        ["PaymentFailed", "RevokeRequested"]
    );
    assert_eq!(s.status(), PaymentStatus::Revoking);
    assert_eq!(s.next(), Some((Action::CallRevoke { attempt: 1 }, 15)));
    s.run_next_revoke(RevokeOutcome::Done {
        result: RevokeResult::Closed,
    });
    assert_eq!(s.status(), PaymentStatus::Closed);
    match &s.state {
        PaymentState::Closed(closed) => {
            assert_eq!(closed.failure_code.as_deref(), Some("NOTENOUGH"))
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn recall_y_is_retried_with_back_off_then_given_to_an_operator() {
    // Rule: recall=Y means call again; after repeated failures a human takes over, never a loop.
    let mut s = Scenario::submitted(WECHAT_CODE, "10.00");
    s.pay_answer(PayOutcome::Failed {
        code: "AUTHCODEEXPIRE".into(),
    });
    let retry = || RevokeOutcome::MustRetry {
        reason: "recall=Y".into(),
    };
    let mut dues = vec![];
    for attempt in 1..=5 {
        let (action, due) = s.next().unwrap();
        assert_eq!(action, Action::CallRevoke { attempt });
        dues.push(due);
        assert_eq!(s.run_next_revoke(retry()), ["RevokeRetryScheduled"]);
    }
    // 15 s earliest, then 5, 10, 20, 40 s of back-off.
    assert_eq!(dues, vec![15, 20, 30, 50, 90]);
    let (action, due) = s.next().unwrap();
    assert_eq!(
        action,
        Action::EscalateToManualReview {
            refund_no: None,
            reason: ManualReviewReason::RevokeAttemptsExhausted { attempts: 5 }
        }
    );
    assert_eq!(due, 90);
    s.at(90);
    assert_eq!(
        s.when(CommandKind::EscalateToManualReview { refund_no: None })
            .unwrap(),
        ["ManualReviewRequired"]
    );
    assert_eq!(s.status(), PaymentStatus::ManualReview);
    assert_eq!(s.next(), None, "waits for an operator");
    // A late retry answer is refused rather than recorded against the wrong step.
    let late = s.when(CommandKind::RecordRevokeAnswer(ChannelAnswer::new(retry())));
    assert_eq!(
        late,
        Err(Rejection::UnexpectedAnswer {
            status: PaymentStatus::ManualReview
        })
    );
}

#[test]
fn an_operator_resolves_a_manual_review() {
    // Rule: the operator's verdict is recorded as a fact and settles the order.
    let mut s = Scenario::submitted(WECHAT_CODE, "10.00");
    s.pay_answer(PayOutcome::Failed {
        code: "AUTHCODEEXPIRE".into(),
    });
    for _ in 0..5 {
        s.run_next_revoke(RevokeOutcome::Unknown {
            reason: "timeout".into(),
        });
    }
    s.at(200)
        .when(CommandKind::EscalateToManualReview { refund_no: None })
        .unwrap();
    let resolve = CommandKind::Resolve {
        resolution: Resolution::Closed,
        note: "checked with WeChat".into(),
    };
    assert_eq!(s.when(resolve.clone()).unwrap(), ["OperatorResolved"]);
    assert_eq!(s.status(), PaymentStatus::Closed);
    assert_eq!(s.when(resolve), Err(Rejection::NotInManualReview));
}

#[test]
fn a_payment_landing_between_the_last_query_and_the_revoke_ends_reversed() {
    // Rule: the revoke then refunds the payment, and the ledger shows both.
    let mut s = Scenario::submitted(ALIPAY_CODE, "2500.00");
    s.pay_answer(PayOutcome::WaitingForPassword);
    for secs in [5, 10, 15, 20, 25] {
        s.at(secs).query_answer(QueryOutcome::WaitingForPassword);
    }
    s.at(30)
        .when(CommandKind::RequestRevoke {
            reason: RevokeReason::DeadlineReached,
        })
        .unwrap();
    assert_eq!(
        s.run_next_revoke(RevokeOutcome::Done {
            result: RevokeResult::Refunded
        }),
        ["Revoked"]
    );
    assert_eq!(s.status(), PaymentStatus::Reversed);
    assert_eq!(s.next(), None);
    // Money moved and came back: refunds are impossible, the statement's two lines both match.
    assert_eq!(
        s.refund("R1", "1.00"),
        Err(Rejection::NotRefundable {
            status: PaymentStatus::Reversed
        })
    );
}

#[test]
fn a_revoke_that_finds_the_order_unknown_to_the_channel_closes_it() {
    // Rule: revoking an order the channel does not know succeeds (a crash before the pay call).
    let mut s = Scenario::submitted(WECHAT_CODE, "10.00");
    // No pay answer was ever recorded: recovery is by query, never by paying again.
    assert_eq!(s.next(), Some((Action::QueryPayment, 5)));
    for secs in [5, 10, 15, 20, 25] {
        s.at(secs).query_answer(QueryOutcome::NotFound);
    }
    s.at(30)
        .when(CommandKind::RequestRevoke {
            reason: RevokeReason::DeadlineReached,
        })
        .unwrap();
    s.run_next_revoke(RevokeOutcome::Done {
        result: RevokeResult::Closed,
    });
    assert_eq!(s.status(), PaymentStatus::Closed);
}

#[test]
fn an_order_the_channel_closed_by_itself_is_still_closed_with_our_revoke() {
    // Rule: WeChat revokes unpaid orders after 45 s; a query saying REVOKED/CLOSED closes the loop.
    let mut s = Scenario::submitted(WECHAT_CODE, "10.00");
    s.pay_answer(PayOutcome::WaitingForPassword);
    s.at(5);
    assert_eq!(
        s.query_answer(QueryOutcome::Closed),
        ["QueryResult", "PaymentFailed", "RevokeRequested"]
    );
    assert_eq!(s.next(), Some((Action::CallRevoke { attempt: 1 }, 15)));
}

#[test]
fn a_revoke_that_closes_an_order_recorded_as_paid_goes_to_an_operator() {
    // Rule: a channel answer that contradicts recorded money movement never silently wins.
    let mut s = Scenario::paid_wechat("10.00");
    s.at(20)
        .when(CommandKind::RequestRevoke {
            reason: RevokeReason::MerchantRequested,
        })
        .unwrap();
    assert_eq!(
        s.run_next_revoke(RevokeOutcome::Done {
            result: RevokeResult::Closed
        }),
        ["Revoked", "ManualReviewRequired"]
    );
    assert_eq!(s.status(), PaymentStatus::ManualReview);
}

#[test]
fn the_merchant_revokes_a_paid_order_and_it_is_reversed() {
    // Rule: revoke refunds a paid order in full; a second revoke request changes nothing.
    let mut s = Scenario::paid_wechat("10.00");
    s.at(60);
    let revoke = CommandKind::RequestRevoke {
        reason: RevokeReason::MerchantRequested,
    };
    assert_eq!(s.when(revoke.clone()).unwrap(), ["RevokeRequested"]);
    assert_eq!(s.when(revoke).unwrap(), Vec::<&str>::new());
    s.run_next_revoke(RevokeOutcome::Done {
        result: RevokeResult::Refunded,
    });
    assert_eq!(s.status(), PaymentStatus::Reversed);
}

#[test]
fn a_revoke_outside_its_window_is_rejected_with_a_hint_to_refund() {
    // Rule: WeChat revokes within 7 days, Alipay the same China-time day; after that, refund.
    let mut wechat = Scenario::paid_wechat("10.00");
    wechat.at(8 * 24 * 3600);
    let revoke = CommandKind::RequestRevoke {
        reason: RevokeReason::MerchantRequested,
    };
    let rejection = wechat.when(revoke.clone()).unwrap_err();
    assert_eq!(rejection, Rejection::RevokeWindowClosed);
    assert_eq!(rejection.code(), "revoke_window_closed");
    assert!(rejection.to_string().contains("refund"), "{rejection}");
    assert!(
        wechat.refund("R1", "10.00").is_ok(),
        "a refund is still possible"
    );

    let mut alipay = Scenario::submitted(ALIPAY_CODE, "10.00");
    alipay.pay_answer(PayOutcome::Paid {
        channel_trade_no: "2026".into(),
        paid_at: alipay.now,
    });
    // Submitted at 10:00 China time; 14 h later it is the next China day.
    alipay.at(14 * 3600);
    assert_eq!(
        alipay.when(revoke.clone()),
        Err(Rejection::RevokeWindowClosed)
    );
    alipay.at(13 * 3600);
    assert!(
        alipay.when(revoke).is_ok(),
        "23:00 China time is still the same day"
    );
}

#[test]
fn the_channel_refusing_a_late_revoke_goes_to_an_operator() {
    // Rule: ACQ.TRADE_CANCEL_TIME_OUT means the revoke can never succeed: a human decides.
    let mut s = Scenario::submitted(ALIPAY_CODE, "10.00");
    s.pay_answer(PayOutcome::Failed {
        code: "ACQ.PAYMENT_AUTH_CODE_INVALID".into(),
    });
    let names = s.run_next_revoke(RevokeOutcome::WindowClosed {
        code: "ACQ.TRADE_CANCEL_TIME_OUT".into(),
    });
    assert_eq!(names, ["RevokeRejected"]);
    let (action, _) = s.next().unwrap();
    assert!(matches!(
        action,
        Action::EscalateToManualReview {
            refund_no: None,
            ..
        }
    ));
}

#[test]
fn refunds_never_exceed_the_paid_amount() {
    // Rule: the sum of refunds (pending ones included) never exceeds what was paid.
    let mut s = Scenario::paid_wechat("10.00");
    s.at(60);
    assert_eq!(s.refund("R1", "6.00").unwrap(), ["RefundRequested"]);
    let too_much = s.refund("R2", "4.01").unwrap_err();
    assert_eq!(
        too_much,
        Rejection::RefundExceedsBalance {
            requested: "4.01".parse().unwrap(),
            refundable: Money::from_fen(400).unwrap().into()
        }
    );
    assert_eq!(too_much.code(), "refund_exceeds_balance");
    // A failed refund gives its amount back to the balance.
    s.refund_answer(
        "R1",
        RefundOutcome::Failed {
            code: "NOTENOUGH".into(),
        },
    );
    assert_eq!(s.refund_status("R1"), RefundStatus::Failed);
    assert!(s.refund("R2", "10.00").is_ok());
    assert!(s.refund("R3", "0.01").is_err());
}

#[test]
fn a_refund_accepted_is_not_a_refund_succeeded() {
    // Rule: acceptance is not success; query the refund until it is final.
    let mut s = Scenario::paid_wechat("10.00");
    s.at(100);
    s.refund("R1", "4.00").unwrap();
    assert_eq!(
        s.refund_answer(
            "R1",
            RefundOutcome::Accepted {
                channel_refund_no: Some("5000".into())
            }
        ),
        ["RefundPending"]
    );
    assert_eq!(s.refund_status("R1"), RefundStatus::Pending);
    assert_eq!(
        s.status(),
        PaymentStatus::Paid,
        "no money has gone back yet"
    );
    let refund_no = RefundNo::parse("R1").unwrap();
    assert_eq!(
        s.next(),
        Some((
            Action::QueryRefund {
                refund_no: refund_no.clone()
            },
            120
        ))
    );
    s.at(120);
    assert_eq!(
        s.refund_answer("R1", RefundOutcome::Processing),
        ["RefundPending"]
    );
    assert_eq!(s.next(), Some((Action::QueryRefund { refund_no }, 160)));
    s.at(160);
    let succeeded = RefundOutcome::Succeeded {
        channel_refund_no: Some("5000".into()),
        refunded_at: s.now,
    };
    assert_eq!(s.refund_answer("R1", succeeded), ["Refunded"]);
    assert_eq!(s.status(), PaymentStatus::PartiallyRefunded);
    s.refund("R2", "6.00").unwrap();
    s.refund_answer(
        "R2",
        RefundOutcome::Succeeded {
            channel_refund_no: None,
            refunded_at: s.now,
        },
    );
    assert_eq!(s.status(), PaymentStatus::Refunded);
    assert!(s.status().is_terminal());
    assert_eq!(s.next(), None);
}

#[test]
fn a_refund_lost_in_a_crash_is_found_by_query_and_resent_with_the_same_number() {
    // Rule: the refund number is the idempotency key; an unknown refund is resent, never renumbered.
    let mut s = Scenario::paid_wechat("10.00");
    s.refund("R1", "1.00").unwrap();
    let refund_no = RefundNo::parse("R1").unwrap();
    assert_eq!(
        s.next(),
        Some((
            Action::QueryRefund {
                refund_no: refund_no.clone()
            },
            10
        ))
    );
    s.at(10);
    assert_eq!(
        s.refund_answer("R1", RefundOutcome::NotFound),
        ["RefundPending"]
    );
    assert_eq!(
        s.next(),
        Some((
            Action::CallRefund {
                refund_no: refund_no.clone()
            },
            10
        ))
    );
    // Every resend meets "not found" again: after 5 calls in all, an operator takes over.
    for _ in 0..3 {
        assert_eq!(
            s.refund_answer("R1", RefundOutcome::NotFound),
            ["RefundPending"]
        );
    }
    assert_eq!(
        s.refund_answer("R1", RefundOutcome::NotFound),
        ["RefundPending", "ManualReviewRequired"]
    );
    assert_eq!(s.refund_status("R1"), RefundStatus::ManualReview);
    let resolve = CommandKind::Resolve {
        resolution: Resolution::RefundFailed { refund_no },
        note: "never reached the channel".into(),
    };
    assert_eq!(s.when(resolve).unwrap(), ["OperatorResolved"]);
    assert_eq!(s.refund_status("R1"), RefundStatus::Failed);
}

#[test]
fn a_refund_not_final_by_its_settle_by_time_goes_to_an_operator() {
    // Rule: a refund is followed until final, but not forever.
    let mut s = Scenario::paid_wechat("10.00");
    s.refund("R1", "1.00").unwrap();
    let mut steps = 0;
    while let Some((Action::QueryRefund { .. }, due)) = s.next() {
        s.at(due).refund_answer("R1", RefundOutcome::Processing);
        steps += 1;
        assert!(steps < 200, "polling must end");
    }
    let (action, due) = s.next().unwrap();
    assert!(matches!(
        action,
        Action::EscalateToManualReview {
            reason: ManualReviewReason::RefundNotSettled,
            ..
        }
    ));
    assert_eq!(due, 3 * 24 * 3600);
    let escalate = CommandKind::EscalateToManualReview {
        refund_no: Some(RefundNo::parse("R1").unwrap()),
    };
    assert_eq!(
        s.at(due - 1).when(escalate.clone()),
        Err(Rejection::NothingToEscalate),
        "not before it is due"
    );
    assert_eq!(s.at(due).when(escalate).unwrap(), ["ManualReviewRequired"]);
}

#[test]
fn an_abnormal_refund_goes_to_an_operator() {
    // Rule: WeChat's CHANGE (refund to a closed bank card) needs a human.
    let mut s = Scenario::paid_wechat("10.00");
    s.refund("R1", "1.00").unwrap();
    assert_eq!(
        s.refund_answer(
            "R1",
            RefundOutcome::Abnormal {
                code: "CHANGE".into()
            }
        ),
        ["ManualReviewRequired"]
    );
    assert_eq!(s.refund_status("R1"), RefundStatus::ManualReview);
    assert_eq!(s.status(), PaymentStatus::Paid);
}

#[test]
fn a_refund_outside_its_window_is_rejected() {
    // Rule: refunds within 1 year (WeChat) or 3 months (Alipay) of payment.
    let mut wechat = Scenario::paid_wechat("10.00");
    wechat.at_time(Utc.with_ymd_and_hms(2027, 11, 22, 2, 0, 0).unwrap());
    assert_eq!(
        wechat.refund("R1", "1.00"),
        Err(Rejection::RefundWindowClosed)
    );
    wechat.at_time(Utc.with_ymd_and_hms(2027, 11, 22, 1, 59, 59).unwrap());
    assert!(wechat.refund("R1", "1.00").is_ok());

    let mut alipay = Scenario::submitted(ALIPAY_CODE, "10.00");
    alipay.pay_answer(PayOutcome::Paid {
        channel_trade_no: "2026".into(),
        paid_at: alipay.now,
    });
    alipay.at_time(Utc.with_ymd_and_hms(2027, 2, 22, 2, 0, 0).unwrap());
    assert_eq!(
        alipay.refund("R1", "1.00"),
        Err(Rejection::RefundWindowClosed)
    );
}

#[test]
fn at_most_50_refunds_per_order() {
    // Rule: WeChat allows at most 50 refunds on one order; failed ones count.
    let mut s = Scenario::paid_wechat("100.00");
    for n in 0..50 {
        s.refund(&format!("R{n}"), "0.01").unwrap();
    }
    assert_eq!(
        s.refund("R50", "0.01"),
        Err(Rejection::RefundLimitReached { max: 50 })
    );
}

#[test]
fn a_paid_order_with_refunds_cannot_be_revoked() {
    // Rule: revoke returns everything; once refunds exist only refunds may follow.
    let mut s = Scenario::paid_wechat("10.00");
    s.refund("R1", "1.00").unwrap();
    let revoke = CommandKind::RequestRevoke {
        reason: RevokeReason::MerchantRequested,
    };
    assert_eq!(s.when(revoke), Err(Rejection::RevokeAfterRefund));
}

#[test]
fn rejections_come_in_precedence_order() {
    // Rule: the first broken rule is reported: state before window before limit before balance.
    let mut closed = Scenario::submitted(WECHAT_CODE, "10.00");
    closed.pay_answer(PayOutcome::Failed {
        code: "NOTENOUGH".into(),
    });
    closed.run_next_revoke(RevokeOutcome::Done {
        result: RevokeResult::Closed,
    });
    closed.at(400 * 24 * 3600);
    assert_eq!(
        closed.refund("R1", "99.00"),
        Err(Rejection::NotRefundable {
            status: PaymentStatus::Closed
        })
    );

    let mut paid = Scenario::paid_wechat("10.00");
    paid.refund("R1", "1.00").unwrap();
    paid.at(400 * 24 * 3600);
    assert_eq!(paid.refund("R1", "99.00"), Err(Rejection::RefundNoInUse));
    assert_eq!(
        paid.refund("R2", "99.00"),
        Err(Rejection::RefundWindowClosed)
    );

    let mut fresh = Scenario::new();
    assert_eq!(fresh.refund("R1", "1.00"), Err(Rejection::OrderNotFound));
    let revoke = CommandKind::RequestRevoke {
        reason: RevokeReason::MerchantRequested,
    };
    assert_eq!(fresh.when(revoke), Err(Rejection::OrderNotFound));
}

#[test]
fn a_second_submission_of_the_same_order_is_refused() {
    // Rule: never resubmit a payment code; the order number is taken.
    let mut s = Scenario::submitted(WECHAT_CODE, "10.00");
    let again = CommandKind::SubmitPayment(SubmitPayment {
        merchant_id: MerchantId::parse("demo").unwrap(),
        order_no: OrderNo::parse("A20261122-0001").unwrap(),
        auth_code: AuthCode::parse(WECHAT_CODE).unwrap(),
        amount: "10.00".parse().unwrap(),
        subject: "Coffee".into(),
    });
    assert_eq!(s.when(again), Err(Rejection::AlreadySubmitted));
    assert_eq!(Rejection::AlreadySubmitted.code(), "order_no_conflict");
}

#[test]
fn the_submitted_event_never_holds_the_full_payment_code() {
    // Rule: the full auth_code is never stored, not even encrypted.
    let s = Scenario::submitted(WECHAT_CODE, "10.00");
    let stored = crate::stored::encode(&s.history[0]);
    let text = String::from_utf8(stored.data).unwrap();
    assert!(!text.contains(WECHAT_CODE));
    assert!(text.contains("13**************89"));
    match &s.state {
        PaymentState::Paying(paying) => assert_eq!(paying.order.channel, Channel::Wechat),
        other => panic!("{other:?}"),
    }
}

#[test]
fn statement_lines_match_once_and_disagreeing_lines_are_refused() {
    // Rule: reconciliation records a matched line once; a line that disagrees is a finding, not a match.
    let mut s = Scenario::paid_wechat("10.00");
    let line = StatementLine {
        channel: Channel::Wechat,
        statement_date: s.now.date_naive(),
        kind: StatementLineKind::Payment,
        refund_no: None,
        amount: "10.00".parse().unwrap(),
        channel_trade_no: "4200000001".into(),
    };
    assert_eq!(
        s.when(CommandKind::MatchStatementLine(line.clone()))
            .unwrap(),
        ["StatementLineMatched"]
    );
    assert_eq!(
        s.when(CommandKind::MatchStatementLine(line.clone()))
            .unwrap(),
        Vec::<&str>::new()
    );
    let wrong_amount = StatementLine {
        amount: "9.99".parse().unwrap(),
        ..line.clone()
    };
    assert_eq!(
        s.when(CommandKind::MatchStatementLine(wrong_amount)),
        Err(Rejection::StatementLineDisagrees)
    );
    let refund_line = StatementLine {
        kind: StatementLineKind::Refund,
        refund_no: Some(RefundNo::parse("R1").unwrap()),
        ..line
    };
    assert_eq!(
        s.when(CommandKind::MatchStatementLine(refund_line)),
        Err(Rejection::StatementLineDisagrees)
    );
    assert_eq!(
        s.status(),
        PaymentStatus::Paid,
        "matching never changes the status"
    );
}

#[test]
fn a_revoke_that_does_not_say_what_it_did_is_read_from_what_the_ledger_knows() {
    // Rule: WeChat's reverse never says closed or refunded: paid orders end reversed, others closed.
    let mut paid = Scenario::paid_wechat("10.00");
    paid.at(20)
        .when(CommandKind::RequestRevoke {
            reason: RevokeReason::MerchantRequested,
        })
        .unwrap();
    assert_eq!(
        paid.run_next_revoke(RevokeOutcome::Done {
            result: RevokeResult::Unspecified
        }),
        ["Revoked"]
    );
    assert_eq!(paid.status(), PaymentStatus::Reversed);

    let mut unpaid = Scenario::submitted(WECHAT_CODE, "10.00");
    unpaid.pay_answer(PayOutcome::Failed {
        code: "NOTENOUGH".into(),
    });
    unpaid.run_next_revoke(RevokeOutcome::Done {
        result: RevokeResult::Unspecified,
    });
    assert_eq!(unpaid.status(), PaymentStatus::Closed);
}

#[test]
fn a_pay_answer_that_comes_after_the_deadline_is_still_followed_by_a_query() {
    // Rule: query first; revoke only when the query gives no clear result.
    let mut s = Scenario::submitted(WECHAT_CODE, "10.00");
    s.at(40);
    s.pay_answer(PayOutcome::Unknown {
        reason: "timeout".into(),
    });
    assert_eq!(
        s.next(),
        Some((Action::QueryPayment, 30)),
        "due at once: the deadline has passed"
    );
    s.query_answer(QueryOutcome::Paid {
        channel_trade_no: "42".into(),
        paid_at: s.now,
    });
    assert_eq!(s.status(), PaymentStatus::Paid);

    let mut waiting = Scenario::submitted(WECHAT_CODE, "10.00");
    waiting.at(40);
    waiting.pay_answer(PayOutcome::WaitingForPassword);
    waiting.query_answer(QueryOutcome::WaitingForPassword);
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
