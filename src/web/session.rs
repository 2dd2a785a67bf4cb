//! The broker's own browser session (single sign-on across clients) and the short-lived cookie
//! that binds a pending login to the browser that started it.

use axum_extra::extract::cookie::{Cookie, CookieJar, SameSite};

use crate::app::AppState;
use crate::crypto::random::value_hash;
use crate::store::{BrowserSession, User};

pub const SESSION_COOKIE: &str = "hubauth_session";
/// Binds a login in progress to this browser, so a login form cannot be completed from elsewhere.
pub const LOGIN_COOKIE: &str = "hubauth_login";

/// `HttpOnly`, `SameSite=Lax`, scoped to the issuer's path, and `Secure` unless the issuer is
/// plain http on loopback (where browsers would drop a Secure cookie).
pub fn cookie(state: &AppState, name: &'static str, value: String, max_age_secs: i64) -> Cookie<'static> {
    let mut path = state.config.path_prefix();
    path.push('/');
    Cookie::build((name, value))
        .http_only(true)
        .same_site(SameSite::Lax)
        .secure(state.config.secure_cookies())
        .path(path)
        .max_age(time::Duration::seconds(max_age_secs))
        .build()
}

pub fn removal(state: &AppState, name: &'static str) -> Cookie<'static> {
    cookie(state, name, String::new(), 0)
}

/// The live session of this browser, with its user, if any.
pub async fn current(
    state: &AppState,
    jar: &CookieJar,
) -> Result<Option<(BrowserSession, User)>, crate::store::StoreError> {
    let Some(token) = jar.get(SESSION_COOKIE).map(|c| c.value().to_string()) else {
        return Ok(None);
    };
    if token.is_empty() || token.len() > 200 {
        return Ok(None);
    }
    let now = state.clock.now();
    let Some(session) = state.store.browser_session(&value_hash(&token), now).await? else {
        return Ok(None);
    };
    let Some(user) = state.store.user_by_id(&session.user_id).await? else {
        return Ok(None);
    };
    Ok(Some((session, user)))
}
