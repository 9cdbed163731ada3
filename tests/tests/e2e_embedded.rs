//! One machine, one command: the control plane runs its own in-process broker
//! (rumqttd, `[broker] embedded = true`) and the real appliance link connects to it.
//! Checks what `service_embedded` does not: a command down to the appliance and its
//! ack back, and the appliance's signed will (offline presence) published by this
//! broker when the appliance disappears without a DISCONNECT.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use kakanai_appliance::link::{self, Identity, LinkConfig, LinkEvent};
use kakanai_appliance::store::ApplianceStore;
use kakanai_control_plane::model::TenantId;
use kakanai_control_plane::service::{self, BrokerConfig, EmbeddedBrokerConfig, ServiceConfig};
use kakanai_control_plane::store::{NewDevice, Store, Tenant};
use kakanai_hw::backoff::Backoff;
use kakanai_protocol::catalogue::AckStatus;
use kakanai_protocol::topic::Ident;
use kakanai_protocol::{examples, KeyId, Kind, SigningKey};
use kakanai_test_peers::free_port;

const WAIT: Duration = Duration::from_secs(20);

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

fn tenant() -> TenantId {
    TenantId::new("city-a").unwrap()
}

fn device() -> Ident {
    Ident::new("counter-01").unwrap()
}

async fn wait_online_in_store(store: &Store, want: bool) -> bool {
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn command_and_will_through_the_embedded_broker() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("kakanai.db").display()
    );
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
    let dk = SigningKey::from_seed(&[0x11; 32]).unwrap();
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

    let port = free_port();
    let cp = SigningKey::from_seed(&[0x22; 32]).unwrap();
    let config = ServiceConfig {
        data_dir: dir.path().join("cp"),
        database_url: url,
        broker: BrokerConfig {
            host: "127.0.0.1".into(),
            port,
            keep_alive: Duration::from_secs(5),
            client_id: "cp-e2e-embedded".into(),
            shared_group: None,
            embedded: Some(EmbeddedBrokerConfig {
                listen: format!("127.0.0.1:{port}").parse().unwrap(),
            }),
        },
        kid: KeyId::of_key(&cp.verifying_key()),
        key: cp,
        tenants: vec![tenant()],
        http_listen: "127.0.0.1:0".parse().unwrap(),
    };
    let running = service::start(config, service::ServiceOptions::default())
        .await
        .unwrap();
    assert!(running.service().wait_subscribed(WAIT).await);
    let svc = running.service().clone();

    // The appliance runs on a runtime of its own: dropping that runtime later cuts
    // its connection without DISCONNECT, as a power cut would.
    let appliance_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let cp = SigningKey::from_seed(&[0x22; 32]).unwrap();
    let link_config = LinkConfig {
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
    };
    let appliance_store =
        Arc::new(ApplianceStore::open(&dir.path().join("appliance.redb")).unwrap());
    let (link, mut events, _boot) = appliance_rt
        .spawn(link::start(link_config, Arc::clone(&appliance_store)))
        .await
        .unwrap()
        .unwrap();
    assert!(link.wait_online(WAIT).await);
    assert!(
        wait_online_in_store(&store, true).await,
        "birth reached the store"
    );

    // A print job down → the appliance runs it → its ack comes back up.
    let id = svc
        .send_command(
            &tenant(),
            &device(),
            examples::body(Kind::PrintJob),
            Duration::from_secs(60),
        )
        .await
        .unwrap();
    let command = loop {
        let e = tokio::time::timeout(WAIT, events.recv())
            .await
            .expect("a link event")
            .unwrap();
        if let LinkEvent::Command(env) = e {
            break env;
        }
    };
    assert_eq!(command.id, id);
    assert_eq!(
        svc.wait_command_outcome(&id, WAIT).await.unwrap(),
        AckStatus::Accepted
    );

    // Power cut: the broker publishes the appliance's signed will.
    drop(link);
    drop(events);
    appliance_rt.shutdown_background();
    assert!(
        wait_online_in_store(&store, false).await,
        "the will (offline presence) reached the store"
    );

    let addr = running.embedded_broker_addr().unwrap();
    running.shutdown().await;
    assert!(std::net::TcpStream::connect(addr).is_err(), "port closed");
}
