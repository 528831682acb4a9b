//! The WeChat Pay v2 channel client: builds and signs each request, posts it
//! under the configured base URL (reverse and refund through a second HTTP
//! client that presents the merchant's certificate), and hands the answer to
//! [`super::judge`]. Every call first waits for its rate-limit bucket.
//! Nothing here returns an error for a money call: what cannot be proven is
//! an `Unknown` outcome with its reason.

use std::time::Duration;

use async_trait::async_trait;
use chrono::NaiveDate;
use paycode_domain::payment::{
    CapText, ChannelAnswer, PayOutcome, QueryOutcome, RefundOutcome, RevokeOutcome,
};
use paycode_domain::{Channel, ChannelCodes, OrderNo, RefundNo};

use super::config::WechatConfig;
use super::judge::{self, Merchant, PayExpected, RefundExpected, Verified};
use super::sign::{self, ApiKey, SignType};
use super::xml::{self, Params};
use crate::ConfigError;
use crate::channel::rate_limit::{Api, CallLimiter};
use crate::channel::{ChannelClient, PayRequest, RefundRequest, StatementError, StatementFile};

/// `body` is String(128) on micropay; longer subjects are cut (at a
/// character boundary) rather than refused by WeChat.
pub const BODY_MAX_BYTES: usize = 128;
/// `refund_desc` is String(80).
pub const REFUND_DESC_MAX_BYTES: usize = 80;

/// The largest answer accepted from a money call; WeChat's XML answers are
/// a few kilobytes (a refund query listing 50 refunds stays far below).
pub const ANSWER_MAX_BYTES: usize = 1 << 20;
/// The largest statement accepted: a busy merchant's daily text bill.
pub const STATEMENT_MAX_BYTES: usize = 512 << 20;

/// The endpoints, relative to the base URL.
pub mod path {
    pub const MICROPAY: &str = "/pay/micropay";
    pub const ORDER_QUERY: &str = "/pay/orderquery";
    pub const REVERSE: &str = "/secapi/pay/reverse";
    pub const REFUND: &str = "/secapi/pay/refund";
    pub const REFUND_QUERY: &str = "/pay/refundquery";
    pub const DOWNLOAD_BILL: &str = "/pay/downloadbill";
}

/// One merchant's WeChat Pay v2 client.
#[derive(Debug)]
pub struct WechatClient {
    merchant: Merchant,
    key: ApiKey,
    sign_type: SignType,
    /// Without a trailing slash.
    base_url: String,
    spbill_create_ip: String,
    timeout: Duration,
    /// For the calls without a certificate.
    http: reqwest::Client,
    /// For `/secapi/...`: presents the client certificate when one is configured.
    secure_http: reqwest::Client,
    limiter: CallLimiter,
}

/// Why a call produced no answer to judge. Kept apart from the judgment so
/// that each reason reads the same in every outcome type.
#[derive(Debug)]
enum CallError {
    /// No usable HTTP answer: connection, timeout, status, body.
    Transport(String),
    /// An HTTP answer that is not a WeChat XML map.
    Unparsable(String),
}

impl CallError {
    fn reason(self) -> String {
        match self {
            CallError::Transport(reason) | CallError::Unparsable(reason) => reason,
        }
    }
}

impl WechatClient {
    /// Checks `config` (see [`WechatConfig::validate`]) and builds the HTTP
    /// clients; a certificate that the TLS stack refuses names `key_file`.
    pub fn new(config: WechatConfig) -> Result<WechatClient, ConfigError> {
        config.validate()?;
        let builder = || {
            reqwest::Client::builder()
                .timeout(config.timeout)
                .connect_timeout(config.timeout)
                // A redirect would replay the signed body elsewhere (or turn
                // the POST into a GET); an unexpected 3xx is simply unknown.
                .redirect(reqwest::redirect::Policy::none())
                .user_agent(concat!("paycode/", env!("CARGO_PKG_VERSION")))
        };
        let http = builder().build().map_err(|e| {
            ConfigError::new(
                config.setting("base_url"),
                format!("cannot build the HTTP client: {e}"),
            )
        })?;
        let secure_http = match &config.client_certificate {
            Some(certificate) => {
                let key_setting = config.setting("key_file");
                let pem = certificate.identity_pem(&config.setting_prefix)?;
                let identity = reqwest::Identity::from_pem(&pem).map_err(|e| {
                    ConfigError::new(&key_setting, format!("unusable certificate or key: {e}"))
                })?;
                builder().identity(identity).build().map_err(|e| {
                    ConfigError::new(
                        &key_setting,
                        format!("the TLS stack refuses the certificate and key: {e}"),
                    )
                })?
            }
            None => http.clone(),
        };
        Ok(WechatClient {
            merchant: Merchant {
                appid: config.appid.clone(),
                mch_id: config.mch_id.clone(),
                sub_appid: config.sub_appid.clone(),
                sub_mch_id: config.sub_mch_id.clone(),
            },
            key: config.key.clone(),
            sign_type: config.sign_type,
            base_url: config.base_url.trim_end_matches('/').to_owned(),
            spbill_create_ip: config.spbill_create_ip.clone(),
            timeout: config.timeout,
            http,
            secure_http,
            limiter: CallLimiter::new(config.rate_limits),
        })
    }

    /// Adds the identity fields and a nonce, signs, and posts. Returns the
    /// body as text; `params` (which may hold the auth code) is dropped here.
    async fn send(
        &self,
        api: Api,
        path: &str,
        mut params: Params,
        max_bytes: usize,
    ) -> Result<String, CallError> {
        self.limiter.until_ready(api).await;
        params.insert("appid".to_owned(), self.merchant.appid.clone());
        params.insert("mch_id".to_owned(), self.merchant.mch_id.clone());
        if let Some(sub_appid) = &self.merchant.sub_appid {
            params.insert("sub_appid".to_owned(), sub_appid.clone());
        }
        if let Some(sub_mch_id) = &self.merchant.sub_mch_id {
            params.insert("sub_mch_id".to_owned(), sub_mch_id.clone());
        }
        params.insert("nonce_str".to_owned(), sign::new_nonce());
        sign::sign_request(&mut params, &self.key, self.sign_type);
        let body = xml::to_xml(&params);
        drop(params);
        let client = if path.starts_with("/secapi/") {
            &self.secure_http
        } else {
            &self.http
        };
        let mut response = client
            .post(format!("{}{}", self.base_url, path))
            .header(reqwest::header::CONTENT_TYPE, "text/xml; charset=utf-8")
            .body(body)
            .send()
            .await
            .map_err(|e| CallError::Transport(self.describe(&e)))?;
        let status = response.status();
        if !status.is_success() {
            return Err(CallError::Transport(format!("HTTP status {status}")));
        }
        let mut bytes = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| CallError::Transport(self.describe(&e)))?
        {
            if bytes.len().saturating_add(chunk.len()) > max_bytes {
                return Err(CallError::Unparsable(format!(
                    "the answer is larger than {max_bytes} bytes"
                )));
            }
            bytes.extend_from_slice(&chunk);
        }
        String::from_utf8(bytes)
            .map_err(|_| CallError::Unparsable("the answer is not UTF-8".to_owned()))
    }

    /// [`Self::send`], then the XML parse.
    async fn call(&self, api: Api, path: &str, params: Params) -> Result<Params, CallError> {
        let body = self.send(api, path, params, ANSWER_MAX_BYTES).await?;
        xml::parse(&body).map_err(|e| CallError::Unparsable(e.to_string()))
    }

    fn describe(&self, error: &reqwest::Error) -> String {
        if error.is_timeout() {
            format!("no answer within {} ms", self.timeout.as_millis())
        } else if error.is_connect() {
            format!("cannot connect: {error}")
        } else {
            format!("transport error: {error}")
        }
    }

    /// Calls, verifies the envelope, and judges: the shared path of the five
    /// money calls. `unknown` builds the outcome for every reason not to trust.
    async fn judged<O>(
        &self,
        api: Api,
        path: &str,
        params: Params,
        unknown: impl Fn(String) -> O,
        judge: impl FnOnce(&Verified<'_>) -> O,
    ) -> ChannelAnswer<O> {
        let answer = match self.call(api, path, params).await {
            Ok(answer) => answer,
            Err(error) => return ChannelAnswer::new(unknown(error.reason())),
        };
        let codes = judge::codes(&answer);
        let outcome =
            match judge::verify_envelope(&answer, &self.key, self.sign_type, &self.merchant) {
                Ok(verified) => judge(&verified),
                Err(reason) => unknown(reason),
            };
        ChannelAnswer::with_codes(outcome, codes)
    }
}

#[async_trait]
impl ChannelClient for WechatClient {
    fn channel(&self) -> Channel {
        Channel::Wechat
    }

    fn rate_limit_waits(&self) -> Vec<(crate::channel::rate_limit::Api, u64)> {
        self.limiter.waits()
    }

    async fn pay(&self, request: PayRequest<'_>) -> ChannelAnswer<PayOutcome> {
        let out_trade_no = request.order_no.as_str();
        let total_fee = request.amount.fen();
        let params = Params::from([
            ("out_trade_no".to_owned(), out_trade_no.to_owned()),
            ("total_fee".to_owned(), total_fee.to_string()),
            (
                "body".to_owned(),
                cut(request.subject, BODY_MAX_BYTES).to_owned(),
            ),
            ("spbill_create_ip".to_owned(), self.spbill_create_ip.clone()),
            (
                "auth_code".to_owned(),
                request.auth_code.expose_for_pay_call().to_owned(),
            ),
        ]);
        let expected = PayExpected {
            out_trade_no,
            total_fee,
        };
        let mut answer = self
            .judged(
                Api::Pay,
                path::MICROPAY,
                params,
                |reason| PayOutcome::Unknown { reason },
                |verified| judge::pay(verified, &expected),
            )
            .await;
        // The code belongs in the request body only: should an answer echo
        // it (in a description, or a forged field), it is masked here.
        let (full, masked) = (
            request.auth_code.expose_for_pay_call(),
            request.auth_code.masked(),
        );
        redact_codes(&mut answer.codes, full, masked.as_str());
        if let PayOutcome::Unknown { reason } = &mut answer.outcome {
            *reason = reason.replace(full, masked.as_str());
        }
        logged("pay", out_trade_no, answer)
    }

    async fn query(&self, order_no: &OrderNo) -> ChannelAnswer<QueryOutcome> {
        let out_trade_no = order_no.as_str();
        let params = Params::from([("out_trade_no".to_owned(), out_trade_no.to_owned())]);
        let answer = self
            .judged(
                Api::Query,
                path::ORDER_QUERY,
                params,
                |reason| QueryOutcome::Unknown { reason },
                |verified| judge::query(verified, out_trade_no),
            )
            .await;
        logged("query", out_trade_no, answer)
    }

    async fn revoke(&self, order_no: &OrderNo) -> ChannelAnswer<RevokeOutcome> {
        let out_trade_no = order_no.as_str();
        let params = Params::from([("out_trade_no".to_owned(), out_trade_no.to_owned())]);
        let answer = self
            .judged(
                Api::Revoke,
                path::REVERSE,
                params,
                |reason| RevokeOutcome::Unknown { reason },
                |verified| judge::revoke(verified, out_trade_no),
            )
            .await;
        logged("revoke", out_trade_no, answer)
    }

    async fn refund(&self, request: RefundRequest<'_>) -> ChannelAnswer<RefundOutcome> {
        let expected = RefundExpected {
            out_trade_no: request.order_no.as_str(),
            out_refund_no: request.refund_no.as_str(),
            total_fee: request.total_amount.fen(),
            refund_fee: request.refund_amount.fen(),
        };
        let mut params = Params::from([
            ("out_trade_no".to_owned(), expected.out_trade_no.to_owned()),
            (
                "out_refund_no".to_owned(),
                expected.out_refund_no.to_owned(),
            ),
            ("total_fee".to_owned(), expected.total_fee.to_string()),
            ("refund_fee".to_owned(), expected.refund_fee.to_string()),
            // Required by the 2017 documentation; defaults to the merchant.
            ("op_user_id".to_owned(), self.merchant.mch_id.clone()),
        ]);
        let reason = cut(request.reason, REFUND_DESC_MAX_BYTES);
        if !reason.is_empty() {
            params.insert("refund_desc".to_owned(), reason.to_owned());
        }
        let answer = self
            .judged(
                Api::Refund,
                path::REFUND,
                params,
                |reason| RefundOutcome::Unknown { reason },
                |verified| judge::refund(verified, &expected),
            )
            .await;
        logged("refund", expected.out_trade_no, answer)
    }

    async fn refund_query(
        &self,
        order_no: &OrderNo,
        refund_no: &RefundNo,
    ) -> ChannelAnswer<RefundOutcome> {
        let (out_trade_no, out_refund_no) = (order_no.as_str(), refund_no.as_str());
        // The refund number alone selects exactly our refund; the answer's
        // order number is then checked against ours.
        let params = Params::from([("out_refund_no".to_owned(), out_refund_no.to_owned())]);
        let answer = self
            .judged(
                Api::RefundQuery,
                path::REFUND_QUERY,
                params,
                |reason| RefundOutcome::Unknown { reason },
                |verified| judge::refund_query(verified, out_trade_no, out_refund_no),
            )
            .await;
        logged("refund_query", out_trade_no, answer)
    }

    async fn download_statement(&self, date: NaiveDate) -> Result<StatementFile, StatementError> {
        let params = Params::from([
            ("bill_date".to_owned(), date.format("%Y%m%d").to_string()),
            ("bill_type".to_owned(), "ALL".to_owned()),
        ]);
        let body = self
            .send(
                Api::Statement,
                path::DOWNLOAD_BILL,
                params,
                STATEMENT_MAX_BYTES,
            )
            .await
            .map_err(|e| match e {
                CallError::Transport(reason) => StatementError::Transport(reason),
                CallError::Unparsable(reason) => StatementError::Untrusted(reason),
            })?;
        let result = judge::statement(body, &self.key, self.sign_type);
        match &result {
            Ok(StatementFile::WechatText(text)) => {
                tracing::info!(channel = "wechat", api = "statement", %date, bytes = text.len(), "statement downloaded");
            }
            Ok(other) => {
                tracing::info!(channel = "wechat", api = "statement", %date, ?other, "no statement");
            }
            Err(error) => {
                tracing::warn!(channel = "wechat", api = "statement", %date, %error, "statement failed");
            }
        }
        result
    }
}

/// The longest prefix of `text` within `max_bytes`, cut at a character boundary.
fn cut(text: &str, max_bytes: usize) -> &str {
    if text.len() <= max_bytes {
        return text;
    }
    let mut end = max_bytes;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

fn redact_codes(codes: &mut ChannelCodes, secret: &str, mask: &str) {
    for value in codes.0.values_mut() {
        if value.contains(secret) {
            *value = value.replace(secret, mask);
        }
    }
}

/// Caps the answer's channel text (`ChannelAnswer::capped`: what is stored
/// and logged stays short), then logs one line: the call, the order, the
/// normalised outcome and the raw codes. Unknown outcomes are warnings: they
/// keep an order open.
fn logged<O: std::fmt::Debug + CapText>(
    api: &'static str,
    order_no: &str,
    answer: ChannelAnswer<O>,
) -> ChannelAnswer<O> {
    let answer = answer.capped();
    log_answer(api, order_no, &answer);
    answer
}

fn log_answer<O: std::fmt::Debug>(api: &'static str, order_no: &str, answer: &ChannelAnswer<O>) {
    let outcome = format!("{:?}", answer.outcome);
    let codes = &answer.codes.0;
    if outcome.starts_with("Unknown") {
        tracing::warn!(
            channel = "wechat",
            api,
            order_no,
            outcome,
            ?codes,
            "channel answer is unknown"
        );
    } else {
        tracing::info!(
            channel = "wechat",
            api,
            order_no,
            outcome,
            ?codes,
            "channel answer"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_texts_are_cut_at_a_character_boundary() {
        assert_eq!(cut("abc", 3), "abc");
        assert_eq!(cut("付款码", 4), "付");
        assert_eq!(cut(&"a".repeat(200), BODY_MAX_BYTES).len(), BODY_MAX_BYTES);
    }

    #[test]
    fn a_secret_in_any_code_is_masked() {
        let mut codes =
            ChannelCodes::new().with("err_code_des", "code 134567890123456789 is invalid");
        redact_codes(&mut codes, "134567890123456789", "13**************89");
        assert_eq!(
            codes.get("err_code_des"),
            Some("code 13**************89 is invalid")
        );
    }
}
