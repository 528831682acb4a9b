//! Money: an exact, positive amount of CNY.
//!
//! Held as integer fen so that arithmetic is exact; parsed from and shown as
//! a decimal string. Conversions to the channels' forms (WeChat fen, Alipay
//! two-decimal yuan) are exact; anything that would need rounding is an error.

use std::fmt;
use std::str::FromStr;

use rust_decimal::Decimal;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The largest amount one payment may carry: 100000000.00 CNY, in fen.
pub const AMOUNT_MAX_FEN: u64 = 10_000_000_000;

/// The only currency payment codes are used for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub enum Currency {
    #[default]
    #[serde(rename = "CNY")]
    Cny,
}

impl Currency {
    /// Parses an ISO 4217 code; only `CNY` is accepted.
    pub fn parse(code: &str) -> Result<Currency, MoneyError> {
        match code {
            "CNY" => Ok(Currency::Cny),
            _ => Err(MoneyError::UnsupportedCurrency),
        }
    }

    pub fn code(self) -> &'static str {
        "CNY"
    }
}

/// Why a string or number is not a valid amount. Each message is written for
/// the person who sent it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MoneyError {
    #[error("amount must be a decimal number such as \"12.34\"")]
    NotANumber,
    #[error("amount must not start or end with spaces")]
    Spaces,
    #[error("amount must be greater than 0")]
    NotPositive,
    #[error("amount must have at most 2 decimal places")]
    TooManyDecimals,
    #[error("amount must be at most 100000000.00")]
    TooLarge,
    #[error("currency must be CNY")]
    UnsupportedCurrency,
}

impl MoneyError {
    /// The stable code the HTTP API answers with.
    pub fn code(&self) -> &'static str {
        match self {
            MoneyError::UnsupportedCurrency => "invalid_currency",
            _ => "invalid_amount",
        }
    }
}

/// A positive amount of CNY, at most [`AMOUNT_MAX_FEN`], exact to the fen.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Money {
    fen: u64,
}

impl Money {
    /// An amount from integer fen (WeChat's unit).
    pub fn from_fen(fen: u64) -> Result<Money, MoneyError> {
        if fen == 0 {
            return Err(MoneyError::NotPositive);
        }
        if fen > AMOUNT_MAX_FEN {
            return Err(MoneyError::TooLarge);
        }
        Ok(Money { fen })
    }

    /// An amount from a decimal; never rounds.
    pub fn from_decimal(amount: Decimal) -> Result<Money, MoneyError> {
        if amount <= Decimal::ZERO {
            return Err(MoneyError::NotPositive);
        }
        if amount.scale() > 2 {
            return Err(MoneyError::TooManyDecimals);
        }
        let fen = amount
            .checked_mul(Decimal::ONE_HUNDRED)
            .ok_or(MoneyError::TooLarge)?;
        debug_assert!(fen.fract().is_zero(), "scale <= 2 times 100 is whole");
        let fen: u64 = fen.trunc().try_into().map_err(|_| MoneyError::TooLarge)?;
        Money::from_fen(fen)
    }

    /// The amount in fen, as WeChat wants it.
    pub fn fen(self) -> u64 {
        self.fen
    }

    /// The amount as a decimal with exactly two places.
    pub fn to_decimal(self) -> Decimal {
        // fen <= AMOUNT_MAX_FEN fits i64, so this cannot overflow.
        Decimal::new(i64::try_from(self.fen).unwrap_or(i64::MAX), 2)
    }

    /// The amount as Alipay's yuan string, always with two decimals ("12.30").
    pub fn to_yuan_string(self) -> String {
        format!("{}.{:02}", self.fen / 100, self.fen % 100)
    }

    /// `self + other`, or `None` past the maximum.
    pub fn checked_add(self, other: Money) -> Option<Money> {
        Money::from_fen(self.fen.checked_add(other.fen)?).ok()
    }
}

impl FromStr for Money {
    type Err = MoneyError;

    /// Exactly the digits: `" 1.00"` and `"1.00 "` are refused, not
    /// trimmed (an amount from outside is taken as sent or not at all).
    fn from_str(text: &str) -> Result<Money, MoneyError> {
        if text.trim() != text && !text.trim().is_empty() {
            return Err(MoneyError::Spaces);
        }
        // Decimal accepts forms we do not ("1e3", "_"); only plain digits with an optional point.
        let plain = !text.is_empty()
            && text
                .chars()
                .all(|c| c.is_ascii_digit() || c == '.' || c == '-')
            && text.chars().filter(|&c| c == '.').count() <= 1
            && !text.starts_with('.')
            && !text.ends_with('.');
        if !plain {
            return Err(MoneyError::NotANumber);
        }
        if text.len() > 24 {
            return Err(MoneyError::TooLarge);
        }
        let amount = Decimal::from_str(text).map_err(|_| MoneyError::NotANumber)?;
        Money::from_decimal(amount)
    }
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_yuan_string())
    }
}

impl fmt::Debug for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Money({self} CNY)")
    }
}

impl Serialize for Money {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_yuan_string())
    }
}

impl<'de> Deserialize<'de> for Money {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Money, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// A sum of amounts that may be zero (refunded so far, refundable balance), in fen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Total {
    fen: u64,
}

impl Total {
    pub const ZERO: Total = Total { fen: 0 };

    pub fn fen(self) -> u64 {
        self.fen
    }

    /// `self + amount`, or `None` past what a `u64` of fen holds. A sum of
    /// amounts never silently stops growing.
    pub fn checked_plus(self, amount: Money) -> Option<Total> {
        Some(Total {
            fen: self.fen.checked_add(amount.fen())?,
        })
    }

    /// What is left of `amount` after this total: `amount - self`, or
    /// `None` when the total is above it (more refunded than paid is a
    /// broken invariant, never "nothing left").
    pub fn remaining_of(self, amount: Money) -> Option<Total> {
        Some(Total {
            fen: amount.fen().checked_sub(self.fen)?,
        })
    }

    /// The sum of `amounts`, or `None` past what a `u64` of fen holds.
    pub fn sum(amounts: impl IntoIterator<Item = Money>) -> Option<Total> {
        amounts
            .into_iter()
            .try_fold(Total::ZERO, Total::checked_plus)
    }

    /// Shown like money, zero included: "0.00".
    pub fn to_yuan_string(self) -> String {
        format!("{}.{:02}", self.fen / 100, self.fen % 100)
    }
}

impl From<Money> for Total {
    fn from(amount: Money) -> Total {
        Total { fen: amount.fen() }
    }
}

impl fmt::Display for Total {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_yuan_string())
    }
}

impl Serialize for Total {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_yuan_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn money(text: &str) -> Result<Money, MoneyError> {
        text.parse()
    }

    #[test]
    fn parses_exact_amounts_to_fen() {
        assert_eq!(money("12.34").unwrap().fen(), 1234);
        assert_eq!(money("0.01").unwrap().fen(), 1);
        assert_eq!(money("7").unwrap().fen(), 700);
        assert_eq!(money("7.5").unwrap().fen(), 750);
        assert_eq!(money("100000000.00").unwrap().fen(), AMOUNT_MAX_FEN);
    }

    #[test]
    fn rejects_instead_of_rounding() {
        assert_eq!(money("12.345"), Err(MoneyError::TooManyDecimals));
        assert_eq!(money("0.001"), Err(MoneyError::TooManyDecimals));
        assert_eq!(money("12.340"), Err(MoneyError::TooManyDecimals));
    }

    #[test]
    fn rejects_zero_negative_too_large_and_garbage() {
        assert_eq!(money("0"), Err(MoneyError::NotPositive));
        assert_eq!(money("0.00"), Err(MoneyError::NotPositive));
        assert_eq!(money("-1.00"), Err(MoneyError::NotPositive));
        assert_eq!(money("100000000.01"), Err(MoneyError::TooLarge));
        assert_eq!(
            money("99999999999999999999999999"),
            Err(MoneyError::TooLarge)
        );
        for garbage in ["", "abc", "1e3", "1.2.3", ".5", "5.", "1_000", " ", "NaN"] {
            assert_eq!(money(garbage), Err(MoneyError::NotANumber), "{garbage:?}");
        }
    }

    #[test]
    fn spaces_around_an_amount_are_refused_not_trimmed() {
        for spaced in [" 1.00", "1.00 ", "\t1.00", "1.00\n", " 1.00 "] {
            assert_eq!(money(spaced), Err(MoneyError::Spaces), "{spaced:?}");
            assert_eq!(money(spaced).unwrap_err().code(), "invalid_amount");
        }
        assert!(serde_json::from_str::<Money>("\" 1.00\"").is_err());
    }

    #[test]
    fn converts_to_channel_forms_exactly() {
        let amount = money("12.3").unwrap();
        assert_eq!(amount.fen(), 1230);
        assert_eq!(amount.to_yuan_string(), "12.30");
        assert_eq!(Money::from_fen(5).unwrap().to_yuan_string(), "0.05");
        assert_eq!(amount.to_decimal().to_string(), "12.30");
        assert_eq!(Money::from_fen(0), Err(MoneyError::NotPositive));
        assert_eq!(
            Money::from_fen(AMOUNT_MAX_FEN + 1),
            Err(MoneyError::TooLarge)
        );
    }

    #[test]
    fn serializes_as_a_two_decimal_string_and_back() {
        let amount = money("1").unwrap();
        assert_eq!(serde_json::to_string(&amount).unwrap(), "\"1.00\"");
        let back: Money = serde_json::from_str("\"1.00\"").unwrap();
        assert_eq!(back, amount);
        assert!(serde_json::from_str::<Money>("\"1.001\"").is_err());
    }

    #[test]
    fn totals_track_refunds_and_fail_instead_of_going_negative() {
        // 3.00 of 10.00 leaves 7.00; the whole of it leaves zero; more than
        // all of it is not "zero left" but no answer at all.
        let paid = money("10.00").unwrap();
        let total = Total::ZERO.checked_plus(money("3.00").unwrap()).unwrap();
        assert_eq!(total.remaining_of(paid).unwrap().to_yuan_string(), "7.00");
        assert_eq!(Total::from(paid).remaining_of(paid), Some(Total::ZERO));
        let twice = Total::from(paid).checked_plus(paid).unwrap();
        assert_eq!(twice.remaining_of(paid), None);
        assert_eq!(Total::sum([paid, paid]), Some(twice));
        assert_eq!(
            Total { fen: u64::MAX }.checked_plus(money("0.01").unwrap()),
            None
        );
        assert_eq!(Total::ZERO.to_string(), "0.00");
    }

    #[test]
    fn only_cny_is_a_currency() {
        assert_eq!(Currency::parse("CNY"), Ok(Currency::Cny));
        assert_eq!(Currency::parse("USD"), Err(MoneyError::UnsupportedCurrency));
        assert_eq!(MoneyError::UnsupportedCurrency.code(), "invalid_currency");
    }
}
