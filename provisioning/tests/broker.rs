//! Mosquitto with the configuration `kakanai-provision broker-config` generates: a
//! real TLS listener that admits only the tenant's certificates, takes the CN as the
//! user, confines each device to its own topics and honours revocation after a
//! reload.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::time::Duration;

use kakanai_protocol::SigningKey;
use kakanai_provisioning::broker::{self, BrokerOptions};
use kakanai_provisioning::bundle::DeviceKeys;
use kakanai_provisioning::fleet::{CaDir, InitOptions};
use kakanai_test_peers::{free_port, Mosquitto};
use rumqttc::{
    AsyncClient, Event, MqttOptions, Packet, QoS, SubscribeReasonCode, TlsConfiguration, Transport,
};
use tokio::sync::mpsc;

const WAIT: Duration = Duration::from_secs(10);

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

struct Fleet {
    ca: CaDir,
    broker: Mosquitto,
    broker_dir: PathBuf,
    port: u16,
    _dir: tempfile::TempDir,
}

fn new_ca(dir: &std::path::Path, tenant: &str, port: u16) -> CaDir {
    let cp = SigningKey::generate().unwrap();
    CaDir::init(
        dir,
        InitOptions {
            tenant: tenant.into(),
            broker_url: format!("mqtts://127.0.0.1:{port}"),
            enrolment_url: Some("https://127.0.0.1:8443".into()),
            device_days: 90,
            control_plane_keys: vec![hex::encode(cp.verifying_key().as_bytes())],
        },
        now(),
    )
    .unwrap()
}

fn fleet() -> Fleet {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let ca = new_ca(&dir.path().join("ca"), "city-a", port);
    let broker_dir = dir.path().join("broker");
    let files = broker::write_config(
        &ca,
        &broker_dir,
        &BrokerOptions {
            port,
            bind: Some("127.0.0.1".into()),
            sans: vec!["127.0.0.1".into()],
        },
        now(),
    )
    .unwrap();
    let conf = std::fs::read_to_string(&files.conf).unwrap();
    let broker = Mosquitto::start_with(move |_| Ok(conf)).unwrap();
    Fleet {
        ca,
        broker,
        broker_dir,
        port,
        _dir: dir,
    }
}

/// A TLS identity: certificate and key, PEM.
struct Creds {
    cert: String,
    key: String,
}

fn enrol_centrally(ca: &CaDir, device: &str) -> Creds {
    let keys = DeviceKeys::generate().unwrap();
    let data = ca
        .issue_for_bundle(
            device,
            Some("市民課 1番窓口"),
            &keys.csr_pem().unwrap(),
            &keys.message_key.verifying_key(),
            now(),
        )
        .unwrap();
    Creds {
        cert: data.cert_pem,
        key: keys.tls_key_pem,
    }
}

fn control_plane(f: &Fleet) -> Creds {
    Creds {
        cert: std::fs::read_to_string(f.broker_dir.join("control-plane.pem")).unwrap(),
        key: std::fs::read_to_string(f.broker_dir.join("control-plane.key")).unwrap(),
    }
}

/// A connected MQTT client: what it receives, and the outcome of its subscriptions.
struct Client {
    client: AsyncClient,
    received: mpsc::UnboundedReceiver<(String, Vec<u8>)>,
    subacks: mpsc::UnboundedReceiver<Vec<SubscribeReasonCode>>,
}

/// Connects over TLS with `creds` (or none); `Err` with the reason when the broker
/// will not have it.
async fn connect(
    f: &Fleet,
    ca_pem: &str,
    creds: Option<&Creds>,
    id: &str,
) -> Result<Client, String> {
    let mut builder = native_tls::TlsConnector::builder();
    builder
        .add_root_certificate(native_tls::Certificate::from_pem(ca_pem.as_bytes()).unwrap())
        .disable_built_in_roots(true);
    if let Some(c) = creds {
        builder.identity(
            native_tls::Identity::from_pkcs8(c.cert.as_bytes(), c.key.as_bytes()).unwrap(),
        );
    }
    let mut options = MqttOptions::new(id, "127.0.0.1", f.port);
    options.set_keep_alive(Duration::from_secs(5));
    options.set_transport(Transport::tls_with_config(
        TlsConfiguration::NativeConnector(builder.build().unwrap()),
    ));
    let (client, mut eventloop) = AsyncClient::new(options, 100);
    loop {
        match tokio::time::timeout(WAIT, eventloop.poll()).await {
            Ok(Ok(Event::Incoming(Packet::ConnAck(_)))) => break,
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Err(e.to_string()),
            Err(_) => return Err("no answer".into()),
        }
    }
    let (tx, received) = mpsc::unbounded_channel();
    let (sub_tx, subacks) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    let _ = tx.send((p.topic.clone(), p.payload.to_vec()));
                }
                Ok(Event::Incoming(Packet::SubAck(s))) => {
                    let _ = sub_tx.send(s.return_codes);
                }
                Ok(_) => {}
                Err(_) => {
                    if tx.is_closed() {
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
    });
    Ok(Client {
        client,
        received,
        subacks,
    })
}

impl Client {
    async fn subscribe(&mut self, filter: &str) -> Vec<SubscribeReasonCode> {
        self.client
            .subscribe(filter, QoS::AtLeastOnce)
            .await
            .unwrap();
        tokio::time::timeout(WAIT, self.subacks.recv())
            .await
            .expect("no SUBACK")
            .unwrap()
    }

    async fn publish(&self, topic: &str, payload: &str) {
        self.client
            .publish(topic, QoS::AtLeastOnce, false, payload.as_bytes().to_vec())
            .await
            .unwrap();
    }

    /// Everything received up to and including `marker` (payload).
    async fn until(&mut self, marker: &str) -> Vec<(String, String)> {
        let mut seen = Vec::new();
        loop {
            let (topic, payload) = tokio::time::timeout(WAIT, self.received.recv())
                .await
                .unwrap_or_else(|_| panic!("{marker:?} never arrived; got {seen:?}"))
                .unwrap();
            let payload = String::from_utf8(payload).unwrap();
            let done = payload == marker;
            seen.push((topic, payload));
            if done {
                return seen;
            }
        }
    }

    fn nothing_more(&mut self) -> Vec<(String, Vec<u8>)> {
        let mut rest = Vec::new();
        while let Ok(m) = self.received.try_recv() {
            rest.push(m);
        }
        rest
    }
}

fn up(device: &str, kind: &str) -> String {
    format!("kakanai/v1/city-a/dev/{device}/up/{kind}")
}

fn down(device: &str, kind: &str) -> String {
    format!("kakanai/v1/city-a/dev/{device}/down/{kind}")
}

#[tokio::test]
async fn an_enrolled_device_works_and_only_on_its_own_topics() {
    let f = fleet();
    let ca_pem = f.ca.ca_pem().unwrap();
    let a = enrol_centrally(&f.ca, "counter-01");
    let b = enrol_centrally(&f.ca, "counter-02");
    let mut cp = connect(&f, &ca_pem, Some(&control_plane(&f)), "cp")
        .await
        .unwrap();
    assert_eq!(
        cp.subscribe("kakanai/v1/city-a/#").await,
        vec![SubscribeReasonCode::Success(QoS::AtLeastOnce)]
    );
    let mut dev_a = connect(&f, &ca_pem, Some(&a), "a").await.unwrap();
    let mut dev_b = connect(&f, &ca_pem, Some(&b), "b").await.unwrap();

    // Its own topics: published and subscribed.
    assert_eq!(
        dev_a
            .subscribe("kakanai/v1/city-a/dev/counter-01/down/#")
            .await,
        vec![SubscribeReasonCode::Success(QoS::AtLeastOnce)]
    );
    assert_eq!(
        dev_b
            .subscribe("kakanai/v1/city-a/dev/counter-02/down/#")
            .await,
        vec![SubscribeReasonCode::Success(QoS::AtLeastOnce)]
    );
    dev_a.publish(&up("counter-01", "scan"), "a-own").await;
    dev_a
        .publish("kakanai/v1/city-a/dev/counter-01/presence", "a-presence")
        .await;
    let got = cp.until("a-presence").await;
    assert_eq!(got.len(), 2, "{got:?}");
    assert_eq!(got[0], (up("counter-01", "scan"), "a-own".into()));

    // Another device's up topic, its presence, and a down topic: dropped by the
    // broker (the publisher still gets its PUBACK); the control plane sees only the
    // marker that follows.
    dev_a.publish(&up("counter-02", "scan"), "forged-up").await;
    dev_a
        .publish(
            "kakanai/v1/city-a/dev/counter-02/presence",
            "forged-presence",
        )
        .await;
    dev_a
        .publish(&down("counter-02", "print-job"), "forged-down")
        .await;
    dev_a.publish(&up("counter-01", "scan"), "a-marker").await;
    let got = cp.until("a-marker").await;
    assert_eq!(got, vec![(up("counter-01", "scan"), "a-marker".into())]);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(dev_b.nothing_more().is_empty());

    // Subscribing to another device's commands, or to everything: Mosquitto 2.0's
    // ACL file grants the SUBSCRIBE but checks every message against the ACL on the
    // way out, so such a subscription brings nothing the device may not read.
    dev_a
        .subscribe("kakanai/v1/city-a/dev/counter-02/down/#")
        .await;
    dev_a.subscribe("kakanai/v1/#").await;
    // A command to B reaches B only.
    cp.publish(&down("counter-02", "print-job"), "for-b").await;
    cp.publish(&down("counter-01", "print-job"), "for-a").await;
    assert_eq!(
        dev_b.until("for-b").await,
        vec![(down("counter-02", "print-job"), "for-b".into())]
    );
    assert_eq!(
        dev_a.until("for-a").await,
        vec![(down("counter-01", "print-job"), "for-a".into())]
    );
    drop(f.broker);
}

#[tokio::test]
async fn no_certificate_or_another_tenants_certificate_is_refused() {
    let f = fleet();
    let ca_pem = f.ca.ca_pem().unwrap();
    let refused = connect(&f, &ca_pem, None, "anonymous").await;
    assert!(refused.is_err(), "a client without a certificate got in");

    // A certificate from city-b's CA, for a device id that exists in city-a too.
    let other = tempfile::tempdir().unwrap();
    let city_b = new_ca(other.path(), "city-b", f.port);
    enrol_centrally(&f.ca, "counter-01");
    let foreign = enrol_centrally(&city_b, "counter-01");
    let refused = connect(&f, &ca_pem, Some(&foreign), "foreign").await;
    assert!(refused.is_err(), "another tenant's certificate got in");

    // A self-made certificate claiming to be the control plane is no better.
    let forged = {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::default();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "control-plane@city-a");
        let cert = params.self_signed(&key).unwrap();
        Creds {
            cert: cert.pem(),
            key: key.serialize_pem(),
        }
    };
    assert!(connect(&f, &ca_pem, Some(&forged), "forged").await.is_err());
    let log = std::fs::read_to_string(f.broker.log_path()).unwrap();
    assert!(log.contains("certificate"), "the broker logs why: {log}");
}

#[tokio::test]
async fn a_revoked_device_is_refused_after_the_broker_reloads() {
    let f = fleet();
    let ca_pem = f.ca.ca_pem().unwrap();
    let a = enrol_centrally(&f.ca, "counter-01");
    let b = enrol_centrally(&f.ca, "counter-02");
    let mut cp = connect(&f, &ca_pem, Some(&control_plane(&f)), "cp")
        .await
        .unwrap();
    cp.subscribe("kakanai/v1/city-a/#").await;
    let mut dev_a = connect(&f, &ca_pem, Some(&a), "a").await.unwrap();
    let mut dev_b = connect(&f, &ca_pem, Some(&b), "b").await.unwrap();
    dev_a
        .subscribe("kakanai/v1/city-a/dev/counter-01/down/#")
        .await;
    dev_b
        .subscribe("kakanai/v1/city-a/dev/counter-02/down/#")
        .await;

    let revoked = f.ca.revoke("counter-01", now()).unwrap();
    assert_eq!(revoked.len(), 1);
    broker::sync_revocations(&f.ca, &f.broker_dir).unwrap();
    f.broker.reload().unwrap();

    // A new connection with the revoked certificate is refused (CRL)...
    assert!(
        connect(&f, &ca_pem, Some(&a), "a-again").await.is_err(),
        "a revoked certificate got in"
    );
    // ... and the connection still open can neither receive nor publish (ACL).
    cp.publish(&down("counter-01", "print-job"), "after-revoke")
        .await;
    cp.publish(&down("counter-02", "print-job"), "b-marker")
        .await;
    dev_b.until("b-marker").await;
    dev_a
        .publish(&up("counter-01", "scan"), "from-revoked")
        .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    dev_b.publish(&up("counter-02", "scan"), "b-up").await;
    let got = cp.until("b-up").await;
    assert!(
        got.iter()
            .all(|(topic, _)| !topic.contains("counter-01/up")),
        "{got:?}"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(dev_a.nothing_more().is_empty());
    // The other device is unaffected, also on a new connection.
    assert!(connect(&f, &ca_pem, Some(&b), "b-again").await.is_ok());
}
