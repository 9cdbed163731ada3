//! `kakanai-tests` — end-to-end tests across processes and real peers.
//!
//! The tests in `tests/tests/` drive Kakanai's binaries as separate processes
//! against real peers started by `kakanai-test-peers` (nested at `tests/peers/`,
//! the one place that starts and stops pcscd+vpcd, Mosquitto, PostgreSQL,
//! ippeveprinter and Chromium for every crate), and against independent
//! implementations of the standards we speak.
//!
//! Code map:
//! - `workspace_bin` — finds a binary built from this workspace for a test to run.
//! - `tests/cose_interop.rs` — `kakanai-inspect` against an independent RFC 9052
//!   implementation (Python `pycose`), in both directions.
//! - `tests/e2e_link.rs` — the real appliance link and the real control-plane
//!   service through Mosquitto: birth → online, 200 reports acked → outbox empty,
//!   RPC, a print-job command and its ack; RPC round-trip p50/p99 over 1,000 calls
//!   (printed with `-- --nocapture`).
#![forbid(unsafe_code)]
