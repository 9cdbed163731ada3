//! Residents (住民記録), their households and the records of the other 15 data kinds
//! imported from the core systems (R1, R8). The importer (`crate::residents::import`)
//! validates a whole file first and hands the rows here; one call applies one full
//! file in one transaction, comparing row hashes with what is stored, so a re-import
//! of the same file writes nothing and a changed file touches only the changed rows.
//!
//! Lookups go through the search-key indexes (`residents_by_*` in migration 0003):
//! by birth date, by folded name or reading (exact or prefix range), by household,
//! by 宛名番号, so their cost depends on how many rows match, not on the city's size
//! (N9).
//!
//! Records returned here hold personal data; their `Debug` shows the 宛名番号 only.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;

use super::backend::{check_id, check_text, to_u64, with_pool, Backend, Cols};
use super::{BackendKind, Result, Store, StoreError};
use crate::model::TenantId;
use crate::residents::report::{
    DeltaAction, DeltaApplied, DeltaConflict, DeltaOp, ImportMode, ImportReportRecord,
    NewImportReport, ReportOutcome, ReportReason,
};

/// Rows per multi-row INSERT: few statements (fast on both backends), well under
/// SQLite's 32,766 and PostgreSQL's 65,535 bound parameters.
const INSERT_BATCH: usize = 400;
/// Keys per `IN (…)` list.
const KEY_BATCH: usize = 500;
/// Most rows a search returns; a counter never needs more.
pub const SEARCH_LIMIT: u32 = 200;

/// A 住民記録 row as the importer writes it.
#[derive(Clone)]
pub struct ResidentRow {
    /// 宛名番号.
    pub atena: String,
    /// 世帯番号.
    pub household: String,
    /// 氏名, exactly as in the file.
    pub name: String,
    /// 氏名フリガナ.
    pub kana: String,
    /// 生年月日 `YYYY-MM-DD`.
    pub birth_date: String,
    /// 性別 code (`1`, `2`, `9`).
    pub sex: String,
    /// 続柄.
    pub relation: String,
    /// 町字コード.
    pub machiaza: String,
    /// 住所 as written.
    pub address: String,
    /// 状態 (在住 / 転出 / 死亡).
    pub status: String,
    /// Folded 氏名 (`residents::fold::fold`).
    pub name_key: String,
    /// Folded reading.
    pub kana_key: String,
    /// Folded address (`residents::fold::fold_address`).
    pub address_key: String,
    /// Every mapped field as JSON (個人番号 encrypted).
    pub data: String,
    /// Hash of the row's content, to detect changes.
    pub hash: Vec<u8>,
}

impl fmt::Debug for ResidentRow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResidentRow")
            .field("atena", &self.atena)
            .finish_non_exhaustive()
    }
}

/// A row of another kind.
#[derive(Clone)]
pub struct RecordRow {
    /// The row's key (the mapping's key fields joined by `|`).
    pub key: String,
    /// The 宛名番号 it belongs to, if the kind has one.
    pub atena: Option<String>,
    /// Every mapped field as JSON.
    pub data: String,
    /// Hash of the row's content.
    pub hash: Vec<u8>,
}

impl fmt::Debug for RecordRow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RecordRow")
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

/// What an applied file was, remembered per kind.
#[derive(Debug, Clone)]
pub struct ImportMark {
    /// The file name.
    pub file: String,
    /// Its data rows.
    pub rows: u64,
    /// SHA-256 of its bytes.
    pub file_hash: Vec<u8>,
    /// The timestamp in its name (`YYYYMMDDhhmmss`), if it has one: files of a kind
    /// must come in this order.
    pub as_of: Option<String>,
}

/// What applying a full file changed. Keys are 宛名番号 or record keys.
#[derive(Debug, Clone, Default)]
pub struct ApplyResult {
    /// Keys added.
    pub added: Vec<String>,
    /// Keys whose content changed, with the stored JSON before the change.
    pub changed: Vec<(String, String)>,
    /// Keys no longer in the file, deleted.
    pub removed: Vec<String>,
    /// Rows identical to the stored ones.
    pub unchanged: u64,
}

/// A stored resident.
#[derive(Clone, PartialEq, Eq)]
pub struct StoredResident {
    /// 宛名番号.
    pub atena: String,
    /// 世帯番号.
    pub household: String,
    /// 氏名, exactly as imported (IVS and all).
    pub name: String,
    /// 氏名フリガナ.
    pub kana: String,
    /// 生年月日 `YYYY-MM-DD`.
    pub birth_date: String,
    /// 性別 code.
    pub sex: String,
    /// 続柄.
    pub relation: String,
    /// 町字コード.
    pub machiaza: String,
    /// 住所.
    pub address: String,
    /// 状態.
    pub status: String,
    /// Every mapped field as JSON (個人番号 encrypted).
    pub data: String,
}

impl fmt::Debug for StoredResident {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoredResident")
            .field("atena", &self.atena)
            .field("household", &self.household)
            .field("status", &self.status)
            .finish_non_exhaustive()
    }
}

/// A stored record of another kind.
#[derive(Clone, PartialEq, Eq)]
pub struct StoredRecord {
    /// The kind id.
    pub kind: String,
    /// The row key.
    pub key: String,
    /// The 宛名番号 it belongs to.
    pub atena: Option<String>,
    /// The mapped fields as JSON.
    pub data: String,
}

impl fmt::Debug for StoredRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoredRecord")
            .field("kind", &self.kind)
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

/// A household (derived from the residents living in it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredHousehold {
    /// 世帯番号.
    pub household: String,
    /// The 世帯主's 宛名番号.
    pub head_atena: Option<String>,
    /// 町字コード.
    pub machiaza: String,
    /// Members living in it.
    pub members: u64,
}

/// Which search key a prefix search reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameKey {
    /// The folded 氏名.
    Kanji,
    /// The folded reading.
    Kana,
}

/// Counts for a tenant (tests, admin screens).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResidentCounts {
    /// Rows in `residents` (every 状態).
    pub residents: u64,
    /// Households with someone living in them.
    pub households: u64,
    /// Records per kind.
    pub records: BTreeMap<String, u64>,
}

const RESIDENT_COLS: &str =
    "atena, household, name, kana, birth_date, sex, relation, machiaza, address, status, data";

fn resident_from_row(r: &impl Cols) -> Result<StoredResident> {
    Ok(StoredResident {
        atena: r.text("atena")?,
        household: r.text("household")?,
        name: r.text("name")?,
        kana: r.text("kana")?,
        birth_date: r.text("birth_date")?,
        sex: r.text("sex")?,
        relation: r.text("relation")?,
        machiaza: r.text("machiaza")?,
        address: r.text("address")?,
        status: r.text("status")?,
        data: r.text("data")?,
    })
}

fn record_from_row(r: &impl Cols) -> Result<StoredRecord> {
    Ok(StoredRecord {
        kind: r.text("kind")?,
        key: r.text("rkey")?,
        atena: r.opt_text("atena")?,
        data: r.text("data")?,
    })
}

/// The smallest string greater than every string starting with `prefix`, for a range
/// scan (`key >= prefix AND key < upper`), which both backends answer from the index.
fn prefix_upper(prefix: &str) -> Option<String> {
    let mut chars: Vec<char> = prefix.chars().collect();
    while let Some(last) = chars.pop() {
        let mut next = u32::from(last) + 1;
        if (0xD800..=0xDFFF).contains(&next) {
            next = 0xE000;
        }
        if let Some(c) = char::from_u32(next) {
            chars.push(c);
            return Some(chars.into_iter().collect());
        }
    }
    None
}

fn placeholders(start: usize, n: usize) -> String {
    (start..start + n)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn check_resident(r: &ResidentRow) -> Result<()> {
    check_id("atena", &r.atena)?;
    for (what, v) in [
        ("household", &r.household),
        ("name", &r.name),
        ("kana", &r.kana),
        ("birth date", &r.birth_date),
        ("sex", &r.sex),
        ("relation", &r.relation),
        ("machiaza", &r.machiaza),
        ("address", &r.address),
        ("status", &r.status),
        ("data", &r.data),
    ] {
        check_text(what, v)?;
    }
    Ok(())
}

/// Takes the per-tenant import lock on PostgreSQL (two instances importing for one
/// city at once would otherwise compute their diffs from the same old state). SQLite's
/// `BEGIN IMMEDIATE` already excludes every other writer.
const PG_IMPORT_LOCK: &str = "SELECT pg_advisory_xact_lock(hashtextextended($1, 3))";

/// Records the applied file for the kind, inside the import's transaction. A macro,
/// not a function, because the transaction's type differs per backend.
macro_rules! upsert_mark {
    ($tx:expr, $tenant:expr, $kind:expr, $mark:expr, $now_ms:expr) => {{
        let rows = i64::try_from($mark.rows).map_err(|_| StoreError::Invalid("import rows"))?;
        sqlx::query(
            "INSERT INTO resident_imports (tenant, kind, file, rows, file_hash, imported_at_ms, as_of) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) \
             ON CONFLICT (tenant, kind) DO UPDATE SET file = excluded.file, rows = excluded.rows, \
             file_hash = excluded.file_hash, imported_at_ms = excluded.imported_at_ms, \
             as_of = COALESCE(excluded.as_of, resident_imports.as_of)",
        )
        .bind($tenant.as_str())
        .bind($kind)
        .bind($mark.file.as_str())
        .bind(rows)
        .bind($mark.file_hash.as_slice())
        .bind($now_ms)
        .bind($mark.as_of.as_deref())
        .execute(&mut *$tx)
        .await?;
    }};
}

/// The last applied file of a kind, read inside the import's transaction: its hash
/// and timestamp. `None` before the first import.
macro_rules! read_mark {
    ($tx:expr, $tenant:expr, $kind:expr) => {{
        let row = sqlx::query(
            "SELECT file_hash, as_of FROM resident_imports WHERE tenant = $1 AND kind = $2",
        )
        .bind($tenant.as_str())
        .bind($kind)
        .fetch_optional(&mut *$tx)
        .await?;
        match row {
            Some(r) => Some((r.bytes("file_hash")?, r.opt_text("as_of")?)),
            None => None,
        }
    }};
}

/// Refuses (inside the transaction) a timestamped file older than the last applied
/// one of its kind: applying it would roll newer data back.
macro_rules! check_order {
    ($tx:expr, $tenant:expr, $kind:expr, $mark:expr) => {{
        if let (Some(new), Some((_, Some(last)))) = (&$mark.as_of, read_mark!($tx, $tenant, $kind))
        {
            if *new < last {
                return Err(StoreError::Conflict(
                    "the file is older than the last one applied",
                ));
            }
        }
    }};
}

/// Deletes rows of `$table` by key (`$col`), in batches.
macro_rules! delete_keys {
    ($tx:expr, $tenant:expr, $sql_head:expr, $first:expr, $binds:expr, $keys:expr) => {{
        for chunk in $keys.chunks(KEY_BATCH) {
            let sql = format!("{} ({})", $sql_head, placeholders($first, chunk.len()));
            let mut q = sqlx::query(&sql).bind($tenant.as_str());
            for b in $binds {
                q = q.bind(b);
            }
            for k in chunk {
                q = q.bind(k.as_str());
            }
            q.execute(&mut *$tx).await?;
        }
    }};
}

/// Inserts resident rows in multi-row batches.
macro_rules! insert_residents {
    ($tx:expr, $tenant:expr, $rows:expr, $now_ms:expr) => {{
        for chunk in $rows.chunks(INSERT_BATCH) {
            let mut qb = sqlx::QueryBuilder::new(
                "INSERT INTO residents (tenant, atena, household, name, kana, birth_date, sex, \
                 relation, machiaza, address, status, name_key, kana_key, address_key, data, \
                 row_hash, imported_at_ms) ",
            );
            qb.push_values(chunk, |mut b, r: &&ResidentRow| {
                b.push_bind($tenant.as_str())
                    .push_bind(r.atena.as_str())
                    .push_bind(r.household.as_str())
                    .push_bind(r.name.as_str())
                    .push_bind(r.kana.as_str())
                    .push_bind(r.birth_date.as_str())
                    .push_bind(r.sex.as_str())
                    .push_bind(r.relation.as_str())
                    .push_bind(r.machiaza.as_str())
                    .push_bind(r.address.as_str())
                    .push_bind(r.status.as_str())
                    .push_bind(r.name_key.as_str())
                    .push_bind(r.kana_key.as_str())
                    .push_bind(r.address_key.as_str())
                    .push_bind(r.data.as_str())
                    .push_bind(r.hash.as_slice())
                    .push_bind($now_ms);
            });
            qb.build()
                .execute(&mut *$tx)
                .await
                .map_err(|e| super::backend::classify(e, "resident", "tenant"))?;
        }
    }};
}

/// Inserts record rows of one kind in multi-row batches.
macro_rules! insert_records {
    ($tx:expr, $tenant:expr, $kind:expr, $rows:expr, $now_ms:expr) => {{
        for chunk in $rows.chunks(INSERT_BATCH * 2) {
            let mut qb = sqlx::QueryBuilder::new(
                "INSERT INTO resident_records (tenant, kind, rkey, atena, data, row_hash, imported_at_ms) ",
            );
            qb.push_values(chunk, |mut b, r: &&RecordRow| {
                b.push_bind($tenant.as_str())
                    .push_bind($kind)
                    .push_bind(r.key.as_str())
                    .push_bind(r.atena.as_deref())
                    .push_bind(r.data.as_str())
                    .push_bind(r.hash.as_slice())
                    .push_bind($now_ms);
            });
            qb.build().execute(&mut *$tx).await.map_err(|e| super::backend::classify(e, "record", "tenant"))?;
        }
    }};
}

/// Recomputes the touched households from the residents living in them.
macro_rules! recompute_households {
    ($tx:expr, $tenant:expr, $touched:expr) => {{
        let touched: Vec<String> = $touched.into_iter().collect();
        for chunk in touched.chunks(KEY_BATCH) {
            let list = placeholders(2, chunk.len());
            let sql = format!("DELETE FROM resident_households WHERE tenant = $1 AND household IN ({list})");
            let mut q = sqlx::query(&sql).bind($tenant.as_str());
            for k in chunk {
                q = q.bind(k.as_str());
            }
            q.execute(&mut *$tx).await?;
            let sql = format!(
                "INSERT INTO resident_households (tenant, household, head_atena, machiaza, address, members) \
                 SELECT tenant, household, MAX(CASE WHEN relation = '世帯主' THEN atena END), \
                 MIN(machiaza), MIN(address), COUNT(*) FROM residents \
                 WHERE tenant = $1 AND status = '在住' AND household IN ({list}) \
                 GROUP BY tenant, household"
            );
            let mut q = sqlx::query(&sql).bind($tenant.as_str());
            for k in chunk {
                q = q.bind(k.as_str());
            }
            q.execute(&mut *$tx).await?;
        }
    }};
}

impl Store {
    /// Applies a full 住民記録 file: adds, updates and deletes residents so that the
    /// tenant's residents are exactly `rows`, recomputes the households touched, and
    /// records `mark`, all in one transaction. `rows` must have unique 宛名番号.
    pub async fn apply_residents(
        &self,
        tenant: &TenantId,
        rows: &[ResidentRow],
        mark: &ImportMark,
        now_ms: i64,
    ) -> Result<ApplyResult> {
        for r in rows {
            check_resident(r)?;
        }
        let is_pg = self.backend() == BackendKind::Postgres;
        with_pool!(self, pool => {
            let mut tx = pool.begin_write().await?;
            if is_pg {
                sqlx::query(PG_IMPORT_LOCK).bind(format!("{}/residents", tenant.as_str())).execute(&mut *tx).await?;
            }
            check_order!(tx, tenant, "jumin", mark);
            let existing = sqlx::query("SELECT atena, household, row_hash FROM residents WHERE tenant = $1")
                .bind(tenant.as_str())
                .fetch_all(&mut *tx)
                .await?;
            let mut old: HashMap<String, (String, Vec<u8>)> = HashMap::with_capacity(existing.len());
            for r in &existing {
                old.insert(r.text("atena")?, (r.text("household")?, r.bytes("row_hash")?));
            }
            drop(existing);
            let mut result = ApplyResult::default();
            let mut to_write: Vec<&ResidentRow> = Vec::new();
            let mut touched: BTreeSet<String> = BTreeSet::new();
            let mut changed_keys: Vec<String> = Vec::new();
            for r in rows {
                match old.remove(&r.atena) {
                    Some((_, hash)) if hash == r.hash => result.unchanged += 1,
                    Some((household, _)) => {
                        touched.insert(household);
                        touched.insert(r.household.clone());
                        changed_keys.push(r.atena.clone());
                        to_write.push(r);
                    }
                    None => {
                        touched.insert(r.household.clone());
                        result.added.push(r.atena.clone());
                        to_write.push(r);
                    }
                }
            }
            let mut removed: Vec<(String, String)> = old.into_iter().map(|(k, (h, _))| (k, h)).collect();
            removed.sort();
            for (_, h) in &removed {
                touched.insert(h.clone());
            }
            result.removed = removed.into_iter().map(|(k, _)| k).collect();

            // The old content of changed rows, for the report's field-level changes.
            for chunk in changed_keys.chunks(KEY_BATCH) {
                let sql = format!(
                    "SELECT atena, data FROM residents WHERE tenant = $1 AND atena IN ({})",
                    placeholders(2, chunk.len())
                );
                let mut q = sqlx::query(&sql).bind(tenant.as_str());
                for k in chunk {
                    q = q.bind(k.as_str());
                }
                for r in q.fetch_all(&mut *tx).await? {
                    result.changed.push((r.text("atena")?, r.text("data")?));
                }
            }
            result.changed.sort();

            let deletes: Vec<&String> = changed_keys.iter().chain(result.removed.iter()).collect();
            for chunk in deletes.chunks(KEY_BATCH) {
                let sql = format!(
                    "DELETE FROM residents WHERE tenant = $1 AND atena IN ({})",
                    placeholders(2, chunk.len())
                );
                let mut q = sqlx::query(&sql).bind(tenant.as_str());
                for k in chunk {
                    q = q.bind(k.as_str());
                }
                q.execute(&mut *tx).await?;
            }
            for chunk in to_write.chunks(INSERT_BATCH) {
                let mut qb = sqlx::QueryBuilder::new(
                    "INSERT INTO residents (tenant, atena, household, name, kana, birth_date, sex, \
                     relation, machiaza, address, status, name_key, kana_key, address_key, data, \
                     row_hash, imported_at_ms) ",
                );
                qb.push_values(chunk, |mut b, r| {
                    b.push_bind(tenant.as_str())
                        .push_bind(r.atena.as_str())
                        .push_bind(r.household.as_str())
                        .push_bind(r.name.as_str())
                        .push_bind(r.kana.as_str())
                        .push_bind(r.birth_date.as_str())
                        .push_bind(r.sex.as_str())
                        .push_bind(r.relation.as_str())
                        .push_bind(r.machiaza.as_str())
                        .push_bind(r.address.as_str())
                        .push_bind(r.status.as_str())
                        .push_bind(r.name_key.as_str())
                        .push_bind(r.kana_key.as_str())
                        .push_bind(r.address_key.as_str())
                        .push_bind(r.data.as_str())
                        .push_bind(r.hash.as_slice())
                        .push_bind(now_ms);
                });
                qb.build().execute(&mut *tx).await.map_err(|e| super::backend::classify(e, "resident", "tenant"))?;
            }

            // Households: recompute the touched ones from the residents living there.
            let touched: Vec<String> = touched.into_iter().collect();
            for chunk in touched.chunks(KEY_BATCH) {
                let list = placeholders(2, chunk.len());
                let sql = format!("DELETE FROM resident_households WHERE tenant = $1 AND household IN ({list})");
                let mut q = sqlx::query(&sql).bind(tenant.as_str());
                for k in chunk {
                    q = q.bind(k.as_str());
                }
                q.execute(&mut *tx).await?;
                let sql = format!(
                    "INSERT INTO resident_households (tenant, household, head_atena, machiaza, address, members) \
                     SELECT tenant, household, MAX(CASE WHEN relation = '世帯主' THEN atena END), \
                     MIN(machiaza), MIN(address), COUNT(*) FROM residents \
                     WHERE tenant = $1 AND status = '在住' AND household IN ({list}) \
                     GROUP BY tenant, household"
                );
                let mut q = sqlx::query(&sql).bind(tenant.as_str());
                for k in chunk {
                    q = q.bind(k.as_str());
                }
                q.execute(&mut *tx).await?;
            }
            upsert_mark!(tx, tenant, "jumin", mark, now_ms);
            tx.commit().await?;
            Ok(result)
        })
    }

    /// Applies a full file of another kind: the tenant's records of `kind` become
    /// exactly `rows` (unique keys), in one transaction.
    pub async fn apply_records(
        &self,
        tenant: &TenantId,
        kind: &str,
        rows: &[RecordRow],
        mark: &ImportMark,
        now_ms: i64,
    ) -> Result<ApplyResult> {
        check_id("kind", kind)?;
        for r in rows {
            check_id("record key", &r.key)?;
            check_text("data", &r.data)?;
            if let Some(a) = &r.atena {
                check_text("atena", a)?;
            }
        }
        let is_pg = self.backend() == BackendKind::Postgres;
        with_pool!(self, pool => {
            let mut tx = pool.begin_write().await?;
            if is_pg {
                sqlx::query(PG_IMPORT_LOCK).bind(format!("{}/{kind}", tenant.as_str())).execute(&mut *tx).await?;
            }
            check_order!(tx, tenant, kind, mark);
            let existing = sqlx::query("SELECT rkey, row_hash FROM resident_records WHERE tenant = $1 AND kind = $2")
                .bind(tenant.as_str())
                .bind(kind)
                .fetch_all(&mut *tx)
                .await?;
            let mut old: HashMap<String, Vec<u8>> = HashMap::with_capacity(existing.len());
            for r in &existing {
                old.insert(r.text("rkey")?, r.bytes("row_hash")?);
            }
            drop(existing);
            let mut result = ApplyResult::default();
            let mut to_write: Vec<&RecordRow> = Vec::new();
            let mut changed_keys: Vec<String> = Vec::new();
            for r in rows {
                match old.remove(&r.key) {
                    Some(hash) if hash == r.hash => result.unchanged += 1,
                    Some(_) => {
                        changed_keys.push(r.key.clone());
                        to_write.push(r);
                    }
                    None => {
                        result.added.push(r.key.clone());
                        to_write.push(r);
                    }
                }
            }
            let mut removed: Vec<String> = old.into_keys().collect();
            removed.sort();
            result.removed = removed;
            for chunk in changed_keys.chunks(KEY_BATCH) {
                let sql = format!(
                    "SELECT rkey, data FROM resident_records WHERE tenant = $1 AND kind = $2 AND rkey IN ({})",
                    placeholders(3, chunk.len())
                );
                let mut q = sqlx::query(&sql).bind(tenant.as_str()).bind(kind);
                for k in chunk {
                    q = q.bind(k.as_str());
                }
                for r in q.fetch_all(&mut *tx).await? {
                    result.changed.push((r.text("rkey")?, r.text("data")?));
                }
            }
            result.changed.sort();
            let deletes: Vec<&String> = changed_keys.iter().chain(result.removed.iter()).collect();
            for chunk in deletes.chunks(KEY_BATCH) {
                let sql = format!(
                    "DELETE FROM resident_records WHERE tenant = $1 AND kind = $2 AND rkey IN ({})",
                    placeholders(3, chunk.len())
                );
                let mut q = sqlx::query(&sql).bind(tenant.as_str()).bind(kind);
                for k in chunk {
                    q = q.bind(k.as_str());
                }
                q.execute(&mut *tx).await?;
            }
            for chunk in to_write.chunks(INSERT_BATCH * 2) {
                let mut qb = sqlx::QueryBuilder::new(
                    "INSERT INTO resident_records (tenant, kind, rkey, atena, data, row_hash, imported_at_ms) ",
                );
                qb.push_values(chunk, |mut b, r| {
                    b.push_bind(tenant.as_str())
                        .push_bind(kind)
                        .push_bind(r.key.as_str())
                        .push_bind(r.atena.as_deref())
                        .push_bind(r.data.as_str())
                        .push_bind(r.hash.as_slice())
                        .push_bind(now_ms);
                });
                qb.build().execute(&mut *tx).await.map_err(|e| super::backend::classify(e, "record", "tenant"))?;
            }
            upsert_mark!(tx, tenant, kind, mark, now_ms);
            tx.commit().await?;
            Ok(result)
        })
    }

    /// The file last applied for a kind, if any (its name and hash).
    pub async fn last_import(&self, tenant: &TenantId, kind: &str) -> Result<Option<ImportMark>> {
        with_pool!(self, pool => {
            let row = sqlx::query("SELECT file, rows, file_hash, as_of FROM resident_imports WHERE tenant = $1 AND kind = $2")
                .bind(tenant.as_str())
                .bind(kind)
                .fetch_optional(pool)
                .await?;
            row.map(|r| -> Result<ImportMark> {
                Ok(ImportMark {
                    file: r.text("file")?,
                    rows: to_u64(r.int("rows")?, "import rows")?,
                    file_hash: r.bytes("file_hash")?,
                    as_of: r.opt_text("as_of")?,
                })
            })
            .transpose()
        })
    }

    /// The resident with this 宛名番号.
    pub async fn resident(&self, tenant: &TenantId, atena: &str) -> Result<Option<StoredResident>> {
        with_pool!(self, pool => {
            let sql = format!("SELECT {RESIDENT_COLS} FROM residents WHERE tenant = $1 AND atena = $2");
            let row = sqlx::query(&sql).bind(tenant.as_str()).bind(atena).fetch_optional(pool).await?;
            row.map(|r| resident_from_row(&r)).transpose()
        })
    }

    /// Residents born on `birth_date` (`YYYY-MM-DD`), at most [`SEARCH_LIMIT`].
    pub async fn residents_born_on(
        &self,
        tenant: &TenantId,
        birth_date: &str,
    ) -> Result<Vec<StoredResident>> {
        with_pool!(self, pool => {
            let sql = format!(
                "SELECT {RESIDENT_COLS} FROM residents WHERE tenant = $1 AND birth_date = $2 LIMIT $3"
            );
            let rows = sqlx::query(&sql)
                .bind(tenant.as_str())
                .bind(birth_date)
                .bind(i64::from(SEARCH_LIMIT))
                .fetch_all(pool)
                .await?;
            // Sorted here: an ORDER BY atena would steer SQLite to the primary key
            // (a scan of the whole tenant) instead of the narrower index.
            let mut found = rows.iter().map(resident_from_row).collect::<Result<Vec<_>>>()?;
            found.sort_by(|a, b| a.atena.cmp(&b.atena));
            Ok(found)
        })
    }

    /// 宛名番号 and folded address of the residents whose folded name is exactly
    /// `name_key`, at most [`SEARCH_LIMIT`]: narrow rows from the name index, for the
    /// card lookup's candidates that match by name and address (the full rows of the
    /// few that do are read afterwards).
    pub async fn resident_addresses_by_name(
        &self,
        tenant: &TenantId,
        name_key: &str,
    ) -> Result<Vec<(String, String)>> {
        with_pool!(self, pool => {
            let rows = sqlx::query(
                "SELECT atena, address_key FROM residents WHERE tenant = $1 AND name_key = $2 LIMIT $3",
            )
            .bind(tenant.as_str())
            .bind(name_key)
            .bind(i64::from(SEARCH_LIMIT))
            .fetch_all(pool)
            .await?;
            rows.iter()
                .map(|r| Ok((r.text("atena")?, r.text("address_key")?)))
                .collect()
        })
    }

    /// Residents whose folded name or reading starts with `prefix` (already folded),
    /// optionally born on `birth_date`; in index order (key, birth date), at most `limit`
    /// (capped at [`SEARCH_LIMIT`]). An empty prefix matches nothing.
    pub async fn residents_by_prefix(
        &self,
        tenant: &TenantId,
        key: NameKey,
        prefix: &str,
        birth_date: Option<&str>,
        limit: u32,
    ) -> Result<Vec<StoredResident>> {
        if prefix.is_empty() {
            return Ok(Vec::new());
        }
        let column = match key {
            NameKey::Kanji => "name_key",
            NameKey::Kana => "kana_key",
        };
        // No upper bound exists only for a prefix of U+10FFFF characters; then a
        // bound above every stored key does the same.
        let upper = prefix_upper(prefix).unwrap_or_else(|| format!("{prefix}\u{10FFFF}"));
        let limit = i64::from(limit.min(SEARCH_LIMIT));
        with_pool!(self, pool => {
            let birth_filter = if birth_date.is_some() { " AND birth_date = $5" } else { "" };
            let sql = format!(
                "SELECT {RESIDENT_COLS} FROM residents WHERE tenant = $1 AND {column} >= $2 AND {column} < $3{birth_filter} \
                 ORDER BY {column}, birth_date LIMIT $4"
            );
            let mut q = sqlx::query(&sql)
                .bind(tenant.as_str())
                .bind(prefix)
                .bind(upper.as_str())
                .bind(limit);
            if let Some(b) = birth_date {
                q = q.bind(b);
            }
            let rows = q.fetch_all(pool).await?;
            rows.iter().map(resident_from_row).collect()
        })
    }

    /// The residents of a household (every 状態), by 宛名番号.
    pub async fn household_members(
        &self,
        tenant: &TenantId,
        household: &str,
    ) -> Result<Vec<StoredResident>> {
        with_pool!(self, pool => {
            let sql = format!(
                "SELECT {RESIDENT_COLS} FROM residents WHERE tenant = $1 AND household = $2 LIMIT $3"
            );
            let rows = sqlx::query(&sql)
                .bind(tenant.as_str())
                .bind(household)
                .bind(i64::from(SEARCH_LIMIT))
                .fetch_all(pool)
                .await?;
            // Sorted here: an ORDER BY atena would steer SQLite to the primary key
            // (a scan of the whole tenant) instead of the narrower index.
            let mut found = rows.iter().map(resident_from_row).collect::<Result<Vec<_>>>()?;
            found.sort_by(|a, b| a.atena.cmp(&b.atena));
            Ok(found)
        })
    }

    /// A household.
    pub async fn household(
        &self,
        tenant: &TenantId,
        household: &str,
    ) -> Result<Option<StoredHousehold>> {
        with_pool!(self, pool => {
            let row = sqlx::query(
                "SELECT household, head_atena, machiaza, members FROM resident_households \
                 WHERE tenant = $1 AND household = $2",
            )
            .bind(tenant.as_str())
            .bind(household)
            .fetch_optional(pool)
            .await?;
            row.map(|r| -> Result<StoredHousehold> {
                Ok(StoredHousehold {
                    household: r.text("household")?,
                    head_atena: r.opt_text("head_atena")?,
                    machiaza: r.text("machiaza")?,
                    members: to_u64(r.int("members")?, "household members")?,
                })
            })
            .transpose()
        })
    }

    /// Every record attached to a 宛名番号 (of every kind, or of one), by kind and key.
    pub async fn records_of(
        &self,
        tenant: &TenantId,
        atena: &str,
        kind: Option<&str>,
    ) -> Result<Vec<StoredRecord>> {
        with_pool!(self, pool => {
            let rows = match kind {
                Some(k) => sqlx::query(
                    "SELECT kind, rkey, atena, data FROM resident_records \
                     WHERE tenant = $1 AND atena = $2 AND kind = $3",
                )
                .bind(tenant.as_str())
                .bind(atena)
                .bind(k)
                .fetch_all(pool)
                .await?,
                None => sqlx::query(
                    "SELECT kind, rkey, atena, data FROM resident_records \
                     WHERE tenant = $1 AND atena = $2",
                )
                .bind(tenant.as_str())
                .bind(atena)
                .fetch_all(pool)
                .await?,
            };
            let mut records = rows.iter().map(record_from_row).collect::<Result<Vec<_>>>()?;
            records.sort_by(|x, y| (&x.kind, &x.key).cmp(&(&y.kind, &y.key)));
            Ok(records)
        })
    }

    /// One record by kind and key.
    pub async fn record(
        &self,
        tenant: &TenantId,
        kind: &str,
        key: &str,
    ) -> Result<Option<StoredRecord>> {
        with_pool!(self, pool => {
            let row = sqlx::query(
                "SELECT kind, rkey, atena, data FROM resident_records WHERE tenant = $1 AND kind = $2 AND rkey = $3",
            )
            .bind(tenant.as_str())
            .bind(kind)
            .bind(key)
            .fetch_optional(pool)
            .await?;
            row.map(|r| record_from_row(&r)).transpose()
        })
    }

    /// How many residents, households and records of each kind a tenant has.
    pub async fn resident_counts(&self, tenant: &TenantId) -> Result<ResidentCounts> {
        with_pool!(self, pool => {
            let residents = sqlx::query("SELECT COUNT(*) AS n FROM residents WHERE tenant = $1")
                .bind(tenant.as_str())
                .fetch_one(pool)
                .await?
                .int("n")?;
            let households = sqlx::query("SELECT COUNT(*) AS n FROM resident_households WHERE tenant = $1")
                .bind(tenant.as_str())
                .fetch_one(pool)
                .await?
                .int("n")?;
            let rows = sqlx::query(
                "SELECT kind, COUNT(*) AS n FROM resident_records WHERE tenant = $1 GROUP BY kind ORDER BY kind",
            )
            .bind(tenant.as_str())
            .fetch_all(pool)
            .await?;
            let mut records = BTreeMap::new();
            for r in &rows {
                records.insert(r.text("kind")?, to_u64(r.int("n")?, "count")?);
            }
            Ok(ResidentCounts {
                residents: to_u64(residents, "count")?,
                households: to_u64(households, "count")?,
                records,
            })
        })
    }
}

/// Conflict reasons of delta rows.
const ADD_EXISTING: &str = "異動区分 追加 (add) of a key that already exists";
const CHANGE_UNKNOWN: &str = "異動区分 変更 (change) of an unknown key";
const REMOVE_UNKNOWN: &str = "異動区分 削除 (remove) of an unknown key";

fn conflicts_of<T>(ops: &[DeltaOp<T>], exists: impl Fn(&str) -> bool) -> Vec<DeltaConflict> {
    ops.iter()
        .filter_map(|op| {
            let reason = match (op.action, exists(&op.key)) {
                (DeltaAction::Add, true) => ADD_EXISTING,
                (DeltaAction::Change, false) => CHANGE_UNKNOWN,
                (DeltaAction::Remove, false) => REMOVE_UNKNOWN,
                _ => return None,
            };
            Some(DeltaConflict {
                line: op.line,
                reason,
            })
        })
        .collect()
}

fn report_from_row(r: &impl Cols) -> Result<ImportReportRecord> {
    let reasons: Vec<ReportReason> = serde_json::from_str(&r.text("reasons")?)
        .map_err(|_| StoreError::Corrupt("import report reasons"))?;
    let count = |c: &str| -> Result<u64> { to_u64(r.int(c)?, "import report count") };
    Ok(ImportReportRecord {
        id: r.int("id")?,
        report: NewImportReport {
            tenant: r.text("tenant")?,
            kind: r.text("kind")?,
            file: r.text("file")?,
            mode: ImportMode::parse(&r.text("mode")?)
                .ok_or(StoreError::Corrupt("import report mode"))?,
            file_hash: hex::encode(r.bytes("file_hash")?),
            as_of: r.opt_text("as_of")?,
            at_ms: r.int("at_ms")?,
            outcome: ReportOutcome::parse(&r.text("outcome")?)
                .ok_or(StoreError::Corrupt("import report outcome"))?,
            rows: count("rows")?,
            added: count("added")?,
            changed: count("changed")?,
            removed: count("removed")?,
            unchanged: count("unchanged")?,
            rejected: count("rejected")?,
            reasons,
        },
    })
}

const REPORT_COLS: &str = "id, tenant, kind, file, mode, file_hash, as_of, at_ms, outcome, rows, \
     added, changed, removed, unchanged, rejected, reasons";

/// Most reports a listing returns.
pub const REPORT_LIST_LIMIT: u32 = 1000;

impl Store {
    /// Applies a 住民記録 delta file (異動分) in one transaction: every add must name
    /// a new 宛名番号, every change or removal an existing one; otherwise nothing is
    /// written and the conflicting lines are returned. The same file (by hash) as the
    /// last applied one changes nothing; a timestamped file older than the last
    /// applied one is refused. Households touched are recomputed.
    pub async fn apply_resident_delta(
        &self,
        tenant: &TenantId,
        ops: &[DeltaOp<ResidentRow>],
        mark: &ImportMark,
        now_ms: i64,
    ) -> Result<DeltaApplied> {
        for op in ops {
            check_id("atena", &op.key)?;
            match (&op.row, op.action) {
                (Some(r), DeltaAction::Add | DeltaAction::Change) if r.atena == op.key => {
                    check_resident(r)?
                }
                (None, DeltaAction::Remove) => {}
                _ => return Err(StoreError::Invalid("delta row")),
            }
        }
        let is_pg = self.backend() == BackendKind::Postgres;
        with_pool!(self, pool => {
            let mut tx = pool.begin_write().await?;
            if is_pg {
                sqlx::query(PG_IMPORT_LOCK).bind(format!("{}/residents", tenant.as_str())).execute(&mut *tx).await?;
            }
            if let Some((hash, last)) = read_mark!(tx, tenant, "jumin") {
                if hash == mark.file_hash {
                    return Ok(DeltaApplied::AlreadyApplied);
                }
                if let (Some(new), Some(last)) = (&mark.as_of, last) {
                    if *new < last {
                        return Ok(DeltaApplied::Older { last });
                    }
                }
            }
            // The stored state of every key the delta names.
            let keys: Vec<&String> = ops.iter().map(|o| &o.key).collect();
            let mut old: HashMap<String, (String, Vec<u8>, String)> = HashMap::with_capacity(keys.len());
            for chunk in keys.chunks(KEY_BATCH) {
                let sql = format!(
                    "SELECT atena, household, row_hash, data FROM residents WHERE tenant = $1 AND atena IN ({})",
                    placeholders(2, chunk.len())
                );
                let mut q = sqlx::query(&sql).bind(tenant.as_str());
                for k in chunk {
                    q = q.bind(k.as_str());
                }
                for r in q.fetch_all(&mut *tx).await? {
                    old.insert(r.text("atena")?, (r.text("household")?, r.bytes("row_hash")?, r.text("data")?));
                }
            }
            let conflicts = conflicts_of(ops, |k| old.contains_key(k));
            if !conflicts.is_empty() {
                return Ok(DeltaApplied::Conflicts(conflicts));
            }
            let mut result = ApplyResult::default();
            let mut to_write: Vec<&ResidentRow> = Vec::new();
            let mut deletes: Vec<String> = Vec::new();
            let mut touched: BTreeSet<String> = BTreeSet::new();
            for op in ops {
                match (op.action, &op.row, old.get(&op.key)) {
                    (DeltaAction::Add, Some(r), _) => {
                        touched.insert(r.household.clone());
                        result.added.push(op.key.clone());
                        to_write.push(r);
                    }
                    (DeltaAction::Change, Some(r), Some((household, hash, data))) => {
                        if *hash == r.hash {
                            result.unchanged += 1;
                        } else {
                            touched.insert(household.clone());
                            touched.insert(r.household.clone());
                            result.changed.push((op.key.clone(), data.clone()));
                            deletes.push(op.key.clone());
                            to_write.push(r);
                        }
                    }
                    (DeltaAction::Remove, _, Some((household, _, _))) => {
                        touched.insert(household.clone());
                        result.removed.push(op.key.clone());
                        deletes.push(op.key.clone());
                    }
                    _ => return Err(StoreError::Invalid("delta row")),
                }
            }
            delete_keys!(tx, tenant, "DELETE FROM residents WHERE tenant = $1 AND atena IN", 2, std::iter::empty::<&str>(), deletes);
            insert_residents!(tx, tenant, to_write, now_ms);
            recompute_households!(tx, tenant, touched);
            upsert_mark!(tx, tenant, "jumin", mark, now_ms);
            tx.commit().await?;
            Ok(DeltaApplied::Applied(result))
        })
    }

    /// Applies a delta file of another kind, with the rules of
    /// [`Store::apply_resident_delta`].
    pub async fn apply_record_delta(
        &self,
        tenant: &TenantId,
        kind: &str,
        ops: &[DeltaOp<RecordRow>],
        mark: &ImportMark,
        now_ms: i64,
    ) -> Result<DeltaApplied> {
        check_id("kind", kind)?;
        for op in ops {
            check_id("record key", &op.key)?;
            match (&op.row, op.action) {
                (Some(r), DeltaAction::Add | DeltaAction::Change) if r.key == op.key => {
                    check_text("data", &r.data)?;
                    if let Some(a) = &r.atena {
                        check_text("atena", a)?;
                    }
                }
                (None, DeltaAction::Remove) => {}
                _ => return Err(StoreError::Invalid("delta row")),
            }
        }
        let is_pg = self.backend() == BackendKind::Postgres;
        with_pool!(self, pool => {
            let mut tx = pool.begin_write().await?;
            if is_pg {
                sqlx::query(PG_IMPORT_LOCK).bind(format!("{}/{kind}", tenant.as_str())).execute(&mut *tx).await?;
            }
            if let Some((hash, last)) = read_mark!(tx, tenant, kind) {
                if hash == mark.file_hash {
                    return Ok(DeltaApplied::AlreadyApplied);
                }
                if let (Some(new), Some(last)) = (&mark.as_of, last) {
                    if *new < last {
                        return Ok(DeltaApplied::Older { last });
                    }
                }
            }
            let keys: Vec<&String> = ops.iter().map(|o| &o.key).collect();
            let mut old: HashMap<String, (Vec<u8>, String)> = HashMap::with_capacity(keys.len());
            for chunk in keys.chunks(KEY_BATCH) {
                let sql = format!(
                    "SELECT rkey, row_hash, data FROM resident_records WHERE tenant = $1 AND kind = $2 AND rkey IN ({})",
                    placeholders(3, chunk.len())
                );
                let mut q = sqlx::query(&sql).bind(tenant.as_str()).bind(kind);
                for k in chunk {
                    q = q.bind(k.as_str());
                }
                for r in q.fetch_all(&mut *tx).await? {
                    old.insert(r.text("rkey")?, (r.bytes("row_hash")?, r.text("data")?));
                }
            }
            let conflicts = conflicts_of(ops, |k| old.contains_key(k));
            if !conflicts.is_empty() {
                return Ok(DeltaApplied::Conflicts(conflicts));
            }
            let mut result = ApplyResult::default();
            let mut to_write: Vec<&RecordRow> = Vec::new();
            let mut deletes: Vec<String> = Vec::new();
            for op in ops {
                match (op.action, &op.row, old.get(&op.key)) {
                    (DeltaAction::Add, Some(r), _) => {
                        result.added.push(op.key.clone());
                        to_write.push(r);
                    }
                    (DeltaAction::Change, Some(r), Some((hash, data))) => {
                        if *hash == r.hash {
                            result.unchanged += 1;
                        } else {
                            result.changed.push((op.key.clone(), data.clone()));
                            deletes.push(op.key.clone());
                            to_write.push(r);
                        }
                    }
                    (DeltaAction::Remove, _, Some(_)) => {
                        result.removed.push(op.key.clone());
                        deletes.push(op.key.clone());
                    }
                    _ => return Err(StoreError::Invalid("delta row")),
                }
            }
            delete_keys!(tx, tenant, "DELETE FROM resident_records WHERE tenant = $1 AND kind = $2 AND rkey IN", 3, [kind], deletes);
            insert_records!(tx, tenant, kind, to_write, now_ms);
            upsert_mark!(tx, tenant, kind, mark, now_ms);
            tx.commit().await?;
            Ok(DeltaApplied::Applied(result))
        })
    }

    /// The timestamp of the newest timestamped file applied for a kind.
    pub async fn last_import_as_of(&self, tenant: &TenantId, kind: &str) -> Result<Option<String>> {
        with_pool!(self, pool => {
            let row = sqlx::query("SELECT as_of FROM resident_imports WHERE tenant = $1 AND kind = $2")
                .bind(tenant.as_str())
                .bind(kind)
                .fetch_optional(pool)
                .await?;
            match row {
                Some(r) => r.opt_text("as_of"),
                None => Ok(None),
            }
        })
    }

    /// Keeps the report of one imported file; returns its id.
    pub async fn record_import_report(&self, report: &NewImportReport) -> Result<i64> {
        let tenant = TenantId::new(&report.tenant).map_err(|_| StoreError::Invalid("tenant"))?;
        check_id("kind", &report.kind)?;
        check_text("file", &report.file)?;
        let hash = hex::decode(&report.file_hash).map_err(|_| StoreError::Invalid("file hash"))?;
        let reasons =
            serde_json::to_string(&report.reasons).map_err(|_| StoreError::Invalid("reasons"))?;
        check_text("reasons", &reasons)?;
        let n = |v: u64| super::backend::to_i64(v, "import report count");
        with_pool!(self, pool => {
            let row = sqlx::query(
                "INSERT INTO resident_import_reports (tenant, kind, file, mode, file_hash, as_of, at_ms, \
                 outcome, rows, added, changed, removed, unchanged, rejected, reasons) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15) RETURNING id",
            )
            .bind(tenant.as_str())
            .bind(report.kind.as_str())
            .bind(report.file.as_str())
            .bind(report.mode.as_str())
            .bind(hash.as_slice())
            .bind(report.as_of.as_deref())
            .bind(report.at_ms)
            .bind(report.outcome.as_str())
            .bind(n(report.rows)?)
            .bind(n(report.added)?)
            .bind(n(report.changed)?)
            .bind(n(report.removed)?)
            .bind(n(report.unchanged)?)
            .bind(n(report.rejected)?)
            .bind(reasons.as_str())
            .fetch_one(pool)
            .await
            .map_err(|e| super::backend::classify(e, "import report", "tenant"))?;
            row.int("id")
        })
    }

    /// The tenant's newest import reports, newest first (at most `limit`, capped at
    /// [`REPORT_LIST_LIMIT`]).
    pub async fn list_import_reports(
        &self,
        tenant: &TenantId,
        limit: u32,
    ) -> Result<Vec<ImportReportRecord>> {
        let limit = i64::from(limit.min(REPORT_LIST_LIMIT));
        with_pool!(self, pool => {
            let sql = format!(
                "SELECT {REPORT_COLS} FROM resident_import_reports WHERE tenant = $1 ORDER BY id DESC LIMIT $2"
            );
            let rows = sqlx::query(&sql).bind(tenant.as_str()).bind(limit).fetch_all(pool).await?;
            rows.iter().map(report_from_row).collect()
        })
    }

    /// One import report of the tenant by id (`None` if it is another tenant's).
    pub async fn import_report(
        &self,
        tenant: &TenantId,
        id: i64,
    ) -> Result<Option<ImportReportRecord>> {
        with_pool!(self, pool => {
            let sql = format!("SELECT {REPORT_COLS} FROM resident_import_reports WHERE tenant = $1 AND id = $2");
            let row = sqlx::query(&sql).bind(tenant.as_str()).bind(id).fetch_optional(pool).await?;
            row.map(|r| report_from_row(&r)).transpose()
        })
    }

    /// Whether a file with this SHA-256 was applied (or found already applied) for
    /// the kind before.
    pub async fn import_applied_before(
        &self,
        tenant: &TenantId,
        kind: &str,
        file_hash: &[u8],
    ) -> Result<bool> {
        with_pool!(self, pool => {
            let row = sqlx::query(
                "SELECT id FROM resident_import_reports WHERE tenant = $1 AND kind = $2 AND file_hash = $3 \
                 AND outcome IN ('applied', 'unchanged') LIMIT 1",
            )
            .bind(tenant.as_str())
            .bind(kind)
            .bind(file_hash)
            .fetch_optional(pool)
            .await?;
            Ok(row.is_some())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_upper_bounds() {
        assert_eq!(prefix_upper("ヤマ").as_deref(), Some("ヤミ"));
        assert_eq!(prefix_upper("a\u{D7FF}").as_deref(), Some("a\u{E000}"));
        assert_eq!(prefix_upper("\u{10FFFF}"), None);
    }
}
