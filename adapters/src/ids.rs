//! The id port: where the runtime's command ids (and so its event ids, which
//! derive from them) come from. Production uses [`RandomIds`], time-ordered
//! random UUIDs (version 7, so the store's id index grows at one end); a
//! simulation passes its own seeded source, so that the same seed writes
//! the same log.

use std::fmt::Debug;

use paycode_domain::CommandId;
use uuid::Uuid;

/// A source of fresh, unique command ids.
pub trait IdSource: Send + Sync + Debug + 'static {
    fn command_id(&self) -> CommandId;
}

/// Random, time-ordered ids (UUID version 7).
#[derive(Debug, Clone, Copy, Default)]
pub struct RandomIds;

impl IdSource for RandomIds {
    fn command_id(&self) -> CommandId {
        CommandId(Uuid::now_v7())
    }
}
