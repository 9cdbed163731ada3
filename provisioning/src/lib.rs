//! `kakanai-provisioning` — what central IT uses to enrol counters, and the key
//! material every Kakanai program reads.
//!
//! Code map:
//! - [`keyfile`] — secrets in files (Ed25519 seeds, the 個人番号 sealing key): mode 600
//!   or refused, exact length in hex, errors that name the file, never the secret.
//!
//! Still to come (the provisioning issue): the fleet CA, device enrolment by CSR with
//! one-time claims, the provisioning bundle and the CLI.
#![forbid(unsafe_code)]

pub mod keyfile;
