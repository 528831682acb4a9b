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
mod resolve_cli;
mod verify_cli;
mod webdriver;
