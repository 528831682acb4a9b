//! The limits every client of the HTTP API is held to (docs/production.md,
//! "Limits"; the settings are `[server]` in docs/configuration.md): how fast
//! a merchant may call, how often one address may fail to authenticate, how
//! many requests run at once, how long one may take, and, at the connection
//! level ([`super::server`]), how long a client may take to send its headers,
//! how many connections are open and how long a shutdown may wait.
//!
//! Each refusal answers at once with the API's error shape: `429
//! too_many_requests` (with `Retry-After` in whole seconds), `503
//! overloaded`, `408 request_timeout`.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tokio::sync::Semaphore;

use super::AppState;
use super::error::ApiError;

/// Each merchant's sustained request rate by default, per second.
pub const REQUESTS_PER_SEC_DEFAULT: u32 = 200;
/// How many requests a merchant may send at once above its rate, by default.
pub const REQUESTS_BURST_DEFAULT: u32 = 400;
/// Requests with a missing or wrong key one client address may send per
/// minute by default (also the burst) before it is refused with 429.
pub const UNAUTHENTICATED_PER_MIN_DEFAULT: u32 = 30;
/// How long a client may take to send a request's headers, by default.
pub const HEADER_READ_TIMEOUT_DEFAULT: Duration = Duration::from_secs(10);
/// How long one request may take, its body included, by default: more than
/// the longest `?wait` (60 s).
pub const REQUEST_TIMEOUT_DEFAULT: Duration = Duration::from_secs(75);
/// How long a statement import (`POST /v1/reconciliations`) may take, its
/// upload included, by default.
pub const IMPORT_TIMEOUT_DEFAULT: Duration = Duration::from_secs(600);
/// Connections open at once by default; more wait in the kernel's queue.
pub const CONNECTIONS_MAX_DEFAULT: usize = 1024;
/// Requests handled at once by default; more answer 503 at once.
pub const REQUESTS_IN_FLIGHT_MAX_DEFAULT: usize = 256;
/// The largest request head (request line and headers) read: a longer one
/// is answered `431` (with an empty body: it is refused before any route is
/// found) and its connection closed. Real clients send well under 2 KiB.
pub const HEAD_LIMIT_BYTES: usize = 16 * 1024;
/// The most headers a request may carry (more: `431`).
pub const HEADERS_MAX: usize = 64;
/// How long a shutdown waits for open requests and connections by default.
pub const SHUTDOWN_TIMEOUT_DEFAULT: Duration = Duration::from_secs(30);

/// The limits of one service (`[server]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerLimits {
    /// Each merchant's sustained request rate (per second).
    pub requests_per_sec: u32,
    /// Requests a merchant may send at once above its rate.
    pub requests_burst: u32,
    /// Requests with a missing or wrong key per client address and minute.
    pub unauthenticated_per_min: u32,
    /// How long a client may take to send a request's headers (also how
    /// long an idle kept-alive connection stays open).
    pub header_read_timeout: Duration,
    /// How long one request may take, its body included.
    pub request_timeout: Duration,
    /// How long a statement import may take, its upload included.
    pub import_timeout: Duration,
    /// Connections open at once.
    pub connections_max: usize,
    /// Requests handled at once.
    pub requests_in_flight_max: usize,
    /// How long a shutdown waits for open requests and connections.
    pub shutdown_timeout: Duration,
}

impl Default for ServerLimits {
    fn default() -> Self {
        ServerLimits {
            requests_per_sec: REQUESTS_PER_SEC_DEFAULT,
            requests_burst: REQUESTS_BURST_DEFAULT,
            unauthenticated_per_min: UNAUTHENTICATED_PER_MIN_DEFAULT,
            header_read_timeout: HEADER_READ_TIMEOUT_DEFAULT,
            request_timeout: REQUEST_TIMEOUT_DEFAULT,
            import_timeout: IMPORT_TIMEOUT_DEFAULT,
            connections_max: CONNECTIONS_MAX_DEFAULT,
            requests_in_flight_max: REQUESTS_IN_FLIGHT_MAX_DEFAULT,
            shutdown_timeout: SHUTDOWN_TIMEOUT_DEFAULT,
        }
    }
}

impl ServerLimits {
    /// The defaults with request rates no test or benchmark reaches: for
    /// in-process services driven by one program.
    pub fn unthrottled() -> Self {
        ServerLimits {
            requests_per_sec: 100_000_000,
            requests_burst: 100_000_000,
            unauthenticated_per_min: 100_000_000,
            ..ServerLimits::default()
        }
    }

    /// How long `?wait` may hold a request: a second less than the request
    /// timeout, so the answer beats it.
    pub fn wait_max(&self) -> Duration {
        self.request_timeout.saturating_sub(Duration::from_secs(1))
    }
}

/// Whole seconds to wait, at least 1, for `Retry-After`.
pub fn retry_after_secs(wait: Duration) -> u64 {
    (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1)
}

/// Counts failed authentications per client address (IPv6 by /64, the
/// block one host usually holds) with a GCRA bucket: `per_min` failures in
/// a burst, then one per `60 s / per_min`. An address over its budget is
/// refused before its key is even looked at, so a right guess cannot be told
/// from a wrong one while it is blocked.
#[derive(Debug)]
pub struct FailedAuthLimiter {
    interval: Duration,
    tolerance: Duration,
    /// Per address, the theoretical arrival time of its next failure.
    due: Mutex<HashMap<IpAddr, Instant>>,
}

/// Entries kept before the expired ones are swept.
const SWEEP_ABOVE: usize = 10_000;

impl FailedAuthLimiter {
    pub fn new(per_min: u32) -> Self {
        let per_min = per_min.max(1);
        let interval = Duration::from_secs(60) / per_min;
        FailedAuthLimiter {
            interval,
            tolerance: interval * (per_min - 1),
            due: Mutex::new(HashMap::new()),
        }
    }

    fn key(address: IpAddr) -> IpAddr {
        match address {
            IpAddr::V4(_) => address,
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or_else(
                || IpAddr::V6((u128::from(v6) & !((1u128 << 64) - 1)).into()),
                IpAddr::V4,
            ),
        }
    }

    /// How long `address` must wait before it may try again, when it is over
    /// its budget.
    pub fn blocked(&self, address: IpAddr, now: Instant) -> Option<Duration> {
        let due = self
            .due
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let tat = *due.get(&Self::key(address))?;
        let allowed_until = now + self.tolerance;
        (tat > allowed_until).then(|| tat - allowed_until)
    }

    /// Counts one failed authentication of `address`.
    pub fn failed(&self, address: IpAddr, now: Instant) {
        let mut due = self
            .due
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if due.len() > SWEEP_ABOVE {
            due.retain(|_, tat| *tat > now);
        }
        let tat = due.entry(Self::key(address)).or_insert(now);
        *tat = (*tat).max(now) + self.interval;
    }
}

/// The client's address, as the server recorded it for the connection; the
/// unspecified address (one shared budget) when the router is served
/// without it.
pub fn client_address(request: &Request) -> IpAddr {
    request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map_or(IpAddr::from([0, 0, 0, 0]), |ConnectInfo(address)| {
            address.ip()
        })
}

/// At most `requests_in_flight_max` requests are handled at once; one more
/// answers `503 overloaded` at once instead of queueing.
pub async fn limit_in_flight(
    State(permits): State<Arc<Semaphore>>,
    request: Request,
    next: Next,
) -> Response {
    let Ok(_permit) = permits.try_acquire() else {
        return ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "overloaded",
            "the service is handling as many requests as it may; retry shortly",
        )
        .into_response();
    };
    next.run(request).await
}

/// A request (its body included) that takes longer than the request
/// timeout (the import timeout for `POST /v1/reconciliations`) is cut off
/// with `408 request_timeout`, and its connection closed.
pub async fn limit_duration(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let limits = state.limits();
    let is_import =
        request.method() == Method::POST && request.uri().path() == "/v1/reconciliations";
    let limit = if is_import {
        limits.import_timeout
    } else {
        limits.request_timeout
    };
    if let Ok(response) = tokio::time::timeout(limit, next.run(request)).await {
        return response;
    }
    let mut response = ApiError::new(
        StatusCode::REQUEST_TIMEOUT,
        "request_timeout",
        format!(
            "the request took longer than {} s; repeat it (creating payments and refunds is idempotent)",
            limit.as_secs()
        ),
    )
    .into_response();
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_may_fail_its_budget_then_waits() {
        let limiter = FailedAuthLimiter::new(3);
        let address: IpAddr = [10, 0, 0, 1].into();
        let other: IpAddr = [10, 0, 0, 2].into();
        let now = Instant::now();
        for _ in 0..3 {
            assert_eq!(limiter.blocked(address, now), None);
            limiter.failed(address, now);
        }
        let wait = limiter.blocked(address, now).expect("blocked after 3");
        assert!(wait <= Duration::from_secs(20), "{wait:?}");
        assert_eq!(limiter.blocked(other, now), None);
        assert_eq!(limiter.blocked(address, now + wait), None);
    }

    #[test]
    fn an_ipv6_host_is_one_slash_64() {
        let limiter = FailedAuthLimiter::new(1);
        let now = Instant::now();
        limiter.failed("2001:db8::1".parse().unwrap(), now);
        assert!(
            limiter
                .blocked("2001:db8::ffff".parse().unwrap(), now)
                .is_some()
        );
        assert!(
            limiter
                .blocked("2001:db8:0:1::1".parse().unwrap(), now)
                .is_none()
        );
    }

    #[test]
    fn retry_after_is_whole_seconds_rounded_up() {
        assert_eq!(retry_after_secs(Duration::from_millis(1)), 1);
        assert_eq!(retry_after_secs(Duration::from_secs(2)), 2);
        assert_eq!(retry_after_secs(Duration::from_millis(2_100)), 3);
        assert_eq!(retry_after_secs(Duration::ZERO), 1);
    }
}
