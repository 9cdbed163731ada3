//! Staff accounts, passwords, lockout, sessions, groups and permissions (N1, N5, N6,
//! N11; DESIGN.md, Security: "Staff: argon2id password hashes, lockout, groups with
//! permissions, sessions bound to the appliance they were opened on").
//!
//! Code map:
//! - this file — [`StaffService`] (the store plus a [`StaffPolicy`]), [`StaffError`]
//!   with the Japanese messages staff see, and the blocking-work helpers;
//! - [`password`] — argon2id hashing (parameters and cost documented there), the
//!   [`PasswordPolicy`], [`Secret`] (redacted in `Debug`);
//! - [`permissions`] — the permission catalogue with Japanese descriptions;
//! - `login` — [`StaffService::login`] (lockout, same answer for an unknown id and a
//!   wrong password), [`StaffService::resolve`] (token → [`StaffSession`]),
//!   logout, [`StaffService::change_password`];
//! - `admin` — what the CLI and the admin UI call: create, disable/enable, reset
//!   password, unlock, groups, membership;
//! - [`import`] — the TOML file for staff transfers (人事異動) and the fiscal-year
//!   switch: plan (dry run) and apply, all or nothing;
//! - [`rpc`] — the `staff.*` RPC methods and their handlers
//!   ([`StaffService::register_rpc`]), and the
//!   [`SessionResolver`](crate::service::session::SessionResolver) implementation the
//!   service uses to turn a request's token into the [`StaffSession`] handlers see.
//!
//! Not here: checking that an administrator holds
//! [`permissions::ADMIN_STAFF`], and writing audit records (N7) — the callers (the
//! service for RPCs, the CLI and admin UI for administration) know who acts and from
//! where. `Store::purge_sessions` is housekeeping for the service's scheduler.
//!
//! Sessions: a 256-bit random bearer token (hex) is handed to the appliance once; the
//! store keeps only its SHA-256 (`store::sessions`). A session is bound to its tenant,
//! staff member and appliance, ends after [`StaffPolicy::session_lifetime_ms`]
//! (absolute) or [`StaffPolicy::idle_timeout_ms`] without use (sliding), at logout, when
//! the account is disabled, and — except the session that made the change — when
//! the password changes or is reset. While an account must change its password, its
//! sessions carry no permissions: only `staff.whoami`, `staff.change-password` and
//! `staff.logout` work.
//!
//! Secrets: passwords and tokens are [`Secret`]s, absent from `Debug`, logs, errors and
//! audit details; RPC parameter errors never quote the parameters (a serde message
//! could).

pub mod admin;
pub mod cli;
pub mod import;
mod login;
pub mod password;
pub mod permissions;
pub mod rpc;

use std::fmt;
use std::sync::{Arc, OnceLock};

use ring::rand::SystemRandom;

use crate::store::{Store, StoreError};

pub use login::{LoginOk, ResolvedSession};
pub use password::{HashParams, PasswordPolicy, PolicyViolation, Secret};

pub use crate::rpc::StaffSession;

/// Minutes → milliseconds.
const MINUTE_MS: i64 = 60 * 1000;

/// The knobs of staff authentication. [`Default`] is the production setting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaffPolicy {
    /// Rules for new passwords.
    pub password: PasswordPolicy,
    /// argon2id cost for new hashes.
    pub hash: HashParams,
    /// Consecutive failed logins that lock the account (default 5).
    pub max_failed_logins: u32,
    /// How long a lock lasts (default 15 minutes).
    pub lockout_ms: i64,
    /// Absolute session lifetime (default 12 hours: a long counter day).
    pub session_lifetime_ms: i64,
    /// Sliding idle limit (default 30 minutes).
    pub idle_timeout_ms: i64,
}

impl Default for StaffPolicy {
    fn default() -> Self {
        Self {
            password: PasswordPolicy::default(),
            hash: HashParams::OWASP,
            max_failed_logins: 5,
            lockout_ms: 15 * MINUTE_MS,
            session_lifetime_ms: 12 * 60 * MINUTE_MS,
            idle_timeout_ms: 30 * MINUTE_MS,
        }
    }
}

/// What can go wrong in staff operations. The messages are shown to staff and
/// administrators, in Japanese, and carry no password, token or display name.
#[derive(Debug, thiserror::Error)]
pub enum StaffError {
    /// Unknown login id or wrong password: deliberately the same error.
    #[error("ログインIDまたはパスワードが正しくありません")]
    InvalidCredentials,
    /// Too many failed logins; refused until `until_ms`, even with the right password.
    #[error("ログインに続けて失敗したため、アカウントがロックされています。しばらく待ってから再度お試しいただくか、管理者に連絡してください")]
    Locked {
        /// When the lock ends (ms).
        until_ms: i64,
    },
    /// The account is disabled.
    #[error("このアカウントは無効になっています。管理者に連絡してください")]
    Disabled,
    /// The current password given to change it is wrong.
    #[error("現在のパスワードが正しくありません")]
    WrongPassword,
    /// The new password breaks the policy.
    #[error("{0}")]
    Policy(#[from] PolicyViolation),
    /// A login id with characters outside the allowed set.
    #[error("ログインIDは半角英数字と「.」「_」「-」で、英数字から始まる64文字以内にしてください")]
    InvalidLoginId,
    /// A display name that is empty or too long.
    #[error("氏名（表示名）は1文字以上100文字以内にしてください")]
    InvalidDisplayName,
    /// A group name with characters outside the allowed set.
    #[error("グループ名は半角英数字と「.」「_」「-」で、英数字から始まる64文字以内にしてください")]
    InvalidGroupName,
    /// A permission not in [`permissions::CATALOGUE`].
    #[error("定義されていない権限です: {0}")]
    UnknownPermission(String),
    /// No such staff member in this tenant.
    #[error("職員が見つかりません")]
    StaffNotFound,
    /// No such group in this tenant.
    #[error("グループが見つかりません")]
    GroupNotFound,
    /// The staff member or the group of a membership does not exist.
    #[error("職員またはグループが見つかりません")]
    MemberNotFound,
    /// Already exists.
    #[error("すでに登録されています（{0}）")]
    AlreadyExists(&'static str),
    /// The store failed.
    #[error("システムエラーが発生しました（データベース）")]
    Store(#[source] StoreError),
    /// Hashing or the random generator failed, or a blocking task died.
    #[error("システムエラーが発生しました（{0}）")]
    Internal(&'static str),
}

/// What [`StaffService::login`] returns on failure; only `InvalidCredentials`,
/// `Locked`, `Disabled`, `Store` and `Internal` occur.
pub type LoginError = StaffError;

impl StaffError {
    /// The stable RPC error code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::InvalidCredentials => "invalid-credentials",
            Self::Locked { .. } => "locked",
            Self::Disabled => "disabled",
            Self::WrongPassword => "wrong-password",
            Self::Policy(_) => "password-policy",
            Self::InvalidLoginId
            | Self::InvalidDisplayName
            | Self::InvalidGroupName
            | Self::UnknownPermission(_) => "invalid-params",
            Self::StaffNotFound | Self::GroupNotFound | Self::MemberNotFound => "not-found",
            Self::AlreadyExists(_) => "conflict",
            Self::Store(_) | Self::Internal(_) => "internal",
        }
    }
}

impl From<StoreError> for StaffError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound("staff") => Self::StaffNotFound,
            StoreError::NotFound("group") => Self::GroupNotFound,
            StoreError::NotFound("staff or group") => Self::MemberNotFound,
            StoreError::Conflict("staff login id") => Self::AlreadyExists("ログインID"),
            StoreError::Conflict("group") => Self::AlreadyExists("グループ"),
            other => Self::Store(other),
        }
    }
}

/// Staff authentication and administration over a [`Store`]. Cheap to clone.
#[derive(Clone)]
pub struct StaffService {
    store: Store,
    policy: StaffPolicy,
    rng: SystemRandom,
    /// A hash of a random password with the policy's parameters, verified against when
    /// the login id is unknown so that the answer takes as long as a wrong password.
    /// Made on first use, on a blocking thread.
    dummy_hash: Arc<OnceLock<String>>,
}

impl fmt::Debug for StaffService {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StaffService")
            .field("store", &self.store)
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

impl StaffService {
    /// A service over `store` with `policy`.
    pub fn new(store: Store, policy: StaffPolicy) -> Self {
        Self {
            store,
            policy,
            rng: SystemRandom::new(),
            dummy_hash: Arc::new(OnceLock::new()),
        }
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The policy.
    pub fn policy(&self) -> &StaffPolicy {
        &self.policy
    }

    /// Hashes a password on a blocking thread.
    async fn hash_blocking(&self, password: &Secret) -> Result<String, StaffError> {
        let params = self.policy.hash;
        let rng = self.rng.clone();
        let password = password.clone();
        tokio::task::spawn_blocking(move || {
            password::hash_password(params, &rng, password.expose())
        })
        .await
        .map_err(|_| StaffError::Internal("hash task"))?
        .map_err(|_| StaffError::Internal("hash"))
    }

    /// Verifies a password on a blocking thread; `phc` `None` verifies against the
    /// dummy hash (and so always fails, in about the same time).
    async fn verify_blocking(
        &self,
        phc: Option<String>,
        password: &Secret,
    ) -> Result<bool, StaffError> {
        let params = self.policy.hash;
        let rng = self.rng.clone();
        let dummy = Arc::clone(&self.dummy_hash);
        let password = password.clone();
        tokio::task::spawn_blocking(move || match phc {
            Some(phc) => Ok(password::verify_password(&phc, password.expose())),
            None => {
                let phc = match dummy.get() {
                    Some(h) => h.clone(),
                    None => {
                        let random = password::generate_password(&rng, 24)?;
                        let h = password::hash_password(params, &rng, random.expose())?;
                        dummy.get_or_init(|| h).clone()
                    }
                };
                password::verify_password(&phc, password.expose());
                Ok(false)
            }
        })
        .await
        .map_err(|_| StaffError::Internal("verify task"))?
        .map_err(|_: password::HashError| StaffError::Internal("hash"))
    }
}

/// Login ids and group names: ASCII letters, digits, `.`, `_`, `-`, starting with a
/// letter or digit, at most 64 bytes. ASCII so they can appear in topics, logs and file
/// names without escaping, and compare the same in both backends.
pub fn is_valid_name(s: &str) -> bool {
    let mut bytes = s.bytes();
    matches!(bytes.next(), Some(b) if b.is_ascii_alphanumeric())
        && s.len() <= 64
        && bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

pub(crate) fn check_login_id(s: &str) -> Result<(), StaffError> {
    if is_valid_name(s) {
        Ok(())
    } else {
        Err(StaffError::InvalidLoginId)
    }
}

pub(crate) fn check_display_name(s: &str) -> Result<(), StaffError> {
    let n = s.trim().chars().count();
    if n == 0 || n > 100 || s.chars().any(char::is_control) {
        Err(StaffError::InvalidDisplayName)
    } else {
        Ok(())
    }
}
