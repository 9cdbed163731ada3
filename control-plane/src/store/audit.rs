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

/// The audit chain's head inside a write transaction: read (and on PostgreSQL locked)
/// first, moved by each entry, written back before commit. Every write transaction
/// that appends to the log takes the head first, so concurrent writers of a tenant
/// are ordered the same way as their entries.
pub(super) struct Head {
    pub(super) seq: u64,
    pub(super) hash: [u8; HASH_LEN],
}

/// `lock_audit_head!(pool, tx, tenant)` — reads and locks the tenant's audit head
/// ([`StoreError::NotFound`] if the tenant does not exist).
macro_rules! lock_audit_head {
    ($pool:ident, $tx:ident, $tenant:expr) => {{
        let row = sqlx::query($pool.select_audit_head())
            .bind($tenant)
            .fetch_optional(&mut *$tx)
            .await?
            .ok_or($crate::store::StoreError::NotFound("tenant"))?;
        $crate::store::audit::Head {
            seq: $crate::store::backend::to_u64(row.int("seq")?, "audit head")?,
            hash: <[u8; $crate::audit::chain::HASH_LEN]>::try_from(row.bytes("hash")?)
                .map_err(|_| $crate::store::StoreError::Corrupt("audit head"))?,
        }
    }};
}
pub(crate) use lock_audit_head;

/// `push_audit!(tx, head, record)` — appends one entry after `head`, moves `head`,
/// and evaluates to the [`AuditEntry`]. The record must read back identical from its
/// JSON ([`StoreError::Invalid`] otherwise), or its hash could never verify.
macro_rules! push_audit {
    ($tx:ident, $head:ident, $record:expr) => {{
        let record: &$crate::model::AuditRecord = $record;
        let row = $crate::store::audit::AuditRow::of(record, $head.seq + 1, &$head.hash)?;
        sqlx::query(
            "INSERT INTO audit_entries (tenant, seq, at_ms, actor_kind, actor_id, action, \
             resident, record, hash) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(&record.tenant)
        .bind(row.seq_db)
        .bind(record.at_ms)
        .bind(row.actor_kind)
        .bind(row.actor_id.as_deref())
        .bind(&row.action)
        .bind(row.resident.as_deref())
        .bind(&row.json)
        .bind(&row.hash[..])
        .execute(&mut *$tx)
        .await
        .map_err(|e| $crate::store::backend::classify(e, "audit seq", "tenant"))?;
        $head = $crate::store::audit::Head {
            seq: row.seq,
            hash: row.hash,
        };
        $crate::store::AuditEntry {
            seq: row.seq,
            record: record.clone(),
            hash: row.hash,
        }
    }};
}
pub(crate) use push_audit;

/// `store_audit_head!(tx, tenant, head)` — writes the moved head back.
macro_rules! store_audit_head {
    ($tx:ident, $tenant:expr, $head:ident) => {{
        sqlx::query("UPDATE audit_heads SET seq = $2, hash = $3 WHERE tenant = $1")
            .bind($tenant)
            .bind($crate::store::backend::to_i64($head.seq, "audit seq")?)
            .bind(&$head.hash[..])
            .execute(&mut *$tx)
            .await?;
    }};
}
pub(crate) use store_audit_head;

/// One entry's columns, computed once for every backend.
pub(super) struct AuditRow {
    pub(super) seq: u64,
    pub(super) seq_db: i64,
    pub(super) hash: [u8; HASH_LEN],
    pub(super) json: String,
    pub(super) actor_kind: &'static str,
    pub(super) actor_id: Option<String>,
    pub(super) action: String,
    pub(super) resident: Option<String>,
}

impl AuditRow {
    pub(super) fn of(record: &AuditRecord, seq: u64, prev: &[u8; HASH_LEN]) -> Result<Self> {
        PreparedAudit::new(record)?.chain(seq, prev)
    }
}

/// An audit record checked and encoded, not yet placed in the chain: everything
/// [`AuditRow::of`] does except the hash. A batch ([`Store::record_ingest`]) prepares
/// every record before its transaction, so a record that would not verify is refused
/// alone instead of failing the others.
pub(super) struct PreparedAudit<'a> {
    record: &'a AuditRecord,
    json: String,
}

impl<'a> PreparedAudit<'a> {
    pub(super) fn new(record: &'a AuditRecord) -> Result<Self> {
        let json =
            serde_json::to_string(record).map_err(|_| StoreError::Invalid("audit record"))?;
        // What is stored must parse back to the very record that was hashed, or the
        // chain could not be verified later (e.g. a float that does not round-trip).
        if serde_json::from_str::<AuditRecord>(&json).ok().as_ref() != Some(record) {
            return Err(StoreError::Invalid(
                "audit record (does not round-trip through JSON)",
            ));
        }
        Ok(Self { record, json })
    }

    pub(super) fn tenant(&self) -> &'a str {
        &self.record.tenant
    }

    pub(super) fn chain(self, seq: u64, prev: &[u8; HASH_LEN]) -> Result<AuditRow> {
        let record = self.record;
        let (actor_kind, actor_id) = actor_columns(&record.actor);
        Ok(AuditRow {
            seq,
            seq_db: to_i64(seq, "audit seq")?,
            hash: chain::entry_hash(seq, prev, record),
            json: self.json,
            actor_kind,
            actor_id: actor_id.map(search_text),
            action: search_text(&record.action),
            resident: record.resident.as_deref().map(search_text),
        })
    }
}

/// Rows per multi-row `INSERT` of audit entries (9 parameters each). Kept small:
/// sqlx binds SQLite's `$n` parameters by name, and SQLite finds a name by walking
/// the statement's whole list, so binding costs grow with the square of the
/// parameters in one statement (with 500 rows that was a third of ingest's CPU).
pub(super) const AUDIT_ROWS_PER_INSERT: usize = 32;

/// The text of a multi-row audit `INSERT` of `rows` entries (`$n` numbered from 1).
pub(super) fn audit_insert_sql(rows: usize) -> String {
    let mut sql = String::from(
        "INSERT INTO audit_entries (tenant, seq, at_ms, actor_kind, actor_id, action, \
         resident, record, hash) VALUES ",
    );
    values_list(&mut sql, rows, 9);
    sql
}

/// Appends `(…), (…)` with `rows` groups of `cols` numbered parameters.
pub(super) fn values_list(sql: &mut String, rows: usize, cols: usize) {
    for r in 0..rows {
        sql.push_str(if r == 0 { "(" } else { ", (" });
        for c in 0..cols {
            if c > 0 {
                sql.push_str(", ");
            }
            let _ = write!(sql, "${}", r * cols + c + 1);
        }
        sql.push(')');
    }
}

/// `insert_audit_rows!(tx, rows)` — inserts entries already chained (`rows`: tenant,
/// `at_ms` and the row of each), several per statement.
macro_rules! insert_audit_rows {
    ($tx:ident, $rows:expr) => {{
        let rows: &[(&str, i64, $crate::store::audit::AuditRow)] = $rows;
        for chunk in rows.chunks($crate::store::audit::AUDIT_ROWS_PER_INSERT) {
            let sql = $crate::store::audit::audit_insert_sql(chunk.len());
            let mut q = sqlx::query(&sql);
            for (tenant, at_ms, row) in chunk {
                q = q
                    .bind(*tenant)
                    .bind(row.seq_db)
                    .bind(*at_ms)
                    .bind(row.actor_kind)
                    .bind(row.actor_id.as_deref())
                    .bind(&row.action)
                    .bind(row.resident.as_deref())
                    .bind(&row.json)
                    .bind(&row.hash[..]);
            }
            q.execute(&mut *$tx)
                .await
                .map_err(|e| $crate::store::backend::classify(e, "audit seq", "tenant"))?;
        }
    }};
}
pub(crate) use insert_audit_rows;

impl Store {
    /// Appends `record` to its tenant's chain (`record.tenant`) and returns the entry.
    /// [`StoreError::NotFound`] if the tenant does not exist; [`StoreError::Invalid`]
    /// if the record would not read back identical (so its hash could never verify).
    pub async fn append_audit(&self, record: &AuditRecord) -> Result<AuditEntry> {
        with_pool!(self, pool => {
            let mut tx = pool.begin_write().await?;
            let mut head = lock_audit_head!(pool, tx, &record.tenant);
            let entry = push_audit!(tx, head, record);
            store_audit_head!(tx, &record.tenant, head);
            tx.commit().await?;
            Ok(entry)
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

pub(super) fn hash_of(bytes: Vec<u8>, what: &'static str) -> Result<[u8; HASH_LEN]> {
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
