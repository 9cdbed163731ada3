//! The appliance provisioned by a bundle: plug-in to online through claim,
//! enrolment, approval, bundle, configuration and the real TLS link to Mosquitto
//! with the generated configuration; clear errors for bundles whose parts do not
//! fit; a revoked appliance stays offline.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::future::IntoFuture as _;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kakanai_appliance::config::{Config, ConfigError};
use kakanai_appliance::link::{self, LinkConfig, LinkEvent, LinkHandle};
use kakanai_appliance::store::ApplianceStore;
use kakanai_hw::backoff::Backoff;
use kakanai_protocol::catalogue::{
    Ack, AckStatus, Body, DeviceClass, DeviceStateReport, DeviceStatus,
};
use kakanai_protocol::seal::{seal, Opener};
use kakanai_protocol::{Envelope, KeyId, Kind, SigningKey, Topic, VerifyingKey};
use kakanai_provisioning::broker::{self, BrokerOptions};
use kakanai_provisioning::enrol::{self, TlsListener};
use kakanai_provisioning::fleet::{CaDir, InitOptions};
use kakanai_provisioning::pki;
use kakanai_test_peers::{free_port, Mosquitto, TcpProxy};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS, TlsConfiguration, Transport};
use tokio::sync::mpsc;

const WAIT: Duration = Duration::from_secs(15);

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// The control plane's message key in these tests.
fn cp_key() -> SigningKey {
    SigningKey::from_seed(&[0x22; 32]).unwrap()
}

fn init_ca(dir: &Path, tenant: &str, broker_port: u16, enrol_port: u16) -> CaDir {
    CaDir::init(
        dir,
        InitOptions {
            tenant: tenant.into(),
            broker_url: format!("mqtts://127.0.0.1:{broker_port}"),
            enrolment_url: Some(format!("https://127.0.0.1:{enrol_port}")),
            device_days: 90,
            control_plane_keys: vec![hex::encode(cp_key().verifying_key().as_bytes())],
        },
        now(),
    )
    .unwrap()
}

/// Mosquitto with the configuration `broker-config` writes into `out`.
fn start_broker(ca: &CaDir, out: &Path, port: u16) -> Mosquitto {
    let files = broker::write_config(
        ca,
        out,
        &BrokerOptions {
            port,
            bind: Some("127.0.0.1".into()),
            sans: vec!["127.0.0.1".into()],
        },
        now(),
    )
    .unwrap();
    let conf = std::fs::read_to_string(files.conf).unwrap();
    Mosquitto::start_with(move |_| Ok(conf)).unwrap()
}

/// A stand-in control plane on the broker's TLS listener with the certificate
/// `broker-config` made for it: verifies what the device signs and acks it.
async fn control_plane(
    broker_dir: &Path,
    port: u16,
    device_key: VerifyingKey,
) -> mpsc::UnboundedReceiver<(Topic, Envelope)> {
    let read = |name: &str| std::fs::read_to_string(broker_dir.join(name)).unwrap();
    let connector = native_tls::TlsConnector::builder()
        .add_root_certificate(native_tls::Certificate::from_pem(read("ca.pem").as_bytes()).unwrap())
        .disable_built_in_roots(true)
        .identity(
            native_tls::Identity::from_pkcs8(
                read("control-plane.pem").as_bytes(),
                read("control-plane.key").as_bytes(),
            )
            .unwrap(),
        )
        .build()
        .unwrap();
    let mut options = MqttOptions::new("control-plane", "127.0.0.1", port);
    options.set_transport(Transport::tls_with_config(
        TlsConfiguration::NativeConnector(connector),
    ));
    let (client, mut eventloop) = AsyncClient::new(options, 100);
    client
        .subscribe("kakanai/v1/city-a/dev/+/up/+", QoS::AtLeastOnce)
        .await
        .unwrap();
    client
        .subscribe("kakanai/v1/city-a/dev/+/presence", QoS::AtLeastOnce)
        .await
        .unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut opener = Opener::new();
        let mut seq = 1;
        loop {
            let event = match eventloop.poll().await {
                Ok(e) => e,
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let Event::Incoming(Packet::Publish(p)) = event else {
                continue;
            };
            let topic = Topic::parse(&p.topic).unwrap();
            let Ok(opened) = opener.open(&p.payload, &topic, |_, _| Some(device_key)) else {
                continue;
            };
            let envelope = opened.envelope;
            if !matches!(envelope.kind(), Kind::Ack | Kind::Presence) {
                let ack = Body::Ack(Ack::of(envelope.id, AckStatus::Accepted));
                let down = Topic::down(&topic.tenant, &topic.device, Kind::Ack).unwrap();
                seq += 1;
                let reply = Envelope::new(seq, now() * 1000, ack)
                    .unwrap()
                    .replying_to(envelope.id);
                let key = cp_key();
                let bytes =
                    seal(&key, &KeyId::of_key(&key.verifying_key()), &down, &reply).unwrap();
                let client = client.clone();
                tokio::spawn(async move {
                    client
                        .publish(down.to_string(), QoS::AtLeastOnce, false, bytes)
                        .await
                        .unwrap();
                });
            }
            let _ = tx.send((topic, envelope));
        }
    });
    rx
}

fn appliance_config(dir: &Path, bundle: &Path) -> std::path::PathBuf {
    appliance_config_with(dir, bundle, None)
}

fn appliance_config_with(dir: &Path, bundle: &Path, claim: Option<&Path>) -> std::path::PathBuf {
    let path = dir.join("appliance.toml");
    let claim = claim
        .map(|c| format!("claim = {c:?}\n"))
        .unwrap_or_default();
    std::fs::write(
        &path,
        format!(
            "[provisioning]\nbundle = {:?}\n{claim}\n[broker]\nkeep_alive_s = 5\n\n[store]\npath = {:?}\n",
            bundle,
            dir.join("appliance.redb")
        ),
    )
    .unwrap();
    path
}

async fn start_link(config: Config) -> (LinkHandle, mpsc::Receiver<LinkEvent>) {
    let store = Arc::new(ApplianceStore::open(&config.store_path).unwrap());
    let tls = config.tls.clone().expect("an mqtts bundle gives TLS");
    let link_config = LinkConfig {
        identity: config.identity,
        broker_host: config.broker_host,
        broker_port: config.broker_port,
        keep_alive: config.keep_alive,
        backoff: Backoff::new(Duration::from_millis(100), Duration::from_secs(1), 0.2).unwrap(),
        software_version: "test".into(),
        devices: Vec::new(),
    };
    let (handle, events, _) = link::start_tls(link_config, &tls, store).await.unwrap();
    (handle, events)
}

fn report() -> Body {
    Body::DeviceState(DeviceStateReport {
        id: "printer".into(),
        class: DeviceClass::Printer,
        status: DeviceStatus::Ready,
    })
}

#[tokio::test]
async fn claim_to_online_with_no_manual_step() {
    let tmp = tempfile::tempdir().unwrap();
    let broker_port = free_port();
    let enrol_tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let enrol_port = enrol_tcp.local_addr().unwrap().port();
    let ca = Arc::new(init_ca(
        &tmp.path().join("ca"),
        "city-a",
        broker_port,
        enrol_port,
    ));
    let broker_dir = tmp.path().join("broker");
    let broker = start_broker(&ca, &broker_dir, broker_port);
    let (cert, key) =
        pki::issue_server(&ca.material().unwrap(), &["127.0.0.1".into()], now()).unwrap();
    let listener = TlsListener::new(enrol_tcp, &cert.pem, &key).unwrap();
    tokio::spawn(axum::serve(listener, enrol::router(Arc::clone(&ca))).into_future());

    let started = Instant::now();
    // Central IT: a claim for the counter, onto the USB stick.
    let claim = ca
        .create_claim("市民課 1番窓口", None, 72 * 3600, false, now())
        .unwrap();
    let stick = tmp.path().join("usb/claim.toml");
    std::fs::create_dir_all(stick.parent().unwrap()).unwrap();
    claim.file.write(&stick).unwrap();

    // The appliance, plugged in: its configuration names the bundle directory (empty)
    // and the claim on the stick; it enrols and waits for approval, as the daemon
    // does before loading its configuration.
    let bundle_dir = tmp.path().join("etc/bundle");
    let config_path = appliance_config_with(tmp.path(), &bundle_dir, Some(&stick));
    assert!(matches!(
        Config::load(&config_path),
        Err(ConfigError::Bundle(_))
    ));
    let device_side = tokio::task::spawn_blocking({
        let config_path = config_path.clone();
        move || kakanai_appliance::config::enrol_if_needed(&config_path)
    });
    // Central IT approves what is pending (here by code instead of `approve ID`).
    let enrolment = loop {
        if let Some(e) = ca.pending().unwrap().into_iter().next() {
            break e;
        }
        assert!(started.elapsed() < WAIT, "no enrolment arrived");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(enrolment.device, claim.record.device);
    ca.approve(&enrolment.id, now()).unwrap();
    assert!(device_side.await.unwrap().unwrap(), "it did not enrol");
    let enrolled_at = started.elapsed();
    // Nothing more to do on the next start.
    assert!(!kakanai_appliance::config::enrol_if_needed(&config_path).unwrap());

    // The control plane learns the device's message key from the CA.
    let record = ca.devices().unwrap()[claim.record.device.as_str()].clone();
    let device_key =
        VerifyingKey::from_bytes(&hex::decode(&record.message_public_key).unwrap()).unwrap();
    let mut cp = control_plane(&broker_dir, broker_port, device_key).await;

    // The daemon's configuration now loads from the bundle.
    let config = Config::load(&config_path).unwrap();
    assert_eq!(config.identity.device.as_str(), claim.record.device);
    assert_eq!(
        config.provisioned.as_ref().unwrap().counter,
        "市民課 1番窓口"
    );
    let (link, mut events) = start_link(config).await;
    assert!(
        link.wait_online(WAIT).await,
        "the appliance did not come online over TLS"
    );
    let online_at = started.elapsed();

    // It works: a signed report reaches the control plane and its ack comes back.
    let id = link.send(report()).await.unwrap();
    let acked = tokio::time::timeout(WAIT, async {
        loop {
            if let Some(LinkEvent::Acked(of)) = events.recv().await {
                if of == id {
                    return;
                }
            }
        }
    })
    .await;
    assert!(acked.is_ok(), "no ack for the report");
    let worked_at = started.elapsed();
    let mut kinds = Vec::new();
    while let Ok((topic, envelope)) = cp.try_recv() {
        assert_eq!(topic.device.as_str(), claim.record.device);
        kinds.push(envelope.kind());
    }
    assert!(
        kinds.contains(&Kind::Presence) && kinds.contains(&Kind::DeviceState),
        "{kinds:?}"
    );
    println!(
        "plug-in to online: enrolled and approved {enrolled_at:?}, link online {online_at:?}, \
         first message acknowledged {worked_at:?}"
    );
    drop(broker);
}

#[tokio::test]
async fn a_revoked_appliance_stays_offline() {
    let tmp = tempfile::tempdir().unwrap();
    let port = free_port();
    let ca = init_ca(&tmp.path().join("ca"), "city-a", port, 8443);
    let broker_dir = tmp.path().join("broker");
    let broker = start_broker(&ca, &broker_dir, port);
    let bundle_dir = tmp.path().join("bundle");
    ca.write_bundle("counter-01", Some("市民課 1番窓口"), &bundle_dir, now())
        .unwrap();
    let config_path = appliance_config(tmp.path(), &bundle_dir);

    let (link, _events) = start_link(Config::load(&config_path).unwrap()).await;
    assert!(link.wait_online(WAIT).await, "not online before revocation");
    link.shutdown(1).await.unwrap();
    drop(link);

    ca.revoke("counter-01", now()).unwrap();
    broker::sync_revocations(&ca, &broker_dir).unwrap();
    broker.reload().unwrap();
    // The bundle itself is still well-formed; the broker refuses it.
    let other = tempfile::tempdir().unwrap();
    let mut config = Config::load(&config_path).unwrap();
    config.store_path = other.path().join("appliance.redb");
    let (link, _events) = start_link(config).await;
    assert!(
        !link.wait_online(Duration::from_secs(3)).await,
        "a revoked appliance came online"
    );
    let log = std::fs::read_to_string(broker.log_path()).unwrap();
    assert!(log.contains("certificate revoked") || log.contains("certificate verify failed"));
}

fn load_err(dir: &Path, bundle: &Path) -> String {
    match Config::load(&appliance_config(dir, bundle)) {
        Ok(_) => panic!("a bad bundle was accepted"),
        Err(e @ ConfigError::Bundle(_)) => e.to_string(),
        Err(e) => panic!("not a bundle error: {e}"),
    }
}

#[tokio::test]
async fn bundles_whose_parts_do_not_fit_are_refused_with_the_part_named() {
    let tmp = tempfile::tempdir().unwrap();
    let ca = init_ca(&tmp.path().join("ca"), "city-a", 8883, 8443);
    let t = tmp.path();
    let good = t.join("good");
    ca.write_bundle("counter-01", Some("窓口 1"), &good, now())
        .unwrap();
    assert!(Config::load(&appliance_config(t, &good)).is_ok());

    // Missing: no bundle at all, or no certificate.
    let err = load_err(t, &t.join("nowhere"));
    assert!(err.contains("bundle.toml is missing"), "{err}");
    let copy = |name: &str| {
        let dir = t.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        for f in [
            "bundle.toml",
            "ca.pem",
            "client.pem",
            "client.key",
            "device.key",
        ] {
            std::fs::copy(good.join(f), dir.join(f)).unwrap();
        }
        dir
    };
    let no_cert = copy("no-cert");
    std::fs::remove_file(no_cert.join("client.pem")).unwrap();
    let err = load_err(t, &no_cert);
    assert!(err.contains("client.pem"), "{err}");

    // The certificate's CN is another device.
    let renamed = copy("renamed");
    let text = std::fs::read_to_string(renamed.join("bundle.toml")).unwrap();
    std::fs::write(
        renamed.join("bundle.toml"),
        text.replace("counter-01", "counter-02"),
    )
    .unwrap();
    let err = load_err(t, &renamed);
    assert!(
        err.contains("client.pem is for device counter-01, but bundle.toml says counter-02"),
        "{err}"
    );

    // The key belongs to another certificate.
    let other = t.join("other");
    ca.write_bundle("counter-03", Some("窓口 3"), &other, now())
        .unwrap();
    let swapped = copy("swapped");
    std::fs::copy(other.join("client.key"), swapped.join("client.key")).unwrap();
    let err = load_err(t, &swapped);
    assert!(
        err.contains("client.key does not belong to client.pem"),
        "{err}"
    );

    // Expired: issued 100 days ago for 90.
    let old = t.join("old");
    ca.write_bundle("counter-04", Some("窓口 4"), &old, now() - 100 * 86_400)
        .unwrap();
    let err = load_err(t, &old);
    assert!(err.contains("expired"), "{err}");

    // Another tenant's bundle relabelled as city-a.
    let ca_b = init_ca(&t.join("ca-b"), "city-b", 8883, 8443);
    let foreign = t.join("foreign");
    ca_b.write_bundle("counter-01", Some("窓口"), &foreign, now())
        .unwrap();
    let text = std::fs::read_to_string(foreign.join("bundle.toml")).unwrap();
    std::fs::write(
        foreign.join("bundle.toml"),
        text.replace("city-b", "city-a"),
    )
    .unwrap();
    let err = load_err(t, &foreign);
    assert!(err.contains("tenant city-b, not of city-a"), "{err}");

    // A certificate from another CA than the bundle's ca.pem.
    let mixed = copy("mixed");
    std::fs::copy(t.join("ca-b/ca.pem"), mixed.join("ca.pem")).unwrap();
    let err = load_err(t, &mixed);
    assert!(err.contains("not issued by the CA in ca.pem"), "{err}");

    // A key readable by others.
    let exposed = copy("exposed");
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(
            exposed.join("client.key"),
            std::fs::Permissions::from_mode(0o644),
        )
        .unwrap();
    }
    let err = load_err(t, &exposed);
    assert!(err.contains("chmod 600"), "{err}");

    // A bundle and a [device] section together: which identity? Refused.
    let path = t.join("both.toml");
    std::fs::write(
        &path,
        format!(
            "[provisioning]\nbundle = {good:?}\n[device]\ntenant = \"city-a\"\nid = \"x\"\nkey_file = \"/k\"\n[store]\npath = \"/tmp/x.redb\"\n"
        ),
    )
    .unwrap();
    let err = Config::load(&path).err().unwrap().to_string();
    assert!(err.contains("come from the bundle"), "{err}");
}

#[tokio::test]
async fn a_renewed_certificate_takes_over_at_the_next_connection() {
    let tmp = tempfile::tempdir().unwrap();
    let broker_port = free_port();
    let enrol_tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let enrol_port = enrol_tcp.local_addr().unwrap().port();
    let ca = Arc::new(init_ca(
        &tmp.path().join("ca"),
        "city-a",
        broker_port,
        enrol_port,
    ));
    let broker_dir = tmp.path().join("broker");
    let broker = start_broker(&ca, &broker_dir, broker_port);
    let (cert, key) =
        pki::issue_server(&ca.material().unwrap(), &["127.0.0.1".into()], now()).unwrap();
    let listener = TlsListener::new(enrol_tcp, &cert.pem, &key).unwrap();
    tokio::spawn(axum::serve(listener, enrol::router(Arc::clone(&ca))).into_future());
    let bundle_dir = tmp.path().join("bundle");
    ca.write_bundle("counter-01", Some("市民課 1番窓口"), &bundle_dir, now())
        .unwrap();
    let old = kakanai_provisioning::bundle::Bundle::load(&bundle_dir, now()).unwrap();

    // Through a proxy, so the test can break the connection.
    let proxy = TcpProxy::start(([127, 0, 0, 1], broker_port).into()).unwrap();
    let mut config = Config::load(&appliance_config(tmp.path(), &bundle_dir)).unwrap();
    config.broker_port = proxy.port();
    let (link, mut events) = start_link(config).await;
    assert!(link.wait_online(WAIT).await);

    // The device renews (new TLS key, request signed with its message key).
    let dir = bundle_dir.clone();
    let new = tokio::task::spawn_blocking(move || enrol::renew(&dir))
        .await
        .unwrap()
        .unwrap();
    assert_ne!(new.cert_pem, old.cert_pem);
    assert_ne!(new.key_pem, old.key_pem);
    assert!(new.not_after >= old.not_after);
    let tls = kakanai_appliance::link::TlsClient {
        ca_pem: new.ca_pem.clone(),
        cert_pem: new.cert_pem.clone(),
        key_pem: new.key_pem.clone(),
    };
    link.use_tls(&tls).unwrap();
    // Still online on the old certificate meanwhile: no downtime.
    assert!(link.is_online());

    // The old certificate is revoked; the next connection must use the new one.
    let old_serial = pki::inspect(&old.cert_pem, "old").unwrap().serial;
    ca.revoke_certificate("counter-01", &old_serial, now())
        .unwrap();
    broker::sync_revocations(&ca, &broker_dir).unwrap();
    broker.reload().unwrap();
    proxy.cut();
    tokio::time::sleep(Duration::from_millis(300)).await;
    proxy.restore();
    // Offline, then online again: a new TLS connection with the new certificate.
    let reconnected = tokio::time::timeout(WAIT, async {
        let mut went_offline = false;
        while let Some(event) = events.recv().await {
            match event {
                LinkEvent::Offline { .. } => went_offline = true,
                LinkEvent::Online if went_offline => return,
                _ => {}
            }
        }
    })
    .await;
    assert!(
        reconnected.is_ok(),
        "not back online with the renewed certificate"
    );
    assert!(link.wait_online(WAIT).await);

    // A renewal signed with another key is refused.
    let forged = kakanai_provisioning::fleet::RenewRequest {
        tenant: "city-a".into(),
        device: "counter-01".into(),
        csr_pem: pki::csr_pem(&pki::new_tls_key().unwrap()).unwrap(),
        time: now(),
        signature: hex::encode(SigningKey::generate().unwrap().sign(b"anything")),
    };
    let err = ca.renew(&forged, now()).err().unwrap();
    assert!(err.to_string().contains("signature"), "{err}");
}
