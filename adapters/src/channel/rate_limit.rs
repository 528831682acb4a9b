//! Per-merchant, per-API rate limits for channel calls (token buckets from
//! the `governor` crate). A call over the limit waits for its turn; it is
//! never dropped, because a dropped query could leave an order unsettled.
//! Each wait is returned so the caller can measure it.
//!
//! The buckets read tokio's clock and wait with tokio's timers, so a
//! simulation with paused time sees the same turns on every run.

use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use governor::clock::Clock;
use governor::middleware::NoOpMiddleware;
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter};
use paycode_domain::Channel;
use serde::{Deserialize, Serialize};

/// The channel APIs the clients call, each limited separately (and the
/// names the sandbox records its calls under).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Api {
    /// `/pay/micropay`, `alipay.trade.pay`.
    Pay,
    /// `/pay/orderquery`, `alipay.trade.query`.
    Query,
    /// `/secapi/pay/reverse`, `alipay.trade.cancel`.
    Revoke,
    /// `/secapi/pay/refund`, `alipay.trade.refund`.
    Refund,
    /// `/pay/refundquery`, `alipay.trade.fastpay.refund.query`.
    RefundQuery,
    /// `/pay/downloadbill`, `alipay.data.dataservice.bill.downloadurl.query`.
    Statement,
}

impl Api {
    pub fn as_str(self) -> &'static str {
        match self {
            Api::Pay => "pay",
            Api::Query => "query",
            Api::Revoke => "revoke",
            Api::Refund => "refund",
            Api::RefundQuery => "refund_query",
            Api::Statement => "statement",
        }
    }
}

/// Calls per second allowed per API, for one merchant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RateLimits {
    pub pay_per_sec: u32,
    pub query_per_sec: u32,
    pub revoke_per_sec: u32,
    pub refund_per_sec: u32,
    pub refund_query_per_sec: u32,
    pub statement_per_sec: u32,
}

impl RateLimits {
    /// WeChat's documented limits per merchant: Quick Pay 30, Query 1800,
    /// Refund 150, Refund query 300. Reverse is not documented; it shares
    /// Quick Pay's limit here, and statements are rare.
    pub const WECHAT: RateLimits = RateLimits {
        pay_per_sec: 30,
        query_per_sec: 1800,
        revoke_per_sec: 30,
        refund_per_sec: 150,
        refund_query_per_sec: 300,
        statement_per_sec: 10,
    };

    /// Alipay publishes no per-API figures; these are conservative defaults,
    /// overridable in the configuration.
    pub const ALIPAY: RateLimits = RateLimits {
        pay_per_sec: 30,
        query_per_sec: 300,
        revoke_per_sec: 30,
        refund_per_sec: 50,
        refund_query_per_sec: 100,
        statement_per_sec: 10,
    };

    /// No practical limit: for benchmarks against the sandbox, never for a real channel.
    pub const LIFTED: RateLimits = RateLimits {
        pay_per_sec: 1_000_000,
        query_per_sec: 1_000_000,
        revoke_per_sec: 1_000_000,
        refund_per_sec: 1_000_000,
        refund_query_per_sec: 1_000_000,
        statement_per_sec: 1_000_000,
    };

    pub fn for_channel(channel: Channel) -> RateLimits {
        match channel {
            Channel::Wechat => RateLimits::WECHAT,
            Channel::Alipay => RateLimits::ALIPAY,
        }
    }

    fn per_sec(&self, api: Api) -> u32 {
        match api {
            Api::Pay => self.pay_per_sec,
            Api::Query => self.query_per_sec,
            Api::Revoke => self.revoke_per_sec,
            Api::Refund => self.refund_per_sec,
            Api::RefundQuery => self.refund_query_per_sec,
            Api::Statement => self.statement_per_sec,
        }
    }

    /// The first limit that is zero, named as in the configuration.
    pub fn validate(&self) -> Result<(), &'static str> {
        let named = [
            ("pay_per_sec", self.pay_per_sec),
            ("query_per_sec", self.query_per_sec),
            ("revoke_per_sec", self.revoke_per_sec),
            ("refund_per_sec", self.refund_per_sec),
            ("refund_query_per_sec", self.refund_query_per_sec),
            ("statement_per_sec", self.statement_per_sec),
        ];
        match named.iter().find(|(_, value)| *value == 0) {
            Some((name, _)) => Err(name),
            None => Ok(()),
        }
    }
}

impl Default for RateLimits {
    fn default() -> Self {
        RateLimits::WECHAT
    }
}

/// tokio's clock for the buckets: the real one in production, the paused
/// one in a simulation.
#[derive(Debug, Clone, Copy, Default)]
struct TokioClock;

impl Clock for TokioClock {
    type Instant = std::time::Instant;

    fn now(&self) -> Self::Instant {
        tokio::time::Instant::now().into_std()
    }
}

type Bucket = RateLimiter<NotKeyed, InMemoryState, TokioClock, NoOpMiddleware<std::time::Instant>>;

/// The token buckets of one merchant on one channel.
#[derive(Debug)]
pub struct CallLimiter {
    buckets: [Bucket; 6],
    /// Calls that had to wait for a token, per API.
    waits: [AtomicU64; 6],
}

/// A call waited for its turn if it waited at least this long.
const WAITED_MIN: Duration = Duration::from_millis(1);

const APIS: [Api; 6] = [
    Api::Pay,
    Api::Query,
    Api::Revoke,
    Api::Refund,
    Api::RefundQuery,
    Api::Statement,
];

impl CallLimiter {
    /// Buckets for `limits`; a zero limit is treated as 1 per second (see `RateLimits::validate`).
    pub fn new(limits: RateLimits) -> Self {
        let bucket = |api: Api| {
            let per_sec = NonZeroU32::new(limits.per_sec(api)).unwrap_or(NonZeroU32::MIN);
            RateLimiter::direct_with_clock(Quota::per_second(per_sec), TokioClock)
        };
        CallLimiter {
            buckets: APIS.map(bucket),
            waits: Default::default(),
        }
    }

    /// Waits until a call to `api` is allowed; returns how long it waited.
    pub async fn until_ready(&self, api: Api) -> Duration {
        let index = APIS
            .iter()
            .position(|a| *a == api)
            .expect("every Api has a bucket");
        let started = tokio::time::Instant::now();
        let bucket = &self.buckets[index];
        while let Err(not_until) = bucket.check() {
            tokio::time::sleep(not_until.wait_time_from(TokioClock.now())).await;
        }
        let waited = started.elapsed();
        if waited >= WAITED_MIN {
            self.waits[index].fetch_add(1, Ordering::Relaxed);
        }
        waited
    }

    /// Waits until a call to `api` is allowed, but no longer than
    /// `wait_max`: `None` when its turn would come later (no token is taken).
    pub async fn until_ready_within(&self, api: Api, wait_max: Duration) -> Option<Duration> {
        tokio::time::timeout(wait_max, self.until_ready(api))
            .await
            .ok()
    }

    /// How many calls of each API have waited for a token so far.
    pub fn waits(&self) -> Vec<(Api, u64)> {
        APIS.iter()
            .zip(&self.waits)
            .map(|(api, count)| (*api, count.load(Ordering::Relaxed)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    #[tokio::test]
    async fn calls_over_the_limit_wait_and_are_not_dropped() {
        // 5 per second: a burst of 5 passes at once, the 6th and 7th wait for tokens.
        let limits = RateLimits {
            pay_per_sec: 5,
            ..RateLimits::WECHAT
        };
        let limiter = CallLimiter::new(limits);
        let started = Instant::now();
        let mut waits = Vec::new();
        for _ in 0..7 {
            waits.push(limiter.until_ready(Api::Pay).await);
        }
        assert!(
            waits[..5].iter().all(|w| *w < Duration::from_millis(50)),
            "{waits:?}"
        );
        assert!(
            waits[5] >= Duration::from_millis(100),
            "the 6th call waited: {waits:?}"
        );
        assert!(
            started.elapsed() >= Duration::from_millis(300),
            "all 7 calls went through in turn"
        );
        let pay_waits = limiter
            .waits()
            .into_iter()
            .find(|(api, _)| *api == Api::Pay)
            .unwrap()
            .1;
        assert_eq!(pay_waits, 2, "the 6th and 7th calls are counted as waits");
        // Another API has its own bucket.
        assert!(limiter.until_ready(Api::Query).await < Duration::from_millis(50));
    }

    #[tokio::test]
    async fn a_wait_beyond_its_bound_gives_up_without_taking_a_turn() {
        let limiter = CallLimiter::new(RateLimits {
            pay_per_sec: 1,
            ..RateLimits::WECHAT
        });
        assert!(
            limiter
                .until_ready_within(Api::Pay, Duration::from_millis(50))
                .await
                .is_some(),
            "the first call has its turn at once"
        );
        let started = Instant::now();
        assert_eq!(
            limiter
                .until_ready_within(Api::Pay, Duration::from_millis(50))
                .await,
            None,
            "the next turn is a second away"
        );
        assert!(started.elapsed() < Duration::from_millis(500));
    }

    #[test]
    fn the_documented_wechat_limits_are_the_defaults() {
        let limits = RateLimits::default();
        assert_eq!((limits.pay_per_sec, limits.query_per_sec), (30, 1800));
        assert_eq!(
            (limits.refund_per_sec, limits.refund_query_per_sec),
            (150, 300)
        );
        let zero = RateLimits {
            refund_per_sec: 0,
            ..limits
        };
        assert_eq!(zero.validate(), Err("refund_per_sec"));
    }
}
