//! The shipped alert rules (`control-plane/ops/alerts.yml`) name only metrics the
//! running service exports, and the backup gauges an operator watches follow the
//! backups: none yet → a verified one → a failed one.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::Path;

use kakanai_control_plane::backup::{keygen, BackupConfig, Backups};
use kakanai_control_plane::service::{self, ServiceConfig};
use kakanai_control_plane::store::Store;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn write_key(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, hex::encode([0x22u8; 32])).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

async fn metrics(addr: SocketAddr) -> String {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    out
}

fn value(text: &str, series: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
        .unwrap_or_else(|| panic!("{series} not exported"))
        .rsplit(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

/// Metric names in the alert rules' expressions.
fn alert_metrics() -> BTreeSet<String> {
    let rules =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/ops/alerts.yml")).unwrap();
    let mut names = BTreeSet::new();
    for line in rules
        .lines()
        .filter(|l| l.trim_start().starts_with("expr:"))
    {
        let mut rest = line;
        while let Some(at) = rest.find("kakanai_") {
            let tail = &rest[at..];
            let end = tail
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(tail.len());
            names.insert(tail[..end].to_owned());
            rest = &tail[end..];
        }
    }
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alert_rules_name_exported_metrics_and_backup_gauges_follow_backups() {
    let dir = tempfile::tempdir().unwrap();
    write_key(&dir.path().join("cp.key"));
    let key = dir.path().join("backup.key");
    keygen(&key).unwrap();
    let backups_dir = dir.path().join("backups");
    let port = kakanai_test_peers::free_port();
    let text = format!(
        "data_dir = \"{d}\"\ntenants = [\"city-a\"]\n\n[broker]\nembedded = true\n\
         listen = \"127.0.0.1:{port}\"\n\n[signing]\nkey_file = \"{d}/cp.key\"\n\n\
         [http]\nlisten = \"127.0.0.1:0\"\n\n[backup]\ndir = \"{b}\"\nkey_file = \"{k}\"\n",
        d = dir.path().display(),
        b = backups_dir.display(),
        k = key.display(),
    );
    let path = dir.path().join("cp.toml");
    let config = ServiceConfig::parse(&text, &path, |_| None).unwrap();
    let url = config.database_url.clone();
    let running = service::start(config, service::ServiceOptions::default())
        .await
        .unwrap();
    let addr = running.http_addr();

    let exported = metrics(addr).await;
    let wanted = alert_metrics();
    assert!(wanted.len() >= 10, "{wanted:?}");
    for name in &wanted {
        assert!(
            exported.contains(&format!("\n{name}"))
                || exported.contains(&format!("# TYPE {name} ")),
            "the alert rules use {name}, which /metrics does not export"
        );
    }

    // No backup yet: the "missing" alert's input is 0 (→ fires after 26 h of uptime
    // at the latest, immediately in Prometheus since time() - 0 is large).
    assert_eq!(
        value(&exported, "kakanai_backup_last_success_timestamp_seconds"),
        0.0
    );
    assert_eq!(value(&exported, "kakanai_backup_directory_readable"), 1.0);

    // A verified backup moves the gauge to its time.
    let backups = Backups::open(BackupConfig::new(backups_dir.clone(), key.clone())).unwrap();
    let store = Store::open(&url).await.unwrap();
    let good = backups.run(&store, &url).await.unwrap();
    let after = metrics(addr).await;
    assert_eq!(
        value(&after, "kakanai_backup_last_success_timestamp_seconds"),
        (good.created_ms / 1000) as f64
    );
    assert_eq!(value(&after, "kakanai_backup_last_failed"), 0.0);

    // A damaged newer backup: the failure shows, the last success stays.
    let bad = backups.backup(&store, &url).await.unwrap();
    std::fs::write(backups_dir.join(&bad.file), b"damaged").unwrap();
    assert!(!backups.verify(&bad, &url).await.unwrap().ok);
    let failed = metrics(addr).await;
    assert_eq!(value(&failed, "kakanai_backup_last_failed"), 1.0);
    assert_eq!(
        value(&failed, "kakanai_backup_last_success_timestamp_seconds"),
        (good.created_ms / 1000) as f64
    );
    store.close().await;
    running.shutdown().await;
}
