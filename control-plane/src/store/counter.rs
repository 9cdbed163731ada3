//! What the counter flows (`crate::counter`, issue 9) keep beyond applications: the
//! procedure guide of each life-event visit (migration 0007), and the reads they need
//! over the imported records: the 転出証明書情報 of the people matching a card or of a
//! declared household (through the search keys of migration 0011), the whole address
//! master to place an address in its school districts.
//!
//! Guides hold personal data (names, addresses): `Debug` of nothing here shows them,
//! and errors name the table only.

use super::backend::{with_pool, Cols};
use super::{Result, Store, StoreError, StoredRecord};
use crate::model::TenantId;

/// Most records of one kind [`Store::records_of_kind`] returns. The kinds it is for
/// (転出証明書情報, the address master) have hundreds to a few thousand rows in a city.
pub const KIND_LIMIT: i64 = 20_000;

/// Most records [`Store::records_matching`] and [`Store::records_by_head`] return per
/// search key: far above the few people moving in that share a birth date or a name.
pub const MATCH_LIMIT: i64 = 1_000;

impl Store {
    /// Every record of `kind` (key order), at most [`KIND_LIMIT`].
    pub async fn records_of_kind(
        &self,
        tenant: &TenantId,
        kind: &str,
    ) -> Result<Vec<StoredRecord>> {
        with_pool!(self, pool => {
            let rows = sqlx::query(
                "SELECT kind, rkey, atena, data FROM resident_records \
                 WHERE tenant = $1 AND kind = $2 ORDER BY rkey LIMIT $3",
            )
            .bind(tenant.as_str())
            .bind(kind)
            .bind(KIND_LIMIT)
            .fetch_all(pool)
            .await?;
            rows.iter()
                .map(|r| {
                    Ok(StoredRecord {
                        kind: r.text("kind")?,
                        key: r.text("rkey")?,
                        atena: r.opt_text("atena")?,
                        data: r.text("data")?,
                    })
                })
                .collect()
        })
    }

    /// The records of `kind` born on `birth_date` (`YYYY-MM-DD`) or whose folded 氏名
    /// is `name_key` (empty: by birth date only), by key: read through the search-key
    /// indexes (migration 0011), at most [`MATCH_LIMIT`] per key, so a card lookup's
    /// cost follows how many records share the birth date or the name, not how many
    /// the kind holds.
    pub async fn records_matching(
        &self,
        tenant: &TenantId,
        kind: &str,
        birth_date: &str,
        name_key: &str,
    ) -> Result<Vec<StoredRecord>> {
        let mut found = self
            .records_by_key(tenant, kind, "birth_date", birth_date)
            .await?;
        if !name_key.is_empty() {
            for r in self
                .records_by_key(tenant, kind, "name_key", name_key)
                .await?
            {
                if !found.iter().any(|f| f.key == r.key) {
                    found.push(r);
                }
            }
        }
        found.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(found)
    }

    /// The records of `kind` whose folded 世帯主 is `head_key` (a declared household),
    /// by key, at most [`MATCH_LIMIT`], through the index of migration 0011.
    pub async fn records_by_head(
        &self,
        tenant: &TenantId,
        kind: &str,
        head_key: &str,
    ) -> Result<Vec<StoredRecord>> {
        if head_key.is_empty() {
            return Ok(Vec::new());
        }
        let mut found = self
            .records_by_key(tenant, kind, "head_key", head_key)
            .await?;
        found.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(found)
    }

    /// The records of `kind` whose search-key `column` (one of the three of migration
    /// 0011, never caller text) equals `value`.
    async fn records_by_key(
        &self,
        tenant: &TenantId,
        kind: &str,
        column: &'static str,
        value: &str,
    ) -> Result<Vec<StoredRecord>> {
        debug_assert!(["name_key", "birth_date", "head_key"].contains(&column));
        let sql = format!(
            "SELECT kind, rkey, atena, data FROM resident_records \
             WHERE tenant = $1 AND kind = $2 AND {column} = $3 LIMIT $4"
        );
        with_pool!(self, pool => {
            let rows = sqlx::query(&sql)
                .bind(tenant.as_str())
                .bind(kind)
                .bind(value)
                .bind(MATCH_LIMIT)
                .fetch_all(pool)
                .await?;
            rows.iter()
                .map(|r| {
                    Ok(StoredRecord {
                        kind: r.text("kind")?,
                        key: r.text("rkey")?,
                        atena: r.opt_text("atena")?,
                        data: r.text("data")?,
                    })
                })
                .collect()
        })
    }

    /// The address of some resident living in the city (to read the city's own
    /// 都道府県 and 市区町村 from), if there is one.
    pub async fn a_resident_address(&self, tenant: &TenantId) -> Result<Option<String>> {
        with_pool!(self, pool => {
            let row = sqlx::query(
                "SELECT address FROM residents WHERE tenant = $1 AND status = '在住' LIMIT 1",
            )
            .bind(tenant.as_str())
            .fetch_optional(pool)
            .await?;
            row.map(|r| r.text("address")).transpose()
        })
    }

    /// Keeps the procedure guide of `visit` (replacing an earlier one of the same
    /// visit). [`StoreError::NotFound`] if the visit does not exist in this tenant.
    pub async fn put_counter_guide(
        &self,
        tenant: &TenantId,
        visit: &str,
        data: &serde_json::Value,
        now_ms: i64,
    ) -> Result<()> {
        if self.visit(tenant, visit).await?.is_none() {
            return Err(StoreError::NotFound("visit"));
        }
        let text = data.to_string();
        with_pool!(self, pool => {
            sqlx::query(
                "INSERT INTO counter_guides (tenant, visit, data, created_at_ms) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (tenant, visit) DO UPDATE SET data = excluded.data, created_at_ms = excluded.created_at_ms",
            )
            .bind(tenant.as_str())
            .bind(visit)
            .bind(text.as_str())
            .bind(now_ms)
            .execute(pool)
            .await?;
            Ok(())
        })
    }

    /// The procedure guide kept for `visit`, if any.
    pub async fn counter_guide(
        &self,
        tenant: &TenantId,
        visit: &str,
    ) -> Result<Option<serde_json::Value>> {
        with_pool!(self, pool => {
            let row = sqlx::query("SELECT data FROM counter_guides WHERE tenant = $1 AND visit = $2")
                .bind(tenant.as_str())
                .bind(visit)
                .fetch_optional(pool)
                .await?;
            match row {
                None => Ok(None),
                Some(r) => {
                    let text = r.text("data")?;
                    serde_json::from_str(&text)
                        .map(Some)
                        .map_err(|_| StoreError::Invalid("stored counter guide"))
                }
            }
        })
    }
}
