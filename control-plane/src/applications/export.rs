//! The RPA / data export (R5, data-linkage.md "Export"): accepted applications, per
//! form, as CSV (CP932 or UTF-8) and JSON, with a manifest, written atomically into an
//! export directory for the core systems' RPA or import to pick up.
//!
//! One run is one batch:
//!
//! 1. read the accepted applications (optionally of one form);
//! 2. build each one's row with the form's column mapping ([`ExportMapping`],
//!    `control-plane/exports/reference.toml` embedded, or the city's own file); an
//!    application whose row cannot be written faithfully (a character CP932 lacks
//!    under `unencodable = "refuse"`, a code missing from a code table, more list
//!    items than the mapping's `max`) is **held back**: it stays accepted, is named in
//!    the report and the manifest with the column and reason, and the rest go;
//! 3. write `FORM.csv`, `FORM.json` and `manifest.json` into `OUT/.tmp-BATCH/`, flush
//!    them to disk, rename the directory to `OUT/BATCH/` (so a reader never sees half a
//!    batch);
//! 4. in one transaction move the exported applications to `exported` with the batch
//!    id (one audit entry each) and store the manifest. If that fails, the directory
//!    is removed again and the applications stay accepted.
//!
//! A failed write (read-only or full export directory) leaves every application
//! accepted. Running again with nothing accepted writes nothing. `export_again`
//! rewrites an earlier batch's files from the stored applications (same batch id, same
//! rows under the same mapping) and changes no state.
//!
//! Batch ids: `YYYYMMDDTHHMMSS-xxxxxx` (JST, random suffix) — sortable by time.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use ring::digest::{digest, SHA256};
use serde::{Deserialize, Serialize};

use crate::model::{Actor, TenantId};
use crate::store::applications::{ApplicationRecord, ApplicationStoreError};
use crate::store::{Store, StoreError};

use super::model::ApplicationState;

/// Most applications one batch carries (the next run takes the rest).
pub const MAX_BATCH: u32 = 10_000;

/// The reference mapping's TOML.
const REFERENCE: &str = include_str!("../../exports/reference.toml");

/// The CSV files' encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum CsvEncoding {
    /// UTF-8.
    #[serde(rename = "utf-8")]
    Utf8,
    /// CP932 (Shift_JIS with the Windows extensions).
    #[serde(rename = "cp932")]
    Cp932,
}

/// What to do with a character CP932 cannot encode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Unencodable {
    /// Hold the application back and report it.
    Refuse,
    /// Drop variation selectors, write 〓 for anything else; list it in the manifest.
    Substitute,
}

/// The output settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutputSettings {
    /// CSV encoding.
    pub encoding: CsvEncoding,
    /// UTF-8 BOM at the start of each CSV (UTF-8 only).
    #[serde(default)]
    pub bom: bool,
    /// CP932 policy.
    #[serde(default = "refuse")]
    pub unencodable: Unencodable,
    /// Also write JSON per form.
    #[serde(default = "yes")]
    pub json: bool,
}

fn refuse() -> Unencodable {
    Unencodable::Refuse
}
fn yes() -> bool {
    true
}

/// One column.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Column {
    /// Header (with `{n}` inside a repeat).
    pub name: String,
    /// Dotted path into the data (relative to the list item inside a repeat).
    pub path: String,
    /// Code table the value is translated through.
    #[serde(default)]
    pub codes: Option<String>,
}

/// Numbered column groups for a list.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Repeat {
    /// The list's path.
    pub path: String,
    /// Groups written (an application with more items is held back).
    pub max: usize,
    /// The columns of one item.
    pub columns: Vec<Column>,
}

/// The columns of one form.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FormColumns {
    /// The form's name (for people reading the file list).
    #[serde(default)]
    pub label: Option<String>,
    /// Columns.
    pub columns: Vec<Column>,
    /// Numbered groups after the columns.
    #[serde(default)]
    pub repeat: Option<Repeat>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMapping {
    output: OutputSettings,
    #[serde(default)]
    codes: BTreeMap<String, BTreeMap<String, String>>,
    #[serde(default)]
    forms: BTreeMap<String, FormColumns>,
    default: FormColumns,
}

/// The export's column mapping and output settings (configuration; see the reference
/// file for the format).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportMapping {
    /// Output settings.
    pub output: OutputSettings,
    codes: BTreeMap<String, BTreeMap<String, String>>,
    forms: BTreeMap<String, FormColumns>,
    default: FormColumns,
    /// SHA-256 (hex) of the mapping's text, recorded in manifests.
    pub digest: String,
}

/// A mapping that cannot be used. Says where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MappingError {
    /// Not TOML of the expected shape.
    #[error("export mapping: {0}")]
    Syntax(String),
    /// A rule broken (duplicate header, unknown code table …).
    #[error("export mapping, {place}: {message}")]
    Invalid {
        /// `forms.JUKI-IDO`, `default` …
        place: String,
        /// What is wrong.
        message: String,
    },
    /// The file cannot be read.
    #[error("export mapping {path}: {message}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        message: String,
    },
}

impl ExportMapping {
    /// The reference mapping shipped with the product.
    pub fn reference() -> Self {
        // The embedded file is checked by the tests; a broken one is a build defect.
        Self::from_toml(REFERENCE).unwrap_or_else(|e| unreachable!("reference mapping: {e}"))
    }

    /// The reference mapping's text (to copy and edit).
    pub fn reference_toml() -> &'static str {
        REFERENCE
    }

    /// Reads a mapping file.
    pub fn load(path: &Path) -> Result<Self, MappingError> {
        let text = std::fs::read_to_string(path).map_err(|e| MappingError::Read {
            path: path.display().to_string(),
            message: e.to_string(),
        })?;
        Self::from_toml(&text)
    }

    /// Parses and checks a mapping.
    pub fn from_toml(text: &str) -> Result<Self, MappingError> {
        let raw: RawMapping =
            toml::from_str(text).map_err(|e| MappingError::Syntax(e.to_string()))?;
        if raw.output.bom && raw.output.encoding == CsvEncoding::Cp932 {
            return Err(MappingError::Invalid {
                place: "output.bom".into(),
                message: "a BOM is only for utf-8".into(),
            });
        }
        let check = |place: String, f: &FormColumns| -> Result<(), MappingError> {
            let bad = |message: String| MappingError::Invalid {
                place: place.clone(),
                message,
            };
            if f.columns.is_empty() {
                return Err(bad("no columns".into()));
            }
            let mut names = std::collections::BTreeSet::new();
            let mut all: Vec<(String, &Column)> =
                f.columns.iter().map(|c| (c.name.clone(), c)).collect();
            if let Some(r) = &f.repeat {
                if r.max == 0 || r.max > 100 {
                    return Err(bad("repeat.max must be 1 to 100".into()));
                }
                if r.columns.is_empty() {
                    return Err(bad("repeat has no columns".into()));
                }
                for c in &r.columns {
                    if !c.name.contains("{n}") {
                        return Err(bad(format!(
                            "repeat column {:?} needs {{n}} in its name",
                            c.name
                        )));
                    }
                    for n in 1..=r.max {
                        all.push((c.name.replace("{n}", &n.to_string()), c));
                    }
                }
            }
            for (name, c) in all {
                if name.trim().is_empty() || c.path.trim().is_empty() {
                    return Err(bad("a column needs a name and a path".into()));
                }
                if raw.output.encoding == CsvEncoding::Cp932 && !cp932_ok(&name) {
                    return Err(bad(format!("column {name:?} cannot be written in CP932")));
                }
                if !names.insert(name.clone()) {
                    return Err(bad(format!("column {name:?} appears twice")));
                }
                if let Some(t) = &c.codes {
                    if !raw.codes.contains_key(t) {
                        return Err(bad(format!("column {name:?}: no code table {t:?}")));
                    }
                }
            }
            Ok(())
        };
        check("default".into(), &raw.default)?;
        for (id, f) in &raw.forms {
            let base = id.strip_suffix('*').unwrap_or(id);
            let ok = !base.is_empty()
                && base
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
            if !ok {
                return Err(MappingError::Invalid {
                    place: format!("forms.{id}"),
                    message: "a form id is letters, digits, - and _ (and * at the end)".into(),
                });
            }
            check(format!("forms.{id}"), f)?;
        }
        Ok(Self {
            output: raw.output,
            codes: raw.codes,
            forms: raw.forms,
            default: raw.default,
            digest: hex::encode(digest(&SHA256, text.as_bytes())),
        })
    }

    /// The columns of `form`: its own, else the longest `PREFIX*` that matches, else
    /// the default.
    pub fn columns_of(&self, form: &str) -> &FormColumns {
        if let Some(own) = self.forms.get(form) {
            return own;
        }
        self.forms
            .iter()
            .filter_map(|(id, f)| {
                let prefix = id.strip_suffix('*')?;
                form.starts_with(prefix).then_some((prefix.len(), f))
            })
            .max_by_key(|(len, _)| *len)
            .map_or(&self.default, |(_, f)| f)
    }

    /// The header of `form`'s CSV.
    pub fn header(&self, form: &str) -> Vec<String> {
        let f = self.columns_of(form);
        let mut h: Vec<String> = f.columns.iter().map(|c| c.name.clone()).collect();
        if let Some(r) = &f.repeat {
            for n in 1..=r.max {
                h.extend(
                    r.columns
                        .iter()
                        .map(|c| c.name.replace("{n}", &n.to_string())),
                );
            }
        }
        h
    }

    fn cell(
        &self,
        root: &serde_json::Value,
        c: &Column,
        header: &str,
    ) -> Result<String, (String, String)> {
        let v = lookup(root, &c.path);
        let text = value_text(v);
        match (&c.codes, text.is_empty()) {
            (Some(t), false) => self
                .codes
                .get(t)
                .and_then(|table| table.get(&text))
                .cloned()
                .ok_or_else(|| {
                    (
                        header.to_owned(),
                        format!("code table {t} has no code for this value"),
                    )
                }),
            _ => Ok(text),
        }
    }

    /// The row of one application (UTF-8 text per column), or the column and reason
    /// it cannot be written.
    pub fn row(
        &self,
        form: &str,
        data: &serde_json::Value,
    ) -> Result<Vec<String>, (String, String)> {
        let f = self.columns_of(form);
        let mut row = Vec::new();
        for c in &f.columns {
            row.push(self.cell(data, c, &c.name)?);
        }
        if let Some(r) = &f.repeat {
            let items = match lookup(data, &r.path) {
                Some(serde_json::Value::Array(a)) => a.as_slice(),
                _ => &[],
            };
            if items.len() > r.max {
                return Err((
                    r.path.clone(),
                    format!(
                        "{} items, the mapping has columns for {}",
                        items.len(),
                        r.max
                    ),
                ));
            }
            for n in 0..r.max {
                for c in &r.columns {
                    let header = c.name.replace("{n}", &(n + 1).to_string());
                    match items.get(n) {
                        Some(item) => row.push(self.cell(item, c, &header)?),
                        None => row.push(String::new()),
                    }
                }
            }
        }
        Ok(row)
    }
}

/// The value at a dotted path (`applicant.name`, `items.0.fee`).
fn lookup<'a>(root: &'a serde_json::Value, path: &str) -> Option<&'a serde_json::Value> {
    let mut v = root;
    for part in path.split('.') {
        v = match v {
            serde_json::Value::Object(o) => o.get(part)?,
            serde_json::Value::Array(a) => a.get(part.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    Some(v)
}

/// A cell's text: see the reference file.
fn value_text(v: Option<&serde_json::Value>) -> String {
    match v {
        None | Some(serde_json::Value::Null) => String::new(),
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(serde_json::Value::Bool(b)) => if *b { "1" } else { "0" }.to_owned(),
        Some(serde_json::Value::Number(n)) => n.to_string(),
        Some(serde_json::Value::Array(a)) => a
            .iter()
            .map(|x| value_text(Some(x)))
            .collect::<Vec<_>>()
            .join("、"),
        Some(o @ serde_json::Value::Object(_)) => o.to_string(),
    }
}

/// Whether a string survives CP932 unchanged.
fn cp932_ok(s: &str) -> bool {
    let (bytes, _, had_errors) = encoding_rs::SHIFT_JIS.encode(s);
    if had_errors {
        return false;
    }
    encoding_rs::SHIFT_JIS
        .decode_without_bom_handling_and_without_replacement(&bytes)
        .is_some_and(|back| back == s)
}

fn is_variation_selector(c: char) -> bool {
    matches!(c, '\u{FE00}'..='\u{FE0F}' | '\u{E0100}'..='\u{E01EF}')
}

/// The substitution rule: variation selectors dropped, other characters CP932 lacks
/// become 〓.
fn substitute_cp932(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut buf = [0u8; 4];
    for c in s.chars() {
        if is_variation_selector(c) {
            continue;
        }
        if cp932_ok(c.encode_utf8(&mut buf)) {
            out.push(c);
        } else {
            out.push('〓');
        }
    }
    out
}

fn csv_field(out: &mut String, s: &str) {
    if s.contains(['"', ',', '\r', '\n']) || s.starts_with(' ') || s.ends_with(' ') {
        out.push('"');
        out.push_str(&s.replace('"', "\"\""));
        out.push('"');
    } else {
        out.push_str(s);
    }
}

fn csv_line(out: &mut String, row: &[String]) {
    for (i, f) in row.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        csv_field(out, f);
    }
    out.push_str("\r\n");
}

/// One file of a batch, as the manifest lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    /// File name inside the batch directory.
    pub name: String,
    /// Form id.
    pub form: String,
    /// `csv` or `json`.
    pub format: String,
    /// Data rows (applications).
    pub rows: usize,
    /// SHA-256 of the file's bytes (hex).
    pub sha256: String,
}

/// An application left out of a batch, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeldBack {
    /// Application number.
    pub application: String,
    /// Form id.
    pub form: String,
    /// The column (or list path).
    pub column: String,
    /// Why (no data quoted).
    pub reason: String,
}

/// A substitution made under `unencodable = "substitute"`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Substitution {
    /// Application number.
    pub application: String,
    /// The column.
    pub column: String,
    /// The rule applied.
    pub rule: String,
}

/// The manifest written as `manifest.json` beside a batch's files.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// Batch id.
    pub batch: String,
    /// Tenant.
    pub tenant: String,
    /// When the batch was made (RFC 3339, JST).
    pub created_at: String,
    /// The CSV encoding.
    pub encoding: CsvEncoding,
    /// SHA-256 of the mapping used.
    pub mapping_sha256: String,
    /// The files.
    pub files: Vec<FileEntry>,
    /// Application numbers in the batch, in order.
    pub applications: Vec<String>,
    /// Totals.
    pub totals: Totals,
    /// Substitutions made (CP932, `substitute`).
    pub substitutions: Vec<Substitution>,
    /// Accepted applications left out of this batch.
    pub held_back: Vec<HeldBack>,
}

/// A manifest's totals.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Totals {
    /// Applications in the batch.
    pub applications: usize,
    /// Files (without the manifest).
    pub files: usize,
    /// Forms.
    pub forms: usize,
}

/// One application in a form's JSON file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JsonApplication {
    /// Application number.
    pub number: String,
    /// Application id.
    pub id: String,
    /// Procedure id.
    pub procedure: Option<String>,
    /// Certificate ids.
    pub certificate: Option<String>,
    /// Subject's 宛名番号.
    pub subject: Option<String>,
    /// Accepted (受付) at, ms since the epoch.
    pub accepted_at_ms: Option<i64>,
    /// The CSV row's columns by header (the same values, UTF-8).
    pub columns: BTreeMap<String, String>,
    /// The data as filled.
    pub data: serde_json::Value,
}

/// A form's JSON file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JsonFile {
    /// Batch id.
    pub batch: String,
    /// Form id.
    pub form: String,
    /// Applications, by number.
    pub applications: Vec<JsonApplication>,
}

/// What an export did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportReport {
    /// The batch written, `None` when nothing was to be exported.
    pub batch: Option<String>,
    /// Its directory.
    pub dir: Option<PathBuf>,
    /// The manifest (also when nothing was written: the held-back list).
    pub manifest: Option<Manifest>,
    /// Accepted applications left out.
    pub held_back: Vec<HeldBack>,
}

impl std::fmt::Display for ExportReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (&self.batch, &self.manifest) {
            (Some(b), Some(m)) => {
                writeln!(
                    f,
                    "batch {b}: {} application(s) in {} file(s)",
                    m.totals.applications, m.totals.files
                )?;
                for file in &m.files {
                    writeln!(
                        f,
                        "  {} ({} rows) sha256 {}",
                        file.name, file.rows, file.sha256
                    )?;
                }
                if !m.substitutions.is_empty() {
                    writeln!(
                        f,
                        "  {} substitution(s), see the manifest",
                        m.substitutions.len()
                    )?;
                }
            }
            _ => writeln!(f, "nothing to export")?,
        }
        for h in &self.held_back {
            writeln!(
                f,
                "held back: {} ({}) column {}: {}",
                h.application, h.form, h.column, h.reason
            )?;
        }
        Ok(())
    }
}

/// Why an export failed. Nothing was marked exported in any case.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// The store failed.
    #[error("store: {0}")]
    Store(#[from] StoreError),
    /// An application changed while the batch was written (cancelled meanwhile): the
    /// batch was withdrawn; run again.
    #[error("an application changed during the export; the batch was withdrawn: {0}")]
    Changed(String),
    /// Writing the files failed.
    #[error("writing the export to {dir}: {source}")]
    Io {
        /// The export directory.
        dir: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// `--again` names no batch of this tenant.
    #[error("no export batch {0}")]
    UnknownBatch(String),
}

impl From<ApplicationStoreError> for ExportError {
    fn from(e: ApplicationStoreError) -> Self {
        match e {
            ApplicationStoreError::Store(s) => Self::Store(s),
            ApplicationStoreError::Refused(r) => Self::Changed(r.to_string()),
        }
    }
}

/// `YYYY-MM-DDTHH:MM:SS+09:00` for `ms`.
pub fn jst_rfc3339(ms: i64) -> String {
    let (date, secs) = jst_parts(ms);
    format!(
        "{date}T{:02}:{:02}:{:02}+09:00",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

fn jst_parts(ms: i64) -> (crate::rules::Date, i64) {
    let local = ms + 9 * 3_600_000;
    let date = crate::rules::Date::from_days(local.div_euclid(86_400_000));
    (date, local.rem_euclid(86_400_000) / 1000)
}

/// A new batch id for `now_ms`.
pub fn new_batch_id(now_ms: i64) -> String {
    let (d, secs) = jst_parts(now_ms);
    format!(
        "{:04}{:02}{:02}T{:02}{:02}{:02}-{}",
        d.year(),
        d.month(),
        d.day(),
        secs / 3600,
        secs / 60 % 60,
        secs % 60,
        super::random_hex(3)
    )
}

/// The files of one batch, built in memory.
struct Built {
    files: Vec<(String, Vec<u8>)>,
    manifest: Manifest,
    exported: Vec<String>,
}

fn build(
    tenant: &TenantId,
    mapping: &ExportMapping,
    batch: &str,
    now_ms: i64,
    apps: &[ApplicationRecord],
) -> Built {
    let out = &mapping.output;
    let mut by_form: BTreeMap<&str, Vec<(&ApplicationRecord, Vec<String>)>> = BTreeMap::new();
    let mut held_back = Vec::new();
    let mut substitutions = Vec::new();
    'apps: for app in apps {
        let header = mapping.header(&app.form);
        let mut row = match mapping.row(&app.form, &app.data) {
            Ok(r) => r,
            Err((column, reason)) => {
                held_back.push(HeldBack {
                    application: app.number.clone(),
                    form: app.form.clone(),
                    column,
                    reason,
                });
                continue;
            }
        };
        if out.encoding == CsvEncoding::Cp932 {
            let mut subs = Vec::new();
            for (i, cell) in row.iter_mut().enumerate() {
                if cp932_ok(cell) {
                    continue;
                }
                let column = header.get(i).cloned().unwrap_or_default();
                match out.unencodable {
                    Unencodable::Refuse => {
                        held_back.push(HeldBack {
                            application: app.number.clone(),
                            form: app.form.clone(),
                            column,
                            reason: "a character has no CP932 code (外字 or IVS)".into(),
                        });
                        continue 'apps;
                    }
                    Unencodable::Substitute => {
                        *cell = substitute_cp932(cell);
                        subs.push(Substitution {
                            application: app.number.clone(),
                            column,
                            rule: "IVS selectors dropped, other characters without a CP932 code written as 〓".into(),
                        });
                    }
                }
            }
            substitutions.extend(subs);
        }
        by_form
            .entry(app.form.as_str())
            .or_default()
            .push((app, row));
    }
    let mut files = Vec::new();
    let mut entries = Vec::new();
    let mut exported = Vec::new();
    let mut numbers = Vec::new();
    for (form, rows) in &by_form {
        let header = mapping.header(form);
        let mut text = String::new();
        csv_line(&mut text, &header);
        for (_, row) in rows {
            csv_line(&mut text, row);
        }
        let bytes = match out.encoding {
            CsvEncoding::Utf8 => {
                let mut b = if out.bom {
                    b"\xEF\xBB\xBF".to_vec()
                } else {
                    Vec::new()
                };
                b.extend_from_slice(text.as_bytes());
                b
            }
            // Every cell was checked (or substituted) above, so nothing is replaced.
            CsvEncoding::Cp932 => encoding_rs::SHIFT_JIS.encode(&text).0.into_owned(),
        };
        let name = format!("{form}.csv");
        entries.push(FileEntry {
            name: name.clone(),
            form: (*form).to_owned(),
            format: "csv".into(),
            rows: rows.len(),
            sha256: hex::encode(digest(&SHA256, &bytes)),
        });
        files.push((name, bytes));
        if out.json {
            let json = JsonFile {
                batch: batch.to_owned(),
                form: (*form).to_owned(),
                applications: rows
                    .iter()
                    .map(|(app, row)| JsonApplication {
                        number: app.number.clone(),
                        id: app.id.clone(),
                        procedure: app.procedure.clone(),
                        certificate: app.certificate.clone(),
                        subject: app.subject.clone(),
                        accepted_at_ms: app.accepted.as_ref().map(|s| s.at_ms),
                        columns: header.iter().cloned().zip(row.iter().cloned()).collect(),
                        data: app.data.clone(),
                    })
                    .collect(),
            };
            let bytes = serde_json::to_vec_pretty(&json).unwrap_or_default();
            let name = format!("{form}.json");
            entries.push(FileEntry {
                name: name.clone(),
                form: (*form).to_owned(),
                format: "json".into(),
                rows: rows.len(),
                sha256: hex::encode(digest(&SHA256, &bytes)),
            });
            files.push((name, bytes));
        }
        for (app, _) in rows {
            exported.push(app.id.clone());
            numbers.push(app.number.clone());
        }
    }
    let manifest = Manifest {
        batch: batch.to_owned(),
        tenant: tenant.to_string(),
        created_at: jst_rfc3339(now_ms),
        encoding: out.encoding,
        mapping_sha256: mapping.digest.clone(),
        totals: Totals {
            applications: exported.len(),
            files: entries.len(),
            forms: by_form.len(),
        },
        files: entries,
        applications: numbers,
        substitutions,
        held_back,
    };
    Built {
        files,
        manifest,
        exported,
    }
}

fn io(dir: &Path) -> impl FnOnce(std::io::Error) -> ExportError + '_ {
    move |source| ExportError::Io {
        dir: dir.to_owned(),
        source,
    }
}

/// Writes the files into `out/.tmp-BATCH`, flushed, and swaps the directory in as
/// `out/BATCH` (replacing an earlier copy of the batch).
fn write_batch(out: &Path, batch: &str, built: &Built) -> Result<PathBuf, ExportError> {
    std::fs::create_dir_all(out).map_err(io(out))?;
    let tmp = out.join(format!(".tmp-{batch}"));
    let final_dir = out.join(batch);
    let result = (|| -> std::io::Result<()> {
        if tmp.exists() {
            std::fs::remove_dir_all(&tmp)?;
        }
        std::fs::create_dir(&tmp)?;
        let manifest = serde_json::to_vec_pretty(&built.manifest)
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        for (name, bytes) in built
            .files
            .iter()
            .map(|(n, b)| (n.as_str(), b.as_slice()))
            .chain(std::iter::once(("manifest.json", manifest.as_slice())))
        {
            let mut f = std::fs::File::create(tmp.join(name))?;
            f.write_all(bytes)?;
            f.sync_all()?;
        }
        std::fs::File::open(&tmp)?.sync_all()?;
        if final_dir.exists() {
            let old = out.join(format!(".old-{batch}"));
            if old.exists() {
                std::fs::remove_dir_all(&old)?;
            }
            std::fs::rename(&final_dir, &old)?;
            std::fs::rename(&tmp, &final_dir)?;
            std::fs::remove_dir_all(&old)?;
        } else {
            std::fs::rename(&tmp, &final_dir)?;
        }
        std::fs::File::open(out)?.sync_all()?;
        Ok(())
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(io(out)(e));
    }
    Ok(final_dir)
}

/// Exports the tenant's accepted applications (of `form`, or all) into a new batch
/// under `out` and marks them exported. See the module docs.
pub async fn export(
    store: &Store,
    tenant: &TenantId,
    mapping: &ExportMapping,
    out: &Path,
    form: Option<&str>,
    now_ms: i64,
) -> Result<ExportReport, ExportError> {
    let apps = store
        .applications_in_state(tenant, ApplicationState::Accepted, form, MAX_BATCH)
        .await?;
    let batch = new_batch_id(now_ms);
    let built = build(tenant, mapping, &batch, now_ms, &apps);
    let held_back = built.manifest.held_back.clone();
    if built.exported.is_empty() {
        return Ok(ExportReport {
            batch: None,
            dir: None,
            manifest: None,
            held_back,
        });
    }
    let dir = write_batch(out, &batch, &built)?;
    let manifest_text = serde_json::to_string(&built.manifest).unwrap_or_default();
    if let Err(e) = store
        .record_export(tenant, &batch, &manifest_text, &built.exported, now_ms)
        .await
    {
        // The files must not stay: the applications are still accepted and will be in
        // the next batch.
        if let Err(rm) = std::fs::remove_dir_all(&dir) {
            tracing::error!(batch = %batch, error = %rm, "cannot withdraw an export batch directory");
        }
        return Err(e.into());
    }
    tracing::info!(tenant = %tenant, batch = %batch, applications = built.exported.len(), "export batch written");
    Ok(ExportReport {
        batch: Some(batch),
        dir: Some(dir),
        manifest: Some(built.manifest),
        held_back,
    })
}

/// Writes batch `batch` again under `out` (same id, the applications it carried, in
/// their current data) and changes no state; audited as `export.again`.
pub async fn export_again(
    store: &Store,
    tenant: &TenantId,
    mapping: &ExportMapping,
    out: &Path,
    batch: &str,
    by: &Actor,
    now_ms: i64,
) -> Result<ExportReport, ExportError> {
    if store.export_batch(tenant, batch).await?.is_none() {
        return Err(ExportError::UnknownBatch(batch.to_owned()));
    }
    let apps = store.batch_applications(tenant, batch).await?;
    let built = build(tenant, mapping, batch, now_ms, &apps);
    let dir = write_batch(out, batch, &built)?;
    store
        .audit_reexport(tenant, batch, built.exported.len(), by, now_ms)
        .await?;
    Ok(ExportReport {
        batch: Some(batch.to_owned()),
        dir: Some(dir),
        held_back: built.manifest.held_back.clone(),
        manifest: Some(built.manifest),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reference_mapping_loads() {
        let m = ExportMapping::reference();
        assert_eq!(m.output.encoding, CsvEncoding::Cp932);
        assert!(m.header("JUKI-IDO").contains(&"異動者8_氏名".to_owned()));
        assert_eq!(m.header("KOKUHO-SHUTOKU")[0], "申請番号");
        assert!(m.header("SHOMEI-JUMIN").contains(&"使用目的".to_owned()));
        assert!(!m.header("KOKUHO-SHUTOKU").contains(&"使用目的".to_owned()));
    }

    #[test]
    fn cp932_refuses_what_it_cannot_hold_and_substitutes_by_the_rule() {
        assert!(cp932_ok("山田 太郎 ﾔﾏﾀﾞ ①髙"));
        assert!(!cp932_ok("𠮷田"));
        assert!(!cp932_ok("邉\u{E0111}"));
        assert_eq!(substitute_cp932("𠮷田 邉\u{E0111}"), "〓田 邉");
    }

    #[test]
    fn mapping_errors_name_the_place() {
        let text = REFERENCE.replacen("codes = \"sex\" }", "codes = \"nope\" }", 1);
        let e = ExportMapping::from_toml(&text).unwrap_err();
        assert!(e.to_string().contains("forms.JUKI-IDO"), "{e}");
        let text = REFERENCE.replace("name = \"届出日\"", "name = \"𠮷出日\"");
        let e = ExportMapping::from_toml(&text).unwrap_err();
        assert!(e.to_string().contains("CP932"), "{e}");
        let utf8 = text.replace("encoding = \"cp932\"", "encoding = \"utf-8\"");
        assert!(ExportMapping::from_toml(&utf8).is_ok());
    }
}
