//! The per-order fold every read model derives its rows from: one order's
//! `PaymentState` with the times and version of its events. The projection
//! set evolves each order once per event and hands the result to every
//! projection, so four read models cost one `evolve`.

use chrono::{DateTime, Utc};
use paycode_domain::payment::{Event, PaymentState, evolve};
use paycode_domain::{MerchantId, OrderNo};
use serde::Serialize;

use crate::payment_view::PaymentView;
use crate::projection::Source;

/// One decoded event as the store recorded it: where it sits in the global
/// order and in its stream. Borrowed, so applying it allocates nothing.
/// A payment event by default; see also `PositionedReconciliation`.
#[derive(Debug, Clone, Copy)]
pub struct PositionedEvent<'a, E = Event> {
    /// The store's global position (from 1).
    pub position: u64,
    /// The stream it belongs to (`payment-{merchant}-{order_no}`, or
    /// `reconciliation-{merchant}-{channel}-{date}`).
    pub stream: &'a str,
    /// Its version within the stream (from 0).
    pub version: u64,
    pub event: &'a E,
}

/// Which order a row is about. Serialized as the stored key of one-row-per-order read models.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct OrderKey {
    pub merchant_id: MerchantId,
    pub order_no: OrderNo,
}

/// One order folded from its events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderFold {
    pub key: OrderKey,
    pub state: PaymentState,
    /// When its first event happened (`None` before any).
    pub created_at: Option<DateTime<Utc>>,
    /// When its last event happened.
    pub updated_at: Option<DateTime<Utc>>,
    /// The version of its last event.
    pub version: u64,
}

impl OrderFold {
    /// An order before its first event.
    pub fn new(key: OrderKey) -> Self {
        OrderFold {
            key,
            state: PaymentState::Initial,
            created_at: None,
            updated_at: None,
            version: 0,
        }
    }

    /// Moves the fold by the event at `version` of the order's stream. An
    /// event `evolve` refuses (it breaks an invariant: `paycode verify`
    /// names it) leaves the order as it was.
    pub fn apply(&mut self, version: u64, event: &Event) {
        let state = std::mem::replace(&mut self.state, PaymentState::Initial);
        self.state = evolve(state, event).unwrap_or_else(|refused| refused.state);
        self.created_at.get_or_insert(event.at);
        self.updated_at = Some(event.at);
        self.version = version;
    }

    /// The API's payment object for the order (`None` before submission).
    pub fn view(&self) -> Option<PaymentView> {
        PaymentView::of(
            &self.state,
            self.created_at?,
            self.updated_at?,
            self.version,
        )
    }
}

impl Source for OrderFold {
    type Id = OrderKey;

    fn id(&self) -> &OrderKey {
        &self.key
    }
}
