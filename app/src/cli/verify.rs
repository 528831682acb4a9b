//! `paycode verify [--config FILE]`: re-walks every stream (the hash chain
//! and the payment invariants), prints the report, and exits 1 on any
//! problem (a run that could not read the log exits 1 too, with the error
//! on standard error).

use std::process::ExitCode;

use paycode::config::Config;

/// The exit status when the log has problems.
const PROBLEMS_EXIT: u8 = 1;

/// Prints the report; the exit status says whether the log is clean.
pub async fn run(config: Option<Config>) -> anyhow::Result<ExitCode> {
    let report = paycode::read::verify::run(config).await?;
    print!("{}", report.render());
    Ok(if report.is_clean() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(PROBLEMS_EXIT)
    })
}
