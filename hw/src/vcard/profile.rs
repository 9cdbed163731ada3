//! JSON profiles: what a virtual card holds, checked before any card is built.
//!
//! A profile is one JSON object whose `"type"` picks the card:
//!
//! | `type` | card | required fields |
//! |---|---|---|
//! | `mynumber` | マイナンバーカード | `pin`, `my_number`, `name`, `address`, `birth_date`, `sex`, `expiry_date`, `security_code` |
//! | `juki` | 住基カード (only the JPKI AP, EF0006 `JPKIAPICCTOKEN`) | none |
//! | `licence` | 運転免許証 | `pin1`, `pin2` (unless `pin_set` is false), `name`, `kana`, `birth_date`, `address`, `issue_date`, `expiry_date`, `licence_number` |
//!
//! Common optional fields: `label` (shown in logs instead of any personal data),
//! `atr` (hex), `read_past_end` (`truncate` — the JICSAP behaviour real cards show —,
//! `warning` → data + `6282`, `wrong_length` → `6Cxx`). Retry counters:
//! `pin_tries` / `pin_tries_left` (My Number PIN, default 3/3), `code_a_tries(_left)` and
//! `code_b_tries(_left)` (照合番号, default 10/10), `pin1_tries(_left)`, `pin2_tries(_left)`
//! (licence, default 3/3). Dates are `YYYY-MM-DD`. Unknown fields are rejected.
//!
//! Licence text is encoded as JIS X 0208; a `{FFF1}`..`{FFF7}` or `{FFFA}` in it is
//! written as that raw two-byte code (a 外字 reference / missing character), so readers
//! can test their flagging.

use std::path::Path;

use serde::Deserialize;

use super::VcardError;

/// A parsed and validated profile.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum Profile {
    /// My Number card (券面事項入力補助AP + JPKI AP).
    #[serde(rename = "mynumber")]
    MyNumber(MyNumberProfile),
    /// 住基カード: only the JPKI AP, whose EF0006 says `JPKIAPICCTOKEN`.
    Juki(JukiProfile),
    /// 運転免許証.
    Licence(LicenceProfile),
    /// A card Kakanai does not know (a transit or bank card): no application
    /// answers, every SELECT is "file not found".
    Unknown(UnknownProfile),
}

/// Fields every profile may carry.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Common {
    /// A name for logs; never personal data.
    #[serde(default)]
    pub label: Option<String>,
    /// ATR in hex (spaces allowed); a contactless-style default otherwise.
    #[serde(default)]
    pub atr: Option<String>,
    /// What READ BINARY answers when `Le` runs past the end of the file.
    #[serde(default)]
    pub read_past_end: ReadPastEnd,
}

/// What READ BINARY answers when `Le` asks for more than the rest of the file.
///
/// An offset at or past the end is always `6B00`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReadPastEnd {
    /// The rest of the file with `9000` (JICSAP 6.4.1 (4); what real cards do).
    #[default]
    Truncate,
    /// The rest of the file with `6282` (ISO 7816-4 "end of file reached before Le").
    Warning,
    /// No data, `6Cxx` with the number of bytes left (ISO 7816-4 "wrong Le").
    WrongLength,
}

// serde's `flatten` does not combine with `deny_unknown_fields`, so every profile
// struct repeats the common fields; `common()` gathers them.
macro_rules! common_fields {
    ($name:ident { $($body:tt)* }) => {
        #[doc = concat!("The `", stringify!($name), "` profile; see the module doc.")]
        #[derive(Clone, Deserialize)]
        #[serde(deny_unknown_fields)]
        #[allow(missing_docs)]
        pub struct $name {
            #[serde(default)]
            pub label: Option<String>,
            #[serde(default)]
            pub atr: Option<String>,
            #[serde(default)]
            pub read_past_end: ReadPastEnd,
            $($body)*
        }

        impl $name {
            /// The fields every profile shares.
            pub fn common(&self) -> Common {
                Common {
                    label: self.label.clone(),
                    atr: self.atr.clone(),
                    read_past_end: self.read_past_end,
                }
            }
        }

        /// Redacted: a profile is mostly personal data.
        impl std::fmt::Debug for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.debug_struct(stringify!($name))
                    .field("label", &self.label)
                    .finish_non_exhaustive()
            }
        }
    };
}

fn three() -> u8 {
    3
}
fn ten() -> u8 {
    10
}
fn yes() -> bool {
    true
}

common_fields!(MyNumberProfile {
    pub pin: String,
    #[serde(default = "three")]
    pub pin_tries: u8,
    #[serde(default)]
    pub pin_tries_left: Option<u8>,
    #[serde(default = "ten")]
    pub code_a_tries: u8,
    #[serde(default)]
    pub code_a_tries_left: Option<u8>,
    #[serde(default = "ten")]
    pub code_b_tries: u8,
    #[serde(default)]
    pub code_b_tries_left: Option<u8>,
    /// 12 digits, check digit verified.
    pub my_number: String,
    /// Family and given name separated by U+3000.
    pub name: String,
    pub address: String,
    /// `YYYY-MM-DD`.
    pub birth_date: String,
    /// `"1"`, `"2"` or `"9"`.
    pub sex: String,
    /// `YYYY-MM-DD`; its year goes into 照合番号B.
    pub expiry_date: String,
    /// 4 digits printed on the card; the tail of 照合番号B.
    pub security_code: String,
});

common_fields!(JukiProfile {});

common_fields!(UnknownProfile {});

common_fields!(LicenceProfile {
    /// Whether the holder set PINs (MF/EF 000A); if not, both PINs are `****`.
    #[serde(default = "yes")]
    pub pin_set: bool,
    #[serde(default)]
    pub pin1: Option<String>,
    #[serde(default)]
    pub pin2: Option<String>,
    #[serde(default = "three")]
    pub pin1_tries: u8,
    #[serde(default)]
    pub pin1_tries_left: Option<u8>,
    #[serde(default = "three")]
    pub pin2_tries: u8,
    #[serde(default)]
    pub pin2_tries_left: Option<u8>,
    /// Three characters, e.g. `"008"`.
    #[serde(default = "spec_version")]
    pub spec_version: String,
    pub name: String,
    pub kana: String,
    pub birth_date: String,
    pub address: String,
    pub issue_date: String,
    pub expiry_date: String,
    /// 12 digits.
    pub licence_number: String,
});

fn spec_version() -> String {
    "008".into()
}

impl Profile {
    /// Parses and validates a profile. Error texts never quote field values.
    pub fn from_json(text: &str) -> Result<Self, VcardError> {
        let profile: Profile = serde_json::from_str(text).map_err(json_error)?;
        profile.validate()?;
        Ok(profile)
    }

    /// Reads, parses and validates a profile file.
    pub fn from_file(path: &Path) -> Result<Self, VcardError> {
        let text = std::fs::read_to_string(path).map_err(|source| VcardError::ProfileIo {
            path: path.to_owned(),
            source,
        })?;
        Self::from_json(&text)
    }

    /// The fields every profile shares.
    pub fn common(&self) -> Common {
        match self {
            Profile::MyNumber(p) => p.common(),
            Profile::Juki(p) => p.common(),
            Profile::Unknown(p) => p.common(),
            Profile::Licence(p) => p.common(),
        }
    }

    fn validate(&self) -> Result<(), VcardError> {
        if let Some(atr) = &self.common().atr {
            let bytes = parse_hex(atr).ok_or_else(|| bad("atr", "is not hex"))?;
            if !(2..=33).contains(&bytes.len()) {
                return Err(bad("atr", "must be 2 to 33 bytes"));
            }
        }
        match self {
            Profile::MyNumber(p) => {
                digits(&p.pin, 4, "pin")?;
                tries(p.pin_tries, p.pin_tries_left, "pin")?;
                tries(p.code_a_tries, p.code_a_tries_left, "code_a")?;
                tries(p.code_b_tries, p.code_b_tries_left, "code_b")?;
                kakanai_protocol::personal::MyNumber::parse(&p.my_number)
                    .map_err(|_| bad("my_number", "is not 12 digits with a valid check digit"))?;
                text(&p.name, "name")?;
                text(&p.address, "address")?;
                let birth = Date::parse(&p.birth_date, "birth_date")?;
                birth.era("birth_date")?;
                if !matches!(p.sex.as_str(), "1" | "2" | "9") {
                    return Err(bad("sex", "must be \"1\", \"2\" or \"9\""));
                }
                Date::parse(&p.expiry_date, "expiry_date")?;
                digits(&p.security_code, 4, "security_code")?;
            }
            Profile::Juki(_) | Profile::Unknown(_) => {}
            Profile::Licence(p) => {
                if p.pin_set {
                    let pin1 = p.pin1.as_deref().ok_or_else(|| bad("pin1", "is missing"))?;
                    let pin2 = p.pin2.as_deref().ok_or_else(|| bad("pin2", "is missing"))?;
                    digits(pin1, 4, "pin1")?;
                    digits(pin2, 4, "pin2")?;
                } else if p.pin1.is_some() || p.pin2.is_some() {
                    return Err(bad("pin1", "must be absent when pin_set is false"));
                }
                tries(p.pin1_tries, p.pin1_tries_left, "pin1")?;
                tries(p.pin2_tries, p.pin2_tries_left, "pin2")?;
                if p.spec_version.len() != 3 || !p.spec_version.is_ascii() {
                    return Err(bad("spec_version", "must be 3 ASCII characters"));
                }
                for (value, field) in [
                    (&p.name, "name"),
                    (&p.kana, "kana"),
                    (&p.address, "address"),
                ] {
                    text(value, field)?;
                    super::files::jis_x0208(value, field)?;
                }
                for (value, field) in [
                    (&p.birth_date, "birth_date"),
                    (&p.issue_date, "issue_date"),
                    (&p.expiry_date, "expiry_date"),
                ] {
                    Date::parse(value, field)?.era(field)?;
                }
                digits(&p.licence_number, 12, "licence_number")?;
            }
        }
        Ok(())
    }
}

/// A Gregorian calendar date.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Date {
    pub year: u16,
    pub month: u8,
    pub day: u8,
}

impl Date {
    /// `YYYY-MM-DD`, a real calendar date.
    pub fn parse(s: &str, field: &'static str) -> Result<Self, VcardError> {
        let err = || bad(field, "must be a date YYYY-MM-DD");
        let b = s.as_bytes();
        if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
            return Err(err());
        }
        let num = |r: std::ops::Range<usize>| -> Result<u16, VcardError> {
            let part = s.get(r).ok_or_else(err)?;
            if !part.bytes().all(|c| c.is_ascii_digit()) {
                return Err(err());
            }
            part.parse().map_err(|_| err())
        };
        let year = num(0..4)?;
        let month = u8::try_from(num(5..7)?).map_err(|_| err())?;
        let day = u8::try_from(num(8..10)?).map_err(|_| err())?;
        let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
        let days = match month {
            1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
            4 | 6 | 9 | 11 => 30,
            2 if leap => 29,
            2 => 28,
            _ => return Err(err()),
        };
        if day == 0 || day > days {
            return Err(err());
        }
        Ok(Date { year, month, day })
    }

    /// The era digit (1 明治 … 5 令和) and the year within the era.
    pub fn era(self, field: &'static str) -> Result<(u8, u16), VcardError> {
        let key = (self.year, self.month, self.day);
        // First days of each era; the same table myna-card uses for 照合番号B.
        let (digit, first_year) = if key >= (2019, 5, 1) {
            (5, 2019)
        } else if key >= (1989, 1, 8) {
            (4, 1989)
        } else if key >= (1926, 12, 25) {
            (3, 1926)
        } else if key >= (1912, 7, 30) {
            (2, 1912)
        } else if key >= (1868, 1, 25) {
            (1, 1868)
        } else {
            return Err(bad(field, "predates the Meiji era"));
        };
        Ok((digit, self.year - first_year + 1))
    }

    /// `YYYYMMDD` as ASCII.
    pub fn yyyymmdd(self) -> String {
        format!("{:04}{:02}{:02}", self.year, self.month, self.day)
    }
}

fn bad(field: &'static str, problem: &'static str) -> VcardError {
    VcardError::Profile(format!("field `{field}` {problem}"))
}

fn digits(value: &str, len: usize, field: &'static str) -> Result<(), VcardError> {
    if value.len() == len && value.bytes().all(|b| b.is_ascii_digit()) {
        Ok(())
    } else {
        Err(VcardError::Profile(format!(
            "field `{field}` must be exactly {len} ASCII digits"
        )))
    }
}

fn tries(max: u8, left: Option<u8>, field: &'static str) -> Result<(), VcardError> {
    // 63Cn carries the count in one nibble.
    if !(1..=15).contains(&max) {
        return Err(VcardError::Profile(format!(
            "field `{field}_tries` must be 1 to 15"
        )));
    }
    if left.is_some_and(|l| l > max) {
        return Err(VcardError::Profile(format!(
            "field `{field}_tries_left` must not exceed `{field}_tries`"
        )));
    }
    Ok(())
}

fn text(value: &str, field: &'static str) -> Result<(), VcardError> {
    if value.is_empty() {
        return Err(bad(field, "is empty"));
    }
    if value.chars().any(char::is_control) {
        return Err(bad(field, "contains a control character"));
    }
    Ok(())
}

/// Hex with optional spaces or colons.
pub(crate) fn parse_hex(s: &str) -> Option<Vec<u8>> {
    let clean: Vec<u8> = s.bytes().filter(|b| !matches!(b, b' ' | b':')).collect();
    if !clean.len().is_multiple_of(2) {
        return None;
    }
    clean
        .chunks(2)
        .map(|pair| {
            let text = std::str::from_utf8(pair).ok()?;
            u8::from_str_radix(text, 16).ok()
        })
        .collect()
}

/// serde_json's messages quote offending values ("invalid type: string \"1234\"") for
/// most errors, which could put a PIN or a name in a log; keep only the messages that
/// name a key or the card type, and otherwise just the position.
fn json_error(e: serde_json::Error) -> VcardError {
    let message = e.to_string();
    let safe = ["unknown field", "missing field", "unknown variant"];
    if safe.iter().any(|s| message.starts_with(s)) {
        VcardError::Profile(message)
    } else {
        VcardError::Profile(format!(
            "not a valid profile ({:?} error at line {} column {})",
            e.classify(),
            e.line(),
            e.column()
        ))
    }
}
