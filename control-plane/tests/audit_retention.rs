//! The audit retention job on both backends (N8): a closed fiscal year is archived
//! to a file that verifies on its own and is recorded; only an archived year older
//! than the retention may be deleted, oldest first, and only with its own intact
//! archive in hand; afterwards the log still verifies from the base the deleted
//! years left, and the deletion itself is in the log. The database refuses deleting
//! entries any other way.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[macro_use]
mod common;

use std::collections::HashMap;

use kakanai_control_plane::audit::retention::{self, RetentionError};
use kakanai_control_plane::audit::{
    fiscal_year_bounds, fiscal_year_of, verify_archive, Checkpoint, RetentionPolicy,
};
use kakanai_control_plane::model::{Actor, AuditRecord, Place, TenantId};
use kakanai_control_plane::store::{AuditFilter, Store, Tenant};
use kakanai_protocol::{KeyId, SigningKey, VerifyingKey};

both_backends!("retention_"; archive_then_purge_oldest_first);

fn tenant() -> TenantId {
    TenantId::new("city-a").unwrap()
}

fn signer() -> SigningKey {
    SigningKey::from_seed(&[0x42; 32]).unwrap()
}

fn keys() -> HashMap<KeyId, VerifyingKey> {
    let pk = signer().verifying_key();
    HashMap::from([(KeyId::of_key(&pk), pk)])
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

fn record(at_ms: i64, i: u64) -> AuditRecord {
    AuditRecord {
        tenant: "city-a".into(),
        at_ms,
        actor: Actor::Staff(format!("staff-{}", i % 7)),
        action: "resident.view".into(),
        resident: Some(format!("{:010}", 1000 + i)),
        place: Place::Appliance("counter-01".into()),
        outcome: "ok".into(),
        detail: serde_json::json!({ "i": i }),
    }
}

fn admin() -> Actor {
    Actor::Admin("cli:kanri".into())
}

/// `per_year` entries in each of `years`, with a signed checkpoint after each year.
async fn fill(store: &Store, years: &[u16], per_year: u64) {
    let mut i = 0;
    for &fy in years {
        let (start, _) = fiscal_year_bounds(fy);
        for n in 0..per_year {
            store
                .append_audit(&record(start + 3_600_000 * (n as i64 + 1), i))
                .await
                .unwrap();
            i += 1;
        }
        let head = store.audit_head(&tenant()).await.unwrap();
        let cp = Checkpoint::sign(
            &tenant(),
            head.seq,
            &head.hash,
            start + 86_400_000,
            &signer(),
        );
        store.save_checkpoint(&cp).await.unwrap();
    }
}

async fn archive_then_purge_oldest_first(url: String) {
    let store = Store::open(&url).await.unwrap();
    store
        .create_tenant(
            &Tenant {
                id: tenant(),
                name: "A市".into(),
            },
            now_ms(),
        )
        .await
        .unwrap();
    let now = now_ms();
    let current = fiscal_year_of(now);
    let (old, older_still, recent) = (current - 8, current - 9, current - 1);
    fill(&store, &[older_still, old, recent, current], 40).await;
    let dir = tempfile::tempdir().unwrap();
    let policy = RetentionPolicy::default();
    let (k, by, key) = (keys(), admin(), signer());
    let purge = |fy: u16, file: &std::path::Path| {
        let file = file.to_owned();
        let (store, k, by) = (&store, &k, &by);
        async move { retention::purge_year(store, &tenant(), fy, &file, k, policy, by, now).await }
    };
    let archive = |fy: u16| {
        let (store, k, by, key, dir) = (&store, &k, &by, &key, dir.path().to_owned());
        async move { retention::archive_year(store, &tenant(), fy, &dir, key, k, by, now).await }
    };

    // Deleting needs a recorded archive first.
    let missing = dir.path().join("nothing.jsonl");
    let e = purge(older_still, &missing).await.unwrap_err();
    assert!(e.to_string().contains("audit archive"), "{e}");

    // The current year is not closed: no archive.
    let e = archive(current).await.unwrap_err();
    assert!(
        e.to_string().contains("not closed") || e.to_string().contains("closed"),
        "{e}"
    );

    // Archive two old years and a recent one; each file verifies on its own.
    let mut files = HashMap::new();
    for fy in [old, older_still, recent] {
        let a = archive(fy).await.unwrap();
        assert_eq!(a.entries, 40);
        let report = verify_archive(
            std::io::BufReader::new(std::fs::File::open(&a.file).unwrap()),
            &keys(),
        );
        assert!(report.is_ok(), "{report:?}");
        files.insert(fy, a.file);
    }
    assert!(!std::fs::read_dir(dir.path()).unwrap().any(|e| e
        .unwrap()
        .file_name()
        .to_string_lossy()
        .ends_with(".partial")));
    // A year is archived once.
    let again = archive(old).await;
    assert!(again.is_err());

    // Oldest first: the later of the two old years cannot go before the earlier.
    let e = purge(old, &files[&old]).await.unwrap_err();
    assert!(e.to_string().contains("older fiscal years"), "{e}");
    // Within the retention period: refused whatever the archive.
    let e = purge(recent, &files[&recent]).await.unwrap_err();
    assert!(matches!(e, RetentionError::TooRecent { .. }), "{e}");
    // Another year's archive, or a damaged copy, is not the archive of this year.
    let e = purge(older_still, &files[&old]).await.unwrap_err();
    assert!(matches!(e, RetentionError::BadArchive { .. }), "{e}");
    let damaged = dir.path().join("damaged.jsonl");
    let mut bytes = std::fs::read(&files[&older_still]).unwrap();
    let at = bytes.len() / 2;
    bytes[at] = if bytes[at] == b'0' { b'1' } else { b'0' };
    std::fs::write(&damaged, &bytes).unwrap();
    let e = purge(older_still, &damaged).await.unwrap_err();
    assert!(matches!(e, RetentionError::BadArchive { .. }), "{e}");
    let head_before = store.audit_head(&tenant()).await.unwrap();

    // The database itself refuses deleting an archived year outside the purge.
    let delete = "DELETE FROM audit_entries WHERE seq <= 40";
    if url.starts_with("sqlite:") {
        let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
        assert!(sqlx::query(delete).execute(&pool).await.is_err());
    } else {
        let pool = sqlx::PgPool::connect(&url).await.unwrap();
        assert!(sqlx::query(delete).execute(&pool).await.is_err());
    }

    // Now in order: the two old years go.
    let n = purge(older_still, &files[&older_still]).await.unwrap();
    assert_eq!(n, 40);
    let n = purge(old, &files[&old]).await.unwrap();
    assert_eq!(n, 40);
    let e = purge(old, &files[&old]).await.unwrap_err();
    assert!(e.to_string().contains("deleted already"), "{e}");

    // What is left verifies from the base; the archives still verify on their own.
    let report = retention::verify_store(&store, &tenant(), &keys())
        .await
        .unwrap();
    assert!(report.is_ok(), "{report:?}");
    let base = store.audit_base(&tenant()).await.unwrap().unwrap();
    assert_eq!(base.seq, 80);
    let left = store.audit_range(&tenant(), 1, 1000).await.unwrap();
    assert_eq!(left.first().unwrap().seq, 81);
    assert_eq!(
        store.audit_head(&tenant()).await.unwrap().seq,
        head_before.seq + 2,
        "each deletion is itself an entry"
    );
    let filter = AuditFilter {
        action_prefix: Some("audit.".into()),
        ..AuditFilter::default()
    };
    let actions: Vec<_> = store
        .audit_search(&tenant(), &filter, 100)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.record.action)
        .collect();
    assert_eq!(
        actions,
        [
            "audit.archive",
            "audit.archive",
            "audit.archive",
            "audit.purge",
            "audit.purge"
        ]
    );
    let archives = store.audit_archives(&tenant()).await.unwrap();
    assert_eq!(archives.len(), 3);
    assert!(archives.iter().filter(|a| a.purged_at_ms.is_some()).count() == 2);

    // A changed entry after the purge is still found, at its own number.
    if url.starts_with("sqlite:") {
        let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
        sqlx::query("DROP TRIGGER audit_entries_no_update")
            .execute(&pool)
            .await
            .unwrap();
        sqlx::query("UPDATE audit_entries SET record = replace(record, 'resident.view', 'resident.vieW') WHERE seq = 90")
            .execute(&pool)
            .await
            .unwrap();
        let report = retention::verify_store(&store, &tenant(), &keys())
            .await
            .unwrap();
        assert!(!report.is_ok());
        assert!(report.at(90).next().is_some(), "{report:?}");
    }
}
