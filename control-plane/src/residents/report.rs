//! Import reports kept in the store (取込結果), and the shapes of delta files (異動分)
//! the store applies.
//!
//! Every file the importer looks at — applied, already applied, or refused — leaves
//! one [`ImportReportRecord`]: kind, file name, SHA-256, when, the outcome, the counts
//! (added / changed / removed / unchanged / rejected) and the first
//! [`super::import::MAX_LISTED`] rejection reasons. A reason names a line, a column
//! header and the rule broken, never a value, so a report holds no personal data and
//! the admin UI can show it to anyone allowed to run imports.
//!
//! Queries for the admin UI: [`Store::list_import_reports`](crate::store::Store::list_import_reports)
//! (newest first) and [`Store::import_report`](crate::store::Store::import_report) (one by
//! id, within a tenant).

use serde::{Deserialize, Serialize};

/// Whether a file replaces a kind's data (full, 全件) or lists changes (delta, 異動分).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ImportMode {
    /// 全件: the kind's records become exactly the file's rows.
    Full,
    /// 異動分: rows marked added, changed or removed.
    Delta,
}

impl ImportMode {
    /// `full` or `delta` (as stored).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Full => "full",
            Self::Delta => "delta",
        }
    }

    /// The mode named `s`.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "full" => Some(Self::Full),
            "delta" => Some(Self::Delta),
            _ => None,
        }
    }
}

/// What happened to a file, as the report keeps it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReportOutcome {
    /// Applied in one transaction.
    Applied,
    /// The same file was applied before: nothing changed.
    Unchanged,
    /// Refused whole: nothing changed.
    Rejected,
}

impl ReportOutcome {
    /// `applied`, `unchanged` or `rejected` (as stored).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Applied => "applied",
            Self::Unchanged => "unchanged",
            Self::Rejected => "rejected",
        }
    }

    /// The outcome named `s`.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "applied" => Some(Self::Applied),
            "unchanged" => Some(Self::Unchanged),
            "rejected" => Some(Self::Rejected),
            _ => None,
        }
    }
}

/// One rejection reason as stored: line, column header, rule (never a value).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReportReason {
    /// 1-based line in the file (0: the file as a whole).
    pub line: u64,
    /// The column header concerned, if one.
    pub column: Option<String>,
    /// The rule broken.
    pub reason: String,
}

/// A report to store (everything but the id).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewImportReport {
    /// The tenant.
    pub tenant: String,
    /// The kind id (`jumin`, `kokuho` …).
    pub kind: String,
    /// The file name (no directory).
    pub file: String,
    /// Full or delta.
    pub mode: ImportMode,
    /// SHA-256 of the file's bytes, hex.
    pub file_hash: String,
    /// The timestamp from the file name (`YYYYMMDDhhmmss`), if it has one.
    pub as_of: Option<String>,
    /// When it was processed (ms since the Unix epoch).
    pub at_ms: i64,
    /// What happened.
    pub outcome: ReportOutcome,
    /// Data rows read.
    pub rows: u64,
    /// Rows added.
    pub added: u64,
    /// Rows changed.
    pub changed: u64,
    /// Rows removed.
    pub removed: u64,
    /// Rows identical to the stored ones.
    pub unchanged: u64,
    /// Rows or problems refused (all of them, not only those listed).
    pub rejected: u64,
    /// The first reasons.
    pub reasons: Vec<ReportReason>,
}

/// A stored report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImportReportRecord {
    /// Its id (increasing per store).
    pub id: i64,
    /// The report.
    #[serde(flatten)]
    pub report: NewImportReport,
}

/// What a delta row asks for (異動区分).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeltaAction {
    /// 追加: the key must not exist yet.
    Add,
    /// 変更: the key must exist; its row is replaced.
    Change,
    /// 削除: the key must exist; its row is removed.
    Remove,
}

/// One row of a delta file, checked, for the store.
#[derive(Debug, Clone)]
pub struct DeltaOp<T> {
    /// The line in the file (for conflicts).
    pub line: usize,
    /// Add, change or remove.
    pub action: DeltaAction,
    /// The row key (宛名番号 or the kind's key).
    pub key: String,
    /// The new row (for add and change; `None` for remove).
    pub row: Option<T>,
}

/// A delta row the stored data contradicts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeltaConflict {
    /// The line in the file.
    pub line: usize,
    /// The rule broken.
    pub reason: &'static str,
}

/// What applying a delta did.
#[derive(Debug, Clone)]
pub enum DeltaApplied {
    /// Applied in one transaction.
    Applied(crate::store::ApplyResult),
    /// This very file (same hash) was the last applied for the kind: nothing done.
    AlreadyApplied,
    /// The file is older than the last applied one (whose timestamp is given).
    Older {
        /// The last applied file's timestamp.
        last: String,
    },
    /// Rows contradict the stored data; nothing done.
    Conflicts(Vec<DeltaConflict>),
}
