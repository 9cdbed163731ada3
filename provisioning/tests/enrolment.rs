//! Claim-based enrolment through the real HTTPS enrolment service: a device with
//! only its `claim.toml` gets its certificate and configuration once central IT
//! approves; used, expired, foreign and mis-pinned claims are refused with a clear
//! reason and change nothing.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::future::IntoFuture as _;
use std::path::Path;
use std::sync::Arc;

use kakanai_protocol::SigningKey;
use kakanai_provisioning::bundle::Bundle;
use kakanai_provisioning::claim::ClaimFile;
use kakanai_provisioning::enrol::{self, ClientError, Progress, TlsListener};
use kakanai_provisioning::fleet::{CaDir, InitOptions};
use kakanai_provisioning::pki;

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn init(dir: &Path, tenant: &str, enrol_port: u16) -> CaDir {
    let cp = SigningKey::generate().unwrap();
    CaDir::init(
        dir,
        InitOptions {
            tenant: tenant.into(),
            broker_url: "mqtts://127.0.0.1:8883".into(),
            enrolment_url: Some(format!("https://127.0.0.1:{enrol_port}")),
            device_days: 90,
            control_plane_keys: vec![hex::encode(cp.verifying_key().as_bytes())],
        },
        now(),
    )
    .unwrap()
}

/// Starts the enrolment service for the CA in `dir` on a free port of its own.
async fn serve(dir: &Path, tenant: &str) -> (Arc<CaDir>, u16) {
    let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = tcp.local_addr().unwrap().port();
    let ca = init(dir, tenant, port);
    let (cert, key) =
        pki::issue_server(&ca.material().unwrap(), &["127.0.0.1".into()], now()).unwrap();
    let listener = TlsListener::new(tcp, &cert.pem, &key).unwrap();
    let ca = Arc::new(ca);
    tokio::spawn(axum::serve(listener, enrol::router(Arc::clone(&ca))).into_future());
    (ca, port)
}

async fn enrol_once(claim: &ClaimFile, dir: &Path) -> Result<Progress, ClientError> {
    let (claim, dir) = (claim.clone(), dir.to_owned());
    tokio::task::spawn_blocking(move || enrol::enrol_once(&claim, &dir))
        .await
        .unwrap()
}

#[tokio::test]
async fn a_claim_enrols_a_device_once_central_it_approves() {
    let tmp = tempfile::tempdir().unwrap();
    let (ca, _) = serve(&tmp.path().join("ca"), "city-a").await;
    let claim = ca
        .create_claim(
            "市民課 1番窓口",
            Some("counter-01"),
            72 * 3600,
            false,
            now(),
        )
        .unwrap();
    // What goes on the USB stick, read back as the device reads it.
    let stick = tmp.path().join("claim.toml");
    claim.file.write(&stick).unwrap();
    let on_device = ClaimFile::load(&stick).unwrap();
    assert!(on_device.qr_svg().unwrap().starts_with("<?xml"));
    let state = std::fs::read_to_string(tmp.path().join("ca/state.json")).unwrap();
    assert!(
        !state.contains(&claim.file.token),
        "the token is stored only hashed"
    );

    let bundle_dir = tmp.path().join("bundle");
    let Progress::Pending { enrolment } = enrol_once(&on_device, &bundle_dir).await.unwrap() else {
        panic!("enrolled without approval");
    };
    assert!(!bundle_dir.join("bundle.toml").exists());
    let pending = ca.pending().unwrap();
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].id, enrolment);
    assert_eq!(pending[0].device, "counter-01");
    assert_eq!(pending[0].counter, "市民課 1番窓口");
    // Asking again is polling: still pending, same enrolment.
    assert!(matches!(
        enrol_once(&on_device, &bundle_dir).await.unwrap(),
        Progress::Pending { enrolment: e } if e == enrolment
    ));

    ca.approve(&enrolment, now()).unwrap();
    let Progress::Enrolled(bundle) = enrol_once(&on_device, &bundle_dir).await.unwrap() else {
        panic!("not enrolled after approval");
    };
    assert_eq!(bundle.device.as_str(), "counter-01");
    assert_eq!(bundle.tenant.as_str(), "city-a");
    assert_eq!(bundle.counter, "市民課 1番窓口");
    assert!(bundle.broker.tls);
    assert!(ca.pending().unwrap().is_empty());
    // The bundle on disk checks out, and the CA knows the device's message key.
    let loaded = Bundle::load(&bundle_dir, now()).unwrap();
    let devices = ca.devices().unwrap();
    assert_eq!(
        devices["counter-01"].message_public_key,
        hex::encode(loaded.message_key.verifying_key().as_bytes())
    );

    // Another device with the same claim is refused, and nothing changes.
    let before = std::fs::read(tmp.path().join("ca/state.json")).unwrap();
    let err = enrol_once(&on_device, &tmp.path().join("thief"))
        .await
        .err()
        .unwrap();
    assert!(matches!(err, ClientError::Refused(_)), "{err}");
    assert!(err.to_string().contains("already been used"), "{err}");
    assert_eq!(
        std::fs::read(tmp.path().join("ca/state.json")).unwrap(),
        before
    );
}

#[tokio::test]
async fn a_pre_approved_claim_needs_no_one() {
    let tmp = tempfile::tempdir().unwrap();
    let (ca, _) = serve(&tmp.path().join("ca"), "city-a").await;
    let claim = ca
        .create_claim("税務課 3番窓口", None, 3600, true, now())
        .unwrap();
    let bundle = tokio::task::spawn_blocking({
        let (file, dir) = (claim.file.clone(), tmp.path().join("bundle"));
        move || {
            enrol::enrol(
                &file,
                &dir,
                std::time::Duration::from_millis(100),
                std::time::Duration::from_secs(10),
            )
        }
    })
    .await
    .unwrap()
    .unwrap();
    assert_eq!(bundle.device.as_str(), claim.record.device);
    assert!(bundle.device.as_str().starts_with("ctr-"));
}

#[tokio::test]
async fn expired_foreign_and_mis_pinned_claims_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let (ca_a, _) = serve(&tmp.path().join("ca-a"), "city-a").await;
    let (ca_b, _) = serve(&tmp.path().join("ca-b"), "city-b").await;

    // Expired: created two hours ago, valid for one.
    let expired = ca_a
        .create_claim("市民課 2番窓口", None, 3600, true, now() - 7200)
        .unwrap();
    let err = enrol_once(&expired.file, &tmp.path().join("d1"))
        .await
        .err()
        .unwrap();
    assert!(err.to_string().contains("expired"), "{err}");

    // City-a's claim sent to city-b's service (its endpoint and CA swapped in).
    let a_claim = ca_a
        .create_claim("市民課 3番窓口", None, 3600, true, now())
        .unwrap();
    let mut misdirected = a_claim.file.clone();
    let b_claim = ca_b.create_claim("窓口", None, 3600, true, now()).unwrap();
    misdirected.endpoint = b_claim.file.endpoint.clone();
    misdirected.ca_fingerprint = b_claim.file.ca_fingerprint.clone();
    let err = enrol_once(&misdirected, &tmp.path().join("d2"))
        .await
        .err()
        .unwrap();
    assert!(
        err.to_string().contains("for tenant city-a") && err.to_string().contains("serves city-b"),
        "{err}"
    );
    // The same token under city-b's name: unknown there.
    misdirected.tenant = "city-b".into();
    let err = enrol_once(&misdirected, &tmp.path().join("d3"))
        .await
        .err()
        .unwrap();
    assert!(err.to_string().contains("unknown claim"), "{err}");

    // A claim whose pinned CA is not the service's: the device stops before sending.
    let mut mis_pinned = a_claim.file.clone();
    mis_pinned.endpoint = b_claim.file.endpoint.clone();
    let err = enrol_once(&mis_pinned, &tmp.path().join("d4"))
        .await
        .err()
        .unwrap();
    assert!(matches!(err, ClientError::WrongCa), "{err}");

    // None of these enrolled anything; the good claim still works.
    assert!(ca_a.devices().unwrap().is_empty());
    assert!(ca_b.devices().unwrap().is_empty());
    assert!(matches!(
        enrol_once(&a_claim.file, &tmp.path().join("d5"))
            .await
            .unwrap(),
        Progress::Enrolled(_)
    ));
}

#[tokio::test]
async fn a_replacement_box_takes_over_the_counter_and_the_old_one_is_revoked() {
    let tmp = tempfile::tempdir().unwrap();
    let (ca, _) = serve(&tmp.path().join("ca"), "city-a").await;
    ca.write_bundle(
        "counter-01",
        Some("市民課 1番窓口"),
        &tmp.path().join("old"),
        now(),
    )
    .unwrap();
    let crl_before = std::fs::read_to_string(tmp.path().join("ca/crl.pem")).unwrap();
    assert!(ca
        .create_replacement_claim("counter-99", None, 3600, false, now())
        .is_err());
    let claim = ca
        .create_replacement_claim("counter-01", Some("counter-01b"), 3600, false, now())
        .unwrap();
    assert_eq!(claim.record.counter, "市民課 1番窓口");
    let dir = tmp.path().join("new");
    let Progress::Pending { enrolment } = enrol_once(&claim.file, &dir).await.unwrap() else {
        panic!("enrolled without approval");
    };
    // Until the replacement is approved, the old box keeps working.
    assert!(ca.devices().unwrap()["counter-01"].revoked_at.is_none());
    ca.approve(&enrolment, now()).unwrap();
    let Progress::Enrolled(bundle) = enrol_once(&claim.file, &dir).await.unwrap() else {
        panic!("not enrolled");
    };
    assert_eq!(bundle.counter, "市民課 1番窓口");
    let devices = ca.devices().unwrap();
    assert!(devices["counter-01"].revoked_at.is_some());
    assert!(devices["counter-01b"].revoked_at.is_none());
    assert_ne!(
        std::fs::read_to_string(tmp.path().join("ca/crl.pem")).unwrap(),
        crl_before,
        "the CRL names the old box"
    );
}
