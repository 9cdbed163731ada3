//! Password hashing (argon2id, PHC strings) and the password policy.
//!
//! Parameters: OWASP's recommendation for argon2id, m = 19 MiB (19 456 KiB), t = 2,
//! p = 1, a 16-byte random salt and a 32-byte output, stored as a PHC string
//! (`$argon2id$v=19$m=19456,t=2,p=1$salt$hash`) so the parameters travel with each
//! hash: verification reads them from the string, and a hash made with older
//! parameters still verifies (and is re-hashed at the next successful login).
//!
//! Cost: one hash or verification is a fixed amount of memory-hard work, in the order
//! of a few tens of milliseconds on one core of a current x86-64 server in a release
//! build (several times more in a debug build, which is why the tests use
//! [`HashParams::INSECURE_FOR_TESTS`]). With ~300 staff (N1) logging in mostly at
//! opening time that is negligible; the cost is there to slow down guessing against a
//! stolen database. The work is CPU-bound and blocking, so callers run it with
//! `tokio::task::spawn_blocking`, never on the async runtime's threads.
//!
//! Verification is constant-time in the comparison of the hash (the `argon2` crate
//! compares outputs with `subtle`-style constant-time equality).

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use ring::rand::{SecureRandom, SystemRandom};

pub use kakanai_protocol::staff::Secret;

/// argon2id cost parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HashParams {
    /// Memory in KiB.
    pub memory_kib: u32,
    /// Passes over the memory.
    pub iterations: u32,
    /// Lanes.
    pub parallelism: u32,
}

impl HashParams {
    /// OWASP Password Storage Cheat Sheet: argon2id, m = 19 MiB, t = 2, p = 1.
    pub const OWASP: Self = Self {
        memory_kib: 19 * 1024,
        iterations: 2,
        parallelism: 1,
    };

    /// The smallest parameters argon2 accepts: for tests only, where a debug build
    /// would otherwise spend seconds per login.
    pub const INSECURE_FOR_TESTS: Self = Self {
        memory_kib: 8,
        iterations: 1,
        parallelism: 1,
    };

    fn argon2(self) -> Result<Argon2<'static>, HashError> {
        let params = Params::new(self.memory_kib, self.iterations, self.parallelism, None)
            .map_err(|_| HashError::Params)?;
        Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
    }
}

impl Default for HashParams {
    fn default() -> Self {
        Self::OWASP
    }
}

/// Hashing failed (bad parameters or no randomness): never because of the password.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HashError {
    /// The argon2 parameters are out of range.
    #[error("argon2 parameters out of range")]
    Params,
    /// The system random generator failed.
    #[error("no randomness for the salt")]
    Random,
    /// The argon2 computation failed.
    #[error("argon2 failed")]
    Argon2,
}

/// Hashes `password` with a fresh random salt; returns the PHC string. Blocking.
pub fn hash_password(
    params: HashParams,
    rng: &SystemRandom,
    password: &str,
) -> Result<String, HashError> {
    let mut salt = [0u8; 16];
    rng.fill(&mut salt).map_err(|_| HashError::Random)?;
    let salt = SaltString::encode_b64(&salt).map_err(|_| HashError::Argon2)?;
    let hash = params
        .argon2()?
        .hash_password(password.as_bytes(), &salt)
        .map_err(|_| HashError::Argon2)?;
    Ok(hash.to_string())
}

/// Whether `password` matches the PHC string. A malformed string matches nothing.
/// Blocking.
pub fn verify_password(phc: &str, password: &str) -> bool {
    let Ok(parsed) = PasswordHash::new(phc) else {
        return false;
    };
    // Only argon2id is accepted: a stored hash of another algorithm would mean the
    // row was written by something else.
    if parsed.algorithm != Algorithm::Argon2id.ident() {
        return false;
    }
    // The parameters come from the PHC string, not from `Argon2::default()`.
    Argon2::default()
        .verify_password(password.as_bytes(), &parsed)
        .is_ok()
}

/// Whether the PHC string was made with other parameters than `params` (so it should
/// be re-hashed after the next successful login).
pub fn needs_rehash(phc: &str, params: HashParams) -> bool {
    let Ok(parsed) = PasswordHash::new(phc) else {
        return true;
    };
    let Ok(stored) = Params::try_from(&parsed) else {
        return true;
    };
    stored.m_cost() != params.memory_kib
        || stored.t_cost() != params.iterations
        || stored.p_cost() != params.parallelism
        || parsed.algorithm != Algorithm::Argon2id.ident()
}

/// Passwords too common to allow (lower-cased comparison). Short on purpose: the
/// length rule already removes most lists' entries; these are the long ones people
/// still pick, plus Japanese-keyboard favourites.
const COMMON_PASSWORDS: &[&str] = &[
    "1234567890",
    "12345678910",
    "0123456789",
    "0987654321",
    "1111111111",
    "1q2w3e4r5t",
    "qwertyuiop",
    "asdfghjkl;",
    "password",
    "password1",
    "password12",
    "password123",
    "password1234",
    "passw0rd12",
    "p@ssw0rd12",
    "p@ssword123",
    "iloveyou12",
    "administrator",
    "admin12345",
    "welcome123",
    "changeme123",
    "letmein123",
    "qwerty1234",
    "qwerty12345",
    "abcdefghij",
    "abcd123456",
    "a123456789",
    "abc1234567",
    "zaq12wsxcde",
    "1qaz2wsx3edc",
    "kakanai123",
    "kakanai1234",
    "yakusho123",
    "shiyakusho1",
    "shiyakusho123",
];

/// Rules a new password must meet (N5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasswordPolicy {
    /// Minimum length in characters (not bytes: a full-width character counts once).
    pub min_chars: usize,
    /// Maximum length in bytes: bounds the work one request can cause.
    pub max_bytes: usize,
}

impl Default for PasswordPolicy {
    fn default() -> Self {
        Self {
            min_chars: 10,
            max_bytes: 256,
        }
    }
}

/// Why a new password is refused. Messages are for staff, in Japanese, and never
/// repeat the password.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyViolation {
    /// Too short.
    #[error("パスワードは{0}文字以上にしてください")]
    TooShort(usize),
    /// Too long.
    #[error("パスワードが長すぎます（{0}バイトまで）")]
    TooLong(usize),
    /// Equal to the login id.
    #[error("ログインIDと同じパスワードは使えません")]
    SameAsLoginId,
    /// In the list of common passwords, or one character repeated.
    #[error("推測されやすいパスワードは使えません")]
    TooCommon,
    /// The same as the current password.
    #[error("現在と同じパスワードは使えません")]
    Unchanged,
    /// Holds control characters (which some terminals and forms cannot type back).
    #[error("パスワードに制御文字は使えません")]
    ControlCharacter,
}

impl PasswordPolicy {
    /// Checks a new password for `login_id`.
    pub fn check(&self, login_id: &str, password: &str) -> Result<(), PolicyViolation> {
        if password.len() > self.max_bytes {
            return Err(PolicyViolation::TooLong(self.max_bytes));
        }
        if password.chars().any(char::is_control) {
            return Err(PolicyViolation::ControlCharacter);
        }
        if password.chars().count() < self.min_chars {
            return Err(PolicyViolation::TooShort(self.min_chars));
        }
        let lower = password.to_lowercase();
        if lower == login_id.to_lowercase() {
            return Err(PolicyViolation::SameAsLoginId);
        }
        let mut chars = password.chars();
        let first = chars.next();
        if COMMON_PASSWORDS.contains(&lower.as_str()) || chars.all(|c| Some(c) == first) {
            return Err(PolicyViolation::TooCommon);
        }
        Ok(())
    }
}

/// Characters of generated initial passwords: no 0/O, 1/l/I, which are misread on
/// paper handed to a new member of staff.
const GENERATED_ALPHABET: &[u8] = b"abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";

/// A random initial password of `len` characters (≈ 5.8 bits each).
pub fn generate_password(rng: &SystemRandom, len: usize) -> Result<Secret, HashError> {
    let mut out = String::with_capacity(len);
    let mut buf = [0u8; 1];
    while out.len() < len {
        rng.fill(&mut buf).map_err(|_| HashError::Random)?;
        // Rejection sampling keeps every character equally likely.
        let limit = 256 - 256 % GENERATED_ALPHABET.len();
        let b = usize::from(buf[0]);
        if b < limit {
            if let Some(&c) = GENERATED_ALPHABET.get(b % GENERATED_ALPHABET.len()) {
                out.push(char::from(c));
            }
        }
    }
    Ok(Secret::new(out))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn hash_round_trip_and_phc_format() {
        let rng = SystemRandom::new();
        let phc = hash_password(HashParams::INSECURE_FOR_TESTS, &rng, "correct horse").unwrap();
        assert!(phc.starts_with("$argon2id$v=19$m=8,t=1,p=1$"), "{phc}");
        assert!(verify_password(&phc, "correct horse"));
        assert!(!verify_password(&phc, "correct horsf"));
        assert!(!verify_password("not a phc", "x"));
        assert!(!needs_rehash(&phc, HashParams::INSECURE_FOR_TESTS));
        assert!(needs_rehash(&phc, HashParams::OWASP));
    }

    #[test]
    fn policy() {
        let p = PasswordPolicy::default();
        assert_eq!(
            p.check("tanaka", "short"),
            Err(PolicyViolation::TooShort(10))
        );
        assert_eq!(
            p.check("tanaka-0001", "TANAKA-0001"),
            Err(PolicyViolation::SameAsLoginId)
        );
        assert_eq!(p.check("x", "Password123"), Err(PolicyViolation::TooCommon));
        assert_eq!(
            p.check("x", "aaaaaaaaaaaa"),
            Err(PolicyViolation::TooCommon)
        );
        assert_eq!(
            p.check("x", "a\nbcdefghijk"),
            Err(PolicyViolation::ControlCharacter)
        );
        // Ten characters, counted as characters, not bytes.
        assert_eq!(p.check("x", "はるのうららのすみだが"), Ok(()));
        assert!(p.check("x", &"x".repeat(300)).is_err());
        assert_eq!(p.check("x", "kuma-no-ko-42"), Ok(()));
    }

    #[test]
    fn generated_passwords_meet_the_policy() {
        let rng = SystemRandom::new();
        for _ in 0..20 {
            let pw = generate_password(&rng, 14).unwrap();
            assert_eq!(pw.expose().len(), 14);
            assert_eq!(
                PasswordPolicy::default().check("someone", pw.expose()),
                Ok(())
            );
        }
        assert_eq!(
            format!("{:?}", Secret::new("hunter2")),
            "Secret(<redacted>)"
        );
    }
}
