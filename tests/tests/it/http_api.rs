//! The HTTP API of docs/api.md, black box: the real router on 127.0.0.1
//! port 0, a manual clock, scripted channels. Each test's first line says
//! what it shows.

use std::sync::Arc;

use paycode_adapters::store::{EventStore, MemoryStore, SqliteStore};
use paycode_adapters::testing::FaultyStore;
use paycode_tests::{OTHER_KEY, TestApp};
use serde_json::Value;

fn payment(order_no: &str, code: &str, amount: &str) -> String {
    format!(
        r#"{{"order_no":"{order_no}","auth_code":"{code}","amount":"{amount}","subject":"Coffee"}}"#
    )
}

const PAID_WECHAT: &str = "134567890123456700";
const WAITING_WECHAT: &str = "134567890123456702";
const FAILING_ALIPAY: &str = "2845678901234567803";
const RETRY_WECHAT: &str = "134567890123456707";

#[tokio::test]
async fn an_instant_payment_is_paid_and_creation_is_idempotent() {
    // Same body answers 200 with the current payment; a different body is 409; one pay call in all.
    let app = TestApp::spawn().await;
    let (status, body) = app
        .call(
            "POST",
            "/v1/payments?wait=5",
            Some(&payment("A1", PAID_WECHAT, "12.34")),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["status"], "paid");
    assert_eq!(body["amount"], "12.34");
    assert_eq!(body["channel"], "wechat");
    assert_eq!(body["auth_code"], "13**************00");
    assert_eq!(body["channel_trade_no"], "T-A1");
    assert_eq!(body["refunded_amount"], "0.00");
    assert_eq!(body["merchant_id"], "demo");
    let (status, again) = app
        .call(
            "POST",
            "/v1/payments",
            Some(&payment("A1", PAID_WECHAT, "12.34")),
        )
        .await;
    assert_eq!((status, &again["status"]), (200, &Value::from("paid")));
    let (status, conflict) = app
        .call(
            "POST",
            "/v1/payments",
            Some(&payment("A1", PAID_WECHAT, "12.35")),
        )
        .await;
    assert_eq!(
        (status, &conflict["error"]["code"]),
        (409, &Value::from("order_no_conflict"))
    );
    assert_eq!(app.wechat.count("pay", "A1"), 1);
}

#[tokio::test]
async fn a_different_code_with_the_same_mask_is_a_conflict() {
    // Same first and last two digits, different middle: the same mask, another code: 409.
    let app = TestApp::spawn().await;
    let (status, body) = app
        .call(
            "POST",
            "/v1/payments",
            Some(&payment("M1", PAID_WECHAT, "1.00")),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let same_mask = "130000000000000000";
    assert_eq!(&same_mask[..2], &PAID_WECHAT[..2]);
    assert_eq!(&same_mask[16..], &PAID_WECHAT[16..]);
    let (status, conflict) = app
        .call(
            "POST",
            "/v1/payments",
            Some(&payment("M1", same_mask, "1.00")),
        )
        .await;
    assert_eq!(
        (status, &conflict["error"]["code"]),
        (409, &Value::from("order_no_conflict")),
        "{conflict}"
    );
    let (status, _) = app
        .call(
            "POST",
            "/v1/payments",
            Some(&payment("M1", PAID_WECHAT, "1.00")),
        )
        .await;
    assert_eq!(status, 200);
    // The fingerprint is the ledger's own comparison key: not in the API.
    let (_, events) = app.call("GET", "/v1/payments/M1/events", None).await;
    assert!(
        events["events"][0]["data"]
            .get("auth_code_fingerprint")
            .is_none(),
        "{events}"
    );
    assert_eq!(app.wechat.count("pay", "M1"), 1);
}

#[tokio::test]
async fn an_order_recorded_before_fingerprints_compares_the_mask() {
    // A schema-1 Submitted (no fingerprint): a repeat with the same mask is still 200.
    let store: Arc<dyn EventStore> = Arc::new(MemoryStore::new());
    let data = serde_json::json!({
        "at": "2026-11-22T02:00:00Z", "command_id": "00000000-0000-0000-0000-000000000001",
        "merchant_id": "demo", "order_no": "OLD1", "channel": "wechat",
        "amount": "1.00", "currency": "CNY", "subject": "Coffee",
        "auth_code": "13**************00",
        "deadline_at": "2026-11-22T02:00:30Z", "first_query_at": "2026-11-22T02:00:05Z",
        "revoke_not_before": "2026-11-22T02:00:15Z"
    });
    store
        .append(
            "payment-demo-OLD1",
            paycode_adapters::store::ExpectedVersion::NoStream,
            vec![paycode_adapters::store::NewEvent {
                event_id: uuid::Uuid::new_v4(),
                event_type: "Submitted".into(),
                schema_version: 1,
                data: serde_json::to_vec(&data).unwrap(),
            }],
        )
        .await
        .unwrap();
    let app = TestApp::spawn_on(store).await;
    let (status, body) = app
        .call(
            "POST",
            "/v1/payments",
            Some(&payment("OLD1", PAID_WECHAT, "1.00")),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, _) = app
        .call(
            "POST",
            "/v1/payments",
            Some(&payment("OLD1", "134567890123456701", "1.00")),
        )
        .await;
    assert_eq!(status, 409);
}

#[tokio::test]
async fn concurrent_duplicate_requests_make_one_order_and_one_pay_call() {
    // Ten identical requests at once: one 201, nine 200, one channel call.
    let app = Arc::new(TestApp::spawn().await);
    let mut tasks = Vec::new();
    for _ in 0..10 {
        let app = app.clone();
        tasks.push(tokio::spawn(async move {
            app.call(
                "POST",
                "/v1/payments",
                Some(&payment("DUP", PAID_WECHAT, "1.00")),
            )
            .await
            .0
        }));
    }
    let mut statuses = Vec::new();
    for task in tasks {
        statuses.push(task.await.unwrap());
    }
    statuses.sort_unstable();
    assert_eq!(
        statuses.iter().filter(|s| **s == 201).count(),
        1,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        9,
        "{statuses:?}"
    );
    app.settle("DUP", "paid", 0).await;
    assert_eq!(app.wechat.count("pay", "DUP"), 1);
}

#[tokio::test]
async fn a_customer_who_never_types_the_password_is_revoked_at_the_deadline() {
    // Poll every 5 s while waiting; at 30 s revoke; the order ends closed, with its full history.
    let app = TestApp::spawn().await;
    let (status, body) = app
        .call(
            "POST",
            "/v1/payments",
            Some(&payment("W1", WAITING_WECHAT, "2500.00")),
        )
        .await;
    assert_eq!((status, &body["status"]), (201, &Value::from("paying")));
    app.settle("W1", "closed", 1).await;
    assert_eq!(app.wechat.count("pay", "W1"), 1);
    assert_eq!(app.wechat.count("revoke", "W1"), 1);
    let queries = app.wechat.count("query", "W1");
    assert!(
        (4..=6).contains(&queries),
        "queried {queries} times in 30 s"
    );
    let (status, history) = app.call("GET", "/v1/payments/W1/events", None).await;
    assert_eq!(status, 200);
    let events = history["events"].as_array().unwrap();
    let types: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(types[..2], ["Submitted", "UserPaying"]);
    assert_eq!(types[types.len() - 2..], ["RevokeRequested", "Revoked"]);
    assert_eq!(events[0]["version"], 0);
    assert_eq!(events[0]["status_after"], "paying");
    assert_eq!(events.last().unwrap()["status_after"], "closed");
    assert!(
        !history.to_string().contains(WAITING_WECHAT),
        "the full code is never stored"
    );
}

#[tokio::test]
async fn a_definitive_failure_is_closed_with_a_revoke_and_keeps_its_code() {
    // Closed loop: NOTENOUGH, then a revoke no sooner than 15 s, then closed.
    let app = TestApp::spawn().await;
    let (status, body) = app
        .call(
            "POST",
            "/v1/payments?wait=1",
            Some(&payment("F1", FAILING_ALIPAY, "3.00")),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["channel"], "alipay");
    let closed = app.settle("F1", "closed", 1).await;
    assert_eq!(closed["failure_code"], "NOTENOUGH");
    assert_eq!(app.alipay.count("revoke", "F1"), 1);
}

#[tokio::test]
async fn revokes_that_keep_asking_for_a_retry_end_in_manual_review_and_are_listed() {
    // After 5 attempts an operator takes over; the order is listed for operators.
    let app = TestApp::spawn().await;
    app.call(
        "POST",
        "/v1/payments",
        Some(&payment("R7", RETRY_WECHAT, "8.00")),
    )
    .await;
    app.settle("R7", "manual_review", 5).await;
    assert_eq!(app.wechat.count("revoke", "R7"), 5);
    let mut listed = Value::Null;
    for _ in 0..500 {
        let (status, page) = app
            .call("GET", "/v1/payments?status=manual_review&limit=10", None)
            .await;
        assert_eq!(status, 200);
        if page["data"].as_array().is_some_and(|d| !d.is_empty()) {
            listed = page;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert_eq!(listed["data"][0]["order_no"], "R7", "{listed}");
    assert_eq!(listed["next_cursor"], Value::Null);
    let (_, metrics) = app.call_as(None, "GET", "/metrics", None).await;
    assert!(
        metrics
            .as_str()
            .unwrap()
            .contains("paycode_manual_review_orders 1"),
        "{metrics}"
    );
}

#[tokio::test]
async fn refunds_are_followed_until_final_and_never_exceed_the_payment() {
    // A refund is accepted, then queried to success; over-refunds are 409; refund_no is idempotent.
    let app = TestApp::spawn().await;
    app.call(
        "POST",
        "/v1/payments?wait=5",
        Some(&payment("P1", PAID_WECHAT, "10.00")),
    )
    .await;
    let refund = r#"{"refund_no":"R1","amount":"4.00","reason":"returned"}"#;
    let (status, body) = app
        .call("POST", "/v1/payments/P1/refunds", Some(refund))
        .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(
        (body["status"].as_str(), body["amount"].as_str()),
        (Some("pending"), Some("4.00"))
    );
    let (status, _) = app
        .call("POST", "/v1/payments/P1/refunds", Some(refund))
        .await;
    assert_eq!(status, 200);
    let (status, body) = app
        .call(
            "POST",
            "/v1/payments/P1/refunds",
            Some(r#"{"refund_no":"R1","amount":"5.00"}"#),
        )
        .await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (409, &Value::from("refund_no_conflict"))
    );
    let (status, body) = app
        .call(
            "POST",
            "/v1/payments/P1/refunds",
            Some(r#"{"refund_no":"R2","amount":"6.01"}"#),
        )
        .await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (409, &Value::from("refund_exceeds_balance"))
    );
    let payment = app.settle("P1", "partially_refunded", 5).await;
    assert_eq!(payment["refunded_amount"], "4.00");
    let (status, refund) = app.call("GET", "/v1/payments/P1/refunds/R1", None).await;
    assert_eq!(
        (status, refund["status"].as_str()),
        (200, Some("succeeded"))
    );
    assert!(refund["succeeded_at"].is_string());
    let (status, _) = app.call("GET", "/v1/payments/P1/refunds/R9", None).await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn the_merchant_revokes_a_paid_payment_and_it_is_reversed() {
    // POST revoke answers 202 revoking; the revoke refunds in full.
    let app = TestApp::spawn().await;
    app.call(
        "POST",
        "/v1/payments?wait=5",
        Some(&payment("V1", PAID_WECHAT, "10.00")),
    )
    .await;
    let (status, body) = app.call("POST", "/v1/payments/V1/revoke", None).await;
    assert_eq!(
        (status, &body["status"]),
        (202, &Value::from("revoking")),
        "{body}"
    );
    app.settle("V1", "reversed", 5).await;
    let (status, body) = app
        .call(
            "POST",
            "/v1/payments/V1/refunds",
            Some(r#"{"refund_no":"R1","amount":"1.00"}"#),
        )
        .await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (409, &Value::from("not_refundable"))
    );
}

#[tokio::test]
async fn keys_scope_every_request_to_one_merchant() {
    // Missing or wrong key: 401. Another merchant's order: 404, never revealed.
    let app = TestApp::spawn().await;
    app.call(
        "POST",
        "/v1/payments?wait=5",
        Some(&payment("K1", PAID_WECHAT, "1.00")),
    )
    .await;
    let (status, body) = app.call_as(None, "GET", "/v1/payments/K1", None).await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (401, &Value::from("unauthorized"))
    );
    let (status, _) = app
        .call_as(Some("sk_test_dem"), "GET", "/v1/payments/K1", None)
        .await;
    assert_eq!(status, 401);
    let (status, body) = app
        .call_as(Some(OTHER_KEY), "GET", "/v1/payments/K1", None)
        .await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (404, &Value::from("order_not_found"))
    );
    let (status, _) = app
        .call_as(Some(OTHER_KEY), "POST", "/v1/payments/K1/revoke", None)
        .await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn bad_input_is_refused_by_field_and_writes_nothing() {
    // 400 for malformed JSON or unknown fields, 422 naming the field, 413 for a huge body.
    let app = TestApp::spawn().await;
    let cases: Vec<(String, u16, Option<&str>)> = vec![
        ("{".into(), 400, None),
        ("[]".into(), 400, None),
        (r#"{"order_no":"A","auth_code":"134567890123456789","amount":"1.00","subject":"x","tip":"1"}"#.into(), 400, Some("tip")),
        (payment("A", PAID_WECHAT, "12.345"), 422, Some("amount")),
        (payment("A", PAID_WECHAT, "0"), 422, Some("amount")),
        (payment("A", PAID_WECHAT, "-1.00"), 422, Some("amount")),
        (payment("A", PAID_WECHAT, "100000000.01"), 422, Some("amount")),
        (payment("A", PAID_WECHAT, "1e3"), 422, Some("amount")),
        (payment("A", "12345", "1.00"), 422, Some("auth_code")),
        (payment("A B", PAID_WECHAT, "1.00"), 422, Some("order_no")),
        (payment(&"x".repeat(33), PAID_WECHAT, "1.00"), 422, Some("order_no")),
        (r#"{"order_no":"A","auth_code":"134567890123456789","amount":12.5,"subject":"x"}"#.into(), 422, Some("amount")),
        (r#"{"order_no":"A","auth_code":"134567890123456789","amount":"1.00"}"#.into(), 422, Some("subject")),
        (r#"{"order_no":"A","auth_code":"134567890123456789","amount":"1.00","subject":"x","channel":"alipay"}"#.into(), 422, Some("channel")),
        (r#"{"order_no":"A","auth_code":"134567890123456789","amount":"1.00","subject":"x","currency":"USD"}"#.into(), 422, Some("currency")),
        (format!(r#"{{"order_no":"A","auth_code":"134567890123456789","amount":"1.00","subject":"{}"}}"#, "x".repeat(20_000)), 413, None),
    ];
    for (body, expected_status, expected_field) in cases {
        let (status, answer) = app.call("POST", "/v1/payments", Some(&body)).await;
        assert_eq!(status, expected_status, "{body:.80} -> {answer}");
        assert!(answer["error"]["code"].is_string(), "{answer}");
        assert_eq!(
            answer["error"]["field"].as_str(),
            expected_field,
            "{body:.80} -> {answer}"
        );
    }
    let (status, answer) = app
        .call(
            "POST",
            "/v1/payments?wait=61",
            Some(&payment("A", PAID_WECHAT, "1.00")),
        )
        .await;
    assert_eq!(
        (status, answer["error"]["field"].as_str()),
        (422, Some("wait"))
    );
    assert_eq!(
        app.store.head_position().await.unwrap(),
        0,
        "nothing was written"
    );
    assert!(
        app.wechat.calls.lock().unwrap().is_empty(),
        "no channel was called"
    );
}

#[tokio::test]
async fn health_and_metrics_answer_without_a_key() {
    // /healthz says the store answers; /metrics is Prometheus text.
    let app = TestApp::spawn().await;
    app.call(
        "POST",
        "/v1/payments?wait=5",
        Some(&payment("M1", PAID_WECHAT, "1.00")),
    )
    .await;
    let (status, body) = app.call_as(None, "GET", "/healthz", None).await;
    assert_eq!((status, &body["status"]), (200, &Value::from("ok")));
    let (status, metrics) = app.call_as(None, "GET", "/metrics", None).await;
    let text = metrics.as_str().unwrap();
    assert_eq!(status, 200);
    assert!(
        text.contains(r#"paycode_commands_total{command="submit_payment",outcome="accepted"} 1"#),
        "{text}"
    );
    assert!(
        text.contains(
            r#"paycode_channel_calls_total{channel="wechat",api="pay",outcome="paid"} 1"#
        ),
        "{text}"
    );
    assert!(
        !text.contains("M1") && !text.contains(PAID_WECHAT),
        "no order number or code in labels"
    );
}

#[tokio::test]
async fn a_restart_resumes_every_pending_order_from_the_log() {
    // Pending work is re-derived from events: an order left paying is queried and revoked after a restart.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("paycode.db");
    {
        let store: Arc<dyn EventStore> = Arc::new(SqliteStore::open(&path).unwrap());
        let app = TestApp::spawn_on(store).await;
        let (status, _) = app
            .call(
                "POST",
                "/v1/payments",
                Some(&payment("C1", WAITING_WECHAT, "5.00")),
            )
            .await;
        assert_eq!(status, 201);
        app.settle("C1", "paying", 0).await;
    }
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    let store: Arc<dyn EventStore> = Arc::new(SqliteStore::open(&path).unwrap());
    let app = TestApp::spawn_on(store).await;
    let closed = app.settle("C1", "closed", 2).await;
    assert_eq!(closed["order_no"], "C1");
    assert_eq!(
        app.wechat.count("pay", "C1"),
        0,
        "never pays again after a restart"
    );
    assert!(app.wechat.count("query", "C1") >= 1, "recovers by querying");
}

#[tokio::test]
async fn a_store_that_is_down_answers_503_with_retry_after_and_recovers() {
    // The store fails: 503 with Retry-After, the health check says so; back up, the same request works.
    let store = Arc::new(FaultyStore::new(Arc::new(MemoryStore::new())));
    let app = TestApp::spawn_on(store.clone()).await;
    store.set_down(true);
    let response = app
        .http
        .post(format!("{}/v1/payments", app.base_url))
        .header("authorization", "Bearer sk_test_demo")
        .body(payment("S1", PAID_WECHAT, "1.00"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 503);
    assert_eq!(
        response
            .headers()
            .get("retry-after")
            .map(|v| v.to_str().unwrap()),
        Some("1")
    );
    let body: Value = serde_json::from_str(&response.text().await.unwrap()).unwrap();
    assert_eq!(body["error"]["code"], "unavailable");
    let (status, _) = app.call_as(None, "GET", "/healthz", None).await;
    assert_eq!(status, 503);
    assert!(
        app.wechat.calls.lock().unwrap().is_empty(),
        "no pay call without a durable intent"
    );
    store.set_down(false);
    let (status, body) = app
        .call(
            "POST",
            "/v1/payments?wait=5",
            Some(&payment("S1", PAID_WECHAT, "1.00")),
        )
        .await;
    assert_eq!((status, &body["status"]), (201, &Value::from("paid")));
}

#[tokio::test]
async fn a_payment_for_a_channel_the_merchant_lacks_is_refused_before_anything_is_written() {
    // Defect 5: `other` has WeChat only; an Alipay payment is 422 naming the field, and no stream exists.
    let app = TestApp::spawn_other_without_alipay().await;
    let inferred = payment("NOALI1", FAILING_ALIPAY, "5.00");
    let (status, body) = app
        .call_as(Some(OTHER_KEY), "POST", "/v1/payments", Some(&inferred))
        .await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["error"]["code"], "channel_not_configured", "{body}");
    assert_eq!(body["error"]["field"], "auth_code", "{body}");

    let named = r#"{"order_no":"NOALI2","auth_code":"2845678901234567803","amount":"5.00","subject":"Coffee","channel":"alipay"}"#;
    let (status, body) = app
        .call_as(Some(OTHER_KEY), "POST", "/v1/payments", Some(named))
        .await;
    assert_eq!(
        (status, body["error"]["field"].as_str()),
        (422, Some("channel")),
        "{body}"
    );

    for order in ["NOALI1", "NOALI2"] {
        let (status, _) = app
            .call_as(
                Some(OTHER_KEY),
                "GET",
                &format!("/v1/payments/{order}"),
                None,
            )
            .await;
        assert_eq!(status, 404, "{order} was never written");
    }
    assert!(app.store.read_all(1, 10).await.unwrap().is_empty());
    assert_eq!(app.alipay.count("pay", "NOALI1"), 0);
    // The merchant's configured channel still works.
    let wechat = payment("NOALI3", PAID_WECHAT, "5.00");
    let (status, _) = app
        .call_as(Some(OTHER_KEY), "POST", "/v1/payments", Some(&wechat))
        .await;
    assert_eq!(status, 201);
}
