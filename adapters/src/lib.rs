//! The outside world of paycode, behind traits: event stores, the channel
//! clients, statement parsers. Vendor errors are translated here into the
//! small error enums the callers branch on. The simulation of the channels
//! (the sandbox) is not an adapter and lives in `paycode-sandbox`, which is
//! built on this crate.
#![deny(clippy::float_arithmetic)]

pub mod alipay;
pub mod channel;
pub mod clock;
pub mod lease;
pub mod statement;
pub mod store;
#[doc(hidden)]
pub mod testkit;
pub mod wechat;
