//! The procedure catalogue as data: loading, merging of versions and validation.
//!
//! # Layout
//!
//! ```text
//! catalog/
//!   2024-10-01/                 one directory per version (any name)
//!     catalogue.toml            version, effective_from, [extends], departments, questions
//!     certificates.toml         [[certificate]] (R6)
//!     procedures/*.toml         [[procedure]] with [[procedure.rule]] (R7)
//!   2025-04-01/
//!     catalogue.toml            extends = "2024-10-01", remove = ["…"]
//!     procedures/*.toml         procedures added or replaced (same id replaces)
//! ```
//!
//! Each version has an `effective_from` date; [`CatalogueSet::for_date`] picks the
//! newest one in force on the event date, so a 制度改正 is prepared ahead as a new
//! directory. Loading collects every error it finds (file, item, field, and line or
//! expression column) and yields no catalogue at all if there is one; the caller keeps
//! using the set it had, since a loaded [`CatalogueSet`] is immutable.
//!
//! A TOML syntax or structure error (unknown key, wrong type) stops the reading of that
//! one file and is reported with its line and column; the other files are still read
//! and checked.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Deserialize;

use super::calendar::Date;
use super::expr::{compile, template_fact, Condition, QuestionLookup};
use super::model::{EventKind, Fact};

/// The 18 areas of R7, then 証明書 (R6) and その他.
pub const AREAS: &[&str] = &[
    "住民記録",
    "戸籍届出",
    "印鑑登録",
    "国民健康保険",
    "後期高齢者医療",
    "国民年金",
    "児童手当",
    "児童扶養手当",
    "特別児童扶養手当",
    "福祉医療費助成",
    "介護保険",
    "障がい",
    "マイナンバーカード",
    "学校校区",
    "就学援助",
    "母子医療",
    "こども支援",
    "幼稚園・保育園",
    "証明書",
    "その他",
];

/// One located catalogue error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CatalogueError {
    /// File, relative to the catalogue directory.
    pub file: String,
    /// Line and column in the file, when known (TOML errors).
    pub line_col: Option<(usize, usize)>,
    /// Item id (procedure, certificate, department, question), when the error is in one.
    pub item: Option<String>,
    /// Field, e.g. `area` or `rule[2].when`.
    pub field: Option<String>,
    /// 1-based column inside a rule expression or template.
    pub column: Option<usize>,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for CatalogueError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if let Some((l, c)) = self.line_col {
            write!(f, ":{l}:{c}")?;
        }
        if let Some(i) = &self.item {
            write!(f, ": {i}")?;
        }
        if let Some(fld) = &self.field {
            write!(f, ": {fld}")?;
        }
        if let Some(c) = self.column {
            write!(f, " (column {c})")?;
        }
        write!(f, ": {}", self.message)
    }
}

// ---------------------------------------------------------------- file formats

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMeta {
    version: String,
    effective_from: String,
    #[serde(default)]
    extends: Option<String>,
    #[serde(default)]
    remove: Vec<String>,
    #[serde(default, rename = "department")]
    departments: Vec<RawDepartment>,
    #[serde(default, rename = "question")]
    questions: Vec<RawQuestion>,
}

/// A department (課) and its counter.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawDepartment {
    /// Id used by procedures.
    pub id: String,
    /// Name, e.g. 市民課.
    pub name: String,
    /// Counter, e.g. 1番窓口.
    pub counter: String,
    /// Visit order: lower first (住民記録 first: the others read the new record).
    pub order: u32,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawQuestion {
    id: String,
    scope: String,
    text: String,
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawDeadline {
    #[serde(default)]
    days: Option<i64>,
    #[serde(default)]
    business_days: Option<i64>,
    #[serde(default)]
    months: Option<i64>,
    #[serde(default)]
    from: Option<String>,
    #[serde(default)]
    first_day_counts: bool,
    #[serde(default)]
    roll: Option<bool>,
    #[serde(default)]
    note: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    events: Vec<String>,
    when: String,
    reason: String,
    #[serde(default)]
    deadline: Option<RawDeadline>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProcedure {
    id: String,
    name: String,
    area: String,
    department: String,
    #[serde(default)]
    scope: Option<String>,
    #[serde(default)]
    legal_basis: String,
    #[serde(default)]
    deadline: Option<RawDeadline>,
    #[serde(default)]
    fee: i64,
    #[serde(default)]
    documents: Vec<String>,
    #[serde(default)]
    form: Option<String>,
    #[serde(default, rename = "rule")]
    rules: Vec<RawRule>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProcedureFile {
    #[serde(default, rename = "procedure")]
    procedures: Vec<RawProcedure>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCertificate {
    id: String,
    name: String,
    department: String,
    fee: i64,
    #[serde(default)]
    options: Vec<String>,
    #[serde(default)]
    notes: String,
    #[serde(default)]
    requires: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCertificateFile {
    #[serde(default, rename = "certificate")]
    certificates: Vec<RawCertificate>,
}

/// A version directory as read, items tagged with their file.
#[derive(Debug, Clone)]
struct RawVersion {
    dir: String,
    meta: RawMeta,
    procedures: Vec<(String, RawProcedure)>,
    certificates: Vec<(String, RawCertificate)>,
}

// ---------------------------------------------------------------- loaded catalogue

/// Where a deadline counts from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeadlineBase {
    /// The event date (move, birth, death, notification).
    Event,
    /// 転出予定日 when known, else the event date (15日特例 of 児童手当 on 転入).
    PlannedMoveOut,
}

/// A deadline rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deadline {
    /// Counted from.
    pub base: DeadlineBase,
    /// Calendar days, or business days when `business`.
    pub days: i64,
    /// Count business days (city hall open days).
    pub business: bool,
    /// Calendar months instead of days (婚氏続称 3か月).
    pub months: i64,
    /// The starting day is day 1 (戸籍法43条: 出生・死亡), instead of 民法140条's
    /// 初日不算入.
    pub first_day_counts: bool,
    /// A last day on a closed day moves to the next business day (地方自治法4条の2④,
    /// 戸籍法43条②; true unless the catalogue says otherwise).
    pub roll: bool,
    /// Text shown with (or instead of) the date: "転出前" or "随時".
    pub note: Option<String>,
    /// Has no date, only the note.
    pub dateless: bool,
}

/// A reason template part.
#[derive(Debug, Clone)]
pub enum Part {
    /// Literal text.
    Text(String),
    /// A fact's value.
    Fact(Fact),
}

/// A determination rule of a procedure.
#[derive(Debug, Clone)]
pub struct Rule {
    /// Events it applies to.
    pub events: Vec<EventKind>,
    /// Condition source, for diagnostics.
    pub when: String,
    /// Compiled condition.
    pub condition: Condition,
    /// Reason template.
    pub reason: Vec<Part>,
    /// Deadline overriding the procedure's.
    pub deadline: Option<Deadline>,
}

/// A procedure (手続).
#[derive(Debug, Clone)]
pub struct Procedure {
    /// Id.
    pub id: String,
    /// Name in Japanese.
    pub name: String,
    /// One of [`AREAS`].
    pub area: String,
    /// Index into [`Catalogue::departments`].
    pub department: usize,
    /// Per household (世帯主変更届) rather than per person.
    pub per_household: bool,
    /// Legal basis.
    pub legal_basis: String,
    /// Default deadline.
    pub deadline: Option<Deadline>,
    /// Fee in yen.
    pub fee: i64,
    /// Documents to bring.
    pub documents: Vec<String>,
    /// Form id.
    pub form: Option<String>,
    /// Rules.
    pub rules: Vec<Rule>,
}

/// A certificate (証明書) that can be requested (R6).
#[derive(Debug, Clone, serde::Serialize)]
pub struct Certificate {
    /// Id.
    pub id: String,
    /// Name.
    pub name: String,
    /// Department id.
    pub department: String,
    /// Fee in yen per copy.
    pub fee: i64,
    /// Options (本籍・筆頭者, 続柄 …).
    pub options: Vec<String>,
    /// What the requester must show or hold.
    pub requires: Vec<String>,
    /// Notes.
    pub notes: String,
}

/// A question the staff may be asked.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Question {
    /// Id (`answers.<id>` in rules).
    pub id: String,
    /// Asked per person.
    pub per_person: bool,
    /// The question in Japanese.
    pub text: String,
}

/// One immutable catalogue version.
#[derive(Debug, Clone)]
pub struct Catalogue {
    /// The version directory's name (what `extends` names and the store keys by).
    pub dir: String,
    /// Version label.
    pub version: String,
    /// In force from.
    pub effective_from: Date,
    /// Departments.
    pub departments: Vec<RawDepartment>,
    /// Questions.
    pub questions: Vec<Question>,
    /// Procedures.
    pub procedures: Vec<Procedure>,
    /// Certificates.
    pub certificates: Vec<Certificate>,
    /// Per event kind (index = position in [`EventKind::ALL`]): (procedure, rule) pairs.
    pub by_event: Vec<Vec<(usize, usize)>>,
    /// Person questions: catalogue question index by answer-vector index.
    pub person_questions: Vec<usize>,
    /// Household questions likewise.
    pub household_questions: Vec<usize>,
}

/// Every loaded version, oldest first.
#[derive(Debug, Clone, Default)]
pub struct CatalogueSet {
    versions: Vec<Arc<Catalogue>>,
}

/// A catalogue as files, the form the store keeps and uploads arrive in: path relative
/// to the catalogue directory, `/`-separated (`2024-10-01/procedures/02_jumin.toml`) →
/// TOML text.
pub type CatalogueFiles = BTreeMap<String, String>;

impl CatalogueSet {
    /// Load and validate every version directory under `dir`.
    pub fn load(dir: &Path) -> Result<CatalogueSet, Vec<CatalogueError>> {
        let (files, mut errors) = read_files_collecting(dir)?;
        // Unreadable files are reported together with what the readable ones contain,
        // so one run lists every problem.
        match Self::load_from_files(&files) {
            Ok(set) if errors.is_empty() => Ok(set),
            Ok(_) => Err(errors),
            Err(more) => {
                errors.extend(more);
                Err(errors)
            }
        }
    }

    /// Load and validate a catalogue given as files (see [`CatalogueFiles`]), e.g. as
    /// stored in the control plane. A file outside the layout (`VERSION/catalogue.toml`,
    /// `VERSION/certificates.toml`, `VERSION/procedures/NAME.toml`) is an error rather
    /// than ignored: an upload carrying it was probably meant to say something.
    pub fn load_from_files(files: &CatalogueFiles) -> Result<CatalogueSet, Vec<CatalogueError>> {
        let mut errors = Vec::new();
        let dirs: Vec<&str> = files
            .keys()
            .filter_map(|k| k.strip_suffix("/catalogue.toml"))
            .filter(|d| is_name(d))
            .collect();
        for key in files.keys() {
            if !in_layout(key, &dirs) {
                errors.push(err_at(
                    key,
                    None,
                    None,
                    "not a catalogue file (VERSION/catalogue.toml, VERSION/certificates.toml \
                     or VERSION/procedures/NAME.toml, in a version directory that has a \
                     catalogue.toml)"
                        .into(),
                ));
            }
        }
        if dirs.is_empty() {
            errors.push(err_at(
                ".",
                None,
                None,
                "no version directory (with catalogue.toml) found".into(),
            ));
        }
        let mut raws = Vec::new();
        for d in &dirs {
            if let Some(raw) = read_version(d, files, &mut errors) {
                raws.push(raw);
            }
        }
        let by_dir: HashMap<String, RawVersion> =
            raws.iter().map(|r| (r.dir.clone(), r.clone())).collect();
        let mut versions = Vec::new();
        for raw in &raws {
            if let Some(merged) = resolve(raw, &by_dir, &mut errors, 0) {
                if let Some(cat) = validate(&merged, &mut errors) {
                    versions.push(Arc::new(cat));
                }
            }
        }
        versions.sort_by_key(|c| c.effective_from);
        for pair in versions.windows(2) {
            if pair[0].effective_from == pair[1].effective_from {
                errors.push(err_at(
                    "catalogue.toml",
                    Some(&pair[1].version),
                    Some("effective_from"),
                    format!("same effective_from as version {}", pair[0].version),
                ));
            }
        }
        if errors.is_empty() {
            Ok(CatalogueSet { versions })
        } else {
            Err(errors)
        }
    }

    /// The newest version in force on `date`.
    pub fn for_date(&self, date: Date) -> Option<&Arc<Catalogue>> {
        self.versions
            .iter()
            .rev()
            .find(|c| c.effective_from <= date)
    }

    /// All versions, oldest first.
    pub fn versions(&self) -> &[Arc<Catalogue>] {
        &self.versions
    }
}

fn err_at(file: &str, item: Option<&str>, field: Option<&str>, message: String) -> CatalogueError {
    CatalogueError {
        file: file.to_owned(),
        line_col: None,
        item: item.map(str::to_owned),
        field: field.map(str::to_owned),
        column: None,
        message,
    }
}

fn rel(root: &Path, p: &Path) -> String {
    p.strip_prefix(root).unwrap_or(p).display().to_string()
}

fn io_error(root: &Path, p: &Path, e: &std::io::Error) -> CatalogueError {
    err_at(&rel(root, p), None, None, format!("cannot read: {e}"))
}

/// Reads the files of the catalogue under `dir` that the loader uses (see
/// [`CatalogueFiles`]); every unreadable one is reported.
pub fn read_files(dir: &Path) -> Result<CatalogueFiles, Vec<CatalogueError>> {
    let (files, errors) = read_files_collecting(dir)?;
    if errors.is_empty() {
        Ok(files)
    } else {
        Err(errors)
    }
}

/// The readable files and the errors of the unreadable ones; `Err` only when `dir`
/// itself cannot be listed.
fn read_files_collecting(
    dir: &Path,
) -> Result<(CatalogueFiles, Vec<CatalogueError>), Vec<CatalogueError>> {
    let mut errors = Vec::new();
    let mut files = CatalogueFiles::new();
    let entries = std::fs::read_dir(dir).map_err(|e| vec![io_error(dir, dir, &e)])?;
    let mut versions: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.join("catalogue.toml").is_file())
        .collect();
    versions.sort();
    let mut read = |path: &Path, errors: &mut Vec<CatalogueError>| {
        // Keys are always `/`-separated, whatever the platform, so a bundle stored on
        // one machine loads on another.
        let key = path
            .strip_prefix(dir)
            .unwrap_or(path)
            .components()
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join("/");
        match std::fs::read_to_string(path) {
            Ok(text) => {
                files.insert(key, text);
            }
            Err(e) => errors.push(io_error(dir, path, &e)),
        }
    };
    for v in &versions {
        read(&v.join("catalogue.toml"), &mut errors);
        let cert_path = v.join("certificates.toml");
        if cert_path.is_file() {
            read(&cert_path, &mut errors);
        }
        let proc_dir = v.join("procedures");
        if proc_dir.is_dir() {
            let mut procs: Vec<PathBuf> = match std::fs::read_dir(&proc_dir) {
                Ok(e) => e.filter_map(Result::ok).map(|e| e.path()).collect(),
                Err(e) => {
                    errors.push(io_error(dir, &proc_dir, &e));
                    Vec::new()
                }
            };
            procs.retain(|p| p.extension().is_some_and(|x| x == "toml") && p.is_file());
            procs.sort();
            for p in procs {
                read(&p, &mut errors);
            }
        }
    }
    Ok((files, errors))
}

/// A single path component the loader accepts as a directory or file name.
fn is_name(s: &str) -> bool {
    !s.is_empty() && s != "." && s != ".." && !s.contains(['/', '\\', '\0'])
}

fn in_layout(key: &str, dirs: &[&str]) -> bool {
    let Some((dir, rest)) = key.split_once('/') else {
        return false;
    };
    if !dirs.contains(&dir) {
        return false;
    }
    match rest.split_once('/') {
        None => rest == "catalogue.toml" || rest == "certificates.toml",
        Some(("procedures", name)) => is_name(name) && name.ends_with(".toml"),
        Some(_) => false,
    }
}

fn parse_text<T: for<'de> Deserialize<'de>>(
    file: &str,
    text: &str,
    errors: &mut Vec<CatalogueError>,
) -> Option<T> {
    match toml::from_str(text) {
        Ok(v) => Some(v),
        Err(e) => {
            let line_col = e.span().map(|s| {
                let before = &text[..s.start.min(text.len())];
                let line = before.matches('\n').count() + 1;
                let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
                (line, col)
            });
            errors.push(CatalogueError {
                file: file.to_owned(),
                line_col,
                item: None,
                field: None,
                column: None,
                message: e.message().to_owned(),
            });
            None
        }
    }
}

fn read_version(
    dir: &str,
    files: &CatalogueFiles,
    errors: &mut Vec<CatalogueError>,
) -> Option<RawVersion> {
    let meta_file = format!("{dir}/catalogue.toml");
    let meta: RawMeta = parse_text(&meta_file, files.get(&meta_file)?, errors)?;
    let mut procedures = Vec::new();
    let mut certificates = Vec::new();
    let cert_file = format!("{dir}/certificates.toml");
    if let Some(text) = files.get(&cert_file) {
        if let Some(f) = parse_text::<RawCertificateFile>(&cert_file, text, errors) {
            certificates.extend(f.certificates.into_iter().map(|c| (cert_file.clone(), c)));
        }
    }
    // BTreeMap order is the file-name order the directory loader always used, so a
    // later file's duplicate id is the one reported.
    let prefix = format!("{dir}/procedures/");
    for (file, text) in files.range(prefix.clone()..) {
        let Some(name) = file.strip_prefix(&prefix) else {
            break;
        };
        if !is_name(name) || !name.ends_with(".toml") {
            continue;
        }
        if let Some(f) = parse_text::<RawProcedureFile>(file, text, errors) {
            procedures.extend(f.procedures.into_iter().map(|c| (file.clone(), c)));
        }
    }
    Some(RawVersion {
        dir: dir.to_owned(),
        meta,
        procedures,
        certificates,
    })
}

/// Overlay a version on the one it extends: same id replaces, `remove` drops.
fn resolve(
    raw: &RawVersion,
    all: &HashMap<String, RawVersion>,
    errors: &mut Vec<CatalogueError>,
    depth: usize,
) -> Option<RawVersion> {
    let meta_file = format!("{}/catalogue.toml", raw.dir);
    let Some(base_name) = &raw.meta.extends else {
        return Some(raw.clone());
    };
    let Some(base) = all.get(base_name).filter(|_| depth < 16) else {
        errors.push(err_at(
            &meta_file,
            None,
            Some("extends"),
            format!("no version directory {base_name:?} to extend (or a cycle)"),
        ));
        return None;
    };
    let base = resolve(base, all, errors, depth + 1)?;
    let mut procedures = base.procedures.clone();
    let mut certificates = base.certificates.clone();
    for id in &raw.meta.remove {
        let before = procedures.len() + certificates.len();
        procedures.retain(|(_, p)| p.id != *id);
        certificates.retain(|(_, c)| c.id != *id);
        if before == procedures.len() + certificates.len() {
            errors.push(err_at(
                &meta_file,
                Some(id),
                Some("remove"),
                format!("{base_name} has no procedure or certificate {id:?}"),
            ));
        }
    }
    for (f, p) in &raw.procedures {
        match procedures.iter_mut().find(|(_, q)| q.id == p.id) {
            Some(slot) => *slot = (f.clone(), p.clone()),
            None => procedures.push((f.clone(), p.clone())),
        }
    }
    for (f, c) in &raw.certificates {
        match certificates.iter_mut().find(|(_, q)| q.id == c.id) {
            Some(slot) => *slot = (f.clone(), c.clone()),
            None => certificates.push((f.clone(), c.clone())),
        }
    }
    let mut meta = raw.meta.clone();
    // Departments and questions: the base's, overlaid by id.
    let mut departments = base.meta.departments.clone();
    for d in &raw.meta.departments {
        match departments.iter_mut().find(|x| x.id == d.id) {
            Some(slot) => *slot = d.clone(),
            None => departments.push(d.clone()),
        }
    }
    let mut questions = base.meta.questions.clone();
    for q in &raw.meta.questions {
        match questions.iter_mut().find(|x| x.id == q.id) {
            Some(slot) => *slot = q.clone(),
            None => questions.push(q.clone()),
        }
    }
    meta.departments = departments;
    meta.questions = questions;
    Some(RawVersion {
        dir: raw.dir.clone(),
        meta,
        procedures,
        certificates,
    })
}

struct Questions<'a>(&'a HashMap<&'a str, (usize, bool)>);

impl QuestionLookup for Questions<'_> {
    fn lookup(&self, id: &str) -> Option<(usize, bool)> {
        self.0.get(id).copied()
    }
}

fn deadline(
    raw: &RawDeadline,
    file: &str,
    item: &str,
    field: &str,
    errors: &mut Vec<CatalogueError>,
) -> Option<Deadline> {
    let mut bad = |m: &str| errors.push(err_at(file, Some(item), Some(field), m.to_owned()));
    let base = match raw.from.as_deref() {
        None | Some("event") => DeadlineBase::Event,
        Some("planned_move_out") => DeadlineBase::PlannedMoveOut,
        Some(other) => {
            bad(&format!(
                "unknown `from` {other:?} (event, planned_move_out)"
            ));
            return None;
        }
    };
    let (days, business, months, dateless) = match (raw.days, raw.business_days, raw.months) {
        (Some(d), None, None) => (d, false, 0, false),
        (None, Some(d), None) => (d, true, 0, false),
        (None, None, Some(m)) if (1..=120).contains(&m) => (0, false, m, false),
        (None, None, Some(m)) => {
            bad(&format!("months {m} out of range 1..=120"));
            return None;
        }
        (None, None, None) if raw.note.is_some() => (0, false, 0, true),
        (None, None, None) => {
            bad("needs `days`, `business_days`, `months` or a `note`");
            return None;
        }
        _ => {
            bad("give only one of `days`, `business_days`, `months`");
            return None;
        }
    };
    if !(0..=3660).contains(&days) {
        bad(&format!("day count {days} out of range 0..=3660"));
        return None;
    }
    if raw.first_day_counts && (business || (days == 0 && months == 0)) {
        bad("`first_day_counts` needs `days` or `months` ≥ 1");
        return None;
    }
    Some(Deadline {
        base,
        days,
        business,
        months,
        first_day_counts: raw.first_day_counts,
        roll: raw.roll.unwrap_or(true),
        note: raw.note.clone(),
        dateless,
    })
}

fn template(
    src: &str,
    per_person: bool,
    file: &str,
    item: &str,
    field: &str,
    errors: &mut Vec<CatalogueError>,
) -> Vec<Part> {
    let mut parts = Vec::new();
    let mut rest = src;
    let mut offset = 0; // characters consumed, for the column
    while let Some(open) = rest.find('{') {
        if open > 0 {
            parts.push(Part::Text(rest[..open].to_owned()));
        }
        let col = offset + rest[..open].chars().count() + 1;
        let Some(close) = rest[open..].find('}') else {
            errors.push(CatalogueError {
                column: Some(col),
                ..err_at(file, Some(item), Some(field), "unclosed `{`".into())
            });
            return parts;
        };
        let name = &rest[open + 1..open + close];
        match template_fact(name, per_person) {
            Ok(f) => parts.push(Part::Fact(f)),
            Err(m) => errors.push(CatalogueError {
                column: Some(col),
                ..err_at(file, Some(item), Some(field), m)
            }),
        }
        offset += rest[..open + close + 1].chars().count();
        rest = &rest[open + close + 1..];
    }
    if !rest.is_empty() {
        parts.push(Part::Text(rest.to_owned()));
    }
    parts
}

fn validate(raw: &RawVersion, errors: &mut Vec<CatalogueError>) -> Option<Catalogue> {
    let n_before = errors.len();
    let meta_file = format!("{}/catalogue.toml", raw.dir);
    let m = &raw.meta;
    let effective_from = match Date::parse(&m.effective_from) {
        Ok(d) => Some(d),
        Err(e) => {
            errors.push(err_at(
                &meta_file,
                None,
                Some("effective_from"),
                e.to_string(),
            ));
            None
        }
    };
    if m.version.trim().is_empty() {
        errors.push(err_at(&meta_file, None, Some("version"), "empty".into()));
    }
    let mut dept_index = HashMap::new();
    for (i, d) in m.departments.iter().enumerate() {
        if dept_index.insert(d.id.as_str(), i).is_some() {
            errors.push(err_at(
                &meta_file,
                Some(&d.id),
                Some("id"),
                "duplicate department id".into(),
            ));
        }
    }
    let mut questions = Vec::new();
    let mut q_index: HashMap<&str, (usize, bool)> = HashMap::new();
    let (mut person_questions, mut household_questions) = (Vec::new(), Vec::new());
    for q in &m.questions {
        let per_person = match q.scope.as_str() {
            "person" => true,
            "household" => false,
            other => {
                errors.push(err_at(
                    &meta_file,
                    Some(&q.id),
                    Some("scope"),
                    format!("unknown scope {other:?} (person, household)"),
                ));
                continue;
            }
        };
        let list = if per_person {
            &mut person_questions
        } else {
            &mut household_questions
        };
        if q_index.contains_key(q.id.as_str()) {
            errors.push(err_at(
                &meta_file,
                Some(&q.id),
                Some("id"),
                "duplicate question id".into(),
            ));
            continue;
        }
        q_index.insert(q.id.as_str(), (list.len(), per_person));
        list.push(questions.len());
        questions.push(Question {
            id: q.id.clone(),
            per_person,
            text: q.text.clone(),
        });
    }
    let lookup = Questions(&q_index);

    let mut seen = HashSet::new();
    let mut procedures = Vec::new();
    for (file, p) in &raw.procedures {
        let id = p.id.as_str();
        let e = |field: &str, msg: String| err_at(file, Some(id), Some(field), msg);
        if !seen.insert(p.id.clone()) {
            errors.push(e("id", "duplicate procedure id".into()));
        }
        if !AREAS.contains(&p.area.as_str()) {
            errors.push(e("area", format!("unknown area {:?}", p.area)));
        }
        if p.name.trim().is_empty() {
            errors.push(e("name", "empty".into()));
        }
        if p.fee < 0 {
            errors.push(e("fee", "negative".into()));
        }
        let department = dept_index.get(p.department.as_str()).copied();
        if department.is_none() {
            errors.push(e(
                "department",
                format!("unknown department {:?}", p.department),
            ));
        }
        let per_household = match p.scope.as_deref() {
            None | Some("person") => false,
            Some("household") => true,
            Some(other) => {
                errors.push(e(
                    "scope",
                    format!("unknown scope {other:?} (person, household)"),
                ));
                false
            }
        };
        let dl = p
            .deadline
            .as_ref()
            .and_then(|d| deadline(d, file, id, "deadline", errors));
        if p.rules.is_empty() {
            errors.push(e("rule", "a procedure needs at least one rule".into()));
        }
        let mut rules = Vec::new();
        for (ri, r) in p.rules.iter().enumerate() {
            let field = |f: &str| format!("rule[{}].{f}", ri + 1);
            let mut events = Vec::new();
            for ev in &r.events {
                match EventKind::ALL.iter().position(|k| k == ev) {
                    Some(i) => events.push(event_kind(i)),
                    None => errors.push(e(
                        &field("events"),
                        format!("unknown event {ev:?} (one of {:?})", EventKind::ALL),
                    )),
                }
            }
            if r.events.is_empty() {
                errors.push(e(&field("events"), "empty".into()));
            }
            let condition = match compile(&r.when, !per_household, &lookup) {
                Ok(c) => Some(c),
                Err(x) => {
                    errors.push(CatalogueError {
                        column: Some(x.column),
                        ..e(&field("when"), x.message)
                    });
                    None
                }
            };
            let reason = template(
                &r.reason,
                !per_household,
                file,
                id,
                &field("reason"),
                errors,
            );
            let rdl = r
                .deadline
                .as_ref()
                .and_then(|d| deadline(d, file, id, &field("deadline"), errors));
            if let Some(condition) = condition {
                rules.push(Rule {
                    events,
                    when: r.when.clone(),
                    condition,
                    reason,
                    deadline: rdl,
                });
            }
        }
        procedures.push(Procedure {
            id: p.id.clone(),
            name: p.name.clone(),
            area: p.area.clone(),
            department: department.unwrap_or(0),
            per_household,
            legal_basis: p.legal_basis.clone(),
            deadline: dl,
            fee: p.fee,
            documents: p.documents.clone(),
            form: p.form.clone(),
            rules,
        });
    }
    let mut certificates = Vec::new();
    for (file, c) in &raw.certificates {
        let e = |field: &str, msg: String| err_at(file, Some(&c.id), Some(field), msg);
        if !seen.insert(c.id.clone()) {
            errors.push(e("id", "duplicate id".into()));
        }
        if c.fee < 0 {
            errors.push(e("fee", "negative".into()));
        }
        if !dept_index.contains_key(c.department.as_str()) {
            errors.push(e(
                "department",
                format!("unknown department {:?}", c.department),
            ));
        }
        certificates.push(Certificate {
            id: c.id.clone(),
            name: c.name.clone(),
            department: c.department.clone(),
            fee: c.fee,
            options: c.options.clone(),
            requires: c.requires.clone(),
            notes: c.notes.clone(),
        });
    }
    if errors.len() > n_before {
        return None;
    }
    let mut by_event = vec![Vec::new(); EventKind::ALL.len()];
    for (pi, p) in procedures.iter().enumerate() {
        for (ri, r) in p.rules.iter().enumerate() {
            for ev in &r.events {
                let i = EventKind::ALL
                    .iter()
                    .position(|k| *k == ev.as_str())
                    .unwrap_or(0);
                by_event[i].push((pi, ri));
            }
        }
    }
    Some(Catalogue {
        dir: raw.dir.clone(),
        version: m.version.clone(),
        effective_from: effective_from?,
        departments: m.departments.clone(),
        questions,
        procedures,
        certificates,
        by_event,
        person_questions,
        household_questions,
    })
}

fn event_kind(i: usize) -> EventKind {
    const KINDS: [EventKind; 7] = [
        EventKind::MoveIn,
        EventKind::MoveWithin,
        EventKind::MoveOut,
        EventKind::Birth,
        EventKind::Death,
        EventKind::Marriage,
        EventKind::Divorce,
    ];
    KINDS.get(i).copied().unwrap_or_default()
}

/// Index of an event kind in [`EventKind::ALL`].
pub fn event_index(kind: EventKind) -> usize {
    EventKind::ALL
        .iter()
        .position(|k| *k == kind.as_str())
        .unwrap_or(0)
}

/// Count of procedures per area, for coverage checks.
pub fn areas_covered(cat: &Catalogue) -> BTreeMap<&str, usize> {
    let mut m = BTreeMap::new();
    for p in &cat.procedures {
        *m.entry(p.area.as_str()).or_insert(0) += 1;
    }
    m
}
