//! Throw-away PostgreSQL cluster.
//!
//! `initdb` refuses to run as root, so the cluster lives in a directory under `/tmp`
//! owned by user `postgres` and the server tools run through `runuser -u postgres`.
//! The superuser is `kakanai`, authentication is `trust`, the server listens on
//! `127.0.0.1:PORT` and its Unix socket is in the temporary directory (not
//! `/run/postgresql`, so clusters never collide). The server is a daemon started by
//! `pg_ctl`, not our child: [`Drop`] stops it with `pg_ctl stop -m immediate` and, should
//! that fail, kills the postmaster by the pid in `postmaster.pid`.

use std::fs;
use std::os::unix::fs::{chown, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use tempfile::TempDir;

use crate::util;
use crate::{PeerError, Result};

const PEER: &str = "postgresql";
const SUPERUSER: &str = "kakanai";

/// A running PostgreSQL server; stopped and its directory removed on drop.
#[derive(Debug)]
pub struct Postgres {
    bin: PathBuf,
    runuser: PathBuf,
    port: u16,
    dir: TempDir,
}

impl Postgres {
    /// Initialises a fresh cluster and starts it on a free port.
    pub fn start() -> Result<Self> {
        let bin = bin_dir()?;
        let runuser = util::find_binary(PEER, "runuser", "util-linux")?;
        let (uid, gid) = postgres_ids()?;
        // Under /tmp explicitly: the `postgres` user must be able to traverse every
        // parent, which a TMPDIR inside root's home would not allow.
        let dir = tempfile::Builder::new()
            .prefix("kakanai-pg-")
            .tempdir_in("/tmp")
            .map_err(|e| PeerError::io("creating postgres temp dir".into(), e))?;
        let io = |what: &str, e| PeerError::io(format!("{what} {}", dir.path().display()), e);
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755))
            .map_err(|e| io("chmod", e))?;
        chown(dir.path(), Some(uid), Some(gid)).map_err(|e| io("chown", e))?;
        let data = dir.path().join("data");
        let log = dir.path().join("postgres.log");

        util::run(
            PEER,
            Command::new(&runuser)
                .args(["-u", "postgres", "--"])
                .arg(bin.join("initdb"))
                .arg("-D")
                .arg(&data)
                .args(["-A", "trust", "-U", SUPERUSER, "-E", "UTF8", "--no-sync"]),
        )?;

        let mut last_error = None;
        // pg_ctl fails when the port was taken between free_port() and the bind: retry.
        for _ in 0..util::PORT_ATTEMPTS {
            let port = util::free_port();
            let options = format!(
                "-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
                dir.path().display()
            );
            let started = util::run(
                PEER,
                Command::new(&runuser)
                    .args(["-u", "postgres", "--"])
                    .arg(bin.join("pg_ctl"))
                    .arg("-D")
                    .arg(&data)
                    .arg("-o")
                    .arg(&options)
                    .arg("-l")
                    .arg(&log)
                    .args(["-w", "-t", "30", "start"]),
            );
            match started {
                Ok(_) => {
                    return Ok(Self {
                        bin: bin.clone(),
                        runuser,
                        port,
                        dir,
                    })
                }
                Err(PeerError::CommandFailed { status, .. }) => {
                    // Make sure a half-started server does not survive the retry.
                    stop_server(&bin, &runuser, &data);
                    last_error = Some(PeerError::Exited {
                        peer: PEER,
                        status,
                        log_tail: util::log_tail(&log, 20),
                    });
                }
                Err(e) => return Err(e),
            }
        }
        Err(last_error.unwrap_or(PeerError::Unexpected {
            peer: PEER,
            message: "no start attempt was made".into(),
        }))
    }

    /// The server's TCP port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `127.0.0.1`.
    pub fn host(&self) -> &'static str {
        "127.0.0.1"
    }

    /// `postgres://kakanai@127.0.0.1:PORT/postgres`.
    pub fn url(&self) -> String {
        self.url_for("postgres")
    }

    /// The URL of database `db` on this server.
    pub fn url_for(&self, db: &str) -> String {
        format!("postgres://{SUPERUSER}@127.0.0.1:{}/{db}", self.port)
    }

    /// The directory holding the Unix socket (for `host=` in libpq strings).
    pub fn socket_dir(&self) -> &Path {
        self.dir.path()
    }

    /// The server's log file.
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("postgres.log")
    }

    /// Creates database `name` (letters, digits and `_` only, so no quoting trouble).
    pub fn create_database(&self, name: &str) -> Result<()> {
        let valid = !name.is_empty()
            && name.len() <= 63
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid {
            return Err(PeerError::Unexpected {
                peer: PEER,
                message: format!("invalid database name {name:?} (use [A-Za-z0-9_]{{1,63}})"),
            });
        }
        self.psql("postgres", &format!("CREATE DATABASE \"{name}\""))
            .map(|_| ())
    }

    /// Runs `sql` with `psql` in database `db` and returns the unaligned, tuples-only
    /// output (`psql -tA`), e.g. `"2\n"` for `select 1+1`.
    pub fn psql(&self, db: &str, sql: &str) -> Result<String> {
        let psql = self.bin.join("psql");
        util::run(
            PEER,
            Command::new(psql)
                .args([
                    "-X",
                    "-q",
                    "-t",
                    "-A",
                    "-v",
                    "ON_ERROR_STOP=1",
                    "-h",
                    "127.0.0.1",
                ])
                .arg("-p")
                .arg(self.port.to_string())
                .args(["-U", SUPERUSER, "-d", db, "-c", sql]),
        )
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let data = self.dir.path().join("data");
        stop_server(&self.bin, &self.runuser, &data);
        // `dir` (a TempDir) is removed after this, as root.
    }
}

/// `pg_ctl stop -m immediate`, falling back to SIGKILL of the postmaster.
fn stop_server(bin: &Path, runuser: &Path, data: &Path) {
    let pid_file = data.join("postmaster.pid");
    let pid = fs::read_to_string(&pid_file)
        .ok()
        .and_then(|t| t.lines().next().and_then(|l| l.trim().parse::<u32>().ok()));
    let Some(pid) = pid else {
        return; // Not running.
    };
    let stopped = Command::new(runuser)
        .args(["-u", "postgres", "--"])
        .arg(bin.join("pg_ctl"))
        .arg("-D")
        .arg(data)
        .args(["-m", "immediate", "-w", "-t", "10", "stop"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !stopped {
        util::signal_pid(pid, "KILL");
    }
    // The postmaster is not our child (pg_ctl daemonises it), so nothing to reap; wait
    // until it is gone so the port is free when the guard's drop returns.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while util::pid_alive(pid) && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

/// The newest `/usr/lib/postgresql/*/bin` with an `initdb` in it.
fn bin_dir() -> Result<PathBuf> {
    let root = Path::new("/usr/lib/postgresql");
    let entries =
        fs::read_dir(root).map_err(|_| util::not_installed(PEER, "initdb", "postgresql"))?;
    entries
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let version: u32 = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").is_file().then_some((version, bin))
        })
        .max_by_key(|(version, _)| *version)
        .map(|(_, bin)| bin)
        .ok_or_else(|| util::not_installed(PEER, "initdb", "postgresql"))
}

/// Uid and gid of user `postgres` (from `/etc/passwd`; the package creates the user).
fn postgres_ids() -> Result<(u32, u32)> {
    let passwd = fs::read_to_string("/etc/passwd")
        .map_err(|e| PeerError::io("reading /etc/passwd".into(), e))?;
    passwd
        .lines()
        .find_map(|line| {
            let f: Vec<&str> = line.split(':').collect();
            if f.len() > 3 && f[0] == "postgres" {
                Some((f[2].parse().ok()?, f[3].parse().ok()?))
            } else {
                None
            }
        })
        .ok_or_else(|| util::not_installed(PEER, "user postgres", "postgresql"))
}
