//! WeChat Pay v2 (XML API) client for payment-code ("Quick Pay") orders:
//! micropay, orderquery, reverse, refund, refundquery and downloadbill,
//! behind [`crate::channel::ChannelClient`]. See `docs/rules.md`
//! for the rules and their public sources.
//!
//! The building blocks are public so the sandbox can play the other side:
//! - [`xml`]: the flat `<xml>` field map, both directions, CDATA and text alike;
//! - [`sign`]: MD5 / HMAC-SHA256 signing and constant-time verification;
//! - [`judge`]: pure functions from a parsed answer to the domain outcomes;
//! - [`config`]: the merchant's settings, checked at start-up;
//! - [`client`]: the HTTP client ([`WechatClient`]).
//!
//! Decisions where the reference leaves the protocol open:
//! - **Reverse does not say what it did.** WeChat's reverse answer has no
//!   field telling "closed unpaid" from "refunded paid", and a reversed order
//!   queries as `REVOKED` either way. A done reverse is reported as
//!   `RevokeResult::Unspecified`: the decider reads it as reversed when it
//!   had recorded the payment and as closed otherwise, and reconciliation
//!   catches a payment that landed unseen during the reverse. `recall=Y`, `USERPAYING` and
//!   `SYSTEMERROR` are `MustRetry`; `REVERSE_EXPIRE` is `WindowClosed`; any
//!   other failure is unknown.
//! - **Queries carry no amount.** The port passes only the order (and
//!   refund) number, so query answers are tied to the request by those
//!   numbers; their amounts must still parse as valid fen.
//! - **Unsigned business answers are unknown**, even a definitive-looking
//!   `result_code=FAIL`; only `return_code=FAIL` answers are unsigned by
//!   design, and they are unknown anyway.
//! - **An https base URL requires the client certificate** at start-up, so
//!   reverse and refund cannot fail later for want of it; plain http (the
//!   sandbox, test peers) makes it optional.
//! - **`sign_type` is sent only for HMAC-SHA256**; MD5 is WeChat's default,
//!   and the published MD5 vectors carry no `sign_type`.

pub mod client;
pub mod config;
pub mod judge;
pub mod sign;
pub mod xml;

pub use client::WechatClient;
pub use config::{ClientCertificate, WechatConfig};
pub use sign::{ApiKey, SignType};
pub use xml::Params;
