//! Device supervision with real peers: pcscd + vpcd with a virtual card, a real
//! ippeveprinter, a spool directory, and a scanner on a pseudo-terminal.

// Test helpers outside #[test] functions are not covered by allow-unwrap-in-tests.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use kakanai_appliance::devices::{
    Assembled, DeviceConfig, DeviceEvent, Devices, PrintAssembler, PrinterTarget,
};
use kakanai_hw::card::{Credential, ReadScope};
use kakanai_hw::vcard::{VirtualCard, VpcdLink};
use kakanai_protocol::catalogue::{DocumentSource, PrintJob, PrintState, Symbology};
use tokio::sync::mpsc;

const WAIT: Duration = Duration::from_secs(20);

fn job(id: &str, doc: &[u8], chunk: u32, chunks: u32, part: &[u8]) -> PrintJob {
    PrintJob {
        job_id: id.into(),
        title: "申請書 1/1".into(),
        media_type: "application/pdf".into(),
        size: doc.len() as u64,
        copies: 1,
        source: DocumentSource::Inline {
            data: part.to_vec(),
            chunk,
            chunks,
        },
    }
}

#[test]
fn chunks_are_reassembled_in_any_order_and_inconsistent_ones_refused() {
    let doc = b"%PDF-1.7 three parts".to_vec();
    let mut a = PrintAssembler::default();
    assert!(matches!(
        a.add(job("j", &doc, 2, 3, &doc[12..])),
        Assembled::Incomplete
    ));
    assert!(matches!(
        a.add(job("j", &doc, 0, 3, &doc[..6])),
        Assembled::Incomplete
    ));
    match a.add(job("j", &doc, 1, 3, &doc[6..12])) {
        Assembled::Whole { document, .. } => assert_eq!(document, doc),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        a.add(job("k", &doc, 3, 3, b"x")),
        Assembled::Refused { .. }
    ));
    assert!(matches!(
        a.add(job("l", &doc, 0, 1, b"short")),
        Assembled::Refused { .. }
    ));
}

async fn next(
    events: &mut mpsc::Receiver<DeviceEvent>,
    want: impl Fn(&DeviceEvent) -> bool,
) -> DeviceEvent {
    tokio::time::timeout(WAIT, async {
        loop {
            let e = events.recv().await.expect("devices alive");
            if want(&e) {
                return e;
            }
        }
    })
    .await
    .expect("the expected device event")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cards_are_seen_and_read_at_the_counter() {
    let pcscd = kakanai_test_peers::Pcscd::start().unwrap();
    let profile = Path::new(env!("CARGO_MANIFEST_DIR")).join("../hw/profiles/mynumber-sample.json");
    let card = VpcdLink::connect(
        ("127.0.0.1", pcscd.vpcd_port(0)),
        VirtualCard::from_file(&profile).unwrap(),
    )
    .unwrap();
    let (tx, mut events) = mpsc::channel(64);
    let devices = Devices::start(
        DeviceConfig {
            reader: Some(Some(pcscd.reader_name(0))),
            ..Default::default()
        },
        tx,
    );
    let e = next(&mut events, |e| {
        matches!(e, DeviceEvent::CardInserted { .. })
    })
    .await;
    let DeviceEvent::CardInserted { reader } = e else {
        unreachable!()
    };
    let read = devices
        .read_my_number_card(
            reader.clone(),
            Credential::pin("1234").unwrap(),
            ReadScope::FaceOnly,
        )
        .await
        .unwrap();
    assert_eq!(read.face.name.expose(), "見本　花子");
    card.remove();
    next(&mut events, |e| {
        matches!(e, DeviceEvent::CardRemoved { .. })
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn print_jobs_reach_the_printer_and_report_their_outcome() {
    let ok = Path::new("/bin/true");
    let printer =
        kakanai_test_peers::IppPrinter::start_with_command("kakanai-devices", ok).unwrap();
    let (tx, mut events) = mpsc::channel(64);
    let devices = Devices::start(
        DeviceConfig {
            printer: Some(PrinterTarget::Ipp(printer.uri())),
            ..Default::default()
        },
        tx,
    );
    let pdf = kakanai_hw::printer::test_page("Kakanai", 2000);
    let half = pdf.len() / 2;
    devices.print(job("job-7", &pdf, 1, 2, &pdf[half..]));
    devices.print(job("job-7", &pdf, 0, 2, &pdf[..half]));
    let e = next(&mut events, |e| matches!(e, DeviceEvent::Print(_))).await;
    let DeviceEvent::Print(status) = e else {
        unreachable!()
    };
    assert_eq!(status.job_id, "job-7");
    assert!(
        matches!(status.state, PrintState::Completed { .. }),
        "{status:?}"
    );
    printer.wait_for_jobs(1, Duration::from_secs(10)).unwrap();
    assert_eq!(std::fs::read(&printer.printed_files()[0]).unwrap(), pdf);

    // Not a PDF: refused with a reason, nothing printed.
    devices.print(job("job-8", b"hello", 0, 1, b"hello"));
    let e = next(&mut events, |e| matches!(e, DeviceEvent::Print(_))).await;
    assert!(
        matches!(e, DeviceEvent::Print(ref s) if matches!(s.state, PrintState::Failed { .. })),
        "{e:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_counter_without_a_printer_spools_or_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let (tx, mut events) = mpsc::channel(64);
    let spool = Devices::start(
        DeviceConfig {
            printer: Some(PrinterTarget::Spool(dir.path().into())),
            ..Default::default()
        },
        tx,
    );
    let pdf = kakanai_hw::printer::test_page("Kakanai", 100);
    spool.print(job("s1", &pdf, 0, 1, &pdf));
    let e = next(&mut events, |e| matches!(e, DeviceEvent::Print(_))).await;
    assert!(
        matches!(e, DeviceEvent::Print(ref s) if matches!(s.state, PrintState::Completed { .. })),
        "{e:?}"
    );
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);

    let (tx, mut events) = mpsc::channel(64);
    let none = Devices::start(DeviceConfig::default(), tx);
    none.print(job("n1", &pdf, 0, 1, &pdf));
    let e = next(&mut events, |e| matches!(e, DeviceEvent::Print(_))).await;
    assert!(
        matches!(e, DeviceEvent::Print(ref s) if matches!(s.state, PrintState::Failed { .. })),
        "{e:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scanned_codes_are_forwarded() {
    use nix::fcntl::OFlag;
    use nix::pty::{grantpt, posix_openpt, ptsname_r, unlockpt};
    let master = posix_openpt(OFlag::O_RDWR | OFlag::O_NOCTTY).unwrap();
    grantpt(&master).unwrap();
    unlockpt(&master).unwrap();
    let slave = ptsname_r(&master).unwrap();
    let (tx, mut events) = mpsc::channel(64);
    let _devices = Devices::start(
        DeviceConfig {
            scanner: Some(slave.into()),
            ..Default::default()
        },
        tx,
    );
    // Raw mode is set before "ready" is reported: write only after it.
    next(&mut events, |e| matches!(e, DeviceEvent::State(_))).await;
    let mut writer = master;
    writer
        .write_all("KAKANAI:申請書:42\r\n".as_bytes())
        .unwrap();
    let e = next(&mut events, |e| matches!(e, DeviceEvent::Scan(_))).await;
    let DeviceEvent::Scan(scan) = e else {
        unreachable!()
    };
    // Scanners send no AIM identifier unless configured to: symbology unknown.
    assert_eq!(scan.symbology, Symbology::Other);
    assert_eq!(scan.data, "KAKANAI:申請書:42".as_bytes());
}
