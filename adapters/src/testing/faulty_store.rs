//! `FaultyStore`: any event store with the faults a real one can have,
//! switched on by a test. One wrapper for every test that needs a store to
//! misbehave (instead of one hand-written wrapper per test):
//!
//! - down: every call answers `Unavailable` (the disk or cluster is gone);
//! - an append that fails before it commits, or one that commits and then
//!   reports `Unavailable` (the acknowledgement was lost): the caller cannot
//!   tell the two apart, which is the point;
//! - a position hidden from `read_all` (a commit readers see late), and
//!   positions declared sparse;
//! - a stored payload read back with one byte changed (a file edited after
//!   the append).

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use async_trait::async_trait;

use crate::store::{
    AppendOutcome, EventStore, ExpectedVersion, NewEvent, RecordedEvent, StoreError,
};

/// How the next appends fail, in order, before the store behaves again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppendFault {
    /// Nothing is written; the caller hears `Unavailable`.
    BeforeCommit,
    /// Everything is written; the caller hears `Unavailable`.
    AfterCommit,
}

/// A store that misbehaves when told to.
#[derive(Debug)]
pub struct FaultyStore<S> {
    inner: Arc<S>,
    down: AtomicBool,
    append_faults: Mutex<Vec<AppendFault>>,
    /// Appends seen (faulty or not), for assertions.
    appends: AtomicU32,
    hidden: Mutex<Option<u64>>,
    tampered: Mutex<Option<u64>>,
    sparse: AtomicBool,
}

impl<S: EventStore> FaultyStore<S> {
    /// `inner`, behaving until told otherwise.
    pub fn new(inner: Arc<S>) -> Self {
        FaultyStore {
            inner,
            down: AtomicBool::new(false),
            append_faults: Mutex::new(Vec::new()),
            appends: AtomicU32::new(0),
            hidden: Mutex::new(None),
            tampered: Mutex::new(None),
            sparse: AtomicBool::new(false),
        }
    }

    /// The store underneath, which never misbehaves.
    pub fn inner(&self) -> &Arc<S> {
        &self.inner
    }

    /// Every call answers `Unavailable` while `down`.
    pub fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
    }

    /// The next append fails as `fault` (queued after faults already set).
    pub fn fail_next_append(&self, fault: AppendFault) {
        lock(&self.append_faults).push(fault);
    }

    /// How many appends were asked for, faulty ones included.
    pub fn appends(&self) -> u32 {
        self.appends.load(Ordering::SeqCst)
    }

    /// Hides the event at `position` from `read_all` (`None`: shows it again).
    pub fn hide_position(&self, position: Option<u64>) {
        *lock(&self.hidden) = position;
    }

    /// Reads the payload at `position` with its first byte changed.
    pub fn tamper_position(&self, position: Option<u64>) {
        *lock(&self.tampered) = position;
    }

    /// Declares the positions sparse (as EventStoreDB's are).
    pub fn set_sparse(&self, sparse: bool) {
        self.sparse.store(sparse, Ordering::SeqCst);
    }

    fn check_up(&self) -> Result<(), StoreError> {
        if self.down.load(Ordering::SeqCst) {
            return Err(unavailable("the test switched the store off"));
        }
        Ok(())
    }
}

fn unavailable(why: &'static str) -> StoreError {
    StoreError::Unavailable(why.into())
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[async_trait]
impl<S: EventStore> EventStore for FaultyStore<S> {
    async fn append(
        &self,
        stream: &str,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<AppendOutcome, StoreError> {
        self.appends.fetch_add(1, Ordering::SeqCst);
        self.check_up()?;
        let fault = {
            let mut faults = lock(&self.append_faults);
            (!faults.is_empty()).then(|| faults.remove(0))
        };
        match fault {
            None => self.inner.append(stream, expected, events).await,
            Some(AppendFault::BeforeCommit) => Err(unavailable("the append failed before commit")),
            Some(AppendFault::AfterCommit) => {
                self.inner.append(stream, expected, events).await?;
                Err(unavailable(
                    "the append committed, then its answer was lost",
                ))
            }
        }
    }

    async fn read_stream(&self, stream: &str) -> Result<Vec<RecordedEvent>, StoreError> {
        self.check_up()?;
        self.inner.read_stream(stream).await
    }

    async fn read_all(
        &self,
        from_position: u64,
        max_count: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        self.check_up()?;
        let hidden = *lock(&self.hidden);
        let tampered = *lock(&self.tampered);
        let mut events = self
            .inner
            .read_all(from_position, max_count.saturating_add(1))
            .await?;
        events.retain(|event| Some(event.position) != hidden);
        events.truncate(max_count);
        for event in &mut events {
            if Some(event.position) == tampered
                && let Some(byte) = event.data.first_mut()
            {
                *byte ^= 1;
            }
        }
        Ok(events)
    }

    async fn head_position(&self) -> Result<u64, StoreError> {
        self.check_up()?;
        self.inner.head_position().await
    }

    async fn wait_for_head_past(&self, position: u64) -> Result<(), StoreError> {
        self.check_up()?;
        self.inner.wait_for_head_past(position).await
    }

    fn dense_positions(&self) -> bool {
        !self.sparse.load(Ordering::SeqCst) && self.inner.dense_positions()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemoryStore;

    fn event(id: u128) -> NewEvent {
        NewEvent {
            event_id: uuid::Uuid::from_u128(id),
            event_type: "Noted".into(),
            schema_version: 1,
            data: b"{}".to_vec(),
        }
    }

    #[tokio::test]
    async fn a_lost_acknowledgement_commits_and_a_failed_append_does_not() {
        // Both answer Unavailable; only the store knows which one happened.
        let store = FaultyStore::new(Arc::new(MemoryStore::new()));
        store.fail_next_append(AppendFault::AfterCommit);
        store.fail_next_append(AppendFault::BeforeCommit);
        let lost = store
            .append("s", ExpectedVersion::NoStream, vec![event(1)])
            .await;
        assert!(matches!(lost, Err(StoreError::Unavailable(_))));
        let failed = store
            .append("t", ExpectedVersion::NoStream, vec![event(2)])
            .await;
        assert!(matches!(failed, Err(StoreError::Unavailable(_))));
        assert_eq!(store.inner().read_stream("s").await.unwrap().len(), 1);
        assert!(store.inner().read_stream("t").await.unwrap().is_empty());
        // The retry of the lost one is recognised by its ids; then all is normal.
        let retry = store
            .append("s", ExpectedVersion::NoStream, vec![event(1)])
            .await;
        assert_eq!(retry.unwrap().last_version, 0);
        assert_eq!(store.appends(), 3);
        store.set_down(true);
        assert!(store.read_stream("s").await.is_err());
    }

    #[tokio::test]
    async fn hidden_and_tampered_positions_read_as_told() {
        // A hidden position is skipped by read_all; a tampered one has a changed first byte.
        let store = FaultyStore::new(Arc::new(MemoryStore::new()));
        for id in 1..=3 {
            let stream = format!("s{id}");
            store
                .append(&stream, ExpectedVersion::NoStream, vec![event(id)])
                .await
                .unwrap();
        }
        store.hide_position(Some(2));
        store.tamper_position(Some(3));
        let read = store.read_all(1, 10).await.unwrap();
        assert_eq!(read.iter().map(|e| e.position).collect::<Vec<_>>(), [1, 3]);
        assert_eq!(read[1].data, b"z}".to_vec());
        store.set_sparse(true);
        assert!(!store.dense_positions());
    }
}
