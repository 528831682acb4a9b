//! The WeChat Pay v2 channel client: builds and signs each request, posts it
//! under the configured base URL (reverse and refund through a second HTTP
//! client that presents the merchant's certificate), and hands the answer to
//! [`super::judge`]. Every call first waits for its rate-limit bucket.
//! Nothing here returns an error for a money call: what cannot be proven is
//! an `Unknown` outcome with its reason.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::NaiveDate;
use paycode_domain::payment::{
    CapText, ChannelAnswer, PayOutcome, QueryOutcome, RefundOutcome, RevokeOutcome,
};
use paycode_domain::{Channel, ChannelCodes, OrderNo};

use super::config::WechatConfig;
use super::judge::{self, Merchant, OrderExpected, RefundExpected, RefundQueryExpected, Verified};
use super::sign::{self, ApiKey, SignType};
use super::xml::{self, Params};
use crate::ConfigError;
use crate::channel::rate_limit::{Api, CallLimiter};
use crate::channel::transport::{HttpTransport, Post, Transport, TransportError};
use crate::channel::{
    ChannelClient, PayRequest, QueryRequest, RefundQueryRequest, RefundRequest, StatementError,
    StatementFile,
};

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
    /// Carries requests (`/secapi/...` with the client certificate).
    transport: Arc<dyn Transport>,
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
        let identity = match &config.client_certificate {
            Some(certificate) => {
                let key_setting = config.setting("key_file");
                let pem = certificate.identity_pem(&config.setting_prefix)?;
                Some(reqwest::Identity::from_pem(&pem).map_err(|e| {
                    ConfigError::new(&key_setting, format!("unusable certificate or key: {e}"))
                })?)
            }
            None => None,
        };
        let transport = HttpTransport::new(config.timeout, identity).map_err(|e| {
            ConfigError::new(
                config.setting("key_file"),
                format!("the TLS stack refuses the HTTP client's settings: {e}"),
            )
        })?;
        WechatClient::with_transport(config, Arc::new(transport))
    }

    /// As [`WechatClient::new`], with requests carried by `transport`
    /// instead of HTTP (a simulation's channel).
    pub fn with_transport(
        config: WechatConfig,
        transport: Arc<dyn Transport>,
    ) -> Result<WechatClient, ConfigError> {
        config.validate()?;
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
            transport,
            limiter: CallLimiter::new(config.rate_limits),
        })
    }

    /// Adds the identity fields and a nonce, signs, and posts. Returns the
    /// body as text; `params` (which may hold the auth code) is dropped here.
    /// `api` names the rate-limit bucket to wait for; `None` when the caller
    /// already had its turn.
    async fn send(
        &self,
        api: Option<Api>,
        path: &str,
        mut params: Params,
        max_bytes: usize,
    ) -> Result<String, CallError> {
        if let Some(api) = api {
            self.limiter.until_ready(api).await;
        }
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
        let answer = self
            .transport
            .post(Post {
                url: format!("{}{}", self.base_url, path),
                content_type: "text/xml; charset=utf-8",
                body: body.into_bytes(),
                client_certificate: path.starts_with("/secapi/"),
                max_bytes,
                timeout: self.timeout,
            })
            .await
            .map_err(|error| match error {
                TransportError::TooLarge(max) => {
                    CallError::Unparsable(format!("the answer is larger than {max} bytes"))
                }
                other => CallError::Transport(other.to_string()),
            })?;
        if !answer.is_success() {
            return Err(CallError::Transport(format!(
                "HTTP status {}",
                answer.status_text()
            )));
        }
        String::from_utf8(answer.body)
            .map_err(|_| CallError::Unparsable("the answer is not UTF-8".to_owned()))
    }

    /// [`Self::send`], then the XML parse.
    async fn call(
        &self,
        api: Option<Api>,
        path: &str,
        params: Params,
    ) -> Result<Params, CallError> {
        let body = self.send(api, path, params, ANSWER_MAX_BYTES).await?;
        xml::parse(&body).map_err(|e| CallError::Unparsable(e.to_string()))
    }

    /// Calls, verifies the envelope, and judges: the shared path of the five
    /// money calls. `unknown` builds the outcome for every reason not to trust.
    async fn judged<O>(
        &self,
        api: Option<Api>,
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
        let expected = OrderExpected {
            out_trade_no,
            total_fee,
            submitted_at: request.submitted_at,
        };
        // The code expires while the call waits: one that cannot be made in
        // time is not made at all.
        if self
            .limiter
            .until_ready_within(Api::Pay, request.wait_max)
            .await
            .is_none()
        {
            let answer = ChannelAnswer::new(PayOutcome::NotSent {
                reason: format!(
                    "no turn under the pay rate limit within {} ms",
                    request.wait_max.as_millis()
                ),
            });
            log_answer("pay", out_trade_no, &answer);
            return answer;
        }
        let mut answer = self
            .judged(
                None,
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

    async fn query(&self, request: QueryRequest<'_>) -> ChannelAnswer<QueryOutcome> {
        let out_trade_no = request.order_no.as_str();
        let expected = OrderExpected {
            out_trade_no,
            total_fee: request.amount.fen(),
            submitted_at: request.submitted_at,
        };
        let params = Params::from([("out_trade_no".to_owned(), out_trade_no.to_owned())]);
        let answer = self
            .judged(
                Some(Api::Query),
                path::ORDER_QUERY,
                params,
                |reason| QueryOutcome::Unknown { reason },
                |verified| judge::query(verified, &expected),
            )
            .await;
        logged("query", out_trade_no, answer)
    }

    async fn revoke(&self, order_no: &OrderNo) -> ChannelAnswer<RevokeOutcome> {
        let out_trade_no = order_no.as_str();
        let params = Params::from([("out_trade_no".to_owned(), out_trade_no.to_owned())]);
        let answer = self
            .judged(
                Some(Api::Revoke),
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
                Some(Api::Refund),
                path::REFUND,
                params,
                |reason| RefundOutcome::Unknown { reason },
                |verified| judge::refund(verified, &expected),
            )
            .await;
        logged("refund", expected.out_trade_no, answer)
    }

    async fn refund_query(&self, request: RefundQueryRequest<'_>) -> ChannelAnswer<RefundOutcome> {
        let (out_trade_no, out_refund_no) = (request.order_no.as_str(), request.refund_no.as_str());
        let expected = RefundQueryExpected {
            out_trade_no,
            out_refund_no,
            refund_fee: request.refund_amount.fen(),
            total_fee: request.total_amount.fen(),
        };
        // The refund number alone selects exactly our refund; the answer's
        // order number is then checked against ours.
        let params = Params::from([("out_refund_no".to_owned(), out_refund_no.to_owned())]);
        let answer = self
            .judged(
                Some(Api::RefundQuery),
                path::REFUND_QUERY,
                params,
                |reason| RefundOutcome::Unknown { reason },
                |verified| judge::refund_query(verified, &expected),
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
                Some(Api::Statement),
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
