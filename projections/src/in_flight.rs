//! In-flight orders: every order whose outcome is not settled yet (`paying`
//! or `revoking`), with the step the ledger owes it next. A row leaves when
//! the order settles. Refunds in progress are in the refunds read model.

use chrono::{DateTime, Utc};
use paycode_domain::payment::{PaymentStatus, next_action};
use paycode_domain::{Channel, Money};
use serde::Serialize;

use crate::fold::{OrderFold, OrderKey};
use crate::payment_view::{PendingAction, action_name};
use crate::projection::Projection;

/// An order still in flight.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct InFlightOrder {
    pub status: PaymentStatus,
    pub channel: Channel,
    pub amount: Money,
    pub submitted_at: DateTime<Utc>,
    /// Revoke if the outcome is not certain by then.
    pub deadline_at: DateTime<Utc>,
    /// What the ledger will do next, and when (absent while it waits for nothing).
    pub pending_action: Option<PendingAction>,
}

/// One row per order that is not settled.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct InFlight;

impl Projection for InFlight {
    const NAME: &'static str = "in_flight";
    type Key = OrderKey;
    type Row = InFlightOrder;
    type Source = OrderFold;

    fn rows_of(fold: &OrderFold, rows: &mut Vec<(OrderKey, InFlightOrder)>) {
        let (Some(order), Some(status)) = (fold.state.order(), fold.state.status()) else {
            return;
        };
        if status.is_settled() {
            return;
        }
        rows.push((
            fold.key.clone(),
            InFlightOrder {
                status,
                channel: order.channel,
                amount: order.amount,
                submitted_at: order.submitted_at,
                deadline_at: order.deadline_at,
                pending_action: next_action(&fold.state).map(|(action, due_at)| PendingAction {
                    action: action_name(&action),
                    due_at,
                }),
            },
        ));
    }
}
