//! The service's configuration: one TOML file, plus environment overrides for what
//! differs per deployment or is secret (a database URL may hold a password).
//!
//! ```toml
//! data_dir = "/var/lib/kakanai"        # holds kakanai.db (SQLite default) and the
//!                                      # control plane's own sequence counter
//! tenants = ["city-a"]                 # the cities this instance serves
//!
//! [database]                           # optional
//! url = "postgres://kakanai@db/kakanai" # default sqlite://DATA_DIR/kakanai.db?mode=rwc
//!
//! [broker]
//! host = "127.0.0.1"                  # required unless embedded = true
//! port = 1883                         # required unless embedded = true
//! embedded = false                     # optional; true: run an in-process broker
//! listen = "127.0.0.1:1883"            # optional; where the embedded broker listens
//! keep_alive_s = 15                    # optional
//! client_id = "kakanai-cp-1"           # optional; stable per instance (persistent session)
//! shared_group = "kakanai"             # optional; `$share/GROUP/…` for several instances
//!
//! [signing]
//! key_file = "/etc/kakanai/control-plane.key"  # hex Ed25519 seed, mode 0600
//!
//! [http]
//! listen = "127.0.0.1:8090"            # optional; /health, /metrics, /admin/
//! tls_cert_file = "/etc/kakanai/https.pem" # optional; HTTPS here (service::https)
//! tls_key_file = "/etc/kakanai/https.key"  #   with its key, mode 0600
//! tls_proxy = false                    # optional; true: a proxy in front does HTTPS
//! trusted_proxies = ["10.0.0.5"]       # optional; whose X-Forwarded-For names the client
//!
//! [backup]                             # optional; automatic verified backups
//! dir = "/var/backups/kakanai"         # mode 700; NAME.age + NAME.json per backup
//! key_file = "/etc/kakanai/backup.key" # age identity (backup keygen), mode 0600
//! keep_business_days = 2               # optional
//! times = ["02:00", "20:00"]           # optional; JST
//!
//! [fleet]                              # optional; follow kakanai-provision CA dirs
//! ca_dirs = ["/srv/kakanai/ca/city-a"] # devices registered / revoked from there
//! sync_seconds = 30                    # optional
//!
//! [residents.import]                   # optional; core-system files (residents::drop)
//! drop_dir = "/srv/kakanai/drop"       # files of tenant T in DROP_DIR/T/
//! every_minutes = 10                   # and/or
//! at = ["06:30"]                       # fixed times of day, JST
//!
//! [export]                             # optional; RPA/data export on a schedule
//! dir = "/srv/kakanai/export"          # batches of tenant T in DIR/T/ (applications::schedule)
//! every_minutes = 15                   # optional
//! hours = "08:30-17:15"                # optional; JST
//! mapping = "/etc/kakanai/export.toml" # optional; default the reference mapping
//! ```
//!
//! The embedded broker (`embedded = true`, see [`super::broker`]) runs everything on
//! one machine with one command. Only an explicit `embedded = true` starts it: a
//! forgotten `host` on a server is a configuration error, not a reason to open a
//! broker nobody's appliances connect to. With it, `host`/`port` default to the
//! embedded broker's `listen` address (loopback when it listens on all addresses);
//! set them only to reach it through another name. Without it, nothing changes:
//! `host` and `port` name the external broker (Mosquitto).
//!
//! Environment overrides (applied after the file, before checking):
//! `KAKANAI_DATABASE_URL`, `KAKANAI_BROKER_HOST`, `KAKANAI_BROKER_PORT`,
//! `KAKANAI_SIGNING_KEY_FILE`, `KAKANAI_HTTP_LISTEN`, `KAKANAI_DATA_DIR`.
//!
//! Several instances: give each its own signing key (appliances trust a list of
//! control-plane keys). The appliance keeps one replay window per key id, and each
//! instance numbers its messages from its own counter in its own data directory; two
//! instances signing with one key would collide in that window.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use kakanai_protocol::{KeyId, SigningKey};
use serde::Deserialize;

use crate::model::TenantId;

/// Why the configuration cannot be used. Messages name the field; none repeats a
/// secret (the database URL is never echoed).
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
    /// Not valid TOML, or unknown / missing fields.
    #[error("{path}: {message}")]
    Syntax {
        /// The file.
        path: PathBuf,
        /// What and where.
        message: String,
    },
    /// A field (or its environment override) has an invalid value.
    #[error("{field}: {message}")]
    Invalid {
        /// The field, e.g. `broker.port` or `KAKANAI_BROKER_PORT`.
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
    data_dir: Option<PathBuf>,
    tenants: Vec<String>,
    #[serde(default)]
    database: RawDatabase,
    broker: RawBroker,
    signing: RawSigning,
    #[serde(default)]
    http: RawHttp,
    /// `[export]`: the RPA/data export on a schedule (applications::schedule).
    #[serde(default)]
    export: Option<crate::applications::schedule::RawExportSchedule>,
    /// `[residents.import]`: the drop directory, read by `residents::drop::DropConfig`.
    #[serde(default)]
    residents: Option<toml::Table>,
    /// `[backup]`: automatic verified backups (crate::backup).
    #[serde(default)]
    backup: Option<crate::backup::BackupConfig>,
    /// `[fleet]`: the CA directories the device registry follows
    /// (`service::fleet_sync`).
    #[serde(default)]
    fleet: Option<toml::Table>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDatabase {
    url: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBroker {
    host: Option<String>,
    port: Option<u16>,
    #[serde(default)]
    embedded: bool,
    listen: Option<String>,
    #[serde(default = "default_keep_alive")]
    keep_alive_s: u64,
    client_id: Option<String>,
    shared_group: Option<String>,
}

fn default_keep_alive() -> u64 {
    15
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSigning {
    key_file: PathBuf,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHttp {
    listen: Option<String>,
    // HTTPS: accepted here, read and checked by `super::https::HttpSecurity::load`.
    #[allow(dead_code)]
    tls_cert_file: Option<PathBuf>,
    #[allow(dead_code)]
    tls_key_file: Option<PathBuf>,
    #[allow(dead_code)]
    #[serde(default)]
    tls_proxy: bool,
    #[allow(dead_code)]
    #[serde(default)]
    trusted_proxies: Vec<String>,
}

/// Where the broker is and how to talk to it.
#[derive(Debug, Clone)]
pub struct BrokerConfig {
    /// Host name or address.
    pub host: String,
    /// Port.
    pub port: u16,
    /// MQTT keep-alive.
    pub keep_alive: Duration,
    /// The MQTT client id: stable across restarts (the broker keeps the persistent
    /// session under it) and unique per instance.
    pub client_id: String,
    /// Shared-subscription group (`$share/GROUP/…`), for several instances behind one
    /// broker that supports it (Mosquitto ≥ 2). `None`: plain subscriptions, which
    /// any MQTT 3.1.1 broker understands.
    pub shared_group: Option<String>,
    /// Run an in-process broker ([`super::broker`]) before connecting; `None`: the
    /// broker is external.
    pub embedded: Option<EmbeddedBrokerConfig>,
}

impl BrokerConfig {
    /// An external broker at `host`:`port`, connected to as `client_id`, with the
    /// default keep-alive and plain subscriptions (configuration in code: tests,
    /// benches, embedding).
    pub fn external(host: &str, port: u16, client_id: &str) -> Self {
        Self {
            host: host.to_owned(),
            port,
            keep_alive: Duration::from_secs(default_keep_alive()),
            client_id: client_id.to_owned(),
            shared_group: None,
            embedded: None,
        }
    }

    /// The same, in shared-subscription group `group`.
    #[must_use]
    pub fn shared(mut self, group: &str) -> Self {
        self.shared_group = Some(group.to_owned());
        self
    }
}

/// The in-process broker's settings.
#[derive(Debug, Clone)]
pub struct EmbeddedBrokerConfig {
    /// Where it listens (MQTT 3.1.1, plain TCP). Port 0 is refused: the service's
    /// own client has to know the port.
    pub listen: SocketAddr,
}

/// The embedded broker's default address: loopback only, the usual MQTT port.
pub const DEFAULT_EMBEDDED_LISTEN: &str = "127.0.0.1:1883";

/// A checked configuration.
pub struct ServiceConfig {
    /// State directory (SQLite file by default, the sequence counter).
    pub data_dir: PathBuf,
    /// `sqlite://…` or `postgres://…` (may hold a password: never log it).
    pub database_url: String,
    /// The broker.
    pub broker: BrokerConfig,
    /// The control plane's signing key.
    pub key: SigningKey,
    /// Its key id.
    pub kid: KeyId,
    /// The tenants served.
    pub tenants: Vec<TenantId>,
    /// Where `/health` and `/metrics` listen (port 0: any free port).
    pub http_listen: SocketAddr,
    /// Automatic backups, when configured.
    pub backup: Option<crate::backup::BackupConfig>,
}

impl std::fmt::Debug for ServiceConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceConfig")
            .field("data_dir", &self.data_dir)
            .field("database_url", &"<redacted>")
            .field("broker", &self.broker)
            .field("kid", &self.kid.to_hex())
            .field("tenants", &self.tenants)
            .field("http_listen", &self.http_listen)
            .finish()
    }
}

impl ServiceConfig {
    /// A configuration in code (tests, benches, embedding): state in `data_dir`, the
    /// store at `database_url`, `broker`, signing with `key`, serving `tenants`;
    /// `/health` and `/metrics` on a free loopback port, no backups.
    pub fn new(
        data_dir: PathBuf,
        database_url: String,
        broker: BrokerConfig,
        key: SigningKey,
        tenants: Vec<TenantId>,
    ) -> Self {
        Self {
            data_dir,
            database_url,
            broker,
            kid: KeyId::of_key(&key.verifying_key()),
            key,
            tenants,
            http_listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            backup: None,
        }
    }

    /// Reads `path`, applies the process environment's overrides, and checks it.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text, path, |name| std::env::var(name).ok())
    }

    /// Parses `text` (read from `path`, named in errors) with overrides from `env`.
    pub fn parse(
        text: &str,
        path: &Path,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let mut raw: RawConfig = toml::from_str(text).map_err(|e| ConfigError::Syntax {
            path: path.to_owned(),
            message: e.to_string(),
        })?;
        if let Some(v) = env("KAKANAI_DATA_DIR") {
            raw.data_dir = Some(v.into());
        }
        if let Some(v) = env("KAKANAI_DATABASE_URL") {
            raw.database.url = Some(v);
        }
        if let Some(v) = env("KAKANAI_BROKER_HOST") {
            raw.broker.host = Some(v);
        }
        if let Some(v) = env("KAKANAI_BROKER_PORT") {
            raw.broker.port = Some(
                v.trim()
                    .parse()
                    .map_err(|_| invalid("KAKANAI_BROKER_PORT", "not a port number"))?,
            );
        }
        if let Some(v) = env("KAKANAI_SIGNING_KEY_FILE") {
            raw.signing.key_file = v.into();
        }
        if let Some(v) = env("KAKANAI_HTTP_LISTEN") {
            raw.http.listen = Some(v);
        }
        Self::check(raw)
    }

    fn check(raw: RawConfig) -> Result<Self, ConfigError> {
        let data_dir = raw
            .data_dir
            .ok_or_else(|| invalid("data_dir", "missing (or set KAKANAI_DATA_DIR)"))?;
        if data_dir.as_os_str().is_empty() {
            return Err(invalid("data_dir", "empty"));
        }
        if raw.tenants.is_empty() {
            return Err(invalid("tenants", "at least one tenant is needed"));
        }
        let mut tenants = Vec::new();
        for t in &raw.tenants {
            let id = TenantId::new(t).map_err(|e| invalid("tenants", e.to_string()))?;
            if !tenants.contains(&id) {
                tenants.push(id);
            }
        }
        let database_url = match raw.database.url {
            Some(url) if url.trim().is_empty() => return Err(invalid("database.url", "empty")),
            Some(url) => {
                if !(url.starts_with("sqlite:")
                    || url.starts_with("postgres://")
                    || url.starts_with("postgresql://"))
                {
                    // The URL itself is not repeated: it may hold a password.
                    return Err(invalid(
                        "database.url",
                        "must start with sqlite:, postgres:// or postgresql://",
                    ));
                }
                url
            }
            None => format!(
                "sqlite://{}?mode=rwc",
                data_dir.join("kakanai.db").display()
            ),
        };
        let embedded = if raw.broker.embedded {
            let listen = raw
                .broker
                .listen
                .as_deref()
                .unwrap_or(DEFAULT_EMBEDDED_LISTEN)
                .parse::<SocketAddr>()
                .map_err(|_| invalid("broker.listen", "not an address like 127.0.0.1:1883"))?;
            if listen.port() == 0 {
                return Err(invalid("broker.listen", "port must be 1-65535"));
            }
            Some(EmbeddedBrokerConfig { listen })
        } else {
            if raw.broker.listen.is_some() {
                return Err(invalid("broker.listen", "only with embedded = true"));
            }
            None
        };
        let (host, port) = match (&embedded, raw.broker.host, raw.broker.port) {
            (_, Some(host), Some(port)) => (host, port),
            (Some(e), host, port) => {
                // Listening on every address: connect over loopback.
                let ip = match e.listen.ip() {
                    ip if ip.is_unspecified() && ip.is_ipv4() => "127.0.0.1".to_owned(),
                    ip if ip.is_unspecified() => "::1".to_owned(),
                    ip => ip.to_string(),
                };
                (host.unwrap_or(ip), port.unwrap_or(e.listen.port()))
            }
            (None, None, _) => {
                return Err(invalid("broker.host", "missing (or set embedded = true)"))
            }
            (None, _, None) => {
                return Err(invalid("broker.port", "missing (or set embedded = true)"))
            }
        };
        if host.trim().is_empty() {
            return Err(invalid("broker.host", "empty"));
        }
        if port == 0 {
            return Err(invalid("broker.port", "must be 1-65535"));
        }
        if !(1..=3600).contains(&raw.broker.keep_alive_s) {
            return Err(invalid("broker.keep_alive_s", "must be 1 to 3600 seconds"));
        }
        if let Some(g) = &raw.broker.shared_group {
            let ok = !g.is_empty()
                && g.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_'));
            if !ok {
                return Err(invalid(
                    "broker.shared_group",
                    "1 or more of [A-Za-z0-9_-] (no MQTT wildcards or separators)",
                ));
            }
        }
        if let Some(t) = &raw.fleet {
            super::fleet_sync::FleetSyncConfig::from_table(t).map_err(|message| {
                ConfigError::Invalid {
                    field: "fleet",
                    message,
                }
            })?;
        }
        if let Some(t) = &raw.residents {
            crate::residents::drop::DropConfig::from_table(t).map_err(|message| {
                ConfigError::Invalid {
                    field: "residents",
                    message,
                }
            })?;
        }
        // Checked here so a broken [export] stops the start; the schedule itself is
        // read by applications::schedule::ExportSchedule::load.
        if let Some(e) = raw.export {
            e.check()
                .map_err(|(field, message)| invalid(field, message))?;
        }
        let key = read_key(&raw.signing.key_file)?;
        let kid = KeyId::of_key(&key.verifying_key());
        let client_id = match raw.broker.client_id {
            Some(id) if id.is_empty() || id.len() > 64 => {
                return Err(invalid("broker.client_id", "1 to 64 characters"))
            }
            Some(id) => id,
            None => format!("kakanai-cp-{}", kid.to_hex()),
        };
        let listen = raw.http.listen.unwrap_or_else(|| "127.0.0.1:8090".into());
        let http_listen = listen
            .parse()
            .map_err(|_| invalid("http.listen", "not an address like 127.0.0.1:8090"))?;
        Ok(Self {
            data_dir,
            database_url,
            broker: BrokerConfig {
                host,
                port,
                keep_alive: Duration::from_secs(raw.broker.keep_alive_s),
                client_id,
                shared_group: raw.broker.shared_group,
                embedded,
            },
            key,
            kid,
            tenants,
            http_listen,
            backup: raw.backup,
        })
    }
}

/// Reads the signing key with the appliance's rules: a hex Ed25519 seed in a file
/// nobody else may read.
fn read_key(path: &Path) -> Result<SigningKey, ConfigError> {
    kakanai_provisioning::keyfile::read_signing_key(path)
        .map_err(|e| invalid("signing.key_file", e.to_string()))
}
