//! Real test peers for every Kakanai crate's tests: this crate is the one place that
//! starts and stops them. Use it as a dev-dependency.
//!
//! Each peer runs as a real process, on a free port, in its own temporary directory.
//! Its guard stops it when dropped (SIGTERM to its process group, SIGKILL after a grace
//! period, then `wait`), and removes the temporary directory. A missing binary is an
//! error ([`PeerError::NotInstalled`]) whose message says how to install it: tests must
//! fail loudly, never skip.
//!
//! | module | guard | peer |
//! |---|---|---|
//! | [`mosquitto`] | [`Mosquitto`] | MQTT broker on `127.0.0.1:PORT`, anonymous, extra config lines and files |
//! | [`postgres`] | [`Postgres`] | throw-away PostgreSQL cluster (`initdb` + `pg_ctl`), superuser `kakanai`, trust auth |
//! | [`pcscd`] | [`Pcscd`] | `pcscd` with the vpcd virtual reader on free ports (two slots) |
//! | [`ipp`] | [`IppPrinter`] | `ippeveprinter` IPP Everywhere printer that keeps printed documents; [`IppPrinter::start`] simulates 5–15 s per job, [`IppPrinter::start_with_command`] runs a print command (`-c`) whose exit status completes or aborts each job |
//! | [`chromium`] | [`Chromium`], [`chromium_dump_dom`] | headless Chromium with a DevTools port |
//! | [`proxy`] | [`TcpProxy`] | fault-injecting TCP proxy: network cut, half-open connection |
//! | [`tablet`] | [`Tablet`] | a page of headless Chromium on a 10-inch tablet's viewport, counting taps and keystrokes |
//! | [`scanner`] | [`PtyScanner`] | a serial 2-D code scanner: a pty behind a symlink, codes typed with CR LF |
//! | [`util`] | [`free_port`], [`free_port_pair`], [`port_accepts`] | shared plumbing |
//!
//! # Parallel tests
//!
//! Tests run both under cargo-nextest (one process per test) and plain `cargo test`
//! (threads). Peers that are per-instance (Mosquitto, PostgreSQL, ippeveprinter,
//! Chromium) simply run side by side on different ports. Machine-global resources are
//! guarded by exclusive `flock` locks on files `kakanai-test-peers-*.lock` under
//! [`std::env::temp_dir`]:
//!
//! * `pcscd` always serves `/run/pcscd/pcscd.comm`, so only one can run per machine; a
//!   [`Pcscd`] guard holds the lock for its whole life and other starts wait for it.
//! * [`IppPrinter`] needs the D-Bus system bus and `avahi-daemon`. They are started
//!   under a lock only when not already running and are **intentionally left running**
//!   afterwards (they are machine-level daemons, shared by all printers and cheap).
//!
//! # Runs as root
//!
//! The project's test machines (Debian 12, root, no systemd) are the target: Mosquitto
//! gets `user root`, PostgreSQL is run through `runuser -u postgres`, Chromium gets
//! `--no-sandbox`.

#![forbid(unsafe_code)]

pub mod chromium;
pub mod ipp;
pub mod mosquitto;
pub mod pcscd;
pub mod postgres;
pub mod proxy;
pub mod scanner;
pub mod tablet;
pub mod util;

use std::io;
use std::path::PathBuf;

pub use chromium::{chromium_dump_dom, Chromium};
pub use ipp::IppPrinter;
pub use mosquitto::Mosquitto;
pub use pcscd::Pcscd;
pub use postgres::Postgres;
pub use proxy::TcpProxy;
pub use scanner::PtyScanner;
pub use tablet::Tablet;
pub use util::{free_port, free_port_pair, port_accepts};

/// Why a peer could not be started or used.
#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    /// The peer's binary is missing. The hint says how to install it.
    #[error("{peer} is not installed: {hint}")]
    NotInstalled {
        /// Which peer.
        peer: &'static str,
        /// What to do about it.
        hint: String,
    },
    /// An I/O operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The peer did not become ready in time.
    #[error("{peer} did not become ready within {timeout_secs} s\n{log_tail}")]
    StartTimeout {
        /// Which peer.
        peer: &'static str,
        /// How long we waited.
        timeout_secs: u64,
        /// The end of the peer's log.
        log_tail: String,
    },
    /// The peer exited while starting (after all port retries).
    #[error("{peer} exited during start-up ({status})\n{log_tail}")]
    Exited {
        /// Which peer.
        peer: &'static str,
        /// Its exit status.
        status: String,
        /// The end of the peer's log.
        log_tail: String,
    },
    /// A helper command (initdb, psql, ...) failed.
    #[error("{peer}: `{command}` failed ({status})\n{output}")]
    CommandFailed {
        /// Which peer.
        peer: &'static str,
        /// The command line.
        command: String,
        /// Its exit status.
        status: String,
        /// Its output (stdout and stderr).
        output: String,
    },
    /// Waiting for something other than start-up timed out (e.g. printed jobs).
    #[error("{peer}: timed out after {timeout_secs} s waiting for {what}")]
    Timeout {
        /// Which peer.
        peer: &'static str,
        /// What we waited for.
        what: String,
        /// How long we waited.
        timeout_secs: u64,
    },
    /// The peer produced something we cannot interpret.
    #[error("{peer}: {message}")]
    Unexpected {
        /// Which peer.
        peer: &'static str,
        /// What was wrong.
        message: String,
    },
    /// A file the peer needs is missing (e.g. the vpcd reader configuration).
    #[error("{peer}: missing {}: {hint}", path.display())]
    MissingFile {
        /// Which peer.
        peer: &'static str,
        /// The missing file.
        path: PathBuf,
        /// What to do about it.
        hint: String,
    },
}

impl PeerError {
    pub(crate) fn io(context: String, source: io::Error) -> Self {
        Self::Io { context, source }
    }
}

/// Shorthand used throughout the crate.
pub type Result<T, E = PeerError> = std::result::Result<T, E>;
