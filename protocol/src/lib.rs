//! `kakanai-protocol` — the signed wire protocol between a counter appliance and
//! the control plane. Pure code: no I/O, no async runtime, no clock (callers pass
//! the time in), so every rule here is testable without sockets.
//!
//! A message on the wire is a COSE_Sign1 (RFC 9052) signed with Ed25519, whose
//! payload is a CBOR map (the [`Envelope`]) and whose `external_aad` is the MQTT
//! topic it is published on, so a message cannot be replayed on another topic.
//!
//! Code map:
//! - [`keys`] — Ed25519 [`SigningKey`] / [`VerifyingKey`] and the [`KeyId`] carried
//!   as `kid`.
//! - [`cose`] — [`cose::sign`] and [`cose::verify`]: the COSE_Sign1 envelope only
//!   (alg -19 `Ed25519` on signing, -19 or -8 `EdDSA` on verifying).
//! - [`envelope`] — the signed payload: version, message id, sender sequence, sender
//!   time, correlation id, expiry, kind, body; CBOR encode/decode.
//! - [`catalogue`] — typed bodies for every [`Kind`] of message, and the generic RPC
//!   request/response that later features extend with [`catalogue::RpcMethod`]s.
//! - [`personal`] — types holding personal data ([`personal::MyNumber`],
//!   [`personal::CardFace`]) that redact themselves in `Debug` and in human-readable
//!   serialisations (JSON), and travel in full only inside signed CBOR.
//! - [`topic`] — `kakanai/v1/{tenant}/dev/{device}/{up|down}/{kind}` and presence
//!   topics, built and parsed with validated identifiers.
//! - [`replay`] — per-sender sliding replay window, advanced only after a verified
//!   signature.
//! - [`sequence`] — the sender's sequence allocator that reserves blocks through a
//!   caller-provided store, so a restart never reuses a number.
//! - [`seal`] — the one-call paths: [`seal::seal`] (encode + sign) and
//!   [`seal::Opener`] (size check → verify → decode → topic check → replay).
//! - [`examples`] — a synthetic example body of every kind (docs, tools, vectors).
//! - [`limits`] — size limits; [`error`] — the typed errors every input maps to.
//!
//! Invariant: no function here panics on input from outside the process; every
//! malformed input is a [`ProtocolError`].
#![forbid(unsafe_code)]

pub mod catalogue;
pub mod cose;
pub mod counter;
pub mod envelope;
pub mod error;
pub mod examples;
pub mod keys;
pub mod limits;
pub mod personal;
pub mod replay;
pub mod residents;
pub mod seal;
pub mod sequence;
pub mod staff;
pub mod topic;

pub use catalogue::{Body, Kind};
pub use envelope::{Envelope, MessageId, PROTOCOL_VERSION};
pub use error::ProtocolError;
pub use keys::{KeyId, SigningKey, VerifyingKey};
pub use topic::Topic;
