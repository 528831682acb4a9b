//! The wire vocabulary of Alipay OpenAPI: method names, the common request
//! parameters, the `biz_content` of each call, China-time timestamps and
//! exact yuan amounts.
//!
//! The `biz_content` types serialise in field order (the JSON text is what
//! gets signed) and also deserialise, so the sandbox can read the requests
//! this client sends. `PayContent` carries the full auth_code: its `Debug`
//! masks it, and it must never be logged.

use std::fmt;

use chrono::{DateTime, NaiveDateTime, Utc};
use paycode_domain::calendar::{china_time, from_china_local};
use serde::{Deserialize, Serialize};

/// `alipay.trade.pay`: the payment-code payment.
pub const METHOD_PAY: &str = "alipay.trade.pay";
/// `alipay.trade.query`: the order's status.
pub const METHOD_QUERY: &str = "alipay.trade.query";
/// `alipay.trade.cancel`: close an unpaid order or refund a paid one (revoke).
pub const METHOD_CANCEL: &str = "alipay.trade.cancel";
/// `alipay.trade.refund`: a (partial) refund, keyed by `out_request_no`.
pub const METHOD_REFUND: &str = "alipay.trade.refund";
/// `alipay.trade.fastpay.refund.query`: one refund's status.
pub const METHOD_REFUND_QUERY: &str = "alipay.trade.fastpay.refund.query";
/// `alipay.data.dataservice.bill.downloadurl.query`: where to download a day's bill.
pub const METHOD_BILL_URL: &str = "alipay.data.dataservice.bill.downloadurl.query";

/// The scene of a payment code scanned by the cashier.
pub const SCENE_BAR_CODE: &str = "bar_code";
/// The bill of the merchant's trades (`signcustomer` would be the account ledger).
pub const BILL_TYPE_TRADE: &str = "trade";
/// Asks the refund query to include the refund's time.
pub const QUERY_OPTION_GMT_REFUND_PAY: &str = "gmt_refund_pay";

/// Alipay's timestamps are China time, `yyyy-MM-dd HH:mm:ss`.
const TIME_FORMAT: &str = "%Y-%m-%d %H:%M:%S";

/// `at` as Alipay's request `timestamp`: China time, `yyyy-MM-dd HH:mm:ss`.
pub fn format_timestamp(at: DateTime<Utc>) -> String {
    at.with_timezone(&china_time())
        .format(TIME_FORMAT)
        .to_string()
}

/// An answered China-time `yyyy-MM-dd HH:mm:ss` (`gmt_payment`, `send_pay_date`, `gmt_refund_pay`) in UTC.
pub fn parse_china_time(text: &str) -> Option<DateTime<Utc>> {
    let naive = NaiveDateTime::parse_from_str(text.trim(), TIME_FORMAT).ok()?;
    Some(from_china_local(naive))
}

/// An answered yuan amount (`"20.00"`, `"20.5"`, `"0.00"`, or a JSON number's
/// text) in fen, exactly. Anything that is not plain digits with at most two
/// decimals is `None`: it would need rounding or is not an amount.
pub fn parse_yuan_fen(text: &str) -> Option<u64> {
    let (whole, fraction) = match text.split_once('.') {
        Some((whole, fraction)) => (whole, fraction),
        None => (text, ""),
    };
    let digits = |part: &str| part.bytes().all(|b| b.is_ascii_digit());
    if whole.is_empty()
        || whole.len() > 12
        || !digits(whole)
        || fraction.len() > 2
        || !digits(fraction)
    {
        return None;
    }
    if text.contains('.') && fraction.is_empty() {
        return None;
    }
    let whole: u64 = whole.parse().ok()?;
    let fraction_fen: u64 = match fraction.len() {
        0 => 0,
        1 => fraction.parse::<u64>().ok()? * 10,
        _ => fraction.parse().ok()?,
    };
    whole.checked_mul(100)?.checked_add(fraction_fen)
}

/// The common parameters and `biz_content` of one request, in the order
/// they are sent; `sign` is appended after signing.
pub fn request_params(
    app_id: &str,
    method: &str,
    timestamp: &str,
    app_auth_token: Option<&str>,
    biz_content: String,
) -> Vec<(&'static str, String)> {
    let mut params = vec![
        ("app_id", app_id.to_owned()),
        ("method", method.to_owned()),
        ("format", "JSON".to_owned()),
        ("charset", "utf-8".to_owned()),
        ("sign_type", super::sign::SIGN_TYPE_RSA2.to_owned()),
        ("timestamp", timestamp.to_owned()),
        ("version", "1.0".to_owned()),
    ];
    if let Some(token) = app_auth_token {
        params.push(("app_auth_token", token.to_owned()));
    }
    params.push(("biz_content", biz_content));
    params
}

/// `biz_content` of `alipay.trade.pay`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PayContent {
    pub out_trade_no: String,
    /// Always [`SCENE_BAR_CODE`] here.
    pub scene: String,
    /// The full payment code: request body only, never a log line.
    pub auth_code: String,
    pub subject: String,
    /// Yuan with two decimals.
    pub total_amount: String,
}

impl fmt::Debug for PayContent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PayContent")
            .field("out_trade_no", &self.out_trade_no)
            .field("scene", &self.scene)
            .field("auth_code", &"***")
            .field("subject", &self.subject)
            .field("total_amount", &self.total_amount)
            .finish()
    }
}

/// `biz_content` of `alipay.trade.query` and `alipay.trade.cancel`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TradeContent {
    pub out_trade_no: String,
}

/// `biz_content` of `alipay.trade.refund`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefundContent {
    pub out_trade_no: String,
    /// Yuan with two decimals.
    pub refund_amount: String,
    /// Our refund number: Alipay's idempotency key for this refund.
    pub out_request_no: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub refund_reason: String,
}

/// `biz_content` of `alipay.trade.fastpay.refund.query`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefundQueryContent {
    pub out_trade_no: String,
    pub out_request_no: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub query_options: Vec<String>,
}

/// `biz_content` of `alipay.data.dataservice.bill.downloadurl.query`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BillContent {
    /// [`BILL_TYPE_TRADE`].
    pub bill_type: String,
    /// `yyyy-MM-dd`, China time.
    pub bill_date: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn timestamps_are_china_time_both_ways() {
        let at = Utc.with_ymd_and_hms(2019, 9, 23, 6, 2, 0).unwrap();
        assert_eq!(format_timestamp(at), "2019-09-23 14:02:00");
        assert_eq!(parse_china_time("2019-09-23 14:02:00"), Some(at));
        // Just after midnight in China is the previous day in UTC.
        assert_eq!(
            parse_china_time("2017-03-21 00:07:29"),
            Some(Utc.with_ymd_and_hms(2017, 3, 20, 16, 7, 29).unwrap())
        );
        assert_eq!(parse_china_time("2017/03/21 15:07:29"), None);
        assert_eq!(parse_china_time(""), None);
    }

    #[test]
    fn answered_amounts_are_read_exactly_or_refused() {
        assert_eq!(parse_yuan_fen("20.00"), Some(2000));
        assert_eq!(parse_yuan_fen("88.88"), Some(8888));
        assert_eq!(parse_yuan_fen("0.5"), Some(50));
        assert_eq!(parse_yuan_fen("7"), Some(700));
        assert_eq!(parse_yuan_fen("0.00"), Some(0));
        assert_eq!(parse_yuan_fen("100000000.00"), Some(10_000_000_000));
        for bad in [
            "",
            ".5",
            "5.",
            "1.005",
            "-1.00",
            "1e3",
            "1,00",
            " 1.00",
            "1.0a",
            "1234567890123.00",
        ] {
            assert_eq!(parse_yuan_fen(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn pay_content_is_signed_in_field_order_and_debug_hides_the_code() {
        let content = PayContent {
            out_trade_no: "20150320010101001".to_owned(),
            scene: SCENE_BAR_CODE.to_owned(),
            auth_code: "28763443825664394".to_owned(),
            subject: "Iphone6 16G".to_owned(),
            total_amount: "88.88".to_owned(),
        };
        // The computed trade.pay vector's biz_content, byte for byte.
        assert_eq!(
            serde_json::to_string(&content).unwrap(),
            r#"{"out_trade_no":"20150320010101001","scene":"bar_code","auth_code":"28763443825664394","subject":"Iphone6 16G","total_amount":"88.88"}"#
        );
        assert!(!format!("{content:?}").contains("28763443825664394"));
    }

    #[test]
    fn common_parameters_include_the_token_only_when_configured() {
        let params = request_params(
            "2019",
            METHOD_QUERY,
            "2019-09-23 14:02:00",
            None,
            "{}".to_owned(),
        );
        let keys: Vec<&str> = params.iter().map(|(key, _)| *key).collect();
        assert_eq!(
            keys,
            [
                "app_id",
                "method",
                "format",
                "charset",
                "sign_type",
                "timestamp",
                "version",
                "biz_content"
            ]
        );
        let params = request_params("2019", METHOD_QUERY, "t", Some("token"), "{}".to_owned());
        assert!(params.contains(&("app_auth_token", "token".to_owned())));
    }
}
