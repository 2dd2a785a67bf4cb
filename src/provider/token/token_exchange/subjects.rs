//! Whose subject token this is, and whether it was meant for exchange.
//!
//! A person's tokens travel: JupyterHub hands identify-only OAuth tokens to every service and
//! every (shared) server the person visits, and hubauth hands access tokens to every relying
//! party. None of those may be turned into the person's upstream token. So a subject token is
//! accepted only when it shows it was meant for this:
//! - a hubauth access token: issued to a client the rule names, with the scopes it requires;
//! - a JupyterHub token: the hub says it is a user's (`kind`), whose (`name`), and what it may do
//!   (`scopes`): either the exchange scope the operator granted (`jupyterhub_scope`, plain or
//!   filtered to this user), or — when `jupyterhub_server_tokens` — exactly what JupyterHub gives
//!   a user's own single-user server as `JUPYTERHUB_API_TOKEN`: `users:activity!user=NAME` and
//!   `access:servers!server=NAME/…`, and not an OAuth token (those carry a `session_id`).

use serde::Deserialize;

use crate::app::SharedState;
use crate::config::TokenExchangeConfig;
use crate::crypto::random::token_key;
use crate::provider::{scope, ErrorCode, OAuthError};
use crate::store::User;

pub async fn from_access_token(
    state: &SharedState,
    rule: &TokenExchangeConfig,
    token: &str,
) -> Result<User, OAuthError> {
    let record = state
        .store
        .access_token(&token_key(token), state.clock.now())
        .await?
        .ok_or_else(|| OAuthError::invalid_grant("the subject token is invalid, expired or revoked"))?;
    if !rule.subject_clients.contains(&record.grant.client_id) {
        return Err(OAuthError::invalid_grant(format!(
            "the subject token was issued to another client; this exchange accepts access tokens issued to: {}",
            rule.subject_clients.join(", ")
        )));
    }
    let missing: Vec<&str> =
        rule.subject_scopes.iter().map(String::as_str).filter(|s| !scope::has(&record.scope, s)).collect();
    if !missing.is_empty() {
        return Err(OAuthError::new(
            ErrorCode::InvalidScope,
            format!("the subject token lacks the scope {} that this exchange requires", missing.join(" ")),
        ));
    }
    Ok(record.user)
}

/// Asks the hub about the token (it answers for live tokens only), then judges the answer.
pub async fn from_jupyterhub(state: &SharedState, rule: &TokenExchangeConfig, token: &str) -> Result<User, OAuthError> {
    let Some(api) = &state.config.jupyterhub.api_url else {
        return Err(OAuthError::new(
            ErrorCode::UnauthorizedClient,
            "JupyterHub tokens cannot be checked: [jupyterhub] api_url is not configured",
        ));
    };
    let url = format!("{}/user", api.trim_end_matches('/'));
    // Counted in the upstream metrics as connector "jupyterhub".
    let hub = state.http.for_connector("jupyterhub");
    let started = std::time::Instant::now();
    let client = hub.client().map_err(|e| {
        tracing::error!(error = %e, "cannot set up the HTTP client for the JupyterHub API");
        OAuthError::new(ErrorCode::TemporarilyUnavailable, "the hub is not answering; try again shortly")
    })?;
    let answer = client.get(&url).header("Authorization", format!("token {token}")).send().await;
    hub.observe(started, answer.as_ref().map(|a| a.status()));
    let answer = answer.map_err(|e| {
        tracing::warn!(error = %e, "could not reach the JupyterHub API");
        OAuthError::new(ErrorCode::TemporarilyUnavailable, "the hub is not answering; try again shortly")
    })?;
    match answer.status().as_u16() {
        200 => {}
        401 | 403 | 404 => return Err(OAuthError::invalid_grant("the hub does not accept this JupyterHub token")),
        other => {
            tracing::warn!(status = other, "unexpected answer from the JupyterHub API");
            return Err(OAuthError::new(
                ErrorCode::TemporarilyUnavailable,
                "the hub answered unexpectedly; try again shortly",
            ));
        }
    }
    let owner: HubTokenOwner = answer.json().await.map_err(|e| {
        tracing::warn!(error = %e, "the JupyterHub API's answer is not a user model");
        OAuthError::new(ErrorCode::TemporarilyUnavailable, "the hub's answer was not a JupyterHub user model")
    })?;
    let name = judge_hub_token(&owner, rule)?;
    state
        .store
        .user_by_username(name)
        .await?
        .ok_or_else(|| OAuthError::invalid_grant("the hub user is not known to hubauth"))
}

/// The fields of JupyterHub's `GET /hub/api/user` answer that say what a token is (JupyterHub
/// ≥ 4 answers all of them; `session_id` is set for OAuth tokens only).
#[derive(Debug, Deserialize)]
pub struct HubTokenOwner {
    #[serde(default)]
    pub kind: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub scopes: Option<Vec<String>>,
    #[serde(default)]
    pub session_id: Option<String>,
}

/// The hub user whose token may be exchanged, or why not.
pub fn judge_hub_token<'a>(owner: &'a HubTokenOwner, rule: &TokenExchangeConfig) -> Result<&'a str, OAuthError> {
    match owner.kind.as_deref() {
        Some("user") => {}
        Some(_) => {
            return Err(OAuthError::invalid_grant("the JupyterHub token is not a user's (kind is not \"user\")"))
        }
        None => {
            return Err(OAuthError::invalid_grant(
                "the hub did not say what kind of token this is (JupyterHub 4 or later answers `kind`)",
            ))
        }
    }
    let name = owner
        .name
        .as_deref()
        .filter(|n| !n.is_empty())
        .ok_or_else(|| OAuthError::invalid_grant("the hub did not say whose token this is"))?;
    let scopes = owner.scopes.as_deref().ok_or_else(|| {
        OAuthError::invalid_grant(
            "the hub did not list the token's scopes (JupyterHub 4 or later does), so it cannot be told apart from an identify-only token",
        )
    })?;
    let exchange_scope = &rule.jupyterhub_scope;
    let filtered_to_user = format!("{exchange_scope}!user={name}");
    if scopes.iter().any(|s| s == exchange_scope || *s == filtered_to_user) {
        return Ok(name);
    }
    if rule.jupyterhub_server_tokens && is_own_server_token(owner, name, scopes) {
        return Ok(name);
    }
    Err(OAuthError::new(
        ErrorCode::InvalidScope,
        if rule.jupyterhub_server_tokens {
            format!(
                "the JupyterHub token is neither the user's own server token (users:activity!user and access:servers!server, not OAuth) nor does it carry the scope {exchange_scope}; tokens the hub gives services and other servers are not accepted"
            )
        } else {
            format!("the JupyterHub token does not carry the scope {exchange_scope} that this exchange requires")
        },
    ))
}

/// JupyterHub's default `server` role, as given to `JUPYTERHUB_API_TOKEN`, for this user's server.
fn is_own_server_token(owner: &HubTokenOwner, name: &str, scopes: &[String]) -> bool {
    let activity = format!("users:activity!user={name}");
    let server = format!("access:servers!server={name}/");
    owner.session_id.is_none() && scopes.contains(&activity) && scopes.iter().any(|s| s.starts_with(&server))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(server_tokens: bool) -> TokenExchangeConfig {
        TokenExchangeConfig {
            audiences: vec![],
            subject_token_types: vec!["jupyterhub".into()],
            subject_clients: vec![],
            subject_scopes: vec![],
            jupyterhub_server_tokens: server_tokens,
            jupyterhub_scope: "custom:hubauth:exchange".into(),
        }
    }

    fn owner(kind: &str, name: &str, session: Option<&str>, scopes: &[&str]) -> HubTokenOwner {
        HubTokenOwner {
            kind: Some(kind.into()),
            name: Some(name.into()),
            scopes: Some(scopes.iter().map(|s| s.to_string()).collect()),
            session_id: session.map(Into::into),
        }
    }

    const SERVER: [&str; 2] = ["access:servers!server=alice/", "users:activity!user=alice"];

    #[test]
    fn the_users_own_server_token_passes_and_lookalikes_do_not() {
        assert_eq!(judge_hub_token(&owner("user", "alice", None, &SERVER), &rule(true)).unwrap(), "alice");
        let named = ["access:servers!server=alice/gpu", "users:activity!user=alice"];
        assert!(judge_hub_token(&owner("user", "alice", None, &named), &rule(true)).is_ok());
        // switched off: the scope is needed
        assert_eq!(
            judge_hub_token(&owner("user", "alice", None, &SERVER), &rule(false)).unwrap_err().code,
            ErrorCode::InvalidScope
        );
        // an OAuth token with the same scopes, another user's server, a prefix of the name
        for o in [
            owner("user", "alice", Some("sess"), &SERVER),
            owner("user", "alice", None, &["access:servers!server=bob/", "users:activity!user=alice"]),
            owner("user", "alice", None, &["access:servers!server=alice/", "users:activity!user=bob"]),
            owner("user", "ali", None, &SERVER),
            owner("user", "alice", None, &["access:servers!user=alice", "users:activity!user=alice"]),
        ] {
            assert_eq!(judge_hub_token(&o, &rule(true)).unwrap_err().code, ErrorCode::InvalidScope, "{o:?}");
        }
    }

    #[test]
    fn the_exchange_scope_passes_plain_or_filtered_to_the_user_only() {
        for s in ["custom:hubauth:exchange", "custom:hubauth:exchange!user=alice"] {
            assert!(judge_hub_token(&owner("user", "alice", Some("sess"), &[s]), &rule(false)).is_ok(), "{s}");
        }
        for s in [
            "custom:hubauth:exchange!user=bob",
            "custom:hubauth:exchange!group=staff",
            "custom:hubauth",
            "custom:hubauth:exchange:x",
        ] {
            assert!(judge_hub_token(&owner("user", "alice", None, &[s]), &rule(false)).is_err(), "{s}");
        }
    }

    #[test]
    fn kind_name_and_scopes_must_all_be_answered() {
        let service = owner("service", "alice", None, &["custom:hubauth:exchange"]);
        assert_eq!(judge_hub_token(&service, &rule(true)).unwrap_err().code, ErrorCode::InvalidGrant);
        let mut o = owner("user", "alice", None, &["custom:hubauth:exchange"]);
        o.kind = None;
        assert!(judge_hub_token(&o, &rule(true)).unwrap_err().description.contains("kind"));
        let mut o = owner("user", "", None, &["custom:hubauth:exchange"]);
        assert!(judge_hub_token(&o, &rule(true)).unwrap_err().description.contains("whose"));
        o.name = Some("alice".into());
        o.scopes = None;
        assert!(judge_hub_token(&o, &rule(true)).unwrap_err().description.contains("scopes"));
    }
}
