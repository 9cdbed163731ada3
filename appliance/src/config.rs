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
//!
//! [ui]                                    # each line optional; defaults shown
//! session_idle_s = 900                    # staff logged out after this idle time (60-28800)
//! rpc_timeout_s = 8                       # a call to the control plane gives up (1-120)
//! login_timeout_s = 10                    # the same for login and password change (1-120)
//! printer_poll_s = 15                     # how often the printer is asked its state (1-3600)
//! ```
//!
//! `appliance/ops/appliance.example.toml` (installed by the Debian package as
//! `/etc/kakanai/appliance.toml.example`) explains every field.
//!
//! A provisioned appliance names its provisioning bundle instead of `[device]`,
//! `[control_plane]` and the broker's address (see `kakanai_provisioning::bundle`):
//!
//! ```toml
//! [provisioning]
//! bundle = "/var/lib/kakanai/bundle"      # bundle.toml, ca.pem, client.pem, client.key, device.key
//! claim = "/media/usb/claim.toml"         # optional: enrol with it while the bundle is absent
//!
//! [broker]                                # optional with a bundle
//! keep_alive_s = 15
//!
//! [store]
//! path = "/var/lib/kakanai/appliance.redb"
//! ```
//!
//! The bundle is checked as it is loaded (certificate issued by the bundle's CA to
//! this device of this tenant, key matching the certificate, certificate valid now);
//! with `mqtts://` in its broker URL the link uses TLS with the client certificate.
//! [`enrol_if_needed`] is the plug-and-play start: with a claim and no bundle yet, the
//! appliance enrols (keys made on the device, CSR sent with the claim, waiting for
//! central IT's approval) and writes the bundle before the configuration is loaded.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use kakanai_protocol::topic::Ident;
use kakanai_protocol::{KeyId, SigningKey, VerifyingKey};
use serde::Deserialize;

use crate::devices::{DeviceConfig, PrinterTarget};
use crate::link::{Identity, TlsClient};
use crate::ui::UiConfig;

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
    /// The provisioning bundle is missing a part or its parts do not fit together.
    #[error(transparent)]
    Bundle(#[from] kakanai_provisioning::bundle::BundleError),
    /// Enrolment with the claim failed.
    #[error("enrolment with {claim}: {message}")]
    Enrolment {
        /// The claim file.
        claim: PathBuf,
        /// Why.
        message: String,
    },
}

/// How long a device waits for central IT to approve its enrolment.
const APPROVAL_WAIT: Duration = Duration::from_secs(30 * 86_400);
/// How often it asks meanwhile.
const APPROVAL_POLL: Duration = Duration::from_secs(10);

/// When the configuration at `path` names a bundle directory without a bundle and a
/// claim file, enrols with the claim and writes the bundle (blocking until central
/// IT approves, or the claim is refused). Returns whether it enrolled; does nothing
/// when the bundle is there or no claim is configured.
pub fn enrol_if_needed(path: &Path) -> Result<bool, ConfigError> {
    let raw = read_raw(path)?;
    let Some(RawProvisioning {
        bundle,
        claim: Some(claim_path),
    }) = raw.provisioning
    else {
        return Ok(false);
    };
    if bundle.join("bundle.toml").exists() {
        return Ok(false);
    }
    let fail = |message: String| ConfigError::Enrolment {
        claim: claim_path.clone(),
        message,
    };
    let claim = kakanai_provisioning::claim::ClaimFile::load(&claim_path).map_err(&fail)?;
    tracing::info!(tenant = %claim.tenant, "no provisioning bundle yet: enrolling with the claim");
    kakanai_provisioning::enrol::enrol(&claim, &bundle, APPROVAL_POLL, APPROVAL_WAIT)
        .map_err(|e| fail(e.to_string()))?;
    Ok(true)
}

fn read_raw(path: &Path) -> Result<RawConfig, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    toml::from_str(&text).map_err(|e| ConfigError::Syntax {
        path: path.to_owned(),
        message: e.to_string(),
    })
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
    #[serde(default)]
    provisioning: Option<RawProvisioning>,
    #[serde(default)]
    device: Option<RawDevice>,
    #[serde(default)]
    control_plane: Option<RawControlPlane>,
    #[serde(default)]
    broker: RawBroker,
    store: RawStore,
    #[serde(default)]
    http: RawHttp,
    #[serde(default)]
    devices: RawDevices,
    #[serde(default)]
    ui: RawUi,
}

/// `[ui]`: the staff UI's timings, in seconds; absent ones keep the defaults of
/// [`UiConfig`].
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUi {
    session_idle_s: Option<u64>,
    rpc_timeout_s: Option<u64>,
    login_timeout_s: Option<u64>,
    printer_poll_s: Option<u64>,
}

impl RawUi {
    /// The UI's configuration: these timings within their bounds, and which
    /// devices are configured.
    fn check(&self, devices: &DeviceConfig) -> Result<UiConfig, ConfigError> {
        let defaults = UiConfig::default();
        let seconds = |value: Option<u64>,
                       field: &'static str,
                       range: std::ops::RangeInclusive<u64>,
                       what: &str,
                       default: Duration|
         -> Result<Duration, ConfigError> {
            match value {
                None => Ok(default),
                Some(v) if range.contains(&v) => Ok(Duration::from_secs(v)),
                Some(v) => Err(invalid(
                    field,
                    format!(
                        "must be {} to {} seconds ({what}); got {v}",
                        range.start(),
                        range.end()
                    ),
                )),
            }
        };
        Ok(UiConfig {
            session_idle: seconds(
                self.session_idle_s,
                "ui.session_idle_s",
                60..=8 * 3600,
                "1 minute to 8 hours",
                defaults.session_idle,
            )?,
            rpc_timeout: seconds(
                self.rpc_timeout_s,
                "ui.rpc_timeout_s",
                1..=120,
                "up to 2 minutes",
                defaults.rpc_timeout,
            )?,
            login_timeout: seconds(
                self.login_timeout_s,
                "ui.login_timeout_s",
                1..=120,
                "up to 2 minutes",
                defaults.login_timeout,
            )?,
            printer_poll: seconds(
                self.printer_poll_s,
                "ui.printer_poll_s",
                1..=3600,
                "up to an hour",
                defaults.printer_poll,
            )?,
            reader: devices.reader.is_some(),
            scanner: devices.scanner.is_some(),
        })
    }
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
struct RawProvisioning {
    bundle: PathBuf,
    #[serde(default)]
    claim: Option<PathBuf>,
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
    host: Option<String>,
    port: Option<u16>,
    #[serde(default = "default_keep_alive")]
    keep_alive_s: u64,
}

impl Default for RawBroker {
    fn default() -> Self {
        Self {
            host: None,
            port: None,
            keep_alive_s: default_keep_alive(),
        }
    }
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
    /// The staff UI's timings (`[ui]`) and which devices it shows.
    pub ui: UiConfig,
    /// TLS to the broker (a bundle with an `mqtts://` broker); `None`: plain TCP.
    pub tls: Option<TlsClient>,
    /// From the bundle: when the device certificate expires and when to renew it
    /// (Unix seconds), and the counter's name.
    pub provisioned: Option<Provisioned>,
}

/// What a provisioning bundle adds to the configuration.
#[derive(Debug, Clone)]
pub struct Provisioned {
    /// The bundle directory.
    pub bundle: PathBuf,
    /// The counter's name.
    pub counter: String,
    /// Certificate expiry, Unix seconds.
    pub not_after: i64,
    /// When to renew (two thirds of the validity), Unix seconds.
    pub renew_at: i64,
}

fn now_s() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

struct Core {
    identity: Identity,
    host: String,
    port: u16,
    tls: Option<TlsClient>,
    provisioned: Option<Provisioned>,
}

fn from_bundle(raw: &RawConfig, dir: &Path) -> Result<Core, ConfigError> {
    if raw.device.is_some() || raw.control_plane.is_some() {
        return Err(invalid(
            "provisioning.bundle",
            "with a bundle, [device] and [control_plane] come from the bundle: remove them",
        ));
    }
    if raw.broker.host.is_some() || raw.broker.port.is_some() {
        return Err(invalid(
            "broker.host",
            "with a bundle, the broker's address comes from the bundle: remove host and port",
        ));
    }
    let bundle = kakanai_provisioning::bundle::Bundle::load(dir, now_s())?;
    let kid = KeyId::of_key(&bundle.message_key.verifying_key());
    let tls = bundle.broker.tls.then(|| TlsClient {
        ca_pem: bundle.ca_pem.clone(),
        cert_pem: bundle.cert_pem.clone(),
        key_pem: bundle.key_pem.clone(),
    });
    let provisioned = Provisioned {
        bundle: dir.to_owned(),
        counter: bundle.counter.clone(),
        not_after: bundle.not_after,
        renew_at: bundle.renew_at(),
    };
    Ok(Core {
        identity: Identity {
            tenant: bundle.tenant,
            device: bundle.device,
            key: bundle.message_key,
            kid,
            control_plane_keys: bundle.control_plane_keys,
        },
        host: bundle.broker.host,
        port: bundle.broker.port,
        tls,
        provisioned: Some(provisioned),
    })
}

impl Config {
    /// Reads and checks `path`.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        Self::check(read_raw(path)?)
    }

    fn check(raw: RawConfig) -> Result<Self, ConfigError> {
        let core = match &raw.provisioning {
            Some(p) => from_bundle(&raw, &p.bundle)?,
            None => from_fields(&raw)?,
        };
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
        let ui = raw.ui.check(&devices)?;
        Ok(Self {
            devices,
            ui,
            identity: core.identity,
            broker_host: core.host,
            broker_port: core.port,
            keep_alive: Duration::from_secs(raw.broker.keep_alive_s),
            store_path: raw.store.path,
            http_listen,
            tls: core.tls,
            provisioned: core.provisioned,
        })
    }
}

fn from_fields(raw: &RawConfig) -> Result<Core, ConfigError> {
    let missing = |field| invalid(field, "missing (or give [provisioning] bundle)");
    let raw_device = raw.device.as_ref().ok_or_else(|| missing("device"))?;
    let raw_cp = raw
        .control_plane
        .as_ref()
        .ok_or_else(|| missing("control_plane"))?;
    let tenant =
        Ident::new(&raw_device.tenant).map_err(|e| invalid("device.tenant", e.to_string()))?;
    let device = Ident::new(&raw_device.id).map_err(|e| invalid("device.id", e.to_string()))?;
    let key = read_key(&raw_device.key_file)?;
    let kid = KeyId::of_key(&key.verifying_key());
    if raw_cp.keys.is_empty() {
        return Err(invalid("control_plane.keys", "at least one key is needed"));
    }
    let mut control_plane_keys = Vec::new();
    for k in &raw_cp.keys {
        let public = hex::decode(k.public_key.trim())
            .ok()
            .and_then(|b| VerifyingKey::from_bytes(&b).ok())
            .ok_or_else(|| invalid("control_plane.keys.public_key", "not a 32-byte key in hex"))?;
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
    let host = raw
        .broker
        .host
        .clone()
        .ok_or_else(|| invalid("broker.host", "missing"))?;
    if host.trim().is_empty() {
        return Err(invalid("broker.host", "empty"));
    }
    let port = raw
        .broker
        .port
        .ok_or_else(|| invalid("broker.port", "missing"))?;
    Ok(Core {
        identity: Identity {
            tenant,
            device,
            key,
            kid,
            control_plane_keys,
        },
        host,
        port,
        tls: None,
        provisioned: None,
    })
}

fn read_key(path: &Path) -> Result<SigningKey, ConfigError> {
    kakanai_provisioning::keyfile::read_signing_key(path)
        .map_err(|e| invalid("device.key_file", e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config_with(ui: &str) -> Result<Config, ConfigError> {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("device.key");
        std::fs::write(&key, hex::encode([0x11u8; 32])).unwrap();
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
        let cp = SigningKey::from_seed(&[0x22; 32]).unwrap().verifying_key();
        let text = format!(
            "[device]\ntenant = \"city-a\"\nid = \"counter-01\"\nkey_file = \"{}\"\n\n\
             [[control_plane.keys]]\nkid = \"{}\"\npublic_key = \"{}\"\n\n\
             [broker]\nhost = \"127.0.0.1\"\nport = 1883\n\n[store]\npath = \"/tmp/x.redb\"\n\n\
             [devices]\nscanner = \"/dev/ttyACM0\"\n\n{ui}\n",
            key.display(),
            KeyId::of_key(&cp).to_hex(),
            hex::encode(cp.as_bytes()),
        );
        let path = dir.path().join("appliance.toml");
        std::fs::write(&path, text).unwrap();
        Config::load(&path)
    }

    fn field_of(e: ConfigError) -> String {
        match e {
            ConfigError::Invalid { field, .. } => field.to_owned(),
            other => other.to_string(),
        }
    }

    #[test]
    fn ui_timings_come_from_the_file_and_default_when_absent() {
        let config = config_with("").unwrap();
        let defaults = UiConfig::default();
        assert_eq!(config.ui.session_idle, defaults.session_idle);
        assert_eq!(config.ui.rpc_timeout, defaults.rpc_timeout);
        assert!(config.ui.scanner);
        assert!(!config.ui.reader);

        let config = config_with("[ui]\nsession_idle_s = 300\nrpc_timeout_s = 5\nlogin_timeout_s = 20\nprinter_poll_s = 60").unwrap();
        assert_eq!(config.ui.session_idle, Duration::from_secs(300));
        assert_eq!(config.ui.rpc_timeout, Duration::from_secs(5));
        assert_eq!(config.ui.login_timeout, Duration::from_secs(20));
        assert_eq!(config.ui.printer_poll, Duration::from_secs(60));
    }

    #[test]
    fn ui_timings_out_of_bounds_are_refused_with_the_field_and_the_bounds() {
        for (line, field, bounds) in [
            ("session_idle_s = 5", "ui.session_idle_s", "60 to 28800"),
            ("session_idle_s = 86400", "ui.session_idle_s", "60 to 28800"),
            ("rpc_timeout_s = 0", "ui.rpc_timeout_s", "1 to 120"),
            ("login_timeout_s = 600", "ui.login_timeout_s", "1 to 120"),
            ("printer_poll_s = 0", "ui.printer_poll_s", "1 to 3600"),
        ] {
            let e = config_with(&format!("[ui]\n{line}")).err().unwrap();
            let text = e.to_string();
            assert!(text.contains(bounds), "{text}");
            assert_eq!(field_of(e), field, "{line}");
        }
        let e = config_with("[ui]\nidle_s = 300").err().unwrap();
        assert!(e.to_string().contains("idle_s"), "{e}");
        let e = config_with("[ui]\nsession_idle_s = \"15m\"").err().unwrap();
        assert!(e.to_string().contains("session_idle_s"), "{e}");
    }

    #[test]
    fn the_shipped_example_configuration_is_valid() {
        let text = include_str!("../ops/appliance.example.toml");
        let raw: RawConfig = toml::from_str(text).unwrap();
        assert!(raw.provisioning.is_some());
        let ui = raw.ui.check(&DeviceConfig::default()).unwrap();
        assert_eq!(ui.session_idle, UiConfig::default().session_idle);
        assert_eq!(ui.rpc_timeout, UiConfig::default().rpc_timeout);
        assert_eq!(ui.login_timeout, UiConfig::default().login_timeout);
        assert_eq!(ui.printer_poll, UiConfig::default().printer_poll);
    }
}
