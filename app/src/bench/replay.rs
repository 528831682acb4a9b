//! `paycode bench replay`: how fast every read model is rebuilt from the log.
//!
//! Setup (timed on its own line): a SQLite ledger of at least `--events`
//! events, made of whole payment histories driven through the real decider
//! by `next_action` (`paycode_projections::sample`: paid, refunded, revoked,
//! manual reviews), each history appended as one batch by concurrent tasks
//! on the stream of the order its `Submitted` names. The setup ends by
//! checking the ledger as `paycode verify` does, and stops the benchmark if
//! it has any problem: figures of a ledger that does not verify are
//! figures of something paycode never writes.
//! Timed: [`crate::read::rebuild::rebuild`], the fold `paycode replay` runs (read
//! the log in global order in batches, decode, apply to every projection).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use anyhow::Context;
use indicatif::ProgressBar;
use paycode_adapters::store::{EventStore, ExpectedVersion, NewEvent, SqliteStore};
use paycode_domain::CommandId;
use paycode_domain::stored;
use paycode_projections::sample;
use uuid::Uuid;

use super::{BenchArgs, round3, write_summary};

/// Appending tasks while the ledger is built.
const WRITERS: u64 = 256;

/// The last line of `bench replay`'s output.
#[derive(Debug, serde::Serialize)]
struct Summary {
    bench: &'static str,
    events: u64,
    secs: f64,
    events_per_sec: f64,
    orders: u64,
    /// Whether the ledger was left in `--dir` by an earlier run.
    reused: bool,
    setup_secs: f64,
    /// Reading the log alone, in the rebuild's batches (no decoding).
    read_secs: f64,
    /// `paycode verify` of the ledger at the end of the setup (not in `setup_secs`).
    verify_secs: f64,
}

/// The merchant of the benchmark's orders.
const MERCHANT: &str = "bench";

pub fn run(args: &BenchArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.log_events > 0, "--log-events must be at least 1");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.workers.max(1))
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    runtime.block_on(replay(args.log_events, args.dir.as_deref()))
}

/// Appends whole sample histories until at least `events` are stored; returns the orders made.
async fn fill(store: Arc<SqliteStore>, events: u64) -> anyhow::Result<u64> {
    let appended = Arc::new(AtomicU64::new(0));
    let next_order = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..WRITERS {
        let (store, appended, next_order) = (store.clone(), appended.clone(), next_order.clone());
        tasks.push(tokio::spawn(async move {
            while appended.load(Ordering::Relaxed) < events {
                let index = next_order.fetch_add(1, Ordering::Relaxed);
                let index = usize::try_from(index).expect("fewer orders than usize::MAX");
                let mut rng = sample::Rng::new(index as u64);
                let history = sample::order_events(MERCHANT, index, &mut rng);
                let stream = sample::stream(MERCHANT, index);
                let command = CommandId(Uuid::now_v7());
                let batch: Vec<NewEvent> = history
                    .iter()
                    .enumerate()
                    .map(|(n, event)| NewEvent::encoded(command.event_id(n), stored::encode(event)))
                    .collect();
                let count = batch.len() as u64;
                store
                    .append(&stream, ExpectedVersion::NoStream, batch)
                    .await
                    .with_context(|| format!("appending {stream}"))?;
                appended.fetch_add(count, Ordering::Relaxed);
            }
            anyhow::Ok(())
        }));
    }
    for task in tasks {
        task.await.context("a writer panicked")??;
    }
    Ok(next_order.load(Ordering::Relaxed))
}

async fn replay(events: u64, dir: Option<&std::path::Path>) -> anyhow::Result<()> {
    let bench_dir = super::BenchDir::new(dir)?;
    let db_path = bench_dir.path().join("bench-replay.db");
    // A ledger left in `--dir` by an earlier run is reused when it is large
    // enough: building 5M events takes minutes, rebuilding them seconds.
    let reused = match dir {
        Some(_) if db_path.exists() => {
            let store = SqliteStore::open(&db_path)
                .with_context(|| format!("opening {}", db_path.display()))?;
            let head = store.head_position().await?;
            store.close().await?;
            head >= events
        }
        _ => false,
    };
    if !reused {
        for suffix in ["", "-wal", "-shm"] {
            super::remove_if_present(&bench_dir.path().join(format!("bench-replay.db{suffix}")))?;
        }
    }
    let store = Arc::new(
        SqliteStore::open(&db_path).with_context(|| format!("opening {}", db_path.display()))?,
    );
    let setup_started = Instant::now();
    if reused {
        println!(
            "bench replay: reusing the ledger in {} (it holds at least {events} events)",
            db_path.display()
        );
    } else {
        println!(
            "bench replay: building a ledger of at least {events} events in {}",
            db_path.display()
        );
        let orders = fill(store.clone(), events).await?;
        println!("setup: {orders} orders appended");
    }
    let head = store.head_position().await?;
    let setup_secs = setup_started.elapsed().as_secs_f64();
    println!("setup: {head} events in {setup_secs:.1} s");
    let verify_secs = verify_or_stop(&store, &db_path).await?;

    // The floor: reading the same batches and nothing else.
    let started = Instant::now();
    let read = read_everything(store.as_ref(), head).await?;
    let read_secs = started.elapsed().as_secs_f64();
    println!(
        "read alone: {read} events in {read_secs:.2} s = {:.0} events/s",
        read as f64 / read_secs
    );

    let started = Instant::now();
    let (projections, replayed) =
        crate::read::rebuild::rebuild(store.as_ref(), head, &ProgressBar::hidden()).await?;
    let secs = started.elapsed().as_secs_f64();
    anyhow::ensure!(
        replayed == head,
        "replayed {replayed} events of {head}: the rebuild skipped some"
    );
    let events_per_sec = replayed as f64 / secs;
    println!(
        "rebuild: {replayed} events into every read model in {secs:.2} s = {events_per_sec:.0} events/s (up to position {})",
        projections.position()
    );
    write_summary(&Summary {
        bench: "replay",
        events: replayed,
        secs: round3(secs),
        events_per_sec: events_per_sec.round(),
        orders: projections.orders_in_memory() as u64,
        reused,
        setup_secs: round3(setup_secs),
        read_secs: round3(read_secs),
        verify_secs: round3(verify_secs),
    })
}

/// Checks the ledger as `paycode verify` does; any problem stops the
/// benchmark, naming the first few. Returns the seconds it took.
async fn verify_or_stop(store: &Arc<SqliteStore>, path: &std::path::Path) -> anyhow::Result<f64> {
    let started = Instant::now();
    let checked = Arc::clone(store);
    let report = tokio::task::spawn_blocking(move || {
        crate::read::verify::verify_sqlite(&checked, &ProgressBar::hidden())
    })
    .await
    .context("the verify task")??;
    let secs = started.elapsed().as_secs_f64();
    if !report.is_clean() {
        let first: Vec<String> = report
            .problems
            .iter()
            .take(3)
            .map(ToString::to_string)
            .collect();
        anyhow::bail!(
            "the ledger in {} does not verify: {} problems in {} events (first: {}). \
             A ledger left in --dir by an older paycode may predate a fix: remove it and run again",
            path.display(),
            report.problems.len(),
            report.events,
            first.join("; ")
        );
    }
    let rate = report.events as f64 / secs.max(f64::EPSILON);
    println!(
        "setup: verified {} streams, {} events: 0 problems in {secs:.2} s = {rate:.0} events/s",
        report.streams, report.events
    );
    Ok(secs)
}

/// Reads positions `1..=head` in the rebuild's batches; returns the events read.
async fn read_everything(store: &SqliteStore, head: u64) -> anyhow::Result<u64> {
    let mut read = 0;
    while read < head {
        let batch = store
            .read_all(read + 1, crate::read::rebuild::REBUILD_BATCH_MAX)
            .await?;
        let Some(last) = batch.last() else { break };
        read = last.position;
    }
    Ok(read)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_ledger_holds_at_least_the_events_asked_for_and_the_rebuild_reads_them_all() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(SqliteStore::open(dir.path().join("r.db")).unwrap());
        let orders = fill(store.clone(), 2_000).await.unwrap();
        let head = store.head_position().await.unwrap();
        assert!(head >= 2_000, "{head}");
        assert!(orders > 100, "{orders}");
        // The ledger is one `paycode verify` passes: the setup's own check.
        verify_or_stop(&store, &dir.path().join("r.db"))
            .await
            .unwrap();
        let report = crate::read::verify::verify_sqlite(&store, &ProgressBar::hidden()).unwrap();
        assert!(report.is_clean(), "{}", report.render());
        assert_eq!(report.events, head);
        assert_eq!(report.streams, orders);
        let (projections, replayed) =
            crate::read::rebuild::rebuild(store.as_ref(), head, &ProgressBar::hidden())
                .await
                .unwrap();
        assert_eq!(replayed, head);
        assert_eq!(projections.position(), head);
    }
}
