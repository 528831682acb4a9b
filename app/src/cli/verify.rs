//! `paycode verify [--ledger PATH | --config FILE | --file EVIDENCE.json]
//! [--format text|json]`: re-walks every stream of the ledger (the hash
//! chain and the payment invariants), or checks one order's evidence file
//! offline, prints the report, and exits 1 on any problem (a run that could
//! not read the log or the file exits 1 too, with the error on standard
//! error). A progress bar goes to standard error when it is a terminal.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use paycode::config::store::LedgerSource;
use paycode::read::evidence::Evidence;
use paycode::read::verify::VerifyReport;

/// The exit status when the log has problems.
const PROBLEMS_EXIT: u8 = 1;

/// How the report is printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// A summary line, then `stream@version: what` per problem.
    Text,
    /// One JSON object: streams, events, problems (stream, version, kind, what).
    Json,
}

/// The arguments of `paycode verify`.
#[derive(Debug, clap::Args)]
pub struct VerifyArgs {
    /// A SQLite ledger file (or a copy of one) to check, without any configuration.
    #[arg(long, conflicts_with_all = ["config", "file"])]
    pub ledger: Option<PathBuf>,
    /// A configuration; only its [store] section is read.
    #[arg(long, conflicts_with = "file")]
    pub config: Option<PathBuf>,
    /// An evidence file (`paycode history ORDER_NO --evidence FILE`) to
    /// check offline instead of a ledger.
    #[arg(long)]
    pub file: Option<PathBuf>,
    #[arg(long, value_enum, default_value = "text")]
    pub format: Format,
}

/// Prints the report; the exit status says whether the log is clean.
pub async fn run(args: VerifyArgs) -> anyhow::Result<ExitCode> {
    let report = if let Some(path) = &args.file {
        check_evidence(path)?
    } else {
        let source = LedgerSource::from_args(args.ledger.as_deref(), args.config.as_deref())?;
        paycode::read::verify::run(&source, std::io::stderr().is_terminal()).await?
    };
    match args.format {
        Format::Text => print!("{}", report.render()),
        Format::Json => print!("{}", report.render_json()),
    }
    Ok(if report.is_clean() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(PROBLEMS_EXIT)
    })
}

/// Reads and checks an evidence file.
fn check_evidence(path: &std::path::Path) -> anyhow::Result<VerifyReport> {
    let bytes =
        std::fs::read(path).with_context(|| format!("--file: reading {}", path.display()))?;
    let evidence =
        Evidence::parse(&bytes).with_context(|| format!("--file: {}", path.display()))?;
    evidence
        .verify()
        .with_context(|| format!("--file: {}", path.display()))
}
