//! `kakanai-appliance` — the per-counter daemon.
//!
//! It will own the counter's devices through `kakanai-hw`, keep the signed MQTT link
//! to the control plane (COSE_Sign1 messages from `kakanai-protocol`, a durable
//! outbox in redb), and serve the staff UI to the attached tablet.
//!
//! Status: empty. Built by the "counter appliance" issue.
//!
//! Code map: (none yet).
#![forbid(unsafe_code)]
