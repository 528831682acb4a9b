//! The simulated world of one seed: its parts, its schedule of merchant
//! commands and faults, and the two phases of a run.

use std::fmt::Write as _;
use std::sync::{Arc, Mutex};
use std::time::Duration as StdDuration;

use chrono::{DateTime, Duration, NaiveDate, TimeZone, Utc};
use paycode::service::fingerprint::FingerprintKey;
use paycode::service::ledger::{Ledger, OrderHistory, PaymentLedgerError};
use paycode::service::metrics::Metrics;
use paycode::service::reconcile;
use paycode::service::runtime::{Channels, Runtime};
use paycode_adapters::alipay::{AlipayClient, AlipayConfig};
use paycode_adapters::channel::rate_limit::RateLimits;
use paycode_adapters::clock::Clock;
use paycode_adapters::ids::IdSource;
use paycode_adapters::lease::MemoryLeases;
use paycode_adapters::store::{EventStore, MemoryStore};
use paycode_adapters::testing::{AppendFault, FaultyStore, rsa_key_pair_pem};
use paycode_adapters::wechat::{ApiKey as WechatKey, SignType, WechatClient, WechatConfig};
use paycode_domain::ids::payment_stream;
use paycode_domain::payment::{
    Command, CommandKind, Event, PaymentDecider, RequestRefund, RevokeReason, SubmitPayment,
};
use paycode_domain::{AuthCode, Channel, MerchantId, Money, OrderNo, Policy, RefundNo};
use paycode_sandbox::{Sandbox, SandboxAlipay, SandboxConfig, SandboxMerchant, SandboxWechat};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sha2::{Digest, Sha256};
use tokio::task::JoinHandle;

use super::check::{self, Violation};
use super::clock::TokioClock;
use super::ids::SeededIds;
use super::transport::{NetworkFaults, SimTransport};

const MERCHANT: &str = "demo";
const WECHAT_APPID: &str = "wx0000000000000000";
const WECHAT_MCH_ID: &str = "1900000000";
const WECHAT_KEY: &str = "simulatedsimulatedsimulatedsim32";
const ALIPAY_APP_ID: &str = "2021000000000000";
/// How long the safety phase lasts, in simulated seconds.
const SAFETY_SECS: i64 = 240;
/// The liveness phase's limit: beyond the longest refund wait (three days).
const LIVENESS_SECS_MAX: i64 = 6 * 24 * 3600;
/// How often the rules are checked while time runs, in simulated seconds.
const CHECK_EVERY_SECS: u64 = 5;

/// What a run may vary beyond the seed.
#[derive(Debug, Clone, Copy)]
pub struct SimOptions {
    pub seed: u64,
    /// Keep a readable trace of the run (printed when it fails).
    pub trace: bool,
}

/// What a run found.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub seed: u64,
    /// SHA-256 of every stored event (stream, version, type, payload) in order.
    pub log_hash: String,
    pub violations: Vec<Violation>,
    /// One line per thing that happened, when asked for.
    pub trace: Vec<String>,
    pub orders: usize,
    pub events: usize,
    pub instances: usize,
}

/// Runs one seed on a fresh single-threaded tokio runtime with a paused clock.
pub fn run(options: SimOptions) -> Outcome {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .unwrap_or_else(|error| panic!("a current-thread runtime: {error}"));
    runtime.block_on(World::new(options).run())
}

/// One order as the merchant knows it.
#[derive(Debug, Clone)]
struct SimOrder {
    order_no: OrderNo,
    channel: Channel,
    code: String,
    amount: Money,
    /// The channel already holds a paid trade of another amount under this
    /// order number (an earlier system used it): never this order's payment.
    reused: bool,
}

/// A runtime instance, or the gap a crash left.
struct Instance {
    runtime: Runtime,
    timer_loop: JoinHandle<()>,
}

/// Something the merchant or the world does at a moment.
#[derive(Debug, Clone)]
enum Action {
    Submit {
        order: usize,
    },
    SubmitAgain {
        order: usize,
    },
    Revoke {
        order: usize,
    },
    Refund {
        order: usize,
        refund: u32,
        amount_fen: u64,
    },
    RefundAgain {
        order: usize,
        refund: u32,
        amount_fen: u64,
    },
    Crash {
        instance: usize,
    },
    Restart {
        instance: usize,
    },
    AppendFault(AppendFault),
    StoreDown,
    StoreUp,
}

struct World {
    options: SimOptions,
    rng: StdRng,
    start: DateTime<Utc>,
    clock: Arc<TokioClock>,
    memory: Arc<MemoryStore>,
    store: Arc<FaultyStore<MemoryStore>>,
    leases: Arc<MemoryLeases>,
    sandbox: Sandbox,
    transport: Arc<SimTransport>,
    channels: Channels,
    policy: Policy,
    merchant: MerchantId,
    instances: Vec<Option<Instance>>,
    orders: Vec<SimOrder>,
    /// Events the service answered with: they must stay in the log.
    acknowledged: Arc<Mutex<Vec<(String, u64, Event)>>>,
    /// Shared by every instance, so a crash loses no count.
    metrics: Metrics,
    /// The moments (simulated seconds) a crash or store fault struck.
    disturbances: Vec<i64>,
    trace: Arc<Mutex<Vec<String>>>,
    merchant_ids: Arc<SeededIds>,
}

impl World {
    fn new(options: SimOptions) -> World {
        // First, before any work: the clock's start sits on tokio's timer grid.
        // 02:00 UTC is 10:00 in China: the Alipay day has room on both sides.
        let start = Utc
            .with_ymd_and_hms(2026, 11, 22, 2, 0, 0)
            .single()
            .unwrap_or_else(|| unreachable!("a valid time"));
        let clock = Arc::new(TokioClock::starting_at(start));
        let seed = options.seed;
        let mut rng = StdRng::seed_from_u64(seed);
        let memory = Arc::new(MemoryStore::new());
        let store = Arc::new(FaultyStore::new(memory.clone()));
        let (app_private, app_public) = rsa_key_pair_pem("sim-app", 2048);
        let (alipay_private, alipay_public) = rsa_key_pair_pem("sim-alipay", 2048);
        let mut config = SandboxConfig::new(
            vec![SandboxMerchant {
                wechat: Some(SandboxWechat {
                    appid: WECHAT_APPID.into(),
                    mch_id: WECHAT_MCH_ID.into(),
                    key: WechatKey::from(WECHAT_KEY),
                    sign_type: SignType::HmacSha256,
                }),
                alipay: Some(SandboxAlipay {
                    app_id: ALIPAY_APP_ID.into(),
                    app_public_key_pem: app_public,
                }),
            }],
            alipay_private.clone(),
        );
        config.slow_answer = StdDuration::from_secs(30);
        // A name under `localhost` (RFC 6761): the clients take plain http
        // only to a loopback host. Nothing resolves it; the simulated
        // transport carries every request.
        config.public_base_url = Some("http://sandbox.localhost".into());
        let sandbox = Sandbox::open(config, clock.clone())
            .unwrap_or_else(|error| panic!("the sandbox opens: {error}"));
        let alipay_key = paycode_adapters::alipay::sign::private_key_from_pem(&alipay_private)
            .unwrap_or_else(|error| panic!("the simulated Alipay key: {error}"));
        let transport = Arc::new(SimTransport::new(
            sandbox.router(),
            WechatKey::from(WECHAT_KEY),
            SignType::HmacSha256,
            alipay_key,
            seed,
        ));
        let merchant = MerchantId::parse(MERCHANT).unwrap_or_else(|_| unreachable!());
        let mut wechat = WechatConfig::new(
            WECHAT_APPID,
            WECHAT_MCH_ID,
            WechatKey::from(WECHAT_KEY),
            "http://sandbox.localhost",
        );
        wechat.sign_type = SignType::HmacSha256;
        wechat.timeout = StdDuration::from_secs(10);
        wechat.rate_limits = RateLimits::LIFTED;
        let mut alipay = AlipayConfig::new(
            ALIPAY_APP_ID,
            app_private,
            alipay_public,
            "http://sandbox.localhost/gateway.do",
        );
        alipay.timeout = StdDuration::from_secs(10);
        alipay.rate_limits = RateLimits::LIFTED;
        let mut channels = Channels::default();
        channels.insert(
            merchant.clone(),
            Arc::new(
                WechatClient::with_transport(wechat, transport.clone())
                    .unwrap_or_else(|error| panic!("the WeChat client: {error}")),
            ),
        );
        channels.insert(
            merchant.clone(),
            Arc::new(
                AlipayClient::with_transport(alipay, transport.clone())
                    .unwrap_or_else(|error| panic!("the Alipay client: {error}")),
            ),
        );
        let policy = Policy {
            poll_interval_secs: rng.gen_range(3..=7),
            pay_deadline_secs: rng.gen_range(20..=60),
            ..Policy::default()
        };
        // Alipay's payment times are optional fields: some seeds' Alipay never sends them.
        if rng.gen_bool(0.25) {
            transport.omit_alipay_payment_times();
        }
        let order_count = rng.gen_range(3..=10);
        let orders = (0..order_count)
            .map(|index| {
                let channel = if rng.gen_bool(0.5) {
                    Channel::Wechat
                } else {
                    Channel::Alipay
                };
                let suffix = pick_suffix(&mut rng);
                let code = match channel {
                    Channel::Wechat => format!("1345678901234567{suffix}"),
                    Channel::Alipay => format!("28456789012345678{suffix}"),
                };
                let fen = rng.gen_range(1..=50_000);
                SimOrder {
                    order_no: OrderNo::parse(&format!("S{index}"))
                        .unwrap_or_else(|_| unreachable!("an order number")),
                    channel,
                    code,
                    amount: Money::from_fen(fen).unwrap_or_else(|_| unreachable!("fen > 0")),
                    reused: rng.gen_bool(0.05),
                }
            })
            .collect();
        World {
            options,
            rng,
            start,
            clock,
            memory,
            store,
            leases: Arc::new(MemoryLeases::default()),
            sandbox,
            transport,
            channels,
            policy,
            merchant,
            instances: Vec::new(),
            orders,
            acknowledged: Arc::default(),
            metrics: Metrics::new(),
            disturbances: Vec::new(),
            trace: Arc::default(),
            merchant_ids: Arc::new(SeededIds::new(seed, 0xffff)),
        }
    }

    fn note(&self, line: impl AsRef<str>) {
        if self.options.trace {
            let at = (self.clock.now() - self.start).num_milliseconds();
            let (secs, millis) = (at / 1000, at % 1000);
            lock(&self.trace).push(format!("{secs:>6}.{millis:03}s  {}", line.as_ref()));
        }
    }

    async fn run(mut self) -> Outcome {
        let instances = self.rng.gen_range(1..=3usize);
        for index in 0..instances {
            let instance = self.start_instance(index).await;
            self.instances.push(instance);
        }
        let faults = self.draw_network_faults();
        self.note(format!(
            "{} order(s), {instances} instance(s), poll {} s, deadline {} s, network {faults:?}",
            self.orders.len(),
            self.policy.poll_interval_secs,
            self.policy.pay_deadline_secs
        ));
        self.transport.set_faults(faults);
        self.use_order_numbers_before();
        let schedule = self.draw_schedule(instances);
        self.disturbances = schedule
            .iter()
            .filter(|(_, action)| {
                matches!(
                    action,
                    Action::Crash { .. } | Action::AppendFault(_) | Action::StoreDown
                )
            })
            .map(|(at, _)| *at)
            .collect();
        let mut violations = Vec::new();

        // Safety: the schedule, checking the rules after each step.
        let mut merchant_tasks = Vec::new();
        for (at_secs, action) in schedule {
            self.sleep_until(at_secs, &mut violations).await;
            self.note(format!("{action:?}"));
            if let Some(task) = self.perform(action).await {
                merchant_tasks.push(task);
            }
            violations.extend(self.check_now().await);
        }
        self.sleep_until(SAFETY_SECS, &mut violations).await;

        // Liveness: every fault healed, every instance back.
        self.note("heal: store up, network honest, every instance restarted");
        self.store.set_down(false);
        self.transport.set_faults(NetworkFaults::default());
        for index in 0..self.instances.len() {
            if self.instances[index].is_none() {
                self.instances[index] = self.start_instance(index).await;
            }
        }
        for task in merchant_tasks {
            let _ = task.await;
        }
        let mut waited = SAFETY_SECS;
        while waited < LIVENESS_SECS_MAX {
            let step = if waited < SAFETY_SECS + 600 { 10 } else { 3600 };
            waited += step;
            self.sleep_until(waited, &mut violations).await;
            if self.all_settled().await {
                break;
            }
        }
        self.note("reconcile every day the run touched");
        self.reconcile_days().await;
        for instance in self.instances.iter().flatten() {
            instance.runtime.abort_all();
            instance.timer_loop.abort();
        }
        violations.extend(self.final_checks().await);
        let (log_hash, events) = self.log_hash().await;
        let mut trace = lock(&self.trace).clone();
        // (the log lines were added to the trace by log_hash)
        if self.options.trace {
            for event in self.transport.events() {
                trace.push(format!(
                    "network  {} {}: {}",
                    event.api, event.order_no, event.what
                ));
            }
        }
        Outcome {
            seed: self.options.seed,
            log_hash,
            violations,
            trace,
            orders: self.orders.len(),
            events,
            instances,
        }
    }

    fn draw_network_faults(&mut self) -> NetworkFaults {
        let mut rate = |max: u16| {
            if self.rng.gen_bool(0.5) {
                self.rng.gen_range(0..=max)
            } else {
                0
            }
        };
        NetworkFaults {
            unreached_per_mille: rate(80),
            lost_per_mille: rate(80),
            duplicated_per_mille: rate(80),
            server_error_per_mille: rate(80),
            late_per_mille: rate(80),
            unsigned_per_mille: rate(50),
            forged_per_mille: rate(50),
            altered_per_mille: rate(150),
        }
    }

    /// The moments of every merchant command and fault of the safety phase.
    fn draw_schedule(&mut self, instances: usize) -> Vec<(i64, Action)> {
        let mut schedule = Vec::new();
        for order in 0..self.orders.len() {
            let submitted = self.rng.gen_range(0..SAFETY_SECS / 3);
            schedule.push((submitted, Action::Submit { order }));
            if self.rng.gen_bool(0.3) {
                let again = submitted + self.rng.gen_range(0..40);
                schedule.push((again, Action::SubmitAgain { order }));
            }
            if self.rng.gen_bool(0.2) {
                let revoke = submitted + self.rng.gen_range(0..90);
                schedule.push((revoke, Action::Revoke { order }));
            }
            let refunds = if self.rng.gen_bool(0.5) {
                self.rng.gen_range(1..=3)
            } else {
                0
            };
            let amount = self.orders[order].amount.fen();
            for refund in 0..refunds {
                let at = submitted + self.rng.gen_range(10..SAFETY_SECS);
                // Sometimes more than is left: the ledger must refuse it.
                let amount_fen = self.rng.gen_range(1..=amount.max(2) * 2 / 3 + 1);
                schedule.push((
                    at,
                    Action::Refund {
                        order,
                        refund,
                        amount_fen,
                    },
                ));
                if self.rng.gen_bool(0.3) {
                    schedule.push((
                        at + self.rng.gen_range(0..20),
                        Action::RefundAgain {
                            order,
                            refund,
                            amount_fen,
                        },
                    ));
                }
            }
        }
        for _ in 0..self.rng.gen_range(0..=3) {
            let instance = self.rng.gen_range(0..instances);
            let at = self.rng.gen_range(0..SAFETY_SECS - 30);
            schedule.push((at, Action::Crash { instance }));
            schedule.push((at + self.rng.gen_range(1..90), Action::Restart { instance }));
        }
        for _ in 0..self.rng.gen_range(0..=4) {
            let fault = if self.rng.gen_bool(0.5) {
                AppendFault::BeforeCommit
            } else {
                AppendFault::AfterCommit
            };
            schedule.push((
                self.rng.gen_range(0..SAFETY_SECS),
                Action::AppendFault(fault),
            ));
        }
        if self.rng.gen_bool(0.3) {
            let down = self.rng.gen_range(0..SAFETY_SECS - 30);
            schedule.push((down, Action::StoreDown));
            schedule.push((down + self.rng.gen_range(1..30), Action::StoreUp));
        }
        // Stable: equal times keep the order they were drawn in.
        schedule.sort_by_key(|(at, _)| *at);
        schedule
    }

    async fn start_instance(&mut self, index: usize) -> Option<Instance> {
        let ledger = Ledger::new(
            self.store.clone() as Arc<dyn EventStore>,
            PaymentDecider::new(self.policy.clone()),
            self.clock.clone() as Arc<dyn Clock>,
        );
        let restarts = self.rng.gen_range(0..u16::MAX / 8);
        let runtime = Runtime::new(
            ledger,
            self.channels.clone(),
            self.metrics.clone(),
            self.leases.clone(),
            Arc::new(SeededIds::new(
                self.options.seed,
                u16::try_from(index).unwrap_or(0) * 8192 + restarts,
            )),
            // One secret per seed, shared by every instance as one ledger's is.
            FingerprintKey::from_bytes(
                Sha256::digest(format!("fingerprint key {}", self.options.seed)).into(),
            ),
        );
        match runtime.recover().await {
            Ok(recovered) => {
                self.note(format!("instance {index} up, {recovered} order(s) resumed"));
            }
            Err(error) => {
                self.note(format!("instance {index} could not recover: {error}"));
                return None;
            }
        }
        let looping = runtime.clone();
        let timer_loop = tokio::spawn(async move {
            looping.run(std::future::pending()).await;
        });
        Some(Instance {
            runtime,
            timer_loop,
        })
    }

    /// A live instance to send a merchant command to.
    fn live_instance(&mut self) -> Option<Runtime> {
        let live: Vec<&Instance> = self.instances.iter().flatten().collect();
        if live.is_empty() {
            return None;
        }
        let pick = self.rng.gen_range(0..live.len());
        Some(live[pick].runtime.clone())
    }

    async fn perform(&mut self, action: Action) -> Option<JoinHandle<()>> {
        match action {
            Action::Submit { order } | Action::SubmitAgain { order } => {
                let runtime = self.live_instance()?;
                let order = self.orders[order].clone();
                let auth_code = AuthCode::parse(&order.code)
                    .unwrap_or_else(|_| unreachable!("a valid payment code"));
                let id = self.merchant_ids.command_id();
                let merchant = self.merchant.clone();
                Some(self.merchant_task(order.order_no.clone(), async move {
                    runtime
                        .submit(
                            id,
                            None,
                            SubmitPayment {
                                merchant_id: merchant,
                                order_no: order.order_no.clone(),
                                auth_code,
                                auth_code_fingerprint: None,
                                amount: order.amount,
                                subject: "Coffee".to_owned(),
                            },
                        )
                        .await
                }))
            }
            Action::Revoke { order } => {
                let runtime = self.live_instance()?;
                let command = Command::new(
                    self.merchant_ids.command_id(),
                    CommandKind::RequestRevoke {
                        reason: RevokeReason::MerchantRequested,
                    },
                );
                let order_no = self.orders[order].order_no.clone();
                let merchant = self.merchant.clone();
                Some(self.merchant_task(order_no.clone(), async move {
                    runtime.command(&merchant, &order_no, command).await
                }))
            }
            Action::Refund {
                order,
                refund,
                amount_fen,
            }
            | Action::RefundAgain {
                order,
                refund,
                amount_fen,
            } => {
                let runtime = self.live_instance()?;
                let command = Command::new(
                    self.merchant_ids.command_id(),
                    CommandKind::RequestRefund(RequestRefund {
                        refund_no: RefundNo::parse(&format!("R{order}-{refund}"))
                            .unwrap_or_else(|_| unreachable!("a refund number")),
                        amount: Money::from_fen(amount_fen).unwrap_or_else(|_| unreachable!()),
                        reason: "returned".to_owned(),
                    }),
                );
                let order_no = self.orders[order].order_no.clone();
                let merchant = self.merchant.clone();
                Some(self.merchant_task(order_no.clone(), async move {
                    runtime.command(&merchant, &order_no, command).await
                }))
            }
            Action::Crash { instance } => {
                if let Some(crashed) = self.instances[instance].take() {
                    crashed.runtime.abort_all();
                    crashed.timer_loop.abort();
                }
                None
            }
            Action::Restart { instance } => {
                if self.instances[instance].is_none() {
                    self.instances[instance] = self.start_instance(instance).await;
                }
                None
            }
            Action::AppendFault(fault) => {
                self.store.fail_next_append(fault);
                None
            }
            Action::StoreDown => {
                self.store.set_down(true);
                None
            }
            Action::StoreUp => {
                self.store.set_down(false);
                None
            }
        }
    }

    /// Runs a merchant's command as its own task (as an HTTP request would)
    /// and remembers the events its answer acknowledged.
    fn merchant_task(
        &self,
        order_no: OrderNo,
        command: impl Future<Output = Result<OrderHistory, PaymentLedgerError>> + Send + 'static,
    ) -> JoinHandle<()> {
        let merchant = self.merchant.clone();
        let acknowledged = self.acknowledged.clone();
        let trace = self.trace.clone();
        let traced = self.options.trace;
        let stream = payment_stream(&merchant, &order_no);
        tokio::spawn(async move {
            let answer = command.await;
            let line = match &answer {
                Ok(history) => {
                    let mut acked = lock(&acknowledged);
                    for recorded in &history.events {
                        acked.push((stream.clone(), recorded.version, recorded.event.clone()));
                    }
                    format!(
                        "merchant {order_no}: answered at version {:?}, {:?}",
                        history.version(),
                        history.state.status()
                    )
                }
                Err(error) => format!("merchant {order_no}: {error}"),
            };
            if traced {
                lock(&trace).push(format!("           {line}"));
            }
        })
    }

    /// Lets simulated time run to `at_secs` after the start, checking the
    /// rules every few simulated seconds on the way.
    async fn sleep_until(&mut self, at_secs: i64, violations: &mut Vec<Violation>) {
        let until = tokio::time::Instant::now()
            + (self.start + Duration::seconds(at_secs) - self.clock.now())
                .to_std()
                .unwrap_or_default();
        while tokio::time::Instant::now() < until {
            let next =
                (tokio::time::Instant::now() + StdDuration::from_secs(CHECK_EVERY_SECS)).min(until);
            tokio::time::sleep_until(next).await;
            violations.extend(self.check_now().await);
        }
    }

    /// The rules that hold at every moment.
    async fn check_now(&self) -> Vec<Violation> {
        let mut violations = check::pay_called_at_most_once(&self.transport.pay_calls());
        violations.extend(check::every_answer_recorded(&self.metrics.render()));
        // Every order with something due is followed by a live instance,
        // once a dead instance's leases have had time to expire.
        let live: Vec<&Runtime> = self
            .instances
            .iter()
            .flatten()
            .map(|instance| &instance.runtime)
            .collect();
        if live.is_empty() {
            return violations;
        }
        let ledger = self.reader();
        let now = self.clock.now();
        for order in &self.orders {
            let Ok(history) = ledger.history(&self.merchant, &order.order_no).await else {
                continue;
            };
            let stream = payment_stream(&self.merchant, &order.order_no);
            violations.extend(check::followed_when_due(
                &order.order_no,
                &history,
                now,
                live.iter().any(|runtime| runtime.is_following(&stream)),
            ));
        }
        violations
    }

    /// Gives the reused order numbers their earlier trade: paid, for another
    /// amount, a day before the run, by another system (not counted as
    /// paycode's pay calls).
    fn use_order_numbers_before(&mut self) {
        for order in self.orders.clone().iter().filter(|order| order.reused) {
            let other = Money::from_fen(order.amount.fen() + 100)
                .unwrap_or_else(|_| unreachable!("a larger amount is an amount"));
            let recorded = self.sandbox.record_earlier_trade(
                order.channel,
                match order.channel {
                    Channel::Wechat => WECHAT_MCH_ID,
                    Channel::Alipay => ALIPAY_APP_ID,
                },
                order.order_no.as_str(),
                other.fen(),
                self.start - Duration::days(1),
            );
            self.note(format!(
                "{}: the channel already has a paid trade of {other} under this number ({recorded:?})",
                order.order_no
            ));
        }
    }

    async fn all_settled(&self) -> bool {
        let ledger = self.reader();
        for order in &self.orders {
            let Ok(history) = ledger.history(&self.merchant, &order.order_no).await else {
                return false;
            };
            if paycode_domain::payment::next_action(&history.state).is_some() {
                return false;
            }
        }
        true
    }

    fn reader(&self) -> Ledger<PaymentDecider> {
        Ledger::new(
            self.memory.clone() as Arc<dyn EventStore>,
            PaymentDecider::new(self.policy.clone()),
            self.clock.clone() as Arc<dyn Clock>,
        )
    }

    /// Imports each channel's statement of every China day of the run.
    async fn reconcile_days(&self) {
        let ledger = self.reader();
        let first = paycode_domain::calendar::china_date(self.start);
        let last = paycode_domain::calendar::china_date(self.clock.now());
        let mut day: NaiveDate = first;
        while day <= last {
            for channel in [Channel::Wechat, Channel::Alipay] {
                let Some(client) = self.channels.get(&self.merchant, channel) else {
                    continue;
                };
                let result = reconcile::download_and_import(
                    &ledger,
                    client.as_ref(),
                    &self.merchant,
                    day,
                    None,
                )
                .await;
                match result {
                    Ok(imported) => self.note(format!(
                        "reconciled {channel} {day}: {} line(s), {} finding(s)",
                        imported.report.statement_lines,
                        imported.report.findings.len()
                    )),
                    Err(error) => self.note(format!("reconcile {channel} {day}: {error}")),
                }
            }
            match day.succ_opt() {
                Some(next) => day = next,
                None => break,
            }
        }
    }

    async fn final_checks(&self) -> Vec<Violation> {
        let ledger = self.reader();
        let mut violations = check::pay_called_at_most_once(&self.transport.pay_calls());
        let acknowledged = lock(&self.acknowledged).clone();
        violations
            .extend(check::acknowledged_events_kept(self.memory.as_ref(), &acknowledged).await);
        for order in &self.orders {
            let history = match ledger.history(&self.merchant, &order.order_no).await {
                Ok(history) => history,
                Err(error) => {
                    violations.push(Violation::new(
                        &order.order_no,
                        format!("unreadable: {error}"),
                    ));
                    continue;
                }
            };
            let account = match order.channel {
                Channel::Wechat => WECHAT_MCH_ID,
                Channel::Alipay => ALIPAY_APP_ID,
            };
            let truth = self
                .sandbox
                .order(order.channel, account, order.order_no.as_str());
            let now = self.clock.now();
            violations.extend(check::settled_as_the_channel_allows(
                &order.order_no,
                &history,
                truth.as_ref(),
                order.reused,
                now,
            ));
            if !order.reused {
                let quiet = self.quiet_order(&order.order_no, &history);
                violations.extend(check::honest_payment_kept(
                    &order.order_no,
                    &history,
                    truth.as_ref(),
                    quiet,
                    self.policy.poll_interval(),
                ));
            }
        }
        violations
    }

    /// Whether nothing disturbed the order between its submission and its
    /// deadline: no network fault on its calls, no crash or store fault, no
    /// revoke asked by the merchant. Such an order's honest payment must be kept.
    fn quiet_order(&self, order_no: &OrderNo, history: &OrderHistory) -> bool {
        let Some(order) = history.state.order() else {
            return false;
        };
        let seconds = |at: DateTime<Utc>| (at - self.start).num_seconds();
        let (from, until) = (seconds(order.submitted_at), seconds(order.deadline_at));
        let disturbed = self
            .disturbances
            .iter()
            .any(|at| (from - 60..=until).contains(at));
        let faulted = self
            .transport
            .events()
            .iter()
            .any(|event| event.order_no == order_no.as_str());
        let merchant_revoked = history.events.iter().any(|recorded| {
            matches!(
                &recorded.event.fact,
                paycode_domain::payment::Fact::RevokeRequested(requested)
                    if requested.reason == RevokeReason::MerchantRequested
            )
        });
        !disturbed && !faulted && !merchant_revoked
    }

    /// SHA-256 over every stored event (stream, version, type, payload) in
    /// global order: equal for two runs of one seed.
    async fn log_hash(&self) -> (String, usize) {
        let mut hasher = Sha256::new();
        let mut events = 0;
        let mut position = 1;
        loop {
            let page = self
                .memory
                .read_all(position, 1000)
                .await
                .unwrap_or_default();
            let Some(last) = page.last() else { break };
            position = last.position + 1;
            for event in page {
                events += 1;
                if self.options.trace {
                    lock(&self.trace).push(format!(
                        "log  {}@{} {} {} {}",
                        event.stream,
                        event.version,
                        event.event_type,
                        event.event_id,
                        String::from_utf8_lossy(&event.data)
                    ));
                }
                let mut line = String::new();
                let _ = write!(
                    line,
                    "{}/{}/{}/",
                    event.stream, event.version, event.event_type
                );
                hasher.update(line.as_bytes());
                hasher.update(&event.data);
                hasher.update(event.event_id.as_bytes());
            }
        }
        (hex::encode(hasher.finalize()), events)
    }
}

/// The test codes' last two digits, weighted like a day at a shop: most
/// pay at once, some wait for the password, a few go wrong.
fn pick_suffix(rng: &mut StdRng) -> &'static str {
    const MIX: [(&str, u32); 11] = [
        ("00", 30),
        ("01", 15),
        ("02", 10),
        ("03", 6),
        ("04", 8),
        ("05", 6),
        ("06", 8),
        ("07", 5),
        ("08", 6),
        ("09", 6),
        ("10", 0),
    ];
    let total: u32 = MIX.iter().map(|(_, weight)| weight).sum();
    let mut roll = rng.gen_range(0..total);
    for (suffix, weight) in MIX {
        if roll < weight {
            return suffix;
        }
        roll -= weight;
    }
    "00"
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}
