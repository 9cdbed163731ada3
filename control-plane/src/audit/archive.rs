//! Self-contained archives of closed fiscal years (N8).
//!
//! An archive is one JSON-lines file (UTF-8, every line ending in `\n`) that can be
//! verified on its own, years later, without the database:
//!
//! ```text
//! {"type":"header","format":"kakanai-audit-archive-v1","tenant":"city-a","fiscal_year":2025,
//!  "first_seq":1001,"last_seq":2000,"count":1000,"prev_hash":"<hex>","checkpoints":2,
//!  "created_at_ms":…}
//! {"type":"checkpoint","tenant":"city-a","seq":1000,"hash":"<hex>","signed_at_ms":…,"kid":"<hex>","signature":"<hex>"}
//! …                                                  (checkpoints, ascending seq)
//! {"type":"entry","seq":1001,"hash":"<hex>","record":{…AuditRecord…}}
//! …                                                  (count entries, ascending seq)
//! {"type":"trailer","final_hash":"<hex>","content_sha256":"<hex>","signed_at_ms":…,"kid":"<hex>","signature":"<hex>"}
//! ```
//!
//! - `prev_hash` is the hash of entry `first_seq - 1` (32 zero bytes for the very
//!   first year), so the year's chain is checked from its middle; a checkpoint at
//!   `first_seq - 1` (the previous year-end checkpoint), when there is one, is included
//!   and authenticates it.
//! - Checkpoints come *before* the entries so that a reader compares each entry with
//!   them as it streams by: verification is one pass in constant memory.
//! - The trailer signs `"kakanai-audit-archive-v1"` ‖ `content_sha256` (SHA-256 of
//!   every byte before the trailer line, header included) ‖ `final_hash` ‖
//!   `signed_at_ms` (i64 BE) with the audit key. The chain locates a changed, removed
//!   or reordered entry; the content digest catches any other byte change (a
//!   checkpoint line removed, whitespace); lines after the trailer are reported as
//!   appended.

use std::io::{self, BufRead, Write};

use kakanai_protocol::keys::{KeyId, SigningKey};
use ring::digest::{Context, SHA256};
use serde::{Deserialize, Serialize};

use super::chain::HASH_LEN;
use super::checkpoint::{Checkpoint, CheckpointKeys, CheckpointWire};
use super::entry::AuditEntry;
use super::fiscal::{fiscal_year_bounds, fiscal_year_of};
use super::verify::{ProblemKind, Verifier, VerifyReport};
use super::AuditError;
use crate::model::TenantId;

/// The `format` of the header.
pub const ARCHIVE_FORMAT: &str = "kakanai-audit-archive-v1";

/// Longest line accepted when reading an archive, so a damaged file cannot make the
/// reader buffer without bound. Records are small (no personal data beyond the
/// 宛名番号), far below this.
pub const MAX_LINE_BYTES: usize = 1 << 20;

/// Most checkpoints read from one archive (hourly for a year is under 9,000).
pub const MAX_ARCHIVE_CHECKPOINTS: usize = 1 << 20;

/// What to archive: a tenant's fiscal year, as the store found it (the entries after
/// `prev_seq`, `count` of them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchiveSpec {
    /// The tenant.
    pub tenant: TenantId,
    /// The closed fiscal year.
    pub fiscal_year: u16,
    /// The last entry before the year (0 if the year starts the log).
    pub prev_seq: u64,
    /// Its hash ([`super::chain::GENESIS`] if none).
    pub prev_hash: [u8; HASH_LEN],
    /// How many entries the year has.
    pub count: u64,
}

/// What was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchiveSummary {
    /// Entries written.
    pub count: u64,
    /// The last entry's number (`prev_seq` if none).
    pub last_seq: u64,
    /// The last entry's hash (`prev_hash` if none).
    pub final_hash: [u8; HASH_LEN],
    /// Checkpoints written.
    pub checkpoints: u64,
    /// Bytes written.
    pub bytes: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Header {
    format: String,
    tenant: String,
    fiscal_year: u16,
    first_seq: u64,
    last_seq: u64,
    count: u64,
    #[serde(with = "super::hex_serde::hash")]
    prev_hash: [u8; HASH_LEN],
    checkpoints: u64,
    created_at_ms: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Trailer {
    #[serde(with = "super::hex_serde::hash")]
    final_hash: [u8; HASH_LEN],
    #[serde(with = "super::hex_serde::hash")]
    content_sha256: [u8; HASH_LEN],
    signed_at_ms: i64,
    #[serde(with = "super::hex_serde::bytes")]
    kid: Vec<u8>,
    #[serde(with = "super::hex_serde::bytes")]
    signature: Vec<u8>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
enum Line {
    Header(Header),
    Checkpoint(CheckpointWire),
    Entry(AuditEntry),
    Trailer(Trailer),
}

fn trailer_bytes(
    content_sha256: &[u8; HASH_LEN],
    final_hash: &[u8; HASH_LEN],
    signed_at_ms: i64,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(ARCHIVE_FORMAT.len() + 2 * HASH_LEN + 8);
    out.extend_from_slice(ARCHIVE_FORMAT.as_bytes());
    out.extend_from_slice(content_sha256);
    out.extend_from_slice(final_hash);
    out.extend_from_slice(&signed_at_ms.to_be_bytes());
    out
}

fn finish_digest(ctx: Context) -> [u8; HASH_LEN] {
    let mut out = [0u8; HASH_LEN];
    out.copy_from_slice(ctx.finish().as_ref());
    out
}

/// A writer that hashes what passes through it (the content the trailer signs).
struct Hashing<W> {
    inner: W,
    ctx: Context,
    bytes: u64,
}

impl<W: Write> Hashing<W> {
    fn line(&mut self, line: &Line) -> Result<(), AuditError> {
        let mut buf = serde_json::to_vec(line)?;
        buf.push(b'\n');
        self.ctx.update(&buf);
        self.inner.write_all(&buf)?;
        self.bytes += buf.len() as u64;
        Ok(())
    }
}

/// Writes the archive of `spec`'s fiscal year to `writer`, streaming `entries` (in
/// ascending `seq`) and including the `checkpoints` of the tenant from `prev_seq` to
/// the year's last entry; signs the trailer with `key` at `now_ms`.
///
/// Refuses (with nothing usable written: write to a temporary file and rename it on
/// success) a year that is not closed at `now_ms`, and any entry that does not
/// continue the chain: wrong tenant or number, broken link, time outside the year, or
/// a count other than `spec.count`. An archive is therefore never made of a damaged
/// log; run [`super::verify()`] first to see where.
pub fn export_archive<W: Write>(
    spec: &ArchiveSpec,
    entries: impl IntoIterator<Item = AuditEntry>,
    checkpoints: &[Checkpoint],
    key: &SigningKey,
    now_ms: i64,
    writer: W,
) -> Result<ArchiveSummary, AuditError> {
    if spec.fiscal_year >= fiscal_year_of(now_ms) {
        return Err(AuditError::YearNotClosed {
            fiscal_year: spec.fiscal_year,
        });
    }
    let last_seq = spec
        .prev_seq
        .checked_add(spec.count)
        .ok_or(AuditError::Malformed {
            what: "archive range",
        })?;
    let mut cps: Vec<&Checkpoint> = checkpoints
        .iter()
        .filter(|c| c.tenant == spec.tenant && c.seq >= spec.prev_seq && c.seq <= last_seq)
        .collect();
    cps.sort_by_key(|c| c.seq);

    let mut out = Hashing {
        inner: io::BufWriter::new(writer),
        ctx: Context::new(&SHA256),
        bytes: 0,
    };
    out.line(&Line::Header(Header {
        format: ARCHIVE_FORMAT.to_owned(),
        tenant: spec.tenant.as_str().to_owned(),
        fiscal_year: spec.fiscal_year,
        first_seq: spec.prev_seq + 1,
        last_seq,
        count: spec.count,
        prev_hash: spec.prev_hash,
        checkpoints: cps.len() as u64,
        created_at_ms: now_ms,
    }))?;
    for cp in &cps {
        out.line(&Line::Checkpoint(cp.to_wire()))?;
    }

    let (start, end) = fiscal_year_bounds(spec.fiscal_year);
    let mut prev = (spec.prev_seq, spec.prev_hash);
    let mut count = 0u64;
    let mut entries = entries.into_iter();
    for entry in entries
        .by_ref()
        .take(usize::try_from(spec.count).unwrap_or(usize::MAX))
    {
        let fail = |reason| AuditError::Export {
            seq: entry.seq,
            reason,
        };
        if entry.record.tenant != spec.tenant.as_str() {
            return Err(fail("another tenant's entry"));
        }
        if entry.seq != prev.0 + 1 {
            return Err(fail("not the next number"));
        }
        if !entry.links_to(&prev.1) {
            return Err(fail("hash does not chain"));
        }
        if entry.record.at_ms < start || entry.record.at_ms >= end {
            return Err(fail("outside the fiscal year"));
        }
        out.line(&Line::Entry(entry.clone()))?;
        prev = (entry.seq, entry.hash);
        count += 1;
    }
    if count != spec.count || entries.next().is_some() {
        return Err(AuditError::ExportCount {
            expected: spec.count,
        });
    }

    let Hashing {
        mut inner,
        ctx,
        bytes,
    } = out;
    let content_sha256 = finish_digest(ctx);
    let signature = key.sign(&trailer_bytes(&content_sha256, &prev.1, now_ms));
    let trailer = Line::Trailer(Trailer {
        final_hash: prev.1,
        content_sha256,
        signed_at_ms: now_ms,
        kid: KeyId::of_key(&key.verifying_key()).as_bytes().to_vec(),
        signature,
    });
    let mut buf = serde_json::to_vec(&trailer)?;
    buf.push(b'\n');
    inner.write_all(&buf)?;
    inner.flush()?;
    Ok(ArchiveSummary {
        count,
        last_seq: prev.0,
        final_hash: prev.1,
        checkpoints: cps.len() as u64,
        bytes: bytes + buf.len() as u64,
    })
}

enum Read {
    Line,
    Eof,
    Unterminated,
    TooLong,
}

/// Reads one `\n`-terminated line into `buf` (terminator included), never buffering
/// more than [`MAX_LINE_BYTES`].
fn read_line<R: BufRead>(reader: &mut R, buf: &mut Vec<u8>) -> io::Result<Read> {
    buf.clear();
    loop {
        let available = match reader.fill_buf() {
            Ok(a) => a,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if available.is_empty() {
            return Ok(if buf.is_empty() {
                Read::Eof
            } else {
                Read::Unterminated
            });
        }
        let (take, done) = match available.iter().position(|&b| b == b'\n') {
            Some(i) => (i + 1, true),
            None => (available.len(), false),
        };
        buf.extend_from_slice(&available[..take]);
        reader.consume(take);
        if buf.len() > MAX_LINE_BYTES {
            return Ok(Read::TooLong);
        }
        if done {
            return Ok(Read::Line);
        }
    }
}

/// The state of an archive read, line by line.
struct ArchiveReader<'k, K: ?Sized> {
    keys: &'k K,
    report: VerifyReport,
    header: Option<(Header, TenantId)>,
    checkpoints: Vec<Checkpoint>,
    verifier: Option<Verifier>,
    entries: u64,
    ctx: Context,
    trailer: Option<(Trailer, [u8; HASH_LEN])>,
}

impl<K: CheckpointKeys + ?Sized> ArchiveReader<'_, K> {
    fn problem(&mut self, seq: Option<u64>, line: u64, kind: ProblemKind) {
        match &mut self.verifier {
            // Problems go to the verifier's report once it exists, so they stay in
            // file order with the chain's.
            Some(v) => v.report_mut().push(seq, Some(line), kind),
            None => self.report.push(seq, Some(line), kind),
        }
    }

    fn malformed(&mut self, line: u64, what: &str) {
        self.problem(None, line, ProblemKind::Malformed { what: what.into() });
    }

    /// Starts the chain check once the checkpoints are all read.
    fn verifier(&mut self) -> Option<&mut Verifier> {
        if self.verifier.is_none() {
            let (header, tenant) = self.header.as_ref()?;
            let mut v = Verifier::after(
                tenant,
                header.first_seq - 1,
                header.prev_hash,
                &self.checkpoints,
                self.keys,
            );
            // Carry over what was found before the entries (header, checkpoint lines).
            let earlier = std::mem::take(&mut self.report.problems);
            let r = v.report_mut();
            let later = std::mem::replace(&mut r.problems, earlier);
            r.problems.extend(later);
            r.problems_omitted += self.report.problems_omitted;
            self.verifier = Some(v);
        }
        self.verifier.as_mut()
    }

    fn header(&mut self, n: u64, bytes: &[u8]) -> bool {
        self.ctx.update(bytes);
        let header = match serde_json::from_slice::<Line>(bytes) {
            Ok(Line::Header(h)) if h.format == ARCHIVE_FORMAT && h.first_seq > 0 => h,
            _ => {
                self.malformed(n, "first line is not an archive header");
                return false;
            }
        };
        let Ok(tenant) = TenantId::new(&header.tenant) else {
            self.malformed(n, "tenant id in the header");
            return false;
        };
        if header.first_seq.checked_add(header.count) != header.last_seq.checked_add(1) {
            self.problem(
                None,
                n,
                ProblemKind::HeaderMismatch {
                    what: "first_seq + count - 1 != last_seq".into(),
                },
            );
        }
        self.report.tenant = tenant.as_str().to_owned();
        self.header = Some((header, tenant));
        true
    }

    fn line(&mut self, n: u64, bytes: &[u8]) {
        let parsed = serde_json::from_slice::<Line>(bytes);
        if self.trailer.is_some() {
            // Anything after the trailer was appended.
            self.problem(None, n, ProblemKind::TrailingData);
            return;
        }
        // Everything before the trailer line is what the trailer signs.
        if !matches!(parsed, Ok(Line::Trailer(_))) {
            self.ctx.update(bytes);
        }
        match parsed {
            Err(_) => self.malformed(n, "not a valid archive line"),
            Ok(Line::Header(_)) => self.malformed(n, "second header"),
            Ok(Line::Checkpoint(wire)) => {
                let seq = wire.seq;
                if self.verifier.is_some() {
                    self.problem(
                        Some(seq),
                        n,
                        ProblemKind::Malformed {
                            what: "checkpoint after the entries".into(),
                        },
                    );
                } else if self.checkpoints.len() >= MAX_ARCHIVE_CHECKPOINTS {
                    self.malformed(n, "too many checkpoints");
                } else {
                    match wire.into_checkpoint() {
                        Ok(cp) => self.checkpoints.push(cp),
                        Err(_) => self.problem(
                            Some(seq),
                            n,
                            ProblemKind::Malformed {
                                what: "checkpoint ids".into(),
                            },
                        ),
                    }
                }
            }
            Ok(Line::Entry(entry)) => self.entry(n, &entry),
            Ok(Line::Trailer(t)) => {
                // The trailer is not under its own digest, so it must be in the one
                // form the exporter writes: no spacing, field order or extra field
                // can change unnoticed.
                let canonical = serde_json::to_vec(&Line::Trailer(t.clone())).ok();
                if canonical.as_deref() != bytes.strip_suffix(b"\n") {
                    self.malformed(n, "trailer not in its canonical form");
                }
                let ctx = std::mem::replace(&mut self.ctx, Context::new(&SHA256));
                self.trailer = Some((t, finish_digest(ctx)));
            }
        }
    }

    fn entry(&mut self, n: u64, entry: &AuditEntry) {
        self.entries += 1;
        let Some((header, _)) = self.header.as_ref() else {
            return;
        };
        let (start, end) = fiscal_year_bounds(header.fiscal_year);
        let outside = entry.record.at_ms < start || entry.record.at_ms >= end;
        let (first, expected_count) = (header.first_seq, header.count);
        if self.entries > expected_count {
            self.problem(
                Some(entry.seq),
                n,
                ProblemKind::HeaderMismatch {
                    what: format!("more than the {expected_count} entries announced"),
                },
            );
        }
        if self.entries == 1 && entry.seq != first {
            self.problem(
                Some(entry.seq),
                n,
                ProblemKind::HeaderMismatch {
                    what: format!("first entry is not {first}"),
                },
            );
        }
        if let Some(v) = self.verifier() {
            v.line = Some(n);
            v.push(entry);
            if outside {
                v.report_mut()
                    .push(Some(entry.seq), Some(n), ProblemKind::OutsideFiscalYear);
            }
        }
    }

    fn finish(mut self, last_line: u64) -> VerifyReport {
        // Started here if the year has no entries; `None` only without a header.
        self.verifier();
        let Some(mut verifier) = self.verifier.take() else {
            return self.report;
        };
        verifier.line = None;
        let head = verifier.head();
        let mut report = verifier.finish();
        let Some((header, _)) = self.header.as_ref() else {
            return report;
        };
        if self.entries < header.count {
            report.push(
                None,
                None,
                ProblemKind::HeaderMismatch {
                    what: format!(
                        "{} entries announced, {} present",
                        header.count, self.entries
                    ),
                },
            );
        }
        let checkpoints = self.checkpoints.len() as u64;
        if checkpoints != header.checkpoints {
            report.push(
                None,
                None,
                ProblemKind::HeaderMismatch {
                    what: format!(
                        "{} checkpoints announced, {checkpoints} present",
                        header.checkpoints
                    ),
                },
            );
        }
        if header.count > 0 && head.0 != header.last_seq {
            report.push(
                Some(head.0),
                None,
                ProblemKind::HeaderMismatch {
                    what: format!("last entry is not {}", header.last_seq),
                },
            );
        }
        let Some((trailer, digest)) = self.trailer.take() else {
            report.push(None, Some(last_line + 1), ProblemKind::MissingTrailer);
            return report;
        };
        if trailer.final_hash != head.1 {
            report.push(
                Some(head.0),
                None,
                ProblemKind::HeaderMismatch {
                    what: "trailer's final hash is not the last entry's".into(),
                },
            );
        }
        if trailer.content_sha256 != digest {
            report.push(None, None, ProblemKind::ContentChanged);
        }
        let kid = KeyId::new(trailer.kid.clone()).ok();
        match kid.as_ref().and_then(|k| self.keys.key(k)) {
            None => report.push(
                None,
                None,
                ProblemKind::UnknownTrailerKey {
                    kid: hex::encode(&trailer.kid),
                },
            ),
            Some(key) => {
                let signed = trailer_bytes(
                    &trailer.content_sha256,
                    &trailer.final_hash,
                    trailer.signed_at_ms,
                );
                if key.verify(&signed, &trailer.signature).is_err() {
                    report.push(None, None, ProblemKind::BadTrailerSignature);
                }
            }
        }
        report
    }
}

/// Verifies an archive on its own: header, checkpoint signatures and hashes, every
/// entry's chain from the header's `prev_hash`, the fiscal year of every entry, the
/// counts, the trailer's content digest and signature (keys from `keys`), and that
/// nothing follows the trailer. Reads line by line in constant memory (apart from the
/// checkpoints). An unreadable file is reported as a problem, not an error.
pub fn verify_archive<R: BufRead, K: CheckpointKeys + ?Sized>(
    mut reader: R,
    keys: &K,
) -> VerifyReport {
    let mut state = ArchiveReader {
        keys,
        report: VerifyReport::new(""),
        header: None,
        checkpoints: Vec::new(),
        verifier: None,
        entries: 0,
        ctx: Context::new(&SHA256),
        trailer: None,
    };
    let mut buf = Vec::new();
    let mut n = 0u64;
    loop {
        let read = match read_line(&mut reader, &mut buf) {
            Ok(r) => r,
            Err(e) => {
                state.problem(
                    None,
                    n + 1,
                    ProblemKind::Unreadable {
                        message: e.to_string(),
                    },
                );
                break;
            }
        };
        match read {
            Read::Eof => break,
            Read::TooLong => {
                state.malformed(n + 1, "line too long");
                break;
            }
            Read::Unterminated | Read::Line => {
                n += 1;
                if matches!(read, Read::Unterminated) {
                    state.malformed(n, "last line not terminated");
                }
                if n == 1 {
                    if !state.header(n, &buf) {
                        return state.report;
                    }
                } else {
                    state.line(n, &buf);
                }
            }
        }
    }
    if n == 0 {
        state.malformed(1, "empty file");
        return state.report;
    }
    state.finish(n)
}
