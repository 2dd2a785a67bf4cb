//! The UserInfo endpoint (OpenID Connect Core §5.3), a Bearer-protected resource (RFC 6750).
//! JupyterHub reads it at login and again on every `refresh_user`, so it always answers the
//! user's current profile and groups.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::Json;

use super::claims::user_claims;
use super::error::BearerError;
use super::params::Params;
use super::scope;
use crate::app::SharedState;
use crate::crypto::random::token_key;
use crate::policy::live::{ensure_current, Current};

/// The bearer token from the Authorization header or, for POST, a form body (RFC 6750 §2.1-2.2).
fn bearer(headers: &HeaderMap, body: Option<&[u8]>) -> Result<String, BearerError> {
    let from_header = match headers.get(header::AUTHORIZATION) {
        Some(v) => {
            let v = v.to_str().map_err(|_| BearerError::InvalidRequest("the Authorization header is not readable"))?;
            match v.split_once(' ') {
                Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty() => {
                    Some(token.trim().to_string())
                }
                _ => return Err(BearerError::InvalidRequest("use the Bearer authentication scheme")),
            }
        }
        None => None,
    };
    let from_body = match body {
        Some(b) if !b.is_empty() => Params::parse(b)
            .map_err(|_| BearerError::InvalidRequest("the body is not a valid form"))?
            .get("access_token")
            .map(str::to_string),
        _ => None,
    };
    match (from_header, from_body) {
        (Some(_), Some(_)) => Err(BearerError::InvalidRequest("send the token in one place only")),
        (Some(t), None) | (None, Some(t)) => Ok(t),
        (None, None) => Err(BearerError::Missing),
    }
}

pub async fn userinfo_get(State(state): State<SharedState>, headers: HeaderMap) -> Response {
    answer(&state, &headers, None).await.unwrap_or_else(IntoResponse::into_response)
}

pub async fn userinfo_post(State(state): State<SharedState>, headers: HeaderMap, body: Bytes) -> Response {
    answer(&state, &headers, Some(&body)).await.unwrap_or_else(IntoResponse::into_response)
}

async fn answer(state: &SharedState, headers: &HeaderMap, body: Option<&[u8]>) -> Result<Response, BearerError> {
    let token = bearer(headers, body)?;
    if token.len() > 512 {
        return Err(BearerError::InvalidToken("the access token is invalid"));
    }
    let record = state
        .store
        .access_token(&token_key(&token), state.clock.now())
        .await?
        .ok_or(BearerError::InvalidToken("the access token is invalid, expired or revoked"))?;
    if !scope::has(&record.scope, "openid") {
        return Err(BearerError::InvalidToken("the access token was not issued for openid"));
    }
    // Groups and access follow the provider: stale data is read again first (see policy::live).
    let user = match ensure_current(state, &record.user).await? {
        Current::Admitted(user) => user,
        Current::Revoked { .. } => {
            return Err(BearerError::InvalidToken("access to this hub was withdrawn; sign in again"));
        }
    };
    crate::provider::token_use::note(state, &user.id);
    let mut response = Json(user_claims(&user, &record.scope)).into_response();
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}
