//! One stored entry of the audit log: its number, its record and its chain hash.

use serde::{Deserialize, Serialize};

use super::chain::{entry_hash, HASH_LEN};
use crate::model::AuditRecord;

/// Entry `seq` of a tenant's audit log (numbered from 1 per tenant), with the chain
/// hash stored beside it (see [`super::chain`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// Position in the tenant's log, from 1, without gaps.
    pub seq: u64,
    /// What happened (who, what, when, where, which 宛名番号; never record contents).
    pub record: AuditRecord,
    /// `chain::entry_hash(seq, hash of seq - 1, record)`.
    #[serde(with = "super::hex_serde::hash")]
    pub hash: [u8; HASH_LEN],
}

impl AuditEntry {
    /// The entry that follows the one numbered `seq - 1` whose hash is `prev`
    /// ([`super::chain::GENESIS`] before the first). The appender calls this under
    /// the same lock/transaction that reads the head, so two appends never share a
    /// `seq`.
    pub fn new(seq: u64, prev: &[u8; HASH_LEN], record: AuditRecord) -> Self {
        let hash = entry_hash(seq, prev, &record);
        Self { seq, record, hash }
    }

    /// Whether the stored hash is the hash of this record after `prev`.
    pub fn links_to(&self, prev: &[u8; HASH_LEN]) -> bool {
        entry_hash(self.seq, prev, &self.record) == self.hash
    }
}
