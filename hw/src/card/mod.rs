//! Card readers over PC/SC (`pcsc` crate) and the cards Kakanai reads.
//!
//! - [`watch`] — [`watch::ReaderWatcher`]: readers appearing and disappearing, cards
//!   inserted and removed, from PC/SC status-change events (no polling).
//! - [`link`] — one exclusive connection to a card, powered down when it ends
//!   (a verified PIN stays in force until the card loses power).
//! - [`mynumber`] — the My Number card's 券面事項入力補助AP through the `myna-card`
//!   crate: 基本4情報 with the PIN or 照合番号B, the 個人番号 only with the PIN.
//! - [`licence`] — the driver's licence: PIN1, then name, kana, birth date, address,
//!   expiry and licence number, decoding JIS X 0208 text.
//! - [`identify`] — which card is on the reader, without spending a PIN try.
//! - [`text`] — flags characters staff must check (private use, 外字).
//!
//! Every read is one function call that connects, reads, and powers the card down,
//! whatever happens. PINs are never retried: a wrong PIN is reported with the tries
//! left, and the caller (staff, with the resident) decides what happens next.

pub mod identify;
pub mod licence;
pub mod link;
pub mod mynumber;
pub mod text;
pub mod watch;

use std::fmt;

use thiserror::Error;

pub use identify::{identify, CardKind};
pub use licence::{read_licence, LicenceFace};
pub use mynumber::{pin_tries, read_my_number_card, Credential, MyNumberRead, ReadScope};
pub use watch::{ReaderEvent, ReaderWatcher};

/// Why a card could not be read. Never carries personal data or a PIN.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CardError {
    /// No PC/SC service or no reader at all.
    #[error("no card reader is available")]
    NoReader,
    /// The named reader is not attached.
    #[error("reader {0:?} is not attached")]
    ReaderNotFound(String),
    /// No card is on the reader.
    #[error("no card on the reader")]
    NoCard,
    /// The card was taken away (or reset) during the read.
    #[error("the card was removed during the read")]
    CardRemoved,
    /// Another program holds the card.
    #[error("the card is in use by another program")]
    Busy,
    /// The card is not the kind this read needs.
    #[error("this is not a {expected}")]
    WrongCard {
        /// What the read needed.
        expected: &'static str,
    },
    /// The PIN (or 照合番号) was wrong; `remaining` tries are left.
    #[error("wrong PIN, {remaining} tries left")]
    PinIncorrect {
        /// Tries left before the card locks.
        remaining: u8,
    },
    /// The PIN is locked (the city office must unlock it).
    #[error("the PIN is locked")]
    PinLocked,
    /// The PIN does not have the right form (checked before anything is sent).
    #[error("invalid PIN: {0}")]
    InvalidPin(&'static str),
    /// What was asked needs a credential that was not given (e.g. the 個人番号
    /// with 照合番号B).
    #[error("not allowed: {0}")]
    NotPermitted(&'static str),
    /// The card answered with data that does not parse.
    #[error("malformed data on the card: {0}")]
    Malformed(String),
    /// Another PC/SC or card failure.
    #[error("card reader error: {0}")]
    Reader(String),
}

impl CardError {
    /// The wire form of the error, for the control plane.
    pub fn to_wire(&self) -> kakanai_protocol::catalogue::CardReadError {
        use kakanai_protocol::catalogue::CardReadError as W;
        match self {
            CardError::PinIncorrect { remaining } => W::PinIncorrect {
                remaining: *remaining,
            },
            CardError::PinLocked => W::PinLocked,
            CardError::CardRemoved | CardError::NoCard => W::CardRemoved,
            CardError::WrongCard { .. } => W::Unsupported,
            other => W::Io {
                detail: other.to_string(),
            },
        }
    }
}

impl From<pcsc::Error> for CardError {
    fn from(e: pcsc::Error) -> Self {
        use pcsc::Error as P;
        match e {
            P::NoService | P::ServiceStopped | P::NoReadersAvailable => CardError::NoReader,
            P::UnknownReader | P::ReaderUnavailable => CardError::ReaderNotFound(String::new()),
            P::NoSmartcard => CardError::NoCard,
            P::RemovedCard | P::ResetCard | P::UnpoweredCard => CardError::CardRemoved,
            P::SharingViolation => CardError::Busy,
            other => CardError::Reader(other.to_string()),
        }
    }
}

impl From<myna_card::Error> for CardError {
    fn from(e: myna_card::Error) -> Self {
        use myna_card::Error as M;
        match e {
            M::Pcsc(p) => p.into(),
            M::NoReader => CardError::NoReader,
            M::ReaderNotFound(r) => CardError::ReaderNotFound(r),
            M::PinIncorrect { retries: Some(0) } | M::PinBlocked => CardError::PinLocked,
            M::PinIncorrect { retries: Some(n) } => CardError::PinIncorrect { remaining: n },
            // A key without a retry limit: nothing on these cards, so report it plainly.
            M::PinIncorrect { retries: None } => CardError::PinIncorrect { remaining: u8::MAX },
            M::InvalidPin(why) => CardError::InvalidPin(why),
            M::ShortResponse(_) => CardError::Malformed("response without a status word".into()),
            M::Status(sw) => CardError::Reader(format!("card answered {sw}")),
            other => CardError::Malformed(other.to_string()),
        }
    }
}

/// A secret typed by the resident: never shown, never logged.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps digits typed by the resident, checking they are `len` ASCII digits.
    pub fn digits(value: &str, len: usize, what: &'static str) -> Result<Self, CardError> {
        if value.len() == len && value.bytes().all(|b| b.is_ascii_digit()) {
            Ok(Self(value.to_owned()))
        } else {
            Err(CardError::InvalidPin(what))
        }
    }

    pub(crate) fn as_pin(&self) -> Result<myna_card::Pin, CardError> {
        myna_card::Pin::numeric(self.0.as_bytes()).map_err(CardError::from)
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(****)")
    }
}
