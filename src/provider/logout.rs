//! RP-Initiated Logout 1.0 (`end_session_endpoint`). With a valid `id_token_hint` for the signed-
//! in user the session ends at once; without one the person confirms (a CSRF-protected form), so a
//! stray link cannot sign anyone out. `post_logout_redirect_uri` must match the client's list exactly.

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum_extra::extract::CookieJar;
use minijinja::context;
use subtle::ConstantTimeEq;

use super::authorize::redirect_with;
use super::params::Params;
use crate::app::SharedState;
use crate::web::pages::{templates, PageError};
use crate::web::session;

pub async fn logout_get(State(state): State<SharedState>, jar: CookieJar, RawQuery(q): RawQuery) -> Response {
    logout(state, jar, q.unwrap_or_default().as_bytes()).await
}

pub async fn logout_post(State(state): State<SharedState>, jar: CookieJar, body: Bytes) -> Response {
    logout(state, jar, &body).await
}

fn bad(message: impl Into<String>) -> Response {
    PageError::new(StatusCode::BAD_REQUEST, "invalid_request", "This sign-out request cannot be used", message)
        .with_hint("You may still be signed in. Close the browser to be sure, or sign out again from your hub.")
        .into_response()
}

async fn logout(state: SharedState, jar: CookieJar, raw: &[u8]) -> Response {
    let params = match Params::parse(raw) {
        Ok(p) => p,
        Err(e) => return bad(e.0),
    };
    // Who is asking: the ID token's audience, or an explicit client_id; both must agree.
    let hint = match params.get("id_token_hint") {
        Some(jwt) => match state.keys.current().verify_own_jwt(jwt) {
            Some(claims) if claims.get("iss").and_then(|v| v.as_str()) == Some(state.config.issuer.as_str()) => {
                Some(claims)
            }
            _ => return bad("The id_token_hint was not issued by this server."),
        },
        None => None,
    };
    let hint_client = hint.as_ref().and_then(|c| c.get("aud")).and_then(|a| a.as_str()).map(str::to_string);
    let client_id = match (params.get("client_id"), hint_client.as_deref()) {
        (Some(a), Some(b)) if a != b => return bad("client_id does not match the id_token_hint."),
        (Some(a), _) => Some(a.to_string()),
        (None, b) => b.map(str::to_string),
    };
    let client = match client_id.as_deref() {
        Some(id) => match state.config.client(id) {
            Some(c) => Some(c),
            None => return bad("The application asking to sign you out is not registered."),
        },
        None => None,
    };
    let return_to = match params.get("post_logout_redirect_uri") {
        Some(uri) => match client {
            Some(c) if c.post_logout_redirect_uris.iter().any(|r| r == uri) => Some(uri.to_string()),
            Some(_) => {
                return bad("The address to return to after signing out is not registered for this application.")
            }
            None => return bad("post_logout_redirect_uri needs id_token_hint or client_id."),
        },
        None => None,
    };

    let current = match session::current(&state, &jar).await {
        Ok(s) => s,
        Err(_) => return PageError::internal().into_response(),
    };
    let finish = |jar: CookieJar| -> Response {
        let jar = jar.add(session::removal(&state, session::SESSION_COOKIE));
        match &return_to {
            Some(uri) => {
                let mut pairs = Vec::new();
                if let Some(s) = params.get("state") {
                    pairs.push(("state", s));
                }
                (jar, redirect_with(uri, &pairs)).into_response()
            }
            None => (jar, templates().render(StatusCode::OK, "logout.html", context! { signed_in => false }))
                .into_response(),
        }
    };
    let Some((browser, user)) = current else {
        return finish(jar);
    };
    let hint_is_for_user = hint.as_ref().and_then(|c| c.get("sub")).and_then(|s| s.as_str()) == Some(user.id.as_str());
    let confirmed = params.get("confirm") == Some("yes")
        && bool::from(params.get("csrf").unwrap_or("").as_bytes().ct_eq(browser.csrf_token.as_bytes()));
    if hint_is_for_user || confirmed {
        if state.store.end_browser_session(&browser.id, state.clock.now()).await.is_err() {
            return PageError::internal().into_response();
        }
        tracing::info!(user = %user.username, "browser session ended by logout");
        return finish(jar);
    }
    let carry: Vec<(String, String)> = ["client_id", "post_logout_redirect_uri", "state", "id_token_hint"]
        .iter()
        .filter_map(|k| params.get(k).map(|v| (k.to_string(), v.to_string())))
        .collect();
    templates().render(
        StatusCode::OK,
        "logout.html",
        context! {
            signed_in => true, username => user.username, csrf => browser.csrf_token,
            action => state.config.endpoint("/logout"), carry => carry,
        },
    )
}
