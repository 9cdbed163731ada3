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
//!    sees the kid, saved after every message that moved it);
//! 5. `store.record_message`: the first time a message id is seen it is acted on;
//!    after that it is a duplicate, acked again as `Duplicate` and not acted on.
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
use tokio::sync::{mpsc, Semaphore};

use super::{now_ms, Service};
use crate::model::{Actor, AuditRecord, Place, TenantId};
use crate::rpc::RpcContext;
use crate::store::PresenceUpdate;

/// Handles the messages of the devices hashed to it, one at a time.
pub(super) struct Worker {
    svc: Service,
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

impl Worker {
    pub(super) fn new(svc: Service) -> Self {
        Self {
            svc,
            openers: HashMap::new(),
            loaded: HashSet::new(),
            rpc_slots: Arc::new(Semaphore::new(RPCS_PER_WORKER)),
        }
    }

    pub(super) async fn run(mut self, mut rx: mpsc::Receiver<Publish>) {
        while let Some(publish) = rx.recv().await {
            self.handle(&publish.topic, &publish.payload).await;
            // Handled (or refused for good): the broker may forget it now.
            self.svc.puback(&publish).await;
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

    async fn handle(&mut self, topic: &str, payload: &[u8]) {
        let topic = match Topic::parse(topic) {
            Ok(t) => t,
            Err(e) => return self.refuse("wrong-topic", None, &loggable(&e)),
        };
        if !self.svc.serves(&topic.tenant) {
            return self.refuse("wrong-topic", Some(&topic), "tenant not served here");
        }
        if matches!(topic.channel, Channel::Down(_)) {
            return self.refuse("wrong-topic", Some(&topic), "a down topic");
        }
        if payload.len() > MAX_MESSAGE_BYTES {
            return self.refuse("oversized", Some(&topic), "over the message size limit");
        }
        let kid = match cose::Unverified::parse(payload) {
            Ok(u) => u.kid().clone(),
            Err(e) => return self.refuse(reason_of(&e), Some(&topic), &loggable(&e)),
        };
        let key = match self
            .svc
            .inner
            .store
            .key_for(&topic.tenant, &topic.device, &kid)
            .await
        {
            Ok(Some(key)) => key,
            Ok(None) => {
                return self.refuse(
                    "unknown-key",
                    Some(&topic),
                    "no active key of this device has this kid",
                )
            }
            Err(e) => return self.refuse("store-error", Some(&topic), &e.to_string()),
        };
        self.ensure_window(&topic.tenant, &kid).await;
        let opener = self.openers.entry(topic.tenant.clone()).or_default();
        let opened = opener.open(payload, &topic, |_, k| (k == &kid).then_some(key));
        match opened {
            Ok(opened) => {
                self.save_window(&topic.tenant, &kid).await;
                self.on_message(&topic, opened.envelope).await;
            }
            Err(ProtocolError::Replay { seq }) => {
                self.on_replayed(&topic, payload, &kid, &key, seq).await;
            }
            Err(e) => self.refuse(reason_of(&e), Some(&topic), &loggable(&e)),
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

    async fn save_window(&self, tenant: &TenantId, kid: &KeyId) {
        let Some(window) = self
            .openers
            .get(tenant)
            .and_then(|o| o.replay().window(kid))
        else {
            return;
        };
        let mut bytes = Vec::with_capacity(160);
        if ciborium::into_writer(window, &mut bytes).is_err() {
            return;
        }
        if let Err(e) = self
            .svc
            .inner
            .store
            .save_replay_window(tenant, kid, &bytes, now_ms())
            .await
        {
            // The window is a first line of defence; record_message holds anyway.
            tracing::warn!(error = %e, "cannot save a replay window");
        }
    }

    async fn on_replayed(
        &mut self,
        topic: &Topic,
        payload: &[u8],
        kid: &KeyId,
        key: &VerifyingKey,
        seq: u64,
    ) {
        let stale = self
            .openers
            .get(&topic.tenant)
            .and_then(|o| o.replay().window(kid))
            .and_then(ReplayWindow::highest)
            .is_some_and(|h| h.saturating_sub(seq) >= WINDOW);
        // The opener gives no envelope for a replay: verify again to learn what it is.
        let envelope = cose::verify(payload, &topic.to_aad(), |_| Some(*key))
            .and_then(|v| Envelope::decode(&v.payload))
            .and_then(|e| topic.check_kind(e.kind()).map(|()| e));
        let envelope = match envelope {
            Ok(e) => e,
            Err(e) => return self.refuse(reason_of(&e), Some(topic), &loggable(&e)),
        };
        let offline =
            matches!(&envelope.body, Body::Presence(p) if p.state == PresenceState::Offline);
        if stale && !offline {
            return self.refuse(
                "replay",
                Some(topic),
                "sequence number older than the replay window",
            );
        }
        self.on_message(topic, envelope).await;
    }

    async fn on_message(&mut self, topic: &Topic, envelope: Envelope) {
        let now = now_ms();
        let (tenant, device) = (&topic.tenant, &topic.device);
        let new = match self
            .svc
            .inner
            .store
            .record_message(tenant, device, *envelope.id.as_bytes(), now)
            .await
        {
            Ok(new) => new,
            // Not acked: the appliance sends it again.
            Err(e) => return self.refuse("store-error", Some(topic), &e.to_string()),
        };
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
            return;
        }
        if !new {
            metrics.duplicate();
            return self.ack(topic, envelope.id, AckStatus::Duplicate).await;
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
        let done = match envelope.body {
            Body::RpcRequest(request) => {
                // In a task of its own (see RPCS_PER_WORKER); it acks the request
                // once answered, as below.
                let Ok(slot) = Arc::clone(&self.rpc_slots).acquire_owned().await else {
                    return;
                };
                let responder = Worker::new(self.svc.clone());
                let topic = topic.clone();
                tokio::spawn(async move {
                    let _slot = slot;
                    if responder.rpc(&topic, &meta, request, now).await {
                        responder.ack(&topic, id, AckStatus::Accepted).await;
                    }
                });
                return;
            }
            Body::Ack(ack) => self.command_ack(topic, &ack, now).await,
            body => self.report(topic, id, &body, now).await,
        };
        if done {
            self.ack(topic, id, AckStatus::Accepted).await;
        }
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

    /// Audits a report from the device (no personal data: never the card face, the
    /// scanned code or a document). `false` if it could not be recorded.
    async fn report(&self, topic: &Topic, id: MessageId, body: &Body, now: i64) -> bool {
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
        let recorded = self
            .audit(
                topic,
                Actor::Device(topic.device.to_string()),
                action,
                "ok",
                detail,
                now,
            )
            .await;
        if let (true, Body::PrintStatus(status)) = (recorded, body) {
            // Whoever printed it (applications::print) learns the outcome.
            let _ = self.svc.inner.print_status.send(super::PrintReport {
                tenant: topic.tenant.clone(),
                device: topic.device.clone(),
                status: status.clone(),
            });
        }
        recorded
    }

    /// An appliance's answer to one of our commands.
    async fn command_ack(&self, topic: &Topic, ack: &Ack, now: i64) -> bool {
        let status = match &ack.status {
            AckStatus::Accepted => "accepted",
            AckStatus::Duplicate => "duplicate",
            AckStatus::Rejected { .. } => "rejected",
        };
        self.svc.inner.metrics.command_ack(status);
        let ours = self.svc.command_acked(&ack.of, &ack.status);
        let mut detail = serde_json::json!({ "command": ack.of.to_string(), "status": status });
        if let (AckStatus::Rejected { reason }, Some(map)) = (&ack.status, detail.as_object_mut()) {
            map.insert("reason".into(), reason.clone().into());
        }
        if let Some(map) = detail.as_object_mut() {
            map.insert("sent_here".into(), ours.into());
        }
        self.audit(
            topic,
            Actor::Device(topic.device.to_string()),
            "command.ack".into(),
            "ok",
            detail,
            now,
        )
        .await
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

    async fn ack(&self, topic: &Topic, of: MessageId, status: AckStatus) {
        let body = Body::Ack(Ack { of, status });
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

    async fn audit(
        &self,
        topic: &Topic,
        actor: Actor,
        action: String,
        outcome: &str,
        detail: serde_json::Value,
        now: i64,
    ) -> bool {
        let record = AuditRecord {
            tenant: topic.tenant.to_string(),
            at_ms: now,
            actor,
            action,
            resident: None,
            place: Place::Appliance(topic.device.to_string()),
            outcome: outcome.to_owned(),
            detail,
        };
        match self.svc.inner.store.append_audit(&record).await {
            Ok(_) => true,
            Err(e) => {
                // Not acked: the appliance sends it again and it is tried again.
                self.refuse("store-error", Some(topic), &e.to_string());
                false
            }
        }
    }
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
