//! Upstream identity sources. The rest of hubauth sees only the traits here; each upstream is one
//! file:
//!
//! - [`PasswordConnector`]: credentials typed into hubauth's own form (`dev`).
//! - [`RedirectConnector`]: the browser is sent to the upstream and comes back with a code
//!   (`oauth2`, `oidc`, `google`, `github`, `canvas`).
//!
//! A connector delivers who the person is ([`UpstreamIdentity`]), what they belong to upstream
//! ([`Membership`], raw: turning memberships into hub groups is policy, not the connector's job)
//! and the upstream tokens, which hubauth keeps sealed for token exchange.

mod canvas;
pub mod config;
mod dev;
mod github;
mod google;
pub mod http;
mod jwks;
mod oauth2;
mod oidc;
pub mod sealing;
pub mod untrusted;

use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

pub use dev::DevConnector;

use crate::clock::UnixTime;
use crate::config::{ConnectorConfig, ConnectorEntry};
use crate::crypto::Secret;
use crate::groups::Naming;
use crate::store::UpstreamIdentity;

#[derive(Debug, thiserror::Error)]
pub enum LoginFailure {
    #[error("wrong username or password")]
    BadCredentials,
    #[error("the login service failed: {0}")]
    Upstream(String),
    /// Every password check slot is taken (see `password_login::checks`): try again shortly.
    #[error("too many password checks are running")]
    Busy,
}

/// A connector that checks credentials typed into hubauth's own login form.
#[async_trait]
pub trait PasswordConnector: Send + Sync {
    async fn login(&self, username: &str, password: &str) -> Result<UpstreamIdentity, LoginFailure>;
    /// The account as it is now, for re-checks without a password: `None` if it no longer exists.
    async fn lookup(&self, subject: &str) -> Result<Option<UpstreamIdentity>, LoginFailure>;
}

/// What hubauth sends along with the browser to the upstream, and checks when it comes back.
/// Created per login attempt, stored server-side, single use.
#[derive(Debug, Clone)]
pub struct LoginAttempt {
    /// The `state` value sent upstream.
    pub state: String,
    /// PKCE (RFC 7636) verifier; the S256 challenge goes upstream.
    pub pkce_verifier: String,
    /// OpenID Connect `nonce`, checked in the ID token.
    pub nonce: String,
    /// hubauth's callback URL for this connector, exactly as registered upstream.
    pub redirect_uri: String,
}

/// Tokens an upstream issued. Never logged: the secrets are [`Secret`]s, and they reach storage
/// only sealed (see `store::upstream`).
#[derive(Clone)]
pub struct UpstreamTokens {
    pub access_token: Secret,
    pub refresh_token: Option<Secret>,
    /// When the access token stops working, if the upstream said (`expires_in`).
    pub expires_at: Option<UnixTime>,
    pub id_token: Option<Secret>,
    pub scope: Option<String>,
    /// When hubauth received them (unknown for tokens stored by older versions): with
    /// `expires_at`, the token's lifetime, which bounds the refresh skew.
    pub obtained_at: Option<UnixTime>,
}

/// The plaintext inside a sealed token record. Only ever handed to the sealer.
#[derive(Serialize, Deserialize)]
struct TokenPayload {
    access_token: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    refresh_token: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    expires_at: Option<UnixTime>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    id_token: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    scope: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    obtained_at: Option<UnixTime>,
}

impl UpstreamTokens {
    /// The JSON to seal.
    pub fn to_payload(&self) -> String {
        let p = TokenPayload {
            access_token: self.access_token.expose().to_string(),
            refresh_token: self.refresh_token.as_ref().map(|s| s.expose().to_string()),
            expires_at: self.expires_at,
            id_token: self.id_token.as_ref().map(|s| s.expose().to_string()),
            scope: self.scope.clone(),
            obtained_at: self.obtained_at,
        };
        serde_json::to_string(&p).unwrap_or_default()
    }

    /// Reads back what [`UpstreamTokens::to_payload`] wrote (after unsealing).
    pub fn from_payload(bytes: &[u8]) -> Option<Self> {
        let p: TokenPayload = serde_json::from_slice(bytes).ok()?;
        Some(Self {
            access_token: Secret::new(p.access_token),
            refresh_token: p.refresh_token.map(Secret::new),
            expires_at: p.expires_at,
            id_token: p.id_token.map(Secret::new),
            scope: p.scope,
            obtained_at: p.obtained_at,
        })
    }
}

impl std::fmt::Debug for UpstreamTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamTokens")
            .field("refresh_token", &self.refresh_token.is_some())
            .field("expires_at", &self.expires_at)
            .field("scope", &self.scope)
            .field("obtained_at", &self.obtained_at)
            .finish_non_exhaustive()
    }
}

/// Whether a membership is in force or only offered (an invitation not yet accepted).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MembershipState {
    Active,
    Pending,
}

/// One thing the person belongs to upstream, as the upstream describes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Membership {
    /// A group name from a claim (OIDC / OAuth2 `groups_claim`).
    Claim {
        value: String,
    },
    GithubOrg {
        org: String,
        state: MembershipState,
        /// `admin` or `member`.
        role: String,
    },
    GithubTeam {
        org: String,
        /// The team's slug, as used in URLs and in `org:team` rules.
        team: String,
        name: String,
        state: MembershipState,
    },
    CanvasCourse {
        id: u64,
        /// The course's real name (not the nickname the user may have set).
        name: String,
        course_code: String,
        sis_course_id: Option<String>,
        term: Option<String>,
        term_id: Option<u64>,
        /// `student`, `teacher`, `ta`, `observer`, `designer` (from `StudentEnrollment` etc.).
        enrollment_type: String,
        /// The course role name (custom roles differ from the type).
        role: String,
        /// `active`, `invited`, `completed`, …
        enrollment_state: String,
    },
    CanvasGroup {
        id: u64,
        name: String,
        course_id: Option<u64>,
    },
}

/// A password connector's groups, as memberships (plain names, of the `claim` kind), with the
/// record to store beside the identity.
pub fn password_memberships(identity: &UpstreamIdentity) -> (Vec<Membership>, crate::store::UpstreamRecord) {
    let memberships: Vec<Membership> = identity.groups.iter().map(|g| Membership::Claim { value: g.clone() }).collect();
    let record = crate::store::UpstreamRecord {
        memberships_json: serde_json::to_string(&memberships).unwrap_or_default(),
        ..Default::default()
    };
    (memberships, record)
}

/// A completed upstream login (or refresh).
#[derive(Debug, Clone)]
pub struct UpstreamLogin {
    pub identity: UpstreamIdentity,
    pub memberships: Vec<Membership>,
    pub tokens: UpstreamTokens,
}

/// Why an upstream login or refresh did not work, phrased for the person in front of the page.
#[derive(Debug, thiserror::Error)]
pub enum ConnectorError {
    /// The person (or the upstream on their behalf) said no: `error=access_denied` and friends.
    #[error("the sign-in was cancelled or refused at the provider ({0})")]
    Denied(String),
    /// The upstream no longer accepts the refresh token (session over, revoked).
    #[error("the provider no longer accepts this login ({0})")]
    SessionEnded(String),
    /// The upstream is rate limiting us; retry after this many seconds if known.
    #[error("the provider is limiting requests ({reason})")]
    RateLimited { reason: String, retry_after: Option<u64> },
    /// The provider did not answer in time (not retried: the person is waiting).
    #[error("{0}")]
    TimedOut(String),
    /// Anything else: unreachable, 5xx, bad JSON, a token that fails verification.
    #[error("{0}")]
    Failed(String),
}

impl ConnectorError {
    pub fn failed(msg: impl Into<String>) -> Self {
        Self::Failed(msg.into())
    }
}

/// A connector that sends the browser to the upstream's authorization endpoint.
#[async_trait]
pub trait RedirectConnector: Send + Sync {
    /// The URL to send the browser to for this attempt.
    async fn authorization_url(&self, attempt: &LoginAttempt) -> Result<String, ConnectorError>;
    /// Handles the callback's `code`: exchanges it, reads the identity and memberships.
    async fn complete(
        &self,
        attempt: &LoginAttempt,
        code: &str,
        now: UnixTime,
    ) -> Result<UpstreamLogin, ConnectorError>;
    /// Uses the refresh token for new tokens and re-reads identity and memberships of the account
    /// `subject` (the upstream id from the login). Providers that do not rotate refresh tokens
    /// answer without one: the old one is kept.
    async fn refresh(
        &self,
        tokens: &UpstreamTokens,
        subject: &str,
        now: UnixTime,
    ) -> Result<UpstreamLogin, ConnectorError>;
    /// Whether upstream tokens can be refreshed at all (a refresh token was asked for).
    fn can_refresh(&self) -> bool {
        true
    }
}

pub enum ConnectorKind {
    Password(Arc<dyn PasswordConnector>),
    Redirect(Arc<dyn RedirectConnector>),
}

pub struct Connector {
    pub id: String,
    pub display_name: String,
    /// A built-in icon name (`github`, `google`, `canvas`, `keycloak`, `key`) or an image URL.
    pub icon: Option<String>,
    pub kind: ConnectorKind,
    /// How this connector's memberships become group names, and in which namespace.
    pub groups: Naming,
    /// How this connector's usernames become hub usernames.
    pub usernames: crate::identity::Normalizer,
    /// `[connectors.access]`: rules for people signing in through this connector.
    pub access: Option<crate::policy::AccessConfig>,
}

/// Every configured connector, in config order (the order of the login chooser).
pub struct Connectors(Vec<Connector>);

/// A connector that could not be set up: the config key at fault and why.
#[derive(Debug)]
pub struct SetupError {
    pub key: String,
    pub message: String,
}

impl Connectors {
    /// Builds every connector. Nothing here touches the network: discovery documents and keys
    /// are fetched on first use, so a provider that is down does not stop hubauth starting.
    /// Password connectors check passwords through `password_checks` (the shared bound).
    pub fn from_config(
        entries: &[ConnectorEntry],
        http: &http::UpstreamHttp,
        password_checks: &Arc<crate::password_login::PasswordChecks>,
    ) -> Result<Self, SetupError> {
        let mut all = Vec::with_capacity(entries.len());
        for (i, entry) in entries.iter().enumerate() {
            let http = &http.for_connector(entry.id());
            let err =
                |(field, message): (&str, String)| SetupError { key: format!("connectors[{i}].{field}"), message };
            let redirect = |c: Arc<dyn RedirectConnector>| ConnectorKind::Redirect(c);
            // (label when `name` is unset, default icon, the upstream)
            let (default_name, default_icon, kind) = match &entry.kind {
                ConnectorConfig::Dev(dev) => (
                    "Demo accounts".to_string(),
                    Some("key"),
                    ConnectorKind::Password(Arc::new(DevConnector::new(dev, password_checks.clone()))),
                ),
                ConnectorConfig::Oauth2(cfg) => {
                    (cfg.id.clone(), None, redirect(Arc::new(oauth2::OAuth2Connector::new(cfg, http).map_err(err)?)))
                }
                ConnectorConfig::Oidc(cfg) => {
                    (cfg.id.clone(), None, redirect(Arc::new(oidc::OidcConnector::new(cfg, http).map_err(err)?)))
                }
                ConnectorConfig::Google(cfg) => (
                    "Google".into(),
                    Some("google"),
                    redirect(Arc::new(google::GoogleConnector::new(cfg, http).map_err(err)?)),
                ),
                ConnectorConfig::Github(cfg) => (
                    "GitHub".into(),
                    Some("github"),
                    redirect(Arc::new(github::GithubConnector::new(cfg, http).map_err(err)?)),
                ),
                ConnectorConfig::Canvas(cfg) => (
                    "Canvas".into(),
                    Some("canvas"),
                    redirect(Arc::new(canvas::CanvasConnector::new(cfg, http).map_err(err)?)),
                ),
            };
            let (name, icon) = entry.kind.display();
            all.push(Connector {
                id: entry.id().to_string(),
                display_name: name.map(str::to_string).unwrap_or(default_name),
                icon: icon.map(str::to_string).or(default_icon.map(str::to_string)),
                kind,
                groups: entry.group_naming(),
                usernames: crate::identity::Normalizer::new(entry.username.clone())
                    .map_err(|message| SetupError { key: format!("connectors[{i}].username"), message })?,
                access: entry.access.clone(),
            });
        }
        Ok(Self(all))
    }

    pub fn get(&self, id: &str) -> Option<&Connector> {
        self.0.iter().find(|c| c.id == id)
    }

    pub fn all(&self) -> &[Connector] {
        &self.0
    }

    /// True when any connector hands out upstream tokens hubauth must keep (and seal).
    pub fn keeps_tokens(&self) -> bool {
        self.0.iter().any(|c| matches!(c.kind, ConnectorKind::Redirect(_)))
    }
}

/// A refresh must come back for the account that signed in; anything else is refused.
pub fn same_account(login: UpstreamLogin, subject: &str) -> Result<UpstreamLogin, ConnectorError> {
    if login.identity.subject == subject {
        Ok(login)
    } else {
        Err(ConnectorError::failed("the refreshed token belongs to another account at the provider"))
    }
}

/// Reads a value at a dot path (`realm_access.roles`) in a JSON object.
pub fn claim_at<'a>(claims: &'a serde_json::Value, path: &str) -> Option<&'a serde_json::Value> {
    if let Some(v) = claims.get(path) {
        // A claim whose own name contains dots (e.g. `https://example.org/groups`) wins.
        return Some(v);
    }
    path.split('.').try_fold(claims, |v, key| v.get(key))
}

/// A claim as a string: strings as they are, numbers printed (GitHub and Canvas ids are numbers).
pub fn claim_string(claims: &serde_json::Value, path: &str) -> Option<String> {
    match claim_at(claims, path)? {
        serde_json::Value::String(s) if !s.is_empty() => Some(s.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// A claim holding a list of group names (or one name); anything else gives no groups.
pub fn claim_strings(claims: &serde_json::Value, path: &str) -> Vec<String> {
    match claim_at(claims, path) {
        Some(serde_json::Value::Array(items)) => items
            .iter()
            .filter_map(|v| match v {
                serde_json::Value::String(s) => Some(s.clone()),
                serde_json::Value::Number(n) => Some(n.to_string()),
                _ => None,
            })
            .collect(),
        Some(serde_json::Value::String(s)) => vec![s.clone()],
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn dot_paths_reach_nested_claims() {
        let c = json!({"realm_access": {"roles": ["a", "b"]}, "https://x.org/groups": ["g"], "id": 42});
        assert_eq!(claim_strings(&c, "realm_access.roles"), vec!["a", "b"]);
        assert_eq!(claim_strings(&c, "https://x.org/groups"), vec!["g"]);
        assert_eq!(claim_string(&c, "id").as_deref(), Some("42"));
        assert!(claim_strings(&c, "realm_access.missing").is_empty());
        assert!(claim_string(&c, "realm_access").is_none());
    }
}
