//! The virtual cards through real pcscd + vpcd: the `pcsc` crate and `scriptor` as
//! independent PC/SC clients, myna-card's PC/SC transport as the reader code will use
//! it, card removal (also in the middle of a read), and the `kakanai-vcard` binary.
//! A missing pcscd fails these tests (the peers crate says how to install it).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::ffi::CString;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use encoding_rs::EUC_JP;
use kakanai_hw::vcard::{KeyName, VirtualCard, VpcdLink};
use kakanai_test_peers::Pcscd;
use myna_card::ap::jpki::JpkiAp;
use myna_card::ap::text::{ef, TextAp};
use myna_card::transport::pcsc::{self as myna_pcsc, Sharing};
use myna_card::{Pin, Retries, Sex, TokenType};
use pcsc::{Context, Disposition, Protocols, ReaderState, Scope, ShareMode, State};

const SELECT_TEXT_AP: &[u8] = &[
    0x00, 0xA4, 0x04, 0x0C, 0x0A, 0xD3, 0x92, 0x10, 0x00, 0x31, 0x00, 0x01, 0x01, 0x04, 0x08,
];
const SELECT_PIN: &[u8] = &[0x00, 0xA4, 0x02, 0x0C, 0x02, 0x00, 0x11];
const SELECT_EF0001: &[u8] = &[0x00, 0xA4, 0x02, 0x0C, 0x02, 0x00, 0x01];
const SELECT_EF0002: &[u8] = &[0x00, 0xA4, 0x02, 0x0C, 0x02, 0x00, 0x02];
const RETRY_QUERY: &[u8] = &[0x00, 0x20, 0x00, 0x80];
const VERIFY_1234: &[u8] = &[0x00, 0x20, 0x00, 0x80, 0x04, b'1', b'2', b'3', b'4'];
const VERIFY_0000: &[u8] = &[0x00, 0x20, 0x00, 0x80, 0x04, b'0', b'0', b'0', b'0'];
const READ_17: &[u8] = &[0x00, 0xB0, 0x00, 0x00, 0x11];
const READ_ALL: &[u8] = &[0x00, 0xB0, 0x00, 0x00, 0x00];

fn profile(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("profiles")
        .join(name)
}

fn card(name: &str) -> VirtualCard {
    VirtualCard::from_file(&profile(name)).unwrap()
}

/// pcscd, a virtual card in slot 0, and the reader name; waits until pcscd sees it.
fn setup(name: &str) -> (Pcscd, VpcdLink, Context, CString) {
    let pcscd = Pcscd::start().expect("pcscd with vpcd must be available");
    let link = VpcdLink::connect(("127.0.0.1", pcscd.vpcd_port(0)), card(name)).unwrap();
    let ctx = Context::establish(Scope::User).unwrap();
    let reader = CString::new(pcscd.reader_name(0)).unwrap();
    assert!(wait_card(&ctx, &reader, true), "pcscd did not see the card");
    (pcscd, link, ctx, reader)
}

/// Waits up to 10 s for the reader to report the card present (or absent).
fn wait_card(ctx: &Context, reader: &CString, present: bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut states = [ReaderState::new(reader.clone(), State::UNAWARE)];
    while Instant::now() < deadline {
        if ctx
            .get_status_change(Duration::from_millis(500), &mut states)
            .is_ok()
        {
            let ev = states[0].event_state();
            let here = ev.contains(State::PRESENT);
            if here == present && (present || ev.contains(State::EMPTY)) {
                return true;
            }
            states[0].sync_current_state();
        }
    }
    false
}

fn tx(card: &pcsc::Card, apdu: &[u8]) -> Vec<u8> {
    let mut buf = [0u8; pcsc::MAX_BUFFER_SIZE];
    card.transmit(apdu, &mut buf).unwrap().to_vec()
}

fn sw(resp: &[u8]) -> u16 {
    u16::from_be_bytes([resp[resp.len() - 2], resp[resp.len() - 1]])
}

fn connect(ctx: &Context, reader: &CString) -> pcsc::Card {
    ctx.connect(reader, ShareMode::Exclusive, Protocols::ANY)
        .unwrap()
}

#[test]
fn vcard_pcscd_status_words_through_the_pcsc_crate() {
    let (_pcscd, link, ctx, reader) = setup("mynumber-sample.json");
    let c = connect(&ctx, &reader);
    assert_eq!(sw(&tx(&c, SELECT_TEXT_AP)), 0x9000);
    assert_eq!(sw(&tx(&c, SELECT_EF0001)), 0x9000);
    assert_eq!(sw(&tx(&c, READ_17)), 0x6982, "read before verify");
    assert_eq!(sw(&tx(&c, SELECT_PIN)), 0x9000);
    assert_eq!(sw(&tx(&c, RETRY_QUERY)), 0x63C3);
    assert_eq!(sw(&tx(&c, VERIFY_0000)), 0x63C2);
    assert_eq!(sw(&tx(&c, VERIFY_1234)), 0x9000);
    assert_eq!(sw(&tx(&c, SELECT_EF0001)), 0x9000);
    let r = tx(&c, READ_17);
    assert_eq!(sw(&r), 0x9000);
    assert_eq!(&r[..17], b"\xFF\x10\x0C123456789018\xFF\xFF");
    // EF0002: the header, then the rest at its offset; myna-card's parser accepts it.
    assert_eq!(sw(&tx(&c, SELECT_EF0002)), 0x9000);
    let head = tx(&c, &[0x00, 0xB0, 0x00, 0x00, 0x03]);
    assert_eq!(&head[..2], &[0xFF, 0x20]);
    let total = 3 + usize::from(head[2]);
    let rest = tx(&c, &[0x00, 0xB0, 0x00, 0x03, (total - 3) as u8]);
    assert_eq!(sw(&rest), 0x9000);
    let file = [&head[..3], &rest[..rest.len() - 2]].concat();
    let attrs = myna_card::ap::text::Attributes::parse(&file).unwrap();
    assert_eq!(attrs.name, "見本　花子");

    // Power off clears the verified PIN.
    c.disconnect(Disposition::UnpowerCard)
        .map_err(|(_, e)| e)
        .unwrap();
    let c = connect(&ctx, &reader);
    tx(&c, SELECT_TEXT_AP);
    tx(&c, SELECT_EF0001);
    assert_eq!(sw(&tx(&c, READ_17)), 0x6982, "after power off");

    // Three wrong PINs lock it; then even the right one gets 6984.
    tx(&c, SELECT_PIN);
    assert_eq!(sw(&tx(&c, VERIFY_0000)), 0x63C2);
    assert_eq!(sw(&tx(&c, VERIFY_0000)), 0x63C1);
    assert_eq!(sw(&tx(&c, VERIFY_0000)), 0x63C0);
    assert_eq!(sw(&tx(&c, VERIFY_1234)), 0x6984);
    assert_eq!(sw(&tx(&c, RETRY_QUERY)), 0x63C0);
    // Still locked after a power cycle (the counter is on the card).
    c.disconnect(Disposition::UnpowerCard)
        .map_err(|(_, e)| e)
        .unwrap();
    let c = connect(&ctx, &reader);
    tx(&c, SELECT_TEXT_AP);
    tx(&c, SELECT_PIN);
    assert_eq!(sw(&tx(&c, VERIFY_1234)), 0x6984);
    assert_eq!(link.with_card(|c| c.retries_left(KeyName::Pin)), Some(0));
    // Every APDU above reached the card, and nothing else (pcscd sends none itself).
    assert_eq!(link.apdus_seen(), 24);
}

#[test]
fn vcard_pcscd_myna_card_reads_the_sample_exactly_and_fast() {
    let (pcscd, _link, _ctx, _reader) = setup("mynumber-sample.json");
    let reader = pcscd.reader_name(0);
    // The detection the reader code uses: JPKI EF0006, no PIN spent.
    let mut card = myna_pcsc::connect(&reader, Sharing::Exclusive).unwrap();
    let token = JpkiAp::select(&mut card)
        .unwrap()
        .read_token_type()
        .unwrap();
    assert_eq!(token, TokenType::Card);

    let started = Instant::now();
    let mut text = TextAp::select(&mut card).unwrap();
    assert_eq!(text.retries(ef::PIN).unwrap(), Retries::Remaining(3));
    text.verify_pin(&Pin::numeric("1234").unwrap()).unwrap();
    let attrs = text.read_attributes().unwrap();
    let number = text.read_my_number().unwrap();
    let elapsed = started.elapsed();
    assert_eq!(attrs.name, "見本\u{3000}花子");
    assert_eq!(attrs.address, "架空県見本市本町１丁目２番３号");
    assert_eq!(attrs.sex, Sex::Female);
    assert_eq!(
        (
            attrs.birth_date.year,
            attrs.birth_date.month,
            attrs.birth_date.day
        ),
        (1985, 4, 1)
    );
    assert_eq!(number.as_str(), "123456789018");
    // 9 APDUs; with delayed ACKs each would cost ~44 ms (≈ 400 ms). TCP_QUICKACK and
    // TCP_NODELAY bring the whole read to a few ms; the bound leaves room for a busy
    // machine while still catching the delayed-ACK stall.
    assert!(
        elapsed < Duration::from_millis(250),
        "read took {elapsed:?}: TCP_QUICKACK/TCP_NODELAY not effective?"
    );

    // 照合番号B (myna-card's builder) through pcscd after a power cycle.
    card.transport_mut().power_cycle().unwrap();
    let mut text = TextAp::select(&mut card).unwrap();
    let code_b = myna_card::verification_code_b(attrs.birth_date, 2035, b"5678").unwrap();
    text.verify_code_b(&code_b).unwrap();
    assert_eq!(text.read_attributes().unwrap(), attrs);
    assert!(text.read_my_number().is_err(), "B does not open EF0001");
}

#[test]
fn vcard_pcscd_non_bmp_ivs_name_and_juki_detection() {
    let (pcscd, link, ctx, reader) = setup("mynumber-ivs.json");
    let name = pcscd.reader_name(0);
    {
        let mut card = myna_pcsc::connect(&name, Sharing::Exclusive).unwrap();
        let mut text = TextAp::select(&mut card).unwrap();
        text.verify_pin(&Pin::numeric("1234").unwrap()).unwrap();
        let attrs = text.read_attributes().unwrap();
        assert_eq!(attrs.name, "\u{20BB7}野\u{3000}\u{9089}\u{E0111}子");
        assert!(attrs.address.ends_with("見本町内会館向かい"));
    }
    // Swap in a 住基カード: remove one card, insert another on the same slot.
    link.remove();
    assert!(wait_card(&ctx, &reader, false));
    drop(link);
    let _juki =
        VpcdLink::connect(("127.0.0.1", pcscd.vpcd_port(0)), card("juki-sample.json")).unwrap();
    assert!(wait_card(&ctx, &reader, true));
    let mut card = myna_pcsc::connect(&name, Sharing::Exclusive).unwrap();
    let token = JpkiAp::select(&mut card)
        .unwrap()
        .read_token_type()
        .unwrap();
    assert_eq!(token.name(), "JPKIAPICCTOKEN");
    assert!(TextAp::select(&mut card).is_err());
}

#[test]
fn vcard_pcscd_removal_is_seen_by_pcsc_also_mid_read() {
    let (_pcscd, link, ctx, reader) = setup("mynumber-sample.json");
    link.remove();
    assert!(!link.is_connected());
    assert!(wait_card(&ctx, &reader, false), "pcsc still sees the card");
    assert!(matches!(
        ctx.connect(&reader, ShareMode::Exclusive, Protocols::ANY),
        Err(pcsc::Error::NoSmartcard)
    ));
    link.insert();
    assert!(link.wait_connected(Duration::from_secs(5)));
    assert!(wait_card(&ctx, &reader, true));
    assert_eq!(link.connections(), 2);

    // Pulled out after the 3rd APDU of a read: the 4th fails.
    let c = connect(&ctx, &reader);
    link.remove_after_apdus(3);
    assert_eq!(sw(&tx(&c, SELECT_TEXT_AP)), 0x9000);
    assert_eq!(sw(&tx(&c, SELECT_PIN)), 0x9000);
    assert_eq!(sw(&tx(&c, VERIFY_1234)), 0x9000);
    let mut buf = [0u8; pcsc::MAX_BUFFER_SIZE];
    let err = c.transmit(SELECT_EF0001, &mut buf).unwrap_err();
    assert!(
        matches!(
            err,
            pcsc::Error::RemovedCard
                | pcsc::Error::ResetCard
                | pcsc::Error::NotTransacted
                | pcsc::Error::CommError
        ),
        "{err:?}"
    );
    assert!(wait_card(&ctx, &reader, false));
    // A handle from before the removal still holds the exclusive share in pcscd: an
    // exclusive connect to the reinserted card fails with SharingViolation until it
    // is dropped. Reader code must drop stale handles after a removal.
    drop(c);
    // Back in: the verified state is gone with the power, the counter is full.
    link.insert();
    assert!(wait_card(&ctx, &reader, true));
    let c = connect(&ctx, &reader);
    tx(&c, SELECT_TEXT_AP);
    tx(&c, SELECT_EF0001);
    assert_eq!(sw(&tx(&c, READ_17)), 0x6982);
}

#[test]
fn vcard_pcscd_licence_pin1_then_df1_ef01() {
    let (_pcscd, _link, ctx, reader) = setup("licence-sample.json");
    let c = connect(&ctx, &reader);
    assert_eq!(sw(&tx(&c, &[0x00, 0xA4, 0x00, 0x00])), 0x9000);
    assert_eq!(
        sw(&tx(&c, &[0x00, 0xA4, 0x02, 0x0C, 0x02, 0x2F, 0x01])),
        0x9000
    );
    let common = tx(&c, READ_17);
    assert_eq!(common.len(), 19);
    assert_eq!(
        &common[5..13],
        &[0x20, 0x23, 0x05, 0x10, 0x20, 0x28, 0x05, 0x01]
    );
    // PIN1 = IEF 0001 in the MF.
    assert_eq!(sw(&tx(&c, SELECT_EF0001)), 0x9000);
    assert_eq!(sw(&tx(&c, RETRY_QUERY)), 0x63C3);
    assert_eq!(sw(&tx(&c, VERIFY_1234)), 0x9000);
    let df1 = [
        &[0x00, 0xA4, 0x04, 0x0C, 0x10][..],
        &[0xA0, 0x00, 0x00, 0x02, 0x31, 0x01],
        &[0x00; 10],
    ]
    .concat();
    assert_eq!(sw(&tx(&c, &df1)), 0x9000);
    assert_eq!(sw(&tx(&c, SELECT_EF0001)), 0x9000);
    let r = tx(&c, READ_ALL);
    assert_eq!(sw(&r), 0x9000);
    // Tag 12 (name) comes first: JIS X 0208 → EUC-JP by adding 0x80.
    assert_eq!(r[0], 0x12);
    let name = &r[2..2 + usize::from(r[1])];
    let euc: Vec<u8> = name.iter().map(|b| b + 0x80).collect();
    let (text, _, errors) = EUC_JP.decode(&euc);
    assert!(!errors);
    assert_eq!(text, "見本　花子");
    let at = 2 + usize::from(r[1]);
    assert_eq!(r[at], 0x13);
    let kana: Vec<u8> = r[at + 2..at + 2 + usize::from(r[at + 1])]
        .iter()
        .map(|b| b + 0x80)
        .collect();
    assert_eq!(EUC_JP.decode(&kana).0, "ミホン　ハナコ");
}

#[test]
fn vcard_pcscd_scriptor_sends_the_documented_apdus() {
    let (pcscd, _link, _ctx, _reader) = setup("mynumber-sample.json");
    let script = "00 A4 04 0C 0A D3 92 10 00 31 00 01 01 04 08\n\
                  00 A4 02 0C 02 00 01\n\
                  00 B0 00 00 11\n\
                  00 A4 02 0C 02 00 11\n\
                  00 20 00 80\n\
                  00 20 00 80 04 39 39 39 39\n\
                  00 20 00 80 04 31 32 33 34\n\
                  00 A4 02 0C 02 00 01\n\
                  00 B0 00 00 11\n\
                  00 B0 00 11 01\n";
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("apdus.txt");
    std::fs::write(&path, script).unwrap();
    let out = Command::new("scriptor")
        .arg("-r")
        .arg(pcscd.reader_name(0))
        .arg(&path)
        .output()
        .expect("scriptor (package pcsc-tools) must be installed");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // scriptor prints "< BYTES : meaning", wrapping BYTES every 16 bytes.
    let mut responses: Vec<String> = Vec::new();
    let mut open: Option<String> = None;
    for line in stdout.lines() {
        let part = match (line.strip_prefix("< "), open.take()) {
            (Some(start), _) => start.to_string(),
            (None, Some(acc)) => format!("{acc} {line}"),
            (None, None) => continue,
        };
        match part.split_once(" : ") {
            Some((bytes, _)) => {
                responses.push(bytes.split_whitespace().collect::<Vec<_>>().join(" "))
            }
            None => open = Some(part),
        }
    }
    assert_eq!(
        responses,
        [
            "90 00",
            "90 00",
            "69 82",
            "90 00",
            "63 C3",
            "63 C2",
            "90 00",
            "90 00",
            "FF 10 0C 31 32 33 34 35 36 37 38 39 30 31 38 FF FF 90 00",
            "6B 00",
        ],
        "{stdout}"
    );
}

#[test]
fn vcard_binary_inserts_and_removes_on_command() {
    let pcscd = Pcscd::start().expect("pcscd with vpcd must be available");
    let ctx = Context::establish(Scope::User).unwrap();
    let reader = CString::new(pcscd.reader_name(0)).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_kakanai-vcard"))
        .arg("--profile")
        .arg(profile("mynumber-sample.json"))
        .arg("--vpcd")
        .arg(format!("127.0.0.1:{}", pcscd.vpcd_port(0)))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut next = || lines.next().unwrap().unwrap();
    let ready = next();
    assert!(
        ready.starts_with("ready MyNumber card `mynumber-sample` inserted"),
        "{ready}"
    );
    assert!(!ready.contains("見本") && !ready.contains("123456789018"));
    assert!(wait_card(&ctx, &reader, true));

    writeln!(stdin, "remove").unwrap();
    assert_eq!(next(), "removed");
    assert!(wait_card(&ctx, &reader, false));
    writeln!(stdin, "insert").unwrap();
    assert_eq!(next(), "inserted");
    assert!(wait_card(&ctx, &reader, true));
    let c = connect(&ctx, &reader);
    assert_eq!(sw(&tx(&c, SELECT_TEXT_AP)), 0x9000);
    drop(c);
    writeln!(stdin, "status").unwrap();
    let status = next();
    assert!(
        status.starts_with("status connected=true apdus="),
        "{status}"
    );
    writeln!(stdin, "quit").unwrap();
    let code = child.wait().unwrap();
    assert!(code.success());
    assert!(wait_card(&ctx, &reader, false));
}

#[test]
fn vcard_binary_rejects_a_bad_profile_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.json");
    let text = std::fs::read_to_string(profile("mynumber-sample.json")).unwrap();
    std::fs::write(&bad, text.replace("123456789018", "123456789012")).unwrap();
    // No pcscd needed: the profile is checked before connecting.
    let out = Command::new(env!("CARGO_BIN_EXE_kakanai-vcard"))
        .arg("--profile")
        .arg(&bad)
        .arg("--vpcd")
        .arg("127.0.0.1:9")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("bad profile") && stderr.contains("my_number"),
        "{stderr}"
    );
    assert!(!stderr.contains("123456789012"), "{stderr}");
}
