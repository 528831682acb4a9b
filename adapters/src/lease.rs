//! Step leases: which process may act on an order's due step. Two `paycode
//! serve` processes sharing one SQLite file both keep timers for the orders
//! they recovered; the lease makes sure only one of them calls the channel
//! for a step. The expected version of the append remains the fence that
//! keeps the log right; the lease keeps the channel from being called twice.

use std::path::Path;
use std::sync::Mutex;

use async_trait::async_trait;
use chrono::{DateTime, Duration, Utc};
use rusqlite::{Connection, OpenFlags, params};

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

/// Leases in a table of the ledger's own SQLite file, shared by every process using it.
/// Leases shared by runtimes in one process (a simulation of several
/// instances on one store): the same rules as [`SqliteLeases`], in memory.
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

#[derive(Debug)]
pub struct SqliteLeases {
    connection: std::sync::Arc<Mutex<Connection>>,
}

fn unavailable(error: rusqlite::Error) -> StoreError {
    StoreError::Unavailable(Box::new(error))
}

impl SqliteLeases {
    /// Opens the leases of the store at `path` (the store must exist already).
    pub fn open(path: &Path) -> Result<SqliteLeases, StoreError> {
        let connection = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_WRITE)
            .map_err(unavailable)?;
        connection
            .busy_timeout(std::time::Duration::from_secs(5))
            .map_err(unavailable)?;
        connection
            .execute_batch(
                "CREATE TABLE IF NOT EXISTS step_leases (
                    stream TEXT PRIMARY KEY,
                    owner TEXT NOT NULL,
                    expires_at_micros INTEGER NOT NULL
                ) WITHOUT ROWID;",
            )
            .map_err(unavailable)?;
        Ok(SqliteLeases {
            connection: std::sync::Arc::new(Mutex::new(connection)),
        })
    }

    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, StoreError> {
        let connection = self.connection.clone();
        tokio::task::spawn_blocking(move || {
            let connection = connection.lock().expect("lease connection lock");
            work(&connection).map_err(unavailable)
        })
        .await
        .map_err(|error| StoreError::Unavailable(Box::new(error)))?
    }
}

#[async_trait]
impl StepLease for SqliteLeases {
    async fn acquire(
        &self,
        stream: &str,
        owner: &str,
        now: DateTime<Utc>,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        let (stream, owner) = (stream.to_owned(), owner.to_owned());
        let now_micros = now.timestamp_micros();
        let until_micros = (now + ttl).timestamp_micros();
        self.run(move |connection| {
            // One statement, so it is atomic: take a free or expired lease, or renew our own.
            let changed = connection.execute(
                "INSERT INTO step_leases (stream, owner, expires_at_micros) VALUES (?1, ?2, ?3)
                 ON CONFLICT (stream) DO UPDATE SET owner = excluded.owner, expires_at_micros = excluded.expires_at_micros
                 WHERE step_leases.expires_at_micros <= ?4 OR step_leases.owner = excluded.owner",
                params![stream, owner, until_micros, now_micros],
            )?;
            Ok(changed == 1)
        })
        .await
    }

    async fn release(&self, stream: &str, owner: &str) -> Result<(), StoreError> {
        let (stream, owner) = (stream.to_owned(), owner.to_owned());
        self.run(move |connection| {
            connection.execute(
                "DELETE FROM step_leases WHERE stream = ?1 AND owner = ?2",
                params![stream, owner],
            )?;
            Ok(())
        })
        .await
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
        let _store = crate::store::SqliteStore::open(&path).unwrap();
        let first = SqliteLeases::open(&path).unwrap();
        let second = SqliteLeases::open(&path).unwrap();
        one_owner_at_a_time(&first, &second).await;
        let shared = MemoryLeases::default();
        one_owner_at_a_time(&shared, &shared).await;
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
        assert!(
            first
                .acquire("payment-demo-A", "p1", t0 + ttl, ttl)
                .await
                .unwrap(),
            "released"
        );
    }
}
