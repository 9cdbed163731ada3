//! Printing a 200 KB PDF to a real ippeveprinter: the time to submit (Print-Job answered)
//! and the time to completion (submit + Get-Job-Attributes polling until completed).
//!
//! Both use an ippeveprinter started here with `-c /bin/true`: without a print command
//! ippeveprinter "prints" by sleeping 5–15 s at random and answers Print-Job with
//! server-error-busy while it does, so neither figure would measure our code. Run:
//! `cargo bench -p kakanai-hw --bench print`.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use kakanai_hw::printer::{test_page, IppPrinter, JobOutcome, PrintRequest, Printer};

struct Peer {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Peer {
    fn start() -> Self {
        kakanai_test_peers::ipp::ensure_bus_daemons().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let port = kakanai_test_peers::free_port();
        // No -k: documents are deleted after each job, so the spool does not grow.
        let child = Command::new("ippeveprinter")
            .arg("-p")
            .arg(port.to_string())
            .args([
                "-n",
                "localhost",
                "-f",
                "application/pdf",
                "-c",
                "/bin/true",
                "-d",
            ])
            .arg(dir.path())
            .arg("kakanai-bench-print")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        while !kakanai_test_peers::port_accepts(port) {
            assert!(Instant::now() < deadline, "ippeveprinter did not start");
            thread::sleep(Duration::from_millis(25));
        }
        Self {
            child,
            port,
            _dir: dir,
        }
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn bench(c: &mut Criterion) {
    let peer = Peer::start();
    let printer = IppPrinter::new(&format!("ipp://localhost:{}/ipp/print", peer.port)).unwrap();
    let job = PrintRequest::new(test_page("Kakanai bench", 200 * 1024), "bench 1/1", 1).unwrap();
    let mut group = c.benchmark_group("print_200k");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(10));

    group.bench_function("submit", |b| {
        // Only the submit is timed; each job is then followed to its end (untimed) so
        // the next Print-Job does not meet a busy printer.
        b.iter_custom(|iters| {
            let mut timed = Duration::ZERO;
            for _ in 0..iters {
                let start = Instant::now();
                let handle = printer.submit(&job).unwrap();
                timed += start.elapsed();
                let outcome = printer.wait(&handle, Duration::from_secs(30)).unwrap();
                assert!(matches!(outcome, JobOutcome::Completed { .. }));
            }
            timed
        })
    });

    group.bench_function("to_completion", |b| {
        b.iter(|| {
            let handle = printer
                .submit_when_ready(&job, Duration::from_secs(30))
                .unwrap();
            let outcome = printer.wait(&handle, Duration::from_secs(30)).unwrap();
            assert!(matches!(outcome, JobOutcome::Completed { .. }));
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
