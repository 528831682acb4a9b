//! `paycode replay [--config FILE]`: rebuilds the read models from the log,
//! compares them with the stored ones, prints the summary, and exits 1 on
//! any difference.

use std::io::IsTerminal;
use std::process::ExitCode;

use paycode::config::Config;

/// Prints the summary; the exit status says whether anything differed.
pub async fn run(config: Option<Config>) -> anyhow::Result<ExitCode> {
    let report = paycode::read::rebuild::run(config, std::io::stderr().is_terminal()).await?;
    print!("{report}");
    Ok(ExitCode::from(
        u8::try_from(report.exit_code()).unwrap_or(1),
    ))
}
