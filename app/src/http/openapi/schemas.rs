//! The shapes of the API's bodies, for the OpenAPI document: the request
//! bodies the handlers take field by field ([`super::super::body::Fields`])
//! and the objects they answer that are built in other crates (the payment
//! and refund objects of `paycode-projections`, the report of
//! `paycode-domain`), described here so the pure crates stay free of
//! OpenAPI. Bodies built in `http` itself carry their schema on their own
//! type (`error::ErrorBody`, `payments::PaymentPage`, ...).
//!
//! These types are never built: they only describe. The tests below hold
//! them to the real objects, field by field.

use utoipa::ToSchema;

// Patterns are written out where used (the attribute takes literals only):
// an amount the API sends is a decimal string with exactly two decimals,
// `^[0-9]{1,9}\.[0-9]{2}$`; an order or refund number is 1–32 characters
// of `A-Z a-z 0-9 _ -`, `^[A-Za-z0-9_-]{1,32}$`.

/// A payment channel.
#[derive(Debug, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Channel {
    Wechat,
    Alipay,
}

/// The only currency payment codes are used for.
#[derive(Debug, ToSchema)]
pub enum Currency {
    CNY,
}

/// A payment's status (docs/api.md, Statuses). Settled: every status but
/// `paying` and `revoking`.
#[derive(Debug, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PaymentStatus {
    Paying,
    Paid,
    Revoking,
    Closed,
    Reversed,
    Revoked,
    PartiallyRefunded,
    Refunded,
    ManualReview,
}

/// A refund's status.
#[derive(Debug, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RefundStatus {
    Pending,
    Succeeded,
    Failed,
    ManualReview,
}

/// What the ledger will do next for an order.
#[derive(Debug, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ActionName {
    QueryPayment,
    StartRevoke,
    CallRevoke,
    QueryRefund,
    CallRefund,
    EscalateToManualReview,
}

/// What the ledger will do next, and when.
#[derive(Debug, ToSchema)]
pub struct PendingAction {
    pub action: ActionName,
    /// When it is due (UTC, RFC 3339).
    #[schema(format = DateTime)]
    pub due_at: String,
}

/// The payment object. Every field is always present (`null` when it has no value).
#[derive(Debug, ToSchema)]
#[schema(example = json!({
    "order_no": "A20261122-0001", "merchant_id": "demo", "channel": "wechat",
    "amount": "12.34", "currency": "CNY", "subject": "Coffee",
    "auth_code": "13**************89", "status": "paid",
    "channel_trade_no": "4200000123202611220000000001", "refunded_amount": "0.00",
    "failure_code": null, "created_at": "2026-11-22T10:00:00Z",
    "updated_at": "2026-11-22T10:00:01Z", "paid_at": "2026-11-22T10:00:01Z",
    "version": 3, "pending_action": null
}))]
pub struct Payment {
    #[schema(pattern = r"^[A-Za-z0-9_-]{1,32}$")]
    pub order_no: String,
    pub merchant_id: String,
    /// As submitted, or as inferred from the payment code.
    pub channel: Channel,
    #[schema(pattern = r"^[0-9]{1,9}\.[0-9]{2}$")]
    pub amount: String,
    pub currency: Currency,
    pub subject: String,
    /// The payment code masked: first two and last two digits, the rest `*`.
    pub auth_code: String,
    pub status: PaymentStatus,
    /// The channel's number for the trade, once the payment is known to have succeeded.
    #[schema(required = true)]
    pub channel_trade_no: Option<String>,
    /// The sum of refunds that succeeded.
    #[schema(pattern = r"^[0-9]{1,9}\.[0-9]{2}$")]
    pub refunded_amount: String,
    /// The channel's code for a definitive payment failure.
    #[schema(required = true)]
    pub failure_code: Option<String>,
    /// The time of the order's first event (UTC, RFC 3339).
    #[schema(format = DateTime)]
    pub created_at: String,
    /// The time of the order's last event.
    #[schema(format = DateTime)]
    pub updated_at: String,
    /// When the channel says the customer paid.
    #[schema(format = DateTime, required = true)]
    pub paid_at: Option<String>,
    /// The version of the order's last event (the first event is 0).
    #[schema(minimum = 0)]
    pub version: u64,
    /// `null` when nothing automatic remains.
    #[schema(required = true)]
    pub pending_action: Option<PendingAction>,
}

/// The refund object.
#[derive(Debug, ToSchema)]
#[schema(example = json!({
    "refund_no": "R1", "order_no": "A20261122-0001", "amount": "2.00",
    "reason": "returned", "status": "succeeded",
    "created_at": "2026-11-22T10:05:00Z", "succeeded_at": "2026-11-22T10:05:12Z",
    "failure_code": null
}))]
pub struct Refund {
    #[schema(pattern = r"^[A-Za-z0-9_-]{1,32}$")]
    pub refund_no: String,
    #[schema(pattern = r"^[A-Za-z0-9_-]{1,32}$")]
    pub order_no: String,
    #[schema(pattern = r"^[0-9]{1,9}\.[0-9]{2}$")]
    pub amount: String,
    pub reason: String,
    pub status: RefundStatus,
    #[schema(format = DateTime)]
    pub created_at: String,
    /// When the money went back, by the channel.
    #[schema(format = DateTime, required = true)]
    pub succeeded_at: Option<String>,
    /// Why the channel refused it definitively.
    #[schema(required = true)]
    pub failure_code: Option<String>,
}

/// A stored event name (docs/api.md, Events): a contract, never changed.
#[derive(Debug, ToSchema)]
pub enum EventType {
    Submitted,
    UserPaying,
    PayAnswerUnknown,
    QueryResult,
    Paid,
    PaymentFailed,
    RevokeRequested,
    RevokeRetryScheduled,
    Revoked,
    RevokeRejected,
    ManualReviewRequired,
    OperatorResolved,
    RefundRequested,
    RefundPending,
    Refunded,
    RefundFailed,
    StatementLineMatched,
    PayNotSent,
    AnswerNoted,
    RevokeSettled,
}

/// The kind of a reconciliation finding.
#[derive(Debug, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum FindingKind {
    MissingInLedger,
    MissingInStatement,
    AmountMismatch,
    StatusMismatch,
    DuplicateLine,
}

/// One difference between a statement and the ledger.
#[derive(Debug, ToSchema)]
pub struct Finding {
    pub kind: FindingKind,
    /// The merchant order number (as the statement prints it when the ledger does not know it).
    #[schema(required = true)]
    pub order_no: Option<String>,
    /// The refund number for a refund line.
    #[schema(required = true)]
    pub refund_no: Option<String>,
    #[schema(pattern = r"^[0-9]{1,9}\.[0-9]{2}$", required = true)]
    pub ledger_amount: Option<String>,
    #[schema(pattern = r"^[0-9]{1,9}\.[0-9]{2}$", required = true)]
    pub statement_amount: Option<String>,
    /// What differs, for a person.
    pub detail: String,
}

/// A reconciliation report, as recorded.
#[derive(Debug, ToSchema)]
#[schema(example = json!({
    "channel": "wechat", "date": "2026-11-21", "statement_sha256": "9f2c0c1d2e3f4a5b6c7d8e9fa0b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f7a8b9",
    "statement_lines": 120, "matched": 118, "revokes_settled": 0,
    "findings": [{"kind": "missing_in_ledger", "order_no": "A77", "refund_no": null,
                  "ledger_amount": null, "statement_amount": "3.00", "detail": "line 57: ..."}]
}))]
pub struct Report {
    pub channel: Channel,
    /// The statement's day, China time.
    #[schema(format = Date)]
    pub date: String,
    /// The SHA-256 of the file as downloaded or uploaded (lowercase hex).
    #[schema(pattern = "^[0-9a-f]{64}$")]
    pub statement_sha256: String,
    /// The rows the statement holds, duplicates included.
    #[schema(minimum = 0)]
    pub statement_lines: u64,
    /// How many rows agreed with the ledger.
    #[schema(minimum = 0)]
    pub matched: u64,
    /// Every difference, sorted by kind, then order number, then refund number.
    pub findings: Vec<Finding>,
    /// How many `revoked` orders this statement settled.
    #[schema(minimum = 0)]
    pub revokes_settled: u64,
}

/// The report of an import: the report, and what this import recorded.
#[derive(Debug, ToSchema)]
pub struct ImportReport {
    #[serde(flatten)]
    pub report: Report,
    /// `StatementLineMatched` events this import appended.
    #[schema(minimum = 0)]
    pub lines_recorded: u64,
    /// `false` when this very file (same SHA-256) was imported before: nothing changed.
    pub report_recorded: bool,
}

/// `POST /v1/payments`.
#[derive(Debug, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({
    "order_no": "A20261122-0001", "auth_code": "134567890123456789",
    "amount": "12.34", "currency": "CNY", "subject": "Coffee", "channel": "wechat"
}))]
pub struct CreatePayment {
    /// Unique within the merchant: the idempotency key.
    #[schema(pattern = r"^[A-Za-z0-9_-]{1,32}$")]
    pub order_no: String,
    /// The payment code the cashier scanned: WeChat codes are 18 digits
    /// starting `10`–`15`; Alipay codes are 16–24 digits starting `25`–`30`.
    #[schema(pattern = "^[0-9]{16,24}$")]
    pub auth_code: String,
    /// Greater than 0, at most 2 decimal places, at most `100000000.00`.
    #[schema(pattern = r"^[0-9]{1,9}(\.[0-9]{1,2})?$")]
    pub amount: String,
    /// `CNY`, the default.
    pub currency: Option<Currency>,
    /// 1–128 bytes of text, not only spaces, no control characters.
    #[schema(min_length = 1, max_length = 128)]
    pub subject: String,
    /// Inferred from `auth_code` when absent.
    pub channel: Option<Channel>,
}

/// `POST /v1/payments/{order_no}/refunds`.
#[derive(Debug, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"refund_no": "R1", "amount": "2.00", "reason": "returned"}))]
pub struct CreateRefund {
    /// Unique within the order: the channel's idempotency key.
    #[schema(pattern = r"^[A-Za-z0-9_-]{1,32}$")]
    pub refund_no: String,
    /// As for payments; at most what is still refundable.
    #[schema(pattern = r"^[0-9]{1,9}(\.[0-9]{1,2})?$")]
    pub amount: String,
    /// At most 80 characters, no control characters; `""` when absent.
    #[schema(max_length = 80)]
    pub reason: Option<String>,
}

/// `POST /v1/payments/{order_no}/revoke`: an empty body, or `{}`.
#[derive(Debug, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Revoke {}

/// An operator's verdict on an order.
#[derive(Debug, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum OrderOutcome {
    Paid,
    NotPaid,
}

/// `POST /v1/payments/{order_no}/resolve`.
#[derive(Debug, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({
    "outcome": "paid", "channel_trade_no": "4200000123202611220000000001",
    "reason": "paid per the WeChat merchant platform"
}))]
pub struct ResolveOrder {
    pub outcome: OrderOutcome,
    /// With `paid`, and only then: the channel's trade number.
    #[schema(pattern = "^[A-Za-z0-9_-]{1,64}$")]
    pub channel_trade_no: Option<String>,
    /// Only with `paid`: when the customer paid (RFC 3339, any offset).
    #[schema(format = DateTime)]
    pub paid_at: Option<String>,
    /// What the operator saw, and where: 1–500 characters on one line.
    #[schema(min_length = 1, max_length = 500)]
    pub reason: String,
}

/// An operator's verdict on a refund.
#[derive(Debug, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RefundOutcome {
    Succeeded,
    Failed,
}

/// `POST /v1/payments/{order_no}/refunds/{refund_no}/resolve`.
#[derive(Debug, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({
    "outcome": "succeeded", "refunded_at": "2026-11-22T10:05:12+08:00",
    "reason": "the WeChat merchant platform shows the refund done"
}))]
pub struct ResolveRefund {
    pub outcome: RefundOutcome,
    /// Only with `succeeded`: when the refund succeeded (RFC 3339).
    #[schema(format = DateTime)]
    pub refunded_at: Option<String>,
    /// As for an order: 1–500 characters on one line.
    #[schema(min_length = 1, max_length = 500)]
    pub reason: String,
}

/// `POST /v1/reconciliations` as JSON: download the day's statement.
#[derive(Debug, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"channel": "wechat", "date": "2026-11-21"}))]
pub struct Reconcile {
    /// Configured for the merchant.
    pub channel: Channel,
    /// The statement's day, China time.
    #[schema(format = Date)]
    pub date: String,
}

#[cfg(test)]
mod tests {
    //! The descriptions against the objects the API really sends: the same
    //! field names, and nothing more.

    use std::collections::BTreeSet;

    use chrono::{NaiveDate, TimeZone, Utc};
    use serde_json::Value;
    use utoipa::PartialSchema;

    fn properties<T: PartialSchema>() -> BTreeSet<String> {
        let schema = serde_json::to_value(T::schema()).unwrap();
        schema["properties"]
            .as_object()
            .expect("an object schema")
            .keys()
            .cloned()
            .collect()
    }

    /// The fields a schema says are always sent.
    fn required<T: PartialSchema>() -> BTreeSet<String> {
        let schema = serde_json::to_value(T::schema()).unwrap();
        schema["required"]
            .as_array()
            .expect("required fields")
            .iter()
            .map(|name| name.as_str().unwrap().to_owned())
            .collect()
    }

    fn keys(value: &Value) -> BTreeSet<String> {
        value.as_object().unwrap().keys().cloned().collect()
    }

    #[test]
    fn the_payment_and_refund_descriptions_have_the_real_fields() {
        use paycode_domain::payment::{PaymentStatus, RefundStatus};
        use paycode_domain::{AuthCode, Channel, Currency, MerchantId, OrderNo, RefundNo, Total};
        use paycode_projections::{PaymentView, PendingAction, RefundView};
        let at = Utc.with_ymd_and_hms(2026, 11, 22, 2, 0, 0).unwrap();
        let order_no = OrderNo::parse("A1").unwrap();
        let payment = PaymentView {
            order_no: order_no.clone(),
            merchant_id: MerchantId::parse("demo").unwrap(),
            channel: Channel::Wechat,
            amount: "12.34".parse().unwrap(),
            currency: Currency::default(),
            subject: "Coffee".to_owned(),
            auth_code: AuthCode::parse_for("134567890123456789", None)
                .unwrap()
                .masked(),
            status: PaymentStatus::Paying,
            channel_trade_no: None,
            refunded_amount: Total::ZERO,
            failure_code: None,
            created_at: at,
            updated_at: at,
            paid_at: None,
            version: 0,
            pending_action: Some(PendingAction {
                action: "query_payment",
                due_at: at,
            }),
        };
        let value = serde_json::to_value(&payment).unwrap();
        // Every field is sent, `null` or not: each is described, and required.
        assert_eq!(properties::<super::Payment>(), keys(&value));
        assert_eq!(required::<super::Payment>(), keys(&value));
        assert_eq!(
            properties::<super::PendingAction>(),
            keys(&value["pending_action"])
        );
        let refund = RefundView {
            refund_no: RefundNo::parse("R1").unwrap(),
            order_no,
            amount: "1.00".parse().unwrap(),
            reason: String::new(),
            status: RefundStatus::Pending,
            created_at: at,
            succeeded_at: None,
            failure_code: None,
        };
        let value = serde_json::to_value(&refund).unwrap();
        assert_eq!(properties::<super::Refund>(), keys(&value));
        assert_eq!(required::<super::Refund>(), keys(&value));
    }

    #[test]
    fn the_report_description_has_the_recorded_fields() {
        let report = paycode_domain::reconciliation::ReconciliationRecorded {
            channel: paycode_domain::Channel::Wechat,
            date: NaiveDate::from_ymd_opt(2026, 11, 21).unwrap(),
            statement_sha256: "0".repeat(64),
            statement_lines: 0,
            matched: 0,
            findings: vec![paycode_domain::reconciliation::Finding {
                kind: paycode_domain::reconciliation::FindingKind::MissingInLedger,
                order_no: Some("A77".to_owned()),
                refund_no: None,
                ledger_amount: None,
                statement_amount: Some("3.00".parse().unwrap()),
                detail: "line 57".to_owned(),
            }],
            revokes_settled: 0,
        };
        let value = serde_json::to_value(report).unwrap();
        assert_eq!(properties::<super::Finding>(), keys(&value["findings"][0]));
        assert_eq!(required::<super::Finding>(), keys(&value["findings"][0]));
        assert_eq!(properties::<super::Report>(), keys(&value));
        assert_eq!(required::<super::Report>(), keys(&value));
    }
}
