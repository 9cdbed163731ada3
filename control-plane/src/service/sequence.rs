//! The control plane's own sequence numbers (what it signs into `seq`), kept in a
//! small file in the data directory.
//!
//! The store has no table for them, and they are per instance anyway: each instance
//! signs with its own key (see [`super::config`]), so each has its own counter.
//! The file holds the highest reserved number in decimal; it is replaced atomically
//! (write a temporary file, fsync it, rename, fsync the directory), once per block of
//! numbers, so a power cut can skip numbers but never hand one out twice.

use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use kakanai_protocol::sequence::SequenceStore;
use kakanai_protocol::ProtocolError;

/// A [`SequenceStore`] in one file.
#[derive(Debug, Clone)]
pub struct FileSequenceStore {
    path: PathBuf,
}

impl FileSequenceStore {
    /// The counter at `path` (created on the first reservation).
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into() }
    }

    /// Where the counter lives.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

fn err(what: &str, e: std::io::Error) -> ProtocolError {
    ProtocolError::Sequence(format!("{what}: {e}"))
}

impl SequenceStore for FileSequenceStore {
    fn load_reserved(&mut self) -> Result<u64, ProtocolError> {
        match fs::read_to_string(&self.path) {
            Ok(text) => text.trim().parse().map_err(|_| {
                ProtocolError::Sequence(format!(
                    "{} does not hold a sequence number",
                    self.path.display()
                ))
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0),
            Err(e) => Err(err("reading the sequence file", e)),
        }
    }

    fn store_reserved(&mut self, upto: u64) -> Result<(), ProtocolError> {
        let tmp = self.path.with_extension("tmp");
        {
            let mut f = fs::File::create(&tmp).map_err(|e| err("creating the sequence file", e))?;
            writeln!(f, "{upto}").map_err(|e| err("writing the sequence file", e))?;
            f.sync_all()
                .map_err(|e| err("syncing the sequence file", e))?;
        }
        fs::rename(&tmp, &self.path).map_err(|e| err("replacing the sequence file", e))?;
        // The rename is durable only once the directory entry is.
        if let Some(dir) = self.path.parent() {
            let dir = if dir.as_os_str().is_empty() {
                Path::new(".")
            } else {
                dir
            };
            fs::File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(|e| err("syncing the data directory", e))?;
        }
        Ok(())
    }
}
