//! The hash chain of the audit log.
//!
//! Entry `n` (numbered from 1 per tenant) stores `hash_n = SHA-256("kakanai-audit-v1"
//! ‖ n as u64 BE ‖ hash_{n-1} ‖ canonical(record))`, with `hash_0` = 32 zero bytes.
//! `canonical` is the record as JSON with keys sorted (serde_json's default map is
//! ordered), so the hash does not depend on the database's column order or on which
//! backend stored it. Changing, removing or reordering any entry breaks every hash
//! after it; signed checkpoints pin the head.

use ring::digest::{Context, SHA256};

use crate::model::AuditRecord;

/// Length of an entry hash.
pub const HASH_LEN: usize = 32;

/// The hash before the first entry.
pub const GENESIS: [u8; HASH_LEN] = [0; HASH_LEN];

/// The canonical bytes of a record.
pub fn canonical(record: &AuditRecord) -> Vec<u8> {
    // Through serde_json::Value so that every map (including `detail`) is key-sorted.
    let value = serde_json::to_value(record).unwrap_or(serde_json::Value::Null);
    serde_json::to_vec(&value).unwrap_or_default()
}

/// The hash of entry `seq` holding `record`, after `prev`.
pub fn entry_hash(seq: u64, prev: &[u8; HASH_LEN], record: &AuditRecord) -> [u8; HASH_LEN] {
    let mut ctx = Context::new(&SHA256);
    ctx.update(b"kakanai-audit-v1");
    ctx.update(&seq.to_be_bytes());
    ctx.update(prev);
    ctx.update(&canonical(record));
    let mut out = [0u8; HASH_LEN];
    out.copy_from_slice(ctx.finish().as_ref());
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Actor, Place};

    fn record(action: &str) -> AuditRecord {
        AuditRecord {
            tenant: "city-a".into(),
            at_ms: 1_795_000_000_000,
            actor: Actor::Staff("s001".into()),
            action: action.into(),
            resident: Some("000123".into()),
            place: Place::Appliance("counter-01".into()),
            outcome: "ok".into(),
            detail: serde_json::json!({"b": 1, "a": 2}),
        }
    }

    #[test]
    fn any_change_changes_the_hash() {
        let h1 = entry_hash(1, &GENESIS, &record("resident.view"));
        assert_ne!(h1, entry_hash(1, &GENESIS, &record("print")));
        assert_ne!(h1, entry_hash(2, &GENESIS, &record("resident.view")));
        assert_ne!(h1, entry_hash(1, &[1; 32], &record("resident.view")));
        assert_eq!(h1, entry_hash(1, &GENESIS, &record("resident.view")));
    }
}
