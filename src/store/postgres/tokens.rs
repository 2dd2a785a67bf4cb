//! Grants and their tokens: codes spent once, refresh tokens rotated with reuse detection, each
//! inside one transaction. Single use is in the statements themselves (conditional UPDATEs that
//! PostgreSQL re-checks against the row a racing transaction committed), not in a writer thread.

use super::*;

/// What the statement that records a grant's new tokens does first, in the same statement: each
/// sub-statement is a round trip saved on every grant (bench/RESULTS.md counts them).
pub(super) enum Lead<'a> {
    /// The grant itself (code exchange, `create_grant`).
    Grant(&'a Grant),
    /// The rotation's claim of the presented refresh token: the tokens are inserted only if the
    /// claim changed it, so the statement inserts nothing when a racing rotation won.
    Claim { now: UnixTime, old_hash: &'a str, lost_successor: Option<&'a str> },
}

/// Records the access token (and refresh token, if any) of `tokens` for `grant_id`, after
/// `lead`, in one statement. True unless a [`Lead::Claim`] found the token already taken.
pub(super) async fn insert_tokens(
    conn: &mut PgConnection,
    grant_id: &str,
    tokens: &IssuedTokens,
    lead: Lead<'_>,
) -> SqlResult<bool> {
    // $1 access hash, $2 grant, $3 scope, $4 created, $5 access expiry, $6 refresh hash, $7 its
    // expiry; the lead's own parameters from $8.
    let mut ctes = Vec::new();
    let from = match lead {
        Lead::Grant(_) => {
            ctes.push(
                "grant_row AS (INSERT INTO grants (id, client_id, user_id, session_id, scope, auth_time, created_at) \
                 VALUES ($2, $8, $9, $10, $11, $12, $13))",
            );
            ""
        }
        Lead::Claim { .. } => {
            // Changes the token only if it is still as read (unspent, or spent into the same lost
            // successor). A racing rotation waits on the row lock, PostgreSQL re-checks the
            // condition against the committed row, and the loser inserts nothing.
            ctes.push(
                "claimed AS (UPDATE refresh_tokens SET used_at = coalesce(used_at, $8), replaced_by = $6 \
                 WHERE token_hash = $9 AND (($10::text IS NULL AND used_at IS NULL) OR replaced_by = $10::text) \
                 RETURNING 1)",
            );
            " FROM claimed"
        }
    };
    let access = format!(
        "INSERT INTO access_tokens (token_hash, grant_id, scope, created_at, expires_at) SELECT $1, $2, $3, $4, $5{from}"
    );
    let mut ctes: Vec<String> = ctes.into_iter().map(str::to_owned).collect();
    let last = if tokens.refresh.is_some() {
        ctes.push(format!("access AS ({access})"));
        format!(
            "INSERT INTO refresh_tokens (token_hash, grant_id, created_at, expires_at, access_hash) SELECT $6, $2, $4, $7, $1{from}"
        )
    } else {
        access
    };
    // Every lead is a CTE, so there is always a WITH.
    let sql = format!("WITH {} {last}", ctes.join(", "));
    let (refresh_hash, refresh_expires) = match &tokens.refresh {
        Some((hash, expires_at)) => (Some(hash.as_str()), Some(*expires_at)),
        None => (None, None),
    };
    let mut query = sqlx::query(AssertSqlSafe(sql))
        .bind(&tokens.access_hash)
        .bind(grant_id)
        .bind(&tokens.access_scope)
        .bind(tokens.created_at)
        .bind(tokens.access_expires_at)
        .bind(refresh_hash)
        .bind(refresh_expires);
    match lead {
        Lead::Grant(grant) => {
            query = query
                .bind(&grant.client_id)
                .bind(&grant.user_id)
                .bind(&grant.session_id)
                .bind(&grant.scope)
                .bind(grant.auth_time)
                .bind(grant.created_at);
        }
        Lead::Claim { now, old_hash, lost_successor } => {
            query = query.bind(now).bind(old_hash).bind(lost_successor);
        }
    }
    Ok(query.execute(conn).await?.rows_affected() > 0)
}

pub(super) async fn revoke_grant_in(
    conn: &mut PgConnection,
    grant_id: &str,
    reason: &str,
    now: UnixTime,
) -> SqlResult<()> {
    sqlx::query("UPDATE grants SET revoked_at = $1, revoked_reason = $2 WHERE id = $3 AND revoked_at IS NULL")
        .bind(now)
        .bind(reason)
        .bind(grant_id)
        .execute(conn)
        .await?;
    Ok(())
}

/// Spends a code and records what it is exchanged for, or revokes that on a replay. Of racing
/// redemptions the conditional UPDATE lets one win: the others wait on its row lock, then find
/// it spent. The code names its grant in the same transaction, so every loser finds it.
pub(super) async fn redeem_code(
    conn: &mut PgConnection,
    code_hash: &str,
    grant: &Grant,
    tokens: &IssuedTokens,
    now: UnixTime,
) -> StoreResult<CodeRedemption> {
    let won = sqlx::query(AssertSqlSafe(format!(
        "WITH spent AS (UPDATE authorization_codes SET used_at = $1, grant_id = $2 \
         WHERE code_hash = $3 AND client_id = $4 AND user_id = $5 AND used_at IS NULL AND expires_at > $1 \
         RETURNING user_id) \
         SELECT {USER_COLUMNS} FROM users u JOIN spent ON spent.user_id = u.id"
    )))
    .bind(now)
    .bind(&grant.id)
    .bind(code_hash)
    .bind(&grant.client_id)
    .bind(&grant.user_id)
    .fetch_optional(&mut *conn)
    .await
    .map_err(backend)?;
    if let Some(row) = won {
        let user = user_from_row(&row, 0).map_err(backend)?;
        insert_tokens(conn, &grant.id, tokens, Lead::Grant(grant)).await.map_err(backend)?;
        return Ok(CodeRedemption::Redeemed { user: Box::new(user) });
    }
    let spent: Option<Option<String>> = sqlx::query_scalar(
        "SELECT grant_id FROM authorization_codes WHERE code_hash = $1 AND client_id = $2 AND used_at IS NOT NULL",
    )
    .bind(code_hash)
    .bind(&grant.client_id)
    .fetch_optional(&mut *conn)
    .await
    .map_err(backend)?;
    let Some(grant_id) = spent else {
        return Ok(CodeRedemption::Unknown);
    };
    if let Some(id) = &grant_id {
        revoke_grant_in(conn, id, "authorization code replayed", now).await.map_err(backend)?;
    }
    Ok(CodeRedemption::Replayed { grant_id })
}

/// A refresh token as the rotation sees it.
pub(super) struct Presented {
    pub(super) grant: Grant,
    pub(super) user: User,
    pub(super) used_at: Option<UnixTime>,
    pub(super) expires_at: UnixTime,
    pub(super) grant_revoked: bool,
    /// The token this one was rotated into, if it was.
    pub(super) replaced_by: Option<String>,
    /// Whether that successor is still unused.
    pub(super) successor_unused: bool,
}

pub(super) async fn presented_refresh(conn: &mut PgConnection, hash: &str) -> SqlResult<Option<Presented>> {
    let row = sqlx::query(AssertSqlSafe(format!(
        "SELECT {GRANT_COLUMNS}, {USER_COLUMNS}, r.used_at, r.expires_at, g.revoked_at IS NOT NULL, r.replaced_by, \
         EXISTS (SELECT 1 FROM refresh_tokens s WHERE s.token_hash = r.replaced_by AND s.used_at IS NULL) \
         FROM refresh_tokens r JOIN grants g ON g.id = r.grant_id JOIN users u ON u.id = g.user_id \
         WHERE r.token_hash = $1"
    )))
    .bind(hash)
    .fetch_optional(conn)
    .await?;
    row.map(|r| {
        Ok(Presented {
            grant: grant_from_row(&r)?,
            user: user_from_row(&r, GRANT_WIDTH)?,
            used_at: r.try_get(AFTER_GRANT_USER)?,
            expires_at: r.try_get(AFTER_GRANT_USER + 1)?,
            grant_revoked: r.try_get(AFTER_GRANT_USER + 2)?,
            replaced_by: r.try_get(AFTER_GRANT_USER + 3)?,
            successor_unused: r.try_get(AFTER_GRANT_USER + 4)?,
        })
    })
    .transpose()
}

/// Withdraws the refresh token `hash` and the access token issued with it. Spent, it counts as
/// reuse if it ever turns up.
async fn withdraw(conn: &mut PgConnection, hash: &str, now: UnixTime) -> SqlResult<()> {
    sqlx::query(
        "WITH spent AS (UPDATE refresh_tokens SET used_at = $1 WHERE token_hash = $2 RETURNING access_hash) \
         UPDATE access_tokens SET revoked_at = $1 WHERE token_hash IN (SELECT access_hash FROM spent) AND revoked_at IS NULL",
    )
    .bind(now)
    .bind(hash)
    .execute(conn)
    .await?;
    Ok(())
}

pub(super) async fn rotate_refresh(
    tx: &mut PgConnection,
    old_hash: &str,
    client_id: &str,
    now: UnixTime,
    reuse_grace: UnixTime,
    issue: IssueOnRotation,
) -> StoreResult<RefreshRotation> {
    let Some(found) = presented_refresh(tx, old_hash).await.map_err(backend)? else {
        return Ok(RefreshRotation::Invalid);
    };
    let Presented { grant, user, used_at, expires_at, grant_revoked, replaced_by, successor_unused } = found;
    // A token presented by another client is not "reuse" by its owner: refuse, change nothing.
    if grant.client_id != client_id || grant_revoked || expires_at <= now {
        return Ok(RefreshRotation::Invalid);
    }
    // The token just rotated away, back within the grace while its successor is unused: the
    // client most likely never got the answer, so the successor is withdrawn and replaced.
    // Anything else spent means two parties hold this login.
    let lost_successor = match (used_at, replaced_by) {
        (None, _) => None,
        (Some(spent_at), Some(successor)) if now - spent_at < reuse_grace && successor_unused => Some(successor),
        (Some(_), _) => {
            revoke_grant_in(tx, &grant.id, "refresh token reuse", now).await.map_err(backend)?;
            return Ok(RefreshRotation::Reused { grant_id: grant.id });
        }
    };
    let Some(issued) = issue(&grant, &user) else {
        return Ok(RefreshRotation::Declined);
    };
    // Claim and successor in one statement; a loser of a race claims nothing, inserts nothing,
    // and is the reuse it is.
    let claim = Lead::Claim { now, old_hash, lost_successor: lost_successor.as_deref() };
    if !insert_tokens(tx, &grant.id, &issued, claim).await.map_err(backend)? {
        revoke_grant_in(tx, &grant.id, "refresh token reuse", now).await.map_err(backend)?;
        return Ok(RefreshRotation::Reused { grant_id: grant.id });
    }
    if let Some(lost) = &lost_successor {
        withdraw(tx, lost, now).await.map_err(backend)?;
    }
    let (user, scope) = (Box::new(user), issued.access_scope);
    Ok(match lost_successor {
        Some(_) => RefreshRotation::Retried { grant, user, scope },
        None => RefreshRotation::Rotated { grant, user, scope },
    })
}
