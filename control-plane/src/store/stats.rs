//! Counter statistics (R9, issue 9 item 3; migration 0008): for a range of days in
//! Japan time, how many visits and applications there were and how long the counter
//! took, grouped by procedure, counter, staff group, day or hour of day.
//!
//! What is counted:
//! - a *visit* belongs to the range when it started in it (JST days, both ends
//!   included); its applications come with it, whenever they were created;
//! - *applications* are counted by their state now (作成済み, 印刷済み, 受付済み,
//!   連携済み, 完了, 取消);
//! - the *handling time* of a visit runs from its start to the last acceptance
//!   (`accepted_at_ms`, written by the `accept` transition) among its applications,
//!   including an application cancelled after it was accepted (the counter's work on
//!   it was done). A visit with no accepted application has no handling time. Each
//!   group reports the median, the 90th percentile (nearest rank) and the mean, in
//!   minutes, over its visits that have one.
//!
//! How visits fall into groups:
//! - 手続き: by the procedure of each application, or by each certificate of a
//!   certificate request (a request form naming two certificates counts under both);
//!   a visit counts once under every procedure it included, and its handling time
//!   goes to each of them; a visit without applications is in 「申請なし」;
//! - 窓口: by the counter's device id, named from the device registry;
//! - 課・グループ: by the staff groups (membership now) of the member of staff who
//!   started the visit; someone in two groups counts in both, someone in none in
//!   「所属なし」;
//! - 日 / 時間帯: by the JST day / hour the visit started; every day of the range, and
//!   every hour from 8 to 19 plus any other hour with visits, appear even when empty.
//!
//! The total row counts every visit and application once, whatever the grouping.
//!
//! Personal data never enters: the query reads ids, device ids, staff login ids (only
//! to find their groups; they are never returned), states and times — no form data,
//! no subject, no names.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use futures_util::TryStreamExt;
use sqlx::Row;

use super::backend::{with_pool, Cols};
use super::{Result, Store, StoreError};
use crate::applications::model::ApplicationState;
use crate::model::TenantId;
use crate::rules::Date;

/// The longest range one query may cover, in days.
pub const MAX_RANGE_DAYS: i64 = 366;

const DAY_MS: i64 = 86_400_000;
const HOUR_MS: i64 = 3_600_000;
const JST_MS: i64 = 9 * HOUR_MS;
/// The hours always shown when grouping by hour (the counters' usual day, N2).
const OPENING_HOURS: std::ops::RangeInclusive<u8> = 8..=19;

/// Key and label of the group of visits without applications (by procedure).
pub const NO_APPLICATION: &str = "（申請なし）";
/// Key and label of the group of staff in no group.
pub const NO_GROUP: &str = "（所属なし）";

/// A range of days in Japan time, both ends included.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatsRange {
    /// First day.
    pub from: Date,
    /// Last day.
    pub to: Date,
}

/// Why a range is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RangeError {
    /// The last day is before the first.
    #[error("the range ends before it starts")]
    Reversed,
    /// Longer than [`MAX_RANGE_DAYS`].
    #[error("the range is longer than {MAX_RANGE_DAYS} days")]
    TooLong,
}

impl StatsRange {
    /// The range from `from` to `to` (both included), if it is one.
    pub fn new(from: Date, to: Date) -> Result<Self, RangeError> {
        if to < from {
            return Err(RangeError::Reversed);
        }
        if to.to_days() - from.to_days() + 1 > MAX_RANGE_DAYS {
            return Err(RangeError::TooLong);
        }
        Ok(Self { from, to })
    }

    /// Its first instant (00:00 JST of `from`), ms since the epoch.
    pub fn start_ms(&self) -> i64 {
        self.from.to_days() * DAY_MS - JST_MS
    }

    /// The instant after it (00:00 JST of the day after `to`).
    pub fn end_ms(&self) -> i64 {
        (self.to.to_days() + 1) * DAY_MS - JST_MS
    }

    /// Its days, in order.
    pub fn days(&self) -> impl Iterator<Item = Date> {
        let from = self.from.to_days();
        (from..=self.to.to_days()).map(Date::from_days)
    }
}

/// How visits are grouped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GroupBy {
    /// 手続き (procedure or certificate).
    Procedure,
    /// 窓口 (the counter's device).
    Counter,
    /// 課・グループ (staff group).
    StaffGroup,
    /// 日 (JST day).
    Day,
    /// 時間帯 (JST hour of day).
    Hour,
}

impl GroupBy {
    /// Every grouping, in the order the admin UI offers them.
    pub const ALL: [GroupBy; 5] = [
        Self::Procedure,
        Self::Counter,
        Self::StaffGroup,
        Self::Day,
        Self::Hour,
    ];

    /// The name in URLs and forms.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Procedure => "procedure",
            Self::Counter => "counter",
            Self::StaffGroup => "group",
            Self::Day => "day",
            Self::Hour => "hour",
        }
    }

    /// The grouping with this name.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|g| g.as_str() == s)
    }

    /// Japanese label.
    pub fn label(self) -> &'static str {
        match self {
            Self::Procedure => "手続き",
            Self::Counter => "窓口",
            Self::StaffGroup => "課・グループ",
            Self::Day => "日",
            Self::Hour => "時間帯",
        }
    }
}

/// Handling times of a group's visits.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct HandlingTime {
    /// Visits with a handling time (at least one accepted application).
    pub visits: u64,
    /// Median, minutes (mean of the two middle values for an even count).
    pub median_min: Option<f64>,
    /// 90th percentile (nearest rank), minutes.
    pub p90_min: Option<f64>,
    /// Mean, minutes.
    pub mean_min: Option<f64>,
}

impl HandlingTime {
    /// The figures for these durations (ms, any order).
    pub fn of(mut durations_ms: Vec<i64>) -> Self {
        let n = durations_ms.len();
        if n == 0 {
            return Self::default();
        }
        durations_ms.sort_unstable();
        let min = |ms: f64| ms / 60_000.0;
        let median = if n % 2 == 1 {
            durations_ms[n / 2] as f64
        } else {
            (durations_ms[n / 2 - 1] as f64 + durations_ms[n / 2] as f64) / 2.0
        };
        // Nearest rank: the smallest value with at least 90 % of values at or below.
        let rank = (n * 9).div_ceil(10).max(1);
        let p90 = durations_ms[rank - 1] as f64;
        let sum: f64 = durations_ms.iter().map(|&d| d as f64).sum();
        Self {
            visits: n as u64,
            median_min: Some(min(median)),
            p90_min: Some(min(p90)),
            mean_min: Some(min(sum / n as f64)),
        }
    }
}

/// The figures of one group (or of the whole range).
#[derive(Debug, Clone, PartialEq)]
pub struct StatsGroup {
    /// What identifies it: procedure or certificate id, device id, group name,
    /// `YYYY-MM-DD`, or the hour `HH`.
    pub key: String,
    /// What the admin UI shows: the catalogue's name, the counter's name, the group's
    /// description, `11/27（金）`, `9時台`.
    pub label: String,
    /// Visits.
    pub visits: u64,
    /// Applications.
    pub applications: u64,
    /// Applications per state now, in the order of [`ApplicationState::ALL`].
    pub states: [u64; 6],
    /// Handling times.
    pub handling: HandlingTime,
}

impl StatsGroup {
    /// Applications in `state` now.
    pub fn in_state(&self, state: ApplicationState) -> u64 {
        ApplicationState::ALL
            .iter()
            .position(|s| *s == state)
            .map_or(0, |i| self.states[i])
    }
}

/// The statistics of a range.
#[derive(Debug, Clone, PartialEq)]
pub struct CounterStats {
    /// The range.
    pub range: StatsRange,
    /// The grouping.
    pub group_by: GroupBy,
    /// One row per group, in display order (chronological for days and hours; most
    /// applications first for procedures; by key for counters and groups).
    pub groups: Vec<StatsGroup>,
    /// Every visit and application of the range once.
    pub total: StatsGroup,
}

/// One application as the statistics see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppFact {
    /// Procedure id.
    pub procedure: Option<String>,
    /// Certificate ids, comma-separated.
    pub certificate: Option<String>,
    /// Form id (the key when neither of the above is set).
    pub form: String,
    /// State now.
    pub state: ApplicationState,
    /// When it was accepted, if it was.
    pub accepted_at_ms: Option<i64>,
}

impl AppFact {
    /// The procedure keys it counts under.
    fn keys(&self) -> Vec<&str> {
        if let Some(p) = self.procedure.as_deref().filter(|p| !p.is_empty()) {
            return vec![p];
        }
        if let Some(c) = &self.certificate {
            let ids: BTreeSet<&str> = c
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .collect();
            if !ids.is_empty() {
                return ids.into_iter().collect();
            }
        }
        vec![self.form.as_str()]
    }
}

/// One visit as the statistics see it. The staff login id is used to find groups
/// and never shown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VisitFact {
    /// The counter's device id.
    pub device: String,
    /// Staff login id.
    pub staff: String,
    /// Started (ms since the epoch).
    pub started_at_ms: i64,
    /// Its applications.
    pub applications: Vec<AppFact>,
}

impl VisitFact {
    /// From start to the last acceptance, if any application was accepted.
    pub fn handling_ms(&self) -> Option<i64> {
        self.applications
            .iter()
            .filter_map(|a| a.accepted_at_ms)
            .max()
            .map(|last| (last - self.started_at_ms).max(0))
    }
}

/// Names for keys: procedures and certificates (from the catalogue), counters (from
/// the device registry), groups (their description).
#[derive(Debug, Clone, Default)]
pub struct Names {
    /// Procedure and certificate id → name.
    pub procedures: BTreeMap<String, String>,
    /// Device id → counter name.
    pub counters: BTreeMap<String, String>,
    /// Group name → description.
    pub groups: BTreeMap<String, String>,
    /// Staff login id → their groups.
    pub memberships: HashMap<String, Vec<String>>,
}

#[derive(Default)]
struct Acc {
    visits: u64,
    applications: u64,
    states: [u64; 6],
    durations: Vec<i64>,
}

impl Acc {
    fn add_apps<'a>(&mut self, apps: impl Iterator<Item = &'a AppFact>) {
        for a in apps {
            self.applications += 1;
            if let Some(i) = ApplicationState::ALL.iter().position(|s| *s == a.state) {
                self.states[i] += 1;
            }
        }
    }

    fn finish(self, key: String, label: String) -> StatsGroup {
        StatsGroup {
            key,
            label,
            visits: self.visits,
            applications: self.applications,
            states: self.states,
            handling: HandlingTime::of(self.durations),
        }
    }
}

fn jst_hour(ms: i64) -> u8 {
    ((ms + JST_MS).rem_euclid(DAY_MS) / HOUR_MS) as u8
}

fn jst_day(ms: i64) -> Date {
    Date::from_days((ms + JST_MS).div_euclid(DAY_MS))
}

const WEEKDAYS: [&str; 7] = ["日", "月", "火", "水", "木", "金", "土"];

/// `11/27（金）`.
pub fn day_label(d: Date) -> String {
    format!(
        "{}/{}（{}）",
        d.month(),
        d.day(),
        WEEKDAYS[usize::from(d.weekday())]
    )
}

/// `9時台`.
pub fn hour_label(h: u8) -> String {
    format!("{h}時台")
}

/// Groups `visits` (all started in `range`) by `by`. Pure: the store method reads the
/// facts and names and calls this; tests and benches may call it directly.
pub fn aggregate(
    range: StatsRange,
    by: GroupBy,
    visits: &[VisitFact],
    names: &Names,
) -> CounterStats {
    let mut groups: HashMap<String, Acc> = HashMap::new();
    let mut total = Acc::default();
    let no_groups = vec![NO_GROUP.to_owned()];
    for v in visits {
        let handling = v.handling_ms();
        total.visits += 1;
        total.add_apps(v.applications.iter());
        total.durations.extend(handling);
        if by == GroupBy::Procedure {
            let mut per_key: BTreeMap<&str, Vec<&AppFact>> = BTreeMap::new();
            for a in &v.applications {
                for k in a.keys() {
                    per_key.entry(k).or_default().push(a);
                }
            }
            if per_key.is_empty() {
                per_key.insert(NO_APPLICATION, Vec::new());
            }
            for (k, apps) in per_key {
                let acc = groups.entry(k.to_owned()).or_default();
                acc.visits += 1;
                acc.add_apps(apps.into_iter());
                acc.durations.extend(handling);
            }
            continue;
        }
        let keys: Vec<String> = match by {
            GroupBy::Counter => vec![v.device.clone()],
            GroupBy::StaffGroup => names
                .memberships
                .get(&v.staff)
                .filter(|g| !g.is_empty())
                .unwrap_or(&no_groups)
                .clone(),
            GroupBy::Day => vec![jst_day(v.started_at_ms).to_string()],
            GroupBy::Hour => vec![format!("{:02}", jst_hour(v.started_at_ms))],
            GroupBy::Procedure => Vec::new(),
        };
        for k in keys {
            let acc = groups.entry(k).or_default();
            acc.visits += 1;
            acc.add_apps(v.applications.iter());
            acc.durations.extend(handling);
        }
    }
    // Empty days and opening hours are shown too, so a chart has no silent gaps.
    match by {
        GroupBy::Day => {
            for d in range.days() {
                groups.entry(d.to_string()).or_default();
            }
        }
        GroupBy::Hour => {
            for h in OPENING_HOURS {
                groups.entry(format!("{h:02}")).or_default();
            }
        }
        _ => {}
    }
    let mut rows: Vec<StatsGroup> = groups
        .into_iter()
        .map(|(key, acc)| {
            let label = label_of(by, &key, names);
            acc.finish(key, label)
        })
        .collect();
    match by {
        GroupBy::Procedure => rows.sort_by(|a, b| {
            (a.key == NO_APPLICATION)
                .cmp(&(b.key == NO_APPLICATION))
                .then(b.applications.cmp(&a.applications))
                .then(b.visits.cmp(&a.visits))
                .then(a.key.cmp(&b.key))
        }),
        GroupBy::StaffGroup => rows.sort_by(|a, b| {
            (a.key == NO_GROUP)
                .cmp(&(b.key == NO_GROUP))
                .then(a.key.cmp(&b.key))
        }),
        GroupBy::Counter | GroupBy::Day | GroupBy::Hour => rows.sort_by(|a, b| a.key.cmp(&b.key)),
    }
    CounterStats {
        range,
        group_by: by,
        groups: rows,
        total: total.finish("total".into(), "合計".into()),
    }
}

fn label_of(by: GroupBy, key: &str, names: &Names) -> String {
    let named =
        |m: &BTreeMap<String, String>| m.get(key).cloned().unwrap_or_else(|| key.to_owned());
    match by {
        GroupBy::Procedure => named(&names.procedures),
        GroupBy::Counter => named(&names.counters),
        GroupBy::StaffGroup => match names.groups.get(key) {
            Some(d) if !d.is_empty() => format!("{d}（{key}）"),
            _ => key.to_owned(),
        },
        GroupBy::Day => Date::parse(key).map_or_else(|_| key.to_owned(), day_label),
        GroupBy::Hour => key
            .parse::<u8>()
            .map_or_else(|_| key.to_owned(), hour_label),
    }
}

impl Store {
    /// The visits started in `range` with their applications (ids, states and times
    /// only), in no particular order. One statement, so one consistent snapshot.
    pub async fn stats_visits(
        &self,
        tenant: &TenantId,
        range: StatsRange,
    ) -> Result<Vec<VisitFact>> {
        with_pool!(self, pool => {
            let mut rows = sqlx::query(
                "SELECT v.id AS visit, v.device, v.staff, v.started_at_ms, \
                 a.procedure, a.certificate, a.form, a.state, a.accepted_at_ms \
                 FROM visits v LEFT JOIN applications a ON a.tenant = v.tenant AND a.visit = v.id \
                 WHERE v.tenant = $1 AND v.started_at_ms >= $2 AND v.started_at_ms < $3",
            )
            .bind(tenant.as_str())
            .bind(range.start_ms())
            .bind(range.end_ms())
            .fetch(pool);
            let mut index: HashMap<String, usize> = HashMap::new();
            let mut out: Vec<VisitFact> = Vec::new();
            // Streamed: a year's applications never sit in memory as rows. Columns by
            // position (the order of the SELECT): by name costs a lookup per cell,
            // which at 100,000 rows is most of the time.
            while let Some(r) = rows.try_next().await? {
                let id: String = r.try_get(0)?;
                let i = match index.get(&id) {
                    Some(&i) => i,
                    None => {
                        out.push(VisitFact {
                            device: r.try_get(1)?,
                            staff: r.try_get(2)?,
                            started_at_ms: r.try_get(3)?,
                            applications: Vec::new(),
                        });
                        index.insert(id, out.len() - 1);
                        out.len() - 1
                    }
                };
                // LEFT JOIN: a visit without applications has NULLs here.
                let state: Option<String> = r.try_get(7)?;
                if let Some(state) = state {
                    let state = ApplicationState::parse(&state)
                        .ok_or(StoreError::Corrupt("application state"))?;
                    let form: Option<String> = r.try_get(6)?;
                    out[i].applications.push(AppFact {
                        procedure: r.try_get(4)?,
                        certificate: r.try_get(5)?,
                        form: form.unwrap_or_default(),
                        state,
                        accepted_at_ms: r.try_get(8)?,
                    });
                }
            }
            Ok(out)
        })
    }

    /// Counter names, group descriptions and group memberships of the tenant (what
    /// [`aggregate`] needs beyond the catalogue's names).
    pub async fn stats_names(&self, tenant: &TenantId) -> Result<Names> {
        with_pool!(self, pool => {
            let mut names = Names::default();
            let devices = sqlx::query("SELECT id, counter_name FROM devices WHERE tenant = $1")
                .bind(tenant.as_str())
                .fetch_all(pool)
                .await?;
            for d in &devices {
                names.counters.insert(d.text("id")?, d.text("counter_name")?);
            }
            let groups = sqlx::query("SELECT name, description FROM staff_groups WHERE tenant = $1")
                .bind(tenant.as_str())
                .fetch_all(pool)
                .await?;
            for g in &groups {
                names.groups.insert(g.text("name")?, g.text("description")?);
            }
            let members = sqlx::query(
                "SELECT group_name, login_id FROM group_members WHERE tenant = $1 \
                 ORDER BY login_id, group_name",
            )
            .bind(tenant.as_str())
            .fetch_all(pool)
            .await?;
            for m in &members {
                names
                    .memberships
                    .entry(m.text("login_id")?)
                    .or_default()
                    .push(m.text("group_name")?);
            }
            Ok(names)
        })
    }

    /// The statistics of `range` grouped `by`, with procedure and certificate names
    /// from `procedure_names` (id → name; an id missing there is shown as is).
    pub async fn counter_stats(
        &self,
        tenant: &TenantId,
        range: StatsRange,
        by: GroupBy,
        procedure_names: BTreeMap<String, String>,
    ) -> Result<CounterStats> {
        let visits = self.stats_visits(tenant, range).await?;
        let mut names = if matches!(by, GroupBy::Counter | GroupBy::StaffGroup) {
            self.stats_names(tenant).await?
        } else {
            Names::default()
        };
        names.procedures = procedure_names;
        Ok(aggregate(range, by, &visits, &names))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(y: i32, m: u8, day: u8) -> Date {
        Date::new(y, m, day).unwrap()
    }

    #[test]
    fn percentiles() {
        let m = 60_000;
        let h = HandlingTime::of(vec![3 * m, m, 2 * m, 10 * m]);
        assert_eq!(h.visits, 4);
        assert_eq!(h.median_min, Some(2.5));
        assert_eq!(h.p90_min, Some(10.0));
        assert_eq!(h.mean_min, Some(4.0));
        let h = HandlingTime::of((1..=10).map(|i| i * m).collect());
        assert_eq!(h.median_min, Some(5.5));
        assert_eq!(h.p90_min, Some(9.0));
        assert_eq!(HandlingTime::of(vec![]), HandlingTime::default());
        assert_eq!(HandlingTime::of(vec![m]).p90_min, Some(1.0));
    }

    #[test]
    fn ranges_are_jst_days() {
        let r = StatsRange::new(d(2026, 11, 1), d(2026, 11, 30)).unwrap();
        // 2026-11-01T00:00+09:00.
        assert_eq!(r.start_ms(), 1_793_458_800_000);
        assert_eq!(r.end_ms() - r.start_ms(), 30 * DAY_MS);
        assert_eq!(r.days().count(), 30);
        assert_eq!(
            StatsRange::new(d(2026, 11, 2), d(2026, 11, 1)),
            Err(RangeError::Reversed)
        );
        assert_eq!(
            StatsRange::new(d(2025, 1, 1), d(2026, 1, 2)),
            Err(RangeError::TooLong)
        );
        assert_eq!(jst_hour(r.start_ms()), 0);
        assert_eq!(jst_day(r.start_ms()), d(2026, 11, 1));
        assert_eq!(jst_day(r.start_ms() - 1), d(2026, 10, 31));
        assert_eq!(day_label(d(2026, 11, 27)), "11/27（金）");
    }

    #[test]
    fn certificate_requests_count_under_each_certificate() {
        let a = AppFact {
            procedure: None,
            certificate: Some("juminhyo,fuzai_shomei".into()),
            form: "SHOMEI-JUMIN".into(),
            state: ApplicationState::Accepted,
            accepted_at_ms: Some(10),
        };
        assert_eq!(a.keys(), ["fuzai_shomei", "juminhyo"]);
        let v = VisitFact {
            device: "c1".into(),
            staff: "s".into(),
            started_at_ms: 0,
            applications: vec![a],
        };
        let r = StatsRange::new(d(1970, 1, 1), d(1970, 1, 1)).unwrap();
        let s = aggregate(r, GroupBy::Procedure, &[v], &Names::default());
        assert_eq!(s.groups.len(), 2);
        assert_eq!(s.total.applications, 1);
        assert!(s
            .groups
            .iter()
            .all(|g| g.visits == 1 && g.applications == 1));
    }
}
