//! OpenID Connect Discovery 1.0 metadata and the JWKS.

use axum::extract::State;
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use super::scope;
use crate::app::SharedState;

pub async fn openid_configuration(State(state): State<SharedState>) -> Response {
    let c = &state.config;
    let body = json!({
        "issuer": c.issuer,
        "authorization_endpoint": c.endpoint("/authorize"),
        "token_endpoint": c.endpoint("/token"),
        "userinfo_endpoint": c.endpoint("/userinfo"),
        "jwks_uri": c.endpoint("/jwks"),
        "revocation_endpoint": c.endpoint("/revoke"),
        "introspection_endpoint": c.endpoint("/introspect"),
        "end_session_endpoint": c.endpoint("/logout"),
        "scopes_supported": scope::SUPPORTED,
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": [
            "authorization_code",
            "refresh_token",
            "client_credentials",
            "urn:ietf:params:oauth:grant-type:token-exchange"
        ],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256", "ES256"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "none"],
        "revocation_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "none"],
        "introspection_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        "code_challenge_methods_supported": ["S256"],
        "claims_supported": ["sub", "iss", "aud", "exp", "iat", "auth_time", "nonce", "at_hash", "azp",
                             "preferred_username", "name", "email", "email_verified", "groups", "updated_at"],
        "prompt_values_supported": ["none", "login", "consent", "select_account"],
        "claims_parameter_supported": false,
        "request_parameter_supported": false,
        "request_uri_parameter_supported": false,
        "authorization_response_iss_parameter_supported": true,
    });
    cacheable(Json(body).into_response())
}

pub async fn jwks(State(state): State<SharedState>) -> Response {
    cacheable(Json(state.keys.current().jwks().clone()).into_response())
}

fn cacheable(mut r: Response) -> Response {
    // Short, so a rotated key is seen well within the time the old one stays published.
    r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=300"));
    r
}
