//! One machine, one command: the control plane runs its own in-process broker
//! (rumqttd, `[broker] embedded = true`) and the real appliance link connects to it.
//! Checks what `service_embedded` does not: a command down to the appliance and its
//! ack back, and the appliance's signed will (offline presence) published by this
//! broker when the appliance disappears without a DISCONNECT.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::*;

use std::sync::Arc;
use std::time::Duration;

use kakanai_appliance::link::{self, LinkEvent};
use kakanai_appliance::store::ApplianceStore;
use kakanai_control_plane::service::{self, BrokerConfig, EmbeddedBrokerConfig, ServiceConfig};
use kakanai_protocol::catalogue::AckStatus;
use kakanai_protocol::{examples, Kind};
use kakanai_test_peers::free_port;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn command_and_will_through_the_embedded_broker() {
    let dir = tempfile::tempdir().unwrap();
    let (store, url) = store_with_device(dir.path()).await;

    let port = free_port();
    let cp = cp_key();
    let config = ServiceConfig::new(
        dir.path().join("cp"),
        url,
        BrokerConfig {
            embedded: Some(EmbeddedBrokerConfig {
                listen: format!("127.0.0.1:{port}").parse().unwrap(),
            }),
            ..BrokerConfig::external("127.0.0.1", port, "cp-e2e-embedded")
        },
        cp,
        vec![tenant()],
    );
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
    let link_config = link_config(port);
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
