//! Printing a move-in visit end to end: the control plane renders the procedure
//! guide and every form of a family of four as one PDF (`kakanai-documents`), sends
//! it to the counter's appliance as signed `print-job` chunks through a real
//! Mosquitto, the appliance prints it on a real IPP printer (`ippeveprinter`), reports
//! the job completed, and the applications become `printed` with the PDF's hash. The
//! printed file in the printer's spool is read back with `pdftotext`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::*;

use std::sync::Arc;
use std::time::Duration;

use kakanai_appliance::devices::{DeviceConfig, DeviceEvent, Devices, PrinterTarget};
use kakanai_appliance::link::{self, LinkEvent};
use kakanai_appliance::store::ApplianceStore;
use kakanai_control_plane::applications::print::Printing;
use kakanai_control_plane::applications::{self, Act, ApplicationState, NewApplication};
use kakanai_control_plane::model::{Actor, Place};
use kakanai_control_plane::service::{self, BrokerConfig, ServiceConfig};
use kakanai_documents::{Engine, EngineConfig};
use kakanai_protocol::catalogue::Body;
use kakanai_test_peers::{IppPrinter, Mosquitto};
use tokio::sync::mpsc;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_move_in_visit_prints_at_the_counter_and_its_applications_become_printed() {
    let broker = Mosquitto::start().unwrap();
    let printer = IppPrinter::start("kakanai-e2e-print").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (store, url) = store_with_device(dir.path()).await;
    let cp = cp_key();
    let config = ServiceConfig::new(
        dir.path().join("cp"),
        url,
        BrokerConfig::external(broker.host(), broker.port(), "cp-e2e-print"),
        cp,
        vec![tenant()],
    );
    let running = service::start(config, service::ServiceOptions::default())
        .await
        .unwrap();
    assert!(running.service().wait_subscribed(WAIT).await);

    // The appliance: its link, its printer, and the daemon's wiring between them.
    let appliance_store =
        Arc::new(ApplianceStore::open(&dir.path().join("appliance.redb")).unwrap());
    let (link, mut events, _) = link::start(link_config(broker.port()), appliance_store)
        .await
        .unwrap();
    assert!(link.wait_online(WAIT).await);
    let (device_tx, mut device_events) = mpsc::channel(64);
    let devices = Arc::new(Devices::start(
        DeviceConfig {
            reader: None,
            printer: Some(PrinterTarget::Ipp(printer.uri())),
            scanner: None,
        },
        device_tx,
    ));
    let for_commands = Arc::clone(&devices);
    tokio::spawn(async move {
        while let Some(event) = events.recv().await {
            if let LinkEvent::Command(envelope) = event {
                if let Body::PrintJob(job) = envelope.body {
                    for_commands.print(job);
                }
            }
        }
    });
    let reporter = link.clone();
    tokio::spawn(async move {
        while let Some(event) = device_events.recv().await {
            if let DeviceEvent::Print(p) = event {
                reporter.send(Body::PrintStatus(p)).await.unwrap();
            }
        }
    });

    // A move-in visit of a family of four: the guide and twelve forms.
    let visit = applications::start_visit(
        &store,
        &tenant(),
        "counter-01",
        "k-tanaka",
        "move_in",
        now_ms(),
    )
    .await
    .unwrap();
    let (guide, forms) = kakanai_documents::sample::move_in_visit(1);
    let mut numbers = Vec::new();
    for (i, (form, data)) in forms.iter().enumerate() {
        let app = store
            .create_application(
                &tenant(),
                &NewApplication {
                    id: format!("app-{i}"),
                    visit: visit.id.clone(),
                    form: (*form).to_owned(),
                    procedure: None,
                    certificate: None,
                    subject: None,
                    data: data.clone(),
                    my_number_sealed: None,
                },
                &Actor::Staff("k-tanaka".into()),
                &Place::Appliance("counter-01".into()),
                now_ms(),
            )
            .await
            .unwrap();
        numbers.push(app.number);
    }

    let engine = Arc::new(Engine::new(EngineConfig::default()).unwrap());
    let printing = Printing::new(engine, store.clone(), running.service().clone());
    let (done_tx, done_rx) = tokio::sync::oneshot::channel();
    let receipt = printing
        .print(
            &tenant(),
            &device(),
            &numbers,
            Some(&guide),
            Act::staff_at("k-tanaka", "counter-01", now_ms()),
            Some(done_tx),
        )
        .await
        .unwrap();
    assert!(receipt.pages >= 13, "guide and twelve forms: {receipt:?}");
    assert!(
        receipt.bytes > 192 * 1024,
        "big enough to travel in several chunks"
    );
    tokio::time::timeout(Duration::from_secs(120), done_rx)
        .await
        .expect("the printer reported in time")
        .unwrap()
        .expect("the job completed");

    // Every application is printed, with the bundle's hash and page count.
    for number in &numbers {
        let app = store
            .application_by_number(&tenant(), number)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(app.state, ApplicationState::Printed, "{number}");
        assert_eq!(app.pdf_sha256.as_deref(), Some(receipt.sha256.as_str()));
        assert_eq!(app.pdf_pages, Some(receipt.pages as u32));
    }

    // The printer got the document the control plane rendered.
    let files = printer.wait_for_jobs(1, Duration::from_secs(60)).unwrap();
    let text = std::process::Command::new("pdftotext")
        .arg("-layout")
        .arg(&files[0])
        .arg("-")
        .output()
        .unwrap();
    assert!(
        text.status.success(),
        "pdftotext must be installed (poppler-utils)"
    );
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains("手続きのご案内"), "the guide is printed");
    for number in &numbers {
        assert!(
            text.contains(number.as_str()),
            "application number {number} on its form"
        );
    }
    let name = forms[0].1["subject"]["name"].as_str().unwrap();
    let surname = name.split([' ', '\u{3000}']).next().unwrap();
    assert!(
        text.contains(surname),
        "the resident's name is on the forms"
    );
    assert!(
        text.contains("令和") || text.contains("平成") || text.contains("昭和"),
        "和暦 dates"
    );

    running.shutdown().await;
}
