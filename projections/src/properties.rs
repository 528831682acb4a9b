//! Properties of the read models over sample logs (`sample.rs`): applying
//! in one batch or in arbitrary chunks gives the same rows; a follower that
//! stores changes, restarts from its checkpoint and forgets settled orders
//! ends with exactly the rows of a rebuild from position 0; re-applying an
//! applied position changes nothing. The logs mix payment histories with
//! reconciliation reports, corrected statements included.

use std::collections::BTreeMap;

use chrono::{NaiveDate, TimeZone, Utc};
use paycode_domain::ids::reconciliation_stream;
use paycode_domain::payment::PaymentStatus;
use paycode_domain::reconciliation::{
    Finding, FindingKind, ReconciliationEvent, ReconciliationFact, ReconciliationRecorded,
};
use paycode_domain::{Channel, CommandId, MerchantId};
use proptest::prelude::*;
use uuid::Uuid;

use crate::fold::PositionedEvent;
use crate::reconciliation_diffs::PositionedReconciliation;
use crate::sample::{self, Rng};
use crate::set::{Projections, StoredChange};

/// The stored form of every row: (projection, key) → row.
type Stored = BTreeMap<(&'static str, String), String>;

/// One event of a mixed log.
#[derive(Clone)]
enum Entry {
    Payment(sample::SampleEvent),
    Reconciliation {
        stream: String,
        version: u64,
        event: ReconciliationEvent,
    },
}

impl Entry {
    fn stream(&self) -> &str {
        match self {
            Entry::Payment(sample) => &sample.stream,
            Entry::Reconciliation { stream, .. } => stream,
        }
    }

    fn version(&self) -> u64 {
        match self {
            Entry::Payment(sample) => sample.version,
            Entry::Reconciliation { version, .. } => *version,
        }
    }
}

/// `orders` sample payment histories with, spread among them, reports of
/// two statement days (each day reported 1–3 times, 0–3 findings each).
fn log(orders: usize, seed: u64) -> Vec<Entry> {
    let mut rng = Rng::new(seed ^ 0x5eed);
    let mut entries: Vec<Entry> = sample::log("demo", orders, seed)
        .into_iter()
        .map(Entry::Payment)
        .collect();
    let merchant = MerchantId::parse("demo").expect("a merchant id");
    for (day, channel) in [(21, Channel::Wechat), (22, Channel::Alipay)] {
        let date = NaiveDate::from_ymd_opt(2026, 11, day).expect("a date");
        let stream = reconciliation_stream(channel, &merchant, date);
        let mut at = rng.index(entries.len() + 1);
        for version in 0..=rng.below(3) {
            let findings = (0..rng.below(4))
                .map(|n| Finding {
                    kind: FindingKind::MissingInStatement,
                    order_no: Some(format!("S{n}")),
                    refund_no: None,
                    ledger_amount: Some("1.00".parse().expect("an amount")),
                    statement_amount: None,
                    detail: format!("report {version}"),
                })
                .collect();
            let event = ReconciliationEvent {
                at: Utc.with_ymd_and_hms(2026, 11, day + 1, 2, 0, 0).unwrap(),
                command_id: CommandId(Uuid::from_u128(u128::from(version))),
                key_name: None,
                fact: ReconciliationFact::Recorded(ReconciliationRecorded {
                    channel,
                    date,
                    statement_sha256: format!("{version:064}"),
                    statement_lines: 10,
                    matched: 7,
                    revokes_settled: 0,
                    findings,
                }),
            };
            entries.insert(
                at,
                Entry::Reconciliation {
                    stream: stream.clone(),
                    version,
                    event,
                },
            );
            at += 1 + rng.index(entries.len() - at);
            at = at.min(entries.len());
        }
    }
    entries
}

/// Applies the log's event at `index` (position `index + 1`).
fn apply(projections: &mut Projections, log: &[Entry], index: usize) -> bool {
    let position = index as u64 + 1;
    match &log[index] {
        Entry::Payment(sample) => projections.apply(PositionedEvent {
            position,
            stream: &sample.stream,
            version: sample.version,
            event: &sample.event,
        }),
        Entry::Reconciliation {
            stream,
            version,
            event,
        } => projections.apply_reconciliation(PositionedReconciliation {
            position,
            stream,
            version: *version,
            event,
        }),
    }
}

/// What the app does after a restart: read the stream, fold what came
/// before `index`.
fn seed_before(projections: &mut Projections, log: &[Entry], index: usize) {
    let stream = log[index].stream();
    let before = log[..index].iter().filter(|entry| entry.stream() == stream);
    match &log[index] {
        Entry::Payment(_) => projections.seed(
            stream,
            before.filter_map(|entry| match entry {
                Entry::Payment(sample) => Some((sample.version, &sample.event)),
                Entry::Reconciliation { .. } => None,
            }),
        ),
        Entry::Reconciliation { .. } => projections.seed_reconciliation(
            stream,
            before.filter_map(|entry| match entry {
                Entry::Reconciliation { version, event, .. } => Some((*version, event)),
                Entry::Payment(_) => None,
            }),
        ),
    }
}

fn rebuild(log: &[Entry]) -> Projections {
    let mut projections = Projections::new();
    for index in 0..log.len() {
        apply(&mut projections, log, index);
    }
    projections.flush();
    projections
}

fn stored_form(projections: &Projections) -> Stored {
    projections
        .stored_rows()
        .into_iter()
        .flat_map(|(name, rows)| rows.into_iter().map(move |(k, r)| ((name, k), r)))
        .collect()
}

fn store(stored: &mut Stored, changes: Vec<StoredChange>) {
    for change in changes {
        match change.row {
            Some(row) => stored.insert((change.projection, change.key), row),
            None => stored.remove(&(change.projection, change.key)),
        };
    }
}

/// Splits `0..len` into chunks whose sizes cycle through `sizes`.
fn chunks(len: usize, sizes: &[usize]) -> Vec<std::ops::Range<usize>> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut n = 0;
    while start < len {
        let end = (start + sizes[n % sizes.len()]).min(len);
        out.push(start..end);
        start = end;
        n += 1;
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// One batch or arbitrary chunks: the same rows, and the changes reported
    /// along the way add up to them.
    #[test]
    fn one_batch_or_arbitrary_chunks_give_the_same_rows(
        orders in 1..25usize,
        seed in any::<u64>(),
        sizes in prop::collection::vec(1..40usize, 1..8),
    ) {
        let log = log(orders, seed);
        let whole = rebuild(&log);
        let mut chunked = Projections::new();
        let mut stored = Stored::new();
        for chunk in chunks(log.len(), &sizes) {
            for index in chunk {
                prop_assert!(apply(&mut chunked, &log, index));
            }
            let changes = chunked.take_changes();
            prop_assert_eq!(changes.position, chunked.position());
            store(&mut stored, changes.to_stored());
        }
        prop_assert!(chunked == whole);
        prop_assert_eq!(stored, stored_form(&whole));
    }

    /// A follower that stores each batch's changes with its position, restarts
    /// from that checkpoint (seeding orders from the log before it) and
    /// forgets settled orders (and, when bounded, the least recently moved
    /// beyond `keep`), holds exactly the rows of a rebuild from 0.
    #[test]
    fn a_restarted_follower_equals_the_rebuild_from_zero(
        orders in 1..25usize,
        seed in any::<u64>(),
        sizes in prop::collection::vec(1..30usize, 1..6),
        restarts in prop::collection::vec(any::<bool>(), 1..10),
        lean in any::<bool>(),
        keep in prop::option::of(0..6usize),
    ) {
        let log = log(orders, seed);
        // The runner's lean tables store exactly what full tables do.
        let starting_after = |position| if lean {
            Projections::lean_starting_after(position)
        } else {
            Projections::starting_after(position)
        };
        let mut follower = starting_after(0);
        let mut stored = Stored::new();
        let mut checkpoint = 0u64;
        for (n, chunk) in chunks(log.len(), &sizes).into_iter().enumerate() {
            if restarts[n % restarts.len()] {
                follower = starting_after(checkpoint);
            }
            for index in chunk {
                if log[index].version() > 0 && !follower.knows(log[index].stream()) {
                    seed_before(&mut follower, &log, index);
                }
                apply(&mut follower, &log, index);
            }
            let changes = follower.take_changes();
            store(&mut stored, changes.to_stored());
            checkpoint = changes.position;
            follower.forget(|fold| fold.state.status().is_some_and(PaymentStatus::is_terminal));
            if let Some(keep) = keep {
                follower.forget_least_recent(keep);
                prop_assert!(follower.orders_in_memory() <= keep + keep / 4);
            }
        }
        prop_assert_eq!(checkpoint, log.len() as u64);
        prop_assert_eq!(stored, stored_form(&rebuild(&log)));
    }

    /// Feeding again events already applied changes nothing (idempotent by position).
    #[test]
    fn applied_positions_are_never_applied_twice(
        orders in 1..15usize,
        seed in any::<u64>(),
        replay_from in 0..200usize,
    ) {
        let log = log(orders, seed);
        let mut projections = rebuild(&log);
        let before = stored_form(&projections);
        for index in replay_from.min(log.len())..log.len() {
            prop_assert!(!apply(&mut projections, &log, index));
        }
        prop_assert!(projections.take_changes().is_empty());
        prop_assert_eq!(stored_form(&projections), before);
    }
}

#[test]
fn the_read_models_agree_with_each_order_s_fold() {
    // On a fixed sample: every order has a status row, in-flight rows are exactly the unsettled
    // orders, queue rows are exactly the reviews, refund rows sum to the refunded totals.
    let log = log(60, 7);
    let projections = rebuild(&log);
    let statuses = projections.order_status.rows();
    assert_eq!(statuses.len(), 60);
    let unsettled = statuses
        .values()
        .filter(|view| !view.status.is_settled())
        .count();
    assert_eq!(projections.in_flight.len(), unsettled);
    assert!(
        projections
            .in_flight
            .rows()
            .values()
            .all(|row| row.pending_action.is_some())
    );
    let reviews = statuses
        .values()
        .filter(|view| view.status == PaymentStatus::ManualReview)
        .count();
    let payment_reviews = projections
        .operator_queue
        .rows()
        .keys()
        .filter(|key| key.refund_no.is_none())
        .count();
    assert_eq!(payment_reviews, reviews);
    for (key, view) in statuses {
        let refunded: u64 = projections
            .refunds
            .rows()
            .iter()
            .filter(|(refund_key, refund)| {
                refund_key.order_no == key.order_no
                    && refund.status == paycode_domain::payment::RefundStatus::Succeeded
            })
            .map(|(_, refund)| refund.amount.fen())
            .sum();
        assert_eq!(view.refunded_amount.fen(), refunded, "{key:?}");
    }
    // The sample exercises every read model.
    assert!(!projections.reconciliation_diffs.is_empty());
    assert!(!projections.refunds.is_empty());
    assert!(!projections.operator_queue.is_empty());
    assert!(!projections.in_flight.is_empty());
}

#[test]
fn streams_that_are_not_payments_only_move_the_position() {
    // An event in another stream is passed over: position advances, no row appears.
    let log = sample::log("demo", 1, 1);
    let mut projections = Projections::new();
    let other = PositionedEvent {
        position: 1,
        stream: "statement-wechat-2026-11-22",
        version: 0,
        event: &log[0].event,
    };
    assert!(projections.apply(other));
    assert_eq!(projections.position(), 1);
    assert!(projections.take_changes().is_empty());
    projections.pass(5);
    assert_eq!(projections.position(), 5);
}

#[test]
fn the_least_recently_moved_orders_are_the_ones_forgotten() {
    // Ten orders, one event each, then orders 0 and 1 move again: bounded to
    // 4, the follower keeps 0, 1 and the two newest of the rest (8, 9).
    let firsts: Vec<Entry> = log(10, 3)
        .into_iter()
        .filter(|entry| matches!(entry, Entry::Payment(_)) && entry.version() == 0)
        .take(10)
        .collect();
    assert_eq!(firsts.len(), 10);
    let mut follower = Projections::lean_starting_after(0);
    for index in 0..firsts.len() {
        apply(&mut follower, &firsts, index);
    }
    let again: Vec<Entry> = vec![firsts[0].clone(), firsts[1].clone()];
    for (n, entry) in again.iter().enumerate() {
        let Entry::Payment(sample) = entry else {
            unreachable!("payments only")
        };
        assert!(follower.apply(PositionedEvent {
            position: 11 + n as u64,
            stream: &sample.stream,
            version: sample.version,
            event: &sample.event,
        }));
    }
    follower.forget_least_recent(4);
    assert_eq!(
        follower.orders_in_memory(),
        10,
        "dirty orders are never forgotten"
    );
    follower.take_changes();
    follower.forget_least_recent(8);
    assert_eq!(
        follower.orders_in_memory(),
        10,
        "within the quarter's slack"
    );
    follower.forget_least_recent(4);
    assert_eq!(follower.orders_in_memory(), 4);
    for kept in [0, 1, 8, 9] {
        assert!(follower.knows(firsts[kept].stream()), "order {kept} kept");
    }
    for (dropped, entry) in firsts.iter().enumerate().take(8).skip(2) {
        assert!(!follower.knows(entry.stream()), "order {dropped} dropped");
    }
}

#[test]
fn forgetting_settled_orders_looks_only_at_the_orders_moved_since() {
    // Shows what `forget` reads: after a first call looked at every order
    // moved, a second with nothing moved looks at none, and one after a
    // single event looks at that order alone. What it picks is dropped,
    // and an order already dropped by `forget_least_recent` is skipped.
    let firsts: Vec<Entry> = log(40, 3)
        .into_iter()
        .filter(|entry| matches!(entry, Entry::Payment(_)) && entry.version() == 0)
        .take(6)
        .collect();
    assert_eq!(firsts.len(), 6);
    let mut follower = Projections::lean_starting_after(0);
    for index in 0..firsts.len() {
        apply(&mut follower, &firsts, index);
    }
    follower.take_changes();
    let looked = std::cell::Cell::new(0);
    let first_key = follower_key(&firsts[0]);
    follower.forget(|fold| {
        looked.set(looked.get() + 1);
        fold.key == first_key
    });
    assert_eq!(looked.get(), 6, "every order moved is looked at once");
    assert_eq!(follower.orders_in_memory(), 5);
    assert!(
        !follower.knows(firsts[0].stream()),
        "the one picked is dropped"
    );

    looked.set(0);
    follower.forget(|_| {
        looked.set(looked.get() + 1);
        true
    });
    assert_eq!(looked.get(), 0, "nothing moved, nothing looked at");
    assert_eq!(follower.orders_in_memory(), 5);

    for (n, moved) in [&firsts[1], &firsts[2]].into_iter().enumerate() {
        let Entry::Payment(sample) = moved else {
            unreachable!("payments only")
        };
        assert!(follower.apply(PositionedEvent {
            position: 7 + n as u64,
            stream: &sample.stream,
            version: sample.version,
            event: &sample.event,
        }));
    }
    follower.take_changes();
    follower.forget_least_recent(1);
    assert!(
        follower.knows(firsts[2].stream()),
        "the latest moved is kept"
    );
    assert!(!follower.knows(firsts[1].stream()));
    follower.forget(|_| {
        looked.set(looked.get() + 1);
        true
    });
    assert_eq!(
        looked.get(),
        1,
        "of the two moved, the one still in memory, looked at once"
    );
    assert_eq!(follower.orders_in_memory(), 0);
}

/// The order key of a payment entry's stream.
fn follower_key(entry: &Entry) -> crate::fold::OrderKey {
    let (merchant_id, order_no) =
        paycode_domain::ids::parse_payment_stream(entry.stream()).expect("a payment stream");
    crate::fold::OrderKey {
        merchant_id,
        order_no,
    }
}
