//! The sandbox (`paycode-sandbox`): WeChat Pay v2 and Alipay played over
//! real HTTP with real signatures, for local runs, demos and the end-to-end
//! tests. Not an adapter of the ledger but a simulation of the outside world
//! the adapters talk to: it is built on their wire formats, signatures and
//! paths (`paycode_adapters::wechat`, `paycode_adapters::alipay`), their
//! [`Clock`] port and their names of the channel APIs ([`Api`]), so that
//! client and sandbox share one reading of each protocol.
//!
//! One axum router serves both channels: WeChat's XML endpoints at their
//! real paths (`/pay/micropay`, `/pay/orderquery`, `/secapi/pay/reverse`,
//! `/secapi/pay/refund`, `/pay/refundquery`, `/pay/downloadbill`) and
//! Alipay's gateway at `/gateway.do`, plus `/downloadBillFile.resource`
//! for the bill zips the gateway points to. A merchant's `base_url` is the
//! sandbox's address (`http://ADDR` and `http://ADDR/gateway.do`).
//!
//! Every request's signature is checked with the merchant's configured
//! credentials (a bad one is answered as the channel does: WeChat's unsigned
//! `签名失败`, Alipay's unsigned `40002 isv.invalid-signature`), and every
//! answer is signed: WeChat's with the merchant's key, Alipay's with the
//! sandbox's own private key, whose public half the merchant configures as
//! `alipay_public_key_file`.
//!
//! The sandbox keeps its own truth per order ([`SandboxOrder`]) in SQLite
//! ([`SandboxConfig::state_path`], in memory without one), so a restarted
//! sandbox still queries, revokes, refunds and lists on statements what it
//! was told before. Its rules run on the [`Clock`] port and are applied
//! lazily whenever an order is touched (see [`truth`]): tests move a
//! `ManualClock` instead of sleeping. The one exception is code `05`, whose
//! answer is held for [`SandboxConfig::slow_answer`] of wall time, since it
//! is about the client's HTTP timeout.
//!
//! The payment code's last two digits choose the behaviour ([`Behaviour`]);
//! the full code is never stored, logged or recorded.
//!
//! Decisions where the channels' documentation leaves the behaviour open:
//! - Code `07` waits for the password like `02` (so the ledger revokes by
//!   itself) and every revoke of it asks to be retried; WeChat's 45 s
//!   auto-revoke spares `06` and `07`, whose queries must keep saying
//!   "waiting".
//! - WeChat answers a reverse of an order still waiting for the password
//!   with `USERPAYING` (retry) during the first 15 s after its creation.
//! - A failed (`03`) WeChat order queries `PAYERROR`, an Alipay one `TRADE_CLOSED`.
//! - A day with no line has no statement (WeChat `No Bill Exist`, Alipay
//!   `isp.bill_not_exist`), today included.

#![deny(clippy::float_arithmetic)]

mod alipay;
pub mod codes;
pub mod faults;
pub mod statement;
mod store;
pub mod truth;
mod wechat;

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use chrono::{DateTime, NaiveDate, Utc};
use paycode_adapters::alipay::sign::KeyError;
use paycode_adapters::channel::StatementFile;
use paycode_adapters::channel::rate_limit::Api;
use paycode_adapters::clock::Clock;
use paycode_adapters::wechat::{ApiKey, SignType};
use paycode_domain::calendar::china_date;
use paycode_domain::{AuthCode, Channel};
use rsa::pkcs8::{EncodePrivateKey, EncodePublicKey, LineEnding};
use rsa::{RsaPrivateKey, RsaPublicKey};
use secrecy::ExposeSecret;

pub use alipay::{BILL_DOWNLOAD_PATH, GATEWAY_PATH};
pub use codes::Behaviour;
pub use faults::{FaultKind, Faults, StatementDefect};
pub use statement::{WechatBillLayout, WechatBillType};
pub use store::TruthStore;
pub use truth::{SandboxOrder, SandboxOrderState, SandboxRefund, SandboxRefundState};

use faults::FaultDice;

/// How long code `05` and the slow-answer fault hold an answer by default:
/// longer than the channel clients' 10 s timeout.
pub const SLOW_ANSWER_DEFAULT: Duration = Duration::from_secs(15);

/// How many of the latest calls the sandbox keeps for [`Sandbox::calls`] by
/// default. Older ones are forgotten, so a sandbox embedded in a
/// long-running `paycode serve` holds a bounded record; the counts of
/// [`Sandbox::call_counts`] and the pay requests per order of its truth
/// ([`TruthStore::pay_requests`]) stay exact.
pub const CALLS_KEPT_DEFAULT: usize = 10_000;

/// Everything the sandbox needs to start.
#[derive(Debug, Clone)]
pub struct SandboxConfig {
    /// The merchants it plays the channels for.
    pub merchants: Vec<SandboxMerchant>,
    /// The SQLite file of its truth; `None` keeps it in memory.
    pub state_path: Option<PathBuf>,
    /// Whether each change of the truth file is synced to disk before the
    /// answer (true by default; benchmarks turn it off).
    pub state_durable: bool,
    /// The RSA private key (PEM) that signs Alipay answers; its public half
    /// is every merchant's `alipay_public_key_file`.
    pub alipay_private_key_pem: String,
    /// Misbehaviour beyond the code table.
    pub faults: Faults,
    /// The seed of the fault draws: the same seed, the same faults.
    pub seed: u64,
    /// How long code `05` (and the slow fault) hold an answer, in wall time.
    pub slow_answer: Duration,
    /// Where the Alipay bill zips can be downloaded (`http://host:port`);
    /// `None` uses the request's `Host` header.
    pub public_base_url: Option<String>,
    /// The column set of WeChat bills.
    pub wechat_bill_layout: WechatBillLayout,
    /// How many of the latest calls [`Sandbox::calls`] keeps
    /// ([`CALLS_KEPT_DEFAULT`]).
    pub calls_kept: usize,
}

impl SandboxConfig {
    /// A configuration with the defaults: in memory, no faults, seed 0,
    /// 15 s slow answers, bill URLs from the `Host` header, current bill layout.
    pub fn new(merchants: Vec<SandboxMerchant>, alipay_private_key_pem: String) -> SandboxConfig {
        SandboxConfig {
            merchants,
            state_path: None,
            state_durable: true,
            alipay_private_key_pem,
            faults: Faults::default(),
            seed: 0,
            slow_answer: SLOW_ANSWER_DEFAULT,
            public_base_url: None,
            wechat_bill_layout: WechatBillLayout::default(),
            calls_kept: CALLS_KEPT_DEFAULT,
        }
    }
}

/// One merchant, on one or both channels.
#[derive(Debug, Clone)]
pub struct SandboxMerchant {
    /// Its WeChat Pay v2 credentials, when it takes WeChat.
    pub wechat: Option<SandboxWechat>,
    /// Its Alipay app, when it takes Alipay.
    pub alipay: Option<SandboxAlipay>,
}

/// A WeChat Pay v2 merchant as the sandbox knows it.
#[derive(Debug, Clone)]
pub struct SandboxWechat {
    /// The app id bound to the merchant; requests must carry it.
    pub appid: String,
    /// The merchant number; requests are routed to the merchant by it.
    pub mch_id: String,
    /// The API key that signs requests and answers (a secret: never printed).
    pub key: ApiKey,
    /// The algorithm requests must be signed with (a request signed
    /// otherwise fails the signature check); answers use it too.
    pub sign_type: SignType,
}

/// An Alipay app as the sandbox knows it.
#[derive(Debug, Clone)]
pub struct SandboxAlipay {
    /// The app id; requests are routed to the app by it.
    pub app_id: String,
    /// The app's public key (PEM), which verifies its requests.
    pub app_public_key_pem: String,
}

/// Why the sandbox cannot start or answer a direct call.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// A setting is unusable; `setting` names it. Fix the configuration.
    #[error("{setting}: {reason}")]
    Config { setting: String, reason: String },
    /// The state file cannot be opened, read or written. Check the path and disk.
    #[error("sandbox state: {0}")]
    Store(#[from] rusqlite::Error),
    /// A statement could not be written (zip). A bug; report it.
    #[error("sandbox statement: {0}")]
    Statement(String),
    /// No merchant with this `mch_id` / `app_id` is configured.
    #[error("no sandbox merchant {0} on this channel")]
    UnknownMerchant(String),
}

/// What a call was for: one of the channel APIs the clients call (their
/// own [`Api`]: WeChat's path, Alipay's `method`), or one of the sandbox's
/// other endpoints.
///
/// Printed with `{:?}` as the API alone (`Pay`, `RefundQuery`,
/// `StatementDownload`, `Other`), not `Channel(Pay)`: the logs and the
/// demo's summary of calls name the API.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub enum SandboxApi {
    /// A channel API: pay, query, revoke, refund, refund query or the
    /// statement (bill) query.
    Channel(Api),
    /// The Alipay bill zip download.
    StatementDownload,
    /// An Alipay method the sandbox does not play, or an unreadable request.
    Other,
}

impl fmt::Debug for SandboxApi {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SandboxApi::Channel(api) => fmt::Debug::fmt(api, f),
            SandboxApi::StatementDownload => f.write_str("StatementDownload"),
            SandboxApi::Other => f.write_str("Other"),
        }
    }
}

impl From<Api> for SandboxApi {
    fn from(api: Api) -> SandboxApi {
        SandboxApi::Channel(api)
    }
}

/// One call the sandbox received, as tests assert them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SandboxCall {
    /// The sandbox clock's time of the call.
    pub at: DateTime<Utc>,
    /// The channel the call was made to.
    pub channel: Channel,
    /// The API called.
    pub api: SandboxApi,
    /// `mch_id` or `app_id` as sent (empty when unreadable).
    pub merchant_id: String,
    /// The order the call names, when it names one.
    pub out_trade_no: Option<String>,
    /// `out_refund_no` / `out_request_no`, when the call names one.
    pub refund_no: Option<String>,
    /// What was answered: WeChat's `SUCCESS` or `err_code` (with
    /// `recall=Y`), `return_code=FAIL` for an unsigned refusal; Alipay's
    /// `code` or `code/sub_code` (with `action`, `retry_flag=Y`); then
    /// ` forged-signature` or ` held` for codes `08` and `05`.
    pub answer: String,
    /// The injected fault, if one struck.
    pub fault: Option<FaultKind>,
}

/// The sandbox. Cheap to clone: all clones share one truth.
#[derive(Clone)]
pub struct Sandbox {
    inner: Arc<Inner>,
}

impl fmt::Debug for Sandbox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sandbox")
            .field("wechat_merchants", &self.inner.wechat.len())
            .field("alipay_apps", &self.inner.alipay.len())
            .finish_non_exhaustive()
    }
}

/// An Alipay app with its parsed key.
struct AlipayApp {
    config: SandboxAlipay,
    public_key: RsaPublicKey,
}

struct Inner {
    clock: Arc<dyn Clock>,
    wechat: HashMap<String, SandboxWechat>,
    alipay: HashMap<String, AlipayApp>,
    alipay_private_key: RsaPrivateKey,
    store: Mutex<TruthStore>,
    /// The latest calls, at most `calls_kept`, oldest first.
    calls: Mutex<VecDeque<SandboxCall>>,
    calls_kept: usize,
    /// Every call ever received, counted by channel and API.
    call_counts: Mutex<HashMap<(Channel, SandboxApi), u64>>,
    dice: Mutex<FaultDice>,
    statement_defects: Vec<StatementDefect>,
    slow_answer: Duration,
    public_base_url: Option<String>,
    wechat_bill_layout: WechatBillLayout,
}

/// A handled call: the HTTP answer and what to record.
#[derive(Debug)]
struct Handled {
    status: StatusCode,
    content_type: &'static str,
    body: Vec<u8>,
    summary: CallSummary,
    /// Code `05`: hold the answer for `slow_answer`.
    hold: bool,
}

/// What a handler tells the call record.
#[derive(Debug, Clone)]
struct CallSummary {
    api: SandboxApi,
    merchant_id: String,
    out_trade_no: Option<String>,
    refund_no: Option<String>,
    answer: String,
}

const XML: &str = "text/xml; charset=utf-8";
const JSON: &str = "application/json; charset=utf-8";
const TEXT: &str = "text/plain; charset=utf-8";

impl Sandbox {
    /// Checks the configuration, opens (or creates) the state file, and
    /// builds the sandbox. Errors name the setting (`sandbox.state_path`,
    /// `sandbox.alipay_private_key_file`, `merchants.alipay.app_public_key`).
    pub fn open(config: SandboxConfig, clock: Arc<dyn Clock>) -> Result<Sandbox, SandboxError> {
        let config_error = |setting: &str, reason: String| SandboxError::Config {
            setting: setting.to_owned(),
            reason,
        };
        let alipay_private_key =
            paycode_adapters::alipay::sign::private_key_from_pem(&config.alipay_private_key_pem)
                .map_err(|e| config_error("sandbox.alipay_private_key_file", e.to_string()))?;
        let mut wechat = HashMap::new();
        let mut alipay = HashMap::new();
        for merchant in config.merchants {
            if let Some(w) = merchant.wechat {
                if w.mch_id.is_empty() || w.key.expose_secret().is_empty() {
                    return Err(config_error(
                        "merchants.wechat",
                        "mch_id and key must not be empty".to_owned(),
                    ));
                }
                if wechat.insert(w.mch_id.clone(), w).is_some() {
                    return Err(config_error(
                        "merchants.wechat.mch_id",
                        "two merchants share one mch_id".to_owned(),
                    ));
                }
            }
            if let Some(a) = merchant.alipay {
                let public_key =
                    paycode_adapters::alipay::sign::public_key_from_pem(&a.app_public_key_pem)
                        .map_err(|e| {
                            config_error(
                                "merchants.alipay.app_public_key",
                                format!("app {}: {e}", a.app_id),
                            )
                        })?;
                let app_id = a.app_id.clone();
                let app = AlipayApp {
                    config: a,
                    public_key,
                };
                if alipay.insert(app_id, app).is_some() {
                    return Err(config_error(
                        "merchants.alipay.app_id",
                        "two merchants share one app_id".to_owned(),
                    ));
                }
            }
        }
        let store = TruthStore::open_with(config.state_path.as_deref(), config.state_durable)
            .map_err(|e| {
                config_error(
                    "sandbox.state_path",
                    format!("cannot open the sandbox state: {e}"),
                )
            })?;
        Ok(Sandbox {
            inner: Arc::new(Inner {
                clock,
                wechat,
                alipay,
                alipay_private_key,
                store: Mutex::new(store),
                calls: Mutex::new(VecDeque::new()),
                calls_kept: config.calls_kept,
                call_counts: Mutex::new(HashMap::new()),
                dice: Mutex::new(FaultDice::new(config.faults.clone(), config.seed)),
                statement_defects: config.faults.statement_defects,
                slow_answer: config.slow_answer,
                public_base_url: config
                    .public_base_url
                    .map(|url| url.trim_end_matches('/').to_owned()),
                wechat_bill_layout: config.wechat_bill_layout,
            }),
        })
    }

    /// Every endpoint of both channels.
    pub fn router(&self) -> Router {
        Router::new()
            .route(
                paycode_adapters::wechat::client::path::MICROPAY,
                post(wechat_route),
            )
            .route(
                paycode_adapters::wechat::client::path::ORDER_QUERY,
                post(wechat_route),
            )
            .route(
                paycode_adapters::wechat::client::path::REVERSE,
                post(wechat_route),
            )
            .route(
                paycode_adapters::wechat::client::path::REFUND,
                post(wechat_route),
            )
            .route(
                paycode_adapters::wechat::client::path::REFUND_QUERY,
                post(wechat_route),
            )
            .route(
                paycode_adapters::wechat::client::path::DOWNLOAD_BILL,
                post(wechat_route),
            )
            .route(
                alipay::GATEWAY_PATH,
                post(alipay_gateway_route).get(alipay_gateway_route),
            )
            .route(alipay::BILL_DOWNLOAD_PATH, get(alipay_download_route))
            .with_state(self.clone())
    }

    /// The latest calls received (at most [`SandboxConfig::calls_kept`]),
    /// oldest first.
    pub fn calls(&self) -> Vec<SandboxCall> {
        lock(&self.inner.calls).iter().cloned().collect()
    }

    /// How many calls of each channel and API were received since the start
    /// (or [`Sandbox::clear_calls`]), however many [`Sandbox::calls`] keeps;
    /// sorted by channel, then API name.
    pub fn call_counts(&self) -> Vec<(Channel, SandboxApi, u64)> {
        let mut counts: Vec<(Channel, SandboxApi, u64)> = lock(&self.inner.call_counts)
            .iter()
            .map(|(&(channel, api), &count)| (channel, api, count))
            .collect();
        counts.sort_by_key(|&(channel, api, _)| (channel, format!("{api:?}")));
        counts
    }

    /// How many pay requests the sandbox received for an order, exactly and
    /// for its whole life (counted in its truth, not in the call record);
    /// 0 when the truth cannot be read (that is logged).
    pub fn pay_requests(&self, channel: Channel, mch_or_app_id: &str, out_trade_no: &str) -> u64 {
        self.inner
            .store()
            .pay_requests(channel, mch_or_app_id, out_trade_no)
            .unwrap_or_else(|error| {
                tracing::error!(%channel, %error, "sandbox state unreadable");
                0
            })
    }

    /// Forgets the recorded calls and their counts (not the orders).
    pub fn clear_calls(&self) {
        lock(&self.inner.calls).clear();
        lock(&self.inner.call_counts).clear();
    }

    /// The sandbox's truth about an order as of its clock's now, or `None`
    /// when it never saw it (or its state cannot be read; that is logged).
    pub fn order(
        &self,
        channel: Channel,
        mch_or_app_id: &str,
        out_trade_no: &str,
    ) -> Option<SandboxOrder> {
        let now = self.inner.clock.now();
        let loaded = self
            .inner
            .store()
            .load(channel, mch_or_app_id, out_trade_no);
        match loaded {
            Ok(order) => order.map(|mut order| {
                order.settle(now);
                order
            }),
            Err(error) => {
                tracing::error!(%channel, %error, "sandbox state unreadable");
                None
            }
        }
    }

    /// Records that another system already used `out_trade_no`: a trade of
    /// `amount_fen`, paid at `paid_at`. A pay under that number then meets
    /// the channel's "order number used" answers, and queries show this
    /// trade (for simulations and tests of reused order numbers).
    pub fn record_earlier_trade(
        &self,
        channel: Channel,
        mch_or_app_id: &str,
        out_trade_no: &str,
        amount_fen: u64,
        paid_at: DateTime<Utc>,
    ) -> Result<(), SandboxError> {
        let code = match channel {
            Channel::Wechat => "134567890123456700",
            Channel::Alipay => "284567890123456700",
        };
        let code = AuthCode::parse(code)
            .unwrap_or_else(|_| unreachable!("a test code of the pay-at-once kind"));
        let mut store = self.inner.store();
        Inner::new_order(
            &mut store,
            channel,
            mch_or_app_id,
            out_trade_no,
            amount_fen,
            "an earlier sale",
            &code,
            paid_at,
        )?;
        Ok(())
    }

    /// `date`'s statement (China-time day) as of now: the same bytes the
    /// download serves at this instant. WeChat's is the `ALL` bill.
    pub fn statement(
        &self,
        channel: Channel,
        merchant_key_id: &str,
        date: NaiveDate,
    ) -> Result<StatementFile, SandboxError> {
        match channel {
            Channel::Wechat => self.wechat_bill(merchant_key_id, date, WechatBillType::All),
            Channel::Alipay => {
                if !self.inner.alipay.contains_key(merchant_key_id) {
                    return Err(SandboxError::UnknownMerchant(merchant_key_id.to_owned()));
                }
                match self.inner.alipay_zip(merchant_key_id, date)? {
                    Some(zip) => Ok(StatementFile::AlipayZip(zip)),
                    None => Ok(StatementFile::NoStatement {
                        code: alipay::BILL_NOT_EXIST.to_owned(),
                    }),
                }
            }
        }
    }

    /// A WeChat bill of any type (`ALL`, `SUCCESS`, `REFUND`) as `/pay/downloadbill` serves it now.
    pub fn wechat_bill(
        &self,
        mch_id: &str,
        date: NaiveDate,
        bill_type: WechatBillType,
    ) -> Result<StatementFile, SandboxError> {
        let merchant = self
            .inner
            .wechat
            .get(mch_id)
            .ok_or_else(|| SandboxError::UnknownMerchant(mch_id.to_owned()))?;
        match self.inner.wechat_bill_text(merchant, date, bill_type)? {
            Some(text) => Ok(StatementFile::WechatText(text)),
            None => Ok(StatementFile::NoStatement {
                code: wechat::NO_BILL_EXIST.to_owned(),
            }),
        }
    }

    /// The fault (if any) for the next call, drawn from the seeded dice.
    fn roll(&self) -> Option<FaultKind> {
        lock(&self.inner.dice).roll()
    }

    /// Records the call, then answers it as the fault (if any) and code
    /// `05` require.
    async fn answer(
        &self,
        channel: Channel,
        fault: Option<FaultKind>,
        handled: Handled,
    ) -> Response {
        let summary = handled.summary;
        let mut answer = summary.answer;
        if handled.hold {
            answer.push_str(" held");
        }
        let call = SandboxCall {
            at: self.inner.clock.now(),
            channel,
            api: summary.api,
            merchant_id: summary.merchant_id,
            out_trade_no: summary.out_trade_no,
            refund_no: summary.refund_no,
            answer,
            fault,
        };
        tracing::info!(
            %channel,
            api = ?call.api,
            merchant_id = %call.merchant_id,
            out_trade_no = call.out_trade_no.as_deref().unwrap_or(""),
            answer = %call.answer,
            fault = fault.map_or("", FaultKind::as_str),
            "sandbox call"
        );
        *lock(&self.inner.call_counts)
            .entry((channel, call.api))
            .or_default() += 1;
        {
            let mut calls = lock(&self.inner.calls);
            if self.inner.calls_kept > 0 {
                while calls.len() >= self.inner.calls_kept {
                    calls.pop_front();
                }
                calls.push_back(call);
            }
        }
        if handled.hold || fault == Some(FaultKind::Slow) {
            tokio::time::sleep(self.inner.slow_answer).await;
        }
        match fault {
            Some(FaultKind::Dropped) => (
                StatusCode::BAD_GATEWAY,
                [(header::CONTENT_TYPE, "text/html")],
                "<html><body><h1>502 Bad Gateway</h1></body></html>",
            )
                .into_response(),
            Some(FaultKind::Garbled) => (
                handled.status,
                [(header::CONTENT_TYPE, handled.content_type)],
                faults::garble(&handled.body),
            )
                .into_response(),
            _ => (
                handled.status,
                [(header::CONTENT_TYPE, handled.content_type)],
                handled.body,
            )
                .into_response(),
        }
    }

    /// The answer of a call refused with a 5xx before being processed.
    async fn refuse(&self, channel: Channel, summary: CallSummary) -> Response {
        let handled = Handled {
            status: StatusCode::SERVICE_UNAVAILABLE,
            content_type: "text/html",
            body: b"<html><body><h1>503 Service Unavailable</h1></body></html>".to_vec(),
            summary: CallSummary {
                answer: "HTTP 503".to_owned(),
                ..summary
            },
            hold: false,
        };
        self.answer(channel, Some(FaultKind::ServerError), handled)
            .await
    }
}

impl Inner {
    fn store(&self) -> MutexGuard<'_, TruthStore> {
        lock(&self.store)
    }

    /// A new order's channel number: WeChat `4200000` + day + sequence,
    /// Alipay day + `22001` + sequence; 28 digits either way.
    fn new_trade_no(
        store: &mut TruthStore,
        channel: Channel,
        now: DateTime<Utc>,
    ) -> rusqlite::Result<String> {
        let number = store.next_number("trade_no")?;
        let day = china_date(now).format("%Y%m%d");
        Ok(match channel {
            Channel::Wechat => format!("4200000{day}{number:013}"),
            Channel::Alipay => format!("{day}22001{number:015}"),
        })
    }

    /// A new refund's channel number (`refund_id`).
    fn new_refund_id(store: &mut TruthStore, now: DateTime<Utc>) -> rusqlite::Result<String> {
        let number = store.next_number("refund_id")?;
        let day = china_date(now).format("%Y%m%d");
        Ok(format!("50300{day}{number:015}"))
    }

    /// A new order from a valid pay request, in the state its code asks for.
    #[expect(
        clippy::too_many_arguments,
        reason = "one value per field of the request"
    )]
    fn new_order(
        store: &mut TruthStore,
        channel: Channel,
        merchant_id: &str,
        out_trade_no: &str,
        amount_fen: u64,
        subject: &str,
        code: &AuthCode,
        now: DateTime<Utc>,
    ) -> rusqlite::Result<SandboxOrder> {
        let behaviour = Behaviour::from_last_two_digits(code.last_two_digits());
        let state = match behaviour {
            b if b.waits_for_password() => SandboxOrderState::WaitingForPassword,
            Behaviour::InsufficientBalance => SandboxOrderState::Failed,
            _ => SandboxOrderState::Paid { paid_at: now },
        };
        let order = SandboxOrder {
            channel,
            merchant_id: merchant_id.to_owned(),
            out_trade_no: out_trade_no.to_owned(),
            trade_no: Inner::new_trade_no(store, channel, now)?,
            amount_fen,
            subject: subject.to_owned(),
            auth_code_masked: code.masked().as_str().to_owned(),
            code_suffix: code.last_two_digits().to_owned(),
            behaviour,
            created_at: now,
            state,
            refunds: Vec::new(),
        };
        store.save(&order)?;
        Ok(order)
    }

    /// Every order of a merchant, settled at `now`.
    fn settled_orders(
        &self,
        channel: Channel,
        merchant_id: &str,
        now: DateTime<Utc>,
    ) -> rusqlite::Result<Vec<SandboxOrder>> {
        let mut orders = self.store().orders_of(channel, merchant_id)?;
        for order in &mut orders {
            order.settle(now);
        }
        Ok(orders)
    }

    fn wechat_bill_text(
        &self,
        merchant: &SandboxWechat,
        date: NaiveDate,
        bill_type: WechatBillType,
    ) -> Result<Option<String>, SandboxError> {
        let now = self.clock.now();
        let orders = self.settled_orders(Channel::Wechat, &merchant.mch_id, now)?;
        Ok(statement::wechat_bill(
            statement::WechatBillMerchant {
                appid: &merchant.appid,
                mch_id: &merchant.mch_id,
            },
            self.wechat_bill_layout,
            bill_type,
            &orders,
            date,
            now,
            &self.statement_defects,
        ))
    }

    fn alipay_zip(&self, app_id: &str, date: NaiveDate) -> Result<Option<Vec<u8>>, SandboxError> {
        let now = self.clock.now();
        let orders = self.settled_orders(Channel::Alipay, app_id, now)?;
        statement::alipay_bill_zip(app_id, &orders, date, now, &self.statement_defects)
            .map_err(|e| SandboxError::Statement(e.to_string()))
    }
}

/// Locks a mutex; a poisoned one (a panic while held) still holds
/// consistent data here, since every change is written in one step.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

async fn wechat_route(State(sandbox): State<Sandbox>, uri: Uri, body: Bytes) -> Response {
    let api = wechat::api_of_path(uri.path());
    match sandbox.roll() {
        Some(FaultKind::ServerError) => {
            let summary = wechat::peek(api, &body);
            sandbox.refuse(Channel::Wechat, summary).await
        }
        fault => {
            let handled = wechat::handle(&sandbox.inner, api, &body);
            sandbox.answer(Channel::Wechat, fault, handled).await
        }
    }
}

async fn alipay_gateway_route(
    State(sandbox): State<Sandbox>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let params = alipay::request_params(uri.query(), &body);
    match sandbox.roll() {
        Some(FaultKind::ServerError) => {
            let summary = alipay::peek(&params);
            sandbox.refuse(Channel::Alipay, summary).await
        }
        fault => {
            let host = headers
                .get(header::HOST)
                .and_then(|value| value.to_str().ok());
            let handled = alipay::handle(&sandbox.inner, &params, host);
            sandbox.answer(Channel::Alipay, fault, handled).await
        }
    }
}

async fn alipay_download_route(State(sandbox): State<Sandbox>, uri: Uri) -> Response {
    let handled = alipay::download(&sandbox.inner, uri.query());
    sandbox.answer(Channel::Alipay, None, handled).await
}

/// A fresh RSA 2048 key pair as PEM strings (PKCS#8 private, SPKI public),
/// for when no `alipay_private_key_file` is configured: the sandbox signs
/// with the private half, merchants verify with the public half.
pub fn generate_rsa_key_pair_pem() -> (String, String) {
    let mut rng = rand::rngs::OsRng;
    // Only an RNG failure or an impossible key size can fail these; the
    // operating system's RNG does not fail on a working machine.
    let private_key =
        RsaPrivateKey::new(&mut rng, 2048).expect("RSA 2048 key generation from the OS RNG");
    let private_pem = private_key
        .to_pkcs8_pem(LineEnding::LF)
        .expect("a generated RSA key encodes as PKCS#8")
        .to_string();
    (private_pem, public_half_pem(&private_key))
}

/// The public half (SPKI PEM) of an RSA private key given as PEM (PKCS#8
/// or PKCS#1) or bare base64 DER, read as the Alipay client reads keys: for
/// the merchants that must verify answers signed with it. The error never
/// contains key material.
pub fn public_key_pem_of_private_pem(private_pem: &str) -> Result<String, KeyError> {
    let private_key = paycode_adapters::alipay::sign::private_key_from_pem(private_pem)?;
    Ok(public_half_pem(&private_key))
}

fn public_half_pem(private_key: &RsaPrivateKey) -> String {
    // Encoding a valid key's public half cannot fail.
    private_key
        .to_public_key()
        .to_public_key_pem(LineEnding::LF)
        .expect("an RSA key's public half encodes as SPKI")
}

#[cfg(test)]
mod tests {
    use chrono::{Duration as ChronoDuration, TimeZone};
    use serde_json::{Value, json};

    use super::*;
    use paycode_adapters::alipay::{envelope, sign as alipay_sign};
    use paycode_adapters::clock::ManualClock;
    use paycode_adapters::testing;
    use paycode_adapters::wechat::ApiKey;
    use paycode_adapters::wechat::sign as wechat_sign;
    use paycode_adapters::wechat::xml::{self, Params};

    const APPID: &str = "wx2421b1c4370ec43b";
    const MCH_ID: &str = "10000100";
    const APP_ID: &str = "2021000000000001";

    struct Fixture {
        sandbox: Sandbox,
        clock: ManualClock,
        key: ApiKey,
        app_private_key: RsaPrivateKey,
        alipay_public_key: RsaPublicKey,
    }

    /// 2026-11-22 10:00:00 China time.
    fn start() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 22, 2, 0, 0).unwrap()
    }

    fn fixture_at(state_path: Option<PathBuf>, key: &str) -> Fixture {
        let (app_private, app_public) = testing::rsa_key_pair_pem("app", 2048);
        let (alipay_private, alipay_public) = testing::rsa_key_pair_pem("alipay", 2048);
        let clock = ManualClock::starting_at(start());
        let mut config = SandboxConfig::new(
            vec![SandboxMerchant {
                wechat: Some(SandboxWechat {
                    appid: APPID.to_owned(),
                    mch_id: MCH_ID.to_owned(),
                    key: ApiKey::from(key),
                    sign_type: SignType::Md5,
                }),
                alipay: Some(SandboxAlipay {
                    app_id: APP_ID.to_owned(),
                    app_public_key_pem: app_public,
                }),
            }],
            alipay_private,
        );
        config.state_path = state_path;
        let sandbox = Sandbox::open(config, Arc::new(clock.clone())).unwrap();
        Fixture {
            sandbox,
            clock,
            key: ApiKey::from(key),
            app_private_key: alipay_sign::private_key_from_pem(&app_private).unwrap(),
            alipay_public_key: alipay_sign::public_key_from_pem(&alipay_public).unwrap(),
        }
    }

    fn fixture() -> Fixture {
        fixture_at(None, &testing::random_api_key())
    }

    impl Fixture {
        /// A signed WeChat call, answered: its fields (signature checked when signed).
        fn wechat(&self, api: Api, fields: &[(&str, &str)]) -> Params {
            let mut params: Params = fields
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect();
            params.insert("appid".to_owned(), APPID.to_owned());
            params.insert("mch_id".to_owned(), MCH_ID.to_owned());
            params.insert("nonce_str".to_owned(), wechat_sign::new_nonce());
            wechat_sign::sign_request(&mut params, &self.key, SignType::Md5);
            let handled = wechat::handle(
                &self.sandbox.inner,
                api.into(),
                xml::to_xml(&params).as_bytes(),
            );
            let answer = xml::parse(std::str::from_utf8(&handled.body).unwrap()).unwrap();
            if answer["return_code"] == "SUCCESS" {
                assert!(wechat_sign::verify(&answer, &self.key, SignType::Md5));
            }
            answer
        }

        fn wechat_pay(&self, order: &str, code: &str, fen: &str) -> Params {
            self.wechat(
                Api::Pay,
                &[
                    ("out_trade_no", order),
                    ("auth_code", code),
                    ("total_fee", fen),
                    ("body", "Coffee"),
                    ("spbill_create_ip", "127.0.0.1"),
                ],
            )
        }

        /// A signed Alipay call, answered: the verified node's fields.
        fn alipay(&self, method: &str, biz: Value) -> serde_json::Map<String, Value> {
            let mut params: Vec<(String, String)> = paycode_adapters::alipay::wire::request_params(
                APP_ID,
                method,
                "2026-11-22 10:00:00",
                None,
                biz.to_string(),
            )
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect();
            let sign = alipay_sign::sign_params(
                &self.app_private_key,
                params.iter().map(|(k, v)| (k.as_str(), v.as_str())),
            )
            .unwrap();
            params.push(("sign".to_owned(), sign));
            let handled = alipay::handle(&self.sandbox.inner, &params, Some("127.0.0.1:9"));
            let body = String::from_utf8(handled.body).unwrap();
            let envelope = envelope::extract(&body, method).unwrap();
            alipay_sign::verify_response(&self.alipay_public_key, &envelope).unwrap();
            serde_json::from_str(envelope.node_raw).unwrap()
        }

        fn alipay_pay(
            &self,
            order: &str,
            code: &str,
            amount: &str,
            subject: &str,
        ) -> serde_json::Map<String, Value> {
            self.alipay(
                paycode_adapters::alipay::wire::METHOD_PAY,
                json!({"out_trade_no": order, "scene": "bar_code", "auth_code": code,
                       "subject": subject, "total_amount": amount}),
            )
        }

        fn advance(&self, secs: i64) {
            self.clock.advance(ChronoDuration::seconds(secs));
        }
    }

    fn wechat_code(suffix: &str) -> String {
        format!("1345678901234567{suffix}")
    }

    fn alipay_code(suffix: &str) -> String {
        format!("28456789012345{suffix}")
    }

    #[test]
    fn a_reused_wechat_order_number_is_answered_with_the_orders_state() {
        let f = fixture();
        let paid = f.wechat_pay("W1", &wechat_code("00"), "100");
        assert_eq!(paid["result_code"], "SUCCESS");
        assert_eq!(
            f.wechat_pay("W1", &wechat_code("00"), "100")["err_code"],
            "ORDERPAID"
        );
        assert_eq!(
            f.wechat_pay("W1", &wechat_code("00"), "200")["err_code"],
            "OUT_TRADE_NO_USED"
        );
        assert_eq!(
            f.wechat_pay("W2", &wechat_code("02"), "100")["err_code"],
            "USERPAYING"
        );
        assert_eq!(
            f.wechat_pay("W2", &wechat_code("02"), "100")["err_code"],
            "USERPAYING"
        );
        f.advance(20);
        let revoked = f.wechat(Api::Revoke, &[("out_trade_no", "W2")]);
        assert_eq!(
            (revoked["result_code"].as_str(), revoked["recall"].as_str()),
            ("SUCCESS", "N")
        );
        assert_eq!(
            f.wechat_pay("W2", &wechat_code("02"), "100")["err_code"],
            "ORDERREVERSED"
        );
        let order = f.sandbox.order(Channel::Wechat, MCH_ID, "W1").unwrap();
        assert_eq!(order.trade_no, paid["transaction_id"]);
        assert_eq!(order.amount_fen, 100, "the first request's amount stands");
    }

    #[test]
    fn a_reused_alipay_order_number_is_answered_as_alipay_does() {
        let f = fixture();
        let paid = f.alipay_pay("A1", &alipay_code("00"), "1.00", "Coffee");
        assert_eq!(paid["code"], "10000");
        let again = f.alipay_pay("A1", &alipay_code("00"), "1.00", "Coffee");
        assert_eq!(again["sub_code"], "ACQ.TRADE_HAS_SUCCESS");
        let changed = f.alipay_pay("A1", &alipay_code("00"), "2.00", "Coffee");
        assert_eq!(changed["sub_code"], "ACQ.CONTEXT_INCONSISTENT");
        assert_eq!(
            f.alipay_pay("A2", &alipay_code("02"), "1.00", "Tea")["code"],
            "10003"
        );
        assert_eq!(
            f.alipay_pay("A2", &alipay_code("02"), "1.00", "Tea")["code"],
            "10003"
        );
        let cancelled = f.alipay(
            paycode_adapters::alipay::wire::METHOD_CANCEL,
            json!({"out_trade_no": "A2"}),
        );
        assert_eq!(
            (cancelled["code"].as_str(), cancelled["action"].as_str()),
            (Some("10000"), Some("close"))
        );
        let closed = f.alipay_pay("A2", &alipay_code("02"), "1.00", "Tea");
        assert_eq!(closed["sub_code"], "ACQ.TRADE_HAS_CLOSE");
        let query = f.alipay(
            paycode_adapters::alipay::wire::METHOD_QUERY,
            json!({"out_trade_no": "A2"}),
        );
        assert_eq!(query["trade_status"], "TRADE_CLOSED");
    }

    #[test]
    fn alipay_cancels_only_on_the_china_day_of_the_order() {
        let f = fixture();
        f.alipay_pay("A1", &alipay_code("00"), "1.00", "Coffee");
        // 10:00 China time + 14 h = 00:00 the next day.
        f.advance(14 * 3600);
        let late = f.alipay(
            paycode_adapters::alipay::wire::METHOD_CANCEL,
            json!({"out_trade_no": "A1"}),
        );
        assert_eq!(late["sub_code"], "ACQ.TRADE_CANCEL_TIME_OUT");
        assert_eq!(late["retry_flag"], "N");
        let refund = f.alipay(
            paycode_adapters::alipay::wire::METHOD_REFUND,
            json!({"out_trade_no": "A1", "refund_amount": "1.00", "out_request_no": "R1"}),
        );
        assert_eq!(
            (refund["code"].as_str(), refund["refund_fee"].as_str()),
            (Some("10000"), Some("1.00"))
        );
        let query = f.alipay(
            paycode_adapters::alipay::wire::METHOD_QUERY,
            json!({"out_trade_no": "A1"}),
        );
        assert_eq!(query["trade_status"], "TRADE_CLOSED", "fully refunded");
    }

    #[test]
    fn a_bad_wechat_signature_is_refused_unsigned_and_changes_nothing() {
        let f = fixture();
        let mut params: Params = [
            ("appid", APPID),
            ("mch_id", MCH_ID),
            ("nonce_str", "n"),
            ("out_trade_no", "W1"),
            ("auth_code", "134567890123456700"),
            ("total_fee", "100"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        wechat_sign::sign_request(&mut params, &ApiKey::from("0".repeat(32)), SignType::Md5);
        let handled = wechat::handle(
            &f.sandbox.inner,
            SandboxApi::Channel(Api::Pay),
            xml::to_xml(&params).as_bytes(),
        );
        assert_eq!(
            std::str::from_utf8(&handled.body).unwrap(),
            "<xml><return_code><![CDATA[FAIL]]></return_code><return_msg><![CDATA[签名失败]]></return_msg></xml>"
        );
        assert_eq!(f.sandbox.order(Channel::Wechat, MCH_ID, "W1"), None);
    }

    #[test]
    fn the_truth_survives_a_restart_and_the_full_code_is_never_stored() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sandbox.db");
        let key = testing::random_api_key();
        let (wechat_code, alipay_code) = (wechat_code("00"), alipay_code("00"));
        let wechat_trade_no;
        {
            let f = fixture_at(Some(path.clone()), &key);
            wechat_trade_no = f.wechat_pay("W1", &wechat_code, "100")["transaction_id"].clone();
            assert_eq!(
                f.alipay_pay("A1", &alipay_code, "1.00", "Coffee")["code"],
                "10000"
            );
        }
        let f = fixture_at(Some(path.clone()), &key);
        f.advance(60);
        let query = f.wechat(Api::Query, &[("out_trade_no", "W1")]);
        assert_eq!(
            (
                query["trade_state"].as_str(),
                query["transaction_id"].as_str()
            ),
            ("SUCCESS", wechat_trade_no.as_str())
        );
        assert_eq!(
            f.wechat(Api::Revoke, &[("out_trade_no", "W1")])["result_code"],
            "SUCCESS"
        );
        let refund = f.alipay(
            paycode_adapters::alipay::wire::METHOD_REFUND,
            json!({"out_trade_no": "A1", "refund_amount": "0.40", "out_request_no": "R1"}),
        );
        assert_eq!(refund["code"], "10000");
        let a_new_order = f.wechat_pay("W2", &wechat_code, "100");
        assert_ne!(
            a_new_order["transaction_id"], wechat_trade_no,
            "numbers are not reused"
        );
        let day = china_date(start());
        let StatementFile::WechatText(bill) =
            f.sandbox.statement(Channel::Wechat, MCH_ID, day).unwrap()
        else {
            panic!("a bill");
        };
        assert!(
            bill.contains(",`W1,") && bill.contains(",`REVOKED,"),
            "{bill}"
        );
        assert!(matches!(
            f.sandbox.statement(Channel::Alipay, APP_ID, day).unwrap(),
            StatementFile::AlipayZip(_)
        ));
        let masked = f
            .sandbox
            .order(Channel::Alipay, APP_ID, "A1")
            .unwrap()
            .auth_code_masked;
        assert_eq!(masked, "28************00");
        drop(f);
        let mut stored = Vec::new();
        for entry in std::fs::read_dir(dir.path()).unwrap() {
            stored.extend(std::fs::read(entry.unwrap().path()).unwrap());
        }
        let stored = String::from_utf8_lossy(&stored);
        assert!(stored.contains("W1"), "the state is on disk");
        assert!(!stored.contains(wechat_code.as_str()) && !stored.contains(alipay_code.as_str()));
    }

    #[test]
    fn a_day_with_a_paid_then_revoked_order_has_its_payment_and_revoke_lines_in_both_formats() {
        let f = fixture();
        f.wechat_pay("W1", &wechat_code("00"), "1234");
        f.alipay_pay("A1", &alipay_code("00"), "12.34", "Coffee");
        f.advance(20);
        f.wechat(Api::Revoke, &[("out_trade_no", "W1")]);
        let cancel = f.alipay(
            paycode_adapters::alipay::wire::METHOD_CANCEL,
            json!({"out_trade_no": "A1"}),
        );
        assert_eq!(cancel["action"], "refund");
        let day = china_date(start());
        let StatementFile::WechatText(bill) =
            f.sandbox.statement(Channel::Wechat, MCH_ID, day).unwrap()
        else {
            panic!("a bill");
        };
        let rows: Vec<&str> = bill.lines().filter(|l| l.contains(",`W1,")).collect();
        assert_eq!(rows.len(), 2, "{bill}");
        assert!(rows[0].contains(",`SUCCESS,") && rows[0].contains(",`12.34,"));
        assert!(rows[1].contains(",`REVOKED,") && rows[1].contains(",`12.34,"));
        let StatementFile::AlipayZip(zip) =
            f.sandbox.statement(Channel::Alipay, APP_ID, day).unwrap()
        else {
            panic!("a zip");
        };
        let mut archive = zip::ZipArchive::new(std::io::Cursor::new(zip)).unwrap();
        let mut raw = Vec::new();
        std::io::Read::read_to_end(&mut archive.by_index(0).unwrap(), &mut raw).unwrap();
        let (detail, _, _) = encoding_rs::GBK.decode(&raw);
        let trade_no = f
            .sandbox
            .order(Channel::Alipay, APP_ID, "A1")
            .unwrap()
            .trade_no;
        let rows: Vec<&str> = detail.lines().filter(|l| l.contains("A1\t")).collect();
        assert_eq!(rows.len(), 2, "{detail}");
        assert!(rows[0].contains("交易\t") && rows[0].contains(",12.34,12.34,"));
        assert!(rows[1].contains("退款\t") && rows[1].contains(",-12.34,-12.34,"));
        assert!(
            rows[1].contains(&format!(",{trade_no}\t,")),
            "the batch number is the trade number: {}",
            rows[1]
        );
        let empty = f
            .sandbox
            .statement(Channel::Wechat, MCH_ID, day.pred_opt().unwrap())
            .unwrap();
        assert_eq!(
            empty,
            StatementFile::NoStatement {
                code: "No Bill Exist".to_owned()
            }
        );
    }
}

#[cfg(test)]
mod api_tests {
    use super::*;

    #[test]
    fn an_api_prints_as_its_name_alone() {
        let printed = |api: SandboxApi| format!("{api:?}");
        assert_eq!(printed(Api::Pay.into()), "Pay");
        assert_eq!(
            printed(SandboxApi::Channel(Api::RefundQuery)),
            "RefundQuery"
        );
        assert_eq!(printed(SandboxApi::StatementDownload), "StatementDownload");
        assert_eq!(printed(SandboxApi::Other), "Other");
    }
}

#[cfg(test)]
mod key_tests {
    use super::*;

    #[test]
    fn a_generated_key_pair_is_a_usable_2048_bit_pair() {
        let (private_pem, public_pem) = generate_rsa_key_pair_pem();
        assert!(private_pem.starts_with("-----BEGIN PRIVATE KEY-----"));
        assert!(public_pem.starts_with("-----BEGIN PUBLIC KEY-----"));
        let private = paycode_adapters::alipay::sign::private_key_from_pem(&private_pem).unwrap();
        let public = paycode_adapters::alipay::sign::public_key_from_pem(&public_pem).unwrap();
        let signature = paycode_adapters::alipay::sign::rsa2_sign(&private, "content").unwrap();
        assert!(
            paycode_adapters::alipay::sign::rsa2_verify(&public, "content", &signature).is_ok()
        );
    }

    #[test]
    fn the_public_half_of_a_private_pem_is_the_generated_public_pem() {
        let (private_pem, public_pem) = generate_rsa_key_pair_pem();
        assert_eq!(public_key_pem_of_private_pem(&private_pem), Ok(public_pem));
        assert_eq!(
            public_key_pem_of_private_pem("not a key"),
            Err(KeyError::UnreadablePrivateKey)
        );
    }
}
