//! Workshop invites and who redeemed them.

use super::*;

#[async_trait]
impl InviteStore for PostgresStore {
    async fn create_invite(&self, i: &Invite) -> StoreResult<()> {
        let groups = serde_json::to_string(&i.groups).map_err(backend)?;
        self.execute(
            sqlx::query(
                "INSERT INTO invites (id, token_hash, note, groups_json, connector_id, max_uses, uses, created_at, expires_at, revoked_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
            )
            .bind(&i.id)
            .bind(&i.token_hash)
            .bind(&i.note)
            .bind(groups)
            .bind(&i.connector_id)
            .bind(i.max_uses)
            .bind(i.uses)
            .bind(i.created_at)
            .bind(i.expires_at)
            .bind(i.revoked_at),
        )
        .await?;
        Ok(())
    }

    async fn invites(&self) -> StoreResult<Vec<Invite>> {
        let rows =
            sqlx::query(AssertSqlSafe(format!("SELECT {INVITE_COLUMNS} FROM invites i ORDER BY i.created_at DESC")))
                .fetch_all(&mut *self.conn().await?)
                .await
                .map_err(backend)?;
        rows.iter().map(invite_from_row).collect::<SqlResult<_>>().map_err(backend)
    }

    async fn invite_by_token(&self, token_hash: &str) -> StoreResult<Option<Invite>> {
        sqlx::query(AssertSqlSafe(format!("SELECT {INVITE_COLUMNS} FROM invites i WHERE i.token_hash = $1")))
            .bind(token_hash)
            .fetch_optional(&mut *self.conn().await?)
            .await
            .map_err(backend)?
            .map(|r| invite_from_row(&r).map_err(backend))
            .transpose()
    }

    async fn revoke_invite(&self, id: &str, now: UnixTime) -> StoreResult<bool> {
        let n = self
            .execute(
                sqlx::query("UPDATE invites SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL")
                    .bind(now)
                    .bind(id),
            )
            .await?;
        Ok(n == 1)
    }

    async fn redeem_invite(&self, id: &str, user_id: &str, now: UnixTime) -> StoreResult<Redemption> {
        let mut lease = self.conn().await?;
        let mut tx = sqlx::Connection::begin(&mut *lease).await.map_err(backend)?;
        // The redemption row first: only a person not counted before takes a place, and of two
        // racing redemptions by one person only the one that inserted counts. The count is a
        // conditional UPDATE: racing newcomers queue on the invite's row and each re-checks
        // the places left.
        let first_time = sqlx::query(
            "INSERT INTO invite_redemptions (invite_id, user_id, at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
        )
        .bind(id)
        .bind(user_id)
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(backend)?
        .rows_affected()
            == 1;
        let open = if first_time {
            "UPDATE invites SET uses = uses + 1 WHERE id = $1 AND revoked_at IS NULL AND expires_at > $2 \
             AND (max_uses IS NULL OR uses < max_uses)"
        } else {
            "SELECT 1 FROM invites WHERE id = $1 AND revoked_at IS NULL AND expires_at > $2"
        };
        let still_open =
            sqlx::query(open).bind(id).bind(now).execute(&mut *tx).await.map_err(backend)?.rows_affected() == 1;
        if still_open {
            tx.commit().await.map_err(backend)?;
            return Ok(Redemption::Redeemed);
        }
        // No place left (or no longer open): this person was not let in, and nothing is kept.
        tx.rollback().await.map_err(backend)?;
        Ok(Redemption::Closed)
    }

    async fn invites_of_user(&self, user_id: &str, now: UnixTime) -> StoreResult<Vec<Invite>> {
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT {INVITE_COLUMNS} FROM invites i JOIN invite_redemptions r ON r.invite_id = i.id \
             WHERE r.user_id = $1 AND i.revoked_at IS NULL AND i.expires_at > $2"
        )))
        .bind(user_id)
        .bind(now)
        .fetch_all(&mut *self.conn().await?)
        .await
        .map_err(backend)?;
        rows.iter().map(invite_from_row).collect::<SqlResult<_>>().map_err(backend)
    }
}
