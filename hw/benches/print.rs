//! Printing a 200 KB PDF to a real ippeveprinter: the time to submit (Print-Job answered)
//! and the time to completion (submit + Get-Job-Attributes polling until completed).
//!
//! Both use an ippeveprinter started by `kakanai-test-peers` with the print command
//! `/bin/true` (`-c`): without a print command ippeveprinter "prints" by sleeping 5–15 s
//! at random and answers Print-Job with server-error-busy while it does, so neither
//! figure would measure our code. The harness keeps every document (`-k`) in the
//! printer's temporary spool until the printer is dropped at the end of the run (200 KB
//! per job). Run: `cargo bench -p kakanai-hw --bench print`.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::path::Path;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use kakanai_hw::printer::{test_page, IppPrinter, JobOutcome, PrintRequest, Printer};

fn bench(c: &mut Criterion) {
    let peer = kakanai_test_peers::IppPrinter::start_with_command(
        "kakanai-bench-print",
        Path::new("/bin/true"),
    )
    .unwrap();
    let printer = IppPrinter::new(&peer.uri()).unwrap();
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
