//! The control plane's store: one interface, two backends (DESIGN.md, Stores).
//!
//! SQLite is the embedded default (one city on one machine, no setup); PostgreSQL is
//! for a SaaS running several stateless control-plane instances over one database.
//! [`Store::open`] takes a URL (`sqlite://PATH?mode=rwc` or `postgres://…`), applies
//! the versioned migrations of that backend and hands back the same [`Store`] type
//! either way. The conformance suite (`tests/store_conformance.rs`) runs every case
//! against both backends; `tests/store_open.rs` covers URLs and in-memory SQLite.
//!
//! Code map:
//! - this file — [`Store`], [`Store::open`], [`StoreError`];
//! - `backend` (private) — the two pools, the `with_pool!` dispatch macro, opening
//!   and migrating, reading columns the same way from both row types, error mapping;
//! - [`types`] — the records the store reads and writes (the audit log's
//!   [`AuditEntry`] and [`Checkpoint`] are [`crate::audit`]'s, re-exported, so the
//!   verifier and the store share one type);
//! - `tenants` — tenants (creating one also creates its audit chain head);
//! - `fleet` — devices, their Ed25519 keys, presence, ingest de-duplication and the
//!   replay-window state per sender key;
//! - `staff` — staff accounts, groups, permissions, membership (N5, N6);
//! - `residents` — residents (住民記録), households and the records of the other data
//!   kinds imported from the core systems (R1, R8), with their search keys;
//! - `audit` — the hash-chained audit log and its signed checkpoints (N7, N8);
//! - [`maintenance`] — whole-store snapshots and per-table digests for backups;
//! - `admin` — admin changes applied with their audit entry in one transaction,
//!   and the admin UI's paged audit search;
//! - `catalog` — the procedure catalogue's versions per tenant, validated on install
//!   (issue 7).
//! - [`applications`] — visits, applications (each transition one transaction with
//!   its audit entry) and export batches (issue 8).
//! - [`counter`] — the procedure guide kept per life-event visit (migration 0007)
//!   and whole-kind record reads for the counter flows (issue 9).
//! - [`stats`] — counter statistics (R9): visits and applications of a date range,
//!   grouped by procedure, counter, staff group, day or hour, with handling times.
//!
//! How the one interface stays one: every method is written once, inside
//! `with_pool!`, which expands the body once per backend with that backend's pool, so
//! the SQL and the binding code are shared and type-checked against both drivers. The
//! SQL is the common subset of SQLite 3.46 (bundled) and PostgreSQL ≥ 12: `$n`
//! parameters (sqlx-sqlite binds `$n` by number), `ON CONFLICT`, `RETURNING`. The only
//! per-backend statements are how a write transaction starts (SQLite `BEGIN IMMEDIATE`,
//! so a transaction never has to upgrade a read lock, which SQLite would refuse with
//! `SQLITE_BUSY` instead of waiting) and the `FOR UPDATE` row lock on PostgreSQL.
//!
//! Tenancy: every method takes the tenant and every query filters on it; keys start
//! with the tenant, so an id from city A names nothing in city B.
//!
//! Personal data: errors carry the kind of thing that failed and database error codes,
//! never values (a PostgreSQL message can quote the offending value, so it is dropped).
//! Records holding staff names or password hashes redact them in `Debug`.

mod admin;
pub mod applications;
mod audit;
mod audit_retention;
mod backend;
mod catalog;
pub mod counter;
mod fleet;
pub mod maintenance;
mod outcomes;
mod residents;
mod sessions;
mod staff;
pub mod stats;
mod tenants;
pub mod types;

pub use admin::{AdminChange, AuditQuery};
pub use audit_retention::{AuditArchive, AuditBase, AuditYear};
pub use catalog::{CatalogueInstallError, CatalogueVersion, InstallOutcome, VersionStatus};
pub use outcomes::DeviceOutcome;
pub use residents::{
    ApplyResult, ImportMark, NameKey, RecordRow, ResidentCounts, ResidentRow, StoredHousehold,
    StoredRecord, StoredResident, SEARCH_LIMIT,
};
pub use sessions::{NewSession, Redacted, SessionRecord, StaffChange, SESSION_TOUCH_MS};
pub use types::*;

/// What can go wrong in the store. No variant carries personal data.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The URL names no supported backend, or the pool could not be configured. The
    /// URL itself is not repeated: it may hold a password.
    #[error("store configuration: {0}")]
    Config(&'static str),
    /// The thing (or the tenant, device, staff member or group it belongs to) does
    /// not exist in this tenant.
    #[error("{0} not found")]
    NotFound(&'static str),
    /// It already exists, or the change conflicts with what is stored.
    #[error("conflict: {0}")]
    Conflict(&'static str),
    /// A value the store refuses (e.g. text with a NUL character, which PostgreSQL
    /// cannot store, or a number out of range).
    #[error("invalid {0}")]
    Invalid(&'static str),
    /// Stored data that cannot be read back as its type (a sign of tampering or of a
    /// schema mismatch).
    #[error("corrupt stored {0}")]
    Corrupt(&'static str),
    /// The database or the driver failed (code and constraint only, no values).
    #[error("database: {0}")]
    Backend(String),
    /// Applying the schema migrations failed.
    #[error("migration: {0}")]
    Migration(String),
}

/// Result of store operations.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// A handle on the store. Cheap to clone (the pools are shared); all clones use the
/// same connections.
#[derive(Debug, Clone)]
pub struct Store {
    pool: backend::Pool,
}

/// Which backend a [`Store`] runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendKind {
    /// Embedded SQLite file.
    Sqlite,
    /// PostgreSQL server.
    Postgres,
}

impl Store {
    /// Opens the store at `url` and applies any pending migrations.
    ///
    /// - `sqlite://PATH?mode=rwc` (create if missing) or `sqlite://PATH`: WAL journal,
    ///   foreign keys on, a 30 s busy timeout. `sqlite::memory:` works with a single
    ///   connection (each SQLite connection would otherwise get its own database).
    /// - `postgres://USER@HOST:PORT/DB` (or `postgresql://`).
    ///
    /// Opening twice, or from several instances at once, is safe: migrations are
    /// versioned and PostgreSQL takes an advisory lock while applying them.
    pub async fn open(url: &str) -> Result<Self> {
        Ok(Self {
            pool: backend::Pool::open(url).await?,
        })
    }

    /// Which backend this store runs on.
    pub fn backend(&self) -> BackendKind {
        self.pool.kind()
    }

    /// Closes every connection; later calls fail.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}
