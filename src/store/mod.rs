//! Persistence behind one trait. Handlers only see [`Store`]; SQLite is the embedded default and
//! other backends implement the same trait and pass the same conformance suite
//! (`tests/store_conformance.rs`).

pub mod copy;
pub mod linking;
mod postgres;
pub mod rotation;
mod sqlite;
pub mod throttle;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

pub use postgres::PostgresStore;
pub use rotation::Presented;
pub use sqlite::{create_private_dir, SqliteStore, PURGE_BATCH};
pub use throttle::{ThrottleCharge, ThrottleOutcome};

use crate::config::StorageConfig;

use crate::clock::UnixTime;
use crate::crypto::SigningAlgorithm;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Another upstream identity already holds this username (refused rather than merged).
    #[error("the username {0:?} already belongs to a different account")]
    UsernameTaken(String),
    /// The upstream account is already linked to another user.
    #[error("{connector_id} account {subject:?} already belongs to another user")]
    IdentityTaken { connector_id: String, subject: String },
    #[error("storage failure: {0}")]
    Backend(#[from] anyhow::Error),
}

pub type StoreResult<T> = Result<T, StoreError>;

pub use crate::model::*;

/// Held while one caller works on a person's upstream sign-in (a refresh, a re-check); released
/// when dropped. Backends shared by several replicas make it hold across all of them.
#[must_use = "the lock is released when this is dropped"]
pub struct UserLock(#[allow(dead_code)] Option<Box<dyn Send + Sync>>);

impl UserLock {
    /// Nothing beyond the caller's in-process lock is needed (one process owns the database).
    pub fn local() -> Self {
        Self(None)
    }

    pub fn held(guard: impl Send + Sync + 'static) -> Self {
        Self(Some(Box::new(guard)))
    }
}

/// A signing key's row as both schemas keep it: kid, alg, private_pkcs8, private_sealed,
/// created_at, rotated_at, expires_at, verify_until.
type SigningKeyRow = (String, String, Option<Vec<u8>>, Option<String>, i64, Option<i64>, Option<i64>, Option<i64>);

fn signing_key_from_row(row: SigningKeyRow) -> StoreResult<StoredSigningKey> {
    let (kid, alg, plain, sealed, created_at, rotated_at, expires_at, verify_until) = row;
    let Some(alg) = SigningAlgorithm::parse(&alg) else {
        return Err(anyhow::anyhow!("stored key {kid} has unknown algorithm {alg:?}").into());
    };
    // The table's CHECK keeps exactly one of the two.
    let private_key = match (sealed, plain) {
        (Some(sealed), _) => StoredPrivateKey::Sealed(sealed),
        (None, Some(plain)) => StoredPrivateKey::Plain(plain),
        (None, None) => return Err(anyhow::anyhow!("stored key {kid} has no private half").into()),
    };
    Ok(StoredSigningKey { kid, alg, private_key, created_at, rotated_at, expires_at, verify_until })
}

/// A private key's two columns: in the clear, or sealed; the other one NULL.
fn private_columns(key: &StoredPrivateKey) -> (Option<&[u8]>, Option<&str>) {
    match key {
        StoredPrivateKey::Plain(der) => (Some(der), None),
        StoredPrivateKey::Sealed(sealed) => (None, Some(sealed)),
    }
}

/// Whether opening a store may change its schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Migrate {
    /// Bring the schema up to date.
    Apply,
    /// Refuse an outdated schema (`[storage] migrate = false`; `hubauth db migrate` upgrades).
    Refuse,
}

/// The schema version of the database `config` names, and the newest this binary knows.
pub async fn schema_versions(config: &StorageConfig) -> anyhow::Result<(i64, i64)> {
    if config.is_postgres() {
        PostgresStore::schema_versions(config).await
    } else {
        SqliteStore::schema_versions(&config.url)
    }
}

/// Opens the store `config` names: SQLite for `sqlite://`, PostgreSQL for `postgres://`. Either
/// refuses a schema newer than this binary can work with.
pub async fn open(config: &StorageConfig, migrate: Migrate) -> anyhow::Result<Arc<dyn Store>> {
    Ok(if config.is_postgres() {
        Arc::new(PostgresStore::open(config, migrate == Migrate::Apply).await?)
    } else {
        Arc::new(SqliteStore::open_with(&config.url, migrate).await?)
    })
}

/// Called inside the rotation, once the old token is known good: the new tokens, or `None` to
/// decline without changing anything. It may run on the storage's own thread, hence `'static`.
pub type IssueOnRotation = Box<dyn FnOnce(&Grant, &User) -> Option<IssuedTokens> + Send>;

/// People and the upstream identities they sign in with.
#[async_trait]
pub trait UserStore: Send + Sync {
    /// Finds or creates the user behind an upstream identity and refreshes its profile.
    async fn upsert_user_for_identity(&self, identity: &UpstreamIdentity, now: UnixTime) -> StoreResult<User> {
        self.record_upstream_login(identity, &UpstreamRecord::default(), now).await
    }

    /// [`UserStore::upsert_user_for_identity`] plus the login's memberships and sealed tokens, in one
    /// step: a login either fully lands or leaves nothing behind.
    async fn record_upstream_login(
        &self,
        identity: &UpstreamIdentity,
        upstream: &UpstreamRecord,
        now: UnixTime,
    ) -> StoreResult<User>;

    /// A re-check of an identity (memberships read again, tokens refreshed): like
    /// [`UserStore::record_upstream_login`] but not a sign-in (`last_login_at` stays).
    async fn record_recheck(
        &self,
        identity: &UpstreamIdentity,
        upstream: &UpstreamRecord,
        now: UnixTime,
    ) -> StoreResult<User>;

    /// The existing user `identity` would sign in as, without changing anything: the user it is
    /// linked to or, with `link_by_verified_email`, the one user with its verified address. The
    /// policy judges this user, not the account's own name.
    async fn login_target(
        &self,
        identity: &UpstreamIdentity,
        link_by_verified_email: bool,
    ) -> StoreResult<Option<LoginTarget>>;

    async fn upstream_of(&self, connector_id: &str, subject: &str) -> StoreResult<Option<StoredUpstream>>;

    /// The identity the user most recently signed in or was re-checked through.
    async fn upstream_for_user(&self, user_id: &str) -> StoreResult<Option<StoredUpstream>>;

    /// Attaches an upstream identity to an existing user (an admin's explicit link). Fails if the
    /// identity already belongs to someone else.
    async fn link_identity(&self, user_id: &str, connector_id: &str, subject: &str, now: UnixTime) -> StoreResult<()>;

    /// Every identity with its user's current username: (identity, username).
    async fn all_identities(&self) -> StoreResult<Vec<(StoredUpstream, String)>>;

    /// The user's identity at one connector, if they have one.
    async fn identity_of_user(&self, user_id: &str, connector_id: &str) -> StoreResult<Option<StoredUpstream>>;

    /// Replaces an identity's sealed upstream tokens (after a refresh or a re-seal); `None`
    /// forgets them (the upstream session ended).
    async fn update_upstream_tokens(
        &self,
        connector_id: &str,
        subject: &str,
        tokens_sealed: Option<&str>,
        tokens_expire_at: Option<UnixTime>,
    ) -> StoreResult<()>;

    /// Revokes every grant (so every token) of the user and ends their browser sessions.
    /// Returns how many grants were revoked.
    async fn revoke_user(&self, user_id: &str, reason: &str, now: UnixTime) -> StoreResult<u64>;

    async fn user_by_id(&self, id: &str) -> StoreResult<Option<User>>;

    async fn user_by_username(&self, username: &str) -> StoreResult<Option<User>>;
}

/// Sign-ins under way: trips to upstream providers, pending authorization requests, browser sessions.
#[async_trait]
pub trait SignInStore: Send + Sync {
    async fn create_upstream_attempt(&self, attempt: &UpstreamAttempt) -> StoreResult<()>;

    /// A live attempt, left in place: the callback checks it belongs to this browser and
    /// connector before spending it, so a leaked `state` cannot cancel someone else's login.
    async fn upstream_attempt(&self, state_hash: &str, now: UnixTime) -> StoreResult<Option<UpstreamAttempt>>;

    /// Removes and returns a live attempt: the `state` works once.
    async fn take_upstream_attempt(&self, state_hash: &str, now: UnixTime) -> StoreResult<Option<UpstreamAttempt>>;

    async fn create_browser_session(&self, session: &BrowserSession) -> StoreResult<()>;

    /// A live session: not ended, not expired.
    async fn browser_session(&self, token_hash: &str, now: UnixTime) -> StoreResult<Option<BrowserSession>>;

    async fn end_browser_session(&self, id: &str, now: UnixTime) -> StoreResult<()>;

    /// Stores it within `limits`, atomically with the counts: drops the browser's oldest beyond
    /// its cap, or stores nothing and says which cap is reached.
    async fn create_pending_authorization(
        &self,
        pending: &PendingAuthorization,
        limits: PendingLimits,
    ) -> StoreResult<PendingAdmission>;

    async fn pending_authorization(&self, id: &str, now: UnixTime) -> StoreResult<Option<PendingAuthorization>>;

    /// Removes it; true if it was there. Used to make completion single-use.
    async fn delete_pending_authorization(&self, id: &str) -> StoreResult<bool>;
}

/// Authorization codes, grants and their tokens, service-account tokens.
#[async_trait]
pub trait TokenStore: Send + Sync {
    async fn create_service_token(&self, token: &ServiceToken) -> StoreResult<()>;

    /// A live (unexpired, unrevoked) service token.
    async fn service_token(&self, hash: &str, now: UnixTime) -> StoreResult<Option<ServiceToken>>;

    async fn revoke_service_token(&self, hash: &str, now: UnixTime) -> StoreResult<bool>;

    async fn create_authorization_code(&self, code: &AuthorizationCode) -> StoreResult<()>;

    /// Reads a code without spending it, so a request can be checked against it first.
    async fn authorization_code(&self, code_hash: &str) -> StoreResult<Option<StoredCode>>;

    /// In one step: spends the live code of `grant.client_id` and `grant.user_id` and records
    /// `grant` with its first `tokens`; or, if that client's code was spent already, revokes
    /// what it was exchanged for. One step, so a replay racing the first use still finds its
    /// tokens (RFC 6749 §4.1.2).
    async fn redeem_authorization_code(
        &self,
        code_hash: &str,
        grant: &Grant,
        tokens: &IssuedTokens,
        now: UnixTime,
    ) -> StoreResult<CodeRedemption>;

    /// Records a grant and its first tokens.
    async fn create_grant(&self, grant: &Grant, tokens: &IssuedTokens) -> StoreResult<()>;

    /// A refresh token as presented, spent or not, with its grant and person: read once, before
    /// the person is re-checked, and handed back to [`TokenStore::rotate_refresh_token`].
    async fn presented_refresh_token(&self, hash: &str) -> StoreResult<Option<Presented>>;

    /// Spends the refresh token `seen` was read for and records the tokens `issue` mints for its
    /// grant, atomically. A spent token presented again revokes its whole grant (reuse
    /// detection), except the one just rotated away, back less than `reuse_grace` seconds after
    /// its rotation while its successor is unused ([`RefreshRotation::Retried`]). `seen` is
    /// judged as read; if the token changed since (the claim re-checks it), it is read and
    /// judged once more, so a stale read never spends a token twice nor hides a retry.
    async fn rotate_refresh_token(
        &self,
        seen: Presented,
        client_id: &str,
        now: UnixTime,
        reuse_grace: UnixTime,
        issue: IssueOnRotation,
    ) -> StoreResult<RefreshRotation>;

    /// The usual refresh in one step: if `hash` is an unspent, unexpired refresh token of
    /// `client_id`'s unrevoked grant, and its person was checked at or after `checked_since` (so
    /// nothing is to be re-checked first), spends it and records `tokens`, whose access token
    /// gets the grant's whole scope. `None`, with nothing changed, in every other case: the
    /// caller then reads the token, re-checks the person and calls
    /// [`TokenStore::rotate_refresh_token`].
    async fn rotate_fresh_refresh_token(
        &self,
        hash: &str,
        client_id: &str,
        now: UnixTime,
        checked_since: UnixTime,
        tokens: &IssuedTokens,
    ) -> StoreResult<Option<RefreshRotation>>;

    async fn access_token(&self, hash: &str, now: UnixTime) -> StoreResult<Option<AccessTokenRecord>>;

    async fn refresh_token(&self, hash: &str, now: UnixTime) -> StoreResult<Option<RefreshTokenRecord>>;

    async fn revoke_access_token(&self, hash: &str, now: UnixTime) -> StoreResult<bool>;

    async fn revoke_grant(&self, grant_id: &str, reason: &str, now: UnixTime) -> StoreResult<()>;
}

/// ID-token signing keys.
#[async_trait]
pub trait KeyStore: Send + Sync {
    async fn signing_keys(&self) -> StoreResult<Vec<StoredSigningKey>>;

    /// Stores `key` as the active key of its algorithm unless one is already active at `now`
    /// (another replica was first): true when this one was stored. Check and insert are one step.
    async fn create_first_signing_key(&self, key: &StoredSigningKey, now: UnixTime) -> StoreResult<bool>;

    /// Replaces a key's stored private half: sealing a key kept in the clear, or re-sealing it
    /// under a newer crypt key.
    async fn replace_signing_key_private(&self, kid: &str, private_key: &StoredPrivateKey) -> StoreResult<()>;

    /// Makes `key` the active key of its algorithm, in one step: the keys active until now stop
    /// signing, stay published until `expires_at` and verify our own tokens until `verify_until`.
    async fn rotate_signing_key(
        &self,
        key: &StoredSigningKey,
        rotated_at: UnixTime,
        expires_at: UnixTime,
        verify_until: UnixTime,
    ) -> StoreResult<()>;
}

/// Workshop invites.
#[async_trait]
pub trait InviteStore: Send + Sync {
    async fn create_invite(&self, invite: &Invite) -> StoreResult<()>;

    async fn invites(&self) -> StoreResult<Vec<Invite>>;

    async fn invite_by_token(&self, token_hash: &str) -> StoreResult<Option<Invite>>;

    /// Revokes by id; true if it was live.
    async fn revoke_invite(&self, id: &str, now: UnixTime) -> StoreResult<bool>;

    /// Records that `user_id` used the invite, counting a use only for a new person, atomically
    /// with the check that it is still open.
    async fn redeem_invite(&self, id: &str, user_id: &str, now: UnixTime) -> StoreResult<Redemption>;

    /// The invites `user_id` has used that still hold (not revoked, not expired).
    async fn invites_of_user(&self, user_id: &str, now: UnixTime) -> StoreResult<Vec<Invite>>;
}

/// The runtime allow-list: entries hub admins add beside the configured access rules.
#[async_trait]
pub trait AccessListStore: Send + Sync {
    /// Stores `entry`, or replaces the entry with the same selector (its groups, note, expiry,
    /// author and time; the id stays). Returns the entry as stored and whether one was replaced.
    async fn put_access_entry(&self, entry: &AccessEntry) -> StoreResult<(AccessEntry, bool)>;

    /// Removes the entry with this id; the removed entry, if there was one.
    async fn delete_access_entry(&self, id: &str) -> StoreResult<Option<AccessEntry>>;

    /// The entry with this selector, expired or not.
    async fn access_entry(&self, selector: &AccessSelector) -> StoreResult<Option<AccessEntry>>;

    /// Every entry, expired ones included, oldest first.
    async fn access_entries(&self) -> StoreResult<Vec<AccessEntry>>;

    /// The entries not expired at `now` that match the sign-in: its username, its verified
    /// e-mail address, or its login at its connector. Oldest first.
    async fn matching_access_entries(&self, query: &AccessQuery, now: UnixTime) -> StoreResult<Vec<AccessEntry>>;
}

/// What administrators see and do to accounts as a whole: activity, blocking, deleting.
#[async_trait]
pub trait AccountStore: Send + Sync {
    /// Records a token use (userinfo, refresh, exchange) at `now`, unless one within the last
    /// [`TOKEN_USE_RESOLUTION`] seconds is recorded already. Callers throttle it too.
    async fn note_token_use(&self, user_id: &str, now: UnixTime) -> StoreResult<()>;

    /// Every user with their identities and activity at `now`, by username.
    async fn activity(&self, now: UnixTime) -> StoreResult<Vec<UserActivity>>;

    /// Blocks the user at `now` and forgets their upstream tokens (so token exchange hands out
    /// nothing more, even for a hub token still alive); false if already blocked (the first
    /// time stays) or unknown.
    async fn block_user(&self, user_id: &str, now: UnixTime) -> StoreResult<bool>;

    /// Deletes the user and everything of theirs (identities, sessions, grants and tokens,
    /// invite uses), in one step; the audit log keeps their name. False if there was no such user.
    async fn delete_user(&self, user_id: &str) -> StoreResult<bool>;

    /// Lifts a block; false if the user was not blocked (or is unknown).
    async fn unblock_user(&self, user_id: &str) -> StoreResult<bool>;

    /// One page of the users `query` selects, by username (byte order), filtered and paged by
    /// the database: at most `query.limit` rows after `query.after`.
    async fn users_page(&self, query: &UserQuery) -> StoreResult<Vec<UserRow>>;

    /// How many users `query` selects, ignoring its `after` and `limit`.
    async fn count_users(&self, query: &UserQuery) -> StoreResult<u64>;

    /// The user's live browser sessions and unrevoked grants holding a usable token at `now`,
    /// newest first, at most `limit` of each.
    async fn live_sessions(&self, user_id: &str, now: UnixTime, limit: u32) -> StoreResult<Vec<LiveSession>>;
}

/// How precisely a user's last token use is kept, in seconds: written at most this often.
pub const TOKEN_USE_RESOLUTION: UnixTime = 60;

/// The audit log.
#[async_trait]
pub trait AuditStore: Send + Sync {
    async fn record_audit(&self, event: &AuditEvent) -> StoreResult<()>;

    /// The newest `limit` events, newest first.
    async fn audit_events(&self, limit: u32) -> StoreResult<Vec<AuditEvent>>;

    /// The newest `limit` events about one user (their id, or their username for events that
    /// carry no id), newest first.
    async fn audit_events_of_user(&self, user_id: &str, username: &str, limit: u32) -> StoreResult<Vec<AuditEvent>>;

    /// One page of the audit log, newest first: the events matching `query`'s filters with an
    /// id below `query.before`, at most [`AuditQuery::bounded_limit`] of them, with their ids
    /// (the next page's `before` is the last one's id).
    async fn audit_page(&self, query: &AuditQuery) -> StoreResult<Vec<AuditRecord>>;
}

/// What [`AuditStore::audit_page`] reads: every filter that is set must match (exactly, for
/// the text ones; `since` and `until` bound `at`, both inclusive).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AuditQuery {
    pub kind: Option<String>,
    pub actor: Option<String>,
    pub username: Option<String>,
    pub since: Option<UnixTime>,
    pub until: Option<UnixTime>,
    /// Only events with a smaller id (the paging cursor).
    pub before: Option<i64>,
    /// How many at most (0 reads as the default; bounded by [`AUDIT_PAGE_MAX`]).
    pub limit: u32,
}

/// The most events one audit page holds.
pub const AUDIT_PAGE_MAX: u32 = 500;
/// How many an audit page holds when the caller does not say.
pub const AUDIT_PAGE_DEFAULT: u32 = 50;

impl AuditQuery {
    pub fn bounded_limit(&self) -> u32 {
        match self.limit {
            0 => AUDIT_PAGE_DEFAULT,
            n => n.min(AUDIT_PAGE_MAX),
        }
    }
}

/// An audit event with its id (ids grow with time; the audit page's cursor).
#[derive(Debug, Clone, PartialEq)]
pub struct AuditRecord {
    pub id: i64,
    pub event: AuditEvent,
}

/// Admin API tokens made at run time (`hubauth admin tokens create`).
#[async_trait]
pub trait AdminTokenStore: Send + Sync {
    async fn create_admin_token(&self, token: &AdminToken) -> StoreResult<()>;

    /// The token with this hash, live or not (callers check [`AdminToken::live_at`]).
    async fn admin_token_by_hash(&self, token_hash: &str) -> StoreResult<Option<AdminToken>>;

    /// Every token, newest first.
    async fn admin_tokens(&self) -> StoreResult<Vec<AdminToken>>;

    /// Revokes the token at `now`; false if there is none with this id or it was revoked already.
    async fn revoke_admin_token(&self, id: &str, now: UnixTime) -> StoreResult<bool>;

    /// Records a use at `now`, unless one within the last [`TOKEN_USE_RESOLUTION`] seconds is.
    async fn note_admin_token_use(&self, id: &str, now: UnixTime) -> StoreResult<()>;
}

/// The password-login throttle, when the backend can share it between replicas (the defaults keep it in each process).
#[async_trait]
pub trait ThrottleStore: Send + Sync {
    /// Whether the password-login throttle lives here, shared by every replica on this
    /// database. When not (one process owns the database), that process keeps it in memory and
    /// never calls the methods below.
    fn shares_login_throttle(&self) -> bool {
        false
    }

    /// Takes one attempt's allowance from each of `charges` in order at `now` (nanoseconds), as
    /// one atomic step, stopping at the first that refuses ([`throttle::gcra_step`]).
    async fn take_login_allowance(&self, _charges: &[ThrottleCharge], _now: i64) -> StoreResult<ThrottleOutcome> {
        Err(StoreError::Backend(anyhow::anyhow!("this store does not keep the login throttle")))
    }

    /// Gives one attempt's allowance back to each of `charges` (all were taken).
    async fn give_back_login_allowance(&self, _charges: &[ThrottleCharge]) -> StoreResult<()> {
        Ok(())
    }

    /// How many keys the throttle holds, counting at most `up_to`; when that many, it first
    /// forgets those refilled by `now` (nanoseconds), which are the same as new ones.
    async fn login_throttle_entries(&self, _now: i64, _up_to: u64) -> StoreResult<u64> {
        Ok(0)
    }
}

/// Everything hubauth keeps, one sub-trait per entity (each backend implements them in a file of
/// the same name); handlers hold an `Arc<dyn Store>`.
#[async_trait]
pub trait Store:
    UserStore
    + SignInStore
    + TokenStore
    + KeyStore
    + InviteStore
    + AccessListStore
    + AccountStore
    + AuditStore
    + AdminTokenStore
    + ThrottleStore
    + 'static
{
    /// A lock on `user_id` that other replicas respect, waited for at most `wait`. Callers hold
    /// their in-process lock first; a backend only one process uses needs nothing more.
    async fn lock_user(&self, _user_id: &str, _wait: Duration) -> StoreResult<UserLock> {
        Ok(UserLock::local())
    }

    /// Proves the database answers, for `/healthz`: a read, and a round trip through the write path
    /// (which writes nothing).
    async fn health(&self) -> StoreResult<()>;

    /// Counts for the metrics' gauges at `now` and, `with_groups`, every user's groups. Scans
    /// the users table: callers cache the answer (see [`crate::metrics`]).
    async fn usage(&self, now: UnixTime, active_since: &[UnixTime], with_groups: bool) -> StoreResult<Usage>;

    /// Deletes what can no longer be used, in small batches so other writes go on in between,
    /// and hands freed space back; returns how many rows went.
    async fn purge_expired(&self, now: UnixTime) -> StoreResult<u64>;

    /// The server has stopped and made its last write: leave the storage tidy for the next
    /// start (SQLite folds its write-ahead log into the database file, which the next start
    /// would otherwise read through first). A backend with nothing to do keeps this default.
    async fn close(&self) -> StoreResult<()> {
        Ok(())
    }
}
