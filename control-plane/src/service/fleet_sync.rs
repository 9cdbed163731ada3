//! Keeps the device registry in step with the tenants' CA directories (issue 10):
//! a device central IT enrolled with `kakanai-provision` is registered here with its
//! Ed25519 message key, and a revoked one is revoked here — so its messages are
//! refused by the control plane within one sync period (default 30 s), as the broker
//! refuses its connection.
//!
//! ```toml
//! [fleet]
//! ca_dirs = ["/srv/kakanai/ca/city-a"]   # one per tenant served
//! sync_seconds = 30                       # optional
//! ```
//!
//! The CA directory is the source of truth for which devices exist and which
//! message key each holds; the store keeps everything else (presence, last seen,
//! firmware). Only additions and revocations flow this way: nothing here deletes.

use std::path::{Path, PathBuf};
use std::time::Duration;

use kakanai_protocol::topic::Ident;
use kakanai_protocol::{KeyId, VerifyingKey};
use kakanai_provisioning::fleet::CaDir;
use serde::Deserialize;
use tokio::sync::watch;

use crate::model::TenantId;
use crate::store::{DeviceStatus, NewDevice, Store};

/// `[fleet]` in the service configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FleetSyncConfig {
    /// The CA directories to follow (each names its tenant).
    pub ca_dirs: Vec<PathBuf>,
    /// Seconds between syncs.
    #[serde(default = "default_sync_seconds")]
    pub sync_seconds: u64,
}

fn default_sync_seconds() -> u64 {
    30
}

impl FleetSyncConfig {
    /// Checks a `[fleet]` table.
    pub fn from_table(table: &toml::Table) -> Result<Self, String> {
        let config: Self = toml::Value::Table(table.clone())
            .try_into()
            .map_err(|e: toml::de::Error| e.to_string())?;
        if !(5..=3600).contains(&config.sync_seconds) {
            return Err("sync_seconds must be 5 to 3600".into());
        }
        if config.ca_dirs.is_empty() {
            return Err("ca_dirs: at least one CA directory".into());
        }
        Ok(config)
    }

    /// The `[fleet]` section of the configuration file at `path`, if any.
    pub fn load(path: &Path) -> Result<Option<Self>, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let table: toml::Table = toml::from_str(&text).map_err(|e| e.to_string())?;
        match table.get("fleet") {
            None => Ok(None),
            Some(toml::Value::Table(t)) => Self::from_table(t).map(Some),
            Some(_) => Err("[fleet] must be a table".into()),
        }
    }
}

/// What one sync changed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SyncReport {
    /// Devices newly registered.
    pub registered: Vec<String>,
    /// Message keys added to known devices (a re-enrolled box).
    pub keys_added: Vec<String>,
    /// Devices revoked.
    pub revoked: Vec<String>,
    /// Devices skipped, with why (bad key in the CA state, another tenant …).
    pub skipped: Vec<(String, String)>,
}

/// Applies the CA directory at `dir` to the store once.
pub async fn sync_once(store: &Store, dir: &Path, now_ms: i64) -> Result<SyncReport, String> {
    let dir = dir.to_owned();
    let (tenant, devices) = tokio::task::spawn_blocking(move || {
        let ca = CaDir::open(&dir).map_err(|e| e.to_string())?;
        let tenant = ca.settings().tenant.to_string();
        let devices = ca.devices().map_err(|e| e.to_string())?;
        Ok::<_, String>((tenant, devices))
    })
    .await
    .map_err(|e| e.to_string())??;
    let tenant = TenantId::new(&tenant).map_err(|e| e.to_string())?;
    let mut report = SyncReport::default();
    for (id, record) in devices {
        let Ok(device) = Ident::new(&id) else {
            report.skipped.push((id, "not a device id".into()));
            continue;
        };
        let key = hex::decode(&record.message_public_key)
            .ok()
            .and_then(|b| VerifyingKey::from_bytes(&b).ok());
        let Some(key) = key else {
            report
                .skipped
                .push((id, "message key is not an Ed25519 key".into()));
            continue;
        };
        let kid = KeyId::of_key(&key);
        let known = store
            .get_device(&tenant, &device)
            .await
            .map_err(|e| e.to_string())?;
        match (known, record.revoked_at) {
            (None, Some(_)) => {} // never got here; nothing to refuse
            (None, None) => {
                store
                    .register_device(
                        &tenant,
                        &NewDevice {
                            id: device.clone(),
                            counter_name: record.counter.clone(),
                            location: String::new(),
                            kid,
                            public_key: key,
                            firmware: None,
                        },
                        now_ms,
                    )
                    .await
                    .map_err(|e| e.to_string())?;
                report.registered.push(id);
            }
            (Some(d), Some(_)) if d.status != DeviceStatus::Revoked => {
                store
                    .revoke_device(&tenant, &device, now_ms)
                    .await
                    .map_err(|e| e.to_string())?;
                tracing::warn!(device = %id, "device revoked by central IT: its messages are refused from now on");
                report.revoked.push(id);
            }
            (Some(d), None)
                if d.status != DeviceStatus::Revoked && !d.keys.iter().any(|k| k.kid == kid) =>
            {
                store
                    .add_device_key(&tenant, &device, &kid, &key, now_ms)
                    .await
                    .map_err(|e| e.to_string())?;
                report.keys_added.push(id);
            }
            _ => {}
        }
    }
    Ok(report)
}

/// Syncs every CA directory of `config` every `sync_seconds` until `shutdown`.
pub async fn run(store: Store, config: FleetSyncConfig, mut shutdown: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(Duration::from_secs(config.sync_seconds));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.changed() => return,
        }
        if *shutdown.borrow() {
            return;
        }
        for dir in &config.ca_dirs {
            match sync_once(&store, dir, super::now_ms()).await {
                Ok(r)
                    if r.registered.is_empty()
                        && r.revoked.is_empty()
                        && r.keys_added.is_empty() => {}
                Ok(r) => tracing::info!(
                    registered = r.registered.len(),
                    revoked = r.revoked.len(),
                    keys_added = r.keys_added.len(),
                    skipped = r.skipped.len(),
                    "fleet synced from the CA directory"
                ),
                Err(e) => tracing::error!(dir = %dir.display(), error = %e, "fleet sync failed"),
            }
        }
    }
}
