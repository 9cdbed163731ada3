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
#![forbid(unsafe_code)]
