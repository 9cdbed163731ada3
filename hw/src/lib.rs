//! `kakanai-hw` — the counter's devices.
//!
//! This crate will hold the device traits, the real drivers (My Number card and
//! driver's licence over PC/SC, IPP printer, serial barcode scanner, GPIO lights)
//! and simulators that speak the same real protocols (a virtual card answering APDUs
//! through pcscd + vpcd, an IPP Everywhere printer, a pseudo-terminal scanner).
//!
//! Status: empty. The drivers are the work of the "Counter hardware" issue; nothing
//! here pretends to read a card yet.
//!
//! Code map: (none yet).
#![forbid(unsafe_code)]
