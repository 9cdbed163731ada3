//! `kakanai-inspect` against an independent RFC 9052 implementation (Python
//! `pycose`, driven by `interop/cose_peer.py`), in both directions.
//!
//! The Python environment is prepared by `scripts/test` (`.cache/venv`, or the
//! interpreter named by `KAKANAI_PYTHON`). Without it these tests fail: they are
//! the proof that other implementations can talk to us.

// Test helpers outside #[test] functions are not covered by allow-unwrap-in-tests.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use kakanai_protocol::catalogue::{
    Body, DeviceClass, DeviceInfo, DeviceStatus, Presence, PresenceState,
};
use kakanai_protocol::topic::Ident;
use kakanai_protocol::{Envelope, KeyId, SigningKey, Topic};

const INSPECT: &str = env!("CARGO_BIN_EXE_kakanai-inspect");

fn python() -> PathBuf {
    if let Some(p) = std::env::var_os("KAKANAI_PYTHON") {
        return PathBuf::from(p);
    }
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("../.cache/venv/bin/python");
    assert!(
        venv.exists(),
        "no Python with pycose: run scripts/test (it prepares {}) or set KAKANAI_PYTHON",
        venv.display()
    );
    venv
}

fn peer(args: &[&str]) -> Output {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop/cose_peer.py");
    Command::new(python())
        .arg(script)
        .args(args)
        .output()
        .expect("run the pycose peer")
}

fn inspect(args: &[&str]) -> Output {
    Command::new(INSPECT)
        .args(args)
        .output()
        .expect("run kakanai-inspect")
}

struct Fixture {
    seed: String,
    public: String,
    kid: KeyId,
    topic: Topic,
    payload: Vec<u8>,
    dir: tempfile::TempDir,
}

fn fixture() -> Fixture {
    let key = SigningKey::from_seed(&[0x5a; 32]).unwrap();
    let kid = KeyId::of_key(&key.verifying_key());
    let topic = Topic::presence(
        &Ident::new("city-a").unwrap(),
        &Ident::new("counter-07").unwrap(),
    );
    let body = Body::Presence(Presence {
        state: PresenceState::Online,
        boot_counter: 3,
        software_version: "0.1.0".into(),
        devices: vec![DeviceInfo {
            id: "Virtual PCD 00 00".into(),
            class: DeviceClass::CardReader,
            model: "vpcd".into(),
            status: DeviceStatus::Ready,
        }],
    });
    let payload = Envelope::new(1, 1_795_000_000_000, body)
        .unwrap()
        .encode()
        .unwrap();
    Fixture {
        seed: hex::encode(key.seed()),
        public: hex::encode(key.verifying_key().as_bytes()),
        kid,
        topic,
        payload,
        dir: tempfile::tempdir().unwrap(),
    }
}

fn json(out: &Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "inspect printed no JSON ({e}): {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

fn pycose_sign(f: &Fixture, alg: &str) -> Vec<u8> {
    let out = peer(&[
        "sign",
        "--alg",
        alg,
        "--seed",
        &f.seed,
        "--kid",
        &f.kid.to_hex(),
        "--aad",
        &hex::encode(f.topic.to_string()),
        "--payload",
        &hex::encode(&f.payload),
    ]);
    assert!(
        out.status.success(),
        "pycose sign: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    hex::decode(String::from_utf8(out.stdout).unwrap().trim()).unwrap()
}

fn inspect_verify(f: &Fixture, msg: &[u8], name: &str) -> Output {
    let path = f.dir.path().join(name);
    std::fs::write(&path, msg).unwrap();
    inspect(&[
        "verify",
        "--public-key",
        &f.public,
        "--topic",
        &f.topic.to_string(),
        path.to_str().unwrap(),
    ])
}

#[test]
fn inspect_verifies_what_pycose_signs_with_both_algorithms() {
    let f = fixture();
    for (alg, name) in [("-19", "Ed25519"), ("-8", "EdDSA")] {
        let msg = pycose_sign(&f, alg);
        let out = inspect_verify(&f, &msg, "raw.cose");
        let report = json(&out);
        assert_eq!(out.status.code(), Some(0), "{report}");
        assert_eq!(report["valid"], true);
        assert_eq!(report["alg"], name);
        assert_eq!(report["kid"], f.kid.to_hex());
        assert_eq!(report["payload_hex"], hex::encode(&f.payload));
        assert_eq!(report["message"]["kind"], "presence");
        assert_eq!(report["message"]["body"]["boot_counter"], 3);

        // The same message as hex text.
        let out = inspect_verify(&f, hex::encode(&msg).as_bytes(), "msg.hex");
        assert_eq!(out.status.code(), Some(0));
    }
}

#[test]
fn inspect_rejects_pycose_messages_with_any_byte_changed() {
    let f = fixture();
    let msg = pycose_sign(&f, "-19");
    for i in 0..msg.len() {
        for flip in [0x01u8, 0x80] {
            let mut bad = msg.clone();
            bad[i] ^= flip;
            let out = inspect_verify(&f, &bad, "bad.cose");
            let report = json(&out);
            assert_eq!(
                out.status.code(),
                Some(1),
                "byte {i} ^ {flip:#x} accepted: {report}"
            );
            assert_eq!(report["valid"], false);
            assert!(report["reason"].as_str().is_some_and(|r| !r.is_empty()));
        }
    }
    // Valid bytes on another topic are invalid too.
    let path = f.dir.path().join("ok.cose");
    std::fs::write(&path, &msg).unwrap();
    let out = inspect(&[
        "verify",
        "--public-key",
        &f.public,
        "--topic",
        "kakanai/v1/city-a/dev/other/presence",
        path.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn pycose_verifies_what_inspect_signs() {
    let f = fixture();
    let path = f.dir.path().join("payload.cbor");
    std::fs::write(&path, &f.payload).unwrap();
    let topic = f.topic.to_string();
    let out = inspect(&[
        "sign",
        "--secret-key",
        &f.seed,
        "--kid",
        &f.kid.to_hex(),
        "--topic",
        &topic,
        path.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let signed = out.stdout;
    assert_eq!(signed[0], 0xd2, "tagged COSE_Sign1");

    let verify = |aad: &str, msg: &[u8]| {
        peer(&[
            "verify",
            "--public-key",
            &f.public,
            "--aad",
            &hex::encode(aad),
            "--message",
            &hex::encode(msg),
        ])
    };
    let ok = verify(&topic, &signed);
    assert_eq!(
        ok.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&ok.stdout)
    );
    assert_eq!(
        verify("kakanai/v1/city-a/dev/x/presence", &signed)
            .status
            .code(),
        Some(1)
    );
    let mut bad = signed.clone();
    let last = bad.len() - 1;
    bad[last] ^= 1;
    assert_eq!(verify(&topic, &bad).status.code(), Some(1));
}

#[test]
fn keygen_keys_sign_and_verify_and_usage_errors_exit_2() {
    let out = inspect(&["keygen"]);
    assert!(out.status.success());
    let keys = json(&out);
    let dir = tempfile::tempdir().unwrap();
    let payload = dir.path().join("p");
    std::fs::write(&payload, b"any bytes").unwrap();
    let secret = keys["secret_key"].as_str().unwrap();
    let kid = keys["kid"].as_str().unwrap();
    let public = keys["public_key"].as_str().unwrap();
    let signed = inspect(&[
        "sign",
        "--secret-key",
        secret,
        "--kid",
        kid,
        "--hex",
        payload.to_str().unwrap(),
    ]);
    assert!(signed.status.success());
    let msg = dir.path().join("m.hex");
    std::fs::write(&msg, &signed.stdout).unwrap();
    let out = inspect(&["verify", "--public-key", public, msg.to_str().unwrap()]);
    let report = json(&out);
    assert_eq!(out.status.code(), Some(0), "{report}");
    assert_eq!(
        report["message"],
        serde_json::Value::Null,
        "not a Kakanai payload"
    );
    assert_eq!(report["payload_hex"], hex::encode(b"any bytes"));

    assert_eq!(
        inspect(&["verify", "--public-key", "zz", msg.to_str().unwrap()])
            .status
            .code(),
        Some(2)
    );
    assert_eq!(
        inspect(&["verify", "--public-key", public, "/nonexistent/file"])
            .status
            .code(),
        Some(2)
    );
    assert_eq!(
        inspect(&["sign", "--secret-key", secret, msg.to_str().unwrap()])
            .status
            .code(),
        Some(2)
    );
    assert_eq!(
        inspect(&[
            "verify",
            "--public-key",
            public,
            "--topic",
            "t",
            "--aad",
            "00",
            msg.to_str().unwrap()
        ])
        .status
        .code(),
        Some(2)
    );
}
