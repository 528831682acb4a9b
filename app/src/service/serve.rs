//! `serve`: the one path that runs the service, for a configuration file
//! and for the embedded defaults alike (they are a configuration too,
//! `Config::embedded`). It sets up logging, checks who else can read the
//! secret files, opens the store and checks the ledger's environment mark
//! (before anything else is read or written, before any channel call),
//! connects the channels (the configured clients, or the in-process
//! sandbox), opens the step leases and the read models, recovers pending
//! orders, prints what it chose, and serves HTTP until Ctrl-C or SIGTERM.

use std::io::IsTerminal as _;
use std::sync::Arc;

use anyhow::Context;
use paycode_adapters::clock::{Clock, SystemClock};
use secrecy::ExposeSecret;
use tracing_subscriber::EnvFilter;

use super::environment::{Marked, check_environment};
use super::{Parts, Service};
use crate::config::clients::{ConnectedChannels, api_keys, build as build_clients};
use crate::config::secrets::check_secret_files;
use crate::config::store::{
    open_fingerprint_key, open_serving_read_models, open_store_and_leases, read_models_path,
};
use crate::config::{Config, LogFormat, StoreKind};

/// Sets up logging: `RUST_LOG` filters (default `info`), JSON when asked,
/// colours only when standard error is a terminal (never in a file or pipe).
pub fn init_logging(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder.try_init(),
    };
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
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("stopping; in-flight steps finish, pending orders resume on the next start");
}

/// Runs the service on `config` until Ctrl-C or SIGTERM.
pub async fn serve(config: Config) -> anyhow::Result<()> {
    init_logging(config.server.log_format);
    let policy = config.policy.policy()?;
    let api_keys = api_keys(&config)?;
    if api_keys.is_empty() {
        anyhow::bail!("merchants: configure at least one merchant with an API key");
    }
    for warning in check_secret_files(&config)? {
        eprintln!("warning: {warning}");
        tracing::warn!("{warning}");
    }
    if let Some(warning) = exposure_warning(&config) {
        eprintln!("warning: {warning}");
        tracing::warn!("{warning}");
    }
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    // The configured clients are built (every setting and secret checked, no
    // call made) before the mark is written, so that only a configuration
    // that can run marks the ledger; the in-process sandbox, which writes its
    // own state, starts only after the check.
    let configured = if config.sandbox_in_process() {
        None
    } else {
        Some(build_clients(&config)?)
    };
    let (store, leases) = open_store_and_leases(&config)?;
    let marked = check_environment(&config, store.clone(), clock.clone()).await?;
    let connected = match configured {
        Some(channels) => ConnectedChannels {
            channels,
            sandbox: None,
        },
        None => ConnectedChannels::connect(&config, clock.clone()).await?,
    };
    let read_models = open_serving_read_models(&config)?;
    let limits = config.server.limits()?;
    let fingerprint_key = open_fingerprint_key(&config)?;
    let listener = tokio::net::TcpListener::bind(config.server.listen)
        .await
        .with_context(|| format!("server.listen: cannot listen on {}", config.server.listen))?;
    let metrics_listener = match config.server.metrics_listen {
        Some(address) => Some(
            tokio::net::TcpListener::bind(address)
                .await
                .with_context(|| format!("server.metrics_listen: cannot listen on {address}"))?,
        ),
        None => None,
    };
    let parts = Parts {
        store,
        channels: connected.channels.clone(),
        clock,
        policy,
        api_keys,
        limits,
        fingerprint_key,
        leases,
        ids: Arc::new(paycode_adapters::ids::RandomIds),
    };
    let service = Service::start_with_views(parts, Some(read_models))
        .await
        .context("recovering pending orders from the log")?;
    let address = listener.local_addr()?;
    let ledger = match config.store.kind {
        StoreKind::Sqlite => format!("SQLite {}", config.resolve(&config.store.path).display()),
        StoreKind::Memory => "in memory (nothing survives a restart)".to_owned(),
        StoreKind::Eventstoredb => "EventStoreDB (store.url)".to_owned(),
    };
    println!("  ledger      {ledger}");
    let environment = if config.talks_to_real_channels() {
        "the real channels"
    } else {
        "the sandbox"
    };
    match marked {
        Marked::Marked => println!("  environment {environment} (the ledger is now marked so)"),
        Marked::Extended | Marked::Unchanged => {
            println!("  environment {environment}, as the ledger's mark says");
        }
    }
    if let Some(path) = read_models_path(&config) {
        println!("  read models SQLite {}", path.display());
    }
    match &connected.sandbox {
        Some(sandbox) => {
            let truth = SandboxTruth(config.sandbox.as_ref().and_then(|s| s.state_path.clone()));
            println!(
                "  channels    the sandbox, in-process at {} (its truth in {truth})",
                sandbox.base_url
            );
        }
        None => println!("  channels    the configured WeChat and Alipay accounts"),
    }
    for merchant in &config.merchants {
        if connected.sandbox.is_some() {
            // Sandbox merchants only: test keys, printed so a newcomer can try them.
            let keys: Vec<&str> = merchant
                .api_keys
                .iter()
                .map(ExposeSecret::expose_secret)
                .collect();
            println!("  merchant    {}, API key {}", merchant.id, keys.join(", "));
        } else {
            println!("  merchant    {}", merchant.id);
        }
    }
    println!("  listening   http://{address}");
    if let Some(metrics) = &metrics_listener {
        println!("  metrics     http://{}/metrics", metrics.local_addr()?);
    }
    println!(
        "  resumed     {} pending order(s)",
        service.recovered_orders
    );
    if let (Some(_), Some(merchant)) = (&connected.sandbox, config.merchants.first())
        && let Some(key) = merchant.api_keys.first()
    {
        let key = key.expose_secret();
        println!(
            "try: curl -s -H 'Authorization: Bearer {key}' -d '{{\"order_no\":\"A1\",\"auth_code\":\"134567890123456700\",\"amount\":\"12.34\",\"subject\":\"Coffee\"}}' 'http://{address}/v1/payments?wait=10'"
        );
    }
    service
        .serve_with_metrics(listener, metrics_listener, shutdown_signal())
        .await?;
    drop(connected);
    Ok(())
}

/// A warning when the service would answer beyond this machine with the
/// sandbox's public demo key: the in-process sandbox listening on an
/// address that is not loopback (`--listen 0.0.0.0:8080`).
pub fn exposure_warning(config: &Config) -> Option<String> {
    let listen = config.server.listen;
    (config.sandbox_in_process() && !listen.ip().is_loopback()).then(|| {
        format!(
            "listening on {listen}, which is not a loopback address: the sandbox's merchants and their public test keys are reachable from other machines"
        )
    })
}

/// Where the in-process sandbox keeps its truth, for the start-up lines.
struct SandboxTruth(Option<std::path::PathBuf>);

impl std::fmt::Display for SandboxTruth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            Some(path) => write!(f, "{}", path.display()),
            None => f.write_str("memory"),
        }
    }
}
