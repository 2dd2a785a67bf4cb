//! Sign-ins under way: trips to upstream providers, pending authorization requests, browser sessions.

use super::*;

#[async_trait]
impl SignInStore for SqliteStore {
    async fn create_upstream_attempt(&self, a: &UpstreamAttempt) -> StoreResult<()> {
        let a = a.clone();
        self.write(move |conn| {
            conn.execute(
                "INSERT INTO upstream_attempts (state_hash, pending_id, connector_id, pkce_verifier, nonce, created_at, expires_at) \
                 VALUES (?, ?, ?, ?, ?, ?, ?)",
                params![a.state_hash, a.pending_id, a.connector_id, a.pkce_verifier, a.nonce, a.created_at, a.expires_at],
            )
            .map_err(backend)?;
            // Reloading the login page starts a new trip each time: keep only the newest few.
            conn.prepare_cached(
                "DELETE FROM upstream_attempts WHERE state_hash IN (SELECT state_hash FROM upstream_attempts \
                 WHERE pending_id = ? ORDER BY created_at DESC, state_hash LIMIT -1 OFFSET ?)",
            )
            .and_then(|mut s| s.execute(params![a.pending_id, ATTEMPTS_PER_PENDING]))
            .map_err(backend)?;
            Ok(())
        })
        .await
    }

    async fn upstream_attempt(&self, state_hash: &str, now: UnixTime) -> StoreResult<Option<UpstreamAttempt>> {
        self.reader()
            .prepare_cached(&format!("SELECT {ATTEMPT_COLUMNS} FROM upstream_attempts WHERE state_hash = ?"))
            .and_then(|mut s| s.query_row([state_hash], attempt_from_row).optional())
            .map(|a| a.filter(|a| a.expires_at > now))
            .map_err(backend)
    }

    async fn take_upstream_attempt(&self, state_hash: &str, now: UnixTime) -> StoreResult<Option<UpstreamAttempt>> {
        let state_hash = state_hash.to_owned();
        self.write(move |conn| {
            conn.prepare_cached(&format!(
                "DELETE FROM upstream_attempts WHERE state_hash = ? RETURNING {ATTEMPT_COLUMNS}"
            ))
            .and_then(|mut s| s.query_row([state_hash], attempt_from_row).optional())
            .map(|a| a.filter(|a| a.expires_at > now))
            .map_err(backend)
        })
        .await
    }

    async fn create_browser_session(&self, s: &BrowserSession) -> StoreResult<()> {
        let s = s.clone();
        self.write(move |conn| {
            conn.execute(
                "INSERT INTO browser_sessions (id, token_hash, user_id, connector_id, csrf_token, auth_time, created_at, expires_at) \
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                params![s.id, s.token_hash, s.user_id, s.connector_id, s.csrf_token, s.auth_time, s.created_at, s.expires_at],
            )
            .map_err(backend)?;
            Ok(())
        })
        .await
    }

    async fn browser_session(&self, token_hash: &str, now: UnixTime) -> StoreResult<Option<BrowserSession>> {
        self.reader()
            .prepare_cached(
                "SELECT id, token_hash, user_id, connector_id, csrf_token, auth_time, created_at, expires_at FROM browser_sessions \
                 WHERE token_hash = ? AND ended_at IS NULL AND expires_at > ?",
            )
            .and_then(|mut s| s.query_row(params![token_hash, now], session_from_row).optional())
            .map_err(backend)
    }

    async fn end_browser_session(&self, id: &str, now: UnixTime) -> StoreResult<()> {
        let id = id.to_owned();
        self.write(move |conn| {
            conn.execute(
                "UPDATE browser_sessions SET ended_at = ? WHERE id = ? AND ended_at IS NULL",
                params![now, id],
            )
            .map_err(backend)?;
            Ok(())
        })
        .await
    }

    async fn create_pending_authorization(
        &self,
        p: &PendingAuthorization,
        limits: PendingLimits,
    ) -> StoreResult<PendingAdmission> {
        let p = p.clone();
        self.write(move |conn| {
            let total: u32 = conn
                .prepare_cached("SELECT count(*) FROM pending_authorizations WHERE expires_at > ?")
                .and_then(|mut s| s.query_row([p.created_at], |r| r.get(0)))
                .map_err(backend)?;
            if total >= limits.total {
                return Ok(PendingAdmission::Full);
            }
            if !p.client_address.is_empty() {
                let from_address: u32 = conn
                    .prepare_cached(
                        "SELECT count(*) FROM pending_authorizations WHERE client_address = ? AND expires_at > ?",
                    )
                    .and_then(|mut s| s.query_row(params![p.client_address, p.created_at], |r| r.get(0)))
                    .map_err(backend)?;
                if from_address >= limits.per_address {
                    return Ok(PendingAdmission::AddressFull);
                }
            }
            // Make room for the new one among the browser's newest, with the trips to providers
            // the dropped ones started.
            let beyond_cap = "SELECT id FROM pending_authorizations \
                 WHERE browser_binding_hash = ?1 ORDER BY created_at DESC, id LIMIT -1 OFFSET ?2";
            for sql in [
                format!("DELETE FROM upstream_attempts WHERE pending_id IN ({beyond_cap})"),
                format!("DELETE FROM pending_authorizations WHERE id IN ({beyond_cap})"),
            ] {
                conn.prepare_cached(&sql)
                    .and_then(|mut s| s.execute(params![p.browser_binding_hash, limits.per_browser.saturating_sub(1)]))
                    .map_err(backend)?;
            }
            conn.execute(
                "INSERT INTO pending_authorizations (id, request_json, browser_binding_hash, csrf_token, client_address, created_at, expires_at) \
                 VALUES (?, ?, ?, ?, ?, ?, ?)",
                params![p.id, p.request_json, p.browser_binding_hash, p.csrf_token, p.client_address, p.created_at, p.expires_at],
            )
            .map_err(backend)?;
            Ok(PendingAdmission::Stored)
        })
        .await
    }

    async fn pending_authorization(&self, id: &str, now: UnixTime) -> StoreResult<Option<PendingAuthorization>> {
        self.reader()
            .prepare_cached(
                "SELECT id, request_json, browser_binding_hash, csrf_token, client_address, created_at, expires_at \
                 FROM pending_authorizations WHERE id = ? AND expires_at > ?",
            )
            .and_then(|mut s| {
                s.query_row(params![id, now], |r| {
                    Ok(PendingAuthorization {
                        id: r.get("id")?,
                        request_json: r.get("request_json")?,
                        browser_binding_hash: r.get("browser_binding_hash")?,
                        csrf_token: r.get("csrf_token")?,
                        client_address: r.get("client_address")?,
                        created_at: r.get("created_at")?,
                        expires_at: r.get("expires_at")?,
                    })
                })
                .optional()
            })
            .map_err(backend)
    }

    async fn delete_pending_authorization(&self, id: &str) -> StoreResult<bool> {
        let id = id.to_owned();
        self.write(move |conn| {
            let n = conn.execute("DELETE FROM pending_authorizations WHERE id = ?", [id]).map_err(backend)?;
            Ok(n == 1)
        })
        .await
    }
}
