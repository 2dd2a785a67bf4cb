//! `hubauth deprovision`: take many people out at once (dry run unless `--apply`).

use std::path::PathBuf;

use clap::Args;

use crate::admin::deprovision::{self, Action, Actor, HubApi};
use crate::admin::{rename, report};
use crate::clock::{Clock, SystemClock};

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("who").required(true).args(["inactive_since", "users_file", "user"])))]
#[command(group(clap::ArgGroup::new("action").args(["block", "delete"])))]
pub struct DeprovisionArgs {
    #[arg(long, short, env = "HUBAUTH_CONFIG")]
    config: PathBuf,
    /// Everyone with no sign-in and no token use for this long, e.g. 90d (as `report activity`).
    #[arg(long, value_parser = report::parse_age)]
    inactive_since: Option<i64>,
    /// Hub usernames, one a line (`#` comments), or the JSON of JupyterHub's GET /hub/api/users.
    #[arg(long)]
    users_file: Option<PathBuf>,
    /// A hub username (repeatable).
    #[arg(long)]
    user: Vec<String>,
    /// Block them: they cannot sign in again (the default).
    #[arg(long)]
    block: bool,
    /// Delete them and everything hubauth keeps of them (the audit log keeps their name).
    #[arg(long)]
    delete: bool,
    /// Make the changes. Without it nothing changes: it prints who and what would happen.
    #[arg(long)]
    apply: bool,
    /// Delete them from JupyterHub too ([jupyterhub] api_url and api_token).
    #[arg(long)]
    delete_from_hub: bool,
}

pub async fn run(args: DeprovisionArgs) -> anyhow::Result<()> {
    let config = super::load_config(&args.config)?;
    // Before anything changes: deleting from the hub must be possible for every person.
    let hub = if args.delete_from_hub { Some(HubApi::from_config(&config.jupyterhub)?) } else { None };
    let store = crate::app::open_store(&config).await?;
    let mut usernames = args.user.clone();
    if let Some(path) = &args.users_file {
        let text = std::fs::read_to_string(path).map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
        usernames.extend(rename::parse_hub_users(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?);
    }
    if let Some(age) = args.inactive_since {
        usernames
            .extend(report::rows(store.as_ref(), SystemClock.now(), Some(age)).await?.into_iter().map(|r| r.username));
    }
    let mut seen = std::collections::HashSet::new();
    usernames.retain(|u| seen.insert(u.clone()));
    let action = if args.delete { Action::Delete } else { Action::Block };
    let actor = Actor::cli();
    if !args.apply {
        eprintln!("dry run: nothing is changed (add --apply to make these changes)");
    }
    let outcomes =
        deprovision::run(store.as_ref(), &usernames, action, hub.as_ref(), args.apply, &actor, || SystemClock.now())
            .await;
    for o in &outcomes {
        println!("{}", o.describe());
    }
    let failed = outcomes.iter().filter(|o| o.failed()).count();
    eprintln!("{} user(s){}, {failed} failed", outcomes.len(), if args.apply { "" } else { " (dry run)" });
    if failed > 0 {
        anyhow::bail!("{failed} of {} user(s) failed; run the same command again to retry them", outcomes.len());
    }
    Ok(())
}
