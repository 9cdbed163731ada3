//! A 2-D code scanner in USB-serial mode, as the appliance sees one: a pseudo-terminal
//! whose slave side is reachable through a symlink (like the udev symlink of a real
//! scanner, e.g. `/dev/kakanai-scanner`). [`PtyScanner::scan`] types a code followed by
//! CR LF on the master side, as a real scanner configured with that suffix does.
//!
//! Scanned codes may be personal data on other forms: nothing here logs them.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use nix::fcntl::OFlag;
use nix::pty::{grantpt, posix_openpt, ptsname_r, unlockpt, PtyMaster};

use crate::{PeerError, Result};

const PEER: &str = "pty scanner";

/// A plugged-in scanner; unplugged (link removed, pty hung up) when dropped.
#[derive(Debug)]
pub struct PtyScanner {
    master: PtyMaster,
    link: PathBuf,
}

fn io(what: &str, e: impl std::fmt::Display) -> PeerError {
    PeerError::io(
        format!("{PEER}: {what}"),
        std::io::Error::other(e.to_string()),
    )
}

impl PtyScanner {
    /// A new pty whose slave `link` points at (replacing a stale link there).
    pub fn plug_in(link: &Path) -> Result<Self> {
        let master = posix_openpt(OFlag::O_RDWR | OFlag::O_NOCTTY).map_err(|e| io("openpt", e))?;
        grantpt(&master).map_err(|e| io("grantpt", e))?;
        unlockpt(&master).map_err(|e| io("unlockpt", e))?;
        let slave = ptsname_r(&master).map_err(|e| io("ptsname", e))?;
        let _ = std::fs::remove_file(link);
        std::os::unix::fs::symlink(&slave, link).map_err(|e| io("symlink", e))?;
        Ok(Self {
            master,
            link: link.to_owned(),
        })
    }

    /// Where the appliance opens it.
    pub fn path(&self) -> &Path {
        &self.link
    }

    /// Types `code` and CR LF, as one scan.
    pub fn scan(&mut self, code: &str) -> Result<()> {
        let mut line = code.as_bytes().to_vec();
        line.extend_from_slice(b"\r\n");
        self.master
            .write_all(&line)
            .and_then(|()| self.master.flush())
            .map_err(|e| io("write", e))
    }
}

impl Drop for PtyScanner {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.link);
    }
}
