//! An in-memory index of orders by merchant and status, kept current by
//! following the store's global order. It serves `GET /v1/payments?status=`
//! and the manual-review gauge. It may lag a write by a moment; single-order
//! reads go to the stream itself.

use std::collections::{BTreeSet, HashMap};
use std::ops::Bound;
use std::sync::{Arc, Mutex};

use paycode_adapters::store::{EventStore, Follower, StoreError};
use paycode_domain::ids::parse_payment_stream;
use paycode_domain::payment::{Event, PaymentState, PaymentStatus, evolve};
use paycode_domain::{MerchantId, OrderNo};
use tracing::warn;

use crate::service::metrics::Metrics;

#[derive(Debug, Default)]
struct Entries {
    states: HashMap<String, (MerchantId, OrderNo, PaymentState)>,
    by_status: BTreeSet<(MerchantId, &'static str, OrderNo)>,
    by_merchant: BTreeSet<(MerchantId, OrderNo)>,
    manual_review: i64,
}

/// A page of order numbers, oldest-numbered first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    pub order_nos: Vec<OrderNo>,
    pub next_cursor: Option<OrderNo>,
}

#[derive(Debug, Default)]
pub struct OrderIndex {
    entries: Mutex<Entries>,
}

impl OrderIndex {
    /// Follows `store` from the first event until the future is dropped.
    pub async fn follow(
        self: Arc<Self>,
        store: Arc<dyn EventStore>,
        metrics: Metrics,
    ) -> Result<(), StoreError> {
        let mut follower = Follower::new(store, 1);
        loop {
            let batch = follower.next_batch(1_000).await?;
            let mut entries = self.entries.lock().expect("index lock");
            for record in batch {
                let Some((merchant, order_no)) = parse_payment_stream(&record.stream) else {
                    continue;
                };
                let event = match record.decode::<Event>() {
                    Ok(event) => event,
                    Err(error) => {
                        warn!(%error, stream = record.stream, "index skips an undecodable event");
                        continue;
                    }
                };
                entries.apply(record.stream, merchant, order_no, &event);
            }
            metrics.manual_review_orders.set(entries.manual_review);
        }
    }

    pub fn page(
        &self,
        merchant: &MerchantId,
        status: Option<PaymentStatus>,
        after: Option<&OrderNo>,
        limit: usize,
    ) -> Page {
        let entries = self.entries.lock().expect("index lock");
        let mut order_nos: Vec<OrderNo> = if let Some(status) = status {
            let start = match after {
                Some(cursor) => {
                    Bound::Excluded((merchant.clone(), status.as_str(), cursor.clone()))
                }
                None => Bound::Unbounded,
            };
            entries
                .by_status
                .range((start, Bound::Unbounded))
                .skip_while(|(m, s, _)| m < merchant || (m == merchant && *s < status.as_str()))
                .take_while(|(m, s, _)| m == merchant && *s == status.as_str())
                .take(limit + 1)
                .map(|(_, _, order_no)| order_no.clone())
                .collect()
        } else {
            let start = match after {
                Some(cursor) => Bound::Excluded((merchant.clone(), cursor.clone())),
                None => Bound::Unbounded,
            };
            entries
                .by_merchant
                .range((start, Bound::Unbounded))
                .skip_while(|(m, _)| m < merchant)
                .take_while(|(m, _)| m == merchant)
                .take(limit + 1)
                .map(|(_, order_no)| order_no.clone())
                .collect()
        };
        let next_cursor = if order_nos.len() > limit {
            order_nos.truncate(limit);
            order_nos.last().cloned()
        } else {
            None
        };
        Page {
            order_nos,
            next_cursor,
        }
    }
}

/// A refund of a paid order that waits for an operator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefundReview {
    pub order_no: OrderNo,
    pub refund_no: paycode_domain::RefundNo,
    pub channel: paycode_domain::Channel,
    pub amount: paycode_domain::Money,
    pub reason: paycode_domain::payment::ManualReviewReason,
    pub since: chrono::DateTime<chrono::Utc>,
}

impl OrderIndex {
    /// Every refund of `merchant` in manual review (its order stays `paid`
    /// or refunded, so the status index does not list it), from memory.
    pub fn refund_reviews(&self, merchant: &MerchantId) -> Vec<RefundReview> {
        let entries = self.entries.lock().expect("index lock");
        let mut reviews = Vec::new();
        for (owner, order_no, state) in entries.states.values() {
            let PaymentState::Paid(paid) = state else {
                continue;
            };
            if owner != merchant {
                continue;
            }
            for refund in &paid.refunds {
                if let paycode_domain::payment::RefundStage::ManualReview { reason, since } =
                    &refund.stage
                {
                    reviews.push(RefundReview {
                        order_no: order_no.clone(),
                        refund_no: refund.refund_no.clone(),
                        channel: paid.order.channel,
                        amount: refund.amount,
                        reason: reason.clone(),
                        since: *since,
                    });
                }
            }
        }
        reviews
    }

    /// How many of `merchant`'s orders submitted at or after `since` are in
    /// each status (the console's overview), by status name.
    pub fn status_counts_since(
        &self,
        merchant: &MerchantId,
        since: chrono::DateTime<chrono::Utc>,
    ) -> std::collections::BTreeMap<&'static str, usize> {
        let entries = self.entries.lock().expect("index lock");
        let mut counts = std::collections::BTreeMap::new();
        for (owner, _, state) in entries.states.values() {
            if owner != merchant {
                continue;
            }
            let (Some(order), Some(status)) = (state.order(), state.status()) else {
                continue;
            };
            if order.submitted_at >= since {
                *counts.entry(status.as_str()).or_insert(0) += 1;
            }
        }
        counts
    }
}

impl Entries {
    fn apply(
        &mut self,
        stream: String,
        merchant: MerchantId,
        order_no: OrderNo,
        event: &paycode_domain::payment::Event,
    ) {
        let (_, _, state) = self
            .states
            .entry(stream)
            .or_insert_with(|| (merchant.clone(), order_no.clone(), PaymentState::Initial));
        let before = state.status();
        // An event `evolve` refuses leaves the order as it was, as in the
        // stored read models; `paycode verify` names it.
        *state = evolve(std::mem::replace(state, PaymentState::Initial), event)
            .unwrap_or_else(|refused| refused.state);
        let after = state.status();
        if before == after {
            return;
        }
        if let Some(before) = before {
            self.by_status
                .remove(&(merchant.clone(), before.as_str(), order_no.clone()));
            if before == PaymentStatus::ManualReview {
                self.manual_review -= 1;
            }
        }
        if let Some(after) = after {
            self.by_status
                .insert((merchant.clone(), after.as_str(), order_no.clone()));
            self.by_merchant.insert((merchant, order_no));
            if after == PaymentStatus::ManualReview {
                self.manual_review += 1;
            }
        }
    }
}
