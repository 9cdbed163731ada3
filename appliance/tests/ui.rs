//! The staff UI in a real browser: headless Chromium (CDP through `chromiumoxide`)
//! against the real `kakanai-appliance` daemon, a real Mosquitto, the stand-in
//! control plane of `common` (answering `staff.*`), and pcscd + vpcd with a virtual
//! My Number card.
//!
//! With `KAKANAI_SCREENSHOTS=1` each screen is saved to
//! `docs/screenshots/appliance-*.png`.

// Test helpers outside #[test] functions are not covered by allow-unwrap-in-tests.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "common/browser.rs"]
mod browser;
mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

use browser::{http, vcard, Appliance, Tablet, WAIT};
use common::{ControlPlane, STAFF_ID, STAFF_NAME, STAFF_PASSWORD};
use kakanai_test_peers::{Mosquitto, Pcscd};

const CARD_STATE: &str =
    "(document.querySelector('[data-card-state]') || {dataset: {}}).dataset.cardState";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn staff_log_in_and_read_a_my_number_card_with_the_pin_typed_on_the_tablet() {
    let broker = Mosquitto::start().unwrap();
    let cp: Arc<ControlPlane> = ControlPlane::start(broker.port(), true, true).await;
    let pcscd = Pcscd::start().expect("pcscd with vpcd");
    let appliance = Appliance::start(broker.port(), Some(&pcscd.reader_name(0)));
    let tablet = Tablet::open().await;

    // Login screen: typed staff id and password, relayed to the control plane.
    tablet.goto(&appliance.url("/")).await;
    tablet.wait_for("location.pathname === '/login'").await;
    tablet
        .wait_for("document.querySelector('[data-status=link]').dataset.tone === 'ok'")
        .await;
    tablet.screenshot("login").await;
    tablet.type_into("#staff_id", STAFF_ID).await;
    tablet.type_into("#password", "wrong-password").await;
    tablet.tap("button[type=submit]").await;
    tablet
        .wait_text(".notice", "ログインIDまたはパスワードが正しくありません")
        .await;
    tablet.log_in(&appliance).await;
    assert!(cp.staff.calls().contains(&"staff.login".to_owned()));
    // The display name is shown as text, never as markup.
    assert_eq!(tablet.text(".staff-name").await, STAFF_NAME);
    assert!(
        !tablet
            .eval::<bool>("!!document.querySelector('.staff-name b')")
            .await
    );
    tablet.screenshot("home").await;

    // The card screen waits for a card.
    tablet.tap("a.tile[href='/card']").await;
    tablet
        .wait_for(&format!("{CARD_STATE} === 'waiting'"))
        .await;
    tablet
        .wait_text("[data-status=reader] .value", "準備完了")
        .await;
    tablet.screenshot("card-waiting").await;

    // A card is put on the reader: identified without spending a try.
    let card = vcard("mynumber-sample.json", pcscd.vpcd_port(0));
    tablet.wait_for(&format!("{CARD_STATE} === 'ready'")).await;
    assert!(tablet.text(".tries").await.contains("3回"));
    tablet
        .wait_for("document.getElementById('status-strip').dataset.lights === 'card-present'")
        .await;
    tablet.screenshot("card-pin").await;

    // A wrong PIN: the tries left, back at the keypad, nothing retried.
    tablet.tap_digits("pin", "0000").await;
    tablet
        .tap("form[data-keypad=pin] [data-action=submit]")
        .await;
    tablet.wait_text(".notice", "暗証番号が違います").await;
    assert!(tablet.text(".notice").await.contains("残り2回"));
    assert!(tablet.text(".tries").await.contains("2回"));
    assert_eq!(
        card.with_card(|c| c.retries_left(kakanai_hw::vcard::KeyName::Pin)),
        Some(2)
    );
    tablet.screenshot("card-wrong-pin").await;

    // The right PIN: the 基本4情報 in large type, the birth date in 和暦.
    tablet.tap_digits("pin", "1234").await;
    tablet
        .tap("form[data-keypad=pin] [data-action=submit]")
        .await;
    tablet.wait_for(&format!("{CARD_STATE} === 'read'")).await;
    assert_eq!(tablet.text(".face-name").await, "見本　花子");
    assert_eq!(
        tablet.text(".face-address").await,
        "架空県見本市本町１丁目２番３号"
    );
    assert!(tablet
        .text(".face-birth")
        .await
        .starts_with("昭和60年4月1日"));
    assert_eq!(tablet.text(".face-sex").await, "女");
    // The face went to the control plane for the lookup, which it does not offer here.
    tablet
        .wait_for("!!document.querySelector('[data-lookup=not-available]')")
        .await;
    assert!(cp
        .staff
        .calls()
        .contains(&"residents.lookup-card".to_owned()));
    tablet.screenshot("card-read").await;
    // The card was powered down: the verified PIN is gone.
    assert!(!card.with_card(|c| c.is_verified(kakanai_hw::vcard::KeyName::Pin)));

    // Next resident: the face is forgotten; the card still there is checked again.
    tablet.tap(".actions button").await;
    tablet.wait_for(&format!("{CARD_STATE} === 'ready'")).await;
    assert!(!tablet.text("body").await.contains("見本"));

    // The card pulled in the middle of the read.
    card.remove_after_apdus(4);
    tablet.tap_digits("pin", "1234").await;
    tablet
        .tap("form[data-keypad=pin] [data-action=submit]")
        .await;
    // Which message depends on which PC/SC error the pull produces first (the card
    // gone, or a failed transmit): either way staff are told to put the card back.
    tablet
        .wait_for(
            "(t => t.includes('読み取りの途中でカードが外されました') || \
             (t.includes('カードを読み取れませんでした') && t.includes('置き直してください')))\
             ((document.querySelector('.notice') || {innerText: ''}).innerText)",
        )
        .await;
    tablet.screenshot("card-removed").await;
    // Put back once the reader has seen it gone (pcscd polls vpcd every 400 ms; a
    // card back within one poll is no removal at all, as with a real reader).
    tablet
        .wait_text("[data-status=reader] .value", "準備完了")
        .await;
    card.insert();
    tablet.wait_for(&format!("{CARD_STATE} === 'ready'")).await;

    // 照合番号B typed by staff; this time the control plane finds the resident.
    cp.staff
        .answer_lookup_with("見本　花子", "1985-04-01", "架空県見本市本町１丁目２番３号");
    tablet.tap("a.tab[href='/card?entry=code-b']").await;
    tablet
        .wait_for("!!document.querySelector('form[data-keypad=code-b]')")
        .await;
    tablet.tap_digits("code-b", "60040120355678").await;
    tablet.screenshot("card-code-b").await;
    tablet
        .tap("form[data-keypad=code-b] [data-action=submit]")
        .await;
    tablet.wait_for(&format!("{CARD_STATE} === 'read'")).await;
    assert_eq!(tablet.text(".face-name").await, "見本　花子");
    tablet
        .wait_for("!!document.querySelector('[data-lookup=answered]')")
        .await;
    assert_eq!(tablet.text(".cand-name").await, "見本　花子");
    assert!(tablet
        .text(".cand-birth")
        .await
        .starts_with("昭和60年4月1日"));
    assert!(tablet.text(".lookup-head").await.contains("一致しました"));
    tablet.screenshot("card-lookup").await;

    // Logout forgets the face and ends the session at the control plane too.
    tablet.tap(".logout button").await;
    tablet.wait_for("location.pathname === '/login'").await;
    tablet.wait_text(".flash", "ログアウトしました").await;
    let deadline = Instant::now() + WAIT;
    while !cp.staff.calls().contains(&"staff.logout".to_owned()) {
        assert!(
            Instant::now() < deadline,
            "the control plane was never told"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tablet.goto(&appliance.url("/card")).await;
    tablet.wait_for("location.pathname === '/login'").await;

    // Personal data and the PIN never reached the logs.
    let log = appliance.log();
    for secret in [
        "見本",
        "花子",
        "架空県",
        "19850401",
        "60040120355678",
        STAFF_PASSWORD,
    ] {
        assert!(!log.contains(secret), "the daemon logged {secret:?}");
    }
    drop(card);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_control_plane_is_shown_at_once_and_login_says_it_is_unreachable() {
    let broker = Mosquitto::start().unwrap();
    let _cp = ControlPlane::start(broker.port(), true, true).await;
    let appliance = Appliance::start(broker.port(), None);
    let tablet = Tablet::open().await;
    tablet.log_in(&appliance).await;
    tablet
        .wait_for("document.getElementById('offline-banner').hidden === true")
        .await;

    let stopped = Instant::now();
    drop(broker);
    tablet
        .wait_for("document.getElementById('offline-banner').hidden === false")
        .await;
    let noticed = stopped.elapsed();
    assert!(
        noticed < Duration::from_secs(5),
        "offline shown after {noticed:?}"
    );
    assert_eq!(
        tablet
            .eval::<String>("document.querySelector('[data-status=link]').dataset.tone")
            .await,
        "bad"
    );
    tablet
        .wait_for("document.getElementById('status-strip').dataset.lights === 'offline'")
        .await;
    assert!(tablet
        .text("#offline-banner")
        .await
        .contains("本庁との通信が切れています"));
    tablet.screenshot("offline").await;

    // Logout works without the control plane; a login says why it cannot work.
    tablet.tap(".logout button").await;
    tablet.wait_for("location.pathname === '/login'").await;
    tablet.type_into("#staff_id", STAFF_ID).await;
    tablet.type_into("#password", STAFF_PASSWORD).await;
    let tapped = Instant::now();
    tablet.tap("button[type=submit]").await;
    tablet
        .wait_text(".notice", "本庁との通信が切れています")
        .await;
    assert!(tapped.elapsed() < Duration::from_secs(5), "the login hung");
    tablet.screenshot("login-offline").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_the_control_plane_ended_goes_back_to_login_with_a_message() {
    let broker = Mosquitto::start().unwrap();
    let cp = ControlPlane::start(broker.port(), true, true).await;
    let appliance = Appliance::start(broker.port(), None);
    let tablet = Tablet::open().await;
    tablet.log_in(&appliance).await;
    cp.staff.expire_all();
    tablet.goto(&appliance.url("/")).await;
    tablet.wait_for("location.pathname === '/login'").await;
    tablet
        .wait_text(".flash", "もう一度ログインしてください")
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_carry_strict_headers_and_forged_posts_change_nothing() {
    let broker = Mosquitto::start().unwrap();
    let cp = ControlPlane::start(broker.port(), true, true).await;
    let appliance = Appliance::start(broker.port(), None);
    let port = appliance.http_port;

    let (head, body) = http(port, "GET /login HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let head_lower = head.to_ascii_lowercase();
    assert!(
        head_lower.contains("content-security-policy: default-src 'self'"),
        "{head}"
    );
    assert!(head_lower.contains("x-frame-options: deny"));
    assert!(head_lower.contains("cache-control: no-store"));
    let cookie_line = head
        .lines()
        .find(|l| l.to_ascii_lowercase().starts_with("set-cookie:"))
        .expect("a session cookie");
    assert!(cookie_line.contains("HttpOnly") && cookie_line.contains("SameSite=Strict"));
    assert!(!body.contains("<script>"), "no inline script");
    let cookie = cookie_line
        .split_once(':')
        .unwrap()
        .1
        .split(';')
        .next()
        .unwrap()
        .trim()
        .to_owned();

    // A login post without the session's CSRF token is refused and never relayed.
    let form = format!("staff_id={STAFF_ID}&password={STAFF_PASSWORD}&csrf=forged");
    let (head, _) = http(
        port,
        &format!(
            "POST /login HTTP/1.1\r\nHost: x\r\nCookie: {cookie}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{form}",
            form.len()
        ),
    )
    .unwrap();
    assert!(head.starts_with("HTTP/1.1 403"), "{head}");
    // Cross-site, even with the right token.
    let csrf = body
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap();
    let form = format!("staff_id={STAFF_ID}&password={STAFF_PASSWORD}&csrf={csrf}");
    let (head, _) = http(
        port,
        &format!(
            "POST /login HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nOrigin: http://evil.example\r\nCookie: {cookie}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{form}",
            form.len()
        ),
    )
    .unwrap();
    assert!(head.starts_with("HTTP/1.1 403"), "{head}");
    assert!(!cp.staff.calls().contains(&"staff.login".to_owned()));
    // Card actions need a login.
    let (head, _) = http(port, "GET /card/panel HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 401"), "{head}");
    let (head, _) = http(
        port,
        "POST /card/pin HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 18\r\n\r\npin=1234&csrf=abcd",
    )
    .unwrap();
    assert!(
        head.starts_with("HTTP/1.1 303") && head.contains("/login"),
        "{head}"
    );
    // The event stream carries the status (no personal data) to anyone on the tablet.
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(b"GET /events HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut buf = [0u8; 2048];
    let mut got = String::new();
    while !got.contains("event: status") {
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0);
        got.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    assert!(got.contains("text/event-stream"));
}
