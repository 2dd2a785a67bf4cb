//! `hubauth db`: the schema (status, explicit migration) and moving to PostgreSQL.

use std::path::PathBuf;

use clap::Subcommand;

use crate::config::StorageConfig;
use crate::store::Migrate;

#[derive(Debug, Subcommand)]
pub enum DbCommand {
    /// Bring the database's schema up to date (what `serve` does at start unless
    /// `[storage] migrate = false`).
    Migrate {
        #[arg(long, short, env = "HUBAUTH_CONFIG")]
        config: PathBuf,
    },
    /// Say which schema version the database is at and which this hubauth needs.
    Status {
        #[arg(long, short, env = "HUBAUTH_CONFIG")]
        config: PathBuf,
    },
    /// Copy everything from a SQLite database into an empty PostgreSQL database: users,
    /// identities, sessions, tokens and signing keys, so nobody is signed out. Stop `serve` (or
    /// accept that what happens after the snapshot is not copied), copy, then point
    /// `[storage] url` at PostgreSQL.
    Copy {
        /// The SQLite database: sqlite:///path/to/hubauth.db
        #[arg(long)]
        from: String,
        /// The PostgreSQL database: postgres://user@host/db (a password may come from
        /// PGPASSWORD; sslmode and sslrootcert as URL parameters).
        #[arg(long, env = "HUBAUTH_COPY_TO")]
        to: String,
    },
}

pub async fn run(command: DbCommand) -> anyhow::Result<()> {
    match command {
        DbCommand::Migrate { config } => {
            let config = super::load_config(&config)?;
            crate::store::open(&config.storage, Migrate::Apply).await?;
            println!("{}: schema up to date", config.storage.display_url());
            Ok(())
        }
        DbCommand::Status { config } => {
            let config = super::load_config(&config)?;
            let (applied, latest) = crate::store::schema_versions(&config.storage).await?;
            println!("{}: schema version {applied}; this hubauth needs {latest}", config.storage.display_url());
            // Opening checks the rest (a newer schema this release may still work on).
            match crate::store::open(&config.storage, Migrate::Refuse).await {
                Ok(_) => println!("schema up to date"),
                Err(e) => anyhow::bail!("{e:#}"),
            }
            Ok(())
        }
        DbCommand::Copy { from, to } => {
            anyhow::ensure!(from.starts_with("sqlite://"), "--from must be a sqlite:// URL");
            let target = StorageConfig { url: to, ..StorageConfig::default() };
            anyhow::ensure!(target.is_postgres(), "--to must be a postgres:// URL");
            let report = crate::store::copy::sqlite_to_postgres(&from, &target).await?;
            for (table, rows) in &report {
                println!("{table:<24} {rows:>8} rows");
            }
            println!("copied {} into {}", from, target.display_url());
            Ok(())
        }
    }
}
