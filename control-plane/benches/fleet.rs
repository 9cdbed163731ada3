//! Fleet figures for issue 5, against the real `kakanai-control-plane serve` process
//! (release build), a real Mosquitto and SQLite in a temporary directory:
//!
//! ```text
//! cargo bench -p kakanai-control-plane --bench fleet -- ingest    # msgs/s verified, stored, acked
//! cargo bench -p kakanai-control-plane --bench fleet -- fleet     # 5,000 appliances: CPU, memory
//! cargo bench -p kakanai-control-plane --bench fleet -- sessions  # login latency, RPC p50/p99, 300 sessions
//! ```
//!
//! `sessions` reports the RPC round trip alone, with 300 sessions each calling about
//! once a second (staff at work), and with 300 sessions calling flat out (capacity).
//! `ingest` also says how the CPU was shared between the control plane, Mosquitto and
//! the simulated appliances: on a 2-core machine they compete for it. It sends 5,000
//! messages from each of 20 appliances (`KAKANAI_BENCH_PER_DEVICE` to change), sealed
//! beforehand; the appliances verify every ack and count the messages it names.
//!
//! A bench binary rather than criterion: each figure is one long run against
//! separate processes. The simulated appliances are MQTT clients in this process that
//! sign with registered device keys, exactly as appliances do; the control plane's CPU
//! and memory are read from `/proc/PID` of its own process.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::collections::HashMap;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kakanai_control_plane::model::TenantId;
use kakanai_control_plane::staff::admin::NewAccount;
use kakanai_control_plane::staff::rpc::{
    ChangePassword, ChangePasswordRequest, Login, LoginRequest, LoginResponse, Whoami,
    WhoamiRequest,
};
use kakanai_control_plane::staff::{Secret, StaffPolicy, StaffService};
use kakanai_control_plane::store::{NewDevice, Store, Tenant};
use kakanai_protocol::catalogue::{Body, RpcMethod, RpcRequest};
use kakanai_protocol::seal::{seal, Opener};
use kakanai_protocol::topic::{filter, Ident};
use kakanai_protocol::{examples, Envelope, KeyId, Kind, MessageId, SigningKey, Topic};
use kakanai_test_peers::{free_port, Mosquitto};
use rumqttc::{AsyncClient, Event, LastWill, MqttOptions, Packet, QoS};
use tokio::sync::{oneshot, Mutex};

const TENANT: &str = "city-a";
const CP_SEED: [u8; 32] = [0x22; 32];

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

fn device_key(i: usize) -> SigningKey {
    let mut seed = [0x5a; 32];
    seed[..8].copy_from_slice(&(i as u64).to_be_bytes());
    SigningKey::from_seed(&seed).unwrap()
}

fn device_id(i: usize) -> Ident {
    Ident::new(&format!("counter-{i:05}")).unwrap()
}

fn tenant() -> Ident {
    Ident::new(TENANT).unwrap()
}

/// The broker, the store and the control plane process.
struct Setup {
    _dir: tempfile::TempDir,
    _broker: Mosquitto,
    broker_port: u16,
    http_port: u16,
    child: Child,
}

impl Drop for Setup {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn setup(devices: usize, staff: usize) -> Setup {
    // Queues deep enough for a burst: the control plane's subscription must never
    // have QoS 1 messages dropped for it. Logging as Mosquitto does by default in
    // production (the test peer's `log_type all` writes a line per packet, which on
    // 2 cores takes CPU from the control plane being measured).
    let broker = Mosquitto::start_with_config(
        "max_queued_messages 0\nmax_inflight_messages 0\nmax_connections -1\n\
         log_type none\nlog_type error\nlog_type warning\nlog_type notice\n\
         log_type information\n",
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let url = format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("kakanai.db").display()
    );
    let store = Store::open(&url).await.unwrap();
    let tenant_id = TenantId::new(TENANT).unwrap();
    store
        .create_tenant(
            &Tenant {
                id: tenant_id.clone(),
                name: "A市".into(),
            },
            now_ms(),
        )
        .await
        .unwrap();
    for i in 0..devices {
        let key = device_key(i);
        store
            .register_device(
                &tenant_id,
                &NewDevice {
                    id: device_id(i),
                    counter_name: format!("窓口 {i}"),
                    location: "本庁舎".into(),
                    kid: KeyId::of_key(&key.verifying_key()),
                    public_key: key.verifying_key(),
                    firmware: None,
                },
                now_ms(),
            )
            .await
            .unwrap();
    }
    if staff > 0 {
        let service = Arc::new(StaffService::new(store.clone(), StaffPolicy::default()));
        let mut tasks = Vec::new();
        for i in 0..staff {
            let service = Arc::clone(&service);
            let tenant_id = tenant_id.clone();
            tasks.push(tokio::spawn(async move {
                service
                    .create_staff(
                        &tenant_id,
                        &NewAccount {
                            login_id: format!("staff{i:04}"),
                            display_name: format!("職員 {i}"),
                            initial_password: Secret::new(initial_password(i)),
                        },
                        now_ms(),
                    )
                    .await
                    .unwrap();
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
    }
    store.close().await;

    let key_file = dir.path().join("cp.key");
    std::fs::write(&key_file, hex::encode(CP_SEED)).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let http_port = free_port();
    let config = dir.path().join("cp.toml");
    std::fs::write(
        &config,
        format!(
            "data_dir = {:?}\ntenants = [\"{TENANT}\"]\n[database]\nurl = {url:?}\n\
             [broker]\nhost = \"127.0.0.1\"\nport = {}\n[signing]\nkey_file = {:?}\n\
             [http]\nlisten = \"127.0.0.1:{http_port}\"\n",
            dir.path().display().to_string(),
            broker.port(),
            key_file.display().to_string(),
        ),
    )
    .unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_kakanai-control-plane"))
        .arg("serve")
        .arg("--config")
        .arg(&config)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let setup = Setup {
        broker_port: broker.port(),
        _broker: broker,
        _dir: dir,
        http_port,
        child,
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while !health_ok(http_port).await {
        assert!(
            Instant::now() < deadline,
            "the control plane did not come up"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    setup
}

fn initial_password(i: usize) -> String {
    format!("Shoki-Pass-{i:04}-kakanai")
}

async fn http_get(port: u16, path: &str) -> Option<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .ok()?;
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").as_bytes())
        .await
        .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).await.ok()?;
    Some(out)
}

async fn health_ok(port: u16) -> bool {
    http_get(port, "/health")
        .await
        .is_some_and(|r| r.starts_with("HTTP/1.0 200") || r.starts_with("HTTP/1.1 200"))
}

async fn metric(port: u16, name: &str) -> Option<f64> {
    let text = http_get(port, "/metrics").await?;
    text.lines()
        .find(|l| l.starts_with(name))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// One simulated appliance's MQTT connection; counts what arrives on its down topics.
struct Appliance {
    client: AsyncClient,
    acks: Arc<AtomicU64>,
    rpc: Arc<Mutex<HashMap<MessageId, oneshot::Sender<Envelope>>>>,
}

async fn connect(port: u16, i: usize, with_will: bool) -> Appliance {
    let mut options = MqttOptions::new(format!("bench-{i}"), "127.0.0.1", port);
    options.set_keep_alive(Duration::from_secs(60));
    options.set_max_packet_size(300 * 1024, 300 * 1024);
    options.set_inflight(1000);
    if with_will {
        let key = device_key(i);
        let topic = Topic::presence(&tenant(), &device_id(i));
        let mut env =
            Envelope::new(u64::MAX / 2, now_ms(), examples::body(Kind::Presence)).unwrap();
        if let Body::Presence(p) = &mut env.body {
            p.state = kakanai_protocol::catalogue::PresenceState::Offline;
        }
        env.time_ms = now_ms();
        let bytes = seal(&key, &KeyId::of_key(&key.verifying_key()), &topic, &env).unwrap();
        options.set_last_will(LastWill::new(
            topic.to_string(),
            bytes,
            QoS::AtLeastOnce,
            true,
        ));
    }
    let (client, mut eventloop) = AsyncClient::new(options, 10_000);
    // As the appliance's link does: no Nagle delay between a request and an ack.
    let mut network = eventloop.network_options();
    network.set_tcp_nodelay(true);
    eventloop.set_network_options(network);
    let acks = Arc::new(AtomicU64::new(0));
    let rpc: Arc<Mutex<HashMap<MessageId, oneshot::Sender<Envelope>>>> = Arc::default();
    let (ready_tx, ready_rx) = oneshot::channel();
    {
        let acks = Arc::clone(&acks);
        let rpc = Arc::clone(&rpc);
        let client = client.clone();
        let down = filter::device_down(&tenant(), &device_id(i));
        tokio::spawn(async move {
            let mut ready = Some(ready_tx);
            let mut opener = Opener::new();
            let cp = SigningKey::from_seed(&CP_SEED).unwrap().verifying_key();
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        let _ = client.subscribe(down.clone(), QoS::AtLeastOnce).await;
                    }
                    Ok(Event::Incoming(Packet::SubAck(_))) => {
                        if let Some(r) = ready.take() {
                            let _ = r.send(());
                        }
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        if p.topic.ends_with("/ack") {
                            // Verified as the appliance does; one ack may name several
                            // messages.
                            let topic = Topic::parse(&p.topic).unwrap();
                            let opened = opener.open(&p.payload, &topic, |_, _| Some(cp)).unwrap();
                            if let Body::Ack(ack) = opened.envelope.body {
                                acks.fetch_add(ack.ids().count() as u64, Ordering::Relaxed);
                            }
                        } else if p.topic.ends_with("/rpc-res") {
                            let topic = Topic::parse(&p.topic).unwrap();
                            if let Ok(opened) = opener.open(&p.payload, &topic, |_, _| Some(cp)) {
                                if let Some(c) = opened.envelope.correlation {
                                    if let Some(w) = rpc.lock().await.remove(&c) {
                                        let _ = w.send(opened.envelope);
                                    }
                                }
                            }
                        }
                    }
                    Ok(_) => {}
                    Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
                }
            }
        });
    }
    let _ = tokio::time::timeout(Duration::from_secs(60), ready_rx).await;
    Appliance { client, acks, rpc }
}

fn sealed(i: usize, seq: u64, body: Body) -> (String, Vec<u8>, MessageId) {
    let key = device_key(i);
    let kind = body.kind();
    let topic = if kind == Kind::Presence {
        Topic::presence(&tenant(), &device_id(i))
    } else {
        Topic::up(&tenant(), &device_id(i), kind).unwrap()
    };
    let mut env = Envelope::new(seq, now_ms(), body).unwrap();
    env.time_ms = now_ms();
    let id = env.id;
    let bytes = seal(&key, &KeyId::of_key(&key.verifying_key()), &topic, &env).unwrap();
    (topic.to_string(), bytes, id)
}

fn rss_and_cpu(pid: u32) -> (u64, f64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let rss_kb = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    // After the command name: state is field 3, utime 14, stime 15 (1-based).
    let ticks: f64 = fields
        .get(11)
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(0.0)
        + fields
            .get(12)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0);
    (rss_kb, ticks / 100.0)
}

async fn ingest() {
    let devices = 20;
    let per_device: usize = std::env::var("KAKANAI_BENCH_PER_DEVICE")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5_000);
    let setup = setup(devices, 0).await;
    let mut apps = Vec::new();
    for i in 0..devices {
        apps.push(connect(setup.broker_port, i, false).await);
    }
    // Sealed beforehand: what is measured is the control plane's work.
    let mut batches = Vec::new();
    for i in 0..devices {
        let batch: Vec<_> = (0..per_device)
            .map(|n| {
                sealed(
                    i,
                    n as u64 + 1,
                    Body::DeviceState(kakanai_protocol::catalogue::DeviceStateReport {
                        id: format!("printer-{n}"),
                        class: kakanai_protocol::catalogue::DeviceClass::Printer,
                        status: kakanai_protocol::catalogue::DeviceStatus::Ready,
                    }),
                )
            })
            .collect();
        batches.push(batch);
    }
    let total = (devices * per_device) as u64;
    // Every process on the machine shares its 2 cores: say where the CPU went.
    let cpu_before = [
        rss_and_cpu(setup.child.id()).1,
        rss_and_cpu(setup._broker.pid()).1,
        rss_and_cpu(std::process::id()).1,
    ];
    let started = Instant::now();
    let mut publishers = Vec::new();
    for (app, batch) in apps.iter().zip(batches) {
        let client = app.client.clone();
        publishers.push(tokio::spawn(async move {
            for (topic, bytes, _) in batch {
                client
                    .publish(topic, QoS::AtLeastOnce, false, bytes)
                    .await
                    .unwrap();
            }
        }));
    }
    for p in publishers {
        p.await.unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let acked: u64 = apps.iter().map(|a| a.acks.load(Ordering::Relaxed)).sum();
        if acked >= total {
            break;
        }
        assert!(Instant::now() < deadline, "only {acked} of {total} acked");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let elapsed = started.elapsed();
    let (rss, cpu) = rss_and_cpu(setup.child.id());
    let broker_cpu = rss_and_cpu(setup._broker.pid()).1 - cpu_before[1];
    let bench_cpu = rss_and_cpu(std::process::id()).1 - cpu_before[2];
    println!(
        "ingest: {total} messages from {devices} appliances verified, stored and acked in {:.2} s = {:.0} msgs/s (CPU during the run: control plane {:.1} s, Mosquitto {:.1} s, simulated appliances {:.1} s; control plane RSS {} MiB)",
        elapsed.as_secs_f64(),
        total as f64 / elapsed.as_secs_f64(),
        cpu - cpu_before[0],
        broker_cpu,
        bench_cpu,
        rss / 1024
    );
}

async fn fleet() {
    let devices = 5_000;
    let setup = setup(devices, 0).await;
    let pid = setup.child.id();
    let (rss0, cpu0) = rss_and_cpu(pid);
    let started = Instant::now();
    let mut apps = Vec::new();
    for i in 0..devices {
        let app = connect(setup.broker_port, i, true).await;
        let (topic, bytes, _) = sealed(i, 1, examples::body(Kind::Presence));
        app.client
            .publish(topic, QoS::AtLeastOnce, true, bytes)
            .await
            .unwrap();
        apps.push(app);
    }
    let connected = started.elapsed();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let online = metric(setup.http_port, "kakanai_devices_online")
            .await
            .unwrap_or(0.0);
        if online >= devices as f64 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "only {online} of {devices} online"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let all_online = started.elapsed();
    let (rss1, cpu1) = rss_and_cpu(pid);
    // Steady state: every appliance reports a device state every 30 s (spread out).
    let window = Duration::from_secs(60);
    let period = Duration::from_secs(30);
    let mut tasks = Vec::new();
    for (i, app) in apps.iter().enumerate() {
        let client = app.client.clone();
        tasks.push(tokio::spawn(async move {
            let offset = period.mul_f64(i as f64 / devices as f64);
            tokio::time::sleep(offset).await;
            let mut seq = 2u64;
            let end = Instant::now() + window;
            while Instant::now() < end {
                let (topic, bytes, _) = sealed(i, seq, examples::body(Kind::DeviceState));
                let _ = client.publish(topic, QoS::AtLeastOnce, false, bytes).await;
                seq += 1;
                tokio::time::sleep(period).await;
            }
        }));
    }
    let mut peak_rss = rss1;
    let t0 = Instant::now();
    while t0.elapsed() < window {
        tokio::time::sleep(Duration::from_secs(1)).await;
        peak_rss = peak_rss.max(rss_and_cpu(pid).0);
    }
    let (_, cpu2) = rss_and_cpu(pid);
    for t in tasks {
        t.abort();
    }
    println!(
        "fleet: {devices} appliances connected in {:.1} s, all online (presence stored) after {:.1} s; \
         control plane RSS {} MiB idle → {} MiB with the fleet (peak {} MiB); \
         CPU {:.1} s to take the births ({:.1} s before), then {:.1}% of one core at {:.0} states/s",
        connected.as_secs_f64(),
        all_online.as_secs_f64(),
        rss0 / 1024,
        rss1 / 1024,
        peak_rss / 1024,
        cpu1 - cpu0,
        cpu0,
        (cpu2 - cpu1) / window.as_secs_f64() * 100.0,
        devices as f64 / period.as_secs_f64(),
    );
}

async fn rpc<M: RpcMethod>(
    app: &Appliance,
    i: usize,
    seq: u64,
    params: &M::Request,
    session: Option<String>,
) -> Result<M::Response, String> {
    let mut request = RpcRequest::new::<M>(params).unwrap();
    request.session = session;
    let (topic, bytes, id) = sealed(i, seq, Body::RpcRequest(request));
    let (tx, rx) = oneshot::channel();
    app.rpc.lock().await.insert(id, tx);
    app.client
        .publish(topic, QoS::AtLeastOnce, false, bytes)
        .await
        .unwrap();
    let answer = tokio::time::timeout(Duration::from_secs(30), rx)
        .await
        .map_err(|_| "timeout".to_string())?
        .unwrap();
    match answer.body {
        Body::RpcResponse(r) => match r.result::<M>().map_err(|e| e.to_string())? {
            Ok(v) => Ok(v),
            Err(e) => Err(e.code),
        },
        other => Err(format!("{:?}", other.kind())),
    }
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1000.0
}

async fn sessions() {
    let staff = 300;
    let appliances = 30;
    let setup = setup(appliances, staff).await;
    let mut apps = Vec::new();
    for i in 0..appliances {
        apps.push(Arc::new(connect(setup.broker_port, i, false).await));
    }
    let seqs: Arc<Vec<AtomicU64>> = Arc::new((0..appliances).map(|_| AtomicU64::new(1)).collect());
    let next = |seqs: &Vec<AtomicU64>, i: usize| seqs[i].fetch_add(1, Ordering::Relaxed);

    // Logins one after the other: the latency a member of staff sees.
    let mut login_times = Vec::new();
    let mut tokens = Vec::new();
    for s in 0..staff {
        let i = s % appliances;
        let t = Instant::now();
        let login: LoginResponse = rpc::<Login>(
            &apps[i],
            i,
            next(&seqs, i),
            &LoginRequest {
                login_id: format!("staff{s:04}"),
                password: Secret::new(initial_password(s)),
            },
            None,
        )
        .await
        .unwrap();
        login_times.push(t.elapsed());
        let token = login.token.expose().to_owned();
        rpc::<ChangePassword>(
            &apps[i],
            i,
            next(&seqs, i),
            &ChangePasswordRequest {
                old_password: Secret::new(initial_password(s)),
                new_password: Secret::new(format!("Atarashii-{s:04}-pass!")),
            },
            Some(token.clone()),
        )
        .await
        .unwrap();
        tokens.push((i, token));
    }
    login_times.sort();

    // One at a time: the round trip with nothing else going on.
    let mut quiet = Vec::new();
    for _ in 0..500 {
        let (i, token) = &tokens[0];
        let t = Instant::now();
        rpc::<Whoami>(
            &apps[*i],
            *i,
            next(&seqs, *i),
            &WhoamiRequest {},
            Some(token.clone()),
        )
        .await
        .unwrap();
        quiet.push(t.elapsed());
    }
    quiet.sort();

    // 300 sessions at once, each calling about once a second (a member of staff
    // at work does far less), at random moments, for 20 s: the latency staff see
    // while everyone works.
    let window = Duration::from_secs(20);
    let mut tasks = Vec::new();
    for (n, (i, token)) in tokens.iter().cloned().enumerate() {
        let app = Arc::clone(&apps[i]);
        let seqs = Arc::clone(&seqs);
        tasks.push(tokio::spawn(async move {
            let mut times = Vec::new();
            // Spread over the second by a fixed permutation, then ±50 % per call.
            let mut phase = (n as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
            tokio::time::sleep(Duration::from_millis(phase % 1000)).await;
            let end = Instant::now() + window;
            while Instant::now() < end {
                let t = Instant::now();
                let seq = seqs[i].fetch_add(1, Ordering::Relaxed);
                rpc::<Whoami>(&app, i, seq, &WhoamiRequest {}, Some(token.clone()))
                    .await
                    .unwrap();
                times.push(t.elapsed());
                phase = phase
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1);
                let pause = Duration::from_millis(500 + (phase >> 33) % 1000);
                tokio::time::sleep(pause.saturating_sub(t.elapsed())).await;
            }
            times
        }));
    }
    let mut paced = Vec::new();
    for t in tasks {
        paced.extend(t.await.unwrap());
    }
    paced.sort();

    // 300 sessions at once, each calling again as soon as it has its answer, for 20 s:
    // the capacity, and the latency when every session waits behind all the others.
    let mut tasks = Vec::new();
    for (i, token) in tokens {
        let app = Arc::clone(&apps[i]);
        let seqs = Arc::clone(&seqs);
        tasks.push(tokio::spawn(async move {
            let mut times = Vec::new();
            let end = Instant::now() + window;
            while Instant::now() < end {
                let t = Instant::now();
                let seq = seqs[i].fetch_add(1, Ordering::Relaxed);
                rpc::<Whoami>(&app, i, seq, &WhoamiRequest {}, Some(token.clone()))
                    .await
                    .unwrap();
                times.push(t.elapsed());
            }
            times
        }));
    }
    let mut busy = Vec::new();
    for t in tasks {
        busy.extend(t.await.unwrap());
    }
    busy.sort();
    println!(
        "sessions: login (argon2id) p50 {:.1} ms, p99 {:.1} ms over {staff} logins; \
         RPC round trip appliance → control plane → appliance alone p50 {:.2} ms, p99 {:.2} ms; \
         {staff} sessions each calling about once a second p50 {:.2} ms, p99 {:.2} ms ({:.0} calls/s); \
         {staff} sessions calling flat out p50 {:.2} ms, p99 {:.2} ms, {:.0} calls/s",
        percentile(&login_times, 0.5),
        percentile(&login_times, 0.99),
        percentile(&quiet, 0.5),
        percentile(&quiet, 0.99),
        percentile(&paced, 0.5),
        percentile(&paced, 0.99),
        paced.len() as f64 / window.as_secs_f64(),
        percentile(&busy, 0.5),
        percentile(&busy, 0.99),
        busy.len() as f64 / window.as_secs_f64(),
    );
}

fn main() {
    let which: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let all = which.is_empty() || which.iter().any(|w| w == "all");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        if all || which.iter().any(|w| w == "ingest") {
            ingest().await;
        }
        if all || which.iter().any(|w| w == "sessions") {
            sessions().await;
        }
        if all || which.iter().any(|w| w == "fleet") {
            fleet().await;
        }
    });
}
