//! The harness of the specifications, over any [`Decider`]: given a history
//! (events, folded with `evolve`), when a command at a time, then exactly
//! these events or exactly this rejection.
//!
//! ```text
//! Spec::of(PaymentDecider::default())
//!     .given([submitted(t(0), "10.00", WECHAT_CODE)])
//!     .when_at(t(1), CommandKind::RequestRefund(..))
//!     .then_rejected(Rejection::NotRefundable { status: PaymentStatus::Paying })
//! ```
//!
//! `then` folds the events it expected, so a scenario may go on with the
//! next `when_at`; `then_rejected` leaves the state as it was.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::decider::Decider;
use crate::ids::CommandId;

/// The id of every command a scenario decides: the events it decides carry it.
pub(crate) const WHEN: CommandId = CommandId(Uuid::from_u128(1));

/// The id the events of a given history carry: some earlier command's, never
/// the one under test.
pub(crate) const GIVEN: CommandId = CommandId(Uuid::from_u128(0));

/// A decider whose commands a scenario writes without their id: the harness
/// gives each the id [`WHEN`].
pub(crate) trait Commands: Decider {
    /// A command without its id.
    type Request;

    fn command(id: CommandId, request: Self::Request) -> Self::Command;
}

/// A decider and the state a history folded to.
#[derive(Debug, Clone)]
pub(crate) struct Spec<D: Decider> {
    decider: D,
    state: D::State,
}

impl<D: Commands> Spec<D> {
    /// A stream with no events.
    pub(crate) fn of(decider: D) -> Self {
        let state = decider.initial_state();
        Spec { decider, state }
    }

    /// Given these events happened (after any given before). A history the
    /// decider refuses is a mistake of the scenario: it panics with why.
    #[track_caller]
    pub(crate) fn given(mut self, events: impl IntoIterator<Item = D::Event>) -> Self {
        for event in events {
            self.state = match self.decider.evolve(self.state, &event) {
                Ok(state) => state,
                Err(refused) => panic!("{event:?} is refused: {}", refused.violation),
            };
        }
        self
    }

    /// When `request` is decided at `now`, with the id [`WHEN`].
    pub(crate) fn when_at(self, now: DateTime<Utc>, request: D::Request) -> Decided<D> {
        let decided = self
            .decider
            .decide(&self.state, &D::command(WHEN, request), now);
        Decided {
            spec: self,
            decided,
        }
    }

    /// The state the history so far folded to.
    pub(crate) fn state(&self) -> &D::State {
        &self.state
    }
}

/// What a `when` decided, to be compared with what the scenario expects.
#[derive(Debug)]
pub(crate) struct Decided<D: Decider> {
    spec: Spec<D>,
    decided: Result<Vec<D::Event>, D::Rejection>,
}

impl<D: Commands> Decided<D>
where
    D::Event: PartialEq,
    D::Rejection: PartialEq,
{
    /// Then exactly these events, in this order (none: it was already
    /// carried out). The scenario goes on from the state they fold to.
    #[track_caller]
    pub(crate) fn then(self, expected: impl IntoIterator<Item = D::Event>) -> Spec<D> {
        let expected: Vec<D::Event> = expected.into_iter().collect();
        assert_eq!(
            self.decided,
            Ok(expected.clone()),
            "decided (left), expected (right)"
        );
        self.spec.given(expected)
    }

    /// Then exactly this rejection; the state stays as it was.
    #[track_caller]
    pub(crate) fn then_rejected(self, expected: D::Rejection) -> Spec<D> {
        assert_eq!(
            self.decided,
            Err(expected),
            "decided (left), expected (right)"
        );
        self.spec
    }
}
