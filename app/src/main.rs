//! The `paycode` binary: parses arguments and dispatches to the library.

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use paycode::{bench, cli};

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
    Serve {
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Only the simulated channels (WeChat at the real paths, Alipay at
    /// /gateway.do) for the merchants of the configuration.
    Sandbox {
        #[arg(long)]
        listen: Option<std::net::SocketAddr>,
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
    /// Print an order's timeline with the status after every event.
    History {
        order_no: String,
        #[arg(long, default_value = "demo")]
        merchant: String,
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Run a benchmark; the last line of standard output is one JSON object of figures.
    Bench(bench::BenchArgs),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Bench(args) => bench::run(args),
        Command::Serve { config } => runtime()?.block_on(async {
            match cli::load_config(config.as_deref())? {
                Some(config) => cli::serve_with_config(config).await,
                None => cli::serve_embedded().await,
            }
        }),
        Command::Sandbox { listen, config } => runtime()?.block_on(async {
            let config = cli::load_config(config.as_deref())?;
            paycode::sandbox_cli::run(config, listen).await
        }),
        Command::Demo { orders, seed } => runtime()?.block_on(async {
            print!("{}", paycode::demo::run(orders, seed).await?);
            Ok(())
        }),
        Command::History {
            order_no,
            merchant,
            config,
        } => runtime()?.block_on(async {
            let config = cli::load_config(config.as_deref())?;
            print!("{}", cli::history(config, &order_no, &merchant).await?);
            Ok(())
        }),
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}
