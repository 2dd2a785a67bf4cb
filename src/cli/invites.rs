//! `hubauth invites`: workshop invitation links, from the command line.

use std::path::PathBuf;
use std::time::Duration;

use clap::Subcommand;

use crate::admin::invites::{self, NewInvite};
use crate::clock::{Clock, SystemClock};

#[derive(Debug, Subcommand)]
pub enum InvitesCommand {
    /// Create an invite and print its link (shown once).
    Create {
        #[arg(long, short, env = "HUBAUTH_CONFIG")]
        config: PathBuf,
        /// How long the link works, e.g. 7d, 12h.
        #[arg(long, value_parser = humantime::parse_duration)]
        expires_in: Duration,
        /// How many people may use it (default: no limit).
        #[arg(long)]
        max_uses: Option<i64>,
        /// A group to grant; repeat for several.
        #[arg(long = "group")]
        groups: Vec<String>,
        /// Only sign-ins through this connector count.
        #[arg(long)]
        connector: Option<String>,
        /// Shown on the invite page, e.g. the workshop's name.
        #[arg(long)]
        note: Option<String>,
    },
    /// List invites and how often each was used.
    List {
        #[arg(long, short, env = "HUBAUTH_CONFIG")]
        config: PathBuf,
    },
    /// Withdraw an invite: its link stops working and people it admitted lose access at their
    /// next re-check.
    Revoke {
        #[arg(long, short, env = "HUBAUTH_CONFIG")]
        config: PathBuf,
        /// The invite's id (from `invites list`); ids made by older versions may start with `-`.
        #[arg(allow_hyphen_values = true)]
        id: String,
    },
}

pub async fn run(command: InvitesCommand) -> anyhow::Result<()> {
    match command {
        InvitesCommand::Create { config, expires_in, max_uses, groups, connector, note } => {
            let config = super::load_config(&config)?;
            let store = crate::app::open_store(&config).await?;
            let new = NewInvite { expires_in, max_uses, groups, connector, note };
            let created =
                invites::create(store.as_ref(), &config, &new, &crate::admin::Actor::cli(), SystemClock.now()).await?;
            println!("invite {} (expires at {})", created.id, created.expires_at);
            println!("{}", created.link);
            Ok(())
        }
        InvitesCommand::List { config } => {
            let config = super::load_config(&config)?;
            let store = crate::app::open_store(&config).await?;
            let now = SystemClock.now();
            println!(
                "{:<12} {:<9} {:>9} {:>12}  {:<24} {:<12} NOTE",
                "ID", "STATE", "USES", "EXPIRES", "GROUPS", "CONNECTOR"
            );
            for i in store.invites().await? {
                let v = invites::view(&i, now);
                let uses = match v.max_uses {
                    Some(m) => format!("{}/{m}", v.uses),
                    None => v.uses.to_string(),
                };
                println!(
                    "{:<12} {:<9} {:>9} {:>12}  {:<24} {:<12} {}",
                    v.id,
                    v.state,
                    uses,
                    v.expires_at,
                    v.groups.join(","),
                    v.connector.unwrap_or_else(|| "any".into()),
                    v.note.unwrap_or_default()
                );
            }
            Ok(())
        }
        InvitesCommand::Revoke { config, id } => {
            let config = super::load_config(&config)?;
            let store = crate::app::open_store(&config).await?;
            if invites::revoke(store.as_ref(), &id, &crate::admin::Actor::cli(), SystemClock.now()).await? {
                println!("invite {id} revoked");
                Ok(())
            } else {
                anyhow::bail!("no open invite with id {id:?} (see `hubauth invites list`)")
            }
        }
    }
}
