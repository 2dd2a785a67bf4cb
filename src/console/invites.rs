//! `/admin/invites`: workshop links. The list never shows a link (only its hash is stored); a new
//! invite's link is on the page that answers its creation, once.

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum_extra::extract::CookieJar;
use serde::Serialize;

use super::form::{self, Fields};
use super::{gate, page};
use crate::admin::invites::{self, NewInvite};
use crate::admin::principal::Principal;
use crate::admin::Actor;
use crate::app::SharedState;
use crate::web::pages::PageError;

#[derive(Serialize)]
struct Row {
    id: String,
    note: Option<String>,
    groups: Vec<String>,
    connector: Option<String>,
    uses: i64,
    max_uses: Option<i64>,
    created: String,
    expires: String,
    state: &'static str,
}

#[derive(Serialize)]
struct Draft {
    expires_in: String,
    max_uses: String,
    groups: String,
    connector: String,
    note: String,
}

impl Default for Draft {
    fn default() -> Self {
        Draft {
            expires_in: "7d".into(),
            max_uses: String::new(),
            groups: String::new(),
            connector: String::new(),
            note: String::new(),
        }
    }
}

async fn show(
    state: &SharedState,
    who: &Principal,
    status: StatusCode,
    notice: Option<String>,
    error: Option<String>,
    draft: Draft,
) -> Response {
    let now = state.clock.now();
    let all = match state.store.invites().await {
        Ok(all) => all,
        Err(e) => {
            tracing::error!(error = %e, "could not list invites");
            return PageError::internal().into_response();
        }
    };
    let rows: Vec<Row> = all
        .iter()
        .map(|i| {
            let v = invites::view(i, now);
            Row {
                id: v.id,
                note: v.note,
                groups: v.groups,
                connector: v.connector,
                uses: v.uses,
                max_uses: v.max_uses,
                created: form::time(v.created_at),
                expires: form::time(v.expires_at),
                state: v.state,
            }
        })
        .collect();
    let connectors: Vec<&str> = state.config.connectors.iter().map(|c| c.id()).collect();
    let ctx = minijinja::context! {
        invites => rows,
        connectors => connectors,
        draft => draft,
        notice => notice,
        error => error,
        action => page::path(state, "invites"),
    };
    page::render(state, who, status, "invites", "console/invites.html", ctx)
}

/// `GET /admin/invites`
pub async fn list(State(state): State<SharedState>, jar: CookieJar, uri: Uri, RawQuery(q): RawQuery) -> Response {
    let who = match gate::require(&state, &jar, &uri, false).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    let notice = match Fields::query(q.as_deref()).get("done") {
        Some("revoked") => Some("The invite is revoked: its link no longer lets anyone in.".to_string()),
        _ => None,
    };
    show(&state, &who, StatusCode::OK, notice, None, Draft::default()).await
}

/// `POST /admin/invites`: creates an invite and shows its link, this once.
pub async fn create(State(state): State<SharedState>, jar: CookieJar, uri: Uri, body: Bytes) -> Response {
    let who = match gate::require(&state, &jar, &uri, true).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    let f = Fields::parse(&body);
    if !gate::csrf_ok(&who, f.raw("csrf")) {
        return gate::csrf_refused();
    }
    let draft = Draft {
        expires_in: f.text("expires_in"),
        max_uses: f.text("max_uses"),
        groups: f.text("groups"),
        connector: f.text("connector"),
        note: f.text("note"),
    };
    let new = match new_invite(&f).and_then(|n| invites::validate(&state.config, &n).map(|()| n)) {
        Ok(n) => n,
        Err(m) => return show(&state, &who, StatusCode::BAD_REQUEST, None, Some(m), draft).await,
    };
    match invites::create(state.store.as_ref(), &state.config, &new, &Actor::of(&who), state.clock.now()).await {
        Ok(created) => {
            tracing::info!(invite = %created.id, "invite created through the console");
            let ctx = minijinja::context! {
                id => created.id,
                link => created.link,
                expires => form::time(created.expires_at),
                groups => new.groups,
                max_uses => new.max_uses,
                back => page::path(&state, "invites"),
            };
            page::render(&state, &who, StatusCode::CREATED, "invites", "console/invite_created.html", ctx)
        }
        Err(e) => {
            tracing::error!(error = %e, "could not create an invite");
            let m = "Storage is unavailable, so no invite was made; try again.".to_string();
            show(&state, &who, StatusCode::SERVICE_UNAVAILABLE, None, Some(m), draft).await
        }
    }
}

fn new_invite(f: &Fields) -> Result<NewInvite, String> {
    let text = f.get("expires_in").ok_or("Expires in: say how long the link works, e.g. 7d.")?;
    let expires_in = humantime::parse_duration(text)
        .map_err(|e| format!("Expires in: {text:?} is not a duration like 7d or 12h ({e})."))?;
    let max_uses = match f.get("max_uses") {
        None => None,
        Some(m) => Some(m.parse::<i64>().map_err(|_| format!("Max uses: {m:?} is not a whole number."))?),
    };
    Ok(NewInvite {
        expires_in,
        max_uses,
        groups: form::list(f.get("groups")),
        connector: f.get("connector").map(str::to_owned),
        note: f.get("note").map(str::to_owned),
    })
}

/// `POST /admin/invites/{id}/revoke`
pub async fn revoke(
    State(state): State<SharedState>,
    jar: CookieJar,
    uri: Uri,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let who = match gate::require(&state, &jar, &uri, true).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    if !gate::csrf_ok(&who, Fields::parse(&body).raw("csrf")) {
        return gate::csrf_refused();
    }
    match invites::revoke(state.store.as_ref(), &id, &Actor::of(&who), state.clock.now()).await {
        Ok(true) => form::see_other(format!("{}?done=revoked", page::path(&state, "invites"))),
        Ok(false) => {
            let m = "There is no open invite with this id (revoked already?).".to_string();
            show(&state, &who, StatusCode::NOT_FOUND, None, Some(m), Draft::default()).await
        }
        Err(e) => {
            tracing::error!(error = %e, "could not revoke an invite");
            let m = "Storage is unavailable, so nothing was revoked; try again.".to_string();
            show(&state, &who, StatusCode::SERVICE_UNAVAILABLE, None, Some(m), Draft::default()).await
        }
    }
}
