//! Counter statistics (R9): the statistics query over one month of a busy city —
//! 30,000 visits and 100,000 applications — with two earlier months of the same size
//! in the store, which the range must not read (N9: the time depends on the month
//! asked for, not on how much history there is).
//!
//! `cargo bench -p kakanai-control-plane --bench stats` — on SQLite unless
//! `KAKANAI_BENCH_BACKEND=postgres` (a PostgreSQL started by `kakanai-test-peers`).
//! One-shot figures per grouping first, then criterion groups.
//!
//! Each application carries about a kilobyte of form data, as a filled form does.
//! The rows are written straight into `visits` and `applications` in batches (the
//! applications API writes an audit entry per step, which would make the setup take
//! an hour and is measured by the applications bench); tenant, counters, staff and
//! groups go through the store API. Values are generated ASCII (ids, codes, times), so
//! the batches carry them as SQL literals.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)] // criterion_group! makes an undocumented fn

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use kakanai_control_plane::model::TenantId;
use kakanai_control_plane::rules::Date;
use kakanai_control_plane::store::stats::{GroupBy, StatsRange};
use kakanai_control_plane::store::{Group, NewDevice, NewStaff, Store, Tenant};
use kakanai_protocol::topic::Ident;
use kakanai_protocol::{KeyId, SigningKey};

const VISITS_PER_MONTH: usize = 30_000;
const COUNTERS: usize = 20;
const STAFF: usize = 60;
const GROUPS: usize = 6;
const BATCH: usize = 1_000;
const DAY_MS: i64 = 86_400_000;
const MIN_MS: i64 = 60_000;

struct Fixture {
    _dir: tempfile::TempDir,
    _pg: Option<kakanai_test_peers::Postgres>,
    rt: tokio::runtime::Runtime,
    store: Store,
    tenant: TenantId,
    month: StatsRange,
    backend: String,
}

/// SplitMix64: deterministic data without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Runs one SQL text (a batch insert) on whichever backend the store URL names.
async fn exec(pool: &Pool, sql: &str) {
    match pool {
        Pool::Sqlite(p) => {
            sqlx::raw_sql(sql).execute(p).await.unwrap();
        }
        Pool::Postgres(p) => {
            sqlx::raw_sql(sql).execute(p).await.unwrap();
        }
    }
}

enum Pool {
    Sqlite(sqlx::SqlitePool),
    Postgres(sqlx::PgPool),
}

/// Writes one month of visits (30,000) and applications (100,000: three per visit,
/// a fourth for every third) starting on `first`; ids are numbered from `base`.
async fn month(pool: &Pool, tenant: &str, first: Date, base: usize, rng: &mut Rng) -> usize {
    let days = 30;
    let mut visits = Vec::with_capacity(VISITS_PER_MONTH);
    for i in 0..VISITS_PER_MONTH {
        let day = first.add_days(rng.below(days) as i64);
        // 08:30–19:00 JST.
        let start = day.to_days() * DAY_MS - 9 * 60 * MIN_MS
            + (8 * 60 + 30) * MIN_MS
            + rng.below(630 * 60_000) as i64;
        visits.push((base + i, start));
    }
    let mut sql = String::new();
    for chunk in visits.chunks(BATCH) {
        sql.clear();
        sql.push_str(
            "INSERT INTO visits (tenant, id, number, device, staff, kind, started_at_ms) VALUES ",
        );
        for (k, (i, start)) in chunk.iter().enumerate() {
            if k > 0 {
                sql.push(',');
            }
            write!(
                sql,
                "('{tenant}', 'v{i:08}', 'V{i:08}', 'counter-{:02}', 'staff-{:03}', 'certificate', {start})",
                i % COUNTERS,
                (i * 7) % STAFF,
            )
            .unwrap();
        }
        exec(pool, &sql).await;
    }
    let mut apps = Vec::new();
    let mut j = base * 4;
    for (k, (i, start)) in visits.iter().enumerate() {
        let n = if k % 3 == 0 { 4 } else { 3 };
        for _ in 0..n {
            apps.push((j, *i, *start));
            j += 1;
        }
    }
    let total = apps.len();
    // Form data as a filled form has it: about a kilobyte of JSON per application,
    // which a query reading the table rows would have to page through.
    let pad = format!("{{\"form\":\"{}\"}}", "x".repeat(1_000));
    for chunk in apps.chunks(BATCH) {
        sql.clear();
        sql.push_str(
            "INSERT INTO applications (tenant, id, number, visit, form, procedure, certificate, \
             state, data, created_at_ms, updated_at_ms, created_by, accepted_by, accepted_at_ms) VALUES ",
        );
        for (k, (j, visit, start)) in chunk.iter().enumerate() {
            if k > 0 {
                sql.push(',');
            }
            let (procedure, certificate) = if rng.below(10) < 7 {
                (format!("'proc-{:02}'", rng.below(30)), "NULL".to_owned())
            } else {
                ("NULL".to_owned(), format!("'cert-{:02}'", rng.below(10)))
            };
            let roll = rng.below(100);
            let state = match roll {
                0..=9 => "draft",
                10..=16 => "printed",
                17..=24 => "cancelled",
                25..=74 => "accepted",
                75..=89 => "exported",
                _ => "completed",
            };
            let accepted = if matches!(state, "accepted" | "exported" | "completed") {
                (start + (3 + rng.below(57) as i64) * MIN_MS).to_string()
            } else {
                "NULL".to_owned()
            };
            let by = if accepted == "NULL" {
                "NULL"
            } else {
                "'staff'"
            };
            write!(
                sql,
                "('{tenant}', 'a{j:09}', 'A{j:09}', 'v{visit:08}', 'FORM', {procedure}, {certificate}, \
                 '{state}', '{pad}', {start}, {start}, 'staff', {by}, {accepted})"
            )
            .unwrap();
        }
        exec(pool, &sql).await;
    }
    total
}

fn setup() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let backend = std::env::var("KAKANAI_BENCH_BACKEND").unwrap_or_else(|_| "sqlite".into());
    let (url, pg) = if backend == "postgres" {
        let pg = kakanai_test_peers::Postgres::start().unwrap();
        pg.create_database("bench").unwrap();
        (pg.url_for("bench"), Some(pg))
    } else {
        let url = format!(
            "sqlite://{}?mode=rwc",
            dir.path().join("store.db").display()
        );
        (url, None)
    };
    let tenant = TenantId::new("bench-city").unwrap();
    let t = Instant::now();
    let store = rt.block_on(async {
        let store = Store::open(&url).await.unwrap();
        store
            .create_tenant(
                &Tenant {
                    id: tenant.clone(),
                    name: "見本市".into(),
                },
                0,
            )
            .await
            .unwrap();
        for i in 0..COUNTERS {
            let key = SigningKey::from_seed(&[i as u8 + 1; 32]).unwrap();
            store
                .register_device(
                    &tenant,
                    &NewDevice {
                        id: Ident::new(&format!("counter-{i:02}")).unwrap(),
                        counter_name: format!("{}番窓口", i + 1),
                        location: "本庁舎".into(),
                        kid: KeyId::of_key(&key.verifying_key()),
                        public_key: key.verifying_key(),
                        firmware: None,
                    },
                    0,
                )
                .await
                .unwrap();
        }
        for g in 0..GROUPS {
            store
                .create_group(
                    &tenant,
                    &Group {
                        name: format!("group-{g}"),
                        description: format!("{}課", g + 1),
                        permissions: BTreeSet::from(["certificate.issue".to_owned()]),
                    },
                )
                .await
                .unwrap();
        }
        for s in 0..STAFF {
            let id = format!("staff-{s:03}");
            store
                .create_staff(
                    &tenant,
                    &NewStaff {
                        login_id: id.clone(),
                        display_name: "職員".into(),
                        password_hash: "$argon2id$bench".into(),
                        must_change_password: false,
                    },
                    0,
                )
                .await
                .unwrap();
            store
                .add_group_member(&tenant, &format!("group-{}", s % GROUPS), &id)
                .await
                .unwrap();
        }
        store
    });
    let pool = rt.block_on(async {
        if backend == "postgres" {
            Pool::Postgres(sqlx::PgPool::connect(&url).await.unwrap())
        } else {
            Pool::Sqlite(sqlx::SqlitePool::connect(&url).await.unwrap())
        }
    });
    let mut rng = Rng(2026);
    let months = [
        Date::new(2026, 9, 1).unwrap(),
        Date::new(2026, 10, 1).unwrap(),
        Date::new(2026, 11, 1).unwrap(),
    ];
    let mut apps = 0;
    for (m, first) in months.iter().enumerate() {
        apps += rt.block_on(month(
            &pool,
            tenant.as_str(),
            *first,
            m * VISITS_PER_MONTH,
            &mut rng,
        ));
    }
    rt.block_on(async {
        match &pool {
            Pool::Sqlite(p) => {
                sqlx::raw_sql("ANALYZE").execute(p).await.unwrap();
                p.close().await;
            }
            Pool::Postgres(p) => {
                sqlx::raw_sql("ANALYZE").execute(p).await.unwrap();
                p.close().await;
            }
        }
    });
    println!(
        "setup ({backend}): {} visits, {apps} applications over 3 months in {:.2?}",
        VISITS_PER_MONTH * months.len(),
        t.elapsed()
    );
    let month = StatsRange::new(
        Date::new(2026, 11, 1).unwrap(),
        Date::new(2026, 11, 30).unwrap(),
    )
    .unwrap();
    Fixture {
        _dir: dir,
        _pg: pg,
        rt,
        store,
        tenant,
        month,
        backend,
    }
}

fn run(fx: &Fixture, by: GroupBy) -> (u64, u64, usize) {
    let s = fx
        .rt
        .block_on(
            fx.store
                .counter_stats(&fx.tenant, fx.month, by, BTreeMap::new()),
        )
        .unwrap();
    (s.total.visits, s.total.applications, s.groups.len())
}

fn one_shot(fx: &Fixture) {
    // The read alone (query and rows), without grouping.
    let mut times: Vec<Duration> = (0..5)
        .map(|_| {
            let t = Instant::now();
            let visits = fx
                .rt
                .block_on(fx.store.stats_visits(&fx.tenant, fx.month))
                .unwrap();
            assert_eq!(visits.len(), VISITS_PER_MONTH);
            t.elapsed()
        })
        .collect();
    times.sort();
    println!(
        "stats_visits ({}, one month): median of 5 runs {:.1?}",
        fx.backend, times[2]
    );
    for by in GroupBy::ALL {
        let mut times: Vec<Duration> = (0..5)
            .map(|_| {
                let t = Instant::now();
                let (visits, apps, _) = run(fx, by);
                let took = t.elapsed();
                assert_eq!(visits as usize, VISITS_PER_MONTH);
                assert_eq!(apps, 100_000);
                took
            })
            .collect();
        times.sort();
        let (_, _, groups) = run(fx, by);
        println!(
            "stats ({}, one month: 30,000 visits, 100,000 applications, by {}): {groups} groups, median of 5 runs {:.1?} (min {:.1?}, max {:.1?})",
            fx.backend,
            by.as_str(),
            times[2],
            times[0],
            times[4]
        );
    }
}

fn bench(c: &mut Criterion) {
    let fx = setup();
    one_shot(&fx);
    let mut g = c.benchmark_group(format!("stats_{}", fx.backend));
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(10));
    for by in [GroupBy::Procedure, GroupBy::StaffGroup, GroupBy::Hour] {
        g.bench_function(format!("month_by_{}", by.as_str()), |b| {
            b.iter(|| run(&fx, by))
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
