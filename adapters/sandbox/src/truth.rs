//! The sandbox's own truth about an order, and the channels' rules over it,
//! as pure functions of the order and the time: no IO, no wire format.
//!
//! Time-driven rules (the customer paying 8 s after the prompt, WeChat
//! closing an unpaid payment-code order after 45 s, a refund processing for
//! 20 s) are not run by timers: [`SandboxOrder::settle`] applies whatever has
//! become due whenever the order is touched, and every such change is dated
//! at the instant it became due, not when it was noticed. So the answers are
//! the same whether the order is looked at once or a thousand times.

use chrono::{DateTime, Duration, Months, Utc};
use paycode_domain::Channel;
use paycode_domain::calendar::china_date;

use super::codes::Behaviour;

/// `01`: how long after the pay call the customer enters the password.
pub const PASSWORD_DELAY_SECS: i64 = 8;
/// WeChat closes an unpaid payment-code order by itself this long after creation.
pub const WECHAT_AUTO_REVOKE_SECS: i64 = 45;
/// WeChat answers a reverse of an order still waiting for the password
/// with "try later" during this long after creation ("建议支付后至少15s后再调用撤销").
pub const WECHAT_REVOKE_MIN_AGE_SECS: i64 = 15;
/// WeChat reverses orders up to this many days old.
pub const WECHAT_REVOKE_WINDOW_DAYS: i64 = 7;
/// WeChat refunds orders paid up to this many days ago (`TRADE_OVERDUE` after).
pub const WECHAT_REFUND_WINDOW_DAYS: i64 = 365;
/// Alipay refunds orders paid up to this many months ago; the trade is
/// `TRADE_FINISHED` after (contract-dependent in reality, 3 months here).
pub const ALIPAY_REFUND_WINDOW_MONTHS: u32 = 3;
/// `09`: how long every refund stays processing.
pub const SLOW_REFUND_SECS: i64 = 20;
/// WeChat takes at most this many partial refunds per order.
pub const WECHAT_REFUNDS_MAX: usize = 50;

/// Where an order stands in the sandbox's truth.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SandboxOrderState {
    /// Created; the customer has been asked for the password.
    WaitingForPassword,
    /// The money moved at `paid_at` (refunds, if any, are listed on the order).
    Paid { paid_at: DateTime<Utc> },
    /// The payment failed definitively; no money moved.
    Failed,
    /// Closed without any money having moved: revoked before payment, or
    /// (`by_channel`) closed by WeChat itself 45 s after creation. A WeChat
    /// query answers `REVOKED` either way, an Alipay one `TRADE_CLOSED`.
    Closed {
        closed_at: DateTime<Utc>,
        by_channel: bool,
    },
    /// Paid, then a revoke returned the money in full at `reversed_at`.
    Reversed {
        paid_at: DateTime<Utc>,
        reversed_at: DateTime<Utc>,
    },
}

impl SandboxOrderState {
    /// The state's name as stored.
    pub fn name(&self) -> &'static str {
        match self {
            SandboxOrderState::WaitingForPassword => "waiting_for_password",
            SandboxOrderState::Paid { .. } => "paid",
            SandboxOrderState::Failed => "failed",
            SandboxOrderState::Closed { .. } => "closed",
            SandboxOrderState::Reversed { .. } => "reversed",
        }
    }

    /// When the money moved, if it did.
    pub fn paid_at(&self) -> Option<DateTime<Utc>> {
        match self {
            SandboxOrderState::Paid { paid_at } | SandboxOrderState::Reversed { paid_at, .. } => {
                Some(*paid_at)
            }
            _ => None,
        }
    }
}

/// One refund of an order, under the merchant's refund number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SandboxRefund {
    /// The merchant's number (`out_refund_no`, `out_request_no`): the idempotency key.
    pub refund_no: String,
    /// The channel's number (`refund_id`).
    pub refund_id: String,
    /// What this refund returns.
    pub amount_fen: u64,
    /// When the refund call took it.
    pub requested_at: DateTime<Utc>,
    /// When it succeeds: at once, or 20 s later for code `09`.
    pub succeeds_at: DateTime<Utc>,
}

/// A refund's lifecycle at some instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SandboxRefundState {
    /// Taken, money not back yet.
    Processing,
    /// The money is back since `at`.
    Succeeded { at: DateTime<Utc> },
}

impl SandboxRefund {
    /// Where the refund stands at `now`.
    pub fn state(&self, now: DateTime<Utc>) -> SandboxRefundState {
        if now >= self.succeeds_at {
            SandboxRefundState::Succeeded {
                at: self.succeeds_at,
            }
        } else {
            SandboxRefundState::Processing
        }
    }
}

/// The sandbox's truth about one order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SandboxOrder {
    /// The channel that took the order.
    pub channel: Channel,
    /// `mch_id` (WeChat) or `app_id` (Alipay).
    pub merchant_id: String,
    /// The merchant's order number.
    pub out_trade_no: String,
    /// The channel's number (`transaction_id`, `trade_no`).
    pub trade_no: String,
    /// The amount of the pay request.
    pub amount_fen: u64,
    /// `body` / `subject` of the pay request.
    pub subject: String,
    /// The payment code, masked (`13**************00`); the full code is never kept.
    pub auth_code_masked: String,
    /// The code's last two digits, which chose [`Self::behaviour`].
    pub code_suffix: String,
    /// What the code asked for.
    pub behaviour: Behaviour,
    /// When the pay request arrived.
    pub created_at: DateTime<Utc>,
    /// Where it stands (as of the last [`SandboxOrder::settle`]).
    pub state: SandboxOrderState,
    /// Oldest first.
    pub refunds: Vec<SandboxRefund>,
}

/// What a revoke did, or why it did nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RevokeDecision {
    /// Call again: code `07`, or (WeChat) the order is still waiting for
    /// the password less than 15 s after creation.
    MustRetry { user_paying: bool },
    /// Past the channel's window (7 days WeChat, the same China day Alipay).
    WindowClosed,
    /// The order is closed, no money moved (now or by an earlier revoke).
    Closed,
    /// The money was returned (now or by an earlier revoke).
    Refunded,
    /// Partly or fully refunded already: a revoke returns the full amount only.
    AlreadyRefunded,
}

/// What a refund request did, or why it was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefundDecision {
    /// Taken (`new`) or the same refund number with the same amount again.
    Accepted { refund: SandboxRefund, new: bool },
    /// The order was never paid, or is closed.
    NotPaid,
    /// The order was reversed: its money is back already.
    Reversed,
    /// Past the channel's refund window.
    Overdue,
    /// The refund number was used before with another amount.
    NumberReused { amount_fen: u64 },
    /// The refunds would exceed the paid amount.
    ExceedsPaid { refundable_fen: u64 },
    /// WeChat's limit of partial refunds per order.
    TooMany,
}

impl SandboxOrder {
    /// Applies every rule that has become due by `now`, dated when it became
    /// due: `01` pays 8 s after creation; WeChat closes an order still
    /// unpaid 45 s after creation (not `06` and `07`, whose queries must keep
    /// saying "waiting" until the revoke). Returns whether anything changed.
    pub fn settle(&mut self, now: DateTime<Utc>) -> bool {
        if self.state != SandboxOrderState::WaitingForPassword {
            return false;
        }
        let pays_at = self.created_at + Duration::seconds(PASSWORD_DELAY_SECS);
        if self.behaviour == Behaviour::PaysAfterPassword && now >= pays_at {
            self.state = SandboxOrderState::Paid { paid_at: pays_at };
            return true;
        }
        let closes_at = self.created_at + Duration::seconds(WECHAT_AUTO_REVOKE_SECS);
        let auto_revoked = self.channel == Channel::Wechat
            && !matches!(
                self.behaviour,
                Behaviour::PaysAtRevoke | Behaviour::RevokeMustRetry
            );
        if auto_revoked && now >= closes_at {
            self.state = SandboxOrderState::Closed {
                closed_at: closes_at,
                by_channel: true,
            };
            return true;
        }
        false
    }

    /// The sum of every refund taken (processing or succeeded).
    pub fn refunded_fen(&self) -> u64 {
        self.refunds.iter().map(|r| r.amount_fen).sum()
    }

    /// The refund under `refund_no`.
    pub fn refund(&self, refund_no: &str) -> Option<&SandboxRefund> {
        self.refunds.iter().find(|r| r.refund_no == refund_no)
    }

    /// Whether the order is past its channel's refund window at `now`
    /// (Alipay then calls the trade `TRADE_FINISHED`).
    pub fn refund_window_passed(&self, now: DateTime<Utc>) -> bool {
        let Some(paid_at) = self.state.paid_at() else {
            return false;
        };
        let end = match self.channel {
            Channel::Wechat => Some(paid_at + Duration::days(WECHAT_REFUND_WINDOW_DAYS)),
            Channel::Alipay => paid_at.checked_add_months(Months::new(ALIPAY_REFUND_WINDOW_MONTHS)),
        };
        end.is_some_and(|end| now > end)
    }

    /// A revoke (WeChat reverse, Alipay cancel) at `now`, in the channels'
    /// order of checks: `07` always asks for a retry; an order revoked
    /// before answers the same again; then the window; then the state.
    /// Call [`Self::settle`] first.
    pub fn revoke(&mut self, now: DateTime<Utc>) -> RevokeDecision {
        if self.behaviour == Behaviour::RevokeMustRetry {
            return RevokeDecision::MustRetry { user_paying: false };
        }
        match self.state {
            SandboxOrderState::Closed { .. } => return RevokeDecision::Closed,
            SandboxOrderState::Reversed { .. } => return RevokeDecision::Refunded,
            _ => {}
        }
        let window_open = match self.channel {
            Channel::Wechat => now <= self.created_at + Duration::days(WECHAT_REVOKE_WINDOW_DAYS),
            Channel::Alipay => china_date(now) == china_date(self.created_at),
        };
        if !window_open {
            return RevokeDecision::WindowClosed;
        }
        match self.state {
            SandboxOrderState::WaitingForPassword => {
                let too_early =
                    now < self.created_at + Duration::seconds(WECHAT_REVOKE_MIN_AGE_SECS);
                if self.channel == Channel::Wechat && too_early {
                    return RevokeDecision::MustRetry { user_paying: true };
                }
                if self.behaviour == Behaviour::PaysAtRevoke {
                    // The customer's password lands at this very instant.
                    self.state = SandboxOrderState::Reversed {
                        paid_at: now,
                        reversed_at: now,
                    };
                    RevokeDecision::Refunded
                } else {
                    self.state = SandboxOrderState::Closed {
                        closed_at: now,
                        by_channel: false,
                    };
                    RevokeDecision::Closed
                }
            }
            SandboxOrderState::Paid { paid_at } => {
                if !self.refunds.is_empty() {
                    return RevokeDecision::AlreadyRefunded;
                }
                self.state = SandboxOrderState::Reversed {
                    paid_at,
                    reversed_at: now,
                };
                RevokeDecision::Refunded
            }
            SandboxOrderState::Failed => {
                self.state = SandboxOrderState::Closed {
                    closed_at: now,
                    by_channel: false,
                };
                RevokeDecision::Closed
            }
            // Answered above, before the window; repeated for completeness.
            SandboxOrderState::Closed { .. } => RevokeDecision::Closed,
            SandboxOrderState::Reversed { .. } => RevokeDecision::Refunded,
        }
    }

    /// A refund of `amount_fen` under `refund_no` at `now`. The refund
    /// number is the idempotency key: the same number with the same amount
    /// is the same refund, never a second one. Call [`Self::settle`] first.
    pub fn request_refund(
        &mut self,
        refund_no: &str,
        amount_fen: u64,
        refund_id: impl FnOnce() -> String,
        now: DateTime<Utc>,
    ) -> RefundDecision {
        if let Some(existing) = self.refund(refund_no) {
            return if existing.amount_fen == amount_fen {
                RefundDecision::Accepted {
                    refund: existing.clone(),
                    new: false,
                }
            } else {
                RefundDecision::NumberReused {
                    amount_fen: existing.amount_fen,
                }
            };
        }
        match self.state {
            SandboxOrderState::Paid { .. } => {}
            SandboxOrderState::Reversed { .. } => return RefundDecision::Reversed,
            _ => return RefundDecision::NotPaid,
        }
        if self.refund_window_passed(now) {
            return RefundDecision::Overdue;
        }
        if self.channel == Channel::Wechat && self.refunds.len() >= WECHAT_REFUNDS_MAX {
            return RefundDecision::TooMany;
        }
        let refundable_fen = self.amount_fen.saturating_sub(self.refunded_fen());
        if amount_fen == 0 || amount_fen > refundable_fen {
            return RefundDecision::ExceedsPaid { refundable_fen };
        }
        let delay = if self.behaviour == Behaviour::SlowRefunds {
            Duration::seconds(SLOW_REFUND_SECS)
        } else {
            Duration::zero()
        };
        let refund = SandboxRefund {
            refund_no: refund_no.to_owned(),
            refund_id: refund_id(),
            amount_fen,
            requested_at: now,
            succeeds_at: now + delay,
        };
        self.refunds.push(refund.clone());
        RefundDecision::Accepted { refund, new: true }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use chrono::TimeZone;

    use super::*;

    /// 2026-11-22 10:00:00 China time.
    pub(crate) fn start() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 22, 2, 0, 0).unwrap()
    }

    pub(crate) fn order(channel: Channel, digits: &str) -> SandboxOrder {
        let behaviour = Behaviour::from_last_two_digits(digits);
        SandboxOrder {
            channel,
            merchant_id: "m1".to_owned(),
            out_trade_no: format!("A-{digits}"),
            trade_no: "T1".to_owned(),
            amount_fen: 1000,
            subject: "Coffee".to_owned(),
            auth_code_masked: format!("13**************{digits}"),
            code_suffix: digits.to_owned(),
            behaviour,
            created_at: start(),
            state: if behaviour.waits_for_password() {
                SandboxOrderState::WaitingForPassword
            } else {
                SandboxOrderState::Paid { paid_at: start() }
            },
            refunds: Vec::new(),
        }
    }

    fn at(secs: i64) -> DateTime<Utc> {
        start() + Duration::seconds(secs)
    }

    #[test]
    fn code_01_is_paid_8_seconds_after_creation_whenever_it_is_looked_at() {
        for channel in Channel::ALL {
            let mut order = order(channel, "01");
            assert!(!order.settle(at(7)));
            assert_eq!(order.state, SandboxOrderState::WaitingForPassword);
            assert!(order.settle(at(300)), "{channel}");
            assert_eq!(order.state, SandboxOrderState::Paid { paid_at: at(8) });
            assert!(!order.settle(at(400)), "settling twice changes nothing");
        }
    }

    #[test]
    fn wechat_closes_an_unpaid_order_by_itself_after_45_seconds_and_alipay_does_not() {
        let mut wechat = order(Channel::Wechat, "02");
        wechat.settle(at(44));
        assert_eq!(wechat.state, SandboxOrderState::WaitingForPassword);
        wechat.settle(at(3600));
        assert_eq!(
            wechat.state,
            SandboxOrderState::Closed {
                closed_at: at(45),
                by_channel: true
            }
        );
        let mut alipay = order(Channel::Alipay, "02");
        alipay.settle(at(3600));
        assert_eq!(alipay.state, SandboxOrderState::WaitingForPassword);
        for digits in ["06", "07"] {
            let mut waiting = order(Channel::Wechat, digits);
            waiting.settle(at(3600));
            assert_eq!(
                waiting.state,
                SandboxOrderState::WaitingForPassword,
                "{digits}"
            );
        }
    }

    #[test]
    fn a_revoke_closes_a_waiting_order_and_code_06_pays_at_that_instant_then_refunds() {
        let mut closed = order(Channel::Alipay, "02");
        assert_eq!(closed.revoke(at(30)), RevokeDecision::Closed);
        assert_eq!(
            closed.state,
            SandboxOrderState::Closed {
                closed_at: at(30),
                by_channel: false
            }
        );
        assert_eq!(closed.revoke(at(40)), RevokeDecision::Closed, "idempotent");
        let mut paid_at_revoke = order(Channel::Wechat, "06");
        paid_at_revoke.settle(at(30));
        assert_eq!(paid_at_revoke.state, SandboxOrderState::WaitingForPassword);
        assert_eq!(paid_at_revoke.revoke(at(30)), RevokeDecision::Refunded);
        assert_eq!(
            paid_at_revoke.state,
            SandboxOrderState::Reversed {
                paid_at: at(30),
                reversed_at: at(30)
            }
        );
        assert_eq!(paid_at_revoke.revoke(at(31)), RevokeDecision::Refunded);
    }

    #[test]
    fn wechat_asks_to_retry_a_revoke_of_a_waiting_order_younger_than_15_seconds() {
        let mut order = order(Channel::Wechat, "02");
        assert_eq!(
            order.revoke(at(14)),
            RevokeDecision::MustRetry { user_paying: true }
        );
        assert_eq!(order.state, SandboxOrderState::WaitingForPassword);
        assert_eq!(order.revoke(at(15)), RevokeDecision::Closed);
    }

    #[test]
    fn code_07_always_asks_to_retry_and_changes_nothing() {
        for channel in Channel::ALL {
            let mut order = order(channel, "07");
            for secs in [20, 60, 86_400 * 30] {
                assert_eq!(
                    order.revoke(at(secs)),
                    RevokeDecision::MustRetry { user_paying: false }
                );
            }
            assert_eq!(order.state, SandboxOrderState::WaitingForPassword);
        }
    }

    #[test]
    fn revoke_windows_are_7_days_for_wechat_and_the_china_day_for_alipay() {
        let mut wechat = order(Channel::Wechat, "00");
        assert_eq!(
            wechat.clone().revoke(at(7 * 86_400)),
            RevokeDecision::Refunded
        );
        assert_eq!(
            wechat.revoke(at(7 * 86_400 + 1)),
            RevokeDecision::WindowClosed
        );
        // Created 10:00 China time: 23:59:59 is the same day, 00:00 the next.
        let mut alipay = order(Channel::Alipay, "00");
        let midnight = 14 * 3600;
        assert_eq!(
            alipay.clone().revoke(at(midnight - 1)),
            RevokeDecision::Refunded
        );
        assert_eq!(alipay.revoke(at(midnight)), RevokeDecision::WindowClosed);
        assert_eq!(
            alipay.state,
            SandboxOrderState::Paid { paid_at: start() },
            "a refused revoke changes nothing"
        );
    }

    #[test]
    fn a_revoke_after_a_refund_is_refused_since_it_returns_the_full_amount_only() {
        let mut order = order(Channel::Alipay, "00");
        let id = || "R-ID".to_owned();
        assert!(matches!(
            order.request_refund("R1", 100, id, at(1)),
            RefundDecision::Accepted { new: true, .. }
        ));
        assert_eq!(order.revoke(at(2)), RevokeDecision::AlreadyRefunded);
    }

    #[test]
    fn refunds_never_exceed_the_paid_amount_and_refund_numbers_are_idempotent() {
        let mut order = order(Channel::Wechat, "00");
        let mut ids = 0;
        let mut next_id = || {
            ids += 1;
            format!("RID{ids}")
        };
        let RefundDecision::Accepted { refund, new: true } =
            order.request_refund("R1", 600, &mut next_id, at(1))
        else {
            panic!("the first refund is taken");
        };
        assert_eq!(refund.refund_id, "RID1");
        assert_eq!(
            order.request_refund("R1", 600, &mut next_id, at(2)),
            RefundDecision::Accepted {
                refund: refund.clone(),
                new: false
            },
            "a retry is the same refund"
        );
        assert_eq!(
            order.request_refund("R1", 500, &mut next_id, at(2)),
            RefundDecision::NumberReused { amount_fen: 600 }
        );
        assert_eq!(
            order.request_refund("R2", 401, &mut next_id, at(3)),
            RefundDecision::ExceedsPaid {
                refundable_fen: 400
            }
        );
        assert!(matches!(
            order.request_refund("R2", 400, &mut next_id, at(3)),
            RefundDecision::Accepted { new: true, .. }
        ));
        assert_eq!(order.refunded_fen(), 1000);
        assert_eq!(order.refunds.len(), 2);
        assert_eq!(
            order.request_refund("R3", 1, &mut next_id, at(4)),
            RefundDecision::ExceedsPaid { refundable_fen: 0 }
        );
    }

    #[test]
    fn refunds_of_code_09_process_for_20_seconds_then_succeed() {
        let mut slow = order(Channel::Alipay, "09");
        let RefundDecision::Accepted { refund, .. } =
            slow.request_refund("R1", 100, || "X".to_owned(), at(10))
        else {
            panic!("taken");
        };
        assert_eq!(refund.state(at(29)), SandboxRefundState::Processing);
        assert_eq!(
            refund.state(at(30)),
            SandboxRefundState::Succeeded { at: at(30) }
        );
        let mut quick = order(Channel::Alipay, "00");
        let RefundDecision::Accepted { refund, .. } =
            quick.request_refund("R1", 100, || "X".to_owned(), at(10))
        else {
            panic!("taken");
        };
        assert_eq!(
            refund.state(at(10)),
            SandboxRefundState::Succeeded { at: at(10) }
        );
    }

    #[test]
    fn unpaid_reversed_and_overdue_orders_are_not_refunded() {
        let id = || "X".to_owned();
        let mut waiting = order(Channel::Wechat, "02");
        assert_eq!(
            waiting.request_refund("R1", 1, id, at(1)),
            RefundDecision::NotPaid
        );
        let mut reversed = order(Channel::Wechat, "00");
        reversed.revoke(at(20));
        assert_eq!(
            reversed.request_refund("R1", 1, id, at(21)),
            RefundDecision::Reversed
        );
        let mut old = order(Channel::Wechat, "00");
        assert_eq!(
            old.request_refund("R1", 1, id, at(366 * 86_400)),
            RefundDecision::Overdue
        );
        let mut alipay = order(Channel::Alipay, "00");
        assert!(!alipay.refund_window_passed(at(80 * 86_400)));
        assert!(alipay.refund_window_passed(at(95 * 86_400)));
        assert_eq!(
            alipay.request_refund("R1", 1, id, at(95 * 86_400)),
            RefundDecision::Overdue
        );
    }

    #[test]
    fn wechat_takes_at_most_50_refunds_per_order() {
        let mut order = order(Channel::Wechat, "00");
        for n in 0..WECHAT_REFUNDS_MAX {
            let decision = order.request_refund(&format!("R{n}"), 1, || "X".to_owned(), at(1));
            assert!(matches!(
                decision,
                RefundDecision::Accepted { new: true, .. }
            ));
        }
        assert_eq!(
            order.request_refund("R50", 1, || "X".to_owned(), at(1)),
            RefundDecision::TooMany
        );
    }
}
