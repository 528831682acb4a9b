//! Channel answers, normalised. The adapters map each wire protocol onto
//! these; the decider only ever sees these. Anything the adapter cannot
//! prove (timeouts, bad signatures, mismatched fields, unlisted codes) is
//! `Unknown`, never a failure and never a success.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::channel::{ChannelCodes, cap_channel_text};

/// A normalised outcome with the raw codes an auditor needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelAnswer<O> {
    pub outcome: O,
    pub codes: ChannelCodes,
}

impl<O> ChannelAnswer<O> {
    pub fn new(outcome: O) -> Self {
        ChannelAnswer {
            outcome,
            codes: ChannelCodes::new(),
        }
    }

    pub fn with_codes(outcome: O, codes: ChannelCodes) -> Self {
        ChannelAnswer { outcome, codes }
    }
}

impl<O: CapText> ChannelAnswer<O> {
    /// The answer with its channel text capped (see
    /// [`crate::channel::CHANNEL_TEXT_MAX_CHARS`]): the codes and the
    /// outcome's reasons and codes. Identifiers (trade and refund numbers)
    /// are kept whole.
    #[must_use]
    pub fn capped(mut self) -> Self {
        self.outcome.cap_text();
        self.codes.cap();
        self
    }
}

/// An outcome whose free text (a reason, a code taken from the answer) is
/// capped before it is stored or logged.
pub trait CapText {
    fn cap_text(&mut self);
}

impl CapText for PayOutcome {
    fn cap_text(&mut self) {
        match self {
            PayOutcome::Failed { code } => cap_channel_text(code),
            PayOutcome::Unknown { reason } | PayOutcome::NotSent { reason } => {
                cap_channel_text(reason);
            }
            PayOutcome::Paid { .. } | PayOutcome::WaitingForPassword => {}
        }
    }
}

impl CapText for QueryOutcome {
    fn cap_text(&mut self) {
        match self {
            QueryOutcome::Failed { code } => cap_channel_text(code),
            QueryOutcome::Unknown { reason } | QueryOutcome::OtherTrade { reason } => {
                cap_channel_text(reason);
            }
            QueryOutcome::Paid { .. }
            | QueryOutcome::WaitingForPassword
            | QueryOutcome::NotPaid
            | QueryOutcome::NotFound
            | QueryOutcome::Closed
            | QueryOutcome::RefundedElsewhere => {}
        }
    }
}

impl CapText for RevokeOutcome {
    fn cap_text(&mut self) {
        match self {
            RevokeOutcome::MustRetry { reason } | RevokeOutcome::Unknown { reason } => {
                cap_channel_text(reason);
            }
            RevokeOutcome::WindowClosed { code } => cap_channel_text(code),
            RevokeOutcome::Done { .. } => {}
        }
    }
}

impl CapText for RefundOutcome {
    fn cap_text(&mut self) {
        match self {
            RefundOutcome::Failed { code } | RefundOutcome::Abnormal { code } => {
                cap_channel_text(code);
            }
            RefundOutcome::Unknown { reason } => cap_channel_text(reason),
            RefundOutcome::Accepted { .. }
            | RefundOutcome::Processing
            | RefundOutcome::Succeeded { .. }
            | RefundOutcome::NotFound => {}
        }
    }
}

/// What the pay call (WeChat micropay, Alipay trade.pay) said.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum PayOutcome {
    /// Money moved, at `paid_at` when the answer says (the ledger then takes
    /// the time it recorded the answer, and says so).
    Paid {
        channel_trade_no: String,
        #[serde(default, deserialize_with = "crate::utc::deserialize_option")]
        paid_at: Option<DateTime<Utc>>,
    },
    /// The customer must confirm with a password (`USERPAYING`, `10003`).
    WaitingForPassword,
    /// A whitelisted definitive failure (`NOTENOUGH`, `AUTHCODEEXPIRE`, ...).
    Failed { code: String },
    /// Nothing can be concluded; the order must be queried.
    Unknown { reason: String },
    /// The call was never made (it could not be made before the deadline):
    /// certainly nothing moved.
    NotSent { reason: String },
}

/// What a query of the order said: the channel's truth (`trade_state`,
/// `trade_status`), not the call's result code.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum QueryOutcome {
    /// Paid, at `paid_at` when the answer says (Alipay's `send_pay_date` and
    /// `gmt_payment` are optional).
    Paid {
        channel_trade_no: String,
        #[serde(default, deserialize_with = "crate::utc::deserialize_option")]
        paid_at: Option<DateTime<Utc>>,
    },
    /// Still waiting for the password (`USERPAYING`, `WAIT_BUYER_PAY`).
    WaitingForPassword,
    /// Created but not paid (`NOTPAY`).
    NotPaid,
    /// The channel does not know the order (`ORDERNOTEXIST`, `ACQ.TRADE_NOT_EXIST`).
    NotFound,
    /// Closed without payment (`REVOKED`, `CLOSED`, `TRADE_CLOSED`): by us or by the channel itself.
    Closed,
    /// The payment failed definitively (`PAYERROR`).
    Failed {
        code: String,
    },
    /// Paid and then (partly) refunded outside this ledger (`REFUND`): an operator must look.
    RefundedElsewhere,
    /// The channel has a paid trade under this order number that is not
    /// this order's (another amount, or paid before the order was
    /// submitted): the number was used before. Neither paid nor safe to
    /// revoke (a revoke would return the other trade's money).
    OtherTrade {
        reason: String,
    },
    Unknown {
        reason: String,
    },
}

/// The trade number and payment time an answer proves, if it proves a payment.
pub(crate) type ProofOfPayment<'a> = Option<(&'a String, Option<DateTime<Utc>>)>;

impl PayOutcome {
    /// What this answer proves of a payment.
    pub(crate) fn proof_of_payment(&self) -> ProofOfPayment<'_> {
        match self {
            PayOutcome::Paid {
                channel_trade_no,
                paid_at,
            } => Some((channel_trade_no, *paid_at)),
            _ => None,
        }
    }
}

impl QueryOutcome {
    /// What this answer proves of a payment.
    pub(crate) fn proof_of_payment(&self) -> ProofOfPayment<'_> {
        match self {
            QueryOutcome::Paid {
                channel_trade_no,
                paid_at,
            } => Some((channel_trade_no, *paid_at)),
            _ => None,
        }
    }
}

/// How a revoke (WeChat reverse, Alipay trade.cancel) ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RevokeResult {
    /// No money had moved; the order is closed.
    Closed,
    /// Money had moved and was returned.
    Refunded,
    /// Revoked, but the channel does not say which of the two (WeChat's
    /// reverse answer never does; nor does an Alipay cancel `10000` without
    /// `action`). The ledger reads it as `Refunded` when it had recorded the
    /// payment; otherwise the money's movement is unconfirmed (status
    /// `revoked`) until the day's statement shows a reversal or nothing.
    Unspecified,
}

/// What a revoke call said.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum RevokeOutcome {
    Done {
        result: RevokeResult,
    },
    /// Call again (`recall=Y`, `retry_flag=Y`, a revoke during `USERPAYING`).
    MustRetry {
        reason: String,
    },
    /// The channel no longer revokes this order (`ACQ.TRADE_CANCEL_TIME_OUT`): refund instead.
    WindowClosed {
        code: String,
    },
    Unknown {
        reason: String,
    },
}

/// What a refund call or a refund query said.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum RefundOutcome {
    /// The channel took the refund; not yet success.
    Accepted {
        channel_refund_no: Option<String>,
    },
    Processing,
    Succeeded {
        channel_refund_no: Option<String>,
        #[serde(deserialize_with = "crate::utc::deserialize")]
        refunded_at: DateTime<Utc>,
    },
    /// A definitive failure (`FAIL`, a refused refund).
    Failed {
        code: String,
    },
    /// The channel answered, but the money went astray (`CHANGE`): an operator must act.
    Abnormal {
        code: String,
    },
    /// The channel does not know this refund number: the refund call never arrived.
    NotFound,
    Unknown {
        reason: String,
    },
}
