//! `pcscd` with the vpcd virtual reader (package `vsmartcard-vpcd`).
//!
//! The daemon always serves `/run/pcscd/pcscd.comm` (only the client library honours
//! `PCSCLITE_CSOCK_NAME`), so one pcscd runs per machine. A [`Pcscd`] guard holds the
//! cross-process lock `kakanai-test-peers-pcscd.lock` for its whole life; other starts
//! block until it is dropped. While holding the lock, any pcscd still running is a stray
//! (e.g. left by a test process that was killed) and is stopped first.
//!
//! The daemon runs as `pcscd -f -i -c DIR`, where `DIR` (in the guard's temporary
//! directory) replaces `/etc/reader.conf.d` entirely and holds only a copy of
//! `/etc/reader.conf.d/vpcd` whose `DEVICENAME` / `CHANNELID` are `0xPORT`. vpcd then
//! waits for a virtual card on `0.0.0.0:PORT` (slot 0) and `PORT + 1` (slot 1); the
//! readers are "Virtual PCD 00 00" and "Virtual PCD 00 01". A virtual card (e.g. a test's
//! emulated card, or `vicc`) connects to [`Pcscd::vpcd_port`] as a TCP client.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::util::{self, MachineLock, PeerProcess, Wait};
use crate::{PeerError, Result};

const PEER: &str = "pcscd";
const VPCD_CONF: &str = "/etc/reader.conf.d/vpcd";
const RUN_DIR: &str = "/run/pcscd";
/// The reader's FRIENDLYNAME in the vpcd configuration shipped by Debian.
const FRIENDLY_NAME: &str = "Virtual PCD";

/// A running pcscd with the vpcd reader; stopped, its directory removed and the machine
/// lock released on drop.
#[derive(Debug)]
pub struct Pcscd {
    // Drop order: stop the daemon, remove the directory, then release the lock.
    process: PeerProcess,
    port: u16,
    dir: TempDir,
    _lock: MachineLock,
}

impl Pcscd {
    /// Takes the pcscd lock (blocking while another test holds it) and starts pcscd with
    /// the vpcd reader on free ports; returns once both vpcd ports listen and the daemon
    /// reported ready.
    pub fn start() -> Result<Self> {
        let binary = util::find_binary(PEER, "pcscd", "pcscd")?;
        let template = fs::read_to_string(VPCD_CONF).map_err(|_| PeerError::MissingFile {
            peer: PEER,
            path: VPCD_CONF.into(),
            hint: "run scripts/test, which installs it (Debian package `vsmartcard-vpcd`)".into(),
        })?;
        let lock = MachineLock::acquire("pcscd")?;
        stop_stray_daemons();
        fs::create_dir_all(RUN_DIR).map_err(|e| PeerError::io(format!("creating {RUN_DIR}"), e))?;

        let dir = tempfile::Builder::new()
            .prefix("kakanai-pcscd-")
            .tempdir()
            .map_err(|e| PeerError::io("creating pcscd temp dir".into(), e))?;
        let conf_dir = dir.path().join("reader.conf.d");
        fs::create_dir(&conf_dir)
            .map_err(|e| PeerError::io(format!("creating {}", conf_dir.display()), e))?;
        let log = dir.path().join("pcscd.log");

        let mut last_error = None;
        for _ in 0..util::PORT_ATTEMPTS {
            let port = util::free_port_pair();
            let conf = conf_dir.join("vpcd");
            fs::write(&conf, vpcd_config(&template, port))
                .map_err(|e| PeerError::io(format!("writing {}", conf.display()), e))?;
            // A fresh log per attempt: "daemon ready" must come from this daemon.
            let _ = fs::remove_file(&log);
            let (out, err) = util::log_file(&log)?;
            // `-i` makes pcscd log "daemon ready" (and vpcd's bind errors) to stdout.
            let mut process = PeerProcess::spawn(
                PEER,
                Command::new(&binary)
                    .args(["-f", "-i", "-c"])
                    .arg(&conf_dir)
                    .stdout(out)
                    .stderr(err),
            )?;
            let ready = || {
                fs::read_to_string(&log).is_ok_and(|t| t.contains("daemon ready"))
                    && Path::new(RUN_DIR).join("pcscd.comm").exists()
            };
            match util::wait_ready(&mut process, util::START_TIMEOUT, ready)? {
                // vpcd binds while the readers are added, before "daemon ready"; a
                // failed bind leaves a daemon without readers, so check and retry.
                Wait::Ready if util::port_listening(port) && util::port_listening(port + 1) => {
                    return Ok(Self {
                        process,
                        port,
                        dir,
                        _lock: lock,
                    });
                }
                Wait::Ready => {
                    process.stop();
                    last_error = Some(PeerError::Unexpected {
                        peer: PEER,
                        message: format!(
                            "vpcd is not listening on ports {port}/{}\n{}",
                            port + 1,
                            util::log_tail(&log, 20)
                        ),
                    });
                }
                Wait::Exited(status) => {
                    last_error = Some(PeerError::Exited {
                        peer: PEER,
                        status: status.to_string(),
                        log_tail: util::log_tail(&log, 20),
                    });
                }
                Wait::TimedOut => {
                    return Err(PeerError::StartTimeout {
                        peer: PEER,
                        timeout_secs: util::START_TIMEOUT.as_secs(),
                        log_tail: util::log_tail(&log, 20),
                    })
                }
            }
        }
        Err(last_error.unwrap_or(PeerError::Unexpected {
            peer: PEER,
            message: "no start attempt was made".into(),
        }))
    }

    /// The TCP port a virtual card connects to for `slot` (0 or 1).
    pub fn vpcd_port(&self, slot: u8) -> u16 {
        self.port + u16::from(slot)
    }

    /// The PC/SC reader name for `slot`: "Virtual PCD 00 00" or "Virtual PCD 00 01".
    pub fn reader_name(&self, slot: u8) -> String {
        format!("{FRIENDLY_NAME} 00 {slot:02X}")
    }

    /// pcscd's log (`-i` level).
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("pcscd.log")
    }

    /// The daemon's process id.
    pub fn pid(&self) -> u32 {
        self.process.id()
    }
}

/// The vpcd configuration with its port replaced; other lines are kept as shipped.
fn vpcd_config(template: &str, port: u16) -> String {
    template
        .lines()
        .map(|line| {
            let key = line.split_whitespace().next().unwrap_or_default();
            match key {
                "DEVICENAME" => format!("DEVICENAME   /dev/null:0x{port:X}"),
                "CHANNELID" => format!("CHANNELID    0x{port:X}"),
                _ => line.to_string(),
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
        + "\n"
}

/// Stops every pcscd on the machine. Only called while holding the pcscd lock, so none
/// of them belongs to a live guard.
fn stop_stray_daemons() {
    let strays: Vec<u32> = fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == "pcscd")
        })
        .collect();
    if strays.is_empty() {
        return;
    }
    for &pid in &strays {
        util::signal_pid(pid, "TERM");
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while strays.iter().any(|&p| is_running(p)) && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(20));
    }
    for &pid in &strays {
        if is_running(pid) {
            util::signal_pid(pid, "KILL");
        }
    }
    // A killed daemon leaves its socket and pid file behind.
    for file in ["pcscd.comm", "pcscd.pid"] {
        let _ = fs::remove_file(Path::new(RUN_DIR).join(file));
    }
}

/// Alive and not a zombie (a stray's parent may never reap it).
fn is_running(pid: u32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        // The state follows the parenthesised command name.
        stat.rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z")
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn vpcd_config_moves_both_port_lines() {
        let shipped = "FRIENDLYNAME \"Virtual PCD\"\nDEVICENAME   /dev/null:0x8C7B\n\
                       LIBPATH      /usr/lib/pcsc/drivers/serial/libifdvpcd.so\n\
                       CHANNELID    0x8C7B\n";
        let conf = super::vpcd_config(shipped, 40000);
        assert!(conf.contains("DEVICENAME   /dev/null:0x9C40\n"), "{conf}");
        assert!(conf.contains("CHANNELID    0x9C40\n"), "{conf}");
        assert!(conf.contains("LIBPATH      /usr/lib/pcsc/drivers/serial/libifdvpcd.so\n"));
        assert!(!conf.contains("8C7B"));
    }
}
