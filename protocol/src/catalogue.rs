//! The message catalogue: every [`Kind`] of message the appliance and the control
//! plane exchange, with its typed [`Body`].
//!
//! The kind names the last topic segment (`…/up/card-read`) and the `kind` field of
//! the signed payload. Features that need new request/response exchanges add an
//! [`RpcMethod`] and travel as [`RpcRequest`] / [`RpcResponse`]: the envelope and
//! this list of kinds do not change for them.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::envelope::MessageId;
use crate::error::ProtocolError;
use crate::personal::CardFace;
use crate::topic::Direction;

/// Declares the kinds: wire name, direction, body type.
macro_rules! kinds {
    ($( $(#[$doc:meta])* $variant:ident = $name:literal, $dir:ident, $body:ty; )+) => {
        /// The kind of a message: its last topic segment and its body's type.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Kind {
            $( $(#[$doc])* $variant, )+
        }

        impl Kind {
            /// Every kind, in catalogue order.
            pub const ALL: &'static [Kind] = &[$(Kind::$variant),+];

            /// The wire name of the kind.
            pub fn name(self) -> &'static str {
                match self { $(Kind::$variant => $name,)+ }
            }

            /// The kind with this wire name.
            pub fn from_name(name: &str) -> Result<Self, ProtocolError> {
                match name {
                    $($name => Ok(Kind::$variant),)+
                    other => Err(ProtocolError::UnknownKind(other.chars().take(64).collect())),
                }
            }

            /// Which way messages of this kind travel.
            pub fn direction(self) -> Direction {
                match self { $(Kind::$variant => Direction::$dir,)+ }
            }
        }

        /// The typed body of a message.
        #[derive(Debug, Clone, PartialEq)]
        pub enum Body {
            $( $(#[$doc])* $variant($body), )+
        }

        impl Body {
            /// The kind of this body.
            pub fn kind(&self) -> Kind {
                match self { $(Body::$variant(_) => Kind::$variant,)+ }
            }

            /// The body as a CBOR value.
            pub(crate) fn to_value(&self) -> Result<ciborium::Value, ProtocolError> {
                let value = match self { $(Body::$variant(b) => ciborium::Value::serialized(b),)+ };
                value.map_err(|e| ProtocolError::Body { kind: self.kind().name(), reason: e.to_string() })
            }

            /// The body of a `kind` message from a CBOR value.
            pub(crate) fn from_value(kind: Kind, value: ciborium::Value) -> Result<Self, ProtocolError> {
                let body = match kind {
                    $(Kind::$variant => value.deserialized::<$body>().map(Body::$variant),)+
                };
                body.map_err(|e| ProtocolError::Body { kind: kind.name(), reason: e.to_string() })
            }

            /// The body as JSON for diagnostics (personal data redacted).
            pub fn to_diagnostic_json(&self) -> serde_json::Value {
                let value = match self { $(Body::$variant(b) => serde_json::to_value(b),)+ };
                let mut json = value.unwrap_or(serde_json::Value::Null);
                self.redact_opaque(&mut json);
                json
            }
        }
    };
}

kinds! {
    /// Birth and presence: the appliance's state, boot counter and device
    /// inventory, retained at `…/presence` (the broker's will marks it offline).
    Presence = "presence", Presence, Presence;
    /// A device changed state (reader attached, printer out of paper …).
    DeviceState = "device-state", Up, DeviceStateReport;
    /// Application-level acknowledgement of a message by id, either way.
    Ack = "ack", Both, Ack;
    /// An RPC request from the appliance to the control plane.
    RpcRequest = "rpc-req", Up, RpcRequest;
    /// The control plane's answer to an [`Kind::RpcRequest`].
    RpcResponse = "rpc-res", Down, RpcResponse;
    /// The outcome of reading a card on the counter's reader.
    CardRead = "card-read", Up, CardRead;
    /// A document for the counter printer.
    PrintJob = "print-job", Down, PrintJob;
    /// Progress and outcome of a print job.
    PrintStatus = "print-status", Up, PrintStatus;
    /// A 2-D or 1-D code read by the counter scanner.
    Scan = "scan", Up, ScanResult;
    /// The configuration the control plane wants the appliance to run.
    ConfigDesired = "config-desired", Down, ConfigDesired;
    /// The configuration the appliance runs.
    ConfigReported = "config-reported", Up, ConfigReported;
    /// An operation central IT asks of an appliance: send its recent logs, or
    /// restart (what a fleet agent such as thin-edge.io does).
    Operation = "operation", Down, Operation;
    /// The outcome of an [`Kind::Operation`], naming the command.
    OperationResult = "operation-result", Up, OperationResult;
}

impl Body {
    /// Whether the body may carry personal data: a card's face, a scanned code, a
    /// document to print, or RPC parameters and results (whose content is defined
    /// by each method, so treated as personal).
    pub fn carries_personal_data(&self) -> bool {
        match self {
            Body::CardRead(r) => r.outcome.is_ok(),
            Body::Scan(_) | Body::RpcRequest(_) => true,
            Body::RpcResponse(r) => matches!(r.outcome, RpcOutcome::Ok(_)),
            Body::PrintJob(j) => matches!(j.source, DocumentSource::Inline { .. }),
            Body::Presence(_)
            | Body::DeviceState(_)
            | Body::Ack(_)
            | Body::PrintStatus(_)
            | Body::ConfigDesired(_)
            | Body::ConfigReported(_)
            | Body::Operation(_)
            // Log lines: the appliance logs no personal data (ARCHITECTURE.md).
            | Body::OperationResult(_) => false,
        }
    }

    /// Replaces opaque contents (RPC values, scanned data, documents) in the
    /// diagnostic JSON: they have no typed redaction of their own.
    fn redact_opaque(&self, json: &mut serde_json::Value) {
        use crate::personal::REDACTED;
        let hide = |v: Option<&mut serde_json::Value>| {
            if let Some(v) = v {
                *v = serde_json::Value::String(REDACTED.into());
            }
        };
        match self {
            Body::RpcRequest(_) => {
                hide(json.get_mut("params"));
                // A session token is a bearer secret.
                if json.get("session").is_some() {
                    hide(json.get_mut("session"));
                }
            }
            Body::RpcResponse(_) => hide(json.pointer_mut("/outcome/ok")),
            Body::Scan(_) => hide(json.get_mut("data")),
            Body::PrintJob(_) => hide(json.pointer_mut("/source/data")),
            _ => {}
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Whether the appliance is up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PresenceState {
    /// Connected and serving its counter.
    Online,
    /// Gone (sent as the MQTT will, or on orderly shutdown).
    Offline,
}

/// Birth/presence of an appliance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Presence {
    /// Online or offline.
    pub state: PresenceState,
    /// Incremented at every start of the appliance; tells a restart from a
    /// reconnect.
    pub boot_counter: u64,
    /// The appliance's software version.
    pub software_version: String,
    /// The devices attached at the time of the message.
    pub devices: Vec<DeviceInfo>,
}

/// What a device is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DeviceClass {
    /// A PC/SC card reader.
    CardReader,
    /// An IPP printer.
    Printer,
    /// A barcode / 2-D code scanner.
    Scanner,
    /// Status lights and buttons.
    Lights,
}

/// How a device is doing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "state")]
pub enum DeviceStatus {
    /// Ready for work.
    Ready,
    /// Working.
    Busy,
    /// Configured but not attached.
    Absent,
    /// Attached but failing; `code` is stable, `detail` is for people.
    Error {
        /// A stable error code (`media-empty`, `reader-io` …).
        code: String,
        /// A human explanation, never personal data.
        detail: String,
    },
}

/// One device of the inventory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceInfo {
    /// A name stable across restarts (reader name, printer URI host …).
    pub id: String,
    /// The class of device.
    pub class: DeviceClass,
    /// Make and model as the device reports it.
    pub model: String,
    /// Current status.
    pub status: DeviceStatus,
}

/// A device's new state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceStateReport {
    /// The device's id as in [`DeviceInfo::id`].
    pub id: String,
    /// Its class.
    pub class: DeviceClass,
    /// Its status now.
    pub status: DeviceStatus,
}

/// The outcome an acknowledgement reports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "status")]
pub enum AckStatus {
    /// Taken and stored; the sender may drop it from its outbox.
    Accepted,
    /// Already taken before (same message id); the sender may drop it too.
    Duplicate,
    /// Refused for good; resending will not help.
    Rejected {
        /// Why, never personal data.
        reason: String,
    },
}

/// Application-level acknowledgement of a message by id, or of several messages of
/// one sender that met the same fate (`also`): under load the control plane acks a
/// whole batch with one signed message instead of signing one per message.
///
/// `also` is left out of the encoding when empty, so a single ack encodes as it
/// always has. A receiver that does not know the field ignores it (unknown keys are
/// ignored) and re-sends the messages it names; those come back as duplicates.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ack {
    /// The acknowledged message (the first, when there are several).
    pub of: MessageId,
    /// What happened to it (and to every message in `also`).
    pub status: AckStatus,
    /// Further messages acknowledged with the same status.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub also: Vec<MessageId>,
}

impl Ack {
    /// An ack of one message.
    pub fn of(of: MessageId, status: AckStatus) -> Self {
        Self {
            of,
            status,
            also: Vec::new(),
        }
    }

    /// Every message this ack answers for: `of`, then `also`.
    pub fn ids(&self) -> impl Iterator<Item = MessageId> + '_ {
        std::iter::once(self.of).chain(self.also.iter().copied())
    }

    /// Whether this ack answers for `id`.
    pub fn covers(&self, id: &MessageId) -> bool {
        self.ids().any(|i| i == *id)
    }
}

/// An RPC method: a name and its request and response types.
///
/// ```
/// use kakanai_protocol::catalogue::{Ping, RpcRequest, RpcMethod};
/// let req = RpcRequest::new::<Ping>(&"hello".to_string()).unwrap();
/// assert_eq!(req.method, "ping");
/// assert_eq!(req.params::<Ping>().unwrap(), "hello");
/// ```
pub trait RpcMethod {
    /// The method's wire name.
    const NAME: &'static str;
    /// The request's parameters.
    type Request: Serialize + DeserializeOwned;
    /// The successful result.
    type Response: Serialize + DeserializeOwned;
}

/// Liveness check that echoes its text: the simplest RPC.
#[derive(Debug)]
pub struct Ping;

impl RpcMethod for Ping {
    const NAME: &'static str = "ping";
    type Request = String;
    type Response = String;
}

/// A request naming a method and carrying its parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RpcRequest {
    /// The method's name ([`RpcMethod::NAME`]).
    pub method: String,
    /// The method's parameters, as CBOR.
    pub params: ciborium::Value,
    /// The staff session the request is made in (absent before login). The control
    /// plane accepts it only from the appliance the session was opened on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<String>,
}

impl RpcRequest {
    /// A request for method `M`.
    pub fn new<M: RpcMethod>(params: &M::Request) -> Result<Self, ProtocolError> {
        Ok(Self {
            method: M::NAME.to_owned(),
            params: to_value(params, "rpc-req")?,
            session: None,
        })
    }

    /// The same request made in staff session `token`.
    pub fn in_session(mut self, token: impl Into<String>) -> Self {
        self.session = Some(token.into());
        self
    }

    /// The parameters, if this is a request for `M`.
    pub fn params<M: RpcMethod>(&self) -> Result<M::Request, ProtocolError> {
        check_method::<M>(&self.method, "rpc-req")?;
        from_value(&self.params, "rpc-req")
    }
}

/// Why an RPC failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RpcError {
    /// Stable code (`unknown-method`, `forbidden`, `invalid-params`, `internal` …).
    pub code: String,
    /// Human explanation, never personal data.
    pub message: String,
}

/// The answer to an [`RpcRequest`]; the envelope's correlation id names the request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RpcResponse {
    /// The method answered.
    pub method: String,
    /// The result or the error.
    pub outcome: RpcOutcome,
}

/// Result or error of an RPC.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RpcOutcome {
    /// The method's result, as CBOR.
    Ok(ciborium::Value),
    /// The failure.
    Err(RpcError),
}

impl RpcResponse {
    /// A successful answer for method `M`.
    pub fn ok<M: RpcMethod>(result: &M::Response) -> Result<Self, ProtocolError> {
        Ok(Self {
            method: M::NAME.to_owned(),
            outcome: RpcOutcome::Ok(to_value(result, "rpc-res")?),
        })
    }

    /// A failed answer.
    pub fn err(method: &str, code: &str, message: &str) -> Self {
        Self {
            method: method.to_owned(),
            outcome: RpcOutcome::Err(RpcError {
                code: code.to_owned(),
                message: message.to_owned(),
            }),
        }
    }

    /// The typed result, if this answers `M`.
    pub fn result<M: RpcMethod>(&self) -> Result<Result<M::Response, RpcError>, ProtocolError> {
        check_method::<M>(&self.method, "rpc-res")?;
        match &self.outcome {
            RpcOutcome::Ok(v) => from_value(v, "rpc-res").map(Ok),
            RpcOutcome::Err(e) => Ok(Err(e.clone())),
        }
    }
}

fn check_method<M: RpcMethod>(method: &str, kind: &'static str) -> Result<(), ProtocolError> {
    if method == M::NAME {
        Ok(())
    } else {
        Err(ProtocolError::Body {
            kind,
            reason: format!("method is not {}", M::NAME),
        })
    }
}

fn to_value<T: Serialize>(v: &T, kind: &'static str) -> Result<ciborium::Value, ProtocolError> {
    ciborium::Value::serialized(v).map_err(|e| ProtocolError::Body {
        kind,
        reason: e.to_string(),
    })
}

fn from_value<T: DeserializeOwned>(
    v: &ciborium::Value,
    kind: &'static str,
) -> Result<T, ProtocolError> {
    v.deserialized().map_err(|e| ProtocolError::Body {
        kind,
        reason: e.to_string(),
    })
}

/// Which card was on the reader.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CardType {
    /// マイナンバーカード.
    MyNumberCard,
    /// 住民基本台帳カード (older card).
    JukiCard,
    /// 運転免許証.
    DriversLicence,
    /// Anything else.
    Unknown,
}

/// Why a card read failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "error")]
pub enum CardReadError {
    /// Wrong PIN; the card allows `remaining` more tries.
    PinIncorrect {
        /// Tries left.
        remaining: u8,
    },
    /// The PIN is locked; only the city office can unlock it.
    PinLocked,
    /// The card was removed during the read.
    CardRemoved,
    /// The card is not one we can read.
    Unsupported,
    /// The reader or card failed; `detail` never holds personal data.
    Io {
        /// What failed.
        detail: String,
    },
}

/// The outcome of reading a card.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CardRead {
    /// The reader's id.
    pub reader: String,
    /// The card that was present.
    pub card: CardType,
    /// The face, or why it could not be read.
    pub outcome: Result<CardFace, CardReadError>,
}

/// How a document reaches the printer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "by")]
pub enum DocumentSource {
    /// The document's bytes (or one chunk of them) in this message.
    Inline {
        /// The bytes.
        #[serde(with = "serde_bytes_compat")]
        data: Vec<u8>,
        /// Index of this chunk, from 0.
        chunk: u32,
        /// Number of chunks of the whole document.
        chunks: u32,
    },
    /// Fetch the document by its SHA-256 over an RPC.
    ByHash {
        /// SHA-256 of the whole document.
        #[serde(with = "serde_bytes_compat")]
        sha256: Vec<u8>,
    },
}

/// A document for the counter printer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrintJob {
    /// The job's id, chosen by the control plane.
    pub job_id: String,
    /// Title shown in the printer's queue: never personal data.
    pub title: String,
    /// MIME type (`application/pdf`).
    pub media_type: String,
    /// Total size of the document in bytes.
    pub size: u64,
    /// Copies to print.
    pub copies: u16,
    /// Where the bytes are.
    pub source: DocumentSource,
}

/// State of a print job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "state")]
pub enum PrintState {
    /// Accepted by the appliance, waiting for the printer.
    Queued,
    /// The printer is working on it.
    Printing,
    /// Printed.
    Completed {
        /// Sheets printed, when the printer says.
        pages: Option<u32>,
    },
    /// Failed; `reason` is for staff.
    Failed {
        /// Why.
        reason: String,
    },
    /// Cancelled by staff.
    Cancelled,
}

/// Progress of a print job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrintStatus {
    /// The job.
    pub job_id: String,
    /// Its state.
    pub state: PrintState,
}

/// Symbology of a scanned code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Symbology {
    /// QR code.
    Qr,
    /// Code 128.
    Code128,
    /// Anything else or not reported.
    Other,
}

/// A code read by the scanner. Its data may be personal (a form's 2-D code), so
/// `Debug` shows only its length.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScanResult {
    /// The scanner's id.
    pub scanner: String,
    /// The symbology.
    pub symbology: Symbology,
    /// The decoded bytes.
    #[serde(with = "serde_bytes_compat")]
    pub data: Vec<u8>,
}

impl fmt::Debug for ScanResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScanResult")
            .field("scanner", &self.scanner)
            .field("symbology", &self.symbology)
            .field("data_len", &self.data.len())
            .finish()
    }
}

/// Configuration the control plane wants an appliance to run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConfigDesired {
    /// Increases with every change; the appliance reports the version it applied.
    pub version: u64,
    /// Settings by name.
    pub settings: BTreeMap<String, ciborium::Value>,
}

/// Configuration an appliance runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConfigReported {
    /// The version applied.
    pub version: u64,
    /// Settings by name, as applied.
    pub settings: BTreeMap<String, ciborium::Value>,
    /// Settings that could not be applied, with the reason.
    pub rejected: BTreeMap<String, String>,
}

/// Most log lines an [`Operation::Logs`] may ask for.
pub const MAX_LOG_LINES: u32 = 5000;

/// Longest text of one [`LogLine`], in bytes (longer ones are cut at a character
/// boundary and end with `…`).
pub const MAX_LOG_LINE_BYTES: usize = 1024;

/// Most bytes of log text in one [`OperationResult`]: with the envelope and the
/// signature the message stays well under [`crate::limits::MAX_MESSAGE_BYTES`].
pub const MAX_LOG_EXCERPT_BYTES: usize = 192 * 1024;

/// What central IT asks an appliance to do (a command: it carries an expiry, runs
/// once, and is answered by an [`OperationResult`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "op")]
pub enum Operation {
    /// Send the most recent log lines the appliance holds in memory.
    Logs {
        /// Only lines at or after this time (Unix ms).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        since_ms: Option<i64>,
        /// At most this many lines, the newest (1 to [`MAX_LOG_LINES`]).
        max_lines: u32,
    },
    /// Report, flush, stop in order and let the service manager start the
    /// appliance again.
    Restart {
        /// Why, for the appliance's log and the audit (never personal data).
        reason: String,
    },
}

impl Operation {
    /// The operation's name (`logs`, `restart`), for logs and audit entries.
    pub fn name(&self) -> &'static str {
        match self {
            Operation::Logs { .. } => "logs",
            Operation::Restart { .. } => "restart",
        }
    }

    /// Checks the operation's limits; the error says what is wrong.
    pub fn check(&self) -> Result<(), String> {
        match self {
            Operation::Logs { max_lines, .. } if !(1..=MAX_LOG_LINES).contains(max_lines) => Err(
                format!("max_lines must be 1 to {MAX_LOG_LINES}, not {max_lines}"),
            ),
            Operation::Restart { reason } if reason.len() > MAX_LOG_LINE_BYTES => Err(format!(
                "the reason is longer than {MAX_LOG_LINE_BYTES} bytes"
            )),
            _ => Ok(()),
        }
    }
}

/// Whether an operation was carried out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OperationStatus {
    /// Done (for a restart: the appliance is about to stop and be started again).
    Done,
    /// Not done; the result's message says why.
    Failed,
}

/// One structured log line of the appliance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogLine {
    /// When (Unix ms).
    pub time_ms: i64,
    /// `ERROR`, `WARN`, `INFO`, `DEBUG` or `TRACE`.
    pub level: String,
    /// The module that logged it.
    pub target: String,
    /// The message and its fields (`key=value`), at most [`MAX_LOG_LINE_BYTES`].
    pub text: String,
}

impl LogLine {
    fn wire_cost(&self) -> usize {
        // Text plus the other fields and CBOR framing, roughly.
        self.text.len() + self.target.len() + self.level.len() + 32
    }
}

/// The outcome of an [`Operation`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OperationResult {
    /// The operation command's message id.
    pub command_id: MessageId,
    /// Done or failed.
    pub status: OperationStatus,
    /// For [`Operation::Logs`]: the lines, oldest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub logs: Vec<LogLine>,
    /// Whether older lines asked for were left out to stay within
    /// [`MAX_LOG_EXCERPT_BYTES`] (or the appliance no longer held them).
    #[serde(default)]
    pub truncated: bool,
    /// For people: what happened (never personal data).
    pub message: String,
}

/// Cuts `lines` (oldest first) to an excerpt that fits one message: every text at
/// most [`MAX_LOG_LINE_BYTES`], the newest lines kept while their total stays within
/// [`MAX_LOG_EXCERPT_BYTES`]. Returns the excerpt and whether lines were dropped.
pub fn fit_log_excerpt(lines: Vec<LogLine>) -> (Vec<LogLine>, bool) {
    let total = lines.len();
    let mut budget = MAX_LOG_EXCERPT_BYTES;
    let mut kept = Vec::new();
    for mut line in lines.into_iter().rev() {
        truncate_text(&mut line.text, MAX_LOG_LINE_BYTES);
        truncate_text(&mut line.target, 128);
        let cost = line.wire_cost();
        if cost > budget {
            break;
        }
        budget -= cost;
        kept.push(line);
    }
    kept.reverse();
    let dropped = kept.len() < total;
    (kept, dropped)
}

fn truncate_text(text: &mut String, max: usize) {
    if text.len() <= max {
        return;
    }
    let mut end = max.saturating_sub('…'.len_utf8());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.truncate(end);
    text.push('…');
}

/// Byte strings as CBOR byte strings (major type 2) in binary formats and hex in
/// human-readable ones, without another dependency.
pub(crate) mod serde_bytes_compat {
    use serde::de::{self, Visitor};
    use serde::{Deserializer, Serializer};
    use std::fmt;

    pub(crate) fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            s.serialize_str(&hex::encode(bytes))
        } else {
            s.serialize_bytes(bytes)
        }
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        struct Bytes;
        impl<'de> Visitor<'de> for Bytes {
            type Value = Vec<u8>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a byte string")
            }
            fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Vec<u8>, E> {
                Ok(v.to_vec())
            }
            fn visit_byte_buf<E: de::Error>(self, v: Vec<u8>) -> Result<Vec<u8>, E> {
                Ok(v)
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Vec<u8>, E> {
                hex::decode(v).map_err(E::custom)
            }
        }
        if d.is_human_readable() {
            d.deserialize_str(Bytes)
        } else {
            d.deserialize_bytes(Bytes)
        }
    }
}

#[cfg(test)]
mod operation_tests {
    use super::*;
    use crate::envelope::Envelope;
    use crate::limits::MAX_MESSAGE_BYTES;

    fn line(n: usize, text: String) -> LogLine {
        LogLine {
            time_ms: 1_795_000_000_000 + n as i64,
            level: "INFO".into(),
            target: "kakanai_appliance::link".into(),
            text,
        }
    }

    #[test]
    fn a_full_log_excerpt_fits_one_message_and_keeps_the_newest_lines() {
        // Japanese text of more than the line limit, so every line is cut.
        let lines: Vec<_> = (0..MAX_LOG_LINES as usize)
            .map(|n| line(n, format!("{n} {}", "接続".repeat(400))))
            .collect();
        let (excerpt, dropped) = fit_log_excerpt(lines);
        assert!(dropped);
        assert!(excerpt.iter().all(|l| l.text.len() <= MAX_LOG_LINE_BYTES));
        assert!(excerpt.iter().all(|l| l.text.ends_with('…')));
        let last = excerpt.last().unwrap();
        assert!(last.text.starts_with(&format!("{} ", MAX_LOG_LINES - 1)));
        let body = Body::OperationResult(OperationResult {
            command_id: MessageId::from_bytes([1; 16]),
            status: OperationStatus::Done,
            logs: excerpt,
            truncated: dropped,
            message: String::new(),
        });
        let encoded = Envelope::new(1, 0, body).unwrap().encode().unwrap();
        assert!(
            encoded.len() < MAX_MESSAGE_BYTES - 1024,
            "{}",
            encoded.len()
        );
    }

    #[test]
    fn a_short_excerpt_is_left_whole() {
        let lines = vec![line(0, "a".into()), line(1, "b".into())];
        let (excerpt, dropped) = fit_log_excerpt(lines.clone());
        assert_eq!(excerpt, lines);
        assert!(!dropped);
    }

    #[test]
    fn operation_limits_are_checked() {
        let logs = |max_lines| Operation::Logs {
            since_ms: None,
            max_lines,
        };
        assert!(logs(0).check().is_err());
        assert!(logs(MAX_LOG_LINES + 1).check().is_err());
        assert!(logs(100).check().is_ok());
        let long = Operation::Restart {
            reason: "x".repeat(MAX_LOG_LINE_BYTES + 1),
        };
        assert!(long.check().is_err());
    }
}

#[cfg(test)]
mod ack_tests {
    use super::*;
    use crate::envelope::Envelope;

    fn id(n: u8) -> MessageId {
        MessageId::from_bytes([n; 16])
    }

    #[test]
    fn a_single_ack_encodes_as_before_and_a_batch_names_every_message() {
        let single = Envelope::new(
            1,
            1_795_000_000_000,
            Body::Ack(Ack::of(id(1), AckStatus::Accepted)),
        )
        .unwrap();
        let bytes = single.encode().unwrap();
        // No `also` key on the wire for one message: older receivers see what they
        // always saw.
        let value: ciborium::Value = ciborium::from_reader(&bytes[..]).unwrap();
        let text = format!("{value:?}");
        assert!(!text.contains("also"), "{text}");

        let batch = Ack {
            of: id(1),
            status: AckStatus::Duplicate,
            also: vec![id(2), id(3)],
        };
        let env = Envelope::new(2, 1_795_000_000_000, Body::Ack(batch.clone())).unwrap();
        let back = Envelope::decode(&env.encode().unwrap()).unwrap();
        let Body::Ack(back) = back.body else {
            panic!("not an ack")
        };
        assert_eq!(back, batch);
        assert_eq!(back.ids().collect::<Vec<_>>(), vec![id(1), id(2), id(3)]);
        assert!(back.covers(&id(3)));
        assert!(!back.covers(&id(4)));
    }
}
