//! The admin API under `/admin/api`, for hub admins' scripts: Bearer tokens from `[admin]
//! api_tokens`, compared in constant time. Without configured tokens the API is off (403).
//!
//! - `GET /admin/api/invites` — every invite (never its secret link)
//! - `POST /admin/api/invites` — JSON `{"expires_in": "7d", "max_uses": 40, "groups": [...],
//!   "connector": "github", "note": "..."}` → `{"id", "link", "expires_at"}` (the link is shown once)
//! - `DELETE /admin/api/invites/{id}` — revoke
//! - `GET /admin/api/access` — the runtime allow-list (expired entries included, with `state`)
//! - `POST /admin/api/access` — JSON `{"username": "alice"}`, `{"email": "a@example.org"}` or
//!   `{"login": "github:octocat"}`, with optional `"groups": [...]`, `"note"`, `"expires_in":
//!   "30d"` → 201 with the entry (200 when it replaced the entry for the same person)
//! - `DELETE /admin/api/access/{id}` — remove an entry (the person loses access at their next
//!   re-check unless another rule admits them)
//! - `GET /admin/api/report/activity?inactive_since=90d&format=json|csv` — the activity report
//!   (JSON by default; its `notes` say why storage columns are missing, if they are)

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;

use super::access::EntryView;
use super::access::{self, NewEntry};
use super::invites::{self, CreatedInvite, InviteView, NewInvite};
use super::principal::TokenView;
use super::principal::{self, Principal};
use super::report::Report;
use super::Actor;
use crate::app::SharedState;

/// Every error answer: what went wrong, in a sentence.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    pub error: String,
}

/// A new token: the stored record as listed, and its value (shown once).
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct CreatedToken {
    #[serde(flatten)]
    pub record: principal::TokenView,
    /// The Bearer value; only its hash is kept.
    #[serde(rename = "token")]
    pub value: String,
}

fn error(status: StatusCode, message: &str) -> Response {
    (status, Json(ErrorBody { error: message.into() })).into_response()
}

/// Who is asking, if they may: `write` asks for the admin role (a read token or a viewer is
/// refused), else the viewer role is enough.
async fn allowed(state: &SharedState, headers: &HeaderMap, write: bool) -> Result<Principal, Response> {
    principal::for_api(state, headers, write).await.map_err(|r| r.api_response())
}

#[utoipa::path(
    get,
    path = "/admin/api/invites",
    tag = "invites",
    summary = "Every invite (never its link)",
    responses(
        (status = 200, description = "Every invite", body = [InviteView]),
        (status = 401, description = "No valid admin token or session", body = ErrorBody),
        (status = 403, description = "Signed in, but not an admin", body = ErrorBody),
        (status = 503, description = "Storage is unavailable", body = ErrorBody)
    ),
    security(("bearer" = []), ("session" = []))
)]
pub async fn list_invites(State(state): State<SharedState>, headers: HeaderMap) -> Response {
    if let Err(r) = allowed(&state, &headers, false).await {
        return r;
    }
    let now = state.clock.now();
    match state.store.invites().await {
        Ok(all) => Json(all.iter().map(|i| invites::view(i, now)).collect::<Vec<_>>()).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "could not list invites");
            error(StatusCode::SERVICE_UNAVAILABLE, "storage is unavailable; try again")
        }
    }
}

#[utoipa::path(
    post,
    path = "/admin/api/invites",
    tag = "invites",
    summary = "Create an invite; its link is shown once",
    request_body(content = NewInvite, content_type = "application/json"),
    responses(
        (status = 201, description = "The invite and its link", body = CreatedInvite),
        (status = 400, description = "The request says what is wrong", body = ErrorBody),
        (status = 401, description = "No valid admin token or session (or no CSRF token with a session)", body = ErrorBody),
        (status = 403, description = "Not an admin, or a read-only credential", body = ErrorBody),
        (status = 503, description = "Storage is unavailable", body = ErrorBody)
    ),
    security(("bearer" = []), ("session" = []))
)]
pub async fn create_invite(State(state): State<SharedState>, headers: HeaderMap, body: Bytes) -> Response {
    let who = match allowed(&state, &headers, true).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    let new: NewInvite = match serde_json::from_slice(&body) {
        Ok(n) => n,
        Err(e) => return error(StatusCode::BAD_REQUEST, &format!("invalid invite: {e}")),
    };
    if let Err(m) = invites::validate(&state.config, &new) {
        return error(StatusCode::BAD_REQUEST, &m);
    }
    match invites::create(state.store.as_ref(), &state.config, &new, &Actor::of(&who), state.clock.now()).await {
        Ok(created) => {
            tracing::info!(invite = %created.id, "invite created through the admin API");
            (StatusCode::CREATED, Json(created)).into_response()
        }
        Err(e) => {
            tracing::error!(error = %e, "could not create an invite");
            error(StatusCode::SERVICE_UNAVAILABLE, "storage is unavailable; try again")
        }
    }
}

#[utoipa::path(
    delete,
    path = "/admin/api/invites/{id}",
    tag = "invites",
    summary = "Revoke an invite",
    params(("id" = String, Path, description = "The invite's id")),
    responses(
        (status = 204, description = "Revoked"),
        (status = 404, description = "No open invite with this id", body = ErrorBody),
        (status = 401, description = "No valid admin token or session (or no CSRF token with a session)", body = ErrorBody),
        (status = 403, description = "Not an admin, or a read-only credential", body = ErrorBody),
        (status = 503, description = "Storage is unavailable", body = ErrorBody)
    ),
    security(("bearer" = []), ("session" = []))
)]
pub async fn revoke_invite(State(state): State<SharedState>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    let who = match allowed(&state, &headers, true).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    match invites::revoke(state.store.as_ref(), &id, &Actor::of(&who), state.clock.now()).await {
        Ok(true) => StatusCode::NO_CONTENT.into_response(),
        Ok(false) => error(StatusCode::NOT_FOUND, "no open invite with this id"),
        Err(e) => {
            tracing::error!(error = %e, "could not revoke an invite");
            error(StatusCode::SERVICE_UNAVAILABLE, "storage is unavailable; try again")
        }
    }
}

fn storage_unavailable(what: &str, e: impl std::fmt::Display) -> Response {
    tracing::error!(error = %e, "could not {what}");
    error(StatusCode::SERVICE_UNAVAILABLE, "storage is unavailable; try again")
}

#[utoipa::path(
    get,
    path = "/admin/api/access",
    tag = "access",
    summary = "The runtime allow-list, expired entries included",
    responses(
        (status = 200, description = "Every entry", body = [EntryView]),
        (status = 401, description = "No valid admin token or session", body = ErrorBody),
        (status = 403, description = "Signed in, but not an admin", body = ErrorBody),
        (status = 503, description = "Storage is unavailable", body = ErrorBody)
    ),
    security(("bearer" = []), ("session" = []))
)]
pub async fn list_access(State(state): State<SharedState>, headers: HeaderMap) -> Response {
    if let Err(r) = allowed(&state, &headers, false).await {
        return r;
    }
    let now = state.clock.now();
    match state.store.access_entries().await {
        Ok(all) => Json(all.iter().map(|e| access::view(e, now)).collect::<Vec<_>>()).into_response(),
        Err(e) => storage_unavailable("list the allow-list", e),
    }
}

#[utoipa::path(
    post,
    path = "/admin/api/access",
    tag = "access",
    summary = "Add (or replace) an allow-list entry",
    request_body(content = NewEntry, content_type = "application/json"),
    responses(
        (status = 201, description = "Added", body = EntryView),
        (status = 200, description = "Replaced the entry for the same person", body = EntryView),
        (status = 400, description = "The request says what is wrong", body = ErrorBody),
        (status = 401, description = "No valid admin token or session (or no CSRF token with a session)", body = ErrorBody),
        (status = 403, description = "Not an admin, or a read-only credential", body = ErrorBody),
        (status = 503, description = "Storage is unavailable", body = ErrorBody)
    ),
    security(("bearer" = []), ("session" = []))
)]
pub async fn allow_access(State(state): State<SharedState>, headers: HeaderMap, body: Bytes) -> Response {
    let who = match allowed(&state, &headers, true).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    let new: NewEntry = match serde_json::from_slice(&body) {
        Ok(n) => n,
        Err(e) => return error(StatusCode::BAD_REQUEST, &format!("invalid allow-list entry: {e}")),
    };
    let now = state.clock.now();
    let entry = match access::entry(&state.config, &new, &who.actor, now) {
        Ok(e) => e,
        Err(m) => return error(StatusCode::BAD_REQUEST, &m),
    };
    match access::allow(state.store.as_ref(), &entry, crate::web::request_id::current()).await {
        Ok((stored, replaced)) => {
            tracing::info!(entry = %stored.id, replaced, "allow-list entry stored through the admin API");
            let status = if replaced { StatusCode::OK } else { StatusCode::CREATED };
            (status, Json(access::view(&stored, now))).into_response()
        }
        Err(e) => storage_unavailable("store an allow-list entry", e),
    }
}

#[utoipa::path(
    delete,
    path = "/admin/api/access/{id}",
    tag = "access",
    summary = "Remove an allow-list entry",
    params(("id" = String, Path, description = "The entry's id")),
    responses(
        (status = 204, description = "Removed"),
        (status = 404, description = "No entry with this id", body = ErrorBody),
        (status = 401, description = "No valid admin token or session (or no CSRF token with a session)", body = ErrorBody),
        (status = 403, description = "Not an admin, or a read-only credential", body = ErrorBody),
        (status = 503, description = "Storage is unavailable", body = ErrorBody)
    ),
    security(("bearer" = []), ("session" = []))
)]
pub async fn deny_access(State(state): State<SharedState>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    let who = match allowed(&state, &headers, true).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    let now = state.clock.now();
    match access::deny(state.store.as_ref(), &id, &who.actor, now, crate::web::request_id::current()).await {
        Ok(Some(removed)) => {
            tracing::info!(entry = %removed.id, "allow-list entry removed through the admin API");
            StatusCode::NO_CONTENT.into_response()
        }
        Ok(None) => error(StatusCode::NOT_FOUND, "no allow-list entry with this id"),
        Err(e) => storage_unavailable("remove an allow-list entry", e),
    }
}

#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ActivityQuery {
    /// Only people inactive (no sign-in, no token use) for this long, e.g. `90d`.
    inactive_since: Option<String>,
    /// `json` (default) or `csv`.
    #[param(pattern = "^(json|csv)$")]
    format: Option<String>,
}

#[utoipa::path(
    get,
    path = "/admin/api/report/activity",
    tag = "report",
    summary = "The activity report",
    params(ActivityQuery),
    responses(
        (status = 200, description = "The report", content((Report = "application/json"), (String = "text/csv"))),
        (status = 400, description = "A bad parameter", body = ErrorBody),
        (status = 401, description = "No valid admin token or session", body = ErrorBody),
        (status = 403, description = "Signed in, but not an admin", body = ErrorBody),
        (status = 503, description = "Storage is unavailable", body = ErrorBody)
    ),
    security(("bearer" = []), ("session" = []))
)]
pub async fn activity_report(
    State(state): State<SharedState>,
    headers: HeaderMap,
    q: Result<Query<ActivityQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    use super::report::{self, Format};
    if let Err(r) = allowed(&state, &headers, false).await {
        return r;
    }
    let Query(q) = match q {
        Ok(q) => q,
        Err(e) => return error(StatusCode::BAD_REQUEST, &e.body_text()),
    };
    let inactive_since = match q.inactive_since.as_deref().map(report::parse_age).transpose() {
        Ok(age) => age,
        Err(m) => return error(StatusCode::BAD_REQUEST, &format!("inactive_since: {m}")),
    };
    let format = match q.format.as_deref().unwrap_or("json") {
        "json" => Format::Json,
        "csv" => Format::Csv,
        other => return error(StatusCode::BAD_REQUEST, &format!("format: {other:?} is not json or csv")),
    };
    match report::build(state.store.as_ref(), &state.config.report, state.clock.now(), inactive_since).await {
        Ok(r) => {
            let content_type = if format == Format::Csv { "text/csv; charset=utf-8" } else { "application/json" };
            ([(header::CONTENT_TYPE, content_type), (header::CACHE_CONTROL, "no-store")], report::render(&r, format))
                .into_response()
        }
        Err(e) => {
            tracing::error!(error = %e, "could not build the activity report");
            error(StatusCode::SERVICE_UNAVAILABLE, "storage is unavailable; try again")
        }
    }
}

/// `POST /admin/api/tokens` body.
#[derive(Debug, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewToken {
    pub name: String,
    /// `read` or `write`.
    #[schema(pattern = "^(read|write)$")]
    pub scope: String,
    /// e.g. `90d`; without it the token lives until revoked.
    pub expires_in: Option<String>,
}

#[utoipa::path(
    get,
    path = "/admin/api/tokens",
    tag = "tokens",
    summary = "Admin API tokens (never their values)",
    responses(
        (status = 200, description = "Every stored token", body = [TokenView]),
        (status = 401, description = "No valid admin token or session", body = ErrorBody),
        (status = 403, description = "Signed in, but not an admin", body = ErrorBody),
        (status = 503, description = "Storage is unavailable", body = ErrorBody)
    ),
    security(("bearer" = []), ("session" = []))
)]
pub async fn list_tokens(State(state): State<SharedState>, headers: HeaderMap) -> Response {
    if let Err(r) = allowed(&state, &headers, false).await {
        return r;
    }
    let now = state.clock.now();
    match state.store.admin_tokens().await {
        Ok(all) => Json(all.iter().map(|t| principal::view(t, now)).collect::<Vec<_>>()).into_response(),
        Err(e) => storage_unavailable("list admin tokens", e),
    }
}

#[utoipa::path(
    post,
    path = "/admin/api/tokens",
    tag = "tokens",
    summary = "Make an admin API token; its value is shown once",
    request_body(content = NewToken, content_type = "application/json"),
    responses(
        (status = 201, description = "The token, with its value", body = CreatedToken),
        (status = 400, description = "The request says what is wrong", body = ErrorBody),
        (status = 401, description = "No valid admin token or session (or no CSRF token with a session)", body = ErrorBody),
        (status = 403, description = "Not an admin, or a read-only credential", body = ErrorBody),
        (status = 503, description = "Storage is unavailable", body = ErrorBody)
    ),
    security(("bearer" = []), ("session" = []))
)]
pub async fn create_token(State(state): State<SharedState>, headers: HeaderMap, body: Bytes) -> Response {
    let who = match allowed(&state, &headers, true).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    let new: NewToken = match serde_json::from_slice(&body) {
        Ok(n) => n,
        Err(e) => return error(StatusCode::BAD_REQUEST, &format!("invalid token request: {e}")),
    };
    let now = state.clock.now();
    let (name, scope, expires_at) =
        match principal::check_new_token(&new.name, &new.scope, new.expires_in.as_deref(), now) {
            Ok(v) => v,
            Err(m) => return error(StatusCode::BAD_REQUEST, &m),
        };
    let actor = Actor::of(&who);
    match principal::create_token(state.store.as_ref(), &name, scope, &actor, now, expires_at).await {
        Ok((token, value)) => {
            let body = CreatedToken { record: principal::view(&token, now), value };
            (StatusCode::CREATED, [(header::CACHE_CONTROL, "no-store")], Json(body)).into_response()
        }
        Err(e) => storage_unavailable("create an admin token", e),
    }
}

#[utoipa::path(
    delete,
    path = "/admin/api/tokens/{id}",
    tag = "tokens",
    summary = "Revoke an admin API token",
    params(("id" = String, Path, description = "The token's id")),
    responses(
        (status = 204, description = "Revoked"),
        (status = 404, description = "No live token with this id", body = ErrorBody),
        (status = 401, description = "No valid admin token or session (or no CSRF token with a session)", body = ErrorBody),
        (status = 403, description = "Not an admin, or a read-only credential", body = ErrorBody),
        (status = 503, description = "Storage is unavailable", body = ErrorBody)
    ),
    security(("bearer" = []), ("session" = []))
)]
pub async fn revoke_token(State(state): State<SharedState>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    let who = match allowed(&state, &headers, true).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    match principal::revoke_token(state.store.as_ref(), &id, &Actor::of(&who), state.clock.now()).await {
        Ok(true) => StatusCode::NO_CONTENT.into_response(),
        Ok(false) => error(StatusCode::NOT_FOUND, "no live admin token with this id"),
        Err(e) => storage_unavailable("revoke an admin token", e),
    }
}
