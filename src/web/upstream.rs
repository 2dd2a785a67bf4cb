//! Logging in at an upstream provider: sending the browser there with a fresh `state`, PKCE
//! verifier and nonce, and handling its return to `/callback/{connector}`.
//!
//! The `state` is stored (hashed) with the pending authorization it belongs to, and taken — once —
//! when the browser comes back; the callback must also come from the browser that started the
//! login (the same binding cookie as the password form) and reach the connector that sent it,
//! both checked before the attempt is spent. Any mismatch is a clear page, never a login.

use axum::extract::{Path, RawQuery, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum_extra::extract::CookieJar;

use super::login::{expired, finish_login, load_pending};
use super::pages::{no_store, PageError};
use crate::app::SharedState;
use crate::connectors::untrusted::printable;
use crate::connectors::{Connector, ConnectorError, ConnectorKind, LoginAttempt, RedirectConnector, UpstreamLogin};
use crate::crypto::random::{random_value, value_hash};
use crate::provider::params::Params;
use crate::store::{PendingAuthorization, UpstreamAttempt, UpstreamRecord};

/// How long the person has at the provider before the attempt lapses.
const ATTEMPT_LIFETIME: i64 = 15 * 60;

pub fn callback_url(state: &SharedState, connector_id: &str) -> String {
    state.config.endpoint(&format!("/callback/{connector_id}"))
}

fn chooser_url(state: &SharedState, pending_id: &str) -> String {
    format!("{}?request={pending_id}", state.config.endpoint("/login"))
}

/// Parks a new attempt and sends the browser to the provider.
pub async fn start(
    state: &SharedState,
    pending: &PendingAuthorization,
    connector: &Connector,
    upstream: &dyn RedirectConnector,
) -> Result<Response, PageError> {
    let now = state.clock.now();
    let attempt = LoginAttempt {
        state: random_value(),
        pkce_verifier: random_value(),
        nonce: random_value(),
        redirect_uri: callback_url(state, &connector.id),
    };
    let url = upstream
        .authorization_url(&attempt)
        .await
        .map_err(|e| upstream_error_page(state, connector, &pending.id, &e))?;
    let record = UpstreamAttempt {
        state_hash: value_hash(&attempt.state),
        pending_id: pending.id.clone(),
        connector_id: connector.id.clone(),
        pkce_verifier: attempt.pkce_verifier,
        nonce: attempt.nonce,
        created_at: now,
        expires_at: (now + ATTEMPT_LIFETIME).min(pending.expires_at),
    };
    state.store.create_upstream_attempt(&record).await.map_err(|e| {
        tracing::error!(error = %e, "could not store an upstream login attempt");
        PageError::internal()
    })?;
    tracing::debug!(connector = %connector.id, "sending the browser to the upstream provider");
    Ok((StatusCode::SEE_OTHER, no_store(), [(header::LOCATION, url)]).into_response())
}

/// `GET /callback/{connector}?code=…&state=…` (or `?error=…&state=…`).
pub async fn callback(
    State(state): State<SharedState>,
    jar: CookieJar,
    Path(connector_id): Path<String>,
    RawQuery(query): RawQuery,
) -> Response {
    match handle_callback(&state, jar, &connector_id, query.unwrap_or_default().as_bytes()).await {
        Ok(r) | Err(r) => r,
    }
}

fn stale_callback() -> PageError {
    PageError::new(
        StatusCode::BAD_REQUEST,
        "upstream_state_unknown",
        "This sign-in has expired or was already used",
        "The provider sent your browser back to hubauth with a sign-in that hubauth does not know, already finished, or that took too long.",
    )
    .with_hint("Go back to your hub and click its sign-in button again.")
}

async fn handle_callback(
    state: &SharedState,
    jar: CookieJar,
    connector_id: &str,
    raw: &[u8],
) -> Result<Response, Response> {
    let params = Params::parse(raw).map_err(|e| PageError::bad_request("invalid_request", e.0).into_response())?;
    let connector = state.connectors.get(connector_id).ok_or_else(|| {
        PageError::bad_request("unknown_connector", format!("There is no sign-in method called {connector_id:?}."))
            .into_response()
    })?;
    let ConnectorKind::Redirect(upstream) = &connector.kind else {
        return Err(PageError::bad_request("unknown_connector", "This sign-in method has no callback.").into_response());
    };
    let sent_state = params.get("state").filter(|s| !s.is_empty() && s.len() <= 512).ok_or_else(|| {
        tracing::warn!(connector = connector_id, "upstream callback without state");
        stale_callback().into_response()
    })?;
    let now = state.clock.now();
    let state_hash = value_hash(sent_state);
    // Checked before it is spent: a leaked `state` presented by another browser, or at another
    // connector's callback, is refused and the real browser's login carries on.
    let attempt = state
        .store
        .upstream_attempt(&state_hash, now)
        .await
        .map_err(|e| {
            tracing::error!(error = %e, "could not read an upstream login attempt");
            PageError::internal().into_response()
        })?
        .ok_or_else(|| {
            tracing::warn!(connector = connector_id, "upstream callback with an unknown, used or expired state");
            stale_callback().into_response()
        })?;
    if attempt.connector_id != connector.id {
        tracing::warn!(connector = connector_id, expected = %attempt.connector_id, "upstream callback on the wrong connector");
        return Err(stale_callback().into_response());
    }
    let (pending, request) = load_pending(state, &jar, Some(&attempt.pending_id)).await.map_err(|e| {
        if e.code == "login_expired" {
            expired().into_response()
        } else {
            e.into_response()
        }
    })?;
    // Now spend it; a concurrent callback with the same state loses here.
    let attempt = match state.store.take_upstream_attempt(&state_hash, now).await {
        Ok(Some(a)) => a,
        Ok(None) => return Err(stale_callback().into_response()),
        Err(e) => {
            tracing::error!(error = %e, "could not spend an upstream login attempt");
            return Err(PageError::internal().into_response());
        }
    };

    if let Some(error) = params.get("error") {
        // Whoever sent the browser here wrote these: made printable and short before any use.
        let (code, description) = (printable(error, 64), printable(params.get("error_description").unwrap_or(""), 200));
        tracing::info!(connector = connector_id, error = ?code, "the provider refused the sign-in");
        let reason = if description.is_empty() { code.clone() } else { format!("{code}: {description}") };
        let e = if error == "access_denied" {
            ConnectorError::Denied(reason)
        } else {
            ConnectorError::Failed(format!("the provider answered {reason}"))
        };
        return Err(upstream_error_page(state, connector, &pending.id, &e).into_response());
    }
    let code = params.get("code").filter(|c| !c.is_empty() && c.len() <= 4096).ok_or_else(|| {
        PageError::bad_request("invalid_request", "The provider sent your browser back without a sign-in code.")
            .into_response()
    })?;
    let login_attempt = LoginAttempt {
        state: sent_state.to_string(),
        pkce_verifier: attempt.pkce_verifier,
        nonce: attempt.nonce,
        redirect_uri: callback_url(state, &connector.id),
    };
    let login = upstream
        .complete(&login_attempt, code, now)
        .await
        .map_err(|e| upstream_error_page(state, connector, &pending.id, &e).into_response())?;
    let record = seal_login(state, &login).map_err(IntoResponse::into_response)?;
    finish_login(state, jar, &pending, &request, connector, login.identity, &login.memberships, &record).await
}

pub use crate::connectors::sealing::token_context;

/// The login's memberships and its tokens, sealed for storage.
pub fn seal_login(state: &SharedState, login: &UpstreamLogin) -> Result<UpstreamRecord, PageError> {
    crate::connectors::sealing::seal_login(state.sealer.as_deref(), login).map_err(|e| {
        tracing::error!(error = %e, "could not seal upstream tokens");
        PageError::internal()
    })
}

/// A page that names the provider, says what went wrong in plain words and what to do next.
pub fn upstream_error_page(
    state: &SharedState,
    connector: &Connector,
    pending_id: &str,
    e: &ConnectorError,
) -> PageError {
    let provider = connector.display_name.as_str();
    // Quoted and bounded: the reason carries the provider's own words.
    tracing::warn!(connector = %connector.id, reason = ?printable(&e.to_string(), 400), "upstream sign-in failed");
    let retry = chooser_url(state, pending_id);
    match e {
        ConnectorError::Denied(reason) => PageError::new(
            StatusCode::FORBIDDEN,
            "upstream_denied",
            format!("Sign-in with {provider} did not go through"),
            format!("{provider} did not let you sign in, or the sign-in was cancelled ({reason})."),
        )
        .with_hint(format!(
            "If you cancelled by mistake, try again. If {provider} refused you, check that you used the right account, or choose another way to sign in."
        )),
        ConnectorError::RateLimited { retry_after, .. } => PageError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "upstream_rate_limited",
            format!("{provider} is busy right now"),
            format!("{provider} is limiting how often hubauth may ask it about accounts, so your sign-in could not be completed."),
        )
        .with_hint(match retry_after {
            Some(s) if *s < 3600 => format!("Try again in about {} minute(s).", s.div_ceil(60).max(1)),
            _ => "Try again later.".to_string(),
        }),
        ConnectorError::SessionEnded(reason) | ConnectorError::Failed(reason) | ConnectorError::TimedOut(reason) => PageError::new(
            StatusCode::BAD_GATEWAY,
            "upstream_error",
            format!("{provider} is not answering properly"),
            format!("hubauth could not complete your sign-in with {provider}: {reason}."),
        )
        .with_hint(format!(
            "Try again in a few minutes, or choose another way to sign in. If it keeps failing, tell the hub's administrators that {provider} sign-in fails."
        )),
    }
    .with_retry(retry)
}
