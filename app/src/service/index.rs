//! Lists of orders, served from the stored read models (`order_status`
//! and `operator_queue`, kept current by the read-model runner): `GET
//! /v1/payments?status=`, the console's order list, review queue and
//! overview, and the manual-review gauge. Nothing per order is held in
//! memory: a page costs an index lookup in the read-model file, whatever
//! the number of orders. The lists may lag a write by a moment (the runner
//! follows the log); a single order is always read from its own stream.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use paycode_adapters::read_models::{ReadModelError, ReadModelStore};
use paycode_domain::payment::{ManualReviewReason, PaymentStatus};
use paycode_domain::{Channel, MerchantId, Money, OrderNo, RefundNo};
use paycode_projections::operator_queue::{OperatorQueue, ReviewItem, ReviewKey};
use paycode_projections::projection::Projection;

use crate::service::metrics::Metrics;

/// A page of order numbers, oldest-numbered first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    pub order_nos: Vec<OrderNo>,
    pub next_cursor: Option<OrderNo>,
}

/// A refund of a paid order that waits for an operator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefundReview {
    pub order_no: OrderNo,
    pub refund_no: RefundNo,
    pub channel: Channel,
    pub amount: Money,
    pub reason: ManualReviewReason,
    pub since: DateTime<Utc>,
}

/// Why a list could not be read.
#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    #[error(transparent)]
    ReadModels(#[from] ReadModelError),
    /// A stored row this program cannot read back (a bug, or a damaged file).
    #[error("read model {projection}: a stored row does not parse: {reason}")]
    Row {
        projection: &'static str,
        reason: String,
    },
    #[error("the read-model query task failed: {0}")]
    Task(String),
}

/// The order lists of one service. Without stored read models (a service
/// started with none) every list is empty.
#[derive(Debug, Clone, Default)]
pub struct OrderIndex {
    views: Option<Arc<dyn ReadModelStore>>,
}

impl OrderIndex {
    pub fn new(views: Option<Arc<dyn ReadModelStore>>) -> OrderIndex {
        OrderIndex { views }
    }

    /// Runs a query on the read-model file off the async threads.
    async fn query<T: Send + 'static>(
        &self,
        empty: T,
        query: impl FnOnce(&dyn ReadModelStore) -> Result<T, IndexError> + Send + 'static,
    ) -> Result<T, IndexError> {
        let Some(views) = self.views.clone() else {
            return Ok(empty);
        };
        tokio::task::spawn_blocking(move || query(views.as_ref()))
            .await
            .map_err(|error| IndexError::Task(error.to_string()))?
    }

    /// Up to `limit` of `merchant`'s order numbers after `after`, of one
    /// `status` or of any, with the cursor of the next page if there is one.
    pub async fn page(
        &self,
        merchant: &MerchantId,
        status: Option<PaymentStatus>,
        after: Option<&OrderNo>,
        limit: usize,
    ) -> Result<Page, IndexError> {
        let (merchant, after) = (merchant.to_string(), after.map(ToString::to_string));
        let stored = self
            .query(Vec::new(), move |views| {
                Ok(views.order_page(
                    &merchant,
                    status.map(PaymentStatus::as_str),
                    after.as_deref(),
                    limit.saturating_add(1),
                )?)
            })
            .await?;
        let mut order_nos = stored
            .iter()
            .map(|order_no| {
                OrderNo::parse(order_no).map_err(|error| IndexError::Row {
                    projection: "order_status",
                    reason: error.to_string(),
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let next_cursor = if order_nos.len() > limit {
            order_nos.truncate(limit);
            order_nos.last().cloned()
        } else {
            None
        };
        Ok(Page {
            order_nos,
            next_cursor,
        })
    }

    /// Every refund of `merchant` in manual review (its order stays `paid`
    /// or refunded, so the status lists do not show it), oldest first.
    pub async fn refund_reviews(
        &self,
        merchant: &MerchantId,
    ) -> Result<Vec<RefundReview>, IndexError> {
        let merchant = merchant.to_string();
        let mut reviews: Vec<RefundReview> = self
            .reviews(Some(merchant))
            .await?
            .into_iter()
            .filter_map(|(key, item)| {
                Some(RefundReview {
                    order_no: key.order_no,
                    refund_no: key.refund_no?,
                    channel: item.channel,
                    amount: item.amount,
                    reason: item.reason,
                    since: item.since,
                })
            })
            .collect();
        reviews.sort_by(|a, b| (a.since, &a.order_no).cmp(&(b.since, &b.order_no)));
        Ok(reviews)
    }

    /// The operator queue's rows, of one merchant or of all.
    async fn reviews(
        &self,
        merchant: Option<String>,
    ) -> Result<Vec<(ReviewKey, ReviewItem)>, IndexError> {
        self.query(Vec::new(), move |views| {
            views
                .merchant_rows(OperatorQueue::NAME, merchant.as_deref())?
                .iter()
                .map(|(key, row)| {
                    let parse_error = |error: serde_json::Error| IndexError::Row {
                        projection: OperatorQueue::NAME,
                        reason: error.to_string(),
                    };
                    Ok((
                        serde_json::from_str(key).map_err(parse_error)?,
                        serde_json::from_str(row).map_err(parse_error)?,
                    ))
                })
                .collect()
        })
        .await
    }

    /// How many of `merchant`'s orders submitted at or after `since` are in
    /// each status (the console's overview), by status name.
    pub async fn status_counts_since(
        &self,
        merchant: &MerchantId,
        since: DateTime<Utc>,
    ) -> Result<BTreeMap<String, u64>, IndexError> {
        let merchant = merchant.to_string();
        self.query(BTreeMap::new(), move |views| {
            Ok(views.order_status_counts(&merchant, since)?)
        })
        .await
    }

    /// Orders (of every merchant) in manual review.
    pub async fn manual_review_orders(&self) -> Result<u64, IndexError> {
        let reviews = self.reviews(None).await?;
        Ok(reviews
            .iter()
            .filter(|(key, _)| key.refund_no.is_none())
            .count() as u64)
    }

    /// Brings the manual-review gauge up to date (read when the metrics are).
    pub async fn refresh_gauge(&self, metrics: &Metrics) {
        match self.manual_review_orders().await {
            Ok(count) => {
                metrics
                    .manual_review_orders
                    .set(i64::try_from(count).unwrap_or(i64::MAX));
            }
            Err(error) => tracing::warn!(%error, "cannot count the orders in manual review"),
        }
    }
}
