//! One message from the broker, through every check, to what it asks for.
//!
//! Order (each step refuses with a reason that is counted and logged, without the
//! payload, and nothing is stored for a refused message):
//! 1. the topic parses, is `up/…` or `presence`, of a tenant we serve;
//! 2. the size is within [`MAX_MESSAGE_BYTES`] and the COSE structure parses (which
//!    yields the sender's `kid`);
//! 3. `store.key_for(tenant, topic's device, kid)`: only an active key of that very
//!    device, not revoked — so a device can speak only on its own topics;
//! 4. [`Opener::open`]: signature over the topic, payload, kind against the topic,
//!    replay window of that kid (loaded from the store the first time the worker
//!    sees the kid, saved with the batch that moved it);
//! 5. de-duplication by message id (`ingest_messages`, in the batch's transaction,
//!    see below): the first time a message id is seen it is acted on; after that it
//!    is a duplicate, acked again as `Duplicate` and not acted on.
//!
//! A replayed sequence number inside the window (the bit is set) is what the
//! appliance's outbox produces when it re-sends a message we did not ack in time:
//! the signature is verified again and the message goes to step 5, which tells a
//! duplicate (acked again) from a message whose earlier handling failed before it
//! was recorded (handled now). A sequence number older than the window is refused:
//! its id may already have been pruned from the de-duplication table.
//!
//! Presence is the exception to both: the appliance signs its will (offline) once at
//! boot and the broker publishes the same bytes at every unclean disconnection of
//! that boot, long after the window has moved on. An offline presence is applied
//! whenever its signature verifies, unless it comes from an older boot than the one
//! stored; broker ACLs keep others from publishing on a device's presence topic.
//!
//! An RPC request runs in a task of its own once recorded (at most
//! [`RPCS_PER_WORKER`] per worker): its handler may wait for another message of the
//! same appliance, which this worker must be free to ingest. It is acked when
//! answered.
//!
//! Batches (group commit): a worker takes every message queued for it (up to
//! [`BATCH`]) and runs steps 1–4 on each, one by one, so a message refused there is
//! refused alone. Keys are looked up once per sender per batch (a key revoked now is
//! refused from the next batch on). What the verified messages record — their ids
//! (step 5), the moved replay windows, and the audit entry of each report and
//! command ack — goes to the [`Committer`], which writes what every worker (and every
//! RPC task's audit entry) handed it meanwhile in one store transaction
//! ([`Store::record_ingest`](crate::store::Store::record_ingest)). Only then is
//! anything acted on, acked or answered: a message is acked only once its id and its
//! audit entry are durable, together. When that transaction fails the committer
//! writes each worker's part alone, and then each message alone, so one message the
//! store refuses fails alone (unacked; the appliance sends it again). A window that
//! moved in memory for a batch that was not stored does no harm: the re-sent
//! message falls inside the window, is verified again and recorded then. One
//! device's messages stay on one worker and in order, within a batch and across
//! batches.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use kakanai_protocol::catalogue::{
    Ack, AckStatus, Body, DeviceClass, DeviceStatus, PresenceState, PrintState, RpcOutcome,
    RpcRequest, RpcResponse,
};
use kakanai_protocol::cose;
use kakanai_protocol::limits::MAX_MESSAGE_BYTES;
use kakanai_protocol::replay::{ReplayWindow, WINDOW};
use kakanai_protocol::seal::Opener;
use kakanai_protocol::topic::Channel;
use kakanai_protocol::{Envelope, KeyId, MessageId, ProtocolError, Topic, VerifyingKey};
use rumqttc::Publish;
use tokio::sync::{mpsc, oneshot, Semaphore};

use super::{lock, now_ms, Service};
use crate::model::{Actor, AuditRecord, Ident, Place, TenantId};
use crate::rpc::RpcContext;
use crate::store::{PresenceUpdate, Store, StoreError};

/// Handles the messages of the devices hashed to it, a batch at a time.
pub(super) struct Worker {
    svc: Service,
    /// Where verified messages and audit entries are written (shared by the workers).
    committer: Committer,
    /// One opener per tenant: the store keys replay windows by (tenant, kid).
    openers: HashMap<TenantId, Opener>,
    /// (tenant, kid) whose stored window has been loaded into the opener.
    loaded: HashSet<(TenantId, KeyId)>,
    /// RPCs of this worker's devices running at once (see [`RPCS_PER_WORKER`]).
    rpc_slots: Arc<Semaphore>,
}

/// How many RPCs a worker runs at once. An RPC runs in a task of its own, beside the
/// worker's message loop: a handler may wait for a message from the same appliance
/// (`counter.print` waits until the appliance accepted the print job, and that
/// acceptance is an ack ingested by this very worker), which would otherwise wait
/// behind the RPC that waits for it. When every slot is taken the worker waits for
/// one, so a burst of RPCs slows one worker's devices down instead of growing without
/// bound.
const RPCS_PER_WORKER: usize = 16;

/// Messages a worker takes from its queue at once. It takes what is there, without
/// waiting for more: alone a message goes through at once, under load the queue fills
/// while the previous batch is written and the next batch is bigger.
const BATCH: usize = 256;

/// Jobs (a worker's batch, an RPC's audit entry) the committer may hold queued.
const COMMIT_QUEUE: usize = 64;

/// A message's share of a store transaction: tenant, device, message id (`None`: an
/// audit entry alone), audit entry if new (see [`Store::record_ingest`]).
type Record = (TenantId, Ident, Option<[u8; 16]>, Option<AuditRecord>);
/// A replay window to save: tenant, sender key, state.
type WindowState = (TenantId, KeyId, Vec<u8>);

/// The one writer of ingest: takes jobs from every worker and RPC task and writes
/// all that are waiting in one transaction (group commit), so a durable write is
/// shared by many messages and the workers do not queue for the database's write
/// lock one message at a time. Cheap to clone; stops when the last clone is gone.
#[derive(Clone)]
pub(super) struct Committer {
    jobs: mpsc::Sender<Job>,
}

struct Job {
    records: Vec<Record>,
    windows: Vec<WindowState>,
    reply: oneshot::Sender<Vec<Result<bool, StoreError>>>,
}

impl Committer {
    /// Starts the committer's task on `store`.
    pub(super) fn start(store: Store) -> Self {
        let (jobs, rx) = mpsc::channel(COMMIT_QUEUE);
        tokio::spawn(commit_loop(store, rx));
        Self { jobs }
    }

    /// Writes `records` and `windows` (with whatever else is waiting) and returns per
    /// record what [`Store::record_ingest`] says of it.
    async fn commit(
        &self,
        records: Vec<Record>,
        windows: Vec<WindowState>,
    ) -> Vec<Result<bool, StoreError>> {
        self.submit(records, windows).await.wait().await
    }

    /// Hands `records` and `windows` over; the answer comes through [`Written`].
    async fn submit(&self, records: Vec<Record>, windows: Vec<WindowState>) -> Written {
        let n = records.len();
        let (reply, answer) = oneshot::channel();
        let job = Job {
            records,
            windows,
            reply,
        };
        // If the committer has stopped, the job and its reply are dropped here, and
        // `answer` says so.
        let _ = self.jobs.send(job).await;
        Written { n, answer }
    }
}

/// The committer's answer to come for a job of `n` records.
struct Written {
    n: usize,
    answer: oneshot::Receiver<Vec<Result<bool, StoreError>>>,
}

impl Written {
    async fn wait(self) -> Vec<Result<bool, StoreError>> {
        let n = self.n;
        self.answer.await.unwrap_or_else(|_| stopped(n))
    }
}

fn stopped(n: usize) -> Vec<Result<bool, StoreError>> {
    (0..n)
        .map(|_| Err(StoreError::Backend("the ingest writer has stopped".into())))
        .collect()
}

async fn commit_loop(store: Store, mut rx: mpsc::Receiver<Job>) {
    let mut jobs = Vec::with_capacity(COMMIT_QUEUE);
    while rx.recv_many(&mut jobs, COMMIT_QUEUE).await > 0 {
        commit_jobs(&store, std::mem::take(&mut jobs)).await;
    }
}

/// Writes the jobs in one transaction; if that fails, each job alone, and for a job
/// that still fails, each record alone (its windows saved on their own), so what the
/// store refuses fails alone.
async fn commit_jobs(store: &Store, jobs: Vec<Job>) {
    let now = now_ms();
    let mut records = Vec::new();
    let mut windows = Vec::new();
    let mut parts = Vec::with_capacity(jobs.len());
    for job in jobs {
        let r = records.len()..records.len() + job.records.len();
        let w = windows.len()..windows.len() + job.windows.len();
        records.extend(job.records);
        windows.extend(job.windows);
        parts.push((r, w, job.reply));
    }
    if parts.len() > 1 {
        if let Ok(results) = store.record_ingest(&records, &windows, now).await {
            let mut results = results.into_iter();
            for (r, _, reply) in parts {
                let _ = reply.send(results.by_ref().take(r.len()).collect());
            }
            return;
        }
    }
    for (r, w, reply) in parts {
        let results = match store
            .record_ingest(&records[r.clone()], &windows[w.clone()], now)
            .await
        {
            Ok(results) => results,
            Err(e) if r.len() <= 1 => std::iter::once(Err(e)).take(r.len()).collect(),
            Err(_) => {
                let mut results = Vec::with_capacity(r.len());
                for i in r {
                    results.push(match store.record_ingest(&records[i..=i], &[], now).await {
                        Ok(mut one) => one.pop().unwrap_or(Ok(false)),
                        Err(e) => Err(e),
                    });
                }
                if let Err(e) = store.record_ingest(&[], &windows[w], now).await {
                    // A first line of defence; record_message holds anyway.
                    tracing::warn!(error = %e, "cannot save replay windows");
                }
                results
            }
        };
        let _ = reply.send(results);
    }
}

/// The refusal reasons (metric labels).
fn reason_of(e: &ProtocolError) -> &'static str {
    match e {
        ProtocolError::TooLarge { .. } => "oversized",
        ProtocolError::UnknownKey(_) => "unknown-key",
        ProtocolError::BadSignature => "bad-signature",
        ProtocolError::Topic(_) | ProtocolError::WrongTopic { .. } => "wrong-topic",
        ProtocolError::Replay { .. } => "replay",
        ProtocolError::Expired => "expired",
        _ => "malformed",
    }
}

/// The error as text for the log. Decoder errors (serde's) may quote the offending
/// value, which could be personal data, so those are reduced to their category.
fn loggable(e: &ProtocolError) -> String {
    match e {
        ProtocolError::Body { kind, .. } => format!("body of a {kind} message is invalid"),
        ProtocolError::Payload(_) => "payload is not a Kakanai envelope".into(),
        ProtocolError::UnknownKind(_) => "unknown message kind".into(),
        ProtocolError::Cose(_) => "not a COSE_Sign1 message".into(),
        other => other.to_string(),
    }
}

/// A message through steps 1–3, waiting for its signature check.
struct Candidate<'a> {
    topic: Topic,
    kid: KeyId,
    payload: &'a [u8],
}

/// A message whose signature verified (steps 1–4), waiting to be recorded.
struct Verified {
    topic: Topic,
    envelope: Envelope,
}

/// A checked batch handed to the committer, to be acted on once written.
struct Submitted {
    /// Every message of the batch, refused or not, for their PUBACKs.
    publishes: Vec<Publish>,
    /// The verified ones, in order; `written` answers for each of them.
    verified: Vec<Verified>,
    /// The committer's answer (`None` when nothing verified).
    written: Option<Written>,
    now: i64,
}

impl Worker {
    pub(super) fn new(svc: Service, committer: Committer) -> Self {
        Self {
            svc,
            committer,
            openers: HashMap::new(),
            loaded: HashSet::new(),
            rpc_slots: Arc::new(Semaphore::new(RPCS_PER_WORKER)),
        }
    }

    pub(super) async fn run(mut self, mut rx: mpsc::Receiver<Publish>) {
        let mut batch = Vec::with_capacity(BATCH);
        while rx.recv_many(&mut batch, BATCH).await > 0 {
            let checked = self.check_batch(std::mem::take(&mut batch)).await;
            self.act(checked).await;
        }
    }

    /// Acts on a batch once the committer has written it.
    async fn act(&mut self, batch: Submitted) {
        if let Some(written) = batch.written {
            let results = written.wait().await;
            // One signed ack per device and status for the whole batch (signing is a
            // good part of the cost of a message); at most BATCH ids each.
            let mut acks: Vec<(Topic, AckStatus, Vec<MessageId>)> = Vec::new();
            for (v, recorded) in batch.verified.into_iter().zip(results) {
                match recorded {
                    Ok(new) => {
                        let id = v.envelope.id;
                        let Some(status) =
                            self.on_recorded(&v.topic, v.envelope, new, batch.now).await
                        else {
                            continue;
                        };
                        let same = acks.iter_mut().find(|(t, s, _)| {
                            t.tenant == v.topic.tenant && t.device == v.topic.device && *s == status
                        });
                        match same {
                            Some((_, _, ids)) => ids.push(id),
                            None => acks.push((v.topic, status, vec![id])),
                        }
                    }
                    // Not acked: the appliance sends it again.
                    Err(e) => self.refuse("store-error", Some(&v.topic), &e.to_string()),
                }
            }
            for (topic, status, ids) in acks {
                self.ack(&topic, ids, status).await;
            }
        }
        // Handled (or refused for good): the broker may forget them now.
        for publish in &batch.publishes {
            self.svc.puback(publish).await;
        }
    }

    fn refuse(&self, reason: &'static str, topic: Option<&Topic>, why: &str) {
        self.svc.inner.metrics.refused(reason);
        match topic {
            Some(t) => tracing::warn!(
                reason,
                tenant = %t.tenant,
                device = %t.device,
                kind = t.kind().name(),
                why,
                "message refused"
            ),
            // An unparsable topic is not repeated: it is not ours to trust.
            None => tracing::warn!(reason, why, "message refused"),
        }
    }

    /// Steps 1–4 for every message of the batch, then step 5 and what acting on
    /// each message writes handed to the committer.
    async fn check_batch(&mut self, batch: Vec<Publish>) -> Submitted {
        let now = now_ms();
        let candidates: Vec<Candidate<'_>> = batch
            .iter()
            .filter_map(|p| self.precheck(&p.topic, &p.payload))
            .collect();
        // Step 3, once per sender key in this batch.
        let mut keys: HashMap<(TenantId, Ident, KeyId), Result<Option<VerifyingKey>, String>> =
            HashMap::new();
        for c in &candidates {
            let id = (
                c.topic.tenant.clone(),
                c.topic.device.clone(),
                c.kid.clone(),
            );
            if let std::collections::hash_map::Entry::Vacant(slot) = keys.entry(id) {
                let (tenant, device, kid) = slot.key();
                let key = self
                    .svc
                    .inner
                    .store
                    .key_for(tenant, device, kid)
                    .await
                    .map_err(|e| e.to_string());
                slot.insert(key);
            }
        }
        // Step 4, in arrival order: each sender's window moves message by message.
        let mut verified = Vec::with_capacity(candidates.len());
        let mut moved: HashSet<(TenantId, KeyId)> = HashSet::new();
        for c in candidates {
            let id = (
                c.topic.tenant.clone(),
                c.topic.device.clone(),
                c.kid.clone(),
            );
            let key = match keys.get(&id) {
                Some(Ok(Some(key))) => *key,
                Some(Ok(None)) | None => {
                    self.refuse(
                        "unknown-key",
                        Some(&c.topic),
                        "no active key of this device has this kid",
                    );
                    continue;
                }
                Some(Err(e)) => {
                    self.refuse("store-error", Some(&c.topic), e);
                    continue;
                }
            };
            self.ensure_window(&c.topic.tenant, &c.kid).await;
            let opener = self.openers.entry(c.topic.tenant.clone()).or_default();
            let kid = &c.kid;
            match opener.open(c.payload, &c.topic, |_, k| (k == kid).then_some(key)) {
                Ok(opened) => {
                    moved.insert((c.topic.tenant.clone(), c.kid.clone()));
                    verified.push(Verified {
                        topic: c.topic,
                        envelope: opened.envelope,
                    });
                }
                Err(ProtocolError::Replay { seq }) => {
                    if let Some(envelope) = self.replayed(&c, &key, seq) {
                        verified.push(Verified {
                            topic: c.topic,
                            envelope,
                        });
                    }
                }
                Err(e) => self.refuse(reason_of(&e), Some(&c.topic), &loggable(&e)),
            }
        }
        if verified.is_empty() {
            return Submitted {
                publishes: batch,
                verified,
                written: None,
                now,
            };
        }
        // Step 5 with what acting on each message writes, in one transaction.
        let records = verified
            .iter()
            .map(|v| {
                let audit = match &v.envelope.body {
                    Body::Presence(_) | Body::RpcRequest(_) => None,
                    Body::Ack(ack) => Some(self.command_ack_record(&v.topic, ack, now)),
                    body => Some(report_record(&v.topic, v.envelope.id, body, now)),
                };
                (
                    v.topic.tenant.clone(),
                    v.topic.device.clone(),
                    Some(*v.envelope.id.as_bytes()),
                    audit,
                )
            })
            .collect();
        let windows = moved
            .into_iter()
            .filter_map(|(tenant, kid)| {
                let state = self.window_state(&tenant, &kid)?;
                Some((tenant, kid, state))
            })
            .collect();
        let written = self.committer.submit(records, windows).await;
        Submitted {
            publishes: batch,
            verified,
            written: Some(written),
            now,
        }
    }

    /// Steps 1 and 2: what can be checked without the store.
    fn precheck<'a>(&self, topic: &str, payload: &'a [u8]) -> Option<Candidate<'a>> {
        let topic = match Topic::parse(topic) {
            Ok(t) => t,
            Err(e) => {
                self.refuse("wrong-topic", None, &loggable(&e));
                return None;
            }
        };
        if !self.svc.serves(&topic.tenant) {
            self.refuse("wrong-topic", Some(&topic), "tenant not served here");
            return None;
        }
        if matches!(topic.channel, Channel::Down(_)) {
            self.refuse("wrong-topic", Some(&topic), "a down topic");
            return None;
        }
        if payload.len() > MAX_MESSAGE_BYTES {
            self.refuse("oversized", Some(&topic), "over the message size limit");
            return None;
        }
        match cose::Unverified::parse(payload) {
            Ok(u) => Some(Candidate {
                kid: u.kid().clone(),
                topic,
                payload,
            }),
            Err(e) => {
                self.refuse(reason_of(&e), Some(&topic), &loggable(&e));
                None
            }
        }
    }

    /// Loads the stored replay window of `kid` the first time this worker sees it.
    async fn ensure_window(&mut self, tenant: &TenantId, kid: &KeyId) {
        let id = (tenant.clone(), kid.clone());
        if self.loaded.contains(&id) {
            return;
        }
        let stored = match self.svc.inner.store.load_replay_window(tenant, kid).await {
            Ok(s) => s,
            // Not marked loaded: tried again with the next message.
            Err(e) => return tracing::warn!(error = %e, "cannot load a replay window"),
        };
        if let Some(bytes) = stored {
            match ciborium::from_reader::<ReplayWindow, _>(&bytes[..]) {
                Ok(window) => {
                    // The opener's guard is replaced by a copy holding this window too
                    // (the opener offers no mutable access to its guard).
                    let opener = self.openers.remove(tenant).unwrap_or_default();
                    let mut guard = opener.replay().clone();
                    guard.restore(kid.clone(), window);
                    self.openers
                        .insert(tenant.clone(), Opener::with_replay(guard));
                }
                // record_message still refuses duplicates; the window restarts empty.
                Err(_) => {
                    tracing::warn!(tenant = %tenant, kid = %kid.to_hex(), "stored replay window unreadable; starting afresh")
                }
            }
        }
        self.loaded.insert(id);
    }

    /// The window of `kid` as stored.
    fn window_state(&self, tenant: &TenantId, kid: &KeyId) -> Option<Vec<u8>> {
        let window = self.openers.get(tenant)?.replay().window(kid)?;
        let mut bytes = Vec::with_capacity(160);
        ciborium::into_writer(window, &mut bytes).ok()?;
        Some(bytes)
    }

    /// A message whose sequence number the window has seen: verified again (the
    /// opener gives no envelope for a replay) to learn what it is; `None` (refused)
    /// if it does not verify, or is older than the window and not an offline presence.
    fn replayed(&self, c: &Candidate<'_>, key: &VerifyingKey, seq: u64) -> Option<Envelope> {
        let topic = &c.topic;
        let stale = self
            .openers
            .get(&topic.tenant)
            .and_then(|o| o.replay().window(&c.kid))
            .and_then(ReplayWindow::highest)
            .is_some_and(|h| h.saturating_sub(seq) >= WINDOW);
        let envelope = cose::verify(c.payload, &topic.to_aad(), |_| Some(*key))
            .and_then(|v| Envelope::decode(&v.payload))
            .and_then(|e| topic.check_kind(e.kind()).map(|()| e));
        let envelope = match envelope {
            Ok(e) => e,
            Err(e) => {
                self.refuse(reason_of(&e), Some(topic), &loggable(&e));
                return None;
            }
        };
        let offline =
            matches!(&envelope.body, Body::Presence(p) if p.state == PresenceState::Offline);
        if stale && !offline {
            self.refuse(
                "replay",
                Some(topic),
                "sequence number older than the replay window",
            );
            return None;
        }
        Some(envelope)
    }

    /// Acts on a message once its id (and audit entry) are stored: `new` is false for
    /// a duplicate. Returns how to ack it, unless it needs no ack now (presence) or is
    /// acked later (an RPC request, once answered).
    async fn on_recorded(
        &mut self,
        topic: &Topic,
        envelope: Envelope,
        new: bool,
        now: i64,
    ) -> Option<AckStatus> {
        let kind = envelope.kind().name();
        let metrics = &self.svc.inner.metrics;
        if let Body::Presence(p) = &envelope.body {
            if new {
                metrics.accepted(kind);
            } else {
                metrics.duplicate();
            }
            // A repeated will is still news (see the module docs); a repeated birth
            // is the retained copy of one already applied.
            if new || p.state == PresenceState::Offline {
                self.apply_presence(topic, p.state, p.boot_counter, &p.software_version, now)
                    .await;
            }
            return None;
        }
        if !new {
            metrics.duplicate();
            return Some(AckStatus::Duplicate);
        }
        metrics.accepted(kind);
        metrics.ingest_lag(u64::try_from(now.saturating_sub(envelope.time_ms)).unwrap_or(0));
        match &envelope.body {
            Body::DeviceState(r) if matches!(r.status, DeviceStatus::Error { .. }) => {
                metrics.device_error(match r.class {
                    DeviceClass::CardReader => "card-reader",
                    DeviceClass::Printer => "printer",
                    DeviceClass::Scanner => "scanner",
                    DeviceClass::Lights => "lights",
                });
            }
            Body::PrintStatus(p) if matches!(p.state, PrintState::Failed { .. }) => {
                metrics.print_failed();
            }
            _ => {}
        }
        let id = envelope.id;
        let meta = envelope_meta(&envelope);
        match envelope.body {
            Body::RpcRequest(request) => {
                // In a task of its own (see RPCS_PER_WORKER); it acks the request
                // once answered, as below.
                let Ok(slot) = Arc::clone(&self.rpc_slots).acquire_owned().await else {
                    return None;
                };
                let responder = Worker::new(self.svc.clone(), self.committer.clone());
                let topic = topic.clone();
                tokio::spawn(async move {
                    let _slot = slot;
                    if responder.rpc(&topic, &meta, request, now).await {
                        responder.ack(&topic, vec![id], AckStatus::Accepted).await;
                    }
                });
                return None;
            }
            Body::Ack(ack) => {
                metrics.command_ack(ack_status_name(&ack.status));
                for of in ack.ids() {
                    if !self.svc.command_acked(&of, &ack.status) {
                        // Sent by another instance, which waits for it.
                        let reference = of.to_string();
                        self.svc
                            .relay_outcome(
                                topic,
                                super::outcomes::COMMAND_ACK,
                                &reference,
                                &id,
                                &ack.status,
                            )
                            .await;
                    }
                }
            }
            Body::OperationResult(result) => {
                // Whoever asked for it (operations::run_operation) learns the outcome.
                self.svc.operation_reported(topic, &id, &result).await;
            }
            Body::PrintStatus(status) => {
                // Whoever printed it (applications::print), on this instance or
                // another, learns the outcome.
                self.svc
                    .relay_outcome(
                        topic,
                        super::outcomes::PRINT_STATUS,
                        &status.job_id,
                        &id,
                        &status,
                    )
                    .await;
                let _ = self.svc.inner.print_status.send(super::PrintReport {
                    tenant: topic.tenant.clone(),
                    device: topic.device.clone(),
                    status,
                });
            }
            _ => {}
        }
        Some(AckStatus::Accepted)
    }

    async fn apply_presence(
        &self,
        topic: &Topic,
        state: PresenceState,
        boot_counter: u64,
        software_version: &str,
        now: i64,
    ) {
        let store = &self.svc.inner.store;
        match store.get_device(&topic.tenant, &topic.device).await {
            Ok(Some(d)) if d.boot_counter > boot_counter => {
                tracing::info!(tenant = %topic.tenant, device = %topic.device, "presence of an earlier boot ignored");
                return;
            }
            Ok(_) => {}
            Err(e) => return tracing::warn!(error = %e, "cannot read the device for presence"),
        }
        let update = PresenceUpdate {
            online: state == PresenceState::Online,
            boot_counter,
            seen_at_ms: now,
            firmware: (!software_version.is_empty()).then(|| software_version.to_owned()),
        };
        match store
            .update_presence(&topic.tenant, &topic.device, &update)
            .await
        {
            Ok(_) => tracing::info!(
                tenant = %topic.tenant,
                device = %topic.device,
                online = update.online,
                boot_counter,
                "presence"
            ),
            Err(e) => tracing::warn!(error = %e, "cannot record presence"),
        }
    }

    /// The audit entry of an appliance's answer to one of our commands.
    fn command_ack_record(&self, topic: &Topic, ack: &Ack, now: i64) -> AuditRecord {
        let status = ack_status_name(&ack.status);
        let ours = lock(&self.svc.inner.commands).contains_key(&ack.of);
        let mut detail = serde_json::json!({ "command": ack.of.to_string(), "status": status });
        if let (AckStatus::Rejected { reason }, Some(map)) = (&ack.status, detail.as_object_mut()) {
            map.insert("reason".into(), reason.clone().into());
        }
        if let Some(map) = detail.as_object_mut() {
            map.insert("sent_here".into(), ours.into());
        }
        audit_record(
            topic,
            Actor::Device(topic.device.to_string()),
            "command.ack".into(),
            "ok",
            detail,
            now,
        )
    }

    /// Runs an RPC, audits it (method and outcome, never the parameters), answers it.
    async fn rpc(&self, topic: &Topic, meta: &Meta, request: RpcRequest, now: i64) -> bool {
        let inner = &self.svc.inner;
        let (tenant, device) = (&topic.tenant, &topic.device);
        // Metric and audit labels from the closed set of registered names.
        let known = inner.dispatcher.methods().any(|m| m == request.method);
        let label = if known {
            request.method.as_str()
        } else {
            "unknown"
        };
        let session = match &request.session {
            Some(token) => {
                let s = inner.sessions.resolve(tenant, device, token, now).await;
                // A session is valid only from the appliance it was opened on.
                s.filter(|s| &s.device == device)
            }
            None => None,
        };
        let actor = session.as_ref().map_or_else(
            || Actor::Device(device.to_string()),
            |s| Actor::Staff(s.staff_id.clone()),
        );
        let result = if meta.expired(now) {
            Err(kakanai_protocol::catalogue::RpcError {
                code: "expired".into(),
                message: "要求の有効期限が切れています".into(),
            })
        } else {
            let ctx = RpcContext {
                tenant: tenant.clone(),
                device: device.clone(),
                session,
                now_ms: now,
            };
            inner
                .dispatcher
                .dispatch(&ctx, &request.method, request.params)
                .await
        };
        let (outcome, code) = match &result {
            Ok(_) => ("ok", None),
            Err(e) if e.code == "unauthenticated" || e.code == "forbidden" => {
                ("denied", Some(e.code.clone()))
            }
            Err(e) => ("error", Some(e.code.clone())),
        };
        inner.metrics.rpc(label, outcome);
        let mut detail = serde_json::json!({ "request": meta.id.to_string() });
        if let Some(map) = detail.as_object_mut() {
            if let Some(code) = code {
                map.insert("code".into(), code.into());
            }
            if !known {
                map.insert("method_bytes".into(), request.method.len().into());
            }
        }
        // Audited before the answer leaves: an operation that revealed data is on
        // record even if we stop right after.
        if !self
            .audit(topic, actor, format!("rpc:{label}"), outcome, detail, now)
            .await
        {
            return false;
        }
        let response = RpcResponse {
            method: request.method,
            outcome: match result {
                Ok(v) => RpcOutcome::Ok(v),
                Err(e) => RpcOutcome::Err(e),
            },
        };
        self.answer(topic, meta.id, response).await;
        true
    }

    async fn answer(&self, topic: &Topic, request: MessageId, response: RpcResponse) {
        let (tenant, device) = (&topic.tenant, &topic.device);
        let method = response.method.clone();
        let sealed = match self.svc.seal_down(
            tenant,
            device,
            Body::RpcResponse(response),
            Some(request),
            None,
        ) {
            Ok(s) => Ok(s),
            // Typically an answer over the size limit: say so instead of going silent.
            Err(e) => {
                tracing::warn!(error = %e, "cannot seal an RPC answer");
                let fallback = RpcResponse::err(&method, "internal", "応答を送れませんでした");
                self.svc.seal_down(
                    tenant,
                    device,
                    Body::RpcResponse(fallback),
                    Some(request),
                    None,
                )
            }
        };
        match sealed {
            Ok((topic, _, bytes)) => {
                if let Err(e) = self.svc.publish(&topic, bytes).await {
                    tracing::warn!(error = %e, "cannot publish an RPC answer");
                }
            }
            Err(e) => tracing::error!(error = %e, "cannot seal an RPC error answer"),
        }
    }

    /// Acks `ids` (at least one) of one device with one signed message, correlated
    /// with the first.
    async fn ack(&self, topic: &Topic, mut ids: Vec<MessageId>, status: AckStatus) {
        if ids.is_empty() {
            return;
        }
        let of = ids.remove(0);
        let body = Body::Ack(Ack {
            of,
            status,
            also: ids,
        });
        match self
            .svc
            .seal_down(&topic.tenant, &topic.device, body, Some(of), None)
        {
            Ok((down, _, bytes)) => {
                if let Err(e) = self.svc.publish(&down, bytes).await {
                    tracing::warn!(error = %e, "cannot publish an ack");
                }
            }
            Err(e) => tracing::error!(error = %e, "cannot seal an ack"),
        }
    }

    /// Appends an audit entry (through the committer, with whatever else is being
    /// written). `false`, refused and logged, if it could not be stored.
    async fn audit(
        &self,
        topic: &Topic,
        actor: Actor,
        action: String,
        outcome: &str,
        detail: serde_json::Value,
        now: i64,
    ) -> bool {
        let record = audit_record(topic, actor, action, outcome, detail, now);
        let recorded = self
            .committer
            .commit(
                vec![(
                    topic.tenant.clone(),
                    topic.device.clone(),
                    None,
                    Some(record),
                )],
                Vec::new(),
            )
            .await;
        match recorded.into_iter().next() {
            Some(Ok(_)) => true,
            Some(Err(e)) => {
                // Not acked: the appliance sends it again and it is tried again.
                self.refuse("store-error", Some(topic), &e.to_string());
                false
            }
            None => {
                self.refuse("store-error", Some(topic), "no answer from the writer");
                false
            }
        }
    }
}

fn ack_status_name(status: &AckStatus) -> &'static str {
    match status {
        AckStatus::Accepted => "accepted",
        AckStatus::Duplicate => "duplicate",
        AckStatus::Rejected { .. } => "rejected",
    }
}

fn audit_record(
    topic: &Topic,
    actor: Actor,
    action: String,
    outcome: &str,
    detail: serde_json::Value,
    now: i64,
) -> AuditRecord {
    AuditRecord {
        tenant: topic.tenant.to_string(),
        at_ms: now,
        actor,
        action,
        resident: None,
        place: Place::Appliance(topic.device.to_string()),
        outcome: outcome.to_owned(),
        detail,
    }
}

/// The audit entry of a report from the device (no personal data: never the card
/// face, the scanned code or a document).
fn report_record(topic: &Topic, id: MessageId, body: &Body, now: i64) -> AuditRecord {
    let detail = match body {
        Body::DeviceState(r) => serde_json::json!({
            "device_id": r.id,
            "class": r.class,
            "status": r.status,
        }),
        Body::PrintStatus(s) => serde_json::json!({
            "job_id": s.job_id,
            "state": s.state,
        }),
        Body::Scan(s) => serde_json::json!({
            "scanner": s.scanner,
            "symbology": s.symbology,
            "length": s.data.len(),
        }),
        Body::CardRead(c) => serde_json::json!({
            "reader": c.reader,
            "card": c.card,
            "outcome": match &c.outcome {
                Ok(_) => serde_json::json!("ok"),
                Err(e) => serde_json::to_value(e).unwrap_or(serde_json::Value::Null),
            },
        }),
        Body::ConfigReported(c) => serde_json::json!({
            "version": c.version,
            "settings": c.settings.keys().collect::<Vec<_>>(),
            "rejected": c.rejected.keys().collect::<Vec<_>>(),
        }),
        // Status and line count, never the lines (see `operations`).
        Body::OperationResult(r) => super::operations::audit_detail(r),
        // The topic check lets nothing else through upwards.
        _ => serde_json::Value::Null,
    };
    let mut detail = detail;
    if let Some(map) = detail.as_object_mut() {
        map.insert("message".into(), id.to_string().into());
    }
    let action = match body.kind().name() {
        "device-state" => "device.state".to_owned(),
        other => format!("device.{other}"),
    };
    audit_record(
        topic,
        Actor::Device(topic.device.to_string()),
        action,
        "ok",
        detail,
        now,
    )
}

/// What an RPC needs of its envelope once the body has been taken out.
struct Meta {
    id: MessageId,
    expires_ms: Option<i64>,
}

impl Meta {
    fn expired(&self, now: i64) -> bool {
        self.expires_ms.is_some_and(|e| now > e)
    }
}

fn envelope_meta(e: &Envelope) -> Meta {
    Meta {
        id: e.id,
        expires_ms: e.expires_ms,
    }
}
