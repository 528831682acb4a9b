//! The pure core of paycode: money, payment codes, identifiers, the policy,
//! the invariants, and the deciders (payments, reconciliation days, the
//! ledger's environment mark) with the one codec of their stored events. No
//! IO, no clock, no async: time is an argument.
#![deny(clippy::float_arithmetic)]

pub mod auth_code;
pub mod calendar;
pub mod channel;
pub mod decider;
pub mod environment;
pub mod ids;
pub mod invariants;
pub mod money;
pub mod payment;
pub mod policy;
pub mod reconciliation;
#[cfg(test)]
mod specification;
pub mod stored;
pub mod utc;

pub use auth_code::{AuthCode, AuthCodeError, AuthCodeFingerprint, MaskedAuthCode};
pub use channel::{Channel, ChannelCodes, cap_channel_text, capped_channel_text};
pub use decider::{Decider, Refused};
pub use ids::{CommandId, IdError, MerchantId, OrderNo, RefundNo};
pub use money::{Currency, Money, MoneyError, Total};
pub use policy::Policy;
