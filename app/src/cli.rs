//! The command line's subcommands (except benchmarks): `serve`,
//! `history` and `replay`. Each reads the configuration (or the embedded defaults) and
//! prints what it chose; errors name the setting at fault.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use paycode_adapters::clock::SystemClock;
use paycode_adapters::lease::{LocalLeases, SqliteLeases, StepLease};
use paycode_adapters::store::{EventStore, MemoryStore, SqliteStore};
use paycode_domain::{MerchantId, OrderNo};
use paycode_projections::statuses_after;
use tracing_subscriber::EnvFilter;

use crate::config::{Config, LogFormat, StoreKind};
use crate::ledger::Ledger;
use crate::service::{Parts, Service};

/// Sets up logging: `RUST_LOG` filters (default `info`), JSON when asked.
pub fn init_logging(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder.try_init(),
    };
}

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
            use paycode_adapters::store::eventstoredb::{EventStoreDbStore, Namespace};
            const CONNECT_TIMEOUT_SECS: u64 = 5;
            let url = config.store.url.as_deref().context(
                "store.url: the EventStoreDB connection string is required when store.kind = \"eventstoredb\"",
            )?;
            Arc::new(
                EventStoreDbStore::open_blocking(
                    url,
                    Namespace::whole_cluster(),
                    std::time::Duration::from_secs(CONNECT_TIMEOUT_SECS),
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

/// Reads `--config FILE`, or `None` for the embedded defaults.
pub fn load_config(path: Option<&Path>) -> anyhow::Result<Option<Config>> {
    path.map(|path| Config::load(path).map_err(anyhow::Error::from))
        .transpose()
}

/// `paycode serve --config FILE`: the real channels of the configured merchants.
pub async fn serve_with_config(config: Config) -> anyhow::Result<()> {
    init_logging(config.server.log_format);
    let policy = config.policy.policy()?;
    let (channels, api_keys) = crate::clients::build(&config)?;
    if api_keys.is_empty() {
        anyhow::bail!("merchants: configure at least one merchant with an API key");
    }
    let store = open_store(&config)?;
    let leases: Arc<dyn StepLease> = match config.store.kind {
        StoreKind::Sqlite => Arc::new(SqliteLeases::open(&config.resolve(&config.store.path))?),
        _ => Arc::new(LocalLeases),
    };
    let listener = tokio::net::TcpListener::bind(config.server.listen)
        .await
        .with_context(|| format!("server.listen: cannot listen on {}", config.server.listen))?;
    let parts = Parts {
        store,
        channels,
        clock: Arc::new(SystemClock),
        policy,
        api_keys,
        requests_per_sec: config.server.requests_per_sec,
        leases,
    };
    let views = match crate::replay::views_path(&config) {
        Some(path) => crate::projection_runner::open_read_models(&path)
            .with_context(|| format!("store.path: opening the read models {}", path.display()))?,
        None => crate::projection_runner::in_memory_read_models()?,
    };
    let service = Service::start_with_views(parts, Some(views))
        .await
        .context("recovering pending orders from the log")?;
    println!(
        "paycode: serving on http://{} with the {:?} store ({}), {} merchant(s), {} pending order(s) resumed",
        listener.local_addr()?,
        config.store.kind,
        config.resolve(&config.store.path).display(),
        config.merchants.len(),
        service.recovered_orders,
    );
    service.serve(listener, shutdown_signal()).await?;
    Ok(())
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = terminate => {},
    }
    tracing::info!("stopping; in-flight steps finish, pending orders resume on the next start");
}

/// `paycode history ORDER_NO [--merchant ID]`: the timeline with the status after every event.
pub async fn history(
    config: Option<Config>,
    order_no: &str,
    merchant: &str,
) -> anyhow::Result<String> {
    let config = config.unwrap_or_else(|| {
        Config::parse("", PathBuf::new()).expect("the empty configuration parses")
    });
    let order_no =
        OrderNo::parse(order_no).map_err(|error| anyhow::anyhow!("ORDER_NO: {error}"))?;
    let merchant =
        MerchantId::parse(merchant).map_err(|error| anyhow::anyhow!("--merchant: {error}"))?;
    let store = open_store(&config)?;
    let ledger = Ledger::new(store, Default::default(), Arc::new(SystemClock));
    let history = ledger.history(&merchant, &order_no).await?;
    if history.events.is_empty() {
        anyhow::bail!("no order {order_no} for merchant {merchant}");
    }
    let mut out = format!("order {order_no} of merchant {merchant}\n");
    out.push_str(&format!(
        "{:>4}  {:<24}  {:<22}  {:<18}  {}\n",
        "ver", "at", "event", "status after", "details"
    ));
    let statuses = statuses_after(history.events.iter().map(|recorded| &recorded.event));
    for (recorded, status_after) in history.events.iter().zip(statuses) {
        let mut data = serde_json::to_value(&recorded.event).unwrap_or_default();
        let name = recorded.event.fact.stored_name();
        if let Some(object) = data.as_object_mut() {
            for key in ["type", "at", "command_id"] {
                object.remove(key);
            }
        }
        out.push_str(&format!(
            "{:>4}  {:<24}  {:<22}  {:<18}  {}\n",
            recorded.version,
            recorded.event.at.format("%Y-%m-%dT%H:%M:%S%.3fZ"),
            name,
            status_after.map_or("-", |status| status.as_str()),
            data,
        ));
    }
    Ok(out)
}

/// `paycode replay [--config FILE]`: rebuilds the read models from the log
/// and compares them with the stored ones. Returns the summary and the exit code.
pub async fn replay(config: Option<Config>) -> anyhow::Result<(String, i32)> {
    use std::io::IsTerminal;
    let report = crate::replay::run(config, std::io::stderr().is_terminal()).await?;
    Ok((report.to_string(), report.exit_code()))
}

/// `paycode serve` without `--config`: the embedded defaults.
pub async fn serve_embedded(
    listen: Option<std::net::SocketAddr>,
    log_format: LogFormat,
) -> anyhow::Result<()> {
    let listen = listen.map(|address| address.to_string());
    let listen = listen.as_deref().unwrap_or(crate::embedded::LISTEN_DEFAULT);
    crate::embedded::serve(
        crate::embedded::EmbeddedPaths::default(),
        listen,
        log_format,
    )
    .await
}
