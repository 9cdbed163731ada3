//! The appliance's link to the control plane, end to end: the real link
//! (`kakanai_appliance::link`, redb outbox), a real Mosquitto behind a TCP proxy that
//! can cut the network, and the real control-plane service on SQLite.
//!
//! - **Start to online**: `link::start` until the birth is acknowledged by the broker
//!   (store open, boot counter, TCP + MQTT connect, subscriptions).
//! - **Throughput**: 10,000 device-state reports queued as fast as the outbox takes
//!   them, each durably written before it is sent, until the control plane has
//!   acknowledged every one (verified, stored, acked) and the outbox is empty.
//! - **Drain after an outage**: the network is cut for `KAKANAI_BENCH_OUTAGE_S`
//!   seconds (default 600: ten minutes), 10,000 reports are queued during it, then the
//!   network comes back; the time until all are acknowledged. The reconnect backoff is
//!   the daemon's (0.5 s doubling to 30 s, ±50 % jitter), so the figure includes the
//!   wait for the next attempt, as at a real counter.
//!
//! Run: `cargo bench -p kakanai-tests --bench link` (or with
//! `KAKANAI_BENCH_OUTAGE_S=30` for a quick run).

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../tests/common/mod.rs"]
mod common;
use common::*;

use std::sync::Arc;
use std::time::{Duration, Instant};

use kakanai_appliance::link::{self, LinkHandle};
use kakanai_appliance::store::ApplianceStore;
use kakanai_control_plane::service::{self, BrokerConfig, ServiceConfig};
use kakanai_hw::backoff::Backoff;
use kakanai_protocol::catalogue::{Body, DeviceClass, DeviceStateReport, DeviceStatus};
use kakanai_test_peers::{Mosquitto, TcpProxy};

const MESSAGES: u32 = 10_000;

fn state(n: u32) -> Body {
    Body::DeviceState(DeviceStateReport {
        id: format!("printer-{n}"),
        class: DeviceClass::Printer,
        status: DeviceStatus::Ready,
    })
}

async fn drained(store: &ApplianceStore, limit: Duration) -> Duration {
    let started = Instant::now();
    while store.pending_count().unwrap() > 0 {
        assert!(
            started.elapsed() < limit,
            "outbox still holds {}",
            store.pending_count().unwrap()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    started.elapsed()
}

async fn queue(link: &LinkHandle, from: u32, n: u32) {
    for i in from..from + n {
        link.send(state(i)).await.unwrap();
    }
}

fn main() {
    let outage = Duration::from_secs(
        std::env::var("KAKANAI_BENCH_OUTAGE_S")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(600),
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        // A broker set up as the deployment guide says (no per-client queue limit).
        let broker = Mosquitto::start_with_config("max_queued_messages 0\n").unwrap();
        let proxy = TcpProxy::start(([127, 0, 0, 1], broker.port()).into()).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let (_store, url) = store_with_device(dir.path()).await;
        let cp = cp_key();
        let config = ServiceConfig::new(
            dir.path().join("cp"),
            url,
            BrokerConfig::external(broker.host(), broker.port(), "cp-bench"),
            cp,
            vec![tenant()],
        );
        let running = service::start(config, service::ServiceOptions::default())
            .await
            .unwrap();
        assert!(running.service().wait_subscribed(WAIT).await);

        let mut link_config = link_config(proxy.port());
        link_config.keep_alive = Duration::from_secs(15);
        link_config.backoff =
            Backoff::new(Duration::from_millis(500), Duration::from_secs(30), 0.5).unwrap();
        let started = Instant::now();
        let appliance =
            Arc::new(ApplianceStore::open(&dir.path().join("appliance.redb")).unwrap());
        let (link, _events, _) = link::start(link_config, Arc::clone(&appliance))
            .await
            .unwrap();
        assert!(link.wait_online(WAIT).await);
        println!("start to online: {:?}", started.elapsed());

        let started = Instant::now();
        queue(&link, 0, MESSAGES).await;
        let queued = started.elapsed();
        drained(&appliance, Duration::from_secs(300)).await;
        let all = started.elapsed();
        println!(
            "throughput: {MESSAGES} reports queued durably in {queued:?} ({:.0}/s), all acknowledged after {all:?} ({:.0}/s end to end)",
            f64::from(MESSAGES) / queued.as_secs_f64(),
            f64::from(MESSAGES) / all.as_secs_f64()
        );

        proxy.cut();
        let cut = Instant::now();
        // Staff keep working through the outage: the reports arrive spread over it.
        let step = outage / 100;
        for k in 0..100 {
            queue(&link, MESSAGES * (k + 1), MESSAGES / 100).await;
            tokio::time::sleep_until((cut + step * (k + 1)).into()).await;
        }
        assert_eq!(appliance.pending_count().unwrap(), u64::from(MESSAGES));
        proxy.restore();
        let restored = Instant::now();
        assert!(link.wait_online(Duration::from_secs(120)).await);
        let reconnected = restored.elapsed();
        drained(&appliance, Duration::from_secs(600)).await;
        let took = restored.elapsed();
        println!(
            "drain after a {outage:?} outage: {MESSAGES} queued reports all acknowledged {took:?} after the network came back \
             ({reconnected:?} until the next reconnect attempt succeeded, then {:?} to drain)",
            took - reconnected
        );
        let accepted = running.service().metrics().accepted_count("device-state");
        println!("control plane accepted {accepted} reports (expected {})", 2 * MESSAGES);
        assert_eq!(accepted, u64::from(2 * MESSAGES));
        running.shutdown().await;
    });
}
