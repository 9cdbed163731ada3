//! The device registry follows central IT's CA directory (issue 10): a device
//! provisioned with `kakanai-provision` becomes known with its message key, and once
//! revoked there the control plane no longer accepts its key.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use kakanai_control_plane::model::TenantId;
use kakanai_control_plane::service::fleet_sync::{sync_once, FleetSyncConfig};
use kakanai_control_plane::store::{DeviceStatus, Store, Tenant};
use kakanai_protocol::topic::Ident;
use kakanai_protocol::{KeyId, SigningKey};
use kakanai_provisioning::fleet::{CaDir, InitOptions};

fn now_s() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn devices_enrolled_and_revoked_by_central_it_are_followed() {
    let tmp = tempfile::tempdir().unwrap();
    let ca_dir = tmp.path().join("ca");
    let cp = SigningKey::from_seed(&[0x22; 32]).unwrap();
    let ca = CaDir::init(
        &ca_dir,
        InitOptions {
            tenant: "city-a".into(),
            broker_url: "mqtts://127.0.0.1:8883".into(),
            enrolment_url: None,
            device_days: 90,
            control_plane_keys: vec![hex::encode(cp.verifying_key().as_bytes())],
        },
        now_s(),
    )
    .unwrap();
    let bundle = tmp.path().join("bundle");
    ca.write_bundle("counter-01", Some("市民課 1番窓口"), &bundle, now_s())
        .unwrap();

    let url = format!(
        "sqlite://{}?mode=rwc",
        tmp.path().join("kakanai.db").display()
    );
    let store = Store::open(&url).await.unwrap();
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
    let device = Ident::new("counter-01").unwrap();

    // Enrolled there → registered here with the key the device signs with.
    let report = sync_once(&store, &ca_dir, 1_000).await.unwrap();
    assert_eq!(report.registered, vec!["counter-01".to_owned()]);
    let record = store.get_device(&tenant, &device).await.unwrap().unwrap();
    assert_eq!(record.counter_name, "市民課 1番窓口");
    let device_key =
        kakanai_provisioning::keyfile::read_signing_key(&bundle.join("device.key")).unwrap();
    let kid = KeyId::of_key(&device_key.verifying_key());
    assert!(
        store
            .key_for(&tenant, &device, &kid)
            .await
            .unwrap()
            .is_some(),
        "the control plane verifies the device's messages with its own key"
    );
    // Nothing new: nothing changes.
    let again = sync_once(&store, &ca_dir, 2_000).await.unwrap();
    assert!(again.registered.is_empty() && again.revoked.is_empty() && again.keys_added.is_empty());

    // Revoked by central IT → revoked here on the next sync: its key is refused.
    ca.revoke("counter-01", now_s()).unwrap();
    let report = sync_once(&store, &ca_dir, 3_000).await.unwrap();
    assert_eq!(report.revoked, vec!["counter-01".to_owned()]);
    let record = store.get_device(&tenant, &device).await.unwrap().unwrap();
    assert_eq!(record.status, DeviceStatus::Revoked);
    assert!(store
        .key_for(&tenant, &device, &kid)
        .await
        .unwrap()
        .is_none());
    store.close().await;
}

#[test]
fn the_fleet_section_is_checked() {
    let ok: toml::Table = toml::from_str("ca_dirs = [\"/srv/ca\"]").unwrap();
    assert_eq!(FleetSyncConfig::from_table(&ok).unwrap().sync_seconds, 30);
    for bad in [
        "ca_dirs = []",
        "ca_dirs = [\"/x\"]\nsync_seconds = 1",
        "ca_dir = \"/x\"",
    ] {
        let t: toml::Table = toml::from_str(bad).unwrap();
        assert!(FleetSyncConfig::from_table(&t).is_err(), "{bad}");
    }
}
