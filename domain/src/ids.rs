//! Identifiers: merchants, orders, refunds, commands, and the stream an
//! order's events live in.

use std::fmt;

use chrono::NaiveDate;
use serde::{Deserialize, Deserializer, Serialize};
use uuid::Uuid;

use crate::channel::Channel;

/// Why an identifier is malformed; `field` names the offending input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field} must be 1-{max_len} characters of {allowed}")]
pub struct IdError {
    pub field: &'static str,
    pub max_len: usize,
    pub allowed: &'static str,
}

impl IdError {
    /// The stable code the HTTP API answers with, e.g. `invalid_order_no`.
    pub fn code(&self) -> String {
        format!("invalid_{}", self.field)
    }
}

macro_rules! identifier {
    ($(#[$doc:meta])* $name:ident, field = $field:literal, max_len = $max:literal, dash = $dash:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            pub const FIELD: &'static str = $field;

            pub fn parse(text: &str) -> Result<Self, IdError> {
                let allowed_char = |c: char| c.is_ascii_alphanumeric() || c == '_' || ($dash && c == '-');
                if text.is_empty() || text.len() > $max || !text.chars().all(allowed_char) {
                    return Err(IdError {
                        field: $field,
                        max_len: $max,
                        allowed: if $dash { "[A-Za-z0-9_-]" } else { "[A-Za-z0-9_]" },
                    });
                }
                Ok(Self(text.to_owned()))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let text = String::deserialize(deserializer)?;
                Self::parse(&text).map_err(serde::de::Error::custom)
            }
        }
    };
}

identifier!(
    /// A merchant served by this ledger. No `-`, so that a stream name
    /// `payment-{merchant}-{order_no}` splits back unambiguously.
    MerchantId, field = "merchant_id", max_len = 32, dash = false
);
identifier!(
    /// The merchant's own order number (`out_trade_no` on the wire).
    OrderNo, field = "order_no", max_len = 32, dash = true
);
identifier!(
    /// The merchant's refund number; the channel's idempotency key for a refund.
    RefundNo, field = "refund_no", max_len = 32, dash = true
);

impl OrderNo {
    /// The number of a text taken from an `OrderNo`: checked already, so
    /// not checked again (the reconciliation ledger keeps its order numbers
    /// as text and hands them out as `OrderNo`s).
    pub(crate) fn from_checked(text: &str) -> OrderNo {
        OrderNo(text.to_owned())
    }
}

/// The id of the command (an API request, a runtime step) that caused events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct CommandId(pub Uuid);

impl CommandId {
    /// The id of the `index`-th event a command produced. Deterministic, so
    /// that retrying an ambiguous append reuses the same event ids. It keeps
    /// the command id's order (callers make time-ordered version 7 ids), so
    /// a store's id index grows at one end; only the low bits, random in a
    /// version 7 id, carry the index.
    pub fn event_id(self, index: usize) -> Uuid {
        Uuid::from_u128(self.0.as_u128() ^ (index as u128))
    }
}

impl fmt::Display for CommandId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// The stream that holds every event of one merchant order, refunds included.
pub fn payment_stream(merchant: &MerchantId, order_no: &OrderNo) -> String {
    format!("payment-{merchant}-{order_no}")
}

/// Splits a stream name made by [`payment_stream`]; `None` for other streams.
pub fn parse_payment_stream(stream: &str) -> Option<(MerchantId, OrderNo)> {
    let rest = stream.strip_prefix("payment-")?;
    let (merchant, order_no) = rest.split_once('-')?;
    Some((
        MerchantId::parse(merchant).ok()?,
        OrderNo::parse(order_no).ok()?,
    ))
}

/// The stream that holds the reconciliation reports of one merchant's
/// statement of one channel and China-time day, e.g.
/// `reconciliation-demo-wechat-2026-11-21`.
pub fn reconciliation_stream(channel: Channel, merchant: &MerchantId, date: NaiveDate) -> String {
    format!("reconciliation-{merchant}-{channel}-{date}")
}

/// Splits a stream name made by [`reconciliation_stream`]; `None` for other streams.
pub fn parse_reconciliation_stream(stream: &str) -> Option<(MerchantId, Channel, NaiveDate)> {
    let rest = stream.strip_prefix("reconciliation-")?;
    let (merchant, rest) = rest.split_once('-')?;
    let (channel, date) = rest.split_once('-')?;
    Some((
        MerchantId::parse(merchant).ok()?,
        Channel::parse(channel)?,
        NaiveDate::parse_from_str(date, "%Y-%m-%d").ok()?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_numbers_follow_the_contract() {
        assert!(OrderNo::parse("A20261122-0001").is_ok());
        assert!(OrderNo::parse(&"x".repeat(32)).is_ok());
        for bad in ["", &"x".repeat(33), "a b", "订单", "a/b", "a.b"] {
            let err = OrderNo::parse(bad).unwrap_err();
            assert_eq!(err.field, "order_no");
            assert_eq!(err.code(), "invalid_order_no");
        }
        assert_eq!(
            OrderNo::parse("").unwrap_err().to_string(),
            "order_no must be 1-32 characters of [A-Za-z0-9_-]"
        );
    }

    #[test]
    fn stream_names_split_back_even_with_dashes_in_the_order_number() {
        let merchant = MerchantId::parse("demo").unwrap();
        let order = OrderNo::parse("A-1-2").unwrap();
        let stream = payment_stream(&merchant, &order);
        assert_eq!(stream, "payment-demo-A-1-2");
        assert_eq!(parse_payment_stream(&stream), Some((merchant, order)));
        assert!(MerchantId::parse("de-mo").is_err());
        assert_eq!(parse_payment_stream("reconciliation-x"), None);
    }

    #[test]
    fn reconciliation_streams_are_per_merchant_channel_and_day() {
        // One stream per merchant, channel and statement day, never mistaken for a payment stream.
        let merchant = MerchantId::parse("demo").unwrap();
        let date = NaiveDate::from_ymd_opt(2026, 11, 21).unwrap();
        let stream = reconciliation_stream(Channel::Wechat, &merchant, date);
        assert_eq!(stream, "reconciliation-demo-wechat-2026-11-21");
        assert_ne!(
            stream,
            reconciliation_stream(Channel::Alipay, &merchant, date)
        );
        assert_eq!(parse_payment_stream(&stream), None);
        assert_eq!(
            parse_reconciliation_stream(&stream),
            Some((merchant.clone(), Channel::Wechat, date))
        );
        for other in [
            "payment-demo-A1",
            "reconciliation-demo-wechat",
            "reconciliation-demo-paypal-2026-11-21",
            "reconciliation-demo-wechat-2026-13-01",
            "reconciliation--wechat-2026-11-21",
        ] {
            assert_eq!(parse_reconciliation_stream(other), None, "{other}");
        }
    }

    #[test]
    fn event_ids_are_stable_per_command_and_index() {
        let command = CommandId(Uuid::from_u128(7));
        assert_eq!(command.event_id(0), command.event_id(0));
        assert_ne!(command.event_id(0), command.event_id(1));
        assert_ne!(
            command.event_id(0),
            CommandId(Uuid::from_u128(8)).event_id(0)
        );
    }

    #[test]
    fn deserializing_validates() {
        assert!(serde_json::from_str::<RefundNo>("\"R1\"").is_ok());
        assert!(serde_json::from_str::<RefundNo>("\"R 1\"").is_err());
    }
}
