//! `paycode bench e2e`: the whole path of a payment, as a merchant's backend
//! sees it. Concurrent HTTP clients create payments with instant-pay test
//! codes (`…00`) and `?wait`, so each answer comes once the order is paid:
//! request parsing, the durable `Submitted`, the signed pay call to the
//! in-process sandbox over HTTP, the `Paid` append on the SQLite store, and
//! the answer. Rate limits (the API's and the channels') are lifted. The
//! service runs as `paycode serve` runs on a SQLite ledger: the store's
//! step leases and the read models in their file beside the ledger.
//!
//! Beside its figures it prints two floors measured in the same run: the
//! rate of a trivial axum handler (parse the body, answer `paid`) driven by
//! the same clients over the same connections, which no payment path can
//! beat on this machine, and the CPU time the process spent per payment
//! (every thread: the API, the runtime, the store's writer and the
//! in-process sandbox playing the channel).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use anyhow::Context;
use axum::response::IntoResponse;
use paycode_adapters::channel::rate_limit::RateLimits;
use paycode_adapters::clock::{Clock, SystemClock};
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
    /// CPU time of the whole process per payment (all threads, the
    /// in-process sandbox included).
    cpu_ms_per_payment: f64,
    /// The trivial handler's rate over the same clients: the floor.
    floor_payments_per_sec: f64,
    floor_p99_ms: f64,
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
    let (leases, views) = super::serving_beside(&store, &db_path)?;
    let service = Service::start_with_views(
        Parts {
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
            leases,
            ids: Arc::new(paycode_adapters::ids::RandomIds),
        },
        Some(views),
    )
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

    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(args.clients as usize)
        .build()?;
    let cpu_before = process_cpu_secs();
    let started = Instant::now();
    let mut latencies_us = drive(&client, &base, args).await?;
    let secs = started.elapsed().as_secs_f64();
    let cpu_secs = process_cpu_secs() - cpu_before;
    service.shutdown().await;
    let floor = floor(&client, args).await?;

    latencies_us.sort_unstable();
    let payments_per_sec = args.payments as f64 / secs;
    let p50_ms = f64::from(percentile_us(&latencies_us, 50)) / 1000.0;
    let p99_ms = f64::from(percentile_us(&latencies_us, 99)) / 1000.0;
    let cpu_ms_per_payment = 1000.0 * cpu_secs / args.payments as f64;
    println!(
        "{} payments paid in {secs:.3} s = {payments_per_sec:.0} payments/s; \
         latency until paid p50 {p50_ms:.2} ms, p99 {p99_ms:.2} ms; \
         {cpu_ms_per_payment:.3} ms of CPU per payment (all threads)",
        args.payments
    );
    println!(
        "floor: a trivial handler over the same clients answers {:.0} requests/s, \
         p99 {:.2} ms ({:.0}% of it reached)",
        floor.per_sec,
        floor.p99_ms,
        100.0 * payments_per_sec / floor.per_sec
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
        cpu_ms_per_payment: round3(cpu_ms_per_payment),
        floor_payments_per_sec: floor.per_sec.round(),
        floor_p99_ms: round3(floor.p99_ms),
    })
}

/// Runs `args.clients` clients, each one request in flight, until
/// `args.payments` payments are made on `base`; every latency in µs.
async fn drive(client: &reqwest::Client, base: &str, args: &BenchArgs) -> anyhow::Result<Vec<u32>> {
    let next = Arc::new(AtomicU64::new(0));
    let mut handles = Vec::new();
    for _ in 0..args.clients {
        let (next, client, base) = (next.clone(), client.clone(), base.to_owned());
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
    Ok(latencies_us)
}

/// What the trivial handler reached.
#[derive(Debug)]
struct Floor {
    per_sec: f64,
    p99_ms: f64,
}

/// The same clients and requests against a handler that only parses the
/// body and answers `paid`: HTTP, JSON and the client's own cost, nothing
/// of paycode's.
async fn floor(client: &reqwest::Client, args: &BenchArgs) -> anyhow::Result<Floor> {
    async fn paid(axum::Json(body): axum::Json<serde_json::Value>) -> impl IntoResponse {
        (
            axum::http::StatusCode::CREATED,
            axum::Json(serde_json::json!({"order_no": body["order_no"], "status": "paid"})),
        )
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let app = axum::Router::new().route("/v1/payments", axum::routing::post(paid));
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    let started = Instant::now();
    let mut latencies_us = drive(client, &base, args).await?;
    let secs = started.elapsed().as_secs_f64();
    server.abort();
    latencies_us.sort_unstable();
    Ok(Floor {
        per_sec: args.payments as f64 / secs,
        p99_ms: f64::from(percentile_us(&latencies_us, 99)) / 1000.0,
    })
}

/// CPU seconds this process has used so far, every thread (user and
/// system, from `/proc/self/stat`); 0 where that file does not exist.
fn process_cpu_secs() -> f64 {
    std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|stat| cpu_secs_of_stat(&stat))
        .unwrap_or(0.0)
}

/// User plus system time of a `/proc/PID/stat` line, in seconds (the
/// kernel reports them in fixed 100 Hz ticks, whatever its own tick rate).
fn cpu_secs_of_stat(stat: &str) -> Option<f64> {
    // The command name (field 2) is in parentheses and may hold spaces or
    // parentheses itself: count from after its last `)`.
    let (_, after_name) = stat.rsplit_once(')')?;
    let mut fields = after_name.split_whitespace();
    // Field 3 (the state) comes first here; utime and stime are fields 14
    // and 15 of the line.
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some((utime + stime) as f64 / 100.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_time_is_read_from_utime_and_stime_after_a_name_with_spaces() {
        let line = "4242 (paycode (bench) x) R 1 4242 4242 0 -1 4194560 900 0 0 0 \
                    250 75 0 0 20 0 9 0 100 1000000 500";
        assert_eq!(cpu_secs_of_stat(line), Some(3.25));
        assert_eq!(cpu_secs_of_stat("4242 (short) R 1 2"), None);
    }
}
