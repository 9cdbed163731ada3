//! The appliance's link to the control plane: signed messages over MQTT 3.1.1.
//!
//! One task owns the MQTT event loop (`rumqttc`). What it guarantees:
//! - **Nothing sent is lost.** [`LinkHandle::send`] writes the signed message to the
//!   redb outbox before publishing it; it leaves the outbox only when the control
//!   plane's `ack` names it. Every (re)connection publishes the whole outbox again,
//!   oldest first, and while connected a message unacknowledged for 20 s is published
//!   again (a broker may drop what it cannot queue); the control plane de-duplicates
//!   by message id.
//! - **Commands run once, and only genuine, fresh ones.** Everything on our `down/`
//!   topics goes through [`kakanai_protocol::seal::Opener`] (signature by the control
//!   plane's key over the topic, kind fits the topic, replay window). Commands must
//!   carry an expiry and are refused after it; executed command ids are kept in the
//!   store, so a command re-sent by the control plane is acknowledged as a duplicate
//!   and not run again, also after a restart. Each command gets an ack.
//! - **Presence.** A retained, signed birth (online, boot counter, device inventory)
//!   on every connection; a retained, signed will (offline) for the broker to publish
//!   if the appliance vanishes.
//! - **RPC.** [`LinkHandle::rpc`] sends a request with an expiry and waits for the
//!   response with the same correlation id, or fails after its timeout with
//!   [`LinkError::Timeout`], so the staff UI can say the control plane is unreachable.
//! - Reconnection with the jittered exponential [`Backoff`] from `kakanai-hw`; keep-
//!   alive pings detect a half-open connection.
//! - **TLS.** [`start_tls`] connects over TLS (OpenSSL through native-tls) trusting
//!   only the tenant CA of the provisioning bundle and presenting the device's client
//!   certificate; the broker takes the certificate's CN as the user name and confines
//!   the device to its own topics. [`LinkHandle::use_tls`] swaps in a renewed
//!   certificate for the next connection without dropping the current one, and
//!   [`spawn_renewal`] renews the bundle's certificate at two thirds of its validity.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use kakanai_hw::backoff::Backoff;
use kakanai_protocol::catalogue::{
    Ack, AckStatus, Body, DeviceInfo, Presence, PresenceState, RpcError, RpcMethod, RpcRequest,
    RpcResponse,
};
use kakanai_protocol::limits::MAX_MESSAGE_BYTES;
use kakanai_protocol::seal::{seal, Opener};
use kakanai_protocol::sequence::SequenceAllocator;
use kakanai_protocol::topic::{filter, Channel, Ident};
use kakanai_protocol::{
    Envelope, KeyId, Kind, MessageId, ProtocolError, SigningKey, Topic, VerifyingKey,
};
use rumqttc::{
    AsyncClient, Event, EventLoop, LastWill, MqttOptions, Packet, QoS, TlsConfiguration, Transport,
};
use tokio::sync::{mpsc, oneshot, watch, Mutex};

use crate::store::{ApplianceStore, OutboxItem, SequenceCounter, StoreError};

/// Sequence numbers reserved per durable write.
const SEQUENCE_BLOCK: u64 = 1024;
/// Messages re-published per batch after a (re)connection.
const RESEND_BATCH: usize = 256;
/// How often the outbox is checked for messages still unacknowledged while online.
const STALE_CHECK: Duration = Duration::from_secs(10);
/// A message unacknowledged this long while online is published again.
const STALE_AFTER_MS: i64 = 20_000;

/// Who this appliance is and whom it trusts.
pub struct Identity {
    /// The tenant (city).
    pub tenant: Ident,
    /// This device's id.
    pub device: Ident,
    /// This device's signing key.
    pub key: SigningKey,
    /// Its key id.
    pub kid: KeyId,
    /// The control plane's public keys by key id (more than one during a rotation).
    pub control_plane_keys: Vec<(KeyId, VerifyingKey)>,
}

/// How to run the link.
pub struct LinkConfig {
    /// Identity and trust.
    pub identity: Identity,
    /// Broker host.
    pub broker_host: String,
    /// Broker port.
    pub broker_port: u16,
    /// MQTT keep-alive; a broker silent for 1.5× this is considered gone.
    pub keep_alive: Duration,
    /// Delays between reconnection attempts.
    pub backoff: Backoff,
    /// This software's version, for the birth message.
    pub software_version: String,
    /// The devices attached, for the birth message.
    pub devices: Vec<DeviceInfo>,
}

/// TLS to the broker: the tenant CA (the only trust anchor) and the device's
/// client certificate and key, all PEM (from the provisioning bundle).
#[derive(Clone)]
pub struct TlsClient {
    /// The tenant CA certificate.
    pub ca_pem: String,
    /// The device's certificate.
    pub cert_pem: String,
    /// Its PKCS#8 private key (secret).
    pub key_pem: String,
}

impl std::fmt::Debug for TlsClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TlsClient { .. }")
    }
}

impl TlsClient {
    fn connector(&self) -> Result<native_tls::TlsConnector, LinkError> {
        let tls = |e: native_tls::Error| LinkError::Tls(e.to_string());
        let ca = native_tls::Certificate::from_pem(self.ca_pem.as_bytes()).map_err(tls)?;
        let identity =
            native_tls::Identity::from_pkcs8(self.cert_pem.as_bytes(), self.key_pem.as_bytes())
                .map_err(tls)?;
        native_tls::TlsConnector::builder()
            .add_root_certificate(ca)
            // Only the tenant CA: a certificate from a public CA is no broker of ours.
            .disable_built_in_roots(true)
            .identity(identity)
            .min_protocol_version(Some(native_tls::Protocol::Tlsv12))
            .build()
            .map_err(tls)
    }
}

/// What the link tells the rest of the appliance.
#[derive(Debug, Clone, PartialEq)]
pub enum LinkEvent {
    /// Connected to the broker and subscribed to our commands (birth sent, outbox being re-sent).
    Online,
    /// Lost the broker; retrying.
    Offline {
        /// Why, for the logs and the staff UI (no personal data).
        reason: String,
    },
    /// A verified, fresh command to execute (already acknowledged as accepted).
    Command(Envelope),
    /// The control plane acknowledged one of our messages.
    Acked(MessageId),
    /// A message on our topics was refused.
    Rejected {
        /// Why (no message contents).
        reason: String,
    },
}

/// Why a link operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LinkError {
    /// The appliance's store failed (the message was not queued).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The message could not be built or signed.
    #[error(transparent)]
    Protocol(#[from] ProtocolError),
    /// No answer from the control plane in time.
    #[error("the control plane did not answer within {0:?}")]
    Timeout(Duration),
    /// The link has shut down.
    #[error("the link is shut down")]
    Closed,
    /// The TLS material cannot be used.
    #[error("TLS: {0}")]
    Tls(String),
}

struct Sender {
    identity: Identity,
    seq: SequenceAllocator<SequenceCounter>,
}

impl Sender {
    fn envelope(&mut self, body: Body) -> Result<Envelope, LinkError> {
        Ok(Envelope::new(self.seq.next_seq()?, now_ms(), body)?)
    }

    fn seal_up(&mut self, envelope: &Envelope) -> Result<(Topic, Vec<u8>), LinkError> {
        let id = &self.identity;
        let topic = match envelope.kind() {
            Kind::Presence => Topic::presence(&id.tenant, &id.device),
            kind => Topic::up(&id.tenant, &id.device, kind)?,
        };
        let bytes = seal(&id.key, &id.kid, &topic, envelope)?;
        Ok((topic, bytes))
    }
}

type PendingRpcs = Arc<std::sync::Mutex<HashMap<MessageId, oneshot::Sender<RpcResponse>>>>;

/// The handle the rest of the appliance uses; cheap to clone.
#[derive(Clone)]
pub struct LinkHandle {
    client: AsyncClient,
    store: Arc<ApplianceStore>,
    sender: Arc<Mutex<Sender>>,
    rpcs: PendingRpcs,
    online: watch::Receiver<bool>,
    next_tls: Arc<std::sync::Mutex<Option<native_tls::TlsConnector>>>,
}

impl LinkHandle {
    /// Uses `tls` (a renewed certificate) from the next connection on; the current
    /// connection carries on with the old certificate, which stays valid until it
    /// expires.
    pub fn use_tls(&self, tls: &TlsClient) -> Result<(), LinkError> {
        *lock(&self.next_tls) = Some(tls.connector()?);
        Ok(())
    }

    /// Signs `body`, writes it to the outbox, then publishes it. Returns once it is
    /// durably queued: it will reach the control plane even if the link is down now
    /// or the appliance restarts.
    pub async fn send(&self, body: Body) -> Result<MessageId, LinkError> {
        let envelope = self.sender.lock().await.envelope(body)?;
        self.send_envelope(envelope).await
    }

    async fn send_envelope(&self, envelope: Envelope) -> Result<MessageId, LinkError> {
        let (topic, bytes) = self.sender.lock().await.seal_up(&envelope)?;
        let item = OutboxItem {
            message_id: *envelope.id.as_bytes(),
            topic: topic.to_string(),
            signed: bytes,
            enqueued_ms: now_ms(),
        };
        let store = Arc::clone(&self.store);
        let queued = item.clone();
        // redb commits with an fsync: keep it off the async workers.
        tokio::task::spawn_blocking(move || store.enqueue(&[queued]))
            .await
            .map_err(|_| LinkError::Closed)??;
        // Link down: the message waits in the outbox for the next connection. Online
        // with the client's queue full (a burst): wait for room in a task of its own,
        // so the message goes now rather than with the stale re-send 20 s later.
        let (topic, signed) = (item.topic, item.signed);
        if let Err(rumqttc::ClientError::TryRequest(_)) =
            self.client
                .try_publish(topic.clone(), QoS::AtLeastOnce, false, signed.clone())
        {
            if self.is_online() {
                let client = self.client.clone();
                tokio::spawn(async move {
                    let _ = client.publish(topic, QoS::AtLeastOnce, false, signed).await;
                });
            }
        }
        Ok(envelope.id)
    }

    /// Calls RPC method `M` on the control plane and waits up to `timeout`.
    pub async fn rpc<M: RpcMethod>(
        &self,
        params: &M::Request,
        timeout: Duration,
    ) -> Result<Result<M::Response, RpcError>, LinkError> {
        self.call::<M>(RpcRequest::new::<M>(params)?, timeout).await
    }

    /// Calls RPC method `M` in the staff session `session` (opened on this
    /// appliance) and waits up to `timeout`.
    pub async fn rpc_in_session<M: RpcMethod>(
        &self,
        session: &str,
        params: &M::Request,
        timeout: Duration,
    ) -> Result<Result<M::Response, RpcError>, LinkError> {
        let request = RpcRequest::new::<M>(params)?.in_session(session);
        self.call::<M>(request, timeout).await
    }

    async fn call<M: RpcMethod>(
        &self,
        request: RpcRequest,
        timeout: Duration,
    ) -> Result<Result<M::Response, RpcError>, LinkError> {
        let expires = now_ms() + i64::try_from(timeout.as_millis()).unwrap_or(i64::MAX / 2);
        let envelope = self
            .sender
            .lock()
            .await
            .envelope(Body::RpcRequest(request))?
            .expiring_at(expires);
        let (tx, rx) = oneshot::channel();
        let id = envelope.id;
        lock(&self.rpcs).insert(id, tx);
        let sent = self.send_envelope(envelope).await;
        if let Err(e) = sent {
            lock(&self.rpcs).remove(&id);
            return Err(e);
        }
        let answer = tokio::time::timeout(timeout, rx).await;
        lock(&self.rpcs).remove(&id);
        match answer {
            Ok(Ok(response)) => Ok(response.result::<M>()?),
            Ok(Err(_)) => Err(LinkError::Closed),
            Err(_) => Err(LinkError::Timeout(timeout)),
        }
    }

    /// Whether the broker connection is up now.
    pub fn is_online(&self) -> bool {
        *self.online.borrow()
    }

    /// Waits until the link is online, up to `timeout`.
    pub async fn wait_online(&self, timeout: Duration) -> bool {
        let mut rx = self.online.clone();
        let up = tokio::time::timeout(timeout, rx.wait_for(|up| *up)).await;
        let online = matches!(up, Ok(Ok(_)));
        online
    }

    /// Waits up to `timeout` until the control plane has acknowledged message `id`
    /// (it left the outbox); `false` if it is still waiting then.
    pub async fn wait_acked(&self, id: MessageId, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let store = Arc::clone(&self.store);
            let pending =
                tokio::task::spawn_blocking(move || store.is_pending(id.as_bytes())).await;
            match pending {
                Ok(Ok(false)) => return true,
                Ok(Ok(true)) => {}
                // A store that cannot be read cannot tell: treat as not acknowledged.
                _ => return false,
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits up to `timeout` until the outbox is empty (everything sent was
    /// acknowledged); `false` if messages still wait then.
    pub async fn wait_drained(&self, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let store = Arc::clone(&self.store);
            match tokio::task::spawn_blocking(move || store.pending_count()).await {
                Ok(Ok(0)) => return true,
                Ok(Ok(_)) => {}
                _ => return false,
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Publishes the retained "offline" presence and disconnects.
    pub async fn shutdown(&self, boot_counter: u64) -> Result<(), LinkError> {
        let presence = Body::Presence(Presence {
            state: PresenceState::Offline,
            boot_counter,
            software_version: String::new(),
            devices: Vec::new(),
        });
        let (topic, bytes) = {
            let mut sender = self.sender.lock().await;
            let envelope = sender.envelope(presence)?;
            sender.seal_up(&envelope)?
        };
        let _ = self
            .client
            .publish(topic.to_string(), QoS::AtLeastOnce, true, bytes)
            .await;
        let _ = self.client.disconnect().await;
        Ok(())
    }
}

fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding this lock leaves only a map of waiters: keep going.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Starts the link over plain TCP: counts the boot, prepares birth and will, and
/// spawns the task that owns the MQTT connection. Events arrive on the returned
/// receiver.
pub async fn start(
    config: LinkConfig,
    store: Arc<ApplianceStore>,
) -> Result<(LinkHandle, mpsc::Receiver<LinkEvent>, u64), LinkError> {
    start_with(config, None, store).await
}

/// Like [`start`], over TLS with the device's client certificate.
pub async fn start_tls(
    config: LinkConfig,
    tls: &TlsClient,
    store: Arc<ApplianceStore>,
) -> Result<(LinkHandle, mpsc::Receiver<LinkEvent>, u64), LinkError> {
    start_with(config, Some(tls), store).await
}

async fn start_with(
    config: LinkConfig,
    tls: Option<&TlsClient>,
    store: Arc<ApplianceStore>,
) -> Result<(LinkHandle, mpsc::Receiver<LinkEvent>, u64), LinkError> {
    // Bad TLS material is reported before anything is counted or connected.
    let connector = tls.map(TlsClient::connector).transpose()?;
    let boot = {
        let store = Arc::clone(&store);
        tokio::task::spawn_blocking(move || store.boot())
            .await
            .map_err(|_| LinkError::Closed)??
    };
    let seq = {
        let counter = store.sequence_store();
        tokio::task::spawn_blocking(move || SequenceAllocator::new(counter, SEQUENCE_BLOCK))
            .await
            .map_err(|_| LinkError::Closed)??
    };
    let mut sender = Sender {
        identity: config.identity,
        seq,
    };
    let id = &sender.identity;
    let presence_topic = Topic::presence(&id.tenant, &id.device);
    let down_filter = filter::device_down(&id.tenant, &id.device);
    let client_id = format!("kakanai-{}-{}", id.tenant, id.device);
    let control_plane_keys = id.control_plane_keys.clone();
    let (tenant, device) = (id.tenant.clone(), id.device.clone());

    // The will is signed now: the broker publishes it as it is.
    let will = sender.envelope(Body::Presence(Presence {
        state: PresenceState::Offline,
        boot_counter: boot,
        software_version: config.software_version.clone(),
        devices: Vec::new(),
    }))?;
    let (_, will_bytes) = sender.seal_up(&will)?;
    let birth = Body::Presence(Presence {
        state: PresenceState::Online,
        boot_counter: boot,
        software_version: config.software_version,
        devices: config.devices,
    });

    let mut options = MqttOptions::new(client_id, config.broker_host, config.broker_port);
    options.set_keep_alive(config.keep_alive);
    // Persistent session: the broker keeps our subscription and QoS 1 commands
    // while we are away.
    options.set_clean_session(false);
    // Incoming packets up to 4× the message limit are read and then refused by the
    // Opener with a logged reason, instead of rumqttc dropping the whole connection;
    // beyond that the broker's `message_size_limit` is the guard.
    options.set_max_packet_size(4 * MAX_MESSAGE_BYTES, MAX_MESSAGE_BYTES + 1024);
    if let Some(connector) = connector {
        options.set_transport(Transport::tls_with_config(
            TlsConfiguration::NativeConnector(connector),
        ));
    }
    options.set_last_will(LastWill::new(
        presence_topic.to_string(),
        will_bytes,
        QoS::AtLeastOnce,
        true,
    ));
    let (client, mut eventloop) = AsyncClient::new(options, 1024);
    // Small packets back to back (a request, then an ack): with Nagle's algorithm
    // the second waits for the broker's delayed ACK, ~40 ms on Linux.
    let mut network = eventloop.network_options();
    network.set_tcp_nodelay(true);
    eventloop.set_network_options(network);
    let (online_tx, online) = watch::channel(false);
    let (events_tx, events) = mpsc::channel(1024);
    let handle = LinkHandle {
        client,
        store,
        sender: Arc::new(Mutex::new(sender)),
        rpcs: Arc::new(std::sync::Mutex::new(HashMap::new())),
        online,
        next_tls: Arc::new(std::sync::Mutex::new(None)),
    };
    let task = LinkTask {
        handle: handle.clone(),
        eventloop,
        events: events_tx,
        online: online_tx,
        opener: Opener::new(),
        control_plane_keys,
        tenant,
        device,
        down_filter,
        birth,
        backoff: config.backoff,
    };
    tokio::spawn(task.run());
    Ok((handle, events, boot))
}

struct LinkTask {
    handle: LinkHandle,
    eventloop: EventLoop,
    events: mpsc::Sender<LinkEvent>,
    online: watch::Sender<bool>,
    opener: Opener,
    control_plane_keys: Vec<(KeyId, VerifyingKey)>,
    tenant: Ident,
    device: Ident,
    down_filter: String,
    birth: Body,
    backoff: Backoff,
}

impl LinkTask {
    async fn run(mut self) {
        let mut attempt = 0u32;
        self.spawn_stale_resender();
        loop {
            if let Some(connector) = lock(&self.handle.next_tls).take() {
                // Takes effect when the event loop next connects.
                self.eventloop
                    .mqtt_options
                    .set_transport(Transport::tls_with_config(
                        TlsConfiguration::NativeConnector(connector),
                    ));
            }
            // `poll` is never raced against anything: dropping it half-way through a
            // connect makes the broker see an unclean disconnect and publish our will.
            let polled = self.eventloop.poll().await;
            match polled {
                Ok(Event::Incoming(Packet::ConnAck(_))) => {
                    attempt = 0;
                    self.on_connected().await;
                }
                // Online only once the broker has our subscription: a command or an ack
                // published before that would be lost.
                Ok(Event::Incoming(Packet::SubAck(_))) => self.on_subscribed().await,
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    self.on_publish(&p.topic, &p.payload).await;
                }
                Ok(Event::Outgoing(rumqttc::Outgoing::Disconnect)) => {
                    let _ = self.online.send(false);
                    return;
                }
                Ok(_) => {}
                Err(e) => {
                    if *self.online.borrow() {
                        let _ = self.online.send(false);
                        tracing::warn!(error = %e, "link to the broker lost");
                        self.emit(LinkEvent::Offline {
                            reason: e.to_string(),
                        })
                        .await;
                    }
                    // All handles dropped: nobody can use the link any more.
                    if self.events.is_closed() && Arc::strong_count(&self.handle.sender) == 1 {
                        return;
                    }
                    tokio::time::sleep(self.backoff.delay(attempt)).await;
                    attempt = attempt.saturating_add(1);
                }
            }
        }
    }

    async fn on_connected(&mut self) {
        let birth = {
            let mut sender = self.handle.sender.lock().await;
            sender
                .envelope(self.birth.clone())
                .and_then(|e| sender.seal_up(&e))
        };
        // Subscribe and announce from a task of its own: rumqttc's request queue
        // drains only while this loop polls, and after an outage it may be full of
        // messages queued meanwhile, so awaiting room here would never end.
        let client = self.handle.client.clone();
        let filter = self.down_filter.clone();
        tokio::spawn(async move {
            let _ = client.subscribe(filter, QoS::AtLeastOnce).await;
            match birth {
                Ok((topic, bytes)) => {
                    let _ = client
                        .publish(topic.to_string(), QoS::AtLeastOnce, true, bytes)
                        .await;
                }
                Err(e) => tracing::error!(error = %e, "cannot sign the birth message"),
            }
        });
    }

    async fn on_subscribed(&mut self) {
        let _ = self.online.send(true);
        tracing::info!("link to the broker up");
        self.emit(LinkEvent::Online).await;
        self.resend_outbox();
    }

    /// Why a timer: a broker may drop QoS 1 messages it cannot queue for a slow
    /// subscriber, and then nothing but a re-send brings them. Ends with the link.
    fn spawn_stale_resender(&self) {
        let store = Arc::clone(&self.handle.store);
        let client = self.handle.client.clone();
        // Weak: the sender's strong count tells other tasks whether the link lives.
        let sender = Arc::downgrade(&self.handle.sender);
        let mut online = self.online.subscribe();
        tokio::spawn(async move {
            let mut tick =
                tokio::time::interval_at(tokio::time::Instant::now() + STALE_CHECK, STALE_CHECK);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = tick.tick() => {
                        let Some(sender) = sender.upgrade() else { return };
                        if *online.borrow() {
                            resend_outbox(Arc::clone(&store), client.clone(), Some((STALE_AFTER_MS, sender)));
                        }
                    }
                    // The link task ended: let go of the store at once.
                    changed = online.changed() => if changed.is_err() { return },
                }
            }
        });
    }

    /// Publishes the whole outbox again, oldest first, from a separate task so the
    /// event loop keeps turning (rumqttc's request queue drains only while polled).
    fn resend_outbox(&self) {
        resend_outbox(
            Arc::clone(&self.handle.store),
            self.handle.client.clone(),
            None,
        );
    }

    async fn on_publish(&mut self, topic: &str, payload: &[u8]) {
        let parsed = match Topic::parse(topic) {
            Ok(t)
                if t.tenant == self.tenant
                    && t.device == self.device
                    && matches!(t.channel, Channel::Down(_)) =>
            {
                t
            }
            _ => return self.reject("message on a topic that is not ours").await,
        };
        let keys = &self.control_plane_keys;
        let opened = self.opener.open(payload, &parsed, |_, kid| {
            keys.iter().find(|(k, _)| k == kid).map(|(_, key)| *key)
        });
        let envelope = match opened {
            Ok(o) => o.envelope,
            Err(e) => return self.reject(&format!("refused: {e}")).await,
        };
        match envelope.body {
            Body::Ack(ack) => {
                // One ack may answer for several messages: removed in one write.
                let ids: Vec<MessageId> = ack.ids().collect();
                let bytes: Vec<[u8; 16]> = ids.iter().map(|id| *id.as_bytes()).collect();
                let store = Arc::clone(&self.handle.store);
                let removed = tokio::task::spawn_blocking(move || store.ack_all(&bytes)).await;
                match removed {
                    Ok(Ok(removed)) => {
                        for (id, removed) in ids.into_iter().zip(removed) {
                            if removed {
                                self.emit(LinkEvent::Acked(id)).await;
                            }
                        }
                    }
                    // Kept in the outbox: sent again later and acked again.
                    Ok(Err(e)) => tracing::warn!(error = %e, "cannot apply an ack"),
                    Err(e) => tracing::warn!(error = %e, "ack task failed"),
                }
            }
            Body::RpcResponse(response) => {
                let waiter = envelope
                    .correlation
                    .and_then(|c| lock(&self.handle.rpcs).remove(&c));
                if let Some(waiter) = waiter {
                    let _ = waiter.send(response);
                }
            }
            _ => self.on_command(envelope).await,
        }
    }

    async fn on_command(&mut self, envelope: Envelope) {
        let now = now_ms();
        let status = match envelope.expires_ms {
            None => AckStatus::Rejected {
                reason: "commands must carry an expiry".into(),
            },
            Some(_) if envelope.is_expired(now) => AckStatus::Rejected {
                reason: "expired".into(),
            },
            Some(_) => {
                let store = Arc::clone(&self.handle.store);
                let id = *envelope.id.as_bytes();
                match tokio::task::spawn_blocking(move || store.mark_command_seen(&id, now)).await {
                    Ok(Ok(true)) => AckStatus::Accepted,
                    Ok(Ok(false)) => AckStatus::Duplicate,
                    _ => AckStatus::Rejected {
                        reason: "the appliance could not record the command".into(),
                    },
                }
            }
        };
        let id = envelope.id;
        if let AckStatus::Rejected { reason } = &status {
            tracing::warn!(kind = envelope.kind().name(), %reason, "command refused");
            self.emit(LinkEvent::Rejected {
                reason: reason.clone(),
            })
            .await;
        }
        if status == AckStatus::Accepted {
            self.emit(LinkEvent::Command(envelope)).await;
        }
        let ack = Body::Ack(Ack::of(id, status));
        let handle = self.handle.clone();
        // Acks go through the outbox like every message, from a task of their own
        // so that a full outbox cannot stall the event loop.
        tokio::spawn(async move {
            let envelope = match handle.sender.lock().await.envelope(ack) {
                Ok(e) => e.replying_to(id),
                Err(_) => return,
            };
            if let Err(e) = handle.send_envelope(envelope).await {
                tracing::warn!(error = %e, "cannot queue an ack");
            }
        });
    }

    async fn reject(&mut self, reason: &str) {
        tracing::warn!(%reason, "message refused");
        self.emit(LinkEvent::Rejected {
            reason: reason.to_owned(),
        })
        .await;
    }

    /// Commands wait for room in the channel (they are already acknowledged and
    /// must not be lost); informational events are dropped when nobody reads them,
    /// so a slow listener can never stall the link.
    async fn emit(&mut self, event: LinkEvent) {
        if matches!(event, LinkEvent::Command(_)) {
            let _ = self.events.send(event).await;
        } else if let Err(mpsc::error::TrySendError::Full(dropped)) = self.events.try_send(event) {
            tracing::debug!(event = ?std::mem::discriminant(&dropped), "link event dropped: nobody is reading");
        }
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Publishes the outbox again, oldest first, from a task of its own so the event loop
/// keeps turning (rumqttc's request queue drains only while polled).
///
/// `stale`: only messages older than that many ms, each signed again with a fresh
/// sequence number (same message id). A message that went unacknowledged for that
/// long may by now be more than a replay window behind what the control plane has
/// seen since (a burst of newer messages got through), and the control plane refuses
/// a sequence number older than its window; with a fresh one it recognises the
/// message by its id instead (handled once, or acked as a duplicate).
fn resend_outbox(
    store: Arc<ApplianceStore>,
    client: AsyncClient,
    stale: Option<(i64, Arc<Mutex<Sender>>)>,
) {
    tokio::spawn(async move {
        let cutoff = stale.as_ref().map(|(age, _)| now_ms().saturating_sub(*age));
        let mut after = 0u64;
        loop {
            let store = Arc::clone(&store);
            let batch =
                tokio::task::spawn_blocking(move || store.pending_after(after, RESEND_BATCH)).await;
            let Ok(Ok(batch)) = batch else { return };
            if batch.is_empty() {
                return;
            }
            for (position, item) in batch {
                after = position;
                // Oldest first: the first young message ends a stale re-send.
                if cutoff.is_some_and(|c| item.enqueued_ms > c) {
                    return;
                }
                let bytes = match &stale {
                    Some((_, sender)) => reseal(sender, &item).await.unwrap_or(item.signed),
                    None => item.signed,
                };
                if client
                    .publish(item.topic, QoS::AtLeastOnce, false, bytes)
                    .await
                    .is_err()
                {
                    return;
                }
            }
        }
    });
}

/// `item` signed again with the next sequence number; `None` (send it as it is) for a
/// presence, or if it is not a message of ours.
async fn reseal(sender: &Mutex<Sender>, item: &OutboxItem) -> Option<Vec<u8>> {
    let mut sender = sender.lock().await;
    let own = sender.identity.key.verifying_key();
    let topic = Topic::parse(&item.topic).ok()?;
    let verified =
        kakanai_protocol::cose::verify(&item.signed, &topic.to_aad(), |_| Some(own)).ok()?;
    let mut envelope = Envelope::decode(&verified.payload).ok()?;
    if envelope.kind() == Kind::Presence {
        return None;
    }
    envelope.seq = sender.seq.next_seq().ok()?;
    sender.seal_up(&envelope).ok().map(|(_, bytes)| bytes)
}

/// Renews the certificate of the bundle in `bundle` from `renew_at` (Unix seconds)
/// on, through the enrolment service, and hands the new one to `link` for its next
/// connection; then waits for the next renewal time. A failed attempt is retried
/// hourly (the old certificate has a third of its validity left). Ends with the link.
pub fn spawn_renewal(link: LinkHandle, bundle: std::path::PathBuf, renew_at: i64) {
    tokio::spawn(async move {
        let mut due = renew_at;
        loop {
            let now = now_ms() / 1000;
            let wait = u64::try_from(due.saturating_sub(now)).unwrap_or(0);
            tokio::time::sleep(Duration::from_secs(wait)).await;
            if Arc::strong_count(&link.sender) == 1 {
                return;
            }
            let dir = bundle.clone();
            let renewed =
                tokio::task::spawn_blocking(move || kakanai_provisioning::enrol::renew(&dir)).await;
            match renewed {
                Ok(Ok(new)) => {
                    let tls = TlsClient {
                        ca_pem: new.ca_pem.clone(),
                        cert_pem: new.cert_pem.clone(),
                        key_pem: new.key_pem.clone(),
                    };
                    match link.use_tls(&tls) {
                        Ok(()) => tracing::info!(
                            not_after = new.not_after,
                            "device certificate renewed; used from the next connection"
                        ),
                        Err(e) => tracing::error!(error = %e, "renewed certificate unusable"),
                    }
                    due = new.renew_at();
                }
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "certificate renewal failed; retrying in an hour");
                    due = now_ms() / 1000 + 3600;
                }
                Err(_) => return,
            }
        }
    });
}
