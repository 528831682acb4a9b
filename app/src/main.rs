//! The `paycode` binary: command-line entry point. Each subcommand lives in
//! its own module; this file only parses arguments and dispatches.

use paycode::bench;

use clap::{Parser, Subcommand};

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
    /// Run a benchmark; the last line of standard output is one JSON object of figures.
    Bench(bench::BenchArgs),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Bench(args) => bench::run(args),
    }
}
