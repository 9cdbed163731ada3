//! Store conformance suite: every case runs against SQLite (a file in a temporary
//! directory) and against a real PostgreSQL server started by `kakanai-test-peers`.
//! A case that cannot start PostgreSQL fails; it never skips.
//!
//! Each case is an `async fn(url)` that opens the store itself, so cases can also
//! reopen it (migrations twice, data surviving a restart) or open a second handle
//! (a second control-plane instance).
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[macro_use]
mod common;

use std::collections::BTreeSet;

use kakanai_control_plane::audit::chain::{self, GENESIS};
use kakanai_control_plane::model::{Actor, AuditRecord, Ident, Place, TenantId};
use kakanai_control_plane::store::{
    AuditEntry, AuditFilter, Checkpoint, DeviceStatus, Group, KeyStatus, NewDevice, NewStaff,
    PresenceUpdate, StaffUpdate, Store, StoreError, Tenant,
};
use kakanai_protocol::keys::{KeyId, SigningKey, VerifyingKey};

// ---------------------------------------------------------------------------------
// Harness

both_backends!("c_";
    migrations_are_idempotent,
    data_survives_reopening,
    tenants_are_isolated,
    device_lifecycle_and_key_lookup,
    key_lookup_refuses_wrong_tenant_device_and_revoked,
    message_dedup_is_idempotent_under_races,
    replay_window_state_round_trips,
    audit_entries_hash_link,
    concurrent_audit_appends_never_fork,
    audit_search_filters,
    audit_checkpoints,
    audit_entries_are_append_only,
    failed_login_counter_is_atomic,
    staff_account_changes,
    permissions_are_the_union_over_groups,
    hostile_text_is_stored_literally,
);

// ---------------------------------------------------------------------------------
// Fixtures

const T0: i64 = 1_795_000_000_000;

fn id(s: &str) -> Ident {
    Ident::new(s).unwrap()
}

fn city(s: &str) -> TenantId {
    TenantId::new(s).unwrap()
}

async fn open(url: &str) -> Store {
    Store::open(url).await.unwrap()
}

async fn with_tenants(url: &str, tenants: &[&str]) -> Store {
    let store = open(url).await;
    for t in tenants {
        let tenant = Tenant {
            id: city(t),
            name: format!("{t} 市役所"),
        };
        store.create_tenant(&tenant, T0).await.unwrap();
    }
    store
}

fn keypair() -> (KeyId, VerifyingKey) {
    let key = SigningKey::generate().unwrap().verifying_key();
    (KeyId::of_key(&key), key)
}

fn new_device(name: &str) -> (NewDevice, KeyId) {
    let (kid, public_key) = keypair();
    let device = NewDevice {
        id: id(name),
        counter_name: "市民課 3番窓口".into(),
        location: "本庁舎1階".into(),
        kid: kid.clone(),
        public_key,
        firmware: Some("0.1.0".into()),
    };
    (device, kid)
}

fn new_staff(login: &str) -> NewStaff {
    NewStaff {
        login_id: login.into(),
        display_name: "山田 花子".into(),
        password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA".into(),
        must_change_password: true,
    }
}

fn record(tenant: &str, i: i64) -> AuditRecord {
    AuditRecord {
        tenant: tenant.into(),
        at_ms: T0 + i * 1000,
        actor: Actor::Staff(format!("s{:03}", i % 3)),
        action: if i % 2 == 0 {
            "resident.view".into()
        } else {
            "rpc:certificate.request".into()
        },
        resident: Some(format!("{:06}", 100 + i % 4)),
        place: Place::Appliance("counter-01".into()),
        outcome: "ok".into(),
        detail: serde_json::json!({ "i": i, "z": [1, 2], "a": { "y": true, "b": null } }),
    }
}

/// Recomputes every hash from genesis; the entries must be seq 1..=n.
fn assert_chain(entries: &[AuditEntry]) {
    let mut prev = GENESIS;
    for (i, e) in entries.iter().enumerate() {
        assert_eq!(e.seq, i as u64 + 1, "no gap, no reuse");
        assert_eq!(
            e.hash,
            chain::entry_hash(e.seq, &prev, &e.record),
            "entry {} links",
            e.seq
        );
        prev = e.hash;
    }
}

async fn whole_chain(store: &Store, tenant: &TenantId) -> Vec<AuditEntry> {
    let mut all = Vec::new();
    loop {
        let page = store
            .audit_range(tenant, all.len() as u64 + 1, 128)
            .await
            .unwrap();
        if page.is_empty() {
            return all;
        }
        all.extend(page);
    }
}

// ---------------------------------------------------------------------------------
// Cases

async fn migrations_are_idempotent(url: String) {
    let store = with_tenants(&url, &["city-a"]).await;
    store.close().await;
    // Reopening applies nothing new and keeps the data; so do instances opening at once.
    let (a, b) = tokio::join!(Store::open(&url), Store::open(&url));
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(a.list_tenants().await.unwrap().len(), 1);
    assert_eq!(
        b.get_tenant(&city("city-a")).await.unwrap().unwrap().name,
        "city-a 市役所"
    );
    let again = open(&url).await;
    assert!(matches!(
        again
            .create_tenant(
                &Tenant {
                    id: city("city-a"),
                    name: "x".into()
                },
                T0
            )
            .await,
        Err(StoreError::Conflict(_))
    ));
}

async fn data_survives_reopening(url: String) {
    let a = city("city-a");
    let store = with_tenants(&url, &["city-a"]).await;
    let (device, kid) = new_device("dev-1");
    store.register_device(&a, &device, T0).await.unwrap();
    store
        .create_staff(&a, &new_staff("s001"), T0)
        .await
        .unwrap();
    for i in 0..5 {
        store.append_audit(&record("city-a", i)).await.unwrap();
    }
    let head = store.audit_head(&a).await.unwrap();
    store
        .record_message(&a, &device.id, [9; 16], T0)
        .await
        .unwrap();
    store.close().await;
    drop(store);

    let store = open(&url).await;
    assert_eq!(
        store
            .get_device(&a, &device.id)
            .await
            .unwrap()
            .unwrap()
            .keys
            .len(),
        1
    );
    assert_eq!(
        store.key_for(&a, &device.id, &kid).await.unwrap(),
        Some(device.public_key)
    );
    assert_eq!(
        store
            .get_staff(&a, "s001")
            .await
            .unwrap()
            .unwrap()
            .display_name,
        "山田 花子"
    );
    assert_eq!(store.audit_head(&a).await.unwrap(), head);
    assert_chain(&whole_chain(&store, &a).await);
    assert!(!store
        .record_message(&a, &device.id, [9; 16], T0)
        .await
        .unwrap());
    // The chain continues where it stopped.
    assert_eq!(
        store.append_audit(&record("city-a", 5)).await.unwrap().seq,
        6
    );
    assert_chain(&whole_chain(&store, &a).await);
}

async fn tenants_are_isolated(url: String) {
    let (a, b) = (city("city-a"), city("city-b"));
    let store = with_tenants(&url, &["city-a", "city-b"]).await;
    let (device, kid) = new_device("dev-1");
    store.register_device(&a, &device, T0).await.unwrap();
    store
        .create_staff(&a, &new_staff("s001"), T0)
        .await
        .unwrap();
    let group = Group {
        name: "窓口".into(),
        description: "counter staff".into(),
        permissions: BTreeSet::from(["certificate.issue".to_string()]),
    };
    store.create_group(&a, &group).await.unwrap();
    store.add_group_member(&a, "窓口", "s001").await.unwrap();
    store.append_audit(&record("city-a", 1)).await.unwrap();
    store
        .save_replay_window(&a, &kid, b"window-a", T0)
        .await
        .unwrap();

    // Nothing of city-a is visible through city-b.
    assert_eq!(store.get_device(&b, &device.id).await.unwrap(), None);
    assert!(store.list_devices(&b).await.unwrap().is_empty());
    assert_eq!(store.key_for(&b, &device.id, &kid).await.unwrap(), None);
    assert_eq!(store.get_staff(&b, "s001").await.unwrap(), None);
    assert!(store.list_staff(&b).await.unwrap().is_empty());
    assert!(store.list_groups(&b).await.unwrap().is_empty());
    assert!(store.permissions_of(&b, "s001").await.unwrap().is_empty());
    assert!(store.groups_of(&b, "s001").await.unwrap().is_empty());
    assert!(matches!(
        store.record_failed_login(&b, "s001").await,
        Err(StoreError::NotFound(_))
    ));
    assert!(matches!(
        store.add_group_member(&b, "窓口", "s001").await,
        Err(StoreError::NotFound(_))
    ));
    assert!(matches!(
        store
            .update_presence(&b, &device.id, &presence(true, 1, T0))
            .await,
        Err(StoreError::NotFound(_))
    ));
    assert!(matches!(
        store.revoke_device(&b, &device.id, T0).await,
        Err(StoreError::NotFound(_))
    ));
    assert_eq!(store.audit_head(&b).await.unwrap().seq, 0);
    assert!(store.audit_range(&b, 1, 100).await.unwrap().is_empty());
    assert!(store
        .audit_search(&b, &AuditFilter::default(), 100)
        .await
        .unwrap()
        .is_empty());
    let by_resident = AuditFilter {
        resident: Some("000101".into()),
        ..Default::default()
    };
    assert!(store
        .audit_search(&b, &by_resident, 100)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        store
            .audit_search(&a, &by_resident, 100)
            .await
            .unwrap()
            .len(),
        1
    );
    assert_eq!(store.load_replay_window(&b, &kid).await.unwrap(), None);
    assert!(store.checkpoints(&b).await.unwrap().is_empty());

    // The same ids are free in city-b and stay separate.
    let (device_b, _) = new_device("dev-1");
    store.register_device(&b, &device_b, T0).await.unwrap();
    assert_eq!(store.key_for(&b, &device.id, &kid).await.unwrap(), None);
    store
        .create_staff(&b, &new_staff("s001"), T0)
        .await
        .unwrap();
    assert_eq!(store.record_failed_login(&b, "s001").await.unwrap(), 1);
    assert_eq!(
        store
            .get_staff(&a, "s001")
            .await
            .unwrap()
            .unwrap()
            .failed_attempts,
        0
    );
    assert!(store
        .record_message(&a, &device.id, [1; 16], T0)
        .await
        .unwrap());
    assert!(store
        .record_message(&b, &device.id, [1; 16], T0)
        .await
        .unwrap());
    assert_eq!(
        store.append_audit(&record("city-b", 1)).await.unwrap().seq,
        1
    );
    // An audit record for an unknown tenant is refused, not filed elsewhere.
    assert!(matches!(
        store.append_audit(&record("city-z", 1)).await,
        Err(StoreError::NotFound(_))
    ));
    assert!(matches!(
        store
            .register_device(&city("city-z"), &new_device("dev-9").0, T0)
            .await,
        Err(StoreError::NotFound(_))
    ));
}

fn presence(online: bool, boot: u64, at: i64) -> PresenceUpdate {
    PresenceUpdate {
        online,
        boot_counter: boot,
        seen_at_ms: at,
        firmware: None,
    }
}

async fn device_lifecycle_and_key_lookup(url: String) {
    let a = city("city-a");
    let store = with_tenants(&url, &["city-a"]).await;
    let (device, kid1) = new_device("dev-1");
    store.register_device(&a, &device, T0).await.unwrap();
    let d = store.get_device(&a, &device.id).await.unwrap().unwrap();
    assert_eq!(d.status, DeviceStatus::Enrolled);
    assert!(!d.online);
    assert_eq!(d.keys.len(), 1);
    assert_eq!(d.keys[0].status, KeyStatus::Active);
    assert_eq!(d.firmware.as_deref(), Some("0.1.0"));

    // Duplicates are conflicts: the device id, and a kid of another device.
    assert!(matches!(
        store.register_device(&a, &device, T0).await,
        Err(StoreError::Conflict(_))
    ));
    let (mut other, _) = new_device("dev-2");
    other.kid = kid1.clone();
    assert!(matches!(
        store.register_device(&a, &other, T0).await,
        Err(StoreError::Conflict(_))
    ));
    assert!(
        store.get_device(&a, &id("dev-2")).await.unwrap().is_none(),
        "nothing half-registered"
    );

    // Presence: the first online report activates; an older report changes nothing.
    let mut p = presence(true, 3, T0 + 10);
    p.firmware = Some("0.2.0".into());
    assert!(store.update_presence(&a, &device.id, &p).await.unwrap());
    assert!(!store
        .update_presence(&a, &device.id, &presence(false, 2, T0 + 5))
        .await
        .unwrap());
    let d = store.get_device(&a, &device.id).await.unwrap().unwrap();
    assert_eq!(
        (d.status, d.online, d.boot_counter),
        (DeviceStatus::Active, true, 3)
    );
    assert_eq!(
        (d.last_seen_ms, d.firmware.as_deref()),
        (Some(T0 + 10), Some("0.2.0"))
    );
    assert!(store
        .update_presence(&a, &device.id, &presence(false, 3, T0 + 20))
        .await
        .unwrap());
    let d = store.get_device(&a, &device.id).await.unwrap().unwrap();
    assert_eq!((d.online, d.firmware.as_deref()), (false, Some("0.2.0")));

    // Keys: add, rotate, revoke.
    let (kid2, key2) = keypair();
    store
        .add_device_key(&a, &device.id, &kid2, &key2, T0 + 30)
        .await
        .unwrap();
    assert!(store
        .key_for(&a, &device.id, &kid1)
        .await
        .unwrap()
        .is_some());
    assert_eq!(
        store.key_for(&a, &device.id, &kid2).await.unwrap(),
        Some(key2)
    );
    let (kid3, key3) = keypair();
    store
        .rotate_device_key(&a, &device.id, &kid3, &key3, T0 + 40)
        .await
        .unwrap();
    assert_eq!(store.key_for(&a, &device.id, &kid1).await.unwrap(), None);
    assert_eq!(store.key_for(&a, &device.id, &kid2).await.unwrap(), None);
    assert_eq!(
        store.key_for(&a, &device.id, &kid3).await.unwrap(),
        Some(key3)
    );
    let d = store.get_device(&a, &device.id).await.unwrap().unwrap();
    let statuses: Vec<_> = d.keys.iter().map(|k| (k.kid.clone(), k.status)).collect();
    assert_eq!(
        statuses,
        vec![
            (kid1.clone(), KeyStatus::Revoked),
            (kid2.clone(), KeyStatus::Revoked),
            (kid3.clone(), KeyStatus::Active)
        ]
    );
    assert!(matches!(
        store
            .add_device_key(&a, &id("nope"), &keypair().0, &key3, T0)
            .await,
        Err(StoreError::NotFound(_))
    ));

    // Listing and revocation.
    let (device2, kid_d2) = new_device("dev-0");
    store.register_device(&a, &device2, T0).await.unwrap();
    let listed: Vec<_> = store
        .list_devices(&a)
        .await
        .unwrap()
        .into_iter()
        .map(|d| (d.id, d.keys.len()))
        .collect();
    assert_eq!(listed, vec![(id("dev-0"), 1), (id("dev-1"), 3)]);
    store.revoke_device(&a, &device.id, T0 + 50).await.unwrap();
    store.revoke_device(&a, &device.id, T0 + 60).await.unwrap();
    assert_eq!(store.key_for(&a, &device.id, &kid3).await.unwrap(), None);
    let d = store.get_device(&a, &device.id).await.unwrap().unwrap();
    assert_eq!(d.status, DeviceStatus::Revoked);
    assert!(d.keys.iter().all(|k| k.status == KeyStatus::Revoked));
    assert!(matches!(
        store
            .add_device_key(&a, &device.id, &keypair().0, &key3, T0)
            .await,
        Err(StoreError::Conflict(_))
    ));
    // A revoked device stays revoked whatever it reports.
    store
        .update_presence(&a, &device.id, &presence(true, 4, T0 + 70))
        .await
        .unwrap();
    assert_eq!(
        store
            .get_device(&a, &device.id)
            .await
            .unwrap()
            .unwrap()
            .status,
        DeviceStatus::Revoked
    );
    // The other device is untouched.
    assert!(store
        .key_for(&a, &device2.id, &kid_d2)
        .await
        .unwrap()
        .is_some());
}

async fn key_lookup_refuses_wrong_tenant_device_and_revoked(url: String) {
    let (a, b) = (city("city-a"), city("city-b"));
    let store = with_tenants(&url, &["city-a", "city-b"]).await;
    let (d1, kid1) = new_device("dev-1");
    let (d2, kid2) = new_device("dev-2");
    store.register_device(&a, &d1, T0).await.unwrap();
    store.register_device(&a, &d2, T0).await.unwrap();
    assert_eq!(
        store.key_for(&a, &d1.id, &kid1).await.unwrap(),
        Some(d1.public_key)
    );
    // Another device's kid, another tenant, an unknown kid or device.
    assert_eq!(store.key_for(&a, &d1.id, &kid2).await.unwrap(), None);
    assert_eq!(store.key_for(&b, &d1.id, &kid1).await.unwrap(), None);
    assert_eq!(store.key_for(&a, &d1.id, &keypair().0).await.unwrap(), None);
    assert_eq!(store.key_for(&a, &id("dev-3"), &kid1).await.unwrap(), None);
    // A revoked key; a revoked device.
    store
        .revoke_device_key(&a, &d1.id, &kid1, T0)
        .await
        .unwrap();
    assert_eq!(store.key_for(&a, &d1.id, &kid1).await.unwrap(), None);
    assert!(matches!(
        store.revoke_device_key(&a, &d1.id, &kid2, T0).await,
        Err(StoreError::NotFound(_))
    ));
    store.revoke_device(&a, &d2.id, T0).await.unwrap();
    assert_eq!(store.key_for(&a, &d2.id, &kid2).await.unwrap(), None);
}

async fn message_dedup_is_idempotent_under_races(url: String) {
    let a = city("city-a");
    let store = with_tenants(&url, &["city-a"]).await;
    let dev = id("dev-1");
    assert!(store.record_message(&a, &dev, [7; 16], T0).await.unwrap());
    assert!(!store
        .record_message(&a, &dev, [7; 16], T0 + 1)
        .await
        .unwrap());
    assert!(store
        .record_message(&a, &id("dev-2"), [7; 16], T0)
        .await
        .unwrap());

    // Eight tasks (over two store handles, like two instances) race on each of 20 ids:
    // exactly one wins each.
    let other = open(&url).await;
    for round in 0u8..20 {
        let mut tasks = Vec::new();
        for t in 0..8 {
            let s = if t % 2 == 0 {
                store.clone()
            } else {
                other.clone()
            };
            let (a, dev) = (a.clone(), dev.clone());
            tasks.push(tokio::spawn(async move {
                s.record_message(&a, &dev, [round; 16], T0).await.unwrap()
            }));
        }
        let mut wins = 0;
        for t in tasks {
            wins += usize::from(t.await.unwrap());
        }
        let expected = usize::from(round != 7); // [7; 16] was recorded above
        assert_eq!(wins, expected, "round {round}");
    }
    assert_eq!(store.prune_messages(T0 + 1).await.unwrap(), 21);
    assert!(store
        .record_message(&a, &dev, [7; 16], T0 + 2)
        .await
        .unwrap());
}

async fn replay_window_state_round_trips(url: String) {
    let a = city("city-a");
    let store = with_tenants(&url, &["city-a"]).await;
    let (kid, _) = keypair();
    assert_eq!(store.load_replay_window(&a, &kid).await.unwrap(), None);
    store
        .save_replay_window(&a, &kid, &[1, 2, 3], T0)
        .await
        .unwrap();
    store
        .save_replay_window(&a, &kid, &[0, 255, 0, 9], T0 + 1)
        .await
        .unwrap();
    assert_eq!(
        store.load_replay_window(&a, &kid).await.unwrap(),
        Some(vec![0, 255, 0, 9])
    );
    assert_eq!(
        store.load_replay_window(&a, &keypair().0).await.unwrap(),
        None
    );
}

async fn audit_entries_hash_link(url: String) {
    let a = city("city-a");
    let store = with_tenants(&url, &["city-a"]).await;
    assert_eq!(store.audit_head(&a).await.unwrap().hash, GENESIS);
    let mut appended = Vec::new();
    for i in 0..20 {
        appended.push(store.append_audit(&record("city-a", i)).await.unwrap());
    }
    let mut system = record("city-a", 20);
    system.actor = Actor::System;
    system.resident = None;
    system.place = Place::Internal;
    system.detail = serde_json::json!({ "float": 0.1, "big": u64::MAX, "neg": -1.5e-7 });
    appended.push(store.append_audit(&system).await.unwrap());
    let stored = whole_chain(&store, &a).await;
    assert_eq!(stored, appended, "what is read back is what was appended");
    assert_chain(&stored);
    let head = store.audit_head(&a).await.unwrap();
    assert_eq!((head.seq, head.hash), (21, stored[20].hash));
    let page = store.audit_range(&a, 5, 3).await.unwrap();
    assert_eq!(
        page.iter().map(|e| e.seq).collect::<Vec<_>>(),
        vec![5, 6, 7]
    );
    assert!(store.audit_range(&a, 22, 10).await.unwrap().is_empty());
}

async fn concurrent_audit_appends_never_fork(url: String) {
    let a = city("city-a");
    let store = with_tenants(&url, &["city-a", "city-b"]).await;
    let second = open(&url).await; // a second control-plane instance
    let mut tasks = Vec::new();
    for t in 0..8i64 {
        let s = if t % 2 == 0 {
            store.clone()
        } else {
            second.clone()
        };
        tasks.push(tokio::spawn(async move {
            let mut seqs = Vec::new();
            for i in 0..50 {
                // Interleave another tenant's appends: they must not disturb city-a's.
                if i % 10 == 0 {
                    s.append_audit(&record("city-b", t * 100 + i))
                        .await
                        .unwrap();
                }
                seqs.push(
                    s.append_audit(&record("city-a", t * 100 + i))
                        .await
                        .unwrap()
                        .seq,
                );
            }
            seqs
        }));
    }
    let mut seqs = Vec::new();
    for t in tasks {
        let mine = t.await.unwrap();
        assert!(
            mine.windows(2).all(|w| w[0] < w[1]),
            "one task's entries are in order"
        );
        seqs.extend(mine);
    }
    seqs.sort_unstable();
    assert_eq!(seqs, (1..=400).collect::<Vec<u64>>());
    let chain_a = whole_chain(&store, &a).await;
    assert_eq!(chain_a.len(), 400);
    assert_chain(&chain_a);
    assert_eq!(store.audit_head(&a).await.unwrap().hash, chain_a[399].hash);
    let chain_b = whole_chain(&store, &city("city-b")).await;
    assert_eq!(chain_b.len(), 40);
    assert_chain(&chain_b);
}

async fn audit_search_filters(url: String) {
    let a = city("city-a");
    let store = with_tenants(&url, &["city-a", "city-b"]).await;
    for i in 0..12 {
        store.append_audit(&record("city-a", i)).await.unwrap();
    }
    let mut literal = record("city-a", 12);
    literal.action = "admin:user%_create".into();
    literal.actor = Actor::Admin("s000".into());
    store.append_audit(&literal).await.unwrap();
    store.append_audit(&record("city-b", 0)).await.unwrap();

    let seqs = |entries: Vec<AuditEntry>| entries.into_iter().map(|e| e.seq).collect::<Vec<_>>();
    let search = |f: AuditFilter, limit| {
        let store = store.clone();
        let a = a.clone();
        async move { seqs(store.audit_search(&a, &f, limit).await.unwrap()) }
    };
    assert_eq!(
        search(AuditFilter::default(), 100).await,
        (1..=13).collect::<Vec<_>>()
    );
    assert_eq!(search(AuditFilter::default(), 3).await, vec![1, 2, 3]);
    // Time: from inclusive, to exclusive (record i is at T0 + i s, seq i + 1).
    let window = AuditFilter {
        from_ms: Some(T0 + 2000),
        to_ms: Some(T0 + 5000),
        ..Default::default()
    };
    assert_eq!(search(window, 100).await, vec![3, 4, 5]);
    // Actor kind and id: Staff("s000") is i = 0, 3, 6, 9; Admin("s000") is not staff.
    let staff0 = AuditFilter {
        actor: Some(Actor::Staff("s000".into())),
        ..Default::default()
    };
    assert_eq!(search(staff0, 100).await, vec![1, 4, 7, 10]);
    let system = AuditFilter {
        actor: Some(Actor::System),
        ..Default::default()
    };
    assert!(search(system, 100).await.is_empty());
    // Resident: 000100 is i = 0, 4, 8, 12.
    let resident = AuditFilter {
        resident: Some("000100".into()),
        ..Default::default()
    };
    assert_eq!(search(resident, 100).await, vec![1, 5, 9, 13]);
    // Action prefix: case-sensitive and literal (% and _ are not wildcards).
    let rpc = AuditFilter {
        action_prefix: Some("rpc:".into()),
        ..Default::default()
    };
    assert_eq!(search(rpc, 100).await, vec![2, 4, 6, 8, 10, 12]);
    let upper = AuditFilter {
        action_prefix: Some("RPC:".into()),
        ..Default::default()
    };
    assert!(search(upper, 100).await.is_empty());
    let wildcard = AuditFilter {
        action_prefix: Some("%".into()),
        ..Default::default()
    };
    assert!(search(wildcard, 100).await.is_empty());
    let underscore = AuditFilter {
        action_prefix: Some("admin:user%_".into()),
        ..Default::default()
    };
    assert_eq!(search(underscore, 100).await, vec![13]);
    let wrong = AuditFilter {
        action_prefix: Some("admin:user__".into()),
        ..Default::default()
    };
    assert!(search(wrong, 100).await.is_empty());
    // Combined.
    let combined = AuditFilter {
        from_ms: Some(T0 + 4000),
        actor: Some(Actor::Staff("s001".into())),
        action_prefix: Some("resident.".into()),
        ..Default::default()
    };
    assert_eq!(search(combined, 100).await, vec![5, 11]); // i = 4, 10
}

async fn audit_checkpoints(url: String) {
    let a = city("city-a");
    let store = with_tenants(&url, &["city-a", "city-b"]).await;
    let mut last = None;
    for i in 0..3 {
        last = Some(store.append_audit(&record("city-a", i)).await.unwrap());
    }
    let last = last.unwrap();
    let signer = SigningKey::generate().unwrap();
    let cp = Checkpoint::sign(&a, last.seq, &last.hash, T0 + 99, &signer);
    store.save_checkpoint(&cp).await.unwrap();
    assert!(matches!(
        store.save_checkpoint(&cp).await,
        Err(StoreError::Conflict(_))
    ));
    let forked = Checkpoint {
        seq: 2,
        hash: [1; 32],
        ..cp.clone()
    };
    assert!(matches!(
        store.save_checkpoint(&forked).await,
        Err(StoreError::Conflict(_))
    ));
    let missing = Checkpoint {
        seq: 9,
        ..cp.clone()
    };
    assert!(matches!(
        store.save_checkpoint(&missing).await,
        Err(StoreError::NotFound(_))
    ));
    let elsewhere = Checkpoint {
        tenant: city("city-b"),
        ..cp.clone()
    };
    assert!(matches!(
        store.save_checkpoint(&elsewhere).await,
        Err(StoreError::NotFound(_))
    ));
    let saved = store.checkpoints(&a).await.unwrap();
    assert_eq!(saved, vec![cp]);
    saved[0].verify(&signer.verifying_key()).unwrap();
    assert!(store.checkpoints(&city("city-b")).await.unwrap().is_empty());
}

async fn audit_entries_are_append_only(url: String) {
    let store = with_tenants(&url, &["city-a"]).await;
    store.append_audit(&record("city-a", 0)).await.unwrap();
    // Bypass the store, as an intruder with database access would.
    let update = "UPDATE audit_entries SET action = 'x'";
    let delete = "DELETE FROM audit_entries";
    if url.starts_with("sqlite:") {
        let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
        assert!(sqlx::query(update).execute(&pool).await.is_err());
        assert!(sqlx::query(delete).execute(&pool).await.is_err());
    } else {
        let pool = sqlx::PgPool::connect(&url).await.unwrap();
        assert!(sqlx::query(update).execute(&pool).await.is_err());
        assert!(sqlx::query(delete).execute(&pool).await.is_err());
        assert!(sqlx::query("TRUNCATE audit_entries CASCADE")
            .execute(&pool)
            .await
            .is_err());
    }
    assert_eq!(
        store
            .audit_range(&city("city-a"), 1, 10)
            .await
            .unwrap()
            .len(),
        1
    );
}

async fn failed_login_counter_is_atomic(url: String) {
    let a = city("city-a");
    let store = with_tenants(&url, &["city-a"]).await;
    store
        .create_staff(&a, &new_staff("s001"), T0)
        .await
        .unwrap();
    let other = open(&url).await;
    let mut tasks = Vec::new();
    for t in 0..8 {
        let s = if t % 2 == 0 {
            store.clone()
        } else {
            other.clone()
        };
        let a = a.clone();
        tasks.push(tokio::spawn(async move {
            let mut got = Vec::new();
            for _ in 0..10 {
                got.push(s.record_failed_login(&a, "s001").await.unwrap());
            }
            got
        }));
    }
    let mut counts = Vec::new();
    for t in tasks {
        counts.extend(t.await.unwrap());
    }
    counts.sort_unstable();
    assert_eq!(
        counts,
        (1..=80).collect::<Vec<u32>>(),
        "every failure counted once"
    );
    assert_eq!(
        store
            .get_staff(&a, "s001")
            .await
            .unwrap()
            .unwrap()
            .failed_attempts,
        80
    );
    store
        .lock_staff_until(&a, "s001", T0 + 900_000, T0 + 1)
        .await
        .unwrap();
    assert_eq!(
        store
            .get_staff(&a, "s001")
            .await
            .unwrap()
            .unwrap()
            .locked_until_ms,
        Some(T0 + 900_000)
    );
    store.reset_failed_logins(&a, "s001").await.unwrap();
    let s = store.get_staff(&a, "s001").await.unwrap().unwrap();
    assert_eq!((s.failed_attempts, s.locked_until_ms), (0, None));
    assert!(matches!(
        store.record_failed_login(&a, "nobody").await,
        Err(StoreError::NotFound(_))
    ));
}

async fn staff_account_changes(url: String) {
    let a = city("city-a");
    let store = with_tenants(&url, &["city-a"]).await;
    store
        .create_staff(&a, &new_staff("s002"), T0)
        .await
        .unwrap();
    store
        .create_staff(&a, &new_staff("s001"), T0)
        .await
        .unwrap();
    assert!(matches!(
        store.create_staff(&a, &new_staff("s001"), T0).await,
        Err(StoreError::Conflict(_))
    ));
    let s = store.get_staff(&a, "s001").await.unwrap().unwrap();
    assert!(s.must_change_password && !s.disabled);
    assert_eq!(
        (s.created_at_ms, s.updated_at_ms, s.failed_attempts),
        (T0, T0, 0)
    );
    assert!(!format!("{s:?}").contains("山田"), "Debug redacts the name");
    assert!(
        !format!("{s:?}").contains("argon2id"),
        "Debug redacts the hash"
    );

    store
        .set_password_hash(&a, "s001", "$argon2id$v=19$new", false, T0 + 1)
        .await
        .unwrap();
    store
        .update_staff(
            &a,
            "s001",
            &StaffUpdate {
                display_name: Some("山田 太郎".into()),
                ..Default::default()
            },
            T0 + 2,
        )
        .await
        .unwrap();
    store
        .set_staff_disabled(&a, "s001", true, T0 + 3)
        .await
        .unwrap();
    let s = store.get_staff(&a, "s001").await.unwrap().unwrap();
    assert_eq!(s.password_hash, "$argon2id$v=19$new");
    assert_eq!(s.display_name, "山田 太郎");
    assert!(!s.must_change_password && s.disabled);
    assert_eq!(s.updated_at_ms, T0 + 3);
    let logins: Vec<_> = store
        .list_staff(&a)
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.login_id)
        .collect();
    assert_eq!(logins, vec!["s001", "s002"]);
    assert!(matches!(
        store.set_staff_disabled(&a, "nobody", true, T0).await,
        Err(StoreError::NotFound(_))
    ));
}

async fn permissions_are_the_union_over_groups(url: String) {
    let a = city("city-a");
    let store = with_tenants(&url, &["city-a"]).await;
    store
        .create_staff(&a, &new_staff("s001"), T0)
        .await
        .unwrap();
    store
        .create_staff(&a, &new_staff("s002"), T0)
        .await
        .unwrap();
    let perms = |p: &[&str]| p.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>();
    let g1 = Group {
        name: "市民課".into(),
        description: "".into(),
        permissions: perms(&["certificate.issue", "resident.view"]),
    };
    let g2 = Group {
        name: "保険年金課".into(),
        description: "".into(),
        permissions: perms(&["resident.view", "resident.view:kokuho"]),
    };
    store.create_group(&a, &g1).await.unwrap();
    store.create_group(&a, &g2).await.unwrap();
    assert!(matches!(
        store.create_group(&a, &g1).await,
        Err(StoreError::Conflict(_))
    ));
    assert!(store.permissions_of(&a, "s001").await.unwrap().is_empty());
    store.add_group_member(&a, "市民課", "s001").await.unwrap();
    store
        .add_group_member(&a, "保険年金課", "s001")
        .await
        .unwrap();
    store
        .add_group_member(&a, "保険年金課", "s001")
        .await
        .unwrap(); // idempotent
    store
        .add_group_member(&a, "保険年金課", "s002")
        .await
        .unwrap();
    assert!(matches!(
        store.add_group_member(&a, "no such", "s001").await,
        Err(StoreError::NotFound(_))
    ));
    assert!(matches!(
        store.add_group_member(&a, "市民課", "nobody").await,
        Err(StoreError::NotFound(_))
    ));
    assert_eq!(
        store.permissions_of(&a, "s001").await.unwrap(),
        perms(&["certificate.issue", "resident.view", "resident.view:kokuho"])
    );
    assert_eq!(
        store.permissions_of(&a, "s002").await.unwrap(),
        perms(&["resident.view", "resident.view:kokuho"])
    );
    assert_eq!(
        store.group_members(&a, "保険年金課").await.unwrap(),
        vec!["s001", "s002"]
    );
    let mut groups_of = store.groups_of(&a, "s001").await.unwrap();
    groups_of.sort();
    assert_eq!(groups_of.len(), 2);

    // Changing a group's permissions changes its members' at once.
    let g2b = Group {
        description: "国保・年金".into(),
        permissions: perms(&["pension.view"]),
        ..g2.clone()
    };
    store.update_group(&a, &g2b).await.unwrap();
    assert_eq!(
        store.permissions_of(&a, "s002").await.unwrap(),
        perms(&["pension.view"])
    );
    assert!(store
        .remove_group_member(&a, "市民課", "s001")
        .await
        .unwrap());
    assert!(!store
        .remove_group_member(&a, "市民課", "s001")
        .await
        .unwrap());
    assert_eq!(
        store.permissions_of(&a, "s001").await.unwrap(),
        perms(&["pension.view"])
    );
    let listed = store.list_groups(&a).await.unwrap();
    assert_eq!(listed.len(), 2);
    assert!(listed.contains(&g2b) && listed.contains(&g1));
    store.delete_group(&a, "保険年金課").await.unwrap();
    assert!(store.permissions_of(&a, "s001").await.unwrap().is_empty());
    assert!(matches!(
        store.delete_group(&a, "保険年金課").await,
        Err(StoreError::NotFound(_))
    ));
}

async fn hostile_text_is_stored_literally(url: String) {
    let a = city("city-a");
    let store = with_tenants(&url, &["city-a"]).await;
    let nasty = [
        "x'; DROP TABLE staff; --",
        "\"); DELETE FROM devices; --",
        "' OR '1'='1",
        "$1 $2 ? ?1 :name @x",
        "100% _under_ \\back\\slash",
        // Ideographic variation sequence and a character outside the BMP.
        "邉\u{E010F} 𠮷野家",
    ];
    for (i, text) in nasty.iter().enumerate() {
        let login = format!("{text}-{i}");
        let staff = NewStaff {
            login_id: login.clone(),
            display_name: text.to_string(),
            ..new_staff("x")
        };
        store.create_staff(&a, &staff, T0).await.unwrap();
        let got = store.get_staff(&a, &login).await.unwrap().unwrap();
        assert_eq!(
            (got.login_id.as_str(), got.display_name.as_str()),
            (login.as_str(), *text)
        );
        assert_eq!(store.record_failed_login(&a, &login).await.unwrap(), 1);

        let (mut device, kid) = new_device(&format!("dev-{i}"));
        device.counter_name = text.to_string();
        device.location = text.to_string();
        store.register_device(&a, &device, T0).await.unwrap();
        let d = store.get_device(&a, &device.id).await.unwrap().unwrap();
        assert_eq!(
            (d.counter_name.as_str(), d.location.as_str()),
            (*text, *text)
        );
        assert!(store.key_for(&a, &device.id, &kid).await.unwrap().is_some());

        let mut rec = record("city-a", i as i64);
        rec.action = text.to_string();
        rec.resident = Some(text.to_string());
        rec.actor = Actor::Staff(login.clone());
        rec.detail = serde_json::json!({ "note": text });
        let entry = store.append_audit(&rec).await.unwrap();
        let by_resident = AuditFilter {
            resident: Some(text.to_string()),
            ..Default::default()
        };
        assert_eq!(
            store.audit_search(&a, &by_resident, 10).await.unwrap(),
            vec![entry.clone()]
        );
        let by_prefix = AuditFilter {
            action_prefix: Some(text.to_string()),
            ..Default::default()
        };
        assert_eq!(
            store.audit_search(&a, &by_prefix, 10).await.unwrap(),
            vec![entry]
        );
        let by_actor = AuditFilter {
            actor: Some(Actor::Staff(login.clone())),
            ..Default::default()
        };
        assert_eq!(
            store.audit_search(&a, &by_actor, 10).await.unwrap().len(),
            1
        );
    }
    // Everything is still there, and nothing else.
    assert_eq!(store.list_staff(&a).await.unwrap().len(), nasty.len());
    assert_eq!(store.list_devices(&a).await.unwrap().len(), nasty.len());
    assert_chain(&whole_chain(&store, &a).await);

    // NUL is refused the same way on both backends (PostgreSQL cannot store it)...
    let nul = NewStaff {
        login_id: "nul\0id".into(),
        ..new_staff("x")
    };
    assert!(matches!(
        store.create_staff(&a, &nul, T0).await,
        Err(StoreError::Invalid(_))
    ));
    // ...except in an audit record, which must never be lost to an attacker-chosen
    // login id: the hashed JSON keeps it exactly.
    let mut rec = record("city-a", 99);
    rec.actor = Actor::Staff("evil\0login".into());
    let entry = store.append_audit(&rec).await.unwrap();
    let back = store.audit_range(&a, entry.seq, 1).await.unwrap();
    assert_eq!(back[0].record.actor, Actor::Staff("evil\0login".into()));
    assert_chain(&whole_chain(&store, &a).await);
}
