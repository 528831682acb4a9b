//! Operators' resolutions over HTTP, black box (docs/api.md, "Operator
//! resolution"): the real router on 127.0.0.1 port 0, a manual clock,
//! scripted channels. Orders reach manual review with code `07` (every
//! revoke asks for a retry), refunds with a refund number starting `NF`
//! (the channel never finds it). Each test's first line says what it shows.

use chrono::{DateTime, Utc};
use paycode_adapters::clock::Clock;
use paycode_tests::{DEMO_KEY, OTHER_KEY, TestApp};
use serde_json::Value;

const PAID_WECHAT: &str = "134567890123456700";
const RETRY_WECHAT: &str = "134567890123456707";

fn payment(order_no: &str, code: &str, amount: &str) -> String {
    format!(
        r#"{{"order_no":"{order_no}","auth_code":"{code}","amount":"{amount}","subject":"Coffee"}}"#
    )
}

/// An order `order_no` whose revokes kept asking for a retry: in manual review.
async fn in_review(app: &TestApp, order_no: &str) {
    let (status, body) = app
        .call(
            "POST",
            "/v1/payments",
            Some(&payment(order_no, RETRY_WECHAT, "8.00")),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    app.settle(order_no, "manual_review", 5).await;
    assert_eq!(app.wechat.count("revoke", order_no), 5);
}

/// A paid order of 10.00.
async fn paid(app: &TestApp, order_no: &str) {
    let (status, body) = app
        .call(
            "POST",
            "/v1/payments?wait=5",
            Some(&payment(order_no, PAID_WECHAT, "10.00")),
        )
        .await;
    assert_eq!(
        (status, &body["status"]),
        (201, &Value::from("paid")),
        "{body}"
    );
}

/// The order's events, oldest first.
async fn events(app: &TestApp, order_no: &str) -> Vec<Value> {
    let (status, body) = app
        .call("GET", &format!("/v1/payments/{order_no}/events"), None)
        .await;
    assert_eq!(status, 200, "{body}");
    body["events"].as_array().unwrap().clone()
}

/// Polls the refund until `status`, moving the clock a second at a time.
async fn refund_reaches(app: &TestApp, order_no: &str, refund_no: &str, status: &str) -> Value {
    let path = format!("/v1/payments/{order_no}/refunds/{refund_no}");
    for _ in 0..400 {
        let (code, body) = app.call("GET", &path, None).await;
        if code == 200 && body["status"] == status {
            return body;
        }
        app.clock.advance(chrono::Duration::seconds(1));
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    panic!("{refund_no} never reached {status}");
}

/// The order numbers of the operators' queue (`?status=manual_review`)
/// once they are `expected`, or as they last were after five seconds: the
/// list follows the log, so it may lag a write by a moment.
async fn queue_becomes(app: &TestApp, expected: &[&str]) -> Vec<String> {
    let mut queued = Vec::new();
    for _ in 0..1000 {
        let (status, page) = app
            .call("GET", "/v1/payments?status=manual_review", None)
            .await;
        assert_eq!(status, 200, "{page}");
        queued = page["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|payment| payment["order_no"].as_str().unwrap().to_owned())
            .collect();
        if queued == expected {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    queued
}

fn time(value: &Value) -> DateTime<Utc> {
    value.as_str().unwrap().parse().unwrap()
}

#[tokio::test]
async fn an_order_in_review_resolved_paid_is_paid_names_the_key_and_is_left_alone() {
    // 200 with the payment, paid at the time of the resolution; OperatorResolved names api_keys[0], never the key; no more channel calls.
    let app = TestApp::spawn().await;
    in_review(&app, "R7").await;
    assert_eq!(queue_becomes(&app, &["R7"]).await, ["R7"]);
    let resolved_at = app.clock.now();
    let (status, body) = app
        .call(
            "POST",
            "/v1/payments/R7/resolve",
            Some(r#"{"outcome":"paid","channel_trade_no":"4200000777","reason":"paid per the WeChat merchant platform"}"#),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "paid");
    assert_eq!(body["channel_trade_no"], "4200000777");
    assert_eq!(time(&body["paid_at"]), resolved_at);
    assert_eq!(body["pending_action"], Value::Null);

    let history = events(&app, "R7").await;
    let last = history.last().unwrap();
    assert_eq!(last["type"], "OperatorResolved");
    assert_eq!(last["status_after"], "paid");
    assert_eq!(last["data"]["resolved_by"], "api_keys[0]");
    assert_eq!(
        last["data"]["note"],
        "paid per the WeChat merchant platform"
    );
    assert_eq!(last["data"]["resolution"]["verdict"], "paid");
    assert_eq!(last["data"]["resolution"]["channel_trade_no"], "4200000777");
    assert!(
        !Value::Array(history.clone()).to_string().contains(DEMO_KEY),
        "the key itself is never recorded"
    );

    // The order leaves the operators' queue.
    assert!(queue_becomes(&app, &[]).await.is_empty());

    // The runtime does not act on a resolved order: an hour later, no more calls.
    let calls = app.wechat.calls.lock().unwrap().len();
    for _ in 0..60 {
        app.clock.advance(chrono::Duration::seconds(60));
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    }
    assert_eq!(app.wechat.calls.lock().unwrap().len(), calls);
    assert_eq!(events(&app, "R7").await.len(), history.len());

    // Once resolved it is no longer in review.
    let (status, body) = app
        .call(
            "POST",
            "/v1/payments/R7/resolve",
            Some(r#"{"outcome":"not_paid","reason":"again"}"#),
        )
        .await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (409, &Value::from("not_in_review")),
        "{body}"
    );
    // A paid order can now be refunded like any other.
    let (status, body) = app
        .call(
            "POST",
            "/v1/payments/R7/refunds",
            Some(r#"{"refund_no":"R1","amount":"8.00"}"#),
        )
        .await;
    assert_eq!(status, 201, "{body}");
}

#[tokio::test]
async fn a_resolution_needs_a_reason_and_a_strict_body_and_a_refused_one_writes_nothing() {
    // 422 naming reason when missing or blank; 400 for unknown fields; 422 naming the field otherwise; then not_paid closes it.
    let app = TestApp::spawn().await;
    in_review(&app, "R8").await;
    let head = app.store.head_position().await.unwrap();
    let cases: Vec<(&str, u16, &str, Option<&str>)> = vec![
        (
            r#"{"outcome":"paid","channel_trade_no":"42"}"#,
            422,
            "missing_reason",
            Some("reason"),
        ),
        (
            r#"{"outcome":"not_paid","reason":null}"#,
            422,
            "missing_reason",
            Some("reason"),
        ),
        (
            r#"{"outcome":"not_paid","reason":"   "}"#,
            422,
            "invalid_reason",
            Some("reason"),
        ),
        (
            r#"{"outcome":"not_paid","reason":7}"#,
            422,
            "invalid_reason",
            Some("reason"),
        ),
        (
            r#"{"outcome":"not_paid","reason":"x","note":"y"}"#,
            400,
            "unknown_field",
            Some("note"),
        ),
        (
            r#"{"outcome":"not_paid","reason":"x","refunded_at":"2026-11-22T02:00:00Z"}"#,
            400,
            "unknown_field",
            Some("refunded_at"),
        ),
        (r#"{"reason":"x"}"#, 422, "missing_outcome", Some("outcome")),
        (
            r#"{"outcome":"maybe","reason":"x"}"#,
            422,
            "invalid_outcome",
            Some("outcome"),
        ),
        (
            r#"{"outcome":"succeeded","reason":"x"}"#,
            422,
            "invalid_outcome",
            Some("outcome"),
        ),
        (
            r#"{"outcome":"paid","reason":"x"}"#,
            422,
            "missing_channel_trade_no",
            Some("channel_trade_no"),
        ),
        (
            r#"{"outcome":"paid","channel_trade_no":"42 00","reason":"x"}"#,
            422,
            "invalid_channel_trade_no",
            Some("channel_trade_no"),
        ),
        (
            r#"{"outcome":"not_paid","channel_trade_no":"42","reason":"x"}"#,
            422,
            "invalid_channel_trade_no",
            Some("channel_trade_no"),
        ),
        (
            r#"{"outcome":"paid","channel_trade_no":"42","paid_at":"soon","reason":"x"}"#,
            422,
            "invalid_paid_at",
            Some("paid_at"),
        ),
        (
            r#"{"outcome":"paid","channel_trade_no":"42","paid_at":"2030-01-01T00:00:00Z","reason":"x"}"#,
            422,
            "invalid_paid_at",
            Some("paid_at"),
        ),
        (
            r#"{"outcome":"paid","channel_trade_no":"42","paid_at":"2026-11-22T01:59:59Z","reason":"x"}"#,
            422,
            "invalid_paid_at",
            Some("paid_at"),
        ),
        ("{", 400, "malformed_request", None),
        ("[]", 400, "malformed_request", None),
    ];
    for (body, expected_status, expected_code, expected_field) in cases {
        let (status, answer) = app
            .call("POST", "/v1/payments/R8/resolve", Some(body))
            .await;
        assert_eq!(
            (status, answer["error"]["code"].as_str()),
            (expected_status, Some(expected_code)),
            "{body} -> {answer}"
        );
        assert_eq!(
            answer["error"]["field"].as_str(),
            expected_field,
            "{body} -> {answer}"
        );
    }
    assert_eq!(
        app.store.head_position().await.unwrap(),
        head,
        "nothing was written"
    );

    // No money is known to have moved: not_paid closes it.
    let (status, body) = app
        .call(
            "POST",
            "/v1/payments/R8/resolve",
            Some(r#"{"outcome":"not_paid","reason":"WeChat shows the order revoked"}"#),
        )
        .await;
    assert_eq!(
        (status, &body["status"]),
        (200, &Value::from("closed")),
        "{body}"
    );
    let last = events(&app, "R8").await.pop().unwrap();
    assert_eq!(last["data"]["resolution"]["verdict"], "closed");
    assert_eq!(last["data"]["note"], "WeChat shows the order revoked");
}

#[tokio::test]
async fn only_an_order_in_review_of_ones_own_merchant_is_resolved() {
    // Paid order: 409 not_in_review; unknown order or another merchant's: 404; no key: 401.
    let app = TestApp::spawn().await;
    paid(&app, "P1").await;
    in_review(&app, "R9").await;
    let body = r#"{"outcome":"not_paid","reason":"checked"}"#;
    let (status, answer) = app
        .call("POST", "/v1/payments/P1/resolve", Some(body))
        .await;
    assert_eq!(
        (status, &answer["error"]["code"]),
        (409, &Value::from("not_in_review")),
        "{answer}"
    );
    let (status, answer) = app
        .call("POST", "/v1/payments/NOPE/resolve", Some(body))
        .await;
    assert_eq!(
        (status, &answer["error"]["code"]),
        (404, &Value::from("order_not_found"))
    );
    let (status, answer) = app
        .call_as(
            Some(OTHER_KEY),
            "POST",
            "/v1/payments/R9/resolve",
            Some(body),
        )
        .await;
    assert_eq!(
        (status, &answer["error"]["code"]),
        (404, &Value::from("order_not_found"))
    );
    let (status, _) = app
        .call_as(None, "POST", "/v1/payments/R9/resolve", Some(body))
        .await;
    assert_eq!(status, 401);
    let (_, still) = app.call("GET", "/v1/payments/R9", None).await;
    assert_eq!(still["status"], "manual_review");
}

#[tokio::test]
async fn a_revoked_order_is_for_the_statement_not_an_operator() {
    // `revoked` (the revoke did not say whether money moved) is settled by the day's statement: 409 not_in_review.
    let app = TestApp::spawn().await;
    let (status, body) = app
        .call(
            "POST",
            "/v1/payments",
            Some(&payment("V1", "134567890123456711", "8.00")),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    app.settle("V1", "revoked", 5).await;
    let head = app.store.head_position().await.unwrap();
    for verdict in [
        r#"{"outcome":"not_paid","reason":"WeChat shows it revoked"}"#,
        r#"{"outcome":"paid","channel_trade_no":"4200000001","reason":"paid"}"#,
    ] {
        let (status, answer) = app
            .call("POST", "/v1/payments/V1/resolve", Some(verdict))
            .await;
        assert_eq!(
            (status, &answer["error"]["code"]),
            (409, &Value::from("not_in_review")),
            "{answer}"
        );
    }
    assert_eq!(app.store.head_position().await.unwrap(), head);
    let (_, still) = app.call("GET", "/v1/payments/V1", None).await;
    assert_eq!(still["status"], "revoked");
}

#[tokio::test]
async fn refunds_in_review_are_resolved_succeeded_or_failed_and_answer_the_refund() {
    // A refund the channel never finds goes to review after 5 calls; succeeded counts as refunded, failed frees its amount.
    let app = TestApp::spawn().await;
    paid(&app, "P2").await;
    for (refund_no, amount) in [("NF1", "4.00"), ("NF2", "6.00")] {
        let (status, body) = app
            .call(
                "POST",
                "/v1/payments/P2/refunds",
                Some(&format!(
                    r#"{{"refund_no":"{refund_no}","amount":"{amount}"}}"#
                )),
            )
            .await;
        assert_eq!(status, 201, "{body}");
        refund_reaches(&app, "P2", refund_no, "manual_review").await;
    }
    assert_eq!(app.wechat.count("refund", "P2"), 10, "5 calls per refund");

    // Refund words only, and a reason.
    let path = "/v1/payments/P2/refunds/NF1/resolve";
    for (body, code, field) in [
        (
            r#"{"outcome":"paid","reason":"x"}"#,
            "invalid_outcome",
            "outcome",
        ),
        (r#"{"outcome":"succeeded"}"#, "missing_reason", "reason"),
        (
            r#"{"outcome":"succeeded","reason":"x","paid_at":"2026-11-22T02:00:00Z"}"#,
            "unknown_field",
            "paid_at",
        ),
        (
            r#"{"outcome":"failed","reason":"x","refunded_at":"2026-11-22T02:00:00Z"}"#,
            "invalid_refunded_at",
            "refunded_at",
        ),
    ] {
        let (_, answer) = app.call("POST", path, Some(body)).await;
        assert_eq!(
            (
                answer["error"]["code"].as_str(),
                answer["error"]["field"].as_str()
            ),
            (Some(code), Some(field)),
            "{body} -> {answer}"
        );
    }
    let (status, answer) = app
        .call(
            "POST",
            "/v1/payments/P2/refunds/R404/resolve",
            Some(r#"{"outcome":"failed","reason":"x"}"#),
        )
        .await;
    assert_eq!(
        (status, &answer["error"]["code"]),
        (404, &Value::from("refund_not_found"))
    );

    app.clock.advance(chrono::Duration::seconds(60));
    let (status, refund) = app
        .call(
            "POST",
            path,
            Some(r#"{"outcome":"succeeded","refunded_at":"2026-11-22T02:00:01Z","reason":"the customer's bank statement shows it"}"#),
        )
        .await;
    assert_eq!(status, 200, "{refund}");
    assert_eq!(refund["refund_no"], "NF1");
    assert_eq!(refund["status"], "succeeded");
    assert_eq!(refund["succeeded_at"], "2026-11-22T02:00:01Z");

    let (status, refund) = app
        .call(
            "POST",
            "/v1/payments/P2/refunds/NF2/resolve",
            Some(r#"{"outcome":"failed","reason":"never reached WeChat"}"#),
        )
        .await;
    assert_eq!(
        (status, &refund["status"]),
        (200, &Value::from("failed")),
        "{refund}"
    );

    let (_, payment) = app.call("GET", "/v1/payments/P2", None).await;
    assert_eq!(payment["status"], "partially_refunded");
    assert_eq!(payment["refunded_amount"], "4.00");
    let last = events(&app, "P2").await.pop().unwrap();
    assert_eq!(last["type"], "OperatorResolved");
    assert_eq!(last["data"]["resolved_by"], "api_keys[0]");
    assert_eq!(last["data"]["resolution"]["verdict"], "refund_failed");

    let (status, answer) = app
        .call(
            "POST",
            path,
            Some(r#"{"outcome":"failed","reason":"again"}"#),
        )
        .await;
    assert_eq!(
        (status, &answer["error"]["code"]),
        (409, &Value::from("not_in_review"))
    );
    // The failed refund's 6.00 is refundable again; the resolved ones are never called again.
    let (status, body) = app
        .call(
            "POST",
            "/v1/payments/P2/refunds",
            Some(r#"{"refund_no":"R3","amount":"6.00"}"#),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    app.settle("P2", "refunded", 5).await;
    assert_eq!(app.wechat.count("refund", "P2"), 11, "only R3's call");
}
