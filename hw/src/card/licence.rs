//! The driver's licence IC (運転免許証).
//!
//! After PIN1 (IEF 0001 under the MF), DF1/EF 0001 holds simple TLV fields: `12`
//! 氏名, `13` 呼び名 (kana), `16` 生年月日, `17` 住所, `1B` 有効期限, `21` 免許証番号.
//! Text is JIS X 0208 as two-byte codes (each byte + 0x80 gives EUC-JP); `FFF1`–`FFF7`
//! refer to 外字 bitmaps and `FFFA` marks a missing character: both become `〓`
//! (U+3013) and flag the face for staff to check, never a guess. Dates are an era
//! digit (1 明治 … 5 令和) and YYMMDD, as BCD or ASCII digits.

use kakanai_protocol::personal::PersonalText;

use crate::card::identify::LICENCE_DF1;
use crate::card::link::CardLink;
use crate::card::{CardError, Secret};
use myna_card::Transmit;

/// What a licence shows, as read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LicenceFace {
    /// 氏名.
    pub name: PersonalText,
    /// 呼び名 (kana), when present.
    pub kana: Option<PersonalText>,
    /// 生年月日 as `YYYYMMDD` (Gregorian).
    pub birth_date: PersonalText,
    /// 住所.
    pub address: PersonalText,
    /// 有効期限 as `YYYYMMDD` (Gregorian).
    pub expiry: String,
    /// 免許証の番号 (12 digits).
    pub licence_number: PersonalText,
    /// Whether any text held a 外字 or missing character (shown as 〓).
    pub has_gaiji: bool,
}

/// A licence PIN (PIN1), 4 digits.
pub fn licence_pin(digits: &str) -> Result<Secret, CardError> {
    Secret::digits(digits, 4, "the licence PIN is 4 digits")
}

/// Reads the licence on `reader` with PIN1, then powers it down.
pub fn read_licence(
    ctx: &pcsc::Context,
    reader: &str,
    pin1: &Secret,
) -> Result<LicenceFace, CardError> {
    let mut link = CardLink::open(ctx, reader)?;
    let result = read_on(&mut link, pin1);
    let closed = link.close();
    let face = result?;
    closed?;
    Ok(face)
}

fn read_on(link: &mut CardLink, pin1: &Secret) -> Result<LicenceFace, CardError> {
    // SELECT MF.
    apdu(link, &[0x00, 0xA4, 0x00, 0x00]).map_err(wrong_card)?;
    select_ef(link, 0x0001)?;
    let pin = pin1.as_pin()?;
    let mut verify = vec![0x00, 0x20, 0x00, 0x80, pin.as_bytes().len() as u8];
    verify.extend_from_slice(pin.as_bytes());
    match send(link, &verify)? {
        (_, 0x9000) => {}
        (_, 0x63C0) | (_, 0x6984) | (_, 0x6983) => return Err(CardError::PinLocked),
        (_, sw) if sw & 0xFFF0 == 0x63C0 => {
            return Err(CardError::PinIncorrect {
                remaining: (sw & 0x000F) as u8,
            })
        }
        (_, sw) => return Err(CardError::Reader(format!("VERIFY answered {sw:04X}"))),
    }
    let mut select_df = vec![0x00, 0xA4, 0x04, 0x0C, LICENCE_DF1.len() as u8];
    select_df.extend_from_slice(&LICENCE_DF1);
    apdu(link, &select_df).map_err(wrong_card)?;
    select_ef(link, 0x0001)?;
    let data = read_binary_all(link)?;
    parse_face(&data)
}

fn wrong_card(e: CardError) -> CardError {
    match e {
        CardError::Reader(_) => CardError::WrongCard {
            expected: "driver's licence",
        },
        other => other,
    }
}

fn select_ef(link: &mut CardLink, id: u16) -> Result<(), CardError> {
    let [hi, lo] = id.to_be_bytes();
    apdu(link, &[0x00, 0xA4, 0x02, 0x0C, 0x02, hi, lo]).map(|_| ())
}

/// READ BINARY in chunks until the card says the file ended.
fn read_binary_all(link: &mut CardLink) -> Result<Vec<u8>, CardError> {
    let mut out = Vec::new();
    loop {
        if out.len() > 0x7FFF {
            return Err(CardError::Malformed("licence file too large".into()));
        }
        let [p1, p2] = (out.len() as u16).to_be_bytes();
        let (data, sw) = send(link, &[0x00, 0xB0, p1, p2, 0x00])?;
        match sw {
            0x9000 => {
                let short = data.len() < 256;
                out.extend_from_slice(&data);
                if short || data.is_empty() {
                    return Ok(out);
                }
            }
            // End of file reached exactly at the offset, or read past it.
            0x6B00 | 0x6282 => {
                out.extend_from_slice(&data);
                return Ok(out);
            }
            sw if sw & 0xFF00 == 0x6C00 => {
                let (data, sw) = send(link, &[0x00, 0xB0, p1, p2, (sw & 0xFF) as u8])?;
                if sw != 0x9000 {
                    return Err(CardError::Reader(format!("READ BINARY answered {sw:04X}")));
                }
                out.extend_from_slice(&data);
                return Ok(out);
            }
            0x6982 => return Err(CardError::NotPermitted("PIN1 not verified")),
            sw => return Err(CardError::Reader(format!("READ BINARY answered {sw:04X}"))),
        }
    }
}

fn apdu(link: &mut CardLink, command: &[u8]) -> Result<Vec<u8>, CardError> {
    match send(link, command)? {
        (data, 0x9000) => Ok(data),
        (_, sw) => Err(CardError::Reader(format!("card answered {sw:04X}"))),
    }
}

fn send(link: &mut CardLink, command: &[u8]) -> Result<(Vec<u8>, u16), CardError> {
    let mut resp = link.transmit(command).map_err(CardError::from)?;
    if resp.len() < 2 {
        return Err(CardError::Malformed(
            "response without a status word".into(),
        ));
    }
    let sw = u16::from_be_bytes([resp[resp.len() - 2], resp[resp.len() - 1]]);
    resp.truncate(resp.len() - 2);
    Ok((resp, sw))
}

/// Parses DF1/EF01.
pub fn parse_face(data: &[u8]) -> Result<LicenceFace, CardError> {
    let mut fields = std::collections::BTreeMap::new();
    let mut rest = data;
    while let Some((&tag, after)) = rest.split_first() {
        // Padding after the last field.
        if tag == 0xFF || tag == 0x00 {
            break;
        }
        let (len, after) = ber_length(after)?;
        if after.len() < len {
            return Err(CardError::Malformed(format!(
                "field {tag:02X} runs past the file"
            )));
        }
        fields.insert(tag, &after[..len]);
        rest = &after[len..];
    }
    let field = |tag: u8, what: &str| {
        fields
            .get(&tag)
            .copied()
            .ok_or_else(|| CardError::Malformed(format!("no {what} (tag {tag:02X})")))
    };
    let mut gaiji = false;
    let mut text = |tag: u8, what: &str| -> Result<String, CardError> {
        let (s, g) = decode_jis(field(tag, what)?)?;
        gaiji |= g;
        Ok(s)
    };
    let name = text(0x12, "氏名")?;
    let kana = match fields.get(&0x13) {
        Some(_) => Some(text(0x13, "呼び名")?),
        None => None,
    };
    let address = text(0x17, "住所")?;
    let birth_date = era_date(field(0x16, "生年月日")?)?;
    let expiry = era_date(field(0x1B, "有効期限")?)?;
    let number_raw = field(0x21, "免許証番号")?;
    let licence_number = if number_raw.iter().all(u8::is_ascii_digit) {
        String::from_utf8_lossy(number_raw).into_owned()
    } else {
        to_ascii_digits(&decode_jis(number_raw)?.0)
    };
    if licence_number.len() != 12 || !licence_number.bytes().all(|b| b.is_ascii_digit()) {
        return Err(CardError::Malformed("免許証番号 is not 12 digits".into()));
    }
    Ok(LicenceFace {
        name: PersonalText::new(name),
        kana: kana.map(PersonalText::new),
        birth_date: PersonalText::new(birth_date),
        address: PersonalText::new(address),
        expiry,
        licence_number: PersonalText::new(licence_number),
        has_gaiji: gaiji,
    })
}

fn ber_length(b: &[u8]) -> Result<(usize, &[u8]), CardError> {
    let short = || CardError::Malformed("truncated length".into());
    match b.split_first() {
        Some((&n, rest)) if n < 0x80 => Ok((n as usize, rest)),
        Some((&0x81, rest)) => rest
            .split_first()
            .map(|(&n, r)| (n as usize, r))
            .ok_or_else(short),
        Some((&0x82, rest)) if rest.len() >= 2 => {
            Ok((u16::from_be_bytes([rest[0], rest[1]]) as usize, &rest[2..]))
        }
        _ => Err(short()),
    }
}

/// JIS X 0208 two-byte codes to text; `(text, had_gaiji)`.
pub fn decode_jis(bytes: &[u8]) -> Result<(String, bool), CardError> {
    if !bytes.len().is_multiple_of(2) {
        return Err(CardError::Malformed("odd-length JIS X 0208 text".into()));
    }
    let mut out = String::new();
    let mut gaiji = false;
    for pair in bytes.chunks_exact(2) {
        let (hi, lo) = (pair[0], pair[1]);
        if hi == 0xFF && (matches!(lo, 0xF1..=0xF7) || lo == 0xFA) {
            out.push('〓');
            gaiji = true;
            continue;
        }
        if !(0x21..=0x7E).contains(&hi) || !(0x21..=0x7E).contains(&lo) {
            return Err(CardError::Malformed(format!(
                "not a JIS X 0208 code: {hi:02X}{lo:02X}"
            )));
        }
        let euc = [hi | 0x80, lo | 0x80];
        let decoded = encoding_rs::EUC_JP
            .decode_without_bom_handling_and_without_replacement(&euc)
            .ok_or_else(|| {
                CardError::Malformed(format!("unassigned JIS X 0208 code {hi:02X}{lo:02X}"))
            })?;
        out.push_str(&decoded);
    }
    Ok((out, gaiji))
}

fn to_ascii_digits(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            '０'..='９' => char::from(b'0' + (c as u32 - '０' as u32) as u8),
            other => other,
        })
        .collect()
}

/// Era digit + YYMMDD (BCD or ASCII) to Gregorian `YYYYMMDD`.
pub fn era_date(raw: &[u8]) -> Result<String, CardError> {
    let digits: String = if raw.iter().all(u8::is_ascii_digit) {
        String::from_utf8_lossy(raw).into_owned()
    } else {
        let hex: String = raw.iter().map(|b| format!("{b:02x}")).collect();
        hex.trim_start_matches('0').to_owned()
    };
    let bad = || CardError::Malformed("date is not era + YYMMDD".into());
    if digits.len() != 7 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let n = |r: std::ops::Range<usize>| digits[r].parse::<u32>().map_err(|_| bad());
    let base = match n(0..1)? {
        1 => 1867,
        2 => 1911,
        3 => 1925,
        4 => 1988,
        5 => 2018,
        _ => return Err(bad()),
    };
    let (yy, mm, dd) = (n(1..3)?, n(3..5)?, n(5..7)?);
    if yy == 0 || !(1..=12).contains(&mm) || !(1..=31).contains(&dd) {
        return Err(bad());
    }
    Ok(format!("{:04}{mm:02}{dd:02}", base + yy))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jis(s: &str) -> Vec<u8> {
        let (euc, _, _) = encoding_rs::EUC_JP.encode(s);
        euc.iter().map(|b| b & 0x7F).collect()
    }

    #[test]
    fn jis_text_and_gaiji() {
        assert_eq!(
            decode_jis(&jis("見本太郎")).unwrap(),
            ("見本太郎".to_owned(), false)
        );
        let mut with_gaiji = jis("見本");
        with_gaiji.extend_from_slice(&[0xFF, 0xF1]);
        assert_eq!(
            decode_jis(&with_gaiji).unwrap(),
            ("見本〓".to_owned(), true)
        );
        assert!(decode_jis(&[0x30]).is_err());
        assert!(decode_jis(&[0x80, 0x80]).is_err());
    }

    #[test]
    fn era_dates() {
        assert_eq!(era_date(b"4010203").unwrap(), "19890203");
        assert_eq!(era_date(&[0x05, 0x07, 0x12, 0x31]).unwrap(), "20251231");
        assert_eq!(era_date(b"3601231").unwrap(), "19851231");
        assert!(era_date(b"6010101").is_err());
        assert!(era_date(b"4011301").is_err());
    }

    #[test]
    fn face_parses_and_refuses_truncation() {
        let mut data = Vec::new();
        for (tag, value) in [
            (0x12u8, jis("見本　太郎")),
            (0x13, jis("みほん　たろう")),
            (0x16, b"3600715".to_vec()),
            (0x17, jis("架空県見本市本町１丁目２番３号")),
            (0x1B, b"5091231".to_vec()),
            (0x21, b"123456789012".to_vec()),
        ] {
            data.push(tag);
            data.push(value.len() as u8);
            data.extend_from_slice(&value);
        }
        let face = parse_face(&data).unwrap();
        assert_eq!(face.name.expose(), "見本　太郎");
        assert_eq!(face.birth_date.expose(), "19850715");
        assert_eq!(face.expiry, "20271231");
        assert!(!face.has_gaiji);
        assert!(parse_face(&data[..data.len() - 3]).is_err());
    }
}
