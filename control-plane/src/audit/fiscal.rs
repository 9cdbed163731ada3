//! Japanese fiscal years (April–March, in Japan time) and the retention of audit
//! years (N8).
//!
//! Japan time is UTC+9 all year (Asia/Tokyo has had no daylight saving since 1951),
//! so a fixed offset is exact and no time-zone database is needed: the result never
//! depends on the server's zone. Civil dates are computed with Howard Hinnant's
//! `days_from_civil` algorithms (proleptic Gregorian calendar).

use super::AuditError;

/// Japan's offset from UTC, in milliseconds.
pub const JST_OFFSET_MS: i64 = 9 * 3_600_000;
const DAY_MS: i64 = 86_400_000;

/// The fewest fiscal years an audit year is kept after it closes (N8).
pub const MIN_RETENTION_YEARS: u16 = 5;

/// Days since 1970-01-01 of a civil date.
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12; // March = 0, so the leap day is the year's last day
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The civil (year, month) of a day counted from 1970-01-01.
fn year_month_from_days(days: i64) -> (i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month)
}

/// The fiscal year (年度) of an instant: the Japan-time date's year if it is in April
/// or later, else the year before. 2026-03-31T23:59 JST is FY2025;
/// 2026-04-01T00:00 JST (= 2026-03-31T15:00Z) is FY2026.
///
/// Instants before year 1 or after 65535 saturate; the control plane's own clock
/// never produces them.
pub fn fiscal_year_of(at_ms: i64) -> u16 {
    let days = at_ms.saturating_add(JST_OFFSET_MS).div_euclid(DAY_MS);
    let (year, month) = year_month_from_days(days);
    let fy = if month >= 4 { year } else { year - 1 };
    u16::try_from(fy.max(0)).unwrap_or(u16::MAX)
}

/// The instants bounding fiscal year `fy`, half-open: `start_ms` is April 1 00:00 JST
/// of `fy` (inclusive), `end_ms` is April 1 00:00 JST of `fy + 1` (exclusive).
pub fn fiscal_year_bounds(fy: u16) -> (i64, i64) {
    let start = |year: i64| days_from_civil(year, 4, 1) * DAY_MS - JST_OFFSET_MS;
    (start(i64::from(fy)), start(i64::from(fy) + 1))
}

/// How long closed audit years are kept.
///
/// A year's retention runs from the April 1 after it closes (the usual 起算日 of
/// Japanese public records), so with 5 years FY2020 (closed 2021-03-31) may go from
/// FY2026 on: at any time the current year and the 5 closed years before it are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetentionPolicy {
    years: u16,
}

impl Default for RetentionPolicy {
    fn default() -> Self {
        Self {
            years: MIN_RETENTION_YEARS,
        }
    }
}

impl RetentionPolicy {
    /// Keeps closed years for `years` full fiscal years; refuses fewer than
    /// [`MIN_RETENTION_YEARS`] (N8), so no configuration can shorten the legal minimum.
    pub fn new(years: u16) -> Result<Self, AuditError> {
        if years < MIN_RETENTION_YEARS {
            return Err(AuditError::Retention {
                years,
                min: MIN_RETENTION_YEARS,
            });
        }
        Ok(Self { years })
    }

    /// The number of closed fiscal years kept.
    pub fn years(&self) -> u16 {
        self.years
    }

    /// The oldest fiscal year that must still be kept at `now_ms`.
    pub fn oldest_kept(&self, now_ms: i64) -> u16 {
        // `max` again so that a value built by other means can never keep less.
        fiscal_year_of(now_ms).saturating_sub(self.years.max(MIN_RETENTION_YEARS))
    }

    /// Whether fiscal year `fy` may be deleted at `now_ms`: only when it is older than
    /// the retention period and its archive has been written (and verified) already.
    /// The current year is never older than the retention period.
    pub fn may_delete(&self, fy: u16, now_ms: i64, archived: bool) -> bool {
        archived && fy < self.oldest_kept(now_ms)
    }

    /// Among `years` (the fiscal years present in the store), those that may be
    /// deleted at `now_ms`, ascending and without repeats.
    pub fn deletable(
        &self,
        now_ms: i64,
        years: impl IntoIterator<Item = u16>,
        is_archived: impl Fn(u16) -> bool,
    ) -> Vec<u16> {
        let mut out: Vec<u16> = years
            .into_iter()
            .filter(|&fy| self.may_delete(fy, now_ms, is_archived(fy)))
            .collect();
        out.sort_unstable();
        out.dedup();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_round_trip_over_four_centuries() {
        // Every 1st of the month from 1900 to 2300 maps back to its year and month.
        for year in 1900..2300 {
            for month in 1..=12 {
                let d = days_from_civil(year, month, 1);
                assert_eq!(year_month_from_days(d), (year, month));
                assert_eq!(
                    year_month_from_days(d - 1).1,
                    if month == 1 { 12 } else { month - 1 }
                );
            }
        }
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
    }
}
