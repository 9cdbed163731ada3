//! Several control-plane instances over one store and one broker (issue 5): with a
//! shared subscription they split the appliances' messages between them, every
//! message is stored and acknowledged exactly once, and when one instance stops the
//! other carries on, still refusing to store a re-sent message twice. Runs against a
//! real Mosquitto, on SQLite (one file, two instances) and on PostgreSQL.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[macro_use]
mod common;

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use kakanai_control_plane::model::TenantId;
use kakanai_control_plane::service::{self, BrokerConfig, RunningService, ServiceConfig};
use kakanai_control_plane::store::{AuditFilter, NewDevice, Store, Tenant};
use kakanai_protocol::catalogue::{
    Ack, AckStatus, Body, DeviceClass, DeviceStateReport, DeviceStatus,
};
use kakanai_protocol::seal::{seal, Opener};
use kakanai_protocol::topic::Ident;
use kakanai_protocol::{Envelope, KeyId, Kind, MessageId, SigningKey, Topic};
use kakanai_test_peers::Mosquitto;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use tokio::sync::mpsc;

both_backends!("inst_";
    two_instances_share_the_work,
    answers_reach_the_waiting_instance,
);

const DEVICE_SEED: u8 = 0x11;
const SEEDS: [u8; 2] = [0x31, 0x32];
/// Messages per round.
const N: u64 = 300;

fn tenant() -> TenantId {
    TenantId::new("city-a").unwrap()
}

fn key(n: u8) -> SigningKey {
    SigningKey::from_seed(&[n; 32]).unwrap()
}

fn kid(k: &SigningKey) -> KeyId {
    KeyId::of_key(&k.verifying_key())
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

fn write_key(path: &Path, k: &SigningKey) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, hex::encode(k.seed())).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

/// One instance: its own signing key, data directory and MQTT client id; the same
/// store, broker and shared-subscription group as the others.
async fn instance(n: usize, url: &str, broker: &Mosquitto, dir: &Path) -> RunningService {
    let data_dir = dir.join(format!("cp-{n}"));
    std::fs::create_dir_all(&data_dir).unwrap();
    let k = key(SEEDS[n]);
    write_key(&data_dir.join("cp.key"), &k);
    let config = ServiceConfig::new(
        data_dir,
        url.to_owned(),
        BrokerConfig::external(broker.host(), broker.port(), &format!("cp-instance-{n}"))
            .shared("kakanai"),
        k,
        vec![tenant()],
    );
    let running = service::start(config, service::ServiceOptions::default())
        .await
        .unwrap();
    assert!(
        running
            .service()
            .wait_subscribed(Duration::from_secs(10))
            .await
    );
    running
}

fn device_state(n: u64) -> Body {
    Body::DeviceState(DeviceStateReport {
        id: format!("printer-{n}"),
        class: DeviceClass::Printer,
        status: DeviceStatus::Ready,
    })
}

/// The appliance side: publishes sealed messages and counts the acks that come down,
/// each checked against the key of the instance that signed it.
struct Appliance {
    client: AsyncClient,
    acks: mpsc::UnboundedReceiver<(MessageId, AckStatus)>,
    key: SigningKey,
    topic: Topic,
}

impl Appliance {
    async fn start(port: u16) -> Self {
        let mut opts = MqttOptions::new("counter-01", "127.0.0.1", port);
        opts.set_max_packet_size(1024 * 1024, 1024 * 1024);
        let (client, mut eventloop) = AsyncClient::new(opts, 4096);
        client
            .subscribe("kakanai/v1/city-a/dev/counter-01/down/+", QoS::AtLeastOnce)
            .await
            .unwrap();
        let (tx, acks) = mpsc::unbounded_channel();
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        let answers = client.clone();
        tokio::spawn(async move {
            // Commands are acked as the appliance does, with sequence numbers above
            // any the tests send.
            let mut seq = 1_000_000;
            let ack_topic =
                Topic::up(&tenant(), &Ident::new("counter-01").unwrap(), Kind::Ack).unwrap();
            let trusted: Vec<_> = SEEDS.iter().map(|s| key(*s).verifying_key()).collect();
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
                        let opened = opener
                            .open(&p.payload, &topic, |_, k| {
                                trusted.iter().copied().find(|v| KeyId::of_key(v) == *k)
                            })
                            .expect("every message down is signed by one of the instances");
                        match opened.envelope.body {
                            Body::Ack(ack) => {
                                for id in ack.ids() {
                                    let _ = tx.send((id, ack.status.clone()));
                                }
                            }
                            Body::ConfigDesired(_) | Body::PrintJob(_) => {
                                seq += 1;
                                let ack = Ack::of(opened.envelope.id, AckStatus::Accepted);
                                let env = Envelope::new(seq, now_ms(), Body::Ack(ack)).unwrap();
                                let k = key(DEVICE_SEED);
                                let bytes = seal(&k, &kid(&k), &ack_topic, &env).unwrap();
                                answers
                                    .publish(ack_topic.to_string(), QoS::AtLeastOnce, false, bytes)
                                    .await
                                    .unwrap();
                            }
                            _ => {}
                        }
                    }
                    _ => {}
                }
            }
        });
        tokio::time::timeout(Duration::from_secs(10), ready_rx)
            .await
            .unwrap()
            .unwrap();
        let topic = Topic::up(
            &tenant(),
            &Ident::new("counter-01").unwrap(),
            Kind::DeviceState,
        )
        .unwrap();
        Self {
            client,
            acks,
            key: key(DEVICE_SEED),
            topic,
        }
    }

    /// Seals and publishes `env`; returns the bytes sent (to send them again).
    async fn send(&self, env: &Envelope) -> Vec<u8> {
        let bytes = seal(&self.key, &kid(&self.key), &self.topic, env).unwrap();
        self.resend(bytes.clone()).await;
        bytes
    }

    async fn resend(&self, bytes: Vec<u8>) {
        self.client
            .publish(self.topic.to_string(), QoS::AtLeastOnce, false, bytes)
            .await
            .unwrap();
    }

    /// Collects acks until every id in `ids` has one, then for a moment more (so a
    /// second ack of any of them would be seen); returns how many acks each id got
    /// and with which statuses.
    async fn acks_for(&mut self, ids: &[MessageId]) -> HashMap<MessageId, Vec<AckStatus>> {
        let mut got: HashMap<MessageId, Vec<AckStatus>> = HashMap::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        while !ids.iter().all(|id| got.contains_key(id)) {
            let (of, status) = tokio::time::timeout_at(deadline, self.acks.recv())
                .await
                .unwrap_or_else(|_| {
                    panic!(
                        "acks missing: {} of {}",
                        ids.iter().filter(|id| !got.contains_key(id)).count(),
                        ids.len()
                    )
                })
                .unwrap();
            got.entry(of).or_default().push(status);
        }
        let settle = tokio::time::Instant::now() + Duration::from_millis(1500);
        while let Ok(Some((of, status))) = tokio::time::timeout_at(settle, self.acks.recv()).await {
            got.entry(of).or_default().push(status);
        }
        got
    }
}

async fn stored(store: &Store) -> usize {
    let filter = AuditFilter {
        action_prefix: Some("device.state".into()),
        ..AuditFilter::default()
    };
    store
        .audit_search(&tenant(), &filter, 100_000)
        .await
        .unwrap()
        .len()
}

/// A store with the tenant and the appliance registered.
async fn setup(url: &str) -> Store {
    let store = Store::open(url).await.unwrap();
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
    let device = key(DEVICE_SEED);
    store
        .register_device(
            &tenant(),
            &NewDevice {
                id: Ident::new("counter-01").unwrap(),
                counter_name: "市民課 1番窓口".into(),
                location: "本庁舎1階".into(),
                kid: kid(&device),
                public_key: device.verifying_key(),
                firmware: None,
            },
            now_ms(),
        )
        .await
        .unwrap();
    store
}

async fn two_instances_share_the_work(url: String) {
    let broker = Mosquitto::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = setup(&url).await;
    let a = instance(0, &url, &broker, dir.path()).await;
    let b = instance(1, &url, &broker, dir.path()).await;
    let mut appliance = Appliance::start(broker.port()).await;

    // Round 1: both instances running.
    let mut sent = Vec::new();
    for seq in 1..=N {
        let env = Envelope::new(seq, now_ms(), device_state(seq)).unwrap();
        let bytes = appliance.send(&env).await;
        sent.push((env.id, bytes));
    }
    let ids: Vec<_> = sent.iter().map(|(id, _)| *id).collect();
    let acks = appliance.acks_for(&ids).await;
    for id in &ids {
        assert_eq!(acks[id], vec![AckStatus::Accepted], "one ack, accepted");
    }
    let (by_a, by_b) = (
        a.service().metrics().accepted_count("device-state"),
        b.service().metrics().accepted_count("device-state"),
    );
    assert_eq!(
        by_a + by_b,
        N,
        "each message handled by exactly one instance"
    );
    assert!(
        by_a > 0 && by_b > 0,
        "the shared subscription splits the work ({by_a} / {by_b})"
    );
    assert_eq!(stored(&store).await, N as usize);

    // One instance stops; the other takes everything, new and re-sent alike.
    a.shutdown().await;
    let mut round2 = Vec::new();
    for seq in N + 1..=2 * N {
        let env = Envelope::new(seq, now_ms(), device_state(seq)).unwrap();
        appliance.send(&env).await;
        round2.push(env.id);
    }
    // The outbox re-sends a few from round 1 whose acks it "lost".
    let resent: Vec<_> = sent.iter().take(20).cloned().collect();
    for (_, bytes) in &resent {
        appliance.resend(bytes.clone()).await;
    }
    let all: Vec<_> = round2
        .iter()
        .copied()
        .chain(resent.iter().map(|(id, _)| *id))
        .collect();
    let acks = appliance.acks_for(&all).await;
    for id in &round2 {
        assert_eq!(acks[id], vec![AckStatus::Accepted]);
    }
    for (id, _) in &resent {
        assert_eq!(
            acks[id],
            vec![AckStatus::Duplicate],
            "re-sent: acked, not stored"
        );
    }
    assert_eq!(
        b.service().metrics().accepted_count("device-state"),
        by_b + N,
        "the remaining instance took all of round 2"
    );
    assert_eq!(stored(&store).await, 2 * N as usize, "nothing stored twice");
    b.shutdown().await;
}

/// The broker hands an appliance's answer to whichever instance it likes; the
/// instance that sent the command and waits for the answer must still get it (a
/// print at the counter waits for the printer's acceptance this way).
async fn answers_reach_the_waiting_instance(url: String) {
    let broker = Mosquitto::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = setup(&url).await;
    let a = instance(0, &url, &broker, dir.path()).await;
    let b = instance(1, &url, &broker, dir.path()).await;
    let _appliance = Appliance::start(broker.port()).await;
    let device = Ident::new("counter-01").unwrap();

    let mut commands = Vec::new();
    for _ in 0..20 {
        let id = a
            .service()
            .send_command(
                &tenant(),
                &device,
                kakanai_protocol::examples::body(Kind::ConfigDesired),
                Duration::from_secs(60),
            )
            .await
            .unwrap();
        let status = a
            .service()
            .wait_command_outcome(&id, Duration::from_secs(10))
            .await
            .unwrap_or_else(|e| panic!("command {id}: {e}"));
        assert_eq!(status, AckStatus::Accepted);
        commands.push(id);
    }
    // Some of those acks went through the other instance, which kept them for A.
    let mut through_b = 0;
    for id in &commands {
        let kept = store
            .outcomes(&tenant(), &device, "command-ack", &id.to_string())
            .await
            .unwrap();
        through_b += usize::from(!kept.is_empty());
    }
    assert!(
        through_b > 0 && through_b < commands.len(),
        "the broker split the acks between the instances ({through_b} of 20 through B)"
    );

    // Housekeeping forgets them after a day, not before.
    let now = now_ms();
    assert_eq!(a.service().housekeep(now).await.unwrap().outcomes, 0);
    let later = a.service().housekeep(now + 25 * 3_600_000).await.unwrap();
    assert_eq!(later.outcomes as usize, through_b);
    a.shutdown().await;
    b.shutdown().await;
}
