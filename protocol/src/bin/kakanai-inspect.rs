//! `kakanai-inspect` — look inside, verify and make Kakanai's signed messages.
//!
//! For operators and for other implementations checking themselves against ours:
//! `verify` prints one JSON object and exits 0 (valid), 1 (invalid, with `reason`)
//! or 2 (usage); `sign` writes a COSE_Sign1 to stdout; `keygen` prints a key pair.
//! Personal data inside a decoded message is shown redacted.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use kakanai_protocol::cose::{self, Unverified};
use kakanai_protocol::{Envelope, KeyId, SigningKey, VerifyingKey};
use serde_json::json;

#[derive(Parser)]
#[command(
    name = "kakanai-inspect",
    version,
    about = "Verify, sign and inspect Kakanai COSE_Sign1 messages"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Verify a COSE_Sign1 (raw bytes, or hex if the file is text) and print it as JSON.
    Verify {
        /// The signer's Ed25519 public key, 32 bytes in hex.
        #[arg(long, value_name = "HEX")]
        public_key: String,
        #[command(flatten)]
        aad: Aad,
        /// The message file; `-` reads standard input.
        file: PathBuf,
    },
    /// Sign the file's bytes as the payload of a COSE_Sign1 written to stdout.
    Sign {
        /// The Ed25519 seed, 32 bytes in hex.
        #[arg(long, value_name = "HEX")]
        secret_key: String,
        /// The key id to put in the protected header, in hex.
        #[arg(long, value_name = "HEX")]
        kid: String,
        /// The MQTT topic the message is for (its bytes become the external AAD).
        #[arg(long)]
        topic: Option<String>,
        /// Write hex instead of raw bytes.
        #[arg(long)]
        hex: bool,
        /// The payload file; `-` reads standard input.
        file: PathBuf,
    },
    /// Print a new Ed25519 key pair and its conventional key id as JSON.
    Keygen,
}

#[derive(Args)]
#[group(multiple = false)]
struct Aad {
    /// The MQTT topic the message was received on (its bytes are the external AAD).
    #[arg(long)]
    topic: Option<String>,
    /// The external AAD in hex.
    #[arg(long, value_name = "HEX")]
    aad: Option<String>,
}

/// A failure of the command line or the environment: exit 2.
struct Usage(String);

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Verify {
            public_key,
            aad,
            file,
        } => verify(&public_key, &aad, &file),
        Command::Sign {
            secret_key,
            kid,
            topic,
            hex,
            file,
        } => sign(&secret_key, &kid, topic.as_deref(), hex, &file),
        Command::Keygen => keygen(),
    };
    match result {
        Ok(code) => code,
        Err(Usage(msg)) => {
            eprintln!("kakanai-inspect: {msg}");
            ExitCode::from(2)
        }
    }
}

fn verify(public_key: &str, aad: &Aad, file: &Path) -> Result<ExitCode, Usage> {
    let key = decode_hex(public_key, "--public-key")
        .and_then(|b| VerifyingKey::from_bytes(&b).map_err(|e| Usage(e.to_string())))?;
    let aad = match (&aad.topic, &aad.aad) {
        (Some(topic), _) => topic.as_bytes().to_vec(),
        (None, Some(hex)) => decode_hex(hex, "--aad")?,
        (None, None) => Vec::new(),
    };
    let bytes = read_message(file)?;
    let report = match Unverified::parse(&bytes) {
        Err(e) => json!({ "valid": false, "reason": e.to_string() }),
        Ok(unverified) => {
            let alg = unverified.alg();
            let kid = unverified.kid().to_hex();
            match unverified.verify(&key, &aad) {
                Err(e) => json!({
                    "valid": false, "reason": e.to_string(), "alg": alg.name(), "kid": kid,
                }),
                Ok(ok) => json!({
                    "valid": true,
                    "alg": ok.alg.name(),
                    "kid": kid,
                    "payload_hex": hex::encode(&ok.payload),
                    "message": Envelope::decode(&ok.payload).ok().map(|m| m.to_diagnostic_json()),
                }),
            }
        }
    };
    println!("{report}");
    Ok(if report["valid"] == json!(true) {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn sign(
    secret: &str,
    kid: &str,
    topic: Option<&str>,
    hex_out: bool,
    file: &Path,
) -> Result<ExitCode, Usage> {
    let key = decode_hex(secret, "--secret-key")
        .and_then(|b| SigningKey::from_seed(&b).map_err(|e| Usage(e.to_string())))?;
    let kid = decode_hex(kid, "--kid")
        .and_then(|b| KeyId::new(b).map_err(|e| Usage(format!("--kid: {e}"))))?;
    let payload = read_input(file)?;
    let signed = cose::sign(&key, &kid, topic.unwrap_or_default().as_bytes(), payload)
        .map_err(|e| Usage(e.to_string()))?;
    let out = if hex_out {
        format!("{}\n", hex::encode(&signed)).into_bytes()
    } else {
        signed
    };
    std::io::stdout()
        .write_all(&out)
        .map_err(|e| Usage(format!("writing stdout: {e}")))?;
    Ok(ExitCode::SUCCESS)
}

fn keygen() -> Result<ExitCode, Usage> {
    let key = SigningKey::generate().map_err(|e| Usage(e.to_string()))?;
    let public = key.verifying_key();
    println!(
        "{}",
        json!({
            "secret_key": hex::encode(key.seed()),
            "public_key": hex::encode(public.as_bytes()),
            "kid": KeyId::of_key(&public).to_hex(),
        })
    );
    Ok(ExitCode::SUCCESS)
}

fn decode_hex(s: &str, what: &str) -> Result<Vec<u8>, Usage> {
    hex::decode(s.trim()).map_err(|e| Usage(format!("{what}: not hex ({e})")))
}

fn read_input(file: &Path) -> Result<Vec<u8>, Usage> {
    let mut bytes = Vec::new();
    let res = if file == Path::new("-") {
        std::io::stdin().read_to_end(&mut bytes).map(|_| ())
    } else {
        std::fs::File::open(file).and_then(|mut f| f.read_to_end(&mut bytes).map(|_| ()))
    };
    res.map_err(|e| Usage(format!("reading {}: {e}", file.display())))?;
    Ok(bytes)
}

/// The message's bytes: the file itself, or its hex decoded when it is hex text.
fn read_message(file: &Path) -> Result<Vec<u8>, Usage> {
    let bytes = read_input(file)?;
    let text = std::str::from_utf8(&bytes).map(|t| {
        t.chars()
            .filter(|c| !c.is_ascii_whitespace())
            .collect::<String>()
    });
    match text {
        Ok(t) if !t.is_empty() && t.len() % 2 == 0 && t.bytes().all(|b| b.is_ascii_hexdigit()) => {
            hex::decode(&t).map_err(|e| Usage(format!("hex message: {e}")))
        }
        _ => Ok(bytes),
    }
}
