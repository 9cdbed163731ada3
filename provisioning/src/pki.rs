//! The fleet's X.509 material: a tenant CA, the certificates it issues (devices,
//! the broker, the control plane's broker account, the enrolment service), the CRL,
//! and the checks a device or the CLI runs on a certificate.
//!
//! Keys are ECDSA P-256 (SHA-256): OpenSSL (Mosquitto, the appliance's TLS) and
//! rustls both accept them. A device certificate's subject is `CN=<device id>,
//! OU=<tenant>, O=Kakanai`, with the SAN URI `urn:kakanai:<tenant>:<device>` and
//! the client-auth usage only; its serial is 16 random bytes. Nothing here reads a
//! clock: callers pass `now` (Unix seconds).

use kakanai_protocol::topic::Ident;
use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams,
    CertificateSigningRequestParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyIdMethod, KeyPair, KeyUsagePurpose, PublicKeyData, RevocationReason,
    RevokedCertParams, SanType, SerialNumber, PKCS_ECDSA_P256_SHA256,
};
use time::OffsetDateTime;

/// Days a device certificate is valid unless told otherwise.
pub const DEFAULT_DEVICE_DAYS: u32 = 90;
/// Days a CA certificate is valid.
pub const CA_DAYS: u32 = 3650;
/// Days the broker's and the control plane's certificates are valid.
pub const SERVICE_DAYS: u32 = 365;
/// Days until a CRL's `nextUpdate`: OpenSSL refuses every client once it passes, so
/// every CA operation writes a fresh CRL, and `kakanai-provision crl` refreshes it.
pub const CRL_DAYS: u32 = 30;
/// Certificates start this long before "now", for devices whose clock is behind.
const BACKDATE_S: i64 = 300;

/// Why certificate material cannot be made or used.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    /// Generating or signing failed.
    #[error("certificate operation failed: {0}")]
    Crypto(String),
    /// A PEM or DER input is not what it should be.
    #[error("{what}: {reason}")]
    Invalid {
        /// What was being read.
        what: &'static str,
        /// What is wrong.
        reason: String,
    },
}

fn crypto(e: impl std::fmt::Display) -> PkiError {
    PkiError::Crypto(e.to_string())
}

fn invalid(what: &'static str, reason: impl Into<String>) -> PkiError {
    PkiError::Invalid {
        what,
        reason: reason.into(),
    }
}

fn at(unix: i64) -> Result<OffsetDateTime, PkiError> {
    OffsetDateTime::from_unix_timestamp(unix).map_err(crypto)
}

/// A CA: its certificate and private key, both PEM.
pub struct CaMaterial {
    /// The CA certificate.
    pub cert_pem: String,
    /// Its PKCS#8 private key (secret).
    pub key_pem: String,
}

/// A certificate the CA issued.
#[derive(Debug, Clone)]
pub struct Issued {
    /// Serial number in hex.
    pub serial: String,
    /// The certificate, PEM.
    pub pem: String,
    /// Validity start, Unix seconds.
    pub not_before: i64,
    /// Validity end, Unix seconds.
    pub not_after: i64,
}

/// A fresh P-256 key pair (the TLS key; for a device, made on the device).
pub fn new_tls_key() -> Result<KeyPair, PkiError> {
    KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(crypto)
}

/// A new self-signed CA for `tenant`.
pub fn new_ca(tenant: &Ident, now: i64) -> Result<CaMaterial, PkiError> {
    let key = new_tls_key()?;
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "Kakanai");
    dn.push(DnType::OrganizationalUnitName, tenant.as_str());
    dn.push(
        DnType::CommonName,
        format!("Kakanai fleet CA {}", tenant.as_str()),
    );
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.not_before = at(now - BACKDATE_S)?;
    params.not_after = at(now + i64::from(CA_DAYS) * 86_400)?;
    params.serial_number = Some(random_serial()?);
    let cert = params.self_signed(&key).map_err(crypto)?;
    Ok(CaMaterial {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

fn issuer(ca: &CaMaterial) -> Result<Issuer<'static, KeyPair>, PkiError> {
    let key = KeyPair::from_pem(&ca.key_pem).map_err(|e| invalid("CA key", e.to_string()))?;
    Issuer::from_ca_cert_pem(&ca.cert_pem, key)
        .map_err(|e| invalid("CA certificate", e.to_string()))
}

fn random_serial() -> Result<SerialNumber, PkiError> {
    let mut bytes = [0u8; 16];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes)
        .map_err(|_| PkiError::Crypto("no randomness".into()))?;
    // Positive and without a leading zero byte, as RFC 5280 wants.
    bytes[0] = (bytes[0] & 0x7f) | 0x40;
    Ok(SerialNumber::from_slice(&bytes))
}

fn leaf_params(now: i64, days: u32) -> Result<(CertificateParams, String), PkiError> {
    let mut params = CertificateParams::default();
    params.not_before = at(now - BACKDATE_S)?;
    params.not_after = at(now + i64::from(days) * 86_400)?;
    let serial = random_serial()?;
    let hex = hex::encode(serial.to_bytes());
    params.serial_number = Some(serial);
    params.use_authority_key_identifier_extension = true;
    params.key_identifier_method = KeyIdMethod::Sha256;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    Ok((params, hex))
}

fn issued(pem: String, serial: String, params: &CertificateParams) -> Issued {
    Issued {
        serial,
        pem,
        not_before: params.not_before.unix_timestamp(),
        not_after: params.not_after.unix_timestamp(),
    }
}

/// The URI SAN naming a device of a tenant.
pub fn device_uri(tenant: &Ident, device: &Ident) -> String {
    format!("urn:kakanai:{tenant}:{device}")
}

/// A device certificate for `public_key` (from the device's CSR): `CN=device`,
/// `OU=tenant`, client authentication only.
pub fn issue_device(
    ca: &CaMaterial,
    tenant: &Ident,
    device: &Ident,
    public_key: &impl PublicKeyData,
    now: i64,
    days: u32,
) -> Result<Issued, PkiError> {
    let issuer = issuer(ca)?;
    let (mut params, serial) = leaf_params(now, days)?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "Kakanai");
    dn.push(DnType::OrganizationalUnitName, tenant.as_str());
    dn.push(DnType::CommonName, device.as_str());
    params.distinguished_name = dn;
    params.subject_alt_names = vec![SanType::URI(
        device_uri(tenant, device).try_into().map_err(crypto)?,
    )];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let cert = params.signed_by(public_key, &issuer).map_err(crypto)?;
    Ok(issued(cert.pem(), serial, &params))
}

/// A client certificate for the control plane's broker account: `CN=name`, where
/// `name` is not a valid device id (it holds `@`), so no device can share it.
pub fn issue_service_client(
    ca: &CaMaterial,
    tenant: &Ident,
    name: &str,
    now: i64,
) -> Result<(Issued, String), PkiError> {
    let issuer = issuer(ca)?;
    let key = new_tls_key()?;
    let (mut params, serial) = leaf_params(now, SERVICE_DAYS)?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "Kakanai");
    dn.push(DnType::OrganizationalUnitName, tenant.as_str());
    dn.push(DnType::CommonName, name);
    params.distinguished_name = dn;
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let cert = params.signed_by(&key, &issuer).map_err(crypto)?;
    Ok((issued(cert.pem(), serial, &params), key.serialize_pem()))
}

/// A server certificate (the broker, the enrolment service) for the given names
/// (DNS names or IP addresses), with a fresh key.
pub fn issue_server(
    ca: &CaMaterial,
    sans: &[String],
    now: i64,
) -> Result<(Issued, String), PkiError> {
    if sans.is_empty() {
        return Err(invalid("server names", "give at least one --san"));
    }
    let issuer = issuer(ca)?;
    let key = new_tls_key()?;
    let (mut params, serial) = leaf_params(now, SERVICE_DAYS)?;
    let named = CertificateParams::new(sans.to_vec())
        .map_err(|e| invalid("server names", e.to_string()))?;
    params.subject_alt_names = named.subject_alt_names;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "Kakanai");
    dn.push(DnType::CommonName, sans[0].as_str());
    params.distinguished_name = dn;
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let cert = params.signed_by(&key, &issuer).map_err(crypto)?;
    Ok((issued(cert.pem(), serial, &params), key.serialize_pem()))
}

/// A checked certificate signing request: only its public key is used (the CA
/// decides the subject).
pub struct Csr {
    request: CertificateSigningRequestParams,
}

impl Csr {
    /// Parses `pem` and verifies its self-signature (proof the sender holds the key);
    /// only P-256 keys are accepted.
    pub fn parse(pem: &str) -> Result<Self, PkiError> {
        let request = CertificateSigningRequestParams::from_pem(pem)
            .map_err(|e| invalid("certificate request", e.to_string()))?;
        if request.public_key.algorithm() != &PKCS_ECDSA_P256_SHA256 {
            return Err(invalid(
                "certificate request",
                "the key must be ECDSA P-256",
            ));
        }
        Ok(Self { request })
    }

    /// The requested key's SubjectPublicKeyInfo, DER.
    pub fn public_key_der(&self) -> Vec<u8> {
        self.request.public_key.subject_public_key_info()
    }

    /// The key, for issuing.
    pub fn public_key(&self) -> &impl PublicKeyData {
        &self.request.public_key
    }
}

/// A CSR for `key` (the subject is a placeholder: the CA sets the real one).
pub fn csr_pem(key: &KeyPair) -> Result<String, PkiError> {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "kakanai-device");
    params.distinguished_name = dn;
    params
        .serialize_request(key)
        .and_then(|r| r.pem())
        .map_err(crypto)
}

/// A revoked certificate, for the CRL.
pub struct Revoked {
    /// Serial number in hex.
    pub serial: String,
    /// When it was revoked, Unix seconds.
    pub at: i64,
}

/// The CRL over `revoked`, numbered `number`.
pub fn crl_pem(
    ca: &CaMaterial,
    revoked: &[Revoked],
    number: u64,
    now: i64,
) -> Result<String, PkiError> {
    let issuer = issuer(ca)?;
    let mut revoked_certs = Vec::new();
    for r in revoked {
        let serial = hex::decode(&r.serial).map_err(|_| invalid("serial", "not hex"))?;
        revoked_certs.push(RevokedCertParams {
            serial_number: SerialNumber::from_slice(&serial),
            revocation_time: at(r.at)?,
            reason_code: Some(RevocationReason::CessationOfOperation),
            invalidity_date: None,
        });
    }
    let params = CertificateRevocationListParams {
        this_update: at(now - BACKDATE_S)?,
        next_update: at(now + i64::from(CRL_DAYS) * 86_400)?,
        crl_number: SerialNumber::from_slice(&number.to_be_bytes()),
        issuing_distribution_point: None,
        revoked_certs,
        key_identifier_method: KeyIdMethod::Sha256,
    };
    params
        .signed_by(&issuer)
        .and_then(|c| c.pem())
        .map_err(crypto)
}

/// What a certificate says, as read back.
#[derive(Debug, Clone)]
pub struct CertInfo {
    /// Subject CN.
    pub common_name: Option<String>,
    /// Subject OU.
    pub organizational_unit: Option<String>,
    /// URI SANs.
    pub uris: Vec<String>,
    /// Serial in hex.
    pub serial: String,
    /// Validity start, Unix seconds.
    pub not_before: i64,
    /// Validity end, Unix seconds.
    pub not_after: i64,
    /// SubjectPublicKeyInfo, DER.
    pub public_key_der: Vec<u8>,
    /// SHA-256 of the DER certificate, hex.
    pub fingerprint: String,
}

fn der_of(pem: &str, what: &'static str) -> Result<Vec<u8>, PkiError> {
    let (_, parsed) = x509_parser::pem::parse_x509_pem(pem.as_bytes())
        .map_err(|_| invalid(what, "not a PEM certificate"))?;
    if parsed.label != "CERTIFICATE" {
        return Err(invalid(
            what,
            format!("a PEM {} where a certificate belongs", parsed.label),
        ));
    }
    Ok(parsed.contents)
}

/// Reads a PEM certificate.
pub fn inspect(pem: &str, what: &'static str) -> Result<CertInfo, PkiError> {
    use x509_parser::prelude::FromDer as _;
    let der = der_of(pem, what)?;
    let (_, cert) = x509_parser::certificate::X509Certificate::from_der(&der)
        .map_err(|e| invalid(what, e.to_string()))?;
    let first = |it: &mut dyn Iterator<Item = &x509_parser::x509::AttributeTypeAndValue<'_>>| {
        it.next().and_then(|a| a.as_str().ok()).map(str::to_owned)
    };
    let common_name = first(&mut cert.subject().iter_common_name());
    let organizational_unit = first(&mut cert.subject().iter_organizational_unit());
    let mut uris = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            if let x509_parser::extensions::GeneralName::URI(u) = name {
                uris.push((*u).to_owned());
            }
        }
    }
    Ok(CertInfo {
        common_name,
        organizational_unit,
        uris,
        serial: hex::encode(cert.raw_serial()),
        not_before: cert.validity().not_before.timestamp(),
        not_after: cert.validity().not_after.timestamp(),
        public_key_der: cert.public_key().raw.to_vec(),
        fingerprint: sha256_hex(&der),
    })
}

/// Whether `cert_pem` carries a valid signature by the CA in `ca_pem`.
pub fn verify_issued_by(cert_pem: &str, ca_pem: &str) -> Result<(), PkiError> {
    use x509_parser::prelude::FromDer as _;
    let der = der_of(cert_pem, "certificate")?;
    let ca_der = der_of(ca_pem, "CA certificate")?;
    let (_, cert) = x509_parser::certificate::X509Certificate::from_der(&der)
        .map_err(|e| invalid("certificate", e.to_string()))?;
    let (_, ca) = x509_parser::certificate::X509Certificate::from_der(&ca_der)
        .map_err(|e| invalid("CA certificate", e.to_string()))?;
    cert.verify_signature(Some(ca.public_key()))
        .map_err(|_| invalid("certificate", "not issued by this CA"))
}

/// The SHA-256 fingerprint (hex) of a PEM certificate's DER.
pub fn fingerprint(pem: &str) -> Result<String, PkiError> {
    Ok(sha256_hex(&der_of(pem, "certificate")?))
}

/// The SubjectPublicKeyInfo (DER) of a PEM private key.
pub fn key_public_der(key_pem: &str) -> Result<Vec<u8>, PkiError> {
    let key = KeyPair::from_pem(key_pem).map_err(|_| invalid("private key", "not a PEM key"))?;
    Ok(key.subject_public_key_info())
}

/// SHA-256 in hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(ring::digest::digest(&ring::digest::SHA256, bytes))
}
