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

    async fn unblock_user(&self, user_id: &str) -> StoreResult<bool> {
        let n = self
            .execute(
                sqlx::query("UPDATE users SET blocked_at = NULL WHERE id = $1 AND blocked_at IS NOT NULL")
                    .bind(user_id),
            )
            .await?;
        Ok(n > 0)
    }

    async fn users_page(&self, query: &UserQuery) -> StoreResult<Vec<UserRow>> {
        let sql = format!(
            "SELECT u.id, u.username, u.name, u.email, u.groups_json, u.created_at, u.last_login_at, \
             u.last_token_use_at, u.blocked_at, \
             COALESCE((SELECT array_agg(DISTINCT i.connector_id ORDER BY i.connector_id) \
                       FROM user_identities i WHERE i.user_id = u.id), ARRAY[]::TEXT[]) \
             FROM users u WHERE {USER_FILTER} AND ($8::TEXT IS NULL OR u.username COLLATE \"C\" > $8::TEXT) \
             ORDER BY u.username COLLATE \"C\" LIMIT $9"
        );
        let rows = bind_filter(sqlx::query(AssertSqlSafe(sql)), query)
            .bind(&query.after)
            .bind(i64::from(query.limit))
            .fetch_all(&mut *self.conn().await?)
            .await
            .map_err(backend)?;
        rows.iter()
            .map(|r| -> SqlResult<UserRow> {
                let groups: String = r.try_get(4)?;
                Ok(UserRow {
                    user_id: r.try_get(0)?,
                    username: r.try_get(1)?,
                    name: r.try_get(2)?,
                    email: r.try_get(3)?,
                    groups: serde_json::from_str(&groups)
                        .map_err(|e| sqlx::Error::ColumnDecode { index: "4".into(), source: Box::new(e) })?,
                    created_at: r.try_get(5)?,
                    last_login_at: r.try_get(6)?,
                    last_token_use_at: r.try_get(7)?,
                    blocked_at: r.try_get(8)?,
                    connectors: r.try_get(9)?,
                })
            })
            .collect::<SqlResult<_>>()
            .map_err(backend)
    }

    async fn count_users(&self, query: &UserQuery) -> StoreResult<u64> {
        let sql = format!("SELECT count(*) FROM users u WHERE {USER_FILTER}");
        let row = bind_filter(sqlx::query(AssertSqlSafe(sql)), query)
            .fetch_one(&mut *self.conn().await?)
            .await
            .map_err(backend)?;
        let n: i64 = row.try_get(0).map_err(backend)?;
        Ok(n as u64)
    }

    async fn live_sessions(&self, user_id: &str, now: UnixTime, limit: u32) -> StoreResult<Vec<LiveSession>> {
        let mut conn = self.conn().await?;
        let browser = sqlx::query(
            "SELECT id, connector_id, created_at, expires_at FROM browser_sessions \
             WHERE user_id = $1 AND ended_at IS NULL AND expires_at > $2 ORDER BY created_at DESC LIMIT $3",
        )
        .bind(user_id)
        .bind(now)
        .bind(i64::from(limit))
        .fetch_all(&mut *conn)
        .await
        .map_err(backend)?;
        let grants = sqlx::query(
            "SELECT g.id, g.client_id, g.created_at FROM grants g WHERE g.user_id = $1 AND g.revoked_at IS NULL \
             AND (EXISTS (SELECT 1 FROM refresh_tokens r WHERE r.grant_id = g.id AND r.used_at IS NULL AND r.expires_at > $2) \
               OR EXISTS (SELECT 1 FROM access_tokens a WHERE a.grant_id = g.id AND a.revoked_at IS NULL AND a.expires_at > $2)) \
             ORDER BY g.created_at DESC LIMIT $3",
        )
        .bind(user_id)
        .bind(now)
        .bind(i64::from(limit))
        .fetch_all(&mut *conn)
        .await
        .map_err(backend)?;
        let mut out = Vec::new();
        for r in &browser {
            out.push(LiveSession {
                kind: "browser".into(),
                id: r.try_get(0).map_err(backend)?,
                connector_id: r.try_get(1).map_err(backend)?,
                client_id: None,
                created_at: r.try_get(2).map_err(backend)?,
                expires_at: r.try_get(3).map_err(backend)?,
            });
        }
        for r in &grants {
            out.push(LiveSession {
                kind: "grant".into(),
                id: r.try_get(0).map_err(backend)?,
                connector_id: None,
                client_id: r.try_get(1).map_err(backend)?,
                created_at: r.try_get(2).map_err(backend)?,
                expires_at: None,
            });
        }
        Ok(out)
    }
}

/// The `WHERE` of a user listing, binding $1..$7 (each NULL when its filter is off). The last
/// activity is the later of the last sign-in and the last token use.
const USER_FILTER: &str = "($1::TEXT IS NULL OR strpos(lower(u.username), lower($1::TEXT)) > 0 \
        OR strpos(lower(coalesce(u.name, '')), lower($1::TEXT)) > 0 \
        OR strpos(lower(coalesce(u.email, '')), lower($1::TEXT)) > 0) \
    AND ($2::TEXT IS NULL OR u.groups_json::jsonb @> jsonb_build_array($2::TEXT)) \
    AND ($3::TEXT IS NULL OR EXISTS (SELECT 1 FROM user_identities i WHERE i.user_id = u.id AND i.connector_id = $3::TEXT)) \
    AND ($4::BIGINT IS NULL OR GREATEST(coalesce(u.last_login_at, 0), coalesce(u.last_token_use_at, 0)) >= $4::BIGINT) \
    AND ($5::BIGINT IS NULL OR GREATEST(coalesce(u.last_login_at, 0), coalesce(u.last_token_use_at, 0)) < $5::BIGINT) \
    AND ($6::BOOLEAN IS NULL OR (u.blocked_at IS NOT NULL) = $6::BOOLEAN) \
    AND ($7::TEXT IS NULL OR u.username = $7::TEXT)";

fn bind_filter<'q>(
    q: sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>,
    query: &'q UserQuery,
) -> sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments> {
    q.bind(&query.q)
        .bind(&query.group)
        .bind(&query.connector)
        .bind(query.active_since)
        .bind(query.inactive_since)
        .bind(query.blocked)
        .bind(&query.username)
}
