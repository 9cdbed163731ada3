//! The appliance's configuration: one TOML file written by provisioning, naming the
//! device identity (tenant, device id, the key file), whom to trust (the control
//! plane's public keys), where the broker is, where state lives and where the local
//! HTTP server listens. Every mistake is reported with the field it is in; nothing
//! starts on a half-valid configuration.
//!
//! ```toml
//! [device]
//! tenant = "city-a"
//! id = "counter-01"
//! key_file = "/etc/kakanai/device.key"   # the 32-byte Ed25519 seed in hex, mode 0600
//!
//! [[control_plane.keys]]
//! kid = "3097e2dee2cb4a34"
//! public_key = "2152f8d1…"
//!
//! [broker]
//! host = "mqtt.example.jp"
//! port = 1883
//! keep_alive_s = 15
//!
//! [store]
//! path = "/var/lib/kakanai/appliance.redb"
//!
//! [http]
//! listen = "127.0.0.1:8080"
//!
//! [devices]                               # each line optional
//! reader = "any"                          # or a reader name
//! printer = "ipp://printer.local:631/ipp/print"   # or a directory to spool PDFs into
//! scanner = "/dev/ttyACM0"
//! ```

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use kakanai_protocol::topic::Ident;
use kakanai_protocol::{KeyId, SigningKey, VerifyingKey};
use serde::Deserialize;

use crate::devices::{DeviceConfig, PrinterTarget};
use crate::link::Identity;

/// Why the configuration cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file cannot be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid TOML or has unknown / missing fields.
    #[error("{path}: {message}")]
    Syntax {
        /// The file.
        path: PathBuf,
        /// What and where.
        message: String,
    },
    /// A field has an invalid value.
    #[error("{field}: {message}")]
    Invalid {
        /// The field, e.g. `device.tenant`.
        field: &'static str,
        /// What is wrong.
        message: String,
    },
}

fn invalid(field: &'static str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        field,
        message: message.into(),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    device: RawDevice,
    control_plane: RawControlPlane,
    broker: RawBroker,
    store: RawStore,
    #[serde(default)]
    http: RawHttp,
    #[serde(default)]
    devices: RawDevices,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDevices {
    reader: Option<String>,
    printer: Option<String>,
    scanner: Option<PathBuf>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDevice {
    tenant: String,
    id: String,
    key_file: PathBuf,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawControlPlane {
    keys: Vec<RawKey>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawKey {
    kid: String,
    public_key: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBroker {
    host: String,
    port: u16,
    #[serde(default = "default_keep_alive")]
    keep_alive_s: u64,
}

fn default_keep_alive() -> u64 {
    15
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStore {
    path: PathBuf,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHttp {
    #[serde(default = "default_listen")]
    listen: String,
}

impl Default for RawHttp {
    fn default() -> Self {
        Self {
            listen: default_listen(),
        }
    }
}

fn default_listen() -> String {
    "127.0.0.1:8080".into()
}

/// A checked configuration.
pub struct Config {
    /// Identity and trust.
    pub identity: Identity,
    /// Broker host.
    pub broker_host: String,
    /// Broker port.
    pub broker_port: u16,
    /// Keep-alive.
    pub keep_alive: Duration,
    /// The redb file.
    pub store_path: PathBuf,
    /// The local HTTP server's address.
    pub http_listen: SocketAddr,
    /// The counter's devices.
    pub devices: DeviceConfig,
}

impl Config {
    /// Reads and checks `path`.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let raw: RawConfig = toml::from_str(&text).map_err(|e| ConfigError::Syntax {
            path: path.to_owned(),
            message: e.to_string(),
        })?;
        Self::check(raw)
    }

    fn check(raw: RawConfig) -> Result<Self, ConfigError> {
        let tenant =
            Ident::new(&raw.device.tenant).map_err(|e| invalid("device.tenant", e.to_string()))?;
        let device = Ident::new(&raw.device.id).map_err(|e| invalid("device.id", e.to_string()))?;
        let key = read_key(&raw.device.key_file)?;
        let kid = KeyId::of_key(&key.verifying_key());
        if raw.control_plane.keys.is_empty() {
            return Err(invalid("control_plane.keys", "at least one key is needed"));
        }
        let mut control_plane_keys = Vec::new();
        for k in &raw.control_plane.keys {
            let public = hex::decode(k.public_key.trim())
                .ok()
                .and_then(|b| VerifyingKey::from_bytes(&b).ok())
                .ok_or_else(|| {
                    invalid("control_plane.keys.public_key", "not a 32-byte key in hex")
                })?;
            let kid = hex::decode(k.kid.trim())
                .ok()
                .and_then(|b| KeyId::new(b).ok())
                .ok_or_else(|| invalid("control_plane.keys.kid", "not a key id in hex"))?;
            if kid != KeyId::of_key(&public) {
                return Err(invalid(
                    "control_plane.keys.kid",
                    format!("{kid} is not the key id of the public key next to it"),
                ));
            }
            control_plane_keys.push((kid, public));
        }
        if raw.broker.host.trim().is_empty() {
            return Err(invalid("broker.host", "empty"));
        }
        if !(1..=3600).contains(&raw.broker.keep_alive_s) {
            return Err(invalid("broker.keep_alive_s", "must be 1 to 3600 seconds"));
        }
        let http_listen = raw
            .http
            .listen
            .parse()
            .map_err(|_| invalid("http.listen", "not an address like 127.0.0.1:8080"))?;
        let printer = match raw.devices.printer {
            None => None,
            Some(p) if p.starts_with("ipp://") || p.starts_with("ipps://") => {
                Some(PrinterTarget::Ipp(p))
            }
            Some(p) if p.starts_with('/') => Some(PrinterTarget::Spool(PathBuf::from(p))),
            Some(_) => {
                return Err(invalid(
                    "devices.printer",
                    "an ipp:// URI or an absolute directory path",
                ))
            }
        };
        let devices = DeviceConfig {
            reader: raw
                .devices
                .reader
                .map(|r| if r == "any" { None } else { Some(r) }),
            printer,
            scanner: raw.devices.scanner,
        };
        Ok(Self {
            devices,
            identity: Identity {
                tenant,
                device,
                key,
                kid,
                control_plane_keys,
            },
            broker_host: raw.broker.host,
            broker_port: raw.broker.port,
            keep_alive: Duration::from_secs(raw.broker.keep_alive_s),
            store_path: raw.store.path,
            http_listen,
        })
    }
}

fn read_key(path: &Path) -> Result<SigningKey, ConfigError> {
    kakanai_provisioning::keyfile::read_signing_key(path)
        .map_err(|e| invalid("device.key_file", e.to_string()))
}
