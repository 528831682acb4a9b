//! Tests of the real `paycode` binary, in one test binary: only the
//! binary's own package is handed its path (`CARGO_BIN_EXE_paycode`). A
//! kill -9 crash run, JSON logs, `paycode verify`'s exit status, the
//! reading commands on an auditor's read-only copy, and the demo.

mod crash;
mod demo;
mod json_logs;
mod ledger_copy;
mod verify_cli;
