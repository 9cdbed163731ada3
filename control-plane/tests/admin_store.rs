//! Admin changes and their audit entry are one transaction, on both backends: a
//! change that fails leaves neither the change nor an entry; one that succeeds
//! leaves both, and the chain still verifies. The paged audit search is
//! newest-first, filters by operator, resident, operation and time, and never
//! crosses tenants.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[macro_use]
mod common;

use std::collections::BTreeSet;

use kakanai_control_plane::admin::ops::{AdminOps, Who};
use kakanai_control_plane::audit::Verifier;
use kakanai_control_plane::model::{Actor, AuditRecord, Place, TenantId};
use kakanai_control_plane::staff::{HashParams, Secret, StaffPolicy, StaffService};
use kakanai_control_plane::store::{AuditQuery, Group, Store, Tenant};
use kakanai_protocol::VerifyingKey;

both_backends!("admin_store_"; change_and_audit_are_one_transaction, audit_page_filters_and_pages);

fn t(id: &str) -> TenantId {
    TenantId::new(id).unwrap()
}

async fn setup(url: &str) -> (Store, AdminOps) {
    let store = Store::open(url).await.unwrap();
    for id in ["city-a", "city-b"] {
        store
            .create_tenant(
                &Tenant {
                    id: t(id),
                    name: id.into(),
                },
                1,
            )
            .await
            .unwrap();
    }
    let staff = StaffService::new(
        store.clone(),
        StaffPolicy {
            hash: HashParams::INSECURE_FOR_TESTS,
            ..StaffPolicy::default()
        },
    );
    (store, AdminOps::new(staff))
}

fn who(tenant: &str) -> Who {
    Who {
        tenant: t(tenant),
        actor: Actor::Admin("admin-a".into()),
        place: Place::Ip("192.0.2.10".into()),
    }
}

async fn change_and_audit_are_one_transaction(url: String) {
    let (store, ops) = setup(&url).await;
    let group = Group {
        name: "shimin".into(),
        description: "市民課".into(),
        permissions: BTreeSet::from(["resident.view".to_owned()]),
    };
    ops.put_group(&who("city-a"), &group).await.unwrap();
    let groups = BTreeSet::from(["shimin".to_owned()]);
    let pw = Secret::new("Hajimete-Pass-1");
    let entry = ops
        .create_staff(&who("city-a"), "k-tanaka", "田中 花子", &pw, &groups)
        .await
        .unwrap();
    assert_eq!(entry.record.action, "admin:staff.create");
    assert_eq!(entry.record.place, Place::Ip("192.0.2.10".into()));
    // No display name or password in the record.
    let text = serde_json::to_string(&entry.record).unwrap();
    assert!(!text.contains("田中") && !text.contains("Hajimete"));
    assert_eq!(
        store.groups_of(&t("city-a"), "k-tanaka").await.unwrap(),
        vec!["shimin"]
    );

    // A create naming a group that does not exist: no account, no entry.
    let head = store.audit_head(&t("city-a")).await.unwrap().seq;
    let bad = BTreeSet::from(["no-such-group".to_owned()]);
    assert!(ops
        .create_staff(&who("city-a"), "k-suzuki", "鈴木", &pw, &bad)
        .await
        .is_err());
    assert!(store
        .get_staff(&t("city-a"), "k-suzuki")
        .await
        .unwrap()
        .is_none());
    assert_eq!(store.audit_head(&t("city-a")).await.unwrap().seq, head);
    // A transfer into a missing group: memberships unchanged, no entry.
    assert!(ops
        .set_groups(&who("city-a"), "k-tanaka", &bad)
        .await
        .is_err());
    assert_eq!(
        store.groups_of(&t("city-a"), "k-tanaka").await.unwrap(),
        vec!["shimin"]
    );
    assert_eq!(store.audit_head(&t("city-a")).await.unwrap().seq, head);
    // Another tenant's account: not found there, nothing written anywhere.
    assert!(ops
        .set_disabled(&who("city-b"), "k-tanaka", true)
        .await
        .is_err());
    assert!(
        !store
            .get_staff(&t("city-a"), "k-tanaka")
            .await
            .unwrap()
            .unwrap()
            .disabled
    );
    assert_eq!(store.audit_head(&t("city-b")).await.unwrap().seq, 0);
    // A record naming another tenant is refused outright.
    let foreign = AuditRecord {
        tenant: "city-b".into(),
        at_ms: 1,
        actor: Actor::System,
        action: "x".into(),
        resident: None,
        place: Place::Internal,
        outcome: "ok".into(),
        detail: serde_json::Value::Null,
    };
    assert!(store
        .apply_admin_changes(&t("city-a"), &[], &foreign, 1)
        .await
        .is_err());

    // Disable, reset, unlock, enable, delete group: each one entry.
    ops.set_disabled(&who("city-a"), "k-tanaka", true)
        .await
        .unwrap();
    ops.reset_password(&who("city-a"), "k-tanaka", &Secret::new("Atarashii-Pass-2"))
        .await
        .unwrap();
    ops.unlock(&who("city-a"), "k-tanaka").await.unwrap();
    ops.set_disabled(&who("city-a"), "k-tanaka", false)
        .await
        .unwrap();
    ops.delete_group(&who("city-a"), "shimin").await.unwrap();
    assert!(store
        .groups_of(&t("city-a"), "k-tanaka")
        .await
        .unwrap()
        .is_empty());
    let staff = store
        .get_staff(&t("city-a"), "k-tanaka")
        .await
        .unwrap()
        .unwrap();
    assert!(staff.must_change_password && !staff.disabled);
    // An administrator cannot disable themselves.
    assert!(ops
        .set_disabled(&who("city-a"), "admin-a", true)
        .await
        .is_err());

    let entries = store.audit_range(&t("city-a"), 1, 100).await.unwrap();
    let actions: Vec<_> = entries.iter().map(|e| e.record.action.as_str()).collect();
    assert_eq!(
        actions,
        [
            "admin:group.create",
            "admin:staff.create",
            "admin:staff.disable",
            "admin:staff.reset-password",
            "admin:staff.unlock",
            "admin:staff.enable",
            "admin:group.delete",
        ]
    );
    let keys: [VerifyingKey; 0] = [];
    let mut v = Verifier::new(&t("city-a"), &[], &keys);
    for e in &entries {
        v.push(e);
    }
    assert!(
        v.finish().is_ok(),
        "the chain verifies with the admin entries in it"
    );
}

async fn audit_page_filters_and_pages(url: String) {
    let (store, _) = setup(&url).await;
    for i in 0..30i64 {
        for tenant in ["city-a", "city-b"] {
            store
                .append_audit(&AuditRecord {
                    tenant: tenant.into(),
                    at_ms: 1_000 + i,
                    actor: if i % 2 == 0 {
                        Actor::Staff("s1".into())
                    } else {
                        Actor::Admin("a1".into())
                    },
                    action: if i % 3 == 0 {
                        "resident.view".into()
                    } else {
                        "rpc:ping".into()
                    },
                    resident: (i % 3 == 0).then(|| format!("{:010}", i)),
                    place: Place::Internal,
                    outcome: "ok".into(),
                    detail: serde_json::Value::Null,
                })
                .await
                .unwrap();
        }
    }
    let a = t("city-a");
    let page = store
        .audit_page(&a, &AuditQuery::default(), 10)
        .await
        .unwrap();
    assert_eq!(page.len(), 10);
    assert_eq!(page[0].seq, 30);
    assert!(page.iter().all(|e| e.record.tenant == "city-a"));
    let next = store
        .audit_page(
            &a,
            &AuditQuery {
                before_seq: Some(page[9].seq),
                ..AuditQuery::default()
            },
            10,
        )
        .await
        .unwrap();
    assert_eq!(next[0].seq, page[9].seq - 1);
    let q = AuditQuery {
        operator: Some("s1".into()),
        action_prefix: Some("resident.".into()),
        from_ms: Some(1_006),
        to_ms: Some(1_020),
        ..AuditQuery::default()
    };
    let hits = store.audit_page(&a, &q, 100).await.unwrap();
    let ats: Vec<_> = hits.iter().map(|e| e.record.at_ms).collect();
    assert_eq!(ats, [1_018, 1_012, 1_006]);
    let by_resident = AuditQuery {
        resident: Some("0000000009".into()),
        ..AuditQuery::default()
    };
    assert_eq!(
        store.audit_page(&a, &by_resident, 100).await.unwrap().len(),
        1
    );
    let wild = AuditQuery {
        action_prefix: Some("%".into()),
        ..AuditQuery::default()
    };
    assert!(store.audit_page(&a, &wild, 100).await.unwrap().is_empty());
}
