//! Rows to domain values, read by position (looking columns up by name costs a string scan per
//! value on the hottest paths).

use super::*;

// Rows are read by position (looking columns up by name costs a string scan per value on the
// hottest paths). Joined queries select GRANT_COLUMNS, then USER_COLUMNS, then their own.
pub(super) const USER_COLUMNS: &str =
    "u.id, u.username, u.name, u.email, u.email_verified, u.groups_json, u.created_at, u.updated_at, u.last_login_at";
pub(super) const USER_WIDTH: usize = 9;
pub(super) const GRANT_COLUMNS: &str = "g.id, g.client_id, g.user_id, g.session_id, g.scope, g.auth_time, g.created_at";
pub(super) const GRANT_WIDTH: usize = 7;
/// The first column after a grant and a user in a joined row.
pub(super) const AFTER_GRANT_USER: usize = GRANT_WIDTH + USER_WIDTH;

pub(super) fn user_from_row(row: &Row<'_>, at: usize) -> rusqlite::Result<User> {
    let groups_json: String = row.get(at + 5)?;
    Ok(User {
        id: row.get(at)?,
        username: row.get(at + 1)?,
        name: row.get(at + 2)?,
        email: row.get(at + 3)?,
        email_verified: row.get::<_, i64>(at + 4)? != 0,
        groups: serde_json::from_str(&groups_json)
            .map_err(|e| rusqlite::Error::FromSqlConversionFailure(at + 5, rusqlite::types::Type::Text, Box::new(e)))?,
        created_at: row.get(at + 6)?,
        updated_at: row.get(at + 7)?,
        last_login_at: row.get(at + 8)?,
    })
}

pub(super) fn grant_from_row(row: &Row<'_>) -> rusqlite::Result<Grant> {
    Ok(Grant {
        id: row.get(0)?,
        client_id: row.get(1)?,
        user_id: row.get(2)?,
        session_id: row.get(3)?,
        scope: row.get(4)?,
        auth_time: row.get(5)?,
        created_at: row.get(6)?,
    })
}

pub(super) fn session_from_row(r: &Row<'_>) -> rusqlite::Result<BrowserSession> {
    Ok(BrowserSession {
        id: r.get("id")?,
        token_hash: r.get("token_hash")?,
        user_id: r.get("user_id")?,
        connector_id: r.get("connector_id")?,
        csrf_token: r.get("csrf_token")?,
        auth_time: r.get("auth_time")?,
        created_at: r.get("created_at")?,
        expires_at: r.get("expires_at")?,
    })
}

pub(super) fn code_from_row(r: &Row<'_>) -> rusqlite::Result<AuthorizationCode> {
    Ok(AuthorizationCode {
        code_hash: r.get(0)?,
        client_id: r.get(1)?,
        user_id: r.get(2)?,
        session_id: r.get(3)?,
        request_json: r.get(4)?,
        auth_time: r.get(5)?,
        created_at: r.get(6)?,
        expires_at: r.get(7)?,
    })
}

pub(super) const ATTEMPT_COLUMNS: &str =
    "state_hash, pending_id, connector_id, pkce_verifier, nonce, created_at, expires_at";

pub(super) fn attempt_from_row(r: &Row<'_>) -> rusqlite::Result<UpstreamAttempt> {
    Ok(UpstreamAttempt {
        state_hash: r.get(0)?,
        pending_id: r.get(1)?,
        connector_id: r.get(2)?,
        pkce_verifier: r.get(3)?,
        nonce: r.get(4)?,
        created_at: r.get(5)?,
        expires_at: r.get(6)?,
    })
}

pub(super) const INVITE_COLUMNS: &str =
    "id, token_hash, note, groups_json, connector_id, max_uses, uses, created_at, expires_at, revoked_at";

pub(super) fn invite_from_row(r: &Row<'_>) -> rusqlite::Result<Invite> {
    let groups: String = r.get(3)?;
    Ok(Invite {
        id: r.get(0)?,
        token_hash: r.get(1)?,
        note: r.get(2)?,
        groups: serde_json::from_str(&groups)
            .map_err(|e| rusqlite::Error::FromSqlConversionFailure(3, rusqlite::types::Type::Text, Box::new(e)))?,
        connector_id: r.get(4)?,
        max_uses: r.get(5)?,
        uses: r.get(6)?,
        created_at: r.get(7)?,
        expires_at: r.get(8)?,
        revoked_at: r.get(9)?,
    })
}

pub(super) fn stored_upstream_from_row(r: &Row<'_>) -> rusqlite::Result<StoredUpstream> {
    Ok(StoredUpstream {
        user_id: r.get(0)?,
        connector_id: r.get(1)?,
        subject: r.get(2)?,
        memberships_json: r.get(3)?,
        tokens_sealed: r.get(4)?,
        tokens_expire_at: r.get(5)?,
        refreshed_at: r.get(6)?,
        upstream_username: r.get(7)?,
    })
}

pub(super) fn user_by(conn: &Connection, column: &str, value: &str) -> rusqlite::Result<Option<User>> {
    conn.prepare_cached(&format!("SELECT {USER_COLUMNS} FROM users u WHERE u.{column} = ?"))?
        .query_row([value], |r| user_from_row(r, 0))
        .optional()
}
