//! `kakanai-control-plane serve` as a process: configuration errors name their
//! field, the service comes up against Mosquitto with `/health` and `/metrics`, and
//! SIGTERM stops it cleanly.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{Read as _, Write as _};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use kakanai_control_plane::service::{ConfigError, ServiceConfig};
use kakanai_test_peers::{free_port, Mosquitto};

const BIN: &str = env!("CARGO_BIN_EXE_kakanai-control-plane");

fn write_key(path: &Path, mode: u32) {
    std::fs::write(path, hex::encode([0x22u8; 32])).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn config_text(dir: &Path, broker_port: u16, http_port: u16) -> String {
    format!(
        "data_dir = \"{d}\"\ntenants = [\"city-a\"]\n\n[broker]\nhost = \"127.0.0.1\"\nport = {broker_port}\n\n\
         [signing]\nkey_file = \"{d}/cp.key\"\n\n[http]\nlisten = \"127.0.0.1:{http_port}\"\n",
        d = dir.display()
    )
}

fn field_of(e: ConfigError) -> String {
    match e {
        ConfigError::Invalid { field, .. } => field.to_owned(),
        other => other.to_string(),
    }
}

#[test]
fn configuration_errors_name_the_field_and_env_overrides_apply() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cp.toml");
    write_key(&dir.path().join("cp.key"), 0o600);
    let text = config_text(dir.path(), 1883, 8090);
    let no_env = |_: &str| None;

    let ok = ServiceConfig::parse(&text, &path, no_env).unwrap();
    assert_eq!(
        ok.database_url,
        format!("sqlite://{}/kakanai.db?mode=rwc", dir.path().display())
    );
    assert!(ok.broker.shared_group.is_none());
    assert!(ok.broker.client_id.starts_with("kakanai-cp-"));

    let env = |name: &str| match name {
        "KAKANAI_DATABASE_URL" => Some("postgres://kakanai:secret@db/kakanai".to_owned()),
        "KAKANAI_BROKER_PORT" => Some("2883".to_owned()),
        _ => None,
    };
    let over = ServiceConfig::parse(&text, &path, env).unwrap();
    assert_eq!(over.database_url, "postgres://kakanai:secret@db/kakanai");
    assert_eq!(over.broker.port, 2883);
    assert!(
        !format!("{over:?}").contains("secret"),
        "the URL is not shown"
    );

    let bad_port = |name: &str| (name == "KAKANAI_BROKER_PORT").then(|| "http".to_owned());
    let e = ServiceConfig::parse(&text, &path, bad_port).err().unwrap();
    assert_eq!(field_of(e), "KAKANAI_BROKER_PORT");

    let e = ServiceConfig::parse(&text.replace("[\"city-a\"]", "[]"), &path, no_env)
        .err()
        .unwrap();
    assert_eq!(field_of(e), "tenants");
    let e = ServiceConfig::parse(&text.replace("city-a", "市役所"), &path, no_env)
        .err()
        .unwrap();
    assert_eq!(field_of(e), "tenants");
    let e = ServiceConfig::parse(
        &text.replace("port = 1883", "port = 1883\nshared_group = \"a/#\""),
        &path,
        no_env,
    )
    .err()
    .unwrap();
    assert_eq!(field_of(e), "broker.shared_group");
    let e = ServiceConfig::parse(&text.replace("127.0.0.1:8090", "localhost"), &path, no_env)
        .err()
        .unwrap();
    assert_eq!(field_of(e), "http.listen");
    let e = ServiceConfig::parse(&format!("{text}\nunknown = 1\n"), &path, no_env)
        .err()
        .unwrap();
    assert!(matches!(e, ConfigError::Syntax { .. }), "{e}");

    write_key(&dir.path().join("cp.key"), 0o644);
    let e = ServiceConfig::parse(&text, &path, no_env).err().unwrap();
    let msg = e.to_string();
    assert_eq!(field_of(e), "signing.key_file");
    assert!(msg.contains("chmod 600"), "{msg}");
}

fn http_get(port: u16, path: &str) -> Option<String> {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    Some(out)
}

#[test]
fn serve_runs_reports_health_and_stops_on_sigterm() {
    let broker = Mosquitto::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    write_key(&dir.path().join("cp.key"), 0o600);
    let http_port = free_port();
    let path = dir.path().join("cp.toml");
    std::fs::write(&path, config_text(dir.path(), broker.port(), http_port)).unwrap();

    let mut child = Command::new(BIN)
        .arg("serve")
        .arg("--config")
        .arg(&path)
        .env_remove("KAKANAI_DATABASE_URL")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    let health = loop {
        if let Some(h) = http_get(http_port, "/health") {
            if h.starts_with("HTTP/1.1 200") {
                break h;
            }
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the service did not become healthy"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(health.contains("\"broker_connected\":true"), "{health}");
    let metrics = http_get(http_port, "/metrics").unwrap();
    assert!(metrics.contains("kakanai_broker_connected 1"), "{metrics}");
    assert!(
        dir.path().join("kakanai.db").exists(),
        "the default SQLite file"
    );

    let status = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status()
        .unwrap();
    assert!(status.success());
    let started = Instant::now();
    let exit = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "no exit after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert!(exit.success(), "{exit}: {stderr}");
    assert!(stderr.contains("control plane stopped"), "{stderr}");

    // A key file others can read: exit 2, naming the field.
    write_key(&dir.path().join("cp.key"), 0o644);
    let out = Command::new(BIN)
        .arg("serve")
        .arg("--config")
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("signing.key_file"), "{err}");
}

/// One HTTPS GET to `127.0.0.1:port` trusting only `ca_pem`; `None` when the TLS
/// handshake or the request fails.
fn https_get(port: u16, ca_pem: &str, path: &str) -> Option<String> {
    let ca = native_tls::Certificate::from_pem(ca_pem.as_bytes()).unwrap();
    let connector = native_tls::TlsConnector::builder()
        .disable_built_in_roots(true)
        .add_root_certificate(ca)
        .build()
        .unwrap();
    let tcp = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    tcp.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let mut s = connector.connect("127.0.0.1", tcp).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    Some(String::from_utf8_lossy(&out).into_owned())
}

#[test]
fn serve_speaks_https_with_its_certificate_and_refuses_a_key_that_is_not_its_own() {
    use kakanai_protocol::topic::Ident;
    use kakanai_provisioning::pki;

    let broker = Mosquitto::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    write_key(&dir.path().join("cp.key"), 0o600);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let ca = pki::new_ca(&Ident::new("city-a").unwrap(), now).unwrap();
    let (cert, key) = pki::issue_server(&ca, &["127.0.0.1".into()], now).unwrap();
    let (_, other_key) = pki::issue_server(&ca, &["127.0.0.1".into()], now).unwrap();
    let (cert_file, key_file) = (dir.path().join("https.pem"), dir.path().join("https.key"));
    std::fs::write(&cert_file, &cert.pem).unwrap();
    std::fs::write(&key_file, &key).unwrap();
    std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let http_port = free_port();
    let path = dir.path().join("cp.toml");
    let config = |key_file: &Path| {
        format!(
            "{}tls_cert_file = \"{}\"\ntls_key_file = \"{}\"\n",
            config_text(dir.path(), broker.port(), http_port),
            cert_file.display(),
            key_file.display()
        )
    };
    std::fs::write(&path, config(&key_file)).unwrap();

    let mut child = Command::new(BIN)
        .arg("serve")
        .arg("--config")
        .arg(&path)
        .env_remove("KAKANAI_DATABASE_URL")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    let health = loop {
        if let Some(h) = https_get(http_port, &ca.cert_pem, "/health") {
            if h.starts_with("HTTP/1.1 200") {
                break h;
            }
        }
        if started.elapsed() > Duration::from_secs(20) {
            let _ = child.kill();
            panic!("the service did not answer over HTTPS");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(health.contains("\"broker_connected\":true"), "{health}");
    // The admin login page over HTTPS sets a Secure, __Host- cookie.
    let login = https_get(http_port, &ca.cert_pem, "/admin/login").unwrap();
    let cookie = login
        .lines()
        .find(|l| l.to_ascii_lowercase().starts_with("set-cookie:"))
        .unwrap_or_else(|| panic!("no cookie: {login}"));
    assert!(cookie.contains("__Host-"), "{cookie}");
    assert!(cookie.contains("; Secure"), "{cookie}");
    // Plain HTTP on the HTTPS port gets no HTTP answer.
    let plain = http_get(http_port, "/health").unwrap_or_default();
    assert!(!plain.starts_with("HTTP/1.1 200"), "{plain}");
    child.kill().unwrap();
    child.wait().unwrap();

    // Another certificate's key: the start stops, naming the field.
    let other_file = dir.path().join("other.key");
    std::fs::write(&other_file, &other_key).unwrap();
    std::fs::set_permissions(&other_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::write(&path, config(&other_file)).unwrap();
    let out = Command::new(BIN)
        .arg("serve")
        .arg("--config")
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("http.tls_key_file"), "{err}");
    assert!(
        !err.contains("PRIVATE KEY"),
        "the key's content never shows: {err}"
    );
}
