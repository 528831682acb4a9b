//! `Follower`: reads a store's global order from a position onwards and waits
//! for new events when it has caught up. Projections and the runtime use it
//! to see every committed event exactly once, in order, over any store.

use std::sync::Arc;

use super::{EventStore, RecordedEvent, StoreError};

/// A cursor over one store's global order. Each `next_batch` returns the
/// events after the last one it returned; it never skips or repeats one.
#[derive(Debug)]
pub struct Follower<S: ?Sized> {
    store: Arc<S>,
    /// The position of the next event to return.
    next_position: u64,
}

impl<S: EventStore + ?Sized> Follower<S> {
    /// A follower whose first event will be the one at `from_position`
    /// (positions start at 1; 0 and 1 both mean "from the beginning").
    pub fn new(store: Arc<S>, from_position: u64) -> Self {
        Follower {
            store,
            next_position: from_position.max(1),
        }
    }

    /// The position of the next event `next_batch` will return.
    pub fn next_position(&self) -> u64 {
        self.next_position
    }

    /// The next up to `max_count` events (at least one), waiting for the
    /// store's head to move when there is none yet. `max_count` of 0 is
    /// treated as 1. Cancel-safe: dropping the future loses no event.
    pub async fn next_batch(&mut self, max_count: usize) -> Result<Vec<RecordedEvent>, StoreError> {
        let max_count = max_count.max(1);
        loop {
            let batch = self.store.read_all(self.next_position, max_count).await?;
            if let Some(last) = batch.last() {
                debug_assert!(
                    batch.first().map(|first| first.position) >= Some(self.next_position),
                    "read_all returned an event before its start position"
                );
                self.next_position = last.position + 1;
                return Ok(batch);
            }
            self.store
                .wait_for_head_past(self.next_position - 1)
                .await?;
        }
    }
}
