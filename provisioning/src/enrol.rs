//! Enrolment over the network: the thin HTTPS transport around
//! [`CaDir::submit`](crate::fleet::CaDir::submit), and the device's side.
//!
//! The service (`kakanai-provision serve-enrolment`, axum over OpenSSL TLS with a
//! server certificate from the tenant CA) answers:
//! - `GET /v1/ca.pem` — the CA certificate. The device fetches it without trusting
//!   anything yet and accepts it only if its SHA-256 equals the claim's
//!   `ca_fingerprint`; every later request is TLS verified against that CA alone.
//! - `POST /v1/enrol` — JSON [`EnrolRequest`]; `200` with [`EnrolResponse`] (the
//!   bundle data once approved, none while pending), or `4xx` with
//!   `{"error": "..."}` saying why (wrong tenant, unknown / used / expired claim).
//!   Repeating the same request is how the device polls.
//! - `POST /v1/renew` — JSON [`RenewRequest`]: a CSR for a new TLS key, signed with
//!   the device's registered Ed25519 message key; `200` with the renewed
//!   [`BundleData`]. Used by [`renew`] at two thirds of the certificate's validity; the
//!   old certificate stays valid until it expires (the overlap).
//!
//! The device ([`enrol`]) makes its TLS key and Ed25519 message key first and keeps
//! them in the bundle directory (mode 600), so a restart mid-enrolment resumes with
//! the same keys instead of burning the claim.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

use crate::bundle::BundleData;
use crate::bundle::{write_bundle, Bundle, DeviceKeys};
use crate::claim::ClaimFile;
use crate::fleet::{CaDir, EnrolError, EnrolRequest, EnrolResponse, RenewRequest};
use crate::pki;

fn now_s() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

impl IntoResponse for EnrolError {
    fn into_response(self) -> Response {
        let status = match &self {
            EnrolError::WrongTenant { .. } | EnrolError::UnknownClaim | EnrolError::Revoked => {
                StatusCode::FORBIDDEN
            }
            EnrolError::ClaimUsed => StatusCode::CONFLICT,
            EnrolError::ClaimExpired => StatusCode::GONE,
            EnrolError::BadRequest(_) => StatusCode::BAD_REQUEST,
            EnrolError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        (
            status,
            Json(serde_json::json!({ "error": self.to_string() })),
        )
            .into_response()
    }
}

/// The enrolment service's routes over the CA directory.
pub fn router(ca: Arc<CaDir>) -> Router {
    Router::new()
        .route("/v1/ca.pem", get(ca_pem))
        .route("/v1/enrol", post(submit))
        .route("/v1/renew", post(renew_request))
        .with_state(ca)
}

async fn ca_pem(State(ca): State<Arc<CaDir>>) -> Result<String, EnrolError> {
    ca.ca_pem().map_err(EnrolError::from)
}

async fn submit(
    State(ca): State<Arc<CaDir>>,
    Json(request): Json<EnrolRequest>,
) -> Result<Json<EnrolResponse>, EnrolError> {
    // The CA directory is files under a lock: off the async workers.
    let answer = tokio::task::spawn_blocking(move || ca.submit(&request, now_s()))
        .await
        .map_err(|_| EnrolError::Internal("worker stopped".into()))?;
    match &answer {
        Ok(r) => tracing::info!(
            enrolment = %r.enrolment,
            device = %r.device,
            issued = r.bundle.is_some(),
            "enrolment request"
        ),
        Err(e) => tracing::warn!(reason = %e, "enrolment refused"),
    }
    answer.map(Json)
}

async fn renew_request(
    State(ca): State<Arc<CaDir>>,
    Json(request): Json<RenewRequest>,
) -> Result<Json<BundleData>, EnrolError> {
    let device = request.device.clone();
    let answer = tokio::task::spawn_blocking(move || ca.renew(&request, now_s()))
        .await
        .map_err(|_| EnrolError::Internal("worker stopped".into()))?;
    match &answer {
        Ok(_) => tracing::info!(%device, "certificate renewed"),
        Err(e) => tracing::warn!(%device, reason = %e, "renewal refused"),
    }
    answer.map(Json)
}

/// A TLS listener for axum: accepts TCP connections and completes TLS handshakes in
/// tasks of their own (a slow client cannot hold up the others).
pub struct TlsListener {
    accepted: mpsc::Receiver<(tokio_native_tls::TlsStream<TcpStream>, SocketAddr)>,
    local: SocketAddr,
}

impl TlsListener {
    /// Serves TLS on `listener` with the given certificate chain and PKCS#8 key (PEM).
    pub fn new(listener: TcpListener, cert_pem: &str, key_pem: &str) -> Result<Self, String> {
        let identity = native_tls::Identity::from_pkcs8(cert_pem.as_bytes(), key_pem.as_bytes())
            .map_err(|e| format!("server certificate: {e}"))?;
        let acceptor = native_tls::TlsAcceptor::builder(identity)
            .min_protocol_version(Some(native_tls::Protocol::Tlsv12))
            .build()
            .map_err(|e| format!("TLS: {e}"))?;
        let acceptor = Arc::new(tokio_native_tls::TlsAcceptor::from(acceptor));
        let local = listener.local_addr().map_err(|e| e.to_string())?;
        let (tx, accepted) = mpsc::channel(64);
        tokio::spawn(async move {
            loop {
                let Ok((tcp, peer)) = listener.accept().await else {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                };
                let (acceptor, sender) = (Arc::clone(&acceptor), tx.clone());
                tokio::spawn(async move {
                    let handshake =
                        tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await;
                    if let Ok(Ok(tls)) = handshake {
                        let _ = sender.send((tls, peer)).await;
                    }
                });
                if tx.is_closed() {
                    return;
                }
            }
        });
        Ok(Self { accepted, local })
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = tokio_native_tls::TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.accepted.recv().await {
            Some(conn) => conn,
            // The accept task ended: nothing more will ever come.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}

/// Why the device's enrolment failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The claim or the bundle directory is unusable.
    #[error("{0}")]
    Local(String),
    /// The service could not be reached or answered nonsense (worth retrying).
    #[error("enrolment service unreachable: {0}")]
    Unreachable(String),
    /// The CA the service presents is not the one the claim pins.
    #[error("the enrolment service's CA does not match the claim's fingerprint: not enrolling")]
    WrongCa,
    /// The service refused the claim (not worth retrying).
    #[error("enrolment refused: {0}")]
    Refused(String),
}

/// Where the device's enrolment stands.
pub enum Progress {
    /// Submitted; central IT has not approved it yet.
    Pending {
        /// The enrolment id, to tell central IT.
        enrolment: String,
    },
    /// Enrolled: the bundle is written and checked.
    Enrolled(Box<Bundle>),
}

fn agent(tls: ureq::tls::TlsConfig) -> ureq::Agent {
    ureq::Agent::config_builder()
        .tls_config(tls)
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(15)))
        .build()
        .into()
}

fn unreachable(e: impl std::fmt::Display) -> ClientError {
    ClientError::Unreachable(e.to_string())
}

/// One enrolment step for the device holding `claim`, with its bundle directory
/// `dir`: makes the keys if needed, submits (or re-submits) the request, and writes
/// the bundle once issued.
pub fn enrol_once(claim: &ClaimFile, dir: &Path) -> Result<Progress, ClientError> {
    claim.check().map_err(ClientError::Local)?;
    let pinned = claim.fingerprint().map_err(ClientError::Local)?;
    let keys = match DeviceKeys::read(dir).map_err(ClientError::Local)? {
        Some(k) => k,
        None => {
            let k = DeviceKeys::generate().map_err(ClientError::Local)?;
            k.write(dir).map_err(|e| {
                ClientError::Local(format!("cannot write keys into {}: {e}", dir.display()))
            })?;
            k
        }
    };
    let base = claim.endpoint.trim_end_matches('/');
    // The CA first, trusted only through the claim's fingerprint.
    let unverified = ureq::tls::TlsConfig::builder()
        .provider(ureq::tls::TlsProvider::NativeTls)
        .disable_verification(true)
        .build();
    let mut answer = agent(unverified)
        .get(&format!("{base}/v1/ca.pem"))
        .call()
        .map_err(unreachable)?;
    if !answer.status().is_success() {
        return Err(unreachable(format!("GET /v1/ca.pem: {}", answer.status())));
    }
    let ca_pem = answer.body_mut().read_to_string().map_err(unreachable)?;
    match pki::fingerprint(&ca_pem) {
        Ok(f) if f == pinned => {}
        _ => return Err(ClientError::WrongCa),
    }
    let root = ureq::tls::Certificate::from_pem(ca_pem.as_bytes()).map_err(unreachable)?;
    let pinned_tls = ureq::tls::TlsConfig::builder()
        .provider(ureq::tls::TlsProvider::NativeTls)
        .root_certs(ureq::tls::RootCerts::Specific(Arc::new(vec![root])))
        .build();
    let request = EnrolRequest {
        tenant: claim.tenant.clone(),
        token: claim.token.clone(),
        csr_pem: keys.csr_pem().map_err(ClientError::Local)?,
        message_public_key: hex::encode(keys.message_key.verifying_key().as_bytes()),
    };
    let body = serde_json::to_string(&request).map_err(|e| ClientError::Local(e.to_string()))?;
    let mut answer = agent(pinned_tls)
        .post(&format!("{base}/v1/enrol"))
        .header("content-type", "application/json")
        .send(&body)
        .map_err(unreachable)?;
    let status = answer.status();
    let text = answer.body_mut().read_to_string().map_err(unreachable)?;
    if !status.is_success() {
        return Err(refusal(status, &text));
    }
    let response: EnrolResponse = serde_json::from_str(&text).map_err(unreachable)?;
    let Some(data) = response.bundle else {
        return Ok(Progress::Pending {
            enrolment: response.enrolment,
        });
    };
    if data.tenant != claim.tenant
        || pki::fingerprint(&data.ca_pem).ok().as_deref() != Some(&pinned)
    {
        return Err(ClientError::WrongCa);
    }
    write_bundle(dir, &data).map_err(|e| {
        ClientError::Local(format!(
            "cannot write the bundle into {}: {e}",
            dir.display()
        ))
    })?;
    let bundle = Bundle::load(dir, now_s()).map_err(|e| ClientError::Local(e.to_string()))?;
    Ok(Progress::Enrolled(Box::new(bundle)))
}

/// Enrols, asking again while the enrolment waits for approval or the service is
/// unreachable (after half a second, then twice as long each time up to `poll`), for
/// at most `timeout`. A refusal ends it at once.
pub fn enrol(
    claim: &ClaimFile,
    dir: &Path,
    poll: Duration,
    timeout: Duration,
) -> Result<Bundle, ClientError> {
    let deadline = std::time::Instant::now() + timeout;
    // Approval by central IT may come at once (pre-approved, or someone watching) or
    // hours later: ask soon at first, then less and less often.
    let mut delay = poll.min(Duration::from_millis(500));
    loop {
        let last = match enrol_once(claim, dir) {
            Ok(Progress::Enrolled(bundle)) => return Ok(*bundle),
            Ok(Progress::Pending { enrolment }) => {
                tracing::info!(%enrolment, "enrolment waiting for approval by central IT");
                None
            }
            Err(e @ ClientError::Unreachable(_)) => {
                tracing::warn!(error = %e, "enrolment service unreachable; retrying");
                Some(e)
            }
            Err(e) => return Err(e),
        };
        if std::time::Instant::now() + delay > deadline {
            return Err(last.unwrap_or_else(|| {
                ClientError::Unreachable("not approved before the timeout".into())
            }));
        }
        std::thread::sleep(delay);
        delay = (delay * 2).min(poll);
    }
}

/// Device-initiated renewal for the bundle in `dir`: a new TLS key made here, its CSR
/// signed with the device's message key, sent to the enrolment service (TLS trusting
/// only the bundle's CA); the new key and certificate replace the old ones in the
/// bundle. Returns the renewed bundle. The old certificate stays valid until it
/// expires, so a connection made with it keeps working meanwhile.
pub fn renew(dir: &Path) -> Result<Bundle, ClientError> {
    let bundle = Bundle::load(dir, now_s()).map_err(|e| ClientError::Local(e.to_string()))?;
    let base = bundle.enrolment_url.clone().ok_or_else(|| {
        ClientError::Local("the bundle names no enrolment_url to renew at".into())
    })?;
    let key = pki::new_tls_key().map_err(|e| ClientError::Local(e.to_string()))?;
    let csr_pem = pki::csr_pem(&key).map_err(|e| ClientError::Local(e.to_string()))?;
    let time = now_s();
    let message = crate::bundle::renewal_message(
        bundle.tenant.as_str(),
        bundle.device.as_str(),
        time,
        &csr_pem,
    );
    let request = RenewRequest {
        tenant: bundle.tenant.to_string(),
        device: bundle.device.to_string(),
        csr_pem,
        time,
        signature: hex::encode(bundle.message_key.sign(&message)),
    };
    let root = ureq::tls::Certificate::from_pem(bundle.ca_pem.as_bytes()).map_err(unreachable)?;
    let tls = ureq::tls::TlsConfig::builder()
        .provider(ureq::tls::TlsProvider::NativeTls)
        .root_certs(ureq::tls::RootCerts::Specific(Arc::new(vec![root])))
        .build();
    let body = serde_json::to_string(&request).map_err(|e| ClientError::Local(e.to_string()))?;
    let mut answer = agent(tls)
        .post(&format!("{}/v1/renew", base.trim_end_matches('/')))
        .header("content-type", "application/json")
        .send(&body)
        .map_err(unreachable)?;
    let status = answer.status();
    let text = answer.body_mut().read_to_string().map_err(unreachable)?;
    if !status.is_success() {
        return Err(refusal(status, &text));
    }
    let data: BundleData = serde_json::from_str(&text).map_err(unreachable)?;
    let info = pki::inspect(&data.cert_pem, "renewed certificate")
        .map_err(|e| ClientError::Local(e.to_string()))?;
    use rcgen::PublicKeyData as _;
    if data.device != bundle.device.as_str()
        || info.public_key_der != key.subject_public_key_info()
        || pki::verify_issued_by(&data.cert_pem, &bundle.ca_pem).is_err()
    {
        return Err(ClientError::WrongCa);
    }
    crate::bundle::install_renewal(dir, &key.serialize_pem(), &data.cert_pem).map_err(|e| {
        ClientError::Local(format!(
            "cannot install the renewal in {}: {e}",
            dir.display()
        ))
    })?;
    Bundle::load(dir, now_s()).map_err(|e| ClientError::Local(e.to_string()))
}

fn refusal(status: axum::http::StatusCode, text: &str) -> ClientError {
    let reason = serde_json::from_str::<serde_json::Value>(text)
        .ok()
        .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_owned))
        .unwrap_or_else(|| status.to_string());
    if status.is_client_error() {
        ClientError::Refused(reason)
    } else {
        ClientError::Unreachable(reason)
    }
}
