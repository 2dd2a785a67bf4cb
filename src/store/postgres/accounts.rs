//! Accounts as administrators see them: activity, blocking, deleting (the twin of SQLite's).

use super::*;

#[async_trait]
impl AccountStore for PostgresStore {
    async fn note_token_use(&self, user_id: &str, now: UnixTime) -> StoreResult<()> {
        // The condition keeps a second replica's write within the minute from touching the row.
        self.execute(
            sqlx::query(
                "UPDATE users SET last_token_use_at = $1 WHERE id = $2 \
                 AND (last_token_use_at IS NULL OR last_token_use_at <= $1 - $3)",
            )
            .bind(now)
            .bind(user_id)
            .bind(TOKEN_USE_RESOLUTION),
        )
        .await?;
        Ok(())
    }

    async fn activity(&self, now: UnixTime) -> StoreResult<Vec<UserActivity>> {
        // One statement, one snapshot. Users holding a usable token are found in one pass over
        // each token table (neither is indexed by grant).
        let rows = sqlx::query(
            "WITH hub_live AS ( \
                SELECT g.user_id FROM refresh_tokens r JOIN grants g ON g.id = r.grant_id \
                WHERE r.used_at IS NULL AND r.expires_at > $1 AND g.revoked_at IS NULL \
                UNION \
                SELECT g.user_id FROM access_tokens a JOIN grants g ON g.id = a.grant_id \
                WHERE a.revoked_at IS NULL AND a.expires_at > $1 AND g.revoked_at IS NULL) \
             SELECT u.id, u.username, u.groups_json, u.created_at, u.last_login_at, u.last_token_use_at, u.blocked_at, \
                COALESCE((SELECT array_agg(DISTINCT i.connector_id ORDER BY i.connector_id) \
                          FROM user_identities i WHERE i.user_id = u.id), ARRAY[]::TEXT[]), \
                EXISTS (SELECT 1 FROM browser_sessions s WHERE s.user_id = u.id AND s.ended_at IS NULL AND s.expires_at > $1), \
                u.id IN (SELECT user_id FROM hub_live) \
             FROM users u ORDER BY u.username COLLATE \"C\"",
        )
        .bind(now)
        .fetch_all(&mut *self.conn().await?)
        .await
        .map_err(backend)?;
        rows.iter()
            .map(|r| -> SqlResult<UserActivity> {
                let groups: String = r.try_get(2)?;
                Ok(UserActivity {
                    user_id: r.try_get(0)?,
                    username: r.try_get(1)?,
                    groups: serde_json::from_str(&groups)
                        .map_err(|e| sqlx::Error::ColumnDecode { index: "2".into(), source: Box::new(e) })?,
                    created_at: r.try_get(3)?,
                    last_login_at: r.try_get(4)?,
                    last_token_use_at: r.try_get(5)?,
                    blocked_at: r.try_get(6)?,
                    connectors: r.try_get(7)?,
                    sso_session_live: r.try_get(8)?,
                    hub_session_live: r.try_get(9)?,
                })
            })
            .collect::<SqlResult<_>>()
            .map_err(backend)
    }

    async fn block_user(&self, user_id: &str, now: UnixTime) -> StoreResult<bool> {
        let mut lease = self.conn().await?;
        let mut tx = sqlx::Connection::begin(&mut *lease).await.map_err(backend)?;
        let n = sqlx::query("UPDATE users SET blocked_at = $1 WHERE id = $2 AND blocked_at IS NULL")
            .bind(now)
            .bind(user_id)
            .execute(&mut *tx)
            .await
            .map_err(backend)?
            .rows_affected();
        sqlx::query("UPDATE user_identities SET tokens_sealed = NULL, tokens_expire_at = NULL WHERE user_id = $1")
            .bind(user_id)
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        tx.commit().await.map_err(backend)?;
        Ok(n > 0)
    }

    async fn delete_user(&self, user_id: &str) -> StoreResult<bool> {
        let mut lease = self.conn().await?;
        let mut tx = sqlx::Connection::begin(&mut *lease).await.map_err(backend)?;
        // Children first: every table that points at the user or their grants.
        for sql in [
            "DELETE FROM access_tokens WHERE grant_id IN (SELECT id FROM grants WHERE user_id = $1)",
            "DELETE FROM refresh_tokens WHERE grant_id IN (SELECT id FROM grants WHERE user_id = $1)",
            "DELETE FROM authorization_codes WHERE user_id = $1",
            "DELETE FROM grants WHERE user_id = $1",
            "DELETE FROM browser_sessions WHERE user_id = $1",
            "DELETE FROM invite_redemptions WHERE user_id = $1",
            "DELETE FROM user_identities WHERE user_id = $1",
        ] {
            sqlx::query(sql).bind(user_id).execute(&mut *tx).await.map_err(backend)?;
        }
        let n = sqlx::query("DELETE FROM users WHERE id = $1")
            .bind(user_id)
            .execute(&mut *tx)
            .await
            .map_err(backend)?
            .rows_affected();
        tx.commit().await.map_err(backend)?;
        Ok(n > 0)
    }
}
