//! A stand-in control plane for the appliance's tests: an MQTT client holding the
//! control plane's key, verifying what the appliance sends, acking it, answering
//! Ping RPCs and the staff UI's RPCs (`staff.login`, `staff.whoami`, `staff.logout`;
//! other methods are `unknown-method`, as on the real control plane), the counter
//! flows' methods through [`counter::CounterDesk`] (a test stand-in with made-up
//! data), and sending commands, all through `kakanai-protocol`.

#![allow(clippy::unwrap_used, clippy::expect_used, dead_code, unreachable_pub)]

pub mod counter;

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
    pub staff: Arc<StaffDesk>,
    /// The counter flows' stand-in desk.
    pub counter: Arc<counter::CounterDesk>,
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
            staff: Arc::new(StaffDesk::default()),
            counter: Arc::new(counter::CounterDesk::default()),
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
                        let resp = if req.method == "ping" {
                            let text: String = req.params::<Ping>().unwrap();
                            RpcResponse::ok::<Ping>(&text).unwrap()
                        } else if counter::CounterDesk::handles(&req.method) {
                            let live = me.staff.has_session(req.session.as_deref());
                            let (resp, job) = me.counter.answer(req, live);
                            if let Some(job) = job {
                                // Sent from a task of its own, like every answer
                                // (see `reply`).
                                let exp = now_ms() + 60_000;
                                let sender = Arc::clone(&me);
                                tokio::spawn(async move {
                                    sender
                                        .command_with(Body::PrintJob(job), None, Some(exp))
                                        .await;
                                });
                            }
                            resp
                        } else {
                            me.staff.answer(req)
                        };
                        me.reply(Body::RpcResponse(resp), envelope.id);
                    }
                }
                if me.auto_ack.load(Ordering::SeqCst)
                    && envelope.kind() != Kind::Ack
                    && envelope.kind() != Kind::Presence
                {
                    let ack = Body::Ack(Ack::of(envelope.id, AckStatus::Accepted));
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

/// The stand-in's staff accounts and sessions. Requests and answers are built from
/// raw CBOR maps with the control plane's field names (`control-plane/src/staff/
/// rpc.rs`), so the appliance's own types are checked against that shape.
pub struct StaffDesk {
    /// Login id → (password, display name).
    pub accounts: std::sync::Mutex<std::collections::HashMap<String, (String, String)>>,
    /// Live tokens → login id.
    pub sessions: std::sync::Mutex<std::collections::HashMap<String, String>>,
    /// Every method called, in order (no parameters).
    pub calls: std::sync::Mutex<Vec<String>>,
    /// The answer to `residents.lookup-card` (`None`: the method is unknown, as on a
    /// control plane without the residents service).
    pub lookup_answer: std::sync::Mutex<Option<ciborium::Value>>,
    next: std::sync::atomic::AtomicU64,
}

/// The account the UI tests log in with. Its display name carries markup, which
/// the UI must show as text.
pub const STAFF_ID: &str = "tanaka";
pub const STAFF_PASSWORD: &str = "counter-pass-1";
pub const STAFF_NAME: &str = "田中 <b>太郎</b>";

impl Default for StaffDesk {
    fn default() -> Self {
        let mut accounts = std::collections::HashMap::new();
        accounts.insert(
            STAFF_ID.to_owned(),
            (STAFF_PASSWORD.to_owned(), STAFF_NAME.to_owned()),
        );
        Self {
            accounts: std::sync::Mutex::new(accounts),
            sessions: std::sync::Mutex::new(std::collections::HashMap::new()),
            calls: std::sync::Mutex::new(Vec::new()),
            lookup_answer: std::sync::Mutex::new(None),
            next: std::sync::atomic::AtomicU64::new(1),
        }
    }
}

fn text(s: &str) -> ciborium::Value {
    ciborium::Value::Text(s.to_owned())
}

fn field<'a>(map: &'a ciborium::Value, name: &str) -> Option<&'a ciborium::Value> {
    map.as_map()?
        .iter()
        .find(|(k, _)| k.as_text() == Some(name))
        .map(|(_, v)| v)
}

fn ok(method: &str, value: ciborium::Value) -> RpcResponse {
    RpcResponse {
        method: method.to_owned(),
        outcome: kakanai_protocol::catalogue::RpcOutcome::Ok(value),
    }
}

impl StaffDesk {
    /// Answers `residents.lookup-card` from now on with one candidate, in the control
    /// plane's shape (`residents::rpc::LookupCardResponse`).
    pub fn answer_lookup_with(&self, name: &str, birth_date: &str, address: &str) {
        let resident = ciborium::Value::Map(vec![
            (text("atena"), text("000000123")),
            (text("household"), text("000000045")),
            (text("name"), text(name)),
            (text("kana"), text("ミホン　ハナコ")),
            (text("birth_date"), text(birth_date)),
            (text("sex"), text("2")),
            (text("relation"), text("世帯主")),
            (text("machiaza"), text("001")),
            (text("address"), text(address)),
            (text("status"), text("在住")),
        ]);
        let answer = ciborium::Value::Map(vec![
            (text("exact"), ciborium::Value::Bool(true)),
            (
                text("candidates"),
                ciborium::Value::Array(vec![ciborium::Value::Map(vec![
                    (text("resident"), resident),
                    (text("reason"), text("氏名・生年月日・住所が一致")),
                    (text("matched"), ciborium::Value::Array(vec![text("name")])),
                ])]),
            ),
        ]);
        *self.lookup_answer.lock().unwrap() = Some(answer);
    }

    /// Ends every session (as the control plane does at expiry).
    pub fn expire_all(&self) {
        self.sessions.lock().unwrap().clear();
    }

    /// Whether `token` is a live session.
    pub fn has_session(&self, token: Option<&str>) -> bool {
        token.is_some_and(|t| self.sessions.lock().unwrap().contains_key(t))
    }

    pub fn calls(&self) -> Vec<String> {
        self.calls.lock().unwrap().clone()
    }

    fn answer(&self, req: &kakanai_protocol::catalogue::RpcRequest) -> RpcResponse {
        let method = req.method.as_str();
        self.calls.lock().unwrap().push(method.to_owned());
        let staff = req
            .session
            .as_ref()
            .and_then(|t| self.sessions.lock().unwrap().get(t).cloned());
        match method {
            "staff.login" => {
                let id = field(&req.params, "login_id").and_then(|v| v.as_text());
                let password = field(&req.params, "password").and_then(|v| v.as_text());
                let accounts = self.accounts.lock().unwrap();
                let found = id.and_then(|id| accounts.get(id).map(|a| (id, a)));
                match found {
                    Some((id, (pw, name))) if Some(pw.as_str()) == password => {
                        let n = self.next.fetch_add(1, Ordering::SeqCst);
                        let token = format!("token-{n}-{}", hex::encode([n as u8; 16]));
                        self.sessions
                            .lock()
                            .unwrap()
                            .insert(token.clone(), id.to_owned());
                        ok(
                            method,
                            ciborium::Value::Map(vec![
                                (text("token"), text(&token)),
                                (text("session_id"), text(&format!("s-{n}"))),
                                (text("display_name"), text(name)),
                                (
                                    text("permissions"),
                                    ciborium::Value::Array(vec![text("residents.read")]),
                                ),
                                (text("must_change_password"), ciborium::Value::Bool(false)),
                                (
                                    text("expires_at_ms"),
                                    ciborium::Value::Integer((now_ms() + 8 * 3_600_000).into()),
                                ),
                            ]),
                        )
                    }
                    _ => RpcResponse::err(
                        method,
                        "invalid-credentials",
                        "ログインIDまたはパスワードが正しくありません",
                    ),
                }
            }
            "staff.whoami" | "staff.logout" => {
                let Some(id) = staff else {
                    return RpcResponse::err(method, "unauthenticated", "ログインしてください");
                };
                if method == "staff.logout" {
                    self.sessions
                        .lock()
                        .unwrap()
                        .remove(req.session.as_deref().unwrap_or_default());
                    return ok(
                        method,
                        ciborium::Value::Map(vec![(
                            text("ended"),
                            ciborium::Value::Integer(1.into()),
                        )]),
                    );
                }
                let name = self.accounts.lock().unwrap()[&id].1.clone();
                ok(
                    method,
                    ciborium::Value::Map(vec![
                        (text("staff_id"), text(&id)),
                        (text("display_name"), text(&name)),
                        (text("session_id"), text("s")),
                        (text("permissions"), ciborium::Value::Array(vec![])),
                        (text("must_change_password"), ciborium::Value::Bool(false)),
                    ]),
                )
            }
            "residents.lookup-card" if self.lookup_answer.lock().unwrap().is_some() => {
                if staff.is_none() {
                    return RpcResponse::err(method, "unauthenticated", "ログインしてください");
                }
                // The control plane's shape: `{ card: CardFace }`.
                let face_name = field(&req.params, "card")
                    .and_then(|card| field(card, "name"))
                    .and_then(|v| v.as_text());
                if face_name.is_none() {
                    return RpcResponse::err(
                        method,
                        "invalid-params",
                        "パラメータが正しくありません",
                    );
                }
                ok(method, self.lookup_answer.lock().unwrap().clone().unwrap())
            }
            other => RpcResponse::err(other, "unknown-method", "unknown method"),
        }
    }
}

/// A daemon configuration in a temporary directory, as the daemon tests write it: the
/// device key (file mode `key_mode`), the control plane's key ([`cp_key`]), the broker
/// on `127.0.0.1:broker_port`, the store in `DIR/store/`, the UI on a free port, and
/// `extra` TOML lines at the end.
pub struct DaemonConfig {
    /// The directory (config, key, store, logs); removed on drop.
    pub dir: tempfile::TempDir,
    /// The configuration file.
    pub path: std::path::PathBuf,
    /// The UI's port.
    pub http_port: u16,
}

impl DaemonConfig {
    pub fn write(broker_port: u16, key_mode: u32, extra: &str) -> Self {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let key_path = dir.path().join("device.key");
        std::fs::write(&key_path, hex::encode(device_key().seed())).unwrap();
        std::fs::set_permissions(&key_path, std::fs::Permissions::from_mode(key_mode)).unwrap();
        let cp = cp_key().verifying_key();
        let http_port = kakanai_test_peers::free_port();
        std::fs::create_dir(dir.path().join("store")).unwrap();
        let config = format!(
            r#"
[device]
tenant = "city-a"
id = "counter-01"
key_file = "{key}"

[[control_plane.keys]]
kid = "{kid}"
public_key = "{public}"

[broker]
host = "127.0.0.1"
port = {broker_port}
keep_alive_s = 2

[store]
path = "{store}"

[http]
listen = "127.0.0.1:{http_port}"
{extra}
"#,
            key = key_path.display(),
            kid = KeyId::of_key(&cp).to_hex(),
            public = hex::encode(cp.as_bytes()),
            store = dir.path().join("store").join("appliance.redb").display(),
        );
        let path = dir.path().join("appliance.toml");
        std::fs::write(&path, config).unwrap();
        Self {
            dir,
            path,
            http_port,
        }
    }
}
