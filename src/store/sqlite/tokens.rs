//! Grants and their tokens: codes spent once, refresh tokens rotated with reuse detection, all
//! inside the writer's transaction.

use super::*;
use crate::store::rotation::{self, Presented, Verdict};

pub(super) fn insert_tokens(conn: &Connection, grant_id: &str, tokens: &IssuedTokens) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT INTO access_tokens (token_hash, grant_id, scope, created_at, expires_at) VALUES (?, ?, ?, ?, ?)",
    )?
    .execute(params![
        tokens.access_hash,
        grant_id,
        tokens.access_scope,
        tokens.created_at,
        tokens.access_expires_at
    ])?;
    if let Some((hash, expires_at)) = &tokens.refresh {
        conn.prepare_cached(
            "INSERT INTO refresh_tokens (token_hash, grant_id, created_at, expires_at, access_hash) VALUES (?, ?, ?, ?, ?)",
        )?
        .execute(params![hash, grant_id, tokens.created_at, expires_at, tokens.access_hash])?;
    }
    Ok(())
}

pub(super) fn revoke_grant_in(conn: &Connection, grant_id: &str, reason: &str, now: UnixTime) -> rusqlite::Result<()> {
    conn.prepare_cached("UPDATE grants SET revoked_at = ?, revoked_reason = ? WHERE id = ? AND revoked_at IS NULL")?
        .execute(params![now, reason, grant_id])?;
    Ok(())
}

pub(super) fn insert_grant(conn: &Connection, grant: &Grant) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT INTO grants (id, client_id, user_id, session_id, scope, auth_time, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
    )?
    .execute(params![
        grant.id,
        grant.client_id,
        grant.user_id,
        grant.session_id,
        grant.scope,
        grant.auth_time,
        grant.created_at
    ])?;
    Ok(())
}

/// Spends a code and records what it is exchanged for, or revokes that on a replay. The
/// conditional UPDATE is the single-use guarantee (of racing redemptions one wins), and the code
/// names its grant in the same transaction, so every loser finds the grant to revoke.
pub(super) fn redeem_code(
    conn: &Connection,
    code_hash: &str,
    grant: &Grant,
    tokens: &IssuedTokens,
    now: UnixTime,
) -> StoreResult<CodeRedemption> {
    let won = conn
        .prepare_cached(
            "UPDATE authorization_codes SET used_at = ?1, grant_id = ?2 \
             WHERE code_hash = ?3 AND client_id = ?4 AND user_id = ?5 AND used_at IS NULL AND expires_at > ?1 \
             RETURNING user_id",
        )
        .and_then(|mut s| {
            s.query_row(params![now, grant.id, code_hash, grant.client_id, grant.user_id], |r| r.get::<_, String>(0))
                .optional()
        })
        .map_err(backend)?;
    if let Some(user_id) = won {
        // Read on the writer: its page cache is warm, a reader's was just invalidated.
        let Some(user) = user_by(conn, "id", &user_id).map_err(backend)? else {
            return Ok(CodeRedemption::Unknown);
        };
        insert_grant(conn, grant).map_err(backend)?;
        insert_tokens(conn, &grant.id, tokens).map_err(backend)?;
        return Ok(CodeRedemption::Redeemed { user: Box::new(user) });
    }
    let spent: Option<Option<String>> = conn
        .prepare_cached(
            "SELECT grant_id FROM authorization_codes WHERE code_hash = ? AND client_id = ? AND used_at IS NOT NULL",
        )
        .and_then(|mut s| s.query_row(params![code_hash, grant.client_id], |r| r.get(0)).optional())
        .map_err(backend)?;
    let Some(grant_id) = spent else {
        return Ok(CodeRedemption::Unknown);
    };
    if let Some(id) = &grant_id {
        revoke_grant_in(conn, id, "authorization code replayed", now).map_err(backend)?;
    }
    Ok(CodeRedemption::Replayed { grant_id })
}

pub(super) fn presented_refresh(conn: &Connection, hash: &str) -> rusqlite::Result<Option<Presented>> {
    conn.prepare_cached(&format!(
        "SELECT {GRANT_COLUMNS}, {USER_COLUMNS}, r.used_at, r.expires_at, g.revoked_at IS NOT NULL, r.replaced_by, \
         EXISTS (SELECT 1 FROM refresh_tokens s WHERE s.token_hash = r.replaced_by AND s.used_at IS NULL) \
         FROM refresh_tokens r JOIN grants g ON g.id = r.grant_id JOIN users u ON u.id = g.user_id \
         WHERE r.token_hash = ?"
    ))?
    .query_row([hash], |r| {
        Ok(Presented {
            token_hash: hash.to_owned(),
            grant: grant_from_row(r)?,
            user: user_from_row(r, GRANT_WIDTH)?,
            used_at: r.get(AFTER_GRANT_USER)?,
            expires_at: r.get(AFTER_GRANT_USER + 1)?,
            grant_revoked: r.get(AFTER_GRANT_USER + 2)?,
            replaced_by: r.get(AFTER_GRANT_USER + 3)?,
            successor_unused: r.get(AFTER_GRANT_USER + 4)?,
        })
    })
    .optional()
}

/// Withdraws the refresh token `hash` and the access token issued with it. Spent, it counts as
/// reuse if it ever turns up.
pub(super) fn withdraw(conn: &Connection, hash: &str, now: UnixTime) -> rusqlite::Result<()> {
    let access: Option<Option<String>> = conn
        .prepare_cached("UPDATE refresh_tokens SET used_at = ? WHERE token_hash = ? RETURNING access_hash")?
        .query_row(params![now, hash], |r| r.get(0))
        .optional()?;
    if let Some(Some(access)) = access {
        conn.prepare_cached("UPDATE access_tokens SET revoked_at = ? WHERE token_hash = ? AND revoked_at IS NULL")?
            .execute(params![now, access])?;
    }
    Ok(())
}

/// Rotates the refresh token `seen` was read for (see [`TokenStore::rotate_refresh_token`]).
pub(super) fn rotate_refresh(
    tx: &Connection,
    seen: Presented,
    client_id: &str,
    now: UnixTime,
    reuse_grace: UnixTime,
    issue: IssueOnRotation,
) -> StoreResult<RefreshRotation> {
    let mut found = seen;
    let mut lost_successor = match rotation::judge(&found, client_id, now, reuse_grace) {
        Verdict::Invalid => return Ok(RefreshRotation::Invalid),
        Verdict::Reuse => return reused(tx, found, now),
        Verdict::Rotate { lost_successor } => lost_successor,
    };
    let Some(issued) = issue(&found.grant, &found.user) else {
        return Ok(RefreshRotation::Declined);
    };
    let successor = issued.refresh.as_ref().map(|(hash, _)| hash.clone());
    for reread in [false, true] {
        if reread {
            // The token changed since it was read: judge it as it is now.
            let Some(now_found) = presented_refresh(tx, &found.token_hash).map_err(backend)? else {
                return Ok(RefreshRotation::Invalid);
            };
            found = now_found;
            lost_successor = match rotation::judge(&found, client_id, now, reuse_grace) {
                Verdict::Invalid => return Ok(RefreshRotation::Invalid),
                Verdict::Reuse => break,
                Verdict::Rotate { lost_successor } => lost_successor,
            };
        }
        // Single use is in the statement itself: it changes the token only if it is still as
        // judged (unspent, or spent into the same lost successor), so of two rotations racing on
        // a backend without a single writer one wins. A retry keeps the time of the first
        // rotation: retrying does not extend the grace.
        let claimed = tx
            .prepare_cached(
                "UPDATE refresh_tokens SET used_at = coalesce(used_at, ?1), replaced_by = ?2 WHERE token_hash = ?3 \
                 AND ((?4 IS NULL AND used_at IS NULL) OR replaced_by = ?4)",
            )
            .and_then(|mut s| s.execute(params![now, successor, found.token_hash, lost_successor]))
            .map_err(backend)?;
        if claimed == 0 {
            continue;
        }
        if let Some(lost) = &lost_successor {
            withdraw(tx, lost, now).map_err(backend)?;
        }
        insert_tokens(tx, &found.grant.id, &issued).map_err(backend)?;
        let Presented { grant, user, .. } = found;
        let (user, scope) = (Box::new(user), issued.access_scope);
        return Ok(match lost_successor {
            Some(_) => RefreshRotation::Retried { grant, user, scope },
            None => RefreshRotation::Rotated { grant, user, scope },
        });
    }
    reused(tx, found, now)
}

/// [`TokenStore::rotate_fresh_refresh_token`], on the writer: the token is read there and
/// rotated only when it needs nothing but a rotation.
fn rotate_fresh(
    tx: &Connection,
    hash: &str,
    client_id: &str,
    now: UnixTime,
    checked_since: UnixTime,
    tokens: IssuedTokens,
) -> StoreResult<Option<RefreshRotation>> {
    let Some(found) = presented_refresh(tx, hash).map_err(backend)? else {
        return Ok(None);
    };
    if found.used_at.is_some() || !found.holds_for(client_id, now) || found.user.updated_at < checked_since {
        return Ok(None);
    }
    let issue =
        Box::new(move |grant: &Grant, _: &User| Some(IssuedTokens { access_scope: grant.scope.clone(), ..tokens }));
    rotate_refresh(tx, found, client_id, now, 0, issue).map(Some)
}

/// A spent token presented again: two parties hold this login, so its whole family goes.
fn reused(tx: &Connection, found: Presented, now: UnixTime) -> StoreResult<RefreshRotation> {
    revoke_grant_in(tx, &found.grant.id, "refresh token reuse", now).map_err(backend)?;
    Ok(RefreshRotation::Reused { grant_id: found.grant.id })
}

#[async_trait]
impl TokenStore for SqliteStore {
    async fn create_service_token(&self, t: &ServiceToken) -> StoreResult<()> {
        let t = t.clone();
        self.write(move |conn| {
            conn.execute(
                "INSERT INTO service_tokens (token_hash, client_id, scope, created_at, expires_at) VALUES (?, ?, ?, ?, ?)",
                params![t.token_hash, t.client_id, t.scope, t.created_at, t.expires_at],
            )
            .map_err(backend)?;
            Ok(())
        })
        .await
    }

    async fn service_token(&self, hash: &str, now: UnixTime) -> StoreResult<Option<ServiceToken>> {
        self.reader()
            .prepare_cached(
                "SELECT token_hash, client_id, scope, created_at, expires_at FROM service_tokens \
                 WHERE token_hash = ? AND revoked_at IS NULL AND expires_at > ?",
            )
            .and_then(|mut s| {
                s.query_row(params![hash, now], |r| {
                    Ok(ServiceToken {
                        token_hash: r.get(0)?,
                        client_id: r.get(1)?,
                        scope: r.get(2)?,
                        created_at: r.get(3)?,
                        expires_at: r.get(4)?,
                    })
                })
                .optional()
            })
            .map_err(backend)
    }

    async fn revoke_service_token(&self, hash: &str, now: UnixTime) -> StoreResult<bool> {
        let hash = hash.to_owned();
        self.write(move |conn| {
            let n = conn
                .execute(
                    "UPDATE service_tokens SET revoked_at = ? WHERE token_hash = ? AND revoked_at IS NULL",
                    params![now, hash],
                )
                .map_err(backend)?;
            Ok(n == 1)
        })
        .await
    }

    async fn create_authorization_code(&self, c: &AuthorizationCode) -> StoreResult<()> {
        let c = c.clone();
        self.write(move |conn| {
            conn.prepare_cached(
                "INSERT INTO authorization_codes (code_hash, client_id, user_id, session_id, request_json, auth_time, created_at, expires_at) \
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            )
            .and_then(|mut s| {
                s.execute(params![c.code_hash, c.client_id, c.user_id, c.session_id, c.request_json, c.auth_time, c.created_at, c.expires_at])
            })
            .map_err(backend)?;
            Ok(())
        })
        .await
    }

    async fn authorization_code(&self, code_hash: &str) -> StoreResult<Option<StoredCode>> {
        self.reader()
            .prepare_cached(
                "SELECT code_hash, client_id, user_id, session_id, request_json, auth_time, created_at, expires_at, \
                 used_at IS NOT NULL FROM authorization_codes WHERE code_hash = ?",
            )
            .and_then(|mut s| {
                s.query_row([code_hash], |r| Ok(StoredCode { code: code_from_row(r)?, spent: r.get(8)? })).optional()
            })
            .map_err(backend)
    }

    async fn redeem_authorization_code(
        &self,
        code_hash: &str,
        grant: &Grant,
        tokens: &IssuedTokens,
        now: UnixTime,
    ) -> StoreResult<CodeRedemption> {
        let (code_hash, grant, tokens) = (code_hash.to_owned(), grant.clone(), tokens.clone());
        self.write(move |tx| redeem_code(tx, &code_hash, &grant, &tokens, now)).await
    }

    async fn create_grant(&self, grant: &Grant, tokens: &IssuedTokens) -> StoreResult<()> {
        let (grant, tokens) = (grant.clone(), tokens.clone());
        self.write(move |tx| {
            insert_grant(tx, &grant).map_err(backend)?;
            insert_tokens(tx, &grant.id, &tokens).map_err(backend)
        })
        .await
    }

    async fn presented_refresh_token(&self, hash: &str) -> StoreResult<Option<Presented>> {
        presented_refresh(&self.reader(), hash).map_err(backend)
    }

    async fn rotate_refresh_token(
        &self,
        seen: Presented,
        client_id: &str,
        now: UnixTime,
        reuse_grace: UnixTime,
        issue: IssueOnRotation,
    ) -> StoreResult<RefreshRotation> {
        let client_id = client_id.to_owned();
        self.write(move |tx| rotate_refresh(tx, seen, &client_id, now, reuse_grace, issue)).await
    }

    async fn rotate_fresh_refresh_token(
        &self,
        hash: &str,
        client_id: &str,
        now: UnixTime,
        checked_since: UnixTime,
        tokens: &IssuedTokens,
    ) -> StoreResult<Option<RefreshRotation>> {
        let (hash, client_id, tokens) = (hash.to_owned(), client_id.to_owned(), tokens.clone());
        self.write(move |tx| rotate_fresh(tx, &hash, &client_id, now, checked_since, tokens)).await
    }

    async fn access_token(&self, hash: &str, now: UnixTime) -> StoreResult<Option<AccessTokenRecord>> {
        self.reader()
            .prepare_cached(&format!(
                "SELECT {GRANT_COLUMNS}, {USER_COLUMNS}, a.scope, a.created_at, a.expires_at \
                 FROM access_tokens a JOIN grants g ON g.id = a.grant_id JOIN users u ON u.id = g.user_id \
                 WHERE a.token_hash = ? AND a.revoked_at IS NULL AND a.expires_at > ? AND g.revoked_at IS NULL"
            ))
            .and_then(|mut s| {
                s.query_row(params![hash, now], |r| {
                    Ok(AccessTokenRecord {
                        grant: grant_from_row(r)?,
                        user: user_from_row(r, GRANT_WIDTH)?,
                        scope: r.get(AFTER_GRANT_USER)?,
                        created_at: r.get(AFTER_GRANT_USER + 1)?,
                        expires_at: r.get(AFTER_GRANT_USER + 2)?,
                    })
                })
                .optional()
            })
            .map_err(backend)
    }

    async fn refresh_token(&self, hash: &str, now: UnixTime) -> StoreResult<Option<RefreshTokenRecord>> {
        self.reader()
            .prepare_cached(&format!(
                "SELECT {GRANT_COLUMNS}, {USER_COLUMNS}, r.created_at, r.expires_at \
                 FROM refresh_tokens r JOIN grants g ON g.id = r.grant_id JOIN users u ON u.id = g.user_id \
                 WHERE r.token_hash = ? AND r.used_at IS NULL AND r.expires_at > ? AND g.revoked_at IS NULL"
            ))
            .and_then(|mut s| {
                s.query_row(params![hash, now], |r| {
                    Ok(RefreshTokenRecord {
                        grant: grant_from_row(r)?,
                        user: user_from_row(r, GRANT_WIDTH)?,
                        created_at: r.get(AFTER_GRANT_USER)?,
                        expires_at: r.get(AFTER_GRANT_USER + 1)?,
                    })
                })
                .optional()
            })
            .map_err(backend)
    }

    async fn revoke_access_token(&self, hash: &str, now: UnixTime) -> StoreResult<bool> {
        let hash = hash.to_owned();
        self.write(move |conn| {
            let n = conn
                .execute(
                    "UPDATE access_tokens SET revoked_at = ? WHERE token_hash = ? AND revoked_at IS NULL",
                    params![now, hash],
                )
                .map_err(backend)?;
            Ok(n == 1)
        })
        .await
    }

    async fn revoke_grant(&self, grant_id: &str, reason: &str, now: UnixTime) -> StoreResult<()> {
        let (grant_id, reason) = (grant_id.to_owned(), reason.to_owned());
        self.write(move |conn| revoke_grant_in(conn, &grant_id, &reason, now).map_err(backend)).await
    }
}
