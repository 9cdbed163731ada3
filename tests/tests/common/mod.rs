//! What the end-to-end tests share: the one city, counter and keys they use, a
//! control-plane store holding that counter, and the appliance link's configuration.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::time::Duration;

use kakanai_appliance::link::{Identity, LinkConfig};
use kakanai_control_plane::model::TenantId;
use kakanai_control_plane::store::{NewDevice, Store, Tenant};
use kakanai_hw::backoff::Backoff;
use kakanai_protocol::topic::Ident;
use kakanai_protocol::{KeyId, SigningKey};

pub const WAIT: Duration = Duration::from_secs(20);

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

pub fn tenant() -> TenantId {
    TenantId::new("city-a").unwrap()
}

pub fn device() -> Ident {
    Ident::new("counter-01").unwrap()
}

pub fn device_key() -> SigningKey {
    SigningKey::from_seed(&[0x11; 32]).unwrap()
}

pub fn cp_key() -> SigningKey {
    SigningKey::from_seed(&[0x22; 32]).unwrap()
}

/// A SQLite store in `dir` with the tenant and its counter registered; and its URL.
pub async fn store_with_device(dir: &Path) -> (Store, String) {
    let url = format!("sqlite://{}?mode=rwc", dir.join("kakanai.db").display());
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
    let dk = device_key();
    store
        .register_device(
            &tenant(),
            &NewDevice {
                id: device(),
                counter_name: "市民課 1番窓口".into(),
                location: "本庁舎1階".into(),
                kid: KeyId::of_key(&dk.verifying_key()),
                public_key: dk.verifying_key(),
                firmware: None,
            },
            now_ms(),
        )
        .await
        .unwrap();
    (store, url)
}

/// The counter's link to a broker on `127.0.0.1:port`, trusting the control plane's key.
pub fn link_config(port: u16) -> LinkConfig {
    let dk = device_key();
    let cp = cp_key();
    LinkConfig {
        identity: Identity {
            tenant: tenant(),
            device: device(),
            kid: KeyId::of_key(&dk.verifying_key()),
            key: dk,
            control_plane_keys: vec![(KeyId::of_key(&cp.verifying_key()), cp.verifying_key())],
        },
        broker_host: "127.0.0.1".into(),
        broker_port: port,
        keep_alive: Duration::from_secs(5),
        backoff: Backoff::new(Duration::from_millis(100), Duration::from_secs(1), 0.5).unwrap(),
        software_version: "0.1.0-e2e".into(),
        devices: Vec::new(),
    }
}

/// Whether the store shows the counter online (or offline) within ~20 s.
pub async fn wait_online_in_store(store: &Store, want: bool) -> bool {
    for _ in 0..400 {
        let d = store
            .get_device(&tenant(), &device())
            .await
            .unwrap()
            .unwrap();
        if d.online == want {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}
