//! `hubauth users`: list people, link accounts, and plan a change of username rule.

use std::collections::HashMap;
use std::path::PathBuf;

use clap::Subcommand;

use crate::admin::rename;
use crate::clock::{Clock, SystemClock};
use crate::identity::Normalizer;

#[derive(Debug, Subcommand)]
pub enum UsersCommand {
    /// Every user with the identities they sign in with.
    List {
        #[arg(long, short, env = "HUBAUTH_CONFIG")]
        config: PathBuf,
    },
    /// Let an upstream account sign in as an existing user (e.g. the same person at GitHub and
    /// at the university's Keycloak). The account's `subject` is the provider's id (GitHub:
    /// the numeric user id; OIDC: `sub`).
    Link {
        #[arg(long, short, env = "HUBAUTH_CONFIG")]
        config: PathBuf,
        /// The existing hub username.
        #[arg(long)]
        user: String,
        #[arg(long)]
        connector: String,
        #[arg(long)]
        subject: String,
    },
    /// Print, as CSV, the old → new usernames the username rules in --config would give every
    /// known user, with collisions and conflicts flagged. Changes nothing.
    PlanRename {
        /// The configuration with the NEW username rules (its database is read).
        #[arg(long, short, env = "HUBAUTH_CONFIG")]
        config: PathBuf,
        /// A JupyterHub user list: the JSON of GET /hub/api/users, or one name per line.
        #[arg(long)]
        hub_users: Option<PathBuf>,
    },
}

pub async fn run(command: UsersCommand) -> anyhow::Result<()> {
    match command {
        UsersCommand::List { config } => {
            let config = super::load_config(&config)?;
            let store = crate::app::open_store(&config).await?;
            println!("{:<24} {:<14} {:<24} UPSTREAM NAME", "USERNAME", "CONNECTOR", "SUBJECT");
            for (identity, username) in store.all_identities().await? {
                println!(
                    "{:<24} {:<14} {:<24} {}",
                    username,
                    identity.connector_id,
                    identity.subject,
                    identity.upstream_username.unwrap_or_default()
                );
            }
            Ok(())
        }
        UsersCommand::Link { config, user, connector, subject } => {
            let config = super::load_config(&config)?;
            if !config.connectors.iter().any(|c| c.id() == connector) {
                anyhow::bail!("there is no connector {connector:?}");
            }
            let store = crate::app::open_store(&config).await?;
            let target = store
                .user_by_username(&user)
                .await?
                .ok_or_else(|| anyhow::anyhow!("there is no user {user:?} (see `hubauth users list`)"))?;
            store.link_identity(&target.id, &connector, &subject, SystemClock.now()).await?;
            println!("{connector} account {subject} now signs in as {user}");
            Ok(())
        }
        UsersCommand::PlanRename { config, hub_users } => {
            let config = super::load_config(&config)?;
            let store = crate::app::open_store(&config).await?;
            let mut rules = HashMap::new();
            for c in &config.connectors {
                rules.insert(c.id().to_string(), Normalizer::new(c.username.clone()).map_err(|e| anyhow::anyhow!(e))?);
            }
            let hub = match hub_users {
                Some(path) => {
                    let text = std::fs::read_to_string(&path)
                        .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
                    Some(rename::parse_hub_users(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?)
                }
                None => None,
            };
            let rows = rename::plan(&store.all_identities().await?, &rules, hub.as_deref());
            print!("{}", rename::to_csv(&rows));
            let count = |s: &str| rows.iter().filter(|r| r.status == s).count();
            eprintln!(
                "{} users: {} unchanged, {} renamed, {} collisions, {} invalid, {} hub conflicts, {} only on the hub, {} on removed connectors",
                rows.iter().filter(|r| r.status != "hub_only").count(),
                count("unchanged"),
                count("renamed"),
                count("collision"),
                count("invalid"),
                count("hub_conflict"),
                count("hub_only"),
                count("connector_removed"),
            );
            Ok(())
        }
    }
}
