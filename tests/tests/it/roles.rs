//! Keys with roles, over HTTP: each role reaches exactly the endpoints its
//! permissions allow (`paycode::http::auth::allows`, docs/api.md), and
//! anything else answers `403 forbidden` in the error shape, before the
//! handler runs, so a forbidden request changes nothing. Keys of `api_keys`
//! keep every right.

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
const ENDPOINTS: [(&str, &str, Option<&str>, Permission); 9] = [
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
    // payments: payments, refunds, revoke; operator: the same (and resolve); auditor:
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
    // Every permission but resolve (whose endpoints come next) has an endpoint above.
    for permission in Permission::ALL {
        let listed = ENDPOINTS.iter().any(|(.., p)| *p == permission);
        assert_eq!(listed, permission != Permission::Resolve, "{permission:?}");
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
