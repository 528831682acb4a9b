//! `paycode migrate --to eventstoredb [--from PATH] [--url URL]`: copies a
//! SQLite ledger into an EventStoreDB cluster with
//! `paycode_adapters::store::copy` (every stream in order, event ids and
//! chain links kept; rerunning copies only what is missing).
//!
//! `paycode migrate --to sqlite [--from PATH]`: rewrites a stopped SQLite
//! ledger in place in the layout this release creates
//! (`paycode_adapters::store::sqlite::relayout`).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use paycode::config::Config;
use paycode::config::store::CONNECT_TIMEOUT_SECS;
use paycode_adapters::store::SqliteStore;
use paycode_adapters::store::copy::copy_ledger;
use paycode_adapters::store::eventstoredb::{EventStoreDbStore, Namespace};
use paycode_adapters::store::sqlite::relayout::{self, Relayout};

/// The SQLite ledger to migrate: `from`, else the configuration's
/// `store.path`, else the embedded default.
fn ledger_path(config: Option<&Config>, from: Option<PathBuf>) -> PathBuf {
    match (from, config) {
        (Some(path), _) => path,
        (None, Some(config)) => config.resolve(&config.store.path),
        (None, None) => PathBuf::from("paycode.db"),
    }
}

/// `paycode migrate --to sqlite`: the SQLite file at `from` (default
/// `store.path`) rewritten in place in the current layout.
pub async fn relayout(config: Option<Config>, from: Option<PathBuf>) -> anyhow::Result<String> {
    let path = ledger_path(config.as_ref(), from);
    let done = {
        let path = path.clone();
        tokio::task::spawn_blocking(move || relayout::relayout(&path))
    }
    .await
    .context("migrate")?
    .with_context(|| format!("store.path: rewriting {}", path.display()))?;
    Ok(match done {
        Relayout::AlreadyCurrent { page_size } => format!(
            "{} already has the current layout (pages of {page_size} bytes): nothing to do\n",
            path.display()
        ),
        Relayout::Rewritten {
            page_size_before,
            page_size,
            events,
            bytes_before,
            bytes,
            kept,
        } => format!(
            "rewrote {}: {events} events, pages of {page_size_before} -> {page_size} bytes, \
             {bytes_before} -> {bytes} bytes; the file as it was is kept at {} \
             (remove it once the service runs on the new one)\n",
            path.display(),
            kept.display()
        ),
    })
}

/// `paycode migrate --to eventstoredb`: the SQLite file at `from` (default
/// `store.path`) into the cluster at `url` (default `store.url`).
pub async fn run(
    config: Option<Config>,
    from: Option<PathBuf>,
    url: Option<String>,
) -> anyhow::Result<String> {
    let path = ledger_path(config.as_ref(), from);
    let url = url
        .or_else(|| config.as_ref().and_then(|config| config.store.url.clone()))
        .context("store.url: the EventStoreDB connection string is required (or pass --url)")?;
    if !path.exists() {
        anyhow::bail!("store.path: no SQLite ledger at {}", path.display());
    }
    let source = SqliteStore::open(&path)
        .with_context(|| format!("store.path: opening {}", path.display()))?;
    let target = EventStoreDbStore::connect(
        &url,
        Namespace::whole_cluster(),
        Duration::from_secs(CONNECT_TIMEOUT_SECS),
    )
    .await
    .with_context(|| {
        format!("store.url: cannot reach the EventStoreDB cluster within {CONNECT_TIMEOUT_SECS} s")
    })?;
    let report = copy_ledger(&source, &target, |report| {
        eprintln!(
            "read {} events, copied {}, already there {}",
            report.events_read, report.events_copied, report.events_already_there
        );
    })
    .await
    .context("migrate")?;
    Ok(format!(
        "migrated {}: {} events in {} streams ({} copied now, {} already there)\n",
        path.display(),
        report.events_read,
        report.streams,
        report.events_copied,
        report.events_already_there
    ))
}
