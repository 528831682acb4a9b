//! The HTTP API of docs/api.md (axum): payments, refunds, revoke, events,
//! operators' resolutions, reconciliations, health and metrics. Handlers
//! validate, then hand a command to the [`Runtime`]; they never write
//! anything themselves. Every `/v1` route declares the permission it
//! needs (`auth::allow`).

pub mod auth;
mod body;
pub mod console;
pub mod error;
pub mod limits;
mod payments;
mod reconciliations;
mod resolve;
pub mod server;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use paycode_domain::MerchantId;
use tokio::sync::Semaphore;

use crate::service::runtime::Runtime;
use auth::allow;
pub use auth::{ApiKey, Caller, Permission, Role};
use error::ApiError;
use limits::{FailedAuthLimiter, ServerLimits, client_address, retry_after_secs};

/// The largest request body accepted (a payment is a few hundred bytes).
pub const BODY_LIMIT_BYTES: usize = 16 * 1024;

/// What every handler shares.
#[derive(Debug, Clone)]
pub struct AppState {
    pub runtime: Runtime,
    pub index: Arc<crate::service::index::OrderIndex>,
    keys: Arc<Vec<ApiKey>>,
    limiter: Arc<DefaultKeyedRateLimiter<MerchantId>>,
    failed_auth: Arc<FailedAuthLimiter>,
    in_flight: Arc<Semaphore>,
    limits: Arc<ServerLimits>,
    /// Merchants with a statement import under way (one at a time each).
    imports: Arc<Mutex<HashSet<MerchantId>>>,
}

impl AppState {
    /// The API's state, holding its clients to `limits` (429, 503, 408).
    pub fn new(
        runtime: Runtime,
        index: Arc<crate::service::index::OrderIndex>,
        keys: Vec<ApiKey>,
        limits: ServerLimits,
    ) -> Self {
        let nonzero = |n: u32| std::num::NonZeroU32::new(n).unwrap_or(std::num::NonZeroU32::MIN);
        let quota = Quota::per_second(nonzero(limits.requests_per_sec))
            .allow_burst(nonzero(limits.requests_burst));
        AppState {
            runtime,
            index,
            keys: Arc::new(keys),
            limiter: Arc::new(RateLimiter::keyed(quota)),
            failed_auth: Arc::new(FailedAuthLimiter::new(limits.unauthenticated_per_min)),
            in_flight: Arc::new(Semaphore::new(limits.requests_in_flight_max.max(1))),
            limits: Arc::new(limits),
            imports: Arc::new(Mutex::new(HashSet::new())),
        }
    }

    /// The limits this API holds its clients to.
    pub fn limits(&self) -> &ServerLimits {
        &self.limits
    }

    /// Marks an import of `merchant` as under way until the guard drops;
    /// `None` when one already is.
    fn begin_import(&self, merchant: &MerchantId) -> Option<ImportGuard> {
        let mut imports = self
            .imports
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        imports.insert(merchant.clone()).then(|| ImportGuard {
            imports: self.imports.clone(),
            merchant: merchant.clone(),
        })
    }

    /// The key a request presents, as a caller. Every key is compared
    /// (by SHA-256 digest, in constant time).
    fn caller_for(&self, presented: &str) -> Option<Caller> {
        auth::find(&self.keys, presented).map(|key| Caller {
            merchant: key.merchant.clone(),
            key_name: key.name.clone(),
            role: key.role,
        })
    }
}

/// A statement import under way; ends when dropped.
#[derive(Debug)]
struct ImportGuard {
    imports: Arc<Mutex<HashSet<MerchantId>>>,
    merchant: MerchantId,
}

impl Drop for ImportGuard {
    fn drop(&mut self) {
        self.imports
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(&self.merchant);
    }
}

/// The merchant a request is authenticated as.
#[derive(Debug, Clone)]
pub struct Merchant(pub MerchantId);

/// Authenticates a `/v1` request by its key. An address that failed too
/// often is refused first (429, whatever key it sends now); a missing or
/// wrong key counts against its address (401); a merchant past its request
/// rate is refused (429).
async fn authenticate(State(state): State<AppState>, mut request: Request, next: Next) -> Response {
    let address = client_address(&request);
    if let Some(wait) = state.failed_auth.blocked(address, Instant::now()) {
        let secs = retry_after_secs(wait);
        return ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "too_many_requests",
            format!(
                "too many requests with a missing or wrong API key from this address; retry in {secs} s"
            ),
        )
        .retry_after(secs)
        .into_response();
    }
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .map(str::trim);
    let Some(caller) = presented.and_then(|key| state.caller_for(key)) else {
        state.failed_auth.failed(address, Instant::now());
        return ApiError::unauthorized().into_response();
    };
    if let Err(not_until) = state.limiter.check_key(&caller.merchant) {
        let wait = not_until.wait_time_from(governor::clock::Clock::now(
            &governor::clock::DefaultClock::default(),
        ));
        return ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "too_many_requests",
            "over the merchant's request rate (server.requests_per_sec); retry shortly",
        )
        .retry_after(retry_after_secs(wait))
        .into_response();
    }
    request
        .extensions_mut()
        .insert(Merchant(caller.merchant.clone()));
    request.extensions_mut().insert(caller);
    next.run(request).await
}

async fn healthz(State(state): State<AppState>) -> Response {
    match tokio::time::timeout(
        Duration::from_secs(2),
        state.runtime.ledger().store().head_position(),
    )
    .await
    {
        Ok(Ok(position)) => (
            StatusCode::OK,
            axum::Json(serde_json::json!({"status": "ok", "head_position": position})),
        )
            .into_response(),
        _ => ApiError::unavailable("the event store does not answer").into_response(),
    }
}

async fn metrics(State(state): State<AppState>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.runtime.render_metrics(),
    )
        .into_response()
}

async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such endpoint")
}

/// The whole API, `/metrics` included.
pub fn router(state: AppState) -> Router {
    router_with(state, true)
}

/// The API; `/metrics` only when `with_metrics` (otherwise it is served on
/// its own listener, [`metrics_router`], and answers 404 here).
pub fn router_with(state: AppState, with_metrics: bool) -> Router {
    let v1 = Router::new()
        .route(
            "/payments",
            allow(Permission::CreatePayment, post(payments::create)),
        )
        .route(
            "/payments",
            allow(Permission::ReadPayments, get(payments::list)),
        )
        .route(
            "/payments/{order_no}",
            allow(Permission::ReadPayments, get(payments::get)),
        )
        .route(
            "/payments/{order_no}/events",
            allow(Permission::ReadEvents, get(payments::events)),
        )
        .route(
            "/payments/{order_no}/revoke",
            allow(Permission::Revoke, post(payments::revoke)),
        )
        .route(
            "/payments/{order_no}/refunds",
            allow(Permission::CreateRefund, post(payments::create_refund)),
        )
        .route(
            "/payments/{order_no}/resolve",
            allow(Permission::Resolve, post(resolve::order)),
        )
        .route(
            "/payments/{order_no}/refunds/{refund_no}",
            allow(Permission::ReadRefunds, get(payments::get_refund)),
        )
        .route(
            "/payments/{order_no}/refunds/{refund_no}/resolve",
            allow(Permission::Resolve, post(resolve::refund)),
        )
        // Reads its body itself, as a stream, under its own limits.
        .route(
            "/reconciliations",
            allow(Permission::ImportStatement, post(reconciliations::create)),
        )
        .route(
            "/reconciliations/{channel}/{date}",
            allow(Permission::ReadReconciliations, get(reconciliations::get)),
        )
        .route_layer(middleware::from_fn_with_state(state.clone(), authenticate));
    let mut api = Router::new()
        .nest("/v1", v1)
        // The console for people (docs/console.md).
        .nest("/ui", console::router(state.clone()))
        .route(
            "/ui/",
            get(|| async { axum::response::Redirect::to("/ui") }),
        )
        .route("/healthz", get(healthz));
    if with_metrics {
        api = api.route("/metrics", get(metrics));
    }
    with_common_layers(api.fallback(not_found), state)
}

/// `/metrics` alone, for `[server] metrics_listen`.
pub fn metrics_router(state: AppState) -> Router {
    with_common_layers(
        Router::new()
            .route("/metrics", get(metrics))
            .fallback(not_found),
        state,
    )
}

fn with_common_layers(router: Router<AppState>, state: AppState) -> Router {
    router
        .layer(axum::extract::DefaultBodyLimit::max(BODY_LIMIT_BYTES))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            limits::limit_duration,
        ))
        .layer(middleware::from_fn_with_state(
            state.in_flight.clone(),
            limits::limit_in_flight,
        ))
        .layer(
            // One span per request (method and path; never a body or header),
            // around every log line of its command; a line per answer at debug.
            tower_http::trace::TraceLayer::new_for_http()
                .make_span_with(|request: &Request| {
                    tracing::info_span!(
                        "request",
                        method = %request.method(),
                        path = %request.uri().path(),
                    )
                })
                .on_request(())
                .on_response(
                    tower_http::trace::DefaultOnResponse::new()
                        .level(tracing::Level::DEBUG)
                        .latency_unit(tower_http::LatencyUnit::Micros),
                ),
        )
        .with_state(state)
}

#[cfg(test)]
mod tests {
    //! What authentication hands the handlers: the merchant, and the key's
    //! name and role (what an operator's resolution will record).

    use axum::Extension;
    use chrono::{TimeZone, Utc};
    use paycode_adapters::clock::ManualClock;
    use paycode_adapters::lease::LocalLeases;
    use paycode_adapters::store::MemoryStore;
    use paycode_domain::payment::PaymentDecider;

    use super::*;
    use crate::service::index::OrderIndex;
    use crate::service::ledger::Ledger;
    use crate::service::metrics::Metrics;
    use crate::service::runtime::Channels;

    #[tokio::test]
    async fn handlers_see_the_merchant_and_the_keys_name_and_role() {
        let clock = ManualClock::starting_at(Utc.with_ymd_and_hms(2026, 11, 22, 2, 0, 0).unwrap());
        let ledger = Ledger::new(
            Arc::new(MemoryStore::new()),
            PaymentDecider::default(),
            Arc::new(clock),
        );
        let runtime = Runtime::new(
            ledger,
            Channels::default(),
            Metrics::new(),
            Arc::new(LocalLeases),
            Arc::new(paycode_adapters::ids::RandomIds),
            crate::service::fingerprint::FingerprintKey::random(),
        );
        let demo = MerchantId::parse("demo").unwrap();
        let keys = vec![
            ApiKey::full("sk_live_full_key_01", demo.clone(), "api_keys[0]"),
            ApiKey {
                sha256: auth::digest("sk_live_operator_01"),
                merchant: demo,
                name: "night-ops".to_owned(),
                role: Role::Operator,
            },
        ];
        let state = AppState::new(
            runtime,
            Arc::new(OrderIndex::default()),
            keys,
            limits::ServerLimits::unthrottled(),
        );
        let app = Router::new()
            .route(
                "/whoami",
                get(
                    |Extension(Merchant(merchant)): Extension<Merchant>,
                     Extension(caller): Extension<Caller>| async move {
                        format!("{merchant} {} {}", caller.key_name, caller.role)
                    },
                ),
            )
            .route_layer(middleware::from_fn_with_state(state.clone(), authenticate))
            .with_state(state);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/whoami", listener.local_addr().unwrap());
        let server = tokio::spawn(async move { axum::serve(listener, app).await });
        let client = reqwest::Client::new();
        for (key, expected) in [
            ("sk_live_operator_01", "demo night-ops operator"),
            ("sk_live_full_key_01", "demo api_keys[0] full"),
        ] {
            let answer = client.get(&url).bearer_auth(key).send().await.unwrap();
            assert_eq!(answer.text().await.unwrap(), expected);
        }
        let unknown = client
            .get(&url)
            .bearer_auth("sk_live_nobody_01")
            .send()
            .await
            .unwrap();
        assert_eq!(unknown.status(), 401);
        server.abort();
    }
}
