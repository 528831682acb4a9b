//! Neither channel client follows an HTTP redirect: a signed request body
//! (a payment code in it) goes to the configured base URL and nowhere else.
//! A local "gateway" answers every request with a redirect (302, and 307,
//! which would re-send the body as it is) to a second local server, the
//! trap, that must never see a request. The outcome is unknown, to be
//! resolved by querying, as for any unproven answer.

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use paycode_adapters::alipay::{AlipayClient, AlipayConfig};
use paycode_adapters::channel::{ChannelClient, PayRequest};
use paycode_adapters::testing;
use paycode_adapters::wechat::{ApiKey, WechatClient, WechatConfig};
use paycode_domain::payment::PayOutcome;
use paycode_domain::{AuthCode, Money, OrderNo};

const WECHAT_CODE: &str = "134567890123456700";
const ALIPAY_CODE: &str = "2845678901234567800";

/// A server on 127.0.0.1 port 0 that records every request it receives
/// (method, path and body). Returns its origin and the record.
async fn trap() -> (String, Arc<Mutex<Vec<String>>>) {
    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    let record = seen.clone();
    let app = Router::new().fallback(move |request: axum::extract::Request| {
        let record = record.clone();
        async move {
            let line = format!("{} {}", request.method(), request.uri());
            let body = axum::body::to_bytes(request.into_body(), 1 << 20)
                .await
                .unwrap_or_default();
            record
                .lock()
                .unwrap()
                .push(format!("{line} {}", String::from_utf8_lossy(&body)));
            "<xml><return_code>SUCCESS</return_code></xml>"
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let origin = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (origin, seen)
}

/// A server on 127.0.0.1 port 0 that answers every request with `status`
/// and `Location: {target}{path}`. Returns its origin.
async fn redirector(status: StatusCode, target: String) -> String {
    let app = Router::new().fallback(move |uri: axum::http::Uri| {
        let location = format!("{target}{}", uri.path());
        async move { (status, [(header::LOCATION, location)]).into_response() }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let origin = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    origin
}

async fn pay(client: &dyn ChannelClient, code: &str) -> PayOutcome {
    let order_no = OrderNo::parse("R1").unwrap();
    let auth_code = AuthCode::parse(code).unwrap();
    client
        .pay(PayRequest {
            order_no: &order_no,
            auth_code: &auth_code,
            amount: Money::from_fen(1).unwrap(),
            subject: "Coffee",
            submitted_at: chrono::Utc::now(),
            wait_max: std::time::Duration::from_secs(5),
        })
        .await
        .outcome
}

fn wechat(base_url: &str) -> WechatClient {
    WechatClient::new(WechatConfig::new(
        "wx0000000000000000",
        "1900000000",
        ApiKey::from(testing::random_api_key()),
        base_url,
    ))
    .unwrap()
}

fn alipay(base_url: &str) -> AlipayClient {
    AlipayClient::new(AlipayConfig::new(
        "2021000000000000",
        testing::rsa_key_pair_pem("app", 2048).0,
        testing::rsa_key_pair_pem("alipay", 2048).1,
        base_url,
    ))
    .unwrap()
}

#[tokio::test]
async fn no_client_follows_a_redirect_and_the_target_sees_no_request() {
    for status in [StatusCode::FOUND, StatusCode::TEMPORARY_REDIRECT] {
        let (trap_origin, seen) = trap().await;
        let gateway = redirector(status, trap_origin).await;

        let outcome = pay(&wechat(&gateway), WECHAT_CODE).await;
        assert!(
            matches!(&outcome, PayOutcome::Unknown { reason } if reason.contains(status.as_str())),
            "WeChat, {status}: {outcome:?}"
        );
        let outcome = pay(&alipay(&format!("{gateway}/gateway.do")), ALIPAY_CODE).await;
        assert!(
            matches!(&outcome, PayOutcome::Unknown { reason } if reason.contains(status.as_str())),
            "Alipay, {status}: {outcome:?}"
        );
        let seen = seen.lock().unwrap();
        assert!(
            seen.is_empty(),
            "{status}: the redirect target saw {} request(s); a payment code went along: {}",
            seen.len(),
            seen.iter()
                .any(|request| request.contains(WECHAT_CODE) || request.contains(ALIPAY_CODE))
        );
    }
}
