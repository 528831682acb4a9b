//! The Alipay client against a local gateway (axum on 127.0.0.1, port 0)
//! that verifies every request's RSA2 signature with the app's public key
//! and answers bodies signed with a test "Alipay" key: each answer the
//! protocol can give, and each way an answer can fail to prove anything.
//!
//! The keys are generated at test time (once per test process, by
//! `paycode_adapters::testing`): no key is stored in the repository.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use chrono::{DateTime, NaiveDate, TimeZone, Utc};
use paycode_adapters::alipay::config::setting;
use paycode_adapters::alipay::{AlipayClient, AlipayConfig, Secret, envelope, sign};
use paycode_adapters::channel::rate_limit::RateLimits;
use paycode_adapters::channel::{
    ChannelClient, PayRequest, QueryRequest, RefundQueryRequest, RefundRequest, StatementError,
    StatementFile,
};
use paycode_adapters::testing;
use paycode_domain::channel::{CHANNEL_TEXT_MAX_CHARS, CUT_MARK};
use paycode_domain::payment::{
    ChannelAnswer, PayOutcome, QueryOutcome, RefundOutcome, RevokeOutcome, RevokeResult,
};
use paycode_domain::{AuthCode, Channel, Money, OrderNo, RefundNo};
use rsa::{RsaPrivateKey, RsaPublicKey};
use serde_json::{Value, json};

const APP_ID: &str = "2021000000000001";
/// The fake app's private key (PKCS#8 PEM): the client signs with it.
fn app_private_key() -> String {
    testing::rsa_key_pair_pem("app", 2048).0
}

/// The fake app's public key (SPKI PEM): the local gateway verifies with it.
fn app_public_key() -> String {
    testing::rsa_key_pair_pem("app", 2048).1
}

/// The fake "Alipay" private key, in PKCS#1 PEM form: the gateway signs its answers.
fn alipay_private_key() -> String {
    testing::pkcs1_private_pem(&testing::rsa_key_pair_pem("alipay", 2048).0)
}

/// The fake "Alipay" public key (SPKI PEM): the client verifies answers with it.
fn alipay_public_key() -> String {
    testing::rsa_key_pair_pem("alipay", 2048).1
}

/// A 1024-bit private key (PKCS#8 PEM), which configuration must refuse.
fn weak_private_key() -> String {
    testing::rsa_key_pair_pem("weak", 1024).0
}
const AUTH_CODE: &str = "287634438256643941";
/// The smallest valid zip: an empty end-of-central-directory record.
const EMPTY_ZIP: &[u8] = b"PK\x05\x06\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0";

/// A request as the gateway received it, signature already checked.
#[derive(Debug, Clone)]
struct Call {
    params: Vec<(String, String)>,
    method: String,
    biz: Value,
}

impl Call {
    fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }
}

/// How the gateway answers one call.
enum Reply {
    /// The method's node, signed with the Alipay test key.
    Node(Value),
    /// A node signed with another key (a forgery).
    Forged(Value),
    /// A node with no signature.
    Unsigned(Value),
    /// A raw body.
    Raw(&'static str),
    /// An HTTP status with a body.
    Status(StatusCode),
    /// Sleep, then answer.
    Slow(Duration, Value),
    /// A node with its raw text chosen by the test (signed as given).
    NodeText(String),
}

type Handler = Arc<dyn Fn(&Call) -> Reply + Send + Sync>;

#[derive(Clone)]
struct Gateway {
    handler: Handler,
    app_public_key: Arc<RsaPublicKey>,
    alipay_private_key: Arc<RsaPrivateKey>,
    calls: Arc<Mutex<Vec<Call>>>,
    rejected: Arc<Mutex<Vec<String>>>,
    /// `http://127.0.0.1:PORT`, substituted for `{origin}` in answers.
    origin: String,
}

struct Peer {
    base_url: String,
    calls: Arc<Mutex<Vec<Call>>>,
    rejected: Arc<Mutex<Vec<String>>>,
}

impl Peer {
    fn calls(&self) -> Vec<Call> {
        self.calls.lock().unwrap().clone()
    }

    /// Every request the gateway saw was correctly signed by the app.
    fn assert_all_signed(&self) {
        let rejected = self.rejected.lock().unwrap();
        assert!(
            rejected.is_empty(),
            "requests with bad signatures: {rejected:?}"
        );
    }
}

async fn gateway(State(gateway): State<Gateway>, body: String) -> Response {
    let params: Vec<(String, String)> = match serde_urlencoded::from_str(&body) {
        Ok(params) => params,
        Err(error) => return (StatusCode::BAD_REQUEST, error.to_string()).into_response(),
    };
    if let Err(error) = sign::verify_request(&gateway.app_public_key, &params) {
        gateway.rejected.lock().unwrap().push(error.to_string());
        let node = json!({"code": "40002", "msg": "Invalid Arguments", "sub_code": "isv.invalid-signature"});
        let body = sign::build_named_envelope(
            &gateway.alipay_private_key,
            envelope::ERROR_RESPONSE,
            &node.to_string(),
        );
        return body.unwrap().into_response();
    }
    let find = |name: &str| {
        params
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.clone())
    };
    let method = find("method").unwrap_or_default();
    let biz = serde_json::from_str(&find("biz_content").unwrap_or_default()).unwrap_or(Value::Null);
    let call = Call {
        params,
        method: method.clone(),
        biz,
    };
    gateway.calls.lock().unwrap().push(call.clone());
    let signed = |node: &str, key: &RsaPrivateKey| {
        sign::build_envelope(key, &method, &node.replace("{origin}", &gateway.origin)).unwrap()
    };
    match (gateway.handler)(&call) {
        Reply::Node(node) => signed(&node.to_string(), &gateway.alipay_private_key).into_response(),
        Reply::NodeText(node) => signed(&node, &gateway.alipay_private_key).into_response(),
        Reply::Forged(node) => {
            let forger = sign::private_key_from_pem(&app_private_key()).unwrap();
            signed(&node.to_string(), &forger).into_response()
        }
        Reply::Unsigned(node) => {
            format!("{{\"{}\":{node}}}", envelope::response_node_name(&method)).into_response()
        }
        Reply::Raw(body) => body.into_response(),
        Reply::Status(status) => (status, "<html>error</html>").into_response(),
        Reply::Slow(delay, node) => {
            tokio::time::sleep(delay).await;
            signed(&node.to_string(), &gateway.alipay_private_key).into_response()
        }
    }
}

async fn bill() -> Bytes {
    Bytes::from_static(EMPTY_ZIP)
}

async fn spawn(handler: impl Fn(&Call) -> Reply + Send + Sync + 'static) -> Peer {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let state = Gateway {
        handler: Arc::new(handler),
        app_public_key: Arc::new(sign::public_key_from_pem(&app_public_key()).unwrap()),
        alipay_private_key: Arc::new(sign::private_key_from_pem(&alipay_private_key()).unwrap()),
        calls: Arc::default(),
        rejected: Arc::default(),
        origin: format!("http://{address}"),
    };
    let peer_calls = state.calls.clone();
    let peer_rejected = state.rejected.clone();
    let app = Router::new()
        .route("/gateway.do", post(gateway))
        .route("/bill.zip", get(bill))
        .route("/missing.zip", get(|| async { StatusCode::NOT_FOUND }))
        .with_state(state);
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    Peer {
        base_url: format!("http://{address}/gateway.do"),
        calls: peer_calls,
        rejected: peer_rejected,
    }
}

fn config(peer: &Peer) -> AlipayConfig {
    AlipayConfig::new(
        APP_ID,
        app_private_key(),
        alipay_public_key(),
        peer.base_url.clone(),
    )
}

fn client(peer: &Peer) -> AlipayClient {
    AlipayClient::new(config(peer)).unwrap()
}

fn order() -> OrderNo {
    OrderNo::parse("order-1").unwrap()
}

fn refund_no() -> RefundNo {
    RefundNo::parse("refund-1").unwrap()
}

fn money(text: &str) -> Money {
    text.parse().unwrap()
}

/// When the order was submitted: five minutes before the payment the
/// answers below date (2024-01-01 08:00:05 China time).
fn submitted_at() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2023, 12, 31, 23, 55, 5).unwrap()
}

/// How long a pay call may wait for its turn under the rate limit.
const WAIT_MAX: Duration = Duration::from_secs(15);

async fn pay(client: &AlipayClient) -> ChannelAnswer<PayOutcome> {
    pay_waiting(client, WAIT_MAX).await
}

async fn pay_waiting(client: &AlipayClient, wait_max: Duration) -> ChannelAnswer<PayOutcome> {
    let auth_code = AuthCode::parse(AUTH_CODE).unwrap();
    let order_no = order();
    let answer = client
        .pay(PayRequest {
            order_no: &order_no,
            auth_code: &auth_code,
            amount: money("20.00"),
            subject: "Coffee 咖啡",
            submitted_at: submitted_at(),
            wait_max,
        })
        .await;
    // Whatever happened, the full code is in no code, reason or outcome.
    assert!(!format!("{answer:?}").contains(AUTH_CODE), "{answer:?}");
    answer
}

async fn query(client: &AlipayClient) -> ChannelAnswer<QueryOutcome> {
    let order_no = order();
    client
        .query(QueryRequest {
            order_no: &order_no,
            amount: money("20.00"),
            submitted_at: submitted_at(),
        })
        .await
}

async fn refund_query(client: &AlipayClient) -> ChannelAnswer<RefundOutcome> {
    let (order_no, refund_no) = (order(), refund_no());
    client
        .refund_query(RefundQueryRequest {
            order_no: &order_no,
            refund_no: &refund_no,
            refund_amount: money("5.00"),
            total_amount: money("20.00"),
        })
        .await
}

fn paid_node(out_trade_no: &str) -> Value {
    json!({
        "code": "10000",
        "msg": "Success",
        "trade_no": "2024010122001400000000000001",
        "out_trade_no": out_trade_no,
        "total_amount": "20.00",
        "receipt_amount": "20.00",
        "buyer_logon_id": "csq***@sandbox.com",
        "gmt_payment": "2024-01-01 08:00:05",
        "fund_bill_list": [{"amount": "20.00", "fund_channel": "ALIPAYACCOUNT"}]
    })
}

#[tokio::test]
async fn a_paid_answer_is_paid_and_the_request_is_signed_and_complete() {
    // The request carries every common parameter and the bar_code biz_content, signed with the app key.
    let peer =
        spawn(|call| Reply::Node(paid_node(call.biz["out_trade_no"].as_str().unwrap()))).await;
    let answer = pay(&client(&peer)).await;
    assert_eq!(
        answer.outcome,
        PayOutcome::Paid {
            channel_trade_no: "2024010122001400000000000001".to_owned(),
            paid_at: Some(Utc.with_ymd_and_hms(2024, 1, 1, 0, 0, 5).unwrap()),
        }
    );
    assert_eq!(answer.codes.get("code"), Some("10000"));
    assert_eq!(answer.codes.get("msg"), Some("Success"));
    peer.assert_all_signed();
    let calls = peer.calls();
    assert_eq!(calls.len(), 1);
    let call = &calls[0];
    assert_eq!(call.method, "alipay.trade.pay");
    for (name, value) in [
        ("app_id", APP_ID),
        ("format", "JSON"),
        ("charset", "utf-8"),
        ("sign_type", "RSA2"),
        ("version", "1.0"),
    ] {
        assert_eq!(call.param(name), Some(value), "{name}");
    }
    assert_eq!(call.param("app_auth_token"), None);
    let timestamp = call.param("timestamp").unwrap();
    assert!(
        chrono::NaiveDateTime::parse_from_str(timestamp, "%Y-%m-%d %H:%M:%S").is_ok(),
        "{timestamp}"
    );
    assert_eq!(
        call.biz,
        json!({"out_trade_no": "order-1", "scene": "bar_code", "auth_code": AUTH_CODE, "subject": "Coffee 咖啡", "total_amount": "20.00"})
    );
}

#[tokio::test]
async fn waiting_for_the_password_and_service_unavailable() {
    // 10003 waits for the buyer; 20000 proves nothing.
    let peer = spawn(|_| Reply::Node(json!({"code": "10003", "msg": "order success pay inprocess", "out_trade_no": "order-1"}))).await;
    assert_eq!(
        pay(&client(&peer)).await.outcome,
        PayOutcome::WaitingForPassword
    );
    let peer = spawn(|_| Reply::Node(json!({"code": "20000", "msg": "Service Currently Unavailable", "sub_code": "isp.unknow-error"}))).await;
    let answer = pay(&client(&peer)).await;
    assert!(
        matches!(answer.outcome, PayOutcome::Unknown { .. }),
        "{answer:?}"
    );
    assert_eq!(answer.codes.get("sub_code"), Some("isp.unknow-error"));
}

#[tokio::test]
async fn a_definitive_failure_fails_with_its_sub_code() {
    let peer = spawn(|_| {
        Reply::Node(json!({
            "code": "40004",
            "msg": "Business Failed",
            "sub_code": "ACQ.PAYMENT_AUTH_CODE_INVALID",
            "sub_msg": "支付失败，获取顾客账户信息失败，请顾客刷新付款码后重新收款",
            "out_trade_no": "order-1",
            "total_amount": "0.00"
        }))
    })
    .await;
    let answer = pay(&client(&peer)).await;
    assert_eq!(
        answer.outcome,
        PayOutcome::Failed {
            code: "ACQ.PAYMENT_AUTH_CODE_INVALID".to_owned()
        }
    );
    assert_eq!(answer.codes.get("code"), Some("40004"));
    assert_eq!(
        answer.codes.get("sub_code"),
        Some("ACQ.PAYMENT_AUTH_CODE_INVALID")
    );
}

#[tokio::test]
async fn a_forged_or_missing_signature_proves_nothing() {
    // A "paid" answer signed with another key, or not signed at all, is unknown.
    let peer = spawn(|_| Reply::Forged(paid_node("order-1"))).await;
    let answer = pay(&client(&peer)).await;
    assert!(
        matches!(&answer.outcome, PayOutcome::Unknown { reason } if reason.contains("signature")),
        "{answer:?}"
    );
    assert_eq!(answer.codes.get("signature"), Some("invalid"));
    let peer = spawn(|_| Reply::Unsigned(paid_node("order-1"))).await;
    let answer = pay(&client(&peer)).await;
    assert!(
        matches!(answer.outcome, PayOutcome::Unknown { .. }),
        "{answer:?}"
    );
    assert_eq!(answer.codes.get("signature"), Some("missing"));
}

#[tokio::test]
async fn a_pay_without_a_rate_limit_turn_within_its_wait_is_not_sent() {
    // One pay per second: the first takes the token; a second that may not
    // wait is not made at all, since the payment code would expire meanwhile.
    let peer =
        spawn(|call| Reply::Node(paid_node(call.biz["out_trade_no"].as_str().unwrap()))).await;
    let mut config = config(&peer);
    config.rate_limits = RateLimits {
        pay_per_sec: 1,
        ..RateLimits::ALIPAY
    };
    let client = AlipayClient::new(config).unwrap();
    let answer = pay_waiting(&client, Duration::ZERO).await;
    assert!(
        matches!(answer.outcome, PayOutcome::Paid { .. }),
        "a turn that is free now needs no wait: {answer:?}"
    );
    assert_eq!(peer.calls().len(), 1);
    let started = std::time::Instant::now();
    let answer = pay_waiting(&client, Duration::ZERO).await;
    match &answer.outcome {
        PayOutcome::NotSent { reason } => assert!(reason.contains("rate limit"), "{reason}"),
        other => panic!("expected NotSent, got {other:?}"),
    }
    assert!(started.elapsed() < Duration::from_millis(500));
    assert_eq!(peer.calls().len(), 1, "no HTTP call was made");
    // A wait long enough for the next turn makes the call.
    let answer = pay_waiting(&client, Duration::from_secs(5)).await;
    assert!(
        matches!(answer.outcome, PayOutcome::Paid { .. }),
        "{answer:?}"
    );
    assert_eq!(peer.calls().len(), 2);
    peer.assert_all_signed();
}

#[tokio::test]
async fn a_paid_answer_for_another_amount_or_dated_before_submission_proves_nothing() {
    let with = |changes: Value| {
        move |call: &Call| {
            let mut node = paid_node(call.biz["out_trade_no"].as_str().unwrap());
            for (name, value) in changes.as_object().unwrap() {
                if value.is_null() {
                    node.as_object_mut().unwrap().remove(name);
                } else {
                    node[name] = value.clone();
                }
            }
            Reply::Node(node)
        }
    };
    for changes in [
        json!({"total_amount": "20.01"}),
        json!({"total_amount": null}),
        // 07:50:00 China time, over a minute before the order was submitted (07:55:05).
        json!({"gmt_payment": "2024-01-01 07:50:00"}),
    ] {
        let peer = spawn(with(changes.clone())).await;
        let answer = pay(&client(&peer)).await;
        assert!(
            matches!(answer.outcome, PayOutcome::Unknown { .. }),
            "{changes}: {answer:?}"
        );
    }
    // Without a payment time, paid at a time the answer does not give.
    let peer = spawn(with(json!({"gmt_payment": null}))).await;
    assert_eq!(
        pay(&client(&peer)).await.outcome,
        PayOutcome::Paid {
            channel_trade_no: "2024010122001400000000000001".to_owned(),
            paid_at: None,
        }
    );
}

#[tokio::test]
async fn an_answer_about_another_order_proves_nothing() {
    let peer = spawn(|_| Reply::Node(paid_node("order-2"))).await;
    let answer = pay(&client(&peer)).await;
    assert!(
        matches!(&answer.outcome, PayOutcome::Unknown { reason } if reason.contains("out_trade_no")),
        "{answer:?}"
    );
}

#[tokio::test]
async fn a_truncated_body_or_an_http_error_proves_nothing() {
    let peer = spawn(|_| {
        Reply::Raw(
            r#"{"alipay_trade_pay_response":{"code":"10000","msg":"Success","trade_no":"2024"#,
        )
    })
    .await;
    let answer = pay(&client(&peer)).await;
    assert!(
        matches!(&answer.outcome, PayOutcome::Unknown { reason } if reason.contains("unreadable")),
        "{answer:?}"
    );
    let peer = spawn(|_| Reply::Status(StatusCode::INTERNAL_SERVER_ERROR)).await;
    let answer = pay(&client(&peer)).await;
    assert!(
        matches!(&answer.outcome, PayOutcome::Unknown { reason } if reason.contains("500")),
        "{answer:?}"
    );
}

#[tokio::test]
async fn no_answer_within_the_timeout_proves_nothing() {
    // The rule under test is the client's own timeout: 200 ms against a gateway that takes 3 s.
    let peer = spawn(|_| Reply::Slow(Duration::from_secs(3), paid_node("order-1"))).await;
    let mut config = config(&peer);
    config.timeout = Duration::from_millis(200);
    let started = std::time::Instant::now();
    let answer = pay(&AlipayClient::new(config).unwrap()).await;
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "gave up at the timeout"
    );
    assert!(
        matches!(&answer.outcome, PayOutcome::Unknown { reason } if reason.contains("200 ms")),
        "{answer:?}"
    );
}

#[tokio::test]
async fn an_unreachable_gateway_proves_nothing() {
    // Bind and drop a listener: nothing answers on that port.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    drop(listener);
    let config = AlipayConfig::new(
        APP_ID,
        app_private_key(),
        alipay_public_key(),
        format!("http://{address}/gateway.do"),
    );
    let answer = pay(&AlipayClient::new(config).unwrap()).await;
    assert!(
        matches!(answer.outcome, PayOutcome::Unknown { .. }),
        "{answer:?}"
    );
}

#[tokio::test]
async fn the_auth_code_echoed_in_an_answer_is_masked() {
    // A hostile (but validly signed) answer quoting the code: it reaches no code or reason.
    let peer = spawn(|call| {
        let code = call.biz["auth_code"].as_str().unwrap();
        Reply::Node(json!({"code": "40004", "sub_code": "ACQ.PAYMENT_FAIL", "sub_msg": format!("code {code} failed")}))
    })
    .await;
    let answer = pay(&client(&peer)).await;
    assert_eq!(
        answer.outcome,
        PayOutcome::Failed {
            code: "ACQ.PAYMENT_FAIL".to_owned()
        }
    );
    assert_eq!(
        answer.codes.get("sub_msg"),
        Some("code 28**************41 failed")
    );
}

#[tokio::test]
async fn long_channel_text_is_capped_before_it_is_stored_or_logged() {
    // A validly signed answer with megabytes of text: a sub_msg, an unknown
    // sub_code the reason quotes, and an unlisted trade_status.
    let peer = spawn(|_| {
        Reply::Node(json!({
            "code": "40004",
            "msg": "Business Failed",
            "sub_code": format!("ACQ.{}", "X".repeat(50_000)),
            "sub_msg": "很长".repeat(50_000),
        }))
    })
    .await;
    let answer = pay(&client(&peer)).await;
    let capped = |text: &str| {
        text.ends_with(CUT_MARK)
            && text.chars().count() == CHANNEL_TEXT_MAX_CHARS + CUT_MARK.chars().count()
    };
    let sub_msg = answer.codes.get("sub_msg").unwrap();
    assert!(capped(sub_msg), "{} chars", sub_msg.chars().count());
    assert!(sub_msg.starts_with("很长很长"));
    assert!(capped(answer.codes.get("sub_code").unwrap()));
    let text = match &answer.outcome {
        PayOutcome::Unknown { reason } => reason,
        PayOutcome::Failed { code } => code,
        other => panic!("{other:?}"),
    };
    assert!(
        text.chars().count() <= CHANNEL_TEXT_MAX_CHARS + CUT_MARK.chars().count(),
        "{} chars",
        text.chars().count()
    );
    let shown = format!("{answer:?}");
    assert!(shown.len() < 4_000, "{} bytes", shown.len());
}

#[tokio::test]
async fn a_query_reads_the_trade_status() {
    let peer = spawn(|call| {
        assert_eq!(call.biz, json!({"out_trade_no": "order-1"}));
        Reply::Node(json!({
            "code": "10000", "msg": "Success", "out_trade_no": "order-1", "trade_no": "2024010122001400000000000001",
            "trade_status": "TRADE_SUCCESS", "total_amount": 20.00, "send_pay_date": "2024-01-01 08:00:05"
        }))
    })
    .await;
    let answer = query(&client(&peer)).await;
    assert!(
        matches!(answer.outcome, QueryOutcome::Paid { .. }),
        "{answer:?}"
    );
    assert_eq!(answer.codes.get("trade_status"), Some("TRADE_SUCCESS"));
    assert_eq!(peer.calls()[0].method, "alipay.trade.query");
    let peer = spawn(|_| {
        Reply::Node(
            json!({"code": "40004", "msg": "Business Failed", "sub_code": "ACQ.TRADE_NOT_EXIST"}),
        )
    })
    .await;
    assert_eq!(query(&client(&peer)).await.outcome, QueryOutcome::NotFound);
    peer.assert_all_signed();
}

#[tokio::test]
async fn a_query_paid_for_another_amount_or_before_submission_is_another_trade() {
    let paid = |total_amount: Value, send_pay_date: Value| {
        json!({
            "code": "10000", "msg": "Success", "out_trade_no": "order-1", "trade_no": "2024010122001400000000000001",
            "trade_status": "TRADE_SUCCESS", "total_amount": total_amount, "send_pay_date": send_pay_date
        })
    };
    for node in [
        paid(json!("20.01"), json!("2024-01-01 08:00:05")),
        paid(json!(2000), json!("2024-01-01 08:00:05")),
        // 07:50:00 China time, over a minute before the order was submitted (07:55:05).
        paid(json!("20.00"), json!("2024-01-01 07:50:00")),
    ] {
        let peer = spawn(move |_| Reply::Node(node.clone())).await;
        let answer = query(&client(&peer)).await;
        assert!(
            matches!(answer.outcome, QueryOutcome::OtherTrade { .. }),
            "{answer:?}"
        );
    }
    // Without an amount, nothing ties it to the order either way.
    let peer = spawn(move |_| Reply::Node(paid(Value::Null, json!("2024-01-01 08:00:05")))).await;
    let answer = query(&client(&peer)).await;
    assert!(
        matches!(answer.outcome, QueryOutcome::Unknown { .. }),
        "{answer:?}"
    );
    // Neither send_pay_date nor gmt_payment: paid, at a time the answer does not give.
    let peer = spawn(move |_| Reply::Node(paid(json!("20.00"), Value::Null))).await;
    assert_eq!(
        query(&client(&peer)).await.outcome,
        QueryOutcome::Paid {
            channel_trade_no: "2024010122001400000000000001".to_owned(),
            paid_at: None,
        }
    );
}

#[tokio::test]
async fn cancel_asks_again_refunds_or_says_the_window_closed() {
    let peer = spawn(|_| Reply::Node(json!({"code": "10000", "msg": "Success", "out_trade_no": "order-1", "retry_flag": "Y"}))).await;
    let answer = client(&peer).revoke(&order()).await;
    assert!(
        matches!(answer.outcome, RevokeOutcome::MustRetry { .. }),
        "{answer:?}"
    );
    assert_eq!(answer.codes.get("retry_flag"), Some("Y"));
    assert_eq!(peer.calls()[0].method, "alipay.trade.cancel");

    let peer = spawn(|_| {
        Reply::Node(json!({"code": "10000", "msg": "Success", "out_trade_no": "order-1", "retry_flag": "N", "action": "refund", "trade_no": "t1"}))
    })
    .await;
    let answer = client(&peer).revoke(&order()).await;
    assert_eq!(
        answer.outcome,
        RevokeOutcome::Done {
            result: RevokeResult::Refunded
        }
    );
    assert_eq!(answer.codes.get("action"), Some("refund"));

    let peer = spawn(|_| {
        Reply::Node(json!({"code": "40004", "msg": "Business Failed", "sub_code": "ACQ.TRADE_CANCEL_TIME_OUT", "retry_flag": "N"}))
    })
    .await;
    let answer = client(&peer).revoke(&order()).await;
    assert_eq!(
        answer.outcome,
        RevokeOutcome::WindowClosed {
            code: "ACQ.TRADE_CANCEL_TIME_OUT".to_owned()
        }
    );
    peer.assert_all_signed();

    // 10000 without action: done, without saying whether money moved.
    let peer = spawn(|_| Reply::Node(json!({"code": "10000", "msg": "Success", "out_trade_no": "order-1", "retry_flag": "N"}))).await;
    assert_eq!(
        client(&peer).revoke(&order()).await.outcome,
        RevokeOutcome::Done {
            result: RevokeResult::Unspecified
        }
    );
}

#[tokio::test]
async fn a_refund_is_only_accepted_and_carries_its_number_and_amount() {
    let peer = spawn(|call| {
        assert_eq!(
            call.biz,
            json!({"out_trade_no": "order-1", "refund_amount": "5.00", "out_request_no": "refund-1", "refund_reason": "broken cup"})
        );
        Reply::Node(json!({"code": "10000", "msg": "Success", "out_trade_no": "order-1", "fund_change": "Y", "refund_fee": "5.00"}))
    })
    .await;
    let order_no = order();
    let refund_no = refund_no();
    let request = RefundRequest {
        order_no: &order_no,
        refund_no: &refund_no,
        refund_amount: money("5.00"),
        total_amount: money("20.00"),
        reason: "broken cup",
    };
    let answer = client(&peer).refund(request).await;
    assert_eq!(
        answer.outcome,
        RefundOutcome::Accepted {
            channel_refund_no: None
        }
    );
    assert_eq!(answer.codes.get("fund_change"), Some("Y"));
    assert_eq!(peer.calls()[0].method, "alipay.trade.refund");
    peer.assert_all_signed();
}

#[tokio::test]
async fn a_refund_query_succeeds_or_finds_nothing() {
    let peer = spawn(|call| {
        assert_eq!(
            call.biz,
            json!({"out_trade_no": "order-1", "out_request_no": "refund-1", "query_options": ["gmt_refund_pay"]})
        );
        Reply::Node(json!({
            "code": "10000", "msg": "Success", "out_trade_no": "order-1", "out_request_no": "refund-1",
            "refund_amount": "5.00", "total_amount": "20.00", "refund_status": "REFUND_SUCCESS", "gmt_refund_pay": "2024-01-02 10:00:00"
        }))
    })
    .await;
    let answer = refund_query(&client(&peer)).await;
    assert_eq!(
        answer.outcome,
        RefundOutcome::Succeeded {
            channel_refund_no: None,
            refunded_at: Utc.with_ymd_and_hms(2024, 1, 2, 2, 0, 0).unwrap()
        }
    );
    assert_eq!(peer.calls()[0].method, "alipay.trade.fastpay.refund.query");
    let peer = spawn(|_| {
        Reply::Node(json!({"code": "10000", "msg": "Success", "out_trade_no": "order-1"}))
    })
    .await;
    assert_eq!(
        refund_query(&client(&peer)).await.outcome,
        RefundOutcome::NotFound
    );
    peer.assert_all_signed();
    // REFUND_SUCCESS for another refund amount is not this refund.
    let peer = spawn(|_| {
        Reply::Node(json!({
            "code": "10000", "msg": "Success", "out_trade_no": "order-1", "out_request_no": "refund-1",
            "refund_amount": "4.00", "total_amount": "20.00", "refund_status": "REFUND_SUCCESS", "gmt_refund_pay": "2024-01-02 10:00:00"
        }))
    })
    .await;
    let outcome = refund_query(&client(&peer)).await.outcome;
    assert!(
        matches!(&outcome, RefundOutcome::Unknown { reason } if reason.contains("refund_amount")),
        "{outcome:?}"
    );
}

#[tokio::test]
async fn the_bill_url_is_fetched_then_the_zip() {
    // The URL's slashes come escaped, as Alipay sends them; the signature covers that text.
    let peer = spawn(|call| {
        assert_eq!(
            call.biz,
            json!({"bill_type": "trade", "bill_date": "2024-01-01"})
        );
        Reply::NodeText(
            r#"{"code":"10000","msg":"Success","bill_download_url":"{origin}\/bill.zip"}"#
                .to_owned(),
        )
    })
    .await;
    let date = NaiveDate::from_ymd_opt(2024, 1, 1).unwrap();
    let statement = client(&peer).download_statement(date).await.unwrap();
    assert_eq!(statement, StatementFile::AlipayZip(EMPTY_ZIP.to_vec()));
    assert_eq!(
        peer.calls()[0].method,
        "alipay.data.dataservice.bill.downloadurl.query"
    );
    peer.assert_all_signed();
}

#[tokio::test]
async fn no_bill_a_refused_bill_and_an_untrusted_bill() {
    let date = NaiveDate::from_ymd_opt(2024, 1, 1).unwrap();
    let peer = spawn(|_| Reply::Node(json!({"code": "40004", "msg": "Business Failed", "sub_code": "isp.bill_not_exist", "sub_msg": "账单不存在"}))).await;
    let statement = client(&peer).download_statement(date).await.unwrap();
    assert_eq!(
        statement,
        StatementFile::NoStatement {
            code: "isp.bill_not_exist".to_owned()
        }
    );
    let peer = spawn(|_| {
        Reply::Node(
            json!({"code": "40004", "sub_code": "isv.invalid_arguments", "sub_msg": "bad date"}),
        )
    })
    .await;
    let error = client(&peer).download_statement(date).await.unwrap_err();
    assert!(matches!(error, StatementError::Refused { .. }), "{error:?}");
    let peer = spawn(|_| {
        Reply::Forged(json!({"code": "10000", "bill_download_url": "http://127.0.0.1:1/x.zip"}))
    })
    .await;
    let error = client(&peer).download_statement(date).await.unwrap_err();
    assert!(matches!(error, StatementError::Untrusted(_)), "{error:?}");
    let peer = spawn(|_| Reply::Status(StatusCode::BAD_GATEWAY)).await;
    let error = client(&peer).download_statement(date).await.unwrap_err();
    assert!(matches!(error, StatementError::Transport(_)), "{error:?}");
}

#[tokio::test]
async fn a_missing_zip_is_a_transport_error() {
    let peer = spawn(|_| {
        Reply::Node(json!({"code": "10000", "bill_download_url": "{origin}/missing.zip"}))
    })
    .await;
    let error = client(&peer)
        .download_statement(NaiveDate::from_ymd_opt(2024, 1, 1).unwrap())
        .await
        .unwrap_err();
    assert!(
        matches!(&error, StatementError::Transport(reason) if reason.contains("404")),
        "{error:?}"
    );
}

#[tokio::test]
async fn service_provider_mode_sends_and_signs_the_app_auth_token() {
    let peer =
        spawn(|_| Reply::Node(json!({"code": "40004", "sub_code": "ACQ.TRADE_NOT_EXIST"}))).await;
    let mut config = config(&peer);
    config.app_auth_token = Some(Secret::from("201801BB000000000000000000000000"));
    let client = AlipayClient::new(config).unwrap();
    assert!(
        !format!("{client:?}").contains("201801BB"),
        "the token stays out of Debug"
    );
    assert_eq!(client.channel(), Channel::Alipay);
    query(&client).await;
    assert_eq!(
        peer.calls()[0].param("app_auth_token"),
        Some("201801BB000000000000000000000000")
    );
    peer.assert_all_signed();
}

#[test]
fn bad_configuration_names_the_setting_and_never_quotes_a_key() {
    let good = || {
        AlipayConfig::new(
            APP_ID,
            app_private_key(),
            alipay_public_key(),
            "https://openapi.alipay.com/gateway.do",
        )
    };
    assert!(AlipayClient::new(good()).is_ok());
    let refused = |config: AlipayConfig| {
        let error = AlipayClient::new(config).unwrap_err();
        assert!(!error.to_string().contains("MII"), "{error}");
        error
    };
    // The app key's PEM armour around a garbled body.
    let armour: Vec<String> = app_private_key()
        .lines()
        .filter(|line| line.starts_with("-----"))
        .map(str::to_owned)
        .collect();
    let malformed = refused(AlipayConfig {
        app_private_key: Secret::from(format!("{}\nMIIgarbage\n{}", armour[0], armour[1])),
        ..good()
    });
    assert_eq!(malformed.setting, setting::PRIVATE_KEY_FILE);
    assert_eq!(malformed.setting, "merchants.alipay.private_key_file");
    let weak = refused(AlipayConfig {
        app_private_key: Secret::from(weak_private_key()),
        ..good()
    });
    assert_eq!(weak.setting, setting::PRIVATE_KEY_FILE);
    assert!(weak.reason.contains("2048"), "{weak}");
    let public_as_private = refused(AlipayConfig {
        app_private_key: Secret::from(app_public_key()),
        ..good()
    });
    assert_eq!(public_as_private.setting, setting::PRIVATE_KEY_FILE);
    let bad_public = refused(AlipayConfig {
        alipay_public_key: "MIIBIjANBg".to_owned(),
        ..good()
    });
    assert_eq!(bad_public.setting, setting::ALIPAY_PUBLIC_KEY_FILE);
    assert_eq!(
        refused(AlipayConfig {
            app_id: String::new(),
            ..good()
        })
        .setting,
        setting::APP_ID
    );
    assert_eq!(
        refused(AlipayConfig {
            base_url: "openapi.alipay.com".to_owned(),
            ..good()
        })
        .setting,
        setting::BASE_URL
    );
    assert_eq!(
        refused(AlipayConfig {
            base_url: "ftp://x/gateway.do".to_owned(),
            ..good()
        })
        .setting,
        setting::BASE_URL
    );
    // Plain http only to a loopback address: a signed body never crosses a network in clear.
    let clear = refused(AlipayConfig {
        base_url: "http://openapi.alipay.com/gateway.do".to_owned(),
        ..good()
    });
    assert_eq!(clear.setting, setting::BASE_URL);
    assert!(clear.reason.contains("loopback"), "{clear}");
    assert!(
        AlipayClient::new(AlipayConfig {
            base_url: "http://localhost:8081/gateway.do".to_owned(),
            ..good()
        })
        .is_ok()
    );
    assert_eq!(
        refused(AlipayConfig {
            timeout: Duration::ZERO,
            ..good()
        })
        .setting,
        setting::TIMEOUT_MS
    );
}

#[test]
fn keys_load_from_files_and_a_missing_file_names_its_setting() {
    let dir = tempfile::tempdir().unwrap();
    let fixtures = dir.path();
    std::fs::write(fixtures.join("app_private_key.pem"), app_private_key()).unwrap();
    std::fs::write(fixtures.join("alipay_public_key.pem"), alipay_public_key()).unwrap();
    let config = AlipayConfig::load_files(
        APP_ID,
        &fixtures.join("app_private_key.pem"),
        &fixtures.join("alipay_public_key.pem"),
        "https://openapi.alipay.com/gateway.do",
    )
    .unwrap();
    assert!(AlipayClient::new(config).is_ok());
    let error = AlipayConfig::load_files(
        APP_ID,
        &fixtures.join("no_such_key.pem"),
        &fixtures.join("alipay_public_key.pem"),
        "https://openapi.alipay.com/gateway.do",
    )
    .unwrap_err();
    assert_eq!(error.setting, setting::PRIVATE_KEY_FILE);
    assert!(error.reason.contains("no_such_key.pem"), "{error}");
}
