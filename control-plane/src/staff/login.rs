//! Login with lockout, session resolution, logout and password change.
//!
//! Lockout (N5): every wrong password counts (`Store::record_failed_login`, one atomic
//! statement, so failures at several counters at once are all counted); the
//! `max_failed_logins`-th locks the account for `lockout_ms`. While locked every
//! attempt is refused with `Locked` *without* checking the password — otherwise the
//! answer would tell a guesser when a guess is right — and not counted, so the lock
//! does not grow while someone keeps trying. When a lock has run out, the counter
//! starts again from zero. A success resets it.
//!
//! Enumeration: an unknown id and a wrong password give the same
//! `InvalidCredentials` after the same argon2 work (a dummy hash). `Locked` does tell
//! that an id exists, but only after `max_failed_logins` failures on it, and staff
//! need to know why they cannot log in; `Disabled` is told only to whoever gave the
//! right password.

use std::collections::BTreeSet;
use std::fmt;

use ring::digest;
use ring::rand::SecureRandom;

use super::{password, Secret, StaffError, StaffService};
use crate::model::{Ident, TenantId};
use crate::rpc::StaffSession;
use crate::store::NewSession;

/// A successful login.
#[derive(Clone)]
pub struct LoginOk {
    /// The bearer token: handed to the appliance once, never stored (only its hash).
    pub token: Secret,
    /// The session it opens.
    pub session: StaffSession,
    /// The staff member's display name (personal data: redacted in `Debug`).
    pub display_name: String,
    /// The password must be changed before anything else works.
    pub must_change_password: bool,
    /// Absolute end of the session (ms).
    pub expires_at_ms: i64,
}

impl fmt::Debug for LoginOk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoginOk")
            .field("token", &self.token)
            .field("session", &self.session)
            .field("display_name", &"<redacted>")
            .field("must_change_password", &self.must_change_password)
            .field("expires_at_ms", &self.expires_at_ms)
            .finish()
    }
}

/// A live session with what `staff.whoami` shows.
#[derive(Clone)]
pub struct ResolvedSession {
    /// The session as handlers see it.
    pub session: StaffSession,
    /// Display name (personal data: redacted in `Debug`).
    pub display_name: String,
    /// The password must be changed (the session then has no permissions).
    pub must_change_password: bool,
    /// Absolute end (ms).
    pub expires_at_ms: i64,
    /// Idle end if unused from now on (ms).
    pub idle_until_ms: i64,
}

impl fmt::Debug for ResolvedSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResolvedSession")
            .field("session", &self.session)
            .field("display_name", &"<redacted>")
            .field("must_change_password", &self.must_change_password)
            .field("expires_at_ms", &self.expires_at_ms)
            .field("idle_until_ms", &self.idle_until_ms)
            .finish()
    }
}

/// The SHA-256 of a well-formed token (64 lowercase hex digits); `None` otherwise, so
/// a malformed token costs no database query.
pub(crate) fn token_hash(token: &str) -> Option<[u8; 32]> {
    if token.len() != 64
        || !token
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    {
        return None;
    }
    let raw = hex::decode(token).ok()?;
    let d = digest::digest(&digest::SHA256, &raw);
    d.as_ref().try_into().ok()
}

impl StaffService {
    /// Logs `login_id` in from `device`; see the module doc for lockout and the
    /// errors. The password is checked on a blocking thread.
    pub async fn login(
        &self,
        tenant: &TenantId,
        device: &Ident,
        login_id: &str,
        password: &Secret,
        now_ms: i64,
    ) -> Result<LoginOk, StaffError> {
        // An id that could never exist, or a password too long to be one we set, is
        // answered like any wrong password (after the same work).
        let plausible = super::is_valid_name(login_id)
            && password.expose().len() <= self.policy.password.max_bytes;
        let staff = if plausible {
            self.store.get_staff(tenant, login_id).await?
        } else {
            None
        };
        let Some(mut staff) = staff else {
            self.verify_blocking(None, password).await?;
            return Err(StaffError::InvalidCredentials);
        };

        if let Some(until_ms) = staff.locked_until_ms {
            if now_ms < until_ms {
                return Err(StaffError::Locked { until_ms });
            }
            // The lock has run out: a fresh set of attempts.
            self.store.reset_failed_logins(tenant, login_id).await?;
            staff.failed_attempts = 0;
        }

        let ok = self
            .verify_blocking(Some(staff.password_hash.clone()), password)
            .await?;
        if !ok {
            self.register_failure(tenant, login_id, now_ms).await?;
            return Err(StaffError::InvalidCredentials);
        }
        if staff.disabled {
            return Err(StaffError::Disabled);
        }
        if staff.failed_attempts > 0 {
            self.store.reset_failed_logins(tenant, login_id).await?;
        }
        if password::needs_rehash(&staff.password_hash, self.policy.hash) {
            // Parameters were raised since this hash was made: upgrade it now that we
            // hold the password. A failure here must not stop the login.
            match self.hash_blocking(password).await {
                Ok(phc) => {
                    if let Err(e) = self
                        .store
                        .set_password_hash(
                            tenant,
                            login_id,
                            &phc,
                            staff.must_change_password,
                            now_ms,
                        )
                        .await
                    {
                        tracing::warn!(error = %e, "could not re-hash a password");
                    }
                }
                Err(e) => tracing::warn!(error = %e, "could not re-hash a password"),
            }
        }

        let mut token_bytes = [0u8; 32];
        let mut id_bytes = [0u8; 16];
        self.rng
            .fill(&mut token_bytes)
            .and_then(|()| self.rng.fill(&mut id_bytes))
            .map_err(|_| StaffError::Internal("random"))?;
        let token = Secret::new(hex::encode(token_bytes));
        let hash = token_hash(token.expose()).ok_or(StaffError::Internal("token"))?;
        let expires_at_ms = now_ms.saturating_add(self.policy.session_lifetime_ms);
        let new = NewSession {
            id: hex::encode(id_bytes),
            token_hash: hash,
            login_id: login_id.to_owned(),
            device: device.clone(),
            created_at_ms: now_ms,
            expires_at_ms,
            idle_timeout_ms: self.policy.idle_timeout_ms,
        };
        self.store.create_session(tenant, &new).await?;
        let permissions = if staff.must_change_password {
            BTreeSet::new()
        } else {
            self.store.permissions_of(tenant, login_id).await?
        };
        Ok(LoginOk {
            token,
            session: StaffSession {
                session_id: new.id,
                staff_id: staff.login_id,
                device: device.clone(),
                permissions,
            },
            display_name: staff.display_name,
            must_change_password: staff.must_change_password,
            expires_at_ms,
        })
    }

    /// Counts a failure and locks the account when it reaches the limit.
    async fn register_failure(
        &self,
        tenant: &TenantId,
        login_id: &str,
        now_ms: i64,
    ) -> Result<(), StaffError> {
        let failures = self.store.record_failed_login(tenant, login_id).await?;
        if failures >= self.policy.max_failed_logins {
            let until = now_ms.saturating_add(self.policy.lockout_ms);
            self.store
                .lock_staff_until(tenant, login_id, until, now_ms)
                .await?;
            tracing::warn!(tenant = %tenant, staff = login_id, failures, "staff account locked");
        }
        Ok(())
    }

    /// The live session named by `token` used from `device`, with its last use moved to
    /// `now_ms`; errors (database down) as `Err`. Refuses another device, another
    /// tenant, an expired, idle or ended session, and a disabled account.
    pub async fn try_resolve(
        &self,
        tenant: &TenantId,
        device: &Ident,
        token: &str,
        now_ms: i64,
    ) -> Result<Option<ResolvedSession>, StaffError> {
        let Some(hash) = token_hash(token) else {
            return Ok(None);
        };
        let Some(record) = self
            .store
            .touch_session(tenant, &hash, device, now_ms)
            .await?
        else {
            return Ok(None);
        };
        let Some(staff) = self.store.get_staff(tenant, &record.login_id).await? else {
            return Ok(None);
        };
        if staff.disabled {
            // Disabled between the two queries: end the session now.
            self.store.end_session(tenant, &record.id).await?;
            return Ok(None);
        }
        let permissions = if staff.must_change_password {
            BTreeSet::new()
        } else {
            self.store.permissions_of(tenant, &record.login_id).await?
        };
        Ok(Some(ResolvedSession {
            idle_until_ms: record
                .last_seen_ms
                .saturating_add(record.idle_timeout_ms)
                .min(record.expires_at_ms),
            expires_at_ms: record.expires_at_ms,
            session: StaffSession {
                session_id: record.id,
                staff_id: record.login_id,
                device: record.device,
                permissions,
            },
            display_name: staff.display_name,
            must_change_password: staff.must_change_password,
        }))
    }

    /// [`Self::try_resolve`] for the dispatcher: a store failure is logged and
    /// refuses the session (fail closed).
    pub async fn resolve(
        &self,
        tenant: &TenantId,
        device: &Ident,
        token: &str,
        now_ms: i64,
    ) -> Option<StaffSession> {
        match self.try_resolve(tenant, device, token, now_ms).await {
            Ok(s) => s.map(|r| r.session),
            Err(e) => {
                tracing::error!(error = %e, source = ?std::error::Error::source(&e), "session lookup failed");
                None
            }
        }
    }

    /// Ends one session; `false` if it had already ended.
    pub async fn logout(&self, tenant: &TenantId, session_id: &str) -> Result<bool, StaffError> {
        Ok(self.store.end_session(tenant, session_id).await?)
    }

    /// Ends every session of a staff member (all appliances); returns how many.
    pub async fn logout_all(&self, tenant: &TenantId, login_id: &str) -> Result<u64, StaffError> {
        Ok(self.store.end_sessions_of(tenant, login_id, None).await?)
    }

    /// Changes the password of the session's staff member. The current password is
    /// required (a wrong one counts as a failed login); the new one must meet the
    /// policy and differ from it. Clears `must_change_password`.
    ///
    /// Every *other* session of the staff member ends (the one making the change is
    /// kept): whoever learnt the old password is thrown out everywhere, while the
    /// person at the counter carries on. Returns how many sessions ended.
    pub async fn change_password(
        &self,
        tenant: &TenantId,
        session: &StaffSession,
        old: &Secret,
        new: &Secret,
        now_ms: i64,
    ) -> Result<u64, StaffError> {
        let login_id = session.staff_id.as_str();
        let staff = self
            .store
            .get_staff(tenant, login_id)
            .await?
            .ok_or(StaffError::StaffNotFound)?;
        if staff.disabled {
            return Err(StaffError::Disabled);
        }
        if let Some(until_ms) = staff.locked_until_ms.filter(|&u| now_ms < u) {
            return Err(StaffError::Locked { until_ms });
        }
        if old.expose().len() > self.policy.password.max_bytes
            || !self
                .verify_blocking(Some(staff.password_hash.clone()), old)
                .await?
        {
            self.register_failure(tenant, login_id, now_ms).await?;
            return Err(StaffError::WrongPassword);
        }
        self.policy.password.check(login_id, new.expose())?;
        if new.expose() == old.expose() {
            return Err(super::PolicyViolation::Unchanged.into());
        }
        let phc = self.hash_blocking(new).await?;
        self.store
            .set_password_hash(tenant, login_id, &phc, false, now_ms)
            .await?;
        self.store.reset_failed_logins(tenant, login_id).await?;
        Ok(self
            .store
            .end_sessions_of(tenant, login_id, Some(&session.session_id))
            .await?)
    }
}
