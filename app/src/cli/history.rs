//! `paycode history ORDER_NO [--merchant ID] [--ledger PATH | --config FILE]
//! [--evidence FILE]`: an order's timeline with the status after every
//! event, read from the ledger opened read-only; with `--evidence`, the
//! order's events are also written to FILE as evidence
//! (`paycode::read::evidence`) for `paycode verify --file`.

use std::io::Write as _;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use paycode::config::store::{LedgerSource, open_ledger_read_only};
use paycode::read::evidence;
use paycode::service::ledger::Ledger;
use paycode_adapters::clock::SystemClock;
use paycode_domain::ids::payment_stream;
use paycode_domain::payment::PaymentDecider;
use paycode_domain::{MerchantId, OrderNo};
use paycode_projections::statuses_after;

/// The arguments of `paycode history`.
#[derive(Debug, clap::Args)]
pub struct HistoryArgs {
    pub order_no: String,
    #[arg(long, default_value = "demo")]
    pub merchant: String,
    /// A SQLite ledger file (or a copy of one) to read, without any configuration.
    #[arg(long, conflicts_with = "config")]
    pub ledger: Option<PathBuf>,
    /// A configuration; only its [store] section is read.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Also write the order's events to this new file as evidence, which
    /// `paycode verify --file` checks without the ledger.
    #[arg(long)]
    pub evidence: Option<PathBuf>,
}

/// The timeline, as printed (and the evidence file written, if asked).
pub async fn run(args: HistoryArgs) -> anyhow::Result<String> {
    let order_no =
        OrderNo::parse(&args.order_no).map_err(|error| anyhow::anyhow!("ORDER_NO: {error}"))?;
    let merchant = MerchantId::parse(&args.merchant)
        .map_err(|error| anyhow::anyhow!("--merchant: {error}"))?;
    let source = LedgerSource::from_args(args.ledger.as_deref(), args.config.as_deref())?;
    let store = open_ledger_read_only(&source)?.store();
    let mut out = String::new();
    if let Some(path) = &args.evidence {
        let stream = payment_stream(&merchant, &order_no);
        let exported = evidence::export(store.as_ref(), &stream)
            .await?
            .with_context(|| format!("no order {order_no} for merchant {merchant}"))?;
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(path)
            .with_context(|| {
                format!(
                    "--evidence: creating {} (it must not exist)",
                    path.display()
                )
            })?;
        file.write_all(exported.to_json().as_bytes())
            .and_then(|()| file.sync_all())
            .with_context(|| format!("--evidence: writing {}", path.display()))?;
        out.push_str(&format!(
            "evidence: {} events of {stream} written to {}\n",
            exported.events.len(),
            path.display()
        ));
    }
    let ledger = Ledger::new(store, PaymentDecider::default(), Arc::new(SystemClock));
    let history = ledger.history(&merchant, &order_no).await?;
    if history.events.is_empty() {
        anyhow::bail!("no order {order_no} for merchant {merchant}");
    }
    out.push_str(&format!("order {order_no} of merchant {merchant}\n"));
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
