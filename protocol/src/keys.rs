//! Ed25519 keys and key ids.
//!
//! Keys are exchanged as 32-byte values: the RFC 8032 seed for a signing key and the
//! public key for a verifying key (hex on the command line). The private key never
//! leaves [`SigningKey`]: its `Debug` shows only the public half.

use std::fmt;

use ring::rand::{SecureRandom, SystemRandom};
use ring::signature::{self, Ed25519KeyPair, KeyPair};

use crate::error::ProtocolError;
use crate::limits::MAX_KID_BYTES;

/// Length of an Ed25519 seed, public key.
pub const KEY_BYTES: usize = 32;
/// Length of an Ed25519 signature.
pub const SIGNATURE_BYTES: usize = 64;

/// An Ed25519 private key.
pub struct SigningKey {
    pair: Ed25519KeyPair,
    seed: [u8; KEY_BYTES],
}

impl SigningKey {
    /// A key from its 32-byte RFC 8032 seed.
    pub fn from_seed(seed: &[u8]) -> Result<Self, ProtocolError> {
        let seed: [u8; KEY_BYTES] = seed.try_into().map_err(|_| {
            ProtocolError::Key(format!(
                "an Ed25519 seed is {KEY_BYTES} bytes, got {}",
                seed.len()
            ))
        })?;
        let pair = Ed25519KeyPair::from_seed_unchecked(&seed)
            .map_err(|e| ProtocolError::Key(e.to_string()))?;
        Ok(Self { pair, seed })
    }

    /// A new random key from the operating system's generator.
    pub fn generate() -> Result<Self, ProtocolError> {
        let mut seed = [0u8; KEY_BYTES];
        SystemRandom::new()
            .fill(&mut seed)
            .map_err(|_| ProtocolError::Key("system random generator failed".into()))?;
        Self::from_seed(&seed)
    }

    /// The 32-byte seed, for storing the key. Handle with care.
    pub fn seed(&self) -> &[u8; KEY_BYTES] {
        &self.seed
    }

    /// The matching public key.
    pub fn verifying_key(&self) -> VerifyingKey {
        let mut bytes = [0u8; KEY_BYTES];
        bytes.copy_from_slice(self.pair.public_key().as_ref());
        VerifyingKey(bytes)
    }

    /// An Ed25519 signature over `data`.
    pub fn sign(&self, data: &[u8]) -> Vec<u8> {
        self.pair.sign(data).as_ref().to_vec()
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("public", &self.verifying_key())
            .finish_non_exhaustive()
    }
}

/// An Ed25519 public key.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct VerifyingKey([u8; KEY_BYTES]);

impl VerifyingKey {
    /// A public key from its 32 bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, ProtocolError> {
        let bytes: [u8; KEY_BYTES] = bytes.try_into().map_err(|_| {
            ProtocolError::Key(format!(
                "an Ed25519 public key is {KEY_BYTES} bytes, got {}",
                bytes.len()
            ))
        })?;
        Ok(Self(bytes))
    }

    /// The 32 bytes of the key.
    pub fn as_bytes(&self) -> &[u8; KEY_BYTES] {
        &self.0
    }

    /// Whether `sig` is a valid Ed25519 signature of `data` by this key.
    pub fn verify(&self, data: &[u8], sig: &[u8]) -> Result<(), ProtocolError> {
        signature::UnparsedPublicKey::new(&signature::ED25519, &self.0)
            .verify(data, sig)
            .map_err(|_| ProtocolError::BadSignature)
    }
}

impl fmt::Debug for VerifyingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "VerifyingKey({})", hex::encode(self.0))
    }
}

/// The `kid` a sender puts in the protected header: opaque bytes naming its key.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyId(Vec<u8>);

impl KeyId {
    /// A key id from bytes (1 to [`MAX_KID_BYTES`]).
    pub fn new(bytes: impl Into<Vec<u8>>) -> Result<Self, ProtocolError> {
        let bytes = bytes.into();
        if bytes.is_empty() || bytes.len() > MAX_KID_BYTES {
            return Err(ProtocolError::KeyId);
        }
        Ok(Self(bytes))
    }

    /// The conventional key id of a public key: the first 8 bytes of its SHA-256.
    pub fn of_key(key: &VerifyingKey) -> Self {
        let digest = ring::digest::digest(&ring::digest::SHA256, key.as_bytes());
        Self(digest.as_ref()[..8].to_vec())
    }

    /// The bytes of the key id.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The key id in lower-case hex.
    pub fn to_hex(&self) -> String {
        hex::encode(&self.0)
    }
}

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyId({})", self.to_hex())
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc8032_test_vector_1() {
        // RFC 8032 §7.1, TEST 1 (empty message).
        let seed = hex::decode("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
            .unwrap();
        let key = SigningKey::from_seed(&seed).unwrap();
        assert_eq!(
            hex::encode(key.verifying_key().as_bytes()),
            "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"
        );
        let sig = key.sign(b"");
        assert_eq!(hex::encode(&sig), "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b");
        key.verifying_key().verify(b"", &sig).unwrap();
        assert_eq!(
            key.verifying_key().verify(b"x", &sig),
            Err(ProtocolError::BadSignature)
        );
    }

    #[test]
    fn wrong_lengths_are_errors() {
        assert!(SigningKey::from_seed(&[0; 31]).is_err());
        assert!(VerifyingKey::from_bytes(&[0; 33]).is_err());
        assert!(KeyId::new(Vec::new()).is_err());
        assert!(KeyId::new(vec![0; MAX_KID_BYTES + 1]).is_err());
    }

    #[test]
    fn debug_never_shows_the_seed() {
        let key = SigningKey::from_seed(&[7; 32]).unwrap();
        let shown = format!("{key:?}");
        assert!(!shown.contains(&hex::encode([7u8; 32])));
    }
}
