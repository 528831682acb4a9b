//! The sandbox's WeChat Pay v2: the six XML endpoints, answered as WeChat
//! answers them (docs/rules.md), from the sandbox's truth.
//!
//! Order of checks, as WeChat's: the body must be UTF-8 XML; the `mch_id`
//! must be a configured merchant and the signature must verify with its key
//! and algorithm (else an unsigned `return_code=FAIL`, `签名失败`); the
//! `appid` must be the merchant's; then the business checks. Every
//! `return_code=SUCCESS` answer is signed with the merchant's key, except
//! code `08`'s pay answer, whose signature is forged. The bill is plain text
//! (unsigned, as WeChat's), and its failures unsigned XML.

use chrono::{DateTime, NaiveDate, Utc};
use paycode_adapters::channel::rate_limit::Api;
use paycode_adapters::wechat::sign::{self, ApiKey};
use paycode_adapters::wechat::xml::{self, Params};
use paycode_domain::Channel;
use paycode_domain::calendar::china_time;
use secrecy::ExposeSecret;

use super::codes::{self, Behaviour};
use super::statement::{WechatBillType, wechat_openid};
use super::store::{RefundKey, TruthStore};
use super::truth::{
    RefundDecision, RevokeDecision, SandboxOrder, SandboxOrderState, SandboxRefundState,
};
use super::{CallSummary, Handled, Inner, SandboxApi, SandboxWechat, TEXT, XML};

/// The bill failure text of a day without a line.
pub const NO_BILL_EXIST: &str = "No Bill Exist";

/// The API of a WeChat path.
pub fn api_of_path(path: &str) -> SandboxApi {
    use paycode_adapters::wechat::client::path;
    let api = match path {
        path::MICROPAY => Api::Pay,
        path::ORDER_QUERY => Api::Query,
        path::REVERSE => Api::Revoke,
        path::REFUND => Api::Refund,
        path::REFUND_QUERY => Api::RefundQuery,
        path::DOWNLOAD_BILL => Api::Statement,
        _ => return SandboxApi::Other,
    };
    SandboxApi::Channel(api)
}

/// What a request names, read without checking anything (for the record
/// of a call refused before processing).
pub(super) fn peek(api: SandboxApi, body: &[u8]) -> CallSummary {
    let params = std::str::from_utf8(body)
        .ok()
        .and_then(|text| xml::parse(text).ok())
        .unwrap_or_default();
    summary_of(api, &params, String::new())
}

fn summary_of(api: SandboxApi, params: &Params, answer: String) -> CallSummary {
    let field = |name: &str| params.get(name).filter(|v| !v.is_empty()).cloned();
    CallSummary {
        api,
        merchant_id: field("mch_id").unwrap_or_default(),
        out_trade_no: field("out_trade_no"),
        refund_no: field("out_refund_no"),
        answer,
    }
}

/// An unsigned `return_code=FAIL` answer.
fn return_fail(api: SandboxApi, params: &Params, message: &str) -> Handled {
    let body = xml::to_xml(&Params::from([
        ("return_code".to_owned(), "FAIL".to_owned()),
        ("return_msg".to_owned(), message.to_owned()),
    ]));
    Handled {
        status: axum::http::StatusCode::OK,
        content_type: XML,
        body: body.into_bytes(),
        summary: summary_of(api, params, "return_code=FAIL".to_owned()),
        hold: false,
    }
}

/// A business answer, before the envelope.
struct Reply {
    fields: Params,
    forged: bool,
    hold: bool,
}

impl Reply {
    fn success(fields: Params) -> Reply {
        let mut fields = fields;
        fields.insert("result_code".to_owned(), "SUCCESS".to_owned());
        Reply {
            fields,
            forged: false,
            hold: false,
        }
    }

    fn fail(err_code: &str, description: &str) -> Reply {
        Reply::fail_with(err_code, description, Params::new())
    }

    fn fail_with(err_code: &str, description: &str, mut fields: Params) -> Reply {
        fields.insert("result_code".to_owned(), "FAIL".to_owned());
        fields.insert("err_code".to_owned(), err_code.to_owned());
        fields.insert("err_code_des".to_owned(), description.to_owned());
        Reply {
            fields,
            forged: false,
            hold: false,
        }
    }

    /// The kind recorded for the call.
    fn kind(&self) -> String {
        let mut kind = match self.fields.get("result_code").map(String::as_str) {
            Some("SUCCESS") => "SUCCESS".to_owned(),
            _ => self.fields.get("err_code").cloned().unwrap_or_default(),
        };
        if self.fields.get("recall").map(String::as_str) == Some("Y") {
            kind.push_str(" recall=Y");
        }
        if self.forged {
            kind.push_str(" forged-signature");
        }
        kind
    }
}

fn fields<const N: usize>(pairs: [(&str, String); N]) -> Params {
    pairs
        .into_iter()
        .map(|(name, value)| (name.to_owned(), value))
        .collect()
}

/// Handles one WeChat call.
pub(super) fn handle(inner: &Inner, api: SandboxApi, body: &[u8]) -> Handled {
    let empty = Params::new();
    let Ok(text) = std::str::from_utf8(body) else {
        return return_fail(api, &empty, "NOT_UTF8");
    };
    let Ok(params) = xml::parse(text) else {
        return return_fail(api, &empty, "XML格式错误");
    };
    let Some(merchant) = params
        .get("mch_id")
        .and_then(|mch_id| inner.wechat.get(mch_id))
    else {
        return return_fail(api, &params, "mch_id参数错误");
    };
    let key = merchant.key.clone();
    if !sign::verify(&params, &key, merchant.sign_type) {
        return return_fail(api, &params, "签名失败");
    }
    let now = inner.clock.now();
    let reply = if params.get("appid") == Some(&merchant.appid) {
        match api {
            SandboxApi::Channel(Api::Pay) => pay(inner, merchant, &params, now),
            SandboxApi::Channel(Api::Query) => query(inner, merchant, &params, now),
            SandboxApi::Channel(Api::Revoke) => revoke(inner, merchant, &params, now),
            SandboxApi::Channel(Api::Refund) => refund(inner, merchant, &params, now),
            SandboxApi::Channel(Api::RefundQuery) => refund_query(inner, merchant, &params, now),
            SandboxApi::Channel(Api::Statement) => return bill(inner, merchant, &params, now),
            SandboxApi::StatementDownload | SandboxApi::Other => {
                return return_fail(api, &params, "unknown API");
            }
        }
    } else {
        Reply::fail("APPID_MCHID_NOT_MATCH", "appid和mch_id不匹配")
    };
    let kind = reply.kind();
    let hold = reply.hold;
    let body = envelope(merchant, &key, &params, reply);
    Handled {
        status: axum::http::StatusCode::OK,
        content_type: XML,
        body: body.into_bytes(),
        summary: summary_of(api, &params, kind),
        hold,
    }
}

/// The signed `return_code=SUCCESS` envelope around a business answer.
fn envelope(merchant: &SandboxWechat, key: &ApiKey, request: &Params, reply: Reply) -> String {
    let mut answer = reply.fields;
    answer.insert("return_code".to_owned(), "SUCCESS".to_owned());
    answer.insert("return_msg".to_owned(), "OK".to_owned());
    answer.insert("appid".to_owned(), merchant.appid.clone());
    answer.insert("mch_id".to_owned(), merchant.mch_id.clone());
    for echoed in ["sub_mch_id", "sub_appid", "device_info"] {
        if let Some(value) = request.get(echoed).filter(|v| !v.is_empty()) {
            answer.insert(echoed.to_owned(), value.clone());
        }
    }
    answer.insert("nonce_str".to_owned(), sign::new_nonce());
    let signature = if reply.forged {
        // Signed, but not with the merchant's key: a forgery.
        sign::sign(
            &answer,
            &ApiKey::from(format!("forged-{}", merchant.key.expose_secret())),
            merchant.sign_type,
        )
    } else {
        sign::sign(&answer, key, merchant.sign_type)
    };
    answer.insert("sign".to_owned(), signature);
    xml::to_xml(&answer)
}

/// WeChat's `yyyyMMddHHmmss` China time.
fn compact_time(at: DateTime<Utc>) -> String {
    at.with_timezone(&china_time())
        .format("%Y%m%d%H%M%S")
        .to_string()
}

/// The fields of a paid order, as micropay and orderquery answer them.
fn paid_fields(order: &SandboxOrder, paid_at: DateTime<Utc>) -> Params {
    let total_fee = order.amount_fen.to_string();
    fields([
        ("openid", wechat_openid(&order.trade_no)),
        ("is_subscribe", "N".to_owned()),
        ("trade_type", "MICROPAY".to_owned()),
        ("bank_type", "OTHERS".to_owned()),
        ("fee_type", "CNY".to_owned()),
        ("total_fee", total_fee.clone()),
        ("cash_fee_type", "CNY".to_owned()),
        ("cash_fee", total_fee),
        ("transaction_id", order.trade_no.clone()),
        ("out_trade_no", order.out_trade_no.clone()),
        ("time_end", compact_time(paid_at)),
    ])
}

/// A system error answer for a state store that failed.
fn store_failed(error: &rusqlite::Error) -> Reply {
    tracing::error!(%error, "sandbox state store failed");
    Reply::fail("SYSTEMERROR", "系统错误")
}

/// A required field, non-empty.
fn required<'a>(params: &'a Params, name: &str) -> Option<&'a str> {
    params
        .get(name)
        .map(String::as_str)
        .filter(|v| !v.is_empty())
}

/// The order named by `transaction_id` (preferred, as WeChat documents) or `out_trade_no`.
fn named_order(
    store: &TruthStore,
    mch_id: &str,
    params: &Params,
) -> rusqlite::Result<Option<SandboxOrder>> {
    if let Some(transaction_id) = required(params, "transaction_id") {
        return store.load_by_trade_no(Channel::Wechat, mch_id, transaction_id);
    }
    match required(params, "out_trade_no") {
        Some(out_trade_no) => store.load(Channel::Wechat, mch_id, out_trade_no),
        None => Ok(None),
    }
}

/// Parses an amount in fen: digits only, positive.
fn fen(params: &Params, name: &str) -> Option<u64> {
    let text = required(params, name)?;
    if !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok().filter(|fen| *fen > 0)
}

fn pay(inner: &Inner, merchant: &SandboxWechat, params: &Params, now: DateTime<Utc>) -> Reply {
    let Some(out_trade_no) = required(params, "out_trade_no").filter(|v| v.len() <= 32) else {
        return Reply::fail("PARAM_ERROR", "out_trade_no参数错误");
    };
    let Some(total_fee) = fen(params, "total_fee") else {
        return Reply::fail("PARAM_ERROR", "total_fee参数错误");
    };
    let subject = params.get("body").cloned().unwrap_or_default();
    let Some(code) = params
        .get("auth_code")
        .and_then(|code| codes::valid_code(Channel::Wechat, code))
    else {
        return Reply::fail(
            "AUTH_CODE_INVALID",
            "请扫描微信支付授权码(以10/11/12/13/14/15为前缀的18位数字)",
        );
    };
    let mut store = inner.store();
    if let Err(error) = store.count_pay_request(Channel::Wechat, &merchant.mch_id, out_trade_no) {
        return store_failed(&error);
    }
    let existing = match store.load(Channel::Wechat, &merchant.mch_id, out_trade_no) {
        Ok(existing) => existing,
        Err(error) => return store_failed(&error),
    };
    if let Some(mut order) = existing {
        // The same order number again: WeChat answers with the order's state.
        order.settle(now);
        if let Err(error) = store.save(&order) {
            return store_failed(&error);
        }
        if order.amount_fen != total_fee {
            return Reply::fail("OUT_TRADE_NO_USED", "商户订单号重复");
        }
        return match order.state {
            SandboxOrderState::WaitingForPassword => {
                Reply::fail("USERPAYING", "需要用户输入支付密码")
            }
            SandboxOrderState::Paid { .. } => Reply::fail("ORDERPAID", "订单已支付"),
            SandboxOrderState::Failed => Reply::fail("ORDERCLOSED", "订单已关闭"),
            SandboxOrderState::Closed { .. } | SandboxOrderState::Reversed { .. } => {
                Reply::fail("ORDERREVERSED", "订单已撤销")
            }
        };
    }
    let order = match Inner::new_order(
        &mut store,
        Channel::Wechat,
        &merchant.mch_id,
        out_trade_no,
        total_fee,
        &subject,
        &code,
        now,
    ) {
        Ok(order) => order,
        Err(error) => return store_failed(&error),
    };
    drop(store);
    let echo = |mut reply: Reply| {
        if let Some(attach) = params.get("attach").filter(|v| !v.is_empty()) {
            reply.fields.insert("attach".to_owned(), attach.clone());
        }
        reply
    };
    echo(match order.behaviour {
        b if b.waits_for_password() => Reply::fail_with(
            "USERPAYING",
            "需要用户输入支付密码",
            fields([("out_trade_no", order.out_trade_no.clone())]),
        ),
        Behaviour::InsufficientBalance => Reply::fail("NOTENOUGH", "余额不足"),
        Behaviour::SystemErrorButPaid => Reply::fail("SYSTEMERROR", "系统超时"),
        behaviour => {
            let mut reply = Reply::success(paid_fields(&order, now));
            reply.forged = behaviour == Behaviour::ForgedSignatureButPaid;
            reply.hold = behaviour == Behaviour::NoAnswerButPaid;
            reply
        }
    })
}

fn query(inner: &Inner, merchant: &SandboxWechat, params: &Params, now: DateTime<Utc>) -> Reply {
    let mut store = inner.store();
    let order = match named_order(&store, &merchant.mch_id, params) {
        Ok(Some(mut order)) => {
            if order.settle(now) {
                if let Err(error) = store.save(&order) {
                    return store_failed(&error);
                }
            }
            order
        }
        Ok(None) => return Reply::fail("ORDERNOTEXIST", "此交易订单号不存在"),
        Err(error) => return store_failed(&error),
    };
    drop(store);
    let sparse = |state: &str, description: &str| {
        fields([
            ("trade_state", state.to_owned()),
            ("trade_state_desc", description.to_owned()),
            ("out_trade_no", order.out_trade_no.clone()),
        ])
    };
    let answer = match order.state {
        SandboxOrderState::WaitingForPassword => sparse("USERPAYING", "需要用户输入支付密码"),
        SandboxOrderState::Paid { paid_at } => {
            let mut answer = paid_fields(&order, paid_at);
            let (state, description) = if order.refunds.is_empty() {
                ("SUCCESS", "支付成功")
            } else {
                ("REFUND", "转入退款")
            };
            answer.insert("trade_state".to_owned(), state.to_owned());
            answer.insert("trade_state_desc".to_owned(), description.to_owned());
            answer
        }
        SandboxOrderState::Failed => sparse("PAYERROR", "支付失败，请撤销订单"),
        SandboxOrderState::Closed { .. } => sparse("REVOKED", "订单已撤销"),
        SandboxOrderState::Reversed { .. } => {
            let mut answer = sparse("REVOKED", "订单已撤销");
            answer.insert("transaction_id".to_owned(), order.trade_no.clone());
            answer.insert("total_fee".to_owned(), order.amount_fen.to_string());
            answer
        }
    };
    Reply::success(answer)
}

fn revoke(inner: &Inner, merchant: &SandboxWechat, params: &Params, now: DateTime<Utc>) -> Reply {
    let mut store = inner.store();
    let mut order = match named_order(&store, &merchant.mch_id, params) {
        Ok(Some(order)) => order,
        // "SUCCESS will be returned by the Revoke API if the current requested order does not exist."
        Ok(None) => {
            return Reply::success(fields([("recall", "N".to_owned())]));
        }
        Err(error) => return store_failed(&error),
    };
    order.settle(now);
    let decision = order.revoke(now);
    if let Err(error) = store.save(&order) {
        return store_failed(&error);
    }
    let recall = |flag: &str| fields([("recall", flag.to_owned())]);
    match decision {
        RevokeDecision::MustRetry { user_paying: true } => {
            Reply::fail_with("USERPAYING", "正在支付中不能发起撤销", recall("Y"))
        }
        RevokeDecision::MustRetry { user_paying: false } => {
            Reply::fail_with("SYSTEMERROR", "系统超时，请重新调用撤销", recall("Y"))
        }
        RevokeDecision::WindowClosed => Reply::fail_with(
            "REVERSE_EXPIRE",
            "订单已超过撤销期限，请使用退款",
            recall("N"),
        ),
        RevokeDecision::AlreadyRefunded => {
            Reply::fail_with("TRADE_STATE_ERROR", "订单已发生退款，不能撤销", recall("N"))
        }
        RevokeDecision::Closed | RevokeDecision::Refunded => Reply::success(recall("N")),
    }
}

fn refund(inner: &Inner, merchant: &SandboxWechat, params: &Params, now: DateTime<Utc>) -> Reply {
    let Some(out_refund_no) = required(params, "out_refund_no").filter(|v| v.len() <= 64) else {
        return Reply::fail("PARAM_ERROR", "out_refund_no参数错误");
    };
    let (Some(total_fee), Some(refund_fee)) = (fen(params, "total_fee"), fen(params, "refund_fee"))
    else {
        return Reply::fail("PARAM_ERROR", "total_fee或refund_fee参数错误");
    };
    let mut store = inner.store();
    let mut order = match named_order(&store, &merchant.mch_id, params) {
        Ok(Some(order)) => order,
        Ok(None) => return Reply::fail("ORDERNOTEXIST", "订单不存在"),
        Err(error) => return store_failed(&error),
    };
    order.settle(now);
    if total_fee != order.amount_fen {
        return Reply::fail(
            "PARAM_ERROR",
            "订单金额或退款金额与之前请求不一致，请核实后再试",
        );
    }
    let mut id_error = None;
    let decision = {
        let store = &mut *store;
        order.request_refund(
            out_refund_no,
            refund_fee,
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
    match decision {
        RefundDecision::Accepted { refund, .. } => Reply::success(fields([
            ("transaction_id", order.trade_no.clone()),
            ("out_trade_no", order.out_trade_no.clone()),
            ("out_refund_no", refund.refund_no.clone()),
            ("refund_id", refund.refund_id.clone()),
            ("refund_channel", String::new()),
            ("refund_fee", refund.amount_fen.to_string()),
            ("total_fee", order.amount_fen.to_string()),
            ("cash_fee", order.amount_fen.to_string()),
            ("cash_refund_fee", refund.amount_fen.to_string()),
        ])),
        RefundDecision::NotPaid => Reply::fail("ERROR", "订单未支付"),
        RefundDecision::Reversed => Reply::fail("ERROR", "订单已撤销"),
        RefundDecision::Overdue => Reply::fail("TRADE_OVERDUE", "订单已经超过退款期限"),
        RefundDecision::NumberReused { .. } => Reply::fail(
            "PARAM_ERROR",
            "订单金额或退款金额与之前请求不一致，请核实后再试",
        ),
        RefundDecision::ExceedsPaid { .. } => Reply::fail("ERROR", "累计退款金额大于支付金额"),
        RefundDecision::TooMany => Reply::fail("ERROR", "退款次数超过限制"),
    }
}

fn refund_query(
    inner: &Inner,
    merchant: &SandboxWechat,
    params: &Params,
    now: DateTime<Utc>,
) -> Reply {
    let not_found = || Reply::fail("REFUNDNOTEXIST", "退款订单查询失败");
    let store = inner.store();
    // WeChat's priority: refund_id, out_refund_no, transaction_id, out_trade_no.
    let key = required(params, "refund_id")
        .map(RefundKey::Id)
        .or_else(|| required(params, "out_refund_no").map(RefundKey::Number));
    let order = match key {
        Some(key) => match store.order_of_refund(Channel::Wechat, &merchant.mch_id, key) {
            Ok(Some(out_trade_no)) => store.load(Channel::Wechat, &merchant.mch_id, &out_trade_no),
            Ok(None) => Ok(None),
            Err(error) => Err(error),
        },
        None => named_order(&store, &merchant.mch_id, params),
    };
    drop(store);
    let order = match order {
        Ok(Some(order)) => order,
        Ok(None) => return not_found(),
        Err(error) => return store_failed(&error),
    };
    let refunds: Vec<_> = order
        .refunds
        .iter()
        .filter(|refund| match key {
            Some(RefundKey::Id(id)) => refund.refund_id == id,
            Some(RefundKey::Number(number)) => refund.refund_no == number,
            None => true,
        })
        .collect();
    if refunds.is_empty() {
        return not_found();
    }
    let mut answer = fields([
        ("transaction_id", order.trade_no.clone()),
        ("out_trade_no", order.out_trade_no.clone()),
        ("total_fee", order.amount_fen.to_string()),
        ("cash_fee", order.amount_fen.to_string()),
        ("refund_count", refunds.len().to_string()),
    ]);
    for (n, refund) in refunds.iter().enumerate() {
        let mut put = |name: &str, value: String| {
            answer.insert(format!("{name}_{n}"), value);
        };
        put("out_refund_no", refund.refund_no.clone());
        put("refund_id", refund.refund_id.clone());
        put("refund_channel", "ORIGINAL".to_owned());
        put("refund_fee", refund.amount_fen.to_string());
        put("settlement_refund_fee", refund.amount_fen.to_string());
        put("refund_account", "REFUND_SOURCE_UNSETTLED_FUNDS".to_owned());
        put("refund_recv_accout", "支付用户的零钱".to_owned());
        match refund.state(now) {
            SandboxRefundState::Processing => put("refund_status", "PROCESSING".to_owned()),
            SandboxRefundState::Succeeded { at } => {
                put("refund_status", "SUCCESS".to_owned());
                let time = at.with_timezone(&china_time()).format("%Y-%m-%d %H:%M:%S");
                put("refund_success_time", time.to_string());
            }
        }
    }
    Reply::success(answer)
}

fn bill(inner: &Inner, merchant: &SandboxWechat, params: &Params, _now: DateTime<Utc>) -> Handled {
    let api = SandboxApi::Channel(Api::Statement);
    let failure = |message: &str, error_code: Option<&str>| {
        let mut answer = Params::from([
            ("return_code".to_owned(), "FAIL".to_owned()),
            ("return_msg".to_owned(), message.to_owned()),
        ]);
        if let Some(code) = error_code {
            answer.insert("error_code".to_owned(), code.to_owned());
        }
        Handled {
            status: axum::http::StatusCode::OK,
            content_type: XML,
            body: xml::to_xml(&answer).into_bytes(),
            summary: summary_of(api, params, message.to_owned()),
            hold: false,
        }
    };
    let Some(date) = required(params, "bill_date")
        .and_then(|text| NaiveDate::parse_from_str(text, "%Y%m%d").ok())
    else {
        return failure("data format error", Some("20001"));
    };
    let Some(bill_type) = WechatBillType::parse(required(params, "bill_type").unwrap_or("ALL"))
    else {
        return failure("invalid bill_type", Some("20001"));
    };
    if required(params, "tar_type").is_some() {
        return failure("CompressGZip Error", Some("20003"));
    }
    match inner.wechat_bill_text(merchant, date, bill_type) {
        Ok(Some(text)) => Handled {
            status: axum::http::StatusCode::OK,
            content_type: TEXT,
            body: text.into_bytes(),
            summary: summary_of(api, params, "bill".to_owned()),
            hold: false,
        },
        Ok(None) => failure(NO_BILL_EXIST, Some("20002")),
        Err(error) => {
            tracing::error!(%error, "sandbox bill failed");
            failure("SYSTEMERROR", None)
        }
    }
}
