//! The HTTP API of docs/api.md (axum): payments, refunds, revoke, events,
//! operators' resolutions, reconciliations, health and metrics. Handlers
//! validate, then hand a command to the [`Runtime`]; they never write
//! anything themselves. Every `/v1` route declares the permission it
//! needs (`auth::allow`).

pub mod auth;
mod body;
pub mod error;
mod payments;
mod reconciliations;
mod resolve;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use paycode_domain::MerchantId;

use crate::service::runtime::Runtime;
use auth::allow;
pub use auth::{ApiKey, Caller, Permission, Role};
use error::ApiError;

/// The largest request body accepted (a payment is a few hundred bytes).
pub const BODY_LIMIT_BYTES: usize = 16 * 1024;

/// What every handler shares.
#[derive(Debug, Clone)]
pub struct AppState {
    pub runtime: Runtime,
    pub index: Arc<crate::service::index::OrderIndex>,
    keys: Arc<Vec<ApiKey>>,
    limiter: Arc<DefaultKeyedRateLimiter<MerchantId>>,
}

impl AppState {
    /// `requests_per_sec` is each merchant's API request budget (429 beyond it).
    pub fn new(
        runtime: Runtime,
        index: Arc<crate::service::index::OrderIndex>,
        keys: Vec<ApiKey>,
        requests_per_sec: u32,
    ) -> Self {
        let quota = Quota::per_second(
            std::num::NonZeroU32::new(requests_per_sec).unwrap_or(std::num::NonZeroU32::MIN),
        );
        AppState {
            runtime,
            index,
            keys: Arc::new(keys),
            limiter: Arc::new(RateLimiter::keyed(quota)),
        }
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

/// The merchant a request is authenticated as.
#[derive(Debug, Clone)]
pub struct Merchant(pub MerchantId);

async fn authenticate(State(state): State<AppState>, mut request: Request, next: Next) -> Response {
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .map(str::trim);
    let Some(caller) = presented.and_then(|key| state.caller_for(key)) else {
        return ApiError::unauthorized().into_response();
    };
    if state.limiter.check_key(&caller.merchant).is_err() {
        return ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "too_many_requests",
            "request rate limit exceeded; retry shortly",
        )
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

/// The whole API.
pub fn router(state: AppState) -> Router {
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
        .route(
            "/reconciliations",
            allow(
                Permission::ImportStatement,
                post(reconciliations::create).layer(axum::extract::DefaultBodyLimit::max(
                    reconciliations::STATEMENT_LIMIT_BYTES,
                )),
            ),
        )
        .route(
            "/reconciliations/{channel}/{date}",
            allow(Permission::ReadReconciliations, get(reconciliations::get)),
        )
        .route_layer(middleware::from_fn_with_state(state.clone(), authenticate));
    Router::new()
        .nest("/v1", v1)
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .fallback(not_found)
        .layer(axum::extract::DefaultBodyLimit::max(BODY_LIMIT_BYTES))
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
        let state = AppState::new(runtime, Arc::new(OrderIndex::default()), keys, 1000);
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
