//! `kakanai-inspect` as an operator uses it: personal data stays hidden unless asked
//! for, and every way of giving it input works.

// Test helpers outside #[test] functions are not covered by allow-unwrap-in-tests.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::{Command, Output};

use kakanai_protocol::examples::SAMPLE_MY_NUMBER;

const INSPECT: &str = env!("CARGO_BIN_EXE_kakanai-inspect");
const TOPIC: &str = "kakanai/v1/city-a/dev/counter-01/up/card-read";

fn inspect(args: &[&str]) -> Output {
    Command::new(INSPECT).args(args).output().unwrap()
}

fn signed_card_read(dir: &std::path::Path) -> (String, std::path::PathBuf) {
    let keys: serde_json::Value = serde_json::from_slice(&inspect(&["keygen"]).stdout).unwrap();
    let payload = dir.join("card.cbor");
    let out = inspect(&["example", "card-read"]);
    assert!(out.status.success());
    std::fs::write(&payload, &out.stdout).unwrap();
    let signed = inspect(&[
        "sign",
        "--secret-key",
        keys["secret_key"].as_str().unwrap(),
        "--kid",
        keys["kid"].as_str().unwrap(),
        "--topic",
        TOPIC,
        payload.to_str().unwrap(),
    ]);
    assert!(signed.status.success());
    let msg = dir.join("card.cose");
    std::fs::write(&msg, &signed.stdout).unwrap();
    (keys["public_key"].as_str().unwrap().to_owned(), msg)
}

#[test]
fn card_reads_are_shown_redacted_unless_asked() {
    let dir = tempfile::tempdir().unwrap();
    let (public, msg) = signed_card_read(dir.path());
    let out = inspect(&[
        "verify",
        "--public-key",
        &public,
        "--topic",
        TOPIC,
        msg.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8(out.stdout).unwrap();
    let report: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(report["personal_data"], true);
    assert_eq!(report["message"]["kind"], "card-read");
    assert_eq!(report["message"]["body"]["outcome"]["Ok"]["sex"], "male");
    let number_hex = hex::encode(SAMPLE_MY_NUMBER);
    for secret in [
        SAMPLE_MY_NUMBER,
        number_hex.as_str(),
        "見本",
        "架空県",
        "19850715",
    ] {
        assert!(!text.contains(secret), "{secret} shown: {text}");
    }

    let out = inspect(&[
        "verify",
        "--public-key",
        &public,
        "--topic",
        TOPIC,
        "--show-personal-data",
        msg.to_str().unwrap(),
    ]);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        report["message"]["body"]["outcome"]["Ok"]["my_number"],
        SAMPLE_MY_NUMBER
    );
    assert!(report["payload_hex"]
        .as_str()
        .unwrap()
        .contains(&number_hex));
}

#[test]
fn standard_input_and_hex_text_are_read() {
    let dir = tempfile::tempdir().unwrap();
    let (public, msg) = signed_card_read(dir.path());
    let bytes = std::fs::read(&msg).unwrap();
    let hex_file = dir.path().join("card.hex");
    // Hex with line breaks, as copied from a log viewer.
    let hex_text: String = hex::encode(&bytes)
        .as_bytes()
        .chunks(64)
        .map(|c| format!("{}\n", std::str::from_utf8(c).unwrap()))
        .collect();
    std::fs::write(&hex_file, hex_text).unwrap();
    let out = inspect(&[
        "verify",
        "--public-key",
        &public,
        "--topic",
        TOPIC,
        hex_file.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0));

    use std::io::Write;
    let mut child = Command::new(INSPECT)
        .args(["verify", "--public-key", &public, "--topic", TOPIC, "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(&bytes).unwrap();
    assert_eq!(child.wait_with_output().unwrap().status.code(), Some(0));
}

#[test]
fn example_refuses_unknown_kinds() {
    let out = inspect(&["example", "no-such-kind"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown message kind"));
}
