//! The ledger's environment mark at start: before anything else is read or
//! written (before recovery, before any channel is connected), a
//! configuration is compared with the mark on the `ledger-environment`
//! stream (`paycode_domain::environment`), through the ledger like every
//! other write.
//!
//! - An empty ledger is marked with the configuration.
//! - A ledger holding events but no mark (written before ledgers were
//!   marked) is marked by its first start with a configuration file; the
//!   embedded defaults (no `--config`) refuse it, since an operator's slip
//!   is exactly what they would otherwise mark.
//! - A marked ledger: the configuration must be of the same environment
//!   (sandbox or real channels) and use the account each merchant was
//!   bound to; otherwise the start is refused with an error naming the
//!   merchant and the setting. New merchants and channels are added.

use std::sync::Arc;

use paycode_adapters::clock::Clock;
use paycode_adapters::store::EventStore;
use paycode_domain::CommandId;
use paycode_domain::environment::{
    AccountField, ENVIRONMENT_STREAM, EnvironmentDecider, EnvironmentRejection, MarkEnvironment,
};
use uuid::Uuid;

use crate::config::{Config, ConfigError, StoreKind};
use crate::service::ledger::{Ledger, LedgerError};

/// What the check did to the mark.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Marked {
    /// The ledger carried no mark; it has one now.
    Marked,
    /// The mark agreed; merchants or channels it did not know were added.
    Extended,
    /// The mark agreed and knew everything.
    Unchanged,
}

/// Why the ledger may not be opened with this configuration.
#[derive(Debug, thiserror::Error)]
pub enum EnvironmentError {
    /// The configuration disagrees with the mark (or may not mark the ledger).
    #[error(transparent)]
    Refused(#[from] ConfigError),
    /// The store failed, or the mark does not read.
    #[error("the ledger's environment mark cannot be read or written: {0}")]
    Ledger(String),
}

/// Compares `config` with the ledger's mark in `store`, marking the ledger
/// when it may (see the module's doc).
pub async fn check_environment(
    config: &Config,
    store: Arc<dyn EventStore>,
    clock: Arc<dyn Clock>,
) -> Result<Marked, EnvironmentError> {
    let mark = config.environment_mark()?;
    let ledger = Ledger::new(store.clone(), EnvironmentDecider, clock);
    let history = ledger
        .history_of(ENVIRONMENT_STREAM)
        .await
        .map_err(|error| EnvironmentError::Ledger(error.to_string()))?;
    let was_marked = history.state.is_marked();
    if !was_marked && config.embedded {
        let holds_events = !store
            .read_all(1, 1)
            .await
            .map_err(|error| EnvironmentError::Ledger(error.to_string()))?
            .is_empty();
        if holds_events {
            return Err(ConfigError::new(
                ledger_setting(config),
                format!(
                    "{} holds events but no environment mark (it was written before ledgers were marked); the embedded defaults never mark an existing ledger. Start it once with --config naming the configuration it was written with (docs/production.md)",
                    ledger_location(config)
                ),
            )
            .into());
        }
    }
    let command = MarkEnvironment {
        id: CommandId(Uuid::now_v7()),
        mark,
    };
    match ledger.execute(ENVIRONMENT_STREAM, &command).await {
        Ok(executed) if executed.appended.is_empty() => Ok(Marked::Unchanged),
        Ok(_) if was_marked => Ok(Marked::Extended),
        Ok(_) => Ok(Marked::Marked),
        Err(LedgerError::Rejected(rejection)) => Err(refusal(config, &rejection).into()),
        Err(other) => Err(EnvironmentError::Ledger(other.to_string())),
    }
}

/// The setting that names the ledger.
fn ledger_setting(config: &Config) -> &'static str {
    match config.store.kind {
        StoreKind::Eventstoredb => "store.url",
        StoreKind::Sqlite | StoreKind::Memory => "store.path",
    }
}

/// The ledger, as an error shows it.
fn ledger_location(config: &Config) -> String {
    match config.store.kind {
        StoreKind::Sqlite => format!(
            "the ledger {}",
            config.resolve(&config.store.path).display()
        ),
        StoreKind::Eventstoredb => "the EventStoreDB ledger (store.url)".to_owned(),
        StoreKind::Memory => "the ledger".to_owned(),
    }
}

/// The refusal, naming the setting that disagrees with the mark.
fn refusal(config: &Config, rejection: &EnvironmentRejection) -> ConfigError {
    let location = ledger_location(config);
    match rejection {
        EnvironmentRejection::EnvironmentDiffers { ledger_sandbox } => {
            let setting = if config.sandbox_in_process() {
                "sandbox.in_process".to_owned()
            } else if *ledger_sandbox {
                config
                    .first_real_channel_setting()
                    .unwrap_or_else(|| "merchants".to_owned())
            } else {
                // Every channel URL is a loopback address: the first names it.
                first_channel_setting(config).unwrap_or_else(|| "merchants".to_owned())
            };
            ConfigError::new(
                setting,
                format!(
                    "{location}: {rejection}. A ledger never mixes the sandbox and the real channels: give this configuration its own {}",
                    ledger_setting(config)
                ),
            )
        }
        EnvironmentRejection::AccountDiffers {
            merchant_id, field, ..
        } => {
            let index = config
                .merchants
                .iter()
                .position(|merchant| merchant.id == merchant_id.as_str())
                .unwrap_or_default();
            let key = match field {
                AccountField::MchId => "wechat.mch_id",
                AccountField::SubMchId => "wechat.sub_mch_id",
                AccountField::AppId => "alipay.app_id",
                AccountField::AppAuthToken => "alipay.app_auth_token_file",
            };
            ConfigError::new(
                format!("merchants[{index}].{key}"),
                format!(
                    "{location}: {rejection}. Its orders belong to that account; configure another account as a new merchant id"
                ),
            )
        }
    }
}

/// The first channel `base_url` setting of the configuration.
fn first_channel_setting(config: &Config) -> Option<String> {
    config
        .merchants
        .iter()
        .enumerate()
        .find_map(|(index, merchant)| {
            if merchant.wechat.is_some() {
                Some(format!("merchants[{index}].wechat.base_url"))
            } else {
                merchant
                    .alipay
                    .as_ref()
                    .map(|_| format!("merchants[{index}].alipay.base_url"))
            }
        })
}
