//! The pure core of paycode: money, payment codes, identifiers, the policy,
//! and the Payment decider. No IO, no clock, no async: time is an argument.
#![deny(clippy::float_arithmetic)]

pub mod auth_code;
pub mod channel;
pub mod ids;
pub mod money;
pub mod payment;
pub mod policy;
pub mod reconciliation;

pub use auth_code::{AuthCode, AuthCodeError, MaskedAuthCode};
pub use channel::{Channel, ChannelCodes};
pub use ids::{CommandId, IdError, MerchantId, OrderNo, RefundNo};
pub use money::{Currency, Money, MoneyError, Total};
pub use policy::Policy;
