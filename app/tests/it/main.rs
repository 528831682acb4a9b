//! Tests of the real `paycode` binary, in one test binary: only the
//! binary's own package is handed its path (`CARGO_BIN_EXE_paycode`). A
//! kill -9 crash run, JSON logs, `paycode verify`'s exit status, the
//! reading commands on an auditor's read-only copy, `paycode resolve`, the
//! demo, the console in a headless browser, the limits that keep slow or greedy clients from holding the
//! service, and sandbox and production never mixing.

mod console_browser;
mod crash;
mod demo;
mod environment;
mod json_logs;
mod ledger_copy;
mod limits;
mod migrate_cli;
mod resolve_cli;
mod verify_cli;
mod webdriver;

use tokio::io::{BufReader, Lines};
use tokio::process::ChildStdout;

/// The address `paycode serve` prints on its `listening` line (within 60 s),
/// read from its standard output; `log` names where to look if it exits first.
async fn listening_address(lines: &mut Lines<BufReader<ChildStdout>>, log: &str) -> String {
    tokio::time::timeout(std::time::Duration::from_secs(60), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if let Some(address) = line.trim().strip_prefix("listening") {
                return address.trim().to_owned();
            }
        }
        panic!("paycode serve exited before listening{log}");
    })
    .await
    .expect("paycode serve listens within 60 s")
}
