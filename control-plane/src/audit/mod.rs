//! The tamper-evident audit log (N7, N8).
//!
//! Every operation is appended as an [`AuditEntry`] whose hash covers its record and
//! the previous entry's hash; the control plane periodically signs the head
//! ([`Checkpoint`]); [`verify()`] walks a log and locates every change, removal,
//! reordering, truncation, forged checkpoint or foreign entry; closed fiscal years are
//! exported as self-contained signed archives and deleted only after the retention
//! period. Storage-independent: the store persists entries and checkpoints and feeds
//! them here; nothing in this module does I/O except through the reader/writer it is
//! given — apart from [`retention`], the job that joins store and files.
//!
//! - [`chain`] — how each entry's hash covers its record and the previous hash.
//! - [`entry`] — [`AuditEntry`] (`seq`, record, hash) and [`AuditEntry::new`] for
//!   appending.
//! - [`checkpoint`] — [`Checkpoint`] (Ed25519 over `"kakanai-audit-checkpoint-v1"` ‖
//!   tenant ‖ seq ‖ hash ‖ signed_at), [`CheckpointKeys`] (key lookup by id), and
//!   [`CheckpointPolicy`] (due at least hourly and at every fiscal-year end).
//! - [`verify`](mod@verify) — [`Verifier`] (streaming, constant memory), [`verify()`],
//!   [`VerifyReport`] with located [`Problem`]s.
//! - [`fiscal`] — [`fiscal_year_of`], [`fiscal_year_bounds`] (April–March, Japan
//!   time) and [`RetentionPolicy`] (≥ 5 closed years, only archived years deleted).
//! - [`archive`] — [`export_archive`] and [`verify_archive`]: one JSON-lines file per
//!   tenant and closed fiscal year, verifiable without the database.
//! - [`retention`] — the retention job: [`retention::archive_year`] (write, verify,
//!   record) and [`retention::purge_year`] (delete an archived year past retention,
//!   oldest first; `audit verify` then chains from the store's base).
//!
//! Personal data: a record names a resident by 宛名番号 at most, and no problem or
//! error text here ever quotes a record's content, only numbers and kinds.

pub mod archive;
pub mod chain;
pub mod checkpoint;
pub mod entry;
pub mod fiscal;
mod hex_serde;
pub mod retention;
pub mod verify;

pub use archive::{export_archive, verify_archive, ArchiveSpec, ArchiveSummary};
pub use checkpoint::{
    ChainPoint, Checkpoint, CheckpointDue, CheckpointKeys, CheckpointPolicy, CheckpointWire,
};
pub use entry::AuditEntry;
pub use fiscal::{fiscal_year_bounds, fiscal_year_of, RetentionPolicy, MIN_RETENTION_YEARS};
pub use verify::{verify, Head, Problem, ProblemKind, Verifier, VerifyReport};

/// Errors of the audit module. None carries record content.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// A retention shorter than the legal minimum was asked for.
    #[error("retention of {years} fiscal years is below the minimum of {min}")]
    Retention {
        /// Asked for.
        years: u16,
        /// The minimum.
        min: u16,
    },
    /// A checkpoint interval outside 1 ms ..= 1 hour.
    #[error("checkpoint interval of {interval_ms} ms is not between 1 ms and 1 hour")]
    CheckpointInterval {
        /// Asked for.
        interval_ms: i64,
    },
    /// A checkpoint's signature does not verify.
    #[error("checkpoint at seq {seq}: invalid signature")]
    BadSignature {
        /// The checkpoint's entry.
        seq: u64,
    },
    /// A value read back is not well formed.
    #[error("malformed {what}")]
    Malformed {
        /// What.
        what: &'static str,
    },
    /// Only closed fiscal years are archived.
    #[error("fiscal year {fiscal_year} is not closed yet")]
    YearNotClosed {
        /// The year asked for.
        fiscal_year: u16,
    },
    /// An entry given for an archive does not continue the chain.
    #[error("cannot archive entry {seq}: {reason}")]
    Export {
        /// The entry.
        seq: u64,
        /// Why.
        reason: &'static str,
    },
    /// The entries given for an archive are not as many as announced.
    #[error("cannot archive: {expected} entries announced, a different number given")]
    ExportCount {
        /// Announced.
        expected: u64,
    },
    /// Writing failed.
    #[error("writing the archive: {0}")]
    Io(#[from] std::io::Error),
    /// Encoding failed.
    #[error("encoding the archive: {0}")]
    Json(#[from] serde_json::Error),
}
