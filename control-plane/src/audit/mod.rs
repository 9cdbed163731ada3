//! The tamper-evident audit log (N7, N8).
//!
//! - [`chain`] — how each entry's hash covers its record and the previous hash.
pub mod chain;
