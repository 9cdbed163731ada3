//! Civil dates, Japanese age counting, fiscal years, national holidays and business days.
//!
//! Dates here are civil dates in Japan time (Asia/Tokyo); the engine never reads a
//! clock, so the server's time zone cannot shift a deadline.
//!
//! Holidays are computed from the rules of 国民の祝日に関する法律 rather than taken
//! from a crate: the `holiday_jp` crate (0.1.2) is an unmaintained table that predates
//! the 2019–2021 changes, and the rules below are short and testable. The equinox days
//! use the customary formula, which matches the official announcements (官報, each
//! February for the next year) for 1980–2099; a change of law is a code change here.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A civil date (proleptic Gregorian), ordered chronologically.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Date {
    year: i32,
    month: u8,
    day: u8,
}

/// Why a text is not a date.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a date (YYYY-MM-DD): {0:?}")]
pub struct DateError(pub String);

fn is_leap(year: i32) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

fn days_in_month(year: i32, month: u8) -> u8 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if is_leap(year) => 29,
        _ => 28,
    }
}

impl Date {
    /// The date, if it exists.
    pub fn new(year: i32, month: u8, day: u8) -> Option<Date> {
        if !(1..=12).contains(&month) || day == 0 || day > days_in_month(year, month) {
            return None;
        }
        Some(Date { year, month, day })
    }

    /// Year.
    pub fn year(self) -> i32 {
        self.year
    }
    /// Month 1–12.
    pub fn month(self) -> u8 {
        self.month
    }
    /// Day of the month.
    pub fn day(self) -> u8 {
        self.day
    }

    /// Days since 1970-01-01 (H. Hinnant's days_from_civil).
    pub fn to_days(self) -> i64 {
        let y = i64::from(self.year) - i64::from(self.month <= 2);
        let era = y.div_euclid(400);
        let yoe = y - era * 400;
        let m = i64::from(self.month);
        let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(self.day) - 1;
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        era * 146_097 + doe - 719_468
    }

    /// The date `days` after 1970-01-01.
    pub fn from_days(days: i64) -> Date {
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z - era * 146_097;
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = (doy - (153 * mp + 2) / 5 + 1) as u8;
        let month = (if mp < 10 { mp + 3 } else { mp - 9 }) as u8;
        let year = (yoe + era * 400 + i64::from(month <= 2)) as i32;
        Date { year, month, day }
    }

    /// This date moved by `n` calendar days.
    pub fn add_days(self, n: i64) -> Date {
        Date::from_days(self.to_days() + n)
    }

    /// The same day `n` months later, or that month's last day when it has no such day.
    pub fn add_months(self, n: i64) -> Date {
        let total = i64::from(self.year) * 12 + i64::from(self.month) - 1 + n;
        let year = total.div_euclid(12) as i32;
        let month = (total.rem_euclid(12) + 1) as u8;
        Date {
            year,
            month,
            day: self.day.min(days_in_month(year, month)),
        }
    }

    /// Day of the week, 0 = Sunday … 6 = Saturday.
    pub fn weekday(self) -> u8 {
        // 1970-01-01 was a Thursday (4).
        (self.to_days() + 4).rem_euclid(7) as u8
    }

    /// The fiscal year (年度, April–March) this date belongs to, named by its starting year.
    pub fn fiscal_year(self) -> i32 {
        if self.month >= 4 {
            self.year
        } else {
            self.year - 1
        }
    }

    /// Parse `YYYY-MM-DD`.
    pub fn parse(text: &str) -> Result<Date, DateError> {
        let err = || DateError(text.to_owned());
        let mut parts = text.splitn(3, '-');
        let (Some(y), Some(m), Some(d)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(err());
        };
        if y.len() != 4 || m.len() != 2 || d.len() != 2 {
            return Err(err());
        }
        let year = y.parse().map_err(|_| err())?;
        let month = m.parse().map_err(|_| err())?;
        let day = d.parse().map_err(|_| err())?;
        Date::new(year, month, day).ok_or_else(err)
    }
}

impl fmt::Display for Date {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}-{:02}-{:02}", self.year, self.month, self.day)
    }
}

impl Serialize for Date {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Date {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Date, D::Error> {
        let text = String::deserialize(d)?;
        Date::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// Age on `on` as the law counts it: 年齢計算ニ関スル法律 with 民法143条 make a person
/// one year older at the end of the day before the birthday, so on that day the new age
/// is already reached (a child born on April 1 belongs to the school year before).
/// Born on February 29: the age is reached on February 28 in common years.
pub fn age_on(birth: Date, on: Date) -> i64 {
    let next = on.add_days(1);
    let mut age = i64::from(next.year) - i64::from(birth.year);
    if (next.month, next.day) < (birth.month, birth.day) {
        age -= 1;
    }
    age.max(0)
}

/// Age at the end of the fiscal year containing `on` (March 31): the basis of school
/// grades (学年) and of "until the end of the fiscal year in which the child turns 18"
/// (児童手当).
pub fn age_at_fiscal_year_end(birth: Date, on: Date) -> i64 {
    let end = Date {
        year: on.fiscal_year() + 1,
        month: 3,
        day: 31,
    };
    age_on(birth, end)
}

/// The n-th (1-based) Monday of a month.
fn nth_monday(year: i32, month: u8, n: u8) -> Date {
    let first = Date {
        year,
        month,
        day: 1,
    };
    let offset = (8 - first.weekday()) % 7; // days to the first Monday
    Date {
        year,
        month,
        day: 1 + offset + 7 * (n - 1),
    }
}

/// 春分日 / 秋分日 by the customary formula (valid 1980–2099), in integer arithmetic.
fn equinox_day(year: i32, base_e7: i64) -> u8 {
    let y = i64::from(year) - 1980;
    ((base_e7 + 2_421_940 * y).div_euclid(10_000_000) - y.div_euclid(4)) as u8
}

/// The name of the national holiday on `date` under the law in force since 2020
/// (including 振替休日 and 国民の休日), or `None`.
pub fn holiday_name(date: Date) -> Option<&'static str> {
    if let Some(name) = base_holiday(date) {
        return Some(name);
    }
    // 振替休日 (3条2項): the first non-holiday day after a holiday falling on Sunday.
    let mut prev = date.add_days(-1);
    while base_holiday(prev).is_some() {
        if prev.weekday() == 0 {
            return Some("振替休日");
        }
        prev = prev.add_days(-1);
    }
    // 国民の休日 (3条3項): a day between two holidays.
    if date.weekday() != 0
        && base_holiday(date.add_days(-1)).is_some()
        && base_holiday(date.add_days(1)).is_some()
    {
        return Some("国民の休日");
    }
    None
}

/// Holidays named in 2条 of the law (no substitutes).
fn base_holiday(date: Date) -> Option<&'static str> {
    let (y, m, d) = (date.year, date.month, date.day);
    let name = match (m, d) {
        (1, 1) => "元日",
        (2, 11) => "建国記念の日",
        (2, 23) if y >= 2020 => "天皇誕生日",
        (4, 29) => "昭和の日",
        (5, 3) => "憲法記念日",
        (5, 4) => "みどりの日",
        (5, 5) => "こどもの日",
        (8, 11) if y >= 2016 => "山の日",
        (11, 3) => "文化の日",
        (11, 23) => "勤労感謝の日",
        _ => "",
    };
    if !name.is_empty() {
        return Some(name);
    }
    if (m, d) == (3, equinox_day(y, 208_431_000)) {
        return Some("春分の日");
    }
    if (m, d) == (9, equinox_day(y, 232_488_000)) {
        return Some("秋分の日");
    }
    let monday = |n| date == nth_monday(y, m, n);
    match m {
        1 if monday(2) => Some("成人の日"),
        7 if monday(3) => Some("海の日"),
        9 if monday(3) => Some("敬老の日"),
        10 if monday(2) => Some("スポーツの日"),
        _ => None,
    }
}

/// Whether the city hall is closed on `date`: Saturdays, Sundays, national holidays
/// (行政機関の休日に関する法律 and the city's 休日条例) and the year-end closure
/// 12/29–1/3.
pub fn is_closed(date: Date) -> bool {
    let wd = date.weekday();
    wd == 0
        || wd == 6
        || (date.month == 12 && date.day >= 29)
        || (date.month == 1 && date.day <= 3)
        || holiday_name(date).is_some()
}

/// `date` itself if the city hall is open then, else the next business day.
pub fn next_business_day(date: Date) -> Date {
    let mut d = date;
    while is_closed(d) {
        d = d.add_days(1);
    }
    d
}

/// The `n`-th business day after `date` (the day itself not counted).
pub fn add_business_days(date: Date, n: u32) -> Date {
    let mut d = date;
    let mut left = n;
    while left > 0 {
        d = d.add_days(1);
        if !is_closed(d) {
            left -= 1;
        }
    }
    d
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn d(s: &str) -> Date {
        Date::parse(s).unwrap()
    }

    #[test]
    fn rules_days_round_trip_and_weekday() {
        for s in [
            "1970-01-01",
            "2000-02-29",
            "2024-12-31",
            "2026-03-01",
            "1899-12-31",
        ] {
            assert_eq!(Date::from_days(d(s).to_days()), d(s));
        }
        assert_eq!(d("2025-04-01").weekday(), 2);
        assert_eq!(d("2024-02-28").add_days(1), d("2024-02-29"));
        assert!(Date::parse("2025-02-29").is_err());
        assert_eq!(d("2025-11-30").add_months(3), d("2026-02-28"));
        assert_eq!(d("2025-05-10").add_months(3), d("2025-08-10"));
        assert!(Date::parse("2025-4-1").is_err());
    }

    #[test]
    fn rules_japanese_age_counting() {
        // The age increases on the day before the birthday.
        assert_eq!(age_on(d("2018-04-02"), d("2024-03-31")), 5);
        assert_eq!(age_on(d("2018-04-02"), d("2024-04-01")), 6);
        assert_eq!(age_on(d("2018-04-01"), d("2024-03-31")), 6);
        assert_eq!(age_on(d("1950-06-10"), d("2025-06-08")), 74);
        assert_eq!(age_on(d("1950-06-10"), d("2025-06-09")), 75);
        // Born on February 29: older on February 28 in a common year.
        assert_eq!(age_on(d("2004-02-29"), d("2025-02-27")), 20);
        assert_eq!(age_on(d("2004-02-29"), d("2025-02-28")), 21);
        assert_eq!(age_on(d("2004-02-29"), d("2028-02-28")), 24);
        // Born 2018-04-01 is 6 at the end of FY2023, so starts school in FY2024 (早生まれ);
        // born 2018-04-02 one year later. Grade = age at the fiscal year end - 6.
        assert_eq!(age_at_fiscal_year_end(d("2018-04-01"), d("2023-10-01")), 6);
        assert_eq!(age_at_fiscal_year_end(d("2018-04-02"), d("2023-10-01")), 5);
    }

    #[test]
    fn rules_holidays() {
        let named = |s| holiday_name(d(s));
        assert_eq!(named("2025-01-13"), Some("成人の日"));
        assert_eq!(named("2025-03-20"), Some("春分の日"));
        assert_eq!(named("2025-09-23"), Some("秋分の日"));
        assert_eq!(named("2024-09-22"), Some("秋分の日"));
        assert_eq!(named("2025-02-24"), Some("振替休日")); // 天皇誕生日 on Sunday
        assert_eq!(named("2025-05-06"), Some("振替休日")); // みどりの日 5/4 on Sunday
        assert_eq!(named("2026-09-22"), Some("国民の休日"));
        assert_eq!(named("2026-05-06"), Some("振替休日")); // 5/3 Sunday
        assert_eq!(named("2025-07-21"), Some("海の日"));
        assert_eq!(named("2025-10-13"), Some("スポーツの日"));
        assert_eq!(named("2025-04-30"), None);
        assert_eq!(named("2030-03-20"), Some("春分の日"));
    }

    #[test]
    fn rules_business_days_and_closure() {
        assert_eq!(next_business_day(d("2025-12-27")), d("2026-01-05"));
        assert_eq!(next_business_day(d("2025-12-26")), d("2025-12-26"));
        assert_eq!(add_business_days(d("2025-12-26"), 1), d("2026-01-05"));
        assert_eq!(next_business_day(d("2025-05-03")), d("2025-05-07"));
    }
}
