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
pub fn settled_as_the_channel_allows(
    order_no: &OrderNo,
    history: &OrderHistory,
    truth: Option<&SandboxOrder>,
    now: DateTime<Utc>,
) -> Vec<Violation> {
    let mut violations = Vec::new();
    let Some(status) = history.state.status() else {
        // Never submitted (every merchant attempt failed on the store): the
        // channel must not have the order either.
        if truth.is_some() {
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
