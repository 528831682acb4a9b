//! The command line: argument parsing, and one module per subcommand that
//! reads the configuration (or the embedded defaults), calls the library
//! and prints. Declared by `main.rs` only: nothing in the library imports
//! it (a tidy test checks).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use paycode::bench::BenchArgs;
use paycode::config::Config;
use paycode::config::store::LedgerSource;

mod demo;
mod history;
mod migrate;
mod reconcile;
mod replay;
mod resolve;
mod sandbox;
mod serve;
mod verify;

#[derive(Debug, Parser)]
#[command(
    name = "paycode",
    version,
    about = "An event-sourced ledger for payment-code payments"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the service. With a config file, the configured channels; without
    /// one, the embedded defaults (SQLite ./paycode.db, the sandbox in-process).
    Serve(serve::ServeArgs),
    /// Only the simulated channels (WeChat at the real paths, Alipay at
    /// /gateway.do) for the merchants of the configuration.
    Sandbox {
        #[arg(long)]
        listen: Option<SocketAddr>,
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// A stretch of traffic through the in-process sandbox on a simulated
    /// clock, until every order settles; prints a summary.
    Demo {
        #[arg(long, default_value_t = 200)]
        orders: usize,
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
    /// Print an order's timeline with the status after every event; with
    /// --evidence, also write its events as an evidence file that `paycode
    /// verify --file` checks offline.
    History(history::HistoryArgs),
    /// Reconcile one day's statement of a channel against the ledger and
    /// print the report (the statement is downloaded unless --file is given).
    Reconcile(reconcile::ReconcileArgs),
    /// Resolve an order (or, with --refund, one refund) in manual review, as
    /// POST /v1/payments/{order_no}/resolve does; recorded as resolved by `cli`.
    Resolve(resolve::ResolveArgs),
    /// Rebuild every read model from the log into memory, compare it row by
    /// row with the stored read models, print a summary; exit 1 on any
    /// difference. Without stored read models beside the ledger, print what
    /// was rebuilt. Reads the ledger only (never writes to it).
    Replay {
        /// A SQLite ledger file (or a copy of one) to read, without any configuration.
        #[arg(long, conflicts_with = "config")]
        ledger: Option<PathBuf>,
        /// Only its [store] section is read.
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Run a benchmark; the last line of standard output is one JSON object of figures.
    Bench(BenchArgs),
    /// With --to eventstoredb: copy the SQLite ledger (`store.path`, or
    /// --from) into an EventStoreDB cluster (`store.url`, or --url): every
    /// stream in order, event ids kept; safe to rerun, it copies only what is
    /// missing. With --to sqlite: rewrite the stopped SQLite ledger in place
    /// in the current layout (the old file is kept beside it).
    Migrate {
        /// The target: `eventstoredb`, or `sqlite` (the current SQLite layout).
        #[arg(long, value_parser = ["eventstoredb", "sqlite"])]
        to: String,
        #[arg(long)]
        config: Option<PathBuf>,
        /// The SQLite file to copy (default: the configuration's store.path).
        #[arg(long)]
        from: Option<PathBuf>,
        /// The cluster's connection string (default: the configuration's store.url).
        #[arg(long)]
        url: Option<String>,
    },
    /// Re-walk every stream: check its hash chain (every event as appended)
    /// and the payment rules (refunds never above the payment, nothing after
    /// a terminal status but statement matches). Prints a summary and each
    /// problem as `stream@version: what`; exits 1 if there is any. Reads the
    /// ledger only (never writes to it).
    Verify(verify::VerifyArgs),
}

/// Parses the arguments and runs the subcommand.
pub fn main() -> anyhow::Result<ExitCode> {
    let cli = Cli::parse();
    match cli.command {
        Command::Bench(args) => paycode::bench::run(args).map(|()| ExitCode::SUCCESS),
        Command::Serve(args) => runtime()?
            .block_on(serve::run(args))
            .map(|()| ExitCode::SUCCESS),
        Command::Sandbox { listen, config } => runtime()?
            .block_on(sandbox::run(load_config(config.as_deref())?, listen))
            .map(|()| ExitCode::SUCCESS),
        Command::Demo { orders, seed } => runtime()?.block_on(async {
            print!("{}", demo::run(orders, seed).await?);
            Ok(ExitCode::SUCCESS)
        }),
        Command::History(args) => runtime()?.block_on(async {
            print!("{}", history::run(args).await?);
            Ok(ExitCode::SUCCESS)
        }),
        Command::Reconcile(args) => runtime()?.block_on(async {
            print!("{}", reconcile::run(args).await?);
            Ok(ExitCode::SUCCESS)
        }),
        Command::Resolve(args) => runtime()?.block_on(async {
            print!("{}", resolve::run(args).await?);
            Ok(ExitCode::SUCCESS)
        }),
        Command::Replay { ledger, config } => {
            let source = LedgerSource::from_args(ledger.as_deref(), config.as_deref())?;
            runtime()?.block_on(replay::run(&source))
        }
        Command::Migrate {
            to,
            config,
            from,
            url,
        } => runtime()?.block_on(async {
            let config = load_config(config.as_deref())?;
            let report = if to == "sqlite" {
                if url.is_some() {
                    anyhow::bail!("--url: only --to eventstoredb takes a cluster's address");
                }
                migrate::relayout(config, from).await?
            } else {
                migrate::run(config, from, url).await?
            };
            print!("{report}");
            Ok(ExitCode::SUCCESS)
        }),
        Command::Verify(args) => runtime()?.block_on(verify::run(args)),
    }
}

/// Reads `--config FILE`, or `None` for the embedded defaults.
fn load_config(path: Option<&Path>) -> anyhow::Result<Option<Config>> {
    path.map(|path| Config::load(path).map_err(anyhow::Error::from))
        .transpose()
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}
