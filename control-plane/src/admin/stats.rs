//! 窓口統計 (R9): counts and handling times of a date range, grouped by procedure,
//! counter, staff group, day or hour (the figures and how they are counted:
//! [`crate::store::stats`]). A table, a chart drawn on the server as inline SVG (no
//! script, no external resource; colours as SVG attributes, so the strict CSP holds),
//! and the same figures as CSV (UTF-8 with BOM, Japanese header, one row per group).
//!
//! The filters (two dates and a grouping) are no personal data, so the page and the
//! CSV are plain GETs with them in the query string and can be bookmarked. Both need
//! the permission `admin.stats`; every CSV download is audited
//! (`admin:stats.export`, with the filters and the row count) before it is sent, as
//! the audit log's export is. The figures carry no personal data: procedures,
//! counters, staff groups (never staff members), days and hours.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use axum::extract::{RawQuery, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use maud::{html, Markup};

use super::{layout, Admin, AdminError, AdminState};
use crate::applications::model::ApplicationState;
use crate::model::TenantId;
use crate::rules::{CatalogueSet, Date};
use crate::service::now_ms;
use crate::staff::permissions::ADMIN_STATS;
use crate::store::stats::{
    CounterStats, GroupBy, RangeError, StatsGroup, StatsRange, MAX_RANGE_DAYS,
};
use crate::store::Store;

pub(super) fn routes() -> Router<AdminState> {
    Router::new()
        .route("/admin/stats", get(page))
        .route("/admin/stats.csv", get(csv))
}

/// The filters as given (echoed back in the form) and what they mean.
struct Filters {
    range: StatsRange,
    by: GroupBy,
}

impl Filters {
    fn query(&self) -> String {
        form_urlencoded::Serializer::new(String::new())
            .append_pair("from", &self.range.from.to_string())
            .append_pair("to", &self.range.to.to_string())
            .append_pair("by", self.by.as_str())
            .finish()
    }
}

fn today() -> Date {
    crate::store::applications::jst_date(now_ms())
}

/// Parses `from`, `to` (YYYY-MM-DD, JST) and `by`; absent: this month up to today,
/// by procedure.
fn parse_filters(query: Option<&str>) -> Result<Filters, AdminError> {
    let pairs: HashMap<String, String> = form_urlencoded::parse(query.unwrap_or("").as_bytes())
        .into_owned()
        .collect();
    let field = |name: &str| pairs.get(name).map(|s| s.trim()).filter(|s| !s.is_empty());
    let date = |name: &str, what: &str| -> Result<Option<Date>, AdminError> {
        field(name)
            .map(|s| {
                Date::parse(s).map_err(|_| {
                    AdminError::BadRequest(format!("{what}は YYYY-MM-DD の形で入力してください"))
                })
            })
            .transpose()
    };
    let today = today();
    let to = date("to", "終了日")?.unwrap_or(today);
    let from = date("from", "開始日")?
        .unwrap_or_else(|| Date::new(to.year(), to.month(), 1).unwrap_or(to));
    let range = StatsRange::new(from, to).map_err(|e| {
        AdminError::BadRequest(match e {
            RangeError::Reversed => "終了日は開始日と同じか、それより後の日にしてください".into(),
            RangeError::TooLong => {
                format!("期間は{MAX_RANGE_DAYS}日以内にしてください")
            }
        })
    })?;
    let by = match field("by") {
        None => GroupBy::Procedure,
        Some(s) => GroupBy::parse(s)
            .ok_or_else(|| AdminError::BadRequest("集計の単位を選び直してください".into()))?,
    };
    Ok(Filters { range, by })
}

/// Loaded catalogues by the SHA-256 of their stored files (so the cache cannot hand
/// one store's catalogue to another, and an install shows at once), at most a few.
type Cache = Vec<([u8; 32], Arc<CatalogueSet>)>;
static CATALOGUES: Mutex<Cache> = Mutex::new(Vec::new());
/// Catalogues kept loaded (one or two per tenant served is plenty).
const CACHED: usize = 8;

fn cache() -> std::sync::MutexGuard<'static, Cache> {
    // Push and find are single operations: a poisoned lock holds a usable list.
    CATALOGUES.lock().unwrap_or_else(|e| e.into_inner())
}

/// Procedure and certificate names: those of the catalogue in force on the range's
/// last day first, then of other versions (newest first) for ids they no longer
/// have. No catalogue, or one that no longer loads: no names (ids are shown). The
/// files are read on every call (one query); they are parsed only when they changed.
async fn procedure_names(
    store: &Store,
    tenant: &TenantId,
    on: Date,
) -> Result<BTreeMap<String, String>, AdminError> {
    let (_, files) = store.catalogue_files(tenant).await?;
    if files.is_empty() {
        return Ok(BTreeMap::new());
    }
    let mut digest = ring::digest::Context::new(&ring::digest::SHA256);
    for (path, text) in &files {
        for part in [path.as_bytes(), text.as_bytes()] {
            digest.update(&(part.len() as u64).to_le_bytes());
            digest.update(part);
        }
    }
    let mut key = [0u8; 32];
    key.copy_from_slice(digest.finish().as_ref());
    let cached = cache()
        .iter()
        .find(|(k, _)| *k == key)
        .map(|(_, set)| Arc::clone(set));
    let set = match cached {
        Some(set) => set,
        None => {
            let Ok(set) = CatalogueSet::load_from_files(&files) else {
                tracing::warn!(
                    tenant = tenant.as_str(),
                    "stats: the stored catalogue no longer loads; showing ids"
                );
                return Ok(BTreeMap::new());
            };
            let set = Arc::new(set);
            let mut c = cache();
            if c.len() >= CACHED {
                c.remove(0);
            }
            c.push((key, Arc::clone(&set)));
            set
        }
    };
    let mut names = BTreeMap::new();
    let in_force = set.for_date(on);
    for cat in in_force.into_iter().chain(set.versions().iter().rev()) {
        for p in &cat.procedures {
            names.entry(p.id.clone()).or_insert_with(|| p.name.clone());
        }
        for c in &cat.certificates {
            names.entry(c.id.clone()).or_insert_with(|| c.name.clone());
        }
    }
    Ok(names)
}

async fn load(state: &AdminState, admin: &Admin, f: &Filters) -> Result<CounterStats, AdminError> {
    let store = state.service.store();
    let names = if f.by == GroupBy::Procedure {
        procedure_names(store, &admin.tenant, f.range.to).await?
    } else {
        BTreeMap::new()
    };
    Ok(store
        .counter_stats(&admin.tenant, f.range, f.by, names)
        .await?)
}

/// Minutes with one decimal, or `—`.
fn minutes(m: Option<f64>) -> String {
    m.map_or_else(|| "—".to_owned(), |m| format!("{m:.1}"))
}

/// The table's and the CSV's state columns.
const STATES: [ApplicationState; 6] = ApplicationState::ALL;

fn row_cells(g: &StatsGroup) -> Markup {
    html! {
        td.num { (g.visits) }
        td.num { (g.applications) }
        @for s in STATES { td.num { (g.in_state(s)) } }
        td.num { (g.handling.visits) }
        td.num { (minutes(g.handling.median_min)) }
        td.num { (minutes(g.handling.p90_min)) }
        td.num { (minutes(g.handling.mean_min)) }
    }
}

fn table(stats: &CounterStats) -> Markup {
    html! {
        div.table-wrap { table #stats-table {
            thead {
                tr {
                    th rowspan="2" { (stats.group_by.label()) }
                    th rowspan="2" { "来庁" }
                    th colspan="7" { "申請（現在の状態）" }
                    th colspan="4" { "処理時間（分）" }
                }
                tr {
                    th { "計" }
                    @for s in STATES { th { (s.label()) } }
                    th { "対象" } th { "中央値" } th { "90%" } th { "平均" }
                }
            }
            tbody {
                @for g in &stats.groups {
                    tr data-key=(g.key) { th { (g.label) } (row_cells(g)) }
                }
            }
            tfoot {
                tr #stats-total { th { "合計" } (row_cells(&stats.total)) }
            }
        } }
    }
}

/// The smallest of 1, 2, 5 × 10ⁿ at or above `v` (at least 1).
fn nice_ceiling(v: f64) -> f64 {
    if v <= 1.0 {
        return 1.0;
    }
    let mut step = 1.0;
    loop {
        for m in [1.0, 2.0, 5.0] {
            if m * step >= v {
                return m * step;
            }
        }
        step *= 10.0;
    }
}

/// At most `n` characters, with `…` when cut.
fn clip(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_owned()
    } else {
        let mut out: String = s.chars().take(n - 1).collect();
        out.push('…');
        out
    }
}

const VISIT_COLOUR: &str = "#8fb4dc";
const APP_COLOUR: &str = "#1f5fa8";
const MEDIAN_COLOUR: &str = "#c2410c";
const GRID_COLOUR: &str = "#d5dbe1";

/// The chart: per group, bars for visits and applications on the left, and on the
/// right a marker for the median handling time with a line out to the 90th
/// percentile. Drawn with SVG attributes only (the CSP allows no inline style).
fn chart(stats: &CounterStats) -> Markup {
    const LABEL_W: f64 = 190.0;
    const COUNT_X: f64 = 200.0;
    const COUNT_W: f64 = 400.0;
    const TIME_X: f64 = 660.0;
    const TIME_W: f64 = 280.0;
    const TOP: f64 = 44.0;
    const ROW: f64 = 26.0;
    const WIDTH: f64 = 980.0;
    let rows = &stats.groups;
    let max_count = rows
        .iter()
        .map(|g| g.visits.max(g.applications))
        .max()
        .unwrap_or(0) as f64;
    let count_max = nice_ceiling(max_count);
    let max_time = rows
        .iter()
        .filter_map(|g| g.handling.p90_min)
        .fold(0.0_f64, f64::max);
    let time_max = nice_ceiling(max_time);
    let height = TOP + ROW * rows.len() as f64 + 30.0;
    let cx = |v: f64| COUNT_X + COUNT_W * v / count_max;
    let tx = |v: f64| TIME_X + TIME_W * (v / time_max).min(1.0);
    let bottom = TOP + ROW * rows.len() as f64;
    let ticks = [0.0, 0.5, 1.0];
    let label = format!(
        "{}ごとの来庁件数・申請件数と処理時間の中央値",
        stats.group_by.label()
    );
    html! {
        figure #stats-chart {
            svg xmlns="http://www.w3.org/2000/svg" role="img" aria-label=(label)
                viewBox={ "0 0 " (WIDTH) " " (height) } width="100%"
                font-family="sans-serif" font-size="13" {
                title { (label) }
                // Legend.
                rect x=(COUNT_X) y="8" width="12" height="12" fill=(VISIT_COLOUR) {}
                text x=(COUNT_X + 16.0) y="19" { "来庁" }
                rect x=(COUNT_X + 64.0) y="8" width="12" height="12" fill=(APP_COLOUR) {}
                text x=(COUNT_X + 80.0) y="19" { "申請（件）" }
                circle cx=(TIME_X + 6.0) cy="14" r="5" fill=(MEDIAN_COLOUR) {}
                text x=(TIME_X + 16.0) y="19" { "処理時間 中央値" }
                line x1=(TIME_X + 128.0) y1="14" x2=(TIME_X + 150.0) y2="14" stroke=(MEDIAN_COLOUR) stroke-width="2" {}
                text x=(TIME_X + 154.0) y="19" { "90%（分）" }
                // Grid and scales.
                @for t in ticks {
                    line x1=(cx(count_max * t)) y1=(TOP - 6.0) x2=(cx(count_max * t)) y2=(bottom) stroke=(GRID_COLOUR) {}
                    // Counts are whole: no label at 2.5.
                    @if (count_max * t).fract() == 0.0 {
                        text x=(cx(count_max * t)) y=(bottom + 18.0) text-anchor="middle" fill="#5b6773" { (count_max * t) }
                    }
                    line x1=(tx(time_max * t)) y1=(TOP - 6.0) x2=(tx(time_max * t)) y2=(bottom) stroke=(GRID_COLOUR) {}
                    @if (time_max * t).fract() == 0.0 {
                        text x=(tx(time_max * t)) y=(bottom + 18.0) text-anchor="middle" fill="#5b6773" { (time_max * t) "分" }
                    }
                }
                @for (i, g) in rows.iter().enumerate() {
                    @let y = TOP + ROW * i as f64;
                    g.row data-key=(g.key) {
                        title {
                            (g.label) ": 来庁 " (g.visits) "件、申請 " (g.applications) "件、処理時間 中央値 "
                            (minutes(g.handling.median_min)) "分、90% " (minutes(g.handling.p90_min)) "分"
                        }
                        text x=(LABEL_W) y=(y + 17.0) text-anchor="end" { (clip(&g.label, 14)) }
                        rect.visits x=(COUNT_X) y=(y + 4.0) width=(cx(g.visits as f64) - COUNT_X) height="8" fill=(VISIT_COLOUR) {}
                        rect.applications x=(COUNT_X) y=(y + 13.0) width=(cx(g.applications as f64) - COUNT_X) height="9" fill=(APP_COLOUR) {}
                        text x=(cx(g.visits.max(g.applications) as f64) + 4.0) y=(y + 20.0) fill="#1d2733" font-size="11" { (g.applications) }
                        @if let (Some(m), Some(p)) = (g.handling.median_min, g.handling.p90_min) {
                            line x1=(tx(m)) y1=(y + 13.0) x2=(tx(p)) y2=(y + 13.0) stroke=(MEDIAN_COLOUR) stroke-width="2" {}
                            line x1=(tx(p)) y1=(y + 8.0) x2=(tx(p)) y2=(y + 18.0) stroke=(MEDIAN_COLOUR) stroke-width="2" {}
                            circle.median cx=(tx(m)) cy=(y + 13.0) r="5" fill=(MEDIAN_COLOUR) {}
                        }
                    }
                }
            }
            figcaption.muted {
                "棒: 件数（目盛り最大 " (count_max) "件）。●: 処理時間の中央値、線の右端: 90パーセンタイル（目盛り最大 " (time_max) "分）。"
            }
        }
    }
}

fn filter_form(f: &Filters) -> Markup {
    html! {
        form.card #stats-filter method="get" action="/admin/stats" {
            div.row {
                label { "開始日" input type="date" name="from" value=(f.range.from.to_string()) required; }
                label { "終了日" input type="date" name="to" value=(f.range.to.to_string()) required; }
                label { "集計の単位"
                    select name="by" {
                        @for g in GroupBy::ALL {
                            option value=(g.as_str()) selected[g == f.by] { (g.label()) }
                        }
                    }
                }
                div { button type="submit" { "表示" } }
            }
        }
    }
}

/// The whole page.
fn stats_page(admin: &Admin, f: &Filters, stats: &CounterStats) -> Markup {
    let t = &stats.total;
    let body = html! {
        h1 { "窓口統計" }
        (filter_form(f))
        div.cards {
            div.card { div.muted { "来庁（受付）" } div.num #total-visits { (t.visits) "件" } }
            div.card { div.muted { "申請" } div.num #total-applications { (t.applications) "件" } }
            div.card { div.muted { "受付済み以降" } div.num {
                (t.in_state(ApplicationState::Accepted) + t.in_state(ApplicationState::Exported) + t.in_state(ApplicationState::Completed)) "件"
            } }
            div.card { div.muted { "処理時間 中央値" } div.num #total-median { (minutes(t.handling.median_min)) "分" } }
        }
        h2 { (f.range.from.to_string()) " 〜 " (f.range.to.to_string()) "（" (stats.group_by.label()) "別）" }
        @if t.visits == 0 {
            p #no-visits { "この期間の来庁はありません。" }
        }
        (chart(stats))
        (table(stats))
        div.pager {
            a #stats-csv href={ "/admin/stats.csv?" (f.query()) } download { "CSVでダウンロード" }
        }
        section.card {
            h2 { "集計のしかた" }
            ul {
                li { "来庁: 期間内（日本時間）に受付を始めた件数。申請はその来庁に含まれるものを、現在の状態で数えます。" }
                li { "処理時間: 受付開始から、その来庁の申請が最後に受付済みになるまで。受付済みの申請がない来庁は含みません。" }
                li { "手続き別: 証明書の申請書に複数の証明書がある場合は、それぞれに数えます。複数の手続きがあった来庁は、それぞれの手続きに数えます。" }
                li { "課・グループ別: 受付を始めた職員の現在の所属で数えます。複数に所属する職員の分はそれぞれに数えます。個々の職員名は表示しません。" }
                li { "合計は各来庁・各申請を1回ずつ数えた値です（行の合計とは一致しないことがあります）。" }
            }
        }
    };
    layout::page(admin, "窓口統計", body)
}

async fn page(
    State(state): State<AdminState>,
    admin: Admin,
    RawQuery(query): RawQuery,
) -> Result<Response, AdminError> {
    admin.require(ADMIN_STATS)?;
    let f = parse_filters(query.as_deref())?;
    let stats = load(&state, &admin, &f).await?;
    Ok(stats_page(&admin, &f, &stats).into_response())
}

/// One CSV field: quoted, quotes doubled, a leading `= + - @` (or tab/CR) defused.
fn csv_field(s: &str) -> String {
    let risky = s.starts_with(['=', '+', '-', '@', '\t', '\r']);
    let s = s.replace('"', "\"\"");
    if risky {
        format!("\"'{s}\"")
    } else {
        format!("\"{s}\"")
    }
}

/// The CSV text of `stats` (UTF-8 with BOM, for Excel): a Japanese header, then one
/// row per group.
fn to_csv(stats: &CounterStats) -> String {
    let mut header = vec![
        "集計単位".to_owned(),
        "コード".to_owned(),
        "名称".to_owned(),
        "来庁件数".to_owned(),
        "申請件数".to_owned(),
    ];
    header.extend(STATES.iter().map(|s| format!("申請（{}）", s.label())));
    header.extend(
        [
            "処理時間の対象来庁数",
            "処理時間 中央値（分）",
            "処理時間 90パーセンタイル（分）",
            "処理時間 平均（分）",
        ]
        .map(String::from),
    );
    let mut out = String::from("\u{FEFF}");
    let line = |cells: &[String]| {
        let mut l = cells
            .iter()
            .map(|c| csv_field(c))
            .collect::<Vec<_>>()
            .join(",");
        l.push_str("\r\n");
        l
    };
    out.push_str(&line(&header));
    let opt = |m: Option<f64>| m.map(|m| format!("{m:.1}")).unwrap_or_default();
    for g in &stats.groups {
        let mut cells = vec![
            stats.group_by.label().to_owned(),
            g.key.clone(),
            g.label.clone(),
            g.visits.to_string(),
            g.applications.to_string(),
        ];
        cells.extend(STATES.iter().map(|s| g.in_state(*s).to_string()));
        cells.extend([
            g.handling.visits.to_string(),
            opt(g.handling.median_min),
            opt(g.handling.p90_min),
            opt(g.handling.mean_min),
        ]);
        out.push_str(&line(&cells));
    }
    out
}

async fn csv(
    State(state): State<AdminState>,
    admin: Admin,
    RawQuery(query): RawQuery,
) -> Result<Response, AdminError> {
    admin.require(ADMIN_STATS)?;
    let f = parse_filters(query.as_deref())?;
    let stats = load(&state, &admin, &f).await?;
    let record = admin.record(
        "admin:stats.export",
        "ok",
        serde_json::json!({
            "from": f.range.from.to_string(),
            "to": f.range.to.to_string(),
            "by": f.by.as_str(),
            "rows": stats.groups.len(),
        }),
    );
    // Audited before anything leaves: no entry, no file.
    state.service.store().append_audit(&record).await?;
    let disposition = format!(
        "attachment; filename=\"counter-stats-{}-{}-{}.csv\"",
        f.range.from,
        f.range.to,
        f.by.as_str()
    );
    Ok((
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()),
            (header::CONTENT_DISPOSITION, disposition),
        ],
        to_csv(&stats),
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scales_are_round() {
        assert_eq!(nice_ceiling(0.0), 1.0);
        assert_eq!(nice_ceiling(3.0), 5.0);
        assert_eq!(nice_ceiling(12.0), 20.0);
        assert_eq!(nice_ceiling(50.0), 50.0);
        assert_eq!(nice_ceiling(51.0), 100.0);
        assert_eq!(clip("あいうえお", 3), "あい…");
        assert_eq!(clip("あい", 3), "あい");
    }

    #[test]
    fn filters_are_checked() {
        let f = parse_filters(Some("from=2026-11-01&to=2026-11-30&by=hour")).unwrap();
        assert_eq!(f.by, GroupBy::Hour);
        assert_eq!(f.query(), "from=2026-11-01&to=2026-11-30&by=hour");
        assert!(parse_filters(Some("from=2026-11-31")).is_err());
        assert!(parse_filters(Some("from=2026-11-02&to=2026-11-01")).is_err());
        assert!(parse_filters(Some("from=2024-01-01&to=2026-01-01")).is_err());
        assert!(parse_filters(Some("by=staff")).is_err());
        let d = parse_filters(None).unwrap();
        assert_eq!(d.by, GroupBy::Procedure);
        assert_eq!(d.range.from.day(), 1);
    }
}
