//! The procedure catalogue's versions per tenant (issue 7, item 1): installed from
//! the TOML layout of [`crate::rules::catalog`], validated before anything is written,
//! scheduled by their `effective_from` date.
//!
//! A tenant's stored versions always form a catalogue that loads: an install validates
//! the stored versions together with the new ones (a new version may `extend` a stored
//! one) inside the write transaction, and writes nothing if there is any error, so the
//! versions in force keep working. A version already in force (its date has come) is
//! never replaced or deleted: determinations already given refer to it, and a change
//! to the law takes a new version with its own date.
//!
//! Status (scheduled / active / superseded) is computed from the dates and today's
//! date in Japan, never stored.

use std::collections::BTreeSet;

use super::backend::{check_id, check_text, classify, with_pool, Backend, Cols};
use super::{Result, Store, StoreError};
use crate::model::TenantId;
use crate::rules::{CatalogueError, CatalogueFiles, CatalogueSet, Date};

/// Where a version stands on a given day.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum VersionStatus {
    /// Its date has not come yet; it can still be replaced or deleted.
    Scheduled,
    /// The newest version whose date has come: what the counter uses for events today.
    Active,
    /// A newer version is active; still used for events dated in its period.
    Superseded,
}

impl VersionStatus {
    /// Japanese label for administrators.
    pub fn label(self) -> &'static str {
        match self {
            Self::Scheduled => "適用予定",
            Self::Active => "適用中",
            Self::Superseded => "適用終了",
        }
    }
}

/// A stored catalogue version, without its files.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CatalogueVersion {
    /// The version directory's name (what `extends` refers to).
    pub name: String,
    /// The version label from its `catalogue.toml`.
    pub version: String,
    /// In force from (for events on or after this date).
    pub effective_from: Date,
    /// The day before the next version's date, if there is a next version.
    pub effective_until: Option<Date>,
    /// When it was uploaded (ms since the epoch).
    pub uploaded_at_ms: i64,
    /// Who uploaded it (login id, or what the CLI was told).
    pub uploaded_by: String,
    /// Scheduled, active or superseded, as of the day asked about.
    pub status: VersionStatus,
}

/// What an install did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstallOutcome {
    /// Versions written (new, or scheduled ones replaced).
    pub installed: Vec<String>,
    /// Versions identical to what was stored, left as they were.
    pub unchanged: Vec<String>,
    /// Every stored version afterwards, oldest first: the schedule.
    pub versions: Vec<CatalogueVersion>,
}

/// Why an install was refused. Nothing was written in any case.
#[derive(Debug, thiserror::Error)]
pub enum CatalogueInstallError {
    /// The catalogue (stored versions with the new ones) does not validate.
    #[error("catalogue rejected ({} error(s))", .0.len())]
    Invalid(Vec<CatalogueError>),
    /// The upload replaces a version that is already in force.
    #[error("version {0} is already in force and cannot be replaced; install a new version with a later effective_from")]
    InForce(String),
    /// The upload holds no version directory.
    #[error("no catalogue version in the upload")]
    Empty,
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Today's date in Japan (UTC+9, no daylight saving): the day city halls go by.
pub(crate) fn jst_date(now_ms: i64) -> Date {
    const JST_OFFSET_MS: i64 = 9 * 3_600_000;
    Date::from_days((now_ms + JST_OFFSET_MS).div_euclid(86_400_000))
}

/// The version directory a file belongs to.
fn version_of(path: &str) -> &str {
    path.split_once('/').map_or(path, |(dir, _)| dir)
}

/// The files of version `name` within `files`.
fn files_of(files: &CatalogueFiles, name: &str) -> CatalogueFiles {
    files
        .iter()
        .filter(|(k, _)| version_of(k) == name)
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

struct Row {
    name: String,
    version: String,
    effective_from: Date,
    files: String,
    uploaded_at_ms: i64,
    uploaded_by: String,
}

fn row_from(r: &impl Cols) -> Result<Row> {
    Ok(Row {
        name: r.text("name")?,
        version: r.text("version")?,
        effective_from: Date::parse(&r.text("effective_from")?)
            .map_err(|_| StoreError::Corrupt("catalogue version date"))?,
        files: r.text("files")?,
        uploaded_at_ms: r.int("uploaded_at_ms")?,
        uploaded_by: r.text("uploaded_by")?,
    })
}

fn parse_files(json: &str) -> Result<CatalogueFiles> {
    serde_json::from_str(json).map_err(|_| StoreError::Corrupt("catalogue files"))
}

/// The schedule: each row with its status on `today` and the end of its period.
fn schedule(mut rows: Vec<Row>, today: Date) -> Vec<CatalogueVersion> {
    rows.sort_by_key(|r| r.effective_from);
    let active = rows.iter().rposition(|r| r.effective_from <= today);
    let next_dates: Vec<Option<Date>> = (0..rows.len())
        .map(|i| rows.get(i + 1).map(|n| n.effective_from.add_days(-1)))
        .collect();
    rows.into_iter()
        .zip(next_dates)
        .enumerate()
        .map(|(i, (r, until))| CatalogueVersion {
            status: match active {
                Some(a) if i == a => VersionStatus::Active,
                Some(a) if i < a => VersionStatus::Superseded,
                _ => VersionStatus::Scheduled,
            },
            name: r.name,
            version: r.version,
            effective_from: r.effective_from,
            effective_until: until,
            uploaded_at_ms: r.uploaded_at_ms,
            uploaded_by: r.uploaded_by,
        })
        .collect()
}

const SELECT_ROWS: &str = "SELECT name, version, effective_from, files, uploaded_at_ms, \
     uploaded_by FROM catalog_versions WHERE tenant = $1 ORDER BY effective_from";

/// Bumps the tenant's revision (creating its head row on first use). On PostgreSQL
/// the UPDATE's row lock serialises installs of one tenant across instances, and
/// under READ COMMITTED the statements after it see what the previous holder
/// committed; SQLite's `BEGIN IMMEDIATE` already excludes other writers.
const BUMP_REVISION: &str = "INSERT INTO catalog_heads (tenant, revision) VALUES ($1, 1) \
     ON CONFLICT (tenant) DO UPDATE SET revision = catalog_heads.revision + 1";

impl Store {
    /// Installs every version directory in `files` for `tenant`, on the condition that
    /// the stored versions together with these validate; otherwise nothing is written
    /// and every error is returned. A version identical to the stored one is left
    /// alone; a different one with the name of a stored version replaces it only while
    /// that version is scheduled. Versions dated in the past are accepted (the first
    /// install of a city's catalogue is).
    pub async fn install_catalogue_versions(
        &self,
        tenant: &TenantId,
        files: &CatalogueFiles,
        uploaded_by: &str,
        now_ms: i64,
    ) -> Result<InstallOutcome, CatalogueInstallError> {
        check_id("uploader", uploaded_by)?;
        for (path, text) in files {
            check_text("catalogue file name", path)?;
            check_text("catalogue file", text)?;
        }
        let today = jst_date(now_ms);
        let names: BTreeSet<&str> = files.keys().map(|k| version_of(k)).collect();
        if names.is_empty() {
            return Err(CatalogueInstallError::Empty);
        }
        with_pool!(self, pool => {
            let mut tx = pool.begin_write().await.map_err(CatalogueInstallError::Store)?;
            sqlx::query(BUMP_REVISION)
                .bind(tenant.as_str())
                .execute(&mut *tx)
                .await
                .map_err(|e| classify(e, "catalogue head", "tenant"))?;
            let rows = sqlx::query(SELECT_ROWS)
                .bind(tenant.as_str())
                .fetch_all(&mut *tx)
                .await
                .map_err(StoreError::from)?
                .iter()
                .map(row_from)
                .collect::<Result<Vec<_>>>()?;
            // The catalogue as it would be: stored versions, those named in the upload
            // replaced by the upload's files.
            let mut merged = CatalogueFiles::new();
            let (mut installed, mut unchanged, mut in_force) = (Vec::new(), Vec::new(), None);
            for r in &rows {
                let stored = parse_files(&r.files)?;
                if names.contains(r.name.as_str()) {
                    if stored == files_of(files, &r.name) {
                        unchanged.push(r.name.clone());
                    } else if r.effective_from <= today && in_force.is_none() {
                        in_force = Some(r.name.clone());
                    }
                    continue;
                }
                merged.extend(stored);
            }
            merged.extend(files.iter().map(|(k, v)| (k.clone(), v.clone())));
            // Validation first, so an administrator sees every error of the upload
            // even when it also collides with a version in force.
            let set = CatalogueSet::load_from_files(&merged)
                .map_err(CatalogueInstallError::Invalid)?;
            if let Some(name) = in_force {
                return Err(CatalogueInstallError::InForce(name));
            }
            for name in &names {
                if unchanged.iter().any(|u| u == name) {
                    continue;
                }
                // Loaded without error, so every version directory is in the set.
                let cat = set
                    .versions()
                    .iter()
                    .find(|c| c.dir == *name)
                    .ok_or(StoreError::Invalid("catalogue version"))?;
                let json = serde_json::to_string(&files_of(files, name))
                    .map_err(|_| StoreError::Invalid("catalogue files"))?;
                sqlx::query(
                    "INSERT INTO catalog_versions (tenant, name, version, effective_from, \
                     files, uploaded_at_ms, uploaded_by) VALUES ($1, $2, $3, $4, $5, $6, $7) \
                     ON CONFLICT (tenant, name) DO UPDATE SET version = excluded.version, \
                     effective_from = excluded.effective_from, files = excluded.files, \
                     uploaded_at_ms = excluded.uploaded_at_ms, \
                     uploaded_by = excluded.uploaded_by",
                )
                .bind(tenant.as_str())
                .bind(*name)
                .bind(&cat.version)
                .bind(cat.effective_from.to_string())
                .bind(&json)
                .bind(now_ms)
                .bind(uploaded_by)
                .execute(&mut *tx)
                .await
                .map_err(|e| classify(e, "catalogue version date", "tenant"))?;
                installed.push((*name).to_owned());
            }
            if installed.is_empty() {
                // Nothing changed: leave the revision as it was, so no instance
                // reloads for nothing.
                tx.rollback().await.map_err(StoreError::from)?;
            } else {
                tx.commit().await.map_err(StoreError::from)?;
            }
            let versions = self.list_catalogue_versions(tenant, now_ms).await?;
            Ok(InstallOutcome { installed, unchanged, versions })
        })
    }

    /// The tenant's versions, oldest first, with their status on today's date (JST).
    pub async fn list_catalogue_versions(
        &self,
        tenant: &TenantId,
        now_ms: i64,
    ) -> Result<Vec<CatalogueVersion>> {
        with_pool!(self, pool => {
            let rows = sqlx::query(SELECT_ROWS)
                .bind(tenant.as_str())
                .fetch_all(pool)
                .await?
                .iter()
                .map(row_from)
                .collect::<Result<Vec<_>>>()?;
            Ok(schedule(rows, jst_date(now_ms)))
        })
    }

    /// The files of one version as uploaded, or `None` if the tenant has no such
    /// version.
    pub async fn catalogue_version_files(
        &self,
        tenant: &TenantId,
        name: &str,
    ) -> Result<Option<CatalogueFiles>> {
        with_pool!(self, pool => {
            let row = sqlx::query(
                "SELECT files FROM catalog_versions WHERE tenant = $1 AND name = $2",
            )
            .bind(tenant.as_str())
            .bind(name)
            .fetch_optional(pool)
            .await?;
            row.map(|r| parse_files(&r.text("files")?)).transpose()
        })
    }

    /// Every stored version's files together (what [`CatalogueSet::load_from_files`]
    /// takes), with the revision they belong to. The revision is read first, so if an
    /// install lands in between, the files are newer than the revision and the caller
    /// reloads once more rather than keeping stale files.
    pub async fn catalogue_files(&self, tenant: &TenantId) -> Result<(i64, CatalogueFiles)> {
        let revision = self.catalogue_revision(tenant).await?;
        with_pool!(self, pool => {
            let rows = sqlx::query("SELECT files FROM catalog_versions WHERE tenant = $1")
                .bind(tenant.as_str())
                .fetch_all(pool)
                .await?;
            let mut files = CatalogueFiles::new();
            for r in &rows {
                files.extend(parse_files(&r.text("files")?)?);
            }
            Ok((revision, files))
        })
    }

    /// The tenant's catalogue revision: 0 before the first install, then bumped by
    /// every install or deletion that changed something.
    pub async fn catalogue_revision(&self, tenant: &TenantId) -> Result<i64> {
        with_pool!(self, pool => {
            let row = sqlx::query("SELECT revision FROM catalog_heads WHERE tenant = $1")
                .bind(tenant.as_str())
                .fetch_optional(pool)
                .await?;
            Ok(row.map(|r| r.int("revision")).transpose()?.unwrap_or(0))
        })
    }

    /// Deletes a version that is not yet in force. [`StoreError::NotFound`] if there is
    /// none by that name; [`StoreError::Conflict`] if it is in force, or if another
    /// stored version extends it (the rest would no longer load).
    pub async fn delete_scheduled_catalogue_version(
        &self,
        tenant: &TenantId,
        name: &str,
        now_ms: i64,
    ) -> Result<()> {
        let today = jst_date(now_ms);
        with_pool!(self, pool => {
            let mut tx = pool.begin_write().await?;
            sqlx::query(BUMP_REVISION)
                .bind(tenant.as_str())
                .execute(&mut *tx)
                .await
                .map_err(|e| classify(e, "catalogue head", "tenant"))?;
            let rows = sqlx::query(SELECT_ROWS)
                .bind(tenant.as_str())
                .fetch_all(&mut *tx)
                .await?
                .iter()
                .map(row_from)
                .collect::<Result<Vec<_>>>()?;
            let Some(target) = rows.iter().find(|r| r.name == name) else {
                return Err(StoreError::NotFound("catalogue version"));
            };
            if target.effective_from <= today {
                return Err(StoreError::Conflict("catalogue version in force"));
            }
            let mut rest = CatalogueFiles::new();
            for r in rows.iter().filter(|r| r.name != name) {
                rest.extend(parse_files(&r.files)?);
            }
            if !rest.is_empty() && CatalogueSet::load_from_files(&rest).is_err() {
                return Err(StoreError::Conflict("another catalogue version extends it"));
            }
            sqlx::query("DELETE FROM catalog_versions WHERE tenant = $1 AND name = $2")
                .bind(tenant.as_str())
                .bind(name)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jst_date_turns_at_midnight_in_japan() {
        // 2025-03-31T15:00:00Z is 2025-04-01 00:00 JST.
        let utc_midnight_apr1 = Date::new(2025, 4, 1).map(|d| d.to_days() * 86_400_000);
        let t = utc_midnight_apr1.unwrap_or_default() - 9 * 3_600_000;
        assert_eq!(Some(jst_date(t)), Date::new(2025, 4, 1));
        assert_eq!(Some(jst_date(t - 1)), Date::new(2025, 3, 31));
    }
}
