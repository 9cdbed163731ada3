//! Staff sessions (DESIGN.md, Security: "sessions bound to the appliance they were
//! opened on"), and the staff changes that must end sessions in the same transaction.
//!
//! The store keeps the SHA-256 of each bearer token, never the token: the token is
//! made and hashed by [`crate::staff`], which also decides the lifetimes. A session is
//! live while its row exists, `now < expires_at_ms` (absolute limit) and
//! `now < last_seen_ms + idle_timeout_ms` (sliding idle limit), and its staff account is
//! enabled. [`Store::touch_session`] checks all of that, the tenant and the device in one
//! conditional `UPDATE … RETURNING`, so two requests racing on an idle-expired session
//! cannot revive it.
//!
//! [`Store::apply_staff_changes`] applies a batch of account, group and membership
//! changes (an import for staff transfers or the fiscal-year switch) in one write
//! transaction: all of it or nothing. Disabling an account there (or with
//! [`Store::disable_staff_and_end_sessions`]) deletes its sessions in the same
//! transaction, so no request can slip through between the two.

use std::collections::BTreeSet;
use std::fmt;

use super::backend::{check_id, check_text, classify, with_pool, Backend, Cols};
use super::{Group, NewStaff, Result, Store, StoreError};
use crate::model::{Ident, TenantId};

/// How stale a session's `last_seen` may be before a use writes it again (see
/// [`Store::touch_session`]), at most: a tenth of the session's idle timeout when
/// that is less. A session may therefore idle out up to this much (and never more
/// than a tenth of its idle time) earlier than its idle timeout says, which at
/// counter timeouts of minutes is noticed by no one.
pub const SESSION_TOUCH_MS: i64 = 5_000;

/// A live session of token `$2` used from device `$3` of tenant `$1` at `$4`, its
/// account not disabled (`$5` = false).
const LIVE_SESSION: &str = "tenant = $1 AND token_hash = $2 AND device = $3 \
    AND expires_at_ms > $4 AND last_seen_ms + idle_timeout_ms > $4 \
    AND EXISTS (SELECT 1 FROM staff s WHERE s.tenant = staff_sessions.tenant \
    AND s.login_id = staff_sessions.login_id AND s.disabled = $5)";

const SESSION_COLUMNS: &str = "id, login_id, device, created_at_ms, last_seen_ms, \
     expires_at_ms, idle_timeout_ms";

/// A session to record.
#[derive(Clone)]
pub struct NewSession {
    /// Session id: random, not secret (it appears in logs and the audit log).
    pub id: String,
    /// SHA-256 of the bearer token. Secret-derived: redacted in `Debug`.
    pub token_hash: [u8; 32],
    /// The staff member.
    pub login_id: String,
    /// The appliance the session was opened on; it is valid from there only.
    pub device: Ident,
    /// Opened at (ms).
    pub created_at_ms: i64,
    /// Absolute end (ms).
    pub expires_at_ms: i64,
    /// Sliding idle limit (ms since the last use).
    pub idle_timeout_ms: i64,
}

impl fmt::Debug for NewSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NewSession")
            .field("id", &self.id)
            .field("token_hash", &"<redacted>")
            .field("login_id", &self.login_id)
            .field("device", &self.device)
            .field("created_at_ms", &self.created_at_ms)
            .field("expires_at_ms", &self.expires_at_ms)
            .field("idle_timeout_ms", &self.idle_timeout_ms)
            .finish()
    }
}

/// A stored session (without its token hash, which nothing outside the store needs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRecord {
    /// Session id.
    pub id: String,
    /// The staff member.
    pub login_id: String,
    /// The appliance it is bound to.
    pub device: Ident,
    /// Opened at (ms).
    pub created_at_ms: i64,
    /// Last used at (ms).
    pub last_seen_ms: i64,
    /// Absolute end (ms).
    pub expires_at_ms: i64,
    /// Sliding idle limit (ms).
    pub idle_timeout_ms: i64,
}

/// One change in a batch for [`Store::apply_staff_changes`].
#[derive(Debug, Clone)]
pub enum StaffChange {
    /// Create a group with its permissions.
    CreateGroup(Group),
    /// Replace an existing group's description and permissions.
    UpdateGroup(Group),
    /// Create a staff account.
    CreateStaff(NewStaff),
    /// Change a staff member's display name.
    SetDisplayName {
        /// The staff member.
        login_id: String,
        /// The new name (personal data: redacted in `Debug`).
        display_name: Redacted,
    },
    /// Replace a staff member's group memberships with exactly these groups.
    SetGroups {
        /// The staff member.
        login_id: String,
        /// Their groups afterwards.
        groups: BTreeSet<String>,
    },
    /// Disable (ending every session) or enable an account.
    SetDisabled {
        /// The staff member.
        login_id: String,
        /// Disabled afterwards?
        disabled: bool,
    },
}

/// Text that is personal data: shown as `<redacted>` in `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct Redacted(pub String);

impl fmt::Debug for Redacted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl Store {
    /// Records a new session. [`StoreError::NotFound`] if the staff member does not
    /// exist in this tenant.
    pub async fn create_session(&self, tenant: &TenantId, session: &NewSession) -> Result<()> {
        check_id("session id", &session.id)?;
        check_id("login id", &session.login_id)?;
        if session.idle_timeout_ms <= 0 {
            return Err(StoreError::Invalid("idle timeout"));
        }
        with_pool!(self, pool => {
            sqlx::query(
                "INSERT INTO staff_sessions (tenant, id, token_hash, login_id, device, \
                 created_at_ms, last_seen_ms, expires_at_ms, idle_timeout_ms) \
                 VALUES ($1, $2, $3, $4, $5, $6, $6, $7, $8)",
            )
            .bind(tenant.as_str())
            .bind(&session.id)
            .bind(&session.token_hash[..])
            .bind(&session.login_id)
            .bind(session.device.as_str())
            .bind(session.created_at_ms)
            .bind(session.expires_at_ms)
            .bind(session.idle_timeout_ms)
            .execute(pool)
            .await
            .map_err(|e| classify(e, "session", "staff"))?;
            Ok(())
        })
    }

    /// The live session with this token hash, used from `device`, with `last_seen`
    /// moved to `now_ms`; `None` if there is none in this tenant, it is bound to
    /// another device, it has expired or been idle too long, or its account is
    /// disabled.
    ///
    /// Every RPC of a staff member comes here, so the write is saved when it would
    /// change little: a session seen less than [`SESSION_TOUCH_MS`] ago (or a tenth of its idle
    /// timeout, when that is less) is only read
    /// (the same checks, in one statement), and its `last_seen` stays as it is. The
    /// refresh itself is one statement too, so its checks and the write cannot be
    /// torn apart.
    pub async fn touch_session(
        &self,
        tenant: &TenantId,
        token_hash: &[u8; 32],
        device: &Ident,
        now_ms: i64,
    ) -> Result<Option<SessionRecord>> {
        // Read first, refreshed only when stale: the same conditions either way.
        let read = format!(
            "SELECT {SESSION_COLUMNS} FROM staff_sessions WHERE {LIVE_SESSION} \
             AND last_seen_ms + CASE WHEN idle_timeout_ms / 10 < $6 \
             THEN idle_timeout_ms / 10 ELSE $6 END > $4"
        );
        // `CASE` rather than MAX/GREATEST (which differ between the backends): the clock
        // of another instance may lag, and last_seen must never go back.
        let refresh = format!(
            "UPDATE staff_sessions SET last_seen_ms = \
             CASE WHEN last_seen_ms < $4 THEN $4 ELSE last_seen_ms END \
             WHERE {LIVE_SESSION} RETURNING {SESSION_COLUMNS}"
        );
        for (sql, touch_ms) in [(read, Some(SESSION_TOUCH_MS)), (refresh, None)] {
            let row = with_pool!(self, pool => {
                let mut q = sqlx::query(&sql)
                    .bind(tenant.as_str())
                    .bind(&token_hash[..])
                    .bind(device.as_str())
                    .bind(now_ms)
                    .bind(false);
                if let Some(t) = touch_ms {
                    q = q.bind(t);
                }
                q.fetch_optional(pool).await?.map(|r| session_from_row(&r)).transpose()?
            });
            if row.is_some() {
                return Ok(row);
            }
        }
        Ok(None)
    }

    /// The session with this id, live or not (for administration and tests).
    pub async fn get_session(
        &self,
        tenant: &TenantId,
        session_id: &str,
    ) -> Result<Option<SessionRecord>> {
        with_pool!(self, pool => {
            let sql = format!(
                "SELECT {SESSION_COLUMNS} FROM staff_sessions WHERE tenant = $1 AND id = $2"
            );
            let row = sqlx::query(&sql)
                .bind(tenant.as_str())
                .bind(session_id)
                .fetch_optional(pool)
                .await?;
            row.map(|r| session_from_row(&r)).transpose()
        })
    }

    /// A staff member's sessions (live or not yet purged), oldest first.
    pub async fn sessions_of(
        &self,
        tenant: &TenantId,
        login_id: &str,
    ) -> Result<Vec<SessionRecord>> {
        with_pool!(self, pool => {
            let sql = format!(
                "SELECT {SESSION_COLUMNS} FROM staff_sessions WHERE tenant = $1 AND login_id = $2 \
                 ORDER BY created_at_ms, id"
            );
            let rows = sqlx::query(&sql)
                .bind(tenant.as_str())
                .bind(login_id)
                .fetch_all(pool)
                .await?;
            rows.iter().map(session_from_row).collect()
        })
    }

    /// Ends one session (logout); `false` if there was none.
    pub async fn end_session(&self, tenant: &TenantId, session_id: &str) -> Result<bool> {
        with_pool!(self, pool => {
            let n = sqlx::query("DELETE FROM staff_sessions WHERE tenant = $1 AND id = $2")
                .bind(tenant.as_str())
                .bind(session_id)
                .execute(pool)
                .await?
                .rows_affected();
            Ok(n > 0)
        })
    }

    /// Ends every session of a staff member except `keep` (if given); returns how many
    /// ended.
    pub async fn end_sessions_of(
        &self,
        tenant: &TenantId,
        login_id: &str,
        keep: Option<&str>,
    ) -> Result<u64> {
        with_pool!(self, pool => {
            let n = sqlx::query(
                "DELETE FROM staff_sessions WHERE tenant = $1 AND login_id = $2 \
                 AND ($3 IS NULL OR id <> $3)",
            )
            .bind(tenant.as_str())
            .bind(login_id)
            .bind(keep)
            .execute(pool)
            .await?
            .rows_affected();
            Ok(n)
        })
    }

    /// Deletes sessions that can no longer be used (expired or idle), in every
    /// tenant; returns how many. Housekeeping: [`Store::touch_session`] refuses them
    /// anyway.
    pub async fn purge_sessions(&self, now_ms: i64) -> Result<u64> {
        with_pool!(self, pool => {
            let n = sqlx::query(
                "DELETE FROM staff_sessions WHERE expires_at_ms <= $1 \
                 OR last_seen_ms + idle_timeout_ms <= $1",
            )
            .bind(now_ms)
            .execute(pool)
            .await?
            .rows_affected();
            Ok(n)
        })
    }

    /// Disables an account and ends its sessions in one transaction; returns how many
    /// sessions ended. [`StoreError::NotFound`] if there is no such account.
    pub async fn disable_staff_and_end_sessions(
        &self,
        tenant: &TenantId,
        login_id: &str,
        now_ms: i64,
    ) -> Result<u64> {
        with_pool!(self, pool => {
            let mut tx = pool.begin_write().await?;
            let updated = sqlx::query(
                "UPDATE staff SET disabled = $3, updated_at_ms = $4 \
                 WHERE tenant = $1 AND login_id = $2",
            )
            .bind(tenant.as_str())
            .bind(login_id)
            .bind(true)
            .bind(now_ms)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if updated == 0 {
                return Err(StoreError::NotFound("staff"));
            }
            let ended = sqlx::query("DELETE FROM staff_sessions WHERE tenant = $1 AND login_id = $2")
                .bind(tenant.as_str())
                .bind(login_id)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            tx.commit().await?;
            Ok(ended)
        })
    }

    /// Applies `changes` in order, in one write transaction: every change or none.
    /// The first failing change aborts the whole batch with its error (e.g.
    /// [`StoreError::Conflict`] for a group created meanwhile by someone else).
    pub async fn apply_staff_changes(
        &self,
        tenant: &TenantId,
        changes: &[StaffChange],
        now_ms: i64,
    ) -> Result<()> {
        for change in changes {
            check_change(change)?;
        }
        with_pool!(self, pool => {
            let mut tx = pool.begin_write().await?;
            let t = tenant.as_str();
            for change in changes {
                match change {
                    StaffChange::CreateGroup(g) | StaffChange::UpdateGroup(g) => {
                        let n = if matches!(change, StaffChange::CreateGroup(_)) {
                            sqlx::query(
                                "INSERT INTO staff_groups (tenant, name, description) \
                                 VALUES ($1, $2, $3)",
                            )
                            .bind(t)
                            .bind(&g.name)
                            .bind(&g.description)
                            .execute(&mut *tx)
                            .await
                            .map_err(|e| classify(e, "group", "tenant"))?
                            .rows_affected()
                        } else {
                            sqlx::query(
                                "UPDATE staff_groups SET description = $3 \
                                 WHERE tenant = $1 AND name = $2",
                            )
                            .bind(t)
                            .bind(&g.name)
                            .bind(&g.description)
                            .execute(&mut *tx)
                            .await?
                            .rows_affected()
                        };
                        if n == 0 {
                            return Err(StoreError::NotFound("group"));
                        }
                        sqlx::query(
                            "DELETE FROM group_permissions WHERE tenant = $1 AND group_name = $2",
                        )
                        .bind(t)
                        .bind(&g.name)
                        .execute(&mut *tx)
                        .await?;
                        for p in &g.permissions {
                            sqlx::query(
                                "INSERT INTO group_permissions (tenant, group_name, permission) \
                                 VALUES ($1, $2, $3)",
                            )
                            .bind(t)
                            .bind(&g.name)
                            .bind(p)
                            .execute(&mut *tx)
                            .await?;
                        }
                    }
                    StaffChange::CreateStaff(s) => {
                        sqlx::query(
                            "INSERT INTO staff (tenant, login_id, display_name, password_hash, \
                             must_change_password, created_at_ms, updated_at_ms) \
                             VALUES ($1, $2, $3, $4, $5, $6, $6)",
                        )
                        .bind(t)
                        .bind(&s.login_id)
                        .bind(&s.display_name)
                        .bind(&s.password_hash)
                        .bind(s.must_change_password)
                        .bind(now_ms)
                        .execute(&mut *tx)
                        .await
                        .map_err(|e| classify(e, "staff login id", "tenant"))?;
                    }
                    StaffChange::SetDisplayName { login_id, display_name } => {
                        let n = sqlx::query(
                            "UPDATE staff SET display_name = $3, updated_at_ms = $4 \
                             WHERE tenant = $1 AND login_id = $2",
                        )
                        .bind(t)
                        .bind(login_id)
                        .bind(&display_name.0)
                        .bind(now_ms)
                        .execute(&mut *tx)
                        .await?
                        .rows_affected();
                        if n == 0 {
                            return Err(StoreError::NotFound("staff"));
                        }
                    }
                    StaffChange::SetGroups { login_id, groups } => {
                        sqlx::query("DELETE FROM group_members WHERE tenant = $1 AND login_id = $2")
                            .bind(t)
                            .bind(login_id)
                            .execute(&mut *tx)
                            .await?;
                        for g in groups {
                            sqlx::query(
                                "INSERT INTO group_members (tenant, group_name, login_id) \
                                 VALUES ($1, $2, $3)",
                            )
                            .bind(t)
                            .bind(g)
                            .bind(login_id)
                            .execute(&mut *tx)
                            .await
                            .map_err(|e| classify(e, "membership", "staff or group"))?;
                        }
                    }
                    StaffChange::SetDisabled { login_id, disabled } => {
                        let n = sqlx::query(
                            "UPDATE staff SET disabled = $3, updated_at_ms = $4 \
                             WHERE tenant = $1 AND login_id = $2",
                        )
                        .bind(t)
                        .bind(login_id)
                        .bind(*disabled)
                        .bind(now_ms)
                        .execute(&mut *tx)
                        .await?
                        .rows_affected();
                        if n == 0 {
                            return Err(StoreError::NotFound("staff"));
                        }
                        if *disabled {
                            sqlx::query(
                                "DELETE FROM staff_sessions WHERE tenant = $1 AND login_id = $2",
                            )
                            .bind(t)
                            .bind(login_id)
                            .execute(&mut *tx)
                            .await?;
                        }
                    }
                }
            }
            tx.commit().await?;
            Ok(())
        })
    }
}

fn check_change(change: &StaffChange) -> Result<()> {
    match change {
        StaffChange::CreateGroup(g) | StaffChange::UpdateGroup(g) => {
            check_id("group name", &g.name)?;
            check_text("group description", &g.description)?;
            g.permissions
                .iter()
                .try_for_each(|p| check_id("permission", p))
        }
        StaffChange::CreateStaff(s) => {
            check_id("login id", &s.login_id)?;
            check_text("display name", &s.display_name)?;
            check_id("password hash", &s.password_hash)
        }
        StaffChange::SetDisplayName {
            login_id,
            display_name,
        } => {
            check_id("login id", login_id)?;
            check_text("display name", &display_name.0)
        }
        StaffChange::SetGroups { login_id, groups } => {
            check_id("login id", login_id)?;
            groups.iter().try_for_each(|g| check_id("group name", g))
        }
        StaffChange::SetDisabled { login_id, .. } => check_id("login id", login_id),
    }
}

fn session_from_row<R: Cols>(r: &R) -> Result<SessionRecord> {
    Ok(SessionRecord {
        id: r.text("id")?,
        login_id: r.text("login_id")?,
        device: Ident::new(&r.text("device")?)
            .map_err(|_| StoreError::Corrupt("session device"))?,
        created_at_ms: r.int("created_at_ms")?,
        last_seen_ms: r.int("last_seen_ms")?,
        expires_at_ms: r.int("expires_at_ms")?,
        idle_timeout_ms: r.int("idle_timeout_ms")?,
    })
}
