//! Handlers of `/v1/payments`: create (idempotent on `order_no`), read, list,
//! history, revoke, refunds (idempotent on `refund_no`).

use std::time::Duration;

use axum::Extension;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use paycode_domain::ids::payment_stream;
use paycode_domain::payment::{
    Command, CommandKind, Fact, RequestRefund, RevokeReason, SubmitPayment,
};
use paycode_domain::{AuthCode, Channel, Currency, Money, OrderNo, RefundNo};
use paycode_projections::{PaymentView, RefundView, statuses_after};
use serde_json::{Value, json};

use super::body::Fields;
use super::error::ApiError;
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
    let history = if wait_secs > 0 {
        // Answered before the request timeout cuts it off.
        let wait = Duration::from_secs(wait_secs).min(state.limits().wait_max());
        runtime.wait_settled(&stream, wait).await?
    } else {
        history
    };
    payment_response(status, &history)
}

/// `GET /v1/payments/{order_no}`
pub async fn get(
    State(state): State<AppState>,
    Extension(Merchant(merchant)): Extension<Merchant>,
    Path(order_no_text): Path<String>,
) -> Result<Response, ApiError> {
    let order_no = OrderNo::parse(&order_no_text).map_err(|_| ApiError::not_found("order"))?;
    let history = state.runtime.ledger().history(&merchant, &order_no).await?;
    payment_response(StatusCode::OK, &history)
}

/// `GET /v1/payments?status=...&limit=...&cursor=...`
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
    let index = state.index.clone();
    let page = index.page(&merchant, status, cursor.as_ref(), limit);
    let mut data = Vec::with_capacity(page.order_nos.len());
    for order_no in &page.order_nos {
        let history = state.runtime.ledger().history(&merchant, order_no).await?;
        if let Some(view) = view(&history) {
            data.push(view);
        }
    }
    Ok(axum::Json(json!({"data": data, "next_cursor": page.next_cursor})).into_response())
}

/// `GET /v1/payments/{order_no}/events`
pub async fn events(
    State(state): State<AppState>,
    Extension(Merchant(merchant)): Extension<Merchant>,
    Path(order_no_text): Path<String>,
) -> Result<Response, ApiError> {
    let order_no = OrderNo::parse(&order_no_text).map_err(|_| ApiError::not_found("order"))?;
    let history = state.runtime.ledger().history(&merchant, &order_no).await?;
    if history.events.is_empty() {
        return Err(ApiError::not_found("order"));
    }
    let statuses = statuses_after(history.events.iter().map(|recorded| &recorded.event));
    let events: Vec<Value> = history
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
            json!({
                "version": recorded.version,
                "type": event_type,
                "recorded_at": recorded.recorded_at,
                "data": data,
                "status_after": status_after,
            })
        })
        .collect();
    Ok(axum::Json(json!({"events": events})).into_response())
}

/// `POST /v1/payments/{order_no}/revoke`
pub async fn revoke(
    State(state): State<AppState>,
    Extension(Merchant(merchant)): Extension<Merchant>,
    Extension(caller): Extension<Caller>,
    Path(order_no_text): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
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
pub async fn create_refund(
    State(state): State<AppState>,
    Extension(Merchant(merchant)): Extension<Merchant>,
    Extension(caller): Extension<Caller>,
    Path(order_no_text): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
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
pub async fn get_refund(
    State(state): State<AppState>,
    Extension(Merchant(merchant)): Extension<Merchant>,
    Path((order_no_text, refund_no_text)): Path<(String, String)>,
) -> Result<Response, ApiError> {
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
