//! The runner against real stores: a slow commit (a hidden position) holds
//! the checkpoint back until it appears; a stop between batches or a crash
//! inside one resumes from the stored checkpoint with nothing skipped or
//! applied twice; every run ends equal to the rebuild from position 0.

use indicatif::ProgressBar;
use paycode_adapters::store::{ExpectedVersion, MemoryStore, NewEvent};
use paycode_adapters::testing::FaultyStore;
use paycode_domain::stored;
use paycode_projections::sample;
use std::collections::BTreeMap;
use uuid::Uuid;

use super::*;
use crate::read::rebuild::rebuild;

/// A memory store with one position hidden from `read_all` (a commit that
/// readers see late), its positions dense or not.
fn slow_commit(inner: MemoryStore, hidden: u64, dense: bool) -> Arc<FaultyStore<MemoryStore>> {
    let store = FaultyStore::new(Arc::new(inner));
    store.hide_position(Some(hidden));
    store.set_sparse(!dense);
    Arc::new(store)
}

/// A memory store holding a sample log of `orders` orders; returns it and the log's length.
async fn sample_store(orders: usize, seed: u64) -> (MemoryStore, u64) {
    let store = MemoryStore::new();
    let log = sample::log("demo", orders, seed);
    for (index, sample) in log.iter().enumerate() {
        let encoded = stored::encode(&sample.event);
        store
            .append(
                &sample.stream,
                ExpectedVersion::after(sample.version.checked_sub(1)),
                vec![NewEvent::encoded(
                    Uuid::from_u128(index as u128 + 1),
                    encoded,
                )],
            )
            .await
            .unwrap();
    }
    (store, log.len() as u64)
}

fn options(batch_max: usize) -> RunnerOptions {
    RunnerOptions {
        batch_max,
        hole_wait_max: Duration::from_secs(60),
        hole_poll: Duration::from_millis(1),
        orders_in_memory_max: ORDERS_IN_MEMORY_MAX,
    }
}

type Rows = BTreeMap<(&'static str, String), String>;

fn stored_rows(views: &dyn ReadModelStore) -> Rows {
    paycode_projections::PROJECTION_NAMES
        .iter()
        .flat_map(|name| {
            views
                .rows(name)
                .unwrap()
                .into_iter()
                .map(move |(key, row)| ((*name, key), row))
        })
        .collect()
}

async fn rebuilt_rows(store: &dyn EventStore) -> Rows {
    let head = store.head_position().await.unwrap();
    let (projections, _) = rebuild(store, head, &ProgressBar::hidden()).await.unwrap();
    projections
        .stored_rows()
        .into_iter()
        .flat_map(|(name, rows)| rows.into_iter().map(move |(k, r)| ((name, k), r)))
        .collect()
}

/// The stored `refunded_amount` of every order, by key.
fn refunded_amounts(rows: &Rows) -> BTreeMap<String, serde_json::Value> {
    rows.iter()
        .filter(|((name, _), _)| *name == "order_status")
        .map(|((_, key), row)| {
            let row: serde_json::Value = serde_json::from_str(row).unwrap();
            (key.clone(), row["refunded_amount"].clone())
        })
        .collect()
}

#[tokio::test]
async fn a_slow_commit_holds_the_checkpoint_before_the_hole_until_it_appears() {
    // Position 40 is hidden: the runner stops at 39, waits, and once 40 shows finishes equal to the rebuild.
    let (inner, head) = sample_store(30, 11).await;
    assert!(head > 60, "a log long enough: {head}");
    let store = slow_commit(inner, 40, true);
    let views = SqliteReadModelStore::in_memory(LAYOUT).unwrap();
    let mut runner = ProjectionRunner::open(store.clone(), views.clone(), options(16))
        .await
        .unwrap();
    let mut waits = 0;
    for _ in 0..20 {
        match runner.step().await.unwrap() {
            Step::Applied { .. } => {}
            Step::WaitingForHole { position } => {
                assert_eq!(position, 40);
                waits += 1;
            }
            Step::CaughtUp => panic!("caught up past a hole"),
        }
        assert!(runner.checkpoint() <= 39);
        assert!(views.checkpoint().unwrap() <= 39);
    }
    assert!(waits > 10, "the runner waited at the hole");
    assert_eq!(views.checkpoint().unwrap(), 39);
    store.hide_position(None);
    assert_eq!(runner.catch_up().await.unwrap(), head);
    assert_eq!(runner.holes_skipped, 0);
    assert_eq!(stored_rows(&*views), rebuilt_rows(store.as_ref()).await);
}

#[tokio::test]
async fn a_hole_is_declared_permanent_only_after_the_bounded_wait() {
    // Never revealed: the runner waits out hole_wait_max, counts one skipped hole, and goes on.
    let (inner, head) = sample_store(10, 3).await;
    let store = slow_commit(inner, 5, true);
    let views = SqliteReadModelStore::in_memory(LAYOUT).unwrap();
    let started = Instant::now();
    let mut runner = ProjectionRunner::open(
        store.clone(),
        views.clone(),
        RunnerOptions {
            batch_max: 100,
            hole_wait_max: Duration::from_millis(100),
            hole_poll: Duration::from_millis(5),
            orders_in_memory_max: ORDERS_IN_MEMORY_MAX,
        },
    )
    .await
    .unwrap();
    assert_eq!(runner.catch_up().await.unwrap(), head);
    assert!(started.elapsed() >= Duration::from_millis(100));
    assert_eq!(runner.holes_skipped, 1);
}

#[tokio::test]
async fn sparse_positions_are_taken_as_they_come() {
    // A store without dense positions: a gap is final, the runner never waits.
    let (inner, head) = sample_store(10, 5).await;
    let store = slow_commit(inner, 5, false);
    let views = SqliteReadModelStore::in_memory(LAYOUT).unwrap();
    let mut runner = ProjectionRunner::open(store, views, options(100))
        .await
        .unwrap();
    assert!(matches!(
        runner.step().await.unwrap(),
        Step::Applied { position, .. } if position == head
    ));
    assert_eq!(runner.holes_skipped, 0);
}

#[tokio::test]
async fn a_stop_between_batches_resumes_from_the_stored_checkpoint() {
    // Three batches, then the process "dies"; a new runner on the same file ends equal to the
    // rebuild, refunded totals included: nothing skipped, nothing applied twice.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("paycode-views.db");
    let (store, head) = sample_store(40, 21).await;
    let store: Arc<dyn EventStore> = Arc::new(store);
    {
        let views = SqliteReadModelStore::open(&path, LAYOUT).unwrap();
        let mut runner = ProjectionRunner::open(store.clone(), views, options(7))
            .await
            .unwrap();
        for _ in 0..3 {
            runner.step().await.unwrap();
        }
        assert_eq!(runner.checkpoint(), 21);
    }
    let views = SqliteReadModelStore::open(&path, LAYOUT).unwrap();
    assert_eq!(views.checkpoint().unwrap(), 21);
    let mut runner = ProjectionRunner::open(store.clone(), views.clone(), options(7))
        .await
        .unwrap();
    assert_eq!(runner.catch_up().await.unwrap(), head);
    let stored = stored_rows(&*views);
    let rebuilt = rebuilt_rows(store.as_ref()).await;
    assert_eq!(refunded_amounts(&stored), refunded_amounts(&rebuilt));
    assert!(
        refunded_amounts(&rebuilt)
            .values()
            .any(|amount| amount != "0.00"),
        "the sample has refunds"
    );
    assert_eq!(stored, rebuilt);
}

#[tokio::test]
async fn a_runner_holding_few_orders_seeds_the_others_again_and_stores_what_the_rebuild_holds() {
    // 60 interleaved orders, at most 4 (plus a quarter) folded in memory: the others are
    // dropped between batches and seeded from their streams when they move again.
    let (store, head) = sample_store(60, 8).await;
    let store: Arc<dyn EventStore> = Arc::new(store);
    let run = |orders_in_memory_max| {
        let store = store.clone();
        async move {
            let views = SqliteReadModelStore::in_memory(LAYOUT).unwrap();
            let options = RunnerOptions {
                orders_in_memory_max,
                ..options(9)
            };
            let mut runner = ProjectionRunner::open(store, views.clone(), options)
                .await
                .unwrap();
            let mut most_held = 0;
            while let Step::Applied { .. } = runner.step().await.unwrap() {
                most_held = most_held.max(runner.projections.orders_in_memory());
            }
            assert_eq!(runner.checkpoint(), head);
            (most_held, stored_rows(&*views))
        }
    };
    let (unbounded_held, _) = run(usize::MAX / 2).await;
    assert!(
        unbounded_held > 5,
        "the sample keeps {unbounded_held} orders open at once"
    );
    let (bounded_held, stored) = run(4).await;
    assert!(bounded_held <= 5, "held {bounded_held} orders");
    assert_eq!(stored, rebuilt_rows(store.as_ref()).await);
}

#[tokio::test]
async fn a_crash_inside_a_batch_stores_nothing_of_it_and_the_batch_is_redone() {
    // The write of batch two fails before its commit: the checkpoint stays at batch one, and both
    // the same runner and a restarted one end equal to the rebuild.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("paycode-views.db");
    let (store, head) = sample_store(40, 33).await;
    let store: Arc<dyn EventStore> = Arc::new(store);
    let views = SqliteReadModelStore::open(&path, LAYOUT).unwrap();
    let mut runner = ProjectionRunner::open(store.clone(), views.clone(), options(50))
        .await
        .unwrap();
    runner.step().await.unwrap();
    let after_one = stored_rows(&*views);
    views.crash_before_next_commit();
    assert!(matches!(
        runner.step().await,
        Err(RunnerError::Views(ReadModelError::SimulatedCrash))
    ));
    assert_eq!(views.checkpoint().unwrap(), 50);
    assert_eq!(runner.checkpoint(), 50);
    assert_eq!(stored_rows(&*views), after_one);
    // The same runner redoes the batch from the stored checkpoint...
    assert_eq!(runner.catch_up().await.unwrap(), head);
    assert_eq!(stored_rows(&*views), rebuilt_rows(store.as_ref()).await);
    // ...and so does a restarted one after the same crash.
    drop(runner);
    views.reset().unwrap();
    let mut first = ProjectionRunner::open(store.clone(), views.clone(), options(50))
        .await
        .unwrap();
    first.step().await.unwrap();
    views.crash_before_next_commit();
    assert!(first.step().await.is_err());
    drop(first);
    let reopened = SqliteReadModelStore::open(&path, LAYOUT).unwrap();
    let mut second = ProjectionRunner::open(store.clone(), reopened.clone(), options(50))
        .await
        .unwrap();
    assert_eq!(second.checkpoint(), 50);
    assert_eq!(second.catch_up().await.unwrap(), head);
    assert_eq!(stored_rows(&*reopened), rebuilt_rows(store.as_ref()).await);
}

#[tokio::test]
async fn views_ahead_of_the_log_are_rebuilt() {
    // A views file whose checkpoint is past the head belongs to another log: emptied, rebuilt.
    let (store, head) = sample_store(5, 2).await;
    let views = SqliteReadModelStore::in_memory(LAYOUT).unwrap();
    views.write(&[], head + 100).unwrap();
    let mut runner = ProjectionRunner::open(Arc::new(store), views.clone(), options(10))
        .await
        .unwrap();
    assert_eq!(runner.checkpoint(), 0);
    assert_eq!(runner.catch_up().await.unwrap(), head);
    assert_eq!(views.checkpoint().unwrap(), head);
}

#[tokio::test]
async fn follow_keeps_up_with_new_appends() {
    // The background form: appends made while it follows reach the stored read models.
    let (store, head) = sample_store(5, 9).await;
    let store = Arc::new(store);
    let views = SqliteReadModelStore::in_memory(LAYOUT).unwrap();
    let runner = ProjectionRunner::open(store.clone(), views.clone(), options(10))
        .await
        .unwrap();
    let task = tokio::spawn(runner.follow());
    let more = sample::log("late", 3, 4);
    for (index, sample) in more.iter().enumerate() {
        let encoded = stored::encode(&sample.event);
        store
            .append(
                &sample.stream,
                ExpectedVersion::after(sample.version.checked_sub(1)),
                vec![NewEvent::encoded(
                    Uuid::from_u128(10_000 + index as u128),
                    encoded,
                )],
            )
            .await
            .unwrap();
    }
    let total = head + more.len() as u64;
    for _ in 0..500 {
        if views.checkpoint().unwrap() == total {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(views.checkpoint().unwrap(), total);
    task.abort();
    assert_eq!(stored_rows(&*views), rebuilt_rows(store.as_ref()).await);
}

/// Appends a report of the demo merchant's WeChat statement of 2026-11-22
/// with `findings` findings, as the `version`-th report of that day.
async fn append_report(store: &MemoryStore, version: u64, findings: usize) {
    use paycode_domain::reconciliation::{
        Finding, FindingKind, ReconciliationEvent, ReconciliationFact, ReconciliationRecorded,
    };
    let event = ReconciliationEvent {
        at: chrono::Utc::now(),
        command_id: paycode_domain::CommandId(Uuid::new_v4()),
        key_name: None,
        fact: ReconciliationFact::Recorded(ReconciliationRecorded {
            channel: paycode_domain::Channel::Wechat,
            date: chrono::NaiveDate::from_ymd_opt(2026, 11, 22).unwrap(),
            statement_sha256: format!("{version:064}"),
            statement_lines: 5,
            matched: 5,
            revokes_settled: 0,
            findings: (0..findings)
                .map(|n| Finding {
                    kind: FindingKind::MissingInStatement,
                    order_no: Some(format!("S{n}")),
                    refund_no: None,
                    ledger_amount: Some("3.00".parse().unwrap()),
                    statement_amount: None,
                    detail: format!("report {version}"),
                })
                .collect(),
        }),
    };
    let encoded = stored::encode(&event);
    store
        .append(
            "reconciliation-demo-wechat-2026-11-22",
            ExpectedVersion::after(version.checked_sub(1)),
            vec![NewEvent::encoded(Uuid::new_v4(), encoded)],
        )
        .await
        .unwrap();
}

#[tokio::test]
async fn a_corrected_statement_after_a_restart_leaves_only_its_own_findings_stored() {
    // Report 0 (three findings) is stored, the process stops; report 1 (one finding) comes in.
    // The restarted runner seeds the day from its stream, so findings 1 and 2 are deleted.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("paycode-views.db");
    let (store, _) = sample_store(10, 5).await;
    append_report(&store, 0, 3).await;
    let store = Arc::new(store);
    {
        let views = SqliteReadModelStore::open(&path, LAYOUT).unwrap();
        let dyn_store: Arc<dyn EventStore> = store.clone();
        let mut runner = ProjectionRunner::open(dyn_store, views.clone(), options(7))
            .await
            .unwrap();
        runner.catch_up().await.unwrap();
        assert_eq!(views.rows("reconciliation_diffs").unwrap().len(), 3);
    }
    append_report(&store, 1, 1).await;
    let views = SqliteReadModelStore::open(&path, LAYOUT).unwrap();
    let dyn_store: Arc<dyn EventStore> = store.clone();
    let mut runner = ProjectionRunner::open(dyn_store.clone(), views.clone(), options(7))
        .await
        .unwrap();
    runner.catch_up().await.unwrap();
    let diffs = views.rows("reconciliation_diffs").unwrap();
    assert_eq!(diffs.len(), 1, "{diffs:?}");
    let row = diffs.values().next().unwrap();
    assert!(row.contains("report 1"), "{row}");
    assert_eq!(stored_rows(&*views), rebuilt_rows(dyn_store.as_ref()).await);
}
