//! The payment and refund objects of the HTTP API, folded from one order's
//! events. Pure: the app reads the stream, this decides what it shows.

use chrono::{DateTime, Utc};
use paycode_domain::payment::{
    Action, Event, PaymentState, PaymentStatus, RefundStage, RefundStatus, evolve, next_action,
};
use paycode_domain::{
    Channel, Currency, MaskedAuthCode, MerchantId, Money, OrderNo, RefundNo, Total,
};
use serde::Serialize;

/// The contract's payment object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PaymentView {
    pub order_no: OrderNo,
    pub merchant_id: MerchantId,
    pub channel: Channel,
    pub amount: Money,
    pub currency: Currency,
    pub subject: String,
    pub auth_code: MaskedAuthCode,
    pub status: PaymentStatus,
    pub channel_trade_no: Option<String>,
    pub refunded_amount: Total,
    pub failure_code: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub paid_at: Option<DateTime<Utc>>,
    /// The version of the order's last event.
    pub version: u64,
    /// What the ledger will do next, and when (absent once settled).
    pub pending_action: Option<PendingAction>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PendingAction {
    pub action: &'static str,
    pub due_at: DateTime<Utc>,
}

/// The contract's refund object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RefundView {
    pub refund_no: RefundNo,
    pub order_no: OrderNo,
    pub amount: Money,
    pub reason: String,
    pub status: RefundStatus,
    pub created_at: DateTime<Utc>,
    pub succeeded_at: Option<DateTime<Utc>>,
    pub failure_code: Option<String>,
}

/// The contract's name for an action.
pub fn action_name(action: &Action) -> &'static str {
    match action {
        Action::QueryPayment => "query_payment",
        Action::StartRevoke { .. } => "start_revoke",
        Action::CallRevoke { .. } => "call_revoke",
        Action::QueryRefund { .. } => "query_refund",
        Action::CallRefund { .. } => "call_refund",
        Action::EscalateToManualReview { .. } => "escalate_to_manual_review",
    }
}

impl PaymentView {
    /// The view of a state reached after `last_version`, with the times of
    /// the first and last events. `None` before submission.
    pub fn of(
        state: &PaymentState,
        created_at: DateTime<Utc>,
        updated_at: DateTime<Utc>,
        last_version: u64,
    ) -> Option<Self> {
        let order = state.order()?;
        let status = state.status()?;
        let paid = state.paid_facts();
        let (refunded_amount, failure_code) = match state {
            PaymentState::Paid(paid) => (paid.refunded_total(), None),
            PaymentState::Closed(closed) => (Total::ZERO, closed.failure_code.clone()),
            PaymentState::Paying(paying) => (Total::ZERO, paying.failure_code.clone()),
            PaymentState::Revoking(revoking) => (Total::ZERO, revoking.failure_code.clone()),
            PaymentState::RevokedUnconfirmed(revoked) => {
                (Total::ZERO, revoked.failure_code.clone())
            }
            _ => (Total::ZERO, None),
        };
        Some(PaymentView {
            order_no: order.order_no.clone(),
            merchant_id: order.merchant_id.clone(),
            channel: order.channel,
            amount: order.amount,
            currency: order.currency,
            subject: order.subject.clone(),
            auth_code: order.auth_code.clone(),
            status,
            channel_trade_no: paid.map(|p| p.channel_trade_no.clone()),
            refunded_amount,
            failure_code,
            created_at,
            updated_at,
            paid_at: paid.map(|p| p.paid_at),
            version: last_version,
            pending_action: next_action(state).map(|(action, due_at)| PendingAction {
                action: action_name(&action),
                due_at,
            }),
        })
    }

    /// Folds a whole history (events with their versions) into the view.
    /// An event `evolve` refuses leaves the order as it was, as in the
    /// stored read models (`OrderFold::apply`).
    pub fn fold<'a>(events: impl IntoIterator<Item = (u64, &'a Event)>) -> Option<Self> {
        let mut state = PaymentState::Initial;
        let mut first_at = None;
        let mut last = None;
        for (version, event) in events {
            state = evolve(state, event).unwrap_or_else(|refused| refused.state);
            first_at.get_or_insert(event.at);
            last = Some((version, event.at));
        }
        let (version, updated_at) = last?;
        PaymentView::of(&state, first_at?, updated_at, version)
    }
}

/// The status after each event of an order's history, as `GET
/// /v1/payments/{order_no}/events` and `paycode history` show it. An event
/// `evolve` refuses leaves the status as it was.
pub fn statuses_after<'a>(
    events: impl IntoIterator<Item = &'a Event>,
) -> Vec<Option<PaymentStatus>> {
    let mut state = PaymentState::Initial;
    events
        .into_iter()
        .map(|event| {
            let before = std::mem::replace(&mut state, PaymentState::Initial);
            state = evolve(before, event).unwrap_or_else(|refused| refused.state);
            state.status()
        })
        .collect()
}

impl RefundView {
    /// Every refund of a paid order, in the order they were requested.
    pub fn all(state: &PaymentState) -> Vec<RefundView> {
        let PaymentState::Paid(paid) = state else {
            return Vec::new();
        };
        paid.refunds
            .iter()
            .map(|refund| RefundView {
                refund_no: refund.refund_no.clone(),
                order_no: paid.order.order_no.clone(),
                amount: refund.amount,
                reason: refund.reason.clone(),
                status: refund.status(),
                created_at: refund.requested_at,
                succeeded_at: match refund.stage {
                    RefundStage::Succeeded { refunded_at, .. } => Some(refunded_at),
                    _ => None,
                },
                failure_code: match &refund.stage {
                    RefundStage::Failed { code } => Some(code.clone()),
                    _ => None,
                },
            })
            .collect()
    }

    pub fn find(state: &PaymentState, refund_no: &RefundNo) -> Option<RefundView> {
        RefundView::all(state)
            .into_iter()
            .find(|r| &r.refund_no == refund_no)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use paycode_domain::Decider;
    use paycode_domain::payment::*;
    use paycode_domain::{AuthCode, CommandId};
    use uuid::Uuid;

    fn run(commands: Vec<(i64, CommandKind)>) -> Vec<Event> {
        let decider = PaymentDecider::default();
        let start = Utc.with_ymd_and_hms(2026, 11, 22, 2, 0, 0).unwrap();
        let mut state = PaymentState::Initial;
        let mut events = Vec::new();
        for (n, (secs, kind)) in commands.into_iter().enumerate() {
            let command = Command::new(CommandId(Uuid::from_u128(n as u128)), kind);
            for event in decider
                .decide(&state, &command, start + chrono::Duration::seconds(secs))
                .unwrap()
            {
                state = evolve(state, &event).unwrap();
                events.push(event);
            }
        }
        events
    }

    fn submit() -> CommandKind {
        CommandKind::SubmitPayment(SubmitPayment {
            merchant_id: MerchantId::parse("demo").unwrap(),
            order_no: OrderNo::parse("A1").unwrap(),
            auth_code: AuthCode::parse("134567890123456789").unwrap(),
            auth_code_fingerprint: None,
            amount: "12.34".parse().unwrap(),
            subject: "Coffee".into(),
        })
    }

    #[test]
    fn a_paid_and_partly_refunded_payment_shows_as_the_contract_says() {
        let paid_at = Utc.with_ymd_and_hms(2026, 11, 22, 2, 0, 1).unwrap();
        let events = run(vec![
            (0, submit()),
            (
                1,
                CommandKind::RecordPayAnswer(ChannelAnswer::new(PayOutcome::Paid {
                    channel_trade_no: "42".into(),
                    paid_at: Some(paid_at),
                })),
            ),
            (
                60,
                CommandKind::RequestRefund(RequestRefund {
                    refund_no: RefundNo::parse("R1").unwrap(),
                    amount: "2.00".parse().unwrap(),
                    reason: "r".into(),
                }),
            ),
            (
                61,
                CommandKind::RecordRefundAnswer {
                    refund_no: RefundNo::parse("R1").unwrap(),
                    answer: ChannelAnswer::new(RefundOutcome::Succeeded {
                        channel_refund_no: None,
                        refunded_at: paid_at,
                    }),
                },
            ),
        ]);
        let view =
            PaymentView::fold(events.iter().enumerate().map(|(v, e)| (v as u64, e))).unwrap();
        let json = serde_json::to_value(&view).unwrap();
        assert_eq!(json["status"], "partially_refunded");
        assert_eq!(json["amount"], "12.34");
        assert_eq!(json["refunded_amount"], "2.00");
        assert_eq!(json["auth_code"], "13**************89");
        assert_eq!(json["channel_trade_no"], "42");
        assert_eq!(json["paid_at"], "2026-11-22T02:00:01Z");
        assert_eq!(json["created_at"], "2026-11-22T02:00:00Z");
        assert_eq!(json["updated_at"], "2026-11-22T02:01:01Z");
        assert_eq!(json["version"], 3);
        assert_eq!(json["failure_code"], serde_json::Value::Null);
        assert_eq!(json["pending_action"], serde_json::Value::Null);
        let state = PaymentDecider::default().replay(&events).unwrap();
        let refund = serde_json::to_value(
            RefundView::find(&state, &RefundNo::parse("R1").unwrap()).unwrap(),
        )
        .unwrap();
        assert_eq!(refund["status"], "succeeded");
        assert_eq!(refund["amount"], "2.00");
    }

    #[test]
    fn a_paying_payment_shows_its_next_step() {
        let events = run(vec![
            (0, submit()),
            (
                1,
                CommandKind::RecordPayAnswer(ChannelAnswer::new(PayOutcome::WaitingForPassword)),
            ),
        ]);
        let view =
            PaymentView::fold(events.iter().enumerate().map(|(v, e)| (v as u64, e))).unwrap();
        assert_eq!(view.status, PaymentStatus::Paying);
        let pending = view.pending_action.unwrap();
        assert_eq!(pending.action, "query_payment");
        assert_eq!(
            pending.due_at,
            Utc.with_ymd_and_hms(2026, 11, 22, 2, 0, 6).unwrap()
        );
        assert!(PaymentView::fold(std::iter::empty()).is_none());
    }
}
