//! The records the store reads and writes.
//!
//! Times are milliseconds since the Unix epoch (UTC), passed in by the caller (like
//! `kakanai-protocol`, the store reads no clock, so tests and imports control time).

use std::collections::BTreeSet;
use std::fmt;

use kakanai_protocol::keys::{KeyId, VerifyingKey};

pub use crate::audit::{AuditEntry, Checkpoint};

use crate::audit::chain::{GENESIS, HASH_LEN};
use crate::model::{Actor, Ident, TenantId};

/// A tenant (city).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tenant {
    /// Its id, e.g. `city-a`.
    pub id: TenantId,
    /// Its name for people, e.g. `A市`.
    pub name: String,
}

/// Where a device is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeviceStatus {
    /// Registered (enrolment approved) but not yet seen online.
    Enrolled,
    /// Has been online at least once.
    Active,
    /// Revoked: none of its keys is accepted any more. Final.
    Revoked,
}

impl DeviceStatus {
    /// Its name in the database and in the admin UI.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Enrolled => "enrolled",
            Self::Active => "active",
            Self::Revoked => "revoked",
        }
    }

    pub(crate) fn parse(s: &str) -> Option<Self> {
        match s {
            "enrolled" => Some(Self::Enrolled),
            "active" => Some(Self::Active),
            "revoked" => Some(Self::Revoked),
            _ => None,
        }
    }
}

/// Whether a device key is accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyStatus {
    /// Messages signed with it are accepted (while the device is not revoked).
    Active,
    /// Refused. Final.
    Revoked,
}

impl KeyStatus {
    pub(crate) fn parse(s: &str) -> Option<Self> {
        match s {
            "active" => Some(Self::Active),
            "revoked" => Some(Self::Revoked),
            _ => None,
        }
    }
}

/// One Ed25519 public key of a device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceKey {
    /// The `kid` the device puts in its COSE headers; unique within the tenant.
    pub kid: KeyId,
    /// The public key.
    pub public_key: VerifyingKey,
    /// Active or revoked.
    pub status: KeyStatus,
    /// When it was added.
    pub added_at_ms: i64,
}

/// A device to register (after central IT approved its enrolment).
#[derive(Debug, Clone)]
pub struct NewDevice {
    /// Device id (topic identifier), unique within the tenant.
    pub id: Ident,
    /// The counter it serves, e.g. `市民課 3番窓口`.
    pub counter_name: String,
    /// Where it stands, e.g. `本庁舎1階`.
    pub location: String,
    /// Its first key's id.
    pub kid: KeyId,
    /// Its first public key.
    pub public_key: VerifyingKey,
    /// Firmware version, when known at enrolment.
    pub firmware: Option<String>,
}

/// A device in the fleet registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Device {
    /// Its tenant.
    pub tenant: TenantId,
    /// Its id.
    pub id: Ident,
    /// The counter it serves.
    pub counter_name: String,
    /// Where it stands.
    pub location: String,
    /// Enrolled, active or revoked.
    pub status: DeviceStatus,
    /// Last reported firmware version.
    pub firmware: Option<String>,
    /// When it was last heard from.
    pub last_seen_ms: Option<i64>,
    /// Last reported boot counter.
    pub boot_counter: u64,
    /// Whether its last presence said online.
    pub online: bool,
    /// When it was registered.
    pub enrolled_at_ms: i64,
    /// Its keys, oldest first.
    pub keys: Vec<DeviceKey>,
}

/// A presence report to apply to a device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PresenceUpdate {
    /// Online or offline.
    pub online: bool,
    /// The device's boot counter.
    pub boot_counter: u64,
    /// When the report was received.
    pub seen_at_ms: i64,
    /// Firmware version, if the report carried one (kept otherwise).
    pub firmware: Option<String>,
}

/// A staff account to create.
#[derive(Clone)]
pub struct NewStaff {
    /// Login id, unique within the tenant.
    pub login_id: String,
    /// Name shown in the UI (personal data).
    pub display_name: String,
    /// argon2id PHC string, made by the caller.
    pub password_hash: String,
    /// Force a password change at next login (e.g. an initial password).
    pub must_change_password: bool,
}

impl fmt::Debug for NewStaff {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NewStaff")
            .field("login_id", &self.login_id)
            .field("display_name", &"<redacted>")
            .field("password_hash", &"<redacted>")
            .field("must_change_password", &self.must_change_password)
            .finish()
    }
}

/// A staff account.
#[derive(Clone, PartialEq, Eq)]
pub struct Staff {
    /// Its tenant.
    pub tenant: TenantId,
    /// Login id.
    pub login_id: String,
    /// Name shown in the UI (personal data).
    pub display_name: String,
    /// argon2id PHC string.
    pub password_hash: String,
    /// Consecutive failed logins since the last success or reset.
    pub failed_attempts: u32,
    /// Locked out until then, if set.
    pub locked_until_ms: Option<i64>,
    /// Disabled accounts cannot log in.
    pub disabled: bool,
    /// Must change the password at next login.
    pub must_change_password: bool,
    /// Created at.
    pub created_at_ms: i64,
    /// Last changed at.
    pub updated_at_ms: i64,
}

impl fmt::Debug for Staff {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Staff")
            .field("tenant", &self.tenant)
            .field("login_id", &self.login_id)
            .field("display_name", &"<redacted>")
            .field("password_hash", &"<redacted>")
            .field("failed_attempts", &self.failed_attempts)
            .field("locked_until_ms", &self.locked_until_ms)
            .field("disabled", &self.disabled)
            .field("must_change_password", &self.must_change_password)
            .field("created_at_ms", &self.created_at_ms)
            .field("updated_at_ms", &self.updated_at_ms)
            .finish()
    }
}

/// Changes to a staff account's profile; `None` keeps the stored value.
#[derive(Clone, Default)]
pub struct StaffUpdate {
    /// New display name.
    pub display_name: Option<String>,
    /// New must-change-password flag.
    pub must_change_password: Option<bool>,
}

impl fmt::Debug for StaffUpdate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StaffUpdate")
            .field(
                "display_name",
                &self.display_name.as_ref().map(|_| "<redacted>"),
            )
            .field("must_change_password", &self.must_change_password)
            .finish()
    }
}

/// A group of staff and what its members may do (N6).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    /// Name, unique within the tenant.
    pub name: String,
    /// What it is for.
    pub description: String,
    /// Permission strings, e.g. `certificate.issue`, `resident.view:kokuho`.
    pub permissions: BTreeSet<String>,
}

/// The last entry of a tenant's chain: `seq` 0 and [`GENESIS`] while it is empty.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuditHead {
    /// Sequence number of the last entry (0: none yet).
    pub seq: u64,
    /// Its hash.
    pub hash: [u8; HASH_LEN],
}

impl Default for AuditHead {
    fn default() -> Self {
        Self {
            seq: 0,
            hash: GENESIS,
        }
    }
}

/// What to look for in the audit log; every field set must match.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditFilter {
    /// At or after (ms, inclusive).
    pub from_ms: Option<i64>,
    /// Before (ms, exclusive).
    pub to_ms: Option<i64>,
    /// Done by.
    pub actor: Option<Actor>,
    /// Concerning this resident (宛名番号).
    pub resident: Option<String>,
    /// Action starting with this (case-sensitive, literal: `%` and `_` are not
    /// wildcards).
    pub action_prefix: Option<String>,
}
