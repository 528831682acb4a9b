//! `paycode bench pending`: many orders waiting for a password at once, and
//! how late their queries come.
//!
//! Setup, with the simulated clock stopped: `--orders` payments with the
//! never-pays code (`…02`) go through the runtime to the in-process sandbox
//! (SQLite ledger, read models and sandbox state in files, and the store's
//! step leases, as `paycode serve` runs), their creation spread evenly
//! over one poll interval of simulated time, so their first queries fall due
//! evenly over the next interval. Once every order waits, the process's
//! resident memory growth per pending order is measured.
//!
//! Run: the simulated clock starts at the first due time and runs at
//! `--speed` simulated seconds per wall second (queries due per wall second =
//! orders / poll interval × speed). Each order's lateness is the time from
//! its due time to the recorded query answer, in wall milliseconds: timer
//! wake-up, dispatch, the signed query over HTTP, and the durable append.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration as StdDuration, Instant};

use anyhow::Context;
use async_trait::async_trait;
use chrono::{DateTime, Duration, Utc};
use paycode_adapters::channel::rate_limit::RateLimits;
use paycode_adapters::clock::Clock;
use paycode_adapters::store::{EventStore, SqliteStore};
use paycode_domain::payment::{Event, Fact, SubmitPayment, UserPaying};

use paycode_domain::{AuthCode, CommandId, MerchantId, Money, OrderNo, Policy};
use tokio::sync::{Semaphore, watch};
use uuid::Uuid;

use super::{BenchArgs, percentile_us, round3, write_summary};
use crate::config::embedded::{DEMO_API_KEY, DEMO_MERCHANT, InProcessSandbox, SandboxOptions};
use crate::http::ApiKey;
use crate::service::{Parts, Service};

/// The last line of `bench pending`'s output.
#[derive(Debug, serde::Serialize)]
struct Summary {
    bench: &'static str,
    orders: u64,
    p99_lateness_ms: f64,
    rss_bytes_per_order: u64,
    /// The part of `rss_bytes_per_order` the process allocated.
    anon_bytes_per_order: u64,
    /// The part that is file pages mapped (the ledger read in place).
    file_bytes_per_order: u64,
    /// What each order of the second half added: the per-order cost,
    /// without the fixed costs the average spreads over the orders.
    marginal_rss_bytes_per_order: u64,
    marginal_anon_bytes_per_order: u64,
    p50_lateness_ms: f64,
    max_lateness_ms: f64,
    speed: f64,
    queries_per_sec: f64,
}

/// A simulated clock that is either stopped at an instant or running at a
/// fixed speed from an instant. Sleepers wake when it passes their time.
#[derive(Debug)]
struct SimClock {
    state: Mutex<SimState>,
    changed: watch::Sender<()>,
}

#[derive(Debug, Clone, Copy)]
enum SimState {
    Stopped(DateTime<Utc>),
    Running {
        from: DateTime<Utc>,
        since: Instant,
        speed: f64,
    },
}

impl SimClock {
    fn stopped_at(at: DateTime<Utc>) -> Self {
        SimClock {
            state: Mutex::new(SimState::Stopped(at)),
            changed: watch::Sender::new(()),
        }
    }

    fn set(&self, at: DateTime<Utc>) {
        *self.state.lock().expect("clock lock") = SimState::Stopped(at);
        self.changed.send_replace(());
    }

    fn run_from(&self, from: DateTime<Utc>, speed: f64) {
        *self.state.lock().expect("clock lock") = SimState::Running {
            from,
            since: Instant::now(),
            speed,
        };
        self.changed.send_replace(());
    }

    fn state(&self) -> SimState {
        *self.state.lock().expect("clock lock")
    }
}

fn simulated(real: StdDuration, speed: f64) -> Duration {
    Duration::microseconds((real.as_micros() as f64 * speed) as i64)
}

#[async_trait]
impl Clock for SimClock {
    fn now(&self) -> DateTime<Utc> {
        match self.state() {
            SimState::Stopped(at) => at,
            SimState::Running { from, since, speed } => from + simulated(since.elapsed(), speed),
        }
    }

    async fn sleep_until(&self, at: DateTime<Utc>) {
        let mut changes = self.changed.subscribe();
        loop {
            let wait = match self.state() {
                SimState::Stopped(now) if now >= at => return,
                SimState::Stopped(_) => None,
                SimState::Running { from, since, speed } => {
                    let now = from + simulated(since.elapsed(), speed);
                    if now >= at {
                        return;
                    }
                    let sim_micros = (at - now).num_microseconds().unwrap_or(i64::MAX);
                    Some(StdDuration::from_micros(
                        (sim_micros as f64 / speed).ceil() as u64
                    ))
                }
            };
            match wait {
                Some(wait) => {
                    tokio::select! {
                        () = tokio::time::sleep(wait) => {}
                        _ = changes.changed() => {}
                    }
                }
                None => {
                    let _ = changes.changed().await;
                }
            }
        }
    }
}

/// Resident memory of this process, from `/proc/self/statm` (0 elsewhere).
fn rss_bytes() -> u64 {
    const PAGE: u64 = 4096;
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|statm| statm.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |pages| pages * PAGE)
}

/// Resident memory in two parts: anonymous (the heap: what the process
/// allocated) and file pages mapped (mostly the ledger's pages that the
/// read connections map, shared with the kernel's page cache and dropped
/// under memory pressure), in bytes; zeros where `/proc` has no such lines.
fn rss_parts() -> (u64, u64) {
    (
        super::reconcile::proc_status_bytes("RssAnon:"),
        super::reconcile::proc_status_bytes("RssFile:"),
    )
}

/// The process's resident memory at one moment, less the bench's own map
/// of due times (its strings and table), which paycode does not hold.
#[derive(Debug, Default, Clone, Copy)]
struct Memory {
    rss: u64,
    anon: u64,
    file: u64,
}

impl Memory {
    async fn now(due: &HashMap<String, DateTime<Utc>>) -> Memory {
        // Settle the allocator before reading the figures.
        tokio::time::sleep(StdDuration::from_millis(200)).await;
        let bench_own =
            due.capacity() as u64 * 48 + due.keys().map(|key| key.len() as u64).sum::<u64>();
        let (anon, file) = rss_parts();
        Memory {
            rss: rss_bytes().saturating_sub(bench_own),
            anon: anon.saturating_sub(bench_own),
            file,
        }
    }
}

pub fn run(args: &BenchArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.orders > 0, "--orders must be at least 1");
    anyhow::ensure!(
        args.speed > 0.0 && args.speed <= 1000.0,
        "--speed must be above 0 and at most 1000"
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.workers.max(1))
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    runtime.block_on(pending(args))
}

async fn pending(args: &BenchArgs) -> anyhow::Result<()> {
    let dir = super::BenchDir::new(args.dir.as_deref())?;
    for name in ["bench-pending.db", "bench-pending-sandbox.db"] {
        for suffix in ["", "-wal", "-shm"] {
            super::remove_if_present(&dir.path().join(format!("{name}{suffix}")))?;
        }
    }
    let policy = Policy::default();
    let poll = Duration::seconds(i64::from(policy.poll_interval_secs));
    let start = Utc::now();
    let clock = Arc::new(SimClock::stopped_at(start));
    let shared: Arc<dyn Clock> = clock.clone();
    let in_process = InProcessSandbox::for_demo(
        SandboxOptions {
            // In a file, so the sandbox's truth stays out of this process's
            // memory figure; not synced, so it does not slow the channel down.
            state_path: Some(dir.path().join("bench-pending-sandbox.db")),
            state_durable: false,
            rate_limits: Some(RateLimits::LIFTED),
            ..SandboxOptions::default()
        },
        shared.clone(),
    )
    .await?;
    let db_path = dir.path().join("bench-pending.db");
    let opened =
        SqliteStore::open(&db_path).with_context(|| format!("opening {}", db_path.display()))?;
    let (leases, views) = super::serving_beside(&opened, &db_path)?;
    let store: Arc<dyn EventStore> = Arc::new(opened);
    let merchant = MerchantId::parse(DEMO_MERCHANT)?;
    let service = Service::start_with_views(
        Parts {
            store: store.clone(),
            channels: in_process.channels.clone(),
            clock: shared,
            policy,
            api_keys: vec![ApiKey::full(DEMO_API_KEY, merchant.clone(), "api_keys[0]")],
            limits: crate::http::limits::ServerLimits::unthrottled(),
            fingerprint_key: crate::service::fingerprint::FingerprintKey::random(),
            leases,
            ids: Arc::new(paycode_adapters::ids::RandomIds),
        },
        Some(views),
    )
    .await?;
    let runtime = service.runtime().clone();
    println!(
        "bench pending: {} orders waiting for the password, poll every {} s, speed {}",
        args.orders,
        poll.num_seconds(),
        args.speed
    );

    // Setup: every order submitted and answered USERPAYING, clock stopped;
    // memory read when half of them wait, and when all of them do.
    let rss_before = rss_bytes();
    let (anon_before, file_before) = rss_parts();
    let setup_started = Instant::now();
    let in_flight = Arc::new(Semaphore::new(256));
    let step = poll / i32::try_from(args.orders).unwrap_or(i32::MAX);
    let amount = Money::from_fen(100)?;
    let mut due: HashMap<String, DateTime<Utc>> = HashMap::new();
    let mut position = 1;
    let half = args.orders / 2;
    let mut at_half = Memory::default();
    for orders in [0..half, half..args.orders] {
        let waiting = orders.end;
        for n in orders {
            clock.set(start + step * i32::try_from(n).unwrap_or(i32::MAX));
            let permit = in_flight.clone().acquire_owned().await?;
            let (runtime, merchant) = (runtime.clone(), merchant.clone());
            tokio::spawn(async move {
                let order_no = OrderNo::parse(&format!("P{n:09}")).expect("a valid order number");
                let code = AuthCode::parse(&format!("13{n:014}02")).expect("a valid code");
                let result = runtime
                    .submit(
                        CommandId(Uuid::now_v7()),
                        None,
                        SubmitPayment {
                            merchant_id: merchant,
                            order_no: order_no.clone(),
                            auth_code: code,
                            auth_code_fingerprint: None,
                            amount,
                            subject: "bench".into(),
                        },
                    )
                    .await;
                if let Err(error) = result {
                    eprintln!("submitting {order_no}: {error}");
                }
                drop(permit);
            });
        }
        // Every pay answer recorded: as many `UserPaying` as orders so far.
        while (due.len() as u64) < waiting {
            let events = store.read_all(position, 4096).await?;
            if events.is_empty() {
                anyhow::ensure!(
                    setup_started.elapsed() < StdDuration::from_secs(600),
                    "only {} of {} orders got their pay answer within 10 minutes",
                    due.len(),
                    args.orders
                );
                tokio::time::sleep(StdDuration::from_millis(20)).await;
                continue;
            }
            for recorded in &events {
                position = recorded.position + 1;
                if recorded.event_type == "UserPaying" {
                    let event: Event = recorded.decode()?;
                    if let Fact::UserPaying(UserPaying { next_query_at, .. }) = event.fact {
                        due.insert(recorded.stream.clone(), next_query_at);
                    }
                }
            }
        }
        if waiting == half {
            at_half = Memory::now(&due).await;
        }
    }
    clock.set(start + poll);
    let setup_secs = setup_started.elapsed().as_secs_f64();
    let at_end = Memory::now(&due).await;
    let per_order =
        |after: u64, before: u64, orders: u64| after.saturating_sub(before) / orders.max(1);
    let rss_per_order = per_order(at_end.rss, rss_before, args.orders);
    let anon_per_order = per_order(at_end.anon, anon_before, args.orders);
    let file_per_order = per_order(at_end.file, file_before, args.orders);
    let second_half = args.orders - half;
    let marginal_rss = per_order(at_end.rss, at_half.rss, second_half);
    let marginal_anon = per_order(at_end.anon, at_half.anon, second_half);
    let marginal_file = per_order(at_end.file, at_half.file, second_half);
    println!(
        "setup: {} orders waiting after {setup_secs:.1} s; {} pending timers; resident memory +{:.1} MiB \
         ({rss_per_order} bytes per pending order: {anon_per_order} allocated, {file_per_order} of file pages mapped)",
        args.orders,
        runtime.pending_orders(),
        at_end.rss.saturating_sub(rss_before) as f64 / 1_048_576.0,
    );
    println!(
        "memory: each order of the second half added {marginal_rss} bytes ({marginal_anon} allocated, \
         {marginal_file} of file pages mapped); the rest of the average is fixed (caches, connections); \
         the bench's own due-time map is left out of every figure"
    );

    // Run: the clock moves; every first query is answered and recorded.
    let first_due = due.values().min().copied().unwrap_or(start + poll);
    clock.run_from(first_due, args.speed);
    let run_started = Instant::now();
    let mut lateness_us: Vec<u32> = Vec::with_capacity(args.orders as usize);
    let mut queried: HashSet<String> = HashSet::with_capacity(args.orders as usize);
    let patience = StdDuration::from_secs_f64(poll.num_seconds() as f64 / args.speed + 120.0);
    while (queried.len() as u64) < args.orders {
        let events = store.read_all(position, 4096).await?;
        if events.is_empty() {
            anyhow::ensure!(
                run_started.elapsed() < patience,
                "only {} of {} orders were queried in time",
                queried.len(),
                args.orders
            );
            tokio::time::sleep(StdDuration::from_millis(5)).await;
            continue;
        }
        for recorded in &events {
            position = recorded.position + 1;
            if recorded.event_type != "QueryResult" || queried.contains(&recorded.stream) {
                continue;
            }
            let Some(due_at) = due.get(&recorded.stream) else {
                continue;
            };
            let event: Event = recorded.decode()?;
            let late_sim_us = (event.at - *due_at).num_microseconds().unwrap_or(0).max(0);
            let late_us = (late_sim_us as f64 / args.speed) as u64;
            lateness_us.push(u32::try_from(late_us).unwrap_or(u32::MAX));
            queried.insert(recorded.stream.clone());
        }
    }
    let run_secs = run_started.elapsed().as_secs_f64();
    drop(service);

    lateness_us.sort_unstable();
    let p50 = f64::from(percentile_us(&lateness_us, 50)) / 1000.0;
    let p99 = f64::from(percentile_us(&lateness_us, 99)) / 1000.0;
    let max = f64::from(lateness_us.last().copied().unwrap_or(0)) / 1000.0;
    let queries_per_sec = args.orders as f64 / run_secs;
    println!(
        "run: {} first queries in {run_secs:.1} s ({queries_per_sec:.0} queries/s); \
         lateness p50 {p50:.1} ms, p99 {p99:.1} ms, max {max:.1} ms",
        args.orders
    );
    write_summary(&Summary {
        bench: "pending",
        orders: args.orders,
        p99_lateness_ms: round3(p99),
        rss_bytes_per_order: rss_per_order,
        anon_bytes_per_order: anon_per_order,
        file_bytes_per_order: file_per_order,
        marginal_rss_bytes_per_order: marginal_rss,
        marginal_anon_bytes_per_order: marginal_anon,
        p50_lateness_ms: round3(p50),
        max_lateness_ms: round3(max),
        speed: args.speed,
        queries_per_sec: queries_per_sec.round(),
    })
}
