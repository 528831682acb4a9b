//! Handlers of `/v1/payments`: create (idempotent on `order_no`), read, list,
//! history, revoke, refunds (idempotent on `refund_no`).

use std::time::Duration;

use axum::Extension;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use paycode_domain::ids::payment_stream;
use paycode_domain::payment::{
    Command, CommandKind, Fact, RequestRefund, RevokeReason, SubmitPayment,
};
use paycode_domain::{AuthCode, Channel, Currency, Money, OrderNo, RefundNo};
use paycode_projections::{PaymentView, RefundView, statuses_after};
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use super::body::Fields;
use super::error::{ApiError, ErrorBody};
use super::openapi::schemas;
use super::{AppState, Caller, Merchant};
use crate::service::ledger::{OrderHistory, PaymentLedgerError};

/// The longest `?wait` allowed, in seconds.
pub const WAIT_MAX_SECS: u64 = 60;
/// Longest subject accepted (WeChat's `body` is at most 128 bytes).
pub const SUBJECT_MAX_BYTES: usize = 128;
/// Longest refund reason accepted (WeChat's `refund_desc` is at most 80 characters).
pub const REASON_MAX_CHARS: usize = 80;

pub(super) fn body_bytes(body: Result<Bytes, BytesRejection>) -> Result<Bytes, ApiError> {
    body.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body_too_large",
                format!("the body must be at most {} bytes", super::BODY_LIMIT_BYTES),
            )
        } else {
            ApiError::malformed(rejection.body_text())
        }
    })
}

fn query_params(query: Option<String>) -> Result<Vec<(String, String)>, ApiError> {
    serde_urlencoded::from_str(query.as_deref().unwrap_or(""))
        .map_err(|_| ApiError::malformed("the query string is malformed"))
}

fn order_no(text: &str) -> Result<OrderNo, ApiError> {
    OrderNo::parse(text)
        .map_err(|error| ApiError::invalid("order_no", error.code(), error.to_string()))
}

fn view(history: &OrderHistory) -> Option<PaymentView> {
    PaymentView::fold(history.events.iter().map(|e| (e.version, &e.event)))
}

pub(super) fn payment_response(
    status: StatusCode,
    history: &OrderHistory,
) -> Result<Response, ApiError> {
    let view = view(history).ok_or_else(|| ApiError::not_found("order"))?;
    Ok((status, axum::Json(view)).into_response())
}

/// `POST /v1/payments[?wait=SECONDS]`
#[utoipa::path(
    post,
    path = "/v1/payments",
    tag = "payments",
    operation_id = "create_payment",
    summary = "Create a payment",
    description = "Records the intent to pay, then makes the single pay call to the channel. \
Idempotent on `order_no`: the same body again answers `200` with the current payment and \
sends nothing to the channel. Without `wait` the answer comes as soon as the intent is \
recorded (status `paying`); with `wait` it comes when the payment is settled or the wait \
ends, whichever is first. Roles: payments, operator.",
    params(
        ("wait" = Option<u64>, Query, minimum = 0, maximum = 60,
            description = "Seconds to wait for a settled status, 0 to 60 (default 0)."),
    ),
    request_body(content = schemas::CreatePayment, content_type = "application/json"),
    responses(
        (status = 201, description = "A new payment.", body = schemas::Payment),
        (status = 200, description = "The same request again: the current payment.", body = schemas::Payment),
        (status = 400, description = "`malformed_request` (the body is not a UTF-8 JSON object; an unknown query parameter), `unknown_field`.", body = ErrorBody),
        (status = 409, description = "`order_no_conflict`: the `order_no` exists with a different body.", body = ErrorBody,
            example = json!({"error": {"code": "order_no_conflict", "message": "a payment with this order_no exists with a different body", "field": null}})),
        (status = 413, description = "`body_too_large`: over 16 KiB.", body = ErrorBody),
        (status = 422, description = "A field is missing or invalid (`field` names it): `missing_order_no`, `invalid_order_no`, `missing_auth_code`, `invalid_auth_code`, `missing_amount`, `invalid_amount`, `invalid_currency`, `missing_subject`, `invalid_subject`, `invalid_channel`, `channel_mismatch`, `channel_not_configured`, `invalid_wait`.", body = ErrorBody),
    ),
    security(("api_key" = [])),
)]
pub async fn create(
    State(state): State<AppState>,
    Extension(Merchant(merchant)): Extension<Merchant>,
    Extension(caller): Extension<Caller>,
    RawQuery(query): RawQuery,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let mut wait_secs = 0;
    for (name, value) in query_params(query)? {
        match name.as_str() {
            "wait" => {
                wait_secs = value
                    .parse::<u64>()
                    .ok()
                    .filter(|secs| *secs <= WAIT_MAX_SECS)
                    .ok_or_else(|| {
                        ApiError::invalid(
                            "wait",
                            "invalid_wait",
                            "wait must be a whole number of seconds from 0 to 60",
                        )
                    })?;
            }
            other => {
                return Err(ApiError::malformed(format!(
                    "unknown query parameter {other:?}"
                )));
            }
        }
    }
    let body = body_bytes(body)?;
    let fields = Fields::parse(
        &body,
        &[
            "order_no",
            "auth_code",
            "amount",
            "currency",
            "subject",
            "channel",
        ],
    )?;
    let order_no = order_no(fields.string("order_no")?)?;
    let channel = match fields.optional_string("channel")? {
        None => None,
        Some(name) => Some(Channel::parse(name).ok_or_else(|| {
            ApiError::invalid(
                "channel",
                "invalid_channel",
                "channel must be \"wechat\" or \"alipay\"",
            )
        })?),
    };
    let auth_code = AuthCode::parse_for(fields.string("auth_code")?, channel).map_err(|error| {
        let field = match error {
            paycode_domain::AuthCodeError::ChannelMismatch { .. } => "channel",
            paycode_domain::AuthCodeError::NotAPaymentCode => "auth_code",
        };
        ApiError::invalid(field, error.code(), error.to_string())
    })?;
    // A payment nobody can carry out is refused before anything is written.
    if state
        .runtime
        .channel_client(&merchant, auth_code.channel())
        .is_none()
    {
        let field = if channel.is_some() {
            "channel"
        } else {
            "auth_code"
        };
        return Err(ApiError::invalid(
            field,
            "channel_not_configured",
            format!(
                "the payment code is for {}, and this merchant has no {} channel configured",
                auth_code.channel(),
                auth_code.channel()
            ),
        ));
    }
    let amount: Money =
        fields
            .string("amount")?
            .parse()
            .map_err(|error: paycode_domain::MoneyError| {
                ApiError::invalid("amount", error.code(), error.to_string())
            })?;
    if let Some(currency) = fields.optional_string("currency")? {
        Currency::parse(currency)
            .map_err(|error| ApiError::invalid("currency", error.code(), error.to_string()))?;
    }
    let subject = fields.string("subject")?;
    if subject.trim().is_empty()
        || subject.len() > SUBJECT_MAX_BYTES
        || subject.chars().any(char::is_control)
    {
        return Err(ApiError::invalid(
            "subject",
            "invalid_subject",
            format!("subject must be 1-{SUBJECT_MAX_BYTES} bytes of text"),
        ));
    }
    let masked = auth_code.masked();
    let fingerprint = state.runtime.fingerprint(&auth_code);
    let stream = payment_stream(&merchant, &order_no);
    let runtime = &state.runtime;
    // Before the submission, so that the pay answer cannot slip by unseen.
    let watch = (wait_secs > 0).then(|| runtime.watch(&stream));
    let (status, history) = match runtime
        .submit(
            state.runtime.new_command_id(),
            Some(caller.key_name),
            SubmitPayment {
                merchant_id: merchant.clone(),
                order_no: order_no.clone(),
                auth_code,
                // The runtime fingerprints the code with the ledger's key.
                auth_code_fingerprint: None,
                amount,
                subject: subject.to_owned(),
            },
        )
        .await
    {
        Ok(history) => (StatusCode::CREATED, history),
        Err(PaymentLedgerError::Rejected(paycode_domain::payment::Rejection::AlreadySubmitted)) => {
            let history = runtime.ledger().history(&merchant, &order_no).await?;
            let same = match history.events.first().map(|e| &e.event.fact) {
                Some(Fact::Submitted(submitted)) => {
                    // The same code: by its keyed fingerprint; an order
                    // recorded before fingerprints (schema 1) by its mask.
                    let same_code = match &submitted.auth_code_fingerprint {
                        Some(recorded) => *recorded == fingerprint,
                        None => submitted.auth_code == masked,
                    };
                    submitted.amount == amount
                        && submitted.subject == subject
                        && same_code
                        && channel.is_none_or(|c| c == submitted.channel)
                }
                _ => false,
            };
            if !same {
                return Err(ApiError::new(
                    StatusCode::CONFLICT,
                    "order_no_conflict",
                    "a payment with this order_no exists with a different body",
                ));
            }
            (StatusCode::OK, history)
        }
        Err(error) => return Err(error.into()),
    };
    let history = match watch {
        Some(watch) => {
            // Answered before the request timeout cuts it off.
            let wait = Duration::from_secs(wait_secs).min(state.limits().wait_max());
            watch.settled(Some(history), wait).await?
        }
        None => history,
    };
    payment_response(status, &history)
}

/// `GET /v1/payments/{order_no}`
#[utoipa::path(
    get,
    path = "/v1/payments/{order_no}",
    tag = "payments",
    operation_id = "get_payment",
    summary = "Get a payment",
    description = "Reads the order's own log. Roles: payments, operator, auditor.",
    params(("order_no" = String, Path, pattern = r"^[A-Za-z0-9_-]{1,32}$", example = "A20261122-0001", description = "The merchant's order number (a malformed one is not found).")),
    responses(
        (status = 200, description = "The payment.", body = schemas::Payment),
        (status = 404, description = "`order_not_found`: no such order for this merchant (a malformed `order_no` too).", body = ErrorBody,
            example = json!({"error": {"code": "order_not_found", "message": "no order with this number", "field": null}})),
    ),
    security(("api_key" = [])),
)]
pub async fn get(
    State(state): State<AppState>,
    Extension(Merchant(merchant)): Extension<Merchant>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let Path(order_no_text) = path?;
    let order_no = OrderNo::parse(&order_no_text).map_err(|_| ApiError::not_found("order"))?;
    let history = state.runtime.ledger().history(&merchant, &order_no).await?;
    payment_response(StatusCode::OK, &history)
}

/// A page of payments, in `order_no` order.
#[derive(Debug, Serialize, ToSchema)]
pub struct PaymentPage {
    #[schema(value_type = Vec<schemas::Payment>)]
    pub data: Vec<PaymentView>,
    /// The `cursor` of the next page; `null` on the last page.
    #[schema(value_type = Option<String>, required = true)]
    pub next_cursor: Option<OrderNo>,
}

/// `GET /v1/payments?status=...&limit=...&cursor=...`
#[utoipa::path(
    get,
    path = "/v1/payments",
    tag = "payments",
    operation_id = "list_payments",
    summary = "List payments",
    description = "Payments in `order_no` order (byte order), from the stored read models, which \
follow the event log: an order created a moment ago may appear a moment later. `?status=manual_review` is \
the operators' queue. Roles: payments, operator, auditor.",
    params(
        ("status" = Option<schemas::PaymentStatus>, Query, description = "Only payments in this status."),
        ("limit" = Option<u64>, Query, minimum = 1, maximum = 200, description = "Payments per page, 1 to 200 (default 50)."),
        ("cursor" = Option<String>, Query, description = "The `next_cursor` of the previous page."),
    ),
    responses(
        (status = 200, description = "A page of payments.", body = PaymentPage),
        (status = 400, description = "`malformed_request`: an unknown query parameter, or a query string that cannot be decoded.", body = ErrorBody),
        (status = 422, description = "`invalid_status`, `invalid_limit`, `invalid_cursor`.", body = ErrorBody),
    ),
    security(("api_key" = [])),
)]
pub async fn list(
    State(state): State<AppState>,
    Extension(Merchant(merchant)): Extension<Merchant>,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let mut status = None;
    let mut limit = 50usize;
    let mut cursor = None;
    for (name, value) in query_params(query)? {
        match name.as_str() {
            "status" => {
                let parsed: paycode_domain::payment::PaymentStatus =
                    serde_json::from_value(Value::String(value)).map_err(|_| {
                        ApiError::invalid(
                            "status",
                            "invalid_status",
                            "status must be one of the payment statuses",
                        )
                    })?;
                status = Some(parsed);
            }
            "limit" => {
                limit = value
                    .parse()
                    .ok()
                    .filter(|n| (1..=200).contains(n))
                    .ok_or_else(|| {
                        ApiError::invalid("limit", "invalid_limit", "limit must be from 1 to 200")
                    })?;
            }
            "cursor" => {
                cursor = Some(order_no(&value).map_err(|_| {
                    ApiError::invalid(
                        "cursor",
                        "invalid_cursor",
                        "cursor is not one this API gave",
                    )
                })?);
            }
            other => {
                return Err(ApiError::malformed(format!(
                    "unknown query parameter {other:?}"
                )));
            }
        }
    }
    let page = state
        .index
        .page(&merchant, status, cursor.as_ref(), limit)
        .await
        .map_err(|error| {
            tracing::warn!(%error, "the order list could not be read");
            ApiError::unavailable("the order list could not be read just now; try again")
        })?;
    let mut data = Vec::with_capacity(page.order_nos.len());
    for order_no in &page.order_nos {
        let history = state.runtime.ledger().history(&merchant, order_no).await?;
        if let Some(view) = view(&history) {
            data.push(view);
        }
    }
    let page = PaymentPage {
        data,
        next_cursor: page.next_cursor,
    };
    Ok(axum::Json(page).into_response())
}

/// An order's history, oldest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct EventList {
    pub events: Vec<EventEntry>,
}

/// One event of an order.
#[derive(Debug, Serialize, ToSchema)]
pub struct EventEntry {
    /// The event's position in the order's stream, from 0.
    pub version: u64,
    /// The stored event name (docs/api.md, Events).
    #[serde(rename = "type")]
    #[schema(value_type = schemas::EventType)]
    pub event_type: Value,
    /// When the store appended it (UTC, RFC 3339).
    #[schema(value_type = String, format = DateTime)]
    pub recorded_at: chrono::DateTime<chrono::Utc>,
    /// The event: `at`, `command_id`, `key_name` (absent for the ledger's own steps), then its own fields.
    #[schema(value_type = Object)]
    pub data: Value,
    /// The payment's status once this event is applied.
    #[schema(value_type = Option<schemas::PaymentStatus>, required = true)]
    pub status_after: Option<paycode_domain::payment::PaymentStatus>,
}

/// `GET /v1/payments/{order_no}/events`
#[utoipa::path(
    get,
    path = "/v1/payments/{order_no}/events",
    tag = "payments",
    operation_id = "list_payment_events",
    summary = "An order's events",
    description = "The order's full history, oldest first. Roles: operator, auditor (and keys of `api_keys`).",
    params(("order_no" = String, Path, pattern = r"^[A-Za-z0-9_-]{1,32}$", example = "A20261122-0001", description = "The merchant's order number (a malformed one is not found).")),
    responses(
        (status = 200, description = "The order's events.", body = EventList,
            example = json!({"events": [{"version": 0, "type": "Submitted", "recorded_at": "2026-11-22T10:00:00.012Z",
                "data": {"at": "2026-11-22T10:00:00Z", "command_id": "0193...", "merchant_id": "demo"},
                "status_after": "paying"}]})),
        (status = 404, description = "`order_not_found`.", body = ErrorBody),
    ),
    security(("api_key" = [])),
)]
pub async fn events(
    State(state): State<AppState>,
    Extension(Merchant(merchant)): Extension<Merchant>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let Path(order_no_text) = path?;
    let order_no = OrderNo::parse(&order_no_text).map_err(|_| ApiError::not_found("order"))?;
    let history = state.runtime.ledger().history(&merchant, &order_no).await?;
    if history.events.is_empty() {
        return Err(ApiError::not_found("order"));
    }
    let statuses = statuses_after(history.events.iter().map(|recorded| &recorded.event));
    let events: Vec<EventEntry> = history
        .events
        .iter()
        .zip(statuses)
        .map(|(recorded, status_after)| {
            let mut data = serde_json::to_value(&recorded.event).unwrap_or(Value::Null);
            let event_type = data
                .as_object_mut()
                .and_then(|o| o.remove("type"))
                .unwrap_or(Value::Null);
            // An internal comparison key, not part of the API.
            if let Some(object) = data.as_object_mut() {
                object.remove("auth_code_fingerprint");
            }
            EventEntry {
                version: recorded.version,
                event_type,
                recorded_at: recorded.recorded_at,
                data,
                status_after,
            }
        })
        .collect();
    Ok(axum::Json(EventList { events }).into_response())
}

/// `POST /v1/payments/{order_no}/revoke`
#[utoipa::path(
    post,
    path = "/v1/payments/{order_no}/revoke",
    tag = "payments",
    operation_id = "revoke_payment",
    summary = "Revoke a payment",
    description = "Asks the channel to cancel the order: an unpaid order is closed, a paid one \
refunded in full, in the background. Revoking an order already `revoking` answers `202` again \
and changes nothing. The body is empty, or `{}`. Roles: payments, operator.",
    params(("order_no" = String, Path, pattern = r"^[A-Za-z0-9_-]{1,32}$", example = "A20261122-0001", description = "The merchant's order number (a malformed one is not found).")),
    request_body(content = Option<schemas::Revoke>, content_type = "application/json"),
    responses(
        (status = 202, description = "The payment, now `revoking`.", body = schemas::Payment),
        (status = 400, description = "`malformed_request`, `unknown_field`: a body other than empty or `{}`.", body = ErrorBody),
        (status = 404, description = "`order_not_found`.", body = ErrorBody),
        (status = 409, description = "`not_revocable` (closed, reversed, manual_review, or it has refunds), `revoke_window_closed` (refund instead).", body = ErrorBody),
        (status = 413, description = "`body_too_large`.", body = ErrorBody),
    ),
    security(("api_key" = [])),
)]
pub async fn revoke(
    State(state): State<AppState>,
    Extension(Merchant(merchant)): Extension<Merchant>,
    Extension(caller): Extension<Caller>,
    path: Result<Path<String>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let Path(order_no_text) = path?;
    let body = body_bytes(body)?;
    if !body.iter().all(u8::is_ascii_whitespace) {
        Fields::parse(&body, &[])?;
    }
    let order_no = OrderNo::parse(&order_no_text).map_err(|_| ApiError::not_found("order"))?;
    let command = Command::new(
        state.runtime.new_command_id(),
        CommandKind::RequestRevoke {
            reason: RevokeReason::MerchantRequested,
        },
    )
    .by_key(caller.key_name);
    let history = state.runtime.command(&merchant, &order_no, command).await?;
    payment_response(StatusCode::ACCEPTED, &history)
}

/// `POST /v1/payments/{order_no}/refunds`
#[utoipa::path(
    post,
    path = "/v1/payments/{order_no}/refunds",
    tag = "refunds",
    operation_id = "create_refund",
    summary = "Create a refund",
    description = "Idempotent on `refund_no`: the same body again answers `200` with the current \
refund. The rules are checked in this order: `order_not_found`, `not_refundable`, the \
`refund_no` already used (`200` or `refund_no_conflict`), `refund_window_closed`, \
`refund_limit_reached`, `refund_exceeds_balance`. Roles: payments, operator.",
    params(("order_no" = String, Path, pattern = r"^[A-Za-z0-9_-]{1,32}$", example = "A20261122-0001", description = "The merchant's order number (a malformed one is not found).")),
    request_body(content = schemas::CreateRefund, content_type = "application/json"),
    responses(
        (status = 201, description = "A new refund (status `pending`).", body = schemas::Refund),
        (status = 200, description = "The same request again: the current refund.", body = schemas::Refund),
        (status = 400, description = "`malformed_request`, `unknown_field`.", body = ErrorBody),
        (status = 404, description = "`order_not_found`.", body = ErrorBody),
        (status = 409, description = "`not_refundable`, `refund_no_conflict`, `refund_window_closed`, `refund_limit_reached`, `refund_exceeds_balance`.", body = ErrorBody,
            example = json!({"error": {"code": "refund_exceeds_balance", "message": "the refund is more than the refundable balance", "field": null}})),
        (status = 413, description = "`body_too_large`.", body = ErrorBody),
        (status = 422, description = "`missing_refund_no`, `invalid_refund_no`, `missing_amount`, `invalid_amount`, `invalid_reason`.", body = ErrorBody),
    ),
    security(("api_key" = [])),
)]
pub async fn create_refund(
    State(state): State<AppState>,
    Extension(Merchant(merchant)): Extension<Merchant>,
    Extension(caller): Extension<Caller>,
    path: Result<Path<String>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let Path(order_no_text) = path?;
    let order_no = OrderNo::parse(&order_no_text).map_err(|_| ApiError::not_found("order"))?;
    let body = body_bytes(body)?;
    let fields = Fields::parse(&body, &["refund_no", "amount", "reason"])?;
    let refund_no = RefundNo::parse(fields.string("refund_no")?)
        .map_err(|error| ApiError::invalid("refund_no", error.code(), error.to_string()))?;
    let amount: Money =
        fields
            .string("amount")?
            .parse()
            .map_err(|error: paycode_domain::MoneyError| {
                ApiError::invalid("amount", error.code(), error.to_string())
            })?;
    let reason = fields.optional_string("reason")?.unwrap_or("").to_owned();
    if reason.chars().count() > REASON_MAX_CHARS || reason.chars().any(char::is_control) {
        return Err(ApiError::invalid(
            "reason",
            "invalid_reason",
            format!("reason must be at most {REASON_MAX_CHARS} characters of text"),
        ));
    }
    let command = Command::new(
        state.runtime.new_command_id(),
        CommandKind::RequestRefund(RequestRefund {
            refund_no: refund_no.clone(),
            amount,
            reason: reason.clone(),
        }),
    )
    .by_key(caller.key_name);
    let (status, history) = match state.runtime.command(&merchant, &order_no, command).await {
        Ok(history) => (StatusCode::CREATED, history),
        Err(PaymentLedgerError::Rejected(paycode_domain::payment::Rejection::RefundNoInUse)) => {
            let history = state.runtime.ledger().history(&merchant, &order_no).await?;
            let existing = RefundView::find(&history.state, &refund_no);
            if !existing.is_some_and(|r| r.amount == amount && r.reason == reason) {
                return Err(ApiError::new(
                    StatusCode::CONFLICT,
                    "refund_no_conflict",
                    "a refund with this refund_no exists with a different body",
                ));
            }
            (StatusCode::OK, history)
        }
        Err(error) => return Err(error.into()),
    };
    let refund = RefundView::find(&history.state, &refund_no)
        .ok_or_else(|| ApiError::not_found("refund"))?;
    Ok((status, axum::Json(refund)).into_response())
}

/// `GET /v1/payments/{order_no}/refunds/{refund_no}`
#[utoipa::path(
    get,
    path = "/v1/payments/{order_no}/refunds/{refund_no}",
    tag = "refunds",
    operation_id = "get_refund",
    summary = "Get a refund",
    description = "Roles: payments, operator, auditor.",
    params(
        ("order_no" = String, Path, pattern = r"^[A-Za-z0-9_-]{1,32}$", example = "A20261122-0001", description = "The merchant's order number (a malformed one is not found)."),
        ("refund_no" = String, Path, pattern = r"^[A-Za-z0-9_-]{1,32}$", example = "R1", description = "The refund's number (a malformed one is not found)."),
    ),
    responses(
        (status = 200, description = "The refund.", body = schemas::Refund),
        (status = 404, description = "`order_not_found`, `refund_not_found`.", body = ErrorBody),
    ),
    security(("api_key" = [])),
)]
pub async fn get_refund(
    State(state): State<AppState>,
    Extension(Merchant(merchant)): Extension<Merchant>,
    path: Result<Path<(String, String)>, PathRejection>,
) -> Result<Response, ApiError> {
    let Path((order_no_text, refund_no_text)) = path?;
    let order_no = OrderNo::parse(&order_no_text).map_err(|_| ApiError::not_found("order"))?;
    let refund_no = RefundNo::parse(&refund_no_text).map_err(|_| ApiError::not_found("refund"))?;
    let history = state.runtime.ledger().history(&merchant, &order_no).await?;
    if history.events.is_empty() {
        return Err(ApiError::not_found("order"));
    }
    let refund = RefundView::find(&history.state, &refund_no)
        .ok_or_else(|| ApiError::not_found("refund"))?;
    Ok(axum::Json(refund).into_response())
}
