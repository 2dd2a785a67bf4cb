//! Who gets into the console: people signed in to hubauth whom `[admin]` makes admins or viewers.
//! Someone not signed in is sent through hubauth's own sign-in (any connector, the same single
//! sign-on session the hub uses) and comes back to the page they asked for; someone signed in but
//! not an admin gets a 403 page; every form that changes something carries the session's CSRF
//! token.

use axum::extract::{Query, State};
use axum::http::{header, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum_extra::extract::CookieJar;

use crate::admin::principal::{self, Principal, Refusal};
use crate::app::{AppState, SharedState};
use crate::config::CONSOLE_CLIENT_ID;
use crate::provider::authorize::{self, AuthorizationRequest};
use crate::web::client_address::ClientAddress;
use crate::web::pages::{no_store, PageError};

/// Where the console lives under the issuer.
pub const CONSOLE_PATH: &str = "/admin/";

/// The signed-in admin (or viewer) behind this browser, or the response to send instead: a trip
/// through sign-in, a 403 page, or an error page.
pub async fn require(state: &SharedState, jar: &CookieJar, uri: &Uri, write: bool) -> Result<Principal, Response> {
    match principal::from_session(state, jar).await {
        Ok(Some(p)) if write && !p.role.can_change() => Err(read_only(&p).into_response()),
        Ok(Some(p)) => Ok(p),
        Ok(None) => Err(sign_in_redirect(state, uri)),
        Err(Refusal::NotAdmin { username }) => Err(not_admin(&username).into_response()),
        Err(Refusal::Unavailable(e)) => {
            tracing::error!(error = %e, "could not check a console session");
            Err(PageError::internal().into_response())
        }
        Err(_) => Err(sign_in_redirect(state, uri)),
    }
}

/// Checks a console form's CSRF field against the session's token (constant time).
pub fn csrf_ok(principal: &Principal, sent: Option<&str>) -> bool {
    match (principal.csrf_token(), sent) {
        (Some(expected), Some(sent)) => crate::crypto::secret::equal(expected, sent),
        _ => false,
    }
}

/// The page a forged or stale form gets.
pub fn csrf_refused() -> Response {
    PageError::new(
        StatusCode::FORBIDDEN,
        "csrf",
        "This form cannot be used",
        "The form was not sent by a console page of this session, so nothing was changed.",
    )
    .with_hint("Go back, reload the page and try again.")
    .into_response()
}

fn not_admin(username: &str) -> PageError {
    PageError::new(
        StatusCode::FORBIDDEN,
        "not_admin",
        "This is the hub admins' console",
        format!("You are signed in as {username}, who is not one of this hub's hubauth admins."),
    )
    .with_hint(
        "Admins are named in hubauth's [admin] settings (groups or admin_users). Ask one of them if you need access.",
    )
}

fn read_only(p: &Principal) -> PageError {
    PageError::new(
        StatusCode::FORBIDDEN,
        "read_only",
        "You can look but not change",
        format!("{} has read-only access to the console, so nothing was changed.", p.actor),
    )
}

/// A console path to come back to: only paths under the console, nothing that could lead
/// elsewhere (no scheme, no `//`, no backslash).
fn safe_next(state: &AppState, next: &str) -> Option<String> {
    let base = state.config.path_prefix() + CONSOLE_PATH;
    let ok = next.starts_with(&base)
        && !next.contains("//")
        && !next.contains('\\')
        && next.len() <= 2000
        && !next.chars().any(|c| c.is_control());
    ok.then(|| next.to_owned())
}

fn sign_in_redirect(state: &AppState, uri: &Uri) -> Response {
    let here = uri.path_and_query().map(|p| p.as_str()).unwrap_or(CONSOLE_PATH);
    let mut url = url::Url::parse(&state.config.endpoint("/admin/login")).expect("the issuer is a URL");
    url.query_pairs_mut().append_pair("next", here);
    (StatusCode::SEE_OTHER, no_store(), [(header::LOCATION, url.to_string())]).into_response()
}

#[derive(Debug, serde::Deserialize)]
pub struct LoginQuery {
    next: Option<String>,
}

/// `GET /admin/login?next=…`: starts a hubauth sign-in for the console (or goes straight back
/// when this browser is already signed in as an admin).
pub async fn login(
    State(state): State<SharedState>,
    jar: CookieJar,
    from: ClientAddress,
    Query(q): Query<LoginQuery>,
) -> Response {
    let home = state.config.path_prefix() + CONSOLE_PATH;
    let next = q.next.as_deref().and_then(|n| safe_next(&state, n)).unwrap_or(home);
    match principal::from_session(&state, &jar).await {
        Ok(Some(_)) => return back_to(&state, &next),
        Ok(None) => {}
        Err(Refusal::NotAdmin { username }) => return not_admin(&username).into_response(),
        Err(Refusal::Unavailable(e)) => {
            tracing::error!(error = %e, "could not check a console session");
            return PageError::internal().into_response();
        }
        Err(_) => {}
    }
    let request = AuthorizationRequest {
        client_id: CONSOLE_CLIENT_ID.into(),
        redirect_uri: next,
        scope: "openid".into(),
        state: None,
        nonce: None,
        code_challenge: None,
        prompt_login: false,
        prompt_none: false,
        max_age: None,
        login_hint: None,
        connector: None,
    };
    authorize::start_login(&state, jar, from, &request).await.unwrap_or_else(IntoResponse::into_response)
}

/// Where a console sign-in ends: back on the console page it started from. No code is minted;
/// the browser now has its hubauth session, which is what the console reads.
pub fn back_to(state: &AppState, path: &str) -> Response {
    let origin = url::Url::parse(&state.config.issuer).map(|u| u.origin().ascii_serialization()).unwrap_or_default();
    (StatusCode::SEE_OTHER, no_store(), [(header::LOCATION, format!("{origin}{path}"))]).into_response()
}

/// Whether an authorization request is the console's own sign-in.
pub fn is_console(request: &AuthorizationRequest) -> bool {
    request.client_id == CONSOLE_CLIENT_ID
}
