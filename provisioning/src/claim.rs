//! One-time enrolment claims as the device sees them: `claim.toml` on a USB stick or
//! SD card (token, tenant, enrolment endpoint, the CA certificate's fingerprint),
//! and the same as a QR code for a phone or a printed sheet.
//!
//! ```toml
//! tenant = "city-a"
//! token = "3f9a0c1e.9b…"              # id.secret — secret; stored only hashed by the CA
//! endpoint = "https://enrol.city-a.example:8443"
//! ca_fingerprint = "sha256:5c1f…"     # pins the enrolment service's CA
//! counter = "市民課 1番窓口"            # informational
//! ```

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::fleet::FleetError;

/// The claim a device is given.
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClaimFile {
    /// The tenant.
    pub tenant: String,
    /// The one-time token (secret).
    pub token: String,
    /// The enrolment service, `https://host:port`.
    pub endpoint: String,
    /// `sha256:` and the hex SHA-256 of the CA certificate (DER).
    pub ca_fingerprint: String,
    /// The counter's name.
    #[serde(default)]
    pub counter: String,
}

impl std::fmt::Debug for ClaimFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClaimFile")
            .field("tenant", &self.tenant)
            .field("token", &"<secret>")
            .field("endpoint", &self.endpoint)
            .field("ca_fingerprint", &self.ca_fingerprint)
            .finish()
    }
}

impl ClaimFile {
    /// Reads and checks a `claim.toml`.
    pub fn load(path: &Path) -> Result<Self, String> {
        let text = crate::files::read_text(path)?;
        let claim: Self = toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        claim
            .check()
            .map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(claim)
    }

    /// Checks the fields' shapes.
    pub fn check(&self) -> Result<(), String> {
        kakanai_protocol::topic::Ident::new(&self.tenant).map_err(|e| format!("tenant: {e}"))?;
        if !self.endpoint.starts_with("https://") {
            return Err("endpoint: must be https://host:port".into());
        }
        if self.token.split_once('.').is_none() {
            return Err("token: not a claim token".into());
        }
        self.fingerprint()?;
        Ok(())
    }

    /// The pinned CA fingerprint, lower-case hex.
    pub fn fingerprint(&self) -> Result<String, String> {
        let hex_part = self
            .ca_fingerprint
            .strip_prefix("sha256:")
            .ok_or("ca_fingerprint: must start with sha256:")?
            .to_ascii_lowercase()
            .replace(':', "");
        if hex_part.len() != 64 || hex::decode(&hex_part).is_err() {
            return Err("ca_fingerprint: not a SHA-256 in hex".into());
        }
        Ok(hex_part)
    }

    /// As TOML.
    pub fn to_toml(&self) -> String {
        toml::to_string(self).unwrap_or_default()
    }

    /// Writes it, mode 600 (the token is a secret).
    pub fn write(&self, path: &Path) -> std::io::Result<()> {
        crate::files::write_atomic(path, self.to_toml().as_bytes(), true)
    }

    /// The claim as a QR code in SVG (its content is the TOML).
    pub fn qr_svg(&self) -> Result<String, String> {
        let code = qrcode::QrCode::new(self.to_toml().as_bytes()).map_err(|e| e.to_string())?;
        Ok(code
            .render::<qrcode::render::svg::Color<'_>>()
            .min_dimensions(320, 320)
            .build())
    }

    /// The claim as a QR code drawn with block characters, for a terminal.
    pub fn qr_text(&self) -> Result<String, String> {
        let code = qrcode::QrCode::new(self.to_toml().as_bytes()).map_err(|e| e.to_string())?;
        Ok(code
            .render::<qrcode::render::unicode::Dense1x2>()
            .quiet_zone(true)
            .build())
    }
}

/// `bytes` random bytes in hex.
pub fn random_hex(bytes: usize) -> Result<String, FleetError> {
    let mut buf = vec![0u8; bytes];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut buf)
        .map_err(|_| FleetError::Invalid("no randomness available".into()))?;
    Ok(hex::encode(buf))
}

/// Parses a duration like `72h`, `30m`, `7d` or `90s` into seconds.
pub fn parse_duration(text: &str) -> Result<i64, String> {
    let text = text.trim();
    let (number, unit) = text.split_at(
        text.find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len()),
    );
    let n: i64 = number
        .parse()
        .map_err(|_| format!("{text:?}: expected a number and a unit, e.g. 72h"))?;
    let scale = match unit {
        "s" => 1,
        "m" => 60,
        "h" | "" => 3600,
        "d" => 86_400,
        _ => return Err(format!("{text:?}: the unit is s, m, h or d")),
    };
    n.checked_mul(scale)
        .filter(|s| *s > 0)
        .ok_or_else(|| format!("{text:?}: out of range"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("72h"), Ok(72 * 3600));
        assert_eq!(parse_duration("7d"), Ok(7 * 86_400));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("0h").is_err());
    }
}
