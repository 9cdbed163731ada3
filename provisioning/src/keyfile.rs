//! Key files on disk: a secret in hex, readable by its owner only.
//!
//! Every secret Kakanai keeps in a file (a device's or the control plane's Ed25519
//! seed, the key that seals 個人番号) is read through here, so the same rules hold
//! everywhere: the file must not be readable by group or others, and it must hold
//! exactly the expected bytes in hex. Errors name the file, never its content.

use std::path::{Path, PathBuf};

use kakanai_protocol::SigningKey;

/// Why a key file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    /// The file cannot be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Group or others may read it.
    #[error("{path} is readable by others (mode {mode:o}); chmod 600 it")]
    Exposed {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// It does not hold `expected` bytes in hex.
    #[error("{path} does not hold {expected} bytes in hex")]
    Malformed {
        /// The file.
        path: PathBuf,
        /// The length expected.
        expected: usize,
    },
}

/// The text of a private file (a key in hex or PEM): the file mode 600 (or stricter).
pub fn read_private(path: &Path) -> Result<String, KeyFileError> {
    let read_err = |source| KeyFileError::Read {
        path: path.to_owned(),
        source,
    };
    let text = std::fs::read_to_string(path).map_err(read_err)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path)
            .map_err(read_err)?
            .permissions()
            .mode();
        if mode & 0o077 != 0 {
            return Err(KeyFileError::Exposed {
                path: path.to_owned(),
                mode: mode & 0o777,
            });
        }
    }
    Ok(text)
}

/// The secret in `path`: `len` bytes in hex, the file mode 600 (or stricter).
pub fn read_secret(path: &Path, len: usize) -> Result<Vec<u8>, KeyFileError> {
    let text = read_private(path)?;
    match hex::decode(text.trim()) {
        Ok(bytes) if bytes.len() == len => Ok(bytes),
        _ => Err(KeyFileError::Malformed {
            path: path.to_owned(),
            expected: len,
        }),
    }
}

/// The Ed25519 signing key whose 32-byte seed is in `path`.
pub fn read_signing_key(path: &Path) -> Result<SigningKey, KeyFileError> {
    let seed = read_secret(path, kakanai_protocol::keys::KEY_BYTES)?;
    SigningKey::from_seed(&seed).map_err(|_| KeyFileError::Malformed {
        path: path.to_owned(),
        expected: kakanai_protocol::keys::KEY_BYTES,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn write(dir: &Path, text: &str, mode: u32) -> PathBuf {
        let path = dir.join("key");
        std::fs::write(&path, text).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        path
    }

    #[test]
    fn only_a_private_file_with_the_right_length_is_accepted() {
        let dir = tempfile::tempdir().unwrap();
        let seed = "11".repeat(32);
        let key = read_signing_key(&write(dir.path(), &format!("{seed}\n"), 0o600)).unwrap();
        assert_eq!(key.seed(), &[0x11; 32]);
        let exposed = read_signing_key(&write(dir.path(), &seed, 0o640)).unwrap_err();
        assert!(exposed.to_string().contains("chmod 600"), "{exposed}");
        assert!(matches!(
            read_signing_key(&write(dir.path(), "abcd", 0o600)),
            Err(KeyFileError::Malformed { .. })
        ));
        assert!(matches!(
            read_signing_key(&dir.path().join("missing")),
            Err(KeyFileError::Read { .. })
        ));
        // The secret itself never appears in an error.
        let wrong = read_secret(&write(dir.path(), &seed, 0o600), 16).unwrap_err();
        assert!(!wrong.to_string().contains(&seed));
    }
}
