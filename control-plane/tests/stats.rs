//! Counter statistics (R9, issue 9 item 3) on SQLite and on a real PostgreSQL server
//! (`both_backends!`; a case that cannot start PostgreSQL fails, it never skips).
//!
//! The data is made the way the counter makes it, through the applications API:
//! visits at two counters by staff of two groups (one member in both, one in none),
//! certificate requests printed, accepted and cancelled at known times over two days,
//! plus visits just outside the range. The figures are checked per grouping, then the
//! admin page (table and chart) and the CSV are checked to carry the same figures, an
//! administrator without `admin.stats` is refused, and a real browser renders the
//! page (with `KAKANAI_SCREENSHOTS=1` it is saved as `docs/screenshots/admin-stats.png`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[macro_use]
mod common;
#[path = "admin_fixture/mod.rs"]
mod fixture;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use fixture::Browser as Http;
use kakanai_control_plane::admin::AdminSettings;
use kakanai_control_plane::applications::certificate::{CertificateItem, Relationship};
use kakanai_control_plane::applications::{
    self, Act, ApplicationRecord, ApplicationState, CancelReason, CertificateRequest, Person, Visit,
};
use kakanai_control_plane::model::TenantId;
use kakanai_control_plane::rules::{catalog, CatalogueSet, Date};
use kakanai_control_plane::service::{self, RunningService, ServiceConfig};
use kakanai_control_plane::staff::{password, HashParams};
use kakanai_control_plane::store::stats::{CounterStats, GroupBy, StatsGroup, StatsRange};
use kakanai_control_plane::store::{AuditQuery, Group, NewDevice, NewStaff, Store, Tenant};
use kakanai_protocol::topic::Ident;
use kakanai_protocol::{KeyId, SigningKey};
use kakanai_test_peers::free_port;

both_backends!("stats_";
    figures_follow_the_applications,
    page_and_csv_show_the_same_figures,
);

const DAY_MS: i64 = 86_400_000;
const MIN: i64 = 60_000;
const ADMIN_PASSWORD: &str = "tokei-Pass-2026";

fn city() -> TenantId {
    TenantId::new("city-a").unwrap()
}

/// `HH:MM` JST on 2026-11-`day`, in ms.
fn at(day: u8, h: i64, m: i64) -> i64 {
    Date::new(2026, 11, day).unwrap().to_days() * DAY_MS - 9 * 60 * MIN + h * 60 * MIN + m * MIN
}

fn range() -> StatsRange {
    StatsRange::new(
        Date::new(2026, 11, 24).unwrap(),
        Date::new(2026, 11, 25).unwrap(),
    )
    .unwrap()
}

fn catalogue_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("catalog")
}

/// The store with the tenant, the reference catalogue installed, two counters, and
/// staff: tanaka (市民課), suzuki (税務課), sato (both), admins with and without
/// `admin.stats`. kimura (who starts one visit) has no account and no group.
async fn open(url: &str) -> Store {
    let store = Store::open(url).await.unwrap();
    let t = city();
    let now = at(1, 8, 0);
    store
        .create_tenant(
            &Tenant {
                id: t.clone(),
                name: "書無市".into(),
            },
            now,
        )
        .await
        .unwrap();
    let files = catalog::read_files(&catalogue_dir()).unwrap();
    store
        .install_catalogue_versions(&t, &files, "setup", now)
        .await
        .unwrap();
    for (i, name) in [(1u8, "市民課 1番窓口"), (2, "税務課 5番窓口")] {
        let key = SigningKey::from_seed(&[i; 32]).unwrap();
        store
            .register_device(
                &t,
                &NewDevice {
                    id: Ident::new(&format!("counter-{i}")).unwrap(),
                    counter_name: name.into(),
                    location: "本庁舎1階".into(),
                    kid: KeyId::of_key(&key.verifying_key()),
                    public_key: key.verifying_key(),
                    firmware: None,
                },
                now,
            )
            .await
            .unwrap();
    }
    let group = |name: &str, description: &str, perms: &[&str]| Group {
        name: name.into(),
        description: description.into(),
        permissions: perms
            .iter()
            .map(|p| (*p).to_owned())
            .collect::<BTreeSet<_>>(),
    };
    for g in [
        group("shimin", "市民課", &["certificate.issue"]),
        group("zeimu", "税務課", &["certificate.issue"]),
        group("kikaku", "企画課（統計）", &["admin.stats"]),
        group("johosystem", "情報システム課", &["admin.staff"]),
    ] {
        store.create_group(&t, &g).await.unwrap();
    }
    let rng = ring::rand::SystemRandom::new();
    let hash =
        password::hash_password(HashParams::INSECURE_FOR_TESTS, &rng, ADMIN_PASSWORD).unwrap();
    for (id, name, groups) in [
        ("tanaka", "田中 一郎", &["shimin"][..]),
        ("suzuki", "鈴木 二郎", &["zeimu"][..]),
        ("sato", "佐藤 三郎", &["shimin", "zeimu"][..]),
        ("stats-admin", "統計 担当", &["kikaku"][..]),
        ("staff-admin", "職員 管理", &["johosystem"][..]),
    ] {
        store
            .create_staff(
                &t,
                &NewStaff {
                    login_id: id.into(),
                    display_name: name.into(),
                    password_hash: hash.clone(),
                    must_change_password: false,
                },
                now,
            )
            .await
            .unwrap();
        for g in groups {
            store.add_group_member(&t, g, id).await.unwrap();
        }
    }
    store
}

fn item(certificate: &str) -> CertificateItem {
    CertificateItem {
        certificate: certificate.into(),
        options: Vec::new(),
        copies: 1,
        fee: 300,
    }
}

fn request(items: Vec<CertificateItem>) -> CertificateRequest {
    let person = Person {
        name: Some("山田 太郎".into()),
        kana: Some("ヤマダ タロウ".into()),
        atena: Some("000000000101".into()),
        ..Person::default()
    };
    let total = items.iter().map(|i| i.fee * i64::from(i.copies)).sum();
    CertificateRequest {
        subject: person.clone(),
        requester: person,
        relationship: Relationship::Myself,
        purpose: "提出用".into(),
        destination: "勤務先".into(),
        id_check: "マイナンバーカード".into(),
        items,
        fee_total: total,
    }
}

struct Counter<'a> {
    store: &'a Store,
    set: CatalogueSet,
}

impl Counter<'_> {
    async fn visit(&self, device: &str, staff: &str, start: i64) -> Visit {
        applications::start_visit(self.store, &city(), device, staff, "certificate", start)
            .await
            .unwrap()
    }

    async fn request(&self, v: &Visit, certs: &[&str], at_ms: i64) -> Vec<ApplicationRecord> {
        let cat = self.set.for_date(Date::new(2026, 11, 24).unwrap()).unwrap();
        let req = request(certs.iter().map(|c| item(c)).collect());
        applications::create_certificate_request(self.store, &city(), v, &req, cat, "書無市", at_ms)
            .await
            .unwrap()
    }

    fn act(v: &Visit, at_ms: i64) -> Act {
        Act::staff_at(&v.staff, &v.device, at_ms)
    }

    async fn print(&self, v: &Visit, a: &ApplicationRecord, at_ms: i64) {
        applications::record_printed(self.store, &city(), &a.id, [9; 32], 1, &Self::act(v, at_ms))
            .await
            .unwrap();
    }

    async fn accept(&self, v: &Visit, a: &ApplicationRecord, at_ms: i64) {
        applications::accept_by_number(self.store, &city(), &a.number, &Self::act(v, at_ms))
            .await
            .unwrap();
    }

    async fn cancel(&self, v: &Visit, a: &ApplicationRecord, at_ms: i64) {
        applications::cancel(
            self.store,
            &city(),
            &a.id,
            CancelReason::Withdrawn,
            "",
            &Self::act(v, at_ms),
        )
        .await
        .unwrap();
    }
}

/// The counter's two days (and a visit on each side of them).
///
/// | visit | start (JST) | counter | staff | applications | handling |
/// |---|---|---|---|---|---|
/// | V1 | 11/24 09:10 | 1 | tanaka | 住民票: accepted 09:20 | 10 min |
/// | V2 | 11/24 09:40 | 1 | tanaka | 住民票 accepted 09:50, 印鑑 accepted 10:05 | 25 min |
/// | V3 | 11/24 13:05 | 2 | suzuki | 納税: printed, cancelled | — |
/// | V4 | 11/25 10:00 | 2 | suzuki | 住民票 draft, 所得 printed | — |
/// | V5 | 11/25 10:30 | 1 | sato | 住民票 accepted 10:34, cancelled 11:00 | 4 min |
/// | V6 | 11/25 14:00 | 1 | kimura | none | — |
/// | out | 11/23 23:59, 11/26 00:00 | 1 | tanaka | 住民票 accepted | — |
async fn counter_days(store: &Store) {
    let c = Counter {
        store,
        set: CatalogueSet::load(&catalogue_dir()).unwrap(),
    };
    let v1 = c.visit("counter-1", "tanaka", at(24, 9, 10)).await;
    let a = c.request(&v1, &["juminhyo"], at(24, 9, 11)).await;
    c.print(&v1, &a[0], at(24, 9, 12)).await;
    c.accept(&v1, &a[0], at(24, 9, 20)).await;

    let v2 = c.visit("counter-1", "tanaka", at(24, 9, 40)).await;
    let a = c
        .request(&v2, &["juminhyo", "inkan_shomei"], at(24, 9, 41))
        .await;
    assert_eq!(a.len(), 2, "two request forms");
    c.print(&v2, &a[0], at(24, 9, 45)).await;
    c.print(&v2, &a[1], at(24, 9, 45)).await;
    c.accept(&v2, &a[0], at(24, 9, 50)).await;
    c.accept(&v2, &a[1], at(24, 10, 5)).await;

    let v3 = c.visit("counter-2", "suzuki", at(24, 13, 5)).await;
    let a = c.request(&v3, &["nozei_shomei"], at(24, 13, 6)).await;
    c.print(&v3, &a[0], at(24, 13, 8)).await;
    c.cancel(&v3, &a[0], at(24, 13, 10)).await;

    let v4 = c.visit("counter-2", "suzuki", at(25, 10, 0)).await;
    let a = c
        .request(&v4, &["juminhyo", "shotoku_shomei"], at(25, 10, 1))
        .await;
    let shotoku = a
        .iter()
        .find(|x| x.certificate.as_deref() == Some("shotoku_shomei"))
        .unwrap();
    c.print(&v4, shotoku, at(25, 10, 3)).await;

    let v5 = c.visit("counter-1", "sato", at(25, 10, 30)).await;
    let a = c.request(&v5, &["juminhyo"], at(25, 10, 31)).await;
    c.print(&v5, &a[0], at(25, 10, 32)).await;
    c.accept(&v5, &a[0], at(25, 10, 34)).await;
    c.cancel(&v5, &a[0], at(25, 11, 0)).await;

    c.visit("counter-1", "kimura", at(25, 14, 0)).await;

    for start in [at(24, 0, 0) - MIN, at(26, 0, 0)] {
        let v = c.visit("counter-1", "tanaka", start).await;
        let a = c.request(&v, &["juminhyo"], start + MIN).await;
        c.print(&v, &a[0], start + 2 * MIN).await;
        c.accept(&v, &a[0], start + 3 * MIN).await;
    }
}

fn group<'a>(stats: &'a CounterStats, key: &str) -> &'a StatsGroup {
    stats
        .groups
        .iter()
        .find(|g| g.key == key)
        .unwrap_or_else(|| panic!("no group {key} in {:?}", stats.groups))
}

/// visits, applications, (state, count)…, handling visits, median, p90, mean.
fn check(
    g: &StatsGroup,
    visits: u64,
    apps: u64,
    states: &[(ApplicationState, u64)],
    median: Option<f64>,
) {
    assert_eq!(g.visits, visits, "visits of {}", g.key);
    assert_eq!(g.applications, apps, "applications of {}", g.key);
    for s in ApplicationState::ALL {
        let want = states
            .iter()
            .find(|(st, _)| *st == s)
            .map_or(0, |(_, n)| *n);
        assert_eq!(g.in_state(s), want, "{s} of {}", g.key);
    }
    assert_eq!(g.handling.median_min, median, "median of {}", g.key);
}

async fn stats(store: &Store, by: GroupBy) -> CounterStats {
    let names = [
        ("juminhyo", "住民票の写し（世帯全員・一部）"),
        ("inkan_shomei", "印鑑登録証明書"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    store
        .counter_stats(&city(), range(), by, names)
        .await
        .unwrap()
}

use ApplicationState::{Accepted, Cancelled, Draft, Printed};

async fn figures_follow_the_applications(url: String) {
    let store = open(&url).await;
    counter_days(&store).await;

    // The total: six visits, seven applications; handling 10, 25 and 4 minutes.
    let s = stats(&store, GroupBy::Procedure).await;
    let t = &s.total;
    check(
        t,
        6,
        7,
        &[(Accepted, 3), (Cancelled, 2), (Printed, 1), (Draft, 1)],
        Some(10.0),
    );
    assert_eq!(t.handling.visits, 3);
    assert_eq!(t.handling.p90_min, Some(25.0));
    assert_eq!(t.handling.mean_min, Some(13.0));

    // By procedure, with the catalogue's names; most applications first, and the
    // visit without applications last.
    let keys: Vec<&str> = s.groups.iter().map(|g| g.key.as_str()).collect();
    assert_eq!(keys[0], "juminhyo");
    assert_eq!(*keys.last().unwrap(), "（申請なし）");
    let j = group(&s, "juminhyo");
    assert_eq!(j.label, "住民票の写し（世帯全員・一部）");
    check(
        j,
        4,
        4,
        &[(Accepted, 2), (Draft, 1), (Cancelled, 1)],
        Some(10.0),
    );
    assert_eq!(j.handling.mean_min, Some(13.0));
    check(
        group(&s, "inkan_shomei"),
        1,
        1,
        &[(Accepted, 1)],
        Some(25.0),
    );
    check(group(&s, "nozei_shomei"), 1, 1, &[(Cancelled, 1)], None);
    check(group(&s, "shotoku_shomei"), 1, 1, &[(Printed, 1)], None);
    check(group(&s, "（申請なし）"), 1, 0, &[], None);
    assert_eq!(s.groups.len(), 5);

    // By counter, named from the registry.
    let s = stats(&store, GroupBy::Counter).await;
    assert_eq!(s.groups.len(), 2);
    let c1 = group(&s, "counter-1");
    assert_eq!(c1.label, "市民課 1番窓口");
    check(c1, 4, 4, &[(Accepted, 3), (Cancelled, 1)], Some(10.0));
    check(
        group(&s, "counter-2"),
        2,
        3,
        &[(Cancelled, 1), (Printed, 1), (Draft, 1)],
        None,
    );

    // By staff group: sato counts in both, kimura in none; no staff member appears.
    let s = stats(&store, GroupBy::StaffGroup).await;
    let keys: Vec<&str> = s.groups.iter().map(|g| g.key.as_str()).collect();
    assert_eq!(keys, ["shimin", "zeimu", "（所属なし）"]);
    assert_eq!(group(&s, "shimin").label, "市民課（shimin）");
    check(
        group(&s, "shimin"),
        3,
        4,
        &[(Accepted, 3), (Cancelled, 1)],
        Some(10.0),
    );
    check(
        group(&s, "zeimu"),
        3,
        4,
        &[(Cancelled, 2), (Printed, 1), (Draft, 1)],
        Some(4.0),
    );
    check(group(&s, "（所属なし）"), 1, 0, &[], None);
    for g in &s.groups {
        for who in ["tanaka", "suzuki", "sato", "kimura"] {
            assert!(!g.key.contains(who) && !g.label.contains(who));
        }
    }

    // By day (JST; the visits at 23:59 the day before and 00:00 the day after are out).
    let s = stats(&store, GroupBy::Day).await;
    let keys: Vec<&str> = s.groups.iter().map(|g| g.key.as_str()).collect();
    assert_eq!(keys, ["2026-11-24", "2026-11-25"]);
    assert_eq!(group(&s, "2026-11-24").label, "11/24（火）");
    check(
        group(&s, "2026-11-24"),
        3,
        4,
        &[(Accepted, 3), (Cancelled, 1)],
        Some(17.5),
    );
    check(
        group(&s, "2026-11-25"),
        3,
        3,
        &[(Cancelled, 1), (Printed, 1), (Draft, 1)],
        Some(4.0),
    );

    // By hour of day: 8–19 always, in order.
    let s = stats(&store, GroupBy::Hour).await;
    let keys: Vec<&str> = s.groups.iter().map(|g| g.key.as_str()).collect();
    let want: Vec<String> = (8..=19).map(|h| format!("{h:02}")).collect();
    assert_eq!(keys, want);
    check(group(&s, "09"), 2, 3, &[(Accepted, 3)], Some(17.5));
    assert_eq!(group(&s, "09").label, "9時台");
    check(
        group(&s, "10"),
        2,
        3,
        &[(Draft, 1), (Printed, 1), (Cancelled, 1)],
        Some(4.0),
    );
    check(group(&s, "13"), 1, 1, &[(Cancelled, 1)], None);
    check(group(&s, "14"), 1, 0, &[], None);
    check(group(&s, "08"), 0, 0, &[], None);

    // Another tenant sees nothing of this.
    let other = TenantId::new("city-b").unwrap();
    store
        .create_tenant(
            &Tenant {
                id: other.clone(),
                name: "別市".into(),
            },
            at(1, 8, 0),
        )
        .await
        .unwrap();
    let s = store
        .counter_stats(&other, range(), GroupBy::Procedure, BTreeMap::new())
        .await
        .unwrap();
    assert_eq!(s.total.visits, 0);
    assert!(s.groups.is_empty());
}

// ---------------------------------------------------------------------------------
// The admin UI over HTTP.

struct Running {
    running: RunningService,
    base: String,
    _dir: tempfile::TempDir,
}

/// The control plane on its embedded broker, serving the admin UI over `store`.
async fn serve(store: &Store) -> Running {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let key = SigningKey::from_seed(&[0x42; 32]).unwrap();
    let key_file = dir.path().join("cp.key");
    std::fs::write(&key_file, hex::encode(key.seed())).unwrap();
    std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let text = format!(
        "data_dir = \"{d}\"\ntenants = [\"city-a\"]\n\n[broker]\nembedded = true\n\
         listen = \"127.0.0.1:{port}\"\n\n[signing]\nkey_file = \"{d}/cp.key\"\n\n[http]\nlisten = \"127.0.0.1:0\"\n",
        d = dir.path().display(),
        port = free_port(),
    );
    let config = ServiceConfig::parse(&text, &dir.path().join("cp.toml"), |_| None).unwrap();
    let options = service::ServiceOptions {
        store: Some(store.clone()),
        admin: AdminSettings {
            policy: fixture::test_policy(),
            ..AdminSettings::default()
        },
        ..service::ServiceOptions::default()
    };
    let running = service::start(config, options).await.unwrap();
    let base = format!("http://{}", running.http_addr());
    Running {
        running,
        base,
        _dir: dir,
    }
}

/// A CSV of quoted fields (as the admin UI writes them) → rows of cells.
fn parse_csv(text: &str) -> Vec<Vec<String>> {
    text.split("\r\n")
        .filter(|l| !l.is_empty())
        .map(|line| {
            let mut cells = Vec::new();
            let mut cell = String::new();
            let mut quoted = false;
            let mut chars = line.chars().peekable();
            while let Some(ch) = chars.next() {
                match (ch, quoted) {
                    ('"', true) if chars.peek() == Some(&'"') => {
                        cell.push('"');
                        chars.next();
                    }
                    ('"', q) => quoted = !q,
                    (',', false) => cells.push(std::mem::take(&mut cell)),
                    (c, _) => cell.push(c),
                }
            }
            cells.push(cell);
            cells
        })
        .collect()
}

fn minutes(m: Option<f64>) -> String {
    m.map(|m| format!("{m:.1}")).unwrap_or_default()
}

async fn export_entries(store: &Store) -> usize {
    store
        .audit_page(
            &city(),
            &AuditQuery {
                action_prefix: Some("admin:stats.export".into()),
                ..AuditQuery::default()
            },
            1000,
        )
        .await
        .unwrap()
        .len()
}

async fn page_and_csv_show_the_same_figures(url: String) {
    let store = open(&url).await;
    counter_days(&store).await;
    let server = serve(&store).await;
    let q = "from=2026-11-24&to=2026-11-25";

    let mut http = Http::new(&server.base);
    let login = http.login("city-a", "stats-admin", ADMIN_PASSWORD).await;
    assert_eq!(login.status, 303, "{}", login.body);
    let page = http.get(&format!("/admin/stats?{q}&by=procedure")).await;
    assert_eq!(page.status, 200, "{}", page.body);
    let csp = page.headers["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("default-src 'self'") && !csp.contains("unsafe-inline"));
    let body = &page.body;
    assert!(body.contains("href=\"/admin/stats\""), "nav link");
    // The chart: drawn inline as SVG, no script, no style attribute.
    assert!(body.contains("<svg"), "chart");
    assert!(body.contains("class=\"median\""), "median marker");
    assert!(body.contains("class=\"applications\""), "count bars");
    assert!(!body.contains("style=") && !body.contains("<script>"));
    // The table: catalogue names, the totals.
    assert!(body.contains("住民票の写し（世帯全員・一部）"));
    assert!(body.contains("<tr data-key=\"juminhyo\">"));
    assert!(body.contains("id=\"total-visits\">6件"), "total visits");
    assert!(body.contains("id=\"total-median\">10.0分"));
    // No resident's name, no staff member.
    for personal in ["山田", "田中", "tanaka", "sato", "000000000101"] {
        assert!(!body.contains(personal), "{personal} on the page");
    }
    let link = "/admin/stats.csv?from=2026-11-24&amp;to=2026-11-25&amp;by=procedure";
    assert!(body.contains(link), "CSV link with the filters");

    // The CSV for every grouping carries the store's figures.
    assert_eq!(export_entries(&store).await, 0);
    for by in GroupBy::ALL {
        let csv = http
            .get(&format!("/admin/stats.csv?{q}&by={}", by.as_str()))
            .await;
        assert_eq!(csv.status, 200);
        assert_eq!(
            csv.headers["content-type"].to_str().unwrap(),
            "text/csv; charset=utf-8"
        );
        assert!(csv.headers["content-disposition"]
            .to_str()
            .unwrap()
            .starts_with("attachment;"));
        let text = csv.body.strip_prefix('\u{FEFF}').expect("BOM for Excel");
        let rows = parse_csv(text);
        assert_eq!(rows[0][0], "集計単位");
        assert_eq!(rows[0][3], "来庁件数");
        assert_eq!(rows[0][12], "処理時間 中央値（分）");
        let want = stats(&store, by).await;
        assert_eq!(
            rows.len() - 1,
            want.groups.len(),
            "one row per group ({by:?})"
        );
        for (row, g) in rows[1..].iter().zip(&want.groups) {
            assert_eq!(row[0], by.label());
            assert_eq!(row[1], g.key);
            assert_eq!(row[3], g.visits.to_string());
            assert_eq!(row[4], g.applications.to_string());
            for (i, s) in ApplicationState::ALL.iter().enumerate() {
                assert_eq!(row[5 + i], g.in_state(*s).to_string());
            }
            assert_eq!(row[11], g.handling.visits.to_string());
            assert_eq!(row[12], minutes(g.handling.median_min));
            assert_eq!(row[13], minutes(g.handling.p90_min));
            assert_eq!(row[14], minutes(g.handling.mean_min));
        }
    }
    // Counter names and group descriptions in the CSV, no staff.
    let csv = http.get(&format!("/admin/stats.csv?{q}&by=group")).await;
    assert!(csv.body.contains("\"市民課（shimin）\""));
    assert!(!csv.body.contains("sato") && !csv.body.contains("佐藤"));
    // Every download was audited, with its filters.
    assert_eq!(export_entries(&store).await, GroupBy::ALL.len() + 1);
    let entry = &store
        .audit_page(
            &city(),
            &AuditQuery {
                action_prefix: Some("admin:stats.export".into()),
                ..AuditQuery::default()
            },
            1,
        )
        .await
        .unwrap()[0];
    assert_eq!(entry.record.detail["by"], "group");
    assert_eq!(entry.record.detail["from"], "2026-11-24");
    assert_eq!(entry.record.detail["rows"], 3);

    // A range without visits: the page says so, and every day is still a row.
    let empty = http
        .get("/admin/stats?from=2026-10-01&to=2026-10-03&by=day")
        .await;
    assert_eq!(empty.status, 200);
    assert!(empty.body.contains("この期間の来庁はありません"));
    assert_eq!(empty.body.matches("<tr data-key=\"2026-10-0").count(), 3);

    // Bad filters: a clear message, no file, no audit entry.
    let before = export_entries(&store).await;
    let bad = http
        .get("/admin/stats.csv?from=2026-11-25&to=2026-11-24&by=day")
        .await;
    assert_eq!(bad.status, 400);
    assert!(bad.body.contains("終了日は開始日と同じか"), "{}", bad.body);
    let bad = http.get("/admin/stats?from=2026-13-01").await;
    assert_eq!(bad.status, 400);
    assert!(bad.body.contains("YYYY-MM-DD"));
    let bad = http.get("/admin/stats?by=staff").await;
    assert_eq!(bad.status, 400);
    assert_eq!(export_entries(&store).await, before);

    // An administrator without admin.stats: no link, no page, no CSV.
    let mut other = Http::new(&server.base);
    let login = other.login("city-a", "staff-admin", ADMIN_PASSWORD).await;
    assert_eq!(login.status, 303);
    let home = other.get("/admin/").await;
    assert_eq!(home.status, 200);
    assert!(!home.body.contains("href=\"/admin/stats\""));
    assert_eq!(other.get(&format!("/admin/stats?{q}")).await.status, 403);
    assert_eq!(
        other.get(&format!("/admin/stats.csv?{q}")).await.status,
        403
    );
    assert_eq!(export_entries(&store).await, before);
    // Nor without a session.
    let mut anonymous = Http::new(&server.base);
    let answer = anonymous.get(&format!("/admin/stats.csv?{q}")).await;
    assert_eq!(answer.status, 303);
    assert!(!answer.body.contains("来庁件数"));

    server.running.shutdown().await;
}

// ---------------------------------------------------------------------------------
// In a real browser.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_renders_its_chart_in_a_browser() {
    use chromiumoxide::cdp::browser_protocol::emulation::SetDeviceMetricsOverrideParams;
    use chromiumoxide::page::ScreenshotParams;
    use futures_util::StreamExt;
    use kakanai_test_peers::Chromium;

    const WAIT: Duration = Duration::from_secs(20);
    let dir = tempfile::tempdir().unwrap();
    let url = format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("store.db").display()
    );
    let store = open(&url).await;
    counter_days(&store).await;
    let server = serve(&store).await;

    // Log in over HTTP and hand the session cookie to the browser.
    let mut http = Http::new(&server.base);
    assert_eq!(
        http.login("city-a", "stats-admin", ADMIN_PASSWORD)
            .await
            .status,
        303
    );
    let (name, value) = http
        .cookies
        .iter()
        .find(|(k, _)| k == "kakanai-admin")
        .unwrap()
        .clone();

    let chromium = tokio::task::spawn_blocking(Chromium::start)
        .await
        .unwrap()
        .expect("Chromium must start for this test");
    let (mut browser, mut handler) = chromiumoxide::Browser::connect(chromium.ws_url())
        .await
        .unwrap();
    let events = tokio::spawn(async move { while handler.next().await.is_some() {} });
    let page = browser.new_page("about:blank").await.unwrap();
    page.execute(SetDeviceMetricsOverrideParams::new(1280, 800, 1.0, false))
        .await
        .unwrap();
    page.set_cookie(
        chromiumoxide::cdp::browser_protocol::network::CookieParam::builder()
            .name(name)
            .value(value)
            .url(server.base.clone())
            .build()
            .unwrap(),
    )
    .await
    .unwrap();
    tokio::time::timeout(
        WAIT,
        page.goto(format!(
            "{}/admin/stats?from=2026-11-24&to=2026-11-25&by=hour",
            server.base
        )),
    )
    .await
    .expect("page in time")
    .unwrap();

    let title = page
        .find_element("h1")
        .await
        .unwrap()
        .inner_text()
        .await
        .unwrap()
        .unwrap_or_default();
    assert_eq!(title, "窓口統計");
    // The chart is laid out: its bars have width where there were applications, the
    // median markers sit where handling times exist, and the stylesheet loaded (the
    // CSP let it through).
    let drawn: serde_json::Value = page
        .evaluate(
            "(() => { const svg = document.querySelector('#stats-chart svg'); \
             const box = svg.getBoundingClientRect(); \
             const bars = [...svg.querySelectorAll('rect.applications')].filter(r => r.getBBox().width > 0).length; \
             return { width: box.width, height: box.height, bars, \
               medians: svg.querySelectorAll('circle.median').length, \
               rows: svg.querySelectorAll('g.row').length, \
               styled: getComputedStyle(document.body).backgroundColor }; })()",
        )
        .await
        .unwrap()
        .into_value()
        .unwrap();
    assert!(drawn["width"].as_f64().unwrap() > 600.0, "{drawn}");
    assert!(drawn["height"].as_f64().unwrap() > 200.0, "{drawn}");
    // Hours 09, 10 and 13 had applications; 09 and 10 handling times.
    assert_eq!(drawn["bars"], 3, "{drawn}");
    assert_eq!(drawn["medians"], 2, "{drawn}");
    assert_eq!(drawn["rows"], 12, "{drawn}");
    assert_eq!(drawn["styled"], "rgb(244, 246, 248)", "{drawn}");

    if std::env::var("KAKANAI_SCREENSHOTS").as_deref() == Ok("1") {
        // The screenshot shows the procedures, the view R9 asks for.
        tokio::time::timeout(
            WAIT,
            page.goto(format!(
                "{}/admin/stats?from=2026-11-24&to=2026-11-25&by=procedure",
                server.base
            )),
        )
        .await
        .expect("page in time")
        .unwrap();
        let out = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/screenshots");
        std::fs::create_dir_all(&out).unwrap();
        page.save_screenshot(
            ScreenshotParams::builder().full_page(true).build(),
            out.join("admin-stats.png"),
        )
        .await
        .unwrap();
    }

    browser.close().await.unwrap();
    let _ = tokio::time::timeout(Duration::from_secs(5), events).await;
    drop(chromium);
    server.running.shutdown().await;
}
