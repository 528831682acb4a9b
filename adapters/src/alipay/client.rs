//! `AlipayClient`: the [`ChannelClient`] of one merchant's Alipay app.
//!
//! Every call waits for its API's rate-limit bucket, signs the common
//! parameters and `biz_content` with the app key (RSA2), POSTs them
//! form-encoded to the gateway with a timeout, extracts the answer node from
//! the raw body, verifies Alipay's signature over its exact text, and only
//! then lets [`super::judge`] read it. Anything short of a verified answer
//! about this very request (transport error, timeout, HTTP error status,
//! oversized, non-UTF-8 or unparsable body, missing or wrong signature) is
//! an `Unknown` outcome with a reason, carrying whatever raw codes were
//! readable plus `signature=missing|invalid` when that was the problem.
//!
//! The auth_code appears in the pay request body and nowhere else: it is
//! masked out of every code and reason of the pay answer before that answer
//! is logged or returned, and bodies are never logged.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, Utc};
use paycode_domain::payment::{
    CapText, ChannelAnswer, PayOutcome, QueryOutcome, RefundOutcome, RevokeOutcome,
};
use paycode_domain::{AuthCode, Channel, ChannelCodes, OrderNo, capped_channel_text};
use rsa::{RsaPrivateKey, RsaPublicKey};
use serde::Serialize;
use tracing::Instrument as _;

use secrecy::ExposeSecret;

use super::config::{AlipayConfig, Secret, setting};
use super::envelope;
use super::judge::{self, Answer, BillUrlAnswer, PayExpected, RefundExpected, RefundQueryExpected};
use super::sign;
use super::wire::{self, BillContent, PayContent, RefundContent, RefundQueryContent, TradeContent};
use crate::ConfigError;
use crate::channel::rate_limit::{Api, CallLimiter};
use crate::channel::transport::{HttpTransport, Post, Transport, TransportError};
use crate::channel::{
    ChannelClient, PayRequest, QueryRequest, RefundQueryRequest, RefundRequest, StatementError,
    StatementFile,
};

/// The largest API answer read; anything longer is not an answer to these calls.
pub const ANSWER_BYTES_MAX: usize = 1024 * 1024;
/// The largest statement zip read.
pub const STATEMENT_BYTES_MAX: usize = 256 * 1024 * 1024;

/// One merchant's Alipay app, ready to call the gateway.
pub struct AlipayClient {
    app_id: String,
    app_private_key: RsaPrivateKey,
    alipay_public_key: RsaPublicKey,
    gateway: reqwest::Url,
    app_auth_token: Option<Secret>,
    transport: Arc<dyn Transport>,
    timeout: Duration,
    statement_timeout: Duration,
    limiter: CallLimiter,
}

impl fmt::Debug for AlipayClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AlipayClient")
            .field("app_id", &self.app_id)
            .field("gateway", &self.gateway.as_str())
            .field("app_private_key", &"***")
            .field("app_auth_token", &self.app_auth_token)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl AlipayClient {
    /// Validates `config` and builds the client. The error names the
    /// setting to fix (`merchants.alipay.private_key_file`, ...).
    pub fn new(config: AlipayConfig) -> Result<AlipayClient, ConfigError> {
        AlipayClient::build(config, None)
    }

    /// As [`AlipayClient::new`], with requests carried by `transport`
    /// instead of HTTP (a simulation's channel).
    pub fn with_transport(
        config: AlipayConfig,
        transport: Arc<dyn Transport>,
    ) -> Result<AlipayClient, ConfigError> {
        AlipayClient::build(config, Some(transport))
    }

    fn build(
        config: AlipayConfig,
        transport: Option<Arc<dyn Transport>>,
    ) -> Result<AlipayClient, ConfigError> {
        config.validate_plain()?;
        let gateway = reqwest::Url::parse(config.base_url.trim()).map_err(|error| {
            ConfigError::new(setting::BASE_URL, format!("is not a URL: {error}"))
        })?;
        crate::channel::endpoint::check_scheme(&gateway)
            .map_err(|reason| ConfigError::new(setting::BASE_URL, reason))?;
        let app_private_key = sign::private_key_from_pem(config.app_private_key.expose_secret())
            .map_err(|error| ConfigError::new(setting::PRIVATE_KEY_FILE, error.to_string()))?;
        let alipay_public_key =
            sign::public_key_from_pem(&config.alipay_public_key).map_err(|error| {
                ConfigError::new(setting::ALIPAY_PUBLIC_KEY_FILE, error.to_string())
            })?;
        let transport: Arc<dyn Transport> = match transport {
            Some(transport) => transport,
            None => Arc::new(HttpTransport::new(config.timeout, None).map_err(|error| {
                ConfigError::new(setting::BASE_URL, format!("no HTTP client: {error}"))
            })?),
        };
        Ok(AlipayClient {
            app_id: config.app_id,
            app_private_key,
            alipay_public_key,
            gateway,
            app_auth_token: config.app_auth_token,
            transport,
            timeout: config.timeout,
            statement_timeout: config.statement_timeout,
            limiter: CallLimiter::new(config.rate_limits),
        })
    }

    /// The app id this client signs for.
    pub fn app_id(&self) -> &str {
        &self.app_id
    }

    /// The SHA-256 of the `app_auth_token` it acts with, if any: tells two
    /// service-provider accounts apart without holding the token twice.
    pub fn app_auth_token_sha256(&self) -> Option<[u8; 32]> {
        use sha2::Digest;
        self.app_auth_token
            .as_ref()
            .map(|token| sha2::Sha256::digest(token.expose_secret().as_bytes()).into())
    }

    /// One signed call; `Ok` only for an answer whose signature verified.
    /// With `wait_max`, a call that has no turn under the rate limit within
    /// it is not made (`Unproven` of kind `NotSent`).
    async fn call(
        &self,
        api: Api,
        method: &str,
        biz_content: Result<String, String>,
        wait_max: Option<Duration>,
    ) -> Result<Verified, Unproven> {
        let biz_content = biz_content.map_err(Unproven::not_sent)?;
        let waited = match wait_max {
            None => self.limiter.until_ready(api).await,
            Some(wait_max) => self
                .limiter
                .until_ready_within(api, wait_max)
                .await
                .ok_or_else(|| {
                    Unproven::not_sent(format!(
                        "no turn under the rate limit within {} ms",
                        wait_max.as_millis()
                    ))
                })?,
        };
        tracing::trace!(
            waited_ms = u64::try_from(waited.as_millis()).unwrap_or(u64::MAX),
            "rate limit"
        );
        let timestamp = wire::format_timestamp(Utc::now());
        let token = self
            .app_auth_token
            .as_ref()
            .map(ExposeSecret::expose_secret);
        let mut params = wire::request_params(&self.app_id, method, &timestamp, token, biz_content);
        let signature = sign::sign_params(
            &self.app_private_key,
            params.iter().map(|(key, value)| (*key, value.as_str())),
        )
        .map_err(|error| Unproven::not_sent(error.to_string()))?;
        params.push(("sign", signature));
        let body = serde_urlencoded::to_string(&params)
            .map_err(|error| Unproven::not_sent(error.to_string()))?;
        drop(params);

        let answer = self
            .transport
            .post(Post {
                url: self.gateway.to_string(),
                content_type: "application/x-www-form-urlencoded;charset=utf-8",
                body: body.into_bytes(),
                client_certificate: false,
                max_bytes: ANSWER_BYTES_MAX,
                timeout: self.timeout,
            })
            .await
            .map_err(|error| Unproven::transport(Self::transport_reason(&error)))?;
        let answered_at = answer.date;
        if !answer.is_success() {
            return Err(Unproven::transport(format!(
                "HTTP status {}",
                answer.status_text()
            )));
        }
        let bytes = answer.body;
        let text = String::from_utf8(bytes)
            .map_err(|_| Unproven::untrusted("answer is not UTF-8".to_owned()))?;
        let envelope = envelope::extract(&text, method)
            .map_err(|error| Unproven::untrusted(format!("unreadable answer: {error}")))?;
        let answer = Answer::parse(envelope.node_raw)
            .map_err(|error| Unproven::untrusted(format!("unreadable answer node: {error}")))?;
        let mut codes = answer.codes();
        if envelope.is_error_response() {
            codes = codes.with("node", envelope::ERROR_RESPONSE);
        }
        if let Err(error) = sign::verify_response(&self.alipay_public_key, &envelope) {
            let flag = if envelope.sign.is_none() {
                "missing"
            } else {
                "invalid"
            };
            return Err(Unproven {
                reason: format!(
                    "answer not trusted: {error} (code {})",
                    answer.code().unwrap_or("none")
                ),
                codes: codes.with("signature", flag),
                kind: UnprovenKind::Untrusted,
            });
        }
        Ok(Verified {
            answer,
            codes,
            answered_at,
        })
    }

    fn transport_reason(error: &TransportError) -> String {
        match error {
            TransportError::Connect(reason) => format!("cannot connect to the gateway: {reason}"),
            TransportError::TooLarge(max) => format!("answer longer than {max} bytes"),
            other => other.to_string(),
        }
    }

    async fn download_zip(&self, url: &str) -> Result<Vec<u8>, StatementError> {
        let url = reqwest::Url::parse(url)
            .ok()
            .filter(|url| matches!(url.scheme(), "http" | "https"))
            .ok_or_else(|| {
                StatementError::Untrusted("bill_download_url is not an http(s) URL".to_owned())
            })?;
        let answer = self
            .transport
            .get(url.as_str(), STATEMENT_BYTES_MAX, self.statement_timeout)
            .await
            .map_err(|error| StatementError::Transport(Self::transport_reason(&error)))?;
        if !answer.is_success() {
            return Err(StatementError::Transport(format!(
                "bill download answered HTTP status {}",
                answer.status_text()
            )));
        }
        let bytes = answer.body;
        // Every zip starts with a local file header or, when empty, the end-of-directory record.
        if !bytes.starts_with(b"PK") {
            return Err(StatementError::Untrusted(
                "the bill download is not a zip file".to_owned(),
            ));
        }
        Ok(bytes)
    }
}

/// A verified answer.
struct Verified {
    answer: Answer,
    /// The answer's codes, plus `node=error_response` when the gateway answered that way.
    codes: ChannelCodes,
    /// The HTTP `Date` of the answer.
    answered_at: Option<DateTime<Utc>>,
}

impl Verified {
    /// A judged outcome with this answer's codes.
    fn with_codes<O>(&self, judged: ChannelAnswer<O>) -> ChannelAnswer<O> {
        ChannelAnswer::with_codes(judged.outcome, self.codes.clone())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum UnprovenKind {
    /// The request could not be built or signed; nothing was sent.
    NotSent,
    /// No (complete) answer came back.
    Transport,
    /// An answer came, but it cannot be trusted.
    Untrusted,
}

/// Why a call proves nothing.
#[derive(Debug)]
struct Unproven {
    reason: String,
    codes: ChannelCodes,
    kind: UnprovenKind,
}

impl Unproven {
    fn not_sent(reason: String) -> Self {
        Unproven {
            reason: format!("request not sent: {reason}"),
            codes: ChannelCodes::new(),
            kind: UnprovenKind::NotSent,
        }
    }

    fn transport(reason: String) -> Self {
        Unproven {
            reason,
            codes: ChannelCodes::new(),
            kind: UnprovenKind::Transport,
        }
    }

    fn untrusted(reason: String) -> Self {
        Unproven {
            reason,
            codes: ChannelCodes::new(),
            kind: UnprovenKind::Untrusted,
        }
    }

    fn into_answer<O>(self, unknown: impl FnOnce(String) -> O) -> ChannelAnswer<O> {
        ChannelAnswer::with_codes(unknown(self.reason), self.codes)
    }

    fn into_statement_error(self) -> StatementError {
        match self.kind {
            UnprovenKind::NotSent | UnprovenKind::Transport => {
                StatementError::Transport(self.reason)
            }
            UnprovenKind::Untrusted => StatementError::Untrusted(self.reason),
        }
    }
}

fn to_json(content: &impl Serialize) -> Result<String, String> {
    serde_json::to_string(content).map_err(|error| error.to_string())
}

/// Replaces the full auth_code by its mask anywhere in a pay answer.
fn mask_auth_code(answer: &mut ChannelAnswer<PayOutcome>, auth_code: &AuthCode) {
    let full = auth_code.expose_for_pay_call();
    let masked = auth_code.masked();
    let scrub = |text: &mut String| {
        if text.contains(full) {
            *text = text.replace(full, masked.as_str());
        }
    };
    for value in answer.codes.0.values_mut() {
        scrub(value);
    }
    match &mut answer.outcome {
        PayOutcome::Unknown { reason } => scrub(reason),
        PayOutcome::Failed { code } => scrub(code),
        PayOutcome::Paid {
            channel_trade_no, ..
        } => scrub(channel_trade_no),
        PayOutcome::NotSent { reason } => scrub(reason),
        PayOutcome::WaitingForPassword => {}
    }
}

/// Caps the answer's channel text (`ChannelAnswer::capped`: what is stored
/// and logged stays short), then logs it.
fn logged<O: fmt::Debug + CapText>(
    answer: ChannelAnswer<O>,
    is_unknown: impl FnOnce(&O) -> bool,
) -> ChannelAnswer<O> {
    let answer = answer.capped();
    log_answer(&answer, is_unknown(&answer.outcome));
    answer
}

/// Logs a normalised answer; one that proves nothing is a warning (docs/rules.md: unproven answers are logged).
fn log_answer<O: fmt::Debug>(answer: &ChannelAnswer<O>, unknown: bool) {
    let code = answer.codes.get("code");
    let sub_code = answer.codes.get("sub_code");
    if unknown {
        tracing::warn!(outcome = ?answer.outcome, code, sub_code, "alipay answer proves nothing");
    } else {
        tracing::info!(outcome = ?answer.outcome, code, sub_code, "alipay answered");
    }
}

#[async_trait]
impl ChannelClient for AlipayClient {
    fn channel(&self) -> Channel {
        Channel::Alipay
    }

    fn rate_limit_waits(&self) -> Vec<(crate::channel::rate_limit::Api, u64)> {
        self.limiter.waits()
    }

    async fn pay(&self, request: PayRequest<'_>) -> ChannelAnswer<PayOutcome> {
        let span = tracing::info_span!("alipay_call", method = wire::METHOD_PAY, order_no = %request.order_no);
        async {
            let content = PayContent {
                out_trade_no: request.order_no.as_str().to_owned(),
                scene: wire::SCENE_BAR_CODE.to_owned(),
                auth_code: request.auth_code.expose_for_pay_call().to_owned(),
                subject: request.subject.to_owned(),
                total_amount: request.amount.to_yuan_string(),
            };
            let biz_content = to_json(&content);
            drop(content);
            let expected = PayExpected {
                app_id: &self.app_id,
                out_trade_no: request.order_no.as_str(),
                total_amount: request.amount,
                submitted_at: request.submitted_at,
            };
            let called = self
                .call(
                    Api::Pay,
                    wire::METHOD_PAY,
                    biz_content,
                    Some(request.wait_max),
                )
                .await;
            let mut answer = match called {
                Ok(verified) => verified.with_codes(judge::pay(&verified.answer, &expected)),
                // Certainly not made: nothing can have moved.
                Err(unproven) if unproven.kind == UnprovenKind::NotSent => {
                    unproven.into_answer(|reason| PayOutcome::NotSent { reason })
                }
                Err(unproven) => unproven.into_answer(|reason| PayOutcome::Unknown { reason }),
            };
            mask_auth_code(&mut answer, request.auth_code);
            logged(answer, |outcome| {
                matches!(outcome, PayOutcome::Unknown { .. })
            })
        }
        .instrument(span)
        .await
    }

    async fn query(&self, request: QueryRequest<'_>) -> ChannelAnswer<QueryOutcome> {
        let order_no = request.order_no;
        let span =
            tracing::info_span!("alipay_call", method = wire::METHOD_QUERY, order_no = %order_no);
        async {
            let biz_content = to_json(&TradeContent {
                out_trade_no: order_no.as_str().to_owned(),
            });
            let expected = PayExpected {
                app_id: &self.app_id,
                out_trade_no: order_no.as_str(),
                total_amount: request.amount,
                submitted_at: request.submitted_at,
            };
            let answer = match self
                .call(Api::Query, wire::METHOD_QUERY, biz_content, None)
                .await
            {
                Ok(verified) => verified.with_codes(judge::query(&verified.answer, &expected)),
                Err(unproven) => unproven.into_answer(|reason| QueryOutcome::Unknown { reason }),
            };
            logged(answer, |outcome| {
                matches!(outcome, QueryOutcome::Unknown { .. })
            })
        }
        .instrument(span)
        .await
    }

    async fn revoke(&self, order_no: &OrderNo) -> ChannelAnswer<RevokeOutcome> {
        let span =
            tracing::info_span!("alipay_call", method = wire::METHOD_CANCEL, order_no = %order_no);
        async {
            let biz_content = to_json(&TradeContent {
                out_trade_no: order_no.as_str().to_owned(),
            });
            let answer = match self
                .call(Api::Revoke, wire::METHOD_CANCEL, biz_content, None)
                .await
            {
                Ok(verified) => verified.with_codes(judge::cancel(
                    &verified.answer,
                    &self.app_id,
                    order_no.as_str(),
                )),
                Err(unproven) => unproven.into_answer(|reason| RevokeOutcome::Unknown { reason }),
            };
            logged(answer, |outcome| {
                matches!(outcome, RevokeOutcome::Unknown { .. })
            })
        }
        .instrument(span)
        .await
    }

    async fn refund(&self, request: RefundRequest<'_>) -> ChannelAnswer<RefundOutcome> {
        let span = tracing::info_span!(
            "alipay_call",
            method = wire::METHOD_REFUND,
            order_no = %request.order_no,
            refund_no = %request.refund_no
        );
        async {
            let biz_content = to_json(&RefundContent {
                out_trade_no: request.order_no.as_str().to_owned(),
                refund_amount: request.refund_amount.to_yuan_string(),
                out_request_no: request.refund_no.as_str().to_owned(),
                refund_reason: request.reason.to_owned(),
            });
            let expected = RefundExpected {
                app_id: &self.app_id,
                out_trade_no: request.order_no.as_str(),
                out_request_no: request.refund_no.as_str(),
                refund_amount: request.refund_amount,
            };
            let answer = match self
                .call(Api::Refund, wire::METHOD_REFUND, biz_content, None)
                .await
            {
                Ok(verified) => verified.with_codes(judge::refund(&verified.answer, &expected)),
                Err(unproven) => unproven.into_answer(|reason| RefundOutcome::Unknown { reason }),
            };
            logged(answer, |outcome| {
                matches!(outcome, RefundOutcome::Unknown { .. })
            })
        }
        .instrument(span)
        .await
    }

    async fn refund_query(&self, request: RefundQueryRequest<'_>) -> ChannelAnswer<RefundOutcome> {
        let (order_no, refund_no) = (request.order_no, request.refund_no);
        let span = tracing::info_span!(
            "alipay_call",
            method = wire::METHOD_REFUND_QUERY,
            order_no = %order_no,
            refund_no = %refund_no
        );
        async {
            let biz_content = to_json(&RefundQueryContent {
                out_trade_no: order_no.as_str().to_owned(),
                out_request_no: refund_no.as_str().to_owned(),
                query_options: vec![wire::QUERY_OPTION_GMT_REFUND_PAY.to_owned()],
            });
            let expected = RefundQueryExpected {
                app_id: &self.app_id,
                out_trade_no: order_no.as_str(),
                out_request_no: refund_no.as_str(),
                refund_amount: request.refund_amount,
                total_amount: request.total_amount,
            };
            let answer = match self
                .call(
                    Api::RefundQuery,
                    wire::METHOD_REFUND_QUERY,
                    biz_content,
                    None,
                )
                .await
            {
                Ok(verified) => verified.with_codes(judge::refund_query(
                    &verified.answer,
                    &expected,
                    verified.answered_at,
                )),
                Err(unproven) => unproven.into_answer(|reason| RefundOutcome::Unknown { reason }),
            };
            logged(answer, |outcome| {
                matches!(outcome, RefundOutcome::Unknown { .. })
            })
        }
        .instrument(span)
        .await
    }

    async fn download_statement(&self, date: NaiveDate) -> Result<StatementFile, StatementError> {
        let span =
            tracing::info_span!("alipay_call", method = wire::METHOD_BILL_URL, bill_date = %date);
        async {
            let biz_content = to_json(&BillContent {
                bill_type: wire::BILL_TYPE_TRADE.to_owned(),
                bill_date: date.format("%Y-%m-%d").to_string(),
            });
            let verified = match self
                .call(Api::Statement, wire::METHOD_BILL_URL, biz_content, None)
                .await
            {
                Ok(verified) => verified,
                Err(unproven) => {
                    tracing::warn!(reason = %unproven.reason, "bill download URL not obtained");
                    return Err(unproven.into_statement_error());
                }
            };
            let result = match judge::bill_url(&verified.answer) {
                BillUrlAnswer::Url(url) => {
                    self.download_zip(&url).await.map(StatementFile::AlipayZip)
                }
                BillUrlAnswer::NoStatement { code } => Ok(StatementFile::NoStatement { code }),
                BillUrlAnswer::Refused { code, message } => Err(StatementError::Refused {
                    code: capped_channel_text(&code),
                    message: capped_channel_text(&message),
                }),
            };
            match &result {
                Ok(StatementFile::AlipayZip(bytes)) => {
                    tracing::info!(bytes = bytes.len(), "bill downloaded");
                }
                Ok(other) => tracing::info!(statement = ?other, "no bill"),
                Err(error) => tracing::warn!(%error, "bill not downloaded"),
            }
            result
        }
        .instrument(span)
        .await
    }
}
