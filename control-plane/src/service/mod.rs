//! The running control plane: MQTT ingest, RPC answers, commands, `/health` and
//! `/metrics` (`kakanai-control-plane serve`).
//!
//! Code map:
//! - this file — [`Service`] (the handle: commands, outcomes, health, metrics),
//!   [`RunningService`] ([`start`] and orderly [`RunningService::shutdown`]), the
//!   task that owns the MQTT event loop, [`ServiceError`];
//! - [`config`] — [`ServiceConfig`] from TOML plus `KAKANAI_*` environment overrides;
//! - [`broker`] — [`EmbeddedBroker`]: the in-process broker (rumqttd) started before
//!   our own client connects when `[broker] embedded = true`, stopped last;
//! - `ingest` (private) — one message from the broker through every check
//!   (topic → served tenant → size → COSE structure → `store.key_for` the topic's
//!   device → signature over the topic → kind → replay window, persisted per sender
//!   key → de-duplication by id, written for a whole batch of messages in one
//!   transaction with their audit entries, `store.record_ingest`) and then what it is:
//!   presence, a report (audited, acked), an RPC (dispatched, audited, answered,
//!   acked), an appliance's ack of a command (outcome recorded, acked);
//! - [`session`] — [`SessionResolver`], the seam to staff sessions ([`NoSessions`]
//!   until staff login exists);
//! - [`sequence`] — [`FileSequenceStore`]: the control plane's own sequence numbers
//!   in a small file in the data directory (the store has no table for them);
//! - [`metrics`] — counters and the Prometheus text;
//! - [`operations`] — central IT's operations on an appliance (logs, restart) and
//!   the Unix socket the command line asks the running service through;
//! - `http` (private) — the axum router for `/health` and `/metrics`.
//!   The admin UI ([`crate::admin::router`], `/admin/`) is merged into it, and the
//!   server passes the peer address on so administrators' actions carry their IP.
//!
//! Delivery: the broker session is persistent (`clean_session = false`; clean with a
//! shared group, see below) and incoming
//! QoS 1 messages are acknowledged to the broker (PUBACK) only after they have been
//! handled, so a control plane that stops mid-way gets them again from its session.
//! The appliance re-sends from its outbox until our application-level `ack` names
//! the message; a duplicate is acked again as `Duplicate` and not acted on twice.
//! The appliance's own acks of our commands are acked as well: the appliance keeps
//! them in its outbox until something names them (link.rs `on_command` sends them
//! through `send_envelope`), and it never acks an ack, so this cannot loop.
//! Presence is never acked (it is retained, and the will is the broker's).
//!
//! Several instances over one PostgreSQL and one broker: with `broker.shared_group`
//! set, they subscribe to `up/+` through `$share/GROUP/…`, so the broker gives each
//! message to one of them; the message-id primary key (`record_message`,
//! `record_ingest`) is what guarantees a message is acted on once even when two
//! instances see it. Their sessions are clean:
//! Mosquitto counts an offline persistent session as a group member and would queue
//! its share until it returns, so a stopped instance would stall part of the fleet;
//! with clean sessions the others take everything at once, and a message that was in
//! flight to an instance that died is re-sent by the appliance's outbox (unacked for
//! 20 s). Presence is subscribed
//! without sharing (retained messages are not delivered to shared subscriptions);
//! applying it is idempotent.
//!
//! Messages are handled by a few workers; a device always lands on the same worker
//! (hash of tenant and device), so its messages are handled in arrival order and its
//! replay window is only touched by one task.

pub mod broker;
mod checkpoints;
pub mod config;
pub mod fleet_sync;
pub mod housekeeping;
mod http;
pub mod https;
mod ingest;
pub mod metrics;
pub mod operations;
pub(crate) mod outcomes;
pub mod sequence;
pub mod session;

use std::collections::{HashMap, VecDeque};
use std::hash::{Hash as _, Hasher as _};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use kakanai_protocol::catalogue::{AckStatus, Body};
use kakanai_protocol::limits::MAX_MESSAGE_BYTES;
use kakanai_protocol::seal::seal;
use kakanai_protocol::sequence::SequenceAllocator;
use kakanai_protocol::topic::{filter, Ident};
use kakanai_protocol::{Envelope, KeyId, Kind, MessageId, ProtocolError, SigningKey, Topic};
use rumqttc::{AsyncClient, Event, EventLoop, MqttOptions, Packet, Publish, QoS};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

pub use broker::EmbeddedBroker;
pub use config::{BrokerConfig, ConfigError, EmbeddedBrokerConfig, ServiceConfig};
pub use metrics::Metrics;
pub use sequence::FileSequenceStore;
pub use session::{NoSessions, SessionFuture, SessionResolver};

use crate::model::{Actor, AuditRecord, Place, TenantId};
use crate::rpc::{Dispatcher, PingHandler};
use crate::store::{Store, StoreError};

/// Sequence numbers reserved per durable write of the counter file.
const SEQUENCE_BLOCK: u64 = 1024;
/// Workers handling messages (devices are spread over them by hash).
const WORKERS: usize = 4;
/// Messages queued per worker. When a queue is full, further messages for it wait in
/// the MQTT task's pending list (the event loop itself never waits on a worker); we
/// PUBACK only after handling, so the broker's in-flight limit bounds that list.
const WORKER_QUEUE: usize = 256;
/// rumqttc's request queue: a handled message publishes at most two messages (answer
/// and ack) plus its PUBACK. Only the event loop drains it, and it keeps turning
/// while workers are busy, so this is room for bursts, not a correctness bound.
const REQUEST_QUEUE: usize = 4 * WORKERS * WORKER_QUEUE;
/// The file of the control plane's own sequence counter, in the data directory.
pub const SEQUENCE_FILE: &str = "control-plane.seq";
/// How long a command's outcome stays known after its expiry.
const OUTCOME_GRACE_MS: i64 = 10 * 60 * 1000;

/// What can go wrong running the service. No variant carries message contents.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// The configuration is unusable.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The store failed.
    #[error("store: {0}")]
    Store(#[from] StoreError),
    /// A message could not be built or signed.
    #[error(transparent)]
    Protocol(#[from] ProtocolError),
    /// A file or socket operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// Why it failed.
        source: std::io::Error,
    },
    /// The HTTPS certificate or key cannot be used.
    #[error("HTTPS: {0}")]
    Tls(String),
    /// The MQTT client refused the request (its queue is closed or full).
    #[error("MQTT: {0}")]
    Mqtt(String),
    /// The backup configuration cannot work (directory, key).
    #[error("backup: {0}")]
    Backup(String),
    /// The tenant is not among those this instance serves.
    #[error("tenant {0} is not served by this instance")]
    NotServed(String),
    /// Only `print-job` and `config-desired` are commands.
    #[error("{0} is not a command")]
    NotACommand(&'static str),
    /// No outcome in time.
    #[error("no acknowledgement within {0:?}")]
    Timeout(Duration),
    /// The command is unknown here (never sent by this instance, or long expired).
    #[error("unknown command")]
    UnknownCommand,
}

/// What the service runs RPCs with.
pub struct ServiceOptions {
    /// The RPC methods (the default has `ping`).
    pub dispatcher: Dispatcher,
    /// Resolves staff session tokens (the default resolves none).
    pub sessions: Arc<dyn SessionResolver>,
    /// A store already open (shared with the handlers); `None` opens
    /// `database_url` from the configuration.
    pub store: Option<Store>,
    /// The admin UI under `/admin/` (on by default).
    pub admin: crate::admin::AdminSettings,
    /// HTTPS on the HTTP listener, or a TLS proxy in front ([`https`]); default
    /// plain HTTP.
    pub http_security: https::HttpSecurity,
}

impl Default for ServiceOptions {
    fn default() -> Self {
        let mut dispatcher = Dispatcher::new();
        dispatcher.register(Arc::new(PingHandler));
        Self {
            dispatcher,
            sessions: Arc::new(NoSessions),
            store: None,
            admin: crate::admin::AdminSettings::default(),
            http_security: https::HttpSecurity::default(),
        }
    }
}

impl std::fmt::Debug for ServiceOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceOptions")
            .field("dispatcher", &self.dispatcher)
            .finish_non_exhaustive()
    }
}

/// Health as `/health` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Health {
    /// The MQTT connection is up.
    pub broker_connected: bool,
    /// A query on the store succeeded just now.
    pub store_reachable: bool,
}

impl Health {
    /// Both up.
    pub fn is_ok(&self) -> bool {
        self.broker_connected && self.store_reachable
    }
}

struct PendingCommand {
    tenant: TenantId,
    device: Ident,
    expires_ms: i64,
    outcome: watch::Sender<Option<AckStatus>>,
}

struct Inner {
    store: Store,
    client: AsyncClient,
    key: SigningKey,
    kid: KeyId,
    tenants: Vec<TenantId>,
    // A std mutex: held only to take a number; it writes the counter file once per
    // block of SEQUENCE_BLOCK numbers, which is short enough for an async worker.
    sequence: Mutex<SequenceAllocator<FileSequenceStore>>,
    metrics: Metrics,
    dispatcher: Dispatcher,
    sessions: Arc<dyn SessionResolver>,
    commands: Mutex<HashMap<MessageId, PendingCommand>>,
    /// Connected and every subscription acknowledged by the broker.
    subscribed: watch::Sender<bool>,
    /// The backup directory, when backups are configured.
    backups: Option<Arc<crate::backup::Backups>>,
    /// Print outcomes reported by appliances, for whoever sent the job.
    print_status: tokio::sync::broadcast::Sender<PrintReport>,
    /// Operation results reported by appliances (`operations`).
    operation_results: tokio::sync::broadcast::Sender<operations::OperationReport>,
    /// Other instances share the broker (`broker.shared_group`): answers may be
    /// ingested elsewhere and are relayed through the store (`outcomes`).
    shared: bool,
}

/// A print job's progress or outcome, as an appliance reported it (after it was
/// verified and audited).
#[derive(Debug, Clone)]
pub struct PrintReport {
    /// The appliance's tenant.
    pub tenant: Ident,
    /// The appliance.
    pub device: Ident,
    /// The job and its state.
    pub status: kakanai_protocol::catalogue::PrintStatus,
}

/// The running service's handle; cheap to clone.
#[derive(Clone)]
pub struct Service {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Service {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Service")
            .field("kid", &self.inner.kid.to_hex())
            .field("tenants", &self.inner.tenants)
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding these locks leaves a counter or a map of waiters: keep going.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

fn duration_ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX / 4)
}

impl Service {
    /// The store.
    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    /// The counters.
    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    /// The key id the service signs with.
    pub fn kid(&self) -> &KeyId {
        &self.inner.kid
    }

    /// The public key the service signs with (audit checkpoints, commands).
    pub fn verifying_key(&self) -> kakanai_protocol::VerifyingKey {
        self.inner.key.verifying_key()
    }

    /// The tenants this instance serves.
    pub fn tenants(&self) -> &[TenantId] {
        &self.inner.tenants
    }

    /// Waits up to `timeout` until the service is connected and the broker has
    /// acknowledged all its subscriptions; `false` if it did not happen in time.
    pub async fn wait_subscribed(&self, timeout: Duration) -> bool {
        let mut rx = self.inner.subscribed.subscribe();
        let ready = tokio::time::timeout(timeout, rx.wait_for(|s| *s)).await;
        matches!(ready, Ok(Ok(_)))
    }

    /// Whether this instance serves `tenant`.
    pub fn serves(&self, tenant: &TenantId) -> bool {
        self.inner.tenants.contains(tenant)
    }

    /// Broker and store health.
    pub async fn health(&self) -> Health {
        let store_reachable = match self.inner.tenants.first() {
            Some(t) => self.inner.store.get_tenant(t).await.is_ok(),
            None => self.inner.store.list_tenants().await.is_ok(),
        };
        Health {
            broker_connected: self.inner.metrics.broker_connected(),
            store_reachable,
        }
    }

    /// The Prometheus text for `/metrics` (reads the devices online from the store).
    pub async fn metrics_text(&self) -> String {
        let mut online = Vec::new();
        let mut registered = Vec::new();
        for t in &self.inner.tenants {
            if let Ok(devices) = self.inner.store.list_devices(t).await {
                let n = devices.iter().filter(|d| d.online).count();
                online.push((t.to_string(), u64::try_from(n).unwrap_or(u64::MAX)));
                let n = devices
                    .iter()
                    .filter(|d| d.status != crate::store::DeviceStatus::Revoked)
                    .count();
                registered.push((t.to_string(), u64::try_from(n).unwrap_or(u64::MAX)));
            }
        }
        let mut text = self.inner.metrics.render(&online);
        text.push_str(&self.inner.metrics.render_operations(&registered));
        text.push_str(&self.audit_metrics_text().await);
        if let Some(backups) = &self.inner.backups {
            let backups = Arc::clone(backups);
            let status = tokio::task::spawn_blocking(move || backups.status()).await;
            text.push_str(&crate::backup::metrics_text(match &status {
                Ok(Ok(s)) => Some(s),
                _ => None,
            }));
        }
        text
    }

    /// Print outcomes from now on (subscribe before sending the job).
    pub fn print_reports(&self) -> tokio::sync::broadcast::Receiver<PrintReport> {
        self.inner.print_status.subscribe()
    }

    /// The audit chain's state per tenant: entries, and how far the last signed
    /// checkpoint lags behind.
    async fn audit_metrics_text(&self) -> String {
        use std::fmt::Write as _;
        let mut text = String::from(
            "# HELP kakanai_audit_entries Entries in the audit log.\n\
             # TYPE kakanai_audit_entries gauge\n",
        );
        let mut checkpoints = String::from(
            "# HELP kakanai_audit_last_checkpoint_timestamp_seconds When the last signed checkpoint was made (0: none).\n\
             # TYPE kakanai_audit_last_checkpoint_timestamp_seconds gauge\n",
        );
        let mut unpinned = String::from(
            "# HELP kakanai_audit_entries_since_checkpoint Entries not yet pinned by a signed checkpoint.\n\
             # TYPE kakanai_audit_entries_since_checkpoint gauge\n",
        );
        for t in &self.inner.tenants {
            let (Ok(head), Ok(list)) = (
                self.inner.store.audit_head(t).await,
                self.inner.store.checkpoints(t).await,
            ) else {
                continue;
            };
            let last = list.iter().max_by_key(|c| c.seq);
            let _ = writeln!(text, "kakanai_audit_entries{{tenant=\"{t}\"}} {}", head.seq);
            let _ = writeln!(
                checkpoints,
                "kakanai_audit_last_checkpoint_timestamp_seconds{{tenant=\"{t}\"}} {}",
                last.map_or(0, |c| c.signed_at_ms / 1000)
            );
            let _ = writeln!(
                unpinned,
                "kakanai_audit_entries_since_checkpoint{{tenant=\"{t}\"}} {}",
                head.seq.saturating_sub(last.map_or(0, |c| c.seq))
            );
        }
        text + &checkpoints + &unpinned
    }

    /// Sends `body` (a `print-job` or `config-desired`) to `device`, signed, with an
    /// expiry `expires_in` from now; the appliance refuses it after that. Returns the
    /// command's id, by which [`Service::wait_command_outcome`] finds the appliance's
    /// ack. The command is published once (QoS 1, the device's persistent session
    /// holds it while it is away); it is not kept in a durable outbox here: a caller
    /// that gets no outcome before the expiry decides whether to send it again.
    pub async fn send_command(
        &self,
        tenant: &TenantId,
        device: &Ident,
        body: Body,
        expires_in: Duration,
    ) -> Result<MessageId, ServiceError> {
        if !self.serves(tenant) {
            return Err(ServiceError::NotServed(tenant.to_string()));
        }
        let kind = body.kind();
        if !matches!(kind, Kind::PrintJob | Kind::ConfigDesired) {
            return Err(ServiceError::NotACommand(kind.name()));
        }
        let now = now_ms();
        let expires = now.saturating_add(duration_ms(expires_in));
        let (topic, envelope, bytes) = self.seal_down(tenant, device, body, None, Some(expires))?;
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
        let record = AuditRecord {
            tenant: tenant.to_string(),
            at_ms: now,
            actor: Actor::System,
            action: "command.send".into(),
            resident: None,
            place: Place::Internal,
            outcome: "ok".into(),
            detail: serde_json::json!({
                "device": device.as_str(),
                "kind": kind.name(),
                "command": envelope.id.to_string(),
                "expires_ms": expires,
            }),
        };
        // Audited before it leaves: a command that went out is always on record.
        self.inner.store.append_audit(&record).await?;
        if let Err(e) = self.publish(&topic, bytes).await {
            lock(&self.inner.commands).remove(&envelope.id);
            return Err(e);
        }
        self.inner.metrics.command_sent();
        Ok(envelope.id)
    }

    /// The appliance's answer to command `id`, if it has come (to this instance).
    pub fn command_outcome(&self, id: &MessageId) -> Option<AckStatus> {
        lock(&self.inner.commands)
            .get(id)
            .and_then(|c| c.outcome.borrow().clone())
    }

    /// Waits up to `timeout` for the appliance's answer to command `id`.
    pub async fn wait_command_outcome(
        &self,
        id: &MessageId,
        timeout: Duration,
    ) -> Result<AckStatus, ServiceError> {
        let (mut rx, tenant, device) = lock(&self.inner.commands)
            .get(id)
            .map(|c| (c.outcome.subscribe(), c.tenant.clone(), c.device.clone()))
            .ok_or(ServiceError::UnknownCommand)?;
        let reference = id.to_string();
        // Ingested here, or by another instance sharing the broker (`outcomes`).
        let got = tokio::time::timeout(timeout, async {
            tokio::select! {
                local = rx.wait_for(Option::is_some) => local.map(|s| s.clone()),
                relayed = self.relayed_outcome::<AckStatus>(
                    &tenant,
                    &device,
                    outcomes::COMMAND_ACK,
                    &reference,
                    |_| true,
                ) => Ok(Some(relayed)),
            }
        })
        .await;
        match got {
            Ok(Ok(status)) => status.ok_or(ServiceError::Timeout(timeout)),
            Ok(Err(_)) => Err(ServiceError::UnknownCommand),
            Err(_) => Err(ServiceError::Timeout(timeout)),
        }
    }

    /// Records an appliance's ack of one of our commands. `true` if the command was
    /// sent by this instance.
    pub(crate) fn command_acked(&self, id: &MessageId, status: &AckStatus) -> bool {
        match lock(&self.inner.commands).get(id) {
            Some(c) => {
                c.outcome.send_replace(Some(status.clone()));
                true
            }
            None => false,
        }
    }

    /// Encodes and signs `body` for `device`'s `down/` topic with the next sequence
    /// number.
    pub(crate) fn seal_down(
        &self,
        tenant: &TenantId,
        device: &Ident,
        body: Body,
        correlation: Option<MessageId>,
        expires_ms: Option<i64>,
    ) -> Result<(Topic, Envelope, Vec<u8>), ServiceError> {
        let topic = Topic::down(tenant, device, body.kind())?;
        let seq = lock(&self.inner.sequence).next_seq()?;
        let mut envelope = Envelope::new(seq, now_ms(), body)?;
        envelope.correlation = correlation;
        envelope.expires_ms = expires_ms;
        let bytes = seal(&self.inner.key, &self.inner.kid, &topic, &envelope)?;
        Ok((topic, envelope, bytes))
    }

    /// Publishes signed bytes, QoS 1, not retained.
    pub(crate) async fn publish(&self, topic: &Topic, bytes: Vec<u8>) -> Result<(), ServiceError> {
        self.inner
            .client
            .publish(topic.to_string(), QoS::AtLeastOnce, false, bytes)
            .await
            .map_err(|e| ServiceError::Mqtt(e.to_string()))
    }

    /// Tells the broker a message has been handled (manual PUBACK).
    pub(crate) async fn puback(&self, publish: &Publish) {
        if let Err(e) = self.inner.client.ack(publish).await {
            tracing::warn!(error = %e, "cannot acknowledge a message to the broker");
        }
    }
}

/// A started service: its handle, its HTTP address, and its tasks.
pub struct RunningService {
    service: Service,
    http_addr: SocketAddr,
    shutdown: watch::Sender<bool>,
    mqtt_task: JoinHandle<()>,
    http_task: JoinHandle<()>,
    broker: Option<EmbeddedBroker>,
}

impl std::fmt::Debug for RunningService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunningService")
            .field("service", &self.service)
            .field("http_addr", &self.http_addr)
            .field("broker", &self.broker)
            .finish_non_exhaustive()
    }
}

impl RunningService {
    /// The handle.
    pub fn service(&self) -> &Service {
        &self.service
    }

    /// Where `/health` and `/metrics` listen (the real port when the config said 0).
    pub fn http_addr(&self) -> SocketAddr {
        self.http_addr
    }

    /// The embedded broker's address, when this service runs one.
    pub fn embedded_broker_addr(&self) -> Option<SocketAddr> {
        self.broker.as_ref().map(EmbeddedBroker::addr)
    }

    /// Stops taking messages, lets the workers finish what they hold (their answers
    /// still go out), disconnects from the broker, and stops the HTTP server; then
    /// stops the embedded broker, if any (last, so our own answers and DISCONNECT
    /// went through it first).
    pub async fn shutdown(mut self) {
        let _ = self.shutdown.send(true);
        let _ = (&mut self.mqtt_task).await;
        let _ = (&mut self.http_task).await;
        if let Some(broker) = self.broker.take() {
            // stop() joins the broker's thread: not on an async worker.
            let _ = tokio::task::spawn_blocking(move || broker.stop()).await;
        }
        tracing::info!("control plane stopped");
    }
}

/// Starts the service: opens the store (applying migrations), the sequence counter,
/// the MQTT connection and the HTTP server. Returns once the HTTP server listens;
/// the broker connection comes up in the background (see [`Service::health`]).
pub async fn start(
    config: ServiceConfig,
    options: ServiceOptions,
) -> Result<RunningService, ServiceError> {
    std::fs::create_dir_all(&config.data_dir).map_err(|source| ServiceError::Io {
        what: "creating the data directory",
        source,
    })?;
    let store = match options.store.clone() {
        Some(store) => store,
        None => Store::open(&config.database_url).await?,
    };
    for t in &config.tenants {
        if store.get_tenant(t).await?.is_none() {
            tracing::warn!(tenant = %t, "served tenant does not exist in the store yet");
        }
    }
    let counter = FileSequenceStore::new(config.data_dir.join(SEQUENCE_FILE));
    let sequence =
        tokio::task::spawn_blocking(move || SequenceAllocator::new(counter, SEQUENCE_BLOCK))
            .await
            .map_err(|_| ServiceError::Mqtt("sequence task failed".into()))??;

    let broker = &config.broker;
    // Before our client exists, so its first connection attempt finds it listening.
    // Dropped (and so stopped) if anything below fails.
    let embedded = match broker.embedded.clone() {
        // start() waits (briefly) for the broker's thread: not on an async worker.
        Some(e) => Some(
            tokio::task::spawn_blocking(move || EmbeddedBroker::start(&e))
                .await
                .map_err(|_| ServiceError::Mqtt("embedded broker task failed".into()))??,
        ),
        None => None,
    };
    let mut options_mqtt = MqttOptions::new(&broker.client_id, &broker.host, broker.port);
    options_mqtt.set_keep_alive(broker.keep_alive);
    // One instance: a persistent session, so the broker keeps our subscriptions and
    // queues QoS 1 messages while we are away (restart, deploy). Several instances
    // (shared group): a clean session, or the broker would go on handing a stopped
    // instance its share and queue it until that instance returns (Mosquitto counts
    // offline persistent sessions as group members); what was in flight to an
    // instance that died comes again from the appliances' outboxes (stale re-send).
    options_mqtt.set_clean_session(broker.shared_group.is_some());
    // PUBACK only after a message is handled (see the module docs).
    options_mqtt.set_manual_acks(true);
    // Oversized packets up to 4× the limit are read and refused with a reason by the
    // ingest checks rather than dropping the connection; beyond that the broker's
    // message_size_limit is the guard.
    options_mqtt.set_max_packet_size(4 * MAX_MESSAGE_BYTES, MAX_MESSAGE_BYTES + 1024);
    let (client, mut eventloop) = AsyncClient::new(options_mqtt, REQUEST_QUEUE);
    // An RPC answer and its ack go out back to back as small packets: with Nagle's
    // algorithm the second waits for the peer's delayed ACK (~40 ms on Linux).
    let mut network = eventloop.network_options();
    network.set_tcp_nodelay(true);
    eventloop.set_network_options(network);

    let mut filters = Vec::new();
    for t in &config.tenants {
        let up = filter::tenant_up(t);
        filters.push(match &broker.shared_group {
            Some(group) => format!("$share/{group}/{up}"),
            None => up,
        });
        filters.push(filter::tenant_presence(t));
    }

    let backups = match config.backup.clone() {
        Some(b) => Some(Arc::new(
            crate::backup::Backups::open(b).map_err(|e| ServiceError::Backup(e.to_string()))?,
        )),
        None => None,
    };
    let service = Service {
        inner: Arc::new(Inner {
            store,
            client,
            key: config.key,
            kid: config.kid,
            tenants: config.tenants,
            sequence: Mutex::new(sequence),
            metrics: Metrics::default(),
            dispatcher: options.dispatcher,
            sessions: options.sessions,
            commands: Mutex::new(HashMap::new()),
            subscribed: watch::channel(false).0,
            backups: backups.clone(),
            print_status: tokio::sync::broadcast::channel(256).0,
            operation_results: operations::channel(),
            shared: broker.shared_group.is_some(),
        }),
    };

    let (shutdown, shutdown_rx) = watch::channel(false);
    let listener = tokio::net::TcpListener::bind(config.http_listen)
        .await
        .map_err(|source| ServiceError::Io {
            what: "binding the HTTP listener",
            source,
        })?;
    let http_addr = listener.local_addr().map_err(|source| ServiceError::Io {
        what: "reading the HTTP address",
        source,
    })?;
    let mut admin = options.admin;
    admin.tls |= options.http_security.https();
    let app = http::router(service.clone()).merge(crate::admin::router(service.clone(), admin));
    let app = https::with_forwarded_for(app, options.http_security.trusted_proxies.clone());
    let listener = match &options.http_security.tls {
        Some(tls) => https::Listener::Tls(
            kakanai_provisioning::enrol::TlsListener::new(listener, &tls.cert_pem, &tls.key_pem)
                .map_err(ServiceError::Tls)?,
        ),
        None => https::Listener::Plain(listener),
    };
    let mut http_stop = shutdown_rx.clone();
    let http_task = tokio::spawn(async move {
        let stop = async move {
            let _ = http_stop.wait_for(|s| *s).await;
        };
        // With the peer address: the admin UI records where an administrator acts from.
        let served = match listener {
            https::Listener::Plain(l) => {
                let app = app.into_make_service_with_connect_info::<SocketAddr>();
                axum::serve(l, app).with_graceful_shutdown(stop).await
            }
            https::Listener::Tls(l) => {
                let app = https::with_tls_peer(app)
                    .into_make_service_with_connect_info::<https::TlsPeer>();
                axum::serve(l, app).with_graceful_shutdown(stop).await
            }
        };
        if let Err(e) = served {
            tracing::error!(error = %e, "HTTP server failed");
        }
    });

    let mut workers = Vec::new();
    let (alive_tx, alive_rx) = mpsc::channel::<()>(1);
    // One writer for every worker's batches (group commit, see `ingest`).
    let committer = ingest::Committer::start(service.inner.store.clone());
    for _ in 0..WORKERS {
        let (tx, rx) = mpsc::channel(WORKER_QUEUE);
        workers.push(tx);
        let worker = ingest::Worker::new(service.clone(), committer.clone());
        let alive = alive_tx.clone();
        tokio::spawn(async move {
            worker.run(rx).await;
            drop(alive);
        });
    }
    drop(alive_tx);
    let mqtt = MqttTask {
        service: service.clone(),
        eventloop,
        workers: Some(workers),
        workers_alive: alive_rx,
        filters,
        shutdown: shutdown_rx,
    };
    let mqtt_task = tokio::spawn(mqtt.run());
    tokio::spawn(checkpoints::run(service.clone(), shutdown.subscribe()));
    tokio::spawn(housekeeping::run(service.clone(), shutdown.subscribe()));
    if let Some(backups) = backups {
        tokio::spawn(crate::backup::schedule::run(
            backups,
            service.inner.store.clone(),
            config.database_url.clone(),
            shutdown.subscribe(),
        ));
    }
    tracing::info!(http = %http_addr, kid = %service.kid().to_hex(), "control plane started");
    Ok(RunningService {
        service,
        http_addr,
        shutdown,
        mqtt_task,
        http_task,
        broker: embedded,
    })
}

struct MqttTask {
    service: Service,
    eventloop: EventLoop,
    workers: Option<Vec<mpsc::Sender<Publish>>>,
    workers_alive: mpsc::Receiver<()>,
    filters: Vec<String>,
    shutdown: watch::Receiver<bool>,
}

/// Which worker handles a topic: by tenant and device, so one device's messages stay
/// in order on one worker.
fn worker_for(topic: &str, workers: usize) -> usize {
    let device_part = topic.splitn(6, '/').take(5).collect::<Vec<_>>();
    let mut h = std::collections::hash_map::DefaultHasher::new();
    device_part.hash(&mut h);
    usize::try_from(h.finish() % (workers.max(1) as u64)).unwrap_or(0)
}

/// Room in the worker that handles `p` (its device's), or `None` when the workers
/// are gone (shutting down) — then the message stays unacknowledged and the broker
/// delivers it again on the next connection.
async fn reserve_for<'a>(
    workers: Option<&'a [mpsc::Sender<rumqttc::Publish>]>,
    p: Option<&rumqttc::Publish>,
) -> Option<mpsc::Permit<'a, rumqttc::Publish>> {
    let (workers, p) = (workers?, p?);
    workers
        .get(worker_for(&p.topic, workers.len()))?
        .reserve()
        .await
        .ok()
}

impl MqttTask {
    async fn run(mut self) {
        let service = self.service.clone();
        let metrics = &service.inner.metrics;
        let mut attempt = 0u32;
        let mut subacks = 0usize;
        // Messages read from the broker and not yet taken by their worker. The event
        // loop never waits on a worker: rumqttc hands out buffered incoming packets
        // before it drains our request queue (answers, acks, PUBACKs), so a loop
        // blocked on a full worker while the workers wait on a full request queue
        // would stall for good when a broker sends many messages at once. Bounded in
        // practice by the broker's in-flight limit for us (Mosquitto
        // `max_inflight_messages`).
        let mut pending: VecDeque<rumqttc::Publish> = VecDeque::new();
        loop {
            let event = tokio::select! {
                _ = self.shutdown.wait_for(|s| *s) => break,
                permit = reserve_for(self.workers.as_deref(), pending.front()), if !pending.is_empty() => {
                    // Without a worker (shutting down) the message stays
                    // unacknowledged: the broker delivers it again later.
                    if let (Some(permit), Some(p)) = (permit, pending.pop_front()) {
                        permit.send(p);
                    }
                    continue;
                }
                e = self.eventloop.poll() => e,
            };
            match event {
                Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                    attempt = 0;
                    subacks = 0;
                    metrics.set_broker_connected(true);
                    tracing::info!(
                        session_present = ack.session_present,
                        "connected to the broker"
                    );
                    // Subscribing again on every connection is harmless and covers a
                    // broker that lost our session. try_: we are the task that drains
                    // the request queue, so waiting on it here could deadlock.
                    for f in &self.filters {
                        if let Err(e) = self.service.inner.client.try_subscribe(f, QoS::AtLeastOnce)
                        {
                            tracing::error!(error = %e, filter = %f, "cannot subscribe");
                        }
                    }
                }
                Ok(Event::Incoming(Packet::SubAck(ack))) => {
                    let failed = ack
                        .return_codes
                        .iter()
                        .any(|c| matches!(c, rumqttc::SubscribeReasonCode::Failure));
                    if failed {
                        tracing::error!("the broker refused a subscription (shared subscriptions unsupported, or ACL)");
                    } else {
                        subacks += 1;
                        if subacks == self.filters.len() {
                            service.inner.subscribed.send_replace(true);
                        }
                    }
                }
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    if self.workers.is_some() {
                        pending.push_back(p);
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    if metrics.broker_connected() {
                        tracing::warn!(error = %e, "lost the broker");
                    } else if attempt.is_multiple_of(20) {
                        tracing::warn!(error = %e, attempt, "cannot reach the broker");
                    }
                    metrics.set_broker_connected(false);
                    service.inner.subscribed.send_replace(false);
                    let delay = Duration::from_millis(100u64 << attempt.min(6));
                    attempt = attempt.saturating_add(1);
                    tokio::select! {
                        () = tokio::time::sleep(delay.min(Duration::from_secs(5))) => {}
                        _ = self.shutdown.wait_for(|s| *s) => break,
                    }
                }
            }
        }
        self.drain_and_disconnect().await;
        metrics.set_broker_connected(false);
    }

    /// Stops feeding the workers, keeps the connection turning while they finish
    /// (their answers and PUBACKs go out through it), then disconnects cleanly.
    async fn drain_and_disconnect(&mut self) {
        self.workers = None;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        loop {
            tokio::select! {
                _ = self.workers_alive.recv() => break,
                e = self.eventloop.poll() => if e.is_err() { break },
                () = tokio::time::sleep_until(deadline) => break,
            }
        }
        let _ = self.service.inner.client.try_disconnect();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(1);
        loop {
            tokio::select! {
                e = self.eventloop.poll() => match e {
                    Ok(Event::Outgoing(rumqttc::Outgoing::Disconnect)) | Err(_) => break,
                    Ok(_) => {}
                },
                () = tokio::time::sleep_until(deadline) => break,
            }
        }
    }
}
