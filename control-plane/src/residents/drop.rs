//! The drop directory (取込フォルダ): where the core systems leave full and delta
//! files, picked up on a schedule and on demand (data-linkage.md: file linkage by
//! periodic polling).
//!
//! Layout, per tenant (the service uses `DROP_DIR/<tenant>/`; the CLI's
//! `import --drop-dir DIR` uses `DIR` itself):
//!
//! ```text
//! DIR/jumin_20250401T063000.csv          a full 住民記録 file as of that time
//! DIR/jumin_20250401T063000.csv.ok       its marker: the file is complete
//! DIR/kokuho_delta_20250402T063000.csv   a delta (異動分) of 国民健康保険
//! DIR/done/…                             files applied (or found already applied)
//! DIR/rejected/…                         files refused (the report says why)
//! ```
//!
//! **Names**: `<stem>[_delta][_<timestamp>].<ext>`, where `<stem>.<ext>` is the kind's
//! `file` in the mapping and the timestamp is `YYYYMMDDhhmmss` or `YYYYMMDDThhmmss`.
//! A name that matches no kind is moved to `rejected/` with a report of kind
//! `unknown`.
//!
//! **Complete files only**: a file is read only once its marker `<name>.ok` exists.
//! The sending system writes the data file first and the (empty) marker after it is
//! complete — the usual トリガーファイル convention of Japanese file linkage. A
//! size-stability heuristic was rejected: a slow network copy can pause longer than
//! any fixed wait, and then half a file would be applied as a full file, removing
//! every resident after the cut.
//!
//! **Order**: every full file before every delta file; within each, by kind
//! ([`DataKind::ALL`]), then timestamp (untimed first), then name. So a day's full
//! files are in place before the deltas that build on them, and the deltas of a kind
//! apply oldest first; a file older than the last applied of its kind is refused.
//!
//! Each file is imported with [`import_file`] (one transaction or nothing, report
//! kept in the store), then moved with its marker to `done/` (applied or already
//! applied) or `rejected/`. A name already taken there gets a `.1`, `.2` … suffix.
//!
//! Several instances over one database may scan the same directory: the import is
//! serialised per tenant and kind by the store, a delta applied twice is recognised
//! by its hash, and a file another instance already moved is skipped.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use ring::digest;

use super::import::{import_file, FileReport, FileSpec, ImportError, ImportOptions, Outcome};
use super::mapping::{DataKind, Mapping};
use super::report::{ImportMode, NewImportReport, ReportOutcome, ReportReason};
use super::MyNumberKey;
use crate::model::TenantId;
use crate::store::Store;

/// The marker's suffix.
pub const MARKER: &str = ".ok";
/// Where applied files go.
pub const DONE: &str = "done";
/// Where refused files go.
pub const REJECTED: &str = "rejected";

/// Why a drop-directory run failed as a whole (per-file problems are in reports).
#[derive(Debug, thiserror::Error)]
pub enum DropError {
    /// The directory cannot be listed, or a file cannot be moved.
    #[error("{what} {path}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The path.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// An import failed for a reason other than the file (the store).
    #[error(transparent)]
    Import(#[from] ImportError),
}

/// A file ready in the drop directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DropFile {
    /// The file name.
    pub name: String,
    /// What it is, when its name matches a kind.
    pub spec: Option<FileSpec>,
}

/// Reads the kind, mode and timestamp from a file name.
pub fn parse_name(mapping: &Mapping, name: &str) -> Option<FileSpec> {
    let (stem_part, ext) = name.rsplit_once('.')?;
    let mut rest = stem_part;
    let mut as_of = None;
    if let Some((head, ts)) = rest.rsplit_once('_') {
        if let Some(t) = timestamp(ts) {
            as_of = Some(t);
            rest = head;
        }
    }
    let mut mode = ImportMode::Full;
    if let Some(head) = rest.strip_suffix("_delta") {
        mode = ImportMode::Delta;
        rest = head;
    }
    let (kind, km) = mapping.kind_by_stem(rest)?;
    // The extension must be the mapping's (`.csv`).
    let km_ext = km.file.rsplit_once('.').map(|(_, e)| e);
    if km_ext.is_some_and(|e| !e.eq_ignore_ascii_case(ext)) {
        return None;
    }
    Some(FileSpec {
        kind,
        mode,
        file: name.to_owned(),
        as_of,
    })
}

/// `YYYYMMDDhhmmss` from `YYYYMMDDhhmmss` or `YYYYMMDDThhmmss`, checked.
fn timestamp(s: &str) -> Option<String> {
    let digits: String = match s.len() {
        14 => s.to_owned(),
        15 if s.as_bytes().get(8) == Some(&b'T') => format!("{}{}", &s[..8], &s[9..]),
        _ => return None,
    };
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    super::import::parse_date(&digits[..8])?;
    let n = |r: std::ops::Range<usize>| digits[r].parse::<u32>().ok();
    if n(8..10)? > 23 || n(10..12)? > 59 || n(12..14)? > 59 {
        return None;
    }
    Some(digits)
}

fn sort_key(f: &DropFile) -> (u8, usize, Option<String>, String) {
    match &f.spec {
        Some(s) => (
            u8::from(s.mode == ImportMode::Delta),
            DataKind::ALL.iter().position(|k| *k == s.kind).unwrap_or(0),
            s.as_of.clone(),
            f.name.clone(),
        ),
        None => (2, 0, None, f.name.clone()),
    }
}

/// The complete files (those with a marker) in `dir`, in the order they are applied.
pub fn pending(dir: &Path, mapping: &Mapping) -> Result<Vec<DropFile>, DropError> {
    let io = |what, source| DropError::Io {
        what,
        path: dir.to_owned(),
        source,
    };
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| io("listing", e))? {
        let entry = entry.map_err(|e| io("listing", e))?;
        let Ok(name) = entry.file_name().into_string() else {
            continue;
        };
        if name.ends_with(MARKER) || name.starts_with('.') {
            continue;
        }
        if !entry.file_type().map_err(|e| io("listing", e))?.is_file() {
            continue;
        }
        if !dir.join(format!("{name}{MARKER}")).is_file() {
            continue;
        }
        files.push(DropFile {
            spec: parse_name(mapping, &name),
            name,
        });
    }
    files.sort_by_key(sort_key);
    Ok(files)
}

/// What one run over the drop directory did.
#[derive(Debug, Clone, Default)]
pub struct DropRun {
    /// The report of each file processed, in order.
    pub files: Vec<FileReport>,
    /// Files whose name matched no kind (moved to `rejected/`), with their report id.
    pub unknown: Vec<(String, i64)>,
}

impl DropRun {
    /// Whether every file was applied (or already applied) and none was unknown.
    pub fn all_applied(&self) -> bool {
        self.unknown.is_empty() && self.files.iter().all(|f| f.outcome != Outcome::Rejected)
    }
}

impl std::fmt::Display for DropRun {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for r in &self.files {
            write!(f, "{r}")?;
        }
        for (name, _) in &self.unknown {
            writeln!(
                f,
                "{name}: REJECTED, the name matches no kind of the mapping"
            )?;
        }
        Ok(())
    }
}

/// Moves `name` (and its marker) from `dir` into `dir/sub`, under a free name.
/// `false` if the file was gone (another instance took it).
fn move_to(dir: &Path, sub: &str, name: &str) -> Result<bool, DropError> {
    let target_dir = dir.join(sub);
    std::fs::create_dir_all(&target_dir).map_err(|source| DropError::Io {
        what: "creating",
        path: target_dir.clone(),
        source,
    })?;
    let mut target = target_dir.join(name);
    let mut n = 0;
    while target.exists() {
        n += 1;
        target = target_dir.join(format!("{name}.{n}"));
    }
    let from = dir.join(name);
    match std::fs::rename(&from, &target) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(source) => {
            return Err(DropError::Io {
                what: "moving",
                path: from,
                source,
            })
        }
    }
    let marker = dir.join(format!("{name}{MARKER}"));
    let marker_target = PathBuf::from(format!("{}{MARKER}", target.display()));
    match std::fs::rename(&marker, &marker_target) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(true),
        Err(source) => Err(DropError::Io {
            what: "moving",
            path: marker,
            source,
        }),
    }
}

/// Processes every complete file in `dir` for `tenant`, in order: import (one
/// transaction or nothing, report kept in the store), then move to `done/` or
/// `rejected/`. This is what the schedule runs, what `import --drop-dir` runs, and
/// what the admin UI calls for 「今すぐ取込」.
pub async fn import_drop_dir(
    store: &Store,
    tenant: &TenantId,
    dir: &Path,
    mapping: &Mapping,
    options: &ImportOptions,
) -> Result<DropRun, DropError> {
    let mut run = DropRun::default();
    for file in pending(dir, mapping)? {
        let path = dir.join(&file.name);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            // Another instance moved it since the listing.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(source) => {
                return Err(DropError::Io {
                    what: "reading",
                    path,
                    source,
                })
            }
        };
        let Some(spec) = &file.spec else {
            let report = NewImportReport {
                tenant: tenant.to_string(),
                kind: "unknown".into(),
                file: file.name.clone(),
                mode: ImportMode::Full,
                file_hash: hex::encode(digest::digest(&digest::SHA256, &bytes)),
                as_of: None,
                at_ms: options.now_ms,
                outcome: ReportOutcome::Rejected,
                rows: 0,
                added: 0,
                changed: 0,
                removed: 0,
                unchanged: 0,
                rejected: 1,
                reasons: vec![ReportReason {
                    line: 0,
                    column: None,
                    reason: "the file name matches no kind of the mapping".into(),
                }],
            };
            let id = store
                .record_import_report(&report)
                .await
                .map_err(ImportError::from)?;
            move_to(dir, REJECTED, &file.name)?;
            run.unknown.push((file.name.clone(), id));
            continue;
        };
        let Some(km) = mapping.kind(spec.kind) else {
            continue;
        };
        let report = import_file(store, tenant, &mapping.delta, km, spec, &bytes, options).await?;
        let sub = if report.outcome == Outcome::Rejected {
            REJECTED
        } else {
            DONE
        };
        move_to(dir, sub, &file.name)?;
        run.files.push(report);
    }
    Ok(run)
}

/// When the drop directory is read: every `every` and at fixed times of day (JST).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Schedule {
    /// Run at this interval (e.g. every 10 minutes).
    pub every: Option<Duration>,
    /// Run at these times of day, (hour, minute) in JST.
    pub at: Vec<(u32, u32)>,
}

const JST_OFFSET_MS: i64 = 9 * 3600 * 1000;
const DAY_MS: i64 = 24 * 3600 * 1000;

impl Schedule {
    /// Whether a run is due at `now_ms`, the previous run having started at
    /// `last_ms` (`None`: never ran; then it runs at once).
    pub fn due(&self, last_ms: Option<i64>, now_ms: i64) -> bool {
        let Some(last) = last_ms else {
            return true;
        };
        if let Some(every) = self.every {
            let every = i64::try_from(every.as_millis()).unwrap_or(i64::MAX);
            if now_ms.saturating_sub(last) >= every {
                return true;
            }
        }
        // A fixed time passed since the last run?
        self.at.iter().any(|&(h, m)| {
            let offset = i64::from(h * 3600 + m * 60) * 1000;
            // The latest occurrence of h:m JST at or before now.
            let local = now_ms + JST_OFFSET_MS;
            let today = local - local.rem_euclid(DAY_MS) + offset;
            let latest = if today <= local {
                today
            } else {
                today - DAY_MS
            } - JST_OFFSET_MS;
            latest > last && latest <= now_ms
        })
    }
}

/// The `[residents.import]` section of the service configuration:
///
/// ```toml
/// [residents.import]
/// drop_dir = "/srv/kakanai/drop"   # files of tenant T in /srv/kakanai/drop/T/
/// every_minutes = 10               # optional: every 10 minutes
/// at = ["06:30", "12:00"]          # optional: and at these times (JST)
/// mapping = "/etc/kakanai/mapping.toml"        # optional: default the reference
/// my_number_key_file = "/etc/kakanai/mn.key"   # optional: else 個人番号 dropped
/// ```
#[derive(Debug, Clone)]
pub struct DropConfig {
    /// The directory holding one subdirectory per tenant.
    pub drop_dir: PathBuf,
    /// When it is read.
    pub schedule: Schedule,
    /// The column mapping.
    pub mapping: Arc<Mapping>,
    /// The key sealing 個人番号 values (32 bytes).
    pub my_number_key: Option<[u8; 32]>,
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RawResidents {
    import: Option<RawImport>,
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RawImport {
    drop_dir: PathBuf,
    every_minutes: Option<u64>,
    #[serde(default)]
    at: Vec<String>,
    mapping: Option<PathBuf>,
    my_number_key_file: Option<PathBuf>,
}

impl DropConfig {
    /// Reads the `[residents]` table of the service configuration; `Ok(None)` when
    /// it has no `import` section. Errors name the field, never a secret.
    pub fn from_table(table: &toml::Table) -> Result<Option<Self>, String> {
        let raw: RawResidents = toml::Value::Table(table.clone())
            .try_into()
            .map_err(|e: toml::de::Error| format!("residents: {}", e.message()))?;
        let Some(raw) = raw.import else {
            return Ok(None);
        };
        if raw.drop_dir.as_os_str().is_empty() {
            return Err("residents.import.drop_dir: empty".into());
        }
        let every = match raw.every_minutes {
            Some(0) => return Err("residents.import.every_minutes: must be 1 or more".into()),
            Some(m) if m > 24 * 60 => {
                return Err("residents.import.every_minutes: at most 1440".into())
            }
            Some(m) => Some(Duration::from_secs(m * 60)),
            None => None,
        };
        let mut at = Vec::new();
        for t in &raw.at {
            let parsed = t.split_once(':').and_then(|(h, m)| {
                let (h, m) = (h.parse::<u32>().ok()?, m.parse::<u32>().ok()?);
                (h < 24 && m < 60 && t.len() == 5).then_some((h, m))
            });
            at.push(parsed.ok_or("residents.import.at: times as \"HH:MM\" (JST)")?);
        }
        if every.is_none() && at.is_empty() {
            return Err("residents.import: set every_minutes or at (or both)".into());
        }
        let mapping = match &raw.mapping {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| format!("residents.import.mapping: {}: {e}", path.display()))?;
                Mapping::from_toml(&text).map_err(|e| format!("residents.import.mapping: {e}"))?
            }
            None => Mapping::reference(),
        };
        let my_number_key = match &raw.my_number_key_file {
            Some(path) => {
                let secret = kakanai_provisioning::keyfile::read_secret(path, 32)
                    .map_err(|e| format!("residents.import.my_number_key_file: {e}"))?;
                let bytes: [u8; 32] = secret
                    .as_slice()
                    .try_into()
                    .map_err(|_| "residents.import.my_number_key_file: not 32 bytes")?;
                Some(bytes)
            }
            None => None,
        };
        Ok(Some(Self {
            drop_dir: raw.drop_dir,
            schedule: Schedule { every, at },
            mapping: Arc::new(mapping),
            my_number_key,
        }))
    }

    /// Reads the `[residents]` table of the service configuration file at `path`.
    pub fn load(path: &Path) -> Result<Option<Self>, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let table: toml::Table = toml::from_str(&text).map_err(|e| format!("{e}"))?;
        match table.get("residents") {
            Some(toml::Value::Table(t)) => Self::from_table(t),
            Some(_) => Err("residents: must be a table".into()),
            None => Ok(None),
        }
    }

    /// The drop directory of a tenant.
    pub fn tenant_dir(&self, tenant: &TenantId) -> PathBuf {
        self.drop_dir.join(tenant.as_str())
    }
}

/// A running schedule; stop it with [`Scheduler::stop`].
#[derive(Debug)]
pub struct Scheduler {
    stop: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Scheduler {
    /// Stops the schedule, letting a run in progress finish its current file.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

/// How often the schedule looks at the clock.
const TICK: Duration = Duration::from_secs(15);

/// Starts reading the drop directory of every tenant on `config`'s schedule.
/// `on_file` is called with the kind id (`unknown` for a name matching no kind) and
/// the outcome of every file processed (the service counts failures for `/metrics`). Failures of a whole run are logged (no file contents) and
/// retried at the next due time.
pub fn spawn_scheduler(
    store: Store,
    tenants: Vec<TenantId>,
    config: DropConfig,
    on_file: Arc<dyn Fn(&'static str, Outcome) + Send + Sync>,
) -> Scheduler {
    let (stop, mut stopped) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(async move {
        let mut last: Option<i64> = None;
        loop {
            let now = crate::service::now_ms();
            if config.schedule.due(last, now) {
                last = Some(now);
                for tenant in &tenants {
                    let dir = config.tenant_dir(tenant);
                    if !dir.is_dir() {
                        continue;
                    }
                    let options = ImportOptions {
                        my_number_key: config.my_number_key.as_ref().map(MyNumberKey::new),
                        now_ms: crate::service::now_ms(),
                    };
                    match import_drop_dir(&store, tenant, &dir, &config.mapping, &options).await {
                        Ok(run) => {
                            for f in &run.files {
                                on_file(f.kind.as_str(), f.outcome);
                                tracing::info!(
                                    tenant = tenant.as_str(),
                                    kind = f.kind.as_str(),
                                    mode = f.mode.as_str(),
                                    outcome = ?f.outcome,
                                    added = f.added,
                                    changed = f.changed,
                                    removed = f.removed,
                                    rejected = f.rejected_total,
                                    report = f.report_id,
                                    "resident import"
                                );
                            }
                            for (name, id) in &run.unknown {
                                on_file("unknown", Outcome::Rejected);
                                tracing::warn!(tenant = tenant.as_str(), file = %name.escape_debug(), report = id, "drop directory: file name matches no kind");
                            }
                        }
                        Err(e) => {
                            tracing::error!(tenant = tenant.as_str(), error = %e, "drop directory run failed");
                        }
                    }
                }
            }
            tokio::select! {
                () = tokio::time::sleep(TICK) => {}
                _ = stopped.wait_for(|s| *s) => break,
            }
        }
    });
    Scheduler { stop, task }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_give_kind_mode_and_time() {
        let m = Mapping::reference();
        let s = parse_name(&m, "jumin_delta_20250401T063000.csv").unwrap();
        assert_eq!(s.kind, DataKind::Jumin);
        assert_eq!(s.mode, ImportMode::Delta);
        assert_eq!(s.as_of.as_deref(), Some("20250401063000"));
        let s = parse_name(&m, "address_master_20250401063000.csv").unwrap();
        assert_eq!(
            (s.kind, s.mode),
            (DataKind::AddressMaster, ImportMode::Full)
        );
        let s = parse_name(&m, "kokuho.csv").unwrap();
        assert_eq!((s.kind, s.as_of), (DataKind::Kokuho, None));
        assert!(parse_name(&m, "jumin_20251301T000000.csv").is_none());
        assert!(parse_name(&m, "nothing.csv").is_none());
        assert!(parse_name(&m, "jumin.txt").is_none());
    }

    #[test]
    fn schedule_every_and_at_fixed_times() {
        let s = Schedule {
            every: Some(Duration::from_secs(600)),
            at: vec![(6, 30)],
        };
        assert!(s.due(None, 0));
        assert!(!s.due(Some(0), 599_000));
        assert!(s.due(Some(0), 600_000));
        // 06:30 JST is 21:30 UTC the day before.
        let at = Schedule {
            every: None,
            at: vec![(6, 30)],
        };
        let t0 = 21 * 3600 * 1000 + 29 * 60 * 1000; // 21:29 UTC = 06:29 JST
        assert!(!at.due(Some(t0 - 1000), t0));
        assert!(at.due(Some(t0), t0 + 60_000));
        assert!(!at.due(Some(t0 + 60_000), t0 + 120_000));
    }
}
