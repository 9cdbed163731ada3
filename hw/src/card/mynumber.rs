//! The My Number card's 券面事項入力補助AP (text input-support application), read
//! through the `myna-card` crate.
//!
//! - With the 4-digit PIN: 基本4情報, and the 個人番号 when the caller asks for it.
//! - With 照合番号B (14 digits printed on the card face): 基本4情報 only. This is how
//!   staff read a card without the resident typing a PIN.
//!
//! Tries left are read before verifying (a retry query costs no attempt); a locked
//! card is reported without presenting anything; a wrong value is never retried.

use kakanai_protocol::personal::{CardFace, MyNumber, PersonalText, Sex};
use myna_card::ap::text::{ef, TextAp};
use myna_card::{Card, Retries};

use crate::card::link::CardLink;
use crate::card::{text, CardError, Secret};

/// What unlocks the read.
#[derive(Debug, Clone)]
pub enum Credential {
    /// 暗証番号 — the resident's 4-digit PIN.
    Pin(Secret),
    /// 照合番号B — birth date YYMMDD + expiry year YYYY + 4-digit security code.
    CodeB(Secret),
}

impl Credential {
    /// A PIN typed by the resident (4 digits).
    pub fn pin(digits: &str) -> Result<Self, CardError> {
        Secret::digits(digits, 4, "the PIN is 4 digits").map(Self::Pin)
    }

    /// 照合番号B typed by staff from the card face (14 digits).
    pub fn code_b(digits: &str) -> Result<Self, CardError> {
        Secret::digits(digits, 14, "照合番号B is 14 digits").map(Self::CodeB)
    }

    fn key(&self) -> u16 {
        match self {
            Credential::Pin(_) => ef::PIN,
            Credential::CodeB(_) => ef::CODE_B,
        }
    }
}

/// What to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadScope {
    /// 基本4情報 only.
    FaceOnly,
    /// 基本4情報 and the 個人番号 (needs the PIN).
    WithMyNumber,
}

/// The result of a successful read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MyNumberRead {
    /// The face information (and the 個人番号 when asked for).
    pub face: CardFace,
    /// Tries the credential had before this read (it is back to the maximum now).
    pub tries_before: u8,
}

/// Tries left on the PIN (or 照合番号B) of the card on `reader`, without spending one.
pub fn pin_tries(ctx: &pcsc::Context, reader: &str, which: &Credential) -> Result<u8, CardError> {
    let mut link = CardLink::open(ctx, reader)?;
    let result = {
        let mut card = Card::new(&mut link);
        let mut ap = TextAp::select(&mut card).map_err(not_my_number_card)?;
        tries(&mut ap, which.key())
    };
    link.close()?;
    result
}

/// Reads the card on `reader`. The card is powered down afterwards, whatever the outcome.
pub fn read_my_number_card(
    ctx: &pcsc::Context,
    reader: &str,
    credential: &Credential,
    scope: ReadScope,
) -> Result<MyNumberRead, CardError> {
    // Checked before touching the card: nothing is sent that cannot succeed.
    if scope == ReadScope::WithMyNumber && matches!(credential, Credential::CodeB(_)) {
        return Err(CardError::NotPermitted(
            "the 個人番号 can be read only with the resident's PIN",
        ));
    }
    let mut link = CardLink::open(ctx, reader)?;
    let result = read_on(&mut link, credential, scope);
    let closed = link.close();
    let read = result?;
    closed?;
    Ok(read)
}

fn read_on(
    link: &mut CardLink,
    credential: &Credential,
    scope: ReadScope,
) -> Result<MyNumberRead, CardError> {
    let mut card = Card::new(link);
    let mut ap = TextAp::select(&mut card).map_err(not_my_number_card)?;
    let tries_before = tries(&mut ap, credential.key())?;
    if tries_before == 0 {
        return Err(CardError::PinLocked);
    }
    match credential {
        Credential::Pin(pin) => ap.verify_pin(&pin.as_pin()?)?,
        Credential::CodeB(code) => ap.verify_code_b(&code.as_pin()?)?,
    }
    let attrs = ap.read_attributes()?;
    let my_number = match scope {
        ReadScope::FaceOnly => None,
        ReadScope::WithMyNumber => {
            let n = ap.read_my_number()?;
            Some(
                MyNumber::parse(n.as_str())
                    .map_err(|_| CardError::Malformed("個人番号 check digit".into()))?,
            )
        }
    };
    let birth = attrs.birth_date;
    let birth_date = format!("{:04}{:02}{:02}", birth.year, birth.month, birth.day);
    let sex = match attrs.sex {
        myna_card::data::Sex::Male => Sex::Male,
        myna_card::data::Sex::Female => Sex::Female,
        myna_card::data::Sex::NotApplicable => Sex::NotApplicable,
        other => return Err(CardError::Malformed(format!("性別 {other:?}"))),
    };
    let has_private_use_chars = text::needs_check([attrs.name.as_str(), attrs.address.as_str()]);
    Ok(MyNumberRead {
        face: CardFace {
            name: PersonalText::new(attrs.name),
            address: PersonalText::new(attrs.address),
            birth_date: PersonalText::new(birth_date),
            sex,
            my_number,
            has_private_use_chars,
        },
        tries_before,
    })
}

fn tries<T: myna_card::Transmit>(ap: &mut TextAp<'_, T>, key: u16) -> Result<u8, CardError> {
    match ap.retries(key)? {
        Retries::Remaining(n) => Ok(n),
        Retries::Blocked => Ok(0),
        // 9000 to a retry query: already verified in this power cycle, which our
        // power-down after every read rules out, so treat it as the full count.
        Retries::NotReported => Ok(3),
        Retries::Unlimited => Ok(u8::MAX),
    }
}

/// A card without the text AP answers SELECT with "file not found".
fn not_my_number_card(e: myna_card::Error) -> CardError {
    match e {
        myna_card::Error::Status(_) => CardError::WrongCard {
            expected: "My Number card",
        },
        other => other.into(),
    }
}
