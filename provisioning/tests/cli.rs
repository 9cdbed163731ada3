//! `kakanai-provision` as central IT uses it: human output by default, `--json` for
//! scripts, clear refusals that change nothing.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::{Command, Output};

use kakanai_protocol::SigningKey;
use serde_json::Value;

fn run(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kakanai-provision"))
        .current_dir(dir)
        .env("RUST_LOG", "warn")
        .args(args)
        .output()
        .unwrap()
}

fn ok(dir: &Path, args: &[&str]) -> String {
    let out = run(dir, args);
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn json(dir: &Path, args: &[&str]) -> Value {
    let mut with = vec!["--json"];
    with.extend_from_slice(args);
    serde_json::from_str(&ok(dir, &with)).unwrap()
}

fn refused(dir: &Path, args: &[&str]) -> String {
    let out = run(dir, args);
    assert!(!out.status.success(), "{args:?} was accepted");
    String::from_utf8(out.stderr).unwrap()
}

#[test]
fn central_it_workflow() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let cp = hex::encode(SigningKey::generate().unwrap().verifying_key().as_bytes());
    let init = [
        "init-ca",
        "--tenant",
        "city-a",
        "--dir",
        "ca",
        "--broker-url",
        "mqtts://mqtt.city-a.example:8883",
        "--enrolment-url",
        "https://enrol.city-a.example:8443",
        "--control-plane-key",
        &cp,
    ];
    let created = json(t, &init);
    assert_eq!(created["tenant"], "city-a");
    let fingerprint = created["ca_fingerprint"].as_str().unwrap().to_owned();
    // A second init over the same directory is refused.
    let ca_before = std::fs::read(t.join("ca/ca.pem")).unwrap();
    assert!(refused(t, &init).contains("already holds a CA"));
    assert_eq!(std::fs::read(t.join("ca/ca.pem")).unwrap(), ca_before);
    // No control-plane key: refused, nothing created.
    let err = refused(
        t,
        &[
            "init-ca",
            "--tenant",
            "city-b",
            "--dir",
            "cb",
            "--broker-url",
            "mqtts://h:1",
        ],
    );
    assert!(err.contains("control-plane-key"), "{err}");
    assert!(!t.join("cb/ca.pem").exists());

    // A claim: text with a QR code for people, JSON for scripts, the file for the stick.
    let human = ok(
        t,
        &[
            "claim",
            "create",
            "--dir",
            "ca",
            "--tenant",
            "city-a",
            "--counter",
            "市民課 1番窓口",
            "--expires",
            "72h",
            "--out",
            "claim.toml",
            "--qr",
            "claim.svg",
        ],
    );
    assert!(
        human.contains("市民課 1番窓口") && human.contains('█'),
        "{human}"
    );
    let stick = std::fs::read_to_string(t.join("claim.toml")).unwrap();
    assert!(stick.contains(&format!("sha256:{fingerprint}")));
    assert!(stick.contains("https://enrol.city-a.example:8443"));
    assert!(std::fs::read_to_string(t.join("claim.svg"))
        .unwrap()
        .contains("<svg"));
    // Wrong tenant: refused, no claim made.
    let err = refused(
        t,
        &[
            "claim",
            "create",
            "--dir",
            "ca",
            "--tenant",
            "city-b",
            "--counter",
            "x",
        ],
    );
    assert!(err.contains("tenant city-a"), "{err}");
    let claims = json(t, &["claim", "list", "--dir", "ca"]);
    assert_eq!(claims.as_array().unwrap().len(), 1);
    assert_eq!(claims[0]["state"], "open");
    assert!(json(t, &["pending", "list", "--dir", "ca"])
        .as_array()
        .unwrap()
        .is_empty());

    // Central provisioning onto an SD card, then revocation.
    ok(
        t,
        &[
            "bundle",
            "write",
            "--dir",
            "ca",
            "--device",
            "counter-09",
            "--counter",
            "窓口 9",
            "--out",
            "sd",
        ],
    );
    for part in [
        "bundle.toml",
        "ca.pem",
        "client.pem",
        "client.key",
        "device.key",
    ] {
        assert!(t.join("sd").join(part).exists(), "{part}");
    }
    assert!(refused(
        t,
        &[
            "bundle",
            "write",
            "--dir",
            "ca",
            "--device",
            "counter-09",
            "--out",
            "sd"
        ]
    )
    .contains("already holds a bundle"));
    ok(
        t,
        &[
            "broker-config",
            "--dir",
            "ca",
            "--out",
            "broker",
            "--san",
            "mqtt.city-a.example",
        ],
    );
    let conf = std::fs::read_to_string(t.join("broker/mosquitto.conf")).unwrap();
    for line in [
        "require_certificate true",
        "use_identity_as_username true",
        "crlfile ",
        "acl_file ",
    ] {
        assert!(conf.contains(line), "{line}: {conf}");
    }
    let rotated = json(t, &["rotate", "--dir", "ca", "--device", "counter-09"]);
    assert!(rotated["serial"].as_str().is_some());
    let devices = json(t, &["devices", "--dir", "ca"]);
    assert_eq!(devices[0]["certificates"].as_array().unwrap().len(), 2);
    let revoked = json(
        t,
        &[
            "revoke",
            "--dir",
            "ca",
            "--device",
            "counter-09",
            "--broker-dir",
            "broker",
        ],
    );
    assert_eq!(revoked["revoked_serials"].as_array().unwrap().len(), 2);
    let acl = std::fs::read_to_string(t.join("broker/acl")).unwrap();
    assert!(acl.contains("user counter-09\ntopic deny #"), "{acl}");
    assert!(
        refused(t, &["revoke", "--dir", "ca", "--device", "counter-09"])
            .contains("already revoked")
    );
    assert!(refused(t, &["approve", "--dir", "ca", "nope"]).contains("no enrolment nope"));
    let devices = json(t, &["devices", "--dir", "ca"]);
    assert_eq!(devices[0]["state"], "revoked");
}
