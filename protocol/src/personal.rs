//! Personal data carried in messages.
//!
//! Each type here redacts itself in `Debug` and in human-readable serialisations
//! (JSON, as printed by `kakanai-inspect` or written to a log), and carries its
//! value in full only in binary serialisations (the signed CBOR payload). So a
//! `{:?}` in a log line or a panic, or a diagnostic dump of a message, never shows
//! a 個人番号, name or address.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::ProtocolError;

/// What a personal field shows in place of its value.
pub const REDACTED: &str = "[redacted]";

/// 個人番号 — the 12-digit My Number, check digit verified.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct MyNumber(String);

impl MyNumber {
    /// Parses 12 ASCII digits whose last digit is the check digit defined in the
    /// 行政手続における特定の個人を識別するための番号の利用等に関する法律施行令 §8.
    pub fn parse(digits: &str) -> Result<Self, ProtocolError> {
        let bytes = digits.as_bytes();
        if bytes.len() != 12 || !bytes.iter().all(u8::is_ascii_digit) {
            return Err(ProtocolError::PersonalData("個人番号: not 12 digits"));
        }
        if check_digit(&bytes[..11]) != bytes[11] - b'0' {
            return Err(ProtocolError::PersonalData(
                "個人番号: check digit mismatch",
            ));
        }
        Ok(Self(digits.to_owned()))
    }

    /// The 12 digits. Only for the places a procedure needs them.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

/// The check digit of the first 11 digits of a My Number.
pub fn check_digit(first11: &[u8]) -> u8 {
    // Digits are weighted from the right: P1 is the 11th digit. Q = n+1 for n ≤ 6,
    // n-5 above.
    let sum: u32 = first11
        .iter()
        .rev()
        .enumerate()
        .map(|(i, d)| {
            let n = i as u32 + 1;
            let q = if n <= 6 { n + 1 } else { n - 5 };
            u32::from(d.saturating_sub(b'0')) * q
        })
        .sum();
    let r = sum % 11;
    if r <= 1 {
        0
    } else {
        (11 - r) as u8
    }
}

impl fmt::Debug for MyNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MyNumber({REDACTED})")
    }
}

impl Serialize for MyNumber {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            s.serialize_str(REDACTED)
        } else {
            s.serialize_str(&self.0)
        }
    }
}

impl<'de> Deserialize<'de> for MyNumber {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// Text that is personal data (a name, an address): stored exactly as received
/// (IVS and characters outside the BMP included), redacted when shown.
#[derive(Clone, PartialEq, Eq, Hash, Default)]
pub struct PersonalText(String);

impl PersonalText {
    /// Wraps a value.
    pub fn new(text: impl Into<String>) -> Self {
        Self(text.into())
    }

    /// The value, for the screen or the form that needs it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for PersonalText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{REDACTED}({} chars)", self.0.chars().count())
    }
}

impl Serialize for PersonalText {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            s.serialize_str(REDACTED)
        } else {
            s.serialize_str(&self.0)
        }
    }
}

impl<'de> Deserialize<'de> for PersonalText {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(Self)
    }
}

/// 性別 as recorded on the card face (`DF25`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Sex {
    /// 男 (`1`).
    Male,
    /// 女 (`2`).
    Female,
    /// 適用不能 (`9`).
    NotApplicable,
}

/// 券面事項 — the face information read from a card's text application
/// (基本4情報, and the 個人番号 when the PIN or 照合番号A unlocked it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CardFace {
    /// 氏名; family and given name separated by U+3000.
    pub name: PersonalText,
    /// 住所.
    pub address: PersonalText,
    /// 生年月日 as `YYYYMMDD` (Gregorian), as the card holds it.
    pub birth_date: PersonalText,
    /// 性別.
    pub sex: Sex,
    /// 個人番号, present only when the read was allowed to include it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub my_number: Option<MyNumber>,
    /// Whether the text holds private-use characters (外字) that staff must check.
    #[serde(default)]
    pub has_private_use_chars: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    // A number made up for tests with a valid check digit (not a real person's).
    const SAMPLE: &str = "123456789018";

    #[test]
    fn check_digit_is_verified() {
        assert!(MyNumber::parse(SAMPLE).is_ok());
        assert!(MyNumber::parse("123456789011").is_err());
        assert!(MyNumber::parse("12345678901").is_err());
        assert!(MyNumber::parse("12345678901a").is_err());
        assert!(MyNumber::parse("１２３４５６７８９０１８").is_err());
    }

    #[test]
    fn check_digit_of_all_zero_prefix_is_zero() {
        assert_eq!(check_digit(b"00000000000"), 0);
    }

    #[test]
    fn personal_data_never_shows_in_debug_or_json() {
        let face = CardFace {
            name: PersonalText::new("番号　花子"),
            address: PersonalText::new("東京都千代田区霞が関２丁目１番２号"),
            birth_date: PersonalText::new("19800401"),
            sex: Sex::Female,
            my_number: Some(MyNumber::parse(SAMPLE).unwrap()),
            has_private_use_chars: false,
        };
        for shown in [format!("{face:?}"), serde_json::to_string(&face).unwrap()] {
            for secret in [SAMPLE, "花子", "霞が関", "19800401"] {
                assert!(!shown.contains(secret), "{secret} leaked in {shown}");
            }
        }
        // Binary CBOR keeps everything.
        let mut cbor = Vec::new();
        ciborium::into_writer(&face, &mut cbor).unwrap();
        let back: CardFace = ciborium::from_reader(cbor.as_slice()).unwrap();
        assert_eq!(back, face);
        assert_eq!(back.my_number.unwrap().expose(), SAMPLE);
    }
}
