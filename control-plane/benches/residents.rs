//! Residents: generation and import throughput of the synthetic city on SQLite, and
//! lookup latency (p50 / p99) by card data and by kana prefix (N9).
//!
//! `cargo bench -p kakanai-control-plane --bench residents` — the city has 100,000
//! residents unless `KAKANAI_BENCH_RESIDENTS` says otherwise, on SQLite unless
//! `KAKANAI_BENCH_BACKEND=postgres` (a PostgreSQL started by `kakanai-test-peers`).
//! The one-shot figures (generation, import rows/s, re-import, one day's delta through
//! the drop directory, latency percentiles) are printed first; the criterion groups
//! that follow track the lookups over time.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)] // criterion_group! makes an undocumented fn

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use kakanai_control_plane::model::TenantId;
use kakanai_control_plane::residents::csvfile::{decode, parse, Table};
use kakanai_control_plane::residents::mapping::Encoding;
use kakanai_control_plane::residents::{
    gen_city, import_dir, lookup_card, search_name, CardQuery, ImportOptions, Mapping, MyNumberKey,
};
use kakanai_control_plane::store::{Store, Tenant};

struct Fixture {
    _dir: tempfile::TempDir,
    _pg: Option<kakanai_test_peers::Postgres>,
    rt: tokio::runtime::Runtime,
    store: Store,
    tenant: TenantId,
    /// (name, card address, YYYYMMDD, kana family prefix) of sampled living residents.
    cards: Vec<(String, String, String, String)>,
}

fn field<'a>(t: &'a Table, r: usize, name: &str) -> &'a str {
    &t.records[r].fields[t.header.iter().position(|h| h == name).unwrap()]
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn setup() -> Fixture {
    let residents: usize = std::env::var("KAKANAI_BENCH_RESIDENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let dir = tempfile::tempdir().unwrap();
    let city = dir.path().join("city");
    let t = Instant::now();
    let summary = gen_city(&city, 1, residents).unwrap();
    let files: usize = summary.files.iter().map(|(_, n)| n).sum();
    println!(
        "gen_city: {} residents, {} households, {files} rows in 16 files in {:.2?}",
        summary.residents,
        summary.households,
        t.elapsed()
    );
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
    let store = rt.block_on(Store::open(&url)).unwrap();
    let tenant = TenantId::new("bench-city").unwrap();
    rt.block_on(store.create_tenant(
        &Tenant {
            id: tenant.clone(),
            name: "見本市".into(),
        },
        0,
    ))
    .unwrap();
    let options = ImportOptions {
        my_number_key: Some(MyNumberKey::new(&[1; 32])),
        now_ms: 0,
    };
    let mapping = Mapping::reference();
    let t = Instant::now();
    let report = rt
        .block_on(import_dir(&store, &tenant, &city, &mapping, &options))
        .unwrap();
    let took = t.elapsed();
    assert!(report.all_applied(), "{report}");
    let rows = report.rows_applied();
    println!(
        "import ({backend}, first): {rows} rows in {took:.2?} = {:.0} rows/s",
        rows as f64 / took.as_secs_f64()
    );
    let t = Instant::now();
    rt.block_on(import_dir(&store, &tenant, &city, &mapping, &options))
        .unwrap();
    let took = t.elapsed();
    println!(
        "import ({backend}, unchanged re-import): {rows} rows in {took:.2?} = {:.0} rows/s",
        rows as f64 / took.as_secs_f64()
    );
    // One day's delta (異動分) of every kind, through the drop directory.
    let drop = dir.path().join("drop");
    let day = kakanai_control_plane::residents::gen::gen_delta(&drop, 1, residents).unwrap();
    let t = Instant::now();
    let run = rt
        .block_on(kakanai_control_plane::residents::drop::import_drop_dir(
            &store, &tenant, &drop, &mapping, &options,
        ))
        .unwrap();
    let took = t.elapsed();
    assert!(run.all_applied(), "{run}");
    let delta_rows: usize = run.files.iter().map(|f| f.rows).sum();
    println!(
        "delta ({backend}, one day: {} births, {} deaths, {} in, {} out, {} marriages): {delta_rows} rows in {} files in {took:.2?}",
        day.births, day.deaths, day.moves_in, day.moves_out, day.marriages, run.files.len()
    );

    let bytes = std::fs::read(city.join("jumin.csv")).unwrap();
    let j = parse(&decode(&bytes, Encoding::Utf8).unwrap()).unwrap();
    let cards = (0..j.records.len())
        .step_by((j.records.len() / 2_000).max(1))
        .filter(|&r| field(&j, r, "状態") == "在住")
        .map(|r| {
            let address: String = field(&j, r, "住所")
                .chars()
                .map(|c| {
                    if c.is_ascii_digit() {
                        char::from_u32(c as u32 + 0xFEE0).unwrap()
                    } else {
                        c
                    }
                })
                .collect();
            let kana: String = field(&j, r, "氏名フリガナ").chars().take(3).collect();
            (
                field(&j, r, "氏名").to_owned(),
                address,
                field(&j, r, "生年月日").replace('-', ""),
                kana,
            )
        })
        .collect();
    Fixture {
        _dir: dir,
        _pg: pg,
        rt,
        store,
        tenant,
        cards,
    }
}

fn latencies(f: &Fixture) {
    let mut card = Vec::new();
    let mut prefix = Vec::new();
    let mut exact = 0;
    for (name, address, birth, kana) in &f.cards {
        let q = CardQuery {
            name,
            address,
            birth_date: birth,
            sex: None,
        };
        let t = Instant::now();
        let found = f.rt.block_on(lookup_card(&f.store, &f.tenant, &q)).unwrap();
        card.push(t.elapsed());
        exact += usize::from(found.exact);
        let t = Instant::now();
        f.rt.block_on(search_name(&f.store, &f.tenant, kana, None, 20))
            .unwrap();
        prefix.push(t.elapsed());
    }
    card.sort();
    prefix.sort();
    println!(
        "lookup by card data: n={} exact={exact} p50={:.2?} p99={:.2?}",
        card.len(),
        percentile(&card, 0.5),
        percentile(&card, 0.99)
    );
    println!(
        "search by kana prefix (3 chars, limit 20): n={} p50={:.2?} p99={:.2?}",
        prefix.len(),
        percentile(&prefix, 0.5),
        percentile(&prefix, 0.99)
    );
}

fn bench(c: &mut Criterion) {
    let f = setup();
    latencies(&f);
    let mut i = 0usize;
    c.bench_function("residents/lookup_card", |b| {
        b.iter(|| {
            let (name, address, birth, _) = &f.cards[i % f.cards.len()];
            i += 1;
            let q = CardQuery {
                name,
                address,
                birth_date: birth,
                sex: None,
            };
            f.rt.block_on(lookup_card(&f.store, &f.tenant, &q)).unwrap()
        })
    });
    c.bench_function("residents/search_kana_prefix", |b| {
        b.iter(|| {
            let (_, _, _, kana) = &f.cards[i % f.cards.len()];
            i += 1;
            f.rt.block_on(search_name(&f.store, &f.tenant, kana, None, 20))
                .unwrap()
        })
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20).measurement_time(Duration::from_secs(5));
    targets = bench
}
criterion_main!(benches);
