//! The `kakanai-appliance` daemon as a process: configuration errors, health, and
//! presence through a real Mosquitto (birth, orderly stop, and the will after
//! `kill -9`), a burst cut by `kill -9`, and a full disk under the outbox.

// Test helpers outside #[test] functions are not covered by allow-unwrap-in-tests.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use kakanai_protocol::catalogue::{Body, PresenceState};
use kakanai_protocol::{cose, Envelope, SigningKey};
use kakanai_test_peers::Mosquitto;

const DAEMON: &str = env!("CARGO_BIN_EXE_kakanai-appliance");
const TOPIC: &str = "kakanai/v1/city-a/dev/counter-01/presence";

fn device_key() -> SigningKey {
    SigningKey::from_seed(&[0x11; 32]).unwrap()
}

struct Setup {
    dir: tempfile::TempDir,
    http_port: u16,
}

fn write_config(broker_port: u16, key_mode: u32, extra: &str) -> (Setup, PathBuf) {
    let c = common::DaemonConfig::write(broker_port, key_mode, extra);
    (
        Setup {
            dir: c.dir,
            http_port: c.http_port,
        },
        c.path,
    )
}

fn spawn(config: &Path) -> Child {
    Command::new(DAEMON)
        .arg("--config")
        .arg(config)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
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

fn wait_online(port: u16) -> serde_json::Value {
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
}

/// The retained presence, verified with the device's key.
fn retained_presence(broker: &Mosquitto) -> PresenceState {
    let out = Command::new("mosquitto_sub")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &broker.port().to_string(),
            "-t",
            TOPIC,
            "-C",
            "1",
            "-W",
            "5",
            "-F",
            "%x",
        ])
        .output()
        .expect("mosquitto_sub (package mosquitto-clients)");
    let bytes = hex::decode(String::from_utf8(out.stdout).unwrap().trim()).unwrap();
    let public = device_key().verifying_key();
    let verified = cose::verify(&bytes, TOPIC.as_bytes(), |_| Some(public)).unwrap();
    match Envelope::decode(&verified.payload).unwrap().body {
        Body::Presence(p) => p.state,
        other => panic!("{other:?}"),
    }
}

fn wait_presence(broker: &Mosquitto, want: PresenceState) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while retained_presence(broker) != want {
        assert!(Instant::now() < deadline, "presence never became {want:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn health_birth_orderly_stop_and_will_after_kill_9() {
    let broker = Mosquitto::start().unwrap();
    let (setup, config) = write_config(broker.port(), 0o600, "");
    let mut daemon = spawn(&config);
    let h = wait_online(setup.http_port);
    assert_eq!(h["boot_counter"], 1);
    assert_eq!(h["outbox_pending"], 0);
    wait_presence(&broker, PresenceState::Online);

    // SIGTERM: an orderly stop publishes "offline" itself.
    Command::new("kill")
        .arg(daemon.id().to_string())
        .status()
        .unwrap();
    let status = daemon.wait().unwrap();
    assert!(status.success(), "{status}");
    wait_presence(&broker, PresenceState::Offline);

    // Start again (boot 2), then kill -9: the broker publishes the signed will.
    let mut daemon = spawn(&config);
    assert_eq!(wait_online(setup.http_port)["boot_counter"], 2);
    wait_presence(&broker, PresenceState::Online);
    daemon.kill().unwrap();
    daemon.wait().unwrap();
    // The broker notices the dead connection after 1.5 × keep-alive (2 s).
    wait_presence(&broker, PresenceState::Offline);
    drop(setup.dir);
}

fn config_error(config: &Path) -> String {
    let out = Command::new(DAEMON)
        .arg("--config")
        .arg(config)
        .output()
        .unwrap();
    assert!(!out.status.success());
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn a_bad_configuration_is_refused_with_the_field_named() {
    let (_s, config) = write_config(1883, 0o644, "");
    assert!(config_error(&config).contains("chmod 600"));

    let (_s, config) = write_config(1883, 0o600, "colour = \"blue\"");
    assert!(config_error(&config).contains("colour"));

    let (s, config) = write_config(1883, 0o600, "");
    std::fs::remove_file(s.dir.path().join("device.key")).unwrap();
    assert!(config_error(&config).contains("device.key_file"));

    let (_s, config) = write_config(1883, 0o600, "");
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace("counter-01", "counter/01");
    std::fs::write(&config, text).unwrap();
    assert!(config_error(&config).contains("device.id"));

    let (_s, config) = write_config(1883, 0o600, "");
    let text = std::fs::read_to_string(&config).unwrap();
    let kid_line = text
        .lines()
        .find(|l| l.starts_with("kid"))
        .unwrap()
        .to_owned();
    std::fs::write(
        &config,
        text.replace(&kid_line, "kid = \"0000000000000000\""),
    )
    .unwrap();
    assert!(config_error(&config).contains("control_plane.keys.kid"));

    assert!(config_error(Path::new("/nonexistent/appliance.toml")).contains("cannot read"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_print_command_is_printed_and_its_outcome_reported() {
    use kakanai_protocol::catalogue::{Body, PrintState};
    use kakanai_protocol::{examples, Kind};
    let broker = Mosquitto::start().unwrap();
    let cp = common::ControlPlane::start(broker.port(), true, false).await;
    let spool = tempfile::tempdir().unwrap();
    let extra = format!("\n[devices]\nprinter = \"{}\"\n", spool.path().display());
    let (setup, config) = write_config(broker.port(), 0o600, &extra);
    let mut daemon = spawn(&config);
    let port = setup.http_port;
    tokio::task::spawn_blocking(move || wait_online(port))
        .await
        .unwrap();

    let job = examples::body(Kind::PrintJob);
    cp.command_with(job, None, Some(common::now_ms() + 60_000))
        .await;
    let status = loop {
        let env = cp.next_of(Kind::PrintStatus).await;
        if let Body::PrintStatus(s) = env.body {
            break s;
        }
    };
    assert_eq!(status.job_id, "job-1");
    assert!(
        matches!(status.state, PrintState::Completed { .. }),
        "{status:?}"
    );
    assert_eq!(std::fs::read_dir(spool.path()).unwrap().count(), 1);
    daemon.kill().unwrap();
    daemon.wait().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_a_burst_loses_nothing_that_was_queued() {
    use kakanai_protocol::Kind;
    use std::collections::HashSet;
    use std::io::BufRead;
    let broker = Mosquitto::start().unwrap();
    let cp = common::ControlPlane::start(broker.port(), false, false).await;
    let (setup, config) = write_config(broker.port(), 0o600, "");

    // A burst of 1,000 messages, killed with SIGKILL after 300 were durably queued.
    let mut burst = Command::new(DAEMON)
        .arg("--config")
        .arg(&config)
        .args(["--send-test-messages", "1000"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = burst.stdout.take().unwrap();
    let queued: HashSet<String> = tokio::task::spawn_blocking(move || {
        let mut ids = HashSet::new();
        for line in std::io::BufReader::new(stdout).lines() {
            let v: serde_json::Value = serde_json::from_str(&line.unwrap()).unwrap();
            ids.insert(v["queued"].as_str().unwrap().to_owned());
            if ids.len() == 300 {
                break;
            }
        }
        ids
    })
    .await
    .unwrap();
    burst.kill().unwrap();
    burst.wait().unwrap();
    assert_eq!(queued.len(), 300);

    // The daemon starts again and sends the outbox; the control plane acks now.
    cp.auto_ack.store(true, std::sync::atomic::Ordering::SeqCst);
    let mut daemon = spawn(&config);
    let mut seen = HashSet::new();
    while !queued.is_subset(&seen) {
        let env = cp.next_of(Kind::DeviceState).await;
        seen.insert(env.id.to_string());
    }
    let port = setup.http_port;
    let drained = tokio::task::spawn_blocking(move || {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if health(port).is_some_and(|h| h["outbox_pending"] == 0) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        false
    })
    .await
    .unwrap();
    assert!(drained, "the outbox drained after the restart");
    daemon.kill().unwrap();
    daemon.wait().unwrap();
}

/// A small tmpfs mounted over `dir` in a mount namespace of its own (so nothing
/// outside the test sees it, and it vanishes with the test): processes run in it
/// with [`Self::command`]. Needs the right to create mount namespaces (root, as in
/// CI); without it the test fails.
struct SmallDisk {
    holder: Child,
}

impl SmallDisk {
    fn mount(dir: &Path, size: &str) -> Self {
        let mut holder = Command::new("unshare")
            .args(["--mount", "--propagation", "private", "sh", "-c"])
            .arg(format!(
                "mount -t tmpfs -o size={size} tmpfs \"$0\" && echo ready && exec sleep 600"
            ))
            .arg(dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("unshare (util-linux) must be installed");
        let mut line = String::new();
        use std::io::BufRead as _;
        std::io::BufReader::new(holder.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        if line.trim() != "ready" {
            let mut err = String::new();
            holder
                .stderr
                .take()
                .unwrap()
                .read_to_string(&mut err)
                .unwrap();
            panic!("cannot mount a small tmpfs in a mount namespace: {err}");
        }
        Self { holder }
    }

    /// `program` run inside the namespace that sees the small disk.
    fn command(&self, program: &str) -> Command {
        let mut c = Command::new("nsenter");
        c.arg(format!("--mount=/proc/{}/ns/mnt", self.holder.id()))
            .arg(program);
        c
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = self.holder.kill();
        let _ = self.holder.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_refuses_new_messages_clearly_and_loses_none_already_queued() {
    use kakanai_protocol::Kind;
    use std::collections::HashSet;
    use std::io::BufRead;
    let broker = Mosquitto::start().unwrap();
    // The control plane does not acknowledge yet: the outbox only grows.
    let cp = common::ControlPlane::start(broker.port(), false, false).await;
    let (setup, config) = write_config(broker.port(), 0o600, "");
    let disk = SmallDisk::mount(&setup.dir.path().join("store"), "1m");

    // Queue until the disk is full: the last attempt is refused with a clear error.
    let out = disk
        .command(DAEMON)
        .arg("--config")
        .arg(&config)
        .args(["--send-test-messages", "100000"])
        .env("RUST_BACKTRACE", "0")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("the disk is full"), "{stderr}");
    let queued: HashSet<String> = std::io::BufReader::new(&out.stdout[..])
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(&l.unwrap()).unwrap();
            v["queued"].as_str().unwrap().to_owned()
        })
        .collect();
    assert!(
        queued.len() > 100,
        "only {} queued before full",
        queued.len()
    );

    // The daemon starts on the full disk and serves the counter's UI.
    let log = setup.dir.path().join("daemon.log");
    let mut daemon = disk
        .command(DAEMON)
        .arg("--config")
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let port = setup.http_port;
    let pending = tokio::task::spawn_blocking(move || wait_online(port)["outbox_pending"].clone())
        .await
        .unwrap();
    assert_eq!(pending, queued.len(), "everything queued is still there");

    // The control plane acknowledges again: every queued message arrives (sent again
    // by the outbox's stale re-send, 20 s after the unacknowledged first try) and the
    // outbox drains, although the disk is full.
    cp.auto_ack.store(true, std::sync::atomic::Ordering::SeqCst);
    let mut seen = HashSet::new();
    while !queued.is_subset(&seen) {
        let env = cp.next_of(Kind::DeviceState).await;
        seen.insert(env.id.to_string());
    }
    let drained = tokio::task::spawn_blocking(move || {
        let deadline = Instant::now() + Duration::from_secs(90);
        while Instant::now() < deadline {
            if health(port).is_some_and(|h| h["outbox_pending"] == 0) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        false
    })
    .await
    .unwrap();
    if !drained {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let tail: Vec<&str> = text.lines().rev().take(12).collect();
        panic!(
            "the outbox did not drain ({:?} left; {} acks applied); last log lines: {tail:#?}",
            health(port).map(|h| h["outbox_pending"].clone()),
            text.matches("\"acked\"").count(),
        );
    }
    daemon.kill().unwrap();
    daemon.wait().unwrap();

    // The space the acknowledged messages took is free again: new messages queue and
    // are delivered.
    let out = disk
        .command(DAEMON)
        .arg("--config")
        .arg(&config)
        .args(["--send-test-messages", "200"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("\"acknowledged\":200"));
}
