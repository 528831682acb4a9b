//! Alipay OpenAPI client: requests, RSA2 signing, response verification, result judgment.
//!
//! - [`wire`]: method names, common parameters, `biz_content` types, China
//!   time and exact yuan amounts.
//! - [`sign`]: RSA2 request signing and verification, response-node
//!   signing and envelope building (the sandbox plays Alipay with these).
//! - [`envelope`]: the raw `*_response` node and `sign` of an answer body,
//!   sliced out exactly as sent, since that text is what is signed.
//! - [`judge`]: pure functions from a verified answer to the domain's
//!   outcomes, with the decisions the channels' documentation leaves open.
//! - [`config`] and [`client`]: [`AlipayConfig`] and [`AlipayClient`], the
//!   [`crate::channel::ChannelClient`] for one merchant's app.

pub mod client;
pub mod config;
pub mod envelope;
pub mod judge;
pub mod sign;
pub mod wire;

pub use client::AlipayClient;
pub use config::{AlipayConfig, Secret};
