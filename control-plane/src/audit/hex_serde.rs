//! Hashes and signatures as lower-case hex in JSON, so archives and reports stay
//! readable with ordinary tools (`jq`, `grep`).

use serde::{de::Error as _, Deserialize, Deserializer, Serializer};

/// Only lower-case hex is accepted: one encoding per value, so that no byte of an
/// archive can change without changing what it says.
fn lower_hex<E: serde::de::Error>(text: &str) -> Result<(), E> {
    if text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        Ok(())
    } else {
        Err(E::custom("expected lower-case hex"))
    }
}

use super::chain::HASH_LEN;

/// A 32-byte hash as 64 hex digits.
pub mod hash {
    use super::*;

    /// Writes the hash as hex.
    pub fn serialize<S: Serializer>(h: &[u8; HASH_LEN], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(h))
    }

    /// Reads exactly 64 hex digits.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; HASH_LEN], D::Error> {
        let text = String::deserialize(d)?;
        lower_hex(&text)?;
        let mut out = [0u8; HASH_LEN];
        hex::decode_to_slice(text, &mut out).map_err(D::Error::custom)?;
        Ok(out)
    }
}

/// Variable-length bytes (signatures, key ids) as hex.
pub mod bytes {
    use super::*;

    /// Writes the bytes as hex.
    pub fn serialize<S: Serializer>(b: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(b))
    }

    /// Reads hex digits.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(d)?;
        lower_hex(&text)?;
        hex::decode(text).map_err(D::Error::custom)
    }
}
