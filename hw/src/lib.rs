//! `kakanai-hw` — the counter's devices, and simulators that speak the same real
//! protocols, so every test runs through the real software stack.
//!
//! The API is synchronous (PC/SC, IPP over HTTP and serial lines are blocking); the
//! appliance runs it on blocking threads.
//!
//! Code map:
//! - [`card`] — card readers over PC/SC: waiting for readers and cards
//!   (status-change events), telling which card is present, reading the My Number
//!   card's 券面事項入力補助AP (through the `myna-card` crate) and the driver's licence.
//! - [`vcard`] — virtual My Number card and driver's licence that answer APDUs
//!   through pcscd's vpcd driver (`kakanai-vcard` binary), from JSON profiles.
//! - [`printer`] — IPP Everywhere printer client and a spool-to-directory printer.
//! - [`scanner`] — 2-D code scanner in USB-serial (CDC-ACM) mode.
//! - [`backoff`] — [`backoff::Backoff`], the jittered exponential backoff every
//!   reconnect loop uses.
//! - [`lights`] — status lights and buttons: simulated, or GPIO on a Raspberry Pi
//!   (feature `rpi`).
#![forbid(unsafe_code)]

pub mod backoff;
pub mod card;
pub mod lights;
pub mod printer;
pub mod scanner;
pub mod vcard;
