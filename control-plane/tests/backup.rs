//! The backup drill (issue 11), on SQLite and on PostgreSQL: write data, back up,
//! verify, destroy the store, restore, compare; a damaged backup is caught; an
//! interrupted run leaves nothing counted as good (also with the real command killed
//! at several moments); old backups go only when a newer verified one exists.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[macro_use]
mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use kakanai_control_plane::backup::{keygen, BackupConfig, BackupError, Backups, Manifest};
use kakanai_control_plane::model::TenantId;
use kakanai_control_plane::residents::{gen_city, import_dir, ImportOptions, Mapping};
use kakanai_control_plane::store::{maintenance, Store, Tenant};

both_backends!("bk_";
    drill_back_up_destroy_restore_compare,
    a_damaged_backup_fails_verification_and_is_never_chosen,
);

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

fn backups_in(dir: &Path) -> Backups {
    let key = dir.join("backup.key");
    if !key.exists() {
        keygen(&key).unwrap();
    }
    Backups::open(BackupConfig::new(dir.join("backups"), key)).unwrap()
}

/// A store holding a small city (all 16 kinds) for tenant `city-a`.
async fn filled_store(url: &str) -> Store {
    let store = Store::open(url).await.unwrap();
    let tenant = TenantId::new("city-a").unwrap();
    store
        .create_tenant(
            &Tenant {
                id: tenant.clone(),
                name: "A市".into(),
            },
            now_ms(),
        )
        .await
        .unwrap();
    let city = tempfile::tempdir().unwrap();
    gen_city(city.path(), 7, 400).unwrap();
    let report = import_dir(
        &store,
        &tenant,
        city.path(),
        &Mapping::reference(),
        &ImportOptions {
            my_number_key: None,
            now_ms: now_ms(),
        },
    )
    .await
    .unwrap();
    assert!(report.all_applied(), "{report}");
    store
}

async fn drill_back_up_destroy_restore_compare(url: String) {
    let work = tempfile::tempdir().unwrap();
    let backups = backups_in(work.path());
    let store = filled_store(&url).await;
    let before = store.digests().await.unwrap();
    assert!(
        before.get("residents").is_some_and(|t| t.rows >= 400),
        "the city is in the store: {before:?}"
    );

    let manifest = backups.run(&store, &url).await.unwrap();
    assert!(manifest.is_good());
    assert_eq!(
        manifest.tables, before,
        "the manifest describes the store as it was"
    );
    // The file on disk is ciphertext: the city's name, in every resident's address,
    // appears nowhere in it.
    let encrypted = std::fs::read(work.path().join("backups").join(&manifest.file)).unwrap();
    assert!(encrypted.starts_with(b"age-encryption.org/v1"));
    let city = "書無市".as_bytes();
    assert!(
        !encrypted.windows(city.len()).any(|w| w == city),
        "addresses are readable in the backup file"
    );
    let mode = std::fs::metadata(work.path().join("backups"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o700, "the backup directory is private");

    // Changes after the backup are what a restore takes back.
    store
        .create_tenant(
            &Tenant {
                id: TenantId::new("city-late").unwrap(),
                name: "後から".into(),
            },
            now_ms(),
        )
        .await
        .unwrap();
    store.close().await;

    // Destroy, then restore into the same place.
    destroy(&url).await;
    let refused = backups.restore(&manifest, &url, false).await;
    if url.starts_with("sqlite") {
        // The destroyed file was removed, so there is nothing to protect: restores.
        refused.unwrap();
    } else {
        assert!(refused.is_err(), "PostgreSQL restore asks for --force");
        backups.restore(&manifest, &url, true).await.unwrap();
    }
    let restored = Store::open(&url).await.unwrap();
    assert_eq!(
        restored.digests().await.unwrap(),
        before,
        "every table as it was"
    );
    let tenants = restored.digests().await.unwrap()["tenants"].rows;
    assert_eq!(tenants, 1, "the tenant made after the backup is gone");
    restored.close().await;

    // A restore over an existing SQLite store needs --force and keeps the old file.
    if url.starts_with("sqlite") {
        assert!(matches!(
            backups.restore(&manifest, &url, false).await,
            Err(BackupError::TargetExists(_))
        ));
        backups.restore(&manifest, &url, true).await.unwrap();
        let dir = Path::new(
            url.trim_start_matches("sqlite://")
                .split('?')
                .next()
                .unwrap(),
        )
        .parent()
        .unwrap()
        .to_owned();
        let kept = std::fs::read_dir(dir)
            .unwrap()
            .flatten()
            .any(|e| e.file_name().to_string_lossy().contains(".pre-restore-"));
        assert!(kept, "the replaced file is kept beside the store");
    }
}

async fn destroy(url: &str) {
    if let Some(rest) = url.strip_prefix("sqlite://") {
        let path = rest.split('?').next().unwrap();
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{path}{suffix}"));
        }
    } else {
        use sqlx::{Connection, Executor};
        let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
        conn.execute("DROP SCHEMA public CASCADE; CREATE SCHEMA public")
            .await
            .unwrap();
        conn.close().await.unwrap();
    }
}

async fn a_damaged_backup_fails_verification_and_is_never_chosen(url: String) {
    let work = tempfile::tempdir().unwrap();
    let backups = backups_in(work.path());
    let store = filled_store(&url).await;
    let good = backups.run(&store, &url).await.unwrap();

    // A second backup whose file is damaged after it was written.
    let damaged = backups.backup(&store, &url).await.unwrap();
    let path = work.path().join("backups").join(&damaged.file);
    let mut bytes = std::fs::read(&path).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x40;
    std::fs::write(&path, &bytes).unwrap();
    let verification = backups.verify(&damaged, &url).await.unwrap();
    assert!(!verification.ok, "{verification:?}");
    assert!(
        verification.detail.contains("SHA-256"),
        "{}",
        verification.detail
    );
    // Even with the manifest's hash updated to the damaged file, decryption fails.
    let mut forged: Manifest = damaged.clone();
    let sha = ring::digest::digest(&ring::digest::SHA256, &bytes);
    forged.sha256 = hex::encode(sha.as_ref());
    let verification = backups.verify(&forged, &url).await.unwrap();
    assert!(!verification.ok);
    assert!(
        verification.detail.contains("encryption"),
        "{}",
        verification.detail
    );

    assert_eq!(backups.choose(None).unwrap().name, good.name);
    let status = backups.status().unwrap();
    assert_eq!(status.last_success_ms, Some(good.created_ms));
    assert!(
        status.last_failed,
        "the newest backup failed and the status says so"
    );
    store.close().await;
}

/// An interrupted run (killed during encryption, or before the manifest) leaves
/// nothing that counts; the next start removes the leftovers.
#[test]
fn an_interrupted_backup_never_counts_and_is_cleaned_up() {
    let work = tempfile::tempdir().unwrap();
    let backups = backups_in(work.path());
    let dir = work.path().join("backups");
    std::fs::write(
        dir.join("kk-20261127T110000000Z-sqlite.age.partial"),
        b"half",
    )
    .unwrap();
    std::fs::create_dir(dir.join(".work-kk-20261127T110000000Z-sqlite")).unwrap();
    std::fs::write(
        dir.join("kk-20261127T110000000Z-sqlite.age"),
        b"no manifest",
    )
    .unwrap();
    assert!(backups.list().unwrap().is_empty());
    assert!(backups.latest_good().unwrap().is_none());
    assert!(backups.choose(None).is_err());
    drop(backups);
    let _again = backups_in(work.path());
    assert!(!dir
        .join("kk-20261127T110000000Z-sqlite.age.partial")
        .exists());
    assert!(!dir.join(".work-kk-20261127T110000000Z-sqlite").exists());
}

#[test]
fn a_key_readable_by_others_or_not_a_key_is_refused() {
    let work = tempfile::tempdir().unwrap();
    let key = work.path().join("k");
    keygen(&key).unwrap();
    assert!(
        keygen(&key).is_err(),
        "an existing key is never overwritten"
    );
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let err = Backups::open(BackupConfig::new(work.path().join("b"), key.clone())).unwrap_err();
    assert!(err.to_string().contains("chmod 600"), "{err}");
    let junk = work.path().join("junk");
    std::fs::write(&junk, "AGE-SECRET-KEY-1NOTAKEY\n").unwrap();
    std::fs::set_permissions(&junk, std::fs::Permissions::from_mode(0o600)).unwrap();
    let err = Backups::open(BackupConfig::new(work.path().join("b"), junk)).unwrap_err();
    assert!(err.to_string().contains("not an age"), "{err}");
}

/// Pruning: a backup older than the retention goes only when a newer verified one
/// exists; a failed newest one protects the older good ones.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn old_backups_are_pruned_only_behind_a_newer_verified_one() {
    let work = tempfile::tempdir().unwrap();
    let backups = backups_in(work.path());
    let url = format!("sqlite://{}?mode=rwc", work.path().join("s.db").display());
    let store = Store::open(&url).await.unwrap();
    let old = backups.run(&store, &url).await.unwrap();
    let dir = work.path().join("backups");
    // Pretend the first backup is ten days old.
    let ten_days = 10 * 86_400_000;
    let mut aged = old.clone();
    aged.created_ms -= ten_days;
    std::fs::write(
        dir.join(format!("{}.json", old.name)),
        serde_json::to_vec(&aged).unwrap(),
    )
    .unwrap();

    // The newest backup failed: the old good one is all there is, so it stays.
    let failed = backups.backup(&store, &url).await.unwrap();
    std::fs::write(dir.join(&failed.file), b"damaged").unwrap();
    assert!(!backups.verify(&failed, &url).await.unwrap().ok);
    assert!(backups.prune(now_ms()).unwrap().is_empty());
    assert_eq!(backups.choose(None).unwrap().name, old.name);

    // A newer verified one: now the old one goes (and so does the failed one, once
    // it is old enough — it is not, so it stays for inspection).
    let fresh = backups.run(&store, &url).await.unwrap();
    let names: Vec<String> = backups
        .list()
        .unwrap()
        .into_iter()
        .map(|m| m.name)
        .collect();
    assert!(!names.contains(&old.name), "{names:?}");
    assert!(
        names.contains(&fresh.name) && names.contains(&failed.name),
        "{names:?}"
    );
    assert!(!dir.join(&old.file).exists());
    let on_disk = maintenance::sqlite_file_digests(&work.path().join("s.db")).await;
    assert!(on_disk.is_ok());
    store.close().await;
}

/// The real thing: `kakanai-control-plane backup now` killed (SIGKILL) at several
/// moments of a run over a city of 20,000 residents. Whenever the kill lands, every
/// backup that is listed afterwards verifies (a half-written one never counts), and
/// the next run succeeds and cleans up.
#[test]
fn killing_backup_now_at_any_moment_never_leaves_a_bad_backup_counted() {
    use std::process::{Command, Stdio};
    use std::time::{Duration, Instant};

    let bin = env!("CARGO_BIN_EXE_kakanai-control-plane");
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let url = format!("sqlite://{}?mode=rwc", w.join("k.db").display());
    let run = |args: &[&str]| {
        let out = Command::new(bin)
            .args(args)
            .env("KAKANAI_DATABASE_URL", &url)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let city = w.join("city");
    let city_s = city.to_string_lossy().into_owned();
    run(&[
        "gen-city",
        "--out",
        &city_s,
        "--seed",
        "3",
        "--residents",
        "3000",
    ]);
    run(&["tenant", "add", "--tenant", "city-a", "--name", "A市"]);
    run(&["import", "--tenant", "city-a", "--dir", &city_s]);
    let key = w.join("backup.key");
    let key_s = key.to_string_lossy().into_owned();
    run(&["backup", "keygen", "--out", &key_s]);
    let dir = w.join("backups");
    std::fs::create_dir(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
    let dir_s = dir.to_string_lossy().into_owned();
    let now = ["backup", "now", "--dir", &dir_s, "--key-file", &key_s];

    // How long a whole run takes here, then kills spread over it.
    let started = Instant::now();
    run(&now);
    let whole = started.elapsed();
    let open = || Backups::open(BackupConfig::new(dir.clone(), key.clone())).unwrap();
    assert_eq!(open().list().unwrap().len(), 1);
    for tenth in [2u32, 5, 8] {
        let mut child = Command::new(bin)
            .args(now)
            .env("KAKANAI_DATABASE_URL", &url)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(whole * tenth / 10);
        let _ = child.kill();
        let _ = child.wait();
        let backups = open();
        let runtime = tokio::runtime::Runtime::new().unwrap();
        for m in backups.list().unwrap() {
            if m.is_good() {
                // Counted as good: it must really restore and compare.
                let v = runtime
                    .block_on(backups.verify(&m, &url))
                    .unwrap_or_else(|e| panic!("{} counted as good but: {e}", m.name));
                assert!(v.ok, "{} counted as good but: {}", m.name, v.detail);
            }
        }
    }
    // The next run succeeds and leaves no leftovers of the killed ones.
    std::thread::sleep(Duration::from_millis(1100));
    run(&now);
    let backups = open();
    assert!(backups.latest_good().unwrap().is_some());
    let leftovers: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".partial") || n.starts_with(".work-"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}
