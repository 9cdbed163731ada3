//! Fuzzes every decoder a receiver runs on bytes from the network: the COSE
//! structure, the envelope, the whole `Opener::open` path (with a key that makes
//! the signature check pass for inputs signed here), and the topic parser.
#![no_main]

use kakanai_protocol::cose;
use kakanai_protocol::seal::Opener;
use kakanai_protocol::topic::Ident;
use kakanai_protocol::{Envelope, KeyId, Kind, SigningKey, Topic};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = cose::Unverified::parse(data);
    let _ = Envelope::decode(data);
    if let Ok(s) = std::str::from_utf8(data) {
        let _ = Topic::parse(s);
    }
    let (Ok(key), Ok(t), Ok(d)) = (SigningKey::from_seed(&[1; 32]), Ident::new("t"), Ident::new("d")) else {
        return;
    };
    let public = key.verifying_key();
    let kid = KeyId::of_key(&public);
    let Ok(topic) = Topic::up(&t, &d, Kind::RpcRequest) else { return };
    let _ = Opener::new().open(data, &topic, |_, _| Some(public));
    // The same bytes as a signed payload reach the envelope decoder past the
    // signature check.
    if let Ok(signed) = cose::sign(&key, &kid, &topic.to_aad(), data.to_vec()) {
        let _ = Opener::new().open(&signed, &topic, |_, _| Some(public));
    }
});
