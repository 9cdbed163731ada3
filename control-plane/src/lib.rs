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
//! - [`rpc`] — RPC dispatch: handlers by method name, the caller's context and
//!   staff session, permission checks.
//! - [`service`] — the running service: MQTT ingest, RPC, presence, commands,
//!   `/health`, `/metrics`, the schedules.
//! - [`staff`] — staff accounts, passwords, lockout, sessions, groups, import.
//! - [`residents`] — residents and core-system linkage: import (full and delta),
//!   drop directory, lookup, the resident RPCs.
//! - [`applications`] — application records (draft → printed → accepted → exported
//!   → completed, or cancelled), printing at the counter, the RPA/data export.
//! - [`admin`] — the administrators' web UI (fleet, staff and groups, audit search).
//! - [`counter`] — the counter flows' RPCs (issue 9): certificate requests and
//!   life-event visits from the card to the accepted forms.
//! - [`backup`] — encrypted online backups verified by restoring them into a scratch
//!   store, retention by business days, restore to a point (issue 11).
//! - [`rules`] — the procedure catalogue and the determination of every procedure a
//!   life event brings, with reasons and deadlines.
#![forbid(unsafe_code)]

pub mod admin;
pub mod applications;
pub mod audit;
pub mod backup;
pub mod counter;
pub mod model;
pub mod residents;
pub mod rpc;
pub mod rules;
pub mod service;
pub mod staff;
pub mod store;
