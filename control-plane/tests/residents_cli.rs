//! The drop directory from the command line and on the service's schedule:
//! `gen-city` then `gen-city --delta` write a city and a day of changes;
//! `import --drop-dir` applies complete files in order, moves them to done/, says
//! what it did and fails when a file is refused; the schedule
//! (`residents::drop::spawn_scheduler`, what `serve` runs) picks files up by itself;
//! a `[residents.import]` section with mistakes is refused with the field named.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[macro_use]
mod common;

use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use kakanai_control_plane::model::TenantId;
use kakanai_control_plane::residents::drop::{spawn_scheduler, DropConfig, DONE};
use kakanai_control_plane::residents::Outcome;
use kakanai_control_plane::store::{Store, Tenant};

const CLI: &str = env!("CARGO_BIN_EXE_kakanai-control-plane");

both_backends!("rc_";
    schedule_picks_up_files,
);

fn mark_all(dir: &Path) {
    for e in std::fs::read_dir(dir).unwrap() {
        let name = e.unwrap().file_name().into_string().unwrap();
        if name.ends_with(".csv") {
            std::fs::write(dir.join(format!("{name}.ok")), b"").unwrap();
        }
    }
}

#[test]
fn import_drop_dir_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let drop = dir.path().join("drop");
    let out = Command::new(CLI)
        .args(["gen-city", "--seed", "5", "--residents", "600", "--out"])
        .arg(&drop)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    mark_all(&drop);
    let out = Command::new(CLI)
        .args([
            "gen-city",
            "--delta",
            "--seed",
            "5",
            "--residents",
            "600",
            "--out",
        ])
        .arg(&drop)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let said = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        said.contains("births") && said.contains("jumin_delta_"),
        "{said}"
    );

    let db = format!("sqlite://{}?mode=rwc", dir.path().join("k.db").display());
    let import = || {
        Command::new(CLI)
            .args([
                "import",
                "--tenant",
                "city-a",
                "--database",
                &db,
                "--drop-dir",
            ])
            .arg(&drop)
            .output()
            .unwrap()
    };
    let out = import();
    let said = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        said.contains("jumin_delta_") && said.contains("applied"),
        "{said}"
    );
    let left: Vec<String> = std::fs::read_dir(&drop)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        // gen-city also writes the demo people's virtual cards into demo/ (issue 9).
        .filter(|n| n != "demo")
        .collect();
    assert_eq!(left, vec![DONE.to_owned()]);

    // A broken file: refused, reported, exit status 1, moved to rejected/.
    std::fs::write(
        drop.join("kokuho_delta_20990101T000000.csv"),
        "nonsense\r\n",
    )
    .unwrap();
    std::fs::write(drop.join("kokuho_delta_20990101T000000.csv.ok"), "").unwrap();
    let out = import();
    let said = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(out.status.code(), Some(1), "{said}");
    assert!(
        said.contains("REJECTED") && said.contains("missing column"),
        "{said}"
    );
    assert!(drop
        .join("rejected/kokuho_delta_20990101T000000.csv")
        .is_file());
}

async fn schedule_picks_up_files(url: String) {
    let store = Store::open(&url).await.unwrap();
    let t = TenantId::new("city-a").unwrap();
    store
        .create_tenant(
            &Tenant {
                id: t.clone(),
                name: "A".into(),
            },
            0,
        )
        .await
        .unwrap();
    let root = tempfile::tempdir().unwrap();
    let mut table = toml::Table::new();
    let mut import = toml::Table::new();
    import.insert(
        "drop_dir".into(),
        toml::Value::String(root.path().display().to_string()),
    );
    import.insert("every_minutes".into(), toml::Value::Integer(10));
    import.insert(
        "at".into(),
        toml::Value::Array(vec![toml::Value::String("06:30".into())]),
    );
    table.insert("import".into(), toml::Value::Table(import.clone()));
    let config = DropConfig::from_table(&table).unwrap().unwrap();
    let dir = config.tenant_dir(&t);
    kakanai_control_plane::residents::gen_city(&dir, 9, 300).unwrap();
    mark_all(&dir);
    std::fs::write(dir.join("bogus.csv"), "x\r\n").unwrap();
    std::fs::write(dir.join("bogus.csv.ok"), "").unwrap();

    let applied = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(AtomicUsize::new(0));
    let (a, f) = (Arc::clone(&applied), Arc::clone(&failed));
    let scheduler = spawn_scheduler(
        store.clone(),
        vec![t.clone()],
        config,
        Arc::new(move |_kind, outcome| {
            if outcome == Outcome::Rejected {
                f.fetch_add(1, Ordering::SeqCst);
            } else {
                a.fetch_add(1, Ordering::SeqCst);
            }
        }),
    );
    // The first run is due at once.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while applied.load(Ordering::SeqCst) < 16 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    scheduler.stop().await;
    assert_eq!(applied.load(Ordering::SeqCst), 16);
    assert_eq!(failed.load(Ordering::SeqCst), 1, "the unknown file counted");
    assert!(store.resident_counts(&t).await.unwrap().residents > 0);
    assert_eq!(store.list_import_reports(&t, 100).await.unwrap().len(), 17);

    // Mistakes in the section are refused with the field named.
    for (key, value, field) in [
        ("every_minutes", toml::Value::Integer(0), "every_minutes"),
        (
            "at",
            toml::Value::Array(vec![toml::Value::String("25:00".into())]),
            "at",
        ),
        ("colour", toml::Value::String("blue".into()), "colour"),
    ] {
        let mut bad = import.clone();
        bad.insert(key.into(), value);
        let mut table = toml::Table::new();
        table.insert("import".into(), toml::Value::Table(bad));
        let err = DropConfig::from_table(&table).unwrap_err();
        assert!(err.contains(field), "{err}");
    }
}
