//! Token introspection (RFC 7662), for confidential clients only, and only for their own tokens:
//! anything else is simply `{"active": false}`, which reveals nothing.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use super::client_auth::authenticate;
use super::params::Params;
use super::token::require_form;
use super::{ErrorCode, OAuthError};
use crate::app::SharedState;
use crate::crypto::random::token_key;

pub async fn introspect(State(state): State<SharedState>, headers: HeaderMap, body: Bytes) -> Response {
    match handle(&state, &headers, &body).await {
        Ok(v) => {
            let mut r = Json(v).into_response();
            r.headers_mut().insert(axum::http::header::CACHE_CONTROL, axum::http::HeaderValue::from_static("no-store"));
            r
        }
        Err(e) => e.into_response(),
    }
}

async fn handle(state: &SharedState, headers: &HeaderMap, body: &[u8]) -> Result<Value, OAuthError> {
    require_form(headers)?;
    let params = Params::parse(body).map_err(|e| OAuthError::invalid_request(e.0))?;
    let client = authenticate(&state.config, headers, &params)?;
    if client.is_public() {
        return Err(OAuthError::new(ErrorCode::InvalidClient, "introspection is only for confidential clients"));
    }
    let token = params.get("token").ok_or_else(|| OAuthError::invalid_request("token is required"))?;
    let hash = token_key(token);
    let now = state.clock.now();
    let issuer = &state.config.issuer;
    if let Some(at) = state.store.access_token(&hash, now).await? {
        if at.grant.client_id == client.id {
            return Ok(json!({
                "active": true, "token_type": "Bearer", "scope": at.scope, "client_id": at.grant.client_id,
                "username": at.user.username, "sub": at.user.id, "aud": at.grant.client_id, "iss": issuer,
                "iat": at.created_at, "exp": at.expires_at,
            }));
        }
    } else if let Some(rt) = state.store.refresh_token(&hash, now).await? {
        if rt.grant.client_id == client.id {
            return Ok(json!({
                "active": true, "token_type": "refresh_token", "scope": rt.grant.scope, "client_id": rt.grant.client_id,
                "username": rt.user.username, "sub": rt.user.id, "aud": rt.grant.client_id, "iss": issuer,
                "iat": rt.created_at, "exp": rt.expires_at,
            }));
        }
    } else if let Some(st) = state.store.service_token(&hash, now).await? {
        // A service account's token: only its own client may look (RFC 7662 §4 lets the server
        // decide; nobody else needs to learn which scopes another service holds).
        if st.client_id == client.id {
            return Ok(json!({
                "active": true, "token_type": "Bearer", "scope": st.scope, "client_id": st.client_id,
                "sub": st.client_id, "iss": issuer, "iat": st.created_at, "exp": st.expires_at,
                "token_use": "service_account",
            }));
        }
    }
    Ok(json!({ "active": false }))
}
