//! The virtual cards in memory: myna-card's `Card` drives the card model through its
//! `Transmit` trait, so the two agree on every APDU and file layout before pcscd is
//! involved; raw APDUs check the status words; bad profiles are refused.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use encoding_rs::EUC_JP;
use kakanai_hw::vcard::{CardKind, KeyName, Profile, ReadPastEnd, VcardError, VirtualCard};
use myna_card::ap::jpki::JpkiAp;
use myna_card::ap::text::{ef, TextAp};
use myna_card::{Card, Date, Error, Pin, Retries, Sex, TokenType, Transmit};

/// myna-card's transport over the card model, counting APDUs.
struct InMemory {
    card: VirtualCard,
    sent: Vec<Vec<u8>>,
}

impl Transmit for InMemory {
    fn transmit(&mut self, command: &[u8]) -> myna_card::Result<Vec<u8>> {
        self.sent.push(command.to_vec());
        Ok(self.card.process_apdu(command))
    }
}

fn profile_text(name: &str) -> String {
    let path = format!("{}/profiles/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(path).unwrap()
}

fn card(name: &str) -> VirtualCard {
    VirtualCard::from_json(&profile_text(name)).unwrap()
}

fn myna(name: &str) -> Card<InMemory> {
    Card::new(InMemory {
        card: card(name),
        sent: Vec::new(),
    })
}

fn pin(s: &str) -> Pin {
    Pin::numeric(s).unwrap()
}

fn sw(resp: &[u8]) -> u16 {
    u16::from_be_bytes([resp[resp.len() - 2], resp[resp.len() - 1]])
}

fn apdu(card: &mut VirtualCard, hex: &str) -> Vec<u8> {
    let bytes: Vec<u8> = hex
        .split_whitespace()
        .map(|b| u8::from_str_radix(b, 16).unwrap())
        .collect();
    card.process_apdu(&bytes)
}

const SELECT_TEXT_AP: &str = "00 A4 04 0C 0A D3 92 10 00 31 00 01 01 04 08";

#[test]
fn vcard_text_ap_reads_sample_through_myna_card_with_pin() {
    let mut c = myna("mynumber-sample.json");
    let mut text = TextAp::select(&mut c).unwrap();
    assert_eq!(text.retries(ef::PIN).unwrap(), Retries::Remaining(3));
    text.verify_pin(&pin("1234")).unwrap();
    let attrs = text.read_attributes().unwrap();
    assert_eq!(attrs.name, "見本\u{3000}花子");
    assert_eq!(attrs.split_name(), Some(("見本", "花子")));
    assert_eq!(attrs.address, "架空県見本市本町１丁目２番３号");
    assert_eq!(
        attrs.birth_date,
        Date {
            year: 1985,
            month: 4,
            day: 1
        }
    );
    assert_eq!(attrs.sex, Sex::Female);
    assert_eq!(text.read_my_number().unwrap().as_str(), "123456789018");
    // The physical file keeps its FF FF filler: 17 bytes.
    let physical = text.read_my_number_file().unwrap();
    assert_eq!(physical.len(), 17);
    assert_eq!(&physical[..3], &[0xFF, 0x10, 0x0C]);
    assert_eq!(&physical[15..], &[0xFF, 0xFF]);
    // The exact APDUs myna-card sent for the first steps.
    let sent = &c.transport().sent;
    assert_eq!(sent[0][..5], [0x00, 0xA4, 0x04, 0x0C, 0x0A]);
    assert_eq!(sent[1], [0x00, 0xA4, 0x02, 0x0C, 0x02, 0x00, 0x11]);
    assert_eq!(sent[2], [0x00, 0x20, 0x00, 0x80]);
}

#[test]
fn vcard_codes_a_and_b_each_open_only_their_file() {
    let birth = Date {
        year: 1985,
        month: 4,
        day: 1,
    };
    // myna-card's own builder (era year: 昭和60 → "60") must open EF0002.
    let code_b = myna_card::verification_code_b(birth, 2035, b"5678").unwrap();
    assert_eq!(code_b.as_bytes(), b"60040120355678");

    let mut c = myna("mynumber-sample.json");
    let mut text = TextAp::select(&mut c).unwrap();
    text.verify_code_b(&code_b).unwrap();
    assert_eq!(text.read_attributes().unwrap().name, "見本　花子");
    assert!(matches!(
        text.read_my_number(),
        Err(Error::Status(s)) if s.value() == 0x6982
    ));

    let mut c = myna("mynumber-sample.json");
    let mut text = TextAp::select(&mut c).unwrap();
    text.verify_code_a(&pin("123456789018")).unwrap();
    assert_eq!(text.read_my_number().unwrap().as_str(), "123456789018");
    assert!(matches!(
        text.read_attributes(),
        Err(Error::Status(s)) if s.value() == 0x6982
    ));
    // A Gregorian-year 照合番号B ("85…") is wrong: costs a try.
    assert_eq!(
        text.verify_code_b(&pin("85040120355678"))
            .unwrap_err()
            .to_string(),
        "incorrect PIN, 9 attempt(s) remaining"
    );
}

#[test]
fn vcard_pin_status_words_and_lock() {
    let mut c = card("mynumber-sample.json");
    assert_eq!(sw(&apdu(&mut c, SELECT_TEXT_AP)), 0x9000);
    assert_eq!(sw(&apdu(&mut c, "00 A4 02 0C 02 00 01")), 0x9000);
    assert_eq!(
        sw(&apdu(&mut c, "00 B0 00 00 11")),
        0x6982,
        "read before verify"
    );
    assert_eq!(sw(&apdu(&mut c, "00 A4 02 0C 02 00 11")), 0x9000);
    assert_eq!(sw(&apdu(&mut c, "00 20 00 80")), 0x63C3);
    assert_eq!(sw(&apdu(&mut c, "00 20 00 80 04 30 30 30 30")), 0x63C2);
    assert_eq!(
        sw(&apdu(&mut c, "00 20 00 80")),
        0x63C2,
        "query costs nothing"
    );
    assert_eq!(sw(&apdu(&mut c, "00 20 00 80 04 31 32 33 34")), 0x9000);
    assert_eq!(c.retries_left(KeyName::Pin), Some(3), "success resets");
    for expected in [0x63C2, 0x63C1, 0x63C0] {
        assert_eq!(sw(&apdu(&mut c, "00 20 00 80 04 39 39 39 39")), expected);
    }
    assert!(
        !c.is_verified(KeyName::Pin),
        "a wrong PIN drops the verified state"
    );
    assert_eq!(sw(&apdu(&mut c, "00 20 00 80 04 31 32 33 34")), 0x6984);
    assert_eq!(sw(&apdu(&mut c, "00 20 00 80")), 0x63C0);
    // Power cycles keep the counter.
    c.power_off();
    c.power_on();
    assert_eq!(c.retries_left(KeyName::Pin), Some(0));
    // Other status words.
    assert_eq!(
        sw(&apdu(&mut c, "00 A4 02 0C 02 00 01")),
        0x6A82,
        "no AP after power-on"
    );
    assert_eq!(
        sw(&apdu(&mut c, "00 A4 00 00")),
        0x6A86,
        "SELECT MF after reset"
    );
    assert_eq!(sw(&apdu(&mut c, "00 A4 04 0C 03 D3 92 10")), 0x6A82);
    assert_eq!(sw(&apdu(&mut c, "00 A4 07 0C 02 00 01")), 0x6A86);
    assert_eq!(sw(&apdu(&mut c, "00 CA 00 00 00")), 0x6D00);
    assert_eq!(sw(&apdu(&mut c, "80 B0 00 00 00")), 0x6E00);
    assert_eq!(sw(&apdu(&mut c, "00 B0 00 00 00")), 0x6986, "no current EF");
}

#[test]
fn vcard_read_binary_offsets_and_past_end() {
    let mut c = card("mynumber-sample.json");
    apdu(&mut c, SELECT_TEXT_AP);
    apdu(&mut c, "00 A4 02 0C 02 00 11");
    assert_eq!(sw(&apdu(&mut c, "00 20 00 80 04 31 32 33 34")), 0x9000);
    apdu(&mut c, "00 A4 02 0C 02 00 01");
    let r = apdu(&mut c, "00 B0 00 03 05");
    assert_eq!(r, b"12345\x90\x00");
    // Le past the end: the rest with 9000 (JICSAP; the default).
    let r = apdu(&mut c, "00 B0 00 0F 00");
    assert_eq!(r, [0xFF, 0xFF, 0x90, 0x00]);
    assert_eq!(
        sw(&apdu(&mut c, "00 B0 00 11 01")),
        0x6B00,
        "offset == size"
    );
    assert_eq!(sw(&apdu(&mut c, "00 B0 7F FF 01")), 0x6B00);
    // Short EF identifier: P1 = 80 | 02 reads EF0002 without a SELECT.
    let r = apdu(&mut c, "00 B0 82 00 03");
    assert_eq!(&r[..2], &[0xFF, 0x20]);
    assert_eq!(sw(&r), 0x9000);

    // The two other policies a profile can ask for.
    let text = profile_text("mynumber-sample.json");
    for (policy, expect) in [("warning", 0x6282u16), ("wrong_length", 0x6C11)] {
        let json = text.replacen('{', &format!("{{\"read_past_end\": \"{policy}\","), 1);
        let profile = Profile::from_json(&json).unwrap();
        assert_ne!(profile.common().read_past_end, ReadPastEnd::Truncate);
        let mut c = VirtualCard::from_profile(&profile).unwrap();
        apdu(&mut c, SELECT_TEXT_AP);
        apdu(&mut c, "00 A4 02 0C 02 00 11");
        apdu(&mut c, "00 20 00 80 04 31 32 33 34");
        apdu(&mut c, "00 A4 02 0C 02 00 01");
        let r = apdu(&mut c, "00 B0 00 00 00");
        assert_eq!(sw(&r), expect, "{policy}");
        if policy == "warning" {
            assert_eq!(r.len(), 17 + 2, "data comes with 6282");
        }
        // myna-card resends on 6Cxx and still reads the number. On 6282 its
        // `read_binary_all` treats the first chunk as end-of-file and drops the data,
        // so the 個人番号 parse fails: a trap for anyone choosing that policy.
        let mut mc = Card::new(InMemory {
            card: VirtualCard::from_profile(&profile).unwrap(),
            sent: Vec::new(),
        });
        let mut t = TextAp::select(&mut mc).unwrap();
        t.verify_pin(&pin("1234")).unwrap();
        let got = t.read_my_number();
        if policy == "wrong_length" {
            assert_eq!(got.unwrap().as_str(), "123456789018");
        } else {
            assert!(got.is_err());
        }
    }
}

#[test]
fn vcard_security_state_clears_on_power_reset_and_ap_change() {
    let mut c = card("mynumber-sample.json");
    let verify = |c: &mut VirtualCard| {
        apdu(c, SELECT_TEXT_AP);
        apdu(c, "00 A4 02 0C 02 00 11");
        assert_eq!(sw(&apdu(c, "00 20 00 80 04 31 32 33 34")), 0x9000);
        apdu(c, "00 A4 02 0C 02 00 01");
    };
    verify(&mut c);
    assert_eq!(sw(&apdu(&mut c, "00 B0 00 00 11")), 0x9000);
    c.reset();
    apdu(&mut c, SELECT_TEXT_AP);
    apdu(&mut c, "00 A4 02 0C 02 00 01");
    assert_eq!(sw(&apdu(&mut c, "00 B0 00 00 11")), 0x6982, "reset");
    verify(&mut c);
    c.power_off();
    c.power_on();
    apdu(&mut c, SELECT_TEXT_AP);
    apdu(&mut c, "00 A4 02 0C 02 00 01");
    assert_eq!(sw(&apdu(&mut c, "00 B0 00 00 11")), 0x6982, "power cycle");
    verify(&mut c);
    // Re-selecting the same AP keeps it; another AP drops it.
    apdu(&mut c, SELECT_TEXT_AP);
    apdu(&mut c, "00 A4 02 0C 02 00 01");
    assert_eq!(sw(&apdu(&mut c, "00 B0 00 00 11")), 0x9000);
    apdu(&mut c, "00 A4 04 0C 0A D3 92 F0 00 26 01 00 00 00 01");
    apdu(&mut c, SELECT_TEXT_AP);
    apdu(&mut c, "00 A4 02 0C 02 00 01");
    assert_eq!(sw(&apdu(&mut c, "00 B0 00 00 11")), 0x6982, "other AP");
}

#[test]
fn vcard_jpki_token_tells_mynumber_from_juki_without_a_pin() {
    let mut c = myna("mynumber-sample.json");
    let token = JpkiAp::select(&mut c).unwrap().read_token_type().unwrap();
    assert_eq!(token, TokenType::Card);
    let info = JpkiAp::select(&mut c).unwrap().read_token_info().unwrap();
    assert_eq!(info.token_type, TokenType::Card);
    assert_eq!(
        c.transport().card.retries_left(KeyName::Pin),
        Some(3),
        "no try spent"
    );

    let mut j = myna("juki-sample.json");
    let token = JpkiAp::select(&mut j).unwrap().read_token_type().unwrap();
    assert_eq!(token.name(), "JPKIAPICCTOKEN");
    assert!(!token.is_physical_card());
    assert_eq!(j.transport().card.kind(), CardKind::Juki);
    // A 住基カード has no 券面事項入力補助AP.
    assert!(matches!(
        TextAp::select(&mut j),
        Err(Error::Status(s)) if s.value() == 0x6A82
    ));
}

#[test]
fn vcard_locked_profile_refuses_the_right_pin() {
    let mut c = myna("mynumber-locked.json");
    let mut text = TextAp::select(&mut c).unwrap();
    assert_eq!(text.retries(ef::PIN).unwrap(), Retries::Blocked);
    assert!(matches!(
        text.verify_pin(&pin("1234")),
        Err(Error::PinBlocked)
    ));
    // 照合番号B still works on a card whose PIN is locked.
    let code_b = pin("60040120355678");
    text.verify_code_b(&code_b).unwrap();
    assert_eq!(text.read_attributes().unwrap().sex, Sex::Female);
}

#[test]
fn vcard_non_bmp_and_ivs_text_round_trips_with_long_form_lengths() {
    let expected = profile_text("mynumber-ivs.json");
    let json: serde_json::Value = serde_json::from_str(&expected).unwrap();
    let name = json["name"].as_str().unwrap();
    assert_eq!(name, "\u{20BB7}野\u{3000}\u{9089}\u{E0111}子");
    let mut c = myna("mynumber-ivs.json");
    let mut text = TextAp::select(&mut c).unwrap();
    text.verify_pin(&pin("1234")).unwrap();
    text.card().select_ef(ef::ATTRIBUTES).unwrap();
    let raw = text.card().read_binary_all().unwrap();
    // FF 20 82 xx xx: the two-byte long form, and a file longer than one READ BINARY.
    assert_eq!(&raw[..3], &[0xFF, 0x20, 0x82]);
    assert!(raw.len() > 256);
    let attrs = myna_card::ap::text::Attributes::parse(&raw).unwrap();
    assert_eq!(attrs.name, name);
    assert_eq!(attrs.address, json["address"].as_str().unwrap());
    assert_eq!(attrs.sex, Sex::NotApplicable);
    // The address itself uses the 81 form.
    let addr_at = raw.windows(2).position(|w| w == [0xDF, 0x23]).unwrap();
    assert_eq!(raw[addr_at + 2], 0x81);
    // Two READ BINARYs: 256 bytes, then the rest from offset 256 (P1-P2 = 01 00).
    let reads: Vec<_> = c
        .transport()
        .sent
        .iter()
        .filter(|a| a[1] == 0xB0)
        .cloned()
        .collect();
    assert_eq!(reads.len(), 2);
    assert_eq!(&reads[1][..4], &[0x00, 0xB0, 0x01, 0x00]);
    // 令和元年 birth date: 照合番号B starts "010501".
    let mut c = myna("mynumber-ivs.json");
    let mut text = TextAp::select(&mut c).unwrap();
    text.verify_code_b(&pin("01050120355678")).unwrap();
}

fn licence_fields(raw: &[u8]) -> Vec<(u8, Vec<u8>)> {
    let mut out = Vec::new();
    let mut rest = raw;
    while rest.len() >= 2 {
        let tag = rest[0];
        let (len, hdr) = match rest[1] {
            0x81 => (usize::from(rest[2]), 3),
            0x82 => (usize::from(u16::from_be_bytes([rest[2], rest[3]])), 4),
            l => (usize::from(l), 2),
        };
        out.push((tag, rest[hdr..hdr + len].to_vec()));
        rest = &rest[hdr + len..];
    }
    out
}

/// Raw JIS X 0208 → UTF-8: add 0x80 to each byte and decode as EUC-JP.
fn jis_to_string(raw: &[u8]) -> String {
    let euc: Vec<u8> = raw.iter().map(|b| b + 0x80).collect();
    let (text, _, errors) = EUC_JP.decode(&euc);
    assert!(!errors);
    text.into_owned()
}

#[test]
fn vcard_licence_pin1_opens_df1_ef01() {
    let mut c = card("licence-sample.json");
    // MF/EF 2F01 without a PIN: 17 bytes.
    assert_eq!(sw(&apdu(&mut c, "00 A4 00 00")), 0x9000);
    assert_eq!(sw(&apdu(&mut c, "00 A4 02 0C 02 2F 01")), 0x9000);
    let common = apdu(&mut c, "00 B0 00 00 11");
    assert_eq!(sw(&common), 0x9000);
    assert_eq!(
        &common[..17],
        &[
            0x45, 0x0B, b'0', b'0', b'8', 0x20, 0x23, 0x05, 0x10, 0x20, 0x28, 0x05, 0x01, 0x46,
            0x02, 0x00, 0x00
        ]
    );
    // MF/EF 000A: PIN set.
    apdu(&mut c, "00 A4 02 0C 02 00 0A");
    assert_eq!(
        apdu(&mut c, "00 B0 00 00 00"),
        [0xC1, 0x01, 0x01, 0x90, 0x00]
    );
    // DF1/EF01 before PIN1.
    let select_df1 = "00 A4 04 0C 10 A0 00 00 02 31 01 00 00 00 00 00 00 00 00 00 00";
    assert_eq!(sw(&apdu(&mut c, select_df1)), 0x9000);
    assert_eq!(sw(&apdu(&mut c, "00 A4 02 0C 02 00 01")), 0x9000);
    assert_eq!(sw(&apdu(&mut c, "00 B0 00 00 00")), 0x6982);
    // PIN1 lives in the MF.
    apdu(&mut c, "00 A4 00 00");
    apdu(&mut c, "00 A4 02 0C 02 00 01");
    assert_eq!(sw(&apdu(&mut c, "00 20 00 80")), 0x63C3);
    assert_eq!(sw(&apdu(&mut c, "00 20 00 80 04 35 36 37 38")), 0x63C2);
    assert_eq!(sw(&apdu(&mut c, "00 20 00 80 04 31 32 33 34")), 0x9000);
    apdu(&mut c, "00 A4 02 0C 02 00 02");
    assert_eq!(sw(&apdu(&mut c, "00 20 00 80")), 0x63C3, "PIN2 separate");
    // Selecting DF1 keeps PIN1.
    apdu(&mut c, select_df1);
    apdu(&mut c, "00 A4 02 0C 02 00 01");
    let r = apdu(&mut c, "00 B0 00 00 00");
    assert_eq!(sw(&r), 0x9000);
    let fields = licence_fields(&r[..r.len() - 2]);
    let get = |tag: u8| {
        fields
            .iter()
            .find(|(t, _)| *t == tag)
            .map(|(_, v)| v.clone())
            .unwrap()
    };
    assert_eq!(jis_to_string(&get(0x12)), "見本　花子");
    assert_eq!(jis_to_string(&get(0x13)), "ミホン　ハナコ");
    assert_eq!(jis_to_string(&get(0x17)), "架空県見本市本町１丁目２番３号");
    assert_eq!(get(0x16), b"3600401", "昭和60年4月1日");
    assert_eq!(get(0x18), b"5050510", "令和5年5月10日");
    assert_eq!(get(0x1B), b"5100501", "令和10年5月1日");
    assert_eq!(get(0x21), b"123456789012");
}

#[test]
fn vcard_licence_gaiji_reference_is_raw() {
    let mut c = card("licence-gaiji.json");
    apdu(&mut c, "00 A4 02 0C 02 00 01");
    apdu(&mut c, "00 20 00 80 04 31 32 33 34");
    apdu(
        &mut c,
        "00 A4 04 0C 10 A0 00 00 02 31 01 00 00 00 00 00 00 00 00 00 00",
    );
    apdu(&mut c, "00 A4 02 0C 02 00 01");
    let r = apdu(&mut c, "00 B0 00 00 00");
    let fields = licence_fields(&r[..r.len() - 2]);
    let name = &fields.iter().find(|(t, _)| *t == 0x12).unwrap().1;
    assert_eq!(&name[name.len() - 2..], &[0xFF, 0xF1]);
    assert_eq!(jis_to_string(&name[..name.len() - 2]), "見本　花");
}

fn rejected(json: &str) -> String {
    match Profile::from_json(json) {
        Err(VcardError::Profile(msg)) => msg,
        other => panic!("expected a profile error, got {other:?}"),
    }
}

#[test]
fn vcard_bad_profiles_are_rejected_without_quoting_values() {
    let good = profile_text("mynumber-sample.json");
    let msg = rejected(&good.replace("\"1234\"", "\"12345\""));
    assert!(
        msg.contains("`pin`") && msg.contains("4 ASCII digits"),
        "{msg}"
    );
    let msg = rejected(&good.replace("123456789018", "123456789012"));
    assert!(msg.contains("check digit"), "{msg}");
    assert!(!msg.contains("123456789012"), "{msg}");
    let msg = rejected(&good.replace("\"sex\"", "\"gender\""));
    assert!(msg.contains("unknown field `gender`"), "{msg}");
    let msg = rejected(&good.replace("\"1985-04-01\"", "\"1985-02-30\""));
    assert!(msg.contains("birth_date"), "{msg}");
    // A type error must not echo the value (serde_json's own text would).
    let msg = rejected(&good.replace("\"1234\"", "1234"));
    assert!(!msg.contains("1234"), "{msg}");
    let msg = rejected(r#"{"type": "passport"}"#);
    assert!(msg.contains("unknown variant"), "{msg}");

    let licence = profile_text("licence-sample.json");
    // Half-width and U+2212 have no (round-tripping) JIS X 0208 form.
    let msg = rejected(&licence.replace("ミホン", "ﾐﾎﾝ"));
    assert!(
        msg.contains("`kana`") && msg.contains("JIS X 0208"),
        "{msg}"
    );
    let msg = rejected(&licence.replace("本町", "本町\u{2212}"));
    assert!(msg.contains("`address`"), "{msg}");
    let msg = rejected(&licence.replace("\"pin2\": \"5678\"", "\"pin2\": \"56\""));
    assert!(msg.contains("`pin2`"), "{msg}");

    // A missing file names the path, the error is typed.
    assert!(matches!(
        VirtualCard::from_file(std::path::Path::new("/nonexistent/profile.json")),
        Err(VcardError::ProfileIo { .. })
    ));
}
