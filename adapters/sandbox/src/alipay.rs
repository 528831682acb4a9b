//! The sandbox's Alipay: the gateway (`/gateway.do`, form-encoded
//! parameters in the body or the query string) for the six methods the
//! ledger uses, and the bill zip download the bill-URL query points to
//! (docs/sandbox.md).
//!
//! Order of checks, as the gateway's: the `app_id` must be a configured
//! app, the RSA2 signature must verify with the app's public key (else an
//! unsigned `40002` node: `isv.invalid-app-id`, `isv.invalid-signature`);
//! then the method and its `biz_content`. Every other answer is the
//! method's `*_response` node signed with the sandbox's Alipay key, except
//! code `08`'s pay answer, whose signature does not match its node.

use chrono::{DateTime, NaiveDate, Utc};
use paycode_adapters::alipay::envelope::{ERROR_RESPONSE, response_node_name};
use paycode_adapters::alipay::sign::{self, SignError};
use paycode_adapters::alipay::wire;
use paycode_adapters::channel::rate_limit::Api;
use paycode_domain::Channel;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use super::codes::{self, Behaviour};
use super::statement::{ALIPAY_BUYER_LOGON_ID, alipay_account, yuan};
use super::store::TruthStore;
use super::truth::{
    RefundDecision, RevokeDecision, SandboxOrder, SandboxOrderState, SandboxRefundState,
};
use super::{AlipayApp, CallSummary, Handled, Inner, JSON, SandboxApi};

/// The gateway's path.
pub const GATEWAY_PATH: &str = "/gateway.do";
/// Where bill zips are downloaded (the name of Alipay's own resource).
pub const BILL_DOWNLOAD_PATH: &str = "/downloadBillFile.resource";
/// The sub_code of a day without a bill.
pub const BILL_NOT_EXIST: &str = "isp.bill_not_exist";
/// The largest amount Alipay takes, in fen (100,000,000.00 yuan).
const AMOUNT_MAX_FEN: u64 = 10_000_000_000;

/// The request's parameters: the query string's, then the body's.
pub(super) fn request_params(query: Option<&str>, body: &[u8]) -> Vec<(String, String)> {
    let mut params: Vec<(String, String)> = query
        .and_then(|query| serde_urlencoded::from_str(query).ok())
        .unwrap_or_default();
    if let Ok(body_params) = serde_urlencoded::from_bytes::<Vec<(String, String)>>(body) {
        params.extend(body_params);
    }
    params
}

fn param<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.as_str())
        .filter(|value| !value.is_empty())
}

fn api_of_method(method: Option<&str>) -> SandboxApi {
    let api = match method {
        Some(wire::METHOD_PAY) => Api::Pay,
        Some(wire::METHOD_QUERY) => Api::Query,
        Some(wire::METHOD_CANCEL) => Api::Revoke,
        Some(wire::METHOD_REFUND) => Api::Refund,
        Some(wire::METHOD_REFUND_QUERY) => Api::RefundQuery,
        Some(wire::METHOD_BILL_URL) => Api::Statement,
        _ => return SandboxApi::Other,
    };
    SandboxApi::Channel(api)
}

/// What a request names, read without checking anything.
pub(super) fn peek(params: &[(String, String)]) -> CallSummary {
    let biz: Value = param(params, "biz_content")
        .and_then(|text| serde_json::from_str(text).ok())
        .unwrap_or(Value::Null);
    summary_of(params, &biz, String::new())
}

fn summary_of(params: &[(String, String)], biz: &Value, answer: String) -> CallSummary {
    let field = |name: &str| biz.get(name).and_then(Value::as_str).map(str::to_owned);
    CallSummary {
        api: api_of_method(param(params, "method")),
        merchant_id: param(params, "app_id").unwrap_or_default().to_owned(),
        out_trade_no: field("out_trade_no"),
        refund_no: field("out_request_no"),
        answer,
    }
}

/// A method's answer node, before it is signed.
struct Node {
    fields: Map<String, Value>,
    forged: bool,
    hold: bool,
}

impl Node {
    fn success(mut fields: Map<String, Value>) -> Node {
        fields.insert("code".to_owned(), json!("10000"));
        fields.insert("msg".to_owned(), json!("Success"));
        Node {
            fields,
            forged: false,
            hold: false,
        }
    }

    fn with_code(code: &str, msg: &str, sub: Option<(&str, &str)>) -> Node {
        let mut fields = Map::new();
        fields.insert("code".to_owned(), json!(code));
        fields.insert("msg".to_owned(), json!(msg));
        if let Some((sub_code, sub_msg)) = sub {
            fields.insert("sub_code".to_owned(), json!(sub_code));
            fields.insert("sub_msg".to_owned(), json!(sub_msg));
        }
        Node {
            fields,
            forged: false,
            hold: false,
        }
    }

    fn business_failed(sub_code: &str, sub_msg: &str) -> Node {
        Node::with_code("40004", "Business Failed", Some((sub_code, sub_msg)))
    }

    fn with(mut self, name: &str, value: impl Into<Value>) -> Node {
        self.fields.insert(name.to_owned(), value.into());
        self
    }

    /// The kind recorded for the call.
    fn kind(&self) -> String {
        let text = |name: &str| self.fields.get(name).and_then(Value::as_str);
        let mut kind = text("code").unwrap_or_default().to_owned();
        if let Some(sub_code) = text("sub_code") {
            kind.push('/');
            kind.push_str(sub_code);
        }
        if let Some(action) = text("action") {
            kind.push_str(" action=");
            kind.push_str(action);
        }
        if text("retry_flag") == Some("Y") {
            kind.push_str(" retry_flag=Y");
        }
        if self.forged {
            kind.push_str(" forged-signature");
        }
        kind
    }
}

fn object<const N: usize>(pairs: [(&str, Value); N]) -> Map<String, Value> {
    pairs
        .into_iter()
        .map(|(name, value)| (name.to_owned(), value))
        .collect()
}

fn store_failed(error: &rusqlite::Error) -> Node {
    tracing::error!(%error, "sandbox state store failed");
    Node::with_code(
        "20000",
        "Service Currently Unavailable",
        Some(("isp.unknow-error", "系统繁忙")),
    )
}

/// An unsigned answer under `node_name`: what the gateway answers when it
/// cannot or will not sign for the caller.
fn unsigned(node_name: &str, node: &Node, summary: CallSummary) -> Handled {
    let body = json!({ node_name: Value::Object(node.fields.clone()) }).to_string();
    Handled {
        status: axum::http::StatusCode::OK,
        content_type: JSON,
        body: body.into_bytes(),
        summary,
        hold: false,
    }
}

/// Handles one gateway call.
pub(super) fn handle(inner: &Inner, params: &[(String, String)], host: Option<&str>) -> Handled {
    let method = param(params, "method");
    let node_name = match api_of_method(method) {
        SandboxApi::Other => ERROR_RESPONSE.to_owned(),
        _ => method.map(response_node_name).unwrap_or_default(),
    };
    let biz: Value = param(params, "biz_content")
        .and_then(|text| serde_json::from_str(text).ok())
        .unwrap_or(Value::Null);
    let summary = |node: &Node| summary_of(params, &biz, node.kind());
    let Some(app) = param(params, "app_id").and_then(|id| inner.alipay.get(id)) else {
        let node = Node::with_code(
            "40002",
            "Invalid Arguments",
            Some(("isv.invalid-app-id", "无效的AppID参数")),
        );
        return unsigned(&node_name, &node, summary(&node));
    };
    if let Err(error) = sign::verify_request(&app.public_key, params) {
        let sub = match error {
            SignError::UnsupportedSignType(_) => ("isv.invalid-signature-type", "无效的签名类型"),
            _ => (
                "isv.invalid-signature",
                "验签出错，建议检查签名字符串或签名私钥与应用公钥是否匹配",
            ),
        };
        let node = Node::with_code("40002", "Invalid Arguments", Some(sub));
        return unsigned(&node_name, &node, summary(&node));
    }
    let now = inner.clock.now();
    let node = if node_name == ERROR_RESPONSE {
        Node::with_code(
            "40002",
            "Invalid Arguments",
            Some(("isv.invalid-method", "不存在的方法名")),
        )
    } else if !biz.is_object() {
        Node::with_code(
            "40002",
            "Invalid Arguments",
            Some(("isv.invalid-biz-content", "biz_content参数无效")),
        )
    } else {
        match api_of_method(method) {
            SandboxApi::Channel(Api::Pay) => pay(inner, app, &biz, now),
            SandboxApi::Channel(Api::Query) => query(inner, app, &biz, now),
            SandboxApi::Channel(Api::Revoke) => cancel(inner, app, &biz, now),
            SandboxApi::Channel(Api::Refund) => refund(inner, app, &biz, now),
            SandboxApi::Channel(Api::RefundQuery) => refund_query(inner, app, &biz, now),
            SandboxApi::Channel(Api::Statement) => bill_url(inner, app, &biz, host, now),
            SandboxApi::StatementDownload | SandboxApi::Other => Node::with_code(
                "40002",
                "Invalid Arguments",
                Some(("isv.invalid-method", "不存在的方法名")),
            ),
        }
    };
    let summary = summary(&node);
    let node_json = Value::Object(node.fields).to_string();
    let key = &inner.alipay_private_key;
    let body = if node.forged {
        // A well-formed signature over other content: it does not verify.
        sign::sign_response_node(key, &format!("{node_json} "))
            .map(|forged| format!("{{\"{node_name}\":{node_json},\"sign\":\"{forged}\"}}"))
    } else {
        sign::build_named_envelope(key, &node_name, &node_json)
    };
    let body = body.unwrap_or_else(|error| {
        tracing::error!(%error, "sandbox cannot sign an Alipay answer");
        json!({ node_name: { "code": "20000", "msg": "Service Currently Unavailable" } })
            .to_string()
    });
    Handled {
        status: axum::http::StatusCode::OK,
        content_type: JSON,
        body: body.into_bytes(),
        summary,
        hold: node.hold,
    }
}

fn text<'a>(biz: &'a Value, name: &str) -> Option<&'a str> {
    biz.get(name)
        .and_then(Value::as_str)
        .filter(|value| !value.is_empty())
}

/// An amount in yuan as sent (a string, or a JSON number's text), in fen.
fn amount_fen(biz: &Value, name: &str) -> Option<u64> {
    let text = match biz.get(name)? {
        Value::String(text) => text.clone(),
        Value::Number(number) => number.to_string(),
        _ => return None,
    };
    wire::parse_yuan_fen(&text).filter(|fen| (1..=AMOUNT_MAX_FEN).contains(fen))
}

/// Alipay's `yyyy-MM-dd HH:mm:ss` China time.
fn alipay_time(at: DateTime<Utc>) -> String {
    wire::format_timestamp(at)
}

/// The buyer's Alipay user id, stable per trade.
fn buyer_user_id(order: &SandboxOrder) -> String {
    let tail = order
        .trade_no
        .get(order.trade_no.len().saturating_sub(12)..)
        .unwrap_or_default();
    format!("2088{tail:0>12}")
}

/// The order named by `trade_no` (preferred) or `out_trade_no`.
fn named_order(
    store: &TruthStore,
    app_id: &str,
    biz: &Value,
) -> rusqlite::Result<Option<SandboxOrder>> {
    if let Some(trade_no) = text(biz, "trade_no") {
        return store.load_by_trade_no(Channel::Alipay, app_id, trade_no);
    }
    match text(biz, "out_trade_no") {
        Some(out_trade_no) => store.load(Channel::Alipay, app_id, out_trade_no),
        None => Ok(None),
    }
}

fn trade_not_exist() -> Node {
    Node::business_failed("ACQ.TRADE_NOT_EXIST", "交易不存在")
}

fn paid_node(order: &SandboxOrder, paid_at: DateTime<Utc>) -> Node {
    let amount = yuan(order.amount_fen);
    Node::success(object([
        ("trade_no", json!(order.trade_no)),
        ("out_trade_no", json!(order.out_trade_no)),
        ("buyer_logon_id", json!(ALIPAY_BUYER_LOGON_ID)),
        ("buyer_user_id", json!(buyer_user_id(order))),
        ("total_amount", json!(amount)),
        ("receipt_amount", json!(amount)),
        ("buyer_pay_amount", json!(amount)),
        ("invoice_amount", json!(amount)),
        ("point_amount", json!("0.00")),
        ("gmt_payment", json!(alipay_time(paid_at))),
        (
            "fund_bill_list",
            json!([{ "fund_channel": "ALIPAYACCOUNT", "amount": amount }]),
        ),
    ]))
}

fn pay(inner: &Inner, app: &AlipayApp, biz: &Value, now: DateTime<Utc>) -> Node {
    let invalid = || Node::business_failed("ACQ.INVALID_PARAMETER", "参数无效");
    let Some(out_trade_no) = text(biz, "out_trade_no").filter(|v| v.len() <= 64) else {
        return invalid();
    };
    if !matches!(text(biz, "scene"), Some("bar_code" | "wave_code")) {
        return invalid();
    }
    let Some(total_fen) = amount_fen(biz, "total_amount") else {
        return invalid();
    };
    let subject = text(biz, "subject").unwrap_or_default();
    let failed_amounts = |node: Node| {
        node.with("out_trade_no", out_trade_no)
            .with("buyer_pay_amount", "0.00")
            .with("invoice_amount", "0.00")
            .with("point_amount", "0.00")
            .with("receipt_amount", "0.00")
    };
    let Some(code) =
        text(biz, "auth_code").and_then(|code| codes::valid_code(Channel::Alipay, code))
    else {
        return failed_amounts(Node::business_failed(
            "ACQ.PAYMENT_AUTH_CODE_INVALID",
            "支付失败，获取顾客账户信息失败，请顾客刷新付款码后重新收款，如再次收款失败，请联系管理员处理。",
        ));
    };
    let app_id = &app.config.app_id;
    let mut store = inner.store();
    if let Err(error) = store.count_pay_request(Channel::Alipay, app_id, out_trade_no) {
        return store_failed(&error);
    }
    let existing = match store.load(Channel::Alipay, app_id, out_trade_no) {
        Ok(existing) => existing,
        Err(error) => return store_failed(&error),
    };
    if let Some(mut order) = existing {
        order.settle(now);
        if let Err(error) = store.save(&order) {
            return store_failed(&error);
        }
        if order.amount_fen != total_fen || order.subject != subject {
            return failed_amounts(Node::business_failed(
                "ACQ.CONTEXT_INCONSISTENT",
                "交易信息被篡改",
            ));
        }
        return match order.state {
            SandboxOrderState::WaitingForPassword => waiting_node(&order),
            SandboxOrderState::Paid { .. } => failed_amounts(Node::business_failed(
                "ACQ.TRADE_HAS_SUCCESS",
                "交易已被支付",
            )),
            SandboxOrderState::Failed
            | SandboxOrderState::Closed { .. }
            | SandboxOrderState::Reversed { .. } => {
                failed_amounts(Node::business_failed("ACQ.TRADE_HAS_CLOSE", "交易已经关闭"))
            }
        };
    }
    let order = match Inner::new_order(
        &mut store,
        Channel::Alipay,
        app_id,
        out_trade_no,
        total_fen,
        subject,
        &code,
        now,
    ) {
        Ok(order) => order,
        Err(error) => return store_failed(&error),
    };
    drop(store);
    match order.behaviour {
        b if b.waits_for_password() => waiting_node(&order),
        Behaviour::InsufficientBalance => failed_amounts(Node::business_failed(
            "ACQ.BUYER_BALANCE_NOT_ENOUGH",
            "买家余额不足",
        )),
        Behaviour::SystemErrorButPaid => Node::with_code(
            "20000",
            "Service Currently Unavailable",
            Some(("isp.unknow-error", "系统繁忙")),
        ),
        behaviour => {
            let mut node = paid_node(&order, now);
            node.forged = behaviour == Behaviour::ForgedSignatureButPaid;
            node.hold = behaviour == Behaviour::NoAnswerButPaid;
            node
        }
    }
}

/// `10003`: the buyer is asked for the password.
fn waiting_node(order: &SandboxOrder) -> Node {
    Node::with_code("10003", " order success pay inprocess", None)
        .with("trade_no", order.trade_no.as_str())
        .with("out_trade_no", order.out_trade_no.as_str())
        .with("buyer_logon_id", ALIPAY_BUYER_LOGON_ID)
        .with("total_amount", yuan(order.amount_fen))
}

fn query(inner: &Inner, app: &AlipayApp, biz: &Value, now: DateTime<Utc>) -> Node {
    let mut store = inner.store();
    let order = match named_order(&store, &app.config.app_id, biz) {
        Ok(Some(mut order)) => {
            if order.settle(now) {
                if let Err(error) = store.save(&order) {
                    return store_failed(&error);
                }
            }
            order
        }
        Ok(None) => return trade_not_exist(),
        Err(error) => return store_failed(&error),
    };
    drop(store);
    let base = Node::success(object([
        ("trade_no", json!(order.trade_no)),
        ("out_trade_no", json!(order.out_trade_no)),
        ("buyer_logon_id", json!(ALIPAY_BUYER_LOGON_ID)),
        ("total_amount", json!(yuan(order.amount_fen))),
    ]));
    let paid = |node: Node, paid_at: DateTime<Utc>| {
        let amount = yuan(order.amount_fen);
        node.with("receipt_amount", amount.as_str())
            .with("buyer_pay_amount", amount.as_str())
            .with("invoice_amount", amount.as_str())
            .with("point_amount", "0.00")
            .with("send_pay_date", alipay_time(paid_at))
            .with("buyer_user_id", buyer_user_id(&order))
    };
    match order.state {
        SandboxOrderState::WaitingForPassword => base.with("trade_status", "WAIT_BUYER_PAY"),
        SandboxOrderState::Paid { paid_at } => {
            let status = if order.refunded_fen() >= order.amount_fen {
                "TRADE_CLOSED"
            } else if order.refund_window_passed(now) {
                "TRADE_FINISHED"
            } else {
                "TRADE_SUCCESS"
            };
            paid(base.with("trade_status", status), paid_at)
        }
        SandboxOrderState::Failed | SandboxOrderState::Closed { .. } => {
            base.with("trade_status", "TRADE_CLOSED")
        }
        SandboxOrderState::Reversed { paid_at, .. } => {
            paid(base.with("trade_status", "TRADE_CLOSED"), paid_at)
        }
    }
}

fn cancel(inner: &Inner, app: &AlipayApp, biz: &Value, now: DateTime<Utc>) -> Node {
    let mut store = inner.store();
    let mut order = match named_order(&store, &app.config.app_id, biz) {
        Ok(Some(order)) => order,
        // "未查询到交易": success, no action.
        Ok(None) => {
            let mut node = Node::success(Map::new()).with("retry_flag", "N");
            if let Some(out_trade_no) = text(biz, "out_trade_no") {
                node = node.with("out_trade_no", out_trade_no);
            }
            return node;
        }
        Err(error) => return store_failed(&error),
    };
    order.settle(now);
    let decision = order.revoke(now);
    if let Err(error) = store.save(&order) {
        return store_failed(&error);
    }
    drop(store);
    let done = |action: &str| {
        Node::success(object([
            ("trade_no", json!(order.trade_no)),
            ("out_trade_no", json!(order.out_trade_no)),
            ("retry_flag", json!("N")),
            ("action", json!(action)),
        ]))
    };
    let failed = |sub_code: &str, sub_msg: &str, retry: &str| {
        Node::business_failed(sub_code, sub_msg)
            .with("out_trade_no", order.out_trade_no.as_str())
            .with("retry_flag", retry)
    };
    match decision {
        RevokeDecision::MustRetry { .. } => failed("ACQ.SYSTEM_ERROR", "系统错误", "Y"),
        RevokeDecision::WindowClosed => {
            failed("ACQ.TRADE_CANCEL_TIME_OUT", "超过撤销时间范围", "N")
        }
        RevokeDecision::AlreadyRefunded => failed("ACQ.TRADE_STATUS_ERROR", "交易状态不合法", "N"),
        RevokeDecision::Closed => done("close"),
        RevokeDecision::Refunded => {
            let refunded_at = match order.state {
                SandboxOrderState::Reversed { reversed_at, .. } => reversed_at,
                _ => now,
            };
            done("refund").with("gmt_refund_pay", alipay_time(refunded_at))
        }
    }
}

fn refund(inner: &Inner, app: &AlipayApp, biz: &Value, now: DateTime<Utc>) -> Node {
    let Some(refund_fen) = amount_fen(biz, "refund_amount") else {
        return Node::business_failed("ACQ.INVALID_PARAMETER", "参数无效");
    };
    let mut store = inner.store();
    let mut order = match named_order(&store, &app.config.app_id, biz) {
        Ok(Some(order)) => order,
        Ok(None) => return trade_not_exist(),
        Err(error) => return store_failed(&error),
    };
    order.settle(now);
    // Without a request number, Alipay files the refund under the order number.
    let refund_no = text(biz, "out_request_no")
        .unwrap_or(&order.out_trade_no)
        .to_owned();
    let mut id_error = None;
    let decision = {
        let store = &mut *store;
        order.request_refund(
            &refund_no,
            refund_fen,
            || {
                Inner::new_refund_id(store, now).unwrap_or_else(|error| {
                    id_error = Some(error);
                    String::new()
                })
            },
            now,
        )
    };
    if let Some(error) = id_error {
        return store_failed(&error);
    }
    if let Err(error) = store.save(&order) {
        return store_failed(&error);
    }
    drop(store);
    let failed = |sub_code: &str, sub_msg: &str| {
        Node::business_failed(sub_code, sub_msg)
            .with("out_trade_no", order.out_trade_no.as_str())
            .with("trade_no", order.trade_no.as_str())
    };
    match decision {
        RefundDecision::Accepted { refund, new } => Node::success(object([
            ("trade_no", json!(order.trade_no)),
            ("out_trade_no", json!(order.out_trade_no)),
            ("buyer_logon_id", json!(ALIPAY_BUYER_LOGON_ID)),
            ("buyer_user_id", json!(buyer_user_id(&order))),
            ("fund_change", json!(if new { "Y" } else { "N" })),
            ("refund_fee", json!(yuan(order.refunded_fen()))),
            ("send_back_fee", json!(yuan(refund.amount_fen))),
            ("gmt_refund_pay", json!(alipay_time(refund.requested_at))),
        ])),
        RefundDecision::NotPaid => failed("ACQ.TRADE_STATUS_ERROR", "交易状态不合法"),
        RefundDecision::Reversed => failed("ACQ.TRADE_HAS_CLOSE", "交易已经关闭"),
        RefundDecision::Overdue => failed("ACQ.TRADE_HAS_FINISHED", "交易已完结"),
        RefundDecision::NumberReused { .. } => failed(
            "ACQ.REFUND_AMT_NOT_EQUAL_TOTAL",
            "退款金额与原退款请求不一致",
        ),
        RefundDecision::ExceedsPaid { .. } | RefundDecision::TooMany => {
            failed("ACQ.REFUND_AMT_NOT_EQUAL_TOTAL", "退款金额超限")
        }
    }
}

fn refund_query(inner: &Inner, app: &AlipayApp, biz: &Value, now: DateTime<Utc>) -> Node {
    let store = inner.store();
    let order = match named_order(&store, &app.config.app_id, biz) {
        Ok(Some(order)) => order,
        Ok(None) => return trade_not_exist(),
        Err(error) => return store_failed(&error),
    };
    drop(store);
    let refund_no = text(biz, "out_request_no").unwrap_or(&order.out_trade_no);
    let base = Node::success(object([
        ("trade_no", json!(order.trade_no)),
        ("out_trade_no", json!(order.out_trade_no)),
    ]));
    // No such refund: no refund fields at all, as Alipay answers.
    let Some(refund) = order.refund(refund_no) else {
        return base;
    };
    let with_time = biz
        .get("query_options")
        .and_then(Value::as_array)
        .is_some_and(|options| {
            options
                .iter()
                .any(|o| o.as_str() == Some(wire::QUERY_OPTION_GMT_REFUND_PAY))
        });
    let node = base
        .with("out_request_no", refund.refund_no.as_str())
        .with("total_amount", yuan(order.amount_fen))
        .with("refund_amount", yuan(refund.amount_fen));
    match refund.state(now) {
        SandboxRefundState::Processing => node.with("refund_status", "REFUND_PROCESSING"),
        SandboxRefundState::Succeeded { at } => {
            let node = node.with("refund_status", "REFUND_SUCCESS");
            if with_time {
                node.with("gmt_refund_pay", alipay_time(at))
            } else {
                node
            }
        }
    }
}

/// The token of a bill URL: not a secret (the sandbox is for tests), just
/// enough that a URL is only valid for its own app and day.
fn bill_token(app_id: &str, date: NaiveDate) -> String {
    let digest = Sha256::digest(format!("sandbox-bill:{app_id}:{date}").as_bytes());
    hex::encode(&digest[..16])
}

fn bill_url(
    inner: &Inner,
    app: &AlipayApp,
    biz: &Value,
    host: Option<&str>,
    _now: DateTime<Utc>,
) -> Node {
    if text(biz, "bill_type") != Some(wire::BILL_TYPE_TRADE) {
        return Node::business_failed("isv.invalid-bill-type", "账单类型不支持");
    }
    let Some(date) =
        text(biz, "bill_date").and_then(|d| NaiveDate::parse_from_str(d, "%Y-%m-%d").ok())
    else {
        return Node::business_failed("isv.invalid-bill-date", "账单日期格式不正确");
    };
    let app_id = &app.config.app_id;
    match inner.alipay_zip(app_id, date) {
        Ok(Some(_)) => {}
        Ok(None) => return Node::business_failed(BILL_NOT_EXIST, "账单不存在"),
        Err(error) => {
            tracing::error!(%error, "sandbox bill failed");
            return Node::with_code(
                "20000",
                "Service Currently Unavailable",
                Some(("isp.unknow-error", "系统繁忙")),
            );
        }
    }
    let base = match (&inner.public_base_url, host) {
        (Some(base), _) => base.clone(),
        (None, Some(host)) => format!("http://{host}"),
        (None, None) => "http://127.0.0.1".to_owned(),
    };
    let day = date.format("%Y%m%d").to_string();
    let account = alipay_account(app_id);
    let query = serde_urlencoded::to_string([
        ("bizType", "trade"),
        ("userId", app_id.as_str()),
        ("fileType", "csv.zip"),
        ("bizDates", day.as_str()),
        ("downloadFileName", &format!("{account}_{day}.csv.zip")),
        ("token", &bill_token(app_id, date)),
    ])
    .unwrap_or_default();
    Node::success(object([(
        "bill_download_url",
        json!(format!("{base}{BILL_DOWNLOAD_PATH}?{query}")),
    )]))
}

/// Serves a bill zip: the bill of the URL's app and day, as of now.
pub(super) fn download(inner: &Inner, query: Option<&str>) -> Handled {
    let params: Vec<(String, String)> = query
        .and_then(|query| serde_urlencoded::from_str(query).ok())
        .unwrap_or_default();
    let app_id = param(&params, "userId").unwrap_or_default().to_owned();
    let summary = |answer: &str| CallSummary {
        api: SandboxApi::StatementDownload,
        merchant_id: app_id.clone(),
        out_trade_no: None,
        refund_no: None,
        answer: answer.to_owned(),
    };
    let not_found = |reason: &str| Handled {
        status: axum::http::StatusCode::NOT_FOUND,
        content_type: super::TEXT,
        body: reason.as_bytes().to_vec(),
        summary: summary("HTTP 404"),
        hold: false,
    };
    let date =
        param(&params, "bizDates").and_then(|day| NaiveDate::parse_from_str(day, "%Y%m%d").ok());
    let Some(date) = date.filter(|date| {
        inner.alipay.contains_key(&app_id)
            && param(&params, "token") == Some(bill_token(&app_id, *date).as_str())
    }) else {
        return not_found("no such bill");
    };
    match inner.alipay_zip(&app_id, date) {
        Ok(Some(zip)) => Handled {
            status: axum::http::StatusCode::OK,
            content_type: "application/zip",
            body: zip,
            summary: summary("zip"),
            hold: false,
        },
        Ok(None) => not_found("no such bill"),
        Err(error) => {
            tracing::error!(%error, "sandbox bill failed");
            Handled {
                status: axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                content_type: super::TEXT,
                body: b"bill unavailable".to_vec(),
                summary: summary("HTTP 500"),
                hold: false,
            }
        }
    }
}
