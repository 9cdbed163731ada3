//! The one-call paths senders and receivers use.
//!
//! [`seal`] encodes an [`Envelope`] and signs it for the topic it is published on.
//! [`Opener::open`] takes bytes from a topic through every check in order: size,
//! COSE structure and algorithm, the sender's key for that topic, the signature over
//! the topic, the payload, the kind against the topic, and finally the replay window,
//! which moves only for a message that passed everything before it.

use crate::cose::{self, SignatureAlg};
use crate::envelope::Envelope;
use crate::error::ProtocolError;
use crate::keys::{KeyId, SigningKey, VerifyingKey};
use crate::replay::ReplayGuard;
use crate::topic::Topic;

/// Encodes and signs `envelope` for publication on `topic`.
pub fn seal(
    key: &SigningKey,
    kid: &KeyId,
    topic: &Topic,
    envelope: &Envelope,
) -> Result<Vec<u8>, ProtocolError> {
    topic.check_kind(envelope.kind())?;
    cose::sign(key, kid, &topic.to_aad(), envelope.encode()?)
}

/// A message that passed every check.
#[derive(Debug, Clone, PartialEq)]
pub struct Opened {
    /// The sender's key id.
    pub kid: KeyId,
    /// The algorithm it was signed with.
    pub alg: SignatureAlg,
    /// The message.
    pub envelope: Envelope,
}

/// The receiving side: verifies, decodes and de-duplicates messages.
#[derive(Debug, Default)]
pub struct Opener {
    replay: ReplayGuard,
}

impl Opener {
    /// An opener with empty replay windows.
    pub fn new() -> Self {
        Self::default()
    }

    /// An opener continuing from persisted replay windows.
    pub fn with_replay(replay: ReplayGuard) -> Self {
        Self { replay }
    }

    /// The replay windows, to persist them.
    pub fn replay(&self) -> &ReplayGuard {
        &self.replay
    }

    /// Opens `bytes` received on `topic`. `lookup` returns the key that `kid` names
    /// *for the device of this topic*, so one device cannot speak for another.
    pub fn open(
        &mut self,
        bytes: &[u8],
        topic: &Topic,
        lookup: impl FnOnce(&Topic, &KeyId) -> Option<VerifyingKey>,
    ) -> Result<Opened, ProtocolError> {
        let unverified = cose::Unverified::parse(bytes)?;
        let key = lookup(topic, unverified.kid())
            .ok_or_else(|| ProtocolError::UnknownKey(unverified.kid().to_hex()))?;
        let verified = unverified.verify(&key, &topic.to_aad())?;
        let envelope = Envelope::decode(&verified.payload)?;
        topic.check_kind(envelope.kind())?;
        self.replay.accept(&verified.kid, envelope.seq)?;
        Ok(Opened {
            kid: verified.kid,
            alg: verified.alg,
            envelope,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalogue::{Body, Ping, RpcRequest};
    use crate::topic::Ident;
    use crate::Kind;

    struct Fixture {
        key: SigningKey,
        kid: KeyId,
        topic: Topic,
    }

    fn fixture() -> Fixture {
        let key = SigningKey::from_seed(&[3; 32]).unwrap();
        let kid = KeyId::of_key(&key.verifying_key());
        let topic = Topic::up(
            &Ident::new("city").unwrap(),
            &Ident::new("c1").unwrap(),
            Kind::RpcRequest,
        )
        .unwrap();
        Fixture { key, kid, topic }
    }

    fn msg(seq: u64) -> Envelope {
        let req = RpcRequest::new::<Ping>(&"hi".to_owned()).unwrap();
        Envelope::new(seq, 0, Body::RpcRequest(req)).unwrap()
    }

    #[test]
    fn opens_once_then_refuses_the_replay() {
        let f = fixture();
        let bytes = seal(&f.key, &f.kid, &f.topic, &msg(1)).unwrap();
        let pk = f.key.verifying_key();
        let mut opener = Opener::new();
        let opened = opener.open(&bytes, &f.topic, |_, _| Some(pk)).unwrap();
        assert_eq!(opened.envelope.seq, 1);
        assert_eq!(
            opener.open(&bytes, &f.topic, |_, _| Some(pk)),
            Err(ProtocolError::Replay { seq: 1 })
        );
    }

    #[test]
    fn a_forged_message_does_not_move_the_window() {
        let f = fixture();
        let pk = f.key.verifying_key();
        let forger = SigningKey::from_seed(&[4; 32]).unwrap();
        let forged = seal(&forger, &f.kid, &f.topic, &msg(5)).unwrap();
        let mut opener = Opener::new();
        assert_eq!(
            opener.open(&forged, &f.topic, |_, _| Some(pk)),
            Err(ProtocolError::BadSignature)
        );
        let genuine = seal(&f.key, &f.kid, &f.topic, &msg(5)).unwrap();
        opener.open(&genuine, &f.topic, |_, _| Some(pk)).unwrap();
    }

    #[test]
    fn a_message_moved_to_another_topic_fails() {
        let f = fixture();
        let pk = f.key.verifying_key();
        let bytes = seal(&f.key, &f.kid, &f.topic, &msg(1)).unwrap();
        let other = Topic::up(
            &Ident::new("city").unwrap(),
            &Ident::new("c2").unwrap(),
            Kind::RpcRequest,
        )
        .unwrap();
        assert_eq!(
            Opener::new().open(&bytes, &other, |_, _| Some(pk)),
            Err(ProtocolError::BadSignature)
        );
    }

    #[test]
    fn sealing_for_the_wrong_topic_is_refused() {
        let f = fixture();
        let scan_topic = Topic::up(&f.topic.tenant, &f.topic.device, Kind::Scan).unwrap();
        assert!(seal(&f.key, &f.kid, &scan_topic, &msg(1)).is_err());
    }
}
