//! Properties of the Payment decider over random command and channel-answer
//! sequences: the invariants docs/rules.md names must hold whatever the channels say.

use chrono::{DateTime, Duration, TimeZone, Utc};
use proptest::prelude::*;
use uuid::Uuid;

use super::*;
use crate::auth_code::AuthCode;
use crate::decider::Decider;
use crate::ids::{CommandId, MerchantId, OrderNo, RefundNo};
use crate::invariants;
use crate::money::Money;

const ORDER_FEN: u64 = 1000;

fn refund_no(index: u8) -> RefundNo {
    RefundNo::parse(&format!("R{}", index % 4)).unwrap()
}

fn at(secs: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 22, 2, 0, 0).unwrap() + Duration::seconds(secs)
}

fn pay_outcome(selector: u8, now: DateTime<Utc>) -> PayOutcome {
    match selector % 6 {
        0 => PayOutcome::Paid {
            channel_trade_no: "T1".into(),
            paid_at: Some(now),
        },
        1 => PayOutcome::WaitingForPassword,
        2 => PayOutcome::Failed {
            code: "NOTENOUGH".into(),
        },
        3 => PayOutcome::Paid {
            channel_trade_no: "T1".into(),
            paid_at: None,
        },
        4 => PayOutcome::NotSent {
            reason: "rate limit".into(),
        },
        _ => PayOutcome::Unknown {
            reason: "timeout".into(),
        },
    }
}

fn query_outcome(selector: u8, now: DateTime<Utc>) -> QueryOutcome {
    match selector % 9 {
        8 => QueryOutcome::OtherTrade {
            reason: "total_fee differs".into(),
        },
        0 => QueryOutcome::Paid {
            channel_trade_no: "T1".into(),
            paid_at: Some(now),
        },
        1 => QueryOutcome::WaitingForPassword,
        2 => QueryOutcome::NotPaid,
        3 => QueryOutcome::NotFound,
        4 => QueryOutcome::Closed,
        5 => QueryOutcome::Failed {
            code: "PAYERROR".into(),
        },
        6 => QueryOutcome::RefundedElsewhere,
        _ => QueryOutcome::Unknown {
            reason: "bad signature".into(),
        },
    }
}

fn revoke_outcome(selector: u8) -> RevokeOutcome {
    match selector % 6 {
        5 => RevokeOutcome::Done {
            result: RevokeResult::Unspecified,
        },
        0 => RevokeOutcome::Done {
            result: RevokeResult::Closed,
        },
        1 => RevokeOutcome::Done {
            result: RevokeResult::Refunded,
        },
        2 => RevokeOutcome::MustRetry {
            reason: "recall=Y".into(),
        },
        3 => RevokeOutcome::WindowClosed {
            code: "ACQ.TRADE_CANCEL_TIME_OUT".into(),
        },
        _ => RevokeOutcome::Unknown {
            reason: "timeout".into(),
        },
    }
}

fn refund_outcome(selector: u8, now: DateTime<Utc>) -> RefundOutcome {
    match selector % 7 {
        0 => RefundOutcome::Accepted {
            channel_refund_no: Some("RF".into()),
        },
        1 => RefundOutcome::Processing,
        2 => RefundOutcome::Succeeded {
            channel_refund_no: None,
            refunded_at: now,
        },
        3 => RefundOutcome::Failed {
            code: "FAIL".into(),
        },
        4 => RefundOutcome::Abnormal {
            code: "CHANGE".into(),
        },
        5 => RefundOutcome::NotFound,
        _ => RefundOutcome::Unknown {
            reason: "timeout".into(),
        },
    }
}

fn submit() -> CommandKind {
    CommandKind::SubmitPayment(SubmitPayment {
        merchant_id: MerchantId::parse("demo").unwrap(),
        order_no: OrderNo::parse("P1").unwrap(),
        auth_code: AuthCode::parse("134567890123456789").unwrap(),
        auth_code_fingerprint: None,
        amount: Money::from_fen(ORDER_FEN).unwrap(),
        subject: "Coffee".into(),
    })
}

/// A command any caller might send, sensible or not.
#[derive(Debug, Clone)]
enum Op {
    PayAnswer(u8),
    QueryAnswer(u8),
    RequestRevoke(bool),
    RevokeAnswer(u8),
    RequestRefund(u8, u64),
    RefundAnswer(u8, u8),
    Escalate(Option<u8>),
    Resolve(u8, u8),
    SettleRevoke(bool),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        any::<u8>().prop_map(Op::PayAnswer),
        any::<u8>().prop_map(Op::QueryAnswer),
        any::<bool>().prop_map(Op::RequestRevoke),
        any::<u8>().prop_map(Op::RevokeAnswer),
        (any::<u8>(), 1..1500u64).prop_map(|(no, fen)| Op::RequestRefund(no, fen)),
        (any::<u8>(), any::<u8>()).prop_map(|(no, s)| Op::RefundAnswer(no, s)),
        proptest::option::of(any::<u8>()).prop_map(Op::Escalate),
        (any::<u8>(), any::<u8>()).prop_map(|(kind, no)| Op::Resolve(kind, no)),
        any::<bool>().prop_map(Op::SettleRevoke),
    ]
}

fn command_for(op: &Op, now: DateTime<Utc>) -> CommandKind {
    match op {
        Op::PayAnswer(s) => CommandKind::RecordPayAnswer(ChannelAnswer::new(pay_outcome(*s, now))),
        Op::QueryAnswer(s) => {
            CommandKind::RecordQueryResult(ChannelAnswer::new(query_outcome(*s, now)))
        }
        Op::RequestRevoke(merchant) => CommandKind::RequestRevoke {
            reason: if *merchant {
                RevokeReason::MerchantRequested
            } else {
                RevokeReason::DeadlineReached
            },
        },
        Op::RevokeAnswer(s) => {
            CommandKind::RecordRevokeAnswer(ChannelAnswer::new(revoke_outcome(*s)))
        }
        Op::RequestRefund(no, fen) => CommandKind::RequestRefund(RequestRefund {
            refund_no: refund_no(*no),
            amount: Money::from_fen(*fen).unwrap(),
            reason: String::new(),
        }),
        Op::RefundAnswer(no, s) => CommandKind::RecordRefundAnswer {
            refund_no: refund_no(*no),
            answer: ChannelAnswer::new(refund_outcome(*s, now)),
        },
        Op::Escalate(no) => CommandKind::EscalateToManualReview {
            refund_no: no.map(refund_no),
        },
        Op::Resolve(kind, no) => CommandKind::Resolve {
            resolution: match kind % 5 {
                0 => Resolution::Paid {
                    channel_trade_no: "T9".into(),
                    paid_at: now,
                },
                1 => Resolution::Closed,
                2 => Resolution::Reversed,
                3 => Resolution::RefundSucceeded {
                    refund_no: refund_no(*no),
                    refunded_at: now,
                },
                _ => Resolution::RefundFailed {
                    refund_no: refund_no(*no),
                },
            },
            note: String::new(),
            resolved_by: "property".into(),
        },
        Op::SettleRevoke(money_moved) => CommandKind::SettleRevoke {
            money_moved: *money_moved,
            statement_date: crate::calendar::china_date(now),
        },
    }
}

/// The command that carries out `action` with the channel answering `selector`.
fn command_for_action(action: &Action, selector: u8, now: DateTime<Utc>) -> CommandKind {
    match action {
        Action::QueryPayment => {
            CommandKind::RecordQueryResult(ChannelAnswer::new(query_outcome(selector, now)))
        }
        Action::StartRevoke { reason } => CommandKind::RequestRevoke { reason: *reason },
        Action::CallRevoke { .. } => {
            CommandKind::RecordRevokeAnswer(ChannelAnswer::new(revoke_outcome(selector)))
        }
        Action::QueryRefund { refund_no } | Action::CallRefund { refund_no } => {
            CommandKind::RecordRefundAnswer {
                refund_no: refund_no.clone(),
                answer: ChannelAnswer::new(refund_outcome(selector, now)),
            }
        }
        Action::EscalateToManualReview { refund_no, .. } => CommandKind::EscalateToManualReview {
            refund_no: refund_no.clone(),
        },
    }
}

/// A history being built, with the invariants checked after every decision.
struct Ledger {
    decider: PaymentDecider,
    history: Vec<Event>,
    state: PaymentState,
    commands: u128,
}

impl Ledger {
    fn submitted() -> Self {
        let mut ledger = Ledger {
            decider: PaymentDecider::default(),
            history: vec![],
            state: PaymentState::Initial,
            commands: 0,
        };
        ledger.apply(submit(), at(0)).unwrap();
        ledger
    }

    fn apply(&mut self, kind: CommandKind, now: DateTime<Utc>) -> Result<(), Rejection> {
        self.commands += 1;
        let command = Command::new(CommandId(Uuid::from_u128(self.commands)), kind);
        let before = self.state.status();
        let answer = matches!(
            command.kind,
            CommandKind::RecordPayAnswer(_)
                | CommandKind::RecordQueryResult(_)
                | CommandKind::RecordRevokeAnswer(_)
                | CommandKind::RecordRefundAnswer { .. }
        );
        let decided = self.decider.decide(&self.state, &command, now);
        // Every channel answer is recorded: only one about a refund the
        // order never had is refused.
        if answer {
            match &decided {
                Ok(events) => assert!(!events.is_empty(), "an answer was dropped: {command:?}"),
                Err(rejection) => assert_eq!(rejection, &Rejection::RefundNotFound),
            }
        }
        let events = decided?;
        for event in events {
            self.state = evolve(self.state.clone(), &event).unwrap_or_else(|refused| {
                panic!("decided {event:?}, refused: {}", refused.violation)
            });
            self.history.push(event);
        }
        self.check_invariants(before);
        Ok(())
    }

    fn check_invariants(&self, before: Option<PaymentStatus>) {
        // Terminal states stay terminal.
        if let Some(status) = before.filter(|s| s.is_terminal()) {
            assert_eq!(
                self.state.status(),
                Some(status),
                "left terminal status {status:?}"
            );
        }
        // Refunds never exceed the payment, pending ones included.
        assert_eq!(invariants::check_state(&self.state), Ok(()));
        if let PaymentState::Paid(paid) = &self.state {
            assert!(paid.refunded_total().fen() <= ORDER_FEN);
        }
        let count = |name: &str| {
            self.history
                .iter()
                .filter(|e| e.fact.stored_name() == name)
                .count()
        };
        // Never charged twice: one submission, at most one payment.
        assert_eq!(count("Submitted"), 1);
        assert!(count("Paid") <= 1, "paid twice");
        // Never both reversed and refunded: a revoke returning money excludes refunds.
        let reversed = self
            .history
            .iter()
            .any(|e| matches!(&e.fact, Fact::Revoked(r) if r.result == RevokeResult::Refunded));
        assert!(
            !(reversed && count("Refunded") > 0),
            "reversed and refunded the same money"
        );
        // Money that moved never ends as "no money moved", not even by an operator's word.
        if count("Paid") > 0 {
            assert_ne!(
                self.state.status(),
                Some(PaymentStatus::Closed),
                "a paid order was closed"
            );
        }
        let refunded_fen: u64 = self
            .history
            .iter()
            .filter_map(|e| match &e.fact {
                Fact::Refunded(r) => Some(r.amount.fen()),
                _ => None,
            })
            .sum();
        assert!(
            refunded_fen <= ORDER_FEN,
            "refunded {refunded_fen} fen of {ORDER_FEN}"
        );
    }

    /// Replaying the stored form of the history gives the same state.
    fn replayed(&self) -> PaymentState {
        let decoded: Vec<Event> = self
            .history
            .iter()
            .map(|event| {
                let stored = crate::stored::encode(event);
                crate::stored::decode(stored.name, stored.schema_version, &stored.data).unwrap()
            })
            .collect();
        assert_eq!(decoded, self.history);
        self.decider
            .replay(&decoded)
            .expect("a decided history replays")
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// Whatever anyone sends, the invariants hold and the history replays to the same state.
    #[test]
    fn arbitrary_commands_keep_every_invariant(
        ops in prop::collection::vec((op(), 0..200_000i64), 0..60)
    ) {
        let mut ledger = Ledger::submitted();
        let mut now_secs = 0;
        for (op, advance_secs) in &ops {
            now_secs += advance_secs;
            let _ = ledger.apply(command_for(op, at(now_secs)), at(now_secs));
        }
        prop_assert_eq!(ledger.replayed(), ledger.state.clone());
    }

    /// Driven by next_action, with any channel answers and merchant refunds,
    /// every order settles (or reaches an operator) in a bounded number of steps,
    /// and every action next_action offers is accepted.
    #[test]
    fn orders_driven_by_next_action_always_settle(
        pay in any::<u8>(),
        answers in prop::collection::vec(any::<u8>(), 1..40),
        refunds in prop::collection::vec((any::<u8>(), 1..800u64, 0..64usize), 0..6),
    ) {
        let mut ledger = Ledger::submitted();
        let mut now = at(0);
        ledger.apply(CommandKind::RecordPayAnswer(ChannelAnswer::new(pay_outcome(pay, now))), now).unwrap();
        let mut steps = 0usize;
        while let Some((action, due)) = next_action(&ledger.state) {
            now = now.max(due);
            let selector = answers[steps % answers.len()];
            let command = command_for_action(&action, selector, now);
            prop_assert!(ledger.apply(command, now).is_ok(), "next_action offered {:?}, which was refused", action);
            // Merchants refund along the way; refusals are fine, invariants must hold.
            for (no, fen, at_step) in &refunds {
                if *at_step == steps {
                    let refund = Op::RequestRefund(*no, *fen);
                    let _ = ledger.apply(command_for(&refund, now), now);
                }
            }
            steps += 1;
            prop_assert!(steps < 2_000, "no settlement after {} steps: {:?}", steps, ledger.state);
        }
        let status = ledger.state.status().unwrap();
        prop_assert!(status.is_settled(), "ended {:?} with nothing to do", status);
        prop_assert_eq!(ledger.replayed(), ledger.state.clone());
    }
}
