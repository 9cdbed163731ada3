//! Central IT's operations end to end: the real control-plane service (SQLite, its
//! operations socket — the path `kakanai-control-plane device logs|restart` takes),
//! a real Mosquitto, and the appliance's real link and `ops` module. The logs come
//! back and are audited without their text; a restart is reported, and the service
//! sees the appliance back online with the next boot; a request that cannot be
//! carried out says why and sends nothing.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::*;

use std::path::PathBuf;
use std::sync::Arc;

use kakanai_appliance::link::{self, LinkEvent, LinkHandle};
use kakanai_appliance::ops::{LogRing, Operations};
use kakanai_appliance::store::ApplianceStore;
use kakanai_control_plane::model::Actor;
use kakanai_control_plane::service::operations::{
    request, serve_socket, socket_path, SocketRequest, SocketResponse,
};
use kakanai_control_plane::service::{self, BrokerConfig, RunningService, ServiceConfig};
use kakanai_control_plane::store::{AuditFilter, Store};
use kakanai_protocol::catalogue::{Body, LogLine, Operation, OperationStatus};
use kakanai_test_peers::Mosquitto;

struct World {
    broker: Mosquitto,
    _dir: tempfile::TempDir,
    running: RunningService,
    store: Store,
    socket: PathBuf,
    _stop: tokio::sync::watch::Sender<bool>,
    appliance_store: Arc<ApplianceStore>,
    logs: LogRing,
}

/// The appliance as its daemon runs it: operations from the link's commands.
struct Appliance {
    link: LinkHandle,
    boot: u64,
    ops: Operations,
}

async fn world() -> World {
    let broker = Mosquitto::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (store, url) = store_with_device(dir.path()).await;
    let cp = cp_key();
    let data_dir = dir.path().join("cp");
    let config = ServiceConfig::new(
        data_dir.clone(),
        url,
        BrokerConfig::external(broker.host(), broker.port(), "cp-ops"),
        cp,
        vec![tenant()],
    );
    let running = service::start(config, service::ServiceOptions::default())
        .await
        .unwrap();
    assert!(running.service().wait_subscribed(WAIT).await);
    let socket = socket_path(&data_dir);
    let (stop, stopped) = tokio::sync::watch::channel(false);
    serve_socket(running.service().clone(), socket.clone(), stopped)
        .await
        .unwrap();
    let appliance_store =
        Arc::new(ApplianceStore::open(&dir.path().join("appliance.redb")).unwrap());
    World {
        broker,
        _dir: dir,
        running,
        store,
        socket,
        _stop: stop,
        appliance_store,
        logs: LogRing::new(100),
    }
}

impl World {
    /// Starts the appliance's link (counting a boot) and carries out operation
    /// commands as the daemon does.
    async fn start_appliance(&self) -> Appliance {
        let (link, mut events, boot) = link::start(
            link_config(self.broker.port()),
            Arc::clone(&self.appliance_store),
        )
        .await
        .unwrap();
        assert!(link.wait_online(WAIT).await);
        let ops = Operations::new(link.clone(), self.logs.clone());
        let for_commands = ops.clone();
        tokio::spawn(async move {
            while let Some(event) = events.recv().await {
                if let LinkEvent::Command(envelope) = event {
                    if let Body::Operation(op) = envelope.body {
                        let ops = for_commands.clone();
                        tokio::spawn(async move { ops.execute(envelope.id, op).await });
                    }
                }
            }
        });
        Appliance { link, boot, ops }
    }

    fn ask(&self, operation: Operation) -> SocketRequest {
        SocketRequest {
            tenant: tenant().to_string(),
            device: device().to_string(),
            operation,
            by: "central-it".into(),
            wait_s: 20,
        }
    }

    async fn audit(&self, action: &str) -> Vec<kakanai_control_plane::audit::AuditEntry> {
        let filter = AuditFilter {
            action_prefix: Some(action.into()),
            ..AuditFilter::default()
        };
        self.store
            .audit_search(&tenant(), &filter, 100)
            .await
            .unwrap()
    }
}

fn line(n: i64, text: &str) -> LogLine {
    LogLine {
        time_ms: now_ms() + n,
        level: "INFO".into(),
        target: "kakanai_appliance::link".into(),
        text: text.into(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_come_back_through_the_service_and_are_audited_without_their_text() {
    let w = world().await;
    let _appliance = w.start_appliance().await;
    assert!(wait_online_in_store(&w.store, true).await);
    for n in 0..30 {
        w.logs
            .push(line(n, &format!("line {n} printer state ready")));
    }

    let answer = request(
        &w.socket,
        &w.ask(Operation::Logs {
            since_ms: None,
            max_lines: 10,
        }),
    )
    .await
    .unwrap();
    let SocketResponse::Ok(outcome) = answer else {
        panic!("{answer:?}")
    };
    assert_eq!(outcome.result.status, OperationStatus::Done);
    let texts: Vec<_> = outcome.result.logs.iter().map(|l| l.text.clone()).collect();
    assert_eq!(texts.len(), 10);
    assert_eq!(texts[0], "line 20 printer state ready");
    assert_eq!(texts[9], "line 29 printer state ready");
    assert!(outcome.result.truncated);

    // Who asked, for which device; and what came back, without the lines.
    let asked = w.audit("device.operation").await;
    let sent: Vec<_> = asked
        .iter()
        .filter(|e| e.record.action == "device.operation")
        .collect();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].record.actor, Actor::Admin("central-it".into()));
    assert_eq!(sent[0].record.detail["device"], "counter-01");
    assert_eq!(sent[0].record.detail["op"], "logs");
    assert_eq!(
        sent[0].record.detail["command"],
        outcome.command.to_string()
    );
    let reported: Vec<_> = asked
        .iter()
        .filter(|e| e.record.action == "device.operation-result")
        .collect();
    assert_eq!(reported.len(), 1);
    assert_eq!(reported[0].record.detail["lines"], 10);
    assert!(!serde_json::to_string(&reported[0].record)
        .unwrap()
        .contains("printer state"));

    // Refused before anything is sent or audited: a bad request, an unknown
    // device, an operator name that is not one.
    let before = w.audit("device.operation").await.len();
    for (req, why) in [
        (
            w.ask(Operation::Logs {
                since_ms: None,
                max_lines: 0,
            }),
            "max_lines",
        ),
        (
            SocketRequest {
                device: "counter-99".into(),
                ..w.ask(Operation::Logs {
                    since_ms: None,
                    max_lines: 5,
                })
            },
            "not a registered device",
        ),
        (
            SocketRequest {
                by: "root; rm".into(),
                ..w.ask(Operation::Logs {
                    since_ms: None,
                    max_lines: 5,
                })
            },
            "--by",
        ),
    ] {
        match request(&w.socket, &req).await.unwrap() {
            SocketResponse::Error(e) => assert!(e.contains(why), "{e}"),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(w.audit("device.operation").await.len(), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_is_reported_and_the_appliance_comes_back_with_the_next_boot() {
    let w = world().await;
    let first = w.start_appliance().await;
    assert_eq!(first.boot, 1);
    assert!(wait_online_in_store(&w.store, true).await);

    let req = w.ask(Operation::Restart {
        reason: "test".into(),
    });
    let socket = w.socket.clone();
    let asked = tokio::spawn(async move { request(&socket, &req).await });

    // The appliance reports and asks its daemon to stop; the daemon stops in
    // order and systemd starts it again (here: a new link on the same store).
    tokio::time::timeout(WAIT, first.ops.restart_requested())
        .await
        .expect("the restart was asked for");
    first.link.shutdown(first.boot).await.unwrap();
    drop(first);
    let second = w.start_appliance().await;
    assert_eq!(second.boot, 2);

    let answer = asked.await.unwrap().unwrap();
    let SocketResponse::Ok(outcome) = answer else {
        panic!("{answer:?}")
    };
    assert_eq!(outcome.result.status, OperationStatus::Done);
    assert_eq!(outcome.back_online_boot, Some(2));
    let audited = w.audit("device.operation").await;
    assert!(audited
        .iter()
        .any(|e| e.record.detail["op"] == "restart" && e.record.detail["reason"] == "test"));

    // Offline: nothing is sent, and the operator is told.
    second.link.shutdown(second.boot).await.unwrap();
    assert!(wait_online_in_store(&w.store, false).await);
    let before = audited.len();
    let answer = request(
        &w.socket,
        &w.ask(Operation::Restart {
            reason: "again".into(),
        }),
    )
    .await
    .unwrap();
    match answer {
        SocketResponse::Error(e) => assert!(e.contains("offline"), "{e}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(w.audit("device.operation").await.len(), before);
    w.running.shutdown().await;
}
