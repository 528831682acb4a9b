//! `paycode resolve ORDER_NO --outcome paid|not_paid [--channel-trade-no X]
//! [--paid-at TIME] [--refund REFUND_NO [--refunded-at TIME]] --reason TEXT
//! [--merchant ID] [--config FILE]`: an operator's resolution from the
//! command line, exactly as `POST /v1/payments/{order_no}/resolve` (or, with
//! `--refund`, `.../refunds/{refund_no}/resolve`, outcome `succeeded` or
//! `failed`) does it, through the same library function, recorded with
//! `resolved_by` = `cli`. Errors name the option (or `ORDER_NO`). Like
//! every command that writes the ledger, it first checks the configuration
//! against the ledger's environment mark.

use std::path::PathBuf;
use std::sync::Arc;

use paycode::config::store::open_store;
use paycode::config::{Config, StoreKind};
use paycode::service::environment::check_environment;
use paycode::service::ledger::{Ledger, PaymentLedgerError};
use paycode::service::resolve::{self, CLI_NAME, ResolveError, Subject, Verdict, Via, Words};
use paycode_adapters::clock::{Clock, SystemClock};
use paycode_domain::payment::{PaymentDecider, Rejection};
use paycode_domain::{MerchantId, OrderNo, RefundNo};
use paycode_projections::{PaymentView, RefundView};

/// The arguments of `paycode resolve`.
#[derive(Debug, clap::Args)]
pub struct ResolveArgs {
    /// The merchant's order number.
    pub order_no: String,
    /// `paid` or `not_paid`; with `--refund`, `succeeded` or `failed`.
    #[arg(long)]
    pub outcome: String,
    /// The channel's trade number (with `--outcome paid`, required).
    #[arg(long)]
    pub channel_trade_no: Option<String>,
    /// When the customer paid, RFC 3339 (with `--outcome paid`; default: now,
    /// or the payment the ledger recorded).
    #[arg(long)]
    pub paid_at: Option<String>,
    /// Resolve this refund of the order instead of the order.
    #[arg(long)]
    pub refund: Option<String>,
    /// When the refund reached the customer, RFC 3339 (with `--outcome
    /// succeeded`; default: now).
    #[arg(long)]
    pub refunded_at: Option<String>,
    /// Why: recorded with the resolution.
    #[arg(long)]
    pub reason: String,
    #[arg(long, default_value = "demo")]
    pub merchant: String,
    #[arg(long)]
    pub config: Option<PathBuf>,
}

/// The option a field of the verdict comes from: `channel_trade_no` is `--channel-trade-no`.
fn option(field: &str) -> String {
    format!("--{}", field.replace('_', "-"))
}

/// The error as the command line says it: naming the option at fault.
fn explain(error: ResolveError) -> anyhow::Error {
    match error {
        ResolveError::Invalid { field, message, .. } => {
            anyhow::anyhow!("{}: {message}", option(field))
        }
        ResolveError::Contradicts { field, message } => {
            anyhow::anyhow!(
                "{}: {message} (resolution_contradicts_ledger)",
                option(field)
            )
        }
        ResolveError::Ledger(PaymentLedgerError::Rejected(rejection)) => {
            let at = match rejection {
                Rejection::RefundNotFound => "--refund",
                _ => "ORDER_NO",
            };
            anyhow::anyhow!("{at}: {rejection} ({})", rejection.code())
        }
        ResolveError::Ledger(other) => {
            anyhow::Error::from(other).context("recording the resolution")
        }
    }
}

/// Runs `paycode resolve` and returns what to print.
pub async fn run(args: ResolveArgs) -> anyhow::Result<String> {
    let order_no =
        OrderNo::parse(&args.order_no).map_err(|error| anyhow::anyhow!("ORDER_NO: {error}"))?;
    let merchant = MerchantId::parse(&args.merchant)
        .map_err(|error| anyhow::anyhow!("--merchant: {error}"))?;
    let (subject, at) = match &args.refund {
        None => {
            anyhow::ensure!(
                args.refunded_at.is_none(),
                "--refunded-at: only with --refund (an order takes --paid-at)"
            );
            (Subject::Order, args.paid_at.as_deref())
        }
        Some(text) => {
            let refund_no =
                RefundNo::parse(text).map_err(|error| anyhow::anyhow!("--refund: {error}"))?;
            anyhow::ensure!(
                args.paid_at.is_none(),
                "--paid-at: a refund's resolution takes --refunded-at"
            );
            (Subject::Refund(refund_no), args.refunded_at.as_deref())
        }
    };
    let words = Words {
        outcome: Some(&args.outcome),
        channel_trade_no: args.channel_trade_no.as_deref(),
        at,
        reason: Some(&args.reason),
    };
    let verdict = Verdict::parse(subject, words).map_err(explain)?;

    let config = super::load_config(args.config.as_deref())?.unwrap_or_else(Config::embedded);
    if config.store.kind == StoreKind::Sqlite {
        let path = config.resolve(&config.store.path);
        anyhow::ensure!(
            path.exists(),
            "store.path: no SQLite ledger at {}",
            path.display()
        );
    }
    let store = open_store(&config)?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    // Before anything is read or written: this ledger, this environment (a
    // production ledger is resolved with its own configuration, never on
    // the embedded defaults).
    check_environment(&config, store.clone(), clock.clone()).await?;
    let ledger = Ledger::new(store, PaymentDecider::new(config.policy.policy()?), clock);
    let history = resolve::resolve(
        Via::Ledger(&ledger),
        &merchant,
        &order_no,
        &verdict,
        CLI_NAME,
    )
    .await
    .map_err(explain)?;
    let version = history.version().unwrap_or_default();
    Ok(match &verdict.subject {
        Subject::Order => {
            let view = PaymentView::fold(history.events.iter().map(|e| (e.version, &e.event)))
                .ok_or_else(|| anyhow::anyhow!("ORDER_NO: no order {order_no}"))?;
            format!(
                "order {order_no} of merchant {merchant}: {} (OperatorResolved at version {version}, resolved_by {CLI_NAME})\n",
                view.status.as_str()
            )
        }
        Subject::Refund(refund_no) => {
            let refund = RefundView::find(&history.state, refund_no)
                .ok_or_else(|| anyhow::anyhow!("--refund: no refund {refund_no}"))?;
            let status = serde_json::to_value(refund.status)?;
            format!(
                "refund {refund_no} of order {order_no} of merchant {merchant}: {} (OperatorResolved at version {version}, resolved_by {CLI_NAME})\n",
                status.as_str().unwrap_or_default()
            )
        }
    })
}
