//! What the admin UI needs from the store beyond the other files: administrative
//! changes applied **in one transaction with their audit entry** (N7: an admin change
//! and its record stand or fall together), and a paged, newest-first audit search.
//!
//! The audit append is the store's one implementation (`lock_audit_head!`,
//! `push_audit!`, `store_audit_head!` in `store/audit.rs`), run inside this
//! transaction.

use std::fmt::Write as _;

use super::audit::{lock_audit_head, push_audit, store_audit_head};
use super::backend::{check_id, check_text, classify, to_u64, with_pool, Backend, Cols};
use super::{AuditEntry, Redacted, Result, StaffChange, Store, StoreError};
use crate::audit::chain::HASH_LEN;
use crate::model::{AuditRecord, TenantId};

/// One administrative change for [`Store::apply_admin_changes`].
#[derive(Debug, Clone)]
pub enum AdminChange {
    /// A change the staff import also makes (groups, accounts, names, memberships,
    /// disabling — which ends the account's sessions).
    Staff(StaffChange),
    /// Replace the password hash (an argon2id PHC string made by the caller), clear
    /// the lock and the failure counter, and end every session of the account.
    SetPassword {
        /// The staff member.
        login_id: String,
        /// The new PHC string (secret-derived: redacted in `Debug`).
        password_hash: Redacted,
        /// Must change it at next login.
        must_change_password: bool,
    },
    /// Lift a lockout and clear the failure counter.
    Unlock {
        /// The staff member.
        login_id: String,
    },
    /// Delete a group with its permissions and memberships.
    DeleteGroup {
        /// The group.
        name: String,
    },
}

/// Search conditions of the admin UI's audit page; every field set must match.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditQuery {
    /// At or after (ms, inclusive).
    pub from_ms: Option<i64>,
    /// Before (ms, exclusive).
    pub to_ms: Option<i64>,
    /// Done by this staff member or administrator (login id).
    pub operator: Option<String>,
    /// Concerning this resident (宛名番号).
    pub resident: Option<String>,
    /// Operation starting with this (literal, case-sensitive).
    pub action_prefix: Option<String>,
    /// Only entries with a smaller seq (the next page of a newest-first list).
    pub before_seq: Option<u64>,
}

fn nul_free(s: &str) -> String {
    s.replace('\0', "\u{FFFD}")
}

impl Store {
    /// Applies `changes` in order and appends `record` to the tenant's audit chain, in
    /// one write transaction: all of it or nothing. `record.tenant` must be `tenant`.
    /// Returns the audit entry written.
    pub async fn apply_admin_changes(
        &self,
        tenant: &TenantId,
        changes: &[AdminChange],
        record: &AuditRecord,
        now_ms: i64,
    ) -> Result<AuditEntry> {
        if record.tenant != tenant.as_str() {
            return Err(StoreError::Invalid("audit record of another tenant"));
        }
        for c in changes {
            match c {
                AdminChange::Staff(StaffChange::CreateGroup(g) | StaffChange::UpdateGroup(g)) => {
                    check_id("group name", &g.name)?;
                    check_text("group description", &g.description)?;
                }
                AdminChange::Staff(StaffChange::CreateStaff(s)) => {
                    check_id("login id", &s.login_id)?;
                    check_text("display name", &s.display_name)?;
                    check_id("password hash", &s.password_hash)?;
                }
                AdminChange::Staff(StaffChange::SetDisplayName { display_name, .. }) => {
                    check_text("display name", &display_name.0)?;
                }
                AdminChange::SetPassword { password_hash, .. } => {
                    check_id("password hash", &password_hash.0)?;
                }
                _ => {}
            }
        }
        let t = tenant.as_str();
        with_pool!(self, pool => {
            let mut tx = pool.begin_write().await?;
            // The head first: on PostgreSQL this row lock orders concurrent admin
            // changes of a tenant the same way as their audit entries.
            let mut head = lock_audit_head!(pool, tx, t);
            for change in changes {
                let affected = match change {
                    AdminChange::Staff(StaffChange::CreateGroup(g)) => {
                        sqlx::query("INSERT INTO staff_groups (tenant, name, description) VALUES ($1, $2, $3)")
                            .bind(t).bind(&g.name).bind(&g.description)
                            .execute(&mut *tx).await
                            .map_err(|e| classify(e, "group", "tenant"))?;
                        for p in &g.permissions {
                            sqlx::query("INSERT INTO group_permissions (tenant, group_name, permission) VALUES ($1, $2, $3)")
                                .bind(t).bind(&g.name).bind(p)
                                .execute(&mut *tx).await?;
                        }
                        1
                    }
                    AdminChange::Staff(StaffChange::UpdateGroup(g)) => {
                        let n = sqlx::query("UPDATE staff_groups SET description = $3 WHERE tenant = $1 AND name = $2")
                            .bind(t).bind(&g.name).bind(&g.description)
                            .execute(&mut *tx).await?.rows_affected();
                        if n == 0 {
                            return Err(StoreError::NotFound("group"));
                        }
                        sqlx::query("DELETE FROM group_permissions WHERE tenant = $1 AND group_name = $2")
                            .bind(t).bind(&g.name)
                            .execute(&mut *tx).await?;
                        for p in &g.permissions {
                            sqlx::query("INSERT INTO group_permissions (tenant, group_name, permission) VALUES ($1, $2, $3)")
                                .bind(t).bind(&g.name).bind(p)
                                .execute(&mut *tx).await?;
                        }
                        1
                    }
                    AdminChange::Staff(StaffChange::CreateStaff(s)) => {
                        sqlx::query(
                            "INSERT INTO staff (tenant, login_id, display_name, password_hash, \
                             must_change_password, created_at_ms, updated_at_ms) \
                             VALUES ($1, $2, $3, $4, $5, $6, $6)",
                        )
                        .bind(t).bind(&s.login_id).bind(&s.display_name).bind(&s.password_hash)
                        .bind(s.must_change_password).bind(now_ms)
                        .execute(&mut *tx).await
                        .map_err(|e| classify(e, "staff login id", "tenant"))?;
                        1
                    }
                    AdminChange::Staff(StaffChange::SetDisplayName { login_id, display_name }) => {
                        sqlx::query("UPDATE staff SET display_name = $3, updated_at_ms = $4 WHERE tenant = $1 AND login_id = $2")
                            .bind(t).bind(login_id).bind(&display_name.0).bind(now_ms)
                            .execute(&mut *tx).await?.rows_affected()
                    }
                    AdminChange::Staff(StaffChange::SetGroups { login_id, groups }) => {
                        let n = sqlx::query("SELECT login_id FROM staff WHERE tenant = $1 AND login_id = $2")
                            .bind(t).bind(login_id)
                            .fetch_optional(&mut *tx).await?;
                        if n.is_none() {
                            return Err(StoreError::NotFound("staff"));
                        }
                        sqlx::query("DELETE FROM group_members WHERE tenant = $1 AND login_id = $2")
                            .bind(t).bind(login_id)
                            .execute(&mut *tx).await?;
                        for g in groups {
                            sqlx::query("INSERT INTO group_members (tenant, group_name, login_id) VALUES ($1, $2, $3)")
                                .bind(t).bind(g).bind(login_id)
                                .execute(&mut *tx).await
                                .map_err(|e| classify(e, "membership", "group"))?;
                        }
                        1
                    }
                    AdminChange::Staff(StaffChange::SetDisabled { login_id, disabled }) => {
                        let n = sqlx::query("UPDATE staff SET disabled = $3, updated_at_ms = $4 WHERE tenant = $1 AND login_id = $2")
                            .bind(t).bind(login_id).bind(*disabled).bind(now_ms)
                            .execute(&mut *tx).await?.rows_affected();
                        if *disabled {
                            sqlx::query("DELETE FROM staff_sessions WHERE tenant = $1 AND login_id = $2")
                                .bind(t).bind(login_id)
                                .execute(&mut *tx).await?;
                        }
                        n
                    }
                    AdminChange::SetPassword { login_id, password_hash, must_change_password } => {
                        let n = sqlx::query(
                            "UPDATE staff SET password_hash = $3, must_change_password = $4, \
                             failed_attempts = 0, locked_until_ms = NULL, updated_at_ms = $5 \
                             WHERE tenant = $1 AND login_id = $2",
                        )
                        .bind(t).bind(login_id).bind(&password_hash.0).bind(*must_change_password).bind(now_ms)
                        .execute(&mut *tx).await?.rows_affected();
                        sqlx::query("DELETE FROM staff_sessions WHERE tenant = $1 AND login_id = $2")
                            .bind(t).bind(login_id)
                            .execute(&mut *tx).await?;
                        n
                    }
                    AdminChange::Unlock { login_id } => {
                        sqlx::query("UPDATE staff SET failed_attempts = 0, locked_until_ms = NULL WHERE tenant = $1 AND login_id = $2")
                            .bind(t).bind(login_id)
                            .execute(&mut *tx).await?.rows_affected()
                    }
                    AdminChange::DeleteGroup { name } => {
                        let n = sqlx::query("DELETE FROM staff_groups WHERE tenant = $1 AND name = $2")
                            .bind(t).bind(name)
                            .execute(&mut *tx).await?.rows_affected();
                        if n == 0 {
                            return Err(StoreError::NotFound("group"));
                        }
                        n
                    }
                };
                if affected == 0 {
                    return Err(StoreError::NotFound("staff"));
                }
            }
            let entry = push_audit!(tx, head, record);
            store_audit_head!(tx, t, head);
            tx.commit().await?;
            Ok(entry)
        })
    }

    /// Up to `limit` entries matching `query`, newest first (by seq). Every value is a
    /// bound parameter; only the conditions in use are in the statement.
    pub async fn audit_page(
        &self,
        tenant: &TenantId,
        query: &AuditQuery,
        limit: u32,
    ) -> Result<Vec<AuditEntry>> {
        let operator = query.operator.as_deref().map(nul_free);
        let resident = query.resident.as_deref().map(nul_free);
        let prefix = query.action_prefix.as_deref().map(nul_free);
        let before = query
            .before_seq
            .map(|s| i64::try_from(s).unwrap_or(i64::MAX));
        let mut sql = String::from("SELECT seq, record, hash FROM audit_entries WHERE tenant = $1");
        let mut n = 1;
        let mut cond = |sql: &mut String, text: &str| {
            n += 1;
            let _ = write!(sql, " AND {}", text.replace('?', &format!("${n}")));
        };
        if query.from_ms.is_some() {
            cond(&mut sql, "at_ms >= ?");
        }
        if query.to_ms.is_some() {
            cond(&mut sql, "at_ms < ?");
        }
        if operator.is_some() {
            cond(
                &mut sql,
                "actor_kind IN ('staff', 'admin') AND actor_id = ?",
            );
        }
        if resident.is_some() {
            cond(&mut sql, "resident = ?");
        }
        if prefix.is_some() {
            cond(&mut sql, "substr(action, 1, length(?)) = ?");
        }
        if before.is_some() {
            cond(&mut sql, "seq < ?");
        }
        let _ = write!(sql, " ORDER BY seq DESC LIMIT ${}", n + 1);
        with_pool!(self, pool => {
            let mut q = sqlx::query(&sql).bind(tenant.as_str());
            if let Some(v) = query.from_ms {
                q = q.bind(v);
            }
            if let Some(v) = query.to_ms {
                q = q.bind(v);
            }
            if let Some(v) = &operator {
                q = q.bind(v);
            }
            if let Some(v) = &resident {
                q = q.bind(v);
            }
            if let Some(v) = &prefix {
                q = q.bind(v);
            }
            if let Some(v) = before {
                q = q.bind(v);
            }
            let rows = q.bind(i64::from(limit)).fetch_all(pool).await?;
            rows.iter()
                .map(|r| {
                    Ok(AuditEntry {
                        seq: to_u64(r.int("seq")?, "audit seq")?,
                        record: serde_json::from_str(&r.text("record")?)
                            .map_err(|_| StoreError::Corrupt("audit record"))?,
                        hash: hash_of(r.bytes("hash")?)?,
                    })
                })
                .collect()
        })
    }
}

fn hash_of(bytes: Vec<u8>) -> Result<[u8; HASH_LEN]> {
    <[u8; HASH_LEN]>::try_from(bytes).map_err(|_| StoreError::Corrupt("audit hash"))
}
