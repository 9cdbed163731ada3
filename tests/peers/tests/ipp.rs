//! ippeveprinter self-test: `ipptool` (an independent IPP client) prints a PDF, which
//! then shows up among the kept documents; with a print command (`-c`), the command's
//! exit status decides whether the job completes or is aborted.

// Helper functions outside #[test] panic on failure too, like the tests themselves.
#![allow(clippy::unwrap_used)]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::thread;
use std::time::{Duration, Instant};

use kakanai_test_peers::{port_accepts, IppPrinter, PeerError};

/// A minimal valid one-page PDF (the xref offsets are computed, not hand-counted).
fn tiny_pdf() -> Vec<u8> {
    let objects = [
        "<< /Type /Catalog /Pages 2 0 R >>",
        "<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 200 200] >>",
    ];
    let mut pdf = String::from("%PDF-1.4\n");
    let mut offsets = Vec::new();
    for (i, body) in objects.iter().enumerate() {
        offsets.push(pdf.len());
        pdf += &format!("{} 0 obj\n{body}\nendobj\n", i + 1);
    }
    let xref = pdf.len();
    pdf += &format!("xref\n0 {}\n0000000000 65535 f \n", objects.len() + 1);
    for o in offsets {
        pdf += &format!("{o:010} 00000 n \n");
    }
    pdf += &format!(
        "trailer\n<< /Size {} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n",
        objects.len() + 1
    );
    pdf.into_bytes()
}

#[test]
fn ipptool_print_job_is_kept() {
    let printer = IppPrinter::start(&format!("kakanai-selftest-{}", std::process::id())).unwrap();
    assert_eq!(
        printer.uri(),
        format!("ipp://localhost:{}/ipp/print", printer.port())
    );
    assert!(printer.printed_files().is_empty());

    let dir = tempfile::tempdir().unwrap();
    let pdf = dir.path().join("hello.pdf");
    let bytes = tiny_pdf();
    std::fs::write(&pdf, &bytes).unwrap();

    ipptool_print(&printer.uri(), &pdf);

    let files = printer.wait_for_jobs(1, Duration::from_secs(10)).unwrap();
    assert_eq!(files.len(), 1, "{files:?}");
    assert!(files[0].starts_with(printer.spool_dir()));
    assert_eq!(std::fs::read(&files[0]).unwrap(), bytes);

    let port = printer.port();
    drop(printer);
    assert!(!port_accepts(port), "printer still listening after drop");
}

/// Runs `ipptool -tv ARGS...` and checks that every test in it passed.
fn ipptool(args: &[&std::ffi::OsStr]) -> Output {
    let out = Command::new("ipptool")
        .arg("-tv")
        .args(args)
        .output()
        .expect("ipptool not found on PATH; run scripts/test, which installs it");
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Prints `file` to `uri` with `ipptool -tv -f FILE URI print-job.test`; returns the
/// job's URI.
fn ipptool_print(uri: &str, file: &Path) -> String {
    let out = ipptool(&[
        "-f".as_ref(),
        file.as_ref(),
        uri.as_ref(),
        "print-job.test".as_ref(),
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    attribute(&stdout, "job-uri").unwrap_or_else(|| panic!("no job-uri in:\n{stdout}"))
}

/// The value of attribute `name` in ipptool's verbose output (`name (type) = value`).
fn attribute(output: &str, name: &str) -> Option<String> {
    output.lines().find_map(|line| {
        let rest = line.trim().strip_prefix(name)?.strip_prefix(" (")?;
        Some(rest.split_once(") = ")?.1.to_owned())
    })
}

/// Polls Get-Job-Attributes (`ipptool -tv JOB-URI get-job-attributes.test`) until the
/// job has ended; returns its `job-state` and `job-state-reasons`.
fn wait_job_end(job_uri: &str, timeout: Duration) -> (String, String) {
    let deadline = Instant::now() + timeout;
    loop {
        let out = ipptool(&[job_uri.as_ref(), "get-job-attributes.test".as_ref()]);
        let stdout = String::from_utf8_lossy(&out.stdout);
        let state =
            attribute(&stdout, "job-state").unwrap_or_else(|| panic!("no job-state in:\n{stdout}"));
        if ["completed", "aborted", "canceled"].contains(&state.as_str()) {
            let reasons = attribute(&stdout, "job-state-reasons").unwrap_or_default();
            return (state, reasons);
        }
        assert!(
            Instant::now() < deadline,
            "job {job_uri} still {state} after {timeout:?}"
        );
        thread::sleep(Duration::from_millis(50));
    }
}

/// Writes `script` as an executable `/bin/sh` print command in `dir`.
fn print_command(dir: &Path, script: &str) -> PathBuf {
    let path = dir.join("print-command");
    std::fs::write(&path, format!("#!/bin/sh\n{script}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

#[test]
fn print_command_exit_0_completes_job_quickly_and_keeps_document() {
    let dir = tempfile::tempdir().unwrap();
    // Records its argument (the spooled document) to show that it ran.
    let ran = dir.path().join("ran");
    let command = print_command(
        dir.path(),
        &format!("printf '%s' \"$1\" > '{}'\nexit 0", ran.display()),
    );
    let printer = IppPrinter::start_with_command(
        &format!("kakanai-selftest-cmd-ok-{}", std::process::id()),
        &command,
    )
    .unwrap();
    let pdf = dir.path().join("hello.pdf");
    let bytes = tiny_pdf();
    std::fs::write(&pdf, &bytes).unwrap();

    let started = Instant::now();
    let job = ipptool_print(&printer.uri(), &pdf);
    let (state, reasons) = wait_job_end(&job, Duration::from_secs(10));
    assert_eq!(state, "completed", "{reasons}");
    assert_eq!(reasons, "job-completed-successfully");
    // Without a command, ippeveprinter spends at least 5 s on every job.
    let took = started.elapsed();
    assert!(took < Duration::from_secs(5), "took {took:?}");

    let files = printer.printed_files();
    assert_eq!(files.len(), 1, "{files:?}");
    assert!(files[0].starts_with(printer.spool_dir()));
    assert_eq!(std::fs::read(&files[0]).unwrap(), bytes);
    assert_eq!(
        PathBuf::from(std::fs::read_to_string(&ran).unwrap()),
        files[0]
    );

    let port = printer.port();
    drop(printer);
    assert!(!port_accepts(port), "printer still listening after drop");
}

#[test]
fn print_command_exit_1_aborts_job() {
    let dir = tempfile::tempdir().unwrap();
    let command = print_command(dir.path(), "exit 1");
    let printer = IppPrinter::start_with_command(
        &format!("kakanai-selftest-cmd-fail-{}", std::process::id()),
        &command,
    )
    .unwrap();
    let pdf = dir.path().join("hello.pdf");
    let bytes = tiny_pdf();
    std::fs::write(&pdf, &bytes).unwrap();

    let job = ipptool_print(&printer.uri(), &pdf);
    let (state, reasons) = wait_job_end(&job, Duration::from_secs(10));
    assert_eq!(state, "aborted", "{reasons}");
    assert_eq!(reasons, "aborted-by-system");
    // The document is kept whatever the outcome.
    let files = printer.printed_files();
    assert_eq!(files.len(), 1, "{files:?}");
    assert_eq!(std::fs::read(&files[0]).unwrap(), bytes);
}

#[test]
fn print_command_must_be_an_executable_file() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-such-command");
    let err = IppPrinter::start_with_command("kakanai-selftest-cmd-missing", &missing).unwrap_err();
    assert!(
        matches!(&err, PeerError::MissingFile { path, .. } if *path == missing),
        "{err:?}"
    );

    let not_executable = dir.path().join("not-executable");
    std::fs::write(&not_executable, "#!/bin/sh\nexit 0\n").unwrap();
    let err =
        IppPrinter::start_with_command("kakanai-selftest-cmd-noexec", &not_executable).unwrap_err();
    assert!(matches!(err, PeerError::MissingFile { .. }), "{err:?}");
    assert!(err.to_string().contains("executable"), "{err}");
}
