//! Who is asking the admin console or API, and what they may do.
//!
//! People are admins or viewers through `[admin]` (`groups` / `admin_users`, `viewer_groups` /
//! `viewer_users`), judged on their groups as the live policy re-check keeps them: someone taken
//! out of the admin group loses the console at their next re-check, like every other rule.
//! Scripts present a Bearer token: a static `[admin] api_tokens` value (write) or one made by
//! `hubauth admin tokens create` (read or write, with an expiry, revocable).

use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use axum_extra::extract::CookieJar;
use serde_json::json;

use super::Actor;
use crate::app::AppState;
use crate::clock::UnixTime;
use crate::config::AdminConfig;
use crate::crypto::random::{bearer_value, random_bytes, token_key};
use crate::login::Current;
use crate::model::{AdminScope, AdminToken, BrowserSession, User};
use crate::policy::live::ensure_current;
use crate::store::{Store, StoreError, TOKEN_USE_RESOLUTION};
use crate::web::session;

/// What someone may do in the console and the API. `Admin` can do everything a `Viewer` can.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Viewer,
    Admin,
}

impl Role {
    pub fn can_change(self) -> bool {
        self == Role::Admin
    }
}

impl From<AdminScope> for Role {
    fn from(s: AdminScope) -> Self {
        match s {
            AdminScope::Read => Role::Viewer,
            AdminScope::Write => Role::Admin,
        }
    }
}

/// Someone allowed in, and what the audit log calls them.
#[derive(Debug, Clone)]
pub struct Principal {
    /// The audit log's `actor`: the username for a person, `token:ID` for a stored token,
    /// `config-token` for a static one.
    pub actor: String,
    pub role: Role,
    pub via: Via,
}

#[derive(Debug, Clone)]
pub enum Via {
    /// A person signed in to hubauth in this browser (the console; CSRF-checked on changes).
    Session { session: Box<BrowserSession>, user: Box<User> },
    /// A Bearer token (scripts).
    Token,
}

impl Principal {
    pub fn user(&self) -> Option<&User> {
        match &self.via {
            Via::Session { user, .. } => Some(user),
            Via::Token => None,
        }
    }

    /// The session's CSRF token, which every console form carries back.
    pub fn csrf_token(&self) -> Option<&str> {
        match &self.via {
            Via::Session { session, .. } => Some(&session.csrf_token),
            Via::Token => None,
        }
    }
}

/// Why someone was not let in.
#[derive(Debug)]
pub enum Refusal {
    /// No credential at all (no Bearer token, no hubauth session).
    Anonymous,
    /// A Bearer token that is unknown, expired or revoked.
    BadToken,
    /// Signed in, but neither an admin nor a viewer.
    NotAdmin { username: String },
    /// A viewer (or a read token) asked to change something.
    ReadOnly { actor: String },
    /// The store could not be read.
    Unavailable(StoreError),
}

impl Refusal {
    /// The API's answer: JSON with the reason; 401 with a challenge when a credential is missing
    /// or wrong, 403 when the credential is fine but not enough.
    pub fn api_response(&self) -> Response {
        let (status, message) = match self {
            Refusal::Anonymous | Refusal::BadToken => {
                (StatusCode::UNAUTHORIZED, "a valid admin API token (or an admin's hubauth session) is required")
            }
            Refusal::NotAdmin { .. } => (StatusCode::FORBIDDEN, "you are not one of this hub's hubauth admins"),
            Refusal::ReadOnly { .. } => (StatusCode::FORBIDDEN, "read-only: this credential may look but not change"),
            Refusal::Unavailable(e) => {
                tracing::error!(error = %e, "could not check an admin credential");
                (StatusCode::SERVICE_UNAVAILABLE, "storage is unavailable; try again")
            }
        };
        let mut r = (status, Json(json!({ "error": message }))).into_response();
        if status == StatusCode::UNAUTHORIZED {
            r.headers_mut().insert(header::WWW_AUTHENTICATE, "Bearer realm=\"hubauth-admin\"".parse().unwrap());
        }
        r
    }
}

/// The role `[admin]` gives this user, if any (admin beats viewer).
pub fn role_of(config: &AdminConfig, user: &User) -> Option<Role> {
    let in_any = |groups: &[String]| user.groups.iter().any(|g| groups.contains(g));
    if config.admin_users.contains(&user.username) || in_any(&config.groups) {
        Some(Role::Admin)
    } else if config.viewer_users.contains(&user.username) || in_any(&config.viewer_groups) {
        Some(Role::Viewer)
    } else {
        None
    }
}

/// The Bearer value of an `Authorization` header, if there is one.
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim()).filter(|t| !t.is_empty())
}

/// The principal behind a Bearer token: a static `[admin] api_tokens` value or a stored token.
pub async fn from_token(state: &AppState, presented: &str) -> Result<Principal, Refusal> {
    // Every static token is compared, so timing does not tell which one came close.
    let statics = &state.config.admin.api_tokens;
    if statics.iter().fold(false, |acc, t| t.matches(presented) | acc) {
        return Ok(Principal { actor: "config-token".into(), role: Role::Admin, via: Via::Token });
    }
    if presented.len() > 200 || !presented.starts_with(TOKEN_PREFIX) {
        return Err(Refusal::BadToken);
    }
    // A stored token is found by the hash of its whole value: a near miss finds nothing.
    let now = state.clock.now();
    let token = match state.store.admin_token_by_hash(&token_key(presented)).await {
        Ok(Some(t)) if t.live_at(now) => t,
        Ok(_) => return Err(Refusal::BadToken),
        Err(e) => return Err(Refusal::Unavailable(e)),
    };
    if token.last_used_at.is_none_or(|at| at <= now - TOKEN_USE_RESOLUTION) {
        if let Err(e) = state.store.note_admin_token_use(&token.id, now).await {
            tracing::warn!(error = %e, token = %token.id, "could not record an admin token's use");
        }
    }
    Ok(Principal { actor: format!("token:{}", token.id), role: token.scope.into(), via: Via::Token })
}

/// The principal behind this browser's hubauth session, judged on the user as the live re-check
/// leaves them. `Ok(None)`: nobody is signed in (or the person was just withdrawn).
pub async fn from_session(state: &AppState, jar: &CookieJar) -> Result<Option<Principal>, Refusal> {
    let Some((browser, user)) = session::current(state, jar).await.map_err(Refusal::Unavailable)? else {
        return Ok(None);
    };
    let user = match ensure_current(state, &user).await.map_err(Refusal::Unavailable)? {
        Current::Admitted(user) => user,
        Current::Revoked { .. } => return Ok(None),
    };
    match role_of(&state.config.admin, &user) {
        Some(role) => Ok(Some(Principal {
            actor: user.username.clone(),
            role,
            via: Via::Session { session: Box::new(browser), user },
        })),
        None => Err(Refusal::NotAdmin { username: user.username.clone() }),
    }
}

/// The principal of an API request: its Bearer token if it has one, else the browser's session.
/// A change (`write`) through a session must carry the session's CSRF token in `X-CSRF-Token`.
pub async fn for_api(state: &AppState, headers: &HeaderMap, write: bool) -> Result<Principal, Refusal> {
    let principal = match bearer(headers) {
        Some(token) => from_token(state, token).await?,
        None => {
            let jar = CookieJar::from_headers(headers);
            let principal = from_session(state, &jar).await?.ok_or(Refusal::Anonymous)?;
            if write {
                let sent = headers.get("x-csrf-token").and_then(|v| v.to_str().ok()).unwrap_or("");
                if !principal.csrf_token().is_some_and(|t| crate::crypto::secret::equal(t, sent)) {
                    return Err(Refusal::BadToken);
                }
            }
            principal
        }
    };
    if write && !principal.role.can_change() {
        return Err(Refusal::ReadOnly { actor: principal.actor });
    }
    Ok(principal)
}

/// Readable prefix of stored admin tokens (so a leaked one is recognisable, e.g. by scanners).
pub const TOKEN_PREFIX: &str = "hubauth_admin_";

/// A new admin API token: the record to store and the value, shown once.
pub fn new_token(
    name: &str,
    scope: AdminScope,
    created_by: &str,
    now: UnixTime,
    expires_at: Option<UnixTime>,
) -> (AdminToken, String) {
    let value = bearer_value(TOKEN_PREFIX.trim_end_matches('_'));
    let id: String = random_bytes::<5>().iter().map(|b| format!("{b:02x}")).collect();
    let token = AdminToken {
        id,
        token_hash: token_key(&value),
        name: name.to_owned(),
        scope,
        created_by: created_by.to_owned(),
        created_at: now,
        expires_at,
        revoked_at: None,
        last_used_at: None,
    };
    (token, value)
}

/// Checks a request for a new token: its name, scope and lifetime (`90d`, `12h`…).
pub fn check_new_token(
    name: &str,
    scope: &str,
    expires_in: Option<&str>,
    now: UnixTime,
) -> Result<(String, AdminScope, Option<UnixTime>), String> {
    let name = name.trim();
    if name.is_empty() || name.len() > 200 || name.chars().any(char::is_control) {
        return Err("name: say what the token is for, in at most 200 characters".into());
    }
    let scope = AdminScope::parse(scope).ok_or_else(|| format!("scope: {scope:?} is not read or write"))?;
    let expires_at = match expires_in {
        None => None,
        Some(text) => {
            let d = humantime::parse_duration(text).map_err(|e| format!("expires_in: {e} (e.g. 90d, 12h)"))?;
            if d.as_secs() == 0 || d.as_secs() > 10 * 365 * 86_400 {
                return Err("expires_in: must be between a second and ten years".into());
            }
            Some(now + d.as_secs() as i64)
        }
    };
    Ok((name.to_owned(), scope, expires_at))
}

/// Stores a new token and audits it; returns the record and its value (shown once).
pub async fn create_token(
    store: &dyn Store,
    name: &str,
    scope: AdminScope,
    actor: &Actor,
    now: UnixTime,
    expires_at: Option<UnixTime>,
) -> Result<(AdminToken, String), StoreError> {
    let (token, value) = new_token(name, scope, &actor.name, now, expires_at);
    store.create_admin_token(&token).await?;
    let detail = format!("admin API token {} ({:?}, {}) created", token.id, token.name, scope.as_str());
    actor.audit(store, event("admin_token_created", &token.id, now, detail)).await;
    Ok((token, value))
}

/// Revokes a stored token and audits it; false if there was no live one with this id.
pub async fn revoke_token(store: &dyn Store, id: &str, actor: &Actor, now: UnixTime) -> Result<bool, StoreError> {
    let revoked = store.revoke_admin_token(id, now).await?;
    if revoked {
        actor.audit(store, event("admin_token_revoked", id, now, format!("admin API token {id} revoked"))).await;
    }
    Ok(revoked)
}

fn event(kind: &str, id: &str, at: UnixTime, detail: String) -> crate::model::AuditEvent {
    crate::model::AuditEvent {
        at,
        kind: kind.into(),
        reason: Some(format!("admin_token:{id}")),
        detail: Some(detail),
        ..Default::default()
    }
}

/// A token as admins see it (never its value or hash).
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct TokenView {
    pub id: String,
    pub name: String,
    pub scope: &'static str,
    pub created_by: String,
    #[schema(value_type = i64)]
    pub created_at: UnixTime,
    #[schema(value_type = Option<i64>)]
    pub expires_at: Option<UnixTime>,
    #[schema(value_type = Option<i64>)]
    pub revoked_at: Option<UnixTime>,
    #[schema(value_type = Option<i64>)]
    pub last_used_at: Option<UnixTime>,
    /// `active`, `expired` or `revoked`.
    pub state: &'static str,
}

pub fn view(t: &AdminToken, now: UnixTime) -> TokenView {
    TokenView {
        id: t.id.clone(),
        name: t.name.clone(),
        scope: t.scope.as_str(),
        created_by: t.created_by.clone(),
        created_at: t.created_at,
        expires_at: t.expires_at,
        revoked_at: t.revoked_at,
        last_used_at: t.last_used_at,
        state: if t.revoked_at.is_some() {
            "revoked"
        } else if t.live_at(now) {
            "active"
        } else {
            "expired"
        },
    }
}
