//! Fleet operations central IT runs on an appliance: fetch its recent logs, restart
//! it (`kakanai-control-plane device logs|restart`).
//!
//! [`Service::run_operation`] checks the device (registered, not revoked, online),
//! audits the request with who asked (`device.operation`), sends a signed
//! `operation` command with an expiry through the service's broker connection (the
//! same path and ack bookkeeping as print jobs), and waits for the appliance's ack
//! and its `operation-result`. Ingest audits the result (`device.operation-result`:
//! status and line count, never the lines) and hands it here
//! ([`Service::operation_reported`]). After a restart's result,
//! [`Service::wait_back_online`] watches the device's presence for the next boot.
//!
//! The command line reaches the running service through a Unix socket in its data
//! directory ([`SOCKET_FILE`], mode 600, so only the service's user and root can
//! use it): one JSON request line ([`SocketRequest`]), one JSON answer line
//! ([`SocketResponse`]). The operator's name comes with the request (`--by`, else
//! `SUDO_USER` / `USER`) and the connecting uid from the socket's peer credentials;
//! both go into the audit entry.
//!
//! Like every command's outcome, a result is seen by the instance that ingests it:
//! with several instances sharing the broker subscription, run the command on each
//! or on a single-instance deployment (the result is in the audit log either way).

use std::path::{Path, PathBuf};
use std::time::Duration;

use kakanai_protocol::catalogue::{AckStatus, Body, Operation, OperationResult, OperationStatus};
use kakanai_protocol::topic::Ident;
use kakanai_protocol::{MessageId, Topic};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _};
use tokio::sync::{broadcast, watch};

use super::{duration_ms, lock, now_ms, PendingCommand, Service, ServiceError, OUTCOME_GRACE_MS};
use crate::model::{Actor, AuditRecord, Place, TenantId};
use crate::store::DeviceStatus;

/// The operations socket's file name in the data directory.
pub const SOCKET_FILE: &str = "control-plane.sock";

/// Longest request line read from the socket.
const MAX_REQUEST_BYTES: u64 = 8 * 1024;

/// How long the socket waits for a request line.
const REQUEST_READ_WAIT: Duration = Duration::from_secs(10);

/// Longest wait a request may ask for.
pub const MAX_WAIT: Duration = Duration::from_secs(600);

/// An appliance's result of an operation, as ingested (verified and audited).
#[derive(Debug, Clone)]
pub struct OperationReport {
    /// The appliance's tenant.
    pub tenant: Ident,
    /// The appliance.
    pub device: Ident,
    /// What it reported.
    pub result: OperationResult,
}

/// The results channel the service keeps (one per service).
pub(crate) fn channel() -> broadcast::Sender<OperationReport> {
    broadcast::channel(64).0
}

/// Why an operation did not complete. The texts are for central IT and carry no
/// personal data.
#[derive(Debug, thiserror::Error)]
pub enum OperationError {
    /// The request itself is wrong.
    #[error("{0}")]
    Invalid(String),
    /// No such device in the tenant.
    #[error("{device} is not a registered device of {tenant}")]
    UnknownDevice {
        /// The tenant.
        tenant: String,
        /// The device.
        device: String,
    },
    /// The device is revoked.
    #[error("{0} is revoked")]
    Revoked(String),
    /// The device is not connected: nothing was sent.
    #[error("{device} is offline (last heard from {last_seen}); nothing was sent")]
    Offline {
        /// The device.
        device: String,
        /// When it was last heard from (JST), or "never".
        last_seen: String,
    },
    /// The appliance refused the command (expired, not recorded …).
    #[error("the appliance refused the command: {0}")]
    Refused(String),
    /// The appliance had carried out this very command before.
    #[error("the appliance had already carried out this command")]
    Duplicate,
    /// No result in time.
    #[error("no result from {device} within {seconds} s (command {command})")]
    Timeout {
        /// The device.
        device: String,
        /// How long we waited.
        seconds: u64,
        /// The command's id, to find its result in the audit log later.
        command: String,
    },
    /// The service failed (store, broker).
    #[error(transparent)]
    Service(#[from] ServiceError),
}

/// What came back.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OperationOutcome {
    /// The command's id.
    pub command: MessageId,
    /// The appliance's result.
    pub result: OperationResult,
    /// After a restart: the boot counter it came back online with, if it did in
    /// time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub back_online_boot: Option<u64>,
}

/// Who asks for an operation (for the audit log).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requester {
    /// The operator's login name (an administrator's login id in the admin UI).
    pub by: String,
    /// The uid the request came from (socket peer credentials), when known.
    pub uid: Option<u32>,
    /// The browser's address, for a request from the admin UI.
    pub ip: Option<String>,
}

impl Requester {
    fn check(&self) -> Result<(), OperationError> {
        let ok = !self.by.is_empty()
            && self.by.len() <= 64
            && self
                .by
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "._-@".contains(c));
        if ok {
            Ok(())
        } else {
            Err(OperationError::Invalid(
                "the operator's name (--by) must be 1-64 of [A-Za-z0-9._-@]".into(),
            ))
        }
    }
}

impl Service {
    /// Runs `operation` on `device`: checks, audits (who asked), sends it with an
    /// expiry of `wait`, and waits up to `wait` for the appliance's result. A
    /// restart's result is followed by waiting (in the rest of `wait`) for the
    /// device to come back online.
    pub async fn run_operation(
        &self,
        tenant: &TenantId,
        device: &Ident,
        operation: Operation,
        requester: &Requester,
        wait: Duration,
    ) -> Result<OperationOutcome, OperationError> {
        if !self.serves(tenant) {
            return Err(ServiceError::NotServed(tenant.to_string()).into());
        }
        requester.check()?;
        operation.check().map_err(OperationError::Invalid)?;
        if wait.is_zero() || wait > MAX_WAIT {
            return Err(OperationError::Invalid(format!(
                "the wait must be 1 to {} seconds",
                MAX_WAIT.as_secs()
            )));
        }
        let known = self
            .inner
            .store
            .get_device(tenant, device)
            .await
            .map_err(ServiceError::from)?;
        let Some(known) = known else {
            return Err(OperationError::UnknownDevice {
                tenant: tenant.to_string(),
                device: device.to_string(),
            });
        };
        if known.status == DeviceStatus::Revoked {
            return Err(OperationError::Revoked(device.to_string()));
        }
        if !known.online {
            return Err(OperationError::Offline {
                device: device.to_string(),
                last_seen: known
                    .last_seen_ms
                    .map_or_else(|| "never".into(), crate::applications::export::jst_rfc3339),
            });
        }
        let deadline = tokio::time::Instant::now() + wait;
        // Before sending: the result may come before we look.
        let mut results = self.inner.operation_results.subscribe();
        let id = self
            .send_operation(tenant, device, &operation, requester, wait)
            .await?;
        let timeout = || OperationError::Timeout {
            device: device.to_string(),
            seconds: wait.as_secs(),
            command: id.to_string(),
        };
        let reference = id.to_string();
        let result = async {
            // Ingested here, or by another instance sharing the broker (`outcomes`).
            tokio::select! {
                local = wait_result(&mut results, tenant, device, id) => local,
                relayed = self.relayed_outcome::<OperationResult>(
                    tenant,
                    device,
                    super::outcomes::OPERATION_RESULT,
                    &reference,
                    |r| r.command_id == id,
                ) => Some(relayed),
            }
        };
        tokio::pin!(result);
        // The ack says whether the appliance took the command at all; the result
        // may come before it (both leave the appliance's outbox, in either order).
        let early = tokio::select! {
            r = &mut result => Some(r.ok_or_else(timeout)?),
            a = self.wait_command_outcome(&id, wait) => match a {
                Ok(AckStatus::Accepted) => None,
                Ok(AckStatus::Duplicate) => return Err(OperationError::Duplicate),
                Ok(AckStatus::Rejected { reason }) => return Err(OperationError::Refused(reason)),
                Err(ServiceError::Timeout(_)) => return Err(timeout()),
                Err(e) => return Err(e.into()),
            },
        };
        let result = match early {
            Some(r) => r,
            None => tokio::time::timeout_at(deadline, result)
                .await
                .ok()
                .flatten()
                .ok_or_else(timeout)?,
        };
        let back_online_boot = match (&operation, result.status) {
            (Operation::Restart { .. }, OperationStatus::Done) => {
                self.wait_back_online(tenant, device, known.boot_counter, deadline)
                    .await
            }
            _ => None,
        };
        Ok(OperationOutcome {
            command: id,
            result,
            back_online_boot,
        })
    }

    /// Waits until `device` is online with a boot counter above `boot`, up to
    /// `deadline`; its new boot counter, or `None`.
    pub async fn wait_back_online(
        &self,
        tenant: &TenantId,
        device: &Ident,
        boot: u64,
        deadline: tokio::time::Instant,
    ) -> Option<u64> {
        loop {
            if let Ok(Some(d)) = self.inner.store.get_device(tenant, device).await {
                if d.online && d.boot_counter > boot {
                    return Some(d.boot_counter);
                }
            }
            if tokio::time::Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Audits and publishes the `operation` command; its id.
    async fn send_operation(
        &self,
        tenant: &TenantId,
        device: &Ident,
        operation: &Operation,
        requester: &Requester,
        wait: Duration,
    ) -> Result<MessageId, ServiceError> {
        let now = now_ms();
        let expires = now.saturating_add(duration_ms(wait));
        let (topic, envelope, bytes) = self.seal_down(
            tenant,
            device,
            Body::Operation(operation.clone()),
            None,
            Some(expires),
        )?;
        {
            let mut commands = lock(&self.inner.commands);
            commands.retain(|_, c| c.expires_ms.saturating_add(OUTCOME_GRACE_MS) > now);
            commands.insert(
                envelope.id,
                PendingCommand {
                    tenant: tenant.clone(),
                    device: device.clone(),
                    expires_ms: expires,
                    outcome: watch::channel(None).0,
                },
            );
        }
        let mut detail = serde_json::json!({
            "device": device.as_str(),
            "op": operation.name(),
            "command": envelope.id.to_string(),
            "expires_ms": expires,
        });
        if let Some(map) = detail.as_object_mut() {
            match operation {
                Operation::Logs {
                    since_ms,
                    max_lines,
                } => {
                    map.insert("max_lines".into(), (*max_lines).into());
                    if let Some(s) = since_ms {
                        map.insert("since_ms".into(), (*s).into());
                    }
                }
                Operation::Restart { reason } => {
                    map.insert("reason".into(), reason.clone().into());
                }
            }
            if let Some(uid) = requester.uid {
                map.insert("uid".into(), uid.into());
            }
        }
        let record = AuditRecord {
            tenant: tenant.to_string(),
            at_ms: now,
            actor: Actor::Admin(requester.by.clone()),
            action: "device.operation".into(),
            resident: None,
            place: requester.ip.clone().map_or(Place::Internal, Place::Ip),
            outcome: "ok".into(),
            detail,
        };
        // Audited before it leaves: an operation that went out is always on record.
        self.inner.store.append_audit(&record).await?;
        if let Err(e) = self.publish(&topic, bytes).await {
            lock(&self.inner.commands).remove(&envelope.id);
            return Err(e);
        }
        self.inner.metrics.command_sent();
        tracing::info!(tenant = %tenant, device = %device, op = operation.name(), by = %requester.by, command = %envelope.id, "operation sent");
        Ok(envelope.id)
    }

    /// Hands an ingested (verified, audited) `operation-result` to whoever waits:
    /// here, or on another instance (`outcomes`) when this one did not send the
    /// command.
    pub(crate) async fn operation_reported(
        &self,
        topic: &Topic,
        message: &MessageId,
        result: &OperationResult,
    ) {
        let ours = lock(&self.inner.commands).contains_key(&result.command_id);
        if !ours {
            self.relay_outcome(
                topic,
                super::outcomes::OPERATION_RESULT,
                &result.command_id.to_string(),
                message,
                result,
            )
            .await;
        }
        let _ = self.inner.operation_results.send(OperationReport {
            tenant: topic.tenant.clone(),
            device: topic.device.clone(),
            result: result.clone(),
        });
    }
}

/// The audit detail of an `operation-result`: never the log lines themselves.
pub(crate) fn audit_detail(result: &OperationResult) -> serde_json::Value {
    serde_json::json!({
        "command": result.command_id.to_string(),
        "status": result.status,
        "lines": result.logs.len(),
        "truncated": result.truncated,
        "message": result.message,
    })
}

/// The result of command `id` from `device`; `None` when the service stops.
async fn wait_result(
    rx: &mut broadcast::Receiver<OperationReport>,
    tenant: &TenantId,
    device: &Ident,
    id: MessageId,
) -> Option<OperationResult> {
    loop {
        match rx.recv().await {
            Ok(r) if &r.tenant == tenant && &r.device == device && r.result.command_id == id => {
                return Some(r.result)
            }
            Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
            Err(broadcast::error::RecvError::Closed) => return None,
        }
    }
}

/// A request on the operations socket.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SocketRequest {
    /// The tenant.
    pub tenant: String,
    /// The device.
    pub device: String,
    /// What to do.
    pub operation: Operation,
    /// The operator's login name.
    pub by: String,
    /// How long to wait for the result, in seconds.
    pub wait_s: u64,
}

/// The answer on the operations socket.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SocketResponse {
    /// The appliance's result.
    Ok(OperationOutcome),
    /// Why there is none.
    Error(String),
}

/// Where the running service listens for operations: `DATA_DIR/control-plane.sock`.
pub fn socket_path(data_dir: &Path) -> PathBuf {
    data_dir.join(SOCKET_FILE)
}

/// Listens on the operations socket at `path` until `stop` turns true. A stale
/// socket file (no one listening) is replaced; a live one is an error (another
/// instance uses this data directory).
pub async fn serve_socket(
    service: Service,
    path: PathBuf,
    mut stop: watch::Receiver<bool>,
) -> std::io::Result<tokio::task::JoinHandle<()>> {
    use std::os::unix::fs::PermissionsExt as _;
    if path.exists() {
        if tokio::net::UnixStream::connect(&path).await.is_ok() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::AddrInUse,
                format!("{} is in use by another control plane", path.display()),
            ));
        }
        std::fs::remove_file(&path)?;
    }
    let listener = tokio::net::UnixListener::bind(&path)?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
    Ok(tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                _ = stop.wait_for(|s| *s) => break,
                a = listener.accept() => a,
            };
            match accepted {
                Ok((stream, _)) => {
                    let service = service.clone();
                    tokio::spawn(async move { answer(service, stream).await });
                }
                Err(e) => {
                    tracing::warn!(error = %e, "operations socket: accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
        let _ = std::fs::remove_file(&path);
    }))
}

async fn answer(service: Service, stream: tokio::net::UnixStream) {
    let uid = stream.peer_cred().ok().map(|c| c.uid());
    let (read, mut write) = stream.into_split();
    let mut line = String::new();
    let mut reader =
        tokio::io::BufReader::new(tokio::io::AsyncReadExt::take(read, MAX_REQUEST_BYTES));
    // A client that connects and says nothing does not hold a task for ever.
    let read = tokio::time::timeout(REQUEST_READ_WAIT, reader.read_line(&mut line)).await;
    let response = match read.unwrap_or_else(|_| {
        Err(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "no request within 10 s",
        ))
    }) {
        Ok(_) => match serde_json::from_str::<SocketRequest>(&line) {
            Ok(request) => run_request(&service, request, uid).await,
            // serde's message may quote the input: say only what kind of mistake.
            Err(e) => SocketResponse::Error(format!(
                "not an operations request (line {}, column {})",
                e.line(),
                e.column()
            )),
        },
        Err(e) => SocketResponse::Error(format!("reading the request: {e}")),
    };
    let mut text = serde_json::to_string(&response)
        .unwrap_or_else(|_| r#"{"error":"the answer could not be encoded"}"#.to_owned());
    text.push('\n');
    let _ = write.write_all(text.as_bytes()).await;
    let _ = write.shutdown().await;
}

async fn run_request(
    service: &Service,
    request: SocketRequest,
    uid: Option<u32>,
) -> SocketResponse {
    let tenant = match TenantId::new(&request.tenant) {
        Ok(t) => t,
        Err(e) => return SocketResponse::Error(format!("tenant: {e}")),
    };
    let device = match Ident::new(&request.device) {
        Ok(d) => d,
        Err(e) => return SocketResponse::Error(format!("device: {e}")),
    };
    let requester = Requester {
        by: request.by,
        uid,
        ip: None,
    };
    let wait = Duration::from_secs(request.wait_s);
    match service
        .run_operation(&tenant, &device, request.operation, &requester, wait)
        .await
    {
        Ok(outcome) => SocketResponse::Ok(outcome),
        Err(e) => SocketResponse::Error(e.to_string()),
    }
}

/// Sends `request` to the service listening at `path` and returns its answer (the
/// command line's side).
pub async fn request(path: &Path, request: &SocketRequest) -> std::io::Result<SocketResponse> {
    let stream = tokio::net::UnixStream::connect(path).await.map_err(|e| {
        std::io::Error::new(
            e.kind(),
            format!(
                "cannot reach the control plane at {} ({e}): is `kakanai-control-plane serve` running, and are you its user or root?",
                path.display()
            ),
        )
    })?;
    let (read, mut write) = stream.into_split();
    let mut line = serde_json::to_string(request).map_err(std::io::Error::other)?;
    line.push('\n');
    write.write_all(line.as_bytes()).await?;
    let mut answer = String::new();
    let wait = Duration::from_secs(request.wait_s).saturating_add(Duration::from_secs(15));
    let mut reader = tokio::io::BufReader::new(read);
    tokio::time::timeout(wait, reader.read_line(&mut answer))
        .await
        .map_err(|_| {
            std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "no answer from the control plane",
            )
        })??;
    serde_json::from_str(&answer).map_err(|e| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("not an answer of the control plane: {e}"),
        )
    })
}
