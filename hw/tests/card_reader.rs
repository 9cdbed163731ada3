//! The card reader driver (`kakanai_hw::card`) through the real PC/SC stack: pcscd
//! with the vpcd driver, and our virtual cards answering APDUs over vpcd's socket.

// Test helpers outside #[test] functions are not covered by allow-unwrap-in-tests.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::time::Duration;

use kakanai_hw::card::{
    self, identify, link, read_licence, read_my_number_card, CardError, CardKind, Credential,
    ReadScope, ReaderEvent, ReaderWatcher,
};
use kakanai_hw::vcard::{KeyName, VirtualCard, VpcdLink};
use kakanai_protocol::personal::Sex;
use kakanai_test_peers::Pcscd;

/// 照合番号B of mynumber-sample.json: birth date in the Japanese era (昭和60 = 1985)
/// YYMMDD, expiry year, security code.
const SAMPLE_CODE_B: &str = "60040120355678";

struct Counter {
    pcscd: Pcscd,
    card: VpcdLink,
    ctx: pcsc::Context,
}

fn profile(name: &str) -> VirtualCard {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("profiles")
        .join(name);
    VirtualCard::from_file(&path).unwrap()
}

fn counter(profile_name: &str) -> Counter {
    let pcscd = Pcscd::start().expect("pcscd with vpcd");
    let card = VpcdLink::connect(("127.0.0.1", pcscd.vpcd_port(0)), profile(profile_name)).unwrap();
    assert!(card.wait_connected(Duration::from_secs(5)));
    let ctx = link::context().unwrap();
    wait_for_card(&ctx, &pcscd.reader_name(0));
    Counter { pcscd, card, ctx }
}

fn wait_for_card(ctx: &pcsc::Context, reader: &str) {
    let mut w = ReaderWatcher::new(ctx.clone(), Some(reader));
    for _ in 0..20 {
        match w.next_event(Duration::from_millis(500)).unwrap() {
            Some(ReaderEvent::CardInserted { .. }) => return,
            _ => continue,
        }
    }
    panic!("the virtual card never appeared on {reader}");
}

impl Counter {
    fn reader(&self) -> String {
        self.pcscd.reader_name(0)
    }
    fn read(&self, cred: &Credential, scope: ReadScope) -> Result<card::MyNumberRead, CardError> {
        read_my_number_card(&self.ctx, &self.reader(), cred, scope)
    }
}

#[test]
fn reads_face_and_my_number_with_the_pin_and_powers_down() {
    let c = counter("mynumber-sample.json");
    let read = c
        .read(&Credential::pin("1234").unwrap(), ReadScope::WithMyNumber)
        .unwrap();
    assert_eq!(read.face.name.expose(), "見本　花子");
    assert_eq!(read.face.address.expose(), "架空県見本市本町１丁目２番３号");
    assert_eq!(read.face.birth_date.expose(), "19850401");
    assert_eq!(read.face.sex, Sex::Female);
    assert_eq!(
        read.face.my_number.as_ref().unwrap().expose(),
        "123456789018"
    );
    assert!(!read.face.has_private_use_chars);
    assert_eq!(read.tries_before, 3);
    // The card was powered down: nothing stays unlocked for the next program. The
    // power-off reaches the virtual card through pcscd and vpcd a moment after the
    // read returns, so it is waited for (a loaded machine takes longer).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(3);
    while c
        .card
        .with_card(|card| card.is_verified(KeyName::Pin) || card.is_powered())
        && std::time::Instant::now() < deadline
    {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert!(!c.card.with_card(|card| card.is_verified(KeyName::Pin)));
    assert!(!c.card.with_card(|card| card.is_powered()));
}

#[test]
fn code_b_reads_the_face_but_never_the_my_number() {
    let c = counter("mynumber-sample.json");
    let code_b = Credential::code_b(SAMPLE_CODE_B).unwrap();
    let read = c.read(&code_b, ReadScope::FaceOnly).unwrap();
    assert_eq!(read.face.name.expose(), "見本　花子");
    assert!(read.face.my_number.is_none());

    let before = c.card.apdus_seen();
    assert!(matches!(
        c.read(&code_b, ReadScope::WithMyNumber),
        Err(CardError::NotPermitted(_))
    ));
    assert_eq!(c.card.apdus_seen(), before, "nothing was sent to the card");
}

#[test]
fn wrong_pin_reports_tries_left_and_the_card_locks_after_three() {
    let c = counter("mynumber-sample.json");
    let wrong = Credential::pin("0000").unwrap();
    let right = Credential::pin("1234").unwrap();
    assert_eq!(
        c.read(&wrong, ReadScope::FaceOnly),
        Err(CardError::PinIncorrect { remaining: 2 })
    );
    assert_eq!(card::pin_tries(&c.ctx, &c.reader(), &right).unwrap(), 2);
    // A right PIN resets the counter.
    assert_eq!(c.read(&right, ReadScope::FaceOnly).unwrap().tries_before, 2);
    assert_eq!(card::pin_tries(&c.ctx, &c.reader(), &right).unwrap(), 3);

    assert_eq!(
        c.read(&wrong, ReadScope::FaceOnly),
        Err(CardError::PinIncorrect { remaining: 2 })
    );
    assert_eq!(
        c.read(&wrong, ReadScope::FaceOnly),
        Err(CardError::PinIncorrect { remaining: 1 })
    );
    assert_eq!(
        c.read(&wrong, ReadScope::FaceOnly),
        Err(CardError::PinLocked)
    );
    assert_eq!(
        c.card.with_card(|card| card.retries_left(KeyName::Pin)),
        Some(0)
    );
    // Locked: reported before anything is presented, even with the right PIN.
    assert_eq!(
        c.read(&right, ReadScope::FaceOnly),
        Err(CardError::PinLocked)
    );
    // 照合番号B still works on a card whose PIN is locked.
    assert!(c
        .read(
            &Credential::code_b(SAMPLE_CODE_B).unwrap(),
            ReadScope::FaceOnly
        )
        .is_ok());
}

#[test]
fn a_locked_card_is_reported_without_spending_a_try() {
    let c = counter("mynumber-locked.json");
    assert_eq!(
        c.read(&Credential::pin("1234").unwrap(), ReadScope::FaceOnly),
        Err(CardError::PinLocked)
    );
}

#[test]
fn a_card_pulled_out_mid_read_is_reported_as_removed() {
    let c = counter("mynumber-sample.json");
    // SELECT AP, SELECT EF, retry query: the card goes before VERIFY is answered.
    c.card.remove_after_apdus(3);
    let got = c.read(&Credential::pin("1234").unwrap(), ReadScope::FaceOnly);
    assert_eq!(got, Err(CardError::CardRemoved), "{got:?}");
    // Nothing is on the reader now.
    assert_eq!(
        c.read(&Credential::pin("1234").unwrap(), ReadScope::FaceOnly),
        Err(CardError::NoCard)
    );
}

#[test]
fn identifies_each_card_without_a_pin() {
    for (profile_name, kind) in [
        ("mynumber-sample.json", CardKind::MyNumberCard),
        ("juki-sample.json", CardKind::JukiCard),
        ("licence-sample.json", CardKind::DriversLicence),
        ("unknown-card.json", CardKind::Unknown),
    ] {
        let c = counter(profile_name);
        assert_eq!(
            identify(&c.ctx, &c.reader()).unwrap(),
            kind,
            "{profile_name}"
        );
        if kind == CardKind::MyNumberCard {
            assert_eq!(
                c.card.with_card(|card| card.retries_left(KeyName::Pin)),
                Some(3)
            );
        }
    }
}

#[test]
fn other_cards_are_refused_as_my_number_cards() {
    let c = counter("unknown-card.json");
    assert_eq!(
        c.read(&Credential::pin("1234").unwrap(), ReadScope::FaceOnly),
        Err(CardError::WrongCard {
            expected: "My Number card"
        })
    );
}

#[test]
fn ivs_and_non_bmp_names_are_kept_exactly() {
    let c = counter("mynumber-ivs.json");
    let read = c
        .read(&Credential::pin("1234").unwrap(), ReadScope::FaceOnly)
        .unwrap();
    assert!(read.face.name.expose().contains('𠮷'));
    assert!(read.face.name.expose().contains("邉\u{E0111}"));
    assert!(!read.face.has_private_use_chars);
}

#[test]
fn reads_a_driving_licence_with_pin1() {
    let c = counter("licence-sample.json");
    let pin = card::licence::licence_pin("1234").unwrap();
    let face = read_licence(&c.ctx, &c.reader(), &pin).unwrap();
    assert_eq!(face.name.expose(), "見本　花子");
    assert_eq!(face.kana.as_ref().unwrap().expose(), "ミホン　ハナコ");
    assert_eq!(face.birth_date.expose(), "19850401");
    assert_eq!(face.address.expose(), "架空県見本市本町１丁目２番３号");
    assert_eq!(face.expiry, "20280501");
    assert_eq!(face.licence_number.expose(), "123456789012");
    assert!(!face.has_gaiji);

    let wrong = card::licence::licence_pin("9999").unwrap();
    assert_eq!(
        read_licence(&c.ctx, &c.reader(), &wrong),
        Err(CardError::PinIncorrect { remaining: 2 })
    );
}

#[test]
fn licence_gaiji_are_marked_not_guessed() {
    let c = counter("licence-gaiji.json");
    let face = read_licence(
        &c.ctx,
        &c.reader(),
        &card::licence::licence_pin("1234").unwrap(),
    )
    .unwrap();
    assert!(face.has_gaiji);
    assert!(face.name.expose().contains('〓'));
}

#[test]
fn the_watcher_sees_cards_come_and_go() {
    let c = counter("mynumber-sample.json");
    let mut w = ReaderWatcher::new(c.ctx.clone(), None);
    let mut seen = Vec::new();
    while let Some(e) = w.next_event(Duration::from_millis(300)).unwrap() {
        seen.push(e);
    }
    assert!(
        seen.contains(&ReaderEvent::ReaderAdded(c.reader())),
        "{seen:?}"
    );
    assert!(seen
        .iter()
        .any(|e| matches!(e, ReaderEvent::CardInserted { reader, .. } if *reader == c.reader())));

    c.card.remove();
    let removed = w.next_event(Duration::from_secs(5)).unwrap();
    assert_eq!(
        removed,
        Some(ReaderEvent::CardRemoved { reader: c.reader() })
    );
    c.card.insert();
    let inserted = w.next_event(Duration::from_secs(5)).unwrap();
    assert!(
        matches!(inserted, Some(ReaderEvent::CardInserted { ref atr, .. }) if !atr.is_empty()),
        "{inserted:?}"
    );
    // Cancelling wakes a blocked wait.
    let canceler = w.canceler();
    let t = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(200));
        canceler.cancel().unwrap();
    });
    assert_eq!(w.next_event(Duration::from_secs(30)).unwrap(), None);
    t.join().unwrap();
}
