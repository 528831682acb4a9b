//! China Standard Time, the channels' calendar: UTC+8 all year, no daylight
//! saving. Statement days, Alipay's same-day revoke window and the
//! channels' timestamps (`yyyyMMddHHmmss`, `yyyy-MM-dd HH:mm:ss`) are all
//! China time. The one place that offset is written down.

use chrono::{DateTime, FixedOffset, NaiveDate, NaiveDateTime, NaiveTime, TimeZone, Utc};

/// China Standard Time's offset from UTC, in seconds.
pub const CHINA_UTC_OFFSET_SECS: i32 = 8 * 3600;

/// China Standard Time as a chrono offset.
pub fn china_time() -> FixedOffset {
    // 8 hours is within the ±24 h that FixedOffset accepts.
    FixedOffset::east_opt(CHINA_UTC_OFFSET_SECS)
        .unwrap_or_else(|| unreachable!("UTC+8 is a valid offset"))
}

/// The China-time calendar date of an instant.
pub fn china_date(at: DateTime<Utc>) -> NaiveDate {
    at.with_timezone(&china_time()).date_naive()
}

/// A China-time wall-clock reading as an instant. A fixed offset has
/// exactly one instant for every reading.
pub fn from_china_local(local: NaiveDateTime) -> DateTime<Utc> {
    china_time()
        .from_local_datetime(&local)
        .single()
        .unwrap_or_else(|| unreachable!("a fixed offset maps every local time once"))
        .with_timezone(&Utc)
}

/// The instant a China-time calendar day begins (its midnight).
pub fn china_midnight(date: NaiveDate) -> DateTime<Utc> {
    from_china_local(date.and_time(NaiveTime::MIN))
}

/// The China-time midnight that ends the China day of `at`: when an Alipay
/// revoke window closes.
pub fn china_day_end(at: DateTime<Utc>) -> DateTime<Utc> {
    let date = china_date(at);
    china_midnight(date.succ_opt().unwrap_or(date))
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    #[test]
    fn the_china_day_starts_at_16_00_utc() {
        // 15:59:59 UTC is still the 21st in China; 16:00:00 UTC is the 22nd.
        let before = Utc.with_ymd_and_hms(2026, 11, 21, 15, 59, 59).unwrap();
        let after = Utc.with_ymd_and_hms(2026, 11, 21, 16, 0, 0).unwrap();
        assert_eq!(
            china_date(before),
            NaiveDate::from_ymd_opt(2026, 11, 21).unwrap()
        );
        assert_eq!(
            china_date(after),
            NaiveDate::from_ymd_opt(2026, 11, 22).unwrap()
        );
        assert_eq!(china_time().local_minus_utc(), 28_800);
        let day = NaiveDate::from_ymd_opt(2026, 11, 22).unwrap();
        assert_eq!(china_midnight(day), after);
        assert_eq!(china_day_end(before), after);
    }
}
