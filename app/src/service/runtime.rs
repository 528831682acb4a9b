//! The runtime: executes what the deciders say must happen next.
//!
//! It keeps one timer entry per order with a due action (a heap with lazy
//! deletion: a few hundred bytes per pending order, no task per order), calls
//! the channel through the merchant's client when an action is due, turns the
//! answer into a command and records it through the [`Ledger`]. One order is
//! worked on by one task at a time (`in_flight`). Everything it knows comes
//! from the log: on start it re-derives every pending order from the events,
//! and then it follows the log ([`Runtime::follow_store`]), so that orders
//! written by another process sharing the store are followed here too, and
//! taken over once that process's step leases expire.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration as StdDuration;

use chrono::{DateTime, Duration, Utc};
use paycode_adapters::channel::{
    ChannelClient, PayRequest, QueryRequest, RefundQueryRequest, RefundRequest,
};
use paycode_adapters::ids::IdSource;
use paycode_adapters::lease::StepLease;
use paycode_domain::ids::parse_payment_stream;
use paycode_domain::payment::{
    Action, ChannelAnswer, Command, CommandKind, Fact, PaymentDecider, PaymentState, RefundStage,
    SubmitPayment, next_action,
};
use paycode_domain::{AuthCode, AuthCodeFingerprint, Channel, CommandId, MerchantId, OrderNo};
use tokio::sync::{Notify, Semaphore};
use tokio::task::JoinSet;
use tracing::{Instrument, info_span, warn};

use crate::service::fingerprint::FingerprintKey;
use crate::service::ledger::{Ledger, OrderHistory, PaymentLedgerError};
use crate::service::metrics::Metrics;

/// Most orders worked on at once.
pub const STEPS_IN_PARALLEL_MAX: usize = 256;
/// Steps one task takes on an order before yielding it back to the timer.
const STEPS_PER_TURN_MAX: u32 = 16;
/// How long to wait before retrying an order whose step failed on the store.
const STORE_RETRY_SECS: i64 = 1;
/// How long a step lease lasts: longer than one channel call (10 s timeout)
/// with its rate-limit wait; renewed while a turn goes on. Also how long
/// orders wait after a crash of the process that held their lease, so short.
const LEASE_TTL_SECS: i64 = 30;
/// How long to wait before looking again at an order another process is working on.
const LEASE_BUSY_RETRY_SECS: i64 = 2;
/// How often the log is read for orders another process wrote: well within
/// [`LEASE_TTL_SECS`], so a dead process's orders are taken over as soon as
/// its leases expire.
pub const FOLLOW_INTERVAL_SECS: i64 = 5;
/// Events read from the log per batch.
const READ_BATCH: usize = 10_000;

/// The channel clients, per merchant and channel.
#[derive(Debug, Default, Clone)]
pub struct Channels {
    clients: HashMap<(MerchantId, Channel), Arc<dyn ChannelClient>>,
}

impl Channels {
    pub fn insert(&mut self, merchant: MerchantId, client: Arc<dyn ChannelClient>) {
        self.clients.insert((merchant, client.channel()), client);
    }

    pub fn get(&self, merchant: &MerchantId, channel: Channel) -> Option<&Arc<dyn ChannelClient>> {
        self.clients.get(&(merchant.clone(), channel))
    }

    /// Rate-limit waits so far, summed over merchants, per channel and API.
    pub fn rate_limit_waits(&self) -> HashMap<(Channel, &'static str), u64> {
        let mut totals = HashMap::new();
        for ((_, channel), client) in &self.clients {
            for (api, count) in client.rate_limit_waits() {
                *totals.entry((*channel, api.as_str())).or_insert(0) += count;
            }
        }
        totals
    }
}

/// Timers of every order with a due action.
#[derive(Debug, Default)]
struct Timers {
    heap: BinaryHeap<Reverse<(DateTime<Utc>, Arc<str>)>>,
    due: HashMap<Arc<str>, DateTime<Utc>>,
}

impl Timers {
    /// Sets (or moves earlier) the order's timer.
    fn set(&mut self, stream: &str, due_at: DateTime<Utc>) -> bool {
        if let Some(current) = self.due.get(stream) {
            if *current <= due_at {
                return false;
            }
        }
        let key: Arc<str> = Arc::from(stream);
        self.due.insert(key.clone(), due_at);
        self.heap.push(Reverse((due_at, key)));
        true
    }

    /// The earliest live timer.
    fn earliest(&mut self) -> Option<DateTime<Utc>> {
        while let Some(Reverse((due_at, stream))) = self.heap.peek() {
            if self.due.get(stream) == Some(due_at) {
                return Some(*due_at);
            }
            self.heap.pop();
        }
        None
    }

    /// Removes and returns every order due at or before `now`.
    fn take_due(&mut self, now: DateTime<Utc>) -> Vec<Arc<str>> {
        let mut due = Vec::new();
        while let Some(Reverse((due_at, _))) = self.heap.peek() {
            if *due_at > now {
                break;
            }
            let Some(Reverse((due_at, stream))) = self.heap.pop() else {
                break;
            };
            if self.due.get(&stream) == Some(&due_at) {
                self.due.remove(&stream);
                due.push(stream);
            }
        }
        due
    }

    fn len(&self) -> usize {
        self.due.len()
    }
}

/// The runtime shared by the HTTP handlers and the timer loop.
#[derive(Debug, Clone)]
pub struct Runtime {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    ledger: Ledger<PaymentDecider>,
    channels: Channels,
    timers: Mutex<Timers>,
    timer_changed: Notify,
    /// Orders being worked on, each with whether another step was asked for meanwhile.
    in_flight: Mutex<HashMap<Arc<str>, bool>>,
    permits: Arc<Semaphore>,
    /// Waiters for a change of one order (long polls).
    watchers: Mutex<HashMap<String, Arc<Watch>>>,
    metrics: Metrics,
    leases: Arc<dyn StepLease>,
    /// This process's name in the step leases.
    owner: String,
    /// Where command ids come from.
    ids: Arc<dyn IdSource>,
    /// Every task this runtime started, so that [`Runtime::abort_all`] can
    /// stop them all at once (a crash, in a simulation).
    tasks: Mutex<JoinSet<()>>,
    /// The global position of the log read so far ([`Runtime::follow_store`]).
    followed: tokio::sync::Mutex<u64>,
    /// Whether a `follow_store` started by the timer loop is running.
    following: AtomicBool,
    /// The latest version seen of each order with something left to do: a
    /// newer event in the log was written by someone else.
    seen: Mutex<HashMap<Arc<str>, u64>>,
    /// Fingerprints payment codes for `Submitted` (the secret stays here).
    fingerprints: FingerprintKey,
}

/// Releases an order's in-flight mark when dropped.
struct InFlight {
    inner: Arc<Inner>,
    stream: Arc<str>,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let rerun = self
            .inner
            .in_flight
            .lock()
            .expect("in-flight lock")
            .remove(&self.stream);
        // A timer fired while this task held the order: its step must not be lost.
        if rerun == Some(true) && tokio::runtime::Handle::try_current().is_ok() {
            let runtime = Runtime {
                inner: self.inner.clone(),
            };
            let stream = self.stream.clone();
            runtime
                .clone()
                .spawn(async move { runtime.step(&stream).await });
        }
    }
}

impl Runtime {
    pub fn new(
        ledger: Ledger<PaymentDecider>,
        channels: Channels,
        metrics: Metrics,
        leases: Arc<dyn StepLease>,
        ids: Arc<dyn IdSource>,
        fingerprints: FingerprintKey,
    ) -> Self {
        let owner = ids.command_id().0.to_string();
        Runtime {
            inner: Arc::new(Inner {
                ledger,
                channels,
                timers: Mutex::new(Timers::default()),
                timer_changed: Notify::new(),
                in_flight: Mutex::new(HashMap::new()),
                permits: Arc::new(Semaphore::new(STEPS_IN_PARALLEL_MAX)),
                watchers: Mutex::new(HashMap::new()),
                metrics,
                leases,
                owner,
                ids,
                tasks: Mutex::new(JoinSet::new()),
                followed: tokio::sync::Mutex::new(0),
                following: AtomicBool::new(false),
                seen: Mutex::new(HashMap::new()),
                fingerprints,
            }),
        }
    }

    /// The keyed fingerprint of a payment code, as `Submitted` records it.
    pub fn fingerprint(&self, code: &AuthCode) -> AuthCodeFingerprint {
        self.inner.fingerprints.fingerprint(code)
    }

    /// A fresh command id, from this runtime's id source.
    pub fn new_command_id(&self) -> CommandId {
        self.inner.ids.command_id()
    }

    /// Starts `task` on the current tokio runtime, tracked for [`Runtime::abort_all`].
    fn spawn(&self, task: impl std::future::Future<Output = ()> + Send + 'static) {
        let mut tasks = self.inner.tasks.lock().expect("tasks lock");
        // Forget the finished ones, so the set holds only live tasks.
        while tasks.try_join_next().is_some() {}
        tasks.spawn(task);
    }

    /// Stops every task this runtime started, at whatever await point each
    /// is: what a crash of the process does. Used by simulations; a normal
    /// shutdown drains instead ([`Runtime::drain`]).
    pub fn abort_all(&self) {
        self.inner.tasks.lock().expect("tasks lock").abort_all();
    }

    pub fn ledger(&self) -> &Ledger<PaymentDecider> {
        &self.inner.ledger
    }

    /// The merchant's client of `channel`, if one is configured.
    pub fn channel_client(
        &self,
        merchant: &MerchantId,
        channel: Channel,
    ) -> Option<Arc<dyn ChannelClient>> {
        self.inner.channels.get(merchant, channel).cloned()
    }

    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    /// The metrics text, with the channel clients' rate-limit waits brought up to date.
    pub fn render_metrics(&self) -> String {
        for ((channel, api), total) in self.inner.channels.rate_limit_waits() {
            self.inner
                .metrics
                .rate_limit_waits_seen(channel, api, total);
        }
        self.inner.metrics.render()
    }

    /// Whether this runtime will come back to the order: a timer is set, or
    /// a task is working on it right now.
    pub fn is_following(&self, stream: &str) -> bool {
        self.inner
            .timers
            .lock()
            .expect("timers lock")
            .due
            .contains_key(stream)
            || self
                .inner
                .in_flight
                .lock()
                .expect("in-flight lock")
                .contains_key(stream)
    }

    /// Orders with a pending timer.
    pub fn pending_orders(&self) -> usize {
        self.inner.timers.lock().expect("timers lock").len()
    }

    /// Re-derives every pending order from the log; returns how many were scheduled.
    pub async fn recover(&self) -> Result<usize, PaymentLedgerError> {
        self.follow_store().await
    }

    /// Reads the log from where it was read last, and sets the timer of
    /// every order written since by anyone else (this process knows its own
    /// writes). Returns how many orders were scheduled. The first call reads
    /// the whole log: that is recovery.
    pub async fn follow_store(&self) -> Result<usize, PaymentLedgerError> {
        let store = self.inner.ledger.store().clone();
        let mut followed = self.inner.followed.lock().await;
        // In order, so a recovery schedules the same way every time.
        let mut latest: BTreeMap<String, u64> = BTreeMap::new();
        let mut position = *followed + 1;
        loop {
            let batch = store.read_all(position, READ_BATCH).await?;
            let Some(last) = batch.last() else { break };
            position = last.position + 1;
            for event in batch {
                if parse_payment_stream(&event.stream).is_some() {
                    let version = latest.entry(event.stream).or_insert(event.version);
                    *version = (*version).max(event.version);
                }
            }
        }
        *followed = position - 1;
        drop(followed);
        let mut scheduled = 0;
        for (stream, version) in latest {
            if self.knows(&stream, version) {
                continue;
            }
            let history = self.inner.ledger.history_of(&stream).await?;
            if self.schedule_next(&stream, &history) {
                scheduled += 1;
            }
        }
        Ok(scheduled)
    }

    /// Starts `follow_store` on a task of its own, unless the last one is
    /// still reading.
    fn follow_in_background(&self) {
        /// Clears `following` however the task ends (an abort drops it).
        struct Following(Runtime);
        impl Drop for Following {
            fn drop(&mut self) {
                self.0.inner.following.store(false, Ordering::Release);
            }
        }
        if self.inner.following.swap(true, Ordering::AcqRel) {
            return;
        }
        let following = Following(self.clone());
        self.spawn(async move {
            if let Err(error) = following.0.follow_store().await {
                warn!(%error, "cannot read the log for other processes' orders; trying again");
            }
        });
    }

    /// Whether this process already knows the order at `version` or later.
    fn knows(&self, stream: &str, version: u64) -> bool {
        self.inner
            .seen
            .lock()
            .expect("seen lock")
            .get(stream)
            .is_some_and(|seen| *seen >= version)
    }

    /// Notes the version of the order this process now knows.
    fn note_seen(&self, stream: &str, history: &OrderHistory, pending: bool) {
        let mut seen = self.inner.seen.lock().expect("seen lock");
        match (pending, history.version()) {
            (true, Some(version)) => {
                let known = seen.entry(Arc::from(stream)).or_insert(version);
                *known = (*known).max(version);
            }
            // Settled: nothing to follow, and the map stays as small as the pending orders.
            _ => {
                seen.remove(stream);
            }
        }
    }

    fn schedule(&self, stream: &str, due_at: DateTime<Utc>) {
        let earlier = self
            .inner
            .timers
            .lock()
            .expect("timers lock")
            .set(stream, due_at);
        if earlier {
            self.inner.timer_changed.notify_one();
        }
        self.inner
            .metrics
            .pending_orders
            .set(i64::try_from(self.pending_orders()).unwrap_or(i64::MAX));
    }

    /// Schedules the order's next action from its history (or nothing when
    /// settled); returns whether a timer is set.
    fn schedule_next(&self, stream: &str, history: &OrderHistory) -> bool {
        let next = next_action(&history.state);
        self.note_seen(stream, history, next.is_some());
        if let Some((_, due_at)) = next {
            self.schedule(stream, due_at);
        }
        self.notify_watchers(stream, history);
        next.is_some()
    }

    /// The timer loop: runs until `shutdown` resolves.
    pub async fn run(&self, shutdown: impl std::future::Future<Output = ()>) {
        tokio::pin!(shutdown);
        let clock = self.inner.ledger.clock().clone();
        let follow_every = Duration::seconds(FOLLOW_INTERVAL_SECS);
        let mut follow_at = clock.now() + follow_every;
        loop {
            let earliest = self.inner.timers.lock().expect("timers lock").earliest();
            let wake_at = earliest.map_or(follow_at, |at| at.min(follow_at));
            let changed = self.inner.timer_changed.notified();
            // Biased: the branches in this order, so a simulation replays alike.
            tokio::select! {
                biased;
                () = &mut shutdown => return,
                () = changed => continue,
                () = clock.sleep_until(wake_at) => {}
            }
            if clock.now() >= follow_at {
                // What other processes sharing the store wrote, read beside
                // this loop: it reads every event since the last time, and
                // while this loop waited for it no due step was started
                // (a stall of hundreds of milliseconds under load).
                self.follow_in_background();
                follow_at = clock.now() + follow_every;
            }
            let due = self
                .inner
                .timers
                .lock()
                .expect("timers lock")
                .take_due(clock.now());
            self.inner
                .metrics
                .pending_orders
                .set(i64::try_from(self.pending_orders()).unwrap_or(i64::MAX));
            for stream in due {
                let Ok(permit) = self.inner.permits.clone().acquire_owned().await else {
                    return;
                };
                let runtime = self.clone();
                self.spawn(async move {
                    runtime.step(&stream).await;
                    drop(permit);
                });
            }
        }
    }

    /// Waits until every step in progress has finished (for graceful shutdown).
    pub async fn drain(&self) {
        let _all = self
            .inner
            .permits
            .acquire_many(u32::try_from(STEPS_IN_PARALLEL_MAX).unwrap_or(u32::MAX))
            .await;
        while !self
            .inner
            .in_flight
            .lock()
            .expect("in-flight lock")
            .is_empty()
        {
            tokio::time::sleep(StdDuration::from_millis(10)).await;
        }
    }

    /// Claims the order for this task. When another task holds it, asks that
    /// task to step the order again once it lets go, and returns `None`.
    fn try_claim(&self, stream: &str) -> Option<InFlight> {
        self.claim_or(stream, true)
    }

    fn claim_or(&self, stream: &str, ask_for_rerun: bool) -> Option<InFlight> {
        let mut in_flight = self.inner.in_flight.lock().expect("in-flight lock");
        if let Some(rerun) = in_flight.get_mut(stream) {
            *rerun |= ask_for_rerun;
            return None;
        }
        let key: Arc<str> = Arc::from(stream);
        in_flight.insert(key.clone(), false);
        Some(InFlight {
            inner: self.inner.clone(),
            stream: key,
        })
    }

    /// Claims the order, waiting a little for a step in progress to finish.
    async fn claim(&self, stream: &str) -> Option<InFlight> {
        for _ in 0..500 {
            if let Some(claim) = self.claim_or(stream, false) {
                return Some(claim);
            }
            tokio::time::sleep(StdDuration::from_millis(10)).await;
        }
        None
    }

    /// Submits a payment and, if it was new, makes the single pay call.
    /// Returns the history after the submission (not waiting for the call).
    /// `key_name` names the API key whose request it is (recorded in the
    /// `Submitted` event); `None` for a benchmark or a simulation. The
    /// code's fingerprint is computed here, with the ledger's key, whatever
    /// `payment.auth_code_fingerprint` holds.
    pub async fn submit(
        &self,
        command_id: CommandId,
        key_name: Option<String>,
        payment: SubmitPayment,
    ) -> Result<OrderHistory, PaymentLedgerError> {
        // The fingerprint is this runtime's to compute (the key is the ledger's).
        let payment = SubmitPayment {
            auth_code_fingerprint: Some(self.fingerprint(&payment.auth_code)),
            ..payment
        };
        let submit = Command {
            id: command_id,
            key_name,
            kind: CommandKind::SubmitPayment(payment.clone()),
        };
        let SubmitPayment {
            merchant_id: merchant,
            order_no,
            auth_code,
            amount,
            subject,
            ..
        } = payment;
        let (merchant, order_no) = (&merchant, &order_no);
        let stream = paycode_domain::ids::payment_stream(merchant, order_no);
        // Claimed before the intent is written, so no timer step can race the pay call.
        let claim = self.try_claim(&stream);
        // A new order's stream is empty: decided against that, not read (a
        // stream that exists refuses the append, and is read).
        let empty = self.inner.ledger.empty_history();
        let executed = match self
            .inner
            .ledger
            .execute_from(&stream, Some(empty), &submit)
            .await
        {
            Ok(executed) => executed,
            Err(error) => {
                let outcome = match &error {
                    PaymentLedgerError::Rejected(rejection) => rejection.code(),
                    _ => "error",
                };
                self.inner.metrics.command("submit_payment", outcome);
                drop(claim);
                if !matches!(error, PaymentLedgerError::Rejected(_)) {
                    // The append may have committed all the same: then the
                    // order exists, its pay call was never made, and it is
                    // followed by queries until it settles.
                    self.reschedule_from_log(&stream).await;
                }
                return Err(error);
            }
        };
        self.inner.metrics.command("submit_payment", "accepted");
        // A concurrent duplicate may have held the claim for a moment; wait for it.
        let claim = match claim {
            Some(claim) => Some(claim),
            None => self.claim(&stream).await,
        };
        let Some(claim) = claim else {
            warn!(
                stream,
                "could not claim a new order for its pay call; it will be queried instead"
            );
            self.schedule_next(&stream, &executed.history);
            return Ok(executed.history);
        };
        // Whatever happens to this request or the pay task, the order has a timer.
        self.schedule_next(&stream, &executed.history);
        let (submitted_at, wait_max) = match executed.history.state.order() {
            Some(order) => (
                order.submitted_at,
                pay_wait_max(order, self.inner.ledger.clock().now()),
            ),
            None => (self.inner.ledger.clock().now(), StdDuration::ZERO),
        };
        let runtime = self.clone();
        let merchant = merchant.clone();
        let order_no = order_no.clone();
        let submitted = executed.history.clone();
        let span = info_span!("pay", merchant = %merchant, order_no = %order_no);
        self.spawn(
            async move {
                // The intent is durable: make the one pay call.
                let channel = auth_code.channel();
                let answer = match runtime.inner.channels.get(&merchant, channel) {
                    Some(client) => {
                        let request = PayRequest {
                            order_no: &order_no,
                            auth_code: &auth_code,
                            amount,
                            subject: &subject,
                            submitted_at,
                            wait_max,
                        };
                        let started = std::time::Instant::now();
                        let answer = client.pay(request).await;
                        runtime.inner.metrics.channel_call(
                            channel,
                            "pay",
                            &answer.outcome,
                            started.elapsed(),
                        );
                        answer
                    }
                    None => ChannelAnswer::new(paycode_domain::payment::PayOutcome::Unknown {
                        reason: format!("no {channel} client configured for merchant"),
                    }),
                };
                drop(auth_code);
                let record = Command::new(
                    runtime.new_command_id(),
                    CommandKind::RecordPayAnswer(answer),
                );
                match runtime
                    .inner
                    .ledger
                    .execute_from(&stream, Some(submitted), &record)
                    .await
                {
                    Ok(executed) => {
                        drop(claim);
                        runtime.schedule_next(&stream, &executed.history);
                        runtime.step_from(&stream, Some(executed.history)).await;
                    }
                    Err(error) => {
                        // The answer is lost; the order recovers by querying at its first query time.
                        warn!(%error, "pay answer not recorded; the order will be queried");
                        drop(claim);
                        runtime.reschedule_from_log(&stream).await;
                    }
                }
            }
            .instrument(span),
        );
        Ok(executed.history)
    }

    /// Records a command from an operator or the API (revoke, refund, resolve)
    /// and carries out whatever became due. The follow-up (a timer, and the
    /// first refund call) is set before this returns and runs in its own
    /// task: a caller that goes away does not stop it.
    pub async fn command(
        &self,
        merchant: &MerchantId,
        order_no: &OrderNo,
        command: Command,
    ) -> Result<OrderHistory, PaymentLedgerError> {
        let name = command_name(&command.kind);
        let stream = paycode_domain::ids::payment_stream(merchant, order_no);
        let result = self
            .inner
            .ledger
            .execute_on_order(merchant, order_no, &command)
            .await;
        match &result {
            Ok(_) => self.inner.metrics.command(name, "accepted"),
            Err(PaymentLedgerError::Rejected(rejection)) => {
                self.inner.metrics.command(name, rejection.code());
            }
            Err(_) => {
                self.inner.metrics.command(name, "error");
                // The append may have committed: follow whatever the log holds.
                self.reschedule_from_log(&stream).await;
            }
        }
        let executed = result?;
        if !executed.appended.is_empty() {
            self.schedule_next(&stream, &executed.history);
            let refunds = requested_refunds(executed.appended.iter().map(|e| &e.fact));
            let runtime = self.clone();
            self.spawn(async move {
                if let Some(claim) = runtime.claim(&stream).await {
                    for refund_no in refunds {
                        runtime.first_refund_call(&stream, refund_no).await;
                    }
                    drop(claim);
                }
                runtime.step(&stream).await;
            });
        }
        Ok(executed.history)
    }

    /// The single first refund call after `RefundRequested` is durable, made
    /// by the holder of the order's claim. Not made when the refund has
    /// moved on meanwhile (another process queried or resent it).
    async fn first_refund_call(&self, stream: &str, refund_no: paycode_domain::RefundNo) {
        let history = match self.inner.ledger.history_of(stream).await {
            Ok(history) => history,
            Err(error) => {
                warn!(%error, stream, "cannot load the order for its refund call; the refund will be queried");
                self.reschedule_from_log(stream).await;
                return;
            }
        };
        let untouched = match &history.state {
            PaymentState::Paid(paid) => paid
                .refund(&refund_no)
                .is_some_and(|refund| refund.answers == 0 && refund.calls == 1),
            _ => false,
        };
        if !untouched {
            return;
        }
        let Some(kind) = self.call_refund(&history.state, &refund_no).await else {
            return;
        };
        let order = history.state.order().expect("a refunded order exists");
        let record = Command::new(self.new_command_id(), kind);
        match self
            .inner
            .ledger
            .execute_on_order(&order.merchant_id, &order.order_no, &record)
            .await
        {
            Ok(executed) => {
                self.schedule_next(stream, &executed.history);
            }
            Err(error) => {
                warn!(%error, "refund answer not recorded; the refund will be queried");
                self.reschedule_from_log(stream).await;
            }
        }
    }

    async fn reschedule_from_log(&self, stream: &str) {
        match self.inner.ledger.history_of(stream).await {
            Ok(history) => {
                self.schedule_next(stream, &history);
            }
            Err(_) => self.schedule(
                stream,
                self.inner.ledger.clock().now() + Duration::seconds(STORE_RETRY_SECS),
            ),
        }
    }

    /// Works on one order: executes every action that is due, then sets its timer.
    pub async fn step(&self, stream: &str) {
        self.step_from(stream, None).await;
    }

    /// `step`, starting from `known`, the order's history as this process
    /// just recorded it (saves reading it back; `Ledger::execute_from`
    /// says why a stale one does no harm).
    async fn step_from(&self, stream: &str, known: Option<OrderHistory>) {
        let Some(_claim) = self.try_claim(stream) else {
            // Someone is working on it; they set the timer when done.
            return;
        };
        let mut leased = false;
        self.step_turn(stream, known, &mut leased).await;
        if leased {
            if let Err(error) = self.inner.leases.release(stream, &self.inner.owner).await {
                warn!(%error, stream, "step lease not released; it expires by itself");
            }
        }
    }

    async fn step_turn(&self, stream: &str, mut known: Option<OrderHistory>, leased: &mut bool) {
        let clock = self.inner.ledger.clock().clone();
        let ttl = Duration::seconds(LEASE_TTL_SECS);
        let mut leased_at = clock.now();
        for _ in 0..STEPS_PER_TURN_MAX {
            let history = match known.take() {
                Some(history) => Ok(history),
                None => self.inner.ledger.history_of(stream).await,
            };
            let history = match history {
                Ok(history) => history,
                Err(error) => {
                    warn!(%error, stream, "cannot load order; retrying later");
                    self.schedule(stream, clock.now() + Duration::seconds(STORE_RETRY_SECS));
                    return;
                }
            };
            let Some((action, due_at)) = next_action(&history.state) else {
                self.schedule_next(stream, &history);
                return;
            };
            if due_at > clock.now() {
                self.schedule_next(stream, &history);
                return;
            }
            // Renew a lease half spent, so a long turn never outlives it.
            if *leased && clock.now() - leased_at > ttl / 2 {
                *leased = false;
            }
            if !*leased {
                // Another process sharing the store may be due for the same step.
                leased_at = clock.now();
                match self
                    .inner
                    .leases
                    .acquire(stream, &self.inner.owner, clock.now(), ttl)
                    .await
                {
                    Ok(true) => {
                        *leased = true;
                        // Another process may have moved the order before
                        // the lease was ours: decide afresh from the log.
                        if !self.inner.leases.shared() {
                            known = Some(history);
                        }
                        continue;
                    }
                    Ok(false) => {
                        self.schedule(
                            stream,
                            clock.now() + Duration::seconds(LEASE_BUSY_RETRY_SECS),
                        );
                        return;
                    }
                    Err(error) => {
                        warn!(%error, stream, "step lease unavailable; retrying later");
                        self.schedule(stream, clock.now() + Duration::seconds(STORE_RETRY_SECS));
                        return;
                    }
                }
            }
            let Some(order) = history.state.order() else {
                return;
            };
            let (merchant, order_no) = (order.merchant_id.clone(), order.order_no.clone());
            let span =
                info_span!("step", merchant = %merchant, order_no = %order_no, action = ?action);
            let Some(kind) = self.perform(&history.state, &action).instrument(span).await else {
                self.schedule(stream, clock.now() + Duration::seconds(60));
                return;
            };
            let name = command_name(&kind);
            match self
                .inner
                .ledger
                .execute_from(
                    stream,
                    Some(history),
                    &Command::new(self.new_command_id(), kind),
                )
                .await
            {
                Ok(executed) => {
                    self.inner.metrics.command(name, "accepted");
                    self.schedule_next(stream, &executed.history);
                    // A refund decided by this step (one that replaces a
                    // revoke the channel refused) gets its first call now.
                    let refunds = requested_refunds(executed.appended.iter().map(|e| &e.fact));
                    if refunds.is_empty() {
                        known = Some(executed.history);
                    }
                    for refund_no in refunds {
                        self.first_refund_call(stream, refund_no).await;
                    }
                }
                // The order moved under us (another writer): reload and decide again.
                Err(PaymentLedgerError::Rejected(rejection)) => {
                    self.inner.metrics.command(name, rejection.code());
                }
                Err(error) => {
                    warn!(%error, stream, "step not recorded; retrying later");
                    self.schedule(stream, clock.now() + Duration::seconds(STORE_RETRY_SECS));
                    return;
                }
            }
        }
        // Still busy after a full turn: come back soon rather than hog a worker.
        self.schedule(stream, clock.now());
    }

    /// Carries out an action: the channel call it needs, and the command that records the answer.
    async fn perform(&self, state: &PaymentState, action: &Action) -> Option<CommandKind> {
        let order = state.order()?;
        let client = || {
            let client = self.inner.channels.get(&order.merchant_id, order.channel);
            if client.is_none() {
                warn!(merchant = %order.merchant_id, channel = %order.channel, "no channel client configured");
            }
            client
        };
        let metrics = &self.inner.metrics;
        Some(match action {
            Action::QueryPayment => {
                let started = std::time::Instant::now();
                let request = QueryRequest {
                    order_no: &order.order_no,
                    amount: order.amount,
                    submitted_at: order.submitted_at,
                };
                let answer = client()?.query(request).await;
                metrics.channel_call(order.channel, "query", &answer.outcome, started.elapsed());
                CommandKind::RecordQueryResult(answer)
            }
            Action::StartRevoke { reason } => CommandKind::RequestRevoke { reason: *reason },
            Action::CallRevoke { .. } => {
                let started = std::time::Instant::now();
                let answer = client()?.revoke(&order.order_no).await;
                metrics.channel_call(order.channel, "revoke", &answer.outcome, started.elapsed());
                CommandKind::RecordRevokeAnswer(answer)
            }
            Action::QueryRefund { refund_no } => {
                let PaymentState::Paid(paid) = state else {
                    return None;
                };
                let refund = paid.refund(refund_no)?;
                let started = std::time::Instant::now();
                let request = RefundQueryRequest {
                    order_no: &order.order_no,
                    refund_no,
                    refund_amount: refund.amount,
                    total_amount: order.amount,
                };
                let answer = client()?.refund_query(request).await;
                metrics.channel_call(
                    order.channel,
                    "refund_query",
                    &answer.outcome,
                    started.elapsed(),
                );
                CommandKind::RecordRefundAnswer {
                    refund_no: refund_no.clone(),
                    answer,
                }
            }
            Action::CallRefund { refund_no } => return self.call_refund(state, refund_no).await,
            Action::EscalateToManualReview { refund_no, .. } => {
                CommandKind::EscalateToManualReview {
                    refund_no: refund_no.clone(),
                }
            }
        })
    }

    async fn call_refund(
        &self,
        state: &PaymentState,
        refund_no: &paycode_domain::RefundNo,
    ) -> Option<CommandKind> {
        let PaymentState::Paid(paid) = state else {
            return None;
        };
        let refund = paid.refund(refund_no)?;
        if !matches!(
            refund.stage,
            RefundStage::Pending { .. } | RefundStage::Resend { .. }
        ) {
            return None;
        }
        let client = self
            .inner
            .channels
            .get(&paid.order.merchant_id, paid.order.channel)?;
        let request = RefundRequest {
            order_no: &paid.order.order_no,
            refund_no,
            refund_amount: refund.amount,
            total_amount: paid.order.amount,
            reason: &refund.reason,
        };
        let started = std::time::Instant::now();
        let answer = client.refund(request).await;
        self.inner.metrics.channel_call(
            paid.order.channel,
            "refund",
            &answer.outcome,
            started.elapsed(),
        );
        Some(CommandKind::RecordRefundAnswer {
            refund_no: refund_no.clone(),
            answer,
        })
    }

    /// Tells the long polls of `stream` that the order moved, handing them
    /// the history this process recorded (so they need not read it back).
    fn notify_watchers(&self, stream: &str, history: &OrderHistory) {
        let watch = self
            .inner
            .watchers
            .lock()
            .expect("watchers lock")
            .get(stream)
            .cloned();
        if let Some(watch) = watch {
            {
                let mut latest = watch.latest.lock().expect("watch lock");
                if latest
                    .as_ref()
                    .is_none_or(|latest| latest.version() < history.version())
                {
                    *latest = Some(history.clone());
                }
            }
            watch.changed.notify_waiters();
        }
    }

    /// Starts watching an order for a long poll. Taken before the command
    /// the poll waits on, so that no change made meanwhile is missed.
    pub fn watch(&self, stream: &str) -> OrderWatch {
        let watch = self
            .inner
            .watchers
            .lock()
            .expect("watchers lock")
            .entry(stream.to_owned())
            .or_default()
            .clone();
        OrderWatch {
            inner: self.inner.clone(),
            stream: stream.to_owned(),
            watch,
        }
    }

    /// Waits until the order is settled or `timeout` passes; returns the latest history.
    pub async fn wait_settled(
        &self,
        stream: &str,
        timeout: StdDuration,
    ) -> Result<OrderHistory, PaymentLedgerError> {
        self.watch(stream).settled(None, timeout).await
    }
}

/// What the long polls of one order wait on: a wake-up, and the order's
/// history as this process last recorded it.
#[derive(Debug, Default)]
struct Watch {
    changed: Notify,
    latest: Mutex<Option<OrderHistory>>,
}

/// One long poll's hold on an order ([`Runtime::watch`]); let go when dropped.
#[derive(Debug)]
pub struct OrderWatch {
    inner: Arc<Inner>,
    stream: String,
    watch: Arc<Watch>,
}

impl OrderWatch {
    /// Waits until the order is settled or `timeout` passes; returns the
    /// latest history. Starts from `known` (what the caller holds; the log
    /// when `None`), then takes each history this process records; reads
    /// the log once a second besides, since another process sharing the
    /// store may move the order too.
    pub async fn settled(
        &self,
        known: Option<OrderHistory>,
        timeout: StdDuration,
    ) -> Result<OrderHistory, PaymentLedgerError> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut current = known;
        loop {
            let changed = self.watch.changed.notified();
            let recorded = self.watch.latest.lock().expect("watch lock").clone();
            let history = match current.take() {
                Some(history) => history,
                None => self.inner.ledger.history_of(&self.stream).await?,
            };
            let history = match recorded {
                Some(recorded) if recorded.version() > history.version() => recorded,
                _ => history,
            };
            let settled = history
                .state
                .status()
                .is_none_or(paycode_domain::payment::PaymentStatus::is_settled);
            if settled || tokio::time::Instant::now() >= deadline {
                return Ok(history);
            }
            let woken = tokio::time::timeout_at(
                deadline.min(tokio::time::Instant::now() + StdDuration::from_secs(1)),
                changed,
            )
            .await
            .is_ok();
            // Woken by this process: what it recorded is in `latest`. Not
            // woken for a second: read the log.
            if woken {
                current = Some(history);
            }
        }
    }
}

impl Drop for OrderWatch {
    fn drop(&mut self) {
        let mut watchers = self.inner.watchers.lock().expect("watchers lock");
        // The map's and this one's: no other poll waits on the order.
        if Arc::strong_count(&self.watch) <= 2 {
            watchers.remove(&self.stream);
        }
    }
}

/// The metric and log name of a command.
pub fn command_name(kind: &CommandKind) -> &'static str {
    match kind {
        CommandKind::SubmitPayment(_) => "submit_payment",
        CommandKind::RecordPayAnswer(_) => "record_pay_answer",
        CommandKind::RecordQueryResult(_) => "record_query_result",
        CommandKind::RequestRevoke { .. } => "request_revoke",
        CommandKind::RecordRevokeAnswer(_) => "record_revoke_answer",
        CommandKind::RequestRefund(_) => "request_refund",
        CommandKind::RecordRefundAnswer { .. } => "record_refund_answer",
        CommandKind::EscalateToManualReview { .. } => "escalate_to_manual_review",
        CommandKind::Resolve { .. } => "resolve",
        CommandKind::MatchStatementLine(_) => "match_statement_line",
        CommandKind::SettleRevoke { .. } => "settle_revoke",
    }
}

/// The refunds a decision requested: each gets its single first call.
fn requested_refunds<'a>(facts: impl Iterator<Item = &'a Fact>) -> Vec<paycode_domain::RefundNo> {
    facts
        .filter_map(|fact| match fact {
            Fact::RefundRequested(requested) => Some(requested.refund_no.clone()),
            _ => None,
        })
        .collect()
}

/// How long the pay call may wait for its turn under the rate limit: until
/// the last moment a pay call still leaves the channel's minimum time
/// before the revoke at the deadline (with the default policy, 15 s after
/// submission). A call that cannot be made by then is not made.
pub fn pay_wait_max(order: &paycode_domain::payment::Order, now: DateTime<Utc>) -> StdDuration {
    let revoke_gap = order.revoke_not_before - order.submitted_at;
    let latest_call_at = order.deadline_at - revoke_gap;
    (latest_call_at - now).to_std().unwrap_or(StdDuration::ZERO)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn a_pay_call_may_wait_for_its_turn_only_while_the_code_is_fresh_enough() {
        // Defect 9: deadline 30 s, revoke no sooner than 15 s: the call must leave by 15 s.
        let t = |secs| Utc.with_ymd_and_hms(2026, 11, 22, 2, 0, secs).unwrap();
        let order = paycode_domain::payment::Order {
            merchant_id: MerchantId::parse("demo").unwrap(),
            order_no: paycode_domain::OrderNo::parse("W1").unwrap(),
            channel: Channel::Wechat,
            amount: "1.00".parse().unwrap(),
            currency: paycode_domain::Currency::Cny,
            subject: "Coffee".into(),
            auth_code: paycode_domain::AuthCode::parse("134567890123456789")
                .unwrap()
                .masked(),
            submitted_at: t(0),
            deadline_at: t(30),
            revoke_not_before: t(15),
            matched_lines: Vec::new(),
        };
        assert_eq!(pay_wait_max(&order, t(0)), StdDuration::from_secs(15));
        assert_eq!(pay_wait_max(&order, t(10)), StdDuration::from_secs(5));
        assert_eq!(pay_wait_max(&order, t(15)), StdDuration::ZERO);
        assert_eq!(
            pay_wait_max(&order, t(40)),
            StdDuration::ZERO,
            "past it: no wait at all"
        );
    }

    #[test]
    fn timers_keep_the_earliest_due_time_per_order() {
        let t = |secs| Utc.with_ymd_and_hms(2026, 11, 22, 2, 0, secs).unwrap();
        let mut timers = Timers::default();
        assert!(timers.set("a", t(10)));
        assert!(
            !timers.set("a", t(20)),
            "a later time does not replace an earlier one"
        );
        assert!(timers.set("a", t(5)));
        timers.set("b", t(7));
        assert_eq!(timers.len(), 2);
        assert_eq!(timers.earliest(), Some(t(5)));
        assert_eq!(
            timers
                .take_due(t(6))
                .iter()
                .map(std::string::ToString::to_string)
                .collect::<Vec<_>>(),
            ["a"]
        );
        assert_eq!(
            timers.earliest(),
            Some(t(7)),
            "the stale entry for a at 10 s is gone"
        );
        assert_eq!(timers.take_due(t(30)).len(), 1);
        assert_eq!(timers.earliest(), None);
        assert_eq!(timers.len(), 0);
    }
}
