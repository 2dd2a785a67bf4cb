//! OAuth 2.0 Token Exchange (RFC 8693): a client allowed by `[clients.token_exchange]` presents a
//! person's token and gets that person's current **upstream** access token for one connector
//! (`audience` or `resource` = the connector id), refreshed first if it is about to expire.
//!
//! Subject tokens, each accepted only when it was meant for exchange (see [`subjects`]):
//! - `urn:ietf:params:oauth:token-type:access_token`: a hubauth access token issued to a client
//!   the rule names (`subject_clients`), with the scopes it requires (`subject_scopes`) — e.g. the
//!   hub's, in a spawner hook;
//! - `urn:hubauth:params:oauth:token-type:jupyterhub-api-token`: a JupyterHub token, checked
//!   against the hub's REST API (`GET {[jupyterhub] api_url}/user`) — so a server the hub stopped,
//!   or a token it revoked, gets nothing — and accepted only when the hub's answer shows the
//!   user's own server token or the exchange scope the operator granted (`jupyterhub_scope`).
//!
//! Either way the person's access is re-checked first (see `policy::live`): someone no longer
//! admitted gets no upstream token.

mod subjects;

use super::TokenResponse;
use crate::app::SharedState;
use crate::config::ClientConfig;
use crate::custody::{fresh_upstream_token, CustodyError};
use crate::policy::live::{ensure_current, Current};
use crate::provider::params::Params;
use crate::provider::{ErrorCode, OAuthError};

use crate::provider::token_exchange_types::{ACCESS_TOKEN_TYPE, JUPYTERHUB_TOKEN_TYPE};

pub async fn grant(state: &SharedState, client: &ClientConfig, params: &Params) -> Result<TokenResponse, OAuthError> {
    let mut connector = "none";
    let result = exchange(state, client, params, &mut connector).await;
    state.metrics.token_exchange(connector, result.as_ref().map_or_else(|e| e.code.as_str(), |_| "ok"));
    result
}

/// `connector` is set to the target once it is one this client may have (a configured id).
async fn exchange<'a>(
    state: &SharedState,
    client: &'a ClientConfig,
    params: &Params,
    connector: &mut &'a str,
) -> Result<TokenResponse, OAuthError> {
    let Some(rules) = &client.token_exchange else {
        return Err(OAuthError::new(ErrorCode::UnauthorizedClient, "this client may not exchange tokens"));
    };
    let subject_token =
        params.get("subject_token").ok_or_else(|| OAuthError::invalid_request("subject_token is required"))?;
    let subject_type = params
        .get("subject_token_type")
        .ok_or_else(|| OAuthError::invalid_request("subject_token_type is required"))?;
    if let Some(requested) = params.get("requested_token_type") {
        if requested != ACCESS_TOKEN_TYPE {
            return Err(OAuthError::invalid_request(format!(
                "requested_token_type must be {ACCESS_TOKEN_TYPE} (hubauth hands out upstream access tokens)"
            )));
        }
    }
    if params.contains("actor_token") {
        return Err(OAuthError::invalid_request("actor_token (delegation) is not supported"));
    }
    // The upstream is named by `audience` (a connector id) or `resource`; exactly one.
    let target = match (params.get("audience"), params.get("resource")) {
        (Some(a), None) | (None, Some(a)) => a,
        (Some(_), Some(_)) => return Err(OAuthError::invalid_request("send either audience or resource, not both")),
        (None, None) => {
            return Err(OAuthError::new(
                ErrorCode::InvalidTarget,
                "say which upstream token you want: audience = a connector id",
            ))
        }
    };
    let Some(audience) = rules.audiences.iter().find(|a| *a == target) else {
        return Err(OAuthError::new(ErrorCode::InvalidTarget, "this client may not obtain tokens for that audience"));
    };
    *connector = audience.as_str();
    let kind = match subject_type {
        ACCESS_TOKEN_TYPE => "access_token",
        JUPYTERHUB_TOKEN_TYPE => "jupyterhub",
        _ => return Err(OAuthError::invalid_request("unsupported subject_token_type")),
    };
    if !rules.subject_token_types.iter().any(|t| t == kind) {
        return Err(OAuthError::invalid_request("this client may not present that subject_token_type"));
    }
    if subject_token.len() > 4096 {
        return Err(OAuthError::invalid_grant("the subject token is invalid"));
    }

    let user = match kind {
        "access_token" => subjects::from_access_token(state, rules, subject_token).await,
        _ => subjects::from_jupyterhub(state, rules, subject_token).await,
    }
    .inspect_err(|e| {
        tracing::info!(client_id = %client.id, error = e.code.as_str(), why = %e.description, "token exchange refused: subject token");
    })?;
    let user = match ensure_current(state, &user).await? {
        Current::Admitted(user) => user,
        Current::Revoked { code, .. } => {
            tracing::info!(client_id = %client.id, reason = code.as_str(), "token exchange refused: access withdrawn");
            return Err(OAuthError::new(ErrorCode::LoginRequired, "access to this hub was withdrawn; sign in again"));
        }
    };
    let fresh = fresh_upstream_token(state, &user, target).await.map_err(|e| match e {
        CustodyError::NoIdentity(name) => OAuthError::invalid_grant(format!("the user has not signed in with {name}")),
        CustodyError::NotRedirect(_) => OAuthError::new(ErrorCode::InvalidTarget, "that connector keeps no tokens"),
        CustodyError::SessionEnded { connector, .. } => OAuthError::new(
            ErrorCode::LoginRequired,
            format!("the sign-in at {connector} has ended; the user must sign in again"),
        ),
        CustodyError::Unavailable(why) => {
            tracing::warn!(client_id = %client.id, %why, "token exchange: upstream unavailable");
            OAuthError::new(
                ErrorCode::TemporarilyUnavailable,
                "the upstream provider is not answering; try again shortly",
            )
        }
        CustodyError::Store(e) => e.into(),
    })?;
    crate::provider::token_use::note(state, &user.id);
    let now = state.clock.now();
    tracing::info!(client_id = %client.id, user = %user.username, audience = target, "upstream token handed out by token exchange");
    Ok(TokenResponse {
        access_token: fresh.access_token.expose().to_string(),
        issued_token_type: Some(ACCESS_TOKEN_TYPE),
        token_type: "Bearer",
        expires_in: fresh.expires_at.map(|e| (e - now).max(0)),
        scope: fresh.scope.unwrap_or_default(),
        refresh_token: None,
        id_token: None,
    })
}
