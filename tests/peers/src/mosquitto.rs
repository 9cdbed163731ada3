//! Mosquitto MQTT broker.
//!
//! The generated configuration is:
//!
//! ```text
//! user root                      # started as root it would drop to `mosquitto`, which
//!                                # cannot read key files written by the test
//! persistence false
//! log_dest file DIR/mosquitto.log
//! log_type all
//! set_tcp_nodelay true           # as production should: else a small packet right
//!                                # after another waits for the peer's delayed ACK
//! allow_anonymous true
//! listener PORT 127.0.0.1
//! <extra lines>
//! ```
//!
//! Extra lines come after the plain listener, so they can add listeners (TLS on another
//! [`free_port`](crate::free_port)), `acl_file`, and so on. To place files (certificates,
//! ACLs) next to the configuration, use [`Mosquitto::start_with`]: its closure gets the
//! temporary directory before the broker starts and returns the extra lines.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use tempfile::TempDir;

use crate::util::{self, PeerProcess, Wait};
use crate::{PeerError, Result};

const PEER: &str = "mosquitto";

/// A running Mosquitto broker; stopped and its directory removed on drop.
#[derive(Debug)]
pub struct Mosquitto {
    // Field order matters: the process stops before the directory is removed.
    process: PeerProcess,
    port: u16,
    dir: TempDir,
}

impl Mosquitto {
    /// Starts a broker with a plain anonymous listener on `127.0.0.1:`[`port`](Self::port).
    pub fn start() -> Result<Self> {
        Self::start_with(|_| Ok(String::new()))
    }

    /// Like [`start`](Self::start), with `extra` configuration lines appended.
    pub fn start_with_config(extra: &str) -> Result<Self> {
        let extra = extra.to_string();
        Self::start_with(move |_| Ok(extra))
    }

    /// Like [`start`](Self::start), but first calls `prepare` with the broker's
    /// temporary directory (write certificates, ACL files... there, and refer to them by
    /// absolute path) and appends the configuration lines it returns.
    ///
    /// ```no_run
    /// # use kakanai_test_peers::Mosquitto;
    /// let broker = Mosquitto::start_with(|dir| {
    ///     let acl = dir.join("acl");
    ///     std::fs::write(&acl, "topic readwrite #\n")?;
    ///     Ok(format!("acl_file {}\n", acl.display()))
    /// })?;
    /// # Ok::<(), kakanai_test_peers::PeerError>(())
    /// ```
    pub fn start_with(prepare: impl FnOnce(&Path) -> std::io::Result<String>) -> Result<Self> {
        let binary = util::find_binary(PEER, "mosquitto", "mosquitto")?;
        let dir = tempfile::Builder::new()
            .prefix("kakanai-mosquitto-")
            .tempdir()
            .map_err(|e| PeerError::io("creating mosquitto temp dir".into(), e))?;
        let extra = prepare(dir.path())
            .map_err(|e| PeerError::io("preparing mosquitto directory".into(), e))?;
        let conf = dir.path().join("mosquitto.conf");
        let log = dir.path().join("mosquitto.log");

        let mut last_error = None;
        // A free port may be taken by someone else before mosquitto binds it: retry.
        for _ in 0..util::PORT_ATTEMPTS {
            let port = util::free_port();
            let text = format!(
                "user root\npersistence false\nlog_dest file {log}\nlog_type all\n\
                 set_tcp_nodelay true\n\
                 allow_anonymous true\nlistener {port} 127.0.0.1\n{extra}\n",
                log = log.display()
            );
            fs::write(&conf, text)
                .map_err(|e| PeerError::io(format!("writing {}", conf.display()), e))?;
            let (out, err) = util::log_file(&dir.path().join("mosquitto.stdout"))?;
            let mut process = PeerProcess::spawn(
                PEER,
                Command::new(&binary)
                    .arg("-c")
                    .arg(&conf)
                    .stdout(out)
                    .stderr(err),
            )?;
            match util::wait_ready(&mut process, util::START_TIMEOUT, || {
                util::port_accepts(port)
            })? {
                Wait::Ready => return Ok(Self { process, port, dir }),
                Wait::Exited(status) => {
                    last_error = Some(PeerError::Exited {
                        peer: PEER,
                        status: status.to_string(),
                        log_tail: tails(dir.path()),
                    });
                }
                Wait::TimedOut => {
                    return Err(PeerError::StartTimeout {
                        peer: PEER,
                        timeout_secs: util::START_TIMEOUT.as_secs(),
                        log_tail: tails(dir.path()),
                    })
                }
            }
        }
        Err(last_error.unwrap_or(PeerError::Unexpected {
            peer: PEER,
            message: "no start attempt was made".into(),
        }))
    }

    /// The plain listener's port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The plain listener's address, `127.0.0.1`.
    pub fn host(&self) -> &'static str {
        "127.0.0.1"
    }

    /// The broker's temporary directory (configuration, log, caller's files).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The broker's log file.
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("mosquitto.log")
    }

    /// The broker's process id.
    pub fn pid(&self) -> u32 {
        self.process.id()
    }

    /// Stops the broker (SIGTERM, as a service restart does) and keeps its directory
    /// and port for [`start_again`](Self::start_again). With the default
    /// `persistence false` it forgets every session and retained message, like a
    /// broker that crashed: clients must subscribe and announce themselves again.
    pub fn stop(&mut self) {
        self.process.stop();
    }

    /// Starts the stopped broker again with the same configuration on the same port;
    /// returns once it accepts connections.
    pub fn start_again(&mut self) -> Result<()> {
        let binary = util::find_binary(PEER, "mosquitto", "mosquitto")?;
        let (out, err) = util::log_file(&self.dir.path().join("mosquitto.stdout.again"))?;
        let mut process = PeerProcess::spawn(
            PEER,
            Command::new(&binary)
                .arg("-c")
                .arg(self.dir.path().join("mosquitto.conf"))
                .stdout(out)
                .stderr(err),
        )?;
        let port = self.port;
        match util::wait_ready(&mut process, util::START_TIMEOUT, || {
            util::port_accepts(port)
        })? {
            Wait::Ready => {
                self.process = process;
                Ok(())
            }
            Wait::Exited(status) => Err(PeerError::Exited {
                peer: PEER,
                status: status.to_string(),
                log_tail: tails(self.dir.path()),
            }),
            Wait::TimedOut => Err(PeerError::StartTimeout {
                peer: PEER,
                timeout_secs: util::START_TIMEOUT.as_secs(),
                log_tail: tails(self.dir.path()),
            }),
        }
    }

    /// Makes the broker re-read its configuration (SIGHUP): the ACL file, and the TLS
    /// listeners' certificates and CRL for new connections. Returns once the log says
    /// it has reloaded.
    pub fn reload(&self) -> Result<()> {
        let reloads = || {
            fs::read_to_string(self.log_path())
                .map(|log| log.matches("Reloading config").count())
                .unwrap_or(0)
        };
        let before = reloads();
        util::signal_pid(self.pid(), "HUP");
        let deadline = std::time::Instant::now() + util::START_TIMEOUT;
        while reloads() == before {
            if std::time::Instant::now() >= deadline {
                return Err(PeerError::Unexpected {
                    peer: PEER,
                    message: "no \"Reloading config\" in the log after SIGHUP".into(),
                });
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        Ok(())
    }
}

/// Mosquitto reports configuration errors on stderr, everything else in its log file.
fn tails(dir: &Path) -> String {
    format!(
        "{}\n{}",
        util::log_tail(&dir.join("mosquitto.stdout"), 20),
        util::log_tail(&dir.join("mosquitto.log"), 20)
    )
}
