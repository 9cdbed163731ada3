//! File contents built from a profile, byte for byte as readers parse them.

use super::profile::Date;
use super::VcardError;

/// A BER-TLV object: tag bytes, definite length (short form, `81 xx` or `82 xx xx`), value.
pub(crate) fn tlv(tag: &[u8], value: &[u8]) -> Vec<u8> {
    let mut out = tag.to_vec();
    out.extend(ber_len(value.len()));
    out.extend_from_slice(value);
    out
}

/// BER definite length. Values here never reach 64 KiB (READ BINARY offsets stop at
/// 32 KiB), so `82` is the longest form needed.
pub(crate) fn ber_len(len: usize) -> Vec<u8> {
    match len {
        0..=0x7F => vec![len as u8],
        0x80..=0xFF => vec![0x81, len as u8],
        _ => {
            let [hi, lo] = u16::try_from(len).unwrap_or(u16::MAX).to_be_bytes();
            vec![0x82, hi, lo]
        }
    }
}

/// 券面事項入力補助AP EF0001: `FF 10 0C` + 12 ASCII digits + `FF FF` (17 bytes).
pub(crate) fn my_number_file(my_number: &str) -> Vec<u8> {
    let mut out = tlv(&[0xFF, 0x10], my_number.as_bytes());
    out.extend_from_slice(&[0xFF, 0xFF]);
    out
}

/// 券面事項入力補助AP EF0002 (基本4情報).
///
/// `DF21` holds the offsets of DF22..DF25 from the **start of the file** (so the outer
/// header's length, which grows to `81 xx` / `82 xx xx` with long addresses, shifts
/// every offset) — the rule myna-card checks.
pub(crate) fn attributes_file(name: &str, address: &str, birth: Date, sex: &str) -> Vec<u8> {
    let fields = [
        tlv(&[0xDF, 0x22], name.as_bytes()),
        tlv(&[0xDF, 0x23], address.as_bytes()),
        tlv(&[0xDF, 0x24], birth.yyyymmdd().as_bytes()),
        tlv(&[0xDF, 0x25], sex.as_bytes()),
    ];
    // DF21 is always 3 + 8 bytes; the outer length depends on everything inside.
    let table_len = 3 + 8;
    let inner_len = table_len + fields.iter().map(Vec::len).sum::<usize>();
    let outer_header = 2 + ber_len(inner_len).len();
    let mut offsets = Vec::with_capacity(8);
    let mut pos = outer_header + table_len;
    for field in &fields {
        offsets.extend_from_slice(&u16::try_from(pos).unwrap_or(u16::MAX).to_be_bytes());
        pos += field.len();
    }
    let mut inner = tlv(&[0xDF, 0x21], &offsets);
    for field in &fields {
        inner.extend_from_slice(field);
    }
    tlv(&[0xFF, 0x20], &inner)
}

/// JPKI AP EF0006: a 160-byte PKCS #11 `CK_TOKEN_INFO` with 32-bit big-endian
/// `CK_ULONG`s, label space-padded to 32 bytes (`JPKIAPICCTOKEN2` or, on a 住基カード,
/// `JPKIAPICCTOKEN`).
pub(crate) fn token_info(label: &str) -> Vec<u8> {
    fn padded(text: &str, len: usize) -> Vec<u8> {
        let mut v = text.as_bytes().to_vec();
        v.resize(len, b' ');
        v
    }
    let mut out = padded(label, 32);
    out.extend(padded("Kakanai virtual card", 32)); // manufacturerID
    out.extend(padded("vcard", 16)); // model
    out.extend(padded("0000000000000000", 16)); // serialNumber
                                                // flags: RNG | LOGIN_REQUIRED | USER_PIN_INITIALIZED | TOKEN_INITIALIZED
    let words: [u32; 11] = [
        0x40D,
        0,
        0,
        0,
        0,
        4,
        4,
        u32::MAX,
        u32::MAX,
        u32::MAX,
        u32::MAX,
    ];
    for w in words {
        out.extend_from_slice(&w.to_be_bytes());
    }
    out.extend_from_slice(b"0301"); // hardware/firmware "version" as the cards store it
    out.extend(padded("", 16)); // utcTime
    out
}

/// 照合番号B: birth date as **era** YYMMDD (昭和55 → `55`, as myna-card's
/// `verification_code_b` confirms on a real card, not the Gregorian `80`), then the
/// Gregorian expiry year, then the 4-digit security code.
pub(crate) fn code_b(birth: Date, expiry: Date, security_code: &str) -> Result<String, VcardError> {
    let (_, era_year) = birth.era("birth_date")?;
    Ok(format!(
        "{:02}{:02}{:02}{:04}{}",
        era_year, birth.month, birth.day, expiry.year, security_code
    ))
}

/// Licence MF/EF 2F01 (17 bytes): `45 0B` spec version (3 ASCII) + issue and expiry
/// dates as BCD `YYYYMMDD`; `46 02` card maker and crypto function identifiers.
pub(crate) fn licence_common(spec_version: &str, issue: Date, expiry: Date) -> Vec<u8> {
    let mut value = spec_version.as_bytes().to_vec();
    value.extend(bcd(&issue.yyyymmdd()));
    value.extend(bcd(&expiry.yyyymmdd()));
    let mut out = tlv(&[0x45], &value);
    out.extend(tlv(&[0x46], &[0x00, 0x00]));
    out
}

fn bcd(digits: &str) -> Vec<u8> {
    digits
        .as_bytes()
        .chunks(2)
        .map(|p| ((p[0] - b'0') << 4) | (p.get(1).copied().unwrap_or(b'0') - b'0'))
        .collect()
}

/// Licence date: era digit + YYMMDD in ASCII (7 bytes).
pub(crate) fn licence_date(date: Date) -> Result<Vec<u8>, VcardError> {
    let (era, year) = date.era("date")?;
    Ok(format!("{era}{:02}{:02}{:02}", year, date.month, date.day).into_bytes())
}

/// Text as raw JIS X 0208 codes: EUC-JP with 0x80 taken off each byte.
///
/// `{FFF1}`..`{FFF7}` (外字 references) and `{FFFA}` (missing character) become those
/// raw codes. Every other character must be a two-byte JIS X 0208 character that
/// decodes back to itself: ASCII, half-width katakana and JIS X 0212 have no raw
/// two-byte form, and WHATWG EUC-JP maps some code points one way only (U+2212 → A1DD →
/// U+FF0D), which would silently change the text.
pub(crate) fn jis_x0208(text: &str, field: &'static str) -> Result<Vec<u8>, VcardError> {
    let mut out = Vec::with_capacity(text.len());
    let mut rest = text;
    while !rest.is_empty() {
        if let Some(code) = gaiji_escape(rest) {
            out.extend_from_slice(&code.to_be_bytes());
            rest = &rest[6..];
            continue;
        }
        let ch = rest.chars().next().unwrap_or_default();
        let len = ch.len_utf8();
        let piece = &rest[..len];
        let (encoded, _, unmappable) = encoding_rs::EUC_JP.encode(piece);
        let (decoded, malformed) = encoding_rs::EUC_JP.decode_without_bom_handling(&encoded);
        let two_byte = encoded.len() == 2 && encoded.iter().all(|b| (0xA1..=0xFE).contains(b));
        if unmappable || malformed || !two_byte || decoded != piece {
            return Err(VcardError::Profile(format!(
                "field `{field}` has a character that is not a two-byte JIS X 0208 character \
                 (U+{:04X}); use full-width forms or a {{FFF1}}..{{FFF7}} 外字 reference",
                u32::from(ch)
            )));
        }
        out.extend(encoded.iter().map(|b| b - 0x80));
        rest = &rest[len..];
    }
    Ok(out)
}

fn gaiji_escape(s: &str) -> Option<u16> {
    let b = s.as_bytes();
    if b.len() >= 6 && b[0] == b'{' && b[5] == b'}' {
        let code = u16::from_str_radix(s.get(1..5)?, 16).ok()?;
        if (0xFFF1..=0xFFF7).contains(&code) || code == 0xFFFA {
            return Some(code);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn ber_lengths_switch_form_at_128_and_256() {
        assert_eq!(ber_len(0x7F), [0x7F]);
        assert_eq!(ber_len(0x80), [0x81, 0x80]);
        assert_eq!(ber_len(0xFF), [0x81, 0xFF]);
        assert_eq!(ber_len(0x100), [0x82, 0x01, 0x00]);
    }

    #[test]
    fn attributes_match_the_real_card_layout() {
        // myna-card's fixture from a real card: FF 20 65 DF 21 08 000E 0020 0059 0064.
        let file = attributes_file(
            "黒桐　幹也",
            "東京都清瀬市観布子南１２－７－２０２",
            Date::parse("1980-02-17", "t").unwrap(),
            "1",
        );
        assert_eq!(
            &file[..14],
            &[0xFF, 0x20, 0x65, 0xDF, 0x21, 0x08, 0x00, 0x0E, 0x00, 0x20, 0x00, 0x59, 0x00, 0x64]
        );
        assert_eq!(file.len(), 3 + 0x65);
    }

    #[test]
    fn code_b_uses_the_era_year() {
        let b = code_b(
            Date::parse("1980-02-17", "t").unwrap(),
            Date::parse("2035-02-17", "t").unwrap(),
            "2285",
        )
        .unwrap();
        assert_eq!(b, "55021720352285");
    }

    #[test]
    fn licence_text_round_trips_and_refuses_what_cannot() {
        let raw = jis_x0208("見本　花{FFF1}", "t").unwrap();
        assert_eq!(&raw[raw.len() - 2..], &[0xFF, 0xF1]);
        assert_eq!(&raw[..2], &[0x38, 0x2B]); // 見 = EUC-JP B8 AB
        assert!(jis_x0208("A", "t").is_err());
        assert!(jis_x0208("ｱ", "t").is_err());
        assert!(jis_x0208("\u{2212}", "t").is_err());
        assert!(jis_x0208("\u{20BB7}", "t").is_err());
    }

    #[test]
    fn licence_common_is_17_bytes() {
        let d = Date::parse("2023-05-01", "t").unwrap();
        let f = licence_common("008", d, d);
        assert_eq!(f.len(), 17);
        assert_eq!(&f[5..9], &[0x20, 0x23, 0x05, 0x01]);
    }
}
