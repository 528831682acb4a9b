//! The API's error shape: `{"error": {"code", "message", "field"}}` with the
//! status codes of docs/api.md. Every failure of a handler becomes one of these.

use axum::extract::path::ErrorKind;
use axum::extract::rejection::PathRejection;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use paycode_adapters::store::StoreError;
use paycode_domain::payment::Rejection;
use serde::Serialize;
use utoipa::ToSchema;

use crate::service::ledger::PaymentLedgerError;

/// Every error's body: `{"error": {"code", "message", "field"}}`.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"error": {"code": "invalid_amount", "message": "amount must have at most 2 decimal places", "field": "amount"}}))]
pub struct ErrorBody<'a> {
    pub error: ErrorDetail<'a>,
}

/// What went wrong.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail<'a> {
    /// Stable, for programs: branch on it (docs/api.md lists every code).
    pub code: &'a str,
    /// For a person; may change.
    pub message: &'a str,
    /// The request field (or query parameter) at fault; `null` when no single field is.
    #[schema(required = true)]
    pub field: Option<&'a str>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: String,
    pub message: String,
    pub field: Option<String>,
    /// `Retry-After` in seconds; `503` and `429` answers without one say 1.
    pub retry_after_secs: Option<u64>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: impl Into<String>, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code: code.into(),
            message: message.into(),
            field: None,
            retry_after_secs: None,
        }
    }

    /// The same error, telling the client to retry after `secs` seconds.
    #[must_use]
    pub fn retry_after(mut self, secs: u64) -> Self {
        self.retry_after_secs = Some(secs);
        self
    }

    /// 422: one field is invalid.
    pub fn invalid(field: &str, code: impl Into<String>, message: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            code: code.into(),
            message: message.into(),
            field: Some(field.to_owned()),
            retry_after_secs: None,
        }
    }

    /// 400: the body is not the JSON object expected.
    pub fn malformed(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, "malformed_request", message)
    }

    pub fn unauthorized() -> Self {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "a valid Authorization: Bearer <api key> header is required",
        )
    }

    /// 403: the key may not make this request (its role does not allow
    /// it); `message` says which role and what it does not allow.
    pub fn forbidden(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    pub fn not_found(what: &str) -> Self {
        ApiError::new(
            StatusCode::NOT_FOUND,
            format!("{what}_not_found"),
            format!("no {what} with this number"),
        )
    }

    pub fn unavailable(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", message)
    }
}

impl From<Rejection> for ApiError {
    fn from(rejection: Rejection) -> Self {
        let status = match rejection {
            Rejection::OrderNotFound | Rejection::RefundNotFound => StatusCode::NOT_FOUND,
            _ => StatusCode::CONFLICT,
        };
        ApiError::new(status, rejection.code(), rejection.to_string())
    }
}

/// A path whose parameter cannot be read (percent-encoded bytes that are not
/// UTF-8) answers as a malformed value of that parameter does: an order or
/// refund number `404` (no such order or refund), a channel or day `422`.
impl From<PathRejection> for ApiError {
    fn from(rejection: PathRejection) -> Self {
        let key = match &rejection {
            PathRejection::FailedToDeserializePathParams(error) => match error.kind() {
                ErrorKind::InvalidUtf8InPathParam { key }
                | ErrorKind::ParseErrorAtKey { key, .. }
                | ErrorKind::DeserializeError { key, .. } => Some(key.as_str()),
                _ => None,
            },
            _ => None,
        };
        match key {
            Some("refund_no") => ApiError::not_found("refund"),
            Some("channel") => ApiError::invalid(
                "channel",
                "invalid_channel",
                "channel must be \"wechat\" or \"alipay\"",
            ),
            Some("date") => ApiError::invalid(
                "date",
                "invalid_date",
                "date must be a calendar day as YYYY-MM-DD (China time)",
            ),
            _ => ApiError::not_found("order"),
        }
    }
}

impl From<PaymentLedgerError> for ApiError {
    fn from(error: PaymentLedgerError) -> Self {
        match error {
            PaymentLedgerError::Rejected(rejection) => rejection.into(),
            PaymentLedgerError::Store(StoreError::Unavailable(_))
            | PaymentLedgerError::Contention { .. } => {
                ApiError::unavailable("the event store is unavailable; retry the same request")
            }
            PaymentLedgerError::Store(StoreError::Conflict { .. }) => {
                ApiError::unavailable("the order changed concurrently; retry the same request")
            }
            other => {
                tracing::error!(error = %other, "internal error");
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "internal error; an operator has been told",
                )
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: ErrorDetail {
                code: &self.code,
                message: &self.message,
                field: self.field.as_deref(),
            },
        };
        let mut response = (self.status, axum::Json(body)).into_response();
        let retry_after = self.retry_after_secs.or_else(|| {
            (self.status == StatusCode::SERVICE_UNAVAILABLE
                || self.status == StatusCode::TOO_MANY_REQUESTS)
                .then_some(1)
        });
        if let Some(secs) = retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}
