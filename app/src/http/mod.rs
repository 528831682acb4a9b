//! The HTTP API of docs/api.md (axum): payments, refunds, revoke, events,
//! operators' resolutions, reconciliations, health and metrics. Handlers
//! validate, then hand a command to the [`Runtime`]; they never write
//! anything themselves. Every `/v1` route declares the permission it
//! needs (`auth::allow`). Every route of the API is in one table
//! ([`api_routes`]), from which the router is built; the OpenAPI document
//! (`openapi/`) describes the same routes, which the tests below check.

pub mod auth;
mod body;
pub mod console;
pub mod error;
pub mod limits;
pub mod openapi;
mod payments;
mod reconciliations;
mod resolve;
pub mod server;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Request, State};
use axum::handler::Handler;
use axum::http::{Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodFilter, MethodRouter, get, on};
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

    /// The metrics text, with the gauges read from the order lists (the
    /// orders in manual review) brought up to date.
    pub async fn render_metrics(&self) -> String {
        self.index.refresh_gauge(self.runtime.metrics()).await;
        self.runtime.render_metrics()
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

/// `GET /healthz`
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "operations",
    operation_id = "health",
    summary = "Health",
    description = "`200` when the event store answers within 2 s. No key needed.",
    responses(
        (status = 200, description = "The event store answers; `head_position` is the position of the last event in the log.", body = Health,
            example = json!({"status": "ok", "head_position": 1234})),
    ),
)]
async fn healthz(State(state): State<AppState>) -> Response {
    match tokio::time::timeout(
        Duration::from_secs(2),
        state.runtime.ledger().store().head_position(),
    )
    .await
    {
        Ok(Ok(position)) => (
            StatusCode::OK,
            axum::Json(Health {
                status: "ok",
                head_position: position,
            }),
        )
            .into_response(),
        _ => ApiError::unavailable("the event store does not answer").into_response(),
    }
}

/// What `/healthz` answers when the store does.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
struct Health {
    /// Always `ok`.
    #[schema(value_type = String, example = "ok")]
    status: &'static str,
    /// The position of the last event in the log.
    head_position: u64,
}

/// `GET /metrics`
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "operations",
    operation_id = "metrics",
    summary = "Metrics",
    description = "The service's metrics in OpenMetrics text. When `[server] metrics_listen` is set they are served on that address only, and this path answers `404 not_found`. No key needed.",
    responses(
        (status = 200, description = "The metrics.", body = String,
            content_type = "application/openmetrics-text; version=1.0.0; charset=utf-8"),
        (status = 404, description = "`not_found`: the metrics are served on `[server] metrics_listen`.", body = error::ErrorBody),
    ),
)]
async fn metrics(State(state): State<AppState>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.render_metrics().await,
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

/// One route of the API: its method and path (as the OpenAPI document
/// writes them), and its handler with what guards it.
struct ApiRoute {
    method: Method,
    path: &'static str,
    /// What the key must allow: `Some` for the `/v1` routes, which are
    /// behind the key check ([`authenticate`]); `None` for the public ones.
    permission: Option<Permission>,
    handler: MethodRouter<AppState>,
}

/// A `/v1` route: authenticated (the router's layer), then held to `permission`.
fn v1<H, T>(method: Method, path: &'static str, permission: Permission, handler: H) -> ApiRoute
where
    H: Handler<T, AppState>,
    T: 'static,
{
    assert!(path.starts_with("/v1/"), "a /v1 route: {path}");
    let filter = MethodFilter::try_from(method.clone())
        .unwrap_or_else(|error| unreachable!("a method axum routes: {error}"));
    ApiRoute {
        method,
        path,
        permission: Some(permission),
        handler: on(filter, handler),
    }
}

/// A route outside `/v1`: no key.
fn public<H, T>(path: &'static str, handler: H) -> ApiRoute
where
    H: Handler<T, AppState>,
    T: 'static,
{
    assert!(!path.starts_with("/v1/"), "/v1 routes need a key: {path}");
    ApiRoute {
        method: Method::GET,
        path,
        permission: None,
        handler: get(handler),
    }
}

/// Every route of the API, the one table the router is built from. Pages
/// for people that are not part of the API (the console) are routed beside it.
fn api_routes(with_metrics: bool) -> Vec<ApiRoute> {
    use Permission as P;
    let mut routes = vec![
        v1(
            Method::POST,
            "/v1/payments",
            P::CreatePayment,
            payments::create,
        ),
        v1(Method::GET, "/v1/payments", P::ReadPayments, payments::list),
        v1(
            Method::GET,
            "/v1/payments/{order_no}",
            P::ReadPayments,
            payments::get,
        ),
        v1(
            Method::GET,
            "/v1/payments/{order_no}/events",
            P::ReadEvents,
            payments::events,
        ),
        v1(
            Method::POST,
            "/v1/payments/{order_no}/revoke",
            P::Revoke,
            payments::revoke,
        ),
        v1(
            Method::POST,
            "/v1/payments/{order_no}/refunds",
            P::CreateRefund,
            payments::create_refund,
        ),
        v1(
            Method::POST,
            "/v1/payments/{order_no}/resolve",
            P::Resolve,
            resolve::order,
        ),
        v1(
            Method::GET,
            "/v1/payments/{order_no}/refunds/{refund_no}",
            P::ReadRefunds,
            payments::get_refund,
        ),
        v1(
            Method::POST,
            "/v1/payments/{order_no}/refunds/{refund_no}/resolve",
            P::Resolve,
            resolve::refund,
        ),
        // Reads its body itself, as a stream, under its own limits.
        v1(
            Method::POST,
            "/v1/reconciliations",
            P::ImportStatement,
            reconciliations::create,
        ),
        v1(
            Method::GET,
            "/v1/reconciliations/{channel}/{date}",
            P::ReadReconciliations,
            reconciliations::get,
        ),
        public("/healthz", healthz),
        public("/openapi.json", openapi::openapi_json),
        public("/docs", openapi::docs),
    ];
    if with_metrics {
        routes.push(public("/metrics", metrics));
    }
    routes
}

/// The (method, path) of every route of the API, as [`router_with`] serves them.
pub fn api_route_list(with_metrics: bool) -> Vec<(Method, &'static str)> {
    api_routes(with_metrics)
        .into_iter()
        .map(|route| (route.method, route.path))
        .collect()
}

/// The API; `/metrics` only when `with_metrics` (otherwise it is served on
/// its own listener, [`metrics_router`], and answers 404 here).
pub fn router_with(state: AppState, with_metrics: bool) -> Router {
    let mut v1 = Router::new();
    let mut api = Router::new();
    for route in api_routes(with_metrics) {
        if let Some(permission) = route.permission {
            let path = route.path.strip_prefix("/v1").unwrap_or(route.path);
            v1 = v1.route(path, allow(permission, route.handler));
        } else {
            api = api.route(route.path, route.handler);
        }
    }
    let v1 = v1.route_layer(middleware::from_fn_with_state(state.clone(), authenticate));
    let api = api
        .nest("/v1", v1)
        // The console for people (docs/console.md).
        .nest("/ui", console::router(state.clone()))
        .route(
            "/ui/",
            get(|| async { axum::response::Redirect::to("/ui") }),
        );
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
    //! name and role (what an operator's resolution will record); and the
    //! router against its OpenAPI document.

    use axum::Extension;
    use chrono::{TimeZone, Utc};
    use paycode_adapters::clock::ManualClock;
    use paycode_adapters::lease::LocalLeases;
    use paycode_adapters::store::MemoryStore;
    use paycode_domain::payment::PaymentDecider;

    use std::collections::BTreeSet;

    use super::*;
    use crate::service::index::OrderIndex;
    use crate::service::ledger::Ledger;
    use crate::service::metrics::Metrics;
    use crate::service::runtime::Channels;

    fn runtime() -> Runtime {
        let clock = ManualClock::starting_at(Utc.with_ymd_and_hms(2026, 11, 22, 2, 0, 0).unwrap());
        let ledger = Ledger::new(
            Arc::new(MemoryStore::new()),
            PaymentDecider::default(),
            Arc::new(clock),
        );
        Runtime::new(
            ledger,
            Channels::default(),
            Metrics::new(),
            Arc::new(LocalLeases),
            Arc::new(paycode_adapters::ids::RandomIds),
            crate::service::fingerprint::FingerprintKey::random(),
        )
    }

    #[tokio::test]
    async fn handlers_see_the_merchant_and_the_keys_name_and_role() {
        let runtime = runtime();
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

    /// The (METHOD, path) of every operation of the OpenAPI document.
    fn documented() -> BTreeSet<(String, String)> {
        let document = serde_json::to_value(openapi::document()).unwrap();
        let mut operations = BTreeSet::new();
        for (path, item) in document["paths"].as_object().unwrap() {
            for method in item.as_object().unwrap().keys() {
                operations.insert((method.to_uppercase(), path.clone()));
            }
        }
        operations
    }

    /// The path with each `{parameter}` filled with a value of its kind.
    fn filled(path: &str) -> String {
        path.replace("{order_no}", "A1")
            .replace("{refund_no}", "R1")
            .replace("{channel}", "wechat")
            .replace("{date}", "2026-11-21")
    }

    #[test]
    fn each_documented_operation_names_the_roles_its_route_allows() {
        // The document says in words who may call each /v1 operation
        // ("Roles: payments, operator."): held here to the role table, so
        // a change of roles cannot leave the document behind.
        let document = serde_json::to_value(openapi::document()).unwrap();
        let roles = [
            Role::Payments,
            Role::Operator,
            Role::Auditor,
            Role::Reconciliation,
        ];
        for route in api_routes(true) {
            let Some(permission) = route.permission else {
                continue;
            };
            let operation = &document["paths"][route.path][route.method.as_str().to_lowercase()];
            let description = operation["description"].as_str().unwrap_or("");
            let named = description
                .split("Roles: ")
                .nth(1)
                .unwrap_or_else(|| panic!("{} {}: no \"Roles:\"", route.method, route.path));
            let named: Vec<&str> = named
                .split(['.', '('])
                .next()
                .unwrap()
                .split(',')
                .map(str::trim)
                .collect();
            let allowed: Vec<&str> = roles
                .into_iter()
                .filter(|role| auth::allows(*role, permission))
                .map(Role::as_str)
                .collect();
            assert_eq!(named, allowed, "{} {}", route.method, route.path);
        }
    }

    /// A key of `api_keys` for [`probe_router`].
    const PROBE_KEY: &str = "sk_live_probe_key_01";

    /// The whole API over a memory store, with one key of every role
    /// ([`PROBE_KEY`]) and no rate limits.
    fn probe_router() -> Router {
        let state = AppState::new(
            runtime(),
            Arc::new(OrderIndex::default()),
            vec![ApiKey::full(
                PROBE_KEY,
                MerchantId::parse("demo").unwrap(),
                "api_keys[0]",
            )],
            limits::ServerLimits::unthrottled(),
        );
        router(state)
    }

    #[tokio::test]
    async fn the_openapi_document_and_the_router_have_the_same_routes() {
        // The table the router is built from and the document list the same
        // (method, path) pairs. The console's pages (/ui) are HTML for people,
        // not part of the API document: left out here by name.
        let served: BTreeSet<(String, String)> = api_route_list(true)
            .into_iter()
            .filter(|(_, path)| !path.starts_with("/ui"))
            .map(|(method, path)| (method.to_string(), path.to_owned()))
            .collect();
        let documented = documented();
        assert_eq!(
            served.difference(&documented).collect::<Vec<_>>(),
            Vec::<&(String, String)>::new(),
            "served, not documented"
        );
        assert_eq!(
            documented.difference(&served).collect::<Vec<_>>(),
            Vec::<&(String, String)>::new(),
            "documented, not served"
        );
        assert_eq!(documented.len(), 15, "{documented:?}");

        // The router itself serves each of them: a /v1 route answers 401
        // without a key (its route, authenticated), the others 200; and on
        // a documented path every other method answers 405 even with a
        // valid key (no route).
        let key = PROBE_KEY;
        let app = probe_router();
        let all_methods = [
            Method::GET,
            Method::POST,
            Method::PUT,
            Method::PATCH,
            Method::DELETE,
        ];
        let paths: BTreeSet<&String> = documented.iter().map(|(_, path)| path).collect();
        for path in paths {
            for method in &all_methods {
                let served = documented.contains(&(method.to_string(), path.clone()));
                let mut request = Request::builder().method(method.clone()).uri(filled(path));
                if !served {
                    request = request.header(header::AUTHORIZATION, format!("Bearer {key}"));
                }
                let request = request.body(axum::body::Body::empty()).unwrap();
                let status = tower::ServiceExt::oneshot(app.clone(), request)
                    .await
                    .unwrap()
                    .status();
                let expected = if !served {
                    StatusCode::METHOD_NOT_ALLOWED
                } else if path.starts_with("/v1/") {
                    StatusCode::UNAUTHORIZED
                } else {
                    StatusCode::OK
                };
                assert_eq!(status, expected, "{method} {path}");
            }
        }
    }

    #[test]
    fn the_v1_operations_and_only_they_need_the_key() {
        let document = serde_json::to_value(openapi::document()).unwrap();
        assert_eq!(
            document["components"]["securitySchemes"]["api_key"]["scheme"],
            "bearer"
        );
        assert_eq!(document["openapi"], "3.1.0");
        for (path, item) in document["paths"].as_object().unwrap() {
            for (method, operation) in item.as_object().unwrap() {
                let secured = operation["security"]
                    .as_array()
                    .is_some_and(|s| !s.is_empty());
                assert_eq!(secured, path.starts_with("/v1/"), "{method} {path}");
                let answers = operation["responses"].as_object().unwrap();
                // Every route may time out, be refused when the service is full
                // or for an oversized head;
                // every /v1 route may be refused its key, role or rate.
                let mut shared = vec!["408", "431", "503"];
                if path.starts_with("/v1/") {
                    shared.extend(["401", "403", "429", "500"]);
                }
                for status in shared {
                    assert!(answers.contains_key(status), "{method} {path}: no {status}");
                }
            }
        }
    }

    #[tokio::test]
    async fn a_path_parameter_that_is_not_utf8_answers_in_the_error_shape() {
        // Found by probing the document's paths: `%FF` in a path parameter
        // answered axum's `400 text/plain`; it answers as a malformed value does.
        let key = PROBE_KEY;
        let app = probe_router();
        for (method, uri, status, code) in [
            (Method::GET, "/v1/payments/%FF", 404, "order_not_found"),
            (
                Method::GET,
                "/v1/payments/%FF/events",
                404,
                "order_not_found",
            ),
            (
                Method::POST,
                "/v1/payments/%FF/revoke",
                404,
                "order_not_found",
            ),
            (
                Method::GET,
                "/v1/payments/A1/refunds/%C0",
                404,
                "refund_not_found",
            ),
            (
                Method::POST,
                "/v1/payments/%FF/refunds/R1/resolve",
                404,
                "order_not_found",
            ),
            (
                Method::GET,
                "/v1/reconciliations/%FF/2026-11-21",
                422,
                "invalid_channel",
            ),
            (
                Method::GET,
                "/v1/reconciliations/wechat/%FF",
                422,
                "invalid_date",
            ),
        ] {
            let request = Request::builder()
                .method(method.clone())
                .uri(uri)
                .header(header::AUTHORIZATION, format!("Bearer {key}"))
                .body(axum::body::Body::empty())
                .unwrap();
            let response = tower::ServiceExt::oneshot(app.clone(), request)
                .await
                .unwrap();
            assert_eq!(response.status().as_u16(), status, "{method} {uri}");
            let body = axum::body::to_bytes(response.into_body(), BODY_LIMIT_BYTES)
                .await
                .unwrap();
            let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(body["error"]["code"], code, "{method} {uri}");
        }
    }
}
