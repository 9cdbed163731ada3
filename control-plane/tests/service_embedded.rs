//! The service with its in-process broker (`[broker] embedded = true`, rumqttd):
//! configured from TOML, the real appliance link connects to it, presence, reports
//! and RPC go through, and shutdown closes the port. Also checks the broker features
//! presence and delivery rely on: retained messages, the last will, persistent
//! sessions with QoS 1, and packets above the message limit.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use kakanai_appliance::link::{self, Identity, LinkConfig};
use kakanai_appliance::store::ApplianceStore;
use kakanai_control_plane::model::TenantId;
use kakanai_control_plane::service::{self, ConfigError, EmbeddedBroker, ServiceConfig};
use kakanai_control_plane::store::{NewDevice, Store, Tenant};
use kakanai_hw::backoff::Backoff;
use kakanai_protocol::catalogue::{Body, DeviceClass, DeviceStateReport, DeviceStatus, Ping};
use kakanai_protocol::limits::MAX_MESSAGE_BYTES;
use kakanai_protocol::topic::Ident;
use kakanai_protocol::{KeyId, SigningKey};
use kakanai_test_peers::free_port;
use rumqttc::{AsyncClient, Event, EventLoop, LastWill, MqttOptions, Packet, Publish, QoS};

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

fn device_key() -> SigningKey {
    SigningKey::from_seed(&[0x11; 32]).unwrap()
}

fn cp_key() -> SigningKey {
    SigningKey::from_seed(&[0x22; 32]).unwrap()
}

fn write_key(path: &Path, k: &SigningKey) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, hex::encode(k.seed())).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

fn config_text(dir: &Path, broker: &str) -> String {
    format!(
        "data_dir = \"{d}\"\ntenants = [\"city-a\"]\n\n[broker]\n{broker}\nclient_id = \"cp-embedded\"\n\n\
         [signing]\nkey_file = \"{d}/cp.key\"\n\n[http]\nlisten = \"127.0.0.1:0\"\n",
        d = dir.display()
    )
}

fn field_of(e: ConfigError) -> String {
    match e {
        ConfigError::Invalid { field, .. } => field.to_owned(),
        other => other.to_string(),
    }
}

#[test]
fn embedded_configuration() {
    let dir = tempfile::tempdir().unwrap();
    write_key(&dir.path().join("cp.key"), &cp_key());
    let path = dir.path().join("cp.toml");
    let no_env = |_: &str| None;
    let parse =
        |broker: &str| ServiceConfig::parse(&config_text(dir.path(), broker), &path, no_env);

    let c = parse("embedded = true").unwrap();
    let e = c.broker.embedded.as_ref().unwrap();
    assert_eq!(e.listen.to_string(), "127.0.0.1:1883");
    assert_eq!((c.broker.host.as_str(), c.broker.port), ("127.0.0.1", 1883));

    let c = parse("embedded = true\nlisten = \"0.0.0.0:2883\"").unwrap();
    assert_eq!((c.broker.host.as_str(), c.broker.port), ("127.0.0.1", 2883));

    // External broker: exactly as before.
    let c = parse("host = \"mqtt.example\"\nport = 8883").unwrap();
    assert!(c.broker.embedded.is_none());
    assert_eq!(
        (c.broker.host.as_str(), c.broker.port),
        ("mqtt.example", 8883)
    );

    // No host and not embedded: an error, never a broker started by accident.
    assert_eq!(field_of(parse("port = 1883").err().unwrap()), "broker.host");
    assert_eq!(
        field_of(parse("host = \"h\"").err().unwrap()),
        "broker.port"
    );
    assert_eq!(
        field_of(
            parse("host = \"h\"\nport = 1\nlisten = \"127.0.0.1:1\"")
                .err()
                .unwrap()
        ),
        "broker.listen"
    );
    assert_eq!(
        field_of(
            parse("embedded = true\nlisten = \"127.0.0.1:0\"")
                .err()
                .unwrap()
        ),
        "broker.listen"
    );
    assert_eq!(
        field_of(
            parse("embedded = true\nlisten = \"localhost\"")
                .err()
                .unwrap()
        ),
        "broker.listen"
    );
}

async fn store_with_device(dir: &Path) -> Store {
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
    store
}

fn state(n: u32) -> Body {
    Body::DeviceState(DeviceStateReport {
        id: format!("printer-{n}"),
        class: DeviceClass::Printer,
        status: DeviceStatus::Ready,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn appliance_link_through_the_embedded_broker() {
    let dir = tempfile::tempdir().unwrap();
    write_key(&dir.path().join("cp.key"), &cp_key());
    let port = free_port();
    let text = config_text(
        dir.path(),
        &format!("embedded = true\nlisten = \"127.0.0.1:{port}\"\nshared_group = \"kakanai\""),
    );
    let config = ServiceConfig::parse(&text, &dir.path().join("cp.toml"), |_| None).unwrap();
    let store = store_with_device(dir.path()).await;
    let options = service::ServiceOptions {
        store: Some(store.clone()),
        ..service::ServiceOptions::default()
    };
    let running = service::start(config, options).await.unwrap();
    let addr = running.embedded_broker_addr().unwrap();
    assert_eq!(addr.port(), port);
    assert!(running.service().wait_subscribed(WAIT).await);

    let dk = device_key();
    let cp = cp_key();
    let appliance_store =
        Arc::new(ApplianceStore::open(&dir.path().join("appliance.redb")).unwrap());
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
        software_version: "0.1.0-embedded".into(),
        devices: Vec::new(),
    };
    let (link, _events, boot) = link::start(link_config, Arc::clone(&appliance_store))
        .await
        .unwrap();
    assert_eq!(boot, 1);
    assert!(link.wait_online(WAIT).await);

    // Birth (retained presence) → online in the store.
    let mut online = false;
    for _ in 0..400 {
        let d = store
            .get_device(&tenant(), &device())
            .await
            .unwrap()
            .unwrap();
        if d.online {
            assert_eq!(d.firmware.as_deref(), Some("0.1.0-embedded"));
            online = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(online, "the birth reached the store");

    // 50 reports → every one acked by the control plane → the outbox is empty.
    for n in 0..50 {
        link.send(state(n)).await.unwrap();
    }
    let mut pending = u64::MAX;
    for _ in 0..400 {
        pending = appliance_store.pending_count().unwrap();
        if pending == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(pending, 0, "every report acked");
    assert_eq!(
        running.service().metrics().accepted_count("device-state"),
        50
    );

    // RPC round trip.
    let answer = link
        .rpc::<Ping>(&"こんにちは".to_owned(), Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(answer.unwrap(), "こんにちは");

    link.shutdown(1).await.unwrap();
    running.shutdown().await;
    // The listener and its connections are gone with the broker.
    assert!(
        std::net::TcpStream::connect(addr).is_err(),
        "the embedded broker's port is closed after shutdown"
    );
}

/// A client on `port`; its event loop runs in a task that forwards publishes.
fn client(id: &str, port: u16, clean: bool, will: Option<LastWill>) -> (AsyncClient, EventLoop) {
    let mut o = MqttOptions::new(id, "127.0.0.1", port);
    o.set_clean_session(clean);
    o.set_keep_alive(Duration::from_secs(5));
    o.set_max_packet_size(4 * MAX_MESSAGE_BYTES, 4 * MAX_MESSAGE_BYTES);
    if let Some(w) = will {
        o.set_last_will(w);
    }
    AsyncClient::new(o, 64)
}

/// Polls until `pred` matches an incoming publish (or panics after WAIT).
async fn next_publish(el: &mut EventLoop, pred: impl Fn(&Publish) -> bool) -> Publish {
    let found = tokio::time::timeout(WAIT, async {
        loop {
            match el.poll().await {
                Ok(Event::Incoming(Packet::Publish(p))) if pred(&p) => return p,
                Ok(_) => {}
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    })
    .await;
    found.expect("the expected message")
}

/// Polls until the broker has acknowledged the subscription.
async fn until_suback(el: &mut EventLoop) {
    tokio::time::timeout(WAIT, async {
        loop {
            if let Ok(Event::Incoming(Packet::SubAck(_))) = el.poll().await {
                return;
            }
        }
    })
    .await
    .expect("a SUBACK");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_broker_has_what_presence_and_delivery_need() {
    let port = free_port();
    let listen = format!("127.0.0.1:{port}").parse().unwrap();
    let broker = EmbeddedBroker::start(&service::EmbeddedBrokerConfig { listen }).unwrap();
    // A second one on the same port is refused with an error, not a log line.
    assert!(EmbeddedBroker::start(&service::EmbeddedBrokerConfig { listen }).is_err());

    // Retained message and last will: a device announces itself retained, with a
    // retained will, and then drops without DISCONNECT.
    let will = LastWill::new("t/presence", "offline", QoS::AtLeastOnce, true);
    let (dev, mut dev_el) = client("dev", port, true, Some(will));
    dev.publish("t/presence", QoS::AtLeastOnce, true, "online")
        .await
        .unwrap();
    // The presence is stored before the watcher subscribes, so it can only reach
    // the watcher as a retained message.
    tokio::time::timeout(WAIT, async {
        while !matches!(dev_el.poll().await, Ok(Event::Incoming(Packet::PubAck(_)))) {}
    })
    .await
    .expect("the broker acknowledged the presence");
    let dev_task = tokio::spawn(async move {
        loop {
            let _ = dev_el.poll().await;
        }
    });
    let (watch, mut watch_el) = client("watch", port, true, None);
    watch
        .subscribe("t/presence", QoS::AtLeastOnce)
        .await
        .unwrap();
    let p = next_publish(&mut watch_el, |p| p.payload.as_ref() == b"online").await;
    assert!(p.retain, "a late subscriber gets the retained presence");
    // Dropping the event loop closes the socket without DISCONNECT: the will fires.
    dev_task.abort();
    let _ = dev_task.await;
    next_publish(&mut watch_el, |p| p.payload.as_ref() == b"offline").await;

    // Persistent session: QoS 1 messages published while the subscriber is away are
    // delivered when it comes back with clean_session = false.
    let (sub, mut sub_el) = client("persistent", port, false, None);
    sub.subscribe("t/up", QoS::AtLeastOnce).await.unwrap();
    until_suback(&mut sub_el).await;
    sub.disconnect().await.unwrap();
    while !matches!(
        sub_el.poll().await,
        Ok(Event::Outgoing(rumqttc::Outgoing::Disconnect)) | Err(_)
    ) {}
    drop(sub_el);
    // Above the protocol's message limit: the embedded broker still carries it (the
    // ingest checks refuse it with a reason, not the broker).
    let big = vec![0u8; MAX_MESSAGE_BYTES + 1024];
    watch
        .publish("t/up", QoS::AtLeastOnce, false, big.clone())
        .await
        .unwrap();
    watch
        .publish("t/up", QoS::AtLeastOnce, false, "while away")
        .await
        .unwrap();
    // Let the publishes through the watcher's event loop before the subscriber returns.
    let mut acked = 0;
    tokio::time::timeout(WAIT, async {
        while acked < 2 {
            if let Ok(Event::Incoming(Packet::PubAck(_))) = watch_el.poll().await {
                acked += 1;
            }
        }
    })
    .await
    .expect("the broker acknowledged both publishes");
    let (_sub, mut sub_el) = client("persistent", port, false, None);
    let p = next_publish(&mut sub_el, |p| p.topic == "t/up").await;
    assert_eq!(
        p.payload.len(),
        big.len(),
        "the oversized message, in order"
    );
    let p = next_publish(&mut sub_el, |p| p.topic == "t/up").await;
    assert_eq!(p.payload.as_ref(), b"while away");

    drop(sub_el);
    drop(watch_el);
    tokio::task::spawn_blocking(move || broker.stop())
        .await
        .unwrap();
    assert!(std::net::TcpStream::connect(listen).is_err(), "port closed");
}
