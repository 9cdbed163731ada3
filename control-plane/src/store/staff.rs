//! Staff accounts, groups, permissions and membership (N5, N6).
//!
//! The store keeps what the login and access-control code decides on: the argon2id
//! PHC string (hashing and verifying are the caller's), the failed-attempt counter,
//! the lock and the flags. Permissions are strings given to groups; a staff member
//! has the union of the permissions of their groups.

use std::collections::BTreeSet;

use super::backend::{check_id, check_text, classify, with_pool, Backend, Cols};
use super::{Group, NewStaff, Result, Staff, StaffUpdate, Store, StoreError};
use crate::model::TenantId;

const STAFF_COLUMNS: &str = "tenant, login_id, display_name, password_hash, failed_attempts, \
     locked_until_ms, disabled, must_change_password, created_at_ms, updated_at_ms";

impl Store {
    /// Creates a staff account. [`StoreError::Conflict`] if the login id is taken in
    /// this tenant; [`StoreError::NotFound`] if the tenant does not exist.
    pub async fn create_staff(
        &self,
        tenant: &TenantId,
        staff: &NewStaff,
        now_ms: i64,
    ) -> Result<()> {
        check_id("login id", &staff.login_id)?;
        check_text("display name", &staff.display_name)?;
        check_id("password hash", &staff.password_hash)?;
        with_pool!(self, pool => {
            sqlx::query(
                "INSERT INTO staff (tenant, login_id, display_name, password_hash, \
                 must_change_password, created_at_ms, updated_at_ms) \
                 VALUES ($1, $2, $3, $4, $5, $6, $6)",
            )
            .bind(tenant.as_str())
            .bind(&staff.login_id)
            .bind(&staff.display_name)
            .bind(&staff.password_hash)
            .bind(staff.must_change_password)
            .bind(now_ms)
            .execute(pool)
            .await
            .map_err(|e| classify(e, "staff login id", "tenant"))?;
            Ok(())
        })
    }

    /// The staff account with this login id.
    pub async fn get_staff(&self, tenant: &TenantId, login_id: &str) -> Result<Option<Staff>> {
        with_pool!(self, pool => {
            let sql = format!("SELECT {STAFF_COLUMNS} FROM staff WHERE tenant = $1 AND login_id = $2");
            let row = sqlx::query(&sql)
                .bind(tenant.as_str())
                .bind(login_id)
                .fetch_optional(pool)
                .await?;
            row.map(|r| staff_from_row(&r)).transpose()
        })
    }

    /// Every staff account of the tenant, by login id.
    pub async fn list_staff(&self, tenant: &TenantId) -> Result<Vec<Staff>> {
        with_pool!(self, pool => {
            let sql = format!("SELECT {STAFF_COLUMNS} FROM staff WHERE tenant = $1 ORDER BY login_id");
            let rows = sqlx::query(&sql).bind(tenant.as_str()).fetch_all(pool).await?;
            rows.iter().map(staff_from_row).collect()
        })
    }

    /// Changes the profile fields that are `Some`.
    pub async fn update_staff(
        &self,
        tenant: &TenantId,
        login_id: &str,
        update: &StaffUpdate,
        now_ms: i64,
    ) -> Result<()> {
        if let Some(name) = &update.display_name {
            check_text("display name", name)?;
        }
        with_pool!(self, pool => {
            let q = sqlx::query(
                "UPDATE staff SET display_name = COALESCE($3, display_name), \
                 must_change_password = COALESCE($4, must_change_password), updated_at_ms = $5 \
                 WHERE tenant = $1 AND login_id = $2",
            )
            .bind(tenant.as_str())
            .bind(login_id)
            .bind(update.display_name.as_deref())
            .bind(update.must_change_password)
            .bind(now_ms);
            expect_one(q.execute(pool).await?.rows_affected())
        })
    }

    /// Disables (or re-enables) an account.
    pub async fn set_staff_disabled(
        &self,
        tenant: &TenantId,
        login_id: &str,
        disabled: bool,
        now_ms: i64,
    ) -> Result<()> {
        with_pool!(self, pool => {
            let q = sqlx::query(
                "UPDATE staff SET disabled = $3, updated_at_ms = $4 \
                 WHERE tenant = $1 AND login_id = $2",
            )
            .bind(tenant.as_str())
            .bind(login_id)
            .bind(disabled)
            .bind(now_ms);
            expect_one(q.execute(pool).await?.rows_affected())
        })
    }

    /// Replaces the password hash (an argon2id PHC string) and sets whether it must be
    /// changed at next login (true for one an administrator set).
    pub async fn set_password_hash(
        &self,
        tenant: &TenantId,
        login_id: &str,
        password_hash: &str,
        must_change_password: bool,
        now_ms: i64,
    ) -> Result<()> {
        check_id("password hash", password_hash)?;
        with_pool!(self, pool => {
            let q = sqlx::query(
                "UPDATE staff SET password_hash = $3, must_change_password = $4, \
                 updated_at_ms = $5 WHERE tenant = $1 AND login_id = $2",
            )
            .bind(tenant.as_str())
            .bind(login_id)
            .bind(password_hash)
            .bind(must_change_password)
            .bind(now_ms);
            expect_one(q.execute(pool).await?.rows_affected())
        })
    }

    /// Counts a failed login and returns the new count. One statement
    /// (`UPDATE … RETURNING`), so concurrent failures from several counters or
    /// instances are each counted.
    pub async fn record_failed_login(&self, tenant: &TenantId, login_id: &str) -> Result<u32> {
        with_pool!(self, pool => {
            let row = sqlx::query(
                "UPDATE staff SET failed_attempts = failed_attempts + 1 \
                 WHERE tenant = $1 AND login_id = $2 RETURNING failed_attempts",
            )
            .bind(tenant.as_str())
            .bind(login_id)
            .fetch_optional(pool)
            .await?
            .ok_or(StoreError::NotFound("staff"))?;
            u32::try_from(row.int("failed_attempts")?).map_err(|_| StoreError::Corrupt("failed attempts"))
        })
    }

    /// Clears the failed-attempt counter and any lock (after a successful login or an
    /// administrator's unlock).
    pub async fn reset_failed_logins(&self, tenant: &TenantId, login_id: &str) -> Result<()> {
        with_pool!(self, pool => {
            let q = sqlx::query(
                "UPDATE staff SET failed_attempts = 0, locked_until_ms = NULL \
                 WHERE tenant = $1 AND login_id = $2",
            )
            .bind(tenant.as_str())
            .bind(login_id);
            expect_one(q.execute(pool).await?.rows_affected())
        })
    }

    /// Locks the account until `until_ms`.
    pub async fn lock_staff_until(
        &self,
        tenant: &TenantId,
        login_id: &str,
        until_ms: i64,
        now_ms: i64,
    ) -> Result<()> {
        with_pool!(self, pool => {
            let q = sqlx::query(
                "UPDATE staff SET locked_until_ms = $3, updated_at_ms = $4 \
                 WHERE tenant = $1 AND login_id = $2",
            )
            .bind(tenant.as_str())
            .bind(login_id)
            .bind(until_ms)
            .bind(now_ms);
            expect_one(q.execute(pool).await?.rows_affected())
        })
    }

    /// Creates a group with its permissions. [`StoreError::Conflict`] if the name is
    /// taken in this tenant.
    pub async fn create_group(&self, tenant: &TenantId, group: &Group) -> Result<()> {
        check_group(group)?;
        with_pool!(self, pool => {
            let mut tx = pool.begin_write().await?;
            sqlx::query("INSERT INTO staff_groups (tenant, name, description) VALUES ($1, $2, $3)")
                .bind(tenant.as_str())
                .bind(&group.name)
                .bind(&group.description)
                .execute(&mut *tx)
                .await
                .map_err(|e| classify(e, "group", "tenant"))?;
            for p in &group.permissions {
                sqlx::query(
                    "INSERT INTO group_permissions (tenant, group_name, permission) VALUES ($1, $2, $3)",
                )
                .bind(tenant.as_str())
                .bind(&group.name)
                .bind(p)
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
            Ok(())
        })
    }

    /// Replaces a group's description and permissions (the name identifies it).
    pub async fn update_group(&self, tenant: &TenantId, group: &Group) -> Result<()> {
        check_group(group)?;
        with_pool!(self, pool => {
            let mut tx = pool.begin_write().await?;
            let updated = sqlx::query(
                "UPDATE staff_groups SET description = $3 WHERE tenant = $1 AND name = $2",
            )
            .bind(tenant.as_str())
            .bind(&group.name)
            .bind(&group.description)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if updated == 0 {
                return Err(StoreError::NotFound("group"));
            }
            sqlx::query("DELETE FROM group_permissions WHERE tenant = $1 AND group_name = $2")
                .bind(tenant.as_str())
                .bind(&group.name)
                .execute(&mut *tx)
                .await?;
            for p in &group.permissions {
                sqlx::query(
                    "INSERT INTO group_permissions (tenant, group_name, permission) VALUES ($1, $2, $3)",
                )
                .bind(tenant.as_str())
                .bind(&group.name)
                .bind(p)
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
            Ok(())
        })
    }

    /// Deletes a group, its permissions and its memberships.
    pub async fn delete_group(&self, tenant: &TenantId, name: &str) -> Result<()> {
        with_pool!(self, pool => {
            let q = sqlx::query("DELETE FROM staff_groups WHERE tenant = $1 AND name = $2")
                .bind(tenant.as_str())
                .bind(name);
            match q.execute(pool).await?.rows_affected() {
                0 => Err(StoreError::NotFound("group")),
                _ => Ok(()),
            }
        })
    }

    /// Every group of the tenant, by name, with its permissions.
    pub async fn list_groups(&self, tenant: &TenantId) -> Result<Vec<Group>> {
        with_pool!(self, pool => {
            let rows = sqlx::query(
                "SELECT name, description FROM staff_groups WHERE tenant = $1 ORDER BY name",
            )
            .bind(tenant.as_str())
            .fetch_all(pool)
            .await?;
            let perms = sqlx::query(
                "SELECT group_name, permission FROM group_permissions WHERE tenant = $1",
            )
            .bind(tenant.as_str())
            .fetch_all(pool)
            .await?;
            let mut groups = rows
                .iter()
                .map(|r| {
                    Ok(Group {
                        name: r.text("name")?,
                        description: r.text("description")?,
                        permissions: BTreeSet::new(),
                    })
                })
                .collect::<Result<Vec<_>>>()?;
            for p in &perms {
                let owner = p.text("group_name")?;
                if let Ok(i) = groups.binary_search_by(|g| g.name.as_str().cmp(&owner)) {
                    groups[i].permissions.insert(p.text("permission")?);
                }
            }
            Ok(groups)
        })
    }

    /// Puts a staff member in a group (idempotent). [`StoreError::NotFound`] if either
    /// does not exist in this tenant.
    pub async fn add_group_member(
        &self,
        tenant: &TenantId,
        group: &str,
        login_id: &str,
    ) -> Result<()> {
        with_pool!(self, pool => {
            sqlx::query(
                "INSERT INTO group_members (tenant, group_name, login_id) VALUES ($1, $2, $3) \
                 ON CONFLICT DO NOTHING",
            )
            .bind(tenant.as_str())
            .bind(group)
            .bind(login_id)
            .execute(pool)
            .await
            .map_err(|e| classify(e, "membership", "staff or group"))?;
            Ok(())
        })
    }

    /// Takes a staff member out of a group; `false` if they were not in it.
    pub async fn remove_group_member(
        &self,
        tenant: &TenantId,
        group: &str,
        login_id: &str,
    ) -> Result<bool> {
        with_pool!(self, pool => {
            let removed = sqlx::query(
                "DELETE FROM group_members WHERE tenant = $1 AND group_name = $2 AND login_id = $3",
            )
            .bind(tenant.as_str())
            .bind(group)
            .bind(login_id)
            .execute(pool)
            .await?
            .rows_affected();
            Ok(removed > 0)
        })
    }

    /// The groups a staff member is in, by name.
    pub async fn groups_of(&self, tenant: &TenantId, login_id: &str) -> Result<Vec<String>> {
        with_pool!(self, pool => {
            let rows = sqlx::query(
                "SELECT group_name FROM group_members WHERE tenant = $1 AND login_id = $2 \
                 ORDER BY group_name",
            )
            .bind(tenant.as_str())
            .bind(login_id)
            .fetch_all(pool)
            .await?;
            rows.iter().map(|r| r.text("group_name")).collect()
        })
    }

    /// The login ids of a group's members, sorted.
    pub async fn group_members(&self, tenant: &TenantId, group: &str) -> Result<Vec<String>> {
        with_pool!(self, pool => {
            let rows = sqlx::query(
                "SELECT login_id FROM group_members WHERE tenant = $1 AND group_name = $2 \
                 ORDER BY login_id",
            )
            .bind(tenant.as_str())
            .bind(group)
            .fetch_all(pool)
            .await?;
            rows.iter().map(|r| r.text("login_id")).collect()
        })
    }

    /// A staff member's permissions: the union over their groups. Says nothing about
    /// whether the account is disabled or locked; the login code checks those.
    pub async fn permissions_of(
        &self,
        tenant: &TenantId,
        login_id: &str,
    ) -> Result<BTreeSet<String>> {
        with_pool!(self, pool => {
            let rows = sqlx::query(
                "SELECT DISTINCT p.permission FROM group_members m \
                 JOIN group_permissions p ON p.tenant = m.tenant AND p.group_name = m.group_name \
                 WHERE m.tenant = $1 AND m.login_id = $2",
            )
            .bind(tenant.as_str())
            .bind(login_id)
            .fetch_all(pool)
            .await?;
            rows.iter().map(|r| r.text("permission")).collect()
        })
    }
}

fn check_group(group: &Group) -> Result<()> {
    check_id("group name", &group.name)?;
    check_text("group description", &group.description)?;
    group
        .permissions
        .iter()
        .try_for_each(|p| check_id("permission", p))
}

/// An UPDATE of one staff row by its key changed it, or there is no such account.
fn expect_one(rows: u64) -> Result<()> {
    if rows == 0 {
        Err(StoreError::NotFound("staff"))
    } else {
        Ok(())
    }
}

fn staff_from_row(r: &impl Cols) -> Result<Staff> {
    Ok(Staff {
        tenant: TenantId::new(&r.text("tenant")?).map_err(|_| StoreError::Corrupt("tenant id"))?,
        login_id: r.text("login_id")?,
        display_name: r.text("display_name")?,
        password_hash: r.text("password_hash")?,
        failed_attempts: u32::try_from(r.int("failed_attempts")?)
            .map_err(|_| StoreError::Corrupt("failed attempts"))?,
        locked_until_ms: r.opt_int("locked_until_ms")?,
        disabled: r.flag("disabled")?,
        must_change_password: r.flag("must_change_password")?,
        created_at_ms: r.int("created_at_ms")?,
        updated_at_ms: r.int("updated_at_ms")?,
    })
}
