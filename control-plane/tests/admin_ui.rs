//! The admin UI in a real browser (headless Chromium over the DevTools protocol,
//! driven by chromiumoxide): an administrator logs in, sees the fleet, creates a
//! staff account, disables it, and finds both changes in the audit log search.
//! With `KAKANAI_SCREENSHOTS=1` each page is saved to `docs/screenshots/admin-*.png`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "admin_fixture/mod.rs"]
mod fixture;

use std::path::PathBuf;
use std::time::Duration;

use chromiumoxide::cdp::browser_protocol::emulation::SetDeviceMetricsOverrideParams;
use chromiumoxide::cdp::browser_protocol::input::InsertTextParams;
use chromiumoxide::page::ScreenshotParams;
use chromiumoxide::{Browser, Page};
use fixture::{city_a, ADMIN_PASSWORD};
use futures_util::StreamExt;
use kakanai_control_plane::model::{Actor, Place};
use kakanai_test_peers::Chromium;

const WAIT: Duration = Duration::from_secs(20);

async fn shot(page: &Page, name: &str) {
    if std::env::var("KAKANAI_SCREENSHOTS").as_deref() != Ok("1") {
        return;
    }
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    page.save_screenshot(
        ScreenshotParams::builder().full_page(true).build(),
        dir.join(format!("admin-{name}.png")),
    )
    .await
    .unwrap();
}

/// Focuses the field and types `text` (inserted as text input, so Japanese works).
async fn fill(page: &Page, selector: &str, text: &str) {
    page.find_element(selector)
        .await
        .unwrap_or_else(|e| panic!("{selector}: {e}"))
        .click()
        .await
        .unwrap();
    page.execute(InsertTextParams::new(text)).await.unwrap();
}

/// Clicks `selector` and waits until the page it leads to has loaded (a marker set
/// on the old document is gone and the new one is complete).
async fn submit(page: &Page, selector: &str) {
    page.evaluate("window.__kakanaiOld = 1").await.unwrap();
    page.find_element(selector)
        .await
        .unwrap_or_else(|e| panic!("{selector}: {e}"))
        .click()
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let loaded = page
            .evaluate("window.__kakanaiOld === undefined && document.readyState === 'complete'")
            .await
            .ok()
            .and_then(|r| r.into_value::<bool>().ok())
            .unwrap_or(false);
        if loaded {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no new page after clicking {selector}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn text(page: &Page, selector: &str) -> String {
    page.find_element(selector)
        .await
        .unwrap_or_else(|e| panic!("{selector}: {e}"))
        .inner_text()
        .await
        .unwrap()
        .unwrap_or_default()
}

async fn open(page: &Page, url: &str) {
    tokio::time::timeout(WAIT, page.goto(url))
        .await
        .expect("page in time")
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_administrator_manages_staff_and_finds_it_in_the_audit_log() {
    let fx = fixture::start().await;
    let chromium = tokio::task::spawn_blocking(Chromium::start)
        .await
        .unwrap()
        .expect("Chromium must start for this test");
    let (mut browser, mut handler) = Browser::connect(chromium.ws_url()).await.unwrap();
    let events = tokio::spawn(async move { while handler.next().await.is_some() {} });
    let page = browser.new_page("about:blank").await.unwrap();
    // A laptop-sized window.
    page.execute(SetDeviceMetricsOverrideParams::new(1280, 800, 1.0, false))
        .await
        .unwrap();

    // Log in.
    open(&page, &fx.url("/admin/login")).await;
    shot(&page, "login").await;
    fill(&page, "input[name=login_id]", "admin-a").await;
    fill(&page, "input[name=password]", ADMIN_PASSWORD).await;
    submit(&page, "button[type=submit]").await;
    assert_eq!(text(&page, "h1").await, "ダッシュボード");
    assert_eq!(text(&page, "#online-count").await, "1");
    shot(&page, "dashboard").await;

    // The fleet.
    submit(&page, "header nav a[href='/admin/fleet']").await;
    let table = text(&page, "#devices").await;
    assert!(table.contains("A市 市民課 1番窓口"), "{table}");
    assert!(table.contains("オンライン") && table.contains("オフライン"));
    assert!(table.contains("0.1.1"), "firmware from presence");
    assert!(!table.contains("B市"), "only our city's devices");
    shot(&page, "fleet").await;
    submit(&page, "#devices a[href='/admin/fleet/counter-a1']").await;
    assert!(text(&page, "main").await.contains("counter-a1"));
    shot(&page, "device").await;

    // Create a staff account.
    open(&page, &fx.url("/admin/staff/new")).await;
    fill(&page, "input[name=login_id]", "k-yamada").await;
    fill(&page, "input[name=display_name]", "山田 次郎").await;
    fill(&page, "input[name=password]", "Hajimete-Pass-1").await;
    page.find_element("input[name=group][value=shimin-madoguchi]")
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    shot(&page, "staff-new").await;
    submit(&page, "form.card button[type=submit]").await;
    let staff = text(&page, "#staff").await;
    assert!(
        staff.contains("k-yamada") && staff.contains("山田 次郎"),
        "{staff}"
    );
    assert!(staff.contains("shimin-madoguchi"));
    shot(&page, "staff").await;

    // Disable it.
    submit(&page, "#staff a[href='/admin/staff/k-yamada']").await;
    submit(&page, "#disable").await;
    assert!(text(&page, "main")
        .await
        .contains("アカウントを無効にしました"));
    shot(&page, "staff-edit").await;
    let stored = fx
        .store()
        .get_staff(&city_a(), "k-yamada")
        .await
        .unwrap()
        .unwrap();
    assert!(stored.disabled);

    // Search the audit log for this administrator's changes.
    submit(&page, "header nav a[href='/admin/audit']").await;
    assert!(text(&page, "#chain-state").await.contains("検証済み"));
    fill(&page, "input[name=operator]", "admin-a").await;
    fill(&page, "input[name=action]", "admin:staff.").await;
    submit(&page, "#audit-search button[type=submit]").await;
    let results = text(&page, "#audit-results").await;
    assert!(results.contains("admin:staff.create"), "{results}");
    assert!(results.contains("admin:staff.disable"));
    assert!(results.contains("k-yamada"));
    assert!(results.contains("IP 127.0.0.1"));
    assert!(
        !results.contains("山田"),
        "no display names in the audit log"
    );
    shot(&page, "audit").await;

    // The same, as the store has it.
    let entries = fx.audit(&city_a()).await;
    let disable = entries
        .iter()
        .find(|e| e.record.action == "admin:staff.disable")
        .unwrap();
    assert_eq!(disable.record.actor, Actor::Admin("admin-a".into()));
    assert_eq!(disable.record.place, Place::Ip("127.0.0.1".into()));

    browser.close().await.unwrap();
    let _ = tokio::time::timeout(Duration::from_secs(5), events).await;
    drop(chromium);
    fx.stop().await;
}
