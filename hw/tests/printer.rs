//! `kakanai_hw::printer` against a real `ippeveprinter` (through `kakanai-test-peers`),
//! scripted IPP servers for answers ippeveprinter cannot give (stopped, garbage), and
//! the spool printer.
//!
//! ippeveprinter facts these tests rely on (CUPS 2.4.2, `tools/ippeveprinter.c`):
//! - without `-c` it "prints" by sleeping 5–15 s (random) per job, one job at a time;
//! - it has no Pause-Printer/Resume-Printer/Set-Printer-Attributes (answers 0x0501);
//! - its web forms (on by default) change state: `GET /media?...` with a tray level of 0
//!   sets `media-empty`, and a job then waits in `processing` with `media-needed`;
//!   `GET /supplies?supply1=0` sets `toner-empty`;
//! - with `-c command`, a non-zero exit aborts the job (`aborted-by-system`), and
//!   `STATE: +keyword` / `ERROR: text` lines on the command's stderr set
//!   `printer-state-reasons` / `job-state-message`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use ipp::model::DelimiterTag;
use ipp::parser::IppParser;
use ipp::prelude::{IppAttribute, IppRequestResponse, IppValue, IppVersion, StatusCode};
use ipp::reader::IppReader;
use kakanai_hw::printer::{
    test_page, IppPrinter, JobOutcome, JobPhase, PrintError, PrintRequest, Printer,
    PrinterCondition, PrinterState, PrinterStatus, SpoolPrinter, MAX_DOCUMENT_BYTES,
};
use kakanai_protocol::catalogue::PrintState;

/// Long enough for ippeveprinter's 5–15 s simulated printing, on a loaded machine.
const JOB_TIMEOUT: Duration = Duration::from_secs(60);

fn request(bytes: Vec<u8>, name: &str) -> PrintRequest {
    PrintRequest::new(bytes, name, 1).unwrap()
}

#[test]
fn printer_prints_pdf_byte_identical() {
    let peer = kakanai_test_peers::IppPrinter::start("kakanai-test-print").unwrap();
    let printer = IppPrinter::new(&peer.uri()).unwrap();
    let pdf = test_page("Kakanai test page", 16 * 1024);
    let job = printer.submit(&request(pdf.clone(), "申請書 1/3")).unwrap();

    let outcome = printer.wait(&job, JOB_TIMEOUT).unwrap();
    assert_eq!(outcome, JobOutcome::Completed { pages: None });
    assert_eq!(
        PrintState::from(&outcome),
        PrintState::Completed { pages: None }
    );
    let state = printer.job_status(&job).unwrap();
    assert_eq!(state.phase, JobPhase::Completed);
    assert_eq!(state.reasons, ["job-completed-successfully"]);

    let files = peer.wait_for_jobs(1, Duration::from_secs(5)).unwrap();
    assert_eq!(files.len(), 1);
    assert_eq!(
        std::fs::read(&files[0]).unwrap(),
        pdf,
        "spooled file differs"
    );
}

#[test]
fn printer_status_idle_and_pause_is_not_supported() {
    let peer = kakanai_test_peers::IppPrinter::start("kakanai-test-status").unwrap();
    let printer = IppPrinter::new(&peer.uri()).unwrap();
    let status = printer.status().unwrap();
    assert_eq!(
        status,
        PrinterStatus::Online {
            state: PrinterState::Idle,
            conditions: vec![]
        }
    );
    assert!(status.can_print());
    assert_eq!(status.label_ja(), "待機中");
    // ippeveprinter has no Pause-Printer: the stopped state is covered by
    // `printer_scripted_answers_map_strictly` instead.
    assert!(matches!(
        printer.pause(),
        Err(PrintError::NotSupported("Pause-Printer"))
    ));
    assert!(matches!(
        printer.resume(),
        Err(PrintError::NotSupported("Resume-Printer"))
    ));
    assert_eq!(printer.status().unwrap().state(), Some(PrinterState::Idle));
}

/// `GET path` on ippeveprinter's web interface; returns the HTTP status line.
fn web_get(port: u16, path: &str) -> String {
    let mut s = TcpStream::connect(("localhost", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: localhost:{port}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut line = String::new();
    BufReader::new(&mut s).read_line(&mut line).unwrap();
    let mut rest = Vec::new();
    let _ = s.read_to_end(&mut rest);
    line.trim().to_owned()
}

/// The media form for ippeveprinter's trays (`media-source-supported` is
/// auto,main,manual,by-pass-tray; the form skips auto and manual): A4 in both, `main`
/// holding `main_level` sheets. Both trays keep a size on purpose: with no size at all,
/// `media-col-ready` becomes no-value and CUPS 2.4.2 then refuses every later form
/// ("No media-col-ready defined"), so the tray could never be refilled.
fn trays(main_level: u32) -> String {
    format!("/media?size1=iso_a4_210x297mm&level1={main_level}&size3=iso_a4_210x297mm&level3=25")
}

#[test]
fn printer_media_empty_holds_job_then_cancel() {
    let peer = kakanai_test_peers::IppPrinter::start("kakanai-test-media").unwrap();
    let printer = IppPrinter::new(&peer.uri()).unwrap();

    assert!(web_get(peer.port(), &trays(0)).contains("200"));
    let status = printer.status().unwrap();
    assert!(status.has(&PrinterCondition::MediaEmpty), "{status:?}");
    assert!(!status.can_print());
    assert!(
        status.label_ja().contains("用紙切れ"),
        "{}",
        status.label_ja()
    );

    // A job waits for paper: still processing at our deadline.
    let job = printer
        .submit(&request(test_page("waits", 4096), "申請書 1/1"))
        .unwrap();
    let outcome = printer.wait(&job, Duration::from_secs(2)).unwrap();
    match &outcome {
        JobOutcome::TimedOut { last } => assert_eq!(last.phase, JobPhase::Processing),
        other => panic!("expected TimedOut, got {other:?}"),
    }
    assert_eq!(PrintState::from(&outcome), PrintState::Printing);
    let status = printer.status().unwrap();
    assert_eq!(status.state(), Some(PrinterState::Processing));
    assert!(status.has(&PrinterCondition::MediaNeeded), "{status:?}");

    // Cancel while waiting for paper, then refill: the job ends cancelled.
    printer.cancel(&job).unwrap();
    assert!(web_get(peer.port(), &trays(250)).contains("200"));
    assert_eq!(
        printer.wait(&job, JOB_TIMEOUT).unwrap(),
        JobOutcome::Cancelled
    );
    assert!(matches!(
        printer.cancel(&job),
        Err(PrintError::JobFinished(_))
    ));
    let status = printer.status().unwrap();
    assert!(!status.has(&PrinterCondition::MediaEmpty), "{status:?}");

    // Toner: supply index 1 is the black toner.
    assert!(web_get(peer.port(), "/supplies?supply0=25&supply1=0").contains("200"));
    assert!(printer.status().unwrap().has(&PrinterCondition::TonerEmpty));
}

#[test]
fn printer_busy_then_retry_and_cancel_processing_job() {
    let peer = kakanai_test_peers::IppPrinter::start("kakanai-test-cancel").unwrap();
    let printer = IppPrinter::new(&peer.uri()).unwrap();
    let first = printer
        .submit(&request(test_page("first", 2048), "申請書 1/2"))
        .unwrap();
    // ippeveprinter takes one job at a time: Print-Job while printing is busy.
    let second = request(test_page("second", 2048), "申請書 2/2");
    assert!(matches!(printer.submit(&second), Err(PrintError::Busy)));
    let state = printer.job_status(&first).unwrap();
    assert_eq!(state.phase, JobPhase::Processing, "{state:?}");
    assert_eq!(PrintState::from(&state), PrintState::Printing);

    // Cancelling a processing job: ippeveprinter says processing-to-stop-point until
    // its simulated print ends, then cancelled.
    printer.cancel(&first).unwrap();
    assert_eq!(
        printer.wait(&first, JOB_TIMEOUT).unwrap(),
        JobOutcome::Cancelled
    );
    assert!(matches!(
        printer.cancel(&first),
        Err(PrintError::JobFinished(_))
    ));

    // Retrying submit gets the second job in once the printer is free.
    let handle = printer.submit_when_ready(&second, JOB_TIMEOUT).unwrap();
    assert_ne!(handle, first);
    assert!(matches!(
        printer.job_status(&kakanai_hw::printer::JobHandle::new(999)),
        Err(PrintError::UnknownJob(999))
    ));
}

/// An ippeveprinter (from the shared harness) whose print command is the `/bin/sh`
/// `script`, written into `dir`, which must outlive the printer.
fn command_printer(dir: &Path, name: &str, script: &str) -> kakanai_test_peers::IppPrinter {
    let command = dir.join("print-command");
    std::fs::write(&command, format!("#!/bin/sh\n{script}\n")).unwrap();
    std::fs::set_permissions(&command, std::fs::Permissions::from_mode(0o755)).unwrap();
    kakanai_test_peers::IppPrinter::start_with_command(name, &command).unwrap()
}

#[test]
fn printer_failing_job_is_aborted_with_reason() {
    let dir = tempfile::tempdir().unwrap();
    let peer = command_printer(
        dir.path(),
        "kakanai-test-fail",
        "echo 'STATE: +media-jam' >&2\necho 'ERROR: paper jam in tray 1' >&2\nexit 1",
    );
    let printer = IppPrinter::new(&peer.uri()).unwrap();
    let job = printer
        .submit(&request(test_page("fails", 4096), "申請書 1/1"))
        .unwrap();
    let outcome = printer.wait(&job, JOB_TIMEOUT).unwrap();
    match &outcome {
        JobOutcome::Aborted { reasons, message } => {
            assert_eq!(reasons, &["aborted-by-system"]);
            assert_eq!(message.as_deref(), Some("paper jam in tray 1"));
        }
        other => panic!("expected Aborted, got {other:?}"),
    }
    match PrintState::from(&outcome) {
        PrintState::Failed { reason } => {
            assert!(reason.contains("aborted-by-system"), "{reason}")
        }
        other => panic!("expected Failed, got {other:?}"),
    }
    let status = printer.status().unwrap();
    assert!(status.has(&PrinterCondition::MediaJam), "{status:?}");
    assert!(status.label_ja().contains("紙詰まり"));
}

#[test]
fn printer_with_command_completes_fast() {
    let dir = tempfile::tempdir().unwrap();
    let peer = command_printer(dir.path(), "kakanai-test-fast", "exit 0");
    let printer = IppPrinter::new(&peer.uri()).unwrap();
    let started = Instant::now();
    let job = printer
        .submit(&request(test_page("fast", 200 * 1024), "申請書 1/1"))
        .unwrap();
    assert_eq!(
        printer.wait(&job, JOB_TIMEOUT).unwrap(),
        JobOutcome::Completed { pages: None }
    );
    assert!(started.elapsed() < Duration::from_secs(5));
}

/// A port nothing listens on.
fn closed_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

#[test]
fn printer_unreachable_on_closed_port() {
    let printer = IppPrinter::new(&format!("ipp://127.0.0.1:{}/ipp/print", closed_port())).unwrap();
    assert_eq!(printer.status().unwrap(), PrinterStatus::Unreachable);
    assert_eq!(printer.status().unwrap().label_ja(), "接続できません");
    let job = request(test_page("x", 0), "申請書 1/1");
    assert!(matches!(
        printer.submit(&job),
        Err(PrintError::Unreachable { .. })
    ));
    let handle = kakanai_hw::printer::JobHandle::new(1);
    assert!(matches!(
        printer.job_status(&handle),
        Err(PrintError::Unreachable { .. })
    ));
    assert!(matches!(
        printer.wait(&handle, Duration::from_millis(300)),
        Err(PrintError::Unreachable { .. })
    ));
}

/// A TCP server whose connections are handled by `handle` on one thread each.
struct FakeServer {
    port: u16,
    connections: Arc<AtomicUsize>,
}

impl FakeServer {
    fn start(handle: impl Fn(TcpStream) + Send + Sync + 'static) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let connections = Arc::new(AtomicUsize::new(0));
        let count = connections.clone();
        let handle = Arc::new(handle);
        // The thread ends with the test process; the listener is never dropped.
        thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                count.fetch_add(1, Ordering::SeqCst);
                let handle = handle.clone();
                thread::spawn(move || handle(stream));
            }
        });
        Self { port, connections }
    }

    /// A server answering each IPP request with `answer(request)` (raw HTTP body).
    fn ipp(answer: impl Fn(&IppRequestResponse) -> Vec<u8> + Send + Sync + 'static) -> Self {
        Self::start(move |mut stream| {
            let Some(body) = read_http_request(&mut stream) else {
                return; // the reachability probe: connect and close
            };
            let request = IppParser::new(IppReader::new(std::io::Cursor::new(body)))
                .parse()
                .unwrap();
            let body = answer(&request);
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Type: application/ipp\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = stream.write_all(&body);
        })
    }

    fn uri(&self) -> String {
        format!("ipp://127.0.0.1:{}/ipp/print", self.port)
    }
}

/// Reads one HTTP request; returns its body (de-chunked), or None on EOF before a head.
fn read_http_request(stream: &mut TcpStream) -> Option<Vec<u8>> {
    let mut reader = BufReader::new(stream);
    let mut content_length = None;
    let mut chunked = false;
    let mut first = true;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).ok()? == 0 {
            return None;
        }
        if first {
            first = false;
            continue;
        }
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        let lower = line.to_ascii_lowercase();
        if let Some(v) = lower.strip_prefix("content-length:") {
            content_length = v.trim().parse::<usize>().ok();
        }
        if lower.starts_with("transfer-encoding:") && lower.contains("chunked") {
            chunked = true;
        }
    }
    let mut body = Vec::new();
    if chunked {
        loop {
            let mut size = String::new();
            reader.read_line(&mut size).ok()?;
            let size = usize::from_str_radix(size.trim(), 16).ok()?;
            let mut chunk = vec![0; size + 2];
            reader.read_exact(&mut chunk).ok()?;
            if size == 0 {
                break;
            }
            body.extend_from_slice(&chunk[..size]);
        }
    } else if let Some(n) = content_length {
        body.resize(n, 0);
        reader.read_exact(&mut body).ok()?;
    }
    Some(body)
}

fn response(request: &IppRequestResponse, status: StatusCode) -> IppRequestResponse {
    IppRequestResponse::new_response(IppVersion::v1_1(), status, request.header().request_id)
        .unwrap()
}

fn printer_answer(state: i32, reasons: &[&str]) -> impl Fn(&IppRequestResponse) -> Vec<u8> {
    let reasons: Vec<String> = reasons.iter().map(|s| s.to_string()).collect();
    move |req| {
        let mut resp = response(req, StatusCode::SuccessfulOk);
        let attrs = resp.attributes_mut();
        attrs.add(
            DelimiterTag::PrinterAttributes,
            IppAttribute::with_name("printer-state", IppValue::Enum(state)).unwrap(),
        );
        let values: Vec<IppValue> = reasons
            .iter()
            .map(|r| IppValue::new_keyword(r.as_str()).unwrap())
            .collect();
        attrs.add(
            DelimiterTag::PrinterAttributes,
            IppAttribute::with_name("printer-state-reasons", IppValue::Array(values)).unwrap(),
        );
        resp.to_bytes().to_vec()
    }
}

#[test]
fn printer_scripted_answers_map_strictly() {
    // Stopped, paused, media empty: what a real printer says after Pause-Printer with
    // an empty tray (ippeveprinter can say neither "stopped" nor "paused").
    let server = FakeServer::ipp(printer_answer(5, &["paused", "media-empty-error"]));
    let status = IppPrinter::new(&server.uri()).unwrap().status().unwrap();
    assert_eq!(
        status,
        PrinterStatus::Online {
            state: PrinterState::Stopped,
            conditions: vec![PrinterCondition::Paused, PrinterCondition::MediaEmpty]
        }
    );
    assert_eq!(status.label_ja(), "停止中（一時停止中・用紙切れ）");
    assert!(!status.can_print());

    let server = FakeServer::ipp(printer_answer(3, &["door-open", "offline", "frobnicated"]));
    let status = IppPrinter::new(&server.uri()).unwrap().status().unwrap();
    assert!(status.has(&PrinterCondition::DoorOpen));
    assert!(status.has(&PrinterCondition::Offline));
    assert!(status.has(&PrinterCondition::Other("frobnicated".into())));

    // printer-state out of range.
    let server = FakeServer::ipp(printer_answer(42, &[]));
    assert!(matches!(
        IppPrinter::new(&server.uri()).unwrap().status(),
        Err(PrintError::Malformed(_))
    ));

    // No printer-state at all.
    let server = FakeServer::ipp(|req| response(req, StatusCode::SuccessfulOk).to_bytes().to_vec());
    assert!(matches!(
        IppPrinter::new(&server.uri()).unwrap().status(),
        Err(PrintError::Malformed(_))
    ));

    // Reasons of the wrong type.
    let server = FakeServer::ipp(|req| {
        let mut resp = response(req, StatusCode::SuccessfulOk);
        resp.attributes_mut().add(
            DelimiterTag::PrinterAttributes,
            IppAttribute::with_name("printer-state", IppValue::Enum(3)).unwrap(),
        );
        resp.attributes_mut().add(
            DelimiterTag::PrinterAttributes,
            IppAttribute::with_name("printer-state-reasons", IppValue::Integer(7)).unwrap(),
        );
        resp.to_bytes().to_vec()
    });
    assert!(matches!(
        IppPrinter::new(&server.uri()).unwrap().status(),
        Err(PrintError::Malformed(_))
    ));

    // An answer to another request.
    let server = FakeServer::ipp(|req| {
        let mut resp = response(req, StatusCode::SuccessfulOk);
        resp.header_mut().request_id += 1;
        resp.to_bytes().to_vec()
    });
    assert!(matches!(
        IppPrinter::new(&server.uri()).unwrap().status(),
        Err(PrintError::Malformed(_))
    ));

    // IPP error statuses.
    let server = FakeServer::ipp(|req| {
        response(req, StatusCode::ServerErrorNotAcceptingJobs)
            .to_bytes()
            .to_vec()
    });
    let printer = IppPrinter::new(&server.uri()).unwrap();
    match printer.submit(&request(test_page("x", 0), "申請書 1/1")) {
        Err(PrintError::Refused {
            operation: "Print-Job",
            code: 0x0506,
            ..
        }) => {}
        other => panic!("expected Refused, got {other:?}"),
    }

    // Print-Job answered without a job-id, or with a negative one.
    let server = FakeServer::ipp(|req| response(req, StatusCode::SuccessfulOk).to_bytes().to_vec());
    assert!(matches!(
        IppPrinter::new(&server.uri())
            .unwrap()
            .submit(&request(test_page("x", 0), "申請書 1/1")),
        Err(PrintError::Malformed(_))
    ));
    let server = FakeServer::ipp(|req| {
        let mut resp = response(req, StatusCode::SuccessfulOk);
        resp.attributes_mut().add(
            DelimiterTag::JobAttributes,
            IppAttribute::with_name("job-id", IppValue::Integer(-4)).unwrap(),
        );
        resp.to_bytes().to_vec()
    });
    assert!(matches!(
        IppPrinter::new(&server.uri())
            .unwrap()
            .submit(&request(test_page("x", 0), "申請書 1/1")),
        Err(PrintError::Malformed(_))
    ));
}

#[test]
fn printer_garbage_answers_are_typed_errors() {
    // Not HTTP at all.
    let server = FakeServer::start(|mut stream| {
        if read_http_request(&mut stream).is_some() {
            let _ = stream.write_all(b"\x00\xffgarbage\r\n\r\nmore garbage");
        }
    });
    let printer = IppPrinter::new(&server.uri()).unwrap();
    let err = printer.status().unwrap_err();
    assert!(
        matches!(err, PrintError::Http(_) | PrintError::Malformed(_)),
        "{err:?}"
    );
    let err = printer
        .submit(&request(test_page("x", 0), "申請書 1/1"))
        .unwrap_err();
    assert!(
        matches!(err, PrintError::Http(_) | PrintError::Malformed(_)),
        "{err:?}"
    );

    // HTTP 200 with a body that is not IPP.
    let server = FakeServer::start(|mut stream| {
        if read_http_request(&mut stream).is_some() {
            let body = [
                0x01u8, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x01, 0x44, 0xff,
            ];
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Type: application/ipp\r\nContent-Length: {}\r\n\r\n",
                body.len()
            );
            let _ = stream.write_all(&body);
        }
    });
    let printer = IppPrinter::new(&server.uri()).unwrap();
    let err = printer.status().unwrap_err();
    assert!(
        matches!(err, PrintError::Malformed(_) | PrintError::Http(_)),
        "{err:?}"
    );

    // HTTP error status.
    let server = FakeServer::start(|mut stream| {
        if read_http_request(&mut stream).is_some() {
            let _ = stream.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n");
        }
    });
    let err = IppPrinter::new(&server.uri())
        .unwrap()
        .status()
        .unwrap_err();
    assert!(matches!(err, PrintError::Http(_)), "{err:?}");

    // Accepts, never answers: as good as unreachable for the staff screen.
    let server = FakeServer::start(|stream| {
        thread::sleep(Duration::from_secs(10));
        drop(stream);
    });
    let printer = IppPrinter::new(&server.uri())
        .unwrap()
        .with_answer_timeout(Duration::from_millis(500));
    assert_eq!(printer.status().unwrap(), PrinterStatus::Unreachable);
    assert!(matches!(
        printer.job_status(&kakanai_hw::printer::JobHandle::new(1)),
        Err(PrintError::NoAnswer { .. })
    ));
}

#[test]
fn printer_bad_input_rejected_before_network() {
    // A server that counts connections: none may be made for bad input.
    let server = FakeServer::start(|_| {});
    let printer = IppPrinter::new(&server.uri()).unwrap();
    assert!(matches!(
        PrintRequest::new(b"hello, not a pdf".to_vec(), "申請書 1/1", 1),
        Err(PrintError::NotPdf)
    ));
    assert!(matches!(
        PrintRequest::new(Vec::new(), "申請書 1/1", 1),
        Err(PrintError::NotPdf)
    ));
    let mut huge = test_page("big", 0);
    huge.resize(MAX_DOCUMENT_BYTES + 1, b' ');
    assert!(matches!(
        PrintRequest::new(huge, "申請書 1/1", 1),
        Err(PrintError::TooLarge { .. })
    ));
    assert!(matches!(
        PrintRequest::new(test_page("x", 0), "", 1),
        Err(PrintError::BadJobName(_))
    ));
    assert!(matches!(
        PrintRequest::new(test_page("x", 0), "a\nb", 1),
        Err(PrintError::BadJobName(_))
    ));
    assert!(matches!(
        PrintRequest::new(test_page("x", 0), "申請書", 0),
        Err(PrintError::BadCopies { .. })
    ));
    for uri in [
        "http://localhost/ipp/print",
        "ipps://localhost/ipp/print",
        "ipp:///ipp/print",
        "not a uri",
    ] {
        assert!(
            matches!(IppPrinter::new(uri), Err(PrintError::BadUri { .. })),
            "{uri}"
        );
    }
    thread::sleep(Duration::from_millis(100));
    assert_eq!(server.connections.load(Ordering::SeqCst), 0);
    drop(printer);

    // Debug never shows the document.
    let req = request(test_page("SECRET-CONTENT", 0), "申請書 1/1");
    let debug = format!("{req:?}");
    assert!(!debug.contains("SECRET"), "{debug}");
    assert!(debug.contains("document_bytes"));
}

#[test]
fn printer_spool_writes_numbered_files() {
    let dir = tempfile::tempdir().unwrap();
    let spool_dir = dir.path().join("out");
    let printer = SpoolPrinter::new(&spool_dir).unwrap();
    assert!(printer.status().unwrap().can_print());
    let a = test_page("one", 1024);
    let b = test_page("two", 3000);
    let ja = printer.submit(&request(a.clone(), "申請書 1/2")).unwrap();
    let jb = printer.submit(&request(b.clone(), "申請書 2/2")).unwrap();
    assert_eq!((ja.id(), jb.id()), (1, 2));
    assert_eq!(
        printer.wait(&jb, Duration::from_secs(1)).unwrap(),
        JobOutcome::Completed { pages: None }
    );
    assert_eq!(printer.job_status(&ja).unwrap().phase, JobPhase::Completed);
    assert_eq!(std::fs::read(spool_dir.join("000001.pdf")).unwrap(), a);
    assert_eq!(std::fs::read(printer.job_path(&jb)).unwrap(), b);
    assert!(matches!(
        printer.cancel(&ja),
        Err(PrintError::JobFinished(1))
    ));
    assert!(matches!(
        printer.job_status(&kakanai_hw::printer::JobHandle::new(9)),
        Err(PrintError::UnknownJob(9))
    ));
    // No temporary files left behind.
    assert_eq!(files_in(&spool_dir), ["000001.pdf", "000002.pdf"]);

    // A new printer on the same directory continues the numbering.
    let again = SpoolPrinter::new(&spool_dir).unwrap();
    let jc = again.submit(&request(a, "申請書 1/1")).unwrap();
    assert_eq!(jc.id(), 3);

    // The directory disappearing reads as unplugged.
    std::fs::remove_dir_all(&spool_dir).unwrap();
    assert_eq!(again.status().unwrap(), PrinterStatus::Unreachable);
    assert!(matches!(
        again.submit(&request(test_page("x", 0), "申請書 1/1")),
        Err(PrintError::Io { .. })
    ));
}

fn files_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

#[test]
fn printer_test_page_is_valid_pdf() {
    let dir = tempfile::tempdir().unwrap();
    for size in [0, 5000, 200 * 1024] {
        let path = dir.path().join(format!("{size}.pdf"));
        std::fs::write(&path, test_page("Kakanai", size)).unwrap();
        // pdfinfo (poppler-utils) is strict about the cross-reference table.
        let out = Command::new("pdfinfo").arg(&path).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success() && stderr.trim().is_empty(), "{stderr}");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            stdout
                .lines()
                .any(|l| l.split_whitespace().collect::<Vec<_>>() == ["Pages:", "1"]),
            "{stdout}"
        );
    }
}
