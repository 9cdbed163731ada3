//! What the browser tests share: the appliance daemon as a process, raw HTTP, a
//! headless Chromium page on a 10-inch tablet's viewport, virtual cards. Loaded by
//! `ui.rs` and `ui_flows.rs` (`#[path]`), not by the other test binaries.

#![allow(dead_code, unreachable_pub, clippy::unwrap_used, clippy::expect_used)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use kakanai_hw::vcard::{VirtualCard, VpcdLink};

use crate::common::{self, STAFF_ID, STAFF_PASSWORD};

pub const DAEMON: &str = env!("CARGO_BIN_EXE_kakanai-appliance");
pub const WAIT: Duration = Duration::from_secs(15);

/// The daemon as a process, its log in a file.
pub struct Appliance {
    child: Child,
    pub http_port: u16,
    pub dir: tempfile::TempDir,
}

impl Appliance {
    pub fn start(broker_port: u16, reader: Option<&str>) -> Self {
        let devices = reader
            .map(|r| format!("[devices]\nreader = \"{r}\"\n"))
            .unwrap_or_default();
        Self::start_with(broker_port, &devices)
    }

    /// The daemon with `devices` (TOML: a `[devices]` table) as its devices.
    pub fn start_with(broker_port: u16, devices: &str) -> Self {
        let common::DaemonConfig {
            dir,
            path,
            http_port,
        } = common::DaemonConfig::write(broker_port, 0o600, &format!("\n{devices}"));
        let log = std::fs::File::create(dir.path().join("daemon.log")).unwrap();
        let child = Command::new(DAEMON)
            .arg("--config")
            .arg(&path)
            .env("RUST_LOG", "debug")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        let me = Self {
            child,
            http_port,
            dir,
        };
        me.wait_online();
        me
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.http_port)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("daemon.log")).unwrap_or_default()
    }

    pub fn wait_online(&self) {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some((_, body)) = http(self.http_port, "GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
            {
                if body.contains("\"link\":\"online\"") {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "the appliance never came online:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Appliance {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One raw HTTP/1.1 exchange: (head, body).
pub fn http(port: u16, request: &str) -> Option<(String, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let request = request.replacen("\r\n\r\n", "\r\nConnection: close\r\n\r\n", 1);
    s.write_all(request.as_bytes()).ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let (head, body) = text.split_once("\r\n\r\n")?;
    Some((head.to_owned(), body.to_owned()))
}

/// The shared tablet driver (`kakanai_test_peers::Tablet`), with this crate's
/// screenshot names (`docs/screenshots/appliance-NAME.png`) and the login.
pub struct Tablet(kakanai_test_peers::Tablet);

impl std::ops::Deref for Tablet {
    type Target = kakanai_test_peers::Tablet;

    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl Tablet {
    pub async fn open() -> Self {
        Self(kakanai_test_peers::Tablet::open().await)
    }

    pub async fn screenshot(&self, name: &str) {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/screenshots");
        self.0.screenshot(&dir, &format!("appliance-{name}")).await;
    }

    pub async fn log_in(&self, appliance: &Appliance) {
        self.goto(&appliance.url("/login")).await;
        self.type_into("#staff_id", STAFF_ID).await;
        self.type_into("#password", STAFF_PASSWORD).await;
        self.tap("button[type=submit]").await;
        self.wait_for("location.pathname === '/' && !!document.querySelector('.tiles')")
            .await;
    }
}

pub fn vcard(profile: &str, port: u16) -> VpcdLink {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../hw/profiles")
        .join(profile);
    let card =
        VpcdLink::connect(("127.0.0.1", port), VirtualCard::from_file(&path).unwrap()).unwrap();
    assert!(card.wait_connected(Duration::from_secs(5)));
    card
}
