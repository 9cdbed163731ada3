//! Whole-store operations for backups (issue 11): a consistent snapshot of the
//! database and a digest of every table, so that a backup can be proved by restoring
//! it somewhere else and comparing.
//!
//! A table's digest is its row count and the SHA-256 of its rows, each rendered as
//! text by the database itself and taken in a fixed order. Digests compare a store
//! with its own restored copy on the same backend; they are not meant to be equal
//! across backends.
//!
//! - SQLite: [`Store::sqlite_snapshot`] writes a transactionally consistent copy with
//!   `VACUUM INTO` while the service keeps running; [`sqlite_file_digests`] reads a
//!   copy without migrating or otherwise changing it.
//! - PostgreSQL: [`Store::postgres_snapshot`] opens a REPEATABLE READ transaction,
//!   exports its snapshot for `pg_dump --snapshot` and computes the digests inside that
//!   same snapshot, so the dump and the digests describe one moment.
//!   [`postgres_url_digests`] reads a restored copy.

use std::collections::BTreeMap;
use std::future::Future;
use std::path::Path;
use std::str::FromStr;

use futures_util::TryStreamExt;
use ring::digest::{Context, SHA256};
use serde::{Deserialize, Serialize};
use sqlx::postgres::PgConnectOptions;
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{ConnectOptions, Connection, PgConnection, Row, SqliteConnection};

use super::backend::Pool;
use super::{Result, Store, StoreError};

/// One table's row count and content hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableDigest {
    /// Rows in the table.
    pub rows: u64,
    /// SHA-256 over the rows as text, in a fixed order, hex.
    pub sha256: String,
}

/// Every table's digest, by table name.
pub type Digests = BTreeMap<String, TableDigest>;

impl Store {
    /// SQLite only: writes a consistent copy of the whole database to `dest`, which
    /// must not exist. Runs beside normal traffic (readers and writers keep going).
    pub async fn sqlite_snapshot(&self, dest: &Path) -> Result<()> {
        let Pool::Sqlite(pool) = &self.pool else {
            return Err(StoreError::Config(
                "a SQLite snapshot needs the SQLite backend",
            ));
        };
        let dest = dest
            .to_str()
            .ok_or(StoreError::Config("the snapshot path is not UTF-8"))?;
        sqlx::query("VACUUM INTO $1")
            .bind(dest)
            .execute(pool)
            .await?;
        Ok(())
    }

    /// PostgreSQL only: holds one REPEATABLE READ snapshot while `dump` runs with its
    /// exported id (for `pg_dump --snapshot=ID`), and returns the digests of every
    /// table as seen in that snapshot along with what `dump` returned.
    pub async fn postgres_snapshot<F, Fut, T>(&self, dump: F) -> Result<(Digests, T)>
    where
        F: FnOnce(String) -> Fut,
        Fut: Future<Output = T>,
    {
        let Pool::Postgres(pool) = &self.pool else {
            return Err(StoreError::Config(
                "a PostgreSQL snapshot needs the PostgreSQL backend",
            ));
        };
        let mut conn = pool.acquire().await?;
        sqlx::query("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            .execute(&mut *conn)
            .await?;
        let snapshot: String = sqlx::query_scalar("SELECT pg_export_snapshot()")
            .fetch_one(&mut *conn)
            .await?;
        // The exported snapshot stays importable only while this transaction is
        // open: the dump runs first, the digests after, both inside it.
        let dumped = dump(snapshot).await;
        let digests = pg_digests(&mut conn).await;
        sqlx::query("COMMIT").execute(&mut *conn).await?;
        Ok((digests?, dumped))
    }

    /// The digest of every table of this store, now.
    pub async fn digests(&self) -> Result<Digests> {
        match &self.pool {
            Pool::Sqlite(pool) => {
                let mut conn = pool.acquire().await?;
                sqlite_digests(&mut conn).await
            }
            Pool::Postgres(pool) => {
                let mut conn = pool.acquire().await?;
                pg_digests(&mut conn).await
            }
        }
    }
}

/// The digests of the SQLite database file at `path`, opened read-only: nothing is
/// migrated or written.
pub async fn sqlite_file_digests(path: &Path) -> Result<Digests> {
    let mut conn = SqliteConnectOptions::new()
        .filename(path)
        .read_only(true)
        .connect()
        .await?;
    let check: String = sqlx::query_scalar("PRAGMA integrity_check")
        .fetch_one(&mut conn)
        .await?;
    if check != "ok" {
        return Err(StoreError::Config(
            "the SQLite file fails its integrity check",
        ));
    }
    let digests = sqlite_digests(&mut conn).await;
    conn.close().await?;
    digests
}

/// The digests of the PostgreSQL database at `url`, read without migrating it.
pub async fn postgres_url_digests(url: &str) -> Result<Digests> {
    let options =
        PgConnectOptions::from_str(url).map_err(|_| StoreError::Config("invalid postgres URL"))?;
    let mut conn = PgConnection::connect_with(&options).await?;
    let digests = pg_digests(&mut conn).await;
    conn.close().await?;
    digests
}

/// Double-quotes an SQL identifier (table names come from the catalogue tables).
fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

async fn sqlite_digests(conn: &mut SqliteConnection) -> Result<Digests> {
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT name FROM sqlite_master WHERE type = 'table' \
         AND name NOT LIKE 'sqlite_%' ORDER BY name",
    )
    .fetch_all(&mut *conn)
    .await?;
    let mut out = Digests::new();
    for table in tables {
        let columns: Vec<String> =
            sqlx::query(&format!("PRAGMA table_info({})", quote_ident(&table)))
                .fetch_all(&mut *conn)
                .await?
                .iter()
                .map(|row| row.try_get::<String, _>("name"))
                .collect::<std::result::Result<_, _>>()?;
        if columns.is_empty() {
            continue;
        }
        let expr = columns
            .iter()
            .map(|c| format!("quote({})", quote_ident(c)))
            .collect::<Vec<_>>()
            .join(" || char(31) || ");
        let sql = format!(
            "SELECT line FROM (SELECT {expr} AS line FROM {}) ORDER BY line",
            quote_ident(&table)
        );
        out.insert(
            table,
            digest_rows(sqlx::query_scalar::<_, String>(&sql).fetch(&mut *conn)).await?,
        );
    }
    Ok(out)
}

async fn pg_digests(conn: &mut PgConnection) -> Result<Digests> {
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT tablename::text FROM pg_tables WHERE schemaname = current_schema() \
         ORDER BY tablename",
    )
    .fetch_all(&mut *conn)
    .await?;
    let mut out = Digests::new();
    for table in tables {
        let sql = format!(
            "SELECT kk_row_::text FROM {} AS kk_row_ ORDER BY kk_row_::text COLLATE \"C\"",
            quote_ident(&table)
        );
        out.insert(
            table,
            digest_rows(sqlx::query_scalar::<_, String>(&sql).fetch(&mut *conn)).await?,
        );
    }
    Ok(out)
}

async fn digest_rows<S>(mut rows: S) -> Result<TableDigest>
where
    S: futures_util::Stream<Item = std::result::Result<String, sqlx::Error>> + Unpin,
{
    let mut hash = Context::new(&SHA256);
    let mut count = 0u64;
    while let Some(line) = rows.try_next().await? {
        hash.update(line.as_bytes());
        hash.update(b"\n");
        count += 1;
    }
    Ok(TableDigest {
        rows: count,
        sha256: hex::encode(hash.finish()),
    })
}
