//! 和暦 — Japanese era dates for the screens (birth dates as staff read them on forms).
//!
//! The card holds the birth date as `YYYYMMDD` (Gregorian). Each era starts on the
//! day of its change (明治 on 1868-01-25, the Gregorian day of 慶応4年1月1日: no
//! living resident was born before it); the first year of an era is written 元年.

/// One era: its name and first day.
struct Era {
    name: &'static str,
    first: (u16, u8, u8),
}

const ERAS: [Era; 5] = [
    Era {
        name: "令和",
        first: (2019, 5, 1),
    },
    Era {
        name: "平成",
        first: (1989, 1, 8),
    },
    Era {
        name: "昭和",
        first: (1926, 12, 25),
    },
    Era {
        name: "大正",
        first: (1912, 7, 30),
    },
    Era {
        name: "明治",
        first: (1868, 1, 25),
    },
];

/// A checked Gregorian date.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Date {
    year: u16,
    month: u8,
    day: u8,
}

impl Date {
    /// Parses `YYYYMMDD`; `None` unless it is a real calendar date.
    pub fn parse_yyyymmdd(s: &str) -> Option<Self> {
        if s.len() != 8 || !s.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let year: u16 = s[..4].parse().ok()?;
        let month: u8 = s[4..6].parse().ok()?;
        let day: u8 = s[6..].parse().ok()?;
        let leap =
            (year.is_multiple_of(4) && !year.is_multiple_of(100)) || year.is_multiple_of(400);
        let days = match month {
            1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
            4 | 6 | 9 | 11 => 30,
            2 if leap => 29,
            2 => 28,
            _ => return None,
        };
        (1..=days)
            .contains(&day)
            .then_some(Self { year, month, day })
    }

    /// `昭和60年4月1日`, or `None` before 明治.
    pub fn wareki(self) -> Option<String> {
        let era = ERAS
            .iter()
            .find(|e| (self.year, self.month, self.day) >= e.first)?;
        let n = self.year - era.first.0 + 1;
        let year = if n == 1 {
            "元".to_owned()
        } else {
            n.to_string()
        };
        Some(format!(
            "{}{}年{}月{}日",
            era.name, year, self.month, self.day
        ))
    }

    /// `1985年4月1日`.
    pub fn seireki(self) -> String {
        format!("{}年{}月{}日", self.year, self.month, self.day)
    }
}

/// `昭和60年4月1日（1985年4月1日）` for a `YYYYMMDD` birth date; the raw text when it
/// is not a date (staff see what the card holds).
pub fn birth_date_label(yyyymmdd: &str) -> String {
    match Date::parse_yyyymmdd(yyyymmdd) {
        Some(d) => match d.wareki() {
            Some(w) => format!("{w}（{}）", d.seireki()),
            None => d.seireki(),
        },
        None => yyyymmdd.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(s: &str) -> Option<String> {
        Date::parse_yyyymmdd(s).and_then(Date::wareki)
    }

    #[test]
    fn era_boundaries_and_first_years() {
        assert_eq!(w("19850401").as_deref(), Some("昭和60年4月1日"));
        assert_eq!(w("19890107").as_deref(), Some("昭和64年1月7日"));
        assert_eq!(w("19890108").as_deref(), Some("平成元年1月8日"));
        assert_eq!(w("20190430").as_deref(), Some("平成31年4月30日"));
        assert_eq!(w("20190501").as_deref(), Some("令和元年5月1日"));
        assert_eq!(w("19261225").as_deref(), Some("昭和元年12月25日"));
        assert_eq!(w("19120730").as_deref(), Some("大正元年7月30日"));
        assert_eq!(w("20240229").as_deref(), Some("令和6年2月29日"));
    }

    #[test]
    fn impossible_dates_are_shown_as_read() {
        assert_eq!(Date::parse_yyyymmdd("20230229"), None);
        assert_eq!(Date::parse_yyyymmdd("1985041"), None);
        assert_eq!(birth_date_label("19851301"), "19851301");
        assert_eq!(
            birth_date_label("19850401"),
            "昭和60年4月1日（1985年4月1日）"
        );
    }
}
