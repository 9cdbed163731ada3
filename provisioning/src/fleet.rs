//! A tenant's CA directory: the CA, its settings, and the fleet's state (claims,
//! pending enrolments, devices and every certificate issued to them).
//!
//! ```text
//! DIR/ca.pem        the CA certificate (given to devices and the broker)
//! DIR/ca.key        its private key, mode 600
//! DIR/tenant.toml   tenant, broker URL, enrolment URL, device validity, control-plane keys
//! DIR/state.json    claims (token hashes only), enrolments, devices, certificates
//! DIR/crl.pem       the current CRL (rewritten by every revocation)
//! ```
//!
//! Every change takes an exclusive lock on `DIR/.lock`, reads `state.json`, and
//! writes it back atomically only if the whole operation succeeded, so the CLI and a
//! running enrolment service can work on the same directory, and a refused request
//! changes nothing.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use kakanai_protocol::topic::Ident;
use kakanai_protocol::{KeyId, VerifyingKey};
use serde::{Deserialize, Serialize};

use crate::bundle::{BundleData, ControlPlaneKey};
use crate::claim::{self, ClaimFile};
use crate::files::{read_private_text, read_text, write_atomic};
use crate::pki::{self, CaMaterial, Csr, Issued, PkiError};

/// Why a CA operation failed.
#[derive(Debug, thiserror::Error)]
pub enum FleetError {
    /// A file problem, with the file named.
    #[error("{0}")]
    Files(String),
    /// Certificate material.
    #[error(transparent)]
    Pki(#[from] PkiError),
    /// Bad input from the operator.
    #[error("{0}")]
    Invalid(String),
    /// No such device, claim or enrolment.
    #[error("{0}")]
    NotFound(String),
}

/// Why an enrolment request is refused (each says so to the device).
#[derive(Debug, thiserror::Error)]
pub enum EnrolError {
    /// The claim names another tenant than this service's.
    #[error("this claim is for tenant {claim}, but this enrolment service serves {served}")]
    WrongTenant {
        /// The claim's tenant.
        claim: String,
        /// The tenant served.
        served: String,
    },
    /// No claim with this token.
    #[error("unknown claim: the token does not match any claim of this tenant")]
    UnknownClaim,
    /// The claim was used by another device.
    #[error("this claim has already been used; ask central IT for a new one")]
    ClaimUsed,
    /// The claim expired.
    #[error("this claim expired; ask central IT for a new one")]
    ClaimExpired,
    /// The device this claim was for has been revoked.
    #[error("the device this claim was made for has been revoked")]
    Revoked,
    /// The request is malformed.
    #[error("bad enrolment request: {0}")]
    BadRequest(String),
    /// The service could not process it.
    #[error("the enrolment service failed: {0}")]
    Internal(String),
}

impl From<FleetError> for EnrolError {
    fn from(e: FleetError) -> Self {
        EnrolError::Internal(e.to_string())
    }
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSettings {
    tenant: String,
    broker_url: String,
    #[serde(default)]
    enrolment_url: Option<String>,
    #[serde(default = "default_days")]
    device_days: u32,
    #[serde(default)]
    control_plane_keys: Vec<ControlPlaneKey>,
}

fn default_days() -> u32 {
    pki::DEFAULT_DEVICE_DAYS
}

/// A tenant's provisioning settings (`tenant.toml`).
#[derive(Debug, Clone)]
pub struct Settings {
    /// The tenant.
    pub tenant: Ident,
    /// Where devices reach the broker: `mqtts://host:port`.
    pub broker_url: String,
    /// Where devices enrol: `https://host:port` (written into claims).
    pub enrolment_url: Option<String>,
    /// Validity of device certificates, days.
    pub device_days: u32,
    /// The control plane's message public keys, given to every device.
    pub control_plane_keys: Vec<ControlPlaneKey>,
}

impl Settings {
    fn check(raw: RawSettings) -> Result<Self, FleetError> {
        let tenant =
            Ident::new(&raw.tenant).map_err(|e| FleetError::Invalid(format!("tenant: {e}")))?;
        crate::bundle::BrokerUrl::parse(&raw.broker_url)
            .map_err(|e| FleetError::Invalid(format!("broker_url: {e}")))?;
        if let Some(url) = &raw.enrolment_url {
            if !url.starts_with("https://") {
                return Err(FleetError::Invalid(
                    "enrolment_url: must be https://host:port".into(),
                ));
            }
        }
        if !(1..=825).contains(&raw.device_days) {
            return Err(FleetError::Invalid("device_days: 1 to 825".into()));
        }
        for k in &raw.control_plane_keys {
            k.check()
                .map_err(|e| FleetError::Invalid(format!("control_plane_keys: {e}")))?;
        }
        Ok(Self {
            tenant,
            broker_url: raw.broker_url,
            enrolment_url: raw.enrolment_url,
            device_days: raw.device_days,
            control_plane_keys: raw.control_plane_keys,
        })
    }

    fn raw(&self) -> RawSettings {
        RawSettings {
            tenant: self.tenant.to_string(),
            broker_url: self.broker_url.clone(),
            enrolment_url: self.enrolment_url.clone(),
            device_days: self.device_days,
            control_plane_keys: self.control_plane_keys.clone(),
        }
    }
}

/// A claim as stored: the token only as its SHA-256.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClaimRecord {
    /// The claim's public id (the token's first part).
    pub id: String,
    token_sha256: String,
    /// The counter's name (e.g. 市民課 1番窓口).
    pub counter: String,
    /// The device id the claim enrols.
    pub device: String,
    /// Created, Unix seconds.
    pub created: i64,
    /// Expires, Unix seconds.
    pub expires: i64,
    /// Issued at once on submission, without waiting for approval.
    pub pre_approved: bool,
    /// When a device used it.
    pub used_at: Option<i64>,
    /// The broken device this claim's device replaces: revoked when the
    /// replacement is approved.
    #[serde(default)]
    pub replaces: Option<String>,
}

/// An enrolment submitted by a device.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Enrolment {
    /// Its id (what `approve` takes).
    pub id: String,
    /// The claim used.
    pub claim: String,
    /// The device id.
    pub device: String,
    /// The counter's name.
    pub counter: String,
    csr_pem: String,
    /// SHA-256 of the TLS public key (SPKI DER), hex: lets IT compare with the device.
    pub tls_key_sha256: String,
    /// The device's Ed25519 message public key, hex.
    pub message_public_key: String,
    /// Submitted, Unix seconds.
    pub submitted: i64,
    /// Approved, Unix seconds.
    pub approved: Option<i64>,
}

/// One certificate issued to a device.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CertRecord {
    /// Serial, hex.
    pub serial: String,
    /// The certificate.
    pub pem: String,
    /// Validity start.
    pub not_before: i64,
    /// Validity end.
    pub not_after: i64,
    /// Revoked at.
    pub revoked_at: Option<i64>,
}

/// A device of the fleet.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeviceRecord {
    /// The counter's name.
    pub counter: String,
    /// Its Ed25519 message public key, hex (what the control plane verifies with).
    pub message_public_key: String,
    /// Its key id, hex.
    pub message_kid: String,
    /// Certificates, oldest first.
    pub certs: Vec<CertRecord>,
    /// When the device was revoked (all its certificates with it).
    pub revoked_at: Option<i64>,
}

impl DeviceRecord {
    /// The newest certificate.
    pub fn current(&self) -> Option<&CertRecord> {
        self.certs.last()
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct State {
    crl_number: u64,
    claims: Vec<ClaimRecord>,
    enrolments: Vec<Enrolment>,
    devices: BTreeMap<String, DeviceRecord>,
}

/// What the device sends to enrol.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EnrolRequest {
    /// The tenant named in the claim.
    pub tenant: String,
    /// The claim's token.
    pub token: String,
    /// A CSR for the device's TLS key.
    pub csr_pem: String,
    /// The device's Ed25519 message public key, hex.
    pub message_public_key: String,
}

/// A device asking for a new certificate before its current one expires, signed
/// with its registered Ed25519 message key over
/// [`renewal_message`](crate::bundle::renewal_message).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RenewRequest {
    /// The tenant.
    pub tenant: String,
    /// The device id.
    pub device: String,
    /// A CSR for the device's new TLS key.
    pub csr_pem: String,
    /// When it was signed, Unix seconds.
    pub time: i64,
    /// The Ed25519 signature, hex.
    pub signature: String,
}

/// How far a renewal request's time may be from the CA's clock.
const RENEW_SKEW_S: i64 = 300;

/// The answer to an enrolment request.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EnrolResponse {
    /// The enrolment's id.
    pub enrolment: String,
    /// The device id.
    pub device: String,
    /// Issued: the certificate and configuration. `None`: waiting for approval.
    pub bundle: Option<BundleData>,
}

/// A new claim, with its secret token (shown once, never stored).
pub struct NewClaim {
    /// The stored record.
    pub record: ClaimRecord,
    /// What goes on the USB stick / SD card.
    pub file: ClaimFile,
}

/// A tenant's CA directory.
pub struct CaDir {
    dir: PathBuf,
    settings: Settings,
}

/// The options of `init-ca`.
pub struct InitOptions {
    /// The tenant.
    pub tenant: String,
    /// `mqtts://host:port`.
    pub broker_url: String,
    /// `https://host:port`.
    pub enrolment_url: Option<String>,
    /// Device certificate validity, days.
    pub device_days: u32,
    /// Control-plane message public keys, hex.
    pub control_plane_keys: Vec<String>,
}

fn files_err(e: impl std::fmt::Display) -> FleetError {
    FleetError::Files(e.to_string())
}

fn ident(what: &str, s: &str) -> Result<Ident, FleetError> {
    Ident::new(s).map_err(|e| FleetError::Invalid(format!("{what}: {e}")))
}

impl CaDir {
    /// Creates a new CA in `dir` (created if missing; refused if it holds a CA).
    pub fn init(dir: &Path, options: InitOptions, now: i64) -> Result<Self, FleetError> {
        let mut keys = Vec::new();
        for hex_key in &options.control_plane_keys {
            let bytes = hex::decode(hex_key.trim())
                .map_err(|_| FleetError::Invalid("control-plane key: not hex".into()))?;
            let key = VerifyingKey::from_bytes(&bytes).map_err(|_| {
                FleetError::Invalid("control-plane key: not a 32-byte Ed25519 key".into())
            })?;
            keys.push(ControlPlaneKey {
                kid: KeyId::of_key(&key).to_hex(),
                public_key: hex::encode(key.as_bytes()),
            });
        }
        if keys.is_empty() {
            return Err(FleetError::Invalid(
                "--control-plane-key: at least one is needed (devices must know whom to trust)"
                    .into(),
            ));
        }
        let settings = Settings::check(RawSettings {
            tenant: options.tenant,
            broker_url: options.broker_url,
            enrolment_url: options.enrolment_url,
            device_days: options.device_days,
            control_plane_keys: keys,
        })?;
        std::fs::create_dir_all(dir)
            .map_err(|e| FleetError::Files(format!("cannot create {}: {e}", dir.display())))?;
        if dir.join("ca.pem").exists() || dir.join("ca.key").exists() {
            return Err(FleetError::Invalid(format!(
                "{} already holds a CA; nothing was changed",
                dir.display()
            )));
        }
        let ca = pki::new_ca(&settings.tenant, now)?;
        let me = Self {
            dir: dir.to_owned(),
            settings,
        };
        write_atomic(&me.path("ca.key"), ca.key_pem.as_bytes(), true).map_err(files_err)?;
        write_atomic(&me.path("ca.pem"), ca.cert_pem.as_bytes(), false).map_err(files_err)?;
        let toml = toml::to_string(&me.settings.raw()).map_err(files_err)?;
        write_atomic(&me.path("tenant.toml"), toml.as_bytes(), false).map_err(files_err)?;
        me.update::<_, FleetError>(|state, ca| write_crl(&me, state, ca, now))?;
        Ok(me)
    }

    /// Opens an existing CA directory.
    pub fn open(dir: &Path) -> Result<Self, FleetError> {
        let path = dir.join("tenant.toml");
        let text = read_text(&path).map_err(|e| {
            FleetError::Files(format!(
                "{e} (is {} a CA directory? see init-ca)",
                dir.display()
            ))
        })?;
        let raw: RawSettings = toml::from_str(&text)
            .map_err(|e| FleetError::Invalid(format!("{}: {e}", path.display())))?;
        Ok(Self {
            dir: dir.to_owned(),
            settings: Settings::check(raw)?,
        })
    }

    /// The settings.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// The CA certificate, PEM.
    pub fn ca_pem(&self) -> Result<String, FleetError> {
        read_text(&self.path("ca.pem")).map_err(FleetError::Files)
    }

    /// The CA certificate's SHA-256 fingerprint (hex), as written into claims.
    pub fn ca_fingerprint(&self) -> Result<String, FleetError> {
        Ok(pki::fingerprint(&self.ca_pem()?)?)
    }

    /// The CA certificate and key (the key file must be mode 600).
    pub fn material(&self) -> Result<CaMaterial, FleetError> {
        Ok(CaMaterial {
            cert_pem: self.ca_pem()?,
            key_pem: read_private_text(&self.path("ca.key")).map_err(FleetError::Files)?,
        })
    }

    fn read_state(&self) -> Result<State, FleetError> {
        let path = self.path("state.json");
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| FleetError::Files(format!("{} is damaged: {e}", path.display()))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(State::default()),
            Err(e) => Err(FleetError::Files(format!(
                "cannot read {}: {e}",
                path.display()
            ))),
        }
    }

    /// Runs `f` on the state under the directory's lock; writes the state back only
    /// when `f` succeeds.
    fn update<T, E: From<FleetError>>(
        &self,
        f: impl FnOnce(&mut State, &CaMaterial) -> Result<T, E>,
    ) -> Result<T, E> {
        let lock_path = self.path(".lock");
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| FleetError::Files(format!("cannot open {}: {e}", lock_path.display())))?;
        lock.lock()
            .map_err(|e| FleetError::Files(format!("cannot lock {}: {e}", lock_path.display())))?;
        let ca = self.material()?;
        let mut state = self.read_state()?;
        let out = f(&mut state, &ca)?;
        let json = serde_json::to_vec_pretty(&state).map_err(files_err)?;
        write_atomic(&self.path("state.json"), &json, true).map_err(files_err)?;
        Ok(out)
    }

    /// Creates a one-time claim for the counter `counter` that enrols device `device`
    /// (a fresh id when `None`), valid for `valid_s` seconds.
    pub fn create_claim(
        &self,
        counter: &str,
        device: Option<&str>,
        valid_s: i64,
        pre_approved: bool,
        now: i64,
    ) -> Result<NewClaim, FleetError> {
        self.claim_for(counter, device, valid_s, pre_approved, None, now)
    }

    /// A claim for the box replacing the broken device `old`: the counter (its name)
    /// moves to the new device, and `old` is revoked when the new one is approved.
    pub fn create_replacement_claim(
        &self,
        old: &str,
        device: Option<&str>,
        valid_s: i64,
        pre_approved: bool,
        now: i64,
    ) -> Result<NewClaim, FleetError> {
        let record = self
            .read_state()?
            .devices
            .get(old)
            .cloned()
            .ok_or_else(|| FleetError::NotFound(format!("no device {old} to replace")))?;
        if record.revoked_at.is_some() {
            return Err(FleetError::Invalid(format!(
                "device {old} is already revoked; make an ordinary claim for the counter"
            )));
        }
        self.claim_for(
            &record.counter,
            device,
            valid_s,
            pre_approved,
            Some(old.to_owned()),
            now,
        )
    }

    fn claim_for(
        &self,
        counter: &str,
        device: Option<&str>,
        valid_s: i64,
        pre_approved: bool,
        replaces: Option<String>,
        now: i64,
    ) -> Result<NewClaim, FleetError> {
        if counter.trim().is_empty() {
            return Err(FleetError::Invalid(
                "--counter: the counter's name is needed".into(),
            ));
        }
        if valid_s <= 0 {
            return Err(FleetError::Invalid(
                "--expires: must be in the future".into(),
            ));
        }
        let endpoint = self.settings.enrolment_url.clone().ok_or_else(|| {
            FleetError::Invalid(
                "tenant.toml has no enrolment_url: devices would not know where to enrol".into(),
            )
        })?;
        let fingerprint = self.ca_fingerprint()?;
        let requested = device.map(|d| ident("--device", d)).transpose()?;
        let tenant = self.settings.tenant.clone();
        self.update(|state, _| {
            let device = match requested {
                Some(d) => d,
                None => loop {
                    let candidate = ident("device", &format!("ctr-{}", claim::random_hex(4)?))?;
                    if !state.devices.contains_key(candidate.as_str())
                        && !state.claims.iter().any(|c| c.device == candidate.as_str())
                    {
                        break candidate;
                    }
                },
            };
            if state.devices.contains_key(device.as_str()) {
                return Err(FleetError::Invalid(format!(
                    "device {device} is already enrolled (use rotate, or revoke it first)"
                )));
            }
            if state
                .claims
                .iter()
                .any(|c| c.device == device.as_str() && c.used_at.is_none() && c.expires > now)
            {
                return Err(FleetError::Invalid(format!(
                    "an open claim for device {device} exists already"
                )));
            }
            let (id, secret) = (claim::random_hex(4)?, claim::random_hex(24)?);
            let token = format!("{id}.{secret}");
            let record = ClaimRecord {
                id: id.clone(),
                token_sha256: pki::sha256_hex(token.as_bytes()),
                counter: counter.to_owned(),
                device: device.to_string(),
                created: now,
                expires: now + valid_s,
                pre_approved,
                used_at: None,
                replaces,
            };
            state.claims.push(record.clone());
            Ok(NewClaim {
                record,
                file: ClaimFile {
                    tenant: tenant.to_string(),
                    token,
                    endpoint,
                    ca_fingerprint: format!("sha256:{fingerprint}"),
                    counter: counter.to_owned(),
                },
            })
        })
    }

    /// Every claim.
    pub fn claims(&self) -> Result<Vec<ClaimRecord>, FleetError> {
        Ok(self.read_state()?.claims)
    }

    /// Enrolments waiting for approval.
    pub fn pending(&self) -> Result<Vec<Enrolment>, FleetError> {
        Ok(self
            .read_state()?
            .enrolments
            .into_iter()
            .filter(|e| e.approved.is_none())
            .collect())
    }

    /// Every device.
    pub fn devices(&self) -> Result<BTreeMap<String, DeviceRecord>, FleetError> {
        Ok(self.read_state()?.devices)
    }

    /// Handles a device's enrolment request. The same device repeating its request
    /// (same claim, same TLS key) gets the current state of its enrolment, so a
    /// device polls by asking again; anyone else using a used claim is refused.
    pub fn submit(&self, request: &EnrolRequest, now: i64) -> Result<EnrolResponse, EnrolError> {
        let served = self.settings.tenant.to_string();
        if request.tenant != served {
            return Err(EnrolError::WrongTenant {
                claim: request.tenant.clone(),
                served,
            });
        }
        let csr =
            Csr::parse(&request.csr_pem).map_err(|e| EnrolError::BadRequest(e.to_string()))?;
        let message_key = hex::decode(request.message_public_key.trim())
            .ok()
            .and_then(|b| VerifyingKey::from_bytes(&b).ok())
            .ok_or_else(|| {
                EnrolError::BadRequest(
                    "message_public_key is not a 32-byte Ed25519 key in hex".into(),
                )
            })?;
        let token_hash = pki::sha256_hex(request.token.trim().as_bytes());
        let tls_key_sha256 = pki::sha256_hex(&csr.public_key_der());
        let settings = self.settings.clone();
        self.update(|state, ca| {
            let Some(ci) = state
                .claims
                .iter()
                .position(|c| c.token_sha256 == token_hash)
            else {
                return Err(EnrolError::UnknownClaim);
            };
            let claim = state.claims[ci].clone();
            if let Some(existing) = state.enrolments.iter().find(|e| e.claim == claim.id) {
                if existing.tls_key_sha256 != tls_key_sha256
                    || existing.message_public_key != hex::encode(message_key.as_bytes())
                {
                    return Err(EnrolError::ClaimUsed);
                }
                let existing = existing.clone();
                return response(state, &settings, ca, &existing);
            }
            if claim.used_at.is_some() {
                return Err(EnrolError::ClaimUsed);
            }
            if now >= claim.expires {
                return Err(EnrolError::ClaimExpired);
            }
            if state
                .devices
                .get(&claim.device)
                .is_some_and(|d| d.revoked_at.is_some())
            {
                return Err(EnrolError::Revoked);
            }
            state.claims[ci].used_at = Some(now);
            let enrolment = Enrolment {
                id: claim::random_hex(4).map_err(EnrolError::from)?,
                claim: claim.id.clone(),
                device: claim.device.clone(),
                counter: claim.counter.clone(),
                csr_pem: request.csr_pem.clone(),
                tls_key_sha256,
                message_public_key: hex::encode(message_key.as_bytes()),
                submitted: now,
                approved: None,
            };
            state.enrolments.push(enrolment.clone());
            if claim.pre_approved && approve_in(state, &settings, ca, &enrolment.id, now)?.2 {
                write_crl(self, state, ca, now)?;
            }
            let enrolment = state
                .enrolments
                .iter()
                .find(|e| e.id == enrolment.id)
                .cloned()
                .ok_or_else(|| EnrolError::Internal("enrolment vanished".into()))?;
            response(state, &settings, ca, &enrolment)
        })
    }

    /// Approves a pending enrolment: issues the device's certificate and registers
    /// its message key.
    pub fn approve(&self, id: &str, now: i64) -> Result<(String, Issued), FleetError> {
        let settings = self.settings.clone();
        self.update(|state, ca| {
            let (device, issued, revoked_old) = approve_in(state, &settings, ca, id, now)?;
            if revoked_old {
                write_crl(self, state, ca, now)?;
            }
            Ok((device, issued))
        })
    }

    /// The configuration a device gets, for a device enrolled centrally: issues a
    /// certificate for `tls_public_key` and registers `message_key` (creating the
    /// device with `counter` if it is new).
    pub fn issue_for_bundle(
        &self,
        device: &str,
        counter: Option<&str>,
        csr_pem: &str,
        message_public_key: &VerifyingKey,
        now: i64,
    ) -> Result<BundleData, FleetError> {
        let device = ident("--device", device)?;
        let csr = Csr::parse(csr_pem)?;
        let settings = self.settings.clone();
        self.update(|state, ca| {
            let existing = state.devices.get(device.as_str()).cloned();
            if existing.as_ref().is_some_and(|d| d.revoked_at.is_some()) {
                return Err(FleetError::Invalid(format!(
                    "device {device} is revoked; enrol the replacement under a new id"
                )));
            }
            let counter = match (counter, &existing) {
                (Some(c), _) if !c.trim().is_empty() => c.to_owned(),
                (_, Some(d)) => d.counter.clone(),
                _ => {
                    return Err(FleetError::Invalid(format!(
                        "device {device} is new: give --counter"
                    )))
                }
            };
            let issued = pki::issue_device(
                ca,
                &settings.tenant,
                &device,
                csr.public_key(),
                now,
                settings.device_days,
            )?;
            let record = state
                .devices
                .entry(device.to_string())
                .or_insert_with(|| DeviceRecord {
                    counter: counter.clone(),
                    message_public_key: String::new(),
                    message_kid: String::new(),
                    certs: Vec::new(),
                    revoked_at: None,
                });
            record.counter = counter;
            record.message_public_key = hex::encode(message_public_key.as_bytes());
            record.message_kid = KeyId::of_key(message_public_key).to_hex();
            record.certs.push(cert_record(&issued));
            let record = record.clone();
            bundle_data(&settings, ca, device.as_str(), &record)
        })
    }

    /// Central provisioning onto an SD card / USB stick: makes the device's keys here,
    /// issues its certificate and writes the whole bundle into `out` (refused if `out`
    /// already holds one).
    pub fn write_bundle(
        &self,
        device: &str,
        counter: Option<&str>,
        out: &Path,
        now: i64,
    ) -> Result<BundleData, FleetError> {
        if out.join("bundle.toml").exists() {
            return Err(FleetError::Invalid(format!(
                "{} already holds a bundle; nothing was changed",
                out.display()
            )));
        }
        let keys = crate::bundle::DeviceKeys::generate().map_err(FleetError::Invalid)?;
        let csr = keys.csr_pem().map_err(FleetError::Invalid)?;
        let data = self.issue_for_bundle(
            device,
            counter,
            &csr,
            &keys.message_key.verifying_key(),
            now,
        )?;
        let written = keys
            .write(out)
            .and_then(|()| crate::bundle::write_bundle(out, &data));
        written.map_err(|e| FleetError::Files(format!("writing {}: {e}", out.display())))?;
        Ok(data)
    }

    /// Device-initiated renewal: a new certificate for the key in the request's CSR,
    /// if the request is signed by the device's registered message key, fresh, and
    /// the device is active with a certificate still valid. The old certificate stays
    /// valid until it expires (the overlap); an expired device enrols again.
    pub fn renew(&self, request: &RenewRequest, now: i64) -> Result<BundleData, EnrolError> {
        let served = self.settings.tenant.to_string();
        if request.tenant != served {
            return Err(EnrolError::WrongTenant {
                claim: request.tenant.clone(),
                served,
            });
        }
        if (request.time - now).abs() > RENEW_SKEW_S {
            return Err(EnrolError::BadRequest(
                "the request's time is more than 5 minutes off: is the device's clock right?"
                    .into(),
            ));
        }
        let csr =
            Csr::parse(&request.csr_pem).map_err(|e| EnrolError::BadRequest(e.to_string()))?;
        let device = Ident::new(&request.device)
            .map_err(|e| EnrolError::BadRequest(format!("device: {e}")))?;
        let signature = hex::decode(&request.signature)
            .map_err(|_| EnrolError::BadRequest("signature: not hex".into()))?;
        let message = crate::bundle::renewal_message(
            &request.tenant,
            &request.device,
            request.time,
            &request.csr_pem,
        );
        let settings = self.settings.clone();
        self.update(|state, ca| {
            let record = state
                .devices
                .get_mut(device.as_str())
                .ok_or(EnrolError::UnknownClaim)?;
            if record.revoked_at.is_some() {
                return Err(EnrolError::Revoked);
            }
            let key = hex::decode(&record.message_public_key)
                .ok()
                .and_then(|b| VerifyingKey::from_bytes(&b).ok())
                .ok_or_else(|| EnrolError::Internal("stored message key is damaged".into()))?;
            key.verify(&message, &signature).map_err(|_| {
                EnrolError::BadRequest("the signature is not the device's message key's".into())
            })?;
            let valid = record
                .certs
                .iter()
                .any(|c| c.revoked_at.is_none() && c.not_before <= now && now < c.not_after);
            if !valid {
                return Err(EnrolError::BadRequest(
                    "no valid certificate left to renew: enrol the device again with a claim"
                        .into(),
                ));
            }
            let issued = pki::issue_device(
                ca,
                &settings.tenant,
                &device,
                csr.public_key(),
                now,
                settings.device_days,
            )
            .map_err(|e| EnrolError::Internal(e.to_string()))?;
            record.certs.push(cert_record(&issued));
            let record = record.clone();
            Ok(bundle_data(&settings, ca, device.as_str(), &record)?)
        })
    }

    /// Revokes one certificate (by serial, hex) of `device`, e.g. the old one after a
    /// renewal when its key may be compromised; the device keeps its other ones.
    pub fn revoke_certificate(
        &self,
        device: &str,
        serial: &str,
        now: i64,
    ) -> Result<(), FleetError> {
        self.update(|state, ca| {
            let record = state
                .devices
                .get_mut(device)
                .ok_or_else(|| FleetError::NotFound(format!("no device {device}")))?;
            let cert = record
                .certs
                .iter_mut()
                .find(|c| c.serial.eq_ignore_ascii_case(serial))
                .ok_or_else(|| {
                    FleetError::NotFound(format!("device {device} has no certificate {serial}"))
                })?;
            if cert.revoked_at.is_some() {
                return Err(FleetError::Invalid(format!(
                    "certificate {serial} is already revoked"
                )));
            }
            cert.revoked_at = Some(now);
            write_crl(self, state, ca, now)
        })
    }

    /// Revokes every certificate of `device` and rewrites the CRL. Returns the serials
    /// revoked now.
    pub fn revoke(&self, device: &str, now: i64) -> Result<Vec<String>, FleetError> {
        self.update(|state, ca| {
            let record = state
                .devices
                .get_mut(device)
                .ok_or_else(|| FleetError::NotFound(format!("no device {device}")))?;
            if record.revoked_at.is_some() {
                return Err(FleetError::Invalid(format!(
                    "device {device} is already revoked"
                )));
            }
            record.revoked_at = Some(now);
            let mut serials = Vec::new();
            for cert in &mut record.certs {
                if cert.revoked_at.is_none() {
                    cert.revoked_at = Some(now);
                    serials.push(cert.serial.clone());
                }
            }
            write_crl(self, state, ca, now)?;
            Ok(serials)
        })
    }

    /// Issues a new certificate for `device`'s current TLS key (the old one stays
    /// valid until it expires: the overlap). Returns the new certificate.
    pub fn rotate(&self, device: &str, now: i64) -> Result<Issued, FleetError> {
        let settings = self.settings.clone();
        self.update(|state, ca| {
            let record = state
                .devices
                .get_mut(device)
                .ok_or_else(|| FleetError::NotFound(format!("no device {device}")))?;
            if record.revoked_at.is_some() {
                return Err(FleetError::Invalid(format!("device {device} is revoked")));
            }
            let current = record.current().ok_or_else(|| {
                FleetError::Invalid(format!("device {device} has no certificate"))
            })?;
            let info = pki::inspect(&current.pem, "device certificate")?;
            let key = rcgen::SubjectPublicKeyInfo::from_der(&info.public_key_der)
                .map_err(|e| FleetError::Invalid(format!("stored certificate: {e}")))?;
            let issued = pki::issue_device(
                ca,
                &settings.tenant,
                &ident("device", device)?,
                &key,
                now,
                settings.device_days,
            )?;
            record.certs.push(cert_record(&issued));
            Ok(issued)
        })
    }

    /// Writes a fresh CRL (same revocations, new dates).
    pub fn refresh_crl(&self, now: i64) -> Result<(), FleetError> {
        self.update::<_, FleetError>(|state, ca| write_crl(self, state, ca, now))
    }
}

fn cert_record(issued: &Issued) -> CertRecord {
    CertRecord {
        serial: issued.serial.clone(),
        pem: issued.pem.clone(),
        not_before: issued.not_before,
        not_after: issued.not_after,
        revoked_at: None,
    }
}

fn write_crl(dir: &CaDir, state: &mut State, ca: &CaMaterial, now: i64) -> Result<(), FleetError> {
    state.crl_number += 1;
    let revoked: Vec<pki::Revoked> = state
        .devices
        .values()
        .flat_map(|d| d.certs.iter())
        .filter_map(|c| {
            c.revoked_at.map(|at| pki::Revoked {
                serial: c.serial.clone(),
                at,
            })
        })
        .collect();
    let pem = pki::crl_pem(ca, &revoked, state.crl_number, now)?;
    write_atomic(&dir.path("crl.pem"), pem.as_bytes(), false).map_err(files_err)
}

fn approve_in(
    state: &mut State,
    settings: &Settings,
    ca: &CaMaterial,
    id: &str,
    now: i64,
) -> Result<(String, Issued, bool), FleetError> {
    let ei = state
        .enrolments
        .iter()
        .position(|e| e.id == id)
        .ok_or_else(|| FleetError::NotFound(format!("no enrolment {id} (see pending list)")))?;
    let enrolment = state.enrolments[ei].clone();
    if enrolment.approved.is_some() {
        return Err(FleetError::Invalid(format!(
            "enrolment {id} is already approved"
        )));
    }
    if state
        .devices
        .get(&enrolment.device)
        .is_some_and(|d| d.revoked_at.is_some())
    {
        return Err(FleetError::Invalid(format!(
            "device {} is revoked",
            enrolment.device
        )));
    }
    let csr = Csr::parse(&enrolment.csr_pem)?;
    let device = ident("device", &enrolment.device)?;
    let issued = pki::issue_device(
        ca,
        &settings.tenant,
        &device,
        csr.public_key(),
        now,
        settings.device_days,
    )?;
    let key = hex::decode(&enrolment.message_public_key)
        .ok()
        .and_then(|b| VerifyingKey::from_bytes(&b).ok())
        .ok_or_else(|| FleetError::Invalid("stored message key is damaged".into()))?;
    let record = state
        .devices
        .entry(enrolment.device.clone())
        .or_insert_with(|| DeviceRecord {
            counter: enrolment.counter.clone(),
            message_public_key: String::new(),
            message_kid: String::new(),
            certs: Vec::new(),
            revoked_at: None,
        });
    record.message_public_key = hex::encode(key.as_bytes());
    record.message_kid = KeyId::of_key(&key).to_hex();
    record.certs.push(cert_record(&issued));
    state.enrolments[ei].approved = Some(now);
    let replaces = state
        .claims
        .iter()
        .find(|c| c.id == enrolment.claim)
        .and_then(|c| c.replaces.clone());
    let mut revoked_old = false;
    if let Some(old) = replaces.and_then(|o| state.devices.get_mut(&o)) {
        if old.revoked_at.is_none() {
            old.revoked_at = Some(now);
            for cert in old.certs.iter_mut().filter(|c| c.revoked_at.is_none()) {
                cert.revoked_at = Some(now);
            }
            revoked_old = true;
        }
    }
    Ok((enrolment.device, issued, revoked_old))
}

fn response(
    state: &State,
    settings: &Settings,
    ca: &CaMaterial,
    enrolment: &Enrolment,
) -> Result<EnrolResponse, EnrolError> {
    let bundle = match (enrolment.approved, state.devices.get(&enrolment.device)) {
        (Some(_), Some(record)) => {
            if record.revoked_at.is_some() {
                return Err(EnrolError::Revoked);
            }
            Some(bundle_data(settings, ca, &enrolment.device, record)?)
        }
        _ => None,
    };
    Ok(EnrolResponse {
        enrolment: enrolment.id.clone(),
        device: enrolment.device.clone(),
        bundle,
    })
}

fn bundle_data(
    settings: &Settings,
    ca: &CaMaterial,
    device: &str,
    record: &DeviceRecord,
) -> Result<BundleData, FleetError> {
    let cert = record
        .current()
        .ok_or_else(|| FleetError::Invalid(format!("device {device} has no certificate")))?;
    Ok(BundleData {
        tenant: settings.tenant.to_string(),
        device: device.to_owned(),
        counter: record.counter.clone(),
        broker_url: settings.broker_url.clone(),
        ca_pem: ca.cert_pem.clone(),
        cert_pem: cert.pem.clone(),
        control_plane_keys: settings.control_plane_keys.clone(),
        enrolment_url: settings.enrolment_url.clone(),
    })
}
