//! Shared plumbing: free ports, binary lookup, cross-process locks, readiness polling and
//! the process-group guard every peer uses to stop its process.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use crate::PeerError;

/// How long a start function waits for its peer to become ready.
pub(crate) const START_TIMEOUT: Duration = Duration::from_secs(10);

/// How many different ports a start function tries when the peer cannot bind.
pub(crate) const PORT_ATTEMPTS: usize = 4;

/// Returns a TCP port on 127.0.0.1 that was free a moment ago.
///
/// The port is released before returning, so another process may take it before the
/// peer binds it; the start functions therefore retry on a new port when the peer dies
/// early.
pub fn free_port() -> u16 {
    // Binding port 0 practically never fails on loopback; if it does, fall back to a
    // port in the dynamic range and let the caller's retry logic deal with a collision.
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(49_152)
}

/// Returns a port `p` such that `p` and `p + 1` were both free a moment ago (vpcd
/// listens on two consecutive ports, one per slot).
pub fn free_port_pair() -> u16 {
    for _ in 0..100 {
        let p = free_port();
        if p == u16::MAX {
            continue;
        }
        // Both must bind at once, on all interfaces because vpcd binds 0.0.0.0.
        let a = TcpListener::bind((Ipv4Addr::UNSPECIFIED, p));
        let b = TcpListener::bind((Ipv4Addr::UNSPECIFIED, p + 1));
        if a.is_ok() && b.is_ok() {
            return p;
        }
    }
    free_port()
}

/// Finds `name` on `PATH`, then in the sbin directories (daemons live there and a test
/// runner's `PATH` does not always include them).
pub(crate) fn find_binary(
    peer: &'static str,
    name: &str,
    package: &str,
) -> Result<PathBuf, PeerError> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let extra = ["/usr/local/sbin", "/usr/sbin", "/sbin", "/usr/bin", "/bin"];
    std::env::split_paths(&path)
        .chain(extra.iter().map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
        .ok_or_else(|| not_installed(peer, name, package))
}

/// The error for a missing binary: tests must fail loudly, never skip.
pub(crate) fn not_installed(peer: &'static str, name: &str, package: &str) -> PeerError {
    PeerError::NotInstalled {
        peer,
        hint: format!(
            "{name} not found on PATH or in /usr/sbin; run scripts/test, which installs it \
             (Debian package `{package}`)"
        ),
    }
}

/// An exclusive lock on `temp_dir()/kakanai-test-peers-NAME.lock`, held until dropped.
///
/// `flock` locks belong to the open file description, so this excludes other threads of
/// the same process (plain `cargo test`) as well as other processes (nextest).
#[derive(Debug)]
pub(crate) struct MachineLock {
    _file: File,
}

impl MachineLock {
    pub(crate) fn acquire(name: &str) -> Result<Self, PeerError> {
        let path = std::env::temp_dir().join(format!("kakanai-test-peers-{name}.lock"));
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| PeerError::io(format!("opening lock file {}", path.display()), e))?;
        file.lock()
            .map_err(|e| PeerError::io(format!("locking {}", path.display()), e))?;
        Ok(Self { _file: file })
    }
}

/// The last `lines` lines of a log file (or a note that it could not be read), for
/// error messages.
pub(crate) fn log_tail(path: &Path, lines: usize) -> String {
    let mut text = String::new();
    let read = File::open(path).and_then(|mut f| {
        // Only the end matters; skip the start of big logs.
        let len = f.metadata()?.len();
        f.seek(SeekFrom::Start(len.saturating_sub(16 * 1024)))?;
        let mut bytes = Vec::new();
        f.read_to_end(&mut bytes)?;
        text = String::from_utf8_lossy(&bytes).into_owned();
        Ok(())
    });
    if let Err(e) = read {
        return format!("(cannot read {}: {e})", path.display());
    }
    let all: Vec<&str> = text.lines().collect();
    let start = all.len().saturating_sub(lines);
    format!(
        "--- last lines of {} ---\n{}",
        path.display(),
        all[start..].join("\n")
    )
}

/// True when something accepts TCP connections on 127.0.0.1:`port`.
pub fn port_accepts(port: u16) -> bool {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
}

/// True when a socket is in LISTEN state on `port` (any address), read from
/// `/proc/net/tcp{,6}`. Used where connecting would disturb the peer (a connection to a
/// vpcd port is taken as a card insertion).
pub(crate) fn port_listening(port: u16) -> bool {
    let needle = format!(":{port:04X}");
    ["/proc/net/tcp", "/proc/net/tcp6"].iter().any(|file| {
        std::fs::read_to_string(file).is_ok_and(|text| {
            text.lines().skip(1).any(|line| {
                let mut cols = line.split_whitespace();
                let local = cols.nth(1).unwrap_or_default();
                let state = cols.nth(1).unwrap_or_default();
                local.ends_with(&needle) && state == "0A"
            })
        })
    })
}

/// Outcome of waiting for a peer to become ready.
pub(crate) enum Wait {
    Ready,
    /// The process exited before it was ready (typically: port already taken).
    Exited(ExitStatus),
    TimedOut,
}

/// Polls `ready` until it holds, the process exits, or `timeout` passes. The process
/// must still be alive after `ready` holds: otherwise another process may own the port.
pub(crate) fn wait_ready(
    proc: &mut PeerProcess,
    timeout: Duration,
    mut ready: impl FnMut() -> bool,
) -> Result<Wait, PeerError> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = proc.try_wait()? {
            return Ok(Wait::Exited(status));
        }
        if ready() {
            if let Some(status) = proc.try_wait()? {
                return Ok(Wait::Exited(status));
            }
            return Ok(Wait::Ready);
        }
        if Instant::now() >= deadline {
            return Ok(Wait::TimedOut);
        }
        thread::sleep(Duration::from_millis(25));
    }
}

/// Opens `path` for appending, to collect a peer's stdout and stderr.
pub(crate) fn log_file(path: &Path) -> Result<(Stdio, Stdio), PeerError> {
    let open = || {
        OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| PeerError::io(format!("opening log {}", path.display()), e))
    };
    Ok((Stdio::from(open()?), Stdio::from(open()?)))
}

/// Sends `signal` (e.g. "TERM") to process group `pgid` with the `kill` utility: the
/// crate forbids unsafe code, so it cannot call `kill(2)` itself.
pub(crate) fn signal_group(pgid: u32, signal: &str) {
    signal_target(&format!("-{pgid}"), signal);
}

/// Sends `signal` to a single process.
pub(crate) fn signal_pid(pid: u32, signal: &str) {
    signal_target(&pid.to_string(), signal);
}

fn signal_target(target: &str, signal: &str) {
    // Errors (no such process) are expected when the target is already gone.
    let _ = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg("--")
        .arg(target)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// True while `/proc/PID` exists (including zombies).
pub(crate) fn pid_alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// A child process started in its own process group, stopped when dropped: SIGTERM to
/// the group (so daemons clean up, e.g. pcscd removes its socket), SIGKILL after a grace
/// period, then `wait` so no zombie is left. Group signals also reach grandchildren
/// (Chromium's renderers and zygotes).
#[derive(Debug)]
pub(crate) struct PeerProcess {
    child: Child,
    exited: bool,
}

impl PeerProcess {
    /// Spawns `cmd` as the leader of a new process group.
    pub(crate) fn spawn(peer: &'static str, cmd: &mut Command) -> Result<Self, PeerError> {
        cmd.process_group(0).stdin(Stdio::null());
        let child = cmd
            .spawn()
            .map_err(|e| PeerError::io(format!("spawning {peer}: {cmd:?}"), e))?;
        Ok(Self {
            child,
            exited: false,
        })
    }

    pub(crate) fn id(&self) -> u32 {
        self.child.id()
    }

    pub(crate) fn try_wait(&mut self) -> Result<Option<ExitStatus>, PeerError> {
        let status = self
            .child
            .try_wait()
            .map_err(|e| PeerError::io("waiting for peer process".to_string(), e))?;
        if status.is_some() {
            self.exited = true;
        }
        Ok(status)
    }

    /// Stops the group as described on the type; idempotent.
    pub(crate) fn stop(&mut self) {
        let pgid = self.child.id();
        if !self.exited {
            signal_group(pgid, "TERM");
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                if matches!(self.child.try_wait(), Ok(Some(_))) {
                    self.exited = true;
                    break;
                }
                thread::sleep(Duration::from_millis(10));
            }
            if !self.exited {
                let _ = self.child.kill();
                let _ = self.child.wait();
                self.exited = true;
            }
        }
        // Leftover group members (children that ignored SIGTERM) die here.
        signal_group(pgid, "KILL");
    }
}

impl Drop for PeerProcess {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Runs a helper command to completion; its stdout on success, a
/// [`PeerError::CommandFailed`] with stdout and stderr otherwise.
pub(crate) fn run(peer: &'static str, cmd: &mut Command) -> Result<String, PeerError> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| PeerError::io(format!("running {cmd:?}"), e))?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if out.status.success() {
        return Ok(stdout);
    }
    Err(PeerError::CommandFailed {
        peer,
        command: format!("{cmd:?}"),
        status: out.status.to_string(),
        output: format!("{stdout}{}", String::from_utf8_lossy(&out.stderr)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_binary_is_a_loud_error() {
        let err = find_binary("demo", "kakanai-no-such-binary", "demo-pkg").unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, PeerError::NotInstalled { peer: "demo", .. }));
        assert!(
            text.contains("kakanai-no-such-binary not found on PATH"),
            "{text}"
        );
        assert!(
            text.contains("run scripts/test, which installs it"),
            "{text}"
        );
        assert!(text.contains("`demo-pkg`"), "{text}");
    }

    #[test]
    fn free_port_pair_gives_two_bindable_ports() {
        let p = free_port_pair();
        let a = TcpListener::bind((Ipv4Addr::LOCALHOST, p));
        let b = TcpListener::bind((Ipv4Addr::LOCALHOST, p + 1));
        assert!(a.is_ok() && b.is_ok());
    }

    #[test]
    fn log_tail_keeps_the_last_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        std::fs::write(&path, "a\nb\nc\n").unwrap();
        assert!(log_tail(&path, 2).ends_with("\nb\nc"));
        assert!(log_tail(&dir.path().join("missing"), 2).contains("cannot read"));
    }
}
