//! The runtime allow-list.

use super::*;

const ACCESS_COLUMNS: &str = "id, kind, connector_id, value, groups_json, note, expires_at, created_by, created_at";

fn entry_from_row(r: &PgRow) -> SqlResult<AccessEntry> {
    let (kind, connector): (String, String) = (r.try_get(1)?, r.try_get(2)?);
    let selector = AccessSelector::from_parts(&kind, &connector, r.try_get(3)?)
        .ok_or_else(|| sqlx::Error::ColumnDecode { index: "1".into(), source: format!("kind {kind:?}").into() })?;
    Ok(AccessEntry {
        id: r.try_get(0)?,
        selector,
        groups: json_column(r, 4)?,
        note: r.try_get(5)?,
        expires_at: r.try_get(6)?,
        created_by: r.try_get(7)?,
        created_at: r.try_get(8)?,
    })
}

#[async_trait]
impl AccessListStore for PostgresStore {
    async fn put_access_entry(&self, e: &AccessEntry) -> StoreResult<(AccessEntry, bool)> {
        let s = &e.selector;
        let groups = serde_json::to_string(&e.groups).map_err(backend)?;
        // One statement: of two racing puts for one selector, the second updates the first's row
        // (and keeps its id, which is how it knows it replaced one).
        let id: String = sqlx::query_scalar(
            "INSERT INTO access_entries (id, kind, connector_id, value, value_key, groups_json, note, expires_at, created_by, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
             ON CONFLICT (kind, connector_id, value_key) DO UPDATE SET value = EXCLUDED.value, \
             groups_json = EXCLUDED.groups_json, note = EXCLUDED.note, expires_at = EXCLUDED.expires_at, \
             created_by = EXCLUDED.created_by, created_at = EXCLUDED.created_at \
             RETURNING id",
        )
        .bind(&e.id)
        .bind(s.kind())
        .bind(s.connector())
        .bind(s.value())
        .bind(s.key())
        .bind(groups)
        .bind(&e.note)
        .bind(e.expires_at)
        .bind(&e.created_by)
        .bind(e.created_at)
        .fetch_one(&mut *self.conn().await?)
        .await
        .map_err(backend)?;
        let replaced = id != e.id;
        Ok((AccessEntry { id, ..e.clone() }, replaced))
    }

    async fn delete_access_entry(&self, id: &str) -> StoreResult<Option<AccessEntry>> {
        sqlx::query(AssertSqlSafe(format!("DELETE FROM access_entries WHERE id = $1 RETURNING {ACCESS_COLUMNS}")))
            .bind(id)
            .fetch_optional(&mut *self.conn().await?)
            .await
            .map_err(backend)?
            .map(|r| entry_from_row(&r).map_err(backend))
            .transpose()
    }

    async fn access_entry(&self, s: &AccessSelector) -> StoreResult<Option<AccessEntry>> {
        sqlx::query(AssertSqlSafe(format!(
            "SELECT {ACCESS_COLUMNS} FROM access_entries WHERE kind = $1 AND connector_id = $2 AND value_key = $3"
        )))
        .bind(s.kind())
        .bind(s.connector())
        .bind(s.key())
        .fetch_optional(&mut *self.conn().await?)
        .await
        .map_err(backend)?
        .map(|r| entry_from_row(&r).map_err(backend))
        .transpose()
    }

    async fn access_entries(&self) -> StoreResult<Vec<AccessEntry>> {
        let rows =
            sqlx::query(AssertSqlSafe(format!("SELECT {ACCESS_COLUMNS} FROM access_entries ORDER BY created_at, id")))
                .fetch_all(&mut *self.conn().await?)
                .await
                .map_err(backend)?;
        rows.iter().map(entry_from_row).collect::<SqlResult<_>>().map_err(backend)
    }

    async fn matching_access_entries(&self, q: &AccessQuery, now: UnixTime) -> StoreResult<Vec<AccessEntry>> {
        // A NULL never equals anything: a missing e-mail or login matches no entry.
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT {ACCESS_COLUMNS} FROM access_entries \
             WHERE (expires_at IS NULL OR expires_at > $1) AND ( \
               (kind = 'username' AND connector_id = '' AND value_key = $2) \
               OR (kind = 'email' AND connector_id = '' AND value_key = $3) \
               OR (kind = 'login' AND connector_id = $4 AND value_key = $5)) \
             ORDER BY created_at, id"
        )))
        .bind(now)
        .bind(access_key(&q.username))
        .bind(q.verified_email.as_deref().map(access_key))
        .bind(&q.connector_id)
        .bind(q.login.as_deref().map(access_key))
        .fetch_all(&mut *self.conn().await?)
        .await
        .map_err(backend)?;
        rows.iter().map(entry_from_row).collect::<SqlResult<_>>().map_err(backend)
    }
}
