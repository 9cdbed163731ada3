//! `kakanai-vcard` — put a virtual card from a JSON profile into pcscd's vpcd reader.
//!
//! ```text
//! kakanai-vcard --profile hw/profiles/mynumber-sample.json [--vpcd 127.0.0.1:35963] [--removed]
//! ```
//!
//! Commands on stdin, one per line: `insert`, `remove`, `status`, `quit` (end of input
//! also quits). Each is acknowledged on stdout (`inserted`, `removed`, `status ...`), so
//! a test or a script can wait for it; the first line is `ready ...`. Messages name the
//! profile's label and card type, never personal data. Exit status: 0 after `quit`, 2
//! for a bad profile, 3 when vpcd cannot be reached.

use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use kakanai_hw::vcard::{VirtualCard, VpcdLink, DEFAULT_VPCD_ADDR};

/// Serve a virtual My Number card, 住基カード or driver's licence through vpcd.
#[derive(Debug, Parser)]
#[command(name = "kakanai-vcard", version)]
struct Args {
    /// JSON profile of the card (see hw/profiles/).
    #[arg(long)]
    profile: PathBuf,
    /// vpcd's address (slot 0 is port 35963, slot 1 is 35964).
    #[arg(long, default_value = DEFAULT_VPCD_ADDR)]
    vpcd: String,
    /// Start with the card out of the reader (connect, then remove at once).
    #[arg(long)]
    removed: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let card = match VirtualCard::from_file(&args.profile) {
        Ok(card) => card,
        Err(e) => {
            eprintln!("kakanai-vcard: {e}");
            return ExitCode::from(2);
        }
    };
    let (kind, label) = (card.kind(), card.label().to_owned());
    let link = match VpcdLink::connect(args.vpcd.as_str(), card) {
        Ok(link) => link,
        Err(e) => {
            eprintln!("kakanai-vcard: {e} (is pcscd with vsmartcard-vpcd running?)");
            return ExitCode::from(3);
        }
    };
    if args.removed {
        link.remove();
    }
    let state = if args.removed { "removed" } else { "inserted" };
    say(&format!(
        "ready {kind:?} card `{label}` {state} at vpcd {}",
        link.addr()
    ));

    for line in std::io::stdin().lock().lines() {
        let Ok(line) = line else { break };
        match line.trim() {
            "" => {}
            "insert" => {
                link.insert();
                if link.wait_connected(Duration::from_secs(5)) {
                    say("inserted");
                } else {
                    say("error: vpcd did not accept the card within 5 s");
                }
            }
            "remove" => {
                link.remove();
                say("removed");
            }
            "status" => say(&format!(
                "status connected={} apdus={} connections={}",
                link.is_connected(),
                link.apdus_seen(),
                link.connections()
            )),
            "quit" | "exit" => break,
            other => eprintln!(
                "kakanai-vcard: unknown command `{}` (insert, remove, status, quit)",
                other.chars().take(20).collect::<String>()
            ),
        }
    }
    drop(link);
    ExitCode::SUCCESS
}

/// One acknowledgement line on stdout, flushed at once (stdout may be a pipe).
fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}
