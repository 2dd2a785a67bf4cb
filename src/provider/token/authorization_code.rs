//! `grant_type=authorization_code` (RFC 6749 §4.1.3) with PKCE (RFC 7636 §4.6).
//!
//! A code is checked against everything the request must repeat (client, `redirect_uri`, PKCE
//! verifier) before it is spent, so whoever holds a leaked code cannot burn it for its owner; a
//! failed check leaves it usable. (Guessing the verifier is hopeless: it has 43–128 characters by
//! RFC 7636 §4.1 and the code lives at most 60 s.) Codes are single use: a second presentation
//! that passes the same checks is treated as theft and revokes every token the first one issued
//! (RFC 6749 §4.1.2, RFC 9700 §4.5); one that fails them changes nothing.

use subtle::ConstantTimeEq;

use super::{mint, respond, TokenResponse};
use crate::app::SharedState;
use crate::config::ClientConfig;
use crate::crypto::random::{b64url, sha256, token_key};
use crate::provider::authorize::{is_pkce_value, AuthorizationRequest};
use crate::provider::params::Params;
use crate::provider::OAuthError;
use crate::store::{AuthorizationCode, CodeRedemption, Grant};

pub async fn grant(state: &SharedState, client: &ClientConfig, params: &Params) -> Result<TokenResponse, OAuthError> {
    let code = params.get("code").ok_or_else(|| OAuthError::invalid_request("code is required"))?;
    let now = state.clock.now();
    let code_hash = token_key(code);
    let Some(stored) = state.store.authorization_code(&code_hash).await? else {
        return Err(OAuthError::invalid_grant("the code is unknown or expired"));
    };
    let record = stored.code;
    let request = check_presentation(client, &record, params)?;
    // A spent code still goes to the store: its replay revokes what it issued, even expired.
    if !stored.spent && record.expires_at <= now {
        return Err(OAuthError::invalid_grant("the code has expired"));
    }
    let minted = mint(state, &request.scope, true);
    let grant = Grant {
        id: uuid::Uuid::now_v7().to_string(),
        client_id: client.id.clone(),
        user_id: record.user_id.clone(),
        session_id: record.session_id.clone(),
        scope: request.scope.clone(),
        auth_time: record.auth_time,
        created_at: now,
    };
    match state.store.redeem_authorization_code(&code_hash, &grant, &minted.record, now).await? {
        CodeRedemption::Redeemed { user } => {
            respond(state, client, &user, &request.scope, record.auth_time, request.nonce.as_deref(), minted)
        }
        CodeRedemption::Replayed { grant_id } => {
            tracing::warn!(client_id = %client.id, grant_id = grant_id.as_deref().unwrap_or("-"), "authorization code replayed; its tokens are revoked");
            Err(OAuthError::invalid_grant("the code has already been used"))
        }
        CodeRedemption::Unknown => Err(OAuthError::invalid_grant("the code is unknown or expired")),
    }
}

/// The request repeats what the code was issued for: the same client, the same `redirect_uri`,
/// and the verifier of its PKCE challenge. Returns the authorization request behind the code.
fn check_presentation(
    client: &ClientConfig,
    record: &AuthorizationCode,
    params: &Params,
) -> Result<AuthorizationRequest, OAuthError> {
    if record.client_id != client.id {
        return Err(OAuthError::invalid_grant("the code was issued to another client"));
    }
    let request: AuthorizationRequest =
        serde_json::from_str(&record.request_json).map_err(|_| OAuthError::invalid_grant("the code is unreadable"))?;
    match params.get("redirect_uri") {
        Some(r) if r == request.redirect_uri => {}
        Some(_) => return Err(OAuthError::invalid_grant("redirect_uri differs from the authorization request")),
        None => return Err(OAuthError::invalid_request("redirect_uri is required")),
    }
    match (&request.code_challenge, params.get("code_verifier")) {
        (Some(challenge), Some(verifier)) => {
            if !is_pkce_value(verifier) {
                return Err(OAuthError::invalid_grant("code_verifier is malformed (RFC 7636 §4.1)"));
            }
            let computed = b64url(&sha256(verifier.as_bytes()));
            if !bool::from(computed.as_bytes().ct_eq(challenge.as_bytes())) {
                return Err(OAuthError::invalid_grant("code_verifier does not match the code_challenge"));
            }
        }
        (Some(_), None) => return Err(OAuthError::invalid_grant("code_verifier is required (PKCE was used)")),
        // A verifier without a challenge would hide a PKCE downgrade (RFC 9700 §2.1.1).
        (None, Some(_)) => return Err(OAuthError::invalid_grant("code_verifier sent but no code_challenge was used")),
        (None, None) => {}
    }
    Ok(request)
}
