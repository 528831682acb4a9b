//! The cross-crate suites, in one test binary (one link of every
//! dependency instead of one per file): the HTTP API black box, bad input,
//! canary payment codes, every sandbox test code end to end, keys with
//! roles, reconciliation, operators' resolutions, replay, verify, two
//! processes on one file, the ledger's environment mark, and the
//! architecture's tidy checks.

mod bad_input;
mod canary;
mod e2e_sandbox;
mod environment;
mod http_api;
mod migrate;
mod reconciliation;
mod replay;
mod resolve;
mod roles;
mod sim;
mod tidy;
mod two_processes;
mod verify;
