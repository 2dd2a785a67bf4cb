//! Rows to domain values, read by position: the twin of the SQLite backend's `rows.rs`, with the
//! same column lists so the two read the same queries.

use super::*;

pub(super) const USER_COLUMNS: &str =
    "u.id, u.username, u.name, u.email, u.email_verified, u.groups_json, u.created_at, u.updated_at, u.last_login_at";
pub(super) const USER_WIDTH: usize = 9;
pub(super) const GRANT_COLUMNS: &str = "g.id, g.client_id, g.user_id, g.session_id, g.scope, g.auth_time, g.created_at";
pub(super) const GRANT_WIDTH: usize = 7;
/// The first column after a grant and a user in a joined row.
pub(super) const AFTER_GRANT_USER: usize = GRANT_WIDTH + USER_WIDTH;

pub(super) fn json_column<T: serde::de::DeserializeOwned>(row: &PgRow, at: usize) -> Result<T, sqlx::Error> {
    let text: String = row.try_get(at)?;
    serde_json::from_str(&text).map_err(|e| sqlx::Error::ColumnDecode { index: at.to_string(), source: Box::new(e) })
}

pub(super) fn user_from_row(row: &PgRow, at: usize) -> Result<User, sqlx::Error> {
    Ok(User {
        id: row.try_get(at)?,
        username: row.try_get(at + 1)?,
        name: row.try_get(at + 2)?,
        email: row.try_get(at + 3)?,
        email_verified: row.try_get(at + 4)?,
        groups: json_column(row, at + 5)?,
        created_at: row.try_get(at + 6)?,
        updated_at: row.try_get(at + 7)?,
        last_login_at: row.try_get(at + 8)?,
    })
}

pub(super) fn grant_from_row(row: &PgRow) -> Result<Grant, sqlx::Error> {
    Ok(Grant {
        id: row.try_get(0)?,
        client_id: row.try_get(1)?,
        user_id: row.try_get(2)?,
        session_id: row.try_get(3)?,
        scope: row.try_get(4)?,
        auth_time: row.try_get(5)?,
        created_at: row.try_get(6)?,
    })
}

pub(super) const SESSION_COLUMNS: &str =
    "id, token_hash, user_id, connector_id, csrf_token, auth_time, created_at, expires_at";

pub(super) fn session_from_row(r: &PgRow) -> Result<BrowserSession, sqlx::Error> {
    Ok(BrowserSession {
        id: r.try_get(0)?,
        token_hash: r.try_get(1)?,
        user_id: r.try_get(2)?,
        connector_id: r.try_get(3)?,
        csrf_token: r.try_get(4)?,
        auth_time: r.try_get(5)?,
        created_at: r.try_get(6)?,
        expires_at: r.try_get(7)?,
    })
}

pub(super) const PENDING_COLUMNS: &str =
    "id, request_json, browser_binding_hash, csrf_token, client_address, created_at, expires_at";

pub(super) fn pending_from_row(r: &PgRow) -> Result<PendingAuthorization, sqlx::Error> {
    Ok(PendingAuthorization {
        id: r.try_get(0)?,
        request_json: r.try_get(1)?,
        browser_binding_hash: r.try_get(2)?,
        csrf_token: r.try_get(3)?,
        client_address: r.try_get(4)?,
        created_at: r.try_get(5)?,
        expires_at: r.try_get(6)?,
    })
}

pub(super) const CODE_COLUMNS: &str =
    "code_hash, client_id, user_id, session_id, request_json, auth_time, created_at, expires_at";

pub(super) fn code_from_row(r: &PgRow) -> Result<AuthorizationCode, sqlx::Error> {
    Ok(AuthorizationCode {
        code_hash: r.try_get(0)?,
        client_id: r.try_get(1)?,
        user_id: r.try_get(2)?,
        session_id: r.try_get(3)?,
        request_json: r.try_get(4)?,
        auth_time: r.try_get(5)?,
        created_at: r.try_get(6)?,
        expires_at: r.try_get(7)?,
    })
}

pub(super) const ATTEMPT_COLUMNS: &str =
    "state_hash, pending_id, connector_id, pkce_verifier, nonce, created_at, expires_at";

pub(super) fn attempt_from_row(r: &PgRow) -> Result<UpstreamAttempt, sqlx::Error> {
    Ok(UpstreamAttempt {
        state_hash: r.try_get(0)?,
        pending_id: r.try_get(1)?,
        connector_id: r.try_get(2)?,
        pkce_verifier: r.try_get(3)?,
        nonce: r.try_get(4)?,
        created_at: r.try_get(5)?,
        expires_at: r.try_get(6)?,
    })
}

pub(super) const INVITE_COLUMNS: &str =
    "i.id, i.token_hash, i.note, i.groups_json, i.connector_id, i.max_uses, i.uses, i.created_at, i.expires_at, i.revoked_at";

pub(super) fn invite_from_row(r: &PgRow) -> Result<Invite, sqlx::Error> {
    Ok(Invite {
        id: r.try_get(0)?,
        token_hash: r.try_get(1)?,
        note: r.try_get(2)?,
        groups: json_column(r, 3)?,
        connector_id: r.try_get(4)?,
        max_uses: r.try_get(5)?,
        uses: r.try_get(6)?,
        created_at: r.try_get(7)?,
        expires_at: r.try_get(8)?,
        revoked_at: r.try_get(9)?,
    })
}

pub(super) const UPSTREAM_COLUMNS: &str = "i.user_id, i.connector_id, i.upstream_subject, i.memberships_json, \
     i.tokens_sealed, i.tokens_expire_at, i.refreshed_at, i.upstream_username";

pub(super) fn stored_upstream_from_row(r: &PgRow) -> Result<StoredUpstream, sqlx::Error> {
    Ok(StoredUpstream {
        user_id: r.try_get(0)?,
        connector_id: r.try_get(1)?,
        subject: r.try_get(2)?,
        memberships_json: r.try_get(3)?,
        tokens_sealed: r.try_get(4)?,
        tokens_expire_at: r.try_get(5)?,
        refreshed_at: r.try_get(6)?,
        upstream_username: r.try_get(7)?,
    })
}

pub(super) const AUDIT_COLUMNS: &str =
    "at, kind, reason, username, user_id, connector_id, client_id, request_id, detail, actor";

pub(super) fn audit_from_row(r: &PgRow) -> Result<AuditEvent, sqlx::Error> {
    audit_from_row_at(r, 0)
}

/// An event whose [`AUDIT_COLUMNS`] start at column `o`.
pub(super) fn audit_from_row_at(r: &PgRow, o: usize) -> Result<AuditEvent, sqlx::Error> {
    Ok(AuditEvent {
        at: r.try_get(o)?,
        kind: r.try_get(o + 1)?,
        reason: r.try_get(o + 2)?,
        username: r.try_get(o + 3)?,
        user_id: r.try_get(o + 4)?,
        connector_id: r.try_get(o + 5)?,
        client_id: r.try_get(o + 6)?,
        request_id: r.try_get(o + 7)?,
        detail: r.try_get(o + 8)?,
        actor: r.try_get(o + 9)?,
    })
}

/// The user whose `column` (`id` or `username`) is `value`.
pub(super) async fn user_by(
    conn: &mut PgConnection,
    column: UserKey,
    value: &str,
) -> Result<Option<User>, sqlx::Error> {
    let column = match column {
        UserKey::Id => "id",
        UserKey::Username => "username",
    };
    sqlx::query(AssertSqlSafe(format!("SELECT {USER_COLUMNS} FROM users u WHERE u.{column} = $1")))
        .bind(value)
        .fetch_optional(conn)
        .await?
        .map(|r| user_from_row(&r, 0))
        .transpose()
}

#[derive(Clone, Copy)]
pub(super) enum UserKey {
    Id,
    Username,
}
