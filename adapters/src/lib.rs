//! The outside world of paycode, behind traits: event stores, and later the
//! channel clients, statement parsers and the sandbox. Vendor errors are
//! translated here into the small error enums the callers branch on.
#![deny(clippy::float_arithmetic)]

pub mod alipay;
pub mod channel;
pub mod clock;
mod config_error;
pub mod lease;
pub mod read_models;
pub mod sandbox;
pub mod statement;
pub mod store;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
#[doc(hidden)]
pub mod testkit;
pub mod wechat;

pub use config_error::ConfigError;
