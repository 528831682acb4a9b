//! `paycode bench e2e`: the whole path of a payment, as a merchant's backend
//! sees it. Concurrent HTTP clients create payments with instant-pay test
//! codes (`…00`) and `?wait`, so each answer comes once the order is paid:
//! request parsing, the durable `Submitted`, the signed pay call to the
//! in-process sandbox over HTTP, the `Paid` append on the SQLite store, and
//! the answer. Rate limits (the API's and the channels') are lifted.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use anyhow::Context;
use paycode_adapters::channel::rate_limit::RateLimits;
use paycode_adapters::clock::{Clock, SystemClock};
use paycode_adapters::lease::LocalLeases;
use paycode_adapters::store::SqliteStore;
use paycode_domain::{MerchantId, Policy};

use super::{BenchArgs, percentile_us, round3, write_summary};
use crate::config::embedded::{DEMO_API_KEY, DEMO_MERCHANT, InProcessSandbox, SandboxOptions};
use crate::http::ApiKey;
use crate::service::{Parts, Service};

/// The last line of `bench e2e`'s output.
#[derive(Debug, serde::Serialize)]
struct Summary {
    bench: &'static str,
    payments: u64,
    secs: f64,
    payments_per_sec: f64,
    p50_ms: f64,
    p99_ms: f64,
    clients: u64,
    channel: String,
}

/// An instant-pay code of the channel (`…00`), made unique per payment so
/// the sandbox's records look like real traffic.
fn instant_code(channel: &str, n: u64) -> String {
    match channel {
        "alipay" => format!("28{:012}00", n % 1_000_000_000_000),
        _ => format!("13{:014}00", n % 100_000_000_000_000),
    }
}

pub fn run(args: &BenchArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.payments > 0, "--payments must be at least 1");
    anyhow::ensure!(args.clients > 0, "--clients must be at least 1");
    anyhow::ensure!(
        matches!(args.channel.as_str(), "wechat" | "alipay" | "mixed"),
        "--channel must be wechat, alipay or mixed"
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.workers.max(1))
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    runtime.block_on(e2e(args))
}

async fn e2e(args: &BenchArgs) -> anyhow::Result<()> {
    let dir = super::BenchDir::new(args.dir.as_deref())?;
    let db_path = dir.path().join("bench-e2e.db");
    for suffix in ["", "-wal", "-shm"] {
        super::remove_if_present(&dir.path().join(format!("bench-e2e.db{suffix}")))?;
    }
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let in_process = InProcessSandbox::for_demo(
        SandboxOptions {
            rate_limits: Some(RateLimits::LIFTED),
            ..SandboxOptions::default()
        },
        clock.clone(),
    )
    .await?;
    let store = Arc::new(
        SqliteStore::open(&db_path).with_context(|| format!("opening {}", db_path.display()))?,
    );
    let service = Service::start(Parts {
        store,
        channels: in_process.channels.clone(),
        clock,
        policy: Policy::default(),
        api_keys: vec![ApiKey::full(
            DEMO_API_KEY,
            MerchantId::parse(DEMO_MERCHANT)?,
            "api_keys[0]",
        )],
        limits: crate::http::limits::ServerLimits::unthrottled(),
        fingerprint_key: crate::service::fingerprint::FingerprintKey::random(),
        leases: Arc::new(LocalLeases),
        ids: Arc::new(paycode_adapters::ids::RandomIds),
    })
    .await?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let app = service.router();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    println!(
        "bench e2e: {} payments ({}), {} clients, {} workers, SQLite {}",
        args.payments,
        args.channel,
        args.clients,
        args.workers,
        db_path.display()
    );

    let next = Arc::new(AtomicU64::new(0));
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(args.clients as usize)
        .build()?;
    let started = Instant::now();
    let mut handles = Vec::new();
    for _ in 0..args.clients {
        let (next, client, base) = (next.clone(), client.clone(), base.clone());
        let (total, channel) = (args.payments, args.channel.clone());
        handles.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= total {
                    return Ok::<_, anyhow::Error>(latencies);
                }
                let channel = match channel.as_str() {
                    "mixed" if n % 2 == 1 => "alipay",
                    "mixed" => "wechat",
                    other => other,
                };
                let body = serde_json::json!({
                    "order_no": format!("E{n:09}"),
                    "auth_code": instant_code(channel, n),
                    "amount": "12.34",
                    "subject": "bench",
                });
                let sent = Instant::now();
                let response = client
                    .post(format!("{base}/v1/payments?wait=10"))
                    .bearer_auth(DEMO_API_KEY)
                    .json(&body)
                    .send()
                    .await?;
                let status = response.status();
                let payment: serde_json::Value = response.json().await?;
                let micros = sent.elapsed().as_micros();
                anyhow::ensure!(
                    status.is_success() && payment["status"] == "paid",
                    "payment {n} answered {status}: {payment}"
                );
                latencies.push(u32::try_from(micros).unwrap_or(u32::MAX));
            }
        }));
    }
    let mut latencies_us = Vec::with_capacity(args.payments as usize);
    for handle in handles {
        latencies_us.extend(handle.await.context("a client panicked")??);
    }
    let secs = started.elapsed().as_secs_f64();
    service.shutdown().await;

    latencies_us.sort_unstable();
    let payments_per_sec = args.payments as f64 / secs;
    let p50_ms = f64::from(percentile_us(&latencies_us, 50)) / 1000.0;
    let p99_ms = f64::from(percentile_us(&latencies_us, 99)) / 1000.0;
    println!(
        "{} payments paid in {secs:.3} s = {payments_per_sec:.0} payments/s; \
         latency until paid p50 {p50_ms:.2} ms, p99 {p99_ms:.2} ms",
        args.payments
    );
    write_summary(&Summary {
        bench: "e2e",
        payments: args.payments,
        secs: round3(secs),
        payments_per_sec: payments_per_sec.round(),
        p50_ms: round3(p50_ms),
        p99_ms: round3(p99_ms),
        clients: args.clients,
        channel: args.channel.clone(),
    })
}
