//! Pure read models of paycode: folds of recorded events, no IO (see
//! ARCHITECTURE.md). The app runs them; they can be rebuilt at any time.

pub mod payment_view;

pub use payment_view::{PaymentView, PendingAction, RefundView};
