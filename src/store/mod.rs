//! Persistence behind one trait. Handlers only see [`Store`]; SQLite is the embedded default and
//! other backends implement the same trait and pass the same conformance suite
//! (`tests/store_conformance.rs`).

mod sqlite;

use async_trait::async_trait;

pub use sqlite::{create_private_dir, SqliteStore, PURGE_BATCH};

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

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// The OIDC `sub`: random, stable, never reused.
    pub id: String,
    pub username: String,
    pub name: Option<String>,
    pub email: Option<String>,
    pub email_verified: bool,
    pub groups: Vec<String>,
    pub created_at: UnixTime,
    pub updated_at: UnixTime,
    pub last_login_at: Option<UnixTime>,
}

/// Who a connector says the person is, after a successful upstream login.
#[derive(Debug, Clone)]
pub struct UpstreamIdentity {
    pub connector_id: String,
    /// The upstream's stable identifier for the account (never its display name).
    pub subject: String,
    pub username: String,
    pub name: Option<String>,
    pub email: Option<String>,
    pub email_verified: bool,
    pub groups: Vec<String>,
}

/// The user an identity signs in as (see [`Store::login_target`]).
#[derive(Debug, Clone)]
pub struct LoginTarget {
    pub user: User,
    /// The user's first identity: their username follows this account's. A linked second
    /// identity keeps the user's username.
    pub primary: bool,
}

/// A trip to an upstream provider, waiting for the browser to come back (`state` is its key).
#[derive(Debug, Clone)]
pub struct UpstreamAttempt {
    pub state_hash: String,
    /// The hubauth authorization request the person is logging in for.
    pub pending_id: String,
    pub connector_id: String,
    pub pkce_verifier: String,
    pub nonce: String,
    pub created_at: UnixTime,
    pub expires_at: UnixTime,
}

/// What an upstream login leaves behind with the identity: raw memberships (JSON) and the
/// upstream tokens, sealed by the caller.
#[derive(Debug, Clone, Default)]
pub struct UpstreamRecord {
    pub memberships_json: String,
    /// The username as the provider gave it, before the hub's username rule.
    pub upstream_username: Option<String>,
    /// A new identity joins an existing user with the same verified e-mail address
    /// (`[identity] link_by_verified_email`).
    pub link_by_verified_email: bool,
    pub tokens_sealed: Option<String>,
    pub tokens_expire_at: Option<UnixTime>,
}

/// An identity's stored upstream state, as read back.
#[derive(Debug, Clone)]
pub struct StoredUpstream {
    pub user_id: String,
    pub connector_id: String,
    pub subject: String,
    pub memberships_json: String,
    pub upstream_username: Option<String>,
    pub tokens_sealed: Option<String>,
    pub tokens_expire_at: Option<UnixTime>,
    pub refreshed_at: Option<UnixTime>,
}

/// A workshop invite. `token_hash` is the hash of the secret in its link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invite {
    pub id: String,
    pub token_hash: String,
    pub note: Option<String>,
    pub groups: Vec<String>,
    pub connector_id: Option<String>,
    pub max_uses: Option<i64>,
    pub uses: i64,
    pub created_at: UnixTime,
    pub expires_at: UnixTime,
    pub revoked_at: Option<UnixTime>,
}

impl Invite {
    /// Usable by someone new at `now`.
    pub fn open_at(&self, now: UnixTime) -> bool {
        self.revoked_at.is_none() && self.expires_at > now && self.max_uses.is_none_or(|m| self.uses < m)
    }
}

#[derive(Debug, PartialEq, Eq)]
pub enum Redemption {
    /// Counted (or this person had already used it: not counted again).
    Redeemed,
    /// Expired, revoked or used up meanwhile.
    Closed,
}

/// An access token of a service account (`client_credentials`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceToken {
    pub token_hash: String,
    pub client_id: String,
    pub scope: String,
    pub created_at: UnixTime,
    pub expires_at: UnixTime,
}

/// One line of the audit log.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditEvent {
    pub at: UnixTime,
    pub kind: String,
    pub reason: Option<String>,
    pub username: Option<String>,
    pub user_id: Option<String>,
    pub connector_id: Option<String>,
    pub client_id: Option<String>,
    pub request_id: Option<String>,
    pub detail: Option<String>,
}

#[derive(Debug, Clone)]
pub struct BrowserSession {
    pub id: String,
    pub token_hash: String,
    pub user_id: String,
    pub connector_id: String,
    pub csrf_token: String,
    pub auth_time: UnixTime,
    pub created_at: UnixTime,
    pub expires_at: UnixTime,
}

#[derive(Debug, Clone)]
pub struct PendingAuthorization {
    pub id: String,
    /// The validated authorization request, serialised by the provider layer.
    pub request_json: String,
    pub browser_binding_hash: String,
    pub csrf_token: String,
    /// Where the request came from, as [`crate::web::client_address`] keys it; empty when unknown
    /// (then only the per-browser and total caps apply).
    pub client_address: String,
    pub created_at: UnixTime,
    pub expires_at: UnixTime,
}

/// How many pending sign-ins may wait at once (`[session] max_pending_*`): anyone can start
/// one, so each source is capped and so is the whole table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PendingLimits {
    /// A browser's oldest pending sign-ins beyond this are dropped (it is one person).
    pub per_browser: u32,
    /// New ones from an address that has this many live are refused.
    pub per_address: u32,
    /// New ones are refused while this many are live.
    pub total: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PendingAdmission {
    Stored,
    /// The address has `per_address` pending sign-ins already.
    AddressFull,
    /// `total` pending sign-ins are waiting.
    Full,
}

#[derive(Debug, Clone)]
pub struct AuthorizationCode {
    pub code_hash: String,
    pub client_id: String,
    pub user_id: String,
    pub session_id: Option<String>,
    pub request_json: String,
    pub auth_time: UnixTime,
    pub created_at: UnixTime,
    pub expires_at: UnixTime,
}

/// An authorization code as stored, spent or not.
#[derive(Debug, Clone)]
pub struct StoredCode {
    pub code: AuthorizationCode,
    pub spent: bool,
}

#[derive(Debug)]
pub enum CodeRedemption {
    /// First use: the code is now spent, and the grant and its tokens are recorded.
    Redeemed { user: Box<User> },
    /// Spent before: what the first use issued (`grant_id`) is now revoked.
    Replayed { grant_id: Option<String> },
    /// Unknown, expired, or not this client's.
    Unknown,
}

#[derive(Debug, Clone)]
pub struct Grant {
    pub id: String,
    pub client_id: String,
    pub user_id: String,
    pub session_id: Option<String>,
    pub scope: String,
    pub auth_time: UnixTime,
    pub created_at: UnixTime,
}

/// Hashes and lifetimes of a freshly minted token set.
#[derive(Debug, Clone)]
pub struct IssuedTokens {
    pub access_hash: String,
    pub access_scope: String,
    pub access_expires_at: UnixTime,
    pub refresh: Option<(String, UnixTime)>,
    pub created_at: UnixTime,
}

#[derive(Debug)]
pub enum RefreshRotation {
    Rotated {
        grant: Grant,
        user: Box<User>,
        /// The scope of the access token `issue` minted, now stored.
        scope: String,
    },
    /// The token just rotated away came back within the reuse grace, its successor unused (the
    /// answer carrying it was lost): the successor and its access token are withdrawn, and
    /// `issue`'s tokens stored in their place.
    Retried { grant: Grant, user: Box<User>, scope: String },
    /// An already-rotated token came back: the whole family has been revoked.
    Reused { grant_id: String },
    /// Unknown, expired, revoked, or issued to another client.
    Invalid,
    /// The caller's `issue` callback declined (e.g. a scope wider than the grant); nothing changed.
    Declined,
}

/// Called inside the rotation, once the old token is known good: the new tokens, or `None` to
/// decline without changing anything. It may run on the storage's own thread, hence `'static`.
pub type IssueOnRotation = Box<dyn FnOnce(&Grant, &User) -> Option<IssuedTokens> + Send>;

#[derive(Debug, Clone)]
pub struct AccessTokenRecord {
    pub grant: Grant,
    pub user: User,
    pub scope: String,
    pub created_at: UnixTime,
    pub expires_at: UnixTime,
}

#[derive(Debug, Clone)]
pub struct RefreshTokenRecord {
    pub grant: Grant,
    pub user: User,
    pub created_at: UnixTime,
    pub expires_at: UnixTime,
}

/// A signing key's private half as stored.
#[derive(Clone, PartialEq, Eq)]
pub enum StoredPrivateKey {
    /// Sealed with the crypt keyring, bound to the key's kid and algorithm
    /// (`crypto::key_sealing`).
    Sealed(String),
    /// PKCS#8 DER in the clear: written before keys were sealed, or with no keyring set.
    Plain(Vec<u8>),
}

#[derive(Clone)]
pub struct StoredSigningKey {
    pub kid: String,
    pub alg: SigningAlgorithm,
    pub private_key: StoredPrivateKey,
    pub created_at: UnixTime,
    pub rotated_at: Option<UnixTime>,
    /// No longer published in the JWKS after this.
    pub expires_at: Option<UnixTime>,
    /// A retired key still verifies our own tokens handed back to us (a logout's `id_token_hint`)
    /// until this, which may be later than `expires_at`.
    pub verify_until: Option<UnixTime>,
}

#[async_trait]
pub trait Store: Send + Sync + 'static {
    // --- users
    /// Finds or creates the user behind an upstream identity and refreshes its profile.
    async fn upsert_user_for_identity(&self, identity: &UpstreamIdentity, now: UnixTime) -> StoreResult<User> {
        self.record_upstream_login(identity, &UpstreamRecord::default(), now).await
    }
    /// [`Store::upsert_user_for_identity`] plus the login's memberships and sealed tokens, in one
    /// step: a login either fully lands or leaves nothing behind.
    async fn record_upstream_login(
        &self,
        identity: &UpstreamIdentity,
        upstream: &UpstreamRecord,
        now: UnixTime,
    ) -> StoreResult<User>;
    /// A re-check of an identity (memberships read again, tokens refreshed): like
    /// [`Store::record_upstream_login`] but not a sign-in (`last_login_at` stays).
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

    // --- service accounts
    async fn create_service_token(&self, token: &ServiceToken) -> StoreResult<()>;
    /// A live (unexpired, unrevoked) service token.
    async fn service_token(&self, hash: &str, now: UnixTime) -> StoreResult<Option<ServiceToken>>;
    async fn revoke_service_token(&self, hash: &str, now: UnixTime) -> StoreResult<bool>;

    /// Revokes every grant (so every token) of the user and ends their browser sessions.
    /// Returns how many grants were revoked.
    async fn revoke_user(&self, user_id: &str, reason: &str, now: UnixTime) -> StoreResult<u64>;

    // --- trips to upstream providers
    async fn create_upstream_attempt(&self, attempt: &UpstreamAttempt) -> StoreResult<()>;
    /// A live attempt, left in place: the callback checks it belongs to this browser and
    /// connector before spending it, so a leaked `state` cannot cancel someone else's login.
    async fn upstream_attempt(&self, state_hash: &str, now: UnixTime) -> StoreResult<Option<UpstreamAttempt>>;
    /// Removes and returns a live attempt: the `state` works once.
    async fn take_upstream_attempt(&self, state_hash: &str, now: UnixTime) -> StoreResult<Option<UpstreamAttempt>>;
    async fn user_by_id(&self, id: &str) -> StoreResult<Option<User>>;
    async fn user_by_username(&self, username: &str) -> StoreResult<Option<User>>;

    // --- browser sessions
    async fn create_browser_session(&self, session: &BrowserSession) -> StoreResult<()>;
    /// A live session: not ended, not expired.
    async fn browser_session(&self, token_hash: &str, now: UnixTime) -> StoreResult<Option<BrowserSession>>;
    async fn end_browser_session(&self, id: &str, now: UnixTime) -> StoreResult<()>;

    // --- pending authorization requests
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

    // --- authorization codes
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

    // --- grants and tokens
    /// Records a grant and its first tokens.
    async fn create_grant(&self, grant: &Grant, tokens: &IssuedTokens) -> StoreResult<()>;
    /// Spends a refresh token and records the tokens `issue` mints for its grant, atomically.
    /// A spent token presented again revokes its whole grant (reuse detection), except the one
    /// just rotated away, back less than `reuse_grace` seconds after its rotation while its
    /// successor is unused ([`RefreshRotation::Retried`]).
    async fn rotate_refresh_token(
        &self,
        old_hash: &str,
        client_id: &str,
        now: UnixTime,
        reuse_grace: UnixTime,
        issue: IssueOnRotation,
    ) -> StoreResult<RefreshRotation>;
    /// Whose login a refresh token of `client_id` belongs to, spent or not, while its grant
    /// holds: for checking the person before anything is rotated.
    async fn refresh_token_holder(&self, hash: &str, client_id: &str, now: UnixTime) -> StoreResult<Option<User>>;
    async fn access_token(&self, hash: &str, now: UnixTime) -> StoreResult<Option<AccessTokenRecord>>;
    async fn refresh_token(&self, hash: &str, now: UnixTime) -> StoreResult<Option<RefreshTokenRecord>>;
    async fn revoke_access_token(&self, hash: &str, now: UnixTime) -> StoreResult<bool>;
    async fn revoke_grant(&self, grant_id: &str, reason: &str, now: UnixTime) -> StoreResult<()>;

    // --- signing keys
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

    // --- invites
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

    // --- audit log
    async fn record_audit(&self, event: &AuditEvent) -> StoreResult<()>;
    /// The newest `limit` events, newest first.
    async fn audit_events(&self, limit: u32) -> StoreResult<Vec<AuditEvent>>;

    // --- housekeeping
    /// Proves the database answers, for `/healthz`: a read, and a round trip through the write path
    /// (which writes nothing).
    async fn health(&self) -> StoreResult<()>;

    /// Deletes what can no longer be used, in small batches so other writes go on in between,
    /// and hands freed space back; returns how many rows went.
    async fn purge_expired(&self, now: UnixTime) -> StoreResult<u64>;
}
