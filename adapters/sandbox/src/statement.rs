//! The statements of a China-time day, made from the sandbox's truth in the
//! channels' own formats (docs/sandbox.md, "Statements"):
//!
//! - WeChat: the text bill (`ALL`, `SUCCESS`, `REFUND`), a header line,
//!   backtick-prefixed fields, then the summary header and values; in the
//!   current 27-column layout or the legacy 24-column one. A paid-then-
//!   revoked order shows its payment line and a refund line whose status is
//!   `REVOKED`.
//! - Alipay: a zip of two GBK CSV files, the detail (`业务明细`) and the
//!   summary (`业务明细(汇总)`), with their `#` header and footer lines.
//!   Refund rows carry negative amounts and the refund request number; the
//!   refund row of a revoke carries the original trade's Alipay number as
//!   its refund batch number (the seeds' rule).
//!
//! Only what happened by `now` is listed: a refund still processing is not
//! on any statement yet. A day with no line has no statement (WeChat's
//! "No Bill Exist"). Fees are 0.60 %, rounded to the fen.

use std::fmt::Write as _;
use std::io::Write as _;

use chrono::{DateTime, Datelike, Duration, NaiveDate, Timelike, Utc};

use super::faults::StatementDefect;
use paycode_domain::calendar::{china_date, china_midnight, china_time};

use super::truth::{SandboxOrder, SandboxOrderState, SandboxRefundState};

/// Which lines a WeChat bill lists (`bill_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WechatBillType {
    /// Payments and refunds.
    #[default]
    All,
    /// Payments only.
    Success,
    /// Refunds (and revokes that returned money) only.
    Refund,
}

impl WechatBillType {
    /// Reads the wire value (`ALL`, `SUCCESS`, `REFUND`).
    pub fn parse(text: &str) -> Option<WechatBillType> {
        match text {
            "ALL" => Some(WechatBillType::All),
            "SUCCESS" => Some(WechatBillType::Success),
            "REFUND" => Some(WechatBillType::Refund),
            _ => None,
        }
    }
}

/// The column set of WeChat bills; both exist in the wild (see `adapters/testdata/vectors/`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WechatBillLayout {
    /// Today's: ALL 27 columns (应结订单金额, 费率备注, ...), summary 7.
    #[default]
    Current,
    /// The 2014–2017 documentation's: ALL 24 columns, summary 5.
    Legacy,
}

/// The fee both channels charge here: 6 per 1000 (0.60 %).
const FEE_PER_THOUSAND: u64 = 6;
/// The fee rate as the WeChat bill prints it.
const FEE_RATE_TEXT: &str = "0.60%";

/// `fen` as yuan with two decimals.
pub fn yuan(fen: u64) -> String {
    format!("{}.{:02}", fen / 100, fen % 100)
}

/// A signed fen amount as yuan with two decimals.
pub fn signed_yuan(fen: i64) -> String {
    let sign = if fen < 0 { "-" } else { "" };
    format!("{sign}{}", yuan(fen.unsigned_abs()))
}

/// The fee of an amount, rounded half up to the fen.
fn fee_fen(amount_fen: u64) -> u64 {
    (amount_fen.saturating_mul(FEE_PER_THOUSAND) + 500) / 1000
}

/// WeChat's fee columns: yuan with five decimals.
fn fee_text(fee_fen: i64) -> String {
    format!("{}000", signed_yuan(fee_fen))
}

fn signed(fen: u64) -> i64 {
    i64::try_from(fen).unwrap_or(i64::MAX)
}

/// What one statement line says.
#[derive(Debug, Clone, PartialEq, Eq)]
enum LineKind {
    Payment,
    Refund {
        refund_no: String,
        refund_id: String,
        requested_at: DateTime<Utc>,
    },
    /// The money a revoke returned (WeChat `REVOKED`).
    Revoke {
        refund_id: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Line {
    kind: LineKind,
    /// When it happened: paid, refunded, revoked.
    at: DateTime<Utc>,
    out_trade_no: String,
    trade_no: String,
    subject: String,
    created_at: DateTime<Utc>,
    paid_at: DateTime<Utc>,
    /// The line's amount: the payment, or the money returned.
    amount_fen: u64,
}

/// The channel's refund id of the money a revoke returned: the trade's
/// number with a refund prefix, so it is stable across restarts.
fn revoke_refund_id(trade_no: &str) -> String {
    format!("5{}", trade_no.get(1..).unwrap_or_default())
}

/// The China-time midnight that starts `date`, in UTC.
fn day_start(date: NaiveDate) -> DateTime<Utc> {
    china_midnight(date)
}

/// Every line of `date`'s statement as of `now`, in time order, with the defects applied.
fn day_lines(
    orders: &[SandboxOrder],
    date: NaiveDate,
    now: DateTime<Utc>,
    defects: &[StatementDefect],
) -> Vec<Line> {
    let mut lines = Vec::new();
    let on_day = |at: DateTime<Utc>| at <= now && china_date(at) == date;
    for order in orders {
        let Some(paid_at) = order.state.paid_at() else {
            continue;
        };
        let line = |kind: LineKind, at: DateTime<Utc>, amount_fen: u64| Line {
            kind,
            at,
            out_trade_no: order.out_trade_no.clone(),
            trade_no: order.trade_no.clone(),
            subject: order.subject.clone(),
            created_at: order.created_at,
            paid_at,
            amount_fen,
        };
        if on_day(paid_at) {
            lines.push(line(LineKind::Payment, paid_at, order.amount_fen));
        }
        for refund in &order.refunds {
            let SandboxRefundState::Succeeded { at } = refund.state(now) else {
                continue;
            };
            if on_day(at) {
                let kind = LineKind::Refund {
                    refund_no: refund.refund_no.clone(),
                    refund_id: refund.refund_id.clone(),
                    requested_at: refund.requested_at,
                };
                lines.push(line(kind, at, refund.amount_fen));
            }
        }
        let reversed_at = match order.state {
            SandboxOrderState::Reversed { reversed_at, .. } => Some(reversed_at),
            _ => None,
        };
        if let Some(reversed_at) = reversed_at.filter(|at| on_day(*at)) {
            let kind = LineKind::Revoke {
                refund_id: revoke_refund_id(&order.trade_no),
            };
            lines.push(line(kind, reversed_at, order.amount_fen));
        }
    }
    lines.sort_by(|a, b| {
        (a.at, &a.out_trade_no, a.kind != LineKind::Payment).cmp(&(
            b.at,
            &b.out_trade_no,
            b.kind != LineKind::Payment,
        ))
    });
    apply_defects(&mut lines, date, defects);
    lines
}

fn apply_defects(lines: &mut Vec<Line>, date: NaiveDate, defects: &[StatementDefect]) {
    for defect in defects {
        match defect {
            StatementDefect::MissingLine { out_trade_no } => {
                lines.retain(|line| &line.out_trade_no != out_trade_no);
            }
            StatementDefect::ChangedAmount {
                out_trade_no,
                amount_fen,
            } => {
                for line in lines.iter_mut() {
                    if &line.out_trade_no == out_trade_no && line.kind == LineKind::Payment {
                        line.amount_fen = *amount_fen;
                    }
                }
            }
            StatementDefect::DuplicatedLine { out_trade_no } => {
                let position = lines.iter().position(|line| {
                    &line.out_trade_no == out_trade_no && line.kind == LineKind::Payment
                });
                if let Some(index) = position {
                    let copy = lines[index].clone();
                    lines.insert(index + 1, copy);
                }
            }
            StatementDefect::ExtraLine {
                date: extra_date,
                out_trade_no,
                amount_fen,
            } if *extra_date == date => {
                let at = day_start(date) + Duration::hours(12);
                lines.push(Line {
                    kind: LineKind::Payment,
                    at,
                    out_trade_no: out_trade_no.clone(),
                    // A channel number no real order has: 9999, the day, zeros.
                    trade_no: format!("9999{}0000000000000000", date.format("%Y%m%d")),
                    subject: "extra".to_owned(),
                    created_at: at,
                    paid_at: at,
                    amount_fen: *amount_fen,
                });
            }
            StatementDefect::ExtraLine { .. } => {}
        }
    }
}

fn china_time_text(at: DateTime<Utc>) -> String {
    at.with_timezone(&china_time())
        .format("%Y-%m-%d %H:%M:%S")
        .to_string()
}

/// The merchant fields a WeChat bill repeats on every line.
#[derive(Debug, Clone, Copy)]
pub struct WechatBillMerchant<'a> {
    /// `公众账号ID`.
    pub appid: &'a str,
    /// `商户号`.
    pub mch_id: &'a str,
}

/// The customer's `openid` of an order, stable across restarts.
pub fn wechat_openid(trade_no: &str) -> String {
    let tail = trade_no
        .get(trade_no.len().saturating_sub(12)..)
        .unwrap_or_default();
    format!("oSandbox{tail}")
}

/// The WeChat text bill of `date`, or `None` when the day has no line.
pub fn wechat_bill(
    merchant: WechatBillMerchant<'_>,
    layout: WechatBillLayout,
    bill_type: WechatBillType,
    orders: &[SandboxOrder],
    date: NaiveDate,
    now: DateTime<Utc>,
    defects: &[StatementDefect],
) -> Option<String> {
    let lines: Vec<Line> = day_lines(orders, date, now, defects)
        .into_iter()
        .filter(|line| match bill_type {
            WechatBillType::All => true,
            WechatBillType::Success => line.kind == LineKind::Payment,
            WechatBillType::Refund => line.kind != LineKind::Payment,
        })
        .collect();
    if lines.is_empty() {
        return None;
    }
    let current = layout == WechatBillLayout::Current;
    let header = match (bill_type, current) {
        (WechatBillType::All, true) => {
            "交易时间,公众账号ID,商户号,特约商户号,设备号,微信订单号,商户订单号,用户标识,交易类型,交易状态,付款银行,货币种类,应结订单金额,代金券金额,微信退款单号,商户退款单号,退款金额,充值券退款金额,退款类型,退款状态,商品名称,商户数据包,手续费,费率,订单金额,申请退款金额,费率备注"
        }
        (WechatBillType::Success, true) => {
            "交易时间,公众账号ID,商户号,特约商户号,设备号,微信订单号,商户订单号,用户标识,交易类型,交易状态,付款银行,货币种类,应结订单金额,代金券金额,商品名称,商户数据包,手续费,费率,订单金额,费率备注"
        }
        (WechatBillType::Refund, true) => {
            "交易时间,公众账号ID,商户号,特约商户号,设备号,微信订单号,商户订单号,用户标识,交易类型,交易状态,付款银行,货币种类,应结订单金额,代金券金额,退款申请时间,退款成功时间,微信退款单号,商户退款单号,退款金额,充值券退款金额,退款类型,退款状态,商品名称,商户数据包,手续费,费率,订单金额,申请退款金额,费率备注"
        }
        (WechatBillType::All, false) => {
            "交易时间,公众账号ID,商户号,子商户号,设备号,微信订单号,商户订单号,用户标识,交易类型,交易状态,付款银行,货币种类,总金额,代金券或立减优惠金额,微信退款单号,商户退款单号,退款金额,代金券或立减优惠退款金额,退款类型,退款状态,商品名称,商户数据包,手续费,费率"
        }
        (WechatBillType::Success, false) => {
            "交易时间,公众账号ID,商户号,子商户号,设备号,微信订单号,商户订单号,用户标识,交易类型,交易状态,付款银行,货币种类,总金额,代金券或立减优惠金额,商品名称,商户数据包,手续费,费率"
        }
        (WechatBillType::Refund, false) => {
            "交易时间,公众账号ID,商户号,子商户号,设备号,微信订单号,商户订单号,用户标识,交易类型,交易状态,付款银行,货币种类,总金额,代金券或立减优惠金额,退款申请时间,退款成功时间,微信退款单号,商户退款单号,退款金额,代金券或立减优惠退款金额,退款类型,退款状态,商品名称,商户数据包,手续费,费率"
        }
    };
    let mut text = String::from(header);
    text.push('\n');
    let (mut paid_fen, mut refunded_fen, mut fees_fen) = (0u64, 0u64, 0i64);
    for line in &lines {
        let openid = wechat_openid(&line.trade_no);
        let fee = signed(fee_fen(line.amount_fen));
        let mut fields: Vec<String> = Vec::with_capacity(29);
        let (time, status, refund) = match &line.kind {
            LineKind::Payment => {
                paid_fen += line.amount_fen;
                fees_fen += fee;
                (line.at, "SUCCESS", None)
            }
            LineKind::Refund {
                refund_no,
                refund_id,
                requested_at,
            } => {
                refunded_fen += line.amount_fen;
                fees_fen -= fee;
                let refund = (refund_id.clone(), refund_no.clone(), *requested_at);
                (line.at, "REFUND", Some(refund))
            }
            LineKind::Revoke { refund_id } => {
                refunded_fen += line.amount_fen;
                fees_fen -= fee;
                let refund = (refund_id.clone(), line.out_trade_no.clone(), line.at);
                (line.at, "REVOKED", Some(refund))
            }
        };
        // The REFUND bill dates a line by its payment, the ALL bill by itself.
        let time = if bill_type == WechatBillType::Refund {
            line.paid_at
        } else {
            time
        };
        fields.extend([
            china_time_text(time),
            merchant.appid.to_owned(),
            merchant.mch_id.to_owned(),
            "0".to_owned(),
            String::new(),
            line.trade_no.clone(),
            line.out_trade_no.clone(),
            openid,
            "MICROPAY".to_owned(),
            status.to_owned(),
            "OTHERS".to_owned(),
            "CNY".to_owned(),
        ]);
        let amount = yuan(line.amount_fen);
        let zero = "0.00".to_owned();
        let legacy_zero = if current {
            zero.clone()
        } else {
            "0".to_owned()
        };
        match (&refund, bill_type) {
            (None, WechatBillType::All) => fields.extend([
                amount.clone(),
                zero.clone(),
                "0".to_owned(),
                "0".to_owned(),
                legacy_zero.clone(),
                legacy_zero.clone(),
                String::new(),
                String::new(),
            ]),
            (None, _) => fields.extend([amount.clone(), zero.clone()]),
            (Some((refund_id, refund_no, requested_at)), bill) => {
                fields.extend([zero.clone(), zero.clone()]);
                if bill == WechatBillType::Refund {
                    fields.extend([china_time_text(*requested_at), china_time_text(line.at)]);
                }
                fields.extend([
                    refund_id.clone(),
                    refund_no.clone(),
                    amount.clone(),
                    zero.clone(),
                    "ORIGINAL".to_owned(),
                    "SUCCESS".to_owned(),
                ]);
            }
        }
        let line_fee = if refund.is_some() { -fee } else { fee };
        fields.extend([
            line.subject.clone(),
            String::new(),
            fee_text(line_fee),
            FEE_RATE_TEXT.to_owned(),
        ]);
        if current {
            match (&refund, bill_type) {
                (None, WechatBillType::Success) => fields.extend([amount, String::new()]),
                (None, _) => fields.extend([amount, zero, String::new()]),
                (Some(_), _) => fields.extend([zero, amount, String::new()]),
            }
        }
        text.push_str(&backticked(&fields));
        text.push('\n');
    }
    if current {
        text.push_str(
            "总交易单数,应结订单总金额,退款总金额,充值券退款总金额,手续费总金额,订单总金额,申请退款总金额\n",
        );
        let summary = [
            lines.len().to_string(),
            yuan(paid_fen),
            yuan(refunded_fen),
            "0.00".to_owned(),
            fee_text(fees_fen),
            yuan(paid_fen),
            yuan(refunded_fen),
        ];
        text.push_str(&backticked(&summary));
    } else {
        text.push_str("总交易单数,总交易额,总退款金额,总代金券或立减优惠退款金额,手续费总金额\n");
        let summary = [
            lines.len().to_string(),
            yuan(paid_fen),
            yuan(refunded_fen),
            "0.00".to_owned(),
            fee_text(fees_fen),
        ];
        text.push_str(&backticked(&summary));
    }
    text.push('\n');
    Some(text)
}

fn backticked(fields: &[String]) -> String {
    fields
        .iter()
        .map(|field| format!("`{field}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// The Alipay account (`2088…0156`) of an app, as bills print it: the
/// app's digits, padded, in Alipay's PID shape, plus the account suffix.
pub fn alipay_account(app_id: &str) -> String {
    let digits: String = app_id.chars().filter(char::is_ascii_digit).collect();
    let tail = digits
        .get(digits.len().saturating_sub(12)..)
        .unwrap_or_default();
    format!("2088{tail:0>12}0156")
}

/// The buyer shown on every Alipay line and answer.
pub const ALIPAY_BUYER_LOGON_ID: &str = "sandbox***@example.com";

const DETAIL_START: &str = "#-----------------------------------------业务明细列表----------------------------------------";
const DETAIL_END: &str = "#-----------------------------------------业务明细列表结束------------------------------------";
const SUMMARY_START: &str = "#-----------------------------------------业务汇总列表----------------------------------------";
const SUMMARY_END: &str = "#----------------------------------------业务汇总列表结束-------------------------------------";
const DETAIL_HEADER: &str = "支付宝交易号,商户订单号,业务类型,商品名称,创建时间,完成时间,门店编号,门店名称,操作员,终端号,对方账户,订单金额（元）,商家实收（元）,支付宝红包（元）,集分宝（元）,支付宝优惠（元）,商家优惠（元）,券核销金额（元）,券名称,商家红包消费金额（元）,卡消费金额（元）,退款批次号/请求号,服务费（元）,分润（元）,备注";
const SUMMARY_HEADER: &str = "门店编号,门店名称,交易订单总笔数,退款订单总笔数,订单金额（元）,商家实收（元）,支付宝优惠（元）,商家优惠（元）,卡消费金额（元）,服务费（元）,分润（元）,实收净额（元）";

/// Alipay's `[yyyy年MM月dd日 HH:mm:ss]` China time.
fn alipay_header_time(at: DateTime<Utc>) -> String {
    let local = at.with_timezone(&china_time());
    format!(
        "{:04}年{:02}月{:02}日 {:02}:{:02}:{:02}",
        local.year(),
        local.month(),
        local.day(),
        local.hour(),
        local.minute(),
        local.second()
    )
}

/// The two CSV files of an Alipay bill, `(file name, UTF-8 text)`, and
/// the export time they print.
type AlipayBillTexts = ([(String, String); 2], DateTime<Utc>);

/// The Alipay bill of `date` as of `now`: the two CSV texts (UTF-8, before
/// the GBK encoding) and their file names, or `None` when the day has no line.
fn alipay_bill_texts(
    app_id: &str,
    orders: &[SandboxOrder],
    date: NaiveDate,
    now: DateTime<Utc>,
    defects: &[StatementDefect],
) -> Option<AlipayBillTexts> {
    let lines = day_lines(orders, date, now, defects);
    if lines.is_empty() {
        return None;
    }
    let account = alipay_account(app_id);
    let start = day_start(date);
    let end = start + Duration::days(1);
    // A past day's bill is the same whenever it is fetched; today's is as of now.
    let exported_at = now.min(end);
    let period = format!(
        "#起始日期：[{}]   终止日期：[{}]",
        alipay_header_time(start),
        alipay_header_time(end)
    );
    let mut detail = format!(
        "#支付宝业务明细查询\n#账号：[{account}]\n{period}\n{DETAIL_START}\n{DETAIL_HEADER}\n"
    );
    let (mut trades, mut trade_fen, mut refunds, mut refund_fen, mut fees_fen) =
        (0usize, 0i64, 0usize, 0i64, 0i64);
    for line in &lines {
        let fee = signed(fee_fen(line.amount_fen));
        let (kind, amount, batch, line_fee) = match &line.kind {
            LineKind::Payment => {
                trades += 1;
                trade_fen += signed(line.amount_fen);
                ("交易", signed(line.amount_fen), String::new(), -fee)
            }
            LineKind::Refund { refund_no, .. } => {
                refunds += 1;
                refund_fen -= signed(line.amount_fen);
                ("退款", -signed(line.amount_fen), refund_no.clone(), fee)
            }
            // The seeds: a revoke's refund batch number is the trade's Alipay number.
            LineKind::Revoke { .. } => {
                refunds += 1;
                refund_fen -= signed(line.amount_fen);
                ("退款", -signed(line.amount_fen), line.trade_no.clone(), fee)
            }
        };
        fees_fen += line_fee;
        let amount = signed_yuan(amount);
        let fields = [
            format!("{}\t", line.trade_no),
            format!("{}\t", line.out_trade_no),
            format!("{kind}\t"),
            line.subject.replace([',', '\n', '\r'], " "),
            china_time_text(line.created_at),
            china_time_text(line.at),
            "\t".to_owned(),
            "\t".to_owned(),
            "\t".to_owned(),
            "\t".to_owned(),
            format!("*沙箱({ALIPAY_BUYER_LOGON_ID})\t"),
            amount.clone(),
            amount,
            "0.00".to_owned(),
            "0.00".to_owned(),
            "0.00".to_owned(),
            "0.00".to_owned(),
            "0.00".to_owned(),
            String::new(),
            "0.00\t".to_owned(),
            "0.00".to_owned(),
            format!("{batch}\t"),
            signed_yuan(line_fee),
            "0.00".to_owned(),
            String::new(),
        ];
        detail.push_str(&fields.join(","));
        detail.push('\n');
    }
    let exported = format!("#导出时间：[{}]", alipay_header_time(exported_at));
    let _ = write!(
        detail,
        "{DETAIL_END}\n#交易合计：{trades}笔，商家实收共{}元，商家优惠共0.00元\n#退款合计：{refunds}笔，商家实收退款共{}元，商家优惠退款共0.00元\n{exported}\n",
        signed_yuan(trade_fen),
        signed_yuan(refund_fen),
    );
    let net_fen = trade_fen + refund_fen;
    let totals = format!(
        "{trades},{refunds},{net},{net},0.00,0.00,0.00,{fees},0.00,{received}",
        net = signed_yuan(net_fen),
        fees = signed_yuan(fees_fen),
        received = signed_yuan(net_fen + fees_fen),
    );
    let summary = format!(
        "#支付宝业务汇总查询\n#账号：[{account}]\n{period}\n{SUMMARY_START}\n{SUMMARY_HEADER}\n\t,\t,{totals}\n合计,,{totals}\n{SUMMARY_END}\n{exported}\n"
    );
    let day = date.format("%Y%m%d");
    Some((
        [
            (format!("{account}_{day}_业务明细.csv"), detail),
            (format!("{account}_{day}_业务明细(汇总).csv"), summary),
        ],
        exported_at,
    ))
}

/// The Alipay bill zip of `date` as of `now` (GBK CSV files), or `None`
/// when the day has no line.
pub fn alipay_bill_zip(
    app_id: &str,
    orders: &[SandboxOrder],
    date: NaiveDate,
    now: DateTime<Utc>,
    defects: &[StatementDefect],
) -> zip::result::ZipResult<Option<Vec<u8>>> {
    let Some((files, exported_at)) = alipay_bill_texts(app_id, orders, date, now, defects) else {
        return Ok(None);
    };
    let local = exported_at.with_timezone(&china_time());
    let modified = zip::DateTime::from_date_and_time(
        u16::try_from(local.year()).unwrap_or(1980),
        u8::try_from(local.month()).unwrap_or(1),
        u8::try_from(local.day()).unwrap_or(1),
        u8::try_from(local.hour()).unwrap_or(0),
        u8::try_from(local.minute()).unwrap_or(0),
        u8::try_from(local.second()).unwrap_or(0),
    )
    .unwrap_or_default();
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated)
        .last_modified_time(modified);
    let mut writer = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    for (name, text) in files {
        // Characters GBK lacks become numeric references, as an encoder must.
        let (bytes, _, _) = encoding_rs::GBK.encode(&text);
        writer.start_file(name, options)?;
        writer.write_all(&bytes)?;
    }
    Ok(Some(writer.finish()?.into_inner()))
}

#[cfg(test)]
mod tests {
    use std::io::Read as _;

    use chrono::TimeZone;
    use paycode_domain::Channel;

    use super::*;
    use crate::truth::tests::order;

    fn date() -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, 11, 22).unwrap()
    }

    fn at(h: u32, m: u32) -> DateTime<Utc> {
        // China time on 2026-11-22.
        china_time()
            .with_ymd_and_hms(2026, 11, 22, h, m, 0)
            .unwrap()
            .with_timezone(&Utc)
    }

    /// A day: A paid 10:00 (refunded 3.00 at 11:00), B paid 10:05 then
    /// revoked 10:06, C waiting (never on a statement), D paid the next day.
    fn day_orders(channel: Channel) -> Vec<SandboxOrder> {
        let mut a = order(channel, "00");
        a.out_trade_no = "A".to_owned();
        a.trade_no = "4200000120261122000000000001".to_owned();
        a.created_at = at(10, 0);
        a.state = SandboxOrderState::Paid { paid_at: at(10, 0) };
        a.request_refund("R1", 300, || "5030000000001".to_owned(), at(11, 0));
        let mut b = order(channel, "00");
        b.out_trade_no = "B".to_owned();
        b.trade_no = "4200000120261122000000000002".to_owned();
        b.created_at = at(10, 5);
        b.state = SandboxOrderState::Paid { paid_at: at(10, 5) };
        assert_eq!(b.revoke(at(10, 6)), crate::truth::RevokeDecision::Refunded);
        let mut c = order(channel, "02");
        c.out_trade_no = "C".to_owned();
        c.created_at = at(12, 0);
        let mut d = order(channel, "00");
        d.out_trade_no = "D".to_owned();
        d.created_at = at(23, 59) + Duration::minutes(2);
        d.state = SandboxOrderState::Paid {
            paid_at: d.created_at,
        };
        vec![a, b, c, d]
    }

    fn merchant() -> WechatBillMerchant<'static> {
        WechatBillMerchant {
            appid: "wx2421b1c4370ec43b",
            mch_id: "10000100",
        }
    }

    fn now() -> DateTime<Utc> {
        at(23, 0) + Duration::days(1)
    }

    #[test]
    fn the_wechat_all_bill_lists_payments_refunds_and_a_revoked_line_in_27_columns() {
        let bill = wechat_bill(
            merchant(),
            WechatBillLayout::Current,
            WechatBillType::All,
            &day_orders(Channel::Wechat),
            date(),
            now(),
            &[],
        )
        .unwrap();
        let lines: Vec<&str> = bill.lines().collect();
        assert_eq!(lines.len(), 7, "{bill}");
        assert_eq!(lines[0].split(',').count(), 27);
        for line in &lines[1..5] {
            let fields: Vec<&str> = line.split(',').collect();
            assert_eq!(fields.len(), 27, "{line}");
            assert!(fields.iter().all(|f| f.starts_with('`')), "{line}");
        }
        assert_eq!(
            lines[1],
            "`2026-11-22 10:00:00,`wx2421b1c4370ec43b,`10000100,`0,`,`4200000120261122000000000001,`A,`oSandbox000000000001,`MICROPAY,`SUCCESS,`OTHERS,`CNY,`10.00,`0.00,`0,`0,`0.00,`0.00,`,`,`Coffee,`,`0.06000,`0.60%,`10.00,`0.00,`"
        );
        assert_eq!(
            lines[2],
            "`2026-11-22 10:05:00,`wx2421b1c4370ec43b,`10000100,`0,`,`4200000120261122000000000002,`B,`oSandbox000000000002,`MICROPAY,`SUCCESS,`OTHERS,`CNY,`10.00,`0.00,`0,`0,`0.00,`0.00,`,`,`Coffee,`,`0.06000,`0.60%,`10.00,`0.00,`"
        );
        assert_eq!(
            lines[3],
            "`2026-11-22 10:06:00,`wx2421b1c4370ec43b,`10000100,`0,`,`4200000120261122000000000002,`B,`oSandbox000000000002,`MICROPAY,`REVOKED,`OTHERS,`CNY,`0.00,`0.00,`5200000120261122000000000002,`B,`10.00,`0.00,`ORIGINAL,`SUCCESS,`Coffee,`,`-0.06000,`0.60%,`0.00,`10.00,`"
        );
        assert!(lines[4].contains(",`REFUND,") && lines[4].contains(",`5030000000001,`R1,`3.00,"));
        assert_eq!(
            lines[5],
            "总交易单数,应结订单总金额,退款总金额,充值券退款总金额,手续费总金额,订单总金额,申请退款总金额"
        );
        assert_eq!(lines[6], "`4,`20.00,`13.00,`0.00,`0.04000,`20.00,`13.00");
    }

    #[test]
    fn the_wechat_bill_types_and_the_legacy_layout_have_their_documented_columns() {
        let orders = day_orders(Channel::Wechat);
        let bill = |layout, bill_type| {
            wechat_bill(merchant(), layout, bill_type, &orders, date(), now(), &[]).unwrap()
        };
        for (layout, bill_type, columns, rows, summary) in [
            (WechatBillLayout::Current, WechatBillType::Success, 20, 2, 7),
            (WechatBillLayout::Current, WechatBillType::Refund, 29, 2, 7),
            (WechatBillLayout::Legacy, WechatBillType::All, 24, 4, 5),
            (WechatBillLayout::Legacy, WechatBillType::Success, 18, 2, 5),
            (WechatBillLayout::Legacy, WechatBillType::Refund, 26, 2, 5),
        ] {
            let text = bill(layout, bill_type);
            let lines: Vec<&str> = text.lines().collect();
            assert_eq!(lines.len(), rows + 3, "{layout:?} {bill_type:?}\n{text}");
            for line in &lines[..=rows] {
                assert_eq!(line.split(',').count(), columns, "{line}");
            }
            assert_eq!(lines[rows + 1].split(',').count(), summary);
            assert_eq!(lines[rows + 2].split(',').count(), summary);
        }
        let legacy = bill(WechatBillLayout::Legacy, WechatBillType::All);
        let header = legacy.lines().next().unwrap();
        let fixture = paycode_adapters::testing::vector("wx_v2_bill_all_legacy_wxjava.txt");
        assert_eq!(header, fixture.lines().next().unwrap());
        let refunds = bill(WechatBillLayout::Current, WechatBillType::Refund);
        let revoked = refunds.lines().find(|l| l.contains("`REVOKED")).unwrap();
        assert!(
            revoked.starts_with("`2026-11-22 10:05:00,")
                && revoked.contains(",`2026-11-22 10:06:00,`2026-11-22 10:06:00,"),
            "the REFUND bill dates the line by its payment: {revoked}"
        );
    }

    #[test]
    fn a_day_without_a_line_has_no_bill_and_a_processing_refund_is_not_listed_yet() {
        let orders = day_orders(Channel::Wechat);
        let empty = NaiveDate::from_ymd_opt(2026, 11, 20).unwrap();
        let bill = |date, now| {
            wechat_bill(
                merchant(),
                WechatBillLayout::Current,
                WechatBillType::All,
                &orders,
                date,
                now,
                &[],
            )
        };
        assert_eq!(bill(empty, now()), None);
        // At 10:30 the refund of 11:00 has not happened.
        let early = bill(date(), at(10, 30)).unwrap();
        assert_eq!(early.lines().count(), 6, "{early}");
        let mut slow = order(Channel::Wechat, "09");
        slow.created_at = at(9, 0);
        slow.state = SandboxOrderState::Paid { paid_at: at(9, 0) };
        slow.request_refund("R9", 100, || "X".to_owned(), at(9, 1));
        let count = |now| {
            wechat_bill(
                merchant(),
                WechatBillLayout::Current,
                WechatBillType::Refund,
                std::slice::from_ref(&slow),
                date(),
                now,
                &[],
            )
            .map_or(0, |bill| bill.lines().count() - 3)
        };
        assert_eq!(count(at(9, 1) + Duration::seconds(19)), 0);
        assert_eq!(count(at(9, 1) + Duration::seconds(20)), 1);
    }

    #[test]
    fn each_defect_changes_the_statement_as_named() {
        let orders = day_orders(Channel::Wechat);
        let rows = |defects: &[StatementDefect]| -> Vec<String> {
            let bill = wechat_bill(
                merchant(),
                WechatBillLayout::Current,
                WechatBillType::All,
                &orders,
                date(),
                now(),
                defects,
            )
            .unwrap();
            let lines: Vec<String> = bill.lines().map(str::to_owned).collect();
            lines[1..lines.len() - 2].to_vec()
        };
        let order_of = |row: &String| row.split(',').nth(6).unwrap().to_owned();
        let missing = rows(&[StatementDefect::MissingLine {
            out_trade_no: "A".to_owned(),
        }]);
        assert_eq!(
            missing.iter().map(order_of).collect::<Vec<_>>(),
            ["`B", "`B"]
        );
        let duplicated = rows(&[StatementDefect::DuplicatedLine {
            out_trade_no: "A".to_owned(),
        }]);
        assert_eq!(duplicated.len(), 5);
        assert_eq!(duplicated[0], duplicated[1]);
        let changed = rows(&[StatementDefect::ChangedAmount {
            out_trade_no: "A".to_owned(),
            amount_fen: 999,
        }]);
        assert!(changed[0].contains(",`9.99,"), "{}", changed[0]);
        let extra = rows(&[
            StatementDefect::ExtraLine {
                date: date(),
                out_trade_no: "X".to_owned(),
                amount_fen: 42,
            },
            StatementDefect::ExtraLine {
                date: date() + Duration::days(1),
                out_trade_no: "Y".to_owned(),
                amount_fen: 42,
            },
        ]);
        assert_eq!(extra.len(), 5);
        assert!(
            extra
                .iter()
                .any(|row| row.contains(",`X,") && row.contains(",`0.42,"))
        );
        assert!(!extra.iter().any(|row| row.contains(",`Y,")));
    }

    fn unzip(bytes: &[u8]) -> Vec<(String, String)> {
        let mut archive = zip::ZipArchive::new(std::io::Cursor::new(bytes)).unwrap();
        (0..archive.len())
            .map(|index| {
                let mut file = archive.by_index(index).unwrap();
                let mut raw = Vec::new();
                file.read_to_end(&mut raw).unwrap();
                let (text, _, malformed) = encoding_rs::GBK.decode(&raw);
                assert!(!malformed);
                (file.name().to_owned(), text.into_owned())
            })
            .collect()
    }

    #[test]
    fn the_alipay_zip_holds_gbk_detail_and_summary_files_with_the_revoke_refund_batch() {
        let app_id = "2021000000000001";
        let orders = day_orders(Channel::Alipay);
        let zip = alipay_bill_zip(app_id, &orders, date(), now(), &[])
            .unwrap()
            .unwrap();
        assert_eq!(
            zip,
            alipay_bill_zip(app_id, &orders, date(), now() + Duration::hours(5), &[])
                .unwrap()
                .unwrap(),
            "a past day's bill is the same bytes whenever it is fetched"
        );
        let files = unzip(&zip);
        assert_eq!(files.len(), 2);
        assert_eq!(files[0].0, "20880000000000010156_20261122_业务明细.csv");
        assert_eq!(
            files[1].0,
            "20880000000000010156_20261122_业务明细(汇总).csv"
        );
        let detail: Vec<&str> = files[0].1.lines().collect();
        assert_eq!(detail[0], "#支付宝业务明细查询");
        assert_eq!(detail[1], "#账号：[20880000000000010156]");
        assert_eq!(
            detail[2],
            "#起始日期：[2026年11月22日 00:00:00]   终止日期：[2026年11月23日 00:00:00]"
        );
        assert_eq!(detail[3], DETAIL_START);
        assert_eq!(detail[4].split(',').count(), 25);
        let rows = &detail[5..9];
        for row in rows {
            assert_eq!(row.split(',').count(), 25, "{row}");
        }
        let fields = |row: &str| row.split(',').map(str::to_owned).collect::<Vec<_>>();
        let payment = fields(rows[0]);
        assert_eq!(payment[0], "4200000120261122000000000001\t");
        assert_eq!(payment[1], "A\t");
        assert_eq!(payment[2], "交易\t");
        assert_eq!(
            (payment[11].as_str(), payment[12].as_str()),
            ("10.00", "10.00")
        );
        assert_eq!(payment[21], "\t");
        let revoke = fields(rows[2]);
        assert_eq!(revoke[2], "退款\t");
        assert_eq!(revoke[1], "B\t");
        assert_eq!(revoke[11], "-10.00");
        assert_eq!(
            revoke[21], "4200000120261122000000000002\t",
            "a revoke's batch number is the trade's Alipay number"
        );
        let refund = fields(rows[3]);
        assert_eq!(
            (refund[11].as_str(), refund[21].as_str()),
            ("-3.00", "R1\t")
        );
        assert_eq!(detail[9], DETAIL_END);
        assert_eq!(
            detail[10],
            "#交易合计：2笔，商家实收共20.00元，商家优惠共0.00元"
        );
        assert_eq!(
            detail[11],
            "#退款合计：2笔，商家实收退款共-13.00元，商家优惠退款共0.00元"
        );
        assert_eq!(detail[12], "#导出时间：[2026年11月23日 00:00:00]");
        let summary = &files[1].1;
        assert!(summary.starts_with("#支付宝业务汇总查询\n"), "{summary}");
        assert!(
            summary.contains("\n合计,,2,2,7.00,7.00,0.00,0.00,0.00,-0.04,0.00,6.96\n"),
            "{summary}"
        );
        assert_eq!(
            alipay_bill_zip(app_id, &orders, date() - Duration::days(3), now(), &[]).unwrap(),
            None
        );
    }

    #[test]
    fn amounts_and_fees_are_exact() {
        assert_eq!(yuan(0), "0.00");
        assert_eq!(yuan(5), "0.05");
        assert_eq!(yuan(10_000_000_000), "100000000.00");
        assert_eq!(signed_yuan(-1300), "-13.00");
        assert_eq!(fee_fen(1000), 6);
        assert_eq!(fee_fen(83), 0);
        assert_eq!(fee_fen(84), 1);
        assert_eq!(fee_text(-6), "-0.06000");
        assert_eq!(alipay_account("wx"), "20880000000000000156");
    }
}
