//! The typed errors of the protocol. Each says what was wrong and where; none
//! carries message contents, so logging one never leaks personal data.

use thiserror::Error;

/// Everything that can be wrong with a message, a topic or a key.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProtocolError {
    /// The input is larger than the limit for its kind.
    #[error("{what} is {len} bytes, over the limit of {max}")]
    TooLarge {
        /// What was too large.
        what: &'static str,
        /// Its size.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The bytes are not a COSE_Sign1 structure.
    #[error("not a COSE_Sign1 message: {0}")]
    Cose(String),
    /// The protected header names no algorithm, or one we do not accept.
    #[error("unsupported signature algorithm: {0}")]
    Algorithm(String),
    /// The protected header carries a critical header we do not understand.
    #[error("unsupported critical header parameter")]
    CriticalHeader,
    /// The message has no `kid`, or one that is too long.
    #[error("missing or invalid key id (kid)")]
    KeyId,
    /// No key is known for the `kid`.
    #[error("unknown key id {0}")]
    UnknownKey(String),
    /// The message has no payload (detached payloads are not used).
    #[error("message has no payload")]
    NoPayload,
    /// The signature does not verify with the sender's key over this topic.
    #[error("signature does not verify")]
    BadSignature,
    /// A key is malformed.
    #[error("invalid key: {0}")]
    Key(String),
    /// The payload is not a Kakanai envelope.
    #[error("payload is not a Kakanai envelope: {0}")]
    Payload(String),
    /// The envelope's protocol version is not one we speak.
    #[error("protocol version {0} is not supported")]
    Version(u16),
    /// The body does not match its kind.
    #[error("body of a {kind} message is invalid: {reason}")]
    Body {
        /// The message kind.
        kind: &'static str,
        /// What was wrong.
        reason: String,
    },
    /// The message kind is unknown.
    #[error("unknown message kind {0:?}")]
    UnknownKind(String),
    /// A topic or identifier is malformed.
    #[error("invalid topic: {0}")]
    Topic(String),
    /// The message was published on a topic that does not fit its kind.
    #[error("message of kind {kind} does not belong on this topic ({reason})")]
    WrongTopic {
        /// The message kind.
        kind: &'static str,
        /// What did not fit.
        reason: &'static str,
    },
    /// The sequence number was seen before or is too old for the replay window.
    #[error("replayed or stale message (sequence {seq})")]
    Replay {
        /// The rejected sequence number.
        seq: u64,
    },
    /// The command's expiry has passed.
    #[error("message expired")]
    Expired,
    /// A personal-data field is malformed (the value itself is never shown).
    #[error("invalid {0}")]
    PersonalData(&'static str),
    /// The sequence store failed or is exhausted.
    #[error("sequence store: {0}")]
    Sequence(String),
}
