//! Accounts as administrators see them: activity, blocking, deleting.

use std::collections::HashSet;

use super::*;

#[async_trait]
impl AccountStore for SqliteStore {
    async fn note_token_use(&self, user_id: &str, now: UnixTime) -> StoreResult<()> {
        let user_id = user_id.to_owned();
        self.write(move |conn| {
            conn.prepare_cached(
                "UPDATE users SET last_token_use_at = ?1 WHERE id = ?2 \
                 AND (last_token_use_at IS NULL OR last_token_use_at <= ?1 - ?3)",
            )
            .and_then(|mut s| s.execute(params![now, user_id, TOKEN_USE_RESOLUTION]))
            .map_err(backend)?;
            Ok(())
        })
        .await
    }

    async fn activity(&self, now: UnixTime) -> StoreResult<Vec<UserActivity>> {
        let conn = self.reader();
        // Users holding a usable token, in one pass over each token table (neither is indexed
        // by grant, and a per-user lookup would scan them once per user).
        let mut hub_live = HashSet::new();
        for sql in [
            "SELECT DISTINCT g.user_id FROM refresh_tokens r JOIN grants g ON g.id = r.grant_id \
             WHERE r.used_at IS NULL AND r.expires_at > ? AND g.revoked_at IS NULL",
            "SELECT DISTINCT g.user_id FROM access_tokens a JOIN grants g ON g.id = a.grant_id \
             WHERE a.revoked_at IS NULL AND a.expires_at > ? AND g.revoked_at IS NULL",
        ] {
            let mut stmt = conn.prepare(sql).map_err(backend)?;
            for id in stmt.query_map([now], |r| r.get::<_, String>(0)).map_err(backend)? {
                hub_live.insert(id.map_err(backend)?);
            }
        }
        let mut stmt = conn
            .prepare(
                "SELECT u.id, u.username, u.groups_json, u.created_at, u.last_login_at, u.last_token_use_at, u.blocked_at, \
                 (SELECT group_concat(connector_id, char(10)) FROM \
                    (SELECT DISTINCT connector_id FROM user_identities i WHERE i.user_id = u.id ORDER BY connector_id)), \
                 EXISTS (SELECT 1 FROM browser_sessions s WHERE s.user_id = u.id AND s.ended_at IS NULL AND s.expires_at > ?) \
                 FROM users u ORDER BY u.username",
            )
            .map_err(backend)?;
        let rows = stmt
            .query_map([now], |r| {
                let groups: String = r.get(2)?;
                let connectors: Option<String> = r.get(7)?;
                Ok((
                    UserActivity {
                        user_id: r.get(0)?,
                        username: r.get(1)?,
                        connectors: connectors.map(|c| c.split('\n').map(str::to_owned).collect()).unwrap_or_default(),
                        groups: Vec::new(),
                        created_at: r.get(3)?,
                        last_login_at: r.get(4)?,
                        last_token_use_at: r.get(5)?,
                        blocked_at: r.get(6)?,
                        hub_session_live: false,
                        sso_session_live: r.get(8)?,
                    },
                    groups,
                ))
            })
            .map_err(backend)?;
        let mut out = Vec::new();
        for row in rows {
            let (mut a, groups) = row.map_err(backend)?;
            a.groups = serde_json::from_str(&groups).map_err(backend)?;
            a.hub_session_live = hub_live.contains(&a.user_id);
            out.push(a);
        }
        Ok(out)
    }

    async fn block_user(&self, user_id: &str, now: UnixTime) -> StoreResult<bool> {
        let user_id = user_id.to_owned();
        self.write(move |conn| {
            let n = conn
                .execute("UPDATE users SET blocked_at = ? WHERE id = ? AND blocked_at IS NULL", params![now, user_id])
                .map_err(backend)?;
            conn.execute(
                "UPDATE user_identities SET tokens_sealed = NULL, tokens_expire_at = NULL WHERE user_id = ?",
                [&user_id],
            )
            .map_err(backend)?;
            Ok(n > 0)
        })
        .await
    }

    async fn delete_user(&self, user_id: &str) -> StoreResult<bool> {
        let user_id = user_id.to_owned();
        self.write(move |conn| {
            // Children first: every table that points at the user or their grants.
            for sql in [
                "DELETE FROM access_tokens WHERE grant_id IN (SELECT id FROM grants WHERE user_id = ?)",
                "DELETE FROM refresh_tokens WHERE grant_id IN (SELECT id FROM grants WHERE user_id = ?)",
                "DELETE FROM authorization_codes WHERE user_id = ?",
                "DELETE FROM grants WHERE user_id = ?",
                "DELETE FROM browser_sessions WHERE user_id = ?",
                "DELETE FROM invite_redemptions WHERE user_id = ?",
                "DELETE FROM user_identities WHERE user_id = ?",
            ] {
                conn.execute(sql, [&user_id]).map_err(backend)?;
            }
            let n = conn.execute("DELETE FROM users WHERE id = ?", [&user_id]).map_err(backend)?;
            Ok(n > 0)
        })
        .await
    }
    async fn unblock_user(&self, user_id: &str) -> StoreResult<bool> {
        let user_id = user_id.to_owned();
        self.write(move |conn| {
            let n = conn
                .execute("UPDATE users SET blocked_at = NULL WHERE id = ? AND blocked_at IS NOT NULL", [&user_id])
                .map_err(backend)?;
            Ok(n > 0)
        })
        .await
    }

    async fn users_page(&self, query: &UserQuery) -> StoreResult<Vec<UserRow>> {
        let conn = self.reader();
        let sql = format!(
            "SELECT u.id, u.username, u.name, u.email, u.groups_json, u.created_at, u.last_login_at, \
             u.last_token_use_at, u.blocked_at, \
             (SELECT group_concat(connector_id, char(10)) FROM \
                (SELECT DISTINCT connector_id FROM user_identities i WHERE i.user_id = u.id ORDER BY connector_id)) \
             FROM users u WHERE {USER_FILTER} AND (:after IS NULL OR u.username > :after) \
             ORDER BY u.username LIMIT :limit"
        );
        let mut stmt = conn.prepare_cached(&sql).map_err(backend)?;
        let rows = stmt
            .query_map(
                named_params! {
                    ":q": query.q, ":grp": query.group, ":connector": query.connector,
                    ":active": query.active_since, ":inactive": query.inactive_since, ":blocked": query.blocked, ":username": query.username,
                    ":after": query.after, ":limit": query.limit,
                },
                |r| {
                    let groups: String = r.get(4)?;
                    let connectors: Option<String> = r.get(9)?;
                    Ok((
                        UserRow {
                            user_id: r.get(0)?,
                            username: r.get(1)?,
                            name: r.get(2)?,
                            email: r.get(3)?,
                            groups: Vec::new(),
                            connectors: connectors
                                .map(|c| c.split('\n').map(str::to_owned).collect())
                                .unwrap_or_default(),
                            created_at: r.get(5)?,
                            last_login_at: r.get(6)?,
                            last_token_use_at: r.get(7)?,
                            blocked_at: r.get(8)?,
                        },
                        groups,
                    ))
                },
            )
            .map_err(backend)?;
        let mut out = Vec::new();
        for row in rows {
            let (mut u, groups) = row.map_err(backend)?;
            u.groups = serde_json::from_str(&groups).map_err(backend)?;
            out.push(u);
        }
        Ok(out)
    }

    async fn count_users(&self, query: &UserQuery) -> StoreResult<u64> {
        let conn = self.reader();
        let sql = format!("SELECT count(*) FROM users u WHERE {USER_FILTER}");
        let n: i64 = conn
            .prepare_cached(&sql)
            .and_then(|mut s| {
                s.query_row(
                    named_params! {
                        ":q": query.q, ":grp": query.group, ":connector": query.connector,
                        ":active": query.active_since, ":inactive": query.inactive_since, ":blocked": query.blocked, ":username": query.username,
                    },
                    |r| r.get(0),
                )
            })
            .map_err(backend)?;
        Ok(n as u64)
    }

    async fn live_sessions(&self, user_id: &str, now: UnixTime, limit: u32) -> StoreResult<Vec<LiveSession>> {
        let conn = self.reader();
        let mut out = Vec::new();
        let mut stmt = conn
            .prepare_cached(
                "SELECT id, connector_id, created_at, expires_at FROM browser_sessions \
                 WHERE user_id = ?1 AND ended_at IS NULL AND expires_at > ?2 ORDER BY created_at DESC LIMIT ?3",
            )
            .map_err(backend)?;
        let rows = stmt
            .query_map(params![user_id, now, limit], |r| {
                Ok(LiveSession {
                    kind: "browser".into(),
                    id: r.get(0)?,
                    connector_id: r.get(1)?,
                    client_id: None,
                    created_at: r.get(2)?,
                    expires_at: r.get(3)?,
                })
            })
            .map_err(backend)?;
        for row in rows {
            out.push(row.map_err(backend)?);
        }
        let mut stmt = conn
            .prepare_cached(
                "SELECT g.id, g.client_id, g.created_at FROM grants g WHERE g.user_id = ?1 AND g.revoked_at IS NULL \
                 AND (EXISTS (SELECT 1 FROM refresh_tokens r WHERE r.grant_id = g.id AND r.used_at IS NULL AND r.expires_at > ?2) \
                   OR EXISTS (SELECT 1 FROM access_tokens a WHERE a.grant_id = g.id AND a.revoked_at IS NULL AND a.expires_at > ?2)) \
                 ORDER BY g.created_at DESC LIMIT ?3",
            )
            .map_err(backend)?;
        let rows = stmt
            .query_map(params![user_id, now, limit], |r| {
                Ok(LiveSession {
                    kind: "grant".into(),
                    id: r.get(0)?,
                    connector_id: None,
                    client_id: r.get(1)?,
                    created_at: r.get(2)?,
                    expires_at: None,
                })
            })
            .map_err(backend)?;
        for row in rows {
            out.push(row.map_err(backend)?);
        }
        Ok(out)
    }
}

/// The `WHERE` of a user listing, with named parameters (each NULL when its filter is off).
/// The last activity is the later of the last sign-in and the last token use.
const USER_FILTER: &str = "(:q IS NULL OR instr(lower(u.username), lower(:q)) > 0 \
        OR instr(lower(coalesce(u.name, '')), lower(:q)) > 0 OR instr(lower(coalesce(u.email, '')), lower(:q)) > 0) \
    AND (:grp IS NULL OR EXISTS (SELECT 1 FROM json_each(u.groups_json) WHERE value = :grp)) \
    AND (:connector IS NULL OR EXISTS (SELECT 1 FROM user_identities i WHERE i.user_id = u.id AND i.connector_id = :connector)) \
    AND (:active IS NULL OR max(coalesce(u.last_login_at, 0), coalesce(u.last_token_use_at, 0)) >= :active) \
    AND (:inactive IS NULL OR max(coalesce(u.last_login_at, 0), coalesce(u.last_token_use_at, 0)) < :inactive) \
    AND (:blocked IS NULL OR (u.blocked_at IS NOT NULL) = :blocked) \
    AND (:username IS NULL OR u.username = :username)";
