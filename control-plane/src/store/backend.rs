//! The two backends behind [`Store`](super::Store): pools, opening and migrating,
//! dispatch, column access and error mapping.

use std::borrow::Cow;
use std::str::FromStr;
use std::time::Duration;

use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions, PgRow};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
};
use sqlx::{Row, Transaction};

use super::{BackendKind, Result, StoreError};

/// Versioned migrations, embedded so the binary needs no files beside it. Append only:
/// sqlx stores each migration's checksum and refuses to open a database whose applied
/// migration has since been edited.
const SQLITE_MIGRATIONS: &[(i64, &str, &str)] = &[
    (
        1,
        "initial",
        include_str!("../../migrations/sqlite/0001_initial.sql"),
    ),
    (
        2,
        "sessions",
        include_str!("../../migrations/sqlite/0002_sessions.sql"),
    ),
    (
        3,
        "residents",
        include_str!("../../migrations/sqlite/0003_residents.sql"),
    ),
    (
        4,
        "catalog",
        include_str!("../../migrations/sqlite/0004_catalog.sql"),
    ),
    (
        5,
        "applications",
        include_str!("../../migrations/sqlite/0005_applications.sql"),
    ),
    (
        6,
        "residents delta",
        include_str!("../../migrations/sqlite/0006_residents_delta.sql"),
    ),
    (
        7,
        "counter guides",
        include_str!("../../migrations/sqlite/0007_counter_guides.sql"),
    ),
    (
        8,
        "stats",
        include_str!("../../migrations/sqlite/0008_stats.sql"),
    ),
    (
        9,
        "residents lookup cover",
        include_str!("../../migrations/sqlite/0009_residents_lookup_cover.sql"),
    ),
    (
        10,
        "audit retention",
        include_str!("../../migrations/sqlite/0010_audit_retention.sql"),
    ),
    (
        11,
        "record match keys",
        include_str!("../../migrations/sqlite/0011_record_match_keys.sql"),
    ),
    (
        12,
        "device outcomes",
        include_str!("../../migrations/sqlite/0012_device_outcomes.sql"),
    ),
];
const POSTGRES_MIGRATIONS: &[(i64, &str, &str)] = &[
    (
        1,
        "initial",
        include_str!("../../migrations/postgres/0001_initial.sql"),
    ),
    (
        2,
        "sessions",
        include_str!("../../migrations/postgres/0002_sessions.sql"),
    ),
    (
        3,
        "residents",
        include_str!("../../migrations/postgres/0003_residents.sql"),
    ),
    (
        4,
        "catalog",
        include_str!("../../migrations/postgres/0004_catalog.sql"),
    ),
    (
        5,
        "applications",
        include_str!("../../migrations/postgres/0005_applications.sql"),
    ),
    (
        6,
        "residents delta",
        include_str!("../../migrations/postgres/0006_residents_delta.sql"),
    ),
    (
        7,
        "counter guides",
        include_str!("../../migrations/postgres/0007_counter_guides.sql"),
    ),
    (
        8,
        "stats",
        include_str!("../../migrations/postgres/0008_stats.sql"),
    ),
    (
        9,
        "residents lookup cover",
        include_str!("../../migrations/postgres/0009_residents_lookup_cover.sql"),
    ),
    (
        10,
        "audit retention",
        include_str!("../../migrations/postgres/0010_audit_retention.sql"),
    ),
    (
        11,
        "record match keys",
        include_str!("../../migrations/postgres/0011_record_match_keys.sql"),
    ),
    (
        12,
        "device outcomes",
        include_str!("../../migrations/postgres/0012_device_outcomes.sql"),
    ),
];

/// How long a SQLite writer waits for another writer before giving up. Long enough
/// for a burst of concurrent audit appends; each write transaction is short.
const SQLITE_BUSY_TIMEOUT: Duration = Duration::from_secs(30);
/// SQLite connections (WAL: many readers, one writer at a time).
const SQLITE_MAX_CONNECTIONS: u32 = 8;

/// Page cache per SQLite connection, as SQLite's `cache_size` pragma takes it
/// (negative: KiB). Memory is taken only as pages are read.
const SQLITE_CACHE_KIB: &str = "-32768";
/// What the SQLite WAL file is truncated to after a checkpoint (bytes).
const SQLITE_WAL_LIMIT_BYTES: &str = "67108864";
/// PostgreSQL connections per control-plane instance.
const POSTGRES_MAX_CONNECTIONS: u32 = 16;

/// A connection pool of one backend.
#[derive(Debug, Clone)]
pub(crate) enum Pool {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// Runs `$body` with `$pool` bound to the backend's concrete pool. The body is
/// expanded once per backend, so one text of SQL and binding code serves both and is
/// type-checked against both drivers.
macro_rules! with_pool {
    ($store:expr, $pool:ident => $body:expr) => {
        match &$store.pool {
            $crate::store::backend::Pool::Sqlite($pool) => $body,
            $crate::store::backend::Pool::Postgres($pool) => $body,
        }
    };
}
pub(crate) use with_pool;

impl Pool {
    pub(crate) async fn open(url: &str) -> Result<Self> {
        if url.starts_with("sqlite:") {
            let options = SqliteConnectOptions::from_str(url)
                .map_err(|_| StoreError::Config("invalid sqlite URL"))?
                .journal_mode(SqliteJournalMode::Wal)
                .foreign_keys(true)
                .busy_timeout(SQLITE_BUSY_TIMEOUT)
                // SQLite's default page cache is 2 MiB per connection: the hot index
                // pages of the ingest and resident tables no longer fit once they
                // grow, and every write then reads its pages back from the OS.
                .pragma("cache_size", SQLITE_CACHE_KIB)
                // After a big import the WAL file would otherwise keep the size of the
                // largest transaction (gigabytes at 10⁷ residents) until the pool closes.
                .pragma("journal_size_limit", SQLITE_WAL_LIMIT_BYTES);
            // An in-memory database lives as long as its connection: keep exactly one.
            let in_memory = url.contains(":memory:") || url.contains("mode=memory");
            let pool_options = if in_memory {
                SqlitePoolOptions::new()
                    .max_connections(1)
                    .min_connections(1)
                    .idle_timeout(None)
                    .max_lifetime(None)
            } else {
                SqlitePoolOptions::new().max_connections(SQLITE_MAX_CONNECTIONS)
            };
            let pool = pool_options.connect_with(options).await?;
            migrator(SQLITE_MIGRATIONS)
                .run(&pool)
                .await
                .map_err(migrate_err)?;
            Ok(Self::Sqlite(pool))
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            let options = PgConnectOptions::from_str(url)
                .map_err(|_| StoreError::Config("invalid postgres URL"))?;
            let pool = PgPoolOptions::new()
                .max_connections(POSTGRES_MAX_CONNECTIONS)
                .connect_with(options)
                .await?;
            // The migrator holds a PostgreSQL advisory lock while it runs, so
            // instances starting together apply each migration once.
            migrator(POSTGRES_MIGRATIONS)
                .run(&pool)
                .await
                .map_err(migrate_err)?;
            Ok(Self::Postgres(pool))
        } else {
            Err(StoreError::Config(
                "the store URL must start with sqlite: or postgres:",
            ))
        }
    }

    pub(crate) fn kind(&self) -> BackendKind {
        match self {
            Self::Sqlite(_) => BackendKind::Sqlite,
            Self::Postgres(_) => BackendKind::Postgres,
        }
    }

    pub(crate) async fn close(&self) {
        match self {
            Self::Sqlite(p) => p.close().await,
            Self::Postgres(p) => p.close().await,
        }
    }
}

fn migrator(list: &'static [(i64, &'static str, &'static str)]) -> Migrator {
    let migrations = list
        .iter()
        .map(|&(version, description, sql)| {
            Migration::new(
                version,
                Cow::Borrowed(description),
                MigrationType::Simple,
                Cow::Borrowed(sql),
                false,
            )
        })
        .collect::<Vec<_>>();
    Migrator {
        migrations: Cow::Owned(migrations),
        ignore_missing: false,
        locking: true,
        no_tx: false,
    }
}

fn migrate_err(e: sqlx::migrate::MigrateError) -> StoreError {
    match e {
        sqlx::migrate::MigrateError::Execute(inner) => {
            StoreError::Migration(StoreError::from(inner).to_string())
        }
        other => StoreError::Migration(other.to_string()),
    }
}

/// What differs between the backends beyond the pool type.
pub(crate) trait Backend {
    type Db: sqlx::Database;

    /// Starts a transaction that will write. SQLite: `BEGIN IMMEDIATE` takes the write
    /// lock up front (waiting up to the busy timeout), because a deferred transaction
    /// that reads and then writes fails with `SQLITE_BUSY` when another connection
    /// wrote in between, and SQLite cannot wait that out. PostgreSQL: plain `BEGIN`
    /// (READ COMMITTED); statements that need it lock rows.
    async fn begin_write(&self) -> Result<Transaction<'static, Self::Db>>;

    /// The tenant's audit head, locked until the transaction ends.
    fn select_audit_head(&self) -> &'static str;
}

impl Backend for SqlitePool {
    type Db = sqlx::Sqlite;

    async fn begin_write(&self) -> Result<Transaction<'static, Self::Db>> {
        Ok(self.begin_with("BEGIN IMMEDIATE").await?)
    }

    fn select_audit_head(&self) -> &'static str {
        // BEGIN IMMEDIATE already excludes every other writer.
        "SELECT seq, hash FROM audit_heads WHERE tenant = $1"
    }
}

impl Backend for PgPool {
    type Db = sqlx::Postgres;

    async fn begin_write(&self) -> Result<Transaction<'static, Self::Db>> {
        Ok(self.begin().await?)
    }

    fn select_audit_head(&self) -> &'static str {
        // The row lock serialises appends per tenant across instances; under READ
        // COMMITTED a waiting appender then reads the head its predecessor committed.
        "SELECT seq, hash FROM audit_heads WHERE tenant = $1 FOR UPDATE"
    }
}

/// Column access shared by both row types, so row-to-record code is written once.
pub(crate) trait Cols {
    fn int(&self, col: &str) -> Result<i64>;
    fn opt_int(&self, col: &str) -> Result<Option<i64>>;
    fn text(&self, col: &str) -> Result<String>;
    fn opt_text(&self, col: &str) -> Result<Option<String>>;
    fn bytes(&self, col: &str) -> Result<Vec<u8>>;
    fn flag(&self, col: &str) -> Result<bool>;
}

macro_rules! impl_cols {
    ($($row:ty),*) => {$(
        impl Cols for $row {
            fn int(&self, col: &str) -> Result<i64> {
                Ok(self.try_get(col)?)
            }
            fn opt_int(&self, col: &str) -> Result<Option<i64>> {
                Ok(self.try_get(col)?)
            }
            fn text(&self, col: &str) -> Result<String> {
                Ok(self.try_get(col)?)
            }
            fn opt_text(&self, col: &str) -> Result<Option<String>> {
                Ok(self.try_get(col)?)
            }
            fn bytes(&self, col: &str) -> Result<Vec<u8>> {
                Ok(self.try_get(col)?)
            }
            fn flag(&self, col: &str) -> Result<bool> {
                Ok(self.try_get(col)?)
            }
        }
    )*};
}
impl_cols!(SqliteRow, PgRow);

impl From<sqlx::Error> for StoreError {
    /// A generic mapping; call sites that know what a duplicate or a missing parent
    /// means use `classify`.
    fn from(e: sqlx::Error) -> Self {
        classify(e, "duplicate", "referenced record")
    }
}

/// Maps a driver error: a unique violation is a [`StoreError::Conflict`] about
/// `duplicate`, a foreign-key violation a [`StoreError::NotFound`] of `missing`.
/// Database messages are dropped (PostgreSQL quotes offending values in some of them);
/// the SQLSTATE code, table and constraint are enough to diagnose.
pub(crate) fn classify(
    e: sqlx::Error,
    duplicate: &'static str,
    missing: &'static str,
) -> StoreError {
    match e {
        sqlx::Error::Database(d) if d.is_unique_violation() => StoreError::Conflict(duplicate),
        sqlx::Error::Database(d) if d.is_foreign_key_violation() => StoreError::NotFound(missing),
        sqlx::Error::Database(d) => StoreError::Backend(format!(
            "error code {} (table {}, constraint {})",
            d.code().as_deref().unwrap_or("?"),
            d.table().unwrap_or("-"),
            d.constraint().unwrap_or("-"),
        )),
        sqlx::Error::RowNotFound => StoreError::NotFound("row"),
        sqlx::Error::ColumnDecode { index, .. } => {
            StoreError::Backend(format!("cannot decode column {index}"))
        }
        sqlx::Error::Decode(_) => StoreError::Backend("cannot decode a value".into()),
        // Connection, pool, protocol and configuration errors carry no row data.
        other => StoreError::Backend(other.to_string()),
    }
}

/// Refuses text the backends would treat differently: PostgreSQL cannot store NUL in
/// TEXT, SQLite can, so both refuse it to behave the same.
pub(crate) fn check_text(what: &'static str, s: &str) -> Result<()> {
    if s.contains('\0') {
        Err(StoreError::Invalid(what))
    } else {
        Ok(())
    }
}

/// Like [`check_text`], and not empty.
pub(crate) fn check_id(what: &'static str, s: &str) -> Result<()> {
    if s.is_empty() {
        return Err(StoreError::Invalid(what));
    }
    check_text(what, s)
}

/// A stored non-negative integer as `u64`.
pub(crate) fn to_u64(v: i64, what: &'static str) -> Result<u64> {
    u64::try_from(v).map_err(|_| StoreError::Corrupt(what))
}

/// A `u64` for a BIGINT column.
pub(crate) fn to_i64(v: u64, what: &'static str) -> Result<i64> {
    i64::try_from(v).map_err(|_| StoreError::Invalid(what))
}
