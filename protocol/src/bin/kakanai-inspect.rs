//! `kakanai-inspect` — look inside, verify and make Kakanai's signed messages.
//!
//! For operators and for other implementations checking themselves against ours:
//! `verify` prints one JSON object and exits 0 (valid), 1 (invalid, with `reason`)
//! or 2 (usage); `sign` writes a COSE_Sign1 to stdout; `keygen` prints a key pair;
//! `example` writes an example payload of a message kind.
//! Personal data inside a decoded message is shown redacted.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use kakanai_protocol::cose::{self, Unverified};
use kakanai_protocol::envelope::payload_to_json;
use kakanai_protocol::personal::REDACTED;
use kakanai_protocol::{examples, Envelope, KeyId, Kind, SigningKey, VerifyingKey};
use serde_json::{json, Value};

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
        /// Show personal data (個人番号, names, addresses, documents) in full. Without
        /// it they are redacted and `payload_hex` is withheld for messages that may
        /// carry them.
        #[arg(long)]
        show_personal_data: bool,
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
    /// Write an example Kakanai payload (CBOR) of a message kind to stdout, to sign.
    Example {
        /// The kind (presence, device-state, ack, rpc-req, rpc-res, card-read,
        /// print-job, print-status, scan, config-desired, config-reported).
        kind: String,
        /// The sender sequence number to put in it.
        #[arg(long, default_value_t = 1)]
        seq: u64,
        /// Write hex instead of raw bytes.
        #[arg(long)]
        hex: bool,
    },
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
            show_personal_data,
            file,
        } => verify(&public_key, &aad, show_personal_data, &file),
        Command::Sign {
            secret_key,
            kid,
            topic,
            hex,
            file,
        } => sign(&secret_key, &kid, topic.as_deref(), hex, &file),
        Command::Keygen => keygen(),
        Command::Example { kind, seq, hex } => example(&kind, seq, hex),
    };
    match result {
        Ok(code) => code,
        Err(Usage(msg)) => {
            eprintln!("kakanai-inspect: {msg}");
            ExitCode::from(2)
        }
    }
}

fn verify(public_key: &str, aad: &Aad, show: bool, file: &Path) -> Result<ExitCode, Usage> {
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
                Ok(ok) => {
                    let message = Envelope::decode(&ok.payload).ok();
                    let personal = message
                        .as_ref()
                        .is_some_and(Envelope::carries_personal_data);
                    let (payload_hex, message) = match message {
                        Some(_) if show => (
                            json!(hex::encode(&ok.payload)),
                            payload_to_json(&ok.payload).unwrap_or_default(),
                        ),
                        Some(m) if personal => (json!(REDACTED), m.to_diagnostic_json()),
                        Some(m) => (json!(hex::encode(&ok.payload)), m.to_diagnostic_json()),
                        None => (json!(hex::encode(&ok.payload)), Value::Null),
                    };
                    json!({
                        "valid": true,
                        "alg": ok.alg.name(),
                        "kid": kid,
                        "payload_hex": payload_hex,
                        "personal_data": personal,
                        "message": message,
                    })
                }
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
    write_out(signed, hex_out)
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

fn example(kind: &str, seq: u64, hex_out: bool) -> Result<ExitCode, Usage> {
    let kind = Kind::from_name(kind).map_err(|e| Usage(e.to_string()))?;
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
    let payload = Envelope::new(seq, now_ms, examples::body(kind))
        .and_then(|e| e.encode())
        .map_err(|e| Usage(e.to_string()))?;
    write_out(payload, hex_out)
}

fn write_out(bytes: Vec<u8>, hex_out: bool) -> Result<ExitCode, Usage> {
    let out = if hex_out {
        format!("{}\n", hex::encode(&bytes)).into_bytes()
    } else {
        bytes
    };
    std::io::stdout()
        .write_all(&out)
        .map_err(|e| Usage(format!("writing stdout: {e}")))?;
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
