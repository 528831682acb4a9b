//! Command ids from a seed: the same seed names the same commands, so the
//! same events get the same ids and the log hashes alike run after run.

use std::sync::atomic::{AtomicU64, Ordering};

use paycode_adapters::ids::IdSource;
use paycode_domain::CommandId;
use uuid::Uuid;

/// Ids `seed:1`, `seed:2`, ... packed into UUIDs; `space` keeps the
/// sources of several runtimes (and the merchants) apart.
#[derive(Debug)]
pub struct SeededIds {
    seed: u64,
    space: u16,
    next: AtomicU64,
}

impl SeededIds {
    pub fn new(seed: u64, space: u16) -> Self {
        SeededIds {
            seed,
            space,
            next: AtomicU64::new(1),
        }
    }
}

impl IdSource for SeededIds {
    fn command_id(&self) -> CommandId {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let high = (u128::from(self.seed) << 64) | (u128::from(self.space) << 48);
        CommandId(Uuid::from_u128(high | u128::from(n)))
    }
}
