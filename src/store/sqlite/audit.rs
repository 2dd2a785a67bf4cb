//! The audit log.

use super::*;

#[async_trait]
impl AuditStore for SqliteStore {
    async fn record_audit(&self, e: &AuditEvent) -> StoreResult<()> {
        let e = e.clone();
        self.write(move |conn| {
            conn.prepare_cached(
                "INSERT INTO audit_events (at, kind, reason, username, user_id, connector_id, client_id, request_id, detail, actor) \
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            )
            .and_then(|mut s| {
                s.execute(params![e.at, e.kind, e.reason, e.username, e.user_id, e.connector_id, e.client_id, e.request_id, e.detail, e.actor])
            })
            .map_err(backend)?;
            Ok(())
        })
        .await
    }

    async fn audit_events(&self, limit: u32) -> StoreResult<Vec<AuditEvent>> {
        let conn = self.reader();
        let mut stmt = conn
            .prepare_cached(
                "SELECT at, kind, reason, username, user_id, connector_id, client_id, request_id, detail, actor \
                 FROM audit_events ORDER BY id DESC LIMIT ?",
            )
            .map_err(backend)?;
        let rows = stmt
            .query_map([limit], |r| {
                Ok(AuditEvent {
                    at: r.get(0)?,
                    kind: r.get(1)?,
                    reason: r.get(2)?,
                    username: r.get(3)?,
                    user_id: r.get(4)?,
                    connector_id: r.get(5)?,
                    client_id: r.get(6)?,
                    request_id: r.get(7)?,
                    detail: r.get(8)?,
                    actor: r.get(9)?,
                })
            })
            .map_err(backend)?;
        rows.collect::<Result<Vec<_>, _>>().map_err(backend)
    }

    async fn audit_page(&self, q: &AuditQuery) -> StoreResult<Vec<AuditRecord>> {
        let conn = self.reader();
        // Every filter is a bound parameter; an unset one (NULL) matches everything.
        let mut stmt = conn
            .prepare_cached(
                "SELECT id, at, kind, reason, username, user_id, connector_id, client_id, request_id, detail, actor \
                 FROM audit_events \
                 WHERE (:kind IS NULL OR kind = :kind) AND (:actor IS NULL OR actor = :actor) \
                   AND (:username IS NULL OR username = :username) \
                   AND (:since IS NULL OR at >= :since) AND (:until IS NULL OR at <= :until) \
                   AND (:before IS NULL OR id < :before) \
                 ORDER BY id DESC LIMIT :limit",
            )
            .map_err(backend)?;
        let rows = stmt
            .query_map(
                named_params! {
                    ":kind": q.kind, ":actor": q.actor, ":username": q.username,
                    ":since": q.since, ":until": q.until, ":before": q.before, ":limit": q.bounded_limit(),
                },
                |r| {
                    Ok(AuditRecord {
                        id: r.get(0)?,
                        event: AuditEvent {
                            at: r.get(1)?,
                            kind: r.get(2)?,
                            reason: r.get(3)?,
                            username: r.get(4)?,
                            user_id: r.get(5)?,
                            connector_id: r.get(6)?,
                            client_id: r.get(7)?,
                            request_id: r.get(8)?,
                            detail: r.get(9)?,
                            actor: r.get(10)?,
                        },
                    })
                },
            )
            .map_err(backend)?;
        rows.collect::<Result<Vec<_>, _>>().map_err(backend)
    }

    async fn audit_events_of_user(&self, user_id: &str, username: &str, limit: u32) -> StoreResult<Vec<AuditEvent>> {
        let conn = self.reader();
        let mut stmt = conn
            .prepare_cached(
                "SELECT at, kind, reason, username, user_id, connector_id, client_id, request_id, detail, actor FROM ( \
                   SELECT * FROM (SELECT * FROM audit_events WHERE user_id = ?1 ORDER BY id DESC LIMIT ?3) \
                   UNION \
                   SELECT * FROM (SELECT * FROM audit_events WHERE username = ?2 AND user_id IS NULL ORDER BY id DESC LIMIT ?3)) \
                 ORDER BY id DESC LIMIT ?3",
            )
            .map_err(backend)?;
        let rows = stmt
            .query_map(params![user_id, username, limit], |r| {
                Ok(AuditEvent {
                    at: r.get(0)?,
                    kind: r.get(1)?,
                    reason: r.get(2)?,
                    username: r.get(3)?,
                    user_id: r.get(4)?,
                    connector_id: r.get(5)?,
                    client_id: r.get(6)?,
                    request_id: r.get(7)?,
                    detail: r.get(8)?,
                    actor: r.get(9)?,
                })
            })
            .map_err(backend)?;
        rows.collect::<Result<Vec<_>, _>>().map_err(backend)
    }
}
