//! The counter, end to end, across separate processes (issue 9): the control plane
//! (`kakanai-control-plane serve`, SQLite) with a synthetic city imported, Mosquitto,
//! the appliance (`kakanai-appliance`) provisioned with `kakanai-provision`, pcscd +
//! vpcd with the demo people's virtual My Number cards, `ippeveprinter`, a pty
//! scanner, and headless Chromium as the staff's tablet (all through
//! `kakanai_tests::stack`).
//!
//! Two visits, as staff do them: a certificate request (card + PIN → 住民票 ×2 →
//! print → scan the signed form → accepted) and a 転入 of a family of four with their
//! cards (one card finds the family in the 転出証明書情報, the other three cards are
//! read too → questions → procedure list → print every form and the guide in one go →
//! scan every signed form → accepted → exported). The printed PDFs are read back from
//! the printer's spool with `pdftotext`: they must carry the right names, addresses and
//! 和暦 dates.
//!
//! Figures (printed with `-- --nocapture`): staff taps and keystrokes of the 転入, PIN
//! → filled screen, print tap → job completed. With `KAKANAI_SCREENSHOTS=1` every
//! screen is saved under `docs/screenshots/counter-*.png`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use kakanai_test_peers::Tablet;
use kakanai_tests::stack::{self, Broker, Stack, StackOptions};

/// A demo person, from the virtual card profile `gen-city` wrote.
#[derive(Debug, Clone)]
struct Person {
    name: String,
    address: String,
    birth_date: String,
}

fn person(profile: &Path) -> Person {
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(profile).unwrap()).unwrap();
    let s = |k: &str| v[k].as_str().unwrap_or_default().to_owned();
    Person {
        name: s("name"),
        address: s("address"),
        birth_date: s("birth_date"),
    }
}

/// Text without any white space (pdftotext lays text out with its own spaces), with
/// full-width ASCII (a card's address: ２丁目１６番) as half-width.
fn squeeze(s: &str) -> String {
    s.chars()
        .filter(|c| !c.is_whitespace() && *c != '\u{3000}')
        .map(|c| match c {
            '\u{FF01}'..='\u{FF5E}' => char::from_u32(c as u32 - 0xFEE0).unwrap_or(c),
            _ => c,
        })
        .collect()
}

/// Whether the printed text carries the name: family and given name each (a form
/// prints the reading above the name, so pdftotext interleaves the two).
fn has_name(text: &str, name: &str) -> bool {
    name.split('\u{3000}')
        .all(|part| text.contains(&squeeze(part)))
}

fn wareki(iso: &str) -> String {
    kakanai_documents::wareki::format(iso).unwrap()
}

fn pdf_text(path: &Path) -> String {
    let out = std::process::Command::new("pdftotext")
        .args(["-enc", "UTF-8"])
        .arg(path)
        .arg("-")
        .output()
        .expect("pdftotext must be installed (poppler-utils)");
    assert!(out.status.success(), "pdftotext {}", path.display());
    String::from_utf8(out.stdout).unwrap()
}

fn screenshots() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/screenshots")
}

fn bin_dir() -> PathBuf {
    // The test binary is target/debug/deps/e2e_counter-…: the binaries are in
    // target/debug (built by `cargo test --workspace`, or built here when missing).
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().unwrap().parent().unwrap().to_path_buf();
    let missing = [
        "kakanai-control-plane",
        "kakanai-appliance",
        "kakanai-provision",
    ]
    .iter()
    .any(|b| !dir.join(b).is_file());
    if missing {
        let status = std::process::Command::new(env!("CARGO"))
            .args([
                "build",
                "--quiet",
                "-p",
                "kakanai-control-plane",
                "-p",
                "kakanai-appliance",
                "-p",
                "kakanai-provisioning",
            ])
            .current_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join(".."))
            .status()
            .unwrap();
        assert!(status.success(), "building the binaries");
    }
    dir
}

/// Prints the tail of both logs when the test fails.
struct LogsOnFailure<'a>(&'a Stack);

impl Drop for LogsOnFailure<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let tail = |log: String| {
                let lines: Vec<&str> = log.lines().collect();
                lines[lines.len().saturating_sub(40)..].join("\n")
            };
            eprintln!(
                "--- control plane log (tail)\n{}",
                tail(self.0.control_plane_log())
            );
            eprintln!("--- appliance log (tail)\n{}", tail(self.0.appliance_log()));
        }
    }
}

fn start_stack() -> Stack {
    let mut opts = StackOptions::new(bin_dir());
    opts.broker = Broker::Mosquitto;
    opts.residents = 3_000;
    opts.seed = 7;
    opts.fast_printer = true;
    Stack::start(&opts, &mut |step| eprintln!("stack: {step}")).unwrap_or_else(|e| panic!("{e:#}"))
}

async fn log_in(tablet: &Tablet, stack: &Stack) {
    tablet.goto(&format!("{}login", stack.tablet_url())).await;
    tablet.type_into("#staff_id", stack::STAFF_LOGIN).await;
    tablet.type_into("#password", stack::STAFF_PASSWORD).await;
    tablet.tap("button[type=submit]").await;
    tablet
        .wait_for("location.pathname === '/' && !!document.querySelector('[data-start]')")
        .await;
}

const STEP: &str = "(document.querySelector('[data-step]') || {dataset: {}}).dataset.step";
const CARD_STATE: &str =
    "(document.querySelector('[data-card-state]') || {dataset: {}}).dataset.cardState";

async fn wait_step(tablet: &Tablet, step: &str) {
    tablet
        .wait_for(&format!(
            "{STEP} === {step:?} && (document.querySelector('[data-step]').dataset.busy !== 'true')"
        ))
        .await;
}

/// Reads the card on the reader with the PIN typed on the tablet (by the resident:
/// those taps are not counted as staff's) and takes the person into the visit.
/// Returns (PIN entered → filled screen, the resident's taps).
async fn read_card(tablet: &Tablet, shot: Option<&str>, into_visit: bool) -> (Duration, usize) {
    tablet.tap("[data-act=\"read-card\"]").await;
    tablet.wait_for(&format!("{CARD_STATE} === 'ready'")).await;
    let taps = tablet.taps();
    tablet.tap_digits("pin", stack::DEMO_PIN).await;
    let started = Instant::now();
    tablet
        .tap("form[data-keypad=pin] [data-action=submit]")
        .await;
    if into_visit {
        // A 転入: the card is taken into the visit at once and the screen goes back.
        // Two RPCs (card lookup, family lookup) and a page load: allow for a loaded
        // machine.
        tablet
            .wait_for_within(
                "location.pathname === '/visit' && !!document.querySelector('[data-step]') && document.querySelector('[data-step]').dataset.busy !== 'true'",
                Duration::from_secs(30),
            )
            .await;
    } else {
        tablet
            .wait_for(&format!(
                "{CARD_STATE} === 'read' && !!document.querySelector('[data-lookup]:not([data-lookup=pending])')"
            ))
            .await;
    }
    let filled = started.elapsed();
    // The resident's PIN taps (and the submit) are not staff's.
    let resident_taps = tablet.taps() - taps;
    if let Some(name) = shot {
        tablet.screenshot(&screenshots(), name).await;
    }
    (filled, resident_taps)
}

/// The application numbers the scan step lists.
async fn application_numbers(tablet: &Tablet) -> Vec<String> {
    tablet
        .eval(
            "[...document.querySelectorAll('[data-application]')].map(e => e.dataset.application)",
        )
        .await
}

/// Prints, waits for the job, scans every signed form and waits until all are
/// accepted. Returns (print tap → job completed, numbers).
async fn print_and_scan(tablet: &Tablet, stack: &Stack, shot: &str) -> (Duration, Vec<String>) {
    let started = Instant::now();
    tablet.tap("[data-act=\"print\"]").await;
    tablet
        .wait_for_within(
            "(document.querySelector('#print') || {dataset: {}}).dataset.print === 'completed' || !!document.querySelector('#scan-prompt')",
            Duration::from_secs(90),
        )
        .await;
    let printed = started.elapsed();
    tablet
        .screenshot(&screenshots(), &format!("{shot}-printed"))
        .await;
    tablet
        .wait_for("!!document.querySelector('[data-application]')")
        .await;
    let numbers = application_numbers(tablet).await;
    assert!(!numbers.is_empty(), "no applications to scan");
    for n in &numbers {
        stack.scan(n).unwrap();
        tablet
            .wait_for_within(
                &format!("(document.querySelector('[data-application=\"{n}\"]') || {{dataset: {{}}}}).dataset.state === 'accepted' || !!document.querySelector('#visit-done')"),
                Duration::from_secs(20),
            )
            .await;
    }
    tablet
        .wait_for("!!document.querySelector('#visit-done')")
        .await;
    tablet
        .screenshot(&screenshots(), &format!("{shot}-done"))
        .await;
    (printed, numbers)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_request_and_a_family_moving_in_at_the_counter() {
    let stack = start_stack();
    let _logs = LogsOnFailure(&stack);
    let tablet = Tablet::open().await;
    log_in(&tablet, &stack).await;
    tablet.screenshot(&screenshots(), "counter-menu").await;

    // ---------------------------------------------------------------- certificate
    let resident = person(&stack.demo_card("resident"));
    stack.insert_card(&stack.demo_card("resident")).unwrap();
    tablet.tap("[data-start=\"certificate\"]").await;
    wait_step(&tablet, "people").await;
    let _ = read_card(&tablet, Some("counter-certificate-card"), false).await;
    tablet.tap("[data-act=\"card-person:0\"]").await;
    wait_step(&tablet, "people").await;
    tablet
        .wait_for("!!document.querySelector('[data-member=\"0\"]')")
        .await;
    tablet
        .screenshot(&screenshots(), "counter-certificate-people")
        .await;
    tablet.tap("[data-act=\"goto:next\"]").await;
    wait_step(&tablet, "certificates").await;
    tablet.tap("[data-act=\"cert-toggle:juminhyo\"]").await;
    tablet
        .tap("[data-act=\"cert-copies:juminhyo\"][data-delta=\"+\"]")
        .await;
    tablet
        .wait_for("(document.querySelector('#fee-total') || {dataset: {}}).dataset.fee === '600'")
        .await;
    tablet
        .screenshot(&screenshots(), "counter-certificate-choose")
        .await;
    tablet.tap("[data-act=\"goto:next\"]").await;
    wait_step(&tablet, "details").await;
    tablet.tap("[data-act=\"purpose:就職\"]").await;
    tablet
        .screenshot(&screenshots(), "counter-certificate-details")
        .await;
    let (cert_print, cert_numbers) = print_and_scan(&tablet, &stack, "counter-certificate").await;
    assert_eq!(cert_numbers.len(), 1, "one request form for 住民票");
    let files = stack
        .printer()
        .wait_for_jobs(1, Duration::from_secs(30))
        .unwrap();
    let text = squeeze(&pdf_text(files.last().unwrap()));
    assert!(
        has_name(&text, &resident.name),
        "the resident's name on the request form"
    );
    assert!(text.contains(&squeeze(&resident.address)), "their address");
    assert!(
        text.contains(&wareki(&resident.birth_date)),
        "their birth date in 和暦"
    );
    assert!(
        text.contains(&cert_numbers[0]),
        "the application number under its code"
    );
    tablet.tap("[data-act=\"end\"]").await;
    tablet
        .wait_for("!!document.querySelector('[data-start]')")
        .await;

    // ---------------------------------------------------------------- 転入
    let family: Vec<Person> = (1..=4)
        .map(|i| person(&stack.demo_card(&format!("family-{i}"))))
        .collect();
    let jobs_before = stack.printer().printed_files().len();
    tablet.reset_counts();
    let mut filled = Vec::new();
    let mut resident_taps = 0;
    stack.insert_card(&stack.demo_card("family-1")).unwrap();
    tablet.tap("[data-start=\"move_in\"]").await;
    wait_step(&tablet, "people").await;
    let (t, r) = read_card(&tablet, None, true).await;
    filled.push(t);
    resident_taps += r;
    tablet
        .wait_for("!!document.querySelector('[data-family]')")
        .await;
    tablet
        .screenshot(&screenshots(), "counter-move-in-family")
        .await;
    tablet.tap("[data-act=\"confirm-family\"]").await;
    tablet
        .wait_for("document.querySelectorAll('[data-member]').length === 4")
        .await;
    for i in 2..=4 {
        stack
            .insert_card(&stack.demo_card(&format!("family-{i}")))
            .unwrap();
        let (t, r) = read_card(&tablet, None, true).await;
        filled.push(t);
        resident_taps += r;
        tablet
            .wait_for(&format!(
                "document.querySelectorAll('[data-member][data-card=\"true\"]').length === {i}"
            ))
            .await;
    }
    tablet
        .wait_for("document.querySelectorAll('[data-member][data-card=\"true\"]').length === 4")
        .await;
    tablet
        .screenshot(&screenshots(), "counter-move-in-people")
        .await;
    tablet.tap("[data-act=\"goto:next\"]").await;
    wait_step(&tablet, "date").await;
    tablet
        .screenshot(&screenshots(), "counter-move-in-date")
        .await;
    tablet.tap("[data-act=\"goto:next\"]").await;
    // Only the questions that matter, each one tap; then the procedure list.
    let mut questions = 0;
    loop {
        tablet
            .wait_for(&format!(
                "({STEP} === 'questions' || {STEP} === 'procedures') && document.querySelector('[data-step]').dataset.busy !== 'true'"
            ))
            .await;
        let step: String = tablet.eval(STEP).await;
        if step == "procedures" {
            break;
        }
        if questions == 0 {
            tablet
                .screenshot(&screenshots(), "counter-move-in-questions")
                .await;
        }
        let key: String = tablet
            .eval("document.querySelector('[data-question]').dataset.question")
            .await;
        tablet
            .tap(&format!("[data-act=\"answer:{key}\"][data-answer=\"no\"]"))
            .await;
        // Determined again: the answered question is gone.
        tablet
            .wait_for(&format!(
                "!document.querySelector('[data-question=\"{key}\"]') && document.querySelector('[data-step]').dataset.busy !== 'true'"
            ))
            .await;
        questions += 1;
        assert!(questions < 20, "the questions never end");
    }
    tablet
        .screenshot(&screenshots(), "counter-move-in-procedures")
        .await;
    let procedures: Vec<(String, String)> = tablet
        .eval("[...document.querySelectorAll('[data-procedure][data-included=true]')].map(e => [e.dataset.procedure, e.dataset.member || ''])")
        .await;
    let mut per_member: BTreeMap<String, usize> = BTreeMap::new();
    for (_, m) in &procedures {
        *per_member.entry(m.clone()).or_default() += 1;
    }
    for m in ["m1", "m2", "m3", "m4"] {
        assert!(
            per_member.get(m).copied().unwrap_or(0) >= 1,
            "{m} has procedures: {procedures:?}"
        );
    }
    let (move_in_print, numbers) = print_and_scan(&tablet, &stack, "counter-move-in").await;
    let taps = tablet.taps() - resident_taps;
    let keys = tablet.keystrokes();

    // The printed bundle: the guide and every form, with the family's names, the new
    // address and 和暦 dates.
    let files = stack
        .printer()
        .wait_for_jobs(jobs_before + 1, Duration::from_secs(30))
        .unwrap();
    let text = squeeze(
        &files[jobs_before..]
            .iter()
            .map(|f| pdf_text(f))
            .collect::<String>(),
    );
    for p in &family {
        assert!(
            has_name(&text, &p.name),
            "a family member's name is printed"
        );
        assert!(
            text.contains(&wareki(&p.birth_date)),
            "their birth date in 和暦"
        );
        assert!(text.contains(&squeeze(&p.address)), "their former address");
    }
    let new_address = destination_of(&stack, &family[0]);
    assert!(
        text.contains(&squeeze(&new_address)),
        "the new address (the 転出先 of the 転出証明書情報) is printed"
    );
    for n in &numbers {
        assert!(text.contains(n.as_str()), "application {n} is printed");
    }

    // Accepted applications reach the core systems: the export writes them.
    let out = stack.dir().join("export");
    let report = stack
        .control_plane_cli(&[
            "export",
            "--tenant",
            stack::TENANT,
            "--out",
            &out.to_string_lossy(),
        ])
        .unwrap();
    let manifests: Vec<PathBuf> = walk(&out)
        .into_iter()
        .filter(|p| p.file_name().is_some_and(|n| n == "manifest.json"))
        .collect();
    assert_eq!(manifests.len(), 1, "one export batch: {report}");
    let manifest = std::fs::read_to_string(&manifests[0]).unwrap();
    for n in &numbers {
        assert!(manifest.contains(n.as_str()), "application {n} exported");
    }

    let mut sorted = filled.clone();
    sorted.sort();
    eprintln!(
        "FIGURES 転入 of a family of four: staff taps {taps}, staff keystrokes {keys}, questions {questions}, \
         procedures {}, applications {}; PIN → filled screen (n={}) max {:?} median {:?}; \
         print tap → job completed: certificate {cert_print:?}, 転入 bundle {move_in_print:?}",
        procedures.len(),
        numbers.len(),
        sorted.len(),
        sorted.last().unwrap(),
        sorted[sorted.len() / 2],
    );
    assert!(
        taps <= 20,
        "staff tapped {taps} times for the 転入 (goal ≤ 20)"
    );
    assert_eq!(keys, 0, "no typing for the 転入");
}

/// The 転出先 the former city declared for `p` (tenshutsu.csv, as imported).
fn destination_of(stack: &Stack, p: &Person) -> String {
    let csv = std::fs::read_to_string(stack.dir().join("city/tenshutsu.csv")).unwrap();
    let mut lines = csv.trim_start_matches('\u{feff}').lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let col = |name: &str| {
        header
            .iter()
            .position(|h| h.trim_matches('"') == name)
            .unwrap()
    };
    let (name, dest) = (col("氏名"), col("転出先"));
    lines
        .map(|l| {
            l.split(',')
                .map(|f| f.trim_matches('"').to_owned())
                .collect::<Vec<_>>()
        })
        .find(|f| f[name] == p.name)
        .map(|f| f[dest].clone())
        .expect("the family's 転出証明書情報")
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}
