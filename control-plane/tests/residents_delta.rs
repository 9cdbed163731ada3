//! Delta files (異動分), the drop directory and import reports, on SQLite and on a
//! real PostgreSQL (`kakanai-test-peers`): a generated day of births, deaths, moves
//! and marriages applied through the drop directory after the full files; the same
//! delta again changes nothing and says so; contradicting or older deltas are
//! refused whole with their lines; files without their marker are left alone; every
//! file leaves a report without personal data, visible only to its tenant.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[macro_use]
mod common;

use std::path::Path;
use std::sync::OnceLock;

use kakanai_control_plane::model::TenantId;
use kakanai_control_plane::residents::csvfile::{decode, parse, Table};
use kakanai_control_plane::residents::drop::{import_drop_dir, pending, DONE, REJECTED};
use kakanai_control_plane::residents::gen::{gen_delta, DeltaSummary};
use kakanai_control_plane::residents::mapping::Encoding;
use kakanai_control_plane::residents::{
    by_atena, gen_city, household_of, ImportMode, ImportOptions, Mapping, MyNumberKey, Outcome,
    ReportOutcome,
};
use kakanai_control_plane::store::{Store, Tenant};

both_backends!("rd_";
    a_day_of_changes_applies_once,
    contradicting_delta_is_refused_with_lines,
    older_delta_and_bad_codes_are_refused,
    drop_dir_waits_for_markers_and_keeps_order,
    statistics_refresh_after_large_imports_only,
);

const T0: i64 = 1_800_000_000_000;
const RESIDENTS: usize = 1_500;
const SEED: u64 = 77;

struct City {
    full: tempfile::TempDir,
    delta: tempfile::TempDir,
    summary: DeltaSummary,
}

/// The generated city and its delta, made once per test process.
fn city() -> &'static City {
    static CITY: OnceLock<City> = OnceLock::new();
    CITY.get_or_init(|| {
        let full = tempfile::tempdir().unwrap();
        gen_city(full.path(), SEED, RESIDENTS).unwrap();
        let delta = tempfile::tempdir().unwrap();
        let summary = gen_delta(delta.path(), SEED, RESIDENTS).unwrap();
        City {
            full,
            delta,
            summary,
        }
    })
}

fn tenant(s: &str) -> TenantId {
    TenantId::new(s).unwrap()
}

async fn store_with(url: &str, tenants: &[&str]) -> Store {
    let store = Store::open(url).await.unwrap();
    for t in tenants {
        store
            .create_tenant(
                &Tenant {
                    id: tenant(t),
                    name: format!("{t} 市"),
                },
                T0,
            )
            .await
            .unwrap();
    }
    store
}

fn options() -> ImportOptions {
    ImportOptions {
        my_number_key: Some(MyNumberKey::new(&[42; 32])),
        now_ms: T0,
    }
}

/// Puts a file in the drop directory under `name`, with its marker.
fn drop_file(dir: &Path, name: &str, bytes: &[u8]) {
    std::fs::write(dir.join(name), bytes).unwrap();
    std::fs::write(dir.join(format!("{name}.ok")), b"").unwrap();
}

/// The full city as timestamped full files in a fresh drop directory.
fn drop_dir_with_full() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(city().full.path()).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        let (stem, ext) = name.rsplit_once('.').unwrap();
        let bytes = std::fs::read(city().full.path().join(&name)).unwrap();
        drop_file(dir.path(), &format!("{stem}_20250401T000000.{ext}"), &bytes);
    }
    dir
}

fn delta_files() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(city().delta.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".csv"))
        .collect();
    names.sort();
    names
}

fn jumin_delta() -> (String, Table) {
    let name = delta_files()
        .into_iter()
        .find(|n| n.starts_with("jumin_delta_"))
        .unwrap();
    let bytes = std::fs::read(city().delta.path().join(&name)).unwrap();
    (
        name,
        parse(&decode(&bytes, Encoding::Utf8).unwrap()).unwrap(),
    )
}

fn col(t: &Table, name: &str) -> usize {
    t.header.iter().position(|h| h == name).unwrap()
}

fn files_in(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = match std::fs::read_dir(dir) {
        Ok(r) => r
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect(),
        Err(_) => Vec::new(),
    };
    v.sort();
    v
}

/// Writes a jumin delta (CSV, UTF-8) of the given rows (異動区分 first) with the
/// full file's columns.
fn jumin_delta_bytes(rows: &[Vec<String>]) -> Vec<u8> {
    let (_, t) = jumin_delta();
    let mut text = t.header.join(",");
    text.push_str("\r\n");
    for r in rows {
        text.push_str(&r.join(","));
        text.push_str("\r\n");
    }
    text.into_bytes()
}

async fn a_day_of_changes_applies_once(url: String) {
    let store = store_with(&url, &["city-a", "city-b"]).await;
    let a = tenant("city-a");
    let dir = drop_dir_with_full();
    for name in delta_files() {
        let bytes = std::fs::read(city().delta.path().join(&name)).unwrap();
        drop_file(dir.path(), &name, &bytes);
    }
    let s = &city().summary;
    assert!(s.births > 0 && s.deaths > 0 && s.moves_in > 0 && s.moves_out > 0);
    assert!(s.marriages > 0 && s.removals > 0);

    let run = import_drop_dir(&store, &a, dir.path(), &Mapping::reference(), &options())
        .await
        .unwrap();
    assert!(run.all_applied(), "{run}");
    // Every full file first, then the deltas.
    let modes: Vec<ImportMode> = run.files.iter().map(|f| f.mode).collect();
    let first_delta = modes.iter().position(|m| *m == ImportMode::Delta).unwrap();
    assert_eq!(first_delta, 16);
    assert!(modes[first_delta..].iter().all(|m| *m == ImportMode::Delta));
    let jumin = run
        .files
        .iter()
        .find(|f| f.mode == ImportMode::Delta && f.file.starts_with("jumin_"))
        .unwrap();
    assert_eq!(jumin.outcome, Outcome::Applied);
    assert_eq!(jumin.added, s.births + s.moves_in);
    assert_eq!(jumin.changed, s.deaths + s.moves_out + s.marriages);
    assert_eq!(jumin.removed, s.removals);
    // The other kinds lost the records of those who died or moved out.
    assert!(run
        .files
        .iter()
        .any(|f| f.mode == ImportMode::Delta && f.kind.as_str() != "jumin" && f.removed > 0));
    // Everything moved to done/, nothing left behind.
    assert_eq!(files_in(dir.path()), vec![DONE.to_owned()]);
    assert_eq!(
        files_in(&dir.path().join(DONE)).len(),
        2 * (16 + delta_files().len())
    );

    // What the counter now sees.
    let (_, t) = jumin_delta();
    let (ia, istatus, iname, ihh, iold) = (
        col(&t, "宛名番号"),
        col(&t, "状態"),
        col(&t, "氏名"),
        col(&t, "世帯番号"),
        col(&t, "旧氏"),
    );
    for r in &t.records {
        let atena = &r.fields[ia];
        let found = by_atena(&store, &a, atena).await.unwrap();
        match r.fields[0].as_str() {
            "3" => assert!(found.is_none(), "removed"),
            _ => {
                let found = found.unwrap();
                assert_eq!(found.status, r.fields[istatus]);
                assert_eq!(found.name, r.fields[iname]);
                assert_eq!(found.household, r.fields[ihh]);
            }
        }
        // A marriage: she is now in his household, which counts her.
        if r.fields[0] == "2" && !r.fields[iold].is_empty() && r.fields[istatus] == "在住" {
            let hh = household_of(&store, &a, atena).await.unwrap().unwrap();
            assert!(hh.members.iter().any(|m| &m.atena == atena));
            assert!(hh.members.len() >= 2);
        }
    }

    // The same delta again: reported unchanged, nothing changes.
    let before = store.resident_counts(&a).await.unwrap();
    let (name, _) = jumin_delta();
    let bytes = std::fs::read(city().delta.path().join(&name)).unwrap();
    drop_file(dir.path(), &name, &bytes);
    let again = import_drop_dir(&store, &a, dir.path(), &Mapping::reference(), &options())
        .await
        .unwrap();
    assert_eq!(again.files.len(), 1);
    assert_eq!(again.files[0].outcome, Outcome::Unchanged, "{again}");
    assert_eq!(store.resident_counts(&a).await.unwrap(), before);
    assert!(files_in(&dir.path().join(DONE)).contains(&format!("{name}.1")));

    // Reports: one per file, newest first, the re-run marked unchanged.
    let reports = store.list_import_reports(&a, 100).await.unwrap();
    assert_eq!(reports.len(), 16 + delta_files().len() + 1);
    assert_eq!(reports[0].report.outcome, ReportOutcome::Unchanged);
    assert_eq!(reports[0].report.file, name);
    assert_eq!(reports[0].report.as_of.as_deref(), Some("20250402230000"));
    assert_eq!(reports[0].report.file_hash.len(), 64);
    let applied = reports
        .iter()
        .find(|r| r.report.file == name && r.report.outcome == ReportOutcome::Applied)
        .unwrap();
    assert_eq!(applied.report.added as usize, s.births + s.moves_in);
    let one = store.import_report(&a, applied.id).await.unwrap().unwrap();
    assert_eq!(&one, applied);
    // Another tenant sees none of them.
    let b = tenant("city-b");
    assert!(store.import_report(&b, applied.id).await.unwrap().is_none());
    assert!(store.list_import_reports(&b, 100).await.unwrap().is_empty());
}

/// What the query planner knows of the residents table: on PostgreSQL how many times
/// it was analysed by hand (not by autovacuum) and the row count it last saw; on
/// SQLite the `sqlite_stat1` rows of the table (none before any `ANALYZE`).
async fn planner_statistics(url: &str) -> (i64, String) {
    use sqlx::Connection;
    if url.starts_with("sqlite:") {
        let mut c = sqlx::SqliteConnection::connect(url).await.unwrap();
        let exists: Option<String> = sqlx::query_scalar(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'sqlite_stat1'",
        )
        .fetch_optional(&mut c)
        .await
        .unwrap();
        if exists.is_none() {
            return (0, String::new());
        }
        let rows: Vec<(String, String)> = sqlx::query_as(
            "SELECT idx, stat FROM sqlite_stat1 WHERE tbl = 'residents' ORDER BY idx",
        )
        .fetch_all(&mut c)
        .await
        .unwrap();
        (rows.len() as i64, format!("{rows:?}"))
    } else {
        let mut c = sqlx::PgConnection::connect(url).await.unwrap();
        let (count, tuples): (i64, f32) = sqlx::query_as(
            "SELECT s.analyze_count, c.reltuples FROM pg_stat_user_tables s \
             JOIN pg_class c ON c.oid = s.relid WHERE s.relname = 'residents'",
        )
        .fetch_one(&mut c)
        .await
        .unwrap();
        (count, format!("{tuples}"))
    }
}

/// A first import (every row new) leaves the planner statistics of the residents
/// table it wrote (PostgreSQL: one `ANALYZE`, counting every resident; SQLite: the
/// table's `sqlite_stat1` rows), so lookups right after it are planned for the table
/// as it is; the day's small delta that follows does not analyse again.
async fn statistics_refresh_after_large_imports_only(url: String) {
    let store = store_with(&url, &["city-a"]).await;
    let a = tenant("city-a");
    let (none, _) = planner_statistics(&url).await;
    assert_eq!(none, 0, "no statistics before any import");

    let dir = drop_dir_with_full();
    let run = import_drop_dir(&store, &a, dir.path(), &Mapping::reference(), &options())
        .await
        .unwrap();
    assert!(run.all_applied(), "{run}");
    let residents = store.resident_counts(&a).await.unwrap().residents;
    let (after_full, seen) = planner_statistics(&url).await;
    if url.starts_with("sqlite:") {
        assert!(
            after_full >= 4,
            "the residents indexes have statistics: {seen}"
        );
    } else {
        assert_eq!(after_full, 1, "analysed once after the first import");
        assert_eq!(
            seen,
            residents.to_string(),
            "the planner counts every resident"
        );
    }

    // The day's delta changes a few dozen of 1,500 residents: no new ANALYZE.
    let (name, _) = jumin_delta();
    let bytes = std::fs::read(city().delta.path().join(&name)).unwrap();
    drop_file(dir.path(), &name, &bytes);
    let day = import_drop_dir(&store, &a, dir.path(), &Mapping::reference(), &options())
        .await
        .unwrap();
    assert!(day.all_applied(), "{day}");
    assert!(store.resident_counts(&a).await.unwrap().residents != residents);
    assert_eq!(planner_statistics(&url).await, (after_full, seen));
}

async fn contradicting_delta_is_refused_with_lines(url: String) {
    let store = store_with(&url, &["city-a"]).await;
    let a = tenant("city-a");
    let dir = drop_dir_with_full();
    let run = import_drop_dir(&store, &a, dir.path(), &Mapping::reference(), &options())
        .await
        .unwrap();
    assert!(run.all_applied(), "{run}");
    let before = store.resident_counts(&a).await.unwrap();

    // Rows from the generated delta, turned against the stored data.
    let (_, t) = jumin_delta();
    let ia = col(&t, "宛名番号");
    let mut changes = t.records.iter().filter(|r| r.fields[0] == "2");
    let changed = changes.next().unwrap();
    let other = changes.next().unwrap();
    let added = t.records.iter().find(|r| r.fields[0] == "1").unwrap();
    let mut add_existing = other.fields.clone();
    add_existing[0] = "1".into();
    let mut change_unknown = added.fields.clone();
    change_unknown[0] = "2".into();
    let mut remove_unknown = vec![String::new(); t.header.len()];
    remove_unknown[0] = "3".into();
    remove_unknown[ia] = "0000000001".into();
    let valid = changed.fields.clone();
    let name = "jumin_delta_20250402T230000.csv";
    drop_file(
        dir.path(),
        name,
        &jumin_delta_bytes(&[valid.clone(), add_existing, change_unknown, remove_unknown]),
    );
    let run = import_drop_dir(&store, &a, dir.path(), &Mapping::reference(), &options())
        .await
        .unwrap();
    let report = &run.files[0];
    assert_eq!(report.outcome, Outcome::Rejected);
    let lines: Vec<usize> = report.rejected.iter().map(|r| r.line).collect();
    assert_eq!(lines, vec![3, 4, 5]);
    assert!(report
        .rejected
        .iter()
        .all(|r| r.column.as_deref() == Some("宛名番号")));
    // Nothing applied, not even the valid row.
    assert_eq!(store.resident_counts(&a).await.unwrap(), before);
    let stored = by_atena(&store, &a, &valid[ia]).await.unwrap().unwrap();
    assert_eq!(stored.status, "在住");
    assert!(files_in(&dir.path().join(REJECTED)).contains(&name.to_owned()));
    // The stored report names lines and rules, never a name.
    let kept = store
        .import_report(&a, report.report_id.unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(kept.report.outcome, ReportOutcome::Rejected);
    assert_eq!(kept.report.rejected, 3);
    let json = serde_json::to_string(&kept).unwrap();
    let iname = col(&t, "氏名");
    for r in [changed, other, added] {
        let family = r.fields[iname].split('\u{3000}').next().unwrap();
        assert!(!json.contains(family), "a name in the report");
        assert!(!json.contains(&r.fields[ia]), "a 宛名番号 in the report");
    }
}

async fn older_delta_and_bad_codes_are_refused(url: String) {
    let store = store_with(&url, &["city-a"]).await;
    let a = tenant("city-a");
    let dir = drop_dir_with_full();
    import_drop_dir(&store, &a, dir.path(), &Mapping::reference(), &options())
        .await
        .unwrap();
    let (name, t) = jumin_delta();
    let bytes = std::fs::read(city().delta.path().join(&name)).unwrap();
    drop_file(dir.path(), &name, &bytes);
    let run = import_drop_dir(&store, &a, dir.path(), &Mapping::reference(), &options())
        .await
        .unwrap();
    assert!(run.all_applied(), "{run}");
    let before = store.resident_counts(&a).await.unwrap();

    // An older delta (even a harmless one) is refused.
    let ia = col(&t, "宛名番号");
    let some = t.records.iter().find(|r| r.fields[0] == "2").unwrap();
    let older = "jumin_delta_20250402T120000.csv";
    drop_file(
        dir.path(),
        older,
        &jumin_delta_bytes(std::slice::from_ref(&some.fields)),
    );
    // A bad 異動区分 (in a newer file) is refused with its line and column.
    let mut bad = some.fields.clone();
    bad[0] = "9".into();
    let newer = "jumin_delta_20250403T230000.csv";
    drop_file(dir.path(), newer, &jumin_delta_bytes(&[bad]));
    let run = import_drop_dir(&store, &a, dir.path(), &Mapping::reference(), &options())
        .await
        .unwrap();
    assert_eq!(run.files.len(), 2);
    assert_eq!(run.files[0].file, older, "oldest first");
    assert_eq!(run.files[0].outcome, Outcome::Rejected);
    assert!(run.files[0].rejected[0].reason.contains("older"));
    assert_eq!(run.files[1].outcome, Outcome::Rejected);
    assert_eq!(run.files[1].rejected[0].line, 2);
    assert_eq!(run.files[1].rejected[0].column.as_deref(), Some("異動区分"));
    assert_eq!(store.resident_counts(&a).await.unwrap(), before);
    assert!(by_atena(&store, &a, &some.fields[ia])
        .await
        .unwrap()
        .is_some());
    let rejected = files_in(&dir.path().join(REJECTED));
    assert!(rejected.contains(&older.to_owned()) && rejected.contains(&newer.to_owned()));
}

async fn drop_dir_waits_for_markers_and_keeps_order(url: String) {
    let store = store_with(&url, &["city-a"]).await;
    let a = tenant("city-a");
    let dir = tempfile::tempdir().unwrap();
    let full = std::fs::read(city().full.path().join("jumin.csv")).unwrap();
    // Half a file, still being copied: no marker, so never read.
    std::fs::write(
        dir.path().join("jumin_20250401T000000.csv"),
        &full[..full.len() / 2],
    )
    .unwrap();
    // A file whose name matches no kind.
    drop_file(dir.path(), "unknown_20250401T000000.csv", b"a,b\r\n1,2\r\n");
    // The order: full before delta, by kind, then time.
    let (delta_name, _) = jumin_delta();
    drop_file(
        dir.path(),
        &delta_name,
        &std::fs::read(city().delta.path().join(&delta_name)).unwrap(),
    );
    let kokuho = std::fs::read(city().full.path().join("kokuho.csv")).unwrap();
    drop_file(dir.path(), "kokuho_20250401T000000.csv", &kokuho);
    drop_file(dir.path(), "kokuho_20250301T000000.csv", &kokuho);
    let order: Vec<String> = pending(dir.path(), &Mapping::reference())
        .unwrap()
        .into_iter()
        .map(|f| f.name)
        .collect();
    assert_eq!(
        order,
        vec![
            "kokuho_20250301T000000.csv".to_owned(),
            "kokuho_20250401T000000.csv".to_owned(),
            delta_name.clone(),
            "unknown_20250401T000000.csv".to_owned(),
        ]
    );
    let run = import_drop_dir(&store, &a, dir.path(), &Mapping::reference(), &options())
        .await
        .unwrap();
    assert_eq!(run.unknown.len(), 1);
    assert!(!run.all_applied());
    // The delta needs residents that are not there yet: refused whole.
    let delta = run.files.iter().find(|f| f.file == delta_name).unwrap();
    assert_eq!(delta.outcome, Outcome::Rejected);
    assert_eq!(store.resident_counts(&a).await.unwrap().residents, 0);
    // The half file is still there, untouched, waiting for its marker.
    let left = files_in(dir.path());
    assert!(
        left.contains(&"jumin_20250401T000000.csv".to_owned()),
        "{left:?}"
    );
    assert_eq!(
        std::fs::metadata(dir.path().join("jumin_20250401T000000.csv"))
            .unwrap()
            .len() as usize,
        full.len() / 2
    );
    // Once complete and marked, it is applied.
    std::fs::write(dir.path().join("jumin_20250401T000000.csv"), &full).unwrap();
    std::fs::write(dir.path().join("jumin_20250401T000000.csv.ok"), b"").unwrap();
    let run = import_drop_dir(&store, &a, dir.path(), &Mapping::reference(), &options())
        .await
        .unwrap();
    assert!(run.all_applied(), "{run}");
    assert!(store.resident_counts(&a).await.unwrap().residents > 0);
    let reports = store.list_import_reports(&a, 10).await.unwrap();
    assert!(reports
        .iter()
        .any(|r| r.report.kind == "unknown" && r.report.outcome == ReportOutcome::Rejected));
}
