//! The HTTP API of docs/api.md (axum): payments, refunds, revoke, events,
//! operators' resolutions, reconciliations, health and metrics. Handlers
//! validate, then hand a command to the [`Runtime`]; they never write
//! anything themselves.

mod body;
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
use secrecy::{ExposeSecret, SecretString};
use subtle::ConstantTimeEq;
use tokio::sync::Semaphore;

use crate::service::runtime::Runtime;
use error::ApiError;
use limits::{FailedAuthLimiter, ServerLimits, client_address, retry_after_secs};

/// The largest request body accepted (a payment is a few hundred bytes).
pub const BODY_LIMIT_BYTES: usize = 16 * 1024;

/// An API key (a secret: it never prints) and the merchant it belongs to.
#[derive(Debug, Clone)]
pub struct ApiKey {
    pub key: SecretString,
    pub merchant: MerchantId,
}

/// An action that not every key of a merchant may take (CONTRACT.md,
/// "Keys and roles").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permission {
    /// Resolve an order or a refund in manual review: role `operator`.
    Resolve,
}

impl ApiKey {
    /// Whether this key may take `permission`'s action: the one place that
    /// decides it. Keys do not have roles yet, and a key listed in a
    /// merchant's `api_keys` has every role, so every key may; the
    /// `operator` check of keys with one role belongs here.
    pub fn permits(&self, permission: Permission) -> bool {
        match permission {
            Permission::Resolve => true,
        }
    }
}

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

    /// The key presented, as its place in `keys`. Every key is compared, in
    /// constant time.
    fn key_for(&self, presented: &str) -> Option<KeyRef> {
        let mut found = None;
        for (position, candidate) in self.keys.iter().enumerate() {
            let key = candidate.key.expose_secret();
            let same_length = key.len() == presented.len();
            let equal: bool = key.as_bytes().ct_eq(presented.as_bytes()).into();
            if same_length && equal {
                found = Some(position);
            }
        }
        found.map(KeyRef)
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

/// The name of `keys[position]`: its index among its merchant's keys, which
/// come in the configuration's order, so its index in the merchant's `api_keys`.
fn key_name(keys: &[ApiKey], position: usize) -> KeyName {
    let merchant = &keys[position].merchant;
    let index = keys[..position]
        .iter()
        .filter(|other| &other.merchant == merchant)
        .count();
    KeyName(format!("api_keys[{index}]"))
}

/// The merchant a request is authenticated as.
#[derive(Debug, Clone)]
pub struct Merchant(pub MerchantId);

/// The name of the key a request is authenticated with: never the key, so
/// it may be recorded (an operator's resolution names it). Until keys carry
/// names of their own, the key's place in its merchant's `api_keys`, as
/// `api_keys[0]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyName(pub String);

/// The key a request is authenticated with, as its place in the keys of
/// [`AppState`] (the key itself stays there).
#[derive(Debug, Clone, Copy)]
struct KeyRef(usize);

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
    let Some(key) = presented.and_then(|key| state.key_for(key)) else {
        state.failed_auth.failed(address, Instant::now());
        return ApiError::unauthorized().into_response();
    };
    let merchant = state.keys[key.0].merchant.clone();
    let key_name = key_name(&state.keys, key.0);
    if let Err(not_until) = state.limiter.check_key(&merchant) {
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
    request.extensions_mut().insert(Merchant(merchant));
    request.extensions_mut().insert(key_name);
    request.extensions_mut().insert(key);
    next.run(request).await
}

/// Lets through only a request whose key may resolve manual reviews (403
/// `forbidden` otherwise), before its body is read.
async fn operators_only(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let permitted = request
        .extensions()
        .get::<KeyRef>()
        .is_some_and(|key| state.keys[key.0].permits(Permission::Resolve));
    if !permitted {
        return ApiError::forbidden().into_response();
    }
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
    let operator_layer = middleware::from_fn_with_state(state.clone(), operators_only);
    let v1 = Router::new()
        .route("/payments", post(payments::create).get(payments::list))
        .route("/payments/{order_no}", get(payments::get))
        .route("/payments/{order_no}/events", get(payments::events))
        .route("/payments/{order_no}/revoke", post(payments::revoke))
        .route(
            "/payments/{order_no}/refunds",
            post(payments::create_refund),
        )
        .route(
            "/payments/{order_no}/resolve",
            post(resolve::order).route_layer(operator_layer.clone()),
        )
        .route(
            "/payments/{order_no}/refunds/{refund_no}",
            get(payments::get_refund),
        )
        .route(
            "/payments/{order_no}/refunds/{refund_no}/resolve",
            post(resolve::refund).route_layer(operator_layer),
        )
        // Reads its body itself, as a stream, under its own limits.
        .route("/reconciliations", post(reconciliations::create))
        .route(
            "/reconciliations/{channel}/{date}",
            get(reconciliations::get),
        )
        .route_layer(middleware::from_fn_with_state(state.clone(), authenticate));
    let mut api = Router::new()
        .nest("/v1", v1)
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
    use super::*;

    #[test]
    fn a_key_is_named_by_its_place_among_its_merchants_keys() {
        // Keys of two merchants interleaved: each counts only its own merchant's keys; no secret in the name.
        let key = |merchant: &str, key: &str| ApiKey {
            key: key.into(),
            merchant: MerchantId::parse(merchant).unwrap(),
        };
        let keys = [
            key("demo", "sk_test_demo_first"),
            key("other", "sk_test_other_first"),
            key("demo", "sk_test_demo_second"),
        ];
        let names: Vec<String> = (0..keys.len()).map(|i| key_name(&keys, i).0).collect();
        assert_eq!(names, ["api_keys[0]", "api_keys[0]", "api_keys[1]"]);
    }

    #[test]
    fn every_key_of_api_keys_may_resolve_until_keys_have_roles() {
        // Keys listed in api_keys have every role (CONTRACT.md "Keys and roles").
        let key = ApiKey {
            key: "sk_test_demo".into(),
            merchant: MerchantId::parse("demo").unwrap(),
        };
        assert!(key.permits(Permission::Resolve));
    }
}
