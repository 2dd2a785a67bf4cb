//! The runtime allow-list.

use super::*;

const ACCESS_COLUMNS: &str = "id, kind, connector_id, value, groups_json, note, expires_at, created_by, created_at";

fn entry_from_row(r: &Row<'_>) -> rusqlite::Result<AccessEntry> {
    let (kind, connector): (String, String) = (r.get(1)?, r.get(2)?);
    let bad = |at: usize, e: Box<dyn std::error::Error + Send + Sync>| {
        rusqlite::Error::FromSqlConversionFailure(at, rusqlite::types::Type::Text, e)
    };
    let selector = AccessSelector::from_parts(&kind, &connector, r.get(3)?)
        .ok_or_else(|| bad(1, format!("kind {kind:?}").into()))?;
    let groups_json: String = r.get(4)?;
    Ok(AccessEntry {
        id: r.get(0)?,
        selector,
        groups: serde_json::from_str(&groups_json).map_err(|e| bad(4, Box::new(e)))?,
        note: r.get(5)?,
        expires_at: r.get(6)?,
        created_by: r.get(7)?,
        created_at: r.get(8)?,
    })
}

#[async_trait]
impl AccessListStore for SqliteStore {
    async fn put_access_entry(&self, e: &AccessEntry) -> StoreResult<(AccessEntry, bool)> {
        let e = e.clone();
        let groups = serde_json::to_string(&e.groups).map_err(backend)?;
        self.write(move |conn| {
            let s = &e.selector;
            let existing: Option<String> = conn
                .query_row(
                    "SELECT id FROM access_entries WHERE kind = ? AND connector_id = ? AND value_key = ?",
                    params![s.kind(), s.connector(), s.key()],
                    |r| r.get(0),
                )
                .optional()
                .map_err(backend)?;
            // The writer thread runs one write at a time: the look-up and the write cannot race.
            let id = existing.clone().unwrap_or(e.id.clone());
            conn.execute(
                "INSERT INTO access_entries (id, kind, connector_id, value, value_key, groups_json, note, expires_at, created_by, created_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10) \
                 ON CONFLICT (kind, connector_id, value_key) DO UPDATE SET value = ?4, groups_json = ?6, note = ?7, \
                 expires_at = ?8, created_by = ?9, created_at = ?10",
                params![id, s.kind(), s.connector(), s.value(), s.key(), groups, e.note, e.expires_at, e.created_by, e.created_at],
            )
            .map_err(backend)?;
            Ok((AccessEntry { id, ..e }, existing.is_some()))
        })
        .await
    }

    async fn delete_access_entry(&self, id: &str) -> StoreResult<Option<AccessEntry>> {
        let id = id.to_owned();
        self.write(move |conn| {
            conn.query_row(
                &format!("DELETE FROM access_entries WHERE id = ? RETURNING {ACCESS_COLUMNS}"),
                [id],
                entry_from_row,
            )
            .optional()
            .map_err(backend)
        })
        .await
    }

    async fn access_entry(&self, s: &AccessSelector) -> StoreResult<Option<AccessEntry>> {
        self.reader()
            .prepare_cached(&format!(
                "SELECT {ACCESS_COLUMNS} FROM access_entries WHERE kind = ? AND connector_id = ? AND value_key = ?"
            ))
            .and_then(|mut st| st.query_row(params![s.kind(), s.connector(), s.key()], entry_from_row).optional())
            .map_err(backend)
    }

    async fn access_entries(&self) -> StoreResult<Vec<AccessEntry>> {
        let conn = self.reader();
        let mut stmt = conn
            .prepare_cached(&format!("SELECT {ACCESS_COLUMNS} FROM access_entries ORDER BY created_at, id"))
            .map_err(backend)?;
        let rows = stmt.query_map([], entry_from_row).map_err(backend)?;
        rows.collect::<Result<Vec<_>, _>>().map_err(backend)
    }

    async fn matching_access_entries(&self, q: &AccessQuery, now: UnixTime) -> StoreResult<Vec<AccessEntry>> {
        let conn = self.reader();
        // A NULL never equals anything: a missing e-mail or login matches no entry.
        let mut stmt = conn
            .prepare_cached(&format!(
                "SELECT {ACCESS_COLUMNS} FROM access_entries \
                 WHERE (expires_at IS NULL OR expires_at > :now) AND ( \
                   (kind = 'username' AND connector_id = '' AND value_key = :username) \
                   OR (kind = 'email' AND connector_id = '' AND value_key = :email) \
                   OR (kind = 'login' AND connector_id = :connector AND value_key = :login)) \
                 ORDER BY created_at, id"
            ))
            .map_err(backend)?;
        let rows = stmt
            .query_map(
                named_params! {
                    ":now": now,
                    ":username": access_key(&q.username),
                    ":email": q.verified_email.as_deref().map(access_key),
                    ":connector": q.connector_id,
                    ":login": q.login.as_deref().map(access_key),
                },
                entry_from_row,
            )
            .map_err(backend)?;
        rows.collect::<Result<Vec<_>, _>>().map_err(backend)
    }
}
