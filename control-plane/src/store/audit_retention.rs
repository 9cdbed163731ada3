//! Retention of the audit log by fiscal year (N8), in the store.
//!
//! A closed year is written to a self-contained archive file
//! ([`crate::audit::export_archive`]) and recorded here ([`Store::record_audit_archive`]).
//! Only a recorded year may be deleted ([`Store::purge_audit_year`]), and only the
//! oldest year still in the log, so that what remains is always one unbroken chain: it
//! starts after the tenant's *base* (the number and hash of the last deleted entry,
//! [`Store::audit_base`]), which `audit verify` chains from. The schema keeps entries
//! append-only (migration 0010): a DELETE passes the trigger only for the entries of
//! an archived year whose purge transaction is running. Recording an archive and
//! deleting a year are audited in the same transaction as the change.

use super::audit::{hash_of, lock_audit_head, push_audit, store_audit_head};
use super::backend::{to_i64, to_u64, with_pool, Backend, Cols};
use super::{Result, Store, StoreError};
use crate::audit::chain::{GENESIS, HASH_LEN};
use crate::audit::fiscal::fiscal_year_bounds;
use crate::model::{AuditRecord, TenantId};

/// Where a tenant's log starts after older years were deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuditBase {
    /// The last deleted entry's number.
    pub seq: u64,
    /// Its hash, which the first kept entry chains from.
    pub hash: [u8; HASH_LEN],
}

/// A fiscal year's place in the log: what an archive of it needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuditYear {
    /// The fiscal year (April to March, Japan time).
    pub fiscal_year: u16,
    /// The number of the entry before the year's first (0: none).
    pub prev_seq: u64,
    /// That entry's hash ([`GENESIS`] for 0).
    pub prev_hash: [u8; HASH_LEN],
    /// How many entries the year has.
    pub count: u64,
}

/// A recorded archive of a fiscal year.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditArchive {
    /// The fiscal year.
    pub fiscal_year: u16,
    /// The year's first entry (`last_seq + 1` when the year is empty).
    pub first_seq: u64,
    /// Its last entry.
    pub last_seq: u64,
    /// The hash of the last entry (the archive's `final_hash`).
    pub final_hash: [u8; HASH_LEN],
    /// SHA-256 (hex) of the whole archive file.
    pub content_sha256: String,
    /// The file's name, for whoever looks for it on the archive medium.
    pub file_name: String,
    /// When it was recorded.
    pub archived_at_ms: i64,
    /// When the year's entries were deleted, if they were.
    pub purged_at_ms: Option<i64>,
}

impl Store {
    /// The tenant's base, if older years were deleted.
    pub async fn audit_base(&self, tenant: &TenantId) -> Result<Option<AuditBase>> {
        with_pool!(self, pool => {
            let row = sqlx::query("SELECT seq, hash FROM audit_bases WHERE tenant = $1")
                .bind(tenant.as_str())
                .fetch_optional(pool)
                .await?;
            row.map(|r| {
                Ok(AuditBase {
                    seq: to_u64(r.int("seq")?, "audit base")?,
                    hash: hash_of(r.bytes("hash")?, "audit base")?,
                })
            })
            .transpose()
        })
    }

    /// Where fiscal year `fy` lies in the tenant's log. Refuses a year whose entries
    /// are not one contiguous run, or whose preceding entry is gone (an older year was
    /// deleted without this one's start being its base).
    pub async fn audit_year(&self, tenant: &TenantId, fy: u16) -> Result<AuditYear> {
        let (start, end) = fiscal_year_bounds(fy);
        let base = self.audit_base(tenant).await?;
        with_pool!(self, pool => {
            let row = sqlx::query(
                "SELECT MIN(seq) AS first, MAX(seq) AS last, COUNT(*) AS n FROM audit_entries \
                 WHERE tenant = $1 AND at_ms >= $2 AND at_ms < $3",
            )
            .bind(tenant.as_str())
            .bind(start)
            .bind(end)
            .fetch_one(pool)
            .await?;
            let count = to_u64(row.int("n")?, "audit count")?;
            let prev_seq = match (row.opt_int("first")?, row.opt_int("last")?) {
                (Some(first), Some(last)) => {
                    if u64::try_from(last - first + 1).ok() != Some(count) {
                        return Err(StoreError::Invalid(
                            "the year's audit entries are not one contiguous run (clock moved back?)",
                        ));
                    }
                    to_u64(first - 1, "audit seq")?
                }
                _ => {
                    let before = sqlx::query(
                        "SELECT MAX(seq) AS last FROM audit_entries WHERE tenant = $1 AND at_ms < $2",
                    )
                    .bind(tenant.as_str())
                    .bind(start)
                    .fetch_one(pool)
                    .await?
                    .opt_int("last")?;
                    match before {
                        Some(s) => to_u64(s, "audit seq")?,
                        None => base.map_or(0, |b| b.seq),
                    }
                }
            };
            let prev_hash = if prev_seq == 0 {
                GENESIS
            } else if base.is_some_and(|b| b.seq == prev_seq) {
                base.map_or(GENESIS, |b| b.hash)
            } else {
                let row = sqlx::query("SELECT hash FROM audit_entries WHERE tenant = $1 AND seq = $2")
                    .bind(tenant.as_str())
                    .bind(to_i64(prev_seq, "audit seq")?)
                    .fetch_optional(pool)
                    .await?
                    .ok_or(StoreError::Invalid(
                        "the entry before this year is gone: delete older years in order",
                    ))?;
                hash_of(row.bytes("hash")?, "audit entry")?
            };
            Ok(AuditYear { fiscal_year: fy, prev_seq, prev_hash, count })
        })
    }

    /// Records that `archive` was written (and verified) by whoever `record` names, in
    /// one transaction with that audit entry. A year is recorded once.
    pub async fn record_audit_archive(
        &self,
        tenant: &TenantId,
        archive: &AuditArchive,
        record: &AuditRecord,
    ) -> Result<()> {
        let t = tenant.as_str();
        with_pool!(self, pool => {
            let mut tx = pool.begin_write().await?;
            let mut head = lock_audit_head!(pool, tx, t);
            let done = sqlx::query(
                "INSERT INTO audit_archives (tenant, fiscal_year, first_seq, last_seq, final_hash, \
                 content_sha256, file_name, archived_at_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
                 ON CONFLICT (tenant, fiscal_year) DO NOTHING",
            )
            .bind(t)
            .bind(i64::from(archive.fiscal_year))
            .bind(to_i64(archive.first_seq, "audit seq")?)
            .bind(to_i64(archive.last_seq, "audit seq")?)
            .bind(&archive.final_hash[..])
            .bind(&archive.content_sha256)
            .bind(&archive.file_name)
            .bind(archive.archived_at_ms)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if done == 0 {
                return Err(StoreError::Conflict("this fiscal year is archived already"));
            }
            push_audit!(tx, head, record);
            store_audit_head!(tx, t, head);
            tx.commit().await?;
            Ok(())
        })
    }

    /// The tenant's recorded archives, oldest year first.
    pub async fn audit_archives(&self, tenant: &TenantId) -> Result<Vec<AuditArchive>> {
        with_pool!(self, pool => {
            let rows = sqlx::query(
                "SELECT fiscal_year, first_seq, last_seq, final_hash, content_sha256, file_name, \
                 archived_at_ms, purged_at_ms FROM audit_archives WHERE tenant = $1 ORDER BY fiscal_year",
            )
            .bind(tenant.as_str())
            .fetch_all(pool)
            .await?;
            rows.iter()
                .map(|r| {
                    Ok(AuditArchive {
                        fiscal_year: u16::try_from(r.int("fiscal_year")?)
                            .map_err(|_| StoreError::Corrupt("fiscal year"))?,
                        first_seq: to_u64(r.int("first_seq")?, "audit seq")?,
                        last_seq: to_u64(r.int("last_seq")?, "audit seq")?,
                        final_hash: hash_of(r.bytes("final_hash")?, "archive hash")?,
                        content_sha256: r.text("content_sha256")?,
                        file_name: r.text("file_name")?,
                        archived_at_ms: r.int("archived_at_ms")?,
                        purged_at_ms: r.opt_int("purged_at_ms")?,
                    })
                })
                .collect()
        })
    }

    /// Deletes the entries (and their checkpoints) of archived fiscal year `fy`, moves
    /// the tenant's base to its last entry and appends `record`, all in one
    /// transaction. Refuses a year that is not recorded as archived, is deleted
    /// already, is not the oldest year left, or whose last entry no longer has the
    /// archive's hash. Whether the year is old enough is the caller's rule
    /// ([`crate::audit::RetentionPolicy`]). Returns how many entries went.
    pub async fn purge_audit_year(
        &self,
        tenant: &TenantId,
        fy: u16,
        record: &AuditRecord,
        now_ms: i64,
    ) -> Result<u64> {
        let t = tenant.as_str();
        with_pool!(self, pool => {
            let mut tx = pool.begin_write().await?;
            let mut head = lock_audit_head!(pool, tx, t);
            let row = sqlx::query(
                "SELECT first_seq, last_seq, final_hash, purged_at_ms FROM audit_archives \
                 WHERE tenant = $1 AND fiscal_year = $2",
            )
            .bind(t)
            .bind(i64::from(fy))
            .fetch_optional(&mut *tx)
            .await?
            .ok_or(StoreError::Invalid("this fiscal year has no recorded archive: archive it first"))?;
            if row.opt_int("purged_at_ms")?.is_some() {
                return Err(StoreError::Conflict("this fiscal year is deleted already"));
            }
            let (first, last) = (row.int("first_seq")?, row.int("last_seq")?);
            let final_hash = hash_of(row.bytes("final_hash")?, "archive hash")?;
            let older = sqlx::query("SELECT COUNT(*) AS n FROM audit_entries WHERE tenant = $1 AND seq < $2")
                .bind(t)
                .bind(first)
                .fetch_one(&mut *tx)
                .await?
                .int("n")?;
            if older > 0 {
                return Err(StoreError::Invalid("older fiscal years are still in the log: delete them first"));
            }
            if last >= first {
                let stored = sqlx::query("SELECT hash FROM audit_entries WHERE tenant = $1 AND seq = $2")
                    .bind(t)
                    .bind(last)
                    .fetch_optional(&mut *tx)
                    .await?
                    .ok_or(StoreError::Invalid("the archived entries are not in the log"))?;
                if hash_of(stored.bytes("hash")?, "audit entry")? != final_hash {
                    return Err(StoreError::Invalid("the log differs from its archive: not deleting"));
                }
            }
            sqlx::query("UPDATE audit_archives SET purging = $3 WHERE tenant = $1 AND fiscal_year = $2")
                .bind(t)
                .bind(i64::from(fy))
                .bind(true)
                .execute(&mut *tx)
                .await?;
            sqlx::query("DELETE FROM audit_checkpoints WHERE tenant = $1 AND seq BETWEEN $2 AND $3")
                .bind(t)
                .bind(first)
                .bind(last)
                .execute(&mut *tx)
                .await?;
            let deleted = sqlx::query("DELETE FROM audit_entries WHERE tenant = $1 AND seq BETWEEN $2 AND $3")
                .bind(t)
                .bind(first)
                .bind(last)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            if u64::try_from(last - first + 1).ok() != Some(deleted) {
                return Err(StoreError::Invalid("the archived entries are not all in the log"));
            }
            if last >= first {
                sqlx::query(
                    "INSERT INTO audit_bases (tenant, seq, hash) VALUES ($1, $2, $3) \
                     ON CONFLICT (tenant) DO UPDATE SET seq = excluded.seq, hash = excluded.hash",
                )
                .bind(t)
                .bind(last)
                .bind(&final_hash[..])
                .execute(&mut *tx)
                .await?;
            }
            sqlx::query(
                "UPDATE audit_archives SET purging = $3, purged_at_ms = $4 \
                 WHERE tenant = $1 AND fiscal_year = $2",
            )
            .bind(t)
            .bind(i64::from(fy))
            .bind(false)
            .bind(now_ms)
            .execute(&mut *tx)
            .await?;
            push_audit!(tx, head, record);
            store_audit_head!(tx, t, head);
            tx.commit().await?;
            Ok(deleted)
        })
    }
}
