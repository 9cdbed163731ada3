//! MQTT topics: `kakanai/v1/{tenant}/dev/{device}/{up|down}/{kind}` and the
//! retained presence topic `kakanai/v1/{tenant}/dev/{device}/presence`.
//!
//! Tenant and device ids are [`Ident`]s: 1–64 ASCII letters, digits, `-`, `_` or
//! `.`, starting with a letter or digit. So no id can hold an MQTT wildcard, a
//! level separator, a `$` system prefix, or personal data in Japanese script.

use std::fmt;
use std::str::FromStr;

use crate::catalogue::Kind;
use crate::error::ProtocolError;
use crate::limits::{MAX_ID_BYTES, MAX_TOPIC_BYTES};

const ROOT: &str = "kakanai/v1";

/// Which way a message travels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Appliance → control plane, under `…/up/`.
    Up,
    /// Control plane → appliance, under `…/down/`.
    Down,
    /// Either way (acknowledgements).
    Both,
    /// The retained presence topic.
    Presence,
}

/// A validated tenant or device id.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Ident(String);

impl Ident {
    /// Validates an id.
    pub fn new(id: &str) -> Result<Self, ProtocolError> {
        let ok_len = !id.is_empty() && id.len() <= MAX_ID_BYTES;
        let ok_first = id.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric());
        let ok_chars = id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
        if ok_len && ok_first && ok_chars {
            Ok(Self(id.to_owned()))
        } else {
            Err(ProtocolError::Topic(format!(
                "an id is 1-{MAX_ID_BYTES} of [A-Za-z0-9._-] starting with a letter or digit; got {} bytes",
                id.len()
            )))
        }
    }

    /// The id.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Ident {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The last part of a device topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Channel {
    /// `up/{kind}`.
    Up(Kind),
    /// `down/{kind}`.
    Down(Kind),
    /// `presence`.
    Presence,
}

/// A device topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topic {
    /// The tenant (city).
    pub tenant: Ident,
    /// The device (appliance).
    pub device: Ident,
    /// What the topic carries.
    pub channel: Channel,
}

impl Topic {
    /// The topic an appliance publishes `kind` on.
    pub fn up(tenant: &Ident, device: &Ident, kind: Kind) -> Result<Self, ProtocolError> {
        Self::checked(tenant, device, Channel::Up(kind))
    }

    /// The topic the control plane sends `kind` to a device on.
    pub fn down(tenant: &Ident, device: &Ident, kind: Kind) -> Result<Self, ProtocolError> {
        Self::checked(tenant, device, Channel::Down(kind))
    }

    /// The device's retained presence topic.
    pub fn presence(tenant: &Ident, device: &Ident) -> Self {
        Self {
            tenant: tenant.clone(),
            device: device.clone(),
            channel: Channel::Presence,
        }
    }

    fn checked(tenant: &Ident, device: &Ident, channel: Channel) -> Result<Self, ProtocolError> {
        let topic = Self {
            tenant: tenant.clone(),
            device: device.clone(),
            channel,
        };
        topic.check_kind(topic.kind())?;
        Ok(topic)
    }

    /// The kind the topic carries.
    pub fn kind(&self) -> Kind {
        match self.channel {
            Channel::Up(k) | Channel::Down(k) => k,
            Channel::Presence => Kind::Presence,
        }
    }

    /// Whether a message of `kind` belongs on this topic.
    pub fn check_kind(&self, kind: Kind) -> Result<(), ProtocolError> {
        let wrong = |reason| {
            Err(ProtocolError::WrongTopic {
                kind: kind.name(),
                reason,
            })
        };
        match (self.channel, kind.direction()) {
            (Channel::Up(k) | Channel::Down(k), _) if k != kind => {
                wrong("the topic names another kind")
            }
            (Channel::Presence, _) if kind != Kind::Presence => wrong("not a presence message"),
            (Channel::Presence, _)
            | (Channel::Up(_), Direction::Up | Direction::Both)
            | (Channel::Down(_), Direction::Down | Direction::Both) => Ok(()),
            (Channel::Up(_), _) => wrong("this kind is not sent upwards"),
            (Channel::Down(_), _) => wrong("this kind is not sent downwards"),
        }
    }

    /// Parses and validates a topic.
    pub fn parse(topic: &str) -> Result<Self, ProtocolError> {
        if topic.len() > MAX_TOPIC_BYTES {
            return Err(ProtocolError::TooLarge {
                what: "topic",
                len: topic.len(),
                max: MAX_TOPIC_BYTES,
            });
        }
        let rest = topic
            .strip_prefix(ROOT)
            .and_then(|r| r.strip_prefix('/'))
            .ok_or_else(|| ProtocolError::Topic(format!("does not start with {ROOT}/")))?;
        let parts: Vec<&str> = rest.split('/').collect();
        let (tenant, device, channel) = match parts.as_slice() {
            [t, "dev", d, "presence"] => (t, d, Channel::Presence),
            [t, "dev", d, "up", k] => (t, d, Channel::Up(Kind::from_name(k)?)),
            [t, "dev", d, "down", k] => (t, d, Channel::Down(Kind::from_name(k)?)),
            _ => {
                return Err(ProtocolError::Topic(
                    "expected {tenant}/dev/{device}/(up|down)/{kind} or …/presence".into(),
                ))
            }
        };
        Self::checked(&Ident::new(tenant)?, &Ident::new(device)?, channel)
    }

    /// The topic's bytes, used as the COSE `external_aad`.
    pub fn to_aad(&self) -> Vec<u8> {
        self.to_string().into_bytes()
    }
}

impl fmt::Display for Topic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{ROOT}/{}/dev/{}/", self.tenant, self.device)?;
        match self.channel {
            Channel::Up(k) => write!(f, "up/{k}"),
            Channel::Down(k) => write!(f, "down/{k}"),
            Channel::Presence => f.write_str("presence"),
        }
    }
}

impl FromStr for Topic {
    type Err = ProtocolError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// Subscription filters.
pub mod filter {
    use super::{Ident, ROOT};

    /// What one appliance subscribes to: everything sent down to it.
    pub fn device_down(tenant: &Ident, device: &Ident) -> String {
        format!("{ROOT}/{tenant}/dev/{device}/down/+")
    }

    /// What the control plane subscribes to for one tenant: every device's up
    /// messages.
    pub fn tenant_up(tenant: &Ident) -> String {
        format!("{ROOT}/{tenant}/dev/+/up/+")
    }

    /// Every device's presence in one tenant.
    pub fn tenant_presence(tenant: &Ident) -> String {
        format!("{ROOT}/{tenant}/dev/+/presence")
    }

    /// Every tenant's up messages (a SaaS control plane).
    pub fn all_up() -> String {
        format!("{ROOT}/+/dev/+/up/+")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids() -> (Ident, Ident) {
        (
            Ident::new("city-a").unwrap(),
            Ident::new("counter-01").unwrap(),
        )
    }

    #[test]
    fn build_and_parse() {
        let (t, d) = ids();
        let topic = Topic::up(&t, &d, Kind::CardRead).unwrap();
        assert_eq!(
            topic.to_string(),
            "kakanai/v1/city-a/dev/counter-01/up/card-read"
        );
        assert_eq!(Topic::parse(&topic.to_string()).unwrap(), topic);
        let p = Topic::presence(&t, &d);
        assert_eq!(p.to_string(), "kakanai/v1/city-a/dev/counter-01/presence");
        assert_eq!(Topic::parse(&p.to_string()).unwrap(), p);
        assert!(Topic::down(&t, &d, Kind::Ack).is_ok());
        assert!(Topic::up(&t, &d, Kind::Ack).is_ok());
    }

    #[test]
    fn wrong_direction_is_refused() {
        let (t, d) = ids();
        assert!(Topic::up(&t, &d, Kind::PrintJob).is_err());
        assert!(Topic::down(&t, &d, Kind::CardRead).is_err());
        assert!(Topic::parse("kakanai/v1/city-a/dev/counter-01/down/card-read").is_err());
    }

    #[test]
    fn bad_ids_are_refused() {
        for bad in [
            "",
            "+",
            "#",
            "a/b",
            "$SYS",
            "-x",
            "山田",
            "a b",
            &"x".repeat(65),
        ] {
            assert!(Ident::new(bad).is_err(), "{bad:?}");
        }
        for bad in [
            "kakanai/v1/+/dev/d/up/scan",
            "kakanai/v1/t/dev/#",
            "kakanai/v2/t/dev/d/up/scan",
            "kakanai/v1/t/dev/d/up/unknown",
            "kakanai/v1/t/dev/d/up/scan/extra",
            "kakanai/v1/t/dev/d/presence/x",
        ] {
            assert!(Topic::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn message_kind_must_match_topic() {
        let (t, d) = ids();
        let topic = Topic::up(&t, &d, Kind::Scan).unwrap();
        assert!(topic.check_kind(Kind::Scan).is_ok());
        assert!(topic.check_kind(Kind::CardRead).is_err());
        assert!(Topic::presence(&t, &d).check_kind(Kind::Scan).is_err());
    }
}
