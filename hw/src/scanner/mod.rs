//! 2-D code scanner in USB-serial (CDC-ACM) mode: one code per line.
//!
//! The scanner appears as a serial device (`/dev/ttyACM0`, or a stable udev symlink)
//! and types each code followed by its configured suffix (CR, LF or CR LF).
//! [`Scanner::spawn`] starts a thread that opens the device, frames its lines into
//! codes and sends [`ScannerEvent`]s over a channel; when the device vanishes it
//! reports [`ScannerEvent::Disconnected`] and reopens it with jittered exponential
//! backoff until it is back.
//!
//! Code map:
//! - this module — [`ScannerConfig`], [`Scanner::spawn`], [`ScannerHandle`],
//!   [`ScannerEvent`], the reader thread;
//! - [`framing`] — [`Framer`]: terminators, length limit, AIM prefixes, and what a
//!   code's bytes may be ([`Content`]); pure code;
//! - [`Backoff`] (from [`crate::backoff`]) — the validated reconnection delays.
//!
//! Scanned codes may hold personal data (a form's 2-D code carries a name and an
//! address): nothing here logs or formats a code's content, only lengths, offsets
//! and reasons ([`Scan`]'s `Debug` shows the length).
//!
//! The device is opened with `serialport` (raw mode, no echo, exclusive), which also
//! opens a pseudo-terminal's slave: the tests drive the reader through a real pty.

pub mod framing;

use std::path::PathBuf;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender, TryRecvError};
use std::thread::JoinHandle;
use std::time::Duration;

use serialport::TTYPort;

pub use crate::backoff::{Backoff, BackoffError};
pub use framing::{Content, FrameOutcome, Framer, FramingConfig, RejectReason, Scan, Terminator};

/// Errors starting a scanner.
#[derive(Debug, thiserror::Error)]
pub enum ScannerError {
    /// The configuration cannot work.
    #[error("invalid scanner configuration: {0}")]
    Config(&'static str),
    /// The device path is not UTF-8 (the serial layer takes paths as text).
    #[error("the scanner device path is not UTF-8")]
    PathNotUtf8,
    /// The reader thread could not be started.
    #[error("cannot start the scanner thread: {0}")]
    Thread(#[source] std::io::Error),
}

/// How to reach and read the scanner.
#[derive(Debug, Clone)]
pub struct ScannerConfig {
    /// The device, e.g. `/dev/ttyACM0` or a udev symlink such as
    /// `/dev/kakanai-scanner` (followed at each open, so a re-plugged scanner that
    /// comes back under another name is still found).
    pub path: PathBuf,
    /// Line speed. CDC-ACM ignores it, but a real UART scanner needs the right one.
    pub baud: u32,
    /// How lines are split and checked.
    pub framing: FramingConfig,
    /// Delays between attempts to reopen the device.
    pub backoff: Backoff,
    /// How long a read waits before the thread checks whether it was asked to stop:
    /// the bound on [`ScannerHandle::stop`]'s latency.
    pub poll_interval: Duration,
}

impl ScannerConfig {
    /// The defaults for the device at `path`: 9600 baud, CR/LF/CRLF, 4096 bytes,
    /// UTF-8 text, no AIM prefix, 250 ms…5 s backoff, 100 ms poll.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        ScannerConfig {
            path: path.into(),
            baud: 9600,
            framing: FramingConfig::default(),
            backoff: Backoff::default(),
            poll_interval: Duration::from_millis(100),
        }
    }

    fn validate(&self) -> Result<(), ScannerError> {
        if self.baud == 0 {
            return Err(ScannerError::Config("baud must be positive"));
        }
        if self.framing.max_len == 0 {
            return Err(ScannerError::Config("max_len must be positive"));
        }
        if self.poll_interval.is_zero() {
            return Err(ScannerError::Config("poll_interval must be positive"));
        }
        if self.path.to_str().is_none() {
            return Err(ScannerError::PathNotUtf8);
        }
        Ok(())
    }
}

/// What the scanner thread reports, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScannerEvent {
    /// The device was opened (at start, or again after a disconnection).
    Connected,
    /// A code was read.
    Code(Scan),
    /// A line was dropped; the lines after it are read as usual.
    Rejected {
        /// Why.
        reason: RejectReason,
    },
    /// The open device went away (unplugged, or a read failed); the thread is
    /// trying to reopen it. Not sent while the device has never been opened.
    Disconnected,
}

/// Starts scanner readers.
#[derive(Debug)]
pub struct Scanner;

impl Scanner {
    /// Starts a thread reading the scanner described by `config`. The device need
    /// not be present yet: the thread keeps trying to open it.
    pub fn spawn(config: ScannerConfig) -> Result<ScannerHandle, ScannerError> {
        config.validate()?;
        let (event_tx, events) = mpsc::channel();
        let (stop_tx, stop_rx) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("kakanai-scanner".into())
            .spawn(move || {
                Reader {
                    config,
                    events: event_tx,
                    stop: stop_rx,
                }
                .run()
            })
            .map_err(ScannerError::Thread)?;
        Ok(ScannerHandle {
            events,
            stop: Some(stop_tx),
            thread: Some(thread),
        })
    }
}

/// A running scanner reader: its events, and the means to stop it. Dropping the
/// handle stops the thread too.
#[derive(Debug)]
pub struct ScannerHandle {
    events: Receiver<ScannerEvent>,
    stop: Option<Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl ScannerHandle {
    /// The event channel (for `recv`, `recv_timeout`, `try_iter` …).
    pub fn events(&self) -> &Receiver<ScannerEvent> {
        &self.events
    }

    /// The next event, waiting at most `timeout`.
    pub fn recv_timeout(&self, timeout: Duration) -> Result<ScannerEvent, RecvTimeoutError> {
        self.events.recv_timeout(timeout)
    }

    /// Stops the thread and waits for it: within about one poll interval, as the
    /// thread never blocks longer than that.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        // Dropping the sender wakes the thread wherever it waits on the stop channel.
        self.stop.take();
        if let Some(thread) = self.thread.take() {
            if thread.join().is_err() {
                tracing::error!("scanner thread panicked");
            }
        }
    }
}

impl Drop for ScannerHandle {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Why a reading session ended.
enum End {
    /// Asked to stop, or nobody listens any more.
    Stop,
    /// The device went away.
    Lost,
}

/// The reader thread's state.
struct Reader {
    config: ScannerConfig,
    events: Sender<ScannerEvent>,
    stop: Receiver<()>,
}

impl Reader {
    fn run(self) {
        let mut attempt = 0u32;
        loop {
            if self.stop_requested() {
                return;
            }
            match self.open() {
                Ok(port) => {
                    tracing::info!("scanner connected");
                    if !self.send(ScannerEvent::Connected) {
                        return;
                    }
                    attempt = 0;
                    match self.read_session(port) {
                        End::Stop => return,
                        End::Lost => {
                            tracing::warn!("scanner disconnected");
                            if !self.send(ScannerEvent::Disconnected) {
                                return;
                            }
                        }
                    }
                }
                Err(e) => {
                    // Debug level: while the scanner is unplugged this repeats every
                    // few seconds. The error names the path, never any data.
                    tracing::debug!(error = %e, attempt, "scanner not available");
                }
            }
            let delay = self.config.backoff.delay(attempt);
            attempt = attempt.saturating_add(1);
            match self.stop.recv_timeout(delay) {
                Err(RecvTimeoutError::Timeout) => {}
                Ok(()) | Err(RecvTimeoutError::Disconnected) => return,
            }
        }
    }

    fn open(&self) -> serialport::Result<TTYPort> {
        let path = self.config.path.to_string_lossy();
        serialport::new(path, self.config.baud)
            .timeout(self.config.poll_interval)
            .open_native()
    }

    /// Reads until the device goes away or the thread is asked to stop.
    fn read_session(&self, mut port: TTYPort) -> End {
        let mut framer = Framer::new(self.config.framing.clone());
        let mut buf = [0u8; 1024];
        loop {
            if self.stop_requested() {
                return End::Stop;
            }
            let n = match std::io::Read::read(&mut port, &mut buf) {
                Ok(0) => {
                    tracing::debug!("scanner: end of file");
                    break;
                }
                Ok(n) => n,
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::TimedOut | std::io::ErrorKind::Interrupted
                    ) =>
                {
                    continue
                }
                Err(e) => {
                    // EIO or a hang-up: the USB device was unplugged, or the pty's
                    // master side closed.
                    tracing::debug!(error = %e, "scanner read failed");
                    break;
                }
            };
            for outcome in framer.push(&buf[..n]) {
                if !self.deliver(outcome) {
                    return End::Stop;
                }
            }
        }
        drop(port);
        if let Some(outcome) = framer.reset() {
            if !self.deliver(outcome) {
                return End::Stop;
            }
        }
        End::Lost
    }

    /// Logs (lengths and reasons only) and sends one framing outcome.
    fn deliver(&self, outcome: FrameOutcome) -> bool {
        let event = match outcome {
            FrameOutcome::Code(scan) => {
                tracing::info!(len = scan.data.len(), symbology = ?scan.symbology, "code scanned");
                ScannerEvent::Code(scan)
            }
            FrameOutcome::Rejected(reason) => {
                tracing::warn!(%reason, "scanned line rejected");
                ScannerEvent::Rejected { reason }
            }
        };
        self.send(event)
    }

    /// Sends an event; false when the receiving side is gone (then the thread ends).
    fn send(&self, event: ScannerEvent) -> bool {
        self.events.send(event).is_ok()
    }

    fn stop_requested(&self) -> bool {
        !matches!(self.stop.try_recv(), Err(TryRecvError::Empty))
    }
}
