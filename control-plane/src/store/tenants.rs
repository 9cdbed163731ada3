//! Tenants (cities). Creating one also creates the head of its audit chain, so every
//! append finds a row to lock (two first appends racing to create it would otherwise
//! both see "no head").

use super::backend::{check_text, classify, with_pool, Backend, Cols};
use super::{Result, Store, StoreError, Tenant};
use crate::audit::chain::GENESIS;
use crate::model::TenantId;

impl Store {
    /// Creates a tenant. [`StoreError::Conflict`] if the id is taken.
    pub async fn create_tenant(&self, tenant: &Tenant, now_ms: i64) -> Result<()> {
        check_text("tenant name", &tenant.name)?;
        with_pool!(self, pool => {
            let mut tx = pool.begin_write().await?;
            sqlx::query("INSERT INTO tenants (id, name, created_at_ms) VALUES ($1, $2, $3)")
                .bind(tenant.id.as_str())
                .bind(&tenant.name)
                .bind(now_ms)
                .execute(&mut *tx)
                .await
                .map_err(|e| classify(e, "tenant", "tenant"))?;
            sqlx::query("INSERT INTO audit_heads (tenant, seq, hash) VALUES ($1, 0, $2)")
                .bind(tenant.id.as_str())
                .bind(&GENESIS[..])
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok(())
        })
    }

    /// The tenant with this id.
    pub async fn get_tenant(&self, id: &TenantId) -> Result<Option<Tenant>> {
        with_pool!(self, pool => {
            let row = sqlx::query("SELECT id, name FROM tenants WHERE id = $1")
                .bind(id.as_str())
                .fetch_optional(pool)
                .await?;
            row.map(|r| tenant_from_row(&r)).transpose()
        })
    }

    /// Every tenant, by id. (For central IT; nothing else lists across tenants.)
    pub async fn list_tenants(&self) -> Result<Vec<Tenant>> {
        with_pool!(self, pool => {
            let rows = sqlx::query("SELECT id, name FROM tenants ORDER BY id")
                .fetch_all(pool)
                .await?;
            rows.iter().map(tenant_from_row).collect()
        })
    }
}

fn tenant_from_row(r: &impl Cols) -> Result<Tenant> {
    let id = r.text("id")?;
    Ok(Tenant {
        id: TenantId::new(&id).map_err(|_| StoreError::Corrupt("tenant id"))?,
        name: r.text("name")?,
    })
}
