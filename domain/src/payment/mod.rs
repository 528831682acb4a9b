//! The Payment aggregate, as a decider: commands in, events out, state
//! folded from events, and the next action derived from state. One stream
//! per merchant order; refunds live in the same stream so that one
//! optimistic-concurrency check guards the refundable balance.

mod command;
mod decide;
mod event;
mod next_action;
mod outcome;
mod rejection;
mod state;
pub mod stored;

pub use command::{Command, CommandKind, RequestRefund, SubmitPayment};
pub use decide::PaymentDecider;
pub use event::*;
pub use next_action::{Action, next_action};
pub use outcome::*;
pub use rejection::Rejection;
pub use state::*;

#[cfg(test)]
mod properties;
#[cfg(test)]
pub(crate) mod specification;
