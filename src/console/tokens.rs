//! `/admin/tokens`: admin API tokens for scripts. The list shows no value (only hashes are
//! stored); a new token's value is on the page that answers its creation, once.

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum_extra::extract::CookieJar;
use serde::Serialize;

use super::form::{self, Fields};
use super::{gate, page};
use crate::admin::principal::{self, Principal};
use crate::admin::Actor;
use crate::app::SharedState;
use crate::web::pages::PageError;

#[derive(Serialize)]
struct Row {
    id: String,
    name: String,
    scope: &'static str,
    state: &'static str,
    created_by: String,
    created: String,
    expires: String,
    last_used: String,
}

#[derive(Serialize, Default)]
struct Draft {
    name: String,
    scope: String,
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
    let all = match state.store.admin_tokens().await {
        Ok(all) => all,
        Err(e) => {
            tracing::error!(error = %e, "could not list admin tokens");
            return PageError::internal().into_response();
        }
    };
    let rows: Vec<Row> = all
        .iter()
        .map(|t| {
            let v = principal::view(t, now);
            Row {
                id: v.id,
                name: v.name,
                scope: v.scope,
                state: v.state,
                created_by: v.created_by,
                created: form::time(v.created_at),
                expires: v.expires_at.map(form::time).unwrap_or_else(|| "never".into()),
                last_used: form::time_opt(v.last_used_at),
            }
        })
        .collect();
    let ctx = minijinja::context! {
        tokens => rows,
        draft => draft,
        notice => notice,
        error => error,
        action => page::path(state, "tokens"),
    };
    page::render(state, who, status, "tokens", "console/tokens.html", ctx)
}

/// `GET /admin/tokens`
pub async fn list(State(state): State<SharedState>, jar: CookieJar, uri: Uri, RawQuery(q): RawQuery) -> Response {
    let who = match gate::require(&state, &jar, &uri, false).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    let notice = match Fields::query(q.as_deref()).get("done") {
        Some("revoked") => Some("The token is revoked: it stops working at once.".to_string()),
        _ => None,
    };
    show(&state, &who, StatusCode::OK, notice, None, Draft::default()).await
}

/// `POST /admin/tokens`: creates a token and shows its value, this once.
pub async fn create(State(state): State<SharedState>, jar: CookieJar, uri: Uri, body: Bytes) -> Response {
    let who = match gate::require(&state, &jar, &uri, true).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    let f = Fields::parse(&body);
    if !gate::csrf_ok(&who, f.raw("csrf")) {
        return gate::csrf_refused();
    }
    let draft = Draft { name: f.text("name"), scope: f.text("scope"), expires_in: f.text("expires_in") };
    let now = state.clock.now();
    let checked = principal::check_new_token(
        f.get("name").unwrap_or_default(),
        f.get("scope").unwrap_or("read"),
        f.get("expires_in"),
        now,
    );
    let (name, scope, expires_at) = match checked {
        Ok(v) => v,
        Err(m) => return show(&state, &who, StatusCode::BAD_REQUEST, None, Some(m), draft).await,
    };
    match principal::create_token(state.store.as_ref(), &name, scope, &Actor::of(&who), now, expires_at).await {
        Ok((token, value)) => {
            tracing::info!(token = %token.id, "admin token created through the console");
            let ctx = minijinja::context! {
                id => token.id,
                name => token.name,
                scope => scope.as_str(),
                expires => expires_at.map(form::time).unwrap_or_else(|| "never".into()),
                value => value,
                back => page::path(&state, "tokens"),
            };
            page::render(&state, &who, StatusCode::CREATED, "tokens", "console/token_created.html", ctx)
        }
        Err(e) => {
            tracing::error!(error = %e, "could not create an admin token");
            let m = "Storage is unavailable, so no token was made; try again.".to_string();
            show(&state, &who, StatusCode::SERVICE_UNAVAILABLE, None, Some(m), draft).await
        }
    }
}

/// `POST /admin/tokens/{id}/revoke`
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
    match principal::revoke_token(state.store.as_ref(), &id, &Actor::of(&who), state.clock.now()).await {
        Ok(true) => form::see_other(format!("{}?done=revoked", page::path(&state, "tokens"))),
        Ok(false) => {
            let m = "There is no live admin token with this id (revoked already?).".to_string();
            show(&state, &who, StatusCode::NOT_FOUND, None, Some(m), Draft::default()).await
        }
        Err(e) => {
            tracing::error!(error = %e, "could not revoke an admin token");
            let m = "Storage is unavailable, so nothing was revoked; try again.".to_string();
            show(&state, &who, StatusCode::SERVICE_UNAVAILABLE, None, Some(m), Draft::default()).await
        }
    }
}
