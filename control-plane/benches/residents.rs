//! Residents: generation and import throughput of the synthetic city on SQLite, and
//! lookup latency (p50 / p99) by card data and by kana prefix (N9).
//!
//! `cargo bench -p kakanai-control-plane --bench residents` — the city has 100,000
//! residents unless `KAKANAI_BENCH_RESIDENTS` says otherwise, on SQLite unless
//! `KAKANAI_BENCH_BACKEND=postgres` (a PostgreSQL started by `kakanai-test-peers`).
//! `KAKANAI_BENCH_KINDS=jumin` (a comma-separated list of kind ids) imports only those
//! kinds' files, full and delta: the lookups read 住民記録 only, so at 10⁷ residents
//! the other 15 kinds can be left out to save time and disk (the import figures then
//! count those kinds' rows only). `KAKANAI_BENCH_CHUNK=N` imports 住民記録 as delta
//! files (異動区分 追加) of N rows each instead of one full file, so the importer's
//! memory stays that of N rows (a full file holds the whole city in memory: about 7 GB
//! at 10⁶ residents with all kinds); the unchanged re-import is then skipped.
//! `KAKANAI_BENCH_VACUUM=1` (PostgreSQL) runs `VACUUM (ANALYZE)` after the imports, so
//! the lookups see the state autovacuum reaches shortly after an import.
//! `KAKANAI_BENCH_NO_DELTA=1` skips the day's delta: generating it rebuilds the whole
//! city in memory, more than 23 GB at 10⁷ residents.
//! `KAKANAI_BENCH_DIR=DIR` writes the city and the SQLite store into `DIR` (created)
//! instead of a temporary directory, and leaves them there for later lookup runs. The
//! size of the store on disk is printed after the imports.
//! `KAKANAI_BENCH_STORE=URL` with `KAKANAI_BENCH_JUMIN=FILE` measures the lookups only,
//! on a store an earlier run left (tenant `bench-city`), with cards from the first
//! `KAKANAI_BENCH_RESIDENTS` data lines of that 住民記録 file.
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
    gen_city, import_dir, import_file, lookup_card, search_name, CardQuery, DataKind, FileSpec,
    ImportMode, ImportOptions, Mapping, MyNumberKey, Outcome,
};
use kakanai_control_plane::store::{Store, Tenant};

struct Fixture {
    _dir: Option<tempfile::TempDir>,
    _pg: Option<kakanai_test_peers::Postgres>,
    rt: tokio::runtime::Runtime,
    store: Store,
    tenant: TenantId,
    /// (name, card address, YYYYMMDD, kana family prefix) of sampled living residents.
    cards: Vec<Card>,
}

fn field<'a>(t: &'a Table, r: usize, name: &str) -> &'a str {
    &t.records[r].fields[t.header.iter().position(|h| h == name).unwrap()]
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// The kinds `KAKANAI_BENCH_KINDS` names (empty: all).
fn only_kinds() -> Vec<String> {
    std::env::var("KAKANAI_BENCH_KINDS")
        .map(|v| {
            v.split(',')
                .map(|k| k.trim().to_owned())
                .filter(|k| !k.is_empty())
                .collect()
        })
        .unwrap_or_default()
}

/// Removes from `dir` the files (full `KIND.csv`, delta `KIND_delta_*`, markers) of
/// kinds not in `kinds`; keeps everything when `kinds` is empty.
fn keep_kinds(dir: &std::path::Path, kinds: &[String]) {
    if kinds.is_empty() {
        return;
    }
    let mapping = Mapping::reference();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let keep = kinds.iter().any(|k| {
            let file = mapping
                .kinds
                .get(k)
                .map(|km| km.file.clone())
                .unwrap_or_else(|| format!("{k}.csv"));
            let stem = file.trim_end_matches(".csv");
            name == file || name.starts_with(&format!("{stem}_delta"))
        });
        if path.is_file() && !keep {
            std::fs::remove_file(&path).unwrap();
        }
    }
}

type Card = (String, String, String, String);

/// Every `step`-th living resident of a parsed 住民記録 file, as a card shows them
/// (full-width digits in the address).
fn sample_cards(j: &Table, step: usize) -> Vec<Card> {
    (0..j.records.len())
        .step_by(step)
        .filter(|&r| field(j, r, "状態") == "在住")
        .map(|r| {
            let address: String = field(j, r, "住所")
                .chars()
                .map(|c| {
                    if c.is_ascii_digit() {
                        char::from_u32(c as u32 + 0xFEE0).unwrap()
                    } else {
                        c
                    }
                })
                .collect();
            let kana: String = field(j, r, "氏名フリガナ").chars().take(3).collect();
            (
                field(j, r, "氏名").to_owned(),
                address,
                field(j, r, "生年月日").replace('-', ""),
                kana,
            )
        })
        .collect()
}

/// Imports `city/jumin.csv` as delta files of `chunk` rows (every row 異動区分 追加),
/// each through the importer in its own transaction; returns the sampled cards, the
/// rows imported and the time the imports took (splitting excluded).
#[allow(clippy::too_many_arguments)]
fn import_in_chunks(
    rt: &tokio::runtime::Runtime,
    store: &Store,
    tenant: &TenantId,
    city: &std::path::Path,
    mapping: &Mapping,
    options: &ImportOptions,
    chunk: usize,
    step: usize,
) -> (Vec<Card>, usize, Duration) {
    use std::io::BufRead;
    let km = mapping.kind(DataKind::Jumin).unwrap();
    let delta = &mapping.delta;
    let mut lines =
        std::io::BufReader::new(std::fs::File::open(city.join(&km.file)).unwrap()).lines();
    let header = lines.next().unwrap().unwrap();
    let header = header
        .trim_start_matches('\u{FEFF}')
        .trim_end_matches('\r')
        .to_owned();
    let mut cards = Vec::new();
    let mut rows = 0;
    let mut took = Duration::ZERO;
    let mut n = 0usize;
    loop {
        let mut text = format!("{},{header}\n", delta.column);
        let mut in_chunk = 0;
        for line in lines.by_ref() {
            let line = line.unwrap();
            text.push_str(&delta.add);
            text.push(',');
            text.push_str(line.trim_end_matches('\r'));
            text.push('\n');
            in_chunk += 1;
            if in_chunk == chunk {
                break;
            }
        }
        if in_chunk == 0 {
            break;
        }
        n += 1;
        let spec = FileSpec {
            kind: DataKind::Jumin,
            mode: ImportMode::Delta,
            file: format!("jumin_delta_part{n:03}.csv"),
            as_of: None,
        };
        let t = Instant::now();
        let report = rt
            .block_on(import_file(
                store,
                tenant,
                delta,
                km,
                &spec,
                text.as_bytes(),
                options,
            ))
            .unwrap();
        took += t.elapsed();
        assert_eq!(report.outcome, Outcome::Applied, "{report}");
        assert_eq!(report.added, in_chunk, "{report}");
        rows += in_chunk;
        cards.extend(sample_cards(&parse(&text).unwrap(), step));
    }
    (cards, rows, took)
}

fn setup() -> Fixture {
    let residents: usize = std::env::var("KAKANAI_BENCH_RESIDENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let (dir, root) = match std::env::var("KAKANAI_BENCH_DIR") {
        Ok(d) => {
            std::fs::create_dir_all(&d).unwrap();
            (None, std::path::PathBuf::from(d))
        }
        Err(_) => {
            let t = tempfile::tempdir().unwrap();
            let p = t.path().to_owned();
            (Some(t), p)
        }
    };
    let city = root.join("city");
    let t = Instant::now();
    let summary = gen_city(&city, 1, residents).unwrap();
    let files: usize = summary.files.iter().map(|(_, n)| n).sum();
    println!(
        "gen_city: {} residents, {} households, {files} rows in 16 files in {:.2?}",
        summary.residents,
        summary.households,
        t.elapsed()
    );
    let kinds = only_kinds();
    keep_kinds(&city, &kinds);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let backend = std::env::var("KAKANAI_BENCH_BACKEND").unwrap_or_else(|_| "sqlite".into());
    let (url, pg) = if backend == "postgres" {
        let pg = kakanai_test_peers::Postgres::start().unwrap();
        pg.create_database("bench").unwrap();
        // To find the server's processes (e.g. to renice them for the lookups).
        println!("postgres: socket dir {}", pg.socket_dir().display());
        (pg.url_for("bench"), Some(pg))
    } else {
        let url = format!("sqlite://{}?mode=rwc", root.join("store.db").display());
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
    let step = (residents / 2_000).max(1);
    let chunk: Option<usize> = std::env::var("KAKANAI_BENCH_CHUNK")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&n| n > 0);
    let cards = if let Some(chunk) = chunk {
        let (cards, rows, took) =
            import_in_chunks(&rt, &store, &tenant, &city, &mapping, &options, chunk, step);
        println!(
            "import ({backend}, first, 住民記録 as delta files of {chunk} rows): {rows} rows in {took:.2?} = {:.0} rows/s",
            rows as f64 / took.as_secs_f64()
        );
        // The other kinds (if any were kept), each a full file; the 住民記録 file is
        // set aside (kept for `KAKANAI_BENCH_JUMIN` on a later run).
        std::fs::rename(city.join("jumin.csv"), root.join("jumin-imported.csv")).unwrap();
        let t = Instant::now();
        let report = rt
            .block_on(import_dir(&store, &tenant, &city, &mapping, &options))
            .unwrap();
        let took = t.elapsed();
        assert!(report.all_applied(), "{report}");
        let others = report.rows_applied();
        if others > 0 {
            println!(
                "import ({backend}, first, other kinds): {others} rows in {took:.2?} = {:.0} rows/s",
                others as f64 / took.as_secs_f64()
            );
        }
        println!("import ({backend}, unchanged re-import): skipped with KAKANAI_BENCH_CHUNK");
        cards
    } else {
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
        let bytes = std::fs::read(city.join("jumin.csv")).unwrap();
        let j = parse(&decode(&bytes, Encoding::Utf8).unwrap()).unwrap();
        sample_cards(&j, step)
    };
    if std::env::var("KAKANAI_BENCH_NO_DELTA").is_ok() {
        println!("delta ({backend}): skipped with KAKANAI_BENCH_NO_DELTA");
        store_size(&rt, &root, pg.as_ref());
        return Fixture {
            _dir: dir,
            _pg: pg,
            rt,
            store,
            tenant,
            cards,
        };
    }
    // One day's delta (異動分) of every kind, through the drop directory.
    let drop = root.join("drop");
    let day = kakanai_control_plane::residents::gen::gen_delta(&drop, 1, residents).unwrap();
    keep_kinds(&drop, &kinds);
    let t = Instant::now();
    let run = rt
        .block_on(kakanai_control_plane::residents::drop::import_drop_dir(
            &store, &tenant, &drop, &mapping, &options,
        ))
        .unwrap();
    let took = t.elapsed();
    assert!(run.all_applied(), "{run}");
    if let (Ok(_), Some(pg)) = (std::env::var("KAKANAI_BENCH_VACUUM"), &pg) {
        // The state autovacuum reaches a little after an import (statistics, the
        // visibility map for index-only scans), without waiting for it.
        use sqlx::Connection;
        let t = Instant::now();
        rt.block_on(async {
            let mut c = sqlx::PgConnection::connect(&pg.url_for("bench"))
                .await
                .unwrap();
            sqlx::query("VACUUM (ANALYZE)")
                .execute(&mut c)
                .await
                .unwrap();
        });
        println!("VACUUM (ANALYZE) after the import: {:.2?}", t.elapsed());
    }
    let delta_rows: usize = run.files.iter().map(|f| f.rows).sum();
    store_size(&rt, &root, pg.as_ref());
    println!(
        "delta ({backend}, one day: {} births, {} deaths, {} in, {} out, {} marriages): {delta_rows} rows in {} files in {took:.2?}",
        day.births, day.deaths, day.moves_in, day.moves_out, day.marriages, run.files.len()
    );

    Fixture {
        _dir: dir,
        _pg: pg,
        rt,
        store,
        tenant,
        cards,
    }
}

/// Prints the store's size on disk: the SQLite files, or the PostgreSQL database.
fn store_size(
    rt: &tokio::runtime::Runtime,
    root: &std::path::Path,
    pg: Option<&kakanai_test_peers::Postgres>,
) {
    let bytes: u64 = match pg {
        Some(pg) => rt.block_on(async {
            use sqlx::Connection;
            let mut c = sqlx::PgConnection::connect(&pg.url_for("bench"))
                .await
                .unwrap();
            let n: i64 = sqlx::query_scalar("SELECT pg_database_size('bench')")
                .fetch_one(&mut c)
                .await
                .unwrap();
            n as u64
        }),
        None => ["store.db", "store.db-wal", "store.db-shm"]
            .iter()
            .filter_map(|f| std::fs::metadata(root.join(f)).ok())
            .map(|m| m.len())
            .sum(),
    };
    println!("store on disk: {:.2} GB", bytes as f64 / 1e9);
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

/// A store an earlier run filled: no generation or import, only the cards.
fn existing(url: &str, jumin: &str) -> Fixture {
    use std::io::BufRead;
    let residents: usize = std::env::var("KAKANAI_BENCH_RESIDENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let step = (residents / 2_000).max(1);
    let mut lines = std::io::BufReader::new(std::fs::File::open(jumin).unwrap()).lines();
    let header = lines.next().unwrap().unwrap();
    let header = header
        .trim_start_matches('\u{FEFF}')
        .trim_end_matches('\r')
        .to_owned();
    let mut text = format!("{header}\n");
    for line in lines.take(residents).step_by(step) {
        text.push_str(line.unwrap().trim_end_matches('\r'));
        text.push('\n');
    }
    let cards = sample_cards(&parse(&text).unwrap(), 1);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let store = rt.block_on(Store::open(url)).unwrap();
    println!("existing store: cards from the first {residents} residents of the file");
    Fixture {
        _dir: None,
        _pg: None,
        rt,
        store,
        tenant: TenantId::new("bench-city").unwrap(),
        cards,
    }
}

fn bench(c: &mut Criterion) {
    let f = match (
        std::env::var("KAKANAI_BENCH_STORE"),
        std::env::var("KAKANAI_BENCH_JUMIN"),
    ) {
        (Ok(url), Ok(jumin)) => existing(&url, &jumin),
        _ => setup(),
    };
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
