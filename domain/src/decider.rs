//! The shape every aggregate of paycode has: a decider (Jérémie Chassaing's
//! pattern, as in fmodel-rust). `decide` turns a command into events (or a
//! rejection) given the current state and the time; `evolve` moves the state
//! by one event; a history folds from `initial_state`. Both are pure, so a
//! specification is given events, when a command, then events.
//!
//! The ledger (in `app`) is written once over this trait and is the only
//! path by which events are written, whichever aggregate they belong to.

use std::fmt;

use chrono::{DateTime, Utc};

use crate::ids::CommandId;
use crate::invariants::Violation;

/// An aggregate's rules as pure functions.
pub trait Decider {
    /// What a history folds to.
    type State: Clone + fmt::Debug;
    /// What a caller asks for.
    type Command: fmt::Debug;
    /// A recorded fact.
    type Event: Clone + fmt::Debug;
    /// Why a command is refused (nothing is written).
    type Rejection: fmt::Debug;

    /// The state of a stream with no events.
    fn initial_state(&self) -> Self::State;

    /// The events `command` produces in `state` at `now`, or the first rule
    /// it breaks. An empty list means it was already carried out.
    fn decide(
        &self,
        state: &Self::State,
        command: &Self::Command,
        now: DateTime<Utc>,
    ) -> Result<Vec<Self::Event>, Self::Rejection>;

    /// The state after `event`, or the event refused with the invariant it
    /// breaks (the state handed back unchanged).
    fn evolve(
        &self,
        state: Self::State,
        event: &Self::Event,
    ) -> Result<Self::State, Refused<Self::State>>;

    /// Whether no event but a statement match can change the state any more.
    fn is_terminal(&self, state: &Self::State) -> bool;

    /// The id of the request or step behind `command`; the ids of the events
    /// it produces derive from it, so a retried append is recognised.
    fn command_id(command: &Self::Command) -> CommandId;

    /// Folds a whole history from the initial state.
    fn replay<'a>(
        &self,
        events: impl IntoIterator<Item = &'a Self::Event>,
    ) -> Result<Self::State, Violation>
    where
        Self::Event: 'a,
    {
        events
            .into_iter()
            .try_fold(self.initial_state(), |state, event| {
                self.evolve(state, event)
                    .map_err(|refused| refused.violation)
            })
    }
}

/// An event `evolve` refused: the invariant it breaks, and the state it was
/// refused in, unchanged, so a reader can go on or stop as it sees fit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused<S> {
    pub state: S,
    pub violation: Violation,
}
