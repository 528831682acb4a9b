//! Handlers of `/v1/reconciliations`: reconcile a day (the statement
//! downloaded from the channel, or uploaded as the raw body) and read the
//! latest report. The logic is in [`crate::service::reconcile`].
//!
//! One import at a time per merchant: a second one while the first runs is
//! answered `409 reconciliation_in_progress` before its body is read. An
//! upload is read as a stream into one buffer (sized by its
//! `Content-Length`, at most [`STATEMENT_LIMIT_BYTES`]; `413` beyond),
//! never held twice.

use axum::Extension;
use axum::body::Body;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::NaiveDate;
use paycode_adapters::channel::StatementFile;
use paycode_domain::Channel;
use serde_json::json;

use super::body::Fields;
use super::error::{ApiError, ErrorBody};
use super::openapi::schemas;
use super::{AppState, Caller, Merchant};
use crate::service::reconcile::{self, Imported, ReconcileError};

/// The largest statement file accepted as an upload.
pub const STATEMENT_LIMIT_BYTES: usize = 256 * 1024 * 1024;

/// Reads a request body of at most `limit` bytes into one buffer, chunk by
/// chunk: `413 body_too_large` as soon as it is known to be larger (from its
/// `Content-Length`, or while it streams).
async fn read_body(headers: &HeaderMap, body: Body, limit: usize) -> Result<Vec<u8>, ApiError> {
    use http_body_util::BodyExt as _;
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            format!("the body must be at most {limit} bytes"),
        )
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<usize>().ok());
    if declared.is_some_and(|length| length > limit) {
        return Err(too_large());
    }
    let mut buffer = Vec::with_capacity(declared.unwrap_or(0));
    let mut body = body;
    while let Some(frame) = body.frame().await {
        let frame =
            frame.map_err(|error| ApiError::malformed(format!("reading the body: {error}")))?;
        if let Ok(data) = frame.into_data() {
            if buffer.len() + data.len() > limit {
                return Err(too_large());
            }
            buffer.extend_from_slice(&data);
        }
    }
    Ok(buffer)
}

fn channel(text: &str) -> Result<Channel, ApiError> {
    Channel::parse(text).ok_or_else(|| {
        ApiError::invalid(
            "channel",
            "invalid_channel",
            "channel must be \"wechat\" or \"alipay\"",
        )
    })
}

fn date(text: &str) -> Result<NaiveDate, ApiError> {
    NaiveDate::parse_from_str(text, "%Y-%m-%d").map_err(|_| {
        ApiError::invalid(
            "date",
            "invalid_date",
            "date must be a calendar day as YYYY-MM-DD (China time)",
        )
    })
}

impl From<ReconcileError> for ApiError {
    fn from(error: ReconcileError) -> Self {
        match error {
            ReconcileError::Statement(error) => {
                ApiError::invalid("statement", "statement_rejected", error.to_string())
            }
            ReconcileError::Download(error) => ApiError::new(
                StatusCode::BAD_GATEWAY,
                "statement_unavailable",
                format!("{error}; try again later"),
            ),
            ReconcileError::NoChannel { .. } => {
                ApiError::invalid("channel", "channel_not_configured", error.to_string())
            }
            ReconcileError::Ledger(error) => error.into(),
        }
    }
}

fn report_response(imported: Imported) -> Response {
    let mut body = serde_json::to_value(&imported.report).unwrap_or_default();
    if let Some(object) = body.as_object_mut() {
        object.insert("lines_recorded".into(), json!(imported.lines_recorded));
        object.insert("report_recorded".into(), json!(imported.report_recorded));
    }
    (StatusCode::OK, axum::Json(body)).into_response()
}

/// `POST /v1/reconciliations`: `{"channel", "date"}` to download the day's
/// statement, or the statement itself as the body (`text/csv` for WeChat,
/// `application/zip` for Alipay) with `?channel=&date=`.
#[utoipa::path(
    post,
    path = "/v1/reconciliations",
    tag = "reconciliation",
    operation_id = "reconcile",
    summary = "Reconcile a day",
    description = "With a JSON body (or no content type), downloads the day's statement from the \
channel, then reconciles it; with the statement itself as the body (`text/csv` for WeChat, \
`application/zip` for Alipay, up to 256 MiB) and `?channel=&date=`, reconciles the upload. \
One reconciliation runs at a time per merchant. Importing the same file twice changes \
nothing. Roles: reconciliation.",
    params(
        ("channel" = Option<schemas::Channel>, Query, description = "Uploads only (required there): the statement's channel."),
        ("date" = Option<String>, Query, format = Date, description = "Uploads only (required there): the statement's day, China time, `YYYY-MM-DD`."),
    ),
    request_body(content(
        (schemas::Reconcile = "application/json"),
        (String = "text/csv"),
        (Vec<u8> = "application/zip"),
    )),
    responses(
        (status = 200, description = "The report.", body = schemas::ImportReport),
        (status = 400, description = "`malformed_request`, `unknown_field`.", body = ErrorBody),
        (status = 409, description = "`reconciliation_in_progress`: another reconciliation of this merchant is running; `Retry-After: 1`.", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait before retrying."))),
        (status = 413, description = "`body_too_large`: a JSON body over 16 KiB, an upload over 256 MiB.", body = ErrorBody),
        (status = 422, description = "`missing_channel`, `invalid_channel`, `channel_not_configured`, `missing_date`, `invalid_date`, `invalid_content_type` (`field` is `content_type`), `statement_rejected` (`field` is `statement`).", body = ErrorBody),
        (status = 502, description = "`statement_unavailable`: the channel did not hand out the statement; try later.", body = ErrorBody),
    ),
    security(("api_key" = [])),
)]
pub async fn create(
    State(state): State<AppState>,
    Extension(Merchant(merchant)): Extension<Merchant>,
    Extension(caller): Extension<Caller>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let _import = state.begin_import(&merchant).ok_or_else(|| {
        ApiError::new(
            StatusCode::CONFLICT,
            "reconciliation_in_progress",
            "a reconciliation of this merchant is under way; retry when it has answered",
        )
        .retry_after(1)
    })?;
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .map(|value| {
            value
                .split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
        .unwrap_or_default();
    let ledger = state.runtime.ledger();
    let imported = match content_type.as_str() {
        "text/csv" | "application/zip" => {
            let params: Vec<(String, String)> =
                serde_urlencoded::from_str(query.as_deref().unwrap_or(""))
                    .map_err(|_| ApiError::malformed("the query string is malformed"))?;
            let mut channel_param = None;
            let mut date_param = None;
            for (name, value) in params {
                match name.as_str() {
                    "channel" => channel_param = Some(channel(&value)?),
                    "date" => date_param = Some(date(&value)?),
                    other => {
                        return Err(ApiError::malformed(format!(
                            "unknown query parameter {other:?}"
                        )));
                    }
                }
            }
            let channel = channel_param.ok_or_else(|| {
                ApiError::invalid("channel", "missing_channel", "?channel= is required")
            })?;
            let date = date_param
                .ok_or_else(|| ApiError::invalid("date", "missing_date", "?date= is required"))?;
            let expected = match channel {
                Channel::Wechat => "text/csv",
                Channel::Alipay => "application/zip",
            };
            if content_type != expected {
                return Err(ApiError::invalid(
                    "content_type",
                    "invalid_content_type",
                    match channel {
                        Channel::Wechat => "a WeChat bill is uploaded as text/csv",
                        Channel::Alipay => "an Alipay statement is uploaded as application/zip",
                    },
                ));
            }
            let body = read_body(&headers, body, STATEMENT_LIMIT_BYTES).await?;
            let file = match channel {
                Channel::Wechat => {
                    StatementFile::WechatText(String::from_utf8(body).map_err(|_| {
                        ApiError::invalid(
                            "statement",
                            "statement_rejected",
                            "a WeChat bill must be UTF-8 text",
                        )
                    })?)
                }
                Channel::Alipay => StatementFile::AlipayZip(body),
            };
            reconcile::import(
                ledger,
                &merchant,
                channel,
                date,
                file,
                Some(&caller.key_name),
            )
            .await?
        }
        "" | "application/json" => {
            let body = read_body(&headers, body, super::BODY_LIMIT_BYTES).await?;
            let fields = Fields::parse(&body, &["channel", "date"])?;
            let channel = channel(fields.string("channel")?)?;
            let date = date(fields.string("date")?)?;
            let client = state
                .runtime
                .channel_client(&merchant, channel)
                .ok_or_else(|| ReconcileError::NoChannel {
                    channel,
                    merchant: merchant.clone(),
                })?;
            reconcile::download_and_import(
                ledger,
                client.as_ref(),
                &merchant,
                date,
                Some(&caller.key_name),
            )
            .await?
        }
        other => {
            return Err(ApiError::invalid(
                "content_type",
                "invalid_content_type",
                format!(
                    "content type {other:?}: use application/json to download, or text/csv / application/zip to upload"
                ),
            ));
        }
    };
    Ok(report_response(imported))
}

/// `GET /v1/reconciliations/{channel}/{date}`: the latest report.
#[utoipa::path(
    get,
    path = "/v1/reconciliations/{channel}/{date}",
    tag = "reconciliation",
    operation_id = "get_reconciliation",
    summary = "Read a report",
    description = "The latest report recorded for that channel, day and merchant. Roles: operator, auditor, reconciliation.",
    params(
        ("channel" = schemas::Channel, Path, example = "wechat", description = "`wechat` or `alipay`."),
        ("date" = String, Path, format = Date, example = "2026-11-21", description = "The statement's day, China time, `YYYY-MM-DD`."),
    ),
    responses(
        (status = 200, description = "The latest report.", body = schemas::Report),
        (status = 404, description = "`reconciliation_not_found`.", body = ErrorBody),
        (status = 422, description = "`invalid_channel`, `invalid_date`: a malformed path.", body = ErrorBody),
    ),
    security(("api_key" = [])),
)]
pub async fn get(
    State(state): State<AppState>,
    Extension(Merchant(merchant)): Extension<Merchant>,
    path: Result<Path<(String, String)>, PathRejection>,
) -> Result<Response, ApiError> {
    let Path((channel_text, date_text)) = path?;
    let channel = channel(&channel_text)?;
    let date = date(&date_text)?;
    let report = reconcile::latest(state.runtime.ledger(), &merchant, channel, date)
        .await?
        .ok_or_else(|| ApiError::not_found("reconciliation"))?;
    Ok((StatusCode::OK, axum::Json(report)).into_response())
}
