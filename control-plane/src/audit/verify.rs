//! Streaming verification of a tenant's log against its signed checkpoints.
//!
//! [`Verifier`] keeps only the previous entry's number and hash and the (small,
//! sorted) list of checkpoints, so a log of any length verifies in constant memory;
//! [`verify`] drives it from an iterator. Each entry is checked against the *stored*
//! hash of the entry before it rather than a hash recomputed from the start: one
//! changed entry is then reported once, at its own number, instead of breaking every
//! comparison after it. What links alone cannot see — a log rewritten with every hash
//! recomputed, or entries renumbered after a deletion — is caught by the signed
//! checkpoints, which must equal the stored (and, where every link holds, recomputed)
//! hash at their number.

use std::fmt;

use serde::Serialize;

use super::chain::{GENESIS, HASH_LEN};
use super::checkpoint::{Checkpoint, CheckpointKeys};
use super::entry::AuditEntry;
use crate::model::TenantId;

/// At most this many problems are listed; more are only counted, so that verifying a
/// thoroughly damaged log still runs in bounded memory.
pub const MAX_PROBLEMS: usize = 10_000;

/// What is wrong.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum ProblemKind {
    /// The entry's stored hash is not the hash of its number and record after the
    /// previous entry's hash: this entry was changed, or the one before it was
    /// replaced (the chain is broken here).
    HashMismatch,
    /// Entries `from..=to` are absent before this one (removed, or moved elsewhere).
    Missing {
        /// First missing number.
        from: u64,
        /// Last missing number.
        to: u64,
    },
    /// The entry's number is not greater than the one before it (reordered or
    /// duplicated); it is skipped.
    OutOfOrder {
        /// The number of the entry seen before it.
        previous: u64,
    },
    /// The entry belongs to another tenant; it is skipped.
    ForeignTenant,
    /// A validly signed checkpoint's hash differs from the log's hash at its number:
    /// the log was rewritten somewhere after the previous matching checkpoint.
    CheckpointMismatch {
        /// When the checkpoint was signed.
        signed_at_ms: i64,
    },
    /// A validly signed checkpoint names an entry that is absent.
    CheckpointEntryMissing,
    /// A checkpoint's signature does not verify: forged or damaged.
    BadCheckpointSignature {
        /// The key id it names (hex).
        kid: String,
    },
    /// A checkpoint names a key that is not known.
    UnknownCheckpointKey {
        /// The key id it names (hex).
        kid: String,
    },
    /// A checkpoint of another tenant was given.
    CheckpointOfOtherTenant,
    /// The log ends (at `head`) before a signed checkpoint: entries were cut off the end.
    Truncated {
        /// The last entry present (0 if none).
        head: u64,
        /// The highest signed checkpoint.
        checkpoint_seq: u64,
    },
    /// An archive line is not what the format allows there.
    Malformed {
        /// What is wrong (no record content).
        what: String,
    },
    /// An archive's header does not describe its content.
    HeaderMismatch {
        /// Which field disagrees.
        what: String,
    },
    /// An archived entry's time is outside the archive's fiscal year.
    OutsideFiscalYear,
    /// The archive's lines are not those its trailer signed.
    ContentChanged,
    /// The trailer's signature does not verify.
    BadTrailerSignature,
    /// The trailer names a key that is not known.
    UnknownTrailerKey {
        /// The key id it names (hex).
        kid: String,
    },
    /// The archive has no trailer (cut short).
    MissingTrailer,
    /// Lines follow the trailer.
    TrailingData,
    /// The archive could not be read.
    Unreadable {
        /// The I/O error.
        message: String,
    },
}

impl fmt::Display for ProblemKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::HashMismatch => f.write_str("hash mismatch: entry changed or chain broken"),
            Self::Missing { from, to } => write!(f, "entries {from}..={to} missing"),
            Self::OutOfOrder { previous } => write!(f, "out of order (after {previous})"),
            Self::ForeignTenant => f.write_str("entry of another tenant"),
            Self::CheckpointMismatch { signed_at_ms } => {
                write!(
                    f,
                    "checkpoint signed at {signed_at_ms} does not match the log"
                )
            }
            Self::CheckpointEntryMissing => f.write_str("checkpointed entry missing"),
            Self::BadCheckpointSignature { kid } => {
                write!(f, "checkpoint signature invalid (kid {kid})")
            }
            Self::UnknownCheckpointKey { kid } => write!(f, "checkpoint by unknown key {kid}"),
            Self::CheckpointOfOtherTenant => f.write_str("checkpoint of another tenant"),
            Self::Truncated {
                head,
                checkpoint_seq,
            } => write!(
                f,
                "log truncated: ends at {head}, a checkpoint signs {checkpoint_seq}"
            ),
            Self::Malformed { what } => write!(f, "malformed: {what}"),
            Self::HeaderMismatch { what } => write!(f, "header does not match content: {what}"),
            Self::OutsideFiscalYear => f.write_str("entry outside the archive's fiscal year"),
            Self::ContentChanged => f.write_str("archive content differs from what was signed"),
            Self::BadTrailerSignature => f.write_str("trailer signature invalid"),
            Self::UnknownTrailerKey { kid } => write!(f, "trailer by unknown key {kid}"),
            Self::MissingTrailer => f.write_str("no trailer: archive cut short"),
            Self::TrailingData => f.write_str("lines after the trailer"),
            Self::Unreadable { message } => write!(f, "unreadable: {message}"),
        }
    }
}

/// One problem, located by entry number and, in an archive, by line (from 1).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// The entry (or checkpoint) number concerned, when there is one.
    pub seq: Option<u64>,
    /// The archive line, when verifying an archive.
    pub line: Option<u64>,
    /// What is wrong.
    #[serde(flatten)]
    pub kind: ProblemKind,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(seq) = self.seq {
            write!(f, "seq {seq}: ")?;
        }
        if let Some(line) = self.line {
            write!(f, "line {line}: ")?;
        }
        write!(f, "{}", self.kind)
    }
}

/// The last entry verified.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Head {
    /// Its number.
    pub seq: u64,
    /// Its hash.
    #[serde(serialize_with = "super::hex_serde::hash::serialize")]
    pub hash: [u8; HASH_LEN],
}

/// The outcome of a verification: every problem found, with counts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VerifyReport {
    /// The tenant verified.
    pub tenant: String,
    /// Entries read (including skipped ones).
    pub entries_checked: u64,
    /// Checkpoints given.
    pub checkpoints_total: u64,
    /// Checkpoints whose signature verified and whose hash matched the log.
    pub checkpoints_valid: u64,
    /// The last entry accepted in order, if any.
    pub head: Option<Head>,
    /// The problems, in the order found (at most [`MAX_PROBLEMS`]).
    pub problems: Vec<Problem>,
    /// Problems found beyond [`MAX_PROBLEMS`].
    pub problems_omitted: u64,
}

impl VerifyReport {
    pub(crate) fn new(tenant: &str) -> Self {
        Self {
            tenant: tenant.to_owned(),
            entries_checked: 0,
            checkpoints_total: 0,
            checkpoints_valid: 0,
            head: None,
            problems: Vec::new(),
            problems_omitted: 0,
        }
    }

    /// Whether nothing is wrong.
    pub fn is_ok(&self) -> bool {
        self.problems.is_empty() && self.problems_omitted == 0
    }

    /// The problems at entry `seq`.
    pub fn at(&self, seq: u64) -> impl Iterator<Item = &ProblemKind> {
        self.problems
            .iter()
            .filter(move |p| p.seq == Some(seq))
            .map(|p| &p.kind)
    }

    pub(crate) fn push(&mut self, seq: Option<u64>, line: Option<u64>, kind: ProblemKind) {
        if self.problems.len() < MAX_PROBLEMS {
            self.problems.push(Problem { seq, line, kind });
        } else {
            self.problems_omitted += 1;
        }
    }
}

/// Verifies one tenant's entries as they stream by, in the order the store returns
/// them (ascending `seq`).
#[derive(Debug)]
pub struct Verifier {
    tenant: TenantId,
    /// Validly signed checkpoints of this tenant after the base, ascending.
    checkpoints: Vec<Checkpoint>,
    next_checkpoint: usize,
    last_seq: u64,
    last_hash: [u8; HASH_LEN],
    /// The archive line being verified, to locate problems in a file.
    pub(crate) line: Option<u64>,
    report: VerifyReport,
}

impl Verifier {
    /// Verifies a whole log, from entry 1 after [`GENESIS`].
    pub fn new<K: CheckpointKeys + ?Sized>(
        tenant: &TenantId,
        checkpoints: &[Checkpoint],
        keys: &K,
    ) -> Self {
        Self::after(tenant, 0, GENESIS, checkpoints, keys)
    }

    /// Verifies a log from its middle: the first entry expected is `base_seq + 1`,
    /// chaining from `base_hash` (e.g. after older years were archived and deleted,
    /// or an archive). A checkpoint at `base_seq` authenticates `base_hash`;
    /// checkpoints before it are outside the range and ignored.
    pub fn after<K: CheckpointKeys + ?Sized>(
        tenant: &TenantId,
        base_seq: u64,
        base_hash: [u8; HASH_LEN],
        checkpoints: &[Checkpoint],
        keys: &K,
    ) -> Self {
        let mut report = VerifyReport::new(tenant.as_str());
        report.checkpoints_total = u64::try_from(checkpoints.len()).unwrap_or(u64::MAX);
        let mut valid = Vec::new();
        for cp in checkpoints {
            let kid = cp.kid.to_hex();
            if cp.tenant != *tenant {
                report.push(Some(cp.seq), None, ProblemKind::CheckpointOfOtherTenant);
            } else if cp.seq < base_seq {
                // Pins an entry before this range: nothing here to compare it with.
            } else {
                match keys.key(&cp.kid) {
                    None => report.push(
                        Some(cp.seq),
                        None,
                        ProblemKind::UnknownCheckpointKey { kid },
                    ),
                    Some(key) if cp.verify(&key).is_err() => report.push(
                        Some(cp.seq),
                        None,
                        ProblemKind::BadCheckpointSignature { kid },
                    ),
                    Some(_) if cp.seq == base_seq => {
                        if cp.hash == base_hash {
                            report.checkpoints_valid += 1;
                        } else {
                            report.push(
                                Some(cp.seq),
                                None,
                                ProblemKind::CheckpointMismatch {
                                    signed_at_ms: cp.signed_at_ms,
                                },
                            );
                        }
                    }
                    Some(_) => valid.push(cp.clone()),
                }
            }
        }
        valid.sort_by_key(|c| c.seq);
        Self {
            tenant: tenant.clone(),
            checkpoints: valid,
            next_checkpoint: 0,
            last_seq: base_seq,
            last_hash: base_hash,
            line: None,
            report,
        }
    }

    fn problem(&mut self, seq: u64, kind: ProblemKind) {
        self.report.push(Some(seq), self.line, kind);
    }

    /// Checks the next entry.
    pub fn push(&mut self, entry: &AuditEntry) {
        self.report.entries_checked += 1;
        if entry.record.tenant != self.tenant.as_str() {
            self.problem(entry.seq, ProblemKind::ForeignTenant);
            return;
        }
        if entry.seq <= self.last_seq {
            // Not advancing the chain keeps the entries after it verifiable against
            // the last good one.
            let previous = self.last_seq;
            self.problem(entry.seq, ProblemKind::OutOfOrder { previous });
            return;
        }
        let expected = self.last_seq + 1;
        if entry.seq > expected {
            // Its link cannot be checked (its predecessor is absent); reporting a hash
            // mismatch too would only repeat the gap.
            self.problem(
                entry.seq,
                ProblemKind::Missing {
                    from: expected,
                    to: entry.seq - 1,
                },
            );
        } else if !entry.links_to(&self.last_hash) {
            self.problem(entry.seq, ProblemKind::HashMismatch);
        }
        self.match_checkpoints(entry);
        self.last_seq = entry.seq;
        self.last_hash = entry.hash;
    }

    fn match_checkpoints(&mut self, entry: &AuditEntry) {
        while let Some(cp) = self.checkpoints.get(self.next_checkpoint) {
            if cp.seq > entry.seq {
                break;
            }
            let (seq, hash, signed_at_ms) = (cp.seq, cp.hash, cp.signed_at_ms);
            self.next_checkpoint += 1;
            if seq < entry.seq {
                self.problem(seq, ProblemKind::CheckpointEntryMissing);
            } else if hash == entry.hash {
                self.report.checkpoints_valid += 1;
            } else {
                self.problem(seq, ProblemKind::CheckpointMismatch { signed_at_ms });
            }
        }
    }

    pub(crate) fn report_mut(&mut self) -> &mut VerifyReport {
        &mut self.report
    }

    /// The last entry accepted: its number and hash (the base before any).
    pub fn head(&self) -> (u64, [u8; HASH_LEN]) {
        (self.last_seq, self.last_hash)
    }

    /// Ends the stream: any signed checkpoint beyond the last entry means the log was
    /// cut short.
    pub fn finish(mut self) -> VerifyReport {
        if let Some(last) = self
            .checkpoints
            .iter()
            .skip(self.next_checkpoint)
            .map(|c| c.seq)
            .max()
        {
            let head = self.last_seq;
            self.line = None;
            self.problem(
                head + 1,
                ProblemKind::Truncated {
                    head,
                    checkpoint_seq: last,
                },
            );
        }
        if self.report.entries_checked > 0 || self.last_seq > 0 {
            self.report.head = Some(Head {
                seq: self.last_seq,
                hash: self.last_hash,
            });
        }
        self.report
    }
}

/// Verifies `tenant`'s whole log (from entry 1) streamed from `entries` in ascending
/// `seq` order, against `checkpoints` whose keys come from `keys`.
pub fn verify<K: CheckpointKeys + ?Sized>(
    tenant: &TenantId,
    entries: impl IntoIterator<Item = AuditEntry>,
    checkpoints: &[Checkpoint],
    keys: &K,
) -> VerifyReport {
    let mut verifier = Verifier::new(tenant, checkpoints, keys);
    for entry in entries {
        verifier.push(&entry);
    }
    verifier.finish()
}
