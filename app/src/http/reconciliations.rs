//! Handlers of `/v1/reconciliations`: reconcile a day (the statement
//! downloaded from the channel, or uploaded as the raw body) and read the
//! latest report. The logic is in [`crate::service::reconcile`].

use axum::Extension;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::NaiveDate;
use paycode_adapters::channel::StatementFile;
use paycode_domain::Channel;
use serde_json::json;

use super::body::Fields;
use super::error::ApiError;
use super::{AppState, Caller, Merchant};
use crate::service::reconcile::{self, Imported, ReconcileError};

/// The largest statement file accepted as an upload.
pub const STATEMENT_LIMIT_BYTES: usize = 256 * 1024 * 1024;

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
pub async fn create(
    State(state): State<AppState>,
    Extension(Merchant(merchant)): Extension<Merchant>,
    Extension(caller): Extension<Caller>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body = body.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body_too_large",
                format!("a statement must be at most {STATEMENT_LIMIT_BYTES} bytes"),
            )
        } else {
            ApiError::malformed(rejection.body_text())
        }
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
            let file = match (channel, content_type.as_str()) {
                (Channel::Wechat, "text/csv") => {
                    StatementFile::WechatText(String::from_utf8(body.to_vec()).map_err(|_| {
                        ApiError::invalid(
                            "statement",
                            "statement_rejected",
                            "a WeChat bill must be UTF-8 text",
                        )
                    })?)
                }
                (Channel::Alipay, "application/zip") => StatementFile::AlipayZip(body.to_vec()),
                (Channel::Wechat, _) => {
                    return Err(ApiError::invalid(
                        "content_type",
                        "invalid_content_type",
                        "a WeChat bill is uploaded as text/csv",
                    ));
                }
                (Channel::Alipay, _) => {
                    return Err(ApiError::invalid(
                        "content_type",
                        "invalid_content_type",
                        "an Alipay statement is uploaded as application/zip",
                    ));
                }
            };
            reconcile::import(
                ledger,
                &merchant,
                channel,
                date,
                &file,
                Some(&caller.key_name),
            )
            .await?
        }
        "" | "application/json" => {
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
pub async fn get(
    State(state): State<AppState>,
    Extension(Merchant(merchant)): Extension<Merchant>,
    Path((channel_text, date_text)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let channel = channel(&channel_text)?;
    let date = date(&date_text)?;
    let report = reconcile::latest(state.runtime.ledger(), &merchant, channel, date)
        .await?
        .ok_or_else(|| ApiError::not_found("reconciliation"))?;
    Ok((StatusCode::OK, axum::Json(report)).into_response())
}
