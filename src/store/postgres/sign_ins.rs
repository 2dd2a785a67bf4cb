//! Sign-ins under way: trips to upstream providers, pending authorization requests, browser sessions.

use super::*;

#[async_trait]
impl SignInStore for PostgresStore {
    async fn create_upstream_attempt(&self, a: &UpstreamAttempt) -> StoreResult<()> {
        let mut lease = self.conn().await?;
        let mut tx = sqlx::Connection::begin(&mut *lease).await.map_err(backend)?;
        sqlx::query(
            "INSERT INTO upstream_attempts (state_hash, pending_id, connector_id, pkce_verifier, nonce, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&a.state_hash)
        .bind(&a.pending_id)
        .bind(&a.connector_id)
        .bind(&a.pkce_verifier)
        .bind(&a.nonce)
        .bind(a.created_at)
        .bind(a.expires_at)
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
        // Reloading the login page starts a new trip each time: keep only the newest few.
        sqlx::query(
            "DELETE FROM upstream_attempts WHERE state_hash IN (SELECT state_hash FROM upstream_attempts \
             WHERE pending_id = $1 ORDER BY created_at DESC, state_hash OFFSET $2)",
        )
        .bind(&a.pending_id)
        .bind(ATTEMPTS_PER_PENDING)
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
        tx.commit().await.map_err(backend)
    }

    async fn upstream_attempt(&self, state_hash: &str, now: UnixTime) -> StoreResult<Option<UpstreamAttempt>> {
        sqlx::query(AssertSqlSafe(format!(
            "SELECT {ATTEMPT_COLUMNS} FROM upstream_attempts WHERE state_hash = $1 AND expires_at > $2"
        )))
        .bind(state_hash)
        .bind(now)
        .fetch_optional(&mut *self.conn().await?)
        .await
        .map_err(backend)?
        .map(|r| attempt_from_row(&r).map_err(backend))
        .transpose()
    }

    async fn take_upstream_attempt(&self, state_hash: &str, now: UnixTime) -> StoreResult<Option<UpstreamAttempt>> {
        let taken = sqlx::query(AssertSqlSafe(format!(
            "DELETE FROM upstream_attempts WHERE state_hash = $1 RETURNING {ATTEMPT_COLUMNS}"
        )))
        .bind(state_hash)
        .fetch_optional(&mut *self.conn().await?)
        .await
        .map_err(backend)?
        .map(|r| attempt_from_row(&r).map_err(backend))
        .transpose()?;
        Ok(taken.filter(|a| a.expires_at > now))
    }

    async fn create_browser_session(&self, s: &BrowserSession) -> StoreResult<()> {
        self.execute(
            sqlx::query(
                "INSERT INTO browser_sessions (id, token_hash, user_id, connector_id, csrf_token, auth_time, created_at, expires_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            )
            .bind(&s.id)
            .bind(&s.token_hash)
            .bind(&s.user_id)
            .bind(&s.connector_id)
            .bind(&s.csrf_token)
            .bind(s.auth_time)
            .bind(s.created_at)
            .bind(s.expires_at),
        )
        .await?;
        Ok(())
    }

    async fn browser_session(&self, token_hash: &str, now: UnixTime) -> StoreResult<Option<BrowserSession>> {
        sqlx::query(AssertSqlSafe(format!(
            "SELECT {SESSION_COLUMNS} FROM browser_sessions WHERE token_hash = $1 AND ended_at IS NULL AND expires_at > $2"
        )))
        .bind(token_hash)
        .bind(now)
        .fetch_optional(&mut *self.conn().await?)
        .await
        .map_err(backend)?
        .map(|r| session_from_row(&r).map_err(backend))
        .transpose()
    }

    async fn end_browser_session(&self, id: &str, now: UnixTime) -> StoreResult<()> {
        self.execute(
            sqlx::query("UPDATE browser_sessions SET ended_at = $1 WHERE id = $2 AND ended_at IS NULL")
                .bind(now)
                .bind(id),
        )
        .await?;
        Ok(())
    }

    async fn create_pending_authorization(
        &self,
        p: &PendingAuthorization,
        limits: PendingLimits,
    ) -> StoreResult<PendingAdmission> {
        // One statement counts, makes room among the browser's newest (with the trips to
        // providers the dropped ones started) and inserts. No lock: statements running at the
        // same moment on any replica do not see each other's rows, so a cap can be passed by at
        // most the number of sign-in starts in flight at once (each replica's `pool_size`) —
        // still bounded — while a burst of sign-ins does not queue behind one lock (bench/storm).
        let (total, stored): (i64, bool) = sqlx::query_as(
            "WITH counts AS (SELECT count(*) AS total, count(*) FILTER (WHERE client_address = $5) AS here \
             FROM pending_authorizations WHERE expires_at > $6), \
             admitted AS (SELECT 1 FROM counts WHERE total < $8 AND ($5 = '' OR here < $9)), \
             dropped AS (DELETE FROM pending_authorizations WHERE EXISTS (SELECT 1 FROM admitted) AND id IN \
             (SELECT id FROM pending_authorizations WHERE browser_binding_hash = $3 ORDER BY created_at DESC, id OFFSET $10) \
             RETURNING id), \
             attempts AS (DELETE FROM upstream_attempts WHERE pending_id IN (SELECT id FROM dropped)), \
             stored AS (INSERT INTO pending_authorizations \
             (id, request_json, browser_binding_hash, csrf_token, client_address, created_at, expires_at) \
             SELECT $1, $2, $3, $4, $5, $6, $7 FROM admitted RETURNING 1) \
             SELECT total, EXISTS (SELECT 1 FROM stored) FROM counts",
        )
        .bind(&p.id)
        .bind(&p.request_json)
        .bind(&p.browser_binding_hash)
        .bind(&p.csrf_token)
        .bind(&p.client_address)
        .bind(p.created_at)
        .bind(p.expires_at)
        .bind(i64::from(limits.total))
        .bind(i64::from(limits.per_address))
        .bind(i64::from(limits.per_browser.saturating_sub(1)))
        .fetch_one(&mut *self.conn().await?)
        .await
        .map_err(backend)?;
        Ok(match (stored, total >= i64::from(limits.total)) {
            (true, _) => PendingAdmission::Stored,
            // Not admitted: the total cap first; else the address was full.
            (false, true) => PendingAdmission::Full,
            (false, false) => PendingAdmission::AddressFull,
        })
    }

    async fn pending_authorization(&self, id: &str, now: UnixTime) -> StoreResult<Option<PendingAuthorization>> {
        sqlx::query(AssertSqlSafe(format!(
            "SELECT {PENDING_COLUMNS} FROM pending_authorizations WHERE id = $1 AND expires_at > $2"
        )))
        .bind(id)
        .bind(now)
        .fetch_optional(&mut *self.conn().await?)
        .await
        .map_err(backend)?
        .map(|r| pending_from_row(&r).map_err(backend))
        .transpose()
    }

    async fn delete_pending_authorization(&self, id: &str) -> StoreResult<bool> {
        Ok(self.execute(sqlx::query("DELETE FROM pending_authorizations WHERE id = $1").bind(id)).await? == 1)
    }
}
