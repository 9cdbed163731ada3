//! The in-process MQTT broker (`[broker] embedded = true`): rumqttd, MQTT 3.1.1 only,
//! plain TCP, so one command runs everything on one machine (DESIGN.md, "MQTT
//! broker"). Real deployments keep using an external Mosquitto; nothing in the
//! service depends on which broker it talks to — it connects its ordinary MQTT
//! client to this one exactly as it would to Mosquitto.
//!
//! What rumqttd gives us and we rely on: retained messages (presence), the last
//! will (offline presence when an appliance drops), persistent sessions
//! (`clean_session = false`: subscriptions and unacknowledged QoS 1 messages are kept
//! while a client is away) and shared subscriptions (`$share/GROUP/…`).
//!
//! Limits of the embedded broker, by design or by rumqttd:
//! - everything is in memory: sessions and retained presence do not survive a
//!   restart of the control plane (appliances re-send from their outbox and publish
//!   their birth again on reconnection, so nothing of theirs is lost; a command sent
//!   to an offline device is);
//! - a client away for long loses the oldest messages once its topic's log exceeds
//!   [`SEGMENT_BYTES`] × [`SEGMENT_COUNT`];
//! - no TLS and no authentication: it listens on loopback by default and is meant for
//!   one machine (signatures still protect every message);
//! - rumqttd has no way to stop its router thread: [`EmbeddedBroker::stop`] closes the
//!   listener and every connection, but the router thread stays parked on its
//!   channel (no socket, a little memory) until the process exits.
//!
//! rumqttd runs on its own thread with its own single-threaded tokio runtime (as its
//! own `Broker::start` does), so a busy service runtime cannot stall the broker, and
//! dropping that runtime is what closes the listener and every connection.

use std::net::{SocketAddr, TcpListener};
use std::sync::mpsc as std_mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

use kakanai_protocol::limits::MAX_MESSAGE_BYTES;
use rumqttd::protocol::v4::V4;
use rumqttd::{ConnectionSettings, LinkType, Router, RouterConfig, Server, ServerSettings};
use tokio::sync::oneshot;

use super::config::EmbeddedBrokerConfig;
use super::ServiceError;

/// Largest packet the broker accepts (remaining length: topic + payload). Above
/// [`MAX_MESSAGE_BYTES`] so that an oversized message still reaches the ingest checks
/// and is refused there with a reason, and at most the 4 × limit the service's own
/// client reads, so the broker never forwards a packet that would drop our
/// connection.
pub const MAX_PACKET_BYTES: usize = 2 * MAX_MESSAGE_BYTES;
/// Unacknowledged QoS 1 messages per connection (Mosquitto's order of magnitude; the
/// service PUBACKs only after handling, so this is its flow control).
const MAX_INFLIGHT: usize = 100;
/// Connections at most: appliances of one site plus the control plane.
const MAX_CONNECTIONS: usize = 1_000;
/// Bytes per in-memory log segment; several of the largest packets fit in one.
pub const SEGMENT_BYTES: usize = 4 * MAX_PACKET_BYTES;
/// Segments kept per topic before the oldest is dropped.
pub const SEGMENT_COUNT: usize = 4;
/// How long a client may take to send CONNECT after opening the socket.
const CONNECT_TIMEOUT_MS: u16 = 10_000;
/// How long [`EmbeddedBroker::start`] waits for the listener.
const START_TIMEOUT: Duration = Duration::from_secs(5);

/// A running in-process broker. Dropping it stops it too (without waiting).
#[derive(Debug)]
pub struct EmbeddedBroker {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl EmbeddedBroker {
    /// Starts the broker listening on `config.listen` and returns once it listens.
    /// Blocks the calling thread for at most a few milliseconds (thread start and
    /// bind).
    pub fn start(config: &EmbeddedBrokerConfig) -> Result<Self, ServiceError> {
        let addr = config.listen;
        // rumqttd binds inside its task and only logs a failure; binding once here
        // first turns "address in use" into an error the operator sees at start.
        drop(TcpListener::bind(addr).map_err(|source| ServiceError::Io {
            what: "binding the embedded MQTT broker",
            source,
        })?);

        let router = Router::new(0, router_config());
        // Spawns rumqttd's router thread (it panics only if no thread can be made).
        let router_tx = router.spawn();
        let mut server = Server::new(server_settings(addr), router_tx, V4);

        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let (ready_tx, ready_rx) = std_mpsc::channel::<Result<(), String>>();
        let thread = std::thread::Builder::new()
            .name("mqtt-broker".into())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(r) => r,
                    Err(e) => {
                        let _ = ready_tx.send(Err(format!("cannot build its runtime: {e}")));
                        return;
                    }
                };
                runtime.block_on(async move {
                    let accept = tokio::spawn(async move { server.start(LinkType::Remote).await });
                    // The accept task binds on its first poll; yielding once lets it
                    // run, so a bind failure shows as a finished task here.
                    tokio::task::yield_now().await;
                    if accept.is_finished() {
                        let why = match accept.await {
                            Ok(Err(e)) => e.to_string(),
                            Ok(Ok(())) => "stopped at once".into(),
                            Err(e) => e.to_string(),
                        };
                        let _ = ready_tx.send(Err(why));
                        return;
                    }
                    let _ = ready_tx.send(Ok(()));
                    // Either stop() or the handle dropped.
                    let _ = stop_rx.await;
                    accept.abort();
                });
                // Dropping the runtime cancels every connection task: their sockets
                // close, and the listener with the accept task.
                drop(runtime);
            })
            .map_err(|source| ServiceError::Io {
                what: "starting the embedded MQTT broker thread",
                source,
            })?;

        let broker = Self {
            addr,
            stop: Some(stop_tx),
            thread: Some(thread),
        };
        match ready_rx.recv_timeout(START_TIMEOUT) {
            Ok(Ok(())) => {
                tracing::info!(listen = %addr, "embedded MQTT broker started");
                Ok(broker)
            }
            Ok(Err(why)) => Err(ServiceError::Mqtt(format!("embedded broker: {why}"))),
            Err(_) => Err(ServiceError::Mqtt(
                "embedded broker: did not start in time".into(),
            )),
        }
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops it and waits until the listener and every connection are closed.
    /// Blocking (a thread join): call it from `spawn_blocking` in async code.
    pub fn stop(mut self) {
        self.signal_stop();
        if let Some(thread) = self.thread.take() {
            if thread.join().is_err() {
                tracing::error!("the embedded MQTT broker thread panicked");
            }
        }
        tracing::info!(listen = %self.addr, "embedded MQTT broker stopped");
    }

    fn signal_stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

impl Drop for EmbeddedBroker {
    fn drop(&mut self) {
        // Not joined here: Drop may run on an async worker, which must not block.
        self.signal_stop();
    }
}

fn router_config() -> RouterConfig {
    RouterConfig {
        max_connections: MAX_CONNECTIONS,
        // Packets the router hands a connection per turn (rumqttd's sample value).
        max_outgoing_packet_count: 200,
        max_segment_size: SEGMENT_BYTES,
        max_segment_count: SEGMENT_COUNT,
        custom_segment: None,
        initialized_filters: None,
        shared_subscriptions_strategy: rumqttd::Strategy::default(),
    }
}

fn server_settings(listen: SocketAddr) -> ServerSettings {
    ServerSettings {
        name: "kakanai-embedded-v4".into(),
        listen,
        tls: None,
        next_connection_delay_ms: 1,
        connections: ConnectionSettings {
            connection_timeout_ms: CONNECT_TIMEOUT_MS,
            max_payload_size: MAX_PACKET_BYTES,
            max_inflight_count: MAX_INFLIGHT,
            auth: None,
            external_auth: None,
            // Clients may subscribe to any filter (no pre-declared filter list).
            dynamic_filters: true,
        },
    }
}
