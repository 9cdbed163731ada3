//! `ippeveprinter` (package `cups-ipp-utils`): an IPP Everywhere printer that keeps every
//! document it receives in its spool directory, so a test can read back what was printed.
//!
//! Two ways to start one:
//!
//! * [`IppPrinter::start`]: no print command. ippeveprinter then "prints" each job by
//!   sleeping 5–15 s (random), one job at a time, answering Print-Job with
//!   `server-error-busy` meanwhile; every job completes.
//! * [`IppPrinter::start_with_command`]: `-c COMMAND`. ippeveprinter runs
//!   `COMMAND SPOOLED-FILE` for each job instead of sleeping, so a job takes as long as
//!   the command. Exit status 0 completes the job; any other status aborts it
//!   (`job-state` aborted, `job-state-reasons` `aborted-by-system`). A line
//!   `STATE: +keyword` on the command's stderr adds `keyword` to the printer's
//!   `printer-state-reasons`, and `ERROR: text` sets the job's `job-state-message`. The
//!   command must be an executable file (e.g. a `#!/bin/sh` script with mode 0755, or
//!   `/bin/true`); it runs in the printer's process group, so it is stopped with it.
//!
//! Both keep the documents (`-k`) in [`IppPrinter::spool_dir`], whatever the job's
//! outcome (with a command, next to a `.prn` file holding the command's standard output,
//! which [`IppPrinter::printed_files`] skips), and share the same start-up: free port
//! with retries, readiness wait, and the bus daemons below.
//!
//! ippeveprinter exits with "Unable to initialize DNS-SD" without the D-Bus system bus and
//! `avahi-daemon`. [`IppPrinter::start`] starts both, under the lock
//! `kakanai-test-peers-dbus-avahi.lock`, only when they are not already running, and
//! **leaves them running**: they are machine-level daemons shared by every printer (and
//! by anything else on the machine), cheap to keep, and stopping them under a printer of
//! another test would break it.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::util::{self, MachineLock, PeerProcess, Wait};
use crate::{PeerError, Result};

const PEER: &str = "ippeveprinter";
const DBUS_SOCKET: &str = "/run/dbus/system_bus_socket";

/// Document formats the printer accepts.
pub const FORMATS: &str = "application/pdf,image/pwg-raster";

/// A running ippeveprinter; stopped and its directory (with the kept documents) removed on
/// drop.
#[derive(Debug)]
pub struct IppPrinter {
    process: PeerProcess,
    port: u16,
    dir: TempDir,
}

impl IppPrinter {
    /// Starts a printer called `name` (its DNS-SD service name; make it unique per test to
    /// avoid Avahi renaming) accepting [`FORMATS`] on a free port. It has no print
    /// command: each job takes 5–15 s and completes (see the module documentation).
    pub fn start(name: &str) -> Result<Self> {
        Self::launch(name, None)
    }

    /// Like [`IppPrinter::start`], but with the print command `command` (`-c COMMAND`):
    /// each job runs `command SPOOLED-FILE`; exit status 0 completes the job, any other
    /// aborts it (see the module documentation for `STATE:` / `ERROR:` lines).
    ///
    /// `command` must be an executable file and stay in place while the printer runs;
    /// otherwise this fails with [`PeerError::MissingFile`].
    pub fn start_with_command(name: &str, command: &Path) -> Result<Self> {
        let executable =
            fs::metadata(command).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0);
        if !executable {
            return Err(PeerError::MissingFile {
                peer: PEER,
                path: command.to_path_buf(),
                hint: "the print command must be an existing executable file \
                       (e.g. a #!/bin/sh script with mode 0755)"
                    .into(),
            });
        }
        Self::launch(name, Some(command))
    }

    /// The one start-up path: spool directory, `-k`, free port with retries, readiness.
    fn launch(name: &str, command: Option<&Path>) -> Result<Self> {
        let binary = util::find_binary(PEER, "ippeveprinter", "cups-ipp-utils")?;
        ensure_bus_daemons()?;
        let dir = tempfile::Builder::new()
            .prefix("kakanai-ipp-")
            .tempdir()
            .map_err(|e| PeerError::io("creating ippeveprinter temp dir".into(), e))?;
        let spool = dir.path().join("spool");
        fs::create_dir(&spool)
            .map_err(|e| PeerError::io(format!("creating {}", spool.display()), e))?;
        let log = dir.path().join("ippeveprinter.log");

        let mut last_error = None;
        // The port may be taken between free_port() and the bind; ippeveprinter then
        // exits, and we retry on another port.
        for _ in 0..util::PORT_ATTEMPTS {
            let port = util::free_port();
            let (out, err) = util::log_file(&log)?;
            let mut cmd = Command::new(&binary);
            cmd.arg("-p")
                .arg(port.to_string())
                .args(["-n", "localhost", "-d"])
                .arg(&spool)
                .args(["-f", FORMATS, "-k"]);
            if let Some(command) = command {
                cmd.arg("-c").arg(command);
            }
            cmd.arg(name).stdout(out).stderr(err);
            let mut process = PeerProcess::spawn(PEER, &mut cmd)?;
            match util::wait_ready(&mut process, util::START_TIMEOUT, || {
                util::port_accepts(port)
            })? {
                Wait::Ready => return Ok(Self { process, port, dir }),
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

    /// The printer's process id.
    pub fn pid(&self) -> u32 {
        self.process.id()
    }

    /// The printer's port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `ipp://localhost:PORT/ipp/print`.
    pub fn uri(&self) -> String {
        format!("ipp://localhost:{}/ipp/print", self.port)
    }

    /// Where ippeveprinter keeps job files (`1-untitled.pdf`, ...).
    pub fn spool_dir(&self) -> PathBuf {
        self.dir.path().join("spool")
    }

    /// The printer's log (its stdout and stderr).
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("ippeveprinter.log")
    }

    /// The documents received so far, in job order.
    ///
    /// With a print command, ippeveprinter also writes the command's standard output to
    /// `ID-NAME.prn` in the spool directory; that is not a received document and is not
    /// listed (the accepted [`FORMATS`] are spooled as `.pdf` and `.pwg`).
    pub fn printed_files(&self) -> Vec<PathBuf> {
        let mut files: Vec<(u64, PathBuf)> = fs::read_dir(self.spool_dir())
            .into_iter()
            .flatten()
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .filter(|p| p.is_file() && p.extension().is_none_or(|ext| ext != "prn"))
            .map(|p| (job_id(&p), p))
            .collect();
        files.sort();
        files.into_iter().map(|(_, p)| p).collect()
    }

    /// Waits until at least `n` documents were received; returns them all.
    pub fn wait_for_jobs(&self, n: usize, timeout: Duration) -> Result<Vec<PathBuf>> {
        let deadline = Instant::now() + timeout;
        loop {
            let files = self.printed_files();
            if files.len() >= n {
                return Ok(files);
            }
            if Instant::now() >= deadline {
                return Err(PeerError::Timeout {
                    peer: PEER,
                    what: format!("{n} printed job(s), have {}", files.len()),
                    timeout_secs: timeout.as_secs(),
                });
            }
            thread::sleep(Duration::from_millis(25));
        }
    }
}

/// The job id a spool file name starts with (`12-untitled.pdf` → 12).
fn job_id(path: &Path) -> u64 {
    path.file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.split('-').next())
        .and_then(|id| id.parse().ok())
        .unwrap_or(u64::MAX)
}

/// Starts the D-Bus system bus and avahi-daemon unless they already run. They are left
/// running on purpose (see the module documentation).
pub fn ensure_bus_daemons() -> Result<()> {
    let _lock = MachineLock::acquire("dbus-avahi")?;
    if UnixStream::connect(DBUS_SOCKET).is_err() {
        let dbus = util::find_binary(PEER, "dbus-daemon", "dbus")?;
        // A bus killed earlier leaves these behind, and dbus-daemon refuses to start
        // over an existing pid file.
        let _ = fs::remove_file("/run/dbus/pid");
        let _ = fs::remove_file(DBUS_SOCKET);
        fs::create_dir_all("/run/dbus")
            .map_err(|e| PeerError::io("creating /run/dbus".into(), e))?;
        daemonize(Command::new(dbus).args(["--system", "--fork"]))?;
        wait_until("the D-Bus system bus", || {
            UnixStream::connect(DBUS_SOCKET).is_ok()
        })?;
    }
    let avahi = util::find_binary(PEER, "avahi-daemon", "avahi-daemon")?;
    let avahi_running = || {
        Command::new(&avahi)
            .arg("--check")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if !avahi_running() {
        daemonize(Command::new(&avahi).args(["-D", "--no-drop-root"]))?;
        wait_until("avahi-daemon", avahi_running)?;
    }
    Ok(())
}

/// Runs a self-daemonising command. Its output goes to /dev/null: a daemon that kept the
/// test's stdout/stderr open would make nextest report the test as leaky.
fn daemonize(cmd: &mut Command) -> Result<()> {
    cmd.stdout(Stdio::null()).stderr(Stdio::null());
    util::run(PEER, cmd).map(|_| ())
}

fn wait_until(what: &str, mut ready: impl FnMut() -> bool) -> Result<()> {
    let deadline = Instant::now() + util::START_TIMEOUT;
    while !ready() {
        if Instant::now() >= deadline {
            return Err(PeerError::Timeout {
                peer: PEER,
                what: what.into(),
                timeout_secs: util::START_TIMEOUT.as_secs(),
            });
        }
        thread::sleep(Duration::from_millis(25));
    }
    Ok(())
}
