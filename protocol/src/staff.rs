//! The `staff.*` RPC methods: staff log in at a counter through the appliance, which
//! relays ID and password to the control plane and keeps the session token (the
//! appliance stores no passwords). One definition for both ends, so the two CBOR
//! shapes cannot drift.
//!
//! | method | needs a session | params | result |
//! | --- | --- | --- | --- |
//! | `staff.login` | no | [`LoginRequest`] | [`LoginResponse`] |
//! | `staff.logout` | yes | [`LogoutRequest`] | [`LogoutResponse`] |
//! | `staff.change-password` | yes (even one that must change its password) | [`ChangePasswordRequest`] | [`ChangePasswordResponse`] |
//! | `staff.whoami` | yes | [`WhoamiRequest`] | [`WhoamiResponse`] |
//!
//! Passwords and tokens are [`Secret`]s and display names are personal data: `Debug`
//! shows neither.

use std::collections::BTreeSet;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::catalogue::RpcMethod;

/// A password, PIN-like secret or bearer token held in memory: never shown by
/// `Debug`, never part of an error message.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }

    /// The secret itself, for hashing or sending it. Never log what this returns.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl From<&str> for Secret {
    fn from(s: &str) -> Self {
        Self(s.to_owned())
    }
}

impl From<String> for Secret {
    fn from(s: String) -> Self {
        Self(s)
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// `staff.login`.
#[derive(Debug)]
pub struct Login;

/// `staff.login` parameters.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LoginRequest {
    /// Login id.
    pub login_id: String,
    /// Password (redacted in `Debug`).
    pub password: Secret,
}

/// `staff.login` result.
#[derive(Clone, Serialize, Deserialize)]
pub struct LoginResponse {
    /// Bearer token for later requests (`RpcRequest::in_session`).
    pub token: Secret,
    /// Session id (for logs; not a credential).
    pub session_id: String,
    /// Display name (personal data).
    pub display_name: String,
    /// Permissions (empty while the password must be changed).
    pub permissions: BTreeSet<String>,
    /// The staff UI must ask for a new password before anything else.
    pub must_change_password: bool,
    /// Absolute end of the session (ms).
    pub expires_at_ms: i64,
}

impl fmt::Debug for LoginResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoginResponse")
            .field("token", &self.token)
            .field("session_id", &self.session_id)
            .field("display_name", &"<redacted>")
            .field("permissions", &self.permissions)
            .field("must_change_password", &self.must_change_password)
            .field("expires_at_ms", &self.expires_at_ms)
            .finish()
    }
}

impl RpcMethod for Login {
    const NAME: &'static str = "staff.login";
    type Request = LoginRequest;
    type Response = LoginResponse;
}

/// `staff.logout`.
#[derive(Debug)]
pub struct Logout;

/// `staff.logout` parameters.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct LogoutRequest {
    /// End every session of this staff member (all appliances), not only this one.
    #[serde(default)]
    pub everywhere: bool,
}

/// `staff.logout` result.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LogoutResponse {
    /// How many sessions ended.
    pub ended: u64,
}

impl RpcMethod for Logout {
    const NAME: &'static str = "staff.logout";
    type Request = LogoutRequest;
    type Response = LogoutResponse;
}

/// `staff.change-password`.
#[derive(Debug)]
pub struct ChangePassword;

/// `staff.change-password` parameters.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ChangePasswordRequest {
    /// The current password.
    pub old_password: Secret,
    /// The new password.
    pub new_password: Secret,
}

/// `staff.change-password` result.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ChangePasswordResponse {
    /// Other sessions of the staff member that ended (this one is kept).
    pub other_sessions_ended: u64,
    /// Permissions now (from the next request on: the session carries them then).
    pub permissions: BTreeSet<String>,
}

impl RpcMethod for ChangePassword {
    const NAME: &'static str = "staff.change-password";
    type Request = ChangePasswordRequest;
    type Response = ChangePasswordResponse;
}

/// `staff.whoami`.
#[derive(Debug)]
pub struct Whoami;

/// `staff.whoami` parameters (none).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct WhoamiRequest {}

/// `staff.whoami` result.
#[derive(Clone, Serialize, Deserialize)]
pub struct WhoamiResponse {
    /// Login id.
    pub staff_id: String,
    /// Display name (personal data).
    pub display_name: String,
    /// Session id.
    pub session_id: String,
    /// Permissions of this session.
    pub permissions: BTreeSet<String>,
    /// The password must be changed.
    pub must_change_password: bool,
}

impl fmt::Debug for WhoamiResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WhoamiResponse")
            .field("staff_id", &self.staff_id)
            .field("display_name", &"<redacted>")
            .field("session_id", &self.session_id)
            .field("permissions", &self.permissions)
            .field("must_change_password", &self.must_change_password)
            .finish()
    }
}

impl RpcMethod for Whoami {
    const NAME: &'static str = "staff.whoami";
    type Request = WhoamiRequest;
    type Response = WhoamiResponse;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_and_names_never_show_in_debug() {
        let login = LoginRequest {
            login_id: "kanri".into(),
            password: Secret::new("hunter2-password"),
        };
        assert!(!format!("{login:?}").contains("hunter2"));
        let who = WhoamiResponse {
            staff_id: "kanri".into(),
            display_name: "見本 太郎".into(),
            session_id: "s1".into(),
            permissions: BTreeSet::new(),
            must_change_password: false,
        };
        assert!(!format!("{who:?}").contains("見本"));
    }
}
