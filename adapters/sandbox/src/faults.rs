//! Fault injection beyond the code table: dropped answers, slow answers,
//! HTTP 5xx and garbled bodies, each with a probability in per mille, drawn
//! from one seeded generator so that the same seed and the same sequence of
//! calls give the same faults. Plus the statement defects a reconciliation
//! test wants to find.
//!
//! When each fault strikes matters, and follows what happens in the wild:
//! an HTTP 5xx comes before the request is processed (nothing happened);
//! a dropped answer, a slow answer and a garbled body come after it (the
//! channel acted, the client cannot know).

use chrono::NaiveDate;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// A line of a statement to get wrong, for reconciliation tests. Each names
/// the merchant order number whose line it changes; the channel is the
/// statement's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StatementDefect {
    /// Every line of this order is left out.
    MissingLine {
        /// The merchant order number.
        out_trade_no: String,
    },
    /// A payment line for an order the sandbox never saw, on `date`'s statement.
    ExtraLine {
        date: NaiveDate,
        out_trade_no: String,
        amount_fen: u64,
    },
    /// The order's payment line shows this amount instead.
    ChangedAmount {
        out_trade_no: String,
        amount_fen: u64,
    },
    /// The order's payment line appears twice.
    DuplicatedLine { out_trade_no: String },
}

/// Configurable misbehaviour. Probabilities are per mille (0–1000) of the
/// API calls (the bill zip download excluded); at most one fault strikes a
/// call. The default is a well-behaved sandbox.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Faults {
    /// The call is processed, then answered `502 Bad Gateway` with no channel answer.
    pub drop_per_mille: u16,
    /// The call is processed, then its answer is held for `slow_answer`.
    pub slow_per_mille: u16,
    /// The call is answered `503 Service Unavailable` without being processed.
    pub server_error_per_mille: u16,
    /// The call is processed, then answered with a truncated body.
    pub garbled_per_mille: u16,
    /// Applied to every statement the sandbox produces.
    pub statement_defects: Vec<StatementDefect>,
}

/// The fault that struck one call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FaultKind {
    /// Processed, answered `502` with no channel answer.
    Dropped,
    /// Processed, answered after `slow_answer`.
    Slow,
    /// Not processed, answered `503`.
    ServerError,
    /// Processed, answered with half a body.
    Garbled,
}

impl FaultKind {
    /// A short name for logs and the call record.
    pub fn as_str(self) -> &'static str {
        match self {
            FaultKind::Dropped => "dropped",
            FaultKind::Slow => "slow",
            FaultKind::ServerError => "server_error",
            FaultKind::Garbled => "garbled",
        }
    }
}

/// Draws the faults of successive calls.
#[derive(Debug)]
pub struct FaultDice {
    faults: Faults,
    rng: StdRng,
}

impl FaultDice {
    /// Dice for `faults`, seeded with `seed`.
    pub fn new(faults: Faults, seed: u64) -> FaultDice {
        FaultDice {
            faults,
            rng: StdRng::seed_from_u64(seed),
        }
    }

    /// The fault of the next call, if any. One draw per call, whatever the
    /// settings, so that changing one probability does not reshuffle the rest.
    pub fn roll(&mut self) -> Option<FaultKind> {
        let draw: u16 = self.rng.gen_range(0..1000);
        let mut threshold = 0u16;
        for (per_mille, kind) in [
            (self.faults.drop_per_mille, FaultKind::Dropped),
            (self.faults.slow_per_mille, FaultKind::Slow),
            (self.faults.server_error_per_mille, FaultKind::ServerError),
            (self.faults.garbled_per_mille, FaultKind::Garbled),
        ] {
            threshold = threshold.saturating_add(per_mille);
            if draw < threshold {
                return Some(kind);
            }
        }
        None
    }
}

/// A body cut in half: what a connection lost mid-answer leaves behind.
pub fn garble(body: &[u8]) -> Vec<u8> {
    body[..body.len() / 2].to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_gives_the_same_faults_and_the_rates_are_roughly_kept() {
        let faults = Faults {
            drop_per_mille: 100,
            slow_per_mille: 100,
            server_error_per_mille: 100,
            garbled_per_mille: 100,
            statement_defects: Vec::new(),
        };
        let rolls = |seed| {
            let mut dice = FaultDice::new(faults.clone(), seed);
            (0..2000).map(|_| dice.roll()).collect::<Vec<_>>()
        };
        let first = rolls(7);
        assert_eq!(first, rolls(7));
        assert_ne!(first, rolls(8));
        for kind in [
            FaultKind::Dropped,
            FaultKind::Slow,
            FaultKind::ServerError,
            FaultKind::Garbled,
        ] {
            let count = first.iter().filter(|f| **f == Some(kind)).count();
            assert!((120..=280).contains(&count), "{kind:?}: {count}");
        }
    }

    #[test]
    fn no_faults_are_drawn_by_default_and_all_when_certain() {
        let mut calm = FaultDice::new(Faults::default(), 1);
        assert!((0..1000).all(|_| calm.roll().is_none()));
        let mut broken = FaultDice::new(
            Faults {
                server_error_per_mille: 1000,
                ..Faults::default()
            },
            1,
        );
        assert!((0..1000).all(|_| broken.roll() == Some(FaultKind::ServerError)));
        assert_eq!(garble(b"<xml></xml>"), b"<xml>".to_vec());
    }
}
