//! Import of full and delta files from the core systems (取込; R8, data-linkage.md
//! "Import").
//!
//! Delta files (異動分, [`ImportMode::Delta`]) carry the kind's columns plus
//! `異動区分` ([`DeltaMapping`]): 1 add, 2 change, 3 remove. They are checked like
//! full files, then applied by [`Store::apply_resident_delta`] /
//! [`Store::apply_record_delta`] in one transaction, which refuses the whole file
//! (with the lines) when an add names an existing key or a change or removal an
//! unknown one. A delta already applied (same SHA-256) is reported
//! [`Outcome::Unchanged`]; a timestamped file older than the last applied one of its
//! kind is refused. Every file's report is kept in the store ([`import_file`]).
//!
//! For each kind the mapping lists and the directory holds: read → decode (BOM, else
//! the mapping's encoding; undecodable bytes refuse the file with their line) → parse
//! → check the header has every mapped column → check and normalise every row (types,
//! required values, duplicate keys, field counts) → if any row is refused, the file is
//! refused whole and nothing changes; else it is applied in one transaction
//! ([`Store::apply_residents`], [`Store::apply_records`]), which compares row hashes
//! so a re-import changes nothing and reports 0 changed.
//!
//! Full-file semantics: a row missing from the file is removed. That is why one bad
//! row refuses the whole file: applying the rest would delete the refused row's record.
//!
//! Reports name the file, line, column header and a reason, never a value.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::Path;

use ring::digest;

use super::crypt::MyNumberKey;
use super::csvfile;
use super::fold::{fold, fold_address};
use super::mapping::{DataKind, DeltaMapping, FieldType, KindMapping, Mapping, JUMIN_FIELDS};
use super::report::{
    DeltaAction, DeltaApplied, DeltaOp, ImportMode, NewImportReport, ReportOutcome, ReportReason,
};
use crate::model::TenantId;
use crate::rules::calendar::Date;
use crate::store::{ApplyResult, ImportMark, RecordRow, ResidentRow, Store, StoreError};

/// How many refused rows a report lists (the total is always counted).
pub const MAX_LISTED: usize = 100;

/// Options of an import.
#[derive(Debug, Default)]
pub struct ImportOptions {
    /// The key that seals 個人番号 values. Without it, 個人番号 columns are read,
    /// checked and dropped: not stored at all.
    pub my_number_key: Option<MyNumberKey>,
    /// The time recorded on imported rows (ms since the Unix epoch).
    pub now_ms: i64,
}

/// Why an import could not run at all (file problems are in the [`FileReport`]s).
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// The store failed; the file being applied was rolled back.
    #[error("store: {0}")]
    Store(#[from] StoreError),
    /// A file could not be read.
    #[error("cannot read {file}: {source}")]
    Io {
        /// The file name.
        file: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Sealing a 個人番号 failed.
    #[error(transparent)]
    Seal(#[from] super::crypt::SealError),
}

/// Whether a file was applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Applied in one transaction (possibly changing nothing).
    Applied,
    /// This delta file was applied before (same SHA-256): nothing done again.
    Unchanged,
    /// Refused whole; nothing changed.
    Rejected,
}

/// One refused row or file-level problem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// 1-based line in the file.
    pub line: usize,
    /// The column header concerned, if one.
    pub column: Option<String>,
    /// Why (never the value).
    pub reason: String,
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.column {
            Some(c) => write!(f, "line {}, column {c}: {}", self.line, self.reason),
            None => write!(f, "line {}: {}", self.line, self.reason),
        }
    }
}

/// A changed row: its key (宛名番号 or record key) and the columns that changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// The row key.
    pub key: String,
    /// Column headers whose values changed.
    pub columns: Vec<String>,
}

/// What happened to one file.
#[derive(Debug, Clone)]
pub struct FileReport {
    /// The kind.
    pub kind: DataKind,
    /// The kind's Japanese name.
    pub label: String,
    /// The file name.
    pub file: String,
    /// Applied or refused.
    pub outcome: Outcome,
    /// Data rows read.
    pub rows: usize,
    /// Rows added.
    pub added: usize,
    /// Rows changed.
    pub changed: usize,
    /// Rows removed (no longer in the full file).
    pub removed: usize,
    /// Rows identical to the stored ones.
    pub unchanged: usize,
    /// Refused rows or file problems (at most [`MAX_LISTED`]).
    pub rejected: Vec<Rejection>,
    /// How many rows or problems were refused in total.
    pub rejected_total: usize,
    /// The changed rows and columns (at most [`MAX_LISTED`]).
    pub changes: Vec<Change>,
    /// Whether 個人番号 values were dropped because no key was given.
    pub my_number_dropped: bool,
    /// Full or delta.
    pub mode: ImportMode,
    /// The timestamp from the file name, if it has one.
    pub as_of: Option<String>,
    /// SHA-256 of the file's bytes, hex.
    pub file_hash: String,
    /// The id of the report kept in the store.
    pub report_id: Option<i64>,
}

impl FileReport {
    fn new(kind: DataKind, km: &KindMapping) -> Self {
        Self {
            mode: ImportMode::Full,
            as_of: None,
            file_hash: String::new(),
            report_id: None,
            kind,
            label: km.label.clone(),
            file: km.file.clone(),
            outcome: Outcome::Rejected,
            rows: 0,
            added: 0,
            changed: 0,
            removed: 0,
            unchanged: 0,
            rejected: Vec::new(),
            rejected_total: 0,
            changes: Vec::new(),
            my_number_dropped: false,
        }
    }

    fn reject(&mut self, line: usize, column: Option<&str>, reason: impl Into<String>) {
        self.rejected_total += 1;
        if self.rejected.len() < MAX_LISTED {
            self.rejected.push(Rejection {
                line,
                column: column.map(str::to_owned),
                reason: reason.into(),
            });
        }
    }
}

impl fmt::Display for FileReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.outcome {
            Outcome::Applied => writeln!(
                f,
                "{} ({}): applied, {} rows: {} added, {} changed, {} removed, {} unchanged",
                self.file,
                self.label,
                self.rows,
                self.added,
                self.changed,
                self.removed,
                self.unchanged
            )?,
            Outcome::Unchanged => writeln!(
                f,
                "{} ({}): already applied, nothing changed ({} rows unchanged)",
                self.file, self.label, self.unchanged
            )?,
            Outcome::Rejected => writeln!(
                f,
                "{} ({}): REJECTED, nothing changed; {} problem(s)",
                self.file, self.label, self.rejected_total
            )?,
        }
        for r in &self.rejected {
            writeln!(f, "  {r}")?;
        }
        for c in &self.changes {
            writeln!(f, "  changed {}: {}", c.key, c.columns.join(", "))?;
        }
        if self.my_number_dropped {
            writeln!(f, "  個人番号 not stored (no key configured)")?;
        }
        Ok(())
    }
}

/// The reports of one directory import, in [`DataKind::ALL`] order.
#[derive(Debug, Clone, Default)]
pub struct ImportReport {
    /// One per file found.
    pub files: Vec<FileReport>,
}

impl ImportReport {
    /// Whether every file found was applied.
    pub fn all_applied(&self) -> bool {
        self.files.iter().all(|f| f.outcome != Outcome::Rejected)
    }

    /// The report of a kind.
    pub fn file(&self, kind: DataKind) -> Option<&FileReport> {
        self.files.iter().find(|f| f.kind == kind)
    }

    /// Data rows read from applied files.
    pub fn rows_applied(&self) -> usize {
        self.files
            .iter()
            .filter(|f| f.outcome == Outcome::Applied)
            .map(|f| f.rows)
            .sum()
    }
}

impl fmt::Display for ImportReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for r in &self.files {
            write!(f, "{r}")?;
        }
        Ok(())
    }
}

/// Imports every kind of `mapping` whose file is in `dir`; each file is applied in
/// its own transaction or refused whole. Kinds whose file is absent are left as they
/// are (and not reported).
pub async fn import_dir(
    store: &Store,
    tenant: &TenantId,
    dir: &Path,
    mapping: &Mapping,
    options: &ImportOptions,
) -> Result<ImportReport, ImportError> {
    let mut report = ImportReport::default();
    for kind in DataKind::ALL {
        let Some(km) = mapping.kind(kind) else {
            continue;
        };
        let path = dir.join(&km.file);
        if !path.is_file() {
            continue;
        }
        let bytes = std::fs::read(&path).map_err(|source| ImportError::Io {
            file: km.file.clone(),
            source,
        })?;
        let spec = FileSpec {
            kind,
            mode: ImportMode::Full,
            file: km.file.clone(),
            as_of: None,
        };
        report
            .files
            .push(import_file(store, tenant, &mapping.delta, km, &spec, &bytes, options).await?);
    }
    Ok(report)
}

/// Imports one full file's bytes as `kind` (named as the mapping names it, untimed)
/// and keeps its report in the store.
pub async fn import_bytes(
    store: &Store,
    tenant: &TenantId,
    kind: DataKind,
    km: &KindMapping,
    bytes: &[u8],
    options: &ImportOptions,
) -> Result<FileReport, ImportError> {
    let spec = FileSpec {
        kind,
        mode: ImportMode::Full,
        file: km.file.clone(),
        as_of: None,
    };
    import_file(
        store,
        tenant,
        &DeltaMapping::default(),
        km,
        &spec,
        bytes,
        options,
    )
    .await
}

/// Which file is being imported: its kind, mode, name and timestamp.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileSpec {
    /// The kind.
    pub kind: DataKind,
    /// Full or delta.
    pub mode: ImportMode,
    /// The file name (no directory).
    pub file: String,
    /// The timestamp from its name (`YYYYMMDDhhmmss`), if any.
    pub as_of: Option<String>,
}

/// Imports one file (full or delta) and keeps its report in the store
/// ([`Store::record_import_report`]); the returned report carries the stored id.
/// Nothing changes unless the whole file is applied.
pub async fn import_file(
    store: &Store,
    tenant: &TenantId,
    delta: &DeltaMapping,
    km: &KindMapping,
    spec: &FileSpec,
    bytes: &[u8],
    options: &ImportOptions,
) -> Result<FileReport, ImportError> {
    let mut report = FileReport::new(spec.kind, km);
    report.file = spec.file.clone();
    report.mode = spec.mode;
    report.as_of = spec.as_of.clone();
    let hash = digest::digest(&digest::SHA256, bytes).as_ref().to_vec();
    report.file_hash = hex::encode(&hash);
    apply_file(
        store,
        tenant,
        delta,
        km,
        spec,
        bytes,
        &hash,
        options,
        &mut report,
    )
    .await?;
    let stored = NewImportReport {
        tenant: tenant.to_string(),
        kind: spec.kind.as_str().to_owned(),
        file: report.file.clone(),
        mode: spec.mode,
        file_hash: report.file_hash.clone(),
        as_of: spec.as_of.clone(),
        at_ms: options.now_ms,
        outcome: match report.outcome {
            Outcome::Rejected => ReportOutcome::Rejected,
            Outcome::Unchanged => ReportOutcome::Unchanged,
            Outcome::Applied if report.added + report.changed + report.removed == 0 => {
                ReportOutcome::Unchanged
            }
            Outcome::Applied => ReportOutcome::Applied,
        },
        rows: report.rows as u64,
        added: report.added as u64,
        changed: report.changed as u64,
        removed: report.removed as u64,
        unchanged: report.unchanged as u64,
        rejected: report.rejected_total as u64,
        reasons: report
            .rejected
            .iter()
            .map(|r| ReportReason {
                line: r.line as u64,
                column: r.column.clone(),
                reason: r.reason.clone(),
            })
            .collect(),
    };
    report.report_id = Some(store.record_import_report(&stored).await?);
    Ok(report)
}

#[allow(clippy::too_many_arguments)]
async fn apply_file(
    store: &Store,
    tenant: &TenantId,
    delta: &DeltaMapping,
    km: &KindMapping,
    spec: &FileSpec,
    bytes: &[u8],
    hash: &[u8],
    options: &ImportOptions,
    report: &mut FileReport,
) -> Result<(), ImportError> {
    let kind = spec.kind;
    let kind_id = kind.as_str();
    // Order: a timestamped file older than the newest applied one of its kind would
    // roll newer data back. (Checked again inside the transaction.)
    if let (Some(new), Some(last)) = (&spec.as_of, store.last_import_as_of(tenant, kind_id).await?)
    {
        if *new < last {
            report.reject(
                0,
                None,
                format!("older than the last applied file of this kind (as of {last})"),
            );
            return Ok(());
        }
    }
    if spec.mode == ImportMode::Delta && store.import_applied_before(tenant, kind_id, hash).await? {
        report.outcome = Outcome::Unchanged;
        return Ok(());
    }
    let delta_mapping = (spec.mode == ImportMode::Delta).then_some(delta);
    let parsed = match prepare(tenant, kind, km, delta_mapping, bytes, options, report) {
        Ok(Some(p)) => p,
        Ok(None) => return Ok(()),
        Err(e) => return Err(e),
    };
    let mark = ImportMark {
        file: spec.file.clone(),
        rows: parsed.rows.len() as u64,
        file_hash: hash.to_vec(),
        as_of: spec.as_of.clone(),
    };
    if spec.mode == ImportMode::Delta {
        return apply_delta(store, tenant, km, &parsed, &mark, options, report).await;
    }
    let result = if kind == DataKind::Jumin {
        let rows: Vec<ResidentRow> = parsed.rows.iter().map(resident_row).collect();
        store
            .apply_residents(tenant, &rows, &mark, options.now_ms)
            .await?
    } else {
        let rows: Vec<RecordRow> = parsed.rows.iter().map(|r| record_row(km, r)).collect();
        store
            .apply_records(tenant, kind.as_str(), &rows, &mark, options.now_ms)
            .await?
    };
    fill_counts(tenant, kind, km, &parsed, &result, options, report);
    Ok(())
}

fn fill_counts(
    tenant: &TenantId,
    kind: DataKind,
    km: &KindMapping,
    parsed: &Parsed,
    result: &ApplyResult,
    options: &ImportOptions,
    report: &mut FileReport,
) {
    report.outcome = Outcome::Applied;
    report.rows = parsed.rows.len();
    report.added = result.added.len();
    report.changed = result.changed.len();
    report.removed = result.removed.len();
    report.unchanged = usize::try_from(result.unchanged).unwrap_or(usize::MAX);
    report.changes = describe_changes(tenant, kind, km, parsed, result, options);
}

/// Applies a checked delta file in one transaction.
async fn apply_delta(
    store: &Store,
    tenant: &TenantId,
    km: &KindMapping,
    parsed: &Parsed,
    mark: &ImportMark,
    options: &ImportOptions,
    report: &mut FileReport,
) -> Result<(), ImportError> {
    let kind = report.kind;
    let action = |r: &Row| r.action.unwrap_or(DeltaAction::Change);
    let applied = if kind == DataKind::Jumin {
        let ops: Vec<DeltaOp<ResidentRow>> = parsed
            .rows
            .iter()
            .map(|r| DeltaOp {
                line: r.line,
                action: action(r),
                key: r.key.clone(),
                row: (action(r) != DeltaAction::Remove).then(|| resident_row(r)),
            })
            .collect();
        store
            .apply_resident_delta(tenant, &ops, mark, options.now_ms)
            .await?
    } else {
        let ops: Vec<DeltaOp<RecordRow>> = parsed
            .rows
            .iter()
            .map(|r| DeltaOp {
                line: r.line,
                action: action(r),
                key: r.key.clone(),
                row: (action(r) != DeltaAction::Remove).then(|| record_row(km, r)),
            })
            .collect();
        store
            .apply_record_delta(tenant, kind.as_str(), &ops, mark, options.now_ms)
            .await?
    };
    match applied {
        DeltaApplied::Applied(result) => {
            fill_counts(tenant, kind, km, parsed, &result, options, report);
        }
        DeltaApplied::AlreadyApplied => {
            report.outcome = Outcome::Unchanged;
            report.rows = parsed.rows.len();
            report.unchanged = parsed.rows.len();
        }
        DeltaApplied::Older { last } => {
            report.reject(
                0,
                None,
                format!("older than the last applied file of this kind (as of {last})"),
            );
        }
        DeltaApplied::Conflicts(conflicts) => {
            report.rows = parsed.rows.len();
            let key_column = km
                .key
                .first()
                .and_then(|k| km.fields.get(k))
                .map(|f| f.column.clone());
            for c in conflicts {
                report.reject(c.line, key_column.as_deref(), c.reason);
            }
        }
    }
    Ok(())
}

/// A checked row: normalised values, key, stored JSON and change hash.
struct Row {
    line: usize,
    action: Option<DeltaAction>,
    key: String,
    values: BTreeMap<String, String>,
    json: String,
    hash: Vec<u8>,
}

struct Parsed {
    rows: Vec<Row>,
    /// Key → index into `rows`.
    key_of: HashMap<String, usize>,
}

/// A row of a kind other than 住民記録, with the search keys of the fields it has
/// (`name`, `birth_date`, `head_name`: folded like the residents' keys).
fn record_row(km: &KindMapping, r: &Row) -> RecordRow {
    let value = |f: &str| r.values.get(f).filter(|v| !v.trim().is_empty());
    RecordRow {
        key: r.key.clone(),
        atena: km.resident.as_ref().and_then(|f| r.values.get(f).cloned()),
        name_key: value("name").map(|v| fold(v)).filter(|k| !k.is_empty()),
        birth_date: value("birth_date")
            .and_then(|v| parse_date(v))
            .map(|d| d.to_string()),
        head_key: value("head_name")
            .map(|v| fold(v))
            .filter(|k| !k.is_empty()),
        data: r.json.clone(),
        hash: r.hash.clone(),
    }
}

fn resident_row(r: &Row) -> ResidentRow {
    let v = |f: &str| r.values.get(f).cloned().unwrap_or_default();
    let name = v("name");
    let kana = v("kana");
    let address = v("address");
    ResidentRow {
        atena: v("atena"),
        household: v("household"),
        name_key: fold(&name),
        kana_key: fold(&kana),
        address_key: fold_address(&address),
        name,
        kana,
        birth_date: v("birth_date"),
        sex: v("sex"),
        relation: v("relation"),
        machiaza: v("machiaza"),
        address,
        status: v("status"),
        data: r.json.clone(),
        hash: r.hash.clone(),
    }
}

/// Reads, decodes, parses and checks a file. `Ok(None)` when it is refused (the
/// reasons are in `report`).
fn prepare(
    tenant: &TenantId,
    kind: DataKind,
    km: &KindMapping,
    delta: Option<&DeltaMapping>,
    bytes: &[u8],
    options: &ImportOptions,
    report: &mut FileReport,
) -> Result<Option<Parsed>, ImportError> {
    let text = match csvfile::decode(bytes, km.encoding) {
        Ok(t) => t,
        Err(p) => {
            report.reject(p.line, None, p.reason);
            return Ok(None);
        }
    };
    let table = match csvfile::parse(&text) {
        Ok(t) => t,
        Err(p) => {
            report.reject(p.line, None, p.reason);
            return Ok(None);
        }
    };
    drop(text);
    // Column of every mapped field.
    let mut columns: Vec<(&str, usize, &super::mapping::FieldMapping)> = Vec::new();
    for (field, fm) in &km.fields {
        match table.header.iter().position(|h| *h == fm.column) {
            Some(i) => columns.push((field.as_str(), i, fm)),
            None => report.reject(1, Some(&fm.column), "missing column"),
        }
    }
    let delta_column = match delta {
        Some(d) => match table.header.iter().position(|h| *h == d.column) {
            Some(i) => Some((i, d)),
            None => {
                report.reject(1, Some(&d.column), "missing column");
                None
            }
        },
        None => None,
    };
    if report.rejected_total > 0 {
        return Ok(None);
    }
    let is_key = |field: &str| km.key.iter().any(|k| k == field);
    let required = |field: &str, fm: &super::mapping::FieldMapping| {
        fm.required
            || km.key.iter().any(|k| k == field)
            || km.resident.as_deref() == Some(field)
            || (kind == DataKind::Jumin && JUMIN_FIELDS.contains(&field))
    };
    let mut rows: Vec<Row> = Vec::with_capacity(table.records.len());
    let mut key_of: HashMap<String, usize> = HashMap::with_capacity(table.records.len());
    let mut first_line: HashMap<String, usize> = HashMap::new();
    let width = table.header.len();
    for rec in &table.records {
        if rec.fields.len() != width {
            report.reject(
                rec.line,
                None,
                format!(
                    "{} fields where the header has {width} (truncated or broken line)",
                    rec.fields.len()
                ),
            );
            continue;
        }
        let action = match delta_column {
            Some((i, d)) => {
                let code = ascii_fold(rec.fields[i].trim());
                if code == d.add {
                    Some(DeltaAction::Add)
                } else if code == d.change {
                    Some(DeltaAction::Change)
                } else if code == d.remove {
                    Some(DeltaAction::Remove)
                } else {
                    report.reject(
                        rec.line,
                        Some(&d.column),
                        format!(
                            "not an action code ({} 追加, {} 変更, {} 削除)",
                            d.add, d.change, d.remove
                        ),
                    );
                    continue;
                }
            }
            None => None,
        };
        // A removal names its key; the other columns may be empty.
        let removal = action == Some(DeltaAction::Remove);
        let mut values: BTreeMap<String, String> = BTreeMap::new();
        let mut my_numbers: Vec<(&str, String)> = Vec::new();
        let mut ok = true;
        for &(field, idx, fm) in &columns {
            let raw = rec.fields[idx].trim();
            if raw.is_empty() {
                if required(field, fm) && (!removal || is_key(field)) {
                    report.reject(rec.line, Some(&fm.column), "required value missing");
                    ok = false;
                }
                continue;
            }
            match normalise(fm.ty, raw) {
                Ok(v) if fm.ty == FieldType::MyNumber => my_numbers.push((field, v)),
                Ok(v) => {
                    values.insert(field.to_owned(), v);
                }
                Err(reason) => {
                    report.reject(rec.line, Some(&fm.column), reason);
                    ok = false;
                }
            }
        }
        if !ok {
            continue;
        }
        let key = km
            .key
            .iter()
            .map(|k| values.get(k).map(String::as_str).unwrap_or_default())
            .collect::<Vec<_>>()
            .join("|");
        if let Some(first) = first_line.get(&key) {
            report.reject(
                rec.line,
                None,
                format!("duplicate key (first on line {first})"),
            );
            continue;
        }
        first_line.insert(key.clone(), rec.line);
        // The hash view holds a keyed digest of each 個人番号; the stored JSON its
        // sealed form (or nothing without a key).
        let mut hash_view = values.clone();
        let mut stored = values.clone();
        for (field, number) in my_numbers {
            match &options.my_number_key {
                Some(k) => {
                    hash_view.insert(field.to_owned(), k.mac(&number));
                    stored.insert(
                        field.to_owned(),
                        k.seal(tenant.as_str(), kind.as_str(), &key, &number)?,
                    );
                }
                None => report.my_number_dropped = true,
            }
        }
        let json = serde_json::to_string(&stored).unwrap_or_default();
        let hash_json = serde_json::to_string(&hash_view).unwrap_or_default();
        let hash = digest::digest(&digest::SHA256, hash_json.as_bytes())
            .as_ref()
            .to_vec();
        key_of.insert(key.clone(), rows.len());
        rows.push(Row {
            line: rec.line,
            action,
            key,
            values: stored,
            json,
            hash,
        });
    }
    if report.rejected_total > 0 {
        report.rows = table.records.len();
        return Ok(None);
    }
    Ok(Some(Parsed { rows, key_of }))
}

/// Full-width digits and letters to ASCII (core systems pad codes both ways).
fn ascii_fold(raw: &str) -> String {
    raw.chars()
        .map(|c| match c {
            '\u{FF01}'..='\u{FF5E}' => char::from_u32(u32::from(c) - 0xFEE0).unwrap_or(c),
            c => c,
        })
        .collect()
}

/// Checks and normalises a non-empty value; the error is a reason without the value.
fn normalise(ty: FieldType, raw: &str) -> Result<String, String> {
    match ty {
        FieldType::Text => Ok(raw.to_owned()),
        FieldType::Code => {
            let v = ascii_fold(raw);
            if v.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
                Ok(v)
            } else {
                Err("not a code (digits, letters, hyphen)".into())
            }
        }
        FieldType::Int => {
            let v = ascii_fold(raw).replace(',', "");
            v.parse::<i64>()
                .map(|n| n.to_string())
                .map_err(|_| "not an integer".into())
        }
        FieldType::Date => parse_date(&ascii_fold(raw))
            .map(|d| d.to_string())
            .ok_or_else(|| "not a date (YYYY-MM-DD, YYYY/MM/DD or YYYYMMDD)".into()),
        FieldType::Sex => match ascii_fold(raw).as_str() {
            "1" | "男" => Ok("1".into()),
            "2" | "女" => Ok("2".into()),
            "9" => Ok("9".into()),
            _ => Err("not a sex code (1, 2, 9)".into()),
        },
        FieldType::MyNumber => {
            let v = ascii_fold(raw);
            kakanai_protocol::personal::MyNumber::parse(&v)
                .map(|n| n.expose().to_owned())
                .map_err(|_| "not a valid 個人番号 (12 digits with check digit)".into())
        }
    }
}

/// A date in `YYYY-MM-DD`, `YYYY/MM/DD` or `YYYYMMDD`, checked against the calendar.
pub fn parse_date(s: &str) -> Option<Date> {
    let s = s.trim();
    let (y, m, d) = if s.len() == 8 && s.bytes().all(|b| b.is_ascii_digit()) {
        (s.get(0..4)?, s.get(4..6)?, s.get(6..8)?)
    } else {
        let mut parts = s.split(['-', '/']);
        let (y, m, d) = (parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() || y.len() != 4 || m.is_empty() || d.is_empty() {
            return None;
        }
        (y, m, d)
    };
    let all_digits =
        |t: &str| !t.is_empty() && t.len() <= 4 && t.bytes().all(|b| b.is_ascii_digit());
    if !(all_digits(y) && all_digits(m) && all_digits(d)) {
        return None;
    }
    Date::new(y.parse().ok()?, m.parse().ok()?, d.parse().ok()?)
}

/// Column headers whose values differ between the stored JSON and the new row.
fn describe_changes(
    tenant: &TenantId,
    kind: DataKind,
    km: &KindMapping,
    parsed: &Parsed,
    result: &ApplyResult,
    options: &ImportOptions,
) -> Vec<Change> {
    let mut out = Vec::new();
    for (key, old_json) in result.changed.iter().take(MAX_LISTED) {
        let Some(new) = parsed.key_of.get(key).and_then(|&i| parsed.rows.get(i)) else {
            continue;
        };
        let old: BTreeMap<String, String> = serde_json::from_str(old_json).unwrap_or_default();
        let mut columns = Vec::new();
        for (field, fm) in &km.fields {
            let (a, b) = (old.get(field), new.values.get(field));
            let differs = if fm.ty == FieldType::MyNumber {
                // Sealed values differ every time; compare what they hold.
                match (&options.my_number_key, a, b) {
                    (Some(k), Some(a), Some(b)) => {
                        k.open(tenant.as_str(), kind.as_str(), key, a)
                            != k.open(tenant.as_str(), kind.as_str(), key, b)
                    }
                    (_, a, b) => a.is_some() != b.is_some(),
                }
            } else {
                a != b
            };
            if differs {
                columns.push(fm.column.clone());
            }
        }
        out.push(Change {
            key: key.clone(),
            columns,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_in_three_notations() {
        let d = Date::new(1985, 1, 2).unwrap();
        assert_eq!(parse_date("1985-01-02"), Some(d));
        assert_eq!(parse_date("1985/1/2"), Some(d));
        assert_eq!(parse_date("19850102"), Some(d));
        assert_eq!(parse_date("1985-02-30"), None);
        assert_eq!(parse_date("1985-1-2-3"), None);
        assert_eq!(parse_date("S60.1.2"), None);
    }

    #[test]
    fn values_are_normalised_without_echoing_them() {
        assert_eq!(normalise(FieldType::Code, "０１２３").unwrap(), "0123");
        assert_eq!(normalise(FieldType::Sex, "女").unwrap(), "2");
        let err = normalise(FieldType::MyNumber, "123456789011").unwrap_err();
        assert!(!err.contains("123456789011"));
        assert!(normalise(FieldType::Date, "20250230").is_err());
    }
}
