//! PostgreSQL self-test through `psql`, an independent client.

// Helper functions outside #[test] panic on failure too, like the tests themselves.
#![allow(clippy::unwrap_used)]

use std::process::Command;

use kakanai_test_peers::{port_accepts, Postgres};

#[test]
fn psql_computes_and_databases_can_be_created() {
    let pg = Postgres::start().unwrap();
    assert!(pg.url().starts_with("postgres://kakanai@127.0.0.1:"));
    assert!(pg.url().ends_with(&format!(":{}/postgres", pg.port())));

    // Plain psql with the URL, not the guard's helper: an independent client.
    let out = Command::new("psql")
        .args(["-X", "-tA", &pg.url(), "-c", "select 1+1"])
        .output()
        .expect("psql not found on PATH; run scripts/test, which installs it");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8(out.stdout).unwrap().trim(), "2");

    pg.create_database("kakanai_selftest").unwrap();
    let out = Command::new("psql")
        .args([
            "-X",
            "-tA",
            &pg.url_for("kakanai_selftest"),
            "-c",
            "select current_database()",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8(out.stdout).unwrap().trim(),
        "kakanai_selftest"
    );
    assert!(pg.create_database("bad name; drop").is_err());

    let port = pg.port();
    drop(pg);
    assert!(!port_accepts(port), "postgres still listening after drop");
}
