//! The clock port: the runtime's and the sandbox's only source of time.
//! Production uses [`SystemClock`]; tests and simulations use [`ManualClock`]
//! and move time forward themselves, so rules about 5 s, 30 s or 7 days are
//! tested without sleeping.

use std::fmt::Debug;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Duration, Utc};
use tokio::sync::watch;

#[async_trait]
pub trait Clock: Send + Sync + Debug + 'static {
    fn now(&self) -> DateTime<Utc>;

    /// Resolves once `now() >= at`.
    async fn sleep_until(&self, at: DateTime<Utc>);
}

/// Wall-clock time.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

#[async_trait]
impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }

    async fn sleep_until(&self, at: DateTime<Utc>) {
        let wait = (at - Utc::now()).to_std().unwrap_or_default();
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }
}

/// Time that moves only when told to. Sleepers wake as soon as it passes their deadline.
#[derive(Debug, Clone)]
pub struct ManualClock {
    now: Arc<watch::Sender<DateTime<Utc>>>,
}

impl ManualClock {
    pub fn starting_at(start: DateTime<Utc>) -> Self {
        ManualClock {
            now: Arc::new(watch::Sender::new(start)),
        }
    }

    pub fn advance(&self, by: Duration) {
        self.now.send_modify(|now| *now += by);
    }

    /// Moves time to `at` (never backwards).
    pub fn set(&self, at: DateTime<Utc>) {
        self.now.send_modify(|now| *now = (*now).max(at));
    }
}

#[async_trait]
impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *self.now.borrow()
    }

    async fn sleep_until(&self, at: DateTime<Utc>) {
        let mut receiver = self.now.subscribe();
        // The sender lives as long as self; wait_for only fails if it is dropped.
        let _ = receiver.wait_for(|now| *now >= at).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[tokio::test]
    async fn a_manual_clock_wakes_sleepers_only_when_moved_past_their_time() {
        let start = Utc.with_ymd_and_hms(2026, 11, 22, 2, 0, 0).unwrap();
        let clock = ManualClock::starting_at(start);
        let sleeper = {
            let clock = clock.clone();
            tokio::spawn(async move { clock.sleep_until(start + Duration::seconds(30)).await })
        };
        clock.advance(Duration::seconds(29));
        tokio::task::yield_now().await;
        assert!(!sleeper.is_finished(), "29 s is not 30 s");
        clock.advance(Duration::seconds(1));
        sleeper.await.unwrap();
        assert_eq!(clock.now(), start + Duration::seconds(30));
        clock.set(start);
        assert_eq!(
            clock.now(),
            start + Duration::seconds(30),
            "time never goes back"
        );
    }
}
