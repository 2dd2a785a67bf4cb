//! Upstream identities and the users they sign in as (account links, usernames).

use super::*;
use crate::store::linking::{self, Landing, Owner};

/// The user an identity signs in as ([`linking::owner`]), read inside `conn`.
pub(super) fn owner_of(
    conn: &Connection,
    identity: &UpstreamIdentity,
    link_by_email: bool,
) -> rusqlite::Result<Option<Owner>> {
    let linked: Option<String> = conn
        .prepare_cached("SELECT user_id FROM user_identities WHERE connector_id = ? AND upstream_subject = ?")?
        .query_row([&identity.connector_id, &identity.subject], |r| r.get(0))
        .optional()?;
    let same_email = match (&linked, linking::email_to_match(identity, link_by_email)) {
        (None, Some(email)) => conn
            .prepare_cached("SELECT id FROM users WHERE email = ? AND email_verified = 1 LIMIT 2")?
            .query_map([email], |r| r.get(0))?
            .collect::<Result<_, _>>()?,
        _ => Vec::new(),
    };
    Ok(linking::owner(linked, same_email))
}

/// [`linking::is_primary`], read inside `conn`.
pub(super) fn is_primary_identity(
    conn: &Connection,
    user_id: &str,
    identity: &UpstreamIdentity,
) -> rusqlite::Result<bool> {
    let first: Option<(String, String)> = conn
        .prepare_cached(
            "SELECT connector_id, upstream_subject FROM user_identities WHERE user_id = ? \
             ORDER BY created_at, rowid LIMIT 1",
        )?
        .query_row([user_id], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    Ok(linking::is_primary(first, identity))
}

impl SqliteStore {
    pub(super) async fn upsert_identity(
        &self,
        identity: &UpstreamIdentity,
        upstream: &UpstreamRecord,
        now: UnixTime,
        is_login: bool,
    ) -> StoreResult<User> {
        let groups = serde_json::to_string(&identity.groups).map_err(backend)?;
        let (identity, upstream) = (identity.clone(), upstream.clone());
        let memberships =
            if upstream.memberships_json.is_empty() { "[]".to_string() } else { upstream.memberships_json.clone() };
        self.write(move |tx| {
            let holder: Option<String> = tx
                .prepare_cached("SELECT id FROM users WHERE username = ?")
                .and_then(|mut s| s.query_row([&identity.username], |r| r.get(0)).optional())
                .map_err(backend)?;
            let owner = owner_of(tx, &identity, upstream.link_by_verified_email).map_err(backend)?;
            let (primary, owner_username) = match &owner {
                Some(o) => (
                    is_primary_identity(tx, &o.user_id, &identity).map_err(backend)?,
                    tx.query_row("SELECT username FROM users WHERE id = ?", [&o.user_id], |r| r.get(0))
                        .optional()
                        .map_err(backend)?,
                ),
                None => (true, None),
            };
            let link_identity = |tx: &Connection, user_id: &str| {
                tx.execute(
                    "INSERT INTO user_identities (connector_id, upstream_subject, user_id, created_at) VALUES (?, ?, ?, ?)",
                    params![identity.connector_id, identity.subject, user_id, now],
                )
                .map_err(identity_conflict(&identity))
            };
            let user_id = match linking::landing(&identity, owner, primary, owner_username, holder.as_deref())? {
                Landing::Existing { user_id, username, link } => {
                    if link {
                        link_identity(tx, &user_id)?;
                    }
                    tx.execute(
                        "UPDATE users SET username = :username, name = :name, email = :email, email_verified = :verified, \
                         groups_json = :groups, updated_at = :now, \
                         last_login_at = CASE WHEN :login THEN :now ELSE last_login_at END WHERE id = :id",
                        named_params! {
                            ":username": username, ":name": identity.name, ":email": identity.email,
                            ":verified": identity.email_verified as i64, ":groups": groups, ":now": now, ":id": user_id,
                            ":login": is_login,
                        },
                    )
                    .map_err(identity_conflict(&identity))?;
                    user_id
                }
                Landing::NewUser => {
                    let user_id = uuid::Uuid::new_v4().to_string();
                    tx.execute(
                        "INSERT INTO users (id, username, name, email, email_verified, groups_json, created_at, updated_at, last_login_at) \
                         VALUES (:id, :username, :name, :email, :verified, :groups, :now, :now, :now)",
                        named_params! {
                            ":id": user_id, ":username": identity.username, ":name": identity.name, ":email": identity.email,
                            ":verified": identity.email_verified as i64, ":groups": groups, ":now": now,
                        },
                    )
                    .map_err(identity_conflict(&identity))?;
                    link_identity(tx, &user_id)?;
                    user_id
                }
            };
            tx.execute(
                "UPDATE user_identities SET memberships_json = ?, tokens_sealed = ?, tokens_expire_at = ?, refreshed_at = ?, \
                 upstream_username = COALESCE(?, upstream_username) WHERE connector_id = ? AND upstream_subject = ?",
                params![
                    memberships,
                    upstream.tokens_sealed,
                    upstream.tokens_expire_at,
                    now,
                    upstream.upstream_username,
                    identity.connector_id,
                    identity.subject
                ],
            )
            .map_err(backend)?;
            user_by(tx, "id", &user_id).map_err(backend)?.ok_or_else(|| backend(anyhow::anyhow!("user vanished")))
        })
        .await
    }
}

#[async_trait]
impl UserStore for SqliteStore {
    async fn record_upstream_login(
        &self,
        identity: &UpstreamIdentity,
        upstream: &UpstreamRecord,
        now: UnixTime,
    ) -> StoreResult<User> {
        self.upsert_identity(identity, upstream, now, true).await
    }

    async fn record_recheck(
        &self,
        identity: &UpstreamIdentity,
        upstream: &UpstreamRecord,
        now: UnixTime,
    ) -> StoreResult<User> {
        self.upsert_identity(identity, upstream, now, false).await
    }

    async fn login_target(
        &self,
        identity: &UpstreamIdentity,
        link_by_verified_email: bool,
    ) -> StoreResult<Option<LoginTarget>> {
        let conn = self.reader();
        let Some(owner) = owner_of(&conn, identity, link_by_verified_email).map_err(backend)? else {
            return Ok(None);
        };
        let primary =
            !owner.linked_by_email && is_primary_identity(&conn, &owner.user_id, identity).map_err(backend)?;
        let Some(user) = user_by(&conn, "id", &owner.user_id).map_err(backend)? else {
            return Ok(None);
        };
        let blocked: bool = conn
            .prepare_cached("SELECT blocked_at IS NOT NULL FROM users WHERE id = ?")
            .and_then(|mut s| s.query_row([&user.id], |r| r.get(0)))
            .map_err(backend)?;
        Ok(Some(LoginTarget { user, primary, blocked }))
    }

    async fn upstream_for_user(&self, user_id: &str) -> StoreResult<Option<StoredUpstream>> {
        self.reader()
            .prepare_cached(
                "SELECT user_id, connector_id, upstream_subject, memberships_json, tokens_sealed, tokens_expire_at, refreshed_at, upstream_username \
                 FROM user_identities WHERE user_id = ? ORDER BY refreshed_at DESC LIMIT 1",
            )
            .and_then(|mut s| s.query_row([user_id], stored_upstream_from_row).optional())
            .map_err(backend)
    }

    async fn link_identity(&self, user_id: &str, connector_id: &str, subject: &str, now: UnixTime) -> StoreResult<()> {
        let (user_id, connector_id, subject) = (user_id.to_owned(), connector_id.to_owned(), subject.to_owned());
        self.write(move |conn| {
            // Insert first: the primary key says whether someone else holds the account.
            let inserted = conn
                .execute(
                    "INSERT INTO user_identities (connector_id, upstream_subject, user_id, created_at) VALUES (?, ?, ?, ?) \
                     ON CONFLICT DO NOTHING",
                    params![connector_id, subject, user_id, now],
                )
                .map_err(backend)?;
            if inserted == 1 {
                return Ok(());
            }
            let holder: String = conn
                .query_row(
                    "SELECT user_id FROM user_identities WHERE connector_id = ? AND upstream_subject = ?",
                    [&connector_id, &subject],
                    |r| r.get(0),
                )
                .map_err(backend)?;
            if holder == user_id {
                Ok(())
            } else {
                Err(StoreError::IdentityTaken { connector_id, subject })
            }
        })
        .await
    }

    async fn all_identities(&self) -> StoreResult<Vec<(StoredUpstream, String)>> {
        let conn = self.reader();
        let mut stmt = conn
            .prepare_cached(
                "SELECT i.user_id, i.connector_id, i.upstream_subject, i.memberships_json, i.tokens_sealed, i.tokens_expire_at, \
                 i.refreshed_at, i.upstream_username, u.username FROM user_identities i JOIN users u ON u.id = i.user_id \
                 ORDER BY u.username, i.created_at",
            )
            .map_err(backend)?;
        let rows =
            stmt.query_map([], |r| Ok((stored_upstream_from_row(r)?, r.get::<_, String>(8)?))).map_err(backend)?;
        rows.collect::<Result<Vec<_>, _>>().map_err(backend)
    }

    async fn identity_of_user(&self, user_id: &str, connector_id: &str) -> StoreResult<Option<StoredUpstream>> {
        self.reader()
            .prepare_cached(
                "SELECT user_id, connector_id, upstream_subject, memberships_json, tokens_sealed, tokens_expire_at, refreshed_at, \
                 upstream_username FROM user_identities WHERE user_id = ? AND connector_id = ? ORDER BY refreshed_at DESC LIMIT 1",
            )
            .and_then(|mut s| s.query_row([user_id, connector_id], stored_upstream_from_row).optional())
            .map_err(backend)
    }

    async fn update_upstream_tokens(
        &self,
        connector_id: &str,
        subject: &str,
        tokens_sealed: Option<&str>,
        tokens_expire_at: Option<UnixTime>,
    ) -> StoreResult<()> {
        let (connector_id, subject, sealed) =
            (connector_id.to_owned(), subject.to_owned(), tokens_sealed.map(str::to_owned));
        self.write(move |conn| {
            conn.execute(
                "UPDATE user_identities SET tokens_sealed = ?, tokens_expire_at = ? WHERE connector_id = ? AND upstream_subject = ?",
                params![sealed, tokens_expire_at, connector_id, subject],
            )
            .map_err(backend)?;
            Ok(())
        })
        .await
    }

    async fn revoke_user(&self, user_id: &str, reason: &str, now: UnixTime) -> StoreResult<u64> {
        let (user_id, reason) = (user_id.to_owned(), reason.to_owned());
        self.write(move |conn| {
            let grants = conn
                .execute(
                    "UPDATE grants SET revoked_at = ?, revoked_reason = ? WHERE user_id = ? AND revoked_at IS NULL",
                    params![now, reason, user_id],
                )
                .map_err(backend)?;
            conn.execute(
                "UPDATE browser_sessions SET ended_at = ? WHERE user_id = ? AND ended_at IS NULL",
                params![now, user_id],
            )
            .map_err(backend)?;
            Ok(grants as u64)
        })
        .await
    }

    async fn upstream_of(&self, connector_id: &str, subject: &str) -> StoreResult<Option<StoredUpstream>> {
        self.reader()
            .prepare_cached(
                "SELECT user_id, connector_id, upstream_subject, memberships_json, tokens_sealed, tokens_expire_at, refreshed_at, upstream_username \
                 FROM user_identities WHERE connector_id = ? AND upstream_subject = ?",
            )
            .and_then(|mut s| {
                s.query_row([connector_id, subject], |r| {
                    stored_upstream_from_row(r)
                })
                .optional()
            })
            .map_err(backend)
    }

    async fn user_by_id(&self, id: &str) -> StoreResult<Option<User>> {
        user_by(&self.reader(), "id", id).map_err(backend)
    }

    async fn user_by_username(&self, username: &str) -> StoreResult<Option<User>> {
        user_by(&self.reader(), "username", username).map_err(backend)
    }
}
