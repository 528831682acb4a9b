//! `paycode bench NAME`: benchmarks that print figures. Human-readable lines
//! first, then, as the last line of standard output, one JSON object that
//! scripts can parse. `e2e`, `layouts`, `pending`, `reconcile` and `replay`
//! live in their own files.
//!
//! `append` measures the embedded SQLite store as the runtime uses it: many
//! tasks each appending single-event commits (a realistic ~300-byte payment
//! event) to their own payment streams, durable (`synchronous=FULL`, answered
//! after commit). It reports throughput, per-append latency and how well group
//! commit batched, and compares with a baseline: the same bytes written and
//! `fdatasync`ed to a plain file in batches of the size group commit achieved.
#![expect(
    clippy::cast_precision_loss,
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    clippy::cast_possible_wrap,
    reason = "benchmark figures are rates and percentiles for people, in f64, of counts far below 2^52"
)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use paycode_adapters::store::{EventStore, ExpectedVersion, NewEvent, SqliteStore};
use uuid::Uuid;

mod e2e;
mod layouts;
mod pending;
mod reconcile;
mod replay;

/// Arguments of `paycode bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Which benchmark: `append`, `e2e`, `layouts`, `pending`, `reconcile` or `replay`.
    pub name: String,
    /// `e2e`: payments to make in total.
    #[arg(long, default_value_t = 20_000)]
    pub payments: u64,
    /// `e2e`: concurrent HTTP clients (each one request in flight at a time).
    #[arg(long, default_value_t = 64)]
    pub clients: u64,
    /// `e2e`: the channel of the instant-pay codes: wechat, alipay or mixed.
    #[arg(long, default_value = "wechat")]
    pub channel: String,
    /// `replay`: events in the ledger the read models are rebuilt from.
    #[arg(long, default_value_t = 5_000_000)]
    pub log_events: u64,
    /// `pending`: orders waiting for the password at once.
    #[arg(long, default_value_t = 100_000)]
    pub orders: u64,
    /// `pending`: simulated seconds per wall second once the clock runs.
    #[arg(long, default_value_t = 0.1)]
    pub speed: f64,
    /// `reconcile`: lines of the day's WeChat bill (the ledger holds about
    /// as many paid orders).
    #[arg(long, default_value_t = 1_000_000)]
    pub lines: u64,
    /// `reconcile`: differences to plant between the bill and the ledger,
    /// spread over the five kinds of finding.
    #[arg(long, default_value_t = 300)]
    pub planted: u64,
    /// `reconcile`: only write the bill to this file, then exit: the bench
    /// runs itself so, in another process, to write its bill.
    #[arg(long, hide = true)]
    pub bill_to: Option<PathBuf>,
    /// `append`, `layouts`: events to append in total.
    #[arg(long, default_value_t = 200_000)]
    pub events: u64,
    /// `layouts`: the layouts to measure, by name (repeat the option for
    /// more than one; default: all of them, in their order).
    #[arg(long = "layout")]
    pub layouts: Vec<String>,
    /// `layouts`: events per commit group (the average group `append`
    /// measures), each group durable before the next.
    #[arg(long, default_value_t = 262)]
    pub group_events: u64,
    /// Concurrent appending tasks (each one append in flight at a time;
    /// `layouts` interleaves their streams round-robin).
    #[arg(long, default_value_t = 512)]
    pub tasks: u64,
    /// Events per payment stream (a payment's lifecycle) before a task
    /// moves on to a new stream.
    #[arg(long, default_value_t = 4)]
    pub events_per_stream: u64,
    /// Tokio worker threads running the appending tasks (the store's writer
    /// is one more thread).
    #[arg(long, default_value_t = 2)]
    pub workers: usize,
    /// Directory for the database and the baseline file, or `reconcile`'s
    /// bill, or `layouts`' temporary directories (default: a new temporary
    /// directory, removed afterwards).
    #[arg(long)]
    pub dir: Option<PathBuf>,
}

/// Runs the benchmark named in `args`.
pub fn run(args: BenchArgs) -> anyhow::Result<()> {
    match args.name.as_str() {
        "append" => append(&args),
        "e2e" => e2e::run(&args),
        "layouts" => layouts::run(&args),
        "pending" => pending::run(&args),
        "reconcile" => reconcile::run(&args),
        "replay" => replay::run(&args),
        other => {
            anyhow::bail!(
                "unknown benchmark {other:?} \
                 (known: append, e2e, layouts, pending, reconcile, replay)"
            )
        }
    }
}

/// The stored event types of a payment's lifecycle, in order.
const LIFECYCLE: [&str; 4] = ["Submitted", "UserPaying", "QueryResult", "PaymentSucceeded"];

fn append(args: &BenchArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.events > 0, "--events must be at least 1");
    anyhow::ensure!(args.tasks > 0, "--tasks must be at least 1");
    anyhow::ensure!(
        args.events_per_stream > 0,
        "--events-per-stream must be at least 1"
    );
    let temp;
    let dir: &Path = if let Some(dir) = &args.dir {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        dir
    } else {
        temp = tempfile::tempdir().context("creating a temporary directory")?;
        temp.path()
    };
    let db_path = dir.join("bench-append.db");
    let baseline_path = dir.join("bench-append.baseline");
    for stale in [&db_path, &baseline_path] {
        remove_if_present(stale)?;
    }
    remove_if_present(&dir.join("bench-append.db-wal"))?;
    remove_if_present(&dir.join("bench-append.db-shm"))?;

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.workers.max(1))
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    let store = Arc::new(
        SqliteStore::open(&db_path).with_context(|| format!("opening {}", db_path.display()))?,
    );
    println!(
        "bench append: {} events, {} tasks, {} events per stream, {} workers, db {}",
        args.events,
        args.tasks,
        args.events_per_stream,
        args.workers,
        db_path.display()
    );

    let started = Instant::now();
    let mut latencies_us = runtime.block_on(append_all(Arc::clone(&store), args))?;
    let elapsed = started.elapsed();
    let stats = store.stats();
    let store = Arc::into_inner(store).context("the store is still shared after the run")?;
    runtime.block_on(store.close())?;

    latencies_us.sort_unstable();
    let events = args.events;
    let secs = elapsed.as_secs_f64();
    let events_per_sec = events as f64 / secs;
    let p50_ms = f64::from(percentile_us(&latencies_us, 50)) / 1000.0;
    let p99_ms = f64::from(percentile_us(&latencies_us, 99)) / 1000.0;
    let max_ms = f64::from(latencies_us.last().copied().unwrap_or(0)) / 1000.0;
    let commits = stats.commits.max(1);
    let avg_batch = stats.events as f64 / commits as f64;
    let db_bytes = file_len(&db_path) + file_len(&dir.join("bench-append.db-wal"));
    println!(
        "sqlite: {events} events in {secs:.3} s = {events_per_sec:.0} events/s; \
         append latency p50 {p50_ms:.2} ms, p99 {p99_ms:.2} ms, max {max_ms:.2} ms"
    );
    println!(
        "group commit: {} commits, {avg_batch:.1} events per commit on average; \
         writer busy {:.1}% of the run (building transactions {:.3} s, committing {:.3} s)",
        stats.commits,
        100.0 * (stats.write_micros + stats.commit_micros) as f64 / 1e6 / secs,
        stats.write_micros as f64 / 1e6,
        stats.commit_micros as f64 / 1e6,
    );
    println!(
        "files: {:.1} MiB (database and WAL)",
        db_bytes as f64 / 1_048_576.0
    );

    let batch_events = (avg_batch.round() as u64).max(1);
    let baseline = baseline_fsync_rate(&baseline_path, events, batch_events)?;
    remove_if_present(&baseline_path)?;
    println!(
        "baseline: the same payload bytes appended to a plain file and fdatasync'ed \
         every {batch_events} events: {baseline:.0} events/s ({:.0}% of it reached)",
        100.0 * events_per_sec / baseline
    );

    // A struct, not `json!`: its fields serialise in this order.
    let summary = Summary {
        bench: "append",
        events,
        secs: round3(secs),
        events_per_sec: events_per_sec.round(),
        p50_append_ms: round3(p50_ms),
        p99_append_ms: round3(p99_ms),
        commits: stats.commits,
        avg_batch: round3(avg_batch),
        baseline_events_per_sec: baseline.round(),
    };
    write_summary(&summary)
}

/// Prints the benchmark's JSON summary as the last line of standard output.
fn write_summary(summary: &impl serde::Serialize) -> anyhow::Result<()> {
    let summary = serde_json::to_string(summary)?;
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{summary}")?;
    stdout.flush()?;
    Ok(())
}

/// The benchmark's working directory: `--dir`, or a temporary one removed afterwards.
struct BenchDir {
    path: PathBuf,
    _temp: Option<tempfile::TempDir>,
}

impl BenchDir {
    fn new(dir: Option<&Path>) -> anyhow::Result<BenchDir> {
        if let Some(dir) = dir {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
            Ok(BenchDir {
                path: dir.to_owned(),
                _temp: None,
            })
        } else {
            let temp = tempfile::tempdir().context("creating a temporary directory")?;
            Ok(BenchDir {
                path: temp.path().to_owned(),
                _temp: Some(temp),
            })
        }
    }

    fn path(&self) -> &Path {
        &self.path
    }
}

/// The last line of `bench append`'s output.
#[derive(Debug, serde::Serialize)]
struct Summary {
    bench: &'static str,
    events: u64,
    secs: f64,
    events_per_sec: f64,
    p50_append_ms: f64,
    p99_append_ms: f64,
    commits: u64,
    avg_batch: f64,
    baseline_events_per_sec: f64,
}

/// Spawns the appending tasks and returns every append's latency in µs.
async fn append_all(store: Arc<SqliteStore>, args: &BenchArgs) -> anyhow::Result<Vec<u32>> {
    let tasks = args.tasks.min(args.events);
    let mut handles = Vec::with_capacity(tasks as usize);
    for task in 0..tasks {
        // Spread the events evenly: the first `events % tasks` tasks do one more.
        let share = args.events / tasks + u64::from(task < args.events % tasks);
        let store = Arc::clone(&store);
        let per_stream = args.events_per_stream;
        handles.push(tokio::spawn(async move {
            append_task(store.as_ref(), task, share, per_stream).await
        }));
    }
    let mut latencies = Vec::with_capacity(args.events as usize);
    for handle in handles {
        latencies.extend(handle.await.context("an appending task panicked")??);
    }
    Ok(latencies)
}

/// One task: `count` single-event appends, `per_stream` to each new payment
/// stream, each waiting for the previous one (as a runtime would).
async fn append_task(
    store: &SqliteStore,
    task: u64,
    count: u64,
    per_stream: u64,
) -> anyhow::Result<Vec<u32>> {
    let mut latencies = Vec::with_capacity(count as usize);
    let mut stream = String::new();
    for index in 0..count {
        let order = index / per_stream;
        let version = index % per_stream;
        if version == 0 {
            stream = format!("payment-m{:04}-{task:05}{order:07}", task % 97);
        }
        let event_type = LIFECYCLE[(version as usize) % LIFECYCLE.len()];
        let event = NewEvent {
            event_id: service_event_id(),
            event_type: event_type.to_owned(),
            schema_version: 1,
            data: payload(event_type, task, order, version),
        };
        let expected = ExpectedVersion::after(version.checked_sub(1));
        let sent = Instant::now();
        store
            .append(&stream, expected, vec![event])
            .await
            .with_context(|| format!("appending to {stream}"))?;
        let micros = sent.elapsed().as_micros();
        latencies.push(u32::try_from(micros).unwrap_or(u32::MAX));
    }
    Ok(latencies)
}

/// A payment event of about 300 bytes, shaped like the domain's.
fn payload(event_type: &str, task: u64, order: u64, version: u64) -> Vec<u8> {
    format!(
        concat!(
            r#"{{"type":"{}","merchant_id":"m{:04}","order_no":"{:05}{:07}","#,
            r#""channel":"wechat","amount_fen":{},"currency":"CNY","#,
            r#""auth_code_masked":"1348**********{:04}","attempt":{},"#,
            r#""request_id":"req-{:016x}","store_id":"S{:03}","terminal_id":"T{:05}","#,
            r#""at":"2025-06-01T12:{:02}:{:02}.{:06}Z","note":"payment-code payment at the counter"}}"#
        ),
        event_type,
        task % 97,
        task,
        order,
        100 + (order * 37 + task) % 99_900,
        (order * 7 + task) % 10_000,
        version,
        (task << 40) ^ (order << 8) ^ version,
        task % 1000,
        order % 100_000,
        order % 60,
        version * 5 % 60,
        order % 1_000_000,
    )
    .into_bytes()
}

/// Event ids as the service makes them: each command gets a time-ordered
/// (version 7) id and its events derive from it (`CommandId::event_id`), so
/// the store's id index grows at one end instead of at random pages.
fn service_event_id() -> Uuid {
    paycode_domain::CommandId(Uuid::now_v7()).event_id(0)
}

/// The same payload bytes appended to a plain file, `fdatasync` after every
/// `batch_events` events: the rate the disk allows for this much durability.
fn baseline_fsync_rate(path: &Path, events: u64, batch_events: u64) -> anyhow::Result<f64> {
    let mut file =
        std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    let batch: Vec<u8> = (0..batch_events)
        .flat_map(|index| {
            payload(
                LIFECYCLE[(index % 4) as usize],
                index % 512,
                index,
                index % 4,
            )
        })
        .collect();
    let started = Instant::now();
    let mut written = 0;
    while written < events {
        let take = batch_events.min(events - written);
        let bytes = batch.len() as u64 * take / batch_events;
        file.write_all(&batch[..bytes as usize])?;
        file.sync_data()?;
        written += take;
    }
    let elapsed = started.elapsed().max(Duration::from_micros(1));
    Ok(events as f64 / elapsed.as_secs_f64())
}

fn percentile_us(sorted: &[u32], percent: usize) -> u32 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = (sorted.len() * percent)
        .div_ceil(100)
        .clamp(1, sorted.len());
    sorted[rank - 1]
}

fn round3(value: f64) -> f64 {
    (value * 1000.0).round() / 1000.0
}

fn file_len(path: &Path) -> u64 {
    std::fs::metadata(path).map_or(0, |meta| meta.len())
}

fn remove_if_present(path: &Path) -> anyhow::Result<()> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(error) => Err(error).with_context(|| format!("removing {}", path.display())),
    }
}

/// What `paycode serve` runs beside the SQLite ledger at `db_path` (opened
/// already), so that a benchmark measures the same path: the step leases in
/// the ledger's file and the read models in a new file beside it.
fn serving_beside(
    store: &SqliteStore,
    db_path: &Path,
) -> anyhow::Result<(
    Arc<dyn paycode_adapters::lease::StepLease>,
    Arc<dyn paycode_adapters::read_models::ReadModelStore>,
)> {
    let views_path = paycode_adapters::read_models::SqliteReadModelStore::path_beside(db_path);
    for suffix in ["", "-wal", "-shm"] {
        let mut name = views_path.as_os_str().to_owned();
        name.push(suffix);
        remove_if_present(Path::new(&name))?;
    }
    Ok((
        Arc::new(store.leases()),
        crate::read::runner::open_read_models(&views_path)
            .with_context(|| format!("opening {}", views_path.display()))?,
    ))
}
