//! `kakanai-provisioning` — what central IT uses to enrol counters.
//!
//! It will hold the fleet CA, device enrolment by CSR with one-time claims, the
//! provisioning bundle and the CLI.
//!
//! Status: empty. Built by the "Provisioning and fleet security" issue.
//!
//! Code map: (none yet).
#![forbid(unsafe_code)]
