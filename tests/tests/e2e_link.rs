//! The real appliance link (`kakanai_appliance::link`) and the real control-plane
//! service (`kakanai_control_plane::service`) talking through a real Mosquitto, with
//! the control plane on SQLite in a temporary directory.
//!
//! Also measures the RPC round trip appliance → control plane → appliance over
//! loopback and prints p50/p99 (`cargo test -p kakanai-tests --test e2e_link --
//! --nocapture`); the figure includes the control plane's key lookup, replay-window
//! save, de-duplication insert and audit append on SQLite for every call.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::*;

use std::sync::Arc;
use std::time::{Duration, Instant};

use kakanai_appliance::link::{self, LinkEvent, LinkHandle};
use kakanai_appliance::store::ApplianceStore;
use kakanai_control_plane::service::{self, BrokerConfig, RunningService, ServiceConfig};
use kakanai_control_plane::store::Store;
use kakanai_protocol::catalogue::{
    AckStatus, Body, DeviceClass, DeviceStateReport, DeviceStatus, Ping,
};
use kakanai_protocol::{examples, Kind};
use kakanai_test_peers::Mosquitto;
use tokio::sync::mpsc;

struct World {
    broker: Mosquitto,
    _dir: tempfile::TempDir,
    running: RunningService,
    store: Store,
    appliance_store: Arc<ApplianceStore>,
    link: LinkHandle,
    events: mpsc::Receiver<LinkEvent>,
}

async fn world() -> World {
    world_with("").await
}

/// `broker_extra`: extra mosquitto.conf lines.
async fn world_with(broker_extra: &str) -> World {
    let broker = Mosquitto::start_with_config(broker_extra).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (store, url) = store_with_device(dir.path()).await;
    let cp = cp_key();
    let config = ServiceConfig::new(
        dir.path().join("cp"),
        url,
        BrokerConfig::external(broker.host(), broker.port(), "cp-e2e").shared("kakanai"),
        cp,
        vec![tenant()],
    );
    let running = service::start(config, service::ServiceOptions::default())
        .await
        .unwrap();
    assert!(running.service().wait_subscribed(WAIT).await);

    let appliance_store =
        Arc::new(ApplianceStore::open(&dir.path().join("appliance.redb")).unwrap());
    let link_config = link_config(broker.port());
    let (link, events, boot) = link::start(link_config, Arc::clone(&appliance_store))
        .await
        .unwrap();
    assert_eq!(boot, 1);
    assert!(link.wait_online(WAIT).await);
    World {
        broker,
        _dir: dir,
        running,
        store,
        appliance_store,
        link,
        events,
    }
}

async fn wait_outbox_empty(store: &ApplianceStore) {
    for _ in 0..400 {
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

fn state(n: u32) -> Body {
    Body::DeviceState(DeviceStateReport {
        id: format!("printer-{n}"),
        class: DeviceClass::Printer,
        status: DeviceStatus::Ready,
    })
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn appliance_and_control_plane_through_mosquitto() {
    let mut w = world().await;
    let svc = w.running.service().clone();

    // Birth → the device is online in the store.
    let mut online = false;
    for _ in 0..200 {
        let d = w
            .store
            .get_device(&tenant(), &device())
            .await
            .unwrap()
            .unwrap();
        if d.online {
            assert_eq!(d.boot_counter, 1);
            assert_eq!(d.firmware.as_deref(), Some("0.1.0-e2e"));
            online = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(online, "the birth reached the store");

    // 200 reports → every one acked → the outbox is empty.
    let started = Instant::now();
    for n in 0..200 {
        w.link.send(state(n)).await.unwrap();
    }
    wait_outbox_empty(&w.appliance_store).await;
    println!(
        "200 device-state reports sent and acked in {:?}",
        started.elapsed()
    );
    assert_eq!(svc.metrics().accepted_count("device-state"), 200);

    // RPC round trip.
    let answer = w
        .link
        .rpc::<Ping>(&"こんにちは".to_owned(), Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(answer.unwrap(), "こんにちは");

    // A print job with an expiry → the appliance runs it → its ack reaches us.
    let job = examples::body(Kind::PrintJob);
    let id = svc
        .send_command(&tenant(), &device(), job, Duration::from_secs(60))
        .await
        .unwrap();
    let command = loop {
        let e = tokio::time::timeout(WAIT, w.events.recv())
            .await
            .expect("a link event")
            .unwrap();
        if let LinkEvent::Command(env) = e {
            break env;
        }
    };
    assert_eq!(command.id, id);
    assert!(command.expires_ms.is_some());
    assert_eq!(
        svc.wait_command_outcome(&id, WAIT).await.unwrap(),
        AckStatus::Accepted
    );
    // The appliance's ack went through its outbox too, and was acked in turn.
    wait_outbox_empty(&w.appliance_store).await;

    w.link.shutdown(1).await.unwrap();
    let mut offline = false;
    for _ in 0..200 {
        let d = w
            .store
            .get_device(&tenant(), &device())
            .await
            .unwrap()
            .unwrap();
        if !d.online {
            offline = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(offline, "the orderly offline presence reached the store");
    w.running.shutdown().await;
    drop(w.broker);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rpc_round_trip_latency_over_loopback() {
    // Small packets go out at once on the broker's side too (the control plane sets
    // TCP_NODELAY on its own connection).
    let w = world_with("set_tcp_nodelay true").await;
    // Warm-up: connections, caches, the first sequence block.
    for _ in 0..20 {
        w.link
            .rpc::<Ping>(&"warm".to_owned(), Duration::from_secs(5))
            .await
            .unwrap()
            .unwrap();
    }
    let n = 1_000;
    let mut took = Vec::with_capacity(n);
    let all = Instant::now();
    for i in 0..n {
        let t = Instant::now();
        let answer = w
            .link
            .rpc::<Ping>(&format!("ping {i}"), Duration::from_secs(5))
            .await
            .unwrap()
            .unwrap();
        took.push(t.elapsed());
        assert_eq!(answer, format!("ping {i}"));
    }
    let total = all.elapsed();
    took.sort();
    println!(
        "RPC ping round trip over loopback (appliance → Mosquitto → control plane on SQLite → appliance), {n} sequential calls: \
         p50 {:?}, p90 {:?}, p99 {:?}, max {:?}, {:.0} calls/s",
        percentile(&took, 0.50),
        percentile(&took, 0.90),
        percentile(&took, 0.99),
        took[n - 1],
        n as f64 / total.as_secs_f64()
    );
    assert_eq!(
        w.running.service().metrics().rpc_count("ping", "ok"),
        (n + 20) as u64
    );
    wait_outbox_empty(&w.appliance_store).await;
    w.running.shutdown().await;
}

/// The broker restarts and forgets everything (no persistence, like a crashed broker):
/// the appliance and the control plane reconnect and subscribe again by themselves,
/// what the appliance queued meanwhile arrives, nothing is stored twice, the device is
/// seen online again, and RPCs work.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_restart_loses_nothing_and_stores_nothing_twice() {
    let mut w = world().await;
    let svc = w.running.service().clone();
    for n in 0..100 {
        w.link.send(state(n)).await.unwrap();
    }
    wait_outbox_empty(&w.appliance_store).await;

    w.broker.stop();
    let mut offline = false;
    for _ in 0..200 {
        if !w.link.is_online() {
            offline = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(offline, "the link noticed the broker went away");
    // Staff keep working: reports queue in the outbox while the broker is down.
    for n in 100..200 {
        w.link.send(state(n)).await.unwrap();
    }
    assert!(w.appliance_store.pending_count().unwrap() >= 100);
    tokio::time::sleep(Duration::from_secs(2)).await;
    w.broker.start_again().unwrap();

    assert!(
        w.link.wait_online(Duration::from_secs(30)).await,
        "the link came back"
    );
    for _ in 0..1200 {
        if w.appliance_store.pending_count().unwrap() == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        w.appliance_store.pending_count().unwrap(),
        0,
        "every message acked"
    );
    assert_eq!(
        svc.metrics().accepted_count("device-state"),
        200,
        "each report stored exactly once"
    );
    // The birth after the restart puts the device online again.
    let mut online = false;
    for _ in 0..200 {
        let d = w
            .store
            .get_device(&tenant(), &device())
            .await
            .unwrap()
            .unwrap();
        if d.online {
            online = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(online, "the device is online again in the registry");
    let answer = w
        .link
        .rpc::<Ping>(&"再接続".to_owned(), Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(answer.unwrap(), "再接続");
    w.running.shutdown().await;
}
