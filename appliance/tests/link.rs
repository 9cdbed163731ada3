//! The appliance's signed link through a real Mosquitto broker, against a stand-in
//! control plane (an MQTT client holding the control plane's key and speaking the
//! protocol through `kakanai-protocol`).

// Test helpers outside #[test] functions are not covered by allow-unwrap-in-tests.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use kakanai_appliance::link::{self, Identity, LinkConfig, LinkError, LinkEvent, LinkHandle};
use kakanai_appliance::store::ApplianceStore;
use kakanai_hw::backoff::Backoff;
use kakanai_protocol::catalogue::{
    Ack, AckStatus, Body, DeviceClass, DeviceStateReport, DeviceStatus, Ping, PresenceState,
};
use kakanai_protocol::seal::seal;
use kakanai_protocol::{examples, Envelope, KeyId, Kind, MessageId, SigningKey, Topic};
use kakanai_test_peers::Mosquitto;
use tokio::sync::mpsc;

use common::*;

async fn start_link(
    port: u16,
    store: Arc<ApplianceStore>,
) -> (LinkHandle, mpsc::Receiver<LinkEvent>, u64) {
    start_link_with(port, store, Duration::from_secs(5)).await
}

async fn start_link_with(
    port: u16,
    store: Arc<ApplianceStore>,
    keep_alive: Duration,
) -> (LinkHandle, mpsc::Receiver<LinkEvent>, u64) {
    let (tenant, device) = ids();
    let key = device_key();
    let kid = KeyId::of_key(&key.verifying_key());
    let cp = cp_key();
    let config = LinkConfig {
        identity: Identity {
            tenant,
            device,
            key,
            kid,
            control_plane_keys: vec![(KeyId::of_key(&cp.verifying_key()), cp.verifying_key())],
        },
        broker_host: "127.0.0.1".into(),
        broker_port: port,
        keep_alive,
        backoff: Backoff::new(Duration::from_millis(100), Duration::from_secs(1), 0.5).unwrap(),
        software_version: "0.1.0-test".into(),
        devices: Vec::new(),
    };
    let (handle, events, boot) = link::start(config, store).await.unwrap();
    assert!(handle.wait_online(WAIT).await, "the link came online");
    (handle, events, boot)
}

fn state(n: u32) -> Body {
    Body::DeviceState(DeviceStateReport {
        id: format!("printer-{n}"),
        class: DeviceClass::Printer,
        status: DeviceStatus::Ready,
    })
}

async fn wait_outbox_empty(store: &ApplianceStore) {
    for _ in 0..200 {
        if store.pending_count().unwrap() == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "outbox still holds {} messages",
        store.pending_count().unwrap()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn birth_then_every_message_arrives_and_leaves_the_outbox_on_ack() {
    let broker = Mosquitto::start().unwrap();
    let cp = ControlPlane::start(broker.port(), true, false).await;
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(ApplianceStore::open(&dir.path().join("a.redb")).unwrap());
    let (link, _events, boot) = start_link(broker.port(), Arc::clone(&store)).await;
    assert_eq!(boot, 1);

    let birth = cp.next_of(Kind::Presence).await;
    let Body::Presence(p) = &birth.body else {
        unreachable!()
    };
    assert_eq!(p.state, PresenceState::Online);
    assert_eq!(p.boot_counter, 1);

    let mut sent = HashSet::new();
    for n in 0..100 {
        sent.insert(link.send(state(n)).await.unwrap());
    }
    let mut got = HashSet::new();
    while got.len() < sent.len() {
        let env = cp.next_of(Kind::DeviceState).await;
        got.insert(env.id);
    }
    assert_eq!(got, sent);
    wait_outbox_empty(&store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unacked_messages_are_sent_again_after_a_restart() {
    let broker = Mosquitto::start().unwrap();
    let cp = ControlPlane::start(broker.port(), false, false).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.redb");
    let mut sent = HashSet::new();
    {
        let store = Arc::new(ApplianceStore::open(&path).unwrap());
        let (link, _events, _) = start_link(broker.port(), Arc::clone(&store)).await;
        for n in 0..20 {
            sent.insert(link.send(state(n)).await.unwrap());
        }
        let mut seen = 0;
        while seen < 20 {
            cp.next_of(Kind::DeviceState).await;
            seen += 1;
        }
        assert_eq!(store.pending_count().unwrap(), 20, "nothing acked yet");
        link.shutdown(1).await.unwrap();
    }
    // Let the old link task finish and release the store file.
    tokio::time::sleep(Duration::from_millis(300)).await;
    cp.auto_ack.store(true, Ordering::SeqCst);
    let store = Arc::new(ApplianceStore::open(&path).unwrap());
    let (_link, _events, boot) = start_link(broker.port(), Arc::clone(&store)).await;
    assert_eq!(boot, 2);
    let mut again = HashSet::new();
    while again.len() < sent.len() {
        let env = cp.next_of(Kind::DeviceState).await;
        again.insert(env.id);
    }
    assert_eq!(again, sent, "the same messages, by id");
    wait_outbox_empty(&store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_ack_naming_several_messages_removes_each_of_them() {
    let broker = Mosquitto::start().unwrap();
    let cp = ControlPlane::start(broker.port(), false, false).await;
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(ApplianceStore::open(&dir.path().join("a.redb")).unwrap());
    let (link, mut events, _) = start_link(broker.port(), Arc::clone(&store)).await;
    let mut sent = Vec::new();
    for n in 0..6 {
        sent.push(link.send(state(n)).await.unwrap());
    }
    for _ in 0..6 {
        cp.next_of(Kind::DeviceState).await;
    }
    // The control plane acks five of them with one signed message; the sixth stays.
    let ack = Ack {
        of: sent[0],
        status: AckStatus::Accepted,
        also: sent[1..5].to_vec(),
    };
    cp.command_with(Body::Ack(ack), Some(sent[0]), None).await;
    let mut acked = HashSet::new();
    while acked.len() < 5 {
        let e = tokio::time::timeout(WAIT, events.recv())
            .await
            .expect("a link event")
            .unwrap();
        if let LinkEvent::Acked(id) = e {
            acked.insert(id);
        }
    }
    assert_eq!(acked, sent[..5].iter().copied().collect::<HashSet<_>>());
    assert_eq!(store.pending_count().unwrap(), 1, "the one not named stays");
}

async fn next_event(events: &mut mpsc::Receiver<LinkEvent>) -> LinkEvent {
    loop {
        let e = tokio::time::timeout(WAIT, events.recv())
            .await
            .expect("a link event")
            .unwrap();
        if !matches!(e, LinkEvent::Online | LinkEvent::Acked(_)) {
            return e;
        }
    }
}

async fn ack_for(cp: &ControlPlane, id: MessageId) -> AckStatus {
    loop {
        let env = cp.next_of(Kind::Ack).await;
        if let Body::Ack(ack) = env.body {
            if ack.covers(&id) {
                return ack.status;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_run_once_and_forged_replayed_or_expired_ones_are_refused() {
    let broker = Mosquitto::start().unwrap();
    let cp = ControlPlane::start(broker.port(), false, false).await;
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(ApplianceStore::open(&dir.path().join("a.redb")).unwrap());
    let (_link, mut events, _) = start_link(broker.port(), Arc::clone(&store)).await;
    let job = examples::body(Kind::PrintJob);
    let later = now_ms() + 60_000;

    let (env, bytes) = cp.command_with(job.clone(), None, Some(later)).await;
    match next_event(&mut events).await {
        LinkEvent::Command(got) => assert_eq!(got.id, env.id),
        other => panic!("{other:?}"),
    }
    assert_eq!(ack_for(&cp, env.id).await, AckStatus::Accepted);

    // The same bytes again: the replay window refuses them, nothing runs.
    let (tenant, device) = ids();
    let topic = Topic::down(&tenant, &device, Kind::PrintJob).unwrap();
    cp.publish(&topic, bytes).await;
    assert!(matches!(
        next_event(&mut events).await,
        LinkEvent::Rejected { .. }
    ));

    // The same command re-sent (same id, new sequence number): acknowledged as a
    // duplicate, not run again.
    let (_, mut again, _) = cp.seal_down(job.clone(), None, Some(later));
    again.id = env.id;
    let key = cp_key();
    let resent = seal(&key, &KeyId::of_key(&key.verifying_key()), &topic, &again).unwrap();
    cp.publish(&topic, resent).await;
    assert_eq!(ack_for(&cp, env.id).await, AckStatus::Duplicate);

    // Expired, and without an expiry.
    let (expired, _) = cp.command_with(job.clone(), None, Some(now_ms() - 1)).await;
    assert!(
        matches!(next_event(&mut events).await, LinkEvent::Rejected { reason } if reason == "expired")
    );
    assert!(matches!(
        ack_for(&cp, expired.id).await,
        AckStatus::Rejected { .. }
    ));
    let (no_expiry, _) = cp.command_with(job.clone(), None, None).await;
    assert!(matches!(
        next_event(&mut events).await,
        LinkEvent::Rejected { .. }
    ));
    assert!(matches!(
        ack_for(&cp, no_expiry.id).await,
        AckStatus::Rejected { .. }
    ));

    // Forged (another key), and garbage: refused, never run.
    let forger = SigningKey::from_seed(&[0x66; 32]).unwrap();
    let mut forged_env = Envelope::new(10_000, now_ms(), job).unwrap();
    forged_env.expires_ms = Some(later);
    let forged = seal(
        &forger,
        &KeyId::of_key(&cp_key().verifying_key()),
        &topic,
        &forged_env,
    )
    .unwrap();
    cp.publish(&topic, forged).await;
    assert!(matches!(
        next_event(&mut events).await,
        LinkEvent::Rejected { .. }
    ));
    cp.publish(&topic, b"\xd2\x84garbage".to_vec()).await;
    assert!(matches!(
        next_event(&mut events).await,
        LinkEvent::Rejected { .. }
    ));
    cp.publish(&topic, vec![0u8; 260 * 1024]).await;
    assert!(matches!(
        next_event(&mut events).await,
        LinkEvent::Rejected { .. }
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rpc_answers_arrive_and_silence_times_out() {
    let broker = Mosquitto::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(ApplianceStore::open(&dir.path().join("a.redb")).unwrap());
    {
        let _cp = ControlPlane::start(broker.port(), true, true).await;
        let (link, _events, _) = start_link(broker.port(), Arc::clone(&store)).await;
        let answer = link
            .rpc::<Ping>(&"こんにちは".to_owned(), Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!(answer.unwrap(), "こんにちは");
        link.shutdown(1).await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let _silent = ControlPlane::start(broker.port(), false, false).await;
    let (link, _events, _) = start_link(broker.port(), store).await;
    let started = std::time::Instant::now();
    let err = link
        .rpc::<Ping>(&"hello".to_owned(), Duration::from_millis(500))
        .await
        .unwrap_err();
    assert!(matches!(err, LinkError::Timeout(_)), "{err}");
    assert!(started.elapsed() < Duration::from_secs(5));
}

async fn receive_all(cp: &ControlPlane, sent: &HashSet<MessageId>) {
    let mut got = HashSet::new();
    while !sent.is_subset(&got) {
        got.insert(cp.next_of(Kind::DeviceState).await.id);
    }
}

/// Whether the link reports going offline within `timeout`.
async fn went_offline(events: &mut mpsc::Receiver<LinkEvent>, timeout: Duration) -> bool {
    let offline = async {
        while let Some(event) = events.recv().await {
            if matches!(event, LinkEvent::Offline { .. }) {
                return true;
            }
        }
        false
    };
    tokio::time::timeout(timeout, offline)
        .await
        .unwrap_or(false)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_sent_during_a_network_cut_arrive_after_it() {
    let broker = Mosquitto::start().unwrap();
    let proxy =
        kakanai_test_peers::TcpProxy::start(([127, 0, 0, 1], broker.port()).into()).unwrap();
    let cp = ControlPlane::start(broker.port(), true, false).await;
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(ApplianceStore::open(&dir.path().join("a.redb")).unwrap());
    let (link, mut events, _) = start_link(proxy.port(), Arc::clone(&store)).await;

    proxy.cut();
    assert!(
        went_offline(&mut events, WAIT).await,
        "the link noticed the cut"
    );
    let mut sent = HashSet::new();
    for n in 0..50 {
        // Sending never fails or blocks because the network is down.
        sent.insert(link.send(state(n)).await.unwrap());
    }
    assert!(store.pending_count().unwrap() >= 50);
    // The fault: the network is gone for 30 s.
    tokio::time::sleep(Duration::from_secs(30)).await;
    proxy.restore();
    assert!(link.wait_online(WAIT).await);
    receive_all(&cp, &sent).await;
    wait_outbox_empty(&store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_half_open_connection_is_detected_and_replaced() {
    let broker = Mosquitto::start().unwrap();
    let proxy =
        kakanai_test_peers::TcpProxy::start(([127, 0, 0, 1], broker.port()).into()).unwrap();
    let cp = ControlPlane::start(broker.port(), true, false).await;
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(ApplianceStore::open(&dir.path().join("a.redb")).unwrap());
    let (link, mut events, _) =
        start_link_with(proxy.port(), Arc::clone(&store), Duration::from_secs(1)).await;

    // Nothing comes back any more, but no socket closes: only keep-alive can tell.
    proxy.blackhole();
    let mut sent = HashSet::new();
    for n in 0..10 {
        sent.insert(link.send(state(n)).await.unwrap());
    }
    assert!(
        went_offline(&mut events, Duration::from_secs(15)).await,
        "keep-alive detected the half-open connection"
    );
    proxy.restore();
    assert!(link.wait_online(WAIT).await);
    receive_all(&cp, &sent).await;
    wait_outbox_empty(&store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_messages_queued_during_an_outage_all_arrive() {
    // A broker drops QoS 1 messages beyond `max_queued_messages` (default 1000) for
    // a subscriber that falls behind; the deployment guide sets it unlimited, and so
    // does this test (the appliance's stale re-send covers brokers that do not).
    let broker = Mosquitto::start_with_config("max_queued_messages 0\n").unwrap();
    let proxy =
        kakanai_test_peers::TcpProxy::start(([127, 0, 0, 1], broker.port()).into()).unwrap();
    let cp = ControlPlane::start(broker.port(), true, false).await;
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(ApplianceStore::open(&dir.path().join("a.redb")).unwrap());
    let (link, mut events, _) = start_link(proxy.port(), Arc::clone(&store)).await;

    proxy.cut();
    assert!(went_offline(&mut events, WAIT).await);
    let mut sent = HashSet::new();
    for n in 0..10_000 {
        sent.insert(link.send(state(n)).await.unwrap());
    }
    assert_eq!(store.pending_count().unwrap(), 10_000);
    let restored = std::time::Instant::now();
    proxy.restore();
    let mut got = HashSet::new();
    while !sent.is_subset(&got) {
        let next =
            tokio::time::timeout(Duration::from_secs(60), cp.received.lock().await.recv()).await;
        match next {
            Ok(Some((_, env))) if env.kind() == Kind::DeviceState => {
                got.insert(env.id);
            }
            Ok(Some(_)) => {}
            _ => panic!(
                "stalled after {} of 10,000 (outbox {})",
                got.len(),
                store.pending_count().unwrap()
            ),
        }
    }
    let arrived = restored.elapsed();
    for _ in 0..1200 {
        if store.pending_count().unwrap() == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(store.pending_count().unwrap(), 0, "every message acked");
    println!(
        "drain after outage: 10,000 queued messages arrived {:?} after the network came back, all acked {:?} after",
        arrived,
        restored.elapsed()
    );
}
