//! The counter flows in a real browser: headless Chromium against the real
//! `kakanai-appliance` daemon, a real Mosquitto, pcscd + vpcd with virtual My Number
//! cards, ippeveprinter as the counter's printer, a pseudo-terminal as the 2-D code
//! scanner, and the stand-in control plane of `common` (its `counter` desk answers
//! the `counter.*` methods with made-up data and sends a real print job; it is a
//! test stand-in — the test against the real control plane is the lead's).
//!
//! Two flows, as staff see them: a certificate request (card → 住民票の写し ×2 →
//! print → scan → accepted with the fee) and the 転入 of a family of four (card →
//! family confirmed → a second card checked → date → question answered → list →
//! one procedure taken out → print → every form scanned → done).
//!
//! With `KAKANAI_SCREENSHOTS=1` each new screen is saved as
//! `docs/screenshots/appliance-<flow>-<step>.png` (1280×800).

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "common/browser.rs"]
mod browser;
mod common;

use std::cell::Cell;
use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use browser::{vcard, Appliance, Tablet, WAIT};
use common::counter::{yamada_card, SCHOOL_QUESTION, YAMADA_NEW_ADDRESS};
use common::ControlPlane;
use kakanai_hw::vcard::{VirtualCard, VpcdLink};
use kakanai_protocol::counter::{CertificateOrder, CreateVisitRequest, PrintVisitRequest};
use kakanai_test_peers::{IppPrinter, Mosquitto, Pcscd, PtyScanner, TcpProxy};

const STEP: &str = "(document.querySelector('[data-step]') || {dataset: {}}).dataset.step";
const CARD_STATE: &str =
    "(document.querySelector('[data-card-state]') || {dataset: {}}).dataset.cardState";
const IDLE: &str = "!document.querySelector('[data-busy=true]')";

/// Everything a flow needs, started.
struct Counter {
    _broker: Mosquitto,
    /// Between the appliance and the broker: cut to lose the control plane.
    proxy: TcpProxy,
    cp: std::sync::Arc<ControlPlane>,
    pcscd: Pcscd,
    printer: IppPrinter,
    scanner: std::cell::RefCell<PtyScanner>,
    appliance: Appliance,
    tablet: Tablet,
    _dir: tempfile::TempDir,
    /// Taps made by staff (not the resident's PIN).
    taps: Cell<u32>,
}

impl Counter {
    async fn start(name: &str) -> Self {
        Self::start_with_printer(name, "#!/bin/sh\nsleep 1\n").await
    }

    /// With `script` as the printer's print command (exit 0: printed).
    async fn start_with_printer(name: &str, script: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let broker = Mosquitto::start().unwrap();
        let cp = ControlPlane::start(broker.port(), true, true).await;
        let proxy = TcpProxy::start(([127, 0, 0, 1], broker.port()).into()).unwrap();
        let pcscd = Pcscd::start().expect("pcscd with vpcd");
        // A printer taking a moment per job, so the progress shows.
        let cmd = dir.path().join("print.sh");
        std::fs::write(
            &cmd,
            script.replace("DIR", &dir.path().display().to_string()),
        )
        .unwrap();
        std::fs::set_permissions(&cmd, std::fs::Permissions::from_mode(0o755)).unwrap();
        let printer = IppPrinter::start_with_command(name, &cmd).expect("ippeveprinter");
        let scanner = PtyScanner::plug_in(&dir.path().join("scanner")).unwrap();
        let devices = format!(
            "[devices]\nreader = \"{}\"\nprinter = \"{}\"\nscanner = \"{}\"\n",
            pcscd.reader_name(0),
            printer.uri(),
            scanner.path().display()
        );
        let appliance = Appliance::start_with(proxy.port(), &devices);
        let tablet = Tablet::open().await;
        tablet.log_in(&appliance).await;
        // Codes are typed only once the appliance has the scanner open.
        tablet
            .wait_for("document.querySelector('[data-status=scanner]').dataset.tone === 'ok'")
            .await;
        Self {
            _broker: broker,
            proxy,
            cp,
            pcscd,
            printer,
            scanner: std::cell::RefCell::new(scanner),
            appliance,
            tablet,
            _dir: dir,
            taps: Cell::new(0),
        }
    }

    /// A tap by staff (counted).
    async fn tap(&self, selector: &str) {
        self.taps.set(self.taps.get() + 1);
        self.tablet.tap(selector).await;
    }

    async fn step(&self, name: &str) {
        self.tablet
            .wait_for(&format!("{STEP} === '{name}' && {IDLE}"))
            .await;
    }

    /// The resident types the PIN on the tablet (not staff's taps).
    async fn resident_pin(&self) {
        let t = &self.tablet;
        t.wait_for(&format!("{CARD_STATE} === 'ready'")).await;
        t.tap_digits("pin", "1234").await;
        t.tap("form[data-keypad=pin] [data-action=submit]").await;
        t.wait_for(&format!("{CARD_STATE} === 'read'")).await;
    }

    fn scan(&self, code: &str) {
        self.scanner.borrow_mut().scan(code).unwrap();
    }

    async fn numbers(&self) -> Vec<String> {
        self.tablet
            .eval(
                "Array.from(document.querySelectorAll('[data-application]')).map(e => e.dataset.application)",
            )
            .await
    }

    fn assert_no_personal_data_logged(&self, secrets: &[&str]) {
        let log = self.appliance.log();
        for s in secrets {
            assert!(!log.contains(s), "the daemon logged {s:?}");
        }
    }
}

fn card_from(json: &str, port: u16) -> VpcdLink {
    let card =
        VpcdLink::connect(("127.0.0.1", port), VirtualCard::from_json(json).unwrap()).unwrap();
    assert!(card.wait_connected(Duration::from_secs(5)));
    card
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_request_from_card_to_accepted_with_the_fee() {
    let c = Counter::start("kakanai-flow-cert").await;
    c.cp.staff
        .answer_lookup_with("見本　花子", "1985-04-01", "架空県見本市本町１丁目２番３号");
    let t = &c.tablet;
    t.screenshot("certificate-menu").await;

    // The menu: 証明書の請求 opens a visit.
    c.tap("[data-start=certificate]").await;
    c.step("people").await;
    assert!(t
        .text(".visit")
        .await
        .contains("マイナンバーカードを読み取ってください"));

    // The card: the resident types the PIN, the lookup finds her, staff take her.
    c.tap("[data-act=read-card]").await;
    t.wait_for("location.pathname === '/card'").await;
    let card = vcard("mynumber-sample.json", c.pcscd.vpcd_port(0));
    c.resident_pin().await;
    t.wait_for("!!document.querySelector('[data-act=\"card-person:0\"]')")
        .await;
    t.screenshot("certificate-card").await;
    c.tap("[data-act=\"card-person:0\"]").await;
    t.wait_for("location.pathname === '/visit'").await;
    c.step("people").await;
    t.wait_for("!!document.querySelector('[data-member=\"0\"][data-card=true]')")
        .await;
    assert!(t.text("[data-member=\"0\"]").await.contains("見本　花子"));
    assert!(t
        .text("[data-member=\"0\"]")
        .await
        .contains("昭和60年4月1日"));
    assert!(t.text("[data-member=\"0\"]").await.contains("カード確認済"));
    // The household came from the core data.
    assert!(t.text(".household").await.contains("3人"));
    t.screenshot("certificate-people").await;

    // 住民票の写し, two copies: the fee follows.
    c.tap("[data-act=\"goto:next\"]").await;
    c.step("certificates").await;
    c.tap("[data-act=\"cert-toggle:juminhyo\"]").await;
    t.wait_for("document.querySelector('[data-certificate=juminhyo]').dataset.selected === 'true'")
        .await;
    c.tap("[data-act=\"cert-copies:juminhyo\"][data-delta=\"+\"]")
        .await;
    t.wait_text("[data-certificate=juminhyo] .copies", "2")
        .await;
    t.wait_for("document.getElementById('fee-total').dataset.fee === '600'")
        .await;
    assert_eq!(t.text("#fee-total").await, "600円");
    t.screenshot("certificate-choose").await;

    // Requester 本人 and マイナンバーカード are preselected after a card read.
    c.tap("[data-act=\"goto:next\"]").await;
    c.step("details").await;
    assert!(t.eval::<bool>("document.querySelector('[data-act=\"requester:self\"]').classList.contains('selected')").await);
    assert!(t.eval::<bool>("document.querySelector('[data-act=\"id-check:マイナンバーカード\"]').classList.contains('selected')").await);
    // Printing without a purpose says what is missing, and nothing is sent.
    c.tap("[data-act=print]").await;
    t.wait_text("#visit-notice", "使用目的が選ばれていません")
        .await;
    assert!(!c
        .cp
        .counter
        .methods()
        .contains(&"counter.request-certificates".to_owned()));
    c.tap("[data-act=\"purpose:就職\"]").await;
    t.wait_for(
        "document.querySelector('[data-act=\"purpose:就職\"]').classList.contains('selected')",
    )
    .await;
    assert_eq!(t.text("#fee-total").await, "600円");
    t.screenshot("certificate-details").await;

    // 申請書を印刷: the request, then the print; the printer's progress shows.
    c.tap("[data-act=print]").await;
    t.wait_for("!!document.getElementById('print')").await;
    let order: CertificateOrder =
        c.cp.counter
            .last_params("counter.request-certificates")
            .unwrap();
    assert_eq!(order.subject, "000000123");
    assert_eq!(order.items.len(), 1);
    assert_eq!(
        (order.items[0].certificate.as_str(), order.items[0].copies),
        ("juminhyo", 2)
    );
    assert_eq!((order.fee_total, order.purpose.as_str()), (600, "就職"));
    assert_eq!(order.id_check, "マイナンバーカード");
    c.step("scan").await;
    assert_eq!(
        t.eval::<String>("document.getElementById('print').dataset.print")
            .await,
        "completed"
    );
    let print: PrintVisitRequest = c.cp.counter.last_params("counter.print").unwrap();
    assert!(!print.guide);
    c.printer.wait_for_jobs(1, WAIT).unwrap();
    assert!(t
        .text("#scan-prompt")
        .await
        .contains("署名された申請書の二次元コードを読み取ってください"));
    t.screenshot("certificate-scan").await;

    // A code of another visit: a plain warning, nothing accepted.
    c.scan("2099-999999");
    t.wait_text("#scan-notice", "この受付の申請書ではありません")
        .await;
    assert!(!c
        .cp
        .counter
        .methods()
        .contains(&"counter.accept".to_owned()));
    let numbers = c.numbers().await;
    assert_eq!(numbers.len(), 1);
    c.scan(&numbers[0]);
    c.step("done").await;
    assert!(t.text("#visit-done").await.contains("受付完了"));
    assert_eq!(t.text("#fee-total").await, "600円");
    assert_eq!(
        t.eval::<String>("document.querySelector('[data-application]').dataset.state")
            .await,
        "accepted"
    );
    t.screenshot("certificate-done").await;

    // 受付を終了: back to the menu, the visit forgotten.
    c.tap("#visit-done [data-act=end]").await;
    t.wait_for("location.pathname === '/' && !!document.querySelector('[data-start=certificate]')")
        .await;
    t.goto(&c.appliance.url("/visit")).await;
    t.wait_for("location.pathname === '/'").await;
    assert!(!t.text("body").await.contains("見本"));
    c.assert_no_personal_data_logged(&["見本", "花子", "架空県", "19850401", "000000123"]);
    drop(card);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_family_of_four_moves_in_with_their_my_number_cards() {
    let c = Counter::start("kakanai-flow-movein").await;
    let t = &c.tablet;
    let started = Instant::now();

    c.tap("[data-start=move_in]").await;
    c.step("people").await;

    // 山田　花子's card: the 転出証明書情報 brings the family of four.
    c.tap("[data-act=read-card]").await;
    t.wait_for("location.pathname === '/card'").await;
    let port = c.pcscd.vpcd_port(0);
    let card = card_from(&yamada_card(1), port);
    c.resident_pin().await;
    // Every card read during a 転入 is for it: taken into the visit without a tap,
    // and the screen goes back to the visit.
    t.wait_for("location.pathname === '/visit'").await;
    t.wait_for("!!document.querySelector('[data-family=\"4\"]')")
        .await;
    let family = t.text("[data-family]").await;
    for name in ["山田　太郎", "山田　花子", "山田　一郎", "山田　桜"] {
        assert!(family.contains(name), "{family}");
    }
    assert!(family.contains(YAMADA_NEW_ADDRESS));
    t.screenshot("movein-family").await;
    c.tap("[data-act=confirm-family]").await;
    t.wait_for("document.querySelectorAll('[data-member]').length === 4")
        .await;
    t.wait_for("document.querySelector('[data-member=\"1\"]').dataset.card === 'true'")
        .await;
    assert_eq!(
        t.eval::<String>("document.querySelector('[data-member=\"0\"]').dataset.card")
            .await,
        "false"
    );

    // The head's card is read too: marked カード確認済.
    drop(card);
    t.wait_text("[data-status=reader] .value", "準備完了").await;
    c.tap("[data-act=read-card]").await;
    t.wait_for("location.pathname === '/card'").await;
    let card = card_from(&yamada_card(0), port);
    c.resident_pin().await;
    t.wait_for("location.pathname === '/visit'").await;
    t.wait_for("document.querySelector('[data-member=\"0\"]').dataset.card === 'true'")
        .await;
    assert!(t.text("[data-member=\"0\"]").await.contains("カード確認済"));
    c.step("people").await;
    t.screenshot("movein-people").await;

    // The date: today by default, no typing.
    c.tap("[data-act=\"goto:next\"]").await;
    c.step("date").await;
    assert!(t.text("#event-date").await.starts_with("令和"));
    t.screenshot("movein-date").await;

    // Only the question that matters, as big buttons.
    c.tap("[data-act=\"goto:next\"]").await;
    c.step("questions").await;
    assert_eq!(
        t.eval::<u32>("document.querySelectorAll('[data-question]').length")
            .await,
        1
    );
    assert!(t
        .text(&format!("[data-question=\"{SCHOOL_QUESTION}\"]"))
        .await
        .contains("山田　一郎さん"));
    t.screenshot("movein-question").await;
    c.tap(&format!(
        "[data-act=\"answer:{SCHOOL_QUESTION}\"][data-answer=yes]"
    ))
    .await;

    // The list per person, with reasons, counters and deadlines in 和暦.
    c.step("procedures").await;
    let school = "[data-procedure=school_transfer][data-member=m3]";
    assert!(t.text(school).await.contains("市内の学校に転校するため"));
    assert!(t
        .text(&format!("{school} .deadline"))
        .await
        .contains("令和"));
    assert!(t.text("[data-procedure=tennyu]").await.contains("市民課"));
    assert_eq!(
        t.eval::<u32>(
            "document.querySelectorAll('[data-procedure=mynumber_card_continue]').length"
        )
        .await,
        4
    );
    t.screenshot("movein-procedures").await;
    // Staff take 国民健康保険 out (the family has insurance at work).
    c.tap("[data-procedure=kokuho_join] [data-act=\"adjust:kokuho_join\"]")
        .await;
    t.wait_for(
        "document.querySelector('[data-procedure=kokuho_join]').dataset.included === 'false'",
    )
    .await;
    assert!(t
        .text("[data-procedure=kokuho_join]")
        .await
        .contains("職員が除外"));
    t.screenshot("movein-adjusted").await;

    // すべて印刷: the visit with the adjustment, the forms and the guide.
    c.tap("[data-act=print]").await;
    c.step("scan").await;
    let created: CreateVisitRequest = c.cp.counter.last_params("counter.create-visit").unwrap();
    assert_eq!(created.plan.members.len(), 4);
    assert_eq!(created.plan.answers.get(SCHOOL_QUESTION), Some(&true));
    assert_eq!(created.plan.applicant, Some(0));
    assert!(created.plan.members[0].card_read && created.plan.members[1].card_read);
    assert_eq!(created.adjustments.len(), 1);
    assert!(!created.adjustments[0].include && created.adjustments[0].procedure == "kokuho_join");
    let print: PrintVisitRequest = c.cp.counter.last_params("counter.print").unwrap();
    assert!(print.guide);
    c.printer.wait_for_jobs(1, WAIT).unwrap();
    let numbers = c.numbers().await;
    // Printed: every form waits for its signature.
    t.wait_for("Array.from(document.querySelectorAll('[data-application]')).every(e => e.dataset.state === 'printed')").await;
    let titles = t.text(".applications").await;
    assert_eq!(numbers.len(), 3, "{titles}");
    assert!(
        titles.contains("転入届") && titles.contains("転入学") && !titles.contains("国民健康保険")
    );
    t.screenshot("movein-scan").await;

    // Each signed form scanned: the list ticks it off.
    c.scan(&numbers[0]);
    t.wait_for(&format!(
        "document.querySelector('[data-application=\"{}\"]').dataset.state === 'accepted'",
        numbers[0]
    ))
    .await;
    t.wait_text("#scan-notice", "受け付けました").await;
    t.screenshot("movein-scan-one").await;
    for n in &numbers[1..] {
        c.scan(n);
    }
    c.step("done").await;
    assert!(t.text("#visit-done").await.contains("受付完了"));
    t.screenshot("movein-done").await;
    c.tap("#visit-done [data-act=end]").await;
    t.wait_for("location.pathname === '/'").await;

    let taps = c.taps.get();
    eprintln!(
        "転入 of a family of four: {taps} staff taps, no typing, {:?}",
        started.elapsed()
    );
    assert!(taps <= 20, "{taps} taps");
    c.assert_no_personal_data_logged(&["山田", "太郎", "架空県", "19800510", "10000000001"]);
    drop(card);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_visit_keeps_everything_while_the_control_plane_is_unreachable() {
    let c = Counter::start("kakanai-flow-offline").await;
    let t = &c.tablet;
    c.tap("[data-start=certificate]").await;
    c.step("people").await;

    // No card: the resident is found by the reading of her name.
    c.tap("details.search summary").await;
    t.input_text("#search-text", "ミホン　ハ").await;
    c.tap("[data-act=search]").await;
    t.wait_for("!!document.querySelector('[data-result=\"000000123\"]')")
        .await;
    assert_eq!(
        t.eval::<u32>("document.querySelectorAll('[data-result]').length")
            .await,
        1
    );
    t.screenshot("search").await;
    c.tap("[data-result=\"000000123\"] [data-act=\"pick:000000123\"]")
        .await;
    t.wait_for("document.querySelector('[data-member=\"0\"]').dataset.card === 'false'")
        .await;
    c.step("people").await;
    c.tap("[data-act=\"goto:next\"]").await;
    c.step("certificates").await;
    c.tap("[data-act=\"cert-toggle:inkan\"]").await;
    t.wait_for("document.getElementById('fee-total').dataset.fee === '300'")
        .await;
    c.tap("[data-act=\"goto:next\"]").await;
    c.step("details").await;
    // No card was read: no ID document is assumed.
    assert!(
        !t.eval::<bool>("!!document.querySelector('[data-field=id-check] .selected')")
            .await
    );
    c.tap("[data-act=\"purpose:年金\"]").await;
    t.wait_for(
        "document.querySelector('[data-act=\"purpose:年金\"]').classList.contains('selected')",
    )
    .await;
    c.tap("[data-act=\"id-check:運転免許証\"]").await;
    t.wait_for("document.querySelector('[data-act=\"id-check:運転免許証\"]').classList.contains('selected')").await;

    // The control plane is lost: the banner, a message on the step, nothing lost.
    c.proxy.cut();
    t.wait_for("document.getElementById('offline-banner').hidden === false")
        .await;
    c.tap("[data-act=print]").await;
    t.wait_text("#visit-notice", "本庁との通信が切れています")
        .await;
    assert!(t
        .text("#visit-notice")
        .await
        .contains("もう一度同じボタンを押してください"));
    c.step("details").await;
    assert_eq!(t.text("#fee-total").await, "300円");
    assert!(
        t.eval::<bool>(
            "document.querySelector('[data-act=\"purpose:年金\"]').classList.contains('selected')"
        )
        .await
    );
    assert!(t.eval::<bool>("document.querySelector('[data-act=\"id-check:運転免許証\"]').classList.contains('selected')").await);
    assert!(!c
        .cp
        .counter
        .methods()
        .contains(&"counter.request-certificates".to_owned()));
    t.screenshot("offline-step").await;

    // Back: the same button works.
    c.proxy.restore();
    t.wait_for("document.getElementById('offline-banner').hidden === true")
        .await;
    c.tap("[data-act=print]").await;
    c.step("scan").await;
    let order: CertificateOrder =
        c.cp.counter
            .last_params("counter.request-certificates")
            .unwrap();
    assert_eq!(
        (order.purpose.as_str(), order.id_check.as_str()),
        ("年金", "運転免許証")
    );
    let numbers = c.numbers().await;

    // A signed form scanned while the link is down is kept and sent again.
    c.proxy.cut();
    t.wait_for("document.getElementById('offline-banner').hidden === false")
        .await;
    c.scan(&numbers[0]);
    t.wait_text("#scan-notice", "本庁との通信が切れています")
        .await;
    t.wait_text(".visit", "送れていない読み取り: 1件").await;
    c.proxy.restore();
    t.wait_for("document.getElementById('offline-banner').hidden === true")
        .await;
    c.tap("[data-act=resend-codes]").await;
    c.step("done").await;
    assert_eq!(t.text("#fee-total").await, "300円");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_move_within_the_city_takes_the_new_address_from_the_master_without_typing() {
    let c = Counter::start("kakanai-flow-tenkyo").await;
    c.cp.staff
        .answer_lookup_with("見本　花子", "1985-04-01", "架空県見本市本町１丁目２番３号");
    let t = &c.tablet;
    c.tap("[data-start=move_within]").await;
    c.step("people").await;
    c.tap("[data-act=read-card]").await;
    t.wait_for("location.pathname === '/card'").await;
    let card = vcard("mynumber-sample.json", c.pcscd.vpcd_port(0));
    c.resident_pin().await;
    t.wait_for("!!document.querySelector('[data-act=\"card-person:0\"]')")
        .await;
    c.tap("[data-act=\"card-person:0\"]").await;
    t.wait_for("location.pathname === '/visit'").await;
    // The household moves with her.
    t.wait_for("document.querySelectorAll('[data-member][data-subject=true]').length === 3")
        .await;
    c.step("people").await;

    // The date step asks for the new address: a 町字 and a 番地 from buttons.
    c.tap("[data-act=\"goto:next\"]").await;
    c.step("date").await;
    t.wait_for("!!document.querySelector('[data-act=\"machiaza:002\"]')")
        .await;
    c.tap("[data-act=\"goto:next\"]").await;
    t.wait_text("#visit-notice", "転居先の住所が決まっていません")
        .await;
    c.tap("[data-act=\"machiaza:002\"]").await;
    for key in ["8", "-", "1", "2", "back"] {
        c.tap(&format!("[data-act=\"banchi-key:{key}\"]")).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        c.step("date").await;
    }
    t.wait_for("document.getElementById('banchi').dataset.banchi === '8-1'")
        .await;
    assert_eq!(t.text("#banchi").await, "8番1号");
    c.tap("[data-act=address-set]").await;
    t.wait_text("#destination", "架空県見本市緑町二丁目8番1号")
        .await;
    t.screenshot("tenkyo-address").await;
    c.tap("[data-act=\"goto:next\"]").await;
    c.step("procedures").await;
    let plan: kakanai_protocol::counter::VisitPlan =
        c.cp.counter.last_params("counter.determine").unwrap();
    let dest = plan.destination.unwrap();
    assert_eq!(dest.machiaza.as_deref(), Some("002"));
    assert_eq!(dest.address, "架空県見本市緑町二丁目8番1号");
    assert!(t.text("[data-procedure=tenkyo]").await.contains("市民課"));
    drop(card);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_birth_is_filed_for_a_newborn_entered_with_buttons_and_a_failed_print_is_printed_again() {
    // The printer fails the first job (out of paper), then prints.
    let script = "#!/bin/sh\nif [ ! -e DIR/failed-once ]; then touch DIR/failed-once; \
                  echo 'ERROR: media-empty' >&2; exit 1; fi\nsleep 1\n";
    let c = Counter::start_with_printer("kakanai-flow-birth", script).await;
    let t = &c.tablet;
    c.tap("[data-start=birth]").await;
    c.step("people").await;

    // The mother, found by her reading; her household joins, nobody is the subject yet.
    c.tap("details.search summary").await;
    t.input_text("#search-text", "ミホン").await;
    c.tap("[data-act=search]").await;
    t.wait_for("document.querySelectorAll('[data-result]').length === 3")
        .await;
    c.tap("[data-act=\"pick:000000123\"]").await;
    t.wait_for("document.querySelectorAll('[data-member]').length === 3")
        .await;
    c.step("people").await;
    assert_eq!(
        t.eval::<u32>("document.querySelectorAll('[data-member][data-subject=true]').length")
            .await,
        0
    );

    // The newborn: birth date and sex by buttons, the name typed.
    let today: String = t
        .eval("Array.from(document.querySelectorAll('[data-calendar=newborn-date] [data-day]')).pop().dataset.day")
        .await;
    c.tap(&format!(
        "[data-calendar=newborn-date] [data-day=\"{today}\"]"
    ))
    .await;
    t.wait_for("!!document.querySelector('[data-newborn-birth]')")
        .await;
    c.tap("[data-act=\"newborn-sex:female\"]").await;
    t.wait_for("document.querySelector('[data-act=\"newborn-sex:female\"]').classList.contains('selected')").await;
    t.input_text("#newborn-name", "見本　二葉").await;
    t.input_text("#newborn-kana", "ミホン　フタバ").await;
    t.screenshot("birth-newborn").await;
    c.tap("[data-act=newborn-add]").await;
    t.wait_for("document.querySelectorAll('[data-member]').length === 4")
        .await;
    assert!(t.text("[data-member=\"3\"]").await.contains("見本　二葉"));
    assert_eq!(
        t.eval::<String>("document.querySelector('[data-member=\"3\"]').dataset.subject")
            .await,
        "true"
    );

    c.tap("[data-act=\"goto:next\"]").await;
    c.step("date").await;
    c.tap("[data-act=\"goto:next\"]").await;
    c.step("procedures").await;
    let plan: kakanai_protocol::counter::VisitPlan =
        c.cp.counter.last_params("counter.determine").unwrap();
    assert_eq!(plan.event, kakanai_protocol::counter::EventKind::Birth);
    match &plan.members[3].person {
        kakanai_protocol::counter::PersonRef::New { person } => {
            assert_eq!(person.name, "見本　二葉");
            assert_eq!(person.birth_date.as_deref(), Some(today.as_str()));
            assert_eq!(person.sex.as_deref(), Some("female"));
        }
        other => panic!("the newborn went as {other:?}"),
    }

    // The print fails: staff are told, and the same forms print again.
    c.tap("[data-act=print]").await;
    t.wait_for("document.getElementById('print') && document.getElementById('print').dataset.print === 'failed'").await;
    let failed = t.text("#print").await;
    assert!(failed.contains("印刷できませんでした"), "{failed}");
    // In staff's words, not the printer's IPP keywords.
    assert!(
        !failed.contains("aborted") && !failed.contains("media-"),
        "{failed}"
    );
    t.screenshot("birth-print-failed").await;
    c.tap("[data-act=reprint]").await;
    c.step("scan").await;
    assert_eq!(
        c.cp.counter
            .methods()
            .iter()
            .filter(|m| *m == "counter.create-visit")
            .count(),
        1,
        "the visit is created once"
    );
    assert_eq!(c.cp.counter.jobs.lock().unwrap().len(), 2);
    let numbers = c.numbers().await;
    for n in &numbers {
        c.scan(n);
    }
    c.step("done").await;
}
