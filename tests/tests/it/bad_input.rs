//! A corpus of bad requests (over 200): wrong types, huge numbers, three
//! decimals, negative and zero amounts, unknown fields, the wrong channel for
//! a code, missing or wrong keys, oversized bodies, invalid UTF-8. Each is
//! answered with the documented 4xx and the error shape, and nothing is
//! written or sent to a channel.

use paycode_tests::{DEMO_KEY, TestApp};
use serde_json::{Map, Value, json};

const GOOD_CODE: &str = "134567890123456700";

fn good_payment() -> Map<String, Value> {
    json!({"order_no": "BAD1", "auth_code": GOOD_CODE, "amount": "1.00", "subject": "Coffee"})
        .as_object()
        .unwrap()
        .clone()
}

/// (description, body bytes, expected status, expected field)
type Case = (String, Vec<u8>, u16, Option<&'static str>);

fn with(field: &'static str, value: Value) -> Vec<u8> {
    let mut body = good_payment();
    body.insert(field.to_owned(), value);
    serde_json::to_vec(&body).unwrap()
}

fn without(field: &str) -> Vec<u8> {
    let mut body = good_payment();
    body.remove(field);
    serde_json::to_vec(&body).unwrap()
}

fn payment_cases() -> Vec<Case> {
    let mut cases: Vec<Case> = Vec::new();
    let wrong_types = [
        json!(1),
        json!(1.5),
        json!(true),
        json!([]),
        json!({}),
        json!([GOOD_CODE]),
    ];
    for field in [
        "order_no",
        "auth_code",
        "amount",
        "subject",
        "channel",
        "currency",
    ] {
        for value in &wrong_types {
            cases.push((
                format!("{field} = {value}"),
                with(field, value.clone()),
                422,
                Some(field),
            ));
        }
    }
    for field in ["order_no", "auth_code", "amount", "subject"] {
        cases.push((format!("{field} missing"), without(field), 422, Some(field)));
        cases.push((
            format!("{field} null"),
            with(field, Value::Null),
            422,
            Some(field),
        ));
    }
    let amounts = [
        "",
        " ",
        "0",
        "0.00",
        "0.001",
        "1.001",
        "12.345",
        "-1",
        "-0.01",
        "100000000.01",
        "1e2",
        "1E2",
        "0x10",
        "1,00",
        "1.0.0",
        ".5",
        "5.",
        "NaN",
        "inf",
        "+1",
        "１.00",
        "1 000",
        "99999999999999999999999999999",
        "100000000000",
        "abc",
        "1.00 CNY",
        "¥1",
        "1_0",
        "--1",
        // Spaces are refused, not trimmed.
        " 1.00",
        "1.00 ",
        "\t1.00",
        "1.00\n",
    ];
    for amount in amounts {
        cases.push((
            format!("amount {amount:?}"),
            with("amount", json!(amount)),
            422,
            Some("amount"),
        ));
    }
    let codes = [
        "",
        "1",
        "12345",
        "13456789012345678",
        "1345678901234567890",
        "164567890123456789",
        "094567890123456789",
        "241234567890123456",
        "311234567890123456",
        "251234567890123",
        "2512345678901234567890123",
        "13456789012345678a",
        "1345678901234567 9",
        " 134567890123456789",
        "134567890123456789 ",
        "+34567890123456789",
        "-134567890123456789",
        "１34567890123456789",
        "13456789012345678９",
        "abcdefghijklmnopqr",
        "0000000000000000",
        "9999999999999999999",
        "13.4567890123456789",
        "134567890123456789\n",
    ];
    for code in codes {
        cases.push((
            format!("auth_code {code:?}"),
            with("auth_code", json!(code)),
            422,
            Some("auth_code"),
        ));
    }
    let order_nos = [
        "", " ", "a b", "a/b", "a.b", "订单1", "x;drop", "a\nb", "<script>", "%41",
    ];
    for order_no in order_nos {
        cases.push((
            format!("order_no {order_no:?}"),
            with("order_no", json!(order_no)),
            422,
            Some("order_no"),
        ));
    }
    cases.push((
        "order_no 33 chars".into(),
        with("order_no", json!("x".repeat(33))),
        422,
        Some("order_no"),
    ));
    cases.push((
        "order_no 1000 chars".into(),
        with("order_no", json!("x".repeat(1000))),
        422,
        Some("order_no"),
    ));
    for subject in [
        "",
        "   ",
        "a\u{0}b",
        "line\nbreak",
        &"x".repeat(129),
        &"咖".repeat(43),
    ] {
        cases.push((
            format!("subject {subject:.20?}"),
            with("subject", json!(subject)),
            422,
            Some("subject"),
        ));
    }
    for channel in ["", "WECHAT", "weixin", "alipay ", "unionpay", "ALIPAY"] {
        cases.push((
            format!("channel {channel:?}"),
            with("channel", json!(channel)),
            422,
            Some("channel"),
        ));
    }
    cases.push((
        "alipay channel for a wechat code".into(),
        with("channel", json!("alipay")),
        422,
        Some("channel"),
    ));
    let mut alipay_code = good_payment();
    alipay_code.insert("auth_code".into(), json!("2845678901234567800"));
    alipay_code.insert("channel".into(), json!("wechat"));
    cases.push((
        "wechat channel for an alipay code".into(),
        serde_json::to_vec(&alipay_code).unwrap(),
        422,
        Some("channel"),
    ));
    for currency in ["", "USD", "cny", "RMB", "CNH"] {
        cases.push((
            format!("currency {currency:?}"),
            with("currency", json!(currency)),
            422,
            Some("currency"),
        ));
    }
    for unknown in [
        "tip",
        "merchant_id",
        "status",
        "Amount",
        "order_No",
        "",
        "auth_code_",
        "version",
        "wait",
        "notify_url",
    ] {
        cases.push((
            format!("unknown field {unknown:?}"),
            with_unknown(unknown),
            400,
            None,
        ));
    }
    let malformed: [&[u8]; 18] = [
        b"",
        b" ",
        b"{",
        b"}",
        b"[]",
        b"null",
        b"true",
        b"1",
        b"\"x\"",
        b"{order_no: 1}",
        b"{'order_no': '1'}",
        b"{\"order_no\":\"A\",}",
        b"{\"order_no\" \"A\"}",
        b"{\"a\":1}{\"b\":2}",
        b"\xff\xfe",
        b"{\"order_no\":\"\xc3\x28\"}",
        b"\xef\xbb\xbf{}",
        b"<xml/>",
    ];
    for body in malformed {
        cases.push((
            format!("malformed {:?}", String::from_utf8_lossy(body)),
            body.to_vec(),
            400,
            None,
        ));
    }
    for size in [16 * 1024 + 1, 64 * 1024, 1024 * 1024] {
        let mut body = good_payment();
        body.insert("subject".into(), json!("x".repeat(size)));
        cases.push((
            format!("{size}-byte body"),
            serde_json::to_vec(&body).unwrap(),
            413,
            None,
        ));
    }
    cases
}

fn with_unknown(field: &str) -> Vec<u8> {
    let mut body = good_payment();
    body.insert(field.to_owned(), json!("x"));
    serde_json::to_vec(&body).unwrap()
}

fn refund_cases() -> Vec<Case> {
    let mut cases: Vec<Case> = Vec::new();
    let refund = |field: &'static str, value: Value| {
        let mut body = json!({"refund_no": "R1", "amount": "1.00", "reason": "r"})
            .as_object()
            .unwrap()
            .clone();
        body.insert(field.to_owned(), value);
        serde_json::to_vec(&body).unwrap()
    };
    for value in [json!(1), json!(true), json!([]), json!({}), Value::Null] {
        cases.push((
            format!("refund amount {value}"),
            refund("amount", value.clone()),
            422,
            Some("amount"),
        ));
        cases.push((
            format!("refund_no {value}"),
            refund("refund_no", value),
            422,
            Some("refund_no"),
        ));
    }
    for amount in [
        "0",
        "1.001",
        "-1.00",
        "1e2",
        "abc",
        "100000000.01",
        " 1.00",
        "1.00 ",
    ] {
        cases.push((
            format!("refund amount {amount:?}"),
            refund("amount", json!(amount)),
            422,
            Some("amount"),
        ));
    }
    for refund_no in ["", "a b", &"r".repeat(33), "r/1"] {
        cases.push((
            format!("refund_no {refund_no:?}"),
            refund("refund_no", json!(refund_no)),
            422,
            Some("refund_no"),
        ));
    }
    cases.push((
        "reason too long".into(),
        refund("reason", json!("x".repeat(81))),
        422,
        Some("reason"),
    ));
    cases.push((
        "refund unknown field".into(),
        refund("notify", json!("x")),
        400,
        None,
    ));
    cases.push(("refund malformed".into(), b"{".to_vec(), 400, None));
    cases
}

#[tokio::test]
async fn every_bad_request_is_refused_with_the_documented_status_and_nothing_is_written() {
    // Over 200 bad requests; afterwards the store is empty and no channel was called.
    let app = TestApp::spawn().await;
    let payments = payment_cases();
    let refunds = refund_cases();
    let mut checked = 0;
    for (description, body, status, field) in &payments {
        let (got, answer) = send(&app, "POST", "/v1/payments", Some(DEMO_KEY), body.clone()).await;
        assert_eq!(got, *status, "{description}: {answer}");
        assert_error_shape(description, &answer, *field);
        checked += 1;
    }
    for (description, body, status, field) in &refunds {
        // Validation comes before the order is looked up: no order exists, yet the answer is about the field.
        let (got, answer) = send(
            &app,
            "POST",
            "/v1/payments/NONE/refunds",
            Some(DEMO_KEY),
            body.clone(),
        )
        .await;
        assert_eq!(got, *status, "{description}: {answer}");
        assert_error_shape(description, &answer, *field);
        checked += 1;
    }
    let body = serde_json::to_vec(&good_payment()).unwrap();
    let keys: [Option<&str>; 8] = [
        None,
        Some(""),
        Some("sk_test_dem"),
        Some("sk_test_dem0"),
        Some("SK_TEST_DEMO"),
        Some("sk_test_demo2"),
        Some("Bearer sk_test_demo"),
        Some("sk_test_other_unknown"),
    ];
    for key in keys {
        for (method, path) in [
            ("POST", "/v1/payments"),
            ("GET", "/v1/payments/BAD1"),
            ("GET", "/v1/payments?status=paid"),
        ] {
            let (got, answer) = send(&app, method, path, key, body.clone()).await;
            assert_eq!(got, 401, "{key:?} {method} {path}: {answer}");
            assert_eq!(answer["error"]["code"], "unauthorized");
            checked += 1;
        }
    }
    let (got, _) = raw(
        &app,
        "POST",
        "/v1/payments",
        vec![("authorization", format!("Basic {DEMO_KEY}"))],
        body.clone(),
    )
    .await;
    assert_eq!(got, 401);
    for query in ["wait=61", "wait=-1", "wait=x", "wait=1.5", "extra=1"] {
        let (got, answer) = send(
            &app,
            "POST",
            &format!("/v1/payments?{query}"),
            Some(DEMO_KEY),
            body.clone(),
        )
        .await;
        assert!(got == 422 || got == 400, "{query}: {got} {answer}");
        checked += 1;
    }
    for query in [
        "status=bogus",
        "limit=0",
        "limit=201",
        "limit=x",
        "cursor=a%20b",
        "sort=asc",
    ] {
        let (got, answer) = send(
            &app,
            "GET",
            &format!("/v1/payments?{query}"),
            Some(DEMO_KEY),
            Vec::new(),
        )
        .await;
        assert!(got == 422 || got == 400, "{query}: {got} {answer}");
        checked += 1;
    }
    assert!(checked >= 200, "the corpus has {checked} requests");
    assert_eq!(
        app.store.head_position().await.unwrap(),
        0,
        "nothing was written"
    );
    assert!(
        app.wechat.calls.lock().unwrap().is_empty() && app.alipay.calls.lock().unwrap().is_empty(),
        "no channel call"
    );
}

fn assert_error_shape(description: &str, answer: &Value, field: Option<&str>) {
    let error = &answer["error"];
    assert!(
        error["code"].is_string() && error["message"].is_string(),
        "{description}: {answer}"
    );
    if let Some(field) = field {
        assert_eq!(error["field"], field, "{description}: {answer}");
    }
    assert!(
        !answer.to_string().contains("4567890123456"),
        "{description}: the code is never echoed"
    );
}

async fn send(
    app: &TestApp,
    method: &str,
    path: &str,
    key: Option<&str>,
    body: Vec<u8>,
) -> (u16, Value) {
    let mut headers = vec![("content-type", "application/json".to_owned())];
    if let Some(key) = key {
        headers.push(("authorization", format!("Bearer {key}")));
    }
    raw(app, method, path, headers, body).await
}

async fn raw(
    app: &TestApp,
    method: &str,
    path: &str,
    headers: Vec<(&str, String)>,
    body: Vec<u8>,
) -> (u16, Value) {
    let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    let mut request = app
        .http
        .request(method, format!("{}{}", app.base_url, path))
        .body(body);
    for (name, value) in headers {
        request = request.header(name, value);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}
