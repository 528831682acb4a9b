//! The simulation's network: the real channel clients' requests go, without
//! sockets, to the sandbox's router in this process (WeChat's XML endpoints,
//! Alipay's gateway), and the answers come back through the clients'
//! parsing, signature checks and judges. Between the two sits the seeded
//! misbehaviour of a real network and of a channel's edge cases:
//!
//! - a request that never arrives, or arrives twice;
//! - an answer that is lost after the channel acted, comes late (past the
//!   client's timeout: then lost), is a 5xx, has no signature or a forged one;
//! - an answer whose fields differ from the honest one, re-signed with the
//!   channel's real key (so only the judge's field checks can catch it): a
//!   system error while the payment went through, `recall=Y` /
//!   `retry_flag=Y`, optional fields missing, another order's number,
//!   another amount.
//!
//! Every draw comes from one seeded generator in call order, so a seed
//! replays the same faults. Pay calls are counted per order number here,
//! before any duplication: the simulation's "never charged twice" check.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use axum::body::Body;
use axum::http::{Request, header};
use paycode_adapters::alipay::envelope;
use paycode_adapters::alipay::sign as alipay_sign;
use paycode_adapters::channel::transport::{Answer, Post, Transport, TransportError};
use paycode_adapters::wechat::SignType;
use paycode_adapters::wechat::sign::{self as wechat_sign, ApiKey};
use paycode_adapters::wechat::xml;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rsa::RsaPrivateKey;
use tower::ServiceExt;

/// How often each fault strikes, per thousand calls.
#[derive(Debug, Clone, Copy, Default)]
pub struct NetworkFaults {
    /// Never delivered: the client hears a connection error.
    pub unreached_per_mille: u16,
    /// Delivered and acted on, answer lost: the client times out.
    pub lost_per_mille: u16,
    /// Delivered twice (a retransmission); the second answer is dropped.
    pub duplicated_per_mille: u16,
    /// Answered `503` without being acted on.
    pub server_error_per_mille: u16,
    /// Answered after a delay; past the client's timeout it is lost.
    pub late_per_mille: u16,
    /// Answered without its signature.
    pub unsigned_per_mille: u16,
    /// Answered with a signature that does not verify.
    pub forged_per_mille: u16,
    /// Answered with one field changed and signed again with the real key.
    pub altered_per_mille: u16,
}

/// What the network did, for the trace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkEvent {
    pub api: &'static str,
    pub order_no: String,
    pub what: String,
}

/// The simulated network between the clients and the sandbox.
pub struct SimTransport {
    router: axum::Router,
    wechat_key: ApiKey,
    wechat_sign_type: SignType,
    alipay_key: RsaPrivateKey,
    faults: Mutex<NetworkFaults>,
    rng: Mutex<StdRng>,
    /// Pay calls made by paycode, per order number (before duplication).
    pay_calls: Mutex<BTreeMap<String, u32>>,
    events: Mutex<Vec<NetworkEvent>>,
    /// This Alipay never sends the optional payment times (`gmt_payment`,
    /// `send_pay_date`): a dialect, not a fault.
    omit_alipay_payment_times: std::sync::atomic::AtomicBool,
}

impl std::fmt::Debug for SimTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimTransport").finish_non_exhaustive()
    }
}

impl SimTransport {
    pub fn new(
        router: axum::Router,
        wechat_key: ApiKey,
        wechat_sign_type: SignType,
        alipay_key: RsaPrivateKey,
        seed: u64,
    ) -> Self {
        SimTransport {
            router,
            wechat_key,
            wechat_sign_type,
            alipay_key,
            faults: Mutex::new(NetworkFaults::default()),
            rng: Mutex::new(StdRng::seed_from_u64(seed ^ 0x6e65_7477_6f72_6b21)),
            pay_calls: Mutex::new(BTreeMap::new()),
            events: Mutex::new(Vec::new()),
            omit_alipay_payment_times: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// From now on, Alipay's answers leave out the optional payment times.
    pub fn omit_alipay_payment_times(&self) {
        self.omit_alipay_payment_times
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// The answer without Alipay's optional payment times, signed again.
    fn without_payment_times(&self, call: &Call, body: &[u8]) -> Option<Vec<u8>> {
        let text = std::str::from_utf8(body).ok()?;
        let envelope = envelope::extract(text, call.method.as_deref()?).ok()?;
        let mut node: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(envelope.node_raw).ok()?;
        let removed = ["gmt_payment", "send_pay_date"]
            .iter()
            .filter(|field| node.remove(**field).is_some())
            .count();
        if removed == 0 {
            return None;
        }
        let node_json = serde_json::to_string(&node).ok()?;
        alipay_sign::build_named_envelope(&self.alipay_key, &envelope.node_name, &node_json)
            .ok()
            .map(String::into_bytes)
    }

    pub fn set_faults(&self, faults: NetworkFaults) {
        *lock(&self.faults) = faults;
    }

    /// How often paycode called pay for each order number.
    pub fn pay_calls(&self) -> BTreeMap<String, u32> {
        lock(&self.pay_calls).clone()
    }

    /// Everything the network did to a call, oldest first.
    pub fn events(&self) -> Vec<NetworkEvent> {
        lock(&self.events).clone()
    }

    fn draw(&self, per_mille: u16) -> bool {
        per_mille > 0 && lock(&self.rng).gen_range(0..1000) < per_mille
    }

    fn note(&self, call: &Call, what: impl Into<String>) {
        lock(&self.events).push(NetworkEvent {
            api: call.api,
            order_no: call.order_no.clone(),
            what: what.into(),
        });
    }

    /// The sandbox's answer to `post`, as the router gives it.
    async fn deliver(&self, post: &Post) -> Answer {
        let request = Request::post(path_of(&post.url))
            .header(header::CONTENT_TYPE, post.content_type)
            .header(header::HOST, "sandbox.localhost")
            .body(Body::from(post.body.clone()))
            .unwrap_or_else(|error| unreachable!("a simulated request builds: {error}"));
        self.route(request).await
    }

    /// Hands `request` to the sandbox's router, without sockets.
    async fn route(&self, request: Request<Body>) -> Answer {
        let response = self
            .router
            .clone()
            .oneshot(request)
            .await
            .unwrap_or_else(|never| match never {});
        let status = response.status().as_u16();
        let body = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .map(|bytes| bytes.to_vec())
            .unwrap_or_default();
        Answer {
            status,
            date: None,
            body,
        }
    }

    /// The answer with one field changed, signed again; `None` when this
    /// answer has nothing worth changing.
    fn altered(&self, call: &Call, body: &[u8]) -> Option<(Vec<u8>, String)> {
        let text = std::str::from_utf8(body).ok()?;
        let choice = lock(&self.rng).gen_range(0..1000u32);
        match call.channel {
            Protocol::Wechat => {
                let mut params = xml::parse(text).ok()?;
                params.get("sign")?;
                let what = alter_wechat(call.api, &mut params, choice)?;
                params.remove("sign");
                let sign = wechat_sign::sign(&params, &self.wechat_key, self.wechat_sign_type);
                params.insert("sign".to_owned(), sign);
                Some((xml::to_xml(&params).into_bytes(), what))
            }
            Protocol::Alipay => {
                let method = call.method.as_deref()?;
                let envelope = envelope::extract(text, method).ok()?;
                if envelope.is_error_response() {
                    return None;
                }
                let mut node: serde_json::Map<String, serde_json::Value> =
                    serde_json::from_str(envelope.node_raw).ok()?;
                let what = alter_alipay(call.api, &mut node, choice)?;
                let node_json = serde_json::to_string(&node).ok()?;
                let body = alipay_sign::build_named_envelope(
                    &self.alipay_key,
                    &envelope.node_name,
                    &node_json,
                )
                .ok()?;
                Some((body.into_bytes(), what))
            }
        }
    }

    fn unsigned(call: &Call, body: &[u8]) -> Option<Vec<u8>> {
        let text = std::str::from_utf8(body).ok()?;
        match call.channel {
            Protocol::Wechat => {
                let mut params = xml::parse(text).ok()?;
                params.remove("sign")?;
                Some(xml::to_xml(&params).into_bytes())
            }
            Protocol::Alipay => {
                let envelope = envelope::extract(text, call.method.as_deref()?).ok()?;
                Some(format!("{{\"{}\":{}}}", envelope.node_name, envelope.node_raw).into_bytes())
            }
        }
    }

    fn forged(call: &Call, body: &[u8]) -> Option<Vec<u8>> {
        let text = std::str::from_utf8(body).ok()?;
        match call.channel {
            Protocol::Wechat => {
                let mut params = xml::parse(text).ok()?;
                let sign = params.get_mut("sign")?;
                *sign = "0".repeat(sign.len().max(32));
                Some(xml::to_xml(&params).into_bytes())
            }
            Protocol::Alipay => {
                let envelope = envelope::extract(text, call.method.as_deref()?).ok()?;
                envelope.sign.as_ref()?;
                Some(
                    format!(
                        "{{\"{}\":{},\"sign\":\"{}\"}}",
                        envelope.node_name,
                        envelope.node_raw,
                        "A".repeat(344)
                    )
                    .into_bytes(),
                )
            }
        }
    }
}

#[async_trait]
impl Transport for SimTransport {
    async fn post(&self, request: Post) -> Result<Answer, TransportError> {
        let call = Call::of(&request);
        if call.api == "pay" {
            *lock(&self.pay_calls)
                .entry(call.order_no.clone())
                .or_insert(0) += 1;
        }
        let faults = *lock(&self.faults);
        if call.api == "statement" {
            // Statements are read once the faults are healed; keep them honest.
            return Ok(self.deliver(&request).await);
        }
        if self.draw(faults.unreached_per_mille) {
            self.note(&call, "never delivered");
            return Err(TransportError::Connect("simulated: unreachable".to_owned()));
        }
        if self.draw(faults.server_error_per_mille) {
            self.note(&call, "503 before acting");
            return Ok(Answer {
                status: 503,
                date: None,
                body: b"busy".to_vec(),
            });
        }
        let mut answer = self.deliver(&request).await;
        if call.channel == Protocol::Alipay
            && self
                .omit_alipay_payment_times
                .load(std::sync::atomic::Ordering::Relaxed)
            && let Some(body) = self.without_payment_times(&call, &answer.body)
        {
            answer.body = body;
        }
        if self.draw(faults.duplicated_per_mille) {
            self.note(&call, "delivered twice");
            let _ = self.deliver(&request).await;
        }
        if self.draw(faults.lost_per_mille) {
            self.note(&call, "acted on, answer lost");
            tokio::time::sleep(request.timeout).await;
            return Err(TransportError::Timeout(request.timeout));
        }
        if self.draw(faults.late_per_mille) {
            let late = lock(&self.rng).gen_range(0..request.timeout.as_millis() * 2);
            let late = Duration::from_millis(u64::try_from(late).unwrap_or(u64::MAX));
            if late >= request.timeout {
                self.note(&call, "answered past the timeout");
                tokio::time::sleep(request.timeout).await;
                return Err(TransportError::Timeout(request.timeout));
            }
            self.note(&call, format!("answered {} ms late", late.as_millis()));
            tokio::time::sleep(late).await;
        }
        if answer.is_success() {
            if self.draw(faults.unsigned_per_mille) {
                if let Some(body) = Self::unsigned(&call, &answer.body) {
                    self.note(&call, "answered without a signature");
                    answer.body = body;
                }
            } else if self.draw(faults.forged_per_mille) {
                if let Some(body) = Self::forged(&call, &answer.body) {
                    self.note(&call, "answered with a forged signature");
                    answer.body = body;
                }
            } else if self.draw(faults.altered_per_mille)
                && let Some((body, what)) = self.altered(&call, &answer.body)
            {
                self.note(&call, format!("answer altered and re-signed: {what}"));
                answer.body = body;
            }
        }
        Ok(answer)
    }

    async fn get(
        &self,
        url: &str,
        _max_bytes: usize,
        _timeout: Duration,
    ) -> Result<Answer, TransportError> {
        let request = Request::get(path_of(url))
            .header(header::HOST, "sandbox.localhost")
            .body(Body::empty())
            .unwrap_or_else(|error| unreachable!("a simulated request builds: {error}"));
        Ok(self.route(request).await)
    }
}

/// The path of `url` (what follows its host), `/` when it has none.
fn path_of(url: &str) -> &str {
    url.find("://")
        .and_then(|scheme| url[scheme + 3..].find('/').map(|path| scheme + 3 + path))
        .map_or("/", |start| &url[start..])
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Protocol {
    Wechat,
    Alipay,
}

/// What a request is, read off its path and body.
#[derive(Debug, Clone)]
struct Call {
    channel: Protocol,
    api: &'static str,
    /// Alipay's method.
    method: Option<String>,
    order_no: String,
}

impl Call {
    fn of(post: &Post) -> Call {
        let body = String::from_utf8_lossy(&post.body);
        if post.url.ends_with("/gateway.do") {
            let form: BTreeMap<String, String> =
                serde_urlencoded::from_str(&body).unwrap_or_default();
            let method = form.get("method").cloned();
            let biz: serde_json::Value = form
                .get("biz_content")
                .and_then(|text| serde_json::from_str(text).ok())
                .unwrap_or_default();
            let api = match method.as_deref() {
                Some("alipay.trade.pay") => "pay",
                Some("alipay.trade.query") => "query",
                Some("alipay.trade.cancel") => "revoke",
                Some("alipay.trade.refund") => "refund",
                Some("alipay.trade.fastpay.refund.query") => "refund_query",
                Some("alipay.data.dataservice.bill.downloadurl.query") => "statement",
                _ => "other",
            };
            return Call {
                channel: Protocol::Alipay,
                api,
                method,
                order_no: biz["out_trade_no"].as_str().unwrap_or_default().to_owned(),
            };
        }
        let params = xml::parse(&body).unwrap_or_default();
        let api = [
            ("/pay/micropay", "pay"),
            ("/pay/orderquery", "query"),
            ("/secapi/pay/reverse", "revoke"),
            ("/secapi/pay/refund", "refund"),
            ("/pay/refundquery", "refund_query"),
            ("/pay/downloadbill", "statement"),
        ]
        .iter()
        .find(|(path, _)| post.url.ends_with(path))
        .map_or("other", |(_, api)| *api);
        Call {
            channel: Protocol::Wechat,
            api,
            method: None,
            order_no: params
                .get("out_trade_no")
                .or_else(|| params.get("out_refund_no"))
                .cloned()
                .unwrap_or_default(),
        }
    }
}

/// One change to an honest WeChat answer of `api`; `choice` picks which.
/// Returns what changed, or `None` when nothing applies.
/// One way to change an answer; it says what it changed.
type Alteration<T> = Box<dyn Fn(&mut T) -> String>;

fn alter_wechat(api: &str, params: &mut xml::Params, choice: u32) -> Option<String> {
    let success = params.get("result_code").map(String::as_str) == Some("SUCCESS");
    let mut options: Vec<Alteration<xml::Params>> = Vec::new();
    if api == "pay" && success {
        options.push(Box::new(|p| {
            p.insert("result_code".into(), "FAIL".into());
            p.insert("err_code".into(), "SYSTEMERROR".into());
            p.insert("err_code_des".into(), "系统超时".into());
            "SYSTEMERROR while the payment went through".into()
        }));
    }
    if api == "revoke" {
        options.push(Box::new(|p| {
            p.insert("recall".into(), "Y".into());
            "recall=Y".into()
        }));
    }
    for field in ["total_fee", "refund_fee", "cash_fee"] {
        if params.contains_key(field) {
            let field = field.to_owned();
            options.push(Box::new(move |p| {
                let value: u64 = p[&field].parse().unwrap_or(0);
                p.insert(field.clone(), (value + 1).to_string());
                format!("{field} one fen more")
            }));
        }
    }
    if params.contains_key("out_trade_no") {
        options.push(Box::new(|p| {
            let other = format!("{}X", p["out_trade_no"]);
            p.insert("out_trade_no".into(), other);
            "another order's number".into()
        }));
    }
    for optional in [
        "openid",
        "is_subscribe",
        "bank_type",
        "fee_type",
        "cash_fee",
        "cash_fee_type",
        "attach",
        "device_info",
        "time_end",
    ] {
        if params.contains_key(optional) {
            let optional = optional.to_owned();
            options.push(Box::new(move |p| {
                p.remove(&optional);
                format!("without {optional}")
            }));
        }
    }
    if options.is_empty() {
        return None;
    }
    let index = usize::try_from(choice).unwrap_or(0) % options.len();
    Some(options[index](params))
}

/// One change to an honest Alipay answer node of `api`.
fn alter_alipay(
    api: &str,
    node: &mut serde_json::Map<String, serde_json::Value>,
    choice: u32,
) -> Option<String> {
    use serde_json::Value;
    let code = node
        .get("code")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_owned();
    let mut options: Vec<Alteration<serde_json::Map<String, Value>>> = Vec::new();
    if api == "pay" && code == "10000" {
        options.push(Box::new(|n| {
            n.insert("code".into(), Value::from("20000"));
            n.insert("msg".into(), Value::from("Service Currently Unavailable"));
            n.insert("sub_code".into(), Value::from("isp.unknow-error"));
            "20000 while the payment went through".into()
        }));
    }
    if api == "revoke" && code == "10000" {
        options.push(Box::new(|n| {
            n.insert("retry_flag".into(), Value::from("Y"));
            "retry_flag=Y".into()
        }));
        if node.contains_key("action") {
            options.push(Box::new(|n| {
                n.remove("action");
                "without action".into()
            }));
        }
    }
    for field in ["total_amount", "refund_fee", "refund_amount"] {
        if node.contains_key(field) {
            let field = field.to_owned();
            options.push(Box::new(move |n| {
                n.insert(field.clone(), Value::from("0.01"));
                format!("{field} 0.01")
            }));
        }
    }
    if node.contains_key("out_trade_no") {
        options.push(Box::new(|n| {
            let other = format!("{}X", n["out_trade_no"].as_str().unwrap_or(""));
            n.insert("out_trade_no".into(), Value::from(other));
            "another order's number".into()
        }));
    }
    for optional in [
        "total_amount",
        "send_pay_date",
        "gmt_payment",
        "buyer_logon_id",
        "buyer_user_id",
        "receipt_amount",
        "fund_bill_list",
        "gmt_refund_pay",
        "fund_change",
    ] {
        if node.contains_key(optional) {
            let optional = optional.to_owned();
            options.push(Box::new(move |n| {
                n.remove(&optional);
                format!("without {optional}")
            }));
        }
    }
    if node.contains_key("send_pay_date") && node.contains_key("gmt_payment") {
        options.push(Box::new(|n| {
            n.remove("send_pay_date");
            n.remove("gmt_payment");
            "without send_pay_date and gmt_payment".into()
        }));
    }
    if options.is_empty() {
        return None;
    }
    let index = usize::try_from(choice).unwrap_or(0) % options.len();
    Some(options[index](node))
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}
