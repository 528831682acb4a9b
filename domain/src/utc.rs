//! Stored times: every time in a stored event is RFC 3339 in UTC, written by
//! chrono (`2026-11-22T02:00:01Z`, or with 3, 6 or 9 fraction digits). Read
//! back here: that exact form is parsed directly, anything else goes to
//! chrono's own parser, so what decodes (and to what) is exactly what
//! chrono's deserializer accepts, only faster for the usual form. Replays
//! and `paycode verify` read a few of these per event, millions of times;
//! chrono's general parser was a tenth of `verify`'s time.
//!
//! Used with `#[serde(deserialize_with = "crate::utc::deserialize")]`, and
//! `#[serde(default, deserialize_with = "crate::utc::deserialize_option")]`
//! for optional times. Writing is chrono's, unchanged.

use std::fmt;

use chrono::{DateTime, FixedOffset, NaiveDate, Utc};
use serde::Deserializer;
use serde::de::{Error, Visitor};

/// Parses an RFC 3339 time as chrono's `DateTime<Utc>` deserializer does.
pub fn parse(text: &str) -> Option<DateTime<Utc>> {
    fast(text.as_bytes()).or_else(|| {
        text.parse::<DateTime<FixedOffset>>()
            .ok()
            .map(|time| time.with_timezone(&Utc))
    })
}

/// `YYYY-MM-DDTHH:MM:SS[.F{1,9}]Z` with a valid date and time and no leap
/// second; `None` for anything else (left to chrono).
fn fast(bytes: &[u8]) -> Option<DateTime<Utc>> {
    let (&b'Z', body) = bytes.split_last()? else {
        return None;
    };
    if body.len() < 19
        || body[4] != b'-'
        || body[7] != b'-'
        || body[10] != b'T'
        || body[13] != b':'
        || body[16] != b':'
    {
        return None;
    }
    let number = |digits: &[u8]| -> Option<u32> {
        digits.iter().try_fold(0u32, |value, digit| {
            digit
                .is_ascii_digit()
                .then(|| value * 10 + u32::from(digit - b'0'))
        })
    };
    let year = i32::try_from(number(&body[0..4])?).ok()?;
    let (month, day) = (number(&body[5..7])?, number(&body[8..10])?);
    let (hour, minute, second) = (
        number(&body[11..13])?,
        number(&body[14..16])?,
        number(&body[17..19])?,
    );
    if second > 59 {
        return None;
    }
    let nanos = match &body[19..] {
        [] => 0,
        [b'.', fraction @ ..] if (1..=9).contains(&fraction.len()) => {
            number(fraction)? * 10u32.pow(9 - u32::try_from(fraction.len()).ok()?)
        }
        _ => return None,
    };
    Some(
        NaiveDate::from_ymd_opt(year, month, day)?
            .and_hms_nano_opt(hour, minute, second, nanos)?
            .and_utc(),
    )
}

struct UtcVisitor;

impl Visitor<'_> for UtcVisitor {
    type Value = DateTime<Utc>;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("an RFC 3339 date and time")
    }

    fn visit_str<E: Error>(self, text: &str) -> Result<Self::Value, E> {
        parse(text).ok_or_else(|| E::custom(format!("{text:?} is not an RFC 3339 date and time")))
    }
}

/// Deserializes a stored time.
pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<DateTime<Utc>, D::Error> {
    deserializer.deserialize_str(UtcVisitor)
}

struct OptionVisitor;

impl<'de> Visitor<'de> for OptionVisitor {
    type Value = Option<DateTime<Utc>>;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("an RFC 3339 date and time, or null")
    }

    fn visit_none<E: Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_unit<E: Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserialize(deserializer).map(Some)
    }
}

/// Deserializes an optional stored time (`null` or absent: `None`).
pub fn deserialize_option<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<DateTime<Utc>>, D::Error> {
    deserializer.deserialize_option(OptionVisitor)
}

#[cfg(test)]
mod tests {
    use chrono::{SecondsFormat, TimeZone};
    use proptest::prelude::*;

    use super::*;

    fn chrono_parse(text: &str) -> Option<DateTime<Utc>> {
        text.parse::<DateTime<FixedOffset>>()
            .ok()
            .map(|time| time.with_timezone(&Utc))
    }

    #[test]
    fn the_written_forms_parse_directly_to_what_chrono_reads() {
        // Shows the fast path taking every form chrono writes, to the same time.
        let base = Utc.with_ymd_and_hms(2026, 11, 22, 2, 0, 1).unwrap();
        for nanos in [0, 120_000_000, 123_456_000, 123_456_789] {
            let time = base + chrono::Duration::nanoseconds(nanos);
            let written = serde_json::to_string(&time).unwrap();
            let text = written.trim_matches('"');
            assert_eq!(fast(text.as_bytes()), Some(time), "{text}");
            assert_eq!(parse(text), chrono_parse(text), "{text}");
        }
    }

    #[test]
    fn other_forms_are_chronos_to_judge() {
        // Shows that what the fast path declines is decided by chrono alone:
        // offsets, lower-case separators, leap seconds, impossible dates.
        for text in [
            "2026-11-22T10:00:01+08:00",
            "2026-11-22t02:00:01z",
            "2026-11-22 02:00:01Z",
            "2016-12-31T23:59:60Z",
            "2026-02-30T02:00:01Z",
            "2026-11-22T24:00:00Z",
            "2026-11-22T02:00:01.1234567891Z",
            "2026-11-22T02:00:01.Z",
            "2026-11-22T02:00Z",
            "not a time",
            "",
        ] {
            assert!(fast(text.as_bytes()).is_none(), "{text}");
            assert_eq!(parse(text), chrono_parse(text), "{text}");
        }
        assert!(parse("2026-11-22T10:00:01+08:00").is_some());
        assert!(parse("2026-02-30T02:00:01Z").is_none());
    }

    #[test]
    fn optional_times_read_null_and_absent_as_none() {
        // Shows the option form through serde: a time, null, and a missing field.
        #[derive(serde::Deserialize)]
        struct Holder {
            #[serde(default, deserialize_with = "deserialize_option")]
            at: Option<DateTime<Utc>>,
        }
        let read = |json: &str| serde_json::from_str::<Holder>(json).map(|holder| holder.at);
        assert_eq!(
            read(r#"{"at":"2026-11-22T02:00:01Z"}"#).unwrap(),
            Some(Utc.with_ymd_and_hms(2026, 11, 22, 2, 0, 1).unwrap())
        );
        assert_eq!(read(r#"{"at":null}"#).unwrap(), None);
        assert_eq!(read("{}").unwrap(), None);
        assert!(read(r#"{"at":"yesterday"}"#).is_err());
    }

    proptest! {
        #[test]
        fn any_time_written_reads_back_as_chrono_reads_it(
            secs in 0i64..8_000_000_000,
            nanos in 0u32..1_000_000_000,
            digits in prop::sample::select(vec![SecondsFormat::Secs, SecondsFormat::Millis, SecondsFormat::Micros, SecondsFormat::Nanos, SecondsFormat::AutoSi]),
        ) {
            let time = DateTime::from_timestamp(secs, nanos).unwrap();
            let text = time.to_rfc3339_opts(digits, true);
            prop_assert_eq!(parse(&text), chrono_parse(&text));
            prop_assert!(fast(text.as_bytes()).is_some(), "{}", text);
        }
    }
}
