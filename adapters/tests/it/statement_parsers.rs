//! The statement parsers against real bills and the sandbox's: the two
//! documented WeChat bills from the protocol vectors; round trips
//! of the sandbox's truth (payments, partial refunds, a paid-then-revoked
//! order) through its WeChat bills (both layouts, all bill types) and its
//! Alipay zip; and the rejections, each naming its line and column.

use std::io::Write as _;

use chrono::{DateTime, Duration, NaiveDate, TimeZone, Utc};
use paycode_adapters::statement::{
    AlipayZipLimits, StatementError, parse_alipay_zip, parse_alipay_zip_with_limits,
    parse_wechat_bill,
};
use paycode_adapters::testing;
use paycode_domain::payment::StatementLineKind;
use paycode_domain::reconciliation::{Statement, StatementRow};
use paycode_domain::{Channel, Money};
use paycode_sandbox::statement::{WechatBillMerchant, alipay_bill_zip, wechat_bill};
use paycode_sandbox::truth::{RefundDecision, RevokeDecision};
use paycode_sandbox::{
    Behaviour, SandboxOrder, SandboxOrderState, SandboxRefundState, WechatBillLayout,
    WechatBillType,
};

const APPID: &str = "wx2421b1c4370ec43b";
const MCH_ID: &str = "10000100";
const APP_ID: &str = "2021000000000001";

fn day() -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 11, 22).unwrap()
}

/// `h:m:s` China time on the test day.
fn at(h: u32, m: u32, s: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 22, h - 8, m, s).unwrap()
}

/// The next day, when the statement is fetched.
fn now() -> DateTime<Utc> {
    at(10, 0, 0) + Duration::days(1)
}

fn money(text: &str) -> Money {
    text.parse().unwrap()
}

fn paid_order(
    channel: Channel,
    out_trade_no: &str,
    serial: u32,
    fen: u64,
    paid_at: DateTime<Utc>,
) -> SandboxOrder {
    SandboxOrder {
        channel,
        merchant_id: match channel {
            Channel::Wechat => MCH_ID.to_owned(),
            Channel::Alipay => APP_ID.to_owned(),
        },
        out_trade_no: out_trade_no.to_owned(),
        trade_no: format!("42000001202611220000{serial:08}"),
        amount_fen: fen,
        subject: "Coffee".to_owned(),
        auth_code_masked: "13**************00".to_owned(),
        code_suffix: "00".to_owned(),
        behaviour: Behaviour::PaidAtOnce,
        created_at: paid_at,
        state: SandboxOrderState::Paid { paid_at },
        refunds: Vec::new(),
    }
}

/// The sandbox's truth of the test day: P1 paid 12.34 and refunded twice,
/// P2 paid 8.00, V1 paid 5.00 then revoked (the revoke returns the money),
/// W1 still waiting for the password (on no statement).
fn truth(channel: Channel) -> Vec<SandboxOrder> {
    let mut p1 = paid_order(channel, "P1", 1, 1234, at(10, 0, 0));
    let mut refund_ids = 0;
    let mut refund_id = || {
        refund_ids += 1;
        format!("503000000{refund_ids}")
    };
    for (number, fen, when) in [("R1", 200, at(10, 30, 0)), ("R2", 334, at(11, 0, 0))] {
        let decision = p1.request_refund(number, fen, &mut refund_id, when);
        assert!(
            matches!(decision, RefundDecision::Accepted { new: true, .. }),
            "{decision:?}"
        );
    }
    let p2 = paid_order(channel, "P2", 2, 800, at(10, 5, 0));
    let mut v1 = paid_order(channel, "V1", 3, 500, at(10, 10, 0));
    assert_eq!(v1.revoke(at(10, 10, 30)), RevokeDecision::Refunded);
    let mut w1 = paid_order(channel, "W1", 4, 100, at(12, 0, 0));
    w1.behaviour = Behaviour::NeverPays;
    w1.state = SandboxOrderState::WaitingForPassword;
    vec![p1, p2, v1, w1]
}

/// What one row should say, from the sandbox's truth.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Expected {
    at: DateTime<Utc>,
    order_no: String,
    kind: StatementLineKind,
    channel_trade_no: String,
    amount: Money,
    refund_no: Option<String>,
}

/// Every money movement of `orders` on the test day. A revoke's refund
/// number is what each channel prints there: WeChat (the sandbox) the
/// order number, Alipay the trade's Alipay number (docs/rules.md).
fn expected(orders: &[SandboxOrder]) -> Vec<Expected> {
    let mut rows = Vec::new();
    for order in orders {
        let row = |kind, at, fen, refund_no| Expected {
            at,
            order_no: order.out_trade_no.clone(),
            kind,
            channel_trade_no: order.trade_no.clone(),
            amount: Money::from_fen(fen).unwrap(),
            refund_no,
        };
        if let Some(paid_at) = order.state.paid_at() {
            rows.push(row(
                StatementLineKind::Payment,
                paid_at,
                order.amount_fen,
                None,
            ));
        }
        for refund in &order.refunds {
            let SandboxRefundState::Succeeded { at } = refund.state(now()) else {
                panic!("every refund of the test day has succeeded");
            };
            let number = Some(refund.refund_no.clone());
            rows.push(row(
                StatementLineKind::Refund,
                at,
                refund.amount_fen,
                number,
            ));
        }
        if let SandboxOrderState::Reversed { reversed_at, .. } = order.state {
            let number = match order.channel {
                Channel::Wechat => order.out_trade_no.clone(),
                Channel::Alipay => order.trade_no.clone(),
            };
            rows.push(row(
                StatementLineKind::Reversal,
                reversed_at,
                order.amount_fen,
                Some(number),
            ));
        }
    }
    rows.sort();
    rows
}

fn actual(statement: &Statement) -> Vec<Expected> {
    let mut rows: Vec<Expected> = statement
        .rows
        .iter()
        .map(|row| Expected {
            at: row.at,
            order_no: row.order_no.clone(),
            kind: row.kind,
            channel_trade_no: row.channel_trade_no.clone(),
            amount: row.amount,
            refund_no: row.refund_no.clone(),
        })
        .collect();
    rows.sort();
    rows
}

fn merchant() -> WechatBillMerchant<'static> {
    WechatBillMerchant {
        appid: APPID,
        mch_id: MCH_ID,
    }
}

fn sandbox_bill(layout: WechatBillLayout, bill_type: WechatBillType) -> String {
    wechat_bill(
        merchant(),
        layout,
        bill_type,
        &truth(Channel::Wechat),
        day(),
        now(),
        &[],
    )
    .expect("the test day has lines")
}

fn sandbox_zip() -> Vec<u8> {
    alipay_bill_zip(APP_ID, &truth(Channel::Alipay), day(), now(), &[])
        .unwrap()
        .expect("the test day has lines")
}

// ---------------------------------------------------------------- fixtures

fn fixture_date() -> NaiveDate {
    NaiveDate::from_ymd_opt(2014, 11, 10).unwrap()
}

fn assert_fixture_rows(statement: &Statement) {
    assert_eq!(statement.channel, Channel::Wechat);
    assert_eq!(statement.date, fixture_date());
    assert_eq!(statement.rows.len(), 2);
    assert_eq!(
        statement.rows[0],
        StatementRow {
            line_no: 2,
            kind: StatementLineKind::Payment,
            order_no: "1415640626".to_owned(),
            channel_trade_no: "1001690740201411100005734289".to_owned(),
            refund_no: None,
            channel_refund_no: None,
            amount: money("0.01"),
            at: Utc.with_ymd_and_hms(2014, 11, 10, 8, 33, 45).unwrap(),
        }
    );
    assert_eq!(statement.rows[1].order_no, "1415635270");
    assert_eq!(statement.rows[1].line_no, 3);
    assert_eq!(
        statement.rows[1].at,
        Utc.with_ymd_and_hms(2014, 11, 10, 8, 46, 14).unwrap()
    );
}

#[test]
fn the_legacy_wxjava_bill_parses_into_its_two_payments() {
    let bill = testing::vector("wx_v2_bill_all_legacy_wxjava.txt");
    let statement = parse_wechat_bill(bill.as_bytes(), fixture_date()).unwrap();
    assert_fixture_rows(&statement);
}

#[test]
fn the_official_2014_bill_parses_despite_its_glued_date_and_full_width_colons() {
    let bill = testing::vector("wx_v2_bill_all_official_2014.txt");
    assert!(
        bill.contains("`2014-11-1016：33：45,"),
        "the fixture keeps its typo"
    );
    let statement = parse_wechat_bill(bill.as_bytes(), fixture_date()).unwrap();
    assert_fixture_rows(&statement);
}

// -------------------------------------------------------------- round trips

#[test]
fn every_sandbox_wechat_bill_round_trips_in_both_layouts_and_all_bill_types() {
    let truth_rows = expected(&truth(Channel::Wechat));
    assert_eq!(
        truth_rows.len(),
        6,
        "3 payments, 2 refunds, 1 revoke: {truth_rows:#?}"
    );
    for layout in [WechatBillLayout::Current, WechatBillLayout::Legacy] {
        for (bill_type, wanted) in [
            (WechatBillType::All, None),
            (WechatBillType::Success, Some(true)),
            (WechatBillType::Refund, Some(false)),
        ] {
            let bill = sandbox_bill(layout, bill_type);
            let statement = parse_wechat_bill(bill.as_bytes(), day())
                .unwrap_or_else(|error| panic!("{layout:?} {bill_type:?}: {error}\n{bill}"));
            assert_eq!(statement.channel, Channel::Wechat);
            let expected: Vec<Expected> = truth_rows
                .iter()
                .filter(|row| {
                    wanted
                        .is_none_or(|payments| (row.kind == StatementLineKind::Payment) == payments)
                })
                .cloned()
                .collect();
            assert_eq!(
                actual(&statement),
                expected,
                "{layout:?} {bill_type:?}\n{bill}"
            );
            for row in &statement.rows {
                let line = bill
                    .lines()
                    .nth(usize::try_from(row.line_no).unwrap() - 1)
                    .unwrap();
                assert!(
                    line.contains(&format!(",`{},", row.order_no)),
                    "line_no points at the row: {line}"
                );
                assert_eq!(
                    row.channel_refund_no.is_some(),
                    row.kind != StatementLineKind::Payment
                );
            }
        }
    }
}

#[test]
fn the_sandbox_alipay_zip_round_trips_with_the_revoke_as_a_reversal() {
    let orders = truth(Channel::Alipay);
    let statement = parse_alipay_zip(&sandbox_zip(), day()).unwrap();
    assert_eq!(statement.channel, Channel::Alipay);
    assert_eq!(statement.date, day());
    assert_eq!(actual(&statement), expected(&orders));
    let reversal = statement
        .rows
        .iter()
        .find(|row| row.kind == StatementLineKind::Reversal)
        .unwrap();
    assert_eq!(reversal.order_no, "V1");
    assert_eq!(reversal.amount, money("5.00"));
    assert_eq!(
        reversal.refund_no.as_deref(),
        Some(reversal.channel_trade_no.as_str())
    );
    assert_eq!(
        statement.rows[0].line_no, 6,
        "after 4 # lines and the column header"
    );
}

// --------------------------------------------------------------- rejections

fn current_all_bill() -> String {
    sandbox_bill(WechatBillLayout::Current, WechatBillType::All)
}

/// The bill with line `line_no` (from 1) replaced by `edit` of it.
fn edit_line(bill: &str, line_no: usize, edit: impl Fn(&str) -> String) -> String {
    bill.lines()
        .enumerate()
        .map(|(index, line)| {
            if index + 1 == line_no {
                edit(line)
            } else {
                line.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn a_wechat_bill_without_its_summary_is_truncated() {
    let bill = current_all_bill();
    let lines: Vec<&str> = bill.lines().collect();
    let cut = lines[..lines.len() - 2].join("\n");
    let error = parse_wechat_bill(cut.as_bytes(), day()).unwrap_err();
    assert!(matches!(error, StatementError::Truncated { .. }), "{error}");
    assert!(
        error.to_string().contains("summary (总交易单数)"),
        "{error}"
    );
    // Cut in the middle of a record: the summary is gone as well.
    let half = &bill.as_bytes()[..bill.len() / 2];
    let half = &half[..std::str::from_utf8(half).map_or_else(|e| e.valid_up_to(), str::len)];
    assert!(matches!(
        parse_wechat_bill(half, day()),
        Err(StatementError::Truncated { .. })
    ));
}

#[test]
fn a_wechat_summary_that_disagrees_with_the_rows_rejects_the_file() {
    let bill = current_all_bill();
    let last = bill.lines().count();
    let wrong_total = edit_line(&bill, last, |line| {
        let mut fields: Vec<&str> = line.split(',').collect();
        fields[5] = "`99.99";
        fields.join(",")
    });
    let error = parse_wechat_bill(wrong_total.as_bytes(), day()).unwrap_err();
    assert_eq!(
        error,
        StatementError::SummaryMismatch {
            line: u32::try_from(last).unwrap(),
            column: "订单总金额",
            stated: "99.99".to_owned(),
            computed: "25.34".to_owned(),
        }
    );
    assert_eq!(
        error.to_string(),
        format!(
            "line {last}, column 订单总金额: the statement says 99.99, its rows add up to 25.34"
        )
    );
    let wrong_count = edit_line(&bill, last, |line| line.replacen("`6,", "`7,", 1));
    let error = parse_wechat_bill(wrong_count.as_bytes(), day()).unwrap_err();
    assert!(
        matches!(&error, StatementError::SummaryMismatch { column: "总交易单数", stated, computed, .. } if stated == "7" && computed == "6"),
        "{error}"
    );
}

#[test]
fn a_wechat_line_with_a_column_too_few_is_rejected_naming_the_line() {
    let bill = edit_line(&current_all_bill(), 3, |line| {
        line.rsplit_once(",`").unwrap().0.to_owned()
    });
    let error = parse_wechat_bill(bill.as_bytes(), day()).unwrap_err();
    assert_eq!(
        error,
        StatementError::ColumnCount {
            line: 3,
            expected: 27,
            found: 26
        }
    );
    assert_eq!(
        error.to_string(),
        "line 3: 26 columns where the header has 27"
    );
}

#[test]
fn a_wechat_amount_with_three_decimals_is_rejected_naming_the_column() {
    let bill = edit_line(&current_all_bill(), 2, |line| {
        line.replace(",`12.34,", ",`12.345,")
    });
    let error = parse_wechat_bill(bill.as_bytes(), day()).unwrap_err();
    assert!(
        matches!(&error, StatementError::BadAmount { line: 2, column: "订单金额", value, .. } if value == "12.345"),
        "{error}"
    );
    assert_eq!(
        error.to_string(),
        "line 2, column 订单金额: \"12.345\" is not a valid amount (more than 2 decimals)"
    );
}

#[test]
fn a_gbk_encoded_wechat_bill_is_not_utf8_on_its_first_line() {
    let bill = current_all_bill();
    let (gbk, _, _) = encoding_rs::GBK.encode(&bill);
    let error = parse_wechat_bill(&gbk, day()).unwrap_err();
    assert_eq!(
        error,
        StatementError::Encoding {
            line: 1,
            encoding: "UTF-8"
        }
    );
    assert_eq!(error.to_string(), "line 1: not valid UTF-8");
}

#[test]
fn an_unknown_wechat_header_is_rejected() {
    let bill = edit_line(&current_all_bill(), 1, |line| {
        line.replace("费率备注", "备注")
    });
    assert!(matches!(
        parse_wechat_bill(bill.as_bytes(), day()),
        Err(StatementError::UnknownHeader { line: 1, .. })
    ));
}

/// A zip of `(name, bytes)` entries, deflated.
fn zip_of(entries: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut writer = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    for (name, bytes) in entries {
        writer.start_file(name.as_str(), options).unwrap();
        writer.write_all(bytes).unwrap();
    }
    writer.finish().unwrap().into_inner()
}

/// The sandbox zip's entries, `(name, raw GBK bytes)`.
fn sandbox_entries() -> Vec<(String, Vec<u8>)> {
    let zip = sandbox_zip();
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(zip)).unwrap();
    (0..archive.len())
        .map(|index| {
            let mut entry = archive.by_index(index).unwrap();
            let mut bytes = Vec::new();
            std::io::Read::read_to_end(&mut entry, &mut bytes).unwrap();
            (entry.name().to_owned(), bytes)
        })
        .collect()
}

/// The sandbox zip with its detail file's text edited.
fn zip_with_detail(edit: impl Fn(&str) -> String) -> Vec<u8> {
    let mut entries = sandbox_entries();
    let (text, _, _) = encoding_rs::GBK.decode(&entries[0].1);
    let edited = edit(&text);
    let (bytes, _, _) = encoding_rs::GBK.encode(&edited);
    entries[0].1 = bytes.into_owned();
    zip_of(&entries)
}

#[test]
fn an_alipay_detail_that_is_not_gbk_is_rejected_naming_the_line() {
    let mut entries = sandbox_entries();
    let detail = &mut entries[0].1;
    let second_row = detail
        .iter()
        .enumerate()
        .filter(|(_, b)| **b == b'\n')
        .nth(5)
        .unwrap()
        .0;
    detail[second_row + 3] = 0xFF;
    let error = parse_alipay_zip(&zip_of(&entries), day()).unwrap_err();
    assert_eq!(
        error,
        StatementError::Encoding {
            line: 7,
            encoding: "GBK"
        }
    );
    let garbage: Vec<u8> = (0u8..=255).cycle().take(4096).collect();
    let entries = [(
        "20880000000000010156_20261122_业务明细.csv".to_owned(),
        garbage,
    )];
    assert!(matches!(
        parse_alipay_zip(&zip_of(&entries), day()),
        Err(StatementError::Encoding {
            encoding: "GBK",
            ..
        })
    ));
}

#[test]
fn an_alipay_footer_that_disagrees_with_the_rows_rejects_the_file() {
    let zip =
        zip_with_detail(|text| text.replace("商家实收退款共-10.34元", "商家实收退款共-10.33元"));
    let error = parse_alipay_zip(&zip, day()).unwrap_err();
    assert!(
        matches!(
            &error,
            StatementError::SummaryMismatch {
                column: "商家实收退款共",
                ..
            }
        ),
        "{error}"
    );
    assert!(
        error
            .to_string()
            .starts_with("line 14, column 商家实收退款共: the statement says -10.33"),
        "{error}"
    );
}

#[test]
fn an_alipay_detail_without_its_footer_is_truncated() {
    let zip = zip_with_detail(|text| {
        text.lines()
            .take_while(|line| !line.contains("业务明细列表结束"))
            .collect::<Vec<_>>()
            .join("\n")
    });
    let error = parse_alipay_zip(&zip, day()).unwrap_err();
    assert!(matches!(error, StatementError::Truncated { .. }), "{error}");
    assert!(error.to_string().contains("业务明细列表结束"), "{error}");
}

#[test]
fn an_alipay_row_with_a_bad_amount_or_column_count_is_rejected_naming_the_line() {
    let zip = zip_with_detail(|text| text.replacen(",12.34,12.34,", ",12.3x,12.34,", 1));
    let error = parse_alipay_zip(&zip, day()).unwrap_err();
    assert!(
        matches!(
            &error,
            StatementError::BadAmount {
                line: 6,
                column: "订单金额（元）",
                ..
            }
        ),
        "{error}"
    );
    let zip = zip_with_detail(|text| text.replacen(",12.34,12.34,", ",12.34,", 1));
    let error = parse_alipay_zip(&zip, day()).unwrap_err();
    assert_eq!(
        error,
        StatementError::ColumnCount {
            line: 6,
            expected: 25,
            found: 24
        }
    );
}

#[test]
fn a_zip_with_too_many_entries_is_refused_before_reading_any() {
    let entries: Vec<(String, Vec<u8>)> = (0..17)
        .map(|index| (format!("{index}_业务明细.csv"), b"#".to_vec()))
        .collect();
    let error = parse_alipay_zip(&zip_of(&entries), day()).unwrap_err();
    assert_eq!(
        error,
        StatementError::ZipTooManyEntries {
            entries: 17,
            entries_max: 16
        }
    );
    assert_eq!(
        error.to_string(),
        "the statement zip has 17 entries, more than the 16 allowed"
    );
}

#[test]
fn a_zip_bomb_entry_is_cut_at_the_limit() {
    let name = "20880000000000010156_20261122_业务明细.csv".to_owned();
    let bomb = zip_of(&[(name.clone(), vec![b'#'; 4 << 20])]);
    assert!(
        bomb.len() < 64 * 1024,
        "highly compressible: {} bytes",
        bomb.len()
    );
    let limits = AlipayZipLimits {
        entry_bytes_max: 1 << 20,
        ..AlipayZipLimits::default()
    };
    let error = parse_alipay_zip_with_limits(&bomb, day(), &limits).unwrap_err();
    assert_eq!(
        error,
        StatementError::ZipEntryTooLarge {
            name: name.clone(),
            bytes_max: 1 << 20
        }
    );
    assert!(error.to_string().contains(&name), "{error}");
    let small = AlipayZipLimits {
        zip_bytes_max: 1024,
        ..AlipayZipLimits::default()
    };
    assert!(matches!(
        parse_alipay_zip_with_limits(&bomb, day(), &small),
        Err(StatementError::ZipTooLarge {
            bytes_max: 1024,
            ..
        })
    ));
}

#[test]
fn a_zip_without_a_detail_file_or_not_a_zip_is_rejected() {
    let summary_only: Vec<_> = sandbox_entries()
        .into_iter()
        .filter(|(name, _)| name.contains("汇总"))
        .collect();
    assert_eq!(summary_only.len(), 1);
    let error = parse_alipay_zip(&zip_of(&summary_only), day()).unwrap_err();
    assert_eq!(
        error,
        StatementError::NoDetailFile {
            names: vec!["20880000000000010156_20261122_业务明细(汇总).csv".to_owned()]
        }
    );
    assert!(error.to_string().contains("业务明细(汇总).csv"), "{error}");
    let error = parse_alipay_zip(b"PK not really", day()).unwrap_err();
    assert!(matches!(error, StatementError::Zip { .. }), "{error}");
}
