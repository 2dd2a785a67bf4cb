//! Upstream identities and the users they sign in as (account links, usernames): the twin of the
//! SQLite backend's `identities.rs`, applying the same rules from [`linking`].

use super::*;
use crate::store::linking::{self, Landing, Owner};

/// The user an identity signs in as ([`linking::owner`]), read inside `conn`.
pub(super) async fn owner_of(
    conn: &mut PgConnection,
    identity: &UpstreamIdentity,
    link_by_email: bool,
) -> SqlResult<Option<Owner>> {
    let linked: Option<String> =
        sqlx::query_scalar("SELECT user_id FROM user_identities WHERE connector_id = $1 AND upstream_subject = $2")
            .bind(&identity.connector_id)
            .bind(&identity.subject)
            .fetch_optional(&mut *conn)
            .await?;
    let same_email = match (&linked, linking::email_to_match(identity, link_by_email)) {
        (None, Some(email)) => {
            sqlx::query_scalar("SELECT id FROM users WHERE email = $1 AND email_verified LIMIT 2")
                .bind(email)
                .fetch_all(&mut *conn)
                .await?
        }
        _ => Vec::new(),
    };
    Ok(linking::owner(linked, same_email))
}

/// [`linking::is_primary`], read inside `conn`.
pub(super) async fn is_primary_identity(
    conn: &mut PgConnection,
    user_id: &str,
    identity: &UpstreamIdentity,
) -> SqlResult<bool> {
    let first: Option<(String, String)> = sqlx::query_as(
        "SELECT connector_id, upstream_subject FROM user_identities WHERE user_id = $1 ORDER BY created_at, seq LIMIT 1",
    )
    .bind(user_id)
    .fetch_optional(conn)
    .await?;
    Ok(linking::is_primary(first, identity))
}

/// A write about `identity` that broke a uniqueness rule: whose username or account it was.
pub(super) fn identity_conflict(identity: &UpstreamIdentity) -> impl Fn(sqlx::Error) -> StoreError + '_ {
    move |e| match unique_violation(&e) {
        Some("users_username_key") => StoreError::UsernameTaken(identity.username.clone()),
        Some("user_identities_pkey") => {
            StoreError::IdentityTaken { connector_id: identity.connector_id.clone(), subject: identity.subject.clone() }
        }
        _ => backend(e),
    }
}

async fn link(conn: &mut PgConnection, identity: &UpstreamIdentity, user_id: &str, now: UnixTime) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO user_identities (connector_id, upstream_subject, user_id, created_at) VALUES ($1, $2, $3, $4)",
    )
    .bind(&identity.connector_id)
    .bind(&identity.subject)
    .bind(user_id)
    .bind(now)
    .execute(conn)
    .await
    .map_err(identity_conflict(identity))?;
    Ok(())
}

/// One attempt at landing a login, inside `tx`.
async fn land(
    tx: &mut PgConnection,
    identity: &UpstreamIdentity,
    upstream: &UpstreamRecord,
    groups: &str,
    now: UnixTime,
    is_login: bool,
) -> StoreResult<User> {
    let holder: Option<String> = sqlx::query_scalar("SELECT id FROM users WHERE username = $1")
        .bind(&identity.username)
        .fetch_optional(&mut *tx)
        .await
        .map_err(backend)?;
    let owner = owner_of(tx, identity, upstream.link_by_verified_email).await.map_err(backend)?;
    let (primary, owner_username) = match &owner {
        Some(o) => (
            is_primary_identity(tx, &o.user_id, identity).await.map_err(backend)?,
            sqlx::query_scalar("SELECT username FROM users WHERE id = $1")
                .bind(&o.user_id)
                .fetch_optional(&mut *tx)
                .await
                .map_err(backend)?,
        ),
        None => (true, None),
    };
    let user_id = match linking::landing(identity, owner, primary, owner_username, holder.as_deref())? {
        Landing::Existing { user_id, username, link: needs_link } => {
            if needs_link {
                link(tx, identity, &user_id, now).await?;
            }
            sqlx::query(
                "UPDATE users SET username = $1, name = $2, email = $3, email_verified = $4, groups_json = $5, \
                 updated_at = $6, last_login_at = CASE WHEN $7 THEN $6 ELSE last_login_at END WHERE id = $8",
            )
            .bind(&username)
            .bind(&identity.name)
            .bind(&identity.email)
            .bind(identity.email_verified)
            .bind(groups)
            .bind(now)
            .bind(is_login)
            .bind(&user_id)
            .execute(&mut *tx)
            .await
            .map_err(identity_conflict(identity))?;
            user_id
        }
        Landing::NewUser => {
            let user_id = uuid::Uuid::new_v4().to_string();
            sqlx::query(
                "INSERT INTO users (id, username, name, email, email_verified, groups_json, created_at, updated_at, last_login_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $7, $7)",
            )
            .bind(&user_id)
            .bind(&identity.username)
            .bind(&identity.name)
            .bind(&identity.email)
            .bind(identity.email_verified)
            .bind(groups)
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(identity_conflict(identity))?;
            link(tx, identity, &user_id, now).await?;
            user_id
        }
    };
    let memberships = if upstream.memberships_json.is_empty() { "[]" } else { upstream.memberships_json.as_str() };
    sqlx::query(
        "UPDATE user_identities SET memberships_json = $1, tokens_sealed = $2, tokens_expire_at = $3, refreshed_at = $4, \
         upstream_username = COALESCE($5, upstream_username) WHERE connector_id = $6 AND upstream_subject = $7",
    )
    .bind(memberships)
    .bind(&upstream.tokens_sealed)
    .bind(upstream.tokens_expire_at)
    .bind(now)
    .bind(&upstream.upstream_username)
    .bind(&identity.connector_id)
    .bind(&identity.subject)
    .execute(&mut *tx)
    .await
    .map_err(backend)?;
    user_by(tx, UserKey::Id, &user_id).await.map_err(backend)?.ok_or_else(|| backend(anyhow::anyhow!("user vanished")))
}

impl PostgresStore {
    pub(super) async fn upsert_identity(
        &self,
        identity: &UpstreamIdentity,
        upstream: &UpstreamRecord,
        now: UnixTime,
        is_login: bool,
    ) -> StoreResult<User> {
        let groups = serde_json::to_string(&identity.groups).map_err(backend)?;
        // Two first logins of one person can race (two browsers, two replicas): the loser's
        // insert breaks a unique constraint. Tried again, it sees the winner's rows and lands on
        // the same user, as it would have behind SQLite's single writer. A conflict that stays
        // is a real one (the name belongs to someone else).
        let mut tries = 0;
        loop {
            tries += 1;
            let mut lease = self.conn().await?;
            let mut tx = sqlx::Connection::begin(&mut *lease).await.map_err(backend)?;
            match land(&mut tx, identity, upstream, &groups, now, is_login).await {
                Ok(user) => {
                    tx.commit().await.map_err(backend)?;
                    return Ok(user);
                }
                Err(StoreError::UsernameTaken(_) | StoreError::IdentityTaken { .. }) if tries < 2 => continue,
                Err(e) => return Err(e),
            }
        }
    }
}

#[async_trait]
impl UserStore for PostgresStore {
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
        let mut conn = self.conn().await?;
        let Some(owner) = identities::owner_of(&mut conn, identity, link_by_verified_email).await.map_err(backend)?
        else {
            return Ok(None);
        };
        let primary = !owner.linked_by_email
            && identities::is_primary_identity(&mut conn, &owner.user_id, identity).await.map_err(backend)?;
        let Some(user) = user_by(&mut conn, UserKey::Id, &owner.user_id).await.map_err(backend)? else {
            return Ok(None);
        };
        let blocked: bool = sqlx::query_scalar("SELECT blocked_at IS NOT NULL FROM users WHERE id = $1")
            .bind(&user.id)
            .fetch_one(&mut *conn)
            .await
            .map_err(backend)?;
        Ok(Some(LoginTarget { user, primary, blocked }))
    }

    async fn upstream_of(&self, connector_id: &str, subject: &str) -> StoreResult<Option<StoredUpstream>> {
        sqlx::query(AssertSqlSafe(format!(
            "SELECT {UPSTREAM_COLUMNS} FROM user_identities i WHERE i.connector_id = $1 AND i.upstream_subject = $2"
        )))
        .bind(connector_id)
        .bind(subject)
        .fetch_optional(&mut *self.conn().await?)
        .await
        .map_err(backend)?
        .map(|r| stored_upstream_from_row(&r).map_err(backend))
        .transpose()
    }

    async fn upstream_for_user(&self, user_id: &str) -> StoreResult<Option<StoredUpstream>> {
        sqlx::query(AssertSqlSafe(format!(
            "SELECT {UPSTREAM_COLUMNS} FROM user_identities i WHERE i.user_id = $1 \
             ORDER BY i.refreshed_at DESC NULLS LAST LIMIT 1"
        )))
        .bind(user_id)
        .fetch_optional(&mut *self.conn().await?)
        .await
        .map_err(backend)?
        .map(|r| stored_upstream_from_row(&r).map_err(backend))
        .transpose()
    }

    async fn link_identity(&self, user_id: &str, connector_id: &str, subject: &str, now: UnixTime) -> StoreResult<()> {
        // Insert first: the primary key says whether someone else holds the account.
        let holder: Option<String> = sqlx::query_scalar(
            "WITH added AS (INSERT INTO user_identities (connector_id, upstream_subject, user_id, created_at) \
             VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING RETURNING user_id) \
             SELECT user_id FROM added UNION ALL \
             SELECT user_id FROM user_identities WHERE connector_id = $1 AND upstream_subject = $2 LIMIT 1",
        )
        .bind(connector_id)
        .bind(subject)
        .bind(user_id)
        .bind(now)
        .fetch_optional(&mut *self.conn().await?)
        .await
        .map_err(backend)?;
        match holder {
            Some(h) if h == user_id => Ok(()),
            _ => Err(StoreError::IdentityTaken { connector_id: connector_id.into(), subject: subject.into() }),
        }
    }

    async fn all_identities(&self) -> StoreResult<Vec<(StoredUpstream, String)>> {
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT {UPSTREAM_COLUMNS}, u.username FROM user_identities i JOIN users u ON u.id = i.user_id \
             ORDER BY u.username, i.created_at, i.seq"
        )))
        .fetch_all(&mut *self.conn().await?)
        .await
        .map_err(backend)?;
        rows.iter()
            .map(|r| Ok((stored_upstream_from_row(r)?, r.try_get::<String, _>(8)?)))
            .collect::<SqlResult<Vec<_>>>()
            .map_err(backend)
    }

    async fn identity_of_user(&self, user_id: &str, connector_id: &str) -> StoreResult<Option<StoredUpstream>> {
        sqlx::query(AssertSqlSafe(format!(
            "SELECT {UPSTREAM_COLUMNS} FROM user_identities i WHERE i.user_id = $1 AND i.connector_id = $2 \
             ORDER BY i.refreshed_at DESC NULLS LAST LIMIT 1"
        )))
        .bind(user_id)
        .bind(connector_id)
        .fetch_optional(&mut *self.conn().await?)
        .await
        .map_err(backend)?
        .map(|r| stored_upstream_from_row(&r).map_err(backend))
        .transpose()
    }

    async fn update_upstream_tokens(
        &self,
        connector_id: &str,
        subject: &str,
        tokens_sealed: Option<&str>,
        tokens_expire_at: Option<UnixTime>,
    ) -> StoreResult<()> {
        self.execute(
            sqlx::query(
                "UPDATE user_identities SET tokens_sealed = $1, tokens_expire_at = $2 \
                 WHERE connector_id = $3 AND upstream_subject = $4",
            )
            .bind(tokens_sealed)
            .bind(tokens_expire_at)
            .bind(connector_id)
            .bind(subject),
        )
        .await?;
        Ok(())
    }

    async fn revoke_user(&self, user_id: &str, reason: &str, now: UnixTime) -> StoreResult<u64> {
        let mut lease = self.conn().await?;
        let mut tx = sqlx::Connection::begin(&mut *lease).await.map_err(backend)?;
        let grants = sqlx::query(
            "UPDATE grants SET revoked_at = $1, revoked_reason = $2 WHERE user_id = $3 AND revoked_at IS NULL",
        )
        .bind(now)
        .bind(reason)
        .bind(user_id)
        .execute(&mut *tx)
        .await
        .map_err(backend)?
        .rows_affected();
        sqlx::query("UPDATE browser_sessions SET ended_at = $1 WHERE user_id = $2 AND ended_at IS NULL")
            .bind(now)
            .bind(user_id)
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        tx.commit().await.map_err(backend)?;
        Ok(grants)
    }

    async fn user_by_id(&self, id: &str) -> StoreResult<Option<User>> {
        user_by(&mut *self.conn().await?, UserKey::Id, id).await.map_err(backend)
    }

    async fn user_by_username(&self, username: &str) -> StoreResult<Option<User>> {
        user_by(&mut *self.conn().await?, UserKey::Username, username).await.map_err(backend)
    }
}
