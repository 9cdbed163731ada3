//! `kakanai-hw` — the counter's devices from the command line, for installers and
//! central IT: list readers, watch them, identify and read cards, print a PDF, watch
//! the scanner. Output is JSON (one object, or one per line for `watch`/`scan`).
//!
//! PINs are read from standard input or a TTY prompt, never from the command line
//! (argv is visible to every user of the machine). Personal data is redacted in the
//! output unless `--show-personal-data` is given.

use std::io::{BufRead, IsTerminal};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context as _, Result};
use clap::{Parser, Subcommand};
use kakanai_hw::card::{self, link, CardError, Credential, ReadScope};
use serde_json::{json, Value};

#[derive(Parser)]
#[command(
    name = "kakanai-hw",
    version,
    about = "Kakanai counter devices: card readers, printer, scanner"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// List the PC/SC readers attached now.
    Readers,
    /// Print reader and card events as JSON lines until interrupted.
    Watch {
        /// Watch only this reader.
        #[arg(long)]
        reader: Option<String>,
        /// Stop after this many seconds without events (default: never).
        #[arg(long)]
        idle_exit_s: Option<u64>,
    },
    /// Tell which card is on the reader (no PIN is presented).
    Identify {
        /// The reader (default: the first one).
        #[arg(long)]
        reader: Option<String>,
    },
    /// Read a My Number card's 基本4情報 (and the 個人番号 with --with-my-number).
    /// The PIN (or 照合番号B) is read from standard input or prompted for.
    ReadMynumber {
        /// The reader (default: the first one).
        #[arg(long)]
        reader: Option<String>,
        /// Unlock with 照合番号B from the card face instead of the PIN.
        #[arg(long)]
        code_b: bool,
        /// Also read the 個人番号 (needs the PIN).
        #[arg(long)]
        with_my_number: bool,
        /// Show personal data instead of redacting it.
        #[arg(long)]
        show_personal_data: bool,
    },
    /// Read a driver's licence with PIN1 (from standard input or prompted for).
    ReadLicence {
        /// The reader (default: the first one).
        #[arg(long)]
        reader: Option<String>,
        /// Show personal data instead of redacting it.
        #[arg(long)]
        show_personal_data: bool,
    },
    /// Print a PDF to an IPP printer and wait for the job to finish.
    Print {
        /// The printer, e.g. ipp://printer.local:631/ipp/print.
        #[arg(long)]
        uri: String,
        /// The job name shown by the printer (never personal data).
        #[arg(long, default_value = "kakanai-hw test page")]
        name: String,
        /// Seconds to wait for the job.
        #[arg(long, default_value_t = 120)]
        timeout_s: u64,
        /// The PDF file.
        file: PathBuf,
    },
    /// Show an IPP printer's state.
    PrinterStatus {
        /// The printer URI.
        #[arg(long)]
        uri: String,
    },
    /// Print scanned codes as JSON lines until interrupted.
    Scan {
        /// The scanner's serial device, e.g. /dev/ttyACM0.
        #[arg(long, default_value = "/dev/ttyACM0")]
        device: PathBuf,
        /// Show the scanned data instead of only its length.
        #[arg(long)]
        show_data: bool,
    },
}

fn main() -> ExitCode {
    match run(Cli::parse().command) {
        Ok(code) => code,
        Err(e) => {
            println!("{}", json!({ "ok": false, "error": format!("{e:#}") }));
            ExitCode::from(1)
        }
    }
}

fn run(command: Command) -> Result<ExitCode> {
    match command {
        Command::Readers => {
            let ctx = link::context()?;
            println!(
                "{}",
                json!({ "ok": true, "readers": link::list_readers(&ctx)? })
            );
        }
        Command::Watch {
            reader,
            idle_exit_s,
        } => {
            let ctx = link::context()?;
            let mut watcher = card::ReaderWatcher::new(ctx, reader.as_deref());
            let timeout = Duration::from_secs(idle_exit_s.unwrap_or(3600));
            loop {
                match watcher.next_event(timeout)? {
                    Some(event) => println!("{}", event_json(&event)),
                    None if idle_exit_s.is_some() => break,
                    None => {}
                }
            }
        }
        Command::Identify { reader } => {
            let ctx = link::context()?;
            let reader = pick_reader(&ctx, reader)?;
            let kind = card::identify(&ctx, &reader)?;
            println!(
                "{}",
                json!({ "ok": true, "reader": reader, "card": kind.to_wire() })
            );
        }
        Command::ReadMynumber {
            reader,
            code_b,
            with_my_number,
            show_personal_data,
        } => {
            let ctx = link::context()?;
            let reader = pick_reader(&ctx, reader)?;
            let scope = if with_my_number {
                ReadScope::WithMyNumber
            } else {
                ReadScope::FaceOnly
            };
            let credential = if code_b {
                Credential::code_b(&secret("照合番号B (14 digits)")?)?
            } else {
                Credential::pin(&secret("PIN (4 digits)")?)?
            };
            return Ok(report(card::read_my_number_card(&ctx, &reader, &credential, scope).map(|r| {
                let face = face_json(&r.face, show_personal_data);
                json!({ "ok": true, "reader": reader, "tries_before": r.tries_before, "face": face })
            })));
        }
        Command::ReadLicence {
            reader,
            show_personal_data,
        } => {
            let ctx = link::context()?;
            let reader = pick_reader(&ctx, reader)?;
            let pin = card::licence::licence_pin(&secret("licence PIN1 (4 digits)")?)?;
            return Ok(report(card::read_licence(&ctx, &reader, &pin).map(|f| {
                let show = |t: &kakanai_protocol::personal::PersonalText| {
                    if show_personal_data {
                        json!(t.expose())
                    } else {
                        json!(kakanai_protocol::personal::REDACTED)
                    }
                };
                json!({ "ok": true, "reader": reader, "licence": {
                    "name": show(&f.name), "kana": f.kana.as_ref().map(show),
                    "birth_date": show(&f.birth_date), "address": show(&f.address),
                    "expiry": f.expiry, "licence_number": show(&f.licence_number),
                    "has_gaiji": f.has_gaiji,
                }})
            })));
        }
        Command::Print {
            uri,
            name,
            timeout_s,
            file,
        } => return print(&uri, &name, timeout_s, &file),
        Command::PrinterStatus { uri } => return printer_status(&uri),
        Command::Scan { device, show_data } => return scan(device, show_data),
    }
    Ok(ExitCode::SUCCESS)
}

/// Card failures are answers (exit 1 with a typed error), not crashes.
fn report(result: std::result::Result<Value, CardError>) -> ExitCode {
    match result {
        Ok(v) => {
            println!("{v}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            println!(
                "{}",
                json!({ "ok": false, "error": e.to_string(), "card_error": e.to_wire() })
            );
            ExitCode::from(1)
        }
    }
}

fn pick_reader(ctx: &pcsc::Context, reader: Option<String>) -> Result<String> {
    let readers = link::list_readers(ctx)?;
    match reader {
        Some(r) if readers.contains(&r) => Ok(r),
        Some(r) => bail!("reader {r:?} is not attached (attached: {readers:?})"),
        None => readers
            .into_iter()
            .next()
            .context("no card reader is attached"),
    }
}

/// A secret from a TTY prompt (no echo) or the first line of standard input.
fn secret(prompt: &str) -> Result<String> {
    if std::io::stdin().is_terminal() {
        Ok(rpassword::prompt_password(format!("{prompt}: "))?)
    } else {
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line)?;
        Ok(line.trim_end_matches(['\r', '\n']).to_owned())
    }
}

fn face_json(face: &kakanai_protocol::personal::CardFace, show: bool) -> Value {
    if !show {
        return serde_json::to_value(face).unwrap_or(Value::Null);
    }
    json!({
        "name": face.name.expose(),
        "address": face.address.expose(),
        "birth_date": face.birth_date.expose(),
        "sex": face.sex,
        "my_number": face.my_number.as_ref().map(|n| n.expose()),
        "has_private_use_chars": face.has_private_use_chars,
    })
}

fn event_json(e: &card::ReaderEvent) -> Value {
    use card::ReaderEvent as E;
    match e {
        E::ReaderAdded(r) => json!({ "event": "reader-added", "reader": r }),
        E::ReaderRemoved(r) => json!({ "event": "reader-removed", "reader": r }),
        E::CardInserted { reader, atr } => {
            json!({ "event": "card-inserted", "reader": reader, "atr": hex_of(atr) })
        }
        E::CardRemoved { reader } => json!({ "event": "card-removed", "reader": reader }),
    }
}

fn hex_of(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn print(uri: &str, name: &str, timeout_s: u64, file: &std::path::Path) -> Result<ExitCode> {
    use kakanai_hw::printer::{IppPrinter, JobOutcome, PrintRequest, Printer};
    let document = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    let request = PrintRequest::new(document, name, 1)?;
    let printer = IppPrinter::new(uri)?;
    let timeout = Duration::from_secs(timeout_s);
    let job = printer.submit_when_ready(&request, timeout)?;
    let outcome = printer.wait(&job, timeout)?;
    let state = kakanai_protocol::catalogue::PrintState::from(&outcome);
    println!(
        "{}",
        json!({
            "ok": matches!(outcome, JobOutcome::Completed { .. }),
            "job_id": job.id(),
            "state": state,
            "reason": outcome.reason(),
        })
    );
    Ok(if matches!(outcome, JobOutcome::Completed { .. }) {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn printer_status(uri: &str) -> Result<ExitCode> {
    use kakanai_hw::printer::{IppPrinter, Printer, PrinterStatus};
    let status = IppPrinter::new(uri)?.status()?;
    let (state, conditions) = match &status {
        PrinterStatus::Online { state, conditions } => (
            json!(format!("{state:?}").to_lowercase()),
            conditions
                .iter()
                .map(|c| json!(format!("{c:?}")))
                .collect::<Vec<_>>(),
        ),
        PrinterStatus::Unreachable => (json!("unreachable"), Vec::new()),
    };
    println!(
        "{}",
        json!({
            "ok": true,
            "can_print": status.can_print(),
            "state": state,
            "conditions": conditions,
            "label": status.label_ja(),
        })
    );
    Ok(ExitCode::SUCCESS)
}

fn scan(device: PathBuf, show_data: bool) -> Result<ExitCode> {
    use kakanai_hw::scanner::{Scanner, ScannerConfig, ScannerEvent};
    let handle = Scanner::spawn(ScannerConfig::new(device))?;
    for event in handle.events() {
        let line = match event {
            ScannerEvent::Connected => json!({ "event": "connected" }),
            ScannerEvent::Disconnected => json!({ "event": "disconnected" }),
            ScannerEvent::Rejected { reason } => {
                json!({ "event": "rejected", "reason": reason.to_string() })
            }
            ScannerEvent::Code(scan) => {
                let result = scan.into_result("cli");
                let data = if show_data {
                    json!(String::from_utf8_lossy(&result.data))
                } else {
                    json!(kakanai_protocol::personal::REDACTED)
                };
                json!({ "event": "code", "symbology": result.symbology, "len": result.data.len(), "data": data })
            }
        };
        println!("{line}");
    }
    Ok(ExitCode::SUCCESS)
}
