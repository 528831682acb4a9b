//! The `paycode` service as a library: the binary (`main.rs`) and the
//! black-box tests in `tests/` both start it from here.

pub mod bench;
pub mod cli;
pub mod clients;
pub mod config;
pub mod demo;
pub mod embedded;
pub mod http;
pub mod index;
pub mod ledger;
pub mod metrics;
pub mod migrate;
pub mod projection_runner;
pub mod reconcile;
pub mod reconcile_cli;
pub mod replay;
pub mod runtime;
pub mod sandbox_cli;
pub mod service;
pub mod verify;
