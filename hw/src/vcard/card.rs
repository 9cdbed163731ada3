//! The card model: DFs, EFs, key references with retry counters, and the APDU engine.

use super::files;
use super::profile::{parse_hex, Date, ReadPastEnd};
use super::{Profile, VcardError};

/// 券面事項入力補助AP.
pub const TEXT_AP: [u8; 10] = [0xD3, 0x92, 0x10, 0x00, 0x31, 0x00, 0x01, 0x01, 0x04, 0x08];
/// 公的個人認証AP (JPKI).
pub const JPKI_AP: [u8; 10] = [0xD3, 0x92, 0xF0, 0x00, 0x26, 0x01, 0x00, 0x00, 0x00, 0x01];
/// 運転免許証 DF1.
pub const LICENCE_DF1: [u8; 16] = [
    0xA0, 0x00, 0x00, 0x02, 0x31, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
];
/// A contactless (PC/SC part 3 style) ATR with no historical meaning; TCK checked.
pub const DEFAULT_ATR: [u8; 13] = [
    0x3B, 0x88, 0x80, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x09,
];

/// Which card a profile describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CardKind {
    /// マイナンバーカード.
    MyNumber,
    /// 住基カード.
    Juki,
    /// 運転免許証.
    Licence,
    /// A card with no application Kakanai knows.
    Unknown,
}

/// Names of the key references, for [`VirtualCard::retries_left`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyName {
    /// My Number card PIN (EF0011).
    Pin,
    /// 照合番号A (EF0014).
    CodeA,
    /// 照合番号B (EF0015).
    CodeB,
    /// Licence PIN1 (IEF0001).
    Pin1,
    /// Licence PIN2 (IEF0002).
    Pin2,
}

#[derive(Clone)]
struct Key {
    name: KeyName,
    value: Vec<u8>,
    max: u8,
    left: u8,
}

#[derive(Clone)]
enum Access {
    Always,
    /// Readable once any of these keys (indices into `keys`) is verified.
    AnyOf(Vec<usize>),
}

#[derive(Clone)]
enum EfBody {
    Data { bytes: Vec<u8>, access: Access },
    Key(usize),
}

#[derive(Clone)]
struct Ef {
    id: u16,
    body: EfBody,
}

#[derive(Clone)]
struct Df {
    /// `None` for the MF.
    aid: Option<Vec<u8>>,
    files: Vec<Ef>,
}

/// Volatile state: lost on power-off and reset.
#[derive(Clone, Default)]
struct Session {
    /// Index into `dfs`; `None` before anything is selected (My Number card after reset).
    df: Option<usize>,
    /// Index into the current DF's files.
    ef: Option<usize>,
    verified: Vec<bool>,
}

/// A virtual card built from a [`Profile`]; answers command APDUs with response APDUs.
///
/// Retry counters live here and survive power cycles; the security state (verified
/// keys) and the current file do not.
#[derive(Clone)]
pub struct VirtualCard {
    kind: CardKind,
    label: String,
    atr: Vec<u8>,
    read_past_end: ReadPastEnd,
    dfs: Vec<Df>,
    keys: Vec<Key>,
    /// My Number card: keys belong to an AP, so leaving it drops them. Licence: PIN1/PIN2
    /// live in the MF and open DF1, so selecting DF1 must keep them.
    clear_on_df_change: bool,
    session: Session,
    powered: bool,
}

/// Redacted: no file contents or key values.
impl std::fmt::Debug for VirtualCard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VirtualCard")
            .field("kind", &self.kind)
            .field("label", &self.label)
            .field("powered", &self.powered)
            .finish_non_exhaustive()
    }
}

/// Status words used here.
mod sw {
    pub const OK: u16 = 0x9000;
    pub const END_OF_FILE: u16 = 0x6282;
    pub const WRONG_LENGTH: u16 = 0x6700;
    pub const INCOMPATIBLE_FILE: u16 = 0x6981;
    pub const SECURITY: u16 = 0x6982;
    pub const LOCKED: u16 = 0x6984;
    pub const NO_CURRENT_EF: u16 = 0x6986;
    pub const NOT_FOUND: u16 = 0x6A82;
    pub const BAD_P1P2: u16 = 0x6A86;
    pub const OFFSET: u16 = 0x6B00;
    pub const INS: u16 = 0x6D00;
    pub const CLA: u16 = 0x6E00;
}

/// A parsed command APDU (short or extended).
struct Apdu<'a> {
    cla: u8,
    ins: u8,
    p1: u8,
    p2: u8,
    data: &'a [u8],
    /// Expected length; `Some(256)` for a short `00`.
    le: Option<usize>,
}

impl<'a> Apdu<'a> {
    fn parse(raw: &'a [u8]) -> Option<Self> {
        let (header, body) = raw.split_at_checked(4)?;
        let (cla, ins, p1, p2) = (header[0], header[1], header[2], header[3]);
        let mk = |data, le| Apdu {
            cla,
            ins,
            p1,
            p2,
            data,
            le,
        };
        match body.len() {
            0 => Some(mk(&[], None)),
            1 => Some(mk(
                &[],
                Some(if body[0] == 0 {
                    256
                } else {
                    usize::from(body[0])
                }),
            )),
            _ if body[0] != 0 => {
                let lc = usize::from(body[0]);
                let data = body.get(1..1 + lc)?;
                match body.len() - 1 - lc {
                    0 => Some(mk(data, None)),
                    1 => {
                        let le = body[1 + lc];
                        Some(mk(data, Some(if le == 0 { 256 } else { usize::from(le) })))
                    }
                    _ => None,
                }
            }
            // Extended forms start with 00.
            3 => {
                let le = usize::from(u16::from_be_bytes([body[1], body[2]]));
                Some(mk(&[], Some(if le == 0 { 65536 } else { le })))
            }
            n if n > 3 => {
                let lc = usize::from(u16::from_be_bytes([body[1], body[2]]));
                let data = body.get(3..3 + lc)?;
                match n - 3 - lc {
                    0 => Some(mk(data, None)),
                    2 => {
                        let le = usize::from(u16::from_be_bytes([body[3 + lc], body[4 + lc]]));
                        Some(mk(data, Some(if le == 0 { 65536 } else { le })))
                    }
                    _ => None,
                }
            }
            _ => None,
        }
    }
}

fn status(sw: u16) -> Vec<u8> {
    sw.to_be_bytes().to_vec()
}

fn with_status(mut data: Vec<u8>, sw: u16) -> Vec<u8> {
    data.extend_from_slice(&sw.to_be_bytes());
    data
}

impl VirtualCard {
    /// Builds the card a profile describes (the profile is validated again here).
    pub fn from_profile(profile: &Profile) -> Result<Self, VcardError> {
        let common = profile.common();
        let atr = match &common.atr {
            Some(hex) => parse_hex(hex)
                .ok_or_else(|| VcardError::Profile("field `atr` is not hex".into()))?,
            None => DEFAULT_ATR.to_vec(),
        };
        let key = |name, value: &str, max: u8, left: Option<u8>| Key {
            name,
            value: value.as_bytes().to_vec(),
            max,
            left: left.unwrap_or(max).min(max),
        };
        let data = |id, bytes, access| Ef {
            id,
            body: EfBody::Data { bytes, access },
        };
        let key_ef = |id, index| Ef {
            id,
            body: EfBody::Key(index),
        };
        let (kind, dfs, keys, clear_on_df_change) = match profile {
            Profile::MyNumber(p) => {
                let birth = Date::parse(&p.birth_date, "birth_date")?;
                let expiry = Date::parse(&p.expiry_date, "expiry_date")?;
                let code_b = files::code_b(birth, expiry, &p.security_code)?;
                let keys = vec![
                    key(KeyName::Pin, &p.pin, p.pin_tries, p.pin_tries_left),
                    key(
                        KeyName::CodeA,
                        &p.my_number,
                        p.code_a_tries,
                        p.code_a_tries_left,
                    ),
                    key(KeyName::CodeB, &code_b, p.code_b_tries, p.code_b_tries_left),
                ];
                let text_ap = Df {
                    aid: Some(TEXT_AP.to_vec()),
                    files: vec![
                        data(
                            0x0001,
                            files::my_number_file(&p.my_number),
                            Access::AnyOf(vec![0, 1]),
                        ),
                        data(
                            0x0002,
                            files::attributes_file(&p.name, &p.address, birth, &p.sex),
                            Access::AnyOf(vec![0, 2]),
                        ),
                        key_ef(0x0011, 0),
                        key_ef(0x0014, 1),
                        key_ef(0x0015, 2),
                    ],
                };
                let jpki = Df {
                    aid: Some(JPKI_AP.to_vec()),
                    files: vec![data(
                        0x0006,
                        files::token_info("JPKIAPICCTOKEN2"),
                        Access::Always,
                    )],
                };
                (CardKind::MyNumber, vec![text_ap, jpki], keys, true)
            }
            Profile::Juki(_) => {
                let jpki = Df {
                    aid: Some(JPKI_AP.to_vec()),
                    files: vec![data(
                        0x0006,
                        files::token_info("JPKIAPICCTOKEN"),
                        Access::Always,
                    )],
                };
                (CardKind::Juki, vec![jpki], Vec::new(), true)
            }
            Profile::Unknown(_) => (CardKind::Unknown, Vec::new(), Vec::new(), true),
            Profile::Licence(p) => {
                let dummy = "****";
                let pin1 = p.pin1.as_deref().unwrap_or(dummy);
                let pin2 = p.pin2.as_deref().unwrap_or(dummy);
                let keys = vec![
                    key(KeyName::Pin1, pin1, p.pin1_tries, p.pin1_tries_left),
                    key(KeyName::Pin2, pin2, p.pin2_tries, p.pin2_tries_left),
                ];
                let issue = Date::parse(&p.issue_date, "issue_date")?;
                let expiry = Date::parse(&p.expiry_date, "expiry_date")?;
                let birth = Date::parse(&p.birth_date, "birth_date")?;
                let mut ef01 = Vec::new();
                ef01.extend(files::tlv(&[0x12], &files::jis_x0208(&p.name, "name")?));
                ef01.extend(files::tlv(&[0x13], &files::jis_x0208(&p.kana, "kana")?));
                ef01.extend(files::tlv(&[0x16], &files::licence_date(birth)?));
                ef01.extend(files::tlv(
                    &[0x17],
                    &files::jis_x0208(&p.address, "address")?,
                ));
                ef01.extend(files::tlv(&[0x18], &files::licence_date(issue)?));
                ef01.extend(files::tlv(&[0x1B], &files::licence_date(expiry)?));
                ef01.extend(files::tlv(&[0x21], p.licence_number.as_bytes()));
                let mf = Df {
                    aid: None,
                    files: vec![
                        data(
                            0x2F01,
                            files::licence_common(&p.spec_version, issue, expiry),
                            Access::Always,
                        ),
                        data(
                            0x000A,
                            files::tlv(&[0xC1], &[u8::from(p.pin_set)]),
                            Access::Always,
                        ),
                        key_ef(0x0001, 0),
                        key_ef(0x0002, 1),
                    ],
                };
                let df1 = Df {
                    aid: Some(LICENCE_DF1.to_vec()),
                    files: vec![data(0x0001, ef01, Access::AnyOf(vec![0]))],
                };
                (CardKind::Licence, vec![mf, df1], keys, false)
            }
        };
        let label = common.label.unwrap_or_else(|| format!("{kind:?}"));
        let mut card = VirtualCard {
            kind,
            label,
            atr,
            read_past_end: common.read_past_end,
            dfs,
            keys,
            clear_on_df_change,
            session: Session::default(),
            powered: false,
        };
        card.reset_session();
        Ok(card)
    }

    /// Parses, validates and builds from profile JSON.
    pub fn from_json(text: &str) -> Result<Self, VcardError> {
        Self::from_profile(&Profile::from_json(text)?)
    }

    /// Reads, validates and builds from a profile file.
    pub fn from_file(path: &std::path::Path) -> Result<Self, VcardError> {
        Self::from_profile(&Profile::from_file(path)?)
    }

    /// Which card this is.
    pub fn kind(&self) -> CardKind {
        self.kind
    }

    /// The profile's label (never personal data).
    pub fn label(&self) -> &str {
        &self.label
    }

    /// The ATR answered to vpcd's `04`.
    pub fn atr(&self) -> &[u8] {
        &self.atr
    }

    /// Whether the card is powered.
    pub fn is_powered(&self) -> bool {
        self.powered
    }

    /// Attempts left on a key, if the card has it.
    pub fn retries_left(&self, name: KeyName) -> Option<u8> {
        self.keys.iter().find(|k| k.name == name).map(|k| k.left)
    }

    /// Whether a key is verified in the current session.
    pub fn is_verified(&self, name: KeyName) -> bool {
        self.keys
            .iter()
            .position(|k| k.name == name)
            .and_then(|i| self.session.verified.get(i).copied())
            .unwrap_or(false)
    }

    /// Power on (vpcd `01`): a fresh session.
    pub fn power_on(&mut self) {
        self.powered = true;
        self.reset_session();
    }

    /// Power off (vpcd `00`): the security state is gone.
    pub fn power_off(&mut self) {
        self.powered = false;
        self.reset_session();
    }

    /// Reset (vpcd `02`): the security state is gone, the card stays powered.
    pub fn reset(&mut self) {
        self.powered = true;
        self.reset_session();
    }

    fn reset_session(&mut self) {
        self.session = Session {
            // The licence starts in its MF; the My Number card has nothing selected.
            df: (self.kind == CardKind::Licence).then_some(0),
            ef: None,
            verified: vec![false; self.keys.len()],
        };
    }

    /// Answers one command APDU with a response APDU (data + SW1 SW2).
    pub fn process_apdu(&mut self, raw: &[u8]) -> Vec<u8> {
        // vpcd only sends APDUs to a powered card; a bare APDU (in-memory use) powers it.
        self.powered = true;
        let Some(apdu) = Apdu::parse(raw) else {
            return status(sw::WRONG_LENGTH);
        };
        if apdu.cla != 0x00 {
            return status(sw::CLA);
        }
        match apdu.ins {
            0xA4 => status(self.select(&apdu)),
            0x20 => status(self.verify(&apdu)),
            0xB0 => self.read_binary(&apdu),
            _ => status(sw::INS),
        }
    }

    fn current_df(&self) -> Option<&Df> {
        self.session.df.and_then(|i| self.dfs.get(i))
    }

    fn enter_df(&mut self, index: usize) {
        if self.clear_on_df_change && self.session.df != Some(index) {
            self.session.verified.iter_mut().for_each(|v| *v = false);
        }
        self.session.df = Some(index);
        self.session.ef = None;
    }

    fn select(&mut self, apdu: &Apdu<'_>) -> u16 {
        if !matches!(apdu.p2, 0x0C | 0x00) {
            return sw::BAD_P1P2;
        }
        match apdu.p1 {
            // SELECT MF.
            0x00 => {
                if !apdu.data.is_empty() && apdu.data != [0x3F, 0x00] {
                    return sw::BAD_P1P2;
                }
                match self.dfs.iter().position(|df| df.aid.is_none()) {
                    Some(mf) => {
                        self.enter_df(mf);
                        sw::OK
                    }
                    // The My Number card: 6A86 straight after reset, and a 9000 that
                    // changes nothing while an AP is current (as myna-card documents).
                    None if self.session.df.is_none() => sw::BAD_P1P2,
                    None => sw::OK,
                }
            }
            // SELECT DF by name (AID).
            0x04 => {
                if apdu.data.is_empty() || apdu.data.len() > 16 {
                    return sw::WRONG_LENGTH;
                }
                match self
                    .dfs
                    .iter()
                    .position(|df| df.aid.as_deref() == Some(apdu.data))
                {
                    Some(i) => {
                        self.enter_df(i);
                        sw::OK
                    }
                    None => sw::NOT_FOUND,
                }
            }
            // SELECT EF under the current DF.
            0x02 => {
                let Ok(id) = <[u8; 2]>::try_from(apdu.data) else {
                    return sw::WRONG_LENGTH;
                };
                let id = u16::from_be_bytes(id);
                let found = self
                    .current_df()
                    .and_then(|df| df.files.iter().position(|ef| ef.id == id));
                match found {
                    Some(i) => {
                        self.session.ef = Some(i);
                        sw::OK
                    }
                    None => sw::NOT_FOUND,
                }
            }
            _ => sw::BAD_P1P2,
        }
    }

    /// The EF a command names: the current one (`sfi` 0) or one by short identifier.
    fn target_ef(&mut self, sfi: u8) -> Result<usize, u16> {
        if sfi == 0 {
            return self.session.ef.ok_or(sw::NO_CURRENT_EF);
        }
        let index = self
            .current_df()
            .and_then(|df| df.files.iter().position(|ef| ef.id == u16::from(sfi)))
            .ok_or(sw::NOT_FOUND)?;
        self.session.ef = Some(index);
        Ok(index)
    }

    fn ef(&self, index: usize) -> Option<&Ef> {
        self.current_df().and_then(|df| df.files.get(index))
    }

    fn verify(&mut self, apdu: &Apdu<'_>) -> u16 {
        // P2 = 80: the key of the current EF; 80 | n: the key with short identifier n.
        if apdu.p1 != 0x00 || apdu.p2 & 0xE0 != 0x80 {
            return sw::BAD_P1P2;
        }
        let index = match self.target_ef(apdu.p2 & 0x1F) {
            Ok(i) => i,
            Err(sw) => return sw,
        };
        let k = match self.ef(index).map(|ef| &ef.body) {
            Some(EfBody::Key(k)) => *k,
            _ => return sw::INCOMPATIBLE_FILE,
        };
        let Some(key) = self.keys.get_mut(k) else {
            return sw::INCOMPATIBLE_FILE;
        };
        if apdu.data.is_empty() {
            // Retry query: costs nothing.
            return 0x63C0 | u16::from(key.left);
        }
        if key.left == 0 {
            return sw::LOCKED;
        }
        if apdu.data == key.value.as_slice() {
            key.left = key.max;
            if let Some(v) = self.session.verified.get_mut(k) {
                *v = true;
            }
            sw::OK
        } else {
            key.left -= 1;
            if let Some(v) = self.session.verified.get_mut(k) {
                *v = false;
            }
            0x63C0 | u16::from(key.left)
        }
    }

    fn read_binary(&mut self, apdu: &Apdu<'_>) -> Vec<u8> {
        let (sfi, offset) = if apdu.p1 & 0x80 != 0 {
            if apdu.p1 & 0x60 != 0 {
                return status(sw::BAD_P1P2);
            }
            (apdu.p1 & 0x1F, usize::from(apdu.p2))
        } else {
            (0, usize::from(u16::from_be_bytes([apdu.p1, apdu.p2])))
        };
        if !apdu.data.is_empty() {
            return status(sw::WRONG_LENGTH);
        }
        let index = match self.target_ef(sfi) {
            Ok(i) => i,
            Err(sw) => return status(sw),
        };
        let Some(EfBody::Data { bytes, access }) = self.ef(index).map(|ef| &ef.body) else {
            return status(sw::INCOMPATIBLE_FILE);
        };
        let allowed = match access {
            Access::Always => true,
            Access::AnyOf(keys) => keys
                .iter()
                .any(|&k| self.session.verified.get(k).copied().unwrap_or(false)),
        };
        if !allowed {
            return status(sw::SECURITY);
        }
        if offset >= bytes.len() {
            return status(sw::OFFSET);
        }
        let rest = &bytes[offset..];
        // A case 1 READ BINARY (no Le) is read as "as much as fits", like Le = 00.
        let le = apdu.le.unwrap_or(256);
        if le <= rest.len() {
            return with_status(rest[..le].to_vec(), sw::OK);
        }
        match self.read_past_end {
            ReadPastEnd::Truncate => with_status(rest.to_vec(), sw::OK),
            ReadPastEnd::Warning => with_status(rest.to_vec(), sw::END_OF_FILE),
            // 6Cxx can only name 1..=256 bytes; longer rests fall back to truncation.
            ReadPastEnd::WrongLength if rest.len() <= 256 => {
                status(0x6C00 | (rest.len() as u16 & 0xFF))
            }
            ReadPastEnd::WrongLength => with_status(rest.to_vec(), sw::OK),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn parses_each_apdu_case() {
        let a = Apdu::parse(&[0, 0xB0, 0, 0]).unwrap();
        assert_eq!((a.data.len(), a.le), (0, None));
        let a = Apdu::parse(&[0, 0xB0, 0, 0, 0]).unwrap();
        assert_eq!(a.le, Some(256));
        let a = Apdu::parse(&[0, 0xA4, 2, 0xC, 2, 0, 1]).unwrap();
        assert_eq!((a.data, a.le), (&[0u8, 1][..], None));
        let a = Apdu::parse(&[0, 0xA4, 2, 0xC, 2, 0, 1, 0x10]).unwrap();
        assert_eq!(a.le, Some(16));
        let a = Apdu::parse(&[0, 0xB0, 0, 0, 0, 0x01, 0x00]).unwrap();
        assert_eq!(a.le, Some(256));
        assert!(Apdu::parse(&[0, 0xA4, 2, 0xC, 3, 0, 1]).is_none());
        assert!(Apdu::parse(&[0, 0xA4, 2]).is_none());
    }
}
