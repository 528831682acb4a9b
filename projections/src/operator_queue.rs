//! The operator queue: every payment and every refund that automatic
//! handling gave up on and that waits for an operator, with why and since
//! when. A row leaves the queue when an operator resolves it.

use chrono::{DateTime, Utc};
use paycode_domain::payment::{ManualReviewReason, PaymentState, RefundStage};
use paycode_domain::{Channel, MerchantId, Money, OrderNo, RefundNo};
use serde::{Deserialize, Serialize};

use crate::fold::OrderFold;
use crate::projection::Projection;

/// Which review a row is about: the payment itself (`refund_no` absent) or one refund.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ReviewKey {
    pub merchant_id: MerchantId,
    pub order_no: OrderNo,
    pub refund_no: Option<RefundNo>,
}

/// What an operator needs to pick a review up.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReviewItem {
    pub channel: Channel,
    /// The amount in question: the payment's, or the refund's.
    pub amount: Money,
    /// Why automatic handling gave up.
    pub reason: ManualReviewReason,
    /// Since when it has waited.
    pub since: DateTime<Utc>,
}

/// One row per payment or refund in manual review.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OperatorQueue;

impl Projection for OperatorQueue {
    const NAME: &'static str = "operator_queue";
    type Key = ReviewKey;
    type Row = ReviewItem;
    type Source = OrderFold;

    fn rows_of(order: &OrderFold, rows: &mut Vec<(ReviewKey, ReviewItem)>) {
        let key = |refund_no: Option<&RefundNo>| ReviewKey {
            merchant_id: order.key.merchant_id.clone(),
            order_no: order.key.order_no.clone(),
            refund_no: refund_no.cloned(),
        };
        match &order.state {
            PaymentState::ManualReview(review) => rows.push((
                key(None),
                ReviewItem {
                    channel: review.order.channel,
                    amount: review.order.amount,
                    reason: review.reason.clone(),
                    since: review.since,
                },
            )),
            PaymentState::Paid(paid) => {
                for refund in &paid.refunds {
                    if let RefundStage::ManualReview { reason, since } = &refund.stage {
                        rows.push((
                            key(Some(&refund.refund_no)),
                            ReviewItem {
                                channel: paid.order.channel,
                                amount: refund.amount,
                                reason: reason.clone(),
                                since: *since,
                            },
                        ));
                    }
                }
            }
            _ => {}
        }
    }
}
