//! The scanner reader through a real pseudo-terminal: the test writes to the pty's
//! master as a scanner would, the reader opens the slave by its path (through a
//! symlink, so a "re-plugged" scanner can come back as a new pty at the same path).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use kakanai_hw::scanner::{
    Backoff, RejectReason, Scan, Scanner, ScannerConfig, ScannerEvent, ScannerHandle,
};
use kakanai_protocol::catalogue::Symbology;
use nix::fcntl::OFlag;
use nix::pty::{grantpt, posix_openpt, ptsname_r, unlockpt, PtyMaster};

/// Long enough for a loaded 2-core machine; a failure shows as a timeout, not a hang.
const WAIT: Duration = Duration::from_secs(10);

/// A fake scanner: the master side of a pty, its slave reachable through `link`.
struct FakeScanner {
    master: PtyMaster,
}

impl FakeScanner {
    /// A new pty whose slave `link` points at (replacing any previous link).
    fn plug_in(link: &Path) -> Self {
        let master = posix_openpt(OFlag::O_RDWR | OFlag::O_NOCTTY).unwrap();
        grantpt(&master).unwrap();
        unlockpt(&master).unwrap();
        let slave = ptsname_r(&master).unwrap();
        let _ = std::fs::remove_file(link);
        std::os::unix::fs::symlink(&slave, link).unwrap();
        FakeScanner { master }
    }

    fn send(&mut self, bytes: &[u8]) {
        self.master.write_all(bytes).unwrap();
        self.master.flush().unwrap();
    }

    /// Unplugs: the link goes, and closing the master hangs up the slave (EIO).
    fn unplug(self, link: &Path) {
        std::fs::remove_file(link).unwrap();
        drop(self.master);
    }
}

struct Rig {
    _dir: tempfile::TempDir,
    link: PathBuf,
    scanner: Option<FakeScanner>,
    handle: ScannerHandle,
}

impl Rig {
    /// A plugged-in fake scanner and a reader on it, connected.
    fn new(configure: impl FnOnce(&mut ScannerConfig)) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let link = dir.path().join("scanner");
        let scanner = FakeScanner::plug_in(&link);
        let mut config = ScannerConfig::new(&link);
        config.backoff =
            Backoff::new(Duration::from_millis(10), Duration::from_millis(100), 0.5).unwrap();
        config.poll_interval = Duration::from_millis(20);
        configure(&mut config);
        let handle = Scanner::spawn(config).unwrap();
        let rig = Rig {
            _dir: dir,
            link,
            scanner: Some(scanner),
            handle,
        };
        // Only write once the reader has put the slave in raw mode: bytes written
        // before are cooked by the default line discipline (CR turned into LF, echo).
        assert_eq!(rig.next(), ScannerEvent::Connected);
        rig
    }

    fn send(&mut self, bytes: &[u8]) {
        self.scanner.as_mut().unwrap().send(bytes);
    }

    fn next(&self) -> ScannerEvent {
        self.handle
            .recv_timeout(WAIT)
            .expect("no scanner event in time")
    }

    fn next_code(&self) -> Scan {
        match self.next() {
            ScannerEvent::Code(scan) => scan,
            other => panic!("expected a code, got {other:?}"),
        }
    }

    fn next_rejection(&self) -> RejectReason {
        match self.next() {
            ScannerEvent::Rejected { reason } => reason,
            other => panic!("expected a rejection, got {other:?}"),
        }
    }

    fn assert_quiet(&self) {
        if let Ok(event) = self.handle.recv_timeout(Duration::from_millis(200)) {
            panic!("unexpected event {event:?}");
        }
    }
}

#[test]
fn scanner_delivers_qr_text_with_crlf_exactly() {
    let mut rig = Rig::new(|_| {});
    let text = "KAKANAI:1|転入届|山田 太郎|東京都千代田区千代田1-1";
    rig.send(format!("{text}\r\n").as_bytes());
    let scan = rig.next_code();
    assert_eq!(scan.data, text.as_bytes());
    assert_eq!(scan.symbology, Symbology::Other);
    rig.send(b"ABC-123\r\n");
    assert_eq!(rig.next_code().data, b"ABC-123");
    // The LF of each CRLF made an empty line, which is ignored.
    rig.assert_quiet();
}

#[test]
fn scanner_splits_several_codes_in_one_write_and_joins_a_code_split_across_writes() {
    let mut rig = Rig::new(|_| {});
    rig.send(b"first\r\nsecond\r\nthird\r\n");
    for expected in [&b"first"[..], b"second", b"third"] {
        assert_eq!(rig.next_code().data, expected);
    }
    let text = "分割された二次元コード".as_bytes();
    // Split inside a multi-byte character and between CR and LF.
    rig.send(&text[..7]);
    std::thread::sleep(Duration::from_millis(60));
    rig.send(&text[7..]);
    rig.send(b"\r");
    std::thread::sleep(Duration::from_millis(60));
    rig.send(b"\nnext\r\n");
    assert_eq!(rig.next_code().data, text);
    assert_eq!(rig.next_code().data, b"next");
    rig.assert_quiet();
}

#[test]
fn scanner_maps_and_strips_aim_prefixes() {
    let mut rig = Rig::new(|c| c.framing.aim_prefix = true);
    rig.send("]Q1申請書\r\n]C0ABC123\r\n]E012345678\r\nno-prefix\r\n".as_bytes());
    let qr = rig.next_code();
    assert_eq!((qr.symbology, qr.data), (Symbology::Qr, "申請書".into()));
    let code128 = rig.next_code();
    assert_eq!(
        (code128.symbology, code128.data),
        (Symbology::Code128, b"ABC123".to_vec())
    );
    let ean = rig.next_code();
    assert_eq!(
        (ean.symbology, ean.data),
        (Symbology::Other, b"12345678".to_vec())
    );
    let plain = rig.next_code();
    assert_eq!(
        (plain.symbology, plain.data),
        (Symbology::Other, b"no-prefix".to_vec())
    );
}

#[test]
fn scanner_rejects_an_overlong_line_and_keeps_the_next() {
    let mut rig = Rig::new(|c| c.framing.max_len = 64);
    rig.send(&[b'x'; 64]);
    rig.send(b"\r\n");
    assert_eq!(rig.next_code().data, vec![b'x'; 64]);
    // 1000 bytes in several writes, longer than the pty's buffer would take at once.
    for _ in 0..10 {
        rig.send(&[b'y'; 100]);
    }
    rig.send(b"\r\nafter\r\n");
    assert_eq!(
        rig.next_rejection(),
        RejectReason::Overlong {
            len: 1000,
            max_len: 64
        }
    );
    assert_eq!(rig.next_code().data, b"after");
    rig.assert_quiet();
}

#[test]
fn scanner_rejects_binary_garbage_and_keeps_the_next() {
    let mut rig = Rig::new(|_| {});
    rig.send(b"ab\x00\x01cd\r\n");
    assert_eq!(
        rig.next_rejection(),
        RejectReason::ControlByte {
            byte: 0,
            offset: 2,
            len: 6
        }
    );
    rig.send(b"\xff\xfe\x80garbage\r\nok\r\n");
    assert_eq!(
        rig.next_rejection(),
        RejectReason::InvalidUtf8 {
            valid_up_to: 0,
            len: 10
        }
    );
    assert_eq!(rig.next_code().data, b"ok");
    // Tabs separate a form's fields: allowed by default.
    rig.send(b"a\tb\r\n");
    assert_eq!(rig.next_code().data, b"a\tb");
}

#[test]
fn scanner_reports_disconnection_and_reconnects_to_a_new_device_at_the_same_path() {
    let mut rig = Rig::new(|_| {});
    rig.send(b"before\r\n");
    assert_eq!(rig.next_code().data, b"before");

    // Unplugged in the middle of a line.
    rig.send(b"half");
    std::thread::sleep(Duration::from_millis(100));
    rig.scanner.take().unwrap().unplug(&rig.link);
    assert_eq!(rig.next_rejection(), RejectReason::Incomplete { len: 4 });
    assert_eq!(rig.next(), ScannerEvent::Disconnected);
    // Absent for a while: several failed reopen attempts, no event.
    rig.assert_quiet();

    rig.scanner = Some(FakeScanner::plug_in(&rig.link));
    assert_eq!(rig.next(), ScannerEvent::Connected);
    rig.send(b"after\r\n");
    assert_eq!(rig.next_code().data, b"after");
}

#[test]
fn scanner_waits_for_a_device_absent_at_start_and_stops_promptly() {
    let dir = tempfile::tempdir().unwrap();
    let link = dir.path().join("scanner");
    let mut config = ScannerConfig::new(&link);
    config.backoff =
        Backoff::new(Duration::from_millis(10), Duration::from_millis(50), 0.0).unwrap();
    config.poll_interval = Duration::from_millis(20);
    let handle = Scanner::spawn(config).unwrap();
    assert!(handle.recv_timeout(Duration::from_millis(200)).is_err());
    let mut scanner = FakeScanner::plug_in(&link);
    assert_eq!(handle.recv_timeout(WAIT).unwrap(), ScannerEvent::Connected);
    scanner.send(b"late\r\n");
    match handle.recv_timeout(WAIT).unwrap() {
        ScannerEvent::Code(scan) => assert_eq!(scan.data, b"late"),
        other => panic!("expected a code, got {other:?}"),
    }
    // Stopping while connected and idle (blocked in a read) takes about one poll.
    let started = std::time::Instant::now();
    handle.stop();
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "stop took {:?}",
        started.elapsed()
    );
}

#[test]
fn scanner_debug_never_shows_the_code() {
    let scan = Scan {
        data: "山田太郎".as_bytes().to_vec(),
        symbology: Symbology::Qr,
    };
    let shown = format!("{scan:?} {:?}", ScannerEvent::Code(scan.clone()));
    assert!(!shown.contains("山田"), "{shown}");
    assert!(shown.contains("data_len: 12"), "{shown}");
}

#[test]
fn scanner_config_is_validated() {
    let mut config = ScannerConfig::new("/dev/null-scanner");
    config.framing.max_len = 0;
    assert!(Scanner::spawn(config).is_err());
    let mut config = ScannerConfig::new("/dev/null-scanner");
    config.poll_interval = Duration::ZERO;
    assert!(Scanner::spawn(config).is_err());
}
