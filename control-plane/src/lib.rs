//! `kakanai-control-plane` — the cloud service that holds the procedure logic and
//! the data, and talks to counter appliances only through signed messages from
//! `kakanai-protocol`.
//!
//! Code map (in progress; see ARCHITECTURE.md):
//! - [`model`] — identifiers and records shared by the modules: tenants, staff,
//!   permissions, audit records.
//! - [`audit`] — the tamper-evident operation log: hash chain ([`audit::chain`]),
//!   signed checkpoints, verification, fiscal-year archives.
//! - [`store`] — one store interface with SQLite (embedded default) and PostgreSQL
//!   backends, versioned migrations, one conformance suite for both.
//! - [`rules`] — the procedure catalogue and the determination of every procedure a
//!   life event brings, with reasons and deadlines.
#![forbid(unsafe_code)]

pub mod audit;
pub mod model;
pub mod rules;
pub mod store;
