//! The `paycode` service as a library, in rooms that each hold one kind of
//! thing (ARCHITECTURE.md):
//!
//! - [`config`]: `paycode.toml`, the embedded defaults as a configuration
//!   value, and what a configuration opens (stores, channel clients).
//! - [`service`]: the running service: ledger, runtime, order index,
//!   metrics, reconciliation import, and the one path that serves.
//! - [`http`]: the HTTP API.
//! - [`read`]: the read side (read-model runner, rebuild, verify).
//! - [`bench`]: the benchmarks.
//!
//! The binary's command line (`src/cli/`, declared by `main.rs`) parses
//! arguments and prints; nothing here imports it.

pub mod bench;
pub mod config;
pub mod http;
pub mod read;
pub mod service;
