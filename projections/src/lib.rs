//! Pure read models of paycode: folds of recorded events, no IO (see
//! ARCHITECTURE.md). The app runs them from the store's global order and
//! stores their rows beside a checkpoint; they can be rebuilt at any time.
//!
//! - [`fold`]: one order's fold, shared by every read model.
//! - [`projection`]: the [`Projection`] trait and [`Table`].
//! - [`order_status`], [`refunds`], [`operator_queue`], [`in_flight`]: the
//!   read models of payment streams, from each order's fold.
//! - [`reconciliation_diffs`]: the findings of each statement day's latest
//!   report, from the reconciliation streams.
//! - [`set`]: [`Projections`], all of them fed by global position.
//! - [`sample`]: realistic logs made by the real decider, for the property
//!   tests and `paycode bench replay` (so part of the product, not test
//!   support).

pub mod fold;
pub mod in_flight;
pub mod operator_queue;
pub mod order_status;
pub mod payment_view;
pub mod projection;
pub mod reconciliation_diffs;
pub mod refunds;
pub mod sample;
pub mod set;

#[cfg(test)]
mod properties;

pub use fold::{OrderFold, OrderKey, PositionedEvent};
pub use payment_view::{PaymentView, PendingAction, RefundView, statuses_after};
pub use projection::{Change, Projection, Source, Table};
pub use reconciliation_diffs::PositionedReconciliation;
pub use set::{
    Changes, PROJECTION_NAMES, Projections, StoredChange, is_payment_stream,
    is_reconciliation_stream,
};
