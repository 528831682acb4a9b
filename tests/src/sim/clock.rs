//! Simulated time: the clock port read off tokio's clock, which a
//! simulation pauses (`start_paused`). When every task waits, tokio jumps to
//! the next timer, so the runtime's 5 s polls, 30 s deadlines and three-day
//! refund limits pass in no real time, in the same order every run.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use paycode_adapters::clock::Clock;
use tokio::time::Instant;

/// Wall-clock time derived from tokio's (paused) clock.
#[derive(Debug, Clone, Copy)]
pub struct TokioClock {
    start_at: DateTime<Utc>,
    start: Instant,
}

impl TokioClock {
    /// A clock that reads `start_at` now.
    pub fn starting_at(start_at: DateTime<Utc>) -> Self {
        TokioClock {
            start_at,
            start: Instant::now(),
        }
    }

    fn instant_of(&self, at: DateTime<Utc>) -> Instant {
        let offset = (at - self.start_at).to_std().unwrap_or_default();
        self.start + offset
    }
}

#[async_trait]
impl Clock for TokioClock {
    /// Whole milliseconds since the start: tokio wakes timers on its own
    /// millisecond grid, which sits a few microseconds off `start` by a
    /// different amount each run; rounding keeps every run's times equal.
    fn now(&self) -> DateTime<Utc> {
        let elapsed = Instant::now() - self.start;
        let millis = (elapsed.as_micros() + 500) / 1000;
        self.start_at + chrono::Duration::milliseconds(i64::try_from(millis).unwrap_or(i64::MAX))
    }

    async fn sleep_until(&self, at: DateTime<Utc>) {
        tokio::time::sleep_until(self.instant_of(at)).await;
    }
}
