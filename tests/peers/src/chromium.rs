//! Headless Chromium (`/usr/bin/chromium`, package `chromium`), run as root.
//!
//! Flags: [`FLAGS`] plus a fresh `--user-data-dir` in the guard's temporary directory.
//! [`Chromium::start`] adds `--remote-debugging-port=0` and learns the port Chromium
//! picked from the `DevToolsActivePort` file it writes into the user data directory
//! (line 1: port, line 2: browser WebSocket path). Chromium spawns zygote, GPU and
//! renderer processes; they share its process group, which the guard signals on drop.
//! `/usr/bin/chromium` is a shell wrapper that `exec`s the real binary, so the child
//! pid is the browser itself.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::util::{self, PeerProcess};
use crate::{PeerError, Result};

const PEER: &str = "chromium";
const BINARY: &str = "/usr/bin/chromium";

/// Flags that make headless Chromium work as root on these machines, without network
/// chatter (no QUIC, no background updates, sync or first-run UI).
pub const FLAGS: &[&str] = &[
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
];

/// Chromium is slow to start on 2 busy cores; allow more than the other peers.
const CHROMIUM_TIMEOUT: Duration = Duration::from_secs(30);

/// A running headless Chromium with a DevTools (CDP) endpoint; stopped (all its
/// processes) and its profile removed on drop.
#[derive(Debug)]
pub struct Chromium {
    process: PeerProcess,
    port: u16,
    ws_path: String,
    dir: TempDir,
}

impl Chromium {
    /// Starts Chromium on `about:blank` and waits for its DevTools endpoint.
    pub fn start() -> Result<Self> {
        let binary = binary()?;
        let dir = temp_dir()?;
        let profile = dir.path().join("profile");
        let log = dir.path().join("chromium.log");
        let (out, err) = util::log_file(&log)?;
        let mut process = PeerProcess::spawn(
            PEER,
            Command::new(binary)
                .args(FLAGS)
                .arg(format!("--user-data-dir={}", profile.display()))
                .arg("--remote-debugging-port=0")
                .env("TMPDIR", private_tmp(&dir)?)
                .arg("about:blank")
                .stdout(out)
                .stderr(err),
        )?;
        let active_port = profile.join("DevToolsActivePort");
        let deadline = Instant::now() + CHROMIUM_TIMEOUT;
        loop {
            if let Some(status) = process.try_wait()? {
                return Err(PeerError::Exited {
                    peer: PEER,
                    status: status.to_string(),
                    log_tail: util::log_tail(&log, 20),
                });
            }
            // Chromium writes the file once the server listens; a partial read (one
            // line) is retried.
            if let Some((port, ws_path)) = read_active_port(&active_port) {
                return Ok(Self {
                    process,
                    port,
                    ws_path,
                    dir,
                });
            }
            if Instant::now() >= deadline {
                return Err(PeerError::StartTimeout {
                    peer: PEER,
                    timeout_secs: CHROMIUM_TIMEOUT.as_secs(),
                    log_tail: util::log_tail(&log, 20),
                });
            }
            thread::sleep(Duration::from_millis(25));
        }
    }

    /// The DevTools HTTP/WebSocket port on 127.0.0.1 (`GET /json/version` answers).
    pub fn devtools_port(&self) -> u16 {
        self.port
    }

    /// The browser's CDP WebSocket URL, `ws://127.0.0.1:PORT/devtools/browser/UUID`.
    pub fn ws_url(&self) -> String {
        format!("ws://127.0.0.1:{}{}", self.port, self.ws_path)
    }

    /// Chromium's stdout and stderr (mostly harmless D-Bus complaints).
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("chromium.log")
    }

    /// The browser's process id.
    pub fn pid(&self) -> u32 {
        self.process.id()
    }
}

fn read_active_port(path: &Path) -> Option<(u16, String)> {
    let text = fs::read_to_string(path).ok()?;
    let mut lines = text.lines();
    let port = lines.next()?.trim().parse().ok()?;
    let ws_path = lines.next()?.trim();
    ws_path
        .starts_with("/devtools/")
        .then(|| (port, ws_path.to_string()))
}

/// Runs `chromium FLAGS --dump-dom URL` in a fresh profile and returns the serialised
/// DOM (stdout). Fails after 30 s.
pub fn chromium_dump_dom(url: &str) -> Result<String> {
    let binary = binary()?;
    let dir = temp_dir()?;
    let stdout_path = dir.path().join("dom.html");
    let log = dir.path().join("chromium.log");
    // Files rather than pipes: no reader thread, no pipe-buffer deadlock.
    let out = fs::File::create(&stdout_path)
        .map_err(|e| PeerError::io(format!("creating {}", stdout_path.display()), e))?;
    let err = fs::File::create(&log)
        .map_err(|e| PeerError::io(format!("creating {}", log.display()), e))?;
    let mut process = PeerProcess::spawn(
        PEER,
        Command::new(binary)
            .args(FLAGS)
            .arg(format!(
                "--user-data-dir={}",
                dir.path().join("profile").display()
            ))
            .arg("--dump-dom")
            .env("TMPDIR", private_tmp(&dir)?)
            .arg(url)
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err)),
    )?;
    let deadline = Instant::now() + CHROMIUM_TIMEOUT;
    let status = loop {
        if let Some(status) = process.try_wait()? {
            break status;
        }
        if Instant::now() >= deadline {
            // Dropping `process` kills the whole group.
            return Err(PeerError::Timeout {
                peer: PEER,
                what: format!("--dump-dom {url}\n{}", util::log_tail(&log, 20)),
                timeout_secs: CHROMIUM_TIMEOUT.as_secs(),
            });
        }
        thread::sleep(Duration::from_millis(25));
    };
    // Reap helper processes that might outlive the browser.
    process.stop();
    if !status.success() {
        return Err(PeerError::CommandFailed {
            peer: PEER,
            command: format!("chromium --dump-dom {url}"),
            status: status.to_string(),
            output: util::log_tail(&log, 20),
        });
    }
    fs::read_to_string(&stdout_path)
        .map_err(|e| PeerError::io(format!("reading {}", stdout_path.display()), e))
}

fn binary() -> Result<PathBuf> {
    let path = PathBuf::from(BINARY);
    if path.is_file() {
        Ok(path)
    } else {
        Err(util::not_installed(PEER, BINARY, "chromium"))
    }
}

/// A `TMPDIR` inside the guard's directory: Chromium leaves `org.chromium.Chromium.*`
/// directories in `TMPDIR` when it is killed, and they must go with the guard.
fn private_tmp(dir: &TempDir) -> Result<PathBuf> {
    let tmp = dir.path().join("tmp");
    fs::create_dir_all(&tmp)
        .map_err(|e| PeerError::io(format!("creating {}", tmp.display()), e))?;
    Ok(tmp)
}

fn temp_dir() -> Result<TempDir> {
    tempfile::Builder::new()
        .prefix("kakanai-chromium-")
        .tempdir()
        .map_err(|e| PeerError::io("creating chromium temp dir".into(), e))
}
