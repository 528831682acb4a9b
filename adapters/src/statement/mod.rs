//! Statement parsers: a channel's raw daily statement read as the
//! channel-neutral rows the matcher takes (docs/rules.md, "Reconciliation"),
//! handed one at a time to a [`StatementSink`]: a `Statement` that keeps
//! them, or the matcher itself, so that a million-line statement is matched
//! as it is read and never held as rows.
//!
//! - [`read_wechat_bill`] ([`parse_wechat_bill`] into a `Statement`): WeChat
//!   Pay v2's text bill (`/pay/downloadbill`), the current 27-column and the
//!   legacy 24-column layouts, bill types `ALL`, `SUCCESS` and `REFUND`,
//!   chosen by the header line; read from any `BufRead`, a line at a time.
//! - [`read_alipay_zip`] ([`parse_alipay_zip`]): Alipay's zip of GBK CSV
//!   files; the detail file (`业务明细`) is read, the summary (`业务明细(汇总)`)
//!   is not.
//! - [`parse_statement_file`]: either, for a [`StatementFile`] as a channel
//!   client downloaded it, including "the channel has no statement that day".
//! - [`RowCount`]: a sink that keeps nothing, to check a file whole; and
//!   [`check_and_match`], which checks a file with it while it is matched,
//!   on two threads, and bounds what the matching holds before the check
//!   has passed.
//!
//! Invariants: a statement is checked against its own totals (WeChat's
//! summary line, Alipay's footer) before the sink is handed back, and any
//! defect rejects the whole file and drops the sink with the rows it was
//! given: a caller never sees a partial statement, nor its findings. Amounts
//! are parsed exactly into fen (no floats); times are China time (UTC+8)
//! converted to UTC. Every error names the line and the column it is about.

pub mod alipay;
pub mod checked;
pub mod wechat;

use chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime, Utc};
use paycode_domain::Channel;
use paycode_domain::calendar::from_china_local;
use paycode_domain::reconciliation::{StatementRowRef, StatementSink};

use crate::channel::StatementFile;

pub use alipay::{
    AlipayZipLimits, parse_alipay_detail, parse_alipay_zip, parse_alipay_zip_with_limits,
    read_alipay_zip,
};
pub use checked::{StatementSource, check_and_match};
pub use wechat::{parse_wechat_bill, read_wechat_bill};

/// Why a statement was rejected. Any of these rejects the whole file; none is
/// a money movement, so the caller's handling is always the same shape:
/// keep the raw file, report the error, and fetch or look again later.
/// Variants are listed in the order the parsers check them.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StatementError {
    /// The file is bigger than the parser reads (Alipay zip). Handle: alert;
    /// raise the limit only after checking the file by hand.
    #[error("the statement zip is {bytes} bytes, more than the {bytes_max} allowed")]
    ZipTooLarge { bytes: usize, bytes_max: usize },
    /// The zip cannot be read (not a zip, corrupt, encrypted). Handle: fetch again.
    #[error("the statement zip cannot be read: {reason}")]
    Zip { reason: String },
    /// The zip has more entries than a bill has (zip-bomb guard). Handle: alert.
    #[error("the statement zip has {entries} entries, more than the {entries_max} allowed")]
    ZipTooManyEntries { entries: usize, entries_max: usize },
    /// The zip holds no detail file (`…业务明细.csv`). Handle: alert.
    #[error("the statement zip has no detail file (业务明细, not 汇总); its entries are {names:?}")]
    NoDetailFile { names: Vec<String> },
    /// The zip holds more than one detail file. Handle: alert.
    #[error("the statement zip has several detail files: {names:?}")]
    SeveralDetailFiles { names: Vec<String> },
    /// An entry unpacks to more than the limit (zip-bomb guard). Handle: alert.
    #[error("zip entry {name:?} unpacks to more than the {bytes_max} bytes allowed")]
    ZipEntryTooLarge { name: String, bytes_max: u64 },
    /// The channel answered with an error document instead of a bill, or the
    /// file is of the other channel. Handle: fetch again later; alert if it persists.
    #[error("not a statement: {reason}")]
    NotABill { reason: String },
    /// The channel has not made the day's statement yet (WeChat "Bill
    /// Creating"). Handle: fetch again later (WeChat: after 10:00 China time).
    #[error("the channel has not made the day's statement yet ({code}); fetch it again later")]
    NotReady { code: String },
    /// The statement could not be read to its end (an I/O error reading a
    /// file; bytes in memory always read). Handle: read or fetch it again.
    #[error("line {line}: the statement could not be read: {reason}")]
    Read { line: u32, reason: String },
    /// A line is not in the statement's encoding (WeChat UTF-8, Alipay GBK).
    /// Handle: alert; the file is damaged or not a statement.
    #[error("line {line}: not valid {encoding}")]
    Encoding { line: u32, encoding: &'static str },
    /// The file ends before a part every statement has (the WeChat summary,
    /// the Alipay footer). Handle: fetch again.
    #[error("the statement is truncated: it has no {missing}")]
    Truncated { missing: &'static str },
    /// The header line is not one this parser knows. Handle: alert; the
    /// channel changed its format and the parser must learn it.
    #[error("line {line}: not a known header: {found:?}")]
    UnknownHeader { line: u32, found: String },
    /// A line is not shaped as the format requires (e.g. a WeChat record
    /// without its backtick, text after the summary). Handle: alert.
    #[error("line {line}: {reason}")]
    Malformed { line: u32, reason: &'static str },
    /// A line has another number of columns than its header. Handle: alert.
    #[error("line {line}: {found} columns where the header has {expected}")]
    ColumnCount {
        line: u32,
        expected: usize,
        found: usize,
    },
    /// A column that must hold an amount does not. Handle: alert.
    #[error("line {line}, column {column}: {value:?} is not a valid amount ({reason})")]
    BadAmount {
        line: u32,
        column: &'static str,
        value: String,
        reason: &'static str,
    },
    /// A column that must hold a time (`yyyy-MM-dd HH:mm:ss`, China time) does not. Handle: alert.
    #[error(
        "line {line}, column {column}: {value:?} is not a time (yyyy-MM-dd HH:mm:ss, China time)"
    )]
    BadTime {
        line: u32,
        column: &'static str,
        value: String,
    },
    /// A column holds a value this parser does not know or must not be
    /// empty (a status, a business type, an order number). Handle: alert.
    #[error("line {line}, column {column}: unexpected value {value:?}")]
    BadValue {
        line: u32,
        column: &'static str,
        value: String,
    },
    /// The statement's own total disagrees with its rows. Handle: fetch
    /// again; alert if it persists.
    #[error(
        "line {line}, column {column}: the statement says {stated}, its rows add up to {computed}"
    )]
    SummaryMismatch {
        line: u32,
        column: &'static str,
        stated: String,
        computed: String,
    },
}

/// WeChat's `return_msg` for a day without any trade.
pub const WECHAT_NO_BILL_EXIST: &str = "No Bill Exist";

/// Reads a statement as a channel client delivered it, handing its rows to
/// `sink` (a [`Statement`] to keep them, a `Reconciler` to match them as
/// they are read), and hands the sink back once the statement has checked
/// out whole. A day the channel has no statement for (WeChat "No Bill
/// Exist", Alipay `bill_not_exist`) is a statement without rows: both
/// channels say so only when the day had no trade. WeChat's "Bill Creating"
/// is [`StatementError::NotReady`].
pub fn parse_statement_file<S: StatementSink>(
    file: &StatementFile,
    sink: S,
) -> Result<S, StatementError> {
    let channel = sink.channel();
    match (channel, file) {
        (Channel::Wechat, StatementFile::WechatText(text)) => {
            read_wechat_bill(text.as_bytes(), sink)
        }
        (Channel::Alipay, StatementFile::AlipayZip(bytes)) => {
            read_alipay_zip(bytes, &AlipayZipLimits::default(), sink)
        }
        (Channel::Wechat, StatementFile::NoStatement { code })
            if !code.trim().eq_ignore_ascii_case(WECHAT_NO_BILL_EXIST) =>
        {
            Err(StatementError::NotReady { code: code.clone() })
        }
        (_, StatementFile::NoStatement { .. }) => Ok(sink),
        (_, other) => Err(StatementError::NotABill {
            reason: format!(
                "a {channel} statement was expected, got {}",
                file_kind(other)
            ),
        }),
    }
}

/// A sink that keeps nothing but the number of rows: a pass that checks a
/// statement whole, so that a defective file is rejected before the
/// matching holds more than a bound (a file of a million lines the ledger
/// does not know would otherwise cost a million findings before its summary
/// rejects it). See [`check_and_match`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RowCount {
    channel: Channel,
    pub rows: u64,
}

impl RowCount {
    pub fn new(channel: Channel) -> RowCount {
        RowCount { channel, rows: 0 }
    }
}

impl StatementSink for RowCount {
    fn channel(&self) -> Channel {
        self.channel
    }

    fn row(&mut self, _row: StatementRowRef<'_>) {
        self.rows += 1;
    }
}

fn file_kind(file: &StatementFile) -> &'static str {
    match file {
        StatementFile::WechatText(_) => "a WeChat text bill",
        StatementFile::AlipayZip(_) => "an Alipay zip",
        StatementFile::NoStatement { .. } => "no statement",
    }
}

/// A statement time, `yyyy-MM-dd HH:mm:ss` in China time, as UTC.
///
/// Tolerates the two typos of WeChat's documented sample
/// (`2014-11-1016：33：45`): full-width colons and a missing space between
/// date and time. Nothing else is guessed.
pub(crate) fn parse_china_time(text: &str) -> Option<DateTime<Utc>> {
    if let Some(at) = plain_china_time(text.as_bytes()) {
        return Some(at);
    }
    let mut normal = text.trim().replace('：', ":");
    let date_len = "yyyy-MM-dd".len();
    let glued = normal.len() == "yyyy-MM-ddHH:mm:ss".len()
        && normal.is_char_boundary(date_len)
        && normal[date_len..].starts_with(|c: char| c.is_ascii_digit());
    if glued {
        normal.insert(date_len, ' ');
    }
    let local = NaiveDateTime::parse_from_str(&normal, "%Y-%m-%d %H:%M:%S").ok()?;
    Some(from_china_local(local))
}

/// The common case of [`parse_china_time`], exactly `yyyy-MM-dd HH:mm:ss`
/// and a valid time, without allocating or reading a format string (a
/// statement has a million of them). `None` leaves the text to the general
/// path, which gives the same answer for anything this accepts.
fn plain_china_time(text: &[u8]) -> Option<DateTime<Utc>> {
    let separators = [(4, b'-'), (7, b'-'), (10, b' '), (13, b':'), (16, b':')];
    if text.len() != "yyyy-MM-dd HH:mm:ss".len()
        || separators
            .iter()
            .any(|&(at, separator)| text[at] != separator)
    {
        return None;
    }
    let number = |from: usize, to: usize| {
        text[from..to].iter().try_fold(0u32, |number, &digit| {
            digit
                .is_ascii_digit()
                .then(|| number * 10 + u32::from(digit - b'0'))
        })
    };
    let year = i32::try_from(number(0, 4)?).ok()?;
    let date = NaiveDate::from_ymd_opt(year, number(5, 7)?, number(8, 10)?)?;
    let time = NaiveTime::from_hms_opt(number(11, 13)?, number(14, 16)?, number(17, 19)?)?;
    Some(from_china_local(date.and_time(time)))
}

/// The whole-yuan digits this parser accepts at most: far above any
/// statement total, far below `i64` overflow in fen.
const YUAN_DIGITS_MAX: usize = 15;

/// An amount in yuan (`12.34`, `-0.01`, `0.0`, `3`) as signed fen, exactly:
/// at most two decimals, no exponent, no sign other than a leading `-`.
pub(crate) fn parse_yuan_fen(text: &str) -> Result<i64, &'static str> {
    let (negative, unsigned) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (whole, fraction) = match unsigned.split_once('.') {
        Some((whole, fraction)) => (whole, Some(fraction)),
        None => (unsigned, None),
    };
    if whole.is_empty() || !whole.bytes().all(|b| b.is_ascii_digit()) {
        return Err("not a decimal number");
    }
    if whole.len() > YUAN_DIGITS_MAX {
        return Err("too large");
    }
    let fraction = fraction.unwrap_or("00");
    if fraction.is_empty() || !fraction.bytes().all(|b| b.is_ascii_digit()) {
        return Err("not a decimal number");
    }
    if fraction.len() > 2 {
        return Err("more than 2 decimals");
    }
    let whole_fen = whole
        .parse::<i64>()
        .map_err(|_| "too large")?
        .checked_mul(100)
        .ok_or("too large")?;
    // One or two digits (checked above): "5" is 50 fen, "05" is 5.
    let fraction_fen = fraction
        .bytes()
        .chain(std::iter::repeat(b'0'))
        .take(2)
        .fold(0, |fen, digit| fen * 10 + i64::from(digit - b'0'));
    let fen = whole_fen + fraction_fen;
    Ok(if negative { -fen } else { fen })
}

/// Signed fen as yuan with two decimals, for messages.
pub(crate) fn yuan_text(fen: i128) -> String {
    let sign = if fen < 0 { "-" } else { "" };
    let fen = fen.unsigned_abs();
    format!("{sign}{}.{:02}", fen / 100, fen % 100)
}

/// At most this many characters of a file's value go into an error message.
const EXCERPT_CHARS_MAX: usize = 80;

/// A value from the file, cut short for an error message.
pub(crate) fn excerpt(text: &str) -> String {
    match text.char_indices().nth(EXCERPT_CHARS_MAX) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

/// A 1-based line number as the rows carry it.
pub(crate) fn line_no(index: usize) -> u32 {
    u32::try_from(index + 1).unwrap_or(u32::MAX)
}

/// Checks a count a statement states (its summary or footer, at `line`)
/// against the number of records that add up to it.
pub(crate) fn check_stated_count(
    line: u32,
    column: &'static str,
    stated_text: &str,
    computed: usize,
) -> Result<(), StatementError> {
    let stated: usize = stated_text.parse().map_err(|_| StatementError::BadValue {
        line,
        column,
        value: excerpt(stated_text),
    })?;
    if stated != computed {
        return Err(StatementError::SummaryMismatch {
            line,
            column,
            stated: stated.to_string(),
            computed: computed.to_string(),
        });
    }
    Ok(())
}

/// Checks a money total a statement states against the sum of its records,
/// in fen: any difference rejects the whole file.
pub(crate) fn check_stated_total(
    line: u32,
    column: &'static str,
    stated_text: &str,
    computed_fen: i128,
) -> Result<(), StatementError> {
    let stated = parse_yuan_fen(stated_text).map_err(|reason| StatementError::BadAmount {
        line,
        column,
        value: excerpt(stated_text),
        reason,
    })?;
    if i128::from(stated) != computed_fen {
        return Err(StatementError::SummaryMismatch {
            line,
            column,
            stated: yuan_text(i128::from(stated)),
            computed: yuan_text(computed_fen),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;
    use paycode_domain::reconciliation::Statement;

    use super::*;

    #[test]
    fn yuan_amounts_parse_exactly_to_fen() {
        assert_eq!(parse_yuan_fen("12.34"), Ok(1234));
        assert_eq!(parse_yuan_fen("0.01"), Ok(1));
        assert_eq!(parse_yuan_fen("0.1"), Ok(10));
        assert_eq!(parse_yuan_fen("0.0"), Ok(0));
        assert_eq!(parse_yuan_fen("3"), Ok(300));
        assert_eq!(parse_yuan_fen("-13.00"), Ok(-1300));
        assert_eq!(parse_yuan_fen("100000000.00"), Ok(10_000_000_000));
        for bad in [
            "", "-", ".5", "1.", "1e3", "1,00", "+1", "1.234", "--1", "1.2.3", " 1",
        ] {
            assert!(parse_yuan_fen(bad).is_err(), "{bad:?}");
        }
        assert_eq!(parse_yuan_fen("0.06000"), Err("more than 2 decimals"));
        assert_eq!(parse_yuan_fen("9999999999999999"), Err("too large"));
        assert_eq!(yuan_text(-1300), "-13.00");
        assert_eq!(yuan_text(5), "0.05");
    }

    #[test]
    fn china_times_become_utc_and_the_documented_typos_are_tolerated() {
        let expected = Utc.with_ymd_and_hms(2014, 11, 10, 8, 33, 45).unwrap();
        assert_eq!(parse_china_time("2014-11-10 16:33:45"), Some(expected));
        assert_eq!(parse_china_time("2014-11-10 16：33：45"), Some(expected));
        assert_eq!(parse_china_time("2014-11-1016：33：45"), Some(expected));
        assert_eq!(parse_china_time("2014-11-1016:33:45"), Some(expected));
        for bad in [
            "",
            "2014-11-10",
            "2014/11/10 16:33:45",
            "2014-11-10 25:00:00",
            "x",
        ] {
            assert_eq!(parse_china_time(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn the_fast_path_for_plain_times_agrees_with_the_general_one() {
        let general = |text: &str| {
            NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S")
                .ok()
                .map(|local| local.and_utc() - chrono::Duration::hours(8))
        };
        for text in [
            "2026-11-22 00:00:00",
            "2026-11-22 23:59:59",
            "2024-02-29 12:00:00",
            "2026-02-29 12:00:00",
            "2026-13-01 12:00:00",
            "2026-11-22 24:00:00",
            "2026-1a-22 10:00:00",
        ] {
            let fast = plain_china_time(text.as_bytes());
            assert!(fast.is_none() || fast == general(text), "{text}");
            assert_eq!(parse_china_time(text), general(text), "{text}");
        }
        // A leap second is left to chrono, as before.
        assert_eq!(plain_china_time(b"2026-11-22 23:59:60"), None);
    }

    #[test]
    fn a_no_statement_answer_is_an_empty_statement_and_bill_creating_is_not_ready() {
        let date = NaiveDate::from_ymd_opt(2026, 11, 22).unwrap();
        let none = |code: &str| StatementFile::NoStatement {
            code: code.to_owned(),
        };
        let empty = |channel| Statement::new(channel, date);
        assert_eq!(
            parse_statement_file(&none("No Bill Exist"), empty(Channel::Wechat)),
            Ok(empty(Channel::Wechat))
        );
        assert_eq!(
            parse_statement_file(&none("isp.bill_not_exist"), empty(Channel::Alipay)),
            Ok(empty(Channel::Alipay))
        );
        assert_eq!(
            parse_statement_file(&none("Bill Creating"), empty(Channel::Wechat)),
            Err(StatementError::NotReady {
                code: "Bill Creating".to_owned()
            })
        );
        let wrong = parse_statement_file(
            &StatementFile::WechatText(String::new()),
            empty(Channel::Alipay),
        )
        .unwrap_err();
        assert!(wrong.to_string().contains("a WeChat text bill"), "{wrong}");
    }

    #[test]
    fn long_values_are_cut_short_in_messages() {
        let long = "字".repeat(200);
        assert_eq!(excerpt(&long).chars().count(), EXCERPT_CHARS_MAX + 1);
        assert_eq!(excerpt("short"), "short");
    }
}
