//! Shared harness of the cross-crate suites: [`TestApp`] starts the real
//! service on 127.0.0.1 port 0 with a manual clock, and [`ScriptedChannel`]
//! plays a channel whose behaviour is chosen by the payment code's last two
//! digits (a small stand-in until a suite runs against the sandbox).

pub mod sim;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, TimeZone, Utc};
use paycode::config::embedded::{InProcessSandbox, SandboxOptions};
use paycode::http::ApiKey;
use paycode::service::runtime::Channels;
use paycode::service::{Parts, Service};
use paycode_adapters::channel::rate_limit::Api;
use paycode_adapters::channel::{
    ChannelClient, PayRequest, QueryRequest, RefundQueryRequest, RefundRequest, StatementError,
    StatementFile,
};
use paycode_adapters::clock::{Clock, ManualClock};
use paycode_adapters::lease::{LocalLeases, StepLease};
use paycode_adapters::store::{EventStore, MemoryStore};
use paycode_domain::payment::{
    ChannelAnswer, PayOutcome, QueryOutcome, RefundOutcome, RevokeOutcome, RevokeResult,
};
use paycode_domain::{Channel, MerchantId, OrderNo, Policy};
use paycode_sandbox::SandboxApi;
use serde_json::Value;

/// What the scripted channel knows of one order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Truth {
    Waiting,
    Paid,
    Failed,
    Closed,
    Refunded,
}

/// A channel that answers from a script chosen by the code's last two digits:
/// `00` paid, `02` waits forever, `03` fails (NOTENOUGH), `07` revokes always
/// ask to retry, `11` waits forever and its revoke succeeds without saying
/// whether money moved (as WeChat's reverse does). A refund number starting `NF` is never found (every refund
/// call and query answers "not found"). Every call is recorded as
/// `(api, order_no)`.
#[derive(Debug)]
pub struct ScriptedChannel {
    channel: Channel,
    orders: Mutex<HashMap<String, (String, Truth)>>,
    refunds: Mutex<HashMap<String, RefundOutcome>>,
    pub calls: Mutex<Vec<(&'static str, String)>>,
    clock: Arc<dyn Clock>,
}

impl ScriptedChannel {
    pub fn new(channel: Channel, clock: Arc<dyn Clock>) -> Self {
        ScriptedChannel {
            channel,
            orders: Mutex::default(),
            refunds: Mutex::default(),
            calls: Mutex::default(),
            clock,
        }
    }

    fn record(&self, api: &'static str, order_no: &OrderNo) {
        self.calls.lock().unwrap().push((api, order_no.to_string()));
    }

    /// How many calls of `api` were made for `order_no`.
    pub fn count(&self, api: &str, order_no: &str) -> usize {
        self.calls
            .lock()
            .unwrap()
            .iter()
            .filter(|(a, o)| *a == api && o == order_no)
            .count()
    }

    pub fn truth(&self, order_no: &str) -> Option<Truth> {
        self.orders
            .lock()
            .unwrap()
            .get(order_no)
            .map(|(_, truth)| truth.clone())
    }
}

#[async_trait]
impl ChannelClient for ScriptedChannel {
    fn channel(&self) -> Channel {
        self.channel
    }

    async fn pay(&self, request: PayRequest<'_>) -> ChannelAnswer<PayOutcome> {
        self.record("pay", request.order_no);
        let script = request.auth_code.last_two_digits().to_owned();
        let (truth, outcome) = match script.as_str() {
            "02" | "07" | "11" => (Truth::Waiting, PayOutcome::WaitingForPassword),
            "03" => (
                Truth::Failed,
                PayOutcome::Failed {
                    code: "NOTENOUGH".into(),
                },
            ),
            _ => (
                Truth::Paid,
                PayOutcome::Paid {
                    channel_trade_no: format!("T-{}", request.order_no),
                    paid_at: Some(self.clock.now()),
                },
            ),
        };
        self.orders
            .lock()
            .unwrap()
            .insert(request.order_no.to_string(), (script, truth));
        ChannelAnswer::new(outcome)
    }

    async fn query(&self, request: QueryRequest<'_>) -> ChannelAnswer<QueryOutcome> {
        let order_no = request.order_no;
        self.record("query", order_no);
        let outcome = match self.orders.lock().unwrap().get(order_no.as_str()) {
            None => QueryOutcome::NotFound,
            Some((_, Truth::Waiting)) => QueryOutcome::WaitingForPassword,
            Some((_, Truth::Paid)) => QueryOutcome::Paid {
                channel_trade_no: format!("T-{order_no}"),
                paid_at: Some(self.clock.now()),
            },
            Some((_, Truth::Failed)) => QueryOutcome::Failed {
                code: "PAYERROR".into(),
            },
            Some((_, Truth::Closed)) => QueryOutcome::Closed,
            Some((_, Truth::Refunded)) => QueryOutcome::RefundedElsewhere,
        };
        ChannelAnswer::new(outcome)
    }

    async fn revoke(&self, order_no: &OrderNo) -> ChannelAnswer<RevokeOutcome> {
        self.record("revoke", order_no);
        let mut orders = self.orders.lock().unwrap();
        let outcome = match orders.get_mut(order_no.as_str()) {
            Some((script, _)) if script == "07" => RevokeOutcome::MustRetry {
                reason: "recall=Y".into(),
            },
            Some((script, truth)) if script == "11" && *truth == Truth::Waiting => {
                *truth = Truth::Closed;
                RevokeOutcome::Done {
                    result: RevokeResult::Unspecified,
                }
            }
            Some((_, truth)) if *truth == Truth::Paid || *truth == Truth::Refunded => {
                *truth = Truth::Refunded;
                RevokeOutcome::Done {
                    result: RevokeResult::Refunded,
                }
            }
            Some((_, truth)) => {
                *truth = Truth::Closed;
                RevokeOutcome::Done {
                    result: RevokeResult::Closed,
                }
            }
            None => RevokeOutcome::Done {
                result: RevokeResult::Closed,
            },
        };
        ChannelAnswer::new(outcome)
    }

    async fn refund(&self, request: RefundRequest<'_>) -> ChannelAnswer<RefundOutcome> {
        self.record("refund", request.order_no);
        if request.refund_no.as_str().starts_with("NF") {
            return ChannelAnswer::new(RefundOutcome::NotFound);
        }
        let succeeded = RefundOutcome::Succeeded {
            channel_refund_no: Some(format!("RF-{}", request.refund_no)),
            refunded_at: self.clock.now(),
        };
        self.refunds
            .lock()
            .unwrap()
            .insert(request.refund_no.to_string(), succeeded);
        ChannelAnswer::new(RefundOutcome::Accepted {
            channel_refund_no: Some(format!("RF-{}", request.refund_no)),
        })
    }

    async fn refund_query(&self, request: RefundQueryRequest<'_>) -> ChannelAnswer<RefundOutcome> {
        let (order_no, refund_no) = (request.order_no, request.refund_no);
        self.record("refund_query", order_no);
        let outcome = self
            .refunds
            .lock()
            .unwrap()
            .get(refund_no.as_str())
            .cloned()
            .unwrap_or(RefundOutcome::NotFound);
        ChannelAnswer::new(outcome)
    }

    async fn download_statement(&self, _date: NaiveDate) -> Result<StatementFile, StatementError> {
        Ok(StatementFile::NoStatement {
            code: "NO_STATEMENT".into(),
        })
    }
}

/// The real service on 127.0.0.1 port 0, with a manual clock and scripted channels.
#[derive(Debug)]
pub struct TestApp {
    pub base_url: String,
    pub clock: ManualClock,
    pub wechat: Arc<ScriptedChannel>,
    pub alipay: Arc<ScriptedChannel>,
    pub store: Arc<dyn EventStore>,
    pub http: reqwest::Client,
    server: tokio::task::JoinHandle<()>,
}

pub const DEMO_KEY: &str = "sk_test_demo";
pub const OTHER_KEY: &str = "sk_test_other";

pub fn start_time() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 22, 2, 0, 0).unwrap()
}

impl TestApp {
    pub async fn spawn() -> TestApp {
        TestApp::spawn_on(Arc::new(MemoryStore::new())).await
    }

    pub async fn spawn_on(store: Arc<dyn EventStore>) -> TestApp {
        let clock = ManualClock::starting_at(start_time());
        let shared_clock: Arc<dyn Clock> = Arc::new(clock.clone());
        let wechat = Arc::new(ScriptedChannel::new(Channel::Wechat, shared_clock.clone()));
        let alipay = Arc::new(ScriptedChannel::new(Channel::Alipay, shared_clock.clone()));
        TestApp::spawn_with(store, Arc::new(LocalLeases), clock, wechat, alipay).await
    }

    /// A service in memory whose merchants also have `keys` (keys with
    /// roles, beside the two keys with every right).
    pub async fn spawn_with_keys(keys: Vec<ApiKey>) -> TestApp {
        let clock = ManualClock::starting_at(start_time());
        let shared_clock: Arc<dyn Clock> = Arc::new(clock.clone());
        let wechat = Arc::new(ScriptedChannel::new(Channel::Wechat, shared_clock.clone()));
        let alipay = Arc::new(ScriptedChannel::new(Channel::Alipay, shared_clock));
        let store = Arc::new(MemoryStore::new());
        TestApp::spawn_configured(
            store,
            Arc::new(LocalLeases),
            clock,
            wechat,
            alipay,
            true,
            keys,
        )
        .await
    }

    /// A service on `store` sharing the clock and channels given: several of
    /// these on one SQLite file play several processes of one deployment.
    pub async fn spawn_with(
        store: Arc<dyn EventStore>,
        leases: Arc<dyn StepLease>,
        clock: ManualClock,
        wechat: Arc<ScriptedChannel>,
        alipay: Arc<ScriptedChannel>,
    ) -> TestApp {
        TestApp::spawn_configured(store, leases, clock, wechat, alipay, true, Vec::new()).await
    }

    /// A service whose second merchant (`other`) has WeChat only.
    pub async fn spawn_other_without_alipay() -> TestApp {
        let clock = ManualClock::starting_at(start_time());
        let shared_clock: Arc<dyn Clock> = Arc::new(clock.clone());
        let wechat = Arc::new(ScriptedChannel::new(Channel::Wechat, shared_clock.clone()));
        let alipay = Arc::new(ScriptedChannel::new(Channel::Alipay, shared_clock));
        let store = Arc::new(MemoryStore::new());
        let leases = Arc::new(LocalLeases);
        TestApp::spawn_configured(store, leases, clock, wechat, alipay, false, Vec::new()).await
    }

    /// The service: merchants `demo` (both channels) and `other` (WeChat,
    /// and Alipay when `other_has_alipay`), each with its key of every
    /// right, and `keys` besides.
    async fn spawn_configured(
        store: Arc<dyn EventStore>,
        leases: Arc<dyn StepLease>,
        clock: ManualClock,
        wechat: Arc<ScriptedChannel>,
        alipay: Arc<ScriptedChannel>,
        other_has_alipay: bool,
        keys: Vec<ApiKey>,
    ) -> TestApp {
        let shared_clock: Arc<dyn Clock> = Arc::new(clock.clone());
        let demo = MerchantId::parse("demo").unwrap();
        let other = MerchantId::parse("other").unwrap();
        let mut channels = Channels::default();
        for merchant in [&demo, &other] {
            channels.insert(merchant.clone(), wechat.clone());
            if merchant == &demo || other_has_alipay {
                channels.insert(merchant.clone(), alipay.clone());
            }
        }
        let parts = Parts {
            store: store.clone(),
            channels,
            clock: shared_clock,
            policy: Policy::default(),
            api_keys: [
                ApiKey::full(DEMO_KEY, demo, "api_keys[0]"),
                ApiKey::full(OTHER_KEY, other, "api_keys[0]"),
            ]
            .into_iter()
            .chain(keys)
            .collect(),
            limits: paycode::http::limits::ServerLimits::unthrottled(),
            fingerprint_key: paycode::service::fingerprint::FingerprintKey::random(),
            leases,
            ids: Arc::new(paycode_adapters::ids::RandomIds),
        };
        let service = Service::start(parts).await.expect("service starts");
        let router = service.router();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base_url = format!("http://{}", listener.local_addr().unwrap());
        let server = tokio::spawn(async move {
            axum::serve(
                listener,
                router.into_make_service_with_connect_info::<std::net::SocketAddr>(),
            )
            .await
            .unwrap();
            drop(service);
        });
        TestApp {
            base_url,
            clock,
            wechat,
            alipay,
            store,
            http: reqwest::Client::new(),
            server,
        }
    }

    /// Sends a request with the demo merchant's key; returns status and JSON body.
    pub async fn call(&self, method: &str, path: &str, body: Option<&str>) -> (u16, Value) {
        self.call_as(Some(DEMO_KEY), method, path, body).await
    }

    pub async fn call_as(
        &self,
        key: Option<&str>,
        method: &str,
        path: &str,
        body: Option<&str>,
    ) -> (u16, Value) {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut request = self
            .http
            .request(method, format!("{}{}", self.base_url, path));
        if let Some(key) = key {
            request = request.header("authorization", format!("Bearer {key}"));
        }
        if let Some(body) = body {
            request = request
                .header("content-type", "application/json")
                .body(body.to_owned());
        }
        let response = request.send().await.expect("the server answers");
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    /// Polls the order until `status`, moving the clock forward by `step_secs` each time.
    pub async fn settle(&self, order_no: &str, status: &str, step_secs: i64) -> Value {
        for _ in 0..400 {
            let (code, body) = self
                .call("GET", &format!("/v1/payments/{order_no}"), None)
                .await;
            if code == 200 && body["status"] == status {
                return body;
            }
            self.clock.advance(chrono::Duration::seconds(step_secs));
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        let (_, events) = self
            .call("GET", &format!("/v1/payments/{order_no}/events"), None)
            .await;
        let (_, payment) = self
            .call("GET", &format!("/v1/payments/{order_no}"), None)
            .await;
        panic!("{order_no} never reached {status}: {payment}\n{events}");
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// The real service wired to the real sandbox (both channels, real HTTP,
/// real signatures) through the real channel clients, on a manual clock.
pub struct SandboxApp {
    pub app: TestApp,
    pub sandbox: paycode_sandbox::Sandbox,
    /// Keeps the sandbox's server running as long as the app.
    _in_process: InProcessSandbox,
}

impl std::fmt::Debug for SandboxApp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SandboxApp")
            .field("app", &self.app)
            .finish_non_exhaustive()
    }
}

impl SandboxApp {
    /// Client timeout 300 ms, code `05` held 1 s, truth in memory.
    pub async fn spawn() -> SandboxApp {
        SandboxApp::spawn_with_faults(paycode_sandbox::Faults::default()).await
    }

    /// As [`SandboxApp::spawn`], with the sandbox misbehaving as `faults` says.
    pub async fn spawn_with_faults(faults: paycode_sandbox::Faults) -> SandboxApp {
        let clock = ManualClock::starting_at(start_time());
        let shared: Arc<dyn Clock> = Arc::new(clock.clone());
        let options = SandboxOptions {
            state_path: None,
            client_timeout: std::time::Duration::from_millis(300),
            slow_answer: std::time::Duration::from_secs(1),
            faults,
            ..SandboxOptions::default()
        };
        let in_process = InProcessSandbox::for_demo(options, shared.clone())
            .await
            .expect("the sandbox starts");
        let store: Arc<dyn EventStore> = Arc::new(MemoryStore::new());
        let parts = Parts {
            store: store.clone(),
            channels: in_process.channels.clone(),
            clock: shared.clone(),
            policy: Policy::default(),
            api_keys: vec![ApiKey::full(
                DEMO_KEY,
                MerchantId::parse("demo").unwrap(),
                "api_keys[0]",
            )],
            limits: paycode::http::limits::ServerLimits::unthrottled(),
            fingerprint_key: paycode::service::fingerprint::FingerprintKey::random(),
            leases: Arc::new(LocalLeases),
            ids: Arc::new(paycode_adapters::ids::RandomIds),
        };
        let service = Service::start(parts).await.expect("service starts");
        let router = service.router();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base_url = format!("http://{}", listener.local_addr().unwrap());
        let serving = tokio::spawn(async move {
            axum::serve(
                listener,
                router.into_make_service_with_connect_info::<std::net::SocketAddr>(),
            )
            .await
            .unwrap();
            drop(service);
        });
        let unused = Arc::new(ScriptedChannel::new(Channel::Wechat, shared.clone()));
        let app = TestApp {
            base_url,
            clock,
            wechat: unused.clone(),
            alipay: unused,
            store,
            http: reqwest::Client::new(),
            server: serving,
        };
        SandboxApp {
            app,
            sandbox: in_process.sandbox.clone(),
            _in_process: in_process,
        }
    }

    /// How many calls of `api` the sandbox received for `order_no`.
    pub fn calls(&self, api: Api, order_no: &str) -> usize {
        self.sandbox
            .calls()
            .iter()
            .filter(|call| {
                call.api == SandboxApi::Channel(api)
                    && call.out_trade_no.as_deref() == Some(order_no)
            })
            .count()
    }

    /// How many calls of `api` the sandbox received naming refund `refund_no`.
    pub fn refund_calls(&self, api: Api, refund_no: &str) -> usize {
        self.sandbox
            .calls()
            .iter()
            .filter(|call| {
                call.api == SandboxApi::Channel(api) && call.refund_no.as_deref() == Some(refund_no)
            })
            .count()
    }
}
