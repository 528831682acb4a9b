//! Every timing and limit of the business rules, in one value.
//!
//! The defaults are the channels' documented rules (see docs/rules.md,
//! whose sources say where each comes from). Times are decided with the policy in force and
//! recorded in the events, so replaying a history never depends on today's
//! configuration.

use chrono::{DateTime, Datelike, Duration, Months, Utc, Weekday};
use serde::{Deserialize, Serialize};

use crate::calendar::{china_date, china_midnight};
use crate::channel::Channel;

/// How long after payment a channel accepts a revoke.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RevokeWindow {
    /// Up to this many days after submission (WeChat: 7).
    Days(u32),
    /// Only on the China-time calendar day of submission (Alipay).
    SameChinaDay,
}

impl RevokeWindow {
    /// Whether an order submitted at `submitted_at` may still be revoked at `now`.
    pub fn allows(self, submitted_at: DateTime<Utc>, now: DateTime<Utc>) -> bool {
        match self {
            RevokeWindow::Days(days) => now < submitted_at + Duration::days(i64::from(days)),
            RevokeWindow::SameChinaDay => china_date(now) == china_date(submitted_at),
        }
    }
}

/// The rules that differ per channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelRules {
    pub revoke_window: RevokeWindow,
    /// Refunds are accepted until this many calendar months after payment.
    pub refund_window_months: u32,
    /// At most this many refunds per order (failed ones included, as the channel counts them).
    pub refunds_per_order_max: u32,
}

impl ChannelRules {
    /// Whether a payment made at `paid_at` may still be refunded at `now`.
    pub fn refund_window_allows(&self, paid_at: DateTime<Utc>, now: DateTime<Utc>) -> bool {
        match paid_at.checked_add_months(Months::new(self.refund_window_months)) {
            Some(closes_at) => now < closes_at,
            None => false,
        }
    }
}

/// Timings and limits of payment handling. Units are in the names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Policy {
    /// Time between queries while the customer types a password (3–5 s allowed).
    pub poll_interval_secs: u32,
    /// Revoke when the payment is not certain this long after submission.
    pub pay_deadline_secs: u32,
    /// WeChat asks for at least this long between pay and revoke.
    pub revoke_earliest_after_submit_secs: u32,
    /// Delay before the first revoke retry; doubles each attempt up to the cap.
    pub revoke_retry_base_secs: u32,
    pub revoke_retry_cap_secs: u32,
    /// Revoke calls before the order is handed to an operator.
    pub revoke_attempts_max: u32,
    /// Delay before the first refund query; doubles each query up to the cap.
    pub refund_query_base_secs: u32,
    pub refund_query_cap_secs: u32,
    /// Refund calls (the first and resends after "refund not found") before an operator takes over.
    pub refund_attempts_max: u32,
    /// A refund not final by the end of this many working days (China
    /// calendar, Monday to Friday) after it was requested goes to an
    /// operator: WeChat gives bank-card refunds "three working days".
    pub refund_settle_working_days: u32,
    /// When set, a fixed time instead of the working days (for tests and
    /// for channels with a stricter promise).
    pub refund_settle_max_secs: Option<u32>,
    pub wechat: ChannelRules,
    pub alipay: ChannelRules,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            poll_interval_secs: 5,
            pay_deadline_secs: 30,
            revoke_earliest_after_submit_secs: 15,
            revoke_retry_base_secs: 5,
            revoke_retry_cap_secs: 60,
            revoke_attempts_max: 5,
            refund_query_base_secs: 10,
            refund_query_cap_secs: 3600,
            refund_attempts_max: 5,
            refund_settle_working_days: 3,
            refund_settle_max_secs: None,
            wechat: ChannelRules {
                revoke_window: RevokeWindow::Days(7),
                refund_window_months: 12,
                refunds_per_order_max: 50,
            },
            alipay: ChannelRules {
                revoke_window: RevokeWindow::SameChinaDay,
                refund_window_months: 3,
                refunds_per_order_max: 50,
            },
        }
    }
}

/// Why a policy is unusable; `field` names the setting.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("policy.{field}: {reason}")]
pub struct PolicyError {
    pub field: &'static str,
    pub reason: &'static str,
}

impl Policy {
    pub fn rules(&self, channel: Channel) -> &ChannelRules {
        match channel {
            Channel::Wechat => &self.wechat,
            Channel::Alipay => &self.alipay,
        }
    }

    /// Checks the settings that would make the rules loop or never act.
    pub fn validate(&self) -> Result<(), PolicyError> {
        let positive = [
            ("poll_interval_secs", self.poll_interval_secs),
            ("pay_deadline_secs", self.pay_deadline_secs),
            ("revoke_retry_base_secs", self.revoke_retry_base_secs),
            ("revoke_attempts_max", self.revoke_attempts_max),
            ("refund_query_base_secs", self.refund_query_base_secs),
            ("refund_attempts_max", self.refund_attempts_max),
            (
                "refund_settle_working_days",
                self.refund_settle_working_days,
            ),
            (
                "refund_settle_max_secs",
                self.refund_settle_max_secs.unwrap_or(1),
            ),
        ];
        for (field, value) in positive {
            if value == 0 {
                return Err(PolicyError {
                    field,
                    reason: "must be greater than 0",
                });
            }
        }
        if self.revoke_retry_cap_secs < self.revoke_retry_base_secs {
            return Err(PolicyError {
                field: "revoke_retry_cap_secs",
                reason: "must be at least revoke_retry_base_secs",
            });
        }
        if self.refund_query_cap_secs < self.refund_query_base_secs {
            return Err(PolicyError {
                field: "refund_query_cap_secs",
                reason: "must be at least refund_query_base_secs",
            });
        }
        Ok(())
    }

    pub fn poll_interval(&self) -> Duration {
        Duration::seconds(i64::from(self.poll_interval_secs))
    }

    pub fn pay_deadline(&self) -> Duration {
        Duration::seconds(i64::from(self.pay_deadline_secs))
    }

    pub fn revoke_earliest_after_submit(&self) -> Duration {
        Duration::seconds(i64::from(self.revoke_earliest_after_submit_secs))
    }

    /// The wait before revoke attempt `attempt + 1`, after `attempt` failed (from 1).
    pub fn revoke_retry_delay(&self, attempt: u32) -> Duration {
        backoff(
            self.revoke_retry_base_secs,
            self.revoke_retry_cap_secs,
            attempt,
        )
    }

    /// The wait before refund query number `queries + 1` (from 0).
    pub fn refund_query_delay(&self, queries: u32) -> Duration {
        backoff(
            self.refund_query_base_secs,
            self.refund_query_cap_secs,
            queries + 1,
        )
    }

    /// When a refund requested at `requested_at` must be final: the end of
    /// the China day `refund_settle_working_days` working days later (or
    /// `refund_settle_max_secs` after it, when set). Public holidays are not
    /// known to the ledger; a refund held up by one reaches an operator.
    pub fn refund_settle_by(&self, requested_at: DateTime<Utc>) -> DateTime<Utc> {
        if let Some(secs) = self.refund_settle_max_secs {
            return requested_at + Duration::seconds(i64::from(secs));
        }
        let mut day = china_date(requested_at);
        let mut working_days = 0;
        while working_days < self.refund_settle_working_days {
            let Some(next) = day.succ_opt() else { break };
            day = next;
            if !matches!(day.weekday(), Weekday::Sat | Weekday::Sun) {
                working_days += 1;
            }
        }
        china_midnight(day.succ_opt().unwrap_or(day))
    }
}

/// `base * 2^(step-1)`, capped.
fn backoff(base_secs: u32, cap_secs: u32, step: u32) -> Duration {
    let factor = 1u64 << step.saturating_sub(1).min(32);
    let secs = u64::from(base_secs)
        .saturating_mul(factor)
        .min(u64::from(cap_secs));
    Duration::seconds(i64::try_from(secs).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::calendar::china_day_end;
    use chrono::TimeZone;

    fn utc(y: i32, m: u32, d: u32, h: u32, min: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, m, d, h, min, 0).unwrap()
    }

    #[test]
    fn defaults_are_the_documented_rules() {
        let policy = Policy::default();
        assert_eq!(policy.poll_interval_secs, 5);
        assert_eq!(policy.pay_deadline_secs, 30);
        assert_eq!(policy.revoke_earliest_after_submit_secs, 15);
        assert_eq!(policy.revoke_attempts_max, 5);
        assert_eq!(policy.wechat.revoke_window, RevokeWindow::Days(7));
        assert_eq!(policy.alipay.revoke_window, RevokeWindow::SameChinaDay);
        assert_eq!(policy.wechat.refund_window_months, 12);
        assert_eq!(policy.alipay.refund_window_months, 3);
        assert_eq!(policy.wechat.refunds_per_order_max, 50);
        assert_eq!(policy.validate(), Ok(()));
    }

    #[test]
    fn a_zero_interval_is_refused_by_name() {
        let policy = Policy {
            poll_interval_secs: 0,
            ..Policy::default()
        };
        assert_eq!(policy.validate().unwrap_err().field, "poll_interval_secs");
    }

    #[test]
    fn alipay_revoke_window_is_the_china_calendar_day() {
        let window = RevokeWindow::SameChinaDay;
        // 15:00 UTC is 23:00 in China; 16:00 UTC is already the next China day.
        let submitted = utc(2026, 11, 22, 15, 0);
        assert!(window.allows(submitted, utc(2026, 11, 22, 15, 59)));
        assert!(!window.allows(submitted, utc(2026, 11, 22, 16, 0)));
        // 17:00 UTC on the 21st is 01:00 on the 22nd in China.
        assert!(window.allows(utc(2026, 11, 21, 17, 0), utc(2026, 11, 22, 15, 0)));
        assert_eq!(china_day_end(submitted), utc(2026, 11, 22, 16, 0));
    }

    #[test]
    fn wechat_revoke_window_is_seven_days() {
        let window = RevokeWindow::Days(7);
        let submitted = utc(2026, 11, 1, 10, 0);
        assert!(window.allows(submitted, utc(2026, 11, 8, 9, 59)));
        assert!(!window.allows(submitted, utc(2026, 11, 8, 10, 0)));
    }

    #[test]
    fn refund_windows_are_calendar_months() {
        let policy = Policy::default();
        let paid = utc(2026, 1, 31, 10, 0);
        // Three months after 31 January is 30 April (chrono clamps to the month's end).
        assert!(
            policy
                .alipay
                .refund_window_allows(paid, utc(2026, 4, 30, 9, 59))
        );
        assert!(
            !policy
                .alipay
                .refund_window_allows(paid, utc(2026, 4, 30, 10, 0))
        );
        assert!(
            policy
                .wechat
                .refund_window_allows(paid, utc(2027, 1, 31, 9, 0))
        );
        assert!(
            !policy
                .wechat
                .refund_window_allows(paid, utc(2027, 1, 31, 10, 0))
        );
    }

    #[test]
    fn retries_back_off_and_stop_growing_at_the_cap() {
        let policy = Policy::default();
        let secs: Vec<i64> = (1..=6)
            .map(|a| policy.revoke_retry_delay(a).num_seconds())
            .collect();
        assert_eq!(secs, vec![5, 10, 20, 40, 60, 60]);
        assert_eq!(policy.refund_query_delay(0).num_seconds(), 10);
        assert_eq!(policy.refund_query_delay(1).num_seconds(), 20);
        assert_eq!(policy.refund_query_delay(40).num_seconds(), 3600);
    }

    #[test]
    fn refunds_settle_within_three_working_days_of_the_china_calendar() {
        let policy = Policy::default();
        // Friday 2026-11-27, 15:00 in China: Mon, Tue, Wed; final by Wednesday's end.
        let friday = utc(2026, 11, 27, 7, 0);
        assert_eq!(policy.refund_settle_by(friday), utc(2026, 12, 2, 16, 0));
        // Saturday counts from Monday too: the same Wednesday.
        let saturday = utc(2026, 11, 28, 2, 0);
        assert_eq!(policy.refund_settle_by(saturday), utc(2026, 12, 2, 16, 0));
        // Monday: Tue, Wed, Thu.
        let monday = utc(2026, 11, 30, 2, 0);
        assert_eq!(policy.refund_settle_by(monday), utc(2026, 12, 3, 16, 0));
        // 23:30 Friday in China is 15:30 UTC, still Friday there.
        assert_eq!(
            policy.refund_settle_by(utc(2026, 11, 27, 15, 30)),
            utc(2026, 12, 2, 16, 0)
        );
        // Three calendar days (the old rule) would have escalated a Friday refund on Monday.
        assert!(policy.refund_settle_by(friday) > friday + Duration::days(3));
        let fixed = Policy {
            refund_settle_max_secs: Some(60),
            ..Policy::default()
        };
        assert_eq!(
            fixed.refund_settle_by(friday),
            friday + Duration::seconds(60)
        );
        let zero = Policy {
            refund_settle_max_secs: Some(0),
            ..Policy::default()
        };
        assert_eq!(zero.validate().unwrap_err().field, "refund_settle_max_secs");
    }
}
