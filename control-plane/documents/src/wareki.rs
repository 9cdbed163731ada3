//! 和暦 — Japanese era dates as printed on the city's forms.
//!
//! `format("2026-02-24")` gives 「令和8年2月24日」; the first year of an era is written
//! 元年 (「令和元年5月1日」). An era starts on the day its emperor acceded (大正
//! 1912-07-30, 昭和 1926-12-25, 平成 1989-01-08, 令和 2019-05-01); 明治 is counted from
//! 1868-01-25 (明治元年 in the Gregorian calendar: the 改暦 of 1873 made earlier dates
//! lunisolar, and no resident record needs them), so anything earlier is an error rather
//! than a guess.
//!
//! Templates never compute eras: [`crate::data`] adds a `…_wareki` sibling next to every
//! ISO date in the data handed to a template.

use std::fmt;

use time::macros::{date, format_description};
use time::Date;

/// An era (元号) and the day it began.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Era {
    /// The era's name as printed (令和, 平成, ...).
    pub name: &'static str,
    /// The first day of the era (year 1 = 元年).
    pub start: Date,
}

/// The eras this module knows, newest first.
pub const ERAS: [Era; 5] = [
    Era {
        name: "令和",
        start: date!(2019 - 05 - 01),
    },
    Era {
        name: "平成",
        start: date!(1989 - 01 - 08),
    },
    Era {
        name: "昭和",
        start: date!(1926 - 12 - 25),
    },
    Era {
        name: "大正",
        start: date!(1912 - 07 - 30),
    },
    Era {
        name: "明治",
        start: date!(1868 - 01 - 25),
    },
];

/// Why a date could not be written in 和暦.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WarekiError {
    /// The text is not an ISO calendar date (`YYYY-MM-DD`, a real day).
    #[error("not an ISO date (YYYY-MM-DD)")]
    NotIsoDate,
    /// The date is before 明治 (1868-01-25), where no era is counted here.
    #[error("dates before 明治 (1868-01-25) have no 和暦 here")]
    BeforeMeiji,
}

/// A date written in an era: era name, year of the era, month, day.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Wareki {
    /// The era.
    pub era: &'static str,
    /// The year of the era, 1 for 元年.
    pub year: i32,
    /// Month, 1–12.
    pub month: u8,
    /// Day of the month.
    pub day: u8,
}

impl fmt::Display for Wareki {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.year == 1 {
            write!(f, "{}元年{}月{}日", self.era, self.month, self.day)
        } else {
            write!(
                f,
                "{}{}年{}月{}日",
                self.era, self.year, self.month, self.day
            )
        }
    }
}

/// Parses an ISO date (`YYYY-MM-DD`, exactly) into a calendar date.
pub fn parse_iso(text: &str) -> Result<Date, WarekiError> {
    // The format accepts only four-digit years with zero-padded month and day, so a
    // free-text value that merely contains a date is never taken for one.
    let format = format_description!("[year repr:full padding:zero]-[month]-[day]");
    if text.len() != 10 {
        return Err(WarekiError::NotIsoDate);
    }
    Date::parse(text, &format).map_err(|_| WarekiError::NotIsoDate)
}

/// The era date of a calendar date.
pub fn from_date(date: Date) -> Result<Wareki, WarekiError> {
    let era = ERAS
        .iter()
        .find(|era| date >= era.start)
        .ok_or(WarekiError::BeforeMeiji)?;
    Ok(Wareki {
        era: era.name,
        year: date.year() - era.start.year() + 1,
        month: u8::from(date.month()),
        day: date.day(),
    })
}

/// Formats an ISO date (`YYYY-MM-DD`) in 和暦: 「令和8年2月24日」, 「令和元年5月1日」.
pub fn format(iso_date: &str) -> Result<String, WarekiError> {
    Ok(from_date(parse_iso(iso_date)?)?.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_era_boundary_the_day_before_and_the_day_of() {
        let cases = [
            ("2019-04-30", "平成31年4月30日"),
            ("2019-05-01", "令和元年5月1日"),
            ("1989-01-07", "昭和64年1月7日"),
            ("1989-01-08", "平成元年1月8日"),
            ("1926-12-24", "大正15年12月24日"),
            ("1926-12-25", "昭和元年12月25日"),
            ("1912-07-29", "明治45年7月29日"),
            ("1912-07-30", "大正元年7月30日"),
            ("1868-01-25", "明治元年1月25日"),
        ];
        for (iso, expected) in cases {
            assert_eq!(format(iso).as_deref(), Ok(expected), "{iso}");
        }
        assert_eq!(format("1868-01-24"), Err(WarekiError::BeforeMeiji));
    }

    #[test]
    fn ordinary_dates_and_second_years() {
        assert_eq!(format("2026-02-24").as_deref(), Ok("令和8年2月24日"));
        assert_eq!(format("2020-01-01").as_deref(), Ok("令和2年1月1日"));
        assert_eq!(format("1990-01-08").as_deref(), Ok("平成2年1月8日"));
        assert_eq!(format("1980-04-01").as_deref(), Ok("昭和55年4月1日"));
        assert_eq!(format("2024-02-29").as_deref(), Ok("令和6年2月29日"));
    }

    #[test]
    fn anything_but_a_real_iso_date_is_refused() {
        for text in [
            "",
            "2026-2-24",
            "2026/02/24",
            "2026-02-30",
            "2023-02-29",
            "2026-13-01",
            " 2026-02-24",
            "2026-02-24T00:00",
            "令和8年2月24日",
            "+02026-02-24",
        ] {
            assert_eq!(format(text), Err(WarekiError::NotIsoDate), "{text:?}");
        }
    }
}
