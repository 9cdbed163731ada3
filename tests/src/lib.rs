//! `kakanai-tests` — end-to-end tests across the appliance and the control plane,
//! with real peers started by `kakanai-test-peers` (nested at `tests/peers/`, the one
//! place that starts and stops pcscd+vpcd, Mosquitto, PostgreSQL, ippeveprinter and
//! Chromium for every crate).
//!
//! Code map:
//! - `tests/common/` — the city, counter and keys the tests share, a control-plane
//!   store with that counter registered, the appliance link's configuration.
//! - `tests/e2e_link.rs` — the real appliance link and the real control-plane
//!   service through Mosquitto: birth → online, 200 reports acked → outbox empty,
//!   RPC, a print-job command and its ack; RPC round-trip p50/p99 over 1,000 calls
//!   (printed with `-- --nocapture`).
//! - `tests/e2e_embedded.rs` — the same link through the control plane's in-process
//!   broker: a command and its ack, and the signed will after a power cut.
//!
//! (The COSE interoperability tests live with the protocol, in
//! `protocol/tests/interop.rs`.)
//! - `src/stack.rs` — the whole counter as separate processes (control plane, broker,
//!   appliance, pcscd + vpcd, ippeveprinter, a pty scanner), for `scripts/demo`
//!   (`kakanai-demo`) and the counter end-to-end tests.
#![forbid(unsafe_code)]

pub mod stack;
