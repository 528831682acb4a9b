//! `Projections`: every read model of the log, folded together from the
//! store's global order. Pure: the app feeds it decoded events by position
//! and stores what `take_changes` reports.
//!
//! Applying is idempotent by position: an event at or before the last
//! applied position is ignored, so re-feeding a batch after a crash cannot
//! apply anything twice. `apply` only evolves the order's fold and marks it;
//! rows are derived once per touched order when changes are taken, so a
//! batch costs one `evolve` per event and one derivation per order.

use foldhash::HashMap;
use paycode_domain::ids::{parse_payment_stream, parse_reconciliation_stream};
use paycode_domain::payment::Event;
use paycode_domain::reconciliation::ReconciliationEvent;
use serde::Serialize;

use crate::fold::{OrderFold, OrderKey, PositionedEvent};
use crate::in_flight::InFlight;
use crate::operator_queue::OperatorQueue;
use crate::order_status::OrderStatus;
use crate::projection::{Change, Projection, Table};
use crate::reconciliation_diffs::{DayFold, DayKey, PositionedReconciliation, ReconciliationDiffs};
use crate::refunds::Refunds;

/// The stored names of every read model, in the order they are reported.
/// A new read model gets a module, a table field below, and its name here
/// (the stored layout then changes, and the app rebuilds every read model once).
pub const PROJECTION_NAMES: [&str; 5] = [
    OrderStatus::NAME,
    Refunds::NAME,
    OperatorQueue::NAME,
    InFlight::NAME,
    ReconciliationDiffs::NAME,
];

#[derive(Debug)]
struct Slot {
    stream: String,
    fold: OrderFold,
    dirty: bool,
    /// The position of the last event applied to it (0: seeded only), to
    /// tell the least recently moved orders ([`Projections::forget_least_recent`]).
    touched: u64,
}

/// Every read model, with the position of the last event applied.
#[derive(Debug, Default)]
pub struct Projections {
    /// The global position of the last event applied (0: none).
    position: u64,
    /// Boxed: a slot is a few hundred bytes, and a vector of a million of
    /// them grown by doubling copied each into freshly zeroed pages; the
    /// rebuild spent about a tenth of its time on that.
    #[expect(
        clippy::vec_box,
        reason = "the vector grows to a million slots; boxed, it moves pointers, not slots"
    )]
    slots: Vec<Box<Slot>>,
    by_stream: HashMap<String, usize>,
    dirty: Vec<usize>,
    /// The streams of the orders seeded or taken ([`Projections::take_changes`])
    /// since the last [`Projections::forget`]: the only ones that can have
    /// settled since, so the only ones it looks at.
    moved: Vec<String>,
    /// Statement days by stream. Few (merchants × channels × days) and
    /// small, so they stay in memory.
    days: HashMap<String, DayFold>,
    dirty_days: Vec<String>,
    pub order_status: Table<OrderStatus>,
    pub refunds: Table<Refunds>,
    pub operator_queue: Table<OperatorQueue>,
    pub in_flight: Table<InFlight>,
    pub reconciliation_diffs: Table<ReconciliationDiffs>,
}

impl PartialEq for Projections {
    /// Equal when they stand at the same position with the same rows.
    fn eq(&self, other: &Self) -> bool {
        self.position == other.position
            && self.order_status == other.order_status
            && self.refunds == other.refunds
            && self.operator_queue == other.operator_queue
            && self.in_flight == other.in_flight
            && self.reconciliation_diffs == other.reconciliation_diffs
    }
}

/// The row changes of one batch, each read model's in key order of discovery.
#[derive(Debug, PartialEq)]
pub struct Changes {
    /// The position the read models stand at once these are stored.
    pub position: u64,
    pub order_status: Vec<Change<OrderStatus>>,
    pub refunds: Vec<Change<Refunds>>,
    pub operator_queue: Vec<Change<OperatorQueue>>,
    pub in_flight: Vec<Change<InFlight>>,
    pub reconciliation_diffs: Vec<Change<ReconciliationDiffs>>,
}

/// A row change in its stored form: JSON key and JSON row (`None`: delete).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredChange {
    pub projection: &'static str,
    pub key: String,
    pub row: Option<String>,
}

/// The stored (JSON) form of a key or row. Keys and rows are plain structs
/// of strings, numbers and enums: serializing them cannot fail.
pub fn to_json(value: &impl Serialize) -> String {
    serde_json::to_string(value).expect("a read-model key or row serializes to JSON")
}

fn stored<P: Projection>(changes: &[Change<P>], out: &mut Vec<StoredChange>) {
    out.extend(changes.iter().map(|change| StoredChange {
        projection: P::NAME,
        key: to_json(&change.key),
        row: change.row.as_ref().map(to_json),
    }));
}

fn stored_rows<P: Projection>(table: &Table<P>) -> (&'static str, Vec<(String, String)>) {
    (
        P::NAME,
        table
            .rows()
            .iter()
            .map(|(key, row)| (to_json(key), to_json(row)))
            .collect(),
    )
}

impl Changes {
    pub fn is_empty(&self) -> bool {
        self.order_status.is_empty()
            && self.refunds.is_empty()
            && self.operator_queue.is_empty()
            && self.in_flight.is_empty()
            && self.reconciliation_diffs.is_empty()
    }

    pub fn len(&self) -> usize {
        self.order_status.len()
            + self.refunds.len()
            + self.operator_queue.len()
            + self.in_flight.len()
            + self.reconciliation_diffs.len()
    }

    /// Every change in its stored form.
    pub fn to_stored(&self) -> Vec<StoredChange> {
        let mut out = Vec::with_capacity(self.len());
        stored(&self.order_status, &mut out);
        stored(&self.refunds, &mut out);
        stored(&self.operator_queue, &mut out);
        stored(&self.in_flight, &mut out);
        stored(&self.reconciliation_diffs, &mut out);
        out
    }
}

/// Whether a stream holds payment events, which [`Projections::apply`] reads.
pub fn is_payment_stream(stream: &str) -> bool {
    parse_payment_stream(stream).is_some()
}

/// Whether a stream holds reconciliation events, which
/// [`Projections::apply_reconciliation`] reads.
pub fn is_reconciliation_stream(stream: &str) -> bool {
    parse_reconciliation_stream(stream).is_some()
}

impl Projections {
    pub fn new() -> Self {
        Projections::default()
    }

    /// Read models that continue after `position` (a stored checkpoint):
    /// orders seen before it are seeded on demand with [`Projections::seed`].
    pub fn starting_after(position: u64) -> Self {
        Projections {
            position,
            ..Projections::default()
        }
    }

    /// `starting_after`, with lean tables ([`Table::lean`]): the runner's
    /// form, which stores every change it takes and reads no row back. An
    /// order in memory costs its fold and its keys, not its rows too.
    pub fn lean_starting_after(position: u64) -> Self {
        Projections {
            position,
            order_status: Table::lean(),
            refunds: Table::lean(),
            operator_queue: Table::lean(),
            in_flight: Table::lean(),
            reconciliation_diffs: Table::lean(),
            ..Projections::default()
        }
    }

    /// The global position of the last event applied.
    pub fn position(&self) -> u64 {
        self.position
    }

    /// Whether the fold of `stream` is in memory (applied or seeded).
    pub fn knows(&self, stream: &str) -> bool {
        self.by_stream.contains_key(stream) || self.days.contains_key(stream)
    }

    /// How many orders are folded in memory.
    pub fn orders_in_memory(&self) -> usize {
        self.slots.len()
    }

    /// Applies one decoded event. Returns `false`, changing nothing, for a
    /// position already applied (idempotent by position). An event of a
    /// stream that is not a payment's only moves the position.
    pub fn apply(&mut self, event: PositionedEvent<'_>) -> bool {
        if event.position <= self.position {
            return false;
        }
        self.position = event.position;
        let Some(index) = self.slot_of(event.stream) else {
            return true;
        };
        let slot = &mut self.slots[index];
        slot.fold.apply(event.version, event.event);
        slot.touched = event.position;
        if !slot.dirty {
            slot.dirty = true;
            self.dirty.push(index);
        }
        true
    }

    /// Applies one decoded reconciliation event, like [`Projections::apply`]:
    /// idempotent by position; an event of a stream that is not a
    /// reconciliation stream only moves the position.
    pub fn apply_reconciliation(&mut self, event: PositionedReconciliation<'_>) -> bool {
        if event.position <= self.position {
            return false;
        }
        self.position = event.position;
        if let Some(day) = self.day_of(event.stream) {
            day.apply(event.version, event.event);
            self.mark_day(event.stream);
        }
        true
    }

    /// Folds the events of a reconciliation stream that the stored rows
    /// already reflect, like [`Projections::seed`].
    pub fn seed_reconciliation<'a>(
        &mut self,
        stream: &str,
        events: impl IntoIterator<Item = (u64, &'a ReconciliationEvent)>,
    ) {
        if self.knows(stream) {
            return;
        }
        let Some(day) = self.day_of(stream) else {
            return;
        };
        for (version, event) in events {
            day.apply(version, event);
        }
        let day = &self.days[stream];
        self.reconciliation_diffs.refresh(day, None);
    }

    /// Moves past `position` without an event to apply (an event of a stream
    /// the read models ignore, or a hole declared permanent). Idempotent.
    pub fn pass(&mut self, position: u64) {
        self.position = self.position.max(position);
    }

    /// Folds the events of `stream` that the stored rows already reflect
    /// (after a restart from a checkpoint), so the next events continue from
    /// them. Reports no change and leaves the position alone.
    /// A stream already in memory is left alone: its fold is ahead of any seed.
    pub fn seed<'a>(&mut self, stream: &str, events: impl IntoIterator<Item = (u64, &'a Event)>) {
        if self.knows(stream) {
            return;
        }
        let Some(index) = self.slot_of(stream) else {
            return;
        };
        let fold = &mut self.slots[index].fold;
        for (version, event) in events {
            fold.apply(version, event);
        }
        let fold = &self.slots[index].fold;
        self.order_status.refresh(fold, None);
        self.refunds.refresh(fold, None);
        self.operator_queue.refresh(fold, None);
        self.in_flight.refresh(fold, None);
        self.moved.push(stream.to_owned());
    }

    fn day_of(&mut self, stream: &str) -> Option<&mut DayFold> {
        if !self.days.contains_key(stream) {
            let (merchant_id, channel, date) = parse_reconciliation_stream(stream)?;
            let key = DayKey {
                merchant_id,
                channel,
                date,
            };
            self.days.insert(stream.to_owned(), DayFold::new(key));
        }
        self.days.get_mut(stream)
    }

    fn mark_day(&mut self, stream: &str) {
        if !self.dirty_days.iter().any(|dirty| dirty == stream) {
            self.dirty_days.push(stream.to_owned());
        }
    }

    /// Derives the rows of every order touched since the last call and
    /// returns what changed: the batch to store with [`Changes::position`].
    /// A follower calls [`Projections::forget`] after each batch: it looks
    /// at the orders taken here (and empties their list).
    pub fn take_changes(&mut self) -> Changes {
        let mut changes = Changes {
            position: self.position,
            order_status: Vec::new(),
            refunds: Vec::new(),
            operator_queue: Vec::new(),
            in_flight: Vec::new(),
            reconciliation_diffs: Vec::new(),
        };
        for index in self.dirty.drain(..) {
            let slot = &mut self.slots[index];
            slot.dirty = false;
            self.moved.push(slot.stream.clone());
            let fold = &slot.fold;
            self.order_status
                .refresh(fold, Some(&mut changes.order_status));
            self.refunds.refresh(fold, Some(&mut changes.refunds));
            self.operator_queue
                .refresh(fold, Some(&mut changes.operator_queue));
            self.in_flight.refresh(fold, Some(&mut changes.in_flight));
        }
        for stream in self.dirty_days.drain(..) {
            self.reconciliation_diffs
                .refresh(&self.days[&stream], Some(&mut changes.reconciliation_diffs));
        }
        changes
    }

    /// Derives the rows of every touched order without collecting changes
    /// (a rebuild compares whole tables, not changes).
    pub fn flush(&mut self) {
        for index in self.dirty.drain(..) {
            let slot = &mut self.slots[index];
            slot.dirty = false;
            let fold = &slot.fold;
            self.order_status.refresh(fold, None);
            self.refunds.refresh(fold, None);
            self.operator_queue.refresh(fold, None);
            self.in_flight.refresh(fold, None);
        }
        for stream in self.dirty_days.drain(..) {
            self.reconciliation_diffs.refresh(&self.days[&stream], None);
        }
    }

    /// Drops from memory every order seeded or taken since the last call
    /// that `settled` picks (their rows stay stored; a later event seeds
    /// them again). Keeps a long-running follower's memory to the orders
    /// still moving. `settled` must depend on the fold alone: an order
    /// that has not moved since the last call is not looked at again, so
    /// each call costs the orders moved, not every order in memory.
    /// Call it between batches: with orders still dirty it does nothing.
    pub fn forget(&mut self, settled: impl Fn(&OrderFold) -> bool) {
        if !self.dirty.is_empty() {
            return;
        }
        for stream in std::mem::take(&mut self.moved) {
            let Some(&index) = self.by_stream.get(&stream) else {
                continue;
            };
            if settled(&self.slots[index].fold) {
                self.remove_slot(index);
            }
        }
    }

    /// Bounds the orders folded in memory: once more than `keep` plus a
    /// quarter are, drops the least recently moved down to `keep` (their
    /// rows stay stored; their next event seeds them again, as after a
    /// restart). Memory then follows `keep`, not the number of orders still
    /// waiting for something; the price is a read of an order's stream when
    /// it moves after being dropped. The quarter's slack makes the choice,
    /// linear in the orders held, run once per `keep / 4` new orders.
    /// Call it between batches, like [`Projections::forget`].
    pub fn forget_least_recent(&mut self, keep: usize) {
        if !self.dirty.is_empty() || self.slots.len() <= keep + keep / 4 {
            return;
        }
        let excess = self.slots.len() - keep;
        let mut by_age: Vec<(u64, usize)> = self
            .slots
            .iter()
            .enumerate()
            .map(|(index, slot)| (slot.touched, index))
            .collect();
        by_age.select_nth_unstable(excess - 1);
        let mut oldest: Vec<usize> = by_age[..excess].iter().map(|(_, index)| *index).collect();
        // From the highest index down: `swap_remove` moves the last slot,
        // which is then never one still to be removed.
        oldest.sort_unstable_by(|a, b| b.cmp(a));
        for index in oldest {
            self.remove_slot(index);
        }
    }

    /// Removes the slot at `index` and its keys, moving the last slot into its place.
    fn remove_slot(&mut self, index: usize) {
        let slot = self.slots.swap_remove(index);
        self.by_stream.remove(&slot.stream);
        self.order_status.forget(&slot.fold.key);
        self.refunds.forget(&slot.fold.key);
        self.operator_queue.forget(&slot.fold.key);
        self.in_flight.forget(&slot.fold.key);
        if let Some(moved) = self.slots.get(index) {
            self.by_stream.insert(moved.stream.clone(), index);
        }
    }

    /// Every row of every read model in stored (JSON) form, by name.
    pub fn stored_rows(&self) -> Vec<(&'static str, Vec<(String, String)>)> {
        vec![
            stored_rows(&self.order_status),
            stored_rows(&self.refunds),
            stored_rows(&self.operator_queue),
            stored_rows(&self.in_flight),
            stored_rows(&self.reconciliation_diffs),
        ]
    }

    fn slot_of(&mut self, stream: &str) -> Option<usize> {
        if let Some(&index) = self.by_stream.get(stream) {
            return Some(index);
        }
        let (merchant_id, order_no) = parse_payment_stream(stream)?;
        let index = self.slots.len();
        self.slots.push(Box::new(Slot {
            stream: stream.to_owned(),
            fold: OrderFold::new(OrderKey {
                merchant_id,
                order_no,
            }),
            dirty: false,
            touched: self.position,
        }));
        self.by_stream.insert(stream.to_owned(), index);
        Some(index)
    }
}
