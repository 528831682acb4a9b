//! The refunds read model: one row per refund of a paid order, the
//! contract's refund object (`GET /v1/payments/{order_no}/refunds/{refund_no}`).

use paycode_domain::{MerchantId, OrderNo, RefundNo};
use serde::Serialize;

use crate::fold::OrderFold;
use crate::payment_view::RefundView;
use crate::projection::Projection;

/// Which refund a row is about.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct RefundKey {
    pub merchant_id: MerchantId,
    pub order_no: OrderNo,
    pub refund_no: RefundNo,
}

/// One row per refund: its [`RefundView`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Refunds;

impl Projection for Refunds {
    const NAME: &'static str = "refunds";
    type Key = RefundKey;
    type Row = RefundView;
    type Source = OrderFold;

    fn rows_of(order: &OrderFold, rows: &mut Vec<(RefundKey, RefundView)>) {
        for view in RefundView::all(&order.state) {
            let key = RefundKey {
                merchant_id: order.key.merchant_id.clone(),
                order_no: order.key.order_no.clone(),
                refund_no: view.refund_no.clone(),
            };
            rows.push((key, view));
        }
    }
}
