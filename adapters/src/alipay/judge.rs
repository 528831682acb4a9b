//! Judgment: from a verified Alipay answer node to the domain's outcomes.
//!
//! Pure functions, no IO: the client calls them after the envelope has been
//! extracted and its signature verified, and the tests call them per code
//! and sub_code. Each function checks, in this order: the answer is about
//! our request (app id when answered, `out_trade_no`, `out_request_no`,
//! amounts when answered), then the gateway `code`, then the `sub_code` or
//! the business field (`trade_status`, `action`, `refund_status`).
//!
//! Decisions the channels' documentation leaves open, and how they are taken here:
//! - Pay `40004`: only the sub_codes in [`PAY_DEFINITIVE_SUB_CODES`] fail;
//!   `ACQ.SYSTEM_ERROR`, `ACQ.TRADE_HAS_SUCCESS` (a paid duplicate: the query
//!   books it), `ACQ.CONTEXT_INCONSISTENT` (an earlier trade under this
//!   number exists and may be paid) and every unlisted sub_code are unknown.
//! - Pay `40001`/`40002`/`40006`/`20001`: the gateway refused the request
//!   (missing or invalid arguments, bad signature, no permission) before any
//!   trade existed, so nothing moved: `Failed` with the sub_code (or code).
//!   The domain still closes the order with a revoke after a failure. For
//!   refunds the same codes are unknown instead, because a failed refund is
//!   final in the ledger while an unknown one is queried.
//! - Pay and query, paid: `total_amount` is required and must be the
//!   order's; `gmt_payment` / `send_pay_date` are optional (the payment
//!   time is then the ledger's), and a payment dated before the order was
//!   submitted is another trade under a reused number: unknown.
//! - Query: `TRADE_CLOSED` is `Closed` (it may also mean "fully refunded";
//!   the ledger's own refund events tell).
//! - Cancel: `retry_flag=Y` wins over everything (call again); `10000` with
//!   no `action` ("not found, or the call failed") does not say whether
//!   money moved: `Done { Unspecified }`, settled by the statement;
//!   `ACQ.SYSTEM_ERROR` is `MustRetry`; other refusals are unknown
//!   (retried, then escalated).
//! - Refund: a `10000` answer is only `Accepted` (`fund_change` proves
//!   nothing either way); a cumulative `refund_fee` below this refund's
//!   amount is a mismatch. Only `ACQ.TRADE_NOT_EXIST` and
//!   `ACQ.SELLER_BALANCE_NOT_ENOUGH` fail it: `ACQ.TRADE_HAS_CLOSE` could be
//!   the answer to a resend after this very refund closed the trade, so it is
//!   left to the refund query.
//! - Refund query: `REFUND_SUCCESS` succeeds (at `gmt_refund_pay`, else the
//!   answer's HTTP date); no `refund_status` and no `refund_amount` means the
//!   refund never arrived (`NotFound`); an amount without a status is the
//!   legacy form, which is ambiguous, so unknown.
//! - Bill: `isp.bill_not_exist` (and its variants) is "no statement".

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use paycode_domain::payment::{
    ChannelAnswer, PayOutcome, QueryOutcome, RefundOutcome, RevokeOutcome, RevokeResult,
};
use paycode_domain::{ChannelCodes, Money};

use super::envelope::{self, EnvelopeError};
use super::wire::{parse_china_time, parse_yuan_fen};
use crate::channel::paid_before_submission;

/// The call succeeded.
pub const CODE_SUCCESS: &str = "10000";
/// trade.pay: waiting for the buyer (password).
pub const CODE_WAITING: &str = "10003";
/// Service unavailable: the outcome is unknown.
pub const CODE_UNKNOWN: &str = "20000";
/// Business failure; the `sub_code` says which.
pub const CODE_BUSINESS_FAILED: &str = "40004";
/// Gateway refusals: insufficient token permissions, missing arguments,
/// invalid arguments (incl. a bad signature or app id), insufficient permissions.
pub const GATEWAY_REFUSAL_CODES: [&str; 4] = ["20001", "40001", "40002", "40006"];

/// `sub_code`: system error; the trade may or may not exist. Query.
pub const SUB_SYSTEM_ERROR: &str = "ACQ.SYSTEM_ERROR";
/// `sub_code`: the trade does not exist.
pub const SUB_TRADE_NOT_EXIST: &str = "ACQ.TRADE_NOT_EXIST";
/// `sub_code`: pay on an order number that is already paid.
pub const SUB_TRADE_HAS_SUCCESS: &str = "ACQ.TRADE_HAS_SUCCESS";
/// `sub_code`: the cancel window has passed; refund instead.
pub const SUB_TRADE_CANCEL_TIME_OUT: &str = "ACQ.TRADE_CANCEL_TIME_OUT";

/// trade.pay `40004` sub_codes that prove the payment failed (the official
/// error table; docs/rules.md): nothing moved, and a new code or order is needed.
pub const PAY_DEFINITIVE_SUB_CODES: [&str; 22] = [
    "ACQ.TRADE_HAS_CLOSE",
    "ACQ.PAYMENT_AUTH_CODE_INVALID",
    "ACQ.BUYER_BALANCE_NOT_ENOUGH",
    "ACQ.BUYER_BANKCARD_BALANCE_NOT_ENOUGH",
    "ACQ.PAYMENT_FAIL",
    "ACQ.PAYMENT_REQUEST_HAS_RISK",
    "ACQ.TRADE_BUYER_NOT_MATCH",
    "ACQ.INVALID_PARAMETER",
    "ACQ.TOTAL_FEE_EXCEED",
    "ACQ.ACCESS_FORBIDDEN",
    "ACQ.EXIST_FORBIDDEN_WORD",
    "ACQ.SELLER_BEEN_BLOCKED",
    "ACQ.BUYER_SELLER_EQUAL",
    "ACQ.USER_FACE_PAYMENT_SWITCH_OFF",
    "ACQ.PULL_MOBILE_CASHIER_FAIL",
    "ACQ.ERROR_BALANCE_PAYMENT_DISABLE",
    // The reference's `ACQ.BEYOND_*`, spelled out: a prefix would also match codes nobody has read.
    "ACQ.BEYOND_PAY_RESTRICTION",
    "ACQ.BEYOND_PER_RECEIPT_RESTRICTION",
    "ACQ.BEYOND_PER_RECEIPT_DAY_RESTRICTION",
    "ACQ.BEYOND_PER_RECEIPT_SINGLE_RESTRICTION",
    // Payer limits from the same official table.
    "ACQ.BUYER_PAYMENT_AMOUNT_DAY_LIMIT_ERROR",
    "ACQ.BUYER_PAYMENT_AMOUNT_MONTH_LIMIT_ERROR",
];

/// trade.refund `40004` sub_codes that prove no refund happened under this number.
pub const REFUND_DEFINITIVE_SUB_CODES: [&str; 2] =
    ["ACQ.TRADE_NOT_EXIST", "ACQ.SELLER_BALANCE_NOT_ENOUGH"];

/// Bill query sub_codes meaning "there is no bill for that day".
pub const BILL_NOT_EXIST_SUB_CODES: [&str; 3] =
    ["isp.bill_not_exist", "isv.bill-not-exist", "BILL_NOT_EXIST"];

/// The fields copied verbatim into [`ChannelCodes`] for auditors.
pub const AUDIT_FIELDS: [&str; 10] = [
    "code",
    "msg",
    "sub_code",
    "sub_msg",
    "trade_status",
    "retry_flag",
    "action",
    "fund_change",
    "refund_status",
    "trade_no",
];

/// One answer node, read: every member as text. Strings are decoded,
/// numbers and literals kept as written (so amounts stay exact), objects and
/// arrays kept as raw JSON; `null` members are dropped.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Answer {
    fields: BTreeMap<String, String>,
}

impl Answer {
    /// Reads a node's raw text (an object). Duplicate keys are an error.
    pub fn parse(node_raw: &str) -> Result<Answer, EnvelopeError> {
        let mut fields = BTreeMap::new();
        for (key, raw) in envelope::object_members(node_raw)? {
            let value = if raw.starts_with('"') {
                serde_json::from_str::<String>(raw)
                    .map_err(|error| EnvelopeError::Malformed(error.to_string()))?
            } else if raw == "null" {
                continue;
            } else {
                raw.to_owned()
            };
            fields.insert(key, value);
        }
        Ok(Answer { fields })
    }

    /// An answer from name/value pairs (tests, the sandbox).
    pub fn from_pairs(pairs: &[(&str, &str)]) -> Answer {
        Answer {
            fields: pairs
                .iter()
                .map(|(key, value)| ((*key).to_owned(), (*value).to_owned()))
                .collect(),
        }
    }

    /// A member's text; an empty string counts as absent.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.fields
            .get(name)
            .map(String::as_str)
            .filter(|value| !value.is_empty())
    }

    /// The gateway code (`10000`, `40004`, ...).
    pub fn code(&self) -> Option<&str> {
        self.get("code")
    }

    /// The business sub_code (`ACQ.SYSTEM_ERROR`, ...).
    pub fn sub_code(&self) -> Option<&str> {
        self.get("sub_code")
    }

    /// The raw codes for [`ChannelAnswer::codes`].
    pub fn codes(&self) -> ChannelCodes {
        AUDIT_FIELDS
            .iter()
            .fold(ChannelCodes::new(), |codes, name| match self.get(name) {
                Some(value) => codes.with(name, value),
                None => codes,
            })
    }

    /// `code` and `sub_code` for a reason text, e.g. `40004/ACQ.SYSTEM_ERROR`.
    fn code_text(&self) -> String {
        match (self.code(), self.sub_code()) {
            (Some(code), Some(sub_code)) => format!("{code}/{sub_code}"),
            (Some(code), None) => code.to_owned(),
            (None, _) => "no code".to_owned(),
        }
    }

    /// The most specific code, for `Failed { code }`.
    fn failure_code(&self) -> String {
        self.sub_code()
            .or(self.code())
            .unwrap_or("unknown")
            .to_owned()
    }
}

/// What a paid answer (of trade.pay or trade.query) must match.
#[derive(Debug, Clone, Copy)]
pub struct PayExpected<'a> {
    pub app_id: &'a str,
    pub out_trade_no: &'a str,
    pub total_amount: Money,
    /// A payment dated before this (less the clock skew) is another trade's.
    pub submitted_at: DateTime<Utc>,
}

/// What a refund answer must match.
#[derive(Debug, Clone, Copy)]
pub struct RefundExpected<'a> {
    pub app_id: &'a str,
    pub out_trade_no: &'a str,
    pub out_request_no: &'a str,
    pub refund_amount: Money,
}

/// What a refund-query answer must match.
#[derive(Debug, Clone, Copy)]
pub struct RefundQueryExpected<'a> {
    pub app_id: &'a str,
    pub out_trade_no: &'a str,
    pub out_request_no: &'a str,
    /// This refund's amount: `refund_amount`, when answered, must equal it.
    pub refund_amount: Money,
    /// The order's amount: `total_amount`, when answered, must equal it.
    pub total_amount: Money,
}

/// The first field whose answered value differs from what we sent.
fn mismatch(answer: &Answer, expected: &[(&str, &str)]) -> Option<String> {
    expected
        .iter()
        .find_map(|(name, sent)| match answer.get(name) {
            Some(answered) if answered != *sent => Some(format!(
                "answer's {name} {answered:?} differs from the request's {sent:?}"
            )),
            _ => None,
        })
}

/// An answered amount compared to what we sent, exactly.
fn amount_mismatch(answer: &Answer, name: &str, sent: Money) -> Option<String> {
    let answered = answer.get(name)?;
    match parse_yuan_fen(answered) {
        Some(fen) if fen == sent.fen() => None,
        Some(_) => Some(format!(
            "answer's {name} {answered} differs from the request's {sent}"
        )),
        None => Some(format!("answer's {name} {answered:?} is not an amount")),
    }
}

/// An outcome with the answer's raw codes.
fn judged<O>(outcome: O, from: &Answer) -> ChannelAnswer<O> {
    ChannelAnswer::with_codes(outcome, from.codes())
}

fn pay_unknown(from: &Answer, reason: String) -> ChannelAnswer<PayOutcome> {
    judged(PayOutcome::Unknown { reason }, from)
}

/// alipay.trade.pay.
pub fn pay(from: &Answer, expected: &PayExpected<'_>) -> ChannelAnswer<PayOutcome> {
    let sent = [
        ("app_id", expected.app_id),
        ("out_trade_no", expected.out_trade_no),
    ];
    if let Some(reason) = mismatch(from, &sent) {
        return pay_unknown(from, reason);
    }
    match from.code() {
        // Only a success's amount is compared: failures answer "0.00" amounts.
        Some(CODE_SUCCESS) => match paid(from, expected, &["gmt_payment"]) {
            Ok((channel_trade_no, paid_at)) => judged(
                PayOutcome::Paid {
                    channel_trade_no,
                    paid_at,
                },
                from,
            ),
            // The query that follows tells another trade apart.
            Err(NotThisPayment::Unproven(reason) | NotThisPayment::OtherTrade(reason)) => {
                pay_unknown(from, reason)
            }
        },
        Some(CODE_WAITING) => judged(PayOutcome::WaitingForPassword, from),
        Some(CODE_BUSINESS_FAILED) => match from.sub_code() {
            Some(sub_code) if PAY_DEFINITIVE_SUB_CODES.contains(&sub_code) => judged(
                PayOutcome::Failed {
                    code: sub_code.to_owned(),
                },
                from,
            ),
            Some(SUB_TRADE_HAS_SUCCESS) => pay_unknown(
                from,
                format!(
                    "{}: the order is already paid; the query books it",
                    from.code_text()
                ),
            ),
            _ => pay_unknown(
                from,
                format!("{} does not prove the outcome", from.code_text()),
            ),
        },
        Some(code) if GATEWAY_REFUSAL_CODES.contains(&code) => judged(
            PayOutcome::Failed {
                code: from.failure_code(),
            },
            from,
        ),
        _ => pay_unknown(
            from,
            format!("{} does not prove the outcome", from.code_text()),
        ),
    }
}

fn query_unknown(from: &Answer, reason: String) -> ChannelAnswer<QueryOutcome> {
    judged(QueryOutcome::Unknown { reason }, from)
}

/// Why a paid answer does not prove this order's payment.
enum NotThisPayment {
    /// It cannot be read or tied to the order.
    Unproven(String),
    /// A paid trade under this order number with another amount, or paid
    /// before this order was submitted: another trade.
    OtherTrade(String),
}

/// The trade number and payment time of a paid answer, after checking it
/// is this order's payment: the order number and trade number present, the
/// amount present and equal, and the payment time (the first readable of
/// `time_fields`, optional) not before the order was submitted.
fn paid(
    from: &Answer,
    expected: &PayExpected<'_>,
    time_fields: &[&str],
) -> Result<(String, Option<DateTime<Utc>>), NotThisPayment> {
    let unproven = |reason: &str| NotThisPayment::Unproven(reason.to_owned());
    if from.get("out_trade_no").is_none() {
        return Err(unproven(
            "paid without out_trade_no: cannot be tied to the order",
        ));
    }
    let Some(total) = from.get("total_amount") else {
        return Err(unproven(
            "paid without total_amount: cannot be tied to the order",
        ));
    };
    match parse_yuan_fen(total) {
        None => {
            return Err(NotThisPayment::Unproven(format!(
                "answer's total_amount {total:?} is not an amount"
            )));
        }
        Some(fen) if fen != expected.total_amount.fen() => {
            return Err(NotThisPayment::OtherTrade(format!(
                "answer's total_amount {total} differs from the order's {}",
                expected.total_amount
            )));
        }
        Some(_) => {}
    }
    let trade_no = from
        .get("trade_no")
        .ok_or_else(|| unproven("paid without trade_no"))?;
    let mut paid_at = None;
    for name in time_fields {
        if let Some(text) = from.get(name) {
            let at = parse_china_time(text).ok_or_else(|| {
                NotThisPayment::Unproven(format!("paid with an unreadable {name} {text:?}"))
            })?;
            paid_at.get_or_insert(at);
        }
    }
    if let Some(paid_at) = paid_at
        && paid_before_submission(paid_at, expected.submitted_at)
    {
        return Err(NotThisPayment::OtherTrade(format!(
            "paid at {paid_at}, before the order was submitted"
        )));
    }
    Ok((trade_no.to_owned(), paid_at))
}

/// alipay.trade.query: the order's `trade_status`.
pub fn query(from: &Answer, expected: &PayExpected<'_>) -> ChannelAnswer<QueryOutcome> {
    let sent = [
        ("app_id", expected.app_id),
        ("out_trade_no", expected.out_trade_no),
    ];
    if let Some(reason) = mismatch(from, &sent) {
        return query_unknown(from, reason);
    }
    match from.code() {
        Some(CODE_SUCCESS) => {
            if from.get("out_trade_no").is_none() {
                return query_unknown(
                    from,
                    "10000 without out_trade_no cannot be tied to the order".to_owned(),
                );
            }
            match from.get("trade_status") {
                Some("TRADE_SUCCESS" | "TRADE_FINISHED") => {
                    match paid(from, expected, &["send_pay_date", "gmt_payment"]) {
                        Ok((channel_trade_no, paid_at)) => judged(
                            QueryOutcome::Paid {
                                channel_trade_no,
                                paid_at,
                            },
                            from,
                        ),
                        Err(NotThisPayment::Unproven(reason)) => query_unknown(from, reason),
                        Err(NotThisPayment::OtherTrade(reason)) => {
                            judged(QueryOutcome::OtherTrade { reason }, from)
                        }
                    }
                }
                Some("WAIT_BUYER_PAY") => judged(QueryOutcome::WaitingForPassword, from),
                Some("TRADE_CLOSED") => judged(QueryOutcome::Closed, from),
                Some(other) => query_unknown(from, format!("trade_status {other:?} is not known")),
                None => query_unknown(from, "10000 without trade_status".to_owned()),
            }
        }
        Some(CODE_BUSINESS_FAILED) if from.sub_code() == Some(SUB_TRADE_NOT_EXIST) => {
            judged(QueryOutcome::NotFound, from)
        }
        _ => query_unknown(
            from,
            format!("{} does not tell the order's status", from.code_text()),
        ),
    }
}

fn revoke_unknown(from: &Answer, reason: String) -> ChannelAnswer<RevokeOutcome> {
    judged(RevokeOutcome::Unknown { reason }, from)
}

/// alipay.trade.cancel.
pub fn cancel(from: &Answer, app_id: &str, out_trade_no: &str) -> ChannelAnswer<RevokeOutcome> {
    if let Some(reason) = mismatch(from, &[("app_id", app_id), ("out_trade_no", out_trade_no)]) {
        return revoke_unknown(from, reason);
    }
    if from.get("retry_flag") == Some("Y") {
        let reason = format!("{}: retry_flag=Y", from.code_text());
        return judged(RevokeOutcome::MustRetry { reason }, from);
    }
    match from.code() {
        Some(CODE_SUCCESS) => match from.get("action") {
            Some("close") => judged(
                RevokeOutcome::Done {
                    result: RevokeResult::Closed,
                },
                from,
            ),
            Some("refund") => judged(
                RevokeOutcome::Done {
                    result: RevokeResult::Refunded,
                },
                from,
            ),
            // No action: "not found, or the call failed" (Alipay's text):
            // revoked, but whether money moved is for the statement to say.
            None => judged(
                RevokeOutcome::Done {
                    result: RevokeResult::Unspecified,
                },
                from,
            ),
            Some(other) => revoke_unknown(from, format!("action {other:?} is not known")),
        },
        Some(CODE_BUSINESS_FAILED) => match from.sub_code() {
            Some(SUB_TRADE_CANCEL_TIME_OUT) => judged(
                RevokeOutcome::WindowClosed {
                    code: SUB_TRADE_CANCEL_TIME_OUT.to_owned(),
                },
                from,
            ),
            Some(SUB_SYSTEM_ERROR) => judged(
                RevokeOutcome::MustRetry {
                    reason: format!("{}: system error", from.code_text()),
                },
                from,
            ),
            _ => revoke_unknown(from, format!("{} did not revoke", from.code_text())),
        },
        _ => revoke_unknown(from, format!("{} did not revoke", from.code_text())),
    }
}

fn refund_unknown(from: &Answer, reason: String) -> ChannelAnswer<RefundOutcome> {
    judged(RefundOutcome::Unknown { reason }, from)
}

/// alipay.trade.refund.
pub fn refund(from: &Answer, expected: &RefundExpected<'_>) -> ChannelAnswer<RefundOutcome> {
    let sent = [
        ("app_id", expected.app_id),
        ("out_trade_no", expected.out_trade_no),
        ("out_request_no", expected.out_request_no),
    ];
    if let Some(reason) = mismatch(from, &sent) {
        return refund_unknown(from, reason);
    }
    match from.code() {
        Some(CODE_SUCCESS) => {
            // refund_fee is the trade's cumulative refunded amount: at least this refund.
            if let Some(refund_fee) = from.get("refund_fee") {
                match parse_yuan_fen(refund_fee) {
                    Some(fen) if fen >= expected.refund_amount.fen() => {}
                    _ => {
                        let reason = format!(
                            "answer's refund_fee {refund_fee:?} is below the refund's {}",
                            expected.refund_amount
                        );
                        return refund_unknown(from, reason);
                    }
                }
            }
            judged(
                RefundOutcome::Accepted {
                    channel_refund_no: None,
                },
                from,
            )
        }
        Some(CODE_BUSINESS_FAILED) => match from.sub_code() {
            Some(sub_code) if REFUND_DEFINITIVE_SUB_CODES.contains(&sub_code) => judged(
                RefundOutcome::Failed {
                    code: sub_code.to_owned(),
                },
                from,
            ),
            _ => refund_unknown(
                from,
                format!("{}: the refund query decides", from.code_text()),
            ),
        },
        _ => refund_unknown(
            from,
            format!("{}: the refund query decides", from.code_text()),
        ),
    }
}

/// alipay.trade.fastpay.refund.query. `answered_at` (the HTTP `Date` of
/// the answer) dates a success that has no `gmt_refund_pay`.
pub fn refund_query(
    from: &Answer,
    expected: &RefundQueryExpected<'_>,
    answered_at: Option<DateTime<Utc>>,
) -> ChannelAnswer<RefundOutcome> {
    let sent = [
        ("app_id", expected.app_id),
        ("out_trade_no", expected.out_trade_no),
        ("out_request_no", expected.out_request_no),
    ];
    if let Some(reason) = mismatch(from, &sent) {
        return refund_unknown(from, reason);
    }
    match from.code() {
        Some(CODE_SUCCESS) => match from.get("refund_status") {
            Some("REFUND_SUCCESS") => {
                if from.get("out_trade_no").is_none() || from.get("out_request_no").is_none() {
                    return refund_unknown(
                        from,
                        "REFUND_SUCCESS without out_trade_no and out_request_no".to_owned(),
                    );
                }
                let amounts = amount_mismatch(from, "refund_amount", expected.refund_amount)
                    .or_else(|| amount_mismatch(from, "total_amount", expected.total_amount));
                if let Some(reason) = amounts {
                    return refund_unknown(from, reason);
                }
                let refunded_at = from
                    .get("gmt_refund_pay")
                    .and_then(parse_china_time)
                    .or(answered_at);
                let Some(refunded_at) = refunded_at else {
                    return refund_unknown(
                        from,
                        "REFUND_SUCCESS without a readable gmt_refund_pay".to_owned(),
                    );
                };
                judged(
                    RefundOutcome::Succeeded {
                        channel_refund_no: None,
                        refunded_at,
                    },
                    from,
                )
            }
            Some("REFUND_PROCESSING") => judged(RefundOutcome::Processing, from),
            Some("REFUND_FAIL") => judged(
                RefundOutcome::Failed {
                    code: "REFUND_FAIL".to_owned(),
                },
                from,
            ),
            Some(other) => refund_unknown(from, format!("refund_status {other:?} is not known")),
            None if from.get("refund_amount").is_none() => judged(RefundOutcome::NotFound, from),
            None => refund_unknown(
                from,
                "refund_amount without refund_status (legacy answer)".to_owned(),
            ),
        },
        _ => refund_unknown(
            from,
            format!("{} does not tell the refund's status", from.code_text()),
        ),
    }
}

/// What the bill download-URL query said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BillUrlAnswer {
    /// Download the zip from here (valid about 30 s).
    Url(String),
    /// No bill for that day.
    NoStatement { code: String },
    /// Refused; reconciliation retries later.
    Refused { code: String, message: String },
}

/// alipay.data.dataservice.bill.downloadurl.query.
pub fn bill_url(from: &Answer) -> BillUrlAnswer {
    match (from.code(), from.sub_code()) {
        (Some(CODE_SUCCESS), _) => match from.get("bill_download_url") {
            Some(url) => BillUrlAnswer::Url(url.to_owned()),
            None => BillUrlAnswer::Refused {
                code: CODE_SUCCESS.to_owned(),
                message: "answer has no bill_download_url".to_owned(),
            },
        },
        (_, Some(sub_code)) if BILL_NOT_EXIST_SUB_CODES.contains(&sub_code) => {
            BillUrlAnswer::NoStatement {
                code: sub_code.to_owned(),
            }
        }
        _ => BillUrlAnswer::Refused {
            code: from.code_text(),
            message: from
                .get("sub_msg")
                .or(from.get("msg"))
                .unwrap_or_default()
                .to_owned(),
        },
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    const APP: &str = "2019090366875133";

    fn money(text: &str) -> Money {
        text.parse().unwrap()
    }

    /// When the fixtures' orders were submitted: 2017-03-21 13:00 China
    /// time, shortly before their payment times (13:29:17 and 15:07:29).
    fn submitted() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2017, 3, 21, 5, 0, 0).unwrap()
    }

    fn pay_expected(order: &str) -> PayExpected<'_> {
        PayExpected {
            app_id: APP,
            out_trade_no: order,
            total_amount: money("20.00"),
            submitted_at: submitted(),
        }
    }

    fn refund_query_expected() -> RefundQueryExpected<'static> {
        RefundQueryExpected {
            app_id: APP,
            out_trade_no: "o1",
            out_request_no: "r1",
            refund_amount: money("5.00"),
            total_amount: money("20.00"),
        }
    }

    /// The `node` of the protocol vector `name`'s body.
    fn fixture_node(name: &str, node: &str) -> Answer {
        let value = crate::testing::vector_json(name);
        Answer::parse(&value["body"][node].to_string()).unwrap()
    }

    fn failed_pay(sub_code: &str) -> ChannelAnswer<PayOutcome> {
        pay(
            &Answer::from_pairs(&[("code", "40004"), ("sub_code", sub_code)]),
            &pay_expected("o1"),
        )
    }

    #[test]
    fn pay_10000_is_paid_with_the_china_time_of_payment() {
        // The fzlee trade.pay fixture: code 10000 on pay means paid.
        let answer = fixture_node(
            "ali_trade_pay_resp_success_fzlee.json",
            "alipay_trade_pay_response",
        );
        let judged = pay(&answer, &pay_expected("out_trade_no18"));
        assert_eq!(
            judged.outcome,
            PayOutcome::Paid {
                channel_trade_no: "2017032121001004070200176846".to_owned(),
                paid_at: Some(Utc.with_ymd_and_hms(2017, 3, 21, 7, 7, 29).unwrap()),
            }
        );
        assert_eq!(judged.codes.get("code"), Some("10000"));
        assert_eq!(judged.codes.get("msg"), Some("Success"));
    }

    #[test]
    fn pay_10000_that_is_not_about_our_order_or_amount_is_unknown() {
        let paid = [
            ("code", "10000"),
            ("trade_no", "t1"),
            ("out_trade_no", "o1"),
            ("total_amount", "20.00"),
            ("gmt_payment", "2017-03-21 15:07:29"),
        ];
        assert!(matches!(
            pay(&Answer::from_pairs(&paid), &pay_expected("o1")).outcome,
            PayOutcome::Paid { .. }
        ));
        // Another order number.
        let judged = pay(&Answer::from_pairs(&paid), &pay_expected("o2"));
        assert!(
            matches!(&judged.outcome, PayOutcome::Unknown { reason } if reason.contains("out_trade_no"))
        );
        // Another amount, exactly compared (20.00 vs 20.01).
        let expected = PayExpected {
            total_amount: money("20.01"),
            ..pay_expected("o1")
        };
        assert!(matches!(
            pay(&Answer::from_pairs(&paid), &expected).outcome,
            PayOutcome::Unknown { .. }
        ));
        // An amount answered as a number's text is still exact.
        let mut as_number = paid;
        as_number[3] = ("total_amount", "20");
        assert!(matches!(
            pay(&Answer::from_pairs(&as_number), &pay_expected("o1")).outcome,
            PayOutcome::Paid { .. }
        ));
        // Another app.
        let mut other_app = paid.to_vec();
        other_app.push(("app_id", "999"));
        assert!(matches!(
            pay(&Answer::from_pairs(&other_app), &pay_expected("o1")).outcome,
            PayOutcome::Unknown { .. }
        ));
        // Missing the order number, the trade number or the amount.
        for missing in ["out_trade_no", "trade_no", "total_amount"] {
            let partial: Vec<(&str, &str)> = paid
                .iter()
                .copied()
                .filter(|(key, _)| *key != missing)
                .collect();
            let judged = pay(&Answer::from_pairs(&partial), &pay_expected("o1"));
            assert!(
                matches!(judged.outcome, PayOutcome::Unknown { .. }),
                "without {missing}"
            );
        }
    }

    // ---- a paid answer is the order's own ---------------------------------

    /// A paid trade.pay answer for order o1 of 20.00, paid at 15:07:29 China time.
    const PAID: [(&str, &str); 6] = [
        ("code", "10000"),
        ("msg", "Success"),
        ("trade_no", "t1"),
        ("out_trade_no", "o1"),
        ("total_amount", "20.00"),
        ("gmt_payment", "2017-03-21 15:07:29"),
    ];

    /// A paid trade.query answer for the same payment.
    const QUERIED: [(&str, &str); 7] = [
        ("code", "10000"),
        ("msg", "Success"),
        ("trade_no", "t1"),
        ("out_trade_no", "o1"),
        ("trade_status", "TRADE_SUCCESS"),
        ("total_amount", "20.00"),
        ("send_pay_date", "2017-03-21 15:07:29"),
    ];

    /// 15:07:29 China time.
    fn fixture_paid_at() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2017, 3, 21, 7, 7, 29).unwrap()
    }

    /// `pairs` with `changes` applied: a field replaced or added, or
    /// removed when the value is empty.
    fn changed<'a>(pairs: &[(&'a str, &'a str)], changes: &[(&'a str, &'a str)]) -> Answer {
        let mut all: Vec<(&str, &str)> = pairs
            .iter()
            .copied()
            .filter(|(key, _)| !changes.iter().any(|(name, _)| name == key))
            .collect();
        all.extend(
            changes
                .iter()
                .copied()
                .filter(|(_, value)| !value.is_empty()),
        );
        Answer::from_pairs(&all)
    }

    fn paid_outcome(paid_at: Option<DateTime<Utc>>) -> PayOutcome {
        PayOutcome::Paid {
            channel_trade_no: "t1".to_owned(),
            paid_at,
        }
    }

    fn queried_paid(paid_at: Option<DateTime<Utc>>) -> QueryOutcome {
        QueryOutcome::Paid {
            channel_trade_no: "t1".to_owned(),
            paid_at,
        }
    }

    #[test]
    fn pay_10000_without_gmt_payment_is_paid_at_an_unknown_time() {
        let judged = pay(&changed(&PAID, &[("gmt_payment", "")]), &pay_expected("o1"));
        assert_eq!(judged.outcome, paid_outcome(None));
        // Present but unreadable is not the same as absent.
        for gmt_payment in ["2017-03-21T15:07:29", "20170321150729", "yesterday"] {
            let judged = pay(
                &changed(&PAID, &[("gmt_payment", gmt_payment)]),
                &pay_expected("o1"),
            );
            assert!(
                matches!(&judged.outcome, PayOutcome::Unknown { reason } if reason.contains("gmt_payment")),
                "{gmt_payment}: {:?}",
                judged.outcome
            );
        }
    }

    #[test]
    fn query_paid_without_send_pay_date_and_gmt_payment_is_paid_at_an_unknown_time() {
        for status in ["TRADE_SUCCESS", "TRADE_FINISHED"] {
            let neither = changed(&QUERIED, &[("trade_status", status), ("send_pay_date", "")]);
            assert_eq!(
                query(&neither, &pay_expected("o1")).outcome,
                queried_paid(None),
                "{status}"
            );
        }
        // send_pay_date first, then gmt_payment.
        let both = changed(&QUERIED, &[("gmt_payment", "2017-03-21 15:08:00")]);
        assert_eq!(
            query(&both, &pay_expected("o1")).outcome,
            queried_paid(Some(fixture_paid_at()))
        );
        // A time that is answered must be readable.
        for unreadable in [
            [
                ("send_pay_date", "2017/03/21 15:07:29"),
                ("gmt_payment", ""),
            ],
            [("send_pay_date", ""), ("gmt_payment", "soon")],
            [
                ("send_pay_date", "2017-03-21 15:07:29"),
                ("gmt_payment", "soon"),
            ],
        ] {
            let judged = query(&changed(&QUERIED, &unreadable), &pay_expected("o1"));
            assert!(
                matches!(judged.outcome, QueryOutcome::Unknown { .. }),
                "{unreadable:?}: {:?}",
                judged.outcome
            );
        }
    }

    #[test]
    fn a_paid_answer_without_total_amount_is_unknown() {
        let judged = pay(
            &changed(&PAID, &[("total_amount", "")]),
            &pay_expected("o1"),
        );
        assert!(
            matches!(&judged.outcome, PayOutcome::Unknown { reason } if reason.contains("total_amount")),
            "{:?}",
            judged.outcome
        );
        let judged = query(
            &changed(&QUERIED, &[("total_amount", "")]),
            &pay_expected("o1"),
        );
        assert!(
            matches!(&judged.outcome, QueryOutcome::Unknown { reason } if reason.contains("total_amount")),
            "{:?}",
            judged.outcome
        );
    }

    #[test]
    fn a_paid_answer_for_another_amount_is_never_paid() {
        // Another amount than the order's 20.00: the pay answer is unknown
        // (the query that follows tells), the query's is another trade's.
        for total_amount in ["20.01", "19.99", "2000", "0.00"] {
            let change = [("total_amount", total_amount)];
            let judged = pay(&changed(&PAID, &change), &pay_expected("o1"));
            assert!(
                matches!(judged.outcome, PayOutcome::Unknown { .. }),
                "pay {total_amount}: {:?}",
                judged.outcome
            );
            let judged = query(&changed(&QUERIED, &change), &pay_expected("o1"));
            assert!(
                matches!(&judged.outcome, QueryOutcome::OtherTrade { reason } if reason.contains("total_amount")),
                "query {total_amount}: {:?}",
                judged.outcome
            );
        }
        // No amount at all: unknown.
        for total_amount in ["20.001", "20.", "-20.00", "CNY20"] {
            let change = [("total_amount", total_amount)];
            let judged = pay(&changed(&PAID, &change), &pay_expected("o1"));
            assert!(
                matches!(judged.outcome, PayOutcome::Unknown { .. }),
                "pay {total_amount}: {:?}",
                judged.outcome
            );
            let judged = query(&changed(&QUERIED, &change), &pay_expected("o1"));
            assert!(
                matches!(judged.outcome, QueryOutcome::Unknown { .. }),
                "query {total_amount}: {:?}",
                judged.outcome
            );
        }
        // The same amount written otherwise is the same amount.
        for total_amount in ["20", "20.0"] {
            let change = [("total_amount", total_amount)];
            assert!(matches!(
                pay(&changed(&PAID, &change), &pay_expected("o1")).outcome,
                PayOutcome::Paid { .. }
            ));
            assert!(matches!(
                query(&changed(&QUERIED, &change), &pay_expected("o1")).outcome,
                QueryOutcome::Paid { .. }
            ));
        }
    }

    #[test]
    fn a_paid_answer_of_another_order_or_app_is_never_paid() {
        for change in [
            ("out_trade_no", "o2"),
            ("out_trade_no", ""),
            ("trade_no", ""),
            ("app_id", "2019090366875134"),
        ] {
            let judged = pay(&changed(&PAID, &[change]), &pay_expected("o1"));
            assert!(
                matches!(judged.outcome, PayOutcome::Unknown { .. }),
                "pay {change:?}: {:?}",
                judged.outcome
            );
            let judged = query(&changed(&QUERIED, &[change]), &pay_expected("o1"));
            assert!(
                matches!(judged.outcome, QueryOutcome::Unknown { .. }),
                "query {change:?}: {:?}",
                judged.outcome
            );
        }
        // Our own app id, answered, is fine.
        let ours = [("app_id", APP)];
        assert!(matches!(
            pay(&changed(&PAID, &ours), &pay_expected("o1")).outcome,
            PayOutcome::Paid { .. }
        ));
    }

    #[test]
    fn a_payment_dated_over_a_minute_before_submission_is_not_paid_and_within_it_is() {
        let submitted = |after_payment_secs: i64| PayExpected {
            submitted_at: fixture_paid_at() + chrono::Duration::seconds(after_payment_secs),
            ..pay_expected("o1")
        };
        let query_by_gmt_payment = changed(
            &QUERIED,
            &[
                ("send_pay_date", ""),
                ("gmt_payment", "2017-03-21 15:07:29"),
            ],
        );
        // Another trade under a reused order number: paid before this order
        // existed. Unknown on pay (the query that follows tells); another
        // trade on query.
        for secs in [61, 3600, 86_400 * 365] {
            let judged = pay(&Answer::from_pairs(&PAID), &submitted(secs));
            assert!(
                matches!(&judged.outcome, PayOutcome::Unknown { reason } if reason.contains("before the order was submitted")),
                "{secs}: {:?}",
                judged.outcome
            );
            for answer in [&Answer::from_pairs(&QUERIED), &query_by_gmt_payment] {
                let judged = query(answer, &submitted(secs));
                assert!(
                    matches!(&judged.outcome, QueryOutcome::OtherTrade { reason } if reason.contains("before the order was submitted")),
                    "{secs}: {:?}",
                    judged.outcome
                );
            }
        }
        // Up to a minute of clock skew, and any time after submission, is this order's payment.
        for secs in [60, 59, 1, 0, -1, -3600] {
            assert_eq!(
                pay(&Answer::from_pairs(&PAID), &submitted(secs)).outcome,
                paid_outcome(Some(fixture_paid_at())),
                "{secs}"
            );
            for answer in [&Answer::from_pairs(&QUERIED), &query_by_gmt_payment] {
                assert_eq!(
                    query(answer, &submitted(secs)).outcome,
                    queried_paid(Some(fixture_paid_at())),
                    "{secs}"
                );
            }
        }
    }

    #[test]
    fn pay_failures_with_zero_amounts_still_fail() {
        // 40004 answers carry "0.00" amounts; they are not a mismatch.
        let pairs = [
            ("code", "40004"),
            ("sub_code", "ACQ.PAYMENT_AUTH_CODE_INVALID"),
            ("out_trade_no", "o1"),
            ("total_amount", "0.00"),
        ];
        let judged = pay(&Answer::from_pairs(&pairs), &pay_expected("o1"));
        assert_eq!(
            judged.outcome,
            PayOutcome::Failed {
                code: "ACQ.PAYMENT_AUTH_CODE_INVALID".to_owned()
            }
        );
    }

    #[test]
    fn pay_10003_waits_and_20000_is_unknown() {
        let waiting = pay(
            &Answer::from_pairs(&[("code", "10003"), ("out_trade_no", "o1")]),
            &pay_expected("o1"),
        );
        assert_eq!(waiting.outcome, PayOutcome::WaitingForPassword);
        let unknown = pay(
            &Answer::from_pairs(&[("code", "20000"), ("sub_code", "isp.unknow-error")]),
            &pay_expected("o1"),
        );
        assert!(matches!(unknown.outcome, PayOutcome::Unknown { .. }));
        assert_eq!(unknown.codes.get("sub_code"), Some("isp.unknow-error"));
        let no_code = pay(&Answer::from_pairs(&[("msg", "x")]), &pay_expected("o1"));
        assert!(matches!(no_code.outcome, PayOutcome::Unknown { .. }));
        let new_code = pay(
            &Answer::from_pairs(&[("code", "10001")]),
            &pay_expected("o1"),
        );
        assert!(matches!(new_code.outcome, PayOutcome::Unknown { .. }));
    }

    #[test]
    fn every_definitive_pay_sub_code_fails_with_that_code() {
        for sub_code in PAY_DEFINITIVE_SUB_CODES {
            assert_eq!(
                failed_pay(sub_code).outcome,
                PayOutcome::Failed {
                    code: sub_code.to_owned()
                }
            );
        }
        // The fzlee fixture: 40004 ACQ.INVALID_PARAMETER, with 0.00 amounts but no total_amount.
        let answer = fixture_node(
            "ali_trade_pay_resp_40004_invalid_parameter_fzlee.json",
            "alipay_trade_pay_response",
        );
        let judged = pay(&answer, &pay_expected("o1"));
        assert_eq!(
            judged.outcome,
            PayOutcome::Failed {
                code: "ACQ.INVALID_PARAMETER".to_owned()
            }
        );
        assert_eq!(judged.codes.get("sub_code"), Some("ACQ.INVALID_PARAMETER"));
    }

    #[test]
    fn pay_sub_codes_that_do_not_prove_failure_are_unknown() {
        for sub_code in [
            "ACQ.SYSTEM_ERROR",
            "ACQ.TRADE_HAS_SUCCESS",
            "ACQ.CONTEXT_INCONSISTENT",
            "ACQ.SOMETHING_NEW",
        ] {
            assert!(
                matches!(failed_pay(sub_code).outcome, PayOutcome::Unknown { .. }),
                "{sub_code}"
            );
        }
        let no_sub_code = pay(
            &Answer::from_pairs(&[("code", "40004")]),
            &pay_expected("o1"),
        );
        assert!(matches!(no_sub_code.outcome, PayOutcome::Unknown { .. }));
    }

    #[test]
    fn gateway_refusals_of_pay_fail_with_their_sub_code() {
        // Nothing was created: the gateway refused the request itself.
        let answer = fixture_node("ali_error_response_40002_fzlee.json", "error_response");
        assert_eq!(
            pay(&answer, &pay_expected("o1")).outcome,
            PayOutcome::Failed {
                code: "isv.code-invalid".to_owned()
            }
        );
        for code in GATEWAY_REFUSAL_CODES {
            let judged = pay(&Answer::from_pairs(&[("code", code)]), &pay_expected("o1"));
            assert_eq!(
                judged.outcome,
                PayOutcome::Failed {
                    code: code.to_owned()
                }
            );
        }
    }

    #[test]
    fn query_maps_every_trade_status() {
        let answer = fixture_node(
            "ali_trade_query_resp_trade_success_fzlee.json",
            "alipay_trade_query_response",
        );
        assert_eq!(
            query(&answer, &pay_expected("out_trade_no15")).outcome,
            QueryOutcome::Paid {
                channel_trade_no: "2017032121001004070200176844".to_owned(),
                paid_at: Some(Utc.with_ymd_and_hms(2017, 3, 21, 5, 29, 17).unwrap()),
            }
        );
        let with_status = |status: &str| {
            let pairs = [
                ("code", "10000"),
                ("out_trade_no", "o1"),
                ("trade_no", "t1"),
                ("trade_status", status),
                ("total_amount", "20.00"),
                ("send_pay_date", "2017-03-21 13:29:17"),
            ];
            query(&Answer::from_pairs(&pairs), &pay_expected("o1"))
        };
        assert!(matches!(
            with_status("TRADE_SUCCESS").outcome,
            QueryOutcome::Paid { .. }
        ));
        assert!(matches!(
            with_status("TRADE_FINISHED").outcome,
            QueryOutcome::Paid { .. }
        ));
        assert_eq!(
            with_status("WAIT_BUYER_PAY").outcome,
            QueryOutcome::WaitingForPassword
        );
        assert_eq!(with_status("TRADE_CLOSED").outcome, QueryOutcome::Closed);
        assert!(matches!(
            with_status("TRADE_NEW_STATE").outcome,
            QueryOutcome::Unknown { .. }
        ));
        assert!(matches!(
            with_status("").outcome,
            QueryOutcome::Unknown { .. }
        ));
        assert_eq!(
            with_status("TRADE_CLOSED").codes.get("trade_status"),
            Some("TRADE_CLOSED")
        );
        // gmt_payment stands in for send_pay_date.
        let gmt = [
            ("code", "10000"),
            ("out_trade_no", "o1"),
            ("trade_no", "t1"),
            ("trade_status", "TRADE_SUCCESS"),
            ("total_amount", "20.00"),
            ("gmt_payment", "2017-03-21 13:29:17"),
        ];
        assert_eq!(
            query(&Answer::from_pairs(&gmt), &pay_expected("o1")).outcome,
            QueryOutcome::Paid {
                channel_trade_no: "t1".to_owned(),
                paid_at: Some(Utc.with_ymd_and_hms(2017, 3, 21, 5, 29, 17).unwrap()),
            }
        );
    }

    #[test]
    fn query_answers_for_another_order_or_without_proof_are_unknown() {
        let other = [
            ("code", "10000"),
            ("out_trade_no", "o2"),
            ("trade_no", "t1"),
            ("trade_status", "TRADE_SUCCESS"),
            ("total_amount", "20.00"),
            ("send_pay_date", "2017-03-21 13:29:17"),
        ];
        assert!(matches!(
            query(&Answer::from_pairs(&other), &pay_expected("o1")).outcome,
            QueryOutcome::Unknown { .. }
        ));
        let untied = [("code", "10000"), ("trade_status", "TRADE_CLOSED")];
        assert!(matches!(
            query(&Answer::from_pairs(&untied), &pay_expected("o1")).outcome,
            QueryOutcome::Unknown { .. }
        ));
        let no_trade_no = [
            ("code", "10000"),
            ("out_trade_no", "o1"),
            ("trade_status", "TRADE_SUCCESS"),
            ("total_amount", "20.00"),
            ("send_pay_date", "2017-03-21 13:29:17"),
        ];
        assert!(matches!(
            query(&Answer::from_pairs(&no_trade_no), &pay_expected("o1")).outcome,
            QueryOutcome::Unknown { .. }
        ));
    }

    #[test]
    fn query_codes_not_exist_system_error_and_gateway_errors() {
        let judge =
            |pairs: &[(&str, &str)]| query(&Answer::from_pairs(pairs), &pay_expected("o1")).outcome;
        assert_eq!(
            judge(&[("code", "40004"), ("sub_code", "ACQ.TRADE_NOT_EXIST")]),
            QueryOutcome::NotFound
        );
        assert!(matches!(
            judge(&[("code", "40004"), ("sub_code", "ACQ.SYSTEM_ERROR")]),
            QueryOutcome::Unknown { .. }
        ));
        assert!(matches!(
            judge(&[("code", "20000")]),
            QueryOutcome::Unknown { .. }
        ));
        // The fzlee fixture: 40002 isv.invalid-app-id inside the method node.
        let answer = fixture_node(
            "ali_trade_query_resp_40002_invalid_app_id_fzlee.json",
            "alipay_trade_query_response",
        );
        let judged = query(&answer, &pay_expected("o1"));
        assert!(matches!(judged.outcome, QueryOutcome::Unknown { .. }));
        assert_eq!(judged.codes.get("sub_code"), Some("isv.invalid-app-id"));
    }

    #[test]
    fn cancel_follows_retry_flag_then_action() {
        let judge = |pairs: &[(&str, &str)]| cancel(&Answer::from_pairs(pairs), APP, "o1");
        let retry = judge(&[("code", "10000"), ("retry_flag", "Y"), ("action", "close")]);
        assert!(matches!(retry.outcome, RevokeOutcome::MustRetry { .. }));
        assert_eq!(retry.codes.get("retry_flag"), Some("Y"));
        let retry_on_error = judge(&[
            ("code", "40004"),
            ("sub_code", "ACQ.SYSTEM_ERROR"),
            ("retry_flag", "Y"),
        ]);
        assert!(matches!(
            retry_on_error.outcome,
            RevokeOutcome::MustRetry { .. }
        ));
        let closed = judge(&[
            ("code", "10000"),
            ("retry_flag", "N"),
            ("action", "close"),
            ("out_trade_no", "o1"),
        ]);
        assert_eq!(
            closed.outcome,
            RevokeOutcome::Done {
                result: RevokeResult::Closed
            }
        );
        assert_eq!(closed.codes.get("action"), Some("close"));
        let refunded = judge(&[("code", "10000"), ("retry_flag", "N"), ("action", "refund")]);
        assert_eq!(
            refunded.outcome,
            RevokeOutcome::Done {
                result: RevokeResult::Refunded
            }
        );
        assert!(matches!(
            judge(&[("code", "10000"), ("action", "explode")]).outcome,
            RevokeOutcome::Unknown { .. }
        ));
        // The fzlee fixture: 10000, retry_flag N, no action: done, without
        // saying whether money moved.
        let answer = fixture_node(
            "ali_trade_cancel_resp_fzlee.json",
            "alipay_trade_cancel_response",
        );
        assert_eq!(
            cancel(&answer, APP, "out_trade_no15").outcome,
            RevokeOutcome::Done {
                result: RevokeResult::Unspecified
            }
        );
        assert!(matches!(
            cancel(&answer, APP, "another").outcome,
            RevokeOutcome::Unknown { .. }
        ));
    }

    #[test]
    fn cancel_10000_without_action_is_done_without_saying_what_it_did() {
        // "Not found, or the call failed": revoked, but whether money moved
        // is for the statement to say.
        for retry_flag in [Some("N"), None] {
            let mut pairs = vec![
                ("code", "10000"),
                ("msg", "Success"),
                ("out_trade_no", "o1"),
            ];
            pairs.extend(retry_flag.map(|flag| ("retry_flag", flag)));
            let judged = cancel(&Answer::from_pairs(&pairs), APP, "o1");
            assert_eq!(
                judged.outcome,
                RevokeOutcome::Done {
                    result: RevokeResult::Unspecified
                },
                "retry_flag {retry_flag:?}"
            );
        }
        // Without an order number too (nothing ties it to another order).
        let bare = cancel(&Answer::from_pairs(&[("code", "10000")]), APP, "o1");
        assert_eq!(
            bare.outcome,
            RevokeOutcome::Done {
                result: RevokeResult::Unspecified
            }
        );
        // But not for another order.
        let other = cancel(
            &Answer::from_pairs(&[("code", "10000"), ("out_trade_no", "o2")]),
            APP,
            "o1",
        );
        assert!(matches!(other.outcome, RevokeOutcome::Unknown { .. }));
    }

    #[test]
    fn cancel_refusals() {
        let judge = |sub_code: &str| {
            cancel(
                &Answer::from_pairs(&[("code", "40004"), ("sub_code", sub_code)]),
                APP,
                "o1",
            )
            .outcome
        };
        assert_eq!(
            judge("ACQ.TRADE_CANCEL_TIME_OUT"),
            RevokeOutcome::WindowClosed {
                code: "ACQ.TRADE_CANCEL_TIME_OUT".to_owned()
            }
        );
        assert!(matches!(
            judge("ACQ.SYSTEM_ERROR"),
            RevokeOutcome::MustRetry { .. }
        ));
        for sub_code in [
            "ACQ.SELLER_BALANCE_NOT_ENOUGH",
            "ACQ.REASON_TRADE_REFUND_FEE_ERR",
            "ACQ.TRADE_HAS_FINISHED",
            "ACQ.TRADE_NOT_EXIST",
            "ACQ.NEW",
        ] {
            assert!(
                matches!(judge(sub_code), RevokeOutcome::Unknown { .. }),
                "{sub_code}"
            );
        }
        let gateway = cancel(&Answer::from_pairs(&[("code", "40002")]), APP, "o1").outcome;
        assert!(matches!(gateway, RevokeOutcome::Unknown { .. }));
        let unavailable = cancel(&Answer::from_pairs(&[("code", "20000")]), APP, "o1").outcome;
        assert!(matches!(unavailable, RevokeOutcome::Unknown { .. }));
    }

    #[test]
    fn refund_10000_is_accepted_whatever_fund_change_says() {
        let expected = RefundExpected {
            app_id: APP,
            out_trade_no: "o1",
            out_request_no: "r1",
            refund_amount: money("5.00"),
        };
        for fund_change in ["Y", "N"] {
            let pairs = [
                ("code", "10000"),
                ("out_trade_no", "o1"),
                ("fund_change", fund_change),
                ("refund_fee", "5.00"),
            ];
            let judged = refund(&Answer::from_pairs(&pairs), &expected);
            assert_eq!(
                judged.outcome,
                RefundOutcome::Accepted {
                    channel_refund_no: None
                }
            );
            assert_eq!(judged.codes.get("fund_change"), Some(fund_change));
        }
        // refund_fee is cumulative: more is fine, less is a mismatch.
        let cumulative = [
            ("code", "10000"),
            ("out_trade_no", "o1"),
            ("refund_fee", "12.00"),
        ];
        assert!(matches!(
            refund(&Answer::from_pairs(&cumulative), &expected).outcome,
            RefundOutcome::Accepted { .. }
        ));
        let below = [
            ("code", "10000"),
            ("out_trade_no", "o1"),
            ("refund_fee", "4.99"),
        ];
        assert!(matches!(
            refund(&Answer::from_pairs(&below), &expected).outcome,
            RefundOutcome::Unknown { .. }
        ));
        let other_order = [("code", "10000"), ("out_trade_no", "o2")];
        assert!(matches!(
            refund(&Answer::from_pairs(&other_order), &expected).outcome,
            RefundOutcome::Unknown { .. }
        ));
        let other_refund = [
            ("code", "10000"),
            ("out_trade_no", "o1"),
            ("out_request_no", "r2"),
        ];
        assert!(matches!(
            refund(&Answer::from_pairs(&other_refund), &expected).outcome,
            RefundOutcome::Unknown { .. }
        ));
    }

    #[test]
    fn refund_refusals() {
        let expected = RefundExpected {
            app_id: APP,
            out_trade_no: "o1",
            out_request_no: "r1",
            refund_amount: money("5.00"),
        };
        let judge = |sub_code: &str| {
            refund(
                &Answer::from_pairs(&[("code", "40004"), ("sub_code", sub_code)]),
                &expected,
            )
            .outcome
        };
        for sub_code in REFUND_DEFINITIVE_SUB_CODES {
            assert_eq!(
                judge(sub_code),
                RefundOutcome::Failed {
                    code: sub_code.to_owned()
                }
            );
        }
        for sub_code in [
            "ACQ.SYSTEM_ERROR",
            "ACQ.TRADE_HAS_CLOSE",
            "ACQ.REFUND_AMT_NOT_EQUAL_TOTAL",
            "ACQ.NEW",
        ] {
            assert!(
                matches!(judge(sub_code), RefundOutcome::Unknown { .. }),
                "{sub_code}"
            );
        }
        for code in ["20000", "40002"] {
            let judged = refund(&Answer::from_pairs(&[("code", code)]), &expected).outcome;
            assert!(matches!(judged, RefundOutcome::Unknown { .. }), "{code}");
        }
    }

    #[test]
    fn refund_query_maps_refund_status() {
        let expected = refund_query_expected();
        let answered_at = Utc.with_ymd_and_hms(2024, 1, 2, 3, 4, 5).unwrap();
        let judge = |pairs: &[(&str, &str)]| {
            refund_query(&Answer::from_pairs(pairs), &expected, Some(answered_at))
        };
        let ours = [
            ("code", "10000"),
            ("out_trade_no", "o1"),
            ("out_request_no", "r1"),
        ];
        let with = |extra: &[(&'static str, &'static str)]| {
            let mut pairs = ours.to_vec();
            pairs.extend_from_slice(extra);
            judge(&pairs)
        };
        let success = with(&[
            ("refund_status", "REFUND_SUCCESS"),
            ("gmt_refund_pay", "2024-01-02 12:00:00"),
        ]);
        assert_eq!(
            success.outcome,
            RefundOutcome::Succeeded {
                channel_refund_no: None,
                refunded_at: Utc.with_ymd_and_hms(2024, 1, 2, 4, 0, 0).unwrap()
            }
        );
        assert_eq!(success.codes.get("refund_status"), Some("REFUND_SUCCESS"));
        // Without gmt_refund_pay, the answer's HTTP date; without either, unknown.
        let undated = with(&[("refund_status", "REFUND_SUCCESS")]);
        assert_eq!(
            undated.outcome,
            RefundOutcome::Succeeded {
                channel_refund_no: None,
                refunded_at: answered_at
            }
        );
        let no_date = refund_query(
            &Answer::from_pairs(&[
                ("code", "10000"),
                ("out_trade_no", "o1"),
                ("out_request_no", "r1"),
                ("refund_status", "REFUND_SUCCESS"),
            ]),
            &expected,
            None,
        );
        assert!(matches!(no_date.outcome, RefundOutcome::Unknown { .. }));
        assert_eq!(
            with(&[("refund_status", "REFUND_PROCESSING")]).outcome,
            RefundOutcome::Processing
        );
        assert_eq!(
            with(&[("refund_status", "REFUND_FAIL")]).outcome,
            RefundOutcome::Failed {
                code: "REFUND_FAIL".to_owned()
            }
        );
        assert!(matches!(
            with(&[("refund_status", "REFUND_NEW")]).outcome,
            RefundOutcome::Unknown { .. }
        ));
        // No refund info at all: the refund never arrived.
        assert_eq!(
            judge(&[("code", "10000"), ("out_trade_no", "o1")]).outcome,
            RefundOutcome::NotFound
        );
        assert!(matches!(
            with(&[("refund_amount", "5.00")]).outcome,
            RefundOutcome::Unknown { .. }
        ));
        // Success must be tied to our trade and refund numbers.
        let untied = judge(&[("code", "10000"), ("refund_status", "REFUND_SUCCESS")]);
        assert!(matches!(untied.outcome, RefundOutcome::Unknown { .. }));
        let other_refund = judge(&[
            ("code", "10000"),
            ("out_trade_no", "o1"),
            ("out_request_no", "r2"),
            ("refund_status", "REFUND_SUCCESS"),
        ]);
        assert!(matches!(
            other_refund.outcome,
            RefundOutcome::Unknown { .. }
        ));
        for sub_code in ["ACQ.SYSTEM_ERROR", "ACQ.TRADE_NOT_EXIST"] {
            let judged = judge(&[("code", "40004"), ("sub_code", sub_code)]);
            assert!(
                matches!(judged.outcome, RefundOutcome::Unknown { .. }),
                "{sub_code}"
            );
        }
        assert!(matches!(
            judge(&[("code", "20000")]).outcome,
            RefundOutcome::Unknown { .. }
        ));
    }

    #[test]
    fn refund_success_for_another_refund_or_order_amount_is_unknown() {
        let answered_at = Utc.with_ymd_and_hms(2024, 1, 2, 3, 4, 5).unwrap();
        let judge = |extra: &[(&'static str, &'static str)]| {
            let mut pairs = vec![
                ("code", "10000"),
                ("out_trade_no", "o1"),
                ("out_request_no", "r1"),
                ("refund_status", "REFUND_SUCCESS"),
            ];
            pairs.extend_from_slice(extra);
            refund_query(
                &Answer::from_pairs(&pairs),
                &refund_query_expected(),
                Some(answered_at),
            )
            .outcome
        };
        let succeeded = RefundOutcome::Succeeded {
            channel_refund_no: None,
            refunded_at: answered_at,
        };
        // Both amounts answered and equal, or not answered at all.
        assert_eq!(
            judge(&[("refund_amount", "5.00"), ("total_amount", "20.00")]),
            succeeded
        );
        assert_eq!(judge(&[("refund_amount", "5")]), succeeded);
        assert_eq!(judge(&[]), succeeded);
        for amounts in [
            [("refund_amount", "4.99"), ("total_amount", "20.00")],
            [("refund_amount", "5.01"), ("total_amount", "20.00")],
            [("refund_amount", "20.00"), ("total_amount", "20.00")],
            [("refund_amount", "5.00"), ("total_amount", "25.00")],
            [("refund_amount", "5.00"), ("total_amount", "5.00")],
            [("refund_amount", "five"), ("total_amount", "20.00")],
        ] {
            let outcome = judge(&amounts);
            assert!(
                matches!(outcome, RefundOutcome::Unknown { .. }),
                "{amounts:?}: {outcome:?}"
            );
        }
    }

    #[test]
    fn bill_url_answers() {
        let url = bill_url(&Answer::from_pairs(&[
            ("code", "10000"),
            ("bill_download_url", "http://x/y.zip"),
        ]));
        assert_eq!(url, BillUrlAnswer::Url("http://x/y.zip".to_owned()));
        for sub_code in BILL_NOT_EXIST_SUB_CODES {
            let none = bill_url(&Answer::from_pairs(&[
                ("code", "40004"),
                ("sub_code", sub_code),
            ]));
            assert_eq!(
                none,
                BillUrlAnswer::NoStatement {
                    code: sub_code.to_owned()
                }
            );
        }
        let refused = bill_url(&Answer::from_pairs(&[
            ("code", "40004"),
            ("sub_code", "isv.invalid_arguments"),
            ("sub_msg", "bad date"),
        ]));
        assert_eq!(
            refused,
            BillUrlAnswer::Refused {
                code: "40004/isv.invalid_arguments".to_owned(),
                message: "bad date".to_owned()
            }
        );
        assert!(matches!(
            bill_url(&Answer::from_pairs(&[("code", "10000")])),
            BillUrlAnswer::Refused { .. }
        ));
    }

    #[test]
    fn answers_read_numbers_exactly_and_refuse_duplicates() {
        let answer = Answer::parse(
            r#"{"code":"10000","total_amount":88.88,"buyer":null,"list":[{"a":1}],"msg":""}"#,
        )
        .unwrap();
        assert_eq!(answer.get("total_amount"), Some("88.88"));
        assert_eq!(answer.get("buyer"), None);
        assert_eq!(answer.get("list"), Some(r#"[{"a":1}]"#));
        assert_eq!(answer.get("msg"), None, "empty counts as absent");
        assert_eq!(answer.codes(), ChannelCodes::new().with("code", "10000"));
        assert!(Answer::parse(r#"{"code":"40004","code":"10000"}"#).is_err());
    }

    /// The property of the issue, at the judge (the client verifies the
    /// signature before the judge sees the answer): a paid answer whose
    /// order number, amount, app or payment time (before the order was
    /// submitted) does not match the order is never paid. Each case builds
    /// a valid paid answer (trade.pay `10000` or trade.query
    /// `TRADE_SUCCESS`/`TRADE_FINISHED`) for a random order, checks that it
    /// IS paid, then applies one mismatch and checks that it is NOT paid.
    mod paid_answers {
        use chrono::FixedOffset;
        use proptest::prelude::*;

        use super::*;
        use crate::channel::CLOCK_SKEW_SECS;
        use paycode_domain::money::AMOUNT_MAX_FEN;

        /// Fields a paid answer may leave out without changing its meaning.
        const OPTIONAL: [&str; 10] = [
            "msg",
            "app_id",
            "buyer_logon_id",
            "buyer_user_id",
            "receipt_amount",
            "buyer_pay_amount",
            "invoice_amount",
            "point_amount",
            "gmt_payment",
            "send_pay_date",
        ];

        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        enum Call {
            Pay,
            Query(&'static str),
        }

        /// An order and the valid paid answer's own fields.
        #[derive(Debug, Clone)]
        struct Case {
            call: Call,
            out_trade_no: String,
            total_fen: u64,
            /// The amount written without trailing zeros ("20" for 20.00).
            short_amount: bool,
            submitted_at: DateTime<Utc>,
            /// The payment's time after submission (down to the skew allowed).
            paid_after_secs: i64,
            trade_no: String,
            /// Which of [`OPTIONAL`] the answer leaves out.
            dropped: Vec<bool>,
        }

        /// One way for a paid answer not to be this order's.
        #[derive(Debug, Clone)]
        enum Mismatch {
            /// Another order number; empty: none at all.
            OutTradeNo(String),
            /// Another amount, in fen.
            TotalAmount(u64),
            /// The order's amount in fen written as yuan (100 times too much).
            TotalAmountInFen,
            /// No amount.
            NoTotalAmount,
            /// Another app.
            AppId(String),
            /// Paid this many seconds (over the skew allowed) before submission.
            PaidBeforeSubmission(i64),
        }

        fn china(at: DateTime<Utc>) -> String {
            at.with_timezone(&FixedOffset::east_opt(8 * 3600).unwrap())
                .format("%Y-%m-%d %H:%M:%S")
                .to_string()
        }

        fn yuan(fen: u64, short: bool) -> String {
            let text = format!("{}.{:02}", fen / 100, fen % 100);
            if short {
                text.trim_end_matches('0').trim_end_matches('.').to_owned()
            } else {
                text
            }
        }

        fn case() -> impl Strategy<Value = Case> {
            // 2015-01-01 to 2035-01-01, whole seconds (the answers have no finer unit).
            let submitted = (1_420_070_400_i64..2_051_222_400)
                .prop_map(|secs| Utc.timestamp_opt(secs, 0).unwrap());
            (
                prop_oneof![
                    Just(Call::Pay),
                    Just(Call::Query("TRADE_SUCCESS")),
                    Just(Call::Query("TRADE_FINISHED")),
                ],
                "[0-9A-Za-z_-]{1,64}",
                1..=AMOUNT_MAX_FEN,
                any::<bool>(),
                submitted,
                -CLOCK_SKEW_SECS..=86_400 * 3,
                "[0-9]{28}",
                proptest::collection::vec(any::<bool>(), OPTIONAL.len()),
            )
                .prop_map(
                    |(
                        call,
                        out_trade_no,
                        total_fen,
                        short_amount,
                        submitted_at,
                        paid_after_secs,
                        trade_no,
                        dropped,
                    )| Case {
                        call,
                        out_trade_no,
                        total_fen,
                        short_amount,
                        submitted_at,
                        paid_after_secs,
                        trade_no,
                        dropped,
                    },
                )
        }

        fn mismatch() -> impl Strategy<Value = Mismatch> {
            prop_oneof![
                "[0-9A-Za-z_-]{0,64}".prop_map(Mismatch::OutTradeNo),
                any::<u64>().prop_map(Mismatch::TotalAmount),
                (1..=AMOUNT_MAX_FEN * 2).prop_map(Mismatch::TotalAmount),
                Just(Mismatch::TotalAmountInFen),
                Just(Mismatch::NoTotalAmount),
                "[0-9]{16}".prop_map(Mismatch::AppId),
                (CLOCK_SKEW_SECS + 1..=86_400 * 366 * 5).prop_map(Mismatch::PaidBeforeSubmission),
            ]
        }

        impl Case {
            fn paid_at(&self) -> DateTime<Utc> {
                self.submitted_at + chrono::Duration::seconds(self.paid_after_secs)
            }

            fn expected(&self) -> PayExpected<'_> {
                PayExpected {
                    app_id: APP,
                    out_trade_no: &self.out_trade_no,
                    total_amount: Money::from_fen(self.total_fen).unwrap(),
                    submitted_at: self.submitted_at,
                }
            }

            /// The valid paid answer's fields.
            fn fields(&self) -> BTreeMap<&'static str, String> {
                let amount = yuan(self.total_fen, self.short_amount);
                let mut fields = BTreeMap::from([
                    ("code", CODE_SUCCESS.to_owned()),
                    ("msg", "Success".to_owned()),
                    ("app_id", APP.to_owned()),
                    ("trade_no", self.trade_no.clone()),
                    ("out_trade_no", self.out_trade_no.clone()),
                    ("total_amount", amount.clone()),
                    ("receipt_amount", amount.clone()),
                    ("buyer_pay_amount", amount.clone()),
                    ("invoice_amount", amount),
                    ("point_amount", "0.00".to_owned()),
                    ("buyer_logon_id", "csq***@sandbox.com".to_owned()),
                    ("buyer_user_id", "2088102169481075".to_owned()),
                    ("gmt_payment", china(self.paid_at())),
                ]);
                if let Call::Query(status) = self.call {
                    fields.insert("trade_status", status.to_owned());
                    fields.insert("send_pay_date", china(self.paid_at()));
                }
                for (name, dropped) in OPTIONAL.iter().zip(&self.dropped) {
                    if *dropped {
                        fields.remove(name);
                    }
                }
                fields
            }

            /// The trade number and payment time when `fields` are judged paid.
            fn judge(
                &self,
                fields: &BTreeMap<&'static str, String>,
            ) -> Option<(String, Option<DateTime<Utc>>)> {
                let pairs: Vec<(&str, &str)> = fields
                    .iter()
                    .map(|(name, value)| (*name, value.as_str()))
                    .collect();
                let answer = Answer::from_pairs(&pairs);
                match self.call {
                    Call::Pay => match pay(&answer, &self.expected()).outcome {
                        PayOutcome::Paid {
                            channel_trade_no,
                            paid_at,
                        } => Some((channel_trade_no, paid_at)),
                        _ => None,
                    },
                    Call::Query(_) => match query(&answer, &self.expected()).outcome {
                        QueryOutcome::Paid {
                            channel_trade_no,
                            paid_at,
                        } => Some((channel_trade_no, paid_at)),
                        _ => None,
                    },
                }
            }
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(512))]

            #[test]
            fn a_mismatched_paid_answer_is_never_paid(case in case(), mismatch in mismatch()) {
                // Not vacuous: the answer before the mismatch is paid, at
                // its time when it gives one.
                let valid = case.fields();
                let has_time = valid.contains_key("gmt_payment") || valid.contains_key("send_pay_date");
                prop_assert_eq!(
                    case.judge(&valid),
                    Some((case.trade_no.clone(), has_time.then(|| case.paid_at())))
                );

                let mut fields = valid;
                match &mismatch {
                    Mismatch::OutTradeNo(other) => {
                        prop_assume!(*other != case.out_trade_no);
                        fields.insert("out_trade_no", other.clone());
                    }
                    Mismatch::TotalAmount(other) => {
                        prop_assume!(*other != case.total_fen);
                        fields.insert("total_amount", yuan(*other, case.short_amount));
                    }
                    Mismatch::TotalAmountInFen => {
                        fields.insert("total_amount", case.total_fen.to_string());
                    }
                    Mismatch::NoTotalAmount => {
                        fields.remove("total_amount");
                    }
                    Mismatch::AppId(other) => {
                        prop_assume!(other != APP);
                        fields.insert("app_id", other.clone());
                    }
                    Mismatch::PaidBeforeSubmission(secs) => {
                        // Every payment time the answer gives, or one if it gave none.
                        let early = china(case.submitted_at - chrono::Duration::seconds(*secs));
                        let mut dated = false;
                        for name in ["gmt_payment", "send_pay_date"] {
                            if let Some(value) = fields.get_mut(name) {
                                value.clone_from(&early);
                                dated = true;
                            }
                        }
                        if !dated {
                            fields.insert("gmt_payment", early);
                        }
                    }
                }
                let judged = case.judge(&fields);
                prop_assert!(judged.is_none(), "{:?} was judged paid: {:?}", mismatch, judged);
            }
        }
    }
}
