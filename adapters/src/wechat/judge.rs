//! The judgment of WeChat Pay v2 answers: pure functions from a parsed
//! answer to the domain's normalised outcomes, in the documented order —
//! `return_code` first, then the signature and the merchant's identity, then
//! `result_code` / `err_code`, and for queries `trade_state`.
//!
//! The rule throughout: only what the answer proves moves money. A failure is
//! `Failed` only for a short whitelist of definitive codes; a success only
//! when every field that ties it to the request (order number, amount,
//! refund number) is present and equal. Everything else is `Unknown`, with a
//! reason, and the caller queries. The tables below list each code in
//! precedence order with its source (docs/rules.md, "Judging WeChat answers").
#![expect(
    clippy::trivially_copy_pass_by_ref,
    reason = "every judgement takes the verified answer the same way, by reference"
)]

use chrono::{DateTime, NaiveDateTime, Utc};
use paycode_domain::calendar::from_china_local;
use paycode_domain::payment::{
    PayOutcome, QueryOutcome, RefundOutcome, RevokeOutcome, RevokeResult,
};
use paycode_domain::{ChannelCodes, Money, capped_channel_text};

use super::sign::{self, ApiKey, SignType};
use super::xml::Params;
use crate::channel::{StatementError, StatementFile, paid_before_submission};

/// Micropay `err_code`s that prove no money moved (the official table's
/// "支付确认失败" rows, docs/rules.md), plus `TRADE_ERROR` (seen live:
/// "用户取消支付"). `ORDERPAID` and `OUT_TRADE_NO_USED` are in that table
/// too but are left out on purpose: they say the order number was used
/// before, so the order's real state must be queried.
pub const PAY_DEFINITIVE_FAILURES: [&str; 19] = [
    "AUTHCODEEXPIRE",
    "AUTH_CODE_ERROR",
    "AUTH_CODE_INVALID",
    "NOTENOUGH",
    "NOTSUPORTCARD",
    "ORDERCLOSED",
    "ORDERREVERSED",
    "BUYER_MISMATCH",
    "PARAM_ERROR",
    "LACK_PARAMS",
    "XML_FORMAT_ERROR",
    "REQUIRE_POST_METHOD",
    "SIGNERROR",
    "NOT_UTF8",
    "NOAUTH",
    "APPID_NOT_EXIST",
    "MCHID_NOT_EXIST",
    "APPID_MCHID_NOT_MATCH",
    "TRADE_ERROR",
];

/// Refund `err_code`s that prove the refund was not taken (WxJava's copy of
/// the official table, docs/rules.md). `SYSTEMERROR`, `BIZERR_NEED_RETRY`,
/// `ERROR`, `INVALID_REQ_TOO_MUCH`, `FREQUENCY_LIMITED` and anything
/// unlisted are unknown: resend with the same refund number, or query.
pub const REFUND_DEFINITIVE_FAILURES: [&str; 11] = [
    "TRADE_OVERDUE",
    "USER_ACCOUNT_ABNORMAL",
    "NOTENOUGH",
    "INVALID_TRANSACTIONID",
    "PARAM_ERROR",
    "APPID_NOT_EXIST",
    "MCHID_NOT_EXIST",
    "ORDERNOTEXIST",
    "REQUIRE_POST_METHOD",
    "SIGNERROR",
    "XML_FORMAT_ERROR",
];

/// Reverse `err_code`s after which calling again is right: the channel was
/// busy (`SYSTEMERROR`) or the customer is still entering the password
/// (`USERPAYING`, "正在支付中不能发起撤销").
pub const REVOKE_RETRY_CODES: [&str; 2] = ["SYSTEMERROR", "USERPAYING"];

/// Reverse's "older than 7 days" code; a refund must be used instead. The
/// official reverse table was not retrievable (a gap in the public sources); this
/// name is WeChat's as used by a third-party client (CardInfoLink/quickpay).
pub const REVOKE_EXPIRED_CODE: &str = "REVERSE_EXPIRE";

/// The raw fields kept in `ChannelAnswer::codes` for auditors: the result
/// layers and their human texts, never identifiers, amounts or the nonce.
/// Every `refund_status_$n` of a refund query is kept as well.
pub const KEPT_CODES: [&str; 11] = [
    "return_code",
    "return_msg",
    "result_code",
    "err_code",
    "err_code_des",
    "trade_state",
    "trade_state_desc",
    "recall",
    "refund_count",
    "error_code",
    "sign_type",
];

/// The merchant an answer must be addressed from: the identity fields sent
/// in every request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Merchant {
    pub appid: String,
    pub mch_id: String,
    /// Service-provider mode: the sub-merchant's app, when configured.
    pub sub_appid: Option<String>,
    /// Service-provider mode: the sub-merchant, when configured.
    pub sub_mch_id: Option<String>,
}

/// An answer whose envelope has been checked: `return_code=SUCCESS`, the
/// signature verified with the merchant's key, and the identity fields
/// equal to ours. Only [`verify_envelope`] makes one, so the outcome
/// functions below cannot be called on an unchecked answer.
#[derive(Debug, Clone, Copy)]
pub struct Verified<'a> {
    params: &'a Params,
}

impl<'a> Verified<'a> {
    /// A field's value; `None` when absent or empty (WeChat leaves unused
    /// fields empty, and empty fields are unsigned).
    pub fn get(&self, name: &str) -> Option<&'a str> {
        self.params
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }

    /// All fields.
    pub fn params(&self) -> &'a Params {
        self.params
    }
}

/// The raw codes of an answer (see [`KEPT_CODES`]), verified or not: an
/// auditor wants to see what came back even when it was not trusted.
pub fn codes(params: &Params) -> ChannelCodes {
    let mut codes = ChannelCodes::new();
    for (name, value) in params {
        if KEPT_CODES.contains(&name.as_str()) || name.starts_with("refund_status_") {
            codes.0.insert(name.clone(), value.clone());
        }
    }
    codes
}

/// The communication layer: `return_code`, then the signature, then the
/// merchant's identity. `Err` carries the reason the answer is unknown.
pub fn verify_envelope<'a>(
    params: &'a Params,
    key: &ApiKey,
    sign_type: SignType,
    merchant: &Merchant,
) -> Result<Verified<'a>, String> {
    match params.get("return_code").map(String::as_str) {
        Some("SUCCESS") => {}
        Some("FAIL") => {
            // Not signed, and says only that the call did not go through.
            let message = params.get("return_msg").map_or("", String::as_str);
            return Err(format!("return_code=FAIL: {message}"));
        }
        Some(other) => return Err(format!("unexpected return_code {other:?}")),
        None => return Err("the answer has no return_code".to_owned()),
    }
    if !params.contains_key("sign") {
        return Err("the answer is not signed".to_owned());
    }
    if !sign::verify(params, key, sign_type) {
        return Err("the answer's signature does not verify".to_owned());
    }
    let verified = Verified { params };
    must_equal(&verified, "appid", &merchant.appid)?;
    must_equal(&verified, "mch_id", &merchant.mch_id)?;
    // Sub-merchant fields are echoed in service-provider mode; an answer for
    // another sub-merchant, or one we never configured, is not ours.
    for (name, ours) in [
        ("sub_mch_id", &merchant.sub_mch_id),
        ("sub_appid", &merchant.sub_appid),
    ] {
        if let Some(theirs) = verified.get(name) {
            match ours {
                Some(ours) if ours == theirs => {}
                _ => {
                    return Err(format!(
                        "the answer's {name} {theirs} is not the configured one"
                    ));
                }
            }
        }
    }
    Ok(verified)
}

/// What a paid answer (of micropay or orderquery) must match: the order
/// number and amount of the order, and a payment time (when answered) not
/// before the order was submitted.
#[derive(Debug, Clone, Copy)]
pub struct OrderExpected<'a> {
    pub out_trade_no: &'a str,
    pub total_fee: u64,
    pub submitted_at: DateTime<Utc>,
}

/// The business layer of a micropay answer.
pub fn pay(answer: &Verified<'_>, expected: &OrderExpected<'_>) -> PayOutcome {
    let unknown = |reason: String| PayOutcome::Unknown { reason };
    if let Err(reason) = may_equal(answer, "out_trade_no", expected.out_trade_no) {
        return unknown(reason);
    }
    match answer.get("result_code") {
        Some("SUCCESS") => match paid(answer, expected) {
            Ok((channel_trade_no, paid_at)) => PayOutcome::Paid {
                channel_trade_no,
                paid_at,
            },
            // The query that follows tells another trade apart.
            Err(NotThisPayment::Unproven(reason) | NotThisPayment::OtherTrade(reason)) => {
                unknown(reason)
            }
        },
        Some("FAIL") => match answer.get("err_code") {
            Some("USERPAYING") => PayOutcome::WaitingForPassword,
            Some(code) if PAY_DEFINITIVE_FAILURES.contains(&code) => PayOutcome::Failed {
                code: code.to_owned(),
            },
            Some(code) => unknown(format!(
                "err_code {code} does not settle the payment; query the order"
            )),
            None => unknown("result_code=FAIL without err_code".to_owned()),
        },
        other => unknown(format!("unexpected result_code {other:?}")),
    }
}

/// The business layer of an orderquery answer: the truth is `trade_state`.
/// A paid answer must match the order's number and amount (`total_fee` is
/// the order's total), and not date the payment before the order existed:
/// a reused order number must not book another trade as this order's.
pub fn query(answer: &Verified<'_>, expected: &OrderExpected<'_>) -> QueryOutcome {
    let out_trade_no = expected.out_trade_no;
    let unknown = |reason: String| QueryOutcome::Unknown { reason };
    match answer.get("result_code") {
        Some("SUCCESS") => {}
        Some("FAIL") => {
            if let Err(reason) = may_equal(answer, "out_trade_no", out_trade_no) {
                return unknown(reason);
            }
            return match answer.get("err_code") {
                Some("ORDERNOTEXIST") => QueryOutcome::NotFound,
                Some(code) => unknown(format!("err_code {code}; query again")),
                None => unknown("result_code=FAIL without err_code".to_owned()),
            };
        }
        other => return unknown(format!("unexpected result_code {other:?}")),
    }
    // Every trade_state answer carries the order number (even the sparse
    // USERPAYING / PAYERROR ones): a state of another order is not ours.
    if let Err(reason) = must_equal(answer, "out_trade_no", out_trade_no) {
        return unknown(reason);
    }
    match answer.get("trade_state") {
        Some("SUCCESS") => match paid(answer, expected) {
            Ok((channel_trade_no, paid_at)) => QueryOutcome::Paid {
                channel_trade_no,
                paid_at,
            },
            Err(NotThisPayment::Unproven(reason)) => unknown(reason),
            Err(NotThisPayment::OtherTrade(reason)) => QueryOutcome::OtherTrade { reason },
        },
        Some("USERPAYING") => QueryOutcome::WaitingForPassword,
        Some("NOTPAY") => QueryOutcome::NotPaid,
        Some("REVOKED" | "CLOSED") => QueryOutcome::Closed,
        Some("PAYERROR") => QueryOutcome::Failed {
            code: "PAYERROR".to_owned(),
        },
        Some("REFUND") => QueryOutcome::RefundedElsewhere,
        Some(state) => unknown(format!("unlisted trade_state {state}")),
        None => unknown("result_code=SUCCESS without trade_state".to_owned()),
    }
}

/// The business layer of a reverse answer.
///
/// WeChat's reverse answer does not say whether it closed an unpaid order or
/// returned the money of a paid one, and a reversed order queries as
/// `REVOKED` either way. A done reverse is therefore reported as
/// [`RevokeResult::Unspecified`]: the decider reads it as reversed when it
/// had recorded the payment; otherwise the order is `revoked` until the
/// day's statement settles it (a paid-then-reversed order is listed twice
/// there, the refund line marked `REVOKED`; an unpaid one not at all).
pub fn revoke(answer: &Verified<'_>, out_trade_no: &str) -> RevokeOutcome {
    let unknown = |reason: String| RevokeOutcome::Unknown { reason };
    if let Err(reason) = may_equal(answer, "out_trade_no", out_trade_no) {
        return unknown(reason);
    }
    let recall = answer.get("recall");
    match (answer.get("result_code"), recall) {
        (Some("SUCCESS" | "FAIL"), Some("Y")) => RevokeOutcome::MustRetry {
            reason: "recall=Y".to_owned(),
        },
        (Some("SUCCESS"), Some("N") | None) => RevokeOutcome::Done {
            result: RevokeResult::Unspecified,
        },
        (Some("SUCCESS"), Some(other)) => unknown(format!("unexpected recall {other:?}")),
        (Some("FAIL"), _) => match answer.get("err_code") {
            Some(code) if REVOKE_RETRY_CODES.contains(&code) => RevokeOutcome::MustRetry {
                reason: format!("err_code {code}"),
            },
            Some(REVOKE_EXPIRED_CODE) => RevokeOutcome::WindowClosed {
                code: REVOKE_EXPIRED_CODE.to_owned(),
            },
            Some(code) => unknown(format!("err_code {code}: not reversed")),
            None => unknown("result_code=FAIL without err_code".to_owned()),
        },
        (other, _) => unknown(format!("unexpected result_code {other:?}")),
    }
}

/// What a refund answer must repeat.
#[derive(Debug, Clone, Copy)]
pub struct RefundExpected<'a> {
    pub out_trade_no: &'a str,
    pub out_refund_no: &'a str,
    pub total_fee: u64,
    pub refund_fee: u64,
}

/// The business layer of a refund answer: `SUCCESS` means the refund was
/// accepted, not that the money is back.
pub fn refund(answer: &Verified<'_>, expected: &RefundExpected<'_>) -> RefundOutcome {
    let unknown = |reason: String| RefundOutcome::Unknown { reason };
    match answer.get("result_code") {
        Some("SUCCESS") => {
            let checks = must_equal(answer, "out_trade_no", expected.out_trade_no)
                .and_then(|()| must_equal(answer, "out_refund_no", expected.out_refund_no))
                .and_then(|()| must_equal_fen(answer, "refund_fee", expected.refund_fee))
                .and_then(|()| may_equal_fen(answer, "total_fee", expected.total_fee));
            match checks {
                Ok(()) => RefundOutcome::Accepted {
                    channel_refund_no: answer.get("refund_id").map(str::to_owned),
                },
                Err(reason) => unknown(reason),
            }
        }
        Some("FAIL") => {
            let checks = may_equal(answer, "out_trade_no", expected.out_trade_no)
                .and_then(|()| may_equal(answer, "out_refund_no", expected.out_refund_no));
            if let Err(reason) = checks {
                return unknown(reason);
            }
            match answer.get("err_code") {
                Some(code) if REFUND_DEFINITIVE_FAILURES.contains(&code) => RefundOutcome::Failed {
                    code: code.to_owned(),
                },
                Some(code) => unknown(format!(
                    "err_code {code}; resend with the same refund number or query"
                )),
                None => unknown("result_code=FAIL without err_code".to_owned()),
            }
        }
        other => unknown(format!("unexpected result_code {other:?}")),
    }
}

/// What a refundquery answer must match.
#[derive(Debug, Clone, Copy)]
pub struct RefundQueryExpected<'a> {
    pub out_trade_no: &'a str,
    pub out_refund_no: &'a str,
    /// This refund's amount: `refund_fee_$n` must equal it.
    pub refund_fee: u64,
    /// The order's amount: the order-level `total_fee`, when answered, must equal it.
    pub total_fee: u64,
}

/// The business layer of a refundquery answer, for one refund number: the
/// `$n` whose `out_refund_no_$n` is ours decides, and its `refund_fee_$n`
/// must be this refund's amount.
pub fn refund_query(answer: &Verified<'_>, expected: &RefundQueryExpected<'_>) -> RefundOutcome {
    let (out_trade_no, out_refund_no) = (expected.out_trade_no, expected.out_refund_no);
    let unknown = |reason: String| RefundOutcome::Unknown { reason };
    match answer.get("result_code") {
        Some("SUCCESS") => {}
        Some("FAIL") => {
            return match answer.get("err_code") {
                Some("REFUNDNOTEXIST") => RefundOutcome::NotFound,
                Some(code) => unknown(format!("err_code {code}; query again")),
                None => unknown("result_code=FAIL without err_code".to_owned()),
            };
        }
        other => return unknown(format!("unexpected result_code {other:?}")),
    }
    if let Err(reason) = must_equal(answer, "out_trade_no", out_trade_no) {
        return unknown(reason);
    }
    let Some(n) = refund_index(answer, out_refund_no) else {
        return unknown(format!("the answer lists no refund {out_refund_no}"));
    };
    let amounts = must_equal_fen(answer, &format!("refund_fee_{n}"), expected.refund_fee)
        .and_then(|()| may_equal_fen(answer, "total_fee", expected.total_fee));
    if let Err(reason) = amounts {
        return unknown(reason);
    }
    let channel_refund_no = answer.get(&format!("refund_id_{n}")).map(str::to_owned);
    match answer.get(&format!("refund_status_{n}")) {
        Some("SUCCESS") => {
            let name = format!("refund_success_time_{n}");
            match answer
                .get(&name)
                .map(|t| china_time(t, "%Y-%m-%d %H:%M:%S", &name))
            {
                Some(Ok(refunded_at)) => RefundOutcome::Succeeded {
                    channel_refund_no,
                    refunded_at,
                },
                Some(Err(reason)) => unknown(reason),
                None => unknown(format!("refund SUCCESS without {name}")),
            }
        }
        Some("PROCESSING") => RefundOutcome::Processing,
        Some("FAIL") => RefundOutcome::Failed {
            code: "FAIL".to_owned(),
        },
        Some("CHANGE") => RefundOutcome::Abnormal {
            code: "CHANGE".to_owned(),
        },
        Some(status) => unknown(format!("unlisted refund_status {status}")),
        None => unknown(format!("no refund_status_{n}")),
    }
}

/// The statement texts that mean "no statement for that day" (docs/rules.md,
/// "Reconciliation"): no trade that day, or not generated yet. Compared ignoring ASCII
/// case, since the documentation prints `NO Bill Exist`.
pub const NO_STATEMENT_MESSAGES: [&str; 2] = ["No Bill Exist", "Bill Creating"];

/// Judges a `/pay/downloadbill` answer. Success is the plain-text bill (not
/// XML, not signed); a failure is XML, usually unsigned — if it is signed,
/// the signature must verify.
pub fn statement(
    body: String,
    key: &ApiKey,
    sign_type: SignType,
) -> Result<StatementFile, StatementError> {
    if !body.trim_start().starts_with('<') {
        return Ok(StatementFile::WechatText(body));
    }
    let params = super::xml::parse(&body).map_err(|e| StatementError::Untrusted(e.to_string()))?;
    if params.contains_key("sign") && !sign::verify(&params, key, sign_type) {
        return Err(StatementError::Untrusted(
            "the answer's signature does not verify".to_owned(),
        ));
    }
    let field = |name: &str| {
        params
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    };
    let failed = field("return_code") == Some("FAIL") || field("result_code") == Some("FAIL");
    if !failed {
        return Err(StatementError::Untrusted(
            "an XML answer where a bill was expected".to_owned(),
        ));
    }
    // The communication layer's text when it failed, else the business layer's.
    let message = if field("return_code") == Some("FAIL") {
        field("return_msg")
    } else {
        field("err_code_des").or(field("return_msg"))
    };
    let message = message.unwrap_or("").trim();
    if NO_STATEMENT_MESSAGES
        .iter()
        .any(|m| m.eq_ignore_ascii_case(message))
    {
        return Ok(StatementFile::NoStatement {
            code: message.to_owned(),
        });
    }
    let code = field("error_code").or(field("err_code")).unwrap_or("FAIL");
    Err(StatementError::Refused {
        code: capped_channel_text(code),
        message: capped_channel_text(message),
    })
}

/// Why a SUCCESS answer does not prove this order's payment.
enum NotThisPayment {
    /// It cannot be read or tied to the order.
    Unproven(String),
    /// It is about a paid trade under this order number with another amount,
    /// or paid before this order was submitted: another trade.
    OtherTrade(String),
}

/// The transaction id and payment time of a SUCCESS answer, after checking
/// that it is our order: our order number, our amount, and a payment time
/// (when the answer gives one; `None` otherwise) not before the order was
/// submitted.
fn paid(
    answer: &Verified<'_>,
    expected: &OrderExpected<'_>,
) -> Result<(String, Option<DateTime<Utc>>), NotThisPayment> {
    must_equal(answer, "out_trade_no", expected.out_trade_no).map_err(NotThisPayment::Unproven)?;
    match answered_money(answer, "total_fee") {
        Err(reason) => return Err(NotThisPayment::Unproven(reason)),
        Ok(total) if total.fen() != expected.total_fee => {
            return Err(NotThisPayment::OtherTrade(format!(
                "the answer's total_fee {} fen differs from the order's {}",
                total.fen(),
                expected.total_fee
            )));
        }
        Ok(_) => {}
    }
    let transaction_id = answer
        .get("transaction_id")
        .ok_or_else(|| NotThisPayment::Unproven("a paid answer without transaction_id".into()))?;
    let paid_at = answer
        .get("time_end")
        .map(|time_end| china_time(time_end, "%Y%m%d%H%M%S", "time_end"))
        .transpose()
        .map_err(NotThisPayment::Unproven)?;
    if let Some(paid_at) = paid_at
        && paid_before_submission(paid_at, expected.submitted_at)
    {
        return Err(NotThisPayment::OtherTrade(format!(
            "the answer's time_end {paid_at} is before the order was submitted"
        )));
    }
    Ok((transaction_id.to_owned(), paid_at))
}

/// The `$n` of the refund numbered `out_refund_no`; WeChat numbers them
/// from 0 up to `refund_count - 1`.
fn refund_index(answer: &Verified<'_>, out_refund_no: &str) -> Option<usize> {
    answer.params().iter().find_map(|(name, value)| {
        let n = name.strip_prefix("out_refund_no_")?;
        (value == out_refund_no).then(|| n.parse().ok()).flatten()
    })
}

/// A required field equal to ours.
fn must_equal(answer: &Verified<'_>, name: &str, ours: &str) -> Result<(), String> {
    match answer.get(name) {
        Some(theirs) if theirs == ours => Ok(()),
        Some(theirs) => Err(format!(
            "the answer's {name} {theirs} differs from the request's {ours}"
        )),
        None => Err(format!("the answer has no {name}")),
    }
}

/// An optional field: when present, equal to ours.
fn may_equal(answer: &Verified<'_>, name: &str, ours: &str) -> Result<(), String> {
    match answer.get(name) {
        Some(_) => must_equal(answer, name, ours),
        None => Ok(()),
    }
}

fn must_equal_fen(answer: &Verified<'_>, name: &str, ours: u64) -> Result<(), String> {
    let theirs = answered_money(answer, name)?;
    if theirs.fen() == ours {
        Ok(())
    } else {
        Err(format!(
            "the answer's {name} {} fen differs from the request's {ours}",
            theirs.fen()
        ))
    }
}

fn may_equal_fen(answer: &Verified<'_>, name: &str, ours: u64) -> Result<(), String> {
    match answer.get(name) {
        Some(_) => must_equal_fen(answer, name, ours),
        None => Ok(()),
    }
}

/// An amount field in integer fen: digits only, positive, within limits.
fn answered_money(answer: &Verified<'_>, name: &str) -> Result<Money, String> {
    let text = answer
        .get(name)
        .ok_or_else(|| format!("the answer has no {name}"))?;
    let not_fen = || format!("the answer's {name} {text:?} is not an amount in fen");
    if !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(not_fen());
    }
    let fen: u64 = text.parse().map_err(|_| not_fen())?;
    Money::from_fen(fen).map_err(|_| not_fen())
}

/// Parses a China-time field and converts it to UTC.
fn china_time(text: &str, format: &str, name: &str) -> Result<DateTime<Utc>, String> {
    let local = NaiveDateTime::parse_from_str(text, format)
        .map_err(|_| format!("the answer's {name} {text:?} is not a time like {format}"))?;
    Ok(from_china_local(local))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wechat::xml::parse;
    use chrono::TimeZone;

    /// The documented example key, which signs the gochat answers: read once
    /// from the protocol vector, not repeated in the code.
    static KEY: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        crate::testing::vector_json("wx_v2_micropay_roundtrip_gochat.json")["key"]
            .as_str()
            .expect("the round trip names its key")
            .to_owned()
    });
    const ORDER: &str = "1415757673";

    fn key() -> ApiKey {
        ApiKey::from(KEY.as_str())
    }

    fn merchant() -> Merchant {
        Merchant {
            appid: "wx2421b1c4370ec43b".to_owned(),
            mch_id: "10000100".to_owned(),
            sub_appid: None,
            sub_mch_id: None,
        }
    }

    /// A signed answer from our merchant with `fields` on top of the envelope.
    fn signed(fields: &[(&str, &str)]) -> Params {
        let mut params: Params = [
            ("return_code", "SUCCESS"),
            ("return_msg", "OK"),
            ("appid", "wx2421b1c4370ec43b"),
            ("mch_id", "10000100"),
            ("nonce_str", "GOp3TRyMXzbMlkun"),
        ]
        .into_iter()
        .chain(fields.iter().copied())
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        sign::sign_request(&mut params, &key(), SignType::Md5);
        params
    }

    /// A fixture's fields, re-signed with the documented key (the official
    /// examples were signed with an unpublished one).
    fn resigned(xml: &str, changes: &[(&str, &str)]) -> Params {
        let mut params = parse(xml).unwrap();
        for (k, v) in changes {
            params.insert((*k).to_owned(), (*v).to_owned());
        }
        sign::sign_request(&mut params, &key(), SignType::Md5);
        params
    }

    /// The fixtures' payment time, `time_end` 20141111170043 in China time.
    fn fixture_paid_at() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2014, 11, 11, 9, 0, 43).unwrap()
    }

    /// The order of the fixtures: ORDER, 1 fen, submitted five minutes
    /// before the fixtures' payment time.
    fn order_expected() -> OrderExpected<'static> {
        OrderExpected {
            out_trade_no: ORDER,
            total_fee: 1,
            submitted_at: fixture_paid_at() - chrono::Duration::minutes(5),
        }
    }

    fn pay_of(params: &Params) -> PayOutcome {
        pay_expecting(params, &order_expected())
    }

    fn pay_expecting(params: &Params, expected: &OrderExpected<'_>) -> PayOutcome {
        match verify_envelope(params, &key(), SignType::Md5, &merchant()) {
            Ok(answer) => pay(&answer, expected),
            Err(reason) => PayOutcome::Unknown { reason },
        }
    }

    fn query_of(params: &Params) -> QueryOutcome {
        query_expecting(params, &order_expected())
    }

    fn query_expecting(params: &Params, expected: &OrderExpected<'_>) -> QueryOutcome {
        match verify_envelope(params, &key(), SignType::Md5, &merchant()) {
            Ok(answer) => query(&answer, expected),
            Err(reason) => QueryOutcome::Unknown { reason },
        }
    }

    fn revoke_of(params: &Params) -> RevokeOutcome {
        match verify_envelope(params, &key(), SignType::Md5, &merchant()) {
            Ok(answer) => revoke(&answer, ORDER),
            Err(reason) => RevokeOutcome::Unknown { reason },
        }
    }

    fn refund_expected() -> RefundExpected<'static> {
        RefundExpected {
            out_trade_no: ORDER,
            out_refund_no: "1415701182",
            total_fee: 1,
            refund_fee: 1,
        }
    }

    fn refund_of(params: &Params) -> RefundOutcome {
        match verify_envelope(params, &key(), SignType::Md5, &merchant()) {
            Ok(answer) => refund(&answer, &refund_expected()),
            Err(reason) => RefundOutcome::Unknown { reason },
        }
    }

    fn refund_query_expected() -> RefundQueryExpected<'static> {
        RefundQueryExpected {
            out_trade_no: ORDER,
            out_refund_no: "1415701182",
            refund_fee: 1,
            total_fee: 1,
        }
    }

    fn refund_query_of(params: &Params) -> RefundOutcome {
        refund_query_expecting(params, &refund_query_expected())
    }

    fn refund_query_expecting(
        params: &Params,
        expected: &RefundQueryExpected<'_>,
    ) -> RefundOutcome {
        match verify_envelope(params, &key(), SignType::Md5, &merchant()) {
            Ok(answer) => refund_query(&answer, expected),
            Err(reason) => RefundOutcome::Unknown { reason },
        }
    }

    fn is_unknown_pay(outcome: &PayOutcome) -> bool {
        matches!(outcome, PayOutcome::Unknown { .. })
    }

    fn pay_failure(code: &str) -> Params {
        signed(&[
            ("result_code", "FAIL"),
            ("err_code", code),
            ("err_code_des", "描述"),
        ])
    }

    fn time(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .unwrap()
            .with_timezone(&Utc)
    }

    // ---- envelope -------------------------------------------------------

    #[test]
    fn return_code_fail_is_unknown_even_unsigned() {
        // wx_v2_resp_return_fail_sign_error_zhangv.xml: 签名失败, no sign.
        let params = parse(&crate::testing::vector(
            "wx_v2_resp_return_fail_sign_error_zhangv.xml",
        ))
        .unwrap();
        let reason = verify_envelope(&params, &key(), SignType::Md5, &merchant()).unwrap_err();
        assert_eq!(reason, "return_code=FAIL: 签名失败");
        assert_eq!(codes(&params).get("return_code"), Some("FAIL"));
    }

    #[test]
    fn an_unsigned_business_answer_is_unknown_whatever_it_says() {
        // wx_v2_resp_result_fail_noauth_zhangv.xml: result FAIL NOAUTH, but no sign.
        let params = parse(&crate::testing::vector(
            "wx_v2_resp_result_fail_noauth_zhangv.xml",
        ))
        .unwrap();
        assert!(is_unknown_pay(&pay_of(&params)));
        assert_eq!(
            codes(&params).get("err_code"),
            Some("NOAUTH"),
            "the raw code is still kept"
        );
        let missing = Params::from([("result_code".to_owned(), "SUCCESS".to_owned())]);
        assert!(verify_envelope(&missing, &key(), SignType::Md5, &merchant()).is_err());
        let odd = Params::from([("return_code".to_owned(), "MAYBE".to_owned())]);
        assert!(verify_envelope(&odd, &key(), SignType::Md5, &merchant()).is_err());
    }

    #[test]
    fn a_forged_or_wrong_algorithm_signature_is_unknown() {
        let mut params = signed(&[("result_code", "SUCCESS")]);
        assert!(verify_envelope(&params, &key(), SignType::Md5, &merchant()).is_ok());
        assert!(verify_envelope(&params, &key(), SignType::HmacSha256, &merchant()).is_err());
        params.insert(
            "sign".to_owned(),
            "1C3E24AACED0148F116C1122EDF2A26F".to_owned(),
        );
        let reason = verify_envelope(&params, &key(), SignType::Md5, &merchant()).unwrap_err();
        assert!(reason.contains("signature"), "{reason}");
    }

    #[test]
    fn an_answer_from_another_merchant_app_or_sub_merchant_is_unknown() {
        for (name, value) in [("appid", "wxother"), ("mch_id", "999")] {
            let params = resigned(
                &to_xml_of(&signed(&[("result_code", "SUCCESS")])),
                &[(name, value)],
            );
            let reason = verify_envelope(&params, &key(), SignType::Md5, &merchant()).unwrap_err();
            assert!(reason.contains(name), "{reason}");
        }
        let missing_appid = {
            let mut p = signed(&[]);
            p.remove("appid");
            sign::sign_request(&mut p, &key(), SignType::Md5);
            p
        };
        assert!(verify_envelope(&missing_appid, &key(), SignType::Md5, &merchant()).is_err());
        let sub = signed(&[("sub_mch_id", "1900000109")]);
        assert!(
            verify_envelope(&sub, &key(), SignType::Md5, &merchant()).is_err(),
            "not configured"
        );
        let ours = Merchant {
            sub_mch_id: Some("1900000109".to_owned()),
            ..merchant()
        };
        assert!(verify_envelope(&sub, &key(), SignType::Md5, &ours).is_ok());
        let other = Merchant {
            sub_mch_id: Some("1900000110".to_owned()),
            ..merchant()
        };
        assert!(verify_envelope(&sub, &key(), SignType::Md5, &other).is_err());
    }

    fn to_xml_of(params: &Params) -> String {
        crate::wechat::xml::to_xml(params)
    }

    // ---- micropay -------------------------------------------------------

    #[test]
    fn the_signed_micropay_success_is_paid_at_china_time_converted_to_utc() {
        let v: serde_json::Value = serde_json::from_str(&crate::testing::vector(
            "wx_v2_micropay_roundtrip_gochat.json",
        ))
        .unwrap();
        let params = parse(v["response_raw_xml"].as_str().unwrap()).unwrap();
        assert_eq!(
            pay_of(&params),
            PayOutcome::Paid {
                channel_trade_no: "1008450740201411110005820873".to_owned(),
                // 2014-11-11 17:00:43 in Beijing is 09:00:43 UTC.
                paid_at: Some(Utc.with_ymd_and_hms(2014, 11, 11, 9, 0, 43).unwrap()),
            }
        );
        assert_eq!(codes(&params).get("result_code"), Some("SUCCESS"));
        assert_eq!(
            codes(&params).get("transaction_id"),
            None,
            "identifiers are not codes"
        );
    }

    #[test]
    fn a_success_for_another_order_or_amount_or_without_proof_is_unknown() {
        let official = &crate::testing::vector("wx_v2_micropay_resp_success_official.xml");
        assert!(matches!(
            pay_of(&resigned(official, &[])),
            PayOutcome::Paid { .. }
        ));
        for change in [
            ("out_trade_no", "1415757674"),
            ("out_trade_no", ""),
            ("total_fee", "2"),
            ("total_fee", "1.00"),
            ("total_fee", ""),
            ("transaction_id", ""),
            ("time_end", "2014-11-11"),
            ("result_code", "PENDING"),
        ] {
            let outcome = pay_of(&resigned(official, &[change]));
            assert!(is_unknown_pay(&outcome), "{change:?}: {outcome:?}");
        }
    }

    #[test]
    fn userpaying_waits_for_the_password() {
        assert_eq!(
            pay_of(&pay_failure("USERPAYING")),
            PayOutcome::WaitingForPassword
        );
    }

    #[test]
    fn every_definitive_micropay_code_is_a_failure() {
        for code in PAY_DEFINITIVE_FAILURES {
            assert_eq!(
                pay_of(&pay_failure(code)),
                PayOutcome::Failed {
                    code: code.to_owned()
                },
                "{code}"
            );
        }
        assert_eq!(PAY_DEFINITIVE_FAILURES.len(), 19);
    }

    #[test]
    fn system_bank_duplicate_and_unlisted_micropay_codes_are_unknown() {
        for code in [
            "SYSTEMERROR",
            "BANKERROR",
            "ORDERPAID",
            "OUT_TRADE_NO_USED",
            "SOMETHING_NEW",
            "NOTENOUGH2",
        ] {
            let outcome = pay_of(&pay_failure(code));
            match &outcome {
                PayOutcome::Unknown { reason } => assert!(reason.contains(code), "{reason}"),
                other => panic!("{code}: {other:?}"),
            }
        }
        assert!(
            is_unknown_pay(&pay_of(&signed(&[("result_code", "FAIL")]))),
            "no err_code"
        );
    }

    #[test]
    fn a_failure_naming_another_order_is_unknown() {
        let params = signed(&[
            ("result_code", "FAIL"),
            ("err_code", "NOTENOUGH"),
            ("out_trade_no", "other"),
        ]);
        assert!(is_unknown_pay(&pay_of(&params)));
    }

    // ---- orderquery -----------------------------------------------------

    #[test]
    fn the_signed_query_success_is_paid() {
        let v: serde_json::Value = serde_json::from_str(&crate::testing::vector(
            "wx_v2_orderquery_roundtrip_gochat.json",
        ))
        .unwrap();
        let params = parse(v["response_raw_xml"].as_str().unwrap()).unwrap();
        assert_eq!(
            query_of(&params),
            QueryOutcome::Paid {
                channel_trade_no: "1008450740201411110005820873".to_owned(),
                paid_at: Some(time("2014-11-11T09:00:43Z")),
            }
        );
        assert_eq!(codes(&params).get("trade_state"), Some("SUCCESS"));
    }

    #[test]
    fn each_trade_state_has_its_outcome() {
        let official = &crate::testing::vector("wx_v2_orderquery_resp_success_official.xml");
        let cases = [
            ("USERPAYING", QueryOutcome::WaitingForPassword),
            ("NOTPAY", QueryOutcome::NotPaid),
            ("REVOKED", QueryOutcome::Closed),
            ("CLOSED", QueryOutcome::Closed),
            (
                "PAYERROR",
                QueryOutcome::Failed {
                    code: "PAYERROR".to_owned(),
                },
            ),
            ("REFUND", QueryOutcome::RefundedElsewhere),
        ];
        for (state, expected) in cases {
            assert_eq!(
                query_of(&resigned(official, &[("trade_state", state)])),
                expected,
                "{state}"
            );
        }
        // The sparse answers of unpaid states need no transaction_id or amount.
        let sparse = signed(&[
            ("result_code", "SUCCESS"),
            ("trade_state", "USERPAYING"),
            ("out_trade_no", ORDER),
        ]);
        assert_eq!(query_of(&sparse), QueryOutcome::WaitingForPassword);
        for state in ["ACCEPT", "success", ""] {
            let outcome = query_of(&resigned(official, &[("trade_state", state)]));
            assert!(
                matches!(outcome, QueryOutcome::Unknown { .. }),
                "{state}: {outcome:?}"
            );
        }
    }

    #[test]
    fn a_query_state_of_another_order_or_without_order_number_is_unknown() {
        let official = &crate::testing::vector("wx_v2_orderquery_resp_success_official.xml");
        for change in [
            ("out_trade_no", "other"),
            ("out_trade_no", ""),
            ("total_fee", "0"),
            ("total_fee", "x"),
            ("time_end", "20141311170043"),
            ("transaction_id", ""),
        ] {
            let outcome = query_of(&resigned(official, &[change]));
            assert!(
                matches!(outcome, QueryOutcome::Unknown { .. }),
                "{change:?}: {outcome:?}"
            );
        }
        let closed_elsewhere = resigned(
            official,
            &[("trade_state", "CLOSED"), ("out_trade_no", "other")],
        );
        assert!(matches!(
            query_of(&closed_elsewhere),
            QueryOutcome::Unknown { .. }
        ));
    }

    #[test]
    fn ordernotexist_is_not_found_and_other_query_errors_are_unknown() {
        let fixture = &crate::testing::vector("wx_v2_orderquery_resp_ordernotexist_zhangv.xml");
        assert_eq!(query_of(&resigned(fixture, &[])), QueryOutcome::NotFound);
        for code in ["SYSTEMERROR", "OUT_TRADE_NO_USED"] {
            let outcome = query_of(&resigned(fixture, &[("err_code", code)]));
            assert!(matches!(outcome, QueryOutcome::Unknown { .. }), "{code}");
        }
    }

    // ---- a paid answer is the order's own ---------------------------------

    const TRANSACTION: &str = "1008450740201411110005820873";

    /// A fixture's fields without `removed`, re-signed with the documented key.
    fn resigned_without(xml: &str, removed: &[&str]) -> Params {
        let mut params = parse(xml).unwrap();
        for name in removed {
            params.remove(*name);
        }
        sign::sign_request(&mut params, &key(), SignType::Md5);
        params
    }

    /// Another trade under our order number, for the reason named `field`.
    fn is_other_trade(outcome: &QueryOutcome, field: &str) -> bool {
        matches!(outcome, QueryOutcome::OtherTrade { reason } if reason.contains(field))
    }

    fn micropay_fixture() -> String {
        crate::testing::vector("wx_v2_micropay_resp_success_official.xml")
    }

    fn orderquery_fixture() -> String {
        crate::testing::vector("wx_v2_orderquery_resp_success_official.xml")
    }

    #[test]
    fn a_paid_answer_without_time_end_is_paid_at_an_unknown_time() {
        let paid_at_unknown_pay = PayOutcome::Paid {
            channel_trade_no: TRANSACTION.to_owned(),
            paid_at: None,
        };
        let paid_at_unknown_query = QueryOutcome::Paid {
            channel_trade_no: TRANSACTION.to_owned(),
            paid_at: None,
        };
        // Absent, or empty (which counts as absent and is left unsigned).
        assert_eq!(
            pay_of(&resigned_without(&micropay_fixture(), &["time_end"])),
            paid_at_unknown_pay
        );
        assert_eq!(
            pay_of(&resigned(&micropay_fixture(), &[("time_end", "")])),
            paid_at_unknown_pay
        );
        assert_eq!(
            query_of(&resigned_without(&orderquery_fixture(), &["time_end"])),
            paid_at_unknown_query
        );
        assert_eq!(
            query_of(&resigned(&orderquery_fixture(), &[("time_end", "")])),
            paid_at_unknown_query
        );
        // Present but unreadable is not the same as absent.
        for time_end in ["2014-11-11 17:00:43", "20141111", "20141111250043"] {
            let change = [("time_end", time_end)];
            assert!(
                is_unknown_pay(&pay_of(&resigned(&micropay_fixture(), &change))),
                "{time_end}"
            );
            assert!(
                matches!(
                    query_of(&resigned(&orderquery_fixture(), &change)),
                    QueryOutcome::Unknown { .. }
                ),
                "{time_end}"
            );
        }
    }

    #[test]
    fn a_paid_answer_for_another_amount_is_never_paid() {
        // Another amount than the order's 1 fen: the pay answer is unknown
        // (the query that follows tells), the query's is another trade's.
        for total_fee in ["2", "100"] {
            let change = [("total_fee", total_fee)];
            let outcome = pay_of(&resigned(&micropay_fixture(), &change));
            assert!(is_unknown_pay(&outcome), "pay {total_fee:?}: {outcome:?}");
            let outcome = query_of(&resigned(&orderquery_fixture(), &change));
            assert!(
                is_other_trade(&outcome, "total_fee"),
                "query {total_fee:?}: {outcome:?}"
            );
        }
        // No amount in fen at all: unknown.
        for total_fee in ["0", "1.00", "-1", " 1"] {
            let change = [("total_fee", total_fee)];
            let outcome = pay_of(&resigned(&micropay_fixture(), &change));
            assert!(is_unknown_pay(&outcome), "pay {total_fee:?}: {outcome:?}");
            let outcome = query_of(&resigned(&orderquery_fixture(), &change));
            assert!(
                matches!(&outcome, QueryOutcome::Unknown { reason } if reason.contains("total_fee")),
                "query {total_fee:?}: {outcome:?}"
            );
        }
        // The order's amount differs from the answer's.
        let two_fen = OrderExpected {
            total_fee: 2,
            ..order_expected()
        };
        let outcome = pay_expecting(&resigned(&micropay_fixture(), &[]), &two_fen);
        assert!(is_unknown_pay(&outcome), "{outcome:?}");
        let outcome = query_expecting(&resigned(&orderquery_fixture(), &[]), &two_fen);
        assert!(is_other_trade(&outcome, "total_fee"), "{outcome:?}");
        // A paid query answer must state the amount.
        let outcome = query_of(&resigned_without(&orderquery_fixture(), &["total_fee"]));
        assert!(
            matches!(&outcome, QueryOutcome::Unknown { reason } if reason.contains("total_fee")),
            "{outcome:?}"
        );
        let outcome = pay_of(&resigned_without(&micropay_fixture(), &["total_fee"]));
        assert!(is_unknown_pay(&outcome), "{outcome:?}");
    }

    #[test]
    fn a_payment_dated_over_a_minute_before_submission_is_not_paid_and_within_it_is() {
        let submitted = |after_payment_secs: i64| OrderExpected {
            submitted_at: fixture_paid_at() + chrono::Duration::seconds(after_payment_secs),
            ..order_expected()
        };
        let (pay_answer, query_answer) = (
            resigned(&micropay_fixture(), &[]),
            resigned(&orderquery_fixture(), &[]),
        );
        // Another trade under a reused order number: paid before this order
        // existed. Unknown on pay (the query that follows tells); another
        // trade on query.
        for secs in [61, 3600, 86_400 * 365] {
            let outcome = pay_expecting(&pay_answer, &submitted(secs));
            assert!(
                matches!(&outcome, PayOutcome::Unknown { reason } if reason.contains("time_end")),
                "{secs}: {outcome:?}"
            );
            let outcome = query_expecting(&query_answer, &submitted(secs));
            assert!(is_other_trade(&outcome, "time_end"), "{secs}: {outcome:?}");
        }
        // Up to a minute of clock skew, and any time after submission, is this order's payment.
        for secs in [60, 59, 1, 0, -1, -3600] {
            assert_eq!(
                pay_expecting(&pay_answer, &submitted(secs)),
                PayOutcome::Paid {
                    channel_trade_no: TRANSACTION.to_owned(),
                    paid_at: Some(fixture_paid_at()),
                },
                "{secs}"
            );
            assert_eq!(
                query_expecting(&query_answer, &submitted(secs)),
                QueryOutcome::Paid {
                    channel_trade_no: TRANSACTION.to_owned(),
                    paid_at: Some(fixture_paid_at()),
                },
                "{secs}"
            );
        }
    }

    #[test]
    fn a_paid_answer_of_another_order_number_is_never_paid() {
        for out_trade_no in ["1415757674", "1415757673 ", "x"] {
            let change = [("out_trade_no", out_trade_no)];
            assert!(is_unknown_pay(&pay_of(&resigned(
                &micropay_fixture(),
                &change
            ))));
            assert!(matches!(
                query_of(&resigned(&orderquery_fixture(), &change)),
                QueryOutcome::Unknown { .. }
            ));
        }
        // A paid micropay answer must name the order.
        let outcome = pay_of(&resigned_without(&micropay_fixture(), &["out_trade_no"]));
        assert!(is_unknown_pay(&outcome), "{outcome:?}");
    }

    // ---- reverse --------------------------------------------------------

    #[test]
    fn a_reverse_with_recall_n_is_done_without_saying_what_it_did() {
        let fixture = &crate::testing::vector("wx_v2_reverse_resp_recall_n_zhangv.xml");
        let params = resigned(fixture, &[]);
        assert_eq!(
            revoke_of(&params),
            RevokeOutcome::Done {
                result: RevokeResult::Unspecified
            }
        );
        assert_eq!(codes(&params).get("recall"), Some("N"));
        let without_recall = signed(&[("result_code", "SUCCESS")]);
        assert_eq!(
            revoke_of(&without_recall),
            RevokeOutcome::Done {
                result: RevokeResult::Unspecified
            }
        );
    }

    #[test]
    fn recall_y_must_retry_whatever_the_result_code() {
        // wx_v2_reverse_recall_y_skit.json: result SUCCESS, recall Y (service-provider mode).
        let v: serde_json::Value =
            serde_json::from_str(&crate::testing::vector("wx_v2_reverse_recall_y_skit.json"))
                .unwrap();
        let mut params: Params = v["response_fields"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned()))
            .collect();
        sign::sign_request(&mut params, &key(), SignType::Md5);
        let provider = Merchant {
            sub_mch_id: Some("1900000109".to_owned()),
            ..merchant()
        };
        let answer = verify_envelope(&params, &key(), SignType::Md5, &provider).unwrap();
        assert_eq!(
            revoke(&answer, "1415983244"),
            RevokeOutcome::MustRetry {
                reason: "recall=Y".to_owned()
            }
        );
        let failed = signed(&[
            ("result_code", "FAIL"),
            ("err_code", "SOMETHING"),
            ("recall", "Y"),
        ]);
        assert!(matches!(
            revoke_of(&failed),
            RevokeOutcome::MustRetry { .. }
        ));
    }

    #[test]
    fn reverse_errors_retry_close_the_window_or_stay_unknown() {
        let fail =
            |code: &str| signed(&[("result_code", "FAIL"), ("err_code", code), ("recall", "N")]);
        for code in REVOKE_RETRY_CODES {
            assert!(
                matches!(revoke_of(&fail(code)), RevokeOutcome::MustRetry { .. }),
                "{code}"
            );
        }
        assert_eq!(
            revoke_of(&fail("REVERSE_EXPIRE")),
            RevokeOutcome::WindowClosed {
                code: "REVERSE_EXPIRE".to_owned()
            }
        );
        for code in ["ORDERNOTEXIST", "PARAM_ERROR", "TRADE_ERROR"] {
            assert!(
                matches!(revoke_of(&fail(code)), RevokeOutcome::Unknown { .. }),
                "{code}"
            );
        }
        let odd_recall = signed(&[("result_code", "SUCCESS"), ("recall", "maybe")]);
        assert!(matches!(
            revoke_of(&odd_recall),
            RevokeOutcome::Unknown { .. }
        ));
        let other_order = signed(&[
            ("result_code", "SUCCESS"),
            ("recall", "N"),
            ("out_trade_no", "x"),
        ]);
        assert!(matches!(
            revoke_of(&other_order),
            RevokeOutcome::Unknown { .. }
        ));
    }

    // ---- refund ---------------------------------------------------------

    #[test]
    fn a_refund_success_is_only_accepted() {
        let fixture = &crate::testing::vector("wx_v2_refund_resp_success_official.xml");
        assert_eq!(
            refund_of(&resigned(fixture, &[])),
            RefundOutcome::Accepted {
                channel_refund_no: Some("2008450740201411110000174436".to_owned())
            }
        );
    }

    #[test]
    fn a_refund_answer_for_another_order_refund_or_amount_is_unknown() {
        let fixture = &crate::testing::vector("wx_v2_refund_resp_success_official.xml");
        for change in [
            ("out_trade_no", "other"),
            ("out_refund_no", "other"),
            ("out_refund_no", ""),
            ("refund_fee", "2"),
            ("refund_fee", ""),
            ("total_fee", "5"),
        ] {
            let outcome = refund_of(&resigned(fixture, &[change]));
            assert!(
                matches!(outcome, RefundOutcome::Unknown { .. }),
                "{change:?}: {outcome:?}"
            );
        }
    }

    #[test]
    fn definitive_refund_codes_fail_and_the_others_are_unknown() {
        let fail = |code: &str| signed(&[("result_code", "FAIL"), ("err_code", code)]);
        for code in REFUND_DEFINITIVE_FAILURES {
            assert_eq!(
                refund_of(&fail(code)),
                RefundOutcome::Failed {
                    code: code.to_owned()
                },
                "{code}"
            );
        }
        for code in [
            "SYSTEMERROR",
            "BIZERR_NEED_RETRY",
            "ERROR",
            "INVALID_REQ_TOO_MUCH",
            "FREQUENCY_LIMITED",
            "NEW",
        ] {
            assert!(
                matches!(refund_of(&fail(code)), RefundOutcome::Unknown { .. }),
                "{code}"
            );
        }
    }

    // ---- refundquery ----------------------------------------------------

    fn refund_status(status: &str, extra: &[(&str, &str)]) -> Params {
        let fixture = &crate::testing::vector("wx_v2_refundquery_resp_processing_official.xml");
        let mut changes = vec![("refund_status_0", status)];
        changes.extend_from_slice(extra);
        resigned(fixture, &changes)
    }

    #[test]
    fn each_refund_status_has_its_outcome() {
        assert_eq!(
            refund_query_of(&refund_status("PROCESSING", &[])),
            RefundOutcome::Processing
        );
        assert_eq!(
            refund_query_of(&refund_status(
                "SUCCESS",
                &[("refund_success_time_0", "2014-11-11 17:10:05")]
            )),
            RefundOutcome::Succeeded {
                channel_refund_no: Some("2008450740201411110000174436".to_owned()),
                refunded_at: time("2014-11-11T09:10:05Z"),
            }
        );
        assert_eq!(
            refund_query_of(&refund_status("FAIL", &[])),
            RefundOutcome::Failed {
                code: "FAIL".to_owned()
            }
        );
        assert_eq!(
            refund_query_of(&refund_status("CHANGE", &[])),
            RefundOutcome::Abnormal {
                code: "CHANGE".to_owned()
            }
        );
        for unsure in [
            refund_status("REFUNDCLOSE", &[]),
            refund_status("SUCCESS", &[]),
            refund_status("SUCCESS", &[("refund_success_time_0", "20141111171005")]),
        ] {
            assert!(
                matches!(refund_query_of(&unsure), RefundOutcome::Unknown { .. }),
                "{unsure:?}"
            );
        }
        assert_eq!(
            codes(&refund_status("CHANGE", &[])).get("refund_status_0"),
            Some("CHANGE")
        );
    }

    #[test]
    fn the_refund_of_our_number_decides_among_several() {
        let params = refund_status(
            "SUCCESS",
            &[
                ("refund_count", "2"),
                ("out_refund_no_0", "first"),
                ("refund_success_time_0", "2014-11-11 17:10:05"),
                ("out_refund_no_1", "1415701182"),
                ("refund_fee_1", "1"),
                ("refund_id_1", "2008450740201411110000174437"),
                ("refund_status_1", "PROCESSING"),
            ],
        );
        assert_eq!(refund_query_of(&params), RefundOutcome::Processing);
    }

    #[test]
    fn refundnotexist_is_not_found_and_mismatches_are_unknown() {
        let missing = signed(&[("result_code", "FAIL"), ("err_code", "REFUNDNOTEXIST")]);
        assert_eq!(refund_query_of(&missing), RefundOutcome::NotFound);
        let busy = signed(&[("result_code", "FAIL"), ("err_code", "SYSTEMERROR")]);
        assert!(matches!(
            refund_query_of(&busy),
            RefundOutcome::Unknown { .. }
        ));
        for change in [
            ("out_trade_no", "other"),
            ("out_refund_no_0", "other"),
            ("refund_fee_0", "-1"),
        ] {
            let outcome = refund_query_of(&refund_status("SUCCESS", &[change]));
            assert!(
                matches!(outcome, RefundOutcome::Unknown { .. }),
                "{change:?}: {outcome:?}"
            );
        }
    }

    #[test]
    fn a_refund_query_for_another_refund_or_order_amount_is_unknown() {
        let succeeded = [("refund_success_time_0", "2014-11-11 17:10:05")];
        let with = |extra: &[(&'static str, &'static str)]| {
            let mut changes = succeeded.to_vec();
            changes.extend_from_slice(extra);
            refund_status("SUCCESS", &changes)
        };
        assert!(matches!(
            refund_query_of(&with(&[])),
            RefundOutcome::Succeeded { .. }
        ));
        // refund_fee_$n must be this refund's amount, whatever the status.
        for status in ["SUCCESS", "PROCESSING", "FAIL", "CHANGE"] {
            let params = refund_status(status, &[succeeded[0], ("refund_fee_0", "2")]);
            let outcome = refund_query_of(&params);
            assert!(
                matches!(&outcome, RefundOutcome::Unknown { reason } if reason.contains("refund_fee_0")),
                "{status}: {outcome:?}"
            );
        }
        for refund_fee in ["0", "1.00", ""] {
            let outcome = refund_query_of(&with(&[("refund_fee_0", refund_fee)]));
            assert!(
                matches!(outcome, RefundOutcome::Unknown { .. }),
                "{refund_fee:?}: {outcome:?}"
            );
        }
        let two_fen = RefundQueryExpected {
            refund_fee: 2,
            ..refund_query_expected()
        };
        let outcome = refund_query_expecting(&with(&[]), &two_fen);
        assert!(
            matches!(outcome, RefundOutcome::Unknown { .. }),
            "{outcome:?}"
        );
        // The order-level total_fee, when answered, must be the order's.
        let outcome = refund_query_of(&with(&[("total_fee", "2")]));
        assert!(
            matches!(&outcome, RefundOutcome::Unknown { reason } if reason.contains("total_fee")),
            "{outcome:?}"
        );
        assert!(matches!(
            refund_query_of(&with(&[("total_fee", "1")])),
            RefundOutcome::Succeeded { .. }
        ));
    }

    // ---- downloadbill ---------------------------------------------------

    #[test]
    fn a_text_bill_is_the_statement() {
        let bill = crate::testing::vector("wx_v2_bill_all_legacy_wxjava.txt");
        assert_eq!(
            statement(bill.clone(), &key(), SignType::Md5).unwrap(),
            StatementFile::WechatText(bill)
        );
    }

    #[test]
    fn no_bill_exist_is_no_statement_and_other_failures_are_refused() {
        let body = crate::testing::vector("wx_v2_downloadbill_resp_no_bill_exist.xml");
        assert_eq!(
            statement(body, &key(), SignType::Md5).unwrap(),
            StatementFile::NoStatement {
                code: "No Bill Exist".to_owned()
            }
        );
        let doc_spelling =
            "<xml><return_code>FAIL</return_code><return_msg>NO Bill Exist</return_msg></xml>";
        assert!(matches!(
            statement(doc_spelling.to_owned(), &key(), SignType::Md5),
            Ok(StatementFile::NoStatement { .. })
        ));
        let refused = "<xml><return_code>FAIL</return_code><return_msg>invalid bill_type</return_msg><error_code>20001</error_code></xml>";
        match statement(refused.to_owned(), &key(), SignType::Md5) {
            Err(StatementError::Refused { code, message }) => {
                assert_eq!(
                    (code.as_str(), message.as_str()),
                    ("20001", "invalid bill_type")
                );
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_signed_bill_failure_must_verify_and_broken_xml_is_untrusted() {
        let mut params = signed(&[("result_code", "FAIL"), ("err_code_des", "No Bill Exist")]);
        let good = to_xml_of(&params);
        assert!(matches!(
            statement(good, &key(), SignType::Md5),
            Ok(StatementFile::NoStatement { .. })
        ));
        params.insert("sign".to_owned(), "0".repeat(32));
        assert!(matches!(
            statement(to_xml_of(&params), &key(), SignType::Md5),
            Err(StatementError::Untrusted(_))
        ));
        assert!(matches!(
            statement("<xml><return_code>FAIL".to_owned(), &key(), SignType::Md5),
            Err(StatementError::Untrusted(_))
        ));
        let success_xml = to_xml_of(&signed(&[("result_code", "SUCCESS")]));
        assert!(matches!(
            statement(success_xml, &key(), SignType::Md5),
            Err(StatementError::Untrusted(_))
        ));
    }

    /// The property of the issue: a signed answer whose order number,
    /// amount, merchant account or payment time (before the order was
    /// submitted) does not match the order is never paid. Each case builds
    /// a valid paid answer (micropay `SUCCESS` or orderquery `trade_state`
    /// `SUCCESS`) for a random order, checks that it IS paid, then applies
    /// one mismatch, signs the answer with the merchant's key so that the
    /// signature verifies, and checks that it is NOT paid.
    mod signed_answers {
        use chrono::{FixedOffset, TimeZone};
        use proptest::prelude::*;

        use super::*;
        use paycode_domain::money::AMOUNT_MAX_FEN;

        /// Fields a paid answer may leave out without changing its meaning.
        const OPTIONAL: [&str; 9] = [
            "device_info",
            "openid",
            "is_subscribe",
            "trade_type",
            "bank_type",
            "coupon_fee",
            "fee_type",
            "attach",
            "time_end",
        ];

        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        enum Call {
            Micropay,
            OrderQuery,
        }

        /// An order and the valid paid answer's own fields.
        #[derive(Debug, Clone)]
        struct Case {
            call: Call,
            out_trade_no: String,
            total_fee: u64,
            submitted_at: DateTime<Utc>,
            /// The payment's time after submission (down to the skew allowed).
            paid_after_secs: i64,
            transaction_id: String,
            /// Which of [`OPTIONAL`] the answer leaves out.
            dropped: Vec<bool>,
            key: String,
            sign_type: SignType,
        }

        /// One way for a signed paid answer not to be this order's.
        #[derive(Debug, Clone)]
        enum Mismatch {
            /// Another order number; empty: none at all.
            OutTradeNo(String),
            /// Another amount in fen.
            TotalFee(u64),
            /// The order's amount written in yuan (not an amount in fen).
            TotalFeeInYuan,
            /// No amount.
            NoTotalFee,
            /// Another app id; empty: none at all.
            Appid(String),
            /// Another merchant id; empty: none at all.
            MchId(String),
            /// Paid this many seconds (over the skew allowed) before submission.
            PaidBeforeSubmission(i64),
        }

        fn china(at: DateTime<Utc>) -> String {
            at.with_timezone(&FixedOffset::east_opt(8 * 3600).unwrap())
                .format("%Y%m%d%H%M%S")
                .to_string()
        }

        fn case() -> impl Strategy<Value = Case> {
            // 2015-01-01 to 2035-01-01, whole seconds (time_end has no finer unit).
            let submitted = (1_420_070_400_i64..2_051_222_400)
                .prop_map(|secs| Utc.timestamp_opt(secs, 0).unwrap());
            (
                prop_oneof![Just(Call::Micropay), Just(Call::OrderQuery)],
                "[0-9A-Za-z_-]{1,32}",
                1..=AMOUNT_MAX_FEN,
                submitted,
                -CLOCK_SKEW..=86_400 * 3,
                "[0-9]{28}",
                proptest::collection::vec(any::<bool>(), OPTIONAL.len()),
                "[0-9A-Za-z]{32}",
                prop_oneof![Just(SignType::Md5), Just(SignType::HmacSha256)],
            )
                .prop_map(
                    |(
                        call,
                        out_trade_no,
                        total_fee,
                        submitted_at,
                        paid_after_secs,
                        transaction_id,
                        dropped,
                        key,
                        sign_type,
                    )| Case {
                        call,
                        out_trade_no,
                        total_fee,
                        submitted_at,
                        paid_after_secs,
                        transaction_id,
                        dropped,
                        key,
                        sign_type,
                    },
                )
        }

        const CLOCK_SKEW: i64 = crate::channel::CLOCK_SKEW_SECS;

        fn mismatch() -> impl Strategy<Value = Mismatch> {
            prop_oneof![
                "[0-9A-Za-z_-]{0,32}".prop_map(Mismatch::OutTradeNo),
                any::<u64>().prop_map(Mismatch::TotalFee),
                Just(Mismatch::TotalFeeInYuan),
                Just(Mismatch::NoTotalFee),
                "(wx[0-9a-f]{16})?".prop_map(Mismatch::Appid),
                "([0-9]{8,10})?".prop_map(Mismatch::MchId),
                (CLOCK_SKEW + 1..=86_400 * 366 * 5).prop_map(Mismatch::PaidBeforeSubmission),
            ]
        }

        impl Case {
            fn paid_at(&self) -> DateTime<Utc> {
                self.submitted_at + chrono::Duration::seconds(self.paid_after_secs)
            }

            fn expected(&self) -> OrderExpected<'_> {
                OrderExpected {
                    out_trade_no: &self.out_trade_no,
                    total_fee: self.total_fee,
                    submitted_at: self.submitted_at,
                }
            }

            /// The valid paid answer, unsigned.
            fn answer(&self) -> Params {
                let fixture = match self.call {
                    Call::Micropay => micropay_fixture(),
                    Call::OrderQuery => orderquery_fixture(),
                };
                let mut params = parse(&fixture).unwrap();
                params.remove("sign");
                for (name, value) in [
                    ("out_trade_no", self.out_trade_no.clone()),
                    ("total_fee", self.total_fee.to_string()),
                    ("transaction_id", self.transaction_id.clone()),
                    ("time_end", china(self.paid_at())),
                ] {
                    params.insert(name.to_owned(), value);
                }
                for (name, dropped) in OPTIONAL.iter().zip(&self.dropped) {
                    if *dropped {
                        params.remove(*name);
                    }
                }
                params
            }

            fn key(&self) -> ApiKey {
                ApiKey::from(self.key.as_str())
            }

            fn signed(&self, mut params: Params) -> Params {
                sign::sign_request(&mut params, &self.key(), self.sign_type);
                params
            }

            /// Whether the judgment of `params` (envelope, then business
            /// layer) is paid; `Err` when the envelope was refused.
            fn judge(&self, params: &Params) -> Result<Option<JudgedPaid>, String> {
                let answer = verify_envelope(params, &self.key(), self.sign_type, &merchant())?;
                let paid = match self.call {
                    Call::Micropay => match pay(&answer, &self.expected()) {
                        PayOutcome::Paid {
                            channel_trade_no,
                            paid_at,
                        } => Some((channel_trade_no, paid_at)),
                        _ => None,
                    },
                    Call::OrderQuery => match query(&answer, &self.expected()) {
                        QueryOutcome::Paid {
                            channel_trade_no,
                            paid_at,
                        } => Some((channel_trade_no, paid_at)),
                        _ => None,
                    },
                };
                Ok(paid.map(|(channel_trade_no, paid_at)| {
                    assert_eq!(channel_trade_no, self.transaction_id);
                    JudgedPaid { paid_at }
                }))
            }
        }

        /// A paid judgment, with the payment time the answer gave, if any.
        #[derive(Debug, PartialEq)]
        struct JudgedPaid {
            paid_at: Option<DateTime<Utc>>,
        }

        /// Sets a field; an empty value removes it.
        fn set(params: &mut Params, name: &str, value: String) {
            if value.is_empty() {
                params.remove(name);
            } else {
                params.insert(name.to_owned(), value);
            }
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(512))]

            #[test]
            fn a_mismatched_signed_answer_is_never_paid(case in case(), mismatch in mismatch()) {
                // Not vacuous: the answer before the mismatch is paid, at its time_end if it has one.
                let valid = case.signed(case.answer());
                let time_end_dropped = !valid.contains_key("time_end");
                prop_assert_eq!(
                    case.judge(&valid),
                    Ok(Some(JudgedPaid { paid_at: (!time_end_dropped).then(|| case.paid_at()) }))
                );

                let mut params = case.answer();
                match &mismatch {
                    Mismatch::OutTradeNo(other) => {
                        prop_assume!(*other != case.out_trade_no);
                        set(&mut params, "out_trade_no", other.clone());
                    }
                    Mismatch::TotalFee(other) => {
                        prop_assume!(*other != case.total_fee);
                        set(&mut params, "total_fee", other.to_string());
                    }
                    Mismatch::TotalFeeInYuan => {
                        let yuan = format!("{}.{:02}", case.total_fee / 100, case.total_fee % 100);
                        set(&mut params, "total_fee", yuan);
                    }
                    Mismatch::NoTotalFee => set(&mut params, "total_fee", String::new()),
                    Mismatch::Appid(other) => {
                        prop_assume!(*other != merchant().appid);
                        set(&mut params, "appid", other.clone());
                    }
                    Mismatch::MchId(other) => {
                        prop_assume!(*other != merchant().mch_id);
                        set(&mut params, "mch_id", other.clone());
                    }
                    Mismatch::PaidBeforeSubmission(secs) => {
                        let at = case.submitted_at - chrono::Duration::seconds(*secs);
                        set(&mut params, "time_end", china(at));
                    }
                }
                let params = case.signed(params);
                prop_assert!(
                    sign::verify(&params, &case.key(), case.sign_type),
                    "the mismatched answer is validly signed"
                );
                match case.judge(&params) {
                    Ok(paid) => prop_assert_eq!(paid, None, "{:?} was judged paid", mismatch),
                    // Only a wrong merchant account stops at the envelope.
                    Err(reason) => prop_assert!(
                        matches!(mismatch, Mismatch::Appid(_) | Mismatch::MchId(_)),
                        "{:?} refused at the envelope: {}",
                        mismatch,
                        reason
                    ),
                }
            }
        }
    }
}
