//! `paycode reconcile --channel C --date D [--file F] [--merchant M]
//! [--format table|json|csv] [--config FILE | --ledger PATH]`: reconciles
//! one day from the command line, exactly as `POST /v1/reconciliations`
//! does, and prints the report. Without `--file` the statement is
//! downloaded: from the configured channel, or, on the embedded defaults,
//! from the sandbox's truth in `./sandbox.db` (what `paycode serve`
//! recorded). Like `serve`, it first checks the ledger's environment mark: a
//! configuration of another environment or other accounts is refused before
//! anything is read.
//!
//! With `--file F --ledger PATH` it only reads: the ledger (a copy,
//! usually) is opened read-only, no configuration is read, and the report
//! is printed without recording anything. An import that records needs the
//! whole configuration, since it writes and must pass the environment check.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use chrono::NaiveDate;
use paycode_adapters::channel::StatementFile;
use paycode_adapters::clock::{Clock, SystemClock};
use paycode_domain::payment::PaymentDecider;
use paycode_domain::{Channel, MerchantId};

use paycode::config::Config;
use paycode::config::clients::ConnectedChannels;
use paycode::config::secrets::check_secret_files;
use paycode::config::store::{LedgerSource, open_ledger_read_only, open_store};
use paycode::service::environment::check_environment;
use paycode::service::ledger::Ledger;
use paycode::service::reconcile::{self, Imported};

/// How the report is printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Table,
    Json,
    Csv,
}

/// The arguments of `paycode reconcile`.
#[derive(Debug, clap::Args)]
pub struct ReconcileArgs {
    /// `wechat` or `alipay`.
    #[arg(long)]
    pub channel: String,
    /// The statement's day, China time (YYYY-MM-DD).
    #[arg(long)]
    pub date: String,
    /// A statement file to import instead of downloading it (the WeChat
    /// text bill, or the Alipay zip).
    #[arg(long)]
    pub file: Option<PathBuf>,
    #[arg(long, default_value = "demo")]
    pub merchant: String,
    #[arg(long, value_enum, default_value = "table")]
    pub format: Format,
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// With --file: a SQLite ledger file (or a copy of one) to reconcile
    /// against, read-only, without any configuration: the report is
    /// printed, nothing is recorded.
    #[arg(long, conflicts_with = "config", requires = "file")]
    pub ledger: Option<PathBuf>,
}

/// Runs `paycode reconcile` and returns what to print.
pub async fn run(args: ReconcileArgs) -> anyhow::Result<String> {
    let channel = Channel::parse(&args.channel)
        .with_context(|| format!("--channel: {:?} is not wechat or alipay", args.channel))?;
    let date = NaiveDate::parse_from_str(&args.date, "%Y-%m-%d")
        .with_context(|| format!("--date: {:?} is not a day as YYYY-MM-DD", args.date))?;
    let merchant = MerchantId::parse(&args.merchant)
        .map_err(|error| anyhow::anyhow!("--merchant: {error}"))?;
    if let (Some(path), Some(ledger)) = (&args.file, &args.ledger) {
        let file = read_statement(channel, path)?;
        let store = open_ledger_read_only(&LedgerSource::File(ledger.clone()))?.store();
        let imported = reconcile::preview(store.as_ref(), &merchant, channel, date, file).await?;
        return render(&imported, args.format);
    }
    let config = super::load_config(args.config.as_deref())?.unwrap_or_else(Config::embedded);
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    for warning in check_secret_files(&config)? {
        eprintln!("warning: {warning}");
    }
    let store = open_store(&config)?;
    // Before anything is read, written or downloaded: this ledger, this environment.
    check_environment(&config, store.clone(), clock.clone()).await?;
    let ledger = Ledger::new(
        store,
        PaymentDecider::new(config.policy.policy()?),
        clock.clone(),
    );
    let imported = if let Some(path) = &args.file {
        let file = read_statement(channel, path)?;
        reconcile::import(&ledger, &merchant, channel, date, file, None).await?
    } else {
        if let Some(state) = config
            .sandbox
            .as_ref()
            .filter(|sandbox| sandbox.in_process)
            .and_then(|sandbox| sandbox.state_path.as_ref())
        {
            // The in-process sandbox's truth is what `paycode serve` recorded.
            let state = config.resolve(state);
            anyhow::ensure!(
                state.exists(),
                "no --file given and no {} here to download the sandbox's statement from",
                state.display()
            );
        }
        let connected = ConnectedChannels::connect(&config, clock).await?;
        let client = connected
            .channels
            .get(&merchant, channel)
            .with_context(|| format!("--channel: no {channel} channel for merchant {merchant}"))?
            .clone();
        reconcile::download_and_import(&ledger, client.as_ref(), &merchant, date, None).await?
    };
    render(&imported, args.format)
}

/// Reads a statement file as its channel delivers it.
fn read_statement(channel: Channel, path: &Path) -> anyhow::Result<StatementFile> {
    let bytes =
        std::fs::read(path).with_context(|| format!("--file: reading {}", path.display()))?;
    Ok(match channel {
        Channel::Wechat => StatementFile::WechatText(
            String::from_utf8(bytes).context("--file: a WeChat bill must be UTF-8 text")?,
        ),
        Channel::Alipay => StatementFile::AlipayZip(bytes),
    })
}

fn amount(money: Option<paycode_domain::Money>) -> String {
    money.map(|money| money.to_string()).unwrap_or_default()
}

/// The report in the chosen format.
pub fn render(imported: &Imported, format: Format) -> anyhow::Result<String> {
    let report = &imported.report;
    Ok(match format {
        Format::Json => format!("{}\n", serde_json::to_string_pretty(report)?),
        Format::Csv => {
            let mut writer = csv::Writer::from_writer(Vec::new());
            writer.write_record([
                "kind",
                "order_no",
                "refund_no",
                "ledger_amount",
                "statement_amount",
                "detail",
            ])?;
            for finding in &report.findings {
                writer.write_record([
                    finding.kind.as_str(),
                    finding.order_no.as_deref().unwrap_or(""),
                    finding.refund_no.as_deref().unwrap_or(""),
                    &amount(finding.ledger_amount),
                    &amount(finding.statement_amount),
                    &finding.detail,
                ])?;
            }
            String::from_utf8(writer.into_inner()?)?
        }
        Format::Table => {
            let mut out = format!(
                "reconciliation {} {}: {} statement lines, {} matched, {} findings{}\n",
                report.channel,
                report.date,
                report.statement_lines,
                report.matched,
                report.findings.len(),
                if imported.preview {
                    " (--ledger: the ledger was only read; nothing recorded)"
                } else if imported.report_recorded {
                    ""
                } else {
                    " (this statement was imported before; nothing new recorded)"
                }
            );
            if !report.findings.is_empty() {
                out.push_str(&format!(
                    "{:<22}  {:<32}  {:<20}  {:>12}  {:>12}  {}\n",
                    "kind", "order_no", "refund_no", "ledger", "statement", "detail"
                ));
                for finding in &report.findings {
                    out.push_str(&format!(
                        "{:<22}  {:<32}  {:<20}  {:>12}  {:>12}  {}\n",
                        finding.kind.as_str(),
                        finding.order_no.as_deref().unwrap_or("-"),
                        finding.refund_no.as_deref().unwrap_or("-"),
                        amount(finding.ledger_amount),
                        amount(finding.statement_amount),
                        finding.detail,
                    ));
                }
            }
            out
        }
    })
}
