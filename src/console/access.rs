//! `/admin/access`: the runtime allow-list. Admins add people (by username, verified e-mail or
//! a connector's login) with groups, a note and an expiry, and remove them; every change is
//! audited with the admin's name and the request id (through [`crate::admin::access`]).

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{StatusCode, Uri};
use axum::response::Response;
use axum_extra::extract::CookieJar;
use serde::Serialize;

use super::form::{self, Fields};
use super::{gate, page};
use crate::admin::access::{self, NewEntry};
use crate::admin::principal::Principal;
use crate::app::SharedState;
use crate::web::pages::PageError;

#[derive(Serialize)]
struct Row {
    id: String,
    kind: &'static str,
    value: String,
    connector: Option<String>,
    groups: Vec<String>,
    note: Option<String>,
    expires: String,
    state: &'static str,
    created_by: String,
    created: String,
}

/// What the add form held, to show it again after a mistake.
#[derive(Serialize, Default)]
struct Draft {
    kind: String,
    value: String,
    connector: String,
    groups: String,
    note: String,
    expires_in: String,
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
    let entries = match state.store.access_entries().await {
        Ok(e) => e,
        Err(e) => {
            tracing::error!(error = %e, "could not list the allow-list");
            return axum::response::IntoResponse::into_response(PageError::internal());
        }
    };
    let rows: Vec<Row> = entries
        .iter()
        .map(|e| {
            let v = access::view(e, now);
            Row {
                id: v.id,
                kind: v.kind,
                value: v.value,
                connector: v.connector,
                groups: v.groups,
                note: v.note,
                expires: v.expires_at.map(form::time).unwrap_or_else(|| "never".into()),
                state: v.state,
                created_by: v.created_by,
                created: form::time(v.created_at),
            }
        })
        .collect();
    let connectors: Vec<&str> = state.config.connectors.iter().map(|c| c.id()).collect();
    let ctx = minijinja::context! {
        entries => rows,
        hub_is_open => access::hub_is_open(&state.config),
        connectors => connectors,
        draft => draft,
        notice => notice,
        error => error,
        action => page::path(state, "access"),
    };
    page::render(state, who, status, "access", "console/access.html", ctx)
}

/// `GET /admin/access`
pub async fn list(State(state): State<SharedState>, jar: CookieJar, uri: Uri, RawQuery(q): RawQuery) -> Response {
    let who = match gate::require(&state, &jar, &uri, false).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    let notice = match Fields::query(q.as_deref()).get("done") {
        Some("added") => Some("Added to the allow-list.".to_string()),
        Some("replaced") => Some("The allow-list entry for this person was replaced.".to_string()),
        Some("removed") => Some(
            "Removed from the allow-list: the person loses access at their next re-check unless another rule admits them."
                .to_string(),
        ),
        _ => None,
    };
    show(&state, &who, StatusCode::OK, notice, None, Draft::default()).await
}

/// `POST /admin/access`: adds (or replaces) an entry.
pub async fn add(State(state): State<SharedState>, jar: CookieJar, uri: Uri, body: Bytes) -> Response {
    let who = match gate::require(&state, &jar, &uri, true).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    let f = Fields::parse(&body);
    if !gate::csrf_ok(&who, f.raw("csrf")) {
        return gate::csrf_refused();
    }
    let draft = Draft {
        kind: f.text("kind"),
        value: f.text("value"),
        connector: f.text("connector"),
        groups: f.text("groups"),
        note: f.text("note"),
        expires_in: f.text("expires_in"),
    };
    let new = match new_entry(&f) {
        Ok(n) => n,
        Err(m) => return show(&state, &who, StatusCode::BAD_REQUEST, None, Some(m), draft).await,
    };
    let now = state.clock.now();
    let entry = match access::entry(&state.config, &new, &who.actor, now) {
        Ok(e) => e,
        Err(m) => return show(&state, &who, StatusCode::BAD_REQUEST, None, Some(m), draft).await,
    };
    match access::allow(state.store.as_ref(), &entry, crate::web::request_id::current()).await {
        Ok((stored, replaced)) => {
            tracing::info!(entry = %stored.id, replaced, "allow-list entry stored through the console");
            let done = if replaced { "replaced" } else { "added" };
            form::see_other(format!("{}?done={done}", page::path(&state, "access")))
        }
        Err(e) => {
            tracing::error!(error = %e, "could not store an allow-list entry");
            let m = "Storage is unavailable, so nothing was added; try again.".to_string();
            show(&state, &who, StatusCode::SERVICE_UNAVAILABLE, None, Some(m), draft).await
        }
    }
}

/// The entry the add form asks for (its own checks; [`access::entry`] does the rest).
fn new_entry(f: &Fields) -> Result<NewEntry, String> {
    let value = f.get("value").ok_or("Say who: a username, an e-mail address or a login.")?;
    let mut new =
        NewEntry { groups: form::list(f.get("groups")), note: f.get("note").map(str::to_owned), ..Default::default() };
    match f.get("kind").unwrap_or("username") {
        "username" => new.username = Some(value.to_owned()),
        "email" => new.email = Some(value.to_owned()),
        "login" => {
            let connector = f.get("connector").ok_or("A login needs its connector: choose one.")?;
            new.login = Some(format!("{connector}:{value}"));
        }
        other => return Err(format!("{other:?} is not username, email or login.")),
    }
    if let Some(text) = f.get("expires_in") {
        let d = humantime::parse_duration(text)
            .map_err(|e| format!("Expires in: {text:?} is not a duration like 30d or 12h ({e}).",))?;
        new.expires_in = Some(d);
    }
    Ok(new)
}

/// `POST /admin/access/{id}/delete`: removes an entry.
pub async fn remove(
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
    let now = state.clock.now();
    match access::deny(state.store.as_ref(), &id, &who.actor, now, crate::web::request_id::current()).await {
        Ok(Some(removed)) => {
            tracing::info!(entry = %removed.id, "allow-list entry removed through the console");
            form::see_other(format!("{}?done=removed", page::path(&state, "access")))
        }
        Ok(None) => {
            let m = "There is no allow-list entry with this id (removed already?).".to_string();
            show(&state, &who, StatusCode::NOT_FOUND, None, Some(m), Draft::default()).await
        }
        Err(e) => {
            tracing::error!(error = %e, "could not remove an allow-list entry");
            let m = "Storage is unavailable, so nothing was removed; try again.".to_string();
            show(&state, &who, StatusCode::SERVICE_UNAVAILABLE, None, Some(m), Draft::default()).await
        }
    }
}
