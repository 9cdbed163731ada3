//! Staff UI latency on this machine, end to end through real processes: the
//! `kakanai-appliance` daemon, Mosquitto, the stand-in control plane, pcscd + vpcd
//! with a virtual My Number card, and headless Chromium showing the card screen.
//!
//! Prints, over `KAKANAI_BENCH_ROUNDS` rounds (default 20):
//! - card put on the reader → the PIN screen filled in the browser (identify and
//!   the retry query over pcscd, the `card` event, the panel fetched and shown);
//! - PIN submitted → the 基本4情報 shown (read over pcscd, event, panel);
//! - Server-Sent Event delivery: a `status` event's server timestamp → the page's
//!   handler (same machine, same clock).
//!
//! Run: `cargo bench -p kakanai-appliance --bench ui_latency`.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

#[path = "../tests/common/mod.rs"]
mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use chromiumoxide::Browser;
use futures_util::StreamExt as _;
use kakanai_hw::vcard::{VirtualCard, VpcdLink};
use kakanai_protocol::{KeyId, SigningKey};
use kakanai_test_peers::{free_port, Chromium, Mosquitto, Pcscd};

const DAEMON: &str = env!("CARGO_BIN_EXE_kakanai-appliance");

fn now_ms() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
        * 1000.0
}

fn percentile(samples: &mut [f64], p: f64) -> f64 {
    samples.sort_by(f64::total_cmp);
    let i = ((samples.len() as f64 - 1.0) * p).round() as usize;
    samples[i]
}

fn report(name: &str, samples: &mut [f64]) {
    println!(
        "{name}: n={} p50={:.1} ms p95={:.1} ms max={:.1} ms",
        samples.len(),
        percentile(samples, 0.5),
        percentile(samples, 0.95),
        percentile(samples, 1.0)
    );
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` passes nothing we need.
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let rounds: usize = std::env::var("KAKANAI_BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let broker = Mosquitto::start().unwrap();
    let _cp = common::ControlPlane::start(broker.port(), true, true).await;
    let pcscd = Pcscd::start().unwrap();

    let dir = tempfile::tempdir().unwrap();
    let key_path = dir.path().join("device.key");
    std::fs::write(&key_path, hex::encode(common::device_key().seed())).unwrap();
    std::fs::set_permissions(&key_path, std::fs::Permissions::from_mode(0o600)).unwrap();
    let cp = SigningKey::from_seed(&[0x22; 32]).unwrap().verifying_key();
    let http_port = free_port();
    let config = format!(
        "[device]\ntenant = \"city-a\"\nid = \"counter-01\"\nkey_file = \"{}\"\n\n\
         [[control_plane.keys]]\nkid = \"{}\"\npublic_key = \"{}\"\n\n\
         [broker]\nhost = \"127.0.0.1\"\nport = {}\n\n[store]\npath = \"{}\"\n\n\
         [http]\nlisten = \"127.0.0.1:{http_port}\"\n\n[devices]\nreader = \"{}\"\n",
        key_path.display(),
        KeyId::of_key(&cp).to_hex(),
        hex::encode(cp.as_bytes()),
        broker.port(),
        dir.path().join("appliance.redb").display(),
        pcscd.reader_name(0),
    );
    let config_path = dir.path().join("appliance.toml");
    std::fs::write(&config_path, config).unwrap();
    let daemon = Command::new(DAEMON)
        .arg("--config")
        .arg(&config_path)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let _daemon = KillOnDrop(daemon);
    let base = format!("http://127.0.0.1:{http_port}");

    let chromium = Chromium::start().unwrap();
    let (browser, mut handler) = Browser::connect(chromium.ws_url()).await.unwrap();
    tokio::spawn(async move { while handler.next().await.is_some() {} });
    let page = browser.new_page("about:blank").await.unwrap();
    page.execute(
        chromiumoxide::cdp::browser_protocol::emulation::SetDeviceMetricsOverrideParams::new(
            1280, 800, 1.0, false,
        ),
    )
    .await
    .unwrap();
    let eval = |js: String| {
        let page = page.clone();
        async move {
            page.evaluate(js)
                .await
                .ok()
                .and_then(|v| v.into_value::<serde_json::Value>().ok())
        }
    };
    let wait = |js: &'static str| {
        let eval = &eval;
        async move {
            let deadline = Instant::now() + Duration::from_secs(20);
            loop {
                if eval(js.to_owned()).await == Some(serde_json::Value::Bool(true)) {
                    return;
                }
                assert!(Instant::now() < deadline, "waited in vain for {js}");
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    };
    // Log in.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        page.goto(format!("{base}/login")).await.unwrap();
        if eval("document.querySelector('[data-status=link]').dataset.tone === 'ok'".into()).await
            == Some(serde_json::Value::Bool(true))
        {
            break;
        }
        assert!(Instant::now() < deadline, "the appliance never came online");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let el = page.find_element("#staff_id").await.unwrap();
    el.click()
        .await
        .unwrap()
        .type_str(common::STAFF_ID)
        .await
        .unwrap();
    let el = page.find_element("#password").await.unwrap();
    el.click()
        .await
        .unwrap()
        .type_str(common::STAFF_PASSWORD)
        .await
        .unwrap();
    page.find_element("button[type=submit]")
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait("location.pathname === '/'").await;
    page.goto(format!("{base}/card")).await.unwrap();
    wait("document.body.dataset.appliance === 'up'").await;

    let profile = Path::new(env!("CARGO_MANIFEST_DIR")).join("../hw/profiles/mynumber-sample.json");
    let card = VpcdLink::connect(
        ("127.0.0.1", pcscd.vpcd_port(0)),
        VirtualCard::from_file(&profile).unwrap(),
    )
    .unwrap();
    assert!(card.wait_connected(Duration::from_secs(5)));
    wait(
        "(document.querySelector('[data-card-state]')||{dataset:{}}).dataset.cardState === 'ready'",
    )
    .await;
    card.remove();
    wait("(document.querySelector('[data-card-state]')||{dataset:{}}).dataset.cardState === 'waiting'").await;

    let (mut to_pin, mut to_face, mut sse) = (Vec::new(), Vec::new(), Vec::new());
    let panel_at = || async {
        eval("Number(document.body.dataset.panelAt)".into())
            .await
            .and_then(|v| v.as_f64())
            .unwrap_or(0.0)
    };
    let sse_latency = || async {
        eval("Number(document.body.dataset.statusLatencyMs)".into())
            .await
            .and_then(|v| v.as_f64())
    };
    let card = std::sync::Arc::new(card);
    // The virtual card's calls block: keep them off the runtime's threads.
    let card_do = |f: fn(&VpcdLink)| {
        let card = std::sync::Arc::clone(&card);
        async move { tokio::task::spawn_blocking(move || f(&card)).await.unwrap() }
    };
    for round in 0..rounds {
        eprintln!("round {round}");
        let t0 = now_ms();
        card_do(VpcdLink::insert).await;
        wait("(document.querySelector('[data-card-state]')||{dataset:{}}).dataset.cardState === 'ready' && !!document.querySelector('form[data-keypad=pin]')").await;
        to_pin.push(panel_at().await - t0);
        if let Some(l) = sse_latency().await {
            sse.push(l);
        }
        for d in ["1", "2", "3", "4"] {
            page.find_element(format!("form[data-keypad=pin] [data-key=\"{d}\"]"))
                .await
                .unwrap()
                .click()
                .await
                .unwrap();
        }
        let submit = page
            .find_element("form[data-keypad=pin] [data-action=submit]")
            .await
            .unwrap();
        let t1 = now_ms();
        submit.click().await.unwrap();
        wait("(document.querySelector('[data-card-state]')||{dataset:{}}).dataset.cardState === 'read' && !!document.querySelector('.face-name')").await;
        to_face.push(panel_at().await - t1);
        // The lookup's answer redraws the panel once more: tap after it.
        wait("!!document.querySelector('[data-lookup]:not([data-lookup=pending])')").await;
        page.find_element(".actions button")
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        wait("(document.querySelector('[data-card-state]')||{dataset:{}}).dataset.cardState === 'ready'").await;
        card_do(VpcdLink::remove).await;
        wait("(document.querySelector('[data-card-state]')||{dataset:{}}).dataset.cardState === 'waiting'").await;
        if let Some(l) = sse_latency().await {
            sse.push(l);
        }
    }
    report("card on the reader → PIN screen shown", &mut to_pin);
    report("PIN submitted → 基本4情報 shown", &mut to_face);
    let mut total: Vec<f64> = to_pin.iter().zip(&to_face).map(|(a, b)| a + b).collect();
    report("both together (without the resident's typing)", &mut total);
    report("SSE status event delivery", &mut sse);
}

/// Stops the daemon however the benchmark ends.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
