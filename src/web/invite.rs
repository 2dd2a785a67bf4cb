//! Workshop invites: `GET /invite/{token}` checks the link, remembers it in this browser (a
//! cookie) and sends the person on to the hub; the next sign-in in this browser, through any
//! connector the invite allows, admits them with the invite's groups (see `login::finish_login`).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum_extra::extract::CookieJar;
use minijinja::context;

use super::pages::{templates, PageError};
use super::session;
use crate::app::{AppState, SharedState};
use crate::crypto::random::value_hash;
use crate::store::Invite;

pub const INVITE_COOKIE: &str = "hubauth_invite";
/// The cookie outlives a sign-in attempt or two, not the workshop.
const COOKIE_MAX_AGE: i64 = 24 * 3600;

fn closed_page(reason: &str) -> PageError {
    PageError::new(
        StatusCode::GONE,
        "invite_closed",
        "This invitation cannot be used any more",
        format!("The invitation link {reason}."),
    )
    .with_hint("Ask whoever sent you the link for a new one.")
}

/// Why an invite cannot admit anyone now, in words; `None` if it can.
pub fn closed_reason(invite: &Invite, now: i64) -> Option<&'static str> {
    if invite.revoked_at.is_some() {
        Some("was withdrawn")
    } else if invite.expires_at <= now {
        Some("has expired")
    } else if invite.max_uses.is_some_and(|m| invite.uses >= m) {
        Some("has been used by as many people as it allows")
    } else {
        None
    }
}

pub async fn open(State(state): State<SharedState>, jar: CookieJar, Path(token): Path<String>) -> Response {
    if token.is_empty() || token.len() > 200 {
        return closed_page("is not valid").into_response();
    }
    let invite = match state.store.invite_by_token(&value_hash(&token)).await {
        Ok(Some(i)) => i,
        Ok(None) => return closed_page("is not valid").into_response(),
        Err(e) => {
            tracing::error!(error = %e, "could not read an invite");
            return PageError::internal().into_response();
        }
    };
    let now = state.clock.now();
    if let Some(reason) = closed_reason(&invite, now) {
        return closed_page(reason).into_response();
    }
    let max_age = (invite.expires_at - now).clamp(60, COOKIE_MAX_AGE);
    let jar = jar.add(session::cookie(&state, INVITE_COOKIE, token, max_age));
    let connector_name =
        invite.connector_id.as_deref().and_then(|id| state.connectors.get(id)).map(|c| c.display_name.clone());
    let page = templates().render(
        StatusCode::OK,
        "invite.html",
        context! {
            note => invite.note,
            groups => invite.groups,
            connector_name => connector_name,
            continue_url => state.config.invites.continue_url,
        },
    );
    (jar, page).into_response()
}

/// The invite this browser carries, if it is still open (and allows `connector_id`).
pub async fn carried(state: &AppState, jar: &CookieJar, connector_id: &str) -> Option<Invite> {
    let token = jar.get(INVITE_COOKIE)?.value().to_string();
    if token.is_empty() || token.len() > 200 {
        return None;
    }
    let invite = state.store.invite_by_token(&value_hash(&token)).await.ok().flatten()?;
    let now = state.clock.now();
    if closed_reason(&invite, now).is_some() {
        return None;
    }
    if invite.connector_id.as_deref().is_some_and(|c| c != connector_id) {
        return None;
    }
    Some(invite)
}
