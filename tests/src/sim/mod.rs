//! A deterministic simulation of the whole runtime: the real runtime,
//! ledger, deciders, channel clients and memory store, single-threaded on a
//! paused tokio clock, against the sandbox playing both channels through a
//! misbehaving network ([`transport`]), a store that fails ([`FaultyStore`]),
//! one to three runtime instances that crash and come back, and a merchant
//! issuing commands (payments, duplicates, revokes, refunds) at random
//! moments. Everything is drawn from one seed.
//!
//! A run has a safety phase (faults on) and a liveness phase (faults healed,
//! every instance back, time runs on). [`check`] holds the rules it is
//! judged by. The same seed writes the same log: [`Outcome::log_hash`].
//!
//! Why the sandbox sits behind the clients' transport instead of a model of
//! outcomes: the real clients then sign, parse, verify and judge every
//! answer exactly as in production, so a judgment that is wrong for an
//! answer the channel's documentation allows is found here.

pub mod check;
pub mod clock;
pub mod ids;
pub mod transport;
mod world;

pub use world::{Outcome, SimOptions, run};
