//! The provisioning bundle: everything an appliance needs to be itself, in one
//! directory (written by enrolment on the device, or by `kakanai-provision bundle
//! write` onto an SD card / USB stick).
//!
//! ```text
//! DIR/bundle.toml   tenant, device, counter, broker URL, control-plane public keys
//! DIR/ca.pem        the tenant CA (trust anchor for the broker)
//! DIR/client.pem    the device's certificate (CN = device, OU = tenant)
//! DIR/client.key    its TLS private key (P-256, PKCS#8), mode 600
//! DIR/device.key    its Ed25519 message key seed in hex, mode 600
//! ```
//!
//! `bundle.toml` is written last, so a directory without it is an unfinished
//! enrolment, never a half-valid bundle. [`Bundle::load`] checks that the parts fit
//! together and says which one does not.

use std::path::{Path, PathBuf};

use kakanai_protocol::topic::Ident;
use kakanai_protocol::{KeyId, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};

use crate::files::{read_private_text, read_text, write_atomic};
use crate::pki;

/// A control-plane message public key, as configured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ControlPlaneKey {
    /// Key id, hex.
    pub kid: String,
    /// Ed25519 public key, hex.
    pub public_key: String,
}

impl ControlPlaneKey {
    /// The checked key and its id.
    pub fn parse(&self) -> Result<(KeyId, VerifyingKey), String> {
        let public = hex::decode(self.public_key.trim())
            .ok()
            .and_then(|b| VerifyingKey::from_bytes(&b).ok())
            .ok_or("public_key: not a 32-byte Ed25519 key in hex")?;
        let kid = hex::decode(self.kid.trim())
            .ok()
            .and_then(|b| KeyId::new(b).ok())
            .ok_or("kid: not a key id in hex")?;
        if kid != KeyId::of_key(&public) {
            return Err(format!("kid {kid} is not the key id of its public key"));
        }
        Ok((kid, public))
    }

    /// Whether it is well-formed.
    pub fn check(&self) -> Result<(), String> {
        self.parse().map(|_| ())
    }
}

/// Where the broker is: `mqtts://host:port` (TLS with the client certificate) or
/// `mqtt://host:port` (plain, for a broker on the same machine only).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerUrl {
    /// TLS or not.
    pub tls: bool,
    /// Host name or address.
    pub host: String,
    /// Port.
    pub port: u16,
}

impl BrokerUrl {
    /// Parses `mqtts://host:port` or `mqtt://host:port`.
    pub fn parse(url: &str) -> Result<Self, String> {
        let (tls, rest) = if let Some(r) = url.strip_prefix("mqtts://") {
            (true, r)
        } else if let Some(r) = url.strip_prefix("mqtt://") {
            (false, r)
        } else {
            return Err(format!("{url:?}: expected mqtts://host:port"));
        };
        let rest = rest.trim_end_matches('/');
        let (host, port) = rest
            .rsplit_once(':')
            .ok_or_else(|| format!("{url:?}: the port is missing"))?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let port: u16 = port
            .parse()
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| format!("{url:?}: bad port"))?;
        if host.is_empty() || host.contains('/') {
            return Err(format!("{url:?}: bad host"));
        }
        Ok(Self {
            tls,
            host: host.to_owned(),
            port,
        })
    }
}

/// What the CA hands a device (all public).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BundleData {
    /// The tenant.
    pub tenant: String,
    /// The device id.
    pub device: String,
    /// The counter's name.
    pub counter: String,
    /// `mqtts://host:port`.
    pub broker_url: String,
    /// The CA certificate.
    pub ca_pem: String,
    /// The device's certificate.
    pub cert_pem: String,
    /// The control plane's message public keys.
    pub control_plane_keys: Vec<ControlPlaneKey>,
    /// Where the device renews its certificate, `https://host:port`.
    #[serde(default)]
    pub enrolment_url: Option<String>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct BundleToml {
    tenant: String,
    device: String,
    #[serde(default)]
    counter: String,
    broker_url: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    enrolment_url: Option<String>,
    control_plane_keys: Vec<ControlPlaneKey>,
}

/// The device's own secrets, generated on the device.
pub struct DeviceKeys {
    /// TLS private key, PKCS#8 PEM.
    pub tls_key_pem: String,
    /// Ed25519 message key.
    pub message_key: SigningKey,
}

impl DeviceKeys {
    /// Fresh keys.
    pub fn generate() -> Result<Self, String> {
        Ok(Self {
            tls_key_pem: pki::new_tls_key()
                .map_err(|e| e.to_string())?
                .serialize_pem(),
            message_key: SigningKey::generate().map_err(|e| e.to_string())?,
        })
    }

    /// Writes them into `dir` (mode 600), before anything is sent anywhere.
    pub fn write(&self, dir: &Path) -> std::io::Result<()> {
        std::fs::create_dir_all(dir)?;
        write_atomic(&dir.join("client.key"), self.tls_key_pem.as_bytes(), true)?;
        let seed = format!("{}\n", hex::encode(self.message_key.seed()));
        write_atomic(&dir.join("device.key"), seed.as_bytes(), true)
    }

    /// Reads the keys in `dir`, if both are there.
    pub fn read(dir: &Path) -> Result<Option<Self>, String> {
        let (tls, msg) = (dir.join("client.key"), dir.join("device.key"));
        if !tls.exists() || !msg.exists() {
            return Ok(None);
        }
        Ok(Some(Self {
            tls_key_pem: read_private_text(&tls)?,
            message_key: crate::keyfile::read_signing_key(&msg).map_err(|e| e.to_string())?,
        }))
    }

    /// A CSR for the TLS key.
    pub fn csr_pem(&self) -> Result<String, String> {
        let key = rcgen::KeyPair::from_pem(&self.tls_key_pem).map_err(|e| e.to_string())?;
        pki::csr_pem(&key).map_err(|e| e.to_string())
    }
}

/// Writes the public parts of a bundle into `dir`, where the device's keys already
/// are; `bundle.toml` last.
pub fn write_bundle(dir: &Path, data: &BundleData) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    write_atomic(&dir.join("ca.pem"), data.ca_pem.as_bytes(), false)?;
    write_atomic(&dir.join("client.pem"), data.cert_pem.as_bytes(), false)?;
    let toml = toml::to_string(&BundleToml {
        tenant: data.tenant.clone(),
        device: data.device.clone(),
        counter: data.counter.clone(),
        broker_url: data.broker_url.clone(),
        enrolment_url: data.enrolment_url.clone(),
        control_plane_keys: data.control_plane_keys.clone(),
    })
    .map_err(std::io::Error::other)?;
    write_atomic(&dir.join("bundle.toml"), toml.as_bytes(), false)
}

/// Why a bundle cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("provisioning bundle {dir}: {problem}")]
pub struct BundleError {
    /// The bundle directory.
    pub dir: PathBuf,
    /// What is wrong, naming the part.
    pub problem: String,
}

/// A checked bundle.
pub struct Bundle {
    /// The tenant.
    pub tenant: Ident,
    /// The device id.
    pub device: Ident,
    /// The counter's name.
    pub counter: String,
    /// The broker.
    pub broker: BrokerUrl,
    /// The CA certificate, PEM.
    pub ca_pem: String,
    /// The device certificate, PEM.
    pub cert_pem: String,
    /// The TLS private key, PEM (secret).
    pub key_pem: String,
    /// The Ed25519 message key.
    pub message_key: SigningKey,
    /// The control plane's message keys.
    pub control_plane_keys: Vec<(KeyId, VerifyingKey)>,
    /// Certificate validity start, Unix seconds.
    pub not_before: i64,
    /// Certificate validity end, Unix seconds.
    pub not_after: i64,
    /// Where to renew the certificate.
    pub enrolment_url: Option<String>,
}

/// A renewed key and certificate waiting beside the current ones: `client.next.key`
/// and `client.next.pem`, both written (and flushed) before either replaces its
/// current file, key first. Finishing is idempotent, so a renewal interrupted at any
/// point is completed by the next load instead of leaving a key without its
/// certificate.
pub fn finish_renewal(dir: &Path) -> std::io::Result<()> {
    let (next_key, next_pem) = (dir.join("client.next.key"), dir.join("client.next.pem"));
    if next_key.exists() && !next_pem.exists() {
        // Written first, its certificate never came: an unfinished renewal.
        return std::fs::remove_file(next_key);
    }
    if next_key.exists() {
        std::fs::rename(&next_key, dir.join("client.key"))?;
    }
    if next_pem.exists() {
        std::fs::rename(&next_pem, dir.join("client.pem"))?;
    }
    Ok(())
}

/// Installs a renewed TLS key and certificate into the bundle in `dir`.
pub fn install_renewal(dir: &Path, key_pem: &str, cert_pem: &str) -> std::io::Result<()> {
    write_atomic(&dir.join("client.next.key"), key_pem.as_bytes(), true)?;
    write_atomic(&dir.join("client.next.pem"), cert_pem.as_bytes(), false)?;
    finish_renewal(dir)
}

/// The bytes a device signs with its message key to ask for a new certificate.
pub fn renewal_message(tenant: &str, device: &str, time: i64, csr_pem: &str) -> Vec<u8> {
    format!("kakanai-renew\0{tenant}\0{device}\0{time}\0{csr_pem}").into_bytes()
}

impl Bundle {
    /// Reads the bundle in `dir` and checks it at time `now` (Unix seconds): every
    /// part present, the certificate issued by the bundle's CA to this device of this
    /// tenant, the key belonging to the certificate, the certificate valid now.
    pub fn load(dir: &Path, now: i64) -> Result<Self, BundleError> {
        let fail = |problem: String| BundleError {
            dir: dir.to_owned(),
            problem,
        };
        let manifest = dir.join("bundle.toml");
        finish_renewal(dir).map_err(|e| fail(format!("finishing a certificate renewal: {e}")))?;
        if !manifest.exists() {
            return Err(fail(
                "bundle.toml is missing (no bundle here, or enrolment did not finish)".into(),
            ));
        }
        let raw: BundleToml = toml::from_str(&read_text(&manifest).map_err(&fail)?)
            .map_err(|e| fail(format!("bundle.toml: {e}")))?;
        let tenant = Ident::new(&raw.tenant).map_err(|e| fail(format!("tenant: {e}")))?;
        let device = Ident::new(&raw.device).map_err(|e| fail(format!("device: {e}")))?;
        let broker =
            BrokerUrl::parse(&raw.broker_url).map_err(|e| fail(format!("broker_url: {e}")))?;
        if raw.control_plane_keys.is_empty() {
            return Err(fail(
                "control_plane_keys: at least one key is needed".into(),
            ));
        }
        let mut control_plane_keys = Vec::new();
        for k in &raw.control_plane_keys {
            control_plane_keys.push(
                k.parse()
                    .map_err(|e| fail(format!("control_plane_keys: {e}")))?,
            );
        }
        let ca_pem = read_text(&dir.join("ca.pem")).map_err(&fail)?;
        let cert_pem = read_text(&dir.join("client.pem")).map_err(&fail)?;
        let key_pem = read_private_text(&dir.join("client.key")).map_err(&fail)?;
        let message_key = crate::keyfile::read_signing_key(&dir.join("device.key"))
            .map_err(|e| fail(e.to_string()))?;
        let ca = pki::inspect(&ca_pem, "ca.pem").map_err(|e| fail(e.to_string()))?;
        let cert = pki::inspect(&cert_pem, "client.pem").map_err(|e| fail(e.to_string()))?;
        pki::verify_issued_by(&cert_pem, &ca_pem)
            .map_err(|_| fail("client.pem was not issued by the CA in ca.pem".into()))?;
        if ca.organizational_unit.as_deref() != Some(tenant.as_str()) {
            return Err(fail(format!(
                "ca.pem is the CA of tenant {}, not of {tenant}",
                ca.organizational_unit.as_deref().unwrap_or("(none)")
            )));
        }
        if cert.common_name.as_deref() != Some(device.as_str()) {
            return Err(fail(format!(
                "client.pem is for device {}, but bundle.toml says {device}",
                cert.common_name.as_deref().unwrap_or("(no CN)")
            )));
        }
        if cert.organizational_unit.as_deref() != Some(tenant.as_str()) {
            return Err(fail(format!(
                "client.pem is for tenant {}, but bundle.toml says {tenant}",
                cert.organizational_unit.as_deref().unwrap_or("(no OU)")
            )));
        }
        let key_public =
            pki::key_public_der(&key_pem).map_err(|e| fail(format!("client.key: {e}")))?;
        if key_public != cert.public_key_der {
            return Err(fail("client.key does not belong to client.pem".into()));
        }
        if now >= cert.not_after {
            return Err(fail(format!(
                "client.pem expired at {} (Unix time); renew or re-enrol the device",
                cert.not_after
            )));
        }
        if now < cert.not_before {
            return Err(fail(format!(
                "client.pem is not valid before {} (Unix time): is the clock right?",
                cert.not_before
            )));
        }
        Ok(Self {
            tenant,
            device,
            counter: raw.counter,
            broker,
            ca_pem,
            cert_pem,
            key_pem,
            message_key,
            control_plane_keys,
            not_before: cert.not_before,
            not_after: cert.not_after,
            enrolment_url: raw.enrolment_url,
        })
    }

    /// When the device should renew: at two thirds of its certificate's validity.
    pub fn renew_at(&self) -> i64 {
        self.not_before + (self.not_after - self.not_before) * 2 / 3
    }
}
