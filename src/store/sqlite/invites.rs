//! Workshop invites and who redeemed them.

use super::*;

#[async_trait]
impl InviteStore for SqliteStore {
    async fn create_invite(&self, i: &Invite) -> StoreResult<()> {
        let i = i.clone();
        let groups = serde_json::to_string(&i.groups).map_err(backend)?;
        self.write(move |conn| {
            conn.execute(
                "INSERT INTO invites (id, token_hash, note, groups_json, connector_id, max_uses, uses, created_at, expires_at, revoked_at) \
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                params![i.id, i.token_hash, i.note, groups, i.connector_id, i.max_uses, i.uses, i.created_at, i.expires_at, i.revoked_at],
            )
            .map_err(backend)?;
            Ok(())
        })
        .await
    }

    async fn invites(&self) -> StoreResult<Vec<Invite>> {
        let conn = self.reader();
        let mut stmt = conn
            .prepare_cached(&format!("SELECT {INVITE_COLUMNS} FROM invites ORDER BY created_at DESC"))
            .map_err(backend)?;
        let rows = stmt.query_map([], invite_from_row).map_err(backend)?;
        rows.collect::<Result<Vec<_>, _>>().map_err(backend)
    }

    async fn invite_by_token(&self, token_hash: &str) -> StoreResult<Option<Invite>> {
        self.reader()
            .prepare_cached(&format!("SELECT {INVITE_COLUMNS} FROM invites WHERE token_hash = ?"))
            .and_then(|mut s| s.query_row([token_hash], invite_from_row).optional())
            .map_err(backend)
    }

    async fn revoke_invite(&self, id: &str, now: UnixTime) -> StoreResult<bool> {
        let id = id.to_owned();
        self.write(move |conn| {
            let n = conn
                .execute("UPDATE invites SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL", params![now, id])
                .map_err(backend)?;
            Ok(n == 1)
        })
        .await
    }

    async fn redeem_invite(&self, id: &str, user_id: &str, now: UnixTime) -> StoreResult<Redemption> {
        let (id, user_id) = (id.to_owned(), user_id.to_owned());
        self.write(move |conn| {
            // The redemption row first: only a person not counted before takes a place, and of
            // two racing redemptions by one person only the one that inserted counts.
            let first_time = conn
                .execute(
                    "INSERT INTO invite_redemptions (invite_id, user_id, at) VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
                    params![id, user_id, now],
                )
                .map_err(backend)?
                == 1;
            let open = if first_time {
                "UPDATE invites SET uses = uses + 1 WHERE id = ?1 AND revoked_at IS NULL AND expires_at > ?2 \
                 AND (max_uses IS NULL OR uses < max_uses)"
            } else {
                "UPDATE invites SET uses = uses WHERE id = ?1 AND revoked_at IS NULL AND expires_at > ?2"
            };
            if conn.execute(open, params![id, now]).map_err(backend)? == 1 {
                return Ok(Redemption::Redeemed);
            }
            if first_time {
                // No place left (or no longer open): this person was not let in.
                conn.execute(
                    "DELETE FROM invite_redemptions WHERE invite_id = ? AND user_id = ?",
                    params![id, user_id],
                )
                .map_err(backend)?;
            }
            Ok(Redemption::Closed)
        })
        .await
    }

    async fn invites_of_user(&self, user_id: &str, now: UnixTime) -> StoreResult<Vec<Invite>> {
        let conn = self.reader();
        let cols = INVITE_COLUMNS.split(", ").map(|c| format!("i.{c}")).collect::<Vec<_>>().join(", ");
        let mut stmt = conn
            .prepare_cached(&format!(
                "SELECT {cols} FROM invites i JOIN invite_redemptions r ON r.invite_id = i.id \
                 WHERE r.user_id = ? AND i.revoked_at IS NULL AND i.expires_at > ?"
            ))
            .map_err(backend)?;
        let rows = stmt.query_map(params![user_id, now], invite_from_row).map_err(backend)?;
        rows.collect::<Result<Vec<_>, _>>().map_err(backend)
    }
}
