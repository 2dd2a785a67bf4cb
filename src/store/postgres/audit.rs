//! The audit log.

use super::*;

#[async_trait]
impl AuditStore for PostgresStore {
    async fn record_audit(&self, e: &AuditEvent) -> StoreResult<()> {
        self.execute(
            sqlx::query(
                "INSERT INTO audit_events (at, kind, reason, username, user_id, connector_id, client_id, request_id, detail, actor) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
            )
            .bind(e.at)
            .bind(&e.kind)
            .bind(&e.reason)
            .bind(&e.username)
            .bind(&e.user_id)
            .bind(&e.connector_id)
            .bind(&e.client_id)
            .bind(&e.request_id)
            .bind(&e.detail)
            .bind(&e.actor),
        )
        .await?;
        Ok(())
    }

    async fn audit_events(&self, limit: u32) -> StoreResult<Vec<AuditEvent>> {
        let rows =
            sqlx::query(AssertSqlSafe(format!("SELECT {AUDIT_COLUMNS} FROM audit_events ORDER BY id DESC LIMIT $1")))
                .bind(i64::from(limit))
                .fetch_all(&mut *self.conn().await?)
                .await
                .map_err(backend)?;
        rows.iter().map(audit_from_row).collect::<SqlResult<_>>().map_err(backend)
    }

    async fn audit_page(&self, q: &AuditQuery) -> StoreResult<Vec<AuditRecord>> {
        // Every filter is a bound parameter; an unset one (NULL) matches everything.
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT id, {AUDIT_COLUMNS} FROM audit_events \
             WHERE ($1::TEXT IS NULL OR kind = $1) AND ($2::TEXT IS NULL OR actor = $2) \
               AND ($3::TEXT IS NULL OR username = $3) \
               AND ($4::BIGINT IS NULL OR at >= $4) AND ($5::BIGINT IS NULL OR at <= $5) \
               AND ($6::BIGINT IS NULL OR id < $6) \
             ORDER BY id DESC LIMIT $7"
        )))
        .bind(&q.kind)
        .bind(&q.actor)
        .bind(&q.username)
        .bind(q.since)
        .bind(q.until)
        .bind(q.before)
        .bind(i64::from(q.bounded_limit()))
        .fetch_all(&mut *self.conn().await?)
        .await
        .map_err(backend)?;
        rows.iter()
            .map(|r| -> SqlResult<AuditRecord> {
                Ok(AuditRecord { id: r.try_get(0)?, event: audit_from_row_at(r, 1)? })
            })
            .collect::<SqlResult<_>>()
            .map_err(backend)
    }

    async fn audit_events_of_user(&self, user_id: &str, username: &str, limit: u32) -> StoreResult<Vec<AuditEvent>> {
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT {AUDIT_COLUMNS} FROM ( \
               (SELECT * FROM audit_events WHERE user_id = $1 ORDER BY id DESC LIMIT $3) \
               UNION \
               (SELECT * FROM audit_events WHERE username = $2 AND user_id IS NULL ORDER BY id DESC LIMIT $3)) e \
             ORDER BY id DESC LIMIT $3"
        )))
        .bind(user_id)
        .bind(username)
        .bind(i64::from(limit))
        .fetch_all(&mut *self.conn().await?)
        .await
        .map_err(backend)?;
        rows.iter().map(audit_from_row).collect::<SqlResult<_>>().map_err(backend)
    }
}
