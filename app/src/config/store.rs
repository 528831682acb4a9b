//! Opens the event store, the step leases and the read models a
//! configuration names, so that a bad path or an unreachable cluster stops
//! the start naming its setting. And, for the commands that only read
//! (`verify`, `replay`, `history`, `reconcile --file --ledger`), the ledger
//! named by `--ledger PATH` or `--config FILE`'s `[store]`, opened so that
//! nothing is written to it (`SqliteStore::open_read_only`).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use paycode_adapters::lease::{LocalLeases, StepLease};
use paycode_adapters::read_models::{ReadModelStore, SqliteReadModelStore};
use paycode_adapters::store::eventstoredb::{EventStoreDbStore, Namespace};
use paycode_adapters::store::{EventStore, MemoryStore, SqliteStore};

use super::{Config, ConfigError, LedgerConfig, StoreKind};
use crate::read::runner::{in_memory_read_models, open_read_models};
use crate::service::fingerprint::FingerprintKey;

/// How long start-up waits for an EventStoreDB cluster to answer.
pub const CONNECT_TIMEOUT_SECS: u64 = 5;

/// Opens the configured event store.
pub fn open_store(config: &Config) -> anyhow::Result<Arc<dyn EventStore>> {
    Ok(match config.store.kind {
        StoreKind::Sqlite => Arc::new(open_sqlite(config)?),
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

fn open_sqlite(config: &Config) -> anyhow::Result<SqliteStore> {
    let path = config.resolve(&config.store.path);
    SqliteStore::open(&path).with_context(|| format!("store.path: opening {}", path.display()))
}

/// The configured event store, and who may act on an order's step:
/// processes sharing a SQLite file agree through the file (the store's
/// leases, written by its writer); on other stores one process acts alone
/// (the expected version stays the fence either way).
pub fn open_store_and_leases(
    config: &Config,
) -> anyhow::Result<(Arc<dyn EventStore>, Arc<dyn StepLease>)> {
    Ok(match config.store.kind {
        StoreKind::Sqlite => {
            let store = open_sqlite(config)?;
            let leases = Arc::new(store.leases());
            (Arc::new(store), leases)
        }
        StoreKind::Memory | StoreKind::Eventstoredb => (open_store(config)?, Arc::new(LocalLeases)),
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

/// Where a command that only reads finds the ledger.
#[derive(Debug, Clone)]
pub enum LedgerSource {
    /// `--ledger PATH`: a SQLite ledger file, or a copy of one.
    File(PathBuf),
    /// `--config FILE`: its `[store]` section (read with `LedgerConfig::load`).
    Configured(LedgerConfig),
    /// Neither: `./paycode.db`, as the embedded defaults say.
    Default,
}

impl LedgerSource {
    /// From the command line: `--ledger`, else `--config` (only its
    /// `[store]` and `[policy]` are read), else `./paycode.db`.
    pub fn from_args(
        ledger: Option<&Path>,
        config: Option<&Path>,
    ) -> Result<LedgerSource, ConfigError> {
        Ok(match (ledger, config) {
            (Some(ledger), _) => LedgerSource::File(ledger.to_owned()),
            (None, Some(config)) => LedgerSource::Configured(LedgerConfig::load(config)?),
            (None, None) => LedgerSource::Default,
        })
    }

    /// The SQLite ledger file and the option or setting that named it;
    /// `None` for the other kinds of store.
    pub fn sqlite_path(&self) -> Option<(PathBuf, &'static str)> {
        match self {
            LedgerSource::File(path) => Some((path.clone(), "--ledger")),
            LedgerSource::Configured(config) => (config.store.kind == StoreKind::Sqlite)
                .then(|| (config.resolve(&config.store.path), "store.path")),
            LedgerSource::Default => Some((
                super::StoreConfig::default().path,
                "--ledger (not given: the default ./paycode.db)",
            )),
        }
    }

    /// The payment rules in force: `[policy]` of `--config`, else the defaults.
    pub fn policy(&self) -> Result<paycode_domain::Policy, ConfigError> {
        match self {
            LedgerSource::Configured(config) => config.policy.policy(),
            LedgerSource::File(_) | LedgerSource::Default => Ok(paycode_domain::Policy::default()),
        }
    }

    /// The read-model file beside the ledger (`paycode-views.db` for
    /// `paycode.db`); `None` for the memory store.
    pub fn read_models_path(&self) -> Option<PathBuf> {
        match self {
            LedgerSource::Configured(config) if config.store.kind == StoreKind::Memory => None,
            LedgerSource::Configured(config) => Some(SqliteReadModelStore::path_beside(
                &config.resolve(&config.store.path),
            )),
            LedgerSource::File(_) | LedgerSource::Default => self
                .sqlite_path()
                .map(|(path, _)| SqliteReadModelStore::path_beside(&path)),
        }
    }
}

/// A ledger opened for reading: SQLite (read in stream order by `verify`)
/// or any other store behind the port.
#[derive(Debug, Clone)]
pub enum OpenedLedger {
    Sqlite(Arc<SqliteStore>),
    Port(Arc<dyn EventStore>),
}

impl OpenedLedger {
    /// The store behind the port.
    pub fn store(&self) -> Arc<dyn EventStore> {
        match self {
            OpenedLedger::Sqlite(store) => store.clone(),
            OpenedLedger::Port(store) => store.clone(),
        }
    }
}

/// Opens the ledger of `source` to read it: a SQLite file read-only (it
/// must exist; nothing is written to it or beside it), EventStoreDB as
/// configured (this process never appends to it), the memory store empty.
pub fn open_ledger_read_only(source: &LedgerSource) -> anyhow::Result<OpenedLedger> {
    if let Some((path, setting)) = source.sqlite_path() {
        if !path.is_file() {
            anyhow::bail!("{setting}: no SQLite ledger at {}", path.display());
        }
        let store = SqliteStore::open_read_only(&path)
            .with_context(|| format!("{setting}: opening {} read-only", path.display()))?;
        return Ok(OpenedLedger::Sqlite(Arc::new(store)));
    }
    let LedgerSource::Configured(config) = source else {
        unreachable!("--ledger and the default are SQLite files")
    };
    Ok(OpenedLedger::Port(open_store(
        &config.clone().into_config(),
    )?))
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
