//! ippeveprinter self-test: `ipptool` (an independent IPP client) prints a PDF, which
//! then shows up among the kept documents.

// Helper functions outside #[test] panic on failure too, like the tests themselves.
#![allow(clippy::unwrap_used)]

use std::process::Command;
use std::time::Duration;

use kakanai_test_peers::{port_accepts, IppPrinter};

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

    let out = Command::new("ipptool")
        .arg("-tv")
        .arg("-f")
        .arg(&pdf)
        .arg(printer.uri())
        .arg("print-job.test")
        .output()
        .expect("ipptool not found on PATH; run scripts/test, which installs it");
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    let files = printer.wait_for_jobs(1, Duration::from_secs(10)).unwrap();
    assert_eq!(files.len(), 1, "{files:?}");
    assert!(files[0].starts_with(printer.spool_dir()));
    assert_eq!(std::fs::read(&files[0]).unwrap(), bytes);

    let port = printer.port();
    drop(printer);
    assert!(!port_accepts(port), "printer still listening after drop");
}
