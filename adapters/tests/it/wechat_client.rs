//! The WeChat Pay v2 client against a local peer: an axum server on
//! 127.0.0.1 port 0 that checks every request's signature and answers with
//! bodies built from the reference fixtures (the gochat round trips verbatim,
//! the official examples re-signed with the documented key). Each test
//! asserts the normalised outcome the ledger would see.
//!
//! The fixtures and the documented example key (published in WeChat's
//! documentation, so not a secret) are read at test time from the protocol
//! vectors in `adapters/testdata/vectors/` (`paycode_adapters::testing::vector`);
//! the client certificate is generated at test time (`support`). Nothing
//! secret is stored in the repository.

use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, NaiveDate, TimeZone, Utc};
use paycode_adapters::channel::rate_limit::RateLimits;
use paycode_adapters::channel::{
    ChannelClient, PayRequest, QueryRequest, RefundQueryRequest, RefundRequest, StatementError,
    StatementFile,
};
use paycode_adapters::testing;
use paycode_adapters::wechat::judge::PAY_DEFINITIVE_FAILURES;
use paycode_adapters::wechat::{
    ApiKey, ClientCertificate, Params, SignType, WechatClient, WechatConfig, sign, xml,
};
use paycode_domain::channel::{CHANNEL_TEXT_MAX_CHARS, CUT_MARK};
use paycode_domain::payment::{
    ChannelAnswer, PayOutcome, QueryOutcome, RefundOutcome, RevokeOutcome, RevokeResult,
};
use paycode_domain::{AuthCode, Channel, Money, OrderNo, RefundNo};
use serde_json::Value;

use crate::support;

/// The documented example API key, which signs the gochat round trips: read
/// from the protocol vector, not repeated in the code.
static KEY: LazyLock<String> = LazyLock::new(|| {
    testing::vector_json("wx_v2_micropay_roundtrip_gochat.json")["key"]
        .as_str()
        .expect("the round trip names its key")
        .to_owned()
});
const APPID: &str = "wx2421b1c4370ec43b";
const MCH_ID: &str = "10000100";
const ORDER: &str = "1415757673";
const REFUND: &str = "1415701182";
/// The official example's payment code; tests never print it.
const AUTH: &str = "120269300684844649";

/// The protocol fixtures, each read once at test time.
static MICROPAY_ROUNDTRIP: LazyLock<String> =
    LazyLock::new(|| testing::vector("wx_v2_micropay_roundtrip_gochat.json"));
static ORDERQUERY_ROUNDTRIP: LazyLock<String> =
    LazyLock::new(|| testing::vector("wx_v2_orderquery_roundtrip_gochat.json"));
static REFUND_ROUNDTRIP: LazyLock<String> =
    LazyLock::new(|| testing::vector("wx_v2_refund_roundtrip_gochat.json"));
static MICROPAY_SUCCESS: LazyLock<String> =
    LazyLock::new(|| testing::vector("wx_v2_micropay_resp_success_official.xml"));
static ORDERQUERY_SUCCESS: LazyLock<String> =
    LazyLock::new(|| testing::vector("wx_v2_orderquery_resp_success_official.xml"));
static ORDERNOTEXIST: LazyLock<String> =
    LazyLock::new(|| testing::vector("wx_v2_orderquery_resp_ordernotexist_zhangv.xml"));
static REVERSE_RECALL_N: LazyLock<String> =
    LazyLock::new(|| testing::vector("wx_v2_reverse_resp_recall_n_zhangv.xml"));
static REFUNDQUERY_PROCESSING: LazyLock<String> =
    LazyLock::new(|| testing::vector("wx_v2_refundquery_resp_processing_official.xml"));
static NO_BILL: LazyLock<String> =
    LazyLock::new(|| testing::vector("wx_v2_downloadbill_resp_no_bill_exist.xml"));
static BILL: LazyLock<String> =
    LazyLock::new(|| testing::vector("wx_v2_bill_all_legacy_wxjava.txt"));
static RETURN_FAIL: LazyLock<String> =
    LazyLock::new(|| testing::vector("wx_v2_resp_return_fail_sign_error_zhangv.xml"));

// ---- the peer -------------------------------------------------------------

/// What the peer answers to one request.
struct Reply {
    status: StatusCode,
    body: String,
    delay: Duration,
}

impl Reply {
    fn raw(body: &str) -> Reply {
        Reply {
            status: StatusCode::OK,
            body: body.to_owned(),
            delay: Duration::ZERO,
        }
    }

    /// `params` signed with the documented key (MD5).
    fn signed(params: Params) -> Reply {
        Reply::signed_with(params, SignType::Md5)
    }

    fn signed_with(mut params: Params, sign_type: SignType) -> Reply {
        sign::sign_request(&mut params, &ApiKey::from(KEY.as_str()), sign_type);
        Reply::raw(&xml::to_xml(&params))
    }

    fn status(status: StatusCode) -> Reply {
        Reply {
            status,
            body: "<html>server error</html>".to_owned(),
            delay: Duration::ZERO,
        }
    }

    fn after(mut self, delay: Duration) -> Reply {
        self.delay = delay;
        self
    }
}

type Responder = Box<dyn Fn(&str, &Params) -> Reply + Send + Sync>;

/// A stand-in for api.mch.weixin.qq.com.
struct Peer {
    sign_type: SignType,
    respond: Responder,
    /// Every request: its path and fields.
    requests: Mutex<Vec<(String, Params)>>,
    /// Requests whose signature did not verify.
    bad_signatures: Mutex<usize>,
}

impl Peer {
    fn requests(&self) -> Vec<(String, Params)> {
        self.requests.lock().unwrap().clone()
    }

    /// The only request, after checking that every request was signed right.
    fn single_request(&self) -> (String, Params) {
        assert_eq!(
            *self.bad_signatures.lock().unwrap(),
            0,
            "every request verifies"
        );
        let requests = self.requests();
        assert_eq!(requests.len(), 1);
        requests.into_iter().next().unwrap()
    }
}

async fn handle(State(peer): State<Arc<Peer>>, uri: Uri, body: String) -> Response {
    let Ok(params) = xml::parse(&body) else {
        return (StatusCode::BAD_REQUEST, "not XML").into_response();
    };
    let verified = sign::verify(&params, &ApiKey::from(KEY.as_str()), peer.sign_type);
    if !verified {
        *peer.bad_signatures.lock().unwrap() += 1;
    }
    peer.requests
        .lock()
        .unwrap()
        .push((uri.path().to_owned(), params.clone()));
    let reply = if verified {
        (peer.respond)(uri.path(), &params)
    } else {
        Reply::raw(&RETURN_FAIL)
    };
    tokio::time::sleep(reply.delay).await;
    (
        reply.status,
        [(header::CONTENT_TYPE, "text/xml; charset=utf-8")],
        reply.body,
    )
        .into_response()
}

/// Starts a peer answering with `respond`; returns it and its base URL.
async fn spawn_peer_with(
    sign_type: SignType,
    respond: impl Fn(&str, &Params) -> Reply + Send + Sync + 'static,
) -> (Arc<Peer>, String) {
    let peer = Arc::new(Peer {
        sign_type,
        respond: Box::new(respond),
        requests: Mutex::new(Vec::new()),
        bad_signatures: Mutex::new(0),
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base_url = format!("http://{}", listener.local_addr().unwrap());
    let app = Router::new().fallback(handle).with_state(peer.clone());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (peer, base_url)
}

async fn spawn_peer(
    respond: impl Fn(&str, &Params) -> Reply + Send + Sync + 'static,
) -> (Arc<Peer>, String) {
    spawn_peer_with(SignType::Md5, respond).await
}

// ---- the client side ------------------------------------------------------

fn config(base_url: &str) -> WechatConfig {
    WechatConfig::new(APPID, MCH_ID, ApiKey::from(KEY.as_str()), base_url)
}

fn client(base_url: &str) -> WechatClient {
    WechatClient::new(config(base_url)).unwrap()
}

fn order() -> OrderNo {
    OrderNo::parse(ORDER).unwrap()
}

fn refund_no() -> RefundNo {
    RefundNo::parse(REFUND).unwrap()
}

fn auth_code() -> AuthCode {
    AuthCode::parse(AUTH).unwrap()
}

fn one_fen() -> Money {
    Money::from_fen(1).unwrap()
}

/// When the order was submitted: five minutes before the fixtures' payment.
fn submitted_at() -> DateTime<Utc> {
    paid_at() - chrono::Duration::minutes(5)
}

/// How long a pay call may wait for its turn under the rate limit.
const WAIT_MAX: Duration = Duration::from_secs(15);

async fn pay(client: &WechatClient) -> ChannelAnswer<PayOutcome> {
    pay_waiting(client, WAIT_MAX).await
}

async fn pay_waiting(client: &WechatClient, wait_max: Duration) -> ChannelAnswer<PayOutcome> {
    let (order, code) = (order(), auth_code());
    client
        .pay(PayRequest {
            order_no: &order,
            auth_code: &code,
            amount: one_fen(),
            subject: "付款码支付测试",
            submitted_at: submitted_at(),
            wait_max,
        })
        .await
}

async fn query(client: &WechatClient) -> ChannelAnswer<QueryOutcome> {
    let order = order();
    client
        .query(QueryRequest {
            order_no: &order,
            amount: one_fen(),
            submitted_at: submitted_at(),
        })
        .await
}

async fn refund_query(client: &WechatClient) -> ChannelAnswer<RefundOutcome> {
    let (order, refund_no) = (order(), refund_no());
    client
        .refund_query(RefundQueryRequest {
            order_no: &order,
            refund_no: &refund_no,
            refund_amount: one_fen(),
            total_amount: one_fen(),
        })
        .await
}

fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap()
}

fn roundtrip_answer(fixture: &str) -> String {
    json(fixture)["response_raw_xml"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// A fixture's fields with `changes` applied (an empty value removes the field).
fn fields(xml_fixture: &str, changes: &[(&str, &str)]) -> Params {
    let mut params = xml::parse(xml_fixture).unwrap();
    params.remove("sign");
    for (name, value) in changes {
        if value.is_empty() {
            params.remove(*name);
        } else {
            params.insert((*name).to_owned(), (*value).to_owned());
        }
    }
    params
}

fn failure(err_code: &str) -> Params {
    fields(
        &RETURN_FAIL,
        &[
            ("return_code", "SUCCESS"),
            ("return_msg", "OK"),
            ("appid", APPID),
            ("mch_id", MCH_ID),
            ("nonce_str", "TN55wO9Pba5yENl8"),
            ("result_code", "FAIL"),
            ("err_code", err_code),
            ("err_code_des", "描述"),
        ],
    )
}

fn is_unknown_pay(outcome: &PayOutcome) -> bool {
    matches!(outcome, PayOutcome::Unknown { .. })
}

fn paid_at() -> DateTime<Utc> {
    // time_end 20141111170043 in China time.
    Utc.with_ymd_and_hms(2014, 11, 11, 9, 0, 43).unwrap()
}

// ---- micropay -------------------------------------------------------------

#[tokio::test]
async fn a_signed_micropay_success_is_paid() {
    // The gochat answer, verbatim, to a correctly signed request carrying the code in its body.
    let (peer, url) = spawn_peer(|_, _| Reply::raw(&roundtrip_answer(&MICROPAY_ROUNDTRIP))).await;
    let answer = pay(&client(&url)).await;
    assert_eq!(
        answer.outcome,
        PayOutcome::Paid {
            channel_trade_no: "1008450740201411110005820873".to_owned(),
            paid_at: Some(paid_at())
        }
    );
    assert_eq!(answer.codes.get("return_code"), Some("SUCCESS"));
    assert_eq!(answer.codes.get("result_code"), Some("SUCCESS"));
    let (path, request) = peer.single_request();
    assert_eq!(path, "/pay/micropay");
    assert!(
        request.get("auth_code").map(String::as_str) == Some(AUTH),
        "the code travels in the body"
    );
    for (name, value) in [
        ("appid", APPID),
        ("mch_id", MCH_ID),
        ("out_trade_no", ORDER),
        ("total_fee", "1"),
        ("body", "付款码支付测试"),
        ("spbill_create_ip", "127.0.0.1"),
    ] {
        assert_eq!(request.get(name).map(String::as_str), Some(value), "{name}");
    }
    assert_eq!(request["nonce_str"].len(), 32);
    assert!(
        !request.contains_key("sign_type"),
        "MD5 is the default and not sent"
    );
    assert!(!request.contains_key("sub_mch_id"));
}

#[tokio::test]
async fn userpaying_waits_for_the_password() {
    let (_, url) = spawn_peer(|_, _| Reply::signed(failure("USERPAYING"))).await;
    let answer = pay(&client(&url)).await;
    assert_eq!(answer.outcome, PayOutcome::WaitingForPassword);
    assert_eq!(answer.codes.get("err_code"), Some("USERPAYING"));
}

#[tokio::test]
async fn systemerror_is_unknown_and_keeps_its_codes() {
    let (_, url) = spawn_peer(|_, _| Reply::signed(failure("SYSTEMERROR"))).await;
    let answer = pay(&client(&url)).await;
    assert!(is_unknown_pay(&answer.outcome), "{:?}", answer.outcome);
    assert_eq!(answer.codes.get("result_code"), Some("FAIL"));
    assert_eq!(answer.codes.get("err_code"), Some("SYSTEMERROR"));
    assert_eq!(answer.codes.get("err_code_des"), Some("描述"));
}

#[tokio::test]
async fn a_definitive_failure_is_failed() {
    let (_, url) = spawn_peer(|_, _| Reply::signed(failure("AUTHCODEEXPIRE"))).await;
    let client = client(&url);
    assert_eq!(
        pay(&client).await.outcome,
        PayOutcome::Failed {
            code: "AUTHCODEEXPIRE".to_owned()
        }
    );
    // And every whitelisted code through the same wire.
    for code in PAY_DEFINITIVE_FAILURES {
        let (_, url) = spawn_peer(move |_, _| Reply::signed(failure(code))).await;
        assert_eq!(
            pay(&self::client(&url)).await.outcome,
            PayOutcome::Failed {
                code: code.to_owned()
            }
        );
    }
}

#[tokio::test]
async fn a_forged_signature_is_unknown() {
    // The genuine success answer with one digit of its sign changed, then signed with another key.
    let forged =
        roundtrip_answer(&MICROPAY_ROUNDTRIP).replace("1C3E24AACED0148F", "1C3E24AACED0148E");
    let (_, url) = spawn_peer(move |_, _| Reply::raw(&forged)).await;
    let answer = pay(&client(&url)).await;
    assert!(is_unknown_pay(&answer.outcome), "{:?}", answer.outcome);
    assert_eq!(
        answer.codes.get("result_code"),
        Some("SUCCESS"),
        "what it claimed is kept for auditors"
    );

    let mut other_key = fields(&MICROPAY_SUCCESS, &[]);
    sign::sign_request(&mut other_key, &ApiKey::from("0".repeat(32)), SignType::Md5);
    let body = xml::to_xml(&other_key);
    let (_, url) = spawn_peer(move |_, _| Reply::raw(&body)).await;
    assert!(is_unknown_pay(&pay(&client(&url)).await.outcome));

    let unsigned = xml::to_xml(&fields(&MICROPAY_SUCCESS, &[]));
    let (_, url) = spawn_peer(move |_, _| Reply::raw(&unsigned)).await;
    assert!(is_unknown_pay(&pay(&client(&url)).await.outcome));
}

#[tokio::test]
async fn a_success_for_another_order_or_amount_is_unknown() {
    for change in [
        ("out_trade_no", "1415757674"),
        ("total_fee", "100"),
        ("mch_id", "10000101"),
        ("appid", "wxother"),
    ] {
        let (_, url) =
            spawn_peer(move |_, _| Reply::signed(fields(&MICROPAY_SUCCESS, &[change]))).await;
        let outcome = pay(&client(&url)).await.outcome;
        match &outcome {
            PayOutcome::Unknown { reason } => {
                assert!(reason.contains(change.0), "{change:?}: {reason}");
            }
            other => panic!("{change:?}: {other:?}"),
        }
    }
}

#[tokio::test]
async fn a_truncated_body_is_unknown() {
    let answer = roundtrip_answer(&MICROPAY_ROUNDTRIP);
    let truncated = answer[..answer.len() - 20].to_owned();
    let (_, url) = spawn_peer(move |_, _| Reply::raw(&truncated)).await;
    assert!(is_unknown_pay(&pay(&client(&url)).await.outcome));
}

#[tokio::test]
async fn an_http_error_status_is_unknown() {
    let (_, url) = spawn_peer(|_, _| Reply::status(StatusCode::INTERNAL_SERVER_ERROR)).await;
    let outcome = pay(&client(&url)).await.outcome;
    assert_eq!(
        outcome,
        PayOutcome::Unknown {
            reason: "HTTP status 500 Internal Server Error".to_owned()
        }
    );
    // Redirects are not followed: the signed body goes to the configured URL only.
    let (_, url) = spawn_peer(|_, _| Reply::status(StatusCode::FOUND)).await;
    let outcome = pay(&client(&url)).await.outcome;
    assert_eq!(
        outcome,
        PayOutcome::Unknown {
            reason: "HTTP status 302 Found".to_owned()
        }
    );
}

#[tokio::test]
async fn an_oversized_answer_is_unknown() {
    let huge = format!(
        "<xml><return_msg>{}</return_msg></xml>",
        "x".repeat(2 << 20)
    );
    let (_, url) = spawn_peer(move |_, _| Reply::raw(&huge)).await;
    let outcome = pay(&client(&url)).await.outcome;
    match outcome {
        PayOutcome::Unknown { reason } => assert!(reason.contains("larger than"), "{reason}"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn return_code_fail_is_unknown() {
    let (_, url) = spawn_peer(|_, _| Reply::raw(&RETURN_FAIL)).await;
    let answer = pay(&client(&url)).await;
    assert_eq!(
        answer.outcome,
        PayOutcome::Unknown {
            reason: "return_code=FAIL: 签名失败".to_owned()
        }
    );
    assert_eq!(answer.codes.get("return_code"), Some("FAIL"));
}

#[tokio::test]
async fn no_answer_within_the_timeout_is_unknown() {
    // The rule under test is the client's own timeout: the peer sleeps longer than it.
    let (_, url) = spawn_peer(|_, _| {
        Reply::raw(&roundtrip_answer(&MICROPAY_ROUNDTRIP)).after(Duration::from_secs(2))
    })
    .await;
    let mut config = config(&url);
    config.timeout = Duration::from_millis(200);
    let client = WechatClient::new(config).unwrap();
    let started = Instant::now();
    let outcome = pay(&client).await.outcome;
    assert_eq!(
        outcome,
        PayOutcome::Unknown {
            reason: "no answer within 200 ms".to_owned()
        }
    );
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_refused_connection_is_unknown() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let outcome = pay(&client(&url)).await.outcome;
    match outcome {
        PayOutcome::Unknown { reason } => assert!(reason.starts_with("cannot connect"), "{reason}"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn long_channel_text_is_capped_before_it_is_stored_or_logged() {
    let capped = |text: &str| {
        text.ends_with(CUT_MARK)
            && text.chars().count() == CHANNEL_TEXT_MAX_CHARS + CUT_MARK.chars().count()
    };
    // Signed: an unlisted err_code the reason quotes, and a huge description.
    let (_, url) = spawn_peer(|_, _| {
        let mut answer = failure(&"E".repeat(100_000));
        answer.insert("err_code_des".to_owned(), "系统超时".repeat(20_000));
        Reply::signed(answer)
    })
    .await;
    let answer = pay(&client(&url)).await;
    assert!(capped(answer.codes.get("err_code_des").unwrap()));
    assert!(capped(answer.codes.get("err_code").unwrap()));
    match &answer.outcome {
        PayOutcome::Unknown { reason } => assert!(capped(reason), "{} chars", reason.len()),
        other => panic!("{other:?}"),
    }
    // Unsigned: return_code=FAIL with a huge return_msg, quoted by the reason.
    let (_, url) = spawn_peer(|_, _| {
        Reply::raw(&format!(
            "<xml><return_code>FAIL</return_code><return_msg>{}</return_msg></xml>",
            "签名失败".repeat(20_000)
        ))
    })
    .await;
    let answer = pay(&client(&url)).await;
    assert!(capped(answer.codes.get("return_msg").unwrap()));
    match &answer.outcome {
        PayOutcome::Unknown { reason } => assert!(capped(reason), "{} chars", reason.len()),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn an_echoed_payment_code_never_leaves_the_request_body() {
    // A peer that puts the code into a description and into the order number it answers.
    let (_, url) = spawn_peer(|_, request| {
        let code = request["auth_code"].clone();
        let mut answer = failure("SYSTEMERROR");
        answer.insert("err_code_des".to_owned(), format!("条码 {code} 系统超时"));
        answer.insert("out_trade_no".to_owned(), code);
        Reply::signed(answer)
    })
    .await;
    let answer = pay(&client(&url)).await;
    let shown = format!("{answer:?}");
    assert!(!shown.contains(AUTH), "the full code appears in the answer");
    assert!(
        shown.contains("12**************49"),
        "the mask stands in for it"
    );
    assert!(is_unknown_pay(&answer.outcome));
}

#[tokio::test]
async fn hmac_sha256_merchants_sign_and_verify_with_it() {
    let (peer, url) = spawn_peer_with(SignType::HmacSha256, |_, _| {
        Reply::signed_with(fields(&MICROPAY_SUCCESS, &[]), SignType::HmacSha256)
    })
    .await;
    let mut config = config(&url);
    config.sign_type = SignType::HmacSha256;
    let answer = pay(&WechatClient::new(config).unwrap()).await;
    assert!(
        matches!(answer.outcome, PayOutcome::Paid { .. }),
        "{:?}",
        answer.outcome
    );
    let (_, request) = peer.single_request();
    assert_eq!(request["sign_type"], "HMAC-SHA256");
    assert_eq!(request["sign"].len(), 64);

    // An MD5-signed answer to an HMAC request is not trusted.
    let (_, url) = spawn_peer_with(SignType::HmacSha256, |_, _| {
        Reply::signed(fields(&MICROPAY_SUCCESS, &[]))
    })
    .await;
    let mut config = self::config(&url);
    config.sign_type = SignType::HmacSha256;
    assert!(is_unknown_pay(
        &pay(&WechatClient::new(config).unwrap()).await.outcome
    ));
}

#[tokio::test]
async fn a_service_provider_sends_its_sub_merchant_and_checks_the_echo() {
    let (peer, url) = spawn_peer(|_, _| {
        Reply::signed(fields(
            &MICROPAY_SUCCESS,
            &[("sub_mch_id", "1900000109"), ("sub_appid", "wxsub")],
        ))
    })
    .await;
    let mut config = config(&url);
    config.sub_mch_id = Some("1900000109".to_owned());
    config.sub_appid = Some("wxsub".to_owned());
    let answer = pay(&WechatClient::new(config).unwrap()).await;
    assert!(
        matches!(answer.outcome, PayOutcome::Paid { .. }),
        "{:?}",
        answer.outcome
    );
    let (_, request) = peer.single_request();
    assert_eq!(request["sub_mch_id"], "1900000109");
    assert_eq!(request["sub_appid"], "wxsub");

    let (_, url) = spawn_peer(|_, _| {
        Reply::signed(fields(&MICROPAY_SUCCESS, &[("sub_mch_id", "1900000110")]))
    })
    .await;
    let mut config = self::config(&url);
    config.sub_mch_id = Some("1900000109".to_owned());
    assert!(is_unknown_pay(
        &pay(&WechatClient::new(config).unwrap()).await.outcome
    ));
}

#[tokio::test]
async fn every_call_waits_for_its_rate_limit_bucket() {
    // One pay per second: the second pay waits for a token instead of being dropped.
    let (peer, url) = spawn_peer(|_, _| Reply::signed(failure("USERPAYING"))).await;
    let mut config = config(&url);
    config.rate_limits = RateLimits {
        pay_per_sec: 1,
        ..RateLimits::WECHAT
    };
    let client = WechatClient::new(config).unwrap();
    let started = Instant::now();
    assert_eq!(pay(&client).await.outcome, PayOutcome::WaitingForPassword);
    assert_eq!(pay(&client).await.outcome, PayOutcome::WaitingForPassword);
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(peer.requests().len(), 2);
    // The query bucket is separate.
    let before = Instant::now();
    query(&client).await;
    assert!(before.elapsed() < Duration::from_millis(500));
}

#[tokio::test]
async fn a_pay_without_a_rate_limit_turn_within_its_wait_is_not_sent() {
    // One pay per second: the first takes the token; a second that may not
    // wait is not made at all, since the payment code would expire meanwhile.
    let (peer, url) = spawn_peer(|_, _| Reply::signed(failure("USERPAYING"))).await;
    let mut config = config(&url);
    config.rate_limits = RateLimits {
        pay_per_sec: 1,
        ..RateLimits::WECHAT
    };
    let client = WechatClient::new(config).unwrap();
    assert_eq!(
        pay_waiting(&client, Duration::ZERO).await.outcome,
        PayOutcome::WaitingForPassword,
        "a turn that is free now needs no wait"
    );
    assert_eq!(peer.requests().len(), 1);
    let started = Instant::now();
    let answer = pay_waiting(&client, Duration::ZERO).await;
    match &answer.outcome {
        PayOutcome::NotSent { reason } => assert!(reason.contains("rate limit"), "{reason}"),
        other => panic!("expected NotSent, got {other:?}"),
    }
    assert!(started.elapsed() < Duration::from_millis(500));
    assert_eq!(peer.requests().len(), 1, "no HTTP call was made");
    // A wait long enough for the next turn makes the call.
    assert_eq!(
        pay_waiting(&client, Duration::from_secs(5)).await.outcome,
        PayOutcome::WaitingForPassword
    );
    assert_eq!(peer.requests().len(), 2);
}

// ---- orderquery -----------------------------------------------------------

#[tokio::test]
async fn a_signed_query_success_is_paid() {
    let (peer, url) = spawn_peer(|_, _| Reply::raw(&roundtrip_answer(&ORDERQUERY_ROUNDTRIP))).await;
    let answer = query(&client(&url)).await;
    assert_eq!(
        answer.outcome,
        QueryOutcome::Paid {
            channel_trade_no: "1008450740201411110005820873".to_owned(),
            paid_at: Some(paid_at())
        }
    );
    assert_eq!(answer.codes.get("trade_state"), Some("SUCCESS"));
    let (path, request) = peer.single_request();
    assert_eq!(path, "/pay/orderquery");
    assert_eq!(request["out_trade_no"], ORDER);
    assert!(!request.contains_key("auth_code"));
}

#[tokio::test]
async fn query_trade_states_and_errors_are_normalised() {
    let cases = [
        (
            fields(&ORDERQUERY_SUCCESS, &[("trade_state", "USERPAYING")]),
            QueryOutcome::WaitingForPassword,
        ),
        (
            fields(&ORDERQUERY_SUCCESS, &[("trade_state", "NOTPAY")]),
            QueryOutcome::NotPaid,
        ),
        (
            fields(&ORDERQUERY_SUCCESS, &[("trade_state", "REVOKED")]),
            QueryOutcome::Closed,
        ),
        (
            fields(&ORDERQUERY_SUCCESS, &[("trade_state", "CLOSED")]),
            QueryOutcome::Closed,
        ),
        (
            fields(&ORDERQUERY_SUCCESS, &[("trade_state", "PAYERROR")]),
            QueryOutcome::Failed {
                code: "PAYERROR".to_owned(),
            },
        ),
        (
            fields(&ORDERQUERY_SUCCESS, &[("trade_state", "REFUND")]),
            QueryOutcome::RefundedElsewhere,
        ),
        (fields(&ORDERNOTEXIST, &[]), QueryOutcome::NotFound),
        // A paid answer without time_end is paid at an unknown time.
        (
            fields(&ORDERQUERY_SUCCESS, &[("time_end", "")]),
            QueryOutcome::Paid {
                channel_trade_no: "1008450740201411110005820873".to_owned(),
                paid_at: None,
            },
        ),
    ];
    for (answer, expected) in cases {
        let (_, url) = spawn_peer(move |_, _| Reply::signed(answer.clone())).await;
        assert_eq!(query(&client(&url)).await.outcome, expected);
    }
    for answer in [
        failure("SYSTEMERROR"),
        fields(&ORDERQUERY_SUCCESS, &[("out_trade_no", "1415757674")]),
        fields(&ORDERQUERY_SUCCESS, &[("trade_state", "SOMETHING_NEW")]),
        // Paid, but without an amount.
        fields(&ORDERQUERY_SUCCESS, &[("total_fee", "")]),
    ] {
        let (_, url) = spawn_peer(move |_, _| Reply::signed(answer.clone())).await;
        let outcome = query(&client(&url)).await.outcome;
        assert!(
            matches!(outcome, QueryOutcome::Unknown { .. }),
            "{outcome:?}"
        );
    }
}

#[tokio::test]
async fn a_query_paid_for_another_amount_or_before_submission_is_another_trade() {
    for (answer, field) in [
        // Another amount than the order's 1 fen.
        (
            fields(&ORDERQUERY_SUCCESS, &[("total_fee", "2")]),
            "total_fee",
        ),
        // Paid at 16:50:00, over a minute before the order was submitted (16:55:43).
        (
            fields(&ORDERQUERY_SUCCESS, &[("time_end", "20141111165000")]),
            "time_end",
        ),
    ] {
        let (_, url) = spawn_peer(move |_, _| Reply::signed(answer.clone())).await;
        let outcome = query(&client(&url)).await.outcome;
        assert!(
            matches!(&outcome, QueryOutcome::OtherTrade { reason } if reason.contains(field)),
            "{outcome:?}"
        );
    }
}

// ---- reverse --------------------------------------------------------------

#[tokio::test]
async fn a_reverse_with_recall_n_is_done_and_goes_to_the_secure_endpoint() {
    let (peer, url) = spawn_peer(|_, _| Reply::signed(fields(&REVERSE_RECALL_N, &[]))).await;
    let answer = client(&url).revoke(&order()).await;
    assert_eq!(
        answer.outcome,
        RevokeOutcome::Done {
            result: RevokeResult::Unspecified
        }
    );
    assert_eq!(answer.codes.get("recall"), Some("N"));
    let (path, request) = peer.single_request();
    assert_eq!(path, "/secapi/pay/reverse");
    assert_eq!(request["out_trade_no"], ORDER);
}

#[tokio::test]
async fn recall_y_and_userpaying_must_retry() {
    let recall_y = fields(&REVERSE_RECALL_N, &[("recall", "Y")]);
    let mut userpaying = failure("USERPAYING");
    userpaying.insert("recall".to_owned(), "N".to_owned());
    for answer in [recall_y, userpaying, failure("SYSTEMERROR")] {
        let (_, url) = spawn_peer(move |_, _| Reply::signed(answer.clone())).await;
        let outcome = client(&url).revoke(&order()).await.outcome;
        assert!(
            matches!(outcome, RevokeOutcome::MustRetry { .. }),
            "{outcome:?}"
        );
    }
    let (_, url) = spawn_peer(|_, _| Reply::signed(failure("REVERSE_EXPIRE"))).await;
    assert_eq!(
        client(&url).revoke(&order()).await.outcome,
        RevokeOutcome::WindowClosed {
            code: "REVERSE_EXPIRE".to_owned()
        }
    );
    let (_, url) = spawn_peer(|_, _| Reply::status(StatusCode::BAD_GATEWAY)).await;
    assert!(matches!(
        client(&url).revoke(&order()).await.outcome,
        RevokeOutcome::Unknown { .. }
    ));
}

// ---- refund ---------------------------------------------------------------

async fn refund(client: &WechatClient) -> RefundOutcome {
    let (order, refund_no) = (order(), refund_no());
    client
        .refund(RefundRequest {
            order_no: &order,
            refund_no: &refund_no,
            refund_amount: one_fen(),
            total_amount: one_fen(),
            reason: "顾客退货",
        })
        .await
        .outcome
}

#[tokio::test]
async fn a_refund_success_is_accepted_not_succeeded() {
    let (peer, url) = spawn_peer(|_, _| Reply::raw(&roundtrip_answer(&REFUND_ROUNDTRIP))).await;
    assert_eq!(
        refund(&client(&url)).await,
        RefundOutcome::Accepted {
            channel_refund_no: Some("2008450740201411110000174436".to_owned())
        }
    );
    let (path, request) = peer.single_request();
    assert_eq!(path, "/secapi/pay/refund");
    for (name, value) in [
        ("out_trade_no", ORDER),
        ("out_refund_no", REFUND),
        ("total_fee", "1"),
        ("refund_fee", "1"),
        ("op_user_id", MCH_ID),
        ("refund_desc", "顾客退货"),
    ] {
        assert_eq!(request.get(name).map(String::as_str), Some(value), "{name}");
    }
}

#[tokio::test]
async fn refund_failures_are_definitive_only_when_listed() {
    let (_, url) = spawn_peer(|_, _| Reply::signed(failure("TRADE_OVERDUE"))).await;
    assert_eq!(
        refund(&client(&url)).await,
        RefundOutcome::Failed {
            code: "TRADE_OVERDUE".to_owned()
        }
    );
    let (_, url) = spawn_peer(|_, _| Reply::signed(failure("BIZERR_NEED_RETRY"))).await;
    assert!(matches!(
        refund(&client(&url)).await,
        RefundOutcome::Unknown { .. }
    ));
    let wrong_amount = roundtrip_answer(&REFUND_ROUNDTRIP);
    let (_, url) =
        spawn_peer(move |_, _| Reply::signed(fields(&wrong_amount, &[("refund_fee", "2")]))).await;
    assert!(matches!(
        refund(&client(&url)).await,
        RefundOutcome::Unknown { .. }
    ));
}

// ---- refundquery ----------------------------------------------------------

#[tokio::test]
async fn each_refund_status_is_normalised() {
    let cases = [
        (
            fields(&REFUNDQUERY_PROCESSING, &[]),
            RefundOutcome::Processing,
        ),
        (
            fields(
                &REFUNDQUERY_PROCESSING,
                &[
                    ("refund_status_0", "SUCCESS"),
                    ("refund_success_time_0", "2014-11-11 17:10:05"),
                ],
            ),
            RefundOutcome::Succeeded {
                channel_refund_no: Some("2008450740201411110000174436".to_owned()),
                refunded_at: Utc.with_ymd_and_hms(2014, 11, 11, 9, 10, 5).unwrap(),
            },
        ),
        (
            fields(&REFUNDQUERY_PROCESSING, &[("refund_status_0", "FAIL")]),
            RefundOutcome::Failed {
                code: "FAIL".to_owned(),
            },
        ),
        (
            fields(&REFUNDQUERY_PROCESSING, &[("refund_status_0", "CHANGE")]),
            RefundOutcome::Abnormal {
                code: "CHANGE".to_owned(),
            },
        ),
        (failure("REFUNDNOTEXIST"), RefundOutcome::NotFound),
    ];
    for (answer, expected) in cases {
        let status = answer.get("refund_status_0").cloned();
        let (peer, url) = spawn_peer(move |_, _| Reply::signed(answer.clone())).await;
        let answer = refund_query(&client(&url)).await;
        assert_eq!(answer.outcome, expected);
        assert_eq!(
            answer.codes.get("refund_status_0").map(str::to_owned),
            status,
            "the raw status is kept"
        );
        let (path, request) = peer.single_request();
        assert_eq!(path, "/pay/refundquery");
        assert_eq!(request["out_refund_no"], REFUND);
    }
    let (_, url) = spawn_peer(|_, _| {
        Reply::signed(fields(
            &REFUNDQUERY_PROCESSING,
            &[("out_refund_no_0", "other")],
        ))
    })
    .await;
    let outcome = refund_query(&client(&url)).await.outcome;
    assert!(
        matches!(outcome, RefundOutcome::Unknown { .. }),
        "{outcome:?}"
    );
    // A refund of another amount than this one's is not this refund.
    let (_, url) = spawn_peer(|_, _| {
        Reply::signed(fields(
            &REFUNDQUERY_PROCESSING,
            &[("refund_status_0", "SUCCESS"), ("refund_fee_0", "2")],
        ))
    })
    .await;
    let outcome = refund_query(&client(&url)).await.outcome;
    assert!(
        matches!(&outcome, RefundOutcome::Unknown { reason } if reason.contains("refund_fee_0")),
        "{outcome:?}"
    );
}

// ---- downloadbill ---------------------------------------------------------

#[tokio::test]
async fn a_text_bill_is_the_statement() {
    let (peer, url) = spawn_peer(|_, _| Reply::raw(&BILL)).await;
    let date = NaiveDate::from_ymd_opt(2014, 11, 10).unwrap();
    let statement = client(&url).download_statement(date).await.unwrap();
    assert_eq!(statement, StatementFile::WechatText(BILL.to_owned()));
    let (path, request) = peer.single_request();
    assert_eq!(path, "/pay/downloadbill");
    assert_eq!(request["bill_date"], "20141110");
    assert_eq!(request["bill_type"], "ALL");
}

#[tokio::test]
async fn no_bill_exist_is_no_statement_and_errors_are_errors() {
    let date = NaiveDate::from_ymd_opt(2014, 11, 10).unwrap();
    let (_, url) = spawn_peer(|_, _| Reply::raw(&NO_BILL)).await;
    assert_eq!(
        client(&url).download_statement(date).await.unwrap(),
        StatementFile::NoStatement {
            code: "No Bill Exist".to_owned()
        }
    );
    let (_, url) =
        spawn_peer(|_, _| Reply::raw(&NO_BILL.replace("No Bill Exist", "invalid bill_type"))).await;
    assert!(matches!(
        client(&url).download_statement(date).await,
        Err(StatementError::Refused { .. })
    ));
    let (_, url) = spawn_peer(|_, _| Reply::status(StatusCode::SERVICE_UNAVAILABLE)).await;
    assert!(matches!(
        client(&url).download_statement(date).await,
        Err(StatementError::Transport(_))
    ));
}

// ---- configuration --------------------------------------------------------

#[test]
fn bad_configuration_names_the_setting() {
    // A throwaway self-signed client certificate and its key, made now.
    let (cert_pem, key_pem) = support::self_signed_client_certificate_pem();
    let https = "https://api.mch.weixin.qq.com";
    let error = WechatClient::new(config(https)).unwrap_err();
    assert_eq!(error.setting, "merchants.wechat.cert_file");

    let mut malformed = config(https);
    malformed.client_certificate = Some(ClientCertificate::from_pem(
        b"not a pem".to_vec(),
        key_pem.as_bytes().to_vec(),
    ));
    assert_eq!(
        WechatClient::new(malformed).unwrap_err().setting,
        "merchants.wechat.cert_file"
    );

    let mut swapped = config(https);
    swapped.client_certificate = Some(ClientCertificate::from_pem(
        cert_pem.as_bytes().to_vec(),
        cert_pem.as_bytes().to_vec(),
    ));
    assert_eq!(
        WechatClient::new(swapped).unwrap_err().setting,
        "merchants.wechat.cert_key_file"
    );

    let mut empty_key = config("http://127.0.0.1:1");
    empty_key.key = ApiKey::from("");
    empty_key.setting_prefix = "merchants.shop1.wechat".to_owned();
    let error = WechatClient::new(empty_key).unwrap_err();
    assert_eq!(error.setting, "merchants.shop1.wechat.key_file");
    assert!(
        error
            .to_string()
            .starts_with("merchants.shop1.wechat.key_file: "),
        "{error}"
    );

    let mut good = config(https);
    good.client_certificate = Some(ClientCertificate::from_pem(
        cert_pem.as_bytes().to_vec(),
        key_pem.as_bytes().to_vec(),
    ));
    let client =
        WechatClient::new(good).expect("a real certificate and key build the mutual-TLS client");
    assert_eq!(client.channel(), Channel::Wechat);
    let shown = format!("{client:?}");
    assert!(
        !shown.contains(KEY.as_str()) && !shown.contains("PRIVATE"),
        "secrets never print: {shown}"
    );
    for line in key_pem.lines() {
        assert!(!shown.contains(line), "the key never prints: {shown}");
    }
}
