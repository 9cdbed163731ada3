//! Framing: turns the scanner's byte stream into codes, one per terminated line.
//!
//! Pure code (no I/O, no clock), so every framing rule is tested without a device.
//! The [`Framer`] is fed whatever a `read` returned — several codes at once, or a code
//! split across reads — and yields [`FrameOutcome`]s in order.

use std::fmt;

use kakanai_protocol::catalogue::{ScanResult, Symbology};

/// What ends a code on the line (the scanner's configured "suffix").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Terminator {
    /// Carriage return (0x0D) alone; a line feed is a stray control byte.
    Cr,
    /// Line feed (0x0A) alone; a carriage return is a stray control byte.
    Lf,
    /// The pair CR LF; a lone CR or LF inside a line is a stray control byte.
    CrLf,
    /// CR, LF or CR LF (the default): a code ends at either byte, and the empty line
    /// between the CR and the LF of a pair is ignored like any empty line. Robust to
    /// a scanner whose suffix was reconfigured on the device without telling us.
    #[default]
    Any,
}

/// What a code's bytes must be to be accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Content {
    /// Valid UTF-8 text (the default): the 2-D codes on our forms are UTF-8, so
    /// anything else is a misread or a foreign code.
    #[default]
    Utf8Text,
    /// Any bytes except stray control bytes: for codes in other encodings (a
    /// Shift_JIS QR code), decoded by whoever consumes them.
    Bytes,
}

/// How the framer splits and checks lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FramingConfig {
    /// What ends a code.
    pub terminator: Terminator,
    /// The longest code accepted, in bytes, AIM prefix included, terminator excluded.
    pub max_len: usize,
    /// What a code's bytes must be.
    pub content: Content,
    /// Whether the scanner is configured to prefix each code with its AIM symbology
    /// identifier (`]Q1`, `]C0` …): if so, the prefix is stripped and mapped to a
    /// [`Symbology`]. Off, a code starting with `]` is kept as it is.
    pub aim_prefix: bool,
    /// Control bytes (below 0x20, or 0x7F) allowed inside a code. Default: horizontal
    /// tab only, which forms use between fields; add 0x1D (GS) for GS1 codes.
    pub allowed_controls: Vec<u8>,
}

impl Default for FramingConfig {
    fn default() -> Self {
        FramingConfig {
            terminator: Terminator::Any,
            max_len: 4096,
            content: Content::Utf8Text,
            aim_prefix: false,
            allowed_controls: vec![b'\t'],
        }
    }
}

/// A code read by the scanner. Its data may be personal (a form's 2-D code), so
/// `Debug` shows only its length.
#[derive(Clone, PartialEq, Eq)]
pub struct Scan {
    /// The code's bytes, AIM prefix and terminator removed.
    pub data: Vec<u8>,
    /// The symbology from the AIM prefix; [`Symbology::Other`] when the scanner does
    /// not send one or it names another symbology.
    pub symbology: Symbology,
}

impl Scan {
    /// The protocol body reporting this scan from scanner `scanner`.
    pub fn into_result(self, scanner: impl Into<String>) -> ScanResult {
        ScanResult {
            scanner: scanner.into(),
            symbology: self.symbology,
            data: self.data,
        }
    }
}

impl fmt::Debug for Scan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Scan")
            .field("symbology", &self.symbology)
            .field("data_len", &self.data.len())
            .finish()
    }
}

/// Why a line was not delivered as a code. Carries lengths and positions only,
/// never content.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RejectReason {
    /// Longer than `max_len`; everything up to the next terminator was discarded.
    #[error("code too long: {len} bytes (at most {max_len})")]
    Overlong {
        /// Bytes discarded, terminator excluded.
        len: usize,
        /// The configured limit.
        max_len: usize,
    },
    /// A control byte other than the terminator or an allowed one: line noise, a
    /// wrong baud rate, or a scanner in a binary mode. (A control byte's value is not
    /// personal data, and tells which scanner setting is wrong.)
    #[error("control byte 0x{byte:02x} at offset {offset} in a {len}-byte line")]
    ControlByte {
        /// The byte.
        byte: u8,
        /// Its offset in the line.
        offset: usize,
        /// The line's length.
        len: usize,
    },
    /// Not UTF-8 although [`Content::Utf8Text`] is configured.
    #[error("not UTF-8: invalid at offset {valid_up_to} in a {len}-byte line")]
    InvalidUtf8 {
        /// Length of the valid prefix.
        valid_up_to: usize,
        /// The line's length.
        len: usize,
    },
    /// The device went away in the middle of a line.
    #[error("line cut off by disconnection after {len} bytes")]
    Incomplete {
        /// Bytes received before the disconnection.
        len: usize,
    },
}

/// One result of framing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrameOutcome {
    /// A well-formed code.
    Code(Scan),
    /// A line that was dropped, and why.
    Rejected(RejectReason),
}

/// Splits a byte stream into codes. Keeps at most `max_len + 1` bytes buffered
/// whatever the input, so a scanner stuck sending without terminators cannot make
/// us grow without bound.
#[derive(Debug)]
pub struct Framer {
    config: FramingConfig,
    buf: Vec<u8>,
    /// Bytes dropped since the line overflowed (`None` while within the limit).
    discarded: Option<usize>,
    /// The previous byte was a CR (for [`Terminator::CrLf`], where the CR is kept in
    /// `buf` or counted in `discarded` until the LF shows it was half a terminator).
    last_cr: bool,
}

impl Framer {
    /// A framer with an empty buffer.
    pub fn new(config: FramingConfig) -> Self {
        Framer {
            buf: Vec::with_capacity(config.max_len.min(4096) + 1),
            config,
            discarded: None,
            last_cr: false,
        }
    }

    /// The framing configuration.
    pub fn config(&self) -> &FramingConfig {
        &self.config
    }

    /// Feeds bytes as read; returns the outcomes of the lines they completed.
    pub fn push(&mut self, bytes: &[u8]) -> Vec<FrameOutcome> {
        let mut out = Vec::new();
        for &b in bytes {
            let was_cr = self.last_cr;
            self.last_cr = b == b'\r';
            let ends_line = match self.config.terminator {
                Terminator::Cr => b == b'\r',
                Terminator::Lf => b == b'\n',
                Terminator::Any => b == b'\r' || b == b'\n',
                Terminator::CrLf => b == b'\n' && was_cr,
            };
            if ends_line {
                if self.config.terminator == Terminator::CrLf {
                    // The CR went into the line (or the discard count) before we
                    // knew it began the terminator: take it back out.
                    match self.discarded.as_mut() {
                        Some(n) => *n = n.saturating_sub(1),
                        None => {
                            self.buf.pop();
                        }
                    }
                }
                if let Some(outcome) = self.end_line() {
                    out.push(outcome);
                }
            } else if let Some(n) = self.discarded.as_mut() {
                *n += 1;
            } else {
                self.buf.push(b);
                // One byte of slack so that with CrLf a CR at the limit can still
                // turn out to be the terminator's first half.
                let slack = usize::from(self.config.terminator == Terminator::CrLf && b == b'\r');
                if self.buf.len() > self.config.max_len + slack {
                    self.discarded = Some(self.buf.len());
                    self.buf.clear();
                }
            }
        }
        out
    }

    /// The device went away: drops any partial line, reporting it if there was one.
    pub fn reset(&mut self) -> Option<FrameOutcome> {
        let len = self.discarded.take().unwrap_or(0) + self.buf.len();
        self.buf.clear();
        self.last_cr = false;
        (len > 0).then_some(FrameOutcome::Rejected(RejectReason::Incomplete { len }))
    }

    /// A terminator arrived: judges the line in `buf` and starts a new one.
    fn end_line(&mut self) -> Option<FrameOutcome> {
        if let Some(len) = self.discarded.take() {
            return Some(FrameOutcome::Rejected(RejectReason::Overlong {
                len,
                max_len: self.config.max_len,
            }));
        }
        let line = std::mem::take(&mut self.buf);
        if line.is_empty() {
            return None;
        }
        Some(match judge(&self.config, line) {
            Ok(scan) => FrameOutcome::Code(scan),
            Err(reason) => FrameOutcome::Rejected(reason),
        })
    }
}

/// Checks one complete line and strips its AIM prefix.
fn judge(config: &FramingConfig, line: Vec<u8>) -> Result<Scan, RejectReason> {
    let len = line.len();
    if line.len() > config.max_len {
        // Defensive: `push` already keeps lines within the limit.
        return Err(RejectReason::Overlong {
            len,
            max_len: config.max_len,
        });
    }
    if let Some((offset, &byte)) = line
        .iter()
        .enumerate()
        .find(|&(_, &b)| (b < 0x20 || b == 0x7f) && !config.allowed_controls.contains(&b))
    {
        return Err(RejectReason::ControlByte { byte, offset, len });
    }
    if config.content == Content::Utf8Text {
        if let Err(e) = std::str::from_utf8(&line) {
            return Err(RejectReason::InvalidUtf8 {
                valid_up_to: e.valid_up_to(),
                len,
            });
        }
    }
    let (symbology, data) = match aim_identifier(config, &line) {
        Some(symbology) => (symbology, line[3..].to_vec()),
        None => (Symbology::Other, line),
    };
    Ok(Scan { data, symbology })
}

/// The symbology named by the line's AIM identifier (`]` + code character +
/// modifier character, ISO/IEC 15424), when prefixes are configured and present.
fn aim_identifier(config: &FramingConfig, line: &[u8]) -> Option<Symbology> {
    if !config.aim_prefix {
        return None;
    }
    match line {
        [b']', code, modifier, ..]
            if code.is_ascii_alphabetic() && modifier.is_ascii_alphanumeric() =>
        {
            Some(match code {
                b'Q' => Symbology::Qr,
                b'C' => Symbology::Code128,
                _ => Symbology::Other,
            })
        }
        _ => None,
    }
}
