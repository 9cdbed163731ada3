//! The signed payload: a CBOR map with the protocol version, message id, sender
//! sequence number, sender time, correlation id, expiry, kind and body.
//!
//! Field names on the wire are short text keys (`v`, `id`, `seq`, `time`, `corr`,
//! `exp`, `kind`, `body`). Unknown keys are ignored, so a later minor version can
//! add fields; a different `v` is refused.

use std::fmt;

use ring::rand::{SecureRandom, SystemRandom};
use serde::{Deserialize, Serialize};

use crate::catalogue::{serde_bytes_compat, Body, Kind};
use crate::error::ProtocolError;
use crate::limits::MAX_MESSAGE_BYTES;

/// The protocol version this crate speaks.
pub const PROTOCOL_VERSION: u16 = 1;

/// A message id: 16 random bytes, unique per message; used for acks,
/// de-duplication and correlation.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct MessageId(#[serde(with = "id_bytes")] [u8; 16]);

impl MessageId {
    /// A fresh random id.
    pub fn random() -> Result<Self, ProtocolError> {
        let mut b = [0u8; 16];
        SystemRandom::new()
            .fill(&mut b)
            .map_err(|_| ProtocolError::Sequence("system random generator failed".into()))?;
        Ok(Self(b))
    }

    /// An id from its bytes.
    pub const fn from_bytes(bytes: [u8; 16]) -> Self {
        Self(bytes)
    }

    /// The id's bytes.
    pub fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }
}

impl fmt::Debug for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MessageId({})", hex::encode(self.0))
    }
}

impl fmt::Display for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

mod id_bytes {
    use serde::{Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(b: &[u8; 16], s: S) -> Result<S::Ok, S::Error> {
        super::serde_bytes_compat::serialize(b, s)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 16], D::Error> {
        let v = super::serde_bytes_compat::deserialize(d)?;
        v.try_into()
            .map_err(|_| serde::de::Error::custom("a message id is 16 bytes"))
    }
}

/// A Kakanai message before signing / after verification.
#[derive(Debug, Clone, PartialEq)]
pub struct Envelope {
    /// Unique id of this message.
    pub id: MessageId,
    /// The sender's sequence number (monotonic per sender key, across restarts).
    pub seq: u64,
    /// Sender's clock, milliseconds since the Unix epoch (UTC).
    pub time_ms: i64,
    /// For replies and acks: the id of the message this answers.
    pub correlation: Option<MessageId>,
    /// For commands: not to be executed after this time (ms since the epoch).
    pub expires_ms: Option<i64>,
    /// The typed body; its kind is the message's kind.
    pub body: Body,
}

#[derive(Serialize)]
struct WireOut<'a> {
    v: u16,
    id: &'a MessageId,
    seq: u64,
    time: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    corr: Option<&'a MessageId>,
    #[serde(skip_serializing_if = "Option::is_none")]
    exp: Option<i64>,
    kind: &'static str,
    body: ciborium::Value,
}

#[derive(Deserialize)]
struct WireIn {
    v: u16,
    id: MessageId,
    seq: u64,
    time: i64,
    #[serde(default)]
    corr: Option<MessageId>,
    #[serde(default)]
    exp: Option<i64>,
    kind: String,
    body: ciborium::Value,
}

impl Envelope {
    /// A new message with a fresh random id.
    pub fn new(seq: u64, time_ms: i64, body: Body) -> Result<Self, ProtocolError> {
        Ok(Self {
            id: MessageId::random()?,
            seq,
            time_ms,
            correlation: None,
            expires_ms: None,
            body,
        })
    }

    /// The same message as a reply to `id`.
    pub fn replying_to(mut self, id: MessageId) -> Self {
        self.correlation = Some(id);
        self
    }

    /// The same message, not to be executed after `expires_ms`.
    pub fn expiring_at(mut self, expires_ms: i64) -> Self {
        self.expires_ms = Some(expires_ms);
        self
    }

    /// The message's kind.
    pub fn kind(&self) -> Kind {
        self.body.kind()
    }

    /// Whether the message's expiry has passed at `now_ms`.
    pub fn is_expired(&self, now_ms: i64) -> bool {
        self.expires_ms.is_some_and(|exp| now_ms > exp)
    }

    /// The CBOR payload.
    pub fn encode(&self) -> Result<Vec<u8>, ProtocolError> {
        let wire = WireOut {
            v: PROTOCOL_VERSION,
            id: &self.id,
            seq: self.seq,
            time: self.time_ms,
            corr: self.correlation.as_ref(),
            exp: self.expires_ms,
            kind: self.kind().name(),
            body: self.body.to_value()?,
        };
        let mut out = Vec::with_capacity(256);
        ciborium::into_writer(&wire, &mut out)
            .map_err(|e| ProtocolError::Payload(e.to_string()))?;
        if out.len() > MAX_MESSAGE_BYTES {
            return Err(ProtocolError::TooLarge {
                what: "payload",
                len: out.len(),
                max: MAX_MESSAGE_BYTES,
            });
        }
        Ok(out)
    }

    /// Decodes a CBOR payload.
    pub fn decode(bytes: &[u8]) -> Result<Self, ProtocolError> {
        if bytes.len() > MAX_MESSAGE_BYTES {
            return Err(ProtocolError::TooLarge {
                what: "payload",
                len: bytes.len(),
                max: MAX_MESSAGE_BYTES,
            });
        }
        let mut reader = bytes;
        let wire: WireIn = ciborium::from_reader(&mut reader)
            .map_err(|e| ProtocolError::Payload(e.to_string()))?;
        if !reader.is_empty() {
            return Err(ProtocolError::Payload(format!(
                "{} bytes after the payload map",
                reader.len()
            )));
        }
        if wire.v != PROTOCOL_VERSION {
            return Err(ProtocolError::Version(wire.v));
        }
        let kind = Kind::from_name(&wire.kind)?;
        Ok(Self {
            id: wire.id,
            seq: wire.seq,
            time_ms: wire.time,
            correlation: wire.corr,
            expires_ms: wire.exp,
            body: Body::from_value(kind, wire.body)?,
        })
    }

    /// Whether the message may carry personal data (see [`Body::carries_personal_data`]).
    pub fn carries_personal_data(&self) -> bool {
        self.body.carries_personal_data()
    }

    /// The message as JSON for people (inspect, diagnostics): personal data redacted.
    pub fn to_diagnostic_json(&self) -> serde_json::Value {
        serde_json::json!({
            "v": PROTOCOL_VERSION,
            "id": self.id.to_string(),
            "seq": self.seq,
            "time_ms": self.time_ms,
            "correlation": self.correlation.map(|c| c.to_string()),
            "expires_ms": self.expires_ms,
            "kind": self.kind().name(),
            "body": self.body.to_diagnostic_json(),
        })
    }
}

/// A CBOR payload as JSON, in full, with nothing redacted: for those entitled to
/// see personal data (an auditor's `kakanai-inspect --show-personal-data`) and for
/// test vectors. Byte strings become `"h'…'"` (CBOR diagnostic notation), tags are
/// dropped, non-text map keys are written as their JSON text.
pub fn payload_to_json(bytes: &[u8]) -> Result<serde_json::Value, ProtocolError> {
    let value: ciborium::Value =
        ciborium::from_reader(bytes).map_err(|e| ProtocolError::Payload(e.to_string()))?;
    Ok(cbor_to_json(&value))
}

fn cbor_to_json(v: &ciborium::Value) -> serde_json::Value {
    use ciborium::Value as C;
    use serde_json::Value as J;
    match v {
        C::Integer(i) => {
            let i = i128::from(*i);
            i64::try_from(i)
                .map(J::from)
                .or_else(|_| u64::try_from(i).map(J::from))
                .unwrap_or_else(|_| J::String(i.to_string()))
        }
        C::Bytes(b) => J::String(format!("h'{}'", hex::encode(b))),
        C::Float(f) => serde_json::Number::from_f64(*f).map_or(J::Null, J::Number),
        C::Text(t) => J::String(t.clone()),
        C::Bool(b) => J::Bool(*b),
        C::Null => J::Null,
        C::Tag(_, inner) => cbor_to_json(inner),
        C::Array(items) => J::Array(items.iter().map(cbor_to_json).collect()),
        C::Map(entries) => J::Object(
            entries
                .iter()
                .map(|(k, v)| {
                    let key = match k {
                        C::Text(t) => t.clone(),
                        other => cbor_to_json(other).to_string(),
                    };
                    (key, cbor_to_json(v))
                })
                .collect(),
        ),
        _ => J::Null,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalogue::{Ack, AckStatus};

    fn sample() -> Envelope {
        Envelope {
            id: MessageId::from_bytes([9; 16]),
            seq: 42,
            time_ms: 1_795_000_000_000,
            correlation: Some(MessageId::from_bytes([1; 16])),
            expires_ms: Some(1_795_000_060_000),
            body: Body::Ack(Ack::of(MessageId::from_bytes([1; 16]), AckStatus::Accepted)),
        }
    }

    #[test]
    fn round_trip() {
        let env = sample();
        assert_eq!(Envelope::decode(&env.encode().unwrap()).unwrap(), env);
    }

    #[test]
    fn other_versions_and_trailing_bytes_are_refused() {
        let mut bytes = sample().encode().unwrap();
        bytes.push(0);
        assert!(matches!(
            Envelope::decode(&bytes),
            Err(ProtocolError::Payload(_))
        ));

        let mut map: ciborium::Value =
            ciborium::from_reader(&sample().encode().unwrap()[..]).unwrap();
        if let ciborium::Value::Map(entries) = &mut map {
            for (k, v) in entries.iter_mut() {
                if k.as_text() == Some("v") {
                    *v = ciborium::Value::Integer(2.into());
                }
            }
        }
        let mut bytes = Vec::new();
        ciborium::into_writer(&map, &mut bytes).unwrap();
        assert_eq!(Envelope::decode(&bytes), Err(ProtocolError::Version(2)));
    }

    #[test]
    fn expiry() {
        let env = sample();
        assert!(!env.is_expired(1_795_000_060_000));
        assert!(env.is_expired(1_795_000_060_001));
    }
}
