//! Virtual My Number card, 住基カード and driver's licence that answer real APDUs through
//! pcscd's vpcd driver, built from JSON profiles — so the reader code and its tests run
//! through the real PC/SC stack without a physical card.
//!
//! Code map:
//! - [`profile`] — [`Profile`]: the JSON format (serde, unknown fields rejected) and its
//!   validation (PIN lengths, 個人番号 check digit, dates, JIS X 0208 licence text).
//!   Error texts never quote values.
//! - `files` — file contents byte for byte: 個人番号 EF0001 (`FF 10 0C` + 12 digits +
//!   `FF FF`), 基本4情報 EF0002 (`FF 20` with the DF21 offset table counted from the
//!   start of the file, BER long-form lengths), JPKI EF0006 (160-byte `CK_TOKEN_INFO`
//!   labelled `JPKIAPICCTOKEN2` / `JPKIAPICCTOKEN`), 照合番号B, licence EF 2F01 / DF1 EF01
//!   (raw JIS X 0208, era dates, 外字 references).
//! - [`card`] — [`VirtualCard`]: DFs, EFs, key references with retry counters, and the
//!   APDU engine (SELECT by AID / EF / MF, VERIFY incl. the empty retry query, READ
//!   BINARY by offset or short EF id) with the status words of the domain doc.
//! - [`vpcd`] — [`VpcdLink`]: the TCP client that plugs a card into vpcd on a thread;
//!   insert / remove / remove after n APDUs, counters for tests.
//! - `bin/kakanai-vcard.rs` — the same from the command line, driven by stdin.
//!
//! The card model follows what `myna-card` 3.3 sends and parses (its `TextAp`, `JpkiAp`
//! and `Card::read_binary_all`); `hw/tests/vcard*.rs` drive it through myna-card in
//! memory, and through real pcscd with the `pcsc` crate, myna-card and `scriptor`.
//!
//! Security state (verified keys, current file) is volatile: power-off, reset, removal
//! and — on the My Number card — selecting another AP clear it. Retry counters are
//! kept for the life of the [`VirtualCard`] value (across power cycles and removals),
//! not across process restarts.

pub mod card;
mod files;
pub mod profile;
pub mod vpcd;

use std::path::PathBuf;

pub use card::{CardKind, KeyName, VirtualCard};
pub use profile::{Profile, ReadPastEnd};
pub use vpcd::{VpcdLink, DEFAULT_VPCD_ADDR};

/// Why a virtual card could not be built or connected.
#[derive(Debug, thiserror::Error)]
pub enum VcardError {
    /// The profile file could not be read.
    #[error("cannot read profile {}: {source}", path.display())]
    ProfileIo {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The profile is not valid. The text names fields, never their values.
    #[error("bad profile: {0}")]
    Profile(String),
    /// vpcd could not be reached.
    #[error("cannot connect to vpcd at {addr}: {source}")]
    Connect {
        /// The address tried.
        addr: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The serving thread could not be started.
    #[error("cannot start the virtual card thread: {0}")]
    Thread(#[source] std::io::Error),
}
