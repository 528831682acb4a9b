//! `MemoryStore`: the event store held in memory, for tests and simulations.
//!
//! It obeys every rule of the `EventStore` port (exact expected versions,
//! atomic batches, idempotent retries by event id, one global order) and runs
//! the same contract suite as the durable stores; it only forgets everything
//! when dropped. One mutex guards the whole log, which makes every append
//! trivially atomic and keeps positions in commit order.

use std::collections::HashMap;
use std::sync::Mutex;

use async_trait::async_trait;
use chrono::Utc;
use tokio::sync::watch;
use uuid::Uuid;

use super::chain::{GENESIS, link_new};
use super::{
    AppendOutcome, EventStore, ExpectedVersion, NewEvent, RecordedEvent, StoreError, StoredId,
    check_batch, retry_outcome,
};

/// An in-memory event store. Cheap to create; share it behind an `Arc`.
#[derive(Debug)]
pub struct MemoryStore {
    log: Mutex<Log>,
    /// The head position after each commit, for followers.
    head: watch::Sender<u64>,
}

/// Everything the store holds. `events[i]` has position `i + 1`.
#[derive(Debug, Default)]
struct Log {
    events: Vec<RecordedEvent>,
    /// Per stream, the indices into `events` of its events, oldest first.
    streams: HashMap<String, Vec<usize>>,
    /// Every stored event id, with the index of its event.
    ids: HashMap<Uuid, usize>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        let (head, _) = watch::channel(0);
        MemoryStore {
            log: Mutex::new(Log::default()),
            head,
        }
    }
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

impl Log {
    fn append(
        &mut self,
        stream: &str,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<AppendOutcome, StoreError> {
        check_batch(stream, &events)?;

        // Ids first: a retry of a committed append must be answered with its
        // original outcome even though the stream has moved on since.
        if events
            .iter()
            .any(|event| self.ids.contains_key(&event.event_id))
        {
            let stored: Vec<Option<StoredId<'_>>> = events
                .iter()
                .map(|event| {
                    self.ids.get(&event.event_id).map(|&index| {
                        let recorded = &self.events[index];
                        StoredId {
                            stream: &recorded.stream,
                            version: recorded.version,
                            position: recorded.position,
                        }
                    })
                })
                .collect();
            return retry_outcome(stream, expected, &stored);
        }

        let head = self
            .streams
            .get(stream)
            .and_then(|indices| indices.last())
            .map(|&index| &self.events[index]);
        let actual = head.map(|head| head.version);
        let mut previous_hash = head.map_or(GENESIS, |head| head.hash);
        if ExpectedVersion::after(actual) != expected {
            return Err(StoreError::Conflict {
                stream: stream.to_owned(),
                expected,
                actual,
            });
        }

        let recorded_at = Utc::now();
        let mut version = expected.next_version();
        let indices = self.streams.entry(stream.to_owned()).or_default();
        for event in events {
            let index = self.events.len();
            self.ids.insert(event.event_id, index);
            indices.push(index);
            let hash = link_new(&previous_hash, stream, version, &event);
            self.events.push(RecordedEvent {
                stream: stream.to_owned(),
                version,
                position: index as u64 + 1,
                event_id: event.event_id,
                event_type: event.event_type,
                schema_version: event.schema_version,
                data: event.data,
                recorded_at,
                previous_hash,
                hash,
            });
            previous_hash = hash;
            version += 1;
        }
        Ok(AppendOutcome {
            last_version: version - 1,
            last_position: self.events.len() as u64,
        })
    }
}

#[async_trait]
impl EventStore for MemoryStore {
    async fn append(
        &self,
        stream: &str,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<AppendOutcome, StoreError> {
        let outcome = {
            let mut log = self.log.lock().expect("memory store lock poisoned");
            let outcome = log.append(stream, expected, events)?;
            // Published under the lock so the watch never goes backwards (a
            // retry's outcome may name an older position than the head).
            self.head.send_replace(log.events.len() as u64);
            outcome
        };
        Ok(outcome)
    }

    async fn read_stream(&self, stream: &str) -> Result<Vec<RecordedEvent>, StoreError> {
        let log = self.log.lock().expect("memory store lock poisoned");
        Ok(log
            .streams
            .get(stream)
            .map(|indices| {
                indices
                    .iter()
                    .map(|&index| log.events[index].clone())
                    .collect()
            })
            .unwrap_or_default())
    }

    async fn read_all(
        &self,
        from_position: u64,
        max_count: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let log = self.log.lock().expect("memory store lock poisoned");
        let start = usize::try_from(from_position.saturating_sub(1)).unwrap_or(usize::MAX);
        Ok(log
            .events
            .iter()
            .skip(start)
            .take(max_count)
            .cloned()
            .collect())
    }

    async fn head_position(&self) -> Result<u64, StoreError> {
        let log = self.log.lock().expect("memory store lock poisoned");
        Ok(log.events.len() as u64)
    }

    async fn wait_for_head_past(&self, position: u64) -> Result<(), StoreError> {
        let mut head = self.head.subscribe();
        // The sender lives as long as `self`, so `wait_for` cannot see it closed;
        // if it ever did, returning is a permitted spurious wake-up.
        let _ = head.wait_for(|&head| head > position).await;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(kind: &str) -> NewEvent {
        NewEvent {
            event_id: Uuid::new_v4(),
            event_type: kind.to_owned(),
            schema_version: 1,
            data: b"{}".to_vec(),
        }
    }

    #[tokio::test]
    async fn retry_of_an_older_append_returns_its_original_outcome() {
        // Shows that an id retry is answered from the stored events even after
        // the stream moved on, and that reusing one id elsewhere is rejected.
        let store = MemoryStore::new();
        let first = vec![event("A"), event("B")];
        let outcome = store
            .append("s", ExpectedVersion::NoStream, first.clone())
            .await
            .expect("first append");
        store
            .append("s", ExpectedVersion::Exact(1), vec![event("C")])
            .await
            .expect("second append");
        let again = store
            .append("s", ExpectedVersion::NoStream, first.clone())
            .await
            .expect("retry");
        assert_eq!(again, outcome);
        let reused = store
            .append("other", ExpectedVersion::NoStream, vec![first[0].clone()])
            .await;
        assert!(
            matches!(reused, Err(StoreError::InvalidAppend { .. })),
            "{reused:?}"
        );
        assert_eq!(store.head_position().await.expect("head"), 3);
    }
}
