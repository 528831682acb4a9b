//! WeChat Pay v2's text bill (`/pay/downloadbill`, docs/rules.md) parsed
//! into a [`Statement`].
//!
//! The layout is chosen by the header line, which must be one of the six
//! documented ones: bill types `ALL`, `SUCCESS`, `REFUND`, each in the
//! current column set (ALL 27 columns, summary 7) or the legacy one (ALL 24,
//! summary 5). Records are backtick-prefixed fields split on ``,` `` (so a
//! comma inside a product name cannot shift the columns); the last two lines
//! are the summary header and its values, and the summary must agree with the
//! records: the count, and every money total (fees are not reconciled and not
//! checked).
//!
//! Decisions:
//! - A payment's amount is the order amount (`订单金额`, legacy `总金额`), a
//!   refund's the requested refund amount (`申请退款金额`, legacy `退款金额`):
//!   what the ledger asked for, before coupons.
//! - A line whose trade status (`交易状态`) or refund status (`退款状态`) is
//!   `REVOKED` is the refund a revoke made ([`StatementLineKind::Reversal`]).
//!   Other refund lines are [`StatementLineKind::Refund`] when their refund
//!   status is `SUCCESS`; `PROCESSING`, `FAIL` and `CHANGE` refunds moved no
//!   money to the customer and give no row (they still count in the summary).
//!   Any other status rejects the file.
//! - A row's time is its `交易时间`, except on the `REFUND` bill, where that
//!   column is the payment's time and the refund's is `退款成功时间`.
//! - A UTF-8 BOM and CRLF line ends are accepted; blank lines are skipped.
//! - The XML answer "No Bill Exist" is an empty statement (WeChat says it for
//!   a day without a trade); "Bill Creating" is [`StatementError::NotReady`];
//!   any other XML answer is [`StatementError::NotABill`]. An empty body is
//!   truncated: WeChat never sends one.

use std::io::BufRead;

use chrono::{DateTime, NaiveDate, Utc};
use paycode_domain::payment::StatementLineKind;
use paycode_domain::reconciliation::{Statement, StatementRowRef, StatementSink};
use paycode_domain::{Channel, Money};

use super::{
    StatementError, WECHAT_NO_BILL_EXIST, check_stated_count, check_stated_total, excerpt, line_no,
    parse_china_time, parse_yuan_fen,
};

/// WeChat's `return_msg` while the day's bill is not made yet.
const BILL_CREATING: &str = "Bill Creating";

/// Which lines a bill lists (`bill_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BillType {
    All,
    Success,
    Refund,
}

/// One documented column set.
#[derive(Debug)]
struct Layout {
    bill_type: BillType,
    header: &'static str,
    summary_header: &'static str,
    /// The column of a payment's amount.
    payment_amount: &'static str,
    /// The column of a refund's amount.
    refund_amount: &'static str,
    /// `(summary column, record column)`: each money total and the column it adds up.
    /// A record column the bill type lacks adds up to zero.
    totals: &'static [(&'static str, &'static str)],
}

const CURRENT_SUMMARY: &str =
    "总交易单数,应结订单总金额,退款总金额,充值券退款总金额,手续费总金额,订单总金额,申请退款总金额";
const CURRENT_TOTALS: &[(&str, &str)] = &[
    ("应结订单总金额", "应结订单金额"),
    ("退款总金额", "退款金额"),
    ("充值券退款总金额", "充值券退款金额"),
    ("订单总金额", "订单金额"),
    ("申请退款总金额", "申请退款金额"),
];
const LEGACY_SUMMARY: &str =
    "总交易单数,总交易额,总退款金额,总代金券或立减优惠退款金额,手续费总金额";
const LEGACY_TOTALS: &[(&str, &str)] = &[
    ("总交易额", "总金额"),
    ("总退款金额", "退款金额"),
    ("总代金券或立减优惠退款金额", "代金券或立减优惠退款金额"),
];

/// The summary column that counts the records.
const COUNT_COLUMN: &str = "总交易单数";

const LAYOUTS: [Layout; 6] = [
    Layout {
        bill_type: BillType::All,
        header: "交易时间,公众账号ID,商户号,特约商户号,设备号,微信订单号,商户订单号,用户标识,交易类型,交易状态,付款银行,货币种类,应结订单金额,代金券金额,微信退款单号,商户退款单号,退款金额,充值券退款金额,退款类型,退款状态,商品名称,商户数据包,手续费,费率,订单金额,申请退款金额,费率备注",
        summary_header: CURRENT_SUMMARY,
        payment_amount: "订单金额",
        refund_amount: "申请退款金额",
        totals: CURRENT_TOTALS,
    },
    Layout {
        bill_type: BillType::Success,
        header: "交易时间,公众账号ID,商户号,特约商户号,设备号,微信订单号,商户订单号,用户标识,交易类型,交易状态,付款银行,货币种类,应结订单金额,代金券金额,商品名称,商户数据包,手续费,费率,订单金额,费率备注",
        summary_header: CURRENT_SUMMARY,
        payment_amount: "订单金额",
        refund_amount: "申请退款金额",
        totals: CURRENT_TOTALS,
    },
    Layout {
        bill_type: BillType::Refund,
        header: "交易时间,公众账号ID,商户号,特约商户号,设备号,微信订单号,商户订单号,用户标识,交易类型,交易状态,付款银行,货币种类,应结订单金额,代金券金额,退款申请时间,退款成功时间,微信退款单号,商户退款单号,退款金额,充值券退款金额,退款类型,退款状态,商品名称,商户数据包,手续费,费率,订单金额,申请退款金额,费率备注",
        summary_header: CURRENT_SUMMARY,
        payment_amount: "订单金额",
        refund_amount: "申请退款金额",
        totals: CURRENT_TOTALS,
    },
    Layout {
        bill_type: BillType::All,
        header: "交易时间,公众账号ID,商户号,子商户号,设备号,微信订单号,商户订单号,用户标识,交易类型,交易状态,付款银行,货币种类,总金额,代金券或立减优惠金额,微信退款单号,商户退款单号,退款金额,代金券或立减优惠退款金额,退款类型,退款状态,商品名称,商户数据包,手续费,费率",
        summary_header: LEGACY_SUMMARY,
        payment_amount: "总金额",
        refund_amount: "退款金额",
        totals: LEGACY_TOTALS,
    },
    Layout {
        bill_type: BillType::Success,
        header: "交易时间,公众账号ID,商户号,子商户号,设备号,微信订单号,商户订单号,用户标识,交易类型,交易状态,付款银行,货币种类,总金额,代金券或立减优惠金额,商品名称,商户数据包,手续费,费率",
        summary_header: LEGACY_SUMMARY,
        payment_amount: "总金额",
        refund_amount: "退款金额",
        totals: LEGACY_TOTALS,
    },
    Layout {
        bill_type: BillType::Refund,
        header: "交易时间,公众账号ID,商户号,子商户号,设备号,微信订单号,商户订单号,用户标识,交易类型,交易状态,付款银行,货币种类,总金额,代金券或立减优惠金额,退款申请时间,退款成功时间,微信退款单号,商户退款单号,退款金额,代金券或立减优惠退款金额,退款类型,退款状态,商品名称,商户数据包,手续费,费率",
        summary_header: LEGACY_SUMMARY,
        payment_amount: "总金额",
        refund_amount: "退款金额",
        totals: LEGACY_TOTALS,
    },
];

impl Layout {
    /// The layout whose header is `line` (names compared after trimming).
    fn of_header(line: &str) -> Option<&'static Layout> {
        let names: Vec<&str> = line.split(',').map(str::trim).collect();
        LAYOUTS
            .iter()
            .find(|layout| layout.header.split(',').eq(names.iter().copied()))
    }

    fn columns(&self) -> usize {
        self.header.split(',').count()
    }

    /// The index of a column this layout has.
    fn index(&self, name: &str) -> Option<usize> {
        self.header.split(',').position(|column| column == name)
    }
}

/// A column the parser reads: its name (for messages) and its position in
/// the bill's layout; `None` when the layout lacks it (it reads as empty).
#[derive(Debug, Clone, Copy)]
struct Column {
    name: &'static str,
    index: Option<usize>,
}

/// The columns the parser reads, looked up once per bill in its layout, so
/// that reading a field is an index, not a search of the header.
#[derive(Debug)]
struct Columns {
    /// How many columns a record of the layout has.
    count: usize,
    trade_status: Column,
    refund_status: Column,
    order_no: Column,
    trade_no: Column,
    refund_no: Column,
    refund_id: Column,
    time: Column,
    refund_time: Column,
    payment_amount: Column,
    refund_amount: Column,
    /// `(summary column, record column)`: as [`Layout::totals`].
    totals: Vec<(&'static str, Column)>,
}

impl Columns {
    fn of(layout: &Layout) -> Columns {
        let column = |name: &'static str| Column {
            name,
            index: layout.index(name),
        };
        Columns {
            count: layout.columns(),
            trade_status: column("交易状态"),
            refund_status: column("退款状态"),
            order_no: column("商户订单号"),
            trade_no: column("微信订单号"),
            refund_no: column("商户退款单号"),
            refund_id: column("微信退款单号"),
            time: column("交易时间"),
            refund_time: column("退款成功时间"),
            payment_amount: column(layout.payment_amount),
            refund_amount: column(layout.refund_amount),
            totals: layout
                .totals
                .iter()
                .map(|&(total, record)| (total, column(record)))
                .collect(),
        }
    }
}

/// One record, split, with its line number.
struct Record<'r, 'a> {
    line: u32,
    fields: &'r [&'a str],
    layout: &'static Layout,
    columns: &'r Columns,
}

impl<'a> Record<'_, 'a> {
    /// The field of `column`, or `""` when the layout has no such column.
    fn get(&self, column: Column) -> &'a str {
        column
            .index
            .and_then(|index| self.fields.get(index).copied())
            .unwrap_or("")
    }

    /// A field that must not be empty.
    fn required(&self, column: Column) -> Result<&'a str, StatementError> {
        let value = self.get(column);
        if value.is_empty() {
            return Err(StatementError::BadValue {
                line: self.line,
                column: column.name,
                value: String::new(),
            });
        }
        Ok(value)
    }

    /// A signed amount in fen; an empty field is zero (only for totals).
    fn fen_or_zero(&self, column: Column) -> Result<i64, StatementError> {
        match self.get(column) {
            "" => Ok(0),
            value => self.fen(column, value),
        }
    }

    fn fen(&self, column: Column, value: &str) -> Result<i64, StatementError> {
        parse_yuan_fen(value).map_err(|reason| StatementError::BadAmount {
            line: self.line,
            column: column.name,
            value: excerpt(value),
            reason,
        })
    }

    /// The row's positive amount.
    fn money(&self, column: Column) -> Result<Money, StatementError> {
        let value = self.get(column);
        let fen = self.fen(column, value)?;
        u64::try_from(fen)
            .ok()
            .and_then(|fen| Money::from_fen(fen).ok())
            .ok_or_else(|| StatementError::BadAmount {
                line: self.line,
                column: column.name,
                value: excerpt(value),
                reason: "must be positive and at most 100000000.00",
            })
    }

    fn time(&self, column: Column) -> Result<DateTime<Utc>, StatementError> {
        let value = self.get(column);
        parse_china_time(value).ok_or_else(|| StatementError::BadTime {
            line: self.line,
            column: column.name,
            value: excerpt(value),
        })
    }

    fn bad_value(&self, column: Column) -> StatementError {
        StatementError::BadValue {
            line: self.line,
            column: column.name,
            value: excerpt(self.get(column)),
        }
    }
}

/// The most columns of a record in any layout (the current `REFUND` bill).
const COLUMNS_MAX: usize = 29;

/// The fields of a backtick-prefixed line: strip the first backtick, split
/// on ``,` ``, trim each; `None` when the line does not start with a backtick.
fn backticked_fields(line: &str) -> Option<impl Iterator<Item = &str>> {
    let rest = line.strip_prefix('`')?;
    Some(rest.split(",`").map(str::trim))
}

/// The money totals of the records so far, one per summary total, each the
/// sum or the first record's error in that column.
#[derive(Debug)]
struct Totals(Vec<Result<i128, StatementError>>);

impl Totals {
    fn new(columns: &Columns) -> Totals {
        Totals(columns.totals.iter().map(|_| Ok(0)).collect())
    }

    fn add(&mut self, record: &Record<'_, '_>) {
        for (total, &(_, column)) in self.0.iter_mut().zip(&record.columns.totals) {
            if let Ok(sum) = total {
                match record.fen_or_zero(column) {
                    Ok(fen) => *sum += i128::from(fen),
                    Err(error) => *total = Err(error),
                }
            }
        }
    }
}

/// Parses a WeChat text bill of China-time day `date`, held whole, into a
/// [`Statement`]. See the module documentation for the layouts and decisions.
pub fn parse_wechat_bill(bytes: &[u8], date: NaiveDate) -> Result<Statement, StatementError> {
    read_wechat_bill(bytes, Statement::new(Channel::Wechat, date))
}

/// Reads a WeChat text bill a line at a time, handing each row to `sink` as
/// it is read, and hands `sink` back once the whole bill has checked out
/// (against its summary too); on any defect the sink is dropped with what
/// it was given. Nothing but the line being read is held (and, for an XML
/// answer instead of a bill, that answer).
///
/// The errors are those of a bill read whole, in the same order of checks:
/// a line that cannot be read or is not UTF-8 (the first such, at once);
/// then the header, the summary's place and shape; then any record's shape;
/// then any record's row; then the summary's values. So defects are kept as
/// they are found, and the one that ranks first is returned at the end.
pub fn read_wechat_bill<S: StatementSink>(
    mut reader: impl BufRead,
    mut sink: S,
) -> Result<S, StatementError> {
    let mut bill = Bill::default();
    let mut buffer = Vec::new();
    for index in 0.. {
        buffer.clear();
        let line = line_no(index);
        let read = reader
            .read_until(b'\n', &mut buffer)
            .map_err(|error| StatementError::Read {
                line,
                reason: error.to_string(),
            })?;
        if read == 0 {
            break;
        }
        let mut raw = buffer.as_slice();
        if index == 0 {
            raw = raw.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(raw);
        }
        let text = std::str::from_utf8(raw).map_err(|_| StatementError::Encoding {
            line,
            encoding: "UTF-8",
        })?;
        bill.line(line, text, &mut sink);
    }
    bill.finish(sink)
}

/// Where a bill being read is.
#[derive(Debug)]
enum Part {
    /// Before the first line that is not blank; the blank lines so far, as
    /// read, in case the bill is an XML answer.
    Start(String),
    /// An XML answer instead of a bill: its text so far.
    Xml(String),
    /// After the header: the records, until the summary header.
    Records(Body),
    /// After the summary header.
    SummaryValues(Body),
    /// After the summary values (line, text): only blank lines may follow.
    Summarized(Body, u32, String),
    /// The header or the summary is defective: this defect outranks any
    /// other but a later line's encoding.
    Rejected(StatementError),
}

impl Default for Part {
    fn default() -> Part {
        Part::Start(String::new())
    }
}

/// The records of a bill as they are read: what the summary is checked against.
#[derive(Debug)]
struct Body {
    layout: &'static Layout,
    columns: Columns,
    records: usize,
    totals: Totals,
}

/// A bill being read, one line at a time.
#[derive(Debug, Default)]
struct Bill {
    part: Part,
    /// The first record not shaped as its header says (no backtick, another
    /// number of columns): it outranks any record's row defect.
    shape_defect: Option<StatementError>,
    /// The first record whose row is defective (a status, an amount, a time).
    row_defect: Option<StatementError>,
}

impl Bill {
    /// Takes line `line`, `text` as read (with its line end), handing `sink`
    /// its row while no defect is known.
    fn line(&mut self, line: u32, text: &str, sink: &mut impl StatementSink) {
        if let Part::Xml(xml) = &mut self.part {
            xml.push_str(text);
            return;
        }
        let content = text.strip_suffix('\n').unwrap_or(text);
        let content = content.strip_suffix('\r').unwrap_or(content);
        if content.trim().is_empty() {
            if let Part::Start(blank) = &mut self.part {
                blank.push_str(text);
            }
            return;
        }
        self.part = match std::mem::take(&mut self.part) {
            Part::Start(blank) if content.trim_start().starts_with('<') => Part::Xml(blank + text),
            Part::Start(_) => match Layout::of_header(content) {
                Some(layout) => {
                    let columns = Columns::of(layout);
                    Part::Records(Body {
                        layout,
                        totals: Totals::new(&columns),
                        columns,
                        records: 0,
                    })
                }
                None => Part::Rejected(StatementError::UnknownHeader {
                    line,
                    found: excerpt(content),
                }),
            },
            Part::Records(body) if content.trim().starts_with(COUNT_COLUMN) => {
                let names = content.split(',').map(str::trim);
                if body.layout.summary_header.split(',').eq(names) {
                    Part::SummaryValues(body)
                } else {
                    Part::Rejected(StatementError::UnknownHeader {
                        line,
                        found: excerpt(content),
                    })
                }
            }
            Part::Records(mut body) => {
                body.records += 1;
                self.record(&mut body, line, content, sink);
                Part::Records(body)
            }
            Part::SummaryValues(body) => Part::Summarized(body, line, content.to_owned()),
            Part::Summarized(..) => Part::Rejected(StatementError::Malformed {
                line,
                reason: "text after the summary",
            }),
            rejected @ (Part::Rejected(_) | Part::Xml(_)) => rejected,
        };
    }

    fn record(&mut self, body: &mut Body, line: u32, text: &str, sink: &mut impl StatementSink) {
        if self.shape_defect.is_some() {
            return;
        }
        let mut fields = [""; COLUMNS_MAX];
        let record = match split_record(body.layout, &body.columns, line, text, &mut fields) {
            Ok(record) => record,
            Err(defect) => {
                self.shape_defect = Some(defect);
                return;
            }
        };
        if self.row_defect.is_some() {
            return;
        }
        match row(&record) {
            Ok(Some(row)) => sink.row(row),
            Ok(None) => {}
            Err(defect) => {
                self.row_defect = Some(defect);
                return;
            }
        }
        body.totals.add(&record);
    }

    /// The sink, if the bill read is whole and agrees with its summary.
    fn finish<S: StatementSink>(self, sink: S) -> Result<S, StatementError> {
        let (body, line, values) = match self.part {
            Part::Summarized(body, line, values) => (body, line, values),
            Part::Xml(text) => return error_answer(&text).map(|()| sink),
            Part::Rejected(defect) => return Err(defect),
            Part::Start(_) => {
                return Err(StatementError::Truncated {
                    missing: "header line",
                });
            }
            Part::Records(_) => {
                return Err(StatementError::Truncated {
                    missing: "summary (总交易单数)",
                });
            }
            Part::SummaryValues(_) => {
                return Err(StatementError::Truncated {
                    missing: "summary values",
                });
            }
        };
        if let Some(defect) = self.shape_defect.or(self.row_defect) {
            return Err(defect);
        }
        check_summary(body.layout, body.records, body.totals, line, &values)?;
        Ok(sink)
    }
}

/// An XML answer where a bill was expected: WeChat's failure document.
/// `Ok` for "No Bill Exist": a day without a trade, an empty statement.
fn error_answer(text: &str) -> Result<(), StatementError> {
    let params = crate::wechat::xml::parse(text).map_err(|error| StatementError::NotABill {
        reason: format!("an XML answer that cannot be read: {error}"),
    })?;
    let message = ["return_msg", "err_code_des"]
        .iter()
        .filter_map(|name| params.get(*name))
        .map(|value| value.trim())
        .find(|value| !value.is_empty())
        .unwrap_or("");
    if message.eq_ignore_ascii_case(WECHAT_NO_BILL_EXIST) {
        return Ok(());
    }
    if message.eq_ignore_ascii_case(BILL_CREATING) {
        return Err(StatementError::NotReady {
            code: message.to_owned(),
        });
    }
    Err(StatementError::NotABill {
        reason: format!("WeChat answered an error: {}", excerpt(message)),
    })
}

/// Splits record `text` into `fields` (the first [`COLUMNS_MAX`] of them),
/// checking its shape against the layout.
fn split_record<'r, 'a>(
    layout: &'static Layout,
    columns: &'r Columns,
    line: u32,
    text: &'a str,
    fields: &'r mut [&'a str; COLUMNS_MAX],
) -> Result<Record<'r, 'a>, StatementError> {
    let Some(values) = backticked_fields(text) else {
        return Err(StatementError::Malformed {
            line,
            reason: "a record must start with a backtick (`)",
        });
    };
    let mut found = 0;
    for value in values {
        if let Some(field) = fields.get_mut(found) {
            *field = value;
        }
        found += 1;
    }
    if found != columns.count {
        return Err(StatementError::ColumnCount {
            line,
            expected: columns.count,
            found,
        });
    }
    Ok(Record {
        line,
        fields: &fields[..found],
        layout,
        columns,
    })
}

/// What a record's statuses say it is: `None` for a refund that moved no money.
fn kind(record: &Record<'_, '_>) -> Result<Option<StatementLineKind>, StatementError> {
    let columns = record.columns;
    let trade_status = record.get(columns.trade_status);
    let refund_status = record.get(columns.refund_status);
    let refund_kind = || match (trade_status, refund_status) {
        (_, "REVOKED") | ("REVOKED", "SUCCESS") => Ok(Some(StatementLineKind::Reversal)),
        (_, "SUCCESS") => Ok(Some(StatementLineKind::Refund)),
        (_, "PROCESSING" | "FAIL" | "CHANGE") => Ok(None),
        _ => Err(record.bad_value(columns.refund_status)),
    };
    match (record.layout.bill_type, trade_status) {
        (BillType::Success | BillType::All, "SUCCESS") => Ok(Some(StatementLineKind::Payment)),
        (BillType::All, "REFUND" | "REVOKED") => refund_kind(),
        // The REFUND bill lists refunds only, whatever its trade status column says.
        (BillType::Refund, _) => refund_kind(),
        _ => Err(record.bad_value(columns.trade_status)),
    }
}

fn row<'a>(record: &Record<'_, 'a>) -> Result<Option<StatementRowRef<'a>>, StatementError> {
    let Some(kind) = kind(record)? else {
        return Ok(None);
    };
    let columns = record.columns;
    let order_no = record.required(columns.order_no)?;
    let channel_trade_no = record.required(columns.trade_no)?;
    let layout = record.layout;
    let optional = |column: Column| Some(record.get(column)).filter(|value| !value.is_empty());
    let row = match kind {
        StatementLineKind::Payment => StatementRowRef {
            line_no: record.line,
            kind,
            order_no,
            channel_trade_no,
            refund_no: None,
            channel_refund_no: None,
            amount: record.money(columns.payment_amount)?,
            at: record.time(columns.time)?,
        },
        StatementLineKind::Refund | StatementLineKind::Reversal => StatementRowRef {
            line_no: record.line,
            kind,
            order_no,
            channel_trade_no,
            refund_no: optional(columns.refund_no),
            channel_refund_no: optional(columns.refund_id),
            amount: record.money(columns.refund_amount)?,
            at: if layout.bill_type == BillType::Refund {
                record.time(columns.refund_time)?
            } else {
                record.time(columns.time)?
            },
        },
    };
    Ok(Some(row))
}

/// Checks the summary values against the records (`count` of them, their
/// `totals`): the count, then each total.
fn check_summary(
    layout: &'static Layout,
    count: usize,
    totals: Totals,
    line: u32,
    text: &str,
) -> Result<(), StatementError> {
    let columns: Vec<&str> = layout.summary_header.split(',').collect();
    let values: Vec<&str> = backticked_fields(text)
        .ok_or(StatementError::Malformed {
            line,
            reason: "the summary values must start with a backtick (`)",
        })?
        .collect();
    if values.len() != columns.len() {
        return Err(StatementError::ColumnCount {
            line,
            expected: columns.len(),
            found: values.len(),
        });
    }
    let value = |column: &str| {
        columns
            .iter()
            .position(|name| *name == column)
            .and_then(|index| values.get(index).copied())
            .unwrap_or("")
    };
    check_stated_count(line, COUNT_COLUMN, value(COUNT_COLUMN), count)?;
    for (&(total_column, _), computed) in layout.totals.iter().zip(totals.0) {
        check_stated_total(line, total_column, value(total_column), computed?)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn date() -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, 11, 22).unwrap()
    }

    const HEADER: &str = "交易时间,公众账号ID,商户号,特约商户号,设备号,微信订单号,商户订单号,用户标识,交易类型,交易状态,付款银行,货币种类,应结订单金额,代金券金额,微信退款单号,商户退款单号,退款金额,充值券退款金额,退款类型,退款状态,商品名称,商户数据包,手续费,费率,订单金额,申请退款金额,费率备注";

    fn payment(order: &str, amount: &str) -> String {
        format!(
            "`2026-11-22 10:00:00,`wx1,`10000100,`0,`,`4200{order},`{order},`oX,`MICROPAY,`SUCCESS,`OTHERS,`CNY,`{amount},`0.00,`0,`0,`0.00,`0.00,`,`,`Coffee,`,`0.06000,`0.60%,`{amount},`0.00,`"
        )
    }

    fn refund(order: &str, status: &str, refund_status: &str, amount: &str) -> String {
        format!(
            "`2026-11-22 11:00:00,`wx1,`10000100,`0,`,`4200{order},`{order},`oX,`MICROPAY,`{status},`OTHERS,`CNY,`0.00,`0.00,`5030{order},`R{order},`{amount},`0.00,`ORIGINAL,`{refund_status},`Coffee,`,`-0.06000,`0.60%,`0.00,`{amount},`"
        )
    }

    fn bill(records: &[String], summary: &str) -> String {
        let mut text = format!("{HEADER}\n");
        for record in records {
            text.push_str(record);
            text.push('\n');
        }
        text.push_str(CURRENT_SUMMARY);
        text.push('\n');
        text.push_str(summary);
        text.push('\n');
        text
    }

    #[test]
    fn a_bill_with_bom_and_crlf_parses_and_refund_statuses_choose_the_kind() {
        let text = bill(
            &[
                payment("A", "10.00"),
                refund("A", "REFUND", "SUCCESS", "3.00"),
                refund("A", "REFUND", "PROCESSING", "1.00"),
                refund("A", "REFUND", "REVOKED", "6.00"),
            ],
            "`4,`10.00,`10.00,`0.00,`0.00000,`10.00,`10.00",
        );
        let crlf = format!("\u{feff}{}", text.replace('\n', "\r\n"));
        let statement = parse_wechat_bill(crlf.as_bytes(), date()).unwrap();
        assert_eq!(
            statement,
            parse_wechat_bill(text.as_bytes(), date()).unwrap()
        );
        let kinds: Vec<_> = statement.rows.iter().map(|row| row.kind).collect();
        assert_eq!(
            kinds,
            [
                StatementLineKind::Payment,
                StatementLineKind::Refund,
                StatementLineKind::Reversal
            ],
            "the processing refund moved no money and gives no row"
        );
        let refund = &statement.rows[1];
        assert_eq!(refund.line_no, 3);
        assert_eq!(refund.refund_no.as_deref(), Some("RA"));
        assert_eq!(refund.channel_refund_no.as_deref(), Some("5030A"));
        assert_eq!(refund.amount, "3.00".parse().unwrap());
        assert_eq!(
            refund.at,
            Utc.with_ymd_and_hms(2026, 11, 22, 3, 0, 0).unwrap()
        );
        assert_eq!(statement.rows[0].refund_no, None);
    }

    #[test]
    fn no_bill_exist_is_an_empty_statement_and_other_error_answers_are_not_bills() {
        let no_bill = crate::testing::vector("wx_v2_downloadbill_resp_no_bill_exist.xml");
        let statement = parse_wechat_bill(no_bill.as_bytes(), date()).unwrap();
        assert_eq!(statement.channel, Channel::Wechat);
        assert!(statement.rows.is_empty());
        let creating =
            "<xml><return_code>FAIL</return_code><return_msg>Bill Creating</return_msg></xml>";
        assert!(matches!(
            parse_wechat_bill(creating.as_bytes(), date()),
            Err(StatementError::NotReady { .. })
        ));
        let sign = "<xml><return_code>FAIL</return_code><return_msg>SIGN ERROR</return_msg></xml>";
        let error = parse_wechat_bill(sign.as_bytes(), date()).unwrap_err();
        assert!(matches!(error, StatementError::NotABill { .. }), "{error}");
        assert!(error.to_string().contains("SIGN ERROR"), "{error}");
        assert_eq!(
            parse_wechat_bill(b"", date()),
            Err(StatementError::Truncated {
                missing: "header line"
            })
        );
    }

    #[test]
    fn an_unknown_status_a_missing_backtick_and_text_after_the_summary_are_rejected() {
        let odd = bill(
            &[payment("A", "1.00").replace("`SUCCESS", "`NOTPAY")],
            "`1,`1.00,`0.00,`0.00,`0.00000,`1.00,`0.00",
        );
        assert_eq!(
            parse_wechat_bill(odd.as_bytes(), date()),
            Err(StatementError::BadValue {
                line: 2,
                column: "交易状态",
                value: "NOTPAY".to_owned()
            })
        );
        let bare = bill(
            &[payment("A", "1.00")[1..].to_owned()],
            "`1,`1.00,`0.00,`0.00,`0.00000,`1.00,`0.00",
        );
        assert!(matches!(
            parse_wechat_bill(bare.as_bytes(), date()),
            Err(StatementError::Malformed { line: 2, .. })
        ));
        let trailing = format!(
            "{}extra\n",
            bill(
                &[payment("A", "1.00")],
                "`1,`1.00,`0.00,`0.00,`0.00000,`1.00,`0.00"
            )
        );
        assert!(matches!(
            parse_wechat_bill(trailing.as_bytes(), date()),
            Err(StatementError::Malformed { line: 5, .. })
        ));
    }

    #[test]
    fn a_zero_amount_row_and_a_bad_time_are_rejected_naming_the_column() {
        let zero = bill(
            &[payment("A", "0.00")],
            "`1,`0.00,`0.00,`0.00,`0.00000,`0.00,`0.00",
        );
        let error = parse_wechat_bill(zero.as_bytes(), date()).unwrap_err();
        assert!(
            matches!(
                error,
                StatementError::BadAmount {
                    line: 2,
                    column: "订单金额",
                    ..
                }
            ),
            "{error}"
        );
        let late = bill(
            &[payment("A", "1.00").replace("10:00:00", "24:00:00")],
            "`1,`1.00,`0.00,`0.00,`0.00000,`1.00,`0.00",
        );
        let error = parse_wechat_bill(late.as_bytes(), date()).unwrap_err();
        assert_eq!(
            error.to_string(),
            "line 2, column 交易时间: \"2026-11-22 24:00:00\" is not a time (yyyy-MM-dd HH:mm:ss, China time)"
        );
    }

    fn summary_of_two() -> &'static str {
        "`2,`2.00,`0.00,`0.00,`0.00000,`2.00,`0.00"
    }

    #[test]
    fn of_several_defects_the_one_a_whole_bill_is_checked_for_first_is_reported() {
        let parse = |text: &[u8]| parse_wechat_bill(text, date());
        let bad_row = payment("A", "1.00").replace("`SUCCESS", "`NOTPAY");
        let short = payment("B", "1.00").rsplit_once(",`").unwrap().0.to_owned();
        let column_count = StatementError::ColumnCount {
            line: 3,
            expected: 27,
            found: 26,
        };
        // A record's shape before any record's row, wherever they are.
        let text = bill(&[bad_row.clone(), short.clone()], summary_of_two());
        assert_eq!(parse(text.as_bytes()), Err(column_count.clone()));
        // A record's row before the summary's values.
        let text = bill(
            &[bad_row.clone(), payment("B", "1.00")],
            "`9,`0,`0,`0,`0,`0,`0",
        );
        assert!(
            matches!(
                parse(text.as_bytes()),
                Err(StatementError::BadValue { line: 2, .. })
            ),
            "{text}"
        );
        // The summary's place and shape before any record.
        let text = format!(
            "{}extra\n",
            bill(&[bad_row.clone(), short.clone()], summary_of_two())
        );
        assert_eq!(
            parse(text.as_bytes()),
            Err(StatementError::Malformed {
                line: 6,
                reason: "text after the summary"
            })
        );
        let legacy = bill(std::slice::from_ref(&short), summary_of_two())
            .replace(CURRENT_SUMMARY, LEGACY_SUMMARY);
        assert!(matches!(
            parse(legacy.as_bytes()),
            Err(StatementError::UnknownHeader { line: 3, .. })
        ));
        let no_summary = format!("{HEADER}\n{short}\n");
        assert_eq!(
            parse(no_summary.as_bytes()),
            Err(StatementError::Truncated {
                missing: "summary (总交易单数)"
            })
        );
        let no_values = format!("{HEADER}\n{short}\n{CURRENT_SUMMARY}\n\n");
        assert_eq!(
            parse(no_values.as_bytes()),
            Err(StatementError::Truncated {
                missing: "summary values"
            })
        );
        // A line that is not UTF-8 before anything else, even after the summary.
        let mut bytes =
            format!("{}extra\n", bill(&[bad_row, short], summary_of_two())).into_bytes();
        bytes.extend_from_slice(b"\n\xFF\n");
        assert_eq!(
            parse(&bytes),
            Err(StatementError::Encoding {
                line: 8,
                encoding: "UTF-8"
            })
        );
        // An unknown header before anything but the encoding.
        let text = format!(
            "{}\n{}",
            HEADER.replace("费率备注", "备注"),
            bill(&[], "`0")
        );
        assert!(matches!(
            parse(text.as_bytes()),
            Err(StatementError::UnknownHeader { line: 1, .. })
        ));
    }

    #[test]
    fn a_record_of_more_columns_than_any_layout_counts_them_all() {
        let wide = format!("{}{}", payment("A", "1.00"), ",`x".repeat(13));
        let text = bill(&[wide], "`1,`1.00,`0.00,`0.00,`0.00000,`1.00,`0.00");
        assert_eq!(
            parse_wechat_bill(text.as_bytes(), date()),
            Err(StatementError::ColumnCount {
                line: 2,
                expected: 27,
                found: 40
            })
        );
    }

    #[test]
    fn a_bill_read_in_small_pieces_is_the_bill_read_whole() {
        let text = bill(
            &[
                payment("A", "10.00"),
                refund("A", "REFUND", "SUCCESS", "3.00"),
                refund("A", "REFUND", "REVOKED", "7.00"),
            ],
            "`3,`10.00,`10.00,`0.00,`0.00000,`10.00,`10.00",
        )
        .replace('\n', "\r\n");
        let text = format!("\u{feff}{text}");
        let whole = parse_wechat_bill(text.as_bytes(), date()).unwrap();
        assert_eq!(whole.rows.len(), 3);
        let pieces = std::io::BufReader::with_capacity(7, text.as_bytes());
        let read = read_wechat_bill(pieces, Statement::new(Channel::Wechat, date())).unwrap();
        assert_eq!(read, whole);
    }

    /// Gives `data`, then fails.
    struct FailsAfter<'a>(&'a [u8]);

    impl std::io::Read for FailsAfter<'_> {
        fn read(&mut self, buffer: &mut [u8]) -> std::io::Result<usize> {
            if self.0.is_empty() {
                return Err(std::io::Error::other("the disk is gone"));
            }
            let read = std::io::Read::read(&mut self.0, buffer)?;
            Ok(read)
        }
    }

    #[test]
    fn a_bill_that_cannot_be_read_to_its_end_is_rejected_naming_the_line() {
        let text = bill(
            &[payment("A", "1.00")],
            "`1,`1.00,`0.00,`0.00,`0.00000,`1.00,`0.00",
        );
        let cut = &text.as_bytes()[..text.find(CURRENT_SUMMARY).unwrap() + 3];
        let reader = std::io::BufReader::new(FailsAfter(cut));
        assert_eq!(
            read_wechat_bill(reader, Statement::new(Channel::Wechat, date())),
            Err(StatementError::Read {
                line: 3,
                reason: "the disk is gone".to_owned()
            })
        );
    }

    #[test]
    fn an_xml_answer_after_blank_lines_is_read_as_the_whole_text() {
        // The reason names a byte offset, which counts the blank lines too.
        let text = "\r\n  \n<xml><return_code>FAIL</return_msg></xml>";
        let reason = crate::wechat::xml::parse(text).unwrap_err();
        assert!(reason.to_string().contains("at byte 40"), "{reason}");
        assert_eq!(
            parse_wechat_bill(text.as_bytes(), date()),
            Err(StatementError::NotABill {
                reason: format!("an XML answer that cannot be read: {reason}")
            })
        );
        let no_bill = "\n <xml><return_code>FAIL</return_code>\n<return_msg>No Bill Exist</return_msg></xml>\n";
        assert_eq!(
            parse_wechat_bill(no_bill.as_bytes(), date()),
            Ok(Statement::new(Channel::Wechat, date()))
        );
    }
}
