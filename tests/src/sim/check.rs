//! The rules a simulated run is judged by. Each names the order and what
//! broke, so a failing seed's report reads as a list of findings.
//!
//! - Never charged twice: paycode calls pay at most once per order number.
//! - No acknowledged event lost: every event an answer to the merchant
//!   carried is still in the log, at its version, unchanged.
//! - The ledger's final status is one the channel's truth allows: paid (or
//!   partially refunded, refunded) only if the channel has the money, with
//!   the same refunds; closed only if no money moved; reversed only if the
//!   money moved and came back; anything else only as manual review.
//! - After the liveness phase every order is settled or with an operator.
//! - Every channel answer is recorded: no `record_*` command is refused.
//! - An order with an overdue action is followed by some live instance
//!   (a dead instance's orders are taken over once its leases expire).
//! - The sale is kept: an undisturbed order whose customer paid in time
//!   ends paid (a ledger that cannot read an honest paid answer revokes it).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use paycode::service::ledger::OrderHistory;
use paycode_adapters::store::EventStore;
use paycode_domain::payment::{Event, PaymentState, PaymentStatus, RefundStatus, next_action};
use paycode_domain::{Money, OrderNo};
use paycode_sandbox::{SandboxOrder, SandboxOrderState, SandboxRefundState};

/// One broken rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// The order (or stream) it is about.
    pub subject: String,
    pub what: String,
}

impl Violation {
    pub fn new(subject: impl ToString, what: impl Into<String>) -> Self {
        Violation {
            subject: subject.to_string(),
            what: what.into(),
        }
    }
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.subject, self.what)
    }
}

/// Pay called more than once for an order number.
pub fn pay_called_at_most_once(calls: &BTreeMap<String, u32>) -> Vec<Violation> {
    calls
        .iter()
        .filter(|(_, count)| **count > 1)
        .map(|(order_no, count)| Violation::new(order_no, format!("pay called {count} times")))
        .collect()
}

/// Acknowledged events missing from the log, or different there.
pub async fn acknowledged_events_kept(
    store: &dyn EventStore,
    acknowledged: &[(String, u64, Event)],
) -> Vec<Violation> {
    let mut violations = Vec::new();
    let mut streams: BTreeMap<&str, Vec<Event>> = BTreeMap::new();
    for (stream, version, event) in acknowledged {
        if !streams.contains_key(stream.as_str()) {
            let stored = store.read_stream(stream).await.unwrap_or_default();
            let decoded = stored
                .iter()
                .filter_map(|recorded| recorded.decode::<Event>().ok())
                .collect();
            streams.insert(stream.as_str(), decoded);
        }
        let kept = usize::try_from(*version)
            .ok()
            .and_then(|index| streams[stream.as_str()].get(index));
        if kept != Some(event) {
            violations.push(Violation::new(
                stream,
                format!(
                    "acknowledged {} at version {version} is not in the log as answered",
                    event.fact.stored_name()
                ),
            ));
        }
    }
    violations
}

/// What the channel's truth says about the money of an order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum MoneyAtChannel {
    /// The channel never took the order, or no money moved.
    NeverMoved,
    /// The money is with the merchant (refunds aside).
    Kept,
    /// The money moved and a revoke gave it back.
    CameBack,
    /// The customer may still pay.
    Undecided,
}

fn money_of(truth: Option<&SandboxOrder>) -> MoneyAtChannel {
    match truth.map(|order| &order.state) {
        None | Some(SandboxOrderState::Failed | SandboxOrderState::Closed { .. }) => {
            MoneyAtChannel::NeverMoved
        }
        Some(SandboxOrderState::Paid { .. }) => MoneyAtChannel::Kept,
        Some(SandboxOrderState::Reversed { .. }) => MoneyAtChannel::CameBack,
        Some(SandboxOrderState::WaitingForPassword) => MoneyAtChannel::Undecided,
    }
}

/// The ledger's final word on an order against the channel's truth.
/// `reused`: the channel's order under this number may be an earlier
/// system's trade, not this order's.
pub fn settled_as_the_channel_allows(
    order_no: &OrderNo,
    history: &OrderHistory,
    truth: Option<&SandboxOrder>,
    reused: bool,
    now: DateTime<Utc>,
) -> Vec<Violation> {
    let mut violations = Vec::new();
    let Some(status) = history.state.status() else {
        // Never submitted (every merchant attempt failed on the store): the
        // channel must not have the order either, unless an earlier system
        // left its trade under the number.
        if truth.is_some() && !reused {
            violations.push(Violation::new(
                order_no,
                "the channel has an order the ledger never recorded",
            ));
        }
        return violations;
    };
    if let Some((action, due_at)) = next_action(&history.state) {
        violations.push(Violation::new(
            order_no,
            format!("not settled after the liveness phase: {action:?} due at {due_at}"),
        ));
        return violations;
    }
    let money = money_of(truth);
    let wrong = |expected: &str| {
        Violation::new(
            order_no,
            format!(
                "ledger says {} but the channel {expected}: {:?}",
                status.as_str(),
                truth.map(|order| &order.state)
            ),
        )
    };
    match status {
        PaymentStatus::Paid | PaymentStatus::PartiallyRefunded | PaymentStatus::Refunded => {
            if money != MoneyAtChannel::Kept {
                violations.push(wrong("does not hold the money"));
            }
            if let (PaymentState::Paid(paid), Some(order)) = (&history.state, truth) {
                violations.extend(refunds_agree(order_no, paid.refunds.as_slice(), order, now));
                let channel_trade_no = &paid.paid.channel_trade_no;
                if channel_trade_no != &order.trade_no {
                    violations.push(Violation::new(
                        order_no,
                        format!(
                            "booked trade {channel_trade_no}, the channel's is {}",
                            order.trade_no
                        ),
                    ));
                }
                if paid.order.amount.fen() != order.amount_fen {
                    violations.push(Violation::new(order_no, "paid amount differs"));
                }
            }
        }
        PaymentStatus::Closed => {
            if money != MoneyAtChannel::NeverMoved {
                violations.push(wrong("shows money moved"));
            }
        }
        PaymentStatus::Reversed => {
            if money != MoneyAtChannel::CameBack {
                violations.push(wrong("did not give money back"));
            }
        }
        // Revoked, the statement to say whether money moved: either is fine,
        // but the channel must not keep the money.
        PaymentStatus::Revoked => {
            if money == MoneyAtChannel::Kept {
                violations.push(wrong("kept the money"));
            }
        }
        PaymentStatus::ManualReview => {}
        PaymentStatus::Paying | PaymentStatus::Revoking => {
            violations.push(Violation::new(order_no, "still in progress"));
        }
    }
    violations
}

fn refunds_agree(
    order_no: &OrderNo,
    refunds: &[paycode_domain::payment::Refund],
    truth: &SandboxOrder,
    now: DateTime<Utc>,
) -> Vec<Violation> {
    let mut violations = Vec::new();
    let mut channel_total = 0u64;
    for refund in &truth.refunds {
        channel_total += refund.amount_fen;
    }
    if channel_total > truth.amount_fen {
        violations.push(Violation::new(
            order_no,
            format!(
                "the channel refunded {channel_total} fen of {}",
                truth.amount_fen
            ),
        ));
    }
    for refund in refunds {
        let at_channel = truth
            .refunds
            .iter()
            .find(|theirs| theirs.refund_no == refund.refund_no.as_str());
        let succeeded_there = at_channel.is_some_and(|theirs| {
            matches!(theirs.state(now), SandboxRefundState::Succeeded { .. })
        });
        match refund.status() {
            RefundStatus::Succeeded if !succeeded_there => violations.push(Violation::new(
                order_no,
                format!("refund {} succeeded in the ledger only", refund.refund_no),
            )),
            RefundStatus::Failed if at_channel.is_some() => violations.push(Violation::new(
                order_no,
                format!(
                    "refund {} failed in the ledger but the channel took it",
                    refund.refund_no
                ),
            )),
            RefundStatus::Pending => violations.push(Violation::new(
                order_no,
                format!("refund {} still pending", refund.refund_no),
            )),
            _ => {}
        }
        if let Some(theirs) = at_channel
            && Money::from_fen(theirs.amount_fen).ok() != Some(refund.amount)
        {
            violations.push(Violation::new(
                order_no,
                format!("refund {} differs in amount", refund.refund_no),
            ));
        }
    }
    for theirs in &truth.refunds {
        if !refunds
            .iter()
            .any(|ours| ours.refund_no.as_str() == theirs.refund_no)
        {
            violations.push(Violation::new(
                order_no,
                format!(
                    "the channel has refund {} the ledger does not",
                    theirs.refund_no
                ),
            ));
        }
    }
    violations
}

/// Channel answers the ledger refused to record (every one must be an
/// event): the `record_*` commands counted with an outcome other than
/// accepted, or a store error (whose answer a later query recovers).
pub fn every_answer_recorded(metrics: &str) -> Vec<Violation> {
    metrics
        .lines()
        .filter(|line| line.starts_with("paycode_commands_total{"))
        .filter_map(|line| {
            let labels = &line[line.find('{')? + 1..line.find('}')?];
            let count: u64 = line.rsplit(' ').next()?.parse().ok()?;
            let label = |name: &str| {
                labels.split(',').find_map(|pair| {
                    let (key, value) = pair.split_once('=')?;
                    (key == name).then(|| value.trim_matches('"').to_owned())
                })
            };
            let (command, outcome) = (label("command")?, label("outcome")?);
            let refused = command.starts_with("record_")
                && outcome != "accepted"
                && outcome != "error"
                && count > 0;
            refused.then(|| {
                Violation::new(
                    command,
                    format!("{count} channel answer(s) refused ({outcome}), not recorded"),
                )
            })
        })
        .collect()
}

/// How long after its due time an order may wait for a live instance: a
/// dead instance's step lease (30 s) plus the log-following interval and
/// the busy retries, with room to spare.
pub const FOLLOW_GRACE_SECS: i64 = 60;

/// An order whose next action is overdue by more than [`FOLLOW_GRACE_SECS`]
/// must be followed (a timer set, or a step in progress) by some live instance.
pub fn followed_when_due(
    order_no: &OrderNo,
    history: &OrderHistory,
    now: DateTime<Utc>,
    followed: bool,
) -> Vec<Violation> {
    match next_action(&history.state) {
        Some((action, due_at))
            if !followed && now - due_at > chrono::Duration::seconds(FOLLOW_GRACE_SECS) =>
        {
            vec![Violation::new(
                order_no,
                format!("{action:?} due at {due_at}, and no live instance follows the order"),
            )]
        }
        _ => Vec::new(),
    }
}

/// The sale is kept: an order nothing disturbed (no network fault on its
/// calls, no crash or store fault, no merchant revoke), whose customer paid
/// in time for a query to see it before the deadline, ends paid. A ledger
/// that cannot read an honest paid answer revokes a sale that succeeded.
pub fn honest_payment_kept(
    order_no: &OrderNo,
    history: &OrderHistory,
    truth: Option<&SandboxOrder>,
    quiet: bool,
    poll_interval: chrono::Duration,
) -> Vec<Violation> {
    let (Some(order), Some(truth)) = (history.state.order(), truth) else {
        return Vec::new();
    };
    let Some(paid_at) = truth.state.paid_at() else {
        return Vec::new();
    };
    let in_time = paid_at + poll_interval * 2 < order.deadline_at;
    let kept = matches!(
        history.state.status(),
        Some(
            PaymentStatus::Paid
                | PaymentStatus::PartiallyRefunded
                | PaymentStatus::Refunded
                | PaymentStatus::ManualReview
        )
    );
    if quiet && in_time && !kept {
        vec![Violation::new(
            order_no,
            format!(
                "the customer paid at {paid_at}, before the deadline {}, every answer was honest, and the ledger ended {}",
                order.deadline_at,
                history
                    .state
                    .status()
                    .map_or("nowhere", PaymentStatus::as_str)
            ),
        )]
    } else {
        Vec::new()
    }
}
