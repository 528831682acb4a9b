//! Opens the event store, the step leases and the read models a
//! configuration names, so that a bad path or an unreachable cluster stops
//! the start naming its setting.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use paycode_adapters::lease::{LocalLeases, SqliteLeases, StepLease};
use paycode_adapters::read_models::{ReadModelStore, SqliteReadModelStore};
use paycode_adapters::store::eventstoredb::{EventStoreDbStore, Namespace};
use paycode_adapters::store::{EventStore, MemoryStore, SqliteStore};

use super::{Config, StoreKind};
use crate::read::runner::{in_memory_read_models, open_read_models};
use crate::service::fingerprint::FingerprintKey;

/// How long start-up waits for an EventStoreDB cluster to answer.
pub const CONNECT_TIMEOUT_SECS: u64 = 5;

/// Opens the configured event store.
pub fn open_store(config: &Config) -> anyhow::Result<Arc<dyn EventStore>> {
    Ok(match config.store.kind {
        StoreKind::Sqlite => {
            let path = config.resolve(&config.store.path);
            Arc::new(
                SqliteStore::open(&path)
                    .with_context(|| format!("store.path: opening {}", path.display()))?,
            )
        }
        StoreKind::Memory => Arc::new(MemoryStore::new()),
        StoreKind::Eventstoredb => {
            let url = config.store.url.as_deref().context(
                "store.url: the EventStoreDB connection string is required when store.kind = \"eventstoredb\"",
            )?;
            Arc::new(
                EventStoreDbStore::open_blocking(
                    url,
                    Namespace::whole_cluster(),
                    Duration::from_secs(CONNECT_TIMEOUT_SECS),
                )
                .with_context(|| {
                    format!(
                        "store.url: cannot reach the EventStoreDB cluster within {CONNECT_TIMEOUT_SECS} s"
                    )
                })?,
            )
        }
    })
}

/// Who may act on an order's step: processes sharing a SQLite file agree
/// through the file; on other stores one process acts alone (the expected
/// version stays the fence either way).
pub fn open_leases(config: &Config) -> anyhow::Result<Arc<dyn StepLease>> {
    Ok(match config.store.kind {
        StoreKind::Sqlite => Arc::new(SqliteLeases::open(&config.resolve(&config.store.path))?),
        StoreKind::Memory | StoreKind::Eventstoredb => Arc::new(LocalLeases),
    })
}

/// The read-model file of a configuration: beside the SQLite ledger, or
/// beside `store.path` for EventStoreDB; `None` for the memory store
/// (nothing is kept).
pub fn read_models_path(config: &Config) -> Option<PathBuf> {
    match config.store.kind {
        StoreKind::Memory => None,
        StoreKind::Sqlite | StoreKind::Eventstoredb => Some(SqliteReadModelStore::path_beside(
            &config.resolve(&config.store.path),
        )),
    }
}

/// The read models `serve` keeps current: in their file, or in memory for
/// the memory store.
pub fn open_serving_read_models(config: &Config) -> anyhow::Result<Arc<dyn ReadModelStore>> {
    Ok(match read_models_path(config) {
        Some(path) => open_read_models(&path)
            .with_context(|| format!("store.path: opening the read models {}", path.display()))?,
        None => in_memory_read_models()?,
    })
}

/// The secret that fingerprints payment codes: in `<stem>-fingerprint.key`
/// beside `store.path` (made at the first start, mode 0600), or a random one
/// for the memory store. Every process of a deployment that shares a ledger
/// (EventStoreDB) needs the same file.
pub fn open_fingerprint_key(config: &Config) -> anyhow::Result<FingerprintKey> {
    Ok(match config.store.kind {
        StoreKind::Memory => FingerprintKey::random(),
        StoreKind::Sqlite | StoreKind::Eventstoredb => {
            let path = FingerprintKey::path_beside(&config.resolve(&config.store.path));
            FingerprintKey::load_or_create(&path)
                .context("store.path: the fingerprint key beside the ledger")?
        }
    })
}
