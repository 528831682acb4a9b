//! The outside world of paycode, behind traits: event stores, the channel
//! clients, statement parsers. Vendor errors are translated here into the
//! small error enums the callers branch on. The simulation of the channels
//! (the sandbox) is not an adapter and lives in `paycode-sandbox`, which is
//! built on this crate.
#![deny(clippy::float_arithmetic)]

pub mod alipay;
pub mod channel;
pub mod clock;
mod config_error;
pub mod ids;
pub mod lease;
pub mod read_models;
pub mod statement;
pub mod store;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
pub mod wechat;

pub use config_error::ConfigError;
