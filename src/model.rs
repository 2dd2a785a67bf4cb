//! The broker's domain records: what the store keeps and hands back, independent of any backend
//! (neither SQL rows nor rusqlite/sqlx types appear here).

use crate::clock::UnixTime;
use crate::crypto::SigningAlgorithm;

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
    /// An administrator blocked the user (`hubauth deprovision --block`): no sign-in.
    pub blocked: bool,
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
    /// Who made the change: a console user's username, `token:ID`, `cli:USER`; `None` for what
    /// happens without anyone's hand (sign-ins, refreshes).
    pub actor: Option<String>,
}

/// What an admin API token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum AdminScope {
    Read,
    Write,
}

impl AdminScope {
    pub fn as_str(self) -> &'static str {
        match self {
            AdminScope::Read => "read",
            AdminScope::Write => "write",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "read" => Some(AdminScope::Read),
            "write" => Some(AdminScope::Write),
            _ => None,
        }
    }
}

/// An admin API token made by `hubauth admin tokens create`; only its hash is kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminToken {
    pub id: String,
    pub token_hash: String,
    /// What it is for, as its creator wrote it.
    pub name: String,
    pub scope: AdminScope,
    pub created_by: String,
    pub created_at: UnixTime,
    pub expires_at: Option<UnixTime>,
    pub revoked_at: Option<UnixTime>,
    pub last_used_at: Option<UnixTime>,
}

impl AdminToken {
    /// Usable at `now`: not revoked, not expired.
    pub fn live_at(&self, now: UnixTime) -> bool {
        self.revoked_at.is_none() && self.expires_at.is_none_or(|e| e > now)
    }
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

/// What the metrics' gauges show, read in one go (see `Store::usage`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Usage {
    pub users: u64,
    /// Users signed in or re-checked at or after each of the `active_since` times, in order.
    pub active_users: Vec<u64>,
    /// Browser sessions neither ended nor expired.
    pub live_browser_sessions: u64,
    /// (username, groups) of every user with at least one group, by username; empty unless asked for.
    pub memberships: Vec<(String, Vec<String>)>,
}

/// Whom an allow-list entry names.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum AccessSelector {
    /// A hub username (after the connector's username rule and account links).
    Username(String),
    /// An e-mail address, matched only when the provider says it is verified.
    Email(String),
    /// An account's login at one connector as the provider gives it (e.g. a GitHub username).
    Login { connector_id: String, login: String },
}

impl AccessSelector {
    pub fn kind(&self) -> &'static str {
        match self {
            AccessSelector::Username(_) => "username",
            AccessSelector::Email(_) => "email",
            AccessSelector::Login { .. } => "login",
        }
    }

    /// The value as an admin gave it.
    pub fn value(&self) -> &str {
        match self {
            AccessSelector::Username(v) | AccessSelector::Email(v) => v,
            AccessSelector::Login { login, .. } => login,
        }
    }

    /// The connector a login belongs to; empty for the other kinds (stored that way so the
    /// unique index covers them: NULLs never collide).
    pub fn connector(&self) -> &str {
        match self {
            AccessSelector::Login { connector_id, .. } => connector_id,
            _ => "",
        }
    }

    /// What matching compares: hub usernames, e-mail addresses and GitHub logins are all
    /// case-insensitive, so entries are too.
    pub fn key(&self) -> String {
        access_key(self.value())
    }

    /// Rebuilds a selector from its stored columns (kind, connector, value).
    pub fn from_parts(kind: &str, connector: &str, value: String) -> Option<Self> {
        match kind {
            "username" => Some(AccessSelector::Username(value)),
            "email" => Some(AccessSelector::Email(value)),
            "login" => Some(AccessSelector::Login { connector_id: connector.to_string(), login: value }),
            _ => None,
        }
    }
}

impl std::fmt::Display for AccessSelector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AccessSelector::Login { connector_id, login } => write!(f, "login {connector_id}:{login}"),
            other => write!(f, "{} {}", other.kind(), other.value()),
        }
    }
}

/// The form every allow-list value is compared in.
pub fn access_key(value: &str) -> String {
    value.trim().to_lowercase()
}

/// One entry of the runtime allow-list (`hubauth access`, `/admin/api/access`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessEntry {
    pub id: String,
    pub selector: AccessSelector,
    /// Added to the groups of the person while the entry admits them.
    pub groups: Vec<String>,
    pub note: Option<String>,
    /// The entry stops matching at this time; `None` never expires.
    pub expires_at: Option<UnixTime>,
    /// Who added it: `cli:<os user>`, `api`, ….
    pub created_by: String,
    pub created_at: UnixTime,
}

impl AccessEntry {
    pub fn live_at(&self, now: UnixTime) -> bool {
        self.expires_at.is_none_or(|t| t > now)
    }
}

/// What a sign-in offers the allow-list to match on.
#[derive(Debug, Clone, Default)]
pub struct AccessQuery {
    pub username: String,
    /// Only an address the provider verified; `None` otherwise.
    pub verified_email: Option<String>,
    pub connector_id: String,
    /// The provider's own login of the account (before the username rule), if it has one.
    pub login: Option<String>,
}

/// One user as the activity report shows them (see `AccountStore::activity`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserActivity {
    pub user_id: String,
    pub username: String,
    /// The connectors the user has an identity at, sorted.
    pub connectors: Vec<String>,
    pub groups: Vec<String>,
    pub created_at: UnixTime,
    pub last_login_at: Option<UnixTime>,
    /// The latest userinfo, refresh or token exchange, to within a minute.
    pub last_token_use_at: Option<UnixTime>,
    pub blocked_at: Option<UnixTime>,
    /// A grant (what the hub holds after a login) with a usable access or refresh token.
    pub hub_session_live: bool,
    /// A browser session at hubauth itself (single sign-on) neither ended nor expired.
    pub sso_session_live: bool,
}

/// Which users a listing asks for (`AccountStore::users_page`): every filter that is set must
/// hold; users come by username, after `after`, at most `limit`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserQuery {
    /// A case-insensitive substring of the username, name or e-mail address.
    pub q: Option<String>,
    /// Holds this group.
    pub group: Option<String>,
    /// Has an identity at this connector.
    pub connector: Option<String>,
    /// Signed in or used a token at or after this time.
    pub active_since: Option<UnixTime>,
    /// Neither signed in nor used a token since this time (or never).
    pub inactive_since: Option<UnixTime>,
    /// Blocked (`true`) or not (`false`).
    pub blocked: Option<bool>,
    /// Exactly this username.
    pub username: Option<String>,
    /// Only usernames after this one (the previous page's last).
    pub after: Option<String>,
    pub limit: u32,
}

/// One user in a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRow {
    pub user_id: String,
    pub username: String,
    pub name: Option<String>,
    pub email: Option<String>,
    pub groups: Vec<String>,
    /// The connectors the user has an identity at, sorted.
    pub connectors: Vec<String>,
    pub created_at: UnixTime,
    pub last_login_at: Option<UnixTime>,
    pub last_token_use_at: Option<UnixTime>,
    pub blocked_at: Option<UnixTime>,
}

/// A user's live session: a browser session at hubauth (single sign-on) or a grant (what a hub
/// holds after a login) with a usable token. Never a token or its hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveSession {
    /// `browser` or `grant`.
    pub kind: String,
    pub id: String,
    /// The connector a browser session signed in through.
    pub connector_id: Option<String>,
    /// The client a grant was given to.
    pub client_id: Option<String>,
    pub created_at: UnixTime,
    /// When a browser session ends by itself.
    pub expires_at: Option<UnixTime>,
}
