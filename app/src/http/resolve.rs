//! Handlers of the operators' resolutions: `POST
//! /v1/payments/{order_no}/resolve` (answers the payment object) and `POST
//! /v1/payments/{order_no}/refunds/{refund_no}/resolve` (answers the refund
//! object). Only keys whose role allows `Permission::Resolve` (`operator`,
//! and the keys of `api_keys`) reach them (`auth::allow`). The body is
//! checked, then `service::resolve` decides and records `OperatorResolved`
//! with the key's name as `resolved_by`.

use axum::Extension;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use paycode_domain::{OrderNo, RefundNo};
use paycode_projections::RefundView;

use super::body::Fields;
use super::error::{ApiError, ErrorBody};
use super::openapi::schemas;
use super::payments::{body_bytes, payment_response};
use super::{AppState, Caller, Merchant};
use crate::service::resolve::{self, ResolveError, Subject, Verdict, Via, Words};

impl From<ResolveError> for ApiError {
    fn from(error: ResolveError) -> Self {
        match error {
            ResolveError::Invalid {
                field,
                code,
                message,
            } => ApiError::invalid(field, code, message),
            ResolveError::Contradicts { field, message } => {
                let mut error = ApiError::new(
                    StatusCode::CONFLICT,
                    "resolution_contradicts_ledger",
                    message,
                );
                error.field = Some(field.to_owned());
                error
            }
            ResolveError::Ledger(error) => error.into(),
        }
    }
}

/// The verdict of a body: `outcome`, `reason`, and for an order
/// `channel_trade_no` and `paid_at`, for a refund `refunded_at`.
fn verdict(subject: Subject, body: &[u8]) -> Result<Verdict, ApiError> {
    let time_field = subject.time_field();
    let allowed: &[&str] = match subject {
        Subject::Order => &["outcome", "channel_trade_no", "paid_at", "reason"],
        Subject::Refund(_) => &["outcome", "refunded_at", "reason"],
    };
    let fields = Fields::parse(body, allowed)?;
    let words = Words {
        outcome: fields.optional_string("outcome")?,
        channel_trade_no: match subject {
            Subject::Order => fields.optional_string("channel_trade_no")?,
            Subject::Refund(_) => None,
        },
        at: fields.optional_string(time_field)?,
        reason: fields.optional_string("reason")?,
    };
    Ok(Verdict::parse(subject, words)?)
}

/// `POST /v1/payments/{order_no}/resolve`
#[utoipa::path(
    post,
    path = "/v1/payments/{order_no}/resolve",
    tag = "operator resolution",
    operation_id = "resolve_payment",
    summary = "Resolve an order in manual review",
    description = "Records what the channel shows as `OperatorResolved`, with the operator's \
reason and the key's name; calls nothing and moves no money. Not idempotent: repeating it \
answers `409 not_in_review`. The rules are checked in this order: the body, \
`order_not_found`, `not_in_review`, `invalid_paid_at`, `resolution_contradicts_ledger`. \
Roles: operator (and keys of `api_keys`).",
    params(("order_no" = String, Path, pattern = r"^[A-Za-z0-9_-]{1,32}$", example = "A20261122-0001", description = "The merchant's order number (a malformed one is not found).")),
    request_body(content = schemas::ResolveOrder, content_type = "application/json"),
    responses(
        (status = 200, description = "The payment, resolved: `paid`, `closed` or `reversed`.", body = schemas::Payment),
        (status = 400, description = "`malformed_request`, `unknown_field`.", body = ErrorBody),
        (status = 404, description = "`order_not_found`.", body = ErrorBody),
        (status = 409, description = "`not_in_review`, `resolution_contradicts_ledger` (`field` names the part).", body = ErrorBody),
        (status = 413, description = "`body_too_large`.", body = ErrorBody),
        (status = 422, description = "`missing_outcome`, `invalid_outcome`, `missing_channel_trade_no`, `invalid_channel_trade_no`, `invalid_paid_at`, `missing_reason`, `invalid_reason`.", body = ErrorBody),
    ),
    security(("api_key" = [])),
)]
pub async fn order(
    State(state): State<AppState>,
    Extension(Merchant(merchant)): Extension<Merchant>,
    Extension(caller): Extension<Caller>,
    path: Result<Path<String>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let Path(order_no_text) = path?;
    let order_no = OrderNo::parse(&order_no_text).map_err(|_| ApiError::not_found("order"))?;
    let verdict = verdict(Subject::Order, &body_bytes(body)?)?;
    let via = Via::Runtime(&state.runtime);
    let history = resolve::resolve(via, &merchant, &order_no, &verdict, &caller.key_name).await?;
    payment_response(StatusCode::OK, &history)
}

/// `POST /v1/payments/{order_no}/refunds/{refund_no}/resolve`
#[utoipa::path(
    post,
    path = "/v1/payments/{order_no}/refunds/{refund_no}/resolve",
    tag = "operator resolution",
    operation_id = "resolve_refund",
    summary = "Resolve a refund in manual review",
    description = "`succeeded` counts the refund in the payment's `refunded_amount`; `failed` \
makes its amount refundable again (under a new `refund_no`). Not idempotent. Roles: operator \
(and keys of `api_keys`).",
    params(
        ("order_no" = String, Path, pattern = r"^[A-Za-z0-9_-]{1,32}$", example = "A20261122-0001", description = "The merchant's order number (a malformed one is not found)."),
        ("refund_no" = String, Path, pattern = r"^[A-Za-z0-9_-]{1,32}$", example = "R1", description = "The refund's number (a malformed one is not found)."),
    ),
    request_body(content = schemas::ResolveRefund, content_type = "application/json"),
    responses(
        (status = 200, description = "The refund, resolved: `succeeded` or `failed`.", body = schemas::Refund),
        (status = 400, description = "`malformed_request`, `unknown_field`.", body = ErrorBody),
        (status = 404, description = "`order_not_found`, `refund_not_found`.", body = ErrorBody),
        (status = 409, description = "`not_in_review`.", body = ErrorBody),
        (status = 413, description = "`body_too_large`.", body = ErrorBody),
        (status = 422, description = "`missing_outcome`, `invalid_outcome`, `invalid_refunded_at`, `missing_reason`, `invalid_reason`.", body = ErrorBody),
    ),
    security(("api_key" = [])),
)]
pub async fn refund(
    State(state): State<AppState>,
    Extension(Merchant(merchant)): Extension<Merchant>,
    Extension(caller): Extension<Caller>,
    path: Result<Path<(String, String)>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let Path((order_no_text, refund_no_text)) = path?;
    let order_no = OrderNo::parse(&order_no_text).map_err(|_| ApiError::not_found("order"))?;
    let refund_no = RefundNo::parse(&refund_no_text).map_err(|_| ApiError::not_found("refund"))?;
    let verdict = verdict(Subject::Refund(refund_no.clone()), &body_bytes(body)?)?;
    let via = Via::Runtime(&state.runtime);
    let history = resolve::resolve(via, &merchant, &order_no, &verdict, &caller.key_name).await?;
    let refund = RefundView::find(&history.state, &refund_no)
        .ok_or_else(|| ApiError::not_found("refund"))?;
    Ok((StatusCode::OK, axum::Json(refund)).into_response())
}
