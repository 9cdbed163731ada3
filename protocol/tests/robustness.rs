//! Property tests: no input makes the decoders panic, and what we encode we decode.

// Test helpers outside #[test] functions are not covered by allow-unwrap-in-tests.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use kakanai_protocol::catalogue::{Body, Ping, RpcRequest};
use kakanai_protocol::cose::{self, Unverified};
use kakanai_protocol::seal::{seal, Opener};
use kakanai_protocol::topic::Ident;
use kakanai_protocol::{Envelope, KeyId, Kind, MessageId, SigningKey, Topic};
use proptest::prelude::*;

fn key() -> (SigningKey, KeyId) {
    let key = SigningKey::from_seed(&[9; 32]).unwrap();
    let kid = KeyId::of_key(&key.verifying_key());
    (key, kid)
}

fn topic() -> Topic {
    Topic::up(
        &Ident::new("t").unwrap(),
        &Ident::new("d").unwrap(),
        Kind::RpcRequest,
    )
    .unwrap()
}

/// Arbitrary CBOR values, nested a few levels, to reach past the first byte checks.
fn cbor_value() -> impl Strategy<Value = ciborium::Value> {
    let leaf = prop_oneof![
        any::<i64>().prop_map(|i| ciborium::Value::Integer(i.into())),
        any::<String>().prop_map(ciborium::Value::Text),
        proptest::collection::vec(any::<u8>(), 0..40).prop_map(ciborium::Value::Bytes),
        any::<bool>().prop_map(ciborium::Value::Bool),
        Just(ciborium::Value::Null),
        prop_oneof![
            Just("v"),
            Just("id"),
            Just("seq"),
            Just("kind"),
            Just("body"),
            Just("card-read"),
            Just("presence")
        ]
        .prop_map(|s| ciborium::Value::Text(s.into())),
    ];
    leaf.prop_recursive(4, 64, 8, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..8).prop_map(ciborium::Value::Array),
            proptest::collection::vec((inner.clone(), inner), 0..8).prop_map(ciborium::Value::Map),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let _ = Unverified::parse(&bytes);
        let _ = Envelope::decode(&bytes);
        let (key, _) = key();
        let pk = key.verifying_key();
        let _ = cose::verify(&bytes, b"", |_| Some(pk));
        prop_assert!(Opener::new().open(&bytes, &topic(), |_, _| Some(pk)).is_err());
    }

    #[test]
    fn arbitrary_cbor_payloads_never_panic(value in cbor_value()) {
        let mut bytes = Vec::new();
        ciborium::into_writer(&value, &mut bytes).unwrap();
        let _ = Envelope::decode(&bytes);
        // Signed, they pass the signature and reach the decoder, which must refuse
        // or accept them cleanly.
        let (key, kid) = key();
        let pk = key.verifying_key();
        let cose = cose::sign(&key, &kid, topic().to_string().as_bytes(), bytes).unwrap();
        let _ = Opener::new().open(&cose, &topic(), |_, _| Some(pk));
    }

    #[test]
    fn arbitrary_topics_never_panic(s in "\\PC{0,80}", t in "[a-z0-9/+#$-]{0,80}") {
        let _ = Topic::parse(&s);
        let _ = Topic::parse(&format!("kakanai/v1/{t}"));
    }

    #[test]
    fn sealed_messages_open_to_the_same_envelope(
        seq in 1u64.., time in any::<i64>(), text in any::<String>(),
        corr in proptest::option::of(any::<[u8; 16]>()), exp in proptest::option::of(any::<i64>()),
    ) {
        let (key, kid) = key();
        let pk = key.verifying_key();
        let env = Envelope {
            id: MessageId::from_bytes([1; 16]),
            seq,
            time_ms: time,
            correlation: corr.map(MessageId::from_bytes),
            expires_ms: exp,
            body: Body::RpcRequest(RpcRequest::new::<Ping>(&text).unwrap()),
        };
        let bytes = seal(&key, &kid, &topic(), &env).unwrap();
        let opened = Opener::new().open(&bytes, &topic(), |_, _| Some(pk)).unwrap();
        prop_assert_eq!(opened.envelope, env);
    }
}

#[test]
fn oversized_input_is_refused_before_parsing() {
    let huge = vec![0u8; kakanai_protocol::limits::MAX_MESSAGE_BYTES + 1];
    assert!(matches!(
        Unverified::parse(&huge),
        Err(kakanai_protocol::ProtocolError::TooLarge { .. })
    ));
}

#[test]
fn deeply_nested_cbor_is_refused_without_overflowing_the_stack() {
    // 100 000 nested one-element arrays.
    let mut bytes = vec![0x81u8; 100_000];
    bytes.push(0x00);
    assert!(Envelope::decode(&bytes).is_err());
}
