//! The console's rules over HTTP, without a browser (the whole router, no
//! socket): the session cookie's attributes, the security headers, the
//! Origin check on sign-in, wrong keys counted against the failed-auth
//! limit shared with `/v1`, CSRF and role refusals on the resolve form,
//! sign-out, and sessions ending on the runtime's clock.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use chrono::{TimeZone, Utc};
use paycode_adapters::clock::ManualClock;
use paycode_adapters::lease::LocalLeases;
use paycode_adapters::store::{EventStore as _, MemoryStore};
use paycode_domain::MerchantId;
use paycode_domain::payment::PaymentDecider;
use tower::ServiceExt as _;

use crate::http::limits::ServerLimits;
use crate::http::{ApiKey, AppState, Role, auth};
use crate::service::index::OrderIndex;
use crate::service::ledger::Ledger;
use crate::service::metrics::Metrics;
use crate::service::runtime::{Channels, Runtime};

const FULL: &str = "sk_test_console_full_01";
const AUDITOR: &str = "sk_test_console_audit_1";
const OPERATOR: &str = "sk_test_console_opera_1";
const PAYMENTS: &str = "sk_test_console_till_01";

fn app(limits: ServerLimits) -> (axum::Router, ManualClock) {
    let (router, clock, _) = app_on(limits, Arc::new(MemoryStore::new()));
    (router, clock)
}

/// The console over `store`, with its read models following it (the order lists' source).
fn app_on(
    limits: ServerLimits,
    store: Arc<MemoryStore>,
) -> (axum::Router, ManualClock, Arc<OrderIndex>) {
    let clock = ManualClock::starting_at(Utc.with_ymd_and_hms(2026, 12, 3, 2, 0, 0).unwrap());
    let ledger = Ledger::new(
        store.clone(),
        PaymentDecider::default(),
        Arc::new(clock.clone()),
    );
    let runtime = Runtime::new(
        ledger,
        Channels::default(),
        Metrics::new(),
        Arc::new(LocalLeases),
        Arc::new(paycode_adapters::ids::RandomIds),
        crate::service::fingerprint::FingerprintKey::random(),
    );
    let demo = MerchantId::parse("demo").unwrap();
    let keyed = |key: &str, name: &str, role| ApiKey {
        sha256: auth::digest(key),
        merchant: demo.clone(),
        name: name.to_owned(),
        role,
    };
    let keys = vec![
        ApiKey::full(FULL, demo.clone(), "api_keys[0]"),
        keyed(AUDITOR, "audit-team", Role::Auditor),
        keyed(OPERATOR, "night-ops", Role::Operator),
        keyed(PAYMENTS, "till-backend", Role::Payments),
    ];
    let views = crate::read::runner::in_memory_read_models().unwrap();
    let index = Arc::new(OrderIndex::new(Some(views.clone())));
    tokio::spawn(async move {
        let runner = crate::read::runner::ProjectionRunner::open(
            store,
            views,
            crate::read::runner::RunnerOptions::default(),
        )
        .await;
        runner.unwrap().follow().await
    });
    let state = AppState::new(runtime, index.clone(), keys, limits);
    (crate::http::router(state), clock, index)
}

/// A request as a browser on `host` sends it from a console page.
fn from_page(
    method: &str,
    path: &str,
    host: &str,
    cookie: Option<&str>,
    form: &str,
) -> Request<Body> {
    let scheme = if host.starts_with("127.0.0.1") {
        "http"
    } else {
        "https"
    };
    let mut request = Request::builder()
        .method(method)
        .uri(path)
        .header(header::HOST, host)
        .header(header::ORIGIN, format!("{scheme}://{host}"))
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
    if let Some(cookie) = cookie {
        request = request.header(header::COOKIE, format!("paycode_session={cookie}"));
    }
    request.body(Body::from(form.to_owned())).unwrap()
}

async fn sign_in(app: &axum::Router, host: &str, key: &str) -> (StatusCode, Option<String>) {
    let answer = app
        .clone()
        .oneshot(from_page(
            "POST",
            "/ui/sign-in",
            host,
            None,
            &format!("key={key}"),
        ))
        .await
        .unwrap();
    let cookie = answer
        .headers()
        .get(header::SET_COOKIE)
        .map(|value| value.to_str().unwrap().to_owned());
    (answer.status(), cookie)
}

fn session_of(set_cookie: &str) -> String {
    set_cookie
        .strip_prefix("paycode_session=")
        .and_then(|rest| rest.split(';').next())
        .unwrap()
        .to_owned()
}

async fn get(app: &axum::Router, path: &str, cookie: &str) -> (StatusCode, String) {
    let answer = app
        .clone()
        .oneshot(from_page("GET", path, "127.0.0.1:8080", Some(cookie), ""))
        .await
        .unwrap();
    let status = answer.status();
    let body = axum::body::to_bytes(answer.into_body(), 1 << 20)
        .await
        .unwrap();
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// The session's CSRF token, as its pages carry it.
async fn csrf_of(app: &axum::Router, cookie: &str) -> String {
    let (_, page) = get(app, "/ui/overview", cookie).await;
    let start = page.find("name=\"csrf\" value=\"").unwrap() + "name=\"csrf\" value=\"".len();
    page[start..start + 64].to_owned()
}

#[tokio::test]
async fn sign_in_sets_an_httponly_strict_cookie_that_holds_a_session_id_not_the_key() {
    let (app, _) = app(ServerLimits::unthrottled());
    let (status, cookie) = sign_in(&app, "127.0.0.1:8080", AUDITOR).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let cookie = cookie.unwrap();
    for part in ["HttpOnly", "SameSite=Strict", "Path=/ui", "Max-Age=28800"] {
        assert!(cookie.contains(part), "{cookie}");
    }
    assert!(
        !cookie.contains("Secure"),
        "plain HTTP on loopback: {cookie}"
    );
    assert!(!cookie.contains(AUDITOR), "{cookie}");
    assert_eq!(session_of(&cookie).len(), 64);
    // Anywhere but loopback the cookie is Secure (behind a TLS proxy).
    let (_, elsewhere) = sign_in(&app, "pay.example.com", AUDITOR).await;
    assert!(elsewhere.unwrap().contains("; Secure"));
}

#[tokio::test]
async fn pages_carry_the_security_headers() {
    let (app, _) = app(ServerLimits::unthrottled());
    let answer = app
        .clone()
        .oneshot(from_page("GET", "/ui/sign-in", "127.0.0.1:8080", None, ""))
        .await
        .unwrap();
    assert_eq!(answer.status(), StatusCode::OK);
    let headers = answer.headers();
    let csp = headers["content-security-policy"].to_str().unwrap();
    assert!(
        csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"),
        "{csp}"
    );
    assert!(!csp.contains("unsafe-inline"), "{csp}");
    assert_eq!(headers["x-frame-options"], "DENY");
    assert_eq!(headers["referrer-policy"], "same-origin");
    assert_eq!(headers["cache-control"], "no-store");
    // `/ui` and `/ui/` both lead to the sign-in form.
    for path in ["/ui", "/ui/"] {
        let answer = app
            .clone()
            .oneshot(from_page("GET", path, "127.0.0.1:8080", None, ""))
            .await
            .unwrap();
        assert_eq!(answer.status(), StatusCode::SEE_OTHER, "{path}");
    }
}

#[tokio::test]
async fn a_sign_in_from_another_site_is_refused() {
    let (app, _) = app(ServerLimits::unthrottled());
    let mut request = from_page(
        "POST",
        "/ui/sign-in",
        "127.0.0.1:8080",
        None,
        &format!("key={FULL}"),
    );
    request
        .headers_mut()
        .insert(header::ORIGIN, "https://evil.example".parse().unwrap());
    let answer = app.clone().oneshot(request).await.unwrap();
    assert_eq!(answer.status(), StatusCode::FORBIDDEN);
    assert!(answer.headers().get(header::SET_COOKIE).is_none());
    // Nor without any origin at all.
    let mut bare = from_page(
        "POST",
        "/ui/sign-in",
        "127.0.0.1:8080",
        None,
        &format!("key={FULL}"),
    );
    bare.headers_mut().remove(header::ORIGIN);
    assert_eq!(
        app.oneshot(bare).await.unwrap().status(),
        StatusCode::FORBIDDEN
    );
}

#[tokio::test]
async fn wrong_keys_at_sign_in_count_against_the_limit_the_api_shares() {
    // Two wrong keys a minute from an address: the third attempt is refused
    // whatever key it brings, and so is the API for that address.
    let limits = ServerLimits {
        unauthenticated_per_min: 2,
        ..ServerLimits::unthrottled()
    };
    let (app, _) = app(limits);
    for _ in 0..2 {
        let (status, cookie) = sign_in(&app, "127.0.0.1:8080", "sk_test_wrong_key_0001").await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert!(cookie.is_none());
    }
    let (status, cookie) = sign_in(&app, "127.0.0.1:8080", FULL).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert!(cookie.is_none());
    let api = Request::get("/v1/payments")
        .header(header::AUTHORIZATION, format!("Bearer {FULL}"))
        .body(Body::empty())
        .unwrap();
    assert_eq!(
        app.oneshot(api).await.unwrap().status(),
        StatusCode::TOO_MANY_REQUESTS
    );
}

#[tokio::test]
async fn the_resolve_form_needs_the_csrf_token_and_the_resolve_permission() {
    let (app, _) = app(ServerLimits::unthrottled());
    let post = |cookie: &str, form: String| {
        let app = app.clone();
        let request = from_page(
            "POST",
            "/ui/orders/A1/resolve",
            "127.0.0.1:8080",
            Some(cookie),
            &form,
        );
        async move { app.oneshot(request).await.unwrap().status() }
    };
    let (_, operator) = sign_in(&app, "127.0.0.1:8080", OPERATOR).await;
    let operator = session_of(&operator.unwrap());
    let token = csrf_of(&app, &operator).await;
    let verdict = "outcome=not_paid&reason=closed";
    assert_eq!(
        post(&operator, verdict.to_owned()).await,
        StatusCode::FORBIDDEN
    );
    let wrong = format!("{verdict}&csrf={}", "0".repeat(64));
    assert_eq!(post(&operator, wrong).await, StatusCode::FORBIDDEN);
    // With its token the operator reaches the rules: no such order.
    let right = format!("{verdict}&csrf={token}");
    assert_eq!(post(&operator, right).await, StatusCode::NOT_FOUND);
    // Another session's token is not this one's.
    let (_, auditor) = sign_in(&app, "127.0.0.1:8080", AUDITOR).await;
    let auditor = session_of(&auditor.unwrap());
    let stolen = format!("{verdict}&csrf={token}");
    assert_eq!(post(&auditor, stolen).await, StatusCode::FORBIDDEN);
    // The auditor with its own token: its role does not resolve.
    let own = format!("{verdict}&csrf={}", csrf_of(&app, &auditor).await);
    assert_eq!(post(&auditor, own).await, StatusCode::FORBIDDEN);
    // Operators read an order's events (what they decide from); a
    // payments key does not, here as in the API.
    let (status, _) = get(&app, "/ui/orders/A1/evidence.json", &operator).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "no such order, but allowed");
    let (_, till) = sign_in(&app, "127.0.0.1:8080", PAYMENTS).await;
    let till = session_of(&till.unwrap());
    let (status, page) = get(&app, "/ui/orders/A1/evidence.json", &till).await;
    assert_eq!(
        status,
        StatusCode::FORBIDDEN,
        "payments keys do not read events"
    );
    assert!(page.contains("reading an order"), "{page}");
}

#[tokio::test]
async fn a_session_ends_on_sign_out_and_after_8_idle_hours() {
    let (app, clock) = app(ServerLimits::unthrottled());
    let (_, first) = sign_in(&app, "127.0.0.1:8080", FULL).await;
    let first = session_of(&first.unwrap());
    assert_eq!(get(&app, "/ui/overview", &first).await.0, StatusCode::OK);
    let token = csrf_of(&app, &first).await;
    let out = app
        .clone()
        .oneshot(from_page(
            "POST",
            "/ui/sign-out",
            "127.0.0.1:8080",
            Some(&first),
            &format!("csrf={token}"),
        ))
        .await
        .unwrap();
    assert_eq!(out.status(), StatusCode::SEE_OTHER);
    assert!(
        out.headers()[header::SET_COOKIE]
            .to_str()
            .unwrap()
            .contains("Max-Age=0")
    );
    assert_eq!(
        get(&app, "/ui/overview", &first).await.0,
        StatusCode::SEE_OTHER
    );

    let (_, second) = sign_in(&app, "127.0.0.1:8080", FULL).await;
    let second = session_of(&second.unwrap());
    clock.advance(chrono::Duration::hours(7));
    assert_eq!(get(&app, "/ui/overview", &second).await.0, StatusCode::OK);
    clock.advance(chrono::Duration::hours(8));
    assert_eq!(
        get(&app, "/ui/overview", &second).await.0,
        StatusCode::SEE_OTHER
    );
}

#[tokio::test]
async fn the_order_list_pages_by_cursor_and_filters_by_channel() {
    // 60 sample orders: a first page of 50 with a link to the next, which
    // holds the other 10 and no link; a channel filter keeps only its own.
    let store = Arc::new(MemoryStore::new());
    let mut rng = paycode_projections::sample::Rng::new(7);
    for index in 0..60 {
        let events = paycode_projections::sample::order_events("demo", index, &mut rng);
        let batch = events
            .iter()
            .map(|event| {
                paycode_adapters::store::NewEvent::encoded(
                    uuid::Uuid::new_v4(),
                    paycode_domain::stored::encode(event),
                )
            })
            .collect();
        store
            .append(
                &paycode_projections::sample::stream("demo", index),
                paycode_adapters::store::ExpectedVersion::NoStream,
                batch,
            )
            .await
            .unwrap();
    }
    let (app, _, index) = app_on(ServerLimits::unthrottled(), store);
    let merchant = MerchantId::parse("demo").unwrap();
    // The index follows the store in the background: wait until it has all.
    while index
        .page(&merchant, None, None, 100)
        .await
        .unwrap()
        .order_nos
        .len()
        < 60
    {
        tokio::task::yield_now().await;
    }
    let (_, cookie) = sign_in(&app, "127.0.0.1:8080", AUDITOR).await;
    let cookie = session_of(&cookie.unwrap());
    let rows = |page: &str| page.matches("<td><a href=\"/ui/orders/S").count();
    let (status, first) = get(&app, "/ui/orders", &cookie).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(rows(&first), 50);
    let link = &first[first.find("id=\"next-page\"").unwrap()..];
    let start = link.find("href=\"").unwrap() + "href=\"".len();
    let next = link[start..]
        .split('"')
        .next()
        .unwrap()
        .replace("&amp;", "&");
    assert!(next.contains("cursor="), "{next}");
    let (_, second) = get(&app, &next, &cookie).await;
    assert_eq!(rows(&second), 10);
    assert!(!second.contains("next-page"));
    // No order is on both pages.
    for number in 0..60 {
        let link = format!("href=\"/ui/orders/S{number}\"");
        assert_eq!(
            usize::from(first.contains(&link)) + usize::from(second.contains(&link)),
            1,
            "S{number}"
        );
    }
    let (_, wechat) = get(&app, "/ui/orders?channel=wechat", &cookie).await;
    let (_, alipay) = get(&app, "/ui/orders?channel=alipay", &cookie).await;
    assert!(rows(&wechat) > 0 && rows(&alipay) > 0);
    assert_eq!(rows(&wechat) + rows(&alipay), 60);
    assert!(!wechat.contains("<td>alipay</td>"));
}

#[tokio::test]
async fn a_refund_in_review_is_queued_and_resolved_by_an_operator_naming_the_key() {
    // A paid order whose refund went astray: the queue lists the refund,
    // the order page has its form for operators, and the resolution is
    // recorded as OperatorResolved naming the key.
    use paycode_domain::payment::{
        ChannelAnswer, Command, CommandKind, PayOutcome, PaymentState, RefundOutcome,
        RequestRefund, SubmitPayment, evolve,
    };
    use paycode_domain::{AuthCode, CommandId, Decider as _, OrderNo, RefundNo};

    let start = Utc.with_ymd_and_hms(2026, 12, 1, 2, 0, 0).unwrap();
    let commands = [
        CommandKind::SubmitPayment(SubmitPayment {
            merchant_id: MerchantId::parse("demo").unwrap(),
            order_no: OrderNo::parse("RF1").unwrap(),
            auth_code: AuthCode::parse("134567890123456709").unwrap(),
            auth_code_fingerprint: None,
            amount: "10.00".parse().unwrap(),
            subject: "Tea".into(),
        }),
        CommandKind::RecordPayAnswer(ChannelAnswer::new(PayOutcome::Paid {
            channel_trade_no: "4200000009".into(),
            paid_at: Some(start),
        })),
        CommandKind::RequestRefund(RequestRefund {
            refund_no: RefundNo::parse("R1").unwrap(),
            amount: "4.00".parse().unwrap(),
            reason: "returned".into(),
        }),
        // The channel says the refund's money went astray: an operator's.
        CommandKind::RecordRefundAnswer {
            refund_no: RefundNo::parse("R1").unwrap(),
            answer: ChannelAnswer::new(RefundOutcome::Abnormal {
                code: "CHANGE".into(),
            }),
        },
    ];
    let decider = PaymentDecider::default();
    let mut state = PaymentState::Initial;
    let mut events = Vec::new();
    for (n, kind) in commands.into_iter().enumerate() {
        let now = start + chrono::Duration::seconds(i64::try_from(n).unwrap());
        let command = Command::new(CommandId(uuid::Uuid::from_u128(n as u128 + 1)), kind);
        for event in decider.decide(&state, &command, now).unwrap() {
            state = evolve(state, &event).unwrap();
            events.push(event);
        }
    }
    let store = Arc::new(MemoryStore::new());
    let batch = events
        .iter()
        .map(|event| {
            paycode_adapters::store::NewEvent::encoded(
                uuid::Uuid::new_v4(),
                paycode_domain::stored::encode(event),
            )
        })
        .collect();
    store
        .append(
            "payment-demo-RF1",
            paycode_adapters::store::ExpectedVersion::NoStream,
            batch,
        )
        .await
        .unwrap();
    let (app, _, index) = app_on(ServerLimits::unthrottled(), store.clone());
    let merchant = MerchantId::parse("demo").unwrap();
    while index.refund_reviews(&merchant).await.unwrap().is_empty() {
        tokio::task::yield_now().await;
    }
    let (_, operator) = sign_in(&app, "127.0.0.1:8080", OPERATOR).await;
    let operator = session_of(&operator.unwrap());
    let (_, queue) = get(&app, "/ui/review", &operator).await;
    assert!(
        queue.contains("refund R1") && queue.contains("RF1"),
        "{queue}"
    );
    let (_, order_page) = get(&app, "/ui/orders/RF1", &operator).await;
    assert!(
        order_page.contains("action=\"/ui/orders/RF1/refunds/R1/resolve\""),
        "{order_page}"
    );
    let token = csrf_of(&app, &operator).await;
    let answer = app
        .clone()
        .oneshot(from_page(
            "POST",
            "/ui/orders/RF1/refunds/R1/resolve",
            "127.0.0.1:8080",
            Some(&operator),
            &format!("outcome=failed&reason=channel+shows+no+refund&csrf={token}"),
        ))
        .await
        .unwrap();
    assert_eq!(answer.status(), StatusCode::SEE_OTHER);
    let stored = store.read_stream("payment-demo-RF1").await.unwrap();
    let last: serde_json::Value = serde_json::from_slice(&stored.last().unwrap().data).unwrap();
    assert_eq!(stored.last().unwrap().event_type, "OperatorResolved");
    assert_eq!(last["key_name"], "night-ops", "{last}");
    let (_, after) = get(&app, "/ui/orders/RF1", &operator).await;
    assert!(!after.contains("/refunds/R1/resolve"), "resolved: no form");
}

#[test]
fn the_report_csv_has_one_line_per_finding_and_no_formulas() {
    // Shows the CSV's columns, and that a statement's text a spreadsheet
    // would run (`=...`) is written as text.
    use paycode_domain::reconciliation::{Finding, FindingKind, ReconciliationRecorded};
    let report = ReconciliationRecorded {
        channel: paycode_domain::Channel::Wechat,
        date: chrono::NaiveDate::from_ymd_opt(2026, 12, 2).unwrap(),
        statement_sha256: "ab".repeat(32),
        statement_lines: 3,
        matched: 1,
        findings: vec![
            Finding {
                kind: FindingKind::AmountMismatch,
                order_no: Some("A1".into()),
                refund_no: None,
                ledger_amount: Some("10.00".parse().unwrap()),
                statement_amount: Some("9.00".parse().unwrap()),
                detail: "line 2".into(),
            },
            Finding {
                kind: FindingKind::MissingInLedger,
                order_no: Some("=HYPERLINK(\"x\")".into()),
                refund_no: None,
                ledger_amount: None,
                statement_amount: Some("1.00".parse().unwrap()),
                detail: "line 3, unknown order".into(),
            },
        ],
        revokes_settled: 0,
    };
    let csv = super::report_csv_text(&report);
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(
        lines,
        [
            "channel,date,kind,order_no,refund_no,ledger_amount,statement_amount,detail",
            "wechat,2026-12-02,amount_mismatch,A1,,10.00,9.00,line 2",
            "wechat,2026-12-02,missing_in_ledger,\"'=HYPERLINK(\"\"x\"\")\",,,1.00,\"line 3, unknown order\"",
        ]
    );
}
