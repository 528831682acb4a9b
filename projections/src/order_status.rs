//! The order-status read model: what `GET /v1/payments/{order_no}` serves
//! (status, amounts, refunded total, channel trade number, timestamps,
//! pending action), one row per order, the contract's payment object.

use crate::fold::{OrderFold, OrderKey};
use crate::payment_view::PaymentView;
use crate::projection::Projection;

/// One row per submitted order: its [`PaymentView`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OrderStatus;

impl Projection for OrderStatus {
    const NAME: &'static str = "order_status";
    type Key = OrderKey;
    type Row = PaymentView;
    type Source = OrderFold;

    fn rows_of(order: &OrderFold, rows: &mut Vec<(OrderKey, PaymentView)>) {
        if let Some(view) = order.view() {
            rows.push((order.key.clone(), view));
        }
    }
}
