//! Test support, compiled only for tests and under the `testing` feature
//! (which only dev-dependencies turn on), so nothing here is in the
//! production graph.

pub mod bills;
pub mod faulty_store;
pub mod store_contract;
mod testkit;

pub use faulty_store::{AppendFault, FaultyStore};
pub use testkit::*;
