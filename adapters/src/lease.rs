//! Step leases: which process may act on an order's due step. Two `paycode
//! serve` processes sharing one SQLite file both keep timers for the orders
//! they recovered; the lease makes sure only one of them calls the channel
//! for a step. The expected version of the append remains the fence that
//! keeps the log right; the lease keeps the channel from being called twice.
//!
//! On a SQLite ledger the leases are rows of its file, changed by the
//! store's writer in the same group commits as the events
//! (`crate::store::StoreLeases`, from `SqliteStore::leases`).

use std::sync::Mutex;

use async_trait::async_trait;
use chrono::{DateTime, Duration, Utc};

use crate::store::StoreError;

#[async_trait]
pub trait StepLease: Send + Sync + std::fmt::Debug + 'static {
    /// Takes (or renews) the right to act on `stream` until `now + ttl`.
    /// `false` when another owner holds an unexpired lease.
    async fn acquire(
        &self,
        stream: &str,
        owner: &str,
        now: DateTime<Utc>,
        ttl: Duration,
    ) -> Result<bool, StoreError>;

    /// Gives the lease back early (a no-op when another owner holds it).
    async fn release(&self, stream: &str, owner: &str) -> Result<(), StoreError>;

    /// Whether another owner may hold these leases (another process, or
    /// another runtime of a simulation). Only then can an order move while
    /// its lease is being taken, so that the holder must read it again.
    fn shared(&self) -> bool {
        true
    }
}

/// One process alone: every lease is granted (the runtime's in-flight set
/// already keeps one task per order).
#[derive(Debug, Default, Clone, Copy)]
pub struct LocalLeases;

#[async_trait]
impl StepLease for LocalLeases {
    async fn acquire(
        &self,
        _: &str,
        _: &str,
        _: DateTime<Utc>,
        _: Duration,
    ) -> Result<bool, StoreError> {
        Ok(true)
    }

    async fn release(&self, _: &str, _: &str) -> Result<(), StoreError> {
        Ok(())
    }

    fn shared(&self) -> bool {
        false
    }
}

/// Leases shared by runtimes in one process (a simulation of several
/// instances on one store): the same rules as the SQLite ledger's
/// (`crate::store::StoreLeases`), in memory.
#[derive(Debug, Default)]
pub struct MemoryLeases {
    /// Stream → (owner, expiry).
    leases: Mutex<std::collections::HashMap<String, (String, DateTime<Utc>)>>,
}

#[async_trait]
impl StepLease for MemoryLeases {
    async fn acquire(
        &self,
        stream: &str,
        owner: &str,
        now: DateTime<Utc>,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        let mut leases = self
            .leases
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match leases.get(stream) {
            Some((holder, until)) if holder != owner && *until > now => Ok(false),
            _ => {
                leases.insert(stream.to_owned(), (owner.to_owned(), now + ttl));
                Ok(true)
            }
        }
    }

    async fn release(&self, stream: &str, owner: &str) -> Result<(), StoreError> {
        let mut leases = self
            .leases
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if leases
            .get(stream)
            .is_some_and(|(holder, _)| holder == owner)
        {
            leases.remove(stream);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[tokio::test]
    async fn one_owner_at_a_time_until_release_or_expiry() {
        // Two processes on one SQLite file, and two runtimes sharing memory leases.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("paycode.db");
        let first_process = crate::store::SqliteStore::open(&path).unwrap();
        let second_process = crate::store::SqliteStore::open(&path).unwrap();
        one_owner_at_a_time(&first_process.leases(), &second_process.leases()).await;
        let shared = MemoryLeases::default();
        one_owner_at_a_time(&shared, &shared).await;
    }

    #[tokio::test]
    async fn lease_changes_alone_commit_without_an_fsync_and_events_still_sync() {
        // A group of lease changes alone is counted apart from the commits
        // that sync; an append after it syncs again, and the file reopens
        // with every event and the lease.
        use crate::store::{EventStore, ExpectedVersion, NewEvent};
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("paycode.db");
        let store = crate::store::SqliteStore::open(&path).unwrap();
        let leases = store.leases();
        let t0 = Utc.with_ymd_and_hms(2026, 11, 22, 2, 0, 0).unwrap();
        let ttl = Duration::seconds(60);
        let event = || NewEvent {
            event_id: uuid::Uuid::now_v7(),
            event_type: "Submitted".to_owned(),
            schema_version: 1,
            data: b"{}".to_vec(),
        };

        assert!(
            leases
                .acquire("payment-demo-A", "p1", t0, ttl)
                .await
                .unwrap()
        );
        let stats = store.stats();
        assert_eq!((stats.commits, stats.lease_only_commits), (1, 1));

        store
            .append("payment-demo-A", ExpectedVersion::NoStream, vec![event()])
            .await
            .unwrap();
        let stats = store.stats();
        assert_eq!((stats.commits, stats.lease_only_commits), (2, 1));

        assert!(
            leases
                .acquire("payment-demo-B", "p1", t0, ttl)
                .await
                .unwrap()
        );
        store
            .append("payment-demo-A", ExpectedVersion::Exact(0), vec![event()])
            .await
            .unwrap();
        let stats = store.stats();
        assert_eq!((stats.commits, stats.lease_only_commits), (4, 2));
        assert!(
            leases
                .acquire("payment-demo-C", "p1", t0, ttl)
                .await
                .unwrap()
        );
        store.close().await.unwrap();

        let reopened = crate::store::SqliteStore::open(&path).unwrap();
        assert_eq!(
            reopened.read_stream("payment-demo-A").await.unwrap().len(),
            2
        );
        assert!(
            !reopened
                .leases()
                .acquire("payment-demo-C", "p2", t0, ttl)
                .await
                .unwrap(),
            "the last lease, committed without an fsync, is in the file"
        );
        reopened.close().await.unwrap();
    }

    async fn one_owner_at_a_time(first: &dyn StepLease, second: &dyn StepLease) {
        let t0 = Utc.with_ymd_and_hms(2026, 11, 22, 2, 0, 0).unwrap();
        let ttl = Duration::seconds(60);
        assert!(
            first
                .acquire("payment-demo-A", "p1", t0, ttl)
                .await
                .unwrap()
        );
        assert!(
            !second
                .acquire("payment-demo-A", "p2", t0, ttl)
                .await
                .unwrap(),
            "held by p1"
        );
        assert!(
            second
                .acquire("payment-demo-B", "p2", t0, ttl)
                .await
                .unwrap(),
            "another order is free"
        );
        assert!(
            first
                .acquire("payment-demo-A", "p1", t0, ttl)
                .await
                .unwrap(),
            "p1 renews its own"
        );
        second.release("payment-demo-A", "p2").await.unwrap();
        assert!(
            !second
                .acquire("payment-demo-A", "p2", t0, ttl)
                .await
                .unwrap(),
            "p2 cannot release p1's lease"
        );
        assert!(
            second
                .acquire("payment-demo-A", "p2", t0 + ttl, ttl)
                .await
                .unwrap(),
            "an expired lease is free"
        );
        second.release("payment-demo-A", "p2").await.unwrap();
        // A release is not waited for; it is in by the time a later request
        // of the same process is answered (one writer, in order).
        assert!(
            second
                .acquire("payment-demo-Z", "p2", t0 + ttl, ttl)
                .await
                .unwrap()
        );
        assert!(
            first
                .acquire("payment-demo-A", "p1", t0 + ttl, ttl)
                .await
                .unwrap(),
            "released"
        );
    }
}
