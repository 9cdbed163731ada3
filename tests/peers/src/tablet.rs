//! The counter's tablet in tests: a page of headless [`Chromium`] on a 10-inch
//! tablet's viewport (1280×800), driven through the DevTools protocol
//! (`chromiumoxide`). Every tap and every typed character is counted, so a test can
//! report how much staff had to do ([`Tablet::taps`], [`Tablet::keystrokes`]).
//!
//! The helpers panic with the page's text when something does not appear in time:
//! they are for tests, where that message is the useful failure.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use chromiumoxide::cdp::browser_protocol::emulation::SetDeviceMetricsOverrideParams;
use chromiumoxide::page::ScreenshotParams;
use chromiumoxide::{Browser, Page};
use futures_util::StreamExt as _;

use crate::Chromium;

/// How long [`Tablet::wait_for`] waits by default.
pub const WAIT: Duration = Duration::from_secs(15);

/// A browser page on a 10-inch tablet's viewport.
pub struct Tablet {
    _chromium: Chromium,
    _browser: Browser,
    page: Page,
    taps: AtomicUsize,
    keys: AtomicUsize,
}

impl std::fmt::Debug for Tablet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tablet")
            .field("taps", &self.taps())
            .field("keystrokes", &self.keystrokes())
            .finish_non_exhaustive()
    }
}

impl Tablet {
    /// Starts Chromium and opens a blank page (panics when Chromium cannot start).
    pub async fn open() -> Self {
        let chromium = Chromium::start().unwrap_or_else(|e| panic!("headless chromium: {e}"));
        let (browser, mut handler) = Browser::connect(chromium.ws_url())
            .await
            .unwrap_or_else(|e| panic!("connecting to chromium: {e}"));
        tokio::spawn(async move { while handler.next().await.is_some() {} });
        let page = browser
            .new_page("about:blank")
            .await
            .unwrap_or_else(|e| panic!("a new page: {e}"));
        page.execute(SetDeviceMetricsOverrideParams::new(1280, 800, 1.0, false))
            .await
            .unwrap_or_else(|e| panic!("viewport: {e}"));
        Self {
            _chromium: chromium,
            _browser: browser,
            page,
            taps: AtomicUsize::new(0),
            keys: AtomicUsize::new(0),
        }
    }

    /// The page, for what the helpers do not cover.
    pub fn page(&self) -> &Page {
        &self.page
    }

    /// Taps so far.
    pub fn taps(&self) -> usize {
        self.taps.load(Ordering::Relaxed)
    }

    /// Characters typed so far.
    pub fn keystrokes(&self) -> usize {
        self.keys.load(Ordering::Relaxed)
    }

    /// Starts counting again.
    pub fn reset_counts(&self) {
        self.taps.store(0, Ordering::Relaxed);
        self.keys.store(0, Ordering::Relaxed);
    }

    /// Opens `url` (not counted: staff do not type URLs).
    pub async fn goto(&self, url: &str) {
        self.page
            .goto(url)
            .await
            .unwrap_or_else(|e| panic!("opening {url}: {e}"));
    }

    /// Evaluates `js` and returns its value.
    pub async fn eval<T: serde::de::DeserializeOwned>(&self, js: &str) -> T {
        self.page
            .evaluate(js)
            .await
            .unwrap_or_else(|e| panic!("evaluating {js}: {e}"))
            .into_value()
            .unwrap_or_else(|e| panic!("the value of {js}: {e}"))
    }

    /// The text of the first element matching `selector` ("" when none).
    pub async fn text(&self, selector: &str) -> String {
        self.eval(&format!(
            "(document.querySelector({selector:?}) || {{innerText: ''}}).innerText"
        ))
        .await
    }

    /// Waits until `js` is true for up to `timeout`; panics with the page's text.
    pub async fn wait_for_within(&self, js: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            if self
                .page
                .evaluate(js)
                .await
                .ok()
                .and_then(|v| v.into_value::<bool>().ok())
                == Some(true)
            {
                return;
            }
            if Instant::now() > deadline {
                let body = self.text("body").await;
                panic!("waited in vain for `{js}`; the page shows:\n{body}");
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Waits until `js` is true ([`WAIT`]).
    pub async fn wait_for(&self, js: &str) {
        self.wait_for_within(js, WAIT).await;
    }

    /// Waits until the element `selector` shows `want`.
    pub async fn wait_text(&self, selector: &str, want: &str) {
        self.wait_for(&format!(
            "(document.querySelector({selector:?}) || {{innerText: ''}}).innerText.includes({want:?})"
        ))
        .await;
    }

    /// Finds `selector` and taps it (typing `text` when given). A page that was just
    /// replaced (navigation, panel refresh) may invalidate the node between the two
    /// DevTools calls: then the element is looked up again.
    pub async fn act(&self, selector: &str, text: Option<&str>) {
        let mut last = String::new();
        for _ in 0..40 {
            let done = async {
                let el = self.page.find_element(selector).await?;
                el.click().await?;
                if let Some(text) = text {
                    el.type_str(text).await?;
                }
                Ok::<_, chromiumoxide::error::CdpError>(())
            };
            match done.await {
                Ok(()) => {
                    self.taps.fetch_add(1, Ordering::Relaxed);
                    if let Some(t) = text {
                        self.keys.fetch_add(t.chars().count(), Ordering::Relaxed);
                    }
                    return;
                }
                Err(e) => last = e.to_string(),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let body = self.text("body").await;
        panic!("cannot use {selector} on the page: {last}; the page shows:\n{body}");
    }

    /// Taps `selector`.
    pub async fn tap(&self, selector: &str) {
        self.act(selector, None).await;
    }

    /// Taps `selector` and types `text` into it.
    pub async fn type_into(&self, selector: &str, text: &str) {
        self.act(selector, Some(text)).await;
    }

    /// Taps `selector` and enters `text` as an input method does (Japanese text,
    /// which key events cannot type). Counted as one tap and its characters.
    pub async fn input_text(&self, selector: &str, text: &str) {
        self.tap(selector).await;
        self.page
            .execute(chromiumoxide::cdp::browser_protocol::input::InsertTextParams::new(text))
            .await
            .unwrap_or_else(|e| panic!("entering text into {selector}: {e}"));
        self.keys.fetch_add(text.chars().count(), Ordering::Relaxed);
    }

    /// Taps `digits` on the on-screen keypad `keypad` (`form[data-keypad=…]`); each
    /// digit is a tap.
    pub async fn tap_digits(&self, keypad: &str, digits: &str) {
        for d in digits.chars() {
            self.tap(&format!("form[data-keypad={keypad:?}] [data-key=\"{d}\"]"))
                .await;
        }
    }

    /// Saves the viewport as `dir/NAME.png` when `KAKANAI_SCREENSHOTS=1`.
    pub async fn screenshot(&self, dir: &Path, name: &str) {
        if std::env::var("KAKANAI_SCREENSHOTS").as_deref() != Ok("1") {
            return;
        }
        std::fs::create_dir_all(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        let path = dir.join(format!("{name}.png"));
        self.page
            .save_screenshot(ScreenshotParams::builder().build(), &path)
            .await
            .unwrap_or_else(|e| panic!("screenshot {}: {e}", path.display()));
    }
}
