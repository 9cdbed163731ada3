//! [`IppPrinter`]: an IPP Everywhere printer at `ipp://host[:port]/path`, through the
//! `ipp` crate's blocking client.
//!
//! Every answer is checked before use: HTTP and IPP status, request id, the attribute
//! types we rely on and their ranges. Anything else is a typed [`PrintError`], never a
//! panic.
//!
//! Reachability: the `ipp` client's connect timeout is a fixed 10 s, too long for a
//! staff screen, so each operation that may be the first contact opens (and drops) a
//! plain TCP connection with [`IppPrinter::connect_timeout`] first; a failure there is
//! [`PrintError::Unreachable`]. A connection that then gets no answer within the answer
//! timeout is [`PrintError::NoAnswer`]. [`Printer::status`] reports both as
//! [`PrinterStatus::Unreachable`].

use std::io::Cursor;
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::Duration;

use ipp::model::DelimiterTag;
use ipp::operation::IppOperation;
use ipp::prelude::{
    IppAttribute, IppClient, IppError, IppOperationBuilder, IppPayload, IppRequestResponse,
    IppValue, IppVersion, Operation, Uri,
};

use super::{
    JobHandle, JobPhase, JobState, PrintError, PrintRequest, Printer, PrinterState, PrinterStatus,
    Result, PDF_MIME,
};

/// `requesting-user-name` on every request: the appliance, never a staff member or a
/// resident (the printer may log it).
const USER_NAME: &str = "kakanai";

/// Default TCP connect timeout.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Default time for a printer to answer a small request.
pub const DEFAULT_ANSWER_TIMEOUT: Duration = Duration::from_secs(5);
/// Default time to upload a document and get the Print-Job answer (50 MB over a slow
/// Wi-Fi link).
pub const DEFAULT_SUBMIT_TIMEOUT: Duration = Duration::from_secs(120);

/// An IPP Everywhere printer.
#[derive(Debug, Clone)]
pub struct IppPrinter {
    uri: Uri,
    /// `host:port` for the reachability probe and messages.
    endpoint: String,
    connect_timeout: Duration,
    answer_timeout: Duration,
    submit_timeout: Duration,
}

impl IppPrinter {
    /// A printer at `ipp://host[:port]/path` (port 631 when absent). Only `ipp:` is
    /// accepted: `ipps:` needs a TLS feature of the `ipp` crate that is not built.
    pub fn new(uri: &str) -> Result<Self> {
        let bad = |why| PrintError::BadUri {
            uri: uri.to_owned(),
            why,
        };
        let parsed: Uri = uri.parse().map_err(|_| bad("not a URI"))?;
        if parsed.scheme_str() != Some("ipp") {
            return Err(bad("the scheme must be ipp"));
        }
        let host = parsed
            .host()
            .filter(|h| !h.is_empty())
            .ok_or(bad("no host"))?;
        if parsed.authority().is_some_and(|a| a.as_str().contains('@')) {
            return Err(bad("credentials in the URI are not supported"));
        }
        let port = parsed.port_u16().unwrap_or(631);
        let endpoint = if host.contains(':') && !host.starts_with('[') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        };
        Ok(Self {
            uri: parsed,
            endpoint,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            answer_timeout: DEFAULT_ANSWER_TIMEOUT,
            submit_timeout: DEFAULT_SUBMIT_TIMEOUT,
        })
    }

    /// Sets the TCP connect timeout (default 2 s).
    pub fn with_connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Sets the answer timeout for status, job and cancel requests (default 5 s).
    pub fn with_answer_timeout(mut self, timeout: Duration) -> Self {
        self.answer_timeout = timeout;
        self
    }

    /// Sets the timeout for uploading a document (default 120 s).
    pub fn with_submit_timeout(mut self, timeout: Duration) -> Self {
        self.submit_timeout = timeout;
        self
    }

    /// The printer URI.
    pub fn uri(&self) -> String {
        self.uri.to_string()
    }

    /// The connect timeout.
    pub fn connect_timeout(&self) -> Duration {
        self.connect_timeout
    }

    /// Pause-Printer: stop printing after the current job. ippeveprinter (CUPS 2.4) does
    /// not implement it and answers [`PrintError::NotSupported`].
    pub fn pause(&self) -> Result<()> {
        self.printer_operation(Operation::PausePrinter, "Pause-Printer")
    }

    /// Resume-Printer.
    pub fn resume(&self) -> Result<()> {
        self.printer_operation(Operation::ResumePrinter, "Resume-Printer")
    }

    fn printer_operation(&self, op: Operation, name: &'static str) -> Result<()> {
        let mut request = IppRequestResponse::new(IppVersion::v1_1(), op, Some(self.uri.clone()))
            .map_err(|e| malformed_request(name, e))?;
        let user = IppValue::new_name_without_language(USER_NAME)
            .and_then(|v| IppAttribute::with_name("requesting-user-name", v))
            .map_err(|e| malformed_request(name, e))?;
        request
            .attributes_mut()
            .add(DelimiterTag::OperationAttributes, user);
        self.probe()?;
        self.send(name, request, self.answer_timeout).map(|_| ())
    }

    /// Opens a TCP connection (dropped at once) to tell "unreachable" quickly.
    fn probe(&self) -> Result<()> {
        let unreachable = |detail: String| PrintError::Unreachable {
            endpoint: self.endpoint.clone(),
            detail,
        };
        let addrs: Vec<SocketAddr> = self
            .endpoint
            .to_socket_addrs()
            .map_err(|e| unreachable(format!("resolving: {e}")))?
            .collect();
        let mut last = "no address".to_owned();
        for addr in addrs {
            match TcpStream::connect_timeout(&addr, self.connect_timeout) {
                Ok(_) => return Ok(()),
                Err(e) => last = e.to_string(),
            }
        }
        Err(unreachable(last))
    }

    /// Sends a request and checks the HTTP exchange, the request id and the IPP status.
    fn send(
        &self,
        operation: &'static str,
        request: IppRequestResponse,
        timeout: Duration,
    ) -> Result<IppRequestResponse> {
        let request_id = request.header().request_id;
        let client = IppClient::builder(self.uri.clone())
            .request_timeout(timeout)
            .build();
        let response = client.send(request).map_err(|e| self.transport_error(e))?;
        let header = response.header();
        if header.request_id != request_id {
            return Err(PrintError::Malformed(format!(
                "{operation}: answer to request {} instead of {request_id}",
                header.request_id
            )));
        }
        if header.version.0 >> 8 == 0 {
            return Err(PrintError::Malformed(format!(
                "{operation}: IPP version 0x{:04x}",
                header.version.0
            )));
        }
        // The raw code, not the crate's enum: a successful code unknown to the crate
        // (0x0000–0x00ff) is still a success (RFC 8011 §4.1.6).
        let code = header.operation_or_status as u16;
        if code <= 0x00ff {
            return Ok(response);
        }
        let status = header.status_code();
        Err(match code {
            0x0501 => PrintError::NotSupported(operation),
            0x0507 => PrintError::Busy,
            _ => PrintError::Refused {
                operation,
                code,
                status: status.to_string(),
            },
        })
    }

    fn transport_error(&self, e: IppError) -> PrintError {
        match e {
            IppError::ParseError(e) => PrintError::Malformed(e.to_string()),
            IppError::MissingAttribute | IppError::InvalidAttributeType => {
                PrintError::Malformed(e.to_string())
            }
            IppError::ClientError(e) => {
                let text = e.to_string();
                // ureq's Timeout variant displays as "timeout: ..."; naming the type
                // would need ureq as a direct dependency. The no-answer test pins this.
                if text.starts_with("timeout") {
                    return PrintError::NoAnswer {
                        endpoint: self.endpoint.clone(),
                    };
                }
                let io = e.into_io();
                match io.kind() {
                    std::io::ErrorKind::ConnectionRefused
                    | std::io::ErrorKind::HostUnreachable
                    | std::io::ErrorKind::NetworkUnreachable => PrintError::Unreachable {
                        endpoint: self.endpoint.clone(),
                        detail: io.to_string(),
                    },
                    std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock => {
                        PrintError::NoAnswer {
                            endpoint: self.endpoint.clone(),
                        }
                    }
                    _ => PrintError::Http(text),
                }
            }
            IppError::IoError(io) => PrintError::Http(io.to_string()),
            other => PrintError::Http(other.to_string()),
        }
    }

    fn job_id(&self, job: &JobHandle) -> Result<i32> {
        i32::try_from(job.id()).map_err(|_| PrintError::UnknownJob(job.id()))
    }
}

/// Our own request could not be encoded: only caller input the IPP encoder refuses
/// (e.g. a URI longer than 1023 bytes) gets here.
fn malformed_request(operation: &'static str, e: impl std::fmt::Display) -> PrintError {
    PrintError::Encode(format!("{operation}: {e}"))
}

/// The value of `name` in the first group tagged `tag`.
fn find<'a>(
    response: &'a IppRequestResponse,
    tag: DelimiterTag,
    name: &str,
) -> Option<&'a IppValue> {
    response
        .attributes()
        .groups_of(tag)
        .find_map(|g| g.get(name))
        .map(IppAttribute::value)
}

fn integer(v: &IppValue) -> Option<i32> {
    match v {
        IppValue::Integer(i) | IppValue::Enum(i) => Some(*i),
        _ => None,
    }
}

/// Keyword values of a `1setOf keyword` attribute; strict: every value must be a keyword.
fn keywords(v: &IppValue, what: &str) -> Result<Vec<String>> {
    let one = |v: &IppValue| match v {
        IppValue::Keyword(k) => Ok(k.as_str().to_owned()),
        other => Err(PrintError::Malformed(format!(
            "{what}: expected keywords, got tag 0x{:02x}",
            other.to_tag()
        ))),
    };
    match v {
        IppValue::Array(values) => values.iter().map(one).collect(),
        single => Ok(vec![one(single)?]),
    }
}

fn text(v: &IppValue) -> Option<String> {
    match v {
        IppValue::TextWithoutLanguage(t) => Some(t.to_string()),
        IppValue::TextWithLanguage { text, .. } => Some(text.to_string()),
        _ => None,
    }
    .map(|t| t.trim().to_owned())
    .filter(|t| !t.is_empty())
}

/// Reads a Get-Job-Attributes (or Print-Job) answer's job group.
fn parse_job_state(response: &IppRequestResponse) -> Result<JobState> {
    let raw = find(response, DelimiterTag::JobAttributes, "job-state")
        .ok_or_else(|| PrintError::Malformed("no job-state".into()))?;
    let value =
        integer(raw).ok_or_else(|| PrintError::Malformed("job-state is not an enum".into()))?;
    let phase = JobPhase::from_ipp(value)
        .ok_or_else(|| PrintError::Malformed(format!("job-state {value} out of range")))?;
    let reasons = match find(response, DelimiterTag::JobAttributes, "job-state-reasons") {
        Some(v) => keywords(v, "job-state-reasons")?
            .into_iter()
            .filter(|k| k != "none")
            .collect(),
        None => Vec::new(),
    };
    let message = find(response, DelimiterTag::JobAttributes, "job-state-message").and_then(text);
    let pages_completed = find(
        response,
        DelimiterTag::JobAttributes,
        "job-impressions-completed",
    )
    .and_then(integer)
    .and_then(|n| u32::try_from(n).ok())
    .filter(|n| *n > 0);
    Ok(JobState {
        phase,
        reasons,
        message,
        pages_completed,
    })
}

/// Reads a Get-Printer-Attributes answer.
fn parse_printer_status(response: &IppRequestResponse) -> Result<PrinterStatus> {
    let raw = find(response, DelimiterTag::PrinterAttributes, "printer-state")
        .ok_or_else(|| PrintError::Malformed("no printer-state".into()))?;
    let value =
        integer(raw).ok_or_else(|| PrintError::Malformed("printer-state is not an enum".into()))?;
    let state = PrinterState::from_ipp(value)
        .ok_or_else(|| PrintError::Malformed(format!("printer-state {value} out of range")))?;
    let reasons = match find(
        response,
        DelimiterTag::PrinterAttributes,
        "printer-state-reasons",
    ) {
        Some(v) => keywords(v, "printer-state-reasons")?,
        None => Vec::new(),
    };
    Ok(PrinterStatus::from_ipp(
        state,
        reasons.iter().map(String::as_str),
    ))
}

impl Printer for IppPrinter {
    fn submit(&self, job: &PrintRequest) -> Result<JobHandle> {
        // PrintRequest is validated on construction; check again because this is the
        // last point before bytes leave the appliance.
        super::validate_pdf(job.document())?;
        let copies = IppAttribute::with_name("copies", IppValue::Integer(i32::from(job.copies())))
            .map_err(|e| malformed_request("Print-Job", e))?;
        let payload = IppPayload::new(Cursor::new(job.document().to_vec()));
        let operation = IppOperationBuilder::print_job(self.uri.clone(), payload)
            .user_name(USER_NAME)
            .job_title(job.job_name())
            .document_format(PDF_MIME)
            .attribute(copies)
            .build()
            .map_err(|e| malformed_request("Print-Job", e))?;
        let request = operation.into_ipp_request();
        self.probe()?;
        let response = self.send("Print-Job", request, self.submit_timeout)?;
        let raw = find(&response, DelimiterTag::JobAttributes, "job-id")
            .ok_or_else(|| PrintError::Malformed("Print-Job: no job-id".into()))?;
        let id = integer(raw)
            .and_then(|i| u32::try_from(i).ok())
            .filter(|i| *i > 0)
            .ok_or_else(|| {
                PrintError::Malformed("Print-Job: job-id is not a positive integer".into())
            })?;
        tracing::debug!(job = id, bytes = job.document().len(), "job submitted");
        Ok(JobHandle::new(id))
    }

    fn job_status(&self, job: &JobHandle) -> Result<JobState> {
        let id = self.job_id(job)?;
        let request = IppOperationBuilder::get_job_attributes(self.uri.clone(), id)
            .user_name(USER_NAME)
            .build()
            .map_err(|e| malformed_request("Get-Job-Attributes", e))?
            .into_ipp_request();
        match self.send("Get-Job-Attributes", request, self.answer_timeout) {
            Ok(response) => parse_job_state(&response),
            Err(PrintError::Refused { code: 0x0406, .. }) => Err(PrintError::UnknownJob(job.id())),
            Err(e) => Err(e),
        }
    }

    fn status(&self) -> Result<PrinterStatus> {
        match self.probe() {
            Ok(()) => {}
            Err(PrintError::Unreachable { endpoint, detail }) => {
                tracing::debug!(%endpoint, %detail, "printer unreachable");
                return Ok(PrinterStatus::Unreachable);
            }
            Err(e) => return Err(e),
        }
        let request = IppOperationBuilder::get_printer_attributes(self.uri.clone())
            .attributes([
                "printer-state",
                "printer-state-reasons",
                "printer-state-message",
            ])
            .build()
            .map_err(|e| malformed_request("Get-Printer-Attributes", e))?
            .into_ipp_request();
        match self.send("Get-Printer-Attributes", request, self.answer_timeout) {
            Ok(response) => parse_printer_status(&response),
            Err(PrintError::Unreachable { .. } | PrintError::NoAnswer { .. }) => {
                Ok(PrinterStatus::Unreachable)
            }
            Err(e) => Err(e),
        }
    }

    fn cancel(&self, job: &JobHandle) -> Result<()> {
        let id = self.job_id(job)?;
        let request = IppOperationBuilder::cancel_job(self.uri.clone(), id)
            .user_name(USER_NAME)
            .build()
            .map_err(|e| malformed_request("Cancel-Job", e))?
            .into_ipp_request();
        match self.send("Cancel-Job", request, self.answer_timeout) {
            Ok(_) => Ok(()),
            // client-error-not-possible: ippeveprinter's answer for a job that already
            // completed, aborted or was cancelled.
            Err(PrintError::Refused { code: 0x0404, .. }) => Err(PrintError::JobFinished(job.id())),
            Err(PrintError::Refused { code: 0x0406, .. }) => Err(PrintError::UnknownJob(job.id())),
            Err(e) => Err(e),
        }
    }
}
