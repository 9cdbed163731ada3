//! HTTPS for the service's HTTP side (admin UI, `/health`, `/metrics`).
//!
//! ```toml
//! [http]
//! listen = "0.0.0.0:8443"
//! tls_cert_file = "/etc/kakanai/https.pem"   # certificate chain, PEM (leaf first)
//! tls_key_file = "/etc/kakanai/https.key"    # its PKCS#8 key, PEM, mode 0600
//! # or, when a reverse proxy terminates TLS in front of the service:
//! tls_proxy = true
//! trusted_proxies = ["10.0.0.5"]             # whose X-Forwarded-For is believed
//! ```
//!
//! With a certificate the service itself speaks TLS (1.2 or newer, OpenSSL through
//! `native-tls`, the same acceptor as the enrolment service) and the admin cookie is
//! `Secure` and `__Host-`-prefixed. `tls_proxy = true` says browsers reach the service
//! over HTTPS through a proxy: plain HTTP here, secure cookies all the same. Neither
//! set: plain HTTP, for a loopback-only demo. The files are read and checked when the
//! configuration is loaded, so a wrong path or a key that is not the certificate's
//! stops the start with the field's name instead of failing the first browser.
//!
//! Behind a proxy every connection comes from the proxy, so the admin audit would
//! record the proxy's address for every administrator. For connections from an address
//! in `trusted_proxies`, the client is the right-most address of `X-Forwarded-For`
//! that is not itself a trusted proxy (proxies append; only the last hops are ours);
//! from anyone else the header is ignored, so a browser cannot choose its own
//! recorded address.

use std::path::{Path, PathBuf};

use kakanai_provisioning::enrol::TlsListener;
use serde::Deserialize;

use super::ConfigError;

/// The certificate and key the HTTP listener serves (the key never shows in `Debug`).
#[derive(Clone)]
pub struct HttpTls {
    /// The certificate chain, PEM.
    pub cert_pem: String,
    /// The private key, PKCS#8 PEM.
    pub key_pem: String,
}

impl std::fmt::Debug for HttpTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpTls")
            .field("cert_pem", &format_args!("{} bytes", self.cert_pem.len()))
            .field("key_pem", &"<redacted>")
            .finish()
    }
}

/// How browsers reach the HTTP side.
#[derive(Debug, Clone, Default)]
pub struct HttpSecurity {
    /// The service's own TLS certificate, if it terminates TLS itself.
    pub tls: Option<HttpTls>,
    /// A reverse proxy in front terminates TLS.
    pub behind_tls_proxy: bool,
    /// Proxies whose `X-Forwarded-For` names the client.
    pub trusted_proxies: Vec<std::net::IpAddr>,
}

impl HttpSecurity {
    /// Browsers reach the service over HTTPS (cookies get `Secure`).
    pub fn https(&self) -> bool {
        self.tls.is_some() || self.behind_tls_proxy
    }

    /// Reads the `[http]` TLS settings of the configuration file at `path`.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        #[derive(Deserialize, Default)]
        struct File {
            #[serde(default)]
            http: Section,
        }
        #[derive(Deserialize, Default)]
        struct Section {
            tls_cert_file: Option<PathBuf>,
            tls_key_file: Option<PathBuf>,
            #[serde(default)]
            tls_proxy: bool,
            #[serde(default)]
            trusted_proxies: Vec<String>,
        }
        let file: File = toml::from_str(&text).map_err(|e| ConfigError::Syntax {
            path: path.to_owned(),
            message: e.to_string(),
        })?;
        let s = file.http;
        let tls = match (s.tls_cert_file, s.tls_key_file) {
            (None, None) => None,
            (Some(cert), Some(key)) => Some(HttpTls::from_files(&cert, &key)?),
            (Some(_), None) => {
                return Err(invalid(
                    "http.tls_key_file",
                    "missing: give the certificate's key too",
                ))
            }
            (None, Some(_)) => {
                return Err(invalid(
                    "http.tls_cert_file",
                    "missing: give the key's certificate too",
                ))
            }
        };
        if tls.is_some() && s.tls_proxy {
            return Err(invalid(
                "http.tls_proxy",
                "either the service terminates TLS (tls_cert_file) or a proxy does, not both",
            ));
        }
        let trusted_proxies = s
            .trusted_proxies
            .iter()
            .map(|p| {
                p.parse().map_err(|_| {
                    invalid(
                        "http.trusted_proxies",
                        format!("{p:?} is not an IP address"),
                    )
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(Self {
            tls,
            behind_tls_proxy: s.tls_proxy,
            trusted_proxies,
        })
    }
}

impl HttpTls {
    /// Reads and checks a certificate and its key: the certificate parses, the key is
    /// readable by nobody but the service, and it is the certificate's key.
    pub fn from_files(cert: &Path, key: &Path) -> Result<Self, ConfigError> {
        let cert_pem = std::fs::read_to_string(cert).map_err(|e| {
            invalid(
                "http.tls_cert_file",
                format!("cannot read {}: {e}", cert.display()),
            )
        })?;
        let info = kakanai_provisioning::pki::inspect(&cert_pem, "HTTPS certificate")
            .map_err(|e| invalid("http.tls_cert_file", e.to_string()))?;
        let key_pem = kakanai_provisioning::keyfile::read_private(key)
            .map_err(|e| invalid("http.tls_key_file", e.to_string()))?;
        let key_public = kakanai_provisioning::pki::key_public_der(&key_pem)
            .map_err(|e| invalid("http.tls_key_file", e.to_string()))?;
        if key_public != info.public_key_der {
            return Err(invalid(
                "http.tls_key_file",
                "this key does not belong to the certificate in http.tls_cert_file",
            ));
        }
        Ok(Self { cert_pem, key_pem })
    }
}

fn invalid(field: &'static str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        field,
        message: message.into(),
    }
}

/// The HTTP listener: plain, or TLS terminated here.
pub(super) enum Listener {
    /// Plain HTTP (loopback demo, or behind a TLS proxy).
    Plain(tokio::net::TcpListener),
    /// HTTPS.
    Tls(TlsListener),
}

/// The peer address of a TLS connection (axum knows it only for plain TCP).
#[derive(Clone, Copy, Debug)]
pub(super) struct TlsPeer(std::net::SocketAddr);

impl axum::extract::connect_info::Connected<axum::serve::IncomingStream<'_, TlsListener>>
    for TlsPeer
{
    fn connect_info(stream: axum::serve::IncomingStream<'_, TlsListener>) -> Self {
        Self(*stream.remote_addr())
    }
}

/// Hands the TLS peer's address on as the `ConnectInfo<SocketAddr>` the handlers read
/// (the admin UI records where an administrator acts from), as over plain HTTP.
pub(super) fn with_tls_peer(app: axum::Router) -> axum::Router {
    app.layer(axum::middleware::map_request(
        |mut request: axum::extract::Request| async move {
            let peer = request
                .extensions()
                .get::<axum::extract::ConnectInfo<TlsPeer>>()
                .map(|c| c.0 .0);
            if let Some(addr) = peer {
                request
                    .extensions_mut()
                    .insert(axum::extract::ConnectInfo(addr));
            }
            request
        },
    ))
}

/// The client's address from `X-Forwarded-For` when the connection comes from a
/// trusted proxy: the right-most entry that is not a trusted proxy itself. `None`
/// when the peer is not trusted or the header names no usable address.
pub fn forwarded_client(
    peer: std::net::IpAddr,
    forwarded_for: Option<&str>,
    trusted: &[std::net::IpAddr],
) -> Option<std::net::IpAddr> {
    if !trusted.contains(&peer) {
        return None;
    }
    let mut last_trusted = None;
    for hop in forwarded_for?.rsplit(',') {
        let ip: std::net::IpAddr = hop.trim().parse().ok()?;
        if !trusted.contains(&ip) {
            return Some(ip);
        }
        last_trusted = Some(ip);
    }
    // Every hop is one of ours: the left-most is as far back as we can see.
    last_trusted
}

/// Replaces the peer address the handlers read (`ConnectInfo<SocketAddr>`) with the
/// client named by a trusted proxy ([`forwarded_client`]).
pub(super) fn with_forwarded_for(
    app: axum::Router,
    trusted: Vec<std::net::IpAddr>,
) -> axum::Router {
    if trusted.is_empty() {
        return app;
    }
    let trusted = std::sync::Arc::new(trusted);
    app.layer(axum::middleware::map_request(
        move |mut request: axum::extract::Request| {
            let trusted = std::sync::Arc::clone(&trusted);
            async move {
                let peer = request
                    .extensions()
                    .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
                    .map(|c| c.0);
                let header = request
                    .headers()
                    .get("x-forwarded-for")
                    .and_then(|v| v.to_str().ok());
                if let Some(peer) = peer {
                    if let Some(client) = forwarded_client(peer.ip(), header, &trusted) {
                        request.extensions_mut().insert(axum::extract::ConnectInfo(
                            std::net::SocketAddr::new(client, 0),
                        ));
                    }
                }
                request
            }
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::forwarded_client;
    use std::net::IpAddr;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn only_a_trusted_proxy_names_the_client() {
        let trusted = [ip("10.0.0.5"), ip("10.0.0.6")];
        // A browser talking to us directly cannot choose its recorded address.
        assert_eq!(
            forwarded_client(ip("192.0.2.9"), Some("203.0.113.1"), &trusted),
            None
        );
        // Through our proxy: the right-most hop that is not ours.
        assert_eq!(
            forwarded_client(ip("10.0.0.5"), Some("198.51.100.7, 203.0.113.1"), &trusted),
            Some(ip("203.0.113.1"))
        );
        // Through two of our proxies; a forged left part is not believed.
        assert_eq!(
            forwarded_client(
                ip("10.0.0.5"),
                Some("1.2.3.4, 203.0.113.1, 10.0.0.6"),
                &trusted
            ),
            Some(ip("203.0.113.1"))
        );
        // Garbage or nothing: the proxy's own address stays.
        assert_eq!(
            forwarded_client(ip("10.0.0.5"), Some("<script>"), &trusted),
            None
        );
        assert_eq!(forwarded_client(ip("10.0.0.5"), None, &trusted), None);
    }
}
