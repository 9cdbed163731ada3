//! Fiscal years in Japan time and the retention of audit years (N8).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use kakanai_control_plane::audit::{
    fiscal_year_bounds, fiscal_year_of, RetentionPolicy, MIN_RETENTION_YEARS,
};

const HOUR: i64 = 3_600_000;
/// 2025-04-01T00:00 JST = 2025-03-31T15:00Z.
const FY2025_START: i64 = 1_743_433_200_000;
/// 2026-04-01T00:00 JST = 2026-03-31T15:00Z.
const FY2026_START: i64 = 1_774_969_200_000;
/// 2027-04-01T00:00 JST.
const FY2027_START: i64 = 1_806_505_200_000;

#[test]
fn audit_the_year_turns_at_midnight_japan_time() {
    // 2026-03-31T23:59 JST (14:59Z) is still FY2025.
    assert_eq!(fiscal_year_of(1_774_969_140_000), 2025);
    assert_eq!(fiscal_year_of(FY2026_START - 1), 2025);
    // 2026-03-31T15:00:00Z is already 2026-04-01 00:00 JST: FY2026, although UTC's
    // date is still March 31.
    assert_eq!(fiscal_year_of(FY2026_START), 2026);
    // Midnight UTC on April 1 is 09:00 JST: FY2026 too; and 9 hours earlier than
    // that is the boundary, not midnight UTC.
    assert_eq!(fiscal_year_of(FY2026_START + 9 * HOUR), 2026);
    assert_eq!(fiscal_year_of(FY2026_START - 9 * HOUR), 2025);
}

#[test]
fn audit_january_to_march_belong_to_the_previous_year() {
    // 2026-01-01T00:00 JST = 2025-12-31T15:00Z.
    assert_eq!(fiscal_year_of(1_767_193_200_000), 2025);
    assert_eq!(fiscal_year_of(1_767_193_200_000 - 1), 2025);
    // 2024-02-29T12:00 JST (leap day) = 2024-02-29T03:00Z.
    assert_eq!(fiscal_year_of(1_709_175_600_000), 2023);
    // The Unix epoch is 1970-01-01 09:00 JST: FY1969.
    assert_eq!(fiscal_year_of(0), 1969);
}

#[test]
fn audit_bounds_are_april_first_japan_time_half_open() {
    assert_eq!(fiscal_year_bounds(2025), (FY2025_START, FY2026_START));
    assert_eq!(fiscal_year_bounds(2026), (FY2026_START, FY2027_START));
    for fy in 1950..=2200u16 {
        let (start, end) = fiscal_year_bounds(fy);
        assert_eq!(fiscal_year_of(start), fy);
        assert_eq!(fiscal_year_of(start - 1), fy - 1);
        assert_eq!(fiscal_year_of(end - 1), fy);
        assert_eq!(fiscal_year_of(end), fy + 1);
        assert_eq!(fiscal_year_bounds(fy + 1).0, end);
        // 365 or 366 days.
        let days = (end - start) / (24 * HOUR);
        assert!(days == 365 || days == 366, "{fy}: {days}");
    }
}

#[test]
fn audit_retention_cannot_be_shorter_than_five_years() {
    assert_eq!(MIN_RETENTION_YEARS, 5);
    assert_eq!(RetentionPolicy::default().years(), 5);
    assert!(RetentionPolicy::new(4).is_err());
    assert!(RetentionPolicy::new(0).is_err());
    assert_eq!(RetentionPolicy::new(5).unwrap().years(), 5);
    assert_eq!(RetentionPolicy::new(10).unwrap().years(), 10);
}

#[test]
fn audit_only_archived_years_older_than_retention_may_go() {
    let policy = RetentionPolicy::default();
    let all = 2010..=2026u16;
    // First instant of FY2026: FY2020 closed 2021-03-31 and has now been kept for
    // five full years.
    let deletable = policy.deletable(FY2026_START, all.clone(), |_| true);
    assert_eq!(deletable, (2010..=2020).collect::<Vec<_>>());
    assert_eq!(policy.oldest_kept(FY2026_START), 2021);
    // One millisecond earlier it is still FY2025: FY2020 must stay.
    let deletable = policy.deletable(FY2026_START - 1, all.clone(), |_| true);
    assert_eq!(deletable, (2010..=2019).collect::<Vec<_>>());
    // Never a year not archived yet.
    let deletable = policy.deletable(FY2026_START, all.clone(), |fy| fy != 2015);
    assert!(!deletable.contains(&2015));
    assert!(!policy.may_delete(2015, FY2026_START, false));
    assert!(policy.may_delete(2015, FY2026_START, true));
    // Longer retention keeps more.
    let seven = RetentionPolicy::new(7).unwrap();
    assert_eq!(
        seven.deletable(FY2026_START, all, |_| true),
        (2010..=2018).collect::<Vec<_>>()
    );
}

#[test]
fn audit_the_current_year_and_five_before_it_are_never_deletable() {
    let policy = RetentionPolicy::default();
    // Every month over several decades.
    let mut now = fiscal_year_bounds(1990).0;
    while now < fiscal_year_bounds(2060).0 {
        let current = fiscal_year_of(now);
        for fy in current.saturating_sub(MIN_RETENTION_YEARS)..=current + 1 {
            assert!(!policy.may_delete(fy, now, true), "{fy} at FY{current}");
        }
        assert!(policy.may_delete(current - MIN_RETENTION_YEARS - 1, now, true));
        now += 30 * 24 * HOUR;
    }
}
