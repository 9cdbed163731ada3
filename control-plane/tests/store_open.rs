//! Opening the store: URL schemes, errors that do not repeat the URL, and the
//! single-connection in-memory SQLite database.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use kakanai_control_plane::model::{Actor, AuditRecord, Place, TenantId};
use kakanai_control_plane::store::{BackendKind, Store, StoreError, Tenant};

#[tokio::test]
async fn unknown_schemes_are_refused_without_repeating_the_url() {
    for url in ["mysql://admin:s3cret@db/kakanai", "s3cret", ""] {
        let err = Store::open(url).await.unwrap_err();
        assert!(matches!(err, StoreError::Config(_)), "{err}");
        assert!(!err.to_string().contains("s3cret"));
    }
}

#[tokio::test]
async fn a_missing_sqlite_file_is_not_created_without_mode_rwc() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("absent.db");
    assert!(Store::open(&format!("sqlite://{}", path.display()))
        .await
        .is_err());
    assert!(!path.exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_memory_sqlite_keeps_its_data_across_calls() {
    let store = Store::open("sqlite::memory:").await.unwrap();
    assert_eq!(store.backend(), BackendKind::Sqlite);
    let tenant = TenantId::new("city-a").unwrap();
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
    let mut handles = Vec::new();
    for i in 0..4 {
        let store = store.clone();
        handles.push(tokio::spawn(async move {
            let record = AuditRecord {
                tenant: "city-a".into(),
                at_ms: i,
                actor: Actor::System,
                action: "import".into(),
                resident: None,
                place: Place::Internal,
                outcome: "ok".into(),
                detail: serde_json::json!({}),
            };
            store.append_audit(&record).await.unwrap()
        }));
    }
    for h in handles {
        h.await.unwrap();
    }
    assert_eq!(store.audit_head(&tenant).await.unwrap().seq, 4);
    assert_eq!(store.list_tenants().await.unwrap().len(), 1);
}
