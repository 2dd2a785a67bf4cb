//! Grants and their tokens: codes spent once, refresh tokens rotated with reuse detection, each
//! inside one transaction. Single use is in the statements themselves (conditional UPDATEs that
//! PostgreSQL re-checks against the row a racing transaction committed), not in a writer thread.

use super::*;
use crate::store::rotation::{self, Presented, Verdict};

/// What the statement that records a grant's new tokens does first, in the same statement: each
/// sub-statement is a round trip saved on every grant (bench/RESULTS.md counts them).
pub(super) enum Lead<'a> {
    /// The grant itself (`create_grant`).
    Grant(&'a Grant),
    /// Spending the code the grant is exchanged for, then the grant: nothing is inserted unless
    /// the code was still unspent (code exchange).
    Redeem { grant: &'a Grant, code_hash: &'a str, now: UnixTime },
    /// The rotation's claim of the presented refresh token: the tokens are inserted only if the
    /// claim changed it, so the statement inserts nothing when a racing rotation won.
    Claim { now: UnixTime, old_hash: &'a str, lost_successor: Option<&'a str> },
}

/// Records the access token (and refresh token, if any) of `tokens` for `grant_id`, after
/// `lead`, in one statement (no BEGIN/COMMIT: one statement is one transaction). `None` when a
/// [`Lead::Claim`] found the token already taken or a [`Lead::Redeem`] the code spent;
/// otherwise a row, for [`Lead::Redeem`] the user the code was issued to ([`USER_COLUMNS`]).
pub(super) async fn insert_tokens<'a>(
    conn: &mut PgConnection,
    grant_id: &'a str,
    tokens: &'a IssuedTokens,
    lead: Lead<'a>,
) -> SqlResult<Option<PgRow>> {
    // $1 access hash, $2 grant, $3 scope, $4 created, $5 access expiry, $6 refresh hash, $7 its
    // expiry; the lead's own parameters from $8.
    const GRANT_VALUES: &str = "$2, $8, $9, $10, $11, $12, $13";
    const GRANT_INSERT: &str = "INSERT INTO grants (id, client_id, user_id, session_id, scope, auth_time, created_at)";
    let (mut ctes, from, last) = match lead {
        Lead::Grant(_) => {
            (vec![format!("grant_row AS ({GRANT_INSERT} VALUES ({GRANT_VALUES}))")], "", "SELECT 1".to_owned())
        }
        Lead::Redeem { .. } => (
            vec![
                // The code's owner, client and expiry are re-checked here; of racing redemptions
                // one spends it, the others wait on its row lock and then find it spent.
                "spent AS (UPDATE authorization_codes SET used_at = $15, grant_id = $2 \
                 WHERE code_hash = $14 AND client_id = $8 AND user_id = $9 AND used_at IS NULL AND expires_at > $15 \
                 RETURNING user_id)"
                    .to_owned(),
                format!("grant_row AS ({GRANT_INSERT} SELECT {GRANT_VALUES} FROM spent)"),
            ],
            " FROM spent",
            format!("SELECT {USER_COLUMNS} FROM users u JOIN spent ON spent.user_id = u.id"),
        ),
        // Changes the token only if it is still as judged (unspent, or spent into the same lost
        // successor). A racing rotation waits on the row lock, PostgreSQL re-checks the
        // condition against the committed row, and the loser inserts nothing.
        Lead::Claim { .. } => (
            vec!["claimed AS (UPDATE refresh_tokens SET used_at = coalesce(used_at, $8), replaced_by = $6 \
                 WHERE token_hash = $9 AND (($10::text IS NULL AND used_at IS NULL) OR replaced_by = $10::text) \
                 RETURNING 1)"
                .to_owned()],
            " FROM claimed",
            "SELECT 1 FROM claimed".to_owned(),
        ),
    };
    ctes.push(format!(
        "access AS (INSERT INTO access_tokens (token_hash, grant_id, scope, created_at, expires_at) \
         SELECT $1, $2, $3, $4, $5{from})"
    ));
    if tokens.refresh.is_some() {
        ctes.push(format!(
            "refresh AS (INSERT INTO refresh_tokens (token_hash, grant_id, created_at, expires_at, access_hash) \
             SELECT $6, $2, $4, $7, $1{from})"
        ));
    }
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
    let grant_params = |query: sqlx::query::Query<'a, sqlx::Postgres, sqlx::postgres::PgArguments>,
                        grant: &'a Grant| {
        query
            .bind(&grant.client_id)
            .bind(&grant.user_id)
            .bind(&grant.session_id)
            .bind(&grant.scope)
            .bind(grant.auth_time)
            .bind(grant.created_at)
    };
    match lead {
        Lead::Grant(grant) => query = grant_params(query, grant),
        Lead::Redeem { grant, code_hash, now } => query = grant_params(query, grant).bind(code_hash).bind(now),
        Lead::Claim { now, old_hash, lost_successor } => {
            query = query.bind(now).bind(old_hash).bind(lost_successor);
        }
    }
    query.fetch_optional(conn).await
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

/// Spends a code and records what it is exchanged for, or revokes that on a replay. One
/// statement spends and records ([`Lead::Redeem`]): of racing redemptions one wins, and the
/// code names its grant in that same statement, so every loser finds it.
pub(super) async fn redeem_code(
    conn: &mut PgConnection,
    code_hash: &str,
    grant: &Grant,
    tokens: &IssuedTokens,
    now: UnixTime,
) -> StoreResult<CodeRedemption> {
    let won =
        insert_tokens(&mut *conn, &grant.id, tokens, Lead::Redeem { grant, code_hash, now }).await.map_err(backend)?;
    if let Some(row) = won {
        let user = user_from_row(&row, 0).map_err(backend)?;
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
            token_hash: hash.to_owned(),
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

/// Rotates the refresh token `seen` was read for (see [`TokenStore::rotate_refresh_token`]). No
/// BEGIN/COMMIT on the usual path: the token read before the person was re-checked is judged,
/// and claimed together with its successor in one statement whose condition re-checks what was
/// judged (so of racing rotations one claims). A claim that finds the token changed reads and
/// judges it once more. Only a retry after a lost answer writes twice (the claim, and
/// withdrawing the lost successor) and so takes a transaction.
pub(super) async fn rotate_refresh(
    conn: &mut PgConnection,
    seen: Presented,
    client_id: &str,
    now: UnixTime,
    reuse_grace: UnixTime,
    issue: IssueOnRotation,
) -> StoreResult<RefreshRotation> {
    let mut found = seen;
    let mut lost_successor = match rotation::judge(&found, client_id, now, reuse_grace) {
        Verdict::Invalid => return Ok(RefreshRotation::Invalid),
        Verdict::Reuse => return reused(conn, found, now).await,
        Verdict::Rotate { lost_successor } => lost_successor,
    };
    let Some(issued) = issue(&found.grant, &found.user) else {
        return Ok(RefreshRotation::Declined);
    };
    for reread in [false, true] {
        if reread {
            // The token changed since it was read: judge it as it is now.
            let Some(now_found) = presented_refresh(&mut *conn, &found.token_hash).await.map_err(backend)? else {
                return Ok(RefreshRotation::Invalid);
            };
            found = now_found;
            lost_successor = match rotation::judge(&found, client_id, now, reuse_grace) {
                Verdict::Invalid => return Ok(RefreshRotation::Invalid),
                Verdict::Reuse => break,
                Verdict::Rotate { lost_successor } => lost_successor,
            };
        }
        let claim = Lead::Claim { now, old_hash: &found.token_hash, lost_successor: lost_successor.as_deref() };
        let claimed = match &lost_successor {
            None => insert_tokens(&mut *conn, &found.grant.id, &issued, claim).await.map_err(backend)?.is_some(),
            Some(lost) => {
                let mut tx = sqlx::Connection::begin(&mut *conn).await.map_err(backend)?;
                let claimed = insert_tokens(&mut tx, &found.grant.id, &issued, claim).await.map_err(backend)?.is_some();
                if claimed {
                    withdraw(&mut tx, lost, now).await.map_err(backend)?;
                }
                tx.commit().await.map_err(backend)?;
                claimed
            }
        };
        if !claimed {
            continue;
        }
        let Presented { grant, user, .. } = found;
        let (user, scope) = (Box::new(user), issued.access_scope);
        return Ok(match lost_successor {
            Some(_) => RefreshRotation::Retried { grant, user, scope },
            None => RefreshRotation::Rotated { grant, user, scope },
        });
    }
    reused(conn, found, now).await
}

/// [`TokenStore::rotate_fresh_refresh_token`] in one statement (one round trip): the claim's
/// condition is all that [`rotation::judge`] and the person's re-check would look at first —
/// unspent, unexpired, the client's unrevoked grant, a person checked recently enough — and the
/// new tokens are inserted only if it claimed.
pub(super) async fn rotate_fresh(
    conn: &mut PgConnection,
    hash: &str,
    client_id: &str,
    now: UnixTime,
    checked_since: UnixTime,
    tokens: &IssuedTokens,
) -> StoreResult<Option<RefreshRotation>> {
    // $1 access hash, $2 created, $3 access expiry, $4 refresh hash, $5 its expiry, $6 now,
    // $7 presented hash, $8 client, $9 checked since.
    let refresh = match tokens.refresh {
        Some(_) => {
            ", refresh AS (INSERT INTO refresh_tokens (token_hash, grant_id, created_at, expires_at, access_hash) \
             SELECT $4, c.claimed_grant, $2, $5, $1 FROM claimed c)"
        }
        None => "",
    };
    let sql = format!(
        "WITH claimed AS (UPDATE refresh_tokens r SET used_at = $6, replaced_by = $4 \
         FROM grants g JOIN users u ON u.id = g.user_id \
         WHERE r.token_hash = $7 AND r.used_at IS NULL AND r.expires_at > $6 AND g.id = r.grant_id \
         AND g.client_id = $8 AND g.revoked_at IS NULL AND u.updated_at >= $9 \
         RETURNING {GRANT_COLUMNS}, {USER_COLUMNS}, r.grant_id AS claimed_grant, g.scope AS claimed_scope), \
         access AS (INSERT INTO access_tokens (token_hash, grant_id, scope, created_at, expires_at) \
         SELECT $1, c.claimed_grant, c.claimed_scope, $2, $3 FROM claimed c){refresh} \
         SELECT * FROM claimed"
    );
    let (refresh_hash, refresh_expires) = match &tokens.refresh {
        Some((hash, expires_at)) => (Some(hash.as_str()), Some(*expires_at)),
        None => (None, None),
    };
    let row = sqlx::query(AssertSqlSafe(sql))
        .bind(&tokens.access_hash)
        .bind(tokens.created_at)
        .bind(tokens.access_expires_at)
        .bind(refresh_hash)
        .bind(refresh_expires)
        .bind(now)
        .bind(hash)
        .bind(client_id)
        .bind(checked_since)
        .fetch_optional(conn)
        .await
        .map_err(backend)?;
    let Some(row) = row else { return Ok(None) };
    let grant = grant_from_row(&row).map_err(backend)?;
    let user = Box::new(user_from_row(&row, GRANT_WIDTH).map_err(backend)?);
    let scope = grant.scope.clone();
    Ok(Some(RefreshRotation::Rotated { grant, user, scope }))
}

/// A spent token presented again: two parties hold this login, so its whole family goes.
async fn reused(conn: &mut PgConnection, found: Presented, now: UnixTime) -> StoreResult<RefreshRotation> {
    revoke_grant_in(conn, &found.grant.id, "refresh token reuse", now).await.map_err(backend)?;
    Ok(RefreshRotation::Reused { grant_id: found.grant.id })
}

#[async_trait]
impl TokenStore for PostgresStore {
    async fn create_service_token(&self, t: &ServiceToken) -> StoreResult<()> {
        self.execute(
            sqlx::query(
                "INSERT INTO service_tokens (token_hash, client_id, scope, created_at, expires_at) VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(&t.token_hash)
            .bind(&t.client_id)
            .bind(&t.scope)
            .bind(t.created_at)
            .bind(t.expires_at),
        )
        .await?;
        Ok(())
    }

    async fn service_token(&self, hash: &str, now: UnixTime) -> StoreResult<Option<ServiceToken>> {
        let row: Option<(String, String, String, i64, i64)> = sqlx::query_as(
            "SELECT token_hash, client_id, scope, created_at, expires_at FROM service_tokens \
             WHERE token_hash = $1 AND revoked_at IS NULL AND expires_at > $2",
        )
        .bind(hash)
        .bind(now)
        .fetch_optional(&mut *self.conn().await?)
        .await
        .map_err(backend)?;
        Ok(row.map(|(token_hash, client_id, scope, created_at, expires_at)| ServiceToken {
            token_hash,
            client_id,
            scope,
            created_at,
            expires_at,
        }))
    }

    async fn revoke_service_token(&self, hash: &str, now: UnixTime) -> StoreResult<bool> {
        let n = self
            .execute(
                sqlx::query("UPDATE service_tokens SET revoked_at = $1 WHERE token_hash = $2 AND revoked_at IS NULL")
                    .bind(now)
                    .bind(hash),
            )
            .await?;
        Ok(n == 1)
    }

    async fn create_authorization_code(&self, c: &AuthorizationCode) -> StoreResult<()> {
        self.execute(
            sqlx::query(
                "INSERT INTO authorization_codes (code_hash, client_id, user_id, session_id, request_json, auth_time, created_at, expires_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            )
            .bind(&c.code_hash)
            .bind(&c.client_id)
            .bind(&c.user_id)
            .bind(&c.session_id)
            .bind(&c.request_json)
            .bind(c.auth_time)
            .bind(c.created_at)
            .bind(c.expires_at),
        )
        .await?;
        Ok(())
    }

    async fn authorization_code(&self, code_hash: &str) -> StoreResult<Option<StoredCode>> {
        sqlx::query(AssertSqlSafe(format!(
            "SELECT {CODE_COLUMNS}, used_at IS NOT NULL FROM authorization_codes WHERE code_hash = $1"
        )))
        .bind(code_hash)
        .fetch_optional(&mut *self.conn().await?)
        .await
        .map_err(backend)?
        .map(|r| Ok(StoredCode { code: code_from_row(&r)?, spent: r.try_get(8)? }))
        .transpose()
        .map_err(|e: sqlx::Error| backend(e))
    }

    async fn redeem_authorization_code(
        &self,
        code_hash: &str,
        grant: &Grant,
        tokens: &IssuedTokens,
        now: UnixTime,
    ) -> StoreResult<CodeRedemption> {
        redeem_code(&mut *self.conn().await?, code_hash, grant, tokens, now).await
    }

    async fn create_grant(&self, grant: &Grant, tokens: &IssuedTokens) -> StoreResult<()> {
        // One statement: no transaction around it needed.
        insert_tokens(&mut *self.conn().await?, &grant.id, tokens, Lead::Grant(grant)).await.map_err(backend)?;
        Ok(())
    }

    async fn presented_refresh_token(&self, hash: &str) -> StoreResult<Option<Presented>> {
        presented_refresh(&mut *self.conn().await?, hash).await.map_err(backend)
    }

    async fn rotate_refresh_token(
        &self,
        seen: Presented,
        client_id: &str,
        now: UnixTime,
        reuse_grace: UnixTime,
        issue: IssueOnRotation,
    ) -> StoreResult<RefreshRotation> {
        rotate_refresh(&mut *self.conn().await?, seen, client_id, now, reuse_grace, issue).await
    }

    async fn rotate_fresh_refresh_token(
        &self,
        hash: &str,
        client_id: &str,
        now: UnixTime,
        checked_since: UnixTime,
        tokens: &IssuedTokens,
    ) -> StoreResult<Option<RefreshRotation>> {
        rotate_fresh(&mut *self.conn().await?, hash, client_id, now, checked_since, tokens).await
    }

    async fn access_token(&self, hash: &str, now: UnixTime) -> StoreResult<Option<AccessTokenRecord>> {
        sqlx::query(AssertSqlSafe(format!(
            "SELECT {GRANT_COLUMNS}, {USER_COLUMNS}, a.scope, a.created_at, a.expires_at \
             FROM access_tokens a JOIN grants g ON g.id = a.grant_id JOIN users u ON u.id = g.user_id \
             WHERE a.token_hash = $1 AND a.revoked_at IS NULL AND a.expires_at > $2 AND g.revoked_at IS NULL"
        )))
        .bind(hash)
        .bind(now)
        .fetch_optional(&mut *self.conn().await?)
        .await
        .map_err(backend)?
        .map(|r| {
            Ok(AccessTokenRecord {
                grant: grant_from_row(&r)?,
                user: user_from_row(&r, GRANT_WIDTH)?,
                scope: r.try_get(AFTER_GRANT_USER)?,
                created_at: r.try_get(AFTER_GRANT_USER + 1)?,
                expires_at: r.try_get(AFTER_GRANT_USER + 2)?,
            })
        })
        .transpose()
        .map_err(|e: sqlx::Error| backend(e))
    }

    async fn refresh_token(&self, hash: &str, now: UnixTime) -> StoreResult<Option<RefreshTokenRecord>> {
        sqlx::query(AssertSqlSafe(format!(
            "SELECT {GRANT_COLUMNS}, {USER_COLUMNS}, r.created_at, r.expires_at \
             FROM refresh_tokens r JOIN grants g ON g.id = r.grant_id JOIN users u ON u.id = g.user_id \
             WHERE r.token_hash = $1 AND r.used_at IS NULL AND r.expires_at > $2 AND g.revoked_at IS NULL"
        )))
        .bind(hash)
        .bind(now)
        .fetch_optional(&mut *self.conn().await?)
        .await
        .map_err(backend)?
        .map(|r| {
            Ok(RefreshTokenRecord {
                grant: grant_from_row(&r)?,
                user: user_from_row(&r, GRANT_WIDTH)?,
                created_at: r.try_get(AFTER_GRANT_USER)?,
                expires_at: r.try_get(AFTER_GRANT_USER + 1)?,
            })
        })
        .transpose()
        .map_err(|e: sqlx::Error| backend(e))
    }

    async fn revoke_access_token(&self, hash: &str, now: UnixTime) -> StoreResult<bool> {
        let n = self
            .execute(
                sqlx::query("UPDATE access_tokens SET revoked_at = $1 WHERE token_hash = $2 AND revoked_at IS NULL")
                    .bind(now)
                    .bind(hash),
            )
            .await?;
        Ok(n == 1)
    }

    async fn revoke_grant(&self, grant_id: &str, reason: &str, now: UnixTime) -> StoreResult<()> {
        revoke_grant_in(&mut *self.conn().await?, grant_id, reason, now).await.map_err(backend)
    }
}
