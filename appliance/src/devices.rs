//! Device supervision: the counter's card reader, printer and scanner, each on a
//! thread of its own (the `kakanai-hw` drivers block), restarted with backoff when
//! they fail, and reporting what happens as [`DeviceEvent`]s.
//!
//! - The card reader is watched for readers and cards coming and going; reads are
//!   made on request ([`Devices::read_my_number_card`]) because they need the PIN or
//!   照合番号B typed at the counter — the PIN never leaves the appliance.
//! - The printer receives [`PrintJob`] commands from the control plane; inline
//!   chunks are put back together ([`PrintAssembler`]) and the document printed; the
//!   outcome goes back as a [`PrintStatus`].
//! - The scanner delivers codes as they are read.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use kakanai_hw::backoff::Backoff;
use kakanai_hw::card::{self, CardError, Credential, MyNumberRead, ReadScope, ReaderEvent};
use kakanai_hw::printer::{IppPrinter, PrintRequest, Printer, PrinterStatus, SpoolPrinter};
use kakanai_hw::scanner::{Scanner, ScannerConfig, ScannerEvent};
use kakanai_protocol::catalogue::{
    DeviceClass, DeviceStateReport, DeviceStatus, DocumentSource, PrintJob, PrintState,
    PrintStatus, ScanResult,
};
use tokio::sync::mpsc;

/// Which devices this counter has.
#[derive(Debug, Clone, Default)]
pub struct DeviceConfig {
    /// Watch card readers (`Some(None)` = any reader, `Some(Some(name))` = that one).
    pub reader: Option<Option<String>>,
    /// The printer: an `ipp://` URI, or a directory to spool PDFs into.
    pub printer: Option<PrinterTarget>,
    /// The scanner's serial device.
    pub scanner: Option<PathBuf>,
}

/// Where printed documents go.
#[derive(Debug, Clone)]
pub enum PrinterTarget {
    /// An IPP Everywhere printer.
    Ipp(String),
    /// A directory (counters without a printer, demos).
    Spool(PathBuf),
}

/// What the devices report.
#[derive(Debug, Clone, PartialEq)]
pub enum DeviceEvent {
    /// A card was put on a reader.
    CardInserted {
        /// The reader.
        reader: String,
    },
    /// The card was taken away.
    CardRemoved {
        /// The reader.
        reader: String,
    },
    /// A code was scanned.
    Scan(ScanResult),
    /// A print job ended (or failed).
    Print(PrintStatus),
    /// A device's state changed.
    State(DeviceStateReport),
}

/// The supervised devices.
pub struct Devices {
    printer: Option<Arc<dyn Printer>>,
    events: mpsc::Sender<DeviceEvent>,
    ctx: Option<pcsc::Context>,
    assembler: std::sync::Mutex<PrintAssembler>,
}

impl std::fmt::Debug for Devices {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Devices").finish_non_exhaustive()
    }
}

/// How long a print job may take before staff are told it timed out.
const PRINT_TIMEOUT: Duration = Duration::from_secs(180);

impl Devices {
    /// Starts supervising the configured devices; events go to `events`.
    pub fn start(config: DeviceConfig, events: mpsc::Sender<DeviceEvent>) -> Self {
        let printer: Option<Arc<dyn Printer>> = match &config.printer {
            Some(PrinterTarget::Ipp(uri)) => match IppPrinter::new(uri) {
                Ok(p) => Some(Arc::new(p)),
                Err(e) => {
                    tracing::error!(error = %e, "printer URI refused");
                    None
                }
            },
            Some(PrinterTarget::Spool(dir)) => match SpoolPrinter::new(dir.clone()) {
                Ok(p) => Some(Arc::new(p)),
                Err(e) => {
                    tracing::error!(error = %e, "spool directory refused");
                    None
                }
            },
            None => None,
        };
        let ctx = config.reader.as_ref().and_then(|only| {
            let ctx = card::link::context().ok();
            if ctx.is_some() {
                // The watch blocks in SCardGetStatusChange, and pcsc-lite serialises
                // the calls made on one context: on the reads' context every read
                // would wait for the watch's timeout, call after call (seconds).
                match card::link::context() {
                    Ok(watch) => spawn_reader_watch(watch, only.clone(), events.clone()),
                    Err(e) => tracing::error!(error = %e, "cannot watch the card readers"),
                }
            } else {
                tracing::error!("no PC/SC service: card reading is unavailable");
            }
            ctx
        });
        if let Some(path) = config.scanner {
            spawn_scanner(path, events.clone());
        }
        Self {
            printer,
            events,
            ctx,
            assembler: std::sync::Mutex::new(PrintAssembler::default()),
        }
    }

    /// Reads the My Number card on `reader` (blocking work on a blocking thread).
    pub async fn read_my_number_card(
        &self,
        reader: String,
        credential: Credential,
        scope: ReadScope,
    ) -> Result<MyNumberRead, CardError> {
        let ctx = self.ctx.clone().ok_or(CardError::NoReader)?;
        tokio::task::spawn_blocking(move || {
            card::read_my_number_card(&ctx, &reader, &credential, scope)
        })
        .await
        .unwrap_or(Err(CardError::Reader("the read was interrupted".into())))
    }

    /// Which card is on `reader`, found without presenting any PIN (blocking work on a
    /// blocking thread).
    pub async fn identify_card(&self, reader: String) -> Result<card::CardKind, CardError> {
        let ctx = self.ctx.clone().ok_or(CardError::NoReader)?;
        tokio::task::spawn_blocking(move || card::identify(&ctx, &reader))
            .await
            .unwrap_or(Err(CardError::Reader("the check was interrupted".into())))
    }

    /// Tries left on the PIN of the My Number card on `reader`, without spending one.
    pub async fn pin_tries(&self, reader: String) -> Result<u8, CardError> {
        let ctx = self.ctx.clone().ok_or(CardError::NoReader)?;
        // Only which key to ask about matters: nothing of this value is sent.
        let which = Credential::pin("0000")?;
        tokio::task::spawn_blocking(move || card::pin_tries(&ctx, &reader, &which))
            .await
            .unwrap_or(Err(CardError::Reader("the check was interrupted".into())))
    }

    /// Whether a printer is configured.
    pub fn has_printer(&self) -> bool {
        self.printer.is_some()
    }

    /// What the printer says now (`None` without a printer); blocking work on a
    /// blocking thread.
    pub async fn printer_status(&self) -> Option<PrinterStatus> {
        let printer = self.printer.clone()?;
        tokio::task::spawn_blocking(move || printer.status().unwrap_or(PrinterStatus::Unreachable))
            .await
            .ok()
    }

    /// Takes a print-job command (or one chunk of it); prints when the document is
    /// whole and reports the outcome as a [`DeviceEvent::Print`].
    pub fn print(&self, job: PrintJob) {
        let whole = {
            let mut assembler = self
                .assembler
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            assembler.add(job)
        };
        let (job, document) = match whole {
            Assembled::Incomplete => return,
            Assembled::Refused { job_id, reason } => {
                return self.report(job_id, PrintState::Failed { reason });
            }
            Assembled::Whole { job, document } => (job, document),
        };
        let Some(printer) = self.printer.clone() else {
            return self.report(
                job.job_id,
                PrintState::Failed {
                    reason: "この窓口にはプリンタが設定されていません".into(),
                },
            );
        };
        let events = self.events.clone();
        std::thread::spawn(move || {
            let state = print_now(printer.as_ref(), &job, document);
            let _ = events.blocking_send(DeviceEvent::Print(PrintStatus {
                job_id: job.job_id,
                state,
            }));
        });
    }

    fn report(&self, job_id: String, state: PrintState) {
        let _ = self
            .events
            .try_send(DeviceEvent::Print(PrintStatus { job_id, state }));
    }
}

fn print_now(printer: &dyn Printer, job: &PrintJob, document: Vec<u8>) -> PrintState {
    let copies = job.copies.max(1);
    let request = match PrintRequest::new(document, job.title.clone(), copies) {
        Ok(r) => r,
        Err(e) => {
            return PrintState::Failed {
                reason: e.to_string(),
            }
        }
    };
    let handle = match printer.submit_when_ready(&request, PRINT_TIMEOUT) {
        Ok(h) => h,
        Err(e) => {
            return PrintState::Failed {
                reason: e.to_string(),
            }
        }
    };
    match printer.wait(&handle, PRINT_TIMEOUT) {
        Ok(outcome) => PrintState::from(&outcome),
        Err(e) => PrintState::Failed {
            reason: e.to_string(),
        },
    }
}

/// Puts chunked print jobs back together.
#[derive(Debug, Default)]
pub struct PrintAssembler {
    partial: HashMap<String, Vec<Option<Vec<u8>>>>,
}

/// What [`PrintAssembler::add`] has.
#[derive(Debug)]
pub enum Assembled {
    /// Chunks are missing still.
    Incomplete,
    /// The whole document.
    Whole {
        /// The job (from its last chunk).
        job: PrintJob,
        /// The document's bytes.
        document: Vec<u8>,
    },
    /// The chunks do not fit together.
    Refused {
        /// The job.
        job_id: String,
        /// Why.
        reason: String,
    },
}

/// At most this many chunks per document (a few hundred MB of forms is no job).
const MAX_CHUNKS: u32 = 512;

impl PrintAssembler {
    /// Adds one chunk.
    pub fn add(&mut self, job: PrintJob) -> Assembled {
        let (chunk, chunks, data) = match &job.source {
            DocumentSource::Inline {
                data,
                chunk,
                chunks,
            } => (*chunk, *chunks, data.clone()),
            DocumentSource::ByHash { .. } => {
                return Assembled::Refused {
                    job_id: job.job_id,
                    reason: "documents by hash are not supported yet".into(),
                }
            }
        };
        if chunks == 0 || chunks > MAX_CHUNKS || chunk >= chunks {
            self.partial.remove(&job.job_id);
            return Assembled::Refused {
                job_id: job.job_id,
                reason: format!("chunk {chunk} of {chunks} is not a valid chunk"),
            };
        }
        let slots = self
            .partial
            .entry(job.job_id.clone())
            .or_insert_with(|| vec![None; chunks as usize]);
        if slots.len() != chunks as usize {
            self.partial.remove(&job.job_id);
            return Assembled::Refused {
                job_id: job.job_id,
                reason: "the chunk count changed within a job".into(),
            };
        }
        slots[chunk as usize] = Some(data);
        if slots.iter().any(Option::is_none) {
            return Assembled::Incomplete;
        }
        let parts = self.partial.remove(&job.job_id).unwrap_or_default();
        let document: Vec<u8> = parts.into_iter().flatten().flatten().collect();
        if document.len() as u64 != job.size {
            return Assembled::Refused {
                job_id: job.job_id,
                reason: format!("{} bytes received, {} announced", document.len(), job.size),
            };
        }
        Assembled::Whole { job, document }
    }
}

fn spawn_reader_watch(ctx: pcsc::Context, only: Option<String>, events: mpsc::Sender<DeviceEvent>) {
    std::thread::spawn(move || {
        let backoff = Backoff::default();
        let mut attempt = 0u32;
        let mut watcher = card::ReaderWatcher::new(ctx.clone(), only.as_deref());
        loop {
            if events.is_closed() {
                return;
            }
            match watcher.next_event(Duration::from_secs(1)) {
                Ok(Some(event)) => {
                    attempt = 0;
                    let out = match event {
                        ReaderEvent::CardInserted { reader, .. } => {
                            DeviceEvent::CardInserted { reader }
                        }
                        ReaderEvent::CardRemoved { reader } => DeviceEvent::CardRemoved { reader },
                        ReaderEvent::ReaderAdded(reader) => state(reader, DeviceStatus::Ready),
                        ReaderEvent::ReaderRemoved(reader) => state(reader, DeviceStatus::Absent),
                    };
                    if events.blocking_send(out).is_err() {
                        return;
                    }
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "card reader watch failed; restarting");
                    std::thread::sleep(backoff.delay(attempt));
                    attempt = attempt.saturating_add(1);
                    watcher = card::ReaderWatcher::new(ctx.clone(), only.as_deref());
                }
            }
        }
    });
}

fn state(id: String, status: DeviceStatus) -> DeviceEvent {
    DeviceEvent::State(DeviceStateReport {
        id,
        class: DeviceClass::CardReader,
        status,
    })
}

fn spawn_scanner(path: PathBuf, events: mpsc::Sender<DeviceEvent>) {
    let id = path.display().to_string();
    let handle = match Scanner::spawn(ScannerConfig::new(path)) {
        Ok(h) => h,
        Err(e) => {
            tracing::error!(error = %e, "scanner configuration refused");
            return;
        }
    };
    // The scanner's own thread reconnects; this one forwards its events and owns the
    // handle, so the scanner stops when nobody listens to the devices any more.
    std::thread::spawn(move || loop {
        if events.is_closed() {
            return;
        }
        let event = match handle.recv_timeout(Duration::from_millis(500)) {
            Ok(e) => e,
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => continue,
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => return,
        };
        let scanner_state = |status| {
            DeviceEvent::State(DeviceStateReport {
                id: id.clone(),
                class: DeviceClass::Scanner,
                status,
            })
        };
        let out = match event {
            ScannerEvent::Code(scan) => DeviceEvent::Scan(scan.into_result(id.clone())),
            ScannerEvent::Connected => scanner_state(DeviceStatus::Ready),
            ScannerEvent::Disconnected => scanner_state(DeviceStatus::Absent),
            ScannerEvent::Rejected { reason } => {
                tracing::warn!(%reason, "scan rejected");
                continue;
            }
        };
        if events.blocking_send(out).is_err() {
            return;
        }
    });
}
