//! `kakanai-provisioning` — what central IT uses to enrol counters, and the key
//! material every Kakanai program reads.
//!
//! Code map:
//! - [`keyfile`] — secrets in files (Ed25519 seeds, the 個人番号 sealing key): mode 600
//!   or refused, exact length in hex, errors that name the file, never the secret.
//! - [`pki`] — the tenant CA's X.509 work (rcgen, x509-parser): CA, device, broker and
//!   control-plane certificates (ECDSA P-256), CSR checks, the CRL, read-back checks.
//! - [`fleet`] — a tenant's CA directory: settings, claims (stored hashed),
//!   enrolments, devices and their certificates; approve, revoke, rotate. Every
//!   change is one locked, atomic rewrite of `state.json`.
//! - [`claim`] — the device's `claim.toml` (and its QR code).
//! - [`enrol`] — the HTTPS enrolment service (axum over OpenSSL) and the device's
//!   client (ureq), CA pinned by the claim's fingerprint.
//! - [`bundle`] — the provisioning bundle directory an appliance runs from, and the
//!   checks that its parts fit together.
//! - [`broker`] — Mosquitto's TLS listener, CRL and per-device ACL.
//! - `bin/kakanai-provision` — the CLI.
#![forbid(unsafe_code)]

pub mod broker;
pub mod bundle;
pub mod claim;
pub mod enrol;
mod files;
pub mod fleet;
pub mod keyfile;
pub mod pki;
