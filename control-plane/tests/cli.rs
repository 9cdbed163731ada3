//! `kakanai-control-plane` from the command line: `determine` prints what the
//! library determines, `catalog check` lists a broken catalogue's errors, `catalog
//! diff` names what changed between versions, `catalog install` refuses a broken
//! catalogue and stores a valid one (`catalog list` shows it), and `audit
//! verify-archive` tells an intact archive from a tampered one.

// Test helpers outside #[test] functions are not covered by allow-unwrap-in-tests.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::Command;

use kakanai_control_plane::audit::{self, chain, ArchiveSpec, AuditEntry};
use kakanai_control_plane::model::{Actor, AuditRecord, Place};
use kakanai_protocol::topic::Ident;
use kakanai_protocol::SigningKey;

const CLI: &str = env!("CARGO_BIN_EXE_kakanai-control-plane");

fn manifest() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn determine_prints_the_same_result_as_the_golden_scenario() {
    let scenarios = manifest().join("tests/scenarios");
    let out = Command::new(CLI)
        .args(["determine", "--catalog"])
        .arg(manifest().join("catalog"))
        .arg("--input")
        .arg(scenarios.join("birth_kokuho.input.json"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let direct = kakanai_control_plane::rules::determine_from_files(
        &manifest().join("catalog"),
        &scenarios.join("birth_kokuho.input.json"),
    )
    .unwrap();
    assert_eq!(printed, direct);
    assert!(printed["persons"]
        .as_array()
        .unwrap()
        .iter()
        .any(|p| !p["procedures"].as_array().unwrap().is_empty()));

    let out = Command::new(CLI)
        .args(["determine", "--catalog"])
        .arg(manifest().join("catalog"))
        .args(["--input", "/nonexistent.json"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn catalog_check_accepts_the_reference_and_lists_errors_of_a_broken_one() {
    let ok = Command::new(CLI)
        .args(["catalog", "check"])
        .arg(manifest().join("catalog"))
        .output()
        .unwrap();
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stdout)
    );

    // A copy of the reference catalogue with one procedure's area misspelt.
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&manifest().join("catalog"), dir.path());
    let mut broken = false;
    for entry in walk(dir.path()) {
        if entry.extension().is_some_and(|e| e == "toml") && !broken {
            let text = std::fs::read_to_string(&entry).unwrap();
            if text.contains("area = \"国民健康保険\"") {
                std::fs::write(
                    &entry,
                    text.replacen("area = \"国民健康保険\"", "area = \"国民健康保健\"", 1),
                )
                .unwrap();
                broken = true;
            }
        }
    }
    assert!(broken, "found a procedure to break");
    let out = Command::new(CLI)
        .args(["catalog", "check"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let listed = String::from_utf8_lossy(&out.stdout);
    assert!(listed.contains("国民健康保健"), "{listed}");
}

#[test]
fn catalog_diff_names_what_changed_between_the_reference_versions() {
    let out = Command::new(CLI)
        .args(["catalog", "diff"])
        .arg(manifest().join("catalog/2024-10-01"))
        .arg(manifest().join("catalog/2025-04-01"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("2024.10 (2024-10-01) → 2025.04 (2025-04-01)"),
        "{text}"
    );
    assert!(text.contains("- 削除 出産・子育て応援給付金"), "{text}");
    assert!(text.contains("+ 追加 妊婦のための支援給付"), "{text}");
    assert!(text.contains("証明書: 追加 0, 削除 0, 変更 0"), "{text}");
}

#[test]
fn catalog_install_refuses_a_broken_catalogue_then_installs_and_lists() {
    let db = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", db.path().join("store.db").display());
    let run = |args: &[&str], dir: Option<&Path>| {
        let mut cmd = Command::new(CLI);
        cmd.args(["catalog"])
            .args(args)
            .args(["--database", &url, "--tenant", "reference-city"]);
        if let Some(d) = dir {
            cmd.arg(d);
        }
        cmd.output().unwrap()
    };

    // A broken copy: every error listed, exit 1, nothing stored.
    let broken = tempfile::tempdir().unwrap();
    copy_dir(&manifest().join("catalog"), broken.path());
    let koseki = broken.path().join("2024-10-01/procedures/01_koseki.toml");
    let text = std::fs::read_to_string(&koseki).unwrap();
    std::fs::write(
        &koseki,
        text.replacen("department = \"", "department = \"x_", 1),
    )
    .unwrap();
    let out = run(&["install", "--by", "admin01"], Some(broken.path()));
    assert_eq!(out.status.code(), Some(1));
    let listed = String::from_utf8_lossy(&out.stdout);
    assert!(
        listed.contains("2024-10-01/procedures/01_koseki.toml") && listed.contains("department"),
        "{listed}"
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("nothing was changed"));
    let out = run(&["list"], None);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("no catalogue version"));

    // The reference: installed, with its schedule.
    let out = run(
        &["install", "--by", "admin01"],
        Some(&manifest().join("catalog")),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("installed 2024-10-01") && text.contains("installed 2025-04-01"));
    assert!(
        text.contains("2024-10-01 – 2025-03-31  適用終了  2024-10-01 (2024.10)"),
        "{text}"
    );
    assert!(text.contains("2025-04-01 –"), "{text}");
    assert!(text.contains("by admin01"), "{text}");

    // The broken copy again: still refused, the stored versions unchanged.
    let out = run(&["install"], Some(broken.path()));
    assert_eq!(out.status.code(), Some(1));
    let out = run(&["list"], None);
    assert!(out.status.success());
    let listed = String::from_utf8(out.stdout).unwrap();
    assert_eq!(listed.lines().count(), 2, "{listed}");
    assert!(
        listed.contains("(2024.10)") && listed.contains("(2025.04)"),
        "{listed}"
    );
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out.sort();
    out
}

fn copy_dir(from: &Path, to: &Path) {
    for e in std::fs::read_dir(from).unwrap() {
        let p = e.unwrap().path();
        let target = to.join(p.file_name().unwrap());
        if p.is_dir() {
            std::fs::create_dir_all(&target).unwrap();
            copy_dir(&p, &target);
        } else {
            std::fs::copy(&p, &target).unwrap();
        }
    }
}

#[test]
fn verify_archive_tells_intact_from_tampered() {
    let key = SigningKey::from_seed(&[0x33; 32]).unwrap();
    let tenant = Ident::new("city-a").unwrap();
    // FY2024: April 2024 – March 2025 (JST); entries in June 2024.
    let mut prev = chain::GENESIS;
    let mut entries = Vec::new();
    for seq in 1..=20u64 {
        let record = AuditRecord {
            tenant: "city-a".into(),
            at_ms: 1_717_200_000_000 + seq as i64 * 1000,
            actor: Actor::Staff("s001".into()),
            action: "resident.view".into(),
            resident: Some(format!("{seq:06}")),
            place: Place::Appliance("counter-01".into()),
            outcome: "ok".into(),
            detail: serde_json::json!({}),
        };
        let entry = AuditEntry::new(seq, &prev, record);
        prev = entry.hash;
        entries.push(entry);
    }
    let spec = ArchiveSpec {
        tenant,
        fiscal_year: 2024,
        prev_seq: 0,
        prev_hash: chain::GENESIS,
        count: 20,
    };
    let mut bytes = Vec::new();
    audit::export_archive(&spec, entries, &[], &key, 1_790_000_000_000, &mut bytes).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fy2024.jsonl");
    std::fs::write(&path, &bytes).unwrap();
    let public = hex::encode(key.verifying_key().as_bytes());

    let out = Command::new(CLI)
        .args(["audit", "verify-archive"])
        .arg(&path)
        .args(["--key", &public])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["entries_checked"], 20);

    // One resident number changed in the middle of the file.
    let text = String::from_utf8(bytes)
        .unwrap()
        .replacen("000007", "000008", 1);
    std::fs::write(&path, text).unwrap();
    let out = Command::new(CLI)
        .args(["audit", "verify-archive"])
        .arg(&path)
        .args(["--key", &public])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("seq 7"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn determine_previews_a_version_whatever_the_event_date() {
    let run = |version: Option<&str>| {
        let mut cmd = Command::new(CLI);
        cmd.args(["determine", "--catalog"])
            .arg(manifest().join("catalog"))
            .arg("--input")
            .arg(manifest().join("tests/scenarios/birth_kokuho.input.json"));
        if let Some(v) = version {
            cmd.args(["--version", v]);
        }
        let out = cmd.output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    // The event (2025-04-23) falls under the 2025-04-01 version …
    let in_force = run(None);
    assert!(in_force.contains("\"catalogue_version\": \"2025.04\""));
    assert!(in_force.contains("妊婦のための支援給付"));
    // … and the preview shows what the older version would have said.
    let preview = run(Some("2024-10-01"));
    assert!(preview.contains("\"catalogue_version\": \"2024.10\""));
    assert!(!preview.contains("妊婦のための支援給付"));
    let out = Command::new(CLI)
        .args(["determine", "--catalog"])
        .arg(manifest().join("catalog"))
        .arg("--input")
        .arg(manifest().join("tests/scenarios/birth_kokuho.input.json"))
        .args(["--version", "1999-01-01"])
        .output()
        .unwrap();
    assert!(!out.status.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_verify_finds_where_the_log_in_the_database_was_changed() {
    use kakanai_control_plane::audit::Checkpoint;
    use kakanai_control_plane::store::{Store, Tenant};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kakanai.db");
    let url = format!("sqlite://{}?mode=rwc", path.display());
    let tenant = Ident::new("city-a").unwrap();
    let key = SigningKey::from_seed(&[0x44; 32]).unwrap();
    {
        let store = Store::open(&url).await.unwrap();
        store
            .create_tenant(
                &Tenant {
                    id: tenant.clone(),
                    name: "A市".into(),
                },
                0,
            )
            .await
            .unwrap();
        let mut last = None;
        for n in 1..=30i64 {
            let entry = store
                .append_audit(&AuditRecord {
                    tenant: "city-a".into(),
                    at_ms: 1_790_000_000_000 + n,
                    actor: Actor::Staff("s001".into()),
                    action: "resident.view".into(),
                    resident: Some(format!("{n:06}")),
                    place: Place::Appliance("counter-01".into()),
                    outcome: "ok".into(),
                    detail: serde_json::json!({}),
                })
                .await
                .unwrap();
            if n == 20 {
                last = Some(entry);
            }
        }
        let at20 = last.unwrap();
        let cp = Checkpoint::sign(&tenant, at20.seq, &at20.hash, 1_790_000_100_000, &key);
        store.save_checkpoint(&cp).await.unwrap();
        store.close().await;
    }
    let public = hex::encode(key.verifying_key().as_bytes());
    let verify = || {
        Command::new(CLI)
            .args([
                "audit",
                "verify",
                "--database",
                &url,
                "--tenant",
                "city-a",
                "--key",
                &public,
            ])
            .output()
            .unwrap()
    };
    let out = verify();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["entries_checked"], 30);
    assert_eq!(report["checkpoints_valid"], 1);

    // Someone with database access changes entry 12 (the table refuses updates, so
    // they drop the guard first).
    {
        use sqlx::ConnectOptions;
        let mut conn = sqlx::sqlite::SqliteConnectOptions::new()
            .filename(&path)
            .connect()
            .await
            .unwrap();
        sqlx::query("DROP TRIGGER audit_entries_no_update")
            .execute(&mut conn)
            .await
            .unwrap();
        sqlx::query(
            "UPDATE audit_entries SET record = replace(record, '000012', '000099') WHERE seq = 12",
        )
        .execute(&mut conn)
        .await
        .unwrap();
    }
    let out = verify();
    assert_eq!(out.status.code(), Some(1));
    let problems = String::from_utf8_lossy(&out.stderr);
    assert!(problems.contains("seq 12"), "{problems}");
}
