//! `grant_type=client_credentials` (RFC 6749 §4.4) for service accounts: a confidential client
//! marked `[clients.service_account]` gets a short-lived access token for (a subset of) its
//! configured scopes. No user, no refresh token, no ID token; introspection shows it.

use super::TokenResponse;
use crate::app::SharedState;
use crate::config::ClientConfig;
use crate::crypto::random::{bearer_value, token_key};
use crate::provider::params::Params;
use crate::provider::{ErrorCode, OAuthError};
use crate::store::ServiceToken;

pub async fn grant(state: &SharedState, client: &ClientConfig, params: &Params) -> Result<TokenResponse, OAuthError> {
    let Some(account) = &client.service_account else {
        return Err(OAuthError::new(ErrorCode::UnauthorizedClient, "this client is not a service account"));
    };
    let scope: Vec<&str> = match params.get("scope") {
        None => account.scopes.iter().map(String::as_str).collect(),
        Some(asked) => {
            let asked: Vec<&str> = asked.split(' ').filter(|s| !s.is_empty()).collect();
            if let Some(extra) = asked.iter().find(|s| !account.scopes.iter().any(|a| a == *s)) {
                return Err(OAuthError::new(
                    ErrorCode::InvalidScope,
                    format!("scope {extra:?} is not granted to this service account"),
                ));
            }
            asked
        }
    };
    let now = state.clock.now();
    let lifetime = state.config.tokens.service_token_lifetime.as_secs() as i64;
    let token = bearer_value("hst");
    state
        .store
        .create_service_token(&ServiceToken {
            token_hash: token_key(&token),
            client_id: client.id.clone(),
            scope: scope.join(" "),
            created_at: now,
            expires_at: now + lifetime,
        })
        .await?;
    tracing::info!(client_id = %client.id, "service account token issued");
    Ok(TokenResponse {
        access_token: token,
        issued_token_type: None,
        token_type: "Bearer",
        expires_in: Some(lifetime),
        scope: scope.join(" "),
        refresh_token: None,
        id_token: None,
    })
}
