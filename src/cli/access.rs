//! `hubauth access`: the runtime allow-list, from the command line.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Subcommand, ValueEnum};

use crate::admin::access::{self, NewEntry};
use crate::clock::{Clock, SystemClock};

/// Whom an entry names: exactly one of these.
#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
pub struct Selector {
    /// A hub username (after the connector's username rule).
    #[arg(long)]
    username: Option<String>,
    /// An e-mail address; matches only when the provider says it is verified.
    #[arg(long)]
    email: Option<String>,
    /// An account's login at one connector, e.g. github:octocat.
    #[arg(long, value_name = "CONNECTOR:LOGIN")]
    login: Option<String>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Format {
    Table,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum AccessCommand {
    /// Admit someone (or change the entry naming them): their next sign-in is admitted with
    /// the reason code allow_list, and the groups are added to theirs.
    Allow {
        #[arg(long, short, env = "HUBAUTH_CONFIG")]
        config: PathBuf,
        #[command(flatten)]
        who: Selector,
        /// A group to add to the person's groups; repeat for several.
        #[arg(long = "group")]
        groups: Vec<String>,
        /// Why, for the other admins (not shown to the person).
        #[arg(long)]
        note: Option<String>,
        /// The entry stops admitting after this, e.g. 30d (default: never).
        #[arg(long, value_parser = humantime::parse_duration)]
        expires_in: Option<Duration>,
    },
    /// Remove the entry naming someone: they lose access at their next re-check unless another
    /// rule admits them.
    Deny {
        #[arg(long, short, env = "HUBAUTH_CONFIG")]
        config: PathBuf,
        #[command(flatten)]
        who: Selector,
    },
    /// Every entry, expired ones included.
    List {
        #[arg(long, short, env = "HUBAUTH_CONFIG")]
        config: PathBuf,
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
    },
}

pub async fn run(command: AccessCommand) -> anyhow::Result<()> {
    match command {
        AccessCommand::Allow { config, who, groups, note, expires_in } => {
            let config = super::load_config(&config)?;
            let new = NewEntry { username: who.username, email: who.email, login: who.login, groups, note, expires_in };
            let entry = access::entry(&config, &new, &crate::admin::Actor::cli().name, SystemClock.now())
                .map_err(|m| anyhow::anyhow!(m))?;
            let store = crate::app::open_store(&config).await?;
            let (stored, replaced) = access::allow(store.as_ref(), &entry, None).await?;
            println!(
                "{} allow-list entry {} for {}",
                if replaced { "replaced" } else { "added" },
                stored.id,
                stored.selector
            );
            if access::hub_is_open(&config) {
                eprintln!(
                    "note: no [access] rule admits anyone in particular, so this hub admits everyone who can sign in; \
                     the entry adds its groups but restricts no one"
                );
            }
            Ok(())
        }
        AccessCommand::Deny { config, who } => {
            let config = super::load_config(&config)?;
            let selector =
                access::selector(&config, who.username.as_deref(), who.email.as_deref(), who.login.as_deref())
                    .map_err(|m| anyhow::anyhow!(m))?;
            let store = crate::app::open_store(&config).await?;
            let Some(entry) = store.access_entry(&selector).await? else {
                anyhow::bail!("no allow-list entry for {selector} (see `hubauth access list`)");
            };
            match access::deny(store.as_ref(), &entry.id, &crate::admin::Actor::cli().name, SystemClock.now(), None)
                .await?
            {
                Some(removed) => {
                    println!("removed allow-list entry {} for {}", removed.id, removed.selector);
                    Ok(())
                }
                None => anyhow::bail!("the allow-list entry for {selector} was removed meanwhile"),
            }
        }
        AccessCommand::List { config, format } => {
            let config = super::load_config(&config)?;
            let store = crate::app::open_store(&config).await?;
            let now = SystemClock.now();
            let views: Vec<_> = store.access_entries().await?.iter().map(|e| access::view(e, now)).collect();
            match format {
                Format::Json => println!("{}", serde_json::to_string_pretty(&views)?),
                Format::Table => {
                    println!(
                        "{:<12} {:<8} {:<32} {:<8} {:<24} {:>12}  {:<16} NOTE",
                        "ID", "KIND", "WHO", "STATE", "GROUPS", "EXPIRES", "BY"
                    );
                    for v in views {
                        let who = match &v.connector {
                            Some(c) => format!("{c}:{}", v.value),
                            None => v.value.clone(),
                        };
                        println!(
                            "{:<12} {:<8} {:<32} {:<8} {:<24} {:>12}  {:<16} {}",
                            v.id,
                            v.kind,
                            who,
                            v.state,
                            v.groups.join(","),
                            v.expires_at.map(|t| t.to_string()).unwrap_or_else(|| "never".into()),
                            v.created_by,
                            v.note.unwrap_or_default()
                        );
                    }
                }
            }
            Ok(())
        }
    }
}
