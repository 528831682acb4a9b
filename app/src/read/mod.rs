//! The read side: everything that reads the log without deciding anything.
//!
//! - [`runner`]: keeps the stored read models current from the store's
//!   global order (the app's half of `paycode-projections`).
//! - [`rebuild`]: rebuilds every read model from position 0 and compares it
//!   with the stored ones (`paycode replay`).
//! - [`verify`]: re-checks every stream's hash chain and the payment
//!   invariants (`paycode verify`).
//! - [`evidence`]: one stream's events as a file that `paycode verify
//!   --file` checks offline (`paycode history --evidence`).

pub mod evidence;
pub mod rebuild;
pub mod runner;
pub mod verify;
