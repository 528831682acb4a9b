//! The payment code the cashier scans: a one-minute bearer credential.
//!
//! It exists in full only in memory, for the single pay call. `Debug`,
//! `Display` and `Serialize` show a mask; there is no `Deserialize`, and
//! events hold a [`MaskedAuthCode`], so the full code cannot reach a log line
//! or the store by accident. Beside the mask, an event may hold an
//! [`AuthCodeFingerprint`]: a keyed hash of the full code, computed outside
//! the domain (which holds no key), that tells two codes apart where their
//! masks agree.

use std::fmt;

use serde::{Deserialize, Serialize, Serializer};

use crate::channel::Channel;

/// Why a scanned code is not a payment code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthCodeError {
    #[error(
        "auth_code must be a WeChat (18 digits starting 10-15) or Alipay (16-24 digits starting 25-30) payment code"
    )]
    NotAPaymentCode,
    #[error("auth_code is a {actual} payment code, but channel says {requested}")]
    ChannelMismatch { requested: Channel, actual: Channel },
}

impl AuthCodeError {
    /// The stable code the HTTP API answers with.
    pub fn code(&self) -> &'static str {
        match self {
            AuthCodeError::NotAPaymentCode => "invalid_auth_code",
            AuthCodeError::ChannelMismatch { .. } => "channel_mismatch",
        }
    }
}

/// A validated payment code, with the channel it belongs to.
#[derive(Clone, PartialEq, Eq)]
pub struct AuthCode {
    digits: String,
    channel: Channel,
}

impl AuthCode {
    /// Validates `code` and infers its channel: WeChat `^1[0-5]\d{16}$`,
    /// Alipay 16–24 digits starting 25–30.
    pub fn parse(code: &str) -> Result<AuthCode, AuthCodeError> {
        let channel = channel_of(code).ok_or(AuthCodeError::NotAPaymentCode)?;
        Ok(AuthCode {
            digits: code.to_owned(),
            channel,
        })
    }

    /// Like [`AuthCode::parse`], and the code must belong to `requested`.
    pub fn parse_for(code: &str, requested: Option<Channel>) -> Result<AuthCode, AuthCodeError> {
        let auth_code = AuthCode::parse(code)?;
        match requested {
            Some(requested) if requested != auth_code.channel => {
                Err(AuthCodeError::ChannelMismatch {
                    requested,
                    actual: auth_code.channel,
                })
            }
            _ => Ok(auth_code),
        }
    }

    pub fn channel(&self) -> Channel {
        self.channel
    }

    /// The full code, for the pay request and nothing else.
    pub fn expose_for_pay_call(&self) -> &str {
        &self.digits
    }

    /// The form that may be stored and shown.
    pub fn masked(&self) -> MaskedAuthCode {
        MaskedAuthCode(mask(&self.digits))
    }

    /// The last two digits: the sandbox chooses its behaviour by them, and
    /// they are part of the mask anyway.
    pub fn last_two_digits(&self) -> &str {
        &self.digits[self.digits.len() - 2..]
    }
}

fn channel_of(code: &str) -> Option<Channel> {
    if !code.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let prefix: u32 = code.get(..2)?.parse().ok()?;
    match (code.len(), prefix) {
        (18, 10..=15) => Some(Channel::Wechat),
        (16..=24, 25..=30) => Some(Channel::Alipay),
        _ => None,
    }
}

/// First two and last two digits, the rest starred: `13**************89`.
fn mask(digits: &str) -> String {
    let hidden = digits.len().saturating_sub(4);
    format!(
        "{}{}{}",
        &digits[..2],
        "*".repeat(hidden),
        &digits[digits.len() - 2..]
    )
}

impl fmt::Debug for AuthCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AuthCode({}, {})", self.channel, mask(&self.digits))
    }
}

impl fmt::Display for AuthCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&mask(&self.digits))
    }
}

impl Serialize for AuthCode {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&mask(&self.digits))
    }
}

/// A masked payment code, as stored in events and shown in the API.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct MaskedAuthCode(String);

impl MaskedAuthCode {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for MaskedAuthCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A keyed fingerprint of a full payment code (lowercase hex of
/// HMAC-SHA256 under a per-ledger secret, computed by the application):
/// equal for the same code, unrelated for codes whose masks agree, and
/// useless without the secret. Idempotent creation compares it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct AuthCodeFingerprint(String);

impl AuthCodeFingerprint {
    /// Wraps the hex digest the application computed.
    pub fn from_hex(hex: String) -> AuthCodeFingerprint {
        AuthCodeFingerprint(hex)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WECHAT: &str = "134567890123456789";
    const ALIPAY: &str = "284567890123456789";

    #[test]
    fn infers_the_channel_from_the_code() {
        assert_eq!(AuthCode::parse(WECHAT).unwrap().channel(), Channel::Wechat);
        assert_eq!(AuthCode::parse(ALIPAY).unwrap().channel(), Channel::Alipay);
        assert_eq!(
            AuthCode::parse("2512345678901234").unwrap().channel(),
            Channel::Alipay
        );
        assert_eq!(
            AuthCode::parse("301234567890123456789012")
                .unwrap()
                .channel(),
            Channel::Alipay
        );
        assert_eq!(
            AuthCode::parse("100000000000000000").unwrap().channel(),
            Channel::Wechat
        );
        assert_eq!(
            AuthCode::parse("159999999999999999").unwrap().channel(),
            Channel::Wechat
        );
    }

    #[test]
    fn rejects_what_fits_neither_channel() {
        for bad in [
            "",
            "16456789012345678",         // WeChat prefix, 17 digits
            "164567890123456789",        // 18 digits, prefix 16
            "1345678901234567890",       // 19 digits, WeChat prefix
            "241234567890123456",        // prefix 24
            "311234567890123456",        // prefix 31
            "251234567890123",           // 15 digits
            "2512345678901234567890123", // 25 digits
            "13456789012345678a",
            "１34567890123456789",
        ] {
            assert_eq!(
                AuthCode::parse(bad),
                Err(AuthCodeError::NotAPaymentCode),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn a_contradicting_channel_is_an_error() {
        let err = AuthCode::parse_for(WECHAT, Some(Channel::Alipay)).unwrap_err();
        assert_eq!(
            err,
            AuthCodeError::ChannelMismatch {
                requested: Channel::Alipay,
                actual: Channel::Wechat
            }
        );
        assert_eq!(err.code(), "channel_mismatch");
        assert!(AuthCode::parse_for(WECHAT, Some(Channel::Wechat)).is_ok());
        assert!(AuthCode::parse_for(WECHAT, None).is_ok());
    }

    #[test]
    fn every_printable_form_is_masked() {
        let code = AuthCode::parse(WECHAT).unwrap();
        let masked = "13**************89";
        assert_eq!(code.to_string(), masked);
        assert_eq!(format!("{code:?}"), format!("AuthCode(wechat, {masked})"));
        assert_eq!(
            serde_json::to_string(&code).unwrap(),
            format!("\"{masked}\"")
        );
        assert_eq!(code.masked().as_str(), masked);
        for form in [
            code.to_string(),
            format!("{code:?}"),
            serde_json::to_string(&code).unwrap(),
        ] {
            assert!(!form.contains("4567890123456"), "{form}");
        }
        assert_eq!(code.expose_for_pay_call(), WECHAT);
        assert_eq!(code.last_two_digits(), "89");
    }
}
