//! Token revocation (RFC 7009). Revoking a refresh token ends its whole grant, access tokens
//! included (§2.1); revoking an access token ends just that token. Unknown tokens answer 200.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

use super::client_auth::authenticate;
use super::params::Params;
use super::token::require_form;
use super::OAuthError;
use crate::app::SharedState;
use crate::crypto::random::token_key;

pub async fn revoke(State(state): State<SharedState>, headers: HeaderMap, body: Bytes) -> Response {
    match handle(&state, &headers, &body).await {
        Ok(()) => (StatusCode::OK, crate::web::pages::no_store()).into_response(),
        Err(e) => e.into_response(),
    }
}

async fn handle(state: &SharedState, headers: &HeaderMap, body: &[u8]) -> Result<(), OAuthError> {
    require_form(headers)?;
    let params = Params::parse(body).map_err(|e| OAuthError::invalid_request(e.0))?;
    let client = authenticate(&state.config, headers, &params)?;
    let token = params.get("token").ok_or_else(|| OAuthError::invalid_request("token is required"))?;
    let hash = token_key(token);
    let now = state.clock.now();
    // The hint only orders the lookups (§2.1); both kinds are always tried.
    let refresh_first = params.get("token_type_hint") == Some("refresh_token");
    for kind in if refresh_first { ["refresh", "access"] } else { ["access", "refresh"] } {
        if kind == "access" {
            if let Some(at) = state.store.access_token(&hash, now).await? {
                if at.grant.client_id == client.id {
                    state.store.revoke_access_token(&hash, now).await?;
                    tracing::info!(client_id = %client.id, grant_id = %at.grant.id, "access token revoked");
                }
                return Ok(());
            }
        } else if let Some(rt) = state.store.refresh_token(&hash, now).await? {
            if rt.grant.client_id == client.id {
                state.store.revoke_grant(&rt.grant.id, "refresh token revoked by client", now).await?;
                tracing::info!(client_id = %client.id, grant_id = %rt.grant.id, "refresh token revoked with its grant");
            }
            return Ok(());
        }
    }
    if let Some(st) = state.store.service_token(&hash, now).await? {
        if st.client_id == client.id {
            state.store.revoke_service_token(&hash, now).await?;
            tracing::info!(client_id = %client.id, "service account token revoked");
        }
    }
    Ok(())
}
