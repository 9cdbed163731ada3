//! `kakanai-control-plane` — the control plane's command line.
//!
//! - `determine --catalog DIR --input FILE`: every procedure a life event brings for
//!   the household described in FILE (JSON, see `rules::model`), as JSON.
//! - `gen-city --out DIR [--seed N] [--residents N]`: a synthetic reference city as
//!   core-system CSV files (all 16 kinds).
//! - `import --database URL --tenant T --dir DIR`: imports core-system files, each
//!   file all or nothing, and prints the report.
//! - `catalog check DIR`: validates a catalogue and lists every error with its place.
//! - `audit verify-archive FILE --key HEX…`: checks a fiscal-year audit archive on its
//!   own (exit 0 intact, 1 problems found).
//! - `serve --config FILE`: runs the service (MQTT ingest and RPC, commands,
//!   `/health`, `/metrics`; see `kakanai_control_plane::service::config` for the
//!   file) until SIGTERM or Ctrl-C. JSON logs on stderr (`RUST_LOG` filters).

use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use kakanai_control_plane::{audit, rules, service};
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
    /// Write a synthetic reference city (all 16 core-system data kinds) as CSV files.
    GenCity {
        /// The directory to write into.
        #[arg(long)]
        out: PathBuf,
        /// The random seed (the same seed gives the same files).
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Living residents (the reference city has 157,508).
        #[arg(long, default_value_t = 157_508)]
        residents: usize,
    },
    /// Import core-system files from a directory (each file all or nothing).
    Import {
        /// The database (sqlite://PATH?mode=rwc or postgres://…); default: the
        /// KAKANAI_DATABASE_URL environment variable (keeps passwords off argv).
        #[arg(long)]
        database: Option<String>,
        /// The tenant (city) the files belong to.
        #[arg(long)]
        tenant: String,
        /// The directory holding the files.
        #[arg(long)]
        dir: PathBuf,
        /// A file holding the 32-byte key (hex, mode 600) that seals 個人番号 values;
        /// without it, 個人番号 columns are checked and dropped.
        #[arg(long)]
        my_number_key_file: Option<PathBuf>,
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
    /// Run the control plane service until SIGTERM or Ctrl-C.
    Serve {
        /// The service configuration (TOML).
        #[arg(long)]
        config: PathBuf,
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
        Command::Serve { config } => serve(&config),
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
        Command::GenCity {
            out,
            seed,
            residents,
        } => {
            let summary = kakanai_control_plane::residents::gen_city(&out, seed, residents)?;
            println!(
                "{} residents in {} households written to {}",
                summary.residents,
                summary.households,
                out.display()
            );
            for (file, rows) in &summary.files {
                println!("  {file}: {rows} rows");
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Import {
            database,
            tenant,
            dir,
            my_number_key_file,
        } => {
            let database = match database {
                Some(d) => d,
                None => std::env::var("KAKANAI_DATABASE_URL")
                    .context("--database or KAKANAI_DATABASE_URL is needed")?,
            };
            import(&database, &tenant, &dir, my_number_key_file.as_deref())
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

fn import(
    database: &str,
    tenant: &str,
    dir: &Path,
    key_file: Option<&Path>,
) -> anyhow::Result<ExitCode> {
    use kakanai_control_plane::residents::{import_dir, ImportOptions, Mapping, MyNumberKey};
    let tenant = kakanai_protocol::topic::Ident::new(tenant).context("--tenant")?;
    let my_number_key = match key_file {
        None => None,
        Some(path) => {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(path)
                .with_context(|| format!("{}", path.display()))?
                .permissions()
                .mode();
            anyhow::ensure!(
                mode & 0o077 == 0,
                "{} is readable by others; chmod 600 it",
                path.display()
            );
            let bytes = hex::decode(std::fs::read_to_string(path)?.trim())
                .ok()
                .and_then(|b| <[u8; 32]>::try_from(b).ok())
                .context("--my-number-key-file: not 32 bytes in hex")?;
            Some(MyNumberKey::new(&bytes))
        }
    };
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let store = kakanai_control_plane::store::Store::open(database)
            .await
            .context("opening the store")?;
        if store.get_tenant(&tenant).await?.is_none() {
            let record = kakanai_control_plane::store::Tenant {
                id: tenant.clone(),
                name: tenant.as_str().to_owned(),
            };
            store.create_tenant(&record, now_ms).await?;
        }
        let options = ImportOptions {
            my_number_key,
            now_ms,
        };
        let report = import_dir(&store, &tenant, dir, &Mapping::reference(), &options).await?;
        print!("{report}");
        Ok(if report.all_applied() {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(1)
        })
    })
}

fn serve(path: &Path) -> anyhow::Result<ExitCode> {
    tracing_subscriber::fmt()
        .json()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let config = service::ServiceConfig::load(path)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async {
        // Staff login, sessions and their RPC methods (staff.login, staff.logout,
        // staff.change-password, staff.whoami) alongside ping.
        let store = kakanai_control_plane::store::Store::open(&config.database_url)
            .await
            .context("opening the store")?;
        let staff = std::sync::Arc::new(kakanai_control_plane::staff::StaffService::new(
            store.clone(),
            kakanai_control_plane::staff::StaffPolicy::default(),
        ));
        let mut options = service::ServiceOptions {
            store: Some(store),
            ..Default::default()
        };
        staff.register_rpc(&mut options.dispatcher);
        options.sessions = staff;
        let running = service::start(config, options)
            .await
            .context("starting the service")?;
        shutdown_signal().await;
        tracing::info!("stopping");
        running.shutdown().await;
        Ok(ExitCode::SUCCESS)
    })
}

/// SIGTERM (systemd, containers) or Ctrl-C.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            // Without a SIGTERM handler, Ctrl-C still works.
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
}
