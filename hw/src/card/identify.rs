//! Which card is on the reader, found without presenting any PIN.
//!
//! The JPKI application's EF 0006 names the token: `JPKIAPICCTOKEN2` on a My Number
//! card, `JPKIAPICCTOKEN` on the older 住基カード. A driver's licence has its own DF1.

use myna_card::ap::jpki::JpkiAp;
use myna_card::{Card, TokenType};

use crate::card::link::CardLink;
use crate::card::CardError;

/// DF1 of the driver's licence IC.
pub(crate) const LICENCE_DF1: [u8; 16] = [
    0xA0, 0x00, 0x00, 0x02, 0x31, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
];

/// The kinds of card a counter meets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CardKind {
    /// マイナンバーカード.
    MyNumberCard,
    /// 住民基本台帳カード.
    JukiCard,
    /// 運転免許証.
    DriversLicence,
    /// Anything else.
    Unknown,
}

impl CardKind {
    /// The wire form.
    pub fn to_wire(self) -> kakanai_protocol::catalogue::CardType {
        use kakanai_protocol::catalogue::CardType as W;
        match self {
            CardKind::MyNumberCard => W::MyNumberCard,
            CardKind::JukiCard => W::JukiCard,
            CardKind::DriversLicence => W::DriversLicence,
            CardKind::Unknown => W::Unknown,
        }
    }
}

/// Identifies the card on `reader`, then powers it down.
pub fn identify(ctx: &pcsc::Context, reader: &str) -> Result<CardKind, CardError> {
    let mut link = CardLink::open(ctx, reader)?;
    let kind = {
        let mut card = Card::new(&mut link);
        identify_on(&mut card)
    };
    link.close()?;
    kind
}

fn identify_on<T: myna_card::Transmit>(card: &mut Card<T>) -> Result<CardKind, CardError> {
    match JpkiAp::select(card) {
        Ok(mut jpki) => {
            return match jpki.read_token_type() {
                Ok(TokenType::Card) => Ok(CardKind::MyNumberCard),
                Ok(TokenType::Other(raw)) if raw.starts_with(b"JPKIAPICCTOKEN") => {
                    Ok(CardKind::JukiCard)
                }
                Ok(_) => Ok(CardKind::Unknown),
                Err(myna_card::Error::Status(_)) => Ok(CardKind::Unknown),
                Err(e) => Err(e.into()),
            }
        }
        Err(myna_card::Error::Status(_)) => {}
        Err(e) => return Err(e.into()),
    }
    match card.select_df(&LICENCE_DF1) {
        Ok(()) => Ok(CardKind::DriversLicence),
        Err(myna_card::Error::Status(_)) => Ok(CardKind::Unknown),
        Err(e) => Err(e.into()),
    }
}
