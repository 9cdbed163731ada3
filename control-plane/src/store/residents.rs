//! Residents (住民記録), their households and the records of the other 15 data kinds
//! imported from the core systems (R1, R8). The importer (`crate::residents::import`)
//! validates a whole file first and hands the rows here; one call applies one full
//! or delta file in one transaction, comparing row hashes with what is stored, so a
//! re-import of the same file writes nothing and a changed file touches only the
//! changed rows.
//!
//! Writing is one generic diff (`apply_full`, `apply_delta`) over one writer per
//! backend (`ImportConn`): on SQLite multi-row `VALUES` and `IN` lists, on PostgreSQL
//! `UNNEST` arrays of 5,000 rows and `= ANY` key arrays, sent unprepared where the
//! plan depends on how big a table is at that moment. Households touched are
//! recomputed from their residents; when most of them were touched (a first import),
//! all of the tenant's in one pass. After a file that changed more than a tenth of a
//! table (as the planner last counted it) commits, the tables it wrote are analysed
//! (`ANALYZE`; on SQLite with `analysis_limit`), so lookups right after a big import
//! are planned for the table as it now is; a small daily delta does not analyse.
//!
//! Lookups go through the search-key indexes (`residents_by_*`, migrations 0003 and
//! 0009): by birth date and by folded name (both covering the folded name, address
//! and 宛名番号, so a card lookup compares without reading rows), by reading (exact
//! or prefix range), by household, by 宛名番号, so their cost depends on how many rows
//! match, not on the city's size (N9). Records of the other kinds carry search keys
//! where their kind has the fields (folded 氏名, 生年月日, folded 世帯主; migration
//! 0011), written with the row, for the counter's lookups over them.
//!
//! Records returned here hold personal data; their `Debug` shows the 宛名番号 only.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::future::Future;

use futures_util::TryStreamExt;
use sqlx::{PgConnection, SqliteConnection};

use super::backend::{check_id, check_text, to_u64, with_pool, Backend, Cols};
use super::{Result, Store, StoreError};
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

/// Most narrow rows [`Store::resident_keys_born_on`] returns: far above the few
/// hundred residents a birth date has in a city of 10⁷.
pub const BIRTH_KEYS_LIMIT: i64 = 20_000;

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
    /// Search keys (migration 0011), derived from the fields by the importer for the
    /// kinds whose mapping has the field, `None` otherwise or when the row leaves it
    /// empty: they find a person moving in (転出証明書情報) from a card through an
    /// index. The folded 氏名 (`residents::fold::fold`).
    pub name_key: Option<String>,
    /// 生年月日 `YYYY-MM-DD`.
    pub birth_date: Option<String>,
    /// The folded 世帯主.
    pub head_key: Option<String>,
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

impl ApplyResult {
    /// Rows added, changed or removed.
    pub fn writes(&self) -> usize {
        self.added.len() + self.changed.len() + self.removed.len()
    }
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

fn check_record_kind(kind: &str) -> Result<()> {
    check_id("kind", kind)
}

fn check_record(r: &RecordRow) -> Result<()> {
    check_id("record key", &r.key)?;
    check_text("data", &r.data)?;
    if let Some(a) = &r.atena {
        check_text("atena", a)?;
    }
    Ok(())
}

/// Takes the per-tenant import lock on PostgreSQL (two instances importing for one
/// city at once would otherwise compute their diffs from the same old state). SQLite's
/// `BEGIN IMMEDIATE` already excludes every other writer.
const PG_IMPORT_LOCK: &str = "SELECT pg_advisory_xact_lock(hashtextextended($1, 3))";

/// Rows per `UNNEST` insert and keys per `= ANY($n)` array on PostgreSQL: one
/// statement carries thousands of rows as a few array parameters.
const PG_BATCH: usize = 5_000;

/// The table one import writes: the residents, or the records of one kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Table<'a> {
    Residents,
    Records(&'a str),
}

impl<'a> Table<'a> {
    /// The kind id the import mark is kept under.
    fn kind(&self) -> &'a str {
        match self {
            Self::Residents => "jumin",
            Self::Records(kind) => kind,
        }
    }

    /// The PostgreSQL advisory lock's key.
    fn lock_key(&self, tenant: &str) -> String {
        match self {
            Self::Residents => format!("{tenant}/residents"),
            Self::Records(kind) => format!("{tenant}/{kind}"),
        }
    }

    /// The table's rows of the tenant (and kind): `FROM …` text where `$1` is the
    /// tenant and `$2` the kind for records; its key column; the first free parameter.
    fn scope(&self) -> (&'static str, &'static str, usize) {
        match self {
            Self::Residents => ("residents WHERE tenant = $1", "atena", 2),
            Self::Records(_) => (
                "resident_records WHERE tenant = $1 AND kind = $2",
                "rkey",
                3,
            ),
        }
    }

    /// The household column, or a NULL in its place for records.
    fn household_column(&self) -> &'static str {
        match self {
            Self::Residents => "household",
            Self::Records(_) => "NULL AS household",
        }
    }

    /// `SELECT` of the key, household, hash and content of the scope's rows.
    fn select_rows(&self) -> String {
        let (scope, key, _) = self.scope();
        format!(
            "SELECT {key} AS k, {}, row_hash, data FROM {scope}",
            self.household_column()
        )
    }
}

/// What a key holds now, for the diff.
struct Stored {
    household: Option<String>,
    hash: Vec<u8>,
}

/// A stored row with its content (a changed row's old JSON goes into the report).
struct StoredRow {
    key: String,
    stored: Stored,
    data: String,
}

fn stored_row(r: &impl Cols) -> Result<StoredRow> {
    Ok(StoredRow {
        key: r.text("k")?,
        stored: Stored {
            household: r.opt_text("household")?,
            hash: r.bytes("row_hash")?,
        },
        data: r.text("data")?,
    })
}

/// A row an import writes.
trait ImportRow: Sync {
    fn key(&self) -> &str;
    fn hash(&self) -> &[u8];
    /// The household it lives in (residents only).
    fn household(&self) -> Option<&str>;
    /// Inserts the rows into `table`.
    fn insert<C: ImportConn>(
        c: &mut C,
        tenant: &str,
        table: Table<'_>,
        rows: &[&Self],
        now_ms: i64,
    ) -> impl Future<Output = Result<()>> + Send;
}

impl ImportRow for ResidentRow {
    fn key(&self) -> &str {
        &self.atena
    }
    fn hash(&self) -> &[u8] {
        &self.hash
    }
    fn household(&self) -> Option<&str> {
        Some(&self.household)
    }
    fn insert<C: ImportConn>(
        c: &mut C,
        tenant: &str,
        _table: Table<'_>,
        rows: &[&Self],
        now_ms: i64,
    ) -> impl Future<Output = Result<()>> + Send {
        c.insert_residents(tenant, rows, now_ms)
    }
}

impl ImportRow for RecordRow {
    fn key(&self) -> &str {
        &self.key
    }
    fn hash(&self) -> &[u8] {
        &self.hash
    }
    fn household(&self) -> Option<&str> {
        None
    }
    fn insert<C: ImportConn>(
        c: &mut C,
        tenant: &str,
        table: Table<'_>,
        rows: &[&Self],
        now_ms: i64,
    ) -> impl Future<Output = Result<()>> + Send {
        c.insert_records(tenant, table.kind(), rows, now_ms)
    }
}

/// The statements of an import, on the connection of its transaction: one writer per
/// table, set-based on each backend (multi-row `VALUES` and `IN` lists on SQLite,
/// `UNNEST` and `= ANY` arrays on PostgreSQL). The diff itself is computed once, in
/// [`apply_full`] and [`apply_delta`].
trait ImportConn: Send {
    /// Serialises imports of the table for the tenant (PostgreSQL; SQLite's write
    /// transaction already does).
    fn lock(&mut self, key: &str) -> impl Future<Output = Result<()>> + Send;
    /// The last applied file's hash and timestamp, if any.
    fn read_mark(
        &mut self,
        tenant: &str,
        kind: &str,
    ) -> impl Future<Output = Result<Option<(Vec<u8>, Option<String>)>>> + Send;
    /// Records the applied file.
    fn upsert_mark(
        &mut self,
        tenant: &str,
        kind: &str,
        mark: &ImportMark,
        now_ms: i64,
    ) -> impl Future<Output = Result<()>> + Send;
    /// Every stored key of the table (for the tenant and kind) with its hash.
    fn stored_hashes(
        &mut self,
        tenant: &str,
        table: Table<'_>,
    ) -> impl Future<Output = Result<HashMap<String, Stored>>> + Send;
    /// The stored rows of these keys (absent keys are left out).
    fn stored_rows(
        &mut self,
        tenant: &str,
        table: Table<'_>,
        keys: &[&str],
    ) -> impl Future<Output = Result<Vec<StoredRow>>> + Send;
    /// Deletes the rows of these keys.
    fn delete(
        &mut self,
        tenant: &str,
        table: Table<'_>,
        keys: &[&str],
    ) -> impl Future<Output = Result<()>> + Send;
    fn insert_residents(
        &mut self,
        tenant: &str,
        rows: &[&ResidentRow],
        now_ms: i64,
    ) -> impl Future<Output = Result<()>> + Send;
    fn insert_records(
        &mut self,
        tenant: &str,
        kind: &str,
        rows: &[&RecordRow],
        now_ms: i64,
    ) -> impl Future<Output = Result<()>> + Send;
    /// Recomputes these households from the residents living in them.
    fn recompute_households(
        &mut self,
        tenant: &str,
        touched: &[&str],
    ) -> impl Future<Output = Result<()>> + Send;
    /// Recomputes every household of the tenant in one pass (when most were touched).
    fn recompute_all_households(&mut self, tenant: &str)
        -> impl Future<Output = Result<()>> + Send;
}

/// Inserts the households of the residents `WHERE tenant = $1 AND status = '在住'`
/// and the condition the caller appends, then `GROUP BY tenant, household`.
const HOUSEHOLDS_INSERT: &str =
    "INSERT INTO resident_households (tenant, household, head_atena, machiaza, address, members) \
     SELECT tenant, household, MAX(CASE WHEN relation = '世帯主' THEN atena END), \
     MIN(machiaza), MIN(address), COUNT(*) FROM residents \
     WHERE tenant = $1 AND status = '在住'";

/// The methods whose SQL is the same on both backends, expanded in each impl.
macro_rules! shared_import_ops {
    () => {
        async fn read_mark(
            &mut self,
            tenant: &str,
            kind: &str,
        ) -> Result<Option<(Vec<u8>, Option<String>)>> {
            let row = sqlx::query(
                "SELECT file_hash, as_of FROM resident_imports WHERE tenant = $1 AND kind = $2",
            )
            .bind(tenant)
            .bind(kind)
            .fetch_optional(&mut *self)
            .await?;
            match row {
                Some(r) => Ok(Some((r.bytes("file_hash")?, r.opt_text("as_of")?))),
                None => Ok(None),
            }
        }

        async fn upsert_mark(
            &mut self,
            tenant: &str,
            kind: &str,
            mark: &ImportMark,
            now_ms: i64,
        ) -> Result<()> {
            let rows =
                i64::try_from(mark.rows).map_err(|_| StoreError::Invalid("import rows"))?;
            sqlx::query(
                "INSERT INTO resident_imports (tenant, kind, file, rows, file_hash, imported_at_ms, as_of) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7) \
                 ON CONFLICT (tenant, kind) DO UPDATE SET file = excluded.file, rows = excluded.rows, \
                 file_hash = excluded.file_hash, imported_at_ms = excluded.imported_at_ms, \
                 as_of = COALESCE(excluded.as_of, resident_imports.as_of)",
            )
            .bind(tenant)
            .bind(kind)
            .bind(mark.file.as_str())
            .bind(rows)
            .bind(mark.file_hash.as_slice())
            .bind(now_ms)
            .bind(mark.as_of.as_deref())
            .execute(&mut *self)
            .await?;
            Ok(())
        }

        async fn stored_hashes(
            &mut self,
            tenant: &str,
            table: Table<'_>,
        ) -> Result<HashMap<String, Stored>> {
            let (scope, key, _) = table.scope();
            let sql = format!(
                "SELECT {key} AS k, {}, row_hash FROM {scope}",
                table.household_column()
            );
            let mut q = sqlx::query(&sql).bind(tenant);
            if let Table::Records(kind) = table {
                q = q.bind(kind);
            }
            // Streamed: the whole table of the tenant is read, without a list of rows
            // beside the map.
            let mut rows = q.fetch(&mut *self);
            let mut old = HashMap::new();
            while let Some(r) = rows.try_next().await? {
                old.insert(
                    r.text("k")?,
                    Stored {
                        household: r.opt_text("household")?,
                        hash: r.bytes("row_hash")?,
                    },
                );
            }
            Ok(old)
        }

        async fn recompute_all_households(&mut self, tenant: &str) -> Result<()> {
            sqlx::query("DELETE FROM resident_households WHERE tenant = $1")
                .bind(tenant)
                .execute(&mut *self)
                .await?;
            sqlx::query(&format!("{HOUSEHOLDS_INSERT} GROUP BY tenant, household"))
                .bind(tenant)
                .execute(&mut *self)
                .await?;
            Ok(())
        }
    };
}

impl ImportConn for SqliteConnection {
    shared_import_ops!();

    async fn lock(&mut self, _key: &str) -> Result<()> {
        Ok(())
    }

    async fn stored_rows(
        &mut self,
        tenant: &str,
        table: Table<'_>,
        keys: &[&str],
    ) -> Result<Vec<StoredRow>> {
        let (_, key, first) = table.scope();
        let mut found = Vec::with_capacity(keys.len());
        for chunk in keys.chunks(KEY_BATCH) {
            let sql = format!(
                "{} AND {key} IN ({})",
                table.select_rows(),
                placeholders(first, chunk.len())
            );
            let mut q = sqlx::query(&sql).bind(tenant);
            if let Table::Records(kind) = table {
                q = q.bind(kind);
            }
            for k in chunk {
                q = q.bind(*k);
            }
            for r in q.fetch_all(&mut *self).await? {
                found.push(stored_row(&r)?);
            }
        }
        Ok(found)
    }

    async fn delete(&mut self, tenant: &str, table: Table<'_>, keys: &[&str]) -> Result<()> {
        let (scope, key, first) = table.scope();
        for chunk in keys.chunks(KEY_BATCH) {
            let sql = format!(
                "DELETE FROM {scope} AND {key} IN ({})",
                placeholders(first, chunk.len())
            );
            let mut q = sqlx::query(&sql).bind(tenant);
            if let Table::Records(kind) = table {
                q = q.bind(kind);
            }
            for k in chunk {
                q = q.bind(*k);
            }
            q.execute(&mut *self).await?;
        }
        Ok(())
    }

    async fn insert_residents(
        &mut self,
        tenant: &str,
        rows: &[&ResidentRow],
        now_ms: i64,
    ) -> Result<()> {
        for chunk in rows.chunks(INSERT_BATCH) {
            let mut qb = sqlx::QueryBuilder::new(
                "INSERT INTO residents (tenant, atena, household, name, kana, birth_date, sex, \
                 relation, machiaza, address, status, name_key, kana_key, address_key, data, \
                 row_hash, imported_at_ms) ",
            );
            qb.push_values(chunk, |mut b, r| {
                b.push_bind(tenant)
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
            qb.build()
                .execute(&mut *self)
                .await
                .map_err(|e| super::backend::classify(e, "resident", "tenant"))?;
        }
        Ok(())
    }

    async fn insert_records(
        &mut self,
        tenant: &str,
        kind: &str,
        rows: &[&RecordRow],
        now_ms: i64,
    ) -> Result<()> {
        for chunk in rows.chunks(INSERT_BATCH * 2) {
            let mut qb = sqlx::QueryBuilder::new(
                "INSERT INTO resident_records (tenant, kind, rkey, atena, name_key, birth_date, \
                 head_key, data, row_hash, imported_at_ms) ",
            );
            qb.push_values(chunk, |mut b, r| {
                b.push_bind(tenant)
                    .push_bind(kind)
                    .push_bind(r.key.as_str())
                    .push_bind(r.atena.as_deref())
                    .push_bind(r.name_key.as_deref())
                    .push_bind(r.birth_date.as_deref())
                    .push_bind(r.head_key.as_deref())
                    .push_bind(r.data.as_str())
                    .push_bind(r.hash.as_slice())
                    .push_bind(now_ms);
            });
            qb.build()
                .execute(&mut *self)
                .await
                .map_err(|e| super::backend::classify(e, "record", "tenant"))?;
        }
        Ok(())
    }

    async fn recompute_households(&mut self, tenant: &str, touched: &[&str]) -> Result<()> {
        for chunk in touched.chunks(KEY_BATCH) {
            let list = placeholders(2, chunk.len());
            for sql in [
                format!(
                    "DELETE FROM resident_households WHERE tenant = $1 AND household IN ({list})"
                ),
                format!("{HOUSEHOLDS_INSERT} AND household IN ({list}) GROUP BY tenant, household"),
            ] {
                let mut q = sqlx::query(&sql).bind(tenant);
                for k in chunk {
                    q = q.bind(*k);
                }
                q.execute(&mut *self).await?;
            }
        }
        Ok(())
    }
}

// PostgreSQL: statements whose best plan depends on how big the tables are right now
// are sent unprepared (`persistent(false)`), so each is planned with its parameters.
// A cached generic plan made while a table was small (early in an import, or in a
// fresh database) would otherwise keep scanning the whole table once it is large.
impl ImportConn for PgConnection {
    shared_import_ops!();

    async fn lock(&mut self, key: &str) -> Result<()> {
        sqlx::query(PG_IMPORT_LOCK)
            .bind(key)
            .execute(&mut *self)
            .await?;
        Ok(())
    }

    async fn stored_rows(
        &mut self,
        tenant: &str,
        table: Table<'_>,
        keys: &[&str],
    ) -> Result<Vec<StoredRow>> {
        let (_, key, first) = table.scope();
        let sql = format!("{} AND {key} = ANY(${first})", table.select_rows());
        let mut found = Vec::with_capacity(keys.len());
        for chunk in keys.chunks(PG_BATCH) {
            let mut q = sqlx::query(&sql).persistent(false).bind(tenant);
            if let Table::Records(kind) = table {
                q = q.bind(kind);
            }
            let mut rows = q.bind(chunk).fetch(&mut *self);
            while let Some(r) = rows.try_next().await? {
                found.push(stored_row(&r)?);
            }
        }
        Ok(found)
    }

    async fn delete(&mut self, tenant: &str, table: Table<'_>, keys: &[&str]) -> Result<()> {
        let (scope, key, first) = table.scope();
        let sql = format!("DELETE FROM {scope} AND {key} = ANY(${first})");
        for chunk in keys.chunks(PG_BATCH) {
            let mut q = sqlx::query(&sql).persistent(false).bind(tenant);
            if let Table::Records(kind) = table {
                q = q.bind(kind);
            }
            q.bind(chunk).execute(&mut *self).await?;
        }
        Ok(())
    }

    async fn insert_residents(
        &mut self,
        tenant: &str,
        rows: &[&ResidentRow],
        now_ms: i64,
    ) -> Result<()> {
        const SQL: &str =
            "INSERT INTO residents (tenant, atena, household, name, kana, birth_date, \
             sex, relation, machiaza, address, status, name_key, kana_key, address_key, data, \
             row_hash, imported_at_ms) \
             SELECT $1::text, u.*, $17::bigint FROM UNNEST($2::text[], $3::text[], $4::text[], \
             $5::text[], $6::text[], $7::text[], $8::text[], $9::text[], $10::text[], $11::text[], \
             $12::text[], $13::text[], $14::text[], $15::text[], $16::bytea[]) AS u";
        for chunk in rows.chunks(PG_BATCH) {
            let col = |f: fn(&ResidentRow) -> &str| chunk.iter().map(|r| f(r)).collect::<Vec<_>>();
            sqlx::query(SQL)
                .bind(tenant)
                .bind(col(|r| &r.atena))
                .bind(col(|r| &r.household))
                .bind(col(|r| &r.name))
                .bind(col(|r| &r.kana))
                .bind(col(|r| &r.birth_date))
                .bind(col(|r| &r.sex))
                .bind(col(|r| &r.relation))
                .bind(col(|r| &r.machiaza))
                .bind(col(|r| &r.address))
                .bind(col(|r| &r.status))
                .bind(col(|r| &r.name_key))
                .bind(col(|r| &r.kana_key))
                .bind(col(|r| &r.address_key))
                .bind(col(|r| &r.data))
                .bind(chunk.iter().map(|r| r.hash.as_slice()).collect::<Vec<_>>())
                .bind(now_ms)
                .execute(&mut *self)
                .await
                .map_err(|e| super::backend::classify(e, "resident", "tenant"))?;
        }
        Ok(())
    }

    async fn insert_records(
        &mut self,
        tenant: &str,
        kind: &str,
        rows: &[&RecordRow],
        now_ms: i64,
    ) -> Result<()> {
        const SQL: &str =
            "INSERT INTO resident_records (tenant, kind, rkey, atena, name_key, birth_date, \
             head_key, data, row_hash, imported_at_ms) \
             SELECT $1::text, $2::text, u.*, $10::bigint \
             FROM UNNEST($3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[], \
             $9::bytea[]) AS u";
        for chunk in rows.chunks(PG_BATCH) {
            sqlx::query(SQL)
                .bind(tenant)
                .bind(kind)
                .bind(chunk.iter().map(|r| r.key.as_str()).collect::<Vec<_>>())
                .bind(chunk.iter().map(|r| r.atena.as_deref()).collect::<Vec<_>>())
                .bind(
                    chunk
                        .iter()
                        .map(|r| r.name_key.as_deref())
                        .collect::<Vec<_>>(),
                )
                .bind(
                    chunk
                        .iter()
                        .map(|r| r.birth_date.as_deref())
                        .collect::<Vec<_>>(),
                )
                .bind(
                    chunk
                        .iter()
                        .map(|r| r.head_key.as_deref())
                        .collect::<Vec<_>>(),
                )
                .bind(chunk.iter().map(|r| r.data.as_str()).collect::<Vec<_>>())
                .bind(chunk.iter().map(|r| r.hash.as_slice()).collect::<Vec<_>>())
                .bind(now_ms)
                .execute(&mut *self)
                .await
                .map_err(|e| super::backend::classify(e, "record", "tenant"))?;
        }
        Ok(())
    }

    async fn recompute_households(&mut self, tenant: &str, touched: &[&str]) -> Result<()> {
        let delete = "DELETE FROM resident_households WHERE tenant = $1 AND household = ANY($2)";
        let insert =
            format!("{HOUSEHOLDS_INSERT} AND household = ANY($2) GROUP BY tenant, household");
        for chunk in touched.chunks(PG_BATCH) {
            for sql in [delete, insert.as_str()] {
                sqlx::query(sql)
                    .persistent(false)
                    .bind(tenant)
                    .bind(chunk)
                    .execute(&mut *self)
                    .await?;
            }
        }
        Ok(())
    }
}

/// Applies a full file to `table` on `c` (inside the caller's transaction): the
/// tenant's rows become exactly `rows`.
async fn apply_full<C: ImportConn, R: ImportRow>(
    c: &mut C,
    tenant: &str,
    table: Table<'_>,
    rows: &[R],
    mark: &ImportMark,
    now_ms: i64,
) -> Result<ApplyResult> {
    c.lock(&table.lock_key(tenant)).await?;
    if let (Some(new), Some((_, Some(last)))) =
        (&mark.as_of, c.read_mark(tenant, table.kind()).await?)
    {
        if *new < last {
            return Err(StoreError::Conflict(
                "the file is older than the last one applied",
            ));
        }
    }
    let mut old = c.stored_hashes(tenant, table).await?;
    let mut result = ApplyResult::default();
    let mut to_write: Vec<&R> = Vec::new();
    let mut touched: BTreeSet<String> = BTreeSet::new();
    let mut changed_keys: Vec<&str> = Vec::new();
    for r in rows {
        match old.remove(r.key()) {
            Some(s) if s.hash == r.hash() => result.unchanged += 1,
            Some(s) => {
                touched.extend(s.household);
                touched.extend(r.household().map(str::to_owned));
                changed_keys.push(r.key());
                to_write.push(r);
            }
            None => {
                touched.extend(r.household().map(str::to_owned));
                result.added.push(r.key().to_owned());
                to_write.push(r);
            }
        }
    }
    let mut removed: Vec<(String, Stored)> = old.into_iter().collect();
    removed.sort_by(|a, b| a.0.cmp(&b.0));
    for (key, s) in removed {
        touched.extend(s.household);
        result.removed.push(key);
    }
    // The old content of changed rows, for the report's field-level changes.
    result.changed = c
        .stored_rows(tenant, table, &changed_keys)
        .await?
        .into_iter()
        .map(|s| (s.key, s.data))
        .collect();
    result.changed.sort();
    let deletes: Vec<&str> = changed_keys
        .iter()
        .copied()
        .chain(result.removed.iter().map(String::as_str))
        .collect();
    c.delete(tenant, table, &deletes).await?;
    R::insert(c, tenant, table, &to_write, now_ms).await?;
    if table == Table::Residents && !touched.is_empty() {
        // When most households were touched (a first import), one pass over the
        // tenant's residents beats a lookup per household.
        if touched.len() * 4 >= rows.len() {
            c.recompute_all_households(tenant).await?;
        } else {
            let touched: Vec<&str> = touched.iter().map(String::as_str).collect();
            c.recompute_households(tenant, &touched).await?;
        }
    }
    c.upsert_mark(tenant, table.kind(), mark, now_ms).await?;
    Ok(result)
}

/// Applies a delta file to `table` on `c` (inside the caller's transaction); see
/// [`Store::apply_resident_delta`].
async fn apply_delta<C: ImportConn, R: ImportRow>(
    c: &mut C,
    tenant: &str,
    table: Table<'_>,
    ops: &[DeltaOp<R>],
    mark: &ImportMark,
    now_ms: i64,
) -> Result<DeltaApplied> {
    c.lock(&table.lock_key(tenant)).await?;
    if let Some((hash, last)) = c.read_mark(tenant, table.kind()).await? {
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
    let keys: Vec<&str> = ops.iter().map(|o| o.key.as_str()).collect();
    let old: HashMap<String, (Stored, String)> = c
        .stored_rows(tenant, table, &keys)
        .await?
        .into_iter()
        .map(|s| (s.key, (s.stored, s.data)))
        .collect();
    let conflicts = conflicts_of(ops, |k| old.contains_key(k));
    if !conflicts.is_empty() {
        return Ok(DeltaApplied::Conflicts(conflicts));
    }
    let mut result = ApplyResult::default();
    let mut to_write: Vec<&R> = Vec::new();
    let mut deletes: Vec<&str> = Vec::new();
    let mut touched: BTreeSet<&str> = BTreeSet::new();
    for op in ops {
        match (op.action, &op.row, old.get(&op.key)) {
            (DeltaAction::Add, Some(r), _) => {
                touched.extend(r.household());
                result.added.push(op.key.clone());
                to_write.push(r);
            }
            (DeltaAction::Change, Some(r), Some((s, data))) => {
                if s.hash == r.hash() {
                    result.unchanged += 1;
                } else {
                    touched.extend(s.household.as_deref());
                    touched.extend(r.household());
                    result.changed.push((op.key.clone(), data.clone()));
                    deletes.push(&op.key);
                    to_write.push(r);
                }
            }
            (DeltaAction::Remove, _, Some((s, _))) => {
                touched.extend(s.household.as_deref());
                result.removed.push(op.key.clone());
                deletes.push(&op.key);
            }
            _ => return Err(StoreError::Invalid("delta row")),
        }
    }
    c.delete(tenant, table, &deletes).await?;
    R::insert(c, tenant, table, &to_write, now_ms).await?;
    if table == Table::Residents && !touched.is_empty() {
        let touched: Vec<&str> = touched.into_iter().collect();
        c.recompute_households(tenant, &touched).await?;
    }
    c.upsert_mark(tenant, table.kind(), mark, now_ms).await?;
    Ok(DeltaApplied::Applied(result))
}

/// A file that changed more than this share of a table's rows (as the planner last
/// counted them) refreshes the table's statistics once it has committed.
const STATS_SHARE: f64 = 0.10;

/// How many rows of each index SQLite's `ANALYZE` reads after a large import
/// (`PRAGMA analysis_limit`): enough for the planner's estimates, and it keeps the
/// refresh to milliseconds at 10⁷ residents instead of a scan of every index.
const SQLITE_ANALYSIS_LIMIT: i64 = 1_000;

impl Table<'_> {
    /// The tables an import of this kind writes, whose statistics it may refresh.
    fn written_tables(&self) -> &'static [&'static str] {
        match self {
            Self::Residents => &["residents", "resident_households"],
            Self::Records(_) => &["resident_records"],
        }
    }
}

impl Store {
    /// After a file that changed `changed` rows of `table` committed: when that is a
    /// large share of the table (more than [`STATS_SHARE`] of the rows the planner
    /// last counted, or the table was never counted, as after a first import),
    /// refreshes the statistics of the tables the import writes, so the lookups are
    /// planned for the table as it is now rather than as it was before the import
    /// (until autovacuum would get to it). A small daily delta on a large table
    /// changes a tiny share and costs one catalogue read. On PostgreSQL `ANALYZE`
    /// (a sample of 30,000 rows per table); on SQLite `ANALYZE` with
    /// [`SQLITE_ANALYSIS_LIMIT`]. The file is already applied: a failure here is
    /// logged and does not fail the import.
    async fn refresh_statistics(&self, table: Table<'_>, changed: usize) {
        if changed == 0 {
            return;
        }
        if let Err(e) = self.refresh_statistics_inner(table, changed).await {
            tracing::warn!(table = table.written_tables()[0], error = %e, "statistics not refreshed after an import");
        }
    }

    async fn refresh_statistics_inner(&self, table: Table<'_>, changed: usize) -> Result<()> {
        use sqlx::Row;
        let tables = table.written_tables();
        let large = |counted: Option<f64>| match counted {
            Some(n) if n > 0.0 => changed as f64 > STATS_SHARE * n,
            _ => true,
        };
        match &self.pool {
            super::backend::Pool::Postgres(pool) => {
                // reltuples is -1 until the table is first analysed or vacuumed.
                let counted: f64 = sqlx::query(
                    "SELECT reltuples::float8 AS n FROM pg_class WHERE oid = $1::regclass",
                )
                .bind(tables[0])
                .fetch_one(pool)
                .await?
                .try_get("n")?;
                if large(Some(counted)) {
                    for t in tables {
                        sqlx::query(&format!("ANALYZE {t}")).execute(pool).await?;
                    }
                }
            }
            super::backend::Pool::Sqlite(pool) => {
                // The row count the last ANALYZE left (the first number of an index's
                // stat), if any.
                let mut c = pool.acquire().await?;
                let has_stats: Option<String> = sqlx::query_scalar(
                    "SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'sqlite_stat1'",
                )
                .fetch_optional(&mut *c)
                .await?;
                let counted = match has_stats {
                    None => None,
                    Some(_) => sqlx::query_scalar::<_, String>(
                        "SELECT stat FROM sqlite_stat1 WHERE tbl = $1 LIMIT 1",
                    )
                    .bind(tables[0])
                    .fetch_optional(&mut *c)
                    .await?
                    .and_then(|s| s.split(' ').next().and_then(|n| n.parse::<f64>().ok())),
                };
                if large(counted) {
                    sqlx::query(&format!("PRAGMA analysis_limit = {SQLITE_ANALYSIS_LIMIT}"))
                        .execute(&mut *c)
                        .await?;
                    for t in tables {
                        sqlx::query(&format!("ANALYZE {t}"))
                            .execute(&mut *c)
                            .await?;
                    }
                }
            }
        }
        Ok(())
    }
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
        let result = with_pool!(self, pool => {
            let mut tx = pool.begin_write().await?;
            let result = apply_full(&mut *tx, tenant.as_str(), Table::Residents, rows, mark, now_ms).await?;
            tx.commit().await?;
            result
        });
        self.refresh_statistics(Table::Residents, result.writes())
            .await;
        Ok(result)
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
        check_record_kind(kind)?;
        for r in rows {
            check_record(r)?;
        }
        let result = with_pool!(self, pool => {
            let mut tx = pool.begin_write().await?;
            let result = apply_full(&mut *tx, tenant.as_str(), Table::Records(kind), rows, mark, now_ms).await?;
            tx.commit().await?;
            result
        });
        self.refresh_statistics(Table::Records(kind), result.writes())
            .await;
        Ok(result)
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

    /// 宛名番号, folded name and folded address of the residents born on
    /// `birth_date`, at most [`BIRTH_KEYS_LIMIT`]: narrow rows read from the birth-date
    /// index alone, for the card lookup to compare before it reads the few full rows
    /// that match (a birth date has a few hundred people in a city of 10⁷).
    pub async fn resident_keys_born_on(
        &self,
        tenant: &TenantId,
        birth_date: &str,
    ) -> Result<Vec<(String, String, String)>> {
        with_pool!(self, pool => {
            let rows = sqlx::query(
                "SELECT atena, name_key, address_key FROM residents \
                 WHERE tenant = $1 AND birth_date = $2 LIMIT $3",
            )
            .bind(tenant.as_str())
            .bind(birth_date)
            .bind(BIRTH_KEYS_LIMIT)
            .fetch_all(pool)
            .await?;
            rows.iter()
                .map(|r| Ok((r.text("atena")?, r.text("name_key")?, r.text("address_key")?)))
                .collect()
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
        let applied = with_pool!(self, pool => {
            let mut tx = pool.begin_write().await?;
            let applied = apply_delta(&mut *tx, tenant.as_str(), Table::Residents, ops, mark, now_ms).await?;
            // Only an applied delta is kept; anything else rolls back (and wrote nothing).
            if matches!(applied, DeltaApplied::Applied(_)) {
                tx.commit().await?;
            }
            applied
        });
        if let DeltaApplied::Applied(result) = &applied {
            self.refresh_statistics(Table::Residents, result.writes())
                .await;
        }
        Ok(applied)
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
        check_record_kind(kind)?;
        for op in ops {
            check_id("record key", &op.key)?;
            match (&op.row, op.action) {
                (Some(r), DeltaAction::Add | DeltaAction::Change) if r.key == op.key => {
                    check_record(r)?
                }
                (None, DeltaAction::Remove) => {}
                _ => return Err(StoreError::Invalid("delta row")),
            }
        }
        let applied = with_pool!(self, pool => {
            let mut tx = pool.begin_write().await?;
            let applied = apply_delta(&mut *tx, tenant.as_str(), Table::Records(kind), ops, mark, now_ms).await?;
            if matches!(applied, DeltaApplied::Applied(_)) {
                tx.commit().await?;
            }
            applied
        });
        if let DeltaApplied::Applied(result) = &applied {
            self.refresh_statistics(Table::Records(kind), result.writes())
                .await;
        }
        Ok(applied)
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

    use crate::store::Tenant;

    fn resident(atena: &str, household: &str, relation: &str) -> ResidentRow {
        ResidentRow {
            atena: atena.into(),
            household: household.into(),
            name: format!("見本　{atena}"),
            kana: "ミホン".into(),
            birth_date: "1980-01-02".into(),
            sex: "1".into(),
            relation: relation.into(),
            machiaza: "001".into(),
            address: "本町1-2-3".into(),
            status: "在住".into(),
            name_key: format!("見本{atena}"),
            kana_key: "ミホン".into(),
            address_key: "本町1-2-3".into(),
            data: "{}".into(),
            hash: format!("{atena}{household}").into_bytes(),
        }
    }

    fn mark(rows: u64, n: u8) -> ImportMark {
        ImportMark {
            file: "jumin.csv".into(),
            rows,
            file_hash: vec![n],
            as_of: None,
        }
    }

    /// A first import derives every household at once; a later file that removes a
    /// head and moves a wife to another household updates just those, and the same
    /// file again changes nothing.
    async fn households_follow_full_imports(url: &str) {
        let store = Store::open(url).await.unwrap();
        let t = TenantId::new("city").unwrap();
        let tenant = Tenant {
            id: t.clone(),
            name: "見本市".into(),
        };
        store.create_tenant(&tenant, 0).await.unwrap();
        let mut rows = Vec::new();
        for h in 0..20 {
            rows.push(resident(&format!("{h:03}1"), &format!("H{h:02}"), "世帯主"));
            rows.push(resident(&format!("{h:03}2"), &format!("H{h:02}"), "妻"));
        }
        let first = store
            .apply_residents(&t, &rows, &mark(40, 1), 0)
            .await
            .unwrap();
        assert_eq!(first.added.len(), 40);
        assert_eq!(store.resident_counts(&t).await.unwrap().households, 20);
        let h = store.household(&t, "H05").await.unwrap().unwrap();
        assert_eq!((h.members, h.head_atena.as_deref()), (2, Some("0051")));

        let mut next: Vec<ResidentRow> =
            rows.iter().filter(|r| r.atena != "0001").cloned().collect();
        let wife = next.iter_mut().find(|r| r.atena == "0012").unwrap();
        *wife = resident("0012", "H02", "妻");
        let applied = store
            .apply_residents(&t, &next, &mark(39, 2), 1)
            .await
            .unwrap();
        assert_eq!(applied.removed, ["0001"]);
        let changed: Vec<&str> = applied.changed.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(changed, ["0012"]);
        assert_eq!(applied.unchanged, 38);
        let h0 = store.household(&t, "H00").await.unwrap().unwrap();
        assert_eq!((h0.members, h0.head_atena), (1, None));
        let h1 = store.household(&t, "H01").await.unwrap().unwrap();
        assert_eq!((h1.members, h1.head_atena.as_deref()), (1, Some("0011")));
        let h2 = store.household(&t, "H02").await.unwrap().unwrap();
        assert_eq!(h2.members, 3);
        assert_eq!(
            store.household(&t, "H05").await.unwrap().unwrap().members,
            2
        );

        let again = store
            .apply_residents(&t, &next, &mark(39, 3), 2)
            .await
            .unwrap();
        assert!(again.added.is_empty() && again.changed.is_empty() && again.removed.is_empty());
        assert_eq!(again.unchanged, 39);
        assert_eq!(store.resident_counts(&t).await.unwrap().households, 20);
        store.close().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn households_follow_full_imports_sqlite() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!(
            "sqlite://{}?mode=rwc",
            dir.path().join("store.db").display()
        );
        households_follow_full_imports(&url).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn households_follow_full_imports_postgres() {
        let pg = tokio::task::spawn_blocking(kakanai_test_peers::Postgres::start)
            .await
            .unwrap()
            .expect("PostgreSQL must start for this test");
        pg.create_database("households").unwrap();
        households_follow_full_imports(&pg.url_for("households")).await;
    }

    #[test]
    fn prefix_upper_bounds() {
        assert_eq!(prefix_upper("ヤマ").as_deref(), Some("ヤミ"));
        assert_eq!(prefix_upper("a\u{D7FF}").as_deref(), Some("a\u{E000}"));
        assert_eq!(prefix_upper("\u{10FFFF}"), None);
    }
}
