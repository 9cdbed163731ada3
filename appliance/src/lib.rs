//! `kakanai-appliance` — the per-counter daemon.
//!
//! It will own the counter's devices through `kakanai-hw`, keep the signed MQTT link
//! to the control plane (COSE_Sign1 messages from `kakanai-protocol`), and serve the
//! staff UI to the attached tablet.
//!
//! Code map (in progress; the daemon is `src/bin/kakanai-appliance.rs`):
//! - [`config`] — the TOML configuration and device identity, checked field by field.
//! - [`devices`] — device supervision: card reader watch and reads, print jobs
//!   (chunks reassembled, outcome reported), scanner codes.
//! - [`http`] — the local HTTP server (`/health` today; the staff UI later).
//! - [`link`] — the signed MQTT link: outbox-backed sending, verified commands
//!   executed once and acknowledged, presence birth/will, RPC with timeouts.
//! - [`ops`] — fleet operations from the control plane: the last log lines kept in
//!   memory and sent on request, restart on command (exit code 75 for systemd).
//! - [`ui`] — the staff UI served to the counter's tablet: login relayed to the
//!   control plane, live status over SSE, the card-read screen, the lights.
//! - [`store`] — durable state in redb: the outbox (written before publishing,
//!   removed on the control plane's ack), sequence numbers reserved in blocks, the
//!   boot counter, executed command ids.
#![forbid(unsafe_code)]

pub mod config;
pub mod devices;
pub mod http;
pub mod link;
pub mod ops;
pub mod store;
pub mod ui;
