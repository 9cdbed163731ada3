//! Signed checkpoints: the control plane's Ed25519 signature over a tenant's chain
//! head, and the policy deciding when the next one is due.
//!
//! A checkpoint pins the head: rewriting the log (even recomputing every hash after a
//! change) no longer matches a signed hash, and deleting the newest entries leaves a
//! head shorter than a signed one. The database cannot forge one without the signing
//! key, which lives outside it.

use std::collections::HashMap;

use kakanai_protocol::keys::{KeyId, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};

use super::chain::HASH_LEN;
use super::fiscal::fiscal_year_of;
use super::AuditError;
use crate::model::TenantId;

/// Domain separation: these bytes can never be mistaken for a COSE message or an
/// archive trailer signed by the same key.
const DOMAIN: &[u8] = b"kakanai-audit-checkpoint-v1";

/// The longest a chain head may stay unsigned.
pub const MAX_CHECKPOINT_INTERVAL_MS: i64 = 3_600_000;

/// A signed statement "entry `seq` of `tenant`'s log has hash `hash`", made at
/// `signed_at_ms` with key `kid`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// The tenant whose log this pins.
    pub tenant: TenantId,
    /// The entry pinned (the head when signed).
    pub seq: u64,
    /// That entry's chain hash.
    pub hash: [u8; HASH_LEN],
    /// When it was signed, milliseconds since the Unix epoch.
    pub signed_at_ms: i64,
    /// Which key signed it.
    pub kid: KeyId,
    /// Ed25519 signature over [`Checkpoint::signed_bytes`].
    pub signature: Vec<u8>,
}

impl Checkpoint {
    /// The canonical bytes signed: `"kakanai-audit-checkpoint-v1"` ‖ tenant length
    /// (u32 BE) ‖ tenant ‖ seq (u64 BE) ‖ hash ‖ signed_at_ms (i64 BE). The length
    /// prefix keeps the concatenation unambiguous.
    pub fn signed_bytes(
        tenant: &TenantId,
        seq: u64,
        hash: &[u8; HASH_LEN],
        signed_at_ms: i64,
    ) -> Vec<u8> {
        let t = tenant.as_str().as_bytes();
        let mut out = Vec::with_capacity(DOMAIN.len() + 4 + t.len() + 8 + HASH_LEN + 8);
        out.extend_from_slice(DOMAIN);
        // Ident is at most 64 bytes, so the length always fits.
        out.extend_from_slice(&u32::try_from(t.len()).unwrap_or(u32::MAX).to_be_bytes());
        out.extend_from_slice(t);
        out.extend_from_slice(&seq.to_be_bytes());
        out.extend_from_slice(hash);
        out.extend_from_slice(&signed_at_ms.to_be_bytes());
        out
    }

    /// Signs the head `(seq, hash)` of `tenant`'s log. The key id is the conventional
    /// [`KeyId::of_key`] of the signing key's public half.
    pub fn sign(
        tenant: &TenantId,
        seq: u64,
        hash: &[u8; HASH_LEN],
        signed_at_ms: i64,
        key: &SigningKey,
    ) -> Self {
        let signature = key.sign(&Self::signed_bytes(tenant, seq, hash, signed_at_ms));
        Self {
            tenant: tenant.clone(),
            seq,
            hash: *hash,
            signed_at_ms,
            kid: KeyId::of_key(&key.verifying_key()),
            signature,
        }
    }

    /// Checks the signature with `key`.
    pub fn verify(&self, key: &VerifyingKey) -> Result<(), AuditError> {
        key.verify(
            &Self::signed_bytes(&self.tenant, self.seq, &self.hash, self.signed_at_ms),
            &self.signature,
        )
        .map_err(|_| AuditError::BadSignature { seq: self.seq })
    }

    /// The checkpoint as a plain serialisable value (hex bytes), for archives and
    /// reports.
    pub fn to_wire(&self) -> CheckpointWire {
        CheckpointWire {
            tenant: self.tenant.as_str().to_owned(),
            seq: self.seq,
            hash: self.hash,
            signed_at_ms: self.signed_at_ms,
            kid: self.kid.as_bytes().to_vec(),
            signature: self.signature.clone(),
        }
    }
}

/// A checkpoint as JSON: strings and hex, validated back by
/// [`CheckpointWire::into_checkpoint`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckpointWire {
    /// The tenant id.
    pub tenant: String,
    /// The entry pinned.
    pub seq: u64,
    /// Its hash (hex).
    #[serde(with = "super::hex_serde::hash")]
    pub hash: [u8; HASH_LEN],
    /// Signing time.
    pub signed_at_ms: i64,
    /// Key id (hex).
    #[serde(with = "super::hex_serde::bytes")]
    pub kid: Vec<u8>,
    /// Signature (hex).
    #[serde(with = "super::hex_serde::bytes")]
    pub signature: Vec<u8>,
}

impl CheckpointWire {
    /// Back to a [`Checkpoint`], validating the tenant id and key id.
    pub fn into_checkpoint(self) -> Result<Checkpoint, AuditError> {
        Ok(Checkpoint {
            tenant: TenantId::new(&self.tenant).map_err(|_| AuditError::Malformed {
                what: "checkpoint tenant id",
            })?,
            seq: self.seq,
            hash: self.hash,
            signed_at_ms: self.signed_at_ms,
            kid: KeyId::new(self.kid).map_err(|_| AuditError::Malformed {
                what: "checkpoint key id",
            })?,
            signature: self.signature,
        })
    }
}

/// Where to find the public key of a checkpoint or archive signer. Old keys stay
/// listed after a rotation so that old checkpoints keep verifying.
pub trait CheckpointKeys {
    /// The key named `kid`, if known.
    fn key(&self, kid: &KeyId) -> Option<VerifyingKey>;
}

impl<F: Fn(&KeyId) -> Option<VerifyingKey>> CheckpointKeys for F {
    fn key(&self, kid: &KeyId) -> Option<VerifyingKey> {
        self(kid)
    }
}

impl CheckpointKeys for HashMap<KeyId, VerifyingKey> {
    fn key(&self, kid: &KeyId) -> Option<VerifyingKey> {
        self.get(kid).copied()
    }
}

impl CheckpointKeys for [VerifyingKey] {
    /// Keys named by their conventional [`KeyId::of_key`].
    fn key(&self, kid: &KeyId) -> Option<VerifyingKey> {
        self.iter().find(|k| KeyId::of_key(k) == *kid).copied()
    }
}

impl<const N: usize> CheckpointKeys for [VerifyingKey; N] {
    fn key(&self, kid: &KeyId) -> Option<VerifyingKey> {
        self.as_slice().key(kid)
    }
}

impl CheckpointKeys for Vec<VerifyingKey> {
    fn key(&self, kid: &KeyId) -> Option<VerifyingKey> {
        self.as_slice().key(kid)
    }
}

/// A point of the chain with a time: the head entry (its `seq` and record time), or
/// the last checkpoint (its `seq` and signing time).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChainPoint {
    /// Entry number.
    pub seq: u64,
    /// Milliseconds since the Unix epoch.
    pub at_ms: i64,
}

/// Why a checkpoint is due.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckpointDue {
    /// The log has entries and none is signed yet.
    First,
    /// The last checkpoint is at least the interval old and entries came after it.
    Interval,
    /// The head's fiscal year has closed: sign it as the year's last entry before the
    /// new year's first entry is appended, so the year's archive and any later
    /// verification from the year boundary start at a signed hash.
    FiscalYearEnd {
        /// The closed year.
        fiscal_year: u16,
    },
}

/// When checkpoints are due: at least every `interval` while entries arrive, and at
/// every fiscal-year end. Pure: the caller passes the head, the last checkpoint and the
/// time. Call it from an hourly (or finer) timer, and also just before appending an
/// entry with that entry's time as `now_ms`, which is what makes the year-end
/// checkpoint land exactly on the closing year's last entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckpointPolicy {
    interval_ms: i64,
}

impl Default for CheckpointPolicy {
    fn default() -> Self {
        Self {
            interval_ms: MAX_CHECKPOINT_INTERVAL_MS,
        }
    }
}

impl CheckpointPolicy {
    /// A policy with a shorter interval than the hourly default; more than an hour
    /// (or not positive) is refused.
    pub fn new(interval_ms: i64) -> Result<Self, AuditError> {
        if interval_ms <= 0 || interval_ms > MAX_CHECKPOINT_INTERVAL_MS {
            return Err(AuditError::CheckpointInterval { interval_ms });
        }
        Ok(Self { interval_ms })
    }

    /// The interval.
    pub fn interval_ms(&self) -> i64 {
        self.interval_ms
    }

    /// Whether the head must be signed now, and why. `None` when the head is already
    /// signed (or the log is empty): a second checkpoint on the same head adds nothing.
    pub fn due(
        &self,
        head: Option<ChainPoint>,
        last: Option<ChainPoint>,
        now_ms: i64,
    ) -> Option<CheckpointDue> {
        let head = head.filter(|h| h.seq > 0)?;
        if last.is_some_and(|l| l.seq >= head.seq) {
            return None;
        }
        let head_year = fiscal_year_of(head.at_ms);
        if head_year < fiscal_year_of(now_ms) {
            return Some(CheckpointDue::FiscalYearEnd {
                fiscal_year: head_year,
            });
        }
        match last {
            None => Some(CheckpointDue::First),
            Some(l) if now_ms.saturating_sub(l.at_ms) >= self.interval_ms => {
                Some(CheckpointDue::Interval)
            }
            Some(_) => None,
        }
    }

    /// The latest time the timer should look again after a checkpoint signed at
    /// `last_signed_at_ms`: the interval's end or the next fiscal year's start,
    /// whichever comes first.
    pub fn next_check_ms(&self, last_signed_at_ms: i64) -> i64 {
        let year_end = super::fiscal::fiscal_year_bounds(fiscal_year_of(last_signed_at_ms)).1;
        last_signed_at_ms
            .saturating_add(self.interval_ms)
            .min(year_end)
    }
}
