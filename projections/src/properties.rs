//! Properties of the read models over sample logs (`sample.rs`): applying
//! in one batch or in arbitrary chunks gives the same rows; a follower that
//! stores changes, restarts from its checkpoint and forgets settled orders
//! ends with exactly the rows of a rebuild from position 0; re-applying an
//! applied position changes nothing.

use std::collections::BTreeMap;

use paycode_domain::payment::PaymentStatus;
use proptest::prelude::*;

use crate::fold::PositionedEvent;
use crate::sample::{self, SampleEvent};
use crate::set::{Projections, StoredChange};

/// The stored form of every row: (projection, key) → row.
type Stored = BTreeMap<(&'static str, String), String>;

fn positioned(log: &[SampleEvent], index: usize) -> PositionedEvent<'_> {
    let sample = &log[index];
    PositionedEvent {
        position: index as u64 + 1,
        stream: &sample.stream,
        version: sample.version,
        event: &sample.event,
    }
}

fn rebuild(log: &[SampleEvent]) -> Projections {
    let mut projections = Projections::new();
    for index in 0..log.len() {
        projections.apply(positioned(log, index));
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
        let log = sample::log("demo", orders, seed);
        let whole = rebuild(&log);
        let mut chunked = Projections::new();
        let mut stored = Stored::new();
        for chunk in chunks(log.len(), &sizes) {
            for index in chunk {
                prop_assert!(chunked.apply(positioned(&log, index)));
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
    /// forgets settled orders, holds exactly the rows of a rebuild from 0.
    #[test]
    fn a_restarted_follower_equals_the_rebuild_from_zero(
        orders in 1..25usize,
        seed in any::<u64>(),
        sizes in prop::collection::vec(1..30usize, 1..6),
        restarts in prop::collection::vec(any::<bool>(), 1..10),
    ) {
        let log = sample::log("demo", orders, seed);
        let mut follower = Projections::new();
        let mut stored = Stored::new();
        let mut checkpoint = 0u64;
        for (n, chunk) in chunks(log.len(), &sizes).into_iter().enumerate() {
            if restarts[n % restarts.len()] {
                follower = Projections::starting_after(checkpoint);
            }
            for index in chunk {
                let event = positioned(&log, index);
                if event.version > 0 && !follower.knows(event.stream) {
                    // What the app does after a restart: read the stream, fold what came before.
                    let before = log[..index]
                        .iter()
                        .filter(|e| e.stream == event.stream)
                        .map(|e| (e.version, &e.event));
                    follower.seed(event.stream, before);
                }
                follower.apply(event);
            }
            let changes = follower.take_changes();
            store(&mut stored, changes.to_stored());
            checkpoint = changes.position;
            follower.forget(|fold| fold.state.status().is_some_and(PaymentStatus::is_terminal));
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
        let log = sample::log("demo", orders, seed);
        let mut projections = rebuild(&log);
        let before = stored_form(&projections);
        for index in replay_from.min(log.len())..log.len() {
            prop_assert!(!projections.apply(positioned(&log, index)));
        }
        prop_assert!(projections.take_changes().is_empty());
        prop_assert_eq!(stored_form(&projections), before);
    }
}

#[test]
fn the_read_models_agree_with_each_order_s_fold() {
    // On a fixed sample: every order has a status row, in-flight rows are exactly the unsettled
    // orders, queue rows are exactly the reviews, refund rows sum to the refunded totals.
    let log = sample::log("demo", 60, 7);
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
