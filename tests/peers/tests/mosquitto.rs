//! Mosquitto self-test: an independent client pair (mosquitto_sub / mosquitto_pub)
//! exchanges a message through the started broker.

// Helper functions outside #[test] panic on failure too, like the tests themselves.
#![allow(clippy::unwrap_used)]

use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use kakanai_test_peers::{port_accepts, Mosquitto};

#[test]
fn sub_receives_what_pub_sends() {
    let broker = Mosquitto::start().unwrap();
    let port = broker.port().to_string();
    assert!(port_accepts(broker.port()));

    // -C 1: exit after one message; -W: give up rather than hang the test.
    let sub = Command::new("mosquitto_sub")
        .args([
            "-h",
            broker.host(),
            "-p",
            &port,
            "-t",
            "kakanai/selftest",
            "-C",
            "1",
            "-W",
            "15",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("mosquitto_sub not found on PATH; run scripts/test, which installs it");

    // The subscription is in place once the broker logs it; publish only then.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !std::fs::read_to_string(broker.log_path())
        .unwrap()
        .contains("kakanai/selftest")
    {
        assert!(
            Instant::now() < deadline,
            "subscription never reached the broker"
        );
        thread::sleep(Duration::from_millis(20));
    }
    let status = Command::new("mosquitto_pub")
        .args([
            "-h",
            broker.host(),
            "-p",
            &port,
            "-t",
            "kakanai/selftest",
            "-m",
            "こんにちは",
        ])
        .status()
        .unwrap();
    assert!(status.success());

    let out = sub.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8(out.stdout).unwrap().trim(), "こんにちは");

    let port = broker.port();
    let dir = broker.dir().to_path_buf();
    drop(broker);
    assert!(!port_accepts(port), "broker still listening after drop");
    assert!(!dir.exists(), "temp dir not removed");
}

#[test]
fn extra_config_and_files_are_used() {
    let second = kakanai_test_peers::free_port();
    let broker = Mosquitto::start_with(|dir| {
        std::fs::write(dir.join("marker"), "x")?;
        Ok(format!("listener {second} 127.0.0.1\n"))
    })
    .unwrap();
    assert!(broker.dir().join("marker").exists());
    assert!(port_accepts(broker.port()));
    // The extra listener may lose a race for its port; this is the caller's port.
    let deadline = Instant::now() + Duration::from_secs(5);
    while !port_accepts(second) {
        assert!(
            Instant::now() < deadline,
            "extra listener on {second} not up"
        );
        thread::sleep(Duration::from_millis(20));
    }
    drop(broker);
    assert!(!port_accepts(second));
}
