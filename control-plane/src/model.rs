//! Identifiers and records shared across the control plane.
//!
//! Every record carries its tenant (the city): no query, export or message crosses
//! from one tenant to another.

use serde::{Deserialize, Serialize};

pub use kakanai_protocol::topic::Ident;

/// A tenant (city), e.g. `city-a`. Same rules as topic identifiers.
pub type TenantId = Ident;

/// Who did something, for the audit log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "kind", content = "id")]
pub enum Actor {
    /// A staff member by login ID.
    Staff(String),
    /// A city administrator or central IT operator by login ID.
    Admin(String),
    /// A device (appliance) by device id.
    Device(String),
    /// The control plane itself (scheduled jobs, imports).
    System,
}

/// Where it was done from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "kind", content = "id")]
pub enum Place {
    /// At a counter, through its appliance.
    Appliance(String),
    /// From a browser or client at this IP address.
    Ip(String),
    /// Inside the control plane.
    Internal,
}

/// One operation to record in the audit log (N7): who, what, when, where, and which
/// resident (by 宛名番号, never by name). `detail` is structured and must not hold
/// personal data beyond the 宛名番号.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRecord {
    /// The tenant.
    pub tenant: String,
    /// When, milliseconds since the Unix epoch (UTC).
    pub at_ms: i64,
    /// Who.
    pub actor: Actor,
    /// What: a stable operation name (`login`, `login-failed`, `rpc:certificate.request`,
    /// `resident.view`, `print`, `export`, `admin:user.create` …).
    pub action: String,
    /// Which resident (宛名番号), when the operation concerns one.
    pub resident: Option<String>,
    /// Where.
    pub place: Place,
    /// The outcome: `ok`, `denied`, `error`.
    pub outcome: String,
    /// Structured detail (no personal data).
    pub detail: serde_json::Value,
}
