//! Fleet operations on the real daemon, through a real Mosquitto and the stand-in
//! control plane: the `logs` operation brings back the recent log lines and never
//! the personal data that went through the appliance; `restart` is reported, then
//! the daemon stops in order with exit code 75 (which its systemd unit restarts),
//! and the same command replayed afterwards is acknowledged as a duplicate and not
//! carried out again.

// Test helpers outside #[test] functions are not covered by allow-unwrap-in-tests.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{now_ms, ControlPlane};
use kakanai_appliance::ops::RESTART_EXIT_CODE;
use kakanai_protocol::catalogue::{AckStatus, Body, Operation, OperationResult, OperationStatus};
use kakanai_protocol::{Envelope, Kind, MessageId};
use kakanai_test_peers::{Mosquitto, PtyScanner};

const DAEMON: &str = env!("CARGO_BIN_EXE_kakanai-appliance");

/// Personal data that goes through the appliance in these tests (invented): a
/// scanned code holding a name, an address and a 個人番号.
const NAME: &str = "見本花子";
const MY_NUMBER: &str = "123456789018";
const ADDRESS: &str = "架空県見本市本町１丁目";

struct Daemon {
    dir: tempfile::TempDir,
    config: PathBuf,
    http_port: u16,
}

impl Daemon {
    fn configure(broker_port: u16, extra: &str) -> Self {
        let c = common::DaemonConfig::write(broker_port, 0o600, extra);
        Self {
            dir: c.dir,
            config: c.path,
            http_port: c.http_port,
        }
    }

    /// Starts the daemon, its log going to `log` in the test directory.
    fn spawn(&self, log: &str) -> Child {
        let log = std::fs::File::create(self.dir.path().join(log)).unwrap();
        Command::new(DAEMON)
            .arg("--config")
            .arg(&self.config)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap()
    }

    fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.path().join(name)).unwrap()
    }

    async fn wait_online(&self) -> serde_json::Value {
        let port = self.http_port;
        tokio::task::spawn_blocking(move || {
            let deadline = Instant::now() + Duration::from_secs(15);
            loop {
                if let Some(h) = health(port) {
                    if h["link"] == "online" {
                        return h;
                    }
                }
                assert!(Instant::now() < deadline, "the daemon never came online");
                std::thread::sleep(Duration::from_millis(100));
            }
        })
        .await
        .unwrap()
    }
}

fn health(port: u16) -> Option<serde_json::Value> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    s.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    serde_json::from_str(text.split("\r\n\r\n").nth(1)?).ok()
}

/// Sends `operation` as a command valid for a minute.
async fn send(cp: &ControlPlane, operation: Operation) -> (Envelope, Vec<u8>) {
    cp.command_with(Body::Operation(operation), None, Some(now_ms() + 60_000))
        .await
}

/// The next result of command `id` at the control plane.
async fn result_of(cp: &ControlPlane, id: MessageId) -> OperationResult {
    loop {
        if let Body::OperationResult(r) = cp.next_of(Kind::OperationResult).await.body {
            if r.command_id == id {
                return r;
            }
        }
    }
}

/// Waits for the process to end, up to `within`.
async fn exit_code(mut child: Child, within: Duration) -> Option<i32> {
    tokio::task::spawn_blocking(move || {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status.code();
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_bring_back_recent_lines_and_no_personal_data() {
    let broker = Mosquitto::start().unwrap();
    let cp = ControlPlane::start(broker.port(), true, false).await;
    let scan_dir = tempfile::tempdir().unwrap();
    let mut scanner = PtyScanner::plug_in(&scan_dir.path().join("scanner")).unwrap();
    let extra = format!("\n[devices]\nscanner = \"{}\"\n", scanner.path().display());
    let daemon = Daemon::configure(broker.port(), &extra);
    let started = now_ms();
    let mut child = daemon.spawn("daemon.log");
    daemon.wait_online().await;

    // Personal data goes through the appliance: a scanned code reaches the control
    // plane (typed again until the appliance has the scanner open).
    let code = format!("{NAME} {ADDRESS} {MY_NUMBER}");
    let scanned = loop {
        scanner.scan(&code).unwrap();
        let got = tokio::time::timeout(Duration::from_secs(2), cp.next_of(Kind::Scan)).await;
        if let Ok(env) = got {
            break env;
        }
    };
    assert!(matches!(&scanned.body, Body::Scan(s) if s.data == code.as_bytes()));

    let (command, _) = send(
        &cp,
        Operation::Logs {
            since_ms: Some(started),
            max_lines: 500,
        },
    )
    .await;
    let result = result_of(&cp, command.id).await;
    assert_eq!(result.status, OperationStatus::Done, "{}", result.message);
    assert!(!result.logs.is_empty());
    // Recent lines of this run, oldest first, including the link coming up and the
    // command being carried out.
    assert!(result.logs.iter().all(|l| l.time_ms >= started));
    assert!(result.logs.windows(2).all(|w| w[0].time_ms <= w[1].time_ms));
    let texts: Vec<&str> = result.logs.iter().map(|l| l.text.as_str()).collect();
    assert!(
        texts.iter().any(|t| t.contains("appliance started")),
        "{texts:#?}"
    );
    assert!(
        texts.iter().any(|t| t.contains("link to the broker up")),
        "{texts:#?}"
    );
    assert!(
        texts
            .iter()
            .any(|t| t.contains("operation from the control plane") && t.contains("op=logs")),
        "{texts:#?}"
    );
    assert!(result
        .logs
        .iter()
        .all(|l| !l.level.is_empty() && !l.target.is_empty()));
    let everything = serde_json::to_string(&result.logs).unwrap();
    for secret in [NAME, MY_NUMBER, ADDRESS, "見本"] {
        assert!(!everything.contains(secret), "the logs carry {secret}");
    }

    // A bounded request: only the newest lines.
    let (command, _) = send(
        &cp,
        Operation::Logs {
            since_ms: None,
            max_lines: 2,
        },
    )
    .await;
    let result = result_of(&cp, command.id).await;
    assert_eq!(result.logs.len(), 2);
    assert!(result.truncated);

    // Out of bounds: refused with the reason, nothing else happens.
    let (command, _) = send(
        &cp,
        Operation::Logs {
            since_ms: None,
            max_lines: 0,
        },
    )
    .await;
    let result = result_of(&cp, command.id).await;
    assert_eq!(result.status, OperationStatus::Failed);
    assert!(result.message.contains("max_lines"), "{}", result.message);
    assert!(result.logs.is_empty());

    assert!(child.try_wait().unwrap().is_none(), "the daemon stopped");
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(!daemon.log("daemon.log").contains(MY_NUMBER));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_reports_then_exits_75_and_a_replay_is_not_run_again() {
    let broker = Mosquitto::start().unwrap();
    let cp: Arc<ControlPlane> = ControlPlane::start(broker.port(), true, false).await;
    let daemon = Daemon::configure(broker.port(), "");
    let child = daemon.spawn("boot1.log");
    assert_eq!(daemon.wait_online().await["boot_counter"], 1);

    let (command, bytes) = send(
        &cp,
        Operation::Restart {
            reason: "central IT: test".into(),
        },
    )
    .await;
    let exited = tokio::spawn(exit_code(child, Duration::from_secs(30)));
    let result = result_of(&cp, command.id).await;
    assert_eq!(result.status, OperationStatus::Done);
    // The report reached the control plane, and then the daemon stopped in order
    // with the code systemd restarts on.
    assert_eq!(
        exited.await.unwrap(),
        Some(i32::from(RESTART_EXIT_CODE)),
        "{}",
        daemon.log("boot1.log")
    );
    let log = daemon.log("boot1.log");
    assert!(log.contains("restarting on the control plane"), "{log}");
    assert!(log.contains("stopping"), "{log}");

    // What systemd does: start it again.
    let mut child = daemon.spawn("boot2.log");
    assert_eq!(daemon.wait_online().await["boot_counter"], 2);
    // The same signed command once more (a broker or control plane re-sending it).
    let topic =
        kakanai_protocol::Topic::down(&common::ids().0, &common::ids().1, Kind::Operation).unwrap();
    cp.publish(&topic, bytes).await;
    let ack = loop {
        let env = cp.next_of(Kind::Ack).await;
        match env.body {
            // The first boot's "accepted" ack may come again from the outbox (the
            // stand-in does not ack acks); the answer to the replay is a duplicate.
            Body::Ack(a) if a.of == command.id && a.status != AckStatus::Accepted => break a,
            _ => {}
        }
    };
    assert_eq!(ack.status, AckStatus::Duplicate);
    // Not carried out again: no second result, and the daemon keeps running.
    let again = tokio::time::timeout(Duration::from_secs(3), result_of(&cp, command.id)).await;
    assert!(again.is_err(), "the replayed restart was carried out");
    assert!(
        child.try_wait().unwrap().is_none(),
        "the daemon stopped again"
    );
    assert_eq!(health(daemon.http_port).unwrap()["boot_counter"], 2);
    child.kill().unwrap();
    child.wait().unwrap();
}
