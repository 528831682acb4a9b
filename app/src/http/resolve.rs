//! Handlers of the operators' resolutions: `POST
//! /v1/payments/{order_no}/resolve` (answers the payment object) and `POST
//! /v1/payments/{order_no}/refunds/{refund_no}/resolve` (answers the refund
//! object). Only keys whose role allows `Permission::Resolve` (`operator`,
//! and the keys of `api_keys`) reach them (`auth::allow`). The body is
//! checked, then `service::resolve` decides and records `OperatorResolved`
//! with the key's name as `resolved_by`.

use axum::Extension;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use paycode_domain::{OrderNo, RefundNo};
use paycode_projections::RefundView;

use super::body::Fields;
use super::error::ApiError;
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
pub async fn order(
    State(state): State<AppState>,
    Extension(Merchant(merchant)): Extension<Merchant>,
    Extension(caller): Extension<Caller>,
    Path(order_no_text): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let order_no = OrderNo::parse(&order_no_text).map_err(|_| ApiError::not_found("order"))?;
    let verdict = verdict(Subject::Order, &body_bytes(body)?)?;
    let via = Via::Runtime(&state.runtime);
    let history = resolve::resolve(via, &merchant, &order_no, &verdict, &caller.key_name).await?;
    payment_response(StatusCode::OK, &history)
}

/// `POST /v1/payments/{order_no}/refunds/{refund_no}/resolve`
pub async fn refund(
    State(state): State<AppState>,
    Extension(Merchant(merchant)): Extension<Merchant>,
    Extension(caller): Extension<Caller>,
    Path((order_no_text, refund_no_text)): Path<(String, String)>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let order_no = OrderNo::parse(&order_no_text).map_err(|_| ApiError::not_found("order"))?;
    let refund_no = RefundNo::parse(&refund_no_text).map_err(|_| ApiError::not_found("refund"))?;
    let verdict = verdict(Subject::Refund(refund_no.clone()), &body_bytes(body)?)?;
    let via = Via::Runtime(&state.runtime);
    let history = resolve::resolve(via, &merchant, &order_no, &verdict, &caller.key_name).await?;
    let refund = RefundView::find(&history.state, &refund_no)
        .ok_or_else(|| ApiError::not_found("refund"))?;
    Ok((StatusCode::OK, axum::Json(refund)).into_response())
}
