//! Golden test vectors: `vectors/messages.json` holds signed messages with their
//! keys, topics and expected decodes, so another implementation can check itself
//! against ours, and so a change to our wire format cannot slip in unnoticed.
//!
//! The vectors are generated here deterministically (Ed25519 signatures are
//! deterministic). If the committed file differs from what the code produces, the
//! test fails; after an intended wire change, regenerate with
//! `KAKANAI_BLESS=1 cargo test -p kakanai-protocol --test golden` and review the diff.

// Test helpers outside #[test] functions are not covered by allow-unwrap-in-tests.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;

use coset::{iana, CborSerializable, CoseSign1Builder, HeaderBuilder, TaggedCborSerializable};
use kakanai_protocol::catalogue::{Body, Kind};
use kakanai_protocol::envelope::payload_to_json;
use kakanai_protocol::examples;
use kakanai_protocol::seal::{seal, Opener};
use kakanai_protocol::topic::Ident;
use kakanai_protocol::{Envelope, KeyId, MessageId, SigningKey, Topic, VerifyingKey};
use serde_json::{json, Value};

fn path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/vectors/messages.json")
}

fn id(n: u8) -> MessageId {
    MessageId::from_bytes([n; 16])
}

/// Every kind's example body, with the correlation id and expiry the kind uses.
fn bodies() -> Vec<(Kind, Body, Option<MessageId>, Option<i64>)> {
    Kind::ALL
        .iter()
        .map(|&kind| {
            let (corr, exp) = match kind {
                Kind::Ack => (Some(id(0x11)), None),
                Kind::RpcRequest => (None, Some(1_795_000_030_000)),
                Kind::RpcResponse => (Some(id(0x22)), None),
                Kind::PrintJob => (None, Some(1_795_000_600_000)),
                Kind::PrintStatus => (Some(id(0x33)), None),
                Kind::ConfigReported => (Some(id(0x44)), None),
                _ => (None, None),
            };
            (kind, examples::body(kind), corr, exp)
        })
        .collect()
}

fn generate() -> Value {
    let key = SigningKey::from_seed(&[0x42; 32]).unwrap();
    let public = key.verifying_key();
    let kid = KeyId::of_key(&public);
    let tenant = Ident::new("city-a").unwrap();
    let device = Ident::new("counter-01").unwrap();
    let mut vectors = Vec::new();
    for (n, (kind, body, corr, exp)) in bodies().into_iter().enumerate() {
        let topic = match kind.direction() {
            kakanai_protocol::topic::Direction::Presence => Topic::presence(&tenant, &device),
            kakanai_protocol::topic::Direction::Down => {
                Topic::down(&tenant, &device, kind).unwrap()
            }
            _ => Topic::up(&tenant, &device, kind).unwrap(),
        };
        let env = Envelope {
            id: id(n as u8 + 1),
            seq: n as u64 + 1,
            time_ms: 1_795_000_000_000 + n as i64,
            correlation: corr,
            expires_ms: exp,
            body,
        };
        let cose = seal(&key, &kid, &topic, &env).unwrap();
        vectors.push(json!({
            "name": kind.name(),
            "topic": topic.to_string(),
            "cose_hex": hex::encode(&cose),
            "payload_hex": hex::encode(env.encode().unwrap()),
            "valid": true,
            "alg": "Ed25519",
            "expected": env.to_diagnostic_json(),
            "expected_full": payload_to_json(&env.encode().unwrap()).unwrap(),
        }));
    }

    // The same presence payload signed with the older EdDSA (-8) identifier.
    let presence = &vectors[0];
    let payload = hex::decode(presence["payload_hex"].as_str().unwrap()).unwrap();
    let topic = presence["topic"].as_str().unwrap().to_owned();
    let eddsa = CoseSign1Builder::new()
        .protected(
            HeaderBuilder::new()
                .algorithm(iana::Algorithm::EdDSA)
                .key_id(kid.as_bytes().to_vec())
                .build(),
        )
        .payload(payload.clone())
        .create_signature(topic.as_bytes(), |tbs| key.sign(tbs))
        .build();
    let eddsa_tagged = eddsa.clone().to_tagged_vec().unwrap();
    let untagged = eddsa.to_vec().unwrap();
    let expected = presence["expected"].clone();
    vectors.push(json!({"name": "presence-eddsa", "topic": topic, "cose_hex": hex::encode(&eddsa_tagged), "payload_hex": hex::encode(&payload), "valid": true, "alg": "EdDSA", "expected": expected}));
    vectors.push(json!({"name": "presence-untagged", "topic": topic, "cose_hex": hex::encode(&untagged), "payload_hex": hex::encode(&payload), "valid": true, "alg": "EdDSA", "expected": expected}));

    // Invalid ones, each with the reason another implementation must also refuse it.
    let good = hex::decode(vectors[1]["cose_hex"].as_str().unwrap()).unwrap();
    let good_topic = vectors[1]["topic"].as_str().unwrap().to_owned();
    let mut bad_sig = good.clone();
    let last = bad_sig.len() - 1;
    bad_sig[last] ^= 0x01;
    let es256 = CoseSign1Builder::new()
        .protected(
            HeaderBuilder::new()
                .algorithm(iana::Algorithm::ES256)
                .key_id(kid.as_bytes().to_vec())
                .build(),
        )
        .payload(payload)
        .create_signature(topic.as_bytes(), |tbs| key.sign(tbs))
        .build()
        .to_tagged_vec()
        .unwrap();
    for (name, cose, topic, why) in [
        (
            "signature-changed",
            bad_sig,
            good_topic.clone(),
            "signature",
        ),
        (
            "other-topic",
            good.clone(),
            "kakanai/v1/city-a/dev/counter-02/up/device-state".to_owned(),
            "signature",
        ),
        ("alg-es256", es256, topic.clone(), "algorithm"),
        (
            "truncated",
            good[..good.len() - 10].to_vec(),
            good_topic,
            "structure",
        ),
    ] {
        vectors.push(json!({"name": name, "topic": topic, "cose_hex": hex::encode(cose), "valid": false, "why": why}));
    }

    json!({
        "about": "Kakanai protocol v1 golden vectors. Each message is a COSE_Sign1 whose external_aad is the UTF-8 topic. 'expected' is the decoded payload as kakanai-inspect prints it (personal data redacted); 'expected_full' is the whole payload as JSON (byte strings as h'hex'). All personal data here is invented.",
        "secret_key_hex": hex::encode(key.seed()),
        "public_key_hex": hex::encode(public.as_bytes()),
        "kid_hex": kid.to_hex(),
        "vectors": vectors,
    })
}

#[test]
fn committed_vectors_match_the_code() {
    let generated = serde_json::to_string_pretty(&generate()).unwrap() + "\n";
    if std::env::var_os("KAKANAI_BLESS").is_some() {
        std::fs::write(path(), &generated).unwrap();
    }
    let committed =
        std::fs::read_to_string(path()).expect("tests/vectors/messages.json is committed");
    assert!(
        committed == generated,
        "the wire format changed: regenerate with KAKANAI_BLESS=1 and review the diff"
    );
}

#[test]
fn committed_vectors_decode_as_expected() {
    let file: Value = serde_json::from_str(&std::fs::read_to_string(path()).unwrap()).unwrap();
    let public =
        VerifyingKey::from_bytes(&hex::decode(file["public_key_hex"].as_str().unwrap()).unwrap())
            .unwrap();
    let kid = KeyId::new(hex::decode(file["kid_hex"].as_str().unwrap()).unwrap()).unwrap();
    let vectors = file["vectors"].as_array().unwrap();
    assert!(vectors.len() >= Kind::ALL.len() + 4);
    for kind in Kind::ALL {
        assert!(
            vectors.iter().any(|v| v["name"] == kind.name()),
            "no vector for {kind}"
        );
    }
    for v in vectors {
        let name = v["name"].as_str().unwrap();
        let topic = Topic::parse(v["topic"].as_str().unwrap()).unwrap();
        let cose = hex::decode(v["cose_hex"].as_str().unwrap()).unwrap();
        // A fresh opener per vector: the EdDSA variants repeat a sequence number.
        let result = Opener::new().open(&cose, &topic, |_, k| (k == &kid).then_some(public));
        if v["valid"] == true {
            let opened = result.unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(opened.alg.name(), v["alg"], "{name}");
            assert_eq!(
                opened.envelope.to_diagnostic_json(),
                v["expected"],
                "{name}"
            );
            assert_eq!(
                hex::encode(opened.envelope.encode().unwrap()),
                v["payload_hex"],
                "{name}"
            );
        } else {
            assert!(result.is_err(), "{name} was accepted");
        }
    }
}
