//! `kakanai-control-plane` — the control plane's command line.
//!
//! - `determine --catalog DIR --input FILE`: every procedure a life event brings for
//!   the household described in FILE (JSON, see `rules::model`), as JSON.
//! - `catalog check DIR`: validates a catalogue and lists every error with its place.
//! - `audit verify-archive FILE --key HEX…`: checks a fiscal-year audit archive on its
//!   own (exit 0 intact, 1 problems found).
//!
//! The service itself (`serve`) comes with the control plane core.

use std::io::BufReader;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use kakanai_control_plane::{audit, rules};
use kakanai_protocol::{KeyId, VerifyingKey};

#[derive(Parser)]
#[command(
    name = "kakanai-control-plane",
    version,
    about = "Kakanai control plane"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Determine every procedure a life event brings, as JSON.
    Determine {
        /// The catalogue directory (one subdirectory per version).
        #[arg(long)]
        catalog: PathBuf,
        /// The household and event, as JSON.
        #[arg(long)]
        input: PathBuf,
    },
    /// Catalogue tools.
    Catalog {
        #[command(subcommand)]
        command: CatalogCommand,
    },
    /// Audit log tools.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
}

#[derive(Subcommand)]
enum CatalogCommand {
    /// Validate a catalogue directory; list every error with its location.
    Check {
        /// The catalogue directory.
        dir: PathBuf,
    },
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Verify a fiscal-year archive file on its own.
    VerifyArchive {
        /// The archive.
        file: PathBuf,
        /// Public keys (hex) that may have signed its checkpoints and trailer.
        #[arg(long = "key", value_name = "HEX", required = true)]
        keys: Vec<String>,
    },
}

fn main() -> ExitCode {
    match run(Cli::parse().command) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("kakanai-control-plane: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn run(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Determine { catalog, input } => {
            match rules::determine_from_files(&catalog, &input) {
                Ok(result) => {
                    println!("{}", serde_json::to_string_pretty(&result)?);
                    Ok(ExitCode::SUCCESS)
                }
                Err(e) => {
                    eprintln!("{e}");
                    Ok(ExitCode::from(1))
                }
            }
        }
        Command::Catalog {
            command: CatalogCommand::Check { dir },
        } => match rules::CatalogueSet::load(&dir) {
            Ok(_) => {
                println!("{}: ok", dir.display());
                Ok(ExitCode::SUCCESS)
            }
            Err(errors) => {
                for e in &errors {
                    println!("{e}");
                }
                eprintln!("{} error(s); the catalogue is rejected", errors.len());
                Ok(ExitCode::from(1))
            }
        },
        Command::Audit {
            command: AuditCommand::VerifyArchive { file, keys },
        } => {
            let mut known = std::collections::HashMap::new();
            for k in &keys {
                let key = hex::decode(k.trim())
                    .ok()
                    .and_then(|b| VerifyingKey::from_bytes(&b).ok())
                    .with_context(|| format!("--key {k}: not a 32-byte public key in hex"))?;
                known.insert(KeyId::of_key(&key), key);
            }
            let f = std::fs::File::open(&file)
                .with_context(|| format!("opening {}", file.display()))?;
            let report = audit::verify_archive(BufReader::new(f), &known);
            println!("{}", serde_json::to_string_pretty(&report)?);
            for problem in &report.problems {
                eprintln!("{problem}");
            }
            Ok(if report.is_ok() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
    }
}
