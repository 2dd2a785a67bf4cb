//! The token endpoint (RFC 6749 §3.2): client authentication, then one module per grant type.

mod authorization_code;
mod client_credentials;
mod refresh_token;
mod token_exchange;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;

use super::client_auth::authenticate;
use super::id_token::{self, IdTokenInput};
use super::params::Params;
use super::{scope, ErrorCode, OAuthError};
use crate::app::{AppState, SharedState};
use crate::config::{ClientConfig, GrantType};
use crate::crypto::random::{bearer_value, token_key};
use crate::store::{IssuedTokens, User};

#[derive(Debug, Serialize)]
pub struct TokenResponse {
    pub access_token: String,
    /// RFC 8693: what `access_token` is, in a token-exchange answer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub issued_token_type: Option<&'static str>,
    pub token_type: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_in: Option<i64>,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub scope: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id_token: Option<String>,
}

impl IntoResponse for TokenResponse {
    fn into_response(self) -> Response {
        let mut r = Json(self).into_response();
        r.headers_mut().insert(axum::http::header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        r.headers_mut().insert(axum::http::header::PRAGMA, HeaderValue::from_static("no-cache"));
        r
    }
}

pub async fn token(State(state): State<SharedState>, headers: HeaderMap, body: Bytes) -> Response {
    let mut grant_type = "unsupported";
    let result = handle(&state, &headers, &body, &mut grant_type).await;
    state.metrics.token_grant(grant_type, result.as_ref().map_or_else(|e| e.code.as_str(), |_| "ok"));
    match result {
        Ok(r) => r.into_response(),
        Err(e) => e.into_response(),
    }
}

pub fn require_form(headers: &HeaderMap) -> Result<(), OAuthError> {
    let ct = headers.get(axum::http::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let mime = ct.split(';').next().unwrap_or("").trim();
    if mime.eq_ignore_ascii_case("application/x-www-form-urlencoded") {
        Ok(())
    } else {
        Err(OAuthError::invalid_request("the body must be application/x-www-form-urlencoded"))
    }
}

/// `grant_type` is set to the request's grant type once it is known to be a supported one (the
/// metrics' label: never a value the client made up).
async fn handle(
    state: &SharedState,
    headers: &HeaderMap,
    body: &[u8],
    grant_type: &mut &'static str,
) -> Result<TokenResponse, OAuthError> {
    require_form(headers)?;
    let params = Params::parse(body).map_err(|e| OAuthError::invalid_request(e.0))?;
    *grant_type = match params.get("grant_type").filter(|g| *g != "token_exchange").and_then(GrantType::parse) {
        Some(GrantType::AuthorizationCode) => "authorization_code",
        Some(GrantType::RefreshToken) => "refresh_token",
        Some(GrantType::ClientCredentials) => "client_credentials",
        Some(GrantType::TokenExchange) => "token_exchange",
        None => "unsupported",
    };
    let client = authenticate(&state.config, headers, &params)?;
    let Some(name) = params.get("grant_type") else {
        return Err(OAuthError::invalid_request("grant_type is required"));
    };
    let grant = GrantType::parse(name).filter(|_| name != "token_exchange").ok_or_else(|| {
        OAuthError::new(
            ErrorCode::UnsupportedGrantType,
            "supported grant types: authorization_code, refresh_token, client_credentials, urn:ietf:params:oauth:grant-type:token-exchange",
        )
    })?;
    if !client.allows(grant) {
        return Err(OAuthError::new(ErrorCode::UnauthorizedClient, "this client may not use this grant type"));
    }
    match grant {
        GrantType::AuthorizationCode => authorization_code::grant(state, client, &params).await,
        GrantType::RefreshToken => refresh_token::grant(state, client, &params).await,
        GrantType::ClientCredentials => client_credentials::grant(state, client, &params).await,
        GrantType::TokenExchange => token_exchange::grant(state, client, &params).await,
    }
}

/// A new access token (and refresh token) for `scope`, not yet stored.
pub struct Minted {
    pub access_token: String,
    pub refresh_token: Option<String>,
    pub record: IssuedTokens,
}

pub fn mint(state: &AppState, scope: &str, with_refresh: bool) -> Minted {
    let now = state.clock.now();
    let access_token = bearer_value("hat");
    let refresh_token = with_refresh.then(|| bearer_value("hrt"));
    let record = IssuedTokens {
        access_hash: token_key(&access_token),
        access_scope: scope.to_string(),
        access_expires_at: now + state.config.tokens.access_token_lifetime.as_secs() as i64,
        refresh: refresh_token
            .as_ref()
            .map(|r| (token_key(r), now + state.config.tokens.refresh_token_lifetime.as_secs() as i64)),
        created_at: now,
    };
    Minted { access_token, refresh_token, record }
}

/// The response for freshly stored tokens, with an ID token when `openid` was granted.
pub fn respond(
    state: &AppState,
    client: &ClientConfig,
    user: &User,
    granted_scope: &str,
    auth_time: i64,
    nonce: Option<&str>,
    minted: Minted,
) -> Result<TokenResponse, OAuthError> {
    let id_token = if scope::has(granted_scope, "openid") {
        let input =
            IdTokenInput { client, user, scope: granted_scope, auth_time, nonce, access_token: &minted.access_token };
        Some(id_token::issue(state, input).map_err(|e| {
            tracing::error!(error = %e, "could not sign an ID token");
            OAuthError::new(ErrorCode::ServerError, "hubauth could not sign the ID token")
        })?)
    } else {
        None
    };
    Ok(TokenResponse {
        access_token: minted.access_token,
        token_type: "Bearer",
        expires_in: Some(state.config.tokens.access_token_lifetime.as_secs() as i64),
        issued_token_type: None,
        scope: granted_scope.to_string(),
        refresh_token: minted.refresh_token,
        id_token,
    })
}
