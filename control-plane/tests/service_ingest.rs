//! The running service against a real Mosquitto and SQLite in a temporary directory:
//! messages sealed by test device keys registered in the store go in; acks and RPC
//! answers come out, verified with the control plane's public key.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[macro_use]
mod common;

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use kakanai_control_plane::model::{Actor, AuditRecord, Place, TenantId};
use kakanai_control_plane::service::{self, BrokerConfig, RunningService, ServiceConfig};
use kakanai_control_plane::store::{AuditFilter, NewDevice, Store, Tenant};
use kakanai_protocol::catalogue::{
    AckStatus, Body, DeviceClass, DeviceStateReport, DeviceStatus, Ping, Presence, PresenceState,
    RpcOutcome, RpcRequest,
};
use kakanai_protocol::seal::{seal, Opener};
use kakanai_protocol::topic::Ident;
use kakanai_protocol::{Envelope, KeyId, Kind, MessageId, SigningKey, Topic, VerifyingKey};
use kakanai_test_peers::Mosquitto;
use rumqttc::{AsyncClient, Event, LastWill, MqttOptions, Packet, QoS};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, Mutex};

const WAIT: Duration = Duration::from_secs(10);

fn tenant() -> TenantId {
    TenantId::new("city-a").unwrap()
}

fn ident(s: &str) -> Ident {
    Ident::new(s).unwrap()
}

fn key(n: u8) -> SigningKey {
    SigningKey::from_seed(&[n; 32]).unwrap()
}

fn kid(k: &SigningKey) -> KeyId {
    KeyId::of_key(&k.verifying_key())
}

const CP_SEED: u8 = 0x22;

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// A broker, a store with devices `counter-01` (key 0x11), `counter-02` (0x12) and
/// a revoked `counter-03` (0x13), the service, and a test client that plays the
/// devices and reads everything sent down to them.
struct Fixture {
    _broker: Mosquitto,
    _dir: tempfile::TempDir,
    running: RunningService,
    store: Store,
    devices: Devices,
}

async fn register(store: &Store, id: &str, k: &SigningKey) {
    store
        .register_device(
            &tenant(),
            &NewDevice {
                id: ident(id),
                counter_name: "市民課 1番窓口".into(),
                location: "本庁舎1階".into(),
                kid: kid(k),
                public_key: k.verifying_key(),
                firmware: None,
            },
            now_ms(),
        )
        .await
        .unwrap();
}

fn write_key(path: &Path, k: &SigningKey) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, hex::encode(k.seed())).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

async fn fixture() -> Fixture {
    fixture_on(None).await
}

/// The fixture on the store at `url`, or on SQLite in the temporary directory.
async fn fixture_on(url: Option<String>) -> Fixture {
    let broker = Mosquitto::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let url = url.unwrap_or_else(|| {
        format!(
            "sqlite://{}?mode=rwc",
            dir.path().join("kakanai.db").display()
        )
    });
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
    register(&store, "counter-01", &key(0x11)).await;
    register(&store, "counter-02", &key(0x12)).await;
    register(&store, "counter-03", &key(0x13)).await;
    store
        .revoke_device(&tenant(), &ident("counter-03"), now_ms())
        .await
        .unwrap();
    let key_file = dir.path().join("cp.key");
    write_key(&key_file, &key(CP_SEED));
    let config = ServiceConfig::new(
        dir.path().to_owned(),
        url,
        BrokerConfig::external(broker.host(), broker.port(), "cp-test").shared("kakanai"),
        key(CP_SEED),
        vec![tenant()],
    );
    let running = service::start(config, service::ServiceOptions::default())
        .await
        .unwrap();
    assert!(running.service().wait_subscribed(WAIT).await);
    let devices = Devices::start(broker.port()).await;
    Fixture {
        _broker: broker,
        _dir: dir,
        running,
        store,
        devices,
    }
}

/// Plays the devices: publishes up, and receives everything sent down, opened with
/// the control plane's public key only (so every ack's signature is checked).
struct Devices {
    client: AsyncClient,
    down: Mutex<mpsc::Receiver<(Topic, Envelope)>>,
    forged_down: Arc<AtomicU64>,
    received: Arc<AtomicU64>,
}

impl Devices {
    async fn start(port: u16) -> Self {
        let mut opts = MqttOptions::new("test-devices", "127.0.0.1", port);
        opts.set_max_packet_size(1024 * 1024, 1024 * 1024);
        let (client, mut eventloop) = AsyncClient::new(opts, 1024);
        client
            .subscribe("kakanai/v1/city-a/dev/+/down/+", QoS::AtLeastOnce)
            .await
            .unwrap();
        let (tx, rx) = mpsc::channel(10_000);
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        let forged = Arc::new(AtomicU64::new(0));
        let forged2 = Arc::clone(&forged);
        let received = Arc::new(AtomicU64::new(0));
        let received2 = Arc::clone(&received);
        tokio::spawn(async move {
            let cp: VerifyingKey = key(CP_SEED).verifying_key();
            let cp_kid = KeyId::of_key(&cp);
            let mut opener = Opener::new();
            let mut ready = Some(ready_tx);
            loop {
                let Ok(event) = eventloop.poll().await else {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                };
                match event {
                    Event::Incoming(Packet::SubAck(_)) => {
                        if let Some(r) = ready.take() {
                            let _ = r.send(());
                        }
                    }
                    Event::Incoming(Packet::Publish(p)) => {
                        let topic = Topic::parse(&p.topic).unwrap();
                        match opener.open(&p.payload, &topic, |_, k| (k == &cp_kid).then_some(cp)) {
                            Ok(o) => {
                                received2.fetch_add(1, Ordering::SeqCst);
                                let _ = tx.send((topic, o.envelope)).await;
                            }
                            Err(_) => {
                                forged2.fetch_add(1, Ordering::SeqCst);
                            }
                        }
                    }
                    _ => {}
                }
            }
        });
        tokio::time::timeout(WAIT, ready_rx).await.unwrap().unwrap();
        Self {
            client,
            down: Mutex::new(rx),
            forged_down: forged,
            received,
        }
    }

    async fn publish(&self, topic: &Topic, bytes: Vec<u8>) {
        self.publish_raw(&topic.to_string(), bytes, false).await;
    }

    async fn publish_raw(&self, topic: &str, bytes: Vec<u8>, retain: bool) {
        self.client
            .publish(topic, QoS::AtLeastOnce, retain, bytes)
            .await
            .unwrap();
    }

    /// The next message sent down that `pred` wants (others are skipped).
    async fn next(&self, mut pred: impl FnMut(&Topic, &Envelope) -> bool) -> (Topic, Envelope) {
        let mut rx = self.down.lock().await;
        loop {
            let got = tokio::time::timeout(WAIT, rx.recv())
                .await
                .expect("a message from the control plane")
                .unwrap();
            if pred(&got.0, &got.1) {
                return got;
            }
        }
    }

    /// The ack of message `id`, with its correlation checked.
    async fn ack_of(&self, id: MessageId) -> AckStatus {
        let (topic, env) = self
            .next(|_, e| matches!(&e.body, Body::Ack(ack) if ack.covers(&id)))
            .await;
        assert_eq!(topic.kind(), Kind::Ack);
        let Body::Ack(ack) = env.body else {
            unreachable!()
        };
        // Several messages may share one ack; it correlates with the first.
        assert_eq!(env.correlation, Some(ack.of));
        ack.status
    }

    /// Nothing more is sent down within `d` (drains what is there).
    async fn nothing_for(&self, d: Duration) -> Vec<Envelope> {
        let mut rx = self.down.lock().await;
        let mut got = Vec::new();
        let deadline = tokio::time::Instant::now() + d;
        while let Ok(Some((_, e))) = tokio::time::timeout_at(deadline, rx.recv()).await {
            got.push(e);
        }
        got
    }
}

/// Seals `body` as device `device` with key `k` and sequence `seq`.
fn up(k: &SigningKey, device: &str, seq: u64, body: Body) -> (Topic, Envelope, Vec<u8>) {
    let env = Envelope::new(seq, now_ms(), body).unwrap();
    up_env(k, device, env)
}

fn up_env(k: &SigningKey, device: &str, env: Envelope) -> (Topic, Envelope, Vec<u8>) {
    let topic = match env.kind() {
        Kind::Presence => Topic::presence(&tenant(), &ident(device)),
        kind => Topic::up(&tenant(), &ident(device), kind).unwrap(),
    };
    let bytes = seal(k, &kid(k), &topic, &env).unwrap();
    (topic, env, bytes)
}

fn state(n: u32) -> Body {
    Body::DeviceState(DeviceStateReport {
        id: format!("printer-{n}"),
        class: DeviceClass::Printer,
        status: DeviceStatus::Ready,
    })
}

async fn audit_count(store: &Store, prefix: &str) -> usize {
    let filter = AuditFilter {
        action_prefix: Some(prefix.into()),
        ..AuditFilter::default()
    };
    store
        .audit_search(&tenant(), &filter, 10_000)
        .await
        .unwrap()
        .len()
}

async fn http_get(addr: SocketAddr, path: &str) -> String {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    out
}

async fn wait_until(mut cond: impl FnMut() -> bool) {
    for _ in 0..200 {
        if cond() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("condition not met in time");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reports_are_accepted_acked_and_duplicates_stored_once() {
    let f = fixture().await;
    let k = key(0x11);
    let (topic, env, bytes) = up(&k, "counter-01", 1, state(1));
    f.devices.publish(&topic, bytes.clone()).await;
    assert_eq!(f.devices.ack_of(env.id).await, AckStatus::Accepted);
    assert_eq!(audit_count(&f.store, "device.state").await, 1);
    let entry = f
        .store
        .audit_search(&tenant(), &AuditFilter::default(), 10)
        .await
        .unwrap();
    assert_eq!(
        entry[0].record.place,
        kakanai_control_plane::model::Place::Appliance("counter-01".into())
    );

    // The very same bytes again (the appliance's outbox re-sends until acked).
    f.devices.publish(&topic, bytes).await;
    assert_eq!(f.devices.ack_of(env.id).await, AckStatus::Duplicate);
    // The same message id re-signed with a new sequence number.
    let mut again = env.clone();
    again.seq = 2;
    let (_, _, resealed) = up_env(&k, "counter-01", again);
    f.devices.publish(&topic, resealed).await;
    assert_eq!(f.devices.ack_of(env.id).await, AckStatus::Duplicate);
    assert_eq!(
        audit_count(&f.store, "device.state").await,
        1,
        "stored once"
    );
    let svc = f.running.service();
    assert_eq!(svc.metrics().duplicate_count(), 2);
    assert_eq!(svc.metrics().accepted_count("device-state"), 1);

    let health = http_get(f.running.http_addr(), "/health").await;
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");
    assert!(health.contains("\"broker_connected\":true"), "{health}");
    assert!(health.contains("\"store_reachable\":true"), "{health}");
    let metrics = http_get(f.running.http_addr(), "/metrics").await;
    assert!(
        metrics.contains("kakanai_messages_accepted_total{kind=\"device-state\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("kakanai_messages_duplicate_total 2"),
        "{metrics}"
    );
    assert_eq!(f.devices.forged_down.load(Ordering::SeqCst), 0);
    f.running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_foreign_revoked_replayed_and_garbage_messages_are_refused() {
    let f = fixture().await;
    let svc = f.running.service().clone();
    let a = key(0x11);
    let forger = key(0x66);

    // Signed by another key under device A's kid.
    let env = Envelope::new(1, now_ms(), state(1)).unwrap();
    let topic = Topic::up(&tenant(), &ident("counter-01"), Kind::DeviceState).unwrap();
    let forged = seal(&forger, &kid(&a), &topic, &env).unwrap();
    f.devices.publish(&topic, forged).await;
    // A device that is not registered.
    let (t, _, b) = up(&key(0x44), "counter-99", 1, state(1));
    f.devices.publish(&t, b).await;
    // Device A's key on device B's topic.
    let (_, env_b, _) = up(&a, "counter-01", 2, state(2));
    let b_topic = Topic::up(&tenant(), &ident("counter-02"), Kind::DeviceState).unwrap();
    let foreign = seal(&a, &kid(&a), &b_topic, &env_b).unwrap();
    f.devices.publish(&b_topic, foreign).await;
    // A revoked device with its (formerly valid) key.
    let (t, _, b) = up(&key(0x13), "counter-03", 1, state(1));
    f.devices.publish(&t, b).await;
    // Garbage, and something over the size limit.
    f.devices.publish(&topic, b"\xd2\x84garbage".to_vec()).await;
    f.devices.publish(&topic, vec![0u8; 300 * 1024]).await;
    // A message moved to another kind's topic.
    let (_, _, moved) = up(&a, "counter-01", 3, state(3));
    let scan = Topic::up(&tenant(), &ident("counter-01"), Kind::Scan).unwrap();
    f.devices.publish(&scan, moved).await;

    let m = svc.metrics();
    wait_until(|| {
        m.refused_count("bad-signature") == 2
            && m.refused_count("unknown-key") == 3
            && m.refused_count("malformed") == 1
            && m.refused_count("oversized") == 1
    })
    .await;

    // A sequence number far older than the window, under a new id: refused.
    let (t, fresh, b) = up(&a, "counter-01", 5_000, state(5));
    f.devices.publish(&t, b).await;
    assert_eq!(f.devices.ack_of(fresh.id).await, AckStatus::Accepted);
    let (t, stale, b) = up(&a, "counter-01", 10, state(6));
    f.devices.publish(&t, b).await;
    wait_until(|| m.refused_count("replay") == 1).await;

    // Nothing refused was acked or stored, and the service still works.
    let (t, ok, b) = up(&a, "counter-01", 5_001, state(7));
    f.devices.publish(&t, b).await;
    assert_eq!(f.devices.ack_of(ok.id).await, AckStatus::Accepted);
    let extra = f.devices.nothing_for(Duration::from_millis(300)).await;
    assert!(extra.is_empty(), "unexpected: {extra:?}");
    assert_eq!(audit_count(&f.store, "device.").await, 2);
    assert_ne!(stale.id, ok.id);
    assert_eq!(
        f.devices.received.load(Ordering::SeqCst),
        2,
        "only the two genuine messages were acked"
    );
    for d in ["counter-02", "counter-03"] {
        let dev = f
            .store
            .get_device(&tenant(), &ident(d))
            .await
            .unwrap()
            .unwrap();
        assert!(dev.last_seen_ms.is_none());
    }
    let metrics = svc.metrics_text().await;
    assert!(
        metrics.contains("kakanai_messages_refused_total{reason=\"unknown-key\"} 3"),
        "{metrics}"
    );
    f.running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rpc_ping_is_answered_by_correlation_and_unknown_methods_fail() {
    let f = fixture().await;
    let a = key(0x11);
    let req = RpcRequest::new::<Ping>(&"こんにちは".to_owned()).unwrap();
    let env = Envelope::new(1, now_ms(), Body::RpcRequest(req))
        .unwrap()
        .expiring_at(now_ms() + 5_000);
    let (topic, env, bytes) = up_env(&a, "counter-01", env);
    f.devices.publish(&topic, bytes).await;
    let (res_topic, res) = f
        .devices
        .next(|_, e| e.kind() == Kind::RpcResponse && e.correlation == Some(env.id))
        .await;
    assert_eq!(
        res_topic.to_string(),
        "kakanai/v1/city-a/dev/counter-01/down/rpc-res"
    );
    let Body::RpcResponse(r) = res.body else {
        unreachable!()
    };
    assert_eq!(r.result::<Ping>().unwrap().unwrap(), "こんにちは");
    assert_eq!(f.devices.ack_of(env.id).await, AckStatus::Accepted);

    let unknown = RpcRequest {
        method: "no.such-method".into(),
        params: ciborium::Value::Null,
        session: Some("token-that-resolves-to-nothing".into()),
    };
    let env = Envelope::new(2, now_ms(), Body::RpcRequest(unknown))
        .unwrap()
        .expiring_at(now_ms() + 5_000);
    let (topic, env, bytes) = up_env(&a, "counter-01", env);
    f.devices.publish(&topic, bytes).await;
    let (_, res) = f
        .devices
        .next(|_, e| e.kind() == Kind::RpcResponse && e.correlation == Some(env.id))
        .await;
    let Body::RpcResponse(r) = res.body else {
        unreachable!()
    };
    match r.outcome {
        RpcOutcome::Err(e) => assert_eq!(e.code, "unknown-method"),
        RpcOutcome::Ok(_) => panic!("an unknown method succeeded"),
    }
    let m = f.running.service().metrics();
    assert_eq!(m.rpc_count("ping", "ok"), 1);
    assert_eq!(m.rpc_count("unknown", "error"), 1);
    assert_eq!(audit_count(&f.store, "rpc:ping").await, 1);
    assert_eq!(audit_count(&f.store, "rpc:unknown").await, 1);
    // The audit never holds the parameters.
    let all = f
        .store
        .audit_search(&tenant(), &AuditFilter::default(), 100)
        .await
        .unwrap();
    let text = serde_json::to_string(&all.iter().map(|e| &e.record).collect::<Vec<_>>()).unwrap();
    assert!(!text.contains("こんにちは"));
    assert!(!text.contains("token-that"));
    f.running.shutdown().await;
}

fn presence(state: PresenceState, boot: u64) -> Body {
    Body::Presence(Presence {
        state,
        boot_counter: boot,
        software_version: "1.2.3".into(),
        devices: Vec::new(),
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_and_the_will_update_the_device() {
    let f = fixture().await;
    let a = key(0x11);
    let device = ident("counter-01");
    // The will is signed first (as the appliance does at boot), with a low number.
    let (p_topic, _, will) = up(&a, "counter-01", 1, presence(PresenceState::Offline, 3));
    let mut opts = MqttOptions::new("kakanai-city-a-counter-01", "127.0.0.1", f._broker.port());
    opts.set_last_will(LastWill::new(
        p_topic.to_string(),
        will,
        QoS::AtLeastOnce,
        true,
    ));
    opts.set_keep_alive(Duration::from_secs(5));
    let (client, mut eventloop) = AsyncClient::new(opts, 100);
    let poller = tokio::spawn(async move {
        loop {
            if eventloop.poll().await.is_err() {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    });
    // Birth, numbered far beyond the will (thousands of messages later).
    let (_, _, birth) = up(&a, "counter-01", 3_000, presence(PresenceState::Online, 3));
    client
        .publish(p_topic.to_string(), QoS::AtLeastOnce, true, birth)
        .await
        .unwrap();
    let store = f.store.clone();
    let mut online = false;
    for _ in 0..200 {
        let d = store.get_device(&tenant(), &device).await.unwrap().unwrap();
        if d.online {
            assert_eq!(d.boot_counter, 3);
            assert_eq!(d.firmware.as_deref(), Some("1.2.3"));
            assert_eq!(d.status.as_str(), "active");
            online = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(online, "the birth marked the device online");
    let metrics = f.running.service().metrics_text().await;
    assert!(
        metrics.contains("kakanai_devices_online{tenant=\"city-a\"} 1"),
        "{metrics}"
    );

    // Vanish without DISCONNECT: the broker publishes the will.
    poller.abort();
    drop(client);
    let mut offline = false;
    for _ in 0..200 {
        let d = store.get_device(&tenant(), &device).await.unwrap().unwrap();
        if !d.online {
            assert_eq!(d.boot_counter, 3);
            offline = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(offline, "the will marked the device offline");

    // A will of an earlier boot arriving late changes nothing.
    let (_, _, birth) = up(&a, "counter-01", 3_001, presence(PresenceState::Online, 4));
    f.devices
        .publish_raw(&p_topic.to_string(), birth, false)
        .await;
    let (_, _, old_will) = up(&a, "counter-01", 2, presence(PresenceState::Offline, 3));
    wait_until_online(&store, &device, true, 4).await;
    f.devices
        .publish_raw(&p_topic.to_string(), old_will, false)
        .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let d = store.get_device(&tenant(), &device).await.unwrap().unwrap();
    assert!(d.online, "an earlier boot's will is ignored");
    f.running.shutdown().await;
}

async fn wait_until_online(store: &Store, device: &Ident, online: bool, boot: u64) {
    for _ in 0..200 {
        let d = store.get_device(&tenant(), device).await.unwrap().unwrap();
        if d.online == online && d.boot_counter == boot {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("device never became online={online} with boot {boot}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_checkpoints_are_signed_when_due_and_verify() {
    let f = fixture().await;
    let k = key(0x11);
    for n in 1..=3u64 {
        let (topic, env, bytes) = up(&k, "counter-01", n, state(n as u32));
        f.devices.publish(&topic, bytes).await;
        assert_eq!(f.devices.ack_of(env.id).await, AckStatus::Accepted);
    }
    let service = f.running.service();
    let now = now_ms();
    // The timer may already have signed the first head; either way the head ends
    // up signed exactly once.
    let first = service.sign_due_checkpoints(now).await.unwrap();
    assert_eq!(
        service.sign_due_checkpoints(now).await.unwrap(),
        0,
        "the head is already signed"
    );
    let checkpoints = f.store.checkpoints(&tenant()).await.unwrap();
    assert!(first <= 1 && !checkpoints.is_empty());

    // One more entry: not due again until the hour has passed.
    let (topic, env, bytes) = up(&k, "counter-01", 4, state(4));
    f.devices.publish(&topic, bytes).await;
    assert_eq!(f.devices.ack_of(env.id).await, AckStatus::Accepted);
    assert_eq!(service.sign_due_checkpoints(now + 60_000).await.unwrap(), 0);
    assert_eq!(
        service.sign_due_checkpoints(now + 3_600_000).await.unwrap(),
        1
    );

    // The whole log verifies against the control plane's key.
    let head = f.store.audit_head(&tenant()).await.unwrap();
    let entries = f.store.audit_range(&tenant(), 1, 1000).await.unwrap();
    let checkpoints = f.store.checkpoints(&tenant()).await.unwrap();
    let keys = vec![key(CP_SEED).verifying_key()];
    let report = kakanai_control_plane::audit::verify(&tenant(), entries, &checkpoints, &keys);
    assert!(report.is_ok(), "{report:?}");
    assert_eq!(report.checkpoints_valid as usize, checkpoints.len());
    assert_eq!(checkpoints.iter().map(|c| c.seq).max(), Some(head.seq));
}

both_backends!("ingest_"; burst_of_good_and_bad_messages, store_batch_refuses_alone);

fn device_record(device: &str, n: u32) -> AuditRecord {
    AuditRecord {
        tenant: tenant().to_string(),
        at_ms: now_ms(),
        actor: Actor::Device(device.into()),
        action: "device.state".into(),
        resident: None,
        place: Place::Appliance(device.into()),
        outcome: "ok".into(),
        detail: serde_json::json!({ "n": n }),
    }
}

/// `Store::record_ingest`, the batch write under ingest: duplicates (stored before, or
/// twice in one batch) append nothing, a record the store refuses fails alone, and a
/// batch that cannot be written as a whole writes nothing.
async fn store_batch_refuses_alone(url: String) {
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
    let dev = ident("counter-01");
    let stored_before = [1u8; 16];
    assert!(store
        .record_message(&tenant(), &dev, stored_before, now_ms())
        .await
        .unwrap());
    let mut foreign = device_record("counter-01", 3);
    foreign.tenant = "city-b".into();
    let batch = vec![
        (
            tenant(),
            dev.clone(),
            Some([2u8; 16]),
            Some(device_record("counter-01", 1)),
        ),
        (
            tenant(),
            dev.clone(),
            Some(stored_before),
            Some(device_record("counter-01", 2)),
        ),
        // An audit record of another tenant under this tenant's message: refused alone.
        (tenant(), dev.clone(), Some([3u8; 16]), Some(foreign)),
        (
            tenant(),
            dev.clone(),
            Some([2u8; 16]),
            Some(device_record("counter-01", 4)),
        ),
        (
            tenant(),
            dev.clone(),
            None,
            Some(device_record("counter-01", 5)),
        ),
        (tenant(), dev.clone(), Some([4u8; 16]), None),
    ];
    let k = key(0x11);
    let windows = vec![
        (tenant(), kid(&k), vec![1u8]),
        (tenant(), kid(&k), vec![2u8]),
    ];
    let results = store
        .record_ingest(&batch, &windows, now_ms())
        .await
        .unwrap();
    let summary: Vec<_> = results.iter().map(|r| r.as_ref().ok().copied()).collect();
    assert_eq!(
        summary,
        vec![
            Some(true),
            Some(false),
            None,
            Some(false),
            Some(true),
            Some(true)
        ]
    );
    assert_eq!(
        store.load_replay_window(&tenant(), &kid(&k)).await.unwrap(),
        Some(vec![2u8]),
        "the last state of a key stands"
    );
    // The refused message was not recorded: it can be acted on when it comes again.
    assert!(store
        .record_message(&tenant(), &dev, [3u8; 16], now_ms())
        .await
        .unwrap());
    let entries = store.audit_range(&tenant(), 1, 100).await.unwrap();
    let ns: Vec<_> = entries
        .iter()
        .map(|e| e.record.detail["n"].clone())
        .collect();
    assert_eq!(ns, vec![serde_json::json!(1), serde_json::json!(5)]);

    // An entry for a tenant that does not exist fails the batch, which writes nothing.
    let mut unknown = device_record("counter-01", 6);
    unknown.tenant = "city-z".into();
    let batch = vec![
        (
            tenant(),
            dev.clone(),
            Some([5u8; 16]),
            Some(device_record("counter-01", 7)),
        ),
        (ident("city-z"), dev.clone(), Some([6u8; 16]), Some(unknown)),
    ];
    assert!(store.record_ingest(&batch, &[], now_ms()).await.is_err());
    assert!(store
        .record_message(&tenant(), &dev, [5u8; 16], now_ms())
        .await
        .unwrap());
    assert_eq!(store.audit_head(&tenant()).await.unwrap().seq, 2);
    let report = kakanai_control_plane::audit::verify(
        &tenant(),
        store.audit_range(&tenant(), 1, 100).await.unwrap(),
        &[],
        &Vec::<VerifyingKey>::new(),
    );
    assert!(report.is_ok(), "{report:?}");
    store.close().await;
}

/// Hundreds of messages published back to back (so a worker takes many at once), with
/// forged, foreign, unknown-key and duplicate messages and RPCs among them: every
/// genuine message is acked once as accepted and audited once, every copy acked as a
/// duplicate, nothing refused is acked or stored, and the audit chain verifies.
async fn burst_of_good_and_bad_messages(url: String) {
    let f = fixture_on(Some(url)).await;
    let svc = f.running.service().clone();
    let (a, b, forger) = (key(0x11), key(0x12), key(0x66));
    let mut genuine = HashSet::new();
    let mut copies = HashSet::new();
    let mut rpcs = HashSet::new();
    let mut forged = HashSet::new();
    // A forged message far ahead first: had it moved A's window, every genuine
    // message after it would be refused as older than the window.
    let env = Envelope::new(50_000, now_ms(), state(0)).unwrap();
    let topic = Topic::up(&tenant(), &ident("counter-01"), Kind::DeviceState).unwrap();
    f.devices
        .publish(&topic, seal(&forger, &kid(&a), &topic, &env).unwrap())
        .await;
    forged.insert(env.id);
    for n in 1..=150u64 {
        for (k, device) in [(&a, "counter-01"), (&b, "counter-02")] {
            let (topic, env, bytes) = up(k, device, 2 * n, state(n as u32));
            f.devices.publish(&topic, bytes.clone()).await;
            genuine.insert(env.id);
            if n % 25 == 0 {
                // The appliance's re-send of a message not yet acked.
                f.devices.publish(&topic, bytes).await;
                copies.insert(env.id);
            }
        }
        match n % 30 {
            7 => {
                // Device B's key on device A's topic.
                let env = Envelope::new(2 * n + 1, now_ms(), state(999)).unwrap();
                let topic = Topic::up(&tenant(), &ident("counter-01"), Kind::DeviceState).unwrap();
                f.devices
                    .publish(&topic, seal(&b, &kid(&b), &topic, &env).unwrap())
                    .await;
                forged.insert(env.id);
            }
            13 => {
                // Signed by the forger under A's kid.
                let env = Envelope::new(2 * n + 1, now_ms(), state(998)).unwrap();
                let topic = Topic::up(&tenant(), &ident("counter-01"), Kind::DeviceState).unwrap();
                f.devices
                    .publish(&topic, seal(&forger, &kid(&a), &topic, &env).unwrap())
                    .await;
                forged.insert(env.id);
            }
            19 => {
                let req = RpcRequest::new::<Ping>(&format!("ping {n}")).unwrap();
                let env = Envelope::new(2 * n + 1, now_ms(), Body::RpcRequest(req))
                    .unwrap()
                    .expiring_at(now_ms() + 30_000);
                let (topic, env, bytes) = up_env(&b, "counter-02", env);
                f.devices.publish(&topic, bytes).await;
                rpcs.insert(env.id);
            }
            _ => {}
        }
    }

    // Every ack and answer, until each genuine message and RPC has its ack and each
    // copy its duplicate ack.
    let mut acks: HashMap<MessageId, Vec<AckStatus>> = HashMap::new();
    let mut answered = HashSet::new();
    let want = genuine.len() + copies.len() + rpcs.len();
    let mut got = 0;
    while got < want || answered.len() < rpcs.len() {
        let (_, env) = f.devices.next(|_, _| true).await;
        match env.body {
            Body::Ack(ack) => {
                for id in ack.ids() {
                    acks.entry(id).or_default().push(ack.status.clone());
                    got += 1;
                }
            }
            Body::RpcResponse(r) => {
                assert!(matches!(r.outcome, RpcOutcome::Ok(_)), "{:?}", r.outcome);
                answered.insert(env.correlation.unwrap());
            }
            other => panic!("unexpected {:?}", other.kind()),
        }
    }
    for id in &genuine {
        let mut expected = vec![AckStatus::Accepted];
        if copies.contains(id) {
            expected.push(AckStatus::Duplicate);
        }
        assert_eq!(acks.get(id), Some(&expected), "message {id}");
    }
    assert_eq!(answered, rpcs);
    for id in &rpcs {
        assert_eq!(acks.get(id), Some(&vec![AckStatus::Accepted]));
    }
    for id in &forged {
        assert!(!acks.contains_key(id), "a refused message was acked");
    }
    let extra = f.devices.nothing_for(Duration::from_millis(300)).await;
    assert!(extra.is_empty(), "unexpected: {extra:?}");

    let m = svc.metrics();
    assert_eq!(m.accepted_count("device-state"), genuine.len() as u64);
    assert_eq!(m.duplicate_count(), copies.len() as u64);
    assert_eq!(
        m.refused_count("bad-signature") + m.refused_count("unknown-key"),
        forged.len() as u64
    );
    assert_eq!(audit_count(&f.store, "device.state").await, genuine.len());
    assert_eq!(audit_count(&f.store, "rpc:ping").await, rpcs.len());
    // One chain, no fork or gap, whatever was written together.
    let entries = f.store.audit_range(&tenant(), 1, 10_000).await.unwrap();
    assert_eq!(entries.len(), genuine.len() + rpcs.len());
    let report =
        kakanai_control_plane::audit::verify(&tenant(), entries, &[], &Vec::<VerifyingKey>::new());
    assert!(report.is_ok(), "{report:?}");
    f.running.shutdown().await;
}
