//! `grant_type=refresh_token` (RFC 6749 §6) with rotation: every use returns a new refresh token
//! and spends the old one; presenting a spent one revokes the whole family (RFC 9700 §4.14.2).

use super::{mint, respond, TokenResponse};
use crate::app::SharedState;
use crate::config::ClientConfig;
use crate::crypto::random::value_hash;
use crate::provider::params::Params;
use crate::provider::{scope, ErrorCode, OAuthError};
use crate::store::RefreshRotation;

pub async fn grant(
    state: &SharedState,
    client: &ClientConfig,
    params: &Params,
) -> Result<TokenResponse, OAuthError> {
    let presented = params
        .get("refresh_token")
        .ok_or_else(|| OAuthError::invalid_request("refresh_token is required"))?;
    let now = state.clock.now();
    let old_hash = value_hash(presented);

    // The narrowed scope is only known after the lookup; read the grant's scope first.
    let current = state.store.refresh_token(&old_hash, now).await?;
    let granted_scope = current.as_ref().map(|r| r.grant.scope.clone());
    let scope = match (params.get("scope"), &granted_scope) {
        (Some(asked), Some(granted)) => {
            if !scope::is_subset(asked, granted) {
                return Err(OAuthError::new(
                    ErrorCode::InvalidScope,
                    "the requested scope exceeds what was granted",
                ));
            }
            scope::normalize(asked)
        }
        (None, Some(granted)) => granted.clone(),
        // Unknown or spent: let the rotation below decide between "invalid" and "reuse".
        (_, None) => String::new(),
    };

    let minted = mint(state, &scope, true);
    match state
        .store
        .rotate_refresh_token(&old_hash, &client.id, &minted.record, now)
        .await?
    {
        RefreshRotation::Rotated { grant, user } => {
            respond(state, client, &user, &scope, grant.auth_time, None, minted)
        }
        RefreshRotation::Reused { grant_id } => {
            tracing::warn!(client_id = %client.id, grant_id, "refresh token reused; the token family is revoked");
            Err(OAuthError::invalid_grant(
                "the refresh token has already been used; all tokens of this login are revoked",
            ))
        }
        RefreshRotation::Invalid => Err(OAuthError::invalid_grant(
            "the refresh token is invalid, expired or revoked",
        )),
    }
}
