//! `kakanai-control-plane` — the control plane's command line.
//!
//! - `determine --catalog DIR --input FILE [--version V]`: every procedure a life
//!   event brings for the household described in FILE (JSON, see `rules::model`), as
//!   JSON; `--version` previews a version regardless of its effective date.
//! - `gen-city --out DIR [--seed N] [--residents N]`: a synthetic reference city as
//!   core-system CSV files (all 16 kinds).
//! - `import --database URL --tenant T --dir DIR`: imports core-system files, each
//!   file all or nothing, and prints the report.
//! - `catalog check DIR`: validates a catalogue and lists every error with its place.
//! - `catalog diff OLD NEW`: procedures and certificates added, removed and changed
//!   between two versions (each a catalogue directory, whose newest version counts,
//!   or one version directory inside one).
//! - `catalog install --database URL --tenant T DIR [--by LOGIN]`: validates the
//!   catalogue with the tenant's stored versions and stores it, or lists every error
//!   and changes nothing (exit 1); prints the schedule.
//! - `catalog list --database URL --tenant T`: the stored versions and their dates.
//! - `audit verify --tenant T --key HEX…`: checks a tenant's audit log in the
//!   database (chain and signed checkpoints); exit 0 intact, 1 problems found.
//! - `audit verify-archive FILE --key HEX…`: checks a fiscal-year audit archive on its
//!   own (exit 0 intact, 1 problems found).
//! - `audit archive --tenant T --year FY --dir DIR --key-file KEY [--key HEX…]`: writes
//!   a closed fiscal year to `DIR/audit-T-FYnnnn.jsonl`, verifies it and records it.
//! - `audit purge --tenant T --year FY --archive FILE --key HEX… [--retention-years N]`:
//!   deletes an archived year older than the retention (default 5 closed years) from
//!   the database, oldest first, after checking the archive again (the retention job).
//! - `export --database URL --tenant T --out DIR [--form F] [--again BATCH]
//!   [--mapping FILE]`: accepted applications as CSV/JSON per form with a manifest, in
//!   a new batch directory (written atomically), each application once; `--again`
//!   rewrites an earlier batch. Prints the batch; exit 1 when applications were held
//!   back (named with the column and reason), 2 on error.
//! - `device logs --tenant T --device D [--lines N] [--since-minutes M]` and
//!   `device restart --tenant T --device D [--reason TEXT]`: central IT's
//!   operations on an appliance, through the running service (its socket in the
//!   data directory, `--socket`); audited with `--by` (default `SUDO_USER`/`USER`).
//!   Exit 0 done, 1 failed or no answer, 2 error.
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
        /// Preview: use this catalogue version (its name or directory) whatever the
        /// event date, e.g. a version scheduled for a law change not yet in force.
        #[arg(long)]
        version: Option<String>,
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
        /// Write instead one day's delta files (異動分: births, deaths, moves in and
        /// out, marriages) for the city of the same seed and size.
        #[arg(long)]
        delta: bool,
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
        /// The directory holding the files (named as in the mapping, full files).
        #[arg(
            long,
            required_unless_present = "drop_dir",
            conflicts_with = "drop_dir"
        )]
        dir: Option<PathBuf>,
        /// A drop directory: complete files (with their `.ok` marker), full and delta,
        /// applied in order and moved to done/ or rejected/.
        #[arg(long)]
        drop_dir: Option<PathBuf>,
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
    /// Export accepted applications for the core systems (RPA / data linkage): per
    /// form CSV and JSON with a manifest, in a new batch directory under --out.
    Export {
        /// The database (sqlite://PATH?mode=rwc or postgres://…); default: the
        /// KAKANAI_DATABASE_URL environment variable.
        #[arg(long)]
        database: Option<String>,
        /// The tenant (city).
        #[arg(long)]
        tenant: String,
        /// The export directory (each batch is a directory inside it).
        #[arg(long)]
        out: PathBuf,
        /// Only this form (e.g. JUKI-IDO).
        #[arg(long)]
        form: Option<String>,
        /// Write this earlier batch again (same id and applications; no state change).
        #[arg(long)]
        again: Option<String>,
        /// The column mapping (TOML); default: the reference mapping shipped.
        #[arg(long)]
        mapping: Option<PathBuf>,
    },
    /// Backups: make a key, take a verified backup now, list, verify.
    Backup {
        #[command(subcommand)]
        command: kakanai_control_plane::backup::cli::BackupCommand,
    },
    /// Restore the store from a verified backup (stop the service first).
    Restore(kakanai_control_plane::backup::cli::RestoreArgs),
    /// Staff accounts and groups: the first administrator, demo and training accounts.
    Staff {
        #[command(subcommand)]
        command: kakanai_control_plane::staff::cli::StaffCommand,
    },
    /// Tenants (cities).
    Tenant {
        #[command(subcommand)]
        command: TenantCommand,
    },
    /// Operations on an appliance through the running service: its recent logs,
    /// a restart.
    Device {
        #[command(subcommand)]
        command: device_ops::DeviceCommand,
    },
    /// Run the control plane service until SIGTERM or Ctrl-C.
    Serve {
        /// The service configuration (TOML).
        #[arg(long)]
        config: PathBuf,
    },
}

#[derive(Subcommand)]
enum TenantCommand {
    /// Create a tenant with the city's name as printed on its forms (書無市); an
    /// existing tenant is left as it is.
    Add {
        /// The database; default: KAKANAI_DATABASE_URL.
        #[arg(long)]
        database: Option<String>,
        /// The tenant id (as in topics and configuration).
        #[arg(long)]
        tenant: String,
        /// The city's name.
        #[arg(long)]
        name: String,
    },
}

#[derive(Subcommand)]
enum CatalogCommand {
    /// Validate a catalogue directory; list every error with its location.
    Check {
        /// The catalogue directory.
        dir: PathBuf,
    },
    /// Show what changed between two versions (procedures, certificates).
    Diff {
        /// The old version: a catalogue directory (its newest version) or a version
        /// directory inside one.
        old: PathBuf,
        /// The new version, likewise.
        new: PathBuf,
    },
    /// Validate a catalogue directory and store its versions for a tenant.
    Install {
        /// The database (sqlite://PATH?mode=rwc or postgres://…); default: the
        /// KAKANAI_DATABASE_URL environment variable (keeps passwords off argv).
        #[arg(long)]
        database: Option<String>,
        /// The tenant (city).
        #[arg(long)]
        tenant: String,
        /// Who uploads (recorded with each version); default: $USER.
        #[arg(long)]
        by: Option<String>,
        /// The catalogue directory (one subdirectory per version).
        dir: PathBuf,
    },
    /// List a tenant's stored versions with their dates and status.
    List {
        /// The database; default: KAKANAI_DATABASE_URL.
        #[arg(long)]
        database: Option<String>,
        /// The tenant (city).
        #[arg(long)]
        tenant: String,
    },
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Verify a tenant's audit log in the database: every entry's hash chain and
    /// every signed checkpoint; says where anything was changed, removed or
    /// reordered (exit 0 intact, 1 problems found).
    Verify {
        /// The database; default: the KAKANAI_DATABASE_URL environment variable.
        #[arg(long)]
        database: Option<String>,
        /// The tenant (city).
        #[arg(long)]
        tenant: String,
        /// Public keys (hex) that may have signed the checkpoints.
        #[arg(long = "key", value_name = "HEX", required = true)]
        keys: Vec<String>,
    },
    /// Archive a closed fiscal year: write it to a file in DIR, verify the file and
    /// record it in the database (the first step of the retention job).
    Archive {
        /// The database; default: the KAKANAI_DATABASE_URL environment variable.
        #[arg(long)]
        database: Option<String>,
        /// The tenant (city).
        #[arg(long)]
        tenant: String,
        /// The fiscal year (April to March), e.g. 2020 for April 2020 – March 2021.
        #[arg(long)]
        year: u16,
        /// Where the archive file goes (e.g. the archive medium).
        #[arg(long)]
        dir: PathBuf,
        /// The control plane's signing key (hex seed, mode 0600): signs the trailer.
        #[arg(long)]
        key_file: PathBuf,
        /// Further public keys (hex) that signed the year's checkpoints (earlier keys).
        #[arg(long = "key", value_name = "HEX")]
        keys: Vec<String>,
        /// Who runs it (for the audit log); default: SUDO_USER, else USER.
        #[arg(long)]
        by: Option<String>,
    },
    /// Delete an archived fiscal year from the database once it is older than the
    /// retention period (oldest year first); the archive file is verified again and
    /// must be the one recorded.
    Purge {
        /// The database; default: the KAKANAI_DATABASE_URL environment variable.
        #[arg(long)]
        database: Option<String>,
        /// The tenant (city).
        #[arg(long)]
        tenant: String,
        /// The fiscal year to delete.
        #[arg(long)]
        year: u16,
        /// Its archive file (from `audit archive`).
        #[arg(long)]
        archive: PathBuf,
        /// Public keys (hex) that may have signed the archive and its checkpoints.
        #[arg(long = "key", value_name = "HEX", required = true)]
        keys: Vec<String>,
        /// Closed fiscal years kept (at least 5).
        #[arg(long, default_value_t = 5)]
        retention_years: u16,
        /// Who runs it (for the audit log); default: SUDO_USER, else USER.
        #[arg(long)]
        by: Option<String>,
    },
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
        Command::Device { command } => device_ops::run(command),
        Command::Staff { command } => {
            runtime()?.block_on(kakanai_control_plane::staff::cli::run(command))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Tenant {
            command:
                TenantCommand::Add {
                    database,
                    tenant,
                    name,
                },
        } => {
            tenant_add(database, &tenant, &name)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Backup { command } => kakanai_control_plane::backup::cli::run(command),
        Command::Restore(args) => kakanai_control_plane::backup::cli::restore(args),
        Command::Export {
            database,
            tenant,
            out,
            form,
            again,
            mapping,
        } => {
            let database = database_url(database)?;
            export_applications(&database, &tenant, &out, form, again, mapping)
        }
        Command::Determine {
            catalog,
            input,
            version: Some(version),
        } => {
            let set = match rules::CatalogueSet::load(&catalog) {
                Ok(set) => set,
                Err(errors) => {
                    for e in &errors {
                        eprintln!("{e}");
                    }
                    return Ok(ExitCode::from(1));
                }
            };
            let chosen = set
                .versions()
                .iter()
                .find(|c| c.version == version || c.dir == version)
                .with_context(|| format!("no catalogue version {version:?}"))?;
            let text = std::fs::read_to_string(&input)
                .with_context(|| format!("reading {}", input.display()))?;
            let parsed: rules::DeterminationInput = serde_json::from_str(&text)
                .with_context(|| format!("{}: not a determination input", input.display()))?;
            match rules::determine_with(chosen, &parsed) {
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
        Command::Determine {
            catalog,
            input,
            version: None,
        } => match rules::determine_from_files(&catalog, &input) {
            Ok(result) => {
                println!("{}", serde_json::to_string_pretty(&result)?);
                Ok(ExitCode::SUCCESS)
            }
            Err(e) => {
                eprintln!("{e}");
                Ok(ExitCode::from(1))
            }
        },
        Command::GenCity {
            out,
            seed,
            residents,
            delta: true,
        } => {
            let summary = kakanai_control_plane::residents::gen::gen_delta(&out, seed, residents)?;
            print!("{summary}");
            Ok(ExitCode::SUCCESS)
        }
        Command::GenCity {
            out,
            seed,
            residents,
            delta: false,
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
            // Virtual My Number cards of demo people (issue 9), in DIR/demo/.
            let demo = kakanai_control_plane::residents::gen::write_demo(&out, seed, residents)?;
            println!(
                "demo cards in {}: {}",
                demo.dir.display(),
                demo.files.join(", ")
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Import {
            database,
            tenant,
            dir,
            drop_dir,
            my_number_key_file,
        } => {
            let database = database_url(database)?;
            let source = match (dir, drop_dir) {
                (_, Some(d)) => ImportSource::DropDir(d),
                (Some(d), None) => ImportSource::Dir(d),
                (None, None) => anyhow::bail!("--dir or --drop-dir is needed"),
            };
            import(&database, &tenant, &source, my_number_key_file.as_deref())
        }
        Command::Catalog {
            command: CatalogCommand::Diff { old, new },
        } => {
            let old = catalog_admin::version_at(&old)?;
            let new = catalog_admin::version_at(&new)?;
            print!("{}", rules::diff::diff(&old, &new));
            Ok(ExitCode::SUCCESS)
        }
        Command::Catalog {
            command:
                CatalogCommand::Install {
                    database,
                    tenant,
                    by,
                    dir,
                },
        } => {
            let by = by
                .or_else(|| std::env::var("USER").ok())
                .unwrap_or_else(|| "cli".to_owned());
            catalog_admin::install(&database_url(database)?, &tenant, &dir, &by)
        }
        Command::Catalog {
            command: CatalogCommand::List { database, tenant },
        } => catalog_admin::list(&database_url(database)?, &tenant),
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
            command:
                AuditCommand::Verify {
                    database,
                    tenant,
                    keys,
                },
        } => {
            let database = match database {
                Some(d) => d,
                None => std::env::var("KAKANAI_DATABASE_URL")
                    .context("--database or KAKANAI_DATABASE_URL is needed")?,
            };
            let tenant = kakanai_protocol::topic::Ident::new(&tenant).context("--tenant")?;
            let known = public_keys(&keys)?;
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?;
            let report = runtime.block_on(async {
                let store = kakanai_control_plane::store::Store::open(&database)
                    .await
                    .context("opening the store")?;
                // From the first entry, or from where deleted older years end.
                anyhow::Ok(audit::retention::verify_store(&store, &tenant, &known).await?)
            })?;
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
        Command::Audit {
            command:
                AuditCommand::Archive {
                    database,
                    tenant,
                    year,
                    dir,
                    key_file,
                    keys,
                    by,
                },
        } => {
            let database = database_url(database)?;
            let tenant = kakanai_protocol::topic::Ident::new(&tenant).context("--tenant")?;
            let key =
                kakanai_provisioning::keyfile::read_signing_key(&key_file).context("--key-file")?;
            let mut known = public_keys(&keys)?;
            let own = key.verifying_key();
            known.insert(KeyId::of_key(&own), own);
            let by = audit_cli_actor(by);
            let archived = runtime()?.block_on(async {
                let store = kakanai_control_plane::store::Store::open(&database)
                    .await
                    .context("opening the store")?;
                anyhow::Ok(
                    audit::retention::archive_year(
                        &store,
                        &tenant,
                        year,
                        &dir,
                        &key,
                        &known,
                        &by,
                        now_ms(),
                    )
                    .await?,
                )
            })?;
            println!("{}", serde_json::to_string_pretty(&archived)?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Audit {
            command:
                AuditCommand::Purge {
                    database,
                    tenant,
                    year,
                    archive,
                    keys,
                    retention_years,
                    by,
                },
        } => {
            let database = database_url(database)?;
            let tenant = kakanai_protocol::topic::Ident::new(&tenant).context("--tenant")?;
            let known = public_keys(&keys)?;
            let policy = audit::RetentionPolicy::new(retention_years)?;
            let by = audit_cli_actor(by);
            let deleted = runtime()?.block_on(async {
                let store = kakanai_control_plane::store::Store::open(&database)
                    .await
                    .context("opening the store")?;
                anyhow::Ok(
                    audit::retention::purge_year(
                        &store,
                        &tenant,
                        year,
                        &archive,
                        &known,
                        policy,
                        &by,
                        now_ms(),
                    )
                    .await?,
                )
            })?;
            println!(
                "{}",
                serde_json::json!({ "fiscal_year": year, "entries_deleted": deleted })
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Audit {
            command: AuditCommand::VerifyArchive { file, keys },
        } => {
            let known = public_keys(&keys)?;
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

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

/// `tenant add`.
fn tenant_add(database: Option<String>, tenant: &str, name: &str) -> anyhow::Result<()> {
    let database = database_url(database)?;
    let id = kakanai_protocol::topic::Ident::new(tenant).context("--tenant")?;
    let name = name.trim();
    anyhow::ensure!(!name.is_empty(), "--name: the city's name is needed");
    runtime()?.block_on(async {
        let store = kakanai_control_plane::store::Store::open(&database)
            .await
            .context("opening the store")?;
        match store.get_tenant(&id).await? {
            Some(t) => println!("tenant {id} exists ({})", t.name),
            None => {
                let record = kakanai_control_plane::store::Tenant {
                    id: id.clone(),
                    name: name.to_owned(),
                };
                store.create_tenant(&record, now_ms()).await?;
                println!("tenant {id} created");
            }
        }
        Ok(())
    })
}

/// `--database`, else `KAKANAI_DATABASE_URL`.
/// Who runs an `audit archive|purge` (recorded as an administrator from the CLI).
fn audit_cli_actor(by: Option<String>) -> kakanai_control_plane::model::Actor {
    let user = by
        .or_else(|| std::env::var("SUDO_USER").ok())
        .or_else(|| std::env::var("USER").ok())
        .unwrap_or_else(|| "unknown".into());
    kakanai_control_plane::model::Actor::Admin(format!("cli:{user}"))
}

fn database_url(arg: Option<String>) -> anyhow::Result<String> {
    match arg {
        Some(d) => Ok(d),
        None => std::env::var("KAKANAI_DATABASE_URL")
            .context("--database or KAKANAI_DATABASE_URL is needed"),
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// `catalog diff`, `catalog install`, `catalog list`.
mod catalog_admin {
    use std::path::Path;
    use std::process::ExitCode;
    use std::sync::Arc;

    use anyhow::Context as _;
    use kakanai_control_plane::rules::{self, Catalogue, CatalogueSet};
    use kakanai_control_plane::store::{CatalogueInstallError, CatalogueVersion, Store, Tenant};

    /// The version `path` names: a version directory (it has a `catalogue.toml`; its
    /// parent is loaded, since it may extend a sibling) or a catalogue directory (its
    /// newest version).
    pub(super) fn version_at(path: &Path) -> anyhow::Result<Arc<Catalogue>> {
        let is_version = path.join("catalogue.toml").is_file();
        let root = match (is_version, path.parent()) {
            (true, Some(parent)) if !parent.as_os_str().is_empty() => parent,
            (true, _) => Path::new("."),
            (false, _) => path,
        };
        let set = CatalogueSet::load(root)
            .map_err(|errors| anyhow::anyhow!("{}", rules::RulesError::Catalogue(errors)))?;
        let found = if is_version {
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            set.versions().iter().find(|c| c.dir == name).cloned()
        } else {
            set.versions().last().cloned()
        };
        found.with_context(|| format!("{}: no catalogue version", path.display()))
    }

    fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
        Ok(tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?)
    }

    pub(super) fn install(
        database: &str,
        tenant: &str,
        dir: &Path,
        by: &str,
    ) -> anyhow::Result<ExitCode> {
        let tenant = kakanai_protocol::topic::Ident::new(tenant).context("--tenant")?;
        let files = match rules::catalog::read_files(dir) {
            Ok(f) => f,
            Err(errors) => return Ok(refused(&errors)),
        };
        let now_ms = super::now_ms();
        runtime()?.block_on(async {
            let store = Store::open(database).await.context("opening the store")?;
            if store.get_tenant(&tenant).await?.is_none() {
                let record = Tenant {
                    id: tenant.clone(),
                    name: tenant.as_str().to_owned(),
                };
                store.create_tenant(&record, now_ms).await?;
            }
            match store
                .install_catalogue_versions(&tenant, &files, by, now_ms)
                .await
            {
                Ok(outcome) => {
                    for name in &outcome.installed {
                        println!("installed {name}");
                    }
                    for name in &outcome.unchanged {
                        println!("unchanged {name}");
                    }
                    print_schedule(&outcome.versions);
                    Ok(ExitCode::SUCCESS)
                }
                Err(CatalogueInstallError::Invalid(errors)) => Ok(refused(&errors)),
                Err(e @ (CatalogueInstallError::InForce(_) | CatalogueInstallError::Empty)) => {
                    eprintln!("{e}; nothing was changed");
                    Ok(ExitCode::from(1))
                }
                Err(CatalogueInstallError::Store(e)) => Err(e.into()),
            }
        })
    }

    fn refused(errors: &[rules::CatalogueError]) -> ExitCode {
        for e in errors {
            println!("{e}");
        }
        eprintln!(
            "{} error(s); the catalogue is rejected and nothing was changed",
            errors.len()
        );
        ExitCode::from(1)
    }

    pub(super) fn list(database: &str, tenant: &str) -> anyhow::Result<ExitCode> {
        let tenant = kakanai_protocol::topic::Ident::new(tenant).context("--tenant")?;
        runtime()?.block_on(async {
            let store = Store::open(database).await.context("opening the store")?;
            let versions = store
                .list_catalogue_versions(&tenant, super::now_ms())
                .await?;
            if versions.is_empty() {
                println!("no catalogue version stored for {}", tenant.as_str());
            }
            print_schedule(&versions);
            Ok(ExitCode::SUCCESS)
        })
    }

    /// One line per version: its period, status, label and who uploaded it when.
    fn print_schedule(versions: &[CatalogueVersion]) {
        for v in versions {
            let until = v
                .effective_until
                .map_or_else(String::new, |d| d.to_string());
            // The upload day in Japan (UTC+9), the day the city's staff would name.
            let uploaded =
                rules::Date::from_days((v.uploaded_at_ms + 9 * 3_600_000).div_euclid(86_400_000));
            println!(
                "{} – {:<10}  {}  {} ({})  uploaded {} by {}",
                v.effective_from,
                until,
                v.status.label(),
                v.name,
                v.version,
                uploaded,
                v.uploaded_by
            );
        }
    }
}

/// `--key HEX` values as a key-id → key map.
fn public_keys(keys: &[String]) -> anyhow::Result<std::collections::HashMap<KeyId, VerifyingKey>> {
    let mut known = std::collections::HashMap::new();
    for k in keys {
        let key = hex::decode(k.trim())
            .ok()
            .and_then(|b| VerifyingKey::from_bytes(&b).ok())
            .with_context(|| format!("--key {k}: not a 32-byte public key in hex"))?;
        known.insert(KeyId::of_key(&key), key);
    }
    Ok(known)
}

/// Where `import` reads files.
enum ImportSource {
    /// Full files named as in the mapping.
    Dir(PathBuf),
    /// A drop directory (markers, full and delta, done/ and rejected/).
    DropDir(PathBuf),
}

fn import(
    database: &str,
    tenant: &str,
    source: &ImportSource,
    key_file: Option<&Path>,
) -> anyhow::Result<ExitCode> {
    use kakanai_control_plane::residents::{import_dir, ImportOptions, Mapping, MyNumberKey};
    let tenant = kakanai_protocol::topic::Ident::new(tenant).context("--tenant")?;
    let my_number_key = match key_file {
        None => None,
        Some(path) => {
            let secret = kakanai_provisioning::keyfile::read_secret(path, 32)
                .context("--my-number-key-file")?;
            let bytes: [u8; 32] = secret
                .try_into()
                .map_err(|_| anyhow::anyhow!("--my-number-key-file: not 32 bytes"))?;
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
        let all_applied = match source {
            ImportSource::Dir(dir) => {
                let report =
                    import_dir(&store, &tenant, dir, &Mapping::reference(), &options).await?;
                print!("{report}");
                report.all_applied()
            }
            ImportSource::DropDir(dir) => {
                let run = kakanai_control_plane::residents::drop::import_drop_dir(
                    &store,
                    &tenant,
                    dir,
                    &Mapping::reference(),
                    &options,
                )
                .await?;
                print!("{run}");
                run.all_applied()
            }
        };
        Ok(if all_applied {
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
    let http_security = service::https::HttpSecurity::load(path)?;
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
            store: Some(store.clone()),
            http_security,
            ..Default::default()
        };
        staff.register_rpc(&mut options.dispatcher);
        // procedures.determine over the catalogue versions stored per tenant.
        options
            .dispatcher
            .register(std::sync::Arc::new(rules::rpc::DetermineHandler::new(
                store.clone(),
            )));
        options.sessions = staff;
        // applications.create-certificate-request, .accept, .cancel, .list.
        kakanai_control_plane::applications::rpc::register(&mut options.dispatcher, store.clone());
        // applications.print: forms rendered here, printed at the calling counter.
        // The fonts and templates are checked now: a missing font stops the start.
        let engine = std::sync::Arc::new(
            kakanai_documents::Engine::new(kakanai_documents::EngineConfig::default())
                .context("starting the document engine")?,
        );
        let print_handler = kakanai_control_plane::applications::print::PrintHandler::new();
        options
            .dispatcher
            .register(std::sync::Arc::new(print_handler.clone()));
        // residents.lookup-card, residents.search, residents.get, residents.household.
        let drop_config = kakanai_control_plane::residents::drop::DropConfig::load(path)
            .map_err(|e| anyhow::anyhow!(e))?;
        let mapping = drop_config.as_ref().map_or_else(
            || std::sync::Arc::new(kakanai_control_plane::residents::Mapping::reference()),
            |c| std::sync::Arc::clone(&c.mapping),
        );
        kakanai_control_plane::residents::rpc::ResidentsRpc::new(store.clone(), mapping)
            .register(&mut options.dispatcher);
        // counter.*: the counter flows (certificates, life events), printing once running.
        let counter = kakanai_control_plane::counter::CounterRpc::new(
            store.clone(),
            drop_config
                .as_ref()
                .and_then(|c| c.my_number_key.as_ref())
                .map(kakanai_control_plane::residents::MyNumberKey::new),
        );
        counter.register(&mut options.dispatcher);
        let tenants = config.tenants.clone();
        let ops_socket = service::operations::socket_path(&config.data_dir);
        let export_schedule = kakanai_control_plane::applications::schedule::load(path)
            .map_err(|e| anyhow::anyhow!(e))?;
        let fleet_sync = kakanai_control_plane::service::fleet_sync::FleetSyncConfig::load(path)
            .map_err(|e| anyhow::anyhow!(e))?;
        let running = service::start(config, options)
            .await
            .context("starting the service")?;
        counter.printing_ready(kakanai_control_plane::applications::print::Printing::new(
            std::sync::Arc::clone(&engine),
            store.clone(),
            running.service().clone(),
        ));
        print_handler.ready(kakanai_control_plane::applications::print::Printing::new(
            engine,
            store.clone(),
            running.service().clone(),
        ));
        // Central IT's operations on appliances (`device logs|restart`), asked
        // through a socket only the service's user and root can open.
        let (ops_stop, ops_stopped) = tokio::sync::watch::channel(false);
        let ops_task =
            service::operations::serve_socket(running.service().clone(), ops_socket, ops_stopped)
                .await
                .context("opening the operations socket")?;
        // Devices enrolled or revoked by central IT (kakanai-provision CA directories).
        let (fleet_stop, fleet_stopped) = tokio::sync::watch::channel(false);
        if let Some(c) = fleet_sync {
            tokio::spawn(kakanai_control_plane::service::fleet_sync::run(
                store.clone(),
                c,
                fleet_stopped,
            ));
        }
        // The RPA/data export, on its schedule.
        let exporter = export_schedule.map(|s| {
            kakanai_control_plane::applications::schedule::spawn(store.clone(), tenants.clone(), s)
        });
        // The drop directory of core-system files, on its schedule.
        let scheduler = drop_config.map(|c| {
            let svc = running.service().clone();
            kakanai_control_plane::residents::drop::spawn_scheduler(
                store.clone(),
                tenants,
                c,
                std::sync::Arc::new(move |kind, outcome| {
                    if outcome == kakanai_control_plane::residents::Outcome::Rejected {
                        svc.metrics().resident_import_failed(kind);
                    }
                }),
            )
        });
        shutdown_signal().await;
        tracing::info!("stopping");
        let _ = fleet_stop.send(true);
        let _ = ops_stop.send(true);
        let _ = ops_task.await;
        if let Some(s) = scheduler {
            s.stop().await;
        }
        if let Some(e) = exporter {
            e.stop().await;
        }
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

/// `export`: one batch of accepted applications, or `--again` an earlier one.
fn export_applications(
    database: &str,
    tenant: &str,
    out: &Path,
    form: Option<String>,
    again: Option<String>,
    mapping: Option<PathBuf>,
) -> anyhow::Result<ExitCode> {
    use kakanai_control_plane::applications::export::{export, export_again, ExportMapping};
    let tenant = kakanai_protocol::topic::Ident::new(tenant).context("--tenant")?;
    let mapping = match mapping {
        Some(path) => ExportMapping::load(&path)?,
        None => ExportMapping::reference(),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let store = kakanai_control_plane::store::Store::open(database)
            .await
            .context("opening the store")?;
        if store.get_tenant(&tenant).await?.is_none() {
            anyhow::bail!("no tenant {tenant}");
        }
        let report = match again {
            Some(batch) => {
                let by = kakanai_control_plane::model::Actor::Admin("cli".into());
                export_again(&store, &tenant, &mapping, out, &batch, &by, now_ms()).await?
            }
            None => export(&store, &tenant, &mapping, out, form.as_deref(), now_ms()).await?,
        };
        print!("{report}");
        Ok(if report.held_back.is_empty() {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(1)
        })
    })
}

/// `device logs|restart`: the command line's side of
/// `kakanai_control_plane::service::operations`.
mod device_ops {
    use std::path::PathBuf;
    use std::process::ExitCode;
    use std::time::Duration;

    use clap::{Args, Subcommand};
    use kakanai_control_plane::applications::export::jst_rfc3339;
    use kakanai_control_plane::service::operations::{request, SocketRequest, SocketResponse};
    use kakanai_protocol::catalogue::{Operation, OperationStatus};

    #[derive(Subcommand)]
    pub(super) enum DeviceCommand {
        /// Fetch an appliance's recent log lines (kept in its memory; no personal
        /// data) and print them, oldest first.
        Logs {
            #[command(flatten)]
            target: Target,
            /// At most this many lines, the newest.
            #[arg(long, default_value_t = 200)]
            lines: u32,
            /// Only lines of the last this many minutes.
            #[arg(long)]
            since_minutes: Option<u32>,
            /// Print the whole result as JSON.
            #[arg(long)]
            json: bool,
        },
        /// Restart an appliance: it reports, stops in order and is started again by
        /// systemd; waits until it is back online.
        Restart {
            #[command(flatten)]
            target: Target,
            /// Why (kept in the audit log and the appliance's log).
            #[arg(long, default_value = "restart requested by central IT")]
            reason: String,
        },
    }

    #[derive(Args)]
    pub(super) struct Target {
        /// The tenant (city).
        #[arg(long)]
        tenant: String,
        /// The device id.
        #[arg(long)]
        device: String,
        /// The running service's operations socket (DATA_DIR/control-plane.sock).
        #[arg(long, default_value = "/var/lib/kakanai/control-plane.sock")]
        socket: PathBuf,
        /// Who asks (for the audit log); default: SUDO_USER, else USER.
        #[arg(long)]
        by: Option<String>,
        /// How long to wait for the appliance, in seconds (also the command's expiry).
        #[arg(long, default_value_t = 60)]
        wait: u64,
    }

    fn operator(by: Option<String>) -> String {
        by.or_else(|| std::env::var("SUDO_USER").ok())
            .or_else(|| std::env::var("USER").ok())
            .unwrap_or_else(|| "unknown".to_owned())
    }

    pub(super) fn run(command: DeviceCommand) -> anyhow::Result<ExitCode> {
        let (target, operation, json) = match command {
            DeviceCommand::Logs {
                target,
                lines,
                since_minutes,
                json,
            } => {
                let since_ms =
                    since_minutes.map(|m| super::now_ms().saturating_sub(i64::from(m) * 60_000));
                (
                    target,
                    Operation::Logs {
                        since_ms,
                        max_lines: lines,
                    },
                    json,
                )
            }
            DeviceCommand::Restart { target, reason } => {
                (target, Operation::Restart { reason }, false)
            }
        };
        let is_logs = matches!(operation, Operation::Logs { .. });
        let req = SocketRequest {
            tenant: target.tenant,
            device: target.device.clone(),
            operation,
            by: operator(target.by),
            wait_s: target.wait,
        };
        let runtime = super::runtime()?;
        let answer = runtime.block_on(async {
            tokio::time::timeout(
                Duration::from_secs(target.wait.saturating_add(30)),
                request(&target.socket, &req),
            )
            .await
        });
        let answer = match answer {
            Ok(a) => a?,
            Err(_) => anyhow::bail!("no answer from the control plane"),
        };
        let outcome = match answer {
            SocketResponse::Ok(o) => o,
            SocketResponse::Error(e) => {
                eprintln!("kakanai-control-plane: {}: {e}", target.device);
                return Ok(ExitCode::from(1));
            }
        };
        if json {
            println!("{}", serde_json::to_string_pretty(&outcome)?);
        } else if is_logs {
            for l in &outcome.result.logs {
                println!(
                    "{} {:5} {}: {}",
                    jst_rfc3339(l.time_ms),
                    l.level,
                    l.target,
                    l.text
                );
            }
            if outcome.result.truncated {
                eprintln!("(older lines left out)");
            }
        } else {
            println!("{}: {}", target.device, outcome.result.message);
            match outcome.back_online_boot {
                Some(boot) => println!("{}: back online (boot {boot})", target.device),
                None if outcome.result.status == OperationStatus::Done => {
                    println!("{}: not back online yet", target.device);
                }
                None => {}
            }
        }
        Ok(match outcome.result.status {
            OperationStatus::Done => ExitCode::SUCCESS,
            OperationStatus::Failed => {
                eprintln!(
                    "kakanai-control-plane: {}: {}",
                    target.device, outcome.result.message
                );
                ExitCode::from(1)
            }
        })
    }
}
