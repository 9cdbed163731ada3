//! Backups that prove themselves (issue 11, N3): consistent online copies of the
//! whole store, encrypted, verified by restoring each into a scratch store and
//! comparing every table's digest, kept for a number of business days, restorable to
//! a point with `kakanai-control-plane restore`.
//!
//! One backup is two files in the backup directory:
//! - `NAME.age` — the copy, encrypted with [age](https://age-encryption.org) to the
//!   recipient of the configured X25519 identity (so an operator can also decrypt it
//!   with the standard `age` tool: `age -d -i KEYFILE NAME.age > copy`). SQLite: the
//!   database file made by `VACUUM INTO`. PostgreSQL: a `pg_dump --format=custom`
//!   archive taken in the same snapshot as the digests.
//! - `NAME.json` — the [`Manifest`]: when, which backend, the encrypted file's size
//!   and SHA-256, every table's row count and content digest, and the verification
//!   result.
//!
//! Invariants:
//! - A backup counts only once its manifest says it was verified. Files are written
//!   under a temporary name and renamed when complete, the manifest last; a process
//!   killed half-way leaves at most a `.partial` file or a work directory, which the
//!   next run removes and which never counts.
//! - Verification decrypts the copy (checking the encrypted file's SHA-256 first),
//!   restores it into a scratch store (a temporary SQLite file; a scratch PostgreSQL
//!   database created beside the live one and dropped afterwards) and compares every
//!   table's row count and digest with the manifest.
//! - Pruning removes a backup only when it is older than the retention (the last
//!   `keep_business_days` business days in Japan time — weekends, national holidays
//!   and 12/29–1/3 do not count) *and* a newer verified backup exists. The newest
//!   verified backup is never removed.
//! - Nothing here logs personal data: backups are whole-store copies, never read
//!   row by row except to hash them.

pub mod cli;
pub mod schedule;

use std::fs;
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::str::FromStr;
use std::time::Instant;

use age::secrecy::ExposeSecret;
use ring::digest::{Context, SHA256};
use serde::{Deserialize, Serialize};

use crate::audit::fiscal::JST_OFFSET_MS;
use crate::rules::calendar::{self, Date};
use crate::store::maintenance::{self, Digests};
use crate::store::{BackendKind, Store, StoreError};

/// Manifest format version.
const MANIFEST_FORMAT: u32 = 1;

/// What can go wrong. Messages name files and steps, never data.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    /// The backup key file is missing, unreadable, too open or not an age identity.
    #[error("backup key {path}: {reason}")]
    Key {
        /// The key file.
        path: PathBuf,
        /// Why it was refused.
        reason: String,
    },
    /// A file operation in the backup directory failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The error.
        source: io::Error,
    },
    /// The store failed.
    #[error("store: {0}")]
    Store(#[from] StoreError),
    /// A PostgreSQL tool (`pg_dump`, `pg_restore`) failed.
    #[error("{tool} failed: {detail}")]
    Tool {
        /// The tool.
        tool: &'static str,
        /// Its exit status and the end of its error output.
        detail: String,
    },
    /// Encryption or decryption failed (wrong key, damaged file).
    #[error("encryption: {0}")]
    Crypto(String),
    /// The copy does not match its manifest.
    #[error("backup {name} does not match its manifest: {detail}")]
    Mismatch {
        /// The backup.
        name: String,
        /// What differs (table names and counts only).
        detail: String,
    },
    /// No backup fits the request.
    #[error("no verified backup {0}")]
    NotFound(String),
    /// The restore target exists and `--force` was not given.
    #[error("{0} exists; stop the service and pass --force to replace it (the old file is kept beside it)")]
    TargetExists(PathBuf),
    /// The configuration cannot work.
    #[error("backup configuration: {0}")]
    Config(String),
}

fn io_err(what: impl Into<String>) -> impl FnOnce(io::Error) -> BackupError {
    let what = what.into();
    move |source| BackupError::Io { what, source }
}

/// Result of backup operations.
pub type Result<T, E = BackupError> = std::result::Result<T, E>;

/// Where and how backups are made.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackupConfig {
    /// The backup directory (created with mode 700).
    pub dir: PathBuf,
    /// The age X25519 identity (`AGE-SECRET-KEY-1…`, file mode 600) whose recipient
    /// the backups are encrypted to; needed again to verify and restore. Make one
    /// with `kakanai-control-plane backup keygen --out FILE` (or `age-keygen`) and
    /// keep a copy offline.
    pub key_file: PathBuf,
    /// Keep backups of at least this many business days (default 2).
    #[serde(default = "default_keep")]
    pub keep_business_days: u32,
    /// Times of day in Japan time for the automatic backups (default 02:00 and 20:00,
    /// the counter's closing).
    #[serde(default = "default_times")]
    pub times: Vec<String>,
    /// Directory holding `pg_dump` and `pg_restore` (default: the newest
    /// `/usr/lib/postgresql/*/bin`, else `PATH`).
    #[serde(default)]
    pub pg_bin_dir: Option<PathBuf>,
}

fn default_keep() -> u32 {
    2
}

fn default_times() -> Vec<String> {
    vec!["02:00".into(), "20:00".into()]
}

impl BackupConfig {
    /// A configuration with the defaults for `dir` and `key_file`.
    pub fn new(dir: PathBuf, key_file: PathBuf) -> Self {
        Self {
            dir,
            key_file,
            keep_business_days: default_keep(),
            times: default_times(),
            pg_bin_dir: None,
        }
    }
}

/// A backup's description, kept beside it as `NAME.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// Manifest format version.
    pub format: u32,
    /// The backup's name (`kk-YYYYMMDDTHHMMSSmmmZ-BACKEND`).
    pub name: String,
    /// When the snapshot was taken (ms since the epoch).
    pub created_ms: i64,
    /// `sqlite` or `postgres`.
    pub backend: String,
    /// The encrypted file's name.
    pub file: String,
    /// Its size in bytes.
    pub size: u64,
    /// Its SHA-256, hex.
    pub sha256: String,
    /// The age recipient it is encrypted to.
    pub recipient: String,
    /// Every table's row count and digest at the snapshot.
    pub tables: Digests,
    /// How long the backup took.
    pub backup_ms: u64,
    /// The verification, once done.
    pub verification: Option<Verification>,
}

impl Manifest {
    /// Verified and matching.
    pub fn is_good(&self) -> bool {
        self.verification.as_ref().is_some_and(|v| v.ok)
    }

    /// Total rows over all tables.
    pub fn total_rows(&self) -> u64 {
        self.tables.values().map(|t| t.rows).sum()
    }
}

/// The outcome of restoring a backup into a scratch store and comparing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Verification {
    /// When (ms since the epoch).
    pub at_ms: i64,
    /// Whether every table matched.
    pub ok: bool,
    /// What was compared, or what differed.
    pub detail: String,
    /// How long it took.
    pub duration_ms: u64,
}

/// The backup directory with its key.
pub struct Backups {
    config: BackupConfig,
    identity: age::x25519::Identity,
}

impl std::fmt::Debug for Backups {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Backups")
            .field("dir", &self.config.dir)
            .finish_non_exhaustive()
    }
}

/// Makes a new age identity and writes it to `path` (mode 600, refusing to
/// overwrite). Returns the public recipient.
pub fn keygen(path: &Path) -> Result<String> {
    let identity = age::x25519::Identity::generate();
    let recipient = identity.to_public().to_string();
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(io_err(format!("creating {}", path.display())))?;
    writeln!(
        file,
        "# Kakanai backup key. Keep a copy offline: without it no backup can be restored.\n# public key: {recipient}\n{}",
        identity.to_string().expose_secret()
    )
    .and_then(|()| file.sync_all())
    .map_err(io_err(format!("writing {}", path.display())))?;
    Ok(recipient)
}

fn read_identity(path: &Path) -> Result<age::x25519::Identity> {
    let refuse = |reason: &str| BackupError::Key {
        path: path.to_owned(),
        reason: reason.to_owned(),
    };
    let meta = fs::metadata(path).map_err(|e| refuse(&e.to_string()))?;
    if meta.permissions().mode() & 0o077 != 0 {
        return Err(refuse("readable by others: chmod 600 it"));
    }
    let text = fs::read_to_string(path).map_err(|e| refuse(&e.to_string()))?;
    let line = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with('#'))
        .ok_or_else(|| refuse("no key in the file"))?;
    age::x25519::Identity::from_str(line).map_err(|_| refuse("not an age X25519 identity"))
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// The civil date in Japan at `ms` since the epoch.
pub fn jst_date(ms: i64) -> Date {
    Date::from_days((ms + JST_OFFSET_MS).div_euclid(86_400_000))
}

fn backup_name(ms: i64, backend: BackendKind) -> String {
    let date = Date::from_days(ms.div_euclid(86_400_000));
    let in_day = ms.rem_euclid(86_400_000);
    let (h, m, s, milli) = (
        in_day / 3_600_000,
        in_day / 60_000 % 60,
        in_day / 1000 % 60,
        in_day % 1000,
    );
    let backend = match backend {
        BackendKind::Sqlite => "sqlite",
        BackendKind::Postgres => "postgres",
    };
    format!(
        "kk-{:04}{:02}{:02}T{h:02}{m:02}{s:02}{milli:03}Z-{backend}",
        date.year(),
        date.month(),
        date.day()
    )
}

fn sha256_file(path: &Path) -> Result<(String, u64)> {
    let mut file = fs::File::open(path).map_err(io_err(format!("reading {}", path.display())))?;
    let mut hash = Context::new(&SHA256);
    let mut buf = vec![0u8; 1 << 16];
    let mut size = 0u64;
    loop {
        let n = file
            .read(&mut buf)
            .map_err(io_err(format!("reading {}", path.display())))?;
        if n == 0 {
            break;
        }
        size += n as u64;
        hash.update(&buf[..n]);
    }
    Ok((hex::encode(hash.finish()), size))
}

/// Writes `bytes` to `path` atomically (temporary file, fsync, rename, fsync dir).
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension("partial");
    let what = format!("writing {}", path.display());
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(io_err(what.clone()))?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .map_err(io_err(what.clone()))?;
    fs::rename(&tmp, path).map_err(io_err(what.clone()))?;
    sync_dir(path)
}

fn sync_dir(path: &Path) -> Result<()> {
    if let Some(dir) = path.parent() {
        fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io_err(format!("syncing {}", dir.display())))?;
    }
    Ok(())
}

fn compare(name: &str, expected: &Digests, got: &Digests) -> Result<String> {
    let mut differences = Vec::new();
    for (table, want) in expected {
        match got.get(table) {
            None => differences.push(format!("{table}: missing")),
            Some(have) if have.rows != want.rows => {
                differences.push(format!(
                    "{table}: {} rows, expected {}",
                    have.rows, want.rows
                ));
            }
            Some(have) if have.sha256 != want.sha256 => {
                differences.push(format!("{table}: content differs"));
            }
            Some(_) => {}
        }
    }
    for table in got.keys().filter(|t| !expected.contains_key(*t)) {
        differences.push(format!("{table}: not in the backup"));
    }
    if differences.is_empty() {
        let rows: u64 = expected.values().map(|t| t.rows).sum();
        Ok(format!(
            "{} tables, {rows} rows: counts and digests match",
            expected.len()
        ))
    } else {
        Err(BackupError::Mismatch {
            name: name.to_owned(),
            detail: differences.join("; "),
        })
    }
}

/// Where a PostgreSQL tool lives.
fn pg_tool(config: &BackupConfig, tool: &str) -> PathBuf {
    if let Some(dir) = &config.pg_bin_dir {
        return dir.join(tool);
    }
    let mut versions: Vec<(u32, PathBuf)> = fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let v = e.file_name().to_str()?.parse::<u32>().ok()?;
            let path = e.path().join("bin").join(tool);
            path.exists().then_some((v, path))
        })
        .collect();
    versions.sort();
    versions
        .pop()
        .map_or_else(|| PathBuf::from(tool), |(_, p)| p)
}

fn run_tool(tool: &'static str, command: &mut Command) -> Result<()> {
    let output = command
        .output()
        .map_err(io_err(format!("running {tool}")))?;
    if output.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    let tail: String = stderr.lines().rev().take(3).collect::<Vec<_>>().join(" | ");
    Err(BackupError::Tool {
        tool,
        detail: format!("{}: {tail}", output.status),
    })
}

/// `url` with its database name replaced by `database`.
fn with_database(url: &str, database: &str) -> Result<String> {
    let bad = || BackupError::Config("cannot find the database name in the PostgreSQL URL".into());
    let scheme_end = url.find("://").ok_or_else(bad)? + 3;
    let slash = url[scheme_end..].find('/').ok_or_else(bad)? + scheme_end;
    let rest = &url[slash + 1..];
    let query = rest.find('?').map_or("", |q| &rest[q..]);
    Ok(format!("{}/{database}{query}", &url[..slash]))
}

/// SQLite file path from a `sqlite:` URL.
pub fn sqlite_path(url: &str) -> Result<PathBuf> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
        .ok_or_else(|| BackupError::Config("not a sqlite: URL".into()))?;
    let path = rest.split('?').next().unwrap_or_default();
    if path.is_empty() || path.contains(":memory:") {
        return Err(BackupError::Config(
            "an in-memory SQLite store cannot be backed up or restored".into(),
        ));
    }
    Ok(PathBuf::from(path))
}

impl Backups {
    /// Opens the backup directory (creating it, mode 700) with the key from the
    /// configuration. Leftovers of an interrupted run are removed.
    pub fn open(config: BackupConfig) -> Result<Self> {
        if config.keep_business_days == 0 {
            return Err(BackupError::Config(
                "keep_business_days must be at least 1".into(),
            ));
        }
        schedule::parse_times(&config.times)?;
        let identity = read_identity(&config.key_file)?;
        fs::create_dir_all(&config.dir)
            .and_then(|()| fs::set_permissions(&config.dir, fs::Permissions::from_mode(0o700)))
            .map_err(io_err(format!("creating {}", config.dir.display())))?;
        let backups = Self { config, identity };
        backups.remove_leftovers()?;
        Ok(backups)
    }

    /// The configuration in use.
    pub fn config(&self) -> &BackupConfig {
        &self.config
    }

    fn remove_leftovers(&self) -> Result<()> {
        let entries = fs::read_dir(&self.config.dir)
            .map_err(io_err(format!("listing {}", self.config.dir.display())))?;
        for entry in entries.flatten() {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            let path = entry.path();
            if name.ends_with(".partial") {
                let _ = fs::remove_file(&path);
            } else if name.starts_with(".work-") {
                let _ = fs::remove_dir_all(&path);
            }
        }
        Ok(())
    }

    fn work_dir(&self, name: &str) -> Result<PathBuf> {
        let dir = self.config.dir.join(format!(".work-{name}"));
        fs::create_dir_all(&dir)
            .and_then(|()| fs::set_permissions(&dir, fs::Permissions::from_mode(0o700)))
            .map_err(io_err(format!("creating {}", dir.display())))?;
        Ok(dir)
    }

    fn encrypt(&self, plain: &Path, out: &Path) -> Result<(String, u64)> {
        let recipient = self.identity.to_public();
        let encryptor =
            age::Encryptor::with_recipients(std::iter::once(&recipient as &dyn age::Recipient))
                .map_err(|e| BackupError::Crypto(e.to_string()))?;
        let partial = out.with_extension("age.partial");
        let what = format!("encrypting into {}", partial.display());
        let file = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&partial)
            .map_err(io_err(what.clone()))?;
        let mut writer = encryptor
            .wrap_output(BufWriter::new(file))
            .map_err(io_err(what.clone()))?;
        let mut input = BufReader::new(
            fs::File::open(plain).map_err(io_err(format!("reading {}", plain.display())))?,
        );
        io::copy(&mut input, &mut writer).map_err(io_err(what.clone()))?;
        writer
            .finish()
            .and_then(|w| w.into_inner().map_err(io::IntoInnerError::into_error))
            .and_then(|f| f.sync_all())
            .map_err(io_err(what.clone()))?;
        fs::rename(&partial, out).map_err(io_err(what))?;
        sync_dir(out)?;
        sha256_file(out)
    }

    fn decrypt(&self, encrypted: &Path, out: &Path) -> Result<()> {
        let input = BufReader::new(
            fs::File::open(encrypted)
                .map_err(io_err(format!("reading {}", encrypted.display())))?,
        );
        let decryptor =
            age::Decryptor::new_buffered(input).map_err(|e| BackupError::Crypto(e.to_string()))?;
        let mut reader = decryptor
            .decrypt(std::iter::once(&self.identity as &dyn age::Identity))
            .map_err(|e| BackupError::Crypto(e.to_string()))?;
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(out)
            .map_err(io_err(format!("writing {}", out.display())))?;
        io::copy(&mut reader, &mut file)
            .and_then(|_| file.sync_all())
            .map_err(|e| {
                // A damaged file fails its authentication tag while streaming.
                BackupError::Crypto(format!("decrypting {}: {e}", encrypted.display()))
            })
    }

    fn manifest_path(&self, name: &str) -> PathBuf {
        self.config.dir.join(format!("{name}.json"))
    }

    fn write_manifest(&self, manifest: &Manifest) -> Result<()> {
        let json = serde_json::to_vec_pretty(manifest)
            .map_err(|e| BackupError::Config(format!("manifest: {e}")))?;
        write_atomic(&self.manifest_path(&manifest.name), &json)
    }

    /// Takes a backup of `store` (opened from `url`) and writes its manifest, not yet
    /// verified.
    pub async fn backup(&self, store: &Store, url: &str) -> Result<Manifest> {
        let started = Instant::now();
        let created_ms = now_ms();
        let backend = store.backend();
        let name = backup_name(created_ms, backend);
        let work = self.work_dir(&name)?;
        let out = self.config.dir.join(format!("{name}.age"));
        let result = match self.backup_into(store, url, &name, &work, backend).await {
            Ok((tables, plain)) => self.encrypt(&plain, &out).map(|hashed| (tables, hashed)),
            Err(e) => Err(e),
        };
        // The plain copy never outlives this call.
        let _ = fs::remove_dir_all(&work);
        let (tables, (sha256, size)) = result?;
        let manifest = Manifest {
            format: MANIFEST_FORMAT,
            name: name.clone(),
            created_ms,
            backend: match backend {
                BackendKind::Sqlite => "sqlite".into(),
                BackendKind::Postgres => "postgres".into(),
            },
            file: format!("{name}.age"),
            size,
            sha256,
            recipient: self.identity.to_public().to_string(),
            tables,
            backup_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
            verification: None,
        };
        self.write_manifest(&manifest)?;
        tracing::info!(backup = %name, size, "backup written");
        Ok(manifest)
    }

    async fn backup_into(
        &self,
        store: &Store,
        url: &str,
        name: &str,
        work: &Path,
        backend: BackendKind,
    ) -> Result<(Digests, PathBuf)> {
        match backend {
            BackendKind::Sqlite => {
                let copy = work.join(format!("{name}.sqlite"));
                store.sqlite_snapshot(&copy).await?;
                let digests = maintenance::sqlite_file_digests(&copy).await?;
                // The copy is complete and checked; encrypt it, then drop the plain
                // text (the caller removes the work directory).
                let out = work.join("plain");
                fs::rename(&copy, &out).map_err(io_err("moving the snapshot"))?;
                Ok((digests, out))
            }
            BackendKind::Postgres => {
                let dump = work.join("plain");
                let pg_dump = pg_tool(&self.config, "pg_dump");
                let dump_path = dump.clone();
                let url = url.to_owned();
                let (digests, dumped) = store
                    .postgres_snapshot(|snapshot| async move {
                        tokio::task::spawn_blocking(move || {
                            run_tool(
                                "pg_dump",
                                Command::new(pg_dump)
                                    .arg("--format=custom")
                                    .arg(format!("--snapshot={snapshot}"))
                                    .arg("--file")
                                    .arg(&dump_path)
                                    .arg("--dbname")
                                    .arg(&url),
                            )
                        })
                        .await
                        .map_err(|e| BackupError::Config(format!("pg_dump task: {e}")))?
                    })
                    .await?;
                dumped?;
                Ok((digests, dump))
            }
        }
    }

    /// Verifies the backup `manifest` names: checks the encrypted file's hash,
    /// decrypts it into a scratch store and compares every table. Records the
    /// result in the manifest and returns it. For PostgreSQL, `url` is the live
    /// store's URL: the scratch database is created on the same server.
    pub async fn verify(&self, manifest: &Manifest, url: &str) -> Result<Verification> {
        let started = Instant::now();
        let outcome = self.verify_inner(manifest, url).await;
        let verification = Verification {
            at_ms: now_ms(),
            ok: outcome.is_ok(),
            detail: match &outcome {
                Ok(detail) => detail.clone(),
                Err(e) => e.to_string(),
            },
            duration_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        };
        let mut updated = manifest.clone();
        updated.verification = Some(verification.clone());
        self.write_manifest(&updated)?;
        if verification.ok {
            tracing::info!(backup = %manifest.name, "backup verified");
        } else {
            tracing::error!(backup = %manifest.name, detail = %verification.detail, "backup verification failed");
        }
        Ok(verification)
    }

    async fn verify_inner(&self, manifest: &Manifest, url: &str) -> Result<String> {
        let work = self.work_dir(&format!("verify-{}", manifest.name))?;
        let result = async {
            let plain = self.checked_plain(manifest, &work)?;
            let digests = match manifest.backend.as_str() {
                "sqlite" => maintenance::sqlite_file_digests(&plain).await?,
                "postgres" => self.postgres_scratch_digests(&plain, url).await?,
                other => return Err(BackupError::Config(format!("unknown backend {other}"))),
            };
            compare(&manifest.name, &manifest.tables, &digests)
        }
        .await;
        let _ = fs::remove_dir_all(&work);
        result
    }

    /// Decrypts the backup into `work` after checking the encrypted file's size and
    /// hash against the manifest.
    fn checked_plain(&self, manifest: &Manifest, work: &Path) -> Result<PathBuf> {
        let encrypted = self.config.dir.join(&manifest.file);
        let (sha256, size) = sha256_file(&encrypted)?;
        if sha256 != manifest.sha256 || size != manifest.size {
            return Err(BackupError::Mismatch {
                name: manifest.name.clone(),
                detail: "the encrypted file's size or SHA-256 differs from the manifest".into(),
            });
        }
        let plain = work.join("plain");
        self.decrypt(&encrypted, &plain)?;
        Ok(plain)
    }

    async fn postgres_scratch_digests(&self, dump: &Path, url: &str) -> Result<Digests> {
        let scratch = format!("kk_verify_{}", hex::encode(random_bytes::<6>()?));
        let scratch_url = with_database(url, &scratch)?;
        admin_sql(url, &format!("CREATE DATABASE \"{scratch}\"")).await?;
        let restored = self.pg_restore(dump, &scratch_url, false).await;
        let digests = match restored {
            Ok(()) => maintenance::postgres_url_digests(&scratch_url)
                .await
                .map_err(BackupError::from),
            Err(e) => Err(e),
        };
        let dropped = admin_sql(url, &format!("DROP DATABASE IF EXISTS \"{scratch}\"")).await;
        let digests = digests?;
        dropped?;
        Ok(digests)
    }

    async fn pg_restore(&self, dump: &Path, target_url: &str, clean: bool) -> Result<()> {
        let pg_restore = pg_tool(&self.config, "pg_restore");
        let dump = dump.to_owned();
        let target = target_url.to_owned();
        tokio::task::spawn_blocking(move || {
            let mut command = Command::new(pg_restore);
            command
                .arg("--no-owner")
                .arg("--no-privileges")
                .arg("--exit-on-error")
                .arg("--single-transaction");
            if clean {
                command.arg("--clean").arg("--if-exists");
            }
            command.arg("--dbname").arg(&target).arg(&dump);
            run_tool("pg_restore", &mut command)
        })
        .await
        .map_err(|e| BackupError::Config(format!("pg_restore task: {e}")))?
    }

    /// Every backup with a manifest, oldest first (verified or not).
    pub fn list(&self) -> Result<Vec<Manifest>> {
        let entries = fs::read_dir(&self.config.dir)
            .map_err(io_err(format!("listing {}", self.config.dir.display())))?;
        let mut out = Vec::new();
        for entry in entries.flatten() {
            let path = entry.path();
            let is_manifest = path.extension().is_some_and(|e| e == "json")
                && path
                    .file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("kk-"));
            if !is_manifest {
                continue;
            }
            let bytes = fs::read(&path).map_err(io_err(format!("reading {}", path.display())))?;
            match serde_json::from_slice::<Manifest>(&bytes) {
                Ok(m) if m.format == MANIFEST_FORMAT => out.push(m),
                _ => tracing::warn!(file = %path.display(), "unreadable backup manifest skipped"),
            }
        }
        out.sort_by_key(|m| m.created_ms);
        Ok(out)
    }

    /// The newest verified backup.
    pub fn latest_good(&self) -> Result<Option<Manifest>> {
        Ok(self.list()?.into_iter().rev().find(Manifest::is_good))
    }

    /// Removes backups older than the retention when a newer verified one exists.
    /// `now_ms` is the current time. Returns the names removed.
    pub fn prune(&self, now_ms: i64) -> Result<Vec<String>> {
        let cutoff = retention_cutoff(jst_date(now_ms), self.config.keep_business_days);
        let all = self.list()?;
        let Some(newest_good) = all.iter().rev().find(|m| m.is_good()).map(|m| m.created_ms) else {
            return Ok(Vec::new());
        };
        let mut removed = Vec::new();
        for m in &all {
            if m.created_ms < newest_good && jst_date(m.created_ms) < cutoff {
                let _ = fs::remove_file(self.config.dir.join(&m.file));
                fs::remove_file(self.manifest_path(&m.name))
                    .map_err(io_err(format!("removing {}", m.name)))?;
                removed.push(m.name.clone());
            }
        }
        if !removed.is_empty() {
            tracing::info!(count = removed.len(), "old backups removed");
        }
        Ok(removed)
    }

    /// Backup, verify and prune: what the schedule runs.
    pub async fn run(&self, store: &Store, url: &str) -> Result<Manifest> {
        let manifest = self.backup(store, url).await?;
        let verification = self.verify(&manifest, url).await?;
        let mut manifest = manifest;
        manifest.verification = Some(verification.clone());
        if !verification.ok {
            return Err(BackupError::Mismatch {
                name: manifest.name,
                detail: verification.detail,
            });
        }
        self.prune(now_ms())?;
        Ok(manifest)
    }

    /// The newest verified backup taken at or before `at_ms` (or the newest of all).
    pub fn choose(&self, at_ms: Option<i64>) -> Result<Manifest> {
        self.list()?
            .into_iter()
            .rev()
            .filter(Manifest::is_good)
            .find(|m| at_ms.is_none_or(|at| m.created_ms <= at))
            .ok_or_else(|| {
                BackupError::NotFound(match at_ms {
                    Some(_) => "at or before that time".into(),
                    None => "in the backup directory".into(),
                })
            })
    }

    /// Restores `manifest`'s backup into the store at `target_url` and checks the
    /// result against the manifest. SQLite: the service must be stopped; an existing
    /// file is replaced only with `force` and kept beside as `FILE.pre-restore-…`.
    /// PostgreSQL: the target database must exist; its tables are replaced.
    pub async fn restore(
        &self,
        manifest: &Manifest,
        target_url: &str,
        force: bool,
    ) -> Result<String> {
        let work = self.work_dir(&format!("restore-{}", manifest.name))?;
        let result = async {
            let plain = self.checked_plain(manifest, &work)?;
            match manifest.backend.as_str() {
                "sqlite" => {
                    if !target_url.starts_with("sqlite:") {
                        return Err(BackupError::Config(
                            "this backup is of a SQLite store: restore it to a sqlite: URL".into(),
                        ));
                    }
                    let target = sqlite_path(target_url)?;
                    let digests = maintenance::sqlite_file_digests(&plain).await?;
                    let detail = compare(&manifest.name, &manifest.tables, &digests)?;
                    if target.exists() {
                        if !force {
                            return Err(BackupError::TargetExists(target));
                        }
                        let kept =
                            PathBuf::from(format!("{}.pre-restore-{}", target.display(), now_ms()));
                        fs::rename(&target, &kept)
                            .map_err(io_err(format!("keeping {}", target.display())))?;
                        for suffix in ["-wal", "-shm"] {
                            let side = PathBuf::from(format!("{}{suffix}", target.display()));
                            if side.exists() {
                                fs::rename(
                                    &side,
                                    PathBuf::from(format!("{}{suffix}", kept.display())),
                                )
                                .map_err(io_err(format!("keeping {}", side.display())))?;
                            }
                        }
                    }
                    if let Some(parent) = target.parent() {
                        fs::create_dir_all(parent)
                            .map_err(io_err(format!("creating {}", parent.display())))?;
                    }
                    let staged = PathBuf::from(format!("{}.restoring", target.display()));
                    fs::copy(&plain, &staged)
                        .and_then(|_| fs::File::open(&staged)?.sync_all())
                        .map_err(io_err(format!("writing {}", staged.display())))?;
                    fs::rename(&staged, &target)
                        .map_err(io_err(format!("writing {}", target.display())))?;
                    sync_dir(&target)?;
                    Ok(detail)
                }
                "postgres" => {
                    if !target_url.starts_with("postgres") {
                        return Err(BackupError::Config(
                            "this backup is of a PostgreSQL store: restore it to a postgres: URL"
                                .into(),
                        ));
                    }
                    if !force {
                        return Err(BackupError::Config(
                            "restoring replaces every table of the target database: pass --force"
                                .into(),
                        ));
                    }
                    // Empty the schema first so that tables created after the backup
                    // go too, then restore in one transaction.
                    admin_sql(
                        target_url,
                        "DROP SCHEMA IF EXISTS public CASCADE; CREATE SCHEMA public",
                    )
                    .await?;
                    self.pg_restore(&plain, target_url, false).await?;
                    let digests = maintenance::postgres_url_digests(target_url).await?;
                    compare(&manifest.name, &manifest.tables, &digests)
                }
                other => Err(BackupError::Config(format!("unknown backend {other}"))),
            }
        }
        .await;
        let _ = fs::remove_dir_all(&work);
        result
    }

    /// What operators and `/metrics` watch.
    pub fn status(&self) -> Result<BackupStatus> {
        let all = self.list()?;
        let last_good = all.iter().rev().find(|m| m.is_good());
        let last = all.last();
        Ok(BackupStatus {
            count: all.len(),
            last_success_ms: last_good.map(|m| m.created_ms),
            last_verified_ms: last_good.and_then(|m| m.verification.as_ref().map(|v| v.at_ms)),
            last_failed: last.is_some_and(|m| m.verification.as_ref().is_some_and(|v| !v.ok)),
            last_size: last_good.map(|m| m.size),
        })
    }
}

/// What the metrics show about backups.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BackupStatus {
    /// Backups in the directory.
    pub count: usize,
    /// When the newest verified backup was taken.
    pub last_success_ms: Option<i64>,
    /// When it was verified.
    pub last_verified_ms: Option<i64>,
    /// Whether the newest backup failed its verification.
    pub last_failed: bool,
    /// Size of the newest verified backup.
    pub last_size: Option<u64>,
}

/// The backup gauges in Prometheus text format (`None`: the directory could not be
/// read, which is an alert of its own).
pub fn metrics_text(status: Option<&BackupStatus>) -> String {
    let mut out = String::new();
    let mut gauge = |name: &str, help: &str, value: String| {
        out.push_str(&format!(
            "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}\n"
        ));
    };
    gauge(
        "kakanai_backup_directory_readable",
        "1 when the backup directory and its manifests can be read.",
        u8::from(status.is_some()).to_string(),
    );
    let Some(status) = status else { return out };
    gauge(
        "kakanai_backup_last_success_timestamp_seconds",
        "When the newest verified backup was taken (0: none yet).",
        (status.last_success_ms.unwrap_or(0) / 1000).to_string(),
    );
    gauge(
        "kakanai_backup_last_verified_timestamp_seconds",
        "When the newest verified backup was verified (0: none yet).",
        (status.last_verified_ms.unwrap_or(0) / 1000).to_string(),
    );
    gauge(
        "kakanai_backup_last_failed",
        "1 when the newest backup failed its verification.",
        u8::from(status.last_failed).to_string(),
    );
    gauge(
        "kakanai_backup_count",
        "Backups kept in the backup directory.",
        status.count.to_string(),
    );
    gauge(
        "kakanai_backup_last_size_bytes",
        "Size of the newest verified backup.",
        status.last_size.unwrap_or(0).to_string(),
    );
    out
}

/// The first civil date still inside the retention: backups taken on this date or
/// later are kept. It is the `keep`-th business day counting back from `today`
/// (today counts when it is one).
pub fn retention_cutoff(today: Date, keep: u32) -> Date {
    let mut day = today;
    let mut counted = 0;
    loop {
        if !calendar::is_closed(day) {
            counted += 1;
            if counted >= keep {
                return day;
            }
        }
        day = day.add_days(-1);
    }
}

fn random_bytes<const N: usize>() -> Result<[u8; N]> {
    use ring::rand::SecureRandom;
    let mut out = [0u8; N];
    ring::rand::SystemRandom::new()
        .fill(&mut out)
        .map_err(|_| BackupError::Crypto("no randomness".into()))?;
    Ok(out)
}

async fn admin_sql(url: &str, sql: &str) -> Result<()> {
    use sqlx::{ConnectOptions, Connection, Executor};
    let options = sqlx::postgres::PgConnectOptions::from_str(url)
        .map_err(|_| BackupError::Config("invalid postgres URL".into()))?;
    let mut conn = options.connect().await.map_err(StoreError::from)?;
    conn.execute(sql).await.map_err(StoreError::from)?;
    conn.close().await.map_err(StoreError::from)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> Date {
        Date::parse(s).unwrap()
    }

    #[test]
    fn retention_counts_business_days_only() {
        // Friday 2026-11-27: keep 2 → Thursday 26th and Friday 27th.
        assert_eq!(retention_cutoff(d("2026-11-27"), 2), d("2026-11-26"));
        // Monday 2026-11-30: Friday 27th and Monday 30th; the weekend does not count.
        assert_eq!(retention_cutoff(d("2026-11-30"), 2), d("2026-11-27"));
        // 2027-01-04 (Monday, first open day): back over 1/3–12/29 and the weekend.
        assert_eq!(retention_cutoff(d("2027-01-04"), 2), d("2026-12-28"));
        // On a Sunday, the last two open days are Thursday and Friday.
        assert_eq!(retention_cutoff(d("2026-11-29"), 2), d("2026-11-26"));
    }

    #[test]
    fn backup_names_sort_by_time() {
        let a = backup_name(1_795_000_000_000, BackendKind::Sqlite);
        let b = backup_name(1_795_000_000_001, BackendKind::Sqlite);
        assert!(a < b, "{a} {b}");
        assert!(a.starts_with("kk-2026"), "{a}");
    }

    #[test]
    fn database_name_is_replaced_in_urls() {
        assert_eq!(
            with_database("postgres://kk@127.0.0.1:5432/kakanai?sslmode=disable", "x").unwrap(),
            "postgres://kk@127.0.0.1:5432/x?sslmode=disable"
        );
        assert_eq!(
            with_database("postgresql://u:p@h/db", "scratch").unwrap(),
            "postgresql://u:p@h/scratch"
        );
        assert!(with_database("postgres://host", "x").is_err());
    }
}
