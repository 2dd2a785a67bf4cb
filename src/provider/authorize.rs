//! The authorization endpoint (RFC 6749 §4.1.1, OpenID Connect Core §3.1.2).
//!
//! Order matters: until the client and its exact redirect URI are known, errors are shown as a
//! page, never redirected (RFC 6749 §4.1.2.1) — otherwise hubauth would be an open redirector.

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum_extra::extract::CookieJar;
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;

use super::params::{truncate, Params};
use super::{scope, ErrorCode};
use crate::app::SharedState;
use crate::config::ClientConfig;
use crate::crypto::random::{bearer_value, random_value, token_key, value_hash};
use crate::policy::live::{ensure_current, Current};
use crate::store::{AuthorizationCode, PendingAdmission, PendingAuthorization, User};
use crate::web::client_address::ClientAddress;
use crate::web::pages::{no_store, PageError};
use crate::web::session;

/// A validated authorization request, kept while the person logs in and inside the code.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AuthorizationRequest {
    pub client_id: String,
    pub redirect_uri: String,
    pub scope: String,
    pub state: Option<String>,
    pub nonce: Option<String>,
    /// S256 challenge; hubauth never accepts `plain`.
    pub code_challenge: Option<String>,
    pub prompt_login: bool,
    pub prompt_none: bool,
    pub max_age: Option<i64>,
    pub login_hint: Option<String>,
    /// hubauth extension: the connector to log in with, skipping the chooser.
    #[serde(default)]
    pub connector: Option<String>,
}

/// Where and how to send an error back to a client whose redirect URI has been verified.
pub struct ErrorRedirect<'a> {
    pub redirect_uri: &'a str,
    pub state: Option<&'a str>,
    pub issuer: &'a str,
}

impl ErrorRedirect<'_> {
    pub fn send(&self, code: ErrorCode, description: &str) -> Response {
        let mut pairs = vec![("error", code.as_str()), ("error_description", description)];
        if let Some(s) = self.state {
            pairs.push(("state", s));
        }
        pairs.push(("iss", self.issuer));
        redirect_with(self.redirect_uri, &pairs)
    }
}

/// 303 to `uri` with `pairs` appended to its query (keeping any query it already has).
pub fn redirect_with(uri: &str, pairs: &[(&str, &str)]) -> Response {
    let location = match url::Url::parse(uri) {
        Ok(mut url) => {
            // Only touch the query when adding to it: `query_pairs_mut` would leave a bare "?".
            if !pairs.is_empty() {
                url.query_pairs_mut().extend_pairs(pairs);
            }
            url.to_string()
        }
        Err(_) => return PageError::internal().into_response(),
    };
    (StatusCode::SEE_OTHER, no_store(), [(header::LOCATION, location)]).into_response()
}

pub fn is_pkce_value(s: &str) -> bool {
    (43..=128).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b))
}

fn too_long(value: Option<&str>, max: usize) -> bool {
    value.is_some_and(|v| v.len() > max)
}

/// Checks everything after client and redirect URI; errors here go back to the client.
fn validate(
    params: &Params,
    client: &ClientConfig,
    redirect_uri: &str,
) -> Result<AuthorizationRequest, (ErrorCode, String)> {
    let bad = |m: &str| Err((ErrorCode::InvalidRequest, m.to_string()));
    if params.contains("request") {
        return Err((ErrorCode::RequestNotSupported, "request objects are not supported".into()));
    }
    if params.contains("request_uri") {
        return Err((ErrorCode::RequestUriNotSupported, "request_uri is not supported".into()));
    }
    match params.get("response_type") {
        None => return bad("response_type is required"),
        Some("code") => {}
        Some(_) => return Err((ErrorCode::UnsupportedResponseType, "only response_type=code is supported".into())),
    }
    if params.get("response_mode").is_some_and(|m| m != "query") {
        return bad("only response_mode=query is supported");
    }
    let requested_scope = params.get("scope").unwrap_or("");
    if !scope::has(requested_scope, "openid") {
        return Err((
            ErrorCode::InvalidScope,
            "scope must include `openid` (hubauth is an OpenID Connect provider)".into(),
        ));
    }
    let scope = scope::normalize(requested_scope);

    let code_challenge = match (params.get("code_challenge"), params.get("code_challenge_method")) {
        (None, None) => None,
        (None, Some(_)) => return bad("code_challenge_method was sent without code_challenge"),
        (Some(_), None) | (Some(_), Some("plain")) => {
            return bad("code_challenge_method must be S256 (plain is not allowed)")
        }
        (Some(c), Some("S256")) => {
            if c.len() != 43 || !is_pkce_value(c) {
                return bad("code_challenge must be the 43-character base64url SHA-256 of the code_verifier");
            }
            Some(c.to_string())
        }
        (Some(_), Some(_)) => return bad("unsupported code_challenge_method; use S256"),
    };
    if client.is_public() && code_challenge.is_none() {
        return bad("PKCE is required for this client: send code_challenge with code_challenge_method=S256");
    }

    let mut prompt_login = false;
    let mut prompt_none = false;
    if let Some(prompt) = params.get("prompt") {
        for p in prompt.split(' ').filter(|p| !p.is_empty()) {
            match p {
                "none" => prompt_none = true,
                "login" | "select_account" => prompt_login = true,
                "consent" => {} // first-party clients: no consent screen to show
                other => return Err((ErrorCode::InvalidRequest, format!("unsupported prompt value {other:?}"))),
            }
        }
        if prompt_none && prompt.split(' ').filter(|p| !p.is_empty()).count() > 1 {
            return bad("prompt=none cannot be combined with other prompt values");
        }
    }
    let max_age = match params.get("max_age") {
        None => None,
        Some(v) => match v.parse::<i64>() {
            Ok(n) if n >= 0 => Some(n),
            _ => return bad("max_age must be a non-negative integer"),
        },
    };
    if too_long(params.get("state"), 2048)
        || too_long(params.get("nonce"), 512)
        || too_long(params.get("login_hint"), 256)
    {
        return bad("state, nonce or login_hint is too long");
    }
    Ok(AuthorizationRequest {
        client_id: client.id.clone(),
        redirect_uri: redirect_uri.to_string(),
        scope,
        state: params.get("state").map(str::to_string),
        nonce: params.get("nonce").map(str::to_string),
        code_challenge,
        prompt_login,
        prompt_none,
        max_age,
        login_hint: params.get("login_hint").map(str::to_string),
        connector: params.get("connector").map(str::to_string),
    })
}

pub async fn authorize_get(
    State(state): State<SharedState>,
    jar: CookieJar,
    from: ClientAddress,
    RawQuery(query): RawQuery,
) -> Response {
    authorize(state, jar, from, query.unwrap_or_default().as_bytes()).await
}

pub async fn authorize_post(
    State(state): State<SharedState>,
    jar: CookieJar,
    from: ClientAddress,
    body: Bytes,
) -> Response {
    authorize(state, jar, from, &body).await
}

async fn authorize(state: SharedState, jar: CookieJar, from: ClientAddress, raw: &[u8]) -> Response {
    let params = match Params::parse(raw) {
        Ok(p) => p,
        Err(e) => return PageError::bad_request("invalid_request", e.0).into_response(),
    };
    let Some(client_id) = params.get("client_id") else {
        return PageError::bad_request(
            "invalid_request",
            "The request does not say which application is asking (client_id is missing).",
        )
        .into_response();
    };
    let Some(client) = state.config.client(client_id) else {
        return PageError::bad_request(
            "invalid_client",
            "The application that sent you here is not registered with hubauth.",
        )
        .into_response();
    };
    let Some(redirect_uri) = params.get("redirect_uri") else {
        return PageError::bad_request(
            "invalid_request",
            "The request does not say where to return to (redirect_uri is missing).",
        )
        .into_response();
    };
    // Exact string comparison: no prefix, no normalisation (RFC 9700 §4.1.3).
    if !client.redirect_uris.iter().any(|r| r == redirect_uri) {
        tracing::warn!(client_id, redirect_uri, "authorization request with an unregistered redirect_uri");
        return PageError::bad_request(
            "invalid_redirect_uri",
            format!("The return address is not registered for {}. Nothing was sent to it.", client.name),
        )
        .into_response();
    }
    let issuer = state.config.issuer.clone();
    let back = ErrorRedirect { redirect_uri, state: params.get("state"), issuer: &issuer };
    let request = match validate(&params, client, redirect_uri) {
        Ok(r) => r,
        Err((code, description)) => return back.send(code, &description),
    };
    if let Some(id) = request.connector.as_deref() {
        if state.connectors.get(id).is_none() {
            return back.send(ErrorCode::InvalidRequest, &format!("there is no connector {:?}", truncate(id, 64)));
        }
    }

    let now = state.clock.now();
    match session::current(&state, &jar).await {
        Ok(Some((browser, user))) => {
            let fresh = request.max_age.is_none_or(|m| now - browser.auth_time <= m);
            if fresh && !request.prompt_login {
                // Single sign-on only for someone still admitted; a withdrawn person signs in anew
                // (their sessions have just been ended) and meets the policy there.
                match ensure_current(&state, &user).await {
                    Ok(Current::Admitted(user)) => {
                        return issue_code(&state, &request, &user, Some(&browser.id), browser.auth_time)
                            .await
                            .unwrap_or_else(IntoResponse::into_response);
                    }
                    Ok(Current::Revoked { .. }) => {}
                    Err(e) => {
                        tracing::error!(error = %e, "could not re-check the signed-in user");
                        return back.send(ErrorCode::ServerError, "hubauth could not read its session store");
                    }
                }
            }
        }
        Ok(None) => {}
        Err(e) => {
            tracing::error!(error = %e, "could not read the browser session");
            return back.send(ErrorCode::ServerError, "hubauth could not read its session store");
        }
    }
    if request.prompt_none {
        return back.send(ErrorCode::LoginRequired, "the user is not signed in to hubauth");
    }
    start_login(&state, jar, from, &request).await.unwrap_or_else(IntoResponse::into_response)
}

/// Parks the request and sends the browser to the login page, bound to this browser by a cookie.
pub(crate) async fn start_login(
    state: &SharedState,
    jar: CookieJar,
    from: ClientAddress,
    request: &AuthorizationRequest,
) -> Result<Response, PageError> {
    let now = state.clock.now();
    // One binding per browser (kept while it has sign-ins waiting): its pending sign-ins can be
    // counted, and two tabs signing in at once both work.
    let binding = match jar.get(session::LOGIN_COOKIE).map(|c| c.value()) {
        Some(v) if is_binding_value(v) => v.to_string(),
        _ => random_value(),
    };
    let pending = PendingAuthorization {
        id: random_value(),
        request_json: serde_json::to_string(request).map_err(|_| PageError::internal())?,
        browser_binding_hash: value_hash(&binding),
        csrf_token: random_value(),
        client_address: from.key(),
        created_at: now,
        expires_at: now + state.config.session.login_timeout.as_secs() as i64,
    };
    let limits = state.config.session.pending_limits();
    match state.store.create_pending_authorization(&pending, limits).await {
        Ok(PendingAdmission::Stored) => {}
        Ok(PendingAdmission::AddressFull) => {
            tracing::warn!(address = %pending.client_address, "sign-in refused: too many pending from one address");
            return Err(too_many_pending(StatusCode::TOO_MANY_REQUESTS, "from your network"));
        }
        Ok(PendingAdmission::Full) => {
            tracing::warn!("sign-in refused: the pending sign-ins are at [session] max_pending");
            return Err(too_many_pending(StatusCode::SERVICE_UNAVAILABLE, "at hubauth"));
        }
        Err(e) => {
            tracing::error!(error = %e, "could not store a pending authorization");
            return Err(PageError::internal());
        }
    }
    let max_age = state.config.session.login_timeout.as_secs() as i64;
    let jar = jar.add(session::cookie(state, session::LOGIN_COOKIE, binding, max_age));
    let location = format!("{}?request={}", state.config.endpoint("/login"), pending.id);
    Ok((StatusCode::SEE_OTHER, jar, no_store(), [(header::LOCATION, location)]).into_response())
}

/// A binding cookie as [`random_value`] makes them (anything else is replaced).
fn is_binding_value(v: &str) -> bool {
    v.len() == 43 && v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn too_many_pending(status: StatusCode, place: &str) -> PageError {
    PageError::new(
        status,
        "too_many_pending_logins",
        "Too many sign-ins are in progress",
        format!("There are too many unfinished sign-ins {place} right now, so this one was not started."),
    )
    .with_hint("Finish or close sign-in pages you already have open, or try again in a few minutes.")
}

/// True when this browser's binding cookie matches the pending request (constant time).
pub fn binding_matches(jar: &CookieJar, pending: &PendingAuthorization) -> bool {
    match jar.get(session::LOGIN_COOKIE) {
        Some(c) => value_hash(c.value()).as_bytes().ct_eq(pending.browser_binding_hash.as_bytes()).into(),
        None => false,
    }
}

/// Mints a single-use code for `user` and sends the browser back to the client (RFC 9207 `iss`).
pub async fn issue_code(
    state: &SharedState,
    request: &AuthorizationRequest,
    user: &User,
    session_id: Option<&str>,
    auth_time: i64,
) -> Result<Response, PageError> {
    // The console's own sign-in ends on the console page it came from: no code, no client.
    if crate::console::gate::is_console(request) {
        return Ok(crate::console::gate::back_to(state, &request.redirect_uri));
    }
    let now = state.clock.now();
    let code = bearer_value("hac");
    let record = AuthorizationCode {
        code_hash: token_key(&code),
        client_id: request.client_id.clone(),
        user_id: user.id.clone(),
        session_id: session_id.map(str::to_string),
        request_json: serde_json::to_string(request).map_err(|_| PageError::internal())?,
        auth_time,
        created_at: now,
        expires_at: now + state.config.tokens.authorization_code_lifetime.as_secs() as i64,
    };
    state.store.create_authorization_code(&record).await.map_err(|e| {
        tracing::error!(error = %e, "could not store an authorization code");
        PageError::internal()
    })?;
    tracing::info!(client_id = %request.client_id, user = %user.username, "authorization code issued");
    let mut pairs = vec![("code", code.as_str())];
    if let Some(s) = &request.state {
        pairs.push(("state", s));
    }
    pairs.push(("iss", &state.config.issuer));
    Ok(redirect_with(&request.redirect_uri, &pairs))
}
