//! Reconciliation end to end: a day of traffic through the real service and
//! the sandbox, then `POST /v1/reconciliations` downloads the day's statement
//! over the channel's real API, matches it and imports the result.
//!
//! - a clean day reconciles with zero findings on both channels, records
//!   `StatementLineMatched` on the orders and the report once: importing
//!   the same statement again appends nothing;
//! - planted statement defects give exactly the expected findings;
//! - an uploaded statement is reconciled the same way, and a damaged one
//!   is rejected whole with nothing written;
//! - several days without a trade in a row (each the same empty statement)
//!   reconcile each with its own recorded report.

use std::collections::BTreeSet;

use paycode_adapters::channel::StatementFile;
use paycode_domain::Channel;
use paycode_sandbox::{Faults, StatementDefect};
use paycode_tests::{DEMO_KEY, SandboxApp, start_time};
use serde_json::Value;

const DAY: &str = "2026-11-22";
const WECHAT_MCH_ID: &str = "1900000000";
const ALIPAY_APP_ID: &str = "2021000000000000";

fn code(channel: Channel, suffix: &str) -> String {
    match channel {
        Channel::Wechat => format!("1345678901234567{suffix}"),
        Channel::Alipay => format!("28456789012345{suffix}"),
    }
}

fn sandbox_merchant(channel: Channel) -> &'static str {
    match channel {
        Channel::Wechat => WECHAT_MCH_ID,
        Channel::Alipay => ALIPAY_APP_ID,
    }
}

/// Moves the clock until the order has nothing left to do.
async fn settle(app: &SandboxApp, order: &str) -> Value {
    for _ in 0..600 {
        let (status, payment) = app
            .app
            .call("GET", &format!("/v1/payments/{order}"), None)
            .await;
        assert_eq!(status, 200, "{payment}");
        if payment["pending_action"].is_null() && payment["status"] != "paying" {
            return payment;
        }
        app.app.clock.advance(chrono::Duration::seconds(1));
        tokio::time::sleep(std::time::Duration::from_millis(3)).await;
    }
    panic!("{order} did not settle");
}

/// A day's mix on one channel: paid at once, paid after the password, a
/// failure, an unknown answer that turns out paid, a merchant revoke of a
/// paid order (money returned), a partial refund and a slow full refund.
/// Returns the order numbers and how many statement lines they make.
async fn a_day_of_traffic(app: &SandboxApp, channel: Channel) -> (Vec<String>, u64) {
    let prefix = channel.as_str().to_uppercase();
    let orders: Vec<(String, &str)> = ["00", "01", "03", "04", "00", "00", "09"]
        .iter()
        .enumerate()
        .map(|(n, suffix)| (format!("{prefix}{n}"), *suffix))
        .collect();
    for (order, suffix) in &orders {
        let body = format!(
            r#"{{"order_no":"{order}","auth_code":"{}","amount":"25.00","subject":"Recon"}}"#,
            code(channel, suffix)
        );
        let (status, created) = app.app.call("POST", "/v1/payments", Some(&body)).await;
        assert_eq!(status, 201, "{order}: {created}");
        settle(app, order).await;
    }
    // Order 4: revoked by the merchant after payment (the money goes back).
    let (status, revoked) = app
        .app
        .call(
            "POST",
            &format!("/v1/payments/{prefix}4/revoke"),
            Some("{}"),
        )
        .await;
    assert_eq!(status, 202, "{revoked}");
    assert_eq!(
        settle(app, &format!("{prefix}4")).await["status"],
        "reversed"
    );
    // Orders 5 and 6: refunds (6 is slow: processing 20 s first).
    for (order, amount) in [
        (format!("{prefix}5"), "5.00"),
        (format!("{prefix}6"), "25.00"),
    ] {
        let body = format!(r#"{{"refund_no":"{order}R1","amount":"{amount}","reason":"recon"}}"#);
        let (status, refund) = app
            .app
            .call(
                "POST",
                &format!("/v1/payments/{order}/refunds"),
                Some(&body),
            )
            .await;
        assert_eq!(status, 201, "{refund}");
    }
    for _ in 0..60 {
        app.app.clock.advance(chrono::Duration::seconds(1));
        tokio::time::sleep(std::time::Duration::from_millis(3)).await;
    }
    assert_eq!(
        settle(app, &format!("{prefix}5")).await["status"],
        "partially_refunded"
    );
    assert_eq!(
        settle(app, &format!("{prefix}6")).await["status"],
        "refunded"
    );
    // The statement lines this makes:
    let paid = 6; // orders 0, 1, 3, 4, 5, 6 (order 2 failed)
    let reversal = 1; // order 4
    let refunds = 2; // orders 5 and 6
    (
        orders.into_iter().map(|(order, _)| order).collect(),
        paid + reversal + refunds,
    )
}

async fn reconcile(app: &SandboxApp, channel: Channel) -> (u16, Value) {
    app.app
        .call(
            "POST",
            "/v1/reconciliations",
            Some(&format!(
                r#"{{"channel":"{}","date":"{DAY}"}}"#,
                channel.as_str()
            )),
        )
        .await
}

fn finding_keys(report: &Value) -> BTreeSet<(String, String)> {
    report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|finding| {
            (
                finding["kind"].as_str().unwrap().to_owned(),
                finding["order_no"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect()
}

async fn clean_day(channel: Channel) {
    let app = SandboxApp::spawn().await;
    let (orders, lines) = a_day_of_traffic(&app, channel).await;

    let (status, report) = reconcile(&app, channel).await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["findings"], serde_json::json!([]), "{report}");
    assert_eq!(report["statement_lines"], lines, "{report}");
    assert_eq!(report["matched"], lines, "{report}");
    assert_eq!(report["lines_recorded"], lines, "{report}");
    assert_eq!(report["report_recorded"], true);
    assert_eq!(report["channel"], channel.as_str());
    assert_eq!(report["date"], DAY);

    // Each paid order's history shows which statement confirmed it.
    for order in &orders {
        let (_, history) = app
            .app
            .call("GET", &format!("/v1/payments/{order}/events"), None)
            .await;
        let matched = history["events"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|event| event["type"] == "StatementLineMatched")
            .count();
        let expected = match order.chars().last().unwrap() {
            '2' => 0,
            '4' | '5' | '6' => 2,
            _ => 1,
        };
        assert_eq!(matched, expected, "{order}: {history}");
    }

    // The same statement again: the same report, nothing appended anywhere.
    let head = app.app.store.head_position().await.unwrap();
    let (status, again) = reconcile(&app, channel).await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["report_recorded"], false);
    assert_eq!(again["lines_recorded"], 0);
    assert_eq!(again["findings"], report["findings"]);
    assert_eq!(app.app.store.head_position().await.unwrap(), head);

    let (status, stored) = app
        .app
        .call(
            "GET",
            &format!("/v1/reconciliations/{}/{DAY}", channel.as_str()),
            None,
        )
        .await;
    assert_eq!(status, 200, "{stored}");
    assert_eq!(stored["matched"], lines);
    assert_eq!(stored["statement_sha256"], report["statement_sha256"]);
    let (status, _) = app
        .app
        .call(
            "GET",
            &format!("/v1/reconciliations/{}/2026-11-23", channel.as_str()),
            None,
        )
        .await;
    assert_eq!(status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clean_wechat_day_reconciles_with_zero_findings_and_imports_once() {
    clean_day(Channel::Wechat).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clean_alipay_day_reconciles_with_zero_findings_and_imports_once() {
    clean_day(Channel::Alipay).await;
}

async fn planted_defects(channel: Channel) {
    let prefix = channel.as_str().to_uppercase();
    let date = start_time().date_naive();
    let faults = Faults {
        statement_defects: vec![
            StatementDefect::MissingLine {
                out_trade_no: format!("{prefix}0"),
            },
            StatementDefect::ExtraLine {
                date,
                out_trade_no: "GHOST1".into(),
                amount_fen: 1234,
            },
            StatementDefect::ChangedAmount {
                out_trade_no: format!("{prefix}1"),
                amount_fen: 2400,
            },
            StatementDefect::DuplicatedLine {
                out_trade_no: format!("{prefix}3"),
            },
        ],
        ..Faults::default()
    };
    let app = SandboxApp::spawn_with_faults(faults).await;
    a_day_of_traffic(&app, channel).await;
    let (status, report) = reconcile(&app, channel).await;
    assert_eq!(status, 200, "{report}");
    let expected: BTreeSet<(String, String)> = [
        ("amount_mismatch", format!("{prefix}1")),
        ("duplicate_line", format!("{prefix}3")),
        ("missing_in_ledger", "GHOST1".to_owned()),
        ("missing_in_statement", format!("{prefix}0")),
    ]
    .into_iter()
    .map(|(kind, order)| (kind.to_owned(), order))
    .collect();
    assert_eq!(finding_keys(&report), expected, "{report}");
    let changed = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|finding| finding["kind"] == "amount_mismatch")
        .unwrap();
    assert_eq!(changed["ledger_amount"], "25.00", "{changed}");
    assert_eq!(changed["statement_amount"], "24.00", "{changed}");

    // The reconciliation-diffs read model, rebuilt from the log, holds the same findings.
    let head = app.app.store.head_position().await.unwrap();
    let (projections, _) = paycode::read::rebuild::rebuild(
        app.app.store.as_ref(),
        head,
        &indicatif::ProgressBar::hidden(),
    )
    .await
    .unwrap();
    let diffs: BTreeSet<(String, String)> = projections
        .reconciliation_diffs
        .rows()
        .iter()
        .map(|(key, row)| {
            assert_eq!((key.channel, key.date), (channel, date));
            assert_eq!(row.statement_sha256, report["statement_sha256"]);
            let order_no = row.finding.order_no.clone().unwrap_or_default();
            (row.finding.kind.as_str().to_owned(), order_no)
        })
        .collect();
    assert_eq!(diffs, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn planted_wechat_statement_defects_give_exactly_their_findings() {
    planted_defects(Channel::Wechat).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn planted_alipay_statement_defects_give_exactly_their_findings() {
    planted_defects(Channel::Alipay).await;
}

async fn upload(app: &SandboxApp, channel: Channel, body: Vec<u8>) -> (u16, Value) {
    let content_type = match channel {
        Channel::Wechat => "text/csv",
        Channel::Alipay => "application/zip",
    };
    let response = app
        .app
        .http
        .post(format!(
            "{}/v1/reconciliations?channel={}&date={DAY}",
            app.app.base_url,
            channel.as_str()
        ))
        .bearer_auth(DEMO_KEY)
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_uploaded_statement_reconciles_and_a_damaged_one_is_rejected_whole() {
    let app = SandboxApp::spawn().await;
    for channel in [Channel::Wechat, Channel::Alipay] {
        let (_, lines) = a_day_of_traffic(&app, channel).await;
        let file = app
            .sandbox
            .statement(
                channel,
                sandbox_merchant(channel),
                start_time().date_naive(),
            )
            .unwrap();
        let bytes = match file {
            StatementFile::WechatText(text) => text.into_bytes(),
            StatementFile::AlipayZip(zip) => zip,
            StatementFile::NoStatement { code } => panic!("no statement: {code}"),
        };

        // Damaged: cut in the middle. Rejected whole, nothing written.
        let head = app.app.store.head_position().await.unwrap();
        let (status, error) = upload(&app, channel, bytes[..bytes.len() * 2 / 3].to_vec()).await;
        assert_eq!(status, 422, "{error}");
        assert_eq!(error["error"]["field"], "statement", "{error}");
        assert_eq!(error["error"]["code"], "statement_rejected", "{error}");
        assert_eq!(app.app.store.head_position().await.unwrap(), head);

        let (status, report) = upload(&app, channel, bytes).await;
        assert_eq!(status, 200, "{report}");
        assert_eq!(report["findings"], serde_json::json!([]), "{report}");
        assert_eq!(report["matched"], lines, "{report}");
    }
    // The wrong content type for the channel names the field.
    let (status, error) = upload(&app, Channel::Alipay, b"not a zip".to_vec()).await;
    assert_eq!(status, 422, "{error}");
    let response = app
        .app
        .http
        .post(format!(
            "{}/v1/reconciliations?channel=alipay&date={DAY}",
            app.app.base_url
        ))
        .bearer_auth(DEMO_KEY)
        .header("content-type", "text/csv")
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 422);
    let error: Value = response.json().await.unwrap();
    assert_eq!(error["error"]["field"], "content_type", "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_import_at_a_time_per_merchant_and_uploads_over_the_limit_are_refused_unread() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let app = SandboxApp::spawn().await;
    let address = app.app.base_url.trim_start_matches("http://").to_owned();
    // An upload under way: its head and part of its body, the rest withheld.
    let mut slow = tokio::net::TcpStream::connect(&address).await.unwrap();
    slow.write_all(
        format!(
            "POST /v1/reconciliations?channel=wechat&date={DAY} HTTP/1.1\r\nHost: paycode\r\n\
             Authorization: Bearer {DEMO_KEY}\r\nContent-Type: text/csv\r\n\
             Content-Length: 1000\r\n\r\nabc"
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let response = app
        .app
        .http
        .post(format!("{}/v1/reconciliations", app.app.base_url))
        .bearer_auth(DEMO_KEY)
        .json(&serde_json::json!({"channel": "wechat", "date": DAY}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 409);
    assert_eq!(response.headers()["retry-after"], "1");
    let error: Value = response.json().await.unwrap();
    assert_eq!(
        error["error"]["code"], "reconciliation_in_progress",
        "{error}"
    );
    // Another merchant is not held up.
    let (status, _) = app
        .app
        .call_as(
            Some(paycode_tests::OTHER_KEY),
            "POST",
            "/v1/reconciliations",
            Some(r#"{"channel":"wechat","date":"2026-11-22"}"#),
        )
        .await;
    assert_ne!(status, 409);
    // The first import ends (its client gives up): the next one runs.
    drop(slow);
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let (status, report) = reconcile(&app, Channel::Wechat).await;
    assert_eq!(status, 200, "{report}");

    // Over 256 MiB by its Content-Length: 413 before a byte of it is read.
    let mut big = tokio::net::TcpStream::connect(&address).await.unwrap();
    big.write_all(
        format!(
            "POST /v1/reconciliations?channel=wechat&date={DAY} HTTP/1.1\r\nHost: paycode\r\n\
             Authorization: Bearer {DEMO_KEY}\r\nContent-Type: text/csv\r\n\
             Content-Length: 268435457\r\n\r\n"
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let mut answer = vec![0u8; 4096];
    let read = tokio::time::timeout(std::time::Duration::from_secs(5), big.read(&mut answer))
        .await
        .expect("answered at once")
        .unwrap();
    let answer = String::from_utf8_lossy(&answer[..read]);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains("body_too_large"), "{answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_reconciliation_requests_name_the_field_and_write_nothing() {
    let app = SandboxApp::spawn().await;
    for (body, field) in [
        (r#"{"channel":"paypal","date":"2026-11-22"}"#, "channel"),
        (r#"{"channel":"wechat","date":"22/11/2026"}"#, "date"),
        (r#"{"channel":"wechat"}"#, "date"),
    ] {
        let (status, error) = app
            .app
            .call("POST", "/v1/reconciliations", Some(body))
            .await;
        assert_eq!(status, 422, "{body}: {error}");
        assert_eq!(error["error"]["field"], field, "{body}: {error}");
    }
    let (status, _) = app
        .app
        .call(
            "POST",
            "/v1/reconciliations",
            Some(r#"{"channel":"wechat","date":"2026-11-22","extra":1}"#),
        )
        .await;
    assert_eq!(status, 400);
    let (status, _) = app
        .app
        .call_as(None, "GET", "/v1/reconciliations/wechat/2026-11-22", None)
        .await;
    assert_eq!(status, 401);
    assert_eq!(app.app.store.head_position().await.unwrap(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_empty_days_in_a_row_reconcile_each_with_its_own_report() {
    // Days without a trade: WeChat answers "No Bill Exist" and Alipay
    // bill_not_exist, the same bytes every day, so every such day has the
    // same statement SHA-256. Each day must still answer 200 and record its
    // own report on its own stream (the report's id once collided across
    // days and answered 500). The uploaded "No Bill Exist" answer is an
    // empty statement too, not a rejected file.
    let app = SandboxApp::spawn().await;
    let days = ["2026-11-17", "2026-11-18", "2026-11-19", "2026-11-20"];
    for channel in [Channel::Wechat, Channel::Alipay] {
        let mut hashes = BTreeSet::new();
        for day in days {
            let head = app.app.store.head_position().await.unwrap();
            let (status, report) = app
                .app
                .call(
                    "POST",
                    "/v1/reconciliations",
                    Some(&format!(
                        r#"{{"channel":"{}","date":"{day}"}}"#,
                        channel.as_str()
                    )),
                )
                .await;
            assert_eq!(status, 200, "{channel:?} {day}: {report}");
            assert_eq!(report["report_recorded"], true, "{day}: {report}");
            assert_eq!(report["statement_lines"], 0, "{day}: {report}");
            assert_eq!(report["findings"], serde_json::json!([]), "{day}: {report}");
            assert_eq!(report["date"], day);
            hashes.insert(report["statement_sha256"].as_str().unwrap().to_owned());
            // Exactly one event: the day's report, on the day's stream.
            assert_eq!(app.app.store.head_position().await.unwrap(), head + 1);
            let stream = format!("reconciliation-demo-{}-{day}", channel.as_str());
            let recorded = app.app.store.read_stream(&stream).await.unwrap();
            assert_eq!(recorded.len(), 1, "{stream}");
        }
        assert_eq!(hashes.len(), 1, "the same empty statement every day");
        for day in days {
            let (status, stored) = app
                .app
                .call(
                    "GET",
                    &format!("/v1/reconciliations/{}/{day}", channel.as_str()),
                    None,
                )
                .await;
            assert_eq!(status, 200, "{day}: {stored}");
            assert_eq!(stored["date"], day);
            assert_eq!(stored["statement_lines"], 0);
        }
    }

    // The WeChat answer for a day without a bill, uploaded as the statement.
    let no_bill = "<xml><return_code><![CDATA[FAIL]]></return_code>\
                   <return_msg><![CDATA[No Bill Exist]]></return_msg></xml>";
    for day in ["2026-11-10", "2026-11-11"] {
        let response = app
            .app
            .http
            .post(format!(
                "{}/v1/reconciliations?channel=wechat&date={day}",
                app.app.base_url
            ))
            .bearer_auth(DEMO_KEY)
            .header("content-type", "text/csv")
            .body(no_bill)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 200, "{day}");
        let report: Value = response.json().await.unwrap();
        assert_eq!(report["report_recorded"], true, "{day}: {report}");
        assert_eq!(report["statement_lines"], 0, "{day}: {report}");
    }
}
