//! The PostgreSQL schema: migrations (run by sqlx's migrator, which holds an advisory lock so
//! replicas starting together migrate once), and the checks that keep a binary off a schema it
//! cannot work with.

use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::SqlSafeStr;

use super::*;

fn migrations() -> Vec<Migration> {
    [
        (1, "init", include_str!("../../../migrations/postgres/0001_init.sql")),
        (2, "login throttle", include_str!("../../../migrations/postgres/0002_login_throttle.sql")),
        (3, "access list", include_str!("../../../migrations/postgres/0003_access_list.sql")),
        (4, "user activity", include_str!("../../../migrations/postgres/0004_user_activity.sql")),
        (5, "admin tokens", include_str!("../../../migrations/postgres/0005_admin_tokens.sql")),
        (6, "user audit", include_str!("../../../migrations/postgres/0006_user_audit.sql")),
    ]
    .into_iter()
    .map(|(version, description, sql)| {
        Migration::new(version, description.into(), MigrationType::Simple, sql.into_sql_str(), false)
    })
    .collect()
}

/// The newest schema version this binary knows.
pub fn latest_version() -> i64 {
    migrations().iter().map(|m| m.version).max().unwrap_or(0)
}

/// The newest migration applied to the database (0 for an empty one).
pub async fn applied_version(pool: &PgPool) -> anyhow::Result<i64> {
    let has_table: bool = sqlx::query_scalar("SELECT to_regclass('_sqlx_migrations') IS NOT NULL")
        .fetch_one(pool)
        .await
        .context("cannot read the schema version")?;
    if !has_table {
        return Ok(0);
    }
    let version: Option<i64> = sqlx::query_scalar("SELECT max(version) FROM _sqlx_migrations WHERE success")
        .fetch_one(pool)
        .await
        .context("cannot read the schema version")?;
    Ok(version.unwrap_or(0))
}

/// Brings the schema up to date (`migrate`) or checks it is; refuses a schema that is newer than
/// this binary unless the database says this release can still work on it.
pub(super) async fn prepare(pool: &PgPool, migrate: bool) -> anyhow::Result<()> {
    let (applied, latest) = (applied_version(pool).await?, latest_version());
    if applied > latest {
        let oldest_reader: i64 = sqlx::query_scalar("SELECT oldest_reader FROM hubauth_schema WHERE id = 1")
            .fetch_one(pool)
            .await
            .context("cannot read which releases this schema supports")?;
        anyhow::ensure!(
            latest >= oldest_reader,
            "the database schema is at version {applied}, newer than this hubauth (it knows up to {latest}), and \
             needs a release that knows version {oldest_reader} or later: run the newer hubauth (or restore a backup \
             taken before the upgrade)"
        );
        tracing::warn!(
            schema = applied,
            known = latest,
            "the database schema is newer than this hubauth but still compatible with it (a rolling upgrade in progress?)"
        );
        return Ok(());
    }
    if applied == latest {
        return Ok(());
    }
    anyhow::ensure!(
        migrate,
        "the database schema is at version {applied} and this hubauth needs version {latest}: run \
         `hubauth db migrate --config …` (or set [storage] migrate = true)"
    );
    Migrator::with_migrations(migrations()).run(pool).await.context("database migration failed")?;
    tracing::info!(from = applied, to = latest, "database schema migrated");
    Ok(())
}
