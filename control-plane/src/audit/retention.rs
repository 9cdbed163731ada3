//! The retention job (N8): archive a closed fiscal year to a file, and delete a year
//! from the database once it is older than the retention period and its archive is
//! written, recorded and still verifies.
//!
//! `kakanai-control-plane audit archive` and `audit purge` are thin wrappers around
//! [`archive_year`] and [`purge_year`]. The archive is written to `NAME.partial`,
//! verified on its own, and only then renamed and recorded, so a crash leaves either
//! nothing recorded or a whole, verified file. Deletion re-reads and verifies that
//! file, checks that it is the one recorded (content digest) and leaves the rest to
//! [`Store::purge_audit_year`], which deletes in one transaction with its audit entry.

use std::io::BufReader;
use std::path::{Path, PathBuf};

use kakanai_protocol::keys::SigningKey;

use super::checkpoint::CheckpointKeys;
use super::{export_archive, verify_archive, ArchiveSpec, AuditEntry, RetentionPolicy};
use crate::model::{Actor, AuditRecord, Place, TenantId};
use crate::store::{AuditArchive, Store};

/// What [`archive_year`] wrote.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Archived {
    /// The fiscal year.
    pub fiscal_year: u16,
    /// The archive file.
    pub file: PathBuf,
    /// Entries in it.
    pub entries: u64,
    /// Checkpoints in it.
    pub checkpoints: u64,
    /// Its size.
    pub bytes: u64,
    /// SHA-256 (hex) of the whole file, as recorded.
    pub content_sha256: String,
}

/// Why an archive or deletion did not happen.
#[derive(Debug, thiserror::Error)]
pub enum RetentionError {
    /// The store refused or failed.
    #[error("store: {0}")]
    Store(#[from] crate::store::StoreError),
    /// The audit rules refused (year not closed, damaged chain …).
    #[error(transparent)]
    Audit(#[from] super::AuditError),
    /// A file could not be written or read.
    #[error("{what} {path}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The archive does not verify, or is not the one recorded.
    #[error("the archive {path} cannot be trusted: {reason}")]
    BadArchive {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The retention period forbids deleting the year yet.
    #[error(
        "fiscal year {fiscal_year} is within the retention period ({years} closed years are \
         kept; the oldest that may go now is {oldest_deletable})"
    )]
    TooRecent {
        /// The year asked for.
        fiscal_year: u16,
        /// The retention in years.
        years: u16,
        /// The newest year that may be deleted now.
        oldest_deletable: u16,
    },
}

fn io(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> RetentionError {
    let path = path.to_owned();
    move |source| RetentionError::Io { what, path, source }
}

/// Entries read from the store at a time while archiving.
const ARCHIVE_PAGE: u32 = 10_000;

/// The archive file's name for a tenant's year.
pub fn archive_file_name(tenant: &TenantId, fy: u16) -> String {
    format!("audit-{}-FY{fy}.jsonl", tenant.as_str())
}

/// Writes fiscal year `fy` of `tenant` to `dir` (signed with `key`), verifies the file
/// with `keys`, and records it in the store with an audit entry by `by`.
#[allow(clippy::too_many_arguments)]
pub async fn archive_year<K: CheckpointKeys + ?Sized>(
    store: &Store,
    tenant: &TenantId,
    fy: u16,
    dir: &Path,
    key: &SigningKey,
    keys: &K,
    by: &Actor,
    now_ms: i64,
) -> Result<Archived, RetentionError> {
    let year = store.audit_year(tenant, fy).await?;
    let spec = ArchiveSpec {
        tenant: tenant.clone(),
        fiscal_year: fy,
        prev_seq: year.prev_seq,
        prev_hash: year.prev_hash,
        count: year.count,
    };
    let checkpoints = store.checkpoints(tenant).await?;
    let name = archive_file_name(tenant, fy);
    let file = dir.join(&name);
    if file.exists() {
        return Err(RetentionError::BadArchive {
            path: file,
            reason: "a file of that name exists already; move it away first".into(),
        });
    }
    let partial = dir.join(format!("{name}.partial"));
    let out = std::fs::File::create(&partial).map_err(io("creating", &partial))?;
    // The year's entries stream from the store, a page at a time, to the writer on a
    // blocking thread: memory holds a few pages, whatever the year's size.
    let (pages_tx, mut pages_rx) = tokio::sync::mpsc::channel::<Vec<AuditEntry>>(2);
    let reader = {
        let store = store.clone();
        let tenant = tenant.clone();
        let last = year.prev_seq + year.count;
        let mut from = year.prev_seq + 1;
        tokio::spawn(async move {
            while from <= last {
                let page = store.audit_range(&tenant, from, ARCHIVE_PAGE).await?;
                let Some(end) = page.last().map(|e| e.seq) else {
                    break;
                };
                let page: Vec<_> = page.into_iter().filter(|e| e.seq <= last).collect();
                if pages_tx.send(page).await.is_err() {
                    // The writer stopped (it says why).
                    break;
                }
                from = end + 1;
            }
            Ok::<(), crate::store::StoreError>(())
        })
    };
    let key = SigningKey::from_seed(key.seed()).map_err(|e| RetentionError::BadArchive {
        path: partial.clone(),
        reason: format!("the signing key: {e}"),
    })?;
    let writer = tokio::task::spawn_blocking(move || {
        let entries = std::iter::from_fn(move || pages_rx.blocking_recv()).flatten();
        export_archive(&spec, entries, &checkpoints, &key, now_ms, out)
    });
    let written = writer.await;
    let read = reader.await;
    // A store failure explains a short count: it is said first.
    let summary = match (read, written) {
        (Ok(Ok(())), Ok(Ok(s))) => Ok(s),
        (Ok(Err(e)), _) => Err(RetentionError::from(e)),
        (_, Ok(Err(e))) => Err(e.into()),
        (Err(e), _) | (_, Err(e)) => Err(RetentionError::BadArchive {
            path: partial.clone(),
            reason: format!("the archive task failed: {e}"),
        }),
    };
    let summary = match summary {
        Ok(s) => s,
        Err(e) => {
            let _ = std::fs::remove_file(&partial);
            return Err(e);
        }
    };
    let content_sha256 = match check_archive(&partial, keys) {
        Ok(sha) => sha,
        Err(e) => {
            let _ = std::fs::remove_file(&partial);
            return Err(e);
        }
    };
    std::fs::File::open(&partial)
        .and_then(|f| f.sync_all())
        .map_err(io("syncing", &partial))?;
    std::fs::rename(&partial, &file).map_err(io("renaming", &partial))?;
    let record = AuditArchive {
        fiscal_year: fy,
        first_seq: year.prev_seq + 1,
        last_seq: summary.last_seq,
        final_hash: summary.final_hash,
        content_sha256: content_sha256.clone(),
        file_name: name,
        archived_at_ms: now_ms,
        purged_at_ms: None,
    };
    let audit = AuditRecord {
        tenant: tenant.as_str().to_owned(),
        at_ms: now_ms,
        actor: by.clone(),
        action: "audit.archive".into(),
        resident: None,
        place: Place::Internal,
        outcome: "ok".into(),
        detail: serde_json::json!({
            "fiscal_year": fy,
            "entries": summary.count,
            "content_sha256": content_sha256,
        }),
    };
    store.record_audit_archive(tenant, &record, &audit).await?;
    Ok(Archived {
        fiscal_year: fy,
        file,
        entries: summary.count,
        checkpoints: summary.checkpoints,
        bytes: summary.bytes,
        content_sha256,
    })
}

/// Verifies the archive at `path` on its own and returns the SHA-256 (hex) of the file.
fn check_archive<K: CheckpointKeys + ?Sized>(
    path: &Path,
    keys: &K,
) -> Result<String, RetentionError> {
    let f = std::fs::File::open(path).map_err(io("opening", path))?;
    let report = verify_archive(BufReader::new(f), keys);
    if !report.is_ok() {
        let reason = report
            .problems
            .first()
            .map_or_else(|| "problems found".to_owned(), ToString::to_string);
        return Err(RetentionError::BadArchive {
            path: path.to_owned(),
            reason,
        });
    }
    let bytes = std::fs::read(path).map_err(io("reading", path))?;
    Ok(hex::encode(ring::digest::digest(
        &ring::digest::SHA256,
        &bytes,
    )))
}

/// Deletes fiscal year `fy` of `tenant` from the database when `policy` allows it and
/// `archive` (the file written by [`archive_year`]) still verifies with `keys` and is
/// the one recorded. Returns the number of entries deleted.
#[allow(clippy::too_many_arguments)]
pub async fn purge_year<K: CheckpointKeys + ?Sized>(
    store: &Store,
    tenant: &TenantId,
    fy: u16,
    archive: &Path,
    keys: &K,
    policy: RetentionPolicy,
    by: &Actor,
    now_ms: i64,
) -> Result<u64, RetentionError> {
    let recorded = store
        .audit_archives(tenant)
        .await?
        .into_iter()
        .find(|a| a.fiscal_year == fy);
    if !policy.may_delete(fy, now_ms, recorded.is_some()) {
        if recorded.is_none() {
            return Err(RetentionError::BadArchive {
                path: archive.to_owned(),
                reason: format!(
                    "fiscal year {fy} has no recorded archive: run `audit archive` first"
                ),
            });
        }
        return Err(RetentionError::TooRecent {
            fiscal_year: fy,
            years: policy.years(),
            oldest_deletable: policy.oldest_kept(now_ms).saturating_sub(1),
        });
    }
    let recorded = recorded.ok_or_else(|| RetentionError::BadArchive {
        path: archive.to_owned(),
        reason: "not recorded".into(),
    })?;
    let sha = check_archive(archive, keys)?;
    if sha != recorded.content_sha256 {
        return Err(RetentionError::BadArchive {
            path: archive.to_owned(),
            reason: format!(
                "it is not the archive recorded for fiscal year {fy} ({})",
                recorded.file_name
            ),
        });
    }
    let audit = AuditRecord {
        tenant: tenant.as_str().to_owned(),
        at_ms: now_ms,
        actor: by.clone(),
        action: "audit.purge".into(),
        resident: None,
        place: Place::Internal,
        outcome: "ok".into(),
        detail: serde_json::json!({
            "fiscal_year": fy,
            "first_seq": recorded.first_seq,
            "last_seq": recorded.last_seq,
            "content_sha256": recorded.content_sha256,
        }),
    };
    Ok(store.purge_audit_year(tenant, fy, &audit, now_ms).await?)
}

/// Verifies the tenant's whole log in the store against its checkpoints (keys from
/// `keys`): from the first entry, or, once older years were deleted, from the base
/// they left. Pages through the log, so memory stays constant whatever its length.
pub async fn verify_store<K: CheckpointKeys + ?Sized>(
    store: &Store,
    tenant: &TenantId,
    keys: &K,
) -> Result<super::VerifyReport, crate::store::StoreError> {
    let checkpoints = store.checkpoints(tenant).await?;
    let base = store.audit_base(tenant).await?;
    let mut verifier = match base {
        Some(b) => super::Verifier::after(tenant, b.seq, b.hash, &checkpoints, keys),
        None => super::Verifier::new(tenant, &checkpoints, keys),
    };
    let mut from = base.map_or(1, |b| b.seq + 1);
    loop {
        let page = store.audit_range(tenant, from, 10_000).await?;
        let Some(last) = page.last().map(|e| e.seq) else {
            break;
        };
        for entry in &page {
            verifier.push(entry);
        }
        from = last + 1;
    }
    Ok(verifier.finish())
}
