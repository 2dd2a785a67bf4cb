//! Upstream identities and the users they sign in as (account links, usernames).

use super::*;

/// Who an identity belongs to, before anything is written.
pub(super) struct Owner {
    pub(super) user_id: String,
    /// Not linked yet: joins this user by their shared verified e-mail address.
    pub(super) linked_by_email: bool,
}

/// The user an identity signs in as: its own link, or (opt-in) the one user with the same
/// verified e-mail address. Two users sharing the address are ambiguous: neither is chosen.
pub(super) fn owner_of(
    conn: &Connection,
    identity: &UpstreamIdentity,
    link_by_email: bool,
) -> rusqlite::Result<Option<Owner>> {
    let linked: Option<String> = conn
        .prepare_cached("SELECT user_id FROM user_identities WHERE connector_id = ? AND upstream_subject = ?")?
        .query_row([&identity.connector_id, &identity.subject], |r| r.get(0))
        .optional()?;
    if let Some(user_id) = linked {
        return Ok(Some(Owner { user_id, linked_by_email: false }));
    }
    let (true, true, Some(email)) = (link_by_email, identity.email_verified, &identity.email) else {
        return Ok(None);
    };
    let ids: Vec<String> = conn
        .prepare_cached("SELECT id FROM users WHERE email = ? AND email_verified = 1 LIMIT 2")?
        .query_map([email], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    Ok(match <[String; 1]>::try_from(ids) {
        Ok([user_id]) => Some(Owner { user_id, linked_by_email: true }),
        Err(_) => None,
    })
}

/// A user's username follows their first identity only; a linked second identity (another
/// provider's name for the same person) does not rename them.
pub(super) fn is_primary_identity(
    conn: &Connection,
    user_id: &str,
    identity: &UpstreamIdentity,
) -> rusqlite::Result<bool> {
    let primary: Option<(String, String)> = conn
        .prepare_cached(
            "SELECT connector_id, upstream_subject FROM user_identities WHERE user_id = ? \
             ORDER BY created_at, rowid LIMIT 1",
        )?
        .query_row([user_id], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    Ok(primary.is_none_or(|p| p == (identity.connector_id.clone(), identity.subject.clone())))
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
        let (mut identity, upstream) = (identity.clone(), upstream.clone());
        let memberships =
            if upstream.memberships_json.is_empty() { "[]".to_string() } else { upstream.memberships_json.clone() };
        self.write(move |tx| {
            let holder: Option<String> = tx
                .prepare_cached("SELECT id FROM users WHERE username = ?")
                .and_then(|mut s| s.query_row([&identity.username], |r| r.get(0)).optional())
                .map_err(backend)?;
            let existing = match owner_of(tx, &identity, upstream.link_by_verified_email).map_err(backend)? {
                Some(Owner { user_id, linked_by_email: true }) => {
                    tx.execute(
                        "INSERT INTO user_identities (connector_id, upstream_subject, user_id, created_at) VALUES (?, ?, ?, ?)",
                        params![identity.connector_id, identity.subject, user_id, now],
                    )
                    .map_err(identity_conflict(&identity))?;
                    Some(user_id)
                }
                Some(owner) => Some(owner.user_id),
                None => None,
            };
            let user_id = match existing {
                Some(user_id) => {
                    // A user's username follows their first identity only; a linked second
                    // identity (another provider's name for the same person) does not rename them.
                    let is_primary = is_primary_identity(tx, &user_id, &identity).map_err(backend)?;
                    if is_primary && holder.as_deref().is_some_and(|h| h != user_id) {
                        return Err(StoreError::UsernameTaken(identity.username.clone()));
                    }
                    if !is_primary {
                        identity.username = tx
                            .query_row("SELECT username FROM users WHERE id = ?", [&user_id], |r| r.get(0))
                            .map_err(backend)?;
                    }
                    tx.execute(
                        "UPDATE users SET username = :username, name = :name, email = :email, email_verified = :verified, \
                         groups_json = :groups, updated_at = :now, \
                         last_login_at = CASE WHEN :login THEN :now ELSE last_login_at END WHERE id = :id",
                        named_params! {
                            ":username": identity.username, ":name": identity.name, ":email": identity.email,
                            ":verified": identity.email_verified as i64, ":groups": groups, ":now": now, ":id": user_id,
                            ":login": is_login,
                        },
                    )
                    .map_err(identity_conflict(&identity))?;
                    user_id
                }
                None => {
                    if holder.is_some() {
                        return Err(StoreError::UsernameTaken(identity.username.clone()));
                    }
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
                    tx.execute(
                        "INSERT INTO user_identities (connector_id, upstream_subject, user_id, created_at) VALUES (?, ?, ?, ?)",
                        params![identity.connector_id, identity.subject, user_id, now],
                    )
                    .map_err(identity_conflict(&identity))?;
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
