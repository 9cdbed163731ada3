//! Central IT's operations on an appliance (logs, restart) from both places they
//! start: `kakanai-control-plane device logs|restart` (the real binaries: `serve`
//! and the command line, through the service's socket) and the device page of the
//! admin UI (ログを取得, 再起動). The appliance is played by a test MQTT client
//! signing with the device's registered key (the real daemon's side is
//! `appliance/tests/ops.rs`; both real sides together are `tests/tests/e2e_ops.rs`).
//! What is checked: the logs come back and are shown, each operation is audited
//! with who asked before it leaves, and a request that cannot be carried out
//! (unknown or offline device, no permission, cross-site POST) says why and sends
//! and records nothing.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "admin_fixture/mod.rs"]
mod fixture;

use std::time::Duration;

use fixture::{city_a, Browser, ADMIN_PASSWORD, CLERK_PASSWORD};
use kakanai_control_plane::model::{Actor, Place};
use kakanai_control_plane::store::Group;
use kakanai_protocol::catalogue::{
    Ack, AckStatus, Body, LogLine, Operation, OperationResult, OperationStatus,
};
use kakanai_protocol::seal::{seal, Opener};
use kakanai_protocol::topic::{filter, Ident};
use kakanai_protocol::{Envelope, KeyId, SigningKey, Topic};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};

/// The appliance `counter-a1` of city-a (its key as the fixture registers it),
/// answering `operation` commands with one log line.
async fn play_appliance(broker: std::net::SocketAddr) {
    play(
        broker,
        "counter-a1",
        SigningKey::from_seed(&[1 + b'a'; 32]).unwrap(),
    )
    .await;
}

/// Device `device` of city-a signing with `device_key`, answering `operation`
/// commands from the control plane (key 0x42) with one log line.
async fn play(broker: std::net::SocketAddr, device: &str, device_key: SigningKey) {
    let cp_public = SigningKey::from_seed(&[0x42; 32]).unwrap().verifying_key();
    let (tenant, device) = (city_a(), Ident::new(device).unwrap());
    let mut options = MqttOptions::new(
        format!("appliance-{device}"),
        broker.ip().to_string(),
        broker.port(),
    );
    options.set_max_packet_size(300 * 1024, 300 * 1024);
    let (client, mut events) = AsyncClient::new(options, 64);
    client
        .subscribe(filter::device_down(&tenant, &device), QoS::AtLeastOnce)
        .await
        .unwrap();
    let (subscribed_tx, subscribed_rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let mut subscribed = Some(subscribed_tx);
        let mut opener = Opener::new();
        let kid = KeyId::of_key(&device_key.verifying_key());
        let mut seq = 1u64;
        loop {
            let Ok(event) = events.poll().await else {
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            };
            let p = match event {
                Event::Incoming(Packet::SubAck(_)) => {
                    if let Some(tx) = subscribed.take() {
                        let _ = tx.send(());
                    }
                    continue;
                }
                Event::Incoming(Packet::Publish(p)) => p,
                _ => continue,
            };
            let topic = Topic::parse(&p.topic).unwrap();
            let Ok(opened) = opener.open(&p.payload, &topic, |_, _| Some(cp_public)) else {
                continue;
            };
            let Body::Operation(op) = opened.envelope.body else {
                continue;
            };
            let id = opened.envelope.id;
            let result = OperationResult {
                command_id: id,
                status: OperationStatus::Done,
                logs: match op {
                    Operation::Logs { .. } => vec![LogLine {
                        time_ms: fixture::now_ms(),
                        level: "WARN".into(),
                        target: "kakanai_appliance::devices".into(),
                        text: "printer media-empty".into(),
                    }],
                    Operation::Restart { .. } => Vec::new(),
                },
                truncated: false,
                message: "done here".into(),
            };
            for (body, corr) in [
                (Body::Ack(Ack::of(id, AckStatus::Accepted)), Some(id)),
                (Body::OperationResult(result), None),
            ] {
                let up = Topic::up(&tenant, &device, body.kind()).unwrap();
                let mut env = Envelope::new(seq, fixture::now_ms(), body).unwrap();
                env.correlation = corr;
                seq += 1;
                let bytes = seal(&device_key, &kid, &up, &env).unwrap();
                let client = client.clone();
                tokio::spawn(async move {
                    let _ = client
                        .publish(up.to_string(), QoS::AtLeastOnce, false, bytes)
                        .await;
                });
            }
        }
    });
    tokio::time::timeout(Duration::from_secs(10), subscribed_rx)
        .await
        .unwrap()
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_device_page_fetches_logs_audited_with_the_administrator() {
    let fx = fixture::start().await;
    let running = fx.running.as_ref().unwrap();
    assert!(
        running
            .service()
            .wait_subscribed(Duration::from_secs(10))
            .await
    );
    play_appliance(running.embedded_broker_addr().unwrap()).await;

    let mut b = Browser::new(&fx.base);
    b.login("city-a", "admin-a", ADMIN_PASSWORD).await;
    let page = b.get("/admin/fleet/counter-a1").await;
    assert_eq!(page.status, 200);
    assert!(page.body.contains("data-op=\"logs\""), "{}", page.body);
    assert!(page.body.contains("data-op=\"restart\""));
    // An offline device offers no operations.
    let offline = b.get("/admin/fleet/counter-a2").await;
    assert!(!offline.body.contains("data-op="));

    let csrf = b.csrf().await;
    let before = fx.audit(&city_a()).await.len();
    let a = b
        .post(
            "/admin/fleet/counter-a1/operation",
            &[("csrf", &csrf), ("op", "logs")],
        )
        .await;
    assert_eq!(a.status, 200);
    assert!(a.body.contains("data-status=\"done\""), "{}", a.body);
    assert!(a.body.contains("printer media-empty"), "{}", a.body);

    let audit = fx.audit(&city_a()).await;
    let sent = audit
        .iter()
        .find(|e| e.record.action == "device.operation")
        .expect("the operation is audited");
    assert_eq!(sent.record.actor, Actor::Admin("admin-a".into()));
    assert!(
        matches!(&sent.record.place, Place::Ip(_)),
        "{:?}",
        sent.record.place
    );
    assert_eq!(sent.record.detail["device"], "counter-a1");
    assert_eq!(sent.record.detail["op"], "logs");
    let result = audit
        .iter()
        .find(|e| e.record.action == "device.operation-result")
        .expect("the result is audited");
    assert_eq!(result.record.detail["lines"], 1);
    assert!(!serde_json::to_string(&result.record)
        .unwrap()
        .contains("media-empty"));
    let after = audit.len();
    assert!(after > before);

    // Refused, sending and recording nothing: an offline device, a cross-site
    // POST, an unknown operation, and a clerk without admin.fleet.
    let a = b
        .post(
            "/admin/fleet/counter-a2/operation",
            &[("csrf", &csrf), ("op", "restart")],
        )
        .await;
    assert!(a.body.contains("data-status=\"error\""), "{}", a.body);
    assert!(a.body.contains("offline"), "{}", a.body);
    let a = b
        .post_from(
            "/admin/fleet/counter-a1/operation",
            &[("csrf", &csrf), ("op", "restart")],
            Some("https://evil.example"),
        )
        .await;
    assert_ne!(a.status, 200);
    let a = b
        .post(
            "/admin/fleet/counter-a1/operation",
            &[("csrf", &csrf), ("op", "format-disk")],
        )
        .await;
    assert_ne!(a.status, 200);
    // An auditor: an administrator, but without admin.fleet.
    fx.store()
        .create_group(
            &city_a(),
            &Group {
                name: "kansa".into(),
                description: "監査".into(),
                permissions: ["audit.search".to_owned()].into_iter().collect(),
            },
        )
        .await
        .unwrap();
    fx.store()
        .add_group_member(&city_a(), "kansa", "clerk-a1")
        .await
        .unwrap();
    let mut clerk = Browser::new(&fx.base);
    assert_eq!(
        clerk
            .login("city-a", "clerk-a1", CLERK_PASSWORD)
            .await
            .status,
        303
    );
    let clerk_csrf = clerk.csrf().await;
    let a = clerk
        .post(
            "/admin/fleet/counter-a1/operation",
            &[("csrf", &clerk_csrf), ("op", "restart")],
        )
        .await;
    assert_ne!(a.status, 200);
    let audit = fx.audit(&city_a()).await;
    assert!(!audit[after..]
        .iter()
        .any(|e| e.record.action.starts_with("device.operation")));
    fx.stop().await;
}

const BIN: &str = env!("CARGO_BIN_EXE_kakanai-control-plane");

/// Runs the command line with `args`; (exit code, stdout, stderr).
async fn cli(args: Vec<String>) -> (i32, String, String) {
    tokio::task::spawn_blocking(move || {
        let out = std::process::Command::new(BIN)
            .args(&args)
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    })
    .await
    .unwrap()
}

async fn operations_audited(
    store: &kakanai_control_plane::store::Store,
) -> Vec<kakanai_control_plane::audit::AuditEntry> {
    let filter = kakanai_control_plane::store::AuditFilter {
        action_prefix: Some("device.operation".into()),
        ..Default::default()
    };
    store.audit_search(&city_a(), &filter, 100).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_command_line_fetches_logs_and_restarts_through_the_running_service() {
    use kakanai_control_plane::store::{NewDevice, PresenceUpdate, Store, Tenant};
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().unwrap();
    let cp = SigningKey::from_seed(&[0x42; 32]).unwrap();
    let key_file = dir.path().join("cp.key");
    std::fs::write(&key_file, hex::encode(cp.seed())).unwrap();
    std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    // The store as central IT left it: the city, its counter registered and online.
    let url = format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("kakanai.db").display()
    );
    let store = Store::open(&url).await.unwrap();
    store
        .create_tenant(
            &Tenant {
                id: city_a(),
                name: "A市".into(),
            },
            fixture::now_ms(),
        )
        .await
        .unwrap();
    let device_key = SigningKey::from_seed(&[0x11; 32]).unwrap();
    let device = Ident::new("counter-01").unwrap();
    store
        .register_device(
            &city_a(),
            &NewDevice {
                id: device.clone(),
                counter_name: "市民課 1番窓口".into(),
                location: "本庁舎1階".into(),
                kid: KeyId::of_key(&device_key.verifying_key()),
                public_key: device_key.verifying_key(),
                firmware: None,
            },
            fixture::now_ms(),
        )
        .await
        .unwrap();
    store
        .update_presence(
            &city_a(),
            &device,
            &PresenceUpdate {
                online: true,
                boot_counter: 3,
                seen_at_ms: fixture::now_ms(),
                firmware: None,
            },
        )
        .await
        .unwrap();
    let broker_port = kakanai_test_peers::free_port();
    let http_port = kakanai_test_peers::free_port();
    let config = dir.path().join("cp.toml");
    std::fs::write(
        &config,
        format!(
            "data_dir = \"{d}\"\ntenants = [\"city-a\"]\n\n[broker]\nembedded = true\n\
             listen = \"127.0.0.1:{broker_port}\"\n\n[signing]\nkey_file = \"{k}\"\n\n\
             [http]\nlisten = \"127.0.0.1:{http_port}\"\n",
            d = dir.path().display(),
            k = key_file.display(),
        ),
    )
    .unwrap();
    let mut serve = std::process::Command::new(BIN)
        .arg("serve")
        .arg("--config")
        .arg(&config)
        .env_remove("KAKANAI_DATABASE_URL")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let socket = dir.path().join("control-plane.sock");
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !socket.exists() {
        assert!(std::time::Instant::now() < deadline, "no operations socket");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let socket_mode = std::fs::metadata(&socket).unwrap().permissions().mode();
    assert_eq!(
        socket_mode & 0o777,
        0o600,
        "only the service's user and root"
    );
    play(
        ([127, 0, 0, 1], broker_port).into(),
        "counter-01",
        device_key,
    )
    .await;
    let socket_arg = socket.display().to_string();
    let args = |op: &str, device: &str, socket: &str, extra: &[&str]| -> Vec<String> {
        [
            "device",
            op,
            "--tenant",
            "city-a",
            "--device",
            device,
            "--by",
            "it-tanaka",
            "--socket",
            socket,
        ]
        .iter()
        .chain(extra)
        .map(|s| (*s).to_owned())
        .collect()
    };

    let (code, out, err) = cli(args("logs", "counter-01", &socket_arg, &["--lines", "50"])).await;
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("WARN  kakanai_appliance::devices: printer media-empty"),
        "{out}"
    );
    assert!(out.contains("+09:00"), "times in Japan time: {out}");

    let (code, out, err) = cli(args("restart", "counter-01", &socket_arg, &["--wait", "3"])).await;
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("counter-01: done here"), "{out}");
    // The played appliance does not really restart.
    assert!(out.contains("not back online yet"), "{out}");

    let audit = operations_audited(&store).await;
    let sent: Vec<_> = audit
        .iter()
        .filter(|e| e.record.action == "device.operation")
        .collect();
    assert_eq!(sent.len(), 2);
    for e in &sent {
        assert_eq!(e.record.actor, Actor::Admin("it-tanaka".into()));
        assert_eq!(e.record.detail["device"], "counter-01");
        assert!(e.record.detail["uid"].is_u64(), "{}", e.record.detail);
    }
    assert_eq!(sent[1].record.detail["op"], "restart");

    // Wrong requests: said why, exit 1 (2 without a service), nothing sent.
    let (code, _, err) = cli(args("logs", "counter-99", &socket_arg, &[])).await;
    assert_eq!(code, 1);
    assert!(
        err.contains("counter-99 is not a registered device"),
        "{err}"
    );
    let (code, _, err) = cli(args("logs", "counter-01", &socket_arg, &["--lines", "0"])).await;
    assert_eq!(code, 1);
    assert!(err.contains("max_lines"), "{err}");
    let nowhere = dir.path().join("nothing.sock").display().to_string();
    let (code, _, err) = cli(args("logs", "counter-01", &nowhere, &[])).await;
    assert_eq!(code, 2);
    assert!(
        err.contains("is `kakanai-control-plane serve` running"),
        "{err}"
    );
    assert_eq!(operations_audited(&store).await.len(), audit.len());

    let _ = std::process::Command::new("kill")
        .arg(serve.id().to_string())
        .status();
    let _ = tokio::task::spawn_blocking(move || serve.wait()).await;
}
