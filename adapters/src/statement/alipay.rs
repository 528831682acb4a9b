//! Alipay's trade bill (`alipay.data.dataservice.bill.downloadurl.query`,
//! docs/rules.md) parsed into a [`Statement`]: a zip of GBK CSV files, of
//! which the detail file (`…_业务明细.csv`, not `…_业务明细(汇总).csv`) is read.
//!
//! The zip is untrusted input, so it is opened under [`AlipayZipLimits`]:
//! its size, its number of entries, and the bytes one entry may unpack to
//! (read through `take`, so an entry that lies about its size is cut short
//! at the limit too). Entry names are GBK without the UTF-8 flag in real
//! bills, and UTF-8 in the sandbox's; both are read.
//!
//! The detail file: `#` header lines, the column header, the records, the
//! `#…业务明细列表结束` line, then the footer with `#交易合计：N笔，商家实收共X元，
//! 商家优惠共Y元` and `#退款合计：…`; both footer lines are checked against the
//! records (count, 商家实收, 商家优惠). Fields are trimmed of the tabs
//! Alipay appends (Excel protection) and of spaces. Columns are found by
//! name in the column header, so an added column does not break the parser.
//!
//! Decisions:
//! - A row's amount is `订单金额（元）` (what the ledger asked for), positive
//!   on a `交易` row and negative on a `退款` row; its time is `完成时间`.
//! - A `退款` row whose `退款批次号/请求号` is the trade's Alipay number is the
//!   refund a cancel made ([`StatementLineKind::Reversal`], docs/rules.md
//!   "Reconciliation"); so is one with an empty batch number, since the ledger
//!   sends a refund request number with every refund and the public sources
//!   say a cancel's refund row may carry none. Other `退款` rows are refunds.
//! - A detail file that starts with a UTF-8 BOM is read as UTF-8; any other
//!   is GBK, and a line that is not valid GBK rejects the file.

use std::io::Read as _;

use chrono::NaiveDate;
use paycode_domain::payment::StatementLineKind;
use paycode_domain::reconciliation::{Statement, StatementRowRef, StatementSink};
use paycode_domain::{Channel, Money};

use super::{
    StatementError, check_stated_count, check_stated_total, excerpt, parse_china_time,
    parse_yuan_fen,
};

/// What an Alipay bill zip may be, at most. Real bills have two entries; the
/// byte limits are far above a busy merchant's day.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AlipayZipLimits {
    /// The zip file itself.
    pub zip_bytes_max: usize,
    /// Entries in the zip.
    pub entries_max: usize,
    /// What the detail entry may unpack to.
    pub entry_bytes_max: u64,
}

impl Default for AlipayZipLimits {
    fn default() -> AlipayZipLimits {
        AlipayZipLimits {
            // The same cap as the Alipay client's download.
            zip_bytes_max: crate::alipay::client::STATEMENT_BYTES_MAX,
            entries_max: 16,
            entry_bytes_max: 512 << 20,
        }
    }
}

/// Parses the Alipay bill zip of China-time day `date` under the default limits.
pub fn parse_alipay_zip(bytes: &[u8], date: NaiveDate) -> Result<Statement, StatementError> {
    parse_alipay_zip_with_limits(bytes, date, &AlipayZipLimits::default())
}

/// Parses the Alipay bill zip of China-time day `date` under `limits`.
pub fn parse_alipay_zip_with_limits(
    bytes: &[u8],
    date: NaiveDate,
    limits: &AlipayZipLimits,
) -> Result<Statement, StatementError> {
    read_alipay_zip(bytes, limits, Statement::new(Channel::Alipay, date))
}

/// Reads the Alipay bill zip under `limits`, handing each row of its detail
/// file to `sink` as it is read; the sink comes back once the file has
/// checked out whole (its footer too), and is dropped on any defect.
pub fn read_alipay_zip<S: StatementSink>(
    bytes: &[u8],
    limits: &AlipayZipLimits,
    sink: S,
) -> Result<S, StatementError> {
    if bytes.len() > limits.zip_bytes_max {
        return Err(StatementError::ZipTooLarge {
            bytes: bytes.len(),
            bytes_max: limits.zip_bytes_max,
        });
    }
    let zip_error = |error: zip::result::ZipError| StatementError::Zip {
        reason: error.to_string(),
    };
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(bytes)).map_err(zip_error)?;
    if archive.len() > limits.entries_max {
        return Err(StatementError::ZipTooManyEntries {
            entries: archive.len(),
            entries_max: limits.entries_max,
        });
    }
    let mut names = Vec::with_capacity(archive.len());
    for index in 0..archive.len() {
        let entry = archive.by_index_raw(index).map_err(zip_error)?;
        names.push(entry_name(entry.name_raw()));
    }
    let details: Vec<usize> = (0..names.len())
        .filter(|&index| is_detail_file(&names[index]))
        .collect();
    let index = match details.as_slice() {
        [index] => *index,
        [] => return Err(StatementError::NoDetailFile { names }),
        _ => {
            return Err(StatementError::SeveralDetailFiles {
                names: details.iter().map(|&index| names[index].clone()).collect(),
            });
        }
    };
    let too_large = || StatementError::ZipEntryTooLarge {
        name: names[index].clone(),
        bytes_max: limits.entry_bytes_max,
    };
    let io_error = |error: std::io::Error| StatementError::Zip {
        reason: format!("entry {:?}: {error}", names[index]),
    };
    // The entry is read twice, a line at a time, and never held whole: once
    // to check its size and encoding, once to parse it.
    let entry = archive.by_index(index).map_err(zip_error)?;
    if entry.size() > limits.entry_bytes_max {
        return Err(too_large());
    }
    let read_max = limits.entry_bytes_max.saturating_add(1);
    let checked = check_detail(std::io::BufReader::new(entry.take(read_max))).map_err(io_error)?;
    if checked.bytes > limits.entry_bytes_max {
        return Err(too_large());
    }
    if let Some(defect) = checked.defect {
        return Err(defect);
    }
    let entry = archive.by_index(index).map_err(zip_error)?;
    let mut lines = DetailLines::new(std::io::BufReader::new(entry.take(read_max)), checked.utf8);
    let parsed = parse_detail_lines(&mut lines, sink);
    match lines.error.take() {
        Some(error) => Err(io_error(error)),
        None => parsed,
    }
}

/// An entry's name: UTF-8 when it is, else GBK (Alipay sets no UTF-8 flag).
fn entry_name(raw: &[u8]) -> String {
    match std::str::from_utf8(raw) {
        Ok(name) => name.to_owned(),
        Err(_) => encoding_rs::GBK
            .decode_without_bom_handling(raw)
            .0
            .into_owned(),
    }
}

/// The detail CSV: `…业务明细….csv`, not the summary `…业务明细(汇总).csv`.
fn is_detail_file(name: &str) -> bool {
    let file = name.rsplit('/').next().unwrap_or(name);
    file.to_ascii_lowercase().ends_with(".csv")
        && file.contains("业务明细")
        && !file.contains("汇总")
}

const COLUMN_TRADE_NO: &str = "支付宝交易号";
const COLUMN_ORDER_NO: &str = "商户订单号";
const COLUMN_BUSINESS_TYPE: &str = "业务类型";
const COLUMN_FINISHED_AT: &str = "完成时间";
const COLUMN_ORDER_AMOUNT: &str = "订单金额（元）";
const COLUMN_RECEIVED: &str = "商家实收（元）";
const COLUMN_MERCHANT_DISCOUNT: &str = "商家优惠（元）";
const COLUMN_REFUND_BATCH: &str = "退款批次号/请求号";

/// The columns this parser reads; the header must name each.
const REQUIRED_COLUMNS: [&str; 8] = [
    COLUMN_TRADE_NO,
    COLUMN_ORDER_NO,
    COLUMN_BUSINESS_TYPE,
    COLUMN_FINISHED_AT,
    COLUMN_ORDER_AMOUNT,
    COLUMN_RECEIVED,
    COLUMN_MERCHANT_DISCOUNT,
    COLUMN_REFUND_BATCH,
];

const BUSINESS_TRADE: &str = "交易";
const BUSINESS_REFUND: &str = "退款";
const DETAIL_END_MARK: &str = "业务明细列表结束";
const TRADE_FOOTER: &str = "#交易合计：";
const REFUND_FOOTER: &str = "#退款合计：";

/// Column name to index, from the column header.
struct Columns {
    indexes: [usize; REQUIRED_COLUMNS.len()],
    count: usize,
}

impl Columns {
    fn of_header(line: u32, text: &str) -> Result<Columns, StatementError> {
        let names: Vec<&str> = text.split(',').map(str::trim).collect();
        let mut indexes = [0; REQUIRED_COLUMNS.len()];
        for (slot, required) in indexes.iter_mut().zip(REQUIRED_COLUMNS) {
            *slot = names
                .iter()
                .position(|name| *name == required)
                .ok_or_else(|| StatementError::UnknownHeader {
                    line,
                    found: excerpt(text),
                })?;
        }
        Ok(Columns {
            indexes,
            count: names.len(),
        })
    }

    fn get<'a>(&self, fields: &[&'a str], column: &str) -> &'a str {
        REQUIRED_COLUMNS
            .iter()
            .position(|name| *name == column)
            .and_then(|slot| fields.get(self.indexes[slot]).copied())
            .unwrap_or("")
    }
}

/// Running totals of one business type, as the footer states them.
#[derive(Debug, Default)]
struct Totals {
    count: usize,
    received_fen: i128,
    discount_fen: i128,
}

/// Parses the detail CSV of an Alipay bill (the bytes of the zip's
/// `…_业务明细.csv`) of China-time day `date`.
pub fn parse_alipay_detail(bytes: &[u8], date: NaiveDate) -> Result<Statement, StatementError> {
    let checked = check_detail(bytes).map_err(|error| StatementError::Zip {
        // Reading a slice cannot fail.
        reason: error.to_string(),
    })?;
    if let Some(defect) = checked.defect {
        return Err(defect);
    }
    let mut lines = DetailLines::new(bytes, checked.utf8);
    parse_detail_lines(&mut lines, Statement::new(Channel::Alipay, date))
}

/// The longest line a detail file may have; real lines are a few hundred
/// bytes. A longer one rejects the file without being held in memory.
const LINE_BYTES_MAX: usize = 64 * 1024;

/// What the first reading of a detail file found.
struct Checked {
    /// The file starts with a UTF-8 BOM: it is UTF-8, not GBK.
    utf8: bool,
    /// Its length in bytes.
    bytes: u64,
    /// Its first line that does not decode or is too long.
    defect: Option<StatementError>,
}

/// Reads one line (up to and with its `\n`) into `buffer`, holding at most
/// [`LINE_BYTES_MAX`] bytes of it: a longer line is read to its end but
/// left out (`true`). Returns the bytes read (0 at the end).
fn read_line_capped(
    reader: &mut impl std::io::BufRead,
    buffer: &mut Vec<u8>,
) -> std::io::Result<(u64, bool)> {
    buffer.clear();
    let (mut read, mut overlong) = (0u64, false);
    loop {
        let available = reader.fill_buf()?;
        if available.is_empty() {
            break;
        }
        let (length, done) = match available.iter().position(|&byte| byte == b'\n') {
            Some(at) => (at + 1, true),
            None => (available.len(), false),
        };
        if !overlong {
            if buffer.len() + length > LINE_BYTES_MAX {
                overlong = true;
                buffer.clear();
            } else {
                buffer.extend_from_slice(&available[..length]);
            }
        }
        read += length as u64;
        reader.consume(length);
        if done {
            break;
        }
    }
    Ok((read, overlong))
}

/// The first reading: the file's length, and whether every line decodes
/// (UTF-8 after a UTF-8 BOM, else GBK) and is of a sane length, one line in
/// memory at a time. A defect found here is reported before any other of
/// the file, wherever it is.
fn check_detail(mut reader: impl std::io::BufRead) -> std::io::Result<Checked> {
    let mut buffer = Vec::new();
    let mut checked = Checked {
        utf8: false,
        bytes: 0,
        defect: None,
    };
    let mut line = 0u32;
    loop {
        let (read, overlong) = read_line_capped(&mut reader, &mut buffer)?;
        if read == 0 {
            break;
        }
        checked.bytes += read;
        line = line.saturating_add(1);
        let mut raw = buffer.as_slice();
        if line == 1 {
            if let Some(rest) = raw.strip_prefix(b"\xEF\xBB\xBF") {
                checked.utf8 = true;
                raw = rest;
            }
        }
        if checked.defect.is_some() {
            continue;
        }
        if overlong {
            checked.defect = Some(StatementError::Malformed {
                line,
                reason: "a line longer than 64 KiB",
            });
        } else if decode_line(raw, checked.utf8).is_none() {
            checked.defect = Some(StatementError::Encoding {
                line,
                encoding: if checked.utf8 { "UTF-8" } else { "GBK" },
            });
        }
    }
    Ok(checked)
}

/// One raw line (without its `\n`, `\r` stripped here) decoded, or `None`.
fn decode_line(raw: &[u8], utf8: bool) -> Option<String> {
    let raw = raw.strip_suffix(b"\n").unwrap_or(raw);
    let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
    if utf8 {
        std::str::from_utf8(raw).ok().map(str::to_owned)
    } else {
        encoding_rs::GBK
            .decode_without_bom_handling_and_without_replacement(raw)
            .map(std::borrow::Cow::into_owned)
    }
}

/// The second reading: the file's lines, numbered from 1 and decoded one at
/// a time (GBK never uses the byte `\n` inside a character, so lines are
/// split before decoding). A read error ends the lines and is kept in
/// `error`.
struct DetailLines<R> {
    reader: R,
    utf8: bool,
    line: u32,
    buffer: Vec<u8>,
    error: Option<std::io::Error>,
}

impl<R: std::io::BufRead> DetailLines<R> {
    fn new(reader: R, utf8: bool) -> Self {
        DetailLines {
            reader,
            utf8,
            line: 0,
            buffer: Vec::new(),
            error: None,
        }
    }
}

impl<R: std::io::BufRead> Iterator for DetailLines<R> {
    type Item = (u32, String);

    fn next(&mut self) -> Option<(u32, String)> {
        match read_line_capped(&mut self.reader, &mut self.buffer) {
            Ok((0, _)) => return None,
            Ok((_, false)) => {}
            Ok((_, true)) => {
                self.error = Some(std::io::Error::other("a line grew past 64 KiB"));
                return None;
            }
            Err(error) => {
                self.error = Some(error);
                return None;
            }
        }
        self.line = self.line.saturating_add(1);
        let mut raw = self.buffer.as_slice();
        if self.line == 1 && self.utf8 {
            raw = raw.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(raw);
        }
        let text = decode_line(raw, self.utf8);
        if text.is_none() {
            // The first reading checked every line; the file changed under us.
            self.error = Some(std::io::Error::other(format!(
                "line {} no longer decodes",
                self.line
            )));
        }
        text.map(|text| (self.line, text))
    }
}

/// Parses the decoded lines of a detail file, handing its rows to `sink`.
fn parse_detail_lines<S: StatementSink>(
    lines: impl Iterator<Item = (u32, String)>,
    mut sink: S,
) -> Result<S, StatementError> {
    let mut lines = lines
        .filter(|(_, text)| !text.trim().is_empty())
        .skip_while(|(_, text)| text.starts_with('#'));
    let (header_line, header) = lines.next().ok_or(StatementError::Truncated {
        missing: "column header (支付宝交易号,…)",
    })?;
    let columns = Columns::of_header(header_line, &header)?;
    let (mut trades, mut refunds) = (Totals::default(), Totals::default());
    let mut ended = false;
    for (line, text) in lines.by_ref() {
        if text.starts_with('#') {
            if !text.contains(DETAIL_END_MARK) {
                return Err(StatementError::Malformed {
                    line,
                    reason: "a # line inside the detail list, before its end (业务明细列表结束)",
                });
            }
            ended = true;
            break;
        }
        sink.row(record(&columns, line, &text, &mut trades, &mut refunds)?);
    }
    if !ended {
        return Err(StatementError::Truncated {
            missing: "end of the detail list (业务明细列表结束)",
        });
    }
    let (mut trade_footer, mut refund_footer) = (None, None);
    for (line, text) in lines {
        if !text.starts_with('#') {
            return Err(StatementError::Malformed {
                line,
                reason: "a record after the end of the detail list",
            });
        }
        if text.starts_with(TRADE_FOOTER) {
            trade_footer = Some((line, text));
        } else if text.starts_with(REFUND_FOOTER) {
            refund_footer = Some((line, text));
        }
    }
    let (trade_line, trade_text) = trade_footer.ok_or(StatementError::Truncated {
        missing: "trade total (#交易合计)",
    })?;
    let (refund_line, refund_text) = refund_footer.ok_or(StatementError::Truncated {
        missing: "refund total (#退款合计)",
    })?;
    check_footer(
        trade_line,
        &trade_text,
        &trades,
        ["交易合计：", "商家实收共", "商家优惠共"],
    )?;
    check_footer(
        refund_line,
        &refund_text,
        &refunds,
        ["退款合计：", "商家实收退款共", "商家优惠退款共"],
    )?;
    Ok(sink)
}

fn record<'a>(
    columns: &Columns,
    line: u32,
    text: &'a str,
    trades: &mut Totals,
    refunds: &mut Totals,
) -> Result<StatementRowRef<'a>, StatementError> {
    let fields: Vec<&str> = text.split(',').map(str::trim).collect();
    if fields.len() != columns.count {
        return Err(StatementError::ColumnCount {
            line,
            expected: columns.count,
            found: fields.len(),
        });
    }
    let get = |column: &str| columns.get(&fields, column);
    let required = |column: &'static str| match get(column) {
        "" => Err(StatementError::BadValue {
            line,
            column,
            value: String::new(),
        }),
        value => Ok(value),
    };
    let fen = |column: &'static str| {
        let value = get(column);
        parse_yuan_fen(value).map_err(|reason| StatementError::BadAmount {
            line,
            column,
            value: excerpt(value),
            reason,
        })
    };
    let business = get(COLUMN_BUSINESS_TYPE);
    let (totals, sign) = match business {
        BUSINESS_TRADE => (trades, 1),
        BUSINESS_REFUND => (refunds, -1),
        _ => {
            return Err(StatementError::BadValue {
                line,
                column: COLUMN_BUSINESS_TYPE,
                value: excerpt(business),
            });
        }
    };
    let order_no = required(COLUMN_ORDER_NO)?;
    let channel_trade_no = required(COLUMN_TRADE_NO)?;
    let signed_fen = fen(COLUMN_ORDER_AMOUNT)?;
    let amount = u64::try_from(signed_fen * sign)
        .ok()
        .and_then(|fen| Money::from_fen(fen).ok())
        .ok_or_else(|| StatementError::BadAmount {
            line,
            column: COLUMN_ORDER_AMOUNT,
            value: excerpt(get(COLUMN_ORDER_AMOUNT)),
            reason: if sign > 0 {
                "a trade must be positive, at most 100000000.00"
            } else {
                "a refund must be negative, at most 100000000.00"
            },
        })?;
    let finished = get(COLUMN_FINISHED_AT);
    let at = parse_china_time(finished).ok_or_else(|| StatementError::BadTime {
        line,
        column: COLUMN_FINISHED_AT,
        value: excerpt(finished),
    })?;
    totals.count += 1;
    totals.received_fen += i128::from(fen(COLUMN_RECEIVED)?);
    totals.discount_fen += i128::from(fen(COLUMN_MERCHANT_DISCOUNT)?);
    let batch = get(COLUMN_REFUND_BATCH);
    let kind = match business {
        BUSINESS_TRADE => StatementLineKind::Payment,
        _ if batch.is_empty() || batch == channel_trade_no => StatementLineKind::Reversal,
        _ => StatementLineKind::Refund,
    };
    let refund_no = match kind {
        StatementLineKind::Payment => None,
        _ => Some(batch).filter(|batch| !batch.is_empty()),
    };
    Ok(StatementRowRef {
        line_no: line,
        kind,
        order_no,
        channel_trade_no,
        refund_no,
        channel_refund_no: None,
        amount,
        at,
    })
}

/// The text between `start` and the next `end` after it.
fn between<'a>(text: &'a str, start: &str, end: &str) -> Option<&'a str> {
    let rest = &text[text.find(start)? + start.len()..];
    Some(&rest[..rest.find(end)?])
}

/// Checks `#交易合计：N笔，商家实收共X元，商家优惠共Y元` (or the refund line,
/// whose labels are `labels`) against the records' totals.
fn check_footer(
    line: u32,
    text: &str,
    totals: &Totals,
    labels: [&'static str; 3],
) -> Result<(), StatementError> {
    let [count_label, received_label, discount_label] = labels;
    let field = |label: &'static str, end: &str| {
        between(text, label, end).ok_or(StatementError::Malformed {
            line,
            reason: "a footer total without its count, 商家实收 or 商家优惠",
        })
    };
    check_stated_count(
        line,
        count_label,
        field(count_label, "笔")?.trim(),
        totals.count,
    )?;
    for (label, computed) in [
        (received_label, totals.received_fen),
        (discount_label, totals.discount_fen),
    ] {
        check_stated_total(line, label, field(label, "元")?.trim(), computed)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::io::Write as _;

    use super::*;

    fn date() -> NaiveDate {
        NaiveDate::from_ymd_opt(2019, 9, 16).unwrap()
    }

    const HEADER: &str = "支付宝交易号,商户订单号,业务类型,商品名称,创建时间,完成时间,门店编号,门店名称,操作员,终端号,对方账户,订单金额（元）,商家实收（元）,支付宝红包（元）,集分宝（元）,支付宝优惠（元）,商家优惠（元）,券核销金额（元）,券名称,商家红包消费金额（元）,卡消费金额（元）,退款批次号/请求号,服务费（元）,分润（元）,备注";

    fn row(trade_no: &str, order: &str, business: &str, amount: &str, batch: &str) -> String {
        format!(
            "{trade_no}\t,{order}\t,{business}\t,Coffee,2019-09-16 10:57:00,2019-09-16 10:57:09,\t,\t,\t,\t,buyer\t,{amount},{amount},0.00,0.00,0.00,0.00,0.00,,0.00\t,0.00,{batch}\t,0.00,0.00,"
        )
    }

    fn detail(rows: &[String], footer: &str) -> String {
        format!(
            "#支付宝业务明细查询\n#账号：[20880000000000010156]\n#-----业务明细列表-----\n{HEADER}\n{}\n#-----业务明细列表结束-----\n{footer}#导出时间：[2019年09月17日 05:46:49]\n",
            rows.join("\n")
        )
    }

    #[test]
    fn a_detail_file_in_utf8_with_bom_reads_like_its_gbk_twin() {
        let text = detail(
            &[
                row("2019091622001", "A", "交易", "0.03", ""),
                row("2019091622001", "A", "退款", "-0.01", "re_1"),
                row("2019091622001", "A", "退款", "-0.02", "2019091622001"),
            ],
            "#交易合计：1笔，商家实收共0.03元，商家优惠共0.00元\n#退款合计：2笔，商家实收退款共-0.03元，商家优惠退款共0.00元\n",
        );
        let (gbk, _, unmappable) = encoding_rs::GBK.encode(&text);
        assert!(!unmappable);
        let from_gbk = parse_alipay_detail(&gbk, date()).unwrap();
        let from_utf8 = parse_alipay_detail(format!("\u{feff}{text}").as_bytes(), date()).unwrap();
        assert_eq!(from_gbk, from_utf8);
        let kinds: Vec<_> = from_gbk
            .rows
            .iter()
            .map(|row| (row.kind, row.refund_no.clone()))
            .collect();
        assert_eq!(
            kinds,
            [
                (StatementLineKind::Payment, None),
                (StatementLineKind::Refund, Some("re_1".to_owned())),
                (
                    StatementLineKind::Reversal,
                    Some("2019091622001".to_owned())
                ),
            ]
        );
        assert_eq!(from_gbk.rows[1].line_no, 6);
        assert_eq!(from_gbk.rows[1].amount, "0.01".parse().unwrap());
        assert_eq!(
            from_gbk.rows[0].order_no, "A",
            "the trailing tab is stripped"
        );
    }

    #[test]
    fn a_refund_row_with_a_positive_amount_is_rejected() {
        let text = detail(
            &[row("2019091622001", "A", "退款", "0.01", "re_1")],
            "#交易合计：0笔，商家实收共0.00元，商家优惠共0.00元\n#退款合计：1笔，商家实收退款共0.01元，商家优惠退款共0.00元\n",
        );
        let (gbk, _, _) = encoding_rs::GBK.encode(&text);
        let error = parse_alipay_detail(&gbk, date()).unwrap_err();
        assert!(
            matches!(
                error,
                StatementError::BadAmount {
                    line: 5,
                    column: "订单金额（元）",
                    ..
                }
            ),
            "{error}"
        );
    }

    #[test]
    fn a_line_longer_than_64_kib_is_rejected_without_being_held() {
        let long = row(&"9".repeat(70 * 1024), "A", "交易", "0.01", "");
        let text = detail(
            &[row("2019091622001", "B", "交易", "0.01", ""), long],
            "#交易合计：2笔，商家实收共0.02元，商家优惠共0.00元\n#退款合计：0笔，商家实收退款共0.00元，商家优惠退款共0.00元\n",
        );
        let (gbk, _, _) = encoding_rs::GBK.encode(&text);
        assert_eq!(
            parse_alipay_detail(&gbk, date()).unwrap_err(),
            StatementError::Malformed {
                line: 6,
                reason: "a line longer than 64 KiB"
            }
        );
    }

    /// The byte offset of the central directory's uncompressed size of the
    /// first entry (signature `PK\x01\x02`, then 20 bytes, then compressed
    /// size, then uncompressed size).
    fn central_uncompressed_size_offset(zip: &[u8]) -> usize {
        let at = zip
            .windows(4)
            .position(|window| window == b"PK\x01\x02")
            .unwrap();
        at + 24
    }

    #[test]
    fn an_entry_that_understates_its_size_is_still_cut_at_the_limit() {
        let mut writer = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
        let options = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated);
        writer
            .start_file("x_20190916_业务明细.csv", options)
            .unwrap();
        writer.write_all(&vec![b'#'; 64 * 1024]).unwrap();
        let mut zip = writer.finish().unwrap().into_inner();
        let offset = central_uncompressed_size_offset(&zip);
        zip[offset..offset + 4].copy_from_slice(&100u32.to_le_bytes());
        let limits = AlipayZipLimits {
            entry_bytes_max: 1024,
            ..AlipayZipLimits::default()
        };
        let error = parse_alipay_zip_with_limits(&zip, date(), &limits).unwrap_err();
        assert!(
            matches!(
                &error,
                StatementError::ZipEntryTooLarge {
                    bytes_max: 1024,
                    ..
                }
            ),
            "{error}"
        );
    }
}
