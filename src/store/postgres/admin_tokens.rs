//! Admin API tokens made at run time.

use super::*;

const ADMIN_TOKEN_COLUMNS: &str =
    "id, token_hash, name, scope, created_by, created_at, expires_at, revoked_at, last_used_at";

fn token_from_row(r: &PgRow) -> SqlResult<AdminToken> {
    let scope: String = r.try_get(3)?;
    Ok(AdminToken {
        id: r.try_get(0)?,
        token_hash: r.try_get(1)?,
        name: r.try_get(2)?,
        scope: AdminScope::parse(&scope).ok_or_else(|| sqlx::Error::ColumnDecode {
            index: "3".into(),
            source: format!("scope {scope:?}").into(),
        })?,
        created_by: r.try_get(4)?,
        created_at: r.try_get(5)?,
        expires_at: r.try_get(6)?,
        revoked_at: r.try_get(7)?,
        last_used_at: r.try_get(8)?,
    })
}

#[async_trait]
impl AdminTokenStore for PostgresStore {
    async fn create_admin_token(&self, t: &AdminToken) -> StoreResult<()> {
        self.execute(
            sqlx::query(AssertSqlSafe(format!(
                "INSERT INTO admin_tokens ({ADMIN_TOKEN_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
            )))
            .bind(&t.id)
            .bind(&t.token_hash)
            .bind(&t.name)
            .bind(t.scope.as_str())
            .bind(&t.created_by)
            .bind(t.created_at)
            .bind(t.expires_at)
            .bind(t.revoked_at)
            .bind(t.last_used_at),
        )
        .await?;
        Ok(())
    }

    async fn admin_token_by_hash(&self, token_hash: &str) -> StoreResult<Option<AdminToken>> {
        sqlx::query(AssertSqlSafe(format!("SELECT {ADMIN_TOKEN_COLUMNS} FROM admin_tokens WHERE token_hash = $1")))
            .bind(token_hash)
            .fetch_optional(&mut *self.conn().await?)
            .await
            .map_err(backend)?
            .map(|r| token_from_row(&r).map_err(backend))
            .transpose()
    }

    async fn admin_tokens(&self) -> StoreResult<Vec<AdminToken>> {
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT {ADMIN_TOKEN_COLUMNS} FROM admin_tokens ORDER BY created_at DESC, id"
        )))
        .fetch_all(&mut *self.conn().await?)
        .await
        .map_err(backend)?;
        rows.iter().map(token_from_row).collect::<SqlResult<_>>().map_err(backend)
    }

    async fn revoke_admin_token(&self, id: &str, now: UnixTime) -> StoreResult<bool> {
        let done = self
            .execute(
                sqlx::query("UPDATE admin_tokens SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL")
                    .bind(now)
                    .bind(id),
            )
            .await?;
        Ok(done > 0)
    }

    async fn note_admin_token_use(&self, id: &str, now: UnixTime) -> StoreResult<()> {
        self.execute(
            sqlx::query(
                "UPDATE admin_tokens SET last_used_at = $1 WHERE id = $2 \
                 AND (last_used_at IS NULL OR last_used_at <= $1 - $3)",
            )
            .bind(now)
            .bind(id)
            .bind(TOKEN_USE_RESOLUTION),
        )
        .await?;
        Ok(())
    }
}
