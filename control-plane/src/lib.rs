//! `kakanai-control-plane` — the cloud service.
//!
//! It will hold the procedure catalogue and rules, residents imported from the
//! core systems, applications, forms, staff accounts and groups, the audit log,
//! backups and the device fleet, and talk to appliances only through signed
//! messages from `kakanai-protocol` over MQTT.
//!
//! Status: empty. Built by the "Control plane core" issue and those after it.
//!
//! Code map: (none yet).
#![forbid(unsafe_code)]
