//! `hubauth admin tokens`: API tokens for scripts, stored hashed, with a scope and an expiry.

use std::path::PathBuf;

use clap::{Subcommand, ValueEnum};

use crate::admin::principal;
use crate::admin::Actor;
use crate::clock::{Clock, SystemClock};

#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Admin API tokens: create, list, revoke.
    Tokens {
        #[command(subcommand)]
        command: TokensCommand,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Scope {
    /// Look only: lists, reports, the audit log.
    Read,
    /// Everything an admin can do.
    Write,
}

#[derive(Debug, Subcommand)]
pub enum TokensCommand {
    /// Make a token and print it (shown once; only its hash is kept).
    Create {
        #[arg(long, short, env = "HUBAUTH_CONFIG")]
        config: PathBuf,
        /// What it is for, e.g. "nightly deprovision job".
        #[arg(long)]
        name: String,
        #[arg(long, value_enum)]
        scope: Scope,
        /// How long it works, e.g. 90d; without it, until revoked.
        #[arg(long)]
        expires_in: Option<String>,
    },
    /// List tokens (never their values).
    List {
        #[arg(long, short, env = "HUBAUTH_CONFIG")]
        config: PathBuf,
    },
    /// Revoke a token: it stops working at once.
    Revoke {
        #[arg(long, short, env = "HUBAUTH_CONFIG")]
        config: PathBuf,
        id: String,
    },
}

pub async fn run(command: AdminCommand) -> anyhow::Result<()> {
    let AdminCommand::Tokens { command } = command;
    match command {
        TokensCommand::Create { config, name, scope, expires_in } => {
            let config = super::load_config(&config)?;
            let store = crate::app::open_store(&config).await?;
            let now = SystemClock.now();
            let scope = match scope {
                Scope::Read => "read",
                Scope::Write => "write",
            };
            let (name, scope, expires_at) =
                principal::check_new_token(&name, scope, expires_in.as_deref(), now).map_err(|m| anyhow::anyhow!(m))?;
            let (token, value) =
                principal::create_token(store.as_ref(), &name, scope, &Actor::cli(), now, expires_at).await?;
            eprintln!(
                "admin token {} ({}, {}) created; it is shown once, keep it in a secret store:",
                token.id,
                token.scope.as_str(),
                match token.expires_at {
                    Some(t) => format!("expires at {t}"),
                    None => "until revoked".into(),
                }
            );
            println!("{value}");
            Ok(())
        }
        TokensCommand::List { config } => {
            let config = super::load_config(&config)?;
            let store = crate::app::open_store(&config).await?;
            let now = SystemClock.now();
            println!(
                "{:<10} {:<8} {:<6} {:>12} {:>12}  {:<16} NAME",
                "ID", "STATE", "SCOPE", "EXPIRES", "LAST USED", "CREATED BY"
            );
            for t in store.admin_tokens().await? {
                let v = principal::view(&t, now);
                let or_dash = |t: Option<i64>| t.map(|t| t.to_string()).unwrap_or_else(|| "-".into());
                println!(
                    "{:<10} {:<8} {:<6} {:>12} {:>12}  {:<16} {}",
                    v.id,
                    v.state,
                    v.scope,
                    or_dash(v.expires_at),
                    or_dash(v.last_used_at),
                    v.created_by,
                    v.name
                );
            }
            Ok(())
        }
        TokensCommand::Revoke { config, id } => {
            let config = super::load_config(&config)?;
            let store = crate::app::open_store(&config).await?;
            if principal::revoke_token(store.as_ref(), &id, &Actor::cli(), SystemClock.now()).await? {
                println!("admin token {id} revoked");
                Ok(())
            } else {
                anyhow::bail!("no live admin token with id {id:?} (see `hubauth admin tokens list`)")
            }
        }
    }
}
