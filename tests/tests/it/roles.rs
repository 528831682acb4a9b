//! Keys with roles, over HTTP: each role reaches exactly the endpoints its
//! permissions allow (`paycode::http::auth::allows`, docs/api.md), and
//! anything else answers `403 forbidden` in the error shape, before the
//! handler runs, so a forbidden request changes nothing. Keys of `api_keys`
//! keep every right. The events a key causes record its name, never the
//! key.

use paycode::http::auth::{ApiKey, Permission, Role, allows, digest};
use paycode_domain::MerchantId;
use paycode_tests::{DEMO_KEY, TestApp};
use serde_json::Value;

const PAYMENTS_KEY: &str = "sk_live_role_payments";
const OPERATOR_KEY: &str = "sk_live_role_operator";
const AUDITOR_KEY: &str = "sk_live_role_auditor";
const RECONCILIATION_KEY: &str = "sk_live_role_reconciliation";

fn role_key(key: &str, role: Role, name: &str) -> ApiKey {
    ApiKey {
        sha256: digest(key),
        merchant: MerchantId::parse("demo").unwrap(),
        name: name.to_owned(),
        role,
    }
}

async fn app() -> TestApp {
    TestApp::spawn_with_keys(vec![
        role_key(PAYMENTS_KEY, Role::Payments, "till-1"),
        role_key(OPERATOR_KEY, Role::Operator, "ops"),
        role_key(AUDITOR_KEY, Role::Auditor, "audit-team"),
        role_key(RECONCILIATION_KEY, Role::Reconciliation, "nightly"),
    ])
    .await
}

/// Every endpoint with the permission it declares; `{n}` makes bodies unique per call.
const ENDPOINTS: [(&str, &str, Option<&str>, Permission); 11] = [
    (
        "POST",
        "/v1/payments",
        Some(
            r#"{"order_no":"N{n}","auth_code":"134567890123456700","amount":"1.00","subject":"Tea"}"#,
        ),
        Permission::CreatePayment,
    ),
    ("GET", "/v1/payments", None, Permission::ReadPayments),
    ("GET", "/v1/payments/A1", None, Permission::ReadPayments),
    (
        "GET",
        "/v1/payments/A1/events",
        None,
        Permission::ReadEvents,
    ),
    ("POST", "/v1/payments/A2/revoke", None, Permission::Revoke),
    (
        "POST",
        "/v1/payments/A1/refunds",
        Some(r#"{"refund_no":"R{n}","amount":"0.01"}"#),
        Permission::CreateRefund,
    ),
    (
        "GET",
        "/v1/payments/A1/refunds/R0",
        None,
        Permission::ReadRefunds,
    ),
    (
        "POST",
        "/v1/payments/A2/resolve",
        Some(r#"{"outcome":"not_paid","reason":"checked"}"#),
        Permission::Resolve,
    ),
    (
        "POST",
        "/v1/payments/A1/refunds/R0/resolve",
        Some(r#"{"outcome":"failed","reason":"checked"}"#),
        Permission::Resolve,
    ),
    (
        "POST",
        "/v1/reconciliations",
        Some(r#"{"channel":"wechat","date":"2026-11-21"}"#),
        Permission::ImportStatement,
    ),
    (
        "GET",
        "/v1/reconciliations/wechat/2026-11-21",
        None,
        Permission::ReadReconciliations,
    ),
];

#[tokio::test]
async fn each_role_reaches_exactly_the_endpoints_it_allows() {
    // payments: payments, refunds, revoke; operator: the same and resolve; auditor:
    // reads, events included; reconciliation: import and read reports; api_keys: everything.
    let app = app().await;
    let paid =
        r#"{"order_no":"A1","auth_code":"134567890123456700","amount":"10.00","subject":"Tea"}"#;
    let waiting =
        r#"{"order_no":"A2","auth_code":"134567890123456702","amount":"10.00","subject":"Tea"}"#;
    for body in [paid, waiting] {
        let (status, answer) = app.call("POST", "/v1/payments?wait=2", Some(body)).await;
        assert_eq!(status, 201, "{answer}");
    }
    let (status, answer) = app
        .call(
            "POST",
            "/v1/payments/A1/refunds",
            Some(r#"{"refund_no":"R0","amount":"0.01"}"#),
        )
        .await;
    assert_eq!(status, 201, "{answer}");

    let mut calls = 0;
    for (key, role) in [
        (PAYMENTS_KEY, Role::Payments),
        (OPERATOR_KEY, Role::Operator),
        (AUDITOR_KEY, Role::Auditor),
        (RECONCILIATION_KEY, Role::Reconciliation),
        (DEMO_KEY, Role::Full),
    ] {
        for (method, path, body, permission) in ENDPOINTS {
            calls += 1;
            let body = body.map(|body| body.replace("{n}", &calls.to_string()));
            let (status, answer) = app.call_as(Some(key), method, path, body.as_deref()).await;
            if allows(role, permission) {
                assert_ne!(status, 403, "{role} {method} {path}: {answer}");
                assert_ne!(status, 401, "{role} {method} {path}: {answer}");
            } else {
                assert_eq!(status, 403, "{role} {method} {path}: {answer}");
                assert_eq!(answer["error"]["code"], "forbidden", "{answer}");
                assert_eq!(answer["error"]["field"], Value::Null, "{answer}");
                let message = answer["error"]["message"].as_str().unwrap();
                assert!(message.contains(role.as_str()), "{message}");
            }
        }
    }
    // Every permission has an endpoint above.
    for permission in Permission::ALL {
        let listed = ENDPOINTS.iter().any(|(.., p)| *p == permission);
        assert!(listed, "{permission:?}");
    }
}

#[tokio::test]
async fn a_forbidden_request_changes_nothing() {
    // An auditor's payment is refused with 403 before the handler: no order, no pay call.
    let app = app().await;
    let body =
        r#"{"order_no":"F1","auth_code":"134567890123456700","amount":"1.00","subject":"Tea"}"#;
    let (status, answer) = app
        .call_as(Some(AUDITOR_KEY), "POST", "/v1/payments", Some(body))
        .await;
    assert_eq!(
        (status, &answer["error"]["code"]),
        (403, &Value::from("forbidden"))
    );
    let (status, answer) = app.call("GET", "/v1/payments/F1", None).await;
    assert_eq!(status, 404, "{answer}");
    assert_eq!(app.wechat.count("pay", "F1"), 0);
    // An unknown key is still 401, whatever it asks for.
    let (status, _) = app
        .call_as(Some("sk_live_role_unknown"), "GET", "/v1/payments", None)
        .await;
    assert_eq!(status, 401);
}

/// `(type, key_name)` of each event of `order_no`, read by the auditor.
async fn caused_by(app: &TestApp, order_no: &str) -> Vec<(String, Option<String>)> {
    let (status, answer) = app
        .call_as(
            Some(AUDITOR_KEY),
            "GET",
            &format!("/v1/payments/{order_no}/events"),
            None,
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    answer["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|event| {
            (
                event["type"].as_str().unwrap().to_owned(),
                event["data"]["key_name"].as_str().map(str::to_owned),
            )
        })
        .collect()
}

#[tokio::test]
async fn the_events_a_key_causes_name_it_and_never_hold_it() {
    // Each request's events record the key's name (api_keys keys: api_keys[N]); the
    // runtime's own steps (the pay answer, the revoke call) record none.
    let app = app().await;
    let paid =
        r#"{"order_no":"K1","auth_code":"134567890123456700","amount":"10.00","subject":"Tea"}"#;
    let waiting =
        r#"{"order_no":"K2","auth_code":"134567890123456702","amount":"10.00","subject":"Tea"}"#;
    let (status, answer) = app
        .call_as(
            Some(PAYMENTS_KEY),
            "POST",
            "/v1/payments?wait=2",
            Some(paid),
        )
        .await;
    assert_eq!(status, 201, "{answer}");
    let (status, answer) = app
        .call_as(
            Some(OPERATOR_KEY),
            "POST",
            "/v1/payments/K1/refunds",
            Some(r#"{"refund_no":"R1","amount":"1.00"}"#),
        )
        .await;
    assert_eq!(status, 201, "{answer}");
    let (status, answer) = app.call("POST", "/v1/payments?wait=2", Some(waiting)).await;
    assert_eq!(status, 201, "{answer}");
    let (status, answer) = app
        .call_as(Some(PAYMENTS_KEY), "POST", "/v1/payments/K2/revoke", None)
        .await;
    assert_eq!(status, 202, "{answer}");

    let named = |events: &[(String, Option<String>)], kind: &str| -> Option<String> {
        events
            .iter()
            .find(|(event_type, _)| event_type == kind)
            .unwrap_or_else(|| panic!("no {kind} in {events:?}"))
            .1
            .clone()
    };
    let k1 = caused_by(&app, "K1").await;
    assert_eq!(named(&k1, "Submitted").as_deref(), Some("till-1"), "{k1:?}");
    assert_eq!(named(&k1, "Paid"), None, "{k1:?}");
    assert_eq!(
        named(&k1, "RefundRequested").as_deref(),
        Some("ops"),
        "{k1:?}"
    );
    let k2 = caused_by(&app, "K2").await;
    assert_eq!(
        named(&k2, "Submitted").as_deref(),
        Some("api_keys[0]"),
        "{k2:?}"
    );
    assert_eq!(named(&k2, "UserPaying"), None, "{k2:?}");
    assert_eq!(
        named(&k2, "RevokeRequested").as_deref(),
        Some("till-1"),
        "{k2:?}"
    );

    // A statement import (a WeChat bill of a day with no line) names the
    // reconciliation key in the day's report.
    let bill = concat!(
        "交易时间,公众账号ID,商户号,特约商户号,设备号,微信订单号,商户订单号,用户标识,交易类型,交易状态,付款银行,货币种类,应结订单金额,代金券金额,微信退款单号,商户退款单号,退款金额,充值券退款金额,退款类型,退款状态,商品名称,商户数据包,手续费,费率,订单金额,申请退款金额,费率备注\n",
        "总交易单数,应结订单总金额,退款总金额,充值券退款总金额,手续费总金额,订单总金额,申请退款总金额\n",
        "`0,`0.00,`0.00,`0.00,`0.00,`0.00,`0.00\n",
    );
    let response = app
        .http
        .post(format!(
            "{}/v1/reconciliations?channel=wechat&date=2026-11-21",
            app.base_url
        ))
        .bearer_auth(RECONCILIATION_KEY)
        .header("content-type", "text/csv")
        .body(bill)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
    let stored = app.store.read_all(1, usize::MAX).await.unwrap();
    let report = stored
        .iter()
        .find(|event| event.event_type == "ReconciliationRecorded")
        .expect("the report is recorded");
    let report: Value = serde_json::from_slice(&report.data).unwrap();
    assert_eq!(report["key_name"], "nightly", "{report}");

    // The name, never the key: no stored byte holds a key.
    for event in &stored {
        let data = String::from_utf8_lossy(&event.data);
        for key in [PAYMENTS_KEY, OPERATOR_KEY, RECONCILIATION_KEY, DEMO_KEY] {
            assert!(!data.contains(key), "{}: {data}", event.event_type);
        }
    }
}

#[tokio::test]
async fn an_operator_key_resolves_a_review_and_the_resolution_names_it() {
    // A payments key is refused (403, nothing written); the operator key resolves, and
    // OperatorResolved names it both as resolved_by and as the event's key_name.
    let app = app().await;
    let body =
        r#"{"order_no":"V1","auth_code":"134567890123456707","amount":"8.00","subject":"Tea"}"#;
    let (status, answer) = app
        .call_as(Some(PAYMENTS_KEY), "POST", "/v1/payments", Some(body))
        .await;
    assert_eq!(status, 201, "{answer}");
    app.settle("V1", "manual_review", 5).await;
    let verdict = r#"{"outcome":"not_paid","reason":"not in the merchant platform"}"#;
    let before = caused_by(&app, "V1").await;
    let (status, answer) = app
        .call_as(
            Some(PAYMENTS_KEY),
            "POST",
            "/v1/payments/V1/resolve",
            Some(verdict),
        )
        .await;
    assert_eq!(
        (status, &answer["error"]["code"]),
        (403, &Value::from("forbidden"))
    );
    assert_eq!(caused_by(&app, "V1").await, before, "nothing written");

    let (status, answer) = app
        .call_as(
            Some(OPERATOR_KEY),
            "POST",
            "/v1/payments/V1/resolve",
            Some(verdict),
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    let (status, history) = app
        .call_as(Some(AUDITOR_KEY), "GET", "/v1/payments/V1/events", None)
        .await;
    assert_eq!(status, 200, "{history}");
    let last = history["events"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert_eq!(last["type"], "OperatorResolved", "{last}");
    assert_eq!(last["data"]["resolved_by"], "ops", "{last}");
    assert_eq!(last["data"]["key_name"], "ops", "{last}");
}
