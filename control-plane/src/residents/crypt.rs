//! 個人番号 at rest: AES-256-GCM (`ring::aead`) with a key the caller holds (the
//! control plane's configuration, never the database), so a copy of the database does
//! not disclose a My Number (data-linkage.md, "Keys"; N4).
//!
//! - Sealed form: `v1:` + hex(12-byte random nonce ‖ ciphertext ‖ tag). The associated
//!   data binds it to tenant, kind and row key, so a sealed value copied to another
//!   person's row does not open.
//! - Change detection cannot compare ciphertexts (a fresh nonce each time), and a plain
//!   SHA-256 of a 12-digit number is reversed by trying all 10¹¹ of them, so the row
//!   hash uses an HMAC-SHA256 of the number under a second key derived from the same
//!   secret.

use std::fmt;

use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use ring::hmac;
use ring::rand::{SecureRandom, SystemRandom};

/// The secret for sealing 個人番号. `Debug` never shows it.
pub struct MyNumberKey {
    aead: LessSafeKey,
    mac: hmac::Key,
    rng: SystemRandom,
}

impl fmt::Debug for MyNumberKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MyNumberKey([redacted])")
    }
}

/// Sealing failed (the system's random source failed).
#[derive(Debug, thiserror::Error)]
#[error("cannot seal a 個人番号: no randomness")]
pub struct SealError;

const PREFIX: &str = "v1:";

fn derive(secret: &[u8; 32], label: &[u8]) -> [u8; 32] {
    let tag = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, secret), label);
    let mut out = [0u8; 32];
    out.copy_from_slice(tag.as_ref());
    out
}

fn aad(tenant: &str, kind: &str, row_key: &str) -> Vec<u8> {
    [tenant, kind, row_key].join("\u{0}").into_bytes()
}

impl MyNumberKey {
    /// A key from a 32-byte secret. Separate keys for encryption and for the change
    /// MAC are derived from it, so neither use weakens the other.
    pub fn new(secret: &[u8; 32]) -> Self {
        let enc = derive(secret, b"kakanai my-number aes-256-gcm v1");
        let mac = derive(secret, b"kakanai my-number hmac v1");
        // A 32-byte key is always valid for AES-256-GCM.
        let unbound = UnboundKey::new(&AES_256_GCM, &enc)
            .unwrap_or_else(|_| unreachable!("32-byte AES-256 key"));
        Self {
            aead: LessSafeKey::new(unbound),
            mac: hmac::Key::new(hmac::HMAC_SHA256, &mac),
            rng: SystemRandom::new(),
        }
    }

    /// Seals a number for the row (`tenant`, `kind`, `row_key`).
    pub fn seal(
        &self,
        tenant: &str,
        kind: &str,
        row_key: &str,
        number: &str,
    ) -> Result<String, SealError> {
        let mut nonce = [0u8; NONCE_LEN];
        self.rng.fill(&mut nonce).map_err(|_| SealError)?;
        let mut buf = number.as_bytes().to_vec();
        self.aead
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad(tenant, kind, row_key)),
                &mut buf,
            )
            .map_err(|_| SealError)?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&buf);
        Ok(format!("{PREFIX}{}", hex::encode(out)))
    }

    /// Opens a sealed number of the row; `None` if it was sealed with another key, for
    /// another row, or altered.
    pub fn open(&self, tenant: &str, kind: &str, row_key: &str, sealed: &str) -> Option<String> {
        let bytes = hex::decode(sealed.strip_prefix(PREFIX)?).ok()?;
        if bytes.len() < NONCE_LEN {
            return None;
        }
        let (nonce, ct) = bytes.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
        let mut buf = ct.to_vec();
        let plain = self
            .aead
            .open_in_place(nonce, Aad::from(aad(tenant, kind, row_key)), &mut buf)
            .ok()?;
        String::from_utf8(plain.to_vec()).ok()
    }

    /// The keyed digest of a number that stands for it in row hashes.
    pub(crate) fn mac(&self, number: &str) -> String {
        hex::encode(hmac::sign(&self.mac, number.as_bytes()).as_ref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_and_open_bound_to_the_row() {
        let key = MyNumberKey::new(&[7; 32]);
        let sealed = key
            .seal("city-a", "jumin", "0000000001", "123456789018")
            .unwrap();
        assert!(!sealed.contains("123456789018"));
        assert_eq!(
            key.open("city-a", "jumin", "0000000001", &sealed)
                .as_deref(),
            Some("123456789018")
        );
        assert_eq!(key.open("city-a", "jumin", "0000000002", &sealed), None);
        assert_eq!(
            MyNumberKey::new(&[8; 32]).open("city-a", "jumin", "0000000001", &sealed),
            None
        );
        assert_eq!(format!("{key:?}"), "MyNumberKey([redacted])");
    }
}
