//! The COSE_Sign1 envelope (RFC 9052 §4.2) with Ed25519.
//!
//! We sign with the fully specified algorithm `Ed25519` (-19, RFC 9864) and accept
//! both -19 and the older polymorphic `EdDSA` (-8) when verifying, always with an
//! Ed25519 key. `alg` and `kid` travel in the protected header; `external_aad` is
//! supplied by the caller (the MQTT topic, see [`crate::seal`]). Messages are
//! written tagged (CBOR tag 18) and read tagged or untagged.

use coset::{
    iana, CborSerializable, CoseSign1, CoseSign1Builder, HeaderBuilder, RegisteredLabelWithPrivate,
    TaggedCborSerializable,
};

use crate::error::ProtocolError;
use crate::keys::{KeyId, SigningKey, VerifyingKey, SIGNATURE_BYTES};
use crate::limits::{MAX_KID_BYTES, MAX_MESSAGE_BYTES};

/// The signature algorithms accepted on verification.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignatureAlg {
    /// `Ed25519` (-19), what Kakanai signs with.
    Ed25519,
    /// `EdDSA` (-8), accepted with an Ed25519 key.
    EdDsa,
}

impl SignatureAlg {
    /// The COSE algorithm identifier.
    pub fn cose_id(self) -> i64 {
        match self {
            Self::Ed25519 => iana::Algorithm::Ed25519 as i64,
            Self::EdDsa => iana::Algorithm::EdDSA as i64,
        }
    }

    /// The IANA name of the algorithm.
    pub fn name(self) -> &'static str {
        match self {
            Self::Ed25519 => "Ed25519",
            Self::EdDsa => "EdDSA",
        }
    }
}

/// What a verified COSE_Sign1 carried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// The algorithm named in the protected header.
    pub alg: SignatureAlg,
    /// The signer's key id.
    pub kid: KeyId,
    /// The payload bytes, now authenticated.
    pub payload: Vec<u8>,
}

/// Signs `payload` as a tagged COSE_Sign1 with alg `Ed25519` and `kid` in the
/// protected header, binding `external_aad` into the signature.
pub fn sign(
    key: &SigningKey,
    kid: &KeyId,
    external_aad: &[u8],
    payload: Vec<u8>,
) -> Result<Vec<u8>, ProtocolError> {
    let protected = HeaderBuilder::new()
        .algorithm(iana::Algorithm::Ed25519)
        .key_id(kid.as_bytes().to_vec())
        .build();
    let bytes = CoseSign1Builder::new()
        .protected(protected)
        .payload(payload)
        .create_signature(external_aad, |tbs| key.sign(tbs))
        .build()
        .to_tagged_vec()
        .map_err(|e| ProtocolError::Cose(e.to_string()))?;
    if bytes.len() > MAX_MESSAGE_BYTES {
        return Err(ProtocolError::TooLarge {
            what: "message",
            len: bytes.len(),
            max: MAX_MESSAGE_BYTES,
        });
    }
    Ok(bytes)
}

/// A parsed but not yet verified COSE_Sign1: enough to look up the sender's key.
#[derive(Debug)]
pub struct Unverified {
    sign1: CoseSign1,
    alg: SignatureAlg,
    kid: KeyId,
}

impl Unverified {
    /// Parses a COSE_Sign1 (tagged or untagged) and checks its protected header.
    pub fn parse(bytes: &[u8]) -> Result<Self, ProtocolError> {
        if bytes.len() > MAX_MESSAGE_BYTES {
            return Err(ProtocolError::TooLarge {
                what: "message",
                len: bytes.len(),
                max: MAX_MESSAGE_BYTES,
            });
        }
        // 0xd2 is CBOR tag 18, COSE_Sign1_Tagged.
        let parsed = if bytes.first() == Some(&0xd2) {
            CoseSign1::from_tagged_slice(bytes)
        } else {
            CoseSign1::from_slice(bytes)
        };
        let sign1 = parsed.map_err(|e| ProtocolError::Cose(e.to_string()))?;
        let header = &sign1.protected.header;
        if !header.crit.is_empty() {
            return Err(ProtocolError::CriticalHeader);
        }
        let alg = match &header.alg {
            Some(RegisteredLabelWithPrivate::Assigned(iana::Algorithm::Ed25519)) => {
                SignatureAlg::Ed25519
            }
            Some(RegisteredLabelWithPrivate::Assigned(iana::Algorithm::EdDSA)) => {
                SignatureAlg::EdDsa
            }
            Some(other) => return Err(ProtocolError::Algorithm(format!("{other:?}"))),
            None => {
                return Err(ProtocolError::Algorithm(
                    "no alg in the protected header".into(),
                ))
            }
        };
        // The kid is a hint for key lookup, not a security property (the signature
        // is), so one in the unprotected header is accepted from other implementations.
        let kid_bytes = if header.key_id.is_empty() {
            &sign1.unprotected.key_id
        } else {
            &header.key_id
        };
        if kid_bytes.is_empty() || kid_bytes.len() > MAX_KID_BYTES {
            return Err(ProtocolError::KeyId);
        }
        let kid = KeyId::new(kid_bytes.clone())?;
        if sign1.payload.is_none() {
            return Err(ProtocolError::NoPayload);
        }
        Ok(Self { sign1, alg, kid })
    }

    /// The sender's key id.
    pub fn kid(&self) -> &KeyId {
        &self.kid
    }

    /// The algorithm in the protected header.
    pub fn alg(&self) -> SignatureAlg {
        self.alg
    }

    /// Verifies the signature with `key` over `external_aad`.
    pub fn verify(
        self,
        key: &VerifyingKey,
        external_aad: &[u8],
    ) -> Result<Verified, ProtocolError> {
        self.sign1.verify_signature(external_aad, |sig, tbs| {
            if sig.len() != SIGNATURE_BYTES {
                return Err(ProtocolError::BadSignature);
            }
            key.verify(tbs, sig)
        })?;
        Ok(Verified {
            alg: self.alg,
            kid: self.kid,
            payload: self.sign1.payload.unwrap_or_default(),
        })
    }
}

/// Parses and verifies a COSE_Sign1 with the key `lookup` returns for its `kid`.
pub fn verify(
    bytes: &[u8],
    external_aad: &[u8],
    lookup: impl FnOnce(&KeyId) -> Option<VerifyingKey>,
) -> Result<Verified, ProtocolError> {
    let unverified = Unverified::parse(bytes)?;
    let key = lookup(unverified.kid())
        .ok_or_else(|| ProtocolError::UnknownKey(unverified.kid().to_hex()))?;
    unverified.verify(&key, external_aad)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> (SigningKey, KeyId) {
        let key = SigningKey::from_seed(&[1; 32]).unwrap();
        let kid = KeyId::of_key(&key.verifying_key());
        (key, kid)
    }

    #[test]
    fn round_trip_binds_the_aad() {
        let (key, kid) = key();
        let msg = sign(&key, &kid, b"topic/a", b"hello".to_vec()).unwrap();
        let pk = key.verifying_key();
        let ok = verify(&msg, b"topic/a", |k| (k == &kid).then_some(pk)).unwrap();
        assert_eq!(ok.payload, b"hello");
        assert_eq!(ok.alg, SignatureAlg::Ed25519);
        assert_eq!(
            verify(&msg, b"topic/b", |_| Some(pk)),
            Err(ProtocolError::BadSignature)
        );
    }

    #[test]
    fn every_flipped_byte_is_rejected() {
        let (key, kid) = key();
        let pk = key.verifying_key();
        let msg = sign(&key, &kid, b"t", b"payload bytes".to_vec()).unwrap();
        for i in 0..msg.len() {
            let mut bad = msg.clone();
            bad[i] ^= 0x01;
            assert!(
                verify(&bad, b"t", |_| Some(pk)).is_err(),
                "byte {i} flipped"
            );
        }
    }

    #[test]
    fn unknown_kid_and_wrong_key_are_rejected() {
        let (key, kid) = key();
        let msg = sign(&key, &kid, b"t", b"x".to_vec()).unwrap();
        assert!(matches!(
            verify(&msg, b"t", |_| None),
            Err(ProtocolError::UnknownKey(_))
        ));
        let other = SigningKey::from_seed(&[2; 32]).unwrap().verifying_key();
        assert_eq!(
            verify(&msg, b"t", |_| Some(other)),
            Err(ProtocolError::BadSignature)
        );
    }

    #[test]
    fn other_algorithms_are_rejected_before_any_key_lookup() {
        let (key, kid) = key();
        let msg = CoseSign1Builder::new()
            .protected(
                HeaderBuilder::new()
                    .algorithm(iana::Algorithm::ES256)
                    .key_id(kid.as_bytes().to_vec())
                    .build(),
            )
            .payload(b"x".to_vec())
            .create_signature(b"", |tbs| key.sign(tbs))
            .build()
            .to_tagged_vec()
            .unwrap();
        assert!(matches!(
            verify(&msg, b"", |_| panic!("looked up a key for a bad alg")),
            Err(ProtocolError::Algorithm(_))
        ));
    }
}
