//! `kakanai-hw`, the installers' command-line tool, against real pcscd + vpcd with a
//! virtual card, and a real ippeveprinter.

// Test helpers outside #[test] functions are not covered by allow-unwrap-in-tests.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use kakanai_hw::card::{link, ReaderEvent, ReaderWatcher};
use kakanai_hw::vcard::{VirtualCard, VpcdLink};
use kakanai_test_peers::Pcscd;
use serde_json::Value;

const CLI: &str = env!("CARGO_BIN_EXE_kakanai-hw");

fn run(args: &[&str], stdin: &str) -> (Output, Value) {
    let mut child = Command::new(CLI)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let json = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "no JSON ({e}): {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out, json)
}

fn with_card(profile: &str) -> (Pcscd, VpcdLink) {
    let pcscd = Pcscd::start().unwrap();
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("profiles")
        .join(profile);
    let card = VpcdLink::connect(
        ("127.0.0.1", pcscd.vpcd_port(0)),
        VirtualCard::from_file(&path).unwrap(),
    )
    .unwrap();
    let mut w = ReaderWatcher::new(link::context().unwrap(), Some(&pcscd.reader_name(0)));
    while !matches!(
        w.next_event(Duration::from_secs(5)).unwrap(),
        Some(ReaderEvent::CardInserted { .. })
    ) {}
    (pcscd, card)
}

#[test]
fn lists_readers_identifies_and_reads_a_card_with_the_pin_from_stdin() {
    let (pcscd, _card) = with_card("mynumber-sample.json");
    let reader = pcscd.reader_name(0);

    let (out, json) = run(&["readers"], "");
    assert!(out.status.success());
    assert!(
        json["readers"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r == reader.as_str()),
        "{json}"
    );

    let (_, json) = run(&["identify", "--reader", &reader], "");
    assert_eq!(json["card"], "my-number-card");

    // Redacted by default: nothing personal on the terminal.
    let (out, json) = run(&["read-mynumber", "--reader", &reader], "1234\n");
    assert!(out.status.success(), "{json}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!text.contains("花子") && !text.contains("架空県"), "{text}");
    assert_eq!(json["face"]["sex"], "female");
    assert_eq!(json["tries_before"], 3);

    let (_, json) = run(
        &[
            "read-mynumber",
            "--reader",
            &reader,
            "--with-my-number",
            "--show-personal-data",
        ],
        "1234\n",
    );
    assert_eq!(json["face"]["name"], "見本　花子");
    assert_eq!(json["face"]["my_number"], "123456789018");

    // A wrong PIN is an answer with the tries left, exit 1.
    let (out, json) = run(&["read-mynumber", "--reader", &reader], "0000\n");
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(json["card_error"]["error"], "pin-incorrect");
    assert_eq!(json["card_error"]["remaining"], 2);

    // 照合番号B reads the face; with the 個人番号 it is refused.
    let (out, _) = run(
        &["read-mynumber", "--reader", &reader, "--code-b"],
        "60040120355678\n",
    );
    assert!(out.status.success());
    let (out, json) = run(
        &[
            "read-mynumber",
            "--reader",
            &reader,
            "--code-b",
            "--with-my-number",
        ],
        "60040120355678\n",
    );
    assert_eq!(out.status.code(), Some(1), "{json}");

    // Malformed PIN: refused before the card is touched.
    let (out, json) = run(&["read-mynumber", "--reader", &reader], "12a4\n");
    assert_eq!(out.status.code(), Some(1), "{json}");
}

#[test]
fn reads_a_licence_and_reports_an_absent_reader() {
    let (pcscd, _card) = with_card("licence-sample.json");
    let (out, json) = run(
        &[
            "read-licence",
            "--reader",
            &pcscd.reader_name(0),
            "--show-personal-data",
        ],
        "1234\n",
    );
    assert!(out.status.success(), "{json}");
    assert_eq!(json["licence"]["licence_number"], "123456789012");
    assert_eq!(json["licence"]["expiry"], "20280501");

    let (out, json) = run(&["identify", "--reader", "No Such Reader 99"], "");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        json["error"].as_str().unwrap().contains("not attached"),
        "{json}"
    );
}

#[test]
fn printer_status_of_a_real_and_an_absent_printer() {
    let printer = kakanai_test_peers::IppPrinter::start("kakanai-cli").unwrap();
    let (out, json) = run(&["printer-status", "--uri", &printer.uri()], "");
    assert!(out.status.success(), "{json}");
    assert_eq!(json["can_print"], true);
    assert_eq!(json["state"], "idle");

    let port = kakanai_test_peers::free_port();
    let (_, json) = run(
        &[
            "printer-status",
            "--uri",
            &format!("ipp://127.0.0.1:{port}/ipp/print"),
        ],
        "",
    );
    assert_eq!(json["state"], "unreachable");
    assert_eq!(json["can_print"], false);
}
