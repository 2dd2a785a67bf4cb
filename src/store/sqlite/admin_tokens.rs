//! Admin API tokens made at run time.

use super::*;

const ADMIN_TOKEN_COLUMNS: &str =
    "id, token_hash, name, scope, created_by, created_at, expires_at, revoked_at, last_used_at";

fn token_from_row(r: &Row<'_>) -> rusqlite::Result<AdminToken> {
    let scope: String = r.get(3)?;
    Ok(AdminToken {
        id: r.get(0)?,
        token_hash: r.get(1)?,
        name: r.get(2)?,
        scope: AdminScope::parse(&scope).ok_or_else(|| {
            rusqlite::Error::FromSqlConversionFailure(3, rusqlite::types::Type::Text, format!("scope {scope:?}").into())
        })?,
        created_by: r.get(4)?,
        created_at: r.get(5)?,
        expires_at: r.get(6)?,
        revoked_at: r.get(7)?,
        last_used_at: r.get(8)?,
    })
}

#[async_trait]
impl AdminTokenStore for SqliteStore {
    async fn create_admin_token(&self, t: &AdminToken) -> StoreResult<()> {
        let t = t.clone();
        self.write(move |conn| {
            conn.execute(
                &format!("INSERT INTO admin_tokens ({ADMIN_TOKEN_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"),
                params![
                    t.id,
                    t.token_hash,
                    t.name,
                    t.scope.as_str(),
                    t.created_by,
                    t.created_at,
                    t.expires_at,
                    t.revoked_at,
                    t.last_used_at
                ],
            )
            .map_err(backend)?;
            Ok(())
        })
        .await
    }

    async fn admin_token_by_hash(&self, token_hash: &str) -> StoreResult<Option<AdminToken>> {
        self.reader()
            .prepare_cached(&format!("SELECT {ADMIN_TOKEN_COLUMNS} FROM admin_tokens WHERE token_hash = ?"))
            .and_then(|mut st| st.query_row([token_hash], token_from_row).optional())
            .map_err(backend)
    }

    async fn admin_tokens(&self) -> StoreResult<Vec<AdminToken>> {
        let conn = self.reader();
        let mut stmt = conn
            .prepare_cached(&format!("SELECT {ADMIN_TOKEN_COLUMNS} FROM admin_tokens ORDER BY created_at DESC, id"))
            .map_err(backend)?;
        let rows = stmt.query_map([], token_from_row).map_err(backend)?;
        rows.collect::<Result<Vec<_>, _>>().map_err(backend)
    }

    async fn revoke_admin_token(&self, id: &str, now: UnixTime) -> StoreResult<bool> {
        let id = id.to_owned();
        self.write(move |conn| {
            let n = conn
                .execute("UPDATE admin_tokens SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL", params![now, id])
                .map_err(backend)?;
            Ok(n > 0)
        })
        .await
    }

    async fn note_admin_token_use(&self, id: &str, now: UnixTime) -> StoreResult<()> {
        let id = id.to_owned();
        self.write(move |conn| {
            conn.execute(
                "UPDATE admin_tokens SET last_used_at = ?1 WHERE id = ?2 \
                 AND (last_used_at IS NULL OR last_used_at <= ?1 - ?3)",
                params![now, id, TOKEN_USE_RESOLUTION],
            )
            .map_err(backend)?;
            Ok(())
        })
        .await
    }
}
