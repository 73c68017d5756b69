//! Vietnam's civil time: UTC+7 all year (no daylight saving since 1975),
//! through the `time` crate. Receipts print it, daily limits reset at its
//! midnight, the settlement cut-off is set in it, and the console filters
//! by its dates. Imports nothing of the switch: every layer may use it.

use time::{Date, Month, OffsetDateTime, Time, UtcOffset};

/// UTC+7.
fn offset() -> UtcOffset {
    UtcOffset::from_whole_seconds(7 * 3_600).expect("UTC+7 is a valid offset")
}

/// The civil date and time at `ms` (UNIX milliseconds), or `None` beyond
/// the years `time` represents (±9999): no stored time is that far.
fn at(ms: i64) -> Option<OffsetDateTime> {
    let utc = OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).ok()?;
    utc.checked_to_offset(offset())
}

/// `YYYY-MM-DD HH:MM:SS (UTC+7)`, as receipts and the console print it.
pub fn date_time(ms: i64) -> String {
    match at(ms) {
        Some(t) => format!(
            "{:04}-{:02}-{:02} {:02}:{:02}:{:02} (UTC+7)",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute(),
            t.second()
        ),
        None => format!("{ms} ms after 1970 (out of range)"),
    }
}

/// The civil date at `ms`, `YYYY-MM-DD`.
pub fn date(ms: i64) -> String {
    date_time(ms)[..10].to_string()
}

/// The number of the civil day at `ms`, counted from 1970-01-01: daily
/// totals are kept per day number, so they reset at local midnight.
pub fn day_number(ms: i64) -> i64 {
    match at(ms) {
        Some(t) => {
            i64::from(t.date().to_julian_day() - OffsetDateTime::UNIX_EPOCH.date().to_julian_day())
        }
        None => (ms + 7 * 3_600_000).div_euclid(86_400_000),
    }
}

/// The number of the civil month at `ms`, counted from January 1970
/// (January 1970 is 0): monthly totals are kept per month number, so they
/// reset at local midnight on the first of the month.
pub fn month_number(ms: i64) -> i64 {
    match at(ms) {
        Some(t) => (i64::from(t.year()) - 1970) * 12 + i64::from(u8::from(t.month())) - 1,
        // Beyond ±9999 years: no stored time is that far; a 30-day month
        // keeps the number monotonic.
        None => day_number(ms).div_euclid(30),
    }
}

/// The civil day number of the first day of month number `month`.
pub fn month_first_day(month: i64) -> i64 {
    let year = 1970 + month.div_euclid(12);
    let m = u8::try_from(month.rem_euclid(12) + 1).expect("1 to 12");
    match (i32::try_from(year).ok(), Month::try_from(m).ok()) {
        (Some(y), Some(m)) => match Date::from_calendar_date(y, m, 1) {
            Ok(d) => {
                i64::from(d.to_julian_day() - OffsetDateTime::UNIX_EPOCH.date().to_julian_day())
            }
            Err(_) => month * 30,
        },
        _ => month * 30,
    }
}

/// When civil day number `day` begins, in UNIX milliseconds (its midnight
/// in UTC+7).
pub fn day_start_ms(day: i64) -> i64 {
    day * 86_400_000 - 7 * 3_600_000
}

/// A month number as `YYYY-MM`.
pub fn month_label(month: i64) -> String {
    format!(
        "{:04}-{:02}",
        1970 + month.div_euclid(12),
        month.rem_euclid(12) + 1
    )
}

/// The latest time of day `hour:minute` (civil) at or before `now_ms`, in
/// UNIX milliseconds; `None` for an hour or minute out of range.
pub fn last_time_of_day_ms(hour: u8, minute: u8, now_ms: i64) -> Option<i64> {
    let now = at(now_ms)?;
    let time_of_day = Time::from_hms(hour, minute, 0).ok()?;
    let today = now.replace_time(time_of_day);
    let last = if today <= now {
        today
    } else {
        today.checked_sub(time::Duration::DAY)?
    };
    i64::try_from(last.unix_timestamp_nanos() / 1_000_000).ok()
}

/// Whether `s` is a real `YYYY-MM-DD` date.
pub fn is_date(s: &str) -> bool {
    let shaped = s.len() == 10
        && s.bytes().enumerate().all(|(i, c)| match i {
            4 | 7 => c == b'-',
            _ => c.is_ascii_digit(),
        });
    // Only ASCII from here, so the slices fall on character boundaries.
    let number = |r: std::ops::Range<usize>| s[r].parse::<u16>().unwrap_or(0);
    shaped
        && u8::try_from(number(5..7))
            .ok()
            .and_then(|m| Month::try_from(m).ok())
            .zip(u8::try_from(number(8..10)).ok())
            .is_some_and(|(m, d)| Date::from_calendar_date(i32::from(number(0..4)), m, d).is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_time_is_utc_plus_seven() {
        let cases: &[(i64, &str, i64)] = &[
            (0, "1970-01-01 07:00:00 (UTC+7)", 0),
            (-1, "1970-01-01 06:59:59 (UTC+7)", 0),
            (17 * 3_600_000 - 1, "1970-01-01 23:59:59 (UTC+7)", 0),
            (17 * 3_600_000, "1970-01-02 00:00:00 (UTC+7)", 1),
            (1_795_780_800_000, "2026-11-27 19:00:00 (UTC+7)", 20_784),
            // A leap day, at its civil midnight.
            (1_709_139_600_000, "2024-02-29 00:00:00 (UTC+7)", 19_782),
        ];
        for &(ms, shown, day) in cases {
            assert_eq!(date_time(ms), shown, "{ms}");
            assert_eq!(day_number(ms), day, "{ms}");
        }
        assert_eq!(date(1_795_780_800_000), "2026-11-27");
    }

    #[test]
    fn months_turn_at_civil_midnight_on_the_first() {
        // 2026-12-01 00:00 (UTC+7) is 2026-11-30 17:00 UTC.
        let december = 1_796_058_000_000;
        assert_eq!(date_time(december), "2026-12-01 00:00:00 (UTC+7)");
        let cases: &[(i64, &str)] = &[
            (0, "1970-01"),
            (december - 1, "2026-11"),
            (december, "2026-12"),
            // New year, at civil midnight: 2027-01-01 00:00 (UTC+7).
            (december + 31 * 86_400_000 - 1, "2026-12"),
            (december + 31 * 86_400_000, "2027-01"),
            // A leap year's February ends on the 29th.
            (1_709_139_600_000 + 86_400_000 - 1, "2024-02"),
            (1_709_139_600_000 + 86_400_000, "2024-03"),
        ];
        for &(ms, month) in cases {
            assert_eq!(month_label(month_number(ms)), month, "{}", date_time(ms));
        }
        assert_eq!(month_number(december) - month_number(december - 1), 1);
    }

    #[test]
    fn the_last_time_of_day_is_today_once_passed_and_yesterday_before() {
        // 2026-11-27 19:00 (UTC+7).
        let now = 1_795_780_800_000;
        let today_23 = now + 4 * 3_600_000;
        assert_eq!(last_time_of_day_ms(19, 0, now), Some(now));
        assert_eq!(last_time_of_day_ms(23, 0, now), Some(today_23 - 86_400_000));
        assert_eq!(last_time_of_day_ms(23, 0, today_23), Some(today_23));
        assert_eq!(last_time_of_day_ms(0, 0, now), Some(now - 19 * 3_600_000));
        assert_eq!(last_time_of_day_ms(24, 0, now), None);
        assert_eq!(last_time_of_day_ms(12, 60, now), None);
    }

    #[test]
    fn only_real_dates_are_dates() {
        for good in ["2026-12-02", "2024-02-29", "0001-01-01"] {
            assert!(is_date(good), "{good}");
        }
        for bad in [
            "",
            "2026-13-01",
            "2026-02-30",
            "2025-02-29",
            "2026-1-02",
            "2026/12/02",
            "2026-12-0x",
            "+026-12-02",
            "2026-12-02 ",
            "202é-12-0",
        ] {
            assert!(!is_date(bad), "{bad:?}");
        }
    }
}
