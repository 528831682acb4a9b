//! The console (`/ui`): server-rendered pages over the same state as the
//! API, for people. Signed in with an API key (checked as `/v1` checks it,
//! counted against the same failed-auth limit per address); a server-side
//! session ([`session`]) in an `HttpOnly; SameSite=Strict` cookie; a CSRF
//! token in every form that changes something, and an `Origin` check on
//! every POST (the sign-in form included). Every page asks the key's role
//! the same [`Permission`] the matching API route declares, so the console
//! can do nothing the key could not do through `/v1`; the one action,
//! resolving a manual review, goes through `service::resolve` as `POST
//! /v1/payments/{order_no}/resolve` does and records the key's name.
//!
//! Reading works without JavaScript; the one script (`assets/console.js`)
//! recomputes an order's hash chain with the browser's WebCrypto. Pages are
//! sent with a strict Content-Security-Policy (no inline script or style),
//! `X-Frame-Options: DENY`, `Referrer-Policy: same-origin` and
//! `Cache-Control: no-store`. "Now" is the runtime's clock.
//!
//! - [`session`]: sessions and CSRF tokens;
//! - [`pages`]: the HTML;
//! - [`timeline`]: an order's events placed to scale in time;
//! - [`figures`]: the overview's figures, read from the `/metrics` text.

pub mod figures;
pub mod pages;
pub mod session;
pub mod timeline;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use chrono::{Duration, NaiveDate};
use maud::Markup;
use paycode_adapters::store::chain::to_hex;
use paycode_domain::calendar::{china_date, china_midnight};
use paycode_domain::ids::payment_stream;
use paycode_domain::payment::{Fact, PaymentState, PaymentStatus, RefundStage};
use paycode_domain::{Channel, OrderNo};
use paycode_projections::{PaymentView, statuses_after};
use serde_json::Value;

use self::pages::{Nav, OrderSearch, ResolveForm};
use self::session::{Session, Sessions};
use self::timeline::{Mark, MarkKind};
use super::limits::client_address;
use super::{AppState, Permission};
use crate::service::ledger::OrderHistory;
use crate::service::reconcile;
use crate::service::resolve::{self, Subject, Verdict, Via, Words};

/// The session cookie's name.
pub const COOKIE: &str = "paycode_session";
/// Orders on one page of the list.
pub const PAGE_ORDERS: usize = 50;
/// The most orders one list request looks at while filtering; the next
/// page goes on from there.
pub const SCAN_ORDERS_MAX: usize = 1_000;
/// Statement days on the reconciliation page.
pub const RECONCILIATION_DAYS: i64 = 30;

const CSS: &str = include_str!("assets/console.css");
const JS: &str = include_str!("assets/console.js");
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
    img-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// The console's own state beside the API's.
#[derive(Debug, Clone)]
struct Console {
    app: AppState,
    sessions: Arc<Sessions>,
}

/// The console's routes, to be nested at `/ui`.
pub fn router(app: AppState) -> Router<AppState> {
    let console = Console {
        app,
        sessions: Arc::new(Sessions::default()),
    };
    Router::new()
        .route("/", get(home))
        .route("/sign-in", get(sign_in_page).post(sign_in))
        .route("/sign-out", post(sign_out))
        .route("/overview", get(overview))
        .route("/orders", get(orders))
        .route("/orders/{order_no}", get(order))
        .route("/orders/{order_no}/evidence.json", get(evidence))
        .route("/orders/{order_no}/resolve", post(resolve_order))
        .route(
            "/orders/{order_no}/refunds/{refund_no}/resolve",
            post(resolve_refund),
        )
        .route("/review", get(review))
        .route("/reconciliation", get(reconciliation))
        .route("/reconciliation/{channel}/{date}", get(report))
        .route(
            "/reconciliation/{channel}/{date}/report.csv",
            get(report_csv),
        )
        .route("/assets/console.css", get(css))
        .route("/assets/console.js", get(js))
        .fallback(not_found)
        .layer(middleware::from_fn(security_headers))
        .with_state(console)
}

/// The headers every console answer carries.
async fn security_headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    for (name, value) in [
        ("content-security-policy", CONTENT_SECURITY_POLICY),
        ("x-frame-options", "DENY"),
        // `same-origin`, not `no-referrer`: with `no-referrer` a browser sends
        // `Origin: null` on a form POST, and the Origin check could not tell
        // the console's own forms from anyone's. No other site sees a referrer.
        ("referrer-policy", "same-origin"),
        ("cache-control", "no-store"),
        ("x-content-type-options", "nosniff"),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    response
}

async fn css() -> Response {
    ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], CSS).into_response()
}

async fn js() -> Response {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        JS,
    )
        .into_response()
}

fn page(status: StatusCode, markup: Markup) -> Response {
    (status, Html(markup.into_string())).into_response()
}

async fn not_found() -> Response {
    page(
        StatusCode::NOT_FOUND,
        pages::problem(None, "Not found", "No such page."),
    )
}

/// The session cookie's value, if the request carries one.
fn session_id(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .find_map(|pair| {
            let (name, value) = pair.trim().split_once('=')?;
            (name == COOKIE).then(|| value.to_owned())
        })
}

/// Whether the browser reached us on a loopback name, where the page is
/// plain HTTP on this machine (the embedded defaults): the cookie is then
/// sent without `Secure`. Anywhere else paycode is expected behind a TLS
/// proxy (docs/production.md) and the cookie is `Secure`.
fn on_loopback(headers: &HeaderMap) -> bool {
    let Some(host) = headers.get(header::HOST).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let name = match host.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or(""),
        None => host.rsplit_once(':').map_or(host, |(name, _)| name),
    };
    name == "localhost"
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

fn cookie(headers: &HeaderMap, value: &str, max_age_secs: i64) -> String {
    let secure = if on_loopback(headers) { "" } else { "; Secure" };
    format!("{COOKIE}={value}; Path=/ui; HttpOnly; SameSite=Strict; Max-Age={max_age_secs}{secure}")
}

/// Whether a POST comes from a page of this console: its `Origin` (or,
/// without one, its `Referer`) names the host it was sent to. A form on
/// another site, or a request that says nothing, is refused.
fn same_origin(headers: &HeaderMap) -> bool {
    let Some(host) = headers.get(header::HOST).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let matches = |origin: &str| {
        origin
            .strip_prefix("http://")
            .or_else(|| origin.strip_prefix("https://"))
            .is_some_and(|rest| rest == host || rest.starts_with(&format!("{host}/")))
    };
    match headers.get(header::ORIGIN) {
        Some(origin) => origin.to_str().is_ok_and(matches),
        None => headers
            .get(header::REFERER)
            .and_then(|v| v.to_str().ok())
            .is_some_and(matches),
    }
}

fn forbidden(nav: Option<&Nav<'_>>, text: &str) -> Response {
    page(
        StatusCode::FORBIDDEN,
        pages::problem(nav, "Forbidden", text),
    )
}

fn to_sign_in() -> Response {
    Redirect::to("/ui/sign-in").into_response()
}

impl Console {
    fn now(&self) -> chrono::DateTime<chrono::Utc> {
        self.app.runtime.ledger().clock().now()
    }

    /// The request's live session; otherwise the answer to send (to sign-in).
    #[expect(
        clippy::result_large_err,
        reason = "the early answer of a handler, sent at once: boxing it buys nothing"
    )]
    fn session(&self, headers: &HeaderMap) -> Result<(String, Session), Response> {
        let id = session_id(headers).ok_or_else(to_sign_in)?;
        let session = self.sessions.get(&id, self.now()).ok_or_else(to_sign_in)?;
        Ok((id, session))
    }

    /// A page that reads: a live session whose key has `permission`
    /// (otherwise the sign-in page, or 403 naming what it lacks, with the
    /// navigation of `current`).
    #[expect(
        clippy::result_large_err,
        reason = "the early answer of a handler, sent at once: boxing it buys nothing"
    )]
    fn reading(
        &self,
        headers: &HeaderMap,
        permission: Permission,
        current: &'static str,
    ) -> Result<Session, Response> {
        let (_, session) = self.session(headers)?;
        require(&session, permission, current)?;
        Ok(session)
    }

    /// A form that changes something: same origin, a live session, and its
    /// `csrf` field equal to the session's token. Returns the session and
    /// the form's fields.
    #[expect(
        clippy::result_large_err,
        reason = "the early answer of a handler, sent at once: boxing it buys nothing"
    )]
    fn changing(
        &self,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Result<(String, Session, BTreeMap<String, String>), Response> {
        if !same_origin(headers) {
            return Err(forbidden(
                None,
                "This form did not come from a page of this console.",
            ));
        }
        let (id, session) = self.session(headers)?;
        let fields: BTreeMap<String, String> = serde_urlencoded::from_bytes(body)
            .map_err(|_| forbidden(None, "The form could not be read."))?;
        let token = fields.get("csrf").map_or("", String::as_str);
        if !session.csrf_matches(token) {
            return Err(forbidden(
                None,
                "The form's CSRF token is missing or wrong: reload the page and try again.",
            ));
        }
        Ok((id, session, fields))
    }
}

fn nav<'a>(session: &'a Session, current: &'static str) -> Nav<'a> {
    Nav {
        caller: &session.caller,
        csrf_token: &session.csrf_token,
        current,
    }
}

/// Refuses a page the key's role does not allow, as the API would (403).
#[expect(
    clippy::result_large_err,
    reason = "the early answer of a handler, sent at once: boxing it buys nothing"
)]
fn require(
    session: &Session,
    permission: Permission,
    current: &'static str,
) -> Result<(), Response> {
    if session.caller.may(permission) {
        return Ok(());
    }
    Err(forbidden(
        Some(&nav(session, current)),
        &format!(
            "This key's role ({}) does not allow {}.",
            session.caller.role,
            permission.describe()
        ),
    ))
}

async fn home(State(console): State<Console>, headers: HeaderMap) -> Response {
    match console.session(&headers) {
        Ok(_) => Redirect::to("/ui/overview").into_response(),
        Err(answer) => answer,
    }
}

async fn sign_in_page() -> Response {
    page(StatusCode::OK, pages::sign_in(None))
}

/// `POST /ui/sign-in`: checks the key as `/v1` does and starts a session.
async fn sign_in(State(console): State<Console>, request: Request) -> Response {
    let address = client_address(&request);
    let headers = request.headers().clone();
    if !same_origin(&headers) {
        return forbidden(None, "This form did not come from a page of this console.");
    }
    if console
        .app
        .failed_auth
        .blocked(address, Instant::now())
        .is_some()
    {
        return page(
            StatusCode::TOO_MANY_REQUESTS,
            pages::sign_in(Some(
                "Too many wrong keys from this address: wait a minute and try again.",
            )),
        );
    }
    let Ok(body) = axum::body::to_bytes(request.into_body(), super::BODY_LIMIT_BYTES).await else {
        return forbidden(None, "The form could not be read.");
    };
    let fields: BTreeMap<String, String> = serde_urlencoded::from_bytes(&body).unwrap_or_default();
    let presented = fields.get("key").map_or("", |key| key.trim());
    let Some(caller) = console.app.caller_for(presented) else {
        console.app.failed_auth.failed(address, Instant::now());
        return page(
            StatusCode::UNAUTHORIZED,
            pages::sign_in(Some("That key is not one of this service's keys.")),
        );
    };
    tracing::info!(key_name = %caller.key_name, role = %caller.role, "console sign-in");
    let id = console.sessions.create(caller, console.now());
    let mut answer = Redirect::to("/ui/overview").into_response();
    if let Ok(value) = HeaderValue::from_str(&cookie(&headers, &id, session::IDLE_SECS)) {
        answer.headers_mut().insert(header::SET_COOKIE, value);
    }
    answer
}

async fn sign_out(State(console): State<Console>, headers: HeaderMap, body: Bytes) -> Response {
    let (id, _, _) = match console.changing(&headers, &body) {
        Ok(found) => found,
        Err(answer) => return answer,
    };
    console.sessions.remove(&id);
    let mut answer = Redirect::to("/ui/sign-in").into_response();
    if let Ok(value) = HeaderValue::from_str(&cookie(&headers, "", 0)) {
        answer.headers_mut().insert(header::SET_COOKIE, value);
    }
    answer
}

async fn overview(State(console): State<Console>, headers: HeaderMap) -> Response {
    let (_, session) = match console.session(&headers) {
        Ok(found) => found,
        Err(answer) => return answer,
    };
    let now = console.now();
    let today = china_date(now);
    let statuses_today = if session.caller.may(Permission::ReadPayments) {
        match console
            .app
            .index
            .status_counts_since(&session.caller.merchant, china_midnight(today))
            .await
        {
            Ok(counts) => Some(counts.into_iter().collect()),
            Err(error) => return unavailable(&session, "overview", &error),
        }
    } else {
        None
    };
    let overview = pages::Overview {
        today,
        statuses_today,
        figures: figures::read(&console.app.render_metrics().await),
    };
    page(
        StatusCode::OK,
        pages::overview(&nav(&session, "overview"), &overview),
    )
}

fn query_fields(query: Option<&str>) -> BTreeMap<String, String> {
    serde_urlencoded::from_str(query.unwrap_or("")).unwrap_or_default()
}

fn unavailable(
    session: &Session,
    current: &'static str,
    error: &dyn std::fmt::Display,
) -> Response {
    tracing::warn!(%error, "console read failed");
    page(
        StatusCode::SERVICE_UNAVAILABLE,
        pages::problem(
            Some(&nav(session, current)),
            "Unavailable",
            "The ledger could not be read just now; try again.",
        ),
    )
}

/// `GET /ui/orders`: search and cursor paging, by order number.
async fn orders(
    State(console): State<Console>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let session = match console.reading(&headers, Permission::ReadPayments, "orders") {
        Ok(session) => session,
        Err(answer) => return answer,
    };
    let fields = query_fields(query.as_deref());
    let field = |name: &str| {
        fields
            .get(name)
            .map(|v| v.trim().to_owned())
            .unwrap_or_default()
    };
    let search = OrderSearch {
        order_no: field("order_no"),
        channel_trade_no: field("channel_trade_no"),
        status: field("status"),
        channel: field("channel"),
        from: field("from"),
        to: field("to"),
    };
    let nav = nav(&session, "orders");
    let show = |problem: Option<&str>, found: &[PaymentView], next: Option<&str>| {
        let status = if problem.is_some() {
            StatusCode::UNPROCESSABLE_ENTITY
        } else {
            StatusCode::OK
        };
        page(status, pages::orders(&nav, &search, problem, found, next))
    };
    let status = if search.status.is_empty() {
        None
    } else {
        match serde_json::from_value::<PaymentStatus>(Value::String(search.status.clone())) {
            Ok(status) => Some(status),
            Err(_) => return show(Some("No such status."), &[], None),
        }
    };
    let channel = if search.channel.is_empty() {
        None
    } else {
        match Channel::parse(&search.channel) {
            Some(channel) => Some(channel),
            None => return show(Some("The channel is wechat or alipay."), &[], None),
        }
    };
    let date = |text: &str| -> Result<Option<NaiveDate>, ()> {
        if text.is_empty() {
            return Ok(None);
        }
        NaiveDate::parse_from_str(text, "%Y-%m-%d")
            .map(Some)
            .map_err(|_| ())
    };
    let (Ok(from), Ok(to)) = (date(&search.from), date(&search.to)) else {
        return show(Some("Dates are YYYY-MM-DD."), &[], None);
    };
    let merchant = &session.caller.merchant;
    let ledger = console.app.runtime.ledger();
    let keep = |view: &PaymentView| {
        let created = china_date(view.created_at);
        status.is_none_or(|s| view.status == s)
            && channel.is_none_or(|c| view.channel == c)
            && from.is_none_or(|from| created >= from)
            && to.is_none_or(|to| created <= to)
            && (search.channel_trade_no.is_empty()
                || view.channel_trade_no.as_deref() == Some(search.channel_trade_no.as_str()))
    };
    // One order by its number.
    if !search.order_no.is_empty() {
        let Ok(order_no) = OrderNo::parse(&search.order_no) else {
            return show(None, &[], None);
        };
        return match ledger.history(merchant, &order_no).await {
            Ok(history) => {
                let found: Vec<PaymentView> =
                    view_of(&history).filter(|v| keep(v)).into_iter().collect();
                show(None, &found, None)
            }
            Err(error) => unavailable(&session, "orders", &error),
        };
    }
    let mut cursor = fields
        .get("cursor")
        .and_then(|text| OrderNo::parse(text).ok());
    let mut found = Vec::new();
    let mut examined = 0;
    let next = loop {
        let batch = match console
            .app
            .index
            .page(merchant, status, cursor.as_ref(), PAGE_ORDERS)
            .await
        {
            Ok(batch) => batch,
            Err(error) => return unavailable(&session, "orders", &error),
        };
        if batch.order_nos.is_empty() {
            // Nothing after the cursor (orders may have left the status
            // between two reads of the index).
            break None;
        }
        for order_no in &batch.order_nos {
            examined += 1;
            cursor = Some(order_no.clone());
            match ledger.history(merchant, order_no).await {
                Ok(history) => {
                    if let Some(view) = view_of(&history).filter(|v| keep(v)) {
                        found.push(view);
                    }
                }
                Err(error) => return unavailable(&session, "orders", &error),
            }
            if found.len() == PAGE_ORDERS || examined == SCAN_ORDERS_MAX {
                break;
            }
        }
        let more = batch.next_cursor.is_some() || cursor.as_ref() != batch.order_nos.last();
        if !more {
            break None;
        }
        if found.len() == PAGE_ORDERS || examined >= SCAN_ORDERS_MAX {
            break cursor.clone();
        }
    };
    show(
        None,
        &found,
        next.as_ref().map(ToString::to_string).as_deref(),
    )
}

fn view_of(history: &OrderHistory) -> Option<PaymentView> {
    PaymentView::fold(history.events.iter().map(|e| (e.version, &e.event)))
}

/// The channel's raw codes in an event's fields, if it holds an answer.
fn codes_of(fields: &Value) -> Vec<(String, String)> {
    fields
        .get("codes")
        .and_then(Value::as_object)
        .map(|codes| {
            codes
                .iter()
                .map(|(name, value)| {
                    let value = value
                        .as_str()
                        .map_or_else(|| value.to_string(), ToOwned::to_owned);
                    (name.clone(), value)
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The raw codes of the order's latest channel answer.
fn last_codes(history: &OrderHistory) -> Vec<(String, String)> {
    history
        .events
        .iter()
        .rev()
        .map(|recorded| codes_of(&serde_json::to_value(&recorded.event).unwrap_or(Value::Null)))
        .find(|codes| !codes.is_empty())
        .unwrap_or_default()
}

/// Why an order is in review, for a person: the reason's kind and its
/// fields (`revoke_attempts_exhausted (attempts 5)`).
fn reason_text(reason: &paycode_domain::payment::ManualReviewReason) -> String {
    let value = serde_json::to_value(reason).unwrap_or(Value::Null);
    let kind = value
        .get("kind")
        .and_then(Value::as_str)
        .unwrap_or("unknown");
    let details: Vec<String> = value
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(name, _)| name.as_str() != "kind")
        .map(|(name, value)| {
            format!(
                "{name} {}",
                value
                    .as_str()
                    .map_or_else(|| value.to_string(), ToOwned::to_owned)
            )
        })
        .collect();
    if details.is_empty() {
        kind.to_owned()
    } else {
        format!("{kind} ({})", details.join(", "))
    }
}

/// Reads the order `order_no_text`; the answer to send when it cannot.
async fn load_order(
    console: &Console,
    session: &Session,
    order_no_text: &str,
    current: &'static str,
) -> Result<(OrderNo, OrderHistory, PaymentView), Response> {
    let missing = || {
        page(
            StatusCode::NOT_FOUND,
            pages::problem(Some(&nav(session, current)), "Not found", "No such order."),
        )
    };
    let order_no = OrderNo::parse(order_no_text).map_err(|_| missing())?;
    let history = console
        .app
        .runtime
        .ledger()
        .history(&session.caller.merchant, &order_no)
        .await
        .map_err(|error| unavailable(session, current, &error))?;
    let view = view_of(&history).ok_or_else(missing)?;
    Ok((order_no, history, view))
}

/// `GET /ui/orders/{order_no}`: the order's story.
async fn order(
    State(console): State<Console>,
    headers: HeaderMap,
    Path(order_no_text): Path<String>,
    RawQuery(query): RawQuery,
) -> Response {
    let session = match console.reading(&headers, Permission::ReadPayments, "orders") {
        Ok(session) => session,
        Err(answer) => return answer,
    };
    let resolved = query_fields(query.as_deref()).contains_key("resolved");
    story_page(
        &console,
        &session,
        &order_no_text,
        ResolveForm::default(),
        resolved,
    )
    .await
}

async fn story_page(
    console: &Console,
    session: &Session,
    order_no_text: &str,
    form: ResolveForm,
    resolved: bool,
) -> Response {
    let (order_no, history, view) =
        match load_order(console, session, order_no_text, "orders").await {
            Ok(found) => found,
            Err(answer) => return answer,
        };
    let stream = payment_stream(&session.caller.merchant, &order_no);
    let mut marks = Vec::new();
    let events = if session.caller.may(Permission::ReadEvents) {
        let stored = match console
            .app
            .runtime
            .ledger()
            .store()
            .read_stream(&stream)
            .await
        {
            Ok(stored) => stored,
            Err(error) => return unavailable(session, "orders", &error),
        };
        let statuses = statuses_after(history.events.iter().map(|recorded| &recorded.event));
        let mut rows = Vec::with_capacity(stored.len());
        for ((raw, decoded), status_after) in stored.iter().zip(&history.events).zip(statuses) {
            let event = &decoded.event;
            let mut fields = serde_json::to_value(event).unwrap_or(Value::Null);
            if let Some(object) = fields.as_object_mut() {
                for internal in [
                    "auth_code_fingerprint",
                    "type",
                    "at",
                    "command_id",
                    "key_name",
                ] {
                    object.remove(internal);
                }
            }
            marks.push(Mark {
                kind: MarkKind::Event,
                label: raw.event_type.clone(),
                at: event.at,
            });
            if let Fact::Submitted(submitted) = &event.fact {
                marks.push(Mark {
                    kind: MarkKind::Deadline,
                    label: "deadline".to_owned(),
                    at: submitted.deadline_at,
                });
            }
            rows.push(pages::EventRow {
                version: raw.version,
                event_type: raw.event_type.clone(),
                at: event.at,
                recorded_at: raw.recorded_at,
                status_after: status_after.map(PaymentStatus::as_str),
                key_name: event.key_name.clone(),
                codes: codes_of(&fields),
                detail: fields.to_string(),
                event_id: raw.event_id.to_string(),
                schema_version: raw.schema_version,
                payload_hex: hex::encode(&raw.data),
                previous_hash: to_hex(&raw.previous_hash),
                hash: to_hex(&raw.hash),
            });
        }
        Some(rows)
    } else {
        None
    };
    let review_reason = match &history.state {
        PaymentState::ManualReview(review) => Some(reason_text(&review.reason)),
        _ => None,
    };
    let may_resolve = session.caller.may(Permission::Resolve);
    let has_problem = form.problem.is_some();
    let (order_form, mut refund_form) = match form.refund_no {
        None => (Some(form), None),
        Some(_) => (None, Some(form)),
    };
    let mut refund_reviews = Vec::new();
    if let PaymentState::Paid(paid) = &history.state {
        for refund in &paid.refunds {
            if let RefundStage::ManualReview { reason, .. } = &refund.stage {
                let refund_no = refund.refund_no.to_string();
                let form = may_resolve.then(|| match refund_form.take() {
                    Some(form) if form.refund_no.as_deref() == Some(refund_no.as_str()) => form,
                    other => {
                        refund_form = other;
                        ResolveForm::default()
                    }
                });
                refund_reviews.push(pages::RefundInReview {
                    refund_no,
                    amount: refund.amount.to_string(),
                    reason: reason_text(reason),
                    form,
                });
            }
        }
    }
    let resolve = (may_resolve && view.status == PaymentStatus::ManualReview)
        .then(|| order_form.unwrap_or_default());
    let status = if has_problem {
        StatusCode::UNPROCESSABLE_ENTITY
    } else {
        StatusCode::OK
    };
    let story = pages::Story {
        view: &view,
        stream: &stream,
        events,
        timeline: timeline::layout(marks),
        resolve,
        refund_reviews,
        review_reason,
        resolved,
    };
    page(status, pages::order(&nav(session, "orders"), &story))
}

/// `GET /ui/orders/{order_no}/evidence.json`: what `paycode history
/// --evidence` writes, for `paycode verify --file`.
async fn evidence(
    State(console): State<Console>,
    headers: HeaderMap,
    Path(order_no_text): Path<String>,
) -> Response {
    let session = match console.reading(&headers, Permission::ReadEvents, "orders") {
        Ok(session) => session,
        Err(answer) => return answer,
    };
    let (order_no, _, _) = match load_order(&console, &session, &order_no_text, "orders").await {
        Ok(found) => found,
        Err(answer) => return answer,
    };
    let stream = payment_stream(&session.caller.merchant, &order_no);
    let store = console.app.runtime.ledger().store();
    match crate::read::evidence::export(store.as_ref(), &stream).await {
        Ok(Some(evidence)) => (
            [
                (header::CONTENT_TYPE, "application/json".to_owned()),
                (
                    header::CONTENT_DISPOSITION,
                    format!("attachment; filename=\"evidence-{order_no}.json\""),
                ),
            ],
            evidence.to_json(),
        )
            .into_response(),
        Ok(None) => not_found().await,
        Err(error) => unavailable(&session, "orders", &error),
    }
}

/// `POST /ui/orders/{order_no}/resolve`: the operator's resolution, by the
/// same path as `POST /v1/payments/{order_no}/resolve`.
async fn resolve_order(
    State(console): State<Console>,
    headers: HeaderMap,
    Path(order_no_text): Path<String>,
    body: Bytes,
) -> Response {
    resolve_post(&console, &headers, &order_no_text, None, &body).await
}

/// `POST /ui/orders/{order_no}/refunds/{refund_no}/resolve`, as `POST
/// /v1/payments/{order_no}/refunds/{refund_no}/resolve`.
async fn resolve_refund(
    State(console): State<Console>,
    headers: HeaderMap,
    Path((order_no_text, refund_no_text)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    resolve_post(
        &console,
        &headers,
        &order_no_text,
        Some(&refund_no_text),
        &body,
    )
    .await
}

/// A resolve form: same origin, the session's CSRF token, the `Resolve`
/// permission, then `service::resolve` records it naming the key.
async fn resolve_post(
    console: &Console,
    headers: &HeaderMap,
    order_no_text: &str,
    refund_no_text: Option<&str>,
    body: &[u8],
) -> Response {
    let (_, session, fields) = match console.changing(headers, body) {
        Ok(found) => found,
        Err(answer) => return answer,
    };
    if let Err(answer) = require(&session, Permission::Resolve, "orders") {
        return answer;
    }
    let Ok(order_no) = OrderNo::parse(order_no_text) else {
        return not_found().await;
    };
    let subject = match refund_no_text {
        None => Subject::Order,
        Some(text) => match paycode_domain::RefundNo::parse(text) {
            Ok(refund_no) => Subject::Refund(refund_no),
            Err(_) => return not_found().await,
        },
    };
    let time_field = subject.time_field();
    let field = |name: &str| fields.get(name).map(|v| v.trim()).filter(|v| !v.is_empty());
    let mut form = ResolveForm {
        refund_no: refund_no_text.map(ToOwned::to_owned),
        outcome: field("outcome").unwrap_or("").to_owned(),
        channel_trade_no: field("channel_trade_no").unwrap_or("").to_owned(),
        paid_at: field(time_field).unwrap_or("").to_owned(),
        reason: field("reason").unwrap_or("").to_owned(),
        problem: None,
    };
    let words = Words {
        outcome: field("outcome"),
        channel_trade_no: match subject {
            Subject::Order => field("channel_trade_no"),
            Subject::Refund(_) => None,
        },
        at: field(time_field),
        reason: field("reason"),
    };
    let result = match Verdict::parse(subject, words) {
        Ok(verdict) => resolve::resolve(
            Via::Runtime(&console.app.runtime),
            &session.caller.merchant,
            &order_no,
            &verdict,
            &session.caller.key_name,
        )
        .await
        .map(|_| ()),
        Err(error) => Err(error),
    };
    match result {
        Ok(()) => {
            tracing::info!(key_name = %session.caller.key_name, "console resolution recorded");
            Redirect::to(&format!("/ui/orders/{order_no}?resolved=1")).into_response()
        }
        Err(error) => {
            form.problem = Some(error.to_string());
            story_page(console, &session, order_no_text, form, false).await
        }
    }
}

/// `GET /ui/review`: orders in manual review, oldest first.
async fn review(State(console): State<Console>, headers: HeaderMap) -> Response {
    let session = match console.reading(&headers, Permission::ReadPayments, "review") {
        Ok(session) => session,
        Err(answer) => return answer,
    };
    let merchant = &session.caller.merchant;
    let reads_events = session.caller.may(Permission::ReadEvents);
    let mut rows = Vec::new();
    let mut cursor: Option<OrderNo> = None;
    loop {
        let batch = match console
            .app
            .index
            .page(
                merchant,
                Some(PaymentStatus::ManualReview),
                cursor.as_ref(),
                200,
            )
            .await
        {
            Ok(batch) => batch,
            Err(error) => return unavailable(&session, "review", &error),
        };
        for order_no in &batch.order_nos {
            let history = match console
                .app
                .runtime
                .ledger()
                .history(merchant, order_no)
                .await
            {
                Ok(history) => history,
                Err(error) => return unavailable(&session, "review", &error),
            };
            let PaymentState::ManualReview(state) = &history.state else {
                continue;
            };
            let last_said = reads_events.then(|| last_codes(&history));
            rows.push(pages::ReviewRow {
                order_no: order_no.to_string(),
                refund_no: None,
                channel: state.order.channel.to_string(),
                amount: state.order.amount.to_string(),
                since: state.since,
                reason: reason_text(&state.reason),
                last_said,
            });
        }
        match batch.next_cursor {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    let refund_reviews = match console.app.index.refund_reviews(merchant).await {
        Ok(reviews) => reviews,
        Err(error) => return unavailable(&session, "review", &error),
    };
    for review in refund_reviews {
        let last_said = if reads_events {
            match console
                .app
                .runtime
                .ledger()
                .history(merchant, &review.order_no)
                .await
            {
                Ok(history) => Some(last_codes(&history)),
                Err(error) => return unavailable(&session, "review", &error),
            }
        } else {
            None
        };
        rows.push(pages::ReviewRow {
            order_no: review.order_no.to_string(),
            refund_no: Some(review.refund_no.to_string()),
            channel: review.channel.to_string(),
            amount: review.amount.to_string(),
            since: review.since,
            reason: reason_text(&review.reason),
            last_said,
        });
    }
    rows.sort_by_key(|row| row.since);
    page(
        StatusCode::OK,
        pages::review(&nav(&session, "review"), &rows),
    )
}

/// `GET /ui/reconciliation`: the last 30 statement days of each channel.
async fn reconciliation(State(console): State<Console>, headers: HeaderMap) -> Response {
    let session = match console.reading(&headers, Permission::ReadReconciliations, "reconciliation")
    {
        Ok(session) => session,
        Err(answer) => return answer,
    };
    let today = china_date(console.now());
    let mut channels = Vec::new();
    for channel in [Channel::Wechat, Channel::Alipay] {
        let mut days = Vec::new();
        for back in (0..RECONCILIATION_DAYS).rev() {
            let date = today - Duration::days(back);
            let report = match reconcile::latest(
                console.app.runtime.ledger(),
                &session.caller.merchant,
                channel,
                date,
            )
            .await
            {
                Ok(report) => report,
                Err(error) => return unavailable(&session, "reconciliation", &error),
            };
            days.push(pages::Day { date, report });
        }
        channels.push((channel.as_str().to_owned(), days));
    }
    page(
        StatusCode::OK,
        pages::reconciliation(&nav(&session, "reconciliation"), &channels),
    )
}

/// For a reader of reports: the session and the recorded report of a
/// channel's day; the answer to send when the session may not read reports
/// or there is no such report.
async fn reading_report(
    console: &Console,
    headers: &HeaderMap,
    channel_text: &str,
    date_text: &str,
) -> Result<
    (
        Session,
        paycode_domain::reconciliation::ReconciliationRecorded,
    ),
    Response,
> {
    let session = console.reading(headers, Permission::ReadReconciliations, "reconciliation")?;
    let report = load_report(console, &session, channel_text, date_text).await?;
    Ok((session, report))
}

/// The recorded report of a channel's day; the answer to send when none.
async fn load_report(
    console: &Console,
    session: &Session,
    channel_text: &str,
    date_text: &str,
) -> Result<paycode_domain::reconciliation::ReconciliationRecorded, Response> {
    let missing = || {
        page(
            StatusCode::NOT_FOUND,
            pages::problem(
                Some(&nav(session, "reconciliation")),
                "Not found",
                "No report of that channel and day.",
            ),
        )
    };
    let channel = Channel::parse(channel_text).ok_or_else(missing)?;
    let date = NaiveDate::parse_from_str(date_text, "%Y-%m-%d").map_err(|_| missing())?;
    reconcile::latest(
        console.app.runtime.ledger(),
        &session.caller.merchant,
        channel,
        date,
    )
    .await
    .map_err(|error| unavailable(session, "reconciliation", &error))?
    .ok_or_else(missing)
}

async fn report(
    State(console): State<Console>,
    headers: HeaderMap,
    Path((channel_text, date_text)): Path<(String, String)>,
) -> Response {
    let (session, report) =
        match reading_report(&console, &headers, &channel_text, &date_text).await {
            Ok(found) => found,
            Err(answer) => return answer,
        };
    let mut grouped: BTreeMap<String, Vec<pages::FindingRow>> = BTreeMap::new();
    for finding in &report.findings {
        grouped
            .entry(finding.kind.as_str().to_owned())
            .or_default()
            .push(pages::FindingRow {
                linked: finding
                    .order_no
                    .as_deref()
                    .is_some_and(|text| OrderNo::parse(text).is_ok()),
                order_no: finding.order_no.clone(),
                refund_no: finding.refund_no.clone(),
                ledger_amount: finding.ledger_amount.map(|m| m.to_string()),
                statement_amount: finding.statement_amount.map(|m| m.to_string()),
                detail: finding.detail.clone(),
            });
    }
    let grouped: Vec<_> = grouped.into_iter().collect();
    page(
        StatusCode::OK,
        pages::report(&nav(&session, "reconciliation"), &report, &grouped),
    )
}

/// A cell a spreadsheet would not run as a formula (`=`, `+`, `-`, `@`
/// first get a leading `'`): statement text is the channel's, not ours.
fn csv_cell(text: &str) -> String {
    if text.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{text}")
    } else {
        text.to_owned()
    }
}

/// The report's findings as CSV, one finding a line.
pub fn report_csv_text(report: &paycode_domain::reconciliation::ReconciliationRecorded) -> String {
    let mut writer = csv::Writer::from_writer(Vec::new());
    let _ = writer.write_record([
        "channel",
        "date",
        "kind",
        "order_no",
        "refund_no",
        "ledger_amount",
        "statement_amount",
        "detail",
    ]);
    for finding in &report.findings {
        let _ = writer.write_record([
            report.channel.as_str().to_owned(),
            report.date.to_string(),
            finding.kind.as_str().to_owned(),
            csv_cell(finding.order_no.as_deref().unwrap_or("")),
            csv_cell(finding.refund_no.as_deref().unwrap_or("")),
            finding
                .ledger_amount
                .map(|m| m.to_string())
                .unwrap_or_default(),
            finding
                .statement_amount
                .map(|m| m.to_string())
                .unwrap_or_default(),
            csv_cell(&finding.detail),
        ]);
    }
    String::from_utf8(writer.into_inner().unwrap_or_default()).unwrap_or_default()
}

async fn report_csv(
    State(console): State<Console>,
    headers: HeaderMap,
    Path((channel_text, date_text)): Path<(String, String)>,
) -> Response {
    let (_, report) = match reading_report(&console, &headers, &channel_text, &date_text).await {
        Ok(found) => found,
        Err(answer) => return answer,
    };
    (
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()),
            (
                header::CONTENT_DISPOSITION,
                format!(
                    "attachment; filename=\"reconciliation-{}-{}.csv\"",
                    report.channel, report.date
                ),
            ),
        ],
        report_csv_text(&report),
    )
        .into_response()
}

#[cfg(test)]
mod tests;
