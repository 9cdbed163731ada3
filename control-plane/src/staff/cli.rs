//! `kakanai-control-plane staff …`: the city's first administrator and groups from the
//! command line (the admin UI manages everything after that), and the demo and
//! training accounts.
//!
//! - `staff group --tenant T NAME [--description D] --permission P…`: creates the group
//!   or replaces its description and permissions (every permission checked against the
//!   catalogue: `staff permissions` lists them).
//! - `staff add --tenant T LOGIN --name NAME [--group G…] [--training]`: creates an
//!   account; the password is the first line of stdin (never an argument: argv is
//!   visible to every user of the machine). The password must be changed at first
//!   login, except with `--training` (demo and training environments, whose exercises
//!   print the accounts).
//! - `staff list --tenant T`: login ids, groups and state (no display names: they are
//!   personal data and the terminal may be logged).
//! - `staff permissions`: the permission catalogue.
//!
//! Every change goes through [`AdminOps`] with `Actor::Admin("cli:$USER")` and
//! `Place::Internal`: the same checks and the same audit entries as the admin UI.

use std::collections::BTreeSet;
use std::io::BufRead as _;

use anyhow::Context as _;
use clap::Subcommand;

use super::permissions::CATALOGUE;
use super::{Secret, StaffPolicy, StaffService};
use crate::admin::ops::{AdminOps, Who};
use crate::model::{Actor, Place, TenantId};
use crate::store::{Group, Store};

/// The `staff` subcommands.
#[derive(Debug, Subcommand)]
pub enum StaffCommand {
    /// Create a group or replace its description and permissions.
    Group {
        /// The database (sqlite://PATH?mode=rwc or postgres://…); default: the
        /// KAKANAI_DATABASE_URL environment variable.
        #[arg(long)]
        database: Option<String>,
        /// The tenant (city).
        #[arg(long)]
        tenant: String,
        /// The group's name.
        name: String,
        /// What the group is for.
        #[arg(long, default_value = "")]
        description: String,
        /// A permission (see `staff permissions`); repeat for several.
        #[arg(long = "permission", required = true)]
        permissions: Vec<String>,
    },
    /// Create a staff account; its password is read from the first line of stdin.
    Add {
        /// The database; default: KAKANAI_DATABASE_URL.
        #[arg(long)]
        database: Option<String>,
        /// The tenant (city).
        #[arg(long)]
        tenant: String,
        /// The login id.
        login_id: String,
        /// The display name.
        #[arg(long)]
        name: String,
        /// A group to join; repeat for several.
        #[arg(long = "group")]
        groups: Vec<String>,
        /// Demo and training environments only: the password need not be changed at
        /// first login.
        #[arg(long)]
        training: bool,
    },
    /// List the tenant's accounts (login id, groups, state).
    List {
        /// The database; default: KAKANAI_DATABASE_URL.
        #[arg(long)]
        database: Option<String>,
        /// The tenant (city).
        #[arg(long)]
        tenant: String,
    },
    /// List the permissions groups can hold.
    Permissions,
}

fn database_url(arg: Option<String>) -> anyhow::Result<String> {
    match arg {
        Some(d) => Ok(d),
        None => std::env::var("KAKANAI_DATABASE_URL")
            .context("--database or KAKANAI_DATABASE_URL is needed"),
    }
}

async fn open(database: Option<String>, tenant: &str) -> anyhow::Result<(AdminOps, Who)> {
    let url = database_url(database)?;
    let tenant = TenantId::new(tenant).context("--tenant")?;
    let store = Store::open(&url).await.context("opening the store")?;
    if store.get_tenant(&tenant).await?.is_none() {
        anyhow::bail!("no tenant {tenant} in this database (create it with `tenant add`)");
    }
    let user = std::env::var("USER").unwrap_or_else(|_| "unknown".into());
    let who = Who {
        tenant,
        actor: Actor::Admin(format!("cli:{user}")),
        place: Place::Internal,
    };
    Ok((
        AdminOps::new(StaffService::new(store, StaffPolicy::default())),
        who,
    ))
}

/// Runs a `staff` subcommand.
pub async fn run(command: StaffCommand) -> anyhow::Result<()> {
    match command {
        StaffCommand::Permissions => {
            for p in CATALOGUE {
                println!("{}\t{}", p.name, p.description);
            }
            Ok(())
        }
        StaffCommand::Group {
            database,
            tenant,
            name,
            description,
            permissions,
        } => {
            let (ops, who) = open(database, &tenant).await?;
            let group = Group {
                name: name.clone(),
                description,
                permissions: permissions.into_iter().collect(),
            };
            ops.put_group(&who, &group)
                .await
                .map_err(|e| anyhow::anyhow!("group {name}: {e}"))?;
            println!("group {name}: {} permissions", group.permissions.len());
            Ok(())
        }
        StaffCommand::Add {
            database,
            tenant,
            login_id,
            name,
            groups,
            training,
        } => {
            let mut line = String::new();
            std::io::stdin()
                .lock()
                .read_line(&mut line)
                .context("reading the password from stdin")?;
            let password = Secret::new(line.trim_end_matches(['\r', '\n']));
            let (ops, who) = open(database, &tenant).await?;
            let groups: BTreeSet<String> = groups.into_iter().collect();
            let created = if training {
                ops.create_training_staff(&who, &login_id, &name, &password, &groups)
                    .await
            } else {
                ops.create_staff(&who, &login_id, &name, &password, &groups)
                    .await
            };
            created.map_err(|e| anyhow::anyhow!("staff {login_id}: {e}"))?;
            println!(
                "staff {login_id}: created{}",
                if training {
                    " (training account)"
                } else {
                    "; the password must be changed at first login"
                }
            );
            Ok(())
        }
        StaffCommand::List { database, tenant } => {
            let (ops, who) = open(database, &tenant).await?;
            let store = ops.store();
            for s in store.list_staff(&who.tenant).await? {
                let groups = store.groups_of(&who.tenant, &s.login_id).await?;
                let state = if s.disabled {
                    "disabled"
                } else if s.must_change_password {
                    "must-change-password"
                } else {
                    "active"
                };
                println!("{}\t{}\t{state}", s.login_id, groups.join(","));
            }
            Ok(())
        }
    }
}
