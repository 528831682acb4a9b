//! Sample logs for tests and benchmarks: orders driven through the real
//! decider by `next_action`, with channel answers, merchant refunds and
//! operator verdicts picked by a seeded generator, interleaved into one
//! global order. Deterministic for a seed; pure.

use chrono::{DateTime, Duration, TimeZone, Utc};
use paycode_domain::ids::payment_stream;
use paycode_domain::payment::{
    Action, ChannelAnswer, Command, CommandKind, Event, PayOutcome, PaymentDecider, PaymentState,
    QueryOutcome, RefundOutcome, RequestRefund, Resolution, RevokeOutcome, RevokeResult,
    SubmitPayment, evolve, next_action,
};
use paycode_domain::{AuthCode, CommandId, Decider, MerchantId, Money, OrderNo, RefundNo};
use uuid::Uuid;

/// One event of a sample log; its global position is its index + 1.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SampleEvent {
    pub stream: String,
    pub version: u64,
    pub event: Event,
}

/// A small deterministic generator (SplitMix64): samples need no crate.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..bound` (`bound` > 0).
    pub fn below(&mut self, bound: u64) -> u64 {
        self.next_u64() % bound
    }

    /// An index in `0..len`.
    pub fn index(&mut self, len: usize) -> usize {
        let len = u64::try_from(len).expect("a length fits in u64");
        usize::try_from(self.below(len)).expect("below a usize length")
    }
}

fn start() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 22, 2, 0, 0)
        .single()
        .expect("a valid time")
}

/// The order number of the sample order `order_index`: `S{order_index}`.
pub fn order_no(order_index: usize) -> OrderNo {
    OrderNo::parse(&format!("S{order_index}")).expect("an order number")
}

/// The stream of the sample order `order_index` of `merchant`, named after
/// the order its `Submitted` names (what `paycode verify` checks).
pub fn stream(merchant: &str, order_index: usize) -> String {
    payment_stream(
        &MerchantId::parse(merchant).expect("a merchant id"),
        &order_no(order_index),
    )
}

/// The events of one order, in stream order: the history of
/// [`order_no`]`(order_index)`, to be stored on [`stream`]`(merchant, order_index)`.
pub fn order_events(merchant: &str, order_index: usize, rng: &mut Rng) -> Vec<Event> {
    const STEPS_MAX: usize = 200;
    let decider = PaymentDecider::default();
    let mut state = PaymentState::Initial;
    let mut events = Vec::new();
    let mut commands = 0u128;
    let mut now = start()
        + Duration::seconds(i64::try_from(order_index).expect("fewer orders than seconds in i64"));
    let base_id = (order_index as u128) << 32;
    let mut run = |state: &mut PaymentState, kind: CommandKind, now: DateTime<Utc>| {
        commands += 1;
        let command = Command::new(CommandId(Uuid::from_u128(base_id + commands)), kind);
        if let Ok(new_events) = decider.decide(state, &command, now) {
            for event in new_events {
                *state = evolve(std::mem::replace(state, PaymentState::Initial), &event)
                    .unwrap_or_else(|refused| {
                        panic!("the decider decided a refused event: {}", refused.violation)
                    });
                events.push(event);
            }
        }
    };
    let code = if rng.below(2) == 0 {
        "134567890123456789"
    } else {
        "284567890123456789"
    };
    let amount_fen = 100 + rng.below(9_900);
    run(
        &mut state,
        CommandKind::SubmitPayment(SubmitPayment {
            merchant_id: MerchantId::parse(merchant).expect("a merchant id"),
            order_no: order_no(order_index),
            auth_code: AuthCode::parse(code).expect("a payment code"),
            auth_code_fingerprint: None,
            amount: Money::from_fen(amount_fen).expect("an amount"),
            subject: "Sample".into(),
        }),
        now,
    );
    let pay = match rng.below(4) {
        0 | 1 => PayOutcome::Paid {
            channel_trade_no: format!("T{order_index}"),
            paid_at: Some(now),
        },
        2 => PayOutcome::WaitingForPassword,
        _ => PayOutcome::Failed {
            code: "NOTENOUGH".into(),
        },
    };
    run(
        &mut state,
        CommandKind::RecordPayAnswer(ChannelAnswer::new(pay)),
        now,
    );
    for step in 0..STEPS_MAX {
        // Merchants refund paid orders now and then.
        if matches!(state, PaymentState::Paid(_)) && rng.below(3) == 0 {
            let refund_fen = 1 + rng.below(amount_fen / 2);
            run(
                &mut state,
                CommandKind::RequestRefund(RequestRefund {
                    refund_no: RefundNo::parse(&format!("R{step}")).expect("a refund number"),
                    amount: Money::from_fen(refund_fen).expect("an amount"),
                    reason: "sample".into(),
                }),
                now,
            );
        }
        // Operators resolve reviews now and then; some stay in the queue.
        if let PaymentState::ManualReview(review) = &state {
            if rng.below(2) == 0 {
                // An order the ledger saw paid is confirmed as recorded or
                // reversed, never closed (the decider refuses that).
                let resolution = match (rng.below(3), &review.paid) {
                    (0, None) => Resolution::Closed,
                    (0 | 1, _) => Resolution::Reversed,
                    (_, Some(recorded)) => Resolution::Paid {
                        channel_trade_no: recorded.channel_trade_no.clone(),
                        paid_at: recorded.paid_at,
                    },
                    (_, None) => Resolution::Paid {
                        channel_trade_no: format!("T{order_index}"),
                        paid_at: now,
                    },
                };
                run(
                    &mut state,
                    CommandKind::Resolve {
                        resolution,
                        note: "checked".into(),
                        resolved_by: "sample".into(),
                    },
                    now,
                );
            }
        }
        let Some((action, due)) = next_action(&state) else {
            break;
        };
        // Some orders stop mid-flight: the log ends while they are pending.
        if rng.below(40) == 0 {
            break;
        }
        now = now.max(due);
        let kind = command_for(&action, rng, now, order_index);
        run(&mut state, kind, now);
    }
    events
}

fn command_for(action: &Action, rng: &mut Rng, now: DateTime<Utc>, order: usize) -> CommandKind {
    match action {
        Action::QueryPayment => {
            CommandKind::RecordQueryResult(ChannelAnswer::new(match rng.below(4) {
                0 => QueryOutcome::Paid {
                    channel_trade_no: format!("T{order}"),
                    paid_at: Some(now),
                },
                1 => QueryOutcome::NotPaid,
                _ => QueryOutcome::WaitingForPassword,
            }))
        }
        Action::StartRevoke { reason } => CommandKind::RequestRevoke { reason: *reason },
        Action::CallRevoke { .. } => {
            CommandKind::RecordRevokeAnswer(ChannelAnswer::new(match rng.below(4) {
                0 => RevokeOutcome::Done {
                    result: RevokeResult::Closed,
                },
                1 => RevokeOutcome::Done {
                    result: RevokeResult::Refunded,
                },
                _ => RevokeOutcome::MustRetry {
                    reason: "recall=Y".into(),
                },
            }))
        }
        Action::QueryRefund { refund_no } | Action::CallRefund { refund_no } => {
            CommandKind::RecordRefundAnswer {
                refund_no: refund_no.clone(),
                answer: ChannelAnswer::new(match rng.below(5) {
                    0 | 1 => RefundOutcome::Succeeded {
                        channel_refund_no: None,
                        refunded_at: now,
                    },
                    2 => RefundOutcome::Failed {
                        code: "FAIL".into(),
                    },
                    3 => RefundOutcome::Abnormal {
                        code: "CHANGE".into(),
                    },
                    _ => RefundOutcome::Processing,
                }),
            }
        }
        Action::EscalateToManualReview { refund_no, .. } => CommandKind::EscalateToManualReview {
            refund_no: refund_no.clone(),
        },
    }
}

/// `orders` orders of merchant `merchant`, their events interleaved at
/// random (each stream's own order kept) into one global order.
pub fn log(merchant: &str, orders: usize, seed: u64) -> Vec<SampleEvent> {
    let mut rng = Rng::new(seed);
    let mut streams: Vec<(String, std::vec::IntoIter<Event>, u64)> = (0..orders)
        .map(|index| {
            let events = order_events(merchant, index, &mut rng);
            (stream(merchant, index), events.into_iter(), 0)
        })
        .collect();
    let mut log = Vec::new();
    while !streams.is_empty() {
        let pick = rng.index(streams.len());
        let (stream, events, version) = &mut streams[pick];
        match events.next() {
            Some(event) => {
                log.push(SampleEvent {
                    stream: stream.clone(),
                    version: *version,
                    event,
                });
                *version += 1;
            }
            None => {
                streams.swap_remove(pick);
            }
        }
    }
    log
}
