//! `kakanai-control-plane backup …` and `kakanai-control-plane restore`: the
//! operator's commands (運用保守手順書 shows each one).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Args, Subcommand};

use super::{keygen, BackupConfig, Backups, Manifest};
use crate::audit::fiscal::JST_OFFSET_MS;
use crate::rules::calendar::Date;
use crate::store::Store;

/// Where the backups are and which key opens them.
#[derive(Debug, Args)]
pub struct Location {
    /// The backup directory.
    #[arg(long)]
    pub dir: PathBuf,
    /// The age identity file (mode 600) the backups are encrypted to.
    #[arg(long)]
    pub key_file: PathBuf,
}

/// `backup` subcommands.
#[derive(Debug, Subcommand)]
pub enum BackupCommand {
    /// Make a new backup key (an age X25519 identity) in a new file, mode 600.
    Keygen {
        /// The file to create.
        #[arg(long)]
        out: PathBuf,
    },
    /// Take a backup now, verify it by restoring it into a scratch store, and
    /// remove backups older than the retention (exit 0 verified, 1 failed).
    Now {
        /// The database; default: the KAKANAI_DATABASE_URL environment variable.
        #[arg(long)]
        database: Option<String>,
        /// Where the backups go.
        #[command(flatten)]
        location: Location,
        /// Keep backups of at least this many business days.
        #[arg(long, default_value_t = 2)]
        keep_business_days: u32,
    },
    /// List the backups with their verification.
    List {
        /// Where the backups are.
        #[command(flatten)]
        location: Location,
    },
    /// Verify a backup again (default: the newest).
    Verify {
        /// The database (PostgreSQL: the scratch database is made on its server).
        #[arg(long)]
        database: Option<String>,
        /// Where the backups are.
        #[command(flatten)]
        location: Location,
        /// The backup's name.
        #[arg(long)]
        name: Option<String>,
    },
}

/// `restore` arguments.
#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// The store to restore into; default: KAKANAI_DATABASE_URL. SQLite: stop the
    /// service first.
    #[arg(long)]
    pub database: Option<String>,
    /// Where the backups are.
    #[command(flatten)]
    pub location: Location,
    /// The backup's name; default: the newest verified one (at or before --at).
    #[arg(long)]
    pub name: Option<String>,
    /// Restore the newest verified backup taken at or before this time, in Japan
    /// time: `YYYY-MM-DD` (end of that day) or `YYYY-MM-DDTHH:MM`.
    #[arg(long)]
    pub at: Option<String>,
    /// Replace an existing store (SQLite: the old file is kept beside it).
    #[arg(long)]
    pub force: bool,
}

fn database_url(arg: Option<String>) -> anyhow::Result<String> {
    match arg {
        Some(d) => Ok(d),
        None => std::env::var("KAKANAI_DATABASE_URL")
            .context("--database or KAKANAI_DATABASE_URL is needed"),
    }
}

fn open(location: Location, keep: u32) -> anyhow::Result<Backups> {
    let mut config = BackupConfig::new(location.dir, location.key_file);
    config.keep_business_days = keep;
    Ok(Backups::open(config)?)
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

/// `YYYY-MM-DD` (end of that day) or `YYYY-MM-DDTHH:MM`, Japan time → ms since the
/// epoch.
pub fn parse_point(text: &str) -> anyhow::Result<i64> {
    let (date, time) = match text.split_once('T') {
        Some((d, t)) => (d, Some(t)),
        None => (text, None),
    };
    let date = Date::parse(date).map_err(|e| anyhow::anyhow!("--at: {e}"))?;
    let in_day = match time {
        None => 86_400_000 - 1,
        Some(t) => {
            let times = super::schedule::parse_times(&[t.to_owned()])
                .map_err(|_| anyhow::anyhow!("--at: the time must be HH:MM"))?;
            times[0] + 59_999
        }
    };
    Ok(date.to_days() * 86_400_000 + in_day - JST_OFFSET_MS)
}

fn describe(m: &Manifest) -> String {
    let verified = match &m.verification {
        None => "not verified".to_owned(),
        Some(v) if v.ok => format!("verified ({})", v.detail),
        Some(v) => format!("FAILED: {}", v.detail),
    };
    format!(
        "{}  {}  {} bytes  {} rows  {verified}",
        m.name,
        m.backend,
        m.size,
        m.total_rows()
    )
}

/// Runs a `backup` subcommand.
pub fn run(command: BackupCommand) -> anyhow::Result<ExitCode> {
    match command {
        BackupCommand::Keygen { out } => {
            let recipient = keygen(&out)?;
            println!(
                "backup key written to {} (public key {recipient})",
                out.display()
            );
            println!("keep a copy offline: without it no backup can be restored");
            Ok(ExitCode::SUCCESS)
        }
        BackupCommand::Now {
            database,
            location,
            keep_business_days,
        } => {
            let url = database_url(database)?;
            let backups = open(location, keep_business_days)?;
            runtime()?.block_on(async {
                let store = Store::open(&url).await.context("opening the store")?;
                let manifest = backups.backup(&store, &url).await?;
                let verification = backups.verify(&manifest, &url).await?;
                store.close().await;
                let mut manifest = manifest;
                manifest.verification = Some(verification.clone());
                println!("{}", describe(&manifest));
                if !verification.ok {
                    return Ok(ExitCode::from(1));
                }
                for name in backups.prune(super::now_ms())? {
                    println!("removed {name} (older than the retention)");
                }
                Ok(ExitCode::SUCCESS)
            })
        }
        BackupCommand::List { location } => {
            let backups = open(location, 2)?;
            for m in backups.list()? {
                println!("{}", describe(&m));
            }
            Ok(ExitCode::SUCCESS)
        }
        BackupCommand::Verify {
            database,
            location,
            name,
        } => {
            let url = database_url(database)?;
            let backups = open(location, 2)?;
            let all = backups.list()?;
            let manifest = match &name {
                Some(n) => all.into_iter().find(|m| &m.name == n),
                None => all.into_iter().last(),
            }
            .context("no such backup")?;
            let verification = runtime()?.block_on(backups.verify(&manifest, &url))?;
            println!(
                "{}: {}",
                manifest.name,
                if verification.ok {
                    "verified"
                } else {
                    "FAILED"
                }
            );
            println!("{}", verification.detail);
            Ok(if verification.ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
    }
}

/// Runs `restore`.
pub fn restore(args: RestoreArgs) -> anyhow::Result<ExitCode> {
    let url = database_url(args.database)?;
    let backups = open(args.location, 2)?;
    let manifest = match (&args.name, &args.at) {
        (Some(name), _) => backups
            .list()?
            .into_iter()
            .find(|m| &m.name == name && m.is_good())
            .with_context(|| format!("no verified backup named {name}"))?,
        (None, at) => backups.choose(at.as_deref().map(parse_point).transpose()?)?,
    };
    let detail = runtime()?.block_on(backups.restore(&manifest, &url, args.force))?;
    println!("restored {}: {detail}", manifest.name);
    Ok(ExitCode::SUCCESS)
}
