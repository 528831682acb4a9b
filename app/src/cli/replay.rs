//! `paycode replay [--ledger PATH | --config FILE]`: rebuilds the read
//! models from the log, compares them with the stored ones (or, without
//! any beside the ledger, prints what was rebuilt), prints the summary, and
//! exits 1 on any difference. Reads the ledger and the read models only.

use std::io::IsTerminal;
use std::process::ExitCode;

use paycode::config::store::LedgerSource;

/// Prints the summary; the exit status says whether anything differed.
pub async fn run(source: &LedgerSource) -> anyhow::Result<ExitCode> {
    let report = paycode::read::rebuild::run(source, std::io::stderr().is_terminal()).await?;
    print!("{report}");
    Ok(ExitCode::from(
        u8::try_from(report.exit_code()).unwrap_or(1),
    ))
}
