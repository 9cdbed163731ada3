//! The `staff.*` RPC methods as the appliance calls them.
//!
//! Mirrors of the control plane's `staff::rpc` types with the same CBOR shape (field
//! names and types), so the appliance does not depend on the control-plane crate.
//! Passwords and session tokens are [`Secret`]s: never shown by `Debug`.

use std::collections::BTreeSet;
use std::fmt;

use kakanai_protocol::catalogue::RpcMethod;
use serde::{Deserialize, Serialize};

/// A password or bearer token held in memory: never shown by `Debug`, never part of
/// an error message. Serialised as a plain string (the control plane's shape).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }

    /// The secret itself, to send it. Never log what this returns.
    pub fn expose(&self) -> &str {
        &self.0
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
    /// Password.
    pub password: Secret,
}

/// `staff.login` result.
#[derive(Clone, Serialize, Deserialize)]
pub struct LoginResponse {
    /// Bearer token for later requests; stays on the appliance.
    pub token: Secret,
    /// Session id (for logs; not a credential).
    pub session_id: String,
    /// Display name (personal data).
    pub display_name: String,
    /// Permissions (empty while the password must be changed).
    pub permissions: BTreeSet<String>,
    /// The password must be changed before anything else.
    pub must_change_password: bool,
    /// Absolute end of the session (ms since the epoch).
    pub expires_at_ms: i64,
}

impl fmt::Debug for LoginResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoginResponse")
            .field("session_id", &self.session_id)
            .field("permissions", &self.permissions)
            .field("must_change_password", &self.must_change_password)
            .field("expires_at_ms", &self.expires_at_ms)
            .finish_non_exhaustive()
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
    /// End every session of this staff member, not only this one.
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
    /// Other sessions of the staff member that ended.
    pub other_sessions_ended: u64,
    /// Permissions from the next request on.
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
            .field("session_id", &self.session_id)
            .field("permissions", &self.permissions)
            .field("must_change_password", &self.must_change_password)
            .finish_non_exhaustive()
    }
}

impl RpcMethod for Whoami {
    const NAME: &'static str = "staff.whoami";
    type Request = WhoamiRequest;
    type Response = WhoamiResponse;
}

pub use kakanai_protocol::residents::{
    CandidateView as Candidate, LookupCard, LookupCardRequest, LookupCardResponse,
};

#[cfg(test)]
mod tests {
    use super::*;
    use ciborium::Value;

    fn t(s: &str) -> Value {
        Value::Text(s.into())
    }

    #[test]
    fn a_lookup_answer_in_the_control_planes_shape_decodes() {
        let resident = Value::Map(vec![
            (t("atena"), t("000123")),
            (t("household"), t("h1")),
            (t("name"), t("見本　花子")),
            (t("kana"), t("ミホン　ハナコ")),
            (t("birth_date"), t("1985-04-01")),
            (t("sex"), t("2")),
            (t("relation"), t("世帯主")),
            (t("machiaza"), t("001")),
            (t("address"), t("架空県見本市本町１丁目２番３号")),
            (t("status"), t("在住")),
        ]);
        let answer = Value::Map(vec![
            (t("exact"), Value::Bool(true)),
            (
                t("candidates"),
                Value::Array(vec![Value::Map(vec![
                    (t("resident"), resident),
                    (t("reason"), t("氏名・生年月日・住所が一致")),
                    (t("matched"), Value::Array(vec![t("name")])),
                ])]),
            ),
        ]);
        let r: LookupCardResponse = answer.deserialized().unwrap();
        assert!(r.exact);
        assert_eq!(r.candidates[0].resident.atena, "000123");
        assert!(!format!("{:?}", r).contains("見本"));
    }
}
