//! Tests of the real `paycode` binary, in one test binary: only the
//! binary's own package is handed its path (`CARGO_BIN_EXE_paycode`). A
//! kill -9 crash run, JSON logs, `paycode verify`'s exit status, `paycode
//! resolve`, the demo, the limits that keep slow or greedy clients from
//! holding the service, and sandbox and production never mixing.

mod crash;
mod demo;
mod environment;
mod json_logs;
mod limits;
mod resolve_cli;
mod verify_cli;
