//! The `hubauth` command line.

pub mod access;
pub mod admin;
pub mod db;
pub mod demo;
pub mod deprovision;
pub mod healthcheck;
pub mod invites;
pub mod jupyterhub_config;
pub mod keys;
pub mod report;
pub mod token;
pub mod users;

use std::io::BufRead;
use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::config::Config;

#[derive(Debug, Parser)]
#[command(name = "hubauth", version, about = "An OpenID Connect identity broker for JupyterHub")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Start a ready-to-try broker: embedded SQLite, generated keys, demo users, a JupyterHub client.
    Demo(demo::DemoArgs),
    /// Run the broker from a configuration file.
    Serve {
        #[arg(long, short, env = "HUBAUTH_CONFIG")]
        config: PathBuf,
    },
    /// Check a configuration file and say what is wrong with it, if anything.
    CheckConfig {
        #[arg(long, short, env = "HUBAUTH_CONFIG")]
        config: PathBuf,
    },
    /// Print the jupyterhub_config.py fragment for one client.
    JupyterhubConfig(jupyterhub_config::Args),
    /// Workshop invitation links: create, list, revoke.
    Invites {
        #[command(subcommand)]
        command: invites::InvitesCommand,
    },
    /// Admin API tokens for scripts (people sign in to the console instead).
    Admin {
        #[command(subcommand)]
        command: admin::AdminCommand,
    },
    /// The runtime allow-list: admit people beside the configured [access] rules.
    Access {
        #[command(subcommand)]
        command: access::AccessCommand,
    },
    /// People: list them, link accounts, plan a change of username rule.
    Users {
        #[command(subcommand)]
        command: users::UsersCommand,
    },
    /// Reports about the hub's people: `report activity`.
    Report {
        #[command(subcommand)]
        command: report::ReportCommand,
    },
    /// Take people out in bulk: revoke, block or delete (here and on the hub). Dry run by default.
    Deprovision(deprovision::DeprovisionArgs),
    /// Inside a notebook: print a fresh upstream access token (exchanges JUPYTERHUB_API_TOKEN).
    Token(token::TokenArgs),
    /// The database: schema status and migration, copying from SQLite to PostgreSQL.
    Db {
        #[command(subcommand)]
        command: db::DbCommand,
    },
    /// Manage ID-token signing keys.
    Keys {
        #[command(subcommand)]
        command: keys::KeysCommand,
    },
    /// Probe a running broker's /healthz (for container and Kubernetes exec probes): exit 0 or 1.
    Healthcheck(healthcheck::HealthcheckArgs),
    /// Print the argon2 hash of a password, for `dev` connector users (reads stdin without --password).
    HashPassword {
        #[arg(long)]
        password: Option<String>,
    },
}

pub fn load_config(path: &std::path::Path) -> anyhow::Result<Config> {
    Config::load(path).map_err(|e| anyhow::anyhow!("{e}"))
}

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Demo(args) => demo::run(args).await,
        Command::Serve { config } => crate::app::serve(load_config(&config)?).await,
        Command::CheckConfig { config } => {
            let c = match Config::load(&config) {
                Ok(c) => c,
                // All of them, one a line, each with its key.
                Err(crate::config::ConfigError::Problems { problems, .. }) if problems.len() > 1 => {
                    for (key, message) in &problems {
                        eprintln!("error: {}: `{key}`: {message}", config.display());
                    }
                    anyhow::bail!("{}: {} problems", config.display(), problems.len());
                }
                Err(e) => anyhow::bail!("{e}"),
            };
            // serve refuses to start without the keyring when tokens must be kept; say so now.
            let keeps_tokens = c.connectors.iter().any(|k| !matches!(k.kind, crate::config::ConnectorConfig::Dev(_)));
            if keeps_tokens {
                crate::connectors::http::UpstreamHttp::new(Default::default())?.ready()?;
            }
            match crate::crypto::Sealer::from_env() {
                Err(e) => anyhow::bail!("{e}"),
                Ok(None) if keeps_tokens => anyhow::bail!(
                    "{}: connectors that sign people in elsewhere keep upstream tokens, sealed with \
                     {key}; set {key} (make one with `hubauth keys generate-crypt-key`)",
                    config.display(),
                    key = crate::crypto::seal::CRYPT_KEY_ENV
                ),
                Ok(None) => eprintln!(
                    "warning: {key} is not set: the ID-token signing keys are stored unsealed in {} \
                     (set {key}; `hubauth keys generate-crypt-key` makes one)",
                    c.storage.display_url(),
                    key = crate::crypto::seal::CRYPT_KEY_ENV
                ),
                Ok(Some(_)) => {}
            }
            // Not errors: the config works as written, but may not do what its author thinks.
            for warning in crate::groups::audit::warnings(&c) {
                eprintln!("warning: {warning}");
            }
            println!(
                "{}: OK — issuer {}, {} client(s), {} connector(s), storage {}",
                config.display(),
                c.issuer,
                c.clients.len(),
                c.connectors.len(),
                c.storage.display_url()
            );
            Ok(())
        }
        Command::JupyterhubConfig(args) => jupyterhub_config::run(args),
        Command::Keys { command } => keys::run(command).await,
        Command::Db { command } => db::run(command).await,
        Command::Invites { command } => invites::run(command).await,
        Command::Admin { command } => admin::run(command).await,
        Command::Users { command } => users::run(command).await,
        Command::Access { command } => access::run(command).await,
        Command::Token(args) => token::run(args).await,
        Command::Report { command } => report::run(command).await,
        Command::Deprovision(args) => deprovision::run(args).await,
        Command::Healthcheck(args) => healthcheck::run(args).await,
        Command::HashPassword { password } => {
            let password = match password {
                Some(p) => p,
                None => {
                    let mut line = String::new();
                    std::io::stdin().lock().read_line(&mut line)?;
                    line.trim_end_matches(['\r', '\n']).to_string()
                }
            };
            if password.is_empty() {
                anyhow::bail!("the password is empty");
            }
            println!("{}", crate::crypto::password::hash_password(&password)?);
            Ok(())
        }
    }
}
