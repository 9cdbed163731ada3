//! `kakanai-provision` — central IT's tool for the fleet of counter appliances:
//! the tenant CA, one-time enrolment claims, approvals, bundles for SD cards,
//! revocation and rotation, and Mosquitto's TLS/ACL configuration. `enrol` is the
//! device's side of a claim. Human-readable output; `--json` for scripts.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context as _};
use clap::{Parser, Subcommand};
use kakanai_provisioning::broker::{self, BrokerOptions};
use kakanai_provisioning::claim::{parse_duration, ClaimFile};
use kakanai_provisioning::enrol;
use kakanai_provisioning::fleet::{CaDir, InitOptions};
use kakanai_provisioning::pki;
use serde_json::json;

#[derive(Parser)]
#[command(
    name = "kakanai-provision",
    version,
    about = "Kakanai fleet provisioning for central IT"
)]
struct Cli {
    /// Machine-readable JSON output.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Args)]
struct CaArg {
    /// The tenant's CA directory.
    #[arg(long, env = "KAKANAI_CA_DIR")]
    dir: PathBuf,
}

#[derive(Subcommand)]
enum Command {
    /// Create a tenant CA in a new directory.
    InitCa {
        /// The tenant (city) id.
        #[arg(long)]
        tenant: String,
        /// The CA directory to create.
        #[arg(long)]
        dir: PathBuf,
        /// Where devices reach the broker, mqtts://host:port.
        #[arg(long)]
        broker_url: String,
        /// Where devices enrol, https://host:port.
        #[arg(long)]
        enrolment_url: Option<String>,
        /// Device certificate validity in days.
        #[arg(long, default_value_t = pki::DEFAULT_DEVICE_DAYS)]
        device_days: u32,
        /// A control-plane message public key (Ed25519, hex); repeat for several.
        #[arg(long = "control-plane-key")]
        control_plane_keys: Vec<String>,
    },
    /// One-time enrolment claims.
    Claim {
        #[command(subcommand)]
        command: ClaimCommand,
    },
    /// Enrolments waiting for approval.
    Pending {
        #[command(subcommand)]
        command: PendingCommand,
    },
    /// Approve a pending enrolment: issue the device's certificate.
    Approve {
        #[command(flatten)]
        ca: CaArg,
        /// The enrolment id (see `pending list`).
        id: String,
    },
    /// Provisioning bundles for devices provisioned centrally.
    Bundle {
        #[command(subcommand)]
        command: BundleCommand,
    },
    /// List the tenant's devices.
    Devices {
        #[command(flatten)]
        ca: CaArg,
    },
    /// Revoke every certificate of a device and rewrite the CRL.
    Revoke {
        #[command(flatten)]
        ca: CaArg,
        /// The device id.
        #[arg(long)]
        device: String,
        /// Also update the CRL and ACL in this broker directory (then reload Mosquitto).
        #[arg(long)]
        broker_dir: Option<PathBuf>,
    },
    /// Issue a new certificate for a device's key before the old one expires.
    Rotate {
        #[command(flatten)]
        ca: CaArg,
        /// The device id.
        #[arg(long)]
        device: String,
        /// Write the new certificate into this bundle directory (client.pem).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Write a fresh CRL (its nextUpdate is 30 days ahead: run this monthly).
    Crl {
        #[command(flatten)]
        ca: CaArg,
        /// Also update the CRL and ACL in this broker directory.
        #[arg(long)]
        broker_dir: Option<PathBuf>,
    },
    /// Generate Mosquitto's TLS listener, certificates, CRL and ACL.
    BrokerConfig {
        #[command(flatten)]
        ca: CaArg,
        /// The output directory.
        #[arg(long)]
        out: PathBuf,
        /// A name devices use for the broker (DNS or IP); repeat for several.
        #[arg(long = "san", required = true)]
        sans: Vec<String>,
        /// The TLS listener's port.
        #[arg(long, default_value_t = 8883)]
        port: u16,
        /// The address to bind (all by default).
        #[arg(long)]
        bind: Option<String>,
    },
    /// Run the HTTPS enrolment service.
    ServeEnrolment {
        #[command(flatten)]
        ca: CaArg,
        /// Address to listen on.
        #[arg(long, default_value = "0.0.0.0:8443")]
        listen: String,
        /// Names in the service's certificate (the host in enrolment_url).
        #[arg(long = "san", required = true)]
        sans: Vec<String>,
    },
    /// On the device: enrol with a claim and write the bundle.
    Enrol {
        /// The claim file.
        #[arg(long)]
        claim: PathBuf,
        /// The bundle directory to write.
        #[arg(long)]
        out: PathBuf,
        /// Give up after this long (e.g. 72h).
        #[arg(long, default_value = "72h")]
        timeout: String,
        /// Seconds between polls while waiting for approval.
        #[arg(long, default_value_t = 10)]
        poll_s: u64,
    },
}

#[derive(Subcommand)]
enum ClaimCommand {
    /// Create a claim for a counter.
    Create {
        #[command(flatten)]
        ca: CaArg,
        /// The tenant (checked against the CA directory).
        #[arg(long)]
        tenant: Option<String>,
        /// The counter's name, e.g. "市民課 1番窓口".
        #[arg(long, required_unless_present = "replaces")]
        counter: Option<String>,
        /// The device id to enrol (generated when absent).
        #[arg(long)]
        device: Option<String>,
        /// The broken device this one replaces: its counter moves to the new device
        /// and it is revoked when the new one is approved (no --counter needed).
        #[arg(long, conflicts_with = "counter")]
        replaces: Option<String>,
        /// How long the claim stays valid.
        #[arg(long, default_value = "72h")]
        expires: String,
        /// Issue the certificate on submission without waiting for approval.
        #[arg(long)]
        pre_approve: bool,
        /// Write claim.toml here (mode 600).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Write the QR code as SVG here.
        #[arg(long)]
        qr: Option<PathBuf>,
    },
    /// List claims.
    List {
        #[command(flatten)]
        ca: CaArg,
    },
}

#[derive(Subcommand)]
enum PendingCommand {
    /// List enrolments waiting for approval.
    List {
        #[command(flatten)]
        ca: CaArg,
    },
}

#[derive(Subcommand)]
enum BundleCommand {
    /// Generate keys and a certificate for a device and write its bundle.
    Write {
        #[command(flatten)]
        ca: CaArg,
        /// The device id.
        #[arg(long)]
        device: String,
        /// The counter's name (needed for a new device).
        #[arg(long)]
        counter: Option<String>,
        /// The bundle directory (e.g. on the SD card).
        #[arg(long)]
        out: PathBuf,
    },
}

fn now_s() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

fn when(unix: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| unix.to_string())
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let cli = Cli::parse();
    let json = cli.json;
    let out = |human: String, value: serde_json::Value| {
        if json {
            println!("{value}");
        } else {
            println!("{human}");
        }
    };
    let now = now_s();
    match cli.command {
        Command::InitCa {
            tenant,
            dir,
            broker_url,
            enrolment_url,
            device_days,
            control_plane_keys,
        } => {
            let ca = CaDir::init(
                &dir,
                InitOptions {
                    tenant,
                    broker_url,
                    enrolment_url,
                    device_days,
                    control_plane_keys,
                },
                now,
            )?;
            let fingerprint = ca.ca_fingerprint()?;
            out(
                format!(
                    "CA for tenant {} created in {}\nfingerprint sha256:{fingerprint}",
                    ca.settings().tenant,
                    dir.display()
                ),
                json!({"tenant": ca.settings().tenant.as_str(), "dir": dir, "ca_fingerprint": fingerprint}),
            );
        }
        Command::Claim { command } => {
            match command {
                ClaimCommand::Create {
                    ca,
                    tenant,
                    counter,
                    device,
                    replaces,
                    expires,
                    pre_approve,
                    out: file,
                    qr,
                } => {
                    let ca = CaDir::open(&ca.dir)?;
                    if let Some(t) = tenant {
                        if t != ca.settings().tenant.as_str() {
                            bail!(
                                "--tenant {t}: this CA directory is tenant {}; nothing was created",
                                ca.settings().tenant
                            );
                        }
                    }
                    let valid = parse_duration(&expires).map_err(anyhow::Error::msg)?;
                    let claim = match (&replaces, &counter) {
                        (Some(old), _) => ca.create_replacement_claim(
                            old,
                            device.as_deref(),
                            valid,
                            pre_approve,
                            now,
                        )?,
                        (None, Some(counter)) => {
                            ca.create_claim(counter, device.as_deref(), valid, pre_approve, now)?
                        }
                        (None, None) => bail!("--counter: the counter's name is needed"),
                    };
                    if let Some(path) = &file {
                        claim
                            .file
                            .write(path)
                            .with_context(|| format!("writing {}", path.display()))?;
                    }
                    if let Some(path) = &qr {
                        let svg = claim.file.qr_svg().map_err(anyhow::Error::msg)?;
                        std::fs::write(path, svg)
                            .with_context(|| format!("writing {}", path.display()))?;
                    }
                    let r = &claim.record;
                    let human = format!(
                        "claim {} for {} (device {}), valid until {}{}\n\n{}\n{}",
                        r.id,
                        r.counter,
                        r.device,
                        when(r.expires),
                        if r.pre_approved { ", pre-approved" } else { "" },
                        claim.file.to_toml(),
                        if json {
                            String::new()
                        } else {
                            claim.file.qr_text().unwrap_or_default()
                        },
                    );
                    out(
                        human,
                        json!({"id": r.id, "device": r.device, "counter": r.counter,
                           "expires": r.expires, "pre_approved": r.pre_approved,
                           "claim_toml": claim.file.to_toml()}),
                    );
                }
                ClaimCommand::List { ca } => {
                    let claims = CaDir::open(&ca.dir)?.claims()?;
                    let mut human = String::from("ID        DEVICE            STATE     EXPIRES                    COUNTER\n");
                    let mut list = Vec::new();
                    for c in &claims {
                        let state = match (c.used_at, c.expires <= now) {
                            (Some(_), _) => "used",
                            (None, true) => "expired",
                            (None, false) => "open",
                        };
                        human.push_str(&format!(
                            "{:<9} {:<17} {:<9} {:<26} {}\n",
                            c.id,
                            c.device,
                            state,
                            when(c.expires),
                            c.counter
                        ));
                        list.push(json!({"id": c.id, "device": c.device, "counter": c.counter,
                                     "state": state, "expires": c.expires,
                                     "pre_approved": c.pre_approved}));
                    }
                    out(human, json!(list));
                }
            }
        }
        Command::Pending {
            command: PendingCommand::List { ca },
        } => {
            let pending = CaDir::open(&ca.dir)?.pending()?;
            let mut human = String::from("ID        DEVICE            SUBMITTED                  TLS KEY (SHA-256, first 16)  COUNTER\n");
            let mut list = Vec::new();
            for e in &pending {
                human.push_str(&format!(
                    "{:<9} {:<17} {:<26} {:<28} {}\n",
                    e.id,
                    e.device,
                    when(e.submitted),
                    &e.tls_key_sha256[..16.min(e.tls_key_sha256.len())],
                    e.counter
                ));
                list.push(json!({"id": e.id, "device": e.device, "counter": e.counter,
                                 "submitted": e.submitted, "tls_key_sha256": e.tls_key_sha256,
                                 "message_public_key": e.message_public_key}));
            }
            out(human, json!(list));
        }
        Command::Approve { ca, id } => {
            let (device, issued) = CaDir::open(&ca.dir)?.approve(&id, now)?;
            out(
                format!(
                    "approved {id}: device {device}, certificate {} valid until {}",
                    issued.serial,
                    when(issued.not_after)
                ),
                json!({"enrolment": id, "device": device, "serial": issued.serial,
                       "not_after": issued.not_after}),
            );
        }
        Command::Bundle {
            command:
                BundleCommand::Write {
                    ca,
                    device,
                    counter,
                    out: dir,
                },
        } => {
            CaDir::open(&ca.dir)?.write_bundle(&device, counter.as_deref(), &dir, now)?;
            out(
                format!("bundle for device {device} written to {}", dir.display()),
                json!({"device": device, "dir": dir}),
            );
        }
        Command::Devices { ca } => {
            let devices = CaDir::open(&ca.dir)?.devices()?;
            let mut human = String::from("DEVICE            STATE     CERT EXPIRES               KID               COUNTER\n");
            let mut list = Vec::new();
            for (id, d) in &devices {
                let state = if d.revoked_at.is_some() {
                    "revoked"
                } else {
                    "active"
                };
                let expires = d.current().map(|c| c.not_after).unwrap_or(0);
                human.push_str(&format!(
                    "{:<17} {:<9} {:<26} {:<17} {}\n",
                    id,
                    state,
                    when(expires),
                    d.message_kid,
                    d.counter
                ));
                list.push(json!({"device": id, "counter": d.counter, "state": state,
                                 "message_kid": d.message_kid,
                                 "message_public_key": d.message_public_key,
                                 "certificates": d.certs.iter().map(|c| json!({
                                     "serial": c.serial, "not_before": c.not_before,
                                     "not_after": c.not_after, "revoked_at": c.revoked_at})).collect::<Vec<_>>()}));
            }
            out(human, json!(list));
        }
        Command::Revoke {
            ca,
            device,
            broker_dir,
        } => {
            let ca = CaDir::open(&ca.dir)?;
            let serials = ca.revoke(&device, now)?;
            if let Some(b) = &broker_dir {
                broker::sync_revocations(&ca, b)?;
            }
            out(
                format!(
                    "device {device} revoked ({} certificate(s)); CRL rewritten{}.\n\
                     Reload the broker (kill -HUP) and tell the control plane to refuse kid of this device.",
                    serials.len(),
                    broker_dir
                        .as_ref()
                        .map(|b| format!(" and copied to {}", b.display()))
                        .unwrap_or_default()
                ),
                json!({"device": device, "revoked_serials": serials}),
            );
        }
        Command::Rotate {
            ca,
            device,
            out: dir,
        } => {
            let ca = CaDir::open(&ca.dir)?;
            let issued = ca.rotate(&device, now)?;
            if let Some(dir) = &dir {
                std::fs::write(dir.join("client.pem"), &issued.pem)
                    .with_context(|| format!("writing {}", dir.display()))?;
            }
            out(
                format!(
                    "new certificate {} for {device}, valid until {} (the old one stays valid until it expires)",
                    issued.serial,
                    when(issued.not_after)
                ),
                json!({"device": device, "serial": issued.serial, "not_after": issued.not_after, "pem": issued.pem}),
            );
        }
        Command::Crl { ca, broker_dir } => {
            let ca = CaDir::open(&ca.dir)?;
            ca.refresh_crl(now)?;
            if let Some(b) = &broker_dir {
                broker::sync_revocations(&ca, b)?;
            }
            out(
                "CRL rewritten".into(),
                json!({"crl": ca.dir().join("crl.pem")}),
            );
        }
        Command::BrokerConfig {
            ca,
            out: dir,
            sans,
            port,
            bind,
        } => {
            let ca = CaDir::open(&ca.dir)?;
            let files = broker::write_config(&ca, &dir, &BrokerOptions { port, bind, sans }, now)?;
            out(
                format!(
                    "broker configuration written: {}\ncontrol plane's client certificate: {} (user {})",
                    files.conf.display(),
                    files.control_plane_cert.display(),
                    broker::control_plane_user(&ca.settings().tenant)
                ),
                json!({"conf": files.conf, "control_plane_cert": files.control_plane_cert,
                       "control_plane_key": files.control_plane_key,
                       "control_plane_user": broker::control_plane_user(&ca.settings().tenant)}),
            );
        }
        Command::ServeEnrolment { ca, listen, sans } => {
            let ca = CaDir::open(&ca.dir)?;
            let (cert, key) = pki::issue_server(&ca.material()?, &sans, now)?;
            let runtime = tokio::runtime::Runtime::new()?;
            runtime.block_on(async move {
                let tcp = tokio::net::TcpListener::bind(&listen)
                    .await
                    .with_context(|| format!("listening on {listen}"))?;
                let listener = enrol::TlsListener::new(tcp, &cert.pem, &key)
                    .map_err(anyhow::Error::msg)?;
                let addr = axum::serve::Listener::local_addr(&listener)?;
                tracing::info!(%addr, tenant = %ca.settings().tenant, "enrolment service listening");
                axum::serve(listener, enrol::router(Arc::new(ca))).await?;
                anyhow::Ok(())
            })?;
        }
        Command::Enrol {
            claim,
            out: dir,
            timeout,
            poll_s,
        } => {
            let claim = ClaimFile::load(&claim).map_err(anyhow::Error::msg)?;
            let timeout = parse_duration(&timeout).map_err(anyhow::Error::msg)?;
            let bundle = enrol::enrol(
                &claim,
                &dir,
                Duration::from_secs(poll_s.max(1)),
                Duration::from_secs(timeout.unsigned_abs()),
            )?;
            out(
                format!(
                    "enrolled as device {} of {}; bundle in {}",
                    bundle.device,
                    bundle.tenant,
                    dir.display()
                ),
                json!({"tenant": bundle.tenant.as_str(), "device": bundle.device.as_str(),
                       "dir": dir, "not_after": bundle.not_after}),
            );
        }
    }
    Ok(())
}
