//! The hash-chained audit log (N7, N8) and its signed checkpoints.
//!
//! An append is one transaction: lock the tenant's head row, compute the next hash
//! with [`chain::entry_hash`], insert the entry, move the head. The lock (SQLite
//! `BEGIN IMMEDIATE`, PostgreSQL `SELECT … FOR UPDATE`) makes appends from any number
//! of connections and instances a single line; the primary key (tenant, seq) would
//! refuse a reused seq even if it did not. Entries are append-only (triggers in the
//! schema refuse UPDATE and DELETE).
//!
//! The record is stored as the JSON text it was hashed from, not as PostgreSQL JSONB,
//! which would reorder keys and normalise numbers; `at_ms`, the actor, the action and
//! the resident are copied into columns for search.

use std::fmt::Write as _;

use kakanai_protocol::keys::KeyId;

use super::backend::{classify, to_i64, to_u64, with_pool, Backend, Cols};
use super::{AuditEntry, AuditFilter, AuditHead, Checkpoint, Result, Store, StoreError};
use crate::audit::chain::{self, HASH_LEN};
use crate::model::{Actor, AuditRecord, TenantId};

impl Store {
    /// Appends `record` to its tenant's chain (`record.tenant`) and returns the entry.
    /// [`StoreError::NotFound`] if the tenant does not exist; [`StoreError::Invalid`]
    /// if the record would not read back identical (so its hash could never verify).
    pub async fn append_audit(&self, record: &AuditRecord) -> Result<AuditEntry> {
        let json =
            serde_json::to_string(record).map_err(|_| StoreError::Invalid("audit record"))?;
        // What is stored must parse back to the very record that was hashed, or the
        // chain could not be verified later (e.g. a float that does not round-trip).
        if serde_json::from_str::<AuditRecord>(&json).ok().as_ref() != Some(record) {
            return Err(StoreError::Invalid(
                "audit record (does not round-trip through JSON)",
            ));
        }
        let (actor_kind, actor_id) = actor_columns(&record.actor);
        let actor_id = actor_id.map(search_text);
        let action = search_text(&record.action);
        let resident = record.resident.as_deref().map(search_text);
        with_pool!(self, pool => {
            let mut tx = pool.begin_write().await?;
            let head = sqlx::query(pool.select_audit_head())
                .bind(&record.tenant)
                .fetch_optional(&mut *tx)
                .await?
                .ok_or(StoreError::NotFound("tenant"))?;
            let prev_seq = to_u64(head.int("seq")?, "audit head")?;
            let prev_hash = hash_of(head.bytes("hash")?, "audit head")?;
            let seq = prev_seq + 1;
            let hash = chain::entry_hash(seq, &prev_hash, record);
            let seq_db = to_i64(seq, "audit seq")?;
            sqlx::query(
                "INSERT INTO audit_entries (tenant, seq, at_ms, actor_kind, actor_id, action, \
                 resident, record, hash) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            )
            .bind(&record.tenant)
            .bind(seq_db)
            .bind(record.at_ms)
            .bind(actor_kind)
            .bind(actor_id.as_deref())
            .bind(&action)
            .bind(resident.as_deref())
            .bind(&json)
            .bind(&hash[..])
            .execute(&mut *tx)
            .await
            .map_err(|e| classify(e, "audit seq", "tenant"))?;
            sqlx::query("UPDATE audit_heads SET seq = $2, hash = $3 WHERE tenant = $1")
                .bind(&record.tenant)
                .bind(seq_db)
                .bind(&hash[..])
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok(AuditEntry { seq, record: record.clone(), hash })
        })
    }

    /// The last entry's seq and hash (seq 0 and the genesis hash while empty).
    /// [`StoreError::NotFound`] if the tenant does not exist.
    pub async fn audit_head(&self, tenant: &TenantId) -> Result<AuditHead> {
        with_pool!(self, pool => {
            let row = sqlx::query("SELECT seq, hash FROM audit_heads WHERE tenant = $1")
                .bind(tenant.as_str())
                .fetch_optional(pool)
                .await?
                .ok_or(StoreError::NotFound("tenant"))?;
            Ok(AuditHead {
                seq: to_u64(row.int("seq")?, "audit head")?,
                hash: hash_of(row.bytes("hash")?, "audit head")?,
            })
        })
    }

    /// Up to `limit` entries from `from_seq` on, in order (for verification and
    /// archives).
    pub async fn audit_range(
        &self,
        tenant: &TenantId,
        from_seq: u64,
        limit: u32,
    ) -> Result<Vec<AuditEntry>> {
        let from = i64::try_from(from_seq).unwrap_or(i64::MAX);
        with_pool!(self, pool => {
            let rows = sqlx::query(
                "SELECT seq, record, hash FROM audit_entries WHERE tenant = $1 AND seq >= $2 \
                 ORDER BY seq LIMIT $3",
            )
            .bind(tenant.as_str())
            .bind(from)
            .bind(i64::from(limit))
            .fetch_all(pool)
            .await?;
            rows.iter().map(entry_from_row).collect()
        })
    }

    /// Up to `limit` entries matching `filter`, in seq order.
    pub async fn audit_search(
        &self,
        tenant: &TenantId,
        filter: &AuditFilter,
        limit: u32,
    ) -> Result<Vec<AuditEntry>> {
        let actor = filter.actor.as_ref().map(actor_columns);
        let actor_id = actor.and_then(|(_, id)| id).map(search_text);
        let resident = filter.resident.as_deref().map(search_text);
        let prefix = filter.action_prefix.as_deref().map(search_text);
        // Only the conditions in use go into the statement, so each filter can use its
        // index; every value is a bound parameter, never part of the text.
        let mut sql = String::from("SELECT seq, record, hash FROM audit_entries WHERE tenant = $1");
        let mut n = 1;
        let mut cond = |sql: &mut String, text: &str| {
            n += 1;
            let _ = write!(sql, " AND {}", text.replace('?', &format!("${n}")));
        };
        if filter.from_ms.is_some() {
            cond(&mut sql, "at_ms >= ?");
        }
        if filter.to_ms.is_some() {
            cond(&mut sql, "at_ms < ?");
        }
        if actor.is_some() {
            cond(&mut sql, "actor_kind = ?");
        }
        if actor_id.is_some() {
            cond(&mut sql, "actor_id = ?");
        }
        if resident.is_some() {
            cond(&mut sql, "resident = ?");
        }
        if prefix.is_some() {
            // substr/length rather than LIKE: SQLite's LIKE ignores ASCII case and
            // both treat % and _ as wildcards.
            cond(&mut sql, "substr(action, 1, length(?)) = ?");
        }
        let _ = write!(sql, " ORDER BY seq LIMIT ${}", n + 1);
        with_pool!(self, pool => {
            let mut q = sqlx::query(&sql).bind(tenant.as_str());
            if let Some(v) = filter.from_ms {
                q = q.bind(v);
            }
            if let Some(v) = filter.to_ms {
                q = q.bind(v);
            }
            if let Some((kind, _)) = actor {
                q = q.bind(kind);
            }
            if let Some(v) = &actor_id {
                q = q.bind(v);
            }
            if let Some(v) = &resident {
                q = q.bind(v);
            }
            if let Some(v) = &prefix {
                q = q.bind(v);
            }
            let rows = q.bind(i64::from(limit)).fetch_all(pool).await?;
            rows.iter().map(entry_from_row).collect()
        })
    }

    /// Saves a signed checkpoint of `checkpoint.tenant`'s chain (the signature is the
    /// caller's to check). [`StoreError::NotFound`] if the entry does not exist;
    /// [`StoreError::Conflict`] if its hash is not the entry's (a checkpoint never pins
    /// a chain the store does not hold) or there is one at that seq already.
    pub async fn save_checkpoint(&self, checkpoint: &Checkpoint) -> Result<()> {
        let tenant = &checkpoint.tenant;
        let seq = to_i64(checkpoint.seq, "checkpoint seq")?;
        with_pool!(self, pool => {
            let mut tx = pool.begin_write().await?;
            let row = sqlx::query("SELECT hash FROM audit_entries WHERE tenant = $1 AND seq = $2")
                .bind(tenant.as_str())
                .bind(seq)
                .fetch_optional(&mut *tx)
                .await?
                .ok_or(StoreError::NotFound("audit entry"))?;
            if hash_of(row.bytes("hash")?, "audit entry hash")? != checkpoint.hash {
                return Err(StoreError::Conflict("checkpoint hash differs from the entry's"));
            }
            sqlx::query(
                "INSERT INTO audit_checkpoints (tenant, seq, hash, signed_at_ms, signature, key_id) \
                 VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(tenant.as_str())
            .bind(seq)
            .bind(&checkpoint.hash[..])
            .bind(checkpoint.signed_at_ms)
            .bind(&checkpoint.signature)
            .bind(checkpoint.kid.as_bytes())
            .execute(&mut *tx)
            .await
            .map_err(|e| classify(e, "checkpoint", "audit entry"))?;
            tx.commit().await?;
            Ok(())
        })
    }

    /// The tenant's checkpoints, by seq.
    pub async fn checkpoints(&self, tenant: &TenantId) -> Result<Vec<Checkpoint>> {
        with_pool!(self, pool => {
            let rows = sqlx::query(
                "SELECT tenant, seq, hash, signed_at_ms, signature, key_id FROM audit_checkpoints \
                 WHERE tenant = $1 ORDER BY seq",
            )
            .bind(tenant.as_str())
            .fetch_all(pool)
            .await?;
            rows.iter()
                .map(|r| {
                    Ok(Checkpoint {
                        tenant: TenantId::new(&r.text("tenant")?)
                            .map_err(|_| StoreError::Corrupt("tenant id"))?,
                        seq: to_u64(r.int("seq")?, "checkpoint seq")?,
                        hash: hash_of(r.bytes("hash")?, "checkpoint hash")?,
                        signed_at_ms: r.int("signed_at_ms")?,
                        signature: r.bytes("signature")?,
                        kid: KeyId::new(r.bytes("key_id")?)
                            .map_err(|_| StoreError::Corrupt("checkpoint key id"))?,
                    })
                })
                .collect()
        })
    }
}

/// The actor as (kind, id) columns; the kind names match the record's JSON tags.
fn actor_columns(actor: &Actor) -> (&'static str, Option<&str>) {
    match actor {
        Actor::Staff(id) => ("staff", Some(id)),
        Actor::Admin(id) => ("admin", Some(id)),
        Actor::Device(id) => ("device", Some(id)),
        Actor::System => ("system", None),
    }
}

/// A copy of a record field for a search column. PostgreSQL cannot hold NUL in TEXT,
/// and an attacker-chosen login id (`login-failed`) must not be able to make an append
/// fail, so NUL becomes U+FFFD here; the hashed JSON keeps the exact value (escaped).
fn search_text(s: &str) -> String {
    s.replace('\0', "\u{FFFD}")
}

fn hash_of(bytes: Vec<u8>, what: &'static str) -> Result<[u8; HASH_LEN]> {
    <[u8; HASH_LEN]>::try_from(bytes).map_err(|_| StoreError::Corrupt(what))
}

fn entry_from_row(r: &impl Cols) -> Result<AuditEntry> {
    Ok(AuditEntry {
        seq: to_u64(r.int("seq")?, "audit seq")?,
        record: serde_json::from_str(&r.text("record")?)
            .map_err(|_| StoreError::Corrupt("audit record"))?,
        hash: hash_of(r.bytes("hash")?, "audit entry hash")?,
    })
}
