//! The counter printer: print a PDF, follow the job, tell staff what the printer is doing.
//!
//! The API is synchronous; the appliance calls it from blocking threads.
//!
//! Code map:
//! - this file — the [`Printer`] trait, [`PrintRequest`] (validated on construction:
//!   a PDF under [`MAX_DOCUMENT_BYTES`], a short job name, 1–[`MAX_COPIES`] copies),
//!   [`JobHandle`], [`JobState`]/[`JobPhase`], [`JobOutcome`], [`PrintError`], the
//!   polling loop shared by every printer ([`follow_job`]), and the mapping to the wire
//!   type [`PrintState`].
//! - [`status`] — [`PrinterStatus`]: IPP `printer-state` and `printer-state-reasons`
//!   as typed values with Japanese labels for the staff UI; `Unreachable` when the
//!   printer does not answer.
//! - [`ipp`] — [`IppPrinter`]: IPP Everywhere client (Print-Job, Get-Job-Attributes,
//!   Get-Printer-Attributes, Cancel-Job, Pause/Resume-Printer) over the `ipp` crate.
//! - [`spool`] — [`SpoolPrinter`]: writes each job as a numbered PDF in a directory
//!   (demos, counters without a printer); jobs complete at once.
//! - [`pdf`] — [`test_page`]: a small valid PDF for the staff's test print, tests and
//!   benchmarks.
//!
//! Document bytes are never logged or shown in `Debug`: they are residents' papers.
//! Job names are the caller's responsibility (e.g. `申請書 1/3`, never a name).

pub mod ipp;
pub mod pdf;
pub mod spool;
pub mod status;

use std::fmt;
use std::thread;
use std::time::{Duration, Instant};

use kakanai_protocol::catalogue::PrintState;

pub use self::ipp::IppPrinter;
pub use self::pdf::test_page;
pub use self::spool::SpoolPrinter;
pub use self::status::{PrinterCondition, PrinterState, PrinterStatus};

/// The largest document accepted (50 MiB): counter documents are a few pages; anything
/// bigger is a mistake, and would hold the printer for minutes.
pub const MAX_DOCUMENT_BYTES: usize = 50 * 1024 * 1024;

/// The most copies of one job (a counter never needs more; a typo must not empty the tray).
pub const MAX_COPIES: u16 = 99;

/// The longest job name in bytes (IPP `name(255)`).
pub const MAX_JOB_NAME_BYTES: usize = 255;

/// The only document format printed.
pub const PDF_MIME: &str = "application/pdf";

/// Result of printer operations.
pub type Result<T> = std::result::Result<T, PrintError>;

/// Why a printer operation failed. Texts carry no document content.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PrintError {
    /// The document does not start with `%PDF-`.
    #[error("the document is not a PDF (it must start with %PDF-)")]
    NotPdf,
    /// The document is larger than [`MAX_DOCUMENT_BYTES`].
    #[error("the document is too large: {size} bytes (limit {limit})")]
    TooLarge {
        /// Its size.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// The job name is empty, too long or holds control characters.
    #[error("invalid job name: {0}")]
    BadJobName(&'static str),
    /// Copies outside 1..=[`MAX_COPIES`].
    #[error("copies must be 1 to {max}, not {copies}")]
    BadCopies {
        /// Asked for.
        copies: u16,
        /// The limit.
        max: u16,
    },
    /// The printer URI is not `ipp://host[:port]/path`.
    #[error("invalid printer URI {uri:?}: {why}")]
    BadUri {
        /// The URI given.
        uri: String,
        /// What is wrong.
        why: &'static str,
    },
    /// A request could not be encoded (caller input the IPP encoder refuses).
    #[error("could not encode the IPP request: {0}")]
    Encode(String),
    /// No TCP connection to the printer within the connect timeout.
    #[error("printer {endpoint} unreachable: {detail}")]
    Unreachable {
        /// `host:port`.
        endpoint: String,
        /// The last connection error.
        detail: String,
    },
    /// Connected, but no answer within the answer timeout.
    #[error("printer {endpoint} did not answer in time")]
    NoAnswer {
        /// `host:port`.
        endpoint: String,
    },
    /// The HTTP exchange failed (connection dropped, not HTTP, HTTP error status).
    #[error("HTTP exchange with the printer failed: {0}")]
    Http(String),
    /// The printer answered something that is not a usable IPP response.
    #[error("malformed answer from the printer: {0}")]
    Malformed(String),
    /// The printer does not implement the operation.
    #[error("the printer does not support {0}")]
    NotSupported(&'static str),
    /// The printer is busy with another job and takes no new one now (IPP
    /// `server-error-busy`; ippeveprinter answers it to Print-Job while printing). Retry
    /// later, or use [`Printer::submit_when_ready`].
    #[error("the printer is busy with another job")]
    Busy,
    /// The printer refused the operation with an IPP status.
    #[error("the printer refused {operation}: status 0x{code:04x} ({status})")]
    Refused {
        /// The IPP operation.
        operation: &'static str,
        /// The IPP status code.
        code: u16,
        /// Its name.
        status: String,
    },
    /// The printer does not know the job (never submitted, or forgotten: ippeveprinter
    /// drops finished jobs after 60 s, a rebooted printer forgets all).
    #[error("the printer does not know job {0}")]
    UnknownJob(u32),
    /// The job already finished, so it cannot be cancelled.
    #[error("job {0} already finished")]
    JobFinished(u32),
    /// Local I/O (the spool directory).
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}

/// A document to print: a validated PDF, a job name and a number of copies.
///
/// `Debug` shows the document's size, never its bytes.
#[derive(Clone, PartialEq, Eq)]
pub struct PrintRequest {
    document: Vec<u8>,
    job_name: String,
    copies: u16,
}

impl PrintRequest {
    /// Checks and wraps a PDF document. `job_name` is shown on the printer and in its
    /// logs: it must never carry personal data (use e.g. `申請書 1/3`).
    pub fn new(document: Vec<u8>, job_name: impl Into<String>, copies: u16) -> Result<Self> {
        validate_pdf(&document)?;
        let job_name = job_name.into();
        validate_job_name(&job_name)?;
        if copies == 0 || copies > MAX_COPIES {
            return Err(PrintError::BadCopies {
                copies,
                max: MAX_COPIES,
            });
        }
        Ok(Self {
            document,
            job_name,
            copies,
        })
    }

    /// The PDF bytes.
    pub fn document(&self) -> &[u8] {
        &self.document
    }

    /// The job name.
    pub fn job_name(&self) -> &str {
        &self.job_name
    }

    /// Copies.
    pub fn copies(&self) -> u16 {
        self.copies
    }
}

impl fmt::Debug for PrintRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PrintRequest")
            .field("document_bytes", &self.document.len())
            .field("job_name", &self.job_name)
            .field("copies", &self.copies)
            .finish()
    }
}

/// Checks that `document` looks like a PDF of acceptable size. Only the header is
/// checked: the printer is the judge of the rest, and parsing PDFs here would add a large
/// attack surface for little gain.
pub fn validate_pdf(document: &[u8]) -> Result<()> {
    if document.len() > MAX_DOCUMENT_BYTES {
        return Err(PrintError::TooLarge {
            size: document.len(),
            limit: MAX_DOCUMENT_BYTES,
        });
    }
    if !document.starts_with(b"%PDF-") {
        return Err(PrintError::NotPdf);
    }
    Ok(())
}

fn validate_job_name(name: &str) -> Result<()> {
    if name.trim().is_empty() {
        return Err(PrintError::BadJobName("empty"));
    }
    if name.len() > MAX_JOB_NAME_BYTES {
        return Err(PrintError::BadJobName("longer than 255 bytes"));
    }
    if name.chars().any(char::is_control) {
        return Err(PrintError::BadJobName("control characters"));
    }
    Ok(())
}

/// A submitted job, as the printer numbers it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct JobHandle {
    id: u32,
}

impl JobHandle {
    /// Wraps a job id given by a printer.
    pub fn new(id: u32) -> Self {
        Self { id }
    }

    /// The printer's job id.
    pub fn id(&self) -> u32 {
        self.id
    }
}

impl fmt::Display for JobHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.id)
    }
}

/// IPP `job-state`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum JobPhase {
    /// Waiting for the printer.
    Pending,
    /// Held (not yet released, or still receiving data).
    Held,
    /// Printing.
    Processing,
    /// Printing stopped (the printer needs attention).
    Stopped,
    /// Cancelled.
    Cancelled,
    /// Aborted by the printer.
    Aborted,
    /// Printed.
    Completed,
}

impl JobPhase {
    /// Whether the job is over.
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Cancelled | Self::Aborted | Self::Completed)
    }

    /// From the IPP enum value (RFC 8011 §5.3.7).
    pub fn from_ipp(value: i32) -> Option<Self> {
        Some(match value {
            3 => Self::Pending,
            4 => Self::Held,
            5 => Self::Processing,
            6 => Self::Stopped,
            7 => Self::Cancelled,
            8 => Self::Aborted,
            9 => Self::Completed,
            _ => return None,
        })
    }
}

/// What the printer says about a job now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobState {
    /// `job-state`.
    pub phase: JobPhase,
    /// `job-state-reasons` keywords, without `none`.
    pub reasons: Vec<String>,
    /// `job-state-message`, when given.
    pub message: Option<String>,
    /// `job-impressions-completed`, when the printer counts (a zero is taken as "does
    /// not count": ippeveprinter without a print command always says 0).
    pub pages_completed: Option<u32>,
}

impl JobState {
    /// A state with no reasons, message or count.
    pub fn new(phase: JobPhase) -> Self {
        Self {
            phase,
            reasons: Vec::new(),
            message: None,
            pages_completed: None,
        }
    }
}

/// How a followed job ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobOutcome {
    /// Printed.
    Completed {
        /// Pages printed, when the printer counts.
        pages: Option<u32>,
    },
    /// The printer gave up on the job.
    Aborted {
        /// `job-state-reasons` (e.g. `aborted-by-system`).
        reasons: Vec<String>,
        /// `job-state-message`, when given.
        message: Option<String>,
    },
    /// Cancelled (by staff, or at the printer).
    Cancelled,
    /// Still not finished at the deadline; `last` is what the printer said last.
    TimedOut {
        /// The last state seen.
        last: JobState,
    },
}

impl JobOutcome {
    /// A one-line reason for staff, for failed outcomes.
    pub fn reason(&self) -> Option<String> {
        match self {
            Self::Aborted { reasons, message } => {
                let mut text = if reasons.is_empty() {
                    "印刷が中止されました".to_owned()
                } else {
                    format!("印刷が中止されました ({})", reasons.join(", "))
                };
                if let Some(m) = message {
                    text.push_str(": ");
                    text.push_str(m);
                }
                Some(text)
            }
            Self::TimedOut { .. } => Some("印刷の完了を確認できませんでした".to_owned()),
            Self::Completed { .. } | Self::Cancelled => None,
        }
    }
}

impl From<&JobState> for PrintState {
    fn from(s: &JobState) -> Self {
        match s.phase {
            JobPhase::Pending | JobPhase::Held => PrintState::Queued,
            // A stopped job is still the printer's: it resumes once staff fix the cause.
            JobPhase::Processing | JobPhase::Stopped => PrintState::Printing,
            JobPhase::Completed => PrintState::Completed {
                pages: s.pages_completed,
            },
            JobPhase::Cancelled => PrintState::Cancelled,
            JobPhase::Aborted => PrintState::from(&JobOutcome::Aborted {
                reasons: s.reasons.clone(),
                message: s.message.clone(),
            }),
        }
    }
}

impl From<&JobOutcome> for PrintState {
    fn from(o: &JobOutcome) -> Self {
        match o {
            JobOutcome::Completed { pages } => PrintState::Completed { pages: *pages },
            JobOutcome::Aborted { .. } => PrintState::Failed {
                reason: o.reason().unwrap_or_default(),
            },
            JobOutcome::Cancelled => PrintState::Cancelled,
            // Not knowing the end is not a failure: the job may still print. Report
            // what the printer said last; the appliance may ask again later.
            JobOutcome::TimedOut { last } => PrintState::from(last),
        }
    }
}

/// A printer at the counter.
pub trait Printer: Send + Sync {
    /// Sends a job; returns once the printer has accepted it (not printed it).
    fn submit(&self, job: &PrintRequest) -> Result<JobHandle>;

    /// Submits, retrying while the printer is [`PrintError::Busy`] until `timeout`
    /// passes: a counter prints several documents in a row, and printers that take one
    /// job at a time refuse the next until the current one ends.
    fn submit_when_ready(&self, job: &PrintRequest, timeout: Duration) -> Result<JobHandle> {
        let deadline = Instant::now() + timeout;
        let mut interval = POLL_FIRST * 4;
        loop {
            match self.submit(job) {
                Err(PrintError::Busy) if Instant::now() < deadline => {
                    thread::sleep(interval.min(deadline.saturating_duration_since(Instant::now())));
                    interval = (interval * 2).min(POLL_MAX);
                }
                other => return other,
            }
        }
    }

    /// What the printer says about a job now.
    fn job_status(&self, job: &JobHandle) -> Result<JobState>;

    /// Follows a job until it ends or `timeout` passes. Transient errors (unreachable,
    /// no answer, HTTP) are retried until the deadline: a printer waking from sleep
    /// must not turn a printed job into a failure.
    fn wait(&self, job: &JobHandle, timeout: Duration) -> Result<JobOutcome> {
        follow_job(|| self.job_status(job), timeout)
    }

    /// The printer's state, for the staff UI. A printer that does not answer is
    /// `Ok(PrinterStatus::Unreachable)`, not an error.
    fn status(&self) -> Result<PrinterStatus>;

    /// Cancels a job. [`PrintError::JobFinished`] when it already ended.
    fn cancel(&self, job: &JobHandle) -> Result<()>;
}

/// First poll interval: local printers finish small jobs fast.
const POLL_FIRST: Duration = Duration::from_millis(50);
/// Longest poll interval: staff should see the end within about a second.
const POLL_MAX: Duration = Duration::from_millis(500);

/// Polls `status` until the job ends or `timeout` passes (see [`Printer::wait`]).
pub fn follow_job(
    mut status: impl FnMut() -> Result<JobState>,
    timeout: Duration,
) -> Result<JobOutcome> {
    let deadline = Instant::now() + timeout;
    let mut interval = POLL_FIRST;
    let mut last: Option<JobState> = None;
    loop {
        match status() {
            Ok(state) => {
                match state.phase {
                    JobPhase::Completed => {
                        return Ok(JobOutcome::Completed {
                            pages: state.pages_completed,
                        })
                    }
                    JobPhase::Aborted => {
                        return Ok(JobOutcome::Aborted {
                            reasons: state.reasons,
                            message: state.message,
                        })
                    }
                    JobPhase::Cancelled => return Ok(JobOutcome::Cancelled),
                    _ => {}
                }
                last = Some(state);
            }
            Err(e @ (PrintError::Unreachable { .. } | PrintError::NoAnswer { .. })) => {
                tracing::debug!(error = %e, "printer not answering while following a job; retrying");
                if Instant::now() >= deadline {
                    return match last {
                        Some(last) => Ok(JobOutcome::TimedOut { last }),
                        None => Err(e),
                    };
                }
            }
            Err(PrintError::Http(detail)) => {
                tracing::debug!(%detail, "HTTP error while following a job; retrying");
                if Instant::now() >= deadline {
                    return match last {
                        Some(last) => Ok(JobOutcome::TimedOut { last }),
                        None => Err(PrintError::Http(detail)),
                    };
                }
            }
            Err(e) => return Err(e),
        }
        let now = Instant::now();
        if now >= deadline {
            if let Some(last) = last {
                return Ok(JobOutcome::TimedOut { last });
            }
        }
        thread::sleep(interval.min(deadline.saturating_duration_since(now)));
        interval = (interval * 2).min(POLL_MAX);
    }
}
