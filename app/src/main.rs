//! The `paycode` binary: parses arguments and dispatches to the library.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use paycode::config::LogFormat;
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
        /// Where to listen (overrides `[server] listen`; default 127.0.0.1:8080).
        #[arg(long)]
        listen: Option<std::net::SocketAddr>,
        /// `text` or `json` log lines on standard error (overrides `[server] log_format`).
        #[arg(long, value_parser = ["text", "json"])]
        log_format: Option<String>,
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
    /// Reconcile one day's statement of a channel against the ledger and
    /// print the report (the statement is downloaded unless --file is given).
    Reconcile(paycode::reconcile_cli::ReconcileArgs),
    /// Rebuild every read model from the log into memory, compare it row by
    /// row with the stored read models, print a summary; exit 1 on any difference.
    Replay {
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Run a benchmark; the last line of standard output is one JSON object of figures.
    Bench(bench::BenchArgs),
    /// Copy the SQLite ledger (`store.path`, or --from) into an EventStoreDB
    /// cluster (`store.url`, or --url): every stream in order, event ids kept.
    /// Safe to rerun: it copies only what is missing.
    Migrate {
        /// The target store; only `eventstoredb` is supported.
        #[arg(long, value_parser = ["eventstoredb"])]
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
    /// problem as `stream@version: what`; exits 1 if there is any.
    Verify {
        #[arg(long)]
        config: Option<PathBuf>,
    },
}

/// The exit status of `paycode verify` when it found problems (a run that
/// could not read the log exits 1 too, with the error on standard error).
const VERIFY_PROBLEMS_EXIT: u8 = 1;

fn main() -> anyhow::Result<ExitCode> {
    let cli = Cli::parse();
    let done = match cli.command {
        Command::Verify { config } => return verify(config),
        Command::Bench(args) => bench::run(args),
        Command::Reconcile(args) => runtime()?.block_on(async {
            print!("{}", paycode::reconcile_cli::run(args).await?);
            Ok(())
        }),
        Command::Serve {
            config,
            listen,
            log_format,
        } => runtime()?.block_on(async {
            let log_format = log_format.map(|format| match format.as_str() {
                "json" => LogFormat::Json,
                _ => LogFormat::Text,
            });
            match cli::load_config(config.as_deref())? {
                Some(mut config) => {
                    if let Some(listen) = listen {
                        config.server.listen = listen;
                    }
                    if let Some(format) = log_format {
                        config.server.log_format = format;
                    }
                    cli::serve_with_config(config).await
                }
                None => cli::serve_embedded(listen, log_format.unwrap_or(LogFormat::Text)).await,
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
        Command::Replay { config } => {
            let (summary, code) = runtime()?.block_on(async {
                let config = cli::load_config(config.as_deref())?;
                cli::replay(config).await
            })?;
            print!("{summary}");
            if code != 0 {
                std::process::exit(code);
            }
            Ok(())
        }
        Command::Migrate {
            to: _,
            config,
            from,
            url,
        } => runtime()?.block_on(async {
            let config = cli::load_config(config.as_deref())?;
            print!("{}", paycode::migrate::run(config, from, url).await?);
            Ok(())
        }),
    };
    done.map(|()| ExitCode::SUCCESS)
}

/// `paycode verify`: the report on standard output, and the exit status.
fn verify(config: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    let report = runtime()?.block_on(async {
        let config = cli::load_config(config.as_deref())?;
        paycode::verify::run(config).await
    })?;
    print!("{}", report.render());
    Ok(if report.is_clean() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(VERIFY_PROBLEMS_EXIT)
    })
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}
