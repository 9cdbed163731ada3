//! Printing applications at the counter (issue 8, item 6): render the forms (and the
//! procedure guide, when given) as one PDF with `kakanai-documents`, send it to the
//! counter's appliance as a signed `print-job` command — in chunks that fit the
//! message limit — and, when the appliance reports the job completed, move every
//! application in it to `printed` with the PDF's SHA-256 and page count.
//!
//! The job's title and id carry no personal data. A job that fails or never reports
//! back leaves its applications as they were (drafts can be printed again).

use std::sync::Arc;
use std::time::Duration;

use kakanai_documents::{DocumentRequest, Engine};
use kakanai_protocol::catalogue::{
    AckStatus, Body, DocumentSource, PrintJob, PrintState, PrintStatus,
};
use kakanai_protocol::topic::Ident;
use ring::rand::SecureRandom;

use super::model::ApplicationState;
use super::{record_printed, Act};
use crate::model::TenantId;
use crate::service::{Service, ServiceError};
use crate::store::applications::ApplicationRecord;
use crate::store::{Store, StoreError};

/// Bytes of document per `print-job` message: well under the 256 KiB message limit
/// once CBOR, the envelope and the signature are added.
pub const CHUNK_BYTES: usize = 192 * 1024;
/// How long the appliance may take to accept each chunk.
const ACCEPT_WITHIN: Duration = Duration::from_secs(30);
/// How long a print job may take before its applications are left unprinted.
pub const PRINT_WITHIN: Duration = Duration::from_secs(300);

/// What can go wrong. Messages never carry form data.
#[derive(Debug, thiserror::Error)]
pub enum PrintError {
    /// No application with that number in this tenant.
    #[error("no application {0}")]
    Unknown(String),
    /// The application is not a draft or printed one.
    #[error("application {number} is {state:?}: only drafts and printed ones can be printed")]
    NotPrintable {
        /// Its number.
        number: String,
        /// Its state.
        state: ApplicationState,
    },
    /// Nothing to print.
    #[error("nothing to print")]
    Empty,
    /// A form could not be rendered.
    #[error("rendering: {0}")]
    Render(String),
    /// The appliance did not accept the job.
    #[error("the appliance refused the print job: {0}")]
    Refused(String),
    /// Sending failed.
    #[error(transparent)]
    Service(#[from] ServiceError),
    /// The store failed.
    #[error("store: {0}")]
    Store(#[from] StoreError),
}

/// A job on its way to the printer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrintReceipt {
    /// The job id (random; the appliance reports progress under it).
    pub job_id: String,
    /// Pages in the bundle.
    pub pages: usize,
    /// The bundle's SHA-256, hex.
    pub sha256: String,
    /// Size of the PDF.
    pub bytes: usize,
    /// Application numbers in the bundle, in print order.
    pub numbers: Vec<String>,
}

/// The printing service: one per control plane, shared.
#[derive(Clone)]
pub struct Printing {
    engine: Arc<Engine>,
    store: Store,
    service: Service,
}

impl std::fmt::Debug for Printing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Printing").finish_non_exhaustive()
    }
}

fn job_id() -> String {
    let mut bytes = [0u8; 12];
    let _ = ring::rand::SystemRandom::new().fill(&mut bytes);
    format!("job-{}", hex::encode(bytes))
}

impl Printing {
    /// Printing with `engine` through `service`.
    pub fn new(engine: Arc<Engine>, store: Store, service: Service) -> Self {
        Self {
            engine,
            store,
            service,
        }
    }

    /// Prints the applications `numbers` (and the guide first, when given) at
    /// `device` as one job. Returns once the appliance has accepted every chunk; the
    /// applications become `printed` when it reports the job completed (a task
    /// keeps watching for [`PRINT_WITHIN`]). `done` (if given) receives the outcome.
    pub async fn print(
        &self,
        tenant: &TenantId,
        device: &Ident,
        numbers: &[String],
        guide: Option<&serde_json::Value>,
        act: Act,
        done: Option<tokio::sync::oneshot::Sender<Result<(), String>>>,
    ) -> Result<PrintReceipt, PrintError> {
        let mut apps: Vec<ApplicationRecord> = Vec::new();
        for number in numbers {
            let app = self
                .store
                .application_by_number(tenant, number)
                .await?
                .ok_or_else(|| PrintError::Unknown(number.clone()))?;
            if !matches!(
                app.state,
                ApplicationState::Draft | ApplicationState::Printed
            ) {
                return Err(PrintError::NotPrintable {
                    number: number.clone(),
                    state: app.state,
                });
            }
            apps.push(app);
        }
        if apps.is_empty() && guide.is_none() {
            return Err(PrintError::Empty);
        }
        let engine = Arc::clone(&self.engine);
        let guide = guide.cloned();
        let forms: Vec<(String, serde_json::Value)> = apps
            .iter()
            .map(|a| (a.form.clone(), a.data.clone()))
            .collect();
        let pdf = tokio::task::spawn_blocking(move || {
            let mut requests = Vec::new();
            if let Some(g) = &guide {
                requests.push(DocumentRequest::Guide(g));
            }
            for (id, data) in &forms {
                requests.push(DocumentRequest::Form { id, data });
            }
            engine.render_bundle(&requests)
        })
        .await
        .map_err(|e| PrintError::Render(e.to_string()))?
        .map_err(|e| PrintError::Render(e.to_string()))?;

        let job_id = job_id();
        // Subscribe before sending: a fast printer may report before we listen.
        let mut reports = self.service.print_reports();
        let chunks: Vec<&[u8]> = pdf.bytes.chunks(CHUNK_BYTES).collect();
        let total = u32::try_from(chunks.len()).unwrap_or(u32::MAX);
        for (i, chunk) in chunks.iter().enumerate() {
            let body = Body::PrintJob(PrintJob {
                job_id: job_id.clone(),
                title: format!(
                    "Kakanai {}",
                    numbers.first().map_or("guide", String::as_str)
                ),
                media_type: "application/pdf".into(),
                size: pdf.bytes.len() as u64,
                copies: 1,
                source: DocumentSource::Inline {
                    data: chunk.to_vec(),
                    chunk: u32::try_from(i).unwrap_or(u32::MAX),
                    chunks: total,
                },
            });
            let id = self
                .service
                .send_command(tenant, device, body, PRINT_WITHIN)
                .await?;
            match self
                .service
                .wait_command_outcome(&id, ACCEPT_WITHIN)
                .await?
            {
                AckStatus::Accepted | AckStatus::Duplicate => {}
                AckStatus::Rejected { reason } => return Err(PrintError::Refused(reason)),
            }
        }
        let receipt = PrintReceipt {
            job_id: job_id.clone(),
            pages: pdf.pages,
            sha256: pdf.sha256.clone(),
            bytes: pdf.bytes.len(),
            numbers: apps.iter().map(|a| a.number.clone()).collect(),
        };
        let mut sha = [0u8; 32];
        hex::decode_to_slice(&pdf.sha256, &mut sha)
            .map_err(|e| PrintError::Render(e.to_string()))?;
        let store = self.store.clone();
        let tenant = tenant.clone();
        let device = device.clone();
        let pages = u32::try_from(pdf.pages).unwrap_or(u32::MAX);
        let service = self.service.clone();
        tokio::spawn(async move {
            let terminal =
                |s: &PrintStatus| !matches!(s.state, PrintState::Queued | PrintState::Printing);
            // Ingested here, or by another instance sharing the broker.
            let relayed = service.relayed_outcome::<PrintStatus>(
                &tenant,
                &device,
                crate::service::outcomes::PRINT_STATUS,
                &job_id,
                terminal,
            );
            let outcome = tokio::time::timeout(PRINT_WITHIN, async {
                let relayed = async {
                    match relayed.await.state {
                        PrintState::Completed { .. } => Ok(()),
                        PrintState::Failed { reason } => Err(reason),
                        _ => Err("cancelled".to_owned()),
                    }
                };
                tokio::pin!(relayed);
                loop {
                    let report = tokio::select! {
                        r = &mut relayed => return r,
                        r = reports.recv() => r,
                    };
                    match report {
                        Ok(r) if r.device == device && r.status.job_id == job_id => {
                            match r.status.state {
                                PrintState::Completed { .. } => return Ok(()),
                                PrintState::Failed { reason } => return Err(reason),
                                PrintState::Cancelled => return Err("cancelled".to_owned()),
                                PrintState::Queued | PrintState::Printing => {}
                            }
                        }
                        Ok(_) => {}
                        Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                        Err(tokio::sync::broadcast::error::RecvError::Closed) => {
                            return Err("the service stopped".to_owned())
                        }
                    }
                }
            })
            .await
            .unwrap_or_else(|_| Err("no outcome from the printer in time".to_owned()));
            let outcome = match outcome {
                Ok(()) => {
                    let mut failed = None;
                    for app in &apps {
                        let mut act = act.clone();
                        act.at_ms = crate::service::now_ms();
                        if let Err(e) =
                            record_printed(&store, &tenant, &app.id, sha, pages, &act).await
                        {
                            tracing::error!(application = %app.number, error = %e, "cannot record a printed application");
                            failed = Some(e.to_string());
                        }
                    }
                    failed.map_or(Ok(()), Err)
                }
                Err(reason) => {
                    tracing::warn!(job = %job_id, %reason, "print job did not complete");
                    Err(reason)
                }
            };
            if let Some(done) = done {
                let _ = done.send(outcome);
            }
        });
        Ok(receipt)
    }
}

/// `applications.print` parameters: the applications to print at the calling
/// appliance, in order.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrintParams {
    /// Application numbers.
    pub numbers: Vec<String>,
}

/// `applications.print` result: the job is at the appliance; the applications become
/// `printed` when it reports the job completed (its print events reach the UI).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct PrintResponse {
    /// The job id the appliance reports under.
    pub job_id: String,
    /// Pages to print.
    pub pages: usize,
}

/// The `applications.print` RPC (permission `application.create`). The printing
/// service is set once the control plane runs ([`PrintHandler::ready`]); until then
/// the method answers `printing-unavailable`.
#[derive(Clone, Default)]
pub struct PrintHandler(Arc<std::sync::OnceLock<Printing>>);

impl std::fmt::Debug for PrintHandler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PrintHandler")
    }
}

impl PrintHandler {
    /// A handler waiting for its printing service.
    pub fn new() -> Self {
        Self::default()
    }

    /// Hands the handler its printing service (later calls are ignored).
    pub fn ready(&self, printing: Printing) {
        let _ = self.0.set(printing);
    }
}

fn rpc_err(code: &str, message: &str) -> kakanai_protocol::catalogue::RpcError {
    kakanai_protocol::catalogue::RpcError {
        code: code.into(),
        message: message.into(),
    }
}

impl crate::rpc::RpcHandler for PrintHandler {
    fn method(&self) -> &'static str {
        "applications.print"
    }

    fn handle<'a>(
        &'a self,
        ctx: &'a crate::rpc::RpcContext,
        params: ciborium::Value,
    ) -> crate::rpc::RpcFuture<'a> {
        Box::pin(async move {
            let staff = ctx.require(crate::staff::permissions::APPLICATION_CREATE)?;
            let p: PrintParams = params
                .deserialized()
                .map_err(|_| rpc_err("invalid-params", "パラメータが正しくありません"))?;
            let printing = self
                .0
                .get()
                .ok_or_else(|| rpc_err("printing-unavailable", "印刷の準備ができていません"))?;
            let tenant = TenantId::new(ctx.tenant.as_str())
                .map_err(|_| rpc_err("internal", "システムエラーが発生しました"))?;
            let act = Act::staff_at(&staff.staff_id, ctx.device.as_str(), ctx.now_ms);
            match printing
                .print(&tenant, &ctx.device, &p.numbers, None, act, None)
                .await
            {
                Ok(receipt) => ciborium::Value::serialized(&PrintResponse {
                    job_id: receipt.job_id,
                    pages: receipt.pages,
                })
                .map_err(|_| rpc_err("internal", "システムエラーが発生しました")),
                Err(PrintError::Unknown(_)) => Err(rpc_err("not-found", "申請が見つかりません")),
                Err(PrintError::NotPrintable { .. }) => Err(rpc_err(
                    "illegal-transition",
                    "受付済み・取消済みの申請は印刷できません",
                )),
                Err(PrintError::Empty) => {
                    Err(rpc_err("invalid-params", "印刷する申請がありません"))
                }
                Err(PrintError::Refused(_)) | Err(PrintError::Service(_)) => Err(rpc_err(
                    "printer-unreachable",
                    "窓口端末に印刷を送れませんでした。端末とプリンターを確認してください",
                )),
                Err(e) => {
                    tracing::error!(error = %e, "printing failed");
                    Err(rpc_err("internal", "システムエラーが発生しました"))
                }
            }
        })
    }
}
