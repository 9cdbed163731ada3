//! A stand-in control plane for the appliance's tests: an MQTT client holding the
//! control plane's key, verifying what the appliance sends, acking it, answering
//! Ping RPCs and sending commands, all through `kakanai-protocol`.

#![allow(clippy::unwrap_used, clippy::expect_used, dead_code, unreachable_pub)]

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use kakanai_protocol::catalogue::{Ack, AckStatus, Body, Ping, RpcResponse};
use kakanai_protocol::seal::{seal, Opener};
use kakanai_protocol::topic::{filter, Ident};
use kakanai_protocol::{Envelope, KeyId, Kind, MessageId, SigningKey, Topic};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use tokio::sync::{mpsc, Mutex};

pub const WAIT: Duration = Duration::from_secs(10);

pub fn ids() -> (Ident, Ident) {
    (
        Ident::new("city-a").unwrap(),
        Ident::new("counter-01").unwrap(),
    )
}

pub fn device_key() -> SigningKey {
    SigningKey::from_seed(&[0x11; 32]).unwrap()
}

pub fn cp_key() -> SigningKey {
    SigningKey::from_seed(&[0x22; 32]).unwrap()
}

/// A stand-in for the control plane: verifies what the appliance sends, acks it
/// (when `auto_ack`), answers Ping RPCs (when `answer_rpc`), and sends commands.
pub struct ControlPlane {
    pub client: AsyncClient,
    pub received: Mutex<mpsc::Receiver<(Topic, Envelope)>>,
    pub auto_ack: Arc<AtomicBool>,
    pub seq: std::sync::atomic::AtomicU64,
}

impl ControlPlane {
    pub async fn start(port: u16, auto_ack: bool, answer_rpc: bool) -> Arc<Self> {
        let mut opts = MqttOptions::new("control-plane", "127.0.0.1", port);
        opts.set_max_packet_size(300 * 1024, 300 * 1024);
        let (client, mut eventloop) = AsyncClient::new(opts, 1024);
        let (tenant, _) = ids();
        client
            .subscribe(filter::tenant_up(&tenant), QoS::AtLeastOnce)
            .await
            .unwrap();
        client
            .subscribe(filter::tenant_presence(&tenant), QoS::AtLeastOnce)
            .await
            .unwrap();
        let (tx, rx) = mpsc::channel(10_000);
        let auto = Arc::new(AtomicBool::new(auto_ack));
        let cp = Arc::new(Self {
            client: client.clone(),
            received: Mutex::new(rx),
            auto_ack: Arc::clone(&auto),
            seq: std::sync::atomic::AtomicU64::new(1),
        });
        let me = Arc::clone(&cp);
        tokio::spawn(async move {
            let device_public = device_key().verifying_key();
            let mut opener = Opener::new();
            loop {
                let Ok(event) = eventloop.poll().await else {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                };
                let Event::Incoming(Packet::Publish(p)) = event else {
                    continue;
                };
                let topic = Topic::parse(&p.topic).unwrap();
                // Duplicates (re-sent after reconnect) fail the replay window; the
                // real control plane de-duplicates by message id and acks again.
                let envelope = match opener.open(&p.payload, &topic, |_, _| Some(device_public)) {
                    Ok(o) => o.envelope,
                    Err(kakanai_protocol::ProtocolError::Replay { .. }) => {
                        let raw = kakanai_protocol::cose::verify(
                            &p.payload,
                            topic.to_string().as_bytes(),
                            |_| Some(device_public),
                        )
                        .unwrap();
                        Envelope::decode(&raw.payload).unwrap()
                    }
                    Err(e) => panic!("the appliance sent an invalid message: {e}"),
                };
                if answer_rpc {
                    if let Body::RpcRequest(req) = &envelope.body {
                        let text: String = req.params::<Ping>().unwrap();
                        let resp = Body::RpcResponse(RpcResponse::ok::<Ping>(&text).unwrap());
                        me.reply(resp, envelope.id);
                    }
                }
                if me.auto_ack.load(Ordering::SeqCst)
                    && envelope.kind() != Kind::Ack
                    && envelope.kind() != Kind::Presence
                {
                    let ack = Body::Ack(Ack {
                        of: envelope.id,
                        status: AckStatus::Accepted,
                    });
                    me.reply(ack, envelope.id);
                }
                let _ = tx.send((topic, envelope)).await;
            }
        });
        cp
    }

    /// Sends an answer from a task of its own: awaiting the publish inside the event
    /// loop would deadlock once rumqttc's request queue is full (it drains only
    /// while the loop polls).
    fn reply(self: &Arc<Self>, body: Body, to: MessageId) {
        let me = Arc::clone(self);
        tokio::spawn(async move {
            me.command_with(body, Some(to), None).await;
        });
    }

    pub fn seal_down(
        &self,
        body: Body,
        corr: Option<MessageId>,
        exp: Option<i64>,
    ) -> (Topic, Envelope, Vec<u8>) {
        let (tenant, device) = ids();
        let topic = Topic::down(&tenant, &device, body.kind()).unwrap();
        let seq = self.seq.fetch_add(1, Ordering::SeqCst);
        let mut env = Envelope::new(seq, now_ms(), body).unwrap();
        env.correlation = corr;
        env.expires_ms = exp;
        let key = cp_key();
        let bytes = seal(&key, &KeyId::of_key(&key.verifying_key()), &topic, &env).unwrap();
        (topic, env, bytes)
    }

    pub async fn command_with(
        &self,
        body: Body,
        corr: Option<MessageId>,
        exp: Option<i64>,
    ) -> (Envelope, Vec<u8>) {
        let (topic, env, bytes) = self.seal_down(body, corr, exp);
        self.publish(&topic, bytes.clone()).await;
        (env, bytes)
    }

    pub async fn publish(&self, topic: &Topic, bytes: Vec<u8>) {
        self.client
            .publish(topic.to_string(), QoS::AtLeastOnce, false, bytes)
            .await
            .unwrap();
    }

    pub async fn next(&self) -> (Topic, Envelope) {
        tokio::time::timeout(WAIT, self.received.lock().await.recv())
            .await
            .expect("a message from the appliance")
            .unwrap()
    }

    pub async fn next_of(&self, kind: Kind) -> Envelope {
        loop {
            let (_, env) = self.next().await;
            if env.kind() == kind {
                return env;
            }
        }
    }
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}
